-- sluice.lua — the Lua front end of sluice (DESIGN section 5), embedded in the binary.
--
-- It extends the `sluice` module of the script's state (sleep, now, log, emit, array, counter
-- come from C) with sluice.pipeline{}. A pipeline is a builder: each stage method adds a stage
-- that reads from the previous one (unless its options name an `input`), and returns the
-- pipeline, so calls chain. Options are the same as in YAML; positional arguments fill a kind's
-- options in the order listed in `positional` (its primary option alone by default), and a
-- last plain table holds the rest. Functions are shipped with their upvalues to every worker
-- state (_sl_ship). Every stage carries the file:line of the call that added it, so errors point
-- at the script.
--
-- A pipeline object keeps the steps that built it (settings and stages, as the engine took them),
-- so one that has run is built again from them when it is used again (p:run() twice runs it twice;
-- a tool such as the REPL can draw it again). sluice.load(path) makes one from a YAML file.
--
-- C primitives (vm/script.c): _sl.pipeline(name, workers, where) -> handle, _sl.load(path, sets,
-- where) -> handle, _sl.add(handle, kind, opts, where), _sl.set(handle, key, value, where),
-- _sl.run(handle) -> stats, _sl.check(handle), _sl.spent(handle), _sl.describe(handle),
-- _sl.ship(fn, where) -> blob, _sl.primary(kind) -> option, known; _sl.config_error(msg) raises a
-- configuration error (exit 2).

local sluice = ...
local _sl = sluice._sl
sluice._sl = nil

-- Positional arguments of the kinds that take more than their primary option.
local positional = {
  buffer_unordered = { "concurrency", "fn" },
  buffered = { "concurrency", "fn" },
  reduce = { "fn", "init" },
  chunks = { "size", "timeout" },
  throttle = { "rate", "per" },
  generate = { "count", "fn" },
  file = { "path", "codec" },
  lines = { "path" },
}

local Pipeline = { __name = "sluice pipeline" }
local last -- the pipeline object made last (sluice.last)
Pipeline.__index = function(self, kind)
  local m = rawget(Pipeline, kind)
  if m then return m end
  if type(kind) ~= "string" or kind:sub(1, 1) == "_" then return nil end
  return function(p, ...) return p:add(kind, ...) end
end

-- file:line of the script line that called into the builder.
local function where(level)
  local info = debug.getinfo(level + 1, "Sl")
  if not info or info.currentline < 0 then return "" end
  return string.format("%s:%d:1: ", info.short_src, info.currentline)
end

-- Functions anywhere in the options become shipped blobs.
local function ship_all(v, at)
  if type(v) == "function" then return _sl.ship(v, at) end
  if type(v) == "table" and getmetatable(v) == nil then
    local out = {}
    for k, x in pairs(v) do out[k] = ship_all(x, at) end
    return out
  end
  return v
end

local function is_options(t)
  return type(t) == "table" and getmetatable(t) == nil and (next(t) == nil or type(next(t)) == "string")
end

-- The handle to build on: a fresh one with the steps replayed when the last one has run.
function Pipeline:_live()
  if not _sl.spent(self._h) then return self._h end
  local h = self._new()
  for _, step in ipairs(self._steps) do step(h) end
  self._h = h
  return h
end

-- Applies fn(handle, ...) now (it raises on a bad step, which is then not kept) and keeps it.
function Pipeline:_step(fn, ...)
  local args = table.pack(...)
  fn(self:_live(), table.unpack(args, 1, args.n))
  self._steps[#self._steps + 1] = function(h) fn(h, table.unpack(args, 1, args.n)) end
end

function Pipeline:__tostring()
  if _sl.spent(self._h) and self._said then return self._said end
  return _sl.describe(self._h)
end

function Pipeline:add(kind, ...)
  local at = where(2)
  local args = table.pack(...)
  local opts = {}
  if args.n > 0 and is_options(args[args.n]) and not (args.n == 1 and kind == "values") then
    for k, v in pairs(args[args.n]) do opts[k] = v end
    args.n = args.n - 1
  end
  local primary, known = _sl.primary(kind)
  if not known then _sl.add(self:_live(), kind, {}, at) end -- the engine names it, with a suggestion
  local names = positional[kind] or { primary }
  for i = 1, args.n do
    local name = names[i]
    if not name then
      _sl.config_error(string.format("%sstage %s takes at most %d positional argument(s), then a table of options", at, kind, #names))
    end
    opts[name] = args[i]
  end
  if kind == "route" and opts.outputs == nil and next(opts) ~= nil then
    _sl.config_error(string.format("%sroute outputs are tried in order: in Lua write them as a list, p:route { {name1 = pred1}, {name2 = pred2} }", at))
  end
  if kind == "route" and type(opts.outputs) == "table" and #opts.outputs == 0 then
    local n = 0
    for _ in pairs(opts.outputs) do n = n + 1 end
    if n > 1 then -- Lua tables have no order, and the first matching output wins
      _sl.config_error(string.format("%sroute outputs are tried in order: in Lua write them as a list, { {name1 = pred1}, {name2 = pred2} }", at))
    end
  end
  for _, k in ipairs { "fn", "key", "partition_by" } do -- a script's global function, named: ship the function
    if type(opts[k]) == "string" and type(_G[opts[k]]) == "function" then opts[k] = _G[opts[k]] end
  end
  self:_step(_sl.add, kind, ship_all(opts, at), at)
  return self
end

-- Adds a stage that receives the failed records, and makes it the dead letter.
function Pipeline:dead_letter(kind, ...)
  local at = where(2)
  local args = table.pack(...)
  local opts = is_options(args[args.n]) and args[args.n] or {}
  if args.n >= 1 and not is_options(args[1]) then opts[_sl.primary(kind)] = args[1] end
  opts.name = opts.name or "dead_letter"
  opts.input = sluice.array {}
  self:_step(_sl.add, kind, ship_all(opts, at), at)
  self:_step(_sl.set, "dead_letter", opts.name, at)
  return self
end

-- Runs the pipeline and returns its stats: { elapsed_s = ..., stages = { name = {...} } }.
function Pipeline:run()
  local h = self:_live()
  self._said = _sl.describe(h) -- what tostring says once it has run
  return _sl.run(h, where(2))
end

-- Checks the graph without running it; raises the errors.
function Pipeline:check()
  _sl.check(self:_live(), where(2))
  return true
end

local settings = { "on_error", "drain_timeout", "sandbox", "sandbox_paths", "lua_memory_limit",
                   "lua_instruction_limit", "memory_limit" }

function sluice.pipeline(opts)
  opts = opts or {}
  local at = where(2)
  local known = { workers = true, name = true }
  for _, k in ipairs(settings) do known[k] = true end
  for k in pairs(opts) do
    if not known[k] then _sl.config_error(string.format("%sunknown pipeline option '%s'", at, tostring(k))) end
  end
  local name, workers = opts.name, opts.workers
  local p = setmetatable({ _steps = {}, _new = function() return _sl.pipeline(name, workers, at) end }, Pipeline)
  p._h = p._new()
  for _, k in ipairs(settings) do
    if opts[k] ~= nil then p:_step(_sl.set, k, opts[k], at) end
  end
  last = p
  return p
end

-- A pipeline object from a YAML pipeline file; sets: a list of "path=value" overrides (as --set).
-- Stage methods add stages after the file's.
function sluice.load(path, sets)
  local at = where(2)
  if type(path) ~= "string" then _sl.config_error(at .. "sluice.load takes the path of a YAML pipeline file") end
  local copy = {}
  for i, v in ipairs(sets or {}) do copy[i] = v end
  local p = setmetatable({ _steps = {}, _new = function() return _sl.load(path, copy, at) end }, Pipeline)
  p._h = p._new()
  last = p
  return p
end

-- The pipeline object made last in this state, or nil.
function sluice.last()
  return last
end

return sluice
