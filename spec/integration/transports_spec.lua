-- The same core behaviour over every transport this build has, against the
-- real hub (as the official clients' functional tests run per transport):
-- the transport is the one asked for, values stay exact both ways, server
-- calls reach handlers, messages of more than 1 MB travel both ways, the
-- server's Abort is a lost connection, and stop fails what is in flight.
-- Each runs with JSON and with MessagePack (not over Server-Sent Events,
-- which carries text only). A hub of its own allows large client messages
-- (the shared one keeps ASP.NET's 32 KB default).
local signalr = require("signalr")
local H = require("spec.helper")
local L = require("spec.support.live")
local C = require("spec.support.compat")

-- name: the option value; server: what GetTransport answers on the hub.
-- Each kind joins this list when it is built.
local TRANSPORTS = {
  { name = "websockets", server = "WebSockets" },
  { name = "server_sent_events", server = "ServerSentEvents" },
  { name = "long_polling", server = "LongPolling" },
}

local hub

describe("transports", function()
  setup(function()
    hub = H.start_hub({ env = { HUB_MAX_RECEIVE_BYTES = 0 } })
  end)

  teardown(function()
    if hub then hub:stop() end
  end)

  after_each(function() L.stop_all() end)

  for _, proto in ipairs({ "json", "messagepack" }) do
  for _, t in ipairs(TRANSPORTS) do
    -- Server-Sent Events carries text only, so not MessagePack (as the
    -- official clients choose)
    if proto == "json" or t.name ~= "server_sent_events" then
    describe("over " .. t.server .. " with " .. proto, function()
      local function connect(path, configure)
        local conn = L.build(hub.url .. (path or "/testhub"), function(b)
          b:with_hub_protocol(proto)
          if configure then configure(b) end
        end, { transports = { t.name } })
        conn:start()
        return conn
      end

      it("connects over it, and the server sees it", function()
        local conn = connect()
        assert.equals("connected", conn.state)
        assert.equals(t.server, conn:invoke("GetTransport"))
      end)

      it("sends our X-SignalR-User-Agent, which a header of the user's replaces", function()
        local conn = connect()
        local ua = conn:invoke("GetHeader", "X-SignalR-User-Agent")
        local v = signalr._VERSION or "%d+%.%d+%.%d+"
        assert.matches("^signalr%-lua/" .. v .. " %(" .. v .. "; [^;]+; Lua; 5%.%d%)$", ua)
        conn:stop()
        conn = L.build(hub.url .. "/testhub", nil,
          { transports = { t.name }, headers = { ["x-signalr-user-agent"] = "game/2.1" } })
        conn:start()
        assert.equals("game/2.1", conn:invoke("GetHeader", "X-SignalR-User-Agent"))
      end)

      it("keeps values exact both ways and runs the server's calls in order", function()
        local conn = connect()
        assert.equals(C.maxinteger, conn:invoke("Echo", C.maxinteger))
        assert.equals(0.1, conn:invoke("Echo", 0.1))
        local v = conn:invoke("Echo", { a = signalr.array({}), b = signalr.map({}), c = "ü\0x" })
        assert.equals(0, #v.a)
        assert.equals("ü\0x", v.c)
        local seen = {}
        conn:on("tick", function(i) seen[#seen + 1] = i end)
        assert.equals(200, conn:invoke("CallMeBackMany", "tick", 200))
        L.wait_for(function() return #seen == 200 end, 10, "200 ticks")
        for i = 1, 200 do assert.equals(i, seen[i]) end
        conn:send("Record", "sent")
        L.wait_for(function() return conn:invoke("GetRecorded") == 1 end, 5, "the send")
      end)

      it("carries messages of more than 1 MB both ways", function()
        local conn = connect()
        local big = ("0123456789abcdef"):rep(96 * 1024) -- 1.5 MiB
        local back = conn:invoke("Echo", big)
        assert.equals(#big, #back)
        assert.equals(big, back)
        local got
        conn:on("big", function(x) got = x end)
        assert.equals("ok", conn:invoke("CallMeBack", "big", big))
        L.wait_for(function() return got end, 10, "the pushed string")
        assert.equals(big, got)
      end)

      it("ends on the server's Abort: the call fails with kind closed, on_close gets nil", function()
        -- The server answers Context.Abort() with a Close message without
        -- an error; the official clients then report no error either.
        local conn = connect()
        local closed
        conn:on_close(function(err) closed = err or false end)
        local ok, err = pcall(conn.invoke, conn, "Abort")
        assert.is_false(ok)
        assert.equals("closed", err.kind)
        L.wait_for(function() return closed ~= nil end, 10, "on_close")
        assert.is_false(closed)
        assert.equals("disconnected", conn.state)
      end)

      it("stops, failing a call in flight with kind closed", function()
        local conn = connect()
        local p = L.pending_invoke(conn, "Delay", 30000)
        H.pump(0.05) -- let it leave (nothing to await)
        conn:stop()
        L.wait_for(function() return p.done end, 5, "the pending call")
        assert.is_false(p.ok)
        assert.equals("closed", p.err.kind)
        assert.equals("disconnected", conn.state)
      end)
    end)
    end
  end
  end

  describe("choice and fallback", function()
    it("takes the transport a hub offers when it has only that one", function()
      for path, want in pairs({ ["/sseonly"] = "ServerSentEvents", ["/lponly"] = "LongPolling" }) do
        local conn = L.build(hub.url .. path)
        conn:start()
        assert.equals(want, conn:invoke("GetTransport"))
        conn:stop()
      end
    end)

    it("falls back from WebSockets to Server-Sent Events behind a proxy that refuses WebSockets", function()
      local proxy = H.start_proxy(hub.port)
      proxy:no_upgrade(true)
      local logs = {}
      local conn = L.build(proxy:url("/testhub"), function(b)
        b:configure_logging("warning", function(_, msg) logs[#logs + 1] = msg end)
      end)
      local ok, err = pcall(conn.start, conn)
      assert.is_true(ok, tostring(err))
      assert.equals("ServerSentEvents", conn:invoke("GetTransport"))
      assert.equals(1, proxy:stats().upgrades)
      local warned = false
      for _, l in ipairs(logs) do
        if l:find("failed to start the WebSockets transport", 1, true) and l:find("403", 1, true) then
          warned = true
        end
      end
      assert.is_true(warned, "the failed WebSockets start is logged with its reason")
      assert.equals(42, conn:invoke("Add", 40, 2))
      conn:stop()
      -- asked for WebSockets alone, the same proxy is an error that says why
      local ws = L.build(proxy:url("/testhub"), nil, { transports = { "websockets" } })
      ok, err = pcall(ws.start, ws)
      assert.is_false(ok)
      assert.equals("transport", err.kind)
      assert.matches("HTTP 403", err.message, 1, true)
      proxy:stop()
    end)

    it("connects without stateful reconnect over Server-Sent Events, and says so", function()
      local logs = {}
      local conn = L.build(hub.url .. "/statefulhub", function(b)
        b:with_stateful_reconnect()
        b:configure_logging("warning", function(_, msg) logs[#logs + 1] = msg end)
      end, { transports = { "server_sent_events" } })
      conn:start()
      assert.equals("ServerSentEvents", conn:invoke("GetTransport"))
      local said = false
      for _, l in ipairs(logs) do
        if l:find("stateful reconnect needs WebSockets", 1, true) then said = true end
      end
      assert.is_true(said)
    end)

    it("goes through the proxy option: over WebSockets, then Long Polling when asked", function()
      -- hub.invalid never resolves; only the proxy (the spec's loopback
      -- proxy, told where it is) leads to the hub: the WebSocket through a
      -- CONNECT tunnel, the HTTP requests in absolute form. More in
      -- proxy_spec.lua.
      local proxy = H.start_proxy(hub.port)
      proxy:map("hub.invalid", "127.0.0.1")
      local url = "http://hub.invalid:" .. hub.port .. "/testhub"
      local conn = L.build(url, nil, { proxy = proxy:url() })
      conn:start()
      assert.equals("WebSockets", conn:invoke("GetTransport"))
      assert.equals(1, proxy:stats().connects)
      conn:stop()
      conn = L.build(url, nil, { proxy = proxy:url(), transports = { "long_polling" } })
      conn:start()
      assert.equals("LongPolling", conn:invoke("GetTransport"))
      assert.equals(5, conn:invoke("Add", 2, 3))
      assert.equals(1, proxy:stats().connects)
      conn:stop()
      proxy:stop()
    end)

    it("lists every transport's failure when none can start", function()
      -- the fake endpoint answers neither a WebSocket upgrade for this mode
      -- nor an event stream
      local conn = L.build(hub.url .. "/fake/longtoken")
      local ok, err = pcall(conn.start, conn)
      assert.is_false(ok)
      assert.equals("transport", err.kind)
      assert.matches("unable to connect to the server with any of the available transports", err.message, 1, true)
      assert.matches("WebSockets failed: ", err.message, 1, true)
      assert.matches("ServerSentEvents failed: ", err.message, 1, true)
    end)
  end)
end)
