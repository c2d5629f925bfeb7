/* test_options.c - sr_options: setters, their validation, and the
 * connection's copy with the defaults filled in. Leaks show under valgrind
 * (the CI runs every test binary under it). */
#include <math.h>

#include "harness.h"
#include "options.h"

static char *token_fn(void *ud)
{
    (void)ud;
    return NULL;
}

static void log_fn(void *ud, sr_log_level level, const char *message)
{
    (void)ud;
    (void)level;
    (void)message;
}

static double retry_fn(void *ud, const sr_retry_context *ctx)
{
    (void)ud;
    (void)ctx;
    return -1;
}

TEST(test_new_is_unset)
{
    sr_options *o = sr_options_new();
    CHECK(o != NULL);
    CHECK(o->url == NULL);
    CHECK(o->transports == 0);
    CHECK(o->reconnect == 0);
    CHECK(o->stateful == 0);
    CHECK(o->log_level_set == 0);
    sr_options_free(o);
    sr_options_free(NULL);
}

TEST(test_setters_copy)
{
    sr_options *o = sr_options_new();
    char url[] = "http://host/hub", name[] = "X-A", value[] = "1";
    int ud = 0;
    CHECK(sr_options_set_url(o, url) == SR_OK);
    url[0] = 'X'; /* the option holds its own copy */
    CHECK_STR(o->url, "http://host/hub");
    CHECK(sr_options_set_url(o, "https://other/hub") == SR_OK); /* replaces */
    CHECK_STR(o->url, "https://other/hub");
    CHECK(sr_options_set_transports(o, SR_TRANSPORT_WEBSOCKETS | SR_TRANSPORT_SSE) == SR_OK);
    CHECK(o->transports == 3);
    CHECK(sr_options_set_skip_negotiation(o, 5) == SR_OK);
    CHECK(o->skip_negotiation == 1);
    CHECK(sr_options_set_protocol(o, "json") == SR_OK);
    CHECK_STR(o->protocol, "json");
    CHECK(sr_options_add_header(o, name, value) == SR_OK);
    CHECK(sr_options_add_header(o, "X-B", "") == SR_OK);
    name[0] = 'Y';
    CHECK(o->nheaders == 2);
    CHECK_STR(o->headers[0].name, "X-A");
    CHECK_STR(o->headers[0].value, "1");
    CHECK_STR(o->headers[1].name, "X-B");
    CHECK(sr_options_set_access_token(o, "tok") == SR_OK);
    CHECK_STR(o->access_token, "tok");
    CHECK(sr_options_set_access_token(o, NULL) == SR_OK);
    CHECK(o->access_token == NULL);
    CHECK(sr_options_set_access_token_fn(o, token_fn, &ud) == SR_OK);
    CHECK(o->token_fn == token_fn && o->token_ud == &ud);
    CHECK(sr_options_set_tls(o, 0, "ca.pem", "c.pem", "k.pem") == SR_OK);
    CHECK(o->tls.insecure == 1);
    CHECK_STR(o->tls.ca_file, "ca.pem");
    CHECK_STR(o->tls.key_file, "k.pem");
    CHECK(sr_options_set_tls(o, 1, NULL, NULL, NULL) == SR_OK);
    CHECK(o->tls.insecure == 0 && !o->tls.ca_file && !o->tls.cert_file && !o->tls.key_file);
    CHECK(sr_options_set_proxy(o, "http://proxy:3128") == SR_OK);
    CHECK_STR(o->proxy, "http://proxy:3128");
    CHECK(sr_options_set_server_timeout(o, 1000) == SR_OK);
    CHECK(sr_options_set_keepalive_interval(o, 0.5) == SR_OK);
    CHECK(sr_options_set_handshake_timeout(o, 2500) == SR_OK);
    CHECK(o->server_timeout_ms == 1000 && o->keepalive_ms == 0.5 &&
          o->handshake_timeout_ms == 2500);
    CHECK(sr_options_set_max_message_size(o, 1024) == SR_OK);
    CHECK(o->max_message_size == 1024);
    CHECK(sr_options_set_log(o, SR_LOG_TRACE, log_fn, &ud) == SR_OK);
    CHECK(o->log == log_fn && o->log_ud == &ud && o->log_level == SR_LOG_TRACE && o->log_level_set);
    CHECK(sr_options_set_stateful_reconnect(o, 1, 4096) == SR_OK);
    CHECK(o->stateful == 1 && o->stateful_buffer == 4096);
    sr_options_free(o);
}

TEST(test_validation)
{
    sr_options *o = sr_options_new();
    double bad[] = {0, -1};
    CHECK(sr_options_set_url(o, NULL) == SR_EUSAGE);
    CHECK(sr_options_set_url(o, "") == SR_EUSAGE);
    CHECK(sr_options_set_url(NULL, "http://h/") == SR_EUSAGE);
    CHECK(sr_options_set_url(o, "http://h/hub") == SR_OK);
    CHECK(sr_options_set_url(o, NULL) == SR_EUSAGE);
    CHECK_STR(o->url, "http://h/hub"); /* a refused value leaves the old one */
    CHECK(sr_options_set_transports(o, 8) == SR_EUSAGE);
    CHECK(sr_options_set_transports(o, -1) == SR_EUSAGE);
    CHECK(sr_options_set_transports(o, SR_TRANSPORT_WEBSOCKETS | 16) == SR_EUSAGE);
    CHECK(o->transports == 0);
    CHECK(sr_options_set_transports(o, 0) == SR_OK);
    CHECK(sr_options_set_protocol(o, "xml") == SR_EUSAGE);
    CHECK(o->protocol == NULL);
    CHECK(sr_options_add_header(o, NULL, "v") == SR_EUSAGE);
    CHECK(sr_options_add_header(o, "", "v") == SR_EUSAGE);
    CHECK(sr_options_add_header(o, "X", NULL) == SR_EUSAGE);
    CHECK(o->nheaders == 0);
    CHECK(sr_options_set_server_timeout(o, 0) == SR_EUSAGE);
    CHECK(sr_options_set_server_timeout(o, -5) == SR_EUSAGE);
    CHECK(sr_options_set_server_timeout(o, NAN) == SR_EUSAGE);
    CHECK(sr_options_set_server_timeout(o, INFINITY) == SR_EUSAGE);
    CHECK(sr_options_set_keepalive_interval(o, 0) == SR_EUSAGE);
    CHECK(sr_options_set_keepalive_interval(o, -1) == SR_EUSAGE);
    CHECK(sr_options_set_handshake_timeout(o, 0) == SR_EUSAGE);
    CHECK(sr_options_set_handshake_timeout(o, -0.1) == SR_EUSAGE);
    CHECK(o->server_timeout_ms == 0 && o->keepalive_ms == 0 && o->handshake_timeout_ms == 0);
    CHECK(sr_options_set_server_timeout(NULL, 10) == SR_EUSAGE);
    CHECK(sr_options_set_log(o, (sr_log_level)7, NULL, NULL) == SR_EUSAGE);
    CHECK(sr_options_set_log(o, (sr_log_level)-1, NULL, NULL) == SR_EUSAGE);
    CHECK(o->log_level_set == 0);
    CHECK(sr_options_set_log(o, SR_LOG_NONE, NULL, NULL) == SR_OK);
    CHECK(sr_options_set_reconnect_delays(o, bad, 2) == SR_EUSAGE);
    CHECK(sr_options_set_reconnect_delays(o, NULL, 3) == SR_EUSAGE);
    bad[1] = NAN;
    CHECK(sr_options_set_reconnect_delays(o, bad, 2) == SR_EUSAGE);
    bad[1] = INFINITY;
    CHECK(sr_options_set_reconnect_delays(o, bad, 2) == SR_EUSAGE);
    CHECK(sr_options_set_reconnect_policy(o, NULL, NULL) == SR_EUSAGE);
    CHECK(o->reconnect == 0); /* nothing refused turned reconnect on */
    CHECK(sr_options_set_stateful_reconnect(NULL, 1, 0) == SR_EUSAGE);
    sr_options_free(o);
}

TEST(test_reconnect_setters)
{
    sr_options *o = sr_options_new();
    double d[] = {0, 100, 250.5};
    int ud = 0;
    CHECK(sr_options_set_reconnect_delays(o, d, 3) == SR_OK);
    d[1] = 7; /* copied */
    CHECK(o->reconnect == 1 && o->ndelays == 3);
    CHECK(o->delays_ms[1] == 100 && o->delays_ms[2] == 250.5);
    CHECK(o->retry_fn == NULL);
    /* the latest of delays and policy wins */
    CHECK(sr_options_set_reconnect_policy(o, retry_fn, &ud) == SR_OK);
    CHECK(o->reconnect == 1 && o->retry_fn == retry_fn && o->retry_ud == &ud);
    CHECK(o->delays_ms == NULL && o->ndelays == 0);
    CHECK(sr_options_set_reconnect_delays(o, d, 2) == SR_OK);
    CHECK(o->retry_fn == NULL && o->retry_ud == NULL && o->ndelays == 2);
    CHECK(sr_options_set_reconnect_delays(o, NULL, 0) == SR_OK); /* the default delays */
    CHECK(o->reconnect == 1 && o->ndelays == 0 && o->delays_ms == NULL);
    sr_options_free(o);
}

TEST(test_dup_defaults)
{
    sr_options *o = sr_options_new(), *d;
    CHECK(sr_options_set_url(o, "http://h/hub") == SR_OK);
    d = sr__options_dup(o);
    CHECK(d != NULL);
    CHECK(d->url != o->url);
    CHECK_STR(d->url, "http://h/hub");
    CHECK(d->transports ==
          (SR_TRANSPORT_WEBSOCKETS | SR_TRANSPORT_SSE | SR_TRANSPORT_LONG_POLLING));
    CHECK_STR(d->protocol, "json");
    CHECK(d->server_timeout_ms == SR_DEFAULT_SERVER_TIMEOUT_MS);
    CHECK(d->keepalive_ms == SR_DEFAULT_KEEPALIVE_MS);
    CHECK(d->handshake_timeout_ms == SR_DEFAULT_HANDSHAKE_TIMEOUT_MS);
    CHECK(d->max_message_size == SR_DEFAULT_MAX_MESSAGE);
    CHECK(d->log_level == SR_LOG_INFORMATION && d->log_level_set);
    CHECK(d->stateful == 0 && d->stateful_buffer == SR_DEFAULT_STATEFUL_BUFFER);
    CHECK(d->reconnect == 0 && d->delays_ms == NULL && d->retry_fn == NULL);
    CHECK(d->nheaders == 0 && d->headers == NULL);
    sr_options_free(d);

    /* reconnect with no delays given: the official default */
    CHECK(sr_options_set_reconnect_delays(o, NULL, 0) == SR_OK);
    CHECK(sr_options_set_stateful_reconnect(o, 1, 0) == SR_OK);
    d = sr__options_dup(o);
    CHECK(d != NULL);
    CHECK(d->reconnect == 1 && d->ndelays == 4);
    CHECK(d->delays_ms[0] == 0 && d->delays_ms[1] == 2000 && d->delays_ms[2] == 10000 &&
          d->delays_ms[3] == 30000);
    CHECK(d->stateful == 1 && d->stateful_buffer == SR_DEFAULT_STATEFUL_BUFFER);
    sr_options_free(d);
    sr_options_free(o);
}

TEST(test_dup_keeps_values)
{
    sr_options *o = sr_options_new(), *d;
    double delays[] = {10, 20};
    int ud = 0;
    CHECK(sr_options_set_url(o, "https://h/hub?x=1") == SR_OK);
    CHECK(sr_options_set_transports(o, SR_TRANSPORT_WEBSOCKETS) == SR_OK);
    CHECK(sr_options_set_skip_negotiation(o, 1) == SR_OK);
    CHECK(sr_options_add_header(o, "A", "1") == SR_OK);
    CHECK(sr_options_add_header(o, "B", "2") == SR_OK);
    CHECK(sr_options_set_access_token(o, "tok") == SR_OK);
    CHECK(sr_options_set_access_token_fn(o, token_fn, &ud) == SR_OK);
    CHECK(sr_options_set_tls(o, 0, "ca", "cert", "key") == SR_OK);
    CHECK(sr_options_set_proxy(o, "http://p:1") == SR_OK);
    CHECK(sr_options_set_server_timeout(o, 1) == SR_OK);
    CHECK(sr_options_set_keepalive_interval(o, 2) == SR_OK);
    CHECK(sr_options_set_handshake_timeout(o, 3) == SR_OK);
    CHECK(sr_options_set_max_message_size(o, 99) == SR_OK);
    CHECK(sr_options_set_log(o, SR_LOG_NONE, log_fn, &ud) == SR_OK);
    CHECK(sr_options_set_reconnect_delays(o, delays, 2) == SR_OK);
    CHECK(sr_options_set_stateful_reconnect(o, 1, 123) == SR_OK);
    d = sr__options_dup(o);
    CHECK(d != NULL);
    sr_options_free(o); /* the copy owns everything it points to */
    CHECK_STR(d->url, "https://h/hub?x=1");
    CHECK(d->transports == SR_TRANSPORT_WEBSOCKETS && d->skip_negotiation == 1);
    CHECK(d->nheaders == 2);
    CHECK_STR(d->headers[1].name, "B");
    CHECK_STR(d->headers[1].value, "2");
    CHECK_STR(d->access_token, "tok");
    CHECK(d->token_fn == token_fn && d->token_ud == &ud);
    CHECK(d->tls.insecure == 1);
    CHECK_STR(d->tls.ca_file, "ca");
    CHECK_STR(d->tls.cert_file, "cert");
    CHECK_STR(d->tls.key_file, "key");
    CHECK_STR(d->proxy, "http://p:1");
    CHECK(d->server_timeout_ms == 1 && d->keepalive_ms == 2 && d->handshake_timeout_ms == 3);
    CHECK(d->max_message_size == 99);
    CHECK(d->log == log_fn && d->log_ud == &ud && d->log_level == SR_LOG_NONE);
    CHECK(d->reconnect == 1 && d->ndelays == 2 && d->delays_ms[1] == 20);
    CHECK(d->stateful == 1 && d->stateful_buffer == 123);
    sr_options_free(d);
}

TEST(test_dup_policy)
{
    sr_options *o = sr_options_new(), *d;
    int ud = 0;
    CHECK(sr_options_set_url(o, "http://h/hub") == SR_OK);
    CHECK(sr_options_set_reconnect_policy(o, retry_fn, &ud) == SR_OK);
    d = sr__options_dup(o);
    CHECK(d != NULL);
    CHECK(d->reconnect == 1 && d->retry_fn == retry_fn && d->retry_ud == &ud);
    CHECK(d->delays_ms == NULL && d->ndelays == 0); /* the policy decides, not delays */
    CHECK(sr__options_dup(NULL) == NULL);
    sr_options_free(d);
    sr_options_free(o);
}

/* sr_conn_new copies the set: the user's may be freed right after, and one
 * set may build several connections. */
TEST(test_conn_new_copies)
{
    sr_error err;
    sr_loop *loop = sr_loop_new(&err);
    sr_options *o = sr_options_new();
    sr_conn *a, *b;
    CHECK(loop != NULL);
    CHECK(sr_options_set_url(o, "http://127.0.0.1:1/hub") == SR_OK);
    CHECK(sr_options_set_log(o, SR_LOG_NONE, NULL, NULL) == SR_OK);
    a = sr_conn_new(loop, o, &err);
    b = sr_conn_new(loop, o, &err);
    sr_options_free(o);
    CHECK(a != NULL && b != NULL);
    CHECK(sr_conn_state(a) == SR_STATE_DISCONNECTED);
    sr_conn_free(a);
    sr_conn_free(b);
    o = sr_options_new();
    CHECK(sr_conn_new(loop, o, &err) == NULL); /* no URL */
    CHECK(err.code == SR_EUSAGE);
    sr_options_free(o);
    sr_loop_free(loop);
}

int main(void)
{
    RUN(test_new_is_unset);
    RUN(test_setters_copy);
    RUN(test_validation);
    RUN(test_reconnect_setters);
    RUN(test_dup_defaults);
    RUN(test_dup_keeps_values);
    RUN(test_dup_policy);
    RUN(test_conn_new_copies);
    DONE();
}
