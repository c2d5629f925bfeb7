/*
 * lerror.c - the binding's error objects: tables {kind, message, status}
 * with the "signalr.Error" metatable, how a failed sr_* call is raised, and
 * how an error reads in a log (__tostring).
 */
#include <stdarg.h>
#include <stdio.h>

#include "lsr.h"

void lsr_push_error_obj(lua_State *L, const char *kind, const char *message, long status)
{
    lua_createtable(L, 0, 3);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    if (status) {
        lua_pushinteger(L, (lua_Integer)status);
        lua_setfield(L, -2, "status");
    }
    luaL_setmetatable(L, ERROR_MT);
}

void lsr_push_sr_error(lua_State *L, const sr_error *err)
{
    const char *msg = err->message[0] ? err->message : sr_strerror(err->code);
    lsr_push_error_obj(L, sr_strerror(err->code), msg, err->status);
}

int lsr_raise_error(lua_State *L, const char *kind, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lsr_push_error_obj(L, kind, msg, 0);
    return lua_error(L);
}

/* An sr_* call returned rc (no sr_error available): raise a matching error. */
int lsr_raise_code(lua_State *L, int rc, const char *what)
{
    const char *why;
    switch (rc) {
    case SR_ECLOSED:
        why = "the connection is not connected";
        break;
    case SR_EUSAGE:
        why = "not allowed in the connection's current state";
        break;
    case SR_ENOMEM:
        why = "out of memory";
        break;
    case SR_EFULL:
        why = "the send buffer is full";
        break;
    default:
        why = sr_strerror(rc);
        break;
    }
    return lsr_raise_error(L, sr_strerror(rc), "%s: %s", what, why);
}

int lsr_error_tostring(lua_State *L)
{
    const char *kind, *msg;
    lua_Integer status;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "kind");
    lua_getfield(L, 1, "message");
    lua_getfield(L, 1, "status");
    kind = lua_isstring(L, 2) ? lua_tostring(L, 2) : "unknown";
    msg = lua_isstring(L, 3) ? lua_tostring(L, 3) : "";
    status = lua_isinteger(L, 4) ? lua_tointeger(L, 4) : 0;
    if (status) {
        /* formatted here: 5.1's lua_pushfstring has no %I */
        char num[32];
        snprintf(num, sizeof num, LUA_INTEGER_FMT, (LUAI_UACINT)status);
        lua_pushfstring(L, "signalr %s error: %s (HTTP %s)", kind, msg, num);
    } else
        lua_pushfstring(L, "signalr %s error: %s", kind, msg);
    /* where the call that failed was made (init.lua sets it on raising) */
    lua_getfield(L, 1, "where");
    if (lua_isstring(L, -1)) {
        lua_pushfstring(L, "%s (at %s)", lua_tostring(L, -2), lua_tostring(L, -1));
        return 1;
    }
    lua_pop(L, 1);
    return 1;
}

/* core.error(kind, message [, status]) -> error object (not raised). */
int lsr_new_error(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    lua_Integer status = luaL_optinteger(L, 3, 0);
    lsr_push_error_obj(L, kind, msg, (long)status);
    return 1;
}
