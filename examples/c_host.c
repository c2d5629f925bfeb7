/* When to use: a C or C++ program (a game engine, a server) embeds Lua 5.4 for its scripts and
 * keeps its own frame loop in C; the scripts use SignalR and the host pumps it once a frame.
 *
 * How: the host opens a lua_State, points package.path/cpath at the module, runs a script that
 * builds a connection, registers a handler and starts the conversation in a spawned coroutine. Then
 * its own 60 Hz frame loop calls signalr.poll(0) once a frame and, between frames, sleeps in
 * poll(2) on signalr.fd(), so it wakes as soon as SignalR has work (a message, or one of its
 * timers) or the next frame is due.
 *
 *   c_host LUA_DIR CPATH_DIR HUB_URL
 *   build/examples/c_host lua build/lua http://127.0.0.1:5000/testhub
 *
 * LUA_DIR holds signalr/init.lua, CPATH_DIR signalr/core.so. Exits 0 once the script's conversation
 * is over, 1 when it failed or did not end within 15 s.
 */
#include <poll.h>
#include <stdio.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef LUA_OK /* Lua 5.1 names no status 0 (LuaJIT and 5.2+ do) */
#define LUA_OK 0
#endif

#define FRAME_NS (1000000000LL / 60)
#define MAX_FRAMES (15 * 60)

/* The script: it returns a table whose `done` is set once the conversation is over, and whose
 * `error` tells why it failed. */
static const char script[] =
    "local url = ...\n"
    "local signalr = require('signalr')\n"
    "local app = { done = false }\n"
    "local conn = signalr.builder():with_url(url):build()\n"
    "conn:on('notify', function(text) print('server called notify: ' .. text) end)\n"
    "signalr.spawn(function()\n"
    "  local ok, err = pcall(function()\n"
    "    conn:start()\n"
    "    print('connected: ' .. conn.state)\n"
    "    print('Add(40, 2) = ' .. conn:invoke('Add', 40, 2))\n"
    "    conn:invoke('CallMeBack', 'notify', 'hello from the C host')\n"
    "    conn:stop()\n"
    "    print('stopped: ' .. conn.state)\n"
    "  end)\n"
    "  if not ok then app.error = tostring(err) end\n"
    "  app.done = true\n"
    "end)\n"
    "return app\n";

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* package.path and package.cpath look in the given directories only. */
static void set_paths(lua_State *L, const char *lua_dir, const char *cpath_dir)
{
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", lua_dir, lua_dir);
    lua_setfield(L, -2, "path");
    lua_pushfstring(L, "%s/?.so", cpath_dir);
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
}

/* Calls signalr.poll(0), the function at index `poll`. */
static int pump(lua_State *L, int poll_idx)
{
    lua_pushvalue(L, poll_idx);
    lua_pushinteger(L, 0);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "c_host: signalr.poll failed: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

static int is_done(lua_State *L, int app_idx)
{
    int done;
    lua_getfield(L, app_idx, "done");
    done = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return done;
}

int main(int argc, char **argv)
{
    lua_State *L;
    int app_idx, poll_idx, fd, frame, rc = 1;
    long long next;

    if (argc != 4) {
        fprintf(stderr, "usage: %s LUA_DIR CPATH_DIR HUB_URL\n", argv[0]);
        return 2;
    }
    L = luaL_newstate();
    if (!L) return 1;
    luaL_openlibs(L);
    set_paths(L, argv[1], argv[2]);

    /* Run the script with the URL as its argument; keep the table it returns. */
    if (luaL_loadbuffer(L, script, sizeof script - 1, "=script") != LUA_OK ||
        (lua_pushstring(L, argv[3]), lua_pcall(L, 1, 1, 0)) != LUA_OK) {
        fprintf(stderr, "c_host: the script failed: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    app_idx = lua_gettop(L);

    /* signalr.poll and signalr.fd(), fetched once. */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "signalr");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "fd");
    lua_call(L, 0, 1);
    fd = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, -1, "poll");
    poll_idx = lua_gettop(L);

    next = now_ns();
    for (frame = 1; frame <= MAX_FRAMES; frame++) {
        long long left;
        if (pump(L, poll_idx) != 0) break;
        if (is_done(L, app_idx)) {
            rc = 0;
            break;
        }
        /* update and render the frame here */

        /* Until the next frame: sleep, but wake early when SignalR has work. */
        next += FRAME_NS;
        while ((left = next - now_ns()) > 0) {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, (int)((left + 999999) / 1000000)) > 0 && pump(L, poll_idx) != 0)
                goto out;
        }
    }
out:
    lua_getfield(L, app_idx, "error");
    if (!lua_isnil(L, -1)) {
        fprintf(stderr, "c_host: %s\n", lua_tostring(L, -1));
        rc = 1;
    } else if (rc != 0) {
        fprintf(stderr, "c_host: the script did not finish within %d frames\n", MAX_FRAMES);
    }
    lua_pop(L, 1);
    if (rc == 0) printf("%d frames\n", frame);
    lua_close(L); /* stops the state's SignalR threads */
    return rc;
}
