/*
 * transport_kind.h - what a transport kind (ws_transport.c, sse_transport.c,
 * lp_transport.c) builds on: the generic sr_transport of transport.c.
 *
 * transport.c owns what every kind shares: the reference count, the
 * host-side send queue, the released/closed flags, posting events and
 * dispatching them to the upcalls. A kind embeds sr_transport as the first
 * member of its own struct and supplies the hooks below.
 *
 * References: the host holds one from *_new until sr__transport_release;
 * the kind's I/O side holds one while it may still touch the transport;
 * every event in flight holds one. The last unref calls ops->destroy and
 * frees, on whichever thread that happens, so destroy must not touch the
 * loop or lws.
 */
#ifndef SR_TRANSPORT_KIND_H
#define SR_TRANSPORT_KIND_H

#include <pthread.h>
#include <stddef.h>

#include "buf.h"
#include "transport.h"

/* Event types a transport posts (sr_event.type). */
typedef enum sr_tp_event {
    SR_EV_TP_OPEN = 1, /* transport connected (handshake bytes sent) */
    SR_EV_TP_DATA,     /* bytes received */
    SR_EV_TP_MSGS,     /* messages parsed on the I/O side: data is an sr_buf of sr_rx_msg */
    SR_EV_TP_CLOSED,   /* transport ended; code/status/text say why (code 0 = clean) */
    SR_EV_TP_DRAIN     /* the send queue went under SR_SEND_LOW after an SR_EFULL */
} sr_tp_event;

typedef struct sr_transport_ops {
    const char *name; /* "WebSockets" */
    /* Host thread, without tp->mu held. */
    void (*kick)(sr_transport *tp);    /* the send queue went non-empty */
    void (*close)(sr_transport *tp);   /* first sr__transport_close */
    void (*release)(sr_transport *tp); /* sr__transport_release, before the host unref */
    /* Any thread, last reference gone: free what the kind allocated. */
    void (*destroy)(sr_transport *tp);
} sr_transport_ops;

struct sr_transport {
    const sr_transport_ops *ops;
    sr_loop *loop;
    int refs;     /* __atomic */
    int released; /* __atomic; set by the host, read anywhere */

    /* Host thread only. */
    sr_transport_upcalls up;
    void *ud;
    int closed_seen; /* on_close ran: nothing more is delivered */

    /* The send queue. out.data[0..pre) is headroom the kind may use to
     * write the queue in place (LWS_PRE for WebSockets); the queue is empty
     * when out.len <= pre. */
    pthread_mutex_t mu;
    sr_buf out;     /* mu */
    size_t pre;     /* constant */
    int close_req;  /* mu: the host asked to close */
    int dead;       /* mu: the I/O side finished; sends fail */
    int want_drain; /* mu: a send failed with SR_EFULL; on_drain is owed */

    /* Allocated up front so that the one SR_EV_TP_CLOSED always gets out. */
    sr_event *closed_ev; /* I/O side until posted */

    /* Receiving (I/O side; see sr__transport_post_data). */
    const sr_protocol *rx_proto; /* NULL: raw bytes only */
    size_t rx_max;
    int rx_handshake; /* the handshake reply has not been seen yet */
    sr_buf rx_part;   /* the start of a message not complete yet */
    /* A large text record in progress, past RX_STREAM_MIN: its bytes in
     * pieces (rx_part's buffer first), parsed with the protocol's
     * parse_stream, which frees each piece once it has read it. */
    sr_buf *rx_chunks;
    size_t rx_nchunks, rx_chunks_cap, rx_chunks_len;
    sr_buf rx_msgs; /* sr_rx_msg entries of the batch being parsed */
    /* mu: the batches (an sr_buf each) the host dispatched, handed back so
     * that their messages are freed where they were allocated and their
     * buffers reused (see sr__transport_post_data). */
    sr_buf rx_done;
    size_t rx_done_bytes; /* mu: the entries' bytes in rx_done's batches */
    int rx_returned;      /* __atomic: rx_done is not empty */
    sr_buf rx_spare;      /* I/O side: rx_done's list swapped out, being cleared */
    /* I/O side: emptied batch buffers for the next batches (a batch's
     * buffer goes with its event, so each new one would start small). */
    sr_buf rx_free[4];
    int rx_nfree;
    sr_arena_pool rx_pool; /* I/O side: the arenas of dispatched messages, for the next */
    /* Host: messages the host kept past their batch (a paused connection's)
     * and is done with, gathered to be handed back like a batch. */
    sr_buf host_ret;

    /* __atomic: the host holds what this transport delivered (a paused
     * connection with much held): stop reading, as under congestion. */
    int host_hold;
};

/* I/O side: 1 when reading should pause (the loop is congested, or the
 * host holds this transport). */
int sr__transport_backpressure(sr_transport *tp);

/* Fill in the generic part (refs = 1, the host's). 0, or -1 on failure. */
int sr__transport_init(sr_transport *tp, const sr_transport_ops *ops, sr_loop *loop,
                       const sr_transport_upcalls *up, void *ud, size_t pre);
void sr__transport_ref(sr_transport *tp);
void sr__transport_unref(sr_transport *tp);
int sr__transport_released(const sr_transport *tp);

/* I/O side. Swap the send queue with *spare (which must be empty: len 0 or
 * len <= pre) and return the number of payload bytes now in *spare. When a
 * send failed with SR_EFULL since the last drain, this posts SR_EV_TP_DRAIN
 * (on_drain on the host thread). */
size_t sr__transport_take(sr_transport *tp, sr_buf *spare);
/* I/O side. 1 when bytes are queued. */
int sr__transport_pending(sr_transport *tp);
/* I/O side. Queue bytes only when the queue is empty and the transport is
 * neither closing nor dead (keepalive pings). 1 when queued. */
int sr__transport_queue_if_idle(sr_transport *tp, const char *data, size_t len);
/* I/O side. The transport is finished: later sends fail with SR_ECLOSED. */
void sr__transport_set_dead(sr_transport *tp);
/* I/O side. Post SR_EV_TP_OPEN or SR_EV_TP_DATA holding a reference
 * (nothing when released). 0, or -1 when out of memory. */
int sr__transport_post(sr_transport *tp, sr_tp_event type, const void *data, size_t len);
/* Set up parsing on the I/O side from cfg (protocol, max_message_size,
 * handshake); before the I/O side runs. */
void sr__transport_set_decoder(sr_transport *tp, const sr_transport_cfg *cfg);
/* I/O side. Deliver received bytes: parsed into one SR_EV_TP_MSGS where a
 * decoder is set, else (and for what cannot be parsed) as SR_EV_TP_DATA.
 * 0, or -1 when out of memory. */
int sr__transport_post_data(sr_transport *tp, const char *data, size_t len);
/* I/O side. Post the SR_EV_TP_CLOSED (at most once; text is copied, and
 * left out when out of memory) and mark the transport dead. A message the
 * decoder holds cut off goes to on_data first. */
void sr__transport_post_closed(sr_transport *tp, int code, long status, const char *text);
/* I/O side. The same, but after the host asked to close, any end is the
 * clean end it asked for (code 0, no status or text). */
void sr__transport_post_end(sr_transport *tp, int code, long status, const char *text);

#endif
