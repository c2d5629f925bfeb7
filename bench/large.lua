-- large.lua: peak memory while receiving one large message, as a multiple
-- of its size. Each size runs in a process of its own (the peak, VmHWM,
-- only grows): it connects, warms up, then invokes MakeString(n), which
-- returns a string of n bytes, and reports the growth of the peak RSS.
-- The result string itself is 1x; everything above is copies on the way.
-- Usage: lua5.4 bench/large.lua http://127.0.0.1:PORT [transport] [protocol]
-- (make bench-large; BENCH_ARGS="long_polling messagepack")
local base = assert(arg[1], "hub base URL")
local transport = arg[2] or "websockets"
local protocol = arg[3] or "json"
local child_size = os.getenv("LARGE_CHILD_SIZE")

local function status(field)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. field .. ":%s+(%d+)")
    if v then return tonumber(v) * 1024 end
  end
end

if child_size then
  local signalr = require("signalr")
  local n = math.tointeger(tonumber(child_size))
  local conn = signalr.builder():with_url(base .. "/testhub", { transports = { transport } })
    :with_hub_protocol(protocol):configure_logging("error"):build()
  conn:start()
  assert(#conn:invoke("MakeString", 1000) == 1000)
  collectgarbage()
  local before = status("VmHWM")
  local s = conn:invoke("MakeString", n)
  local peak = status("VmHWM")
  assert(#s == n)
  print(string.format("%d %d", n, peak - before))
  conn:stop()
  return
end

local lua = arg[-1] or "lua5.4"
print(string.format("transport: %s, protocol: %s", transport, protocol))
print(string.format("%10s %12s %8s", "size", "peak growth", "x size"))
for _, mb in ipairs({ 1, 4, 15 }) do
  local n = mb * 1000 * 1000
  local p = assert(io.popen(("LARGE_CHILD_SIZE=%d %s %s %s %s %s"):format(n, lua, arg[0], base, transport,
    protocol)))
  local out = p:read("a")
  p:close()
  local size, grew = out:match("(%d+) (%d+)")
  assert(size, "the child failed: " .. out)
  print(string.format("%8d MB %9.1f MB %7.2fx", mb, grew / 1e6, grew / size))
end
