/* The power meter: picks a source (auto: NVML for a GPU run, RAPL for a CPU run, then assumed
 * rated watts, then none, reporting why each earlier one was not used), measures regions by
 * phase, and runs a sampler thread that records the power trace of measured regions only. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tw_metrics.h"
#include "tw_power_impl.h"
#include "tw_util.h"

#define TW_POWER_MAX_PHASES 8
#define TW_POWER_TRACE_CAP  200000 /* 200 000 samples: over half an hour at 10 ms */

typedef enum { TW_MODE_COUNTER, TW_MODE_SAMPLED, TW_MODE_ASSUMED, TW_MODE_NONE } tw_power_mode;

typedef struct {
    char name[32];
    int open;
    double t0, e0;
    size_t i0;                        /* first trace sample of the open region */
    double energy_j, seconds, peak_w; /* accumulated over closed regions */
    int regions;
} tw_power_phase_acc;

struct tw_power_meter {
    tw_power_mode mode;
    tw_power_src src;
    int have_src;
    const char *source; /* "nvml", "rapl", "assumed", "none" */
    char method[1400];
    char label[160];      /* short: "nvml", "assumed: rated 700 W (NVIDIA H100 SXM5 80GB)" */
    char fallbacks[1536]; /* every note below, joined with "; " */
    char notes[3][512];   /* one per source not used, for the JSON array */
    int nnotes;
    double assumed_w; /* per device */
    int devices, sample_ms;
    int gpu_index; /* -1: a CPU run */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int thread_running, stop;
    int nopen;
    double t_origin;       /* time of the first begin; trace times are relative to it */
    double last_t, last_e; /* previous reading, for energy-difference samples */
    int have_last;
    tw_status sample_err; /* first error the sampler thread met */
    char sample_errmsg[512];

    size_t ntrace, cap;
    double *trace_t, *trace_w; /* [ntrace] seconds since t_origin, watts over all devices */
    int truncated;

    int nphase;
    tw_power_phase_acc phase[TW_POWER_MAX_PHASES];
    tw_power_phase_acc saved[TW_POWER_MAX_PHASES]; /* tw_power_mark */
    int nsaved;
};

static void tw_note(tw_power_meter *m, const char *src, const char *why) {
    if (m->nnotes < 3) snprintf(m->notes[m->nnotes++], sizeof m->notes[0], "%s: %s", src, why);
    size_t u = strlen(m->fallbacks);
    snprintf(m->fallbacks + u, sizeof m->fallbacks - u, "%s%s: %s", u ? "; " : "", src, why);
}

static void tw_trace_push(tw_power_meter *m, double t, double w) {
    if (m->ntrace == m->cap) {
        if (m->cap >= TW_POWER_TRACE_CAP) {
            m->truncated = 1;
            return;
        }
        size_t nc = m->cap ? m->cap * 2 : 1024;
        double *a = realloc(m->trace_t, nc * sizeof *a);
        if (!a) {
            m->truncated = 1;
            return;
        }
        m->trace_t = a;
        double *b = realloc(m->trace_w, nc * sizeof *b);
        if (!b) {
            m->truncated = 1;
            return;
        }
        m->trace_w = b;
        m->cap = nc;
    }
    m->trace_t[m->ntrace] = t - m->t_origin;
    m->trace_w[m->ntrace] = w;
    m->ntrace++;
}

/* One reading, under the lock. Counter sources: the cumulative energy (returned in *e), and a
 * trace sample from instantaneous power where the source has it, else from the energy since
 * the previous reading (push_diff). Sampled sources: a power sample. */
static tw_status tw_take(tw_power_meter *m, int push_diff, double *e) {
    double t = tw_now_s(), w;
    if (m->mode == TW_MODE_COUNTER) {
        double ej;
        TW_TRY(m->src.read_energy_j(m->src.ctx, &ej));
        if (m->src.read_power_w) {
            TW_TRY(m->src.read_power_w(m->src.ctx, &w));
            tw_trace_push(m, t, w);
        } else if (push_diff && m->have_last && t > m->last_t) {
            tw_trace_push(m, t, (ej - m->last_e) / (t - m->last_t));
        }
        m->last_t = t;
        m->last_e = ej;
        m->have_last = 1;
        if (e) *e = ej;
    } else if (m->mode == TW_MODE_SAMPLED) {
        TW_TRY(m->src.read_power_w(m->src.ctx, &w));
        tw_trace_push(m, t, w);
    }
    return TW_OK;
}

static void *tw_sampler_main(void *arg) {
    tw_power_meter *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + (long)m->sample_ms * 1000000L;
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        int rc = 0;
        while (!m->stop && rc == 0) rc = pthread_cond_timedwait(&m->cv, &m->mu, &ts);
        if (m->stop) break;
        tw_status st = tw_take(m, 1, NULL);
        if (st && !m->sample_err) {
            m->sample_err = st;
            snprintf(m->sample_errmsg, sizeof m->sample_errmsg, "%s", tw_last_error());
        }
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

static tw_status tw_open_assumed(tw_power_meter *m, const tw_power_opts *o, const char *gpu_name) {
    if (o->assumed_w > 0) {
        m->assumed_w = o->assumed_w;
        snprintf(m->method, sizeof m->method,
                 "assumed: %.4g W per device given by the user (--watts), not measured",
                 o->assumed_w);
        snprintf(m->label, sizeof m->label, "assumed: %.4g W per device given by the user",
                 o->assumed_w);
        return TW_OK;
    }
    const char *name = o->device_name && *o->device_name ? o->device_name
                       : gpu_name && *gpu_name           ? gpu_name
                       : o->gpu_index < 0                ? tw_cpu_model()
                                                         : NULL;
    if (!name)
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "no watts given and no device name to look up rated watts for GPU %d",
                      o->gpu_index);
    char entry[128], source[512];
    TW_TRY(tw_power_rated_w(name, &m->assumed_w, entry, sizeof entry, source, sizeof source));
    snprintf(
        m->method, sizeof m->method,
        "assumed: rated %.4g W per device for \"%s\" (devices.json entry %s; %s), not measured",
        m->assumed_w, name, entry, source);
    snprintf(m->label, sizeof m->label, "assumed: rated %.4g W of %.100s (devices.json)",
             m->assumed_w, entry);
    return TW_OK;
}

tw_status tw_power_open(const tw_power_opts *o, tw_power_meter **out) {
    *out = NULL;
    const char *want = o->source && *o->source ? o->source : "auto";
    if (strcmp(want, "auto") && strcmp(want, "nvml") && strcmp(want, "rapl") &&
        strcmp(want, "assumed") && strcmp(want, "none"))
        return TW_ERR(TW_ERR_INVALID,
                      "unknown power source \"%s\" (auto, nvml, rapl, assumed, none)", want);
    int sample_ms = o->sample_ms ? o->sample_ms : 50;
    if (sample_ms < 10 || sample_ms > 100)
        return TW_ERR(TW_ERR_INVALID, "power sample interval %d ms outside 10..100", sample_ms);
    int devices = o->devices ? o->devices : 1;
    if (devices < 1) return TW_ERR(TW_ERR_INVALID, "power: %d devices", devices);
    if (!(o->assumed_w >= 0) || !isfinite(o->assumed_w))
        return TW_ERR(TW_ERR_INVALID, "assumed watts %g must be positive (0: rated)", o->assumed_w);
    if (!strcmp(want, "nvml") && o->gpu_index < 0)
        return TW_ERR(TW_ERR_INVALID, "power source nvml needs a GPU index (got %d)", o->gpu_index);
    tw_power_meter *m = calloc(1, sizeof *m);
    if (!m) return TW_ERR(TW_ERR_NOMEM, "power meter");
    m->devices = devices;
    m->sample_ms = sample_ms;
    m->gpu_index = o->gpu_index;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    int is_auto = !strcmp(want, "auto");
    char gpu_name[96] = "";
    tw_status st = TW_OK;

    if (!strcmp(want, "nvml") || (is_auto && o->gpu_index >= 0)) {
        st = tw_power_nvml_open(o->gpu_index, devices, &m->src, gpu_name, sizeof gpu_name);
        if (!st) goto measured;
        if (!is_auto) goto fail;
        tw_note(m, "nvml", tw_error_text());
    } else if (is_auto) {
        tw_note(m, "nvml", "not tried: not a GPU run");
    }
    if (!strcmp(want, "rapl") || (is_auto && o->gpu_index < 0)) {
        st = tw_power_rapl_open(&m->src);
        if (!st) goto measured;
        if (!is_auto) goto fail;
        tw_note(m, "rapl", tw_error_text());
    } else if (is_auto) {
        tw_note(m, "rapl", "not tried: RAPL measures the CPU packages, not the GPUs of this run");
    }
    if (!strcmp(want, "assumed") || is_auto) {
        st = tw_open_assumed(m, o, gpu_name);
        if (!st) {
            m->mode = TW_MODE_ASSUMED;
            m->source = "assumed";
            goto done;
        }
        /* no entry for this device is a reason to go on without power; a configs/devices.json
         * that cannot be found or read, or does not parse, is a broken installation: an error */
        if (!is_auto || st != TW_ERR_UNSUPPORTED) goto fail;
        tw_note(m, "assumed", tw_error_text());
    }
    m->mode = TW_MODE_NONE;
    m->source = "none";
    snprintf(m->method, sizeof m->method, "none: no power source%s",
             is_auto ? " could be used (see fallbacks)" : " asked for");
    snprintf(m->label, sizeof m->label, "none");
    goto done;
measured:
    m->have_src = 1;
    m->source = m->src.name;
    m->mode = m->src.read_energy_j ? TW_MODE_COUNTER : TW_MODE_SAMPLED;
    snprintf(m->method, sizeof m->method, "%s", m->src.method);
    snprintf(m->label, sizeof m->label, "%s", m->src.name);
done:
    *out = m;
    return TW_OK;
fail:
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m);
    return st;
}

static tw_power_phase_acc *tw_find_phase(const tw_power_meter *m, const char *phase) {
    for (int i = 0; i < m->nphase; i++)
        if (!strcmp(m->phase[i].name, phase)) return (tw_power_phase_acc *)&m->phase[i];
    return NULL;
}

tw_status tw_power_begin(tw_power_meter *m, const char *phase) {
    if (!phase || !*phase || strlen(phase) >= sizeof m->phase[0].name)
        return TW_ERR(TW_ERR_INVALID, "power: phase name missing or too long");
    pthread_mutex_lock(&m->mu);
    tw_status st = TW_OK;
    tw_power_phase_acc *p = tw_find_phase(m, phase);
    if (!p) {
        if (m->nphase == TW_POWER_MAX_PHASES) {
            st = TW_ERR(TW_ERR_INVALID, "power: more than %d phases", TW_POWER_MAX_PHASES);
            goto out;
        }
        p = &m->phase[m->nphase++];
        snprintf(p->name, sizeof p->name, "%s", phase);
    }
    if (p->open) {
        st = TW_ERR(TW_ERR_INVALID, "power: a %s region is already open", phase);
        goto out;
    }
    double t = tw_now_s();
    if (m->ntrace == 0 && m->nopen == 0 && !m->have_last) m->t_origin = t;
    if (m->nopen == 0) {
        m->have_last = 0; /* no energy-difference sample across the gap between regions */
        if (m->have_src && m->src.snapshot && m->ntrace == 0) m->src.snapshot(m->src.ctx, 0);
    }
    p->i0 = m->ntrace;
    double e = 0;
    /* inside another open region the energy since the last reading belongs to the trace */
    if ((st = tw_take(m, m->nopen > 0, &e))) goto out;
    p->t0 = tw_now_s();
    p->e0 = e;
    p->open = 1;
    if (m->nopen++ == 0 && m->have_src) {
        m->stop = 0;
        if (pthread_create(&m->thread, NULL, tw_sampler_main, m) == 0)
            m->thread_running = 1;
        else
            st = TW_ERR(TW_ERR_INTERNAL, "power: cannot start the sampler thread");
    }
out:
    pthread_mutex_unlock(&m->mu);
    return st;
}

/* With m->mu held: stops the sampler thread if it runs, releases the lock, then joins it. */
static void tw_sampler_stop_unlock(tw_power_meter *m) {
    pthread_t th = m->thread;
    int join = m->thread_running;
    if (join) {
        m->stop = 1;
        m->thread_running = 0;
        pthread_cond_broadcast(&m->cv);
    }
    pthread_mutex_unlock(&m->mu);
    if (join) pthread_join(th, NULL);
}

tw_status tw_power_end(tw_power_meter *m, const char *phase, tw_power_region *out) {
    pthread_mutex_lock(&m->mu);
    tw_power_phase_acc *p = tw_find_phase(m, phase ? phase : "");
    if (!p || !p->open) {
        pthread_mutex_unlock(&m->mu);
        return TW_ERR(TW_ERR_INVALID, "power: no open %s region", phase ? phase : "(null)");
    }
    double e = 0;
    tw_status st = tw_take(m, 1, &e);
    double t1 = tw_now_s(), sec = t1 - p->t0;
    p->open = 0;
    int last = --m->nopen == 0;
    if (!st && m->sample_err) {
        st = m->sample_err;
        TW_ERR(st, "power sampler: %s", m->sample_errmsg);
    }
    double energy = NAN, peak = NAN;
    if (!st) {
        switch (m->mode) {
        case TW_MODE_COUNTER:
            energy = e - p->e0;
            break;
        case TW_MODE_SAMPLED: /* trapezoid over the samples taken at begin, during and at end */
            energy = 0;
            for (size_t i = p->i0 + 1; i < m->ntrace; i++)
                energy +=
                    0.5 * (m->trace_w[i] + m->trace_w[i - 1]) * (m->trace_t[i] - m->trace_t[i - 1]);
            break;
        case TW_MODE_ASSUMED:
            energy = m->assumed_w * m->devices * sec;
            break;
        case TW_MODE_NONE:
            break;
        }
        for (size_t i = p->i0; i < m->ntrace; i++)
            peak = isnan(peak) ? m->trace_w[i] : fmax(peak, m->trace_w[i]);
        if (isnan(peak) && sec > 0) peak = energy / sec;
        p->energy_j = p->regions ? p->energy_j + energy : energy;
        p->seconds += sec;
        p->peak_w = p->regions ? fmax(p->peak_w, peak) : peak;
        p->regions++;
    }
    if (last && m->have_src && m->src.snapshot) m->src.snapshot(m->src.ctx, 1);
    if (last)
        tw_sampler_stop_unlock(m);
    else
        pthread_mutex_unlock(&m->mu);
    if (st) return st;
    if (out) {
        out->energy_j = energy;
        out->seconds = sec;
        out->mean_power_w = tw_metric_mean_power_w(energy, sec);
        out->peak_power_w = peak;
        out->source = m->source;
        out->assumed = m->mode == TW_MODE_ASSUMED;
    }
    return TW_OK;
}

static void tw_fill_region(const tw_power_meter *m, double energy, double sec, double peak,
                           tw_power_region *out) {
    out->energy_j = energy;
    out->seconds = sec;
    out->mean_power_w = tw_metric_mean_power_w(energy, sec);
    out->peak_power_w = peak;
    out->source = m->source;
    out->assumed = m->mode == TW_MODE_ASSUMED;
}

tw_status tw_power_phase(const tw_power_meter *m, const char *phase, tw_power_region *out) {
    const tw_power_phase_acc *p = tw_find_phase(m, phase);
    if (!p || !p->regions) return TW_ERR(TW_ERR_INVALID, "power: phase %s was not measured", phase);
    tw_fill_region(m, p->energy_j, p->seconds, p->peak_w, out);
    return TW_OK;
}

/* e2e: its own regions when measured, else the sum of every other phase. */
static int tw_e2e(const tw_power_meter *m, tw_power_region *out, int *derived) {
    *derived = 0;
    if (!tw_power_phase(m, "e2e", out)) return 1;
    double e = 0, s = 0, pk = NAN;
    int n = 0;
    for (int i = 0; i < m->nphase; i++) {
        if (!m->phase[i].regions) continue;
        e += m->phase[i].energy_j;
        s += m->phase[i].seconds;
        pk = isnan(pk) ? m->phase[i].peak_w : fmax(pk, m->phase[i].peak_w);
        n++;
    }
    if (!n) return 0;
    tw_fill_region(m, e, s, pk, out);
    *derived = 1;
    return 1;
}

const char *tw_power_source(const tw_power_meter *m) {
    return m->source;
}
int tw_power_is_assumed(const tw_power_meter *m) {
    return m->mode == TW_MODE_ASSUMED;
}
int tw_power_has_energy(const tw_power_meter *m) {
    return m->mode != TW_MODE_NONE;
}
int tw_power_host_level(const tw_power_meter *m) {
    /* RAPL reads the host's packages; assumed watts of a CPU run are a socket's. NVML reads
     * each rank's own GPU; assumed watts of a GPU run are a GPU's. */
    if (m->mode == TW_MODE_NONE) return 0;
    if (m->have_src) return !strcmp(m->src.name, "rapl");
    return m->gpu_index < 0;
}
const char *tw_power_label(const tw_power_meter *m) {
    return m->label;
}
const char *tw_power_method(const tw_power_meter *m) {
    return m->method;
}
const char *tw_power_fallbacks(const tw_power_meter *m) {
    return m->fallbacks;
}

tw_status tw_power_mean_w_per_device(const tw_power_meter *m, double *out) {
    if (m->mode == TW_MODE_NONE)
        return TW_ERR(TW_ERR_UNSUPPORTED, "no power source (%s)", m->fallbacks);
    if (m->mode == TW_MODE_ASSUMED) {
        *out = m->assumed_w;
        return TW_OK;
    }
    tw_power_region r;
    int derived;
    if (!tw_e2e(m, &r, &derived) || !(r.seconds > 0))
        return TW_ERR(TW_ERR_INVALID, "power: nothing measured yet");
    *out = tw_metric_per_device(r.mean_power_w, m->devices);
    return TW_OK;
}

static void tw_region_fill(const tw_power_meter *m, const tw_power_region *r, double tokens,
                           int regions, tw_energy_phase *o) {
    memset(o, 0, sizeof *o);
    o->present = 1;
    o->energy_j = r->energy_j;
    o->seconds = r->seconds;
    o->mean_power_w = r->mean_power_w;
    o->mean_power_w_per_device = tw_metric_per_device(r->mean_power_w, m->devices);
    o->peak_power_w = r->peak_power_w;
    o->regions = regions;
    o->tokens = tokens > 0 && isfinite(tokens) ? tokens : NAN;
    o->j_per_token = tw_metric_j_per_token(r->energy_j, tokens);
    o->tokens_per_j = tw_metric_tokens_per_j(r->energy_j, tokens);
}

tw_status tw_power_energy(const tw_power_meter *m, const tw_power_tokens *tokens, tw_energy *o) {
    tw_power_meter *mm = (tw_power_meter *)m;
    tw_energy_init(o);
    pthread_mutex_lock(&mm->mu);
    snprintf(o->source, sizeof o->source, "%s", m->source);
    o->assumed = m->mode == TW_MODE_ASSUMED;
    snprintf(o->label, sizeof o->label, "%s", m->label);
    snprintf(o->method, sizeof o->method, "%s", m->method);
    for (int i = 0; i < m->nnotes && i < 3; i++)
        snprintf(o->fallbacks[o->nfallbacks++], sizeof o->fallbacks[0], "%s", m->notes[i]);
    o->devices = m->devices;
    o->sample_interval_ms = m->sample_ms;
    o->assumed_w_per_device = m->mode == TW_MODE_ASSUMED ? m->assumed_w : NAN;
    o->provenance = m->have_src && m->src.provenance ? m->src.provenance(m->src.ctx) : NULL;
    if (o->provenance && json_is_null(o->provenance)) {
        json_decref(o->provenance);
        o->provenance = NULL;
    }
    static const char *const named[] = {"prefill", "decode"};
    tw_energy_phase *dst[2] = {&o->prefill, &o->decode};
    double tk[2] = {tokens ? tokens->prefill : 0, tokens ? tokens->decode : 0};
    for (int i = 0; i < 2; i++) {
        tw_power_region r;
        const tw_power_phase_acc *p = tw_find_phase(m, named[i]);
        if (p && p->regions) {
            tw_fill_region(m, p->energy_j, p->seconds, p->peak_w, &r);
            tw_region_fill(m, &r, tk[i], p->regions, dst[i]);
        }
    }
    tw_power_region e2e;
    int derived;
    if (tw_e2e(m, &e2e, &derived)) {
        const tw_power_phase_acc *p = tw_find_phase(m, "e2e");
        tw_region_fill(m, &e2e, tokens ? tokens->e2e : 0, p ? p->regions : 0, &o->e2e);
        o->e2e.has_derived = 1;
        if (derived)
            snprintf(o->e2e.derived, sizeof o->e2e.derived, "sum of the other phases' regions");
    }
    tw_status st = TW_OK;
    if (m->ntrace) {
        o->trace_t_s = malloc(sizeof(double) * m->ntrace);
        o->trace_power_w = malloc(sizeof(double) * m->ntrace);
        if (!o->trace_t_s || !o->trace_power_w) {
            st = TW_ERR(TW_ERR_NOMEM, "power trace of %zu samples", m->ntrace);
        } else {
            o->ntrace = m->ntrace;
            for (size_t i = 0; i < m->ntrace; i++) {
                o->trace_t_s[i] = round(m->trace_t[i] * 1e6) / 1e6;
                o->trace_power_w[i] = m->trace_w[i];
            }
        }
    }
    o->trace_truncated = m->truncated;
    snprintf(o->trace_note, sizeof o->trace_note, "%s",
             m->mode == TW_MODE_ASSUMED || m->mode == TW_MODE_NONE
                 ? "no trace: nothing is measured"
                 : "watts over all devices, seconds since the first measured region began; "
                   "measured regions only");
    pthread_mutex_unlock(&mm->mu);
    if (st) tw_energy_free(o);
    return st;
}

tw_status tw_power_energy_json(const tw_power_meter *m, const tw_power_tokens *tokens,
                               json_t **out) {
    tw_energy e;
    TW_TRY(tw_power_energy(m, tokens, &e));
    *out = tw_energy_to_json(&e);
    tw_energy_free(&e);
    return TW_OK;
}

void tw_power_mark(tw_power_meter *m) {
    pthread_mutex_lock(&m->mu);
    memcpy(m->saved, m->phase, sizeof m->phase);
    m->nsaved = m->nphase;
    pthread_mutex_unlock(&m->mu);
}

void tw_power_rollback(tw_power_meter *m) {
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->nphase; i++) {
        tw_power_phase_acc *p = &m->phase[i];
        if (p->open) {
            p->open = 0;
            m->nopen--;
        }
        if (i < m->nsaved) {
            p->energy_j = m->saved[i].energy_j;
            p->seconds = m->saved[i].seconds;
            p->peak_w = m->saved[i].peak_w;
            p->regions = m->saved[i].regions;
        } else {
            p->energy_j = p->seconds = p->peak_w = 0;
            p->regions = 0;
        }
    }
    if (m->nopen == 0)
        tw_sampler_stop_unlock(m);
    else
        pthread_mutex_unlock(&m->mu);
}

tw_status tw_power_phase_energy(const tw_power_meter *m, const char *phase, double *energy_j) {
    tw_power_region r = {0};
    if (!strcmp(phase, "e2e")) {
        int derived;
        if (!tw_e2e(m, &r, &derived)) return TW_ERR(TW_ERR_INVALID, "power: nothing measured");
    } else {
        TW_TRY(tw_power_phase(m, phase, &r));
    }
    *energy_j = r.energy_j;
    return TW_OK;
}

void tw_power_energy_combine(tw_energy *e, const double total_j[3], int domains, int ranks,
                             const char *how) {
    tw_energy_phase *ph[3] = {&e->prefill, &e->decode, &e->e2e};
    for (int i = 0; i < 3; i++) {
        tw_energy_phase *o = ph[i];
        if (!o->present) continue;
        double sec = o->seconds, tokens = isfinite(o->tokens) ? o->tokens : 0, en = total_j[i];
        o->energy_j = en;
        o->mean_power_w = tw_metric_mean_power_w(en, sec);
        o->mean_power_w_per_device = tw_metric_per_device(o->mean_power_w, domains);
        o->j_per_token = tw_metric_j_per_token(en, tokens);
        o->tokens_per_j = tw_metric_tokens_per_j(en, tokens);
    }
    e->devices = domains;
    e->ranks = ranks;
    snprintf(e->combined, sizeof e->combined, "%s", how);
}

void tw_power_close(tw_power_meter *m) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    int join = m->thread_running;
    pthread_t th = m->thread;
    m->stop = 1;
    m->thread_running = 0;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    if (join) pthread_join(th, NULL);
    if (m->have_src && m->src.close) m->src.close(m->src.ctx);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m->trace_t);
    free(m->trace_w);
    free(m);
}
