/*
 * repl.c — `sluice repl [FILE]`: a Lua 5.4 prompt with sluice loaded (DESIGN section 10).
 *
 * The state comes from sl_script_new, so the prompt sees `sluice` exactly as a pipeline script
 * does; p:run() goes through repl_run_hook (live progress, Ctrl-C drains, :peek taps). Input is
 * read a line at a time (repl_edit.c); a line that leaves a chunk incomplete (Lua says "<eof>")
 * continues on the next, as `lua` does; an expression's values are printed (repl_show.c); errors
 * print with their traceback and the loop goes on. Lines starting with ':' are commands.
 *
 * Signals. SIGINT is blocked everywhere and taken by a thread of its own (sigwait), which counts
 * it and writes to the line reader's wake pipe: at the prompt it clears the line; while Lua code
 * runs, a SIGUSR1 to the main thread sets a hook that stops it with an error ("interrupted");
 * while a pipeline runs the run loop drains it (a second one aborts) and the prompt comes back.
 *
 * With input from a pipe there is no prompt and no line editing; the exit status is 1 when some
 * input failed, 0 otherwise.
 */
#include <errno.h>
#include <lauxlib.h>
#include <locale.h>
#include <lua.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"

#define PEEK_DEFAULT 10
#define PEEK_MAX 100000
#define PEEK_STAGE "_peek" /* the collect sink a peek adds (the summary leaves it out) */

static const char *const commands[] = {":help", ":graph", ":run", ":stats", ":load", ":peek", ":quit", NULL};

static const char help_text[] =
    "Lua 5.4 with sluice loaded. Build a pipeline and run it:\n"
    "  p = sluice.pipeline{}\n"
    "  p:generate(5):map(\"r * r\"):stdout()\n"
    "  :run\n"
    "Expressions print their value; a chunk left open continues on the next line.\n"
    "\n"
    "commands:\n"
    "  :help [STAGE]          this text, or the options of a stage kind\n"
    "  :graph [P] [--format dot|mermaid [FILE]]\n"
    "                         draw pipeline P (default p): boxes here, or dot/mermaid text\n"
    "  :run [P]               run P (default p) with live progress; Ctrl-C drains it\n"
    "  :stats                 the summary of the last run\n"
    "  :load FILE             a YAML file becomes p; a Lua file runs (its last pipeline is p)\n"
    "  :peek STAGE [N]        show the next N (10) records passing STAGE in the next run\n"
    "  :quit                  leave (Ctrl-D too)\n"
    "\n"
    "sluice functions: sluice.pipeline{...}, sluice.load(file), sluice.last(), sluice.sleep(d),\n"
    "sluice.now(), sluice.log(level, ...), sluice.emit(v), sluice.array{}, sluice.counter(name).\n"
    "Pipeline methods: p:KIND(...) adds a stage of any kind (below; TAB completes them),\n"
    "p:run(), p:check(), p:dead_letter(kind, ...). docs/repl.md and docs/lua.md say more.\n";

/* ---- signals ---------------------------------------------------------------------------- */

static atomic_int interrupts;   /* SIGINT (Ctrl-C) seen */
static atomic_int wake_fd = -1; /* edit_wake_fd: ends the line being read */
static atomic_bool in_lua;      /* the main thread runs the REPL's own Lua code */
static atomic_bool waiting;     /* reading piped input: a Ctrl-C ends the program (exit 130) */
static lua_State *hook_L;       /* the REPL's state (set before the first Ctrl-C can matter) */
static pthread_t main_thread;

/* Raised in Lua code a Ctrl-C interrupted (the hook is set by stop_lua). */
static void check_interrupt(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  if (atomic_load(&in_lua) && atomic_load(&interrupts) > 0) luaL_error(L, "interrupted");
}

/* SIGUSR1 on the main thread, sent by sigint_thread while Lua code runs there: sets a hook that
 * stops it at its next instruction, as lua.c does from its SIGINT handler (a hook only while
 * needed: a hook always set slows Lua's VM by half). */
static void stop_lua(int sig) {
  (void)sig;
  if (hook_L && atomic_load(&in_lua)) lua_sethook(hook_L, check_interrupt, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* SIGINT is blocked in every thread (the engines' threads inherit the main thread's mask) and
 * taken here with sigwait: it is counted (the run loop drains on it), wakes the line reader
 * (the prompt clears the line) and stops Lua code on the main thread. */
static void *sigint_thread(void *arg) {
  (void)arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  for (;;) {
    int sig;
    if (sigwait(&set, &sig) != 0 || sig != SIGINT) continue;
    if (atomic_load(&waiting)) _exit(CLI_INTERRUPTED);
    if (atomic_load(&interrupts) < 100) atomic_fetch_add(&interrupts, 1);
    int fd = atomic_load(&wake_fd);
    if (fd >= 0 && write(fd, "", 1) < 0) {
      /* a full pipe has a byte in it already */
    }
    if (atomic_load(&in_lua)) pthread_kill(main_thread, SIGUSR1);
  }
  return NULL;
}

static int start_sigint_thread(pthread_t *t) {
  main_thread = pthread_self();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = stop_lua;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  return pthread_create(t, NULL, sigint_thread, NULL);
}

static void stop_sigint_thread(pthread_t t) {
  pthread_cancel(t); /* sigwait is a cancellation point */
  pthread_join(t, NULL);
  signal(SIGUSR1, SIG_DFL);
}

/* ---- the REPL ---------------------------------------------------------------------------- */

typedef struct repl {
  lua_State *L;
  sl_engine *catalog;   /* stage kinds, for :help and completion */
  edit *ed;
  bool interactive;
  load_log log;
  run_ctx run;
  char *last_summary;   /* the summary of the last run (:stats), or NULL */
  char *peek_stage;     /* :peek armed for the next run, or NULL */
  long peek_n;
  sl_collect *peek;     /* the tap of the run going on, or NULL */
  long peek_seen;
  int failures;         /* inputs that failed */
} repl;

/* Whether the n bytes at l hold what. */
static bool holds(const char *l, size_t n, const char *what) {
  size_t w = strlen(what);
  for (size_t i = 0; i + w <= n; i++)
    if (memcmp(l + i, what, w) == 0) return true;
  return false;
}

/* The message handler: the message and a traceback of the user's frames (those inside the
 * embedded front end, sluice.lua and the C primitives it calls, say nothing to the user). */
static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  const char *tb = lua_tostring(L, -1), *frames = strstr(tb, "\nstack traceback:");
  if (!frames) return 1;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, tb, (size_t)(frames - tb));
  bool header = false;
  for (const char *l = frames + 17; *l;) {
    const char *end = strchr(l + 1, '\n');
    size_t n = end ? (size_t)(end - l) : strlen(l);
    const char *next = end ? end : l + n;
    bool front = holds(l, n, "sluice.lua:") || holds(l, n, "(...tail calls...)") ||
                 (holds(l, n, "[C]: in field '") && end && holds(next, strcspn(next + 1, "\n") + 1, "sluice.lua:"));
    if (!front && !header) {
      luaL_addstring(&b, "\nstack traceback:");
      header = true;
    }
    if (!front) luaL_addlstring(&b, l, n);
    l = next;
  }
  luaL_pushresult(&b);
  return 1;
}

/* Runs the function under it with nargs arguments (all on the stack) in protected mode with a
 * traceback, Ctrl-C stopping Lua code. Leaves the results or the message; returns the status. */
static int call(repl *r, int nargs, int nres) {
  lua_State *L = r->L;
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  atomic_store(&interrupts, 0);
  atomic_store(&in_lua, true);
  int rc = lua_pcall(L, nargs, nres, base);
  atomic_store(&in_lua, false);
  lua_sethook(L, NULL, 0, 0); /* a Ctrl-C that came as it ended */
  lua_remove(L, base);
  return rc;
}

static void report(repl *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(repl *r, const char *fmt, ...) {
  fflush(stdout);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  r->failures++;
}

/* Prints the error on top of the stack (message and traceback) and pops it. */
static void report_error(repl *r) {
  const char *m = lua_tostring(r->L, -1);
  report(r, "%s", m ? m : "(error)");
  lua_pop(r->L, 1);
}

/* Prints the values from index first to the top, tab-separated, and pops them. */
static void print_values(repl *r, int first) {
  lua_State *L = r->L;
  int top = lua_gettop(L);
  if (top < first) return;
  sl_buf b;
  sl_buf_init(&b);
  for (int i = first; i <= top; i++) {
    if (i > first) sl_buf_append(&b, "\t", 1);
    show_value(L, i, &b);
  }
  printf("%s\n", b.data ? b.data : "");
  sl_buf_close(&b);
  lua_settop(L, first - 1);
}

/* Pushes the value of a Lua expression (a pipeline name such as p); false after reporting. */
static bool eval_expr(repl *r, const char *expr) {
  lua_State *L = r->L;
  lua_pushfstring(L, "return %s", expr);
  int rc = luaL_loadbufferx(L, lua_tostring(L, -1), lua_rawlen(L, -1), "=stdin", "t");
  lua_remove(L, -2);
  if (rc == LUA_OK) rc = call(r, 0, 1);
  if (rc != LUA_OK) {
    report_error(r);
    return false;
  }
  return true;
}

/* The pipeline of the object an expression names, for :graph and :peek; NULL after reporting. */
static sl_pipeline *pipeline_of(repl *r, const char *expr) {
  if (!eval_expr(r, expr)) return NULL;
  sl_pipeline *p = NULL;
  sl_error_t err;
  sl_error_init(&err);
  if (!sl_script_is_pipeline(r->L, -1))
    report(r, "'%s' is not a pipeline (build one with p = sluice.pipeline{} or :load FILE)", expr);
  else if (sl_script_pipeline(r->L, -1, &p, &err) != 0)
    report(r, "%s", err.msg);
  lua_pop(r->L, 1);
  return p;
}

/* ---- runs ------------------------------------------------------------------------------- */

/* Prints what the tap caught (up to the count asked for); the rest is drained and dropped. */
static void peek_tick(void *ud) {
  repl *r = ud;
  sl_value v;
  while (r->peek && sl_collect_pull(r->peek, &v, 0) == 0) {
    if (r->peek_seen < r->peek_n) {
      if (r->log.progress) progress_erase(r->log.progress);
      sl_buf b;
      sl_buf_init(&b);
      sl_value_to_json(&v, &b);
      printf("%s #%ld: %s\n", r->peek_stage, ++r->peek_seen, b.data ? b.data : "");
      sl_buf_close(&b);
    }
    sl_value_free(v);
  }
  fflush(stdout);
}

/* Adds the tap of an armed :peek to p: a collect sink reading what the stage emits (a sink: what
 * it receives), whose queue drops what does not fit, so a peek never slows the run. */
static void peek_arm(repl *r, sl_pipeline *p) {
  size_t n = sl_pipeline_stage_count(p), i;
  sl_stage_info si;
  const char **names = calloc(n + 1, sizeof *names);
  if (!names) return;
  for (i = 0; i < n && sl_pipeline_stage_info(p, i, &si) == 0; i++) {
    names[i] = si.name;
    if (strcmp(si.name, r->peek_stage) == 0) break;
  }
  if (i == n) {
    const char *dym = sl_did_you_mean(r->peek_stage, names, n);
    report(r, ":peek: pipeline '%s' has no stage '%s'%s%s%s", sl_pipeline_name(p), r->peek_stage,
           dym ? "; did you mean '" : "", dym ? dym : "", dym ? "'?" : "");
    free(names);
    return;
  }
  free(names);
  sl_value opts = sl_map(3), input = sl_array(1);
  if (si.flags & SL_STAGE_SINK)
    for (int k = 0; k < si.ninputs; k++) sl_array_push(&input, sl_cstr(si.inputs[k]));
  else
    sl_array_push(&input, sl_cstr(si.name));
  sl_value queue = sl_map(2);
  sl_map_setc(&queue, "capacity", sl_int(r->peek_n < 1024 ? r->peek_n : 1024));
  sl_map_setc(&queue, "on_full", sl_cstr("drop_newest"));
  sl_map_setc(&opts, "name", sl_cstr(PEEK_STAGE));
  sl_map_setc(&opts, "input", input);
  sl_map_setc(&opts, "queue", queue);
  sl_error_t err;
  sl_error_init(&err);
  if (sl_pipeline_add(p, "collect", opts, &err) != 0) report(r, ":peek: %s", err.msg);
  else r->peek = sl_pipeline_collect(p, PEEK_STAGE);
  r->peek_seen = 0;
}

/* The run hook: p:run() runs here, with progress on a terminal. An interrupted run is not an
 * error (the prompt comes back; p:run() returns the stats); a failed one raises a short message
 * (the summary and the failure are printed already). */
static int repl_run_hook(void *ud, sl_pipeline *p, sl_error_t *err) {
  repl *r = ud;
  if (r->peek_stage) peek_arm(r, p);
  fflush(stdout);
  sl_error_t e2;
  sl_error_init(&e2);
  atomic_store(&in_lua, false);
  /* keys typed meanwhile would be echoed into the live table (and libedit drops them anyway) */
  struct termios tio, quiet;
  bool tty = r->interactive && tcgetattr(STDIN_FILENO, &tio) == 0;
  if (tty) {
    quiet = tio;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  int status = run_pipeline(&r->run, p, &e2);
  if (tty) tcsetattr(STDIN_FILENO, TCSANOW, &tio);
  if (r->peek_stage && r->peek && status != CLI_USAGE)
    printf("%s: %ld record%s shown\n", r->peek_stage, r->peek_seen, r->peek_seen == 1 ? "" : "s");
  fflush(stdout);
  r->peek = NULL;
  free(r->peek_stage);
  r->peek_stage = NULL;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (f) {
    progress_summary(f, p, r->run.outcome);
    fclose(f);
    free(r->last_summary);
    r->last_summary = text;
  }
  atomic_store(&interrupts, 0);
  atomic_store(&in_lua, true);
  switch (status) {
  case CLI_OK:
  case CLI_INTERRUPTED: return 0;
  case CLI_USAGE: return sl_error_set(err, SL_ECONFIG, e2.stage, "pipeline '%s' cannot start (see above)", sl_pipeline_name(p));
  default: return sl_error_set(err, SL_EFAILED, e2.stage, "pipeline '%s' failed (see above)", sl_pipeline_name(p));
  }
}

/* ---- commands --------------------------------------------------------------------------- */

/* Splits a command's arguments at blanks (in place); returns how many (at most max). */
static int split(char *s, char **argv, int max) {
  int n = 0;
  while (*s && n < max) {
    while (*s == ' ' || *s == '\t') *s++ = 0;
    if (!*s) break;
    argv[n++] = s;
    while (*s && *s != ' ' && *s != '\t') s++;
  }
  return n;
}

static void cmd_help(repl *r, int argc, char **argv) {
  if (argc == 0) {
    fputs(help_text, stdout);
    fputs("\nstage kinds (:help STAGE for one's options):", stdout);
    size_t col = 80;
    for (size_t i = 0; i < sl_engine_kind_count(r->catalog); i++) {
      const char *name = sl_engine_kind_at(r->catalog, i)->name;
      if (col + strlen(name) + 1 > 78) {
        fputs("\n ", stdout);
        col = 1;
      }
      printf(" %s", name);
      col += strlen(name) + 1;
    }
    fputc('\n', stdout);
    return;
  }
  const sl_stage_kind *k = sl_engine_kind(r->catalog, argv[0]);
  if (k) {
    help_stage(stdout, k);
    return;
  }
  const char *names[256];
  size_t n = sl_engine_kind_count(r->catalog);
  for (size_t i = 0; i < n && i < 256; i++) names[i] = sl_engine_kind_at(r->catalog, i)->name;
  const char *dym = sl_did_you_mean(argv[0], names, n < 256 ? n : 256);
  report(r, "no stage kind named '%s'%s%s%s (:help lists the commands, sluice help the kinds)", argv[0],
         dym ? "; did you mean '" : "", dym ? dym : "", dym ? "'?" : "");
}

static void cmd_graph(repl *r, int argc, char **argv) {
  const char *expr = "p", *format = NULL, *file = NULL;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
      format = argv[++i];
      if (i + 1 < argc && argv[i + 1][0] != '-') file = argv[++i];
    } else if (argv[i][0] != '-' && i == 0) {
      expr = argv[i];
    } else {
      report(r, "usage: :graph [P] [--format dot|mermaid [FILE]]");
      return;
    }
  }
  if (format && strcmp(format, "dot") != 0 && strcmp(format, "mermaid") != 0 && strcmp(format, "ascii") != 0) {
    report(r, ":graph: --format is dot, mermaid or ascii (got '%s')", format);
    return;
  }
  sl_pipeline *p = pipeline_of(r, expr);
  if (!p) return;
  FILE *out = stdout;
  if (file && !(out = fopen(file, "w"))) {
    report(r, ":graph: cannot write '%s': %s", file, strerror(errno));
    return;
  }
  if (!format || strcmp(format, "ascii") == 0) graph_ascii(out, p);
  else graph_print(out, p, strcmp(format, "dot") == 0 ? FORMAT_DOT : FORMAT_MERMAID);
  if (file) {
    fclose(out);
    printf("wrote %s\n", file);
  }
  sl_error_t err;
  sl_error_init(&err);
  fflush(stdout);
  if (sl_pipeline_check(p, &err) != 0) fprintf(stderr, "not ready to run:\n%s\n", err.msg);
}

static void cmd_run(repl *r, int argc, char **argv) {
  if (argc > 1) {
    report(r, "usage: :run [P]");
    return;
  }
  const char *expr = argc ? argv[0] : "p";
  if (!eval_expr(r, expr)) return;
  if (!sl_script_is_pipeline(r->L, -1)) {
    lua_pop(r->L, 1);
    report(r, "'%s' is not a pipeline (build one with p = sluice.pipeline{} or :load FILE)", expr);
    return;
  }
  lua_getfield(r->L, -1, "run");
  lua_insert(r->L, -2);
  if (call(r, 1, 0) != LUA_OK) report_error(r);
}

static void cmd_stats(repl *r) {
  if (r->last_summary) fputs(r->last_summary, stdout);
  else printf("no pipeline has run yet (:run runs p)\n");
}

/* :load FILE — YAML: p = sluice.load(FILE); Lua: runs it, then p is the last pipeline it built. */
static void cmd_load(repl *r, int argc, char **argv) {
  lua_State *L = r->L;
  if (argc != 1) {
    report(r, "usage: :load FILE (.yaml, .yml or .lua)");
    return;
  }
  load_type type = load_type_of(argv[0]);
  if (type == LOAD_OTHER) {
    report(r, ":load: '%s' is not a pipeline file: the name must end in .yaml, .yml or .lua", argv[0]);
    return;
  }
  lua_getglobal(L, "sluice");
  int sluice = lua_gettop(L);
  lua_getfield(L, sluice, "last");
  int rc = call(r, 0, 1);
  if (rc != LUA_OK) {
    report_error(r);
    lua_settop(L, sluice - 1);
    return;
  }
  int before = lua_gettop(L);
  if (type == LOAD_YAML) {
    lua_getfield(L, sluice, "load");
    lua_pushstring(L, argv[0]);
    rc = call(r, 1, 1);
  } else {
    rc = luaL_loadfilex(L, argv[0], "t");
    if (rc == LUA_OK) rc = call(r, 0, 0);
    if (rc == LUA_OK) {
      lua_getfield(L, sluice, "last");
      rc = call(r, 0, 1);
    }
  }
  if (rc != LUA_OK) {
    report_error(r);
  } else if (lua_isnil(L, -1) || lua_rawequal(L, -1, before)) {
    printf("%s ran; it built no new pipeline\n", argv[0]);
  } else {
    lua_pushvalue(L, -1);
    lua_setglobal(L, "p");
    sl_buf b;
    sl_buf_init(&b);
    show_value(L, -1, &b);
    printf("p = %s\n", b.data ? b.data : "");
    sl_buf_close(&b);
  }
  lua_settop(L, sluice - 1);
}

static void cmd_peek(repl *r, int argc, char **argv) {
  long n = PEEK_DEFAULT;
  char *end = NULL;
  if (argc < 1 || argc > 2 || (argc == 2 && ((n = strtol(argv[1], &end, 10)) < 1 || n > PEEK_MAX || *end))) {
    report(r, "usage: :peek STAGE [N]   (N from 1 to %d, default %d)", PEEK_MAX, PEEK_DEFAULT);
    return;
  }
  free(r->peek_stage);
  r->peek_stage = strdup(argv[0]);
  r->peek_n = n;
  printf("the next run shows %ld record%s passing '%s'\n", n, n == 1 ? "" : "s", argv[0]);
}

/* Runs a command line; returns false for :quit. */
static bool command(repl *r, const char *line) {
  char *copy = strdup(line), *argv[16];
  int argc = split(copy, argv, 16);
  const char *cmd = argc ? argv[0] : ":";
  bool go_on = true;
  if (strcmp(cmd, ":help") == 0 || strcmp(cmd, ":h") == 0 || strcmp(cmd, ":?") == 0) cmd_help(r, argc - 1, argv + 1);
  else if (strcmp(cmd, ":graph") == 0) cmd_graph(r, argc - 1, argv + 1);
  else if (strcmp(cmd, ":run") == 0) cmd_run(r, argc - 1, argv + 1);
  else if (strcmp(cmd, ":stats") == 0) cmd_stats(r);
  else if (strcmp(cmd, ":load") == 0) cmd_load(r, argc - 1, argv + 1);
  else if (strcmp(cmd, ":peek") == 0) cmd_peek(r, argc - 1, argv + 1);
  else if (strcmp(cmd, ":quit") == 0 || strcmp(cmd, ":q") == 0 || strcmp(cmd, ":exit") == 0) go_on = false;
  else {
    const char *dym = sl_did_you_mean(cmd, commands, sizeof commands / sizeof commands[0] - 1);
    report(r, "unknown command '%s'%s%s%s (:help lists them)", cmd, dym ? "; did you mean '" : "", dym ? dym : "",
           dym ? "'?" : "");
  }
  free(copy);
  fflush(stdout);
  return go_on;
}

/* ---- Lua input -------------------------------------------------------------------------- */

/* Does a load error say the chunk only needs more lines? (Lua's own test in lua.c) */
static bool incomplete(lua_State *L, int status) {
  if (status != LUA_ERRSYNTAX) return false;
  size_t n;
  const char *msg = lua_tolstring(L, -1, &n);
  return n >= 5 && strcmp(msg + n - 5, "<eof>") == 0;
}

/* Reads and runs one chunk: an expression (its values printed) or statements, over as many
 * lines as it needs; or a command. Returns false at the end of input or :quit. */
static bool one_chunk(repl *r) {
  lua_State *L = r->L;
  bool cleared;
  atomic_store(&waiting, !r->interactive);
  const char *line = edit_line(r->ed, "> ", &cleared);
  atomic_store(&waiting, false);
  if (!line) {
    if (cleared) return true;
    if (r->interactive) fputc('\n', stdout);
    return false;
  }
  edit_remember(r->ed, line);
  const char *s = line;
  while (*s == ' ' || *s == '\t') s++;
  if (*s == ':') return command(r, s);
  if (!*s) return true;
  sl_buf chunk;
  sl_buf_init(&chunk);
  sl_buf_append(&chunk, line, strlen(line));
  int top = lua_gettop(L);
  /* an expression first, then statements. Not `return x`, a tail call: the chunk's frame would be
   * gone, and sluice's messages name the line of the frame that called a stage method */
  lua_pushfstring(L, "return select(1, %s);", chunk.data);
  int status = luaL_loadbufferx(L, lua_tostring(L, -1), lua_rawlen(L, -1), "=stdin", "t");
  lua_remove(L, -2);
  if (status != LUA_OK) {
    lua_pop(L, 1);
    for (;;) {
      status = luaL_loadbufferx(L, chunk.data, chunk.len, "=stdin", "t");
      if (!incomplete(L, status)) break;
      lua_pop(L, 1);
      atomic_store(&waiting, !r->interactive);
      const char *more = edit_line(r->ed, ">> ", &cleared);
      atomic_store(&waiting, false);
      if (!more) { /* Ctrl-C drops the chunk; the end of input ends it */
        sl_buf_close(&chunk);
        if (cleared) return true;
        report(r, "stdin: the input ended inside a chunk");
        return false;
      }
      edit_remember(r->ed, more);
      sl_buf_append(&chunk, "\n", 1);
      sl_buf_append(&chunk, more, strlen(more));
    }
  }
  sl_buf_close(&chunk);
  if (status == LUA_OK) status = call(r, 0, LUA_MULTRET);
  if (status == LUA_OK) print_values(r, top + 1);
  else report_error(r);
  lua_settop(L, top);
  fflush(stdout);
  return true;
}

/* ---- main ------------------------------------------------------------------------------- */

enum { F_WORKERS, F_VIRTUAL };
static const args_flag repl_flags[] = {
    [F_WORKERS] = {"workers", true, false},
    [F_VIRTUAL] = {"virtual-time", false, false},
    {NULL, false, false},
};

int repl_main(int argc, char **argv) {
  const char *usage = help_verb_usage("repl");
  args a;
  int status = args_parse(&a, "repl", repl_flags, argc, argv, usage);
  if (status) goto done;
  if (a.help) {
    fputs(usage, stdout);
    goto done;
  }
  if (a.nrest) {
    status = args_error("repl", usage, "one FILE at most");
    goto done;
  }
  int workers = 0;
  if (a.values[F_WORKERS] && (workers = args_int(&a, F_WORKERS, "--workers", 1, 256)) < 0) {
    status = CLI_USAGE;
    goto done;
  }
  if ((status = load_check_env_workers()) != 0) goto done; /* the engine reads it */
  if (a.file && load_type_of(a.file) == LOAD_OTHER) {
    status = load_bad_type("repl", a.file);
    goto done;
  }
  repl r;
  memset(&r, 0, sizeof r);
  r.interactive = isatty(STDIN_FILENO);
  setvbuf(stdout, NULL, _IOLBF, 0); /* results and pipeline output keep their order */
  setlocale(LC_CTYPE, "");          /* libedit decodes the terminal's characters */
  load_log_init(&r.log, false);
  r.run.progress = isatty(STDERR_FILENO);
  r.run.log = &r.log;
  r.run.signals = &interrupts;
  r.run.tick = peek_tick;
  r.run.tick_ud = &r;
  pthread_t sigint;
  if (start_sigint_thread(&sigint) != 0) {
    fprintf(stderr, "sluice repl: cannot start a thread\n");
    status = CLI_FAILED;
    load_log_close(&r.log);
    goto done;
  }

  sl_script_options o;
  sl_script_options_init(&o);
  load_engine_config(&o.engine, workers, a.values[F_VIRTUAL] != NULL, &r.log);
  o.run = repl_run_hook;
  o.run_ud = &r;
  sl_error_t err;
  sl_error_init(&err);
  sl_engine_config ccfg;
  load_engine_config(&ccfg, 1, false, NULL);
  if (load_engine(&ccfg, &r.catalog) != 0 || sl_script_new(&o, &r.L, &err) != 0) {
    if (err.msg[0]) fprintf(stderr, "sluice repl: %s\n", err.msg);
    status = CLI_FAILED;
    goto close;
  }
  hook_L = r.L;
  char history[4096] = "";
  const char *home = getenv("HOME");
  if (home && *home) snprintf(history, sizeof history, "%s/.sluice_history", home);
  edit_env env = {r.L, r.catalog, commands};
  r.ed = edit_new(r.interactive, &env, history[0] ? history : NULL);
  if (!r.ed) {
    fprintf(stderr, "sluice repl: cannot set up line editing\n");
    status = CLI_FAILED;
    goto close;
  }
  atomic_store(&wake_fd, edit_wake_fd(r.ed));
  if (r.interactive) printf("sluice %s (Lua 5.4) — :help for help, Ctrl-D to leave\n", SL_VERSION);
  if (a.file) cmd_load(&r, 1, (char **)&a.file);
  while (one_chunk(&r)) {
  }
  status = !r.interactive && r.failures ? CLI_FAILED : CLI_OK;
close:
  atomic_store(&wake_fd, -1);
  stop_sigint_thread(sigint);
  hook_L = NULL;
  edit_free(r.ed);
  sl_script_close(r.L);
  if (r.catalog) sl_engine_free(r.catalog);
  free(r.last_summary);
  free(r.peek_stage);
  load_log_close(&r.log);
done:
  args_free(&a);
  return status;
}
