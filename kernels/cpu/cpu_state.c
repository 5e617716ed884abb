/* Per-backend state of the CPU kernels (tw_cpu.h, cpu_state.h): each CPU backend owns one; the
 * free entry points (gemm_cpu(args, threads), ...) share the process default. */
#include "cpu_state.h"

#include <stdlib.h>

static tw_cpu_state tw_cpu_state_process = {.simd = -1,
                                            .panel_mu = PTHREAD_MUTEX_INITIALIZER,
                                            .last_gemm_path = NULL,
                                            .last_gemm_x_bf16 = 0,
                                            .is_default = 1};

tw_cpu_state *tw_cpu_state_default(void) {
    return &tw_cpu_state_process;
}

tw_status tw_cpu_state_create(tw_cpu_state **out) {
    *out = NULL;
    tw_cpu_state *s = calloc(1, sizeof *s);
    if (!s) return TW_ERR(TW_ERR_NOMEM, "cpu state: cannot allocate %zu bytes", sizeof *s);
    if (pthread_mutex_init(&s->panel_mu, NULL) != 0) {
        free(s);
        return TW_ERR(TW_ERR_INTERNAL, "cpu state: pthread_mutex_init failed");
    }
    atomic_init(&s->simd, -1);
    atomic_init(&s->last_gemm_path, NULL);
    atomic_init(&s->last_gemm_x_bf16, 0);
    *out = s;
    return TW_OK;
}

void tw_cpu_state_destroy(tw_cpu_state *s) {
    if (!s || s->is_default) return;
    pthread_mutex_destroy(&s->panel_mu);
    free(s->panel_buf);
    free(s);
}

tw_simd tw_cpu_state_simd(const tw_cpu_state *s) {
    int l = s ? atomic_load(&((tw_cpu_state *)s)->simd) : -1;
    /* unset: the process level (the default state's, forced; else TW_SIMD or detected) */
    return l >= 0 ? (tw_simd)l : tw_cpu_simd_active();
}

tw_status tw_cpu_state_set_simd(tw_cpu_state *s, tw_simd level) {
    if (!tw_cpu_simd_supported(level))
        return TW_ERR(TW_ERR_UNSUPPORTED, "SIMD level %s is not supported by this CPU (best: %s)",
                      tw_simd_name(level), tw_simd_name(tw_cpu_simd_detect()));
    atomic_store(&s->simd, (int)level);
    return TW_OK;
}

void tw_cpu_state_last_gemm(const tw_cpu_state *s, tw_gemm_info *out) {
    tw_cpu_state *m = (tw_cpu_state *)s;
    out->path = atomic_load(&m->last_gemm_path);
    out->x_bf16 = atomic_load(&m->last_gemm_x_bf16);
}

void tw_cpu_state_note_gemm(tw_cpu_state *s, const tw_gemm_info *g) {
    atomic_store(&s->last_gemm_x_bf16, g->x_bf16);
    atomic_store(&s->last_gemm_path, g->path);
}

float *tw_cpu_panel_get(tw_cpu_state *s, size_t bytes, int *cached) {
    bytes = (bytes + 63) & ~(size_t)63;
    *cached = 0;
    if (pthread_mutex_trylock(&s->panel_mu) == 0) {
        if (s->panel_bytes < bytes) {
            free(s->panel_buf);
            s->panel_buf = aligned_alloc(64, bytes);
            s->panel_bytes = s->panel_buf ? bytes : 0;
        }
        if (s->panel_buf) {
            *cached = 1;
            return s->panel_buf;
        }
        pthread_mutex_unlock(&s->panel_mu);
        return NULL;
    }
    return aligned_alloc(64, bytes);
}

void tw_cpu_panel_put(tw_cpu_state *s, float *p, int cached) {
    if (cached)
        pthread_mutex_unlock(&s->panel_mu);
    else
        free(p);
}
