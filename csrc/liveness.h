/*
 * liveness.h - keepalive pings, the server timeout and the handshake timeout
 * of one transport, independent of the transport kind.
 *
 * A kind keeps one sr_liveness per transport and drives it from its own I/O
 * thread with one timer (an lws_sul for WebSockets; the HTTP thread's poll
 * timeout for SSE and Long Polling): it reports what happened (opened, bytes
 * received, bytes written, reading paused or resumed) and, whenever its
 * timer fires, calls sr__liveness_check, acts on the answer and re-arms the
 * timer to the deadline it returns. Deadlines only move later between
 * reports, except after sr__liveness_opened and sr__liveness_resume: the
 * kind re-runs the check (and re-arms) after those two.
 *
 * No I/O, no clock of its own (times are passed in, microseconds of
 * sr__liveness_clock), no locking: the unit tests drive it with fake times.
 */
#ifndef SR_LIVENESS_H
#define SR_LIVENESS_H

#include <stdint.h>

typedef enum sr_liveness_action {
    SR_LIVENESS_NONE,
    SR_LIVENESS_PING,              /* queue the ping (sr__transport_queue_if_idle) */
    SR_LIVENESS_SERVER_TIMEOUT,    /* fail: SR_ETIMEOUT, SR_LIVENESS_SERVER_TIMEOUT_TEXT */
    SR_LIVENESS_HANDSHAKE_TIMEOUT, /* fail: SR_ETIMEOUT, SR_LIVENESS_HANDSHAKE_TIMEOUT_TEXT */
} sr_liveness_action;

/* The error texts of the two timeouts (the kind is SR_ETIMEOUT for both, as
 * the official clients raise a TimeoutException). */
#define SR_LIVENESS_SERVER_TIMEOUT_TEXT                                                            \
    "Server timeout elapsed without receiving a message from the server."
#define SR_LIVENESS_HANDSHAKE_TIMEOUT_TEXT                                                         \
    "Handshake timed out: the server did not answer the handshake"

typedef struct sr_liveness {
    /* Intervals in microseconds; 0 = off. Constant after init. */
    uint64_t keepalive, server_timeout, handshake_timeout;
    uint64_t opened_at, last_tx, last_rx;
    int open;    /* opened, and no timeout reported yet */
    int paused;  /* reading paused: the server timeout does not run */
    int hs_seen; /* a record separator arrived */
} sr_liveness;

/* CLOCK_MONOTONIC in microseconds: the time base every kind passes in. */
uint64_t sr__liveness_clock(void);

/* Intervals in milliseconds as in sr_transport_cfg; <= 0 (or NaN) turns one
 * off. A transport without ping bytes passes keepalive_ms 0. */
void sr__liveness_init(sr_liveness *l, double keepalive_ms, double server_timeout_ms,
                       double handshake_timeout_ms);
/* The transport opened and wrote the handshake: every clock starts now, a
 * handshake answer is awaited, reading is not paused. A kind that reopens a
 * transport calls it again. */
void sr__liveness_opened(sr_liveness *l, uint64_t now);
/* Bytes arrived; saw_record_separator when they held a 0x1E (the handshake
 * answer, which stops the handshake timeout). */
void sr__liveness_rx(sr_liveness *l, uint64_t now, int saw_record_separator);
/* 1 while no record separator has arrived (the kind may skip the search
 * for one afterwards). */
int sr__liveness_awaiting_handshake(const sr_liveness *l);
/* Bytes were written: the keepalive clock restarts. */
void sr__liveness_tx(sr_liveness *l, uint64_t now);
/* Reading paused for backpressure: the silence is ours, so the server
 * timeout stops; resume restarts it from now. */
void sr__liveness_pause(sr_liveness *l, uint64_t now);
void sr__liveness_resume(sr_liveness *l, uint64_t now);

/* What is due at now, most urgent first (handshake timeout, server timeout,
 * ping), and in *next_due the next deadline after acting on it (absolute;
 * 0 when nothing is armed; may be <= now when another action is due too).
 * PING restarts the keepalive clock at now. A timeout is reported once:
 * afterwards the liveness is stopped and reports NONE with no deadline, as
 * it does before sr__liveness_opened. Deadlines less than 1 ms away count as
 * due, so a timer that fires a little early does not re-arm for nothing. */
sr_liveness_action sr__liveness_check(sr_liveness *l, uint64_t now, uint64_t *next_due);

#endif
