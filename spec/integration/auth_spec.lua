-- access_token over every transport against the hub's guarded /authhub
-- (TestTokenAuthHandler in TestHub.cs checks "Authorization: Bearer" itself,
-- no identity provider): the right token connects and every request of the
-- transport is authenticated; a wrong or missing one is refused at
-- negotiate with kind "negotiate" and status 401.
local H = require("spec.helper")
local L = require("spec.support.live")

local TRANSPORTS = {
  { name = "websockets", server = "WebSockets" },
  { name = "server_sent_events", server = "ServerSentEvents" },
  { name = "long_polling", server = "LongPolling" },
}

describe("access_token", function()
  local hub

  setup(function() hub = H.shared_hub() end)
  after_each(function() L.stop_all() end)

  for _, t in ipairs(TRANSPORTS) do
    describe("over " .. t.server, function()
      local function build(token)
        return L.build(hub.url .. "/authhub", nil, { transports = { t.name }, access_token = token })
      end

      it("connects with the right token, as a string or a function", function()
        local conn = build("valid-token")
        conn:start()
        assert.equals(t.server, conn:invoke("GetTransport"))
        assert.equals("test-user", conn:invoke("GetUserName"))
        assert.equals(5, conn:invoke("Add", 2, 3)) -- the sends are authenticated too
        conn:stop()
        local calls = 0
        conn = build(function() calls = calls + 1; return "valid-token" end)
        conn:start()
        assert.equals("test-user", conn:invoke("GetUserName"))
        assert.truthy(calls >= 1)
      end)

      it("connects with a 6 KB token, as some identity providers issue", function()
        local long = "long-valid-" .. ("0123456789abcdef"):rep(384)
        assert.is_true(#long > 6000)
        local conn = build(long)
        conn:start()
        assert.equals(t.server, conn:invoke("GetTransport"))
        assert.equals("long-token-user", conn:invoke("GetUserName"))
        assert.equals(5, conn:invoke("Add", 2, 3))
      end)

      it("is refused with 401, kind negotiate, for a wrong or missing token", function()
        for _, token in ipairs({ "wrong-token", false }) do
          local conn = build(token or nil)
          local ok, err = pcall(conn.start, conn)
          assert.is_false(ok)
          assert.equals("negotiate", err.kind)
          assert.equals(401, err.status)
          assert.matches("401", err.message, 1, true)
          assert.equals("disconnected", conn.state)
        end
      end)
    end)
  end
end)

describe("access_token straight to WebSockets (skip_negotiation)", function()
  after_each(function() L.stop_all() end)

  it("connects with the right token; a wrong one is the upgrade's 401", function()
    local url = H.shared_hub().url .. "/authhub"
    local conn = L.build(url, nil, { skip_negotiation = true, transports = "websockets", access_token = "valid-token" })
    conn:start()
    assert.equals("test-user", conn:invoke("GetUserName"))
    conn = L.build(url, nil, { skip_negotiation = true, transports = "websockets", access_token = "wrong" })
    local ok, err = pcall(conn.start, conn)
    assert.is_false(ok)
    -- no negotiate took place: the WebSocket upgrade itself was refused
    assert.equals("transport", err.kind)
    assert.equals(401, err.status)
    assert.matches("HTTP 401", err.message, 1, true)
  end)
end)
