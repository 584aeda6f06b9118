-- A Lua pipeline: 200 slow "remote calls" at once (each waits 1 s without holding a worker),
-- then a keyed count. Run it on the virtual clock to see the exact timing instantly:
--   sluice run examples/async_calls.lua --virtual-time
local sluice = require "sluice"

local slow_service = { latency = "1s" }
local function lookup(id) return id % 3 == 0 and "gold" or "basic" end

local p = sluice.pipeline { workers = 2 }
p:generate(1000)
 :buffer_unordered(200, function(r)
    sluice.sleep(slow_service.latency)   -- stands for an HTTP call
    return { id = r, tier = lookup(r) }
  end)
 :reduce(function(acc, r) return acc + 1 end, 0, { key = "r.tier" })
 :stdout("jsonl")
local stats = p:run()
io.stderr:write(string.format("%d calls in %.1f s\n", stats.stages["buffer_unordered#2"].out, stats.elapsed_s))
