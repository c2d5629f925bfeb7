/*
 * sse_transport.c - the Server-Sent Events transport: a GET whose response
 * is a text/event-stream (receiving) and one POST at a time (sending), both
 * on the loop's HTTP thread (http_io.h).
 *
 * What it owns: per transport, the GET's easy handle (created and
 * configured on the host so bad options fail at once), the sender of
 * http_send.h (the POST, configured there too and re-added for every
 * batch), the GET's header list, the event
 * stream parser (sse.c), one liveness (liveness.c) and one HTTP-thread
 * timer that drives it.
 *
 * Threads and ownership:
 *  - Everything marked "thread" runs on the HTTP thread only: jobs,
 *    completions, the timer, and libcurl's write and header callbacks. The
 *    host talks to it through command bits (cmds, http_io.h): one job,
 *    queued at most once at a time, holding a reference while queued.
 *  - The I/O side holds a reference from sr__sse_transport_new until
 *    detach(), which removes whatever transfer is still in the multi,
 *    cleans up both easy handles and disarms the timer. It runs when the
 *    GET ends (for any reason, including the loop being freed: the HTTP
 *    thread completes it as aborted), on release, and on a failure.
 *  - libcurl callbacks never add or remove handles (libcurl forbids it):
 *    the GET's header callback only marks the stream open and arms the
 *    timer due now; the timer sends the handshake POST.
 *  - Exactly one SR_EV_TP_CLOSED per transport; SR_EV_TP_OPEN only before
 *    it, and before any data (it is posted from the header callback, which
 *    libcurl runs before the first write callback).
 *  - Sends: exactly one POST outstanding. The handshake goes alone, first;
 *    after it every POST carries the whole send queue as it stood when the
 *    previous POST was answered (sr__transport_take). After the host asks
 *    to close, the queue is still sent, for up to CLOSE_GRACE_US, and then
 *    the GET is ended: the end is clean (code 0) whatever happens meanwhile.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framing.h"
#include "http_io.h"
#include "http_send.h"
#include "liveness.h"
#include "sse.h"
#include "transport_kind.h"

/* An event's text larger than this is a protocol error: it bounds the memory
 * a broken stream can take. One message's own limit is the decoder's. */
#define EVENT_MAX ((size_t)64 << 20)
/* From starting the GET to its response headers (DNS, TCP, TLS, and a
 * server that accepts and does not answer), as the WebSocket kind. */
#define CONNECT_TIMEOUT_US (20u * 1000000u)
/* After a close was asked for, queued sends get this long to go out. */
#define CLOSE_GRACE_US (5u * 1000000u)

enum {
    ST_IDLE,       /* created, SR_HTTP_CMD_OPEN not handled yet */
    ST_CONNECTING, /* the GET is in the multi, no 200 headers yet */
    ST_OPEN,       /* 200 headers arrived: OPEN posted */
    ST_DONE        /* detached: the I/O side is finished with it */
};

typedef struct sse_tp {
    sr_transport base; /* first: sr_transport* and sse_tp* convert */
    sr_http_io *io;

    /* Constant after sr__sse_transport_new. */
    char *url;   /* http(s), with the query */
    char *where; /* the URL without its query (it holds the token), for messages */
    char *hs;
    size_t hs_len;
    char *ping;
    size_t ping_len;
    struct curl_slist *get_hdrs;

    sr_http_cmds cmds; /* the host's commands (http_io.h) */

    /* Thread only. */
    int state;
    sr_http_xfer get;
    int get_active;
    sr_http_send send; /* the POSTs */
    sr_http_timer timer;
    uint64_t connect_deadline, close_deadline;
    int closing; /* the host asked to close, the queue is being sent */
    int paused;  /* the GET is paused under backpressure */
    long get_status;
    int saw_location; /* the GET's header block being read has one */
    int rx_code;      /* a receive failure (SR_E*) that ended the GET, or 0 */
    char rx_err[160];
    sr_liveness live;
    sr_sse parser;
    char get_err[CURL_ERROR_SIZE];
} sse_tp;

static const sr_transport_ops sse_ops;

static void set_err(sr_error *err, int code, const char *msg)
{
    if (!err) return;
    err->code = code;
    err->status = 0;
    snprintf(err->message, sizeof err->message, "%s", msg);
}

/* ------------------------------------------------------ I/O-side lifetime */

/* Thread. The I/O side is done with tp: stop its transfers and timer, drop
 * the I/O reference. tp may be freed on return. */
static void detach(sse_tp *tp)
{
    if (tp->state == ST_DONE) return;
    tp->state = ST_DONE;
    sr__http_timer_cancel(tp->io, &tp->timer);
    if (tp->get_active) sr__http_xfer_remove(tp->io, &tp->get);
    tp->get_active = 0;
    /* Cleaned up here, on the thread that used them. */
    sr__http_xfer_cleanup(&tp->get);
    sr__http_send_stop(&tp->send);
    sr__sse_free(&tp->parser);
    sr__transport_unref(&tp->base);
}

/* Thread. Post the one SR_EV_TP_CLOSED (clean after the host asked to
 * close) and detach. */
static void fail(sse_tp *tp, int code, long status, const char *text)
{
    sr__transport_post_end(&tp->base, code, status, text);
    detach(tp);
}

/* ------------------------------------------------------------ sending */

/* Thread: start the next POST when none is outstanding and there is
 * something to send; end a close whose queue went out. tp may be freed. */
static void pump(sse_tp *tp)
{
    char msg[600];
    int r;
    if (tp->state != ST_OPEN) return;
    r = sr__http_send_pump(&tp->send, msg, sizeof msg);
    if (r < 0)
        fail(tp, SR_ETRANSPORT, 0, msg);
    else if (r == 0 && tp->closing)
        fail(tp, SR_OK, 0, NULL);
}

static void post_done(sr_http_send *s, int code, long status, const char *text)
{
    sse_tp *tp = s->owner;
    if (code == SR_ECANCELED) return; /* the loop is going; the GET ends too */
    if (code != SR_OK) {
        fail(tp, code, status, text);
        return;
    }
    pump(tp);
}

/* ------------------------------------------------------------ receiving */

static void arm(sse_tp *tp, uint64_t due)
{
    sr__http_timer_arm(tp->io, &tp->timer, due);
}

static int on_event(void *ud, const char *data, size_t len)
{
    sse_tp *tp = ud;
    if (len && sr__transport_post_data(&tp->base, data, len) != 0) {
        tp->rx_code = SR_ENOMEM;
        snprintf(tp->rx_err, sizeof tp->rx_err, "out of memory receiving SSE events");
        return -1;
    }
    return 0;
}

/* Thread, libcurl: one piece of the GET's body. */
static size_t get_write(char *p, size_t size, size_t n, void *ud)
{
    sse_tp *tp = ud;
    size_t len = size * n;
    sr_error err;
    int rc;
    if (tp->state != ST_OPEN) return 0; /* not a 200: ended in the completion */
    if (sr__transport_backpressure(&tp->base)) {
        /* Backpressure: nothing of this piece is consumed (libcurl hands it
         * over again when unpaused), and the silence is ours. */
        if (!tp->paused) {
            tp->paused = 1;
            sr__liveness_pause(&tp->live, sr__liveness_clock());
        }
        tp->get.paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    sr__liveness_rx(&tp->live, sr__liveness_clock(),
                    sr__liveness_awaiting_handshake(&tp->live) &&
                        memchr(p, SR_RECORD_SEPARATOR, len) != NULL);
    rc = sr__sse_feed(&tp->parser, p, len, on_event, tp, &err);
    if (rc != 0) {
        if (!tp->rx_code) { /* on_event sets its own */
            tp->rx_code = rc;
            snprintf(tp->rx_err, sizeof tp->rx_err, "%.150s", err.message);
        }
        return 0; /* CURLE_WRITE_ERROR: the completion reports rx_err */
    }
    return len;
}

static void get_resumed(sr_http_io *io, sr_http_xfer *x)
{
    sse_tp *tp = (sse_tp *)(void *)((char *)x - offsetof(sse_tp, get));
    uint64_t now = sr__liveness_clock();
    (void)io;
    if (!tp->paused) return;
    tp->paused = 0;
    sr__liveness_resume(&tp->live, now);
    arm(tp, now); /* the server timeout runs again, from now */
}

/* Thread, libcurl: one header line of the GET. Only the final response's
 * block counts: not a 1xx, not a redirect libcurl follows. */
static size_t get_header(char *p, size_t size, size_t n, void *ud)
{
    sse_tp *tp = ud;
    size_t len = size * n;
    long status;
    uint64_t now;
    if (tp->state != ST_CONNECTING) return len;
    status = sr__http_final_status(&tp->get, p, len, &tp->saw_location);
    if (!status) return len; /* not the end of the final response's headers */
    tp->get_status = status;
    if (status != 200) return 0; /* ended; the completion names the status */
    tp->state = ST_OPEN;
    now = sr__liveness_clock();
    sr__liveness_opened(&tp->live, now);
    if (sr__transport_post(&tp->base, SR_EV_TP_OPEN, NULL, 0) != 0) {
        tp->rx_code = SR_ENOMEM;
        snprintf(tp->rx_err, sizeof tp->rx_err, "out of memory opening the SSE transport");
        return 0;
    }
    /* The handshake POST goes from the timer: no handle is added here. */
    sr__http_send_open(&tp->send);
    arm(tp, now);
    return len;
}

static void get_complete(sr_http_io *io, sr_http_xfer *x, CURLcode rc)
{
    sse_tp *tp = (sse_tp *)(void *)((char *)x - offsetof(sse_tp, get));
    char why[CURL_ERROR_SIZE + 160], msg[CURL_ERROR_SIZE + 700];
    (void)io;
    tp->get_active = 0;
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        /* The loop is being freed: the event will be discarded. */
        fail(tp, SR_ECANCELED, 0, "SSE transport aborted (event loop freed)");
    } else if (tp->get_status && tp->get_status != 200) {
        snprintf(msg, sizeof msg, "SSE connection to %s failed: HTTP %ld from the server",
                 tp->where, tp->get_status);
        fail(tp, SR_ETRANSPORT, tp->get_status, msg);
    } else if (tp->rx_code) {
        snprintf(msg, sizeof msg, "SSE stream from %s: %s", tp->where, tp->rx_err);
        fail(tp, tp->rx_code, 0, msg);
    } else if (rc != CURLE_OK) {
        sr__http_strerror(x->easy, rc, tp->get_err, why, sizeof why);
        snprintf(msg, sizeof msg, "SSE connection to %s %s: %s", tp->where,
                 tp->state == ST_OPEN ? "lost" : "failed", why);
        fail(tp, SR_ETRANSPORT, 0, msg);
    } else if (tp->state != ST_OPEN) {
        snprintf(msg, sizeof msg, "SSE connection to %s failed: no response", tp->where);
        fail(tp, SR_ETRANSPORT, 0, msg);
    } else {
        snprintf(msg, sizeof msg, "SSE stream from %s ended by the server", tp->where);
        fail(tp, SR_ECLOSED, 0, msg);
    }
}

/* ----------------------------------------------------------------- timer */

/* Thread: what is due (connect timeout, close grace, the handshake POST,
 * liveness), then re-arm to the earliest deadline. tp may be freed. */
static void tick(sr_http_io *io, sr_http_timer *t)
{
    sse_tp *tp = (sse_tp *)(void *)((char *)t - offsetof(sse_tp, timer));
    uint64_t now = sr__liveness_clock(), next = 0;
    char msg[600];
    (void)io;
    if (tp->state == ST_CONNECTING) {
        if (now >= tp->connect_deadline) {
            snprintf(msg, sizeof msg, "SSE connection to %s failed: no response within %u s",
                     tp->where, CONNECT_TIMEOUT_US / 1000000u);
            fail(tp, SR_ETIMEOUT, 0, msg);
            return;
        }
        arm(tp, tp->connect_deadline);
        return;
    }
    if (tp->state != ST_OPEN) return;
    if (tp->closing && now >= tp->close_deadline) {
        fail(tp, SR_OK, 0, NULL);
        return;
    }
    switch (sr__liveness_check(&tp->live, now, &next)) {
    case SR_LIVENESS_PING:
        sr__transport_queue_if_idle(&tp->base, tp->ping, tp->ping_len);
        break;
    case SR_LIVENESS_SERVER_TIMEOUT:
        fail(tp, SR_ETIMEOUT, 0, SR_LIVENESS_SERVER_TIMEOUT_TEXT);
        return;
    case SR_LIVENESS_HANDSHAKE_TIMEOUT:
        fail(tp, SR_ETIMEOUT, 0, SR_LIVENESS_HANDSHAKE_TIMEOUT_TEXT);
        return;
    case SR_LIVENESS_NONE:
        break;
    }
    if (tp->closing && (!next || tp->close_deadline < next)) next = tp->close_deadline;
    if (next) arm(tp, next);
    pump(tp); /* last: it may end tp */
}

/* ------------------------------------------------------- host commands */

static void start(sr_transport *base)
{
    sse_tp *tp = (sse_tp *)base;
    char msg[600];
    if (tp->state != ST_IDLE) return;
    tp->state = ST_CONNECTING;
    if (sr__http_xfer_add(tp->io, &tp->get) != CURLM_OK) {
        snprintf(msg, sizeof msg, "SSE connection to %s failed: cannot start the GET", tp->where);
        fail(tp, SR_ETRANSPORT, 0, msg);
        return;
    }
    tp->get_active = 1;
    tp->connect_deadline = sr__liveness_clock() + CONNECT_TIMEOUT_US;
    arm(tp, tp->connect_deadline);
}

static void do_close(sr_transport *base)
{
    sse_tp *tp = (sse_tp *)base;
    if (tp->state == ST_IDLE || tp->state == ST_CONNECTING) {
        fail(tp, SR_OK, 0, NULL); /* nothing to say goodbye to yet */
    } else if (tp->state == ST_OPEN && !tp->closing) {
        tp->closing = 1;
        tp->close_deadline = sr__liveness_clock() + CLOSE_GRACE_US;
        arm(tp, sr__liveness_clock()); /* the tick pumps, ends or waits */
    }
}

static void cmd_write(sr_transport *tp)
{
    pump((sse_tp *)tp);
}

static void cmd_release(sr_transport *tp)
{
    detach((sse_tp *)tp);
}

/* The handlers of host commands (http_io.h). Each checks the state itself:
 * start acts in ST_IDLE only, do_close and detach not in ST_DONE, pump in
 * ST_OPEN only. */
static const sr_http_cmd_ops cmd_ops = {start, cmd_write, do_close, cmd_release};

static void cmd(sse_tp *tp, unsigned bits)
{
    sr__http_cmds_post(tp->io, &tp->cmds, bits);
}

static void sse_kick(sr_transport *tp)
{
    cmd((sse_tp *)tp, SR_HTTP_CMD_WRITE);
}

static void sse_close(sr_transport *tp)
{
    cmd((sse_tp *)tp, SR_HTTP_CMD_CLOSE);
}

static void sse_release(sr_transport *tp)
{
    cmd((sse_tp *)tp, SR_HTTP_CMD_RELEASE);
}

static void sse_destroy(sr_transport *base)
{
    sse_tp *tp = (sse_tp *)base;
    /* Set only when the I/O side never started (construction failed). */
    sr__http_xfer_cleanup(&tp->get);
    curl_slist_free_all(tp->get_hdrs);
    sr__http_send_free(&tp->send);
    sr__sse_free(&tp->parser);
    free(tp->url);
    free(tp->where);
    free(tp->hs);
    free(tp->ping);
}

static const sr_transport_ops sse_ops = {"ServerSentEvents", sse_kick, sse_close, sse_release,
                                         sse_destroy};

/* --------------------------------------------------------- construction */

/* The GET and the sender, configured; NULL or the failure's message. */
static const char *setup_handles(sse_tp *tp, const sr_transport_cfg *cfg)
{
    static const char *const get_extra[] = {"Accept: text/event-stream", "Cache-Control: no-cache"};
    sr_http_conf conf;
    const char *msg;
    int ok = 1;
    sr__http_conf_of(&conf, cfg);
    tp->get.easy = curl_easy_init();
    if (!tp->get.easy) return "out of memory";
#define SET(e, opt, val) (ok = ok && curl_easy_setopt(e, opt, val) == CURLE_OK)
    msg =
        sr__http_setup(tp->io, &tp->get, tp->url, &conf, get_extra, 2, tp->get_err, &tp->get_hdrs);
    if (msg) return msg;
    SET(tp->get.easy, CURLOPT_HTTPGET, 1L);
    SET(tp->get.easy, CURLOPT_WRITEFUNCTION, get_write);
    SET(tp->get.easy, CURLOPT_WRITEDATA, (void *)tp);
    SET(tp->get.easy, CURLOPT_HEADERFUNCTION, get_header);
    SET(tp->get.easy, CURLOPT_HEADERDATA, (void *)tp);
    SET(tp->get.easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(CONNECT_TIMEOUT_US / 1000u));
#undef SET
    if (!ok) return "cannot configure the SSE requests";
    tp->send.io = tp->io;
    tp->send.tp = &tp->base;
    tp->send.live = &tp->live;
    tp->send.label = "SSE";
    tp->send.where = tp->where;
    tp->send.first = tp->hs;
    tp->send.first_len = tp->hs_len;
    tp->send.done = post_done;
    tp->send.owner = tp;
    return sr__http_send_setup(&tp->send, tp->url, &conf, 0, (long)(CONNECT_TIMEOUT_US / 1000u));
}

sr_transport *sr__sse_transport_new(sr_loop *loop, const sr_transport_cfg *cfg,
                                    const sr_transport_upcalls *up, void *ud, sr_error *err)
{
    sse_tp *tp;
    const char *msg;
    if (!loop || !cfg || !cfg->url) {
        set_err(err, SR_EUSAGE, "SSE transport: loop and url are required");
        return NULL;
    }
    if (cfg->binary) {
        set_err(err, SR_EUSAGE,
                "Server-Sent Events carry text only: the binary (MessagePack) protocol needs "
                "WebSockets or Long Polling");
        return NULL;
    }
    tp = calloc(1, sizeof *tp);
    if (!tp) {
        set_err(err, SR_ENOMEM, "out of memory");
        return NULL;
    }
    if (sr__transport_init(&tp->base, &sse_ops, loop, up, ud, 0) != 0) {
        free(tp);
        set_err(err, SR_ENOMEM, "out of memory");
        return NULL;
    }
    tp->state = ST_IDLE;
    tp->get.complete = get_complete;
    tp->get.resumed = get_resumed;
    tp->timer.fire = tick;
    sr__http_cmds_init(&tp->cmds, &tp->base, &cmd_ops);
    sr__transport_set_decoder(&tp->base, cfg);
    sr__sse_init_stream(&tp->parser, EVENT_MAX);
    /* No ping bytes, no pings. */
    sr__liveness_init(&tp->live, cfg->ping && cfg->ping_len ? cfg->keepalive_ms : 0,
                      cfg->server_timeout_ms, cfg->handshake_timeout_ms);
    if (sr__http_url_dup(cfg->url, "SSE", &tp->url, &tp->where, err) != 0) goto fail;
    tp->hs_len = cfg->handshake ? cfg->handshake_len : 0;
    tp->ping_len = cfg->ping ? cfg->ping_len : 0;
    if (!(tp->hs = sr__http_dup_bytes(cfg->handshake, tp->hs_len)) ||
        !(tp->ping = sr__http_dup_bytes(cfg->ping, tp->ping_len))) {
        set_err(err, SR_ENOMEM, "out of memory");
        goto fail;
    }
    tp->io = sr__http_io_get(loop, err);
    if (!tp->io) goto fail;
    msg = setup_handles(tp, cfg);
    if (msg) {
        set_err(err, strcmp(msg, "out of memory") == 0 ? SR_ENOMEM : SR_EUSAGE, msg);
        goto fail;
    }
    sr__transport_ref(&tp->base); /* the I/O side's, until detach */
    cmd(tp, SR_HTTP_CMD_OPEN);
    return &tp->base;
fail:
    sr__transport_unref(&tp->base);
    return NULL;
}
