/*
 * test_conn.c - frame-exact tests of the connection (conn.c) over an
 * in-memory transport: the test reads the exact bytes the connection sends
 * and feeds the exact bytes a server would answer, through the real loop.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mem_transport.h"
#include "protocol.h"

#define RS "\x1e"
#define HANDSHAKE "{\"protocol\":\"json\",\"version\":1}" RS

/* ---------------------------------------------------------- callbacks */

typedef struct result {
    int calls;
    int code;
    char message[512];
    sr_value *value;
} result;

static void on_done(void *ud, const sr_error *err, const sr_value *v)
{
    result *r = ud;
    r->calls++;
    r->code = err ? err->code : SR_OK;
    strcpy(r->message, err ? err->message : "");
    sr_value_free(r->value);
    r->value = v ? sr_value_copy(v) : NULL;
}

static result closed;
static void on_close(void *ud, sr_conn *c, const sr_error *err)
{
    (void)c;
    on_done(ud, err, NULL);
}

static char inv_target[64];
static sr_value *inv_args;
static int invocations;
static int inv_answer;  /* what on_invocation returns: 1 = "I answer" */
static char inv_id[32]; /* the invocation id of the last server call */
static int on_invocation(void *ud, sr_conn *c, const char *target, const sr_value *args,
                         const char *invocation_id)
{
    (void)ud;
    (void)c;
    invocations++;
    strcpy(inv_target, target);
    snprintf(inv_id, sizeof inv_id, "%s", invocation_id ? invocation_id : "");
    sr_value_free(inv_args);
    inv_args = sr_value_copy(args);
    return inv_answer;
}

static void reset(result *r)
{
    sr_value_free(r->value);
    memset(r, 0, sizeof *r);
}

static sr_loop *loop;

/* A new connection over the memory transport (max_message_size 0 = the
 * default), its close and invocation callbacks set. */
static sr_conn *new_conn(size_t max_message_size)
{
    sr_options *o = sr_options_new();
    sr_error err;
    sr_conn *c = NULL;
    if (o && sr_options_set_url(o, "http://memory/hub") == SR_OK &&
        sr_options_set_skip_negotiation(o, 1) == SR_OK &&
        sr_options_set_transports(o, SR_TRANSPORT_WEBSOCKETS) == SR_OK &&
        sr_options_set_log(o, SR_LOG_NONE, NULL, NULL) == SR_OK &&
        sr_options_set_max_message_size(o, max_message_size) == SR_OK)
        c = sr_conn_new(loop, o, &err);
    sr_options_free(o);
    if (!c) return NULL;
    sr__conn_set_ws_factory(c, mem_new);
    reset(&closed);
    sr_conn_on_close(c, on_close, &closed);
    sr_conn_on_invocation(c, on_invocation, NULL);
    return c;
}

/* A connected connection over the memory transport. */
static sr_conn *connected(void)
{
    result start = {0, 0, "", NULL};
    sr_conn *c = new_conn(0);
    if (!c) return NULL;
    if (sr_conn_start(c, on_done, &start) != SR_OK) return c;
    pump(loop);
    if (strcmp(take_sent(), HANDSHAKE) != 0) return c;
    feed(loop, "{}" RS);
    return c;
}

static sr_value *args2(int64_t a, int64_t b)
{
    sr_value *v = sr_value_array();
    sr_value_array_push(v, sr_value_int(a));
    sr_value_array_push(v, sr_value_int(b));
    return v;
}

/* Stream items, appended to a text list ("1,2,null,"). */
static char items[256];
static void on_item(void *ud, const sr_value *item)
{
    size_t n = strlen(items);
    (void)ud;
    if (sr_value_type(item) == SR_INT)
        snprintf(items + n, sizeof items - n, "%lld,", (long long)sr_value_get_int(item));
    else
        snprintf(items + n, sizeof items - n, "%s,",
                 sr_value_type(item) == SR_NULL ? "null" : "other");
}

/* --------------------------------------------------------------- tests */

TEST(handshake_then_connected)
{
    sr_conn *c = connected();
    CHECK(c && sr_conn_state(c) == SR_STATE_CONNECTED);
    CHECK(sr_conn_connection_id(c) == NULL);
    sr_conn_free(c);
}

TEST(invoke_writes_exact_bytes_and_gets_split_completion)
{
    sr_conn *c = connected();
    sr_value *args = args2(1, 2);
    result r = {0, 0, "", NULL};
    uint64_t id = 0;
    CHECK(sr_conn_invoke(c, "Add", args, on_done, &r, &id) == SR_OK);
    sr_value_free(args);
    CHECK(id == 1);
    CHECK_STR(take_sent(),
              "{\"type\":1,\"invocationId\":\"1\",\"target\":\"Add\",\"arguments\":[1,2]}" RS);
    feed(loop, "{\"type\":3,\"invoc");
    CHECK(r.calls == 0);
    feed(loop, "ationId\":\"1\",\"result\":3}" RS);
    CHECK(r.calls == 1 && r.code == SR_OK);
    CHECK(sr_value_type(r.value) == SR_INT && sr_value_get_int(r.value) == 3);
    reset(&r);
    sr_conn_free(c);
}

TEST(two_completions_in_one_chunk_out_of_order)
{
    sr_conn *c = connected();
    result a = {0, 0, "", NULL}, b = {0, 0, "", NULL};
    CHECK(sr_conn_invoke(c, "A", NULL, on_done, &a, NULL) == SR_OK);
    CHECK(sr_conn_invoke(c, "B", NULL, on_done, &b, NULL) == SR_OK);
    CHECK_STR(take_sent(),
              "{\"type\":1,\"invocationId\":\"1\",\"target\":\"A\",\"arguments\":[]}" RS
              "{\"type\":1,\"invocationId\":\"2\",\"target\":\"B\",\"arguments\":[]}" RS);
    feed(loop, "{\"type\":3,\"invocationId\":\"2\",\"result\":\"b\"}" RS "{\"type\":6}" RS
               "{\"type\":3,\"invocationId\":\"1\"}" RS);
    CHECK(a.calls == 1 && a.code == SR_OK && a.value == NULL); /* void */
    CHECK(b.calls == 1 && sr_value_type(b.value) == SR_STRING);
    reset(&a);
    reset(&b);
    sr_conn_free(c);
}

TEST(hub_error_and_send_and_server_call)
{
    sr_conn *c = connected();
    result r = {0, 0, "", NULL};
    sr_value *args = args2(7, 8);
    CHECK(sr_conn_send(c, "Fire", args) == SR_OK);
    sr_value_free(args);
    CHECK_STR(take_sent(), "{\"type\":1,\"target\":\"Fire\",\"arguments\":[7,8]}" RS);
    CHECK(sr_conn_invoke(c, "Bad", NULL, on_done, &r, NULL) == SR_OK);
    take_sent();
    feed(loop, "{\"type\":3,\"invocationId\":\"1\",\"error\":\"HubException: no\"}" RS);
    CHECK(r.calls == 1 && r.code == SR_EHUB);
    CHECK_STR(r.message, "HubException: no");
    invocations = 0;
    feed(loop, "{\"type\":1,\"target\":\"notify\",\"arguments\":[\"x\",null]}" RS);
    CHECK(invocations == 1);
    CHECK_STR(inv_target, "notify");
    CHECK(sr_value_len(inv_args) == 2 && sr_value_type(sr_value_at(inv_args, 1)) == SR_NULL);
    /* A server call that wants a result gets an answer, not silence. */
    feed(loop, "{\"type\":1,\"invocationId\":\"s1\",\"target\":\"ask\",\"arguments\":[]}" RS);
    CHECK_STR(
        take_sent(),
        "{\"type\":3,\"invocationId\":\"s1\",\"error\":\"Client didn't provide a result.\"}" RS);
    reset(&r);
    sr_conn_free(c);
}

TEST(cancel_tells_the_server)
{
    sr_conn *c = connected();
    result r = {0, 0, "", NULL};
    uint64_t id;
    CHECK(sr_conn_invoke(c, "Slow", NULL, on_done, &r, &id) == SR_OK);
    take_sent();
    CHECK(sr_conn_cancel(c, id) == SR_OK);
    CHECK(r.calls == 1 && r.code == SR_ECANCELED);
    CHECK_STR(take_sent(), "{\"type\":5,\"invocationId\":\"1\"}" RS);
    feed(loop, "{\"type\":3,\"invocationId\":\"1\",\"result\":1}" RS); /* late: ignored */
    CHECK(r.calls == 1);
    CHECK(sr_conn_cancel(c, id) == SR_EUSAGE);
    reset(&r);
    sr_conn_free(c);
}

TEST(close_message_with_error_fails_pending)
{
    sr_conn *c = connected();
    result r = {0, 0, "", NULL};
    CHECK(sr_conn_invoke(c, "X", NULL, on_done, &r, NULL) == SR_OK);
    feed(loop, "{\"type\":7,\"error\":\"going away\"}" RS);
    CHECK(r.calls == 1 && r.code == SR_ECLOSED);
    CHECK(closed.calls == 1 && closed.code == SR_ECLOSED);
    CHECK(strstr(closed.message, "going away") != NULL);
    CHECK(sr_conn_state(c) == SR_STATE_DISCONNECTED);
    CHECK(sr_conn_invoke(c, "X", NULL, on_done, &r, NULL) == SR_ECLOSED);
    reset(&r);
    sr_conn_free(c);
}

TEST(garbage_is_a_protocol_error)
{
    sr_conn *c = connected();
    result r = {0, 0, "", NULL};
    CHECK(sr_conn_invoke(c, "X", NULL, on_done, &r, NULL) == SR_OK);
    feed(loop, "{\"type\":3,\"invocationId\":\"1\",\"result\":1}" RS "not json" RS);
    CHECK(r.calls == 1 && r.code == SR_OK); /* the good record before it still counts */
    CHECK(closed.calls == 1 && closed.code == SR_EPROTOCOL);
    CHECK(sr_conn_state(c) == SR_STATE_DISCONNECTED);
    reset(&r);
    sr_conn_free(c);
}

TEST(message_cut_by_a_clean_close_is_a_protocol_error)
{
    sr_conn *c = connected();
    feed(loop, "{\"type\":1,\"tar");
    sr__transport_post_closed(last_tp, SR_ECLOSED, 0, "closed by the server (1000)");
    pump(loop);
    CHECK(closed.calls == 1 && closed.code == SR_EPROTOCOL);
    sr_conn_free(c);
}

TEST(transport_loss_fails_pending_with_closed)
{
    sr_conn *c = connected();
    result r = {0, 0, "", NULL};
    CHECK(sr_conn_invoke(c, "X", NULL, on_done, &r, NULL) == SR_OK);
    sr__transport_post_closed(last_tp, SR_ETRANSPORT, 0, "connection reset");
    pump(loop);
    CHECK(r.calls == 1 && r.code == SR_ECLOSED);
    CHECK(closed.calls == 1 && closed.code == SR_ETRANSPORT);
    CHECK_STR(closed.message, "connection reset");
    reset(&r);
    sr_conn_free(c);
}

TEST(handshake_error_fails_start)
{
    result start = {0, 0, "", NULL};
    sr_conn *c = new_conn(0);
    CHECK(c);
    CHECK(sr_conn_start(c, on_done, &start) == SR_OK);
    pump(loop);
    take_sent();
    feed(loop, "{\"error\":\"Requested protocol 'json' is not available.\"}" RS);
    CHECK(start.calls == 1 && start.code == SR_EHANDSHAKE);
    CHECK(strstr(start.message, "not available") != NULL);
    CHECK(closed.calls == 0); /* a failed start raises no close event */
    CHECK(sr_conn_state(c) == SR_STATE_DISCONNECTED);
    /* An open that fails at once fails the start too. */
    fail_open = 1;
    reset(&start);
    CHECK(sr_conn_start(c, on_done, &start) == SR_OK);
    fail_open = 0;
    CHECK(start.calls == 1 && start.code == SR_ETRANSPORT);
    sr_conn_free(c);
}

TEST(stop_sends_close_and_completes)
{
    sr_conn *c = connected();
    result r = {0, 0, "", NULL}, stop = {0, 0, "", NULL};
    CHECK(sr_conn_invoke(c, "X", NULL, on_done, &r, NULL) == SR_OK);
    take_sent();
    tp_closes = 0;
    CHECK(sr_conn_stop(c, on_done, &stop) == SR_OK);
    CHECK(sr_conn_state(c) == SR_STATE_DISCONNECTING);
    CHECK_STR(take_sent(), "{\"type\":7}" RS);
    CHECK(tp_closes == 1);
    pump(loop);
    CHECK(stop.calls == 1 && stop.code == SR_OK);
    CHECK(r.calls == 1 && r.code == SR_ECLOSED);
    CHECK(closed.calls == 1 && closed.code == SR_OK); /* nil after stop */
    CHECK(sr_conn_state(c) == SR_STATE_DISCONNECTED);
    /* Stopping again completes later, inside dispatch. */
    reset(&stop);
    CHECK(sr_conn_stop(c, on_done, &stop) == SR_OK);
    CHECK(stop.calls == 0);
    pump(loop);
    CHECK(stop.calls == 1);
    reset(&r);
    sr_conn_free(c);
}

static sr_conn *to_free;
static void free_in_callback(void *ud, const sr_error *err, const sr_value *v)
{
    (void)ud;
    (void)err;
    (void)v;
    sr_conn_free(to_free);
}

TEST(free_from_inside_a_callback)
{
    sr_conn *c = connected();
    result later = {0, 0, "", NULL};
    to_free = c;
    CHECK(sr_conn_invoke(c, "A", NULL, free_in_callback, NULL, NULL) == SR_OK);
    CHECK(sr_conn_invoke(c, "B", NULL, on_done, &later, NULL) == SR_OK);
    /* Both completions in one chunk: the first frees the connection; the
     * second must not run or touch freed memory (valgrind/ASan check). */
    feed(loop, "{\"type\":3,\"invocationId\":\"1\"}" RS "{\"type\":3,\"invocationId\":\"2\"}" RS);
    CHECK(later.calls == 0);
}

TEST(oversized_record_is_refused)
{
    result start = {0, 0, "", NULL};
    char big[300];
    sr_conn *c = new_conn(100);
    CHECK(c);
    sr_conn_start(c, on_done, &start);
    pump(loop);
    feed(loop, "{}" RS);
    CHECK(start.calls == 1 && start.code == SR_OK);
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    feed(loop, big); /* no separator yet, already over the limit */
    CHECK(closed.calls == 1 && closed.code == SR_EPROTOCOL);
    CHECK(strstr(closed.message, "too large") != NULL);
    sr_conn_free(c);
}

/* What a connection made of one received stream: the targets and first
 * arguments of the server's calls, then how it closed. */
static void run_stream(const char *stream, size_t split, char *out, size_t cap)
{
    result start = {0, 0, "", NULL};
    sr_conn *c = new_conn(200);
    char part[512];
    size_t n = strlen(stream), used = 0;
    out[0] = 0;
    invocations = 0;
    if (!c) return;
    sr_conn_start(c, on_done, &start);
    pump(loop);
    memcpy(part, stream, split);
    part[split] = 0;
    feed(loop, part);
    used += (size_t)snprintf(out + used, cap - used, "[%d]", invocations);
    feed(loop, stream + split);
    used += (size_t)snprintf(out + used, cap - used, "[%d %s]", invocations, inv_target);
    if (split < n && last_tp) {
        sr__transport_post_closed(last_tp, SR_ECLOSED, 0, "closed by the server (1000)");
        pump(loop);
    }
    snprintf(out + used, cap - used, " start=%d:%s close=%d:%d:%s", start.code, start.message,
             closed.calls, closed.code, closed.message);
    reset(&start);
    sr_conn_free(c);
}

/* Parsing where the bytes are read must not change what the connection
 * does: the same streams, cut at every byte, give the same calls and the
 * same errors as parsing on the host. */
TEST(parsing_on_the_io_side_changes_nothing)
{
    static const char *streams[] = {
        "{}" RS "{\"type\":1,\"target\":\"A\",\"arguments\":[1]}" RS "{\"type\":6}" RS
        "{\"type\":1,\"target\":\"B\",\"arguments\":[2]}" RS,
        "{}" RS "{\"type\":1,\"target\":\"A\",\"arguments\":[1]}" RS "not json" RS
        "{\"type\":6}" RS,
        "{}" RS "{\"type\":1,\"target\":\"A\",\"arguments\":[1]}" RS "{\"type\":1,\"tar",
        "{\"error\":\"nope\"}" RS "{\"type\":6}" RS,
        "{}" RS "{\"type\":1,\"target\":\"A\",\"arguments\":[\""
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxx\"]}" RS,
    };
    size_t i, k;
    int raw = mem_raw;
    for (i = 0; i < sizeof streams / sizeof *streams; i++) {
        for (k = 0; k <= strlen(streams[i]); k++) {
            char a[1024], b[1024];
            mem_raw = 1;
            run_stream(streams[i], k, a, sizeof a);
            mem_raw = 0;
            run_stream(streams[i], k, b, sizeof b);
            if (strcmp(a, b) != 0) {
                fprintf(stderr, "stream %zu cut at %zu:\n  host: %s\n  I/O:  %s\n", i, k, a, b);
                CHECK(0);
                break;
            }
        }
    }
    mem_raw = raw;
}

/* A completion matches only the id exactly as it was sent. */
TEST(completion_ids_match_exactly)
{
    static const char *wrong[] = {
        " 1", "+1", "01", "1 ", "1.0", "0x1", "", "-1", "18446744073709551617"};
    sr_conn *c = connected();
    result r = {0, 0, "", NULL};
    char msg[128];
    size_t i;
    CHECK(sr_conn_invoke(c, "X", NULL, on_done, &r, NULL) == SR_OK);
    for (i = 0; i < sizeof wrong / sizeof *wrong; i++) {
        snprintf(msg, sizeof msg, "{\"type\":3,\"invocationId\":\"%s\",\"result\":1}" RS, wrong[i]);
        feed(loop, msg);
        CHECK(r.calls == 0);
    }
    CHECK(sr_conn_state(c) == SR_STATE_CONNECTED);
    feed(loop, "{\"type\":3,\"invocationId\":\"1\",\"result\":1}" RS);
    CHECK(r.calls == 1 && r.code == SR_OK);
    reset(&r);
    sr_conn_free(c);
}

TEST(stream_items_then_completion_and_late_items_dropped)
{
    sr_conn *c = connected();
    result r = {0, 0, "", NULL};
    sr_value *args = args2(3, 0);
    uint64_t id = 0;
    items[0] = 0;
    CHECK(sr_conn_stream(c, "Counter", args, on_item, on_done, &r, &id) == SR_OK);
    sr_value_free(args);
    CHECK(id == 1);
    CHECK_STR(take_sent(),
              "{\"type\":4,\"invocationId\":\"1\",\"target\":\"Counter\",\"arguments\":[3,0]}" RS);
    feed(loop, "{\"type\":2,\"invocationId\":\"1\",\"item\":1}" RS
               "{\"type\":2,\"invocationId\":\"1\",\"item\":null}" RS);
    CHECK_STR(items, "1,null,");
    CHECK(r.calls == 0);
    feed(loop, "{\"type\":3,\"invocationId\":\"1\"}" RS
               "{\"type\":2,\"invocationId\":\"1\",\"item\":9}" RS);
    CHECK(r.calls == 1 && r.code == SR_OK && r.value == NULL);
    CHECK_STR(items, "1,null,"); /* after the end: dropped */
    /* cancel: CancelInvocation at once, then nothing more is delivered */
    CHECK(sr_conn_stream(c, "Counter", NULL, on_item, on_done, &r, &id) == SR_OK);
    take_sent();
    CHECK(sr_conn_cancel(c, id) == SR_OK);
    CHECK(r.calls == 2 && r.code == SR_ECANCELED);
    CHECK_STR(take_sent(), "{\"type\":5,\"invocationId\":\"2\"}" RS);
    feed(loop, "{\"type\":2,\"invocationId\":\"2\",\"item\":5}" RS);
    CHECK_STR(items, "1,null,");
    /* an invoke answered with items fails rather than mixing them in */
    CHECK(sr_conn_invoke(c, "X", NULL, on_done, &r, &id) == SR_OK);
    take_sent();
    feed(loop, "{\"type\":2,\"invocationId\":\"3\",\"item\":5}" RS);
    CHECK(r.calls == 3 && r.code == SR_EPROTOCOL);
    CHECK(sr_conn_state(c) == SR_STATE_CONNECTED);
    reset(&r);
    sr_conn_free(c);
}

TEST(uploads_carry_stream_ids_items_and_completions)
{
    sr_conn *c = connected();
    result r = {0, 0, "", NULL};
    uint64_t up[2] = {0, 0}, id = 0;
    sr_value *args = sr_value_array(), *v = sr_value_int(5);
    sr_value_array_push(args, sr_value_string("sep", 3));
    CHECK(sr_conn_call(c, SR_CALL_INVOKE, "Join", args, 2, up, NULL, on_done, &r, &id) == SR_OK);
    sr_value_free(args);
    CHECK(up[0] == 1 && up[1] == 2 && id == 3);
    CHECK_STR(take_sent(), "{\"type\":1,\"invocationId\":\"3\",\"target\":\"Join\","
                           "\"arguments\":[\"sep\"],\"streamIds\":[\"1\",\"2\"]}" RS);
    CHECK(sr_conn_upload_write(c, up[0], v) == SR_OK);
    CHECK(sr_conn_upload_write(c, up[1], NULL) == SR_OK);
    CHECK(sr_conn_upload_close(c, up[1], "gave up") == SR_OK);
    CHECK(sr_conn_upload_close(c, up[0], NULL) == SR_OK);
    CHECK_STR(take_sent(), "{\"type\":2,\"invocationId\":\"1\",\"item\":5}" RS
                           "{\"type\":2,\"invocationId\":\"2\",\"item\":null}" RS
                           "{\"type\":3,\"invocationId\":\"2\",\"error\":\"gave up\"}" RS
                           "{\"type\":3,\"invocationId\":\"1\"}" RS);
    /* after close, and for ids never opened: usage */
    CHECK(sr_conn_upload_write(c, up[0], v) == SR_EUSAGE);
    CHECK(sr_conn_upload_close(c, up[0], NULL) == SR_EUSAGE);
    CHECK(sr_conn_upload_write(c, 99, v) == SR_EUSAGE);
    /* a send with a stream: no invocation id */
    CHECK(sr_conn_call(c, SR_CALL_SEND, "Rec", NULL, 1, up, NULL, NULL, NULL, &id) == SR_OK);
    CHECK(up[0] == 4 && id == 0);
    CHECK_STR(take_sent(),
              "{\"type\":1,\"target\":\"Rec\",\"arguments\":[],\"streamIds\":[\"4\"]}" RS);
    /* the connection ends: the stream is gone (closed), closing it is fine */
    cut(loop, SR_ETRANSPORT, "reset");
    CHECK(r.calls == 1 && r.code == SR_ECLOSED);
    CHECK(sr_conn_upload_write(c, up[0], v) == SR_ECLOSED);
    CHECK(sr_conn_upload_close(c, up[0], NULL) == SR_OK);
    sr_value_free(v);
    reset(&r);
    sr_conn_free(c);
}

TEST(client_results_answer_once)
{
    sr_conn *c = connected();
    sr_value *v = sr_value_int(49);
    invocations = 0;
    inv_answer = 1; /* the callback answers itself */
    feed(loop, "{\"type\":1,\"invocationId\":\"7\",\"target\":\"square\",\"arguments\":[7]}" RS);
    CHECK(invocations == 1);
    CHECK_STR(inv_id, "7");
    CHECK_STR(take_sent(), ""); /* nothing yet: the answer may come later */
    CHECK(sr_conn_complete(c, inv_id, v, NULL) == SR_OK);
    CHECK_STR(take_sent(), "{\"type\":3,\"invocationId\":\"7\",\"result\":49}" RS);
    CHECK(sr_conn_complete(c, "8", NULL, NULL) == SR_OK);
    CHECK_STR(take_sent(), "{\"type\":3,\"invocationId\":\"8\",\"result\":null}" RS);
    CHECK(sr_conn_complete(c, "9", NULL, "no such thing") == SR_OK);
    CHECK_STR(take_sent(), "{\"type\":3,\"invocationId\":\"9\",\"error\":\"no such thing\"}" RS);
    /* a plain call: no id, no answer */
    feed(loop, "{\"type\":1,\"target\":\"note\",\"arguments\":[]}" RS);
    CHECK_STR(inv_id, "");
    CHECK_STR(take_sent(), "");
    inv_answer = 0;
    CHECK(sr_conn_complete(c, NULL, NULL, NULL) == SR_EUSAGE);
    cut(loop, SR_ETRANSPORT, "reset");
    CHECK(sr_conn_complete(c, "7", v, NULL) == SR_ECLOSED);
    sr_value_free(v);
    sr_conn_free(c);
}

TEST(pause_holds_messages_in_order_until_resumed)
{
    sr_conn *c = connected();
    result s = {0, 0, "", NULL}, r = {0, 0, "", NULL};
    items[0] = 0;
    CHECK(sr_conn_stream(c, "S", NULL, on_item, on_done, &s, NULL) == SR_OK);
    CHECK(sr_conn_invoke(c, "I", NULL, on_done, &r, NULL) == SR_OK);
    take_sent();
    feed(loop, "{\"type\":2,\"invocationId\":\"1\",\"item\":1}" RS);
    sr_conn_pause(c);
    sr_conn_pause(c); /* counted */
    feed(loop, "{\"type\":2,\"invocationId\":\"1\",\"item\":2}" RS
               "{\"type\":3,\"invocationId\":\"2\",\"result\":7}" RS
               "{\"type\":2,\"invocationId\":\"1\",\"item\":3}" RS);
    CHECK_STR(items, "1,");
    CHECK(r.calls == 0);
    sr_conn_resume(c);
    pump(loop);
    CHECK_STR(items, "1,");
    sr_conn_resume(c);
    CHECK_STR(items, "1,"); /* never inside resume itself */
    pump(loop);
    CHECK_STR(items, "1,2,3,");
    CHECK(r.calls == 1 && sr_value_get_int(r.value) == 7);
    /* what was held before a loss comes first, then the loss */
    sr_conn_pause(c);
    feed(loop, "{\"type\":2,\"invocationId\":\"1\",\"item\":4}" RS);
    CHECK_STR(items, "1,2,3,");
    cut(loop, SR_ETRANSPORT, "reset");
    CHECK_STR(items, "1,2,3,4,");
    CHECK(s.calls == 1 && s.code == SR_ECLOSED);
    sr_conn_resume(c);
    sr_conn_resume(c); /* more resumes than pauses do nothing */
    reset(&s);
    reset(&r);
    sr_conn_free(c);
}

/* A record of n bytes or more: a Completion of invocation 1 whose result
 * is a string of 'x' (or with bad JSON in the middle), fed in 64 KiB
 * pieces; the transport parses it in pieces past 256 KiB. */
static void feed_big(size_t n, int bad)
{
    char *rec = malloc(n + 64), *piece = malloc(65537);
    size_t len, off;
    len = (size_t)sprintf(rec, "{\"type\":3,\"invocationId\":\"1\",\"result\":\"");
    memset(rec + len, 'x', n);
    if (bad) rec[len + n / 2] = '\n'; /* a raw control character: bad JSON */
    len += n;
    len += (size_t)sprintf(rec + len, "\"}" RS);
    for (off = 0; off < len; off += 65536) {
        size_t k = len - off < 65536 ? len - off : 65536;
        memcpy(piece, rec + off, k);
        piece[k] = 0;
        feed(loop, piece);
    }
    free(piece);
    free(rec);
}

TEST(large_records_parse_in_pieces)
{
    sr_conn *c = connected();
    result r = {0, 0, "", NULL};
    size_t n = 3u << 20, len = 0;
    CHECK(sr_conn_invoke(c, "Big", NULL, on_done, &r, NULL) == SR_OK);
    take_sent();
    feed_big(n, 0);
    CHECK(r.calls == 1 && r.code == SR_OK);
    if (r.value) sr_value_get_string(r.value, &len);
    CHECK(sr_value_type(r.value) == SR_STRING && len == n);
    /* and the records after it still parse */
    feed(loop, "{\"type\":1,\"target\":\"after\",\"arguments\":[]}" RS);
    CHECK_STR(inv_target, "after");
    reset(&r);
    /* a fault inside a record parsed in pieces: kind protocol, the reason */
    CHECK(sr_conn_invoke(c, "Big", NULL, on_done, &r, NULL) == SR_OK);
    take_sent();
    feed_big(n, 1);
    CHECK(r.calls == 1 && r.code == SR_ECLOSED);
    CHECK(closed.calls == 1 && closed.code == SR_EPROTOCOL);
    CHECK(strstr(closed.message, "invalid JSON in message") != NULL);
    reset(&r);
    sr_conn_free(c);
}

/* The reading side reuses the buffers of batches the host handed back, all
 * of them (each event takes its batch's buffer along), and lets them go
 * when the connection turns quiet. */
static void post_calls(sr_buf *b, int n)
{
    int i;
    b->len = 0;
    for (i = 0; i < n; i++)
        sr__buf_append_str(b, "{\"type\":1,\"target\":\"t\",\"arguments\":[1]}" RS);
    sr__transport_post_data(last_tp, b->data, b->len);
}

static int returned_has(const void *p)
{
    size_t i;
    for (i = 0; i < last_tp->rx_done.len / sizeof(sr_buf); i++)
        if (((sr_buf *)(void *)last_tp->rx_done.data)[i].data == p) return 1;
    return 0;
}

TEST(batch_buffers_are_reused_then_let_go)
{
    sr_conn *c;
    sr_buf b = SR_BUF_INIT;
    void *first, *second;
    if (mem_raw) return; /* the host parses: no batches */
    c = connected();
    invocations = 0;
    /* two events: the second batch is too big to merge into the first */
    post_calls(&b, 70);
    post_calls(&b, 70);
    pump(loop);
    CHECK(invocations == 140);
    CHECK(last_tp->rx_done.len == 2 * sizeof(sr_buf));
    first = ((sr_buf *)(void *)last_tp->rx_done.data)[0].data;
    second = ((sr_buf *)(void *)last_tp->rx_done.data)[1].data;
    /* the next two batches are built in exactly those buffers */
    post_calls(&b, 70);
    CHECK(last_tp->rx_nfree == 1);
    post_calls(&b, 70);
    CHECK(last_tp->rx_nfree == 0);
    pump(loop);
    CHECK(invocations == 280);
    CHECK(last_tp->rx_done.len == 2 * sizeof(sr_buf) && returned_has(first) &&
          returned_has(second));
    /* one message: one of the two serves it, the other waits */
    post_calls(&b, 1);
    pump(loop);
    CHECK(last_tp->rx_nfree == 1);
    CHECK(returned_has(first) || returned_has(second));
    /* a second single message: quiet; nothing is kept */
    post_calls(&b, 1);
    pump(loop);
    CHECK(invocations == 282 && last_tp->rx_nfree == 0);
    sr__buf_free(&b);
    sr_conn_free(c);
}

/* Messages held while paused go back to the reading side once delivered,
 * as the batches they came in do: their arenas end in its pool. */
TEST(held_messages_go_back_to_the_reader)
{
    sr_conn *c;
    sr_buf b = SR_BUF_INIT;
    size_t i, j, back = 0, pooled;
    if (mem_raw) return; /* the host parses: no batches */
    c = connected();
    invocations = 0;
    sr_conn_pause(c);
    post_calls(&b, 10);
    pump(loop);
    CHECK(invocations == 0);
    sr_conn_resume(c);
    pump(loop);
    CHECK(invocations == 10);
    /* the emptied batch they came in, and the ten themselves */
    for (i = 0; i < last_tp->rx_done.len / sizeof(sr_buf); i++) {
        sr_buf *d = (sr_buf *)(void *)last_tp->rx_done.data + i;
        sr_rx_msg *e = (sr_rx_msg *)(void *)d->data;
        for (j = 0; j < d->len / sizeof *e; j++)
            if (e[j].m.arena) back++;
    }
    CHECK(back == 10);
    pooled = last_tp->rx_pool.n[0];
    post_calls(&b, 1); /* the reader takes them: ten arenas in, one out */
    CHECK(last_tp->rx_done.len == 0 && last_tp->rx_pool.n[0] == pooled + 9);
    pump(loop);
    CHECK(invocations == 11);
    sr__buf_free(&b);
    sr_conn_free(c);
}

/* sr_conn_next_call: a plain call's callback takes the same method's next
 * calls ready right behind it in the batch, and nothing else: not another
 * method (nor another case of it), not a call that waits for a result, not
 * one with too many arguments, not after a pause, not outside a callback. */
static char took[512];
static int take_pause; /* the callback of "P" pauses before it takes */
static void took_add(const char *prefix, const char *target, const sr_value *args)
{
    size_t n = strlen(took);
    snprintf(took + n, sizeof took - n, "%s%s%lld,", prefix, target,
             (long long)sr_value_get_int(sr_value_at(args, 0)));
}

static int on_taking(void *ud, sr_conn *c, const char *target, const sr_value *args,
                     const char *invocation_id)
{
    const sr_value *next;
    (void)ud;
    took_add(invocation_id ? "?" : "", target, args);
    if (take_pause && strcmp(target, "P") == 0) sr_conn_pause(c);
    while ((next = sr_conn_next_call(c, target, 1)))
        took_add("+", target, next);
    return 0;
}

TEST(a_call_takes_the_next_calls_of_its_method)
{
    sr_conn *c = connected();
    const char *want;
    CHECK(c);
    sr_conn_on_invocation(c, on_taking, NULL);
    took[0] = '\0';
    feed(loop, "{\"type\":1,\"target\":\"A\",\"arguments\":[1]}" RS
               "{\"type\":1,\"target\":\"A\",\"arguments\":[2]}" RS
               "{\"type\":1,\"target\":\"B\",\"arguments\":[3]}" RS
               "{\"type\":1,\"target\":\"A\",\"arguments\":[4]}" RS
               "{\"type\":1,\"target\":\"A\",\"arguments\":[5]}" RS
               "{\"type\":1,\"invocationId\":\"s\",\"target\":\"A\",\"arguments\":[6]}" RS
               "{\"type\":1,\"target\":\"A\",\"arguments\":[7]}" RS
               "{\"type\":1,\"target\":\"a\",\"arguments\":[8]}" RS
               "{\"type\":1,\"target\":\"a\",\"arguments\":[9,0]}" RS "{\"type\":6}" RS
               "{\"type\":1,\"target\":\"a\",\"arguments\":[10]}" RS);
    /* the host parses (mem_raw): there is no batch to take from */
    want = mem_raw ? "A1,A2,B3,A4,A5,?A6,A7,a8,a9,a10," : "A1,+A2,B3,A4,+A5,?A6,A7,a8,a9,a10,";
    CHECK_STR(took, want);
    CHECK_STR(
        take_sent(),
        "{\"type\":3,\"invocationId\":\"s\",\"error\":\"Client didn't provide a result.\"}" RS);
    CHECK(sr_conn_next_call(c, "A", 1) == NULL);
    /* a pause stops the run: the rest is held and delivered as usual */
    took[0] = '\0';
    take_pause = 1;
    feed(loop, "{\"type\":1,\"target\":\"P\",\"arguments\":[1]}" RS
               "{\"type\":1,\"target\":\"P\",\"arguments\":[2]}" RS);
    take_pause = 0;
    CHECK_STR(took, "P1,");
    sr_conn_resume(c);
    pump(loop);
    CHECK_STR(took, "P1,P2,");
    sr_conn_on_invocation(c, on_invocation, NULL);
    sr_conn_free(c);
}

TEST(large_record_over_the_limit)
{
    result start = {0, 0, "", NULL};
    sr_conn *c = new_conn(1u << 20);
    CHECK(c);
    sr_conn_start(c, on_done, &start);
    pump(loop);
    feed(loop, "{}" RS);
    feed_big(2u << 20, 0);
    CHECK(closed.calls == 1 && closed.code == SR_EPROTOCOL);
    CHECK(strstr(closed.message, "message too large") != NULL);
    sr_conn_free(c);
}

static void run_all(void)
{
    RUN(handshake_then_connected);
    RUN(invoke_writes_exact_bytes_and_gets_split_completion);
    RUN(two_completions_in_one_chunk_out_of_order);
    RUN(hub_error_and_send_and_server_call);
    RUN(cancel_tells_the_server);
    RUN(close_message_with_error_fails_pending);
    RUN(garbage_is_a_protocol_error);
    RUN(message_cut_by_a_clean_close_is_a_protocol_error);
    RUN(transport_loss_fails_pending_with_closed);
    RUN(handshake_error_fails_start);
    RUN(stop_sends_close_and_completes);
    RUN(free_from_inside_a_callback);
    RUN(oversized_record_is_refused);
    RUN(completion_ids_match_exactly);
    RUN(stream_items_then_completion_and_late_items_dropped);
    RUN(uploads_carry_stream_ids_items_and_completions);
    RUN(client_results_answer_once);
    RUN(pause_holds_messages_in_order_until_resumed);
    RUN(large_records_parse_in_pieces);
    RUN(batch_buffers_are_reused_then_let_go);
    RUN(held_messages_go_back_to_the_reader);
    RUN(a_call_takes_the_next_calls_of_its_method);
    RUN(large_record_over_the_limit);
}

int main(void)
{
    sr_error err;
    loop = sr_loop_new(&err);
    run_all(); /* messages parsed where they are read, as over WebSockets */
    mem_raw = 1;
    run_all(); /* parsed on the host, as at trace level */
    mem_raw = 0;
    RUN(parsing_on_the_io_side_changes_nothing);
    reset(&closed);
    sr_value_free(inv_args);
    sr_loop_free(loop);
    DONE();
}
