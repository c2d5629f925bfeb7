/*
 * levents.c - what the core calls back with for one connection, as Lua
 * arguments: each callback is a push function (and, for the reconnect
 * policy and the access token, a take function) run by lsr_callback.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsr.h"

/* ------------------------------------------------- calls with an answer */

typedef struct done_args {
    const sr_error *err;
    const sr_value *result;
} done_args;

/* A result that cannot be converted still ends the call: its answer is
 * a protocol error instead. */
int lsr_push_answer(lua_State *L, const sr_error *err, const sr_value *result)
{
    if (err) {
        lsr_push_sr_error(L, err);
        return 1;
    }
    lua_pushnil(L);
    if (lsr_push_converted(L, result, 1, "the result")) return 2;
    lua_remove(L, -2);
    return 1;
}

/* done(err) or done(nil, result) */
static int push_done(lua_State *T, lsr_cb *cb)
{
    const done_args *a = cb->data;
    return lsr_push_answer(T, a->err, a->result);
}

void lsr_on_done(void *ud, const sr_error *err, const sr_value *result)
{
    lsr_pending *p = ud;
    lsr_conn *c = p->c;
    lsr_cb cb = {0};
    done_args a;
    a.err = err;
    a.result = result;
    cb.c = c;
    cb.slot = LSR_CB_DONE;
    cb.key = p->key;
    cb.push = push_done;
    cb.data = &a;
    lsr_pending_free(c, p);
    lsr_callback(c->lp, &cb);
}

/* item(value), or item(nil, err) when the value cannot be converted (the
 * stream then fails rather than skip an item). A null item is signalr.null,
 * not nil: nil would end a for loop. */
static int push_item(lua_State *T, lsr_cb *cb)
{
    if (lsr_push_converted(T, cb->data, 0, "a stream item")) return 1;
    lua_pushnil(T);
    lua_insert(T, -2);
    return 2;
}

void lsr_on_item(void *ud, const sr_value *item)
{
    lsr_pending *p = ud;
    lsr_cb cb = {0};
    cb.c = p->c;
    cb.slot = LSR_CB_ITEM;
    cb.key = p->key;
    cb.push = push_item;
    cb.data = (void *)item;
    lsr_callback(p->c->lp, &cb);
}

/* ------------------------------------------------------ server calls */

typedef struct inv_args {
    const char *target;
    const sr_value *args;
    const char *id; /* the server waits for a result */
    int taken;      /* Lua took charge of the result */
} inv_args;

/* Arguments of one server call a handler can take. Lua passes arguments on
 * the stack, which every Lua bounds (Lua 5.1 at 8,000 slots in a C call),
 * and the call is passed on a few times before it reaches the handler. A
 * real hub sends a handful; more than this is refused, never cut short. */
#define LSR_MAX_SERVER_ARGS 2000

/* invocation(target, ...) for a plain call; result(id, target, ...) for one
 * that waits for a result, which answers through conn:complete. */
static int push_invocation(lua_State *T, lsr_cb *cb)
{
    inv_args *a = cb->data;
    size_t i, n = a->args && sr_value_type(a->args) == SR_ARRAY ? sr_value_len(a->args) : 0;
    luaL_checkstack(T, (int)n + 3, "too many arguments from the server");
    if (a->id) lua_pushstring(T, a->id);
    lua_pushstring(T, a->target);
    for (i = 0; i < n; i++)
        lsr_push_top_value(T, sr_value_at(a->args, i));
    a->taken = a->id != NULL;
    return (int)n + (a->id ? 2 : 1);
}

static int on_invocation(void *ud, sr_conn *conn, const char *target, const sr_value *args,
                         const char *invocation_id)
{
    lsr_conn *c = ud;
    lsr_cb cb = {0};
    inv_args a;
    size_t n = args && sr_value_type(args) == SR_ARRAY ? sr_value_len(args) : 0;
    if (n > LSR_MAX_SERVER_ARGS) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "the server's call to '%.200s' has %zu arguments; handlers take at most %d, so "
                 "it was not delivered",
                 target, n, LSR_MAX_SERVER_ARGS);
        if (c->log_level <= SR_LOG_ERROR) lsr_log(c, SR_LOG_ERROR, msg);
        if (invocation_id) sr_conn_complete(conn, invocation_id, NULL, msg);
        return invocation_id != NULL;
    }
    a.target = target;
    a.args = args;
    a.id = invocation_id;
    a.taken = 0;
    cb.c = c;
    cb.slot = LSR_CB_NAMED;
    cb.fn = invocation_id ? LSR_FN_RESULT : LSR_FN_INVOCATION;
    cb.push = push_invocation;
    cb.data = &a;
    if (!invocation_id && c->lp) {
        int outer = c->pull_run;
        c->pull_run = c->lp->running + 1; /* run() counts this callback */
        lsr_callback(c->lp, &cb);
        c->pull_run = outer;
        return 0;
    }
    lsr_callback(c->lp, &cb);
    /* An error before the Lua side took the call: the core answers. */
    return a.taken;
}

/* c:take_call(target) -> true, args... of the server's next plain call of
 * target, the method being dispatched, when the core has it ready next in
 * the batch (sr_conn_next_call); nothing otherwise. Only from the dispatch
 * of that call itself, never from a callback nested in it. */
int lsr_conn_take_call(lua_State *L)
{
    lsr_conn *c = lsr_check_conn(L);
    const char *target = luaL_checkstring(L, 2);
    const sr_value *args;
    size_t i, n;
    if (!c->conn || !c->pull_run || !c->lp || c->finalizing || c->lp->running != c->pull_run)
        return 0;
    args = sr_conn_next_call(c->conn, target, LSR_MAX_SERVER_ARGS);
    if (!args) return 0;
    n = sr_value_len(args);
    luaL_checkstack(L, (int)n + 1, "too many arguments from the server");
    lua_pushboolean(L, 1);
    for (i = 0; i < n; i++)
        lsr_push_top_value(L, sr_value_at(args, i));
    return (int)n + 1;
}

/* ------------------------------------------------------------- events */

/* An event's arguments: err first when there is one, otherwise each is
 * the string str[i] (nil where that is NULL). */
typedef struct event_args {
    int nargs;
    const sr_error *err;
    const char *str[2];
} event_args;

static int push_event(lua_State *T, lsr_cb *cb)
{
    const event_args *a = cb->data;
    int i;
    for (i = 0; i < a->nargs; i++) {
        if (i == 0 && a->err)
            lsr_push_sr_error(T, a->err);
        else
            lua_pushstring(T, a->str[i]); /* nil for NULL */
    }
    return a->nargs;
}

static void event(lsr_conn *c, int fn, int nargs, const sr_error *err, const char *s1,
                  const char *s2)
{
    lsr_cb cb = {0};
    event_args a;
    a.nargs = nargs;
    a.err = err;
    a.str[0] = s1;
    a.str[1] = s2;
    cb.c = c;
    cb.slot = LSR_CB_NAMED;
    cb.fn = fn;
    cb.push = push_event;
    cb.data = &a;
    lsr_callback(c->lp, &cb);
}

/* close(err): closed for good; err is nil after stop */
static void on_close(void *ud, sr_conn *conn, const sr_error *err)
{
    (void)conn;
    event(ud, LSR_FN_CLOSE, 1, err, NULL, NULL);
}

/* state(old_state, new_state) */
static void on_state(void *ud, sr_conn *conn, sr_state from, sr_state to)
{
    (void)conn;
    event(ud, LSR_FN_STATE, 2, NULL, sr_state_name(from), sr_state_name(to));
}

/* reconnecting(err): a connection loss started automatic reconnection */
static void on_reconnecting(void *ud, sr_conn *conn, const sr_error *err)
{
    (void)conn;
    event(ud, LSR_FN_RECONNECTING, 1, err, NULL, NULL);
}

/* reconnected(connection_id): the id is nil with skip_negotiation */
static void on_reconnected(void *ud, sr_conn *conn, const char *connection_id)
{
    (void)conn;
    event(ud, LSR_FN_RECONNECTED, 1, NULL, connection_id, NULL);
}

void lsr_conn_subscribe(lsr_conn *c)
{
    sr_conn_on_invocation(c->conn, on_invocation, c);
    sr_conn_on_close(c->conn, on_close, c);
    sr_conn_on_state(c->conn, on_state, c);
    sr_conn_on_reconnecting(c->conn, on_reconnecting, c);
    sr_conn_on_reconnected(c->conn, on_reconnected, c);
}

/* The core's log sink. */
void lsr_log_sink(void *ud, sr_log_level level, const char *message)
{
    if (level >= SR_LOG_NONE) return;
    lsr_log(ud, level, message);
}

/* --------------------------------------------------- reconnect policy */

typedef struct retry_args {
    const sr_retry_context *ctx;
    double delay_ms; /* stays negative unless the policy gave a valid delay */
} retry_args;

/* retry({previous_retry_count, elapsed, retry_reason}) -> seconds or nil */
static int push_retry(lua_State *T, lsr_cb *cb)
{
    const sr_retry_context *ctx = ((const retry_args *)cb->data)->ctx;
    lua_createtable(T, 0, 3);
    lua_pushinteger(T, (lua_Integer)ctx->previous_retry_count);
    lua_setfield(T, -2, "previous_retry_count");
    lua_pushnumber(T, (lua_Number)(ctx->elapsed_ms / 1000.0));
    lua_setfield(T, -2, "elapsed");
    if (ctx->retry_reason) {
        lsr_push_sr_error(T, ctx->retry_reason);
        lua_setfield(T, -2, "retry_reason");
    }
    return 1;
}

static void take_retry(lua_State *T, lsr_cb *cb)
{
    retry_args *a = cb->data;
    lua_Number s;
    if (lua_isnil(T, -1)) return;
    if (lua_type(T, -1) != LUA_TNUMBER)
        luaL_error(T,
                   "the reconnect policy returned a %s, not a number of seconds or nil; not "
                   "reconnecting",
                   luaL_typename(T, -1));
    s = lua_tonumber(T, -1);
    if (!(s >= 0) || isinf(s))
        luaL_error(T,
                   "the reconnect policy returned %f, not a number of seconds >= 0 or nil; not "
                   "reconnecting",
                   (double)s);
    a->delay_ms = (double)s * 1000.0;
}

/* The core's sr_retry_fn: the Lua policy, which never raises into the core.
 * Any error or invalid answer is logged and stops reconnecting. */
double lsr_retry_policy(void *ud, const sr_retry_context *ctx)
{
    lsr_conn *c = ud;
    lsr_cb cb = {0};
    retry_args a;
    a.ctx = ctx;
    a.delay_ms = -1;
    cb.c = c;
    cb.slot = LSR_CB_NAMED;
    cb.fn = LSR_FN_RETRY;
    cb.push = push_retry;
    cb.nresults = 1;
    cb.take = take_retry;
    cb.fail_prefix = "the reconnect policy failed, not reconnecting";
    cb.data = &a;
    lsr_callback(c->lp, &cb);
    return a.delay_ms;
}

/* An empty list of delays: the official clients never retry then (the core
 * reads no delays as its default list, so it cannot say this with delays). */
double lsr_never_retry(void *ud, const sr_retry_context *ctx)
{
    (void)ud;
    (void)ctx;
    return -1;
}

/* ------------------------------------------------------- access token */

static void take_token(lua_State *T, lsr_cb *cb)
{
    char **token = cb->data;
    const char *s;
    size_t len;
    if (lua_isnil(T, -1)) return;
    if (lua_type(T, -1) != LUA_TSTRING)
        luaL_error(T, "the access token function returned a %s, not a string",
                   luaL_typename(T, -1));
    s = lua_tolstring(T, -1, &len);
    *token = malloc(len + 1);
    if (*token) memcpy(*token, s, len + 1);
}

/* Called by the core before each negotiate/connect. An error is logged and
 * the request goes without a token. */
char *lsr_access_token(void *ud)
{
    lsr_conn *c = ud;
    lsr_cb cb = {0};
    char *token = NULL;
    cb.c = c;
    cb.slot = LSR_CB_NAMED;
    cb.fn = LSR_FN_ACCESS_TOKEN;
    cb.nresults = 1;
    cb.take = take_token;
    cb.data = &token;
    lsr_callback(c->lp, &cb);
    return token;
}
