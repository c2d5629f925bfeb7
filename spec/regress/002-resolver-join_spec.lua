-- Regression: the WebSocket transport resolved host names on detached
-- threads. A host that closed its lua_State (which frees the loop and
-- unloads core.so) while a lookup was slow left that thread running, and it
-- crashed in the unloaded code when the lookup returned. sr_loop_free now
-- cancels the lookups and joins the resolver threads.
--
-- SR_TEST_RESOLVE_DELAY_MS is the core's test-only fake of a slow DNS server
-- (the lookup waits that long, and freeing the loop cuts the wait short).
-- The connection skips negotiation and uses WebSockets, so the first thing
-- it does is look "localhost" up on the WebSocket back end.

local build = os.getenv("BUILD") or "build"
-- The Lua under test (scripts/env.sh sets LUA): the child and the C host use it.
local LUA = os.getenv("LUA") or "lua5.4"

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Run cmd under sh with the module paths and the slow DNS; returns its
-- output, its exit code and how long it took in milliseconds.
local function run(cmd)
  local env = "SR_TEST_RESOLVE_DELAY_MS=2000 LUA_PATH=" .. q("./lua/?.lua;./lua/?/init.lua;;")
    .. " LUA_CPATH=" .. q("./" .. build .. "/lua/?.so;;")
  local p = assert(io.popen("t0=$(date +%s%N); " .. env .. " " .. cmd
    .. " 2>&1; rc=$?; t1=$(date +%s%N); echo \"rc=$rc ms=$(( (t1 - t0) / 1000000 ))\""))
  local out = p:read("*a")
  p:close()
  local rc, ms = out:match("rc=(%d+) ms=(%d+)\n?$")
  return out, tonumber(rc), tonumber(ms)
end

-- Starts a connection, lets the lookup begin, then closes the state.
local CHILD = [[
local signalr = require("signalr")
local c = signalr.builder()
  :with_url("http://localhost:1/hub", { skip_negotiation = true, transports = "websockets" })
  :build()
signalr.spawn(function() signalr.pcall(c.start, c) end) -- pcall, that 5.1 yields across
signalr.poll(0.3) -- the WebSocket back end is up; the lookup is waiting
print("state " .. c.state)
]]

describe("resolver threads are joined when the loop is freed (regression 002)", function()
  local dir

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
  end)

  after_each(function()
    os.execute("rm -rf " .. q(dir))
  end)

  it("a " .. LUA .. " child closing its state during a lookup exits 0 at once", function()
    write_file(dir .. "/child.lua", CHILD .. "os.exit(0, true) -- lua_close, then exit\n")
    local out, rc, ms = run(LUA .. " " .. q(dir .. "/child.lua"))
    assert.equals(0, rc, out)
    assert.matches("state connecting", out, 1, true)
    -- Closing waits for no lookup: the 2 s fake delay is cut short.
    assert.is_true(ms < 1500, "took " .. tostring(ms) .. " ms:\n" .. out)
  end)

  it("a host that lives on after lua_close has no thread of ours left", function()
    if not os.execute("pkg-config --exists " .. LUA .. " && command -v cc >/dev/null") then
      pending("needs cc and the " .. LUA .. " development files")
      return
    end
    -- The host of the bug: it closes the state (core.so is unloaded) and
    -- keeps running past the end of the lookup.
    write_file(dir .. "/host.c", [[
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static int threads(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    lua_State *L = luaL_newstate();
    (void)argc;
    luaL_openlibs(L);
    if (luaL_dofile(L, argv[1])) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        return 1;
    }
    lua_close(L);
    printf("threads after lua_close: %d\n", threads());
    fflush(stdout);
    sleep(3); /* past the 2 s lookup: a thread left in unloaded code crashes now */
    printf("alive\n");
    return 0;
}
]])
    write_file(dir .. "/child.lua", CHILD)
    local cc = "cc -o " .. q(dir .. "/host") .. " " .. q(dir .. "/host.c")
      .. " $(pkg-config --cflags --libs " .. LUA .. ")"
    local built = os.execute(cc)
    assert.is_true(built == true or built == 0, "cannot build the test host") -- 0: 5.1's success
    local out, rc = run(q(dir .. "/host") .. " " .. q(dir .. "/child.lua"))
    assert.equals(0, rc, out)
    assert.matches("state connecting", out, 1, true)
    assert.matches("threads after lua_close: 1\n", out, 1, true)
    assert.matches("alive", out, 1, true)
  end)
end)
