-- Workload "logs" (bench/run) in plain Lua, for lua5.4 and luajit: split each line into 6
-- fields, keep status < 500, write jsonl (the bytes sluice writes; numbers keep their text).
-- usage: lua5.4 bench/peers/logs.lua IN OUT
local match, tonumber, format = string.match, tonumber, string.format
local out = assert(io.open(arg[2], "w"))
out:setvbuf("full", 65536)
for line in io.lines(arg[1]) do
  local h, m, p, s, b, ms = match(line, "^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$")
  local status = tonumber(s)
  if status < 500 then
    out:write(format('{"host":"%s","method":"%s","path":"%s","status":%d,"tx_bytes":%d,"upstream_ms":%s}\n',
                     h, m, p, status, tonumber(b), ms))
  end
end
out:close()
