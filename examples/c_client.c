/*
 * c_client.c - the core used from plain C, without Lua.
 *
 * Connects to a hub (argv[1], e.g. http://127.0.0.1:5000/clientresulthub),
 * invokes Add(40, 2) and Echo("hello from C"), asks the server to call the
 * client's "notify" method and waits for that call, reads the stream
 * Counter(3, 0), answers the server's "square" call with a result (client
 * results), then stops. Prints what it got and exits 0 on success.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "signalr.h"

typedef struct app {
    int done; /* the current wait is over */
    int failed;
    int notified;
} app;

static void print_value(const sr_value *v)
{
    size_t i, n, klen;
    switch (sr_value_type(v)) {
    case SR_NULL:
        printf("null");
        break;
    case SR_BOOL:
        printf(sr_value_get_bool(v) ? "true" : "false");
        break;
    case SR_INT:
        printf("%" PRId64, sr_value_get_int(v));
        break;
    case SR_FLOAT:
        printf("%.17g", sr_value_get_float(v));
        break;
    case SR_STRING:
    case SR_BINARY: {
        const char *s = sr_value_get_string(v, &n);
        printf("\"%.*s\"", (int)n, s);
        break;
    }
    case SR_ARRAY:
        printf("[");
        for (i = 0, n = sr_value_len(v); i < n; i++) {
            if (i) printf(",");
            print_value(sr_value_at(v, i));
        }
        printf("]");
        break;
    case SR_MAP:
        printf("{");
        for (i = 0, n = sr_value_len(v); i < n; i++) {
            const char *k = sr_value_key_at(v, i, &klen);
            printf("%s\"%.*s\":", i ? "," : "", (int)klen, k);
            print_value(sr_value_at(v, i));
        }
        printf("}");
        break;
    }
}

static void on_done(void *ud, const sr_error *err, const sr_value *result)
{
    app *a = ud;
    a->done = 1;
    if (err) {
        a->failed = 1;
        fprintf(stderr, "error (%s): %s\n", sr_strerror(err->code), err->message);
        return;
    }
    if (result) {
        printf("result: ");
        print_value(result);
        printf("\n");
    }
}

/* A server's call. With an invocation id the server waits for a result:
 * answer with sr_conn_complete (here at once; it may also be later) and
 * return 1, or return 0 and the core answers that there is none. */
static int on_invocation(void *ud, sr_conn *c, const char *target, const sr_value *args,
                         const char *invocation_id)
{
    app *a = ud;
    printf("server called %s with ", target);
    print_value(args);
    printf("\n");
    if (strcmp(target, "notify") == 0) a->notified = 1;
    if (invocation_id && strcmp(target, "square") == 0 && sr_value_len(args) == 1) {
        int64_t x = sr_value_get_int(sr_value_at(args, 0));
        sr_value *r = sr_value_int(x * x);
        sr_conn_complete(c, invocation_id, r, NULL);
        sr_value_free(r);
        return 1;
    }
    return 0;
}

static void on_item(void *ud, const sr_value *item)
{
    (void)ud;
    printf("stream item: ");
    print_value(item);
    printf("\n");
}

/* Dispatch until the flag is set (a C program's own loop would wait on
 * sr_loop_fd() instead). */
/* Automatic reconnect reports through these two (state is reconnecting,
 * then connected again with a new connection id). */
static void on_reconnecting(void *ud, sr_conn *c, const sr_error *err)
{
    (void)ud;
    (void)c;
    printf("connection lost (%s), reconnecting\n", err->message);
}

static void on_reconnected(void *ud, sr_conn *c, const char *id)
{
    (void)ud;
    (void)c;
    printf("reconnected, id %s\n", id ? id : "(none)");
}

static int wait_for(sr_loop *loop, const int *flag)
{
    int i;
    for (i = 0; i < 1000 && !*flag; i++)
        sr_loop_dispatch(loop, 10);
    return *flag;
}

static int call(sr_loop *loop, sr_conn *c, app *a, const char *target, sr_value *args)
{
    int rc;
    a->done = 0;
    rc = sr_conn_invoke(c, target, args, on_done, a, NULL);
    sr_value_free(args);
    if (rc != SR_OK) {
        fprintf(stderr, "invoke %s: %s\n", target, sr_strerror(rc));
        return -1;
    }
    return wait_for(loop, &a->done) && !a->failed ? 0 : -1;
}

int main(int argc, char **argv)
{
    sr_error err;
    sr_options *opts;
    app a = {0, 0, 0};
    sr_loop *loop;
    sr_conn *c;
    sr_value *args;
    int ok = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s http://host:port/hub\n", argv[0]);
        return 2;
    }
    loop = sr_loop_new(&err);
    if (!loop) {
        fprintf(stderr, "loop: %s\n", err.message);
        return 1;
    }
    /* The options are copied by sr_conn_new, so they can go at once. */
    opts = sr_options_new();
    if (!opts || sr_options_set_url(opts, argv[1]) != SR_OK) {
        fprintf(stderr, "options: bad URL or out of memory\n");
        sr_options_free(opts);
        sr_loop_free(loop);
        return 1;
    }
    sr_options_set_log(opts, SR_LOG_NONE, NULL, NULL);
    sr_options_set_reconnect_delays(opts, NULL, 0); /* the default: 0, 2, 10, 30 s */
    c = sr_conn_new(loop, opts, &err);
    sr_options_free(opts);
    if (!c) {
        fprintf(stderr, "connection: %s\n", err.message);
        sr_loop_free(loop);
        return 1;
    }
    sr_conn_on_invocation(c, on_invocation, &a);
    sr_conn_on_reconnecting(c, on_reconnecting, NULL);
    sr_conn_on_reconnected(c, on_reconnected, NULL);

    if (sr_conn_start(c, on_done, &a) != SR_OK || !wait_for(loop, &a.done) || a.failed) goto out;
    printf("connected, id %s\n", sr_conn_connection_id(c));

    args = sr_value_array();
    sr_value_array_push(args, sr_value_int(40));
    sr_value_array_push(args, sr_value_int(2));
    if (call(loop, c, &a, "Add", args) < 0) goto out;

    args = sr_value_array();
    sr_value_array_push(args, sr_value_string("hello from C", 12));
    if (call(loop, c, &a, "Echo", args) < 0) goto out;

    args = sr_value_array();
    sr_value_array_push(args, sr_value_string("notify", 6));
    sr_value_array_push(args, sr_value_string("ping", 4));
    if (call(loop, c, &a, "CallMeBack", args) < 0) goto out;
    if (!wait_for(loop, &a.notified)) goto out;

    /* A server-to-client stream: items, then done. */
    args = sr_value_array();
    sr_value_array_push(args, sr_value_int(3));
    sr_value_array_push(args, sr_value_int(0));
    a.done = 0;
    if (sr_conn_stream(c, "Counter", args, on_item, on_done, &a, NULL) != SR_OK) {
        sr_value_free(args);
        goto out;
    }
    sr_value_free(args);
    if (!wait_for(loop, &a.done) || a.failed) goto out;
    printf("stream completed\n");

    /* Client results: the hub method calls "square" on this client and
     * returns what the client answered. */
    args = sr_value_array();
    sr_value_array_push(args, sr_value_string("square", 6));
    sr_value_array_push(args, sr_value_int(7));
    if (call(loop, c, &a, "AskClient", args) < 0) goto out;

    a.done = 0;
    if (sr_conn_stop(c, on_done, &a) != SR_OK || !wait_for(loop, &a.done)) goto out;
    printf("stopped: %s\n", sr_state_name(sr_conn_state(c)));
    ok = 1;
out:
    sr_conn_free(c);
    sr_loop_free(loop);
    return ok ? 0 : 1;
}
