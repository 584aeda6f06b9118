-- The Lua form of examples/hello.yaml (docs/getting-started.md): same stages, same output.
local sluice = require "sluice"

local function even(r) return r % 2 == 0 end

local p = sluice.pipeline { name = "hello" }
p:generate(10)
 :filter(even)
 :map(function(r) return { n = r, square = r * r } end)
 :stdout("jsonl")
local stats = p:run()
io.stderr:write(("%d records printed\n"):format(stats.stages["stdout#4"].out))
