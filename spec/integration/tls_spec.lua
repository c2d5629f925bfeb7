-- wss:// with certificate verification on, against the hub's HTTPS endpoint
-- (a self-signed CA made by the spec helper).
local signalr = require("signalr")
local helper = require("spec.helper")

describe("TLS", function()
  local hub, tls

  setup(function()
    hub = helper.start_hub({ tls = true })
    tls = helper.tls_material()
  end)

  teardown(function()
    hub:stop()
  end)

  it("connects over https/wss when the CA is given", function()
    local conn = signalr.builder()
      :with_url(hub.https_url .. "/testhub", { tls = { ca_file = tls.ca_file } })
      :build()
    conn:start()
    assert.equals(3, conn:invoke("Add", 1, 2))
    assert.equals("WebSockets", conn:invoke("GetTransport"))
    conn:stop()
  end)

  it("connects with skip_negotiation straight to wss", function()
    local conn = signalr.builder()
      :with_url(hub.https_url .. "/testhub",
        { tls = { ca_file = tls.ca_file }, skip_negotiation = true, transports = "websockets" })
      :build()
    conn:start()
    assert.equals(3, conn:invoke("Add", 1, 2))
    conn:stop()
  end)

  it("refuses an untrusted certificate (verification is on by default)", function()
    local conn = signalr.builder():with_url(hub.https_url .. "/testhub"):build()
    local ok, err = pcall(conn.start, conn)
    assert.is_false(ok)
    assert.equals("transport", err.kind)
  end)

  it("refuses an untrusted certificate on the WebSocket too", function()
    local conn = signalr.builder()
      :with_url(hub.https_url .. "/testhub", { skip_negotiation = true, transports = "websockets" })
      :build()
    local ok, err = pcall(conn.start, conn)
    assert.is_false(ok)
    assert.equals("transport", err.kind)
  end)
end)
