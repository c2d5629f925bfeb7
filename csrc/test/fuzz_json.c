/*
 * fuzz_json.c - fuzz target for the JSON hub protocol reader, the handshake
 * reader, the value decoder and the negotiate parser.
 *
 * libFuzzer (clang):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icsrc csrc/test/fuzz_json.c \
 *     csrc/json_protocol.c csrc/protocol.c csrc/value.c csrc/buf.c csrc/framing.c \
 *     csrc/negotiate.c \
 *     $(pkg-config --cflags --libs jansson) -o fuzz_json
 * Without clang, -DSR_FUZZ_MAIN adds a main that replays files, and with
 * "-m N file..." also runs N mutations of them (see the end of this file).
 *
 * Besides "no crash, no leak", it checks properties that must hold for any
 * input: whatever the reader accepts, the writer can write back, and that
 * text reads back to the same message (write -> parse -> write is stable).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framing.h"
#include "negotiate.h"
#include "protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "property violated: %s\n", what);
        abort();
    }
}

/* Anything read must write back, and re-read to the same text. */
static void rewrite(const sr_msg *m)
{
    sr_buf a = SR_BUF_INIT, b = SR_BUF_INIT;
    sr_msg back;
    sr_error err;
    int n;

    must(sr__json_protocol.write(m, &a, &err) == SR_OK, "a parsed message writes back");
    n = sr__json_protocol.parse(a.data, a.len, 0, &back, &err);
    must(n == (int)a.len, "written message parses whole");
    must(sr__json_protocol.write(&back, &b, &err) == SR_OK, "re-read message writes");
    must(a.len == b.len && memcmp(a.data, b.data, a.len) == 0, "write/parse/write is stable");
    sr__msg_clear(&back);
    sr__buf_free(&a);
    sr__buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t off = 0, limit = size > 0 ? 1 + data[0] * 16u : 0;
    sr_negotiation neg;
    sr_value *v = NULL;
    sr_error err;
    sr_msg m;
    int n;

    n = sr__handshake_parse(p, size, &err);
    must(n <= (int)size, "handshake consumes at most the input");

    /* The receive loop, as conn.c runs it. */
    while (off < size) {
        n = sr__json_protocol.parse(p + off, size - off, 1 << 20, &m, &err);
        if (n <= 0) break;
        must((size_t)n <= size - off && p[off + (size_t)n - 1] == SR_RECORD_SEPARATOR,
             "a record ends at its separator");
        rewrite(&m);
        sr__msg_clear(&m);
        off += (size_t)n;
    }
    /* A small limit takes the "too large" paths. */
    n = sr__json_protocol.parse(p, size, limit, &m, &err);
    if (n > 0) sr__msg_clear(&m);

    if (sr__json_decode_value(p, size, &v, &err) == SR_OK) {
        sr_buf a = SR_BUF_INIT;
        sr_value *back = NULL;
        must(sr__json_encode_value(v, &a, &err) == SR_OK, "a decoded value encodes");
        must(sr__json_decode_value(a.data, a.len, &back, &err) == SR_OK, "encoded value decodes");
        sr_value_free(back);
        sr_value_free(v);
        sr__buf_free(&a);
    }

    if (sr__negotiate_parse(p, size, &neg, &err) == SR_OK) sr__negotiation_clear(&neg);
    return 0;
}

#ifdef SR_FUZZ_MAIN
/* Replay files; with "-m N", also feed N mutations of them (byte flips,
 * inserts of JSON-ish tokens, truncation, splicing two inputs). */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;

    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

static uint64_t rng = 0x853c49e6748fea9bULL;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return n ? (uint32_t)(rng % n) : 0;
}

static size_t mutate(unsigned char *out, size_t cap, const unsigned char *in, size_t len,
                     const unsigned char *other, size_t olen)
{
    static const char *const tokens[] = {"\x1e",
                                         "{",
                                         "}",
                                         "[",
                                         "]",
                                         "\"",
                                         ",",
                                         ":",
                                         "null",
                                         "true",
                                         "1e999",
                                         "-0.0",
                                         "9223372036854775808",
                                         "\\u0000",
                                         "\\ud800",
                                         "\xff",
                                         "\"type\":",
                                         "\"result\":",
                                         "\"error\":",
                                         "{\"type\":1,\"target\":\"x\",\"arguments\":["};
    size_t n = len < cap ? len : cap, i, k, steps = 1 + rnd(8);

    memcpy(out, in, n);
    for (k = 0; k < steps; k++) {
        switch (rnd(5)) {
        case 0: /* flip a byte */
            if (n) out[rnd((uint32_t)n)] = (unsigned char)rnd(256);
            break;
        case 1: { /* insert a token */
            const char *t = tokens[rnd(sizeof tokens / sizeof *tokens)];
            size_t tl = strlen(t), at = n ? rnd((uint32_t)n + 1) : 0;
            if (n + tl <= cap) {
                memmove(out + at + tl, out + at, n - at);
                memcpy(out + at, t, tl);
                n += tl;
            }
            break;
        }
        case 2: /* truncate */
            n = n ? rnd((uint32_t)n + 1) : 0;
            break;
        case 3: /* delete a range */
            if (n) {
                size_t at = rnd((uint32_t)n), dl = rnd((uint32_t)(n - at) + 1);
                memmove(out + at, out + at + dl, n - at - dl);
                n -= dl;
            }
            break;
        default: /* splice in part of another input */
            if (olen) {
                size_t from = rnd((uint32_t)olen), cl = rnd((uint32_t)(olen - from) + 1);
                if (n + cl <= cap) {
                    i = n ? rnd((uint32_t)n + 1) : 0;
                    memmove(out + i + cl, out + i, n - i);
                    memcpy(out + i, other + from, cl);
                    n += cl;
                }
            }
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    unsigned char **in, *buf;
    size_t *len, cap = 1 << 16;
    long mutations = 0, i;
    int first = 1, nin = 0, a;

    if (argc > 2 && strcmp(argv[1], "-m") == 0) {
        mutations = atol(argv[2]);
        first = 3;
    }
    in = calloc((size_t)argc, sizeof *in);
    len = calloc((size_t)argc, sizeof *len);
    buf = malloc(cap);
    if (!in || !len || !buf) return 1;
    for (a = first; a < argc; a++) {
        in[nin] = slurp(argv[a], &len[nin]);
        if (!in[nin]) {
            fprintf(stderr, "cannot read %s\n", argv[a]);
            return 1;
        }
        LLVMFuzzerTestOneInput(in[nin], len[nin]);
        nin++;
    }
    for (i = 0; i < mutations && nin > 0; i++) {
        int x = (int)rnd((uint32_t)nin), y = (int)rnd((uint32_t)nin);
        size_t n = mutate(buf, cap, in[x], len[x], in[y], len[y]);
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("%d inputs, %ld mutations: ok\n", nin, mutations);
    for (a = 0; a < nin; a++)
        free(in[a]);
    free(in);
    free(len);
    free(buf);
    return 0;
}
#endif
