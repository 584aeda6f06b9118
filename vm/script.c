/*
 * script.c — Lua pipeline scripts (sl_script_run_file) and the C primitives under the Lua front
 * end (scripts/sluice.lua).
 *
 * The script runs in a state of its own on the caller's thread: the control side. Each
 * sluice.pipeline{} makes an engine and a pipeline; stage methods add stages through
 * sl_pipeline_add, so the Lua and YAML front ends build the same graph. Functions given to
 * stages are shipped with their upvalues (lua_ship.c); when p:run() starts the pipeline, the
 * script's globals are shipped too, so a stage function that calls a global helper finds it in
 * every worker state.
 *
 * The same state serves tools that run Lua step by step (sl_script_new: the REPL). A pipeline
 * object keeps the steps that built it (sluice.lua), so one that has run is built again from them
 * when it is used again; sluice.load(path) makes one from a YAML file.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "lua.h"
#include "pipeline.h"

enum { CLS_NONE = 0, CLS_CONFIG, CLS_FAILED };

typedef struct script {
  sl_script_options opts; /* a copy of the host's options (args are not kept) */
  const sl_script_options *o; /* &opts */
  int cls;         /* what kind of error the script ended with */
} script;

typedef struct handle {
  sl_engine *e;
  sl_pipeline *p;
  bool ran;
} handle;

static const char script_key = 'S';

static script *script_of(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &script_key);
  script *s = lua_touserdata(L, -1);
  lua_pop(L, 1); /* the registry keeps it alive */
  return s;
}

/* Raises a configuration error (the script exits 2). */
static int config_error(lua_State *L, const char *msg) {
  script_of(L)->cls = CLS_CONFIG;
  lua_pushstring(L, msg);
  return lua_error(L);
}

static handle *check_handle(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, "sluice.pipeline");
  if (!h->p) luaL_error(L, "this pipeline has already run: build a new one to run again");
  return h;
}

static int h_gc(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, "sluice.pipeline");
  sl_pipeline_free(h->p);
  sl_engine_free(h->e);
  h->p = NULL;
  h->e = NULL;
  return 0;
}

/* _sl.pipeline(name, workers, where) */
static int l_pipeline(lua_State *L) {
  script *s = script_of(L);
  const char *name = luaL_optstring(L, 1, "pipeline");
  lua_Integer workers = luaL_optinteger(L, 2, 0);
  const char *where = luaL_optstring(L, 3, "");
  if (workers < 0 || workers > 256) {
    char msg[256];
    snprintf(msg, sizeof msg, "%sworkers must be from 1 to 256", where);
    return config_error(L, msg);
  }
  handle *h = lua_newuserdatauv(L, sizeof *h, 0);
  *h = (handle){0};
  luaL_setmetatable(L, "sluice.pipeline");
  sl_engine_config cfg = s->o->engine;
  if (cfg.workers <= 0) cfg.workers = (int)workers;
  sl_error_t err;
  sl_error_init(&err);
  if (sl_engine_new(&cfg, &h->e, &err) != 0 || sl_pipeline_new(h->e, name, &h->p, &err) != 0) {
    s->cls = CLS_FAILED;
    return luaL_error(L, "%s", err.msg);
  }
  return 1;
}

/* Tells the pipeline where the script finds its modules, so worker states require them too. */
static void share_path(lua_State *L, sl_pipeline *p) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  const char *path = lua_tostring(L, -1);
  lua_getfield(L, -2, "cpath");
  const char *cpath = lua_tostring(L, -1);
  sl__lua_prog_set_path(p, path, cpath);
  lua_pop(L, 3);
}

/* _sl.add(handle, kind, opts, where) */
static int l_add(lua_State *L) {
  handle *h = check_handle(L);
  const char *kind = luaL_checkstring(L, 2);
  const char *where = luaL_optstring(L, 4, "");
  sl_value opts;
  char msg[512];
  if (sl_lua_to_value(L, 3, &opts, msg, sizeof msg) != 0) {
    char m2[800];
    snprintf(m2, sizeof m2, "%sstage %s: bad options: %s", where, kind, msg);
    return config_error(L, m2);
  }
  if (opts.type != SL_TMAP) {
    sl_value_free(opts);
    opts = sl_map(1);
  }
  sl_map_setc(&opts, "_where", sl_cstr(where));
  share_path(L, h->p);
  sl_error_t err;
  sl_error_init(&err);
  if (sl_pipeline_add(h->p, kind, opts, &err) != 0) return config_error(L, err.msg);
  return 0;
}

/* _sl.set(handle, key, value, where) */
static int l_set(lua_State *L) {
  handle *h = check_handle(L);
  const char *key = luaL_checkstring(L, 2);
  const char *where = luaL_optstring(L, 4, "");
  sl_value v;
  char msg[512];
  if (sl_lua_to_value(L, 3, &v, msg, sizeof msg) != 0) {
    char m2[800];
    snprintf(m2, sizeof m2, "%spipeline option %s: %s", where, key, msg);
    return config_error(L, m2);
  }
  sl_error_t err;
  sl_error_init(&err);
  if (sl_pipeline_set(h->p, key, v, where, &err) != 0) return config_error(L, err.msg);
  return 0;
}

/* _sl.ship(fn, where) -> blob */
static int l_ship(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  const char *where = luaL_optstring(L, 2, "");
  sl_value blob;
  sl_error_t err;
  sl_error_init(&err);
  if (sl_lua_ship_fn(L, 1, &blob, &err) != 0) {
    char msg[1200];
    snprintf(msg, sizeof msg, "%sa stage function cannot run on the workers: %s", where, err.msg);
    return config_error(L, msg);
  }
  lua_pushlstring(L, sl_str_data(&blob), sl_str_len(&blob));
  sl_value_free(blob);
  return 1;
}

/* _sl.primary(kind) -> the option a single argument sets (or nil), and whether the kind exists */
static int l_primary(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  for (size_t i = 0; i < sl__builtin_kind_count; i++) {
    const sl_stage_kind *k = sl__builtin_kinds[i];
    if (strcmp(k->name, kind) != 0) continue;
    for (const sl_option *o = k->options; o && o->type != SL_OPT_END; o++)
      if (o->flags & SL_OPT_PRIMARY) {
        lua_pushstring(L, o->key);
        lua_pushboolean(L, 1);
        return 2;
      }
    lua_pushnil(L);
    lua_pushboolean(L, 1);
    return 2;
  }
  lua_pushnil(L);
  lua_pushboolean(L, 0);
  return 2;
}

/* _sl.load(path, sets, where) -> handle: a pipeline built from a YAML file (sluice.load). sets is
 * nil or a list of "path=value" overrides, as --set takes them. */
static int l_load(lua_State *L) {
  script *s = script_of(L);
  const char *path = luaL_checkstring(L, 1);
  const char *where = luaL_optstring(L, 3, "");
  size_t nsets = lua_istable(L, 2) ? lua_rawlen(L, 2) : 0;
  const char **sets = lua_newuserdatauv(L, (nsets ? nsets : 1) * sizeof *sets, 0); /* freed by the GC */
  for (size_t i = 0; i < nsets; i++) { /* the strings stay in the table, so the pointers hold */
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    sets[i] = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1);
    if (!sets[i]) return config_error(L, lua_pushfstring(L, "%ssluice.load: overrides are strings \"path=value\"", where));
  }
  handle *h = lua_newuserdatauv(L, sizeof *h, 0);
  *h = (handle){0};
  luaL_setmetatable(L, "sluice.pipeline");
  sl_load_options lo = {sets, nsets};
  sl_config *c = NULL;
  sl_error_t err;
  sl_error_init(&err);
  int rc = sl_config_load_file(path, &lo, &c, &err);
  sl_engine_config cfg = s->o->engine;
  if (rc == 0 && cfg.workers <= 0) cfg.workers = sl_config_workers(c);
  if (rc == 0) rc = sl_engine_new(&cfg, &h->e, &err);
  if (rc == 0) rc = sl_config_build(c, h->e, &h->p, &err);
  sl_config_free(c);
  if (rc == SL_ECONFIG || rc == SL_EIO) return config_error(L, err.msg);
  if (rc) {
    s->cls = CLS_FAILED;
    return luaL_error(L, "%s", err.msg);
  }
  return 1;
}

/* _sl.spent(handle) -> whether it has run (its pipeline is gone) */
static int l_spent(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, "sluice.pipeline");
  lua_pushboolean(L, h->p == NULL);
  return 1;
}

/* _sl.describe(handle) -> "pipeline 'name': a (kind) -> b (kind) ..." for tostring(p) */
static int l_describe(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, "sluice.pipeline");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (!h->p) {
    luaL_addstring(&b, "pipeline (it has run)");
    luaL_pushresult(&b);
    return 1;
  }
  size_t n = sl_pipeline_stage_count(h->p);
  lua_pushfstring(L, "pipeline '%s' (%d stage%s)", sl_pipeline_name(h->p), (int)n, n == 1 ? "" : "s");
  luaL_addvalue(&b);
  for (size_t i = 0; i < n; i++) {
    sl_stage_info si;
    if (sl_pipeline_stage_info(h->p, i, &si) != 0) continue;
    bool follows = si.ninputs == 1 && i > 0;
    if (follows) {
      sl_stage_info prev;
      follows = sl_pipeline_stage_info(h->p, i - 1, &prev) == 0 && strcmp(prev.name, si.inputs[0]) == 0;
    }
    luaL_addstring(&b, i == 0 ? ": " : follows ? " -> " : ", ");
    lua_pushfstring(L, "%s", si.name);
    luaL_addvalue(&b);
    if (strncmp(si.name, si.kind, strlen(si.kind)) != 0 || si.name[strlen(si.kind)] != '#') {
      lua_pushfstring(L, " (%s)", si.kind);
      luaL_addvalue(&b);
    }
  }
  luaL_pushresult(&b);
  return 1;
}

/* _sl.config_error(msg) */
static int l_config_error(lua_State *L) { return config_error(L, luaL_checkstring(L, 1)); }

/* Ships the script's globals to the pipeline's worker states. */
static void ship_globals(lua_State *L, handle *h) {
  sl_value blob;
  char *skipped = NULL;
  if (sl_lua_ship_globals(L, &blob, &skipped) == 0) {
    sl__lua_prog_add_globals(h->p, sl_str_data(&blob), sl_str_len(&blob), NULL);
    sl_value_free(blob);
  }
  if (skipped) sl__elog(h->e, SL_LOG_DEBUG, NULL, "globals not copied to the workers (their values cannot cross): %s", skipped);
  sl__free(skipped);
  share_path(L, h->p);
}

/* _sl.check(handle, where) */
static int l_check(lua_State *L) {
  handle *h = check_handle(L);
  sl_error_t err;
  sl_error_init(&err);
  if (sl_pipeline_check(h->p, &err) != 0) return config_error(L, err.msg);
  return 0;
}

/* _sl.run(handle, where) -> stats */
static int l_run(lua_State *L) {
  script *s = script_of(L);
  handle *h = check_handle(L);
  ship_globals(L, h);
  sl_error_t err;
  sl_error_init(&err);
  int rc = s->o->run ? s->o->run(s->o->run_ud, h->p, &err) : sl_pipeline_run(h->p, &err);
  sl_buf b;
  sl_buf_init(&b);
  sl_value stats = sl_nil();
  if (sl_pipeline_stats_json(h->p, &b) == 0) sl_value_from_json(b.data, b.len, &stats, NULL);
  sl_buf_close(&b);
  char msg[sizeof err.msg];
  snprintf(msg, sizeof msg, "%s", err.msg[0] ? err.msg : sl_strerror(rc));
  sl_pipeline_free(h->p);
  sl_engine_free(h->e);
  h->p = NULL;
  h->e = NULL;
  if (rc != 0) {
    sl_value_free(stats);
    if (rc == SL_ECONFIG) return config_error(L, msg);
    s->cls = CLS_FAILED;
    lua_pushstring(L, msg);
    return lua_error(L);
  }
  sl_lua_push(L, &stats);
  sl_value_free(stats);
  return 1;
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

void sl_script_options_init(sl_script_options *o) {
  memset(o, 0, sizeof *o);
  sl_engine_config_init(&o->engine);
}

/* A state for scripts: the libraries, the sluice module with the front end loaded, and a copy
 * of the host's options (in the registry, freed with the state). */
static lua_State *script_state(const sl_script_options *o, sl_error_t *err) {
  lua_State *L = luaL_newstate();
  if (!L) {
    sl_error_set(err, SL_ENOMEM, NULL, "cannot create a Lua state");
    return NULL;
  }
  *(void **)lua_getextraspace(L) = NULL; /* not a stage call */
  luaL_openlibs(L);
  script *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->opts = *o;
  s->opts.args = NULL;
  s->opts.nargs = 0;
  s->o = &s->opts;
  lua_rawsetp(L, LUA_REGISTRYINDEX, &script_key);
  luaL_newmetatable(L, "sluice.pipeline");
  lua_pushcfunction(L, h_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  sl_lua_open_sluice(L); /* pushes the module */
  static const luaL_Reg prims[] = {{"pipeline", l_pipeline}, {"add", l_add}, {"set", l_set}, {"ship", l_ship},
                                   {"primary", l_primary}, {"config_error", l_config_error}, {"run", l_run}, {"check", l_check},
                                   {"load", l_load}, {"spent", l_spent}, {"describe", l_describe}, {NULL, NULL}};
  luaL_newlib(L, prims);
  lua_setfield(L, -2, "_sl");
  if (luaL_loadbufferx(L, sl__script_sluice, sl__script_sluice_len, "=sluice.lua", "t") != LUA_OK) {
    sl_error_set(err, SL_EFAILED, NULL, "the embedded sluice.lua does not load (a bug): %s", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    sl_error_set(err, SL_EFAILED, NULL, "the embedded sluice.lua failed (a bug): %s", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  return L;
}

int sl_script_run_file(const char *path, const sl_script_options *o, sl_error_t *err) {
  sl_script_options defaults;
  if (!o) {
    sl_script_options_init(&defaults);
    o = &defaults;
  }
  lua_State *L = script_state(o, err);
  if (!L) return err ? err->code : SL_EFAILED;
  script *s = script_of(L);
  lua_createtable(L, (int)o->nargs, 1); /* arg */
  lua_pushstring(L, path);
  lua_rawseti(L, -2, 0);
  for (size_t i = 0; i < o->nargs; i++) {
    lua_pushstring(L, o->args[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setglobal(L, "arg");
  int rc = 0;
  lua_pushcfunction(L, traceback);
  if (luaL_loadfilex(L, path, "t") != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    bool missing = m && strstr(m, "cannot open");
    rc = sl_error_set(err, missing ? SL_EIO : SL_ECONFIG, NULL, "%s", m ? m : "cannot load the script");
  } else if (lua_pcall(L, 0, 0, -2) != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    int code = s->cls == CLS_CONFIG ? SL_ECONFIG : SL_EFAILED;
    /* configuration errors already say where; a script error keeps its traceback */
    if (s->cls != CLS_NONE && m) {
      const char *tb = strstr(m, "\nstack traceback:");
      char msg[sizeof err->msg];
      snprintf(msg, sizeof msg, "%.*s", tb ? (int)(tb - m) : (int)strlen(m), m);
      rc = sl_error_set(err, code, NULL, "%s", msg);
    } else {
      rc = sl_error_set(err, code, NULL, "%s", m ? m : "the script failed");
    }
  }
  lua_close(L); /* pipelines not run are freed by their __gc */
  return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* States for tools (the REPL)                                                                 */
/* ------------------------------------------------------------------------------------------ */

int sl_script_new(const sl_script_options *o, lua_State **out, sl_error_t *err) {
  sl_script_options defaults;
  if (!o) {
    sl_script_options_init(&defaults);
    o = &defaults;
  }
  *out = script_state(o, err);
  return *out ? 0 : err && err->code ? err->code : SL_EFAILED;
}

void sl_script_close(lua_State *L) {
  if (L) lua_close(L);
}

/* The pipeline object's metatable (sluice.lua's Pipeline) is the one whose __name is
 * "sluice pipeline". */
bool sl_script_is_pipeline(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return false;
  lua_getfield(L, -1, "__name");
  bool yes = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "sluice pipeline") == 0;
  lua_pop(L, 2);
  return yes;
}

int sl_script_pipeline(lua_State *L, int idx, sl_pipeline **out, sl_error_t *err) {
  *out = NULL;
  if (!sl_script_is_pipeline(L, idx)) return sl_error_set(err, SL_ENOTFOUND, NULL, "not a pipeline (sluice.pipeline{} or sluice.load makes one)");
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, traceback);
  lua_getfield(L, idx, "_live"); /* builds it again if it has run */
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, -3) != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    const char *tb = m ? strstr(m, "\nstack traceback:") : NULL;
    sl_error_set(err, SL_ECONFIG, NULL, "%.*s", tb ? (int)(tb - m) : (int)strlen(m ? m : ""), m ? m : "");
    lua_pop(L, 2);
    return SL_ECONFIG;
  }
  handle *h = luaL_testudata(L, -1, "sluice.pipeline");
  *out = h ? h->p : NULL;
  lua_pop(L, 2);
  return *out ? 0 : sl_error_set(err, SL_ENOTFOUND, NULL, "the pipeline object has no pipeline");
}

bool sl_script_is_array(lua_State *L, int idx) { return lua_type(L, idx) == LUA_TTABLE && sl__lua_is_array_mt(L, idx); }
