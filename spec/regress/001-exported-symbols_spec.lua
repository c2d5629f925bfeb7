-- Regression: libsignalr.so was built with -fvisibility=hidden and exported
-- no sr_* symbol at all, so a C program could not link against it. The Lua
-- module, which links the core statically, must export luaopen_* only.
local function exported(path)
  local p = assert(io.popen("nm -D --defined-only " .. path .. " 2>&1"))
  local names = {}
  for line in p:lines() do
    local kind, name = line:match("^%x*%s+(%a)%s+(%S+)$")
    if kind == "T" then names[#names + 1] = name end
  end
  p:close()
  return names
end

describe("exported symbols (regression 001)", function()
  local build = os.getenv("BUILD") or "build"

  it("libsignalr.so exports the public C API", function()
    local names = {}
    for _, n in ipairs(exported(build .. "/libsignalr.so")) do names[n] = true end
    for _, want in ipairs({ "sr_loop_new", "sr_loop_dispatch", "sr_conn_new", "sr_conn_invoke",
                            "sr_value_int", "sr_strerror" }) do
      assert.is_true(names[want] == true, want .. " is exported")
    end
    for n in pairs(names) do
      assert.is_nil(n:find("^sr__"), "internal symbol exported: " .. n)
    end
  end)

  it("the Lua module exports luaopen_signalr_core only", function()
    local names = exported(build .. "/lua/signalr/core.so")
    assert.same({ "luaopen_signalr_core" }, names)
  end)
end)
