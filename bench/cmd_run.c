/* `tokwatt run`: synthetic transformer inference, the suite's main job.
 * Plans memory, builds the engine, runs warm-up and measured repetitions of prefill + decode,
 * and writes a result file (metrics as medians with spread, scenario, model, provenance). An
 * interrupted run (SIGINT) still writes what it measured, marked incomplete. */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tw_backend.h"
#include "tw_cli.h"
#include "tw_cmds.h"
#include "tw_comm.h"
#include "tw_engine.h"
#include "tw_machine.h"
#include "tw_model.h"
#include "tw_npy.h"
#include "tw_power.h"
#include "tw_project.h"
#include "tw_results.h"
#include "tw_util.h"

static const char *tw_run_usage =
    "tokwatt run [--model NAME|PATH] [--backend cpu|cuda] [--dtype bf16|fp32] [--kv-dtype "
    "bf16|fp32]\n"
    "            [--batch B] [--prompt P] [--gen G] [--warmup W] [--reps R] [--threads T] "
    "[--seed S]\n"
    "            [--out DIR|FILE.json] [--format md|json|csv] [--dump-logits FILE.npy]\n"
    "            [--power auto|nvml|rapl|assumed|none] [--watts W] [--sample-ms MS]\n"
    "            [--membw-gbps X] [--peak-gflops X] [--device N]\n"
    "            [--tp N [--comm auto|mpi|nccl|local] [--comm-timeout S]]  (under mpirun -np N)";

static volatile sig_atomic_t tw_run_interrupted = 0;

static void tw_run_on_sigint(int sig) {
    (void)sig;
    tw_run_interrupted = 1;
}

typedef struct {
    const char *model, *backend, *out, *dump, *power, *comm;
    int tp;
    double comm_timeout_s;
    double watts;
    int sample_ms;
    tw_dtype w_dtype, kv_dtype;
    int batch, prompt, gen, warmup, reps, threads, device;
    long seed;
    tw_format fmt;
    double membw_gbps, peak_gflops; /* 0: measure */
} tw_run_opts;

typedef struct {
    double ttft_s;   /* prefill, including the first token's argmax */
    double decode_s; /* all decode steps */
    double *step_s;  /* [gen - 1] */
    int steps_done;  /* decode steps completed */
    int complete;
} tw_rep;

static tw_status tw_run_parse(tw_args *a, tw_run_opts *o) {
    const char *dt, *kvdt;
    TW_TRY(tw_args_str(a, "--model", "llama-3.2-1b", &o->model));
    TW_TRY(tw_args_str(a, "--backend", "cpu", &o->backend));
    TW_TRY(tw_args_str(a, "--dtype", "bf16", &dt));
    TW_TRY(tw_dtype_parse(dt, &o->w_dtype));
    TW_TRY(tw_args_str(a, "--kv-dtype", dt, &kvdt));
    TW_TRY(tw_dtype_parse(kvdt, &o->kv_dtype));
    TW_TRY(tw_args_int(a, "--batch", 1, 1, 4096, &o->batch));
    TW_TRY(tw_args_int(a, "--prompt", 128, 1, 1 << 20, &o->prompt));
    TW_TRY(tw_args_int(a, "--gen", 32, 1, 1 << 20, &o->gen));
    TW_TRY(tw_args_int(a, "--warmup", 1, 0, 1000, &o->warmup));
    TW_TRY(tw_args_int(a, "--reps", 3, 1, 1000, &o->reps));
    TW_TRY(tw_args_int(a, "--threads", 0, 0, 4096, &o->threads));
    TW_TRY(tw_args_int(a, "--device", 0, 0, 1024, &o->device));
    TW_TRY(tw_args_long(a, "--seed", 1, 0, 0x7fffffffffffffffL, &o->seed));
    TW_TRY(tw_args_str(a, "--out", "results", &o->out));
    TW_TRY(tw_args_str(a, "--dump-logits", NULL, &o->dump));
    TW_TRY(tw_args_double(a, "--membw-gbps", 0, 0, 1e6, &o->membw_gbps));
    TW_TRY(tw_args_double(a, "--peak-gflops", 0, 0, 1e9, &o->peak_gflops));
    TW_TRY(tw_args_int(a, "--tp", 1, 1, 4096, &o->tp));
    TW_TRY(tw_args_str(a, "--comm", "auto", &o->comm));
    TW_TRY(tw_args_double(a, "--comm-timeout", 60, 0.1, 86400, &o->comm_timeout_s));
    TW_TRY(tw_args_str(a, "--power", "auto", &o->power));
    TW_TRY(tw_args_double(a, "--watts", 0, 0, 1e7, &o->watts));
    TW_TRY(tw_args_int(a, "--sample-ms", 50, 10, 100, &o->sample_ms));
    TW_TRY(tw_args_format(a, &o->fmt));
    TW_TRY(tw_args_finish(a));
    if (o->watts > 0 && strcmp(o->power, "auto") && strcmp(o->power, "assumed"))
        return TW_ERR(TW_ERR_INVALID,
                      "--watts gives an assumed power: it goes with --power assumed");
    if (o->watts > 0) o->power = "assumed";
    return TW_OK;
}

/* Bytes one decode step must read at least: every weight that multiplies the token once, the
 * embedding row, and the KV cache of every sequence up to its length. */
static double tw_decode_step_bytes(const tw_model_config *c, const tw_run_opts *o, int ctx) {
    double ws = (double)tw_dtype_size(o->w_dtype);
    double weights = (double)tw_model_params_nonembed(c) * ws;
    if (c->tie_embeddings) weights += (double)c->vocab * c->hidden * ws; /* LM head reads it */
    weights += (double)o->batch * c->hidden * ws;                        /* embedding rows */
    double kv = (double)o->batch * c->n_layers * 2.0 * c->n_kv_heads * c->head_dim * (double)ctx *
                (double)tw_dtype_size(o->kv_dtype);
    return weights + kv;
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

/* Runs one repetition: reset, prefill, gen-1 decode steps. Tokens generated go to gen_tokens
 * [batch, gen] when non-NULL; logits to the npy writer when non-NULL. */
static tw_status tw_run_rep(tw_engine *e, const tw_run_opts *o, const int *prompt, int *cur,
                            int *next, tw_rep *r, int *gen_tokens, tw_npy_writer *dump,
                            const tw_model_config *c, tw_backend *be, tw_power_meter *pm) {
    tw_engine_reset(e);
    r->steps_done = 0;
    r->complete = 0;
    if (pm) TW_TRY(tw_power_begin(pm, "prefill"));
    double t0 = tw_now_s();
    TW_TRY(tw_engine_prefill(e, o->batch, o->prompt, prompt, next));
    TW_TRY(be->ops->sync(be));
    r->ttft_s = tw_now_s() - t0;
    if (pm) TW_TRY(tw_power_end(pm, "prefill", NULL));
    if (gen_tokens)
        for (int b = 0; b < o->batch; b++) gen_tokens[(size_t)b * o->gen] = next[b];
    if (dump) TW_TRY(tw_npy_writer_append(dump, tw_engine_logits(e), (size_t)o->batch * c->vocab));
    if (pm && o->gen > 1) TW_TRY(tw_power_begin(pm, "decode"));
    double d0 = tw_now_s();
    for (int s = 1; s < o->gen; s++) {
        if (tw_run_interrupted) {
            if (pm) tw_power_end(pm, "decode", NULL);
            return TW_ERR(TW_ERR_INTERRUPTED, "interrupted (SIGINT) at decode step %d", s);
        }
        memcpy(cur, next, sizeof(int) * (size_t)o->batch);
        double s0 = tw_now_s();
        TW_TRY(tw_engine_decode(e, o->batch, cur, next));
        TW_TRY(be->ops->sync(be));
        r->step_s[s - 1] = tw_now_s() - s0;
        r->steps_done = s;
        if (gen_tokens)
            for (int b = 0; b < o->batch; b++) gen_tokens[(size_t)b * o->gen + s] = next[b];
        if (dump)
            TW_TRY(tw_npy_writer_append(dump, tw_engine_logits(e), (size_t)o->batch * c->vocab));
    }
    r->decode_s = tw_now_s() - d0;
    if (pm && o->gen > 1) TW_TRY(tw_power_end(pm, "decode", NULL));
    r->complete = 1;
    return TW_OK;
}

int tw_cmd_run(int argc, char **argv) {
    tw_args a;
    tw_run_opts o;
    memset(&o, 0, sizeof o);
    if (tw_args_init(&a, "tokwatt run", tw_run_usage, argc, argv) != TW_OK) return TW_EXIT_FAIL;
    if (tw_args_flag(&a, "--help") || tw_args_flag(&a, "-h")) {
        printf("usage: %s\n", tw_run_usage);
        tw_args_free(&a);
        return TW_EXIT_OK;
    }
    if (tw_run_parse(&a, &o) != TW_OK) {
        tw_cli_fail(&a);
        tw_args_free(&a);
        return TW_EXIT_USAGE;
    }
    tw_args_free(&a);

    int rc = TW_EXIT_FAIL;
    tw_status st = TW_OK;
    tw_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    tw_backend *be = NULL;
    tw_engine *e = NULL;
    tw_npy_writer *dump = NULL;
    tw_power_meter *pm = NULL;
    tw_comm *comm = NULL;
    int *prompt = NULL, *cur = NULL, *next = NULL, *gen_tokens = NULL, *check_tokens = NULL;
    tw_rep *reps = NULL;
    json_t *root = NULL;
    double start_unix = tw_unix_now_s();
    const char *stage = "setup";
    char interrupted_at[256] = "";

    if ((st = tw_model_load(o.model, &cfg)) != TW_OK) goto fail;
    /* ranks: a communicator whenever more than one rank runs (or is asked for) */
    int rank = 0, nranks = 1;
    if (o.tp > 1 || tw_comm_under_launcher()) {
        stage = "communicator";
        if ((st = tw_comm_create(o.comm, o.backend, o.comm_timeout_s, &comm)) != TW_OK) goto fail;
        rank = tw_comm_rank(comm);
        nranks = tw_comm_size(comm);
        if (nranks != o.tp) {
            st = TW_ERR(TW_ERR_INVALID,
                        "%d ranks were launched but --tp is %d: launch with mpirun -np %d "
                        "tokwatt run --tp %d",
                        nranks, o.tp, o.tp, o.tp);
            goto fail;
        }
        if (rank != 0) tw_log_quiet(1);
        /* every rank must run the same scenario (the binary is checked on creation) */
        char canon[2048];
        snprintf(canon, sizeof canon,
                 "model=%s|backend=%s|dtype=%d|kv=%d|batch=%d|prompt=%d|gen=%d|warmup=%d|reps=%d|"
                 "seed=%ld|tp=%d|power=%s|watts=%g",
                 cfg.json, o.backend, (int)o.w_dtype, (int)o.kv_dtype, o.batch, o.prompt, o.gen,
                 o.warmup, o.reps, o.seed, o.tp, o.power, o.watts);
        if ((st = tw_comm_check_consistency(comm, canon, strlen(canon), "the run configuration")) !=
            TW_OK)
            goto fail;
        tw_log("tensor parallel over %d ranks, communicator %s", nranks, tw_comm_kind(comm));
    }
    int device = comm && tw_comm_device(comm) >= 0 ? tw_comm_device(comm) : o.device;
    if ((st = tw_backend_create(o.backend, o.threads, device, &be)) != TW_OK) goto fail;
    if (comm && be->ops->native_stream)
        if ((st = tw_comm_set_stream(comm, be->ops->native_stream(be))) != TW_OK) goto fail;
    tw_engine_opts eo = {.cfg = &cfg,
                         .be = be,
                         .w_dtype = o.w_dtype,
                         .kv_dtype = o.kv_dtype,
                         .max_batch = o.batch,
                         .max_seq = o.prompt + o.gen,
                         .max_prefill = o.prompt,
                         .seed = (uint64_t)o.seed,
                         .comm = comm,
                         .tp_rank = rank,
                         .tp_size = nranks};
    tw_mem_plan plan;
    if ((st = tw_engine_plan(&eo, &plan)) != TW_OK) goto fail;
    tw_log("model %s: %.3f B parameters, weights %.2f GiB (%s), KV cache %.2f GiB (%s), "
           "activations %.2f GiB; %.2f GiB available",
           cfg.name, (double)tw_model_params(&cfg) / 1e9, plan.weights_bytes / 1073741824.0,
           tw_dtype_name(o.w_dtype), plan.kv_bytes / 1073741824.0, tw_dtype_name(o.kv_dtype),
           plan.act_bytes / 1073741824.0, plan.available_bytes / 1073741824.0);
    double tb = tw_now_s();
    if ((st = tw_engine_create(&eo, &e)) != TW_OK) goto fail;
    tw_log("engine ready on %s (%d threads) in %.1f s", be->ops->name, be->threads,
           tw_now_s() - tb);

    /* roofline ceilings of this machine, measured now unless given */
    double membw = o.membw_gbps, peak = o.peak_gflops;
    const char *membw_src = "given (--membw-gbps)", *peak_src = "given (--peak-gflops)";
    if (membw <= 0 && !strcmp(be->ops->name, "cpu")) {
        tw_membw_result mb;
        if ((st = tw_machine_membw(be->threads, 0, 5, &mb)) != TW_OK) goto fail;
        membw = mb.read_gbps;
        membw_src = "measured (tokwatt bench membw read)";
    }
    if (peak <= 0 && !strcmp(be->ops->name, "cpu")) {
        if ((st = tw_machine_fp32_peak(be->threads, &peak)) != TW_OK) goto fail;
        peak_src = "measured (fp32 FMA loop)";
    }

    int is_cuda = !strcmp(be->ops->name, "cuda");
    tw_power_opts po = {.source = o.power,
                        .assumed_w = o.watts,
                        .sample_ms = o.sample_ms,
                        .gpu_index = is_cuda ? o.device : -1,
                        .devices = 1};
    if ((st = tw_power_open(&po, &pm)) != TW_OK) goto fail;
    tw_log("power: %s (%s)%s%s", tw_power_source(pm), tw_power_method(pm),
           tw_power_fallbacks(pm)[0] ? "; not used: " : "", tw_power_fallbacks(pm));

    size_t B = (size_t)o.batch;
    prompt = malloc(sizeof(int) * B * (size_t)o.prompt);
    cur = malloc(sizeof(int) * B);
    next = malloc(sizeof(int) * B);
    gen_tokens = malloc(sizeof(int) * B * (size_t)o.gen);
    check_tokens = malloc(sizeof(int) * B * (size_t)o.gen);
    reps = calloc((size_t)o.reps, sizeof *reps);
    if (!prompt || !cur || !next || !gen_tokens || !check_tokens || !reps) {
        st = TW_ERR(TW_ERR_NOMEM, "run bookkeeping");
        goto fail;
    }
    for (int r = 0; r < o.reps; r++) {
        reps[r].step_s = calloc((size_t)(o.gen > 1 ? o.gen - 1 : 1), sizeof(double));
        if (!reps[r].step_s) {
            st = TW_ERR(TW_ERR_NOMEM, "run bookkeeping");
            goto fail;
        }
    }
    tw_prompt_tokens((uint64_t)o.seed, o.batch, o.prompt, cfg.vocab, prompt);

    signal(SIGINT, tw_run_on_sigint);
    int show_progress = isatty(STDERR_FILENO);
    stage = "warm-up";
    for (int w = 0; w < o.warmup && !tw_run_interrupted; w++) {
        tw_rep tmp = {.step_s = reps[0].step_s};
        if (show_progress) fprintf(stderr, "\r# warm-up %d/%d   ", w + 1, o.warmup);
        if ((st = tw_run_rep(e, &o, prompt, cur, next, &tmp, NULL, NULL, &cfg, be, NULL)) != TW_OK)
            break;
    }
    int reps_done = 0;
    double comm_s0 = e ? tw_engine_comm_seconds(e) : 0;
    stage = "measured repetitions";
    for (int r = 0; r < o.reps && st == TW_OK && !tw_run_interrupted; r++) {
        if (show_progress) fprintf(stderr, "\r# repetition %d/%d   ", r + 1, o.reps);
        st = tw_run_rep(e, &o, prompt, cur, next, &reps[r], r == 0 ? gen_tokens : check_tokens,
                        NULL, &cfg, be, pm);
        if (st == TW_OK) {
            reps_done++;
            if (r > 0 && memcmp(gen_tokens, check_tokens, sizeof(int) * B * (size_t)o.gen) != 0) {
                st = TW_ERR(TW_ERR_INTERNAL,
                            "repetition %d generated different tokens than repetition 1: the "
                            "engine is not deterministic",
                            r + 1);
            }
        }
    }
    if (show_progress) fprintf(stderr, "\r%40s\r", "");
    if (st == TW_ERR_INTERRUPTED || tw_run_interrupted) {
        snprintf(interrupted_at, sizeof interrupted_at,
                 "SIGINT during %s (%d of %d repetitions complete)", stage, reps_done, o.reps);
        st = TW_OK;
    }
    if (st != TW_OK) goto fail;

    /* an un-timed pass that dumps the logits of every step */
    if (o.dump && !interrupted_at[0]) {
        int64_t shape[3] = {o.gen, (int64_t)B, cfg.vocab};
        if ((st = tw_npy_writer_open(o.dump, shape, 3, &dump)) != TW_OK) goto fail;
        tw_engine_set_capture(e, 1);
        tw_rep tmp = {.step_s = reps[0].step_s};
        double keep_ttft = reps[0].ttft_s;
        st = tw_run_rep(e, &o, prompt, cur, next, &tmp, check_tokens, dump, &cfg, be, NULL);
        reps[0].ttft_s = keep_ttft;
        tw_engine_set_capture(e, 0);
        if (st != TW_OK) goto fail;
        if ((st = tw_npy_writer_close(dump)) != TW_OK) {
            dump = NULL;
            goto fail;
        }
        dump = NULL;
        tw_log("logits of %d steps written to %s", o.gen, o.dump);
    }

    /* ---- metrics ------------------------------------------------------------------------ */
    double comm_s_measured = tw_engine_comm_seconds(e) - comm_s0;
    double end_unix = tw_unix_now_s();
    int nrep = 0;
    for (int r = 0; r < o.reps; r++) nrep += reps[r].complete;
    double *v_pf = calloc((size_t)o.reps + 1, sizeof(double));
    double *v_dec = calloc((size_t)o.reps + 1, sizeof(double));
    double *v_e2e = calloc((size_t)o.reps + 1, sizeof(double));
    double *v_ttft = calloc((size_t)o.reps + 1, sizeof(double));
    size_t nsteps_all = (size_t)o.reps * (size_t)(o.gen > 1 ? o.gen - 1 : 1);
    double *v_step = calloc(nsteps_all + 1, sizeof(double));
    int ns = 0, nd = 0;
    for (int r = 0; r < o.reps; r++) {
        if (!reps[r].complete) continue;
        v_ttft[nd] = reps[r].ttft_s;
        v_pf[nd] = (double)B * o.prompt / reps[r].ttft_s;
        v_dec[nd] = o.gen > 1 ? (double)B * (o.gen - 1) / reps[r].decode_s : NAN;
        v_e2e[nd] = (double)B * o.gen / (reps[r].ttft_s + reps[r].decode_s);
        nd++;
        for (int s = 0; s < o.gen - 1; s++) v_step[ns++] = reps[r].step_s[s];
    }
    tw_stats s_pf = tw_stats_of(v_pf, nd), s_dec = tw_stats_of(v_dec, nd);
    tw_stats s_e2e = tw_stats_of(v_e2e, nd), s_ttft = tw_stats_of(v_ttft, nd);
    tw_stats s_step = tw_stats_of(v_step, ns);
    free(v_pf), free(v_dec), free(v_e2e), free(v_ttft), free(v_step);

    /* decode roofline: bytes at the mean context of the decode steps */
    int mean_ctx = o.prompt + o.gen / 2;
    double step_bytes = tw_decode_step_bytes(&cfg, &o, mean_ctx);
    double decode_gbps = ns ? step_bytes / s_step.median / 1e9 : NAN;
    double bw_frac = membw > 0 ? decode_gbps / membw : NAN;
    double pf_flops = (double)B * o.prompt * tw_model_flops_per_token(&cfg, o.prompt / 2);
    double pf_gflops = nd ? pf_flops / s_ttft.median / 1e9 : NAN;
    double mfu = peak > 0 ? pf_gflops / peak : NAN;

    root = json_object();
    json_object_set_new(root, "schema_version", json_integer(TW_RESULT_SCHEMA_VERSION));
    json_object_set_new(root, "kind", json_string("run"));
    json_object_set_new(root, "complete", json_boolean(!interrupted_at[0]));
    if (interrupted_at[0])
        json_object_set_new(root, "incomplete_reason", json_string(interrupted_at));
    json_t *scen = json_object();
    json_object_set_new(scen, "model", json_string(cfg.name));
    json_object_set_new(scen, "backend", json_string(be->ops->name));
    json_object_set_new(scen, "threads", json_integer(be->threads));
    json_object_set_new(scen, "dtype", json_string(tw_dtype_name(o.w_dtype)));
    json_object_set_new(scen, "kv_dtype", json_string(tw_dtype_name(o.kv_dtype)));
    json_object_set_new(scen, "batch", json_integer(o.batch));
    json_object_set_new(scen, "prompt", json_integer(o.prompt));
    json_object_set_new(scen, "gen", json_integer(o.gen));
    json_object_set_new(scen, "warmup", json_integer(o.warmup));
    json_object_set_new(scen, "reps", json_integer(o.reps));
    json_object_set_new(scen, "seed", json_integer(o.seed));
    json_object_set_new(scen, "tp", json_integer(nranks));
    json_object_set_new(scen, "devices", json_integer(nranks));
    json_object_set_new(root, "scenario", scen);
    json_error_t jerr;
    json_t *mj = json_loads(cfg.json, 0, &jerr);
    json_object_set_new(root, "model", mj ? mj : json_null());

    json_t *m = json_object();
    json_object_set_new(m, "prefill_tokens_per_s", tw_jnum(s_pf.median));
    json_object_set_new(m, "decode_tokens_per_s", tw_jnum(s_dec.median));
    json_object_set_new(m, "e2e_tokens_per_s", tw_jnum(s_e2e.median));
    json_object_set_new(m, "ttft_s", tw_jnum(s_ttft.median));
    json_t *tpot = json_object();
    json_object_set_new(tpot, "mean", tw_jnum(s_step.mean));
    json_object_set_new(tpot, "p50", tw_jnum(s_step.p50));
    json_object_set_new(tpot, "p99", tw_jnum(s_step.p99));
    json_object_set_new(tpot, "n", json_integer(s_step.n));
    json_object_set_new(m, "tpot_s", tpot);
    json_object_set_new(m, "decode_bandwidth_gbps", tw_jnum(decode_gbps));
    json_object_set_new(m, "decode_bandwidth_fraction", tw_jnum(bw_frac));
    json_object_set_new(m, "decode_bytes_per_step", tw_jnum(step_bytes));
    json_object_set_new(m, "prefill_gflops", tw_jnum(pf_gflops));
    json_object_set_new(m, "prefill_mfu", tw_jnum(mfu));
    json_t *spread = json_object();
    json_object_set_new(spread, "prefill_tokens_per_s", tw_stats_json(&s_pf));
    json_object_set_new(spread, "decode_tokens_per_s", tw_stats_json(&s_dec));
    json_object_set_new(spread, "e2e_tokens_per_s", tw_stats_json(&s_e2e));
    json_object_set_new(spread, "ttft_s", tw_stats_json(&s_ttft));
    json_object_set_new(spread, "tpot_s", tw_stats_json(&s_step));
    json_object_set_new(m, "spread", spread);
    json_object_set_new(m, "repetitions_complete", json_integer(nrep));
    json_object_set_new(root, "metrics", m);

    json_t *roof = json_object();
    json_object_set_new(roof, "membw_gbps", membw > 0 ? tw_jnum(membw) : json_null());
    json_object_set_new(roof, "membw_source", json_string(membw > 0 ? membw_src : "not measured"));
    json_object_set_new(roof, "peak_gflops", peak > 0 ? tw_jnum(peak) : json_null());
    json_object_set_new(roof, "peak_source", json_string(peak > 0 ? peak_src : "not measured"));
    json_object_set_new(root, "roofline", roof);

    json_t *mem = json_object();
    json_object_set_new(mem, "weights_bytes", json_integer((json_int_t)plan.weights_bytes));
    json_object_set_new(mem, "kv_cache_bytes", json_integer((json_int_t)plan.kv_bytes));
    json_object_set_new(mem, "activation_bytes", json_integer((json_int_t)plan.act_bytes));
    json_object_set_new(mem, "params", json_integer((json_int_t)tw_model_params(&cfg)));
    json_object_set_new(root, "memory", mem);

    json_t *pt = json_array(), *gt = json_array();
    for (size_t b = 0; b < B; b++) {
        json_t *p1 = json_array(), *g1 = json_array();
        for (int i = 0; i < o.prompt; i++)
            json_array_append_new(p1, json_integer(prompt[b * o.prompt + i]));
        for (int i = 0; i < o.gen && nrep > 0; i++)
            json_array_append_new(g1, json_integer(gen_tokens[b * o.gen + i]));
        json_array_append_new(pt, p1);
        json_array_append_new(gt, g1);
    }
    json_object_set_new(root, "prompt_tokens", pt);
    json_object_set_new(root, "generated_tokens", gt);
    json_object_set_new(root, "provenance",
                        tw_provenance_json(be->ops->name, start_unix, end_unix));
    tw_power_tokens ptok = {.prefill = (double)nrep * B * o.prompt,
                            .decode = (double)nrep * B * (o.gen - 1),
                            .e2e = (double)nrep * B * o.gen};
    json_t *energy = NULL;
    if ((st = tw_power_energy_json(pm, &ptok, &energy)) != TW_OK) goto fail;
    json_object_set_new(root, "energy", energy);
    /* per-rank figures, the collective share and the fabric (tensor parallel runs) */
    double measured_s = 0;
    for (int r = 0; r < o.reps; r++)
        if (reps[r].complete) measured_s += reps[r].ttft_s + reps[r].decode_s;
    double comm_share = measured_s > 0 ? comm_s_measured / measured_s : NAN;
    json_object_set_new(m, "collective_share", comm ? tw_jnum(comm_share) : json_real(0.0));
    if (comm) {
        double mine[5] = {s_ttft.median, s_step.p50, s_dec.median, comm_share, NAN};
        double w_rank = 0;
        if (tw_power_mean_w_per_device(pm, &w_rank) == TW_OK) mine[4] = w_rank;
        const char *names[5] = {"ttft_s", "tpot_p50_s", "decode_tokens_per_s", "collective_share",
                                "mean_power_w"};
        double *all = calloc((size_t)nranks * 5, sizeof(double));
        if (!all) {
            st = TW_ERR(TW_ERR_NOMEM, "per-rank figures");
            goto fail;
        }
        for (int k = 0; k < 5 && st == TW_OK; k++)
            st = tw_comm_allgather_f64(comm, mine[k], all + (size_t)k * nranks);
        tw_comm_hosts hosts;
        memset(&hosts, 0, sizeof hosts);
        if (st == TW_OK) st = tw_comm_gather_hosts(comm, &hosts);
        if (st != TW_OK) {
            free(all);
            goto fail;
        }
        json_t *rj = json_array();
        for (int r = 0; r < nranks; r++) {
            json_t *x = json_object();
            json_object_set_new(x, "rank", json_integer(r));
            json_object_set_new(x, "host", json_string(hosts.host[r]));
            for (int k = 0; k < 5; k++)
                json_object_set_new(x, names[k], tw_jnum(all[(size_t)k * nranks + r]));
            json_array_append_new(rj, x);
        }
        json_object_set_new(root, "ranks", rj);
        json_t *cj = json_object();
        json_object_set_new(cj, "kind", json_string(tw_comm_kind(comm)));
        json_object_set_new(cj, "ranks", json_integer(nranks));
        json_object_set_new(cj, "hosts", json_integer(hosts.n_hosts));
        json_object_set_new(cj, "max_ranks_per_host", json_integer(hosts.max_per_host));
        json_object_set_new(cj, "devices_per_rank", json_integer(1));
        json_object_set_new(cj, "timeout_s", json_real(o.comm_timeout_s));
        json_object_set_new(root, "comm", cj);
        tw_comm_free_hosts(&hosts);
        free(all);
    }
    if (rank != 0) {
        rc = TW_EXIT_OK;
        goto done;
    }

    /* the projection's headline: e2e output tokens/s and mean watts, per device */
    char headline[1024] = "";
    double w_dev = 0;
    if (nd > 0 && tw_power_mean_w_per_device(pm, &w_dev) == TW_OK && w_dev > 0 &&
        isfinite(s_e2e.median)) {
        char label[160];
        snprintf(label, sizeof label, "%s", tw_power_label(pm));
        if (tw_project_headline(s_e2e.median, w_dev, label, tw_power_is_assumed(pm), headline,
                                sizeof headline) != TW_OK)
            snprintf(headline, sizeof headline, "projection unavailable: %s", tw_last_error());
    } else {
        snprintf(headline, sizeof headline,
                 "projection unavailable: no power figure (source %s); give --watts W or "
                 "--power assumed",
                 tw_power_source(pm));
    }
    json_object_set_new(root, "projection_headline", json_string(headline));

    char path[1024];
    size_t ol = strlen(o.out);
    if (ol > 5 && !strcmp(o.out + ol - 5, ".json"))
        snprintf(path, sizeof path, "%s", o.out);
    else
        tw_result_default_path(path, sizeof path, o.out, cfg.name, start_unix);
    if ((st = tw_result_write(root, path)) != TW_OK) goto fail;

    /* ---- the table ------------------------------------------------------------------------ */
    if (o.fmt == TW_FMT_JSON) {
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text) puts(text);
        free(text);
    } else {
        const char *head[] = {"model", "params", "backend", "threads",
                              "dtype", "test",   "t/s",     "spread (min-max)"};
        tw_table t;
        tw_table_init(&t, 8, head);
        char params[32];
        snprintf(params, sizeof params, "%.2f B", (double)tw_model_params(&cfg) / 1e9);
        tw_table_addf(&t, "%s|%s|%s|%d|%s|pp%d (batch %d)|%.2f|%.2f-%.2f", cfg.name, params,
                      be->ops->name, be->threads, tw_dtype_name(o.w_dtype), o.prompt, o.batch,
                      s_pf.median, s_pf.min, s_pf.max);
        tw_table_addf(&t, "%s|%s|%s|%d|%s|tg%d (batch %d)|%.2f|%.2f-%.2f", cfg.name, params,
                      be->ops->name, be->threads, tw_dtype_name(o.w_dtype), o.gen, o.batch,
                      s_dec.median, s_dec.min, s_dec.max);
        tw_table_addf(&t, "%s|%s|%s|%d|%s|e2e (batch %d)|%.2f|%.2f-%.2f", cfg.name, params,
                      be->ops->name, be->threads, tw_dtype_name(o.w_dtype), o.batch, s_e2e.median,
                      s_e2e.min, s_e2e.max);
        tw_table_print(&t, o.fmt, stdout);
        tw_table_free(&t);
        if (o.fmt == TW_FMT_MD) {
            printf("\nTTFT %.4f s (median)   TPOT mean %.4f s, p50 %.4f s, p99 %.4f s\n",
                   s_ttft.median, s_step.mean, s_step.p50, s_step.p99);
            printf("decode: %.2f GB/s of required bytes = %.1f%% of %s %.2f GB/s\n", decode_gbps,
                   100 * bw_frac, membw_src, membw);
            printf("prefill: %.2f GFLOP/s = %.1f%% of %s %.2f GFLOP/s (MFU)\n", pf_gflops,
                   100 * mfu, peak_src, peak);
            tw_power_region er;
            if (tw_power_phase(pm, "decode", &er) == TW_OK && isfinite(er.energy_j))
                printf("energy (%s%s): decode %.1f W mean, %.4f J/token; prefill+decode %.4f "
                       "J/token\n",
                       tw_power_method(pm), tw_power_is_assumed(pm) ? ", ASSUMED" : "",
                       er.mean_power_w, er.energy_j / ptok.decode,
                       json_number_value(
                           json_object_get(json_object_get(energy, "e2e"), "j_per_token")));
            else
                printf("energy: not measured (power source %s)\n", tw_power_source(pm));
            printf("%s\n", headline);
            if (comm)
                printf("tensor parallel: %d ranks over %s, collectives %.1f%% of measured time\n",
                       nranks, tw_comm_kind(comm), 100 * comm_share);
            if (interrupted_at[0]) printf("INCOMPLETE: %s\n", interrupted_at);
        }
    }
    tw_log("result written to %s", path);
    rc = interrupted_at[0] ? TW_EXIT_FAIL : TW_EXIT_OK;
    goto done;
fail:
    if (comm) {
        /* one rank's failure ends the whole job now, rather than at the peers' timeout */
        fprintf(stderr, "tokwatt run: rank %d: error: %s\n", tw_comm_rank(comm), tw_last_error());
        tw_comm_abort(comm, TW_EXIT_FAIL);
    }
    fprintf(stderr, "tokwatt run: error: %s\n", tw_last_error());
    if (st == TW_ERR_INVALID) rc = TW_EXIT_USAGE;
done:
    if (dump) tw_npy_writer_abort(dump);
    tw_power_close(pm);
    json_decref(root);
    if (reps)
        for (int r = 0; r < o.reps; r++) free(reps[r].step_s);
    free(reps);
    free(prompt), free(cur), free(next), free(gen_tokens), free(check_tokens);
    tw_engine_destroy(e);
    tw_backend_destroy(be);
    tw_comm_destroy(comm);
    tw_model_free(&cfg);
    return rc;
}
