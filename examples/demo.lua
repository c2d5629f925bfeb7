-- demo.lua: connect to a hub, invoke, receive a callback, print, stop.
-- Usage: lua5.4 examples/demo.lua http://127.0.0.1:5000/testhub
local signalr = require("signalr")

local url = arg[1] or "http://127.0.0.1:5000/testhub"

signalr.run(function()
  local conn = signalr.builder()
    :with_url(url)
    :configure_logging("warning")
    :build()

  local got = false
  conn:on("notify", function(text)
    print("server called notify(" .. tostring(text) .. ")")
    got = true
  end)

  conn:start()
  print("connected to " .. url .. " as " .. tostring(conn.connection_id))

  print("Add(40, 2) = " .. tostring(conn:invoke("Add", 40, 2)))
  local echoed = conn:invoke("Echo", { name = "lua", n = 9007199254740993, pi = 3.141592653589793 })
  print(string.format("Echo -> name=%s n=%d pi=%.17g", echoed.name, echoed.n, echoed.pi))

  conn:invoke("CallMeBack", "notify", "hello from the hub")
  while not got do signalr.sleep(0.01) end

  conn:stop()
  print("state: " .. conn.state)
end)
