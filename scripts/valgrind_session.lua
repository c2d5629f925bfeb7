-- valgrind_session.lua: a whole Lua session (connect, invoke, handlers,
-- errors, a pending call failed by stop, a failed start, twice) for
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
local bad = signalr.builder():with_url((url:gsub("/testhub", "/nohub"))):build()
pcall(bad.start, bad)
collectgarbage()
print("done")
