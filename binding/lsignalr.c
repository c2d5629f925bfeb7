/*
 * lsignalr.c - "signalr.core", the Lua binding of the C core (signalr.h).
 *
 * This is the only C that knows Lua. It is private: lua/signalr/init.lua
 * builds the public API on top of it.
 *
 * Objects:
 *  - one sr_loop per lua_State, owned by a sentinel userdata ("signalr.Loop")
 *    kept in the registry; its __gc frees every connection first, then the
 *    loop. Its user value 1 is the table of timer callbacks (id -> function).
 *  - "signalr.Connection" userdata: user value 1 = callback table
 *    (invocation, close, state, log, access_token), user value 2 = pending
 *    table (key -> done function of start/stop/invoke). No registry ref is
 *    keyed by the object, so handlers that capture it do not pin it. A weak
 *    table (registry, WEAK_KEY) maps the C pointer back to the userdata for
 *    C callbacks. While a connection may still call back (state not
 *    disconnected, or a start/stop/invoke outstanding) it holds ONE registry
 *    ref to itself, dropped once it is idle again (checked when the outermost
 *    poll returns, and after calls that can finish synchronously).
 *
 * Calling Lua from C callbacks: callbacks run inside sr_loop_dispatch or
 * inside an sr_* call made by this binding; lp->L is the thread that made
 * that call (a coroutine, possibly). Every callback does its Lua work in a C
 * function run under lua_pcall with a traceback handler (run_protected), so
 * no Lua error ever unwinds through the core. An error is reported to the
 * connection's log sink and to lua_warning (5.4 only). __gc never calls Lua: the
 * connection is marked `finalizing` first and every callback checks it.
 */
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "compat.h" /* Lua 5.3; refuses older Luas */
#include "signalr.h"
#include "value.h"

#if defined(__GNUC__)
#define LSR_EXPORT __attribute__((visibility("default")))
#else
#define LSR_EXPORT
#endif

#define CONN_MT "signalr.Connection"
#define LOOP_MT "signalr.Loop"
#define ERROR_MT "signalr.Error"
#define ARRAY_MT "signalr.array"
#define MAP_MT "signalr.map"
#define BINARY_MT "signalr.binary"
#define CHANNEL_MT "signalr.Channel"

/* Deepest table nesting converted in either direction. Encoding also keeps
 * the path of open tables to report cycles, so this bounds that array. */
#define LSR_MAX_DEPTH 1000

enum { UV_CALLBACKS = 1, UV_PENDING = 2, UV_ITEMS = 3 };

static const char LOOP_KEY = 'l'; /* registry: the loop sentinel */
static const char WEAK_KEY = 'w'; /* registry: lightuserdata(lsr_conn*) -> userdata, weak values */

typedef struct lsr_loop lsr_loop;
typedef struct lsr_conn lsr_conn;

/* An outstanding start/stop/invoke: the ud of its sr_done_fn. Linked in its
 * connection so a closed connection can free those the core will never call. */
typedef struct lsr_pending {
    struct lsr_pending *prev, *next;
    lsr_conn *c;
    lua_Integer key; /* in the connection's pending table */
} lsr_pending;

typedef struct lsr_timer {
    struct lsr_timer *prev, *next;
    lsr_loop *lp;
    uint64_t id;
} lsr_timer;

/* Scratch of the Lua -> value converter. It never calls Lua, so one per
 * loop is enough (no nesting). */
typedef struct enc {
    lua_State *L;
    int mt;   /* absolute index of array_mt; map_mt, binary_mt, channel_mt follow */
    int json; /* refuse what JSON cannot carry */
    int depth;
    const void *path[LSR_MAX_DEPTH]; /* tables being converted, for cycles */
    char msg[256];
} enc;

struct lsr_loop {
    enc enc;         /* scratch for check_args */
    sr_loop *loop;   /* NULL after teardown */
    lua_State *L;    /* thread of the innermost poll / sr_* call; NULL outside */
    int depth;       /* nested polls */
    lsr_conn *conns; /* open connections */
    lsr_timer *timers;
};

struct lsr_conn {
    sr_conn *conn; /* NULL once closed */
    lsr_loop *lp;  /* NULL once released (or never opened) */
    lsr_conn *prev, *next;
    lsr_pending *pending;
    size_t npending;
    lua_Integer next_key;
    int self_ref;
    int finalizing; /* never call Lua for this connection again */
    int json;       /* the protocol is JSON: refuse NaN and infinities */
    sr_log_level log_level;
};

/* Save and restore the thread that C callbacks run on around an sr_* call
 * that may call back synchronously. Nothing in between may raise. */
#define ENTER(lp, Lx)                                                                              \
    lua_State *saved_L_ = (lp)->L;                                                                 \
    (lp)->L = (Lx)
#define LEAVE(lp) (lp)->L = saved_L_

static const char *const level_names[] = {"trace", "debug",    "information", "warning",
                                          "error", "critical", "none",        NULL};

/* ================================================================= errors */

static void push_error_obj(lua_State *L, const char *kind, const char *message, long status)
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

static void push_sr_error(lua_State *L, const sr_error *err)
{
    const char *msg = err->message[0] ? err->message : sr_strerror(err->code);
    push_error_obj(L, sr_strerror(err->code), msg, err->status);
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
raise_error(lua_State *L, const char *kind, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    push_error_obj(L, kind, msg, 0);
    return lua_error(L);
}

/* An sr_* call returned rc (no sr_error available): raise a matching error. */
static int raise_code(lua_State *L, int rc, const char *what)
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
    return raise_error(L, sr_strerror(rc), "%s: %s", what, why);
}

static int lsr_error_tostring(lua_State *L)
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
static int lsr_new_error(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    lua_Integer status = luaL_optinteger(L, 3, 0);
    push_error_obj(L, kind, msg, (long)status);
    return 1;
}

/* ============================================================ Lua -> value */

/* The converter never raises (it uses no allocating Lua API), so it can free
 * a partly built value before the caller raises. NULL = error in e->msg. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static sr_value *
enc_fail(enc *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return NULL;
}

static sr_value *enc_value(enc *e, int idx);

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

static sr_value *enc_array(enc *e, int idx, lua_Unsigned n)
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

static sr_value *enc_map(enc *e, int idx)
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
static sr_value *enc_auto(enc *e, int idx)
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

static sr_value *enc_table(enc *e, int idx)
{
    lua_State *L = e->L;
    const void *p = lua_topointer(L, idx);
    int i, kind = 0; /* 0 plain, 1 array, 2 map, 3 binary, 4 channel */
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
    if (kind == 3) {
        const char *s;
        size_t len;
        lua_pushliteral(L, "data");
        lua_rawget(L, idx);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            return enc_fail(e, "a binary value without its string");
        }
        s = lua_tolstring(L, -1, &len);
        v = sr_value_binary(s, len);
        lua_pop(L, 1);
        return v ? v : enc_fail(e, "out of memory");
    }
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

static sr_value *enc_value(enc *e, int idx)
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
    default:
        return enc_fail(e, "a value of type %s cannot be sent", lua_typename(L, lua_type(L, idx)));
    }
    return v ? v : enc_fail(e, "out of memory");
}

/* Client-to-server streams (signalr.channel) among a call's arguments. */
#define LSR_MAX_CHANNELS 64
typedef struct chan_args {
    int n;
    int idx[LSR_MAX_CHANNELS]; /* stack slots, in argument order */
    uint64_t ids[LSR_MAX_CHANNELS];
} chan_args;

static void enc_begin(lua_State *L, lsr_loop *lp, int json)
{
    enc *e = &lp->enc;
    luaL_checkstack(L, 8, "too many arguments");
    e->L = L;
    e->json = json;
    e->depth = 0;
    e->msg[0] = 0;
    luaL_getmetatable(L, ARRAY_MT);
    e->mt = lua_gettop(L);
    luaL_getmetatable(L, MAP_MT);
    luaL_getmetatable(L, BINARY_MT);
    luaL_getmetatable(L, CHANNEL_MT);
}

/* 1 when the value at idx is a channel (signalr.channel()). */
static int is_channel(lua_State *L, const enc *e, int idx)
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
static sr_value *check_args(lua_State *L, lsr_loop *lp, int first, int last, int json,
                            chan_args *ch)
{
    enc *e = &lp->enc;
    sr_value *arr;
    int i;
    enc_begin(L, lp, json);
    if (ch) ch->n = 0;
    arr = sr_value_array();
    if (!arr) raise_error(L, "transport", "out of memory");
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
                    raise_error(L, "usage",
                                "argument %d: this channel was already passed to a call (a "
                                "channel carries one stream)",
                                i - first + 1);
                raise_error(L, "usage", "more than %d channels in one call", LSR_MAX_CHANNELS);
            }
            ch->idx[ch->n++] = i;
            continue;
        }
        item = enc_value(e, i);
        if (!item) {
            sr_value_free(arr);
            raise_error(L, "usage", "argument %d: %s", i - first + 1, e->msg);
        }
        if (sr_value_array_push(arr, item) != SR_OK) {
            sr_value_free(arr);
            raise_error(L, "transport", "out of memory");
        }
    }
    lua_pop(L, 4);
    return arr;
}

/* One value (a result, a stream item) at idx, or NULL with e->msg set. */
static sr_value *check_value(lua_State *L, lsr_loop *lp, int idx, int json)
{
    sr_value *v;
    enc_begin(L, lp, json);
    v = enc_value(&lp->enc, idx);
    lua_pop(L, 4);
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

static void push_value(lua_State *L, const sr_value *v, int depth)
{
    size_t i, n, len;
    const char *s;
    switch (sr_value_type(v)) {
    case SR_NULL:
        lua_pushlightuserdata(L, NULL);
        break;
    case SR_BOOL:
        lua_pushboolean(L, sr_value_get_bool(v));
        break;
    case SR_INT:
#if LUA_VERSION_NUM < 503
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
#else
        lua_pushinteger(L, (lua_Integer)sr_value_get_int(v));
#endif
        break;
    case SR_FLOAT:
        lua_pushnumber(L, (lua_Number)sr_value_get_float(v));
        break;
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
static void push_top_value(lua_State *L, const sr_value *v)
{
    if (!v || sr_value_type(v) == SR_NULL)
        lua_pushnil(L);
    else
        push_value_at(L, v, 0);
}

/* ======================================================= protected calls */

static int msgh(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = luaL_tolstring(L, 1, NULL); /* error objects have __tostring */
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Push the userdata of c (from the weak table); 0 if it is gone. */
static int push_conn(lua_State *L, lsr_conn *c)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &WEAK_KEY);
    lua_rawgetp(L, -1, c);
    lua_remove(L, -2);
    if (lua_type(L, -1) != LUA_TUSERDATA) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

/* Push uv1[name] of the connection at idx if it is a function. */
static int push_callback(lua_State *L, int idx, const char *name)
{
    lua_getiuservalue(L, idx, UV_CALLBACKS);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

static void run_protected(lsr_loop *lp, lsr_conn *c, lua_CFunction f, void *arg, int in_log);

/* Every callback without a result takes this one way into Lua: the
 * connection's callback `name` (log, close, state, reconnecting,
 * reconnected), called with nargs arguments; the first is err when there is
 * one, otherwise each is the string str[i] (nil where that is NULL). */
typedef struct event_args {
    lsr_conn *c;
    const char *name;
    int nargs;
    const sr_error *err;
    const char *str[2];
} event_args;

static int event_tramp(lua_State *L)
{
    event_args *a = lua_touserdata(L, 1);
    int i;
    if (!push_conn(L, a->c)) return 0;
    if (!push_callback(L, lua_gettop(L), a->name)) return 0;
    for (i = 0; i < a->nargs; i++) {
        if (i == 0 && a->err)
            push_sr_error(L, a->err);
        else
            lua_pushstring(L, a->str[i]); /* nil for NULL */
    }
    lua_call(L, a->nargs, 0);
    return 0;
}

static void run_event(lsr_conn *c, const char *name, int nargs, const sr_error *err, const char *s1,
                      const char *s2)
{
    event_args a = {c, name, nargs, err, {s1, s2}};
    run_protected(c->lp, c, event_tramp, &a, 0);
}

/* A line to the log callback; errors in it are not logged again. */
static void run_log(lsr_loop *lp, lsr_conn *c, sr_log_level level, const char *message)
{
    event_args a = {c, "log", 2, NULL, {level_names[level], message}};
    run_protected(lp, c, event_tramp, &a, 1);
}

/* The core's log sink. */
static void log_sink(void *ud, sr_log_level level, const char *message)
{
    lsr_conn *c = ud;
    if (level >= SR_LOG_NONE) return;
    run_log(c->lp, c, level, message);
}

/* The error message is on top of L. */
static void report_error(lsr_loop *lp, lsr_conn *c, lua_State *L, int in_log)
{
    const char *msg = lua_tostring(L, -1);
    if (!msg) msg = "(error object is not a string)";
    lua_warning(L, "signalr: error in a callback: ", 1);
    lua_warning(L, msg, 0);
    if (!c) {
        fprintf(stderr, "signalr: error in a callback: %s\n", msg);
    } else if (!in_log && c->log_level <= SR_LOG_ERROR) {
        run_log(lp, c, SR_LOG_ERROR, msg);
    }
}

/* Run f(arg) under lua_pcall on the thread that called into the core. */
static void run_protected(lsr_loop *lp, lsr_conn *c, lua_CFunction f, void *arg, int in_log)
{
    lua_State *L = lp ? lp->L : NULL;
    int base;
    if (!L || (c && c->finalizing)) return;
    if (!lua_checkstack(L, 5)) return;
    base = lua_gettop(L);
    lua_pushcfunction(L, msgh);
    lua_pushcfunction(L, f);
    lua_pushlightuserdata(L, arg);
    if (lua_pcall(L, 1, 0, base + 1) != LUA_OK) report_error(lp, c, L, in_log);
    lua_settop(L, base);
}

/* ============================================================= the loop */

static lsr_loop *loop_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static lsr_loop *live_loop(lua_State *L)
{
    lsr_loop *lp = loop_of(L);
    if (!lp->loop) raise_error(L, "closed", "the signalr loop is gone (Lua state closing)");
    return lp;
}

static void ref_drop(lua_State *L, lsr_conn *c)
{
    if (c->self_ref != LUA_NOREF) {
        int ref = c->self_ref;
        c->self_ref = LUA_NOREF;
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
    }
}

static int conn_idle(const lsr_conn *c)
{
    return !c->conn || (sr_conn_state(c->conn) == SR_STATE_DISCONNECTED && c->npending == 0);
}

/* Drop the self refs of idle connections. Restarts after each drop: an
 * unref may run a finalizer that unlinks another connection. */
static void sync_refs(lua_State *L, lsr_loop *lp)
{
    lsr_conn *c;
again:
    for (c = lp->conns; c; c = c->next) {
        if (c->self_ref != LUA_NOREF && conn_idle(c)) {
            ref_drop(L, c);
            goto again;
        }
    }
}

static int seconds_to_ms(lua_State *L, int idx)
{
    lua_Number s = luaL_optnumber(L, idx, 0);
    double ms;
    if (!(s > 0)) return 0; /* also NaN */
    if (isinf(s)) return -1;
    ms = ceil((double)s * 1000.0);
    return ms >= (double)INT_MAX ? INT_MAX : (int)ms;
}

/* core.poll([seconds]) -> number of events dispatched */
static int lsr_poll(lua_State *L)
{
    lsr_loop *lp = live_loop(L);
    int ms = seconds_to_ms(L, 1), n;
    {
        ENTER(lp, L);
        lp->depth++;
        n = sr_loop_dispatch(lp->loop, ms);
        lp->depth--;
        LEAVE(lp);
    }
    if (lp->depth == 0) sync_refs(L, lp);
    lua_pushinteger(L, n);
    return 1;
}

static int lsr_fd(lua_State *L)
{
    lsr_loop *lp = live_loop(L);
    lua_pushinteger(L, sr_loop_fd(lp->loop));
    return 1;
}

/* core.next_timeout() -> seconds until the next timer, or nil */
static int lsr_next_timeout(lua_State *L)
{
    lsr_loop *lp = live_loop(L);
    int ms = sr_loop_next_timeout(lp->loop);
    if (ms < 0)
        lua_pushnil(L);
    else
        lua_pushnumber(L, ms / 1000.0);
    return 1;
}

/* core.fd_readable(fd [, seconds]) -> boolean. Private, for the specs: tells
 * whether a descriptor is readable without luaposix. */
static int lsr_fd_readable(lua_State *L)
{
    struct pollfd p;
    int ms = seconds_to_ms(L, 2), rc;
    p.fd = (int)luaL_checkinteger(L, 1);
    p.events = POLLIN;
    p.revents = 0;
    rc = poll(&p, 1, ms);
    lua_pushboolean(L, rc > 0 && (p.revents & POLLIN));
    return 1;
}

static void timer_unlink(lsr_loop *lp, lsr_timer *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        lp->timers = t->next;
    if (t->next) t->next->prev = t->prev;
}

static int timer_tramp(lua_State *L)
{
    uint64_t id = *(uint64_t *)lua_touserdata(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &LOOP_KEY);
    lua_getiuservalue(L, -1, 1);
    lua_rawgeti(L, -1, (lua_Integer)id);
    lua_pushnil(L);
    lua_rawseti(L, -3, (lua_Integer)id);
    if (lua_isfunction(L, -1)) lua_call(L, 0, 0);
    return 0;
}

static void on_timer(void *ud)
{
    lsr_timer *t = ud;
    lsr_loop *lp = t->lp;
    uint64_t id = t->id;
    timer_unlink(lp, t);
    free(t);
    run_protected(lp, NULL, timer_tramp, &id, 0);
}

/* core.timer(seconds, fn) -> id; fn() runs inside poll */
static int lsr_add_timer(lua_State *L)
{
    lsr_loop *lp = live_loop(L);
    lua_Number s = luaL_checknumber(L, 1);
    lsr_timer *t;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_getiuservalue(L, lua_upvalueindex(1), 1); /* timers table */
    t = malloc(sizeof *t);
    if (!t) return raise_error(L, "transport", "out of memory");
    t->lp = lp;
    t->id = sr_loop_add_timer(lp->loop, s > 0 ? (double)s * 1000.0 : 0.0, on_timer, t);
    if (!t->id) {
        free(t);
        return raise_error(L, "transport", "cannot add a timer");
    }
    t->prev = NULL;
    t->next = lp->timers;
    if (lp->timers) lp->timers->prev = t;
    lp->timers = t;
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, (lua_Integer)t->id);
    lua_pushinteger(L, (lua_Integer)t->id);
    return 1;
}

/* core.cancel_timer(id) -> true if it was pending */
static int lsr_cancel_timer(lua_State *L)
{
    lsr_loop *lp = live_loop(L);
    uint64_t id = (uint64_t)luaL_checkinteger(L, 1);
    lsr_timer *t;
    for (t = lp->timers; t; t = t->next)
        if (t->id == id) break;
    if (!t) {
        lua_pushboolean(L, 0);
        return 1;
    }
    timer_unlink(lp, t);
    free(t);
    sr_loop_cancel_timer(lp->loop, id);
    lua_getiuservalue(L, lua_upvalueindex(1), 1);
    lua_pushnil(L);
    lua_rawseti(L, -2, (lua_Integer)id);
    lua_pushboolean(L, 1);
    return 1;
}

/* ====================================================== connection: core */

static lsr_conn *check_conn(lua_State *L)
{
    return luaL_checkudata(L, 1, CONN_MT);
}

static lsr_conn *open_conn(lua_State *L)
{
    lsr_conn *c = check_conn(L);
    if (!c->conn) raise_error(L, "closed", "the connection was closed");
    return c;
}

static void pending_unlink(lsr_conn *c, lsr_pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        c->pending = p->next;
    if (p->next) p->next->prev = p->prev;
    c->npending--;
}

/* A record for the done function at stack index fn (stored in uv2); NULL
 * when out of memory. */
static lsr_pending *pending_new(lua_State *L, lsr_conn *c, int fn)
{
    lsr_pending *p = malloc(sizeof *p);
    if (!p) return NULL;
    p->c = c;
    p->key = ++c->next_key;
    lua_getiuservalue(L, 1, UV_PENDING);
    lua_pushvalue(L, fn);
    lua_rawseti(L, -2, p->key);
    lua_pop(L, 1);
    p->prev = NULL;
    p->next = c->pending;
    if (c->pending) c->pending->prev = p;
    c->pending = p;
    c->npending++;
    return p;
}

/* The core refused the call, so it will not call back: forget the record
 * (by key: it may already be gone if the core called back anyway). */
static void pending_drop(lua_State *L, lsr_conn *c, lua_Integer key)
{
    lsr_pending *p;
    for (p = c->pending; p; p = p->next) {
        if (p->key == key) {
            pending_unlink(c, p);
            free(p);
            break;
        }
    }
    lua_getiuservalue(L, 1, UV_PENDING);
    lua_pushnil(L);
    lua_rawseti(L, -2, key);
    lua_getiuservalue(L, 1, UV_ITEMS);
    lua_pushnil(L);
    lua_rawseti(L, -2, key);
    lua_pop(L, 2);
}

typedef struct done_args {
    lsr_conn *c;
    lua_Integer key;
    const sr_error *err;
    const sr_value *result;
} done_args;

static int push_result_f(lua_State *L)
{
    push_top_value(L, lua_touserdata(L, 1));
    return 1;
}

static int done_tramp(lua_State *L)
{
    done_args *a = lua_touserdata(L, 1);
    int ud, pend;
    if (!push_conn(L, a->c)) return 0;
    ud = lua_gettop(L);
    lua_getiuservalue(L, ud, UV_PENDING);
    pend = lua_gettop(L);
    lua_getiuservalue(L, ud, UV_ITEMS);
    lua_pushnil(L);
    lua_rawseti(L, -2, a->key);
    lua_pop(L, 1);
    lua_rawgeti(L, pend, a->key);
    lua_pushnil(L);
    lua_rawseti(L, pend, a->key);
    if (!lua_isfunction(L, -1)) return 0;
    if (a->err) {
        push_sr_error(L, a->err);
        lua_call(L, 1, 0);
        return 0;
    }
    /* A result we cannot convert still resumes the waiter, with an error. */
    lua_pushnil(L);
    lua_pushcfunction(L, push_result_f);
    lua_pushlightuserdata(L, (void *)a->result);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        const char *why = lua_tostring(L, -1);
        push_error_obj(L, "protocol", why ? why : "cannot convert the result", 0);
        lua_replace(L, -3);
        lua_pop(L, 1);
        lua_call(L, 1, 0);
        return 0;
    }
    lua_call(L, 2, 0);
    return 0;
}

static void on_done(void *ud, const sr_error *err, const sr_value *result)
{
    lsr_pending *p = ud;
    lsr_conn *c = p->c;
    done_args a;
    a.c = c;
    a.key = p->key;
    a.err = err;
    a.result = result;
    pending_unlink(c, p);
    free(p);
    run_protected(c->lp, c, done_tramp, &a, 0);
}

/* One item of a server-to-client stream: its item function (uv3[key]) gets
 * the value, or nil and an error object when the value cannot be
 * converted (the stream then fails rather than skip an item). */
typedef struct item_args {
    lsr_conn *c;
    lua_Integer key;
    const sr_value *item;
} item_args;

/* A null item is signalr.null, not nil: nil would end a for loop. */
static int push_item_f(lua_State *L)
{
    push_value_at(L, lua_touserdata(L, 1), 0);
    return 1;
}

static int item_tramp(lua_State *L)
{
    item_args *a = lua_touserdata(L, 1);
    if (!push_conn(L, a->c)) return 0;
    lua_getiuservalue(L, -1, UV_ITEMS);
    lua_rawgeti(L, -1, a->key);
    if (!lua_isfunction(L, -1)) return 0;
    lua_pushcfunction(L, push_item_f);
    lua_pushlightuserdata(L, (void *)a->item);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        const char *why = lua_tostring(L, -1);
        push_error_obj(L, "protocol", why ? why : "cannot convert a stream item", 0);
        lua_replace(L, -2);
        lua_pushnil(L);
        lua_insert(L, -2);
        lua_call(L, 2, 0);
        return 0;
    }
    lua_call(L, 1, 0);
    return 0;
}

static void on_item(void *ud, const sr_value *item)
{
    lsr_pending *p = ud;
    item_args a;
    a.c = p->c;
    a.key = p->key;
    a.item = item;
    run_protected(p->c->lp, p->c, item_tramp, &a, 0);
}

typedef struct inv_args {
    lsr_conn *c;
    const char *target;
    const sr_value *args;
    const char *id; /* the server waits for a result */
    int taken;      /* Lua took charge of the result */
} inv_args;

/* A plain call goes to callback "invocation" (target, ...); one that waits
 * for a result to "result" (id, target, ...), which answers through
 * conn:complete. */
static int invocation_tramp(lua_State *L)
{
    inv_args *a = lua_touserdata(L, 1);
    size_t i, n = a->args && sr_value_type(a->args) == SR_ARRAY ? sr_value_len(a->args) : 0;
    if (!push_conn(L, a->c)) return 0;
    if (!push_callback(L, lua_gettop(L), a->id ? "result" : "invocation")) return 0;
    luaL_checkstack(L, (int)n + 3, "too many arguments from the server");
    if (a->id) lua_pushstring(L, a->id);
    lua_pushstring(L, a->target);
    for (i = 0; i < n; i++)
        push_top_value(L, sr_value_at(a->args, i));
    a->taken = a->id != NULL;
    lua_call(L, (int)n + (a->id ? 2 : 1), 0);
    return 0;
}

/* Arguments of one server call a handler can take. Lua passes arguments on
 * the stack, which every Lua bounds (Lua 5.1 at 8,000 slots in a C call),
 * and the call is passed on a few times before it reaches the handler. A
 * real hub sends a handful; more than this is refused, never cut short. */
#define LSR_MAX_SERVER_ARGS 2000

static int on_invocation(void *ud, sr_conn *conn, const char *target, const sr_value *args,
                         const char *invocation_id)
{
    lsr_conn *c = ud;
    inv_args a;
    size_t n = args && sr_value_type(args) == SR_ARRAY ? sr_value_len(args) : 0;
    (void)conn;
    if (n > LSR_MAX_SERVER_ARGS) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "the server's call to '%.200s' has %zu arguments; handlers take at most %d, so "
                 "it was not delivered",
                 target, n, LSR_MAX_SERVER_ARGS);
        if (c->log_level <= SR_LOG_ERROR && !c->finalizing) run_log(c->lp, c, SR_LOG_ERROR, msg);
        if (invocation_id) sr_conn_complete(conn, invocation_id, NULL, msg);
        return invocation_id != NULL;
    }
    a.c = c;
    a.target = target;
    a.args = args;
    a.id = invocation_id;
    a.taken = 0;
    run_protected(c->lp, c, invocation_tramp, &a, 0);
    /* An error before the Lua side took the call: the core answers. */
    return a.taken;
}

/* fn(err): closed for good; err is nil after stop */
static void on_close(void *ud, sr_conn *conn, const sr_error *err)
{
    (void)conn;
    run_event(ud, "close", 1, err, NULL, NULL);
}

/* fn(old_state, new_state) */
static void on_state(void *ud, sr_conn *conn, sr_state from, sr_state to)
{
    (void)conn;
    run_event(ud, "state", 2, NULL, sr_state_name(from), sr_state_name(to));
}

/* fn(err): a connection loss started automatic reconnection */
static void on_reconnecting(void *ud, sr_conn *conn, const sr_error *err)
{
    (void)conn;
    run_event(ud, "reconnecting", 1, err, NULL, NULL);
}

/* fn(connection_id): reconnected; the id is nil with skip_negotiation */
static void on_reconnected(void *ud, sr_conn *conn, const char *connection_id)
{
    (void)conn;
    run_event(ud, "reconnected", 1, NULL, connection_id, NULL);
}

typedef struct retry_args {
    lsr_conn *c;
    const sr_retry_context *ctx;
    double delay_ms; /* stays negative unless the policy gave a valid delay */
} retry_args;

static int retry_tramp(lua_State *L)
{
    retry_args *a = lua_touserdata(L, 1);
    lua_Number s;
    int base;
    if (!push_conn(L, a->c)) return 0;
    if (!push_callback(L, lua_gettop(L), "retry")) return 0;
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)a->ctx->previous_retry_count);
    lua_setfield(L, -2, "previous_retry_count");
    lua_pushnumber(L, (lua_Number)(a->ctx->elapsed_ms / 1000.0));
    lua_setfield(L, -2, "elapsed");
    if (a->ctx->retry_reason) {
        push_sr_error(L, a->ctx->retry_reason);
        lua_setfield(L, -2, "retry_reason");
    }
    /* The policy's own error is re-raised with a prefix so the log line
     * says what failed; run_protected logs it and the delay stays -1. */
    base = lua_gettop(L) - 2;
    lua_pushcfunction(L, msgh);
    lua_insert(L, base);
    if (lua_pcall(L, 1, 1, base) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        return luaL_error(L, "the reconnect policy failed, not reconnecting: %s",
                          msg ? msg : "(error object is not a string)");
    }
    if (lua_isnil(L, -1)) return 0;
    if (lua_type(L, -1) != LUA_TNUMBER)
        return luaL_error(L,
                          "the reconnect policy returned a %s, not a number of seconds or nil; "
                          "not reconnecting",
                          luaL_typename(L, -1));
    s = lua_tonumber(L, -1);
    if (!(s >= 0) || isinf(s))
        return luaL_error(L,
                          "the reconnect policy returned %f, not a number of seconds >= 0 or "
                          "nil; not reconnecting",
                          (double)s);
    a->delay_ms = (double)s * 1000.0;
    return 0;
}

/* The core's sr_retry_fn: the Lua policy, which never raises into the core.
 * Any error or invalid answer is logged and stops reconnecting. */
static double retry_policy(void *ud, const sr_retry_context *ctx)
{
    lsr_conn *c = ud;
    retry_args a;
    a.c = c;
    a.ctx = ctx;
    a.delay_ms = -1;
    run_protected(c->lp, c, retry_tramp, &a, 0);
    return a.delay_ms;
}

/* An empty list of delays: the official clients never retry then (the core
 * reads no delays as its default list, so it cannot say this with delays). */
static double never_retry(void *ud, const sr_retry_context *ctx)
{
    (void)ud;
    (void)ctx;
    return -1;
}

typedef struct token_args {
    lsr_conn *c;
    char *token;
} token_args;

static int token_tramp(lua_State *L)
{
    token_args *a = lua_touserdata(L, 1);
    const char *s;
    size_t len;
    if (!push_conn(L, a->c)) return 0;
    if (!push_callback(L, lua_gettop(L), "access_token")) return 0;
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) return 0;
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "the access token function returned a %s, not a string",
                          luaL_typename(L, -1));
    s = lua_tolstring(L, -1, &len);
    a->token = malloc(len + 1);
    if (a->token) memcpy(a->token, s, len + 1);
    return 0;
}

/* Called by the core before each negotiate/connect. An error is logged and
 * the request goes without a token. */
static char *access_token_fn(void *ud)
{
    lsr_conn *c = ud;
    token_args a;
    a.c = c;
    a.token = NULL;
    run_protected(c->lp, c, token_tramp, &a, 0);
    return a.token;
}

/* Free what the core will no longer call back with; never calls Lua when
 * from_gc. The connection must be unlinked before Lua may run again. */
static void conn_release(lua_State *L, lsr_conn *c, int from_gc)
{
    lsr_loop *lp = c->lp;
    if (!lp) return;
    if (from_gc) c->finalizing = 1;
    if (c->conn) {
        sr_conn *conn = c->conn;
        c->conn = NULL;
        if (from_gc) {
            sr_conn_free(conn);
        } else {
            ENTER(lp, L);
            sr_conn_free(conn);
            LEAVE(lp);
        }
    }
    while (c->pending) {
        lsr_pending *p = c->pending;
        pending_unlink(c, p);
        free(p);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        lp->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->lp = NULL;
    if (from_gc) {
        c->self_ref = LUA_NOREF; /* only set at lua_close: no registry edits there */
    } else {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &WEAK_KEY);
        lua_pushnil(L);
        lua_rawsetp(L, -2, c);
        lua_pop(L, 1);
        ref_drop(L, c);
    }
}

static int lsr_conn_gc(lua_State *L)
{
    lsr_conn *c = luaL_checkudata(L, 1, CONN_MT);
    conn_release(L, c, 1);
    return 0;
}

/* A done function of the core that will never be called: fail it here. */
static void fail_orphans(lua_State *L, int list, int n)
{
    int i;
    for (i = 1; i <= n; i++) {
        lua_pushcfunction(L, msgh);
        lua_rawgeti(L, list, i);
        push_error_obj(L, "closed", "the connection was closed", 0);
        if (lua_pcall(L, 1, 0, -3) != LUA_OK) {
            const char *msg = lua_tostring(L, -1);
            lua_warning(L, "signalr: error in a callback: ", 1);
            lua_warning(L, msg ? msg : "?", 0);
        }
        lua_settop(L, list);
    }
}

/* conn:close() and __close: free the connection now. Outstanding
 * start/stop/invoke functions get a "closed" error (the core drops them
 * without calling back). Idempotent; __gc shares conn_release. */
static int lsr_conn_close(lua_State *L)
{
    lsr_conn *c = check_conn(L);
    int list, n = 0;
    lua_settop(L, 1);
    if (!c->lp) return 0;
    conn_release(L, c, 0);
    lua_getiuservalue(L, 1, UV_PENDING); /* 2 */
    lua_newtable(L);                     /* 3 */
    list = 3;
    lua_pushnil(L);
    while (lua_next(L, 2))
        lua_rawseti(L, list, ++n);
    lua_newtable(L);
    lua_setiuservalue(L, 1, UV_PENDING);
    lua_newtable(L);
    lua_setiuservalue(L, 1, UV_ITEMS);
    fail_orphans(L, list, n);
    return 0;
}

/* ===================================================== connection: methods */

static void take_ref(lua_State *L, lsr_conn *c)
{
    if (c->self_ref == LUA_NOREF) {
        lua_pushvalue(L, 1);
        c->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
}

static const char *state_of(const lsr_conn *c)
{
    return c->conn ? sr_state_name(sr_conn_state(c->conn)) : "disconnected";
}

static int raise_call(lua_State *L, lsr_conn *c, int rc, const char *verb, const char *target)
{
    char what[200];
    if (target)
        snprintf(what, sizeof what, "cannot %s '%.120s'", verb, target);
    else
        snprintf(what, sizeof what, "cannot %s", verb);
    /* Connected yet closed: the transport is gone and the core has not
     * processed that yet (or a stateful connection cannot keep the call). */
    if (rc == SR_ECLOSED && c->conn && sr_conn_state(c->conn) == SR_STATE_CONNECTED)
        return raise_error(L, "closed", "%s: the connection was lost", what);
    if (rc == SR_ECLOSED)
        return raise_error(L, "closed", "%s: the connection is %s, not connected", what,
                           state_of(c));
    if (rc == SR_EUSAGE && !target)
        return raise_error(L, "usage", "%s: the connection is %s", what, state_of(c));
    if (rc == SR_EUSAGE)
        return raise_error(L, "usage", "%s: the arguments could not be encoded", what);
    return raise_code(L, rc, what);
}

/* A start/stop call; the core may call back (even finish) before it returns. */
static int start_or_stop(lua_State *L, int stop)
{
    lsr_conn *c = open_conn(L);
    lsr_loop *lp = c->lp;
    lsr_pending *p = NULL;
    lua_Integer key = 0;
    int rc;
    if (!stop || !lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    if (!lua_isnil(L, 2)) {
        p = pending_new(L, c, 2);
        if (!p) return raise_error(L, "transport", "out of memory");
        key = p->key;
    }
    take_ref(L, c);
    {
        ENTER(lp, L);
        if (stop)
            rc = sr_conn_stop(c->conn, p ? on_done : NULL, p);
        else
            rc = sr_conn_start(c->conn, on_done, p);
        LEAVE(lp);
    }
    if (rc != SR_OK && p) pending_drop(L, c, key);
    if (lp->depth == 0) sync_refs(L, lp);
    if (rc != SR_OK) return raise_call(L, c, rc, stop ? "stop" : "start", NULL);
    return 0;
}

/* conn:start(done): done(err) once connected or failed */
static int lsr_conn_start(lua_State *L)
{
    return start_or_stop(L, 0);
}

/* conn:stop([done]): done(err) once disconnected */
static int lsr_conn_stop(lua_State *L)
{
    return start_or_stop(L, 1);
}

/* conn:invoke(method, done, ...) -> id; done(err, result). false when the
 * send buffer is full (SR_EFULL): done will not run; wait_writable, then
 * call again. */
/* Tell each channel of a call which stream it carries; a channel closed
 * before the call ends its stream at once. */
static void attach_channels(lua_State *L, lsr_conn *c, const chan_args *ch)
{
    int i;
    for (i = 0; i < ch->n; i++) {
        int idx = ch->idx[i];
        lua_pushliteral(L, "_c");
        lua_pushvalue(L, 1);
        lua_rawset(L, idx);
        lua_pushliteral(L, "_id");
        lua_pushinteger(L, (lua_Integer)ch->ids[i]);
        lua_rawset(L, idx);
        lua_pushliteral(L, "_closed");
        if (lua_rawget(L, idx) != LUA_TNIL && lua_toboolean(L, -1)) {
            lua_pushliteral(L, "_error");
            lua_rawget(L, idx);
            sr_conn_upload_close(c->conn, ch->ids[i], lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
}

/* The calls that expect an answer: conn:invoke(method, done, ...) and
 * conn:stream(method, item, done, ...) -> id, or false when the send
 * buffer is full (wait_writable, then call again). */
static int call_with_answer(lua_State *L, sr_call_kind kind)
{
    lsr_conn *c = open_conn(L);
    lsr_loop *lp = c->lp;
    const char *target = luaL_checkstring(L, 2);
    int done = kind == SR_CALL_STREAM ? 4 : 3;
    sr_value *args;
    chan_args ch;
    lsr_pending *p;
    lua_Integer key;
    uint64_t id = 0;
    int rc;
    luaL_checktype(L, 3, LUA_TFUNCTION);
    if (kind == SR_CALL_STREAM) luaL_checktype(L, 4, LUA_TFUNCTION);
    args = check_args(L, lp, done + 1, lua_gettop(L), c->json, &ch);
    p = pending_new(L, c, done);
    if (!p) {
        sr_value_free(args);
        return raise_error(L, "transport", "out of memory");
    }
    key = p->key;
    if (kind == SR_CALL_STREAM) {
        lua_getiuservalue(L, 1, UV_ITEMS);
        lua_pushvalue(L, 3);
        lua_rawseti(L, -2, key);
        lua_pop(L, 1);
    }
    take_ref(L, c);
    {
        ENTER(lp, L);
        rc = sr_conn_call(c->conn, kind, target, args, (size_t)ch.n, ch.ids,
                          kind == SR_CALL_STREAM ? on_item : NULL, on_done, p, &id);
        LEAVE(lp);
    }
    sr_value_free(args);
    if (rc != SR_OK) {
        pending_drop(L, c, key);
        if (lp->depth == 0) sync_refs(L, lp);
        if (rc == SR_EFULL) {
            lua_pushboolean(L, 0);
            return 1;
        }
        return raise_call(L, c, rc, kind == SR_CALL_STREAM ? "stream" : "invoke", target);
    }
    attach_channels(L, c, &ch);
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
}

static int lsr_conn_invoke(lua_State *L)
{
    return call_with_answer(L, SR_CALL_INVOKE);
}

static int lsr_conn_stream(lua_State *L)
{
    return call_with_answer(L, SR_CALL_STREAM);
}

/* conn:send(method, ...) -> true once queued for the transport; false when
 * the send buffer is full (SR_EFULL): wait_writable, then call again. */
static int lsr_conn_send(lua_State *L)
{
    lsr_conn *c = open_conn(L);
    lsr_loop *lp = c->lp;
    const char *target = luaL_checkstring(L, 2);
    chan_args ch;
    sr_value *args = check_args(L, lp, 3, lua_gettop(L), c->json, &ch);
    int rc;
    {
        ENTER(lp, L);
        rc = sr_conn_call(c->conn, SR_CALL_SEND, target, args, (size_t)ch.n, ch.ids, NULL, NULL,
                          NULL, NULL);
        LEAVE(lp);
    }
    sr_value_free(args);
    if (rc == SR_EFULL) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (rc != SR_OK) return raise_call(L, c, rc, "send", target);
    attach_channels(L, c, &ch);
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:upload_write(id, item) -> true once queued; false when the send
 * buffer is full (wait_writable, then again). */
static int lsr_conn_upload_write(lua_State *L)
{
    lsr_conn *c = open_conn(L);
    uint64_t id = (uint64_t)luaL_checkinteger(L, 2);
    sr_value *v;
    int rc;
    lua_settop(L, 3);
    v = check_value(L, c->lp, 3, c->json);
    if (!v) return raise_error(L, "usage", "channel item: %s", c->lp->enc.msg);
    rc = sr_conn_upload_write(c->conn, id, v);
    sr_value_free(v);
    if (rc == SR_EFULL) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (rc == SR_EUSAGE) return raise_error(L, "usage", "channel: write after close");
    if (rc != SR_OK) return raise_call(L, c, rc, "write to a channel", NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:upload_close(id [, error]) -> true, or false when the send buffer
 * is full (wait_writable, then again). */
static int lsr_conn_upload_close(lua_State *L)
{
    lsr_conn *c = open_conn(L);
    uint64_t id = (uint64_t)luaL_checkinteger(L, 2);
    const char *error = luaL_optstring(L, 3, NULL);
    int rc = sr_conn_upload_close(c->conn, id, error);
    if (rc == SR_EFULL) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (rc == SR_EUSAGE) return raise_error(L, "usage", "channel: closed twice");
    if (rc != SR_OK) return raise_call(L, c, rc, "close a channel", NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:complete(id, true, value) or conn:complete(id, false, message):
 * answer a server's call that waits for a result. Returns true when sent;
 * false and why when not (the connection is gone, or the value cannot be
 * sent: then the server gets that error instead). */
static int lsr_conn_complete(lua_State *L)
{
    lsr_conn *c = check_conn(L);
    const char *id = luaL_checkstring(L, 2);
    int ok = lua_toboolean(L, 3);
    sr_value *v = NULL;
    const char *error = NULL;
    char why[300];
    int rc;
    lua_settop(L, 4);
    if (!c->conn) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "the connection was closed");
        return 2;
    }
    if (ok) {
        v = check_value(L, c->lp, 4, c->json);
        if (!v) {
            snprintf(why, sizeof why, "the client's result cannot be sent: %s", c->lp->enc.msg);
            error = why;
        }
    } else {
        error = luaL_optstring(L, 4, "error");
    }
    rc = sr_conn_complete(c->conn, id, v, error);
    sr_value_free(v);
    if (rc != SR_OK) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, sr_strerror(rc));
        return 2;
    }
    if (ok && error) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, error);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int lsr_conn_pause(lua_State *L)
{
    lsr_conn *c = check_conn(L);
    if (c->conn) sr_conn_pause(c->conn);
    return 0;
}

static int lsr_conn_resume(lua_State *L)
{
    lsr_conn *c = check_conn(L);
    if (c->conn) sr_conn_resume(c->conn);
    return 0;
}

/* conn:wait_writable(done): done(err) once there is room to send again
 * (err nil) or the connection ended first (kind closed). */
static int lsr_conn_wait_writable(lua_State *L)
{
    lsr_conn *c = open_conn(L);
    lsr_loop *lp = c->lp;
    lsr_pending *p;
    lua_Integer key;
    int rc;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    p = pending_new(L, c, 2);
    if (!p) return raise_error(L, "transport", "out of memory");
    key = p->key;
    take_ref(L, c);
    {
        ENTER(lp, L);
        rc = sr_conn_wait_writable(c->conn, on_done, p);
        LEAVE(lp);
    }
    if (rc != SR_OK) pending_drop(L, c, key);
    if (lp->depth == 0) sync_refs(L, lp);
    if (rc != SR_OK) return raise_call(L, c, rc, "send", NULL);
    return 0;
}

/* conn:cancel(id) -> true if the invocation was pending; its done function
 * runs (with a "canceled" error) before this returns. */
static int lsr_conn_cancel(lua_State *L)
{
    lsr_conn *c = open_conn(L);
    lsr_loop *lp = c->lp;
    uint64_t id = (uint64_t)luaL_checkinteger(L, 2);
    int rc;
    {
        ENTER(lp, L);
        rc = sr_conn_cancel(c->conn, id);
        LEAVE(lp);
    }
    if (lp->depth == 0) sync_refs(L, lp);
    lua_pushboolean(L, rc == SR_OK);
    return 1;
}

static int lsr_conn_state(lua_State *L)
{
    lua_pushstring(L, state_of(check_conn(L)));
    return 1;
}

static int lsr_conn_connection_id(lua_State *L)
{
    lsr_conn *c = check_conn(L);
    const char *id = c->conn ? sr_conn_connection_id(c->conn) : NULL;
    if (id)
        lua_pushstring(L, id);
    else
        lua_pushnil(L);
    return 1;
}

static int set_callback(lua_State *L, const char *name)
{
    check_conn(L);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    lua_getiuservalue(L, 1, UV_CALLBACKS);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, name);
    return 0;
}

/* fn(target, args...): a call from the server; null arguments are nil */
static int lsr_conn_on_invocation(lua_State *L)
{
    return set_callback(L, "invocation");
}

/* fn(id, target, ...): a server's call that waits for a result; the
 * answer goes back with conn:complete(id, ...) */
static int lsr_conn_on_result(lua_State *L)
{
    return set_callback(L, "result");
}

/* fn(err): closed for good; err is nil after stop */
static int lsr_conn_on_close(lua_State *L)
{
    return set_callback(L, "close");
}

/* fn(old_state, new_state) */
static int lsr_conn_on_state(lua_State *L)
{
    return set_callback(L, "state");
}

/* fn(err): a connection loss started automatic reconnection */
static int lsr_conn_on_reconnecting(lua_State *L)
{
    return set_callback(L, "reconnecting");
}

/* fn(connection_id): reconnected; the id is nil with skip_negotiation */
static int lsr_conn_on_reconnected(lua_State *L)
{
    return set_callback(L, "reconnected");
}

static int lsr_conn_tostring(lua_State *L)
{
    lsr_conn *c = check_conn(L);
    lua_pushfstring(L, CONN_MT " (%s): %p", state_of(c), (void *)c);
    return 1;
}

/* ================================================== connection: creation */

static void opt_type_error(lua_State *L, const char *name, const char *want)
{
    raise_error(L, "usage", "option '%s' must be %s, not %s", name, want, luaL_typename(L, -1));
}

/* String option of the table at t, NULL when absent. The string stays
 * alive in that table for the duration of the call. */
static const char *opt_string(lua_State *L, int t, const char *name)
{
    const char *s = NULL;
    lua_getfield(L, t, name);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING) opt_type_error(L, name, "a string");
        s = lua_tostring(L, -1);
    }
    lua_pop(L, 1);
    return s;
}

static int opt_bool(lua_State *L, int t, const char *name, int def)
{
    int b = def;
    lua_getfield(L, t, name);
    if (!lua_isnil(L, -1)) {
        if (!lua_isboolean(L, -1)) opt_type_error(L, name, "a boolean");
        b = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return b;
}

/* Seconds option -> milliseconds; 0 (the core's default) when absent. */
static double opt_ms(lua_State *L, int t, const char *name)
{
    double ms = 0;
    lua_getfield(L, t, name);
    if (!lua_isnil(L, -1)) {
        lua_Number s;
        if (lua_type(L, -1) != LUA_TNUMBER) opt_type_error(L, name, "a number of seconds");
        s = lua_tonumber(L, -1);
        if (!(s >= 0)) raise_error(L, "usage", "option '%s' must not be negative", name);
        ms = (double)s * 1000.0;
    }
    lua_pop(L, 1);
    return ms;
}

static lua_Integer opt_integer(lua_State *L, int t, const char *name)
{
    lua_Integer i = 0;
    lua_getfield(L, t, name);
    if (!lua_isnil(L, -1)) {
        if (!lua_isinteger(L, -1)) opt_type_error(L, name, "an integer");
        i = lua_tointeger(L, -1);
        if (i < 0) raise_error(L, "usage", "option '%s' must not be negative", name);
    }
    lua_pop(L, 1);
    return i;
}

/* opts.headers -> an sr_header array in a scratch userdata left on the stack */
static const sr_header *opt_headers(lua_State *L, int t, size_t *n)
{
    sr_header *h;
    size_t count = 0, i = 0;
    int ht;
    *n = 0;
    lua_getfield(L, t, "headers");
    if (lua_isnil(L, -1)) return NULL; /* leaves nil as the scratch slot */
    if (!lua_istable(L, -1)) opt_type_error(L, "headers", "a table");
    ht = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, ht)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            raise_error(L, "usage", "option 'headers' must map header names to string values");
        count++;
        lua_pop(L, 1);
    }
    h = lua_newuserdatauv(L, (count ? count : 1) * sizeof *h, 0);
    lua_pushnil(L);
    while (lua_next(L, ht) && i < count) {
        h[i].name = lua_tostring(L, -2);
        h[i].value = lua_tostring(L, -1);
        i++;
        lua_pop(L, 1);
    }
    *n = i;
    return h;
}

static sr_log_level opt_level(lua_State *L, int t)
{
    const char *s = opt_string(L, t, "log_level");
    int i;
    if (!s) return SR_LOG_INFORMATION;
    for (i = 0; level_names[i]; i++)
        if (strcmp(level_names[i], s) == 0) return (sr_log_level)i;
    raise_error(L, "usage", "unknown log level '%s'", s);
    return SR_LOG_NONE;
}

/* opts.reconnect: nil/false (off), true (the default delays), a list of
 * delays in seconds, or a function(ctx) -> seconds or nil. A list becomes
 * milliseconds in a scratch userdata left on the stack (or nil). */
typedef struct reconnect_opt {
    int mode; /* 0 off, 1 delays, 2 Lua policy */
    const double *delays_ms;
    size_t ndelays;
} reconnect_opt;

static void opt_reconnect(lua_State *L, int t, reconnect_opt *r)
{
    lua_Unsigned n, i;
    double *d;
    memset(r, 0, sizeof *r);
    lua_getfield(L, t, "reconnect");
    if (lua_isnil(L, -1) || (lua_isboolean(L, -1) && !lua_toboolean(L, -1))) return;
    if (lua_isboolean(L, -1)) {
        r->mode = 1;
        return;
    }
    if (lua_isfunction(L, -1)) {
        r->mode = 2;
        return;
    }
    if (!lua_istable(L, -1))
        opt_type_error(L, "reconnect", "a boolean, a list of delays or a function");
    n = lua_rawlen(L, -1);
    if (n > 100000) raise_error(L, "usage", "option 'reconnect' has too many delays");
    d = lua_newuserdatauv(L, (n ? (size_t)n : 1) * sizeof *d, 0);
    lua_replace(L, -2); /* the scratch takes the table's slot; the table stays in opts */
    lua_getfield(L, t, "reconnect");
    for (i = 1; i <= n; i++) {
        lua_Number s;
        lua_rawgeti(L, -1, (lua_Integer)i);
        if (lua_type(L, -1) != LUA_TNUMBER)
            raise_error(L, "usage",
                        "option 'reconnect': delay %d must be a number of seconds, not %s", (int)i,
                        luaL_typename(L, -1));
        s = lua_tonumber(L, -1);
        if (!(s >= 0) || isinf(s))
            raise_error(L, "usage", "option 'reconnect': delay %d must be a finite number >= 0",
                        (int)i);
        d[i - 1] = (double)s * 1000.0;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    r->mode = 1;
    r->delays_ms = d;
    r->ndelays = (size_t)n;
}

/* Everything core.connection read from its table, checked; the strings live
 * in that table until the call returns. */
typedef struct conn_opts {
    const char *url, *protocol, *access_token, *ca_file, *cert_file, *key_file, *proxy;
    int transports, skip_negotiation, tls_verify, stateful;
    const sr_header *headers;
    size_t nheaders, max_message_size, stateful_buffer;
    double server_timeout_ms, keepalive_ms, handshake_timeout_ms; /* 0 = default */
    sr_log_level log_level;
    reconnect_opt reconnect;
} conn_opts;

/* Build the core's option set. Pure C, so nothing raises while it is
 * allocated; on failure *bad names the option the core refused. */
static sr_options *make_options(const conn_opts *co, lsr_conn *c, int has_token_fn, int has_log,
                                int *rc, const char **bad)
{
    sr_options *o = sr_options_new();
    size_t i;
#define SET(name, call)                                                                            \
    do {                                                                                           \
        if ((*rc = (call)) != SR_OK) {                                                             \
            *bad = name;                                                                           \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)
    *bad = NULL;
    *rc = SR_ENOMEM;
    if (!o) return NULL;
    SET("url", sr_options_set_url(o, co->url));
    SET("transports", sr_options_set_transports(o, co->transports));
    SET("skip_negotiation", sr_options_set_skip_negotiation(o, co->skip_negotiation));
    if (co->protocol) SET("protocol", sr_options_set_protocol(o, co->protocol));
    for (i = 0; i < co->nheaders; i++)
        SET("headers", sr_options_add_header(o, co->headers[i].name, co->headers[i].value));
    if (co->access_token) SET("access_token", sr_options_set_access_token(o, co->access_token));
    if (has_token_fn) SET("access_token", sr_options_set_access_token_fn(o, access_token_fn, c));
    SET("tls", sr_options_set_tls(o, co->tls_verify, co->ca_file, co->cert_file, co->key_file));
    if (co->proxy) SET("proxy", sr_options_set_proxy(o, co->proxy));
    {
        /* "signalr-lua/0.1.0 (0.1.0; Linux 6.1.0; Lua; 5.4)"; a header of
         * that name in `headers` still wins. */
        char ua[160];
        SET("user_agent",
            sr_options_set_user_agent(
                o, sr_user_agent("Lua", LUA_VERSION_MAJOR "." LUA_VERSION_MINOR, ua, sizeof ua)));
    }
    /* 0 keeps the core's default, as it always did for these options */
    if (co->server_timeout_ms > 0)
        SET("server_timeout", sr_options_set_server_timeout(o, co->server_timeout_ms));
    if (co->keepalive_ms > 0)
        SET("keepalive_interval", sr_options_set_keepalive_interval(o, co->keepalive_ms));
    if (co->handshake_timeout_ms > 0)
        SET("handshake_timeout", sr_options_set_handshake_timeout(o, co->handshake_timeout_ms));
    SET("max_message_size", sr_options_set_max_message_size(o, co->max_message_size));
    if (has_log)
        SET("log", sr_options_set_log(o, co->log_level, log_sink, c));
    else
        SET("log", sr_options_set_log(o, SR_LOG_NONE, NULL, NULL));
    if (co->reconnect.mode == 2) {
        SET("reconnect", sr_options_set_reconnect_policy(o, retry_policy, c));
    } else if (co->reconnect.mode == 1 && co->reconnect.delays_ms && co->reconnect.ndelays == 0) {
        SET("reconnect", sr_options_set_reconnect_policy(o, never_retry, NULL));
    } else if (co->reconnect.mode == 1) {
        SET("reconnect",
            sr_options_set_reconnect_delays(o, co->reconnect.delays_ms, co->reconnect.ndelays));
    }
    if (co->stateful)
        SET("stateful_reconnect", sr_options_set_stateful_reconnect(o, 1, co->stateful_buffer));
#undef SET
    *rc = SR_OK;
    return o;
fail:
    sr_options_free(o);
    return NULL;
}

/* core.connection(opts) -> Connection. Options (all optional but url):
 *   url, transports (SR_TRANSPORT_* mask), skip_negotiation, protocol,
 *   headers {name = value}, access_token (string or function), tls_verify,
 *   ca_file, cert_file, key_file, proxy, server_timeout, keepalive_interval,
 *   handshake_timeout (seconds), max_message_size (bytes), log_level, log
 *   (function(level, message)), reconnect (true, a list of delays in
 *   seconds, or a function(ctx) -> seconds or nil; see retry_policy),
 *   stateful_reconnect (boolean), stateful_buffer_size (bytes). */
static int lsr_connection(lua_State *L)
{
    lsr_loop *lp = live_loop(L);
    conn_opts co;
    sr_options *o;
    sr_error err;
    lsr_conn *c;
    const char *bad;
    int has_token_fn = 0, has_log = 0, ud, rc;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    memset(&co, 0, sizeof co);
    co.url = opt_string(L, 1, "url");
    if (!co.url) return raise_error(L, "usage", "a hub URL is required");
    co.transports = (int)opt_integer(L, 1, "transports");
    co.skip_negotiation = opt_bool(L, 1, "skip_negotiation", 0);
    co.protocol = opt_string(L, 1, "protocol");
    co.headers = opt_headers(L, 1, &co.nheaders);
    lua_getfield(L, 1, "access_token");
    if (lua_isfunction(L, -1))
        has_token_fn = 1;
    else if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        opt_type_error(L, "access_token", "a string or a function");
    else
        co.access_token = lua_tostring(L, -1);
    lua_pop(L, 1);
    co.tls_verify = opt_bool(L, 1, "tls_verify", 1);
    co.ca_file = opt_string(L, 1, "ca_file");
    co.cert_file = opt_string(L, 1, "cert_file");
    co.key_file = opt_string(L, 1, "key_file");
    co.proxy = opt_string(L, 1, "proxy");
    co.server_timeout_ms = opt_ms(L, 1, "server_timeout");
    co.keepalive_ms = opt_ms(L, 1, "keepalive_interval");
    co.handshake_timeout_ms = opt_ms(L, 1, "handshake_timeout");
    co.max_message_size = (size_t)opt_integer(L, 1, "max_message_size");
    co.log_level = opt_level(L, 1);
    lua_getfield(L, 1, "log");
    if (lua_isfunction(L, -1))
        has_log = 1;
    else if (!lua_isnil(L, -1))
        opt_type_error(L, "log", "a function");
    lua_pop(L, 1);
    opt_reconnect(L, 1, &co.reconnect);
    co.stateful = opt_bool(L, 1, "stateful_reconnect", 0);
    co.stateful_buffer = (size_t)opt_integer(L, 1, "stateful_buffer_size");

    c = lua_newuserdatauv(L, sizeof *c, 3);
    ud = lua_gettop(L);
    memset(c, 0, sizeof *c);
    c->self_ref = LUA_NOREF;
    c->json = !co.protocol || strcmp(co.protocol, "json") == 0;
    c->log_level = has_log ? co.log_level : SR_LOG_NONE;
    luaL_setmetatable(L, CONN_MT);
    lua_createtable(L, 0, 8);
    if (has_token_fn) {
        lua_getfield(L, 1, "access_token");
        lua_setfield(L, -2, "access_token");
    }
    if (has_log) {
        lua_getfield(L, 1, "log");
        lua_setfield(L, -2, "log");
    }
    if (co.reconnect.mode == 2) {
        lua_getfield(L, 1, "reconnect");
        lua_setfield(L, -2, "retry");
    }
    lua_setiuservalue(L, ud, UV_CALLBACKS);
    lua_newtable(L);
    lua_setiuservalue(L, ud, UV_PENDING);
    lua_newtable(L);
    lua_setiuservalue(L, ud, UV_ITEMS);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &WEAK_KEY);
    lua_pushvalue(L, ud);
    lua_rawsetp(L, -2, c);
    lua_pop(L, 1);
    /* linked before sr_conn_new so its log lines reach Lua */
    c->lp = lp;
    c->next = lp->conns;
    if (lp->conns) lp->conns->prev = c;
    lp->conns = c;
    /* From here to sr_options_free nothing may raise. */
    o = make_options(&co, c, has_token_fn, has_log, &rc, &bad);
    if (!o) {
        conn_release(L, c, 0);
        if (rc == SR_EUSAGE && bad && strcmp(bad, "protocol") == 0)
            return raise_error(L, "usage", "unknown hub protocol '%s'", co.protocol);
        if (rc == SR_EUSAGE)
            return raise_error(L, "usage", "option '%s' has an invalid value", bad ? bad : "?");
        return raise_code(L, rc, "cannot create the connection");
    }
    {
        ENTER(lp, L);
        c->conn = sr_conn_new(lp->loop, o, &err);
        LEAVE(lp);
    }
    sr_options_free(o);
    if (!c->conn) {
        conn_release(L, c, 0);
        push_sr_error(L, &err);
        return lua_error(L);
    }
    sr_conn_on_invocation(c->conn, on_invocation, c);
    sr_conn_on_close(c->conn, on_close, c);
    sr_conn_on_state(c->conn, on_state, c);
    sr_conn_on_reconnecting(c->conn, on_reconnecting, c);
    sr_conn_on_reconnected(c->conn, on_reconnected, c);
    lua_settop(L, ud);
    return 1;
}

/* ================================================================ module */

static int lsr_loop_gc(lua_State *L)
{
    lsr_loop *lp = luaL_checkudata(L, 1, LOOP_MT);
    while (lp->conns)
        conn_release(L, lp->conns, 1);
    while (lp->timers) {
        lsr_timer *t = lp->timers;
        lp->timers = t->next;
        free(t);
    }
    if (lp->loop) {
        sr_loop_free(lp->loop);
        lp->loop = NULL;
    }
    return 0;
}

static int lsr_binary_tostring(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushliteral(L, "data");
    lua_rawget(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) lua_pushliteral(L, "");
    return 1;
}

static int lsr_binary_len(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushliteral(L, "data");
    lua_rawget(L, 1);
    lua_pushinteger(L, lua_type(L, -1) == LUA_TSTRING ? (lua_Integer)lua_rawlen(L, -1) : 0);
    return 1;
}

static int lsr_binary_eq(lua_State *L)
{
    lua_pushliteral(L, "data");
    lua_rawget(L, 1);
    lua_pushliteral(L, "data");
    lua_rawget(L, 2);
    lua_pushboolean(L, lua_type(L, -1) == LUA_TSTRING && lua_rawequal(L, -1, -2));
    return 1;
}

static const luaL_Reg conn_methods[] = {{"start", lsr_conn_start},
                                        {"stop", lsr_conn_stop},
                                        {"invoke", lsr_conn_invoke},
                                        {"send", lsr_conn_send},
                                        {"stream", lsr_conn_stream},
                                        {"upload_write", lsr_conn_upload_write},
                                        {"upload_close", lsr_conn_upload_close},
                                        {"complete", lsr_conn_complete},
                                        {"pause", lsr_conn_pause},
                                        {"resume", lsr_conn_resume},
                                        {"cancel", lsr_conn_cancel},
                                        {"state", lsr_conn_state},
                                        {"connection_id", lsr_conn_connection_id},
                                        {"on_invocation", lsr_conn_on_invocation},
                                        {"on_result", lsr_conn_on_result},
                                        {"on_close", lsr_conn_on_close},
                                        {"on_state", lsr_conn_on_state},
                                        {"on_reconnecting", lsr_conn_on_reconnecting},
                                        {"on_reconnected", lsr_conn_on_reconnected},
                                        {"wait_writable", lsr_conn_wait_writable},
                                        {"close", lsr_conn_close},
                                        {NULL, NULL}};

/* core.now(): monotonic seconds, for timing (benchmarks, timeouts in Lua). */
static int lsr_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

static const luaL_Reg module_funcs[] = {{"connection", lsr_connection},
                                        {"now", lsr_now},
                                        {"poll", lsr_poll},
                                        {"fd", lsr_fd},
                                        {"next_timeout", lsr_next_timeout},
                                        {"timer", lsr_add_timer},
                                        {"cancel_timer", lsr_cancel_timer},
                                        {"fd_readable", lsr_fd_readable},
                                        {"error", lsr_new_error},
                                        {NULL, NULL}};

static void create_metatables(lua_State *L)
{
    if (luaL_newmetatable(L, ERROR_MT)) {
        lua_pushcfunction(L, lsr_error_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
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
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, CONN_MT)) {
        luaL_newlib(L, conn_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, lsr_conn_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, lsr_conn_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, lsr_conn_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, LOOP_MT)) {
        lua_pushcfunction(L, lsr_loop_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
}

/* The loop sentinel of this lua_State, created on first require. */
static void push_loop(lua_State *L)
{
    lsr_loop *lp;
    sr_error err;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &LOOP_KEY) == LUA_TUSERDATA) return;
    lua_pop(L, 1);
    lp = lua_newuserdatauv(L, sizeof *lp, 1);
    memset(lp, 0, sizeof *lp);
    luaL_setmetatable(L, LOOP_MT);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    memset(&err, 0, sizeof err);
    lp->loop = sr_loop_new(&err);
    if (!lp->loop) {
        push_sr_error(L, &err);
        lua_error(L);
    }
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LOOP_KEY);
}

LSR_EXPORT int luaopen_signalr_core(lua_State *L);

LSR_EXPORT int luaopen_signalr_core(lua_State *L)
{
    create_metatables(L);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &WEAK_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "v");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &WEAK_KEY);
    } else {
        lua_pop(L, 1);
    }
    luaL_newlibtable(L, module_funcs);
    push_loop(L);
    luaL_setfuncs(L, module_funcs, 1);
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
