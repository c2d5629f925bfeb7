-- wire.lua: bytes on the wire per message, JSON against MessagePack, over
-- WebSockets: the connection goes through the loopback proxy of the specs
-- (spec/tools/cutproxy.c), which counts the bytes each way, and each
-- workload's bytes are divided by its messages (WebSocket framing included).
-- Usage: lua5.4 bench/wire.lua http://127.0.0.1:PORT   (make bench-wire)
local signalr = require("signalr")
local H = require("spec.helper")

local base = assert(arg[1], "hub base URL")
local port = assert(tonumber(base:match(":(%d+)$")), "the URL's port")
local N = 2000

local function counts(proxy)
  local s = proxy:stats()
  return s.up, s.down
end

local function run(protocol)
  local proxy = H.start_proxy(port)
  local conn = signalr.builder()
    :with_url(proxy:url("/testhub"), { transports = { "websockets" } })
    :with_hub_protocol(protocol):configure_logging("error"):build()
  conn:start()
  conn:invoke("Add", 1, 2)
  local out = {}
  local u0, d0 = counts(proxy)
  for i = 1, N do conn:invoke("Add", i, 1) end
  local u1, d1 = counts(proxy)
  out.invoke_up, out.completion_down = (u1 - u0) / N, (d1 - d0) / N
  local player = { id = 123456, name = "player-one", pos = { x = 1.5, y = -2.25, z = 0.0 }, alive = true }
  for _ = 1, N do conn:send("Record", player) end
  conn:invoke("ClearRecorded")
  local u2, d2 = counts(proxy)
  out.send_up = (u2 - u1) / N -- the one invoke after the sends adds under 0.1 byte per message
  local got = 0
  conn:on("tick", function() got = got + 1 end)
  conn:invoke("CallMeBackMany", "tick", N)
  while got < N do signalr.poll(0.1) end
  local _, d3 = counts(proxy)
  out.call_down = (d3 - d2) / N
  conn:stop()
  proxy:stop()
  return out
end

local json, mp = run("json"), run("messagepack")
print(string.format("%-44s %8s %12s %6s", "bytes per message (WebSockets)", "JSON", "MessagePack", "ratio"))
local rows = {
  { "invoke Add(i, 1), client -> server", "invoke_up" },
  { "its completion, server -> client", "completion_down" },
  { "send Record({id, name, pos{x,y,z}, alive})", "send_up" },
  { "server call tick(i), server -> client", "call_down" },
}
for _, r in ipairs(rows) do
  local a, b = json[r[2]], mp[r[2]]
  print(string.format("%-44s %8.1f %12.1f %6.2f", r[1], a, b, b / a))
end
