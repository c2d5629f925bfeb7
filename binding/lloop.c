/*
 * lloop.c - the loop of a lua_State: one sr_loop per state, owned by a
 * sentinel userdata ("signalr.Loop") in the registry, and the module
 * functions that drive it (poll, fd, next_timeout) and its timers.
 *
 * A connection that may still call back holds a ref to itself; the refs
 * of idle connections are dropped when the outermost poll returns and
 * after calls that can finish synchronously (lsr_sync_refs).
 */
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lsr.h"

const char lsr_loop_key = 'l';

static lsr_loop *loop_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

lsr_loop *lsr_live_loop(lua_State *L)
{
    lsr_loop *lp = loop_of(L);
    if (!lp->loop) lsr_raise_error(L, "closed", "the signalr loop is gone (Lua state closing)");
    return lp;
}

void lsr_ref_drop(lua_State *L, lsr_conn *c)
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
void lsr_sync_refs(lua_State *L, lsr_loop *lp)
{
    lsr_conn *c;
again:
    for (c = lp->conns; c; c = c->next) {
        if (c->self_ref != LUA_NOREF && conn_idle(c)) {
            lsr_ref_drop(L, c);
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

/* Dispatch events for up to ms (-1: until some came), callbacks allowed;
 * the outermost pump then brings the references up to date. Returns the
 * number dispatched. */
int lsr_pump(lua_State *L, lsr_loop *lp, int ms)
{
    int n;
    LSR_ENTER(lp);
    lp->depth++;
    n = sr_loop_dispatch(lp->loop, ms);
    lp->depth--;
    LSR_LEAVE(lp);
    if (lp->depth == 0) lsr_sync_refs(L, lp);
    return n;
}

/* core.poll([seconds]) -> number of events dispatched */
static int lsr_poll(lua_State *L)
{
    lsr_loop *lp = lsr_live_loop(L);
    lua_pushinteger(L, lsr_pump(L, lp, seconds_to_ms(L, 1)));
    return 1;
}

/* core.break_dispatch(): the running poll returns after this callback (a
 * blocking wait's result has come; the rest can wait for the next poll).
 * Outside a poll (a wait that completed inside the call that started it)
 * there is none to end, and the core would end the next one at once. */
static int lsr_break_dispatch(lua_State *L)
{
    lsr_loop *lp = lsr_live_loop(L);
    if (lp->depth > 0) sr_loop_break(lp->loop);
    return 0;
}

static int lsr_fd(lua_State *L)
{
    lsr_loop *lp = lsr_live_loop(L);
    lua_pushinteger(L, sr_loop_fd(lp->loop));
    return 1;
}

/* core.next_timeout() -> seconds until the next timer, or nil */
static int lsr_next_timeout(lua_State *L)
{
    lsr_loop *lp = lsr_live_loop(L);
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

static void on_timer(void *ud)
{
    lsr_timer *t = ud;
    lsr_loop *lp = t->lp;
    lsr_cb cb = {0};
    cb.slot = LSR_CB_TIMER;
    cb.key = (lua_Integer)t->id;
    timer_unlink(lp, t);
    free(t);
    lsr_callback(lp, &cb);
}

/* core.timer(seconds, fn) -> id; fn() runs inside poll */
static int lsr_add_timer(lua_State *L)
{
    lsr_loop *lp = lsr_live_loop(L);
    lua_Number s = luaL_checknumber(L, 1);
    lsr_timer *t;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_getiuservalue(L, lua_upvalueindex(1), LOOP_UV_TIMERS);
    t = malloc(sizeof *t);
    if (!t) return lsr_raise_error(L, "transport", "out of memory");
    t->lp = lp;
    t->id = sr_loop_add_timer(lp->loop, s > 0 ? (double)s * 1000.0 : 0.0, on_timer, t);
    if (!t->id) {
        free(t);
        return lsr_raise_error(L, "transport", "cannot add a timer");
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
    lsr_loop *lp = lsr_live_loop(L);
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
    lua_getiuservalue(L, lua_upvalueindex(1), LOOP_UV_TIMERS);
    lua_pushnil(L);
    lua_rawseti(L, -2, (lua_Integer)id);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.now(): monotonic seconds, for timing (benchmarks, timeouts in Lua). */
static int lsr_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

/* The module's functions that need the loop (their upvalue 1). */
const luaL_Reg lsr_loop_funcs[] = {{"connection", lsr_connection},
                                   {"now", lsr_now},
                                   {"poll", lsr_poll},
                                   {"break_dispatch", lsr_break_dispatch},
                                   {"fd", lsr_fd},
                                   {"next_timeout", lsr_next_timeout},
                                   {"timer", lsr_add_timer},
                                   {"cancel_timer", lsr_cancel_timer},
                                   {"fd_readable", lsr_fd_readable},
                                   {"error", lsr_new_error},
                                   {NULL, NULL}};

/* Connections first (they may hold timers and the loop's sockets), then
 * the loop; nothing of ours runs after this returns. Never calls Lua. */
static int lsr_loop_gc(lua_State *L)
{
    lsr_loop *lp = luaL_checkudata(L, 1, LOOP_MT);
    while (lp->conns)
        lsr_conn_release(L, lp->conns, 1);
    while (lp->timers) {
        lsr_timer *t = lp->timers;
        lp->timers = t->next;
        free(t);
    }
    if (lp->loop) {
        sr_loop_free(lp->loop);
        lp->loop = NULL;
    }
    lp->T = NULL;
    return 0;
}

void lsr_loop_register(lua_State *L)
{
    if (luaL_newmetatable(L, LOOP_MT)) {
        lua_pushcfunction(L, lsr_loop_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
}

/* The loop sentinel of this lua_State, created on first require. */
void lsr_push_loop(lua_State *L)
{
    lsr_loop *lp;
    sr_error err;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &lsr_loop_key) == LUA_TUSERDATA) return;
    lua_pop(L, 1);
    lp = lua_newuserdatauv(L, sizeof *lp, 2);
    memset(lp, 0, sizeof *lp);
    luaL_setmetatable(L, LOOP_MT);
    lua_newtable(L);
    lua_setiuservalue(L, -2, LOOP_UV_TIMERS);
    lsr_callback_thread_new(L, lp, -1);
    memset(&err, 0, sizeof err);
    lp->loop = sr_loop_new(&err);
    if (!lp->loop) {
        lsr_push_sr_error(L, &err);
        lua_error(L);
    }
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &lsr_loop_key);
}
