/* The megawatt projection: growth curves from the source document (configs/growth/ files), the
 * assumptions the document does not give (configs/assumptions.json), and the devices and
 * megawatts needed to serve each year's token demand under named scenarios. */
#ifndef TW_PROJECT_H
#define TW_PROJECT_H

#include <stddef.h>

#include <jansson.h>

#include "tw_result_schema.h"
#include "tw_status.h"

/* ---- growth curves ------------------------------------------------------------------------- */

/* What the document's qualifier says about a stated value. */
typedef enum {
    TW_BOUND_STATED = 0, /* "(stated)": "=" */
    TW_BOUND_LOWER,      /* "over", "well over", "more than": a lower bound, shown "≥" */
    TW_BOUND_APPROX,     /* "roughly": shown "≈" */
    TW_BOUND_UPPER,      /* "nearly", "approach": just below, shown "≲" */
} tw_bound;

typedef enum {
    TW_PT_STATED = 0,   /* a point the document states */
    TW_PT_INTERPOLATED, /* between two stated points, log-linear */
    TW_PT_EXTRAPOLATED, /* before the first or after the last stated point */
} tw_point_status;

#define TW_GROWTH_MAX_POINTS 16

typedef struct {
    int year;
    double value;
    char qualifier[64];
    tw_bound bound;
    char note[128];
} tw_growth_point;

typedef struct {
    char series[48];
    char title[160];
    char figure[32];
    char unit[48];
    char source[400];
    int npoints;
    tw_growth_point pts[TW_GROWTH_MAX_POINTS]; /* years strictly increasing */
} tw_growth_series;

typedef struct {
    double value;
    tw_point_status status;
    tw_bound bound;       /* the qualifier carried from the stated point(s) it comes from */
    double annual_factor; /* growth factor per year of the segment used (1.78 = +78%/yr) */
} tw_growth_value;

/* Parses and validates one growth file (JSON text or a json_t). Refuses, naming the file and the
 * point: missing or non-positive values, unknown units or bounds, years not strictly increasing. */
tw_status tw_growth_parse(json_t *root, const char *what, tw_growth_series *out);
tw_status tw_growth_load(const char *path, tw_growth_series *out);
/* Loads configs/growth/<name>.json through tw_config_path. */
tw_status tw_growth_load_named(const char *name, tw_growth_series *out);

/* Value at `year`: stated, interpolated log-linearly (a constant annual rate) between stated
 * points, or extrapolated with the nearest segment's rate. A single-point series needs
 * single_point_factor (> 0, the assumed annual growth factor); otherwise it is ignored. */
tw_status tw_growth_at(const tw_growth_series *s, double year, double single_point_factor,
                       tw_growth_value *out);
/* Annual growth factor of the segment between the first and last stated points. */
tw_status tw_growth_overall_factor(const tw_growth_series *s, double *out);

const char *tw_bound_symbol(tw_bound b);              /* "", "≥", "≈", "≲" */
const char *tw_bound_name(tw_bound b);                /* "stated", "lower", "approx", "upper" */
const char *tw_point_status_name(tw_point_status st); /* stated, interpolated, extrapolated */

/* ---- assumptions ----------------------------------------------------------------------------- */

typedef struct {
    char name[48];
    double value;  /* numeric value (for power_growth_from: the resolved factor) */
    char text[48]; /* the value as text where it is not a number (power_growth_from) */
    char unit[48];
    char source[512];
    int overridden; /* set from the command line */
} tw_assumption;

typedef struct {
    tw_assumption fleet_tokens_per_j, inference_share, price_usd_per_token, pue, lifetime_years,
        ref_tokens_per_s, utilisation, power_growth_from;
} tw_assumptions;

/* Loads configs/assumptions.json (path NULL) or the given file; every entry must be present
 * with a positive value, a unit and a source. */
tw_status tw_assumptions_load(const char *path, tw_assumptions *out);

/* ---- projection ------------------------------------------------------------------------------ */

typedef enum { TW_SCEN_POWER = 0, TW_SCEN_REVENUE, TW_SCEN_SHIPMENTS, TW_SCEN_COUNT } tw_scenario;
const char *tw_scenario_name(tw_scenario s);
tw_status tw_scenario_parse(const char *name, tw_scenario *out);

typedef struct {
    double tokens_per_s; /* per device, > 0 */
    double watts;        /* per device, > 0 */
    char source[256];    /* "nvml", "rapl", "assumed: rated 280 W of ...", "--watts" ... */
    int assumed;         /* the watts are assumed (rated or given), not measured */
} tw_project_device;

typedef struct {
    int year;
    tw_scenario scenario;
    double demand_tokens_per_s; /* D(y) */
    tw_bound demand_bound;
    int demand_extrapolated; /* any growth value behind D(y) was extrapolated */
    char basis[256];         /* the series values behind D(y), with their status */
    double devices;          /* N = D / T */
    double it_mw;            /* N x W / 1e6 */
    double facility_mw;      /* it_mw x PUE */
    double dc_additions_mw;  /* Figure 7 for that year */
    tw_point_status dc_status;
    tw_bound dc_bound;
    double share_of_additions; /* facility_mw / dc_additions_mw */
    /* What the curves say will exist that year: accelerators in service (the shipments curve
     * over the assumed lifetime, as the shipments scenario counts them) */
    double installed_devices;
    int installed_extrapolated;
    /* devices > installed_devices or facility_mw > dc_additions_mw: a fleet of this device
     * could not serve the demand (the headline says so rather than quoting the figure) */
    int exceeds_supply;
} tw_project_row;

#define TW_PROJECT_YEAR0  2025
#define TW_PROJECT_YEAR1  2030
#define TW_PROJECT_NYEARS (TW_PROJECT_YEAR1 - TW_PROJECT_YEAR0 + 1)

typedef struct {
    tw_growth_series revenue, shipments, inference_power, dc_additions;
    tw_assumptions a;
} tw_project_inputs;

typedef struct {
    tw_project_device dev;
    char power_growth_note[160]; /* how the single-point power series was placed */
    double pue;                  /* as used */
    tw_project_row rows[TW_SCEN_COUNT][TW_PROJECT_NYEARS];
} tw_projection;

/* Loads the four growth files and the assumptions (configs found through tw_config_path). */
tw_status tw_project_inputs_load(tw_project_inputs *in);
/* Sets power_growth_from from "revenue", "dc_additions" or a factor > 1 ("1.5"); marks it
 * overridden. Resolves the factor from the loaded series. */
tw_status tw_project_set_power_growth(tw_project_inputs *in, const char *spec, int overridden);
/* Computes every row; refuses tokens/s or watts that are not finite and > 0. */
tw_status tw_project_compute(const tw_project_inputs *in, const tw_project_device *dev,
                             tw_projection *out);

/* "at T tokens/s and W W per device (measured by SOURCE), serving the 2030 demand of scenario
 * power takes N devices and M MW (...)": default assumptions, scenario `power`. */
tw_status tw_project_headline(double tokens_per_s, double watts, const char *source_label,
                              int assumed, char *buf, size_t n);
/* Same, for a computed projection and any scenario. */
void tw_project_headline_of(const tw_projection *p, tw_scenario s, char *buf, size_t n);

/* Output: the whole projection as JSON (new reference), or as an SVG chart of facility MW by
 * year per scenario against the data-centre additions (malloc'd text, caller frees). */
tw_status tw_project_to_json(const tw_project_inputs *in, const tw_projection *p, json_t **out);
tw_status tw_project_svg(const tw_projection *p, char **out);

/* The device figures of one result row (the one reader's, tw_result_schema.h): e2e tokens/s
 * per power domain (metrics.e2e_tokens_per_s / scenario.devices, or / energy.devices when the
 * energy block combined the ranks' power domains itself) and mean watts per device
 * (energy.e2e.mean_power_w_per_device, else energy.e2e.mean_power_w / energy.devices); `note`
 * says which fields were used, origin names the file. Used by `project` and `report`. */
tw_status tw_project_device_from_row(const tw_result_row *row, const char *origin,
                                     tw_project_device *out, char *note, size_t note_n);
/* The device figures at the latency targets (issue 15): a serving row's goodput, the output
 * tokens/s of the measured requests that met every latency objective
 * (serving.summary.goodput.output_tokens_per_s), per power domain as above, and the same watts.
 * TW_ERR_UNSUPPORTED when the row has no serving block or no goodput (no objective given);
 * TW_ERR_INVALID when no request met the targets (goodput 0: no fleet serves demand within
 * them). `note` names the targets, the rate, whether the MLPerf constraint held. */
tw_status tw_project_device_goodput_from_row(const tw_result_row *row, const char *origin,
                                             tw_project_device *out, char *note, size_t note_n);
/* Whether a row has a goodput figure (a serving block with latency objectives). */
int tw_project_row_has_goodput(const tw_result_row *row);
/* The row's latency objectives as text ("TTFT <= 2000 ms, TPOT <= 100 ms"); "" without any. */
void tw_project_goodput_targets(const tw_result_row *row, char *buf, size_t n);
/* The same for a result file of one combination (a sweep is refused: name one row's run). */
tw_status tw_project_device_from_result(const char *path, tw_project_device *out, char *note,
                                        size_t note_n);

#endif
