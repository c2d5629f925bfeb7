/*
 * fuzz_main.h - the replay/mutation main of the fuzz targets, for builds
 * without libFuzzer (-DSR_FUZZ_MAIN; `make fuzz`, scripts/fuzz.sh): it
 * replays the files it is given and, with "-m N file...", feeds N mutations
 * of them (byte flips, inserts of the target's tokens, truncation, deletes,
 * splicing two inputs). The sequence is fixed unless SR_FUZZ_SEED is set,
 * so a failure replays with the same command.
 * Header-only: a target includes it once, from its own main.
 */
#ifndef SR_TEST_FUZZ_MAIN_H
#define SR_TEST_FUZZ_MAIN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bytes the mutator inserts: may hold NUL bytes, hence the length. */
typedef struct fuzz_token {
    const char *b;
    size_t n;
} fuzz_token;

#define TOK(s)                                                                                     \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }

typedef struct fuzz_mutator {
    const fuzz_token *tokens;
    size_t ntokens;
    int nudge; /* also nudge bytes by one: lengths and counts off by one */
} fuzz_mutator;

static unsigned char *fuzz_slurp(const char *path, size_t *len)
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

static uint64_t fuzz_rng = 0x853c49e6748fea9bULL;

static uint32_t fuzz_rnd(uint32_t n)
{
    fuzz_rng ^= fuzz_rng << 13;
    fuzz_rng ^= fuzz_rng >> 7;
    fuzz_rng ^= fuzz_rng << 17;
    return n ? (uint32_t)(fuzz_rng % n) : 0;
}

static size_t fuzz_mutate(const fuzz_mutator *mu, unsigned char *out, size_t cap,
                          const unsigned char *in, size_t len, const unsigned char *other,
                          size_t olen)
{
    size_t n = len < cap ? len : cap, i, k, steps = 1 + fuzz_rnd(8);

    memcpy(out, in, n);
    for (k = 0; k < steps; k++) {
        /* Without nudges the draw is of 5, as it was before there were any:
         * a target's fixed sequence stays what it was. */
        uint32_t op = fuzz_rnd(mu->nudge ? 6 : 5);
        if (!mu->nudge && op == 4) op = 5;
        switch (op) {
        case 0: /* flip a byte */
            if (n) out[fuzz_rnd((uint32_t)n)] = (unsigned char)fuzz_rnd(256);
            break;
        case 1: { /* insert a token */
            const fuzz_token *t = &mu->tokens[fuzz_rnd((uint32_t)mu->ntokens)];
            size_t at = n ? fuzz_rnd((uint32_t)n + 1) : 0;
            if (n + t->n <= cap) {
                memmove(out + at + t->n, out + at, n - at);
                memcpy(out + at, t->b, t->n);
                n += t->n;
            }
            break;
        }
        case 2: /* truncate */
            n = n ? fuzz_rnd((uint32_t)n + 1) : 0;
            break;
        case 3: /* delete a range */
            if (n) {
                size_t at = fuzz_rnd((uint32_t)n), dl = fuzz_rnd((uint32_t)(n - at) + 1);
                memmove(out + at, out + at + dl, n - at - dl);
                n -= dl;
            }
            break;
        case 4: /* nudge a byte */
            if (n) out[fuzz_rnd((uint32_t)n)] += (unsigned char)(fuzz_rnd(2) ? 1 : 255);
            break;
        default: /* splice in part of another input */
            if (olen) {
                size_t from = fuzz_rnd((uint32_t)olen), cl = fuzz_rnd((uint32_t)(olen - from) + 1);
                if (n + cl <= cap) {
                    i = n ? fuzz_rnd((uint32_t)n + 1) : 0;
                    memmove(out + i + cl, out + i, n - i);
                    memcpy(out + i, other + from, cl);
                    n += cl;
                }
            }
        }
    }
    return n;
}

static int fuzz_main(int argc, char **argv, const fuzz_mutator *mu)
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
        fuzz_rng ^= strtoull(getenv("SR_FUZZ_SEED"), NULL, 10) * 0x9e3779b97f4a7c15ULL;
        if (!fuzz_rng) fuzz_rng = 1;
        printf("SR_FUZZ_SEED=%s\n", getenv("SR_FUZZ_SEED"));
    }
    in = calloc((size_t)argc, sizeof *in);
    len = calloc((size_t)argc, sizeof *len);
    buf = malloc(cap);
    if (!in || !len || !buf) return 1;
    for (a = first; a < argc; a++) {
        in[nin] = fuzz_slurp(argv[a], &len[nin]);
        if (!in[nin]) {
            fprintf(stderr, "cannot read %s\n", argv[a]);
            return 1;
        }
        LLVMFuzzerTestOneInput(in[nin], len[nin]);
        nin++;
    }
    for (i = 0; i < mutations && nin > 0; i++) {
        int x = (int)fuzz_rnd((uint32_t)nin), y = (int)fuzz_rnd((uint32_t)nin);
        size_t n = fuzz_mutate(mu, buf, cap, in[x], len[x], in[y], len[y]);
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
