/*
 * fuzz_msgpack.c - fuzz target for the MessagePack hub protocol reader and
 * the MessagePack value decoder.
 *
 * libFuzzer (clang):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icsrc \
 *     csrc/test/fuzz_msgpack.c csrc/msgpack_protocol.c csrc/protocol.c csrc/json_protocol.c \
 *     csrc/value.c csrc/buf.c csrc/framing.c $(pkg-config --cflags --libs msgpack jansson) \
 *     -o fuzz_msgpack
 * Without clang, -DSR_FUZZ_MAIN adds a main that replays files, and with
 * "-m N file..." also runs N mutations of them (`make fuzz`; CI runs it
 * under ASan+UBSan over csrc/test/fuzz_msgpack_corpus, see scripts/test.sh).
 *
 * Besides "no crash, no leak", it checks properties that must hold for any
 * input: whatever the reader accepts, the writer can write back, and those
 * bytes read back to the same message (write -> parse -> write is stable);
 * every strict prefix of an accepted frame is "incomplete", not an error; a
 * decoded value encodes and decodes to an equal value.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framing.h"
#include "protocol.h"
#include "value_equal.h"

#define P (&sr__msgpack_protocol)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "property violated: %s\n", what);
        abort();
    }
}

/* Anything read must write back, and re-read to the same bytes. */
static void rewrite(const sr_msg *m)
{
    sr_buf a = SR_BUF_INIT, b = SR_BUF_INIT;
    sr_msg back;
    sr_error err;
    int n;

    must(P->write(m, &a, &err) == SR_OK, "a parsed message writes back");
    n = P->parse(a.data, a.len, 0, &back, &err);
    must(n == (int)a.len, "written message parses whole");
    must(back.type == m->type, "the type survives");
    must(P->write(&back, &b, &err) == SR_OK, "re-read message writes");
    must(a.len == b.len && memcmp(a.data, b.data, a.len) == 0, "write/parse/write is stable");
    sr__msg_clear(&back);
    sr__buf_free(&a);
    sr__buf_free(&b);
}

/* The receive loop, as conn.c runs it. */
static void receive(const char *p, size_t size)
{
    size_t off = 0;
    sr_error err;
    sr_msg m;
    int n;

    while (off < size) {
        n = P->parse(p + off, size - off, 1 << 20, &m, &err);
        if (n <= 0) {
            must(n == 0 || (err.code == SR_EPROTOCOL && err.message[0]), "errors say what");
            break;
        }
        must((size_t)n <= size - off, "a frame is inside the input");
        rewrite(&m);
        sr__msg_clear(&m);
        /* A frame cut short anywhere is incomplete, whatever it holds. */
        must(P->parse(p + off, (size_t)n - 1, 1 << 20, &m, &err) == 0, "a cut frame waits");
        if (n > 2) must(P->parse(p + off, 1, 1 << 20, &m, &err) == 0, "a lone byte waits");
        off += (size_t)n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t limit = size > 0 ? 1 + data[0] * 4u : 0;
    sr_buf framed = SR_BUF_INIT;
    sr_value *v = NULL;
    sr_error err;
    sr_msg m;
    int n;

    receive(p, size);
    /* The input as one message body too, so mutated bodies reach the
     * message reader without a matching length prefix. */
    if (sr__varint_write(&framed, (uint32_t)size) == 0 && sr__buf_append(&framed, p, size) == 0)
        receive(framed.data, framed.len);
    sr__buf_free(&framed);

    /* A small limit takes the "too large" paths. */
    n = P->parse(p, size, limit, &m, &err);
    if (n > 0) sr__msg_clear(&m);

    if (sr__msgpack_decode_value(p, size, &v, &err) == SR_OK) {
        sr_buf a = SR_BUF_INIT, b = SR_BUF_INIT;
        sr_value *back = NULL;
        must(sr__msgpack_encode_value(v, &a, &err) == SR_OK, "a decoded value encodes");
        must(sr__msgpack_decode_value(a.data, a.len, &back, &err) == SR_OK,
             "encoded value decodes");
        must(equal(v, back), "a value survives encode/decode");
        must(sr__msgpack_encode_value(back, &b, &err) == SR_OK, "re-decoded value encodes");
        must(a.len == b.len && memcmp(a.data, b.data, a.len) == 0, "encode is stable");
        sr_value_free(back);
        sr_value_free(v);
        sr__buf_free(&a);
        sr__buf_free(&b);
    }
    return 0;
}

#ifdef SR_FUZZ_MAIN
/* Replay files; with "-m N", also feed N mutations of them (byte flips,
 * inserts of MessagePack headers, truncation, splicing two inputs). */
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

typedef struct token {
    const char *b;
    size_t n;
} token;

#define TOK(s)                                                                                     \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }

static size_t mutate(unsigned char *out, size_t cap, const unsigned char *in, size_t len,
                     const unsigned char *other, size_t olen)
{
    static const token tokens[] = {TOK("\xc0"),
                                   TOK("\xc1"),
                                   TOK("\xc2"),
                                   TOK("\xc3"),
                                   TOK("\x80"),
                                   TOK("\x90"),
                                   TOK("\x91"),
                                   TOK("\x81\x01"),
                                   TOK("\xa1"),
                                   TOK("\xca"),
                                   TOK("\xcb"),
                                   TOK("\xcc\xff"),
                                   TOK("\xcf\x80\x00\x00\x00\x00\x00\x00\x00"),
                                   TOK("\xd3\x80\x00\x00\x00\x00\x00\x00\x00"),
                                   TOK("\xdc\x00\x03"),
                                   TOK("\xdd\xff\xff\xff\xff"),
                                   TOK("\xdf\x00\x01\x00\x00"),
                                   TOK("\xd6\xff\x00\x00\x00\x00"),
                                   TOK("\xd7\xff"),
                                   TOK("\xc7\x0c\xff"),
                                   TOK("\xd4\x05\x00"),
                                   TOK("\xc4\x02"),
                                   TOK("\xff\xff\xff\xff\x07"),
                                   TOK("\x80\x80\x80\x80\x80"),
                                   TOK("\x96\x01\x80\xc0\xa1T\x90\x90"),
                                   TOK("\x95\x03\x80\xa1\x31\x03"),
                                   TOK("\x02\x91\x06")};
    size_t n = len < cap ? len : cap, i, k, steps = 1 + rnd(8);

    memcpy(out, in, n);
    for (k = 0; k < steps; k++) {
        switch (rnd(6)) {
        case 0: /* flip a byte */
            if (n) out[rnd((uint32_t)n)] = (unsigned char)rnd(256);
            break;
        case 1: { /* insert a token */
            const token *t = &tokens[rnd(sizeof tokens / sizeof *tokens)];
            size_t at = n ? rnd((uint32_t)n + 1) : 0;
            if (n + t->n <= cap) {
                memmove(out + at + t->n, out + at, n - at);
                memcpy(out + at, t->b, t->n);
                n += t->n;
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
        case 4: /* nudge a byte: lengths and counts off by one */
            if (n) out[rnd((uint32_t)n)] += (unsigned char)(rnd(2) ? 1 : 255);
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
    if (getenv("SR_FUZZ_SEED") && *getenv("SR_FUZZ_SEED")) {
        rng ^= strtoull(getenv("SR_FUZZ_SEED"), NULL, 10) * 0x9e3779b97f4a7c15ULL;
        if (!rng) rng = 1;
        printf("SR_FUZZ_SEED=%s\n", getenv("SR_FUZZ_SEED"));
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
