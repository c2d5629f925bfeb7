/*
 * conn.c - the connection: its lifecycle (start, stop, automatic reconnect,
 * stateful reattach), negotiate, handshake, the one send path, invocation
 * bookkeeping and the dispatch of hub messages.
 *
 * Everything here runs on the host thread: entry points are the public
 * sr_conn_* calls and the upcalls that sr_loop_dispatch delivers (HTTP done,
 * transport open/data/close/drain, timers).
 *
 * The lifecycle (docs/ARCHITECTURE.md has the diagram):
 *   start -> attempt -> connected            attempt_failed: the start fails
 *   connected -> connection_lost -> reattach (stateful; state stays connected)
 *                                -> reconnecting -> attempt ... (policy)
 *                                -> closed
 *   reconnecting -> attempt_failed -> next attempt, or closed (policy: give up)
 *   stop (any state) -> closed
 * Only set_state() changes c->state. Every lifecycle step bumps c->gen; code
 * that runs a user callback and then continues compares the generation it
 * saw with the current one (stale()), so a callback that stops, restarts or
 * frees the connection never sees a stale continuation. Upcalls hold a
 * reference so a callback may free the connection.
 *
 * send_msg() is the only way a hub message goes out: stateful reconnect
 * numbers and buffers exactly what passes through it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <time.h>

#include "buf.h"
#include "cookies.h"
#include "error.h"
#include "framing.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "negotiate.h"
#include "options.h"
#include "pending.h"
#include "prefetch.h"
#include "protocol.h"
#include "stream.h"
#include "transport.h"

#define MAX_REDIRECTS 100

/* The transport kinds, in the order they are tried when several are usable
 * (as the official clients: WebSockets, then Server-Sent Events, then Long
 * Polling). A kind that fails to start makes the attempt negotiate again and
 * try the next one; the connection token of the failed one is spent. */
typedef struct tp_kind {
    int mask;         /* SR_TRANSPORT_* */
    const char *name; /* as negotiate names it */
    int ws_url;       /* ws(s):// rather than http(s):// */
    int binary;       /* carries the binary transfer format (MessagePack) */
    int stateful;     /* can reattach (stateful reconnect) */
} tp_kind;

#define SR_NKINDS 3
#define ALL_TRANSPORTS (SR_TRANSPORT_WEBSOCKETS | SR_TRANSPORT_SSE | SR_TRANSPORT_LONG_POLLING)
static const tp_kind kinds[SR_NKINDS] = {
    {SR_TRANSPORT_WEBSOCKETS, "WebSockets", 1, 1, 1},
    {SR_TRANSPORT_SSE, "ServerSentEvents", 0, 0, 0},
    {SR_TRANSPORT_LONG_POLLING, "LongPolling", 0, 1, 0},
};
#define STOP_TIMEOUT_MS 5000.0
/* Stateful reconnect: acknowledge what we processed once a second (as the
 * .NET client), or at once when this much arrived unacknowledged, so the
 * server's replay buffer (100,000 bytes by default) never throttles it. */
#define ACK_INTERVAL_MS 1000.0
#define ACK_EAGER_BYTES (32u * 1024)
#define CANCELED_TEXT "Invocation canceled due to the underlying connection being closed."
#define TP_ERRORS_SIZE 512 /* the reasons of the kinds that failed in one attempt */

typedef struct waiter {
    sr_done_fn fn;
    void *ud;
} waiter;

typedef struct waiters {
    waiter *v;
    size_t n;
} waiters;

/* One tracked message kept for replay: its sequence id and byte length in
 * c->replay (entries and bytes are in the same order). */
typedef struct replay_ent {
    int64_t seq;
    size_t len;
} replay_ent;

struct sr_conn {
    sr_loop *loop;
    int refs;     /* the user's reference + one per upcall in progress */
    int dead;     /* sr_conn_free was called */
    uint64_t gen; /* lifecycle generation, see stale() */

    sr_options *opt; /* effective options, owned */
    /* The cookie jar of every request, for the connection's whole life
     * (reconnects included), as the official clients' per-connection
     * cookie container. NULL after WebSockets opened with it empty
     * (open_transport); the next request makes a new one (need_jar). */
    sr_cookie_jar *jar;
    const sr_protocol *protocol;
    sr_logger log;
    /* Constructors per transport kind (kinds[] order); NULL: not built.
     * Tests replace them with an in-memory transport. */
    sr_transport_new_fn tp_new[SR_NKINDS];
    char *test_token; /* tests: skip_negotiation acts as a stateful negotiate */

    /* one connection lifetime (start .. closed) */
    sr_state state;
    int was_connected; /* connected at least once since start: on_close fires */
    int closing;       /* the end is decided; no new invocations */
    char *url;         /* current hub URL (a negotiate redirect replaces it) */
    char *connection_id;
    char *connection_token;
    char *redirect_token; /* bearer token from a negotiate redirect */
    int redirects;
    sr_http_req *negotiate_req;
    sr_transport *tp;
    int kind;           /* kinds[] index of tp (or of the one being opened) */
    int offered;        /* SR_TRANSPORT_* the last negotiate offered for our format */
    int failed_kinds;   /* SR_TRANSPORT_* that failed to start in this attempt */
    char *tp_errors;    /* why each of them failed, for the final error (lazy) */
    int tp_opened;      /* tp reported on_open */
    int handshake_done; /* the hub handshake of this connection was answered */
    int attached;       /* tp carries hub messages (handshake done or reattached) */
    int reattaching;    /* tp is a stateful reattach, not open yet */
    int tp_full;        /* the transport refused a send with SR_EFULL */
    sr_buf in;          /* received bytes not yet parsed */
    size_t scanned;     /* text protocols: leading bytes of `in` without a separator */
    sr_buf enc;         /* scratch for encoding */
    uint64_t next_id;
    sr_pending pending;
    sr_pending uploads;    /* open client-to-server streams (ids only) */
    uint64_t upload_floor; /* ids up to this one were issued before the last loss */

    /* flow control (sr_conn_pause) */
    int paused;          /* pauses not yet resumed */
    sr_held held;        /* received while paused, not delivered yet */
    uint64_t held_timer; /* delivers the held messages after the last resume */
    int tp_held;         /* tp was told to stop reading */
    int draining;        /* delivering held messages before a close */
    uint64_t stop_timer;

    /* automatic reconnect */
    uint64_t retry_timer;
    uint64_t retries;   /* previous_retry_count */
    double retry_start; /* monotonic ms when reconnecting began */

    /* stateful reconnect (negotiated for this lifetime) */
    int stateful;
    sr_buf replay;   /* tracked messages sent and not acknowledged, framed */
    int replay_full; /* a send was refused for want of room; an Ack clears it */
    replay_ent *ents;
    size_t nents, ents_cap;
    int64_t send_seq;    /* id of the last tracked message sent */
    int64_t recv_next;   /* id the next tracked message received carries */
    int64_t recv_latest; /* highest tracked id processed */
    int64_t acked;       /* the last Ack we sent */
    size_t rx_unacked;   /* tracked bytes processed since that Ack */
    uint64_t ack_timer;

    waiter start_waiter;
    waiters stop_waiters;
    waiters wr_waiters; /* sr_conn_wait_writable */
    uint64_t wr_timer;

    sr_invocation_fn on_invocation;
    void *on_invocation_ud;
    /* The batch being delivered (tp_on_msgs_body) and, during the
     * invocation callback of a plain call, its target: what
     * sr_conn_next_call may take from. */
    sr_rx_msg *cur_msgs;
    size_t cur_n, *cur_i;
    const char *call_target;
    uint64_t call_gen;
    sr_close_fn on_close;
    void *on_close_ud;
    sr_state_fn on_state;
    void *on_state_ud;
    sr_reconnecting_fn on_reconnecting;
    void *on_reconnecting_ud;
    sr_reconnected_fn on_reconnected;
    void *on_reconnected_ud;
};

static void closed(sr_conn *c, const sr_error *err);
static void attempt_failed(sr_conn *c, const sr_error *err);
static void connection_lost(sr_conn *c, const sr_error *err, int may_reattach);
static void start_negotiate(sr_conn *c);
static void transport_failed(sr_conn *c, const sr_error *err);
static void open_transport(sr_conn *c, int reattach);
static int send_msg(sr_conn *c, const sr_msg *m);
static void schedule_writable(sr_conn *c);
static int can_send(const sr_conn *c);

/* ------------------------------------------------------------- helpers */

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* sr__error_set with the HTTP status the failure carries; fmt takes one
 * %s, arg (NULL for ""). */
static void set_err(sr_error *err, int code, long status, const char *fmt, const char *arg)
{
    sr__error_set(err, code, fmt, arg ? arg : "");
    if (err) err->status = status;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void hold(sr_conn *c)
{
    c->refs++;
}

static void destroy(sr_conn *c);

static void release(sr_conn *c)
{
    if (--c->refs == 0) destroy(c);
}

/* 1 when the connection was freed or moved on (a lifecycle step happened)
 * since generation g was read: the caller's continuation is stale. */
static int stale(const sr_conn *c, uint64_t g)
{
    return c->dead || c->gen != g;
}

/* tp_errors (TP_ERRORS_SIZE bytes) is malloc'd at an attempt's first
 * failed kind and freed here when the attempt ends, so that an idle
 * connection does not carry 512 bytes it reads only on a failure. */
static void clear_tp_errors(sr_conn *c)
{
    free(c->tp_errors);
    c->tp_errors = NULL;
}

/* Returns 1 when the caller may go on (nothing changed in the callback). */
static int set_state(sr_conn *c, sr_state to)
{
    sr_state from = c->state;
    uint64_t g;
    if (from == to) return !c->dead;
    c->state = to;
    g = ++c->gen;
    sr__logf(&c->log, SR_LOG_DEBUG, "state: %s -> %s", sr_state_name(from), sr_state_name(to));
    if (c->on_state && !c->dead) c->on_state(c->on_state_ud, c, from, to);
    return !stale(c, g);
}

static char *bearer(sr_conn *c)
{
    char *tok = NULL, *h;
    if (c->redirect_token) {
        tok = strdup(c->redirect_token);
    } else if (c->opt->token_fn) {
        tok = c->opt->token_fn(c->opt->token_ud);
    } else if (c->opt->access_token) {
        tok = strdup(c->opt->access_token);
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
/* The core's own X-SignalR-User-Agent, made once. */
static char default_ua[160];
static void make_default_ua(void)
{
    sr_user_agent("C", "-", default_ua, sizeof default_ua);
}

static const char *default_user_agent(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_default_ua);
    return default_ua;
}

const char *sr_user_agent(const char *runtime, const char *runtime_version, char *buf, size_t size)
{
    struct utsname u;
    int ok = uname(&u) == 0;
    if (!buf || size == 0) return NULL;
    snprintf(buf, size, "signalr-lua/%s (%s; %s%s%s; %s; %s)", SR_VERSION, SR_VERSION,
             ok ? u.sysname : "Unknown OS", ok ? " " : "", ok ? u.release : "",
             runtime ? runtime : "C", runtime_version ? runtime_version : "-");
    return buf;
}

/* The user's Cookie header (the headers option), or NULL. */
static const char *user_cookie(const sr_conn *c)
{
    size_t i;
    for (i = 0; i < c->opt->nheaders; i++)
        if (strcasecmp(c->opt->headers[i].name, "Cookie") == 0) return c->opt->headers[i].value;
    return NULL;
}

/* The jar for a request of libcurl's: the connection's, or a new one when
 * WebSockets dropped it. NULL when out of memory. */
static sr_cookie_jar *need_jar(sr_conn *c)
{
    if (!c->jar) c->jar = sr__cookie_jar_new();
    return c->jar;
}

/* The WebSocket upgrade's Cookie header: the user's cookies and the jar's
 * for url in one header (RFC 6265 allows one), as libcurl sends them on
 * the other requests (http.c). malloc'd, or NULL for none. */
static char *upgrade_cookie(sr_conn *c, const char *url)
{
    int empty;
    char *jar = sr__cookie_header(c->jar, url, &empty), *both;
    const char *mine = user_cookie(c);
    if (empty) {
        /* The jar holds nothing, and nothing adds to it while WebSockets
         * carry the connection (negotiate is over, lws stores no cookie):
         * an idle connection need not keep libcurl's cookie engine (about
         * 900 bytes). A later request gets a new, equally empty one. */
        sr__cookie_jar_unref(c->jar);
        c->jar = NULL;
    }
    if (!jar || !mine || !*mine) return jar;
    both = malloc(strlen(mine) + 2 + strlen(jar) + 1);
    if (both) sprintf(both, "%s; %s", mine, jar);
    free(jar);
    return both;
}

/* cookie (may be NULL) is the whole Cookie header when libcurl's engine
 * cannot make it (the WebSocket upgrade): it replaces the user's. */
static sr_header *request_headers(sr_conn *c, char **auth, const char *cookie, size_t *n)
{
    sr_header *h = calloc(c->opt->nheaders + 3, sizeof *h);
    size_t i;
    int have_ua = 0, have_cookie = 0;
    if (!h) return NULL;
    if (c->opt->nheaders) memcpy(h, c->opt->headers, c->opt->nheaders * sizeof *h);
    *n = c->opt->nheaders;
    for (i = 0; i < *n; i++) {
        if (strcasecmp(h[i].name, "X-SignalR-User-Agent") == 0) have_ua = 1;
        if (strcasecmp(h[i].name, "Cookie") == 0) {
            have_cookie = 1;
            if (cookie) h[i].value = cookie;
        }
    }
    if (cookie && !have_cookie) {
        h[*n].name = "Cookie";
        h[*n].value = cookie;
        (*n)++;
    }
    if (!have_ua) {
        h[*n].name = "X-SignalR-User-Agent";
        h[*n].value = c->opt->user_agent ? c->opt->user_agent : default_user_agent();
        (*n)++;
    }
    *auth = bearer(c);
    if (*auth) {
        h[*n].name = "Authorization";
        h[*n].value = *auth;
        (*n)++;
    }
    return h;
}

static int waiters_add(waiters *w, sr_done_fn fn, void *ud)
{
    waiter *v = realloc(w->v, (w->n + 1) * sizeof *v);
    if (!v) return SR_ENOMEM;
    w->v = v;
    v[w->n].fn = fn;
    v[w->n].ud = ud;
    w->n++;
    return SR_OK;
}

/* Run and empty a waiter list (taken first: a waiter may add new ones). */
static void waiters_run(sr_conn *c, waiters *w, const sr_error *err)
{
    waiters t = *w;
    size_t i;
    w->v = NULL;
    w->n = 0;
    for (i = 0; i < t.n && !c->dead; i++)
        t.v[i].fn(t.v[i].ud, err, NULL);
    free(t.v);
}

/* ------------------------------------------------- stateful reconnect */

static int is_tracked(sr_msg_type t)
{
    return t == SR_MSG_INVOCATION || t == SR_MSG_STREAM_ITEM || t == SR_MSG_COMPLETION ||
           t == SR_MSG_STREAM_INVOCATION || t == SR_MSG_CANCEL_INVOCATION;
}

static void replay_clear(sr_conn *c)
{
    sr__buf_free(&c->replay);
    free(c->ents);
    c->ents = NULL;
    c->nents = c->ents_cap = 0;
    c->replay_full = 0;
}

static size_t buffer_limit(const sr_conn *c)
{
    return c->opt->stateful_buffer;
}

/* The server processed everything up to id: drop it from the buffer. */
static void replay_ack(sr_conn *c, int64_t id)
{
    size_t k = 0, bytes = 0;
    while (k < c->nents && c->ents[k].seq <= id)
        bytes += c->ents[k++].len;
    if (!k) return;
    sr__buf_consume(&c->replay, bytes);
    memmove(c->ents, c->ents + k, (c->nents - k) * sizeof *c->ents);
    c->nents -= k;
    if (c->replay_full) {
        c->replay_full = 0;
        schedule_writable(c);
    }
}

static void send_ack(sr_conn *c)
{
    sr_msg m;
    if (!c->attached || c->recv_latest <= c->acked) return;
    memset(&m, 0, sizeof m);
    m.type = SR_MSG_ACK;
    m.sequence_id = c->recv_latest;
    if (send_msg(c, &m) == SR_OK) {
        c->acked = c->recv_latest;
        c->rx_unacked = 0;
    }
}

static void ack_timer_fired(void *ud)
{
    sr_conn *c = ud;
    c->ack_timer = 0;
    send_ack(c);
}

/* After processing received data: ack now if much arrived, else soon. */
static void plan_ack(sr_conn *c)
{
    if (!c->stateful || c->recv_latest <= c->acked) return;
    if (c->rx_unacked >= ACK_EAGER_BYTES) {
        send_ack(c);
    } else if (!c->ack_timer) {
        c->ack_timer = sr_loop_add_timer(c->loop, ACK_INTERVAL_MS, ack_timer_fired, c);
    }
}

/* Reattached: tell the server where our replay starts, then replay. */
static void replay_resend(sr_conn *c)
{
    sr_msg m;
    memset(&m, 0, sizeof m);
    m.type = SR_MSG_SEQUENCE;
    m.sequence_id = c->nents ? c->ents[0].seq : c->send_seq + 1;
    send_msg(c, &m);
    if (c->replay.len) {
        sr__logf(&c->log, SR_LOG_DEBUG, "replaying %zu unacknowledged messages (%zu bytes)",
                 c->nents, c->replay.len);
        if (sr__transport_send(c->tp, c->replay.data, c->replay.len) == SR_EFULL) c->tp_full = 1;
    }
}

/* ------------------------------------------------------------- sending */

/* The only way a hub message goes out. Tracked messages of a stateful
 * connection are numbered and kept until the server acknowledges them;
 * while detached they are only kept, and go out with the replay. */
static int send_msg(sr_conn *c, const sr_msg *m)
{
    sr_error err;
    int rc, tracked = c->stateful && is_tracked(m->type);
    sr__buf_reset(&c->enc);
    memset(&err, 0, sizeof err);
    rc = c->protocol->write(m, &c->enc, &err);
    if (rc != SR_OK) {
        sr__logf(&c->log, SR_LOG_ERROR, "cannot encode a message of type %d: %s", (int)m->type,
                 err.message);
        return rc;
    }
    if (tracked) {
        if (c->replay.len && c->replay.len + c->enc.len > buffer_limit(c)) {
            c->replay_full = 1;
            return SR_EFULL;
        }
        if (sr__buf_reserve(&c->replay, c->enc.len) != 0) return SR_ENOMEM;
        if (c->nents == c->ents_cap) {
            size_t cap = c->ents_cap ? c->ents_cap * 2 : 64;
            replay_ent *e = realloc(c->ents, cap * sizeof *e);
            if (!e) return SR_ENOMEM;
            c->ents = e;
            c->ents_cap = cap;
        }
    }
    if (c->attached && c->tp) {
        if (SR_LOG_ON(&c->log, SR_LOG_TRACE))
            sr__logf(&c->log, SR_LOG_TRACE, "sending %zu bytes: %.*s", c->enc.len,
                     (int)(c->enc.len > 900 ? 900 : c->enc.len), c->enc.data);
        rc = sr__transport_send(c->tp, c->enc.data, c->enc.len);
        if (rc == SR_EFULL) c->tp_full = 1;
        /* A transport that died before its close event arrived: a tracked
         * message is kept and goes out with the replay after reattaching. */
        if (rc != SR_OK && !(tracked && rc == SR_ECLOSED)) return rc;
    } else if (!tracked) {
        return SR_ECLOSED;
    }
    if (tracked) {
        c->ents[c->nents].seq = ++c->send_seq;
        c->ents[c->nents].len = c->enc.len;
        c->nents++;
        sr__buf_append(&c->replay, c->enc.data, c->enc.len); /* reserved above */
    }
    return SR_OK;
}

static int writable(const sr_conn *c)
{
    return !c->tp_full && !c->replay_full;
}

static void wr_timer_fired(void *ud)
{
    sr_conn *c = ud;
    c->wr_timer = 0;
    if (!writable(c)) return;
    hold(c);
    waiters_run(c, &c->wr_waiters, NULL);
    release(c);
}

/* Run the writable waiters inside the next dispatch. */
static void schedule_writable(sr_conn *c)
{
    if (!c->wr_waiters.n || c->wr_timer || !writable(c)) return;
    c->wr_timer = sr_loop_add_timer(c->loop, 0, wr_timer_fired, c);
}

/* ----------------------------------------------------------- transport */

static void tp_on_open(void *ud, sr_transport *tp)
{
    sr_conn *c = ud;
    c->tp_opened = 1;
    if (!c->reattaching) {
        sr__logf(&c->log, SR_LOG_DEBUG, "%s transport open; handshake sent",
                 sr__transport_name(tp));
        return;
    }
    /* Stateful reattach: the server keeps the connection, so there is no
     * new handshake; state and events stay as they were (as the .NET
     * client does it). */
    c->reattaching = 0;
    c->attached = 1;
    c->tp_full = 0;
    sr__logf(&c->log, SR_LOG_INFORMATION,
             "reattached to the server connection (stateful reconnect)");
    hold(c);
    replay_resend(c);
    schedule_writable(c);
    release(c);
}

static void tp_on_drain(void *ud, sr_transport *tp)
{
    sr_conn *c = ud;
    (void)tp;
    c->tp_full = 0;
    schedule_writable(c);
}

/* A local fault (protocol error, out of memory): the connection is lost. */
static void abort_with(sr_conn *c, const sr_error *err)
{
    sr__logf(&c->log, SR_LOG_ERROR, "closing the connection: %s", err->message);
    if (c->handshake_done)
        connection_lost(c, err, 0);
    else
        attempt_failed(c, err);
}

/* A Completion or StreamItem for an id we have no entry for: late for a
 * stream or invocation we canceled (expected; quiet), or an id we never
 * issued (the server's fault; said). */
static void unknown_id(sr_conn *c, const sr_msg *m, int known_form, uint64_t id)
{
    const char *what = m->type == SR_MSG_STREAM_ITEM ? "StreamItem" : "Completion";
    if (known_form && id <= c->next_id) {
        if (SR_LOG_ON(&c->log, SR_LOG_DEBUG))
            sr__logf(&c->log, SR_LOG_DEBUG, "%s for finished invocation %s dropped", what,
                     m->invocation_id);
        return;
    }
    sr__logf(&c->log, SR_LOG_WARNING, "%s for unknown invocation id '%s' ignored", what,
             m->invocation_id);
}

static void complete_invocation(sr_conn *c, sr_msg *m)
{
    sr_pending_entry e;
    uint64_t id = 0;
    int ok = sr__id_parse(m->invocation_id, &id);
    if (!ok || !sr__pending_take(&c->pending, id, &e)) {
        unknown_id(c, m, ok, id);
        return;
    }
    if (m->error) {
        sr_error err;
        set_err(&err, SR_EHUB, 0, "%s", m->error);
        e.done(e.ud, &err, NULL);
    } else {
        /* A stream's Completion carries no result (the official clients
         * ignore one). */
        e.done(e.ud, NULL, m->has_result && !e.item ? m->result : NULL);
    }
}

static void stream_item(sr_conn *c, sr_msg *m)
{
    sr_pending_entry *e;
    uint64_t id = 0;
    int ok = sr__id_parse(m->invocation_id, &id);
    if (!ok || !(e = sr__pending_find(&c->pending, id))) {
        unknown_id(c, m, ok, id);
        return;
    }
    if (!e->item) {
        /* An invoke answered with stream items: the server never does that
         * (it fails such an invoke with a Completion error). */
        sr_pending_entry t;
        sr_error err;
        sr__pending_take(&c->pending, id, &t);
        set_err(&err, SR_EPROTOCOL, 0,
                "the server sent a stream item for invocation %s, which is not a stream",
                m->invocation_id);
        t.done(t.ud, &err, NULL);
        return;
    }
    e->item(e->ud, m->item);
}

static int complete_server_call(sr_conn *c, const char *invocation_id, const sr_value *result,
                                const char *error)
{
    sr_msg r;
    sr_value *null = NULL;
    int rc;
    memset(&r, 0, sizeof r);
    r.type = SR_MSG_COMPLETION;
    r.invocation_id = (char *)invocation_id;
    if (error) {
        r.error = (char *)error;
    } else {
        if (!result) result = null = sr_value_null();
        r.has_result = 1;
        r.result = (sr_value *)result;
    }
    rc = send_msg(c, &r);
    sr_value_free(null);
    return rc;
}

/* Stateful reconnect: 1 when a tracked message was seen before (the
 * server replayed it after a reattach) and must be skipped. */
static int duplicate(sr_conn *c, const sr_msg *m, size_t bytes)
{
    int64_t id;
    if (!c->stateful || !is_tracked(m->type)) return 0;
    id = c->recv_next++;
    if (id <= c->recv_latest) return 1;
    c->recv_latest = id;
    c->rx_unacked += bytes;
    return 0;
}

/* Handle one parsed message. Returns 1 when the caller must stop (the
 * connection moved on or is gone). */
static int handle_message(sr_conn *c, sr_msg *m)
{
    uint64_t g = c->gen;
    sr_error err;
    switch ((int)m->type) {
    case 0:
        /* The transport's parse of a record it held in pieces failed
         * (transport.c); the record itself is gone, the reason is here. */
        set_err(&err, SR_EPROTOCOL, 0, "%s", m->error ? m->error : "malformed message");
        abort_with(c, &err);
        return 1;
    case SR_MSG_COMPLETION:
        complete_invocation(c, m);
        break;
    case SR_MSG_INVOCATION:
        if (SR_LOG_ON(&c->log, SR_LOG_DEBUG))
            sr__logf(&c->log, SR_LOG_DEBUG, "received invocation of '%s'", m->target);
        {
            int answered = 0;
            if (c->on_invocation) {
                /* The next calls may be taken only by a plain call of the
                 * batch being delivered (not a held one, not a nested one). */
                const char *outer = c->call_target;
                uint64_t outer_gen = c->call_gen;
                c->call_target = !m->invocation_id && c->cur_msgs && m == &c->cur_msgs[*c->cur_i].m
                                     ? m->target
                                     : NULL;
                c->call_gen = g;
                answered = c->on_invocation(c->on_invocation_ud, c, m->target, m->arguments,
                                            m->invocation_id);
                c->call_target = outer; /* the caller holds c */
                c->call_gen = outer_gen;
            } else {
                sr__logf(&c->log, SR_LOG_WARNING, "no handler for the server's call to '%s'",
                         m->target);
            }
            /* The server waits for a result: as the official clients, answer
             * for a client that will not, so the server's call does not hang. */
            if (!stale(c, g) && m->invocation_id && !answered && can_send(c))
                complete_server_call(c, m->invocation_id, NULL, "Client didn't provide a result.");
            break;
        }
    case SR_MSG_STREAM_ITEM:
        stream_item(c, m);
        break;
    case SR_MSG_PING:
        break;
    case SR_MSG_CLOSE:
        if (m->error) {
            set_err(&err, SR_ECLOSED, 0, "Server closed the connection with an error: %s",
                    m->error);
        } else {
            set_err(&err, SR_ECLOSED, 0, "%sthe server closed the connection", "");
            sr__logf(&c->log, SR_LOG_INFORMATION, "the server closed the connection");
        }
        /* A Close ends the server's side for good: never reattach. Only
         * allowReconnect lets automatic reconnect run. */
        if (m->allow_reconnect)
            connection_lost(c, &err, 0);
        else
            closed(c, m->error ? &err : NULL);
        return 1;
    case SR_MSG_ACK:
        if (c->stateful) replay_ack(c, m->sequence_id);
        break;
    case SR_MSG_SEQUENCE:
        if (!c->stateful) break;
        if (m->sequence_id > c->recv_latest + 1) {
            set_err(&err, SR_EPROTOCOL, 0,
                    "%sSequence ID greater than amount of messages we've received.", "");
            abort_with(c, &err);
            return 1;
        }
        c->recv_next = m->sequence_id;
        break;
    default:
        /* StreamInvocation and CancelInvocation go to a server only. */
        sr__logf(&c->log, SR_LOG_WARNING,
                 "a message of type %d from the server (one only a client sends); ignored",
                 (int)m->type);
        break;
    }
    return stale(c, g);
}

/* The handshake was answered: the attempt succeeded. Returns 1 when the
 * caller may go on. */
static int attempt_connected(sr_conn *c)
{
    uint64_t g;
    int reconnected = c->state == SR_STATE_RECONNECTING;
    c->handshake_done = 1;
    c->attached = 1;
    c->was_connected = 1;
    clear_tp_errors(c);
    if (reconnected) {
        sr__logf(&c->log, SR_LOG_INFORMATION,
                 "reconnected to %s after %llu failed attempts and %.0f ms", c->url,
                 (unsigned long long)c->retries, now_ms() - c->retry_start);
    } else {
        sr__logf(&c->log, SR_LOG_INFORMATION, "connected to %s", c->url);
    }
    if (!set_state(c, SR_STATE_CONNECTED)) return 0;
    g = c->gen;
    if (reconnected) {
        if (c->on_reconnected)
            c->on_reconnected(c->on_reconnected_ud, c,
                              c->opt->skip_negotiation ? NULL : c->connection_id);
    } else if (c->start_waiter.fn) {
        waiter w = c->start_waiter;
        c->start_waiter.fn = NULL;
        w.fn(w.ud, NULL, NULL);
    }
    return !stale(c, g);
}

static void parse_in(sr_conn *c, size_t off);
static void hold_reading(sr_conn *c);
static void release_reading(sr_conn *c);

static void tp_on_data_body(sr_conn *c, const char *data, size_t len)
{
    size_t off = 0;
    sr_error err;
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
            attempt_failed(c, &err);
            return;
        }
        off = (size_t)n;
        if (!attempt_connected(c)) return;
    }
    parse_in(c, off);
}

/* Parse and handle what `in` holds from off on; stop early while the
 * connection is paused (the rest waits in `in`). */
static void parse_in(sr_conn *c, size_t off)
{
    sr_error err;
    /* A large record arrives in many pieces: look for its end only in the
     * new bytes, so receiving it stays linear. */
    if (off == 0 && c->scanned && !c->protocol->binary &&
        !memchr(c->in.data + c->scanned, SR_RECORD_SEPARATOR, c->in.len - c->scanned) &&
        c->in.len <= c->opt->max_message_size) {
        c->scanned = c->in.len;
        return;
    }
    c->scanned = 0;
    while (off < c->in.len) {
        sr_msg m;
        int n;
        if ((c->paused || c->held.n) && !c->draining) break;
        memset(&m, 0, sizeof m);
        n = c->protocol->parse(c->in.data + off, c->in.len - off, c->opt->max_message_size, &m,
                               &err);
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
        if (!duplicate(c, &m, (size_t)n) && handle_message(c, &m)) {
            sr__msg_clear(&m);
            return;
        }
        sr__msg_clear(&m);
    }
    sr__buf_consume(&c->in, off);
    if (c->paused) hold_reading(c);
    plan_ack(c);
}

/* ------------------------------------------------------- flow control */

/* A paused connection keeps what arrives, up to HOLD_READ_MAX bytes; past
 * that its transport stops reading (for it alone: other connections of the
 * loop go on), and reads again once under a quarter of it. */
#define HOLD_READ_MAX (1u << 20)

static void hold_reading(sr_conn *c)
{
    if (!c->tp_held && c->tp && c->held.bytes + c->in.len > HOLD_READ_MAX) {
        c->tp_held = 1;
        sr__transport_hold(c->tp, 1);
    }
}

static void release_reading(sr_conn *c)
{
    if (c->tp_held && c->held.bytes + c->in.len < HOLD_READ_MAX / 4) {
        c->tp_held = 0;
        if (c->tp) sr__transport_hold(c->tp, 0);
    }
}

/* Keep messages received while paused (or behind others kept). */
static void hold_msgs(sr_conn *c, sr_rx_msg *msgs, size_t n)
{
    size_t i;
    sr_error err;
    for (i = 0; i < n; i++) {
        if (sr__held_push(&c->held, &msgs[i]) != SR_OK) {
            set_err(&err, SR_ETRANSPORT, 0, "%sout of memory holding received messages", "");
            abort_with(c, &err);
            return;
        }
    }
    hold_reading(c);
}

static void drop_held(sr_conn *c)
{
    c->tp_held = 0; /* a hold dies with its transport */
    if (c->held.n) {
        sr__logf(&c->log, SR_LOG_DEBUG, "%zu held messages dropped with the transport", c->held.n);
    }
    sr__held_clear(&c->held);
    if (c->held_timer) {
        sr_loop_cancel_timer(c->loop, c->held_timer);
        c->held_timer = 0;
    }
}

/* Deliver held messages in order: while not paused, or all of them
 * (force: the transport closes, and what came before its close goes
 * first). Then what waits unparsed in `in`. */
static void deliver_held(sr_conn *c, int force)
{
    sr_rx_msg m;
    uint64_t g = c->gen;
    int stop = 0;
    while (!stop && (force || !c->paused) && sr__held_pop(&c->held, &m)) {
        release_reading(c);
        stop = !duplicate(c, &m.m, m.bytes) && handle_message(c, &m.m);
        /* Back to the reading side, whose allocator made its arena: freed
         * here, in a stream that keeps pausing, glibc's frees across
         * threads and the reader's fresh mallocs doubled a message's cost. */
        if (c->tp)
            sr__transport_recycle(c->tp, &m);
        else
            sr__msg_clear(&m.m);
    }
    if (c->tp) sr__transport_recycle_flush(c->tp);
    if (stop) return;
    if (!c->held.n && (force || !c->paused) && c->in.len && c->attached) {
        c->draining = force;
        parse_in(c, 0);
        c->draining = 0;
        if (stale(c, g)) return;
    }
    release_reading(c);
    if (c->attached) plan_ack(c);
}

static void held_timer_fired(void *ud)
{
    sr_conn *c = ud;
    c->held_timer = 0;
    hold(c);
    deliver_held(c, 0);
    release(c);
}

void sr_conn_pause(sr_conn *c)
{
    if (c && !c->dead) c->paused++;
}

void sr_conn_resume(sr_conn *c)
{
    if (!c || c->dead || !c->paused) return;
    /* Delivery runs inside a later dispatch, never inside this call. */
    if (--c->paused == 0 && (c->held.n || c->in.len) && !c->held_timer)
        c->held_timer = sr_loop_add_timer(c->loop, 0, held_timer_fired, c);
}

/* The start of a message's arena, asked for two messages ahead: the
 * reading thread's CPU wrote it, and the host's first reads of each
 * message (its type, target, arguments) waited for the lines to cross. */
static void prefetch_msg(const sr_rx_msg *e)
{
    if (e->m.arena) {
        sr__prefetch_r(e->m.arena);
        sr__prefetch_r((const char *)e->m.arena + SR_CACHE_LINE);
    }
}

/* Messages the transport parsed where it read them (cfg.protocol). They
 * follow the handshake reply, which came through tp_on_data. */
static void tp_on_msgs_body(sr_conn *c, sr_transport *tp, sr_rx_msg *msgs, size_t n)
{
    size_t i, outer_n = c->cur_n, *outer_i = c->cur_i;
    sr_rx_msg *outer = c->cur_msgs;
    if (tp != c->tp || !c->attached) return;
    /* A handler that polls delivers later batches inside this one. */
    c->cur_msgs = msgs;
    c->cur_n = n;
    c->cur_i = &i;
    for (i = 0; i < n; i++) {
        if (i + 2 < n) prefetch_msg(&msgs[i + 2]);
        if (c->paused || c->held.n) {
            hold_msgs(c, msgs + i, n - i);
            break;
        }
        if (!duplicate(c, &msgs[i].m, msgs[i].bytes) && handle_message(c, &msgs[i].m)) goto out;
    }
    plan_ack(c);
out:
    c->cur_msgs = outer;
    c->cur_n = outer_n;
    c->cur_i = outer_i;
}

const sr_value *sr_conn_next_call(sr_conn *c, const char *target, size_t max_args)
{
    if (!c || !target || !c->call_target || c->call_gen != c->gen || c->dead || !c->cur_msgs ||
        strcmp(target, c->call_target) != 0)
        return NULL;
    for (;;) {
        size_t j = *c->cur_i + 1;
        sr_rx_msg *e;
        if (j >= c->cur_n || c->paused || c->held.n || !c->attached) return NULL;
        e = &c->cur_msgs[j];
        if (j + 2 < c->cur_n) prefetch_msg(&c->cur_msgs[j + 2]);
        if (e->m.type != SR_MSG_INVOCATION || e->m.invocation_id ||
            strcmp(e->m.target, target) != 0 || sr_value_len(e->m.arguments) > max_args)
            return NULL;
        *c->cur_i = j;
        if (duplicate(c, &e->m, e->bytes)) continue; /* as the delivery loop does */
        if (SR_LOG_ON(&c->log, SR_LOG_DEBUG))
            sr__logf(&c->log, SR_LOG_DEBUG, "received invocation of '%s'", e->m.target);
        return e->m.arguments;
    }
}

static void tp_on_close_body(sr_conn *c, const sr_error *err)
{
    sr_error lost;
    c->tp = NULL; /* released below by whoever drops the network */
    if (c->state == SR_STATE_DISCONNECTING) {
        /* After our close request any end is clean (the transport says
         * so): an error here is the server's, which came first (a close
         * code, a protocol fault) and must not be lost to the stop. */
        if (err)
            sr__logf(&c->log, SR_LOG_WARNING, "the transport ended before the stop: %s",
                     err->message);
        closed(c, err);
        return;
    }
    if (c->reattaching) {
        if (!err) {
            set_err(&lost, SR_ECLOSED, 0, "%sthe reattach transport closed", "");
            err = &lost;
        }
        sr__logf(&c->log, SR_LOG_WARNING, "stateful reattach failed: %s", err->message);
        connection_lost(c, err, 0);
        return;
    }
    if (!c->handshake_done) {
        if (!err) {
            set_err(&lost, SR_EHANDSHAKE, 0,
                    "%sthe server closed the connection before the handshake completed", "");
            err = &lost;
        }
        /* A transport that never opened failed to start: try the next kind. */
        if (!c->tp_opened) {
            transport_failed(c, err);
            return;
        }
        attempt_failed(c, err);
        return;
    }
    if ((!err || err->code == SR_ECLOSED) && c->in.len > 0) {
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
    }
    /* A timeout or a protocol fault is ours to end; only a lost socket is
     * worth a stateful reattach. */
    connection_lost(c, err, err->code == SR_ETRANSPORT || err->code == SR_ECLOSED);
}

/* Upcall wrappers: hold the connection so a user callback may free it. */
static void tp_on_data(void *ud, sr_transport *tp, const char *data, size_t len)
{
    sr_conn *c = ud;
    (void)tp;
    hold(c);
    tp_on_data_body(c, data, len);
    release(c);
}

static void tp_on_msgs(void *ud, sr_transport *tp, sr_rx_msg *msgs, size_t n)
{
    sr_conn *c = ud;
    hold(c);
    tp_on_msgs_body(c, tp, msgs, n);
    release(c);
}

static void tp_on_close(void *ud, sr_transport *tp, const sr_error *err)
{
    sr_conn *c = ud;
    hold(c);
    if (tp == c->tp && (c->held.n || (c->paused && c->in.len)) && c->attached) {
        deliver_held(c, 1);
        /* A held Close ended the connection: it already dropped tp. */
        if (c->tp != tp) {
            release(c);
            return;
        }
    }
    /* Keep the host's reference until the lifecycle drops the network. */
    tp_on_close_body(c, err);
    sr__transport_release(tp);
    release(c);
}

static const sr_transport_upcalls tp_upcalls = {tp_on_open, tp_on_data, tp_on_msgs, tp_on_close,
                                                tp_on_drain};

/* The server turns stateful reconnect on for a connection only when the
 * handshake asks for protocol version 2 (the version that added Ack and
 * Sequence); version 1 otherwise, which every server since 2.1 speaks. */
static int hub_protocol_version(const sr_conn *c)
{
    return c->stateful ? 2 : c->protocol->version;
}

/* Open the WebSocket transport: for an attempt (handshake first), or for a
 * stateful reattach (same connection token, no handshake). */
static void open_transport(sr_conn *c, int reattach)
{
    sr_transport_cfg cfg;
    sr_buf hs = SR_BUF_INIT;
    sr_buf ping = SR_BUF_INIT;
    sr_error err;
    sr_msg pm;
    char *auth = NULL, *url, *cookie = NULL;
    size_t nh = 0;
    sr_header *h;
    uint64_t g = c->gen;

    memset(&err, 0, sizeof err);
    memset(&pm, 0, sizeof pm);
    pm.type = SR_MSG_PING;
    url = sr__transport_url(c->url, c->connection_token, kinds[c->kind].ws_url);
    /* libwebsockets has no cookie engine: the upgrade carries the jar's
     * cookies for its URL as a header. */
    if (url && kinds[c->kind].ws_url) cookie = upgrade_cookie(c, url);
    h = request_headers(c, &auth, cookie, &nh); /* may run the user's token function */
    if (stale(c, g)) goto out;
    if (!url || !h || (!kinds[c->kind].ws_url && !need_jar(c)) ||
        (!reattach && sr__handshake_write(c->protocol->name, hub_protocol_version(c), &hs) < 0) ||
        c->protocol->write(&pm, &ping, NULL) != SR_OK) {
        set_err(&err, SR_ENOMEM, 0, "%sout of memory opening the transport", "");
        goto fail;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.url = url;
    cfg.headers = h;
    cfg.nheaders = nh;
    cfg.binary = c->protocol->binary;
    cfg.text_only = !c->protocol->binary;
    cfg.tls = &c->opt->tls;
    cfg.proxy = c->opt->proxy;
    cfg.cookies = c->jar;
    cfg.handshake = reattach ? NULL : hs.data;
    cfg.handshake_len = reattach ? 0 : hs.len;
    cfg.ping = ping.data;
    cfg.ping_len = ping.len;
    cfg.keepalive_ms = c->opt->keepalive_ms;
    cfg.server_timeout_ms = c->opt->server_timeout_ms;
    cfg.handshake_timeout_ms = reattach ? 0 : c->opt->handshake_timeout_ms;
    /* Parsing where the bytes are read spares the host thread; a trace
     * log shows the raw bytes instead, so it keeps them whole. */
    if (!SR_LOG_ON(&c->log, SR_LOG_TRACE)) {
        cfg.protocol = c->protocol;
        cfg.max_message_size = c->opt->max_message_size;
    }
    sr__logf(&c->log, SR_LOG_DEBUG, "opening %s transport%s", kinds[c->kind].name,
             reattach ? " (stateful reattach)" : "");
    c->attached = 0;
    c->tp_full = 0;
    c->reattaching = reattach;
    if (!reattach) c->handshake_done = 0;
    c->scanned = 0;
    sr__buf_reset(&c->in);
    c->tp_opened = 0;
    c->tp = c->tp_new[c->kind](c->loop, &cfg, &tp_upcalls, c, &err);
    if (!c->tp) {
        if (!err.code) err.code = SR_ETRANSPORT;
        if (!reattach) {
            transport_failed(c, &err);
            goto out;
        }
    }
    if (c->tp) goto out;
fail:
    if (!err.code) err.code = SR_ETRANSPORT;
    if (reattach) {
        c->reattaching = 0;
        connection_lost(c, &err, 0);
    } else {
        attempt_failed(c, &err);
    }
out:
    free(url);
    free(h);
    free(auth);
    free(cookie);
    sr__buf_free(&hs);
    sr__buf_free(&ping);
}

/* ----------------------------------------------------------- negotiate */

/* A redirect is the server's word: what is wrong with it is a negotiate
 * fault (never a usage error of the user's), and its URL is not echoed, as
 * it may carry credentials. 1 when refused (err set). */
static int redirect_refused(const char *url, const char *token, sr_error *err)
{
    const char *p, *host = strstr(url, "://");
    size_t hlen;
    if (token) {
        for (p = token; *p; p++) {
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                set_err(err, SR_ENEGOTIATE, 0,
                        "%sthe negotiate redirect's access token contains a control character "
                        "(a line break?), which cannot travel in a header",
                        "");
                return 1;
            }
        }
    }
    if (!host || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        set_err(err, SR_ENEGOTIATE, 0, "%sthe negotiate redirect URL is not an http(s) URL", "");
        return 1;
    }
    host += 3;
    hlen = strcspn(host, "/?#");
    if (memchr(host, '@', hlen)) {
        set_err(err, SR_ENEGOTIATE, 0,
                "%sthe negotiate redirect URL carries credentials (user:password@host); they are "
                "not used or shown",
                "");
        return 1;
    }
    return 0;
}

/* The kinds[] index to try next in this attempt, or -1: offered by the
 * server, requested, built, able to carry our format, not failed yet. */
static int next_kind(sr_conn *c)
{
    int i, want = c->opt->transports ? c->opt->transports : ALL_TRANSPORTS;
    for (i = 0; i < SR_NKINDS; i++) {
        const tp_kind *k = &kinds[i];
        if ((c->offered & want & k->mask) && c->tp_new[i] && !(c->failed_kinds & k->mask) &&
            (k->binary || !c->protocol->binary))
            return i;
    }
    return -1;
}

static void append_names(char *out, size_t cap, int mask, int built_only, const sr_conn *c)
{
    size_t n = strlen(out);
    int i, first = 1;
    for (i = 0; i < SR_NKINDS; i++) {
        if (!(mask & kinds[i].mask) || (built_only && !c->tp_new[i])) continue;
        n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s", first ? "" : ", ",
                              kinds[i].name);
        first = 0;
        if (n >= cap) return;
    }
    if (first) snprintf(out + n, n < cap ? cap - n : 0, "none");
}

/* Nothing to open: say what the server offered, what was asked for and
 * what this build has. */
static void no_transport_offered(sr_conn *c, int offered, sr_error *err)
{
    char m[400] = "unable to connect: none of the requested transports is available on the "
                  "server (server offers: ";
    append_names(m, sizeof m, offered, 0, c);
    snprintf(m + strlen(m), sizeof m - strlen(m), "; requested: ");
    append_names(m, sizeof m, c->opt->transports ? c->opt->transports : ALL_TRANSPORTS, 0, c);
    snprintf(m + strlen(m), sizeof m - strlen(m), "; this build: ");
    append_names(m, sizeof m, ALL_TRANSPORTS, 1, c);
    snprintf(m + strlen(m), sizeof m - strlen(m), "%s)",
             c->protocol->binary ? "; binary format" : "");
    set_err(err, SR_ETRANSPORT, 0, "%s", m);
}

/* Every kind tried failed to start: the error lists each one's reason (a
 * single one keeps its own error as it was). */
static void no_transport_left(sr_conn *c)
{
    sr_error err;
    set_err(&err, SR_ETRANSPORT, 0,
            "unable to connect to the server with any of the available transports: %.420s",
            c->tp_errors ? c->tp_errors : "(out of memory for the reasons)");
    attempt_failed(c, &err);
}

/* The transport of this attempt failed before it opened: remember why,
 * then negotiate again for the next kind (the connection token is spent,
 * as the official clients do), or fail the attempt. */
static void transport_failed(sr_conn *c, const sr_error *err)
{
    size_t n;
    int single = c->failed_kinds == 0;
    c->failed_kinds |= kinds[c->kind].mask;
    if (!c->tp_errors && (c->tp_errors = malloc(TP_ERRORS_SIZE)) != NULL) c->tp_errors[0] = '\0';
    if (c->tp_errors) {
        n = strlen(c->tp_errors);
        snprintf(c->tp_errors + n, TP_ERRORS_SIZE - n, "%s%s failed: %s", n ? "; " : "",
                 kinds[c->kind].name, err->message);
    }
    if (c->opt->skip_negotiation || next_kind(c) < 0) {
        if (single)
            attempt_failed(c, err);
        else
            no_transport_left(c);
        return;
    }
    sr__logf(&c->log, SR_LOG_WARNING, "failed to start the %s transport (%s); trying the next one",
             kinds[c->kind].name, err->message);
    start_negotiate(c);
}

static void negotiate_done_body(sr_conn *c, long status, const char *body, size_t len,
                                const sr_error *herr)
{
    sr_negotiation n;
    sr_error err;
    int offered, usable; /* usable: the kinds[] index to open, or -1 */
    c->negotiate_req = NULL;
    if (herr) {
        char msg[sizeof err.message];
        err = *herr;
        if (err.code != SR_ETIMEOUT) err.code = SR_ETRANSPORT;
        if (err.code == SR_ETIMEOUT)
            snprintf(msg, sizeof msg,
                     "negotiate timed out: no answer within the handshake timeout (%.0f ms)",
                     c->opt->handshake_timeout_ms);
        else
            snprintf(msg, sizeof msg, "negotiate request failed: %.400s", herr->message);
        memcpy(err.message, msg, sizeof msg);
        attempt_failed(c, &err);
        return;
    }
    if (status != 200) {
        memset(&err, 0, sizeof err);
        err.code = SR_ENEGOTIATE;
        err.status = status;
        /* Only a proxy answers 407 (the proxy option or the environment's). */
        snprintf(err.message, sizeof err.message, "negotiate failed: the %s answered HTTP %ld%s",
                 status == 407 ? "proxy" : "server", status,
                 status == 404   ? " (Not Found: is the hub URL right?)"
                 : status == 401 ? " (Unauthorized)"
                 : status == 407 ? " (Proxy Authentication Required: its credentials are missing "
                                   "or wrong)"
                                 : "");
        attempt_failed(c, &err);
        return;
    }
    memset(&n, 0, sizeof n);
    memset(&err, 0, sizeof err);
    if (sr__negotiate_parse(body, len, &n, &err) != SR_OK) {
        err.code = SR_ENEGOTIATE;
        err.status = status;
        attempt_failed(c, &err);
        return;
    }
    if (n.redirect_url) {
        if (++c->redirects > MAX_REDIRECTS) {
            sr__negotiation_clear(&n);
            set_err(&err, SR_ENEGOTIATE, status, "%snegotiate redirected too many times", "");
            attempt_failed(c, &err);
            return;
        }
        if (redirect_refused(n.redirect_url, n.access_token, &err)) {
            sr__negotiation_clear(&n);
            err.status = status;
            attempt_failed(c, &err);
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
    offered = c->protocol->binary ? n.transports_binary : n.transports;
    c->offered = offered;
    usable = next_kind(c);
    /* Stateful reconnect needs both sides to agree, and a transport that
     * can reattach (WebSockets). */
    c->stateful = c->opt->stateful && n.stateful_reconnect && usable >= 0 && kinds[usable].stateful;
    if (c->opt->stateful && !n.stateful_reconnect)
        sr__logf(&c->log, SR_LOG_WARNING,
                 "the server did not agree to stateful reconnect; connecting without it");
    else if (c->opt->stateful && usable >= 0 && !kinds[usable].stateful)
        sr__logf(&c->log, SR_LOG_WARNING,
                 "stateful reconnect needs WebSockets; connecting over %s without it",
                 kinds[usable].name);
    sr__negotiation_clear(&n);
    if (usable >= 0) {
        c->kind = usable;
        open_transport(c, 0);
        return;
    }
    if (c->failed_kinds) {
        no_transport_left(c);
        return;
    }
    no_transport_offered(c, offered, &err);
    attempt_failed(c, &err);
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
    uint64_t g = c->gen;
    sr_header *h = request_headers(c, &auth, NULL, &nh); /* may run the user's token function */
    char *url = sr__negotiate_url(c->url, c->opt->stateful);
    memset(&err, 0, sizeof err);
    if (stale(c, g)) {
        free(url);
        free(h);
        free(auth);
        return;
    }
    if (!h || !url || !need_jar(c)) {
        set_err(&err, SR_ENOMEM, 0, "%sout of memory", "");
    } else {
        memset(&o, 0, sizeof o);
        o.method = "POST";
        o.url = url;
        o.headers = h;
        o.nheaders = nh;
        o.tls = &c->opt->tls;
        o.proxy = c->opt->proxy;
        o.cookies = c->jar;
        /* Connecting is one phase to the user: the handshake timeout bounds
         * the negotiate too, instead of libcurl's or a fixed 100 s. */
        o.timeout_ms = c->opt->handshake_timeout_ms;
        sr__logf(&c->log, SR_LOG_DEBUG, "negotiating with %s", c->url);
        c->negotiate_req = sr__http_request(c->loop, &o, negotiate_done, c, &err);
    }
    free(url);
    free(h);
    free(auth);
    if (!c->negotiate_req) {
        if (!err.code) err.code = SR_ETRANSPORT;
        attempt_failed(c, &err);
    }
}

/* ------------------------------------------------------------ lifecycle */

/* Drop whatever network the current step has (request, transport). */
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
    c->attached = 0;
    c->reattaching = 0;
    c->tp_full = 0;
    sr__buf_reset(&c->in);
    c->scanned = 0;
    drop_held(c);
}

static void cancel_timer(sr_conn *c, uint64_t *t)
{
    if (*t) {
        sr_loop_cancel_timer(c->loop, *t);
        *t = 0;
    }
}

static void cancel_timers(sr_conn *c)
{
    cancel_timer(c, &c->stop_timer);
    cancel_timer(c, &c->retry_timer);
    cancel_timer(c, &c->ack_timer);
    cancel_timer(c, &c->wr_timer);
}

static void stateful_reset(sr_conn *c)
{
    c->stateful = 0;
    replay_clear(c);
    c->send_seq = 0;
    c->recv_next = 1;
    c->recv_latest = 0;
    c->acked = 0;
    c->rx_unacked = 0;
    cancel_timer(c, &c->ack_timer);
}

/* One try at a connection: negotiate (unless skipped), transport,
 * handshake. Ends in attempt_connected or attempt_failed. */
static void begin_attempt(sr_conn *c)
{
    char *url = strdup(c->opt->url);
    sr_error err;
    c->gen++;
    drop_network(c);
    stateful_reset(c);
    if (!url) {
        set_err(&err, SR_ENOMEM, 0, "%sout of memory", "");
        attempt_failed(c, &err);
        return;
    }
    free(c->url);
    c->url = url;
    free(c->connection_id);
    free(c->connection_token);
    free(c->redirect_token);
    c->connection_id = c->connection_token = c->redirect_token = NULL;
    c->redirects = 0;
    c->handshake_done = 0;
    c->kind = 0; /* skip_negotiation: WebSockets */
    c->offered = 0;
    c->failed_kinds = 0;
    clear_tp_errors(c);
    if (c->test_token) {
        c->connection_token = dupstr(c->test_token);
        c->stateful = c->opt->stateful;
    }
    if (c->opt->skip_negotiation)
        open_transport(c, 0);
    else
        start_negotiate(c);
}

static void fail_pending(sr_conn *c, sr_pending *old, const sr_error *cause)
{
    sr_error err;
    size_t i;
    memset(&err, 0, sizeof err);
    err.code = SR_ECLOSED;
    if (cause)
        snprintf(err.message, sizeof err.message, CANCELED_TEXT " Cause: %.400s", cause->message);
    else
        snprintf(err.message, sizeof err.message, CANCELED_TEXT);
    for (i = 0; i < old->cap; i++) {
        if (old->slots[i].id && !c->dead) old->slots[i].done(old->slots[i].ud, &err, NULL);
    }
    sr__pending_free(old);
}

/* Take the pending table out (callbacks may start new invocations). */
static sr_pending take_pending(sr_conn *c)
{
    sr_pending old = c->pending;
    memset(&c->pending, 0, sizeof c->pending);
    /* The server forgot the calls, and with them their uploads. */
    sr__pending_free(&c->uploads);
    c->upload_floor = c->next_id;
    return old;
}

/* Writable waiters of a connection that can no longer send: kind closed. */
static void fail_writable_waiters(sr_conn *c, waiters *w, const sr_error *cause)
{
    sr_error err;
    set_err(&err, SR_ECLOSED, 0, "%s", cause ? cause->message : "the connection closed");
    waiters_run(c, w, &err);
}

/* The end of a lifetime: drop the network, become disconnected, tell the
 * user (on_close only when it had connected: a failed start raises no close
 * event, as with the official clients), then complete what waited. err NULL
 * = a clean stop. */
static void closed(sr_conn *c, const sr_error *err)
{
    waiter start = c->start_waiter;
    waiters stops = c->stop_waiters;
    waiters wr = c->wr_waiters;
    sr_pending pend;
    sr_error se;
    int was_connected = c->was_connected;
    if (c->state == SR_STATE_DISCONNECTED) return;
    c->closing = 1;
    drop_network(c);
    stateful_reset(c);
    cancel_timers(c);
    c->start_waiter.fn = NULL;
    memset(&c->stop_waiters, 0, sizeof c->stop_waiters);
    memset(&c->wr_waiters, 0, sizeof c->wr_waiters);
    pend = take_pending(c);
    if (err && was_connected)
        sr__logf(&c->log, SR_LOG_INFORMATION, "connection closed with an error: %s", err->message);
    c->was_connected = 0;
    c->handshake_done = 0;
    /* A state callback that restarted the connection made this close
     * stale: on_close must not report on the new attempt. */
    if (set_state(c, SR_STATE_DISCONNECTED) && was_connected && c->on_close)
        c->on_close(c->on_close_ud, c, err);
    fail_pending(c, &pend, err);
    fail_writable_waiters(c, &wr, err);
    if (start.fn && !c->dead) {
        if (err)
            se = *err;
        else
            set_err(&se, SR_ECANCELED, 0, "%sthe connection was stopped before it was started", "");
        start.fn(start.ud, &se, NULL);
    }
    waiters_run(c, &stops, NULL);
}

/* The retry policy: delay in ms, or < 0 to give up. reason is the loss or
 * the last attempt's failure, the caller's copy: the policy reads it during
 * the call only, so the connection keeps no copy (528 bytes each). It is a
 * user callback: the caller checks the generation afterwards. */
static double next_delay(sr_conn *c, const sr_error *reason)
{
    sr_retry_context ctx;
    if (c->opt->retry_fn) {
        ctx.previous_retry_count = c->retries;
        ctx.elapsed_ms = now_ms() - c->retry_start;
        ctx.retry_reason = reason;
        return c->opt->retry_fn(c->opt->retry_ud, &ctx);
    }
    return c->retries < c->opt->ndelays ? c->opt->delays_ms[c->retries] : -1.0;
}

static void retry_timer_fired(void *ud)
{
    sr_conn *c = ud;
    c->retry_timer = 0;
    if (c->state != SR_STATE_RECONNECTING) return;
    hold(c);
    sr__logf(&c->log, SR_LOG_INFORMATION, "reconnect attempt %llu",
             (unsigned long long)c->retries + 1);
    begin_attempt(c);
    release(c);
}

static void schedule_attempt(sr_conn *c, double delay)
{
    sr_error err;
    sr__logf(&c->log, SR_LOG_DEBUG, "next reconnect attempt in %.0f ms", delay);
    c->retry_timer = sr_loop_add_timer(c->loop, delay, retry_timer_fired, c);
    if (!c->retry_timer) {
        set_err(&err, SR_ENOMEM, 0, "%sout of memory scheduling a reconnect", "");
        closed(c, &err);
    }
}

/* A connected connection lost its transport (or the server closed it with
 * allowReconnect). Stateful: reattach, staying connected. Else reconnect
 * when enabled, or close. */
static void connection_lost(sr_conn *c, const sr_error *err, int may_reattach)
{
    sr_pending pend;
    sr_error reason = *err;
    double delay;
    uint64_t g;
    drop_network(c);
    if (c->state == SR_STATE_DISCONNECTING) {
        closed(c, NULL); /* the user is stopping anyway */
        return;
    }
    if (may_reattach && c->stateful && c->connection_token && c->state == SR_STATE_CONNECTED) {
        sr__logf(&c->log, SR_LOG_INFORMATION, "transport lost (%s); reattaching", reason.message);
        c->gen++;
        open_transport(c, 1);
        return;
    }
    stateful_reset(c);
    if (!c->opt->reconnect || c->state != SR_STATE_CONNECTED) {
        sr__logf(&c->log, SR_LOG_ERROR, "connection lost: %s", reason.message);
        closed(c, &reason);
        return;
    }
    c->retries = 0;
    c->retry_start = now_ms();
    g = ++c->gen;
    delay = next_delay(c, &reason);
    if (stale(c, g)) return;
    if (delay < 0) {
        sr__logf(&c->log, SR_LOG_INFORMATION,
                 "connection not reconnecting: the retry policy returned no delay for the first "
                 "attempt");
        closed(c, &reason);
        return;
    }
    sr__logf(&c->log, SR_LOG_WARNING, "connection lost, reconnecting: %s", reason.message);
    pend = take_pending(c);
    if (!set_state(c, SR_STATE_RECONNECTING)) {
        fail_pending(c, &pend, &reason);
        return;
    }
    g = c->gen;
    fail_pending(c, &pend, &reason);
    if (stale(c, g)) return;
    cancel_timer(c, &c->wr_timer);
    fail_writable_waiters(c, &c->wr_waiters, &reason);
    if (stale(c, g)) return;
    if (c->on_reconnecting) c->on_reconnecting(c->on_reconnecting_ud, c, &reason);
    if (stale(c, g)) return;
    schedule_attempt(c, delay);
}

/* An attempt failed before its handshake completed: a start fails for
 * good (never retried); a reconnect attempt asks the policy. */
static void attempt_failed(sr_conn *c, const sr_error *err)
{
    sr_error reason = *err;
    double delay;
    uint64_t g;
    drop_network(c);
    if (c->state != SR_STATE_RECONNECTING) {
        closed(c, &reason);
        return;
    }
    sr__logf(&c->log, SR_LOG_WARNING, "reconnect attempt %llu failed: %s",
             (unsigned long long)c->retries + 1, reason.message);
    c->retries++;
    g = ++c->gen;
    delay = next_delay(c, &reason);
    if (stale(c, g)) return;
    if (delay < 0) {
        sr_error fin = reason;
        snprintf(fin.message, sizeof fin.message,
                 "Reconnect retries have been exhausted after %llu failed attempts and %.3f s "
                 "elapsed. Disconnecting. Last error: %.300s",
                 (unsigned long long)c->retries, (now_ms() - c->retry_start) / 1000.0,
                 reason.message);
        closed(c, &fin);
        return;
    }
    schedule_attempt(c, delay);
}

static void stop_timer_fired(void *ud)
{
    sr_conn *c = ud;
    c->stop_timer = 0;
    hold(c);
    sr__logf(&c->log, SR_LOG_WARNING, "the transport did not close in time; dropping it");
    closed(c, NULL);
    release(c);
}

/* ------------------------------------------------------------- public */

sr_conn *sr_conn_new(sr_loop *loop, const sr_options *o, sr_error *err)
{
    sr_conn *c;
    const char *url = o ? o->url : NULL;
    if (err) memset(err, 0, sizeof *err);
    if (!loop || !url || !*url) {
        set_err(err, SR_EUSAGE, 0, "%sa hub URL is required", "");
        return NULL;
    }
    if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8) &&
        strncasecmp(url, "ws://", 5) && strncasecmp(url, "wss://", 6)) {
        set_err(err, SR_EUSAGE, 0, "the hub URL must start with http:// or https:// (got '%s')",
                url);
        return NULL;
    }
    if (!sr__protocol_find(o->protocol ? o->protocol : "json")) {
        set_err(err, SR_EUSAGE, 0, "unknown hub protocol '%s'", o->protocol);
        return NULL;
    }
    if (o->skip_negotiation && o->transports != SR_TRANSPORT_WEBSOCKETS) { /* 0 is all */
        set_err(err, SR_EUSAGE, 0,
                "%sskip_negotiation needs the WebSockets transport alone (transports = "
                "\"websockets\")",
                "");
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (!c || !(c->opt = sr__options_dup(o)) || !(c->jar = sr__cookie_jar_new())) {
        if (c) sr_options_free(c->opt);
        free(c);
        set_err(err, SR_ENOMEM, 0, "%sout of memory", "");
        return NULL;
    }
    c->loop = loop;
    c->refs = 1;
    c->tp_new[0] = sr__ws_transport_new;
    c->tp_new[1] = sr__sse_transport_new;
    c->tp_new[2] = sr__lp_transport_new;
    c->protocol = sr__protocol_find(c->opt->protocol ? c->opt->protocol : "json");
    c->log.fn = c->opt->log;
    c->log.ud = c->opt->log_ud;
    c->log.level = c->opt->log_level;
    c->state = SR_STATE_DISCONNECTED;
    c->recv_next = 1;
    return c;
}

static void destroy(sr_conn *c)
{
    drop_network(c);
    cancel_timers(c);
    replay_clear(c);
    clear_tp_errors(c);
    sr__cookie_jar_unref(c->jar); /* freed once the last request let go of it */
    sr_options_free(c->opt);
    free(c->url);
    free(c->connection_id);
    free(c->connection_token);
    free(c->redirect_token);
    free(c->test_token);
    free(c->stop_waiters.v);
    free(c->wr_waiters.v);
    sr__pending_free(&c->pending);
    sr__pending_free(&c->uploads);
    sr__held_clear(&c->held);
    sr__buf_free(&c->in);
    sr__buf_free(&c->enc);
    free(c);
}

void sr_conn_free(sr_conn *c)
{
    if (!c || c->dead) return;
    c->dead = 1;
    c->gen++;
    /* No user callback runs from here on (every call site checks dead). */
    c->on_invocation = NULL;
    c->on_close = NULL;
    c->on_state = NULL;
    c->on_reconnecting = NULL;
    c->on_reconnected = NULL;
    c->start_waiter.fn = NULL;
    free(c->stop_waiters.v);
    memset(&c->stop_waiters, 0, sizeof c->stop_waiters);
    free(c->wr_waiters.v);
    memset(&c->wr_waiters, 0, sizeof c->wr_waiters);
    drop_network(c);
    cancel_timers(c);
    sr__pending_free(&c->pending);
    sr__pending_free(&c->uploads);
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
    if (c->dead || c->state != SR_STATE_DISCONNECTED) return SR_EUSAGE;
    c->closing = 0;
    c->was_connected = 0;
    c->start_waiter.fn = done;
    c->start_waiter.ud = ud;
    /* Said at every start, on the connection's own log, so it cannot go
     * unnoticed while it stays set. */
    if (c->opt->tls.insecure)
        sr__logf(&c->log, SR_LOG_WARNING,
                 "TLS verification is off (tls verify = false): the server's certificate and host "
                 "name are not checked, so anyone on the network path can pose as the server");
    hold(c);
    if (set_state(c, SR_STATE_CONNECTING)) begin_attempt(c);
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
    if (done && waiters_add(&c->stop_waiters, done, ud) != SR_OK) return SR_ENOMEM;
    if (c->state == SR_STATE_DISCONNECTING) return SR_OK;
    hold(c);
    if (c->state == SR_STATE_CONNECTED && c->tp && c->attached) {
        sr_msg m;
        c->closing = 1;
        cancel_timer(c, &c->ack_timer);
        if (set_state(c, SR_STATE_DISCONNECTING) && c->tp) {
            memset(&m, 0, sizeof m);
            m.type = SR_MSG_CLOSE;
            send_msg(c, &m);
            sr__transport_close(c->tp);
            c->stop_timer = sr_loop_add_timer(c->loop, STOP_TIMEOUT_MS, stop_timer_fired, c);
        }
    } else {
        /* Connecting, reconnecting or reattaching: give up at once. */
        closed(c, NULL);
    }
    release(c);
    return SR_OK;
}

/* Invocations may be written while connected, also while a stateful
 * connection is reattaching (they are buffered and replayed). */
static int can_send(const sr_conn *c)
{
    return c->state == SR_STATE_CONNECTED && !c->closing && (c->attached || c->reattaching);
}

/* The decimal text of an invocation id; size >= 21. Every call formats
 * one, and snprintf cost about 1,000 instructions of the ~35,000 a whole
 * invoke takes in user space. */
static void id_text(char *buf, size_t size, uint64_t id)
{
    char tmp[20];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + id % 10);
        id /= 10;
    } while (id);
    for (i = 0; i < n && i + 1 < size; i++)
        buf[i] = tmp[n - 1 - i];
    if (size) buf[i] = '\0';
}

/* Forget the calls sr_conn_call registered before it failed. */
static void unregister(sr_conn *c, uint64_t id, const uint64_t *uploads, size_t n)
{
    sr_pending_entry e;
    size_t i;
    if (id) sr__pending_take(&c->pending, id, &e);
    for (i = 0; i < n; i++)
        sr__pending_take(&c->uploads, uploads[i], &e);
}

int sr_conn_call(sr_conn *c, sr_call_kind kind, const char *target, const sr_value *args,
                 size_t nuploads, uint64_t *upload_ids, sr_item_fn on_item, sr_done_fn done,
                 void *ud, uint64_t *id_out)
{
    char id[24];
    uint64_t n = 0;
    size_t i;
    sr_msg m;
    sr_value *sids = NULL;
    int rc;
    if (!target || (kind != SR_CALL_SEND && !done) || (kind == SR_CALL_STREAM && !on_item) ||
        (unsigned)kind > SR_CALL_STREAM || (nuploads && !upload_ids))
        return SR_EUSAGE;
    /* NULL arguments are written as [] by the protocol. */
    if (args && sr_value_type(args) != SR_ARRAY) return SR_EUSAGE;
    if (!can_send(c)) return SR_ECLOSED;
    memset(&m, 0, sizeof m);
    m.type = kind == SR_CALL_STREAM ? SR_MSG_STREAM_INVOCATION : SR_MSG_INVOCATION;
    m.target = (char *)target;
    m.arguments = (sr_value *)args;
    if (nuploads) {
        /* Stream ids come before the call's own id, as the official
         * clients number them. */
        if (!(sids = sr_value_array())) return SR_ENOMEM;
        for (i = 0; i < nuploads; i++) {
            char sid[24];
            upload_ids[i] = c->next_id + 1 + i;
            id_text(sid, sizeof sid, upload_ids[i]);
            if (sr_value_array_push(sids, sr_value_string(sid, strlen(sid))) != SR_OK ||
                sr__pending_put(&c->uploads, upload_ids[i], NULL, NULL, NULL) != SR_OK) {
                unregister(c, 0, upload_ids, i + 1);
                sr_value_free(sids);
                return SR_ENOMEM;
            }
        }
        m.stream_ids = sids;
    }
    if (kind != SR_CALL_SEND) {
        n = c->next_id + 1 + nuploads;
        if (sr__pending_put(&c->pending, n, done, kind == SR_CALL_STREAM ? on_item : NULL, ud) !=
            SR_OK) {
            unregister(c, 0, upload_ids, nuploads);
            sr_value_free(sids);
            return SR_ENOMEM;
        }
        id_text(id, sizeof id, n);
        m.invocation_id = id;
    }
    rc = send_msg(c, &m);
    sr_value_free(sids);
    if (rc != SR_OK) {
        unregister(c, n, upload_ids, nuploads);
        return rc;
    }
    c->next_id += nuploads + (n ? 1 : 0);
    if (n && SR_LOG_ON(&c->log, SR_LOG_DEBUG))
        sr__logf(&c->log, SR_LOG_DEBUG, "%s '%s' (id %s)",
                 kind == SR_CALL_STREAM ? "streaming" : "invoking", target, id);
    if (id_out) *id_out = n;
    return SR_OK;
}

int sr_conn_invoke(sr_conn *c, const char *target, const sr_value *args, sr_done_fn done, void *ud,
                   uint64_t *id_out)
{
    return sr_conn_call(c, SR_CALL_INVOKE, target, args, 0, NULL, NULL, done, ud, id_out);
}

int sr_conn_stream(sr_conn *c, const char *target, const sr_value *args, sr_item_fn on_item,
                   sr_done_fn done, void *ud, uint64_t *id_out)
{
    return sr_conn_call(c, SR_CALL_STREAM, target, args, 0, NULL, on_item, done, ud, id_out);
}

int sr_conn_send(sr_conn *c, const char *target, const sr_value *args)
{
    return sr_conn_call(c, SR_CALL_SEND, target, args, 0, NULL, NULL, NULL, NULL, NULL);
}

/* An upload id that is not open: closed by its owner (usage), or lost
 * with the connection it was opened on. */
static int upload_gone(const sr_conn *c, uint64_t id)
{
    return id && id <= c->upload_floor ? SR_ECLOSED : SR_EUSAGE;
}

int sr_conn_upload_write(sr_conn *c, uint64_t upload_id, const sr_value *item)
{
    char sid[24];
    sr_msg m;
    sr_value *null = NULL;
    int rc;
    if (!sr__pending_find(&c->uploads, upload_id)) return upload_gone(c, upload_id);
    if (!can_send(c)) return SR_ECLOSED;
    if (!item && !(item = null = sr_value_null())) return SR_ENOMEM;
    memset(&m, 0, sizeof m);
    m.type = SR_MSG_STREAM_ITEM;
    id_text(sid, sizeof sid, upload_id);
    m.invocation_id = sid;
    m.item = (sr_value *)item;
    rc = send_msg(c, &m);
    sr_value_free(null);
    return rc;
}

int sr_conn_upload_close(sr_conn *c, uint64_t upload_id, const char *error)
{
    char sid[24];
    sr_msg m;
    sr_pending_entry e;
    int rc;
    if (!sr__pending_find(&c->uploads, upload_id)) {
        rc = upload_gone(c, upload_id);
        return rc == SR_ECLOSED ? SR_OK : rc;
    }
    if (!can_send(c)) {
        /* Nothing to tell a server that lost the call; the id is spent. */
        sr__pending_take(&c->uploads, upload_id, &e);
        return SR_OK;
    }
    memset(&m, 0, sizeof m);
    m.type = SR_MSG_COMPLETION;
    id_text(sid, sizeof sid, upload_id);
    m.invocation_id = sid;
    m.error = (char *)error;
    rc = send_msg(c, &m);
    /* Full: the caller retries after sr_conn_wait_writable; the id stays. */
    if (rc != SR_EFULL) sr__pending_take(&c->uploads, upload_id, &e);
    return rc;
}

int sr_conn_complete(sr_conn *c, const char *invocation_id, const sr_value *result,
                     const char *error)
{
    if (!invocation_id || !*invocation_id) return SR_EUSAGE;
    if (!can_send(c)) return SR_ECLOSED;
    return complete_server_call(c, invocation_id, result, error);
}

int sr_conn_cancel(sr_conn *c, uint64_t id)
{
    sr_pending_entry e;
    sr_error err;
    char sid[24];
    if (!sr__pending_take(&c->pending, id, &e)) return SR_EUSAGE;
    if (can_send(c)) {
        sr_msg m;
        memset(&m, 0, sizeof m);
        m.type = SR_MSG_CANCEL_INVOCATION;
        id_text(sid, sizeof sid, id);
        m.invocation_id = sid;
        send_msg(c, &m);
    }
    set_err(&err, SR_ECANCELED, 0, "%sthe invocation was canceled", "");
    e.done(e.ud, &err, NULL);
    return SR_OK;
}

int sr_conn_wait_writable(sr_conn *c, sr_done_fn fn, void *ud)
{
    if (!fn) return SR_EUSAGE;
    if (!can_send(c)) return SR_ECLOSED;
    if (waiters_add(&c->wr_waiters, fn, ud) != SR_OK) return SR_ENOMEM;
    schedule_writable(c);
    return SR_OK;
}

void sr__conn_set_ws_factory(sr_conn *c, sr_transport_new_fn fn)
{
    c->tp_new[0] = fn ? fn : sr__ws_transport_new;
}

void sr__conn_test_stateful(sr_conn *c, const char *token)
{
    c->test_token = dupstr(token);
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

void sr_conn_on_reconnecting(sr_conn *c, sr_reconnecting_fn fn, void *ud)
{
    c->on_reconnecting = fn;
    c->on_reconnecting_ud = ud;
}

void sr_conn_on_reconnected(sr_conn *c, sr_reconnected_fn fn, void *ud)
{
    c->on_reconnected = fn;
    c->on_reconnected_ud = ud;
}
