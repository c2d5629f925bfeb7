-- The Lua API without a server: module surface, builder validation, error
-- objects, a never-started connection, the scheduler and the event loop.
local signalr = require("signalr")
local core = require("signalr.core")
local C = require("spec.support.compat")

local function errors_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

-- wall clock with sub-second resolution, without extra libraries
local function now()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("*a"))
  p:close()
  return t
end

local URL = "http://127.0.0.1:1/hub"

local function quiet(b)
  return b:configure_logging("none")
end

describe("module", function()
  it("has the API's names", function()
    assert.is_string(signalr.VERSION)
    assert.matches("^%d+%.%d+%.%d+", signalr.VERSION)
    for _, name in ipairs({ "array", "map", "binary", "builder", "spawn", "run", "poll", "fd", "sleep", "channel" }) do
      assert.is_function(signalr[name], name)
    end
  end)

  it("makes channels that refuse writes before they are passed to a call", function()
    local ch = signalr.channel()
    assert.matches("^signalr.Channel", tostring(ch))
    local err = errors_of(ch.write, ch, 1)
    assert.equals("usage", err.kind)
    ch:close()
    assert.equals("usage", errors_of(ch.write, ch, 1).kind)
  end)
end)

describe("builder", function()
  local function build_error(configure)
    local b = signalr.builder()
    configure(b)
    local err = errors_of(b.build, b)
    assert.is_true(signalr.is_error(err), "an error object")
    return err
  end

  it("chains every with_* method", function()
    local b = signalr.builder()
    assert.equals(b, b:with_url(URL))
    assert.equals(b, b:with_automatic_reconnect())
    assert.equals(b, b:with_hub_protocol("json"))
    assert.equals(b, b:with_server_timeout(30))
    assert.equals(b, b:with_keepalive_interval(15))
    assert.equals(b, b:with_handshake_timeout(15))
    assert.equals(b, b:with_stateful_reconnect())
    assert.equals(b, b:configure_logging("none"))
    local conn = b:build()
    assert.equals("disconnected", conn.state)
    conn:close()
  end)

  it("builds with every with_url option", function()
    local conn = quiet(signalr.builder():with_url(URL, {
      transports = { "websockets", "server_sent_events", "long_polling" },
      skip_negotiation = false,
      headers = { ["X-Client"] = "game" },
      access_token = function() return "t" end,
      tls = { verify = true, ca_file = "/nonexistent/ca.pem" },
      proxy = "http://127.0.0.1:3128",
    })):build()
    conn:close()
    conn = quiet(signalr.builder():with_url(URL, { transports = "websockets", skip_negotiation = true,
      access_token = "tok" })):build()
    conn:close()
  end)

  it("requires a URL", function()
    local err = build_error(function() end)
    assert.equals("usage", err.kind)
    assert.matches("URL", err.message, 1, true)
    assert.equals("usage", build_error(function(b) b:with_url(nil) end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(42) end).kind)
    assert.equals("usage", build_error(function(b) b:with_url("ftp://host/hub") end).kind)
    assert.equals("usage", build_error(function(b) b:with_url("not a url") end).kind)
  end)

  it("refuses unknown transports and bad with_url options", function()
    assert.equals("usage", build_error(function(b) b:with_url(URL, { transports = "carrier_pigeon" }) end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL, { transports = {} }) end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL, { transports = 1 }) end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL, "websockets") end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL, { skip_negotiation = "yes" }) end).kind)
    assert.equals("usage", build_error(function(b)
      b:with_url(URL, { skip_negotiation = true, transports = "long_polling" })
    end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL, { headers = "X: y" }) end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL, { headers = { x = {} } }) end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL, { access_token = 42 }) end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL, { tls = true }) end).kind)
    -- a typo in an option name is not ignored
    local err = build_error(function(b) b:with_url(URL, { acces_token = "t" }) end)
    assert.equals("usage", err.kind)
    assert.matches("unknown option 'acces_token' (options: access_token,", err.message, 1, true)
    err = build_error(function(b) b:with_url(URL, { tls = { verfy = false } }) end)
    assert.equals("usage", err.kind)
    assert.matches("unknown tls option 'verfy'", err.message, 1, true)
    -- a ws:// URL without skip_negotiation would fail at start: said at build
    err = build_error(function(b) b:with_url("ws://127.0.0.1:5000/hub") end)
    assert.equals("usage", err.kind)
    assert.matches("add skip_negotiation = true, or use http://", err.message, 1, true)
    assert.equals("usage", build_error(function(b) b:with_url("wss://h/hub", {}) end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL, { tls = { verify = "no" } }) end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL, { tls = { cert_file = "c.pem" } }) end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL, { proxy = 3128 }) end).kind)
  end)

  it("takes json and messagepack, in any case, and refuses other protocols", function()
    assert.equals("usage", build_error(function(b) b:with_url(URL):with_hub_protocol("xml") end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL):with_hub_protocol(nil) end).kind)
    for _, p in ipairs({ "json", "JSON", "messagepack", "MessagePack" }) do
      local conn = signalr.builder():with_url(URL):with_hub_protocol(p):configure_logging("none"):build()
      assert.equals("disconnected", conn.state)
      conn:close()
    end
  end)

  it("refuses negative or non-number timeouts", function()
    for _, m in ipairs({ "with_server_timeout", "with_keepalive_interval", "with_handshake_timeout" }) do
      assert.equals("usage", build_error(function(b) b:with_url(URL)[m](b, -1) end).kind, m)
      assert.equals("usage", build_error(function(b) b:with_url(URL)[m](b, "10") end).kind, m)
      assert.equals("usage", build_error(function(b) b:with_url(URL)[m](b, 0 / 0) end).kind, m)
    end
  end)

  it("refuses bad logging configurations", function()
    assert.equals("usage", build_error(function(b) b:with_url(URL):configure_logging("loud") end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL):configure_logging("debug", "stderr") end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL):configure_logging(nil) end).kind)
  end)

  it("validates automatic reconnect policies, and no longer warns that they are not supported", function()
    assert.equals("usage", build_error(function(b) b:with_url(URL):with_automatic_reconnect({ 0, -1 }) end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL):with_automatic_reconnect("often") end).kind)
    assert.equals("usage", build_error(function(b) b:with_url(URL):with_automatic_reconnect({ x = 1 }) end).kind)
    for _, policy in ipairs({ { 0, 0, 10 }, function() return nil end, { next_retry_delay = function() end } }) do
      local lines = {}
      local conn = signalr.builder():with_url(URL):with_automatic_reconnect(policy)
        :configure_logging("trace", function(level, msg) lines[#lines + 1] = level .. ": " .. msg end)
        :build()
      for _, line in ipairs(lines) do
        assert.is_nil(line:find("not supported", 1, true), line)
        assert.is_nil(line:find("^warning:"), line)
      end
      conn:close()
    end
  end)

  it("takes configure_logging(fn) alone", function()
    local conn = signalr.builder():with_url(URL):configure_logging(function() end):build()
    conn:close()
  end)
end)

describe("error objects", function()
  it("have kind, message and a __tostring", function()
    local err = errors_of(signalr.builder().build, signalr.builder())
    assert.equals("usage", err.kind)
    assert.is_string(err.message)
    assert.is_function(getmetatable(err).__tostring)
    local s = tostring(err)
    assert.matches("usage", s, 1, true)
    assert.matches(err.message, s, 1, true)
  end)

  it("show a negotiate status", function()
    local err = signalr.new_error("negotiate", "negotiate failed", 404)
    assert.equals(404, err.status)
    assert.matches("404", tostring(err), 1, true)
    assert.is_true(signalr.is_error(err))
    assert.is_true(signalr.is_error(err, "negotiate"))
    assert.is_false(signalr.is_error(err, "hub"))
    assert.is_false(signalr.is_error({ kind = "hub" }))
  end)
end)

describe("a connection that was never started", function()
  local conn

  before_each(function()
    conn = quiet(signalr.builder():with_url(URL)):build()
  end)

  after_each(function()
    conn:close()
  end)

  it("is disconnected and has no id", function()
    assert.equals("disconnected", conn.state)
    assert.is_nil(conn.connection_id)
  end)

  it("fails invoke and send at once with kind closed", function()
    local t0 = now()
    local err = errors_of(conn.invoke, conn, "Add", 1, 2)
    assert.equals("closed", err.kind)
    assert.matches("Add", err.message, 1, true)
    assert.equals("closed", errors_of(conn.send, conn, "Add", 1, 2).kind)
    assert.is_true(now() - t0 < 0.5)
  end)

  it("refuses a method name that is not a string with kind usage", function()
    assert.equals("usage", errors_of(conn.invoke, conn, 42).kind)
    assert.equals("usage", errors_of(conn.send, conn).kind)
    assert.equals("usage", errors_of(conn.on, conn, nil, print).kind)
    assert.equals("usage", errors_of(conn.on, conn, "m", "not a function").kind)
  end)

  it("refuses streams while not connected with kind closed, and a bad method name with usage", function()
    assert.equals("closed", errors_of(conn.stream, conn, "Counter", 10).kind)
    assert.equals("usage", errors_of(conn.stream, conn, 42).kind)
  end)

  it("stops at once", function()
    conn:stop()
    assert.equals("disconnected", conn.state)
  end)

  it("registers and removes handlers", function()
    local sub = conn:on("Notify", function() end)
    assert.is_function(sub.remove)
    sub:remove()
    sub:remove()
    conn:on("x", print)
    conn:off("X", print)
    conn:off("X")
    assert.is_function(conn:on_close(print).remove)
    assert.is_function(conn:on_reconnecting(print).remove)
    assert.is_function(conn:on_reconnected(print).remove)
  end)

  it("can be closed twice and then fails with kind closed", function()
    conn:close()
    conn:close()
    assert.equals("disconnected", conn.state)
    assert.equals("closed", errors_of(conn.start, conn).kind)
  end)

  it("closes as a to-be-closed variable", function()
    local c2
    C.to_be_closed(quiet(signalr.builder():with_url(URL)):build(), function(c) c2 = c end)
    assert.equals("closed", errors_of(c2.start, c2).kind)
  end)

  it("is collected when dropped, even when its handlers capture it", function()
    local c = quiet(signalr.builder():with_url(URL)):build()
    c:on("m", function() return c end)
    c:on_close(function() return c end)
    local weak = setmetatable({ c }, { __mode = "v" })
    c = nil
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
  end)
end)

describe("starting against a closed port", function()
  it("raises kind transport and stays disconnected", function()
    local port = require("spec.helper").free_port()
    local conn = quiet(signalr.builder():with_url("http://127.0.0.1:" .. port .. "/hub")):build()
    local err = errors_of(conn.start, conn)
    assert.equals("transport", err.kind)
    assert.equals("disconnected", conn.state)
    conn:close()
  end)

  it("logs an access token function's error and goes on without a token", function()
    local port = require("spec.helper").free_port()
    local lines, calls = {}, 0
    local conn = signalr.builder()
      :with_url("http://127.0.0.1:" .. port .. "/hub", {
        access_token = function() calls = calls + 1; error("token failure") end,
      })
      :configure_logging("error", function(level, msg) lines[#lines + 1] = level .. ": " .. msg end)
      :build()
    assert.equals("transport", errors_of(conn.start, conn).kind)
    assert.is_true(calls >= 1)
    assert.matches("token failure", table.concat(lines, "\n"), 1, true)
    conn:close()
  end)
end)

describe("scheduler", function()
  it("signalr.pcall lets a wait yield on every Lua, and returns what pcall does", function()
    local order = {}
    signalr.spawn(function()
      local ok, v = signalr.pcall(function(x)
        signalr.sleep(0.01)
        return x
      end, "v")
      order[#order + 1] = tostring(ok) .. v
      local ok2, err = signalr.pcall(function() error({ kind = "mine" }) end)
      order[#order + 1] = tostring(ok2) .. err.kind
    end)
    order[#order + 1] = "after"
    signalr.run()
    assert.same({ "after", "truev", "falsemine" }, order)
  end)

  it("a wait under a plain pcall or in a for iterator works (on 5.1 it pumps instead of yielding)", function()
    local got
    signalr.spawn(function()
      local ok = pcall(signalr.sleep, 0.01)
      local n = 0
      for _ in function(_, i) signalr.sleep(0.001); if (i or 0) < 3 then return (i or 0) + 1 end end do
        n = n + 1
      end
      got = tostring(ok) .. n
    end)
    signalr.run()
    assert.equals("true3", got)
  end)

  it("spawn runs at once until the first wait and returns the coroutine", function()
    local order = {}
    local co = signalr.spawn(function(a, b)
      order[#order + 1] = a .. b
      signalr.sleep(0.01)
      order[#order + 1] = "end"
    end, "x", "y")
    order[#order + 1] = "after"
    assert.equals("thread", type(co))
    signalr.run()
    assert.same({ "xy", "after", "end" }, order)
    assert.equals("dead", coroutine.status(co))
  end)

  it("wakes sleepers in the order of their deadlines", function()
    local seen = {}
    for _, d in ipairs({ 0.06, 0.02, 0.04, 0.0 }) do
      signalr.spawn(function() signalr.sleep(d); seen[#seen + 1] = d end)
    end
    signalr.run()
    assert.same({ 0.0, 0.02, 0.04, 0.06 }, seen)
  end)

  it("run(fn) returns all results, nils included", function()
    local r = C.pack(signalr.run(function(x) signalr.sleep(0.01); return x, nil, x * 2, nil end, 21))
    assert.equals(4, r.n)
    assert.same({ 21, nil, 42, nil }, { r[1], r[2], r[3], r[4] })
  end)

  it("run(fn) re-raises string errors and error objects unchanged", function()
    local err = errors_of(signalr.run, function() signalr.sleep(0.01); error("inner failure") end)
    assert.matches("inner failure", err, 1, true)
    local obj = signalr.new_error("hub", "x")
    assert.equals(obj, errors_of(signalr.run, function() error(obj) end))
  end)

  it("run() waits for every managed coroutine, nested spawns too", function()
    local done = 0
    signalr.spawn(function()
      signalr.spawn(function() signalr.sleep(0.03); done = done + 1 end)
      signalr.sleep(0.01)
      done = done + 1
    end)
    signalr.run()
    assert.equals(2, done)
  end)

  it("run() returns at once with nothing to do", function()
    local t0 = now()
    signalr.run()
    assert.is_true(now() - t0 < 0.5)
  end)

  it("goes on after a plain coroutine.yield in a managed coroutine", function()
    local steps = {}
    signalr.spawn(function()
      steps[#steps + 1] = 1
      coroutine.yield()
      steps[#steps + 1] = 2
    end)
    assert.same({ 1 }, steps)
    signalr.run()
    assert.same({ 1, 2 }, steps)
  end)

  it("logs an error raised in a spawned coroutine and goes on", function()
    local lines = {}
    signalr.configure_logging("error", function(level, msg) lines[#lines + 1] = level .. ": " .. msg end)
    local ok, err = pcall(function()
      signalr.spawn(function() signalr.sleep(0.01); error("spawned failure") end)
      signalr.run()
    end)
    signalr.configure_logging("warning")
    assert.is_true(ok, tostring(err))
    assert.equals(1, #lines)
    assert.matches("^error: .*spawned failure", lines[1])
  end)

  it("sleeps by pumping events outside coroutines", function()
    local fired = false
    signalr.spawn(function() signalr.sleep(0.02); fired = true end)
    local t0 = now()
    signalr.sleep(0.1)
    local dt = now() - t0
    assert.is_true(fired, "a managed coroutine ran during the blocking sleep")
    assert.is_true(dt >= 0.09 and dt < 1, "slept " .. dt)
  end)

  it("refuses bad arguments with kind usage", function()
    assert.equals("usage", errors_of(signalr.spawn, 42).kind)
    assert.equals("usage", errors_of(signalr.run, "x").kind)
    assert.equals("usage", errors_of(signalr.sleep, "1").kind)
    assert.equals("usage", errors_of(signalr.poll, "1").kind)
  end)
end)

describe("event loop", function()
  local function drain()
    while signalr.poll(0) > 0 do end
  end

  it("poll(0) returns at once with nothing to do", function()
    drain()
    local t0 = now()
    for _ = 1, 1000 do assert.equals(0, signalr.poll(0)) end
    assert.equals(0, signalr.poll())
    assert.is_true(now() - t0 < 0.5)
  end)

  it("break_dispatch ends the poll it runs in, and is forgotten outside one", function()
    drain()
    local order = {}
    core.timer(0, function() order[#order + 1] = "a"; core.break_dispatch() end)
    core.timer(0, function() order[#order + 1] = "b" end)
    assert.equals(1, core.poll(0))
    assert.same({ "a" }, order)
    assert.equals(1, core.poll(0))
    assert.same({ "a", "b" }, order)
    -- outside a poll: no poll to end, and the next one is not cut short
    core.break_dispatch()
    core.timer(0, function() order[#order + 1] = "c" end)
    assert.equals(1, core.poll(0))
    assert.same({ "a", "b", "c" }, order)
  end)

  it("poll(timeout) waits about the timeout when idle", function()
    drain()
    local t0 = now()
    assert.equals(0, signalr.poll(0.1))
    local dt = now() - t0
    assert.is_true(dt >= 0.09 and dt < 1, "waited " .. dt)
  end)

  it("poll(timeout) returns early when a timer is due", function()
    drain()
    local fired = false
    core.timer(0.02, function() fired = true end)
    local t0 = now()
    assert.equals(1, signalr.poll(5))
    assert.is_true(fired)
    assert.is_true(now() - t0 < 1)
  end)

  it("fd() is a descriptor that is readable exactly when poll has work", function()
    drain()
    local fd = signalr.fd()
    assert.is_true(C.is_integer(fd))
    assert.is_true(fd >= 0)
    assert.equals(fd, signalr.fd())
    assert.is_false(core.fd_readable(fd, 0))
    local fired = false
    core.timer(0.05, function() fired = true end)
    assert.is_false(core.fd_readable(fd, 0))
    assert.is_true(core.fd_readable(fd, 2), "readable once the timer is due")
    assert.is_false(fired, "callbacks run only inside poll")
    assert.equals(1, signalr.poll(0))
    assert.is_true(fired)
    assert.is_false(core.fd_readable(fd, 0))
  end)

  it("cancels a timer", function()
    drain()
    local fired = false
    local id = core.timer(0.01, function() fired = true end)
    assert.is_true(core.cancel_timer(id))
    assert.is_false(core.cancel_timer(id))
    signalr.poll(0.05)
    assert.is_false(fired)
  end)

  it("survives an error in a timer callback", function()
    drain()
    local after = false
    core.timer(0, function() error("timer callback failure") end)
    core.timer(0, function() after = true end)
    local ok = pcall(signalr.poll, 0.1)
    assert.is_true(ok)
    signalr.poll(0)
    assert.is_true(after)
  end)

  -- The binding runs every callback on its own thread, never on the
  -- coroutine that polled: a callback sees the same thread whoever drove
  -- the loop, and a polling coroutine's stack is not where its frames go.
  it("runs callbacks on one thread of its own, whoever polls", function()
    drain()
    local seen = {}
    local function record() seen[#seen + 1] = coroutine.running() end
    core.timer(0, record)
    signalr.poll(0)
    local pollers = {}
    for i = 1, 2 do
      pollers[i] = coroutine.create(function()
        core.timer(0, record)
        core.poll(0)
        -- a callback that polls: the nested callback runs on that thread too
        core.timer(0, function()
          record()
          core.timer(0, record)
          core.poll(0)
        end)
        core.poll(0)
      end)
      assert(coroutine.resume(pollers[i]))
      assert.equals("dead", coroutine.status(pollers[i]))
    end
    assert.equals(7, #seen)
    for i = 1, #seen do
      assert.is_not_nil(seen[i])
      assert.equals(seen[1], seen[i])
      assert.is_true(seen[i] ~= pollers[1] and seen[i] ~= pollers[2])
    end
  end)
end)
