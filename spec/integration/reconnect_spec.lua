-- Automatic reconnect against the real ASP.NET Core hub with real faults:
-- the hub killed and restarted on the same port, frozen with SIGSTOP, Close
-- messages from the server, and TCP connections cut, refused or frozen by the
-- loopback proxy spec/tools/cutproxy.c. Expected behaviour is the official
-- clients' (see ../shared/API.md).
local H = require("spec.helper")
local L = require("spec.support.live")
local build, track, wait_for, pending_invoke = L.build, L.track, L.wait_for, L.pending_invoke

local CANCELED = "Invocation canceled due to the underlying connection being closed."
local SERVER_TIMEOUT = "Server timeout elapsed without receiving a message from the server."

local hub, proxy

-- A retry policy: `delay` seconds while previous_retry_count < max, then nil.
-- Every call's context is kept in `calls` (copied: n, elapsed, reason, t).
local function policy(delay, max, calls)
  return function(ctx)
    calls[#calls + 1] = { n = ctx.previous_retry_count, elapsed = ctx.elapsed, reason = ctx.retry_reason,
      t = H.mono() }
    if ctx.previous_retry_count < max then return delay end
    return nil
  end
end

local function is_error(e)
  return type(e) == "table" and type(e.kind) == "string" and type(e.message) == "string"
end

describe("automatic reconnect", function()
  -- a private hub (killed, restarted and frozen here) pinging every second
  L.proxied({ hub = { env = { HUB_KEEPALIVE_MS = 1000 } } }, function(h, p) hub, proxy = h, p end)

  it("is off without with_automatic_reconnect: a cut connection closes", function()
    local conn = build(proxy:url("/testhub"))
    local ev = track(conn)
    conn:start()
    proxy:cut()
    wait_for(function() return #ev.closed == 1 end, 5, "on_close after the cut")
    assert.is_true(is_error(ev.closed[1].err), "on_close gets the loss error")
    assert.equals(0, #ev.reconnecting)
    assert.equals("disconnected", conn.state)
  end)

  it("reconnects after a cut: on_reconnecting before the first attempt, on_reconnected with the new id", function()
    local log = {}
    local conn = build(proxy:url("/testhub"), function(b) b:with_automatic_reconnect({ 0, 0.2 }) end,
      { access_token = function() log[#log + 1] = "attempt"; return "t" end })
    local ev = track(conn, log)
    local got = {}
    conn:on("notify", function(x) got[#got + 1] = x end)
    conn:start()
    local id1 = conn.connection_id
    assert.is_string(id1)

    log[#log + 1] = "cut"
    proxy:cut()
    wait_for(function() return #ev.reconnected == 1 end, 5, "on_reconnected")

    assert.equals(1, #ev.reconnecting)
    local r = ev.reconnecting[1]
    assert.is_true(is_error(r.err), "on_reconnecting gets the loss error")
    assert.equals("reconnecting", r.state)
    local ok = ev.reconnected[1]
    assert.is_string(ok.id)
    assert.are_not.equal(id1, ok.id)
    assert.equals("connected", ok.state)
    assert.equals(ok.id, conn.connection_id)
    assert.equals("connected", conn.state)
    assert.equals(0, #ev.closed)

    -- order after the cut: reconnecting, then the attempt(s), then reconnected
    local after = {}
    local seen_cut = false
    for _, e in ipairs(log) do
      if seen_cut and after[#after] ~= e then after[#after + 1] = e end
      if e == "cut" then seen_cut = true end
    end
    assert.same({ "reconnecting", "attempt", "reconnected" }, after)

    -- the server sees the new connection, and `on` handlers survived
    assert.equals(ok.id, conn:invoke("GetConnectionId"))
    assert.equals("ok", conn:invoke("CallMeBack", "notify", 7))
    wait_for(function() return got[1] == 7 end, 5, "the handler registered before the loss runs")
  end)

  it("backs off while the hub is killed, then reconnects once it is restarted on the same port", function()
    local calls = {}
    local conn = build(hub.url .. "/testhub", function(b) b:with_automatic_reconnect(policy(0.1, 200, calls)) end)
    local ev = track(conn)
    conn:start()
    local id1 = conn.connection_id
    local pending = pending_invoke(conn, "Delay", 60000)
    local port = hub.port

    hub:kill()
    wait_for(function() return #calls >= 4 end, 10, "several failed attempts while the hub is down")
    assert.equals("reconnecting", conn.state)
    assert.equals(1, #ev.reconnecting)

    -- the call pending at the loss failed
    assert.is_true(pending.done)
    assert.is_false(pending.ok)
    assert.equals("closed", pending.err.kind)
    assert.matches(CANCELED, pending.err.message, 1, true)

    -- calls made while reconnecting fail at once
    local t0 = H.mono()
    local ok, err = pcall(conn.invoke, conn, "Add", 1, 2)
    assert.is_false(ok)
    assert.equals("closed", err.kind)
    ok, err = pcall(conn.send, conn, "Record", 1)
    assert.is_false(ok)
    assert.equals("closed", err.kind)
    assert.is_true(H.mono() - t0 < 0.5, "failed at once")

    hub:start()
    assert.equals(port, hub.port)
    wait_for(function() return #ev.reconnected == 1 end, 10, "on_reconnected after the restart")
    assert.equals(1, #ev.reconnecting)
    assert.equals(0, #ev.closed)
    assert.are_not.equal(id1, ev.reconnected[1].id)
    assert.equals(5, conn:invoke("Add", 2, 3))

    -- the policy's context: counts 0, 1, 2, ...; elapsed grows; the reason
    -- is an error
    for i, c in ipairs(calls) do
      assert.equals(i - 1, c.n)
      assert.is_number(c.elapsed)
      assert.is_true(is_error(c.reason), "retry_reason " .. i .. " is an error")
    end
    assert.is_true(calls[1].elapsed < 0.5)
    for i = 2, #calls do
      assert.is_true(calls[i].elapsed >= calls[i - 1].elapsed, "elapsed does not go back")
      -- each failed attempt came after the 0.1 s delay (10 ms clock)
      assert.is_true(calls[i].t - calls[i - 1].t >= 0.08, "delay " .. (i - 1) .. " honoured")
    end
    assert.is_true(calls[#calls].elapsed >= 0.1 * (#calls - 1) - 0.05)
  end)

  it("gives up after the last delay: on_close gets the last error; the connection starts again", function()
    local conn = build(proxy:url("/testhub"), function(b) b:with_automatic_reconnect({ 0, 0.2 }) end)
    local ev = track(conn)
    conn:start()
    proxy:refuse(true)
    local before = proxy:stats().refused
    local t0 = H.mono()
    proxy:cut()
    wait_for(function() return #ev.closed == 1 end, 5, "on_close after the retries")
    assert.is_true(H.mono() - t0 >= 0.15, "the second attempt waited its delay")
    assert.equals(2, proxy:stats().refused - before, "exactly two attempts")
    assert.equals(1, #ev.reconnecting)
    assert.equals(0, #ev.reconnected)
    assert.is_true(is_error(ev.closed[1].err), "on_close gets an error")
    assert.equals("disconnected", ev.closed[1].state)
    assert.equals("disconnected", conn.state)

    -- a connection closed that way starts again, and reconnects again
    proxy:refuse(false)
    conn:start()
    assert.equals("connected", conn.state)
    proxy:cut()
    wait_for(function() return #ev.reconnected == 1 end, 5, "the second loss reconnects too")
    assert.equals(2, #ev.reconnecting)
    assert.equals(1, #ev.closed)
  end)

  it("uses the default delays 0, 2, 10, 30 s, and stop() during a delay ends it at once", function()
    local conn = build(proxy:url("/testhub"), function(b) b:with_automatic_reconnect() end)
    local ev = track(conn)
    conn:start()
    proxy:refuse(true)
    local before = proxy:stats().refused
    local t0 = H.mono()
    proxy:cut()
    local function attempts() return proxy:stats().refused - before end
    wait_for(function() return attempts() >= 1 end, 3, "the first attempt")
    local t1 = H.mono()
    wait_for(function() return attempts() >= 2 end, 5, "the second attempt")
    local t2 = H.mono()
    assert.is_true(t1 - t0 < 1, "the first attempt is immediate")
    assert.is_true(t2 - t1 >= 1.7 and t2 - t1 < 3.5, ("the second attempt 2 s later (%.2f)"):format(t2 - t1))
    assert.equals("reconnecting", conn.state)

    -- now in the 10 s delay
    local ts = H.mono()
    conn:stop()
    assert.is_true(H.mono() - ts < 1, "stop() returned at once")
    assert.equals("disconnected", conn.state)
    wait_for(function() return #ev.closed == 1 end, 2, "on_close after stop")
    assert.is_nil(ev.closed[1].err, "on_close gets nil after stop()")
    assert.equals(0, #ev.reconnected)
    assert.equals(2, attempts())
  end)

  it("calls a policy table's next_retry_delay as a method", function()
    local p = { calls = 0 }
    function p:next_retry_delay(ctx)
      self.calls = self.calls + 1
      self.last = ctx.previous_retry_count
      return 0
    end
    local conn = build(proxy:url("/testhub"), function(b) b:with_automatic_reconnect(p) end)
    local ev = track(conn)
    conn:start()
    proxy:cut()
    wait_for(function() return #ev.reconnected == 1 end, 5, "on_reconnected")
    assert.equals(1, p.calls)
    assert.equals(0, p.last)
  end)

  it("closes at once with the loss error when the policy returns nil for the first retry", function()
    local calls = {}
    local conn = build(proxy:url("/testhub"), function(b) b:with_automatic_reconnect(policy(0, -1, calls) --[[ nil at once ]]) end)
    local ev = track(conn)
    conn:start()
    local before = proxy:stats().accepted
    proxy:cut()
    wait_for(function() return #ev.closed == 1 end, 5, "on_close")
    assert.equals(1, #calls)
    assert.equals(0, calls[1].n)
    assert.is_true(is_error(calls[1].reason))
    assert.is_true(is_error(ev.closed[1].err), "on_close gets the loss error")
    assert.equals(0, #ev.reconnecting, "no on_reconnecting (as the official clients)")
    assert.equals("disconnected", conn.state)
    H.pump(0.3) -- nothing may happen: no event to wait for
    assert.equals(before, proxy:stats().accepted, "no attempt was made")
    assert.equals(1, #ev.closed)
  end)

  it("logs a policy that raises an error and stops reconnecting as if it returned nil", function()
    local lines = {}
    local n = 0
    local conn = build(proxy:url("/testhub"), function(b)
      b:configure_logging("debug", function(level, msg) lines[#lines + 1] = level .. " " .. msg end)
      b:with_automatic_reconnect(function(ctx)
        n = n + 1
        if ctx.previous_retry_count == 0 then return 0 end
        error("policy exploded")
      end)
    end)
    local ev = track(conn)
    conn:start()
    proxy:refuse(true)
    local before = proxy:stats().refused
    proxy:cut()
    wait_for(function() return #ev.closed == 1 end, 5, "on_close")
    assert.equals(2, n)
    assert.equals(1, proxy:stats().refused - before, "one attempt, none after the error")
    assert.equals(1, #ev.reconnecting)
    assert.equals(0, #ev.reconnected)
    assert.is_true(is_error(ev.closed[1].err))
    assert.equals("disconnected", conn.state)
    local found = false
    for _, l in ipairs(lines) do
      if l:find("policy exploded", 1, true) then found = true end
    end
    assert.is_true(found, "the policy's error is logged")
  end)

  it("never retries a failed start()", function()
    local calls = {}
    local conn = build(proxy:url("/testhub"), function(b) b:with_automatic_reconnect(policy(0, 10, calls)) end)
    local ev = track(conn)
    proxy:refuse(true)
    local before = proxy:stats().refused
    local ok = pcall(conn.start, conn)
    assert.is_false(ok)
    assert.equals("disconnected", conn.state)
    H.pump(0.5) -- nothing may happen: no event to wait for
    assert.equals(1, proxy:stats().refused - before)
    assert.equals(0, #calls)
    assert.equals(0, #ev.reconnecting)
    assert.equals("disconnected", conn.state)
  end)

  it("reconnects when the server closes with allowReconnect", function()
    local conn = build(proxy:url("/testhub"), function(b) b:with_automatic_reconnect({ 0, 0.2 }) end)
    local ev = track(conn)
    conn:start()
    local id1 = conn.connection_id
    pcall(conn.invoke, conn, "CloseWithErrorReconnect", "going down for a moment")
    wait_for(function() return #ev.reconnected == 1 end, 5, "on_reconnected")
    assert.equals(1, #ev.reconnecting)
    assert.is_true(is_error(ev.reconnecting[1].err))
    assert.matches("going down for a moment", ev.reconnecting[1].err.message, 1, true)
    assert.are_not.equal(id1, conn.connection_id)
    assert.equals(0, #ev.closed)
    assert.equals(3, conn:invoke("Add", 1, 2))
  end)

  it("does not reconnect when the server closes without allowReconnect (CloseWithError, Context.Abort)", function()
    -- Context.Abort() makes the server send {"type":7} without allowReconnect
    for _, case in ipairs({ { "CloseWithError", "bye for good" }, { "Abort" } }) do
      local conn = build(proxy:url("/testhub"), function(b) b:with_automatic_reconnect({ 0, 0.2 }) end)
      local ev = track(conn)
      conn:start()
      local before = proxy:stats().accepted
      pcall(conn.invoke, conn, table.unpack(case))
      wait_for(function() return #ev.closed == 1 end, 5, case[1] .. ": on_close")
      assert.equals("disconnected", conn.state)
      if case[2] then assert.matches(case[2], ev.closed[1].err.message, 1, true) end
      H.pump(0.4) -- nothing may happen: no event to wait for
      assert.equals(0, #ev.reconnecting, case[1] .. ": no on_reconnecting")
      assert.equals(before, proxy:stats().accepted, case[1] .. ": no attempt")
      assert.equals(1, #ev.closed)
    end
  end)

  it("notices a frozen server (SIGSTOP) with kind timeout and reconnects once it runs again", function()
    local calls = {}
    local conn = build(hub.url .. "/testhub", function(b)
      b:with_server_timeout(2)
      b:with_keepalive_interval(0.5)
      b:with_automatic_reconnect(policy(0.2, 100, calls))
    end)
    local ev = track(conn)
    conn:start()
    local id1 = conn.connection_id
    local pending = pending_invoke(conn, "Delay", 60000)
    local t0 = H.mono()
    hub:pause()
    local noticed = H.wait_for(function() return #ev.reconnecting == 1 end, 6)
    hub:resume()
    assert.is_truthy(noticed, "on_reconnecting after the server timeout")
    local dt = ev.reconnecting[1].t - t0
    assert.is_true(dt >= 0.9 and dt < 4, ("timed out after %.2f s"):format(dt))
    local err = ev.reconnecting[1].err
    assert.equals("timeout", err.kind)
    assert.matches(SERVER_TIMEOUT, err.message, 1, true)
    assert.equals("timeout", calls[1].reason.kind)
    wait_for(function() return pending.done end, 2, "the pending call ended")
    assert.equals("closed", pending.err.kind)
    assert.matches(CANCELED, pending.err.message, 1, true)
    wait_for(function() return #ev.reconnected == 1 end, 10, "on_reconnected once the server runs again")
    assert.are_not.equal(id1, conn.connection_id)
    assert.equals(4, conn:invoke("Add", 2, 2))
    assert.equals(0, #ev.closed)
  end)

  it("notices a frozen network (proxy paused) with kind timeout and reconnects through it", function()
    local conn = build(proxy:url("/testhub"), function(b)
      b:with_server_timeout(2)
      b:with_keepalive_interval(0.5)
      b:with_automatic_reconnect(policy(0.2, 100, {}))
    end)
    local ev = track(conn)
    conn:start()
    proxy:pause()
    local noticed = H.wait_for(function() return #ev.reconnecting == 1 end, 6)
    proxy:resume()
    assert.is_truthy(noticed, "on_reconnecting after the server timeout")
    assert.equals("timeout", ev.reconnecting[1].err.kind)
    wait_for(function() return #ev.reconnected == 1 end, 5, "on_reconnected")
    assert.equals(6, conn:invoke("Add", 3, 3))
  end)

  it("backs off the same way for every failure class (refused, negotiate 401)", function()
    local calls = {}
    local token = "valid-token"
    local conn = build(proxy:url("/authhub"), function(b) b:with_automatic_reconnect(policy(0.15, 100, calls)) end,
      { access_token = function() return token end })
    local ev = track(conn)
    conn:start()
    -- refused connections
    proxy:refuse(true)
    proxy:cut()
    wait_for(function() return #calls >= 3 end, 5, "two refused attempts")
    local refused_upto = #calls
    -- the server answers negotiate with 401
    token = "wrong-token"
    proxy:refuse(false)
    wait_for(function()
      local n = 0
      for i = refused_upto + 1, #calls do
        local r = calls[i].reason
        if type(r) == "table" and r.status == 401 then n = n + 1 end
      end
      return n >= 2
    end, 5, "two attempts refused with 401")
    token = "valid-token"
    wait_for(function() return #ev.reconnected == 1 end, 5, "on_reconnected")

    assert.equals(1, #ev.reconnecting)
    assert.equals(0, #ev.closed)
    for i, c in ipairs(calls) do
      assert.equals(i - 1, c.n, "one policy call per failure")
      assert.is_true(is_error(c.reason))
      if i > 1 then
        assert.is_true(c.t - calls[i - 1].t >= 0.13, "attempt " .. (i - 1) .. " waited its delay")
      end
    end
    local saw401 = false
    for i = refused_upto + 1, #calls do
      local r = calls[i].reason
      if r.status == 401 then
        saw401 = true
        assert.equals("negotiate", r.kind)
      end
    end
    assert.is_true(saw401)
    assert.equals("test-user", conn:invoke("GetUserName"))
  end)

  it("runs exactly one reconnect loop: stop() while reconnecting, start() again, then a new loss", function()
    local calls = {}
    local conn = build(proxy:url("/testhub"), function(b) b:with_automatic_reconnect(policy(0.3, 100, calls)) end)
    local ev = track(conn)
    conn:start()
    proxy:refuse(true)
    proxy:cut()
    wait_for(function() return #calls >= 2 end, 5, "a failed attempt")
    assert.equals("reconnecting", conn.state)
    local ts = H.mono()
    conn:stop()
    assert.is_true(H.mono() - ts < 1, "stop() returned at once")
    assert.equals("disconnected", conn.state)
    wait_for(function() return #ev.closed == 1 end, 2, "on_close after stop")
    assert.is_nil(ev.closed[1].err)

    proxy:refuse(false)
    conn:start()
    assert.equals("connected", conn.state)
    local ncalls, accepted = #calls, proxy:stats().accepted
    H.pump(1) -- over three of the old loop's delays: nothing may happen
    assert.equals(ncalls, #calls, "the old loop is gone")
    assert.equals(accepted, proxy:stats().accepted, "no stale attempt")
    assert.equals(0, #ev.reconnected)
    assert.equals(1, #ev.closed)
    assert.equals("connected", conn.state)
    assert.equals(2, conn:invoke("Add", 1, 1))

    -- a new loss runs a new loop, counting from 0 again
    proxy:cut()
    wait_for(function() return #ev.reconnected == 1 end, 5, "on_reconnected")
    assert.equals(2, #ev.reconnecting)
    assert.equals(0, calls[ncalls + 1].n)
    assert.equals(1, #ev.closed)
  end)
end)
