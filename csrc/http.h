/*
 * http.h - one-shot HTTP requests on the loop's HTTP thread (libcurl multi).
 * Used for negotiate now; SSE and Long Polling will run their long requests
 * on the same thread.
 */
#ifndef SR_HTTP_H
#define SR_HTTP_H

#include "signalr.h"
#include <stddef.h>

typedef struct sr_http_req sr_http_req;

/* Runs on the host thread inside dispatch. err is NULL when an HTTP
 * response arrived (any status); otherwise err->code is SR_ETRANSPORT
 * (connect/DNS/TLS failure, with curl's text) or SR_ETIMEOUT. body is
 * borrowed. */
typedef void (*sr_http_done_fn)(void *ud, long status, const char *body, size_t len,
                                const sr_error *err);

typedef struct sr_http_opts {
    const char *method; /* "GET", "POST", "DELETE" */
    const char *url;
    const sr_header *headers;
    size_t nheaders;
    const char *body; /* may be NULL; copied */
    size_t body_len;
    int tls_no_verify;
    const char *ca_file, *cert_file, *key_file;
    const char *proxy;
    double timeout_ms; /* <= 0: none */
    size_t max_body;   /* larger response bodies fail with SR_EPROTOCOL; 0 = 1 MiB */
} sr_http_opts;

/* Host thread. Copies everything in opts. NULL on immediate failure. */
sr_http_req *sr__http_request(sr_loop *loop, const sr_http_opts *opts, sr_http_done_fn done,
                              void *ud, sr_error *err);
/* Host thread. done will not run after this; frees the request. Only for a
 * request whose done has not run yet (from inside its own done: a no-op). */
void sr__http_cancel(sr_http_req *req);

#endif
