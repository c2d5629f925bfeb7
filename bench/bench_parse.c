/*
 * bench_parse.c - the JSON hub protocol's reader alone: one record parsed
 * into an sr_msg and cleared, in a loop, for a few typical records. No hub,
 * no threads: what a received message costs the reading thread to decode.
 * Each record is timed twice: parsed and cleared one at a time, and in
 * batches of 256 parsed, then all cleared, as the reading thread frees what
 * the host has dispatched, with the transport's pool of arenas.
 * Usage: make bench-parse (or build/bench/bench_parse [iterations])
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name, *rec;
    } recs[] = {
        {"server call Tick(123456)", "{\"type\":1,\"target\":\"Tick\",\"arguments\":[123456]}\x1e"},
        {"completion of an invoke", "{\"type\":3,\"invocationId\":\"123\",\"result\":1001}\x1e"},
        {"stream item", "{\"type\":2,\"invocationId\":\"77\",\"item\":199841}\x1e"},
        {"server call with a record",
         "{\"type\":1,\"target\":\"Record\",\"arguments\":[{\"id\":12,\"name\":\"player one\","
         "\"pos\":{\"x\":1.5,\"y\":-2.25,\"z\":100.125},\"alive\":true}]}\x1e"},
    };
    enum { BATCH = 256 };
    static sr_msg batch[BATCH];
    sr_arena_pool pool;
    long n = argc > 1 ? atol(argv[1]) : 1000000, i;
    size_t k, j;

    memset(&pool, 0, sizeof pool);
    for (k = 0; k < sizeof recs / sizeof *recs; k++) {
        size_t len = strlen(recs[k].rec);
        double t;
        sr_error err;
        sr_msg m;
        for (i = 0; i < n / 10; i++) { /* warm-up */
            if (sr__json_protocol.parse(recs[k].rec, len, 0, &m, &err) <= 0) return 1;
            sr__msg_clear(&m);
        }
        t = now();
        for (i = 0; i < n; i++) {
            if (sr__json_protocol.parse(recs[k].rec, len, 0, &m, &err) <= 0) {
                fprintf(stderr, "%s: %s\n", recs[k].name, err.message);
                return 1;
            }
            sr__msg_clear(&m);
        }
        t = (now() - t) / (double)n * 1e9;
        {
            double t2 = now();
            for (i = 0; i < n; i += BATCH) {
                for (j = 0; j < BATCH; j++)
                    if (sr__json_protocol.parse_pooled(recs[k].rec, len, 0, &batch[j], &pool,
                                                       &err) <= 0)
                        return 1;
                for (j = 0; j < BATCH; j++)
                    sr__msg_recycle(&batch[j], &pool);
            }
            printf("%-28s %4zu bytes  %7.0f ns per record, %7.0f in batches of %d\n", recs[k].name,
                   len, t, (now() - t2) / (double)i * 1e9, BATCH);
        }
    }
    sr__arena_pool_clear(&pool);
    return 0;
}
