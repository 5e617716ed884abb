/* Printing of benchmark reports and the shared options of runner-based benchmarks. */
#include "bench_print.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tw_cmds.h"
#include "tw_machine.h"

void tw_bench_print(const tw_bench_report *r, tw_format fmt, FILE *out) {
    if (fmt == TW_FMT_JSON) {
        json_t *o = json_object(), *rows = json_array(), *notes = json_array();
        json_object_set_new(o, "bench", json_string(r->bench));
        json_object_set_new(o, "backend", json_string(r->backend));
        for (int i = 0; i < r->nrows; i++) {
            json_t *w = json_object();
            for (int j = 0; j < r->row[i].n; j++) {
                const tw_bench_cell *c = &r->row[i].cell[j];
                json_t *v = c->kind == TW_BCELL_STR    ? json_string(c->str)
                            : c->kind == TW_BCELL_INT  ? json_integer(c->i)
                            : c->kind == TW_BCELL_REAL ? json_real(c->r)
                            : c->kind == TW_BCELL_BOOL ? json_boolean(c->i)
                                                       : json_null();
                json_object_set_new(w, c->key, v);
            }
            json_array_append_new(rows, w);
        }
        for (int i = 0; i < r->nnotes; i++) json_array_append_new(notes, json_string(r->note[i]));
        json_object_set_new(o, "rows", rows);
        json_object_set_new(o, "notes", notes);
        json_dumpf(o, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        fputc('\n', out);
        json_decref(o);
        return;
    }
    /* the columns: every head, in first-seen order over the rows */
    const char *head[TW_BENCH_MAX_CELLS];
    const char *key[TW_BENCH_MAX_CELLS];
    int nh = 0;
    for (int i = 0; i < r->nrows; i++)
        for (int j = 0; j < r->row[i].n && nh < TW_BENCH_MAX_CELLS; j++) {
            const tw_bench_cell *c = &r->row[i].cell[j];
            if (!c->head[0]) continue;
            int seen = 0;
            for (int h = 0; h < nh; h++) seen |= !strcmp(key[h], c->key);
            if (!seen) head[nh] = c->head, key[nh++] = c->key;
        }
    tw_table t;
    tw_table_init(&t, nh, head);
    for (int i = 0; i < r->nrows; i++) {
        const char *cells[TW_BENCH_MAX_CELLS];
        for (int h = 0; h < nh; h++) {
            const tw_bench_cell *c = tw_bench_cell_get(&r->row[i], key[h]);
            cells[h] = c ? c->str : "";
        }
        tw_table_add(&t, cells);
    }
    tw_table_print(&t, fmt, out);
    tw_table_free(&t);
    if (fmt == TW_FMT_MD)
        for (int i = 0; i < r->nnotes; i++) fprintf(out, "\n%s\n", r->note[i]);
}

tw_status tw_bench_common_parse(tw_args *a, tw_bench_common *c) {
    memset(c, 0, sizeof *c);
    TW_TRY(tw_args_str(a, "--backend", "cpu", &c->backend));
    TW_TRY(tw_args_int(a, "--device", 0, 0, 1024, &c->device));
    TW_TRY(tw_args_int(a, "--threads", 0, 0, 4096, &c->threads));
    TW_TRY(tw_args_str(a, "--simd", NULL, &c->simd));
    TW_TRY(tw_args_str(a, "--gemm", NULL, &c->gemm));
    TW_TRY(tw_args_int(a, "--reps", 10, 1, 1000000, &c->p.reps));
    TW_TRY(tw_args_int(a, "--warmup", 2, 0, 1000000, &c->p.warmup));
    c->p.flush = tw_args_flag(a, "--flush");
    TW_TRY(tw_args_format(a, &c->fmt));
    const tw_backend_entry *row = tw_backend_find(c->backend);
    if (!row)
        return TW_ERR(TW_ERR_INVALID, "option --backend: '%s' is not %s", c->backend,
                      tw_backend_names());
    if (c->simd && !tw_backend_has_option(row, "simd"))
        return TW_ERR(TW_ERR_INVALID, "option --simd: backend %s has no SIMD levels", row->name);
    if (c->gemm && !tw_backend_has_option(row, "gemm"))
        return TW_ERR(TW_ERR_INVALID, "option --gemm: backend %s has one GEMM implementation",
                      row->name);
    return TW_OK;
}

tw_status tw_bench_common_backend(const tw_bench_common *c, tw_backend **out) {
    tw_backend_params bp = {.threads = c->threads,
                            .device = c->device,
                            .host_ceilings = tw_machine_host_ceilings_all_cores};
    TW_TRY(tw_backend_create_with(c->backend, &bp, out));
    tw_status st = TW_OK;
    if (c->simd) st = tw_backend_set_option(*out, "simd", c->simd);
    if (st == TW_OK && c->gemm) st = tw_backend_set_option(*out, "gemm", c->gemm);
    if (st != TW_OK) {
        tw_backend_destroy(*out);
        *out = NULL;
    }
    return st;
}

int tw_bench_exit(tw_status st) {
    if (st == TW_OK) return TW_EXIT_OK;
    fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
    return st == TW_ERR_CHECK ? TW_EXIT_CHECK : TW_EXIT_FAIL;
}

int tw_bench_common_main(const tw_bench_common *c, tw_bench_cmd_fn run, const void *opts) {
    tw_backend *be = NULL;
    tw_status st = tw_bench_common_backend(c, &be);
    if (st != TW_OK) {
        int rc = tw_bench_exit(st);
        return st == TW_ERR_INVALID ? TW_EXIT_USAGE : rc;
    }
    tw_bench_report *r = calloc(1, sizeof *r);
    st = r ? run(be, opts, &c->p, r) : TW_ERR(TW_ERR_NOMEM, "benchmark report");
    tw_backend_destroy(be);
    if (r && r->nrows) tw_bench_print(r, c->fmt, stdout);
    free(r);
    return tw_bench_exit(st);
}
