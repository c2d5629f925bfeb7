/*
 * options.h - the inside of the opaque sr_options (options.c owns it).
 *
 * Every string and array here is an owned copy; sr__options_dup makes the
 * connection's own copy, so the user's sr_options can be freed at once.
 * Unset values are 0/NULL; sr__options_dup fills in the defaults, so a
 * connection's copy holds the effective values.
 */
#ifndef SR_OPTIONS_H
#define SR_OPTIONS_H

#include "signalr.h"
#include "tls.h"

#define SR_DEFAULT_SERVER_TIMEOUT_MS 30000.0
#define SR_DEFAULT_KEEPALIVE_MS 15000.0
#define SR_DEFAULT_HANDSHAKE_TIMEOUT_MS 15000.0
#define SR_DEFAULT_MAX_MESSAGE (16u << 20)
#define SR_DEFAULT_STATEFUL_BUFFER 100000u

struct sr_options {
    char *url;
    int transports; /* SR_TRANSPORT_* mask; 0 = all */
    int skip_negotiation;
    char *protocol;     /* NULL = "json" */
    sr_header *headers; /* owned names and values */
    size_t nheaders;
    char *access_token;
    sr_token_fn token_fn;
    void *token_ud;
    sr_tls tls; /* its strings owned */
    char *proxy;
    char *user_agent; /* X-SignalR-User-Agent; NULL = the core's own */
    double server_timeout_ms, keepalive_ms, handshake_timeout_ms; /* 0 = default */
    size_t max_message_size;                                      /* 0 = default */
    sr_log_fn log;
    void *log_ud;
    sr_log_level log_level;
    int log_level_set;

    /* automatic reconnect: off unless reconnect is set */
    int reconnect;
    double *delays_ms; /* owned; used when retry_fn is NULL */
    size_t ndelays;
    sr_retry_fn retry_fn;
    void *retry_ud;

    int stateful;
    size_t stateful_buffer; /* 0 = default */
};

/* A full copy with the defaults filled in; NULL when out of memory. */
sr_options *sr__options_dup(const sr_options *o);

#endif
