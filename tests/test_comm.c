/* Criterion suite for the communicator front end and the one-rank `local` communicator (the
 * multi-rank mpi tests run under mpirun: tests/mpi/, ctest label "mpi"), plus the collective
 * benchmark command run alone (one rank). Data movement must be exact (tolerance 0). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "comm/tw_comm.h"
#include "tw_test_util.h"

static tw_comm *make_local(void) {
    tw_comm *c = NULL;
    tw_status st = tw_comm_create("local", "cpu", 5.0, &c);
    cr_assert_eq(st, TW_OK, "%s", tw_last_error());
    return c;
}

Test(comm, fnv1a_matches_published_value) {
    /* FNV-1a 64 of "a" (offset basis 0xcbf29ce484222325, prime 0x100000001b3) */
    cr_assert_eq(tw_comm_hash64("a", 1, 0), 0xaf63dc4c8601ec8cull);
    cr_assert_neq(tw_comm_hash64("tp=2", 4, 4), tw_comm_hash64("tp=4", 4, 4));
}

Test(comm, local_collectives_copy_exactly) {
    tw_comm *c = make_local();
    cr_assert_eq(tw_comm_size(c), 1);
    cr_assert_eq(tw_comm_rank(c), 0);
    cr_assert_str_eq(tw_comm_kind(c), "local");
    tw_test_rng r;
    tw_test_rng_seed(&r, 5);
    enum { N = 37 };
    float in[N], out[N];
    double ref[N];
    tw_test_fill(&r, in, N, 2.0f);
    for (int i = 0; i < N; i++) ref[i] = in[i];
    for (int which = 0; which < 5; which++) {
        tw_test_poison(out, N);
        tw_status st;
        switch (which) {
        case 0:
            st = tw_comm_allreduce(c, in, out, N, TW_F32, TW_RED_SUM);
            break;
        case 1:
            st = tw_comm_allgather(c, in, out, N, TW_F32);
            break;
        case 2:
            st = tw_comm_reducescatter(c, in, out, N, TW_F32, TW_RED_MAX);
            break;
        case 3:
            st = tw_comm_broadcast(c, in, out, N, TW_F32, 0);
            break;
        default:
            st = tw_comm_alltoall(c, in, out, N, TW_F32);
            break;
        }
        cr_assert_eq(st, TW_OK, "collective %d: %s", which, tw_last_error());
        cr_assert_eq(tw_test_rel_err(out, ref, N), 0.0, "collective %d changed the data", which);
    }
    /* in place: untouched */
    cr_assert_eq(tw_comm_allreduce(c, in, in, N, TW_F32, TW_RED_SUM), TW_OK);
    cr_assert_eq(tw_test_rel_err(in, ref, N), 0.0);
    uint16_t h[N], h2[N];
    for (int i = 0; i < N; i++) h[i] = tw_test_to_bf16(in[i]);
    cr_assert_eq(tw_comm_allreduce(c, h, h2, N, TW_BF16, TW_RED_SUM), TW_OK);
    cr_assert_eq(memcmp(h, h2, sizeof h), 0);
    cr_assert_eq(tw_comm_barrier(c), TW_OK);
    cr_assert_eq(tw_comm_wait(c), TW_OK);
    tw_comm_stats s = tw_comm_get_stats(c);
    cr_assert_eq(s.calls, 8, "calls %llu", (unsigned long long)s.calls);
    cr_assert_eq(s.bytes, 6 * N * 4 + N * 2);
    tw_comm_stats_reset(c);
    cr_assert_eq(tw_comm_get_stats(c).calls, 0);
    tw_comm_destroy(c);
}

Test(comm, argument_errors_name_the_problem) {
    tw_comm *c = make_local();
    float buf[64];
    for (int i = 0; i < 64; i++) buf[i] = (float)i;
    cr_assert_eq(tw_comm_allreduce(c, buf, buf + 1, 17, TW_F32, TW_RED_SUM), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "overlap"), "%s", tw_last_error());
    cr_assert_eq(tw_comm_broadcast(c, buf, buf, 3, TW_F32, 1), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "root 1"), "%s", tw_last_error());
    cr_assert_eq(tw_comm_allreduce(c, NULL, buf, 3, TW_F32, TW_RED_SUM), TW_ERR_INVALID);
    cr_assert_eq(tw_comm_allreduce(c, buf, buf, 3, TW_F32, (tw_redop)7), TW_ERR_INVALID);
    cr_assert_eq(tw_comm_set_stream(c, (void *)buf), TW_ERR_INVALID);
    cr_assert_eq(tw_comm_set_stream(c, NULL), TW_OK);
    tw_redop op;
    cr_assert_eq(tw_redop_parse("max", &op), TW_OK);
    cr_assert_eq(op, TW_RED_MAX);
    cr_assert_eq(tw_redop_parse("prod", &op), TW_ERR_INVALID);
    tw_comm_destroy(c);
    tw_comm *d = NULL;
    cr_assert_eq(tw_comm_create("gloo", "cpu", 1.0, &d), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "gloo"), "%s", tw_last_error());
}

Test(comm, local_sub_is_a_new_owned_handle_of_one_rank) {
    tw_comm *c = make_local();
    tw_comm *s = NULL;
    cr_assert_eq(tw_comm_sub(c, 1, &s), TW_OK, "%s", tw_last_error());
    cr_assert(s && s != c, "a new handle, not the parent");
    cr_assert_eq(tw_comm_size(s), 1);
    cr_assert_eq(tw_comm_rank(s), 0);
    cr_assert_str_eq(tw_comm_kind(s), "local");
    cr_assert_float_eq(s->timeout_s, c->timeout_s, 0);
    /* the sub-communicator works and keeps its own stats */
    tw_test_rng r;
    tw_test_rng_seed(&r, 11);
    float in[29], out[29];
    tw_test_fill(&r, in, 29, 3.0f);
    for (int i = 0; i < 29; i++) out[i] = NAN;
    cr_assert_eq(tw_comm_allreduce(s, in, out, 29, TW_F32, TW_RED_SUM), TW_OK);
    cr_assert_eq(memcmp(in, out, sizeof in), 0);
    cr_assert_eq(tw_comm_get_stats(s).calls, 1);
    cr_assert_eq(tw_comm_get_stats(c).calls, 0);
    /* the idle barrier restores the communicator's timeout afterwards */
    cr_assert_eq(tw_comm_idle_barrier(c, 1000.0), TW_OK, "%s", tw_last_error());
    cr_assert_float_eq(c->timeout_s, 5.0, 0);
    cr_assert_eq(c->idle_poll, 0);
    cr_assert_eq(tw_comm_idle_barrier(c, 0), TW_ERR_INVALID);
    tw_comm_destroy(s);
    /* sizes outside [1, size] are refused naming the value */
    tw_comm *bad = (tw_comm *)1;
    cr_assert_eq(tw_comm_sub(c, 2, &bad), TW_ERR_INVALID);
    cr_assert_null(bad);
    cr_assert(strstr(tw_last_error(), "of 2 ranks"), "%s", tw_last_error());
    cr_assert_eq(tw_comm_sub(c, 0, &bad), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "of 0 ranks"), "%s", tw_last_error());
    tw_comm_destroy(c);
}

Test(comm, auto_without_launcher_is_local_and_timeout_from_env) {
    if (tw_comm_under_launcher()) cr_skip_test("running under an MPI launcher");
    setenv("TW_COMM_TIMEOUT_S", "7.5", 1);
    tw_comm *c = NULL;
    cr_assert_eq(tw_comm_create("auto", "cpu", 0, &c), TW_OK, "%s", tw_last_error());
    cr_assert_str_eq(tw_comm_kind(c), "local");
    cr_assert_float_eq(c->timeout_s, 7.5, 1e-12);
    /* helpers on one rank */
    const char cfg[] = "tp=1";
    cr_assert_eq(tw_comm_check_consistency(c, cfg, sizeof cfg, "configuration"), TW_OK);
    double all[1], mx;
    cr_assert_eq(tw_comm_allgather_f64(c, 3.25, all), TW_OK);
    cr_assert_float_eq(all[0], 3.25, 0);
    cr_assert_eq(tw_comm_max_f64(c, -2.0, &mx), TW_OK);
    cr_assert_float_eq(mx, -2.0, 0);
    tw_comm_hosts h;
    cr_assert_eq(tw_comm_gather_hosts(c, &h), TW_OK);
    cr_assert_eq(h.n_hosts, 1);
    cr_assert_eq(h.max_per_host, 1);
    cr_assert_gt(strlen(h.host[0]), 0);
    tw_comm_free_hosts(&h);
    tw_comm_destroy(c);
    unsetenv("TW_COMM_TIMEOUT_S");
}

Test(comm, nccl_without_device_is_unsupported_not_a_fallback) {
    if (tw_comm_under_launcher()) cr_skip_test("running under an MPI launcher");
    tw_comm *c = NULL;
    tw_status st = tw_comm_create("nccl", "cuda", 5.0, &c);
    if (st == TW_OK) { /* a GPU machine: one rank, device 0 */
        cr_assert_str_eq(tw_comm_kind(c), "nccl");
        cr_assert_eq(tw_comm_device(c), 0);
        tw_comm_destroy(c);
        return;
    }
    cr_assert_eq(st, TW_ERR_UNSUPPORTED, "%s", tw_last_error());
    cr_assert(strstr(tw_last_error(), "nccl") || strstr(tw_last_error(), "CUDA"), "%s",
              tw_last_error());
}

static int run_cmd(const char *cmd, char *out, size_t n) {
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    int rc = pclose(p);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(comm, bench_allreduce_one_rank_json) {
    const char *tok = getenv("TW_TOKWATT");
    if (!tok) cr_skip_test("TW_TOKWATT not set (run through ctest)");
    if (tw_comm_under_launcher()) cr_skip_test("running under an MPI launcher");
    static char out[1 << 16];
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s bench allreduce -b 8 -e 1K -f 4 -n 2 -w 1 -d bf16 -o max --format json "
             "--expect-busbw 0.000001 --expect-from 8",
             tok);
    int rc = run_cmd(cmd, out, sizeof out);
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    cr_assert_not_null(j, "not JSON (%s): %s", e.text, out);
    /* one rank: busbw is 0 (factor 2(n-1)/n = 0), so the gate must fail: exit 3 */
    cr_assert_eq(rc, 3, "exit %d", rc);
    cr_assert_str_eq(json_string_value(json_object_get(j, "comm")), "local");
    json_t *rows = json_object_get(j, "rows");
    cr_assert_eq(json_array_size(rows), 4); /* 8, 32, 128, 512 */
    for (size_t i = 0; i < 4; i++) {
        json_t *oop = json_object_get(json_array_get(rows, i), "out_of_place");
        cr_assert_eq(json_integer_value(json_object_get(oop, "wrong")), 0);
        cr_assert_gt(json_real_value(json_object_get(oop, "time_us")), 0);
    }
    cr_assert_eq(json_is_false(json_object_get(j, "pass")), 1);
    json_decref(j);

    snprintf(cmd, sizeof cmd, "%s bench broadcast -b 1K -n 1 -w 0 -r 0 2>&1", tok);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "# Avg bus bandwidth"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s bench alltoall -b 1K --bogus 1 2>&1", tok);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "--bogus"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s bench allgather -b 1K -e 8 2>&1", tok);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 2, "%s", out);
}
