/* test_error.c - error kind names (the Lua API's) and state names. */
#include "harness.h"
#include "signalr.h"

TEST(kinds)
{
    CHECK_STR(sr_strerror(SR_OK), "ok");
    CHECK_STR(sr_strerror(SR_EHUB), "hub");
    CHECK_STR(sr_strerror(SR_ECLOSED), "closed");
    CHECK_STR(sr_strerror(SR_ETIMEOUT), "timeout");
    CHECK_STR(sr_strerror(SR_ECANCELED), "canceled");
    CHECK_STR(sr_strerror(SR_ENEGOTIATE), "negotiate");
    CHECK_STR(sr_strerror(SR_EHANDSHAKE), "handshake");
    CHECK_STR(sr_strerror(SR_ETRANSPORT), "transport");
    CHECK_STR(sr_strerror(SR_EPROTOCOL), "protocol");
    CHECK_STR(sr_strerror(SR_EUSAGE), "usage");
    /* no kind of their own in the Lua API */
    CHECK_STR(sr_strerror(SR_ENOMEM), "transport");
    CHECK_STR(sr_strerror(SR_EFULL), "transport");
    CHECK_STR(sr_strerror(-999), "unknown");
    CHECK_STR(sr_strerror(1), "unknown");
}

TEST(states)
{
    CHECK_STR(sr_state_name(SR_STATE_DISCONNECTED), "disconnected");
    CHECK_STR(sr_state_name(SR_STATE_CONNECTING), "connecting");
    CHECK_STR(sr_state_name(SR_STATE_CONNECTED), "connected");
    CHECK_STR(sr_state_name(SR_STATE_RECONNECTING), "reconnecting");
    CHECK_STR(sr_state_name(SR_STATE_DISCONNECTING), "disconnecting");
    CHECK_STR(sr_state_name((sr_state)42), "unknown");
}

int main(void)
{
    RUN(kinds);
    RUN(states);
    DONE();
}
