-- Keepalive and timeouts run on the core's own thread: the connection
-- lives while the host does not call in, and a silent server is noticed.
local signalr = require("signalr")
local helper = require("spec.helper")

-- Every transport runs the same specs. Long Polling has no server timeout
-- (a poll may be silent for 90 s; the official clients do not time it
-- out either), so the silent-server spec is not its.
local TRANSPORTS = {
  { name = "websockets", server_timeout = true },
  { name = "server_sent_events", server_timeout = true },
  { name = "long_polling", server_timeout = false },
}

for _, t in ipairs(TRANSPORTS) do
local transport = t.name
describe("keepalive over " .. transport, function()
  local url_opts = { transports = { transport } }
  -- The 25 s of the server defaults (15 s pings, 30 s timeout), scaled down:
  -- /quickhub pings every second (its heartbeat ticks once a second, so two
  -- pings may be up to 2 s apart) and drops a client silent for 3 s; the
  -- client pings every second and times out after 3 s. The host blocks for
  -- 9 s, three times either timeout, while the server pushes.
  it("stays connected and loses nothing while the host does not call in", function()
    local conn = signalr.builder()
      :with_url(helper.shared_hub().url .. "/quickhub", url_opts)
      :with_keepalive_interval(1)
      :with_server_timeout(3)
      :build()
    local got = {}
    conn:on("pushed", function(i) got[#got + 1] = i end)
    conn:start()
    local closed
    conn:on_close(function(e) closed = e or "nil" end)
    conn:invoke("StartPush", "pushed", 40, 100)
    os.execute("sleep 9") -- the host thread is busy: no poll, no call
    signalr.poll(0)
    assert.is_nil(closed and tostring(closed))
    assert.equals(8, conn:invoke("Add", 4, 4))
    helper.wait_until(function() signalr.poll(0.05); return #got >= 40 end, 5)
    assert.is_nil(closed)
    assert.equals("connected", conn.state)
    for i = 1, 40 do assert.equals(i, got[i]) end
    assert.equals(40, #got)
    conn:stop()
  end)

  describe("against a hub with short timeouts", function()
    local hub

    setup(function()
      hub = helper.start_hub({ env = { HUB_KEEPALIVE_MS = 300, HUB_CLIENT_TIMEOUT_MS = 1500 } })
    end)

    teardown(function()
      hub:stop()
    end)

    it("sends pings from the I/O thread so the server does not time the client out", function()
      local conn = signalr.builder()
        :with_url(hub.url .. "/testhub", url_opts)
        :with_keepalive_interval(0.3)
        :with_server_timeout(3)
        :build()
      conn:start()
      os.execute("sleep 4") -- over twice the server's client timeout
      assert.equals(2, conn:invoke("Add", 1, 1))
      conn:stop()
    end)

    local it_timeout = t.server_timeout and it or function() end
    it_timeout("closes with kind timeout when the server goes silent", function()
      local conn = signalr.builder()
        :with_url(hub.url .. "/testhub", url_opts)
        :with_server_timeout(1)
        :build()
      conn:start()
      local closed
      conn:on_close(function(e) closed = e end)
      local pending_err
      signalr.spawn(function()
        local ok, e = pcall(conn.invoke, conn, "Delay", 60000)
        pending_err = not ok and e
      end)
      hub:pause() -- SIGSTOP: the server vanishes without closing its sockets
      local ok = pcall(helper.wait_until, function() signalr.poll(0.05); return closed ~= nil end, 6)
      hub:resume()
      assert.is_true(ok, "the client noticed the silent server")
      assert.equals("timeout", closed.kind)
      assert.matches("Server timeout", closed.message, 1, true)
      assert.equals("closed", pending_err.kind)
      assert.equals("disconnected", conn.state)
    end)

    it("notices a killed server and fails pending calls", function()
      local conn = signalr.builder():with_url(hub.url .. "/testhub", url_opts):build()
      conn:start()
      local closed
      conn:on_close(function(e) closed = e end)
      local pending_err
      signalr.spawn(function()
        local ok, e = pcall(conn.invoke, conn, "Delay", 60000)
        pending_err = not ok and e
      end)
      hub:kill()
      helper.wait_until(function() signalr.poll(0.05); return closed ~= nil end, 10)
      assert.equals("closed", pending_err.kind)
      assert.is_table(closed)
      assert.equals("disconnected", conn.state)
      hub:restart()
    end)
  end)
end)
end
