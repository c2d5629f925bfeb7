/*
 * sse_transport.c - the Server-Sent Events transport: a GET whose response
 * is a text/event-stream (receiving) and one POST at a time (sending), both
 * on the loop's HTTP thread (http_io.h), in the frame of http_transport.h
 * (states, commands, timer, sender, the end).
 *
 * What it owns: per transport, the GET's easy handle (created and
 * configured on the host so bad options fail at once), the GET's header
 * list and the event stream parser (sse.c).
 *
 * Threads and ownership (as http_transport.h, and):
 *  - The GET ending (for any reason, including the loop being freed: the
 *    HTTP thread completes it as aborted) ends the transport.
 *  - Exactly one SR_EV_TP_CLOSED per transport; SR_EV_TP_OPEN only before
 *    it, and before any data (it is posted from the header callback, which
 *    libcurl runs before the first write callback).
 *  - Sends: exactly one POST outstanding (http_send.h). After the host asks
 *    to close, the queue is still sent, for up to SR_HTTP_TP_CLOSE_US, and
 *    then the GET is ended: the end is clean (code 0) whatever happens
 *    meanwhile.
 */
#include <stdio.h>
#include <string.h>

#include "framing.h"
#include "http_transport.h"
#include "sse.h"

/* An event's text larger than this is a protocol error: it bounds the memory
 * a broken stream can take. One message's own limit is the decoder's. */
#define EVENT_MAX ((size_t)64 << 20)

typedef struct sse_tp {
    sr_http_tp h; /* first: sr_transport*, sr_http_tp* and sse_tp* convert */
    struct curl_slist *get_hdrs;

    /* Thread only. */
    sr_http_xfer get;
    int get_active;
    long get_status;
    int saw_location; /* the GET's header block being read has one */
    int rx_code;      /* a receive failure (SR_E*) that ended the GET, or 0 */
    char rx_err[160];
    sr_sse parser;
    char get_err[CURL_ERROR_SIZE];
} sse_tp;

/* ------------------------------------------------------------ sending */

/* Thread: the queue went out; a close is done then. */
static void sent(sr_http_tp *t)
{
    if (t->closing) sr__http_tp_fail(t, SR_OK, 0, NULL);
}

static void post_done(sr_http_send *s, int code, long status, const char *text)
{
    sr_http_tp *t = s->owner;
    if (code == SR_ECANCELED) return; /* the loop is going; the GET ends too */
    if (code != SR_OK) {
        sr__http_tp_fail(t, code, status, text);
        return;
    }
    sr__http_tp_pump(t);
}

/* ------------------------------------------------------------ receiving */

static int on_event(void *ud, const char *data, size_t len)
{
    sse_tp *tp = ud;
    if (len && sr__transport_post_data(&tp->h.base, data, len) != 0) {
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
    if (tp->h.state != SR_HTTP_TP_OPEN) return 0; /* not a 200: ended in the completion */
    if (sr__transport_backpressure(&tp->h.base)) {
        sr__http_tp_pause(&tp->h, &tp->get);
        return CURL_WRITEFUNC_PAUSE;
    }
    sr__liveness_rx(&tp->h.live, sr__liveness_clock(),
                    sr__liveness_awaiting_handshake(&tp->h.live) &&
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
    (void)io;
    sr__http_tp_resume(&tp->h);
}

/* Thread, libcurl: one header line of the GET. Only the final response's
 * block counts: not a 1xx, not a redirect libcurl follows. */
static size_t get_header(char *p, size_t size, size_t n, void *ud)
{
    sse_tp *tp = ud;
    size_t len = size * n;
    long status;
    if (tp->h.state != SR_HTTP_TP_CONNECTING) return len;
    status = sr__http_final_status(&tp->get, p, len, &tp->saw_location);
    if (!status) return len; /* not the end of the final response's headers */
    tp->get_status = status;
    if (status != 200) return 0; /* ended; the completion names the status */
    if (sr__http_tp_opened(&tp->h) != 0) {
        tp->rx_code = SR_ENOMEM;
        snprintf(tp->rx_err, sizeof tp->rx_err, "out of memory opening the SSE transport");
        return 0;
    }
    return len;
}

static void get_complete(sr_http_io *io, sr_http_xfer *x, CURLcode rc)
{
    sse_tp *tp = (sse_tp *)(void *)((char *)x - offsetof(sse_tp, get));
    sr_http_tp *t = &tp->h;
    char why[CURL_ERROR_SIZE + 160], msg[CURL_ERROR_SIZE + 700];
    (void)io;
    tp->get_active = 0;
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        /* The loop is being freed: the event will be discarded. */
        sr__http_tp_fail(t, SR_ECANCELED, 0, "SSE transport aborted (event loop freed)");
    } else if (tp->get_status && tp->get_status != 200) {
        snprintf(msg, sizeof msg, "SSE connection to %s failed: HTTP %ld from the server", t->where,
                 tp->get_status);
        sr__http_tp_fail(t, SR_ETRANSPORT, tp->get_status, msg);
    } else if (tp->rx_code) {
        snprintf(msg, sizeof msg, "SSE stream from %s: %s", t->where, tp->rx_err);
        sr__http_tp_fail(t, tp->rx_code, 0, msg);
    } else if (rc != CURLE_OK) {
        sr__http_strerror(x->easy, rc, tp->get_err, why, sizeof why);
        snprintf(msg, sizeof msg, "SSE connection to %s %s: %s", t->where,
                 t->state == SR_HTTP_TP_OPEN ? "lost" : "failed", why);
        sr__http_tp_fail(t, SR_ETRANSPORT, 0, msg);
    } else if (t->state != SR_HTTP_TP_OPEN) {
        snprintf(msg, sizeof msg, "SSE connection to %s failed: no response", t->where);
        sr__http_tp_fail(t, SR_ETRANSPORT, 0, msg);
    } else {
        snprintf(msg, sizeof msg, "SSE stream from %s ended by the server", t->where);
        sr__http_tp_fail(t, SR_ECLOSED, 0, msg);
    }
}

/* Thread, SR_HTTP_CMD_OPEN: start the GET. */
static int start(sr_http_tp *t)
{
    sse_tp *tp = (sse_tp *)t;
    char msg[600];
    if (sr__http_xfer_add(t->io, &tp->get) != CURLM_OK) {
        snprintf(msg, sizeof msg, "SSE connection to %s failed: cannot start the GET", t->where);
        sr__http_tp_fail(t, SR_ETRANSPORT, 0, msg);
        return -1;
    }
    tp->get_active = 1;
    return 0;
}

/* Thread, detach. */
static void stop(sr_http_tp *t)
{
    sse_tp *tp = (sse_tp *)t;
    if (tp->get_active) sr__http_xfer_remove(t->io, &tp->get);
    tp->get_active = 0;
    sr__http_xfer_cleanup(&tp->get);
    sr__sse_free(&tp->parser);
}

/* --------------------------------------------------------- construction */

static void sse_destroy(sr_transport *base)
{
    sse_tp *tp = (sse_tp *)base;
    /* Set only when the I/O side never started (construction failed). */
    sr__http_xfer_cleanup(&tp->get);
    curl_slist_free_all(tp->get_hdrs);
    sr__sse_free(&tp->parser);
    sr__http_tp_free(&tp->h);
}

/* The GET, configured; NULL or the failure's message. */
static const char *setup(sr_http_tp *t, const sr_http_conf *conf)
{
    static const char *const get_extra[] = {"Accept: text/event-stream", "Cache-Control: no-cache"};
    sse_tp *tp = (sse_tp *)t;
    const char *msg;
    int ok = 1;
    tp->get.easy = curl_easy_init();
    if (!tp->get.easy) return "out of memory";
#define SET(e, opt, val) (ok = ok && curl_easy_setopt(e, opt, val) == CURLE_OK)
    msg = sr__http_setup(t->io, &tp->get, t->url, conf, get_extra, 2, tp->get_err, &tp->get_hdrs);
    if (msg) return msg;
    SET(tp->get.easy, CURLOPT_HTTPGET, 1L);
    SET(tp->get.easy, CURLOPT_WRITEFUNCTION, get_write);
    SET(tp->get.easy, CURLOPT_WRITEDATA, (void *)tp);
    SET(tp->get.easy, CURLOPT_HEADERFUNCTION, get_header);
    SET(tp->get.easy, CURLOPT_HEADERDATA, (void *)tp);
    SET(tp->get.easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(SR_HTTP_TP_CONNECT_US / 1000u));
#undef SET
    return ok ? NULL : "cannot configure the SSE requests";
}

static const sr_http_tp_kind sse_kind = {
    .ops = {"ServerSentEvents", sr__http_tp_kick, sr__http_tp_close, sr__http_tp_release,
            sse_destroy},
    .label = "SSE",
    .text_only = "Server-Sent Events carry text only: the binary (MessagePack) protocol needs "
                 "WebSockets or Long Polling",
    .setup = setup,
    .start = start,
    .stop = stop,
    .sent = sent,
    .post_done = post_done,
};

sr_transport *sr__sse_transport_new(sr_loop *loop, const sr_transport_cfg *cfg,
                                    const sr_transport_upcalls *up, void *ud, sr_error *err)
{
    sse_tp *tp = (sse_tp *)sr__http_tp_new(sizeof *tp, &sse_kind, loop, cfg, up, ud, err);
    if (!tp) return NULL;
    tp->get.complete = get_complete;
    tp->get.resumed = get_resumed;
    sr__sse_init_stream(&tp->parser, EVENT_MAX);
    /* No ping bytes, no pings. */
    sr__liveness_init(&tp->h.live, cfg->ping && cfg->ping_len ? cfg->keepalive_ms : 0,
                      cfg->server_timeout_ms, cfg->handshake_timeout_ms);
    return sr__http_tp_open(&tp->h, cfg, err);
}
