/*
 * test_ws.c - the WebSocket transport against a libwebsockets server run on
 * a thread of this process (127.0.0.1, port 0), and a raw socket server for
 * the cases an lws server will not produce (an HTTP 404 on the upgrade, a
 * server that accepts and never answers); the resolver threads under a fake
 * slow DNS (SR_TEST_RESOLVE_DELAY_MS); the generic drain upcall over an
 * in-memory kind and over WebSockets.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "buf.h"
#include "harness.h"
#include "loop.h"
#include "transport.h"
#include "transport_kind.h"

#define HANDSHAKE "{\"protocol\":\"json\",\"version\":1}\x1e"
#define PING "{\"type\":6}\x1e"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ============================================================ lws server */

enum {
    SRV_ECHO,          /* echo every message */
    SRV_SILENT,        /* accept the upgrade, never send */
    SRV_HS_THEN_QUIET, /* answer the handshake with {}\x1e, then never send */
    SRV_CLOSE,         /* close with 1011 "bye" after the first message */
    SRV_FLOOD          /* after the first message send flood_total bytes */
};

typedef struct srv {
    struct lws_context *ctx;
    pthread_t th;
    int port;
    int stop;
    pthread_mutex_t mu;
    /* Behaviour, set before clients connect. */
    int mode;
    size_t flood_total;
    /* What the server saw (mu). */
    sr_buf got;   /* all payload bytes, in order */
    sr_buf first; /* the first message */
    int nmsgs, npings, nbinary, ntext, conns, conns_total;
    char uri[256], args[2560], host[256], auth[256], xtest[64], origin[128];
} srv;

typedef struct pss {
    unsigned char *q; /* LWS_PRE + queued bytes to send */
    size_t qlen, qcap;
    sr_buf cur; /* the message being received */
    int nmsg;
    size_t flood_sent;
    int flooding;
} pss;

static void pss_queue(pss *p, const void *data, size_t len)
{
    if (LWS_PRE + p->qlen + len > p->qcap) {
        size_t cap = p->qcap ? p->qcap : 4096;
        while (cap < LWS_PRE + p->qlen + len)
            cap *= 2;
        p->q = realloc(p->q, cap);
        p->qcap = cap;
    }
    memcpy(p->q + LWS_PRE + p->qlen, data, len);
    p->qlen += len;
}

static int srv_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    srv *s = lws_context_user(lws_get_context(wsi));
    pss *p = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(p, 0, sizeof *p);
        pthread_mutex_lock(&s->mu);
        s->conns++;
        s->conns_total++;
        lws_hdr_copy(wsi, s->uri, sizeof s->uri, WSI_TOKEN_GET_URI);
        lws_hdr_copy(wsi, s->args, sizeof s->args, WSI_TOKEN_HTTP_URI_ARGS);
        lws_hdr_copy(wsi, s->host, sizeof s->host, WSI_TOKEN_HOST);
        lws_hdr_copy(wsi, s->auth, sizeof s->auth, WSI_TOKEN_HTTP_AUTHORIZATION);
        lws_hdr_copy(wsi, s->origin, sizeof s->origin, WSI_TOKEN_ORIGIN);
        lws_hdr_custom_copy(wsi, s->xtest, sizeof s->xtest, "x-test:", 7);
        pthread_mutex_unlock(&s->mu);
        break;
    case LWS_CALLBACK_RECEIVE: {
        int final = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
        int binary = lws_frame_is_binary(wsi);
        pthread_mutex_lock(&s->mu);
        sr__buf_append(&s->got, in, len);
        pthread_mutex_unlock(&s->mu);
        sr__buf_append(&p->cur, in, len);
        if (!final) break;
        pthread_mutex_lock(&s->mu);
        s->nmsgs++;
        if (binary)
            s->nbinary++;
        else
            s->ntext++;
        if (p->nmsg == 0 && s->first.len == 0) sr__buf_append(&s->first, p->cur.data, p->cur.len);
        if (p->cur.len == sizeof PING - 1 && memcmp(p->cur.data, PING, p->cur.len) == 0)
            s->npings++;
        pthread_mutex_unlock(&s->mu);
        p->nmsg++;
        switch (s->mode) {
        case SRV_ECHO:
            pss_queue(p, p->cur.data, p->cur.len);
            lws_callback_on_writable(wsi);
            break;
        case SRV_HS_THEN_QUIET:
            if (p->nmsg == 1) {
                pss_queue(p, "{}\x1e", 3);
                lws_callback_on_writable(wsi);
            }
            break;
        case SRV_CLOSE:
            sr__buf_free(&p->cur);
            lws_close_reason(wsi, (enum lws_close_status)1011, (unsigned char *)"bye", 3);
            return -1;
        case SRV_FLOOD:
            if (p->nmsg == 1) {
                pss_queue(p, "{}\x1e", 3);
                p->flooding = 1;
                lws_callback_on_writable(wsi);
            }
            break;
        default:
            break;
        }
        p->cur.len = 0;
        break;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (p->qlen) {
            if (lws_write(wsi, p->q + LWS_PRE, p->qlen, LWS_WRITE_TEXT) < 0) return -1;
            p->qlen = 0;
            if (p->flooding) lws_callback_on_writable(wsi);
        } else if (p->flooding && p->flood_sent < s->flood_total) {
            static unsigned char pattern[65536 + 251];
            unsigned char buf[LWS_PRE + 65536];
            size_t n = s->flood_total - p->flood_sent, i;
            if (!pattern[1])
                for (i = 0; i < sizeof pattern; i++)
                    pattern[i] = (unsigned char)(i % 251);
            if (n > 65536) n = 65536;
            memcpy(buf + LWS_PRE, pattern + p->flood_sent % 251, n);
            if (lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_BINARY) < 0) return -1;
            p->flood_sent += n;
            lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_CLOSED:
        pthread_mutex_lock(&s->mu);
        s->conns--;
        pthread_mutex_unlock(&s->mu);
        free(p->q);
        p->q = NULL;
        sr__buf_free(&p->cur);
        break;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols srv_protocols[] = {
    {"echo", srv_cb, sizeof(pss), 65536, 0, NULL, 0}, {NULL, NULL, 0, 0, 0, NULL, 0}};

static void *srv_main(void *arg)
{
    srv *s = arg;
    for (;;) {
        int stop;
        pthread_mutex_lock(&s->mu);
        stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop || lws_service(s->ctx, 0) < 0) break;
    }
    lws_context_destroy(s->ctx);
    return NULL;
}

/* The SSL global init is left to the transport's contexts (see the note on
 * g_live_ctx in ws_transport.c; main keeps one alive): the server's vhost
 * only asks for its TLS context. */
static srv *srv_start4(int mode, const char *cert, const char *key, int v4only)
{
    struct lws_context_creation_info info;
    struct lws_vhost *vh;
    srv *s = calloc(1, sizeof *s);
    memset(&info, 0, sizeof info);
    pthread_mutex_init(&s->mu, NULL);
    s->mode = mode;
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.user = s;
    info.gid = info.uid = -1;
    info.pt_serv_buf_size = 65536;
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        free(s);
        return NULL;
    }
    info.port = 0;
    info.protocols = srv_protocols;
    info.options = 0;
    if (v4only) {
        info.iface = "127.0.0.1";
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    }
    if (cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cert;
        info.ssl_private_key_filepath = key;
    }
    vh = lws_create_vhost(s->ctx, &info);
    if (!vh) {
        lws_context_destroy(s->ctx);
        free(s);
        return NULL;
    }
    s->port = lws_get_vhost_listen_port(vh);
    pthread_create(&s->th, NULL, srv_main, s);
    return s;
}

static srv *srv_start(int mode, const char *cert, const char *key)
{
    return srv_start4(mode, cert, key, 0);
}

static void srv_stop(srv *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_mutex_unlock(&s->mu);
    lws_cancel_service(s->ctx);
    pthread_join(s->th, NULL);
    sr__buf_free(&s->got);
    sr__buf_free(&s->first);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static size_t srv_got(srv *s)
{
    size_t n;
    pthread_mutex_lock(&s->mu);
    n = s->got.len;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static int srv_int(srv *s, const int *field)
{
    int v;
    pthread_mutex_lock(&s->mu);
    v = *field;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* ============================================================ raw server */

enum { RAW_404, RAW_HANG };

typedef struct raw {
    int fd, port, mode, stop;
    pthread_t th;
    int clients[16];
    int nclients;
} raw;

static void *raw_main(void *arg)
{
    raw *r = arg;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        struct pollfd pf = {r->fd, POLLIN, 0};
        if (poll(&pf, 1, 20) <= 0) continue;
        int c = accept(r->fd, NULL, NULL);
        if (c < 0) continue;
        if (r->mode == RAW_404) {
            char buf[4096];
            size_t got = 0;
            while (got < sizeof buf - 1) {
                ssize_t n = read(c, buf + got, sizeof buf - 1 - got);
                if (n <= 0) break;
                got += (size_t)n;
                buf[got] = '\0';
                if (strstr(buf, "\r\n\r\n")) break;
            }
            static const char resp[] =
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            if (write(c, resp, sizeof resp - 1) < 0) perror("write");
            close(c);
        } else if (r->nclients < 16) {
            r->clients[r->nclients] = c;
            __atomic_store_n(&r->nclients, r->nclients + 1, __ATOMIC_RELEASE);
        } else {
            close(c);
        }
    }
    return NULL;
}

static raw *raw_start(int mode)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    raw *r = calloc(1, sizeof *r);
    r->mode = mode;
    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(r->fd, (struct sockaddr *)&sa, sizeof sa);
    listen(r->fd, 16);
    getsockname(r->fd, (struct sockaddr *)&sa, &sl);
    r->port = ntohs(sa.sin_port);
    pthread_create(&r->th, NULL, raw_main, r);
    return r;
}

static void raw_stop(raw *r)
{
    int i;
    __atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
    pthread_join(r->th, NULL);
    for (i = 0; i < r->nclients; i++)
        close(r->clients[i]);
    close(r->fd);
    free(r);
}

/* ========================================================= CONNECT proxy */

/* A one-connection HTTP proxy: it records the CONNECT request's head, then
 * answers 407, or tunnels to 127.0.0.1:<the requested port> and relays
 * until either side closes. */
typedef struct px {
    int fd, port, deny, stop;
    pthread_t th;
    char head[1024]; /* written before `done` */
    int done;
} px;

static void *px_main(void *arg)
{
    px *x = arg;
    struct pollfd pf = {x->fd, POLLIN, 0};
    char buf[16384], target[300], *colon;
    size_t got = 0;
    int c, t = -1;
    while (!__atomic_load_n(&x->stop, __ATOMIC_ACQUIRE) && poll(&pf, 1, 20) <= 0)
        ;
    if ((c = accept(x->fd, NULL, NULL)) < 0) return NULL;
    while (got < sizeof x->head - 1 && read(c, x->head + got, 1) == 1) /* no byte past the head */
        if (++got >= 4 && memcmp(x->head + got - 4, "\r\n\r\n", 4) == 0) break;
    x->head[got] = '\0';
    target[0] = '\0';
    /* "CONNECT <target> HTTP/1.1": the port after the target's last ':' */
    sscanf(x->head, "%*s %299s", target);
    colon = strrchr(target, ':');
    if (!x->deny && colon) {
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((unsigned short)atoi(colon + 1));
        t = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(t, (struct sockaddr *)&sa, sizeof sa) != 0) {
            close(t);
            t = -1;
        }
    }
    __atomic_store_n(&x->done, 1, __ATOMIC_RELEASE);
    if (t < 0) {
        static const char no[] = "HTTP/1.1 407 Proxy Authentication Required\r\n"
                                 "Proxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n";
        if (write(c, no, sizeof no - 1) < 0) perror("write");
    } else {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        if (write(c, ok, sizeof ok - 1) < 0) perror("write");
        while (!__atomic_load_n(&x->stop, __ATOMIC_ACQUIRE)) {
            struct pollfd two[2] = {{c, POLLIN, 0}, {t, POLLIN, 0}};
            ssize_t n;
            int i;
            if (poll(two, 2, 20) <= 0) continue;
            for (i = 0; i < 2; i++) {
                if (!two[i].revents) continue;
                n = read(two[i].fd, buf, sizeof buf);
                if (n <= 0 || write(two[1 - i].fd, buf, (size_t)n) != n) goto out;
            }
        }
    out:
        close(t);
    }
    close(c);
    return NULL;
}

/* Listening on 127.0.0.1, or on ::1 when v6. */
static px *px_start(int deny, int v6)
{
    struct sockaddr_in6 sa;
    socklen_t sl = sizeof sa;
    px *x = calloc(1, sizeof *x);
    x->deny = deny;
    x->fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    if (v6) {
        sa.sin6_family = AF_INET6;
        sa.sin6_addr = in6addr_loopback;
        bind(x->fd, (struct sockaddr *)&sa, sizeof sa);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&sa;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(x->fd, (struct sockaddr *)a, sizeof *a);
    }
    listen(x->fd, 4);
    getsockname(x->fd, (struct sockaddr *)&sa, &sl);
    x->port = ntohs(sa.sin6_port); /* sin_port is at the same place */
    pthread_create(&x->th, NULL, px_main, x);
    return x;
}

static void px_stop(px *x)
{
    __atomic_store_n(&x->stop, 1, __ATOMIC_RELEASE);
    pthread_join(x->th, NULL);
    close(x->fd);
    free(x);
}

/* A port nothing listens on (bound, then closed). */
static int closed_port(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd);
    return ntohs(sa.sin_port);
}

/* ================================================================ client */

typedef struct cli {
    int opened, closed, data_before_open, after_close, drains;
    int code;
    long status;
    int err_null;
    char msg[512];
    sr_buf data;
    uint64_t t_open, t_closed;
} cli;

static void c_open(void *ud, sr_transport *tp)
{
    cli *c = ud;
    (void)tp;
    if (c->closed) c->after_close++;
    c->opened++;
    c->t_open = now_ms();
}

static void c_data(void *ud, sr_transport *tp, const char *data, size_t len)
{
    cli *c = ud;
    (void)tp;
    if (!c->opened) c->data_before_open++;
    if (c->closed) c->after_close++;
    sr__buf_append(&c->data, data, len);
}

static void c_close(void *ud, sr_transport *tp, const sr_error *err)
{
    cli *c = ud;
    (void)tp;
    if (c->closed) c->after_close++;
    c->closed++;
    c->t_closed = now_ms();
    c->err_null = err == NULL;
    if (err) {
        c->code = err->code;
        c->status = err->status;
        snprintf(c->msg, sizeof c->msg, "%s", err->message);
    }
}

static void c_drain(void *ud, sr_transport *tp)
{
    cli *c = ud;
    (void)tp;
    if (c->closed) c->after_close++;
    c->drains++;
}

static const sr_transport_upcalls ups = {c_open, c_data, NULL, c_close, c_drain};

static void cfg_init(sr_transport_cfg *cfg, const char *url)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->url = url;
    cfg->handshake = HANDSHAKE;
    cfg->handshake_len = sizeof HANDSHAKE - 1;
    cfg->ping = PING;
    cfg->ping_len = sizeof PING - 1;
}

#define WAIT(loop, cond, ms)                                                                       \
    do {                                                                                           \
        uint64_t t0_ = now_ms();                                                                   \
        while (!(cond) && now_ms() - t0_ < (uint64_t)(ms))                                         \
            sr_loop_dispatch((loop), 20);                                                          \
    } while (0)

static int g_verbose;

/* Connections the server has seen established. Its ESTABLISHED callback
 * runs after it sent the 101, so the client may be open before it ran. */
static int srv_seen(srv *s)
{
    int n;
    pthread_mutex_lock(&s->mu);
    n = s->conns_total;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void note(const char *fmt, const char *s)
{
    if (g_verbose) {
        printf(fmt, s);
        fflush(stdout);
    }
}

/* ================================================================= tests */

TEST(t_open_echo_close)
{
    char url[256];
    sr_header hdrs[] = {{"Authorization", "Bearer tok123"}, {"X-Test", "yes"}};
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    srv *s = srv_start(SRV_ECHO, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    CHECK(s && loop);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/testhub?id=abc%%2B1", s->port);
    cfg_init(&cfg, url);
    cfg.headers = hdrs;
    cfg.nheaders = 2;
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    CHECK_STR(sr__transport_name(tp), "WebSockets");
    WAIT(loop, c.opened, 10000);
    CHECK(c.opened == 1 && !c.closed);
    /* The handshake is the first message the server gets, as one message. */
    WAIT(loop, c.data.len >= sizeof HANDSHAKE - 1, 3000);
    pthread_mutex_lock(&s->mu);
    CHECK(s->first.len == sizeof HANDSHAKE - 1 &&
          memcmp(s->first.data, HANDSHAKE, s->first.len) == 0);
    CHECK_STR(s->uri, "/testhub");
    CHECK(strstr(s->args, "id=abc") != NULL);
    CHECK_STR(s->auth, "Bearer tok123");
    CHECK_STR(s->xtest, "yes");
    {
        char want[64];
        snprintf(want, sizeof want, "127.0.0.1:%d", s->port);
        CHECK_STR(s->host, want);
    }
    CHECK(s->origin[0] == '\0');
    pthread_mutex_unlock(&s->mu);
    CHECK(sr__transport_send(tp, "{\"type\":1}\x1e", 11) == SR_OK);
    WAIT(loop, c.data.len >= sizeof HANDSHAKE - 1 + 11, 3000);
    CHECK(c.data.len == sizeof HANDSHAKE - 1 + 11);
    CHECK(memcmp(c.data.data + sizeof HANDSHAKE - 1, "{\"type\":1}\x1e", 11) == 0);
    CHECK(c.data_before_open == 0);
    sr__transport_close(tp);
    CHECK(sr__transport_send(tp, "x", 1) == SR_ECLOSED);
    WAIT(loop, c.closed, 3000);
    CHECK(c.closed == 1 && c.err_null);
    sr_loop_dispatch(loop, 50);
    CHECK(c.after_close == 0);
    WAIT(loop, srv_int(s, &s->conns) == 0, 2000);
    CHECK(srv_int(s, &s->conns) == 0);
    sr__transport_release(tp);
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&c.data);
}

/* lws 4.1 cuts a request line over 2,048 bytes: the longest path and
 * query it can send whole reaches the server intact, one byte more is
 * refused at once with a message that says why and does not show the URL
 * (it holds the connection token). */
TEST(t_long_path)
{
    char url[2600];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    size_t base, want = 2032;
    srv *s = srv_start(SRV_ECHO, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    CHECK(s && loop);
    memset(&c, 0, sizeof c);
    base = (size_t)snprintf(url, sizeof url, "ws://127.0.0.1:%d", s->port);
    /* path "/h?id=" then token bytes up to exactly `want` bytes of path */
    snprintf(url + base, sizeof url - base, "/h?id=");
    memset(url + base + 6, 't', want - 6);
    url[base + want] = '\0';
    cfg_init(&cfg, url);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.opened || c.closed, 10000);
    CHECK(c.opened == 1 && !c.closed);
    WAIT(loop, srv_seen(s) >= 1, 5000);
    pthread_mutex_lock(&s->mu);
    CHECK(strlen(s->args) == want - 3); /* "id=" and the token, without "/h?" */
    pthread_mutex_unlock(&s->mu);
    sr__transport_release(tp);
    /* one byte more */
    url[base + want] = 't';
    url[base + want + 1] = '\0';
    memset(&err, 0, sizeof err);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp == NULL);
    CHECK(err.code == SR_ETRANSPORT);
    CHECK(strstr(err.message, "2033 bytes") && strstr(err.message, "Server-Sent Events"));
    CHECK(strstr(err.message, "tttt") == NULL);
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&c.data);
}

/* Many small records sent back to back: all bytes echo back in order. */
TEST(t_pipeline)
{
    char url[256], rec[64];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    sr_buf sent = SR_BUF_INIT;
    cli c;
    int i, n = getenv("SR_TEST_RECORDS") ? atoi(getenv("SR_TEST_RECORDS"))
                                         : (int)t_scale(100000, 5000);
    uint64_t t0, t1, t2;
    srv *s = srv_start(SRV_ECHO, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub", s->port);
    cfg_init(&cfg, url);
    cfg.handshake = NULL;
    cfg.handshake_len = 0;
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.opened, 10000);
    CHECK(c.opened);
    t0 = now_ms();
    for (i = 0; i < n; i++) {
        /* 50-byte records */
        int len =
            snprintf(rec, sizeof rec, "{\"type\":1,\"target\":\"x\",\"arguments\":[%11d]}\x1e", i);
        CHECK(len == 50);
        CHECK(sr__transport_send(tp, rec, (size_t)len) == SR_OK);
        sr__buf_append(&sent, rec, (size_t)len);
        if ((i & 1023) == 0) sr_loop_dispatch(loop, 0);
    }
    t1 = now_ms();
    WAIT(loop, srv_got(s) >= sent.len, 60000);
    t2 = now_ms();
    WAIT(loop, c.data.len >= sent.len, 60000);
    CHECK(srv_got(s) == sent.len);
    CHECK(c.data.len == sent.len);
    CHECK(memcmp(c.data.data, sent.data, sent.len) == 0);
    if (g_verbose)
        printf("     %d records of 50 bytes: queued in %llu ms, at the server after %llu ms "
               "(%.0f records/s), echoed after %llu ms; %d server messages\n",
               n, (unsigned long long)(t1 - t0), (unsigned long long)(t2 - t0),
               n * 1000.0 / (double)(t2 - t0 ? t2 - t0 : 1), (unsigned long long)(now_ms() - t0),
               srv_int(s, &s->nmsgs));
    sr__transport_close(tp);
    WAIT(loop, c.closed, 3000);
    CHECK(c.closed && c.err_null);
    sr__transport_release(tp);
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&sent);
    sr__buf_free(&c.data);
}

TEST(t_big_message)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    size_t n = 5u << 20, i;
    char *big = malloc(n);
    srv *s = srv_start(SRV_ECHO, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    for (i = 0; i < n; i++)
        big[i] = (char)('a' + i % 23);
    big[n - 1] = '\x1e';
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub", s->port);
    cfg_init(&cfg, url);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.opened, 10000);
    CHECK(sr__transport_send(tp, big, n) == SR_OK);
    CHECK(sr__transport_send(tp, "{}\x1e", 3) == SR_OK);
    WAIT(loop, c.data.len >= sizeof HANDSHAKE - 1 + n + 3, 30000);
    CHECK(c.data.len == sizeof HANDSHAKE - 1 + n + 3);
    CHECK(memcmp(c.data.data + sizeof HANDSHAKE - 1, big, n) == 0);
    CHECK(memcmp(c.data.data + sizeof HANDSHAKE - 1 + n, "{}\x1e", 3) == 0);
    sr__transport_release(tp);
    sr_loop_free(loop);
    srv_stop(s);
    free(big);
    sr__buf_free(&c.data);
}

TEST(t_binary_frames)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    srv *s = srv_start(SRV_ECHO, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub", s->port);
    cfg_init(&cfg, url);
    cfg.binary = 1;
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.opened, 10000);
    CHECK(sr__transport_send(tp, "\x03\x91\x06\x00", 4) == SR_OK);
    WAIT(loop, c.data.len >= sizeof HANDSHAKE - 1 + 4, 3000);
    CHECK(c.data.len == sizeof HANDSHAKE - 1 + 4);
    /* handshake as text, records as binary */
    CHECK(srv_int(s, &s->ntext) == 1 && srv_int(s, &s->nbinary) == 1);
    sr__transport_release(tp);
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&c.data);
}

/* Bytes queued right before close still go out; then on_close(NULL). */
TEST(t_close_flushes)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    srv *s = srv_start(SRV_SILENT, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub", s->port);
    cfg_init(&cfg, url);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    /* Queued before the transport is even open. */
    CHECK(sr__transport_send(tp, "early\x1e", 6) == SR_OK);
    WAIT(loop, c.opened, 10000);
    CHECK(c.opened);
    CHECK(sr__transport_send(tp, "late\x1e", 5) == SR_OK);
    sr__transport_close(tp);
    WAIT(loop, c.closed, 5000);
    CHECK(c.closed == 1 && c.err_null);
    /* The server thread may still be reading. */
    WAIT(loop, srv_got(s) >= sizeof HANDSHAKE - 1 + 11, 3000);
    CHECK(srv_got(s) == sizeof HANDSHAKE - 1 + 11);
    pthread_mutex_lock(&s->mu);
    CHECK(memcmp(s->got.data + sizeof HANDSHAKE - 1, "early\x1elate\x1e", 11) == 0);
    pthread_mutex_unlock(&s->mu);
    sr__transport_release(tp);
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&c.data);
}

TEST(t_server_close)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    srv *s = srv_start(SRV_CLOSE, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub", s->port);
    cfg_init(&cfg, url);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.closed, 3000);
    CHECK(c.opened == 1 && c.closed == 1 && !c.err_null);
    CHECK(c.code == SR_ETRANSPORT);
    note("     server close: %s\n", c.msg);
    CHECK(strstr(c.msg, "1011") && strstr(c.msg, "bye"));
    CHECK(sr__transport_send(tp, "x", 1) == SR_ECLOSED);
    sr__transport_close(tp); /* no second on_close */
    sr_loop_dispatch(loop, 100);
    CHECK(c.closed == 1 && c.after_close == 0);
    sr__transport_release(tp);
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&c.data);
}

TEST(t_refused)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    int port = closed_port();
    sr_loop *loop = sr_loop_new(&err);
    uint64_t t0;
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub?id=1", port);
    cfg_init(&cfg, url);
    /* A first attempt makes the loop's lws context (on the I/O thread; slow
     * under valgrind), so the one timed below measures the refusal alone. */
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.closed, 20000);
    sr__transport_release(tp);
    memset(&c, 0, sizeof c);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    t0 = now_ms();
    CHECK(tp);
    WAIT(loop, c.closed, 5000);
    CHECK(c.closed == 1 && !c.opened && c.code == SR_ETRANSPORT);
    CHECK(now_ms() - t0 < 1000);
    note("     refused: %s\n", c.msg);
    {
        char want[64];
        snprintf(want, sizeof want, "127.0.0.1:%d", port);
        CHECK(strstr(c.msg, want) != NULL);
    }
    /* the system's own words (strerror), not a guess */
    CHECK(strstr(c.msg, "Connection refused") != NULL);
    sr__transport_release(tp);
    sr_loop_free(loop);
}

TEST(t_bad_host)
{
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    cfg_init(&cfg, "ws://no-such-host.invalid/hub");
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.closed, 10000);
    CHECK(c.closed == 1 && !c.opened && c.code == SR_ETRANSPORT);
    note("     bad host: %s\n", c.msg);
    CHECK(strstr(c.msg, "no-such-host.invalid") != NULL);
    sr__transport_release(tp);
    /* invalid URLs fail at once */
    cfg_init(&cfg, "ftp://x/");
    CHECK(sr__ws_transport_new(loop, &cfg, &ups, &c, &err) == NULL && err.code == SR_EUSAGE);
    cfg_init(&cfg, "ws://host:99999/");
    CHECK(sr__ws_transport_new(loop, &cfg, &ups, &c, &err) == NULL && err.code == SR_EUSAGE);
    cfg_init(&cfg, "ws://user:pw@host/");
    CHECK(sr__ws_transport_new(loop, &cfg, &ups, &c, &err) == NULL && err.code == SR_EUSAGE);
    cfg_init(&cfg, "wss://[::1/");
    CHECK(sr__ws_transport_new(loop, &cfg, &ups, &c, &err) == NULL && err.code == SR_EUSAGE);
    sr_loop_free(loop);
}

/* Through an HTTP proxy: a tunnel to a name only the proxy knows, with
 * Basic credentials from the URL (percent-decoded); a refusal; an
 * unreachable proxy; the environment's proxy and its no_proxy. */
TEST(t_proxy)
{
    char url[256], proxy[512], want[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    sr_loop *loop = sr_loop_new(&err), *eloop;
    srv *s = srv_start(SRV_ECHO, NULL, NULL);
    px *x = px_start(0, 0);

    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://hub.invalid:%d/hub?id=1", s->port);
    snprintf(proxy, sizeof proxy, "http://us%%20er:p%%40ss@127.0.0.1:%d", x->port);
    cfg_init(&cfg, url);
    cfg.proxy = proxy;
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.opened || c.closed, 5000);
    note("     proxy: %s\n", c.msg);
    CHECK(c.opened == 1 && !c.closed);
    snprintf(want, sizeof want, "CONNECT hub.invalid:%d HTTP/1.1\r\n", s->port);
    CHECK(strncmp(x->head, want, strlen(want)) == 0);
    /* base64("us er:p@ss") */
    CHECK(strstr(x->head, "Proxy-authorization: basic dXMgZXI6cEBzcw==\r\n") != NULL);
    WAIT(loop, srv_got(s) >= sizeof HANDSHAKE - 1, 5000);
    {
        int host_ok;
        pthread_mutex_lock(&s->mu);
        host_ok = strncmp(s->host, "hub.invalid:", 12) == 0; /* the target's Host header */
        pthread_mutex_unlock(&s->mu);
        CHECK(host_ok);
    }
    sr__transport_release(tp);
    px_stop(x);

    /* refused: the proxy is named, the credentials are not */
    x = px_start(1, 0);
    sr__buf_free(&c.data); /* what the echo sent back */
    memset(&c, 0, sizeof c);
    snprintf(proxy, sizeof proxy, "http://user:s3cret@127.0.0.1:%d", x->port);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.closed, 5000);
    note("     proxy 407: %s\n", c.msg);
    CHECK(c.closed == 1 && !c.opened && c.code == SR_ETRANSPORT);
    snprintf(want, sizeof want, "the proxy http://127.0.0.1:%d refused the tunnel", x->port);
    CHECK(strstr(c.msg, want) != NULL);
    CHECK(strstr(c.msg, "s3cret") == NULL);
    sr__transport_release(tp);
    px_stop(x);

    /* unreachable */
    sr__buf_free(&c.data); /* what the echo sent back */
    memset(&c, 0, sizeof c);
    snprintf(proxy, sizeof proxy, "http://user:s3cret@127.0.0.1:%d", closed_port());
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.closed, 5000);
    note("     proxy down: %s\n", c.msg);
    CHECK(c.closed == 1 && c.code == SR_ETRANSPORT);
    CHECK(strstr(c.msg, "cannot connect to the proxy http://127.0.0.1:") != NULL);
    CHECK(strstr(c.msg, "s3cret") == NULL);
    sr__transport_release(tp);

    /* from the environment, which no_proxy overrides; a loop made while
     * http_proxy is set, so its lws vhosts would have read it themselves */
    x = px_start(0, 0);
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", x->port);
    setenv("http_proxy", proxy, 1);
    setenv("no_proxy", "127.0.0.1", 1);
    eloop = sr_loop_new(&err);
    sr__buf_free(&c.data); /* what the echo sent back */
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub?id=1", s->port);
    cfg_init(&cfg, url);
    tp = sr__ws_transport_new(eloop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(eloop, c.opened || c.closed, 5000);
    CHECK(c.opened == 1 && !__atomic_load_n(&x->done, __ATOMIC_ACQUIRE)); /* direct */
    sr__transport_release(tp);
    unsetenv("no_proxy");
    sr__buf_free(&c.data); /* what the echo sent back */
    memset(&c, 0, sizeof c);
    tp = sr__ws_transport_new(eloop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(eloop, c.opened || c.closed, 5000);
    unsetenv("http_proxy");
    CHECK(c.opened == 1 && __atomic_load_n(&x->done, __ATOMIC_ACQUIRE));
    snprintf(want, sizeof want, "CONNECT 127.0.0.1:%d HTTP/1.1\r\n", s->port);
    CHECK(strncmp(x->head, want, strlen(want)) == 0);
    CHECK(strstr(x->head, "Proxy-authorization") == NULL);
    sr__transport_release(tp);
    sr_loop_free(eloop);
    px_stop(x);

    /* an IPv6 proxy, an IPv6 target, and the longest credentials lws sends */
    x = px_start(0, 1);
    sr__buf_free(&c.data); /* what the echo sent back */
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://[::1]:%d/hub?id=1", s->port);
    memset(want, 'u', 93);
    want[40] = ':';
    want[93] = '\0';
    snprintf(proxy, sizeof proxy, "http://%s@[::1]:%d", want, x->port);
    cfg_init(&cfg, url);
    cfg.proxy = proxy;
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.opened || c.closed, 5000);
    note("     proxy v6: %s\n", c.msg);
    CHECK(c.opened == 1);
    snprintf(want, sizeof want, "CONNECT [::1]:%d HTTP/1.1\r\n", s->port);
    CHECK(strncmp(x->head, want, strlen(want)) == 0);
    {
        /* base64 of 93 bytes is 124 characters: nothing was cut */
        const char *b = strstr(x->head, "Proxy-authorization: basic dXV1");
        CHECK(b != NULL);
        b += strlen("Proxy-authorization: basic ");
        CHECK(strcspn(b, "\r") == 124);
    }
    sr__transport_release(tp);
    px_stop(x);
    /* one byte more is refused with a reason */
    memset(want, 'u', 94);
    want[40] = ':';
    want[94] = '\0';
    snprintf(proxy, sizeof proxy, "http://%s@127.0.0.1:1", want);
    CHECK(sr__ws_transport_new(loop, &cfg, &ups, &c, &err) == NULL && err.code == SR_ETRANSPORT);
    note("     long credentials: %s\n", err.message);
    CHECK(strstr(err.message, "at most 93") != NULL && strstr(err.message, "uuu") == NULL);

    /* a kind of proxy a tunnel cannot use fails at once */
    cfg.proxy = "socks5://127.0.0.1:1";
    CHECK(sr__ws_transport_new(loop, &cfg, &ups, &c, &err) == NULL && err.code == SR_ETRANSPORT);
    CHECK(strstr(err.message, "socks5://") != NULL);
    sr__buf_free(&c.data);
    sr_loop_free(loop);
    srv_stop(s);
}

TEST(t_http_404)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    raw *r = raw_start(RAW_404);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/missing?id=x", r->port);
    cfg_init(&cfg, url);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.closed, 5000);
    CHECK(c.closed == 1 && !c.opened && c.code == SR_ETRANSPORT);
    note("     404: %s\n", c.msg);
    CHECK(c.status == 404);
    CHECK(strstr(c.msg, "404") != NULL);
    sr__transport_release(tp);
    sr_loop_free(loop);
    raw_stop(r);
}

TEST(t_keepalive)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    int pings;
    srv *s = srv_start(SRV_SILENT, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub", s->port);
    cfg_init(&cfg, url);
    cfg.keepalive_ms = 200;
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.opened, 10000);
    WAIT(loop, 0, 1100);
    pings = srv_int(s, &s->npings);
    if (g_verbose) printf("     %d pings in 1.1 s at keepalive 200 ms\n", pings);
    CHECK(pings >= 4 && pings <= 6);
    /* Sending resets the keepalive clock: no pings while we keep writing. */
    {
        int before = srv_int(s, &s->npings), i;
        for (i = 0; i < 10; i++) {
            CHECK(sr__transport_send(tp, "{}\x1e", 3) == SR_OK);
            WAIT(loop, 0, 100);
        }
        CHECK(srv_int(s, &s->npings) <= before + 1);
    }
    CHECK(!c.closed);
    sr__transport_release(tp);
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&c.data);
}

TEST(t_server_timeout)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    srv *s = srv_start(SRV_HS_THEN_QUIET, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub", s->port);
    cfg_init(&cfg, url);
    cfg.server_timeout_ms = 500;
    cfg.keepalive_ms = 100; /* our pings must not count as traffic */
    cfg.handshake_timeout_ms = 5000;
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.opened, 10000);
    WAIT(loop, c.closed, 3000);
    CHECK(c.closed == 1 && c.code == SR_ETIMEOUT);
    CHECK_STR(c.msg, "Server timeout elapsed without receiving a message from the server.");
    CHECK(c.data.len == 3);
    CHECK(c.t_closed - c.t_open >= 450 && c.t_closed - c.t_open < 1500);
    WAIT(loop, srv_int(s, &s->conns) == 0, 2000);
    CHECK(srv_int(s, &s->conns) == 0);
    sr__transport_release(tp);
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&c.data);
}

TEST(t_handshake_timeout)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    srv *s = srv_start(SRV_SILENT, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub", s->port);
    cfg_init(&cfg, url);
    cfg.handshake_timeout_ms = 300;
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.closed, 3000);
    CHECK(c.opened == 1 && c.closed == 1 && c.code == SR_ETIMEOUT);
    CHECK(strstr(c.msg, "Handshake timed out") != NULL);
    CHECK(c.t_closed - c.t_open >= 250 && c.t_closed - c.t_open < 1000);
    sr__transport_release(tp);
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&c.data);
}

/* Released while connecting (TCP up, upgrade unanswered), while resolving,
 * and right after creation: no upcall ever runs, nothing leaks. */
TEST(t_release_early)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    raw *r = raw_start(RAW_HANG);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub", r->port);
    cfg_init(&cfg, url);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, __atomic_load_n(&r->nclients, __ATOMIC_ACQUIRE) > 0, 2000);
    sr__transport_send(tp, "x\x1e", 2);
    sr__transport_release(tp);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    sr__transport_release(tp);
    snprintf(url, sizeof url, "ws://localhost:%d/hub", r->port);
    cfg_init(&cfg, url);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    sr__transport_release(tp);
    WAIT(loop, 0, 300);
    CHECK(!c.opened && !c.closed && c.data.len == 0);
    sr_loop_free(loop);
    raw_stop(r);
}

/* Close while connecting: on_close(NULL), no on_open. */
TEST(t_close_connecting)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    raw *r = raw_start(RAW_HANG);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub", r->port);
    cfg_init(&cfg, url);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, 0, 100);
    sr__transport_close(tp);
    WAIT(loop, c.closed, 2000);
    CHECK(c.closed == 1 && c.err_null && !c.opened);
    sr__transport_release(tp);
    sr_loop_free(loop);
    raw_stop(r);
}

/* Released while open: the socket goes, no on_close. Then the loop is
 * freed with a transport still open on the I/O side. */
TEST(t_release_open)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp, *tp2;
    sr_error err;
    cli c, c2;
    srv *s = srv_start(SRV_ECHO, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    memset(&c2, 0, sizeof c2);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub", s->port);
    cfg_init(&cfg, url);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    tp2 = sr__ws_transport_new(loop, &cfg, &ups, &c2, &err);
    CHECK(tp && tp2);
    WAIT(loop, c.opened && c2.opened, 10000);
    WAIT(loop, srv_int(s, &s->conns) == 2, 3000);
    CHECK(srv_int(s, &s->conns) == 2);
    sr__transport_release(tp);
    WAIT(loop, srv_int(s, &s->conns) == 1, 2000);
    CHECK(srv_int(s, &s->conns) == 1);
    CHECK(!c.closed);
    /* Events already queued for tp2 when it is released are dropped. */
    CHECK(sr__transport_send(tp2, "a\x1e", 2) == SR_OK);
    usleep(100000);
    sr__transport_release(tp2);
    sr_loop_dispatch(loop, 50);
    CHECK(!c2.closed);
    sr_loop_free(loop);
    {
        uint64_t t0 = now_ms();
        while (srv_int(s, &s->conns) != 0 && now_ms() - t0 < 2000)
            usleep(10000);
    }
    CHECK(srv_int(s, &s->conns) == 0);
    srv_stop(s);
    sr__buf_free(&c.data);
    sr__buf_free(&c2.data);
}

TEST(t_send_limits)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    raw *r = raw_start(RAW_HANG);
    sr_loop *loop = sr_loop_new(&err);
    char *big = calloc(1, SR_SEND_MAX);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub", r->port);
    cfg_init(&cfg, url);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp && big);
    CHECK(sr__transport_send(tp, big, SR_SEND_MAX - 10) == SR_OK);
    CHECK(sr__transport_send(tp, big, 10) == SR_OK);
    CHECK(sr__transport_send(tp, big, 1) == SR_EFULL);
    sr__transport_release(tp);
    free(big);
    sr_loop_free(loop);
    raw_stop(r);
}

/* The host stops dispatching while the server floods: the transport stops
 * reading (no event is dropped, the server timeout does not fire) and goes
 * on once the host drains the queue. */
TEST(t_backpressure)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    size_t total = (size_t)t_scale(40l << 20, 12l << 20), i;
    int congested = 0, bad = 0;
    srv *s = srv_start(SRV_FLOOD, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    s->flood_total = total;
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub", s->port);
    cfg_init(&cfg, url);
    cfg.server_timeout_ms = 300;
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.opened, 10000);
    /* Don't dispatch until the queue is over the high mark, and then for
     * longer than the server timeout. */
    for (i = 0; i < 3000 && !congested; i++) {
        usleep(10000);
        congested = sr__loop_congested(loop);
    }
    CHECK(congested);
    usleep(600000);
    WAIT(loop, c.data.len >= total + 3 || c.closed, 60000);
    CHECK(!c.closed);
    CHECK(c.data.len == total + 3);
    for (i = 0; i < total; i++)
        if ((unsigned char)c.data.data[3 + i] != (unsigned char)(i % 251)) {
            bad = 1;
            break;
        }
    CHECK(!bad);
    sr__transport_release(tp);
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&c.data);
}

/* A host name goes through the resolver thread; Host keeps the name. */
TEST(t_localhost)
{
    char url[256], want[64];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    srv *s = srv_start(SRV_ECHO, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://localhost:%d/hub", s->port);
    cfg_init(&cfg, url);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.opened || c.closed, 10000);
    CHECK(c.opened && !c.closed);
    WAIT(loop, srv_int(s, &s->conns_total) > 0, 3000);
    snprintf(want, sizeof want, "localhost:%d", s->port);
    pthread_mutex_lock(&s->mu);
    CHECK_STR(s->host, want);
    pthread_mutex_unlock(&s->mu);
    sr__transport_release(tp);
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&c.data);
}

/* "two-addrs.test" resolves to ::1 and then 127.0.0.1 (this executable's
 * getaddrinfo wins over libc's); every other name goes to libc. */
typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    struct addrinfo h, *a = NULL, *b = NULL, *t;
    if (!node || strcmp(node, "two-addrs.test") != 0) return real(node, service, hints, res);
    memset(&h, 0, sizeof h);
    h.ai_socktype = SOCK_STREAM;
    h.ai_flags = AI_NUMERICHOST;
    if (real("::1", service, &h, &a) != 0 || real("127.0.0.1", service, &h, &b) != 0)
        return EAI_FAIL;
    for (t = a; t->ai_next; t = t->ai_next)
        ;
    t->ai_next = b;
    *res = a;
    return 0;
}

/* The first address refuses: the next one is tried, Host keeps the name. */
TEST(t_address_fallback)
{
    char url[256], want[64];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    srv *s = srv_start4(SRV_ECHO, NULL, NULL, 1);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://two-addrs.test:%d/hub", s->port);
    cfg_init(&cfg, url);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.opened || c.closed, 10000);
    if (c.closed) note("     fallback: %s\n", c.msg);
    CHECK(c.opened && !c.closed);
    WAIT(loop, srv_int(s, &s->conns_total) > 0, 3000);
    snprintf(want, sizeof want, "two-addrs.test:%d", s->port);
    pthread_mutex_lock(&s->mu);
    CHECK_STR(s->host, want);
    pthread_mutex_unlock(&s->mu);
    sr__transport_release(tp);
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&c.data);
}

/* Context switches of every thread of this process but the caller's: how
 * often the others woke. */
static long other_threads_wakes(void)
{
    char path[300], line[128];
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    long self = (long)gettid(), n = 0;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL) {
        FILE *f;
        if (e->d_name[0] == '.' || atol(e->d_name) == self) continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        if (!(f = fopen(path, "r"))) continue;
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "voluntary_ctxt_switches:", 24) == 0) n += atol(line + 24);
        fclose(f);
    }
    closedir(d);
    return n;
}

/* A host blocked in a long wait holds the sockets and serves them itself;
 * the I/O thread then only looks now and then whether it left. It used to
 * look every 2 ms, 500 wake-ups a second for an idle connection. */
TEST(t_idle_wait_quiet)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    long w0, w1;
    srv *s = srv_start(SRV_ECHO, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    CHECK(s && loop);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/testhub", s->port);
    cfg_init(&cfg, url);
    cfg.keepalive_ms = 0; /* nothing to do for a second */
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp);
    WAIT(loop, c.opened && c.data.len >= sizeof HANDSHAKE - 1, 10000);
    CHECK(c.opened == 1);
    sr_loop_dispatch(loop, 100); /* the host has the sockets from here */
    w0 = other_threads_wakes();
    sr_loop_dispatch(loop, 1000);
    w1 = other_threads_wakes();
    if (g_verbose) fprintf(stderr, "other threads woke %ld times in 1 s\n", w1 - w0);
    /* About 50 looks, and the test server's thread; 500 before. */
    CHECK(w0 >= 0 && w1 - w0 < 150);
    /* Still served: an echo in the middle of such a wait comes back. */
    CHECK(sr__transport_send(tp, "{\"type\":1}\x1e", 11) == SR_OK);
    WAIT(loop, c.data.len >= sizeof HANDSHAKE - 1 + 11, 3000);
    CHECK(c.data.len == sizeof HANDSHAKE - 1 + 11);
    sr__transport_release(tp);
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&c.data);
}

/* -------------------------------------------------------------- resolver */

/* Threads of this process, from /proc/self/task. */
static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* A loop whose WebSocket back end fakes a DNS server that takes ms to
 * answer (the variable is read when the back end starts, i.e. by the first
 * sr__ws_transport_new on the loop, made here). */
static sr_loop *slow_dns_loop(const char *ms, const sr_transport_cfg *cfg, cli *c,
                              sr_transport **tp)
{
    sr_error err;
    sr_loop *loop = sr_loop_new(&err);
    setenv("SR_TEST_RESOLVE_DELAY_MS", ms, 1);
    *tp = sr__ws_transport_new(loop, cfg, &ups, c, &err);
    unsetenv("SR_TEST_RESOLVE_DELAY_MS");
    return loop;
}

/* The host frees its transports and the loop while lookups are in progress
 * (the crash of a host that closed its lua_State, unloading our code, while
 * a detached resolver thread still ran): sr_loop_free cuts the lookups
 * short and joins every thread, so no thread of ours is left. */
TEST(t_resolver_join)
{
    sr_transport_cfg cfg;
    sr_transport *tp, *tp2;
    sr_error err;
    cli c;
    sr_loop *loop;
    int before = count_threads();
    uint64_t t0;
    memset(&c, 0, sizeof c);
    cfg_init(&cfg, "ws://localhost:1/hub");
    loop = slow_dns_loop("10000", &cfg, &c, &tp);
    CHECK(tp);
    cfg_init(&cfg, "ws://two-addrs.test:1/hub");
    tp2 = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp2);
    /* The WebSocket thread and one resolver thread per lookup. */
    WAIT(loop, count_threads() >= before + 3, 5000);
    CHECK(count_threads() == before + 3);
    sr__transport_release(tp2);
    WAIT(loop, 0, 50);
    sr__transport_release(tp);
    t0 = now_ms();
    sr_loop_free(loop);
    if (g_verbose) printf("     sr_loop_free: %llu ms\n", (unsigned long long)(now_ms() - t0));
    CHECK(now_ms() - t0 < 2000); /* not the 10 s of the lookups */
    CHECK(count_threads() == before);
    CHECK(!c.opened && !c.closed);
}

/* A slow lookup still connects; one whose transport was released meanwhile
 * is dropped (never connects), and the loop goes on. */
TEST(t_resolver_delay)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp, *tp2;
    sr_error err;
    cli c, c2;
    uint64_t t0;
    srv *s = srv_start(SRV_ECHO, NULL, NULL);
    sr_loop *loop;
    memset(&c, 0, sizeof c);
    memset(&c2, 0, sizeof c2);
    snprintf(url, sizeof url, "ws://localhost:%d/hub", s->port);
    cfg_init(&cfg, url);
    loop = slow_dns_loop("300", &cfg, &c, &tp);
    CHECK(tp);
    sr__transport_release(tp); /* its lookup is dropped */
    t0 = now_ms();
    tp2 = sr__ws_transport_new(loop, &cfg, &ups, &c2, &err);
    CHECK(tp2);
    WAIT(loop, c2.opened || c2.closed, 10000);
    CHECK(c2.opened && !c2.closed);
    CHECK(c2.t_open - t0 >= 290);
    WAIT(loop, 0, 300);
    CHECK(srv_int(s, &s->conns_total) == 1);
    CHECK(!c.opened && !c.closed);
    sr__transport_release(tp2);
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&c2.data);
}

/* ----------------------------------------------------------------- drain */

/* A kind that does nothing: the test plays its I/O side. */
static void mem_noop(sr_transport *tp)
{
    (void)tp;
}

static const sr_transport_ops mem_ops = {"Memory", mem_noop, mem_noop, mem_noop, NULL};

static sr_transport *mem_new(sr_loop *loop, cli *c)
{
    sr_transport *tp = calloc(1, sizeof *tp);
    if (tp && sr__transport_init(tp, &mem_ops, loop, &ups, c, 0) != 0) {
        free(tp);
        return NULL;
    }
    return tp;
}

static void pump(sr_loop *loop)
{
    while (sr_loop_dispatch(loop, 0) > 0)
        ;
}

/* on_drain runs once per SR_EFULL episode, on the host thread, after the
 * I/O side took the queue; never without an SR_EFULL, after on_close or
 * after release. */
TEST(t_drain_mem)
{
    sr_error err;
    sr_loop *loop = sr_loop_new(&err);
    sr_buf spare = SR_BUF_INIT;
    char *big = calloc(1, SR_SEND_MAX);
    sr_transport *tp;
    cli c;
    memset(&c, 0, sizeof c);
    tp = mem_new(loop, &c);
    CHECK(tp && big);
    /* No SR_EFULL, no drain. */
    CHECK(sr__transport_send(tp, "{}\x1e", 3) == SR_OK);
    CHECK(sr__transport_take(tp, &spare) == 3);
    spare.len = 0;
    pump(loop);
    CHECK(c.drains == 0);
    /* Full: two refusals, one drain, once the I/O side took the queue. */
    CHECK(sr__transport_send(tp, big, SR_SEND_MAX - 10) == SR_OK);
    CHECK(sr__transport_send(tp, big, 11) == SR_EFULL);
    CHECK(sr__transport_send(tp, big, 20) == SR_EFULL);
    pump(loop);
    CHECK(c.drains == 0);
    CHECK(sr__transport_take(tp, &spare) == SR_SEND_MAX - 10);
    spare.len = 0;
    CHECK(c.drains == 0); /* posted, not run: upcalls run in dispatch */
    pump(loop);
    CHECK(c.drains == 1);
    CHECK(sr__transport_send(tp, big, 11) == SR_OK);
    CHECK(sr__transport_take(tp, &spare) == 11);
    spare.len = 0;
    pump(loop);
    CHECK(c.drains == 1);
    /* Full, then closed: on_close runs, on_drain does not. */
    CHECK(sr__transport_send(tp, big, SR_SEND_MAX) == SR_OK);
    CHECK(sr__transport_send(tp, "x", 1) == SR_EFULL);
    sr__transport_post_closed(tp, SR_ETRANSPORT, 0, "gone");
    pump(loop);
    CHECK(c.closed == 1);
    CHECK(sr__transport_take(tp, &spare) == SR_SEND_MAX);
    spare.len = 0;
    pump(loop);
    CHECK(c.drains == 1 && c.after_close == 0);
    sr__transport_release(tp);

    /* Full, then released: nothing runs (the test keeps the I/O side's
     * reference to take the queue after the release). */
    memset(&c, 0, sizeof c);
    tp = mem_new(loop, &c);
    CHECK(tp);
    CHECK(sr__transport_send(tp, big, SR_SEND_MAX) == SR_OK);
    CHECK(sr__transport_send(tp, "x", 1) == SR_EFULL);
    sr__transport_ref(tp);
    sr__transport_release(tp);
    sr__transport_take(tp, &spare);
    pump(loop);
    CHECK(c.drains == 0);
    sr__transport_unref(tp);

    /* Drain posted, loop freed before dispatch: discarded, nothing leaks. */
    memset(&c, 0, sizeof c);
    tp = mem_new(loop, &c);
    CHECK(tp);
    CHECK(sr__transport_send(tp, big, SR_SEND_MAX) == SR_OK);
    CHECK(sr__transport_send(tp, "x", 1) == SR_EFULL);
    sr__transport_take(tp, &spare);
    sr__transport_release(tp);
    sr_loop_free(loop);
    CHECK(c.drains == 0);
    sr__buf_free(&spare);
    free(big);
}

/* Over WebSockets: the host fills the queue (while connecting, or faster
 * than the socket takes it) until a send is refused; on_drain follows once
 * the I/O thread took the queue. */
TEST(t_drain_ws)
{
    char url[256];
    sr_transport_cfg cfg;
    sr_transport *tp;
    sr_error err;
    cli c;
    char *big = calloc(1, SR_SEND_MAX);
    srv *s = srv_start(SRV_SILENT, NULL, NULL);
    sr_loop *loop = sr_loop_new(&err);
    memset(&c, 0, sizeof c);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/hub", s->port);
    cfg_init(&cfg, url);
    tp = sr__ws_transport_new(loop, &cfg, &ups, &c, &err);
    CHECK(tp && big);
    {
        /* The I/O thread may take the queue between two sends; then lws
         * holds the batch until the socket took it, and the queue refills. */
        int r = sr__transport_send(tp, big, SR_SEND_MAX - 10), i;
        for (i = 0; i < 4096 && r == SR_OK; i++)
            r = sr__transport_send(tp, big, 1u << 20);
        CHECK(r == SR_EFULL);
    }
    WAIT(loop, c.drains || c.closed, 20000);
    CHECK(c.drains == 1 && c.opened && !c.closed);
    CHECK(sr__transport_send(tp, big, 11) == SR_OK);
    sr__transport_release(tp);
    sr_loop_free(loop);
    srv_stop(s);
    free(big);
    sr__buf_free(&c.data);
}

/* ------------------------------------------------------------------- TLS */

static char g_tls_dir[64];

/* A CA, a server certificate for "localhost" and one for another name, made
 * with the openssl command; the TLS tests are skipped without it. */
static int tls_setup(void)
{
    char cmd[2048];
    snprintf(g_tls_dir, sizeof g_tls_dir, "/tmp/sr_test_tls.%d", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "set -e; mkdir -p %s; cd %s; "
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
             "-subj /CN=sr-test-ca 2>/dev/null; "
             "for n in localhost other.invalid; do "
             "openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr -subj /CN=$n "
             "2>/dev/null; "
             "printf 'subjectAltName=DNS:%%s\\n' $n > $n.ext; "
             "openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $n.pem "
             "-days 2 -extfile $n.ext 2>/dev/null; done",
             g_tls_dir, g_tls_dir);
    return system(cmd) == 0;
}

static void tls_cleanup(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tls_dir);
    if (system(cmd) != 0) perror("rm");
}

/* Connect wss://localhost:port with the given options; returns the client. */
static void tls_try(const char *name, const char *ca, int no_verify, cli *c)
{
    char url[256], cert[128], key[128];
    sr_transport_cfg cfg;
    sr_tls tls;
    sr_transport *tp;
    sr_error err;
    srv *s;
    sr_loop *loop = sr_loop_new(&err);
    snprintf(cert, sizeof cert, "%s/%s.pem", g_tls_dir, name);
    snprintf(key, sizeof key, "%s/%s.key", g_tls_dir, name);
    s = srv_start(SRV_ECHO, cert, key);
    memset(c, 0, sizeof *c);
    snprintf(url, sizeof url, "wss://localhost:%d/hub", s->port);
    cfg_init(&cfg, url);
    memset(&tls, 0, sizeof tls);
    tls.ca_file = ca;
    tls.insecure = no_verify;
    cfg.tls = &tls;
    tp = sr__ws_transport_new(loop, &cfg, &ups, c, &err);
    if (tp) {
        WAIT(loop, c->data.len >= sizeof HANDSHAKE - 1 || c->closed, 5000);
        sr__transport_release(tp);
    }
    sr_loop_free(loop);
    srv_stop(s);
    sr__buf_free(&c->data);
}

TEST(t_tls)
{
    char ca[128];
    cli c;
    if (!tls_setup()) {
        printf("     (skipped: no openssl command)\n");
        return;
    }
    snprintf(ca, sizeof ca, "%s/ca.pem", g_tls_dir);
    /* Trusted CA, certificate for the name we asked for. */
    tls_try("localhost", ca, 0, &c);
    CHECK(c.opened && !c.closed);
    /* Trusted CA, certificate for another name: the name check fails even
     * though lws was handed the numeric address. */
    tls_try("other.invalid", ca, 0, &c);
    note("     wrong name: %s\n", c.msg);
    CHECK(!c.opened && c.closed && c.code == SR_ETRANSPORT);
    /* Unknown CA. */
    tls_try("localhost", NULL, 0, &c);
    note("     unknown CA: %s\n", c.msg);
    CHECK(!c.opened && c.closed && c.code == SR_ETRANSPORT);
    /* Verification off. */
    tls_try("other.invalid", NULL, 1, &c);
    CHECK(c.opened && !c.closed);
    /* A CA file that does not exist. */
    tls_try("localhost", "/nonexistent/ca.pem", 0, &c);
    note("     bad ca_file: %s\n", c.msg);
    CHECK(!c.opened && c.closed && c.code == SR_ETRANSPORT);
    tls_cleanup();
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;
    sr_loop *keeper;
    sr_transport_cfg cfg;
    sr_error err;
    g_verbose = getenv("SR_TEST_VERBOSE") != NULL;
    lws_set_log_level(0, NULL);
    /* One transport context alive for the whole run (see srv_start). */
    keeper = sr_loop_new(&err);
    cfg_init(&cfg, "ws://127.0.0.1:1/");
    sr__transport_release(sr__ws_transport_new(keeper, &cfg, &ups, NULL, &err));
#define R(t)                                                                                       \
    do {                                                                                           \
        if (!only || strstr(#t, only)) RUN(t);                                                     \
    } while (0)
    R(t_open_echo_close);
    R(t_pipeline);
    R(t_long_path);
    R(t_big_message);
    R(t_binary_frames);
    R(t_close_flushes);
    R(t_server_close);
    R(t_refused);
    R(t_bad_host);
    R(t_http_404);
    R(t_proxy);
    R(t_keepalive);
    R(t_server_timeout);
    R(t_handshake_timeout);
    R(t_release_early);
    R(t_close_connecting);
    R(t_release_open);
    R(t_send_limits);
    R(t_backpressure);
    R(t_localhost);
    R(t_address_fallback);
    R(t_tls);
    R(t_resolver_join);
    R(t_resolver_delay);
    R(t_drain_mem);
    R(t_idle_wait_quiet);
    R(t_drain_ws);
    sr_loop_free(keeper);
    DONE();
}
