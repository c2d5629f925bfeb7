/*
 * compat.h - the Lua 5.4 C API that the binding uses, on the Lua versions
 * that lack it. The binding is written against 5.4; each shim below exists
 * only where an older Lua differs, and says why.
 *
 * Supported: Lua 5.4 (nothing here applies), Lua 5.3, Lua 5.1 and LuaJIT
 * 2.1 (which reports LUA_VERSION_NUM 501 and has part of the 5.2 API).
 */
#ifndef LSR_COMPAT_H
#define LSR_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 501 || LUA_VERSION_NUM == 502
#error "signalr.core needs Lua 5.1 (or LuaJIT 2.1), 5.3 or 5.4"
#endif

#if LUA_VERSION_NUM == 501
#include "compat51.h"
#endif

#if LUA_VERSION_NUM <= 503

/* 5.3 has one user value per userdata, not n (5.1: one environment table,
 * which compat51.h presents as that user value): keep the n slots in a table
 * that is that one user value. Slot numbers (1..n) stay the same, so the
 * binding reads and writes them exactly as on 5.4. */
static inline void *lsr_newuserdatauv(lua_State *L, size_t size, int nuv)
{
    void *p = lua_newuserdata(L, size);
    if (nuv > 0) {
        lua_createtable(L, nuv, 0);
        lua_setuservalue(L, -2);
    }
    return p;
}

/* Pushes slot n of the userdata at idx (nil if it has none); returns its
 * type, LUA_TNONE when there is no such slot, as 5.4 does. */
static inline int lsr_getiuservalue(lua_State *L, int idx, int n)
{
    int t;
    idx = lua_absindex(L, idx);
    if (lua_getuservalue(L, idx) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_pushnil(L);
        return LUA_TNONE;
    }
    t = lua_rawgeti(L, -1, n);
    lua_remove(L, -2);
    return t;
}

/* Pops a value into slot n of the userdata at idx; 0 if it has no slots. */
static inline int lsr_setiuservalue(lua_State *L, int idx, int n)
{
    idx = lua_absindex(L, idx);
    if (lua_getuservalue(L, idx) != LUA_TTABLE) {
        lua_pop(L, 2);
        return 0;
    }
    lua_insert(L, -2);
    lua_rawseti(L, -2, n);
    lua_pop(L, 1);
    return 1;
}

/* 5.3 (and 5.1) have no warning system (lua_warning, warn, "@on"). The binding sends
 * an error raised in a callback to the connection's log as well (by default
 * "warning" and up, to stderr), and to stderr itself when there is no
 * connection, so on 5.3 the log is where it goes: the same as on 5.4 with
 * warnings off, lua.c's default. Writing to stderr here would print those
 * errors twice. */
static inline void lsr_warning(lua_State *L, const char *msg, int tocont)
{
    (void)L;
    (void)msg;
    (void)tocont;
}

#define lua_newuserdatauv lsr_newuserdatauv
#define lua_getiuservalue lsr_getiuservalue
#define lua_setiuservalue lsr_setiuservalue
#define lua_warning lsr_warning

#endif /* LUA_VERSION_NUM <= 503 */

#endif
