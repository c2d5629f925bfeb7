/*
 * loptions.c - core.connection(opts): reads and checks the option table,
 * builds the core's sr_options and the Connection userdata. An option of
 * the wrong type or value is a usage error naming it; the core's own
 * refusals are reported the same way.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lsr.h"

static void opt_type_error(lua_State *L, const char *name, const char *want)
{
    lsr_raise_error(L, "usage", "option '%s' must be %s, not %s", name, want, luaL_typename(L, -1));
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
        if (!(s >= 0)) lsr_raise_error(L, "usage", "option '%s' must not be negative", name);
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
        if (i < 0) lsr_raise_error(L, "usage", "option '%s' must not be negative", name);
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
            lsr_raise_error(L, "usage", "option 'headers' must map header names to string values");
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
    for (i = 0; lsr_level_names[i]; i++)
        if (strcmp(lsr_level_names[i], s) == 0) return (sr_log_level)i;
    lsr_raise_error(L, "usage", "unknown log level '%s'", s);
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
    if (n > 100000) lsr_raise_error(L, "usage", "option 'reconnect' has too many delays");
    d = lua_newuserdatauv(L, (n ? (size_t)n : 1) * sizeof *d, 0);
    lua_replace(L, -2); /* the scratch takes the table's slot; the table stays in opts */
    lua_getfield(L, t, "reconnect");
    for (i = 1; i <= n; i++) {
        lua_Number s;
        lua_rawgeti(L, -1, (lua_Integer)i);
        if (lua_type(L, -1) != LUA_TNUMBER)
            lsr_raise_error(L, "usage",
                            "option 'reconnect': delay %d must be a number of seconds, not %s",
                            (int)i, luaL_typename(L, -1));
        s = lua_tonumber(L, -1);
        if (!(s >= 0) || isinf(s))
            lsr_raise_error(L, "usage", "option 'reconnect': delay %d must be a finite number >= 0",
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
    if (has_token_fn) SET("access_token", sr_options_set_access_token_fn(o, lsr_access_token, c));
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
        SET("log", sr_options_set_log(o, co->log_level, lsr_log_sink, c));
    else
        SET("log", sr_options_set_log(o, SR_LOG_NONE, NULL, NULL));
    if (co->reconnect.mode == 2) {
        SET("reconnect", sr_options_set_reconnect_policy(o, lsr_retry_policy, c));
    } else if (co->reconnect.mode == 1 && co->reconnect.delays_ms && co->reconnect.ndelays == 0) {
        SET("reconnect", sr_options_set_reconnect_policy(o, lsr_never_retry, NULL));
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
 *   seconds, or a function(ctx) -> seconds or nil; see lsr_retry_policy),
 *   stateful_reconnect (boolean), stateful_buffer_size (bytes). */
int lsr_connection(lua_State *L)
{
    lsr_loop *lp = lsr_live_loop(L);
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
    if (!co.url) return lsr_raise_error(L, "usage", "a hub URL is required");
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
    lua_createtable(L, LSR_FN_MAX, 0);
    if (has_token_fn) {
        lua_getfield(L, 1, "access_token");
        lua_rawseti(L, -2, LSR_FN_ACCESS_TOKEN);
    }
    if (has_log) {
        lua_getfield(L, 1, "log");
        lua_rawseti(L, -2, LSR_FN_LOG);
    }
    if (co.reconnect.mode == 2) {
        lua_getfield(L, 1, "reconnect");
        lua_rawseti(L, -2, LSR_FN_RETRY);
    }
    lua_setiuservalue(L, ud, UV_CALLBACKS);
    lua_newtable(L);
    lua_setiuservalue(L, ud, UV_PENDING);
    lua_newtable(L);
    lua_setiuservalue(L, ud, UV_ITEMS);
    /* linked before sr_conn_new so its log lines reach Lua */
    lsr_conn_link(L, lp, c, ud);
    /* From here to sr_options_free nothing may raise. */
    o = make_options(&co, c, has_token_fn, has_log, &rc, &bad);
    if (!o) {
        lsr_conn_release(L, c, 0);
        if (rc == SR_EUSAGE && bad && strcmp(bad, "protocol") == 0)
            return lsr_raise_error(L, "usage", "unknown hub protocol '%s'", co.protocol);
        if (rc == SR_EUSAGE)
            return lsr_raise_error(L, "usage", "option '%s' has an invalid value", bad ? bad : "?");
        return lsr_raise_code(L, rc, "cannot create the connection");
    }
    {
        LSR_ENTER(lp);
        c->conn = sr_conn_new(lp->loop, o, &err);
        LSR_LEAVE(lp);
    }
    sr_options_free(o);
    if (!c->conn) {
        lsr_conn_release(L, c, 0);
        lsr_push_sr_error(L, &err);
        return lua_error(L);
    }
    lsr_conn_subscribe(c);
    lua_settop(L, ud);
    return 1;
}
