-- Values travel exactly: the hub's Echo returns what it received.
local signalr = require("signalr")
local helper = require("spec.helper")
local C = require("spec.support.compat")

describe("values through the hub", function()
  local conn

  setup(function()
    conn = signalr.builder():with_url(helper.shared_hub().url .. "/testhub"):build()
    conn:start()
  end)

  teardown(function()
    conn:stop()
  end)

  local function echo(v) return conn:invoke("Echo", v) end

  -- Lua 5.1 and LuaJIT have no integer subtype: numbers51_spec.lua checks
  -- their mapping.
  if C.has_integers then
    it("keeps integers as integers, including 64-bit extremes", function()
      for _, v in ipairs({ 0, 3, -1, 9007199254740993, math.maxinteger, math.mininteger }) do
        local r = echo(v)
        assert.equals("integer", math.type(r))
        assert.equals(v, r)
      end
    end)
  end

  it("keeps floats as floats with full precision", function()
    for _, v in ipairs({ 3.0, 0.1, 1 / 3, 1e300, -2.5e-300, 5e-324, 2 ^ 53 + 2.0, math.pi }) do
      local r = echo(v)
      if C.has_integers then assert.equals("float", math.type(r)) end
      assert.equals(v, r)
    end
  end)

  it("keeps UTF-8 strings and booleans", function()
    assert.equals("héllo wörld ✓ 😀", echo("héllo wörld ✓ 😀"))
    assert.equals("", echo(""))
    assert.equals(true, echo(true))
    assert.equals(false, echo(false))
  end)

  it("keeps nested tables and marks decoded arrays and maps", function()
    local v = { list = { 1, 2.5, "three", { deep = { true } } }, name = "x" }
    local r = echo(v)
    assert.same(v, r)
    assert.equals(getmetatable(signalr.array({})), getmetatable(r.list))
    assert.equals(getmetatable(signalr.map({})), getmetatable(r))
  end)

  it("tells empty arrays from empty objects", function()
    local a = echo(signalr.array({}))
    local m = echo(signalr.map({}))
    assert.equals(getmetatable(signalr.array({})), getmetatable(a))
    assert.equals(getmetatable(signalr.map({})), getmetatable(m))
    -- and they round-trip again unchanged
    assert.equals(getmetatable(a), getmetatable(echo(a)))
    assert.equals(getmetatable(m), getmetatable(echo(m)))
  end)

  it("carries null inside tables as signalr.null, and nil arguments as null", function()
    local r = echo({ 1, signalr.null, 3 })
    assert.equals(3, #r)
    assert.equals(signalr.null, r[2])
    assert.equals(signalr.null, require("cjson").null)
    assert.is_nil(echo(nil))
    local pair = conn:invoke("EchoTwo", nil, 5)
    assert.equals(signalr.null, pair[1])
    assert.equals(5, pair[2])
  end)

  it("sends tables with integer keys that are not a sequence as objects", function()
    local r = echo({ [1] = "a", [3] = "c" })
    assert.equals("a", r["1"])
    assert.equals("c", r["3"])
  end)

  it("refuses values JSON cannot carry, with kind usage", function()
    local ok, err = pcall(conn.invoke, conn, "Echo", 0 / 0)
    assert.is_false(ok)
    assert.equals("usage", err.kind)
    ok, err = pcall(conn.invoke, conn, "Echo", { f = print })
    assert.is_false(ok)
    assert.equals("usage", err.kind)
    local cyc = {}
    cyc.self = cyc
    ok, err = pcall(conn.invoke, conn, "Echo", cyc)
    assert.is_false(ok)
    assert.equals("usage", err.kind)
    assert.equals("connected", conn.state)
  end)
end)
