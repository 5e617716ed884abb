/* `tokwatt run`: synthetic transformer inference, the suite's main job.
 * Plans memory, builds the engine, runs warm-up and measured repetitions of prefill + decode for
 * every combination of the swept options (--batch, --prompt, --gen, --dtype take comma-separated
 * lists, as llama-bench does), and writes one result file (metrics as medians with spread,
 * scenario, model, energy, provenance). Every combination is planned before the first runs; one
 * that does not fit is refused by name. An interrupted run (SIGINT) still writes what it
 * measured, marked incomplete. Under mpirun with --tp N the engine is tensor-parallel; rank 0
 * writes the result. --tp takes a list too: the tensor-parallel degree is the outermost loop of
 * the sweep, each degree running on ranks 0..N-1 of the launch (a sub-communicator) while the
 * other ranks wait.
 * What is measured is never lost: the output location is checked before the first
 * measurement; SIGINT, SIGTERM and SIGHUP (on any rank) end the run with rank 0 writing what was
 * measured, marked incomplete with the signal and the rank; a failed write falls back to a
 * temporary file that is named; a failed logits dump still writes the result. */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tw_backend.h"
#include "tw_backend_cuda.h"
#include "tw_cli.h"
#include "tw_cmds.h"
#include "tw_comm.h"
#include "tw_cuda_info.h"
#include "tw_engine.h"
#include "tw_machine.h"
#include "tw_metrics.h"
#include "tw_model.h"
#include "tw_npy.h"
#include "tw_power.h"
#include "tw_progress.h"
#include "tw_published.h"
#include "tw_project.h"
#include "tw_result_schema.h"
#include "tw_results.h"
#include "tw_util.h"

static const char *tw_run_usage =
    "tokwatt run [--model NAME|PATH] [--backend cpu|cuda] [--dtype bf16|fp32[,..]] "
    "[--kv-dtype bf16|fp32]\n"
    "            [--batch B[,..]] [--prompt P[,..]] [--gen G[,..]] [--warmup W] [--reps R]\n"
    "            [--threads T] [--seed S] [--out DIR|FILE.json] [--format md|json|csv]\n"
    "            [--dump-logits FILE.npy] [--power auto|nvml|rapl|assumed|none] [--watts W]\n"
    "            [--sample-ms MS] [--membw-gbps X] [--peak-gflops X] [--device N] [--progress]\n"
    "            [--gemm tokwatt|cublas] [--cuda-graph]  (CUDA backend: GEMM choice; decode steps\n"
    "            replayed as a CUDA graph)\n"
    "            [--preset NAME]  (configs/scenarios: defaults mirroring a published setup)\n"
    "            [--tp N[,..] [--comm auto|mpi|nccl|local] [--comm-timeout S]]  (under mpirun\n"
    "            -np M, M >= every N; each degree N runs on ranks 0..N-1)";

static const char *tw_run_help =
    "  --threads T   worker threads; 0 (the default) means automatic: every core, divided by\n"
    "                the ranks sharing the host under mpirun\n"
    "  --seed S      seed of the synthetic weights and prompts (default 1, as tokwatt export)\n"
    "  --out         a folder (default results/: <UTC time>-<host>-<model>.json, a -2, -3...\n"
    "                suffix when the name is taken) or a new FILE.json; checked before anything\n"
    "                runs (writable, room for the result and the logits dump)\n"
    "  --watts W     assumed watts per device (> 0), labelled as assumed\n"
    "  --progress    progress on stderr (engine build, row i/N, repetition, decode step, ETA)\n"
    "                also when stderr is not a terminal (on a terminal it is always shown)\n"
    "  signals       SIGINT, SIGTERM, SIGHUP (any rank): the run stops and writes what it\n"
    "                measured, marked incomplete (exit 1); a second signal quits at once\n"
    "  exit codes    0 complete, 1 runtime failure or incomplete run, 2 bad argument";

#define TW_RUN_MAX_LIST 32
/* How long a rank that sits out a tensor-parallel degree waits for the working ranks (a week):
 * the degree's combinations may take hours. A working rank that fails ends the job itself
 * (tw_comm_abort), so this bound only matters for a rank that hangs without failing. */
#define TW_RUN_IDLE_WAIT_S (7 * 86400.0)

typedef struct {
    const char *model, *backend, *out, *dump, *power, *comm, *gemm;
    const char *preset_name;
    tw_preset preset; /* valid when preset_name */
    int batch[TW_RUN_MAX_LIST], nbatch;
    int prompt[TW_RUN_MAX_LIST], nprompt;
    int gen[TW_RUN_MAX_LIST], ngen;
    int tp[TW_RUN_MAX_LIST], ntp;
    tw_dtype dtype[4];
    int ndtype;
    tw_dtype kv_dtype;
    int kv_given;
    int warmup, reps, threads, device, sample_ms, cuda_graph, progress;
    char out_dir[4096]; /* the folder the result goes into */
    int out_is_file;    /* --out names FILE.json */
    long seed;
    tw_format fmt;
    double membw_gbps, peak_gflops, watts, comm_timeout_s;
} tw_run_opts;

/* One combination of the swept options. */
typedef struct {
    int tp; /* tensor-parallel degree: ranks 0..tp-1 run it */
    tw_dtype dtype, kv_dtype;
    int batch, prompt, gen;
} tw_combo;

typedef struct {
    double ttft_s;   /* prefill, including the first token's argmax */
    double decode_s; /* all decode steps */
    double *step_s;  /* [gen - 1] */
    int complete;
} tw_rep;

/* What the whole run shares. */
typedef struct {
    const tw_run_opts *o;
    tw_model_config cfg;
    tw_backend *be;
    tw_comm *comm;    /* the launch: every rank (NULL for one process without a launcher) */
    int rank, nranks; /* in the launch */
    tw_comm *tp_comm; /* the current degree's ranks 0..tp-1 (NULL on the ranks outside) */
    int max_tp;       /* largest --tp degree */
    double membw, peak;
    const char *membw_src, *peak_src;
    int intr_sig, intr_rank;    /* the interruption that stopped the run (0: none) */
    const tw_comm_hosts *hosts; /* each launched rank's host (tensor-parallel runs) */
    /* progress: combinations run so far and in all, work done (tokens) for the ETA */
    int row, nrows;
    double work_total, work_done, work_t0;
} tw_run_ctx;

/* Figures of one combination, for the table. */
typedef struct {
    tw_combo c;
    tw_metrics m;
    double j_per_token_e2e, mean_w;
    int energy_measured, assumed, power_devices;
    char headline[1024];
    char incomplete[400];
    char dump_error[512]; /* the logits dump failed (the result is still written) */
    int dump_written;
    int reps_done;
} tw_combo_summary;

/* The signal that stops the run, caught here or (under MPI) reported by another rank. */
static int tw_run_stopped(tw_run_ctx *x) {
    if (x->intr_sig) return x->intr_sig;
    int r = -1, sig = tw_comm_interrupted(&r);
    if (sig) {
        x->intr_sig = sig;
        x->intr_rank = r;
    }
    return sig;
}

/* "SIGTERM" alone, or "SIGTERM on rank 1" when ranks are launched. */
static void tw_run_intr_text(const tw_run_ctx *x, char *buf, size_t n) {
    if (x->comm)
        snprintf(buf, n, "%s on rank %d", tw_signal_name(x->intr_sig), x->intr_rank);
    else
        snprintf(buf, n, "%s", tw_signal_name(x->intr_sig));
}

static double tw_run_eta(const tw_run_ctx *x) {
    if (!(x->work_done > 0) || x->work_t0 <= 0) return -1;
    double el = tw_now_s() - x->work_t0;
    return (x->work_total - x->work_done) * el / x->work_done;
}

/* Engine build progress (tw_engine_opts.progress): a line per layer; stops a build when a
 * signal came in, so that Ctrl-C during a long build ends it promptly. */
typedef struct {
    tw_run_ctx *x;
    double t0;
    const char *what;
} tw_build_progress;

static int tw_run_build_progress(void *ctx, int done, int total) {
    tw_build_progress *b = ctx;
    if (tw_run_stopped(b->x)) return 1;
    if (b->x->rank != 0) return 0;
    double el = tw_now_s() - b->t0;
    tw_progress_show(done == total, done ? el * (total - done) / done : -1,
                     "building the engine (%s): layer %d/%d", b->what, done, total);
    return 0;
}

static tw_status tw_parse_dtypes(const char *s, tw_dtype *out, int max, int *n) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (*n >= max) return TW_ERR(TW_ERR_INVALID, "option --dtype: more than %d values", max);
        tw_status st = tw_dtype_parse(tok, &out[*n]);
        if (st != TW_OK) return tw_error_ctx(st, "option --dtype");
        for (int i = 0; i < *n; i++)
            if (out[i] == out[*n]) return TW_ERR(TW_ERR_INVALID, "option --dtype: %s twice", tok);
        (*n)++;
    }
    if (*n == 0) return TW_ERR(TW_ERR_INVALID, "option --dtype: empty list");
    return TW_OK;
}

static tw_status tw_run_parse(tw_args *a, tw_run_opts *o) {
    o->progress = tw_args_flag(a, "--progress");
    const char *dt, *kvdt;
    /* a preset (configs/scenarios) gives the defaults; options given explicitly override it */
    static char d_batch[16] = "1", d_prompt[16] = "128", d_gen[16] = "32", d_tp[16] = "1";
    const char *d_model = "llama-3.2-1b", *d_dtype = "bf16", *d_kv = NULL;
    TW_TRY(tw_args_str(a, "--preset", NULL, &o->preset_name));
    if (o->preset_name) {
        TW_TRY(tw_preset_load(o->preset_name, &o->preset));
        snprintf(d_batch, sizeof d_batch, "%d", o->preset.batch);
        snprintf(d_prompt, sizeof d_prompt, "%d", o->preset.prompt);
        snprintf(d_gen, sizeof d_gen, "%d", o->preset.gen);
        snprintf(d_tp, sizeof d_tp, "%d", o->preset.tp);
        d_model = o->preset.model;
        d_dtype = o->preset.dtype;
        d_kv = o->preset.kv_dtype[0] ? o->preset.kv_dtype : NULL;
    }
    TW_TRY(tw_args_str(a, "--model", d_model, &o->model));
    TW_TRY(tw_args_str(a, "--backend", "cpu", &o->backend));
    TW_TRY(tw_args_str(a, "--gemm", NULL, &o->gemm));
    o->cuda_graph = tw_args_flag(a, "--cuda-graph");
    TW_TRY(tw_args_str(a, "--dtype", d_dtype, &dt));
    TW_TRY(tw_parse_dtypes(dt, o->dtype, 4, &o->ndtype));
    TW_TRY(tw_args_str(a, "--kv-dtype", d_kv, &kvdt));
    if (kvdt) {
        TW_TRY(tw_dtype_parse(kvdt, &o->kv_dtype));
        o->kv_given = 1;
    }
    TW_TRY(tw_args_int_list(a, "--batch", d_batch, 1, 4096, o->batch, TW_RUN_MAX_LIST, &o->nbatch));
    TW_TRY(tw_args_int_list(a, "--prompt", d_prompt, 1, 1 << 20, o->prompt, TW_RUN_MAX_LIST,
                            &o->nprompt));
    TW_TRY(tw_args_int_list(a, "--gen", d_gen, 1, 1 << 20, o->gen, TW_RUN_MAX_LIST, &o->ngen));
    TW_TRY(tw_args_int_list(a, "--tp", d_tp, 1, 4096, o->tp, TW_RUN_MAX_LIST, &o->ntp));
    TW_TRY(tw_args_int(a, "--warmup", 1, 0, 1000, &o->warmup));
    TW_TRY(tw_args_int(a, "--reps", 3, 1, 1000, &o->reps));
    TW_TRY(tw_args_int(a, "--threads", 0, 0, 4096, &o->threads));
    TW_TRY(tw_args_int(a, "--device", 0, 0, 1024, &o->device));
    TW_TRY(tw_args_long(a, "--seed", TW_DEFAULT_SEED, 0, 0x7fffffffffffffffL, &o->seed));
    TW_TRY(tw_args_str(a, "--out", "results", &o->out));
    TW_TRY(tw_args_str(a, "--dump-logits", NULL, &o->dump));
    TW_TRY(tw_args_double(a, "--membw-gbps", 0, 0, 1e6, &o->membw_gbps));
    TW_TRY(tw_args_double(a, "--peak-gflops", 0, 0, 1e9, &o->peak_gflops));
    TW_TRY(tw_args_str(a, "--comm", "auto", &o->comm));
    TW_TRY(tw_args_double(a, "--comm-timeout", 60, 0.1, 86400, &o->comm_timeout_s));
    TW_TRY(tw_args_str(a, "--power", "auto", &o->power));
    /* 0 is "not given" (the default); given, the watts must be positive */
    TW_TRY(tw_args_double(a, "--watts", 0, 1e-3, 1e7, &o->watts));
    TW_TRY(tw_args_int(a, "--sample-ms", 50, 10, 100, &o->sample_ms));
    TW_TRY(tw_args_format(a, &o->fmt));
    TW_TRY(tw_args_finish(a));
    static const char *const comms[] = {"auto", "mpi", "nccl", "local"};
    int comm_ok = 0;
    for (size_t i = 0; i < sizeof comms / sizeof comms[0]; i++)
        comm_ok |= !strcmp(o->comm, comms[i]);
    if (!comm_ok)
        return TW_ERR(TW_ERR_INVALID, "option --comm: '%s' is not auto, mpi, nccl or local",
                      o->comm);
    static const char *const powers[] = {"auto", "nvml", "rapl", "assumed", "none"};
    int power_ok = 0;
    for (size_t i = 0; i < sizeof powers / sizeof powers[0]; i++)
        power_ok |= !strcmp(o->power, powers[i]);
    if (!power_ok)
        return TW_ERR(TW_ERR_INVALID,
                      "option --power: '%s' is not auto, nvml, rapl, assumed or none", o->power);
    if (strcmp(o->backend, "cpu") && strcmp(o->backend, "cuda"))
        return TW_ERR(TW_ERR_INVALID, "option --backend: '%s' is not cpu or cuda", o->backend);
    if (!strcmp(o->power, "nvml") && strcmp(o->backend, "cuda"))
        return TW_ERR(TW_ERR_INVALID,
                      "--power nvml reads NVIDIA GPUs: it goes with --backend cuda (this run is "
                      "on the %s backend; --power rapl or assumed for CPUs)",
                      o->backend);
    TW_TRY(tw_result_check_out(o->out, o->out_dir, sizeof o->out_dir, &o->out_is_file));
    if (o->dump) {
        struct stat sb;
        if (stat(o->dump, &sb) == 0 && S_ISDIR(sb.st_mode))
            return TW_ERR(TW_ERR_INVALID, "option --dump-logits %s: is a folder, not a file name",
                          o->dump);
    }
    if (o->watts > 0 && strcmp(o->power, "auto") && strcmp(o->power, "assumed"))
        return TW_ERR(TW_ERR_INVALID,
                      "--watts gives an assumed power: it goes with --power assumed");
    if (o->watts > 0) o->power = "assumed";
    if (o->cuda_graph && strcmp(o->backend, "cuda"))
        return TW_ERR(TW_ERR_INVALID,
                      "--cuda-graph replays CUDA graphs: it goes with --backend cuda");
    if (o->gemm && strcmp(o->backend, "cuda"))
        return TW_ERR(TW_ERR_INVALID,
                      "--gemm %s chooses the CUDA GEMM: it goes with --backend cuda", o->gemm);
    for (int i = 0; i < o->ntp; i++)
        for (int j = 0; j < i; j++)
            if (o->tp[i] == o->tp[j])
                return TW_ERR(TW_ERR_INVALID, "option --tp: %d twice", o->tp[i]);
    int ncombo = o->ntp * o->ndtype * o->nbatch * o->nprompt * o->ngen;
    if (o->dump && ncombo > 1)
        return TW_ERR(TW_ERR_INVALID, "--dump-logits needs a single combination, not a sweep of %d",
                      ncombo);
    return TW_OK;
}

/* The combination's name; it names the degree when --tp is a list. */
static void tw_combo_name(const tw_run_opts *o, const tw_combo *c, char *buf, size_t n) {
    char tp[24] = "";
    if (o->ntp > 1) snprintf(tp, sizeof tp, "tp=%d ", c->tp);
    snprintf(buf, n, "%sdtype=%s kv=%s batch=%d prompt=%d gen=%d", tp, tw_dtype_name(c->dtype),
             tw_dtype_name(c->kv_dtype), c->batch, c->prompt, c->gen);
}

static json_t *tw_stats_json(const tw_stats *s) {
    json_t *j = json_object();
    json_object_set_new(j, "median", tw_jnum(s->median));
    json_object_set_new(j, "mean", tw_jnum(s->mean));
    json_object_set_new(j, "min", tw_jnum(s->min));
    json_object_set_new(j, "max", tw_jnum(s->max));
    json_object_set_new(j, "stddev", tw_jnum(s->stddev));
    json_object_set_new(j, "n", json_integer(s->n));
    return j;
}

/* One repetition: reset, prefill, gen-1 decode steps. Tokens go to gen_tokens [batch, gen] when
 * non-NULL, logits to the npy writer when non-NULL, energy to pm when non-NULL. `what` names it
 * in the progress line ("repetition 2/3"). A signal between steps (or one a collective saw)
 * returns TW_ERR_INTERRUPTED; regions left open are the caller's to roll back. */
static tw_status tw_run_rep(tw_run_ctx *x, tw_engine *e, const tw_combo *k, const char *name,
                            const char *what, const int *prompt, int *cur, int *next, tw_rep *r,
                            int *gen_tokens, tw_npy_writer *dump, tw_power_meter *pm) {
    const tw_model_config *c = &x->cfg;
    tw_backend *be = x->be;
    int show = x->rank == 0;
    tw_engine_reset(e);
    r->complete = 0;
    if (tw_run_stopped(x)) return TW_ERR(TW_ERR_INTERRUPTED, "interrupted before %s", what);
    if (show)
        tw_progress_show(strstr(what, " 1/") || !strcmp(what, "logits dump"), tw_run_eta(x),
                         "row %d/%d %s: %s: prefill", x->row, x->nrows, name, what);
    if (pm) TW_TRY(tw_power_begin(pm, "prefill"));
    double t0 = tw_now_s();
    TW_TRY(tw_engine_prefill(e, k->batch, k->prompt, prompt, next));
    TW_TRY(be->ops->sync(be));
    r->ttft_s = tw_now_s() - t0;
    if (pm) TW_TRY(tw_power_end(pm, "prefill", NULL));
    x->work_done += (double)k->batch * k->prompt;
    if (gen_tokens)
        for (int b = 0; b < k->batch; b++) gen_tokens[(size_t)b * k->gen] = next[b];
    if (dump) TW_TRY(tw_npy_writer_append(dump, tw_engine_logits(e), (size_t)k->batch * c->vocab));
    if (pm && k->gen > 1) TW_TRY(tw_power_begin(pm, "decode"));
    double d0 = tw_now_s();
    for (int s = 1; s < k->gen; s++) {
        if (tw_run_stopped(x))
            return TW_ERR(TW_ERR_INTERRUPTED, "interrupted at decode step %d of %d", s, k->gen - 1);
        if (show)
            tw_progress_show(s == 1 && strstr(what, " 1/"), tw_run_eta(x),
                             "row %d/%d %s: %s: decode step %d/%d", x->row, x->nrows, name, what, s,
                             k->gen - 1);
        memcpy(cur, next, sizeof(int) * (size_t)k->batch);
        double s0 = tw_now_s();
        TW_TRY(tw_engine_decode(e, k->batch, cur, next));
        TW_TRY(be->ops->sync(be));
        r->step_s[s - 1] = tw_now_s() - s0;
        x->work_done += k->batch;
        if (gen_tokens)
            for (int b = 0; b < k->batch; b++) gen_tokens[(size_t)b * k->gen + s] = next[b];
        if (dump)
            TW_TRY(tw_npy_writer_append(dump, tw_engine_logits(e), (size_t)k->batch * c->vocab));
    }
    r->decode_s = tw_now_s() - d0;
    if (pm && k->gen > 1) TW_TRY(tw_power_end(pm, "decode", NULL));
    r->complete = 1;
    return TW_OK;
}

/* The power options of this run (the same for the early check and the measured combinations). */
static tw_power_opts tw_run_power_opts(const tw_run_ctx *x) {
    int is_cuda = x->be ? !strcmp(x->be->ops->name, "cuda") : !strcmp(x->o->backend, "cuda");
    tw_power_opts po = {.source = x->o->power,
                        .assumed_w = x->o->watts,
                        .sample_ms = x->o->sample_ms,
                        .gpu_index = is_cuda ? (x->be ? x->be->device : x->o->device) : -1,
                        .devices = 1};
    return po;
}

/* Runs one combination on engine e and appends its row to `rows`. A failure returns its status;
 * an interruption returns TW_OK with sum->incomplete set (what was measured is kept; a
 * combination with no complete repetition appends no row). */
static tw_status tw_run_combo(tw_run_ctx *x, tw_engine *e, const tw_combo *k, json_t *rows,
                              tw_combo_summary *sum) {
    const tw_run_opts *o = x->o;
    const tw_model_config *cfg = &x->cfg;
    tw_backend *be = x->be;
    tw_status st = TW_OK;
    memset(sum, 0, sizeof *sum);
    sum->c = *k;
    sum->power_devices = 1;
    size_t B = (size_t)k->batch;
    int *prompt = malloc(sizeof(int) * B * (size_t)k->prompt);
    int *cur = malloc(sizeof(int) * B), *next = malloc(sizeof(int) * B);
    int *gen_tokens = malloc(sizeof(int) * B * (size_t)k->gen);
    int *check_tokens = malloc(sizeof(int) * B * (size_t)k->gen);
    tw_rep *reps = calloc((size_t)o->reps, sizeof *reps);
    size_t nsteps = (size_t)(k->gen > 1 ? k->gen - 1 : 1);
    tw_power_meter *pm = NULL;
    tw_npy_writer *dump = NULL;
    if (!prompt || !cur || !next || !gen_tokens || !check_tokens || !reps) {
        st = TW_ERR(TW_ERR_NOMEM, "run bookkeeping");
        goto out;
    }
    for (int r = 0; r < o->reps; r++)
        if (!(reps[r].step_s = calloc(nsteps, sizeof(double)))) {
            st = TW_ERR(TW_ERR_NOMEM, "run bookkeeping");
            goto out;
        }
    tw_prompt_tokens((uint64_t)o->seed, k->batch, k->prompt, cfg->vocab, prompt);

    tw_power_opts po = tw_run_power_opts(x);
    if ((st = tw_power_open(&po, &pm)) != TW_OK) goto out;

    char name[160], what[64];
    tw_combo_name(o, k, name, sizeof name);
    for (int w = 0; w < o->warmup && st == TW_OK; w++) {
        tw_rep tmp = {.step_s = reps[0].step_s};
        snprintf(what, sizeof what, "warm-up %d/%d", w + 1, o->warmup);
        st = tw_run_rep(x, e, k, name, what, prompt, cur, next, &tmp, NULL, NULL, NULL);
    }
    double comm_s0 = tw_engine_comm_seconds(e);
    for (int r = 0; r < o->reps && st == TW_OK; r++) {
        snprintf(what, sizeof what, "repetition %d/%d", r + 1, o->reps);
        tw_power_mark(pm); /* an interrupted repetition's partial energy is rolled back */
        st = tw_run_rep(x, e, k, name, what, prompt, cur, next, &reps[r],
                        r == 0 ? gen_tokens : check_tokens, NULL, pm);
        if (st != TW_OK) break;
        sum->reps_done++;
        if (r > 0 && memcmp(gen_tokens, check_tokens, sizeof(int) * B * (size_t)k->gen) != 0)
            st = TW_ERR(TW_ERR_INTERNAL,
                        "%s: repetition %d generated different tokens than repetition 1: the "
                        "engine is not deterministic",
                        name, r + 1);
    }
    double comm_s_measured = tw_engine_comm_seconds(e) - comm_s0;
    if (st == TW_ERR_INTERRUPTED || (tw_run_stopped(x) && sum->reps_done < o->reps)) {
        /* the repetition under way is incomplete: its partial energy goes (a signal after the
         * last repetition leaves this combination complete; the run stops after it) */
        if (st == TW_ERR_INTERRUPTED) tw_power_rollback(pm);
        tw_run_stopped(x);
        if (!x->intr_sig) x->intr_sig = SIGINT; /* a collective saw it first: keep a name */
        char who[64];
        tw_run_intr_text(x, who, sizeof who);
        snprintf(sum->incomplete, sizeof sum->incomplete,
                 "%s during %s (%d of %d repetitions complete)", who, name, sum->reps_done,
                 o->reps);
        st = TW_OK;
    }
    if (st != TW_OK || sum->reps_done == 0) goto out;

    /* an un-timed pass that dumps the logits of every step; a failure here is reported and
     * kept out of the result, which is still written */
    if (o->dump && !sum->incomplete[0] && !tw_run_stopped(x)) {
        int64_t shape[3] = {k->gen, (int64_t)B, cfg->vocab};
        tw_status ds = tw_npy_writer_open(o->dump, shape, 3, &dump);
        if (ds == TW_OK) {
            tw_engine_set_capture(e, 1);
            /* its own step-time array: the measured repetitions' times stay untouched */
            tw_rep tmp = {.step_s = calloc(nsteps, sizeof(double))};
            ds = tmp.step_s ? tw_run_rep(x, e, k, name, "logits dump", prompt, cur, next, &tmp,
                                         check_tokens, dump, NULL)
                            : TW_ERR(TW_ERR_NOMEM, "run bookkeeping");
            free(tmp.step_s);
            tw_engine_set_capture(e, 0);
        }
        if (ds == TW_OK) {
            ds = tw_npy_writer_close(dump);
            dump = NULL;
        }
        if (ds == TW_OK) {
            sum->dump_written = 1;
            tw_log("logits of %d steps written to %s", k->gen, o->dump);
        } else {
            snprintf(sum->dump_error, sizeof sum->dump_error, "%s", tw_error_text());
            if (dump) tw_npy_writer_abort(dump); /* removes its temporary file */
            dump = NULL;
            if (ds == TW_ERR_INTERRUPTED) tw_run_stopped(x);
            tw_progress_clear();
            fprintf(stderr, "tokwatt run: error: the logits dump %s was not written: %s\n", o->dump,
                    sum->dump_error);
        }
    }

    /* ---- metrics: medians over complete repetitions ----------------------------------------- */
    tw_rep_times *done = calloc((size_t)o->reps, sizeof *done);
    if (!done) {
        st = TW_ERR(TW_ERR_NOMEM, "run bookkeeping");
        goto out;
    }
    int nd = 0;
    for (int r = 0; r < o->reps; r++)
        if (reps[r].complete)
            done[nd++] = (tw_rep_times){reps[r].ttft_s, reps[r].decode_s, reps[r].step_s};
    tw_metric_inputs mi = {.cfg = cfg,
                           .w_dtype = k->dtype,
                           .kv_dtype = k->kv_dtype,
                           .batch = k->batch,
                           .prompt = k->prompt,
                           .gen = k->gen,
                           .membw_gbps = x->membw,
                           .peak_gflops = x->peak,
                           .have_comm = x->comm != NULL,
                           .comm_s = comm_s_measured};
    st = tw_metrics_summarise(&mi, done, nd, &sum->m);
    free(done);
    if (st != TW_OK) goto out;

    json_t *row = json_object();
    json_t *scen = json_object();
    json_object_set_new(scen, "model", json_string(cfg->name));
    json_object_set_new(scen, "backend", json_string(be->ops->name));
    json_object_set_new(scen, "threads", json_integer(be->threads));
    if (!strcmp(be->ops->name, "cuda")) {
        json_object_set_new(scen, "gemm", json_string(tw_cuda_get_gemm(be)));
        json_object_set_new(scen, "cuda_graph", json_boolean(o->cuda_graph));
    }
    json_object_set_new(scen, "dtype", json_string(tw_dtype_name(k->dtype)));
    json_object_set_new(scen, "kv_dtype", json_string(tw_dtype_name(k->kv_dtype)));
    json_object_set_new(scen, "batch", json_integer(k->batch));
    json_object_set_new(scen, "prompt", json_integer(k->prompt));
    json_object_set_new(scen, "gen", json_integer(k->gen));
    json_object_set_new(scen, "warmup", json_integer(o->warmup));
    json_object_set_new(scen, "reps", json_integer(o->reps));
    json_object_set_new(scen, "seed", json_integer(o->seed));
    json_object_set_new(scen, "tp", json_integer(k->tp));
    json_object_set_new(scen, "devices", json_integer(k->tp));
    if (o->preset_name) {
        json_object_set_new(scen, "preset", json_string(o->preset.name));
        json_t *cv = json_array();
        for (int i = 0; i < o->preset.n_caveats; i++)
            json_array_append_new(cv, json_string(o->preset.caveats[i]));
        json_object_set_new(scen, "caveats", cv);
    }
    json_object_set_new(row, "scenario", scen);
    json_object_set_new(row, "complete", json_boolean(!sum->incomplete[0]));
    if (sum->incomplete[0])
        json_object_set_new(row, "incomplete_reason", json_string(sum->incomplete));
    if (o->dump) {
        json_t *dj = json_object();
        json_object_set_new(dj, "path", json_string(o->dump));
        json_object_set_new(dj, "written", json_boolean(sum->dump_written));
        if (sum->dump_error[0])
            json_object_set_new(dj, "error", json_string(sum->dump_error));
        else if (!sum->dump_written)
            json_object_set_new(dj, "error", json_string("not written: the run was interrupted"));
        json_object_set_new(row, "logits_dump", dj);
    }

    json_t *m = json_object();
    json_object_set_new(m, "prefill_tokens_per_s", tw_jnum(sum->m.prefill_tokens_per_s.median));
    json_object_set_new(m, "decode_tokens_per_s", tw_jnum(sum->m.decode_tokens_per_s.median));
    json_object_set_new(m, "e2e_tokens_per_s", tw_jnum(sum->m.e2e_tokens_per_s.median));
    json_object_set_new(m, "ttft_s", tw_jnum(sum->m.ttft_s.median));
    json_t *tpot = json_object();
    json_object_set_new(tpot, "mean", tw_jnum(sum->m.tpot_s.mean));
    json_object_set_new(tpot, "p50", tw_jnum(sum->m.tpot_s.p50));
    json_object_set_new(tpot, "p99", tw_jnum(sum->m.tpot_s.p99));
    json_object_set_new(tpot, "n", json_integer(sum->m.tpot_s.n));
    json_object_set_new(m, "tpot_s", tpot);
    json_object_set_new(m, "decode_bandwidth_gbps", tw_jnum(sum->m.decode_bandwidth_gbps));
    json_object_set_new(m, "decode_bandwidth_fraction", tw_jnum(sum->m.decode_bandwidth_fraction));
    json_object_set_new(m, "decode_bytes_per_step", tw_jnum(sum->m.decode_bytes_per_step));
    json_object_set_new(m, "prefill_gflops", tw_jnum(sum->m.prefill_gflops));
    json_object_set_new(m, "prefill_mfu", tw_jnum(sum->m.prefill_mfu));
    json_object_set_new(m, "collective_share", tw_jnum(sum->m.collective_share));
    json_t *spread = json_object();
    json_object_set_new(spread, "prefill_tokens_per_s",
                        tw_stats_json(&sum->m.prefill_tokens_per_s));
    json_object_set_new(spread, "decode_tokens_per_s", tw_stats_json(&sum->m.decode_tokens_per_s));
    json_object_set_new(spread, "e2e_tokens_per_s", tw_stats_json(&sum->m.e2e_tokens_per_s));
    json_object_set_new(spread, "ttft_s", tw_stats_json(&sum->m.ttft_s));
    json_object_set_new(spread, "tpot_s", tw_stats_json(&sum->m.tpot_s));
    json_object_set_new(m, "spread", spread);
    json_object_set_new(m, "repetitions_complete", json_integer(nd));
    json_object_set_new(row, "metrics", m);

    json_t *pt = json_array(), *gt = json_array();
    for (size_t b = 0; b < B; b++) {
        json_t *p1 = json_array(), *g1 = json_array();
        for (int i = 0; i < k->prompt; i++)
            json_array_append_new(p1, json_integer(prompt[b * k->prompt + i]));
        for (int i = 0; i < k->gen && nd > 0; i++)
            json_array_append_new(g1, json_integer(gen_tokens[b * k->gen + i]));
        json_array_append_new(pt, p1);
        json_array_append_new(gt, g1);
    }
    json_object_set_new(row, "prompt_tokens", pt);
    json_object_set_new(row, "generated_tokens", gt);

    tw_power_tokens ptok = {.prefill = nd * tw_metric_prefill_tokens(k->batch, k->prompt),
                            .decode = nd * tw_metric_decode_tokens(k->batch, k->gen),
                            .e2e = nd * tw_metric_e2e_tokens(k->batch, k->gen)};
    tw_energy energy;
    if ((st = tw_power_energy(pm, &ptok, &energy)) != TW_OK) {
        json_decref(row);
        goto out;
    }

    /* per-rank figures (tensor-parallel runs): every rank of this degree takes part; after an
     * interruption the ranks are no longer in step, so rank 0 keeps its own figures only */
    double w_total = NAN; /* mean watts over every power domain of this degree */
    if (x->comm && x->intr_sig) {
        json_object_set_new(row, "ranks", json_null());
        json_object_set_new(row, "ranks_note",
                            json_string("not gathered: the run was interrupted; the figures "
                                        "are rank 0's"));
        /* The power domains are known without the other ranks: the hosts were gathered at the
         * start. One host under host-level power: rank 0's energy is the run's. Otherwise the
         * energy block is rank 0's alone, and said so. */
        int domains = k->tp;
        if (x->hosts && x->hosts->size >= k->tp) {
            const char **hp = calloc((size_t)k->tp, sizeof *hp);
            if (hp) {
                for (int r = 0; r < k->tp; r++) hp[r] = x->hosts->host[r];
                domains = tw_metric_power_domains(hp, k->tp, tw_power_host_level(pm));
            }
            free(hp);
        }
        sum->power_devices = domains;
        double e_ph[3] = {NAN, NAN, NAN};
        static const char *const ph[3] = {"prefill", "decode", "e2e"};
        for (int q = 0; q < 3; q++)
            if (tw_power_phase_energy(pm, ph[q], &e_ph[q]) != TW_OK) tw_clear_error();
        if (tw_power_host_level(pm) && domains == 1 && tw_power_has_energy(pm))
            tw_power_energy_combine(&energy, e_ph, 1, k->tp,
                                    "rank 0's: its host is the only one, and its power "
                                    "is the host's (the run was interrupted)");
        else if (tw_power_has_energy(pm))
            snprintf(energy.not_combined, sizeof energy.not_combined,
                     "rank 0's own power only: the run was interrupted before the ranks' "
                     "energies were gathered");
    } else if (x->comm) {
        int nr = k->tp;
        /* Power domains: a GPU per rank; for host-level power (RAPL, a CPU socket's assumed
         * watts) the host, counted by its first rank only, so that ranks sharing a socket do
         * not count its power twice. */
        int host_level = tw_power_host_level(pm);
        double counted = !host_level || x->tp_comm->local_rank == 0 ? 1.0 : 0.0;
        double e_ph[3] = {NAN, NAN, NAN};
        static const char *const ph[3] = {"prefill", "decode", "e2e"};
        for (int q = 0; q < 3; q++)
            if (tw_power_phase_energy(pm, ph[q], &e_ph[q]) != TW_OK) tw_clear_error();
        enum { NQ = 9 };
        double mine[NQ] = {sum->m.ttft_s.median,
                           sum->m.tpot_s.p50,
                           sum->m.decode_tokens_per_s.median,
                           sum->m.collective_share,
                           NAN,
                           e_ph[0],
                           e_ph[1],
                           e_ph[2],
                           counted};
        double w_rank = 0;
        if (tw_power_mean_w_per_device(pm, &w_rank) == TW_OK) mine[4] = w_rank;
        const char *names[5] = {"ttft_s", "tpot_p50_s", "decode_tokens_per_s", "collective_share",
                                "mean_power_w"};
        double *all = calloc((size_t)nr * NQ, sizeof(double));
        if (!all) st = TW_ERR(TW_ERR_NOMEM, "per-rank figures");
        for (int q = 0; q < NQ && st == TW_OK; q++)
            st = tw_comm_allgather_f64(x->tp_comm, mine[q], all + (size_t)q * nr);
        if (st == TW_OK) {
            json_t *rj = json_array();
            double tot[3] = {0, 0, 0};
            int domains = 0;
            for (int r = 0; r < nr; r++) {
                json_t *y = json_object();
                json_object_set_new(y, "rank", json_integer(r));
                for (int q = 0; q < 5; q++)
                    json_object_set_new(y, names[q], tw_jnum(all[(size_t)q * nr + r]));
                json_array_append_new(rj, y);
                if (all[(size_t)8 * nr + r] > 0) {
                    domains++;
                    for (int q = 0; q < 3; q++) tot[q] += all[(size_t)(5 + q) * nr + r];
                }
            }
            json_object_set_new(row, "ranks", rj);
            if (tw_power_has_energy(pm) && domains > 0) {
                char how[256];
                snprintf(how, sizeof how,
                         host_level ? "sum over %d host(s): the %d rank(s) on a host share its "
                                      "power (%s), counted once"
                                    : "sum over the %d device(s) of the %d rank(s) (%s)",
                         domains, nr, tw_power_source(pm));
                tw_power_energy_combine(&energy, tot, domains, nr, how);
                sum->power_devices = domains;
            }
        }
        free(all);
        if (st == TW_ERR_INTERRUPTED) {
            /* a signal while gathering: the repetitions are complete, keep rank 0's figures */
            tw_run_stopped(x);
            st = TW_OK;
            json_object_set_new(row, "ranks", json_null());
            json_object_set_new(row, "ranks_note",
                                json_string("not gathered: the run was interrupted while the "
                                            "ranks' figures were gathered; the figures are rank "
                                            "0's"));
        } else if (st != TW_OK) {
            tw_energy_free(&energy);
            json_decref(row);
            goto out;
        }
    }
    sum->energy_measured = isfinite(energy.e2e.j_per_token);
    sum->j_per_token_e2e = energy.e2e.j_per_token;
    sum->assumed = tw_power_is_assumed(pm);
    w_total = energy.e2e.mean_power_w_per_device;
    json_object_set_new(row, "energy", tw_energy_to_json(&energy));
    tw_energy_free(&energy);

    /* the projection's headline: e2e output tokens/s and mean watts, per power domain (a
     * device; a host where ranks share its power) */
    double w_dev = 0;
    sum->mean_w = NAN;
    if (nd > 0 && tw_power_mean_w_per_device(pm, &w_dev) == TW_OK && w_dev > 0 &&
        isfinite(sum->m.e2e_tokens_per_s.median)) {
        if (isfinite(w_total) && w_total > 0 && !tw_power_is_assumed(pm)) w_dev = w_total;
        sum->mean_w = w_dev;
        int ndev = x->comm ? sum->power_devices : 1;
        if (tw_project_headline(sum->m.e2e_tokens_per_s.median / ndev, w_dev, tw_power_label(pm),
                                tw_power_is_assumed(pm), sum->headline,
                                sizeof sum->headline) != TW_OK)
            snprintf(sum->headline, sizeof sum->headline, "projection unavailable: %s",
                     tw_error_text());
    } else {
        snprintf(sum->headline, sizeof sum->headline,
                 "projection unavailable: no power figure (source %s); give --watts W or "
                 "--power assumed",
                 tw_power_source(pm));
    }
    json_object_set_new(row, "projection_headline", json_string(sum->headline));
    json_array_append_new(rows, row);
out:
    if (dump) tw_npy_writer_abort(dump);
    if (pm) tw_power_close(pm);
    if (reps)
        for (int r = 0; r < o->reps; r++) free(reps[r].step_s);
    free(reps);
    free(prompt), free(cur), free(next), free(gen_tokens), free(check_tokens);
    return st;
}

/* Sets up the communicator (tensor-parallel runs) and the backend. */
static tw_status tw_run_setup(tw_run_ctx *x) {
    const tw_run_opts *o = x->o;
    x->rank = 0;
    x->nranks = 1;
    x->max_tp = 1;
    char tplist[256] = "";
    for (int i = 0, used = 0; i < o->ntp && used < (int)sizeof tplist; i++) {
        if (o->tp[i] > x->max_tp) x->max_tp = o->tp[i];
        used +=
            snprintf(tplist + used, sizeof tplist - (size_t)used, "%s%d", i ? "," : "", o->tp[i]);
    }
    if (x->max_tp > 1 && !tw_comm_under_launcher())
        return TW_ERR(TW_ERR_INVALID,
                      "no MPI launcher (1 rank) but --tp is %s: launch with mpirun -np %d tokwatt "
                      "run --tp %s",
                      tplist, x->max_tp, tplist);
    if (tw_comm_under_launcher()) {
        TW_TRY(tw_comm_create(o->comm, o->backend, o->comm_timeout_s, &x->comm));
        x->rank = tw_comm_rank(x->comm);
        x->nranks = tw_comm_size(x->comm);
        /* each degree N runs on ranks 0..N-1: the launch needs the largest degree's ranks */
        if (x->nranks < x->max_tp) {
            if (o->ntp == 1)
                return TW_ERR(TW_ERR_INVALID,
                              "%d ranks were launched but --tp is %d: launch with mpirun -np %d "
                              "tokwatt run --tp %d",
                              x->nranks, o->tp[0], o->tp[0], o->tp[0]);
            return TW_ERR(TW_ERR_INVALID,
                          "%d ranks were launched but --tp is %s, whose largest degree %d needs %d "
                          "ranks: launch with mpirun -np %d tokwatt run --tp %s",
                          x->nranks, tplist, x->max_tp, x->max_tp, x->max_tp, tplist);
        }
        if (x->rank != 0) tw_log_quiet(1);
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
            used += (size_t)snprintf(canon + used, sizeof canon - used, "|tp=%s", tplist);
        TW_TRY(tw_comm_check_consistency(x->comm, canon, strlen(canon), "the run configuration"));
        if (o->ntp == 1 && o->tp[0] == x->nranks) {
            tw_log("tensor parallel over %d ranks, communicator %s", x->nranks,
                   tw_comm_kind(x->comm));
        } else {
            char idle[64] = "";
            if (x->max_tp < x->nranks)
                snprintf(idle, sizeof idle, "; ranks %d..%d take part in no degree", x->max_tp,
                         x->nranks - 1);
            tw_log("%d ranks launched, communicator %s; tensor-parallel degrees %s, each on ranks "
                   "0..N-1 while the others wait%s",
                   x->nranks, tw_comm_kind(x->comm), tplist, idle);
        }
    }
    int device = x->comm && tw_comm_device(x->comm) >= 0 ? tw_comm_device(x->comm) : o->device;
    int threads = o->threads;
    if (threads == 0 && x->comm && x->comm->local_size > 1) {
        /* ranks sharing a host share its cores: all cores each would oversubscribe them */
        threads = tw_cpu_cores() / x->comm->local_size;
        if (threads < 1) threads = 1;
        tw_log("%d ranks on this host: %d threads each (--threads to override)",
               x->comm->local_size, threads);
    }
    TW_TRY(tw_backend_create(o->backend, threads, device, &x->be));
    if (o->gemm) TW_TRY(tw_cuda_set_gemm(x->be, o->gemm));
    if (x->comm && x->be->ops->native_stream)
        TW_TRY(tw_comm_set_stream(x->comm, x->be->ops->native_stream(x->be)));
    return TW_OK;
}

/* Engine options for one rank at degree tp (its rank in the degree is its launch rank). */
static tw_engine_opts tw_engine_opts_for(const tw_run_ctx *x, int tp, tw_dtype dt, tw_dtype kv,
                                         int batch, int prompt, int seq) {
    tw_engine_opts eo = {.cfg = &x->cfg,
                         .be = x->be,
                         .w_dtype = dt,
                         .kv_dtype = kv,
                         .max_batch = batch,
                         .max_seq = seq,
                         .max_prefill = prompt,
                         .seed = (uint64_t)x->o->seed,
                         .comm = tp > 1 ? x->tp_comm : NULL,
                         .tp_rank = tp > 1 ? x->rank : 0,
                         .tp_size = tp,
                         .cuda_graph = x->o->cuda_graph};
    return eo;
}

/* The markdown table (llama-bench style) and the per-combination lines. */
static void tw_print_table(const tw_run_ctx *x, const tw_combo_summary *sums, int n) {
    const tw_format fmt = TW_FMT_MD;
    /* a tp column only for a --tp sweep (a single degree's table stays as it was) */
    int tpcol = x->o->ntp > 1;
    const char *head8[] = {"model", "params", "backend", "threads",
                           "dtype", "test",   "t/s",     "spread (min-max)"};
    const char *head9[] = {"model", "params", "backend", "threads",         "tp",
                           "dtype", "test",   "t/s",     "spread (min-max)"};
    tw_table t;
    tw_table_init(&t, tpcol ? 9 : 8, tpcol ? head9 : head8);
    char params[32];
    double np = (double)tw_model_params(&x->cfg);
    if (np >= 1e9)
        snprintf(params, sizeof params, "%.2f B", np / 1e9);
    else
        snprintf(params, sizeof params, "%.2f M", np / 1e6);
    const char *bn = x->be->ops->name;
    for (int i = 0; i < n; i++) {
        const tw_combo_summary *s = &sums[i];
        const char *dn = tw_dtype_name(s->c.dtype);
        char tp[16] = "";
        if (tpcol) snprintf(tp, sizeof tp, "|%d", s->c.tp);
        tw_table_addf(&t, "%s|%s|%s|%d%s|%s|pp%d (batch %d)|%.2f|%.2f-%.2f", x->cfg.name, params,
                      bn, x->be->threads, tp, dn, s->c.prompt, s->c.batch,
                      s->m.prefill_tokens_per_s.median, s->m.prefill_tokens_per_s.min,
                      s->m.prefill_tokens_per_s.max);
        tw_table_addf(&t, "%s|%s|%s|%d%s|%s|tg%d (batch %d)|%.2f|%.2f-%.2f", x->cfg.name, params,
                      bn, x->be->threads, tp, dn, s->c.gen, s->c.batch,
                      s->m.decode_tokens_per_s.median, s->m.decode_tokens_per_s.min,
                      s->m.decode_tokens_per_s.max);
        tw_table_addf(&t, "%s|%s|%s|%d%s|%s|e2e (batch %d)|%.2f|%.2f-%.2f", x->cfg.name, params, bn,
                      x->be->threads, tp, dn, s->c.batch, s->m.e2e_tokens_per_s.median,
                      s->m.e2e_tokens_per_s.min, s->m.e2e_tokens_per_s.max);
    }
    tw_table_print(&t, fmt, stdout);
    tw_table_free(&t);
    for (int i = 0; i < n; i++) {
        const tw_combo_summary *s = &sums[i];
        char name[160];
        tw_combo_name(x->o, &s->c, name, sizeof name);
        printf("\n%s%s\n", n > 1 ? "## " : "", n > 1 ? name : "");
        printf("TTFT %.4f s (median)   TPOT mean %.4f s, p50 %.4f s, p99 %.4f s\n",
               s->m.ttft_s.median, s->m.tpot_s.mean, s->m.tpot_s.p50, s->m.tpot_s.p99);
        printf("decode: %.2f GB/s of required bytes = %.1f%% of %s %.2f GB/s\n",
               s->m.decode_bandwidth_gbps, 100 * s->m.decode_bandwidth_fraction, x->membw_src,
               x->membw);
        printf("prefill: %.2f GFLOP/s = %.1f%% of %s %.2f GFLOP/s (MFU)\n", s->m.prefill_gflops,
               100 * s->m.prefill_mfu, x->peak_src, x->peak);
        if (s->energy_measured)
            printf("energy%s: %.1f W mean per device, %.4f J per generated token (e2e)\n",
                   s->assumed ? " (ASSUMED watts, not measured)" : "", s->mean_w,
                   s->j_per_token_e2e);
        else
            printf("energy: not measured\n");
        if (x->comm)
            printf("tensor parallel: %d rank%s over %s, collectives %.1f%% of measured time\n",
                   s->c.tp, s->c.tp > 1 ? "s" : "", tw_comm_kind(x->comm),
                   100 * s->m.collective_share);
        printf("%s\n", s->headline);
        if (s->dump_error[0]) printf("LOGITS DUMP FAILED: %s\n", s->dump_error);
        if (s->incomplete[0]) printf("INCOMPLETE: %s\n", s->incomplete);
    }
    if (x->o->preset_name) {
        printf("\npreset %s: synthetic, not a submission. It cannot reproduce:\n",
               x->o->preset.name);
        for (int i = 0; i < x->o->preset.n_caveats; i++)
            printf("  - %s\n", x->o->preset.caveats[i]);
    }
}

/* CSV: one line per combination with every figure of its row, plus the run's ceilings and
 * parameter count (tw_csv_rows: dotted JSON names with units, plain numbers). */
static void tw_print_csv(json_t *rows, json_t *root) {
    json_t *flat = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        json_t *o = json_object();
        json_object_update(o, row);
        json_object_set(o, "roofline", json_object_get(root, "roofline"));
        json_object_set(o, "memory", json_object_get(root, "memory"));
        json_object_del(o, "prompt_tokens");
        json_object_del(o, "generated_tokens");
        json_array_append_new(flat, o);
    }
    tw_csv_rows(stdout, flat);
    json_decref(flat);
}

/* A rank other than 0 after an interruption: rank 0 writes the result and ends the job
 * (tw_comm_abort); this rank must not exit first, or the launcher would end rank 0 before it
 * has written. Waits, bounded, then gives up. */
static void tw_run_wait_for_rank0(const tw_run_ctx *x) {
    double end = tw_now_s() + (x->o->comm_timeout_s > 30 ? x->o->comm_timeout_s : 30);
    while (tw_now_s() < end) usleep(20000);
}

/* Bytes the result file may take: its fixed part, token ids and a power trace. */
static uint64_t tw_run_result_bytes(const tw_run_opts *o) {
    uint64_t tokens = 0;
    for (int b = 0; b < o->nbatch; b++)
        for (int p = 0; p < o->nprompt; p++)
            for (int g = 0; g < o->ngen; g++)
                tokens += (uint64_t)o->batch[b] * (uint64_t)(o->prompt[p] + o->gen[g]);
    uint64_t rows = (uint64_t)o->ntp * (uint64_t)o->ndtype;
    /* ~12 bytes per token id in indented JSON; 16 KiB of figures per row; a full trace */
    return (16u << 20) + rows * (tokens * 12 + (16u << 10));
}

int tw_cmd_run(int argc, char **argv) {
    tw_args a;
    tw_run_opts o;
    memset(&o, 0, sizeof o);
    if (tw_args_init(&a, "tokwatt run", tw_run_usage, argc, argv) != TW_OK) return TW_EXIT_FAIL;
    if (tw_args_flag(&a, "--help") || tw_args_flag(&a, "-h")) {
        printf("usage: %s\n%s\n", tw_run_usage, tw_run_help);
        tw_args_free(&a);
        return TW_EXIT_OK;
    }
    tw_status pst = tw_run_parse(&a, &o);
    if (pst != TW_OK) {
        tw_cli_fail(&a);
        tw_args_free(&a);
        /* a preset file that does not parse is a broken input, not a bad argument */
        return pst == TW_ERR_INVALID ? TW_EXIT_USAGE : TW_EXIT_FAIL;
    }
    tw_args_free(&a);

    int rc = TW_EXIT_FAIL;
    tw_status st = TW_OK;
    tw_run_ctx x;
    memset(&x, 0, sizeof x);
    x.o = &o;
    tw_engine *e = NULL;
    tw_combo *combos = NULL;
    tw_combo_summary *sums = NULL;
    json_t *root = NULL, *rows = json_array(), *prov = NULL;
    double start_unix = tw_unix_now_s();
    int ncombo = o.ntp * o.ndtype * o.nbatch * o.nprompt * o.ngen, done_combos = 0;
    char incomplete[640] = "";
    tw_comm_hosts hosts;
    memset(&hosts, 0, sizeof hosts);

    tw_interrupt_install();
    tw_progress_set_mode(tw_progress_choose(o.progress));
    if ((st = tw_model_load(o.model, &x.cfg)) != TW_OK) goto fail;
    if ((st = tw_run_setup(&x)) != TW_OK) goto fail;
    if (x.rank != 0) tw_progress_set_mode(TW_PROGRESS_OFF);
    if (x.comm && (st = tw_comm_gather_hosts(x.comm, &hosts)) != TW_OK) goto fail;
    x.hosts = &hosts;

    /* ---- before anything is measured: every input and the output ------------------------ */
    {
        /* the power source: --power nvml without NVML, a devices.json that does not parse */
        tw_power_opts po = tw_run_power_opts(&x);
        tw_power_meter *pm = NULL;
        if ((st = tw_power_open(&po, &pm)) != TW_OK) {
            st = tw_error_ctx(st, "power source %s", o.power);
            goto fail;
        }
        tw_power_close(pm);
        /* the projection's growth curves and assumptions */
        tw_project_inputs *pin = malloc(sizeof *pin);
        st = pin ? tw_project_inputs_load(pin) : TW_ERR(TW_ERR_NOMEM, "projection inputs");
        free(pin);
        if (st != TW_OK) {
            st = tw_error_ctx(st, "projection inputs");
            goto fail;
        }
    }
    if (x.rank == 0) {
        /* the destination: writable, and room for the result and the logits dump, whose size
         * is known in advance (steps x batch x vocab float32 and a header) */
        uint64_t res_bytes = tw_run_result_bytes(&o);
        if ((st = tw_check_output_dir(o.out_dir, res_bytes, "the result")) != TW_OK) goto fail;
        if (o.dump) {
            char ddir[4096];
            tw_path_dirname(o.dump, ddir, sizeof ddir);
            uint64_t dump_bytes =
                (uint64_t)o.gen[0] * (uint64_t)o.batch[0] * (uint64_t)x.cfg.vocab * 4u + 4096u;
            if ((st = tw_check_output_dir(ddir, dump_bytes, "the logits dump")) != TW_OK) goto fail;
        }
        /* provenance now: the git queries take time a signal's deadline may not leave */
        prov = tw_provenance_json(x.be->ops->name, start_unix, start_unix);
    }

    /* every combination, in a stable order (tp, dtype, batch, prompt, gen), planned before any
     * runs; each rank plans the degrees it takes part in (its shard of them) */
    combos = calloc((size_t)ncombo, sizeof *combos);
    sums = calloc((size_t)ncombo, sizeof *sums);
    if (!combos || !sums) {
        st = TW_ERR(TW_ERR_NOMEM, "sweep bookkeeping");
        goto fail;
    }
    int nc = 0;
    for (int t = 0; t < o.ntp; t++)
        for (int d = 0; d < o.ndtype; d++)
            for (int b = 0; b < o.nbatch; b++)
                for (int p = 0; p < o.nprompt; p++)
                    for (int g = 0; g < o.ngen; g++) {
                        tw_combo *k = &combos[nc++];
                        k->tp = o.tp[t];
                        k->dtype = o.dtype[d];
                        k->kv_dtype = o.kv_given ? o.kv_dtype : o.dtype[d];
                        k->batch = o.batch[b], k->prompt = o.prompt[p], k->gen = o.gen[g];
                        /* the ETA's work: tokens of every warm-up and measured repetition */
                        x.work_total += (double)(o.warmup + o.reps) * k->batch *
                                        (double)(k->prompt + k->gen - 1);
                        if (x.rank >= k->tp) continue; /* this rank sits the degree out */
                        tw_engine_opts eo =
                            tw_engine_opts_for(&x, k->tp, k->dtype, k->kv_dtype, k->batch,
                                               k->prompt, k->prompt + k->gen);
                        tw_mem_plan plan;
                        char name[160];
                        tw_combo_name(&o, k, name, sizeof name);
                        if ((st = tw_engine_plan(&eo, &plan)) != TW_OK) {
                            st = tw_error_ctx(st, "combination %s", name);
                            goto fail;
                        }
                        if (plan.available_bytes && plan.total_bytes > plan.available_bytes) {
                            char who[48] = "";
                            if (k->tp > 1) snprintf(who, sizeof who, " (rank %d)", x.rank);
                            st = TW_ERR(
                                TW_ERR_NOMEM,
                                "combination %s does not fit on %s%s: needs %.2f GiB (weights "
                                "%.2f, KV cache %.2f, activations %.2f) but %.2f GiB is "
                                "available; nothing was run",
                                name, x.be->ops->name, who, plan.total_bytes / 1073741824.0,
                                plan.weights_bytes / 1073741824.0, plan.kv_bytes / 1073741824.0,
                                plan.act_bytes / 1073741824.0, plan.available_bytes / 1073741824.0);
                            goto fail;
                        }
                    }
    x.nrows = ncombo;

    /* roofline ceilings of this machine, measured now unless given */
    x.membw = o.membw_gbps, x.peak = o.peak_gflops;
    x.membw_src = "given (--membw-gbps)", x.peak_src = "given (--peak-gflops)";
    if (x.membw <= 0 && !strcmp(x.be->ops->name, "cpu")) {
        tw_membw_result mb;
        if (x.rank == 0) tw_progress_show(1, -1, "measuring the memory bandwidth");
        if ((st = tw_machine_membw(x.be->threads, 0, 5, &mb)) != TW_OK) goto fail;
        x.membw = mb.read_gbps;
        x.membw_src = "measured (tokwatt bench membw read)";
    }
    if (x.peak <= 0 && !strcmp(x.be->ops->name, "cpu")) {
        if (x.rank == 0) tw_progress_show(1, -1, "measuring the fp32 peak");
        if ((st = tw_machine_fp32_peak(x.be->threads, &x.peak)) != TW_OK) goto fail;
        x.peak_src = "measured (fp32 FMA loop)";
    }
    if (x.membw <= 0) x.membw_src = "not measured";
    if (x.peak <= 0) x.peak_src = "not measured";
    x.work_t0 = tw_now_s();

    /* degree by degree: ranks 0..tp-1 run it over a sub-communicator (the launch communicator
     * itself when tp is the launch size), the others wait at a barrier. An interruption (a
     * signal here or on another rank, seen by tw_run_stopped or as TW_ERR_INTERRUPTED from a
     * collective) leaves the loops for the result. */
    for (int ti = 0; ti < o.ntp && !incomplete[0] && !tw_run_stopped(&x); ti++) {
        int tp = o.tp[ti];
        int own_comm = 0;
        if (x.comm && tp == x.nranks) {
            x.tp_comm = x.comm;
        } else if (x.comm) {
            /* collective over every launched rank; NULL on ranks >= tp */
            if ((st = tw_comm_sub(x.comm, tp, &x.tp_comm)) != TW_OK) goto stopped;
            own_comm = 1;
            if (x.tp_comm && x.be->ops->native_stream &&
                (st = tw_comm_set_stream(x.tp_comm, x.be->ops->native_stream(x.be))) != TW_OK)
                goto fail;
        }
        if (ncombo > 1 && o.ntp > 1)
            tw_log("tensor-parallel degree %d: ranks 0..%d%s", tp, tp - 1,
                   tp < x.nranks ? ", the others wait" : "");
        /* one engine per weight dtype, sized for the largest combination of that dtype */
        for (int d = 0; d < o.ndtype && !incomplete[0] && x.rank < tp; d++) {
            int mb = 0, mp = 0, ms = 0;
            for (int i = 0; i < ncombo; i++) {
                if (combos[i].tp != tp || combos[i].dtype != o.dtype[d]) continue;
                if (combos[i].batch > mb) mb = combos[i].batch;
                if (combos[i].prompt > mp) mp = combos[i].prompt;
                if (combos[i].prompt + combos[i].gen > ms) ms = combos[i].prompt + combos[i].gen;
            }
            tw_dtype kv = o.kv_given ? o.kv_dtype : o.dtype[d];
            tw_engine_opts eo = tw_engine_opts_for(&x, tp, o.dtype[d], kv, mb, mp, ms);
            tw_mem_plan plan;
            if ((st = tw_engine_plan(&eo, &plan)) != TW_OK) goto fail;
            int shared = !(plan.available_bytes && plan.total_bytes > plan.available_bytes);
            if (!shared)
                tw_log("the largest %s combinations do not fit together: one engine per "
                       "combination",
                       tw_dtype_name(o.dtype[d]));
            tw_log("model %s: %.3f B parameters, weights %.2f GiB (%s) per rank, KV cache %.2f "
                   "GiB (%s), activations %.2f GiB; %.2f GiB available",
                   x.cfg.name, (double)tw_model_params(&x.cfg) / 1e9,
                   plan.weights_bytes / 1073741824.0, tw_dtype_name(o.dtype[d]),
                   plan.kv_bytes / 1073741824.0, tw_dtype_name(kv), plan.act_bytes / 1073741824.0,
                   plan.available_bytes / 1073741824.0);
            for (int i = 0; i < ncombo && !incomplete[0]; i++) {
                tw_combo *k = &combos[i];
                if (k->tp != tp || k->dtype != o.dtype[d]) continue;
                x.row = i + 1;
                if (!e) {
                    tw_engine_opts ek =
                        shared ? eo
                               : tw_engine_opts_for(&x, tp, k->dtype, k->kv_dtype, k->batch,
                                                    k->prompt, k->prompt + k->gen);
                    tw_build_progress bp = {&x, tw_now_s(), tw_dtype_name(k->dtype)};
                    ek.progress = tw_run_build_progress;
                    ek.progress_ctx = &bp;
                    double tb = tw_now_s();
                    if ((st = tw_engine_create(&ek, &e)) != TW_OK) {
                        if (st == TW_ERR_INTERRUPTED || tw_run_stopped(&x)) goto stopped;
                        goto fail;
                    }
                    tw_log("engine ready on %s (%d threads) in %.1f s", x.be->ops->name,
                           x.be->threads, tw_now_s() - tb);
                }
                if ((st = tw_run_combo(&x, e, k, rows, &sums[done_combos])) != TW_OK) {
                    if (x.comm || done_combos == 0) goto fail;
                    /* keep what the earlier combinations measured: write them, marked
                     * incomplete */
                    char name[160];
                    tw_combo_name(&o, k, name, sizeof name);
                    snprintf(incomplete, sizeof incomplete, "combination %s failed: %.150s", name,
                             tw_error_text());
                    fprintf(stderr, "tokwatt run: error: %s\n", tw_error_text());
                    st = TW_OK;
                    break;
                }
                if (sums[done_combos].incomplete[0])
                    snprintf(incomplete, sizeof incomplete, "%s", sums[done_combos].incomplete);
                if (sums[done_combos].reps_done > 0) done_combos++;
                if (x.intr_sig && !incomplete[0]) {
                    char who[64];
                    tw_run_intr_text(&x, who, sizeof who);
                    snprintf(incomplete, sizeof incomplete, "%s after row %d", who, x.row);
                }
                if (!shared) {
                    tw_engine_destroy(e);
                    e = NULL;
                }
            }
            tw_engine_destroy(e);
            e = NULL;
        }
        if (own_comm) tw_comm_destroy(x.tp_comm);
        x.tp_comm = NULL;
        if (x.intr_sig) break;
        /* the ranks that sat out wait here (sleeping, without the collective timeout) for the
         * working ones, before the next degree or the final collectives */
        if (x.comm && tp < x.nranks &&
            (st = tw_comm_idle_barrier(x.comm, TW_RUN_IDLE_WAIT_S)) != TW_OK)
            goto stopped;
        if (x.comm && ti + 1 < o.ntp) {
            /* all agree whether to go on: a failed combination on any rank stops the sweep
             * everywhere, so that no rank waits in a degree the others skip */
            double stop = 0;
            if ((st = tw_comm_max_f64(x.comm, incomplete[0] ? 1.0 : 0.0, &stop)) != TW_OK)
                goto stopped;
            if (stop > 0 && !incomplete[0])
                snprintf(incomplete, sizeof incomplete,
                         "another rank stopped the sweep after tensor-parallel degree %d", tp);
        }
    }
stopped:
    /* a collective that returned TW_ERR_INTERRUPTED, or a signal between steps */
    if (st == TW_ERR_INTERRUPTED || tw_run_stopped(&x)) {
        tw_run_stopped(&x);
        if (!x.intr_sig) x.intr_sig = SIGINT;
        st = TW_OK;
        if (x.tp_comm && x.tp_comm != x.comm) tw_comm_destroy(x.tp_comm);
        x.tp_comm = NULL;
        tw_engine_destroy(e);
        e = NULL;
        if (!incomplete[0]) {
            char who[64];
            tw_run_intr_text(&x, who, sizeof who);
            snprintf(incomplete, sizeof incomplete, "%s before row %d started", who,
                     x.row ? x.row : 1);
        }
    } else if (st != TW_OK) {
        goto fail;
    }
    tw_progress_clear();
    if (incomplete[0] && done_combos < ncombo) {
        char more[128];
        snprintf(more, sizeof more, "; %d of %d combinations measured", done_combos, ncombo);
        strncat(incomplete, more, sizeof incomplete - strlen(incomplete) - 1);
    }

    /* ---- the result file (rank 0) ----------------------------------------------------------- */
    double end_unix = tw_unix_now_s();
    if (x.rank != 0) {
        if (x.intr_sig) {
            /* rank 0 writes what was measured and ends the job */
            tw_run_wait_for_rank0(&x);
            rc = TW_EXIT_FAIL;
        } else {
            rc = TW_EXIT_OK;
        }
        goto done;
    }
    if (done_combos == 0 || json_array_size(rows) == 0) {
        char who[64] = "";
        if (x.intr_sig) tw_run_intr_text(&x, who, sizeof who);
        fprintf(stderr,
                "tokwatt run: %s%s before any repetition completed: nothing was measured, no "
                "result written\n",
                x.intr_sig ? "interrupted by " : "stopped", who);
        rc = TW_EXIT_FAIL;
        if (x.comm) tw_comm_abort(x.comm, TW_EXIT_FAIL);
        goto done;
    }
    root = json_object();
    json_object_set_new(root, "schema_version", json_integer(TW_RESULT_SCHEMA_MAJOR));
    json_object_set_new(root, "kind", json_string(ncombo > 1 ? "sweep" : "run"));
    json_object_set_new(root, "complete", json_boolean(!incomplete[0]));
    if (incomplete[0]) json_object_set_new(root, "incomplete_reason", json_string(incomplete));
    if (x.intr_sig) {
        json_t *ij = json_object();
        json_object_set_new(ij, "signal", json_string(tw_signal_name(x.intr_sig)));
        json_object_set_new(ij, "rank", json_integer(x.intr_rank < 0 ? 0 : x.intr_rank));
        json_object_set_new(root, "interrupted", ij);
    }
    json_error_t jerr;
    json_t *mj = json_loads(x.cfg.json, 0, &jerr);
    json_object_set_new(root, "model", mj ? mj : json_null());
    if (ncombo == 1 && json_array_size(rows) == 1) {
        /* a single run: its row's fields at the top level */
        json_t *row = json_array_get(rows, 0);
        const char *key;
        json_t *val;
        json_object_foreach(row, key, val) {
            if (strcmp(key, "complete") && strcmp(key, "incomplete_reason"))
                json_object_set(root, key, val);
        }
    } else {
        json_object_set(root, "rows", rows);
    }
    json_t *roof = json_object();
    json_object_set_new(roof, "membw_gbps", x.membw > 0 ? json_real(x.membw) : json_null());
    json_object_set_new(roof, "membw_source", json_string(x.membw_src));
    json_object_set_new(roof, "peak_gflops", x.peak > 0 ? json_real(x.peak) : json_null());
    json_object_set_new(roof, "peak_source", json_string(x.peak_src));
    json_object_set_new(root, "roofline", roof);
    json_t *mem = json_object();
    json_object_set_new(mem, "params", json_integer((json_int_t)tw_model_params(&x.cfg)));
    json_object_set_new(root, "memory", mem);
    if (x.comm) {
        json_t *cj = json_object();
        json_object_set_new(cj, "kind", json_string(tw_comm_kind(x.comm)));
        json_object_set_new(cj, "ranks", json_integer(x.nranks));
        json_object_set_new(cj, "hosts", json_integer(hosts.n_hosts));
        json_object_set_new(cj, "max_ranks_per_host", json_integer(hosts.max_per_host));
        json_t *hl = json_array();
        for (int r = 0; r < hosts.size; r++) json_array_append_new(hl, json_string(hosts.host[r]));
        json_object_set_new(cj, "rank_hosts", hl);
        json_object_set_new(cj, "devices_per_rank", json_integer(1));
        json_object_set_new(cj, "timeout_s", json_real(o.comm_timeout_s));
        json_object_set_new(root, "comm", cj);
    }
    if (!prov) prov = tw_provenance_json(x.be->ops->name, start_unix, end_unix);
    char t1[64];
    tw_utc_iso(t1, sizeof t1, end_unix);
    json_object_set_new(prov, "end_utc", json_string(t1));
    if (!strcmp(x.be->ops->name, "cuda")) {
        /* the accelerator, for provenance and for the device table's roofline */
        tw_cuda_device_info di;
        if (tw_cuda_device_query(x.be->device, &di) == TW_OK) {
            char cc[16];
            snprintf(cc, sizeof cc, "%d.%d", di.cc_major, di.cc_minor);
            json_object_set_new(prov, "gpu_name", json_string(di.name));
            json_object_set_new(prov, "gpu_compute_capability", json_string(cc));
            json_object_set_new(prov, "gpu_sm_count", json_integer(di.sm_count));
            json_object_set_new(prov, "gpu_memory_bytes", json_integer((json_int_t)di.total_mem));
        }
    }
    json_object_set(root, "provenance", prov);

    char path[4200], written[4400];
    if (o.out_is_file)
        snprintf(path, sizeof path, "%s", o.out);
    else
        tw_result_default_path(path, sizeof path, o.out_dir, x.cfg.name, start_unix);
    /* per-combination memory plans, for the record */
    {
        tw_engine_opts eo =
            tw_engine_opts_for(&x, combos[0].tp, combos[0].dtype, combos[0].kv_dtype,
                               combos[0].batch, combos[0].prompt, combos[0].prompt + combos[0].gen);
        tw_mem_plan plan;
        if (tw_engine_plan(&eo, &plan) == TW_OK) {
            json_object_set_new(mem, "weights_bytes", json_integer((json_int_t)plan.weights_bytes));
            json_object_set_new(mem, "kv_cache_bytes", json_integer((json_int_t)plan.kv_bytes));
            json_object_set_new(mem, "activation_bytes", json_integer((json_int_t)plan.act_bytes));
            json_object_set_new(mem, "per_rank", json_boolean(combos[0].tp > 1));
        }
    }
    int write_failed = 0;
    if ((st = tw_result_write(root, path, written, sizeof written)) != TW_OK) {
        /* the destination failed after the check (removed, full, read-only since): keep the
         * measurement in a temporary file and say where */
        write_failed = 1;
        fprintf(stderr, "tokwatt run: error: cannot write the result to %s: %s\n", path,
                tw_error_text());
        if (tw_result_write_fallback(root, x.cfg.name, written, sizeof written) == TW_OK) {
            fprintf(stderr, "tokwatt run: the result was written to %s instead\n", written);
        } else {
            fprintf(stderr,
                    "tokwatt run: error: the fallback failed too: %s; the result is "
                    "lost\n",
                    tw_error_text());
            written[0] = '\0';
        }
        st = TW_OK;
    } else if (strcmp(written, path)) {
        tw_log("%s exists: the result takes the next free name", path);
    }

    if (o.fmt == TW_FMT_JSON) {
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text) puts(text);
        free(text);
    } else if (o.fmt == TW_FMT_CSV) {
        tw_print_csv(rows, root);
    } else {
        tw_print_table(&x, sums, done_combos);
    }
    if (written[0] && !write_failed) tw_log("result written to %s", written);
    int dump_failed = 0;
    for (int i = 0; i < done_combos; i++) dump_failed |= sums[i].dump_error[0] != 0;
    rc = incomplete[0] || write_failed || dump_failed ? TW_EXIT_FAIL : TW_EXIT_OK;
    if (x.comm && x.intr_sig) {
        /* the other ranks wait for this one (or were abandoned in a collective): end them */
        char who[64];
        tw_run_intr_text(&x, who, sizeof who);
        fprintf(stderr, "tokwatt run: interrupted by %s: result written; ending the other ranks\n",
                who);
        fflush(stdout);
        tw_comm_abort(x.comm, TW_EXIT_FAIL);
    }
    goto done;
fail:
    tw_progress_clear();
    if (x.comm) {
        /* one rank's failure ends the whole job now, rather than at the peers' timeout */
        fprintf(stderr, "tokwatt run: rank %d: error: %s\n", x.rank, tw_error_text());
        tw_comm_abort(x.comm, st == TW_ERR_INVALID ? TW_EXIT_USAGE : TW_EXIT_FAIL);
    }
    fprintf(stderr, "tokwatt run: error: %s\n", tw_error_text());
    if (st == TW_ERR_INVALID) rc = TW_EXIT_USAGE;
done:
    tw_progress_clear();
    tw_comm_free_hosts(&hosts);
    json_decref(root);
    json_decref(rows);
    json_decref(prov);
    free(combos);
    free(sums);
    tw_engine_destroy(e);
    tw_backend_destroy(x.be);
    tw_comm_destroy(x.comm);
    tw_model_free(&x.cfg);
    return rc;
}
