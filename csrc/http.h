/*
 * http.h - HTTP requests on the loop's HTTP thread (libcurl multi).
 *
 * Two modes. One-shot (on_data NULL): the body is buffered (up to max_body)
 * and handed to done; negotiate uses it. Streaming (on_data set): the body
 * reaches the host as it arrives, one data event per piece libcurl read,
 * for Server-Sent Events and Long Polling. Every callback runs on the host
 * thread inside sr_loop_dispatch; a request's events keep their order:
 * on_headers, then on_data in body order, then done exactly once.
 */
#ifndef SR_HTTP_H
#define SR_HTTP_H

#include "cookies.h"
#include "signalr.h"
#include "tls.h"
#include <stddef.h>

typedef struct sr_http_req sr_http_req;

/* Runs on the host thread inside dispatch. err is NULL when an HTTP
 * response arrived whole (any status); otherwise err->code is SR_ETRANSPORT
 * (connect/DNS/TLS failure, or the connection closed before the end of a
 * body whose length was known (Content-Length or chunked), with curl's text
 * and status still set) or SR_ETIMEOUT. body is borrowed; a stream's done
 * gets body NULL, len 0. */
typedef void (*sr_http_done_fn)(void *ud, long status, const char *body, size_t len,
                                const sr_error *err);
/* Streams only, host thread: the final response's headers arrived (after
 * redirects; 1xx responses are skipped). At most once, before any data. */
typedef void (*sr_http_headers_fn)(void *ud, long status);
/* Streams only, host thread: the next piece of the body (never empty).
 * data is borrowed until the callback returns. */
typedef void (*sr_http_data_fn)(void *ud, long status, const char *data, size_t len);

typedef struct sr_http_opts {
    const char *method; /* "GET", "POST", "DELETE" */
    const char *url;
    const sr_header *headers;
    size_t nheaders;
    const char *body; /* may be NULL; copied */
    size_t body_len;
    const sr_tls *tls;      /* NULL: the defaults (verify against the system's CAs) */
    const char *proxy;      /* the proxy option: NULL = the environment, "" = none */
    sr_cookie_jar *cookies; /* the connection's jar; NULL: no cookies */
    /* <= 0: none. One-shot: the whole request. Stream: connecting only
     * (DNS, TCP, TLS), since a stream lasts for hours; a server that
     * accepts and then stays silent is the caller's timeout to catch. */
    double timeout_ms;
    size_t max_body; /* one-shot: larger bodies fail with SR_EPROTOCOL; 0 = 1 MiB */
    /* Set: stream the body (max_body does not apply). Backpressure, never
     * loss: while the loop's queue is congested the transfer is paused
     * (libcurl stops reading the socket) until the host drains it. */
    sr_http_data_fn on_data;
    sr_http_headers_fn on_headers; /* optional, streams only */
} sr_http_opts;

/* Any thread: libcurl's global initialisation, once per process (it is not
 * thread-safe, so everything of ours that uses libcurl goes through here
 * first). 0, or -1 when libcurl cannot start. */
int sr__http_curl_init(void);

/* Host thread. Copies everything in opts. NULL on immediate failure. */
sr_http_req *sr__http_request(sr_loop *loop, const sr_http_opts *opts, sr_http_done_fn done,
                              void *ud, sr_error *err);
/* Host thread. No callback runs after this (events already queued are
 * dropped), the transfer stops at once on the HTTP thread, and the request
 * is freed. Also from inside its own on_headers/on_data. Only for a request
 * whose done has not run yet (from inside its own done: a no-op). A
 * request still open at sr_loop_free must be cancelled before it (its done
 * cannot run any more, and the host's reference would leak). */
void sr__http_cancel(sr_http_req *req);

#endif
