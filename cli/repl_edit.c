/*
 * repl_edit.c — reading the REPL's lines: libedit (line editing, history in ~/.sluice_history,
 * tab completion) on a terminal, plain lines from a pipe.
 *
 * Completion looks at the text before the cursor:
 *   :he            the REPL's commands; after :help a stage kind, after :load a file name,
 *                  after :peek a stage of p, after :run and :graph a pipeline object
 *   p:thr          on a pipeline object: the stage kinds and the object's methods
 *   p:throttle{ra  inside the options table of a stage method: that kind's options and the
 *                  common keys
 *   sluice.pi      the fields of a table (raw: no __index runs), methods after ':'
 *   pri            globals and Lua keywords
 * One candidate is inserted; several insert what they share, and when they share nothing more
 * they are listed under the line.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <histedit.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wchar.h>

#include "cli.h"

#define HISTORY_SIZE 1000

struct edit {
  bool interactive;
  int wake[2];          /* edit_interrupt writes to wake[1]; reading a line polls wake[0] */
  edit_env env;
  EditLine *el;         /* NULL when not interactive */
  History *hist;
  char *history_path;
  const char *prompt;   /* the prompt of the line being read */
  char *line;           /* the last line read (getline's buffer, or a copy of libedit's) */
  size_t cap;
};

/* ---- candidates ------------------------------------------------------------------------- */

typedef struct cands {
  char **v;
  size_t n, cap;
  const char *prefix;  /* what is typed of the word being completed */
  size_t plen;
} cands;

/* Adds a candidate if it starts with the prefix and is not there yet. */
static void cand_add(cands *c, const char *s, size_t n) {
  if (n < c->plen || strncmp(s, c->prefix, c->plen) != 0) return;
  for (size_t i = 0; i < c->n; i++)
    if (strlen(c->v[i]) == n && strncmp(c->v[i], s, n) == 0) return;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 32;
    char **v = realloc(c->v, cap * sizeof *v);
    if (!v) return;
    c->v = v;
    c->cap = cap;
  }
  char *copy = malloc(n + 1);
  if (!copy) return;
  memcpy(copy, s, n);
  copy[n] = 0;
  c->v[c->n++] = copy;
}

static void cand_addc(cands *c, const char *s) { cand_add(c, s, strlen(s)); }

static void cands_free(cands *c) {
  for (size_t i = 0; i < c->n; i++) free(c->v[i]);
  free(c->v);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool ident_char(char ch) { return ch == '_' || isalnum((unsigned char)ch); }

static void add_kinds(cands *c, const edit_env *env) {
  for (size_t i = 0; env->catalog && i < sl_engine_kind_count(env->catalog); i++) cand_addc(c, sl_engine_kind_at(env->catalog, i)->name);
}

/* The string keys of the table at idx (not those starting with '_' unless the prefix does);
 * functions only when methods. */
static void add_keys(cands *c, lua_State *L, int idx, bool methods) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING && (!methods || lua_type(L, -1) == LUA_TFUNCTION)) {
      size_t n;
      const char *k = lua_tolstring(L, -2, &n);
      if (k[0] != '_' || (c->plen && c->prefix[0] == '_')) cand_add(c, k, n);
    }
    lua_pop(L, 1);
  }
}

/* Pushes the value a dotted path of names denotes ("sluice", "a.b"), looked up raw from the
 * globals; returns false (pushing nothing) when a part is missing or not a table. */
static bool resolve(lua_State *L, const char *path, size_t n) {
  lua_pushglobaltable(L);
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    while (j < n && path[j] != '.' && path[j] != ':') j++;
    if (j == i || !lua_istable(L, -1)) {
      lua_pop(L, 1);
      return false;
    }
    lua_pushlstring(L, path + i, j - i);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    i = j + 1;
  }
  return true;
}

/* The options of a stage kind and the common keys. */
static void add_options(cands *c, const edit_env *env, const char *kind) {
  const sl_stage_kind *k = env->catalog ? sl_engine_kind(env->catalog, kind) : NULL;
  if (!k) return;
  for (const sl_option *o = k->options; o && o->type != SL_OPT_END; o++)
    if (o->type != SL_OPT_PTR) cand_addc(c, o->key);
  static const char *const common[] = {"name", "input", "on_error", "parallelism", "queue"};
  for (size_t i = 0; i < sizeof common / sizeof common[0]; i++) cand_addc(c, common[i]);
}

/* Where an unclosed '{' or '(' before end is (skipping strings), or -1; *open gets which. */
static long unclosed(const char *t, long end, char *open) {
  long stack[64];
  char kinds[64];
  int depth = 0;
  char quote = 0;
  for (long i = 0; i < end; i++) {
    char ch = t[i];
    if (quote) {
      if (ch == '\\') i++;
      else if (ch == quote) quote = 0;
    } else if (ch == '"' || ch == '\'') {
      quote = ch;
    } else if ((ch == '{' || ch == '(') && depth < 64) {
      kinds[depth] = ch;
      stack[depth++] = i;
    } else if ((ch == '}' || ch == ')') && depth > 0) {
      depth--;
    }
  }
  if (!depth) return -1;
  *open = kinds[depth - 1];
  return stack[depth - 1];
}

/* The stage kind of a method call whose argument list (or table) opens at t[at]: `p:kind{`,
 * `p:kind(`, `p:kind("x", {`. Copies it into kind; false when it is not one. */
static bool method_kind(const char *t, long at, char open, char *kind, size_t n) {
  long i = at - 1;
  while (i >= 0 && isspace((unsigned char)t[i])) i--;
  if (open == '{' && i >= 0 && (t[i] == ',' || t[i] == '(')) { /* a table among the arguments */
    char o2;
    long call = unclosed(t, i + 1, &o2);
    if (call < 0 || o2 != '(') return false;
    return method_kind(t, call, '(', kind, n);
  }
  long endw = i + 1;
  while (i >= 0 && ident_char(t[i])) i--;
  if (i < 0 || t[i] != ':' || endw - (i + 1) <= 0) return false;
  snprintf(kind, n, "%.*s", (int)(endw - (i + 1)), t + i + 1);
  return true;
}

/* File names for :load (directories with a '/'). */
static void add_files(cands *c) {
  const char *slash = strrchr(c->prefix, '/');
  char dir[1024];
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - c->prefix + 1) : 1, slash ? c->prefix : ".");
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    char full[2048];
    snprintf(full, sizeof full, "%s%s", slash ? dir : "", de->d_name);
    struct stat sb;
    if (stat(full, &sb) == 0 && S_ISDIR(sb.st_mode)) strcat(full, "/");
    cand_addc(c, full);
  }
  closedir(d);
}

/* The stage names of the global p, for :peek. */
static void add_stages_of_p(cands *c, lua_State *L) {
  lua_getglobal(L, "p");
  sl_pipeline *p = NULL;
  if (sl_script_is_pipeline(L, -1) && sl_script_pipeline(L, -1, &p, NULL) == 0)
    for (size_t i = 0; i < sl_pipeline_stage_count(p); i++) {
      sl_stage_info si;
      if (sl_pipeline_stage_info(p, i, &si) == 0 && si.name[0] != '_') cand_addc(c, si.name);
    }
  lua_pop(L, 1);
}

static void add_pipeline_globals(cands *c, lua_State *L) {
  lua_pushglobaltable(L);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) == LUA_TSTRING && sl_script_is_pipeline(L, -1)) cand_addc(c, lua_tostring(L, -2));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* A REPL command line: the command, then its arguments. */
static void complete_command(const edit_env *env, const char *t, cands *c) {
  const char *sp = strchr(t, ' ');
  if (!sp) {
    c->prefix = t;
    c->plen = strlen(t);
    for (const char *const *cmd = env->commands; *cmd; cmd++) cand_addc(c, *cmd);
    return;
  }
  const char *last = strrchr(t, ' ') + 1;
  c->prefix = last;
  c->plen = strlen(last);
  size_t cmdlen = (size_t)(sp - t);
  int argi = 0; /* which argument is being typed */
  for (const char *s = sp; s < last; s++) argi += *s == ' ' && s[1] != ' ';
  if (cmdlen == 5 && strncmp(t, ":help", 5) == 0) add_kinds(c, env);
  else if (cmdlen == 5 && strncmp(t, ":load", 5) == 0) add_files(c);
  else if (cmdlen == 5 && strncmp(t, ":peek", 5) == 0 && argi == 1) add_stages_of_p(c, env->L);
  else if ((cmdlen == 4 && strncmp(t, ":run", 4) == 0) || (cmdlen == 6 && strncmp(t, ":graph", 6) == 0)) {
    if (argi == 1 || cmdlen == 6) add_pipeline_globals(c, env->L);
    if (cmdlen == 6) {
      const char *prev = last - 2;
      while (prev > t && prev[-1] != ' ') prev--;
      if (strncmp(prev, "--format ", 9) == 0) {
        cand_addc(c, "dot");
        cand_addc(c, "mermaid");
        cand_addc(c, "ascii");
      } else {
        cand_addc(c, "--format");
      }
    }
  }
}

static const char *const keywords[] = {"and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto",
                                       "if", "in", "local", "nil", "not", "or", "repeat", "return", "then", "true",
                                       "until", "while"};

/* Lua text: fields, methods, options or globals. */
static void complete_lua(const edit_env *env, const char *t, cands *c) {
  lua_State *L = env->L;
  long end = (long)strlen(t), start = end;
  while (start > 0 && (ident_char(t[start - 1]) || t[start - 1] == '.' || t[start - 1] == ':')) start--;
  const char *word = t + start;
  const char *sep = NULL;
  for (const char *s = word; *s; s++)
    if (*s == '.' || *s == ':') sep = s;
  c->prefix = sep ? sep + 1 : word;
  c->plen = strlen(c->prefix);
  if (!sep) { /* a key of a stage method's options table? */
    long before = start - 1;
    while (before >= 0 && isspace((unsigned char)t[before])) before--;
    char open, kind[64];
    long at = unclosed(t, start, &open);
    if (at >= 0 && open == '{' && before >= 0 && (t[before] == '{' || t[before] == ',') &&
        method_kind(t, at, open, kind, sizeof kind)) {
      add_options(c, env, kind);
      return;
    }
    lua_pushglobaltable(L);
    add_keys(c, L, -1, false);
    lua_pop(L, 1);
    for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++) cand_addc(c, keywords[i]);
    return;
  }
  int top = lua_gettop(L);
  if (!resolve(L, word, (size_t)(sep - word))) return;
  if (*sep == ':') {
    if (sl_script_is_pipeline(L, -1)) add_kinds(c, env);
    if (lua_type(L, -1) == LUA_TSTRING) lua_getglobal(L, "string");
    else if (lua_getmetatable(L, -1)) { /* the methods of its class */
      add_keys(c, L, -1, true);
      lua_getfield(L, -1, "__index");
      if (lua_istable(L, -1)) add_keys(c, L, -1, true);
    }
    if (lua_istable(L, -1)) add_keys(c, L, -1, true);
  } else if (lua_istable(L, -1) && !sl_script_is_pipeline(L, -1)) {
    add_keys(c, L, -1, false);
  }
  lua_settop(L, top);
}

/* Lists candidates in columns under the line. */
static void list(FILE *out, cands *c) {
  size_t w = 0;
  for (size_t i = 0; i < c->n; i++)
    if (strlen(c->v[i]) > w) w = strlen(c->v[i]);
  w += 2;
  size_t cols = 80 / w ? 80 / w : 1, rows = (c->n + cols - 1) / cols;
  fputc('\n', out);
  for (size_t r = 0; r < rows; r++) {
    for (size_t k = 0; k < cols; k++) {
      size_t i = k * rows + r;
      if (i < c->n) fprintf(out, "%-*s", (int)(k + 1 < cols ? w : 0), c->v[i]);
    }
    fputc('\n', out);
  }
  fflush(out);
}

static unsigned char complete(EditLine *el, int ch) {
  edit *ed;
  el_get(el, EL_CLIENTDATA, &ed);
  const LineInfo *li = el_line(el);
  size_t len = (size_t)(li->cursor - li->buffer);
  char *t = malloc(len + 1);
  if (!t) return CC_ERROR;
  memcpy(t, li->buffer, len);
  t[len] = 0;
  cands c = {0};
  const char *s = t;
  while (*s == ' ') s++;
  if (*s == ':' && s == t) complete_command(&ed->env, s, &c);
  else complete_lua(&ed->env, t, &c);
  unsigned char rc = CC_ERROR;
  if (c.n) {
    qsort(c.v, c.n, sizeof *c.v, cmp_str);
    size_t common = strlen(c.v[0]);
    for (size_t i = 1; i < c.n; i++) {
      size_t k = 0;
      while (k < common && c.v[i][k] == c.v[0][k]) k++;
      common = k;
    }
    if (common > c.plen) {
      char *ins = strndup(c.v[0] + c.plen, common - c.plen);
      if (ins && el_insertstr(el, ins) == 0) rc = CC_REFRESH;
      free(ins);
    } else if (c.n > 1) {
      list(stdout, &c);
      rc = CC_REDISPLAY;
    } else {
      rc = CC_REFRESH;
    }
  }
  cands_free(&c);
  free(t);
  return rc;
}

/* ---- the editor ---------------------------------------------------------------------------- */

/* Reads one character for libedit. It waits on stdin and on the wake pipe together, so a Ctrl-C
 * that comes at any moment (not only while read() blocks) ends the line: -1 with EINTR, and
 * el_gets returns NULL. Bytes are decoded as the locale says (UTF-8); a bad one is skipped. */
static int getc_fn(EditLine *el, wchar_t *wc) {
  edit *ed;
  el_get(el, EL_CLIENTDATA, &ed);
  char buf[MB_LEN_MAX];
  size_t n = 0;
  for (;;) {
    struct pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {ed->wake[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue; /* the handler wrote to the pipe: seen next time round */
      return -1;
    }
    if (fds[1].revents & POLLIN) {
      char drop[64];
      while (read(ed->wake[0], drop, sizeof drop) > 0) {
      }
      errno = EINTR;
      return -1;
    }
    if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    ssize_t r = read(STDIN_FILENO, buf + n, 1);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r <= 0) return (int)r;
    n++;
    mbstate_t st;
    memset(&st, 0, sizeof st);
    size_t k = mbrtowc(wc, buf, n, &st);
    if (k == (size_t)-2 && n < sizeof buf) continue; /* more bytes of the character */
    if (k == (size_t)-1 || k == (size_t)-2) {
      n = 0;
      continue;
    }
    return 1;
  }
}

int edit_wake_fd(const edit *ed) { return ed && ed->interactive ? ed->wake[1] : -1; }

static char *prompt_of(EditLine *el) {
  edit *ed;
  el_get(el, EL_CLIENTDATA, &ed);
  return (char *)ed->prompt;
}

edit *edit_new(bool interactive, const edit_env *env, const char *history_path) {
  edit *ed = calloc(1, sizeof *ed);
  if (!ed) return NULL;
  ed->interactive = interactive;
  ed->env = *env;
  ed->prompt = "";
  ed->wake[0] = ed->wake[1] = -1;
  if (!interactive) return ed;
  ed->el = el_init("sluice", stdin, stdout, stderr);
  ed->hist = history_init();
  bool piped = pipe(ed->wake) == 0;
  for (int i = 0; piped && i < 2; i++)
    piped = fcntl(ed->wake[i], F_SETFL, O_NONBLOCK) == 0 && fcntl(ed->wake[i], F_SETFD, FD_CLOEXEC) == 0;
  if (!ed->el || !ed->hist || !piped) {
    edit_free(ed);
    return NULL;
  }
  HistEvent ev;
  history(ed->hist, &ev, H_SETSIZE, HISTORY_SIZE);
  history(ed->hist, &ev, H_SETUNIQUE, 1);
  if (history_path) {
    ed->history_path = strdup(history_path);
    history(ed->hist, &ev, H_LOAD, history_path); /* a missing file is no history yet */
  }
  el_set(ed->el, EL_CLIENTDATA, ed);
  el_set(ed->el, EL_EDITOR, "emacs");
  el_set(ed->el, EL_PROMPT, prompt_of);
  el_set(ed->el, EL_GETCFN, getc_fn);
  el_set(ed->el, EL_HIST, history, ed->hist);
  el_set(ed->el, EL_ADDFN, "sluice-complete", "complete the word before the cursor", complete);
  el_set(ed->el, EL_BIND, "^I", "sluice-complete", NULL);
  el_source(ed->el, NULL); /* ~/.editrc */
  return ed;
}

void edit_free(edit *ed) {
  if (!ed) return;
  if (ed->el) el_end(ed->el);
  if (ed->hist) history_end(ed->hist);
  for (int i = 0; i < 2; i++)
    if (ed->wake[i] >= 0) close(ed->wake[i]);
  free(ed->history_path);
  free(ed->line);
  free(ed);
}

const char *edit_line(edit *ed, const char *prompt, bool *cleared) {
  *cleared = false;
  fflush(stdout);
  if (!ed->interactive) {
    ssize_t n = getline(&ed->line, &ed->cap, stdin);
    if (n < 0) return NULL;
    if (n > 0 && ed->line[n - 1] == '\n') ed->line[--n] = 0;
    return ed->line;
  }
  ed->prompt = prompt;
  char drop[64]; /* a Ctrl-C from before this line (one that stopped a run) is not for it */
  while (read(ed->wake[0], drop, sizeof drop) > 0) {
  }
  int count = 0;
  errno = 0;
  const char *l = el_gets(ed->el, &count);
  if (!l || count <= 0) {
    if (count < 0 && errno == EINTR) { /* Ctrl-C: the line is dropped */
      *cleared = true;
      el_reset(ed->el);
      fputc('\n', stdout);
    }
    return NULL;
  }
  size_t n = strlen(l);
  if (n && l[n - 1] == '\n') n--;
  if (n + 1 > ed->cap) {
    char *line = realloc(ed->line, n + 1);
    if (!line) return NULL;
    ed->line = line;
    ed->cap = n + 1;
  }
  memcpy(ed->line, l, n);
  ed->line[n] = 0;
  return ed->line;
}

void edit_remember(edit *ed, const char *line) {
  if (!ed->interactive || !*line) return;
  HistEvent ev;
  history(ed->hist, &ev, H_ENTER, line);
  if (ed->history_path) history(ed->hist, &ev, H_SAVE, ed->history_path);
}
