-- lua_logs.lua — the Lua code of bench_lua_logs, and its plain-Lua baseline.
--
-- bench_lua_logs hands this whole file to sl_pipeline_add_lua: every Lua state of the pipeline
-- defines `parse` (the map stage) and `keep` (the filter stage), and the stages name them. The
-- engine's states have no `arg`, so the loop at the end does not run there.
--
-- Run by the plain interpreter (`lua5.4 bench/lua_logs.lua FILE`), the same two functions run
-- over the lines of FILE (io.lines), and the kept count is printed.

-- 10.0.3.7 - - [21/Nov/2026:10:00:00 +0000] "GET /api/v1/items/123 HTTP/1.1" 200 5123
local match, tonumber = string.match, tonumber
local PATTERN = '^(%S+) %S+ %S+ %[([^%]]*)%] "(%S+) (%S+)[^"]*" (%d+) (%d+)'

function parse(line)
  local host, time, method, path, status, bytes = match(line, PATTERN)
  return {host = host, time = time, method = method, path = path,
          status = tonumber(status), bytes = tonumber(bytes)}
end

function keep(r)
  return r.status >= 500
end

-- Both in one call (bench_lua_logs --only f: one filter_map stage): what map -> filter would cost
-- if a record went from one Lua stage to the next as a Lua table, with no conversion between.
function parse_keep(line)
  local r = parse(line)
  if keep(r) then return r end
end

if arg and arg[1] then
  local n, kept = 0, 0
  for line in io.lines(arg[1]) do
    n = n + 1
    local r = parse(line)
    if keep(r) then kept = kept + 1 end
  end
  print(n, kept)
end
