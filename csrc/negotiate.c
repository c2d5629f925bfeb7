/*
 * negotiate.c - the negotiate response parser and the URLs derived from the
 * hub URL (TransportProtocols.md, "/negotiate"). No I/O: conn.c makes the
 * request through http.h and hands the body here.
 */
#include "negotiate.h"

#include "error.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int fail(sr_error *err, const char *fmt, ...) SR_PRINTF_LIKE(2, 3);

/* SR_ENEGOTIATE; the status stays as the caller set it: it is the HTTP
 * status of the response whose body was bad. */
static int fail(sr_error *err, const char *fmt, ...)
{
    long status = err ? err->status : 0;
    va_list ap;

    va_start(ap, fmt);
    sr__error_vset(err, SR_ENEGOTIATE, fmt, ap);
    va_end(ap);
    if (err) err->status = status;
    return SR_ENEGOTIATE;
}

void sr__negotiation_clear(sr_negotiation *n)
{
    if (!n) return;
    free(n->connection_id);
    free(n->connection_token);
    free(n->redirect_url);
    free(n->access_token);
    memset(n, 0, sizeof *n);
}

/* Optional string field (null = absent). 0 ok, -1 wrong type, -2 out of
 * memory. No NUL inside: the body is parsed without JSON_ALLOW_NUL. */
static int opt_str(json_t *o, const char *name, char **out)
{
    json_t *f = json_object_get(o, name);
    size_t len;

    *out = NULL;
    if (!f || json_is_null(f)) return 0;
    if (!json_is_string(f)) return -1;
    len = json_string_length(f);
    *out = malloc(len + 1);
    if (!*out) return -2;
    memcpy(*out, json_string_value(f), len + 1);
    return 0;
}

static int str_field(json_t *o, const char *name, char **out, sr_error *err)
{
    int rc = opt_str(o, name, out);

    if (rc == -1) return fail(err, "invalid negotiate response: '%s' is not a string", name);
    if (rc == -2) return fail(err, "out of memory");
    return SR_OK;
}

static int transport_bit(const char *name)
{
    if (strcmp(name, "WebSockets") == 0) return SR_TRANSPORT_WEBSOCKETS;
    if (strcmp(name, "ServerSentEvents") == 0) return SR_TRANSPORT_SSE;
    if (strcmp(name, "LongPolling") == 0) return SR_TRANSPORT_LONG_POLLING;
    return 0; /* a transport we do not know: ignore, as the official clients do */
}

static int parse_transports(json_t *list, sr_negotiation *n, sr_error *err)
{
    json_t *t, *name, *formats, *fmt;
    size_t i, j;

    if (!list || json_is_null(list)) return SR_OK; /* conn.c reports "no usable transport" */
    if (!json_is_array(list))
        return fail(err, "invalid negotiate response: 'availableTransports' is not an array");
    json_array_foreach(list, i, t)
    {
        int bit;
        if (!json_is_object(t))
            return fail(err, "invalid negotiate response: an availableTransports entry is "
                             "not an object");
        name = json_object_get(t, "transport");
        if (!json_is_string(name))
            return fail(err, "invalid negotiate response: an availableTransports entry has no "
                             "'transport' name");
        bit = transport_bit(json_string_value(name));
        if (!bit) continue;
        n->transports |= bit;
        formats = json_object_get(t, "transferFormats");
        if (!json_is_array(formats)) continue;
        json_array_foreach(formats, j, fmt)
        {
            if (json_is_string(fmt) && strcmp(json_string_value(fmt), "Binary") == 0)
                n->transports_binary |= bit;
        }
    }
    return SR_OK;
}

static int parse_object(json_t *o, sr_negotiation *n, sr_error *err)
{
    json_t *f;
    char *text = NULL;
    int rc;

    /* {"error": "..."}: the server refused; its text is the message. */
    if ((rc = str_field(o, "error", &text, err)) != SR_OK) return rc;
    if (text) {
        fail(err, "%s", text);
        free(text);
        return SR_ENEGOTIATE;
    }
    if (json_object_get(o, "ProtocolVersion"))
        return fail(err, "this looks like an ASP.NET SignalR server (not ASP.NET Core); it is "
                         "not supported");

    /* Redirect (Azure SignalR Service): negotiate again at url with the
     * accessToken as bearer token. */
    if ((rc = str_field(o, "url", &n->redirect_url, err)) != SR_OK) return rc;
    if (n->redirect_url) return str_field(o, "accessToken", &n->access_token, err);

    f = json_object_get(o, "negotiateVersion");
    if (f && !json_is_null(f)) {
        if (!json_is_integer(f) || json_integer_value(f) < 0 || json_integer_value(f) > 1000)
            return fail(err, "invalid negotiate response: bad 'negotiateVersion'");
        n->version = (int)json_integer_value(f);
    }
    if ((rc = str_field(o, "connectionId", &n->connection_id, err)) != SR_OK ||
        (rc = str_field(o, "connectionToken", &n->connection_token, err)) != SR_OK)
        return rc;
    if (!n->connection_id) return fail(err, "invalid negotiate response: missing 'connectionId'");
    if (n->version >= 1 && !n->connection_token)
        return fail(err,
                    "invalid negotiate response: missing 'connectionToken' (negotiate "
                    "version %d)",
                    n->version);
    if (n->version == 0 && n->connection_token) {
        /* A version 0 server has no token; ignore one rather than send a
         * value the server does not expect (the TypeScript client does the
         * same by overwriting it with the id). */
        free(n->connection_token);
        n->connection_token = NULL;
    }
    if ((rc = parse_transports(json_object_get(o, "availableTransports"), n, err)) != SR_OK)
        return rc;
    f = json_object_get(o, "useStatefulReconnect");
    n->stateful_reconnect = f && json_is_true(f);
    return SR_OK;
}

int sr__negotiate_parse(const char *body, size_t len, sr_negotiation *out, sr_error *err)
{
    json_error_t je;
    json_t *o;
    int rc;

    /* out is overwritten, never freed: the caller clears a reused one. */
    memset(out, 0, sizeof *out);
    if (!body || len == 0) return fail(err, "invalid negotiate response: empty body");
    o = json_loadb(body, len, JSON_DECODE_ANY, &je);
    if (!o) {
        if (json_error_code(&je) == json_error_out_of_memory) return fail(err, "out of memory");
        return fail(err, "invalid negotiate response: %s (at byte %d)", je.text, je.position);
    }
    if (!json_is_object(o))
        rc = fail(err, "invalid negotiate response: not a JSON object");
    else
        rc = parse_object(o, out, err);
    json_decref(o);
    if (rc != SR_OK) sr__negotiation_clear(out);
    return rc;
}

/* ================================================================== URLs */

/* The hub URL split as base ('?' and '#' excluded), query (without '?') and
 * an ignored fragment. */
typedef struct url_parts {
    const char *base;
    size_t base_len;
    const char *query;
    size_t query_len;
} url_parts;

static void split(const char *url, url_parts *u)
{
    size_t end = strcspn(url, "#");
    size_t q = strcspn(url, "?#");

    u->base = url;
    u->base_len = q;
    u->query = q < end ? url + q + 1 : url + q;
    u->query_len = q < end ? end - q - 1 : 0;
    /* "a=1&" or "&a=1" would give "&&" or "?&" once we append. */
    while (u->query_len && u->query[u->query_len - 1] == '&')
        u->query_len--;
    while (u->query_len && u->query[0] == '&') {
        u->query++;
        u->query_len--;
    }
}

static char *join(const char *scheme, const url_parts *u, size_t skip, const char *path,
                  const char *param, size_t param_len)
{
    size_t base_len = u->base_len - skip;
    size_t len = strlen(scheme) + base_len + strlen(path) + 1 + u->query_len + 1 + param_len + 1;
    char *s = malloc(len), *p;

    if (!s) return NULL;
    p = s;
    memcpy(p, scheme, strlen(scheme));
    p += strlen(scheme);
    memcpy(p, u->base + skip, base_len);
    p += base_len;
    memcpy(p, path, strlen(path));
    p += strlen(path);
    if (u->query_len || param_len) *p++ = '?';
    memcpy(p, u->query, u->query_len);
    p += u->query_len;
    if (u->query_len && param_len) *p++ = '&';
    memcpy(p, param, param_len);
    p += param_len;
    *p = '\0';
    return s;
}

char *sr__negotiate_url(const char *hub_url, int stateful)
{
    const char *param =
        stateful ? "negotiateVersion=1&useStatefulReconnect=true" : "negotiateVersion=1";
    url_parts u;

    if (!hub_url) return NULL;
    split(hub_url, &u);
    /* "http://h/hub/" -> "http://h/hub/negotiate", not ".../hub//negotiate". */
    if (u.base_len && u.base[u.base_len - 1] == '/') u.base_len--;
    return join("", &u, 0, "/negotiate", param, strlen(param));
}

/* RFC 3986 unreserved characters pass; everything else is %XX. */
static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

char *sr__transport_url(const char *hub_url, const char *token, int ws)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *scheme = "";
    size_t skip = 0, n = 0, i;
    char *param = NULL, *s;
    url_parts u;

    if (!hub_url) return NULL;
    split(hub_url, &u);
    if (ws) {
        if (strncasecmp(hub_url, "http://", 7) == 0) {
            scheme = "ws://";
            skip = 7;
        } else if (strncasecmp(hub_url, "https://", 8) == 0) {
            scheme = "wss://";
            skip = 8;
        }
    }
    if (token) {
        size_t tlen = strlen(token);
        param = malloc(3 + tlen * 3 + 1);
        if (!param) return NULL;
        memcpy(param, "id=", 3);
        n = 3;
        for (i = 0; i < tlen; i++) {
            unsigned char c = (unsigned char)token[i];
            if (unreserved(c)) {
                param[n++] = (char)c;
            } else {
                param[n++] = '%';
                param[n++] = hex[c >> 4];
                param[n++] = hex[c & 15];
            }
        }
        param[n] = '\0';
    }
    s = join(scheme, &u, skip, "", param ? param : "", n);
    free(param);
    return s;
}
