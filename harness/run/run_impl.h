/* The run's state, shared by the files of harness/run (not part of its interface). */
#ifndef TW_RUN_IMPL_H
#define TW_RUN_IMPL_H

#include <jansson.h>

#include "harness/run/tw_run.h"
#include "tw_comm.h"
#include "tw_power.h"

/* What the run needs to know about its backend. The backend is asked by name here, in one
 * place, until backends describe themselves (issue 12, the backend registry). */
typedef struct {
    int known;         /* a backend this run knows */
    int gpu;           /* a GPU backend: NVML can meter it, its device is recorded */
    int host_ceilings; /* its ceilings are the host's: measured by tw_machine_* */
    int cuda_options;  /* the scenario records --gemm and --cuda-graph */
} tw_run_traits;

struct tw_run {
    tw_run_spec spec;
    tw_run_callbacks cb;
    tw_run_traits traits;
    tw_model_config cfg;
    int have_cfg;
    tw_backend *be;
    tw_comm *comm; /* the launch: every rank (NULL for one process without a launcher) */
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
    double membw, peak;
    const char *membw_src, *peak_src;
    double peak_bf16; /* the bf16 ceiling: the fastest bf16 multiply-add the CPU has */
    char membw_method[240], peak_bf16_src[260];
    int membw_measured;      /* measured here (not given): measured again at the end of the run */
    int intr_sig, intr_rank; /* the interruption that stopped the run (0: none) */
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

#endif
