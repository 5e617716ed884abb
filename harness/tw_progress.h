/* Progress of long work on stderr (never stdout): one line redrawn in place when stderr is a
 * terminal, or plain lines (milestones, and at most one other line every 2 s) when asked for
 * with --progress while stderr is a file or pipe. Off otherwise, so that logs stay clean. */
#ifndef TW_PROGRESS_H
#define TW_PROGRESS_H

typedef enum { TW_PROGRESS_OFF = 0, TW_PROGRESS_TTY, TW_PROGRESS_LINES } tw_progress_mode;

/* The mode for stderr: a terminal redraws a line; otherwise lines when `asked`, else off. */
tw_progress_mode tw_progress_choose(int asked);
void tw_progress_set_mode(tw_progress_mode mode);
tw_progress_mode tw_progress_mode_now(void);

/* Shows "# progress: <text>[; ETA ~T]" (eta_s < 0: none). A milestone is always printed;
 * other updates are rate-limited (5 per second on a terminal, one line per 2 s otherwise). */
void tw_progress_show(int milestone, double eta_s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Clears a terminal's progress line (before other output on stderr); a no-op for lines. */
void tw_progress_clear(void);

/* "45 s", "3 min 20 s", "2 h 05 min" */
void tw_progress_fmt_duration(char *buf, unsigned long n, double seconds);

#endif
