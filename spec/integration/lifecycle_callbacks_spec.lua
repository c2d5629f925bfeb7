-- Restarting, stopping and freeing a connection from inside every callback:
-- on_close, on_reconnecting, on_reconnected and `on` handlers. Nothing stale
-- may run afterwards: no on_close for the new connection, no attempt or
-- on_reconnected from an old reconnect loop, no crash when the last reference
-- is dropped (and collected) while a callback runs. The losses are real: the
-- loopback proxy (spec/tools/cutproxy.c) cuts the TCP connection to the hub.
local H = require("spec.helper")
local L = require("spec.support.live")
local wait_for = L.wait_for

local proxy

-- Retry every `delay` seconds (default 0.2), for a long time.
local function retry_every(delay)
  return function(ctx)
    if ctx.previous_retry_count < 100 then return delay or 0.2 end
    return nil
  end
end

-- A connection stopped after the test (strong reference kept).
local function new_conn(configure)
  return L.build(proxy:url("/testhub"), configure)
end

-- Counts the lifecycle events without capturing the connection.
local function count(conn)
  local ev = { reconnecting = 0, reconnected = 0, closed = 0, close_errs = {}, ids = {} }
  conn:on_reconnecting(function() ev.reconnecting = ev.reconnecting + 1 end)
  conn:on_reconnected(function(id)
    ev.reconnected = ev.reconnected + 1
    ev.ids[#ev.ids + 1] = id
  end)
  conn:on_close(function(err)
    ev.closed = ev.closed + 1
    ev.close_errs[ev.closed] = err == nil and "nil" or err
  end)
  return ev
end

-- Nothing may happen for `sec` seconds (longer than the retry delays): the
-- counters and the proxy's connection count stay as they are.
local function assert_quiet(ev, sec, what)
  local before = { ev.reconnecting, ev.reconnected, ev.closed, proxy:stats().accepted }
  H.pump(sec or 0.6) -- waiting for nothing to happen: no event to wait for
  assert.same(before, { ev.reconnecting, ev.reconnected, ev.closed, proxy:stats().accepted },
    (what or "") .. ": nothing stale ran (reconnecting, reconnected, closed, accepted connections)")
end

local function full_gc()
  collectgarbage()
  collectgarbage()
end

-- Registers fn as the connection's callback `on`: a method name
-- ("on_close", "on_reconnecting", "on_reconnected") or function(conn, fn).
local function register(conn, on, fn)
  if type(on) == "function" then on(conn, fn) else conn[on](conn, fn) end
end

-- A connection (stopped after the test) and its counts; its callback `on`
-- runs action(conn) (only the first time when `once`; r.state is false while
-- that runs) and then sets r.state to the connection's state. The callback
-- reaches the connection through a box, not as an upvalue.
local function act_inside(on, action, configure, once)
  local conn = new_conn(configure)
  local ev = count(conn)
  local box = { conn = conn }
  local r = {}
  register(conn, on, function()
    if once then
      if r.state ~= nil then return end
      r.state = false
    end
    action(box.conn)
    r.state = box.conn.state
  end)
  return conn, ev, r
end

local function stop(c) c:stop() end
local function restart(c)
  c:stop()
  c:start()
end

-- Starts a connection whose callback `on` drops the only strong reference
-- to it and collects garbage while it runs; after_start(conn) runs right
-- after start(). Returns a weak table holding the connection at [1], its
-- counts, and st, whose .freed turns true once the callback ran. No local
-- keeps the connection: this function's stack frame is gone on return.
local function freed_inside(on, configure, after_start)
  local box, weak, st = {}, setmetatable({}, { __mode = "v" }), {}
  local conn = L.builder(proxy:url("/testhub"), configure):build()
  local ev = count(conn)
  register(conn, on, function()
    box.conn = nil
    full_gc()
    st.freed = true
  end)
  conn:start()
  box.conn, weak[1] = conn, conn
  if after_start then after_start(conn) end
  return weak, ev, st
end

local function reconnect_every(delay)
  return function(b) b:with_automatic_reconnect(retry_every(delay)) end
end

describe("lifecycle callbacks", function()
  L.proxied(nil, function(_, p) proxy = p end)

  describe("on_close", function()
    it("restarts from inside on_close after a loss; on_close does not fire for the new connection", function()
      local conn, ev, r = act_inside("on_close", function(c) c:start() end, nil, true)
      conn:start()
      local id1 = conn.connection_id
      proxy:cut()
      wait_for(function() return r.state end, 5, "restarted inside on_close")
      assert.equals("connected", r.state)
      assert.equals("connected", conn.state)
      assert.are_not.equal(id1, conn.connection_id)
      assert_quiet(ev, 0.5, "after the restart")
      assert.equals(1, ev.closed)
      assert.equals(3, conn:invoke("Add", 1, 2))
      conn:stop()
      wait_for(function() return ev.closed == 2 end, 5, "on_close for the stop")
      assert.equals("nil", ev.close_errs[2])
    end)

    it("restarts from inside on_close after stop()", function()
      local conn, ev, r = act_inside("on_close", function(c) c:start() end, nil, true)
      conn:start()
      conn:stop()
      wait_for(function() return r.state end, 5, "restarted inside on_close")
      assert.equals("connected", conn.state)
      assert_quiet(ev, 0.5, "after the restart")
      assert.equals(1, ev.closed)
      assert.equals(4, conn:invoke("Add", 2, 2))
    end)

    it("restarts from inside on_close after the retries ran out; the old loop stays dead", function()
      local conn, ev, r = act_inside("on_close", function(c)
        proxy:refuse(false)
        c:start()
      end, function(b) b:with_automatic_reconnect({ 0 }) end, true)
      conn:start()
      proxy:refuse(true)
      proxy:cut()
      wait_for(function() return r.state end, 5, "restarted inside on_close")
      assert.equals("connected", conn.state)
      assert.equals(1, ev.reconnecting)
      assert.equals(0, ev.reconnected)
      assert_quiet(ev, 0.5, "after the restart")
      -- the new connection reconnects by itself
      proxy:cut()
      wait_for(function() return ev.reconnected == 1 end, 5, "a new loss reconnects")
      assert.equals(2, ev.reconnecting)
      assert.equals(1, ev.closed)
    end)

    it("ignores stop() from inside on_close", function()
      local conn, ev, r = act_inside("on_close", stop)
      conn:start()
      proxy:cut()
      wait_for(function() return r.state end, 5, "on_close ran")
      assert.equals("disconnected", r.state)
      assert_quiet(ev, 0.3, "after stop")
      assert.equals(1, ev.closed)
    end)

    it("frees the connection from inside on_close", function()
      local weak, ev, st = freed_inside("on_close")
      proxy:cut()
      wait_for(function() return st.freed end, 5, "on_close ran")
      H.pump(0.2)
      full_gc()
      assert.is_nil(weak[1], "collected once on_close returned")
      assert.equals(1, ev.closed)
    end)
  end)

  describe("on_reconnecting", function()
    it("stops from inside on_reconnecting: no attempt, no on_reconnected, on_close(nil) once", function()
      local conn, ev, r = act_inside("on_reconnecting", stop, reconnect_every(0))
      conn:start()
      proxy:cut()
      wait_for(function() return r.state end, 5, "on_reconnecting ran")
      assert.equals("disconnected", r.state)
      wait_for(function() return ev.closed == 1 end, 2, "on_close")
      assert.equals("nil", ev.close_errs[1])
      assert_quiet(ev, 0.6, "after the stop")
      assert.equals(0, ev.reconnected)
      assert.equals("disconnected", conn.state)
    end)

    it("restarts from inside on_reconnecting: the old loop ends, a later loss runs one new loop", function()
      local conn, ev, r = act_inside("on_reconnecting", restart, reconnect_every(0.2), true)
      conn:start()
      local id1 = conn.connection_id
      proxy:cut()
      wait_for(function() return r.state end, 5, "restarted inside on_reconnecting")
      assert.equals("connected", r.state)
      assert.are_not.equal(id1, conn.connection_id)
      assert.equals(1, ev.closed, "on_close for the stop")
      assert.equals("nil", ev.close_errs[1])
      assert_quiet(ev, 0.7, "after the restart")
      assert.equals(0, ev.reconnected, "the restart is no reconnect")
      assert.equals("connected", conn.state)
      assert.equals(5, conn:invoke("Add", 2, 3))

      proxy:cut()
      wait_for(function() return ev.reconnected == 1 end, 5, "on_reconnected for the second loss")
      assert.equals(2, ev.reconnecting)
      assert_quiet(ev, 0.5, "after the second reconnect")
      assert.equals(1, ev.closed)
    end)

    it("frees the connection from inside on_reconnecting; it goes on reconnecting", function()
      local weak, ev, st = freed_inside("on_reconnecting", reconnect_every(0.1))
      proxy:cut()
      wait_for(function() return st.freed end, 5, "on_reconnecting ran")
      wait_for(function() return ev.reconnected == 1 end, 5, "reconnected without a user reference")
      full_gc()
      local conn = weak[1]
      assert.is_not_nil(conn, "a connected connection stays alive")
      assert.equals("connected", conn.state)
      assert.equals(2, conn:invoke("Add", 1, 1))
      conn:stop()
      conn = nil
      H.pump(0.1)
      full_gc()
      assert.is_nil(weak[1], "collected after stop")
    end)
  end)

  describe("on_reconnected", function()
    it("stops from inside on_reconnected: on_close(nil) once, nothing after", function()
      local conn, ev, r = act_inside("on_reconnected", stop, reconnect_every(0.1))
      conn:start()
      proxy:cut()
      wait_for(function() return r.state end, 5, "on_reconnected ran")
      assert.equals("disconnected", r.state)
      wait_for(function() return ev.closed == 1 end, 2, "on_close")
      assert.equals("nil", ev.close_errs[1])
      assert_quiet(ev, 0.5, "after the stop")
      assert.equals(1, ev.reconnecting)
      assert.equals(1, ev.reconnected)
    end)

    it("restarts from inside on_reconnected", function()
      local conn, ev, r = act_inside("on_reconnected", restart, reconnect_every(0.1), true)
      conn:start()
      proxy:cut()
      wait_for(function() return r.state end, 5, "restarted inside on_reconnected")
      assert.equals("connected", r.state)
      assert.are_not.equal(ev.ids[1], conn.connection_id)
      assert.equals(1, ev.closed)
      assert_quiet(ev, 0.5, "after the restart")
      assert.equals(1, ev.reconnected)
      assert.equals(conn.connection_id, conn:invoke("GetConnectionId"))
    end)

    it("frees the connection from inside on_reconnected", function()
      local weak, ev, st = freed_inside("on_reconnected", reconnect_every(0.1))
      proxy:cut()
      wait_for(function() return st.freed end, 5, "on_reconnected ran")
      H.pump(0.1)
      full_gc()
      local conn = weak[1]
      assert.is_not_nil(conn, "a connected connection stays alive")
      assert.equals("connected", conn.state)
      assert.equals(3, conn:invoke("Add", 1, 2))
      conn:stop()
      conn = nil
      H.pump(0.1)
      full_gc()
      assert.is_nil(weak[1], "collected after stop")
      assert.equals(1, ev.closed)
    end)
  end)

  describe("handlers", function()
    local function on_go(conn, fn) conn:on("go", fn) end

    it("restarts from inside a handler; on_close once, no reconnect events", function()
      local conn, ev, r = act_inside(on_go, restart, reconnect_every(0.1))
      conn:start()
      local id1 = conn.connection_id
      conn:send("CallMeBackNoArgs", "go")
      wait_for(function() return r.state end, 5, "restarted inside the handler")
      assert.equals("connected", r.state)
      assert.are_not.equal(id1, conn.connection_id)
      assert_quiet(ev, 0.4, "after the restart")
      assert.equals(1, ev.closed)
      assert.equals(0, ev.reconnecting)
      -- the handler is still registered on the new connection
      r.state = nil
      conn:off("go")
      local got
      conn:on("go", function() got = true end)
      conn:invoke("CallMeBackNoArgs", "go")
      wait_for(function() return got end, 5, "handlers work after the restart")
    end)

    it("frees the connection from inside a handler", function()
      local weak, _, st = freed_inside(on_go, nil, function(conn) conn:send("CallMeBackNoArgs", "go") end)
      wait_for(function() return st.freed end, 5, "the handler ran")
      full_gc()
      local conn = weak[1]
      assert.is_not_nil(conn, "a connected connection stays alive")
      assert.equals(7, conn:invoke("Add", 3, 4))
      conn:stop()
      conn = nil
      H.pump(0.1)
      full_gc()
      assert.is_nil(weak[1], "collected after stop")
    end)

    it("handlers survive a reconnect and run for the new connection", function()
      local conn = new_conn(reconnect_every(0.1))
      local ev = count(conn)
      local seen = {}
      conn:on("seq", function(i) seen[#seen + 1] = i end)
      conn:start()
      proxy:cut()
      wait_for(function() return ev.reconnected == 1 end, 5, "on_reconnected")
      assert.equals(20, conn:invoke("CallMeBackMany", "seq", 20))
      wait_for(function() return #seen == 20 end, 5, "every call reached the handler")
      for i = 1, 20 do assert.equals(i, seen[i]) end
    end)
  end)
end)
