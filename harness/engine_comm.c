/* Engine collectives over the communicator (harness/comm): the all-reduce after row-parallel
 * projections, the vocabulary-parallel argmax, and the logits gather for dumps and tests. */
#include "tw_engine_comm.h"

#include <stdlib.h>
#include <string.h>

#include "tw_comm.h"

tw_status tw_engine_comm_check(struct tw_comm *comm, int tp_rank, int tp_size) {
    if (tp_size <= 1) return TW_OK; /* one rank: the communicator is not used */
    if (!comm) return TW_ERR(TW_ERR_INVALID, "engine: --tp %d needs a communicator", tp_size);
    if (tw_comm_size(comm) != tp_size || tw_comm_rank(comm) != tp_rank)
        return TW_ERR(
            TW_ERR_INVALID,
            "engine: tensor-parallel rank %d of %d, but the %s communicator is rank %d of "
            "%d",
            tp_rank, tp_size, tw_comm_kind(comm), tw_comm_rank(comm), tw_comm_size(comm));
    return TW_OK;
}

tw_status tw_engine_comm_allreduce_sum(struct tw_comm *comm, tw_backend *be, float *buf, size_t n) {
    (void)be; /* the communicator queues on the backend's stream (set by the caller) */
    return tw_comm_allreduce(comm, buf, buf, n, TW_F32, TW_RED_SUM);
}

typedef struct {
    float val;
    int idx; /* global vocabulary index */
} tw_argmax_pair;

tw_status tw_engine_comm_argmax(struct tw_comm *comm, int batch, int vocab0, int *idx, float *val,
                                int *work_i, float *work_f) {
    (void)work_i, (void)work_f;
    int n = comm->size;
    tw_argmax_pair *mine = calloc((size_t)batch, sizeof *mine);
    tw_argmax_pair *all = malloc(sizeof *all * (size_t)batch * (size_t)n);
    if (!mine || !all) {
        free(mine), free(all);
        return TW_ERR(TW_ERR_NOMEM, "argmax across ranks");
    }
    for (int b = 0; b < batch; b++) mine[b] = (tw_argmax_pair){val[b], idx[b] + vocab0};
    tw_status st = comm->ops->host_allgather(comm, mine, all, sizeof *mine * (size_t)batch);
    if (st == TW_OK) {
        for (int b = 0; b < batch; b++) {
            tw_argmax_pair best = all[b];
            for (int r = 1; r < n; r++) {
                tw_argmax_pair p = all[(size_t)r * batch + b];
                /* the first maximum in vocabulary order, as on one rank */
                if (p.val > best.val || (p.val == best.val && p.idx < best.idx)) best = p;
            }
            idx[b] = best.idx;
            val[b] = best.val;
        }
    } else {
        st = tw_error_ctx(st, "argmax across %d ranks", n);
    }
    free(mine);
    free(all);
    return st;
}

tw_status tw_engine_comm_gather_logits(struct tw_comm *comm, tw_backend *be, int batch,
                                       int vocab_pad, int vocab, const float *logits, float *out) {
    (void)be;
    int n = comm->size;
    size_t per = (size_t)batch * (size_t)vocab_pad;
    void *gathered = NULL;
    TW_TRY(tw_comm_buf_alloc(comm, per * (size_t)n * sizeof(float), &gathered));
    float *host = malloc(per * (size_t)n * sizeof(float));
    tw_status st = host ? TW_OK : TW_ERR(TW_ERR_NOMEM, "logits gather");
    if (st == TW_OK) st = tw_comm_allgather(comm, logits, gathered, per, TW_F32);
    if (st == TW_OK) st = tw_comm_wait(comm);
    if (st == TW_OK)
        st = tw_comm_buf_download(comm, host, gathered, per * (size_t)n * sizeof(float));
    if (st == TW_OK) {
        /* rank r's block is [batch, vocab_pad] holding vocabulary [r * vocab_pad, ...) */
        for (int b = 0; b < batch; b++)
            for (int r = 0; r < n; r++) {
                int v0 = r * vocab_pad;
                int cnt = vocab - v0 < vocab_pad ? vocab - v0 : vocab_pad;
                if (cnt > 0)
                    memcpy(out + (size_t)b * vocab + v0,
                           host + (size_t)r * per + (size_t)b * vocab_pad,
                           sizeof(float) * (size_t)cnt);
            }
    }
    free(host);
    tw_comm_buf_free(comm, gathered);
    return st;
}
