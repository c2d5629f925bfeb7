/*
 * negotiate.h - negotiate response parsing and URL building (no I/O).
 * The HTTP request itself is made by conn.c through http.h.
 */
#ifndef SR_NEGOTIATE_H
#define SR_NEGOTIATE_H

#include "signalr.h"

typedef struct sr_negotiation {
    char *connection_id;    /* owned; NULL if absent */
    char *connection_token; /* owned; NULL for version 0 (use connection_id) */
    int version;
    int transports;         /* SR_TRANSPORT_* mask offered by the server */
    int transports_binary;  /* subset of transports that support "Binary" */
    int stateful_reconnect; /* useStatefulReconnect: true */
    char *redirect_url;     /* owned; set for a redirect response */
    char *access_token;     /* owned; set with redirect_url, may be NULL */
} sr_negotiation;

void sr__negotiation_clear(sr_negotiation *n);

/* Parse a negotiate response body. Returns SR_OK, or SR_ENEGOTIATE with
 * err->message: for {"error": "..."} that text; for an old ASP.NET SignalR
 * server (a "ProtocolVersion" field) a message saying it is not supported;
 * for invalid JSON / missing fields a clear message. */
int sr__negotiate_parse(const char *body, size_t len, sr_negotiation *out, sr_error *err);

/* URL helpers; results are malloc'd (NULL on out of memory). */
/* "<base>/negotiate?<base query>&negotiateVersion=1[&useStatefulReconnect=true]" */
char *sr__negotiate_url(const char *hub_url, int stateful);
/* Hub URL with "id=<token>" added to its query (token URL-encoded); when
 * ws is set, http->ws and https->wss. token may be NULL (no id). */
char *sr__transport_url(const char *hub_url, const char *token, int ws);

#endif
