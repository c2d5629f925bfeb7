/* test_liveness.c - keepalive, server timeout and handshake timeout on fake
 * times (microseconds), as a transport kind's timer would drive them. */
#include <math.h>
#include <stdint.h>

#include "harness.h"
#include "liveness.h"

#define MS 1000u
#define T0 ((uint64_t)1000000000u) /* an arbitrary start: clocks are not zero-based */

static uint64_t next;

static sr_liveness_action at(sr_liveness *l, uint64_t ms)
{
    return sr__liveness_check(l, T0 + ms * MS, &next);
}

TEST(nothing_before_open)
{
    sr_liveness l;
    sr__liveness_init(&l, 15000, 30000, 15000);
    CHECK(at(&l, 0) == SR_LIVENESS_NONE && next == 0);
    CHECK(at(&l, 1000000) == SR_LIVENESS_NONE && next == 0);
}

TEST(all_off)
{
    sr_liveness l;
    sr__liveness_init(&l, 0, -1, NAN); /* NaN too */
    sr__liveness_opened(&l, T0);
    CHECK(at(&l, 1000000) == SR_LIVENESS_NONE && next == 0);
}

TEST(pings_when_nothing_sent)
{
    sr_liveness l;
    sr__liveness_init(&l, 200, 0, 0);
    sr__liveness_opened(&l, T0);
    CHECK(at(&l, 0) == SR_LIVENESS_NONE && next == T0 + 200 * MS);
    CHECK(at(&l, 150) == SR_LIVENESS_NONE && next == T0 + 200 * MS);
    CHECK(at(&l, 200) == SR_LIVENESS_PING && next == T0 + 400 * MS);
    /* Asked again at once: the ping restarted the clock. */
    CHECK(at(&l, 200) == SR_LIVENESS_NONE && next == T0 + 400 * MS);
    /* A timer firing a little early (under 1 ms) still counts. */
    CHECK(sr__liveness_check(&l, T0 + 400 * MS - 500, &next) == SR_LIVENESS_PING);
}

TEST(writes_postpone_pings)
{
    sr_liveness l;
    sr__liveness_init(&l, 200, 0, 0);
    sr__liveness_opened(&l, T0);
    sr__liveness_tx(&l, T0 + 150 * MS);
    /* The timer armed for 200 fires; the deadline moved to 350. */
    CHECK(at(&l, 200) == SR_LIVENESS_NONE && next == T0 + 350 * MS);
    sr__liveness_tx(&l, T0 + 300 * MS);
    CHECK(at(&l, 350) == SR_LIVENESS_NONE && next == T0 + 500 * MS);
    CHECK(at(&l, 500) == SR_LIVENESS_PING);
}

TEST(receiving_does_not_postpone_pings)
{
    sr_liveness l;
    sr__liveness_init(&l, 200, 0, 0);
    sr__liveness_opened(&l, T0);
    sr__liveness_rx(&l, T0 + 150 * MS, 1);
    CHECK(at(&l, 200) == SR_LIVENESS_PING);
}

TEST(server_timeout)
{
    sr_liveness l;
    sr__liveness_init(&l, 100, 500, 0);
    sr__liveness_opened(&l, T0);
    sr__liveness_rx(&l, T0 + 50 * MS, 1);
    CHECK(at(&l, 100) == SR_LIVENESS_PING && next == T0 + 200 * MS);
    /* Our own pings are not traffic from the server. */
    sr__liveness_tx(&l, T0 + 100 * MS);
    CHECK(at(&l, 500) == SR_LIVENESS_PING && next == T0 + 550 * MS);
    CHECK(at(&l, 550) == SR_LIVENESS_SERVER_TIMEOUT && next == 0);
    /* Reported once; then stopped. */
    CHECK(at(&l, 600) == SR_LIVENESS_NONE && next == 0);
    CHECK(at(&l, 10000) == SR_LIVENESS_NONE && next == 0);
}

TEST(received_bytes_postpone_server_timeout)
{
    sr_liveness l;
    sr__liveness_init(&l, 0, 500, 0);
    sr__liveness_opened(&l, T0);
    CHECK(at(&l, 0) == SR_LIVENESS_NONE && next == T0 + 500 * MS);
    sr__liveness_rx(&l, T0 + 400 * MS, 0);
    CHECK(at(&l, 500) == SR_LIVENESS_NONE && next == T0 + 900 * MS);
    CHECK(at(&l, 899) == SR_LIVENESS_SERVER_TIMEOUT); /* within the 1 ms slack */
}

TEST(pause_suspends_server_timeout)
{
    sr_liveness l;
    sr__liveness_init(&l, 0, 300, 0);
    sr__liveness_opened(&l, T0);
    sr__liveness_pause(&l, T0 + 100 * MS);
    /* Nothing armed while paused (no keepalive here). */
    CHECK(at(&l, 300) == SR_LIVENESS_NONE && next == 0);
    CHECK(at(&l, 5000) == SR_LIVENESS_NONE && next == 0);
    /* Resuming restarts the clock from now, not from the last byte. */
    sr__liveness_resume(&l, T0 + 6000 * MS);
    CHECK(at(&l, 6000) == SR_LIVENESS_NONE && next == T0 + 6300 * MS);
    CHECK(at(&l, 6300) == SR_LIVENESS_SERVER_TIMEOUT);
}

TEST(pause_keeps_pinging)
{
    sr_liveness l;
    sr__liveness_init(&l, 200, 300, 0);
    sr__liveness_opened(&l, T0);
    sr__liveness_pause(&l, T0);
    CHECK(at(&l, 200) == SR_LIVENESS_PING && next == T0 + 400 * MS);
    CHECK(at(&l, 400) == SR_LIVENESS_PING);
}

TEST(handshake_timeout)
{
    sr_liveness l;
    sr__liveness_init(&l, 0, 0, 300);
    sr__liveness_opened(&l, T0);
    CHECK(sr__liveness_awaiting_handshake(&l));
    CHECK(at(&l, 0) == SR_LIVENESS_NONE && next == T0 + 300 * MS);
    /* Bytes without a record separator are not the answer. */
    sr__liveness_rx(&l, T0 + 100 * MS, 0);
    CHECK(sr__liveness_awaiting_handshake(&l));
    CHECK(at(&l, 300) == SR_LIVENESS_HANDSHAKE_TIMEOUT && next == 0);
    CHECK(at(&l, 400) == SR_LIVENESS_NONE);
}

TEST(handshake_answered)
{
    sr_liveness l;
    sr__liveness_init(&l, 0, 0, 300);
    sr__liveness_opened(&l, T0);
    sr__liveness_rx(&l, T0 + 100 * MS, 1);
    CHECK(!sr__liveness_awaiting_handshake(&l));
    CHECK(at(&l, 300) == SR_LIVENESS_NONE && next == 0);
}

TEST(most_urgent_first)
{
    sr_liveness l;
    sr__liveness_init(&l, 100, 100, 100);
    sr__liveness_opened(&l, T0);
    /* All three due: the handshake timeout says the most. */
    CHECK(at(&l, 100) == SR_LIVENESS_HANDSHAKE_TIMEOUT);
    sr__liveness_init(&l, 100, 100, 0);
    sr__liveness_opened(&l, T0);
    CHECK(at(&l, 100) == SR_LIVENESS_SERVER_TIMEOUT);
    /* A ping due while a timeout is armed later: the deadline is the
     * earlier of the two. */
    sr__liveness_init(&l, 100, 250, 0);
    sr__liveness_opened(&l, T0);
    CHECK(at(&l, 100) == SR_LIVENESS_PING && next == T0 + 200 * MS);
    CHECK(at(&l, 200) == SR_LIVENESS_PING && next == T0 + 250 * MS);
}

TEST(reopened)
{
    sr_liveness l;
    sr__liveness_init(&l, 0, 100, 0);
    sr__liveness_opened(&l, T0);
    CHECK(at(&l, 100) == SR_LIVENESS_SERVER_TIMEOUT);
    /* A kind that reconnects the same transport opens it again: a new
     * handshake is awaited, nothing stays paused. */
    sr__liveness_init(&l, 0, 100, 300);
    sr__liveness_opened(&l, T0);
    sr__liveness_rx(&l, T0, 1);
    sr__liveness_pause(&l, T0);
    sr__liveness_opened(&l, T0 + 1000 * MS);
    CHECK(sr__liveness_awaiting_handshake(&l));
    CHECK(at(&l, 1000) == SR_LIVENESS_NONE && next == T0 + 1100 * MS);
    CHECK(at(&l, 1100) == SR_LIVENESS_SERVER_TIMEOUT);
}

TEST(huge_intervals)
{
    sr_liveness l;
    sr__liveness_init(&l, 1e300, 1e300, 0);
    sr__liveness_opened(&l, T0);
    CHECK(at(&l, 0) == SR_LIVENESS_NONE && next == T0 + (uint64_t)1e15);
}

TEST(clock_moves)
{
    uint64_t a = sr__liveness_clock(), b;
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    b = sr__liveness_clock();
    CHECK(b >= a + 2000 && b < a + 2000000);
}

int main(void)
{
    RUN(nothing_before_open);
    RUN(all_off);
    RUN(pings_when_nothing_sent);
    RUN(writes_postpone_pings);
    RUN(receiving_does_not_postpone_pings);
    RUN(server_timeout);
    RUN(received_bytes_postpone_server_timeout);
    RUN(pause_suspends_server_timeout);
    RUN(pause_keeps_pinging);
    RUN(handshake_timeout);
    RUN(handshake_answered);
    RUN(most_urgent_first);
    RUN(reopened);
    RUN(huge_intervals);
    RUN(clock_moves);
    DONE();
}
