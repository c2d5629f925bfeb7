-- A connection that cannot be made says what failed, from the system's own
-- answer: a closed port is "Connection refused", a name that does not
-- resolve says so with the name. Over every transport (their negotiate goes
-- through libcurl), and straight to WebSockets (libwebsockets, whose
-- refused connect is explained by the errno of a probe; see ws_transport.c).
local H = require("spec.helper")
local L = require("spec.support.live")

local CASES = {
  { what = "negotiate (WebSockets)", opts = { transports = { "websockets" } } },
  { what = "negotiate (Server-Sent Events)", opts = { transports = { "server_sent_events" } } },
  { what = "negotiate (Long Polling)", opts = { transports = { "long_polling" } } },
  { what = "straight to WebSockets", opts = { transports = "websockets", skip_negotiation = true } },
}

local function start_error(url, opts)
  local conn = L.build(url, nil, opts)
  local t0 = H.mono()
  local ok, err = pcall(conn.start, conn)
  assert.is_false(ok)
  assert.equals("transport", err.kind)
  assert.equals("disconnected", conn.state)
  return err.message, H.mono() - t0
end

describe("connect failures", function()
  after_each(function() L.stop_all() end)

  for _, c in ipairs(CASES) do
    describe(c.what, function()
      it("says the connection was refused on a closed port", function()
        local port = H.free_port()
        local msg, took = start_error("http://127.0.0.1:" .. port .. "/testhub", c.opts)
        assert.matches("Connection refused", msg, 1, true)
        assert.matches("127.0.0.1", msg, 1, true)
        assert.matches(tostring(port), msg, 1, true)
        assert.truthy(took < 5, "refused at once")
      end)

      it("says the host name did not resolve", function()
        local msg = start_error("http://nohost.invalid:5000/testhub", c.opts)
        assert.matches("resolve", msg, 1, true)
        assert.matches("nohost.invalid", msg, 1, true)
      end)
    end)
  end
end)
