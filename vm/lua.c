/*
 * lua.c — Lua states, stage functions, calls as coroutines, and the `sluice` module of the
 * worker states (see lua.h for the model).
 *
 * Threading: a pipeline's sl_lua_prog is written while the pipeline is built (one thread) and
 * only read once it runs, except its counters (a mutex guards the list; values are atomics).
 * An sl_lua belongs to one task; sl_lua_enter/leave assert in debug builds that no two threads
 * use it at once. Never hold a mutex or a malloc'd buffer across a Lua call that can raise.
 */
#include "lua.h"

#include <lauxlib.h>
#include <lualib.h>
#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "pipeline.h"

#define DEFAULT_MEMORY_LIMIT (256ll << 20)
#define DEFAULT_INSTRUCTION_LIMIT 100000000ll
#define HOOK_STEP 100000 /* instructions between two count-hook checks */

typedef struct chunk {
  char *code;  /* Lua source, or a shipped globals blob */
  size_t len;
  char *file;  /* where it came from */
  int line;    /* first line in that file */
  bool blob;   /* a globals blob (sl_lua_ship_globals) */
} chunk;

typedef struct counter {
  char *name;
  atomic_llong value;
  struct counter *next;
} counter;

struct sl_lua_prog {
  sl_pipeline *p;
  chunk *chunks;     /* run in order in every state */
  size_t nchunks;
  sl_lua *control;   /* runs the chunks at build time to check stage functions */
  char *path, *cpath;/* package.path and cpath for every state, or NULL */
  pthread_mutex_t mu;/* counters */
  counter *counters;
};

/* Small blocks freed by a state are kept for its next allocations of the same size class
 * (POOL_GRAIN-byte steps up to POOL_MAX bytes, at most POOL_KEEP bytes held). Lua makes and drops
 * several small objects per record and frees them in bursts when it collects; glibc's per-thread
 * cache holds only 7 blocks of a size, so a burst fell through to its slower bins (about 8% of the
 * time of a Lua stage that builds a table per record). A state runs on one thread at a time, so
 * its lists need no lock. Off under the sanitizers, which must see every block freed. */
#define POOL_GRAIN 16
#define POOL_CLASSES 16
#define POOL_MAX (POOL_GRAIN * POOL_CLASSES)
#ifdef SL_SANITIZE
#define POOL_KEEP 0
#else
#define POOL_KEEP ((size_t)8 << 20)
#endif

struct sl_lua {
  lua_State *L;
  sl_pipeline *p;
  atomic_size_t used;   /* bytes the state holds (written by its owner only; read by stats) */
  struct sl_lua *next;  /* in the pipeline's list of states (p->luas, under p->mu) */
  size_t limit;         /* lua_memory_limit (0: none) */
  bool in_user;         /* user code is running: the limit applies */
  bool mem_hit;         /* an allocation was refused */
  int64_t instr_limit;  /* lua_instruction_limit (0: none) */
  bool sandbox;         /* sandbox: true */
  sl_lua_call *pool;    /* finished calls, ready for reuse */
  sl_lua_call *calls;   /* every call made (linked by `all`), freed with the state */
  int fns;              /* registry ref: table stage function text -> function */
  void *spare[POOL_CLASSES]; /* freed small blocks by size class, linked through their first word */
  sl_lua_keys keys;     /* map keys as Lua strings (lua_value.c) */
  size_t spare_bytes;   /* bytes held in spare */
#ifndef NDEBUG
  _Atomic(pthread_t) owner; /* the thread using it, or 0 */
#endif
};

static const char array_key = 'A'; /* registry key of the array marker metatable */
static const char lua_key = 'L';   /* registry key of the sl_lua of a state */
static const char errval_key = 'E'; /* registry key of the table a failed call raised */

/* ------------------------------------------------------------------------------------------ */
/* Allocation with a limit                                                                    */
/* ------------------------------------------------------------------------------------------ */

static size_t pool_class(size_t n) { return (n + POOL_GRAIN - 1) / POOL_GRAIN - 1; }

static void *pool_get(sl_lua *l, size_t n) {
  size_t k = pool_class(n);
  void *b = l->spare[k];
  if (!b) return malloc((k + 1) * POOL_GRAIN);
  l->spare[k] = *(void **)b;
  l->spare_bytes -= (k + 1) * POOL_GRAIN;
  return b;
}

/* Takes back a block of n bytes (its size as Lua asked for it). */
static void pool_put(sl_lua *l, void *b, size_t n) {
  if (!b) return;
  size_t k = pool_class(n), sz = (k + 1) * POOL_GRAIN;
  if (n > POOL_MAX || l->spare_bytes + sz > POOL_KEEP) {
    free(b);
    return;
  }
  *(void **)b = l->spare[k];
  l->spare[k] = b;
  l->spare_bytes += sz;
}

static void pool_drain(sl_lua *l) {
  for (size_t k = 0; k < POOL_CLASSES; k++)
    while (l->spare[k]) {
      void *b = l->spare[k];
      l->spare[k] = *(void **)b;
      free(b);
    }
  l->spare_bytes = 0;
}

/* Blocks up to POOL_MAX bytes are malloc'ed at their class size, so any size of the same class
 * fits them, and one the pool refused is a plain malloc block: free and realloc take both. */
static void *lalloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  sl_lua *l = ud;
  if (!ptr) osize = 0;
  if (nsize == 0) {
    pool_put(l, ptr, osize);
    atomic_store_explicit(&l->used, atomic_load_explicit(&l->used, memory_order_relaxed) - osize, memory_order_relaxed);
    return NULL;
  }
  size_t used = atomic_load_explicit(&l->used, memory_order_relaxed);
  if (nsize > osize && l->limit && l->in_user && used + (nsize - osize) > l->limit) {
    l->mem_hit = true;
    return NULL;
  }
  void *q;
  if (ptr && osize <= POOL_MAX && nsize <= POOL_MAX && pool_class(osize) == pool_class(nsize)) {
    q = ptr;
  } else if (nsize <= POOL_MAX || (ptr && osize <= POOL_MAX)) {
    q = nsize <= POOL_MAX ? pool_get(l, nsize) : malloc(nsize);
    if (!q) return NULL;
    if (ptr) {
      memcpy(q, ptr, osize < nsize ? osize : nsize);
      pool_put(l, ptr, osize);
    }
  } else {
    q = realloc(ptr, nsize);
    if (!q) return NULL;
  }
  atomic_store_explicit(&l->used, used + nsize - osize, memory_order_relaxed);
  return q;
}

static int panic(lua_State *L) {
  fprintf(stderr, "sluice: unprotected Lua error (a bug): %s\n", lua_tostring(L, -1));
  abort();
}

#ifndef NDEBUG
static void enter(sl_lua *l) {
  pthread_t none = 0, self = pthread_self();
  if (!atomic_compare_exchange_strong(&l->owner, &none, self)) assert(pthread_equal(none, self) && "a Lua state used by two threads");
}
static void leave(sl_lua *l) { atomic_store(&l->owner, (pthread_t)0); }
#else
static void enter(sl_lua *l) { (void)l; }
static void leave(sl_lua *l) { (void)l; }
#endif

/* ------------------------------------------------------------------------------------------ */
/* The pipeline's program                                                                     */
/* ------------------------------------------------------------------------------------------ */

sl_lua_prog *sl__lua_prog(sl_pipeline *p) {
  if (!p->lua) {
    sl_lua_prog *g = sl__xcalloc(1, sizeof *g);
    g->p = p;
    pthread_mutex_init(&g->mu, NULL);
    p->lua = g;
  }
  return p->lua;
}

void sl__lua_prog_free(sl_lua_prog *g) {
  if (!g) return;
  for (size_t i = 0; i < g->nchunks; i++) {
    sl__free(g->chunks[i].code);
    sl__free(g->chunks[i].file);
  }
  sl__free(g->chunks);
  sl__free(g->path);
  sl__free(g->cpath);
  if (g->control) sl__lua_close(g->control);
  while (g->counters) {
    counter *c = g->counters;
    g->counters = c->next;
    sl__free(c->name);
    sl__free(c);
  }
  pthread_mutex_destroy(&g->mu);
  sl__free(g);
}

/* "file:line:col: " -> file and line (line 0 when where has no position). */
static void parse_where(const char *where, char *file, size_t fn, int *line) {
  *line = 0;
  snprintf(file, fn, "%s", "pipeline");
  if (!where || !*where) return;
  size_t n = strlen(where);
  while (n && (where[n - 1] == ' ' || where[n - 1] == ':')) n--;
  /* back over ":col" and ":line" */
  size_t colon[2];
  int found = 0;
  for (size_t i = n; i > 0 && found < 2; i--)
    if (where[i - 1] == ':') colon[found++] = i - 1;
  if (found < 2) return;
  *line = atoi(where + colon[1] + 1);
  snprintf(file, fn, "%.*s", (int)colon[1], where);
}

/* Loads Lua source as a chunk whose lines are numbered from `line` of `file`. Pushes the chunk
 * or an error message; returns the lua_load status. */
static int load_at(lua_State *L, const char *code, size_t len, const char *file, int line) {
  sl_buf b;
  sl_buf_init(&b);
  for (int i = 1; i < line; i++) sl_buf_append(&b, "\n", 1);
  sl_buf_append(&b, code, len);
  char name[512];
  if (snprintf(name, sizeof name, "@%s", file && *file ? file : "pipeline") >= (int)sizeof name) name[sizeof name - 1] = 0;
  int rc = luaL_loadbufferx(L, b.data ? b.data : "", b.len, name, "t");
  sl_buf_close(&b);
  return rc;
}

static int traceback_handler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Runs the function on top of L (with no arguments) under pcall with a traceback. */
static int pcall_tb(sl_lua *l, int nres, char *msg, size_t msglen) {
  lua_State *L = l->L;
  int base = lua_gettop(L);
  lua_pushcfunction(L, traceback_handler);
  lua_insert(L, base);
  l->in_user = true;
  int rc = lua_pcall(L, 0, nres, base);
  l->in_user = false;
  lua_remove(L, base);
  if (rc != LUA_OK) {
    snprintf(msg, msglen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error object is not a string");
    lua_pop(L, 1);
  }
  return rc;
}

static int run_chunk(sl_lua *l, const chunk *c, char *msg, size_t msglen) {
  lua_State *L = l->L;
  if (c->blob) { /* globals of a Lua script: name -> value */
    if (sl_lua_unship(L, c->code, c->len, msg, msglen) != 0) return -1;
    lua_pushglobaltable(L);
    lua_pushnil(L);
    while (lua_next(L, -3)) { /* blob, G, key, value */
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
    lua_pop(L, 2);
    return 0;
  }
  if (load_at(L, c->code, c->len, c->file, c->line) != LUA_OK) {
    snprintf(msg, msglen, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  return pcall_tb(l, 0, msg, msglen) == LUA_OK ? 0 : -1;
}

int sl_pipeline_add_lua(sl_pipeline *p, const char *code, size_t len, const char *file, int line,
                        sl_error_t *err) {
  if (p->state != SL_P_BUILDING)
    return sl_error_set(err, SL_ESTATE, NULL, "pipeline '%s' already started: Lua code is added before start", p->name);
  sl_lua_prog *g = sl__lua_prog(p);
  chunk c = {sl__xmalloc(len + 1), len, sl__xstrdup(file && *file ? file : "pipeline"), line > 0 ? line : 1, false};
  memcpy(c.code, code, len);
  c.code[len] = 0;
  g->chunks = sl__xrealloc(g->chunks, (g->nchunks + 1) * sizeof *g->chunks);
  g->chunks[g->nchunks++] = c;
  /* check it now: syntax, and that it runs (it normally only defines functions) */
  if (!g->control) return sl_lua_check_fn(p, NULL, "", "", err); /* the new state runs every chunk */
  sl_lua *ctl = g->control;
  char msg[1024];
  enter(ctl);
  int rc = run_chunk(ctl, &g->chunks[g->nchunks - 1], msg, sizeof msg);
  leave(ctl);
  if (rc) return sl_error_set(err, SL_ECONFIG, NULL, "Lua code of pipeline '%s': %s", p->name, msg);
  return 0;
}

/* A sandboxed state keeps its empty cpath (no C modules). */
static void apply_path(lua_State *L, const sl_lua_prog *g, bool sandbox) {
  if (!g || (!g->path && !g->cpath)) return;
  lua_getglobal(L, "package");
  if (g->path) {
    lua_pushstring(L, g->path);
    lua_setfield(L, -2, "path");
  }
  if (g->cpath && !sandbox) {
    lua_pushstring(L, g->cpath);
    lua_setfield(L, -2, "cpath");
  }
  lua_pop(L, 1);
}

void sl__lua_prog_set_path(sl_pipeline *p, const char *path, const char *cpath) {
  sl_lua_prog *g = sl__lua_prog(p);
  if (path && (!g->path || strcmp(g->path, path) != 0)) {
    sl__free(g->path);
    g->path = sl__xstrdup(path);
  }
  if (cpath && (!g->cpath || strcmp(g->cpath, cpath) != 0)) {
    sl__free(g->cpath);
    g->cpath = sl__xstrdup(cpath);
  }
  if (g->control) {
    enter(g->control);
    apply_path(g->control->L, g, g->control->sandbox);
    leave(g->control);
  }
}

int sl__lua_prog_add_globals(sl_pipeline *p, const char *blob, size_t len, sl_error_t *err) {
  sl_lua_prog *g = sl__lua_prog(p);
  chunk c = {sl__xmalloc(len + 1), len, sl__xstrdup("globals"), 1, true};
  memcpy(c.code, blob, len);
  c.code[len] = 0;
  g->chunks = sl__xrealloc(g->chunks, (g->nchunks + 1) * sizeof *g->chunks);
  g->chunks[g->nchunks++] = c;
  return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* States                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static int64_t setting_int(sl_pipeline *p, const char *key, int64_t def, bool size) {
  const sl_value *v = sl_pipeline_setting(p, key);
  if (!v) return def;
  if (v->type == SL_TINT) return v->u.i;
  if (v->type == SL_TDOUBLE) return (int64_t)v->u.d;
  int64_t x = def;
  if (v->type == SL_TSTR) {
    if (size) sl_parse_size(sl_str_data(v), &x);
    else x = strtoll(sl_str_data(v), NULL, 10);
  }
  return x;
}


/* A new state with the libraries, the sluice module, and the pipeline's code run in it. */
static sl_lua *state_new(sl_pipeline *p, char *msg, size_t msglen) {
  sl_lua *l = sl__xcalloc(1, sizeof *l);
  l->p = p;
  l->limit = (size_t)setting_int(p, "lua_memory_limit", DEFAULT_MEMORY_LIMIT, true);
  l->instr_limit = setting_int(p, "lua_instruction_limit", DEFAULT_INSTRUCTION_LIMIT, false);
  l->keys.ref = LUA_NOREF;
  l->L = lua_newstate(lalloc, l);
  if (!l->L) {
    pool_drain(l);
    sl__free(l);
    snprintf(msg, msglen, "cannot create a Lua state: out of memory");
    return NULL;
  }
  lua_State *L = l->L;
  enter(l);
  *(void **)lua_getextraspace(L) = NULL; /* not a stage call (coroutines copy it) */
  lua_atpanic(L, panic);
  luaL_openlibs(L);
  lua_pushlightuserdata(L, l);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &lua_key);
  lua_newtable(L);
  l->fns = luaL_ref(L, LUA_REGISTRYINDEX);
  sl_lua_open_sluice(L);
  lua_pop(L, 1);
  const sl_value *sb = sl_pipeline_setting(p, "sandbox");
  l->sandbox = sb && sb->type == SL_TBOOL && sb->u.b;
  if (l->sandbox) sl_lua_sandbox(L, sl_pipeline_setting(p, "sandbox_paths"));
  apply_path(L, p->lua, l->sandbox);
  int rc = 0;
  if (p->lua)
    for (size_t i = 0; i < p->lua->nchunks && rc == 0; i++) rc = run_chunk(l, &p->lua->chunks[i], msg, msglen);
  leave(l);
  pthread_mutex_lock(&p->mu);
  l->next = p->luas;
  p->luas = l;
  pthread_mutex_unlock(&p->mu);
  if (rc) {
    sl__lua_close(l);
    return NULL;
  }
  return l;
}

uint64_t sl_pipeline_lua_memory(const sl_pipeline *p) {
  uint64_t sum = 0;
  pthread_mutex_lock((pthread_mutex_t *)&p->mu);
  for (const sl_lua *l = p->luas; l; l = l->next) sum += atomic_load_explicit(&l->used, memory_order_relaxed);
  pthread_mutex_unlock((pthread_mutex_t *)&p->mu);
  return sum;
}

void sl__lua_close(sl_lua *l) {
  if (!l) return;
  pthread_mutex_lock(&l->p->mu);
  for (sl_lua **pp = &l->p->luas; *pp; pp = &(*pp)->next)
    if (*pp == l) {
      *pp = l->next;
      break;
    }
  pthread_mutex_unlock(&l->p->mu);
  enter(l);
  for (sl_lua_call *c = l->calls; c; c = c->all) /* requests of parked calls */
    if (c->cancel) c->cancel(c->pending), c->cancel = NULL;
  lua_close(l->L); /* the calls' coroutines go with it */
  pool_drain(l);
  leave(l);
  while (l->calls) {
    sl_lua_call *c = l->calls;
    l->calls = c->all;
    for (size_t i = 0; i < c->nout; i++) sl_value_free(c->out[i]);
    sl__free(c->out);
    sl__free(c);
  }
  sl__free(l);
}

sl_lua_keys *sl__lua_keys(sl_lua *l) { return &l->keys; }

lua_State *sl_lua_L(sl_lua *l) { return l->L; }

const char *sl_lua_where(const sl_stage *st) { return st->node->where; }

sl_lua *sl_lua_get(sl_stage *st, sl_error_t *err) {
  sl_stage *r = st->runner ? st->runner : st;
  if (r->lua) return r->lua;
  char msg[1024];
  r->lua = state_new(st->p, msg, sizeof msg);
  if (!r->lua) sl_error_set(err, SL_EFAILED, st->node->name, "Lua code of pipeline '%s' failed: %s", st->p->name, msg);
  return r->lua;
}

/* ------------------------------------------------------------------------------------------ */
/* Stage functions                                                                            */
/* ------------------------------------------------------------------------------------------ */

static bool is_name(const char *s) {
  if (!*s) return false;
  for (const char *c = s; *c; c++) {
    bool start = c == s || c[-1] == '.';
    if (*c == '.') {
      if (start || !c[1]) return false;
      continue;
    }
    if (!(*c == '_' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (!start && *c >= '0' && *c <= '9')))
      return false;
  }
  return true;
}

static const char *skip_space(const char *s) {
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
  return s;
}

static bool has_word(const char *s, const char *w) {
  size_t n = strlen(w);
  for (const char *q = strstr(s, w); q; q = strstr(q + 1, w)) {
    bool before = q == s || !(q[-1] == '_' || (q[-1] >= 'a' && q[-1] <= 'z') || (q[-1] >= 'A' && q[-1] <= 'Z') || (q[-1] >= '0' && q[-1] <= '9'));
    char a = q[n];
    bool after = !(a == '_' || (a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z') || (a >= '0' && a <= '9'));
    if (before && after) return true;
  }
  return false;
}

/* Pushes the function that text makes (see sluice.h, "Lua function options"), or returns -1
 * with a message. An expression or a body is over the parameters `params` ("r, e" for the
 * record stages); a bare name that is the first of them is such an expression, not a global. */
static int make_fn(sl_lua *l, const char *text, const char *params, const char *where, char *msg, size_t msglen) {
  lua_State *L = l->L;
  size_t tlen = strlen(text);
  if (tlen >= SL_LUA_BLOB_MAGIC_LEN && memcmp(text, SL_LUA_BLOB_MAGIC, SL_LUA_BLOB_MAGIC_LEN) == 0)
    return sl_lua_unship(L, text, tlen, msg, msglen);
  char file[512];
  int line;
  parse_where(where, file, sizeof file, &line);
  const char *t = skip_space(text);
  size_t p1 = strcspn(params, ", ");
  bool param = strncmp(t, params, p1) == 0 && (t[p1] == '\0' || t[p1] == '.');
  if (is_name(t) && !param) { /* a global function, maybe dotted (mod.fn); r.x is an expression */
    lua_pushglobaltable(L);
    char part[256];
    for (const char *s = t; *s;) {
      const char *dot = strchr(s, '.');
      size_t n = dot ? (size_t)(dot - s) : strlen(s);
      snprintf(part, sizeof part, "%.*s", (int)n, s);
      if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_pushnil(L);
        break;
      }
      lua_getfield(L, -1, part);
      lua_remove(L, -2);
      s = dot ? dot + 1 : s + n;
    }
    if (lua_type(L, -1) == LUA_TFUNCTION) return 0;
    const char *what = lua_typename(L, lua_type(L, -1));
    lua_pop(L, 1);
    snprintf(msg, msglen, "there is no function named '%s' (it is %s): define it in the pipeline's Lua code, or write an expression over %.*s", t, what, (int)p1, params);
    return -1;
  }
  bool fn_expr = strncmp(t, "function", 8) == 0 && !(t[8] == '_' || (t[8] >= 'a' && t[8] <= 'z') || (t[8] >= 'A' && t[8] <= 'Z') || (t[8] >= '0' && t[8] <= '9'));
  sl_buf b;
  sl_buf_init(&b);
  char first[1024] = "";
  int rc = -1;
  for (int form = 0; form < 2 && rc != 0; form++) {
    b.len = 0;
    if (fn_expr) {
      if (form == 1) break;
      sl_buf_printf(&b, "return %s\n", text);
    } else if (form == 0) {
      /* on one line, so a syntax error names the text's line (unless a comment needs the break) */
      sl_buf_printf(&b, strstr(text, "--") ? "return function(%s) return %s\nend" : "return function(%s) return %s end", params, text);
    } else {
      sl_buf_printf(&b, "return function(%s) %s\nend", params, text);
    }
    if (load_at(L, b.data, b.len, file, line) == LUA_OK) {
      rc = 0;
    } else {
      if (form == 0 || has_word(t, "return")) snprintf(first, sizeof first, "%s", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  sl_buf_close(&b);
  if (rc) {
    snprintf(msg, msglen, "Lua syntax error: %s", first);
    return -1;
  }
  if (pcall_tb(l, 1, msg, msglen) != LUA_OK) return -1;
  if (lua_type(L, -1) != LUA_TFUNCTION) {
    snprintf(msg, msglen, "'%s' is not a function (it is %s)", t, lua_typename(L, lua_type(L, -1)));
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

int sl_lua_fn(sl_lua *l, const char *fn, const char *where, const char *stage, int *ref, sl_error_t *err) {
  return sl_lua_fn_of(l, fn, "r, e", where, stage, ref, err);
}

int sl_lua_fn_of(sl_lua *l, const char *fn, const char *params, const char *where, const char *stage, int *ref, sl_error_t *err) {
  char msg[1024];
  enter(l);
  int rc = make_fn(l, fn ? fn : "", params, where, msg, sizeof msg);
  if (rc == 0) *ref = luaL_ref(l->L, LUA_REGISTRYINDEX);
  leave(l);
  if (rc) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': %s", where ? where : "", stage, msg);
  return 0;
}

int sl_lua_check_fn(sl_pipeline *p, const char *fn, const char *where, const char *stage, sl_error_t *err) {
  return sl_lua_check_fn_of(p, fn, "r, e", where, stage, err);
}

int sl_lua_check_fn_of(sl_pipeline *p, const char *fn, const char *params, const char *where, const char *stage, sl_error_t *err) {
  sl_lua_prog *g = sl__lua_prog(p);
  if (!g->control) {
    char msg[1024];
    g->control = state_new(p, msg, sizeof msg);
    if (!g->control) return sl_error_set(err, SL_ECONFIG, NULL, "Lua code of pipeline '%s': %s", p->name, msg);
  }
  if (!fn) return 0;
  int ref = LUA_NOREF;
  int rc = sl_lua_fn_of(g->control, fn, params, where, stage, &ref, err);
  if (rc == 0) luaL_unref(g->control->L, LUA_REGISTRYINDEX, ref);
  return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Calls                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static sl_lua_call **extra(lua_State *co) { return (sl_lua_call **)lua_getextraspace(co); }

sl_lua_call *sl_lua_current(lua_State *L) { return *extra(L); }

static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  sl_lua_call *c = *extra(L);
  if (!c) return;
  c->budget -= HOOK_STEP;
  if (c->budget <= 0)
    luaL_error(L, "instruction limit reached (%I instructions): the function runs too long or loops forever; raise lua_instruction_limit if it is legitimate",
               (lua_Integer)c->lua->instr_limit);
}

sl_lua_call *sl_lua_call_new(sl_lua *l, sl_stage *st, int ref) {
  sl_lua_call *c = l->pool;
  if (c) {
    l->pool = c->next;
  } else {
    c = sl__xcalloc(1, sizeof *c);
    c->lua = l;
    c->co = lua_newthread(l->L);
    c->ref = luaL_ref(l->L, LUA_REGISTRYINDEX);
    *extra(c->co) = c;
    c->all = l->calls;
    l->calls = c;
  }
  c->next = NULL;
  c->st = st;
  c->parked = false;
  c->gen++;
  c->timer = -1;
  c->cancel = NULL;
  c->pending = NULL;
  c->nres = 0;
  c->ud = NULL;
  c->tag = 0;
  c->budget = l->instr_limit;
  if (l->instr_limit > 0) lua_sethook(c->co, count_hook, LUA_MASKCOUNT, HOOK_STEP);
  else lua_sethook(c->co, NULL, 0, 0);
  lua_rawgeti(c->co, LUA_REGISTRYINDEX, ref);
  return c;
}

static void drop_out(sl_lua_call *c) {
  for (size_t i = 0; i < c->nout; i++) sl_value_free(c->out[i]);
  c->nout = 0;
}

void sl_lua_call_free(sl_lua_call *c) {
  if (!c) return;
  sl_lua *l = c->lua;
  drop_out(c);
  lua_settop(c->co, 0);
  c->st = NULL;
  c->next = l->pool;
  l->pool = c;
}

/* An errored coroutine cannot run again until it is reset; a parked one being abandoned too. */
static void reset(sl_lua_call *c) {
  if (c->cancel) c->cancel(c->pending);
  c->cancel = NULL;
  c->pending = NULL;
  lua_resetthread(c->co);
  *extra(c->co) = c;
}

int sl_lua_result_hint(sl_lua_call *c, const sl_value *hint, sl_value *out, char *msg, size_t msglen) {
  *out = sl_nil();
  if (c->nres < 1 || lua_isnil(c->co, 1)) return 0;
  return sl_lua_to_value_hint(c->co, 1, hint, out, msg, msglen);
}

int sl_lua_result(sl_lua_call *c, sl_value *out, char *msg, size_t msglen) { return sl_lua_result_hint(c, NULL, out, msg, msglen); }

int sl_lua_apply(sl_lua *l, sl_stage *st, int ref, const sl_value *rec, sl_value *out, char **msg) {
  *out = sl_nil();
  sl_lua_call *c = sl_lua_call_new(l, st, ref);
  sl_lua_push_rec(l, c->co, rec);
  int rc = sl_lua_resume(c, 1, msg);
  if (rc == SL_LUA_ERROR) return -1;
  if (rc == SL_LUA_PARKED) {
    sl_lua_call_abandon(c);
    *msg = sl__xstrdup("the function must not wait (sluice.sleep)");
    return -1;
  }
  char buf[256];
  rc = sl_lua_result_hint(c, rec, out, buf, sizeof buf);
  sl_lua_call_free(c);
  if (rc) *msg = sl__xstrdup(buf);
  return rc ? -1 : 0;
}

void sl_lua_call_abandon(sl_lua_call *c) {
  if (c->timer >= 0 && c->st) sl_stage_timer_cancel(c->st, c->timer);
  c->timer = -1;
  reset(c);
  sl_lua_call_free(c);
}

int sl_lua_resume(sl_lua_call *c, int nargs, char **msg) {
  sl_lua *l = c->lua;
  enter(l);
  c->parked = false;
  c->timer = -1;
  l->in_user = true;
  l->mem_hit = false;
  int nres = 0;
  int rc = lua_resume(c->co, l->L, nargs, &nres);
  l->in_user = false;
  int out;
  if (rc == LUA_OK) {
    c->nres = nres;
    out = SL_LUA_DONE;
  } else if (rc == LUA_YIELD) {
    lua_pop(c->co, nres); /* sl_lua_park yields nothing */
    c->parked = true;
    out = SL_LUA_PARKED;
  } else {
    bool table = lua_type(c->co, -1) == LUA_TTABLE;
    if (table) lua_pushvalue(c->co, -1);
    else lua_pushnil(c->co);
    lua_rawsetp(c->co, LUA_REGISTRYINDEX, &errval_key); /* for retry_on (sl_lua_push_error) */
    const char *m = lua_tostring(c->co, -1);
    if (!m && table && luaL_getmetafield(c->co, -1, "__tostring") != LUA_TNIL) {
      lua_pop(c->co, 1);
      m = luaL_tolstring(c->co, -1, NULL); /* an error object that says what it is */
    }
    if (rc == LUA_ERRMEM || l->mem_hit) {
      char buf[256];
      snprintf(buf, sizeof buf, "Lua memory limit reached (%zu bytes): the function holds too much memory; raise lua_memory_limit if it is legitimate", l->limit);
      *msg = sl__xstrdup(buf);
    } else {
      luaL_traceback(l->L, c->co, m ? m : "error object is not a string", 0);
      *msg = sl__xstrdup(lua_tostring(l->L, -1));
      lua_pop(l->L, 1);
    }
    reset(c);
    sl_lua_call_free(c);
    if (rc == LUA_ERRMEM || l->mem_hit) lua_gc(l->L, LUA_GCCOLLECT);
    out = SL_LUA_ERROR;
  }
  leave(l);
  return out;
}

int sl_lua_park_k(lua_State *L, lua_KContext ctx, lua_KFunction k) {
  sl_lua_call *c = *extra(L);
  if (!c || !lua_isyieldable(L)) return luaL_error(L, "this function waits, and can only be called inside a stage function");
  return lua_yieldk(L, 0, ctx, k);
}

void sl_lua_push_error(sl_lua *l, lua_State *to, const char *msg) {
  lua_rawgetp(to, LUA_REGISTRYINDEX, &errval_key);
  if (lua_isnil(to, -1)) {
    lua_pop(to, 1);
    lua_pushstring(to, msg);
  }
  lua_pushnil(to);
  lua_rawsetp(to, LUA_REGISTRYINDEX, &errval_key);
  (void)l;
}

int sl_lua_park(lua_State *L) {
  sl_lua_call *c = *extra(L);
  if (!c || !lua_isyieldable(L)) return luaL_error(L, "this function waits, and can only be called inside a stage function");
  return lua_yield(L, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* The sluice module of every state                                                           */
/* ------------------------------------------------------------------------------------------ */

static sl_lua *state_of(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &lua_key);
  sl_lua *l = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return l;
}

int64_t sl__lua_duration(lua_State *L, int i, const char *what) {
  int t = lua_type(L, i);
  if (t == LUA_TNUMBER) {
    double s = lua_tonumber(L, i);
    if (s >= 0 && s < 9e9) return (int64_t)(s * 1e9);
  } else if (t == LUA_TSTRING) {
    int64_t ns;
    if (sl_parse_duration(lua_tostring(L, i), &ns) == 0) return ns;
  }
  return luaL_error(L, "%s must be a duration: a number of seconds >= 0 or a string like 250ms, 2s, 1m", what);
}

static int64_t arg_duration(lua_State *L, int i) {
  if (lua_type(L, i) == LUA_TNUMBER) {
    double s = lua_tonumber(L, i);
    if (!(s >= 0 && s < 9e9)) luaL_argerror(L, i, "a duration must be a number of seconds >= 0");
    return (int64_t)(s * 1e9);
  }
  const char *t = luaL_checkstring(L, i);
  int64_t ns;
  if (sl_parse_duration(t, &ns) != 0) luaL_argerror(L, i, "a duration like 250ms, 2s, 1m or 1h");
  return ns;
}

static int l_sleep(lua_State *L) {
  int64_t ns = arg_duration(L, 1);
  sl_lua_call *c = sl_lua_current(L);
  if (!c || !c->st) return luaL_error(L, "sluice.sleep can only be called inside a stage function");
  c->timer = sl_stage_timer(c->st, sl_stage_now(c->st) + ns, sl_lua_token(c));
  if (c->timer < 0) return luaL_error(L, "sluice.sleep: no timer");
  return sl_lua_park(L);
}

static int l_now(lua_State *L) {
  sl_lua_call *c = sl_lua_current(L);
  if (c && c->st) {
    lua_pushnumber(L, sl_stage_wallclock(c->st));
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
  }
  return 1;
}

static int l_log(lua_State *L) {
  static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
  int level = luaL_checkoption(L, 1, NULL, levels);
  int top = lua_gettop(L); /* before the buffer's own slot */
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 2; i <= top; i++) {
    if (i > 2) luaL_addchar(&b, ' ');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  sl_lua_call *c = sl_lua_current(L);
  sl_lua *l = state_of(L);
  if (c && c->st) sl_stage_log(c->st, level, "%s", lua_tostring(L, -1));
  else if (l) sl__elog(l->p->e, level, NULL, "%s", lua_tostring(L, -1));
  return 0;
}

static int l_emit(lua_State *L) {
  sl_lua_call *c = sl_lua_current(L);
  if (!c) return luaL_error(L, "sluice.emit can only be called inside a stage function (flat_map)");
  luaL_checkany(L, 1);
  sl_value v;
  char msg[256];
  if (sl_lua_to_value(L, 1, &v, msg, sizeof msg) != 0) return luaL_error(L, "sluice.emit: %s", msg);
  if (c->nout == c->capout) {
    c->capout = c->capout ? c->capout * 2 : 8;
    c->out = sl__xrealloc(c->out, c->capout * sizeof *c->out);
  }
  c->out[c->nout++] = v;
  return 0;
}

static int l_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) lua_newtable(L);
  else luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  sl_lua_mark_array(L, 1);
  return 1;
}

static counter *counter_get(sl_lua_prog *g, const char *name) {
  pthread_mutex_lock(&g->mu);
  counter *c = g->counters;
  while (c && strcmp(c->name, name) != 0) c = c->next;
  if (!c) {
    c = sl__xcalloc(1, sizeof *c);
    c->name = sl__xstrdup(name);
    atomic_init(&c->value, 0);
    c->next = g->counters;
    g->counters = c;
  }
  pthread_mutex_unlock(&g->mu);
  return c;
}

static counter *check_counter(lua_State *L) { return *(counter **)luaL_checkudata(L, 1, "sluice.counter"); }

static int l_counter_inc(lua_State *L) {
  counter *c = check_counter(L);
  lua_Integer n = luaL_optinteger(L, 2, 1);
  lua_pushinteger(L, (lua_Integer)atomic_fetch_add(&c->value, (long long)n) + n);
  return 1;
}

static int l_counter_get(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)atomic_load(&check_counter(L)->value));
  return 1;
}

static int l_counter(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  sl_lua *l = state_of(L);
  if (!l) return luaL_error(L, "sluice.counter: no pipeline");
  counter *c = counter_get(sl__lua_prog(l->p), name);
  counter **u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = c;
  luaL_setmetatable(L, "sluice.counter");
  return 1;
}

void sl_lua_open_sluice(lua_State *L) {
  if (luaL_newmetatable(L, "sluice.counter")) {
    static const luaL_Reg m[] = {{"inc", l_counter_inc}, {"get", l_counter_get}, {NULL, NULL}};
    luaL_newlib(L, m);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_newtable(L); /* the array marker metatable */
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "__name");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &array_key);
  static const luaL_Reg fns[] = {{"sleep", l_sleep}, {"now", l_now}, {"log", l_log}, {"emit", l_emit},
                                 {"array", l_array}, {"counter", l_counter}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_pushlightuserdata(L, SL_LUA_NULL);
  lua_setfield(L, -2, "null");
  sl__lua_open_http(L);
  lua_pushvalue(L, -1);
  lua_setglobal(L, "sluice");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "sluice");
  lua_pop(L, 1);
}

void sl_lua_mark_array(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
  lua_setmetatable(L, idx);
}

bool sl__lua_is_array_mt(lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx)) return false;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
  bool yes = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return yes;
}

int sl_lua_predicate(const char *text, const char *file, int line, const sl_value *records, bool *result, char *msg,
                     size_t msglen) {
  sl_lua l = {.limit = DEFAULT_MEMORY_LIMIT, .instr_limit = DEFAULT_INSTRUCTION_LIMIT};
  l.L = lua_newstate(lalloc, &l);
  if (!l.L) {
    snprintf(msg, msglen, "out of memory");
    return -1;
  }
  lua_State *L = l.L;
  *(void **)lua_getextraspace(L) = NULL;
  lua_atpanic(L, panic);
  luaL_openlibs(L);
  sl_lua_open_sluice(L);
  lua_pop(L, 1);
  const char *t = skip_space(text);
  bool fn_expr = strncmp(t, "function", 8) == 0;
  sl_buf b;
  sl_buf_init(&b);
  int rc = -1;
  for (int form = fn_expr ? 2 : 0; form < 3 && rc != 0; form++) {
    b.len = 0;
    if (form == 0) sl_buf_printf(&b, "return function(records) return %s\nend", text);
    else if (form == 1) sl_buf_printf(&b, "return function(records) %s\nend", text);
    else sl_buf_printf(&b, "return %s\n", text);
    if (load_at(L, b.data, b.len, file, line) == LUA_OK) rc = 0;
    else if (form == (has_word(t, "return") ? 1 : 0) || fn_expr) snprintf(msg, msglen, "Lua syntax error: %s", lua_tostring(L, -1)), lua_pop(L, 1);
    else lua_pop(L, 1);
  }
  sl_buf_close(&b);
  if (rc == 0 && pcall_tb(&l, 1, msg, msglen) != LUA_OK) rc = -1;
  if (rc == 0 && lua_type(L, -1) != LUA_TFUNCTION) {
    snprintf(msg, msglen, "it is not a predicate (got %s)", luaL_typename(L, -1));
    rc = -1;
  }
  if (rc == 0) {
    sl_lua_push(L, records);
    lua_pushcfunction(L, traceback_handler);
    lua_insert(L, -3);
    l.in_user = true;
    if (lua_pcall(L, 1, 1, -3) != LUA_OK) {
      snprintf(msg, msglen, "%s", lua_tostring(L, -1));
      rc = -1;
    } else {
      *result = lua_toboolean(L, -1);
    }
    l.in_user = false;
  }
  lua_close(L);
  pool_drain(&l);
  return rc;
}
