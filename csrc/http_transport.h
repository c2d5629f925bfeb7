/*
 * http_transport.h - the frame the HTTP transport kinds (Server-Sent Events,
 * Long Polling) share around their receiving half: the states, the host's
 * commands, the timer (the connect limit, the close grace, keepalive pings,
 * the handshake and server timeouts, and the handshake POST), the sender
 * (http_send.h) and the one end of the I/O side. A kind embeds sr_http_tp
 * first and brings its receiving requests through sr_http_tp_kind.
 *
 * Threads and ownership:
 *  - "Thread" is the loop's HTTP thread (http_io.h): jobs, completions, the
 *    timer and libcurl's callbacks. The host talks to it through command
 *    bits (cmds, http_io.h): one job, queued at most once at a time,
 *    holding a reference while queued.
 *  - The I/O side holds a reference from sr__http_tp_open until detach,
 *    which disarms the timer, has the kind remove and clean up its
 *    requests, and stops the sender. It runs on the one SR_EV_TP_CLOSED
 *    (sr__http_tp_fail), on release, and when the loop is freed (the kind's
 *    request completes as aborted and fails).
 *  - libcurl callbacks never add or remove handles (libcurl forbids it):
 *    a kind's header callback marks the transport open and arms the timer
 *    due now; the timer sends the handshake POST.
 *  - Close: the send queue still goes out, for up to SR_HTTP_TP_CLOSE_US;
 *    the kind's sent hook says when the close is done. Any end after the
 *    host asked to close is clean (code 0).
 */
#ifndef SR_HTTP_TRANSPORT_H
#define SR_HTTP_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "http_io.h"
#include "http_send.h"
#include "liveness.h"
#include "transport_kind.h"

/* Connecting (DNS, TCP, TLS) of each request, and from starting the
 * receiving request to its first response's headers (a server that
 * accepts and does not answer), as the WebSocket kind. */
#define SR_HTTP_TP_CONNECT_US (20u * 1000000u)
/* After a close was asked for, queued sends get this long to go out. */
#define SR_HTTP_TP_CLOSE_US (5u * 1000000u)

enum {
    SR_HTTP_TP_IDLE,       /* created, SR_HTTP_CMD_OPEN not handled yet */
    SR_HTTP_TP_CONNECTING, /* the first receiving request is in the multi, no 200 yet */
    SR_HTTP_TP_OPEN,       /* a 200 arrived: OPEN posted */
    SR_HTTP_TP_DONE        /* detached: the I/O side is finished with it */
};

typedef struct sr_http_tp sr_http_tp;

/* What a kind brings. Each hook gets the kind's object as its sr_http_tp. */
typedef struct sr_http_tp_kind {
    /* kick, close and release are sr__http_tp_kick, _close and _release;
     * destroy is the kind's, and ends with sr__http_tp_free. */
    sr_transport_ops ops;
    const char *label;     /* "SSE", "Long Polling": the start of messages */
    const char *text_only; /* NULL, or why the kind refuses the binary protocol */
    /* Host, construction: create and configure the receiving requests.
     * NULL, or a static message ("out of memory" or a configuration
     * failure); the kind's destroy cleans up either way. */
    const char *(*setup)(sr_http_tp *t, const sr_http_conf *conf);
    /* Thread, SR_HTTP_CMD_OPEN: start receiving. 0, or -1 after
     * sr__http_tp_fail. */
    int (*start)(sr_http_tp *t);
    /* Thread, detach: remove the receiving requests from the multi and
     * clean them up. */
    void (*stop)(sr_http_tp *t);
    /* Thread, open: nothing is queued and no POST is outstanding. Ends a
     * close whose queue went out, or goes on with it. t may be freed. */
    void (*sent)(sr_http_tp *t);
    /* Thread: a POST ended (http_send.h). */
    sr_http_send_done_fn post_done;
} sr_http_tp_kind;

struct sr_http_tp {
    sr_transport base; /* first: sr_transport*, sr_http_tp* and the kind's convert */
    const sr_http_tp_kind *kind;
    sr_http_io *io;

    /* Constant after sr__http_tp_open. */
    char *url;   /* http(s), with the query */
    char *where; /* the URL without its query (it holds the token), for messages */
    char *hs;
    size_t hs_len;
    char *ping;
    size_t ping_len;

    sr_http_cmds cmds; /* the host's commands (http_io.h) */

    /* Thread only. */
    int state;
    sr_http_send send; /* the POSTs */
    sr_http_timer timer;
    uint64_t connect_deadline, close_deadline;
    int closing; /* the host asked to close: the queue is being sent */
    int paused;  /* the receiving request is paused under backpressure */
    sr_liveness live;
};

/* Host: the first half of a kind's constructor. Checks the arguments,
 * allocates size bytes (the kind's object, sr_http_tp first, zeroed) and
 * initialises the transport and the frame. NULL with err set. Then the
 * kind sets up its own part (its completions, its liveness with
 * sr__liveness_init) and calls sr__http_tp_open. */
sr_http_tp *sr__http_tp_new(size_t size, const sr_http_tp_kind *kind, sr_loop *loop,
                            const sr_transport_cfg *cfg, const sr_transport_upcalls *up, void *ud,
                            sr_error *err);

/* Host: the second half: copy the URL, handshake and ping, create the
 * requests (the kind's setup, then the sender) and ask the thread to start.
 * The transport, or NULL with err set (t is freed). */
sr_transport *sr__http_tp_open(sr_http_tp *t, const sr_transport_cfg *cfg, sr_error *err);

/* Any thread, last reference gone: free what the frame allocated. */
void sr__http_tp_free(sr_http_tp *t);

/* Host: the kind's ops.kick, ops.close and ops.release. */
void sr__http_tp_kick(sr_transport *tp);
void sr__http_tp_close(sr_transport *tp);
void sr__http_tp_release(sr_transport *tp);

/* Thread: arm the timer to run at due. */
void sr__http_tp_arm(sr_http_tp *t, uint64_t due);

/* Thread: post the one SR_EV_TP_CLOSED (clean after the host asked to
 * close) and detach. t may be freed on return. */
void sr__http_tp_fail(sr_http_tp *t, int code, long status, const char *text);

/* Thread, the receiving request's header callback, its first 200: the
 * transport is open. SR_EV_TP_OPEN is posted and the timer armed due now,
 * to send the handshake POST (no handle is added from a libcurl callback).
 * -1 when the event could not be posted (out of memory). */
int sr__http_tp_opened(sr_http_tp *t);

/* Thread, a receiving request's write callback when
 * sr__transport_backpressure says so: nothing of the piece is consumed
 * (libcurl hands it over again once x is unpaused), x is marked paused and
 * the silence is ours (the liveness pauses). The callback then returns
 * CURL_WRITEFUNC_PAUSE. */
void sr__http_tp_pause(sr_http_tp *t, sr_http_xfer *x);

/* Thread, the paused request's resumed hook: the liveness resumes and is
 * checked again from now (the server timeout runs again). */
void sr__http_tp_resume(sr_http_tp *t);

/* Thread, any state: start the next POST when none is outstanding and
 * something is queued; when nothing is, the kind's sent hook. t may be
 * freed on return. */
void sr__http_tp_pump(sr_http_tp *t);

#endif
