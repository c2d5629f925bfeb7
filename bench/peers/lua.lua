-- bench/peers/lua.lua: our client (require "signalr") running one workload of
-- the peer benchmark; bench/peers.lua starts it with lua5.4, as it starts
-- the official .NET client (bench/peers/dotnet) and the official TypeScript
-- client on node (bench/peers/node) for the same workloads.
--
--   lua5.4 bench/peers/lua.lua HUB_URL WORKLOAD [key=value ...]
--
-- HUB_URL is the hub's full URL (http://127.0.0.1:PORT/testhub). Workloads
-- and their parameters (defaults in brackets); every program of the
-- benchmark takes the same ones and means the same by them:
--   invoke  n [20000] warmup [1.5 s]: n sequential invoke("Add", i, 1),
--           each awaited before the next; after `warmup` seconds of the same.
--   send    n [200000] warmup [1.5 s]: n send("Count") as fast as the
--           client's API takes them, then one invoke("CountDone") whose
--           answer must be n. "Sent" means the server has PROCESSED all n:
--           the time runs from the first send to CountDone's answer.
--   receive n [200000] warmup [1.5 s]: invoke("StartPush", "Tick", n, 0)
--           makes the server push Tick(1) .. Tick(n) as fast as it can; the
--           time runs from that invoke to the `on` handler seeing the n-th.
--   idle    k [1000] batch [50]: RSS (VmRSS after a full GC) before and after
--           opening k connections, `batch` of them at a time concurrently.
--   warm    seconds [5]: warms the hub's JIT (invokes, sends, pushes); no
--           figures.
-- Every workload also takes clk_tck [100] (the kernel's USER_HZ, for
-- /proc/self/stat).
--
-- Output: one line "RESULT client=lua workload=... key=value ..." on stdout:
--   rate            operations per second over the timed phase
--   p50_us, p99_us  invoke latency percentiles (microseconds)
--   cpu_us          (utime + stime of the whole process, all threads, from
--                   /proc/self/stat) over the timed phase / n
--   host_cpu_us     CPU of the host thread (the one running Lua, where
--                   handlers run) over the timed phase / n, from
--                   /proc/thread-self/schedstat (nanoseconds)
--   idle: reached (connections open), rss_before_kib, rss_after_kib,
--                   kib_per_conn = (after - before) / reached, kib_per_conn_marginal
--                   = the same from the RSS after the first batch (one-time
--                   costs such as threads, JIT, library set-up left out),
--                   open_per_s = reached / time to open them all
-- On failure: "RESULT client=lua workload=... error=<text>" and exit 1.
local signalr = require("signalr")
local core = require("signalr.core")
local now = core.now

local url = assert(arg[1], "usage: lua5.4 bench/peers/lua.lua HUB_URL WORKLOAD [key=value ...]")
local workload = assert(arg[2], "workload expected")
local P = {}
for i = 3, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  assert(k, "bad parameter " .. arg[i])
  P[k] = v
end
local function num(k, default) return tonumber(P[k]) or default end
local CLK_TCK = num("clk_tck", 100)

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- utime + stime of the whole process (every thread), in seconds.
local function process_cpu()
  local after = read_file("/proc/self/stat"):match("%) (.*)$")
  local f, i = {}, 2 -- after ") " the first field is field 3 (state)
  for w in after:gmatch("%S+") do
    i = i + 1
    f[i] = w
    if i == 15 then break end
  end
  return (tonumber(f[14]) + tonumber(f[15])) / CLK_TCK
end

-- CPU time of the calling (host) thread, in seconds (ns precision).
local function thread_cpu()
  return tonumber(read_file("/proc/thread-self/schedstat"):match("^(%d+)")) / 1e9
end

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local v = line:match("^VmRSS:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

local function fmt(v)
  if type(v) == "number" then
    if v == math.floor(v) and math.abs(v) < 1e15 then return string.format("%d", v) end
    return string.format("%.3f", v)
  end
  return tostring(v)
end

local function result(t)
  local parts = { "RESULT", "client=lua", "workload=" .. workload }
  for _, kv in ipairs(t) do parts[#parts + 1] = kv[1] .. "=" .. fmt(kv[2]) end
  io.stdout:write(table.concat(parts, " "), "\n")
  io.stdout:flush()
end

local function connect()
  local c = signalr.builder():with_url(url):configure_logging("error"):build()
  c:start()
  return c
end

-- Timed phase bracket: wall, process CPU and host-thread CPU.
local function mark()
  return { wall = now(), cpu = process_cpu(), host = thread_cpu() }
end

local function per_op(a, b, n)
  return (b.cpu - a.cpu) * 1e6 / n, (b.host - a.host) * 1e6 / n
end

local W = {}

function W.invoke()
  local n, warmup = math.floor(num("n", 20000)), num("warmup", 1.5)
  local conn = connect()
  local until_t = now() + warmup
  local i = 0
  repeat i = i + 1; conn:invoke("Add", i, 1) until now() >= until_t
  local lat = {}
  local a = mark()
  for k = 1, n do
    local s = now()
    local r = conn:invoke("Add", k, 1)
    lat[k] = now() - s
    if r ~= k + 1 then error("Add(" .. k .. ", 1) returned " .. tostring(r)) end
  end
  local b = mark()
  conn:stop()
  table.sort(lat)
  local function pct(p) return lat[math.max(1, math.ceil(#lat * p))] * 1e6 end
  local cpu, host = per_op(a, b, n)
  result({ { "n", n }, { "elapsed_s", b.wall - a.wall }, { "rate", n / (b.wall - a.wall) },
    { "p50_us", pct(0.5) }, { "p99_us", pct(0.99) }, { "cpu_us", cpu }, { "host_cpu_us", host } })
end

function W.send()
  local n, warmup = math.floor(num("n", 200000)), num("warmup", 1.5)
  local conn = connect()
  -- warm-up: the same workload in chunks of n/10
  local chunk = math.max(1, n // 10)
  local until_t = now() + warmup
  repeat
    conn:invoke("ResetCount")
    for _ = 1, chunk do conn:send("Count") end
    local got = conn:invoke("CountDone")
    if got ~= chunk then error("warm-up: CountDone " .. tostring(got) .. ", expected " .. chunk) end
  until now() >= until_t
  conn:invoke("ResetCount")
  local a = mark()
  for _ = 1, n do conn:send("Count") end
  local got = conn:invoke("CountDone")
  local b = mark()
  conn:stop()
  if got ~= n then error("CountDone returned " .. tostring(got) .. ", expected " .. n) end
  local cpu, host = per_op(a, b, n)
  result({ { "n", n }, { "confirmed", got }, { "elapsed_s", b.wall - a.wall },
    { "rate", n / (b.wall - a.wall) }, { "cpu_us", cpu }, { "host_cpu_us", host } })
end

function W.receive()
  local n, warmup = math.floor(num("n", 200000)), num("warmup", 1.5)
  local conn = connect()
  local count, target, done_at = 0, 0, nil
  conn:on("Tick", function()
    count = count + 1
    if count == target then done_at = now() end
  end)
  local function push(m)
    count, target, done_at = 0, m, nil
    local r = conn:invoke("StartPush", "Tick", m, 0)
    if r ~= "started" then error("StartPush returned " .. tostring(r)) end
    while not done_at do signalr.poll(1) end
  end
  local until_t = now() + warmup
  repeat push(math.max(1, n // 10)) until now() >= until_t
  count, target, done_at = 0, n, nil
  local a = mark()
  push(n)
  local b = mark()
  b.wall = done_at
  conn:stop()
  if count ~= n then error("received " .. count .. ", expected " .. n) end
  local cpu, host = per_op(a, b, n)
  result({ { "n", n }, { "elapsed_s", b.wall - a.wall }, { "rate", n / (b.wall - a.wall) },
    { "cpu_us", cpu }, { "host_cpu_us", host } })
end

-- stream: Counter(n, 0) read with for ... in s:items()
function W.stream()
  local n, warmup = math.floor(num("n", 200000)), num("warmup", 1.5)
  local conn = connect()
  local function read(m)
    local c = 0
    for _ in conn:stream("Counter", m, 0):items() do c = c + 1 end
    return c
  end
  local until_t = now() + warmup
  repeat read(math.max(1, n // 10)) until now() >= until_t
  local a = mark()
  local got = read(n)
  local b = mark()
  conn:stop()
  if got ~= n then error("streamed " .. got .. ", expected " .. n) end
  local cpu, host = per_op(a, b, n)
  result({ { "n", n }, { "elapsed_s", b.wall - a.wall }, { "rate", n / (b.wall - a.wall) },
    { "cpu_us", cpu }, { "host_cpu_us", host } })
end

-- upload: n integers through a channel into Sum; until Sum returns
function W.upload()
  local n, warmup = math.floor(num("n", 200000)), num("warmup", 1.5)
  local conn = connect()
  local function write(m)
    local ch, total = signalr.channel(), nil
    signalr.spawn(function() total = conn:invoke("Sum", ch) end)
    for i = 1, m do ch:write(i) end
    ch:close()
    while total == nil do signalr.poll(1) end
    return total
  end
  local until_t = now() + warmup
  repeat write(math.max(1, n // 10)) until now() >= until_t
  local a = mark()
  local total = write(n)
  local b = mark()
  conn:stop()
  if total ~= n * (n + 1) // 2 then error("Sum returned " .. tostring(total)) end
  local cpu, host = per_op(a, b, n)
  result({ { "n", n }, { "elapsed_s", b.wall - a.wall }, { "rate", n / (b.wall - a.wall) },
    { "cpu_us", cpu }, { "host_cpu_us", host } })
end

function W.idle()
  local k, batch = math.floor(num("k", 1000)), math.floor(num("batch", 50))
  collectgarbage()
  collectgarbage()
  local before = rss_kib()
  local conns, started, failed, first_err = {}, 0, 0, nil
  local first_rss, first_reached = nil, 0
  local t0 = now()
  signalr.run(function()
    local launched = 0
    while launched < k do
      local m = math.min(batch, k - launched)
      local target = launched + m
      for _ = 1, m do
        launched = launched + 1
        local i = launched
        signalr.spawn(function()
          local ok, c = pcall(connect)
          if ok then conns[i] = c else failed = failed + 1; first_err = first_err or tostring(c) end
          started = started + 1
        end)
      end
      while started < target do signalr.sleep(0.002) end
      if not first_rss and launched < k then
        -- after the first batch: the one-time costs are paid
        collectgarbage()
        collectgarbage()
        first_rss = rss_kib()
        for i = 1, launched do if conns[i] then first_reached = first_reached + 1 end end
      end
    end
  end)
  local open_s = now() - t0
  local reached = 0
  for i = 1, k do if conns[i] then reached = reached + 1 end end
  signalr.sleep(1)
  collectgarbage()
  collectgarbage()
  local after = rss_kib()
  signalr.run(function()
    local left = 0
    for i = 1, k do
      local c = conns[i]
      if c then
        left = left + 1
        signalr.spawn(function() pcall(c.stop, c); left = left - 1 end)
      end
    end
    while left > 0 do signalr.sleep(0.01) end
  end)
  local t = { { "k", k }, { "reached", reached }, { "rss_before_kib", before },
    { "rss_after_kib", after }, { "kib_per_conn", reached > 0 and (after - before) / reached or 0 },
    { "open_per_s", reached / open_s } }
  if first_rss and reached > first_reached then
    t[#t + 1] = { "kib_per_conn_marginal", (after - first_rss) / (reached - first_reached) }
  end
  if failed > 0 then t[#t + 1] = { "failed", failed } end
  result(t)
  if first_err then io.stderr:write("first connect error: ", first_err, "\n") end
end

-- Warms the hub's JIT for `seconds`: invokes, pipelined sends, pushes.
function W.warm()
  local seconds = num("seconds", 5)
  local conn = connect()
  local pushed = 0
  conn:on("Tick", function() pushed = pushed + 1 end)
  local until_t = now() + seconds
  local rounds = 0
  repeat
    rounds = rounds + 1
    local t = now() + 0.3
    local i = 0
    repeat i = i + 1; conn:invoke("Add", i, 1) until now() >= t
    conn:invoke("ResetCount")
    for _ = 1, 20000 do conn:send("Count") end
    assert(conn:invoke("CountDone") == 20000)
    pushed = 0
    conn:invoke("StartPush", "Tick", 20000, 0)
    while pushed < 20000 do signalr.poll(1) end
  until now() >= until_t
  conn:stop()
  result({ { "rounds", rounds } })
end

local fn = W[workload]
if not fn then
  io.stderr:write("unknown workload " .. workload .. "\n")
  os.exit(2)
end
local ok, err = xpcall(fn, debug.traceback)
if not ok then
  local msg = tostring(type(err) == "table" and (err.message or err) or err)
  io.stdout:write("RESULT client=lua workload=", workload, " error=",
    (msg:gsub("%s+", "_"):sub(1, 200)), "\n")
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
os.exit(0)
