/*
 * liveness.c - keepalive, server timeout and handshake timeout as pure
 * bookkeeping on times the transport kind passes in (see liveness.h).
 *
 * Invariants:
 *  - Nothing is due before sr__liveness_opened or after a timeout was
 *    reported (open == 0).
 *  - The server timeout counts from the last byte received or from the last
 *    resume, whichever is later, and is not armed while paused.
 *  - Deadlines are computed when asked, never stored: a report only moves
 *    a clock, so reporting every read and write costs two stores.
 */
#include <time.h>

#include "liveness.h"

/* Deadlines closer than this count as due (timers fire a little early). */
#define SLACK_US 1000u

uint64_t sr__liveness_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t ms_to_us(double ms)
{
    if (!(ms > 0)) return 0; /* also NaN */
    if (ms > 1e12) ms = 1e12;
    return (uint64_t)(ms * 1000.0);
}

void sr__liveness_init(sr_liveness *l, double keepalive_ms, double server_timeout_ms,
                       double handshake_timeout_ms)
{
    l->keepalive = ms_to_us(keepalive_ms);
    l->server_timeout = ms_to_us(server_timeout_ms);
    l->handshake_timeout = ms_to_us(handshake_timeout_ms);
    l->opened_at = l->last_tx = l->last_rx = 0;
    l->open = l->paused = l->hs_seen = 0;
}

void sr__liveness_opened(sr_liveness *l, uint64_t now)
{
    l->opened_at = l->last_tx = l->last_rx = now;
    l->open = 1;
    l->paused = 0;
    l->hs_seen = 0;
}

void sr__liveness_rx(sr_liveness *l, uint64_t now, int saw_record_separator)
{
    l->last_rx = now;
    if (saw_record_separator) l->hs_seen = 1;
}

int sr__liveness_awaiting_handshake(const sr_liveness *l)
{
    return !l->hs_seen;
}

void sr__liveness_tx(sr_liveness *l, uint64_t now)
{
    l->last_tx = now;
}

void sr__liveness_pause(sr_liveness *l, uint64_t now)
{
    (void)now; /* the clock restarts on resume, not here */
    l->paused = 1;
}

void sr__liveness_resume(sr_liveness *l, uint64_t now)
{
    l->paused = 0;
    l->last_rx = now;
}

static int due(uint64_t deadline, uint64_t now)
{
    return now + SLACK_US >= deadline;
}

static void earliest(uint64_t *best, uint64_t deadline)
{
    if (*best == 0 || deadline < *best) *best = deadline;
}

sr_liveness_action sr__liveness_check(sr_liveness *l, uint64_t now, uint64_t *next_due)
{
    sr_liveness_action act = SR_LIVENESS_NONE;
    uint64_t next = 0;
    if (!l->open) {
        *next_due = 0;
        return SR_LIVENESS_NONE;
    }
    if (l->handshake_timeout && !l->hs_seen && due(l->opened_at + l->handshake_timeout, now))
        act = SR_LIVENESS_HANDSHAKE_TIMEOUT;
    else if (l->server_timeout && !l->paused && due(l->last_rx + l->server_timeout, now))
        act = SR_LIVENESS_SERVER_TIMEOUT;
    if (act != SR_LIVENESS_NONE) {
        l->open = 0;
        *next_due = 0;
        return act;
    }
    if (l->keepalive && due(l->last_tx + l->keepalive, now)) {
        act = SR_LIVENESS_PING;
        l->last_tx = now;
    }
    if (l->handshake_timeout && !l->hs_seen) earliest(&next, l->opened_at + l->handshake_timeout);
    if (l->server_timeout && !l->paused) earliest(&next, l->last_rx + l->server_timeout);
    if (l->keepalive) earliest(&next, l->last_tx + l->keepalive);
    *next_due = next;
    return act;
}
