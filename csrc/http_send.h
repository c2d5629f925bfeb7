/*
 * http_send.h - the sending half the HTTP transport kinds share (Server-Sent
 * Events and Long Polling): exactly one POST outstanding to the hub URL,
 * the handshake alone first, then each POST carrying the whole send queue
 * as it stood when the previous one was answered (sr__transport_take). The
 * protocol refuses a second concurrent POST (409), so batching is the only
 * way to send faster than one round trip per message.
 *
 * Threading: sr__http_send_setup and sr__http_send_free run anywhere before
 * or after the I/O side (the host configures the handle so bad options fail
 * at creation); everything else runs on the HTTP thread only (http_io.h).
 *
 * Messages never show the URL's query (it holds the connection token): the
 * owner passes `where`, the URL without it.
 */
#ifndef SR_HTTP_SEND_H
#define SR_HTTP_SEND_H

#include <stddef.h>

#include "buf.h"
#include "http_io.h"
#include "liveness.h"
#include "transport_kind.h"

typedef struct sr_http_send sr_http_send;

/* Thread: a POST ended. SR_OK: answered 2xx, the sender is idle again (pump
 * for more). SR_ECANCELED: aborted because the loop is being freed. Else
 * SR_ETRANSPORT with the HTTP status (or 0) and the message. */
typedef void (*sr_http_send_done_fn)(sr_http_send *s, int code, long status, const char *text);

struct sr_http_send {
    sr_http_xfer x; /* first: the POST's easy handle, re-added per batch */
    /* Set by the owner before sr__http_send_setup; constant afterwards. */
    sr_http_io *io;
    sr_transport *tp;  /* whose send queue goes out */
    sr_liveness *live; /* told of every POST started (keepalive clock) */
    const char *label; /* "SSE", "Long Polling": the start of messages */
    const char *where; /* the URL without its query */
    const char *first; /* the handshake, owned by the owner; may be NULL */
    size_t first_len;
    sr_http_send_done_fn done;
    void *owner;

    struct curl_slist *hdrs;
    /* Thread only. */
    int first_pending;
    int active; /* a POST is in the multi */
    sr_buf batch;
    char err[CURL_ERROR_SIZE];
};

/* Create and configure the POST (url with its query, conf's headers, TLS
 * and proxy; Content-Type application/octet-stream when binary, else
 * text/plain;charset=UTF-8). NULL, or a static message ("out of memory" or
 * a configuration failure). Call sr__http_send_free either way. */
const char *sr__http_send_setup(sr_http_send *s, const char *url, const sr_http_conf *conf,
                                int binary, long connect_timeout_ms);

/* Thread: the transport opened; the handshake (if any) goes next, alone. */
void sr__http_send_open(sr_http_send *s);

/* Thread: start the next POST when none is outstanding and something is
 * queued. 1: a POST is outstanding; 0: idle, nothing queued; -1: the POST
 * could not start (msg gets the text). */
int sr__http_send_pump(sr_http_send *s, char *msg, size_t size);

/* Thread: remove an outstanding POST (no done runs) and clean up the easy
 * handle on the thread that used it. */
void sr__http_send_stop(sr_http_send *s);

/* Any thread, the I/O side finished or never started: free the rest. */
void sr__http_send_free(sr_http_send *s);

/* conf: what every request of the transport cfg configures carries
 * (headers, TLS, proxy, cookies); it points into cfg. */
void sr__http_conf_of(sr_http_conf *conf, const sr_transport_cfg *cfg);

/* A malloc'd copy of n bytes at p (never NULL for n == 0 unless out of
 * memory): the handshake and ping bytes a kind keeps. */
void *sr__http_dup_bytes(const void *p, size_t n);

/* Copy url (http(s); ws(s) is taken as its http(s) twin) into *url_out and
 * the URL without its query into *where_out (both malloc'd). 0, or -1 with
 * err set ("invalid <label> URL ..." or out of memory). */
int sr__http_url_dup(const char *url, const char *label, char **url_out, char **where_out,
                     sr_error *err);

#endif
