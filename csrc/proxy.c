/*
 * proxy.c - the proxy decision (the `proxy` option, else the environment as
 * libcurl reads it) and the parsing of a proxy URL, with libcurl's URL API.
 * libcurl applies the same rules to the HTTP requests by itself; these
 * serve the WebSocket transport, whose tunnel must go where they go.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

/* libcurl's default port for a proxy URL without one (CURLOPT_PROXYPORT). */
#define DEFAULT_PROXY_PORT 1080

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The address in a no_proxy entry, with an optional /bits suffix, against
 * an address of family af. libcurl: no bits, or all of them, is equality. */
static int cidr_match(int af, const char *addr, const char *entry, size_t len)
{
    unsigned char a[16], n[16];
    char buf[128], *slash;
    unsigned bits, max = af == AF_INET ? 32 : 128, i;
    if (len >= sizeof buf) return 0;
    memcpy(buf, entry, len);
    buf[len] = '\0';
    slash = strchr(buf, '/');
    bits = max;
    if (slash) {
        *slash = '\0';
        bits = (unsigned)atoi(slash + 1);
        if (bits == 0) bits = max;
    }
    if (bits > max) return 0;
    if (inet_pton(af, addr, a) != 1 || inet_pton(af, buf, n) != 1) return 0;
    for (i = 0; i < bits / 8; i++)
        if (a[i] != n[i]) return 0;
    if (bits % 8) {
        unsigned char mask = (unsigned char)(0xff << (8 - bits % 8));
        if ((a[i] ^ n[i]) & mask) return 0;
    }
    return 1;
}

int sr__proxy_bypassed(const char *host, const char *no_proxy)
{
    char ip6[64];
    unsigned char tmp[16];
    int af = 0;
    size_t hlen;
    const char *p = no_proxy;

    if (!host || !*host || !no_proxy || !*no_proxy) return 0;
    if (strcmp(no_proxy, "*") == 0) return 1;
    hlen = strlen(host);
    if (host[0] == '[') {
        const char *end = strchr(host, ']');
        if (!end || (size_t)(end - host - 1) >= sizeof ip6) return 0;
        memcpy(ip6, host + 1, (size_t)(end - host - 1));
        ip6[end - host - 1] = '\0';
        host = ip6;
        af = AF_INET6;
    } else if (inet_pton(AF_INET, host, tmp) == 1) {
        af = AF_INET;
    } else if (inet_pton(AF_INET6, host, tmp) == 1) {
        af = AF_INET6;
    } else if (host[hlen - 1] == '.') {
        hlen--; /* "example.com." is example.com */
    }

    while (*p) {
        const char *tok;
        size_t tlen = 0;
        while (is_blank(*p))
            p++;
        tok = p;
        while (*p && !is_blank(*p) && *p != ',')
            p++, tlen++;
        if (tlen) {
            if (af) {
                if (cidr_match(af, host, tok, tlen)) return 1;
            } else {
                if (tok[tlen - 1] == '.') tlen--;
                if (tlen && tok[0] == '.') tok++, tlen--;
                /* "example.com" covers example.com and www.example.com,
                 * not notexample.com. */
                if (tlen == hlen && strncasecmp(tok, host, hlen) == 0) return 1;
                if (tlen && tlen < hlen && host[hlen - tlen - 1] == '.' &&
                    strncasecmp(tok, host + hlen - tlen, tlen) == 0)
                    return 1;
            }
        }
        /* libcurl 7.88 takes blanks as separators too (with a warning). */
        while (is_blank(*p) || *p == ',')
            p++;
    }
    return 0;
}

/* The URL's scheme (lower case) and host; -1 when it is not a URL. */
static int url_parts(const char *url, char **scheme, char **host)
{
    CURLU *u = curl_url();
    int ok;
    char *s;
    *scheme = *host = NULL;
    if (!u) return -1;
    ok = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
         curl_url_get(u, CURLUPART_SCHEME, scheme, 0) == CURLUE_OK &&
         curl_url_get(u, CURLUPART_HOST, host, 0) == CURLUE_OK;
    curl_url_cleanup(u);
    if (!ok) {
        curl_free(*scheme);
        curl_free(*host);
        *scheme = *host = NULL;
        return -1;
    }
    for (s = *scheme; *s; s++)
        *s = (char)tolower((unsigned char)*s);
    return 0;
}

int sr__proxy_pick(const char *url, const char *option, char **out)
{
    char *scheme, *host, name[40];
    const char *value, *no_proxy;
    size_t i;
    int use;

    *out = NULL;
    if (option) {
        if (!*option) return 0; /* "": no proxy, whatever the environment says */
        *out = strdup(option);
        return *out ? 0 : -1;
    }
    if (!url || url_parts(url, &scheme, &host) != 0) return 0;
    /* The WebSocket goes where the HTTP requests of its scheme go. */
    snprintf(name, sizeof name, "%s_proxy",
             strcmp(scheme, "ws") == 0    ? "http"
             : strcmp(scheme, "wss") == 0 ? "https"
                                          : scheme);
    curl_free(scheme);
    value = getenv(name);
    /* Never HTTP_PROXY: a CGI program gets it from a request header. */
    if (!value && strcmp(name, "http_proxy") != 0) {
        for (i = 0; name[i]; i++)
            name[i] = (char)toupper((unsigned char)name[i]);
        value = getenv(name);
    }
    if (!value) value = getenv("all_proxy");
    if (!value) value = getenv("ALL_PROXY");
    no_proxy = getenv("no_proxy");
    if (!no_proxy) no_proxy = getenv("NO_PROXY");
    use = value && *value && !sr__proxy_bypassed(host, no_proxy);
    curl_free(host);
    if (use && !(*out = strdup(value))) return -1;
    return 0;
}

void sr__proxy_free(sr_proxy *p)
{
    if (!p) return;
    free(p->host);
    free(p->userpass);
    free(p->shown);
    memset(p, 0, sizeof *p);
}

/* curl_url_get into a malloc'd copy; 1, 0 when the part is absent, -1 on
 * any other failure. */
static int get_part(CURLU *u, CURLUPart what, unsigned flags, char **out)
{
    char *v = NULL;
    CURLUcode rc = curl_url_get(u, what, &v, flags);
    *out = NULL;
    if (rc == CURLUE_NO_USER || rc == CURLUE_NO_PASSWORD || rc == CURLUE_NO_PORT) return 0;
    if (rc != CURLUE_OK) return -1;
    *out = strdup(v);
    curl_free(v);
    return *out ? 1 : -1;
}

int sr__proxy_parse(const char *url, sr_proxy *p, char *err, size_t errsize)
{
    CURLU *u;
    CURLUcode rc;
    char *full = NULL, *scheme = NULL, *host = NULL, *port = NULL, *user = NULL, *pass = NULL;
    int ok = 0, r;

    memset(p, 0, sizeof *p);
    if (!strstr(url, "://")) {
        /* libcurl takes a proxy without a scheme as http:// */
        full = malloc(strlen(url) + 8);
        if (!full) goto nomem;
        sprintf(full, "http://%s", url);
        url = full;
    }
    u = curl_url();
    if (!u) goto nomem;
    rc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
    if (rc != CURLUE_OK) {
        /* The URL may hold credentials: say what is wrong, not what it is. */
        snprintf(err, errsize, "the proxy URL is not valid: %s", curl_url_strerror(rc));
        goto out;
    }
    if (get_part(u, CURLUPART_SCHEME, 0, &scheme) != 1 ||
        get_part(u, CURLUPART_HOST, 0, &host) != 1 || get_part(u, CURLUPART_PORT, 0, &port) < 0) {
        snprintf(err, errsize, "%s", "the proxy URL has no host");
        goto out;
    }
    if (strcasecmp(scheme, "http") != 0) {
        snprintf(err, errsize,
                 "WebSockets cannot go through a %s:// proxy (only an http:// proxy, with CONNECT)",
                 scheme);
        goto out;
    }
    r = get_part(u, CURLUPART_USER, CURLU_URLDECODE, &user);
    if (r >= 0) r = get_part(u, CURLUPART_PASSWORD, CURLU_URLDECODE, &pass);
    if (r < 0) {
        snprintf(err, errsize, "%s", "the proxy credentials cannot be decoded");
        goto out;
    }
    if (host[0] == '[') {
        size_t n = strlen(host);
        memmove(host, host + 1, n - 1);
        host[n - 2] = '\0';
        if (strchr(host, '%')) *strchr(host, '%') = '\0'; /* no zone id */
    }
    p->port = port ? atoi(port) : DEFAULT_PROXY_PORT;
    if (user || pass) {
        size_t n = (user ? strlen(user) : 0) + (pass ? strlen(pass) : 0) + 2;
        if (!(p->userpass = malloc(n))) goto nomem_u;
        snprintf(p->userpass, n, "%s:%s", user ? user : "", pass ? pass : "");
    }
    p->shown = malloc(strlen(host) + 32);
    if (!p->shown) goto nomem_u;
    sprintf(p->shown, strchr(host, ':') ? "http://[%s]:%d" : "http://%s:%d", host, p->port);
    p->host = host;
    host = NULL;
    ok = 1;
    goto out;
nomem_u:
    snprintf(err, errsize, "%s", "out of memory");
out:
    curl_url_cleanup(u);
    free(full);
    free(scheme);
    free(host);
    free(port);
    free(user);
    free(pass);
    if (!ok) sr__proxy_free(p);
    return ok ? 0 : -1;
nomem:
    free(full);
    snprintf(err, errsize, "%s", "out of memory");
    return -1;
}
