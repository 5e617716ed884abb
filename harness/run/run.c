/* The run (tw_run.h): setting up, checking, planning, the degree and engine loops, the result,
 * writing it, and the end of a launched job. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/project/tw_project.h"
#include "harness/run/run_impl.h"
#include "tw_cpu.h"
#include "tw_cuda_info.h"
#include "tw_devices.h"
#include "tw_machine.h"
#include "tw_results.h"
#include "tw_util.h"

/* How long a rank that sits out a tensor-parallel degree waits for the working ranks (a week):
 * the degree's combinations may take hours. A working rank that fails ends the job itself
 * (tw_comm_abort), so this bound only matters for a rank that hangs without failing. */
#define TW_RUN_IDLE_WAIT_S (7 * 86400.0)

/* ---- the backend: its registry row says what goes with it --------------------------------- */

static tw_run_traits tw_run_traits_of(const char *backend) {
    const tw_backend_entry *row = tw_backend_find(backend);
    tw_run_traits t = {0};
    if (!row) return t;
    t.known = 1;
    t.power = row->traits.power;
    t.accelerator = row->traits.accelerator;
    t.graphs = row->traits.graphs;
    t.gemm_option = tw_backend_has_option(row, "gemm");
    t.device_options = t.graphs || t.gemm_option;
    return t;
}

tw_status tw_run_spec_check_backend(const tw_run_spec *s) {
    tw_run_traits t = tw_run_traits_of(s->backend);
    if (!t.known)
        return TW_ERR(TW_ERR_INVALID, "option --backend: '%s' is not %s", s->backend,
                      tw_backend_names());
    if (!strcmp(s->power, "nvml") && !(t.power && !strcmp(t.power, "nvml"))) {
        /* the backends whose devices NVML meters, from the registry */
        char with[128] = "";
        for (int i = 0, used = 0; i < tw_backend_count() && used < (int)sizeof with; i++) {
            const tw_backend_entry *row = tw_backend_at(i);
            if (row->traits.power && !strcmp(row->traits.power, "nvml"))
                used += snprintf(with + used, sizeof with - (size_t)used, "%s--backend %s",
                                 used ? " or " : "", row->name);
        }
        return TW_ERR(TW_ERR_INVALID,
                      "--power nvml reads NVIDIA GPUs: it goes with %s (this run is on the %s "
                      "backend; --power rapl or assumed for CPUs)",
                      with, s->backend);
    }
    if (s->cuda_graph && !t.graphs)
        return TW_ERR(TW_ERR_INVALID, "--cuda-graph replays graphs: the %s backend has none",
                      s->backend);
    if (s->gemm && !t.gemm_option)
        return TW_ERR(TW_ERR_INVALID,
                      "--gemm %s chooses the backend's GEMM: the %s backend has no such option",
                      s->gemm, s->backend);
    return TW_OK;
}

const char *tw_run_backend_gemm(tw_run *r) {
    return r->traits.gemm_option ? tw_backend_get_option(r->be, "gemm") : "";
}

/* The accelerator, for the provenance and the device table's ceilings: what the backend
 * describes, and for a CUDA device its compute capability and SM count. */
static void tw_run_device_provenance(tw_run *r, json_t *prov) {
    if (!r->traits.accelerator) return;
    tw_device_desc d;
    if (tw_backend_describe(r->be, &d) != TW_OK) {
        tw_clear_error();
        return;
    }
    json_object_set_new(prov, "gpu_name", json_string(d.name));
    tw_cuda_device_info di;
    if (tw_cuda_device_query(r->be->device, &di) == TW_OK && !strcmp(di.name, d.name)) {
        char cc[16];
        snprintf(cc, sizeof cc, "%d.%d", di.cc_major, di.cc_minor);
        json_object_set_new(prov, "gpu_compute_capability", json_string(cc));
        json_object_set_new(prov, "gpu_sm_count", json_integer(di.sm_count));
    }
    tw_clear_error();
    json_object_set_new(prov, "gpu_memory_bytes", json_integer((json_int_t)d.memory_bytes));
}

/* ---- messages and progress ------------------------------------------------------------------- */

void tw_run_say(tw_run *r, tw_run_message_kind kind, const char *fmt, ...) {
    if (r->rank != 0 || !r->cb.message) return;
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    r->cb.message(r->cb.ctx, kind, text);
}

void tw_run_show(tw_run *r, const tw_run_progress *p) {
    if (r->rank == 0 && r->cb.progress) r->cb.progress(r->cb.ctx, p);
}

double tw_run_eta(const tw_run *r) {
    if (!(r->work_done > 0) || r->work_t0 <= 0) return -1;
    double el = tw_now_s() - r->work_t0;
    return (r->plan.work_tokens - r->work_done) * el / r->work_done;
}

int tw_run_stopped(tw_run *r) {
    if (r->intr_sig) return r->intr_sig;
    int rank = -1, sig = tw_comm_interrupted(&rank);
    if (sig) {
        r->intr_sig = sig;
        r->intr_rank = rank;
    }
    return sig;
}

void tw_run_signal_text(const tw_run *r, char *buf, size_t n) {
    if (r->comm)
        snprintf(buf, n, "%s on rank %d", tw_signal_name(r->intr_sig), r->intr_rank);
    else
        snprintf(buf, n, "%s", tw_signal_name(r->intr_sig));
}

tw_power_opts tw_run_power_opts(const tw_run *r) {
    tw_power_opts po = {.source = r->spec.power,
                        .assumed_w = r->spec.watts,
                        .sample_ms = r->spec.sample_ms,
                        /* the device ordinal for a backend its sensor (NVML) meters */
                        .gpu_index = r->traits.power && !strcmp(r->traits.power, "nvml")
                                         ? (r->be ? r->be->device : r->spec.device)
                                         : -1,
                        .device_name = r->device_name[0] ? r->device_name : NULL,
                        .devices = 1};
    return po;
}

int tw_run_rank(const tw_run *r) {
    return r->rank;
}
int tw_run_launched(const tw_run *r) {
    return r->comm != NULL;
}
const tw_run_plan *tw_run_get_plan(const tw_run *r) {
    return &r->plan;
}
const tw_model_config *tw_run_model(const tw_run *r) {
    return &r->cfg;
}
const tw_backend *tw_run_backend(const tw_run *r) {
    return r->be;
}
const char *tw_run_comm_kind(const tw_run *r) {
    return r->comm ? tw_comm_kind(r->comm) : NULL;
}

/* ---- opening: communicator, backend, checks, plan, ceilings ---------------------------------- */

/* Engine build progress (tw_engine_opts.progress): a line per layer; stops a build when a
 * signal came in, so that Ctrl-C during a long build ends it promptly. */
typedef struct {
    tw_run *r;
    double t0;
    const char *what;
} tw_build_progress;

static int tw_run_build_progress(void *ctx, int done, int total) {
    tw_build_progress *b = ctx;
    if (tw_run_stopped(b->r)) return 1;
    double el = tw_now_s() - b->t0;
    tw_run_progress p = {.kind = TW_RUN_PROGRESS_BUILD,
                         .milestone = done == total,
                         .eta_s = done ? el * (total - done) / done : -1,
                         .what = b->what,
                         .done = done,
                         .total = total};
    tw_run_show(b->r, &p);
    return 0;
}

/* Engine options for this rank at degree tp (its rank in the degree is its launch rank; the
 * degree's communicator spans tp ranks, or the expert-parallel degree's). */
static tw_engine_opts tw_run_engine_opts(const tw_run *r, int tp, tw_dtype dt, tw_dtype kv,
                                         int batch, int prompt, int seq) {
    tw_engine_opts eo =
        tw_run_plan_engine_opts(&r->spec, &r->cfg, r->be, r->rank, tp, dt, kv, batch, prompt, seq);
    eo.comm = tw_run_degree_ranks(&r->spec, tp) > 1 ? r->tp_comm : NULL;
    return eo;
}

/* ---- ranks as threads of this process (--comm threads; cuda --tp N without a launcher) ---- */

/* A rank thread: its own tw_run over its handle of the group, the same open and execute as a
 * launched rank (rank 0, the caller's thread, writes the result). */
struct tw_run_worker {
    pthread_t tid;
    tw_run_spec spec; /* the caller's strings, alive until rank 0's tw_run_close */
    tw_comm *handle;
    tw_status st;
    char error[2048];
    atomic_int done;
};

static tw_status tw_run_open_rank(const tw_run_spec *spec, const tw_run_callbacks *cb,
                                  tw_comm *thread_handle, tw_run **out);

static void *tw_run_worker_main(void *p) {
    struct tw_run_worker *w = p;
    tw_run *x = NULL;
    tw_result res;
    memset(&res, 0, sizeof res);
    tw_run_outcome oc;
    tw_status st = tw_run_open_rank(&w->spec, NULL, w->handle, &x);
    if (st == TW_OK) st = tw_run_execute(x, &res, &oc);
    tw_result_free(&res);
    if (st != TW_OK) {
        w->st = st;
        snprintf(w->error, sizeof w->error, "%s", tw_error_text());
        /* rank 0 and the others stop at their next wait, naming this rank and why */
        if (x && x->thread_handle) tw_comm_threads_fail(x->thread_handle, st, w->error);
    }
    tw_run_close(x); /* destroys the handle: a peer still waiting learns this rank is gone */
    atomic_store(&w->done, 1);
    return NULL;
}

/* Whether the ranks of this run are threads of this process: --comm threads, or the cuda
 * backend at a degree above 1 without a launcher (one GPU per thread, one NCCL communicator). */
static int tw_run_wants_threads(const tw_run_spec *o, int max_tp) {
    if (!strcmp(o->comm, "threads")) return 1;
    /* (--comm nccl at one rank too: the one-rank NCCL communicator, made without MPI) */
    return !strcmp(o->backend, "cuda") && !tw_comm_under_launcher() &&
           ((max_tp > 1 && !strcmp(o->comm, "auto")) || !strcmp(o->comm, "nccl"));
}

/* The run's communicator over this rank's threads handle: the handle itself on the CPU, or an
 * NCCL communicator over it (device = the rank) on the cuda backend. */
static tw_status tw_run_attach(tw_run *x, tw_comm *handle) {
    x->thread_handle = handle; /* owned here: destroyed by tw_run_close after x->comm */
    if (!strcmp(x->spec.backend, "cuda"))
        return tw_comm_nccl_create_over(handle, x->spec.comm_timeout_s, &x->comm);
    x->comm = handle;
    return TW_OK;
}

/* Rank 0: the group of n ranks, the threads of ranks 1..n-1, and its own handle. */
static tw_status tw_run_start_threads(tw_run *x, int n) {
    const tw_run_spec *o = &x->spec;
    if (tw_comm_under_launcher())
        return TW_ERR(TW_ERR_INVALID,
                      "--comm threads runs every rank as a thread of this one process: launch "
                      "it without mpirun (under mpirun the ranks are processes: --comm mpi)");
    if (!strcmp(o->comm, "threads") && strcmp(o->backend, "cpu"))
        return TW_ERR(TW_ERR_INVALID,
                      "--comm threads is the CPU backend's shared-memory communicator; on "
                      "--backend %s the ranks of one process share one NCCL communicator "
                      "(--comm auto or nccl)",
                      o->backend);
    if (!strcmp(o->backend, "cuda")) {
        /* one thread per GPU: refuse before starting any, saying what is missing */
        int ndev = 0;
        tw_status cs = tw_cuda_device_count(&ndev);
        if (cs != TW_OK || ndev == 0) {
            char why[512];
            snprintf(why, sizeof why, "%s", cs != TW_OK ? tw_error_text() : "0 devices");
            tw_clear_error();
            return TW_ERR(TW_ERR_UNSUPPORTED,
                          "no CUDA device: --backend cuda --tp %d runs one thread per GPU of this "
                          "host over one NCCL communicator (%s)",
                          n, why);
        }
        if (ndev < n)
            return TW_ERR(TW_ERR_INVALID,
                          "--backend cuda --tp %d runs one thread per GPU, but this host has %d "
                          "CUDA device%s (across hosts: mpirun, one rank per GPU)",
                          n, ndev, ndev == 1 ? "" : "s");
        if (!tw_comm_nccl_built())
            return TW_ERR(TW_ERR_UNSUPPORTED,
                          "--backend cuda --tp %d needs the nccl communicator, which is not built "
                          "(NCCL was not found at configure time)",
                          n);
    }
    tw_comm **h = calloc((size_t)n, sizeof *h);
    x->workers = calloc((size_t)n, sizeof *x->workers);
    if (!h || !x->workers) {
        free(h);
        return TW_ERR(TW_ERR_NOMEM, "%d rank threads", n);
    }
    tw_status st = tw_comm_threads_create(n, o->comm_timeout_s, h);
    if (st != TW_OK) {
        free(h);
        return st;
    }
    (void)tw_cpu_model(); /* cached on first use: filled before the rank threads read it */
    for (int r = 1; r < n; r++) {
        struct tw_run_worker *w = &x->workers[r];
        w->spec = *o;
        w->handle = h[r];
        atomic_store(&w->done, 0);
        if (pthread_create(&w->tid, NULL, tw_run_worker_main, w) != 0) {
            st = TW_ERR(TW_ERR_INTERNAL, "could not start the thread of rank %d of %d", r, n);
            tw_comm_threads_fail(h[0], st, "could not start every rank thread");
            for (int q = r; q < n; q++) tw_comm_destroy(h[q]);
            break;
        }
        x->nworkers_started = r;
    }
    tw_comm *mine = h[0];
    free(h);
    if (st != TW_OK) {
        tw_comm_destroy(mine);
        return st;
    }
    return tw_run_attach(x, mine);
}

/* Rank 0's end of the threads: its handle is gone (tw_run_close destroyed it first), so a
 * worker still waiting for it stops; each is joined within a bound, or the process ends. */
static void tw_run_join_threads(tw_run *x) {
    double bound = (x->spec.comm_timeout_s > 30 ? x->spec.comm_timeout_s : 30) + 30;
    double end = tw_now_s() + bound;
    for (int r = 1; r <= x->nworkers_started; r++) {
        struct tw_run_worker *w = &x->workers[r];
        while (!atomic_load(&w->done) && tw_now_s() < end) usleep(1000);
        if (!atomic_load(&w->done)) {
            /* a rank thread that neither finishes nor fails: never hang the command */
            static const char msg[] = "tokwatt: error: a rank thread did not end after rank 0 "
                                      "did; ending the process\n";
            ssize_t wr = write(STDERR_FILENO, msg, sizeof msg - 1);
            (void)wr;
            _exit(1);
        }
        pthread_join(w->tid, NULL);
    }
    free(x->workers);
    x->workers = NULL;
    x->nworkers_started = 0;
}

/* The communicator (tensor- and expert-parallel runs) and the backend. thread_handle: this
 * rank's handle when it is a worker thread of a threads run (NULL otherwise). */
static tw_status tw_run_setup(tw_run *x, tw_comm *thread_handle) {
    const tw_run_spec *o = &x->spec;
    x->rank = 0;
    x->nranks = 1;
    if (thread_handle) TW_TRY(tw_run_attach(x, thread_handle));
    TW_TRY(tw_run_spec_check_ep(o));
    int ep = o->ep > 1 ? o->ep : 1;
    int max_tp = 1; /* the most ranks a degree runs on */
    char tplist[256] = "";
    for (int i = 0, used = 0; i < o->ntp && used < (int)sizeof tplist; i++) {
        if (tw_run_degree_ranks(o, o->tp[i]) > max_tp) max_tp = tw_run_degree_ranks(o, o->tp[i]);
        used +=
            snprintf(tplist + used, sizeof tplist - (size_t)used, "%s%d", i ? "," : "", o->tp[i]);
    }
    x->threads = thread_handle != NULL || tw_run_wants_threads(o, max_tp);
    if (ep > 1 && !x->threads && !tw_comm_under_launcher())
        return TW_ERR(TW_ERR_INVALID,
                      "no MPI launcher (1 rank) but --ep is %d: launch with mpirun -np %d tokwatt "
                      "run --ep %d (or, on one host, tokwatt run --ep %d --comm threads)",
                      ep, ep, ep, ep);
    if (max_tp > 1 && !x->threads && !tw_comm_under_launcher())
        return TW_ERR(TW_ERR_INVALID,
                      "no MPI launcher (1 rank) but --tp is %s: launch with mpirun -np %d tokwatt "
                      "run --tp %s (or, on one host, tokwatt run --tp %s --comm threads)",
                      tplist, max_tp, tplist, tplist);
    if (x->threads && !thread_handle) TW_TRY(tw_run_start_threads(x, max_tp));
    if (!x->threads && tw_comm_under_launcher())
        TW_TRY(tw_comm_create(o->comm, o->backend, o->comm_timeout_s, &x->comm));
    if (x->comm) {
        x->rank = tw_comm_rank(x->comm);
        x->nranks = tw_comm_size(x->comm);
        /* each degree N runs on ranks 0..N-1: the launch needs the largest degree's ranks */
        if (x->nranks < max_tp) {
            if (ep > 1)
                return TW_ERR(TW_ERR_INVALID,
                              "%d ranks were launched but --ep is %d: launch with mpirun -np %d "
                              "tokwatt run --ep %d",
                              x->nranks, ep, ep, ep);
            if (o->ntp == 1)
                return TW_ERR(TW_ERR_INVALID,
                              "%d ranks were launched but --tp is %d: launch with mpirun -np %d "
                              "tokwatt run --tp %d",
                              x->nranks, o->tp[0], o->tp[0], o->tp[0]);
            return TW_ERR(TW_ERR_INVALID,
                          "%d ranks were launched but --tp is %s, whose largest degree %d needs %d "
                          "ranks: launch with mpirun -np %d tokwatt run --tp %s",
                          x->nranks, tplist, max_tp, max_tp, max_tp, tplist);
        }
        /* every rank must run the same scenario (the binary is checked on creation) */
        char canon[4096];
        size_t used = (size_t)snprintf(
            canon, sizeof canon, "model=%s|backend=%s|warmup=%d|reps=%d|seed=%ld|power=%s|watts=%g",
            x->cfg.json, o->backend, o->warmup, o->reps, o->seed, o->power, o->watts);
        const int *lists[3] = {o->batch, o->prompt, o->gen};
        const int counts[3] = {o->nbatch, o->nprompt, o->ngen};
        for (int l = 0; l < 3; l++)
            for (int i = 0; i < counts[l] && used < sizeof canon; i++)
                used +=
                    (size_t)snprintf(canon + used, sizeof canon - used, "|%d:%d", l, lists[l][i]);
        for (int i = 0; i < o->ndtype && used < sizeof canon; i++)
            used += (size_t)snprintf(canon + used, sizeof canon - used, "|dt%d", (int)o->dtype[i]);
        if (used < sizeof canon)
            used += (size_t)snprintf(canon + used, sizeof canon - used, "|tp=%s|ep=%d|skew=%.17g",
                                     tplist, ep, o->routing_skew);
        TW_TRY(tw_comm_check_consistency(x->comm, canon, strlen(canon), "the run configuration"));
        /* the CPU kernels' level sets their rounding (bf16 activations or not): ranks on
         * different levels would shard one computation with two arithmetics */
        if (!strcmp(o->backend, "cpu")) {
            const char *simd = tw_simd_name(tw_cpu_simd_active());
            TW_TRY(tw_comm_check_consistency(
                x->comm, simd, strlen(simd),
                "the CPU SIMD level (tokwatt info names it, TW_SIMD=LEVEL on every rank sets it)"));
        }
        const char *how = !x->threads ? ""
                          : !strcmp(o->backend, "cuda")
                              ? " (rank threads of this process, a GPU each)"
                              : " (rank threads of this process)";
        if (ep > 1) {
            tw_run_say(x, TW_RUN_NOTE,
                       "expert parallel over %d ranks (attention %s), communicator %s%s%s", ep,
                       o->tp[0] > 1 ? "tensor-parallel over the same ranks" : "replicated",
                       tw_comm_kind(x->comm), how,
                       ep < x->nranks ? "; the other ranks take part in no degree" : "");
        } else if (o->ntp == 1 && o->tp[0] == x->nranks) {
            tw_run_say(x, TW_RUN_NOTE, "tensor parallel over %d ranks, communicator %s%s",
                       x->nranks, tw_comm_kind(x->comm), how);
        } else {
            char idle[64] = "";
            if (max_tp < x->nranks)
                snprintf(idle, sizeof idle, "; ranks %d..%d take part in no degree", max_tp,
                         x->nranks - 1);
            tw_run_say(x, TW_RUN_NOTE,
                       "%d ranks launched, communicator %s%s; tensor-parallel degrees %s, each "
                       "on ranks 0..N-1 while the others wait%s",
                       x->nranks, tw_comm_kind(x->comm), how, tplist, idle);
        }
    }
    int device = x->comm && tw_comm_device(x->comm) >= 0 ? tw_comm_device(x->comm) : o->device;
    int threads = o->threads;
    if (threads == 0 && x->comm && x->comm->local_size > 1) {
        /* ranks sharing a host share its cores: all cores each would oversubscribe them */
        threads = tw_cpu_cores() / x->comm->local_size;
        if (threads < 1) threads = 1;
        tw_run_say(x, TW_RUN_NOTE, "%d ranks on this host: %d threads each (--threads to override)",
                   x->comm->local_size, threads);
    }
    tw_backend_params bp = {
        .threads = threads,
        .device = device,
        /* one process reads with every core (the machine's bandwidth); ranks sharing a host
         * each with their share, at the same time, as they run */
        .host_ceilings =
            x->nranks > 1 ? tw_machine_host_ceilings : tw_machine_host_ceilings_all_cores};
    TW_TRY(tw_backend_create_with(o->backend, &bp, &x->be));
    tw_device_desc dd;
    if (x->traits.accelerator && tw_backend_describe(x->be, &dd) == TW_OK)
        snprintf(x->device_name, sizeof x->device_name, "%s", dd.name);
    tw_clear_error();
    if (o->gemm) TW_TRY(tw_backend_set_option(x->be, "gemm", o->gemm));
    if (x->comm && tw_backend_stream(x->be))
        TW_TRY(tw_comm_set_stream(x->comm, tw_backend_stream(x->be)));
    return TW_OK;
}

/* Before anything is measured: every input and the output. */
static tw_status tw_run_check(tw_run *x) {
    /* the power source: --power nvml without NVML, a devices.json that does not parse */
    tw_power_opts po = tw_run_power_opts(x);
    tw_power_meter *pm = NULL;
    tw_status st = tw_power_open(&po, &pm);
    if (st != TW_OK) return tw_error_ctx(st, "power source %s", x->spec.power);
    tw_power_close(pm);
    /* the projection's growth curves and assumptions */
    tw_project_inputs *pin = malloc(sizeof *pin);
    st = pin ? tw_project_inputs_load(pin) : TW_ERR(TW_ERR_NOMEM, "projection inputs");
    free(pin);
    if (st != TW_OK) return tw_error_ctx(st, "projection inputs");
    if (x->rank != 0) return TW_OK;
    /* the destination: writable, and room for the result and the logits dump, whose size is
     * known in advance */
    uint64_t res_bytes, dump_bytes;
    tw_run_output_bytes(&x->spec, &x->cfg, &res_bytes, &dump_bytes);
    TW_TRY(tw_check_output_dir(x->spec.out_dir, res_bytes, "the result"));
    if (x->spec.dump) {
        char ddir[4096];
        tw_path_dirname(x->spec.dump, ddir, sizeof ddir);
        TW_TRY(tw_check_output_dir(ddir, dump_bytes, "the logits dump"));
    }
    /* provenance now: the git queries take time a signal's deadline may not leave */
    x->prov = tw_provenance_json(x->be->ops->name, x->start_unix, x->start_unix);
    return TW_OK;
}

/* Test hook: TW_TEST_END_CEILINGS_FAIL set makes the measurements at the end of a run fail, so
 * that tests see the measured rows kept when they do. */
static tw_status tw_run_end_fault(const char *what) {
    const char *f = getenv("TW_TEST_END_CEILINGS_FAIL");
    if (f && *f)
        return TW_ERR(TW_ERR_IO, "measuring %s: failure injected (TW_TEST_END_CEILINGS_FAIL)",
                      what);
    return TW_OK;
}

/* A ceiling's source, whose measurement at the end of the run failed: the rows are measured, so
 * they keep the first ceiling, and the source says why. */
static void tw_run_note_end_failed(char *src, size_t n) {
    size_t used = strlen(src);
    if (used + 1 < n)
        snprintf(src + used, n - used, "; not measured again at the end: %s", tw_error_text());
    tw_clear_error();
}

/* A ceiling's source, which the measurement at the end of the run raised. */
static void tw_run_note_end(char *src, size_t n) {
    size_t used = strlen(src);
    if (used + 24 < n) snprintf(src + used, n - used, "; at the end of the run");
}

/* The roofline ceilings, measured now by the backend (its ceilings slot) unless given, and the
 * datasheet figures of its device (configs/devices.json: memory bandwidth, dense bf16 peak). A
 * backend that cannot measure them says why in the sources; nothing is silently left out. */
static tw_status tw_run_ceilings(tw_run *x) {
    x->membw = x->spec.membw_gbps, x->peak = x->peak_bf16 = x->spec.peak_gflops;
    x->peak_dtype = TW_F32;
    snprintf(x->membw_src, sizeof x->membw_src, "given (--membw-gbps)");
    snprintf(x->peak_src, sizeof x->peak_src, "given (--peak-gflops)");
    snprintf(x->peak_bf16_src, sizeof x->peak_bf16_src, "given (--peak-gflops)");
    if (x->membw <= 0 || x->peak <= 0) {
        tw_run_progress p = {
            .kind = TW_RUN_PROGRESS_CEILING, .milestone = 1, .eta_s = -1, .what = "ceilings"};
        tw_run_show(x, &p);
        tw_ceilings c;
        memset(&c, 0, sizeof c);
        tw_status st = tw_backend_ceilings(x->be, &c);
        if (st == TW_ERR_UNSUPPORTED) {
            /* no ceilings slot, or none it can measure: the sources say so */
            if (x->membw <= 0)
                snprintf(x->membw_src, sizeof x->membw_src, "not measured: %.140s",
                         tw_error_text());
            if (x->peak <= 0) {
                snprintf(x->peak_src, sizeof x->peak_src, "not measured: %.140s", tw_error_text());
                snprintf(x->peak_bf16_src, sizeof x->peak_bf16_src, "%s", x->peak_src);
            }
            tw_clear_error();
        } else if (st != TW_OK) {
            return tw_error_ctx(st, "measuring the %s backend's ceilings", x->be->ops->name);
        } else {
            if (x->membw <= 0) {
                x->membw = c.read_bw_bytes_per_s / 1e9;
                snprintf(x->membw_src, sizeof x->membw_src, "%s", c.read_method);
                snprintf(x->membw_method, sizeof x->membw_method, "%s", c.read_detail);
                /* the host's bandwidth moves on a shared machine: measured again at the end */
                x->membw_measured = !x->traits.accelerator;
            }
            if (x->peak <= 0) {
                x->peak = c.peak_flops / 1e9;
                x->peak_dtype = c.peak_dtype;
                /* a neighbour on the host's cores lowers it: measured again at the end */
                x->peak_measured = !x->traits.accelerator && c.peak_dtype == TW_F32;
                snprintf(x->peak_src, sizeof x->peak_src, "%s", c.peak_method);
                /* bf16 rows' MFU: the bf16 peak (the peak itself where it is bf16's) */
                if (c.peak_dtype == TW_BF16) {
                    x->peak_bf16 = x->peak;
                    snprintf(x->peak_bf16_src, sizeof x->peak_bf16_src, "%s", c.peak_method);
                } else if (c.peak_bf16_flops > 0) {
                    x->peak_bf16 = c.peak_bf16_flops / 1e9;
                    snprintf(x->peak_bf16_src, sizeof x->peak_bf16_src, "%s", c.peak_bf16_method);
                } else {
                    x->peak_bf16 = 0;
                    snprintf(x->peak_bf16_src, sizeof x->peak_bf16_src, "not measured");
                }
            }
        }
    }
    if (x->membw <= 0 && !strncmp(x->membw_src, "given", 5))
        snprintf(x->membw_src, sizeof x->membw_src, "not measured");
    if (x->peak <= 0 && !strncmp(x->peak_src, "given", 5))
        snprintf(x->peak_src, sizeof x->peak_src, "not measured");
    if (x->peak_bf16 <= 0 && !strncmp(x->peak_bf16_src, "given", 5))
        snprintf(x->peak_bf16_src, sizeof x->peak_bf16_src, "not measured");
    /* the datasheet of the device the backend describes */
    tw_device_desc d;
    tw_status st = tw_backend_describe(x->be, &d);
    if (st != TW_OK) {
        snprintf(x->ds_src, sizeof x->ds_src, "no datasheet: %.200s", tw_error_text());
        tw_clear_error();
        return TW_OK;
    }
    tw_device_entry ent;
    int found = 0;
    TW_TRY(tw_devices_lookup(d.name, &ent, &found));
    if (!found) {
        snprintf(x->ds_src, sizeof x->ds_src, "no configs/devices.json entry matches \"%.150s\"",
                 d.name);
        return TW_OK;
    }
    x->ds_membw = ent.mem_bw_bytes_per_s / 1e9;
    x->ds_peak = ent.peak_bf16_flops / 1e9;
    snprintf(x->ds_src, sizeof x->ds_src, "devices.json: %.120s (rated; dense bf16 peak)",
             ent.name);
    return TW_OK;
}

tw_status tw_run_open(const tw_run_spec *spec, const tw_run_callbacks *cb, tw_run **out) {
    return tw_run_open_rank(spec, cb, NULL, out);
}

static tw_status tw_run_open_rank(const tw_run_spec *spec, const tw_run_callbacks *cb,
                                  tw_comm *thread_handle, tw_run **out) {
    tw_run *x = calloc(1, sizeof *x);
    *out = x;
    if (!x) {
        tw_comm_destroy(thread_handle);
        return TW_ERR(TW_ERR_NOMEM, "run");
    }
    x->spec = *spec;
    if (cb) x->cb = *cb;
    x->traits = tw_run_traits_of(spec->backend);
    x->start_unix = tw_unix_now_s();
    /* a worker's communicator first, so that tw_run_close destroys it whatever fails */
    tw_status st = tw_model_load(spec->model, &x->cfg);
    if (st == TW_OK) x->have_cfg = 1;
    if (st != TW_OK && thread_handle) {
        x->thread_handle = thread_handle;
        return tw_error_ctx(st, "rank %d", tw_comm_rank(thread_handle));
    }
    TW_TRY(st);
    TW_TRY(tw_run_setup(x, thread_handle));
    if (x->comm) {
        TW_TRY(tw_comm_gather_hosts(x->comm, &x->hosts));
        x->have_hosts = 1;
    }
    TW_TRY(tw_run_check(x));
    /* every combination, planned before any runs */
    TW_TRY(tw_run_plan_make(spec, &x->cfg, x->be, x->rank, &x->plan));
    TW_TRY(tw_run_ceilings(x));
    x->work_t0 = tw_now_s();
    return TW_OK;
}

/* ---- the loops ---------------------------------------------------------------------------------
 */

static void tw_run_row_plan(const tw_run *x, const tw_run_combo *k, const tw_run_group *g,
                            tw_result_plan *p) {
    const tw_mem_plan *eng = g->shared ? &g->plan : &k->plan;
    p->present = 1;
    p->per_rank = tw_run_degree_ranks(&x->spec, k->tp) > 1;
    p->available_bytes = (long long)k->plan.available_bytes;
    p->weights_bytes = (long long)k->plan.weights_bytes;
    p->kv_cache_bytes = (long long)k->plan.kv_bytes;
    p->activation_bytes = (long long)k->plan.act_bytes;
    p->total_bytes = (long long)k->plan.total_bytes;
    p->engine_max_batch = g->shared ? g->max_batch : k->batch;
    p->engine_max_prompt = g->shared ? g->max_prompt : k->prompt;
    p->engine_max_seq = g->shared ? g->max_seq : k->prompt + k->gen;
    p->engine_shared = g->shared;
    p->engine_weights_bytes = (long long)eng->weights_bytes;
    p->engine_kv_cache_bytes = (long long)eng->kv_bytes;
    p->engine_activation_bytes = (long long)eng->act_bytes;
    p->engine_total_bytes = (long long)eng->total_bytes;
}

/* The file's parts beside the rows (rank 0). */
static tw_status tw_run_assemble(tw_run *x, const char *incomplete, tw_result *res) {
    res->schema_version = TW_RESULT_SCHEMA_MAJOR;
    res->schema_minor = TW_RESULT_SCHEMA_MINOR;
    snprintf(res->kind, sizeof res->kind, "%s", x->plan.ncombo > 1 ? "sweep" : "run");
    res->complete = !incomplete[0];
    snprintf(res->incomplete_reason, sizeof res->incomplete_reason, "%s", incomplete);
    if (x->intr_sig) {
        res->interrupted = 1;
        snprintf(res->interrupted_signal, sizeof res->interrupted_signal, "%s",
                 tw_signal_name(x->intr_sig));
        res->interrupted_rank = x->intr_rank < 0 ? 0 : x->intr_rank;
    }
    json_error_t jerr;
    res->model = json_loads(x->cfg.json, 0, &jerr);
    if (!strcmp(res->kind, "run") && res->nrows == 1) {
        /* a single run: the file's completeness is its row's */
        res->rows[0].complete = res->complete;
        snprintf(res->rows[0].incomplete_reason, sizeof res->rows[0].incomplete_reason, "%s",
                 incomplete);
    }
    res->roofline.present = 1;
    res->roofline.membw_gbps = x->membw > 0 ? x->membw : NAN;
    res->roofline.peak_gflops = x->peak > 0 ? x->peak : NAN;
    snprintf(res->roofline.membw_source, sizeof res->roofline.membw_source, "%s", x->membw_src);
    snprintf(res->roofline.peak_source, sizeof res->roofline.peak_source, "%s", x->peak_src);
    snprintf(res->roofline.membw_method, sizeof res->roofline.membw_method, "%s", x->membw_method);
    res->roofline.peak_bf16_gflops = x->peak_bf16 > 0 ? x->peak_bf16 : NAN;
    snprintf(res->roofline.peak_bf16_source, sizeof res->roofline.peak_bf16_source, "%s",
             x->peak_bf16_src);
    snprintf(res->roofline.peak_dtype, sizeof res->roofline.peak_dtype, "%s",
             tw_dtype_name(x->peak_dtype));
    res->roofline.has_datasheet = 1;
    res->roofline.datasheet_membw_gbps = x->ds_membw > 0 ? x->ds_membw : NAN;
    res->roofline.datasheet_peak_gflops = x->ds_peak > 0 ? x->ds_peak : NAN;
    snprintf(res->roofline.datasheet_source, sizeof res->roofline.datasheet_source, "%s",
             x->ds_src);
    res->memory.present = 1;
    res->memory.params = (long long)tw_model_params(&x->cfg);
    const tw_run_combo *k0 = &x->plan.combos[0];
    if (k0->planned) {
        /* the first combination's own plan, for the record (each row has its own) */
        res->memory.has_plan = 1;
        res->memory.weights_bytes = (long long)k0->plan.weights_bytes;
        res->memory.kv_cache_bytes = (long long)k0->plan.kv_bytes;
        res->memory.activation_bytes = (long long)k0->plan.act_bytes;
        res->memory.per_rank = tw_run_degree_ranks(&x->spec, k0->tp) > 1;
    }
    if (x->comm) {
        tw_result_comm *c = &res->comm;
        c->present = 1;
        snprintf(c->kind, sizeof c->kind, "%s", tw_comm_kind(x->comm));
        c->ranks = x->nranks;
        c->hosts = x->hosts.n_hosts;
        c->max_ranks_per_host = x->hosts.max_per_host;
        c->rank_hosts = calloc((size_t)(x->hosts.size > 0 ? x->hosts.size : 1), sizeof(char *));
        if (!c->rank_hosts) return TW_ERR(TW_ERR_NOMEM, "result");
        for (int r = 0; r < x->hosts.size; r++) {
            if (!(c->rank_hosts[r] = strdup(x->hosts.host[r])))
                return TW_ERR(TW_ERR_NOMEM, "result");
            c->nrank_hosts++;
        }
        c->devices_per_rank = 1;
        c->timeout_s = x->spec.comm_timeout_s;
    }
    double end_unix = tw_unix_now_s();
    if (!x->prov) x->prov = tw_provenance_json(x->be->ops->name, x->start_unix, end_unix);
    char t1[64];
    tw_utc_iso(t1, sizeof t1, end_unix);
    json_object_set_new(x->prov, "end_utc", json_string(t1));
    tw_run_device_provenance(x, x->prov);
    res->provenance = json_incref(x->prov);
    return TW_OK;
}

/* A test hook (documented in README "Running on GPUs and across hosts"): with
 * TW_RUN_FAIL_RANK=R, rank R of a multi-rank run fails on purpose with its engine built, before
 * it measures its first combination, while the other ranks are measuring theirs; the tests check
 * that the run then ends with that rank named, within a bounded time. */
static tw_status tw_run_injected_failure(const tw_run *x) {
    const char *e = getenv("TW_RUN_FAIL_RANK");
    if (!e || !*e || x->nranks < 2) return TW_OK;
    char *end;
    long r = strtol(e, &end, 10);
    if (*end || r != x->rank) return TW_OK;
    return TW_ERR(TW_ERR_INTERNAL, "rank %d: injected failure (TW_RUN_FAIL_RANK=%ld, a test hook)",
                  x->rank, r);
}

tw_status tw_run_execute(tw_run *r, tw_result *result, tw_run_outcome *oc) {
    return tw_run_execute_with(r, tw_run_measure_repetitions, NULL, result, oc);
}

tw_status tw_run_execute_with(tw_run *x, tw_run_measure_fn measure, void *ctx, tw_result *res,
                              tw_run_outcome *oc) {
    const tw_run_spec *o = &x->spec;
    tw_run_plan *plan = &x->plan;
    memset(res, 0, sizeof *res);
    memset(oc, 0, sizeof *oc);
    tw_status st = TW_OK;
    tw_engine *e = NULL;
    char incomplete[768] = "";
    int ncombo = plan->ncombo;
    res->rows = calloc((size_t)ncombo, sizeof *res->rows);
    if (!res->rows) return TW_ERR(TW_ERR_NOMEM, "result rows");

    /* degree by degree: ranks 0..n-1 (n = tp, or the expert-parallel degree when larger) run it
     * over a sub-communicator (the launch communicator itself when n is the launch size), the
     * others wait at a barrier. An interruption (a signal here or on another rank, seen by
     * tw_run_stopped or as TW_ERR_INTERRUPTED from a collective) leaves the loops for the
     * result. */
    for (int ti = 0; ti < o->ntp && !incomplete[0] && !tw_run_stopped(x); ti++) {
        int tp = o->tp[ti], ranks = tw_run_degree_ranks(o, tp);
        int own_comm = 0;
        if (x->comm && ranks == x->nranks) {
            x->tp_comm = x->comm;
        } else if (x->comm) {
            /* collective over every launched rank; NULL on ranks >= n */
            if ((st = tw_comm_sub(x->comm, ranks, &x->tp_comm)) != TW_OK) goto stopped;
            own_comm = 1;
            if (x->tp_comm && tw_backend_stream(x->be) &&
                (st = tw_comm_set_stream(x->tp_comm, tw_backend_stream(x->be))) != TW_OK)
                goto fail;
        }
        if (ncombo > 1 && o->ntp > 1)
            tw_run_say(x, TW_RUN_NOTE, "tensor-parallel degree %d: ranks 0..%d%s", tp, tp - 1,
                       tp < x->nranks ? ", the others wait" : "");
        /* one engine per weight dtype, sized for the largest combination of that dtype */
        for (int d = 0; d < o->ndtype && !incomplete[0] && x->rank < ranks; d++) {
            const tw_run_group *g = &plan->groups[ti * o->ndtype + d];
            if (!g->shared)
                tw_run_say(x, TW_RUN_NOTE,
                           "the largest %s combinations do not fit together: one engine per "
                           "combination",
                           tw_dtype_name(g->dtype));
            tw_run_say(x, TW_RUN_NOTE,
                       "model %s: %.3f B parameters, weights %.2f GiB (%s) per rank, KV cache "
                       "%.2f GiB (%s), activations %.2f GiB; %.2f GiB available",
                       x->cfg.name, (double)tw_model_params(&x->cfg) / 1e9,
                       g->plan.weights_bytes / 1073741824.0, tw_dtype_name(g->dtype),
                       g->plan.kv_bytes / 1073741824.0, tw_dtype_name(g->kv_dtype),
                       g->plan.act_bytes / 1073741824.0, g->plan.available_bytes / 1073741824.0);
            for (int i = 0; i < ncombo && !incomplete[0]; i++) {
                const tw_run_combo *k = &plan->combos[i];
                if (k->group != ti * o->ndtype + d) continue;
                x->row = i + 1;
                if (!e) {
                    tw_engine_opts ek =
                        g->shared ? tw_run_engine_opts(x, tp, g->dtype, g->kv_dtype, g->max_batch,
                                                       g->max_prompt, g->max_seq)
                                  : tw_run_engine_opts(x, tp, k->dtype, k->kv_dtype, k->batch,
                                                       k->prompt, k->prompt + k->gen);
                    tw_build_progress bp = {x, tw_now_s(), tw_dtype_name(k->dtype)};
                    ek.progress = tw_run_build_progress;
                    ek.progress_ctx = &bp;
                    double tb = tw_now_s();
                    if ((st = tw_engine_create(&ek, &e)) != TW_OK) {
                        if (st == TW_ERR_INTERRUPTED || tw_run_stopped(x)) goto stopped;
                        goto fail;
                    }
                    tw_run_say(x, TW_RUN_NOTE, "engine ready on %s (%d threads) in %.1f s",
                               x->be->ops->name, x->be->threads, tw_now_s() - tb);
                }
                if ((st = tw_run_injected_failure(x)) != TW_OK) goto fail;
                tw_result_row *row = &res->rows[res->nrows];
                memset(row, 0, sizeof *row);
                if ((st = measure(x, e, k, row, ctx)) != TW_OK) {
                    tw_result_row_free(row);
                    if (x->comm || res->nrows == 0) goto fail;
                    /* keep what the earlier combinations measured: write them, marked
                     * incomplete */
                    char name[160];
                    tw_run_combo_name(k, o->ntp > 1, name, sizeof name);
                    snprintf(incomplete, sizeof incomplete, "combination %s failed: %.150s", name,
                             tw_error_text());
                    tw_run_say(x, TW_RUN_ERROR, "%s", tw_error_text());
                    st = TW_OK;
                    break;
                }
                if (!row->complete)
                    snprintf(incomplete, sizeof incomplete, "%s", row->incomplete_reason);
                if (row->metrics.repetitions_complete > 0) {
                    tw_run_row_plan(x, k, g, &row->plan);
                    if (row->has_dump && !row->dump_written) oc->dump_failed = 1;
                    res->nrows++;
                } else {
                    tw_result_row_free(row);
                }
                if (x->intr_sig && !incomplete[0]) {
                    char who[64];
                    tw_run_signal_text(x, who, sizeof who);
                    snprintf(incomplete, sizeof incomplete, "%s after row %d", who, x->row);
                }
                if (!g->shared) {
                    tw_engine_destroy(e);
                    e = NULL;
                }
            }
            tw_engine_destroy(e);
            e = NULL;
        }
        if (own_comm) tw_comm_destroy(x->tp_comm);
        x->tp_comm = NULL;
        if (x->intr_sig) break;
        /* the ranks that sat out wait here (sleeping, without the collective timeout) for the
         * working ones, before the next degree or the final collectives */
        if (x->comm && ranks < x->nranks &&
            (st = tw_comm_idle_barrier(x->comm, TW_RUN_IDLE_WAIT_S)) != TW_OK)
            goto stopped;
        if (x->comm && ti + 1 < o->ntp) {
            /* all agree whether to go on: a failed combination on any rank stops the sweep
             * everywhere, so that no rank waits in a degree the others skip */
            double stop = 0;
            if ((st = tw_comm_max_f64(x->comm, incomplete[0] ? 1.0 : 0.0, &stop)) != TW_OK)
                goto stopped;
            if (stop > 0 && !incomplete[0])
                snprintf(incomplete, sizeof incomplete,
                         "another rank stopped the sweep after tensor-parallel degree %d", tp);
        }
    }
stopped:
    /* a collective that returned TW_ERR_INTERRUPTED, or a signal between steps */
    if (st == TW_ERR_INTERRUPTED || tw_run_stopped(x)) {
        tw_run_stopped(x);
        if (!x->intr_sig) x->intr_sig = SIGINT;
        st = TW_OK;
        tw_clear_error();
        if (x->tp_comm && x->tp_comm != x->comm) tw_comm_destroy(x->tp_comm);
        x->tp_comm = NULL;
        tw_engine_destroy(e);
        e = NULL;
        if (!incomplete[0]) {
            char who[64];
            tw_run_signal_text(x, who, sizeof who);
            snprintf(incomplete, sizeof incomplete, "%s before row %d started", who,
                     x->row ? x->row : 1);
        }
    } else if (st != TW_OK) {
        goto fail;
    }
    if (incomplete[0] && res->nrows < ncombo) {
        char more[128];
        snprintf(more, sizeof more, "; %d of %d combinations measured", res->nrows, ncombo);
        strncat(incomplete, more, sizeof incomplete - strlen(incomplete) - 1);
    }
    oc->measured = res->nrows;
    oc->incomplete = incomplete[0] != 0;
    oc->interrupted = x->intr_sig != 0;
    if (x->rank != 0) {
        /* rank 0 holds the result */
        tw_result_free(res);
        return TW_OK;
    }
    if (res->nrows == 0) {
        char who[64] = "";
        if (x->intr_sig) tw_run_signal_text(x, who, sizeof who);
        snprintf(oc->nothing_why, sizeof oc->nothing_why, "%s%s",
                 x->intr_sig ? "interrupted by " : "stopped", who);
        tw_result_free(res);
        return TW_OK;
    }
    /* The read ceiling again, at the end: on a shared host the bandwidth moves from minute to
     * minute, and a ceiling taken in a busy moment is one the run can beat. The larger of the
     * two measurements is the ceiling, and every row's fraction is taken against it. */
    if (x->membw_measured && !x->intr_sig) {
        tw_membw_result mb;
        if (tw_run_end_fault("the read ceiling") != TW_OK ||
            tw_machine_read_ceiling(x->nranks > 1 ? x->be->threads : 0, 5, &mb) != TW_OK) {
            tw_run_note_end_failed(x->membw_method, sizeof x->membw_method);
        } else if (mb.read_gbps > x->membw) {
            x->membw = mb.read_gbps;
            snprintf(x->membw_method, sizeof x->membw_method, "%.200s; at the end of the run",
                     mb.read_method);
        }
        for (int i = 0; i < res->nrows; i++)
            tw_metrics_set_ceiling_fractions(&res->rows[i].metrics, x->membw, NAN);
    }
    /* The compute peaks too: a moment in which another job shared the cores gives a peak that
     * the run's own kernels beat (seen on a shared Zen 4: 245 against 460 GFLOP/s bf16). */
    tw_bf16_peak bp; /* measures the fp32 FMA peak too (fma_gflops) */
    if (x->peak_measured && !x->intr_sig) {
        if (tw_run_end_fault("the compute peaks") != TW_OK ||
            tw_machine_bf16_peak(x->be->threads, &bp) != TW_OK) {
            tw_run_note_end_failed(x->peak_src, sizeof x->peak_src);
        } else {
            if (bp.fma_gflops > x->peak) {
                x->peak = bp.fma_gflops;
                tw_run_note_end(x->peak_src, sizeof x->peak_src);
            }
            if (x->peak_bf16 > 0 && bp.gflops > x->peak_bf16) {
                x->peak_bf16 = bp.gflops;
                snprintf(x->peak_bf16_src, sizeof x->peak_bf16_src, "measured bf16 peak: %.200s",
                         bp.method);
                tw_run_note_end(x->peak_bf16_src, sizeof x->peak_bf16_src);
            }
            for (int i = 0; i < res->nrows; i++) {
                const int bf = !strcmp(res->rows[i].scenario.dtype, "bf16");
                tw_metrics_set_ceiling_fractions(&res->rows[i].metrics, x->membw,
                                                 bf && x->peak_bf16 > 0 ? x->peak_bf16 : x->peak);
            }
        }
    }
    if ((st = tw_run_assemble(x, incomplete, res)) != TW_OK) goto fail;
    return TW_OK;
fail:
    tw_engine_destroy(e);
    if (x->tp_comm && x->tp_comm != x->comm) tw_comm_destroy(x->tp_comm);
    x->tp_comm = NULL;
    tw_result_free(res);
    return st;
}

/* ---- writing the result, and the end ------------------------------------------------------------
 */

tw_status tw_run_save(tw_run *x, const tw_result *res, const char *out_file, tw_run_saved *s) {
    memset(s, 0, sizeof *s);
    if (out_file)
        snprintf(s->path, sizeof s->path, "%s", out_file);
    else
        tw_result_default_path(s->path, sizeof s->path, x->spec.out_dir, x->cfg.name,
                               x->start_unix);
    json_t *root = NULL;
    TW_TRY(tw_result_to_json(res, &root));
    if (tw_result_write(root, s->path, s->written, sizeof s->written) == TW_OK) {
        s->renamed = strcmp(s->written, s->path) != 0;
    } else {
        /* the destination failed after the check (removed, full, read-only since): keep the
         * measurement in a temporary file and say where */
        s->failed = 1;
        snprintf(s->error, sizeof s->error, "%s", tw_error_text());
        if (tw_result_write_fallback(root, x->cfg.name, s->written, sizeof s->written) != TW_OK) {
            snprintf(s->fallback_error, sizeof s->fallback_error, "%s", tw_error_text());
            s->written[0] = '\0';
        }
        tw_clear_error();
    }
    json_decref(root);
    return TW_OK;
}

void tw_run_finish(tw_run *x, int exit_code) {
    if (!x || !x->comm || !x->intr_sig) return;
    /* rank threads of one process: each has stopped on the signal; rank 0's tw_run_close joins
     * them after it has written */
    if (x->threads) return;
    if (x->rank == 0) {
        /* the other ranks wait for this one (or were abandoned in a collective): end them */
        fflush(stdout);
        tw_comm_abort(x->comm, exit_code);
    }
    /* rank 0 writes what was measured and ends the job; this rank must not exit first, or the
     * launcher would end rank 0 before it has written. Waits, bounded, then gives up. */
    double end = tw_now_s() + (x->spec.comm_timeout_s > 30 ? x->spec.comm_timeout_s : 30);
    while (tw_now_s() < end) usleep(20000);
}

void tw_run_abort(tw_run *x, int exit_code) {
    if (x && x->comm) {
        fflush(stdout);
        tw_comm_abort(x->comm, exit_code);
    }
}

void tw_run_close(tw_run *x) {
    if (!x) return;
    tw_run_plan_free(&x->plan);
    if (x->have_hosts) tw_comm_free_hosts(&x->hosts);
    json_decref(x->prov);
    tw_backend_destroy(x->be);
    tw_comm_destroy(x->comm);
    if (x->thread_handle && x->thread_handle != x->comm) tw_comm_destroy(x->thread_handle);
    if (x->workers) tw_run_join_threads(x);
    if (x->have_cfg) tw_model_free(&x->cfg);
    free(x);
}
