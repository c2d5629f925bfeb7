/*
 * lconn.c - the "signalr.Connection" userdata: its methods, the records of
 * its outstanding calls, and its end (close, __close and __gc share
 * lsr_conn_release; __gc never calls Lua).
 *
 * Every sr_* call that may call back synchronously runs between LSR_ENTER
 * and LSR_LEAVE, and nothing in between raises.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsr.h"

const char lsr_weak_key = 'w';

/* The methods have the metatable as their upvalue: comparing with it is a
 * fraction of luaL_checkudata, which looks the metatable up by name (a
 * string made and hashed per call). Anything else, and the metamethods,
 * which have no upvalue, go the standard way (and its error). */
lsr_conn *lsr_check_conn(lua_State *L)
{
    void *p = lua_touserdata(L, 1);
    if (p && lua_getmetatable(L, 1)) {
        int ours = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
        if (ours) return p;
    }
    return luaL_checkudata(L, 1, CONN_MT);
}

static lsr_conn *open_conn(lua_State *L)
{
    lsr_conn *c = lsr_check_conn(L);
    if (!c->conn) lsr_raise_error(L, "closed", "the connection was closed");
    return c;
}

/* Make the new connection c (userdata at ud) reachable from callbacks and
 * from its loop. */
void lsr_conn_link(lua_State *L, lsr_loop *lp, lsr_conn *c, int ud)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &lsr_weak_key);
    lua_pushvalue(L, ud);
    lua_rawsetp(L, -2, c);
    lua_pop(L, 1);
    c->lp = lp;
    c->next = lp->conns;
    if (lp->conns) lp->conns->prev = c;
    lp->conns = c;
}

/* Unlink and free the record of a call the core is done with. */
void lsr_pending_free(lsr_conn *c, lsr_pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        c->pending = p->next;
    if (p->next) p->next->prev = p->prev;
    c->npending--;
    free(p);
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
            lsr_pending_free(c, p);
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

/* Free what the core will no longer call back with; never calls Lua when
 * from_gc. The connection must be unlinked before Lua may run again. */
void lsr_conn_release(lua_State *L, lsr_conn *c, int from_gc)
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
            LSR_ENTER(lp);
            sr_conn_free(conn);
            LSR_LEAVE(lp);
        }
    }
    while (c->pending)
        lsr_pending_free(c, c->pending);
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
        lua_rawgetp(L, LUA_REGISTRYINDEX, &lsr_weak_key);
        lua_pushnil(L);
        lua_rawsetp(L, -2, c);
        lua_pop(L, 1);
        lsr_ref_drop(L, c);
    }
}

static int lsr_conn_gc(lua_State *L)
{
    lsr_conn *c = luaL_checkudata(L, 1, CONN_MT);
    lsr_conn_release(L, c, 1);
    return 0;
}

/* conn:close() and __close: free the connection now. Outstanding
 * start/stop/invoke functions get a "closed" error (the core drops them
 * without calling back). Idempotent; __gc shares lsr_conn_release. */
static int lsr_conn_close(lua_State *L)
{
    lsr_conn *c = lsr_check_conn(L);
    lsr_loop *lp = c->lp;
    int list, i, n = 0;
    lua_settop(L, 1);
    if (!lp) return 0;
    lsr_conn_release(L, c, 0);
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
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        lsr_callback_orphan(lp, L, -1);
        lua_pop(L, 1);
    }
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
        return lsr_raise_error(L, "closed", "%s: the connection was lost", what);
    if (rc == SR_ECLOSED)
        return lsr_raise_error(L, "closed", "%s: the connection is %s, not connected", what,
                               state_of(c));
    if (rc == SR_EUSAGE && !target)
        return lsr_raise_error(L, "usage", "%s: the connection is %s", what, state_of(c));
    if (rc == SR_EUSAGE)
        return lsr_raise_error(L, "usage", "%s: the arguments could not be encoded", what);
    return lsr_raise_code(L, rc, what);
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
        if (!p) return lsr_raise_error(L, "transport", "out of memory");
        key = p->key;
    }
    take_ref(L, c);
    {
        LSR_ENTER(lp);
        if (stop)
            rc = sr_conn_stop(c->conn, p ? lsr_on_done : NULL, p);
        else
            rc = sr_conn_start(c->conn, lsr_on_done, p);
        LSR_LEAVE(lp);
    }
    if (rc != SR_OK && p) pending_drop(L, c, key);
    if (lp->depth == 0) lsr_sync_refs(L, lp);
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
static void attach_channels(lua_State *L, lsr_conn *c, const lsr_channels *ch)
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
    lsr_channels ch;
    lsr_pending *p;
    lua_Integer key;
    uint64_t id = 0;
    int rc;
    luaL_checktype(L, 3, LUA_TFUNCTION);
    if (kind == SR_CALL_STREAM) luaL_checktype(L, 4, LUA_TFUNCTION);
    args = lsr_check_args(L, lp, done + 1, lua_gettop(L), c->json, &ch);
    p = pending_new(L, c, done);
    if (!p) {
        sr_value_free(args);
        return lsr_raise_error(L, "transport", "out of memory");
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
        LSR_ENTER(lp);
        rc = sr_conn_call(c->conn, kind, target, args, (size_t)ch.n, ch.ids,
                          kind == SR_CALL_STREAM ? lsr_on_item : NULL, lsr_on_done, p, &id);
        LSR_LEAVE(lp);
    }
    sr_value_free(args);
    if (rc != SR_OK) {
        pending_drop(L, c, key);
        if (lp->depth == 0) lsr_sync_refs(L, lp);
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

/* The completion of a blocking invoke, kept in the C frame that waits for
 * it: copied out of the callback (its values live only that long) and made
 * Lua values once the wait is over, on the caller's own thread. */
typedef struct sync_call {
    int done;
    int failed; /* err holds the reason */
    sr_error err;
    sr_value *result;
} sync_call;

static void on_sync_done(void *ud, const sr_error *err, const sr_value *result)
{
    sync_call *w = ud;
    w->done = 1;
    if (err) {
        w->failed = 1;
        w->err = *err;
    } else if (!(w->result = sr_value_copy(result))) {
        w->failed = 1;
        w->err.code = SR_ENOMEM;
        w->err.status = 0;
        snprintf(w->err.message, sizeof w->err.message, "out of memory taking the result");
    }
}

/* Convert the arguments (slot 3 on), make the call and tell its channels
 * their streams: 1 once sent, 0 when the send buffer is full (nothing was
 * sent); any other refusal raises. */
static int call_now(lua_State *L, lsr_conn *c, sr_call_kind kind, sr_done_fn done, void *ud)
{
    lsr_loop *lp = c->lp;
    const char *target = luaL_checkstring(L, 2);
    lsr_channels ch;
    sr_value *args = lsr_check_args(L, lp, 3, lua_gettop(L), c->json, &ch);
    int rc;
    {
        LSR_ENTER(lp);
        rc = sr_conn_call(c->conn, kind, target, args, (size_t)ch.n, ch.ids, NULL, done, ud, NULL);
        LSR_LEAVE(lp);
    }
    sr_value_free(args);
    if (rc == SR_EFULL) return 0;
    if (rc != SR_OK) return raise_call(L, c, rc, kind == SR_CALL_SEND ? "send" : "invoke", target);
    attach_channels(L, c, &ch);
    return 1;
}

/* conn:invoke_wait(method, ...) -> true, err, result once the call ended;
 * false when the send buffer is full (nothing sent: the caller waits for
 * room its own way). For a caller that blocks anyway (the main thread): it
 * pumps events here until its own completion came, as conn:invoke with a
 * done function and core.poll would, without a Lua function, a pending
 * slot and a callback for the answer (about a sixth of a round trip's
 * user-space work). A conn:close() meanwhile, which frees the core's call
 * without an answer, ends the wait with kind closed, as it fails a done
 * function. */
static int lsr_conn_invoke_wait(lua_State *L)
{
    lsr_conn *c = open_conn(L);
    lsr_loop *lp = c->lp;
    sync_call w;
    int n;
    memset(&w, 0, sizeof w);
    if (!call_now(L, c, SR_CALL_INVOKE, on_sync_done, &w)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    while (!w.done && c->conn)
        lsr_pump(L, lp, -1);
    lua_pushboolean(L, 1);
    if (!w.done) {
        lsr_push_error_obj(L, "closed", "the connection was closed", 0);
        return 2;
    }
    n = lsr_push_answer(L, w.failed ? &w.err : NULL, w.result);
    sr_value_free(w.result);
    return 1 + n;
}

/* conn:send(method, ...) -> true once queued for the transport; false when
 * the send buffer is full (SR_EFULL): wait_writable, then call again. */
static int lsr_conn_send(lua_State *L)
{
    lua_pushboolean(L, call_now(L, open_conn(L), SR_CALL_SEND, NULL, NULL));
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
    v = lsr_check_value(L, c->lp, 3, c->json);
    if (!v) return lsr_raise_error(L, "usage", "channel item: %s", c->lp->enc.msg);
    rc = sr_conn_upload_write(c->conn, id, v);
    sr_value_free(v);
    if (rc == SR_EFULL) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (rc == SR_EUSAGE) return lsr_raise_error(L, "usage", "channel: write after close");
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
    if (rc == SR_EUSAGE) return lsr_raise_error(L, "usage", "channel: closed twice");
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
    lsr_conn *c = lsr_check_conn(L);
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
        v = lsr_check_value(L, c->lp, 4, c->json);
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
    lsr_conn *c = lsr_check_conn(L);
    if (c->conn) sr_conn_pause(c->conn);
    return 0;
}

static int lsr_conn_resume(lua_State *L)
{
    lsr_conn *c = lsr_check_conn(L);
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
    if (!p) return lsr_raise_error(L, "transport", "out of memory");
    key = p->key;
    take_ref(L, c);
    {
        LSR_ENTER(lp);
        rc = sr_conn_wait_writable(c->conn, lsr_on_done, p);
        LSR_LEAVE(lp);
    }
    if (rc != SR_OK) pending_drop(L, c, key);
    if (lp->depth == 0) lsr_sync_refs(L, lp);
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
        LSR_ENTER(lp);
        rc = sr_conn_cancel(c->conn, id);
        LSR_LEAVE(lp);
    }
    if (lp->depth == 0) lsr_sync_refs(L, lp);
    lua_pushboolean(L, rc == SR_OK);
    return 1;
}

static int lsr_conn_state(lua_State *L)
{
    lua_pushstring(L, state_of(lsr_check_conn(L)));
    return 1;
}

static int lsr_conn_connection_id(lua_State *L)
{
    lsr_conn *c = lsr_check_conn(L);
    const char *id = c->conn ? sr_conn_connection_id(c->conn) : NULL;
    if (id)
        lua_pushstring(L, id);
    else
        lua_pushnil(L);
    return 1;
}

static int set_callback(lua_State *L, int fn)
{
    lsr_check_conn(L);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    lua_getiuservalue(L, 1, UV_CALLBACKS);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, fn);
    return 0;
}

/* fn(target, args...): a call from the server; null arguments are nil */
static int lsr_conn_on_invocation(lua_State *L)
{
    return set_callback(L, LSR_FN_INVOCATION);
}

/* fn(id, target, ...): a server's call that waits for a result; the
 * answer goes back with conn:complete(id, ...) */
static int lsr_conn_on_result(lua_State *L)
{
    return set_callback(L, LSR_FN_RESULT);
}

/* fn(err): closed for good; err is nil after stop */
static int lsr_conn_on_close(lua_State *L)
{
    return set_callback(L, LSR_FN_CLOSE);
}

/* fn(old_state, new_state) */
static int lsr_conn_on_state(lua_State *L)
{
    return set_callback(L, LSR_FN_STATE);
}

/* fn(err): a connection loss started automatic reconnection */
static int lsr_conn_on_reconnecting(lua_State *L)
{
    return set_callback(L, LSR_FN_RECONNECTING);
}

/* fn(connection_id): reconnected; the id is nil with skip_negotiation */
static int lsr_conn_on_reconnected(lua_State *L)
{
    return set_callback(L, LSR_FN_RECONNECTED);
}

static int lsr_conn_tostring(lua_State *L)
{
    lsr_conn *c = lsr_check_conn(L);
    lua_pushfstring(L, CONN_MT " (%s): %p", state_of(c), (void *)c);
    return 1;
}

static const luaL_Reg conn_methods[] = {{"start", lsr_conn_start},
                                        {"stop", lsr_conn_stop},
                                        {"invoke", lsr_conn_invoke},
                                        {"invoke_wait", lsr_conn_invoke_wait},
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
                                        {"take_call", lsr_conn_take_call},
                                        {"on_result", lsr_conn_on_result},
                                        {"on_close", lsr_conn_on_close},
                                        {"on_state", lsr_conn_on_state},
                                        {"on_reconnecting", lsr_conn_on_reconnecting},
                                        {"on_reconnected", lsr_conn_on_reconnected},
                                        {"wait_writable", lsr_conn_wait_writable},
                                        {"close", lsr_conn_close},
                                        {NULL, NULL}};

/* The Connection metatable, and the weak table from C pointers back to
 * connections (shared by every require in this lua_State). */
void lsr_conn_register(lua_State *L)
{
    if (luaL_newmetatable(L, CONN_MT)) {
        luaL_newlibtable(L, conn_methods);
        lua_pushvalue(L, -2); /* the metatable, the methods' upvalue */
        luaL_setfuncs(L, conn_methods, 1);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, lsr_conn_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, lsr_conn_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, lsr_conn_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &lsr_weak_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "v");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &lsr_weak_key);
    } else {
        lua_pop(L, 1);
    }
}
