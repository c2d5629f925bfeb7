-- Through an HTTP proxy: the WebSocket tunnels with CONNECT (the loopback
-- proxy of spec/tools/cutproxy.c counts the tunnels), to a hub only the
-- proxy can reach (hub.invalid, a name that never resolves, which the proxy
-- maps to the hub); with credentials; refusals and an unreachable proxy
-- give clear errors without the credentials, and the fallback goes on; the
-- environment (http_proxy, no_proxy) in a child process picks the same way
-- for the HTTP requests and the WebSocket; wss through the tunnel checks the
-- target's certificate name.
local H = require("spec.helper")
local L = require("spec.support.live")

local q = H.shell_quote

local SECRET = "p@ss:w0rd" -- sent as us%20er:p%40ss%3Aw0rd in the proxy URL

describe("proxy", function()
  local hub, proxy

  setup(function()
    hub = H.shared_hub()
    proxy = H.start_proxy(hub.port)
    proxy:map("hub.invalid", "127.0.0.1")
  end)

  teardown(function()
    if proxy then proxy:stop() end
  end)

  after_each(function()
    L.stop_all()
    proxy:auth()
    proxy:no_connect(false)
  end)

  local function target() return "http://hub.invalid:" .. hub.port .. "/testhub" end

  local function ws_only(o)
    o.skip_negotiation = true
    o.transports = "websockets"
    return o
  end

  -- start conn; returns the error it failed with
  local function start_fails(conn)
    local ok, err = pcall(conn.start, conn)
    assert.is_false(ok, "start should fail")
    return err
  end

  it("carries the WebSocket through a CONNECT tunnel to a hub only it can reach", function()
    local before = proxy:stats()
    local conn = L.build(target(), nil, { proxy = proxy:url(), transports = { "websockets" } })
    conn:start()
    assert.equals("WebSockets", conn:invoke("GetTransport"))
    assert.equals(5, conn:invoke("Add", 2, 3))
    local after = proxy:stats()
    -- negotiate went as an absolute-form request, the WebSocket as one tunnel
    assert.equals(before.connects + 1, after.connects)
    assert.is_true(after.accepted >= before.accepted + 2)
    conn:stop()
  end)

  it("sends the proxy credentials of the URL, percent-decoded, and never shows them", function()
    proxy:auth("us er", SECRET)
    local logs = {}
    local before = proxy:stats()
    local good = "http://us%20er:p%40ss%3Aw0rd@127.0.0.1:" .. proxy.port
    local conn = L.build(target(), function(b)
      b:configure_logging("trace", function(_, msg) logs[#logs + 1] = msg end)
    end, { proxy = good })
    conn:start()
    assert.equals("WebSockets", conn:invoke("GetTransport"))
    assert.equals(before.connects + 1, proxy:stats().connects)
    assert.equals(before.denied, proxy:stats().denied)
    conn:stop()

    -- wrong ones: the tunnel is refused with a clear error of kind transport
    -- that names the proxy, never the credentials
    local wrong = "http://us%20er:wr0ng%40secret@127.0.0.1:" .. proxy.port
    conn = L.build(target(), function(b)
      b:configure_logging("trace", function(_, msg) logs[#logs + 1] = msg end)
    end, ws_only({ proxy = wrong }))
    local err = start_fails(conn)
    assert.equals("transport", err.kind)
    local text = tostring(err)
    assert.matches("the proxy http://127.0.0.1:" .. proxy.port .. " refused the tunnel to hub.invalid:"
      .. hub.port, text, 1, true)
    -- lws 4.1.6 keeps the proxy's status to itself; the message says what it may be
    assert.matches("credentials", text, 1, true)
    assert.equals(before.denied + 1, proxy:stats().denied)
    -- and none at all
    conn = L.build(target(), nil, ws_only({ proxy = proxy:url() }))
    assert.matches("refused the tunnel", tostring(start_fails(conn)), 1, true)
    assert.equals(before.denied + 2, proxy:stats().denied)
    -- negotiate (libcurl) meets the refusal first when it runs
    conn = L.build(target(), nil, { proxy = wrong })
    err = start_fails(conn)
    assert.equals("negotiate", err.kind)
    assert.equals(407, err.status)
    assert.matches("the proxy answered HTTP 407", tostring(err), 1, true)
    assert.is_nil(tostring(err):find("wr0ng", 1, true))
    assert.equals(before.denied + 3, proxy:stats().denied)
    for _, l in ipairs(logs) do
      assert.is_nil(l:find("wr0ng", 1, true), l)
      assert.is_nil(l:find("secret", 1, true), l)
      assert.is_nil(l:find("p@ss", 1, true), l)
      assert.is_nil(l:find("p%40ss", 1, true), l)
    end
    assert.is_true(#logs > 0)
  end)

  it("falls back to Server-Sent Events when the proxy refuses CONNECT", function()
    proxy:no_connect(true)
    local logs = {}
    local before = proxy:stats()
    local conn = L.build(target(), function(b)
      b:configure_logging("warning", function(_, msg) logs[#logs + 1] = msg end)
    end, { proxy = proxy:url() })
    conn:start()
    assert.equals("ServerSentEvents", conn:invoke("GetTransport"))
    assert.equals(before.connects, proxy:stats().connects)
    assert.equals(before.denied + 1, proxy:stats().denied)
    local said = false
    for _, l in ipairs(logs) do
      if l:find("refused the tunnel to hub.invalid", 1, true) then said = true end
    end
    assert.is_true(said, "the WebSocket failure is logged")
    conn:stop()
    -- Long Polling goes through it as well
    conn = L.build(target(), nil, { proxy = proxy:url(), transports = { "long_polling" } })
    conn:start()
    assert.equals("LongPolling", conn:invoke("GetTransport"))
    assert.equals(5, conn:invoke("Add", 2, 3))
  end)

  it("says when the proxy cannot be reached or resolved", function()
    local conn = L.build(target(), nil, ws_only({ proxy = "http://user:s3cret@127.0.0.1:1" }))
    local err = start_fails(conn)
    assert.equals("transport", err.kind)
    local text = tostring(err)
    assert.matches("cannot connect to the proxy http://127.0.0.1:1 (127.0.0.1 port 1)", text, 1, true)
    assert.is_nil(text:find("s3cret", 1, true))

    conn = L.build(target(), nil, ws_only({ proxy = "http://user:s3cret@proxy.invalid:3128" }))
    err = start_fails(conn)
    assert.equals("transport", err.kind)
    text = tostring(err)
    assert.matches("cannot resolve the proxy's host proxy.invalid", text, 1, true)
    assert.is_nil(text:find("s3cret", 1, true))

    -- a kind of proxy a tunnel cannot use: the WebSocket says so, and the
    -- HTTP transports (libcurl) fail on their own terms
    conn = L.build(target(), nil, ws_only({ proxy = "socks5://127.0.0.1:1" }))
    assert.matches("cannot go through a socks5:// proxy", tostring(start_fails(conn)), 1, true)
  end)

  it("takes proxy = \"\" as no proxy", function()
    local before = proxy:stats()
    local conn = L.build(hub.url .. "/testhub", nil, { proxy = "" })
    conn:start()
    assert.equals("WebSockets", conn:invoke("GetTransport"))
    assert.equals(before.accepted, proxy:stats().accepted)
  end)

  describe("from the environment", function()
    local script

    setup(function()
      local dir = H.mktemp_dir("proxyenv")
      script = dir .. "/child.lua"
      local f = assert(io.open(script, "w"))
      -- args: url [proxy option ("-" for none given)]
      f:write([[
local signalr = require("signalr")
local o = {}
if arg[2] and arg[2] ~= "-" then o.proxy = arg[2] end
local conn = signalr.builder():with_url(arg[1], o):configure_logging("none"):build()
local ok, err = pcall(conn.start, conn)
if not ok then io.write("error ", tostring(err), "\n") os.exit(1) end
io.write(conn:invoke("GetTransport"), "\n")
conn:stop()
]])
      f:close()
    end)

    -- Run the child with exactly these proxy variables; returns its output.
    local function child(env, url, option)
      local vars = ""
      for k, v in pairs(env) do vars = vars .. " " .. k .. "=" .. q(v) end
      local unset = ""
      for _, k in ipairs({ "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
        "ALL_PROXY", "no_proxy", "NO_PROXY" }) do
        unset = unset .. " -u " .. k
      end
      local p = assert(io.popen("cd " .. q(H.root) .. " && env" .. unset .. vars .. " " .. (os.getenv("LUA") or "lua5.4") .. " " .. q(script)
        .. " " .. q(url) .. " " .. q(option or "-") .. " 2>&1"))
      local out = p:read("*a")
      p:close()
      return out
    end

    it("uses http_proxy for the requests and the WebSocket alike", function()
      local before = proxy:stats()
      local out = child({ http_proxy = proxy:url() }, target())
      assert.equals("WebSockets\n", out)
      local after = proxy:stats()
      assert.equals(before.connects + 1, after.connects)
      assert.is_true(after.accepted >= before.accepted + 2, "negotiate went through it too")
    end)

    it("goes direct for a host in no_proxy, for both", function()
      local before = proxy:stats()
      local direct = "http://127.0.0.1:" .. hub.port .. "/testhub"
      assert.equals("WebSockets\n",
        child({ http_proxy = proxy:url(), no_proxy = "localhost, 127.0.0.0/8" }, direct))
      assert.equals("WebSockets\n", child({ http_proxy = proxy:url(), NO_PROXY = "127.0.0.1" }, direct))
      -- and an explicit proxy = "" overrides the environment
      assert.equals("WebSockets\n", child({ http_proxy = proxy:url() }, direct, ""))
      assert.equals(before.accepted, proxy:stats().accepted)
      -- HTTP_PROXY (upper case) is not read for http://, as libcurl does
      assert.equals("WebSockets\n", child({ HTTP_PROXY = proxy:url() }, direct))
      assert.equals(before.accepted, proxy:stats().accepted)
    end)
  end)

  describe("with TLS inside the tunnel", function()
    local tls_hub, tls

    setup(function()
      tls_hub = H.start_hub({ tls = true })
      tls = H.tls_material()
      proxy:map("localhost", "127.0.0.1")
    end)

    teardown(function()
      if tls_hub then tls_hub:stop() end
    end)

    it("connects over wss, checking the certificate against the target's name", function()
      local before = proxy:stats()
      local conn = L.build("https://localhost:" .. tls_hub.https_port .. "/testhub", nil,
        { proxy = proxy:url(), tls = { ca_file = tls.ca_file } })
      conn:start()
      assert.equals("WebSockets", conn:invoke("GetTransport"))
      assert.equals(5, conn:invoke("Add", 2, 3))
      -- negotiate and the WebSocket each through a tunnel
      assert.equals(before.connects + 2, proxy:stats().connects)
      conn:stop()

      -- hub.invalid leads to the same hub, whose certificate is not for it
      conn = L.build("https://hub.invalid:" .. tls_hub.https_port .. "/testhub", nil,
        ws_only({ proxy = proxy:url(), tls = { ca_file = tls.ca_file } }))
      local err = start_fails(conn)
      assert.equals("transport", err.kind)
      assert.matches("not issued for hub.invalid", tostring(err), 1, true)
    end)
  end)
end)
