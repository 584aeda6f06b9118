/*
 * lua_http.c — `sluice.http` for Lua stage functions: request{...}, get(url, opts),
 * post(url, body, opts) (docs/http.md). The request runs on the engine's HTTP client
 * (vm/httpc.h); the calling coroutine parks meanwhile (sl_lua_park_k) and holds no worker, so a
 * buffer_unordered stage keeps `concurrency` requests in flight from one state. When the call is
 * abandoned (its timeout, the pipeline stopping) the request is cancelled through c->cancel.
 *
 * A failed request raises an error value: a table {kind, message, method, url, status} whose
 * __tostring is the message, so that dead letters read well and retry_on(r, e) can look at
 * e.kind and e.status.
 */
#include <lauxlib.h>
#include <string.h>

#include "alloc.h"
#include "httpc.h"
#include "lua.h"
#include "pipeline.h"

#define MAX_HEADERS 64

static const char errmt_key = 'H'; /* registry key of the error values' metatable */

static int err_tostring(lua_State *L) {
  lua_getfield(L, 1, "message");
  return 1;
}

/* Raises the error value {kind, message, method, url, status}. */
static int raise_error(lua_State *L, const char *kind, const char *method, const char *url, long status, const char *why) {
  lua_createtable(L, 0, 5);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, url);
  lua_setfield(L, -2, "url");
  if (status > 0) {
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
  }
  lua_pushfstring(L, "sluice.http: %s %s: %s", method, url, why);
  lua_setfield(L, -2, "message");
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &errmt_key) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, err_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "sluice.http.error");
    lua_setfield(L, -2, "__name");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &errmt_key);
  }
  lua_setmetatable(L, -2);
  return lua_error(L);
}

/* Drops the request of a call that will not be resumed (c->cancel). */
static void cancel_req(void *pending) { sl_httpc_req_free(pending); }

/* Frees the request of call c (done with). */
static void drop_req(sl_lua_call *c) {
  sl_httpc_req *r = c->pending;
  c->cancel = NULL;
  c->pending = NULL;
  sl_httpc_req_free(r);
}

/* Raises the error value of request r after freeing it (the error may be caught by pcall, and
 * then nothing else would free it): its strings are copied onto the stack first. */
static int fail_req(lua_State *L, sl_lua_call *c, const char *kind, long code, const char *why) {
  sl_httpc_req *r = c->pending;
  const char *method = lua_pushstring(L, sl_httpc_method(r));
  const char *url = lua_pushstring(L, sl_httpc_url(r));
  why = lua_pushstring(L, why);
  drop_req(c);
  return raise_error(L, kind, method, url, code, why);
}

/* The call was resumed: the request is done. Returns {status, headers, body} or raises. */
static int finish(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  sl_lua_call *c = sl_lua_current(L);
  sl_httpc_req *r = c->pending;
  bool raise_status = ctx & 1, want_json = ctx & 2;
  long code;
  const char *why;
  int kind = sl_httpc_result(r, &code, &why);
  /* the request stays in c->pending until the end: an error raised meanwhile frees it (reset) */
  if (kind != SL_HTTPC_OK) {
    lua_pushfstring(L, "%s error: %s", sl_httpc_kind_name(kind), why);
    return fail_req(L, c, sl_httpc_kind_name(kind), 0, lua_tostring(L, -1));
  }
  if (raise_status && code >= 400) {
    lua_pushfstring(L, "status %d", (int)code);
    return fail_req(L, c, "status", code, lua_tostring(L, -1));
  }
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "status");
  lua_createtable(L, 0, 4);
  const char *name, *value;
  for (size_t pos = 0; sl_httpc_header(r, &pos, &name, &value);) {
    lua_pushstring(L, value);
    lua_setfield(L, -2, name);
  }
  lua_setfield(L, -2, "headers");
  size_t len;
  const char *body = sl_httpc_body(r, &len);
  lua_pushlstring(L, body, len);
  lua_setfield(L, -2, "body");
  if (want_json) {
    sl_value v;
    sl_error_t err;
    sl_error_init(&err);
    if (sl_value_from_json(body, len, &v, &err) != 0) {
      lua_pushfstring(L, "the response body is not JSON: %s", err.msg);
      return fail_req(L, c, "json", code, lua_tostring(L, -1));
    }
    sl_lua_push(L, &v);
    sl_value_free(v);
    lua_setfield(L, -2, "json");
  }
  drop_req(c);
  return 1;
}

/* Pushes option key of the table at t (nil when t is 0: no options). */
static int field(lua_State *L, int t, const char *key) {
  if (t) return lua_getfield(L, t, key);
  lua_pushnil(L);
  return LUA_TNIL;
}

static const char *opt_string(lua_State *L, int t, const char *key) {
  int ty = field(L, t, key);
  if (ty == LUA_TNIL) return NULL;
  if (ty != LUA_TSTRING) luaL_error(L, "sluice.http: %s must be a string (got %s)", key, lua_typename(L, ty));
  return lua_tostring(L, -1); /* stays on the stack */
}

/* A request with the options of the table at t (0: none): {method, url, headers, body,
 * timeout, json, raise, ca_file, insecure}; url and body come from the arguments at url_i and
 * body_i instead when those are not 0, and method defaults to `method`. */
static int request(lua_State *L, int t, int url_i, const char *method, int body_i) {
  sl_lua_call *c = sl_lua_current(L);
  if (!c || !c->st) return luaL_error(L, "sluice.http can only be called inside a stage function");
  sl_httpc_opts o = {0};
  o.url = url_i ? lua_tostring(L, url_i) : opt_string(L, t, "url");
  if (!o.url) return luaL_error(L, "sluice.http: url is missing (request{url = \"http://...\"})");
  o.method = opt_string(L, t, "method");
  if (!o.method) o.method = method;
  o.ca_file = opt_string(L, t, "ca_file");
  field(L, t, "insecure");
  o.insecure = lua_toboolean(L, -1);
  field(L, t, "raise");
  lua_KContext ctx = lua_toboolean(L, -1) ? 1 : 0;
  field(L, t, "json");
  if (lua_toboolean(L, -1)) ctx |= 2;
  if (field(L, t, "timeout") != LUA_TNIL) o.timeout = sl__lua_duration(L, -1, "sluice.http: timeout");
  const char *lines[MAX_HEADERS + 1];
  bool json_body = false;
  int ty;
  if (body_i) lua_pushvalue(L, body_i), ty = lua_type(L, -1);
  else ty = field(L, t, "body");
  if (ty == LUA_TSTRING) {
    o.body = lua_tolstring(L, -1, &o.body_len);
  } else if (ty == LUA_TTABLE) { /* a table is sent as JSON */
    sl_value v;
    char why[256];
    if (sl_lua_to_value(L, -1, &v, why, sizeof why) != 0) return luaL_error(L, "sluice.http: body cannot be JSON: %s", why);
    sl_buf b;
    sl_buf_init(&b);
    int rc = sl_value_to_json(&v, &b);
    sl_value_free(v);
    if (rc == 0) lua_pushlstring(L, b.data ? b.data : "", b.len);
    sl_buf_close(&b);
    if (rc != 0) return luaL_error(L, "sluice.http: out of memory encoding the body");
    o.body = lua_tolstring(L, -1, &o.body_len);
    json_body = true;
  } else if (ty != LUA_TNIL) {
    return luaL_error(L, "sluice.http: body must be a string or a table (sent as JSON), not %s", lua_typename(L, ty));
  }
  bool has_ctype = false;
  ty = field(L, t, "headers");
  if (ty == LUA_TTABLE) { /* "Name: value" lines in an array on the stack, alive until the end */
    int ht = lua_gettop(L);
    lua_newtable(L);
    int arr = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, ht)) {
      if (o.nheaders == MAX_HEADERS) return luaL_error(L, "sluice.http: more than %d headers", MAX_HEADERS);
      if (lua_type(L, -2) != LUA_TSTRING || (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER))
        return luaL_error(L, "sluice.http: headers must map names to strings");
      const char *k = lua_tostring(L, -2);
      if (strcasecmp(k, "content-type") == 0) has_ctype = true;
      lua_pushfstring(L, "%s: %s", k, lua_tostring(L, -1));
      lua_rawseti(L, arr, (lua_Integer)++o.nheaders);
      lua_pop(L, 1);
    }
    for (size_t i = 0; i < o.nheaders; i++) {
      lua_rawgeti(L, arr, (lua_Integer)i + 1);
      lines[i] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  } else if (ty != LUA_TNIL) {
    return luaL_error(L, "sluice.http: headers must be a table");
  }
  if (json_body && !has_ctype) lines[o.nheaders++] = "Content-Type: application/json";
  o.headers = lines;
  if (c->pending) drop_req(c); /* a memory error while reading the last response, caught by pcall */
  sl_httpc *h = sl__engine_httpc(c->st->p->e);
  if (!h) return luaL_error(L, "sluice.http: the HTTP client could not start");
  char msg[256];
  sl_httpc_req *r = sl_httpc_req_new(h, &o, msg, sizeof msg);
  if (!r) return raise_error(L, "url", o.method ? o.method : o.body ? "POST" : "GET", o.url, 0, msg);
  if (sl_httpc_start(r, c->st, sl__stage_post, c->st, sl_lua_token(c)) != 0) {
    sl_httpc_req_free(r);
    return luaL_error(L, "sluice.http: could not start the request");
  }
  c->pending = r;
  c->cancel = cancel_req;
  return sl_lua_park_k(L, ctx, finish);
}

static int l_request(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  return request(L, 1, 0, NULL, 0);
}

/* get(url [, opts]) and post(url, body [, opts]): request{} with url, method and body given
 * (opts.method may say otherwise); no table is made for the call. */
static int shorthand(lua_State *L, const char *method, bool body) {
  luaL_checkstring(L, 1);
  int opts = body ? 3 : 2;
  if (!lua_isnoneornil(L, opts)) luaL_checktype(L, opts, LUA_TTABLE);
  else opts = 0;
  if (body && lua_gettop(L) < 2) lua_settop(L, 2); /* post(url): no body */
  return request(L, opts, 1, method, body ? 2 : 0);
}

static int l_get(lua_State *L) { return shorthand(L, "GET", false); }
static int l_post(lua_State *L) { return shorthand(L, "POST", true); }

void sl__lua_open_http(lua_State *L) {
  static const luaL_Reg fns[] = {{"request", l_request}, {"get", l_get}, {"post", l_post}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "http");
}
