/* Progress lines on stderr (tw_progress.h). */
#include "tw_progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tw_util.h"

static tw_progress_mode g_mode = TW_PROGRESS_OFF;
static double g_last_t = -1e30;
static int g_shown = 0; /* a terminal line is on screen */
static int g_width = 0; /* its length, to blank it */

tw_progress_mode tw_progress_choose(int asked) {
    if (isatty(STDERR_FILENO)) return TW_PROGRESS_TTY;
    return asked ? TW_PROGRESS_LINES : TW_PROGRESS_OFF;
}

void tw_progress_set_mode(tw_progress_mode mode) {
    g_mode = mode;
}

tw_progress_mode tw_progress_mode_now(void) {
    return g_mode;
}

void tw_progress_fmt_duration(char *buf, unsigned long n, double s) {
    if (!isfinite(s) || s < 0) {
        snprintf(buf, n, "unknown");
    } else if (s < 90) {
        snprintf(buf, n, "%.0f s", s);
    } else if (s < 5400) {
        snprintf(buf, n, "%d min %02d s", (int)(s / 60), (int)fmod(s, 60));
    } else {
        snprintf(buf, n, "%d h %02d min", (int)(s / 3600), (int)fmod(s / 60, 60));
    }
}

void tw_progress_clear(void) {
    if (g_mode != TW_PROGRESS_TTY || !g_shown) return;
    fprintf(stderr, "\r%*s\r", g_width, "");
    fflush(stderr);
    g_shown = 0;
}

void tw_progress_show(int milestone, double eta_s, const char *fmt, ...) {
    if (g_mode == TW_PROGRESS_OFF) return;
    double now = tw_now_s();
    double gap = g_mode == TW_PROGRESS_TTY ? 0.2 : 2.0;
    if (!milestone && now - g_last_t < gap) return;
    g_last_t = now;
    char text[512], eta[64] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (eta_s >= 0 && isfinite(eta_s)) {
        char d[32];
        tw_progress_fmt_duration(d, sizeof d, eta_s);
        snprintf(eta, sizeof eta, "; ETA ~%s", d);
    }
    if (g_mode == TW_PROGRESS_TTY) {
        int w = fprintf(stderr, "\r# progress: %s%s", text, eta);
        if (w < g_width) fprintf(stderr, "%*s", g_width - w, "");
        g_width = w;
        g_shown = 1;
    } else {
        fprintf(stderr, "# progress: %s%s\n", text, eta);
    }
    fflush(stderr);
}
