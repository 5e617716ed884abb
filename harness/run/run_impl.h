/* The run's state, shared by the files of harness/run (not part of its interface). */
#ifndef TW_RUN_IMPL_H
#define TW_RUN_IMPL_H

#include <jansson.h>

#include "harness/run/tw_run.h"
#include "tw_comm.h"
#include "tw_power.h"

/* What the run needs to know about its backend before creating it: its registry row's traits
 * (kernels/backend.c), never its name. */
typedef struct {
    int known;          /* a row of the registry */
    const char *power;  /* the sensor of its devices ("nvml"), NULL: the host's */
    int accelerator;    /* it runs on a device ordinal: recorded, and metered by that index */
    int graphs;         /* --cuda-graph goes with it */
    int gemm_option;    /* --gemm goes with it */
    int device_options; /* the scenario records gemm and cuda_graph */
} tw_run_traits;

struct tw_run {
    tw_run_spec spec;
    tw_run_callbacks cb;
    tw_run_traits traits;
    tw_model_config cfg;
    int have_cfg;
    tw_backend *be;
    char device_name[256]; /* an accelerator backend's device (describe), for rated watts */
    tw_comm *comm;         /* the launch: every rank (NULL for one process without a launcher) */
    /* --comm threads (or cuda --tp N without a launcher): the ranks are threads of this
     * process. Rank 0 is the caller's thread and starts the others (workers), each with its
     * own tw_run over its handle of the group; rank 0's tw_run_close joins them. */
    int threads;                   /* this run's ranks are threads of one process */
    struct tw_run_worker *workers; /* [nranks] on rank 0 (slot 0 unused), NULL elsewhere */
    int nworkers_started;          /* workers 1..nworkers_started run */
    tw_comm *thread_handle;        /* this rank's threads handle (the host of nccl, or comm) */
    int rank, nranks;              /* in the launch */
    tw_comm *tp_comm; /* the current degree's ranks 0..tp-1 (NULL on the ranks outside) */
    tw_comm_hosts hosts;
    int have_hosts;
    tw_run_plan plan;
    double membw, peak;                 /* the ceilings the fractions use (0: none) */
    char membw_src[160], peak_src[160]; /* given, measured how, or why not measured */
    tw_dtype peak_dtype;                /* the dtype the measured peak is for */
    double peak_bf16;                   /* the bf16 rows' peak (the CPU: its fastest bf16
                                         * multiply-add; a bf16 peak itself), 0: none */
    char membw_method[480], peak_bf16_src[260];
    int membw_measured;       /* the host's, measured here (not given): measured again at the end */
    int peak_measured;        /* the host's peaks, measured here: measured again at the end */
    double ds_membw, ds_peak; /* datasheet (configs/devices.json), 0: none */
    char ds_src[256];         /* the entry, or why there is none */
    int intr_sig, intr_rank;  /* the interruption that stopped the run (0: none) */
    double start_unix;
    json_t *prov; /* provenance, recorded before measuring (the git queries take time) */
    /* progress: the current row, and work done (tokens) for the ETA */
    int row;
    double work_done, work_t0;
};

/* Engine options for rank `rank` at degree tp, without a communicator (planning; the run adds
 * the degree's). */
tw_engine_opts tw_run_plan_engine_opts(const tw_run_spec *s, const tw_model_config *cfg,
                                       tw_backend *be, int rank, int tp, tw_dtype dt, tw_dtype kv,
                                       int batch, int prompt, int seq);

/* A note or an error for the caller (rank 0 only). */
void tw_run_say(tw_run *r, tw_run_message_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tw_run_show(tw_run *r, const tw_run_progress *p);
double tw_run_eta(const tw_run *r);
/* The GEMM the CUDA backend runs ("" for others). */
const char *tw_run_backend_gemm(tw_run *r);
/* The power options of this run (the same for the early check and every combination). */
tw_power_opts tw_run_power_opts(const tw_run *r);

/* Pieces of a combination's measurement (measure.c) that another measurement (the serving
 * scenarios, harness/serve/serve_engine_run.c) shares: the row's scenario, its energy block
 * combined over the degree's ranks (domains: the separately powered units), the headline. */
void tw_run_scenario(tw_run *x, const tw_run_combo *k, tw_result_scenario *s);
tw_status tw_run_energy(tw_run *x, const tw_run_combo *k, tw_power_meter *pm, tw_result_row *row,
                        int *domains);
void tw_run_headline(tw_run *x, const tw_result_row *row, int domains, char *buf, size_t n);

#endif
