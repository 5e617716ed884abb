/* The benchmark runner (tw_bench.h): check before timing, warm-up, cache flushing, timing by the
 * backend's timer or the host clock, statistics, and the report's cells. */
#include "tw_bench.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_machine.h"
#include "tw_util.h"

/* ---- report cells ---------------------------------------------------------------------------- */
tw_bench_row *tw_bench_row_add(tw_bench_report *r) {
    if (r->nrows >= TW_BENCH_MAX_ROWS) return NULL;
    tw_bench_row *w = &r->row[r->nrows++];
    memset(w, 0, sizeof *w);
    return w;
}

static tw_bench_cell *cell_new(tw_bench_row *w, const char *key, const char *head,
                               tw_bench_cell_kind kind) {
    if (!w) return NULL;
    tw_bench_cell *c = NULL;
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->cell[i].key, key)) c = &w->cell[i]; /* set again: replaced in place */
    if (!c) {
        if (w->n >= TW_BENCH_MAX_CELLS) return NULL;
        c = &w->cell[w->n++];
    }
    memset(c, 0, sizeof *c);
    snprintf(c->key, sizeof c->key, "%s", key);
    snprintf(c->head, sizeof c->head, "%s", head ? head : "");
    c->kind = kind;
    return c;
}

void tw_bench_str(tw_bench_row *w, const char *key, const char *head, const char *val) {
    tw_bench_cell *c = cell_new(w, key, head, val ? TW_BCELL_STR : TW_BCELL_NULL);
    if (c) snprintf(c->str, sizeof c->str, "%s", val ? val : "");
}

void tw_bench_int(tw_bench_row *w, const char *key, const char *head, long long val) {
    tw_bench_cell *c = cell_new(w, key, head, TW_BCELL_INT);
    if (!c) return;
    c->i = val;
    snprintf(c->str, sizeof c->str, "%lld", val);
}

void tw_bench_real(tw_bench_row *w, const char *key, const char *head, const char *tfmt,
                   double val) {
    /* a figure that is not finite is no figure: null in JSON, empty in the table */
    tw_bench_cell *c = cell_new(w, key, head, isfinite(val) ? TW_BCELL_REAL : TW_BCELL_NULL);
    if (!c || !isfinite(val)) return;
    c->r = val;
    snprintf(c->str, sizeof c->str, tfmt ? tfmt : "%.6g", val);
}

void tw_bench_bool(tw_bench_row *w, const char *key, const char *head, int val) {
    tw_bench_cell *c = cell_new(w, key, head, TW_BCELL_BOOL);
    if (!c) return;
    c->i = val != 0;
    snprintf(c->str, sizeof c->str, "%s", val ? "yes" : "no");
}

void tw_bench_null(tw_bench_row *w, const char *key, const char *head) {
    cell_new(w, key, head, TW_BCELL_NULL);
}

void tw_bench_text(tw_bench_row *w, const char *key, const char *fmt, ...) {
    if (!w) return;
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->cell[i].key, key)) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(w->cell[i].str, sizeof w->cell[i].str, fmt, ap);
            va_end(ap);
        }
}

const tw_bench_cell *tw_bench_cell_get(const tw_bench_row *w, const char *key) {
    for (int i = 0; w && i < w->n; i++)
        if (!strcmp(w->cell[i].key, key)) return &w->cell[i];
    return NULL;
}

void tw_bench_note(tw_bench_report *r, const char *fmt, ...) {
    if (r->nnotes >= TW_BENCH_MAX_NOTES) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->note[r->nnotes++], sizeof r->note[0], fmt, ap);
    va_end(ap);
}

void tw_bench_flag_ceiling(tw_bench_report *r, tw_bench_row *w, double frac, const char *what) {
    tw_bench_bool(w, "exceeds_ceiling", "", frac > 1.0);
    /* a fraction above 1 means the ceiling was measured too low: say so, never hide it */
    if (frac > 1.0)
        tw_bench_note(r,
                      "WARNING: %.3f of the measured %s: the ceiling measurement is below what "
                      "this kernel reached; the fraction is not meaningful",
                      frac, what);
}

double tw_bench_err_value(const tw_bench_err *e) {
    if (e->bad) return INFINITY;
    double v = e->den > 0 ? sqrt(e->num / e->den) : sqrt(e->num);
    return isfinite(v) ? v : INFINITY;
}

/* ---- cache flushing -------------------------------------------------------------------------
 * Host: writing a buffer of twice the last-level cache (at least 64 MiB) evicts what the last
 * repetition left there. Accelerator: a device-to-device copy of 2 x 128 MiB, larger than the
 * L2 of current GPUs (50-60 MB on H100/H200), where the backend has device copies. */
typedef struct {
    int host;
    void *buf, *dev_src, *dev_dst;
    size_t bytes;
} bench_flush;

static tw_status flush_init(tw_backend *be, bench_flush *f, char *what, size_t cap) {
    memset(f, 0, sizeof *f);
    tw_device_desc d;
    memset(&d, 0, sizeof d);
    if (tw_backend_describe(be, &d) != TW_OK) tw_clear_error(); /* host unless it says otherwise */
    if (d.kind == TW_DEVICE_HOST) {
        size_t llc = tw_machine_llc_bytes();
        f->bytes = 2 * llc > ((size_t)64 << 20) ? 2 * llc : ((size_t)64 << 20);
        f->buf = malloc(f->bytes);
        if (!f->buf) return TW_ERR(TW_ERR_NOMEM, "cache flush buffer of %zu bytes", f->bytes);
        f->host = 1;
        snprintf(what, cap, "host: %zu MiB written between repetitions", f->bytes >> 20);
        return TW_OK;
    }
    if (!be->ops->copy_d2d) {
        snprintf(what, cap, "none: backend %s has no device copy to flush its caches with",
                 be->ops->name);
        return TW_OK;
    }
    f->bytes = (size_t)128 << 20;
    TW_TRY(be->ops->alloc(be, f->bytes, &f->dev_src));
    tw_status st = be->ops->alloc(be, f->bytes, &f->dev_dst);
    if (st != TW_OK) {
        be->ops->free(be, f->dev_src);
        f->dev_src = NULL;
        return st;
    }
    snprintf(what, cap, "device: a %zu MiB device-to-device copy between repetitions",
             f->bytes >> 20);
    return TW_OK;
}

static tw_status flush_run(tw_backend *be, bench_flush *f, int rep) {
    if (f->host) {
        memset(f->buf, rep & 0xff, f->bytes);
        return TW_OK;
    }
    if (f->dev_src) {
        TW_TRY(tw_backend_copy_d2d(be, f->dev_dst, f->dev_src, f->bytes));
        return be->ops->sync(be);
    }
    return TW_OK;
}

static void flush_free(tw_backend *be, bench_flush *f) {
    free(f->buf);
    if (f->dev_src) be->ops->free(be, f->dev_src);
    if (f->dev_dst) be->ops->free(be, f->dev_dst);
}

/* ---- timing ---------------------------------------------------------------------------------- */
tw_status tw_bench_time(tw_backend *be, tw_bench_run_fn fn, void *state, const tw_bench_params *p,
                        tw_bench_stats *out) {
    memset(out, 0, sizeof *out);
    if (p->reps < 1) return TW_ERR(TW_ERR_INVALID, "benchmark: %d repetitions", p->reps);
    const int events = be->ops->timer_start && be->ops->timer_stop;
    snprintf(out->timer, sizeof out->timer, "%s",
             events ? "backend timer (device events)" : "host clock");
    bench_flush fl;
    memset(&fl, 0, sizeof fl);
    snprintf(out->flush, sizeof out->flush, "none");
    if (p->flush) TW_TRY(flush_init(be, &fl, out->flush, sizeof out->flush));
    double *t = malloc(sizeof(double) * (size_t)p->reps);
    if (!t) {
        flush_free(be, &fl);
        return TW_ERR(TW_ERR_NOMEM, "benchmark: timings");
    }
    tw_status st = TW_OK;
    int rep = 0;
    for (int i = 0; i < p->warmup && st == TW_OK; i++) st = fn(state, be, rep++);
    if (st == TW_OK) st = be->ops->sync(be);
    for (int r = 0; r < p->reps && st == TW_OK; r++) {
        if (p->flush) st = flush_run(be, &fl, r);
        if (st != TW_OK) break;
        if (events) {
            st = tw_backend_timer_start(be);
            if (st == TW_OK) st = fn(state, be, rep++);
            if (st == TW_OK) st = tw_backend_timer_stop(be, &t[r]);
        } else {
            double t0 = tw_now_s();
            st = fn(state, be, rep++);
            if (st == TW_OK) st = be->ops->sync(be);
            t[r] = tw_now_s() - t0;
        }
    }
    flush_free(be, &fl);
    if (st == TW_OK) {
        tw_stats s = tw_stats_of(t, p->reps);
        out->reps = p->reps;
        out->median_s = s.median, out->min_s = s.min, out->max_s = s.max, out->mean_s = s.mean;
        out->spread = s.median > 0 ? (s.max - s.min) / s.median : 0;
        if (!(s.median > 0))
            st = TW_ERR(TW_ERR_INTERNAL, "benchmark: median time %.3g s is not positive", s.median);
    }
    free(t);
    return st;
}

tw_status tw_bench_execute(const tw_bench_def *def, void *state, tw_backend *be,
                           const tw_bench_params *p, tw_bench_report *r,
                           tw_bench_check *check_out) {
    tw_status su = def->setup(state, be);
    if (su != TW_OK) {
        def->teardown(state, be); /* frees what a failed setup left */
        return tw_error_ctx(su, "%s: setup", def->name);
    }
    tw_bench_check chk;
    memset(&chk, 0, sizeof chk);
    chk.rel_err = INFINITY;
    /* correctness first: a result that fails its check gets no figure */
    tw_status st = def->run(state, be, -1);
    if (st == TW_OK) st = be->ops->sync(be);
    if (st == TW_OK) st = def->check(state, be, &chk);
    if (check_out) *check_out = chk;
    if (st == TW_OK && !(chk.rel_err <= chk.tol))
        st = TW_ERR(TW_ERR_CHECK,
                    "%s: result check failed (%s): relative error %.3e exceeds %.0e; no timing "
                    "reported",
                    def->name, chk.what, chk.rel_err, chk.tol);
    tw_bench_stats ts;
    if (st == TW_OK) st = tw_bench_time(be, def->run, state, p, &ts);
    if (st == TW_OK) st = def->metrics(state, be, &ts, &chk, r);
    def->teardown(state, be);
    return st;
}

/* ---- ceilings -------------------------------------------------------------------------------- */
tw_status tw_bench_roofline(tw_backend *be, int threads, tw_dtype dt, int need_read,
                            size_t read_bytes, tw_bench_roof *out) {
    memset(out, 0, sizeof *out);
    tw_device_desc d;
    memset(&d, 0, sizeof d);
    TW_TRY(tw_backend_describe(be, &d));
    if (d.kind == TW_DEVICE_HOST) {
        /* the host's ceilings are harness/machine.c's, as the CPU backend's ceilings slot; here
         * with the benchmark's own read buffer size */
        if (dt == TW_BF16) {
            tw_bf16_peak bp;
            TW_TRY(tw_machine_bf16_peak(threads, &bp));
            out->peak_gflops = bp.gflops;
            snprintf(out->peak_method, sizeof out->peak_method, "%s", bp.method);
        } else {
            TW_TRY(tw_machine_fp32_peak(threads, &out->peak_gflops));
            snprintf(out->peak_method, sizeof out->peak_method, "fp32 FMA loop, %d threads",
                     threads);
        }
        if (need_read) {
            tw_membw_result mb;
            TW_TRY(tw_machine_membw(0, read_bytes, 3, &mb));
            out->read_gbps = mb.read_gbps;
            snprintf(out->read_method, sizeof out->read_method, "%s", mb.read_method);
        } else {
            snprintf(out->read_method, sizeof out->read_method, "not measured: compute-bound");
        }
        return TW_OK;
    }
    tw_ceilings c;
    memset(&c, 0, sizeof c);
    tw_status st = tw_backend_ceilings(be, &c);
    if (st != TW_OK) {
        snprintf(out->read_method, sizeof out->read_method, "not measured: %.200s",
                 tw_last_error());
        snprintf(out->peak_method, sizeof out->peak_method, "not measured: %.200s",
                 tw_last_error());
        tw_clear_error();
        return TW_OK;
    }
    out->read_gbps = c.read_bw_bytes_per_s / 1e9;
    snprintf(out->read_method, sizeof out->read_method, "%.120s%s%.120s", c.read_method,
             c.read_detail[0] ? ": " : "", c.read_detail);
    if (c.peak_dtype == dt) {
        out->peak_gflops = c.peak_flops / 1e9;
        snprintf(out->peak_method, sizeof out->peak_method, "%s", c.peak_method);
    } else if (dt == TW_BF16 && c.peak_bf16_flops > 0) {
        out->peak_gflops = c.peak_bf16_flops / 1e9;
        snprintf(out->peak_method, sizeof out->peak_method, "%s", c.peak_bf16_method);
    } else {
        snprintf(out->peak_method, sizeof out->peak_method,
                 "not measured: backend %s measures a %s peak only", be->ops->name,
                 tw_dtype_name(c.peak_dtype));
    }
    return TW_OK;
}
