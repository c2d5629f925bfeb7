/*
 * fuzz_json.c - fuzz target for the JSON hub protocol reader, the handshake
 * reader, the value decoder and the negotiate parser.
 *
 * libFuzzer (clang; json_fast.cpp built with clang++ -std=c++17 -fno-exceptions):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icsrc csrc/test/fuzz_json.c \
 *     csrc/json_protocol.c csrc/protocol.c csrc/value.c csrc/buf.c csrc/framing.c \
 *     csrc/negotiate.c json_fast.o \
 *     $(pkg-config --cflags --libs jansson simdjson) -lstdc++ -o fuzz_json
 * Without clang, -DSR_FUZZ_MAIN adds a main that replays files, and with
 * "-m N file..." also runs N mutations of them (fuzz_main.h).
 *
 * Besides "no crash, no leak", it checks properties that must hold for any
 * input: whatever the reader accepts, the writer can write back, and that
 * text reads back to the same message (write -> parse -> write is stable);
 * and the two JSON readers agree: what the fast one (simdjson) decides,
 * jansson reads to the same value, and what jansson refuses, the fast one
 * leaves undecided.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framing.h"
#include "fuzz_props.h"
#include "json_fast.h"
#include "negotiate.h"
#include "protocol.h"
#include "value_equal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t off = 0, limit = size > 0 ? 1 + data[0] * 16u : 0;
    sr_negotiation neg;
    sr_value *v = NULL;
    sr_arena_pool pool;
    sr_error err;
    sr_msg m;
    int n;

    memset(&pool, 0, sizeof pool);
    n = sr__handshake_parse(p, size, &err);
    must(n <= (int)size, "handshake consumes at most the input");

    /* The receive loop, as the transport runs it: each message in an arena
     * from its pool, and back to it. */
    while (off < size) {
        n = sr__json_protocol.parse_pooled(p + off, size - off, 1 << 20, &m, &pool, &err);
        if (n <= 0) break;
        must((size_t)n <= size - off && p[off + (size_t)n - 1] == SR_RECORD_SEPARATOR,
             "a record ends at its separator");
        rewrite(&sr__json_protocol, &m);
        sr__msg_recycle(&m, &pool);
        off += (size_t)n;
    }
    sr__arena_pool_clear(&pool);
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

    {
        sr_value *fast = NULL, *slow = NULL;
        int rf = sr__json_fast_read(p, size, &fast);
        int rs = sr__json_read_jansson(p, size, "value", &slow, &err);
        if (rf == SR_OK)
            must(rs == SR_OK && equal(fast, slow), "jansson reads what simdjson read, the same");
        else
            must(rf == SR_JSON_UNDECIDED || rf == SR_ENOMEM, "the fast reader decides or defers");
        {
            sr_json_field f[16];
            size_t nf, i;
            sr_arena *a = sr__arena_new(8); /* grows by blocks for every input */
            if (sr__json_fast_read_fields(p, size, f, 16, &nf, a) == SR_OK) {
                must(rs == SR_OK && sr_value_type(slow) == SR_MAP && sr_value_len(slow) == nf,
                     "jansson reads the envelope simdjson read");
                for (i = 0; i < nf; i++) {
                    size_t kl;
                    const char *k = sr_value_key_at(slow, i, &kl);
                    must(kl == f[i].keylen && memcmp(k, f[i].key, kl) == 0 &&
                             equal(f[i].val, sr_value_at(slow, i)),
                         "the same fields in the same order");
                    sr_value_free(f[i].val);
                }
            }
            sr__arena_free(a);
        }
        sr_value_free(fast);
        sr_value_free(slow);
    }

    if (sr__negotiate_parse(p, size, &neg, &err) == SR_OK) sr__negotiation_clear(&neg);
    return 0;
}

#ifdef SR_FUZZ_MAIN
#include "fuzz_main.h"

int main(int argc, char **argv)
{
    /* Inserted by the mutator: JSON-ish tokens. */
    static const fuzz_token tokens[] = {TOK("\x1e"),
                                        TOK("{"),
                                        TOK("}"),
                                        TOK("["),
                                        TOK("]"),
                                        TOK("\""),
                                        TOK(","),
                                        TOK(":"),
                                        TOK("null"),
                                        TOK("true"),
                                        TOK("1e999"),
                                        TOK("-0.0"),
                                        TOK("9223372036854775808"),
                                        TOK("18446744073709551616"),
                                        TOK("\"a\":1,\"a\":"),
                                        TOK("\\u0000"),
                                        TOK("\\ud800"),
                                        TOK("\xff"),
                                        TOK("\"type\":"),
                                        TOK("\"result\":"),
                                        TOK("\"error\":"),
                                        TOK("{\"type\":1,\"target\":\"x\",\"arguments\":[")};
    static const fuzz_mutator mu = {tokens, sizeof tokens / sizeof *tokens, 0};
    return fuzz_main(argc, argv, &mu);
}
#endif
