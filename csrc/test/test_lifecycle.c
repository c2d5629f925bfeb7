/*
 * test_lifecycle.c - the connection's lifecycle over an in-memory
 * transport: automatic reconnect and its policy, stateful reattach with
 * exact Sequence/Ack/replay bytes, and callbacks that stop, restart or free
 * the connection from inside every callback.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mem_transport.h"
#include "protocol.h"

#define RS "\x1e"
#define HANDSHAKE "{\"protocol\":\"json\",\"version\":1}" RS
/* Stateful reconnect asks for version 2, which added Ack and Sequence. */
#define HANDSHAKE2 "{\"protocol\":\"json\",\"version\":2}" RS
#define CANCELED "Invocation canceled due to the underlying connection being closed."

static sr_loop *loop;
static int stateful_now; /* the connection under test is stateful */

/* ------------------------------------------------------------ recording */

typedef struct result {
    int calls;
    int code;
    char message[512];
} result;

static void record(result *r, const sr_error *err)
{
    r->calls++;
    r->code = err ? err->code : SR_OK;
    snprintf(r->message, sizeof r->message, "%s", err ? err->message : "");
}

static void on_done(void *ud, const sr_error *err, const sr_value *v)
{
    (void)v;
    record(ud, err);
}

/* What the connection's callbacks saw, in order, as one string. */
static char events[4096];
static void ev(const char *fmt, const char *arg)
{
    size_t n = strlen(events);
    snprintf(events + n, sizeof events - n, fmt, arg ? arg : "-");
}

static result closed_r, reconnecting_r;
static int reconnected_calls;

/* What a callback does to its connection, once. */
enum { DO_NOTHING, DO_STOP, DO_RESTART, DO_FREE };
static int action;
static const char *action_in = ""; /* the callback that acts */
static sr_conn *cur;

static void act(const char *where)
{
    int a = action;
    if (!a || strcmp(where, action_in) != 0) return;
    action = DO_NOTHING;
    if (a == DO_STOP) sr_conn_stop(cur, NULL, NULL);
    if (a == DO_RESTART) {
        sr_conn_stop(cur, NULL, NULL);
        sr_conn_start(cur, NULL, NULL);
    }
    if (a == DO_FREE) {
        sr_conn_free(cur);
        cur = NULL;
    }
}

static void on_close(void *ud, sr_conn *c, const sr_error *err)
{
    (void)ud;
    (void)c;
    record(&closed_r, err);
    ev("close(%s) ", err ? sr_strerror(err->code) : NULL);
    act("close");
}

static void on_state(void *ud, sr_conn *c, sr_state from, sr_state to)
{
    (void)ud;
    (void)c;
    (void)from;
    ev("%s ", sr_state_name(to));
    if (to == SR_STATE_DISCONNECTED) act("state-disconnected");
    if (to == SR_STATE_RECONNECTING) act("state-reconnecting");
    if (to == SR_STATE_CONNECTED) act("state-connected");
}

static void on_reconnecting(void *ud, sr_conn *c, const sr_error *err)
{
    (void)ud;
    (void)c;
    record(&reconnecting_r, err);
    ev("on_reconnecting(%s) ", err ? sr_strerror(err->code) : NULL);
    act("reconnecting");
}

static void on_reconnected(void *ud, sr_conn *c, const char *id)
{
    (void)ud;
    (void)c;
    reconnected_calls++;
    ev("on_reconnected(%s) ", id);
    act("reconnected");
}

static int on_invocation(void *ud, sr_conn *c, const char *target, const sr_value *args,
                         const char *invocation_id)
{
    (void)ud;
    (void)c;
    (void)args;
    (void)invocation_id;
    ev("call(%s) ", target);
    act("invocation");
    return 0;
}

static void start_done(void *ud, const sr_error *err, const sr_value *v)
{
    on_done(ud, err, v);
    act("start-done");
}

/* ------------------------------------------------------------- policies */

static double delays_seen[16];
static uint64_t counts_seen[16];
static int reasons_seen[16];
static int policy_calls;
static int policy_limit; /* attempts allowed */

static double policy(void *ud, const sr_retry_context *ctx)
{
    (void)ud;
    if (policy_calls < 16) {
        counts_seen[policy_calls] = ctx->previous_retry_count;
        delays_seen[policy_calls] = ctx->elapsed_ms;
        reasons_seen[policy_calls] = ctx->retry_reason ? ctx->retry_reason->code : 0;
    }
    policy_calls++;
    act("policy");
    return (int)ctx->previous_retry_count < policy_limit ? 0.0 : -1.0;
}

/* --------------------------------------------------------- connections */

typedef struct conn_cfg {
    int reconnect; /* 1: delays {0, 0, 0}; 2: the policy above */
    int stateful;  /* stateful reconnect with a test token */
    size_t buffer; /* stateful buffer size, 0 = default */
} conn_cfg;

static sr_conn *make(const conn_cfg *k)
{
    static const double zeros[] = {0, 0, 0};
    sr_options *o = sr_options_new();
    sr_error err;
    sr_conn *c;
    sr_options_set_url(o, "http://memory/hub");
    sr_options_set_skip_negotiation(o, 1);
    sr_options_set_transports(o, SR_TRANSPORT_WEBSOCKETS);
    sr_options_set_log(o, SR_LOG_NONE, NULL, NULL);
    if (k->reconnect == 1) sr_options_set_reconnect_delays(o, zeros, 3);
    if (k->reconnect == 2) sr_options_set_reconnect_policy(o, policy, NULL);
    if (k->stateful) sr_options_set_stateful_reconnect(o, 1, k->buffer);
    c = sr_conn_new(loop, o, &err);
    sr_options_free(o);
    if (!c) return NULL;
    sr__conn_set_ws_factory(c, mem_new);
    if (k->stateful) sr__conn_test_stateful(c, "tok");
    memset(&closed_r, 0, sizeof closed_r);
    memset(&reconnecting_r, 0, sizeof reconnecting_r);
    reconnected_calls = 0;
    events[0] = 0;
    action = DO_NOTHING;
    policy_calls = 0;
    policy_limit = 3;
    fail_open = hold_open = 0;
    sr_conn_on_close(c, on_close, NULL);
    sr_conn_on_state(c, on_state, NULL);
    sr_conn_on_reconnecting(c, on_reconnecting, NULL);
    sr_conn_on_reconnected(c, on_reconnected, NULL);
    sr_conn_on_invocation(c, on_invocation, NULL);
    cur = c;
    stateful_now = k->stateful;
    return c;
}

/* Answer the handshake of the transport just opened. */
static int handshake(void)
{
    pump(loop);
    if (strcmp(take_sent(), stateful_now ? HANDSHAKE2 : HANDSHAKE) != 0) return 0;
    feed(loop, "{}" RS);
    return 1;
}

static sr_conn *connected(const conn_cfg *k)
{
    static result start;
    sr_conn *c = make(k);
    memset(&start, 0, sizeof start);
    if (!c || sr_conn_start(c, start_done, &start) != SR_OK || !handshake()) return NULL;
    events[0] = 0;
    return sr_conn_state(c) == SR_STATE_CONNECTED ? c : NULL;
}

/* --------------------------------------------------- automatic reconnect */

TEST(loss_reconnects_and_fails_pending)
{
    conn_cfg k = {1, 0, 0};
    sr_conn *c = connected(&k);
    result r = {0, 0, ""};
    CHECK(c);
    CHECK(sr_conn_invoke(c, "X", NULL, on_done, &r, NULL) == SR_OK);
    take_sent();
    cut(loop, SR_ETRANSPORT, "connection reset");
    CHECK(r.calls == 1 && r.code == SR_ECLOSED && strstr(r.message, CANCELED));
    CHECK(reconnecting_r.calls == 1 && reconnecting_r.code == SR_ETRANSPORT);
    CHECK_STR(reconnecting_r.message, "connection reset");
    /* The zero delay ran the attempt inside the same pump. */
    CHECK(sr_conn_state(c) == SR_STATE_RECONNECTING);
    CHECK(sr_conn_invoke(c, "Y", NULL, on_done, &r, NULL) == SR_ECLOSED);
    CHECK(sr_conn_send(c, "Y", NULL) == SR_ECLOSED);
    CHECK(handshake());
    CHECK(sr_conn_state(c) == SR_STATE_CONNECTED);
    CHECK(reconnected_calls == 1);
    CHECK_STR(events, "reconnecting on_reconnecting(transport) connected on_reconnected(-) ");
    CHECK(closed_r.calls == 0);
    sr_conn_free(c);
}

TEST(attempts_run_out_then_close_with_the_last_error)
{
    conn_cfg k = {1, 0, 0};
    sr_conn *c = connected(&k);
    CHECK(c);
    fail_open = 1;
    cut(loop, SR_ETRANSPORT, "connection reset");
    CHECK(sr_conn_state(c) == SR_STATE_DISCONNECTED);
    CHECK(closed_r.calls == 1 && closed_r.code == SR_ETRANSPORT);
    CHECK(strstr(closed_r.message, "exhausted after 3 failed attempts") != NULL);
    CHECK(strstr(closed_r.message, "memory transport refused") != NULL);
    CHECK_STR(events, "reconnecting on_reconnecting(transport) disconnected close(transport) ");
    fail_open = 0;
    /* A stopped connection can be started again. */
    CHECK(sr_conn_start(c, NULL, NULL) == SR_OK && handshake());
    CHECK(sr_conn_state(c) == SR_STATE_CONNECTED);
    sr_conn_free(c);
}

TEST(policy_sees_count_elapsed_and_reason)
{
    conn_cfg k = {2, 0, 0};
    sr_conn *c = connected(&k);
    CHECK(c);
    policy_limit = 2;
    fail_open = 1;
    cut(loop, SR_ETIMEOUT, "Server timeout elapsed without receiving a message from the server.");
    CHECK(policy_calls == 3);
    CHECK(counts_seen[0] == 0 && counts_seen[1] == 1 && counts_seen[2] == 2);
    CHECK(delays_seen[0] >= 0 && delays_seen[2] >= delays_seen[1]);
    CHECK(reasons_seen[0] == SR_ETIMEOUT && reasons_seen[1] == SR_ETRANSPORT);
    CHECK(closed_r.calls == 1 && sr_conn_state(c) == SR_STATE_DISCONNECTED);
    sr_conn_free(c);
}

TEST(policy_saying_no_at_first_closes_without_reconnecting)
{
    conn_cfg k = {2, 0, 0};
    sr_conn *c = connected(&k);
    CHECK(c);
    policy_limit = -1;
    cut(loop, SR_ETRANSPORT, "gone");
    CHECK(reconnecting_r.calls == 0);
    CHECK(closed_r.calls == 1 && closed_r.code == SR_ETRANSPORT);
    CHECK_STR(events, "disconnected close(transport) ");
    sr_conn_free(c);
}

TEST(no_reconnect_without_the_option)
{
    conn_cfg k = {0, 0, 0};
    sr_conn *c = connected(&k);
    CHECK(c);
    cut(loop, SR_ETRANSPORT, "gone");
    CHECK(reconnecting_r.calls == 0 && closed_r.calls == 1);
    CHECK(tp_opens > 0 && sr_conn_state(c) == SR_STATE_DISCONNECTED);
    sr_conn_free(c);
}

TEST(a_failed_start_is_never_retried)
{
    conn_cfg k = {1, 0, 0};
    sr_conn *c = make(&k);
    result start = {0, 0, ""};
    int opens;
    CHECK(c);
    CHECK(sr_conn_start(c, on_done, &start) == SR_OK);
    pump(loop);
    opens = tp_opens;
    cut(loop, SR_ETRANSPORT, "refused");
    CHECK(start.calls == 1 && start.code == SR_ETRANSPORT);
    CHECK(tp_opens == opens && closed_r.calls == 0 && reconnecting_r.calls == 0);
    CHECK(sr_conn_state(c) == SR_STATE_DISCONNECTED);
    sr_conn_free(c);
}

TEST(close_message_reconnects_only_with_allow_reconnect)
{
    conn_cfg k = {1, 0, 0};
    sr_conn *c = connected(&k);
    CHECK(c);
    feed(loop, "{\"type\":7,\"error\":\"restarting\",\"allowReconnect\":true}" RS);
    CHECK(reconnecting_r.calls == 1 && strstr(reconnecting_r.message, "restarting"));
    CHECK(handshake() && sr_conn_state(c) == SR_STATE_CONNECTED);
    feed(loop, "{\"type\":7,\"error\":\"bye\"}" RS);
    CHECK(reconnecting_r.calls == 1);
    CHECK(closed_r.calls == 1 && strstr(closed_r.message, "bye"));
    CHECK(sr_conn_state(c) == SR_STATE_DISCONNECTED);
    sr_conn_free(c);
}

TEST(stop_during_the_delay_ends_reconnecting_at_once)
{
    static const double later[] = {60000};
    sr_options *o = sr_options_new();
    sr_error err;
    result stop = {0, 0, ""};
    int opens;
    sr_conn *c;
    conn_cfg k = {0, 0, 0};
    c = connected(&k);
    CHECK(c);
    sr_conn_free(c);
    /* A connection with a long delay, built by hand. */
    sr_options_set_url(o, "http://memory/hub");
    sr_options_set_skip_negotiation(o, 1);
    sr_options_set_transports(o, SR_TRANSPORT_WEBSOCKETS);
    sr_options_set_reconnect_delays(o, later, 1);
    c = sr_conn_new(loop, o, &err);
    sr_options_free(o);
    CHECK(c);
    sr__conn_set_ws_factory(c, mem_new);
    sr_conn_on_close(c, on_close, NULL);
    memset(&closed_r, 0, sizeof closed_r);
    CHECK(sr_conn_start(c, NULL, NULL) == SR_OK && handshake());
    cut(loop, SR_ETRANSPORT, "gone");
    CHECK(sr_conn_state(c) == SR_STATE_RECONNECTING);
    CHECK(sr_loop_next_timeout(loop) > 50000);
    opens = tp_opens;
    CHECK(sr_conn_stop(c, on_done, &stop) == SR_OK);
    CHECK(sr_conn_state(c) == SR_STATE_DISCONNECTED);
    pump(loop);
    CHECK(stop.calls == 1 && stop.code == SR_OK);
    CHECK(closed_r.calls == 1 && closed_r.code == SR_OK); /* nil after stop */
    CHECK(sr_loop_next_timeout(loop) == -1);              /* no attempt left behind */
    CHECK(tp_opens == opens);
    sr_conn_free(c);
}

/* --------------------------------------------- callbacks that act */

/* For each callback: stop, restart or free from inside it; then nothing
 * stale may run (valgrind/ASan watch memory; events show the order). */
static void scenario(const char *where, int what)
{
    conn_cfg k = {1, 0, 0};
    sr_conn *c = connected(&k);
    if (!c) return;
    action = what;
    action_in = where;
    feed(loop, "{\"type\":1,\"target\":\"poke\",\"arguments\":[]}" RS);
    if (cur && sr_conn_state(cur) == SR_STATE_CONNECTED) cut(loop, SR_ETRANSPORT, "gone");
    if (cur && sr_conn_state(cur) == SR_STATE_RECONNECTING) handshake();
    if (cur && sr_conn_state(cur) == SR_STATE_CONNECTED) {
        /* Whatever happened, the connection still works or stops cleanly. */
        sr_conn_stop(cur, NULL, NULL);
        pump(loop);
    }
    if (cur && sr_conn_state(cur) == SR_STATE_CONNECTING) {
        handshake();
        sr_conn_stop(cur, NULL, NULL);
        pump(loop);
    }
    if (cur) sr_conn_free(cur);
    cur = NULL;
    pump(loop);
}

TEST(stop_restart_and_free_from_inside_every_callback)
{
    static const char *wheres[] = {
        "invocation",  "state-reconnecting", "reconnecting", "state-connected",
        "reconnected", "state-disconnected", "close",        NULL};
    int i, what;
    for (i = 0; wheres[i]; i++) {
        for (what = DO_STOP; what <= DO_FREE; what++) {
            scenario(wheres[i], what);
            CHECK(action == DO_NOTHING); /* the callback ran and acted */
        }
    }
}

TEST(restart_inside_the_state_callback_gets_no_stale_close)
{
    conn_cfg k = {0, 0, 0};
    sr_conn *c = connected(&k);
    CHECK(c);
    action = DO_RESTART;
    action_in = "state-disconnected";
    sr_conn_stop(c, NULL, NULL);
    pump(loop);
    /* The stop's close event must not fire for the new attempt. */
    CHECK(closed_r.calls == 0);
    CHECK(sr_conn_state(c) == SR_STATE_CONNECTING);
    CHECK(handshake() && sr_conn_state(c) == SR_STATE_CONNECTED);
    sr_conn_free(c);
}

TEST(restart_inside_on_close_starts_a_clean_lifetime)
{
    conn_cfg k = {0, 0, 0};
    sr_conn *c = connected(&k);
    CHECK(c);
    action = DO_RESTART;
    action_in = "close";
    cut(loop, SR_ETRANSPORT, "gone");
    CHECK(closed_r.calls == 1 && sr_conn_state(c) == SR_STATE_CONNECTING);
    CHECK(handshake() && sr_conn_state(c) == SR_STATE_CONNECTED);
    CHECK(closed_r.calls == 1);
    sr_conn_free(c);
}

TEST(free_inside_the_start_callback)
{
    conn_cfg k = {0, 0, 0};
    sr_conn *c = make(&k);
    static result start;
    CHECK(c);
    action = DO_FREE;
    action_in = "start-done";
    CHECK(sr_conn_start(c, start_done, &start) == SR_OK);
    CHECK(handshake());
    CHECK(start.calls == 1 && cur == NULL);
    pump(loop);
}

TEST(policy_that_stops_the_connection)
{
    conn_cfg k = {2, 0, 0};
    sr_conn *c = connected(&k);
    CHECK(c);
    action = DO_STOP;
    action_in = "policy";
    cut(loop, SR_ETRANSPORT, "gone");
    CHECK(sr_conn_state(c) == SR_STATE_DISCONNECTED);
    CHECK(closed_r.calls == 1 && closed_r.code == SR_OK && reconnecting_r.calls == 0);
    sr_conn_free(c);
}

/* ------------------------------------------------------ stateful */

TEST(stateful_numbers_acks_and_replays)
{
    conn_cfg k = {1, 1, 0};
    sr_conn *c = connected(&k);
    result r = {0, 0, ""};
    CHECK(c);
    CHECK(strstr(last_url, "id=tok") != NULL);
    CHECK(sr_conn_send(c, "A", NULL) == SR_OK);
    CHECK(sr_conn_send(c, "B", NULL) == SR_OK);
    take_sent();
    feed(loop, "{\"type\":8,\"sequenceId\":1}" RS); /* the server has A */
    cut(loop, SR_ETRANSPORT, "connection reset");
    /* Reattaching: still connected, no events, sends are kept. */
    CHECK(sr_conn_state(c) == SR_STATE_CONNECTED);
    CHECK_STR(events, "");
    CHECK(strstr(last_url, "id=tok") != NULL);
    CHECK(sr_conn_invoke(c, "C", NULL, on_done, &r, NULL) == SR_OK);
    CHECK(sr_conn_send(c, "D", NULL) == SR_OK);
    pump(loop);
    /* No handshake on a reattach: Sequence at B, then B, C and D. */
    CHECK_STR(take_sent(),
              "{\"type\":9,\"sequenceId\":2}" RS "{\"type\":1,\"target\":\"B\",\"arguments\":[]}" RS
              "{\"type\":1,\"invocationId\":\"1\",\"target\":\"C\",\"arguments\":[]}" RS
              "{\"type\":1,\"target\":\"D\",\"arguments\":[]}" RS);
    /* The server replays from 1; the one we processed is skipped. */
    feed(loop, "{\"type\":1,\"target\":\"s1\",\"arguments\":[]}" RS);
    cut(loop, SR_ETRANSPORT, "reset again");
    pump(loop);
    take_sent();
    feed(loop,
         "{\"type\":9,\"sequenceId\":1}" RS "{\"type\":1,\"target\":\"s1\",\"arguments\":[]}" RS
         "{\"type\":3,\"invocationId\":\"1\",\"result\":5}" RS);
    CHECK_STR(events, "call(s1) ");
    CHECK(r.calls == 1 && r.code == SR_OK); /* the pending call survived two cuts */
    CHECK(reconnecting_r.calls == 0 && reconnected_calls == 0 && closed_r.calls == 0);
    sr_conn_free(c);
}

TEST(stateful_acks_what_it_processed)
{
    conn_cfg k = {0, 1, 0};
    sr_conn *c = connected(&k);
    char big[40000];
    CHECK(c);
    /* Over the eager threshold: acknowledged at once. */
    memset(big, 0, sizeof big);
    strcpy(big, "{\"type\":1,\"target\":\"t\",\"arguments\":[\"");
    memset(big + strlen(big), 'x', 35000);
    strcat(big, "\"]}" RS "{\"type\":1,\"target\":\"t\",\"arguments\":[]}" RS);
    feed(loop, big);
    CHECK_STR(take_sent(), "{\"type\":8,\"sequenceId\":2}" RS);
    /* A small one waits for the ack timer. */
    feed(loop, "{\"type\":1,\"target\":\"t\",\"arguments\":[]}" RS);
    CHECK_STR(take_sent(), "");
    CHECK(sr_loop_next_timeout(loop) > 0);
    sr_loop_dispatch(loop, 1500);
    CHECK_STR(take_sent(), "{\"type\":8,\"sequenceId\":3}" RS);
    sr_conn_free(c);
}

static result wr;
TEST(stateful_buffer_full_waits_for_acks)
{
    conn_cfg k = {0, 1, 100};
    sr_conn *c = connected(&k);
    int sent_ok = 0;
    CHECK(c);
    while (sent_ok < 100 && sr_conn_send(c, "Fill", NULL) == SR_OK)
        sent_ok++;
    CHECK(sent_ok >= 1 && sent_ok < 100);
    CHECK(sr_conn_send(c, "Fill", NULL) == SR_EFULL);
    memset(&wr, 0, sizeof wr);
    CHECK(sr_conn_wait_writable(c, on_done, &wr) == SR_OK);
    pump(loop);
    CHECK(wr.calls == 0);
    feed(loop, "{\"type\":8,\"sequenceId\":1}" RS);
    CHECK(wr.calls == 1 && wr.code == SR_OK);
    CHECK(sr_conn_send(c, "Fill", NULL) == SR_OK);
    /* A waiter still waiting when the connection ends gets closed. */
    CHECK(sr_conn_send(c, "Fill", NULL) == SR_EFULL);
    memset(&wr, 0, sizeof wr);
    CHECK(sr_conn_wait_writable(c, on_done, &wr) == SR_OK);
    sr_conn_stop(c, NULL, NULL);
    pump(loop);
    CHECK(wr.calls == 1 && wr.code == SR_ECLOSED);
    sr_conn_free(c);
}

TEST(refused_reattach_falls_back_to_reconnect)
{
    conn_cfg k = {1, 1, 0};
    sr_conn *c = connected(&k);
    result r = {0, 0, ""};
    CHECK(c);
    CHECK(sr_conn_invoke(c, "C", NULL, on_done, &r, NULL) == SR_OK);
    hold_open = 1;
    cut(loop, SR_ETRANSPORT, "connection reset");
    CHECK(r.calls == 0 && sr_conn_state(c) == SR_STATE_CONNECTED);
    hold_open = 0;
    cut(loop, SR_ETRANSPORT, "WebSocket connection failed: HTTP 404 from the server");
    CHECK(r.calls == 1 && r.code == SR_ECLOSED && strstr(r.message, CANCELED));
    CHECK(reconnecting_r.calls == 1 && strstr(reconnecting_r.message, "404"));
    CHECK(handshake() && sr_conn_state(c) == SR_STATE_CONNECTED && reconnected_calls == 1);
    sr_conn_free(c);
}

TEST(sequence_beyond_what_was_received_is_a_protocol_error)
{
    conn_cfg k = {0, 1, 0};
    sr_conn *c = connected(&k);
    CHECK(c);
    feed(loop, "{\"type\":9,\"sequenceId\":5}" RS);
    CHECK(closed_r.calls == 1 && closed_r.code == SR_EPROTOCOL);
    sr_conn_free(c);
}

int main(void)
{
    sr_error err;
    loop = sr_loop_new(&err);
    RUN(loss_reconnects_and_fails_pending);
    RUN(attempts_run_out_then_close_with_the_last_error);
    RUN(policy_sees_count_elapsed_and_reason);
    RUN(policy_saying_no_at_first_closes_without_reconnecting);
    RUN(no_reconnect_without_the_option);
    RUN(a_failed_start_is_never_retried);
    RUN(close_message_reconnects_only_with_allow_reconnect);
    RUN(stop_during_the_delay_ends_reconnecting_at_once);
    RUN(stop_restart_and_free_from_inside_every_callback);
    RUN(restart_inside_the_state_callback_gets_no_stale_close);
    RUN(restart_inside_on_close_starts_a_clean_lifetime);
    RUN(free_inside_the_start_callback);
    RUN(policy_that_stops_the_connection);
    RUN(stateful_numbers_acks_and_replays);
    RUN(stateful_acks_what_it_processed);
    RUN(stateful_buffer_full_waits_for_acks);
    RUN(refused_reattach_falls_back_to_reconnect);
    RUN(sequence_beyond_what_was_received_is_a_protocol_error);
    sr_loop_free(loop);
    DONE();
}
