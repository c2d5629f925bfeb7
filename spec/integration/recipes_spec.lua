-- The event-loop recipes in examples/, each run as its own process against the hub: luv, cqueues,
-- copas (on Lua 5.1 and LuaJIT only: Debian's lua-copas is for those), a 60 Hz game loop, a C host
-- embedding Lua, and four lua_States on four threads (under valgrind when the build is not
-- sanitized). Each example bounds its own run; `timeout` is the last resort.
local helper = require("spec.helper")

local q = helper.shell_quote
local LUA = os.getenv("LUA") or "lua5.4"
local BUILD = os.getenv("BUILD") or "build"

-- Runs a command from the repository's root; returns its output (stdout and stderr) and exit code.
local function run(cmd, limit)
  local p = assert(io.popen("cd " .. q(helper.root) .. " && timeout -k 5 " .. (limit or 60) .. " "
    .. cmd .. " 2>&1; echo EXIT=$?"))
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.-)EXIT=(%d+)%s*$")
  return body or out, tonumber(code)
end

local function lua_example(name, url)
  return run(q(LUA) .. " " .. q("examples/" .. name) .. " " .. q(url))
end

-- The C hosts load the module from the tree: the Lua files and $BUILD/lua/signalr/core.so.
-- They are built with the build's sanitizers, so LD_PRELOAD is not theirs.
local function c_host(name, url, wrapper)
  local root = helper.root
  local build = BUILD:sub(1, 1) == "/" and BUILD or root .. "/" .. BUILD
  return run("env -u LD_PRELOAD " .. (wrapper or "") .. q(build .. "/examples/" .. name) .. " "
    .. q(root .. "/lua") .. " " .. q(build .. "/lua") .. " " .. q(url), 120)
end

-- the lines of `out` that match `pattern`, in order
local function lines(out, pattern)
  local t = {}
  for l in out:gmatch("[^\n]+") do
    if l:match(pattern) then t[#t + 1] = l end
  end
  return t
end

describe("recipes", function()
  local url

  setup(function()
    url = helper.shared_hub().url .. "/testhub"
  end)

  it("each example says in its first two lines when to use it", function()
    for _, name in ipairs({ "luv.lua", "cqueues.lua", "copas.lua", "game_loop.lua", "c_host.c", "multi_state.c" }) do
      local text = assert(helper.read_file(helper.root .. "/examples/" .. name), name)
      local first, second = text:match("^([^\n]*)\n([^\n]*)\n")
      assert.matches("When to use: ", first, 1, true)
      assert.matches("^%s*[%-%*]+ %S", second, nil, false)
    end
  end)

  it("luv: a uv poll handle on signalr.fd() drives a connection, its server calls and its timers", function()
    local out, code = lua_example("luv.lua", url)
    assert.equals(0, code, out)
    assert.same({
      "connected: connected",
      "Add(40, 2) = 42",
      "server called notify: hello from luv",
      "stopped: disconnected",
      "the uv loop ran meanwhile: yes",
    }, lines(out, "."), out)
  end)

  it("cqueues: a cqueues coroutine polls signalr.fd(), others wait on conditions", function()
    local out, code = lua_example("cqueues.lua", url)
    assert.equals(0, code, out)
    assert.same({
      "connected: connected",
      "Add(40, 2) = 42",
      "server called notify: hello from cqueues",
      "stopped: disconnected",
    }, lines(out, "."), out)
  end)

  -- Only defined where copas installs: elsewhere it is neither run nor counted. The lua5.1 stage of
  -- scripts/test.sh runs this spec, and there a missing lua-copas fails the test.
  if _VERSION == "Lua 5.1" then
    it("copas: a copas thread polls signalr.fd(), while copas serves a TCP echo of its own", function()
      local out, code = lua_example("copas.lua", url)
      assert.equals(0, code, out)
      assert.same({
        "connected: connected",
        "Add(40, 2) = 42",
        "server called notify: hello from copas",
        "stopped: disconnected",
        "copas echoed meanwhile: hello over copas",
      }, lines(out, "."), out)
    end)
  end

  it("game loop: poll(0) once a frame, the conversation in a spawned coroutine", function()
    local out, code = lua_example("game_loop.lua", url)
    assert.equals(0, code, out)
    local function frame_of(what)
      local n = out:match("frame (%d+): " .. what:gsub("%p", "%%%0"))
      assert(n, "no line with '" .. what .. "' in:\n" .. out)
      return tonumber(n)
    end
    local connected = frame_of("connected")
    local added = frame_of("Add(40, 2) = 42")
    local ticks = { frame_of("server called tick(1)"), frame_of("server called tick(2)"),
      frame_of("server called tick(3)") }
    local stopped = frame_of("stopped: disconnected")
    -- the coroutine yielded to the frame loop while it waited: frames went by
    assert.is_true(connected > 1, out)
    assert.is_true(connected <= added and added < ticks[1], out)
    assert.is_true(ticks[1] < ticks[2] and ticks[2] < ticks[3], out)
    assert.is_true(ticks[3] <= stopped, out)
    local frames = tonumber(out:match("\n(%d+) frames; the longest poll%(0%) took"))
    assert.is_true(frames ~= nil and frames >= stopped, out)
  end)

  it("C host: embeds Lua, runs a script, pumps signalr.poll(0) from its own frame loop", function()
    local out, code = c_host("c_host", url)
    assert.equals(0, code, out)
    assert.same({
      "connected: connected",
      "Add(40, 2) = 42",
      "server called notify: hello from the C host",
      "stopped: disconnected",
    }, lines(out, "^%a"), out)
    assert.matches("\n%d+ frames\n", out)
  end)

  it("four lua_States on four threads, each with its own connection; lua_close leaves no thread", function()
    -- valgrind cannot run a sanitized build (LD_PRELOAD names the sanitizer runtimes then)
    local preload = os.getenv("LD_PRELOAD")
    local valgrind = (preload == nil or preload == "") and os.execute("command -v valgrind >/dev/null")
    local wrapper = valgrind and "valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect"
      .. " --error-exitcode=99 " or nil
    local out, code = c_host("multi_state", url, wrapper)
    assert.equals(0, code, out)
    for n = 1, 4 do
      assert.matches(("state %d: ok: Add(%d, 1000) = %d, notify(hello state %d), disconnected\n")
        :format(n, n, 1000 + n, n), out, 1, true)
    end
    assert.matches("threads left after lua_close: 0\n", out, 1, true)
  end)
end)
