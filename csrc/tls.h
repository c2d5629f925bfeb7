/*
 * tls.h - a connection's TLS settings, the one struct that reaches both
 * libcurl (http.c: negotiate, Server-Sent Events, Long Polling) and
 * libwebsockets (ws_transport.c), so the two can never disagree.
 *
 * options.c owns the strings of a connection's copy; the transports copy
 * what they keep. A NULL sr_tls pointer means the defaults: verify against
 * the system's CAs, no client certificate.
 */
#ifndef SR_TLS_H
#define SR_TLS_H

typedef struct sr_tls {
    /* Certificate and host name verification off: sr_options_set_tls with
     * verify 0 (Lua: tls = { verify = false }). A connection logs a warning
     * at every start while it is set. */
    int insecure;
    const char *ca_file;   /* PEM bundle to trust instead of the system's; NULL: system */
    const char *cert_file; /* client certificate (PEM); NULL: none */
    const char *key_file;  /* its private key (PEM); NULL: none */
} sr_tls;

#endif
