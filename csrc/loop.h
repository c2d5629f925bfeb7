/*
 * loop.h - internals of sr_loop shared by the I/O modules.
 *
 * The loop owns: the event queue (I/O threads -> host thread), its wake-up
 * eventfd, the host-side timers (timerfd), and one epoll descriptor holding
 * both (that is sr_loop_fd). It also owns the two I/O threads, created on
 * first use: the WebSocket thread (ws_transport.c, libwebsockets) and the
 * HTTP thread (http.c, libcurl multi).
 *
 * The queue is bounded by bytes: when the data waiting for the host goes over
 * SR_QUEUE_HIGH, I/O threads stop reading their sockets (backpressure, never
 * a drop) until the host drains it under SR_QUEUE_LOW.
 */
#ifndef SR_LOOP_H
#define SR_LOOP_H

#include "signalr.h"
#include <stddef.h>

#define SR_QUEUE_HIGH (8u << 20)
#define SR_QUEUE_LOW (2u << 20)

typedef enum sr_event_type {
    SR_EV_TP_OPEN = 1, /* transport connected (handshake bytes sent) */
    SR_EV_TP_DATA,     /* bytes received */
    SR_EV_TP_CLOSED,   /* transport ended; code/status/text say why (code 0 = clean) */
    SR_EV_HTTP_DONE,   /* an http.h request finished */
    SR_EV_CALL         /* run fn(arg) on the host thread (generic) */
} sr_event_type;

/* One event. Allocated by the poster with sr__event_new (data is copied and
 * followed by a NUL byte not counted in len), owned by the queue after
 * sr__loop_post, freed by the dispatcher. */
typedef struct sr_event {
    struct sr_event *next;
    sr_event_type type;
    void *target;          /* sr_transport* or sr_http_req* (a reference is held) */
    int code;              /* SR_OK or SR_E* */
    long status;           /* HTTP status where it applies */
    char *text;            /* malloc'd message or NULL */
    void (*fn)(void *arg); /* SR_EV_CALL */
    void *arg;
    size_t len;  /* bytes in data */
    char data[]; /* payload (SR_EV_TP_DATA, SR_EV_HTTP_DONE body) */
} sr_event;

sr_event *sr__event_new(sr_event_type type, void *target, const void *data, size_t len);
void sr__event_free(sr_event *ev);

/* Thread-safe: append ev to the queue and wake the host. Takes ownership. */
void sr__loop_post(sr_loop *loop, sr_event *ev);
/* Thread-safe: 1 when the I/O side should pause reading (queue over HIGH). */
int sr__loop_congested(sr_loop *loop);

/* Per-thread I/O back ends, created lazily by the loop on first use; both
 * return NULL on failure (err filled). The loop frees them in sr_loop_free. */
struct sr_ws_io;
struct sr_http_io;
struct sr_ws_io *sr__loop_ws_io(sr_loop *loop, sr_error *err);
struct sr_http_io *sr__loop_http_io(sr_loop *loop, sr_error *err);

/* Implemented by ws_transport.c / http.c. */
struct sr_ws_io *sr__ws_io_new(sr_loop *loop, sr_error *err);
void sr__ws_io_free(struct sr_ws_io *io);
/* Called by the loop when the host drained the queue under SR_QUEUE_LOW, so
 * paused reads may resume. Thread-safe. */
void sr__ws_io_resume(struct sr_ws_io *io);
struct sr_http_io *sr__http_io_new(sr_loop *loop, sr_error *err);
void sr__http_io_free(struct sr_http_io *io);
void sr__http_io_resume(struct sr_http_io *io);

/* Dispatch hooks: the loop hands each event to its target's owner module. */
void sr__transport_dispatch(sr_event *ev); /* transport.c */
void sr__http_dispatch(sr_event *ev);      /* http.c */

/* Release hooks for events still queued when sr_loop_free runs (after both
 * I/O threads have stopped): drop the reference ev->target holds, run no
 * upcall. The loop frees the event itself afterwards, as the dispatcher does
 * after a dispatch hook. SR_EV_CALL events left over are freed without
 * running fn. */
void sr__transport_event_discard(sr_event *ev); /* transport.c */
void sr__http_event_discard(sr_event *ev);      /* http.c */

#endif
