/* Power and energy of a measured region: one meter over several sources (NVML for NVIDIA GPUs,
 * loaded at run time; RAPL through the Linux powercap tree; an assumed figure, given or the rated
 * watts from configs/devices.json), a sampler thread recording the power trace of measured
 * regions only, and the `energy` block of a result file. Every fallback is reported. */
#ifndef TW_POWER_H
#define TW_POWER_H

#include <stddef.h>

#include <jansson.h>

#include "tw_result_schema.h"
#include "tw_status.h"

typedef struct {
    const char *source;      /* "auto" (also when NULL), "nvml", "rapl", "assumed", "none" */
    double assumed_w;        /* per device; 0: the rated watts of device_name in devices.json */
    const char *device_name; /* for the rated-watts lookup; NULL: the NVML name, else CPU model */
    int sample_ms;           /* sampler interval, 10..100; 0 means 50 */
    int gpu_index;           /* first GPU measured; -1: not a GPU run */
    int devices;             /* devices measured (GPUs gpu_index.. ; CPU sockets); 0 means 1 */
} tw_power_opts;

/* One region, or the sum of a phase's regions. Totals are over all measured devices. */
typedef struct {
    double energy_j; /* NAN when the source is "none" */
    double seconds;
    double mean_power_w; /* energy_j / seconds */
    double peak_power_w; /* highest trace sample in the region; mean_power_w if none */
    const char *source;  /* "nvml", "rapl", "assumed", "none" */
    int assumed;         /* energy is assumed watts x time, not measured */
} tw_power_region;

/* Token counts of the measured phases, for J/token and tokens/J (<= 0: not reported). */
typedef struct {
    double prefill, decode, e2e;
} tw_power_tokens;

typedef struct tw_power_meter tw_power_meter;

tw_status tw_power_open(const tw_power_opts *opts, tw_power_meter **out);
/* Starts a region of `phase` ("prefill", "decode", "e2e" or another label, at most 8 distinct).
 * Regions of different phases may overlap (an "e2e" region around prefill and decode); regions
 * of one phase may not. Regions of one phase accumulate (energy, seconds; peak is the max). */
tw_status tw_power_begin(tw_power_meter *m, const char *phase);
tw_status tw_power_end(tw_power_meter *m, const char *phase, tw_power_region *out);
/* Accumulated figures of a phase (TW_ERR_INVALID if it was never measured). */
tw_status tw_power_phase(const tw_power_meter *m, const char *phase, tw_power_region *out);

const char *tw_power_source(const tw_power_meter *m); /* "nvml", "rapl", "assumed", "none" */
int tw_power_is_assumed(const tw_power_meter *m);
/* Whether the figure covers the whole host rather than one rank's device: RAPL (the CPU
 * packages) and assumed watts of a CPU run (a socket's rated power). Ranks sharing a host
 * share that power: counted once, not once per rank. */
int tw_power_host_level(const tw_power_meter *m);
int tw_power_has_energy(const tw_power_meter *m); /* measured or assumed; 0 for "none" */
/* Saves every phase's accumulated figures; tw_power_rollback restores them and closes open
 * regions without adding them, so that an interrupted repetition's partial energy is not
 * counted against the complete repetitions' tokens. */
void tw_power_mark(tw_power_meter *m);
void tw_power_rollback(tw_power_meter *m);
/* Joules of a phase ("prefill", "decode"; "e2e": measured, or the sum of the others). */
tw_status tw_power_phase_energy(const tw_power_meter *m, const char *phase, double *energy_j);
/* Short label for headlines: "nvml", "rapl", "assumed: rated 700 W of NVIDIA H100 SXM5 80GB
 * (devices.json)", "assumed: 300 W per device given by the user", "none". */
const char *tw_power_label(const tw_power_meter *m);
/* How energy is obtained, e.g. "NVML total-energy counter, 2 GPUs from index 0". */
const char *tw_power_method(const tw_power_meter *m);
/* Why each earlier source was not used ("nvml: ...; rapl: ..."), "" when none was skipped. */
const char *tw_power_fallbacks(const tw_power_meter *m);
/* Watts per device for a projection: measured mean over e2e (or all phases), else assumed. */
tw_status tw_power_mean_w_per_device(const tw_power_meter *m, double *out);

/* The result file's `energy` block (tw_result_schema.h; its keys in doc/RESULTS.md): source,
 * assumed, label, method, fallbacks, devices, sample interval, the sensor's provenance, the
 * prefill, decode and e2e phases (energy_j, seconds, mean_power_w, mean_power_w_per_device,
 * peak_power_w, regions, tokens, j_per_token, tokens_per_j; "e2e" is the sum of the other phases
 * when no "e2e" region was measured, and says so) and the power trace. Free with
 * tw_energy_free. Phases of other labels are measured (tw_power_phase) but not in the block. */
tw_status tw_power_energy(const tw_power_meter *m, const tw_power_tokens *tokens, tw_energy *out);
/* The same block as JSON (tw_energy_to_json; new reference). */
tw_status tw_power_energy_json(const tw_power_meter *m, const tw_power_tokens *tokens,
                               json_t **out);

/* Replaces the prefill, decode and e2e energies of an energy block (one rank's, from
 * tw_power_energy) with the totals over the ranks of a tensor-parallel run (total_j: prefill,
 * decode, e2e), summed over `domains` separately powered units (GPUs; hosts for host-level
 * sources), and recomputes mean watts, watts per device, J/token and tokens/J; records devices =
 * domains, the rank count and `how` they were combined. Peak watts and the trace stay this
 * rank's. */
void tw_power_energy_combine(tw_energy *e, const double total_j[3], int domains, int ranks,
                             const char *how);

void tw_power_close(tw_power_meter *m);

/* Rated watts of a device or CPU from configs/devices.json: case-insensitive substring match of
 * each entry's "match" strings against name, longest match wins. entry/source may be NULL. */
tw_status tw_power_rated_w(const char *name, double *watts, char *entry, size_t entry_n,
                           char *source, size_t source_n);

#endif
