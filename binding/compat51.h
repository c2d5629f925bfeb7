/*
 * compat51.h - the 5.2/5.3 C API that the binding (and compat.h's 5.3 shims)
 * use, on Lua 5.1 and LuaJIT 2.1. Included by compat.h only, when
 * LUA_VERSION_NUM is 501; compat.h's 5.3 shims (n user values in one table,
 * no warnings) then apply on top of these.
 *
 * LuaJIT 2.1 reports 501 too but already has part of the 5.2 API
 * (LUA_OK, luaL_traceback, luaL_setfuncs, luaL_setmetatable, luaL_newlib).
 * Its lua.h is the only one of the two that defines LUA_OK, so that is how
 * the two are told apart (LSR_LUAJIT). The shims below that LuaJIT does not
 * need are only defined for plain 5.1, so LuaJIT's own functions are used.
 */
#ifndef LSR_COMPAT51_H
#define LSR_COMPAT51_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef LUA_OK
#define LSR_LUAJIT 1
#else
#define LSR_LUAJIT 0
/* 5.1 names no status 0. */
#define LUA_OK 0
#endif

/* lua_version strings for the user agent ("Lua; 5.1"; LuaJIT implements
 * the 5.1 language). */
#define LUA_VERSION_MAJOR "5"
#define LUA_VERSION_MINOR "1"

/* 5.1's lua_Integer is ptrdiff_t (64 bits on the platforms we build for)
 * but it has no lua_Unsigned, nor the format macros of 5.3. The binding
 * uses lua_Unsigned for lengths and indices only: size_t is lua_objlen's. */
typedef size_t lsr_Unsigned;
#define lua_Unsigned lsr_Unsigned
#define LUA_INTEGER_FMT "%lld"
#define LUAI_UACINT long long

/* lua_objlen was renamed lua_rawlen in 5.2 (same meaning for tables,
 * strings and userdata). */
#define lua_rawlen(L, i) lua_objlen(L, (i))

/* 5.2's lua_absindex: a relative stack index made absolute (pseudo-indices
 * such as LUA_REGISTRYINDEX are left alone). */
static inline int lsr_absindex(lua_State *L, int idx)
{
    return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}
#define lua_absindex lsr_absindex

/* In 5.1, lua_rawget and lua_rawgeti return nothing; 5.3 returns the type of
 * the value pushed, which the binding tests. */
static inline int lsr_rawget(lua_State *L, int idx)
{
    lua_rawget(L, idx);
    return lua_type(L, -1);
}
static inline int lsr_rawgeti(lua_State *L, int idx, int n)
{
    lua_rawgeti(L, idx, n);
    return lua_type(L, -1);
}
#define lua_rawget lsr_rawget
#define lua_rawgeti lsr_rawgeti

/* 5.2's lua_rawgetp/lua_rawsetp: a light userdata key (the binding keys its
 * registry entries and weak table by C addresses). */
static inline int lsr_rawgetp(lua_State *L, int idx, const void *p)
{
    idx = lua_absindex(L, idx);
    lua_pushlightuserdata(L, (void *)p);
    lua_rawget(L, idx);
    return lua_type(L, -1);
}
static inline void lsr_rawsetp(lua_State *L, int idx, const void *p)
{
    idx = lua_absindex(L, idx);
    lua_pushlightuserdata(L, (void *)p);
    lua_insert(L, -2);
    lua_rawset(L, idx);
}
#define lua_rawgetp lsr_rawgetp
#define lua_rawsetp lsr_rawsetp

/* 5.1 has no user value; a userdata has an environment table instead
 * (lua_getfenv/lua_setfenv), which holds any table, so it serves as 5.3's
 * one user value. compat.h's n-slot shims then keep their table there. Only
 * userdata created with slots are ever read, so the default environment of
 * the others (the globals) is never taken for a slot table. */
static inline int lsr_getuservalue(lua_State *L, int idx)
{
    lua_getfenv(L, idx);
    return lua_type(L, -1);
}
#define lua_getuservalue lsr_getuservalue
#define lua_setuservalue lua_setfenv

/* Lua 5.1 and LuaJIT have doubles only: an integer is a number with an
 * integral value that a double holds exactly (|n| <= 2^53). The binding
 * sends those as integers (so 3.0 goes out as 3: 5.1 cannot tell them
 * apart), takes them where it wants an integer, and formats them with
 * LUA_INTEGER_FMT. Beyond 2^53 a double no longer holds every integer, so
 * such numbers are sent as floats. */
#define LSR_MAX_EXACT 9007199254740992.0 /* 2^53 */
#define LSR_MAX_EXACT_INT 9007199254740992LL
static inline int lsr_isinteger(lua_State *L, int idx)
{
    lua_Number d;
    if (lua_type(L, idx) != LUA_TNUMBER) return 0;
    d = lua_tonumber(L, idx);
    return d == floor(d) && d >= -LSR_MAX_EXACT && d <= LSR_MAX_EXACT;
}
#define lua_isinteger lsr_isinteger

#if !LSR_LUAJIT

/* 5.2's luaL_setfuncs: register l into the table below the nup upvalues,
 * each function getting those upvalues (5.1's luaL_register has none). */
static inline void lsr_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
    luaL_checkstack(L, nup, "too many upvalues");
    for (; l->name; l++) {
        int i;
        for (i = 0; i < nup; i++)
            lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}
#define luaL_setfuncs lsr_setfuncs
#define luaL_newlibtable(L, l) lua_createtable(L, 0, (int)(sizeof(l) / sizeof((l)[0]) - 1))
#define luaL_newlib(L, l) (luaL_newlibtable(L, l), luaL_setfuncs(L, l, 0))

/* 5.2's luaL_setmetatable: the registry's metatable tname on the top value. */
static inline void lsr_setmetatable(lua_State *L, const char *tname)
{
    luaL_getmetatable(L, tname);
    lua_setmetatable(L, -2);
}
#define luaL_setmetatable lsr_setmetatable

/* 5.2's luaL_traceback, for L1 == L (the message handler's only use): 5.1's
 * C API has none, so call debug.traceback, which counts levels the same way
 * (1 = the function that called it, here the C message handler). */
static inline void lsr_traceback(lua_State *L, lua_State *L1, const char *msg, int level)
{
    (void)L1;
    lua_getfield(L, LUA_GLOBALSINDEX, "debug");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "traceback");
        lua_remove(L, -2);
        if (lua_isfunction(L, -1)) {
            if (msg)
                lua_pushstring(L, msg);
            else
                lua_pushnil(L);
            lua_pushinteger(L, level);
            if (lua_pcall(L, 2, 1, 0) == 0 && lua_isstring(L, -1)) return;
        }
    }
    lua_pop(L, 1);
    lua_pushstring(L, msg ? msg : "");
}
#define luaL_traceback lsr_traceback

#endif /* !LSR_LUAJIT */

/* 5.2's luaL_tolstring (neither 5.1 nor LuaJIT has it): tostring() in C,
 * honouring __tostring; pushes the result and returns it. */
static inline const char *lsr_tolstring(lua_State *L, int idx, size_t *len)
{
    if (luaL_callmeta(L, idx, "__tostring")) {
        if (!lua_isstring(L, -1)) luaL_error(L, "'__tostring' must return a string");
    } else {
        switch (lua_type(L, idx)) {
        case LUA_TNUMBER:
        case LUA_TSTRING:
            lua_pushvalue(L, idx);
            break;
        case LUA_TBOOLEAN:
            lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
            break;
        case LUA_TNIL:
            lua_pushliteral(L, "nil");
            break;
        default:
            lua_pushfstring(L, "%s: %p", luaL_typename(L, idx), lua_topointer(L, idx));
            break;
        }
    }
    return lua_tolstring(L, -1, len);
}
#define luaL_tolstring lsr_tolstring

#endif
