-- Faults the real SignalR server cannot produce: garbage frames, truncated
-- or refused handshakes, lying negotiate responses, oversized records.
-- These run against spec/hub/FakeServer.cs, a fake server written by us and
-- hosted in the test hub app under /fake/{mode}; everything else in the
-- specs runs against the real ASP.NET Core SignalR server.
local signalr = require("signalr")
local helper = require("spec.helper")

local base

local function fake(mode, opts, configure)
  local b = signalr.builder():with_url(base .. "/fake/" .. mode, opts)
  b:configure_logging("none")
  if configure then configure(b) end
  return b:build()
end

local function start_error(conn)
  local ok, err = pcall(conn.start, conn)
  assert.is_false(ok, "start should fail")
  assert.equals("disconnected", conn.state)
  return err
end

local function wait_closed(conn)
  local closed
  conn:on_close(function(e) closed = e or "nil" end)
  return function()
    assert.is_truthy(helper.wait_until(function() signalr.poll(0.02); return closed ~= nil end, 10),
      "on_close was called")
    return closed
  end
end

describe("faults", function()
  setup(function()
    base = helper.shared_hub().url
  end)

  describe("negotiate", function()
    it("rejects a body that is not JSON with kind negotiate", function()
      local err = start_error(fake("badnegotiate"))
      assert.equals("negotiate", err.kind)
    end)

    it("refuses an old ASP.NET SignalR server", function()
      local err = start_error(fake("oldserver"))
      assert.equals("negotiate", err.kind)
      assert.matches("ASP.NET", err.message, 1, true)
    end)

    it("surfaces the server's negotiate error text", function()
      local err = start_error(fake("negotiateerror"))
      assert.equals("negotiate", err.kind)
      assert.matches("Negotiate refused by policy", err.message, 1, true)
    end)

    it("keeps the status of an HTTP 500", function()
      local err = start_error(fake("status500"))
      assert.equals("negotiate", err.kind)
      assert.equals(500, err.status)
    end)

    it("follows a redirect with its access token", function()
      local conn = fake("redirect")
      conn:start()
      assert.equals("Bearer redirected-token", conn:invoke("GetHeader", "Authorization"))
      conn:stop()
    end)

    it("blames the server, not the user, for a redirect token with a line break", function()
      local err = start_error(fake("redirectcrlf"))
      assert.equals("negotiate", err.kind)
      assert.matches("access token contains a control character", err.message, 1, true)
    end)

    it("refuses a redirect URL with credentials and never shows them", function()
      local lines = {}
      local conn = fake("redirectcreds", nil, function(b)
        b:configure_logging("trace", function(_, msg) lines[#lines + 1] = msg end)
      end)
      local err = start_error(conn)
      assert.equals("negotiate", err.kind)
      assert.matches("carries credentials", err.message, 1, true)
      assert.is_nil(err.message:find("s3cret", 1, true))
      for _, l in ipairs(lines) do assert.is_nil(l:find("s3cret", 1, true), l) end
    end)

    it("bounds a negotiate that never answers by the handshake timeout", function()
      local conn = fake("silentnegotiate", nil, function(b) b:with_handshake_timeout(0.5) end)
      local t0 = helper.mono()
      local err = start_error(conn)
      local took = helper.mono() - t0
      assert.equals("timeout", err.kind)
      assert.matches("negotiate timed out", err.message, 1, true)
      assert.truthy(took >= 0.45 and took < 5, "took " .. took .. " s")
    end)

    it("gives up on a redirect loop", function()
      local err = start_error(fake("redirectloop"))
      assert.equals("negotiate", err.kind)
      assert.matches("redirect", err.message, 1, true)
    end)

    it("refuses a connection token too long for a WebSocket URL clearly, without showing it", function()
      local err = start_error(fake("longtoken", { transports = { "websockets" } }))
      assert.equals("transport", err.kind)
      assert.matches("6026 bytes (a long connection token)", err.message, 1, true)
      assert.matches("Server-Sent Events or Long Polling", err.message, 1, true)
      assert.is_nil(err.message:find("tttttttt", 1, true))
    end)

    it("fails clearly when no transport is available", function()
      local err = start_error(fake("notransports"))
      assert.equals("transport", err.kind)
      assert.matches("transport", err.message, 1, true)
    end)
  end)

  describe("handshake", function()
    it("fails start with kind handshake on a garbage answer", function()
      local err = start_error(fake("badhandshake"))
      assert.equals("handshake", err.kind)
    end)

    it("fails start with the server's handshake error", function()
      local err = start_error(fake("handshakeerror"))
      assert.equals("handshake", err.kind)
      assert.matches("Handshake was refused", err.message, 1, true)
    end)

    it("fails start when the handshake answer is cut off", function()
      local err = start_error(fake("truncated"))
      assert.is_true(err.kind == "handshake" or err.kind == "closed" or err.kind == "transport",
        "kind " .. tostring(err.kind))
    end)

    it("times out a silent server's handshake", function()
      local t0 = helper.now()
      local err = start_error(fake("silent", nil, function(b) b:with_handshake_timeout(1) end))
      assert.equals("timeout", err.kind)
      assert.matches("andshake", err.message, 1, true)
      assert.is_true(helper.now() - t0 < 5)
    end)
  end)

  describe("messages", function()
    it("closes with kind protocol on a malformed record", function()
      local conn = fake("garbage")
      local closed = wait_closed(conn)
      conn:start()
      local err = closed()
      assert.equals("protocol", err.kind)
      assert.equals("disconnected", conn.state)
    end)

    it("closes with kind protocol on an unknown message type", function()
      local conn = fake("unknowntype")
      local closed = wait_closed(conn)
      conn:start()
      local err = closed()
      assert.equals("protocol", err.kind)
      assert.matches("99", err.message, 1, true)
    end)

    it("fails the pending call when a completion is malformed", function()
      local conn = fake("badcompletion")
      local closed = wait_closed(conn)
      conn:start()
      local ok, err = pcall(conn.invoke, conn, "Echo", 1)
      assert.is_false(ok)
      assert.equals("closed", err.kind)
      assert.equals("protocol", closed().kind)
    end)

    it("reports a message cut off by the server closing", function()
      local conn = fake("truncatedmessage")
      local closed = wait_closed(conn)
      conn:start()
      local err = closed()
      assert.equals("protocol", err.kind)
    end)

    it("reports a WebSocket closed right after the handshake", function()
      local conn = fake("closeafterhandshake")
      local closed = wait_closed(conn)
      local ok = pcall(conn.start, conn)
      if ok then
        local err = closed()
        assert.is_table(err)
      end
      assert.equals("disconnected", conn.state)
    end)

    it("refuses a record over the size limit without growing without bound", function()
      local conn = fake("hugeframe")
      local closed = wait_closed(conn)
      conn:start()
      local err = closed()
      assert.equals("protocol", err.kind)
      assert.matches("too large", err.message, 1, true)
    end)

    it("parses records split across WebSocket messages and several in one", function()
      local conn = fake("split")
      conn:start()
      local results = {}
      local n = 0
      signalr.run(function()
        for i = 1, 6 do
          signalr.spawn(function()
            results[i] = conn:invoke("Echo", { i = i, s = "é" .. i })
            n = n + 1
          end)
        end
        while n < 6 do signalr.sleep(0.01) end
      end)
      for i = 1, 6 do assert.same({ i = i, s = "é" .. i }, results[i]) end
      conn:stop()
    end)

    it("reassembles fragmented WebSocket messages", function()
      local conn = fake("fragmented")
      conn:start()
      for i = 1, 3 do assert.equals(i * 7, conn:invoke("Echo", i * 7)) end
      conn:stop()
    end)

    it("leaves the process healthy after all of the above", function()
      local conn = signalr.builder():with_url(base .. "/testhub"):build()
      conn:start()
      assert.equals(2, conn:invoke("Add", 1, 1))
      conn:stop()
    end)
  end)
end)
