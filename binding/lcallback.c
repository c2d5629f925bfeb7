/*
 * lcallback.c - the one way the core calls back into Lua.
 *
 * Every callback (a done or item function, a server's call, an event, the
 * log, the reconnect policy, the access token, a timer) is an lsr_cb: where
 * its function lives, a push function for its arguments and, for those
 * with an answer, a take function for its results. lsr_callback finds the
 * function, pushes, calls and takes inside one lua_pcall with a traceback
 * handler, so no Lua error ever unwinds through the core; an error is
 * reported to the connection's log sink and to lua_warning (5.4 only).
 *
 * Callbacks run on the loop's own callback thread (a Lua thread the loop
 * creates and anchors), never on whichever coroutine happened to poll or
 * call into the core: a handler then sees the same thread, stack and
 * yieldability whoever drove the loop, and a coroutine that polls is never
 * the one a callback's frames pile onto. Callbacks run only inside a poll
 * or an sr_* call made by the binding (lp->calls), and never for a
 * connection being finalized: __gc never calls Lua.
 */
#include <stdio.h>

#include "lsr.h"

static int msgh(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = luaL_tolstring(L, 1, NULL); /* error objects have __tostring */
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Slots at the bottom of the callback thread's stack, made once with the
 * thread: a callback run while T is at rest copies them instead of pushing
 * two C functions and looking the weak table up in the registry. A nested
 * one (a callback that polls) cannot reach them: stack indices count from
 * the running frame. */
enum { T_MSGH = 1, T_TRAMP = 2 };

/* Push the function of cb; 0 when it is gone (its connection collected,
 * the call forgotten, no such callback set). */
static int push_function(lua_State *T, const lsr_cb *cb)
{
    int ud;
    if (cb->slot == LSR_CB_TIMER) {
        lua_rawgetp(T, LUA_REGISTRYINDEX, &lsr_loop_key);
        lua_getiuservalue(T, -1, LOOP_UV_TIMERS);
        lua_rawgeti(T, -1, cb->key);
        lua_pushnil(T);
        lua_rawseti(T, -3, cb->key);
    } else {
        /* the connection, from the weak table (the trampoline's upvalue) */
        if (lua_rawgetp(T, lua_upvalueindex(1), cb->c) != LUA_TUSERDATA) return 0;
        ud = lua_gettop(T);
        switch (cb->slot) {
        case LSR_CB_NAMED:
            lua_getiuservalue(T, ud, UV_CALLBACKS);
            lua_rawgeti(T, -1, cb->fn);
            break;
        case LSR_CB_ITEM:
            lua_getiuservalue(T, ud, UV_ITEMS);
            lua_rawgeti(T, -1, cb->key);
            break;
        default: /* LSR_CB_DONE: the call is over, its item function too */
            lua_getiuservalue(T, ud, UV_ITEMS);
            lua_pushnil(T);
            lua_rawseti(T, -2, cb->key);
            lua_getiuservalue(T, ud, UV_PENDING);
            lua_rawgeti(T, -1, cb->key);
            lua_pushnil(T);
            lua_rawseti(T, -3, cb->key);
            break;
        }
    }
    return lua_isfunction(T, -1);
}

/* Runs under lua_pcall on the callback thread: argument 1 is the lsr_cb,
 * argument 2 the function of an orphaned call; upvalue 1 the weak table
 * of connections (lsr_weak_key). */
static int callback_tramp(lua_State *T)
{
    lsr_cb *cb = lua_touserdata(T, 1);
    int fn, nargs;
    if (cb->slot == LSR_CB_ORPHANED)
        lua_pushvalue(T, 2);
    else if (!push_function(T, cb))
        return 0;
    fn = lua_gettop(T);
    nargs = cb->push ? cb->push(T, cb) : 0;
    if (cb->fail_prefix) {
        /* its own error, named, is what gets logged (with its traceback) */
        lua_pushcfunction(T, msgh);
        lua_insert(T, fn);
        if (lua_pcall(T, nargs, cb->nresults, fn) != LUA_OK) {
            const char *msg = lua_tostring(T, -1);
            return luaL_error(T, "%s: %s", cb->fail_prefix,
                              msg ? msg : "(error object is not a string)");
        }
    } else {
        lua_call(T, nargs, cb->nresults);
    }
    if (cb->take) cb->take(T, cb);
    return 0;
}

/* Push the trampoline, a closure over the weak table of connections. */
static void push_tramp(lua_State *T)
{
    lua_rawgetp(T, LUA_REGISTRYINDEX, &lsr_weak_key);
    lua_pushcclosure(T, callback_tramp, 1);
}

/* The error message is on top of T. */
static void report_error(lsr_conn *c, lua_State *T, int in_log)
{
    const char *msg = lua_tostring(T, -1);
    if (!msg) msg = "(error object is not a string)";
    lua_warning(T, "signalr: error in a callback: ", 1);
    lua_warning(T, msg, 0);
    if (!c)
        fprintf(stderr, "signalr: error in a callback: %s\n", msg);
    else if (!in_log && c->log_level <= SR_LOG_ERROR)
        lsr_log(c, SR_LOG_ERROR, msg);
}

static void run(lsr_loop *lp, lsr_cb *cb, lua_State *from, int fn)
{
    lua_State *T = lp->T;
    int base, h = T_MSGH, nargs = 1;
    if (!lua_checkstack(T, 6)) return;
    base = lua_gettop(T);
    if (lp->running == 0) {
        lua_pushvalue(T, T_TRAMP);
    } else {
        lua_pushcfunction(T, msgh);
        h = base + 1;
        push_tramp(T);
    }
    lua_pushlightuserdata(T, cb);
    if (from) {
        lua_pushvalue(from, fn);
        lua_xmove(from, T, 1);
        nargs = 2;
    }
    lp->running++;
    if (lua_pcall(T, nargs, 0, h) != LUA_OK) report_error(cb->c, T, cb->in_log);
    lp->running--;
    lua_settop(T, base);
}

void lsr_callback(lsr_loop *lp, lsr_cb *cb)
{
    if (!lp || !lp->T || lp->calls <= 0 || (cb->c && cb->c->finalizing)) return;
    run(lp, cb, NULL, 0);
}

static int push_closed(lua_State *T, lsr_cb *cb)
{
    (void)cb;
    lsr_push_error_obj(T, "closed", "the connection was closed", 0);
    return 1;
}

/* The done function at L's index fn belongs to a call of a connection the
 * user closed: the core will never call it, so it fails here, with kind
 * closed. Its errors go to lua_warning (the connection is gone). */
void lsr_callback_orphan(lsr_loop *lp, lua_State *L, int fn)
{
    lsr_cb cb = {0};
    if (!lp || !lp->T) return;
    fn = lua_absindex(L, fn);
    cb.slot = LSR_CB_ORPHANED;
    cb.push = push_closed;
    run(lp, &cb, L, fn);
}

typedef struct log_line {
    sr_log_level level;
    const char *message;
} log_line;

static int push_log(lua_State *T, lsr_cb *cb)
{
    const log_line *l = cb->data;
    lua_pushstring(T, lsr_level_names[l->level]);
    lua_pushstring(T, l->message);
    return 2;
}

/* A line to the connection's log function, log(level, message). */
void lsr_log(lsr_conn *c, sr_log_level level, const char *message)
{
    lsr_cb cb = {0};
    log_line l;
    l.level = level;
    l.message = message;
    cb.c = c;
    cb.slot = LSR_CB_NAMED;
    cb.fn = LSR_FN_LOG;
    cb.push = push_log;
    cb.in_log = 1;
    cb.data = &l;
    lsr_callback(c->lp, &cb);
}

/* Create the callback thread of lp, anchored in the loop sentinel at
 * loop_idx (so it lives exactly as long as the loop). */
void lsr_callback_thread_new(lua_State *L, lsr_loop *lp, int loop_idx)
{
    lua_State *T;
    loop_idx = lua_absindex(L, loop_idx);
    T = lp->T = lua_newthread(L);
    lua_pushcfunction(T, msgh); /* T_MSGH */
    push_tramp(T);              /* T_TRAMP */
    lua_setiuservalue(L, loop_idx, LOOP_UV_THREAD);
}
