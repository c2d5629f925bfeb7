-- bench.lua: throughput and latency against the test hub on this machine.
-- Usage: lua5.4 bench/bench.lua http://127.0.0.1:PORT [invokes] [sends] [idle]
-- (make bench starts the hub and passes its URL.) BENCH_STREAM_ITEMS sets
-- the items of the stream runs (default: the sends). BENCH_TRANSPORT picks the
-- transport: websockets (default), server_sent_events or long_polling
-- (make bench TRANSPORT=long_polling). --protocol messagepack (or
-- BENCH_PROTOCOL, make bench PROTOCOL=messagepack) picks the hub protocol.
local signalr = require("signalr")
local core = require("signalr.core")

-- "--protocol messagepack" anywhere in the arguments (or BENCH_PROTOCOL)
-- picks the hub protocol; the others are positional.
local PROTOCOL = os.getenv("BENCH_PROTOCOL")
do
  local rest, i = {}, 1
  while arg[i] do
    if arg[i] == "--protocol" then
      PROTOCOL = arg[i + 1]
      i = i + 2
    else
      rest[#rest + 1] = arg[i]
      i = i + 1
    end
  end
  for j = 1, math.max(#arg, #rest) do arg[j] = rest[j] end
end
if PROTOCOL == "" then PROTOCOL = nil end

local base = assert(arg[1], "hub base URL")
local N_INVOKE = tonumber(arg[2]) or 20000
local N_SEND = tonumber(arg[3]) or 200000
local N_IDLE = tonumber(arg[4]) or 1000
local now = core.now
local TRANSPORT = os.getenv("BENCH_TRANSPORT")
if TRANSPORT == "" then TRANSPORT = nil end

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local v = line:match("^VmRSS:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

local function connect()
  local c = signalr.builder()
    :with_url(base .. "/testhub", { transports = { TRANSPORT or "websockets" } })
    :with_hub_protocol(PROTOCOL or "json")
    :configure_logging("error")
    :build()
  c:start()
  return c
end

local function percentile(sorted, p)
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

local conn = connect()
print("transport: " .. conn:invoke("GetTransport") .. ", protocol: " .. (PROTOCOL or "json"))
-- Warm up both sides: the server's tiered JIT recompiles hot methods in the
-- background for a while after they first run, which shows up as a
-- millisecond tail if we measure too early.
local warm_until = now() + (tonumber(os.getenv("BENCH_WARMUP")) or 3)
while now() < warm_until do conn:invoke("Add", 1, 2) end
for _ = 1, 20000 do conn:send("Nop") end
conn:invoke("Nop")
signalr.sleep(0.3)

-- sequential invoke round trips
local lat = {}
local t0 = now()
for i = 1, N_INVOKE do
  local s = now()
  conn:invoke("Add", i, 1)
  lat[i] = now() - s
end
local dt = now() - t0
table.sort(lat)
print(string.format("sequential invoke: %d calls in %.2f s = %.0f/s, p50 %.0f us, p99 %.0f us",
  N_INVOKE, dt, N_INVOKE / dt, percentile(lat, 0.5) * 1e6, percentile(lat, 0.99) * 1e6))

-- pipelined send: the final invoke returns after the server processed all
-- sends, since a connection's messages are handled in order.
t0 = now()
for i = 1, N_SEND do conn:send("Nop") end
conn:invoke("Nop")
dt = now() - t0
print(string.format("pipelined send: %d messages in %.2f s = %.0f msg/s", N_SEND, dt, N_SEND / dt))

-- server-to-client stream read with for ... in s:items()
local N_STREAM = tonumber(os.getenv("BENCH_STREAM_ITEMS")) or N_SEND
t0 = now()
local s, n = conn:stream("Counter", N_STREAM, 0), 0
for _ in s:items() do n = n + 1 end
dt = now() - t0
assert(n == N_STREAM, "stream items lost")
print(string.format("stream to Lua: %d items in %.2f s = %.0f items/s", n, dt, n / dt))

-- client-to-server channel writes; Sum returns once the hub read them all
t0 = now()
local ch = signalr.channel()
local total
signalr.spawn(function() total = conn:invoke("Sum", ch) end)
for i = 1, N_STREAM do ch:write(i) end
ch:close()
while total == nil do signalr.poll(1) end
dt = now() - t0
assert(total == N_STREAM * (N_STREAM + 1) // 2, "channel items lost")
print(string.format("channel writes: %d items in %.2f s = %.0f items/s", N_STREAM, dt, N_STREAM / dt))
conn:stop()

-- memory per idle connection
collectgarbage()
local before = rss_kib()
local conns = {}
signalr.run(function()
  local started = 0
  for i = 1, N_IDLE do
    signalr.spawn(function()
      conns[i] = connect()
      started = started + 1
    end)
    if i % 50 == 0 then while started < i do signalr.sleep(0.005) end end
  end
  while started < N_IDLE do signalr.sleep(0.01) end
end)
signalr.sleep(1)
collectgarbage()
local after = rss_kib()
print(string.format("idle connections: %d, RSS +%.1f MiB = %.1f KiB each",
  N_IDLE, (after - before) / 1024, (after - before) / N_IDLE))
signalr.run(function()
  for _, c in ipairs(conns) do signalr.spawn(function() c:stop() end) end
end)
