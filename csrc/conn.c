/*
 * conn.c - the connection: its state machine, negotiate, transport choice,
 * handshake, invocation bookkeeping and the dispatch of hub messages.
 *
 * Everything here runs on the host thread: entry points are the public
 * sr_conn_* calls and the upcalls that sr_loop_dispatch delivers (HTTP done,
 * transport open/data/close, timers). Each upcall holds a reference on the
 * connection so a user callback may free it; after every user callback the
 * code checks c->dead and unwinds.
 *
 * The only function that changes c->state is set_state().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "framing.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "negotiate.h"
#include "options.h"
#include "pending.h"
#include "protocol.h"
#include "transport.h"

#define MAX_REDIRECTS 100
#define STOP_TIMEOUT_MS 5000.0
#define DEFAULT_MAX_MESSAGE (16u << 20)

typedef struct waiter {
    sr_done_fn fn;
    void *ud;
} waiter;

struct sr_conn {
    sr_loop *loop;
    int refs; /* the user's reference + one per upcall in progress */
    int dead; /* sr_conn_free was called */

    /* configuration (owned copies) */
    char *url;  /* current hub URL (a negotiate redirect replaces it) */
    char *url0; /* the URL the user gave; each start begins here */
    int transports;
    int skip_negotiation;
    const sr_protocol *protocol;
    sr_header *headers;
    size_t nheaders;
    char *access_token;
    char *(*token_fn)(void *ud);
    void *token_ud;
    int tls_no_verify;
    char *ca_file, *cert_file, *key_file, *proxy;
    double server_timeout_ms, keepalive_ms, handshake_timeout_ms;
    size_t max_message_size;
    sr_logger log;

    /* connection */
    sr_state state;
    char *connection_id;
    char *connection_token;
    char *redirect_token; /* bearer token from a negotiate redirect */
    int redirects;
    sr_http_req *negotiate_req;
    sr_transport *tp;
    sr_transport_new_fn ws_new; /* sr__ws_transport_new unless a test replaced it */
    int handshake_done;
    int closing;    /* the end is decided; no new invocations */
    sr_buf in;      /* received bytes not yet parsed */
    size_t scanned; /* text protocols: leading bytes of `in` known to hold no separator */
    sr_buf enc;     /* scratch for encoding */
    sr_buf ping;    /* the protocol's Ping, framed */
    uint64_t next_id;
    sr_pending pending;
    uint64_t stop_timer;

    waiter start_waiter;
    waiter *stop_waiters;
    size_t nstop_waiters;

    sr_invocation_fn on_invocation;
    void *on_invocation_ud;
    sr_close_fn on_close;
    void *on_close_ud;
    sr_state_fn on_state;
    void *on_state_ud;
};

static void finish_close(sr_conn *c, const sr_error *err);
static void start_negotiate(sr_conn *c);

/* ------------------------------------------------------------- helpers */

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void set_err(sr_error *err, int code, long status, const char *fmt, const char *arg)
{
    if (!err) return;
    err->code = code;
    err->status = status;
    snprintf(err->message, sizeof err->message, fmt, arg ? arg : "");
}

static void hold(sr_conn *c)
{
    c->refs++;
}

static void destroy(sr_conn *c);

/* Drop a reference; returns 1 when the connection is gone. */
static int release(sr_conn *c)
{
    if (--c->refs == 0) {
        destroy(c);
        return 1;
    }
    return 0;
}

static void set_state(sr_conn *c, sr_state to)
{
    sr_state from = c->state;
    if (from == to) return;
    c->state = to;
    sr__logf(&c->log, SR_LOG_DEBUG, "state: %s -> %s", sr_state_name(from), sr_state_name(to));
    if (c->on_state && !c->dead) c->on_state(c->on_state_ud, c, from, to);
}

static char *bearer(sr_conn *c)
{
    char *tok = NULL, *h;
    if (c->redirect_token) {
        tok = strdup(c->redirect_token);
    } else if (c->token_fn) {
        tok = c->token_fn(c->token_ud);
    } else if (c->access_token) {
        tok = strdup(c->access_token);
    }
    if (!tok || !*tok) {
        free(tok);
        return NULL;
    }
    h = malloc(strlen(tok) + 8);
    if (h) sprintf(h, "Bearer %s", tok);
    free(tok);
    return h;
}

/* The user's headers plus Authorization; *auth keeps the token alive. */
static sr_header *request_headers(sr_conn *c, char **auth, size_t *n)
{
    sr_header *h = calloc(c->nheaders + 1, sizeof *h);
    if (!h) return NULL;
    if (c->nheaders) memcpy(h, c->headers, c->nheaders * sizeof *h);
    *n = c->nheaders;
    *auth = bearer(c);
    if (*auth) {
        h[*n].name = "Authorization";
        h[*n].value = *auth;
        (*n)++;
    }
    return h;
}

/* ----------------------------------------------------------- transport */

static void tp_on_open(void *ud, sr_transport *tp)
{
    sr_conn *c = ud;
    (void)tp;
    sr__logf(&c->log, SR_LOG_DEBUG, "%s transport open; handshake sent", sr__transport_name(tp));
}

static void fail_start(sr_conn *c, const sr_error *err)
{
    finish_close(c, err);
}

/* Close the transport with a local error (protocol error, ...). */
static void abort_with(sr_conn *c, const sr_error *err)
{
    sr__logf(&c->log, SR_LOG_ERROR, "closing the connection: %s", err->message);
    finish_close(c, err);
}

static void complete_invocation(sr_conn *c, sr_msg *m)
{
    sr_pending_entry e;
    char *end;
    uint64_t id = strtoull(m->invocation_id, &end, 10);
    if (*end || !sr__pending_take(&c->pending, id, &e)) {
        sr__logf(&c->log, SR_LOG_WARNING, "Completion for unknown invocation id '%s' ignored",
                 m->invocation_id);
        return;
    }
    if (m->error) {
        sr_error err;
        set_err(&err, SR_EHUB, 0, "%s", m->error);
        e.done(e.ud, &err, NULL);
    } else {
        e.done(e.ud, NULL, m->has_result ? m->result : NULL);
    }
}

static void answer_client_result(sr_conn *c, const char *invocation_id)
{
    /* Client results come with streams in a later step; until then answer
     * as the official clients do when no handler returns a result, so the
     * server's call does not hang. */
    sr_msg r;
    memset(&r, 0, sizeof r);
    r.type = SR_MSG_COMPLETION;
    r.invocation_id = (char *)invocation_id;
    r.error = (char *)"Client didn't provide a result.";
    sr__buf_reset(&c->enc);
    if (c->protocol->write(&r, &c->enc, NULL) == SR_OK && c->tp)
        sr__transport_send(c->tp, c->enc.data, c->enc.len);
}

/* Handle one parsed message. Returns 1 if the connection ended. */
static int handle_message(sr_conn *c, sr_msg *m)
{
    switch (m->type) {
    case SR_MSG_COMPLETION:
        complete_invocation(c, m);
        break;
    case SR_MSG_INVOCATION:
        if (SR_LOG_ON(&c->log, SR_LOG_DEBUG))
            sr__logf(&c->log, SR_LOG_DEBUG, "received invocation of '%s'", m->target);
        if (c->on_invocation) {
            c->on_invocation(c->on_invocation_ud, c, m->target, m->arguments);
        } else {
            sr__logf(&c->log, SR_LOG_WARNING, "no handler for the server's call to '%s'",
                     m->target);
        }
        if (!c->dead && m->invocation_id) answer_client_result(c, m->invocation_id);
        break;
    case SR_MSG_PING:
        break;
    case SR_MSG_CLOSE:
        if (m->error) {
            sr_error err;
            set_err(&err, SR_ECLOSED, 0, "Server closed the connection with an error: %s",
                    m->error);
            finish_close(c, &err);
        } else {
            sr__logf(&c->log, SR_LOG_INFORMATION, "the server closed the connection");
            finish_close(c, NULL);
        }
        return 1;
    case SR_MSG_ACK:
    case SR_MSG_SEQUENCE:
        break;
    default:
        sr__logf(&c->log, SR_LOG_WARNING, "message of type %d not supported yet; ignored",
                 (int)m->type);
        break;
    }
    return c->dead || c->state == SR_STATE_DISCONNECTED;
}

static void tp_on_data_body(void *ud, sr_transport *tp, const char *data, size_t len)
{
    sr_conn *c = ud;
    size_t off = 0;
    sr_error err;
    (void)tp;
    if (sr__buf_append(&c->in, data, len) < 0) {
        set_err(&err, SR_ETRANSPORT, 0, "%sout of memory buffering received data", "");
        abort_with(c, &err);
        return;
    }
    if (SR_LOG_ON(&c->log, SR_LOG_TRACE))
        sr__logf(&c->log, SR_LOG_TRACE, "received %zu bytes: %.*s", len,
                 (int)(len > 900 ? 900 : len), data);
    if (!c->handshake_done) {
        int n = sr__handshake_parse(c->in.data, c->in.len, &err);
        if (n == 0) return;
        if (n < 0) {
            if (err.code != SR_EHANDSHAKE) err.code = SR_EHANDSHAKE;
            fail_start(c, &err);
            return;
        }
        off = (size_t)n;
        c->handshake_done = 1;
        sr__logf(&c->log, SR_LOG_INFORMATION, "connected to %s", c->url);
        set_state(c, SR_STATE_CONNECTED);
        if (c->dead || c->state != SR_STATE_CONNECTED) return;
        if (c->start_waiter.fn) {
            waiter w = c->start_waiter;
            c->start_waiter.fn = NULL;
            w.fn(w.ud, NULL, NULL);
            if (c->dead || c->state != SR_STATE_CONNECTED) return;
        }
    }
    /* A large record arrives in many pieces: look for its end only in the
     * new bytes, so receiving it stays linear. */
    if (off == 0 && c->scanned && !c->protocol->binary &&
        !memchr(c->in.data + c->scanned, SR_RECORD_SEPARATOR, c->in.len - c->scanned) &&
        c->in.len <= c->max_message_size) {
        c->scanned = c->in.len;
        return;
    }
    c->scanned = 0;
    while (off < c->in.len) {
        sr_msg m;
        int n;
        memset(&m, 0, sizeof m);
        n = c->protocol->parse(c->in.data + off, c->in.len - off, c->max_message_size, &m, &err);
        if (n == 0) {
            c->scanned = c->in.len - off;
            break;
        }
        if (n < 0) {
            err.code = SR_EPROTOCOL;
            abort_with(c, &err);
            return;
        }
        off += (size_t)n;
        if (handle_message(c, &m)) {
            sr__msg_clear(&m);
            return;
        }
        sr__msg_clear(&m);
    }
    sr__buf_consume(&c->in, off);
}

static void tp_on_close_body(void *ud, sr_transport *tp, const sr_error *err)
{
    sr_conn *c = ud;
    sr_error lost;
    (void)tp;
    if (c->state == SR_STATE_DISCONNECTING) {
        finish_close(c, NULL);
        return;
    }
    if ((!err || err->code == SR_ECLOSED) && c->handshake_done && c->in.len > 0) {
        /* A clean close must not hide a message cut in half. */
        memset(&lost, 0, sizeof lost);
        lost.code = SR_EPROTOCOL;
        snprintf(lost.message, sizeof lost.message,
                 "the server closed the connection in the middle of a message (%zu bytes "
                 "unparsed)",
                 c->in.len);
        err = &lost;
    } else if (!err) {
        set_err(&lost, SR_ECLOSED, 0, "%sthe server closed the connection", "");
        err = &lost;
    } else if (c->state == SR_STATE_CONNECTED) {
        sr__logf(&c->log, SR_LOG_ERROR, "connection lost: %s", err->message);
    }
    finish_close(c, err);
}

/* Upcall wrappers: hold the connection so a user callback may free it. */
static void tp_on_data(void *ud, sr_transport *tp, const char *data, size_t len)
{
    sr_conn *c = ud;
    hold(c);
    tp_on_data_body(c, tp, data, len);
    release(c);
}

static void tp_on_close(void *ud, sr_transport *tp, const sr_error *err)
{
    sr_conn *c = ud;
    hold(c);
    tp_on_close_body(c, tp, err);
    release(c);
}

static const sr_transport_upcalls tp_upcalls = {tp_on_open, tp_on_data, tp_on_close, NULL};

static void open_websocket(sr_conn *c)
{
    sr_transport_cfg cfg;
    sr_buf hs = SR_BUF_INIT;
    sr_error err;
    char *auth = NULL, *url;
    size_t nh = 0;
    sr_header *h;

    url = sr__transport_url(c->url, c->skip_negotiation ? NULL : c->connection_token, 1);
    h = request_headers(c, &auth, &nh);
    if (!url || !h || sr__handshake_write(c->protocol->name, c->protocol->version, &hs) < 0) {
        set_err(&err, SR_ENOMEM, 0, "%sout of memory opening the transport", "");
        goto fail;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.url = url;
    cfg.headers = h;
    cfg.nheaders = nh;
    cfg.binary = c->protocol->binary;
    cfg.tls_no_verify = c->tls_no_verify;
    cfg.ca_file = c->ca_file;
    cfg.cert_file = c->cert_file;
    cfg.key_file = c->key_file;
    cfg.proxy = c->proxy;
    cfg.handshake = hs.data;
    cfg.handshake_len = hs.len;
    cfg.ping = c->ping.data;
    cfg.ping_len = c->ping.len;
    cfg.keepalive_ms = c->keepalive_ms;
    cfg.server_timeout_ms = c->server_timeout_ms;
    cfg.handshake_timeout_ms = c->handshake_timeout_ms;
    sr__logf(&c->log, SR_LOG_DEBUG, "opening WebSockets transport");
    memset(&err, 0, sizeof err);
    c->handshake_done = 0;
    c->scanned = 0;
    sr__buf_reset(&c->in);
    c->tp = c->ws_new(c->loop, &cfg, &tp_upcalls, c, &err);
    if (!c->tp) goto fail;
    free(url);
    free(h);
    free(auth);
    sr__buf_free(&hs);
    return;
fail:
    free(url);
    free(h);
    free(auth);
    sr__buf_free(&hs);
    if (!err.code) err.code = SR_ETRANSPORT;
    fail_start(c, &err);
}

/* ----------------------------------------------------------- negotiate */

static void negotiate_done_body(void *ud, long status, const char *body, size_t len,
                                const sr_error *herr)
{
    sr_conn *c = ud;
    sr_negotiation n;
    sr_error err;
    c->negotiate_req = NULL;
    if (herr) {
        err = *herr;
        if (err.code != SR_ETIMEOUT) err.code = SR_ETRANSPORT;
        {
            char msg[sizeof err.message];
            snprintf(msg, sizeof msg, "negotiate request failed: %.400s", herr->message);
            memcpy(err.message, msg, sizeof msg);
        }
        fail_start(c, &err);
        return;
    }
    if (status != 200) {
        memset(&err, 0, sizeof err);
        err.code = SR_ENEGOTIATE;
        err.status = status;
        snprintf(err.message, sizeof err.message,
                 "negotiate failed: the server answered HTTP %ld%s", status,
                 status == 404   ? " (Not Found: is the hub URL right?)"
                 : status == 401 ? " (Unauthorized)"
                                 : "");
        fail_start(c, &err);
        return;
    }
    memset(&n, 0, sizeof n);
    memset(&err, 0, sizeof err);
    if (sr__negotiate_parse(body, len, &n, &err) != SR_OK) {
        err.code = SR_ENEGOTIATE;
        err.status = status;
        fail_start(c, &err);
        return;
    }
    if (n.redirect_url) {
        if (++c->redirects > MAX_REDIRECTS) {
            sr__negotiation_clear(&n);
            set_err(&err, SR_ENEGOTIATE, status, "%snegotiate redirected too many times", "");
            fail_start(c, &err);
            return;
        }
        sr__logf(&c->log, SR_LOG_DEBUG, "negotiate redirected to %s", n.redirect_url);
        free(c->url);
        c->url = n.redirect_url;
        n.redirect_url = NULL;
        if (n.access_token) {
            free(c->redirect_token);
            c->redirect_token = n.access_token;
            n.access_token = NULL;
        }
        sr__negotiation_clear(&n);
        start_negotiate(c);
        return;
    }
    free(c->connection_id);
    free(c->connection_token);
    c->connection_id = n.connection_id;
    c->connection_token = n.connection_token ? n.connection_token : dupstr(n.connection_id);
    n.connection_id = n.connection_token = NULL;
    {
        int offered = c->protocol->binary ? n.transports_binary : n.transports;
        int usable = offered & c->transports;
        sr__negotiation_clear(&n);
        if (usable & SR_TRANSPORT_WEBSOCKETS) {
            open_websocket(c);
            return;
        }
        set_err(&err, SR_ETRANSPORT, 0,
                "%sunable to connect: none of the requested transports is available on the "
                "server (this build supports WebSockets)",
                "");
        fail_start(c, &err);
    }
}

static void negotiate_done(void *ud, long status, const char *body, size_t len,
                           const sr_error *herr)
{
    sr_conn *c = ud;
    hold(c);
    negotiate_done_body(c, status, body, len, herr);
    release(c);
}

static void start_negotiate(sr_conn *c)
{
    sr_http_opts o;
    sr_error err;
    char *auth = NULL;
    size_t nh = 0;
    sr_header *h = request_headers(c, &auth, &nh);
    char *url = sr__negotiate_url(c->url, 0);
    memset(&err, 0, sizeof err);
    if (!h || !url) {
        set_err(&err, SR_ENOMEM, 0, "%sout of memory", "");
    } else {
        memset(&o, 0, sizeof o);
        o.method = "POST";
        o.url = url;
        o.headers = h;
        o.nheaders = nh;
        o.tls_no_verify = c->tls_no_verify;
        o.ca_file = c->ca_file;
        o.cert_file = c->cert_file;
        o.key_file = c->key_file;
        o.proxy = c->proxy;
        o.timeout_ms = 100000;
        sr__logf(&c->log, SR_LOG_DEBUG, "negotiating with %s", c->url);
        c->negotiate_req = sr__http_request(c->loop, &o, negotiate_done, c, &err);
    }
    free(url);
    free(h);
    free(auth);
    if (!c->negotiate_req) {
        if (!err.code) err.code = SR_ETRANSPORT;
        fail_start(c, &err);
    }
}

/* ------------------------------------------------------------- closing */

static void fail_pending(sr_conn *c, const sr_error *cause)
{
    sr_pending old = c->pending;
    sr_error err;
    size_t i;
    memset(&c->pending, 0, sizeof c->pending);
    memset(&err, 0, sizeof err);
    err.code = SR_ECLOSED;
    if (cause)
        snprintf(err.message, sizeof err.message,
                 "Invocation canceled due to the underlying connection being closed: %.400s",
                 cause->message);
    else
        snprintf(err.message, sizeof err.message,
                 "Invocation canceled due to the underlying connection being closed.");
    for (i = 0; i < old.cap; i++) {
        if (old.slots[i].id && !c->dead) old.slots[i].done(old.slots[i].ud, &err, NULL);
    }
    sr__pending_free(&old);
}

static void stop_timer_fired(void *ud)
{
    sr_conn *c = ud;
    c->stop_timer = 0;
    hold(c);
    sr__logf(&c->log, SR_LOG_WARNING, "the transport did not close in time; dropping it");
    finish_close(c, NULL);
    release(c);
}

static void drop_network(sr_conn *c)
{
    if (c->negotiate_req) {
        sr__http_cancel(c->negotiate_req);
        c->negotiate_req = NULL;
    }
    if (c->tp) {
        sr__transport_release(c->tp);
        c->tp = NULL;
    }
    if (c->stop_timer) {
        sr_loop_cancel_timer(c->loop, c->stop_timer);
        c->stop_timer = 0;
    }
}

/* The single way to the end: drop the network, fail what waits, become
 * disconnected, tell the user. err NULL = a clean stop. */
static void finish_close(sr_conn *c, const sr_error *err)
{
    waiter start = c->start_waiter;
    waiter *stops = c->stop_waiters;
    size_t nstops = c->nstop_waiters, i;
    int was_started = c->handshake_done;
    if (c->state == SR_STATE_DISCONNECTED) return;
    c->closing = 1;
    drop_network(c);
    c->start_waiter.fn = NULL;
    c->stop_waiters = NULL;
    c->nstop_waiters = 0;
    if (err && was_started)
        sr__logf(&c->log, SR_LOG_INFORMATION, "connection closed with an error: %s", err->message);
    fail_pending(c, err);
    if (!c->dead) set_state(c, SR_STATE_DISCONNECTED);
    c->handshake_done = 0;
    if (start.fn && !c->dead) {
        sr_error se;
        if (err) {
            se = *err;
        } else {
            set_err(&se, SR_ECANCELED, 0, "%sthe connection was stopped before it was started", "");
        }
        start.fn(start.ud, &se, NULL);
    }
    for (i = 0; i < nstops && !c->dead; i++)
        stops[i].fn(stops[i].ud, NULL, NULL);
    free(stops);
    /* As the official clients: a start that fails raises no close event. */
    if (!c->dead && was_started && c->on_close) c->on_close(c->on_close_ud, c, err);
}

/* ------------------------------------------------------------- public */

sr_conn *sr_conn_new(sr_loop *loop, const sr_options *o, sr_error *err)
{
    sr_conn *c;
    size_t i;
    if (err) memset(err, 0, sizeof *err);
    if (!loop || !o || !o->url || !*o->url) {
        set_err(err, SR_EUSAGE, 0, "%sa hub URL is required", "");
        return NULL;
    }
    if (strncasecmp(o->url, "http://", 7) && strncasecmp(o->url, "https://", 8) &&
        strncasecmp(o->url, "ws://", 5) && strncasecmp(o->url, "wss://", 6)) {
        set_err(err, SR_EUSAGE, 0, "the hub URL must start with http:// or https:// (got '%s')",
                o->url);
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        set_err(err, SR_ENOMEM, 0, "%sout of memory", "");
        return NULL;
    }
    c->loop = loop;
    c->refs = 1;
    c->ws_new = sr__ws_transport_new;
    c->protocol = sr__protocol_find(o->protocol ? o->protocol : "json");
    if (!c->protocol) {
        set_err(err, SR_EUSAGE, 0, "unknown hub protocol '%s'", o->protocol);
        free(c);
        return NULL;
    }
    c->transports = o->transports
                        ? o->transports
                        : (SR_TRANSPORT_WEBSOCKETS | SR_TRANSPORT_SSE | SR_TRANSPORT_LONG_POLLING);
    c->skip_negotiation = o->skip_negotiation;
    if (c->skip_negotiation && c->transports != SR_TRANSPORT_WEBSOCKETS) {
        set_err(err, SR_EUSAGE, 0,
                "%sskip_negotiation needs the WebSockets transport alone (transports = "
                "\"websockets\")",
                "");
        free(c);
        return NULL;
    }
    c->url0 = dupstr(o->url);
    c->access_token = dupstr(o->access_token);
    c->token_fn = o->token_fn;
    c->token_ud = o->token_ud;
    c->tls_no_verify = o->tls_no_verify;
    c->ca_file = dupstr(o->ca_file);
    c->cert_file = dupstr(o->cert_file);
    c->key_file = dupstr(o->key_file);
    c->proxy = dupstr(o->proxy);
    c->server_timeout_ms = o->server_timeout_ms > 0 ? o->server_timeout_ms : 30000;
    c->keepalive_ms = o->keepalive_ms > 0 ? o->keepalive_ms : 15000;
    c->handshake_timeout_ms = o->handshake_timeout_ms > 0 ? o->handshake_timeout_ms : 15000;
    c->max_message_size = o->max_message_size ? o->max_message_size : DEFAULT_MAX_MESSAGE;
    c->log.fn = o->log;
    c->log.ud = o->log_ud;
    c->log.level = o->log_level_set ? o->log_level : SR_LOG_INFORMATION;
    c->state = SR_STATE_DISCONNECTED;
    if (o->nheaders) {
        c->headers = calloc(o->nheaders, sizeof *c->headers);
        if (!c->headers) goto oom;
        c->nheaders = o->nheaders;
        for (i = 0; i < o->nheaders; i++) {
            c->headers[i].name = dupstr(o->headers[i].name);
            c->headers[i].value = dupstr(o->headers[i].value);
            if (!c->headers[i].name || !c->headers[i].value) goto oom;
        }
    }
    {
        sr_msg ping;
        memset(&ping, 0, sizeof ping);
        ping.type = SR_MSG_PING;
        if (c->protocol->write(&ping, &c->ping, NULL) != SR_OK) goto oom;
    }
    if (!c->url0 || (o->access_token && !c->access_token)) goto oom;
    return c;
oom:
    set_err(err, SR_ENOMEM, 0, "%sout of memory", "");
    c->refs = 1;
    release(c);
    return NULL;
}

static void destroy(sr_conn *c)
{
    size_t i;
    drop_network(c);
    for (i = 0; i < c->nheaders; i++) {
        free((char *)c->headers[i].name);
        free((char *)c->headers[i].value);
    }
    free(c->headers);
    free(c->url);
    free(c->url0);
    free(c->access_token);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c->proxy);
    free(c->connection_id);
    free(c->connection_token);
    free(c->redirect_token);
    free(c->stop_waiters);
    sr__pending_free(&c->pending);
    sr__buf_free(&c->in);
    sr__buf_free(&c->enc);
    sr__buf_free(&c->ping);
    free(c);
}

void sr_conn_free(sr_conn *c)
{
    if (!c || c->dead) return;
    c->dead = 1;
    /* No user callback runs from here on (every call site checks dead). */
    c->on_invocation = NULL;
    c->on_close = NULL;
    c->on_state = NULL;
    c->start_waiter.fn = NULL;
    free(c->stop_waiters);
    c->stop_waiters = NULL;
    c->nstop_waiters = 0;
    drop_network(c);
    sr__pending_free(&c->pending);
    c->state = SR_STATE_DISCONNECTED;
    release(c);
}

sr_state sr_conn_state(const sr_conn *c)
{
    return c->state;
}

const char *sr_conn_connection_id(const sr_conn *c)
{
    return c->connection_id;
}

sr_loop *sr_conn_loop(const sr_conn *c)
{
    return c->loop;
}

int sr_conn_start(sr_conn *c, sr_done_fn done, void *ud)
{
    if (c->state != SR_STATE_DISCONNECTED) return SR_EUSAGE;
    free(c->url);
    c->url = strdup(c->url0);
    if (!c->url) return SR_ENOMEM;
    free(c->connection_id);
    free(c->connection_token);
    free(c->redirect_token);
    c->connection_id = c->connection_token = c->redirect_token = NULL;
    c->redirects = 0;
    c->closing = 0;
    c->start_waiter.fn = done;
    c->start_waiter.ud = ud;
    set_state(c, SR_STATE_CONNECTING);
    if (c->dead) return SR_OK;
    hold(c);
    if (c->skip_negotiation)
        open_websocket(c);
    else
        start_negotiate(c);
    release(c);
    return SR_OK;
}

typedef struct deferred_done {
    sr_conn *c;
    waiter w;
} deferred_done;

static void run_deferred_done(void *ud)
{
    deferred_done *d = ud;
    if (!d->c->dead) d->w.fn(d->w.ud, NULL, NULL);
    release(d->c);
    free(d);
}

int sr_conn_stop(sr_conn *c, sr_done_fn done, void *ud)
{
    if (c->state == SR_STATE_DISCONNECTED) {
        /* Already stopped: done still runs later, inside dispatch. */
        if (done) {
            deferred_done *d = malloc(sizeof *d);
            if (!d) return SR_ENOMEM;
            d->c = c;
            d->w.fn = done;
            d->w.ud = ud;
            hold(c);
            if (!sr_loop_add_timer(c->loop, 0, run_deferred_done, d)) {
                release(c);
                free(d);
                return SR_ENOMEM;
            }
        }
        return SR_OK;
    }
    if (done) {
        waiter *w = realloc(c->stop_waiters, (c->nstop_waiters + 1) * sizeof *w);
        if (!w) return SR_ENOMEM;
        c->stop_waiters = w;
        w[c->nstop_waiters].fn = done;
        w[c->nstop_waiters].ud = ud;
        c->nstop_waiters++;
    }
    if (c->state == SR_STATE_DISCONNECTING) return SR_OK;
    hold(c);
    if (c->state == SR_STATE_CONNECTED && c->tp) {
        sr_msg m;
        c->closing = 1;
        set_state(c, SR_STATE_DISCONNECTING);
        if (!c->dead && c->tp) {
            memset(&m, 0, sizeof m);
            m.type = SR_MSG_CLOSE;
            sr__buf_reset(&c->enc);
            if (c->protocol->write(&m, &c->enc, NULL) == SR_OK)
                sr__transport_send(c->tp, c->enc.data, c->enc.len);
            sr__transport_close(c->tp);
            c->stop_timer = sr_loop_add_timer(c->loop, STOP_TIMEOUT_MS, stop_timer_fired, c);
        }
    } else {
        /* Connecting: give up at once. */
        finish_close(c, NULL);
    }
    release(c);
    return SR_OK;
}

static int write_invocation(sr_conn *c, const char *id, const char *target, const sr_value *args)
{
    sr_msg m;
    sr_error err;
    int rc;
    /* NULL arguments are written as [] by the protocol. */
    if (args && sr_value_type(args) != SR_ARRAY) return SR_EUSAGE;
    memset(&m, 0, sizeof m);
    m.type = SR_MSG_INVOCATION;
    m.invocation_id = (char *)id;
    m.target = (char *)target;
    m.arguments = (sr_value *)args;
    sr__buf_reset(&c->enc);
    memset(&err, 0, sizeof err);
    rc = c->protocol->write(&m, &c->enc, &err);
    if (rc != SR_OK) {
        sr__logf(&c->log, SR_LOG_ERROR, "cannot encode the invocation of '%s': %s", target,
                 err.message);
        return rc;
    }
    if (SR_LOG_ON(&c->log, SR_LOG_TRACE))
        sr__logf(&c->log, SR_LOG_TRACE, "sending %zu bytes: %.*s", c->enc.len,
                 (int)(c->enc.len > 900 ? 900 : c->enc.len), c->enc.data);
    return sr__transport_send(c->tp, c->enc.data, c->enc.len);
}

int sr_conn_invoke(sr_conn *c, const char *target, const sr_value *args, sr_done_fn done, void *ud,
                   uint64_t *id_out)
{
    char id[24];
    uint64_t n;
    int rc;
    if (!target || !done) return SR_EUSAGE;
    if (c->state != SR_STATE_CONNECTED || c->closing || !c->tp) return SR_ECLOSED;
    n = ++c->next_id;
    snprintf(id, sizeof id, "%llu", (unsigned long long)n);
    rc = write_invocation(c, id, target, args);
    if (rc != SR_OK) return rc;
    if (sr__pending_put(&c->pending, n, done, ud) != SR_OK) return SR_ENOMEM;
    if (SR_LOG_ON(&c->log, SR_LOG_DEBUG))
        sr__logf(&c->log, SR_LOG_DEBUG, "invoking '%s' (id %s)", target, id);
    if (id_out) *id_out = n;
    return SR_OK;
}

int sr_conn_send(sr_conn *c, const char *target, const sr_value *args)
{
    if (!target) return SR_EUSAGE;
    if (c->state != SR_STATE_CONNECTED || c->closing || !c->tp) return SR_ECLOSED;
    return write_invocation(c, NULL, target, args);
}

int sr_conn_cancel(sr_conn *c, uint64_t id)
{
    sr_pending_entry e;
    sr_error err;
    char sid[24];
    if (!sr__pending_take(&c->pending, id, &e)) return SR_EUSAGE;
    if (c->tp && !c->closing) {
        sr_msg m;
        memset(&m, 0, sizeof m);
        m.type = SR_MSG_CANCEL_INVOCATION;
        snprintf(sid, sizeof sid, "%llu", (unsigned long long)id);
        m.invocation_id = sid;
        sr__buf_reset(&c->enc);
        if (c->protocol->write(&m, &c->enc, NULL) == SR_OK)
            sr__transport_send(c->tp, c->enc.data, c->enc.len);
    }
    set_err(&err, SR_ECANCELED, 0, "%sthe invocation was canceled", "");
    e.done(e.ud, &err, NULL);
    return SR_OK;
}

void sr__conn_set_ws_factory(sr_conn *c, sr_transport_new_fn fn)
{
    c->ws_new = fn ? fn : sr__ws_transport_new;
}

void sr_conn_on_invocation(sr_conn *c, sr_invocation_fn fn, void *ud)
{
    c->on_invocation = fn;
    c->on_invocation_ud = ud;
}

void sr_conn_on_close(sr_conn *c, sr_close_fn fn, void *ud)
{
    c->on_close = fn;
    c->on_close_ud = ud;
}

void sr_conn_on_state(sr_conn *c, sr_state_fn fn, void *ud)
{
    c->on_state = fn;
    c->on_state_ud = ud;
}

/* Placeholders so the Lua module links and loads until the reconnect
 * rewrite of this file lands: this connection never reconnects (so these
 * callbacks never run), and a full send buffer stays an error (SR_EFULL
 * here makes the binding raise it as before). */
void sr_conn_on_reconnecting(sr_conn *c, sr_reconnecting_fn fn, void *ud)
{
    (void)c;
    (void)fn;
    (void)ud;
}

void sr_conn_on_reconnected(sr_conn *c, sr_reconnected_fn fn, void *ud)
{
    (void)c;
    (void)fn;
    (void)ud;
}

int sr_conn_wait_writable(sr_conn *c, sr_done_fn fn, void *ud)
{
    (void)ud;
    if (!fn) return SR_EUSAGE;
    return c->state == SR_STATE_CONNECTED ? SR_EFULL : SR_ECLOSED;
}
