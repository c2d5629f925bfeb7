/*
 * lvalue.c - Lua values <-> sr_value, both ways, and the metatables that
 * mark what a plain table cannot say (signalr.array, signalr.map,
 * signalr.binary; signalr.Channel marks a client-to-server stream).
 *
 * Lua -> value never raises (it uses no allocating Lua API), so a partly
 * built value is freed before the caller raises. value -> Lua raises on
 * nesting or stack limits; lsr_push_converted turns that into an error
 * object for callbacks.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lsr.h"

/* The converter never raises (it uses no allocating Lua API), so it can free
 * a partly built value before the caller raises. NULL = error in e->msg. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static sr_value *
enc_fail(lsr_enc *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return NULL;
}

static sr_value *enc_value(lsr_enc *e, int idx);

/* JSON text must be UTF-8: refuse bad bytes here, naming the argument,
 * rather than letting the encoder fail later with less to say. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0, k, len;
    while (i < n) {
        unsigned long cp, min;
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len) return 0;
        for (k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

static sr_value *enc_array(lsr_enc *e, int idx, lua_Unsigned n)
{
    lua_State *L = e->L;
    lua_Unsigned i;
    sr_value *arr = sr_value_array();
    if (!arr) return enc_fail(e, "out of memory");
    for (i = 1; i <= n; i++) {
        sr_value *item;
        lua_rawgeti(L, idx, (lua_Integer)i);
        item = enc_value(e, lua_gettop(L));
        lua_pop(L, 1);
        if (!item) {
            sr_value_free(arr);
            return NULL;
        }
        if (sr_value_array_push(arr, item) != SR_OK) {
            sr_value_free(arr);
            return enc_fail(e, "out of memory");
        }
    }
    return arr;
}

static sr_value *enc_map(lsr_enc *e, int idx)
{
    lua_State *L = e->L;
    sr_value *map = sr_value_map();
    if (!map) return enc_fail(e, "out of memory");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        char buf[32];
        const char *k;
        size_t kl;
        sr_value *item;
        int kt = lua_type(L, -2);
        if (kt == LUA_TSTRING) {
            k = lua_tolstring(L, -2, &kl);
            if (e->json && !utf8_valid((const unsigned char *)k, kl)) {
                lua_pop(L, 2);
                sr_value_free(map);
                return enc_fail(e, "a table key is not valid UTF-8 (JSON text must be UTF-8; "
                                   "use signalr.binary for bytes)");
            }
        } else if (kt == LUA_TNUMBER && lua_isinteger(L, -2)) {
            /* integer keys of a non-sequence travel as their decimal text */
            int len = snprintf(buf, sizeof buf, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, -2));
            int clash;
            k = buf;
            kl = (size_t)len;
            /* {[1] = a, ["1"] = b} would give one key twice: refuse it
             * rather than send one value and lose the other. */
            lua_pushlstring(L, k, kl);
            lua_rawget(L, idx);
            clash = !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (clash) {
                lua_pop(L, 2);
                sr_value_free(map);
                return enc_fail(e, "a table has both the key %s and the key \"%s\"", buf, buf);
            }
        } else {
            const char *tn = kt == LUA_TNUMBER ? "float" : lua_typename(L, kt);
            lua_pop(L, 2);
            sr_value_free(map);
            return enc_fail(e, "a table key of type %s cannot be sent (map keys are strings)", tn);
        }
        item = enc_value(e, lua_gettop(L));
        if (!item) {
            lua_pop(L, 2);
            sr_value_free(map);
            return NULL;
        }
        /* Lua keys are unique (the clash above aside), so appending keeps
         * a table of n keys linear instead of a look-up per key. */
        if (sr__value_map_append(map, k, kl, item) != SR_OK) {
            lua_pop(L, 2);
            sr_value_free(map);
            return enc_fail(e, "out of memory");
        }
        lua_pop(L, 1);
    }
    return map;
}

/* An unmarked table is an array when its keys are exactly 1..n (n > 0),
 * otherwise a map. */
static sr_value *enc_auto(lsr_enc *e, int idx)
{
    lua_State *L = e->L;
    lua_Unsigned n = lua_rawlen(L, idx), count = 0;
    if (n > 0) {
        int seq = 1;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
                (lua_Unsigned)lua_tointeger(L, -1) > n) {
                seq = 0;
                lua_pop(L, 1);
                break;
            }
            count++;
        }
        if (seq && count == n) return enc_array(e, idx, n);
    }
    return enc_map(e, idx);
}

static sr_value *enc_table(lsr_enc *e, int idx)
{
    lua_State *L = e->L;
    const void *p = lua_topointer(L, idx);
    int i, kind = 0; /* 0 plain, 1 array, 2 map, 4 channel (3, binary, is a userdata) */
    sr_value *v;
    for (i = 0; i < e->depth; i++)
        if (e->path[i] == p) return enc_fail(e, "circular reference in a table");
    if (e->depth >= LSR_MAX_DEPTH)
        return enc_fail(e, "tables nested deeper than %d levels", LSR_MAX_DEPTH);
    if (!lua_checkstack(L, 4)) return enc_fail(e, "Lua stack overflow");
    if (lua_getmetatable(L, idx)) {
        for (i = 0; i < 4; i++) {
            if (lua_rawequal(L, -1, e->mt + i)) {
                kind = i + 1;
                break;
            }
        }
        lua_pop(L, 1);
    }
    if (kind == 4)
        return enc_fail(e, "a channel can only be an argument of send, invoke or stream itself, "
                           "not inside a table or as a result");
    e->path[e->depth++] = p;
    if (kind == 1)
        v = enc_array(e, idx, lua_rawlen(L, idx));
    else if (kind == 2)
        v = enc_map(e, idx);
    else
        v = enc_auto(e, idx);
    e->depth--;
    return v;
}

static sr_value *enc_value(lsr_enc *e, int idx)
{
    lua_State *L = e->L;
    sr_value *v;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        v = sr_value_null();
        break;
    case LUA_TBOOLEAN:
        v = sr_value_bool(lua_toboolean(L, idx));
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            v = sr_value_int((int64_t)lua_tointeger(L, idx));
        } else {
            double d = (double)lua_tonumber(L, idx);
            if (e->json && !isfinite(d))
                return enc_fail(e, "%s cannot be sent as JSON", isnan(d) ? "NaN" : "infinity");
            v = sr_value_float(d);
        }
        break;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (e->json && !utf8_valid((const unsigned char *)s, len))
            return enc_fail(e, "a string is not valid UTF-8 (JSON text must be UTF-8; use "
                               "signalr.binary for bytes)");
        v = sr_value_string(s, len);
        break;
    }
    case LUA_TTABLE:
        return enc_table(e, idx);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) {
            v = sr_value_null();
            break;
        }
        return enc_fail(e, "a light userdata cannot be sent");
    case LUA_TUSERDATA:
        if (lua_getmetatable(L, idx)) {
            int binary = lua_rawequal(L, -1, e->mt + 2);
            lua_pop(L, 1);
            if (binary) {
                const char *s;
                size_t len;
                lua_getiuservalue(L, idx, 1);
                s = lua_tolstring(L, -1, &len);
                v = s ? sr_value_binary(s, len) : NULL;
                lua_pop(L, 1);
                if (!s) return enc_fail(e, "a binary value without its bytes");
                break;
            }
        }
        return enc_fail(e, "a value of type userdata cannot be sent");
    default:
        return enc_fail(e, "a value of type %s cannot be sent", lua_typename(L, lua_type(L, idx)));
    }
    return v ? v : enc_fail(e, "out of memory");
}

/* Slots first..last are to be converted. The metatables a table or a
 * userdata is told by are pushed only when one of them holds such a value
 * (four registry lookups were a fifth of converting two numbers); enc_end
 * pops what this pushed. */
static void enc_begin(lua_State *L, lsr_loop *lp, int json, int first, int last)
{
    lsr_enc *e = &lp->enc;
    int i, t;
    luaL_checkstack(L, 8, "too many arguments");
    e->L = L;
    e->json = json;
    e->depth = 0;
    e->msg[0] = 0;
    e->mt = 0;
    for (i = first; i <= last; i++)
        if ((t = lua_type(L, i)) == LUA_TTABLE || t == LUA_TUSERDATA) break;
    if (i > last) return; /* no value here ever needs them */
    luaL_getmetatable(L, ARRAY_MT);
    e->mt = lua_gettop(L);
    luaL_getmetatable(L, MAP_MT);
    luaL_getmetatable(L, BINARY_MT);
    luaL_getmetatable(L, CHANNEL_MT);
}

static void enc_end(lsr_enc *e)
{
    if (e->mt) lua_pop(e->L, 4);
}

/* 1 when the value at idx is a channel (signalr.channel()). */
static int is_channel(lua_State *L, const lsr_enc *e, int idx)
{
    int yes;
    if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return 0;
    yes = lua_rawequal(L, -1, e->mt + 3);
    lua_pop(L, 1);
    return yes;
}

/* Convert stack slots first..last (nil = null) to an SR_ARRAY, or raise a
 * usage error naming the argument. With ch, channels are taken out of the
 * arguments and listed in ch (they travel as the call's stream ids). */
sr_value *lsr_check_args(lua_State *L, lsr_loop *lp, int first, int last, int json,
                         lsr_channels *ch)
{
    lsr_enc *e = &lp->enc;
    sr_value *arr;
    int i;
    enc_begin(L, lp, json, first, last);
    if (ch) ch->n = 0;
    arr = sr_value_array();
    if (!arr) lsr_raise_error(L, "transport", "out of memory");
    for (i = first; i <= last; i++) {
        sr_value *item;
        if (ch && is_channel(L, e, i)) {
            int used;
            lua_pushliteral(L, "_id");
            used = lua_rawget(L, i) != LUA_TNIL;
            lua_pop(L, 1);
            if (used || ch->n == LSR_MAX_CHANNELS) {
                sr_value_free(arr);
                if (used)
                    lsr_raise_error(L, "usage",
                                    "argument %d: this channel was already passed to a call (a "
                                    "channel carries one stream)",
                                    i - first + 1);
                lsr_raise_error(L, "usage", "more than %d channels in one call", LSR_MAX_CHANNELS);
            }
            ch->idx[ch->n++] = i;
            continue;
        }
        item = enc_value(e, i);
        if (!item) {
            sr_value_free(arr);
            lsr_raise_error(L, "usage", "argument %d: %s", i - first + 1, e->msg);
        }
        if (sr_value_array_push(arr, item) != SR_OK) {
            sr_value_free(arr);
            lsr_raise_error(L, "transport", "out of memory");
        }
    }
    enc_end(e);
    return arr;
}

/* One value (a result, a stream item) at idx, or NULL with e->msg set. */
sr_value *lsr_check_value(lua_State *L, lsr_loop *lp, int idx, int json)
{
    sr_value *v;
    enc_begin(L, lp, json, idx, idx);
    v = enc_value(&lp->enc, idx);
    enc_end(&lp->enc);
    return v;
}

/* ============================================================ value -> Lua */

static void push_value(lua_State *L, const sr_value *v, int depth);

static void push_value_at(lua_State *L, const sr_value *v, int depth)
{
    if (depth > LSR_MAX_DEPTH * 10) luaL_error(L, "received value nested too deeply");
    luaL_checkstack(L, 3, "received value nested too deeply");
    push_value(L, v, depth);
}

/* A value that makes nothing in Lua, so it cannot raise: pushed, and 1;
 * otherwise 0 and nothing pushed. */
static int push_plain(lua_State *L, const sr_value *v)
{
    switch (sr_value_type(v)) {
    case SR_NULL:
        lua_pushlightuserdata(L, NULL);
        return 1;
    case SR_BOOL:
        lua_pushboolean(L, sr_value_get_bool(v));
        return 1;
    case SR_FLOAT:
        lua_pushnumber(L, (lua_Number)sr_value_get_float(v));
        return 1;
#if LUA_VERSION_NUM >= 503
    case SR_INT:
        lua_pushinteger(L, (lua_Integer)sr_value_get_int(v));
        return 1;
#endif
    default:
        return 0;
    }
}

static void push_value(lua_State *L, const sr_value *v, int depth)
{
    size_t i, n, len;
    const char *s;
    if (push_plain(L, v)) return;
    switch (sr_value_type(v)) {
#if LUA_VERSION_NUM < 503
    case SR_INT:
        /* Lua 5.1 and LuaJIT have doubles only, which hold every integer
         * up to 2^53 exactly: those are numbers. Beyond, a number would be
         * silently rounded, so the integer arrives as its decimal digits (a
         * string, exact; tonumber() rounds it when that is acceptable). */
        {
            int64_t iv = sr_value_get_int(v);
            if (iv >= -LSR_MAX_EXACT_INT && iv <= LSR_MAX_EXACT_INT) {
                lua_pushnumber(L, (lua_Number)iv);
            } else {
                char num[32];
                snprintf(num, sizeof num, "%lld", (long long)iv);
                lua_pushstring(L, num);
            }
        }
        break;
#endif
    case SR_STRING:
        s = sr_value_get_string(v, &len);
        lua_pushlstring(L, s, len);
        break;
    case SR_BINARY: /* MessagePack bin: its bytes, as a Lua string */
        s = sr_value_get_string(v, &len);
        lua_pushlstring(L, s, len);
        break;
    case SR_ARRAY:
        n = sr_value_len(v);
        lua_createtable(L, n > INT_MAX ? INT_MAX : (int)n, 0);
        for (i = 0; i < n; i++) {
            push_value_at(L, sr_value_at(v, i), depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        luaL_setmetatable(L, ARRAY_MT);
        break;
    case SR_MAP:
        n = sr_value_len(v);
        lua_createtable(L, 0, n > INT_MAX ? INT_MAX : (int)n);
        for (i = 0; i < n; i++) {
            s = sr_value_key_at(v, i, &len);
            lua_pushlstring(L, s, len);
            push_value_at(L, sr_value_at(v, i), depth + 1);
            lua_rawset(L, -3);
        }
        luaL_setmetatable(L, MAP_MT);
        break;
    default:
        lua_pushnil(L);
        break;
    }
}

/* A top-level value (a result or an argument): null and absent are nil. */
void lsr_push_top_value(lua_State *L, const sr_value *v)
{
    if (!v || sr_value_type(v) == SR_NULL)
        lua_pushnil(L);
    else
        push_value_at(L, v, 0);
}

typedef struct convert_args {
    const sr_value *v;
    int top;
} convert_args;

static int convert_f(lua_State *L)
{
    const convert_args *a = lua_touserdata(L, 1);
    if (a->top)
        lsr_push_top_value(L, a->v);
    else
        push_value_at(L, a->v, 0); /* a stream item: null is signalr.null */
    return 1;
}

/* Push v (as a top-level value when top) and return 1; or push an error
 * object of kind protocol naming what could not be converted and return 0,
 * so a callback can fail its call or stream rather than lose the value. */
int lsr_push_converted(lua_State *L, const sr_value *v, int top, const char *what)
{
    convert_args a;
    /* A number, a boolean or null cannot fail: no protected call for it
     * (most of what a stream of numbers cost per item). */
    if (top && sr_value_type(v) == SR_NULL) {
        lua_pushnil(L); /* null and absent, as lsr_push_top_value */
        return 1;
    }
    if (push_plain(L, v)) return 1;
    a.v = v;
    a.top = top;
    lua_pushcfunction(L, convert_f);
    lua_pushlightuserdata(L, &a);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) return 1;
    {
        char msg[300];
        const char *why = lua_tostring(L, -1);
        if (!why) {
            snprintf(msg, sizeof msg, "cannot convert %s", what);
            why = msg;
        }
        lsr_push_error_obj(L, "protocol", why, 0);
        lua_remove(L, -2);
    }
    return 0;
}

/* ====================================================== the metatables */

/* signalr.binary values are userdata, not tables, so that # works on
 * every Lua (5.1 and LuaJIT honour __len for userdata only). User value 1
 * holds the bytes; b.data reads them. */
static const char *binary_bytes(lua_State *L, int idx, size_t *len)
{
    const char *s;
    luaL_checkudata(L, idx, BINARY_MT);
    lua_getiuservalue(L, idx, 1);
    s = lua_tolstring(L, -1, len);
    lua_pop(L, 1); /* the userdata still holds the string */
    if (!s) *len = 0;
    return s ? s : "";
}

static int is_binary(lua_State *L, int idx)
{
    int yes;
    if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return 0;
    luaL_getmetatable(L, BINARY_MT);
    yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return yes;
}

/* core.binary(s) -> a binary value holding the bytes of s */
int lsr_binary_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TSTRING);
    lua_newuserdatauv(L, 1, 1);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, BINARY_MT);
    return 1;
}

static int lsr_binary_index(lua_State *L)
{
    size_t len;
    const char *s = binary_bytes(L, 1, &len);
    const char *key = lua_tostring(L, 2);
    if (key && strcmp(key, "data") == 0)
        lua_pushlstring(L, s, len);
    else
        lua_pushnil(L);
    return 1;
}

static int lsr_binary_tostring(lua_State *L)
{
    size_t len;
    const char *s = binary_bytes(L, 1, &len);
    lua_pushlstring(L, s, len);
    return 1;
}

static int lsr_binary_len(lua_State *L)
{
    size_t len;
    binary_bytes(L, 1, &len);
    lua_pushinteger(L, (lua_Integer)len);
    return 1;
}

static int lsr_binary_eq(lua_State *L)
{
    size_t la, lb;
    const char *a, *b;
    if (!is_binary(L, 1) || !is_binary(L, 2)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    a = binary_bytes(L, 1, &la);
    b = binary_bytes(L, 2, &lb);
    lua_pushboolean(L, la == lb && memcmp(a, b, la) == 0);
    return 1;
}

void lsr_value_metatables(lua_State *L)
{
    luaL_newmetatable(L, ARRAY_MT);
    lua_pop(L, 1);
    luaL_newmetatable(L, MAP_MT);
    lua_pop(L, 1);
    luaL_newmetatable(L, CHANNEL_MT);
    lua_pop(L, 1);
    if (luaL_newmetatable(L, BINARY_MT)) {
        lua_pushcfunction(L, lsr_binary_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, lsr_binary_len);
        lua_setfield(L, -2, "__len");
        lua_pushcfunction(L, lsr_binary_eq);
        lua_setfield(L, -2, "__eq");
        lua_pushcfunction(L, lsr_binary_index);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}
