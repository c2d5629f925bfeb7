-- Streams both ways against the real hub, over every transport and both
-- protocols (MessagePack not over Server-Sent Events): server-to-
-- client streams (items, completion, errors, cancel, subscribe, the end of
-- the connection), client-to-server channels (one or several per call,
-- errors, bidirectional), a slow reader of a million items whose
-- memory stays bounded because reading pauses, and a reader at the top
-- level that keeps up with a flood without pausing.
local signalr = require("signalr")
local H = require("spec.helper")
local L = require("spec.support.live")
local C = require("spec.support.compat")

local TRANSPORTS = {
  { name = "websockets", server = "WebSockets" },
  { name = "server_sent_events", server = "ServerSentEvents" },
  { name = "long_polling", server = "LongPolling" },
}

local hub
local tags = 0
local function tag()
  tags = tags + 1
  return ("stream-%d-%d"):format(os.time(), tags)
end

local function collect(s)
  local out = {}
  for item in s:items() do out[#out + 1] = item end
  return out
end

local function seq(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

describe("streams", function()
  setup(function() hub = H.shared_hub() end)
  after_each(function() L.stop_all() end)

  for _, proto in ipairs({ "json", "messagepack" }) do
  for _, t in ipairs(TRANSPORTS) do
    -- MessagePack is binary: not over Server-Sent Events
    if proto == "json" or t.name ~= "server_sent_events" then
    describe("over " .. t.server .. " with " .. proto, function()
      local function connect(path, configure)
        local conn = L.build(hub.url .. (path or "/testhub"), function(b)
          b:with_hub_protocol(proto)
          if configure then configure(b) end
        end, { transports = { t.name } })
        conn:start()
        assert.equals(t.server, conn:invoke("GetTransport"))
        return conn
      end

      describe("from the server", function()
        it("delivers every item in order, then ends", function()
          local conn = connect()
          assert.same(seq(100), collect(conn:stream("Counter", 100, 0)))
          assert.same({}, collect(conn:stream("EmptyStream")))
        end)

        it("keeps items exact, null items included", function()
          local conn = connect()
          local big = C.maxinteger - 7
          assert.same({ big, big }, collect(conn:stream("Repeat", big, 2)))
          local nulls = collect(conn:stream("Repeat", signalr.null, 3))
          assert.same({ signalr.null, signalr.null, signalr.null }, nulls)
          local v = collect(conn:stream("Repeat", { a = 0.1, b = signalr.array() }, 1))[1]
          assert.equals(0.1, v.a)
          assert.is_true(signalr.is_array(v.b))
        end)

        it("raises the server's error as kind hub after the items before it", function()
          local conn = connect()
          local s = conn:stream("CounterThenFail", 3, "the feed broke")
          local got = {}
          local ok, err = pcall(function()
            for item in s:items() do got[#got + 1] = item end
          end)
          assert.is_false(ok)
          assert.same({ 1, 2, 3 }, got)
          assert.equals("hub", err.kind)
          assert.matches("the feed broke", err.message, 1, true)
          -- the error is raised once; the iteration then ends
          assert.is_nil(s:items()(s))
        end)

        it("cancel tells the server at once, ends the iteration and drops later items", function()
          local conn = connect()
          local tg = tag()
          local s = conn:stream("TrackedCounter", tg, 100000, 5)
          local got = {}
          for item in s:items() do
            got[#got + 1] = item
            if #got == 3 then s:cancel() end
          end
          assert.same({ 1, 2, 3 }, got)
          L.wait_for(function() return conn:invoke("StreamOutcome", tg) == "canceled" end, 5,
            "the server's cancellation token")
          -- nothing more arrives for it, and cancel again is a no-op
          local produced = conn:invoke("StreamProduced", tg)
          assert.is_true(produced < 100000)
          assert.equals(0, s:buffered())
          s:cancel()
          assert.is_nil(s:items()(s))
          -- cancel after completion does nothing either
          local done = conn:stream("Counter", 2, 0)
          assert.same({ 1, 2 }, collect(done))
          done:cancel()
          assert.equals("connected", conn.state)
        end)

        it("cancels at the end of a to-be-closed variable", function()
          local conn = connect()
          local tg = tag()
          C.to_be_closed(conn:stream("TrackedCounter", tg, 100000, 5), function(s)
            assert.equals(1, s:items()(s))
          end)
          L.wait_for(function() return conn:invoke("StreamOutcome", tg) == "canceled" end, 5,
            "the server's cancellation token")
        end)

        it("subscribe calls next for each item, then complete, or error", function()
          local conn = connect()
          local got, completed, failed = {}, 0, nil
          conn:stream("Counter", 5, 0):subscribe({
            next = function(item) got[#got + 1] = item end,
            complete = function() completed = completed + 1 end,
            error = function(e) failed = e end,
          })
          L.wait_for(function() return completed > 0 end, 5, "complete")
          assert.same(seq(5), got)
          assert.is_nil(failed)
          local items = {}
          conn:stream("CounterThenFail", 2, "nope"):subscribe({
            next = function(item) items[#items + 1] = item end,
            error = function(e) failed = e end,
          })
          L.wait_for(function() return failed ~= nil end, 5, "error")
          assert.same({ 1, 2 }, items)
          assert.equals("hub", failed.kind)
          assert.matches("nope", failed.message, 1, true)
        end)

        it("fails open streams with kind closed when the connection stops", function()
          local conn = connect()
          local s = conn:stream("TrackedCounter", tag(), 100000, 50)
          assert.equals(1, s:items()(s))
          signalr.spawn(function() conn:stop() end)
          local ok, err = pcall(function() for _ in s:items() do end end)
          assert.is_false(ok)
          assert.equals("closed", err.kind)
        end)

        it("surfaces the server's error for invoke of a stream and stream of a method", function()
          local conn = connect()
          local ok, err = pcall(conn.invoke, conn, "Counter", 3, 0)
          assert.is_false(ok)
          assert.equals("hub", err.kind)
          assert.matches("streaming", err.message)
          ok, err = pcall(collect, conn:stream("Add", 1, 2))
          assert.is_false(ok)
          assert.equals("hub", err.kind)
          assert.matches("non%-streaming", err.message)
        end)
      end)

      describe("to the server", function()
        it("streams a channel's items into a hub method, which returns", function()
          local conn = connect()
          local ch = signalr.channel()
          local p = L.pending_invoke(conn, "Sum", ch)
          for i = 1, 100 do ch:write(i) end
          ch:close()
          L.wait_for(function() return p.done end, 5, "Sum")
          assert.is_true(p.ok, p.err and tostring(p.err))
          assert.equals(5050, p.result)
        end)

        it("keeps items exact and in order", function()
          local conn = connect()
          local ch = signalr.channel()
          local p = L.pending_invoke(conn, "Collect", ch)
          local items = { C.mininteger, 0.1, "text", signalr.null, { x = { 1, 2 } }, signalr.map(), true }
          for _, v in ipairs(items) do ch:write(v) end
          ch:close()
          L.wait_for(function() return p.done end, 5, "Collect")
          assert.is_true(p.ok, p.err and tostring(p.err))
          assert.equals(#items, #p.result)
          assert.equals(C.mininteger, p.result[1])
          assert.equals(0.1, p.result[2])
          assert.equals("text", p.result[3])
          assert.equals(signalr.null, p.result[4])
          assert.same({ 1, 2 }, p.result[5].x)
          assert.is_true(signalr.is_map(p.result[6]))
          assert.equals(true, p.result[7])
        end)

        it("close with an error fails the server's stream with that text", function()
          local conn = connect()
          local ch = signalr.channel()
          local p = L.pending_invoke(conn, "CollectOutcome", ch)
          ch:write(1)
          ch:write(2)
          ch:close({ message = "the client gave up" })
          L.wait_for(function() return p.done end, 5, "CollectOutcome")
          assert.equals("failed after 2: the client gave up", p.result)
        end)

        it("carries several channels beside plain arguments", function()
          local conn = connect()
          local a, b = signalr.channel(), signalr.channel()
          local p = L.pending_invoke(conn, "JoinTwo", "-", a, b)
          a:write("x"); b:write("1"); a:write("y"); b:write("2"); b:write("3")
          a:close(); b:close()
          L.wait_for(function() return p.done end, 5, "JoinTwo")
          assert.equals("x-y|1-2-3", p.result)
        end)

        it("streams both ways in one call", function()
          local conn = connect()
          local ch = signalr.channel()
          local s = conn:stream("Doubler", ch)
          signalr.spawn(function()
            for i = 1, 50 do ch:write(i) end
            ch:close()
          end)
          local want = {}
          for i = 1, 50 do want[i] = 2 * i end
          assert.same(want, collect(s))
        end)

        it("works with send, and a channel closed before the call ends its stream at once", function()
          local conn = connect()
          conn:invoke("ClearRecorded")
          local ch = signalr.channel()
          conn:send("RecordStream", ch)
          ch:write("a")
          ch:write("b")
          ch:close()
          L.wait_for(function() return #conn:invoke("GetRecordedItems") == 2 end, 5, "recorded items")
          assert.same({ "a", "b" }, conn:invoke("GetRecordedItems"))
          local early = signalr.channel()
          early:close()
          assert.equals(0, conn:invoke("Sum", early))
        end)

        it("refuses misuse with kind usage", function()
          local conn = connect()
          local ch = signalr.channel()
          local ok, err = pcall(ch.write, ch, 1)
          assert.is_false(ok)
          assert.equals("usage", err.kind)
          assert.matches("before writing", err.message)
          local p = L.pending_invoke(conn, "Sum", ch)
          ok, err = pcall(conn.invoke, conn, "Sum", ch)
          assert.is_false(ok)
          assert.equals("usage", err.kind)
          assert.matches("already passed", err.message)
          ok, err = pcall(conn.invoke, conn, "Echo", { nested = signalr.channel() })
          assert.is_false(ok)
          assert.equals("usage", err.kind)
          assert.matches("channel", err.message)
          ch:write(41)
          ch:close()
          ch:close() -- a second close does nothing
          ok, err = pcall(ch.write, ch, 1)
          assert.is_false(ok)
          assert.equals("usage", err.kind)
          assert.matches("closed", err.message)
          L.wait_for(function() return p.done end, 5, "Sum")
          assert.equals(41, p.result)
        end)
      end)

      describe("client results", function()
        local function ask(conn, method, ...)
          conn:invoke("AskLater", method, signalr.array({ ... }))
          local out
          L.wait_for(function()
            out = conn:invoke("AskOutcome")
            return out
          end, 5, "the server's call to " .. method)
          return out
        end

        it("answers with the handler's return value, nil as null", function()
          local conn = connect()
          conn:on("Square", function(x) return x * x end)
          conn:on("Nothing", function() end)
          conn:on("Table", function(a, b) return { sum = a + b, list = { a, b } } end)
          assert.equals("result:49", ask(conn, "square", 7))
          assert.equals("result:null", ask(conn, "Nothing"))
          local r = ask(conn, "Table", 2, 3)
          assert.matches('"sum":5', r, 1, true)
          assert.matches('"list":[2,3]', r, 1, true)
        end)

        it("answers with the message of the handler's error", function()
          local conn = connect()
          conn:on("Fails", function() error("no such account", 0) end)
          local _, hub_err = pcall(conn.invoke, conn, "ThrowHub", "bad input")
          assert.equals("hub", hub_err.kind)
          conn:on("FailsObj", function() error(hub_err) end)
          assert.equals("error:no such account", ask(conn, "Fails"))
          assert.equals("error:" .. hub_err.message, ask(conn, "FailsObj"))
        end)

        it("answers that there is no result when no handler exists", function()
          local conn = connect()
          assert.equals("error:Client didn't provide a result.", ask(conn, "Missing"))
          assert.equals("error:Client didn't provide a result.", ask(conn, "Missing", 1, "two"))
        end)

        it("lets the handler invoke and sleep before it returns", function()
          local conn = connect()
          conn:on("Slow", function(x)
            signalr.sleep(0.05)
            return conn:invoke("Add", x, 1)
          end)
          assert.equals("result:42", ask(conn, "Slow", 41))
        end)

        it("with several handlers: the one value, or an error when several return one", function()
          local conn = connect()
          local ran = 0
          conn:on("Multi", function() ran = ran + 1 end)
          conn:on("Multi", function() ran = ran + 1; return "mine" end)
          assert.equals('result:"mine"', ask(conn, "Multi"))
          assert.equals(2, ran)
          conn:on("Two", function() return 1 end)
          conn:on("Two", function() return 2 end)
          assert.equals("error:Client provided multiple results.", ask(conn, "Two"))
          conn:on("Mixed", function() error("first fails", 0) end)
          conn:on("Mixed", function() return "second answers" end)
          assert.equals('result:"second answers"', ask(conn, "Mixed"))
        end)

        it("answers a hub method that calls the client and waits", function()
          local conn = connect("/clientresulthub")
          conn:on("Square", function(x) return x * x end)
          assert.equals(144, conn:invoke("AskClient", "Square", 12))
          local ok, err = pcall(conn.invoke, conn, "AskClientNoArgs", "Unknown")
          assert.is_false(ok)
          assert.equals("hub", err.kind)
        end)
      end)
    end)
    end
  end
  end

  describe("a slow reader", function()
    it("of a million items keeps memory bounded: reading pauses, nothing is dropped", function()
      local conn = L.build(hub.url .. "/testhub", nil, { transports = { "websockets" } })
      conn:start()
      -- a second connection watches the server: the first one is paused
      local watch = L.build(hub.url .. "/testhub")
      watch:start()
      local N, tg = 1000000, tag()
      local s = conn:stream("TrackedCounter", tg, N, 0)
      assert.equals(1, s:items()(s))
      -- do not read: the server must stall well before the end
      local last, still = -1, 0
      L.wait_for(function()
        local n = watch:invoke("StreamProduced", tg)
        if n == last and n > 0 then still = still + 1 else still = 0 end
        last = n
        signalr.sleep(0.2)
        return still >= 3
      end, 30, "the server stalls")
      assert.is_true(last < N / 2, "the server produced " .. last .. " items without a reader")
      assert.is_true(s:buffered() <= 1000, "queued " .. s:buffered())
      -- now read everything, in order
      local expect = 2
      for item in s:items() do
        if item ~= expect then error(("item %d where %d was due"):format(item, expect)) end
        expect = expect + 1
        assert(s:buffered() <= 1000)
      end
      assert.equals(N + 1, expect)
      assert.equals("completed", watch:invoke("StreamOutcome", tg))
    end)

    it("with subscribe keeps memory bounded while its callbacks wait", function()
      local conn = L.build(hub.url .. "/testhub", function(b) b:with_stream_buffer(50) end,
        { transports = { "websockets" } })
      conn:start()
      local watch = L.build(hub.url .. "/testhub")
      watch:start()
      local tg, running, most, got, done = tag(), 0, 0, 0, false
      conn:stream("TrackedCounter", tg, 5000, 0):subscribe({
        next = function()
          running = running + 1
          if running > most then most = running end
          signalr.sleep(0.001)
          got = got + 1
          running = running - 1
        end,
        complete = function() done = true end,
      })
      L.wait_for(function() return done end, 60, "the stream completes")
      L.wait_for(function() return got == 5000 end, 10, "every callback ends")
      assert.is_true(most <= 50 + 1, "callbacks at once: " .. most)
    end)
  end)

  describe("a reader at the top level", function()
    it("gets each batch of a flood as it comes, so reading never pauses", function()
      -- A blocking wait's poll returns once its result has come, rather
      -- than after every batch already queued: one batch is at most 64 KiB
      -- of records (under 1,600 items), so a buffer of 2,000 never fills.
      -- White-box: the core connection's pause is counted.
      local conn = L.build(hub.url .. "/testhub", function(b) b:with_stream_buffer(2000) end,
        { transports = { "websockets" } })
      conn:start()
      local core_mt = getmetatable(conn._c).__index
      local pause, pauses = core_mt.pause, 0
      core_mt.pause = function(c) pauses = pauses + 1; return pause(c) end
      local ok, err = pcall(function()
        local n, expect = 200000, 1
        for item in conn:stream("Counter", n, 0):items() do
          if item ~= expect then error(("item %d where %d was due"):format(item, expect)) end
          expect = expect + 1
        end
        assert.equals(n + 1, expect)
      end)
      core_mt.pause = pause
      assert(ok, err)
      assert.equals(0, pauses)
    end)
  end)

  describe("readers in coroutines", function()
    it("read two streams of one connection at once, each pausing in turn", function()
      local conn = L.build(hub.url .. "/testhub", function(b) b:with_stream_buffer(10) end)
      conn:start()
      local a, b = conn:stream("Counter", 500, 0), conn:stream("Counter", 300, 1)
      local got_a, got_b, done = {}, {}, 0
      signalr.spawn(function()
        for x in a:items() do
          got_a[#got_a + 1] = x
          if x % 50 == 0 then signalr.sleep(0.01) end
        end
        done = done + 1
      end)
      signalr.spawn(function()
        for x in b:items() do got_b[#got_b + 1] = x end
        done = done + 1
      end)
      L.wait_for(function() return done == 2 end, 30, "both streams read")
      assert.same(seq(500), got_a)
      assert.same(seq(300), got_b)
    end)
  end)

  describe("a channel writer", function()
    it("waits while the send buffer is full, and nothing is lost", function()
      -- stateful reconnect keeps what the server has not acknowledged; a
      -- small buffer fills after a few items, and each write then waits
      -- for the server's Ack
      local conn = L.build(hub.url .. "/statefulhub", function(b)
        b:with_stateful_reconnect({ buffer_size = 1000 })
      end)
      conn:start()
      local ch = signalr.channel()
      local p = L.pending_invoke(conn, "Collect", ch)
      local want = {}
      for i = 1, 25 do
        want[i] = ("%03d"):format(i) .. string.rep("x", 100)
        ch:write(want[i])
      end
      ch:close()
      L.wait_for(function() return p.done end, 20, "Collect")
      assert.is_true(p.ok, p.err and tostring(p.err))
      assert.same(want, p.result)
    end)
  end)

  describe("across a reconnect", function()
    it("fails open streams with kind closed, as the official clients do", function()
      local conn = L.build(hub.url .. "/testhub", function(b) b:with_automatic_reconnect({ 0 }) end)
      local ev = L.track(conn)
      conn:start()
      local s = conn:stream("TrackedCounter", tag(), 100000, 50)
      assert.equals(1, s:items()(s))
      -- the server ends the connection and allows a reconnect
      conn:send("CloseWithErrorReconnect", "restarting")
      local ok, err = pcall(function() for _ in s:items() do end end)
      assert.is_false(ok)
      assert.equals("closed", err.kind)
      L.wait_for(function() return #ev.reconnected == 1 end, 10, "reconnected")
      assert.same({ 1, 2 }, collect(conn:stream("Counter", 2, 0)))
    end)
  end)
end)
