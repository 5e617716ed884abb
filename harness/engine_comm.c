/* Engine collectives. Until the communicator lands these report that tensor parallelism is not
 * available in this build (never a silent single-rank fallback). */
#include "tw_engine_comm.h"

tw_status tw_engine_comm_allreduce_sum(struct tw_comm *comm, tw_backend *be, float *buf, size_t n) {
    (void)comm, (void)be, (void)buf, (void)n;
    return TW_ERR(TW_ERR_UNSUPPORTED, "tensor parallelism: no communicator in this build");
}

tw_status tw_engine_comm_argmax(struct tw_comm *comm, int batch, int vocab0, int *idx, float *val,
                                int *work_i, float *work_f) {
    (void)comm, (void)batch, (void)vocab0, (void)idx, (void)val, (void)work_i, (void)work_f;
    return TW_ERR(TW_ERR_UNSUPPORTED, "tensor parallelism: no communicator in this build");
}

tw_status tw_engine_comm_gather_logits(struct tw_comm *comm, tw_backend *be, int batch,
                                       int vocab_pad, int vocab, const float *logits, float *out) {
    (void)comm, (void)be, (void)batch, (void)vocab_pad, (void)vocab, (void)logits, (void)out;
    return TW_ERR(TW_ERR_UNSUPPORTED, "tensor parallelism: no communicator in this build");
}
