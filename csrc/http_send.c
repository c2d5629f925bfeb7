/*
 * http_send.c - one POST at a time, batching the send queue (http_send.h).
 *
 * Invariants: the batch buffer stays put while its POST is outstanding
 * (CURLOPT_POSTFIELDS points into it, no copy); it is emptied when the POST
 * is answered and handed back to sr__transport_take as the spare.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "http_send.h"

/* POST batch buffers larger than this are freed after use. */
#define BUF_KEEP (256 * 1024)

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n; /* the answer's body says nothing we use */
}

static void send_complete(sr_http_io *io, sr_http_xfer *x, CURLcode rc)
{
    sr_http_send *s = (sr_http_send *)(void *)x;
    long status = 0;
    char why[CURL_ERROR_SIZE + 160], msg[CURL_ERROR_SIZE + 700];
    (void)io;
    s->active = 0;
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        s->done(s, SR_ECANCELED, 0, "aborted (event loop freed)");
        return;
    }
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
        sr__http_strerror(x->easy, rc, s->err, why, sizeof why);
        snprintf(msg, sizeof msg, "%s send to %s failed: %s", s->label, s->where, why);
        s->done(s, SR_ETRANSPORT, status, msg);
        return;
    }
    if (status / 100 != 2) {
        /* 404: the server dropped the connection; 409: a second POST (a bug
         * here); anything else: the server ended it with an error. */
        snprintf(msg, sizeof msg, "%s send to %s failed: HTTP %ld from the server", s->label,
                 s->where, status);
        s->done(s, SR_ETRANSPORT, status, msg);
        return;
    }
    s->batch.len = 0;
    if (s->batch.cap > BUF_KEEP) sr__buf_free(&s->batch);
    s->done(s, SR_OK, status, NULL);
}

const char *sr__http_send_setup(sr_http_send *s, const char *url, const sr_http_conf *conf,
                                int binary, long connect_timeout_ms)
{
    static const char *const text[] = {"Content-Type: text/plain;charset=UTF-8"};
    static const char *const bin[] = {"Content-Type: application/octet-stream"};
    const char *msg;
    int ok = 1;
    s->x.complete = send_complete;
    s->x.easy = curl_easy_init();
    if (!s->x.easy) return "out of memory";
    msg = sr__http_setup(s->io, &s->x, url, conf, binary ? bin : text, 1, s->err, &s->hdrs);
    if (msg) return msg;
#define SET(opt, val) (ok = ok && curl_easy_setopt(s->x.easy, opt, val) == CURLE_OK)
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_WRITEFUNCTION, discard_body);
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
#undef SET
    return ok ? NULL : "cannot configure the POST request";
}

void sr__http_send_open(sr_http_send *s)
{
    s->first_pending = s->first && s->first_len > 0;
}

int sr__http_send_pump(sr_http_send *s, char *msg, size_t size)
{
    const char *body;
    size_t n;
    if (s->active) return 1;
    if (s->first_pending) {
        s->first_pending = 0;
        body = s->first;
        n = s->first_len;
    } else {
        n = sr__transport_take(s->tp, &s->batch);
        body = s->batch.data;
    }
    if (n == 0) return 0;
    if (curl_easy_setopt(s->x.easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n) != CURLE_OK ||
        curl_easy_setopt(s->x.easy, CURLOPT_POSTFIELDS, body) != CURLE_OK ||
        sr__http_xfer_add(s->io, &s->x) != CURLM_OK) {
        snprintf(msg, size, "%s send to %s failed: cannot start the POST", s->label, s->where);
        return -1;
    }
    s->active = 1;
    s->err[0] = '\0';
    if (s->live) sr__liveness_tx(s->live, sr__liveness_clock());
    return 1;
}

void sr__http_send_stop(sr_http_send *s)
{
    if (s->active) sr__http_xfer_remove(s->io, &s->x);
    s->active = 0;
    sr__http_xfer_cleanup(&s->x);
    sr__buf_free(&s->batch);
}

void sr__http_send_free(sr_http_send *s)
{
    sr__http_xfer_cleanup(&s->x);
    curl_slist_free_all(s->hdrs);
    s->hdrs = NULL;
    sr__buf_free(&s->batch);
}

void sr__http_conf_of(sr_http_conf *conf, const sr_transport_cfg *cfg)
{
    memset(conf, 0, sizeof *conf);
    conf->headers = cfg->headers;
    conf->nheaders = cfg->nheaders;
    conf->tls = cfg->tls;
    conf->proxy = cfg->proxy;
    conf->cookies = cfg->cookies;
}

void *sr__http_dup_bytes(const void *p, size_t n)
{
    char *d = malloc(n ? n : 1);
    if (d && n) memcpy(d, p, n);
    return d;
}

int sr__http_url_dup(const char *url, const char *label, char **url_out, char **where_out,
                     sr_error *err)
{
    const char *rest;
    int tls;
    size_t n;
    char *u, *w;
    *url_out = *where_out = NULL;
    if (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "ws://", 5) == 0)
        tls = 0;
    else if (strncasecmp(url, "https://", 8) == 0 || strncasecmp(url, "wss://", 6) == 0)
        tls = 1;
    else {
        char msg[300];
        snprintf(msg, sizeof msg, "invalid %s URL (http or https expected): %.200s", label, url);
        sr__error_set(err, SR_EUSAGE, "%s", msg);
        return -1;
    }
    rest = strstr(url, "://") + 3;
    n = strlen(rest);
    u = malloc(n + 9);
    if (!u) goto nomem;
    sprintf(u, "%s://%s", tls ? "https" : "http", rest);
    n = strcspn(u, "?#");
    w = malloc(n + 1);
    if (!w) {
        free(u);
        goto nomem;
    }
    memcpy(w, u, n);
    w[n] = '\0';
    *url_out = u;
    *where_out = w;
    return 0;
nomem:
    sr__error_set(err, SR_ENOMEM, "out of memory");
    return -1;
}
