/*
 * http_io.h - what a transport kind (Server-Sent Events, later Long
 * Polling) needs from the loop's HTTP thread (http.c): the thread itself,
 * jobs run on it, easy handles with a completion on it, timers on it, and
 * the curl option setup every request shares (headers, TLS, proxy).
 *
 * Threading: "thread" below is the HTTP thread of the loop. The multi handle
 * and everything marked thread-only are touched there alone; the host (or
 * any thread) reaches it through sr__http_io_submit. A kind's job, timer and
 * completion functions therefore run one at a time, never concurrently with
 * each other or with libcurl's callbacks of the same loop.
 *
 * Shutdown (sr_loop_free): jobs queued before it still run, then every
 * transfer still in the multi completes with CURLE_ABORTED_BY_CALLBACK,
 * then armed timers are dropped without firing and the thread ends. A kind
 * must therefore let go of its object when its last transfer completes.
 *
 * libcurl forbids curl_multi_add_handle and curl_multi_remove_handle inside
 * its own callbacks (write, header): from there, arm a timer due now and
 * add or remove in it.
 */
#ifndef SR_HTTP_IO_H
#define SR_HTTP_IO_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "cookies.h"
#include "loop.h"
#include "signalr.h"
#include "tls.h"

typedef struct sr_http_io sr_http_io;

/* A function run on the thread. Queued once at a time: resubmit only after
 * run has started (run may free or resubmit the job). */
typedef struct sr_http_job {
    struct sr_http_job *next;
    void (*run)(sr_http_io *io, struct sr_http_job *job);
} sr_http_job;

/* An easy handle in the multi (CURLOPT_PRIVATE points here). */
typedef struct sr_http_xfer {
    CURL *easy;
    /* Thread: the handle left the multi; rc is CURLE_OK or the failure
     * (CURLE_ABORTED_BY_CALLBACK when the loop is being freed). The owner
     * cleans up or re-adds the easy handle. */
    void (*complete)(sr_http_io *io, struct sr_http_xfer *x, CURLcode rc);
    /* Optional, thread: a transfer paused under backpressure (its write
     * callback set paused and returned CURL_WRITEFUNC_PAUSE) is about to be
     * unpaused; libcurl may call the write callback again at once. */
    void (*resumed)(sr_http_io *io, struct sr_http_xfer *x);
    struct sr_http_xfer *prev, *next; /* thread only */
    int paused;                       /* thread only */
    sr_cookie_jar *jar;               /* the handle's reference (sr__http_setup), or NULL */
} sr_http_xfer;

/* A one-shot timer on the thread; zero-initialise it. */
typedef struct sr_http_timer {
    uint64_t due; /* sr__liveness_clock microseconds */
    void (*fire)(sr_http_io *io, struct sr_http_timer *t);
    struct sr_http_timer *prev, *next; /* thread only */
    int armed;                         /* thread only */
} sr_http_timer;

/* What every request of a connection carries. */
typedef struct sr_http_conf {
    const sr_header *headers;
    size_t nheaders;
    const sr_tls *tls;      /* NULL: the defaults (verify against the system's CAs) */
    const char *proxy;      /* the proxy option: NULL = the environment, "" = none */
    sr_cookie_jar *cookies; /* the connection's jar; NULL: no cookies */
} sr_http_conf;

/* Host thread: the loop's HTTP thread, started on first use. NULL with err
 * filled on failure. */
sr_http_io *sr__http_io_get(sr_loop *loop, sr_error *err);
sr_loop *sr__http_io_loop(const sr_http_io *io);
/* Any thread: queue job and wake the thread. */
void sr__http_io_submit(sr_http_io *io, sr_http_job *job);

/* Thread: add x->easy to the multi (CURLM_OK), or remove it without its
 * completion running (it must be in the multi). */
CURLMcode sr__http_xfer_add(sr_http_io *io, sr_http_xfer *x);
void sr__http_xfer_remove(sr_http_io *io, sr_http_xfer *x);

/* Thread: arm t to fire at due (re-arming moves it), or disarm it (no-op
 * when not armed). A timer fires once per arming, after the transfers'
 * progress of the same pass. */
void sr__http_timer_arm(sr_http_io *io, sr_http_timer *t, uint64_t due);
void sr__http_timer_cancel(sr_http_io *io, sr_http_timer *t);

/* Any thread, before x->easy is added: the options every request of this
 * client shares: URL, user agent, redirects (http and https only), TLS,
 * proxy, the cookie jar (x then holds a reference on it until
 * sr__http_xfer_cleanup; a Cookie header in conf's headers is then sent
 * with the jar's cookies, in one header), errbuf (CURL_ERROR_SIZE bytes)
 * and the header list: "Expect:" (no
 * 100-continue round trip), then extra (full "Name: value" lines), then
 * conf's headers. *list receives the list (free it with
 * curl_slist_free_all after the handle is cleaned up, also on failure).
 * NULL, or a static message: "out of memory", an invalid header, or an
 * option this libcurl rejects. */
const char *sr__http_setup(sr_http_io *io, sr_http_xfer *x, const char *url,
                           const sr_http_conf *conf, const char *const *extra, size_t nextra,
                           char *errbuf, struct curl_slist **list);
/* Any thread, x not in the multi: clean up x->easy (NULL afterwards) and
 * drop its reference on the cookie jar. No-op when already done. */
void sr__http_xfer_cleanup(sr_http_xfer *x);

/* Thread, after a transfer failed (rc != CURLE_OK): curl's text, with the
 * system's reason when libcurl kept an errno ("Connection refused"). */
void sr__http_strerror(CURL *e, CURLcode rc, const char *errbuf, char *out, size_t size);

/* Thread, a header callback: track the header block being read
 * (*saw_location: it has a Location header; zero it before the first
 * line) and, on the blank line that ends the final response's block, return
 * its status. 0 otherwise: another line, or the end of a 1xx, of a proxy's
 * CONNECT reply (no status yet) or of a redirect libcurl follows. */
long sr__http_final_status(sr_http_xfer *x, const char *p, size_t len, int *saw_location);

/* ------------------------------------------ host commands of a transport */

/* A transport kind's host side (kick, close, release, and the open its
 * constructor asks for) reaches the thread through command bits and one
 * job: sr__http_cmds_post sets bits and queues the job unless it is queued
 * already; the job, while queued, holds a reference on the transport. On
 * the thread it takes every bit at once and calls the kind's handlers:
 * release alone when asked for (no upcall runs after it), else open, close
 * and write, in that order. Each handler must be a no-op where it does not
 * apply (after the I/O side finished, write before the transport is open):
 * an earlier handler of the same run may have ended the I/O side. The
 * transport itself stays allocated until the handlers return. */
struct sr_transport;

enum {
    SR_HTTP_CMD_OPEN = 1,   /* start connecting (once, from the constructor) */
    SR_HTTP_CMD_WRITE = 2,  /* the send queue went non-empty */
    SR_HTTP_CMD_CLOSE = 4,  /* the host asked to close */
    SR_HTTP_CMD_RELEASE = 8 /* the host let go: finish the I/O side */
};

typedef struct sr_http_cmd_ops {
    void (*open)(struct sr_transport *tp);
    void (*write)(struct sr_transport *tp);
    void (*close)(struct sr_transport *tp);
    void (*release)(struct sr_transport *tp);
} sr_http_cmd_ops;

typedef struct sr_http_cmds {
    sr_http_job job; /* first */
    struct sr_transport *tp;
    const sr_http_cmd_ops *ops;
    unsigned bits; /* atomic: SR_HTTP_CMD_* not handled yet */
    int queued;    /* atomic: job is queued */
} sr_http_cmds;

/* Before the first post: c commands tp (which embeds c) through ops. */
void sr__http_cmds_init(sr_http_cmds *c, struct sr_transport *tp, const sr_http_cmd_ops *ops);
/* Any thread but the thread's own callbacks: ask for bits. */
void sr__http_cmds_post(sr_http_io *io, sr_http_cmds *c, unsigned bits);

#endif
