/*
 * cookies.c - the per-connection cookie jar (cookies.h): a libcurl share
 * of cookies with its locks, and the Cookie header for a WebSocket upgrade
 * taken from it.
 *
 * libcurl does the cookie work (parsing Set-Cookie, replacing, expiring,
 * choosing what a request sends). libwebsockets has no cookie engine, so
 * for the upgrade the jar's cookies are listed (CURLINFO_COOKIELIST, the
 * Netscape-format lines libcurl writes) and the ones RFC 6265 section 5.4
 * would send to that URL are picked: domain, path, secure, expiry. The URL
 * itself is split by libcurl's URL parser.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cookies.h"
#include "http.h"

#define JAR_LOCKS 3

struct sr_cookie_jar {
    CURLSH *share;
    int refs; /* __atomic */
    /* One lock per kind of shared data (libcurl may hold several kinds at
     * once). libcurl asks only for the kinds the share shares, cookies, and
     * the share itself: a lock each, and one for any other kind, rather
     * than one per kind it knows (40 bytes each, in every connection). */
    pthread_mutex_t mu[JAR_LOCKS];
};

static pthread_mutex_t *jar_mutex(sr_cookie_jar *j, curl_lock_data data)
{
    return &j->mu[data == CURL_LOCK_DATA_SHARE ? 0 : data == CURL_LOCK_DATA_COOKIE ? 1 : 2];
}

static void jar_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
    (void)h;
    (void)access;
    pthread_mutex_lock(jar_mutex(ud, data));
}

static void jar_unlock(CURL *h, curl_lock_data data, void *ud)
{
    (void)h;
    pthread_mutex_unlock(jar_mutex(ud, data));
}

sr_cookie_jar *sr__cookie_jar_new(void)
{
    sr_cookie_jar *j;
    int i, n = 0;
    /* Before any libcurl call: curl_easy_init would otherwise initialise
     * libcurl itself, which is not thread-safe. */
    if (sr__http_curl_init() != 0) return NULL;
    j = calloc(1, sizeof *j);
    if (!j) return NULL;
    for (n = 0; n < JAR_LOCKS; n++)
        if (pthread_mutex_init(&j->mu[n], NULL) != 0) goto fail;
    j->share = curl_share_init();
    if (!j->share || curl_share_setopt(j->share, CURLSHOPT_LOCKFUNC, jar_lock) != CURLSHE_OK ||
        curl_share_setopt(j->share, CURLSHOPT_UNLOCKFUNC, jar_unlock) != CURLSHE_OK ||
        curl_share_setopt(j->share, CURLSHOPT_USERDATA, (void *)j) != CURLSHE_OK ||
        curl_share_setopt(j->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE) != CURLSHE_OK)
        goto fail;
    j->refs = 1;
    return j;
fail:
    if (j->share) curl_share_cleanup(j->share);
    for (i = 0; i < n; i++)
        pthread_mutex_destroy(&j->mu[i]);
    free(j);
    return NULL;
}

void sr__cookie_jar_ref(sr_cookie_jar *j)
{
    __atomic_add_fetch(&j->refs, 1, __ATOMIC_ACQ_REL);
}

void sr__cookie_jar_unref(sr_cookie_jar *j)
{
    int i;
    if (!j || __atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    curl_share_cleanup(j->share);
    for (i = 0; i < JAR_LOCKS; i++)
        pthread_mutex_destroy(&j->mu[i]);
    free(j);
}

int sr__cookie_jar_attach(sr_cookie_jar *j, CURL *e)
{
    /* Sharing gives the handle the jar; an empty cookie file ("" reads
     * nothing) is libcurl's way to switch its cookie engine on, without
     * which Set-Cookie is ignored. */
    return curl_easy_setopt(e, CURLOPT_SHARE, j->share) == CURLE_OK &&
                   curl_easy_setopt(e, CURLOPT_COOKIEFILE, "") == CURLE_OK
               ? 0
               : -1;
}

/* ------------------------------------------------- the upgrade's cookies */

/* One cookie of the jar, its fields pointing into the listed line. */
typedef struct cookie {
    const char *name, *value;
    size_t path_len;
} cookie;

/* RFC 6265 5.1.3: the host is the domain, or (a Domain attribute was
 * given) ends with "." and the domain. */
static int domain_match(const char *host, const char *domain, int tail)
{
    size_t hl = strlen(host), dl = strlen(domain);
    if (strcasecmp(host, domain) == 0) return 1;
    return tail && hl > dl && host[hl - dl - 1] == '.' && strcasecmp(host + hl - dl, domain) == 0;
}

/* RFC 6265 5.1.4. */
static int path_match(const char *req, const char *path)
{
    size_t n = strlen(path);
    if (strncmp(req, path, n) != 0) return 0;
    return req[n] == '\0' || path[n - 1] == '/' || req[n] == '/';
}

/* Longer paths first (RFC 6265 5.4); the list carries no creation time,
 * so equal paths go by name, which keeps the header the same every time. */
static int longer_path_first(const void *a, const void *b)
{
    const cookie *x = a, *y = b;
    if (x->path_len != y->path_len) return x->path_len < y->path_len ? 1 : -1;
    return strcmp(x->name, y->name);
}

/* Split one CURLINFO_COOKIELIST line in place (tab-separated: domain,
 * include subdomains, path, secure, expires, name, value) and say whether
 * it goes to the request. */
static int cookie_fits(char *line, const char *host, const char *path, int secure, time_t now,
                       cookie *out)
{
    char *f[7], *p = line;
    int i;
    long long expires;
    for (i = 0; i < 7; i++) {
        f[i] = p;
        p = i < 6 ? strchr(p, '\t') : NULL;
        if (i < 6) {
            if (!p) return 0;
            *p++ = '\0';
        }
    }
    if (strncmp(f[0], "#HttpOnly_", 10) == 0) f[0] += 10; /* HttpOnly only hides it from scripts */
    if (f[0][0] == '.') f[0]++;
    expires = strtoll(f[4], NULL, 10);
    if (expires != 0 && expires <= (long long)now) return 0; /* 0: a session cookie */
    if (strcmp(f[3], "TRUE") == 0 && !secure) return 0;
    if (!domain_match(host, f[0], strcmp(f[1], "TRUE") == 0) || !path_match(path, f[2])) return 0;
    out->name = f[5];
    out->value = f[6];
    out->path_len = strlen(f[2]);
    return 1;
}

/* The URL's host (without IPv6 brackets), path and whether it is a secure
 * context; 0, or -1. *host and *path are curl_free'd by the caller. */
static int split_url(const char *url, char **host, char **path, int *secure)
{
    CURLU *u = curl_url();
    char *scheme = NULL;
    int ok;
    *host = *path = NULL;
    if (!u) return -1;
    ok = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
         curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
         curl_url_get(u, CURLUPART_HOST, host, 0) == CURLUE_OK &&
         curl_url_get(u, CURLUPART_PATH, path, 0) == CURLUE_OK;
    curl_url_cleanup(u);
    if (ok) {
        char *h = *host;
        size_t n = strlen(h);
        if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
            memmove(h, h + 1, n - 2);
            h[n - 2] = '\0';
        }
        /* As libcurl decides for its own requests: TLS, or the loopback
         * names, which browsers also treat as secure contexts. */
        *secure = strcasecmp(scheme, "wss") == 0 || strcasecmp(scheme, "https") == 0 ||
                  strcasecmp(h, "localhost") == 0 || strcmp(h, "127.0.0.1") == 0 ||
                  strcmp(h, "::1") == 0;
    }
    curl_free(scheme);
    return ok ? 0 : -1;
}

char *sr__cookie_header(sr_cookie_jar *j, const char *url, int *empty)
{
    struct curl_slist *list = NULL, *l;
    cookie *v = NULL;
    size_t n = 0, cap = 0, len = 0, i;
    char *host = NULL, *path = NULL, *out = NULL, *p;
    int secure = 0;
    time_t now = time(NULL);
    CURL *e;
    int listed = 0;

    if (empty) *empty = 0;
    if (!j || !url || split_url(url, &host, &path, &secure) != 0) goto done;
    e = curl_easy_init();
    if (!e) goto done;
    if (sr__cookie_jar_attach(j, e) == 0)
        listed = curl_easy_getinfo(e, CURLINFO_COOKIELIST, &list) == CURLE_OK;
    curl_easy_cleanup(e);
    if (empty) *empty = listed && !list;
    for (l = list; l; l = l->next) {
        cookie c;
        if (!cookie_fits(l->data, host, path[0] ? path : "/", secure, now, &c)) continue;
        if (n == cap) {
            cookie *nv = realloc(v, (cap = cap ? cap * 2 : 8) * sizeof *v);
            if (!nv) goto done;
            v = nv;
        }
        v[n++] = c;
        len += strlen(c.name) + 1 + strlen(c.value) + 2;
    }
    if (!n) goto done;
    qsort(v, n, sizeof *v, longer_path_first);
    out = p = malloc(len + 1);
    if (!out) goto done;
    for (i = 0; i < n; i++)
        p += sprintf(p, "%s%s=%s", i ? "; " : "", v[i].name, v[i].value);
done:
    free(v);
    curl_slist_free_all(list);
    curl_free(host);
    curl_free(path);
    return out;
}
