/*
 * transport.h - the transport interface.
 *
 * A transport is a byte pipe to the server that lives on an I/O thread:
 * open, send, close, plus upcalls for open, data, close and drain. Upcalls
 * run on the host thread inside sr_loop_dispatch. The transport also runs
 * the timers that must keep working while the host is busy (liveness.c,
 * driven by the kind's I/O thread): it sends the ping bytes when nothing was
 * sent for keepalive_ms, and fails with SR_ETIMEOUT when nothing arrived for
 * server_timeout_ms or when no record separator arrived within
 * handshake_timeout_ms of opening.
 *
 * Kinds: WebSockets (ws_transport.c). Server-Sent Events and Long Polling
 * (over http.h) will be added as two more constructors of the same shape.
 *
 * Ownership: the host holds one reference from *_new until
 * sr__transport_release; events in flight hold their own. After release, no
 * upcall runs.
 */
#ifndef SR_TRANSPORT_H
#define SR_TRANSPORT_H

#include "loop.h"
#include "signalr.h"
#include <stddef.h>

typedef struct sr_transport sr_transport;

typedef struct sr_transport_upcalls {
    void (*on_open)(void *ud, sr_transport *tp);
    void (*on_data)(void *ud, sr_transport *tp, const char *data, size_t len);
    /* err NULL: closed cleanly after sr__transport_close. Runs once. */
    void (*on_close)(void *ud, sr_transport *tp, const sr_error *err);
    /* A send returned SR_EFULL earlier and the send queue has since gone
     * under SR_SEND_LOW: sends fit again. May be NULL. */
    void (*on_drain)(void *ud, sr_transport *tp);
} sr_transport_upcalls;

/* Copied by *_new. */
typedef struct sr_transport_cfg {
    const char *url;          /* ws:// or wss:// (WebSockets), http(s):// otherwise; includes id= */
    const sr_header *headers; /* includes Authorization when there is a token */
    size_t nheaders;
    int binary; /* binary frames (MessagePack) */
    int tls_no_verify;
    const char *ca_file, *cert_file, *key_file;
    const char *proxy;
    const char *handshake; /* sent first, right after the transport opens */
    size_t handshake_len;
    const char *ping; /* keepalive bytes */
    size_t ping_len;
    double keepalive_ms;         /* <= 0: no pings */
    double server_timeout_ms;    /* <= 0: no timeout */
    double handshake_timeout_ms; /* <= 0: no timeout */
} sr_transport_cfg;

/* Start connecting; on_open or on_close follows. NULL on immediate failure. */
sr_transport *sr__ws_transport_new(sr_loop *loop, const sr_transport_cfg *cfg,
                                   const sr_transport_upcalls *up, void *ud, sr_error *err);

/* The shape of every kind's constructor. */
typedef sr_transport *(*sr_transport_new_fn)(sr_loop *loop, const sr_transport_cfg *cfg,
                                             const sr_transport_upcalls *up, void *ud,
                                             sr_error *err);

/* conn.c: use fn instead of sr__ws_transport_new for this connection (the
 * C unit tests plug in an in-memory transport and assert exact bytes). */
void sr__conn_set_ws_factory(sr_conn *c, sr_transport_new_fn fn);
/* conn.c, tests only: with skip_negotiation, act as if negotiate had
 * returned this connection token and agreed to stateful reconnect. */
void sr__conn_test_stateful(sr_conn *c, const char *token);

/* Host thread. Queue bytes (copied); several queued sends may go out in one
 * transport message. SR_EFULL when more than SR_SEND_MAX bytes are queued,
 * SR_ECLOSED when the transport is closing or closed. */
#define SR_SEND_MAX (64u << 20)
#define SR_SEND_LOW (16u << 20)
int sr__transport_send(sr_transport *tp, const char *data, size_t len);
/* Host thread. Close gracefully; on_close(NULL) follows unless released. */
void sr__transport_close(sr_transport *tp);
/* Host thread. Drop the host's reference; no upcall runs afterwards. */
void sr__transport_release(sr_transport *tp);
const char *sr__transport_name(const sr_transport *tp); /* "WebSockets" */

#endif
