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
 * Kinds: WebSockets (ws_transport.c), Server-Sent Events (sse_transport.c,
 * on the HTTP thread through http_io.h), Long Polling (lp_transport.c, the
 * same way). conn.c chooses among them (its kinds[]).
 *
 * Ownership: the host holds one reference from *_new until
 * sr__transport_release; events in flight hold their own. After release, no
 * upcall runs.
 */
#ifndef SR_TRANSPORT_H
#define SR_TRANSPORT_H

#include "cookies.h"
#include "loop.h"
#include "protocol.h"
#include "signalr.h"
#include "tls.h"
#include <stddef.h>

typedef struct sr_transport sr_transport;

/* One message parsed on the I/O side, and the bytes it took on the wire. */
typedef struct sr_rx_msg {
    sr_msg m;
    size_t bytes;
} sr_rx_msg;

typedef struct sr_transport_upcalls {
    void (*on_open)(void *ud, sr_transport *tp);
    void (*on_data)(void *ud, sr_transport *tp, const char *data, size_t len);
    /* Messages parsed on the I/O side (cfg.protocol), in order with on_data.
     * The transport clears them after the upcall; the upcall may take a
     * field by setting it to NULL. May be NULL when cfg.protocol is. */
    void (*on_msgs)(void *ud, sr_transport *tp, sr_rx_msg *msgs, size_t n);
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
    /* WebSockets: a binary message under a text protocol (JSON) is a
     * protocol error, as the official clients treat it (conn.c sets it;
     * the transport's own tests exchange raw bytes). */
    int text_only;
    const sr_tls *tls; /* NULL: the defaults (verify against the system's CAs) */
    const char *proxy; /* the proxy option: NULL = the environment, "" = none */
    /* The connection's jar, for the HTTP kinds' requests (WebSockets: conn.c
     * puts the jar's Cookie header into headers). NULL: no cookies. */
    sr_cookie_jar *cookies;
    const char *handshake; /* sent first, right after the transport opens */
    size_t handshake_len;
    const char *ping; /* keepalive bytes */
    size_t ping_len;
    double keepalive_ms;         /* <= 0: no pings */
    double server_timeout_ms;    /* <= 0: no timeout */
    double handshake_timeout_ms; /* <= 0: no timeout */
    /* Parse received messages on the I/O side, so the host thread gets them
     * ready (on_msgs). NULL: every byte goes to on_data. With a handshake,
     * the bytes up to the first record separator (the reply) go to on_data
     * first. Bytes that fail to parse, and everything after them, go to
     * on_data unparsed, so the host parses them again and reports the
     * fault as it would have; so does a message cut off by the close. */
    const sr_protocol *protocol;
    size_t max_message_size; /* the protocol's limit; 0: none */
} sr_transport_cfg;

/* Start connecting; on_open or on_close follows. NULL on immediate failure. */
sr_transport *sr__ws_transport_new(sr_loop *loop, const sr_transport_cfg *cfg,
                                   const sr_transport_upcalls *up, void *ud, sr_error *err);

/* Server-Sent Events (sse_transport.c): receives on a GET of url (http or
 * https; ws and wss are taken as their http twins) with Accept:
 * text/event-stream, sends each batch as one POST to the same url. Text
 * only: cfg.binary fails with SR_EUSAGE. Same contract as above. */
sr_transport *sr__sse_transport_new(sr_loop *loop, const sr_transport_cfg *cfg,
                                    const sr_transport_upcalls *up, void *ud, sr_error *err);

/* Long Polling (lp_transport.c): receives by a loop of GETs of url (http
 * or https; ws and wss are taken as their http twins), the first 200
 * opening it; sends each batch as one POST to the same url (binary bodies
 * as application/octet-stream when cfg.binary); a close sends the queue,
 * then DELETE. cfg.server_timeout_ms is not applied (a poll may be silent
 * for 90 s). Same contract as above. */
sr_transport *sr__lp_transport_new(sr_loop *loop, const sr_transport_cfg *cfg,
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
/* Host thread. on: stop reading from the server (backpressure for this
 * transport alone; nothing is dropped); off: read again. */
void sr__transport_hold(sr_transport *tp, int on);
/* Host thread. A message of this transport's on_msgs that the host moved
 * out of its batch (held) and is done with: it goes back to the reading
 * side with the next hand-back, like the batches' own, so its arena is
 * reused there, not freed on this thread. *m is zeroed. */
void sr__transport_recycle(sr_transport *tp, sr_rx_msg *m);
/* Host thread. Hand back what sr__transport_recycle gathered, now. */
void sr__transport_recycle_flush(sr_transport *tp);
/* Host thread. Drop the host's reference; no upcall runs afterwards. */
void sr__transport_release(sr_transport *tp);
const char *sr__transport_name(const sr_transport *tp); /* "WebSockets" */

#endif
