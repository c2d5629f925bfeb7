/*
 * proxy.h - which proxy a request goes through, and what a proxy URL says.
 *
 * libcurl picks the proxy for the HTTP requests (negotiate, Server-Sent
 * Events, Long Polling) itself; the WebSocket transport asks here, and gets
 * the same answer: the `proxy` option when set ("" meaning none, as
 * CURLOPT_PROXY), else the environment read by libcurl 7.88's rules
 * (<scheme>_proxy, upper case only when the lower-case one is unset and
 * never HTTP_PROXY, then all_proxy/ALL_PROXY; no_proxy/NO_PROXY).
 */
#ifndef SR_PROXY_H
#define SR_PROXY_H

#include <stddef.h>

/* A proxy URL taken apart for an HTTP CONNECT tunnel. */
typedef struct sr_proxy {
    char *host;     /* name or address, IPv6 brackets removed */
    int port;       /* libcurl's default when the URL has none: 1080 */
    char *userpass; /* "user:password" percent-decoded, or NULL */
    char *shown;    /* "http://host:port": for messages, without credentials */
} sr_proxy;

/* The proxy for a request to url (http, https, ws or wss; ws goes where
 * http would, wss where https would). option is the `proxy` option: NULL
 * for the environment, "" for none. 0 with *out a malloc'd proxy URL, or
 * NULL for a direct connection; -1 when out of memory. */
int sr__proxy_pick(const char *url, const char *option, char **out);

/* libcurl's no_proxy test: 1 when host (a name, an IPv4 address, or an
 * IPv6 address with or without brackets) is in the no_proxy list. */
int sr__proxy_bypassed(const char *host, const char *no_proxy);

/* Take a proxy URL apart ("host:port" means http://host:port). 0, or -1
 * with a message in err (which never holds the credentials): a malformed
 * URL, or a kind of proxy other than http://, which a CONNECT tunnel
 * cannot use. */
int sr__proxy_parse(const char *url, sr_proxy *p, char *err, size_t errsize);
void sr__proxy_free(sr_proxy *p);

#endif
