/* The requests of a serving run: see tw_serve_store.h. */
#include "tw_serve_store.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void tw_serve_store_free(tw_serve_store *s) {
    free(s->rec);
    free(s->tok_off);
    free(s->emitted);
    free(s->tok);
    free(s->toks);
    memset(s, 0, sizeof *s);
}

tw_status tw_serve_store_add(tw_serve_store *s, const tw_loadgen_request *q) {
    if (q->index != s->n)
        return TW_ERR(TW_ERR_INTERNAL, "serve: request %lld issued out of order (expected %lld)",
                      (long long)q->index, (long long)s->n);
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 256;
        tw_serve_record *r = realloc(s->rec, sizeof *r * (size_t)cap);
        if (r) s->rec = r;
        int64_t *o = realloc(s->tok_off, sizeof *o * (size_t)cap);
        if (o) s->tok_off = o;
        int *e = realloc(s->emitted, sizeof *e * (size_t)cap);
        if (e) s->emitted = e;
        if (!r || !o || !e)
            return TW_ERR(TW_ERR_NOMEM, "serve: no memory for %lld requests", (long long)cap);
        s->cap = cap;
    }
    if (s->n_tok + q->output_tokens > s->cap_tok) {
        int64_t cap = s->cap_tok ? 2 * s->cap_tok : 4096;
        while (cap < s->n_tok + q->output_tokens) cap *= 2;
        double *t = realloc(s->tok, sizeof *t * (size_t)cap);
        if (t) s->tok = t;
        int *k = NULL;
        if (s->keep_ids) {
            k = realloc(s->toks, sizeof *k * (size_t)cap);
            if (k) s->toks = k;
        }
        if (!t || (s->keep_ids && !k))
            return TW_ERR(TW_ERR_NOMEM, "serve: no memory for %lld tokens", (long long)cap);
        s->cap_tok = cap;
    }
    tw_serve_record *r = &s->rec[s->n];
    memset(r, 0, sizeof *r);
    r->id = q->index;
    r->warmup = q->warmup;
    r->arrival_s = q->arrival_s;
    r->admit_s = r->first_token_s = r->finish_s = NAN;
    r->input_tokens = q->input_tokens;
    r->output_tokens = q->output_tokens;
    s->tok_off[s->n] = s->n_tok;
    s->emitted[s->n] = 0;
    for (int64_t i = 0; i < q->output_tokens; i++) s->tok[s->n_tok + i] = NAN;
    s->n_tok += q->output_tokens;
    s->n++;
    return TW_OK;
}
