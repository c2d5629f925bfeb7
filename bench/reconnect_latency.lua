-- reconnect_latency.lua: how soon after the hub comes back is a lost
-- connection working again?
-- Usage (from the repository root, paths from scripts/env.sh):
--   lua5.4 bench/reconnect_latency.lua [cycles] [delay] [mode] [warmup]
--   (make bench-reconnect; cycles default 20, delay 0, mode "pump", warmup 1)
-- Starts its own hub (spec/helper.lua) because it kills and restarts it.
--
-- Each cycle: kill the hub (SIGKILL), wait for on_reconnecting, restart the
-- hub on the same port, wait for on_reconnected. The retry policy always
-- returns `delay` seconds, so attempts keep coming while the hub is down.
-- Times (core.now(), monotonic), per cycle:
--   t_launch  the restart call begins
--   t_ready   the hub's ready file is first seen (written once Kestrel
--             listens; sampled every 5 ms, mode "pump" only)
--   t0        the restart call returns: the hub answered GET /health
--   t1        on_reconnected runs
-- Columns: t1 - t0, t1 - t_ready, the restart call's duration, retry policy
-- calls between t_launch and t1 (one per attempt), and how many of those came
-- after t0 (0: the attempt that succeeded had begun before t0).
-- The headline is t1 - t0. The helper notices /health by polling (a curl
-- process, then 50 ms pauses), so t0 can be up to ~60 ms after the hub was
-- able to serve, and a reconnect can complete before t0 (a negative figure):
-- t1 - t_ready is printed as the tighter measure.
--
-- mode "pump":  signalr events are driven while the helper kills and
--               restarts the hub (H.sleep = a pumping sleep), so attempts run
--               all through the outage, as in an application that keeps
--               polling. An attempt in flight when the hub comes back finishes
--               (fails) first; with delay 0 that costs at most one refused
--               connect.
-- mode "block": the process is blocked in the helper (plain sleeps) during
--               the restart, as a host that does not call in; whatever attempt
--               state was pending is resumed after t0 (with delay 0 the first
--               attempt's timer is usually still undispatched), so t1 - t0 is
--               one whole attempt (negotiate, WebSocket, handshake) against a
--               freshly started, un-JITted hub.
local signalr = require("signalr")
local core = require("signalr.core")
local H = require("spec.helper")

local N = tonumber(arg[1]) or 20
local DELAY = tonumber(arg[2]) or 0
local MODE = arg[3] or "pump"
local WARMUP = tonumber(arg[4]) or 1
local WAIT_LIMIT = 60
local now = core.now
assert(MODE == "pump" or MODE == "block", "mode must be pump or block")

local hub = H.start_hub()

-- ready-file watch (pump mode): the helper's sleeps become short pumping
-- slices that also note when the restarted hub wrote its ready file.
local t_ready
local function note_ready()
  if t_ready then return end
  local f = io.open(hub.ready_file, "rb")
  if f then
    local s = f:read("a")
    f:close()
    if s and s ~= "" then t_ready = now() end
  end
end
if MODE == "pump" then
  H.sleep = function(sec)
    local deadline = now() + sec
    repeat
      note_ready()
      local left = deadline - now()
      if left > 0 then signalr.poll(math.min(left, 0.005)) end
    until now() >= deadline
    note_ready()
  end
end

local attempts = 0
local reconnecting, reconnected, closed = false, false, nil
local t1
local conn = signalr.builder()
  :with_url(hub.url .. "/testhub")
  :with_automatic_reconnect(function(ctx)
    attempts = attempts + 1
    return DELAY
  end)
  :configure_logging("none")
  :build()
conn:on_reconnecting(function() reconnecting = true end)
conn:on_reconnected(function()
  t1 = now()
  reconnected = true
end)
conn:on_close(function(err) closed = tostring(err) end)
conn:start()
assert(conn:invoke("Add", 1, 2) == 3)

local function wait_until(pred, what)
  local deadline = now() + WAIT_LIMIT
  while not pred() do
    if closed then error("connection closed instead of reconnecting: " .. closed) end
    if now() > deadline then error("timed out waiting for " .. what) end
    signalr.poll(0.05)
  end
end

local function cycle()
  reconnecting, reconnected, t1, t_ready = false, false, nil, nil
  hub:kill()
  wait_until(function() return reconnecting end, "on_reconnecting")
  local a0 = attempts
  local t_launch = now()
  t_ready = nil
  hub:restart()
  local t0 = now()
  local a_at_t0 = attempts - a0
  wait_until(function() return reconnected end, "on_reconnected")
  assert(conn:invoke("Add", 2, 3) == 5)
  return {
    lat = t1 - t0,
    ready = t_ready and (t1 - t_ready) or nil,
    launch = t1 - t_launch,
    start = t0 - t_launch,
    attempts = attempts - a0,
    attempts_t0 = a_at_t0,
  }
end

for _ = 1, WARMUP do cycle() end
local rows = {}
print(string.format("reconnect latency: %d cycles, retry delay %g s, mode %s, hub %s", N, DELAY, MODE, hub.url))
print(string.format("  %3s %10s %12s %12s %12s %9s", "#", "t1-t0 ms", "t1-ready ms", "hub start s", "policy calls", "after t0"))
for i = 1, N do
  local r = cycle()
  rows[i] = r
  print(string.format("  %3d %10.1f %12s %12.2f %12d %9s", i, r.lat * 1e3,
    r.ready and string.format("%.1f", r.ready * 1e3) or "-", r.start, r.attempts,
    tostring(r.attempts - r.attempts_t0)))
  io.stdout:flush()
end

local function stats(key)
  local v = {}
  for _, r in ipairs(rows) do
    if r[key] then v[#v + 1] = r[key] end
  end
  if #v == 0 then return nil end
  table.sort(v)
  local med = #v % 2 == 1 and v[(#v + 1) / 2] or (v[#v / 2] + v[#v / 2 + 1]) / 2
  return med, v[1], v[#v], #v
end

local function line(label, key, scale, unit)
  local med, lo, hi, n = stats(key)
  if med then
    print(string.format("%-40s median %8.1f %s  min %8.1f  max %8.1f  (n=%d)", label, med * scale, unit,
      lo * scale, hi * scale, n))
  end
end
line("t1 - t0 (/health answered -> reconnected)", "lat", 1e3, "ms")
line("t1 - ready file seen", "ready", 1e3, "ms")
line("restart call -> reconnected", "launch", 1e3, "ms")
line("hub restart call duration", "start", 1, "s ")
line("retry policy calls per restart", "attempts", 1, "  ")
conn:stop()
hub:stop()
