/*
 * bench_c.c - sequential invoke round trips through the C core alone, to
 * separate the core's latency from the Lua layer's.
 * Usage: bench_c http://127.0.0.1:PORT/testhub [count]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "signalr.h"

static int done, failed;

static void on_done(void *ud, const sr_error *err, const sr_value *result)
{
    (void)ud;
    (void)result;
    done = 1;
    if (err) {
        failed = 1;
        fprintf(stderr, "%s\n", err->message);
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int wait_done(sr_loop *loop)
{
    while (!done) sr_loop_dispatch(loop, -1);
    return failed ? -1 : 0;
}

int main(int argc, char **argv)
{
    sr_error err;
    sr_options *o;
    sr_loop *loop;
    sr_conn *c;
    int i, n = argc > 2 ? atoi(argv[2]) : 20000;
    double *lat = malloc(sizeof(double) * (size_t)n), t0, dt;
    sr_value *args;

    if (argc < 2 || !lat) return 2;
    loop = sr_loop_new(&err);
    o = sr_options_new();
    if (!loop || !o || sr_options_set_url(o, argv[1]) != SR_OK) return 1;
    sr_options_set_log(o, SR_LOG_NONE, NULL, NULL);
    c = sr_conn_new(loop, o, &err);
    sr_options_free(o);
    done = 0;
    if (!c || sr_conn_start(c, on_done, NULL) != SR_OK || wait_done(loop) < 0) return 1;
    args = sr_value_array();
    sr_value_array_push(args, sr_value_int(1));
    sr_value_array_push(args, sr_value_int(2));
    for (i = 0; i < 1000; i++) {
        done = 0;
        sr_conn_invoke(c, "Add", args, on_done, NULL, NULL);
        if (wait_done(loop) < 0) return 1;
    }
    t0 = now();
    for (i = 0; i < n; i++) {
        double s = now();
        done = 0;
        sr_conn_invoke(c, "Add", args, on_done, NULL, NULL);
        if (wait_done(loop) < 0) return 1;
        lat[i] = now() - s;
    }
    dt = now() - t0;
    qsort(lat, (size_t)n, sizeof *lat, cmp);
    printf("C sequential invoke: %d calls in %.2f s = %.0f/s, p50 %.0f us, p99 %.0f us\n", n, dt,
           n / dt, lat[n / 2] * 1e6, lat[(size_t)(n * 0.99)] * 1e6);
    sr_value_free(args);
    done = 0;
    sr_conn_stop(c, on_done, NULL);
    wait_done(loop);
    sr_conn_free(c);
    sr_loop_free(loop);
    free(lat);
    return 0;
}
