/* test_json.c - the JSON hub protocol, JSON values and the handshake. */
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "framing.h"
#include "harness.h"
#include "json_fast.h"
#include "protocol.h"
#include "value.h"
#include "value_equal.h"

/* ---------------------------------------------------------------- helpers */

static sr_buf out = SR_BUF_INIT;

/* sr_msg owns its strings, so its fields are not const; tests lend literals. */
static char *S(const char *s)
{
    return (char *)s;
}

/* Encode v alone; NUL-terminated text in out.data, or NULL on error. */
static const char *enc(const sr_value *v, sr_error *err)
{
    sr__buf_reset(&out);
    if (sr__json_encode_value(v, &out, err) != SR_OK) return NULL;
    sr__buf_append_byte(&out, '\0');
    return out.data;
}

static const char *enc_free(sr_value *v)
{
    sr_error err;
    const char *s = enc(v, &err);
    sr_value_free(v);
    return s ? s : "<error>";
}

static sr_value *dec(const char *text)
{
    sr_value *v = NULL;
    sr_error err;

    if (sr__json_decode_value(text, strlen(text), &v, &err) != SR_OK) return NULL;
    return v;
}

/* Encode, decode, compare; the decoded value must be the same type and bits. */
static int roundtrip(const sr_value *v)
{
    sr_value *back = NULL;
    sr_error err;
    int ok;

    if (!enc(v, &err)) return 0;
    if (sr__json_decode_value(out.data, out.len - 1, &back, &err) != SR_OK) return 0;
    ok = equal(v, back);
    sr_value_free(back);
    return ok;
}

/* Write m; NUL-terminated text in out.data (separator included). */
static const char *wr(const sr_msg *m, sr_error *err)
{
    sr__buf_reset(&out);
    if (sr__json_protocol.write(m, &out, err) != SR_OK) return NULL;
    sr__buf_append_byte(&out, '\0');
    return out.data;
}

/* Parse one record given without its separator. */
static int parse_text(const char *text, sr_msg *m, sr_error *err)
{
    sr_buf b = SR_BUF_INIT;
    int rc;

    sr__buf_append_str(&b, text);
    sr__buf_append_byte(&b, SR_RECORD_SEPARATOR);
    memset(m, 0, sizeof *m);
    rc = sr__json_protocol.parse(b.data, b.len, 1 << 20, m, err);
    sr__buf_free(&b);
    return rc;
}

/* A record that must fail with SR_EPROTOCOL and a message containing what. */
static int bad(const char *text, const char *what)
{
    sr_msg m;
    sr_error err;
    int rc;

    memset(&err, 0, sizeof err);
    rc = parse_text(text, &m, &err);
    if (rc > 0) sr__msg_clear(&m);
    if (rc != SR_EPROTOCOL || err.code != SR_EPROTOCOL || !strstr(err.message, what)) {
        printf("  record %s: rc=%d message=\"%s\" (want \"%s\")\n", text, rc, err.message, what);
        return 0;
    }
    return 1;
}

static sr_value *args2(sr_value *a, sr_value *b)
{
    sr_value *arr = sr_value_array();
    sr_value_array_push(arr, a);
    sr_value_array_push(arr, b);
    return arr;
}

/* ----------------------------------------------------------------- values */

TEST(encode_scalars)
{
    CHECK_STR(enc_free(sr_value_null()), "null");
    CHECK_STR(enc_free(sr_value_bool(1)), "true");
    CHECK_STR(enc_free(sr_value_bool(0)), "false");
    CHECK_STR(enc_free(sr_value_int(0)), "0");
    CHECK_STR(enc_free(sr_value_int(-1)), "-1");
    CHECK_STR(enc_free(sr_value_int(INT64_MAX)), "9223372036854775807");
    CHECK_STR(enc_free(sr_value_int(INT64_MIN)), "-9223372036854775808");
    CHECK_STR(enc_free(sr_value_float(0.1)), "0.1");
    CHECK_STR(enc_free(sr_value_float(3.0)), "3.0");
    CHECK_STR(enc_free(sr_value_float(-0.0)), "-0.0");
    CHECK_STR(enc_free(sr_value_float(1e300)), "1e+300");
    CHECK_STR(enc_free(sr_value_float(1e16)), "1e+16");
    CHECK_STR(enc_free(sr_value_float(123456789012345.0)), "123456789012345.0");
    CHECK_STR(enc_free(sr_value_float(5e-324)), "4.94065645841247e-324");
    CHECK_STR(enc_free(sr_value_float(1.0 / 3)), "0.3333333333333333");
    CHECK(enc(NULL, NULL) && strcmp(out.data, "null") == 0);
}

TEST(encode_strings)
{
    CHECK_STR(enc_free(sr_value_string("", 0)), "\"\"");
    CHECK_STR(enc_free(sr_value_string("a\"b\\c/d", 7)), "\"a\\\"b\\\\c/d\"");
    CHECK_STR(enc_free(sr_value_string("\b\f\n\r\t\x01\x1f\x7f", 8)),
              "\"\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\"");
    CHECK_STR(enc_free(sr_value_string("a\0b", 3)), "\"a\\u0000b\"");
    /* UTF-8 passes through unescaped: 2, 3 and 4 byte sequences, the edges */
    CHECK_STR(enc_free(sr_value_string("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9)),
              "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    CHECK_STR(enc_free(sr_value_string("\xc2\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf", 9)),
              "\"\xc2\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf\"");
}

TEST(encode_binary_as_base64)
{
    /* RFC 4648 test vectors */
    CHECK_STR(enc_free(sr_value_binary("", 0)), "\"\"");
    CHECK_STR(enc_free(sr_value_binary("f", 1)), "\"Zg==\"");
    CHECK_STR(enc_free(sr_value_binary("fo", 2)), "\"Zm8=\"");
    CHECK_STR(enc_free(sr_value_binary("foo", 3)), "\"Zm9v\"");
    CHECK_STR(enc_free(sr_value_binary("foob", 4)), "\"Zm9vYg==\"");
    CHECK_STR(enc_free(sr_value_binary("fooba", 5)), "\"Zm9vYmE=\"");
    CHECK_STR(enc_free(sr_value_binary("foobar", 6)), "\"Zm9vYmFy\"");
    CHECK_STR(enc_free(sr_value_binary("\xfb\xff\x00", 3)), "\"+/8A\"");
}

TEST(encode_refuses_what_json_cannot_hold)
{
    static const char *const bad_utf8[] = {
        "\xff",         "\x80",         "\xc0\x80",         "\xc1\xbf",         "\xe0\x80\x80",
        "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x80\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
        "\xe2\x82",     "\xc3",         "a\xc3(",
    };
    sr_value *m, *a;
    sr_error err;
    size_t i;

    sr__buf_reset(&out);
    sr__buf_append_str(&out, "keep");
    a = sr_value_array();
    sr_value_array_push(a, sr_value_int(1));
    sr_value_array_push(a, sr_value_float(NAN));
    CHECK(sr__json_encode_value(a, &out, &err) == SR_EUSAGE);
    CHECK(err.code == SR_EUSAGE && strstr(err.message, "NaN"));
    CHECK(out.len == 4); /* nothing half-written */
    sr_value_free(a);

    a = sr_value_float(INFINITY);
    CHECK(sr__json_encode_value(a, &out, &err) == SR_EUSAGE && strstr(err.message, "infinity"));
    sr_value_free(a);
    a = sr_value_float(-INFINITY);
    CHECK(sr__json_encode_value(a, &out, &err) == SR_EUSAGE && strstr(err.message, "-infinity"));
    sr_value_free(a);

    for (i = 0; i < sizeof bad_utf8 / sizeof *bad_utf8; i++) {
        a = sr_value_string(bad_utf8[i], strlen(bad_utf8[i]));
        CHECK(sr__json_encode_value(a, &out, &err) == SR_EUSAGE);
        CHECK(strstr(err.message, "UTF-8"));
        sr_value_free(a);
    }

    m = sr_value_map();
    sr_value_map_set(m, "a\0b", 3, sr_value_int(1));
    CHECK(sr__json_encode_value(m, &out, &err) == SR_EUSAGE && strstr(err.message, "NUL"));
    sr_value_free(m);
    m = sr_value_map();
    sr_value_map_set(m, "\xff", 1, sr_value_int(1));
    CHECK(sr__json_encode_value(m, &out, &err) == SR_EUSAGE && strstr(err.message, "map key"));
    sr_value_free(m);
    CHECK(out.len == 4);
}

/* Our UTF-8 check must agree with jansson's (which reads our output): any
 * string we write, jansson accepts, and the other way round. */
TEST(utf8_check_agrees_with_jansson)
{
    uint32_t x = 12345;
    char s[6];
    int i, j, n;

    for (i = 0; i < 300000; i++) {
        sr_value *v;
        json_t *j_str;
        n = 1 + i % 5;
        for (j = 0; j < n; j++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            /* favour the bytes where the rules are */
            s[j] = (char)(j == 0 ? 0xc0 + x % 64 : (x & 1 ? 0x80 + (x >> 1) % 64 : x >> 8));
        }
        v = sr_value_string(s, (size_t)n);
        j_str = json_stringn(s, (size_t)n);
        CHECK((enc(v, NULL) != NULL) == (j_str != NULL));
        json_decref(j_str);
        sr_value_free(v);
    }
}

TEST(integers_round_trip_as_integers)
{
    static const int64_t ints[] = {0,
                                   1,
                                   -1,
                                   INT64_MAX,
                                   INT64_MIN,
                                   INT64_MIN + 1,
                                   9007199254740993LL,
                                   -9007199254740993LL,
                                   4294967296LL,
                                   2147483648LL};
    uint64_t x = 88172645463325252ULL;
    size_t i;

    for (i = 0; i < sizeof ints / sizeof *ints; i++) {
        sr_value *v = sr_value_int(ints[i]);
        CHECK(roundtrip(v));
        sr_value_free(v);
    }
    for (i = 0; i < (size_t)t_scale(100000, 5000); i++) {
        sr_value *v;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v = sr_value_int((int64_t)x >> (i % 64));
        CHECK(roundtrip(v));
        sr_value_free(v);
    }
}

TEST(floats_round_trip_bit_exact)
{
    static const double ds[] = {0.1,
                                0.2,
                                0.3,
                                1e300,
                                -1e300,
                                -0.0,
                                0.0,
                                5e-324,
                                -5e-324,
                                9007199254740993.0, /* 2^53+1 rounds to 2^53: still a float */
                                9007199254740992.0,
                                DBL_MAX,
                                -DBL_MAX,
                                DBL_MIN,
                                2.2250738585072009e-308, /* largest subnormal */
                                DBL_EPSILON,
                                1.0 / 3,
                                2.0 / 3,
                                3.141592653589793,
                                1e21,
                                1e22,
                                1e-7,
                                123456789012345678.0,
                                0.5,
                                1.0,
                                -1.0,
                                100.0,
                                4.35,
                                0.1 + 0.2};
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    size_t i;

    for (i = 0; i < sizeof ds / sizeof *ds; i++) {
        sr_value *v = sr_value_float(ds[i]);
        if (!roundtrip(v)) printf("  %.17g -> %s\n", ds[i], out.data);
        CHECK(roundtrip(v));
        sr_value_free(v);
    }
    /* random bit patterns cover every exponent and the subnormals */
    for (i = 0; i < (size_t)t_scale(200000, 5000); i++) {
        double d;
        sr_value *v;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(&d, &x, sizeof d);
        if (!isfinite(d)) continue;
        v = sr_value_float(d);
        if (!roundtrip(v)) printf("  %.17g -> %s\n", d, out.data);
        CHECK(roundtrip(v));
        sr_value_free(v);
    }
}

TEST(decode_values)
{
    sr_value *v;
    size_t len;
    const char *s;

    v = dec("\"a\\u0000b\\u00e9\\ud83d\\ude00\"");
    s = sr_value_get_string(v, &len);
    CHECK(sr_value_type(v) == SR_STRING && len == 9);
    CHECK(memcmp(s, "a\0b\xc3\xa9\xf0\x9f\x98\x80", 9) == 0);
    sr_value_free(v);

    v = dec("[[],{},[{}],{\"a\":[]}]");
    CHECK(sr_value_len(v) == 4);
    CHECK(sr_value_type(sr_value_at(v, 0)) == SR_ARRAY && sr_value_len(sr_value_at(v, 0)) == 0);
    CHECK(sr_value_type(sr_value_at(v, 1)) == SR_MAP && sr_value_len(sr_value_at(v, 1)) == 0);
    CHECK(sr_value_type(sr_value_at(sr_value_at(v, 2), 0)) == SR_MAP);
    CHECK(sr_value_type(sr_value_get(sr_value_at(v, 3), "a")) == SR_ARRAY);
    sr_value_free(v);

    /* key order is document order */
    v = dec("{\"z\":1,\"a\":2,\"m\":3,\"b\":{\"y\":null,\"x\":true}}");
    CHECK_STR(sr_value_key_at(v, 0, NULL), "z");
    CHECK_STR(sr_value_key_at(v, 1, NULL), "a");
    CHECK_STR(sr_value_key_at(v, 2, NULL), "m");
    CHECK_STR(sr_value_key_at(sr_value_get(v, "b"), 0, NULL), "y");
    CHECK(sr_value_type(sr_value_get(sr_value_get(v, "b"), "y")) == SR_NULL);
    CHECK(sr_value_get_bool(sr_value_get(sr_value_get(v, "b"), "x")) == 1);
    CHECK_STR(enc(v, NULL), "{\"z\":1,\"a\":2,\"m\":3,\"b\":{\"y\":null,\"x\":true}}");
    sr_value_free(v);

    /* integer vs float is kept: 1 and 1.0, and exponents are floats */
    v = dec("[1,1.0,1e2,-0,-0.0,12345678901234567890e-10]");
    CHECK(sr_value_type(sr_value_at(v, 0)) == SR_INT);
    CHECK(sr_value_type(sr_value_at(v, 1)) == SR_FLOAT);
    CHECK(sr_value_type(sr_value_at(v, 2)) == SR_FLOAT &&
          sr_value_get_float(sr_value_at(v, 2)) == 100);
    CHECK(sr_value_type(sr_value_at(v, 3)) == SR_INT);
    CHECK(sr_value_type(sr_value_at(v, 4)) == SR_FLOAT &&
          signbit(sr_value_get_float(sr_value_at(v, 4))));
    CHECK(sr_value_type(sr_value_at(v, 5)) == SR_FLOAT);
    sr_value_free(v);

    /* whitespace around a value is fine */
    v = dec(" \n{ \"a\" : [ 1 , 2 ] }\t ");
    CHECK(sr_value_len(sr_value_get(v, "a")) == 2);
    sr_value_free(v);
}

/* Texts jansson refuses (and so the value decoder, whichever reader). */
static const char *const bad_json[] = {
    "",
    " ",
    "[1",
    "{\"a\":}",
    "nul",
    "01",
    "1 2",
    "[1,]",
    "{\"a\":1,}",
    "'x'",
    "NaN",
    "Infinity",
    "\"\\x\"",
    "\"\\ud800\"",
    "\"\xff\"",
    "\"a\nb\"",
    "9223372036854775808", /* past int64: jansson refuses, no silent rounding */
    "-9223372036854775809",
    "1e400",
    "{\"a\\u0000b\":1}",
};

TEST(decode_rejects)
{
    sr_value *v = (sr_value *)1;
    sr_error err;
    size_t i;

    for (i = 0; i < sizeof bad_json / sizeof *bad_json; i++) {
        v = (sr_value *)1;
        CHECK(sr__json_decode_value(bad_json[i], strlen(bad_json[i]), &v, &err) == SR_EPROTOCOL);
        CHECK(v == NULL && err.code == SR_EPROTOCOL && strstr(err.message, "invalid JSON"));
    }
    CHECK(sr__json_decode_value("9223372036854775808", 19, &v, &err) == SR_EPROTOCOL);
    CHECK(strstr(err.message, "too big integer"));
}

static sr_value *nest(int depth)
{
    sr_value *v = sr_value_int(1), *a;
    int i;

    for (i = 0; i < depth - 1; i++) {
        a = i % 2 ? sr_value_array() : sr_value_map();
        if (sr_value_type(a) == SR_ARRAY)
            sr_value_array_push(a, v);
        else
            sr_value_map_set(a, "k", 1, v);
        v = a;
    }
    return v;
}

TEST(depth_limits)
{
    static char deep[200002];
    sr_value *v;
    sr_error err;

    /* writing: as deep as jansson can read back, and no deeper */
    v = nest(SR_VALUE_MAX_DEPTH);
    CHECK(roundtrip(v));
    sr_value_free(v);
    v = nest(SR_VALUE_MAX_DEPTH + 1);
    CHECK(enc(v, &err) == NULL && err.code == SR_EUSAGE && strstr(err.message, "nested"));
    sr_value_free(v);

    /* reading: jansson stops at JSON_PARSER_MAX_DEPTH (2048) with an error */
    memset(deep, '[', 100000);
    memset(deep + 100000, ']', 100000);
    CHECK(sr__json_decode_value(deep, 200000, &v, &err) == SR_EPROTOCOL);
    CHECK(strstr(err.message, "depth"));
    CHECK(sr__json_decode_value(deep + 100000 - 2048, 4096, &v, &err) == SR_OK);
    sr_value_free(v);
    CHECK(sr__json_decode_value(deep + 100000 - 2049, 4098, &v, &err) == SR_EPROTOCOL);
}

TEST(nested_round_trip)
{
    sr_value *m = sr_value_map(), *inner = sr_value_array();

    sr_value_array_push(inner, sr_value_array());
    sr_value_array_push(inner, sr_value_map());
    sr_value_array_push(inner, sr_value_string("\xe2\x9c\x93 \"q\" \\ \x01", 11));
    sr_value_array_push(inner, sr_value_float(-1.5e-300));
    sr_value_array_push(inner, sr_value_int(INT64_MIN));
    sr_value_map_set(m, "list", 4, inner);
    sr_value_map_set(m, "", 0, sr_value_null());
    sr_value_map_set(m, "\xc3\xa9t\xc3\xa9", 5, sr_value_bool(0));
    sr_value_map_set(m, "s", 1, sr_value_string("a\0b", 3));
    CHECK(roundtrip(m));
    sr_value_free(m);
}

/* --------------------------------------------------------------- messages */

TEST(write_every_type)
{
    sr_msg m;
    sr_value *args = args2(sr_value_int(1), sr_value_string("x", 1));
    sr_value *ids = sr_value_array(), *hdr = sr_value_map();
    sr_error err;

    sr_value_array_push(ids, sr_value_string("s1", 2));
    sr_value_map_set(hdr, "h", 1, sr_value_string("v", 1));

    memset(&m, 0, sizeof m);
    m.type = SR_MSG_INVOCATION;
    m.target = S("Send");
    m.arguments = args;
    CHECK_STR(wr(&m, &err), "{\"type\":1,\"target\":\"Send\",\"arguments\":[1,\"x\"]}\x1e");
    m.invocation_id = S("7");
    m.stream_ids = ids;
    m.headers = hdr;
    CHECK_STR(wr(&m, &err), "{\"type\":1,\"invocationId\":\"7\",\"target\":\"Send\",\"arguments\":"
                            "[1,\"x\"],\"streamIds\":[\"s1\"],\"headers\":{\"h\":\"v\"}}\x1e");
    m.type = SR_MSG_STREAM_INVOCATION;
    m.stream_ids = NULL;
    m.headers = NULL;
    m.arguments = NULL; /* no arguments: an empty array is still written */
    CHECK_STR(wr(&m, &err),
              "{\"type\":4,\"invocationId\":\"7\",\"target\":\"Send\",\"arguments\":[]}\x1e");

    memset(&m, 0, sizeof m);
    m.type = SR_MSG_STREAM_ITEM;
    m.invocation_id = S("s1");
    m.item = args;
    CHECK_STR(wr(&m, &err), "{\"type\":2,\"invocationId\":\"s1\",\"item\":[1,\"x\"]}\x1e");
    m.item = NULL;
    CHECK_STR(wr(&m, &err), "{\"type\":2,\"invocationId\":\"s1\",\"item\":null}\x1e");

    memset(&m, 0, sizeof m);
    m.type = SR_MSG_COMPLETION;
    m.invocation_id = S("3");
    CHECK_STR(wr(&m, &err), "{\"type\":3,\"invocationId\":\"3\"}\x1e");
    m.has_result = 1;
    CHECK_STR(wr(&m, &err), "{\"type\":3,\"invocationId\":\"3\",\"result\":null}\x1e");
    m.result = args;
    CHECK_STR(wr(&m, &err), "{\"type\":3,\"invocationId\":\"3\",\"result\":[1,\"x\"]}\x1e");
    m.has_result = 0;
    m.result = NULL;
    m.error = S("it \"broke\"");
    CHECK_STR(wr(&m, &err),
              "{\"type\":3,\"invocationId\":\"3\",\"error\":\"it \\\"broke\\\"\"}\x1e");

    memset(&m, 0, sizeof m);
    m.type = SR_MSG_CANCEL_INVOCATION;
    m.invocation_id = S("9");
    CHECK_STR(wr(&m, &err), "{\"type\":5,\"invocationId\":\"9\"}\x1e");

    memset(&m, 0, sizeof m);
    m.type = SR_MSG_PING;
    CHECK_STR(wr(&m, &err), "{\"type\":6}\x1e");

    m.type = SR_MSG_CLOSE;
    CHECK_STR(wr(&m, &err), "{\"type\":7}\x1e");
    m.error = S("bye");
    m.allow_reconnect = 1;
    CHECK_STR(wr(&m, &err), "{\"type\":7,\"error\":\"bye\",\"allowReconnect\":true}\x1e");

    memset(&m, 0, sizeof m);
    m.type = SR_MSG_ACK;
    m.sequence_id = 1234567890123LL;
    CHECK_STR(wr(&m, &err), "{\"type\":8,\"sequenceId\":1234567890123}\x1e");
    m.type = SR_MSG_SEQUENCE;
    m.sequence_id = 1;
    CHECK_STR(wr(&m, &err), "{\"type\":9,\"sequenceId\":1}\x1e");

    sr_value_free(args);
    sr_value_free(ids);
    sr_value_free(hdr);
}

TEST(write_refuses_incomplete_messages)
{
    sr_msg m;
    sr_value *args = sr_value_array(), *notarr = sr_value_map(), *ids = sr_value_array();
    sr_error err;

    sr_value_array_push(args, sr_value_float(NAN));
    sr_value_array_push(ids, sr_value_int(1));
    sr__buf_reset(&out);
    sr__buf_append_str(&out, "prev");

    memset(&m, 0, sizeof m);
    m.type = SR_MSG_INVOCATION;
    CHECK(sr__json_protocol.write(&m, &out, &err) == SR_EUSAGE && strstr(err.message, "target"));
    m.target = S("T");
    m.arguments = args;
    CHECK(sr__json_protocol.write(&m, &out, &err) == SR_EUSAGE && strstr(err.message, "NaN"));
    m.arguments = notarr;
    CHECK(sr__json_protocol.write(&m, &out, &err) == SR_EUSAGE && strstr(err.message, "array"));
    m.arguments = NULL;
    m.stream_ids = ids;
    CHECK(sr__json_protocol.write(&m, &out, &err) == SR_EUSAGE && strstr(err.message, "streamIds"));
    m.stream_ids = NULL;
    m.headers = ids;
    CHECK(sr__json_protocol.write(&m, &out, &err) == SR_EUSAGE && strstr(err.message, "headers"));
    m.headers = NULL;
    m.target = S("\xff");
    CHECK(sr__json_protocol.write(&m, &out, &err) == SR_EUSAGE && strstr(err.message, "UTF-8"));

    m.type = SR_MSG_STREAM_INVOCATION;
    m.target = S("T");
    CHECK(sr__json_protocol.write(&m, &out, &err) == SR_EUSAGE &&
          strstr(err.message, "invocationId"));
    m.type = SR_MSG_COMPLETION;
    CHECK(sr__json_protocol.write(&m, &out, &err) == SR_EUSAGE);
    m.invocation_id = S("1");
    m.has_result = 1;
    m.error = S("e");
    CHECK(sr__json_protocol.write(&m, &out, &err) == SR_EUSAGE && strstr(err.message, "both"));
    m.type = (sr_msg_type)0;
    CHECK(sr__json_protocol.write(&m, &out, &err) == SR_EUSAGE);
    m.type = (sr_msg_type)10;
    CHECK(sr__json_protocol.write(&m, &out, &err) == SR_EUSAGE);
    CHECK(out.len == 4 && memcmp(out.data, "prev", 4) == 0);

    sr_value_free(args);
    sr_value_free(notarr);
    sr_value_free(ids);
}

TEST(read_every_type)
{
    sr_msg m;
    sr_error err;

    CHECK(parse_text("{\"type\":1,\"target\":\"Hello\",\"arguments\":[1,2.5,\"x\",null,[],{}]}", &m,
                     &err) > 0);
    CHECK(m.type == SR_MSG_INVOCATION && !m.invocation_id && strcmp(m.target, "Hello") == 0);
    CHECK(sr_value_len(m.arguments) == 6 && !m.stream_ids && !m.headers);
    CHECK(sr_value_type(sr_value_at(m.arguments, 0)) == SR_INT);
    CHECK(sr_value_type(sr_value_at(m.arguments, 1)) == SR_FLOAT);
    CHECK(sr_value_type(sr_value_at(m.arguments, 3)) == SR_NULL);
    CHECK(sr_value_type(sr_value_at(m.arguments, 4)) == SR_ARRAY);
    CHECK(sr_value_type(sr_value_at(m.arguments, 5)) == SR_MAP);
    sr__msg_clear(&m);
    CHECK(!m.target && !m.arguments && m.type == 0);

    CHECK(parse_text("{\"type\":1,\"invocationId\":\"12\",\"target\":\"T\",\"arguments\":[],"
                     "\"streamIds\":[\"a\",\"b\"],\"headers\":{\"k\":\"v\"},\"future\":{\"x\":1}}",
                     &m, &err) > 0);
    CHECK_STR(m.invocation_id, "12");
    CHECK(sr_value_len(m.stream_ids) == 2);
    CHECK_STR(sr_value_get_string(sr_value_at(m.stream_ids, 1), NULL), "b");
    CHECK_STR(sr_value_get_string(sr_value_get(m.headers, "k"), NULL), "v");
    sr__msg_clear(&m);

    /* null for an optional field is absent */
    CHECK(parse_text("{\"type\":1,\"invocationId\":null,\"target\":\"T\",\"arguments\":[],"
                     "\"streamIds\":null}",
                     &m, &err) > 0);
    CHECK(!m.invocation_id && !m.stream_ids);
    sr__msg_clear(&m);

    CHECK(parse_text("{\"type\":2,\"invocationId\":\"1\",\"item\":{\"a\":1}}", &m, &err) > 0);
    CHECK(m.type == SR_MSG_STREAM_ITEM && sr_value_type(m.item) == SR_MAP);
    sr__msg_clear(&m);
    CHECK(parse_text("{\"type\":2,\"invocationId\":\"1\",\"item\":null}", &m, &err) > 0);
    CHECK(sr_value_type(m.item) == SR_NULL && m.item);
    sr__msg_clear(&m);

    CHECK(parse_text("{\"type\":3,\"invocationId\":\"1\"}", &m, &err) > 0);
    CHECK(m.type == SR_MSG_COMPLETION && !m.has_result && !m.result && !m.error);
    sr__msg_clear(&m);
    CHECK(parse_text("{\"type\":3,\"invocationId\":\"1\",\"result\":null}", &m, &err) > 0);
    CHECK(m.has_result && m.result && sr_value_type(m.result) == SR_NULL && !m.error);
    sr__msg_clear(&m);
    CHECK(parse_text("{\"type\":3,\"invocationId\":\"1\",\"result\":42}", &m, &err) > 0);
    CHECK(m.has_result && sr_value_get_int(m.result) == 42);
    sr__msg_clear(&m);
    CHECK(parse_text("{\"type\":3,\"invocationId\":\"1\",\"error\":\"HubException: x\"}", &m,
                     &err) > 0);
    CHECK(!m.has_result && strcmp(m.error, "HubException: x") == 0);
    sr__msg_clear(&m);
    /* the .NET reader treats "error": null as no error */
    CHECK(parse_text("{\"type\":3,\"invocationId\":\"1\",\"result\":1,\"error\":null}", &m, &err) >
          0);
    CHECK(m.has_result && !m.error);
    sr__msg_clear(&m);

    CHECK(parse_text("{\"type\":4,\"invocationId\":\"5\",\"target\":\"Counter\",\"arguments\":[3]}",
                     &m, &err) > 0);
    CHECK(m.type == SR_MSG_STREAM_INVOCATION && strcmp(m.invocation_id, "5") == 0);
    sr__msg_clear(&m);

    CHECK(parse_text("{\"type\":5,\"invocationId\":\"5\"}", &m, &err) > 0);
    CHECK(m.type == SR_MSG_CANCEL_INVOCATION && strcmp(m.invocation_id, "5") == 0);
    sr__msg_clear(&m);

    CHECK(parse_text("{\"type\":6}", &m, &err) == 11 && m.type == SR_MSG_PING);
    sr__msg_clear(&m);

    CHECK(parse_text("{\"type\":7}", &m, &err) > 0);
    CHECK(m.type == SR_MSG_CLOSE && !m.error && !m.allow_reconnect);
    sr__msg_clear(&m);
    CHECK(parse_text("{\"type\":7,\"error\":\"Server shut down\",\"allowReconnect\":true}", &m,
                     &err) > 0);
    CHECK(strcmp(m.error, "Server shut down") == 0 && m.allow_reconnect == 1);
    sr__msg_clear(&m);

    CHECK(parse_text("{\"type\":8,\"sequenceId\":9007199254740993}", &m, &err) > 0);
    CHECK(m.type == SR_MSG_ACK && m.sequence_id == 9007199254740993LL);
    sr__msg_clear(&m);
    CHECK(parse_text("{\"sequenceId\":1,\"type\":9}", &m, &err) > 0); /* any field order */
    CHECK(m.type == SR_MSG_SEQUENCE && m.sequence_id == 1);
    sr__msg_clear(&m);
}

TEST(write_then_read_is_identity)
{
    sr_msg m, back;
    sr_value *args = args2(sr_value_float(0.1), sr_value_string("\xe2\x82\xac\0", 4));
    sr_buf first = SR_BUF_INIT;
    sr_error err;
    int n;

    memset(&m, 0, sizeof m);
    m.type = SR_MSG_INVOCATION;
    m.invocation_id = S("1");
    m.target = S("Echo");
    m.arguments = args;
    CHECK(sr__json_protocol.write(&m, &first, &err) == SR_OK);
    n = sr__json_protocol.parse(first.data, first.len, 1 << 20, &back, &err);
    CHECK(n == (int)first.len);
    CHECK(strcmp(back.target, "Echo") == 0 && equal(back.arguments, args));
    CHECK(wr(&back, &err) && out.len - 1 == first.len &&
          memcmp(out.data, first.data, first.len) == 0);
    sr__msg_clear(&back);
    sr__buf_free(&first);
    sr_value_free(args);
}

TEST(several_records_in_one_buffer)
{
    const char *data =
        "{\"type\":6}\x1e{\"type\":3,\"invocationId\":\"1\",\"result\":2}\x1e{\"type\":7}"
        "\x1e{\"type\":1,";
    size_t len = strlen(data), off = 0;
    sr_msg m;
    sr_error err;
    int n, types[4], count = 0;

    while ((n = sr__json_protocol.parse(data + off, len - off, 1 << 20, &m, &err)) > 0) {
        types[count++] = (int)m.type;
        sr__msg_clear(&m);
        off += (size_t)n;
    }
    CHECK(n == 0 && count == 3);
    CHECK(types[0] == 6 && types[1] == 3 && types[2] == 7);
    CHECK(strcmp(data + off, "{\"type\":1,") == 0);
}

TEST(record_split_across_feeds)
{
    const char *rec = "{\"type\":1,\"target\":\"Split\",\"arguments\":[\"\xe2\x82\xac\"]}\x1e";
    size_t len = strlen(rec), cut;
    sr_buf b = SR_BUF_INIT;
    sr_msg m;
    sr_error err;

    /* every cut point, including inside the multi-byte character */
    for (cut = 0; cut < len; cut++) {
        sr__buf_reset(&b);
        sr__buf_append(&b, rec, cut);
        memset(&m, 0xab, sizeof m);
        CHECK(sr__json_protocol.parse(b.data, b.len, 1 << 20, &m, &err) == 0);
        CHECK(m.type == (sr_msg_type)0xabababab); /* untouched */
        sr__buf_append(&b, rec + cut, len - cut);
        CHECK(sr__json_protocol.parse(b.data, b.len, 1 << 20, &m, &err) == (int)len);
        CHECK(strcmp(m.target, "Split") == 0);
        sr__msg_clear(&m);
    }
    sr__buf_free(&b);
}

TEST(malformed_records)
{
    CHECK(bad("{\"type\":1,\"target\":\"x\"", "invalid JSON"));
    CHECK(bad("{\"type\":6} {}", "invalid JSON"));
    CHECK(bad("[1,2]", "not a JSON object"));
    CHECK(bad("\"type\"", "not a JSON object"));
    CHECK(bad("{}", "missing 'type'"));
    CHECK(bad("{\"type\":\"1\"}", "non-integer 'type'"));
    CHECK(bad("{\"type\":1.0}", "non-integer 'type'"));
    CHECK(bad("{\"type\":42}", "unknown message type 42"));
    CHECK(bad("{\"type\":0}", "unknown message type 0"));
    CHECK(bad("{\"type\":-1}", "unknown message type -1"));
    CHECK(bad("{\"type\":1,\"arguments\":[]}", "Invocation message is missing 'target'"));
    CHECK(bad("{\"type\":1,\"target\":5,\"arguments\":[]}", "non-string 'target'"));
    CHECK(bad("{\"type\":1,\"target\":null,\"arguments\":[]}", "null 'target'"));
    CHECK(bad("{\"type\":1,\"target\":\"a\\u0000b\",\"arguments\":[]}", "NUL"));
    CHECK(bad("{\"type\":1,\"target\":\"x\"}", "missing 'arguments'"));
    CHECK(bad("{\"type\":1,\"target\":\"x\",\"arguments\":{}}", "non-array 'arguments'"));
    CHECK(bad("{\"type\":1,\"target\":\"x\",\"arguments\":[],\"streamIds\":\"a\"}", "streamIds"));
    CHECK(bad("{\"type\":1,\"target\":\"x\",\"arguments\":[],\"streamIds\":[1]}", "streamIds"));
    CHECK(bad("{\"type\":1,\"target\":\"x\",\"arguments\":[],\"headers\":{\"a\":1}}", "headers"));
    CHECK(bad("{\"type\":1,\"target\":\"x\",\"arguments\":[],\"headers\":[]}", "headers"));
    CHECK(bad("{\"type\":1,\"invocationId\":3,\"target\":\"x\",\"arguments\":[]}",
              "non-string 'invocationId'"));
    CHECK(bad("{\"type\":2,\"item\":1}", "StreamItem message is missing 'invocationId'"));
    CHECK(bad("{\"type\":2,\"invocationId\":\"1\"}", "StreamItem message is missing 'item'"));
    CHECK(bad("{\"type\":3}", "Completion message is missing 'invocationId'"));
    CHECK(bad("{\"type\":3,\"invocationId\":\"1\",\"result\":1,\"error\":\"e\"}", "both"));
    CHECK(bad("{\"type\":3,\"invocationId\":\"1\",\"error\":1}", "non-string 'error'"));
    CHECK(bad("{\"type\":4,\"target\":\"x\",\"arguments\":[]}",
              "StreamInvocation message is missing 'invocationId'"));
    CHECK(bad("{\"type\":5}", "CancelInvocation message is missing 'invocationId'"));
    CHECK(bad("{\"type\":7,\"allowReconnect\":\"yes\"}", "allowReconnect"));
    CHECK(bad("{\"type\":7,\"error\":{}}", "non-string 'error'"));
    CHECK(bad("{\"type\":8}", "Ack message is missing 'sequenceId'"));
    CHECK(bad("{\"type\":9,\"sequenceId\":\"1\"}", "Sequence message has a non-integer"));
    CHECK(bad("{\"type\":9,\"sequenceId\":1.5}", "non-integer"));
    CHECK(bad("{\"type\":3,\"invocationId\":\"1\",\"result\":99999999999999999999}", "too big"));
    CHECK(bad("{\"type\":1,\"target\":\"\xc3\x28\",\"arguments\":[]}", "invalid JSON"));
    CHECK(bad("{\"type\":6,\"type\":42}", "unknown message type 42")); /* last one wins */
    CHECK(bad("", "empty"));
}

/* Fields are found by their exact names: near misses of the same length
 * (another case, one letter off, a name of the other candidate's length)
 * are unknown fields, ignored, whichever reader took the record. */
TEST(envelope_names_are_exact)
{
    static const char *const fast[] = {
        "{\"tYpe\":3,\"Target\":\"x\",\"type\":1,\"items\":[1],\"target\":\"T\",\"argumentz\":[3],"
        "\"arguments\":[2],\"streamIDs\":[\"s\"],\"Headers\":{\"k\":1}}",
        /* a repeated unknown key sends the record to jansson */
        "{\"tYpe\":3,\"tYpe\":4,\"Target\":\"x\",\"type\":1,\"items\":[1],\"target\":\"T\","
        "\"argumentz\":[3],\"arguments\":[2],\"streamIDs\":[\"s\"],\"Headers\":{\"k\":1}}"};
    size_t i;
    sr_msg m;
    sr_error err;

    for (i = 0; i < sizeof fast / sizeof *fast; i++) {
        CHECK(parse_text(fast[i], &m, &err) > 0);
        CHECK(m.type == SR_MSG_INVOCATION && !m.invocation_id && !m.stream_ids && !m.headers);
        CHECK_STR(m.target, "T");
        CHECK(sr_value_len(m.arguments) == 1 && sr_value_get_int(sr_value_at(m.arguments, 0)) == 2);
        sr__msg_clear(&m);
    }
    CHECK(bad("{\"type\":1,\"targeT\":\"x\",\"arguments\":[]}", "missing 'target'"));
    CHECK(bad("{\"Type\":1,\"target\":\"x\",\"arguments\":[]}", "missing 'type'"));
    CHECK(bad("{\"type\":3,\"invocationID\":\"1\"}", "missing 'invocationId'"));
    CHECK(bad("{\"type\":9,\"sequenceID\":1}", "missing 'sequenceId'"));
    CHECK(bad("{\"type\":2,\"invocationId\":\"1\",\"itemz\":1}", "missing 'item'"));
}

TEST(size_limit)
{
    static char big[4096];
    sr_msg m;
    sr_error err;
    int n;

    memset(big, ' ', sizeof big);
    memcpy(big, "{\"type\":6}", 10);
    /* no separator yet, already over the limit: fail now, not after 16 MiB */
    n = sr__json_protocol.parse(big, 2000, 1000, &m, &err);
    CHECK(n == SR_EPROTOCOL && strstr(err.message, "message too large (2000 bytes, limit 1000)"));
    /* under the limit and incomplete: wait */
    CHECK(sr__json_protocol.parse(big, 1000, 1000, &m, &err) == 0);
    /* complete but too large */
    big[1500] = SR_RECORD_SEPARATOR;
    n = sr__json_protocol.parse(big, 2000, 1000, &m, &err);
    CHECK(n == SR_EPROTOCOL && strstr(err.message, "message too large (1500 bytes, limit 1000)"));
    /* exactly at the limit is fine */
    n = sr__json_protocol.parse(big, 2000, 1500, &m, &err);
    CHECK(n == 1501 && m.type == SR_MSG_PING);
    sr__msg_clear(&m);
    /* 0 means no limit */
    CHECK(sr__json_protocol.parse(big, 2000, 0, &m, &err) == 1501);
    sr__msg_clear(&m);
}

TEST(deep_record_is_an_error_not_a_crash)
{
    size_t depth = 1 << 20, len = 40 + 2 * depth, i;
    char *rec = malloc(len);
    sr_msg m;
    sr_error err;
    int n;

    CHECK(rec);
    strcpy(rec, "{\"type\":2,\"invocationId\":\"1\",\"item\":");
    i = strlen(rec);
    memset(rec + i, '[', depth);
    memset(rec + i + depth, ']', depth);
    i += 2 * depth;
    rec[i++] = '}';
    rec[i++] = SR_RECORD_SEPARATOR;
    n = sr__json_protocol.parse(rec, i, 0, &m, &err);
    free(rec);
    CHECK(n == SR_EPROTOCOL && strstr(err.message, "depth"));
}

/* ------------------------------------------------- the two readers agree */

/* What the fast path (simdjson) decides, jansson reads to the same value;
 * what jansson refuses, the fast path leaves undecided. Returns what the
 * fast path did (SR_OK or SR_JSON_UNDECIDED), so a test also checks that it
 * decided, or DISAGREE. */
#define DISAGREE (-1000)
static int fast_agrees(const char *text, size_t len)
{
    sr_value *fast = (sr_value *)1, *slow = NULL;
    sr_error err;
    int rf = sr__json_fast_read(text, len, &fast);
    int rs = sr__json_read_jansson(text, len, "value", &slow, &err);
    int ok =
        rf == SR_OK ? rs == SR_OK && equal(fast, slow) : rf == SR_JSON_UNDECIDED && fast == NULL;

    sr_json_field fields[16];
    size_t n, i;
    /* the envelope's values in an arena far too small at first: every
     * record here also grows it by further blocks */
    sr_arena *arena = sr__arena_new(8);
    int rfl = sr__json_fast_read_fields(text, len, fields, 16, &n, arena);

    /* the envelope reader: the same fields, in order, or undecided */
    if (rfl == SR_OK) {
        ok = ok && rs == SR_OK && sr_value_type(slow) == SR_MAP && sr_value_len(slow) == n;
        for (i = 0; i < n; i++) {
            size_t kl;
            const char *k = sr_value_key_at(slow, i, &kl);
            ok = ok && k && kl == fields[i].keylen && memcmp(k, fields[i].key, kl) == 0 &&
                 equal(fields[i].val, sr_value_at(slow, i));
            sr_value_free(fields[i].val); /* a no-op in the arena */
        }
    } else {
        ok = ok && rfl == SR_JSON_UNDECIDED && n == 0;
    }
    sr__arena_free(arena);
    if (!ok) fprintf(stderr, "     readers disagree on %.*s\n", (int)(len > 60 ? 60 : len), text);
    sr_value_free(rf == SR_OK ? fast : NULL);
    sr_value_free(slow);
    return ok ? rf : DISAGREE;
}

#define FAST(lit) fast_agrees((lit), sizeof(lit) - 1)

TEST(fast_reader_agrees_with_jansson)
{
    static const char *decided[] = {
        "{\"type\":1,\"target\":\"Tick\",\"arguments\":[123456]}",
        "{\"type\":3,\"invocationId\":\"7\",\"result\":{\"a\":[1,2.5,\"x\",null,true,false]}}",
        "[]",
        "{}",
        "[[],{},[{}],{\"\":[]}]",
        "9223372036854775807",
        "-9223372036854775808",
        "-0",
        "-0.0",
        "0.1",
        "1.0",
        "1E2",
        "1e-400",
        "-1e-400",
        "2.2250738585072011e-308",
        "1.7976931348623157e308",
        "4.9e-324",
        "123456789012345678901234567890.5",
        "\"\\u0000\"",
        "\"a\\u0000b\"",
        "\"\\ud83d\\ude00 \\u00e9 \\\" \\\\ \\/ \\b\\f\\n\\r\\t\"",
        "\"\xf0\x9f\x98\x80\"",
        "  {\"a\" : 1 }  ",
        "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,\"j\":10}",
    };
    /* Valid, but for jansson to decide: past int64, a NUL in a key,
     * repeated keys (first position, last value), in small and large
     * objects and nested deep in the record. */
    static const char *valid_undecided[] = {
        "9223372036854775808",
        "18446744073709551615",
        "{\"a\\u0000b\":1}",
        "{\"a\":1,\"a\":2}",
        "{\"type\":6,\"type\":42}",
        "[1,{\"x\":{\"a\":1,\"b\":2,\"a\":3}}]",
        "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,\"c\":10}",
    };
    /* besides bad_json */
    static const char *invalid[] = {
        "\"\\udc00\"",
        "\"\xed\xa0\x80\"",
        "18446744073709551616",
        "99999999999999999999",
        "-1e400",
        "00",
        ".5",
        "+1",
        "tru",
        "truex",
        "[]]",
        "[\"x\"",
        "{\"type\":6} {}",
        "{\"a\"}",
        "{1:2}",
        "\"\\u12\"",
    };
    size_t i;
    char *deep;

    for (i = 0; i < sizeof decided / sizeof *decided; i++)
        CHECK(fast_agrees(decided[i], strlen(decided[i])) == SR_OK);
    for (i = 0; i < sizeof valid_undecided / sizeof *valid_undecided; i++)
        CHECK(fast_agrees(valid_undecided[i], strlen(valid_undecided[i])) == SR_JSON_UNDECIDED);
    for (i = 0; i < sizeof bad_json / sizeof *bad_json; i++)
        CHECK(fast_agrees(bad_json[i], strlen(bad_json[i])) == SR_JSON_UNDECIDED);
    for (i = 0; i < sizeof invalid / sizeof *invalid; i++)
        CHECK(fast_agrees(invalid[i], strlen(invalid[i])) == SR_JSON_UNDECIDED);
    CHECK(FAST("\"\0\"") == SR_JSON_UNDECIDED); /* a raw NUL must be escaped */

    /* the same depth limit: 2048 nested arrays decide, 2049 do not */
    deep = malloc(2 * 2049);
    CHECK(deep);
    memset(deep, '[', 2049);
    memset(deep + 2049, ']', 2049);
    CHECK(fast_agrees(deep + 1, 2 * 2048) == SR_OK);
    CHECK(fast_agrees(deep, 2 * 2049) == SR_JSON_UNDECIDED);
    free(deep);
}

/* A record with more top-level fields than the envelope holds on the
 * stack: jansson reads it; up to that many, simdjson does. Unknown fields
 * are ignored either way. */
TEST(many_top_level_fields)
{
    sr_buf b = SR_BUF_INIT;
    sr_json_field f[16];
    sr_msg m;
    sr_error err;
    size_t n;
    int i, nf;

    for (nf = 13; nf <= 40; nf += 27) {
        b.len = 0;
        static const char head[] = "{\"type\":1,\"target\":\"T\",\"arguments\":[7]";
        sr__buf_append(&b, head, sizeof head - 1);
        for (i = 0; i < nf; i++) {
            char x[32];
            sr__buf_append(&b, x, (size_t)snprintf(x, sizeof x, ",\"x%d\":%d", i, i));
        }
        sr__buf_append(&b, "}", 1);
        i = sr__json_fast_read_fields(b.data, b.len, f, 16, &n, NULL);
        CHECK(nf + 3 <= 16 ? i == SR_OK && n == (size_t)nf + 3 : i == SR_JSON_UNDECIDED);
        while (i == SR_OK && n > 0)
            sr_value_free(f[--n].val);
        sr__buf_append(&b, "\x1e", 1);
        CHECK(sr__json_protocol.parse(b.data, b.len, 0, &m, &err) == (int)b.len);
        CHECK(m.type == SR_MSG_INVOCATION && strcmp(m.target, "T") == 0);
        CHECK(sr_value_len(m.arguments) == 1 && sr_value_get_int(sr_value_at(m.arguments, 0)) == 7);
        sr__msg_clear(&m);
    }
    sr__buf_free(&b);
}

/* The fast path reuses its buffers from record to record: a shorter record
 * after a longer one, and records past its size, still read right. */
TEST(fast_reader_sizes)
{
    size_t n = SR_JSON_FAST_MAX + 10, i;
    char *big = malloc(n + 1);
    sr_value *v = NULL;
    sr_error err;

    CHECK(big);
    for (i = 1; i <= 64; i++) { /* growing records */
        memset(big, ' ', i * 200);
        memcpy(big, "[1,2]", 5);
        CHECK(fast_agrees(big, i * 200) == SR_OK);
    }
    CHECK(FAST("[3]") == SR_OK); /* shorter again: no trace of the long one */
    CHECK(FAST("[3") == SR_JSON_UNDECIDED);
    /* past SR_JSON_FAST_MAX: jansson reads it */
    big[0] = '"';
    memset(big + 1, 'a', n - 2);
    big[n - 1] = '"';
    CHECK(sr__json_fast_read(big, n, &v) == SR_JSON_UNDECIDED && v == NULL);
    CHECK(sr__json_decode_value(big, n, &v, &err) == SR_OK);
    CHECK(sr_value_type(v) == SR_STRING && sr_value_get_string(v, &i) && i == n - 2);
    sr_value_free(v);
    /* exactly SR_JSON_FAST_MAX: still the fast path */
    big[SR_JSON_FAST_MAX - 1] = '"';
    CHECK(fast_agrees(big, SR_JSON_FAST_MAX) == SR_OK);
    free(big);
}

/* -------------------------------------------------------------- handshake */

TEST(handshake_write)
{
    sr_buf b = SR_BUF_INIT;

    CHECK(sr__handshake_write("json", 1, &b) == SR_OK);
    CHECK(b.len == 32 && memcmp(b.data, "{\"protocol\":\"json\",\"version\":1}\x1e", 32) == 0);
    sr__buf_reset(&b);
    CHECK(sr__handshake_write("messagepack", 1, &b) == SR_OK);
    CHECK(memcmp(b.data, "{\"protocol\":\"messagepack\",\"version\":1}\x1e", b.len) == 0);
    CHECK(sr__handshake_write("\xff", 1, &b) == SR_EUSAGE);
    CHECK(sr__handshake_write(NULL, 1, &b) == SR_EUSAGE);
    CHECK(memcmp(b.data, "{\"protocol\":\"messagepack\",\"version\":1}\x1e", b.len) == 0);
    sr__buf_free(&b);
}

static int hs(const char *data, sr_error *err)
{
    memset(err, 0, sizeof *err);
    return sr__handshake_parse(data, strlen(data), err);
}

TEST(handshake_parse)
{
    sr_error err;

    CHECK(hs("{}\x1e", &err) == 3);
    CHECK(hs("{}\x1e{\"type\":6}\x1e", &err) == 3); /* hub messages may follow at once */
    CHECK(hs("{\"minorVersion\":1}\x1e", &err) == 19);
    CHECK(hs("{\"error\":null}\x1e", &err) == 15);
    CHECK(hs("", &err) == 0);
    CHECK(hs("{", &err) == 0);
    CHECK(hs("{}", &err) == 0);

    CHECK(hs("{\"error\":\"Requested protocol 'x' is not available.\"}\x1e", &err) ==
          SR_EHANDSHAKE);
    CHECK(err.code == SR_EHANDSHAKE);
    CHECK_STR(err.message, "Requested protocol 'x' is not available.");

    CHECK(hs("{\"error\":5}\x1e", &err) == SR_EPROTOCOL && strstr(err.message, "'error'"));
    CHECK(hs("[]\x1e", &err) == SR_EPROTOCOL && strstr(err.message, "invalid handshake response"));
    CHECK(hs("HTTP/1.1 200 OK\x1e", &err) == SR_EPROTOCOL);
    CHECK(strstr(err.message, "invalid handshake response"));
    CHECK(hs("{\x1e", &err) == SR_EPROTOCOL);
    CHECK(hs("\x1e", &err) == SR_EPROTOCOL && strstr(err.message, "empty"));
    CHECK(hs("{\"type\":6}\x1e", &err) == SR_EPROTOCOL && strstr(err.message, "hub message"));
}

TEST(handshake_garbage_without_separator)
{
    static char junk[70000];
    sr_error err;

    memset(junk, 'x', sizeof junk);
    CHECK(sr__handshake_parse(junk, 1000, &err) == 0);
    CHECK(sr__handshake_parse(junk, sizeof junk, &err) == SR_EPROTOCOL);
    CHECK(strstr(err.message, "invalid handshake response"));
}

/* The transport's way in: a message built in an arena from its pool, the
 * arena back to the pool once cleared, and the next message in it. */
TEST(parse_pooled_reuses_arenas)
{
    static const char tick[] = "{\"type\":1,\"target\":\"Tick\",\"arguments\":[5,\"x\"]}\x1e";
    static const char dup[] = "{\"type\":1,\"type\":1,\"target\":\"T\",\"arguments\":[]}\x1e";
    static const char bad[] = "{\"type\":1,\"target\":7,\"arguments\":[]}\x1e";
    sr_arena_pool pool;
    sr_arena *first;
    sr_error err;
    sr_msg m;

    memset(&pool, 0, sizeof pool);
    CHECK(sr__json_protocol.parse_pooled(tick, sizeof tick - 1, 0, &m, &pool, &err) ==
          (int)sizeof tick - 1);
    CHECK(m.arena && strcmp(m.target, "Tick") == 0 && !m.invocation_id);
    CHECK(sr_value_get_int(sr_value_at(m.arguments, 0)) == 5);
    CHECK(sr_value_type(sr_value_at(m.arguments, 1)) == SR_STRING);
    first = m.arena;
    sr__msg_recycle(&m, &pool);
    CHECK(pool.n[0] == 1 && !m.arena && !m.target);
    CHECK(sr__json_protocol.parse_pooled(tick, sizeof tick - 1, 0, &m, &pool, &err) > 0);
    CHECK(m.arena == first && pool.n[0] == 0 && strcmp(m.target, "Tick") == 0);
    sr__msg_recycle(&m, &pool);
    /* what simdjson leaves to jansson: the arena goes back unused */
    CHECK(sr__json_protocol.parse_pooled(dup, sizeof dup - 1, 0, &m, &pool, &err) > 0);
    CHECK(!m.arena && strcmp(m.target, "T") == 0 && pool.n[0] == 1);
    sr__msg_recycle(&m, &pool);
    CHECK(pool.n[0] == 1);
    /* a fault frees the arena with the message being made */
    CHECK(sr__json_protocol.parse_pooled(bad, sizeof bad - 1, 0, &m, &pool, &err) < 0);
    CHECK(strstr(err.message, "non-string 'target'") != NULL);
    sr__arena_pool_clear(&pool);
}

TEST(protocol_find)
{
    CHECK(sr__protocol_find("json") == &sr__json_protocol);
    CHECK(sr__protocol_find("messagepack") == NULL || sr__protocol_find("messagepack")->binary);
    CHECK(sr__protocol_find("xml") == NULL && sr__protocol_find(NULL) == NULL);
    CHECK_STR(sr__json_protocol.name, "json");
    CHECK(sr__json_protocol.version == 1 && sr__json_protocol.binary == 0);
}

int main(void)
{
    RUN(encode_scalars);
    RUN(parse_pooled_reuses_arenas);
    RUN(encode_strings);
    RUN(encode_binary_as_base64);
    RUN(encode_refuses_what_json_cannot_hold);
    RUN(utf8_check_agrees_with_jansson);
    RUN(integers_round_trip_as_integers);
    RUN(floats_round_trip_bit_exact);
    RUN(decode_values);
    RUN(decode_rejects);
    RUN(depth_limits);
    RUN(nested_round_trip);
    RUN(write_every_type);
    RUN(write_refuses_incomplete_messages);
    RUN(read_every_type);
    RUN(write_then_read_is_identity);
    RUN(several_records_in_one_buffer);
    RUN(record_split_across_feeds);
    RUN(malformed_records);
    RUN(envelope_names_are_exact);
    RUN(size_limit);
    RUN(deep_record_is_an_error_not_a_crash);
    RUN(fast_reader_agrees_with_jansson);
    RUN(fast_reader_sizes);
    RUN(many_top_level_fields);
    RUN(handshake_write);
    RUN(handshake_parse);
    RUN(handshake_garbage_without_separator);
    RUN(protocol_find);
    sr__buf_free(&out);
    DONE();
}
