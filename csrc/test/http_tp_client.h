/*
 * http_tp_client.h - the client side of the SSE and Long Polling transport
 * tests: a recorder of the upcalls a transport makes (rec, ups), the JSON
 * transport config they open with, and clock and dispatch helpers.
 * Header-only: each test program includes it once.
 */
#ifndef SR_TEST_HTTP_TP_CLIENT_H
#define SR_TEST_HTTP_TP_CLIENT_H

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "loop.h"
#include "transport.h"

#define HANDSHAKE "{\"protocol\":\"json\",\"version\":1}\x1e"
#define PING "{\"type\":6}\x1e"
#define INV(t) "{\"type\":1,\"target\":\"" t "\",\"arguments\":[]}\x1e"

typedef struct rec {
    int opened, closed, data_calls, msg_calls, nmsgs;
    int after_close; /* upcalls after on_close */
    int full;        /* data holds the first bytes only */
    int close_code;  /* SR_OK when err was NULL */
    long close_status;
    char close_msg[512];
    char data[1 << 16]; /* more than one piece libcurl hands over */
    size_t data_len, total;
    char targets[256]; /* the targets of the messages, in order */
} rec;

static inline void r_open(void *ud, sr_transport *tp)
{
    rec *r = ud;
    (void)tp;
    r->opened++;
    r->after_close += r->closed;
}

static inline void r_data(void *ud, sr_transport *tp, const char *d, size_t n)
{
    rec *r = ud;
    (void)tp;
    r->data_calls++;
    r->after_close += r->closed;
    if (!r->full && r->data_len + n >= sizeof r->data) r->full = 1;
    if (!r->full) {
        memcpy(r->data + r->data_len, d, n);
        r->data_len += n;
        r->data[r->data_len] = '\0';
    }
    r->total += n;
}

static inline void r_msgs(void *ud, sr_transport *tp, sr_rx_msg *m, size_t n)
{
    rec *r = ud;
    size_t i;
    (void)tp;
    r->msg_calls++;
    r->after_close += r->closed;
    for (i = 0; i < n; i++) {
        r->nmsgs++;
        if (m[i].m.target && strlen(r->targets) + strlen(m[i].m.target) + 2 < sizeof r->targets) {
            strcat(r->targets, m[i].m.target);
            strcat(r->targets, ",");
        }
    }
}

static inline void r_close(void *ud, sr_transport *tp, const sr_error *err)
{
    rec *r = ud;
    (void)tp;
    r->closed++;
    r->close_code = err ? err->code : SR_OK;
    r->close_status = err ? err->status : 0;
    snprintf(r->close_msg, sizeof r->close_msg, "%s", err ? err->message : "");
}

static const sr_transport_upcalls ups = {r_open, r_data, r_msgs, r_close, NULL};

static const sr_header test_headers[2] = {{"Authorization", "Bearer abc"}, {"X-Test", "yes"}};

/* JSON to url, with the handshake and the test headers; no timers. */
static inline sr_transport_cfg json_cfg(const char *url)
{
    sr_transport_cfg c;
    memset(&c, 0, sizeof c);
    c.url = url;
    c.headers = test_headers;
    c.nheaders = 2;
    c.handshake = HANDSHAKE;
    c.handshake_len = strlen(HANDSHAKE);
    c.ping = PING;
    c.ping_len = strlen(PING);
    c.protocol = &sr__json_protocol;
    return c;
}

static inline double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Dispatch until *flag >= v or ms pass. */
static inline void wait_for(sr_loop *loop, const int *flag, int v, int ms)
{
    double end = now_ms() + ms;
    while (*flag < v && now_ms() < end)
        sr_loop_dispatch(loop, (int)(end - now_ms()) + 1);
}

static inline int readable(sr_loop *loop, int ms)
{
    struct pollfd p = {sr_loop_fd(loop), POLLIN, 0};
    return poll(&p, 1, ms) == 1;
}

#endif
