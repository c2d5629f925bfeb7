/*
 * cookies.h - a connection's cookie jar (cookies.c owns it).
 *
 * libcurl's cookie engine, shared (a CURLSH of CURL_LOCK_DATA_COOKIE) by
 * every request of one connection: negotiate, the Server-Sent Events and
 * Long Polling requests. libcurl parses Set-Cookie, stores, expires and
 * sends cookies there. The WebSocket upgrade (libwebsockets) gets its
 * Cookie header from the same jar through sr__cookie_header.
 *
 * The jar is reference counted: the connection holds one for its whole
 * life (so it survives reconnects, as the official clients' per-connection
 * cookie container does) and every easy handle attached to it holds one
 * until it is cleaned up (http_io.h: sr__http_xfer_cleanup), since libcurl
 * cannot free a share still in use. Any thread; the share's data is locked.
 */
#ifndef SR_COOKIES_H
#define SR_COOKIES_H

#include <curl/curl.h>

typedef struct sr_cookie_jar sr_cookie_jar;

/* A new, empty jar with one reference; NULL when out of memory. */
sr_cookie_jar *sr__cookie_jar_new(void);
void sr__cookie_jar_ref(sr_cookie_jar *j);
/* The last reference frees the jar (no handle may use it any more). */
void sr__cookie_jar_unref(sr_cookie_jar *j);

/* Make the easy handle e read and store its cookies in the jar. 0, or -1
 * (the handle is left without cookies). The caller takes a reference for
 * the handle. */
int sr__cookie_jar_attach(sr_cookie_jar *j, CURL *e);

/* The value of the Cookie header for a request to url (ws, wss, http or
 * https): the jar's cookies whose domain, path and secure flag match it and
 * that have not expired, longest path first, as "a=1; b=2". malloc'd; NULL
 * when none match (or out of memory). *empty (when not NULL) is set to 1
 * when the jar was listed and holds no cookie at all, else 0. No network. */
char *sr__cookie_header(sr_cookie_jar *j, const char *url, int *empty);

#endif
