-- values.lua: cost per key of converting Lua tables to hub arguments and
-- back, for maps and arrays of 10 to 100,000 entries. Linear conversion
-- shows as a flat time per key.
-- Usage: lua5.4 bench/values.lua http://127.0.0.1:PORT   (make bench-values)
--   send: conn:send("Echo", t) returns once t is encoded and queued, so its
--         time is the Lua -> wire conversion on the host thread;
--   echo: conn:invoke("Echo", t) round trip: encode, the hub parses and
--         writes it back, we decode it into a Lua table.
local signalr = require("signalr")
local now = require("signalr.core").now

local base = assert(arg[1], "hub base URL")
local conn = signalr.builder():with_url(base .. "/testhub"):configure_logging("error")
  :build()
conn:start()

local function map_of(n)
  local t = {}
  for i = 1, n do t["k" .. i] = i end
  return t
end

local function array_of(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

local function per_key(n, fn)
  local reps = math.max(1, math.floor(400000 / n))
  local t0 = now()
  for _ = 1, reps do fn() end
  return (now() - t0) / (reps * n) * 1e9
end

print(string.format("%-6s %8s %14s %14s", "shape", "n", "send ns/key", "echo ns/key"))
for _, shape in ipairs({ { "map", map_of }, { "array", array_of } }) do
  for _, n in ipairs({ 10, 100, 1000, 10000, 40000, 100000 }) do
    local t = shape[2](n)
    local send = per_key(n, function() conn:send("Echo", t) end)
    conn:invoke("Nop") -- let the hub catch up before the round trips
    local echo = per_key(n, function()
      local r = conn:invoke("Echo", t)
      assert(shape[1] == "map" and r["k" .. n] == n or r[n] == n)
    end)
    print(string.format("%-6s %8d %14.0f %14.0f", shape[1], n, send, echo))
  end
end
conn:stop()
