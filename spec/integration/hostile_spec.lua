-- A hostile server, with frames the real server never sends: the raw
-- WebSocket fake (spec/hub/RawWebSocket.cs; the real ASP.NET Core server
-- and its WebSocket cannot misbehave like this). Each fault must give the
-- kind and a message that names the real cause, on start, on a call that
-- races the close, and in on_close.
local signalr = require("signalr")
local H = require("spec.helper")
local L = require("spec.support.live")

local hub

local function raw(mode, configure)
  local logs = {}
  local conn = L.build(hub.url:gsub("^http", "ws") .. "/raw/" .. mode, function(b)
    b:with_handshake_timeout(1)
    b:configure_logging("debug", function(_, m) logs[#logs + 1] = m end)
    if configure then configure(b) end
  end, { skip_negotiation = true })
  local closed
  conn:on_close(function(err) closed = err or false end)
  return conn, function() return closed end, logs
end

describe("a hostile server", function()
  setup(function() hub = H.shared_hub() end)
  after_each(function() L.stop_all() end)

  it("answering the JSON handshake in a binary frame fails the start with kind protocol", function()
    local conn = raw("binaryhandshake")
    local ok, err = pcall(conn.start, conn)
    assert.is_false(ok)
    assert.equals("protocol", err.kind)
    assert.matches("binary WebSocket message, but the JSON protocol uses text messages", err.message, 1, true)
  end)

  it("closing with 3000 right after the handshake: the call and on_close both say so", function()
    local conn, closed = raw("close3000")
    conn:start()
    local ok, err = pcall(conn.invoke, conn, "Add", 1, 2)
    assert.is_false(ok)
    assert.equals("closed", err.kind)
    assert.matches("status 3000, going away now", err.message, 1, true)
    L.wait_for(function() return closed() ~= nil end, 5, "on_close")
    assert.equals("transport", closed().kind)
    assert.matches("status 3000, going away now", closed().message, 1, true)
  end)

  it("closing with 3000 while the user stops: on_close still gets the server's close", function()
    local conn, closed = raw("close3000")
    conn:start()
    conn:stop() -- races the close event, which may already wait in the queue
    L.wait_for(function() return closed() ~= nil end, 5, "on_close")
    if closed() then
      assert.matches("status 3000", closed().message, 1, true)
    else
      -- the stop's Close went out before the server's frame arrived: a
      -- clean stop, and then there is nothing of the server's to report
      assert.is_false(closed())
    end
  end)

  it("closing with a status RFC 6455 forbids is reported as the server's protocol error", function()
    local conn, closed = raw("close999")
    conn:start()
    L.wait_for(function() return closed() ~= nil end, 5, "on_close")
    assert.equals("transport", closed().kind)
    assert.matches("status 1002 (protocol error), or a close status that is not valid on the wire",
      closed().message, 1, true)
    assert.matches("bad code", closed().message, 1, true)
  end)

  it("never answering the upgrade ends with the handshake timeout, naming the phase", function()
    local conn = raw("noupgrade")
    local t0 = H.mono()
    local ok, err = pcall(conn.start, conn)
    assert.is_false(ok)
    assert.equals("timeout", err.kind)
    assert.matches("timed out after 1.0 s waiting for the server's answer to the WebSocket upgrade",
      err.message, 1, true)
    assert.is_true(H.mono() - t0 < 10)
  end)
end)
