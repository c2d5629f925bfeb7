-- Stateful reconnect (ASP.NET Core 8+, /statefulhub: AllowStatefulReconnects)
-- against the real hub: TCP connections cut by the loopback proxy
-- (spec/tools/cutproxy.c) while messages flow both ways; the server counts
-- what it received (TestHub's Record / GetRecorded / GetRecordedItems) and
-- pushes numbered messages (StartPush), so a loss or a duplicate shows.
--
-- As the .NET client does, a successful reattach is invisible to the user:
-- no on_reconnecting / on_reconnected, the state stays "connected" and the
-- connection id is kept. A refused reattach (the server forgot the
-- connection) falls back to a normal reconnect when automatic reconnect is on.
local signalr = require("signalr")
local H = require("spec.helper")
local L = require("spec.support.live")
local build, track, wait_for, pending_invoke = L.build, L.track, L.wait_for, L.pending_invoke

local CANCELED = "Invocation canceled due to the underlying connection being closed."

-- The reattach was invisible: no events, same id.
local function assert_invisible(conn, ev, id)
  assert.equals(0, #ev.reconnecting, "no on_reconnecting for a reattach")
  assert.equals(0, #ev.reconnected, "no on_reconnected for a reattach")
  assert.equals(0, #ev.closed, "no on_close")
  assert.equals("connected", conn.state)
  assert.equals(id, conn.connection_id)
  assert.equals(id, conn:invoke("GetConnectionId"), "the server kept the same connection")
end

local function assert_sequence(items, n, what)
  assert.equals(n, #items, what .. ": count")
  for i = 1, n do
    if items[i] ~= i then
      assert.equals(i, items[i], what .. ": item " .. i .. " (lost, doubled or out of order)")
    end
  end
end

describe("stateful reconnect", function()
  local proxy

  L.proxied(nil, function(_, p) proxy = p end)

  it("reattaches after a cut with the same connection, without reconnect events, staying connected", function()
    local conn = build(proxy:url("/statefulhub"), function(b) b:with_stateful_reconnect() end)
    local ev = track(conn)
    conn:start()
    local id = conn.connection_id
    assert.is_string(id)
    local states = {}
    local accepted = proxy:stats().accepted
    proxy:cut()
    wait_for(function()
      states[conn.state] = true
      return proxy:stats().accepted > accepted
    end, 5, "the client opened a new transport")
    local r = pending_invoke(conn, "Add", 1, 2)
    wait_for(function()
      states[conn.state] = true
      return r.done
    end, 5, "an invoke after the reattach")
    assert.is_true(r.ok, tostring(r.err))
    assert.equals(3, r.result)
    assert.same({ connected = true }, states)
    assert_invisible(conn, ev, id)
  end)

  it("delivers client sends in flight across cuts exactly once and in order", function()
    local conn = build(proxy:url("/statefulhub"), function(b) b:with_stateful_reconnect() end)
    local ev = track(conn)
    conn:start()
    local id = conn.connection_id
    conn:invoke("ClearRecorded")
    local N = 3000
    for i = 1, N do
      conn:send("Record", i)
      if i == 1000 or i == 2000 then proxy:cut() end
    end
    assert.equals(N, conn:invoke("GetRecorded"))
    assert_sequence(conn:invoke("GetRecordedItems"), N, "recorded on the server")
    assert_invisible(conn, ev, id)
  end)

  it("delivers server pushes in flight across a cut exactly once and in order", function()
    local conn = build(proxy:url("/statefulhub"), function(b) b:with_stateful_reconnect() end)
    local ev = track(conn)
    local got = {}
    conn:on("tick", function(i) got[#got + 1] = i end)
    conn:start()
    local id = conn.connection_id
    local N = 400
    assert.equals("started", conn:invoke("StartPush", "tick", N, 2))
    wait_for(function() return #got >= 100 end, 5, "the first pushes")
    proxy:cut()
    wait_for(function() return #got >= N end, 5, "every push")
    assert.equals(N, conn:invoke("PushesDone", "tick"))
    H.pump(0.2) -- a duplicate would come now: no event to wait for
    assert_sequence(got, N, "received by the client")
    assert_invisible(conn, ev, id)
  end)

  it("completes invocations pending across the cut and made while detached", function()
    local conn = build(proxy:url("/statefulhub"), function(b) b:with_stateful_reconnect() end)
    local ev = track(conn)
    conn:start()
    local id = conn.connection_id
    local slow = pending_invoke(conn, "DelayEcho", 1000, "slow")
    H.pump(0.2) -- let it reach the server (nothing to wait for)
    proxy:cut()
    -- made at once, before the client may even have noticed the loss
    assert.equals(42, conn:invoke("Add", 20, 22))
    wait_for(function() return slow.done end, 5, "the pending call ended")
    assert.is_true(slow.ok, "the pending call completed: " .. tostring(slow.err))
    assert.equals("slow", slow.result)
    assert_invisible(conn, ev, id)
  end)

  it("makes sends wait while the buffer is full, and loses none of them", function()
    local conn = build(proxy:url("/statefulhub"), function(b) b:with_stateful_reconnect({ buffer_size = 2000 }) end)
    local ev = track(conn)
    conn:start()
    local id = conn.connection_id
    conn:invoke("ClearRecorded")
    proxy:pause() -- no acknowledgement can come back
    local sent, failed = 0, nil
    signalr.spawn(function()
      -- signalr.pcall: pcall, that Lua 5.1 can yield across too
      local ok, err = signalr.pcall(function()
        for i = 1, 200 do
          conn:send("Record", i)
          sent = i
        end
      end)
      if not ok then failed = err end
    end)
    H.pump(0.5) -- the sender fills the buffer and waits: no event marks that
    assert.is_nil(failed)
    assert.is_true(sent >= 10 and sent < 200, "sends wait when 2000 bytes are unacknowledged (sent " .. sent .. ")")
    proxy:cut()
    proxy:resume()
    wait_for(function() return sent == 200 or failed end, 5, "the sender finished")
    assert.is_nil(failed)
    assert.equals(200, conn:invoke("GetRecorded"))
    assert_sequence(conn:invoke("GetRecordedItems"), 200, "recorded on the server")
    assert_invisible(conn, ev, id)
  end)

  it("reconnects normally where the server does not allow stateful reconnect", function()
    local conn = build(proxy:url("/testhub"), function(b)
      b:with_stateful_reconnect()
      b:with_automatic_reconnect({ 0, 0.2 })
    end)
    local ev = track(conn)
    conn:start()
    local id = conn.connection_id
    proxy:cut()
    wait_for(function() return #ev.reconnected == 1 end, 5, "on_reconnected")
    assert.equals(1, #ev.reconnecting)
    assert.are_not.equal(id, conn.connection_id)
    assert.equals(conn.connection_id, conn:invoke("GetConnectionId"))
  end)

  describe("when the server forgot the connection (hub restarted)", function()
    local hub2, proxy2

    L.proxied({ hub = {} }, function(h, p) hub2, proxy2 = h, p end)

    -- The client's TCP connection stays up (the proxy is frozen) while the hub
    -- restarts on the same port; then the connection drops and the client
    -- tries to reattach to a server that never heard of its token.
    local function restart_behind_frozen_proxy()
      proxy2:pause()
      hub2:kill()
      hub2:start()
      proxy2:resume()
    end

    it("falls back to a normal reconnect and fails the pending calls", function()
      local conn = build(proxy2:url("/statefulhub"), function(b)
        b:with_stateful_reconnect()
        b:with_automatic_reconnect({ 0, 0.2, 0.5, 1 })
      end)
      local ev = track(conn)
      conn:start()
      local id = conn.connection_id
      local pending = pending_invoke(conn, "Delay", 60000)
      H.pump(0.1) -- let it reach the server (nothing to wait for)
      restart_behind_frozen_proxy()
      wait_for(function() return #ev.reconnected == 1 end, 10, "on_reconnected")
      assert.equals(1, #ev.reconnecting)
      assert.is_table(ev.reconnecting[1].err)
      assert.equals(0, #ev.closed)
      assert.is_true(pending.done)
      assert.is_false(pending.ok)
      assert.equals("closed", pending.err.kind)
      assert.matches(CANCELED, pending.err.message, 1, true)
      local new_id = ev.reconnected[1].id
      assert.is_string(new_id)
      assert.are_not.equal(id, new_id)
      assert.equals(new_id, conn:invoke("GetConnectionId"))
      assert.equals("connected", conn.state)

      -- and the new connection is stateful again: a cut is a reattach
      proxy2:cut()
      assert.equals(new_id, conn:invoke("GetConnectionId"))
      assert.equals(1, #ev.reconnecting)
      assert.equals(1, #ev.reconnected)
    end)

    it("closes with an error and fails the pending calls without automatic reconnect", function()
      local conn = build(proxy2:url("/statefulhub"), function(b) b:with_stateful_reconnect() end)
      local ev = track(conn)
      conn:start()
      local pending = pending_invoke(conn, "Delay", 60000)
      H.pump(0.1) -- let it reach the server (nothing to wait for)
      restart_behind_frozen_proxy()
      wait_for(function() return #ev.closed == 1 end, 10, "on_close")
      assert.is_table(ev.closed[1].err)
      assert.equals(0, #ev.reconnecting)
      assert.equals("disconnected", conn.state)
      assert.is_true(pending.done)
      assert.equals("closed", pending.err.kind)
      assert.matches(CANCELED, pending.err.message, 1, true)
    end)
  end)
end)

describe("stateful reconnect with streams", function()
  local proxy

  L.proxied(nil, function(_, p) proxy = p end)

  it("keeps a server-to-client stream and a channel through cuts: every item once, in order", function()
    local conn = build(proxy:url("/statefulhub"), function(b) b:with_stateful_reconnect() end)
    local ev = track(conn)
    conn:start()
    local id = conn.connection_id
    -- down: 1,500 items at a steady pace; up: a channel into Collect
    local s = conn:stream("Counter", 1500, 1)
    local ch = signalr.channel()
    local up = pending_invoke(conn, "Collect", ch)
    local got, written = {}, 0
    local cuts = 0
    while true do
      local item = s:items()(s)
      if item == nil then break end
      got[#got + 1] = item
      if #got % 5 == 0 and written < 300 then
        written = written + 1
        ch:write(written)
      end
      if #got % 300 == 0 then
        proxy:cut()
        cuts = cuts + 1
      end
    end
    ch:close()
    wait_for(function() return up.done end, 10, "Collect")
    assert.is_true(cuts >= 4)
    assert_sequence(got, 1500, "the server's stream")
    assert.is_true(up.ok, tostring(up.err))
    assert_sequence(up.result, written, "the channel")
    assert_invisible(conn, ev, id)
  end)
end)
