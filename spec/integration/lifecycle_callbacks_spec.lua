-- Restarting, stopping and freeing a connection from inside every callback:
-- on_close, on_reconnecting, on_reconnected and `on` handlers. Nothing stale
-- may run afterwards: no on_close for the new connection, no attempt or
-- on_reconnected from an old reconnect loop, no crash when the last reference
-- is dropped (and collected) while a callback runs. The losses are real: the
-- loopback proxy (spec/tools/cutproxy.c) cuts the TCP connection to the hub.
local signalr = require("signalr")
local H = require("spec.helper")

local hub, proxy
local conns = {}

-- Retry every `delay` seconds (default 0.2), for a long time.
local function retry_every(delay)
  return function(ctx)
    if ctx.previous_retry_count < 100 then return delay or 0.2 end
    return nil
  end
end

local function builder(configure)
  local b = signalr.builder():with_url(proxy:url("/testhub"))
  b:configure_logging("none")
  if configure then configure(b) end
  return b
end

-- A connection stopped after the test (strong reference kept).
local function new_conn(configure)
  local conn = builder(configure):build()
  conns[#conns + 1] = conn
  return conn
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

-- Drive events until pred() holds; fail (naming the caller's line) after timeout s.
local function wait_for(pred, timeout, what)
  local line = debug.getinfo(2, "l").currentline
  assert.is_truthy(H.wait_for(pred, timeout or 5),
    ("%s: not reached within %s s (line %d)"):format(what or "condition", timeout or 5, line))
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

describe("lifecycle callbacks", function()
  setup(function()
    hub = H.shared_hub()
    proxy = H.start_proxy(hub.port)
  end)

  teardown(function()
    if proxy then proxy:stop() end
  end)

  after_each(function()
    proxy:refuse(false)
    for i, c in ipairs(conns) do
      pcall(c.stop, c)
      conns[i] = nil
    end
  end)

  describe("on_close", function()
    it("restarts from inside on_close after a loss; on_close does not fire for the new connection", function()
      local conn = new_conn()
      local ev = count(conn)
      local box = { conn = conn }
      local restarted
      conn:on_close(function()
        if restarted == nil then
          restarted = false
          box.conn:start()
          restarted = box.conn.state
        end
      end)
      conn:start()
      local id1 = conn.connection_id
      proxy:cut()
      wait_for(function() return restarted end, 5, "restarted inside on_close")
      assert.equals("connected", restarted)
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
      local conn = new_conn()
      local ev = count(conn)
      local box = { conn = conn }
      local restarted
      conn:on_close(function()
        if restarted == nil then
          restarted = false
          box.conn:start()
          restarted = true
        end
      end)
      conn:start()
      conn:stop()
      wait_for(function() return restarted end, 5, "restarted inside on_close")
      assert.equals("connected", conn.state)
      assert_quiet(ev, 0.5, "after the restart")
      assert.equals(1, ev.closed)
      assert.equals(4, conn:invoke("Add", 2, 2))
    end)

    it("restarts from inside on_close after the retries ran out; the old loop stays dead", function()
      local conn = new_conn(function(b) b:with_automatic_reconnect({ 0 }) end)
      local ev = count(conn)
      local box = { conn = conn }
      local restarted
      conn:on_close(function()
        if restarted == nil then
          restarted = false
          proxy:refuse(false)
          box.conn:start()
          restarted = true
        end
      end)
      conn:start()
      proxy:refuse(true)
      proxy:cut()
      wait_for(function() return restarted end, 5, "restarted inside on_close")
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
      local conn = new_conn()
      local ev = count(conn)
      local box = { conn = conn }
      local stopped
      conn:on_close(function()
        box.conn:stop()
        stopped = box.conn.state
      end)
      conn:start()
      proxy:cut()
      wait_for(function() return stopped end, 5, "on_close ran")
      assert.equals("disconnected", stopped)
      assert_quiet(ev, 0.3, "after stop")
      assert.equals(1, ev.closed)
    end)

    it("frees the connection from inside on_close", function()
      local box, weak, ev = {}, setmetatable({}, { __mode = "v" }), nil
      local freed
      do
        local conn = builder():build()
        ev = count(conn)
        conn:on_close(function()
          box.conn = nil
          full_gc()
          freed = true
        end)
        conn:start()
        box.conn, weak[1] = conn, conn
        conn = nil -- no stack slot may keep it
      end
      proxy:cut()
      wait_for(function() return freed end, 5, "on_close ran")
      H.pump(0.2)
      full_gc()
      assert.is_nil(weak[1], "collected once on_close returned")
      assert.equals(1, ev.closed)
    end)
  end)

  describe("on_reconnecting", function()
    it("stops from inside on_reconnecting: no attempt, no on_reconnected, on_close(nil) once", function()
      local conn = new_conn(function(b) b:with_automatic_reconnect(retry_every(0)) end)
      local ev = count(conn)
      local box = { conn = conn }
      local state_after_stop
      conn:on_reconnecting(function()
        box.conn:stop()
        state_after_stop = box.conn.state
      end)
      conn:start()
      proxy:cut()
      wait_for(function() return state_after_stop end, 5, "on_reconnecting ran")
      assert.equals("disconnected", state_after_stop)
      wait_for(function() return ev.closed == 1 end, 2, "on_close")
      assert.equals("nil", ev.close_errs[1])
      assert_quiet(ev, 0.6, "after the stop")
      assert.equals(0, ev.reconnected)
      assert.equals("disconnected", conn.state)
    end)

    it("restarts from inside on_reconnecting: the old loop ends, a later loss runs one new loop", function()
      local conn = new_conn(function(b) b:with_automatic_reconnect(retry_every(0.2)) end)
      local ev = count(conn)
      local box = { conn = conn }
      local restarted
      conn:on_reconnecting(function()
        if restarted == nil then
          restarted = false
          box.conn:stop()
          box.conn:start()
          restarted = box.conn.state
        end
      end)
      conn:start()
      local id1 = conn.connection_id
      proxy:cut()
      wait_for(function() return restarted end, 5, "restarted inside on_reconnecting")
      assert.equals("connected", restarted)
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
      local box, weak = {}, setmetatable({}, { __mode = "v" })
      local ev, freed
      do
        local conn = builder(function(b) b:with_automatic_reconnect(retry_every(0.1)) end):build()
        ev = count(conn)
        conn:on_reconnecting(function()
          box.conn = nil
          full_gc()
          freed = true
        end)
        conn:start()
        box.conn, weak[1] = conn, conn
        conn = nil -- no stack slot may keep it
      end
      proxy:cut()
      wait_for(function() return freed end, 5, "on_reconnecting ran")
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
      local conn = new_conn(function(b) b:with_automatic_reconnect(retry_every(0.1)) end)
      local ev = count(conn)
      local box = { conn = conn }
      local stopped
      conn:on_reconnected(function()
        box.conn:stop()
        stopped = box.conn.state
      end)
      conn:start()
      proxy:cut()
      wait_for(function() return stopped end, 5, "on_reconnected ran")
      assert.equals("disconnected", stopped)
      wait_for(function() return ev.closed == 1 end, 2, "on_close")
      assert.equals("nil", ev.close_errs[1])
      assert_quiet(ev, 0.5, "after the stop")
      assert.equals(1, ev.reconnecting)
      assert.equals(1, ev.reconnected)
    end)

    it("restarts from inside on_reconnected", function()
      local conn = new_conn(function(b) b:with_automatic_reconnect(retry_every(0.1)) end)
      local ev = count(conn)
      local box = { conn = conn }
      local restarted
      conn:on_reconnected(function()
        if restarted == nil then
          restarted = false
          box.conn:stop()
          box.conn:start()
          restarted = box.conn.state
        end
      end)
      conn:start()
      proxy:cut()
      wait_for(function() return restarted end, 5, "restarted inside on_reconnected")
      assert.equals("connected", restarted)
      assert.are_not.equal(ev.ids[1], conn.connection_id)
      assert.equals(1, ev.closed)
      assert_quiet(ev, 0.5, "after the restart")
      assert.equals(1, ev.reconnected)
      assert.equals(conn.connection_id, conn:invoke("GetConnectionId"))
    end)

    it("frees the connection from inside on_reconnected", function()
      local box, weak = {}, setmetatable({}, { __mode = "v" })
      local ev, freed
      do
        local conn = builder(function(b) b:with_automatic_reconnect(retry_every(0.1)) end):build()
        ev = count(conn)
        conn:on_reconnected(function()
          box.conn = nil
          full_gc()
          freed = true
        end)
        conn:start()
        box.conn, weak[1] = conn, conn
        conn = nil -- no stack slot may keep it
      end
      proxy:cut()
      wait_for(function() return freed end, 5, "on_reconnected ran")
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
    it("restarts from inside a handler; on_close once, no reconnect events", function()
      local conn = new_conn(function(b) b:with_automatic_reconnect(retry_every(0.1)) end)
      local ev = count(conn)
      local box = { conn = conn }
      local restarted
      conn:on("go", function()
        box.conn:stop()
        box.conn:start()
        restarted = box.conn.state
      end)
      conn:start()
      local id1 = conn.connection_id
      conn:send("CallMeBackNoArgs", "go")
      wait_for(function() return restarted end, 5, "restarted inside the handler")
      assert.equals("connected", restarted)
      assert.are_not.equal(id1, conn.connection_id)
      assert_quiet(ev, 0.4, "after the restart")
      assert.equals(1, ev.closed)
      assert.equals(0, ev.reconnecting)
      -- the handler is still registered on the new connection
      restarted = nil
      conn:off("go")
      local got
      conn:on("go", function() got = true end)
      conn:invoke("CallMeBackNoArgs", "go")
      wait_for(function() return got end, 5, "handlers work after the restart")
    end)

    it("frees the connection from inside a handler", function()
      local box, weak = {}, setmetatable({}, { __mode = "v" })
      local freed
      do
        local conn = builder():build()
        conn:on("go", function()
          box.conn = nil
          full_gc()
          freed = true
        end)
        conn:start()
        box.conn, weak[1] = conn, conn
        conn:send("CallMeBackNoArgs", "go")
        conn = nil -- no stack slot may keep it
      end
      wait_for(function() return freed end, 5, "the handler ran")
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
      local conn = new_conn(function(b) b:with_automatic_reconnect(retry_every(0.1)) end)
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
