/*
 * lsignalr.c - "signalr.core", the Lua binding of the C core (signalr.h):
 * the module table and its metatables. lsr.h says which file owns what.
 *
 * This is the only C that knows Lua. It is private: lua/signalr/init.lua
 * builds the public API on top of it.
 */
#include "lsr.h"

#if defined(__GNUC__)
#define LSR_EXPORT __attribute__((visibility("default")))
#else
#define LSR_EXPORT
#endif

const char *const lsr_level_names[] = {"trace", "debug",    "information", "warning",
                                       "error", "critical", "none",        NULL};

LSR_EXPORT int luaopen_signalr_core(lua_State *L);

LSR_EXPORT int luaopen_signalr_core(lua_State *L)
{
    if (luaL_newmetatable(L, ERROR_MT)) {
        lua_pushcfunction(L, lsr_error_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lsr_value_metatables(L);
    lsr_conn_register(L);
    lsr_loop_register(L);
    lua_createtable(L, 0, 16);
    lsr_push_loop(L);
    luaL_setfuncs(L, lsr_loop_funcs, 1);
    lua_pushcfunction(L, lsr_binary_new);
    lua_setfield(L, -2, "binary");
    lua_pushliteral(L, SR_VERSION);
    lua_setfield(L, -2, "VERSION");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    luaL_getmetatable(L, ARRAY_MT);
    lua_setfield(L, -2, "array_mt");
    luaL_getmetatable(L, MAP_MT);
    lua_setfield(L, -2, "map_mt");
    luaL_getmetatable(L, BINARY_MT);
    lua_setfield(L, -2, "binary_mt");
    luaL_getmetatable(L, CHANNEL_MT);
    lua_setfield(L, -2, "channel_mt");
    luaL_getmetatable(L, ERROR_MT);
    lua_setfield(L, -2, "error_mt");
    return 1;
}
