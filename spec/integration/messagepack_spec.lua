-- The MessagePack hub protocol against the real hub (AddMessagePackProtocol
-- beside JSON): how .NET's values arrive under each protocol, a JSON client
-- and a MessagePack client agreeing on what one hub method sends both,
-- transport choice (binary: not Server-Sent Events) and what cannot be
-- represented. The transport and stream matrices (transports_spec,
-- streams_spec) run with both protocols too.
local signalr = require("signalr")
local H = require("spec.helper")
local L = require("spec.support.live")
local C = require("spec.support.compat")

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  return ((s:gsub(".", function(c)
    local b, out = c:byte(), ""
    for i = 8, 1, -1 do out = out .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return out
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return B64:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

local hub

local function connect(proto, transport, path)
  local conn = L.build(hub.url .. (path or "/testhub"), function(b) b:with_hub_protocol(proto) end,
    transport and { transports = { transport } } or nil)
  conn:start()
  return conn
end

describe("messagepack", function()
  setup(function() hub = H.shared_hub() end)
  after_each(function() L.stop_all() end)

  it("maps .NET's values as documented, and as JSON does where JSON can say it", function()
    local mp = connect("messagepack")
    local js = connect("json")
    local a, b = mp:invoke("Typed"), js:invoke("Typed")
    assert.equals(19, #a)
    -- 5.1 and LuaJIT: integers beyond 2^53 arrive as decimal text (numbers51_spec)
    assert.equals(math.maxinteger or "9223372036854775807", a[1])
    assert.equals(math.mininteger or "-9223372036854775808", a[2])
    assert.equals(2147483647, a[3])
    assert.equals(255, a[4])
    assert.equals(-5, a[5])
    assert.equals(65535, a[6])
    assert.equals(4294967295, a[7])
    assert.is_true(C.is_integer(a[7]))
    assert.equals(1.5, a[8])
    assert.equals(0.1, a[9])
    assert.equals("text ü", a[10])
    assert.equals("\0\1\255", a[11])                        -- bin: the bytes
    assert.equals("AAH/", b[11])                            -- JSON: base64 text
    assert.equals(base64(a[11]), b[11])
    assert.equals("2024-01-02T03:04:05.1234567Z", a[12])    -- timestamp: ISO 8601, UTC
    assert.equals(b[12], a[12])
    assert.equals("1969-12-31T23:59:59Z", a[13])
    assert.equals(b[13], a[13])
    assert.same({ ["1"] = "a", ["-2"] = "b" }, a[14])      -- integer keys: their text, as JSON
    assert.same(b[14], a[14])
    assert.equals(3, #a[15])
    assert.equals(signalr.null, a[15][1])
    assert.equals(1, a[15][2])
    assert.is_true(signalr.is_map(a[16]))
    assert.is_true(signalr.is_array(a[17]))
    assert.equals(true, a[18])
    assert.equals(signalr.null, a[19])
    for i = 1, 19 do
      if i ~= 11 then
        assert.same(b[i], a[i], "item " .. i)
      end
    end
  end)

  it("has a JSON client and a MessagePack client agree on what one hub method sends both", function()
    local mp = connect("messagepack")
    local js = connect("json")
    local got = { mp = {}, js = {} }
    local method = "relay" .. os.time()
    mp:on(method, function(x) got.mp[#got.mp + 1] = x end)
    js:on(method, function(x) got.js[#got.js + 1] = x end)
    local value = {
      int = C.maxinteger, neg = C.mininteger, f = 2.5e-300, s = "ü\0x",
      list = { 1, signalr.null, "three" }, empty = signalr.array(), map = signalr.map(),
      nested = { deep = { deeper = { true, false } } },
    }
    assert.equals("ok", mp:invoke("Relay", method, value))
    assert.equals("ok", js:invoke("Relay", method, value))
    L.wait_for(function() return #got.mp == 2 and #got.js == 2 end, 5, "both relays at both clients")
    for i = 1, 2 do
      assert.same(got.js[i], got.mp[i])
      assert.same(value.nested, got.mp[i].nested)
      assert.equals(C.maxinteger, got.mp[i].int)
      assert.equals(2.5e-300, got.js[i].f)
      assert.is_true(signalr.is_array(got.mp[i].empty))
      assert.is_true(signalr.is_map(got.js[i].map))
    end
    -- binary: bin under MessagePack, base64 text under JSON
    mp:invoke("Relay", method, signalr.binary("\255\0\1"))
    L.wait_for(function() return #got.mp == 3 and #got.js == 3 end, 5, "the binary relay")
    assert.equals("\255\0\1", got.mp[3])
    assert.equals(base64("\255\0\1"), got.js[3])
  end)

  it("sends binary as bin, and the floats JSON cannot carry", function()
    local mp = connect("messagepack")
    assert.equals("\0\1\255", mp:invoke("Echo", signalr.binary("\0\1\255")))
    assert.equals(math.huge, mp:invoke("Echo", math.huge))
    assert.equals(-math.huge, mp:invoke("Echo", -math.huge))
    local nan = mp:invoke("Echo", 0 / 0)
    assert.is_true(nan ~= nan)
  end)

  it("refuses an unsigned integer no Lua integer holds, as a protocol error", function()
    local mp = connect("messagepack")
    local closed
    mp:on_close(function(err) closed = err end)
    local ok, err = pcall(mp.invoke, mp, "BigUnsigned")
    assert.is_false(ok)
    assert.equals("closed", err.kind)
    L.wait_for(function() return closed end, 5, "on_close")
    assert.equals("protocol", closed.kind)
    assert.matches("2^63", closed.message, 1, true)
  end)

  it("is not offered over Server-Sent Events: asked alone, it says why", function()
    local conn = L.build(hub.url .. "/testhub", function(b) b:with_hub_protocol("messagepack") end,
      { transports = { "server_sent_events" } })
    local ok, err = pcall(conn.start, conn)
    assert.is_false(ok)
    assert.equals("transport", err.kind)
    assert.matches("binary", err.message, 1, true)
    -- a hub with Server-Sent Events alone cannot carry it either
    conn = L.build(hub.url .. "/sseonly", function(b) b:with_hub_protocol("messagepack") end)
    ok, err = pcall(conn.start, conn)
    assert.is_false(ok)
    -- and falls back past it to Long Polling when WebSockets cannot start
    local proxy = H.start_proxy(hub.port)
    proxy:no_upgrade(true)
    conn = L.build(proxy:url("/testhub"), function(b) b:with_hub_protocol("messagepack") end)
    conn:start()
    assert.equals("LongPolling", conn:invoke("GetTransport"))
    conn:stop()
    proxy:stop()
  end)
end)
