/* test_msgpack.c - the MessagePack hub protocol: exact bytes of every
 * message type (HubProtocol.md's examples and the .NET writer's layouts),
 * the value mapping both ways, framing and malformed input. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "framing.h"
#include "harness.h"
#include "protocol.h"
#include "value.h"
#include "value_equal.h"

/* ---------------------------------------------------------------- helpers */

#define P (&sr__msgpack_protocol)
#define BYTES(...) ((const unsigned char[]){__VA_ARGS__})
#define NB(...) sizeof((const unsigned char[]){__VA_ARGS__})
/* data and length of a byte list, for same() and the readers */
#define BL(...) BYTES(__VA_ARGS__), NB(__VA_ARGS__)

static sr_buf out = SR_BUF_INIT;

static char *S(const char *s)
{
    return (char *)s;
}

/* out holds exactly want[0..n); prints both in hex when not. */
static int same(const unsigned char *want, size_t n)
{
    size_t i;

    if (out.len == n && memcmp(out.data, want, n) == 0) return 1;
    printf("  want:");
    for (i = 0; i < n; i++)
        printf(" %02x", want[i]);
    printf("\n  got: ");
    for (i = 0; i < out.len; i++)
        printf(" %02x", (unsigned char)out.data[i]);
    printf("\n");
    return 0;
}

static int wr(const sr_msg *m, sr_error *err)
{
    sr__buf_reset(&out);
    return P->write(m, &out, err) == SR_OK;
}

static int enc(const sr_value *v)
{
    sr_error err;
    sr__buf_reset(&out);
    return sr__msgpack_encode_value(v, &out, &err) == SR_OK;
}

/* Decode one value (the caller frees it); NULL on error (err filled). */
static sr_value *dec(const unsigned char *p, size_t n, sr_error *err)
{
    sr_value *v = NULL;
    if (sr__msgpack_decode_value((const char *)p, n, &v, err) != SR_OK) return NULL;
    return v;
}

/* Frame body[0..n) with its VarInt prefix into a fresh buffer. */
static sr_buf frame(const unsigned char *body, size_t n)
{
    sr_buf b = SR_BUF_INIT;
    sr__varint_write(&b, (uint32_t)n);
    sr__buf_append(&b, body, n);
    return b;
}

/* Parse body framed; returns parse's result. */
static int parse_body(const unsigned char *body, size_t n, sr_msg *m, sr_error *err)
{
    sr_buf b = frame(body, n);
    int r;
    memset(m, 0, sizeof *m);
    r = P->parse(b.data, b.len, 1 << 20, m, err);
    sr__buf_free(&b);
    return r;
}

/* The body is refused with a message containing what. */
static int bad(const unsigned char *body, size_t n, const char *what)
{
    sr_error err;
    sr_msg m;
    int r = parse_body(body, n, &m, &err);
    if (r >= 0) {
        if (r > 0) sr__msg_clear(&m);
        printf("  accepted, wanted \"%s\"\n", what);
        return 0;
    }
    if (r != SR_EPROTOCOL || err.code != SR_EPROTOCOL || !strstr(err.message, what)) {
        printf("  got %d \"%s\", wanted \"%s\"\n", r, err.message, what);
        return 0;
    }
    return 1;
}

/* The value bytes are refused with a message containing what. */
static int bad_value(const unsigned char *p, size_t n, const char *what)
{
    sr_error err;
    sr_value *v = dec(p, n, &err);
    if (v) {
        sr_value_free(v);
        printf("  accepted, wanted \"%s\"\n", what);
        return 0;
    }
    if (err.code != SR_EPROTOCOL || !strstr(err.message, what)) {
        printf("  got \"%s\", wanted \"%s\"\n", err.message, what);
        return 0;
    }
    return 1;
}

static sr_value *args1(sr_value *a)
{
    sr_value *v = sr_value_array();
    sr_value_array_push(v, a);
    return v;
}

static const char *str_of(const sr_value *v)
{
    return sr_value_type(v) == SR_STRING ? sr_value_get_string(v, NULL) : "(not a string)";
}

/* ------------------------------------------------------- writing messages */

TEST(write_every_type_as_the_spec_shows)
{
    sr_value *args = args1(sr_value_int(42)), *h = sr_value_map();
    sr_error err;
    sr_msg m;

    memset(&m, 0, sizeof m);
    m.type = SR_MSG_INVOCATION;
    m.invocation_id = S("xyz");
    m.target = S("method");
    m.arguments = args;
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x11, 0x96, 0x01, 0x80, 0xa3, 'x', 'y', 'z', 0xa6, 'm', 'e', 't', 'h', 'o', 'd',
                  0x91, 0x2a, 0x90)));
    m.invocation_id = NULL; /* non-blocking */
    CHECK(wr(&m, &err));
    CHECK(same(
        BL(0x0e, 0x96, 0x01, 0x80, 0xc0, 0xa6, 'm', 'e', 't', 'h', 'o', 'd', 0x91, 0x2a, 0x90)));
    m.type = SR_MSG_STREAM_INVOCATION;
    m.invocation_id = S("xyz");
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x11, 0x96, 0x04, 0x80, 0xa3, 'x', 'y', 'z', 0xa6, 'm', 'e', 't', 'h', 'o', 'd',
                  0x91, 0x2a, 0x90)));

    /* headers: the spec's example, keys in our map's order */
    m.type = SR_MSG_INVOCATION;
    sr_value_map_set(h, "x", 1, sr_value_string("y", 1));
    sr_value_map_set(h, "z", 1, sr_value_string("z", 1));
    m.headers = h;
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x19, 0x96, 0x01, 0x82, 0xa1, 'x', 0xa1, 'y', 0xa1, 'z', 0xa1, 'z', 0xa3, 'x',
                  'y', 'z', 0xa6, 'm', 'e', 't', 'h', 'o', 'd', 0x91, 0x2a, 0x90)));
    m.headers = NULL;

    /* no arguments: an empty array, as .NET writes */
    m.arguments = NULL;
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x10, 0x96, 0x01, 0x80, 0xa3, 'x', 'y', 'z', 0xa6, 'm', 'e', 't', 'h', 'o', 'd',
                  0x90, 0x90)));

    memset(&m, 0, sizeof m);
    m.type = SR_MSG_STREAM_ITEM;
    m.invocation_id = S("xyz");
    m.item = sr_value_int(42);
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x08, 0x94, 0x02, 0x80, 0xa3, 'x', 'y', 'z', 0x2a)));
    sr_value_free(m.item);

    memset(&m, 0, sizeof m);
    m.type = SR_MSG_COMPLETION;
    m.invocation_id = S("xyz");
    m.error = S("Error");
    CHECK(wr(&m, &err));
    CHECK(
        same(BL(0x0e, 0x95, 0x03, 0x80, 0xa3, 'x', 'y', 'z', 0x01, 0xa5, 'E', 'r', 'r', 'o', 'r')));
    m.error = NULL;
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x08, 0x94, 0x03, 0x80, 0xa3, 'x', 'y', 'z', 0x02)));
    m.has_result = 1;
    m.result = sr_value_int(42);
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x09, 0x95, 0x03, 0x80, 0xa3, 'x', 'y', 'z', 0x03, 0x2a)));
    sr_value_free(m.result);
    m.result = NULL; /* a result of NULL is nil */
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x09, 0x95, 0x03, 0x80, 0xa3, 'x', 'y', 'z', 0x03, 0xc0)));

    memset(&m, 0, sizeof m);
    m.type = SR_MSG_CANCEL_INVOCATION;
    m.invocation_id = S("xyz");
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x07, 0x93, 0x05, 0x80, 0xa3, 'x', 'y', 'z')));

    memset(&m, 0, sizeof m);
    m.type = SR_MSG_PING;
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x02, 0x91, 0x06))); /* "always exactly encoded as 0x91 0x06" */

    /* Close: three items always, as the .NET writer does */
    m.type = SR_MSG_CLOSE;
    m.error = S("xyz");
    m.allow_reconnect = 1;
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x07, 0x93, 0x07, 0xa3, 'x', 'y', 'z', 0xc3)));
    m.error = NULL;
    m.allow_reconnect = 0;
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x04, 0x93, 0x07, 0xc0, 0xc2)));

    memset(&m, 0, sizeof m);
    m.type = SR_MSG_ACK;
    m.sequence_id = 36;
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x03, 0x92, 0x08, 0x24)));
    m.type = SR_MSG_SEQUENCE;
    m.sequence_id = 19;
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x03, 0x92, 0x09, 0x13)));
    m.sequence_id = 1394;
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x05, 0x92, 0x09, 0xcd, 0x05, 0x72)));

    sr_value_free(args);
    sr_value_free(h);
}

TEST(write_upload_stream_ids_and_a_long_prefix)
{
    sr_value *ids = sr_value_array(), *args = sr_value_array();
    char big[300];
    sr_error err;
    sr_msg m;

    sr_value_array_push(ids, sr_value_string("1", 1));
    sr_value_array_push(ids, sr_value_string("2", 1));
    memset(&m, 0, sizeof m);
    m.type = SR_MSG_INVOCATION;
    m.invocation_id = S("0");
    m.target = S("T");
    m.arguments = args;
    m.stream_ids = ids;
    CHECK(wr(&m, &err));
    CHECK(same(BL(0x0d, 0x96, 0x01, 0x80, 0xa1, '0', 0xa1, 'T', 0x90, 0x92, 0xa1, '1', 0xa1, '2')));

    /* a body of 300+ bytes takes a two-byte prefix */
    memset(big, 'a', sizeof big);
    sr_value_array_push(args, sr_value_string(big, sizeof big));
    m.stream_ids = NULL;
    CHECK(wr(&m, &err));
    /* 0x96 01 80 a1 '0' a1 'T' 91 da 01 2c <300> 90 = 312 bytes = 0xb8 0x02 */
    CHECK(out.len == 314 && (unsigned char)out.data[0] == 0xb8 && out.data[1] == 0x02);
    CHECK(memcmp(out.data + 2,
                 BYTES(0x96, 0x01, 0x80, 0xa1, '0', 0xa1, 'T', 0x91, 0xda, 0x01, 0x2c), 11) == 0);
    CHECK((unsigned char)out.data[313] == 0x90);
    sr_value_free(ids);
    sr_value_free(args);
}

TEST(write_refuses_incomplete_messages)
{
    sr_value *h = sr_value_map(), *a = sr_value_map(), *ids = sr_value_array();
    sr_error err;
    sr_msg m;
    int i;

    memset(&m, 0, sizeof m);
    sr__buf_reset(&out);
    sr__buf_append(&out, "keep", 4);
#define REFUSED(what)                                                                              \
    CHECK(P->write(&m, &out, &err) == SR_EUSAGE && strstr(err.message, what) && out.len == 4)
    m.type = SR_MSG_INVOCATION;
    REFUSED("needs a target");
    m.type = SR_MSG_STREAM_INVOCATION;
    m.target = S("T");
    REFUSED("StreamInvocation message needs an invocationId");
    m.invocation_id = S("1");
    m.arguments = a;
    REFUSED("arguments must be an array");
    m.arguments = NULL;
    sr_value_array_push(ids, sr_value_int(1));
    m.stream_ids = ids;
    REFUSED("streamIds must be an array of strings");
    m.stream_ids = NULL;
    sr_value_map_set(h, "k", 1, sr_value_int(1));
    m.headers = h;
    REFUSED("headers must be a map of strings");
    memset(&m, 0, sizeof m);
    m.type = SR_MSG_COMPLETION;
    REFUSED("Completion message needs an invocationId");
    m.invocation_id = S("1");
    m.error = S("e");
    m.has_result = 1;
    REFUSED("both result and error");
    memset(&m, 0, sizeof m);
    m.type = SR_MSG_STREAM_ITEM;
    REFUSED("StreamItem message needs an invocationId");
    m.type = SR_MSG_CANCEL_INVOCATION;
    REFUSED("CancelInvocation message needs an invocationId");
    /* a failure inside a value leaves nothing behind either */
    memset(&m, 0, sizeof m);
    m.type = SR_MSG_STREAM_ITEM;
    m.invocation_id = S("1");
    m.item = sr_value_int(1);
    for (i = 0; i < SR_VALUE_MAX_DEPTH; i++) {
        sr_value *wrap = sr_value_array();
        sr_value_array_push(wrap, m.item);
        m.item = wrap;
    }
    REFUSED("nested too deeply");
    sr_value_free(m.item);
    m.item = NULL;
    m.type = (sr_msg_type)0;
    REFUSED("cannot write message type 0");
    m.type = (sr_msg_type)10;
    REFUSED("cannot write message type 10");
#undef REFUSED
    sr_value_free(h);
    sr_value_free(a);
    sr_value_free(ids);
}

/* ------------------------------------------------------- reading messages */

TEST(read_every_type_from_the_spec)
{
    sr_error err;
    sr_msg m;

    CHECK(parse_body(BL(0x96, 0x01, 0x80, 0xa3, 'x', 'y', 'z', 0xa6, 'm', 'e', 't', 'h', 'o', 'd',
                        0x91, 0x2a, 0x90),
                     &m, &err) == 18);
    CHECK(m.type == SR_MSG_INVOCATION && strcmp(m.invocation_id, "xyz") == 0);
    CHECK(strcmp(m.target, "method") == 0 && sr_value_len(m.arguments) == 1);
    CHECK(sr_value_get_int(sr_value_at(m.arguments, 0)) == 42);
    CHECK(!m.stream_ids && !m.headers); /* empty StreamIds and headers read as absent */
    sr__msg_clear(&m);

    CHECK(
        parse_body(BL(0x96, 0x01, 0x80, 0xc0, 0xa6, 'm', 'e', 't', 'h', 'o', 'd', 0x91, 0x2a, 0x90),
                   &m, &err) > 0);
    CHECK(m.type == SR_MSG_INVOCATION && !m.invocation_id);
    sr__msg_clear(&m);

    /* five items: servers before ASP.NET Core 3.0 send no StreamIds */
    CHECK(parse_body(BL(0x95, 0x01, 0x80, 0xc0, 0xa1, 'T', 0x90), &m, &err) > 0);
    CHECK(m.type == SR_MSG_INVOCATION && sr_value_len(m.arguments) == 0 && !m.stream_ids);
    sr__msg_clear(&m);

    CHECK(parse_body(BL(0x96, 0x01, 0x82, 0xa1, 'x', 0xa1, 'y', 0xa1, 'z', 0xa1, 'z', 0xa3, 'x',
                        'y', 'z', 0xa6, 'm', 'e', 't', 'h', 'o', 'd', 0x91, 0x2a, 0x90),
                     &m, &err) > 0);
    CHECK(sr_value_len(m.headers) == 2);
    CHECK_STR(str_of(sr_value_get(m.headers, "x")), "y");
    CHECK_STR(str_of(sr_value_get(m.headers, "z")), "z");
    sr__msg_clear(&m);

    CHECK(parse_body(BL(0x96, 0x04, 0x80, 0xa1, '5', 0xa1, 'T', 0x90, 0x92, 0xa1, 'a', 0xa1, 'b'),
                     &m, &err) > 0);
    CHECK(m.type == SR_MSG_STREAM_INVOCATION && strcmp(m.invocation_id, "5") == 0);
    CHECK(sr_value_len(m.stream_ids) == 2 &&
          strcmp(str_of(sr_value_at(m.stream_ids, 1)), "b") == 0);
    sr__msg_clear(&m);

    CHECK(parse_body(BL(0x94, 0x02, 0x80, 0xa3, 'x', 'y', 'z', 0x2a), &m, &err) == 9);
    CHECK(m.type == SR_MSG_STREAM_ITEM && strcmp(m.invocation_id, "xyz") == 0);
    CHECK(sr_value_get_int(m.item) == 42);
    sr__msg_clear(&m);
    CHECK(parse_body(BL(0x94, 0x02, 0x80, 0xa3, 'x', 'y', 'z', 0xc0), &m, &err) > 0);
    CHECK(m.item && sr_value_type(m.item) == SR_NULL);
    sr__msg_clear(&m);

    CHECK(parse_body(BL(0x95, 0x03, 0x80, 0xa3, 'x', 'y', 'z', 0x01, 0xa5, 'E', 'r', 'r', 'o', 'r'),
                     &m, &err) > 0);
    CHECK(m.type == SR_MSG_COMPLETION && strcmp(m.error, "Error") == 0 && !m.has_result);
    CHECK(!m.result);
    sr__msg_clear(&m);
    CHECK(parse_body(BL(0x94, 0x03, 0x80, 0xa3, 'x', 'y', 'z', 0x02), &m, &err) > 0);
    CHECK(m.type == SR_MSG_COMPLETION && !m.error && !m.has_result && !m.result);
    sr__msg_clear(&m);
    CHECK(parse_body(BL(0x95, 0x03, 0x80, 0xa3, 'x', 'y', 'z', 0x03, 0x2a), &m, &err) > 0);
    CHECK(m.has_result && sr_value_get_int(m.result) == 42 && !m.error);
    sr__msg_clear(&m);
    CHECK(parse_body(BL(0x95, 0x03, 0x80, 0xa3, 'x', 'y', 'z', 0x03, 0xc0), &m, &err) > 0);
    CHECK(m.has_result && m.result && sr_value_type(m.result) == SR_NULL);
    sr__msg_clear(&m);
    /* an error kind with a nil error reads as no error, as JSON's "error": null */
    CHECK(parse_body(BL(0x95, 0x03, 0x80, 0xa3, 'x', 'y', 'z', 0x01, 0xc0), &m, &err) > 0);
    CHECK(!m.error && !m.has_result);
    sr__msg_clear(&m);

    CHECK(parse_body(BL(0x93, 0x05, 0x80, 0xa3, 'x', 'y', 'z'), &m, &err) > 0);
    CHECK(m.type == SR_MSG_CANCEL_INVOCATION && strcmp(m.invocation_id, "xyz") == 0);
    sr__msg_clear(&m);

    /* empty strings everywhere (msgpack-c gives them no pointer) */
    CHECK(
        parse_body(BL(0x96, 0x01, 0x81, 0xa0, 0xa0, 0xa0, 0xa0, 0x92, 0xa0, 0xc4, 0x00, 0x91, 0xa0),
                   &m, &err) > 0);
    CHECK(strcmp(m.invocation_id, "") == 0 && strcmp(m.target, "") == 0);
    CHECK_STR(str_of(sr_value_get(m.headers, "")), "");
    CHECK(sr_value_type(sr_value_at(m.arguments, 1)) == SR_BINARY);
    CHECK_STR(str_of(sr_value_at(m.stream_ids, 0)), "");
    sr__msg_clear(&m);

    CHECK(parse_body(BL(0x91, 0x06), &m, &err) == 3 && m.type == SR_MSG_PING);
    sr__msg_clear(&m);

    CHECK(parse_body(BL(0x92, 0x07, 0xa3, 'x', 'y', 'z'), &m, &err) > 0);
    CHECK(m.type == SR_MSG_CLOSE && strcmp(m.error, "xyz") == 0 && !m.allow_reconnect);
    sr__msg_clear(&m);
    CHECK(parse_body(BL(0x93, 0x07, 0xa3, 'x', 'y', 'z', 0xc3), &m, &err) > 0);
    CHECK(strcmp(m.error, "xyz") == 0 && m.allow_reconnect == 1);
    sr__msg_clear(&m);
    CHECK(parse_body(BL(0x93, 0x07, 0xc0, 0xc2), &m, &err) > 0);
    CHECK(m.type == SR_MSG_CLOSE && !m.error && !m.allow_reconnect);
    sr__msg_clear(&m);

    CHECK(parse_body(BL(0x92, 0x08, 0xcc, 0x24), &m, &err) > 0);
    CHECK(m.type == SR_MSG_ACK && m.sequence_id == 36);
    sr__msg_clear(&m);
    CHECK(parse_body(BL(0x92, 0x09, 0xcc, 0x13), &m, &err) > 0);
    CHECK(m.type == SR_MSG_SEQUENCE && m.sequence_id == 19);
    sr__msg_clear(&m);
    CHECK(parse_body(BL(0x92, 0x09, 0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), &m,
                     &err) > 0);
    CHECK(m.sequence_id == INT64_MAX);
    sr__msg_clear(&m);
}

/* A message with every optional part, written, read back and written again. */
TEST(write_then_read_is_identity)
{
    sr_value *args = sr_value_array(), *h = sr_value_map(), *ids = sr_value_array(), *inner;
    sr_buf first = SR_BUF_INIT;
    sr_error err;
    sr_msg m, back;
    int n;

    sr_value_array_push(args, sr_value_float(0.1));
    sr_value_array_push(args, sr_value_string("\xe2\x82\xac\0", 4));
    sr_value_array_push(args, sr_value_binary("\0\1\2", 3));
    sr_value_array_push(args, sr_value_null());
    inner = sr_value_map();
    sr_value_map_set(inner, "b", 1, sr_value_int(-129));
    sr_value_map_set(inner, "a", 1, sr_value_bool(1));
    sr_value_array_push(args, inner);
    sr_value_map_set(h, "k", 1, sr_value_string("v", 1));
    sr_value_array_push(ids, sr_value_string("s1", 2));
    memset(&m, 0, sizeof m);
    m.type = SR_MSG_STREAM_INVOCATION;
    m.invocation_id = S("7");
    m.target = S("Echo");
    m.arguments = args;
    m.headers = h;
    m.stream_ids = ids;
    CHECK(P->write(&m, &first, &err) == SR_OK);
    n = P->parse(first.data, first.len, 1 << 20, &back, &err);
    CHECK(n == (int)first.len);
    CHECK(back.type == SR_MSG_STREAM_INVOCATION && strcmp(back.invocation_id, "7") == 0);
    CHECK(strcmp(back.target, "Echo") == 0 && equal(back.arguments, args));
    CHECK(equal(back.headers, h) && equal(back.stream_ids, ids));
    CHECK(wr(&back, &err) && out.len == first.len && memcmp(out.data, first.data, out.len) == 0);
    sr__msg_clear(&back);
    sr__buf_free(&first);
    sr_value_free(args);
    sr_value_free(h);
    sr_value_free(ids);
}

/* ------------------------------------------------------------------ values */

TEST(integers_take_the_smallest_form)
{
    static const struct {
        int64_t v;
        unsigned char b[10];
        size_t n;
    } cases[] = {
        {0, {0x00}, 1},
        {127, {0x7f}, 1},
        {128, {0xcc, 0x80}, 2},
        {255, {0xcc, 0xff}, 2},
        {256, {0xcd, 0x01, 0x00}, 3},
        {65535, {0xcd, 0xff, 0xff}, 3},
        {65536, {0xce, 0x00, 0x01, 0x00, 0x00}, 5},
        {4294967295LL, {0xce, 0xff, 0xff, 0xff, 0xff}, 5},
        {4294967296LL, {0xcf, 0, 0, 0, 1, 0, 0, 0, 0}, 9},
        {INT64_MAX, {0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9},
        {-1, {0xff}, 1},
        {-32, {0xe0}, 1},
        {-33, {0xd0, 0xdf}, 2},
        {-128, {0xd0, 0x80}, 2},
        {-129, {0xd1, 0xff, 0x7f}, 3},
        {-32768, {0xd1, 0x80, 0x00}, 3},
        {-32769, {0xd2, 0xff, 0xff, 0x7f, 0xff}, 5},
        {-2147483648LL, {0xd2, 0x80, 0x00, 0x00, 0x00}, 5},
        {-2147483649LL, {0xd3, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff}, 9},
        {INT64_MIN, {0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9},
    };
    sr_error err;
    size_t i;

    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        sr_value *v = sr_value_int(cases[i].v), *back;
        CHECK(enc(v) && same(cases[i].b, cases[i].n));
        back = dec(cases[i].b, cases[i].n, &err);
        CHECK(back && sr_value_type(back) == SR_INT && sr_value_get_int(back) == cases[i].v);
        sr_value_free(back);
        sr_value_free(v);
    }
}

TEST(every_integer_width_reads_as_int)
{
    static const struct {
        unsigned char b[10];
        size_t n;
        int64_t v;
    } cases[] = {
        {{0xcc, 0x05}, 2, 5}, /* wider forms than needed are fine */
        {{0xcd, 0x00, 0x05}, 3, 5},
        {{0xce, 0x00, 0x00, 0x00, 0x05}, 5, 5},
        {{0xcf, 0, 0, 0, 0, 0, 0, 0, 0x05}, 9, 5},
        {{0xd0, 0x05}, 2, 5},
        {{0xd0, 0xfb}, 2, -5},
        {{0xd1, 0xff, 0xfb}, 3, -5},
        {{0xd2, 0xff, 0xff, 0xff, 0xfb}, 5, -5},
        {{0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb}, 9, -5},
        {{0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, INT64_MAX},
        {{0xce, 0xff, 0xff, 0xff, 0xff}, 5, 4294967295LL},
    };
    sr_error err;
    size_t i;

    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        sr_value *v = dec(cases[i].b, cases[i].n, &err);
        CHECK(v && sr_value_type(v) == SR_INT && sr_value_get_int(v) == cases[i].v);
        sr_value_free(v);
    }
    /* past int64: no Lua integer holds it, and rounding would be silent */
    CHECK(bad_value(BL(0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0), "above 2^63-1 (9223372036854775808)"));
    CHECK(bad_value(BL(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
                    "an unsigned integer above 2^63-1 (18446744073709551615)"));
    /* also inside a message */
    CHECK(bad(BL(0x94, 0x02, 0x80, 0xa1, '1', 0x91, 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0),
              "above 2^63-1"));
    CHECK(bad(BL(0x92, 0x08, 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0), "above 2^63-1"));
}

TEST(floats_are_exact)
{
    sr_value *v, *back;
    sr_error err;
    float f = 0.1f;

    /* float64 always, even where float32 would hold the value */
    v = sr_value_float(0.1);
    CHECK(enc(v) && same(BL(0xcb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a)));
    sr_value_free(v);
    v = sr_value_float(1.0);
    CHECK(enc(v) && same(BL(0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0)));
    sr_value_free(v);
    v = sr_value_float(-0.0);
    CHECK(enc(v) && same(BL(0xcb, 0x80, 0, 0, 0, 0, 0, 0, 0)));
    sr_value_free(v);
    /* NaN and infinities are MessagePack floats (JSON cannot hold them) */
    v = sr_value_float(INFINITY);
    CHECK(enc(v) && same(BL(0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0)));
    back = dec((const unsigned char *)out.data, out.len, &err);
    CHECK(back && isinf(sr_value_get_float(back)));
    sr_value_free(back);
    sr_value_free(v);

    back = dec(BL(0xcb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a), &err);
    CHECK(back && sr_value_type(back) == SR_FLOAT && sr_value_get_float(back) == 0.1);
    sr_value_free(back);
    /* float32 widens exactly: 0.1f is 0.100000001490116..., not 0.1 */
    back = dec(BL(0xca, 0x3d, 0xcc, 0xcc, 0xcd), &err);
    CHECK(back && sr_value_type(back) == SR_FLOAT && sr_value_get_float(back) == (double)f);
    sr_value_free(back);
    back = dec(BL(0xca, 0x3f, 0xc0, 0x00, 0x00), &err);
    CHECK(back && sr_value_type(back) == SR_FLOAT && sr_value_get_float(back) == 1.5);
    sr_value_free(back);
}

TEST(strings_binaries_and_containers)
{
    char s32[32], big[70000];
    sr_value *v, *back;
    sr_error err;
    size_t len;

    v = sr_value_string("\xc3\xa9", 2);
    CHECK(enc(v) && same(BL(0xa2, 0xc3, 0xa9)));
    sr_value_free(v);
    memset(s32, 'a', sizeof s32);
    v = sr_value_string(s32, sizeof s32);
    CHECK(enc(v) && out.len == 34 && (unsigned char)out.data[0] == 0xd9 && out.data[1] == 32);
    sr_value_free(v);
    memset(big, 'b', sizeof big);
    v = sr_value_string(big, 256);
    CHECK(enc(v) && out.len == 259 && memcmp(out.data, BYTES(0xda, 0x01, 0x00), 3) == 0);
    sr_value_free(v);
    v = sr_value_string(big, sizeof big);
    CHECK(enc(v) && out.len == 5 + sizeof big &&
          memcmp(out.data, BYTES(0xdb, 0x00, 0x01, 0x11, 0x70), 5) == 0);
    back = dec((const unsigned char *)out.data, out.len, &err);
    CHECK(back && equal(back, v));
    sr_value_free(back);
    sr_value_free(v);

    v = sr_value_binary("ab", 2);
    CHECK(enc(v) && same(BL(0xc4, 0x02, 'a', 'b')));
    sr_value_free(v);
    v = sr_value_binary(big, 300);
    CHECK(enc(v) && memcmp(out.data, BYTES(0xc5, 0x01, 0x2c), 3) == 0);
    sr_value_free(v);

    /* bytes as they are: not UTF-8, NUL inside */
    back = dec(BL(0xa3, 0xff, 0x00, 'x'), &err);
    CHECK(back && sr_value_type(back) == SR_STRING);
    CHECK(memcmp(sr_value_get_string(back, &len), "\xff\0x", 3) == 0 && len == 3);
    sr_value_free(back);
    back = dec(BL(0xd9, 0x01, 'q'), &err); /* str8 */
    CHECK(back && strcmp(str_of(back), "q") == 0);
    sr_value_free(back);
    back = dec(BL(0xda, 0x00, 0x01, 'q'), &err); /* str16 */
    CHECK(back && strcmp(str_of(back), "q") == 0);
    sr_value_free(back);
    back = dec(BL(0xdb, 0x00, 0x00, 0x00, 0x01, 'q'), &err); /* str32 */
    CHECK(back && strcmp(str_of(back), "q") == 0);
    sr_value_free(back);
    back = dec(BL(0xc4, 0x00), &err);
    CHECK(back && sr_value_type(back) == SR_BINARY && sr_value_get_string(back, &len) && len == 0);
    sr_value_free(back);
    back = dec(BL(0xc5, 0x00, 0x01, 0x07), &err); /* bin16 */
    CHECK(back && sr_value_type(back) == SR_BINARY && sr_value_get_string(back, &len)[0] == 7);
    sr_value_free(back);
    back = dec(BL(0xc6, 0x00, 0x00, 0x00, 0x01, 0x07), &err); /* bin32 */
    CHECK(back && sr_value_type(back) == SR_BINARY && sr_value_get_string(back, &len)[0] == 7);
    CHECK(len == 1);
    sr_value_free(back);

    /* arrays keep nil items; array16/32 and map16/32 read too */
    v = sr_value_array();
    sr_value_array_push(v, sr_value_null());
    sr_value_array_push(v, sr_value_bool(1));
    sr_value_array_push(v, sr_value_bool(0));
    sr_value_array_push(v, sr_value_null());
    CHECK(enc(v) && same(BL(0x94, 0xc0, 0xc3, 0xc2, 0xc0)));
    back = dec(BL(0xdc, 0x00, 0x04, 0xc0, 0xc3, 0xc2, 0xc0), &err);
    CHECK(back && equal(back, v));
    sr_value_free(back);
    back = dec(BL(0xdd, 0x00, 0x00, 0x00, 0x04, 0xc0, 0xc3, 0xc2, 0xc0), &err);
    CHECK(back && equal(back, v));
    sr_value_free(back);
    sr_value_free(v);

    v = sr_value_map();
    sr_value_map_set(v, "a", 1, sr_value_int(1));
    CHECK(enc(v) && same(BL(0x81, 0xa1, 'a', 0x01)));
    back = dec(BL(0xde, 0x00, 0x01, 0xa1, 'a', 0x01), &err);
    CHECK(back && equal(back, v));
    sr_value_free(back);
    back = dec(BL(0xdf, 0x00, 0x00, 0x00, 0x01, 0xa1, 'a', 0x01), &err);
    CHECK(back && equal(back, v));
    sr_value_free(back);
    sr_value_free(v);
    v = sr_value_map();
    CHECK(enc(v) && same(BL(0x80)));
    back = dec(BL(0x80), &err);
    CHECK(back && sr_value_type(back) == SR_MAP && sr_value_len(back) == 0);
    sr_value_free(back);
    sr_value_free(v);
}

TEST(map_keys_that_are_not_strings)
{
    sr_value *v;
    sr_error err;

    /* {1:"a", -2:"b", 18446744073709551615:"c", true:"d", bin "k":"e"} */
    v = dec(BL(0x85, 0x01, 0xa1, 'a', 0xfe, 0xa1, 'b', 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
               0xff, 0xff, 0xa1, 'c', 0xc3, 0xa1, 'd', 0xc4, 0x01, 'k', 0xa1, 'e'),
            &err);
    CHECK(v && sr_value_len(v) == 5);
    CHECK_STR(sr_value_key_at(v, 0, NULL), "1");
    CHECK_STR(sr_value_key_at(v, 1, NULL), "-2");
    CHECK_STR(sr_value_key_at(v, 2, NULL), "18446744073709551615");
    CHECK_STR(sr_value_key_at(v, 3, NULL), "true");
    CHECK_STR(sr_value_key_at(v, 4, NULL), "k");
    CHECK_STR(str_of(sr_value_get(v, "-2")), "b");
    sr_value_free(v);

    /* floats: the shortest text that reads back, integral ones without
     * ".0"; float32 keys as float32 (0.1f is "0.1") */
    v = dec(BL(0x88, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x01,             /* 1.5 */
               0xcb, 0x40, 0x08, 0, 0, 0, 0, 0, 0, 0x02,                   /* 3.0 */
               0xcb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a, 0x03, /* 0.1 */
               0xca, 0x3e, 0x99, 0x99, 0x9a, 0x04,                         /* 0.3f */
               0xcb, 0x44, 0x15, 0xaf, 0x1d, 0x78, 0xb5, 0x8c, 0x40, 0x05, /* 1e20 */
               0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0, 0x06,                   /* NaN */
               0xcb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0, 0x07,                   /* -inf */
               0xca, 0xc0, 0x20, 0x00, 0x00, 0x08),                        /* -2.5f */
            &err);
    CHECK(v && sr_value_len(v) == 8);
    CHECK_STR(sr_value_key_at(v, 0, NULL), "1.5");
    CHECK_STR(sr_value_key_at(v, 1, NULL), "3");
    CHECK_STR(sr_value_key_at(v, 2, NULL), "0.1");
    CHECK_STR(sr_value_key_at(v, 3, NULL), "0.3");
    CHECK_STR(sr_value_key_at(v, 4, NULL), "1e+20");
    CHECK_STR(sr_value_key_at(v, 5, NULL), "NaN");
    CHECK_STR(sr_value_key_at(v, 6, NULL), "-Infinity");
    CHECK_STR(sr_value_key_at(v, 7, NULL), "-2.5");
    sr_value_free(v);

    /* so 0.1 and 0.1f are the same key */
    v = dec(BL(0x82, 0xcb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a, 0x01, 0xca, 0x3d, 0xcc,
               0xcc, 0xcd, 0x02),
            &err);
    CHECK(v && sr_value_len(v) == 1 && sr_value_get_int(sr_value_get(v, "0.1")) == 2);
    sr_value_free(v);

    /* a timestamp key reads as its ISO text */
    v = dec(BL(0x81, 0xd6, 0xff, 0x00, 0x00, 0x00, 0x00, 0x01), &err);
    CHECK(v && strcmp(sr_value_key_at(v, 0, NULL), "1970-01-01T00:00:00Z") == 0);
    sr_value_free(v);

    CHECK(bad_value(BL(0x81, 0xc0, 0x01), "MessagePack map has nil as a key"));
    CHECK(bad_value(BL(0x81, 0x90, 0x01), "MessagePack map has an array as a key"));
    CHECK(bad_value(BL(0x81, 0x80, 0x01), "MessagePack map has a map as a key"));
    CHECK(bad_value(BL(0x81, 0xd4, 0x05, 0x00, 0x01), "unsupported MessagePack extension type 5"));
}

TEST(repeated_keys_keep_first_place_last_value)
{
    sr_value *v, *big;
    sr_error err;
    sr_buf b = SR_BUF_INIT;
    long i, n = t_scale(100000, 5000);

    /* {"a":1, "b":2, "a":3}: as the JSON reader (jansson) gives it */
    v = dec(BL(0x83, 0xa1, 'a', 0x01, 0xa1, 'b', 0x02, 0xa1, 'a', 0x03), &err);
    CHECK(v && sr_value_len(v) == 2);
    CHECK_STR(sr_value_key_at(v, 0, NULL), "a");
    CHECK(sr_value_get_int(sr_value_at(v, 0)) == 3 && sr_value_get_int(sr_value_at(v, 1)) == 2);
    sr_value_free(v);
    /* 1 and "1" are the same key once 1 is text */
    v = dec(BL(0x83, 0x01, 0xa1, 'x', 0xa1, '2', 0xa1, 'y', 0xa1, '1', 0xa1, 'z'), &err);
    CHECK(v && sr_value_len(v) == 2 && strcmp(str_of(sr_value_get(v, "1")), "z") == 0);
    CHECK_STR(sr_value_key_at(v, 1, NULL), "2");
    sr_value_free(v);
    /* a bad value under a repeated key is still bad */
    CHECK(bad_value(BL(0x82, 0xa1, 'a', 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0, 0xa1, 'a', 0x01),
                    "above 2^63-1"));

    /* many keys, half of them repeated: sorting keeps this fast */
    sr__buf_append(&b, BYTES(0xdf), 1);
    for (i = 24; i >= 0; i -= 8) {
        unsigned char c = (unsigned char)(((unsigned long)n * 2) >> i);
        sr__buf_append(&b, &c, 1);
    }
    for (i = 0; i < 2 * n; i++) {
        unsigned char k[5] = {0xce, 0, 0, 0, 0};
        unsigned long key = (unsigned long)(i % n);
        k[1] = (unsigned char)(key >> 24);
        k[2] = (unsigned char)(key >> 16);
        k[3] = (unsigned char)(key >> 8);
        k[4] = (unsigned char)key;
        sr__buf_append(&b, k, 5);
        sr__buf_append(&b, i < n ? BYTES(0x00) : BYTES(0x01), 1);
    }
    big = dec((const unsigned char *)b.data, b.len, &err);
    CHECK(big && sr_value_len(big) == (size_t)n);
    CHECK_STR(sr_value_key_at(big, 7, NULL), "7");
    CHECK(sr_value_get_int(sr_value_at(big, 7)) == 1);
    sr_value_free(big);
    sr__buf_free(&b);
}

/* 12-byte timestamp ext for sec/nsec. */
static size_t ts12(unsigned char *p, int64_t sec, uint32_t nsec)
{
    uint64_t s = (uint64_t)sec;
    int i;
    p[0] = 0xc7;
    p[1] = 12;
    p[2] = 0xff;
    for (i = 0; i < 4; i++)
        p[3 + i] = (unsigned char)(nsec >> (24 - 8 * i));
    for (i = 0; i < 8; i++)
        p[7 + i] = (unsigned char)(s >> (56 - 8 * i));
    return 15;
}

static int ts_is(const unsigned char *p, size_t n, const char *want)
{
    sr_error err;
    sr_value *v = dec(p, n, &err);
    int ok = v && sr_value_type(v) == SR_STRING && strcmp(str_of(v), want) == 0;
    if (!ok) printf("  got \"%s\", want \"%s\"\n", v ? str_of(v) : err.message, want);
    sr_value_free(v);
    return ok;
}

TEST(timestamps_read_as_iso_utc_text)
{
    unsigned char b[16];
    uint64_t v8;
    int i;

    /* timestamp 32: seconds only */
    CHECK(ts_is(BL(0xd6, 0xff, 0x65, 0x93, 0x7d, 0x25), "2024-01-02T03:04:05Z"));
    CHECK(ts_is(BL(0xd6, 0xff, 0, 0, 0, 0), "1970-01-01T00:00:00Z"));
    /* timestamp 64: 30 bits of nanoseconds, 34 of seconds */
    v8 = (uint64_t)123456700 << 34 | 1704164645u;
    b[0] = 0xd7;
    b[1] = 0xff;
    for (i = 0; i < 8; i++)
        b[2 + i] = (unsigned char)(v8 >> (56 - 8 * i));
    CHECK(ts_is(b, 10, "2024-01-02T03:04:05.1234567Z")); /* .NET ticks: 7 digits */
    v8 = (uint64_t)500000000 << 34 | 1704164645u;
    for (i = 0; i < 8; i++)
        b[2 + i] = (unsigned char)(v8 >> (56 - 8 * i));
    CHECK(ts_is(b, 10, "2024-01-02T03:04:05.5Z")); /* trailing zeros trimmed, as .NET's JSON */
    v8 = (uint64_t)1 << 34 | 1704164645u;
    for (i = 0; i < 8; i++)
        b[2 + i] = (unsigned char)(v8 >> (56 - 8 * i));
    CHECK(ts_is(b, 10, "2024-01-02T03:04:05.000000001Z"));
    /* timestamp 96: signed seconds, before 1970 too */
    CHECK(ts_is(b, ts12(b, -1, 500000000), "1969-12-31T23:59:59.5Z"));
    CHECK(ts_is(b, ts12(b, -62135596800LL, 0), "0001-01-01T00:00:00Z"));
    CHECK(ts_is(b, ts12(b, 253402300799LL, 999999900), "9999-12-31T23:59:59.9999999Z"));
    CHECK(ts_is(b, ts12(b, -2203891200LL, 0), "1900-03-01T00:00:00Z")); /* 1900: no Feb 29 */
    CHECK(ts_is(b, ts12(b, -2203891201LL, 0), "1900-02-28T23:59:59Z"));
    CHECK(ts_is(b, ts12(b, 951825600LL, 0), "2000-02-29T12:00:00Z"));
    CHECK(ts_is(b, ts12(b, 1704164645LL, 0), "2024-01-02T03:04:05Z"));

    CHECK(bad_value(b, ts12(b, -62135596801LL, 0), "outside years 0001..9999"));
    CHECK(bad_value(b, ts12(b, 253402300800LL, 0), "outside years 0001..9999"));
    CHECK(bad_value(b, ts12(b, INT64_MIN, 0), "outside years 0001..9999"));
    CHECK(bad_value(b, ts12(b, 0, 1000000000u), "invalid MessagePack timestamp (1000000000"));
    CHECK(bad_value(BL(0xd5, 0xff, 0, 0), "invalid MessagePack timestamp (2 bytes"));
    CHECK(bad_value(BL(0xd6, 0x05, 0, 0, 0, 0), "unsupported MessagePack extension type 5"));
    CHECK(bad_value(BL(0xc7, 0x00, 0x01), "unsupported MessagePack extension type 1"));
    /* in a message, the same */
    CHECK(bad(BL(0x94, 0x02, 0x80, 0xa1, '1', 0xd4, 0x7f, 0x00),
              "unsupported MessagePack extension type 127"));
}

/* Against the C library's calendar, over the whole .NET range. */
TEST(timestamps_agree_with_gmtime)
{
    long i, n = t_scale(20000, 2000);
    uint64_t r = 0x9e3779b97f4a7c15ULL;
    unsigned char b[16];
    char want[64];

    for (i = 0; i < n; i++) {
        int64_t span = 253402300799LL + 62135596800LL + 1, sec;
        struct tm tm;
        time_t t;
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        sec = -62135596800LL + (int64_t)(r % (uint64_t)span);
        if (i < 4) sec = i < 2 ? -62135596800LL + i : 253402300799LL - (i - 2);
        t = (time_t)sec;
        CHECK(gmtime_r(&t, &tm) != NULL);
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        CHECK(ts_is(b, ts12(b, sec, 0), want));
    }
}

TEST(round_trip_and_depth)
{
    sr_value *v = sr_value_int(1), *a, *back;
    sr_error err;
    int i;

    /* msgpack-c holds 32 open arrays/maps at once: 32 levels read, 33 do
     * not (an empty one counts too) */
    for (i = 0; i < 32; i++) {
        a = sr_value_array();
        sr_value_array_push(a, v);
        v = a;
    }
    CHECK(enc(v));
    back = dec((const unsigned char *)out.data, out.len, &err);
    CHECK(back && equal(back, v));
    sr_value_free(back);
    a = sr_value_array();
    sr_value_array_push(a, v);
    v = a;
    CHECK(enc(v));
    CHECK(bad_value((const unsigned char *)out.data, out.len, "nests more than 32"));
    sr_value_free(v);
    v = sr_value_array();
    for (i = 0; i < 32; i++) {
        a = sr_value_array();
        sr_value_array_push(a, v);
        v = a;
    }
    CHECK(enc(v));
    CHECK(bad_value((const unsigned char *)out.data, out.len, "nests more than 32"));
    sr_value_free(v);

    /* writing is bounded like the JSON writer's */
    v = sr_value_int(1);
    for (i = 0; i < SR_VALUE_MAX_DEPTH; i++) {
        a = sr_value_array();
        sr_value_array_push(a, v);
        v = a;
    }
    sr__buf_reset(&out);
    CHECK(sr__msgpack_encode_value(v, &out, &err) == SR_EUSAGE && out.len == 0);
    CHECK(strstr(err.message, "nested too deeply"));
    sr_value_free(v);
}

/* ----------------------------------------------------------------- framing */

/* Three messages, one with a two-byte prefix. */
static sr_buf three_messages(void)
{
    sr_buf b = SR_BUF_INIT;
    sr_value *args = sr_value_array();
    char big[200];
    sr_error err;
    sr_msg m;

    memset(big, 'z', sizeof big);
    sr_value_array_push(args, sr_value_string(big, sizeof big));
    memset(&m, 0, sizeof m);
    m.type = SR_MSG_INVOCATION;
    m.target = S("Send");
    m.arguments = args;
    P->write(&m, &b, &err);
    memset(&m, 0, sizeof m);
    m.type = SR_MSG_PING;
    P->write(&m, &b, &err);
    m.type = SR_MSG_COMPLETION;
    m.invocation_id = S("1");
    m.has_result = 1;
    m.result = sr_value_int(7);
    P->write(&m, &b, &err);
    sr_value_free(m.result);
    sr_value_free(args);
    return b;
}

static int check_three(const sr_msg *got)
{
    return got[0].type == SR_MSG_INVOCATION && strcmp(got[0].target, "Send") == 0 &&
           sr_value_get_string(sr_value_at(got[0].arguments, 0), NULL)[199] == 'z' &&
           got[1].type == SR_MSG_PING && got[2].type == SR_MSG_COMPLETION &&
           sr_value_get_int(got[2].result) == 7;
}

TEST(several_messages_in_one_buffer)
{
    sr_buf b = three_messages();
    sr_msg got[3];
    sr_error err;
    size_t off = 0;
    int i, n;

    CHECK((unsigned char)b.data[0] & 0x80); /* the first prefix takes two bytes */
    for (i = 0; i < 3; i++) {
        n = P->parse(b.data + off, b.len - off, 1 << 20, &got[i], &err);
        CHECK(n > 0);
        off += (size_t)n;
    }
    CHECK(off == b.len && check_three(got));
    for (i = 0; i < 3; i++)
        sr__msg_clear(&got[i]);
    sr__buf_free(&b);
}

/* The transport's way in: the same messages in arenas from its pool, each
 * arena back to the pool once cleared and reused by the next message. */
TEST(parse_pooled_reuses_arenas)
{
    sr_buf b = three_messages();
    sr_arena_pool pool;
    sr_msg got[3];
    sr_error err;
    size_t off = 0, pooled;
    int i, c, n;

    memset(&pool, 0, sizeof pool);
    for (i = 0; i < 3; i++) {
        n = P->parse_pooled(b.data + off, b.len - off, 1 << 20, &got[i], &pool, &err);
        CHECK(n > 0 && got[i].arena);
        off += (size_t)n;
    }
    CHECK(off == b.len && check_three(got));
    for (i = 0; i < 3; i++)
        sr__msg_recycle(&got[i], &pool);
    for (pooled = 0, c = 0; c < SR_ARENA_CLASSES; c++)
        pooled += pool.n[c];
    CHECK(pooled == 3);
    /* again from the pool: nothing new, the same messages */
    for (off = 0, i = 0; i < 3; i++) {
        n = P->parse_pooled(b.data + off, b.len - off, 1 << 20, &got[i], &pool, &err);
        CHECK(n > 0);
        off += (size_t)n;
    }
    CHECK(check_three(got));
    for (pooled = 0, c = 0; c < SR_ARENA_CLASSES; c++)
        pooled += pool.n[c];
    CHECK(pooled == 0);
    for (i = 0; i < 3; i++)
        sr__msg_recycle(&got[i], &pool);
    /* a fault gives the arena back too */
    b.data[b.len - 1] = (char)0xc1; /* a byte MessagePack never uses */
    CHECK(P->parse_pooled(b.data + off - (size_t)n, (size_t)n, 1 << 20, &got[0], &pool, &err) < 0);
    sr__arena_pool_clear(&pool);
    sr__buf_free(&b);
}

/* Parse what acc holds into got[*k..3), consuming it as a receive loop
 * does; 0 when a parse failed. */
static int drain(sr_buf *acc, sr_msg *got, int *k)
{
    sr_error err;
    int n;
    while (*k < 3 && acc->len > 0) {
        n = P->parse(acc->data, acc->len, 1 << 20, &got[*k], &err);
        if (n < 0) return 0;
        if (n == 0) break;
        sr__buf_consume(acc, (size_t)n);
        (*k)++;
    }
    return 1;
}

/* Fed in two pieces split at every offset (inside prefixes too): the same
 * three messages each time, and nothing early. */
TEST(split_at_every_offset)
{
    sr_buf b = three_messages(), acc = SR_BUF_INIT;
    sr_error err;
    /* 0xd5 0x01 (213-byte body: 96 01 80 c0 a4 "Send" 91 d9 c8 <200> 90),
     * 02 91 06, 07 95 03 80 a1 '1' 03 07 */
    size_t cut, ends[3] = {215, 218, 226};
    sr_msg m;

    CHECK(b.len == 226 && memcmp(b.data, "\xd5\x01\x96\x01\x80\xc0\xa4Send\x91\xd9\xc8", 13) == 0);
    for (cut = 0; cut <= b.len; cut++) {
        sr_msg got[3];
        int k = 0, i;
        sr__buf_reset(&acc);
        sr__buf_append(&acc, b.data, cut);
        CHECK(drain(&acc, got, &k));
        CHECK(k == (cut >= ends[0]) + (cut >= ends[1]) + (cut >= ends[2]));
        sr__buf_append(&acc, b.data + cut, b.len - cut);
        CHECK(drain(&acc, got, &k));
        CHECK(k == 3 && acc.len == 0 && check_three(got));
        for (i = 0; i < 3; i++)
            sr__msg_clear(&got[i]);
    }
    /* every strict prefix of the first message is incomplete, never an error */
    for (cut = 0; cut < 215; cut++)
        CHECK(P->parse(b.data, cut, 1 << 20, &m, &err) == 0);
    CHECK(P->parse(b.data, 215, 1 << 20, &m, &err) == 215);
    sr__msg_clear(&m);
    sr__buf_free(&acc);
    sr__buf_free(&b);
}

TEST(size_limit)
{
    sr_buf b = frame(BL(0x91, 0x06));
    sr_error err;
    sr_msg m;

    CHECK(P->parse(b.data, b.len, 2, &m, &err) == 3);
    sr__msg_clear(&m);
    CHECK(P->parse(b.data, b.len, 1, &m, &err) == SR_EPROTOCOL);
    CHECK(strstr(err.message, "message too large (2 bytes, limit 1)"));
    CHECK(P->parse(b.data, b.len, 0, &m, &err) == 3); /* 0: no limit */
    sr__msg_clear(&m);
    /* known from the prefix alone, before the body arrives */
    CHECK(P->parse("\xff\xff\x03", 3, 65535, &m, &err) == 0);
    CHECK(P->parse("\xff\xff\x03", 3, 65534, &m, &err) == SR_EPROTOCOL);
    CHECK(strstr(err.message, "message too large (65535 bytes, limit 65534)"));
    CHECK(P->parse("\x80\x80\x04", 3, 65535, &m, &err) == SR_EPROTOCOL);
    CHECK(strstr(err.message, "message too large (65536 bytes, limit 65535)"));
    sr__buf_free(&b);
}

/* -------------------------------------------------------- malformed input */

TEST(malformed_framing)
{
    sr_error err;
    sr_msg m;

    /* an unfinished prefix is incomplete */
    CHECK(P->parse("\x80", 1, 0, &m, &err) == 0);
    CHECK(P->parse("\x80\x80\x80\x80", 4, 0, &m, &err) == 0);
    CHECK(P->parse("", 0, 0, &m, &err) == 0);
    CHECK(P->parse("\x80\x80\x80\x80\x80\x01", 6, 0, &m, &err) == SR_EPROTOCOL);
    CHECK(strstr(err.message, "length prefix (more than 5 bytes)"));
    CHECK(P->parse("\xff\xff\xff\xff\x0f", 5, 0, &m, &err) == SR_EPROTOCOL);
    CHECK(strstr(err.message, "length prefix (over 2^31-1)"));
    CHECK(P->parse("\x00", 1, 0, &m, &err) == SR_EPROTOCOL && strstr(err.message, "empty message"));
    /* the body is not exactly one MessagePack object */
    CHECK(bad(BL(0x92, 0x08), "message ends inside a MessagePack value"));
    CHECK(bad(BL(0x91, 0x06, 0xc0), "message has 1 bytes after its MessagePack value"));
    CHECK(bad(BL(0xc1), "invalid MessagePack data in message"));
    CHECK(bad(BL(0x92, 0x08, 0xc1), "invalid MessagePack data"));
    CHECK(bad(BL(0xda, 0x00, 0x05, 'a'), "ends inside a MessagePack value"));
}

TEST(malformed_messages)
{
    CHECK(bad(BL(0x2a), "message is not a MessagePack array (an integer)"));
    CHECK(bad(BL(0x81, 0xa1, 't', 0x01), "not a MessagePack array (a map)"));
    CHECK(bad(BL(0x90), "message is an empty array"));
    CHECK(bad(BL(0x91, 0xa1, '1'), "message has a non-integer type (a string)"));
    CHECK(bad(BL(0x91, 0xc0), "non-integer type (nil)"));
    CHECK(bad(BL(0x91, 0x0a), "unknown message type 10"));
    CHECK(bad(BL(0x91, 0x00), "unknown message type 0"));
    CHECK(bad(BL(0x91, 0xff), "unknown message type -1"));
    CHECK(bad(BL(0x91, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
              "unknown message type 18446744073709551615"));

    /* arity */
    CHECK(bad(BL(0x94, 0x01, 0x80, 0xc0, 0xa1, 'T'),
              "Invocation message has 4 items (expected 5 or 6)"));
    CHECK(bad(BL(0x97, 0x01, 0x80, 0xc0, 0xa1, 'T', 0x90, 0x90, 0xc0), "has 7 items"));
    CHECK(bad(BL(0x93, 0x02, 0x80, 0xa1, '1'), "StreamItem message has 3 items (expected 4)"));
    CHECK(bad(BL(0x93, 0x03, 0x80, 0xa1, '1'), "Completion message has 3 items (expected 4 or 5)"));
    CHECK(bad(BL(0x92, 0x05, 0x80), "CancelInvocation message has 2 items (expected 3)"));
    CHECK(bad(BL(0x92, 0x06, 0x80), "Ping message has 2 items (expected 1)"));
    CHECK(bad(BL(0x91, 0x07), "Close message has 1 items (expected 2 or 3)"));
    CHECK(bad(BL(0x91, 0x08), "Ack message has 1 items (expected 2)"));
    CHECK(bad(BL(0x93, 0x09, 0x01, 0x02), "Sequence message has 3 items (expected 2)"));

    /* wrong types in known fields */
    CHECK(bad(BL(0x96, 0x01, 0x80, 0x05, 0xa1, 'T', 0x90, 0x90),
              "Invocation message has a non-string 'invocationId' (an integer)"));
    CHECK(bad(BL(0x96, 0x01, 0x80, 0xc0, 0xc0, 0x90, 0x90),
              "Invocation message has a null 'target'"));
    CHECK(bad(BL(0x96, 0x01, 0x80, 0xc0, 0xa2, 'T', 0x00, 0x90, 0x90),
              "Invocation message has a NUL byte in 'target'"));
    CHECK(bad(BL(0x96, 0x01, 0x80, 0xc0, 0xa1, 'T', 0x80, 0x90),
              "Invocation message has a non-array 'arguments' (a map)"));
    CHECK(bad(BL(0x96, 0x01, 0x80, 0xc0, 0xa1, 'T', 0xc0, 0x90), "non-array 'arguments' (nil)"));
    CHECK(bad(BL(0x96, 0x01, 0x80, 0xc0, 0xa1, 'T', 0x90, 0x91, 0x01),
              "Invocation message has an invalid 'streamIds' (expected an array of strings)"));
    CHECK(bad(BL(0x96, 0x01, 0x80, 0xc0, 0xa1, 'T', 0x90, 0x80), "invalid 'streamIds'"));
    CHECK(bad(BL(0x96, 0x04, 0x80, 0xc0, 0xa1, 'T', 0x90, 0x90),
              "StreamInvocation message has a null 'invocationId'"));
    CHECK(bad(BL(0x96, 0x01, 0x81, 0xa1, 'k', 0x01, 0xc0, 0xa1, 'T', 0x90, 0x90),
              "Invocation message has an invalid 'headers' (expected a map of strings)"));
    CHECK(bad(BL(0x96, 0x01, 0x81, 0x01, 0xa1, 'v', 0xc0, 0xa1, 'T', 0x90, 0x90),
              "invalid 'headers'"));
    CHECK(bad(BL(0x96, 0x01, 0x90, 0xc0, 0xa1, 'T', 0x90, 0x90), "invalid 'headers'"));
    CHECK(bad(BL(0x94, 0x02, 0x80, 0xc0, 0x01), "StreamItem message has a null 'invocationId'"));
    CHECK(
        bad(BL(0x94, 0x02, 0x2a, 0xa1, '1', 0x01), "StreamItem message has an invalid 'headers'"));
    CHECK(bad(BL(0x94, 0x03, 0x80, 0xa1, '1', 0xa1, '2'),
              "Completion message has a non-integer 'resultKind' (a string)"));
    CHECK(bad(BL(0x94, 0x03, 0x80, 0xa1, '1', 0x00), "invalid result kind 0"));
    CHECK(bad(BL(0x95, 0x03, 0x80, 0xa1, '1', 0x04, 0x01), "invalid result kind 4"));
    CHECK(bad(BL(0x95, 0x03, 0x80, 0xa1, '1', 0x02, 0x01),
              "Completion message with result kind 2 has 5 items (expected 4)"));
    CHECK(bad(BL(0x94, 0x03, 0x80, 0xa1, '1', 0x03), "result kind 3 has 4 items (expected 5)"));
    CHECK(bad(BL(0x95, 0x03, 0x80, 0xa1, '1', 0x01, 0x01),
              "Completion message has a non-string 'error' (an integer)"));
    CHECK(bad(BL(0x93, 0x05, 0x80, 0x90),
              "CancelInvocation message has a non-string 'invocationId'"));
    CHECK(bad(BL(0x92, 0x07, 0x01), "Close message has a non-string 'error'"));
    CHECK(bad(BL(0x93, 0x07, 0xc0, 0x01), "Close message has a non-boolean 'allowReconnect'"));
    CHECK(bad(BL(0x92, 0x08, 0xa1, '1'), "Ack message has a non-integer 'sequenceId' (a string)"));
    CHECK(bad(BL(0x92, 0x09, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0),
              "non-integer 'sequenceId' (a float)"));

    /* hostile sizes: more nesting than msgpack-c holds, a count no memory holds */
    CHECK(bad(BL(0x94, 0x02, 0x80, 0xa1, '1', 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91,
                 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91,
                 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0xc0),
              "nests more than 32"));
    CHECK(bad(BL(0x94, 0x02, 0x80, 0xa1, '1', 0xdd, 0xff, 0xff, 0xff, 0xff), "more items than"));
    CHECK(bad(BL(0x94, 0x02, 0x80, 0xa1, '1', 0xdd, 0x00, 0x10, 0x00, 0x00, 0x01),
              "ends inside a MessagePack value"));
}

TEST(protocol_find)
{
    CHECK(sr__protocol_find("messagepack") == &sr__msgpack_protocol);
    CHECK(sr__protocol_find("json") == &sr__json_protocol);
    CHECK_STR(sr__msgpack_protocol.name, "messagepack");
    CHECK(sr__msgpack_protocol.version == 1 && sr__msgpack_protocol.binary == 1);
}

int main(void)
{
    RUN(write_every_type_as_the_spec_shows);
    RUN(write_upload_stream_ids_and_a_long_prefix);
    RUN(write_refuses_incomplete_messages);
    RUN(read_every_type_from_the_spec);
    RUN(write_then_read_is_identity);
    RUN(integers_take_the_smallest_form);
    RUN(every_integer_width_reads_as_int);
    RUN(floats_are_exact);
    RUN(strings_binaries_and_containers);
    RUN(map_keys_that_are_not_strings);
    RUN(repeated_keys_keep_first_place_last_value);
    RUN(timestamps_read_as_iso_utc_text);
    RUN(timestamps_agree_with_gmtime);
    RUN(round_trip_and_depth);
    RUN(several_messages_in_one_buffer);
    RUN(parse_pooled_reuses_arenas);
    RUN(split_at_every_offset);
    RUN(size_limit);
    RUN(malformed_framing);
    RUN(malformed_messages);
    RUN(protocol_find);
    sr__buf_free(&out);
    DONE();
}
