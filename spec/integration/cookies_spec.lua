-- A cookie jar per connection, over every transport: what negotiate's
-- answer sets (a sticky-session load balancer's cookie) travels on the
-- transport's requests (the WebSocket upgrade; the SSE GET and POSTs; the
-- Long Polling polls, POSTs and DELETE); a cookie that expired, or is for
-- another path, does not; the jar outlives a stop and start of the same
-- connection and is not shared with another connection. The hub's
-- /cookiehub sets the cookies and records each request's (TestHub.cs).
local H = require("spec.helper")
local L = require("spec.support.live")

local TRANSPORTS = {
  { name = "websockets", server = "WebSockets" },
  { name = "server_sent_events", server = "ServerSentEvents" },
  { name = "long_polling", server = "LongPolling" },
}

describe("cookies", function()
  local hub

  setup(function() hub = H.shared_hub() end)
  after_each(function() L.stop_all() end)

  for _, t in ipairs(TRANSPORTS) do
    describe("over " .. t.server, function()
      local function connect()
        local conn = L.build(hub.url .. "/cookiehub", nil, { transports = { t.name } })
        conn:start()
        assert.equals(t.server, conn:invoke("GetTransport"))
        return conn
      end

      it("sends negotiate's cookie on every request, not an expired or another path's one", function()
        local conn = connect()
        local cookies = conn:invoke("GetCookies")
        assert.matches("^%x+$", cookies.sticky)
        assert.is_nil(cookies.stale, "a cookie whose expiry has passed")
        assert.is_nil(cookies.elsewhere, "a cookie for another path")
        conn:send("Record", 1) -- one more POST for the HTTP transports
        assert.equals(1, conn:invoke("GetRecorded"))
        local reqs = conn:invoke("GetCookieRequests")
        assert.truthy(#reqs >= 1)
        local methods = {}
        for _, r in ipairs(reqs) do
          assert.equals("sticky=" .. cookies.sticky, r:match("sticky=.*$"), r)
          methods[r:match("^%u+")] = true
        end
        if t.name ~= "websockets" then assert.is_true(methods.POST, "the POSTs carry it") end
        assert.is_true(methods.GET)
      end)

      it("keeps the jar through an automatic reconnect", function()
        local conn = L.build(hub.url .. "/cookiehub", function(b) b:with_automatic_reconnect({ 0 }) end,
          { transports = { t.name } })
        conn:start()
        local first = conn:invoke("GetCookies").sticky
        local back
        conn:on_reconnected(function() back = true end)
        pcall(conn.invoke, conn, "CloseWithErrorReconnect", "go away for a moment")
        L.wait_for(function() return back end, 10, "the reconnect")
        local again = conn:invoke("GetCookies")
        assert.equals(first, again.sticky, "the new negotiate sent it back, and it was kept")
        for _, r in ipairs(conn:invoke("GetCookieRequests")) do
          assert.equals("sticky=" .. first, r:match("sticky=.*$"), r)
        end
      end)

      it("keeps the jar across a stop and start, and gives another connection its own", function()
        local conn = connect()
        local first = conn:invoke("GetCookies").sticky
        conn:stop()
        conn:start()
        assert.equals(first, conn:invoke("GetCookies").sticky, "the same connection, restarted")
        local other = connect()
        local theirs = other:invoke("GetCookies").sticky
        assert.matches("^%x+$", theirs)
        assert.are_not.equal(first, theirs)
      end)
    end)
  end

  it("leaves a cookie out of the WebSocket upgrade once its Max-Age has passed", function()
    -- libcurl expires cookies on its own requests; the upgrade's header is
    -- picked from the jar by the client, which must skip expired ones too.
    local t0 = os.time()
    local conn = L.build(hub.url .. "/cookiehub", nil, { transports = { "websockets" } })
    conn:start()
    local c = conn:invoke("GetCookies")
    assert.equals("1", c.brief, "Max-Age=2 has not passed yet")
    conn:stop()
    -- Max-Age is counted in whole seconds from negotiate
    L.wait_for(function() return os.time() >= t0 + 3 end, 5, "the cookie's expiry")
    conn:start()
    c = conn:invoke("GetCookies")
    assert.matches("^%x+$", c.sticky)
    assert.is_nil(c.brief)
  end)

  for _, t in ipairs(TRANSPORTS) do
    it("sends a Cookie header of the user's with the jar's, in one header, over " .. t.server, function()
      local conn = L.build(hub.url .. "/cookiehub", nil,
        { transports = { t.name }, headers = { Cookie = "mine=yes; also=1" } })
      conn:start()
      local c = conn:invoke("GetCookies")
      assert.equals("yes", c.mine)
      assert.equals("1", c.also)
      assert.matches("^%x+$", c.sticky)
      assert.equals(1, conn:invoke("GetCookieHeaderCount"), "one Cookie header")
      for _, r in ipairs(conn:invoke("GetCookieRequests")) do
        assert.equals("sticky=" .. c.sticky, r:match("sticky=.*$"), r)
      end
    end)
  end
end)
