/*
 * lua_sandbox.c — `sandbox: true`: what Lua code of a pipeline may not do.
 *
 * Removed: os.execute, os.exit, os.tmpname, io.popen, io.tmpfile, package.loadlib, the debug
 * library, and the searchers that load C modules (package.cpath is emptied). `load` and
 * `loadfile` take text chunks only (binary chunks are not verified by Lua). Files: io.open,
 * io.lines, io.input, io.output, loadfile, dofile, os.remove and os.rename accept only paths
 * inside `sandbox_paths` (after resolving symlinks and ".."); with no sandbox_paths, no file at
 * all. Lua modules on package.path still load through require.
 */
#include <errno.h>
#include <lauxlib.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "lua.h"

/* Is path inside one of the allowed directories (upvalue 1: array of resolved dirs)? A path
 * that does not exist yet is judged by its directory. */
static int path_ok(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char resolved[PATH_MAX];
  if (!realpath(path, resolved)) {
    char *copy = sl__xstrdup(path);
    char *dir = dirname(copy);
    char rdir[PATH_MAX];
    bool ok = realpath(dir, rdir) != NULL;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (ok && (size_t)snprintf(resolved, sizeof resolved, "%s/%s", rdir, base) >= sizeof resolved) ok = false;
    sl__free(copy);
    if (!ok) {
      lua_pushboolean(L, 0);
      return 1;
    }
  }
  lua_Integer n = luaL_len(L, lua_upvalueindex(1));
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, lua_upvalueindex(1), i);
    size_t dl;
    const char *d = lua_tolstring(L, -1, &dl);
    bool inside = d && strncmp(resolved, d, dl) == 0 && (resolved[dl] == '/' || resolved[dl] == 0);
    lua_pop(L, 1);
    if (inside) {
      lua_pushboolean(L, 1);
      return 1;
    }
  }
  lua_pushboolean(L, 0);
  return 1;
}

static const char sandbox_lua[] =
    "local path_ok = ...\n"
    "local function guard(name, f, argi)\n"
    "  return function(...)\n"
    "    local p = select(argi or 1, ...)\n"
    "    if type(p) == 'string' and not path_ok(p) then\n"
    "      error(name .. ': ' .. p .. ' is outside the sandbox_paths of this pipeline', 2)\n"
    "    end\n"
    "    return f(...)\n"
    "  end\n"
    "end\n"
    "local function denied(name)\n"
    "  return function() error(name .. ' is not allowed in a sandboxed pipeline', 2) end\n"
    "end\n"
    "os.execute = denied('os.execute'); os.exit = denied('os.exit'); os.tmpname = denied('os.tmpname')\n"
    "io.popen = denied('io.popen'); io.tmpfile = denied('io.tmpfile')\n"
    "io.open = guard('io.open', io.open); io.lines = guard('io.lines', io.lines)\n"
    "io.input = guard('io.input', io.input); io.output = guard('io.output', io.output)\n"
    "os.remove = guard('os.remove', os.remove)\n"
    "local rename = os.rename\n"
    "os.rename = function(a, b)\n"
    "  if not path_ok(a) or not path_ok(b) then error('os.rename: outside the sandbox_paths of this pipeline', 2) end\n"
    "  return rename(a, b)\n"
    "end\n"
    "local load0, loadfile0 = load, loadfile\n"
    "load = function(chunk, name, mode, env) return load0(chunk, name, 't', env) end\n"
    "loadfile = guard('loadfile', function(p, mode, env) return loadfile0(p, 't', env) end)\n"
    "dofile = guard('dofile', function(p) local f = assert(loadfile0(p, 't')); return f() end)\n"
    "package.loadlib = nil; package.cpath = ''\n"
    "package.searchers[4] = nil; package.searchers[3] = nil\n"
    "debug = nil; package.loaded.debug = nil\n";

void sl_lua_sandbox(lua_State *L, const sl_value *paths) {
  lua_newtable(L);
  size_t n = paths && paths->type == SL_TARRAY ? sl_array_len(paths) : 0;
  int k = 0;
  for (size_t i = 0; i < n; i++) {
    char resolved[PATH_MAX];
    const char *d = sl_str_data(sl_array_get(paths, i));
    if (d && realpath(d, resolved)) {
      lua_pushstring(L, resolved);
      lua_rawseti(L, -2, ++k);
    }
  }
  lua_pushcclosure(L, path_ok, 1);
  if (luaL_loadbufferx(L, sandbox_lua, sizeof sandbox_lua - 1, "=sandbox", "t") != LUA_OK) lua_error(L);
  lua_insert(L, -2);
  lua_call(L, 1, 0);
}
