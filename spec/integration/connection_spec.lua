-- Connection lifecycle, invoke/send/on against the real ASP.NET Core hub.
local signalr = require("signalr")
local helper = require("spec.helper")
local C = require("spec.support.compat")

local hub_url

local function connect(path, configure)
  local b = signalr.builder():with_url(hub_url .. (path or "/testhub"))
  if configure then configure(b) end
  local conn = b:build()
  conn:start()
  return conn
end

local function capture_logs(b, level)
  local lines = {}
  b:configure_logging(level or "debug", function(lvl, msg) lines[#lines + 1] = lvl .. " " .. msg end)
  return lines
end

local function errors_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

describe("connection", function()
  setup(function()
    hub_url = helper.shared_hub().url
  end)

  it("starts, reports its state and id, and stops", function()
    local conn = signalr.builder():with_url(hub_url .. "/testhub"):build()
    assert.equals("disconnected", conn.state)
    assert.is_nil(conn.connection_id)
    conn:start()
    assert.equals("connected", conn.state)
    assert.is_string(conn.connection_id)
    assert.equals(conn.connection_id, conn:invoke("GetConnectionId"))
    conn:stop()
    assert.equals("disconnected", conn.state)
  end)

  it("uses the WebSockets transport", function()
    local conn = connect()
    assert.equals("WebSockets", conn:invoke("GetTransport"))
    conn:stop()
  end)

  it("invokes and gets results of the right type", function()
    local conn = connect()
    local r = conn:invoke("Add", 40, 2)
    assert.equals(42, r)
    assert.is_true(C.is_integer(r))
    assert.equals("ab", conn:invoke("Concat", "a", "b"))
    assert.is_nil(conn:invoke("Nop"))
    conn:stop()
  end)

  it("sends without waiting, in order", function()
    local conn = connect()
    conn:invoke("ClearRecorded")
    for i = 1, 100 do conn:send("Record", i) end
    assert.equals(100, conn:invoke("GetRecorded"))
    local items = conn:invoke("GetRecordedItems")
    for i = 1, 100 do assert.equals(i, items[i]) end
    conn:stop()
  end)

  it("keeps the hub URL's query string", function()
    local conn = connect("/testhub?team=blue&x=1")
    assert.equals("blue", conn:invoke("GetQuery", "team"))
    conn:stop()
  end)

  it("sends the configured headers and the access token", function()
    local conn = signalr.builder()
      :with_url(hub_url .. "/testhub", { headers = { ["X-Client"] = "game" }, access_token = "tok-123" })
      :build()
    conn:start()
    assert.equals("game", conn:invoke("GetHeader", "X-Client"))
    assert.equals("Bearer tok-123", conn:invoke("GetHeader", "Authorization"))
    conn:stop()
  end)

  it("calls an access token function before connecting", function()
    local calls = 0
    local conn = signalr.builder()
      :with_url(hub_url .. "/testhub", { access_token = function() calls = calls + 1; return "fn-tok" end })
      :build()
    conn:start()
    assert.is_true(calls >= 1)
    assert.equals("Bearer fn-tok", conn:invoke("GetHeader", "Authorization"))
    conn:stop()
  end)

  it("connects with skip_negotiation over WebSockets", function()
    local conn = signalr.builder()
      :with_url(hub_url .. "/testhub", { skip_negotiation = true, transports = "websockets" })
      :build()
    conn:start()
    assert.is_nil(conn.connection_id)
    assert.equals(5, conn:invoke("Add", 2, 3))
    conn:stop()
  end)

  it("can be started again after a stop", function()
    local conn = connect()
    local id1 = conn.connection_id
    conn:stop()
    conn:start()
    assert.are_not.equal(id1, conn.connection_id)
    assert.equals(3, conn:invoke("Add", 1, 2))
    conn:stop()
  end)

  describe("handlers", function()
    it("runs a handler for a server call, matching the name case-insensitively", function()
      local conn = connect()
      local got
      conn:on("Notify", function(x) got = x end)
      assert.equals("ok", conn:invoke("CallMeBack", "notify", "hi"))
      helper.wait_until(function() signalr.poll(0.01); return got ~= nil end, 5)
      assert.equals("hi", got)
      conn:stop()
    end)

    it("runs every handler of a method, and off/remove take them away", function()
      local conn = connect()
      local a, b = 0, 0
      local sub = conn:on("tick", function() a = a + 1 end)
      conn:on("tick", function() b = b + 1 end)
      conn:invoke("CallMeBackNoArgs", "tick")
      signalr.sleep(0.2)
      assert.same({ 1, 1 }, { a, b })
      sub:remove()
      conn:invoke("CallMeBackNoArgs", "tick")
      signalr.sleep(0.2)
      assert.same({ 1, 2 }, { a, b })
      conn:off("TICK")
      conn:invoke("CallMeBackNoArgs", "tick")
      signalr.sleep(0.2)
      assert.same({ 1, 2 }, { a, b })
      conn:stop()
    end)

    it("delivers server calls in arrival order", function()
      local conn = connect()
      local seen = {}
      conn:on("seq", function(i) seen[#seen + 1] = i end)
      assert.equals(200, conn:invoke("CallMeBackMany", "seq", 200))
      helper.wait_until(function() signalr.poll(0.01); return #seen == 200 end, 5)
      for i = 1, 200 do assert.equals(i, seen[i]) end
      conn:stop()
    end)

    it("delivers floods of two methods in order, through a handler's error, a wait and a handler added midway", function()
      -- A run of one method's calls goes to its handler in one coroutine
      -- (c:take_call); each call still sees the handlers of its own moment,
      -- and an error or a wait ends a run, never a call.
      local b = signalr.builder():with_url(hub_url .. "/testhub")
      local logs = capture_logs(b, "warning")
      local conn = b:build()
      conn:start()
      local N = 3000
      local a, bs, extra, waited = {}, {}, {}, false
      conn:on("floodA", function(i)
        a[#a + 1] = i
        if i == 1000 then error("boom at 1000") end
        if i == 1200 then conn:on("floodA", function(j) extra[#extra + 1] = j end) end
        if i == 2000 then
          signalr.sleep(0.05)
          waited = true
        end
      end)
      conn:on("floodB", function(i) bs[#bs + 1] = i end)
      assert.equals("started", conn:invoke("StartPush", "floodA", N, 0))
      assert.equals("started", conn:invoke("StartPush", "floodB", N, 0))
      helper.wait_until(function()
        signalr.poll(0.01)
        return #a == N and #bs == N and #extra == N - 1200 and waited
      end, 20)
      for i = 1, N do
        assert.equals(i, a[i])
        assert.equals(i, bs[i])
      end
      -- every call from the 1201st on, once (the 2000th reaches the added
      -- handler after its first handler's wait, so later ones come first)
      table.sort(extra)
      for i = 1201, N do assert.equals(i, extra[i - 1200]) end
      local failed = 0
      for _, l in ipairs(logs) do
        if l:find("boom at 1000", 1, true) then
          failed = failed + 1
          assert.truthy(l:find("handler for 'floodA' failed", 1, true), l)
        end
      end
      assert.equals(1, failed)
      assert.equals(7, conn:invoke("Add", 3, 4))
      conn:stop()
    end)

    it("passes several arguments, nil for null", function()
      local conn = connect()
      local args
      conn:on("two", function(...) args = C.pack(...) end)
      conn:invoke("CallMeBackTwo", "two", 1, nil)
      helper.wait_until(function() signalr.poll(0.01); return args ~= nil end, 5)
      assert.equals(2, args.n)
      assert.equals(1, args[1])
      assert.is_nil(args[2])
      conn:stop()
    end)

    it("logs a handler's error with its method and keeps the connection and the other handlers", function()
      local b = signalr.builder():with_url(hub_url .. "/testhub")
      local logs = capture_logs(b, "warning")
      local conn = b:build()
      conn:start()
      local function logged(text)
        for _, l in ipairs(logs) do
          if l:find(text, 1, true) then return l end
        end
      end
      -- a method's only handler (run without a pcall of its own)
      conn:on("boom", function() error("handler exploded") end)
      conn:invoke("CallMeBackNoArgs", "Boom")
      local line = helper.wait_for(function() return logged("handler exploded") end, 5)
      assert.truthy(line, "the handler's error is logged")
      assert.truthy(line:find("handler for 'Boom' failed", 1, true), line)
      assert.truthy(line:find("stack traceback", 1, true), line)
      -- the same after the handler waited (the error comes from a later resume)
      conn:on("late", function()
        signalr.sleep(0.01)
        error("late explosion")
      end)
      conn:invoke("CallMeBackNoArgs", "late")
      line = helper.wait_for(function() return logged("late explosion") end, 5)
      assert.truthy(line and line:find("handler for 'late' failed", 1, true), tostring(line))
      -- two handlers: the first one's error does not stop the second
      local second = false
      conn:on("pair", function() error("first of two") end)
      conn:on("pair", function() second = true end)
      conn:invoke("CallMeBackNoArgs", "pair")
      assert.truthy(helper.wait_for(function() return second and logged("first of two") end, 5))
      assert.equals("connected", conn.state)
      assert.equals(7, conn:invoke("Add", 3, 4))
      conn:stop()
    end)

    it("delivers a server call of 2,000 arguments and refuses one of 2,001 with a clear error", function()
      local b = signalr.builder():with_url(hub_url .. "/testhub")
      local logs = capture_logs(b, "warning")
      local conn = b:build()
      conn:start()
      local got
      conn:on("many", function(...) got = C.pack(...) end)
      assert.equals("ok", conn:invoke("CallMeBackWithArgs", "many", 2000))
      assert.truthy(helper.wait_for(function() return got end, 5))
      assert.equals(2000, got.n)
      assert.equals(0, got[1])
      assert.equals(1999, got[2000])
      assert.is_true(C.is_integer(got[2000]))
      got = nil
      assert.equals("ok", conn:invoke("CallMeBackWithArgs", "many", 2001))
      local line = helper.wait_for(function()
        for _, l in ipairs(logs) do
          if l:find("2001 arguments", 1, true) then return l end
        end
      end, 5)
      assert.truthy(line, "the refused call is logged")
      assert.truthy(line:find("^error ") and line:find("at most 2000", 1, true), line)
      assert.is_nil(got)
      -- a huge one is refused the same way, and the connection goes on
      assert.equals("ok", conn:invoke("CallMeBackWithArgs", "many", 250000))
      assert.truthy(helper.wait_for(function()
        for _, l in ipairs(logs) do
          if l:find("250000 arguments", 1, true) then return true end
        end
      end, 10))
      assert.is_nil(got)
      assert.equals(7, conn:invoke("Add", 3, 4))
      conn:stop()
    end)

    it("logs a server call with no handler and keeps the connection", function()
      local b = signalr.builder():with_url(hub_url .. "/testhub")
      local logs = capture_logs(b, "warning")
      local conn = b:build()
      conn:start()
      conn:invoke("CallMeBackNoArgs", "nobodyListens")
      signalr.sleep(0.2)
      assert.equals("connected", conn.state)
      local found = false
      for _, l in ipairs(logs) do if l:lower():find("nobodylistens", 1, true) then found = true end end
      assert.is_true(found, "the missing handler is logged")
      conn:stop()
    end)

    it("runs handlers that wait beside handlers that do not, and keeps no finished call's arguments", function()
      -- Handler coroutines are reused once a call's handlers have finished:
      -- a waiting handler must keep its own coroutine, and a finished one
      -- must not keep its arguments alive.
      local conn = connect()
      local order, kept = {}, setmetatable({}, { __mode = "k" })
      conn:on("seq", function(i)
        if i == 1 then
          signalr.sleep(0.2) -- the calls after it run meanwhile
        end
        order[#order + 1] = i
      end)
      conn:on("obj", function(t) kept[t] = true end)
      assert.equals(5, conn:invoke("CallMeBackMany", "seq", 5))
      helper.wait_until(function() signalr.poll(0.01); return #order == 5 end, 5)
      assert.same({ 2, 3, 4, 5, 1 }, order)
      conn:invoke("CallMeBack", "obj", { a = 1 })
      helper.wait_until(function() signalr.poll(0.01); return next(kept) ~= nil end, 5)
      conn:invoke("Add", 1, 1) -- a later call has been dispatched since
      collectgarbage()
      collectgarbage()
      assert.is_nil(next(kept), "the finished handler's argument was collected")
      conn:stop()
    end)

    it("lets a handler invoke and stop without deadlock", function()
      local conn = connect()
      local result, stopped
      conn:on("go", function()
        result = conn:invoke("Add", 20, 22)
        conn:stop()
        stopped = conn.state
      end)
      conn:send("CallMeBackNoArgs", "go")
      helper.wait_until(function() signalr.poll(0.01); return stopped ~= nil end, 5)
      assert.equals(42, result)
      assert.equals("disconnected", stopped)
    end)
  end)

  describe("concurrency", function()
    it("gives each of many concurrent invokes its own result", function()
      local conn = connect()
      local results, done = {}, 0
      signalr.run(function()
        for w = 1, 10 do
          signalr.spawn(function()
            for i = 1, 20 do
              local v = w * 1000 + i
              results[v] = conn:invoke("DelayEcho", (i % 3) * 5, v)
            end
            done = done + 1
          end)
        end
        while done < 10 do signalr.sleep(0.01) end
      end)
      for w = 1, 10 do
        for i = 1, 20 do assert.equals(w * 1000 + i, results[w * 1000 + i]) end
      end
      conn:stop()
    end)

    it("yields inside run so slow calls on several connections overlap", function()
      -- /testhub runs one invocation per client at a time (the server's
      -- default), so the overlap is across five connections.
      local conns = {}
      for i = 1, 5 do conns[i] = connect() end
      local t0 = helper.now()
      signalr.run(function()
        local n = 0
        for i = 1, 5 do
          signalr.spawn(function() conns[i]:invoke("Delay", 300); n = n + 1 end)
        end
        while n < 5 do signalr.sleep(0.01) end
      end)
      assert.is_true(helper.now() - t0 < 1.2, "five 300 ms calls overlapped")
      for i = 1, 5 do conns[i]:stop() end
    end)
  end)

  describe("closing", function()
    it("fails at once when invoking while not connected", function()
      local conn = signalr.builder():with_url(hub_url .. "/testhub"):build()
      local err = errors_of(conn.invoke, conn, "Add", 1, 2)
      assert.equals("closed", err.kind)
      err = errors_of(conn.send, conn, "Add", 1, 2)
      assert.equals("closed", err.kind)
    end)

    it("fails pending calls with kind closed on stop, and on_close gets nil", function()
      local conn = connect()
      local closed_with = "not called"
      conn:on_close(function(e) closed_with = e end)
      local err
      signalr.run(function()
        signalr.spawn(function()
          -- signalr.pcall: pcall on 5.2+; on 5.1 a wait under a plain
          -- pcall would block (pump) instead of yielding
          local ok, e = signalr.pcall(conn.invoke, conn, "Delay", 5000)
          err = ok and "no error" or e
        end)
        signalr.sleep(0.1)
        conn:stop()
      end)
      assert.equals("closed", err.kind)
      assert.is_nil(closed_with)
    end)

    -- A blocking invoke on the main thread waits in the core for its own
    -- answer (invoke_wait); what ends a call must end that wait too.
    it("ends a blocking invoke of the main thread with kind closed when the connection is stopped meanwhile", function()
      local conn = connect()
      signalr.spawn(function() signalr.sleep(0.1); conn:stop() end)
      local t0 = helper.mono()
      local err = errors_of(conn.invoke, conn, "Delay", 5000)
      assert.equals("closed", err.kind)
      assert.is_true(helper.mono() - t0 < 4, "ended by the stop, not by the server")
      assert.equals("disconnected", conn.state)
    end)

    it("ends a blocking invoke of the main thread with kind closed when the connection is closed meanwhile", function()
      local conn = connect()
      signalr.spawn(function() signalr.sleep(0.1); conn:close() end)
      local t0 = helper.mono()
      local err = errors_of(conn.invoke, conn, "Delay", 5000)
      assert.equals("closed", err.kind)
      assert.equals("the connection was closed", err.message)
      assert.is_true(helper.mono() - t0 < 4, "ended by the close, not by the server")
    end)

    it("runs handlers and other coroutines while the main thread waits for an answer", function()
      local conn = connect()
      local got, ticks = {}, 0
      conn:on("note", function(x) got[#got + 1] = x end)
      signalr.spawn(function()
        for _ = 1, 3 do signalr.sleep(0.05); ticks = ticks + 1 end
      end)
      conn:send("CallMeBack", "note", "hello")
      assert.equals(300, conn:invoke("Delay", 300))
      assert.same({ "hello" }, got)
      assert.equals(3, ticks)
    end)

    it("reports a server-side abort to on_close and fails pending calls", function()
      -- The server answers Abort with a Close message without error (as the
      -- official clients, on_close then gets nil) and never completes the call.
      local conn = connect()
      local closed_with
      conn:on_close(function(e) closed_with = e or "nil" end)
      local err = errors_of(conn.invoke, conn, "Abort")
      assert.equals("closed", err.kind)
      helper.wait_until(function() signalr.poll(0.01); return closed_with ~= nil end, 5)
      assert.equals("disconnected", conn.state)
      assert.equals("nil", closed_with)
    end)

    it("surfaces a Close message's error", function()
      local conn = connect()
      local closed_with
      conn:on_close(function(e) closed_with = e end)
      pcall(conn.invoke, conn, "CloseWithError", "bye now")
      helper.wait_until(function() signalr.poll(0.01); return closed_with ~= nil end, 5)
      assert.matches("bye now", closed_with.message, 1, true)
    end)

    it("closes with an error when a message is over the server's limit", function()
      local conn = connect()
      local closed_with
      conn:on_close(function(e) closed_with = e end)
      local err = errors_of(conn.invoke, conn, "Echo", string.rep("x", 64 * 1024))
      assert.equals("closed", err.kind)
      helper.wait_until(function() signalr.poll(0.01); return closed_with ~= nil end, 5)
      assert.equals("disconnected", conn.state)
    end)

    it("is collected when dropped without stop", function()
      local conn = connect()
      local weak = setmetatable({ conn }, { __mode = "v" })
      conn:stop()
      conn = nil
      collectgarbage(); collectgarbage()
      assert.is_nil(weak[1])
    end)
  end)
end)
