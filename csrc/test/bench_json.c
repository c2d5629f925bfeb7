/*
 * bench_json.c - micro-benchmark of the JSON hub protocol on small messages,
 * and of the alternative writer it was chosen over (a jansson tree dumped
 * with json_dumpb). Not a test; build and run by hand:
 *   cc -O2 -std=c99 -D_GNU_SOURCE -Icsrc csrc/test/bench_json.c csrc/json_protocol.c \
 *     csrc/value.c csrc/buf.c csrc/framing.c $(pkg-config --cflags --libs jansson) -o bench_json
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "protocol.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The same message through a jansson tree, for comparison only. */
static int tree_write(const sr_msg *m, sr_buf *out)
{
    json_t *o = json_object(), *args = json_array();
    size_t i, n, len;
    int rc = -1;

    json_object_set_new(o, "type", json_integer(m->type));
    if (m->invocation_id) json_object_set_new(o, "invocationId", json_string(m->invocation_id));
    json_object_set_new(o, "target", json_string(m->target));
    for (i = 0; i < sr_value_len(m->arguments); i++) {
        const sr_value *a = sr_value_at(m->arguments, i);
        const char *s;
        switch (sr_value_type(a)) {
        case SR_INT:
            json_array_append_new(args, json_integer(sr_value_get_int(a)));
            break;
        case SR_FLOAT:
            json_array_append_new(args, json_real(sr_value_get_float(a)));
            break;
        default:
            s = sr_value_get_string(a, &len);
            json_array_append_new(args, json_stringn(s, len));
        }
    }
    json_object_set_new(o, "arguments", args);
    n = json_dumpb(o, NULL, 0, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (n && sr__buf_reserve(out, n + 1) == 0) {
        json_dumpb(o, out->data + out->len, n, JSON_COMPACT | JSON_REAL_PRECISION(17));
        out->len += n;
        out->data[out->len++] = '\x1e';
        rc = 0;
    }
    json_decref(o);
    return rc;
}

int main(void)
{
    enum { N = 1000000 };
    sr_value *args = sr_value_array();
    sr_buf buf = SR_BUF_INIT;
    sr_msg m, back;
    sr_error err;
    double t;
    size_t off, msglen;
    int i, n;

    sr_value_array_push(args, sr_value_string("user42", 6));
    sr_value_array_push(args, sr_value_string("hello, world", 12));
    sr_value_array_push(args, sr_value_int(123456));
    sr_value_array_push(args, sr_value_float(0.25));
    memset(&m, 0, sizeof m);
    m.type = SR_MSG_INVOCATION;
    m.invocation_id = (char *)"1234";
    m.target = (char *)"SendMessage";
    m.arguments = args;

    t = now();
    for (i = 0; i < N; i++) {
        sr__buf_reset(&buf);
        sr__json_protocol.write(&m, &buf, &err);
    }
    t = now() - t;
    msglen = buf.len;
    printf("message: %.*s (%zu bytes)\n", (int)buf.len - 1, buf.data, buf.len);
    printf("write (direct text):   %8.0f msg/s  %6.0f ns/msg\n", N / t, t / N * 1e9);

    t = now();
    for (i = 0; i < N; i++) {
        sr__buf_reset(&buf);
        tree_write(&m, &buf);
    }
    t = now() - t;
    printf("write (jansson tree):  %8.0f msg/s  %6.0f ns/msg\n", N / t, t / N * 1e9);

    /* parse from one big buffer of N records, like a busy receive loop */
    sr__buf_reset(&buf);
    for (i = 0; i < N; i++)
        sr__json_protocol.write(&m, &buf, &err);
    t = now();
    for (off = 0; off < buf.len; off += (size_t)n) {
        n = sr__json_protocol.parse(buf.data + off, buf.len - off, 1 << 20, &back, &err);
        if (n <= 0) return 1;
        sr__msg_clear(&back);
    }
    t = now() - t;
    printf("parse:                 %8.0f msg/s  %6.0f ns/msg  (%.0f MB/s)\n", N / t, t / N * 1e9,
           (double)N * (double)msglen / t / 1e6);

    /* a larger payload: 100 floats + 100 strings */
    {
        sr_value *big = sr_value_array();
        for (i = 0; i < 100; i++) {
            sr_value_array_push(big, sr_value_float(i * 1.1));
            sr_value_array_push(big, sr_value_string("some text \"quoted\"", 18));
        }
        m.arguments = big;
        t = now();
        for (i = 0; i < N / 100; i++) {
            sr__buf_reset(&buf);
            sr__json_protocol.write(&m, &buf, &err);
        }
        t = now() - t;
        printf("write 200-arg message (%zu bytes): %8.0f msg/s  %.0f MB/s\n", buf.len, N / 100 / t,
               (double)(N / 100) * (double)buf.len / t / 1e6);
        msglen = buf.len;
        t = now();
        for (i = 0; i < N / 100; i++) {
            n = sr__json_protocol.parse(buf.data, buf.len, 1 << 20, &back, &err);
            sr__msg_clear(&back);
        }
        t = now() - t;
        printf("parse 200-arg message:             %8.0f msg/s  %.0f MB/s\n", N / 100 / t,
               (double)(N / 100) * (double)msglen / t / 1e6);
        sr_value_free(big);
    }
    sr_value_free(args);
    sr__buf_free(&buf);
    return 0;
}
