-- churn.lua: does anything leak or slow down over many connection life cycles?
-- Usage: lua5.4 bench/churn.lua http://127.0.0.1:PORT [start_stop] [reconnects] [new_conns] [warmup] [loss]
-- (make bench-churn starts the hub and passes its URL; counts default to
-- 1000 each, warm-up 50; a count of 0 skips the phase.)
--
-- Phases, all in this one process:
--   a) one connection object: start / stop, N times
--   b) one connection with automatic reconnect {0,0,0,0}: drop it, wait for
--      on_reconnected; N times. `loss` says how it is dropped:
--        close (default)  the hub method CloseWithErrorReconnect sends a Close
--                         message with allowReconnect and aborts the connection
--        cut              the connection runs through spec/helper's loopback
--                         proxy, which resets (RST) it: a plain transport loss
--      (Not "Abort": Context.Abort() makes the server send a Close message
--      without allowReconnect, after which a client does not reconnect, as the
--      official clients do not.)
--   c) build a new connection, start, stop, drop it, collectgarbage; N times
-- Each phase first runs `warmup` untimed cycles (one-time allocations: I/O
-- threads, buffers, the hub's JIT), then prints RSS, open file descriptors,
-- threads, Lua registry entries and Lua heap before and after the timed
-- cycles, and the time per cycle.
local signalr = require("signalr")
local core = require("signalr.core")

local base = assert(arg[1], "hub base URL")
local N_START = tonumber(arg[2]) or 1000
local N_RECONNECT = tonumber(arg[3]) or 1000
local N_NEW = tonumber(arg[4]) or 1000
local WARMUP = tonumber(arg[5]) or 50
local LOSS = arg[6] or "close"
assert(LOSS == "close" or LOSS == "cut", "loss must be close or cut")
local WAIT_LIMIT = 30 -- seconds: a single cycle taking longer is a failure
local now = core.now
local url = base .. "/testhub"

-- our own pid: /proc/self read in-process is this Lua process
local PID = (function()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return pid
end)()

local function status_field(name)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. name .. ":%s+(%d+)")
    if v then return tonumber(v) end
  end
end

-- Open descriptors of this process, listed by a child (plain Lua cannot read
-- a directory). The popen pipe itself is one of them, in every sample alike.
local function fd_count()
  local p = assert(io.popen("ls /proc/" .. PID .. "/fd | wc -l"))
  local n = p:read("n")
  p:close()
  return n
end

local function registry_count()
  local n = 0
  for _ in pairs(debug.getregistry()) do n = n + 1 end
  return n
end

-- Dispatch whatever is ready without waiting, then collect fully.
local function settle()
  for _ = 1, 100 do
    if signalr.poll(0) == 0 then break end
  end
  collectgarbage("collect")
  collectgarbage("collect")
  for _ = 1, 100 do
    if signalr.poll(0) == 0 then break end
  end
end

local function sample()
  settle()
  return {
    rss = status_field("VmRSS"),
    fds = fd_count(),
    threads = status_field("Threads"),
    reg = registry_count(),
    heap = collectgarbage("count"),
  }
end

local function percentile(sorted, p)
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

local function report(title, before, after, times)
  print(title)
  print(string.format("  %-7s %9s %5s %8s %9s %10s", "", "RSS KiB", "fds", "threads", "registry", "Lua KiB"))
  local function row(name, s)
    print(string.format("  %-7s %9d %5d %8d %9d %10.1f", name, s.rss, s.fds, s.threads, s.reg, s.heap))
  end
  row("before", before)
  row("after", after)
  print(string.format("  %-7s %+9d %+5d %+8d %+9d %+10.1f", "delta", after.rss - before.rss,
    after.fds - before.fds, after.threads - before.threads, after.reg - before.reg, after.heap - before.heap))
  local total = 0
  for _, t in ipairs(times) do total = total + t end
  table.sort(times)
  print(string.format("  %d cycles in %.2f s: mean %.2f ms/cycle, p50 %.2f ms, p99 %.2f ms, max %.2f ms",
    #times, total, total / #times * 1e3, percentile(times, 0.5) * 1e3, percentile(times, 0.99) * 1e3,
    times[#times] * 1e3))
  io.stdout:flush()
end

-- Wait (driving events) until pred() is true; error after WAIT_LIMIT s.
local function wait_until(pred, what)
  local deadline = now() + WAIT_LIMIT
  while not pred() do
    if now() > deadline then error("timed out waiting for " .. what, 2) end
    signalr.poll(1)
  end
end

-- Run `warm` untimed cycles, sample, `n` timed cycles, sample, report.
local function phase(title, n, warm, cycle)
  if n <= 0 then return end
  for i = 1, warm do cycle(i) end
  local times = {}
  for i = 1, n do times[i] = 0.0 end -- allocated before the first sample
  local before = sample()
  for i = 1, n do
    local s = now()
    cycle(i)
    times[i] = now() - s
  end
  local after = sample()
  report(string.format("%s (x%d, after %d warm-up)", title, n, warm), before, after, times)
end

-- Log messages at error level and above are counted, not printed (a
-- transport loss may be logged as an error); the counts close the report.
local log_counts = {}
local function count_log(level)
  log_counts[level] = (log_counts[level] or 0) + 1
end

local function builder(u)
  return signalr.builder():with_url(u or url):configure_logging("error", count_log)
end

print(string.format("churn against %s (pid %d)", url, PID))

-- a) one connection object, started and stopped again and again
do
  local conn = builder():build()
  phase("a) start/stop one connection", N_START, WARMUP, function()
    conn:start()
    conn:stop()
  end)
  conn = nil -- luacheck: ignore
end

-- b) connection loss and automatic reconnect
do
  local proxy
  if LOSS == "cut" and N_RECONNECT > 0 then
    local H = require("spec.helper")
    proxy = H.start_proxy(assert(tonumber(base:match(":(%d+)$")), "port in the hub URL"))
  end
  local conn = builder(proxy and proxy:url("/testhub")):with_automatic_reconnect({ 0, 0, 0, 0 }):build()
  local function drop()
    if proxy then
      proxy:cut()
    else
      conn:send("CloseWithErrorReconnect", "churn")
    end
  end
  local reconnecting, reconnected, closed = 0, 0, nil
  conn:on_reconnecting(function() reconnecting = reconnecting + 1 end)
  conn:on_reconnected(function() reconnected = reconnected + 1 end)
  conn:on_close(function(err) closed = err or "closed" end)
  if N_RECONNECT > 0 then conn:start() end
  phase("b) loss (" .. (LOSS == "cut" and "proxy RST" or "hub CloseWithErrorReconnect")
    .. ") and automatic reconnect", N_RECONNECT, WARMUP, function()
    local target = reconnected + 1
    drop()
    wait_until(function()
      if closed then error("connection closed instead of reconnecting: " .. tostring(closed)) end
      return reconnected >= target
    end, "on_reconnected")
  end)
  if N_RECONNECT > 0 then
    conn:invoke("Add", 1, 2) -- still usable
    print(string.format("  on_reconnecting %d, on_reconnected %d (warm-up included)", reconnecting, reconnected))
    conn:stop()
  end
  if proxy then proxy:stop() end
  conn = nil -- luacheck: ignore
end

-- c) a fresh connection every cycle, dropped and collected
phase("c) build/start/stop/drop/collectgarbage", N_NEW, WARMUP, function()
  local conn = builder():build()
  conn:start()
  conn:stop()
  conn = nil -- luacheck: ignore
  collectgarbage("collect")
end)

local logged = {}
for level, n in pairs(log_counts) do logged[#logged + 1] = string.format("%s %d", level, n) end
table.sort(logged)
print("log messages (error and above): " .. (#logged > 0 and table.concat(logged, ", ") or "none"))
