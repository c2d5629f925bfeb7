-- A message over the server's MaximumReceiveMessageSize (32 KB on the shared
-- hub) makes the server close the connection with an error; the close and
-- the pending call carry the server's own text, over every transport.
-- /detailedhub has EnableDetailedErrors, so that text names the limit.
local H = require("spec.helper")
local L = require("spec.support.live")

local TRANSPORTS = {
  { name = "websockets", server = "WebSockets" },
  { name = "server_sent_events", server = "ServerSentEvents" },
  { name = "long_polling", server = "LongPolling" },
}

describe("the server's maximum message size", function()
  local hub
  setup(function() hub = H.shared_hub() end)
  after_each(function() L.stop_all() end)

  for _, t in ipairs(TRANSPORTS) do
    it("closes with the server's error text over " .. t.server, function()
      local conn = L.build(hub.url .. "/detailedhub", nil, { transports = { t.name } })
      conn:start()
      assert.equals(t.server, conn:invoke("GetTransport"))
      local closed
      conn:on_close(function(err) closed = err or false end)
      local ok, err = pcall(conn.invoke, conn, "Echo", ("x"):rep(40 * 1024))
      assert.is_false(ok)
      assert.equals("closed", err.kind)
      L.wait_for(function() return closed ~= nil end, 10, "on_close")
      assert.is_table(closed, "closed with an error")
      assert.equals("closed", closed.kind)
      assert.matches("Server closed the connection with an error", closed.message, 1, true)
      assert.matches("The maximum message size of 32768B was exceeded", closed.message, 1, true)
      assert.matches("The maximum message size of 32768B was exceeded", err.message, 1, true)
      assert.equals("disconnected", conn.state)
    end)
  end
end)
