/*
 * progress.c — the live per-stage table `sluice run` draws on a terminal, and the summary at the
 * end. Both go to stderr.
 *
 * The table is redrawn in place about four times a second: the cursor moves up over the lines
 * drawn last time ("ESC[nA"), the screen is cleared from there down ("ESC[J"), and the table is
 * written again. Lines are cut to the terminal's width, so none wraps and the count of lines to
 * move over stays right. Whoever else prints to stderr meanwhile (the log callback) erases the
 * table first; the next tick draws it again below the message. Not thread-safe: the caller
 * serialises (run.c holds the log mutex).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define REDRAW_NS (250 * (int64_t)1000000)
#define NAME_W 20
#define KIND_W 10

struct progress {
  sl_pipeline *p;
  size_t n;            /* stages */
  uint64_t *last;      /* per stage: the count the rate is taken over, at last_ns */
  double *rate;        /* per stage: records per second over the last interval */
  bool *sources;       /* per stage: a source (its `in` column shows "-") */
  int64_t last_ns;     /* monotonic time of the last drawing */
  int lines;           /* lines of the table now on screen (0: erased) */
};

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The terminal's size (100x50 when it cannot be told: --progress on a pipe). */
static void term_size(int *width, int *height) {
  struct winsize ws;
  bool known = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0;
  *width = known && ws.ws_col > 20 ? ws.ws_col : 100;
  *height = known && ws.ws_row > 4 ? ws.ws_row : 50;
}

progress *progress_new(sl_pipeline *p) {
  progress *pr = calloc(1, sizeof *pr);
  if (!pr) return NULL;
  pr->p = p;
  pr->n = sl_pipeline_stage_count(p);
  pr->last = calloc(pr->n + 1, sizeof *pr->last);
  pr->rate = calloc(pr->n + 1, sizeof *pr->rate);
  pr->sources = calloc(pr->n + 1, sizeof *pr->sources);
  if (!pr->last || !pr->rate || !pr->sources) {
    progress_free(pr);
    return NULL;
  }
  for (size_t i = 0; i < pr->n; i++) {
    sl_stage_info si;
    pr->sources[i] = sl_pipeline_stage_info(p, i, &si) == 0 && (si.flags & SL_STAGE_SOURCE);
  }
  pr->last_ns = mono_ns();
  return pr;
}

void progress_free(progress *pr) {
  if (!pr) return;
  free(pr->last);
  free(pr->rate);
  free(pr->sources);
  free(pr);
}

/* A count in at most 7 characters: 1234567 -> 1.23M. */
static void human(char *buf, size_t n, double v) {
  if (v < 100000) snprintf(buf, n, "%.0f", v);
  else if (v < 1e6) snprintf(buf, n, "%.1fk", v / 1e3);
  else if (v < 1e9) snprintf(buf, n, "%.2fM", v / 1e6);
  else snprintf(buf, n, "%.2fG", v / 1e9);
}

/* One line, cut to width (no wrap). */
static void put_line(const char *s, int width) {
  int len = (int)strlen(s);
  fprintf(stderr, "%.*s\n", len < width ? len : width - 1, s);
}

void progress_erase(progress *pr) {
  if (!pr || pr->lines == 0) return;
  fprintf(stderr, "\r\033[%dA\033[J", pr->lines);
  pr->lines = 0;
  fflush(stderr);
}

/* Whether a stage has a circuit breaker (its column is shown then: state/changes). */
static bool any_breaker(sl_pipeline *p) {
  for (size_t i = 0; i < sl_pipeline_stage_count(p); i++) {
    sl_stage_stats s;
    if (sl_pipeline_stats(p, i, &s) == 0 && s.breaker) return true;
  }
  return false;
}

void progress_tick(progress *pr, bool force) {
  if (!pr) return;
  int64_t now = mono_ns();
  if (!force && now - pr->last_ns < REDRAW_NS) return;
  double dt = (double)(now - pr->last_ns) / 1e9;
  bool update = dt >= 0.2; /* a forced drawing (the first) shows rates of 0 */
  int width, height;
  term_size(&width, &height);
  /* the cursor cannot move above the screen's top: a table taller than the screen shows its
   * first stages and a count of the others */
  size_t shown = pr->n;
  if (pr->n + 2 > (size_t)height - 1) shown = (size_t)height - 4;
  char line[512];
  progress_erase(pr);
  bool breakers = any_breaker(pr->p);
  snprintf(line, sizeof line, "%-*s %-*s %8s %8s %8s %11s %7s %7s%s", NAME_W, "stage", KIND_W, "kind", "in",
           "out", "rate/s", "queue", "errors", "dropped", breakers ? "  breaker" : "");
  put_line(line, width);
  int lines = 1;
  for (size_t i = 0; i < pr->n; i++) {
    sl_stage_stats s;
    if (sl_pipeline_stats(pr->p, i, &s) != 0 || s.name[0] == '_') continue;
    if (i == shown) {
      snprintf(line, sizeof line, "... %zu more stages (the summary lists them all)", pr->n - shown);
      put_line(line, width);
      lines++;
    }
    /* the rate is of what a stage emits (a sink: what it wrote) */
    uint64_t count = s.out;
    if (update) {
      pr->rate[i] = (double)(count - pr->last[i]) / dt;
      pr->last[i] = count;
    }
    char in[16], out[16], rate[16], queue[32], errors[16], dropped[16];
    human(in, sizeof in, (double)s.in);
    if (pr->sources[i]) snprintf(in, sizeof in, "-");
    human(out, sizeof out, (double)s.out);
    human(rate, sizeof rate, s.done ? 0 : pr->rate[i]);
    if (s.done) snprintf(rate, sizeof rate, "done");
    if (i >= shown) continue; /* rates are still taken for every stage */
    if (s.queue_cap) {
      char l[16], c[16];
      human(l, sizeof l, (double)s.queue_len);
      human(c, sizeof c, (double)s.queue_cap);
      snprintf(queue, sizeof queue, "%s/%s", l, c);
    } else {
      snprintf(queue, sizeof queue, "-");
    }
    human(errors, sizeof errors, (double)s.errors);
    human(dropped, sizeof dropped, (double)s.dropped);
    char breaker[48] = "";
    if (s.breaker) snprintf(breaker, sizeof breaker, "  %s/%llu", s.breaker, (unsigned long long)s.breaker_changes);
    snprintf(line, sizeof line, "%-*.*s %-*.*s %8s %8s %8s %11s %7s %7s%s", NAME_W, NAME_W, s.name, KIND_W, KIND_W,
             s.kind, in, out, rate, queue, errors, dropped, breaker);
    put_line(line, width);
    lines++;
  }
  snprintf(line, sizeof line, "elapsed %.1f s", sl_pipeline_elapsed(pr->p));
  put_line(line, width);
  lines++;
  pr->lines = lines;
  if (update) pr->last_ns = now;
  fflush(stderr);
}

void progress_summary(FILE *f, sl_pipeline *p, const char *outcome) {
  fprintf(f, "sluice: pipeline '%s' %s in %.3f s\n", sl_pipeline_name(p), outcome, sl_pipeline_elapsed(p));
  fprintf(f, "  %-*s %-*s %12s %12s %9s %9s\n", NAME_W, "stage", KIND_W, "kind", "in", "out", "errors", "dropped");
  for (size_t i = 0; i < sl_pipeline_stage_count(p); i++) {
    sl_stage_stats s;
    if (sl_pipeline_stats(p, i, &s) != 0 || s.name[0] == '_') continue;
    fprintf(f, "  %-*s %-*s %12llu %12llu %9llu %9llu\n", NAME_W, s.name, KIND_W, s.kind,
            (unsigned long long)s.in, (unsigned long long)s.out, (unsigned long long)s.errors,
            (unsigned long long)s.dropped);
    if (s.breaker)
      fprintf(f, "  %-*s circuit breaker %s after %llu state changes\n", NAME_W, "", s.breaker,
              (unsigned long long)s.breaker_changes);
  }
  fflush(f);
}
