-- The core without Lua: examples/c_client.c, built by make, run against the hub.
local helper = require("spec.helper")

describe("C example", function()
  it("connects, invokes, receives a call, reads a stream, answers a client result and stops", function()
    local build = os.getenv("BUILD") or "build"
    local exe = build .. "/examples/c_client"
    local url = helper.shared_hub().url .. "/clientresulthub"
    local p = assert(io.popen("env -u LD_PRELOAD " .. exe .. " " .. url .. " 2>&1; echo EXIT=$?"))
    local out = p:read("*a")
    p:close()
    assert.matches("EXIT=0", out, 1, true)
    assert.matches("connected, id ", out, 1, true)
    assert.matches("result: 42", out, 1, true)
    assert.matches('result: "hello from C"', out, 1, true)
    assert.matches('server called notify with ["ping"]', out, 1, true)
    assert.matches("stream item: 1\nstream item: 2\nstream item: 3\nstream completed", out, 1, true)
    assert.matches('server called square with [7]\nresult: 49', out, 1, true)
    assert.matches("stopped: disconnected", out, 1, true)
  end)
end)
