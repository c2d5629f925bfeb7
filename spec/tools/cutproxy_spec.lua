-- The loopback proxy the reconnect specs use to cut, refuse and freeze
-- connections (spec/tools/cutproxy.c through H.start_proxy), tested by itself
-- with curl against the real hub.
local H = require("spec.helper")
local L = require("spec.support.live")

local q = H.shell_quote
local read = H.read_file

-- Start curl in the background; returns an object whose :done() tells
-- whether it ended and :result() gives (exit code, body, stderr).
local function curl_bg(args)
  local dir = H.mktemp_dir("curl")
  local cmd = "unset LD_PRELOAD; (curl -sS " .. args .. " -o " .. q(dir .. "/body") .. " -D " .. q(dir .. "/headers")
    .. " 2> " .. q(dir .. "/err") .. "; echo $? > " .. q(dir .. "/rc.tmp") .. "; mv " .. q(dir .. "/rc.tmp")
    .. " " .. q(dir .. "/rc") .. ") </dev/null >/dev/null 2>&1 &"
  assert(os.execute(cmd))
  local o = {}
  function o.done() return read(dir .. "/rc") ~= nil end
  function o.headers() return read(dir .. "/headers") or "" end
  function o.result()
    return tonumber(read(dir .. "/rc")), read(dir .. "/body") or "", read(dir .. "/err") or ""
  end
  return o
end

describe("cutproxy", function()
  local hub, proxy

  L.proxied(nil, function(h, p) hub, proxy = h, p end)

  it("prints its port and forwards plain requests", function()
    assert.is_number(proxy.port)
    assert.are_not.equal(hub.port, proxy.port)
    local before = proxy:stats()
    local status, body = H.http("GET", proxy:url("/health"))
    assert.equals(200, status)
    assert.equals("ok", body)
    local after = proxy:stats()
    assert.equals(before.accepted + 1, after.accepted)
    assert.is_true(after.up > before.up and after.down > before.down)
    local out = read(proxy.out_file)
    assert.matches("^ready " .. proxy.port .. "\n", out)
  end)

  it("forwards a negotiate POST with its body", function()
    local status, body = H.http("POST", proxy:url("/testhub/negotiate?negotiateVersion=1"), { body = "" })
    assert.equals(200, status)
    assert.matches('"connectionToken"', body, 1, true)
  end)

  it("refuses new connections while told to, and accepts again after", function()
    proxy:refuse(true)
    local before = proxy:stats()
    assert.equals(1, before.refusing)
    local status = H.http("GET", proxy:url("/health"), { timeout = 3 })
    assert.equals(0, status)
    assert.equals(before.refused + 1, proxy:stats().refused)
    proxy:refuse(false)
    assert.equals(200, (H.http("GET", proxy:url("/health"))))
  end)

  it("refuses WebSocket upgrades with 403 while told to, and passes other requests", function()
    proxy:no_upgrade(true)
    local before = proxy:stats().upgrades
    local ws = curl_bg("--max-time 5 -H 'Connection: Upgrade' -H 'Upgrade: websocket'"
      .. " -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='"
      .. " " .. q(proxy:url("/testhub")))
    assert.truthy(H.wait_until(ws.done, 10))
    assert.matches("^HTTP/1.1 403", ws.headers())
    assert.equals(before + 1, proxy:stats().upgrades)
    local status, body = H.http("POST", proxy:url("/testhub/negotiate?negotiateVersion=1"), { body = "" })
    assert.equals(200, status)
    assert.matches('"connectionToken"', body, 1, true)
    proxy:no_upgrade(false)
  end)

  it("cuts a live response stream with a reset", function()
    local _, neg = H.http("POST", proxy:url("/sseonly/negotiate?negotiateVersion=1"), { body = "" })
    local token = neg:match('"connectionToken":"([^"]+)"')
    assert.is_string(token)
    local c = curl_bg("-N -H 'Accept: text/event-stream' --max-time 20 " .. q(proxy:url("/sseonly?id=" .. token)))
    assert.is_truthy(H.wait_until(function() return c.headers():match("^HTTP/1.1 200") end, 5),
      "the event stream started")
    assert.is_false(c.done())
    assert.equals(1, proxy:stats().live)
    proxy:cut()
    assert.is_truthy(H.wait_until(c.done, 5), "curl ended after the cut")
    local rc, _, err = c.result()
    assert.equals(56, rc, "curl: " .. err) -- CURLE_RECV_ERROR
    assert.matches("reset", err)
    local st = proxy:stats()
    assert.equals(0, st.live)
    assert.is_true(st.cut >= 1)
  end)

  it("closes live connections gracefully with close_all", function()
    local _, neg = H.http("POST", proxy:url("/sseonly/negotiate?negotiateVersion=1"), { body = "" })
    local token = neg:match('"connectionToken":"([^"]+)"')
    local c = curl_bg("-N -H 'Accept: text/event-stream' --max-time 20 " .. q(proxy:url("/sseonly?id=" .. token)))
    assert.is_truthy(H.wait_until(function() return c.headers():match("^HTTP/1.1 200") end, 5))
    proxy:close_all()
    assert.is_truthy(H.wait_until(c.done, 5), "curl ended after the close")
    local rc, _, err = c.result()
    assert.are_not.equal(56, rc, "a FIN, not a reset: " .. err)
    assert.are_not.equal(28, rc, "not a timeout")
  end)

  it("holds bytes while paused and delivers them on resume", function()
    proxy:pause()
    local c = curl_bg("--max-time 10 " .. q(proxy:url("/health")))
    H.sleep(0.5) -- nothing can arrive while paused: there is no event to wait for
    assert.is_false(c.done(), "no answer while paused")
    local st = proxy:stats()
    assert.equals(1, st.paused)
    assert.is_true(st.live >= 1)
    proxy:resume()
    assert.is_truthy(H.wait_until(c.done, 5))
    local rc, body = c.result()
    assert.equals(0, rc)
    assert.equals("ok", body)
  end)

  it("tunnels CONNECT to a name only it knows, and counts the tunnels", function()
    proxy:map("hub.invalid", "127.0.0.1")
    local before = proxy:stats()
    local c = curl_bg("--max-time 10 --proxytunnel -x " .. q(proxy:url()) .. " "
      .. q("http://hub.invalid:" .. hub.port .. "/health"))
    assert.is_truthy(H.wait_until(c.done, 10))
    local rc, body, err = c.result()
    assert.equals(0, rc, "curl: " .. err)
    assert.equals("ok", body)
    assert.matches("^HTTP/1.1 200 Connection established\r\n", c.headers())
    local after = proxy:stats()
    assert.equals(before.connects + 1, after.connects)
    assert.equals(before.denied, after.denied)
    -- a name it was not told about, and a refusing proxy
    c = curl_bg("--max-time 10 --proxytunnel -x " .. q(proxy:url()) .. " http://elsewhere.invalid:1/")
    assert.is_truthy(H.wait_until(c.done, 10))
    assert.matches("^HTTP/1.1 502", c.headers())
    proxy:no_connect(true)
    c = curl_bg("--max-time 10 --proxytunnel -x " .. q(proxy:url()) .. " "
      .. q("http://hub.invalid:" .. hub.port .. "/health"))
    assert.is_truthy(H.wait_until(c.done, 10))
    assert.matches("^HTTP/1.1 403", c.headers())
    proxy:no_connect(false)
    local st = proxy:stats()
    assert.equals(after.connects, st.connects)
    assert.equals(after.denied + 2, st.denied)
  end)

  it("asks for credentials with 407 when told to, for CONNECT and plain requests", function()
    proxy:map("hub.invalid", "127.0.0.1")
    proxy:auth("us er", "p@ss:w")
    local target = q("http://hub.invalid:" .. hub.port .. "/health")
    local before = proxy:stats()
    local c = curl_bg("--max-time 10 --proxytunnel -x " .. q(proxy:url()) .. " " .. target)
    assert.is_truthy(H.wait_until(c.done, 10))
    assert.matches("^HTTP/1.1 407", c.headers())
    assert.matches("Proxy%-Authenticate: Basic", c.headers())
    c = curl_bg("--max-time 10 --proxytunnel -x " .. q(proxy:url()) .. " -U 'us er:wrong' " .. target)
    assert.is_truthy(H.wait_until(c.done, 10))
    assert.matches("^HTTP/1.1 407", c.headers())
    c = curl_bg("--max-time 10 -x " .. q(proxy:url()) .. " " .. target) -- absolute-form GET
    assert.is_truthy(H.wait_until(c.done, 10))
    assert.matches("^HTTP/1.1 407", c.headers())
    assert.equals(before.denied + 3, proxy:stats().denied)
    -- the right ones, percent-encoded in the proxy URL as clients write them
    local px = q("http://us%20er:p%40ss%3Aw@127.0.0.1:" .. proxy.port)
    c = curl_bg("--max-time 10 --proxytunnel -x " .. px .. " " .. target)
    assert.is_truthy(H.wait_until(c.done, 10))
    local rc, body, err = c.result()
    assert.equals(0, rc, "curl: " .. err)
    assert.equals("ok", body)
    c = curl_bg("--max-time 10 -x " .. px .. " " .. target)
    assert.is_truthy(H.wait_until(c.done, 10))
    rc, body = c.result()
    assert.equals(0, rc)
    assert.equals("ok", body)
    assert.equals(before.connects + 1, proxy:stats().connects)
    proxy:auth()
    assert.equals(200, (H.http("GET", proxy:url("/health"))))
  end)

  it("answers an unknown command with an error", function()
    assert.has_error(function() proxy:command("explode") end)
    assert.equals(200, (H.http("GET", proxy:url("/health"))))
  end)

  it("stops, and dies with the process that started it", function()
    local p = H.start_proxy(hub.port)
    local pid = p.pid
    assert.is_true(H.pid_alive(pid))
    p:stop()
    assert.is_false(p:alive())
    assert.is_false(H.pid_alive(pid))
    assert.equals(0, (H.http("GET", p:url("/health"), { timeout = 2 })))

    -- a Lua process starts a proxy and is killed with SIGKILL
    local dir = H.mktemp_dir("orphan")
    local script = dir .. "/child.lua"
    local f = assert(io.open(script, "w"))
    f:write("package.path = ", string.format("%q", H.root .. "/?.lua;") , " .. package.path\n",
      "local H = require('spec.helper')\n",
      "local p = H.start_proxy(", hub.port, ")\n",
      "local o = io.open(", string.format("%q", dir .. "/pid"), ", 'w') o:write(p.pid) o:close()\n",
      "os.execute('sleep 10')\n")
    f:close()
    assert(os.execute("unset LD_PRELOAD; lua5.4 " .. q(script) .. " </dev/null >/dev/null 2>&1 & echo $! > "
      .. q(dir .. "/lua.pid")))
    local child_pid = H.wait_until(function() return tonumber(read(dir .. "/pid") or "") end, 10)
    assert.is_number(child_pid)
    assert.is_true(H.pid_alive(child_pid))
    os.execute("kill -KILL " .. read(dir .. "/lua.pid"))
    assert.is_truthy(H.wait_until(function() return not H.pid_alive(child_pid) end, 5),
      "the orphaned proxy exits")
  end)
end)
