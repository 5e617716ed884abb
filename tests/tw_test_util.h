/* Helpers for the Criterion suites: seeded random data, NaN poisoning, float64 references and
 * relative-norm errors. Nothing here shares code with the kernels under test. */
#ifndef TW_TEST_UTIL_H
#define TW_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s;
} tw_test_rng;

void tw_test_rng_seed(tw_test_rng *r, uint64_t seed);
double tw_test_uniform(tw_test_rng *r); /* [-1, 1) */
/* Fills with uniform values in [-scale, scale). */
void tw_test_fill(tw_test_rng *r, float *x, size_t n, float scale);
void tw_test_poison(float *x, size_t n); /* fills with NaN */
/* ||a - b|| / ||b|| over n values, a in float, b in double; returns +inf if a has NaN/inf */
double tw_test_rel_err(const float *a, const double *b, size_t n);
int tw_test_all_finite(const float *a, size_t n);
/* ||a - b|| / ||b|| over n values, both float (one implementation against another); +inf on
 * NaN/inf in either */
double tw_test_rel_err_ff(const float *a, const float *b, size_t n);
/* bf16 rounding done independently of tw_numeric.h (via the float's bits, long-hand) */
uint16_t tw_test_to_bf16(float f);
float tw_test_from_bf16(uint16_t h);
/* Reads an integer environment variable with a default. */
long tw_test_env_long(const char *name, long def);

#endif
