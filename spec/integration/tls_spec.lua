-- https/wss over every transport, verification on by default, against the
-- hub's HTTPS endpoints (a CA, certificates and the hub's key made by the
-- spec helper): a trusted CA connects; an unknown CA and a certificate for
-- another host name fail with errors that say so; the explicitly named
-- insecure switch (tls.verify = false) connects and warns; wss to an IPv6
-- literal checks the certificate's IP address.
local signalr = require("signalr")
local helper = require("spec.helper")
local L = require("spec.support.live")

local TRANSPORTS = {
  { name = "websockets", server = "WebSockets" },
  { name = "server_sent_events", server = "ServerSentEvents" },
  { name = "long_polling", server = "LongPolling" },
}

local function fails(url, opts)
  local conn = L.build(url, nil, opts)
  local ok, err = pcall(conn.start, conn)
  assert.is_false(ok)
  assert.equals("transport", err.kind)
  return err.message
end

describe("TLS", function()
  local hub, wrong, tls, v6_url

  setup(function()
    tls = helper.tls_material()
    hub = helper.start_hub({ tls = true, https_hosts = { "127.0.0.1", "[::1]" } })
    for _, a in ipairs(hub.addresses) do
      if a:match("^https://%[::1%]") then v6_url = a end
    end
    -- trusted CA, but a certificate for wrong.invalid only
    wrong = helper.start_hub({ tls = { cert_file = tls.wrong_cert_file, key_file = tls.wrong_key_file,
      ca_file = tls.ca_file } })
  end)

  teardown(function()
    hub:stop()
    wrong:stop()
  end)

  after_each(function() L.stop_all() end)

  for _, t in ipairs(TRANSPORTS) do
    describe("over " .. t.server, function()
      local opts = function(extra)
        local o = { transports = { t.name }, tls = { ca_file = tls.ca_file } }
        for k, v in pairs(extra or {}) do o[k] = v end
        return o
      end

      it("connects when the CA is given", function()
        local conn = L.build(hub.https_url .. "/testhub", nil, opts())
        conn:start()
        assert.equals(3, conn:invoke("Add", 1, 2))
        assert.equals(t.server, conn:invoke("GetTransport"))
      end)

      it("refuses a certificate from an unknown CA, saying so", function()
        local msg = fails(hub.https_url .. "/testhub", opts({ tls = {} }))
        assert.matches("certificate", msg, 1, true)
        assert.matches("local issuer", msg, 1, true)
        msg = fails(hub.https_url .. "/testhub", opts({ tls = { ca_file = tls.other_ca_file } }))
        assert.matches("local issuer", msg, 1, true)
      end)

      it("refuses a certificate for another host name, saying so", function()
        local msg = fails(wrong.https_url .. "/testhub", opts())
        assert.matches("127.0.0.1", msg, 1, true)
        assert.truthy(msg:find("match", 1, true), msg)
      end)

      it("connects anyway with verify = false, and warns", function()
        local logs = {}
        local conn = L.build(wrong.https_url .. "/testhub", function(b)
          b:configure_logging("warning", function(_, m) logs[#logs + 1] = m end)
        end, opts({ tls = { verify = false } }))
        conn:start()
        assert.equals(t.server, conn:invoke("GetTransport"))
        local warned = false
        for _, l in ipairs(logs) do
          if l:find("TLS verification is off", 1, true) then warned = true end
        end
        assert.is_true(warned)
      end)

      it("connects to an IPv6 literal, checking the certificate's IP address", function()
        assert.truthy(v6_url, "the hub listens on [::1]")
        local conn = L.build(v6_url .. "/testhub", nil, opts())
        conn:start()
        assert.equals(t.server, conn:invoke("GetTransport"))
      end)
    end)
  end

  describe("straight to wss (skip_negotiation)", function()
    local opts = function(tls_opts)
      return { skip_negotiation = true, transports = "websockets", tls = tls_opts }
    end

    it("connects when the CA is given", function()
      local conn = L.build(hub.https_url .. "/testhub", nil, opts({ ca_file = tls.ca_file }))
      conn:start()
      assert.equals(3, conn:invoke("Add", 1, 2))
    end)

    it("refuses an unknown CA and another host's certificate, saying which", function()
      local msg = fails(hub.https_url .. "/testhub", opts())
      assert.matches("TLS certificate verification failed: unable to get local issuer certificate", msg, 1, true)
      msg = fails(wrong.https_url .. "/testhub", opts({ ca_file = tls.ca_file }))
      assert.matches("not issued for 127.0.0.1", msg, 1, true)
    end)

    it("checks an IPv6 literal's certificate by its IP address", function()
      local conn = L.build(v6_url .. "/testhub", nil, opts({ ca_file = tls.ca_file }))
      conn:start()
      assert.equals(3, conn:invoke("Add", 1, 2))
      -- the certificate for wrong.invalid does not name ::1
      local w6 = helper.start_hub({ tls = { cert_file = tls.wrong_cert_file, key_file = tls.wrong_key_file,
        ca_file = tls.ca_file }, https_hosts = { "[::1]" } })
      local msg = fails(w6.https_url .. "/testhub", opts({ ca_file = tls.ca_file }))
      w6:stop()
      assert.matches("not issued for ::1", msg, 1, true)
    end)
  end)
end)
