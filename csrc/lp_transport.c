/*
 * lp_transport.c - the Long Polling transport: a loop of GETs (receiving)
 * and one POST at a time (sending, http_send.h), both to the hub URL with
 * ?id=<token>, on the loop's HTTP thread (http_io.h).
 *
 * What it owns: per transport, two easy handles configured on the host (so
 * bad options fail at once) and re-added for every request: the poll and
 * the DELETE that stops the connection; the sender (the POST); their header
 * lists; one liveness (liveness.c) and one HTTP-thread timer driving it.
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
 * Timeouts: connecting is bounded per request (CONNECT_TIMEOUT_US), and the
 * first poll's answer too (the server answers a new connection's first poll
 * at once). A poll has no overall timeout, since the server holds it. The
 * server timeout is NOT run: as in the official clients, a poll may be
 * silent for 90 s legitimately, and a poll is pending at every moment the
 * transport is open (the next starts as the previous ends), so "not while a
 * poll is pending" means never. cfg.server_timeout_ms is ignored. The
 * handshake timeout runs from the open, and keepalive pings are POSTs of
 * the ping bytes from the timer, as for SSE.
 *
 * Threads and ownership (as sse_transport.c):
 *  - "thread" is the HTTP thread: jobs, completions, the timer and
 *    libcurl's callbacks. The host talks to it through command bits (cmds,
 *    http_io.h): one job queued at most once at a time, holding a
 *    reference while queued.
 *  - The I/O side holds a reference from sr__lp_transport_new until
 *    detach(), which removes every transfer still in the multi, cleans up
 *    the easy handles and disarms the timer. It runs on the one
 *    SR_EV_TP_CLOSED (fail()), on release, and when the loop is freed (the
 *    HTTP thread completes our transfers as aborted; the first one to
 *    complete detaches, which removes the others).
 *  - libcurl callbacks never add or remove handles: the poll's header
 *    callback marks the transport open and arms the timer due now, which
 *    sends the handshake. Completions may add (they run outside libcurl).
 *  - Backpressure: the poll's write callback returns CURL_WRITEFUNC_PAUSE
 *    without consuming when the loop is congested; its resumed hook lets
 *    it go on.
 *  - Close: the queue still goes out (POSTs as usual, polling goes on
 *    meanwhile), then one DELETE; the server answers the pending poll 204.
 *    Both ended, the close is clean (code 0); CLOSE_GRACE_US bounds it all,
 *    and after the DELETE's answer the poll gets DELETE_WAIT_US more, then
 *    it is ended by us. Any end after the host asked to close is clean.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framing.h"
#include "http_io.h"
#include "http_send.h"
#include "liveness.h"
#include "transport_kind.h"

/* Connecting (DNS, TCP, TLS) of each request, and the first poll's answer. */
#define CONNECT_TIMEOUT_US (20u * 1000000u)
/* After a close was asked for, queued sends and the DELETE get this long. */
#define CLOSE_GRACE_US (5u * 1000000u)
/* After the DELETE was answered, the server's 204 to the poll gets this. */
#define DELETE_WAIT_US (1u * 1000000u)

enum {
    ST_IDLE,       /* created, SR_HTTP_CMD_OPEN not handled yet */
    ST_CONNECTING, /* the first poll is in the multi, no 200 yet */
    ST_OPEN,       /* a 200 arrived: OPEN posted */
    ST_DONE        /* detached: the I/O side is finished with it */
};

typedef struct lp_tp {
    sr_transport base; /* first: sr_transport* and lp_tp* convert */
    sr_http_io *io;

    /* Constant after sr__lp_transport_new. */
    char *url;   /* http(s), with the query */
    char *where; /* the URL without its query (it holds the token), for messages */
    char *hs;
    size_t hs_len;
    char *ping;
    size_t ping_len;
    struct curl_slist *poll_hdrs, *del_hdrs;

    sr_http_cmds cmds; /* the host's commands (http_io.h) */

    /* Thread only. */
    int state;
    sr_http_xfer poll, del;
    int poll_active, del_active;
    sr_http_send send;
    sr_http_timer timer;
    uint64_t connect_deadline, close_deadline;
    int closing;      /* the host asked to close: the queue is being sent */
    int del_started;  /* the DELETE went (or was not needed) */
    int paused;       /* the poll is paused under backpressure */
    long poll_status; /* the final status of the poll in flight, or 0 */
    int saw_location; /* the poll's header block being read has one */
    int rx_code;      /* a receive failure (SR_E*) that ended the poll, or 0 */
    char rx_err[160];
    sr_liveness live;
    char poll_err[CURL_ERROR_SIZE], del_err[CURL_ERROR_SIZE];
} lp_tp;

static const sr_transport_ops lp_ops;

static void set_err(sr_error *err, int code, const char *msg)
{
    if (!err) return;
    err->code = code;
    err->status = 0;
    snprintf(err->message, sizeof err->message, "%s", msg);
}

static void arm(lp_tp *tp, uint64_t due)
{
    sr__http_timer_arm(tp->io, &tp->timer, due);
}

/* ------------------------------------------------------ I/O-side lifetime */

/* Thread. The I/O side is done with tp: stop its transfers and timer, drop
 * the I/O reference. tp may be freed on return. */
static void detach(lp_tp *tp)
{
    if (tp->state == ST_DONE) return;
    tp->state = ST_DONE;
    sr__http_timer_cancel(tp->io, &tp->timer);
    if (tp->poll_active) sr__http_xfer_remove(tp->io, &tp->poll);
    if (tp->del_active) sr__http_xfer_remove(tp->io, &tp->del);
    tp->poll_active = tp->del_active = 0;
    /* Cleaned up here, on the thread that used them. */
    sr__http_xfer_cleanup(&tp->poll);
    sr__http_xfer_cleanup(&tp->del);
    sr__http_send_stop(&tp->send);
    sr__transport_unref(&tp->base);
}

/* Thread. Post the one SR_EV_TP_CLOSED (clean after the host asked to
 * close) and detach. */
static void fail(lp_tp *tp, int code, long status, const char *text)
{
    sr__transport_post_end(&tp->base, code, status, text);
    detach(tp);
}

/* ------------------------------------------------------------- closing */

/* Thread, while closing: once the queue went out, send the DELETE; once it
 * and the poll ended, end cleanly. tp may be freed. */
static void close_step(lp_tp *tp)
{
    if (tp->state != ST_OPEN || !tp->closing || tp->send.active) return;
    if (!tp->del_started) {
        tp->del_started = 1;
        if (sr__http_xfer_add(tp->io, &tp->del) != CURLM_OK) {
            fail(tp, SR_OK, 0, NULL); /* the close is clean either way */
            return;
        }
        tp->del_active = 1;
        return;
    }
    if (!tp->del_active && !tp->poll_active) fail(tp, SR_OK, 0, NULL);
}

static void del_complete(sr_http_io *io, sr_http_xfer *x, CURLcode rc)
{
    lp_tp *tp = (lp_tp *)(void *)((char *)x - offsetof(lp_tp, del));
    uint64_t wait = sr__liveness_clock() + DELETE_WAIT_US;
    (void)io;
    tp->del_active = 0;
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        fail(tp, SR_ECANCELED, 0, "Long Polling transport aborted (event loop freed)");
        return;
    }
    /* Whatever its answer, the close goes on: the poll gets a little more
     * time for its 204, then it is ended by us. */
    if (tp->poll_active && wait < tp->close_deadline) {
        tp->close_deadline = wait;
        arm(tp, wait);
    }
    close_step(tp);
}

/* ------------------------------------------------------------ sending */

/* Thread: start the next POST when none is outstanding and something is
 * queued; go on with a close whose queue went out. tp may be freed. */
static void pump(lp_tp *tp)
{
    char msg[600];
    int r;
    if (tp->state != ST_OPEN) return;
    r = sr__http_send_pump(&tp->send, msg, sizeof msg);
    if (r < 0)
        fail(tp, SR_ETRANSPORT, 0, msg);
    else if (r == 0)
        close_step(tp);
}

static void post_done(sr_http_send *s, int code, long status, const char *text)
{
    lp_tp *tp = s->owner;
    if (code != SR_OK) {
        fail(tp, code, status, text);
        return;
    }
    pump(tp);
}

/* ------------------------------------------------------------ receiving */

/* Thread: start a poll. 0, or -1 after fail(). */
static int start_poll(lp_tp *tp)
{
    char msg[600];
    tp->poll_status = 0;
    tp->saw_location = 0;
    tp->poll_err[0] = '\0';
    if (sr__http_xfer_add(tp->io, &tp->poll) != CURLM_OK) {
        snprintf(msg, sizeof msg, "Long Polling poll to %s failed: cannot start the GET",
                 tp->where);
        fail(tp, SR_ETRANSPORT, 0, msg);
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
    if (tp->state != ST_OPEN || tp->poll_status != 200) return 0; /* the completion says why */
    if (sr__transport_backpressure(&tp->base)) {
        /* Backpressure: nothing of this piece is consumed (libcurl hands it
         * over again when unpaused). */
        if (!tp->paused) {
            tp->paused = 1;
            sr__liveness_pause(&tp->live, sr__liveness_clock());
        }
        tp->poll.paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    sr__liveness_rx(&tp->live, sr__liveness_clock(),
                    sr__liveness_awaiting_handshake(&tp->live) &&
                        memchr(p, SR_RECORD_SEPARATOR, len) != NULL);
    if (len && sr__transport_post_data(&tp->base, p, len) != 0) {
        tp->rx_code = SR_ENOMEM;
        snprintf(tp->rx_err, sizeof tp->rx_err, "out of memory receiving a poll");
        return 0;
    }
    return len;
}

static void poll_resumed(sr_http_io *io, sr_http_xfer *x)
{
    lp_tp *tp = (lp_tp *)(void *)((char *)x - offsetof(lp_tp, poll));
    uint64_t now = sr__liveness_clock();
    (void)io;
    if (!tp->paused) return;
    tp->paused = 0;
    sr__liveness_resume(&tp->live, now);
    arm(tp, now); /* re-run the liveness check, as liveness.h asks */
}

/* Thread, libcurl: one header line of a poll. Only the final response's
 * block counts: not a 1xx, not a redirect libcurl follows. */
static size_t poll_header(char *p, size_t size, size_t n, void *ud)
{
    lp_tp *tp = ud;
    size_t len = size * n;
    long status;
    uint64_t now;
    if (tp->poll_status) return len;
    status = sr__http_final_status(&tp->poll, p, len, &tp->saw_location);
    if (!status) return len; /* not the end of the final response's headers */
    tp->poll_status = status;
    if (status == 204) return len;
    if (status != 200) return 0; /* ended; the completion names the status */
    if (tp->state != ST_CONNECTING) return len;
    tp->state = ST_OPEN;
    now = sr__liveness_clock();
    sr__liveness_opened(&tp->live, now);
    if (sr__transport_post(&tp->base, SR_EV_TP_OPEN, NULL, 0) != 0) {
        tp->rx_code = SR_ENOMEM;
        snprintf(tp->rx_err, sizeof tp->rx_err, "out of memory opening the transport");
        return 0;
    }
    /* The handshake POST goes from the timer: no handle is added here. */
    sr__http_send_open(&tp->send);
    arm(tp, now);
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
        fail(tp, SR_ECANCELED, 0, "Long Polling transport aborted (event loop freed)");
    } else if (tp->poll_status == 204) {
        if (tp->closing) {
            tp->del_started = 1; /* the server has ended it: no DELETE needed */
            close_step(tp);
            return;
        }
        snprintf(msg, sizeof msg,
                 "Long Polling connection to %s: the server closed the connection (204)",
                 tp->where);
        fail(tp, SR_ECLOSED, 204, msg);
    } else if (tp->poll_status && tp->poll_status != 200) {
        snprintf(msg, sizeof msg, "Long Polling poll to %s failed: HTTP %ld from the server",
                 tp->where, tp->poll_status);
        fail(tp, SR_ETRANSPORT, tp->poll_status, msg);
    } else if (tp->rx_code) {
        snprintf(msg, sizeof msg, "Long Polling poll to %s: %s", tp->where, tp->rx_err);
        fail(tp, tp->rx_code, 0, msg);
    } else if (rc != CURLE_OK) {
        sr__http_strerror(x->easy, rc, tp->poll_err, why, sizeof why);
        snprintf(msg, sizeof msg, "Long Polling %s to %s %s: %s",
                 tp->state == ST_OPEN ? "poll" : "connection", tp->where,
                 tp->state == ST_OPEN ? "lost" : "failed", why);
        fail(tp, SR_ETRANSPORT, 0, msg);
    } else if (tp->state != ST_OPEN) {
        snprintf(msg, sizeof msg, "Long Polling connection to %s failed: no response", tp->where);
        fail(tp, SR_ETRANSPORT, 0, msg);
    } else if (tp->closing && tp->del_started) {
        close_step(tp); /* no new poll after the DELETE */
    } else {
        start_poll(tp); /* data or the server's poll timeout: poll again at once */
    }
}

/* ----------------------------------------------------------------- timer */

/* Thread: what is due (the first poll's limit, close grace, the handshake
 * POST, liveness), then re-arm to the earliest deadline. tp may be freed. */
static void tick(sr_http_io *io, sr_http_timer *t)
{
    lp_tp *tp = (lp_tp *)(void *)((char *)t - offsetof(lp_tp, timer));
    uint64_t now = sr__liveness_clock(), next = 0;
    char msg[600];
    (void)io;
    if (tp->state == ST_CONNECTING) {
        if (now >= tp->connect_deadline) {
            snprintf(msg, sizeof msg,
                     "Long Polling connection to %s failed: no response within %u s", tp->where,
                     CONNECT_TIMEOUT_US / 1000000u);
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
    case SR_LIVENESS_SERVER_TIMEOUT: /* not armed (see the top); kept for completeness */
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
    lp_tp *tp = (lp_tp *)base;
    if (tp->state != ST_IDLE) return;
    tp->state = ST_CONNECTING;
    if (start_poll(tp) != 0) return;
    tp->connect_deadline = sr__liveness_clock() + CONNECT_TIMEOUT_US;
    arm(tp, tp->connect_deadline);
}

static void do_close(sr_transport *base)
{
    lp_tp *tp = (lp_tp *)base;
    if (tp->state == ST_IDLE || tp->state == ST_CONNECTING) {
        fail(tp, SR_OK, 0, NULL); /* not open yet: nothing to say goodbye to */
    } else if (tp->state == ST_OPEN && !tp->closing) {
        tp->closing = 1;
        tp->close_deadline = sr__liveness_clock() + CLOSE_GRACE_US;
        arm(tp, sr__liveness_clock()); /* the tick pumps, then the DELETE goes */
    }
}

static void cmd_write(sr_transport *tp)
{
    pump((lp_tp *)tp);
}

static void cmd_release(sr_transport *tp)
{
    detach((lp_tp *)tp);
}

/* The handlers of host commands (http_io.h). Each checks the state itself:
 * start acts in ST_IDLE only, do_close and detach not in ST_DONE, pump in
 * ST_OPEN only. */
static const sr_http_cmd_ops cmd_ops = {start, cmd_write, do_close, cmd_release};

static void cmd(lp_tp *tp, unsigned bits)
{
    sr__http_cmds_post(tp->io, &tp->cmds, bits);
}

static void lp_kick(sr_transport *tp)
{
    cmd((lp_tp *)tp, SR_HTTP_CMD_WRITE);
}

static void lp_close(sr_transport *tp)
{
    cmd((lp_tp *)tp, SR_HTTP_CMD_CLOSE);
}

static void lp_release(sr_transport *tp)
{
    cmd((lp_tp *)tp, SR_HTTP_CMD_RELEASE);
}

static void lp_destroy(sr_transport *base)
{
    lp_tp *tp = (lp_tp *)base;
    /* Set only when the I/O side never started (construction failed). */
    sr__http_xfer_cleanup(&tp->poll);
    sr__http_xfer_cleanup(&tp->del);
    curl_slist_free_all(tp->poll_hdrs);
    curl_slist_free_all(tp->del_hdrs);
    sr__http_send_free(&tp->send);
    free(tp->url);
    free(tp->where);
    free(tp->hs);
    free(tp->ping);
}

static const sr_transport_ops lp_ops = {"LongPolling", lp_kick, lp_close, lp_release, lp_destroy};

/* --------------------------------------------------------- construction */

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* The poll, the DELETE and the sender, configured; NULL or the failure's
 * message. */
static const char *setup_handles(lp_tp *tp, const sr_transport_cfg *cfg)
{
    sr_http_conf conf;
    const char *msg;
    long connect_ms = (long)(CONNECT_TIMEOUT_US / 1000u);
    int ok = 1;
    sr__http_conf_of(&conf, cfg);
    tp->poll.easy = curl_easy_init();
    tp->del.easy = curl_easy_init();
    if (!tp->poll.easy || !tp->del.easy) return "out of memory";
#define SET(e, opt, val) (ok = ok && curl_easy_setopt(e, opt, val) == CURLE_OK)
    msg = sr__http_setup(tp->io, &tp->poll, tp->url, &conf, NULL, 0, tp->poll_err, &tp->poll_hdrs);
    if (msg) return msg;
    SET(tp->poll.easy, CURLOPT_HTTPGET, 1L);
    SET(tp->poll.easy, CURLOPT_WRITEFUNCTION, poll_write);
    SET(tp->poll.easy, CURLOPT_WRITEDATA, (void *)tp);
    SET(tp->poll.easy, CURLOPT_HEADERFUNCTION, poll_header);
    SET(tp->poll.easy, CURLOPT_HEADERDATA, (void *)tp);
    SET(tp->poll.easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    msg = sr__http_setup(tp->io, &tp->del, tp->url, &conf, NULL, 0, tp->del_err, &tp->del_hdrs);
    if (msg) return msg;
    SET(tp->del.easy, CURLOPT_CUSTOMREQUEST, "DELETE");
    SET(tp->del.easy, CURLOPT_WRITEFUNCTION, discard_body);
    SET(tp->del.easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
#undef SET
    if (!ok) return "cannot configure the Long Polling requests";
    tp->send.io = tp->io;
    tp->send.tp = &tp->base;
    tp->send.live = &tp->live;
    tp->send.label = "Long Polling";
    tp->send.where = tp->where;
    tp->send.first = tp->hs;
    tp->send.first_len = tp->hs_len;
    tp->send.done = post_done;
    tp->send.owner = tp;
    return sr__http_send_setup(&tp->send, tp->url, &conf, cfg->binary, connect_ms);
}

sr_transport *sr__lp_transport_new(sr_loop *loop, const sr_transport_cfg *cfg,
                                   const sr_transport_upcalls *up, void *ud, sr_error *err)
{
    lp_tp *tp;
    const char *msg;
    if (!loop || !cfg || !cfg->url) {
        set_err(err, SR_EUSAGE, "Long Polling transport: loop and url are required");
        return NULL;
    }
    tp = calloc(1, sizeof *tp);
    if (!tp) {
        set_err(err, SR_ENOMEM, "out of memory");
        return NULL;
    }
    if (sr__transport_init(&tp->base, &lp_ops, loop, up, ud, 0) != 0) {
        free(tp);
        set_err(err, SR_ENOMEM, "out of memory");
        return NULL;
    }
    tp->state = ST_IDLE;
    tp->poll.complete = poll_complete;
    tp->poll.resumed = poll_resumed;
    tp->del.complete = del_complete;
    tp->timer.fire = tick;
    sr__http_cmds_init(&tp->cmds, &tp->base, &cmd_ops);
    sr__transport_set_decoder(&tp->base, cfg);
    /* No ping bytes, no pings; no server timeout (see the top). */
    sr__liveness_init(&tp->live, cfg->ping && cfg->ping_len ? cfg->keepalive_ms : 0, 0,
                      cfg->handshake_timeout_ms);
    if (sr__http_url_dup(cfg->url, "Long Polling", &tp->url, &tp->where, err) != 0) goto fail;
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
