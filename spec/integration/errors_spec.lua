-- Errors carry the right kind and the server's text, and leak nothing.
local signalr = require("signalr")
local helper = require("spec.helper")

local function errors_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

describe("errors", function()
  local url, conn

  setup(function()
    url = helper.shared_hub().url
    conn = signalr.builder():with_url(url .. "/testhub"):build()
    conn:start()
  end)

  teardown(function()
    conn:stop()
  end)

  it("gives a HubException's message as kind hub", function()
    local err = errors_of(conn.invoke, conn, "ThrowHub", "the reason")
    assert.equals("hub", err.kind)
    assert.matches("HubException: the reason", err.message, 1, true)
    assert.matches("the reason", tostring(err), 1, true)
  end)

  it("says where the failed call was made, in tostring and a traceback", function()
    local line
    local ok, err = pcall(function()
      line = debug.getinfo(1, "l").currentline + 1
      local r = conn:invoke("ThrowHub", "located")
      return r
    end)
    assert.is_false(ok)
    assert.equals("spec/integration/errors_spec.lua:" .. line, err.where)
    assert.matches("(at spec/integration/errors_spec.lua:" .. line .. ")", tostring(err), 1, true)
    assert.matches("errors_spec.lua:" .. line, err.traceback, 1, true)
    -- the same from a stream's iteration
    local s = conn:stream("CounterThenFail", 1, "late")
    ok, err = pcall(function()
      for _ in s:items() do end
    end)
    assert.is_false(ok)
    assert.matches("^spec/integration/errors_spec.lua:%d+$", err.where)
  end)

  it("gives the server's generic text for other exceptions, without secrets", function()
    local err = errors_of(conn.invoke, conn, "ThrowPlain")
    assert.equals("hub", err.kind)
    assert.equals("An unexpected error occurred invoking 'ThrowPlain' on the server.", err.message)
    assert.is_nil(err.message:find("secret", 1, true))
  end)

  it("reports an unknown method and a wrong argument count as kind hub", function()
    local err = errors_of(conn.invoke, conn, "NoSuchMethod")
    assert.equals("hub", err.kind)
    assert.matches("Method does not exist", err.message, 1, true)
    err = errors_of(conn.invoke, conn, "Add", 1)
    assert.equals("hub", err.kind)
    assert.matches("Failed to invoke 'Add'", err.message, 1, true)
    assert.equals("connected", conn.state)
  end)

  it("error objects have kind, message and __tostring", function()
    local err = errors_of(conn.invoke, conn, "ThrowHub", "x")
    assert.is_string(err.message)
    assert.is_function(getmetatable(err).__tostring)
  end)

  it("fails a wrong hub path with kind negotiate and status 404", function()
    local c = signalr.builder():with_url(url .. "/nohub"):build()
    local err = errors_of(c.start, c)
    assert.equals("negotiate", err.kind)
    assert.equals(404, err.status)
    assert.equals("disconnected", c.state)
  end)

  it("says what the server offers, what was asked for and what this build has when no transport fits", function()
    -- the real hub's /lponly serves Long Polling alone
    local c = signalr.builder()
      :with_url(url .. "/lponly", { transports = { "websockets", "server_sent_events" } })
      :build()
    local err = errors_of(c.start, c)
    assert.equals("transport", err.kind)
    assert.matches("server offers: LongPolling", err.message, 1, true)
    assert.matches("requested: WebSockets, ServerSentEvents;", err.message, 1, true)
    assert.matches("this build: WebSockets, ServerSentEvents, LongPolling)", err.message, 1, true)
    -- asking for WebSockets alone of a hub that has it but not only it
    c = signalr.builder():with_url(url .. "/wsonly", { transports = { "long_polling" } }):build()
    err = errors_of(c.start, c)
    assert.equals("transport", err.kind)
    assert.matches("server offers: WebSockets", err.message, 1, true)
    assert.matches("requested: LongPolling", err.message, 1, true)
  end)

  it("fails a closed port with a clear transport error", function()
    local port = helper.free_port()
    local c = signalr.builder():with_url("http://127.0.0.1:" .. port .. "/testhub"):build()
    local err = errors_of(c.start, c)
    assert.equals("transport", err.kind)
    assert.matches("127.0.0.1", err.message, 1, true)
    assert.equals("disconnected", c.state)
  end)

  it("fails a closed port with skip_negotiation as a transport error too", function()
    local port = helper.free_port()
    local c = signalr.builder()
      :with_url("http://127.0.0.1:" .. port .. "/testhub", { skip_negotiation = true, transports = "websockets" })
      :build()
    local err = errors_of(c.start, c)
    assert.equals("transport", err.kind)
  end)
end)
