/*
 * lp_transport.c - the Long Polling transport: a loop of GETs (receiving)
 * and one POST at a time (sending, http_send.h), both to the hub URL with
 * ?id=<token>, on the loop's HTTP thread (http_io.h), in the frame of
 * http_transport.h (states, commands, timer, sender, the end).
 *
 * What it owns: per transport, two easy handles configured on the host (so
 * bad options fail at once) and re-added for every request: the poll and
 * the DELETE that stops the connection; their header lists.
 *
 * The protocol: each poll is answered 200 with zero or more bytes of hub
 * protocol data (binary for MessagePack), which go to
 * sr__transport_post_data as they arrive, so a message split across polls
 * is joined by the decoder; the next poll starts as soon as one ends. An
 * empty 200 is the server's poll timeout (it holds a poll ~90 s). 204 means
 * the server closed the connection (SR_ECLOSED); any other status fails
 * with SR_ETRANSPORT and the status (404: the connection is gone). The
 * first 200 opens the transport (SR_EV_TP_OPEN, posted from its header
 * callback) and the handshake goes as the first POST.
 *
 * Timeouts: connecting is bounded per request (SR_HTTP_TP_CONNECT_US), and
 * the first poll's answer too (the server answers a new connection's first
 * poll at once). A poll has no overall timeout, since the server holds it. The
 * server timeout is NOT run: as in the official clients, a poll may be
 * silent for 90 s legitimately, and a poll is pending at every moment the
 * transport is open (the next starts as the previous ends), so "not while a
 * poll is pending" means never. cfg.server_timeout_ms is ignored. The
 * handshake timeout runs from the open, and keepalive pings are POSTs of
 * the ping bytes from the timer, as for SSE.
 *
 * Threads and ownership (as http_transport.h, and):
 *  - When the loop is freed the HTTP thread completes our transfers as
 *    aborted; the first one to complete fails, and detach removes the
 *    others. Completions may add handles (they run outside libcurl).
 *  - Backpressure: the poll's write callback returns CURL_WRITEFUNC_PAUSE
 *    without consuming when the loop is congested; its resumed hook lets
 *    it go on.
 *  - Close: the queue still goes out (POSTs as usual, polling goes on
 *    meanwhile), then one DELETE; the server answers the pending poll 204.
 *    Both ended, the close is clean (code 0); SR_HTTP_TP_CLOSE_US bounds it
 *    all, and after the DELETE's answer the poll gets DELETE_WAIT_US more,
 *    then it is ended by us. Any end after the host asked to close is clean.
 */
#include <stdio.h>
#include <string.h>

#include "framing.h"
#include "http_transport.h"

/* After the DELETE was answered, the server's 204 to the poll gets this. */
#define DELETE_WAIT_US (1u * 1000000u)

typedef struct lp_tp {
    sr_http_tp h; /* first: sr_transport*, sr_http_tp* and lp_tp* convert */
    struct curl_slist *poll_hdrs, *del_hdrs;

    /* Thread only. */
    sr_http_xfer poll, del;
    int poll_active, del_active;
    int del_started;  /* the DELETE went (or was not needed) */
    long poll_status; /* the final status of the poll in flight, or 0 */
    int saw_location; /* the poll's header block being read has one */
    int rx_code;      /* a receive failure (SR_E*) that ended the poll, or 0 */
    char rx_err[160];
    char poll_err[CURL_ERROR_SIZE], del_err[CURL_ERROR_SIZE];
} lp_tp;

/* ------------------------------------------------------------- closing */

/* Thread, while closing: once the queue went out, send the DELETE; once it
 * and the poll ended, end cleanly. tp may be freed. */
static void close_step(lp_tp *tp)
{
    if (tp->h.state != SR_HTTP_TP_OPEN || !tp->h.closing || tp->h.send.active) return;
    if (!tp->del_started) {
        tp->del_started = 1;
        if (sr__http_xfer_add(tp->h.io, &tp->del) != CURLM_OK) {
            sr__http_tp_fail(&tp->h, SR_OK, 0, NULL); /* the close is clean either way */
            return;
        }
        tp->del_active = 1;
        return;
    }
    if (!tp->del_active && !tp->poll_active) sr__http_tp_fail(&tp->h, SR_OK, 0, NULL);
}

static void del_complete(sr_http_io *io, sr_http_xfer *x, CURLcode rc)
{
    lp_tp *tp = (lp_tp *)(void *)((char *)x - offsetof(lp_tp, del));
    uint64_t wait = sr__liveness_clock() + DELETE_WAIT_US;
    (void)io;
    tp->del_active = 0;
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        sr__http_tp_fail(&tp->h, SR_ECANCELED, 0,
                         "Long Polling transport aborted (event loop freed)");
        return;
    }
    /* Whatever its answer, the close goes on: the poll gets a little more
     * time for its 204, then it is ended by us. */
    if (tp->poll_active && wait < tp->h.close_deadline) {
        tp->h.close_deadline = wait;
        sr__http_tp_arm(&tp->h, wait);
    }
    close_step(tp);
}

/* ------------------------------------------------------------ sending */

/* Thread: the queue went out; a close goes on. */
static void sent(sr_http_tp *t)
{
    close_step((lp_tp *)t);
}

static void post_done(sr_http_send *s, int code, long status, const char *text)
{
    sr_http_tp *t = s->owner;
    if (code != SR_OK) {
        sr__http_tp_fail(t, code, status, text);
        return;
    }
    sr__http_tp_pump(t);
}

/* ------------------------------------------------------------ receiving */

/* Thread: start a poll. 0, or -1 after sr__http_tp_fail. */
static int start_poll(lp_tp *tp)
{
    char msg[600];
    tp->poll_status = 0;
    tp->saw_location = 0;
    tp->poll_err[0] = '\0';
    if (sr__http_xfer_add(tp->h.io, &tp->poll) != CURLM_OK) {
        snprintf(msg, sizeof msg, "Long Polling poll to %s failed: cannot start the GET",
                 tp->h.where);
        sr__http_tp_fail(&tp->h, SR_ETRANSPORT, 0, msg);
        return -1;
    }
    tp->poll_active = 1;
    return 0;
}

/* Thread, libcurl: one piece of a poll's body. */
static size_t poll_write(char *p, size_t size, size_t n, void *ud)
{
    lp_tp *tp = ud;
    size_t len = size * n;
    if (tp->h.state != SR_HTTP_TP_OPEN || tp->poll_status != 200)
        return 0; /* the completion says why */
    if (sr__transport_backpressure(&tp->h.base)) {
        sr__http_tp_pause(&tp->h, &tp->poll);
        return CURL_WRITEFUNC_PAUSE;
    }
    sr__liveness_rx(&tp->h.live, sr__liveness_clock(),
                    sr__liveness_awaiting_handshake(&tp->h.live) &&
                        memchr(p, SR_RECORD_SEPARATOR, len) != NULL);
    if (len && sr__transport_post_data(&tp->h.base, p, len) != 0) {
        tp->rx_code = SR_ENOMEM;
        snprintf(tp->rx_err, sizeof tp->rx_err, "out of memory receiving a poll");
        return 0;
    }
    return len;
}

static void poll_resumed(sr_http_io *io, sr_http_xfer *x)
{
    lp_tp *tp = (lp_tp *)(void *)((char *)x - offsetof(lp_tp, poll));
    (void)io;
    sr__http_tp_resume(&tp->h);
}

/* Thread, libcurl: one header line of a poll. Only the final response's
 * block counts: not a 1xx, not a redirect libcurl follows. */
static size_t poll_header(char *p, size_t size, size_t n, void *ud)
{
    lp_tp *tp = ud;
    size_t len = size * n;
    long status;
    if (tp->poll_status) return len;
    status = sr__http_final_status(&tp->poll, p, len, &tp->saw_location);
    if (!status) return len; /* not the end of the final response's headers */
    tp->poll_status = status;
    if (status == 204) return len;
    if (status != 200) return 0; /* ended; the completion names the status */
    if (tp->h.state != SR_HTTP_TP_CONNECTING) return len;
    if (sr__http_tp_opened(&tp->h) != 0) {
        tp->rx_code = SR_ENOMEM;
        snprintf(tp->rx_err, sizeof tp->rx_err, "out of memory opening the transport");
        return 0;
    }
    return len;
}

static void poll_complete(sr_http_io *io, sr_http_xfer *x, CURLcode rc)
{
    lp_tp *tp = (lp_tp *)(void *)((char *)x - offsetof(lp_tp, poll));
    char why[CURL_ERROR_SIZE + 160], msg[CURL_ERROR_SIZE + 700];
    (void)io;
    tp->poll_active = 0;
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        /* The loop is being freed: the event will be discarded. */
        sr__http_tp_fail(&tp->h, SR_ECANCELED, 0,
                         "Long Polling transport aborted (event loop freed)");
    } else if (tp->poll_status == 204) {
        if (tp->h.closing) {
            tp->del_started = 1; /* the server has ended it: no DELETE needed */
            close_step(tp);
            return;
        }
        snprintf(msg, sizeof msg,
                 "Long Polling connection to %s: the server closed the connection (204)",
                 tp->h.where);
        sr__http_tp_fail(&tp->h, SR_ECLOSED, 204, msg);
    } else if (tp->poll_status && tp->poll_status != 200) {
        snprintf(msg, sizeof msg, "Long Polling poll to %s failed: HTTP %ld from the server",
                 tp->h.where, tp->poll_status);
        sr__http_tp_fail(&tp->h, SR_ETRANSPORT, tp->poll_status, msg);
    } else if (tp->rx_code) {
        snprintf(msg, sizeof msg, "Long Polling poll to %s: %s", tp->h.where, tp->rx_err);
        sr__http_tp_fail(&tp->h, tp->rx_code, 0, msg);
    } else if (rc != CURLE_OK) {
        sr__http_strerror(x->easy, rc, tp->poll_err, why, sizeof why);
        snprintf(msg, sizeof msg, "Long Polling %s to %s %s: %s",
                 tp->h.state == SR_HTTP_TP_OPEN ? "poll" : "connection", tp->h.where,
                 tp->h.state == SR_HTTP_TP_OPEN ? "lost" : "failed", why);
        sr__http_tp_fail(&tp->h, SR_ETRANSPORT, 0, msg);
    } else if (tp->h.state != SR_HTTP_TP_OPEN) {
        snprintf(msg, sizeof msg, "Long Polling connection to %s failed: no response", tp->h.where);
        sr__http_tp_fail(&tp->h, SR_ETRANSPORT, 0, msg);
    } else if (tp->h.closing && tp->del_started) {
        close_step(tp); /* no new poll after the DELETE */
    } else {
        start_poll(tp); /* data or the server's poll timeout: poll again at once */
    }
}

/* Thread, SR_HTTP_CMD_OPEN: the first poll. */
static int start(sr_http_tp *t)
{
    return start_poll((lp_tp *)t);
}

/* Thread, detach. */
static void stop(sr_http_tp *t)
{
    lp_tp *tp = (lp_tp *)t;
    if (tp->poll_active) sr__http_xfer_remove(t->io, &tp->poll);
    if (tp->del_active) sr__http_xfer_remove(t->io, &tp->del);
    tp->poll_active = tp->del_active = 0;
    sr__http_xfer_cleanup(&tp->poll);
    sr__http_xfer_cleanup(&tp->del);
}

/* --------------------------------------------------------- construction */

static void lp_destroy(sr_transport *base)
{
    lp_tp *tp = (lp_tp *)base;
    /* Set only when the I/O side never started (construction failed). */
    sr__http_xfer_cleanup(&tp->poll);
    sr__http_xfer_cleanup(&tp->del);
    curl_slist_free_all(tp->poll_hdrs);
    curl_slist_free_all(tp->del_hdrs);
    sr__http_tp_free(&tp->h);
}

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* The poll and the DELETE, configured; NULL or the failure's message. */
static const char *setup(sr_http_tp *t, const sr_http_conf *conf)
{
    lp_tp *tp = (lp_tp *)t;
    const char *msg;
    long connect_ms = (long)(SR_HTTP_TP_CONNECT_US / 1000u);
    int ok = 1;
    tp->poll.easy = curl_easy_init();
    tp->del.easy = curl_easy_init();
    if (!tp->poll.easy || !tp->del.easy) return "out of memory";
#define SET(e, opt, val) (ok = ok && curl_easy_setopt(e, opt, val) == CURLE_OK)
    msg = sr__http_setup(t->io, &tp->poll, t->url, conf, NULL, 0, tp->poll_err, &tp->poll_hdrs);
    if (msg) return msg;
    SET(tp->poll.easy, CURLOPT_HTTPGET, 1L);
    SET(tp->poll.easy, CURLOPT_WRITEFUNCTION, poll_write);
    SET(tp->poll.easy, CURLOPT_WRITEDATA, (void *)tp);
    SET(tp->poll.easy, CURLOPT_HEADERFUNCTION, poll_header);
    SET(tp->poll.easy, CURLOPT_HEADERDATA, (void *)tp);
    SET(tp->poll.easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    msg = sr__http_setup(t->io, &tp->del, t->url, conf, NULL, 0, tp->del_err, &tp->del_hdrs);
    if (msg) return msg;
    SET(tp->del.easy, CURLOPT_CUSTOMREQUEST, "DELETE");
    SET(tp->del.easy, CURLOPT_WRITEFUNCTION, discard_body);
    SET(tp->del.easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
#undef SET
    return ok ? NULL : "cannot configure the Long Polling requests";
}

static const sr_http_tp_kind lp_kind = {
    .ops = {"LongPolling", sr__http_tp_kick, sr__http_tp_close, sr__http_tp_release, lp_destroy},
    .label = "Long Polling",
    .text_only = NULL,
    .setup = setup,
    .start = start,
    .stop = stop,
    .sent = sent,
    .post_done = post_done,
};

sr_transport *sr__lp_transport_new(sr_loop *loop, const sr_transport_cfg *cfg,
                                   const sr_transport_upcalls *up, void *ud, sr_error *err)
{
    lp_tp *tp = (lp_tp *)sr__http_tp_new(sizeof *tp, &lp_kind, loop, cfg, up, ud, err);
    if (!tp) return NULL;
    tp->poll.complete = poll_complete;
    tp->poll.resumed = poll_resumed;
    tp->del.complete = del_complete;
    /* No ping bytes, no pings; no server timeout (see the top). */
    sr__liveness_init(&tp->h.live, cfg->ping && cfg->ping_len ? cfg->keepalive_ms : 0, 0,
                      cfg->handshake_timeout_ms);
    return sr__http_tp_open(&tp->h, cfg, err);
}
