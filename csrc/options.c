/*
 * options.c - sr_options, the opaque option set of sr_conn_new.
 *
 * Setters validate at once, so a bad value is reported where it was given
 * rather than when a connection is made. A setter that fails leaves the
 * option as it was. sr__options_dup is the connection's own copy: all
 * defaults resolved, so conn.c never needs to know what "unset" means.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "protocol.h"

#define ALL_TRANSPORTS (SR_TRANSPORT_WEBSOCKETS | SR_TRANSPORT_SSE | SR_TRANSPORT_LONG_POLLING)

/* The official clients' default: retry at once, then after 2, 10 and 30 s,
 * then give up. */
static const double default_delays_ms[] = {0, 2000, 10000, 30000};

sr_options *sr_options_new(void)
{
    return calloc(1, sizeof(sr_options));
}

static void free_headers(sr_header *h, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        free((char *)h[i].name);
        free((char *)h[i].value);
    }
    free(h);
}

/* Frees a user's set and a connection's copy alike: both own everything. */
void sr_options_free(sr_options *o)
{
    if (!o) return;
    free(o->url);
    free(o->protocol);
    free_headers(o->headers, o->nheaders);
    free(o->access_token);
    free((char *)o->tls.ca_file);
    free((char *)o->tls.cert_file);
    free((char *)o->tls.key_file);
    free(o->proxy);
    free(o->user_agent);
    free(o->delays_ms);
    free(o);
}

/* Replace *slot with a copy of s (NULL clears it); the old value survives a
 * failed copy. */
static int set_str(char **slot, const char *s)
{
    char *copy = NULL;
    if (s) {
        copy = strdup(s);
        if (!copy) return SR_ENOMEM;
    }
    free(*slot);
    *slot = copy;
    return SR_OK;
}

int sr_options_set_url(sr_options *o, const char *url)
{
    if (!o || !url || !*url) return SR_EUSAGE;
    return set_str(&o->url, url);
}

int sr_options_set_transports(sr_options *o, int mask)
{
    if (!o || mask < 0 || (mask & ~ALL_TRANSPORTS)) return SR_EUSAGE;
    o->transports = mask;
    return SR_OK;
}

int sr_options_set_skip_negotiation(sr_options *o, int on)
{
    if (!o) return SR_EUSAGE;
    o->skip_negotiation = on != 0;
    return SR_OK;
}

/* NULL restores the default; an unknown name is refused here, where the
 * caller can still tell which option was wrong. */
int sr_options_set_protocol(sr_options *o, const char *name)
{
    if (!o || (name && !sr__protocol_find(name))) return SR_EUSAGE;
    return set_str(&o->protocol, name);
}

int sr_options_add_header(sr_options *o, const char *name, const char *value)
{
    sr_header *h;
    char *n, *v;
    if (!o || !name || !*name || !value) return SR_EUSAGE;
    h = realloc(o->headers, (o->nheaders + 1) * sizeof *h);
    if (!h) return SR_ENOMEM;
    o->headers = h;
    n = strdup(name);
    v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return SR_ENOMEM;
    }
    h[o->nheaders].name = n;
    h[o->nheaders].value = v;
    o->nheaders++;
    return SR_OK;
}

int sr_options_set_access_token(sr_options *o, const char *token)
{
    if (!o) return SR_EUSAGE;
    return set_str(&o->access_token, token);
}

int sr_options_set_access_token_fn(sr_options *o, sr_token_fn fn, void *ud)
{
    if (!o) return SR_EUSAGE;
    o->token_fn = fn;
    o->token_ud = fn ? ud : NULL;
    return SR_OK;
}

int sr_options_set_tls(sr_options *o, int verify, const char *ca_file, const char *cert_file,
                       const char *key_file)
{
    char *ca = NULL, *cert = NULL, *key = NULL;
    if (!o) return SR_EUSAGE;
    /* all or nothing: copy first, then swap in */
    if ((ca_file && !(ca = strdup(ca_file))) || (cert_file && !(cert = strdup(cert_file))) ||
        (key_file && !(key = strdup(key_file)))) {
        free(ca);
        free(cert);
        free(key);
        return SR_ENOMEM;
    }
    free((char *)o->tls.ca_file);
    free((char *)o->tls.cert_file);
    free((char *)o->tls.key_file);
    o->tls.ca_file = ca;
    o->tls.cert_file = cert;
    o->tls.key_file = key;
    o->tls.insecure = !verify;
    return SR_OK;
}

int sr_options_set_user_agent(sr_options *o, const char *user_agent)
{
    if (!o) return SR_EUSAGE;
    if (user_agent && strpbrk(user_agent, "\r\n")) return SR_EUSAGE;
    return set_str(&o->user_agent, user_agent);
}

int sr_options_set_proxy(sr_options *o, const char *proxy)
{
    if (!o) return SR_EUSAGE;
    return set_str(&o->proxy, proxy);
}

/* A timeout is a finite positive number of milliseconds: zero or infinity
 * would arm no timer at all, which is never what the caller meant. */
static int set_ms(sr_options *o, double *slot, double ms)
{
    if (!o || !isfinite(ms) || ms <= 0) return SR_EUSAGE;
    *slot = ms;
    return SR_OK;
}

int sr_options_set_server_timeout(sr_options *o, double ms)
{
    return set_ms(o, o ? &o->server_timeout_ms : NULL, ms);
}

int sr_options_set_keepalive_interval(sr_options *o, double ms)
{
    return set_ms(o, o ? &o->keepalive_ms : NULL, ms);
}

int sr_options_set_handshake_timeout(sr_options *o, double ms)
{
    return set_ms(o, o ? &o->handshake_timeout_ms : NULL, ms);
}

/* 0 restores the default (options.h: 0 means unset). */
int sr_options_set_max_message_size(sr_options *o, size_t bytes)
{
    if (!o) return SR_EUSAGE;
    o->max_message_size = bytes;
    return SR_OK;
}

int sr_options_set_log(sr_options *o, sr_log_level level, sr_log_fn fn, void *ud)
{
    if (!o || (int)level < (int)SR_LOG_TRACE || (int)level > (int)SR_LOG_NONE) return SR_EUSAGE;
    o->log = fn;
    o->log_ud = fn ? ud : NULL;
    o->log_level = level;
    o->log_level_set = 1;
    return SR_OK;
}

/* The latest of delays/policy wins: each clears the other. */
int sr_options_set_reconnect_delays(sr_options *o, const double *delays_ms, size_t n)
{
    double *copy = NULL;
    size_t i;
    if (!o || (n && !delays_ms)) return SR_EUSAGE;
    for (i = 0; i < n; i++)
        if (!isfinite(delays_ms[i]) || delays_ms[i] < 0) return SR_EUSAGE;
    if (n) {
        copy = malloc(n * sizeof *copy);
        if (!copy) return SR_ENOMEM;
        memcpy(copy, delays_ms, n * sizeof *copy);
    }
    free(o->delays_ms);
    o->delays_ms = copy;
    o->ndelays = n;
    o->retry_fn = NULL;
    o->retry_ud = NULL;
    o->reconnect = 1;
    return SR_OK;
}

int sr_options_set_reconnect_policy(sr_options *o, sr_retry_fn fn, void *ud)
{
    if (!o || !fn) return SR_EUSAGE;
    free(o->delays_ms);
    o->delays_ms = NULL;
    o->ndelays = 0;
    o->retry_fn = fn;
    o->retry_ud = ud;
    o->reconnect = 1;
    return SR_OK;
}

int sr_options_set_stateful_reconnect(sr_options *o, int on, size_t buffer_size)
{
    if (!o) return SR_EUSAGE;
    o->stateful = on != 0;
    o->stateful_buffer = buffer_size;
    return SR_OK;
}

/* ------------------------------------------------------------------ dup */

static int dup_str(char **dst, const char *src)
{
    if (!src) return 1;
    *dst = strdup(src);
    return *dst != NULL;
}

sr_options *sr__options_dup(const sr_options *o)
{
    sr_options *d;
    size_t i;
    if (!o) return NULL;
    d = calloc(1, sizeof *d);
    if (!d) return NULL;
    /* scalars and callbacks first; every owned pointer is then replaced by a
     * copy (or NULL), so a failure part-way can use sr_options_free */
    *d = *o;
    d->url = d->protocol = d->access_token = NULL;
    d->tls.ca_file = d->tls.cert_file = d->tls.key_file = NULL;
    d->proxy = d->user_agent = NULL;
    d->headers = NULL;
    d->nheaders = 0;
    d->delays_ms = NULL;
    d->ndelays = 0;

    if (!dup_str(&d->url, o->url) || !dup_str(&d->protocol, o->protocol ? o->protocol : "json") ||
        !dup_str(&d->access_token, o->access_token) ||
        !dup_str((char **)&d->tls.ca_file, o->tls.ca_file) ||
        !dup_str((char **)&d->tls.cert_file, o->tls.cert_file) ||
        !dup_str((char **)&d->tls.key_file, o->tls.key_file) || !dup_str(&d->proxy, o->proxy) ||
        !dup_str(&d->user_agent, o->user_agent))
        goto oom;
    if (o->nheaders) {
        d->headers = calloc(o->nheaders, sizeof *d->headers);
        if (!d->headers) goto oom;
        for (i = 0; i < o->nheaders; i++) {
            d->nheaders = i + 1; /* the slot is freed (NULLs included) on failure */
            if (!dup_str((char **)&d->headers[i].name, o->headers[i].name) ||
                !dup_str((char **)&d->headers[i].value, o->headers[i].value))
                goto oom;
        }
    }
    if (!d->transports) d->transports = ALL_TRANSPORTS;
    if (!(d->server_timeout_ms > 0)) d->server_timeout_ms = SR_DEFAULT_SERVER_TIMEOUT_MS;
    if (!(d->keepalive_ms > 0)) d->keepalive_ms = SR_DEFAULT_KEEPALIVE_MS;
    if (!(d->handshake_timeout_ms > 0)) d->handshake_timeout_ms = SR_DEFAULT_HANDSHAKE_TIMEOUT_MS;
    if (!d->max_message_size) d->max_message_size = SR_DEFAULT_MAX_MESSAGE;
    if (!d->log_level_set) {
        d->log_level = SR_LOG_INFORMATION;
        d->log_level_set = 1;
    }
    if (!d->stateful_buffer) d->stateful_buffer = SR_DEFAULT_STATEFUL_BUFFER;
    /* Delays are kept only where they are used: reconnect on, no policy. An
     * empty list there means the official default. */
    if (d->reconnect && !d->retry_fn) {
        const double *src = o->ndelays ? o->delays_ms : default_delays_ms;
        size_t n = o->ndelays ? o->ndelays : sizeof default_delays_ms / sizeof *default_delays_ms;
        d->delays_ms = malloc(n * sizeof *d->delays_ms);
        if (!d->delays_ms) goto oom;
        memcpy(d->delays_ms, src, n * sizeof *d->delays_ms);
        d->ndelays = n;
    }
    return d;
oom:
    sr_options_free(d);
    return NULL;
}
