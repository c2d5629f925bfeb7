-- Values without a server: markers, null, binary, and what the Lua -> value
-- conversion accepts or refuses. A connection that was never started fails
-- an invoke with kind "closed" only AFTER its arguments were converted, so
-- "closed" means "converted fine" and "usage" means "refused".
local signalr = require("signalr")
local C = require("spec.support.compat")

local function errors_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

describe("values", function()
  describe("null", function()
    it("is a light userdata NULL equal to cjson.null", function()
      assert.equals("userdata", type(signalr.null))
      assert.equals(require("cjson").null, signalr.null)
      assert.equals(require("signalr.core").null, signalr.null)
    end)
  end)

  describe("array and map marks", function()
    it("return the table they mark", function()
      local t = { 1, 2 }
      assert.equals(t, signalr.array(t))
      local m = { a = 1 }
      assert.equals(m, signalr.map(m))
    end)

    it("make a new table when called without one", function()
      local a, m = signalr.array(), signalr.map()
      assert.is_table(a)
      assert.is_nil(next(a))
      assert.is_true(signalr.is_array(a))
      assert.is_true(signalr.is_map(m))
    end)

    it("use two distinct shared metatables", function()
      local a1, a2 = signalr.array({}), signalr.array({})
      local m1 = signalr.map({})
      assert.equals(getmetatable(a1), getmetatable(a2))
      assert.are_not.equal(getmetatable(a1), getmetatable(m1))
      assert.is_false(signalr.is_array(m1))
      assert.is_false(signalr.is_map(a1))
      assert.is_false(signalr.is_array({}))
    end)

    it("leave the marked table usable as a plain table", function()
      local a = signalr.array({ 10, 20 })
      a[#a + 1] = 30
      assert.equals(3, #a)
      assert.equals(30, a[3])
      local n = 0
      for _ in ipairs(a) do n = n + 1 end
      assert.equals(3, n)
    end)

    it("refuse non-tables with kind usage", function()
      assert.equals("usage", errors_of(signalr.array, "x").kind)
      assert.equals("usage", errors_of(signalr.map, 42).kind)
    end)
  end)

  describe("binary", function()
    it("wraps bytes, NULs included", function()
      local b = signalr.binary("a\0b")
      assert.is_true(signalr.is_binary(b))
      assert.equals("a\0b", b.data)
      assert.equals("a\0b", tostring(b))
      -- a userdata: # honours its __len on every Lua, 5.1 and LuaJIT too
      assert.equals(3, #b)
      assert.equals(0, #signalr.binary(""))
      assert.equals(signalr.binary("a\0b"), b)
      assert.are_not.equal(signalr.binary("x"), b)
      assert.is_nil(b.other)
      assert.is_false(signalr.is_binary("a\0b"))
      assert.is_false(signalr.is_binary({ data = "a\0b" }))
    end)

    it("refuses non-strings with kind usage", function()
      assert.equals("usage", errors_of(signalr.binary, 12).kind)
      assert.equals("usage", errors_of(signalr.binary, nil).kind)
    end)
  end)

  describe("conversion of arguments", function()
    local conn

    before_each(function()
      conn = signalr.builder():with_url("http://127.0.0.1:1/hub"):configure_logging("none"):build()
    end)

    after_each(function()
      conn:close()
    end)

    -- kind of the error of send(...) on the never-started connection
    local function kind_of(...)
      return errors_of(conn.send, conn, "M", ...).kind
    end

    local function message_of(...)
      return errors_of(conn.send, conn, "M", ...).message
    end

    it("accepts every kind of value JSON carries", function()
      assert.equals("closed", kind_of(1, -2, math.maxinteger, math.mininteger))
      assert.equals("closed", kind_of(1.5, 3.0, -0.0, 1e308, 5e-324))
      assert.equals("closed", kind_of("text", "", "bytes\0inside", true, false))
      assert.equals("closed", kind_of(nil, signalr.null, nil))
      assert.equals("closed", kind_of({}, signalr.array(), signalr.map()))
      assert.equals("closed", kind_of({ 1, 2, 3 }, { a = 1, b = { c = { 1, { d = true } } } }))
      assert.equals("closed", kind_of(signalr.binary("\1\2\3")))
    end)

    it("accepts integer keys of non-sequences (sent as decimal strings)", function()
      assert.equals("closed", kind_of({ [1] = "a", [3] = "c" }))
      assert.equals("closed", kind_of({ [-5] = 1, [0] = 2 }))
      assert.equals("closed", kind_of(signalr.map({ 1, 2 })))
    end)

    it("accepts marked arrays with holes and the same table twice", function()
      assert.equals("closed", kind_of(signalr.array({ 1, nil, 3 })))
      local shared = { 1 }
      assert.equals("closed", kind_of({ shared, shared, { x = shared } }))
    end)

    it("refuses functions, coroutines and userdata", function()
      assert.equals("usage", kind_of(print))
      assert.equals("usage", kind_of(coroutine.create(function() end)))
      assert.equals("usage", kind_of(io.stdout))
      assert.equals("usage", kind_of({ nested = { f = print } }))
    end)

    it("refuses NaN and infinities (JSON cannot carry them)", function()
      assert.equals("usage", kind_of(0 / 0))
      assert.equals("usage", kind_of(math.huge))
      assert.equals("usage", kind_of({ -math.huge }))
    end)

    it("refuses keys that cannot be map keys, naming their type", function()
      assert.matches("boolean", message_of({ [true] = 1 }), 1, true)
      assert.matches("table", message_of({ [{}] = 1 }), 1, true)
      assert.matches("float", message_of({ [1.5] = 1 }), 1, true)
      assert.equals("usage", kind_of({ [print] = 1 }))
    end)

    it("refuses a table whose integer key and string key would be the same map key", function()
      -- {[1] = ...} travels as the key "1": with ["1"] too, one value would be lost
      assert.equals("usage", kind_of({ [1] = "a", ["1"] = "b", [3] = "c" }))
      assert.matches('both the key 1 and the key "1"', message_of({ [1] = "a", ["1"] = "b" }), 1, true)
      assert.equals("usage", kind_of({ x = { [-7] = 1, ["-7"] = 2 } }))
      assert.equals("closed", kind_of({ [1] = "a", ["01"] = "b", [" 1"] = "c" }))
    end)

    it("refuses cycles", function()
      local t = {}
      t.self = t
      assert.equals("usage", kind_of(t))
      assert.matches("circular reference", message_of(t), 1, true)
      local a, b = {}, {}
      a[1], b[1] = b, a
      assert.matches("circular reference", message_of(a), 1, true)
    end)

    it("limits nesting to 1000 levels", function()
      local function nest(n)
        local t = {}
        for _ = 2, n do t = { t } end
        return t
      end
      assert.equals("closed", kind_of(nest(1000)))
      assert.equals("usage", kind_of(nest(1001)))
    end)

    it("refuses strings and keys that are not UTF-8 (JSON text), but not binary", function()
      assert.equals("usage", kind_of("\255\254"))
      assert.equals("usage", kind_of("\192\128")) -- overlong
      assert.equals("usage", kind_of("\237\160\128")) -- surrogate
      assert.equals("usage", kind_of({ ["\255"] = 1 }))
      assert.matches("UTF%-8", message_of({ "ok", "\226\130" }))
      assert.equals("closed", kind_of("h\195\169llo \226\156\147 \240\159\152\128"))
      assert.equals("closed", kind_of(signalr.binary("\255\254")))
    end)

    it("names the argument that failed", function()
      assert.matches("argument 3", message_of(1, 2, print), 1, true)
    end)

    it("converts before checking the state, for invoke too", function()
      assert.equals("usage", errors_of(conn.invoke, conn, "M", print).kind)
      assert.equals("closed", errors_of(conn.invoke, conn, "M", 1).kind)
    end)
  end)
end)
