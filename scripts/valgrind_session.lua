-- valgrind_session.lua: a whole Lua session (connect, invoke, handlers,
-- errors, a pending call failed by stop, a failed start, twice; then an
-- automatic reconnect with a retry policy, a stateful connection, streams
-- both ways and client results) for
-- scripts/test.sh to run under valgrind against the real hub.
local signalr = require("signalr")
local url = arg[1]
for round = 1, 2 do
  local conn = signalr.builder():with_url(url, { headers = { ["X-A"] = "b" }, access_token = function() return "t" end }):configure_logging("none"):build()
  local got
  conn:on("cb", function(x) got = x end)
  conn:start()
  assert(conn:invoke("Echo", { 1, 2.5, "x", { a = signalr.null }, signalr.array({}) }))
  conn:invoke("CallMeBack", "cb", "v")
  while not got do signalr.sleep(0.01) end
  pcall(conn.invoke, conn, "ThrowHub", "boom")
  signalr.spawn(function() pcall(conn.invoke, conn, "Delay", 5000) end)
  conn:stop()
end
-- A server Close with allowReconnect: a pending call fails, the policy runs,
-- the connection comes back and works.
local conn = signalr.builder():with_url(url)
  :with_automatic_reconnect(function(ctx) return ctx.previous_retry_count < 3 and 0 or nil end)
  :configure_logging("none"):build()
local back, lost
conn:on_reconnecting(function(e) lost = e end)
conn:on_reconnected(function(id) back = id end)
conn:start()
signalr.spawn(function() pcall(conn.invoke, conn, "Delay", 5000) end)
pcall(conn.invoke, conn, "CloseWithErrorReconnect", "bye")
while not back do signalr.sleep(0.01) end
assert(lost and conn:invoke("Add", 1, 2) == 3)
conn:stop()
local sf = signalr.builder():with_url((url:gsub("/testhub", "/statefulhub")))
  :with_stateful_reconnect({ buffer_size = 4096 }):configure_logging("none"):build()
sf:start()
for i = 1, 200 do sf:send("Record", i) end
assert(sf:invoke("GetRecorded") == 200)
sf:stop()
-- Streams both ways, a cancel, a paused slow reader, and client results.
local st = signalr.builder():with_url(url):with_stream_buffer(20):configure_logging("none"):build()
st:start()
local n = 0
for _ in st:stream("Counter", 300, 0):items() do n = n + 1 end
assert(n == 300)
local slow = st:stream("Counter", 2000, 0)
signalr.sleep(0.2) -- unread: the connection pauses and holds what comes
local c2 = 0
for _ in slow:items() do c2 = c2 + 1 end
assert(c2 == 2000)
local cs = st:stream("Counter", 100000, 1)
assert(cs:items()(cs) == 1)
cs:cancel()
local ch = signalr.channel()
local d = st:stream("Doubler", ch)
for i = 1, 50 do ch:write(i) end
ch:close()
local sum = 0
for x in d:items() do sum = sum + x end
assert(sum == 2550)
st:on("ask", function(x) return { x = x } end)
st:invoke("AskLater", "ask", { 5 })
while not st:invoke("AskOutcome") do signalr.sleep(0.01) end
local open = st:stream("Counter", 100000, 5)
assert(open:items()(open) == 1)
st:stop() -- fails the open stream
assert(not pcall(function() for _ in open:items() do end end))
local bad = signalr.builder():with_url((url:gsub("/testhub", "/nohub"))):build()
pcall(bad.start, bad)
collectgarbage()
print("done")
