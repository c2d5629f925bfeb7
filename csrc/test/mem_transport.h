/*
 * mem_transport.h - an in-memory transport kind for the connection tests:
 * the test reads the exact bytes the connection sent (take_sent) and feeds
 * the exact bytes a server would answer (feed), through the real loop.
 * Header-only: each test program includes it once.
 */
#ifndef SR_TEST_MEM_TRANSPORT_H
#define SR_TEST_MEM_TRANSPORT_H

#include <stdlib.h>
#include <string.h>

#include "loop.h"
#include "transport_kind.h"

typedef struct mem_tp {
    sr_transport base; /* first: the generic part */
} mem_tp;

static sr_transport *last_tp; /* the transport the connection opened last */
static int tp_opens;          /* transports opened */
static int tp_closes;         /* close requests seen */
static int fail_open;         /* 1: the next opens fail at once */
static int hold_open;         /* 1: opens do not post OPEN (test posts it) */
static char last_url[256];    /* the URL of the last open */
static int mem_raw;           /* 1: no parsing on the I/O side (as at trace level) */

static inline void mem_kick(sr_transport *tp)
{
    (void)tp;
}

static inline void mem_close(sr_transport *tp)
{
    tp_closes++;
    sr__transport_post_closed(tp, SR_OK, 0, NULL);
}

static inline void mem_release(sr_transport *tp)
{
    if (tp == last_tp) last_tp = NULL;
}

static const sr_transport_ops mem_ops = {"Memory", mem_kick, mem_close, mem_release, NULL};

static inline sr_transport *mem_new(sr_loop *loop, const sr_transport_cfg *cfg,
                                    const sr_transport_upcalls *up, void *ud, sr_error *err)
{
    mem_tp *m;
    if (fail_open) {
        err->code = SR_ETRANSPORT;
        strcpy(err->message, "memory transport refused");
        return NULL;
    }
    m = calloc(1, sizeof *m);
    if (!m || sr__transport_init(&m->base, &mem_ops, loop, up, ud, 0) < 0) {
        free(m);
        return NULL;
    }
    if (!mem_raw) sr__transport_set_decoder(&m->base, cfg);
    tp_opens++;
    snprintf(last_url, sizeof last_url, "%s", cfg->url);
    /* As the WebSocket kind: the handshake goes out first, then OPEN. */
    if (cfg->handshake_len) sr__transport_send(&m->base, cfg->handshake, cfg->handshake_len);
    if (!hold_open) sr__transport_post(&m->base, SR_EV_TP_OPEN, NULL, 0);
    last_tp = &m->base;
    return &m->base;
}

/* Everything the connection sent since the last call, as a C string. */
static char sent[1 << 16];
static inline const char *take_sent(void)
{
    sr_buf spare = SR_BUF_INIT;
    size_t n = last_tp ? sr__transport_take(last_tp, &spare) : 0;
    memcpy(sent, spare.data ? spare.data : "", n);
    sent[n] = 0;
    sr__buf_free(&spare);
    return sent;
}

static inline void pump(sr_loop *lp)
{
    while (sr_loop_dispatch(lp, 0) > 0)
        ;
}

static inline void feed(sr_loop *lp, const char *bytes)
{
    /* As the WebSocket kind delivers what it reads. */
    if (last_tp) sr__transport_post_data(last_tp, bytes, strlen(bytes));
    pump(lp);
}

/* The server side drops the socket. */
static inline void cut(sr_loop *lp, int code, const char *why)
{
    if (last_tp) sr__transport_post_closed(last_tp, code, 0, why);
    pump(lp);
}

#endif
