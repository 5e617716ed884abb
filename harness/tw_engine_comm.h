/* The few collectives the engine needs, expressed over the communicator (harness/comm). Kept
 * apart so the engine's forward pass reads the same for one rank and many. */
#ifndef TW_ENGINE_COMM_H
#define TW_ENGINE_COMM_H

#include <stddef.h>

#include "tw_backend.h"

struct tw_comm;

/* Refuses a communicator that does not match the engine's tensor-parallel rank and size. */
tw_status tw_engine_comm_check(struct tw_comm *comm, int tp_rank, int tp_size);
/* buf[n] (backend memory) summed across ranks, in place. */
tw_status tw_engine_comm_allreduce_sum(struct tw_comm *comm, tw_backend *be, float *buf, size_t n);
/* Per row b: the global argmax over vocabulary shards. idx[b] is local to the shard starting
 * at vocab0 on entry and global on return; ties go to the lowest global index. work_i and work_f
 * hold 2 * batch * ranks ints and batch * ranks floats. */
tw_status tw_engine_comm_argmax(struct tw_comm *comm, int batch, int vocab0, int *idx, float *val,
                                int *work_i, float *work_f);
/* Gathers the vocabulary shards of logits [batch, vocab_pad] (backend memory) into host
 * out[batch, vocab] on every rank. */
tw_status tw_engine_comm_gather_logits(struct tw_comm *comm, tw_backend *be, int batch,
                                       int vocab_pad, int vocab, const float *logits, float *out);

#endif
