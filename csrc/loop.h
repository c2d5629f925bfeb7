/*
 * loop.h - internals of sr_loop shared by the I/O modules.
 *
 * The loop owns: the event queue (I/O threads -> host thread), its wake-up
 * eventfd, the host-side timers (timerfd), one epoll descriptor holding both
 * (that is sr_loop_fd), and a small registry of services: the per-loop I/O
 * back ends (the WebSocket thread, the HTTP thread), created on first use by
 * the module that needs one and freed by the loop in sr_loop_free. The loop
 * names no back end: events carry their own dispatch and discard functions,
 * and services their own resume and free functions.
 *
 * The queue is bounded by bytes: when the data waiting for the host goes over
 * SR_QUEUE_HIGH, I/O threads stop reading their sockets (backpressure, never
 * a drop) until the host drains it under SR_QUEUE_LOW; then the loop calls
 * every service's resume.
 */
#ifndef SR_LOOP_H
#define SR_LOOP_H

#include "signalr.h"
#include <stddef.h>

#define SR_QUEUE_HIGH (8u << 20)
#define SR_QUEUE_LOW (2u << 20)

typedef struct sr_event sr_event;
typedef void (*sr_event_fn)(sr_event *ev);

/* One event. Allocated by the poster with sr__event_new (data is copied and
 * followed by a NUL byte not counted in len), owned by the queue after
 * sr__loop_post, freed by the loop after dispatch or discard ran. */
struct sr_event {
    sr_event *next;
    /* Host thread, inside sr_loop_dispatch: deliver the event (and drop
     * whatever reference target holds). Never NULL. */
    sr_event_fn dispatch;
    /* sr_loop_free, for an event never dispatched, after every service has
     * stopped: drop the reference target holds, run no callback. May be
     * NULL when there is nothing to drop. */
    sr_event_fn discard;
    void *target; /* the poster's object (sr_transport*, sr_http_req*, ...) */
    int type;     /* the poster's tag (e.g. SR_EV_TP_DATA in transport_kind.h) */
    int code;     /* SR_OK or SR_E* */
    long status;  /* HTTP status where it applies */
    char *text;   /* malloc'd message or NULL */
    size_t len;   /* bytes in data */
    /* What the event counts against the queue's bound: len, unless the
     * poster sets more (a payload that owns further allocations). */
    size_t weight;
    char data[]; /* payload */
};

sr_event *sr__event_new(sr_event_fn dispatch, sr_event_fn discard, void *target, int type,
                        const void *data, size_t len);
void sr__event_free(sr_event *ev);

/* Thread-safe: append ev to the queue and wake the host. Takes ownership. */
void sr__loop_post(sr_loop *loop, sr_event *ev);
/* Thread-safe: when the queue's last event is the caller's (the same
 * dispatch, target and type) and the host has not taken it yet, let merge
 * add to it under the queue's lock (merge returns 0 when it did) and count
 * weight more for it. 1 when merged; 0 when the caller must post its own
 * event. The host was woken for that event already. */
int sr__loop_merge_tail(sr_loop *loop, sr_event_fn dispatch, void *target, int type,
                        int (*merge)(sr_event *tail, void *arg), void *arg, size_t weight);
/* Thread-safe: make the host's wait return (it re-checks what it waits
 * for), e.g. after a service handed its sockets to the host. */
void sr__loop_wake(sr_loop *loop);
/* Thread-safe: 1 when the I/O side should pause reading (queue over HIGH). */
int sr__loop_congested(sr_loop *loop);
/* Host thread: run every service's resume (a transport the host held may
 * read again), unless the queue is congested (its drain will). */
void sr__loop_resume_io(sr_loop *loop);

/* A per-loop back end (typically a thread and what it drives). */
typedef struct sr_loop_service {
    void *self;
    /* Host thread: the host drained the queue under SR_QUEUE_LOW, so reads
     * paused for backpressure may resume. May be NULL. */
    void (*resume)(void *self);
    /* sr_loop_free: stop and join every thread the service started, then
     * free it. Services go in reverse order of creation, before the events
     * still queued are discarded; after the last one no thread of ours runs. */
    void (*free)(void *self);
    /* Optional, host thread, inside a blocking sr_loop_dispatch with the
     * queue empty: serve the back end's sockets on the host thread itself
     * for up to timeout_ms (-1: until something happens), so a host waiting
     * for a reply gets it without two thread hand-offs. Returns 1 when it
     * served (events it posted meanwhile need no wake-up), 0 when it cannot
     * now (the loop waits on its descriptor instead). At most one service
     * of a loop drives. timeout_ms 0 (from a dispatch that must not wait):
     * only push out what the host queued while it held the sockets, without
     * waiting; 1 when there was something. */
    int (*drive)(void *self, int timeout_ms);
    /* Required with drive, any thread, under the loop's lock: end a drive
     * in progress early (another thread posted an event). */
    void (*wake)(void *self);
} sr_loop_service;

/* Fill *svc (self, resume, free); 0, or -1 with err filled. */
typedef int (*sr_loop_service_new_fn)(sr_loop *loop, sr_loop_service *svc, sr_error *err);

/* Host thread. The service registered under key (the address of a static
 * object of the calling module), created with create on first use. Returns
 * its self, or NULL on failure (err filled). */
void *sr__loop_service(sr_loop *loop, const void *key, sr_loop_service_new_fn create,
                       sr_error *err);

#endif
