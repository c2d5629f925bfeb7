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
#include "fuzz_props.h"
#include "protocol.h"
#include "value_equal.h"

#define P (&sr__msgpack_protocol)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The receive loop, as the transport runs it: each message in an arena
 * from its pool, and back to it. */
static void receive(const char *p, size_t size)
{
    sr_arena_pool pool;
    size_t off = 0;
    sr_error err;
    sr_msg m;
    int n;

    memset(&pool, 0, sizeof pool);
    while (off < size) {
        n = P->parse_pooled(p + off, size - off, 1 << 20, &m, &pool, &err);
        if (n <= 0) {
            must(n == 0 || (err.code == SR_EPROTOCOL && err.message[0]), "errors say what");
            break;
        }
        must((size_t)n <= size - off, "a frame is inside the input");
        rewrite(P, &m);
        sr__msg_recycle(&m, &pool);
        /* A frame cut short anywhere is incomplete, whatever it holds. */
        must(P->parse(p + off, (size_t)n - 1, 1 << 20, &m, &err) == 0, "a cut frame waits");
        if (n > 2) must(P->parse(p + off, 1, 1 << 20, &m, &err) == 0, "a lone byte waits");
        off += (size_t)n;
    }
    sr__arena_pool_clear(&pool);
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
#include "fuzz_main.h"

int main(int argc, char **argv)
{
    /* Inserted by the mutator: MessagePack headers and frames. */
    static const fuzz_token tokens[] = {TOK("\xc0"),
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
    static const fuzz_mutator mu = {tokens, sizeof tokens / sizeof *tokens, 1};
    return fuzz_main(argc, argv, &mu);
}
#endif
