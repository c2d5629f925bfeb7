-- Numbers on Lua 5.1 and LuaJIT, which have doubles only (docs/API.md,
-- "Lua versions"): integers within +-2^53 arrive as numbers, integers beyond
-- as strings of their decimal digits (never rounded), floats as numbers; a
-- number with an integral value within +-2^53 is sent as an integer (3.0
-- too: 5.1 cannot tell it from 3), any other as a float. On 5.3+, which have
-- integers, values_spec and messagepack_spec check the mapping instead.
local C = require("spec.support.compat")
if not C.lua51 then return end

local signalr = require("signalr")
local H = require("spec.helper")
local L = require("spec.support.live")

local TWO53 = 2 ^ 53

describe("numbers on " .. (jit and jit.version or _VERSION), function()
  local hub
  setup(function() hub = H.shared_hub() end)
  after_each(function() L.stop_all() end)

  for _, proto in ipairs({ "json", "messagepack" }) do
    describe("with " .. proto, function()
      local function connect()
        local conn = L.build(hub.url .. "/testhub", function(b) b:with_hub_protocol(proto) end)
        conn:start()
        return conn
      end

      it("receives integers within 2^53 as numbers, exactly", function()
        local conn = connect()
        for _, v in ipairs({ 0, 3, -1, 2 ^ 31, 2 ^ 32 + 1, TWO53 - 1, TWO53, -TWO53 }) do
          local r = conn:invoke("Echo", v)
          assert.equals("number", type(r))
          assert.equals(v, r)
        end
      end)

      it("receives integers beyond 2^53 as strings of their decimal digits", function()
        local conn = connect()
        local a = conn:invoke("Typed") -- long.MaxValue, long.MinValue, int.MaxValue, ...
        assert.equals("9223372036854775807", a[1])
        assert.equals("-9223372036854775808", a[2])
        assert.equals(2147483647, a[3])
        assert.equals(4294967295, a[7])
        -- the digits go back as a string; tonumber() rounds them when that is acceptable
        assert.equals("9223372036854775807", conn:invoke("Echo", a[1]))
        assert.equals(2 ^ 63, tonumber(a[1]))
      end)

      it("sends integral numbers within 2^53 as integers (3.0 as 3), others as floats", function()
        local conn = connect()
        -- Add takes two longs: a float argument such as 3.5 is refused by the hub
        assert.equals(7, conn:invoke("Add", 3.0, 4))
        assert.equals(TWO53, conn:invoke("Add", TWO53 - 1, 1))
        assert.equals(-TWO53, conn:invoke("Add", -TWO53, 0))
        local ok, err = pcall(conn.invoke, conn, "Add", 3.5, 4)
        assert.is_false(ok)
        assert.equals("hub", err.kind)
        -- beyond 2^53 a number is a float: exact both ways, never an integer
        for _, v in ipairs({ TWO53 * 2, -TWO53 * 4, 1e300, 0.1, 1 / 3, -2.5e-300 }) do
          assert.equals(v, conn:invoke("Echo", v))
        end
        ok, err = pcall(conn.invoke, conn, "Add", TWO53 * 2, 0)
        assert.is_false(ok)
        assert.equals("hub", err.kind)
      end)

      it("sends integral keys of a map as their decimal text", function()
        local conn = connect()
        local r = conn:invoke("Echo", { [2] = "b", [3] = "c", x = 1 })
        assert.equals("b", r["2"])
        assert.equals("c", r["3"])
      end)
    end)
  end
end)
