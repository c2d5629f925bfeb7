/*
 * http_server.h - a loopback HTTP/1.1 server on threads of the test program
 * (127.0.0.1, port 0) for the tests of http.c and of the HTTP transports.
 * A thread a connection reads one request (the head and as much body as
 * Content-Length says) and hands it to the test's handler, which answers on
 * the socket; the server closes the socket after. What the handlers and the
 * test tell each other is guarded by srv_mu and signalled on srv_cv.
 * srv_post is the endpoint both HTTP transports send to: it records each
 * POST and holds it as the test says.
 * Header-only: each test program includes it once.
 */
#ifndef SR_TEST_HTTP_SERVER_H
#define SR_TEST_HTTP_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Connections over the whole program: each keeps its thread until the end. */
#ifndef SRV_MAX_CONNS
#define SRV_MAX_CONNS 256
#endif

#define SRV_MAX_POSTS 64

typedef struct srv_req {
    const char *head; /* the request line and headers, NUL-terminated after the body */
    size_t head_len;  /* up to the blank line */
    const char *body;
    size_t body_len; /* as Content-Length says */
} srv_req;

typedef void (*srv_handler_fn)(int fd, const srv_req *req);

static int srv_fd, srv_port, srv_stop;
static pthread_t srv_thread, srv_conns[SRV_MAX_CONNS];
static int srv_nconn;
static srv_handler_fn srv_handler;
static pthread_mutex_t srv_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t srv_cv = PTHREAD_COND_INITIALIZER;

/* What srv_post does and saw; srv_mu guards it. */
static struct {
    /* Behaviour, set by the test. */
    int status;   /* every POST's answer */
    int hold;     /* hold POST n until released > n */
    int released; /* POSTs the test let go */
    /* What it saw. */
    int n; /* POSTs recorded */
    char *body[SRV_MAX_POSTS];
    size_t len[SRV_MAX_POSTS];
    char req[4096]; /* the last one's head */
    int inflight, max_inflight;
} srv_posts = {.status = 200};

/* CLOCK_REALTIME ms from now, for pthread_cond_timedwait. */
static inline struct timespec srv_deadline(int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static inline void srv_set(int *field, int v)
{
    pthread_mutex_lock(&srv_mu);
    *field = v;
    pthread_cond_broadcast(&srv_cv);
    pthread_mutex_unlock(&srv_mu);
}

/* Wait until *field >= v (or ms pass); 1 when it got there. */
static inline int srv_wait(const int *field, int v, int ms)
{
    struct timespec end = srv_deadline(ms);
    int ok;
    pthread_mutex_lock(&srv_mu);
    while (*field < v && pthread_cond_timedwait(&srv_cv, &srv_mu, &end) == 0)
        ;
    ok = *field >= v;
    pthread_mutex_unlock(&srv_mu);
    return ok;
}

static inline int srv_stopping(void)
{
    return __atomic_load_n(&srv_stop, __ATOMIC_ACQUIRE);
}

static inline void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

/* The client closed its end (without waiting). */
static inline int peer_gone(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    char c;
    return poll(&p, 1, 0) == 1 && recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

/* Like send_all, but sets *blocked (srv_set) once the client has read
 * nothing for 300 ms. -1 when the client went away. */
static inline int send_watched(int fd, const char *p, size_t n, int *blocked)
{
    int stuck = 0;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        struct pollfd q = {fd, POLLOUT, 0};
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            stuck = 0;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR) return -1;
        if (poll(&q, 1, 300) == 0) {
            if (!*blocked) srv_set(blocked, 1);
            if (++stuck > 100) return -1; /* 30 s: the test is broken */
        }
    }
    return 0;
}

/* ------------------------------------------------------------ POSTs */

/* Records the POST and holds it while the test says; the status to answer
 * with, as it was when the POST arrived. Unlocked on return: the client may
 * start the next POST before this one is answered. */
static inline int srv_post(const srv_req *req)
{
    int me, status;
    struct timespec end;
    pthread_mutex_lock(&srv_mu);
    me = srv_posts.n;
    if (me < SRV_MAX_POSTS) {
        srv_posts.body[me] = malloc(req->body_len ? req->body_len : 1);
        memcpy(srv_posts.body[me], req->body, req->body_len);
        srv_posts.len[me] = req->body_len;
        srv_posts.n++;
    }
    snprintf(srv_posts.req, sizeof srv_posts.req, "%.*s", (int)req->head_len, req->head);
    if (++srv_posts.inflight > srv_posts.max_inflight) srv_posts.max_inflight = srv_posts.inflight;
    status = srv_posts.status;
    pthread_cond_broadcast(&srv_cv);
    end = srv_deadline(10000);
    while (srv_posts.hold && srv_posts.released <= me && !srv_stopping() &&
           pthread_cond_timedwait(&srv_cv, &srv_mu, &end) == 0)
        ;
    srv_posts.inflight--;
    pthread_mutex_unlock(&srv_mu);
    return status;
}

/* Between tests, with srv_mu held. */
static inline void srv_posts_reset(void)
{
    int i;
    for (i = 0; i < srv_posts.n; i++)
        free(srv_posts.body[i]);
    srv_posts.status = 200;
    srv_posts.hold = srv_posts.released = 0;
    srv_posts.n = srv_posts.inflight = srv_posts.max_inflight = 0;
    srv_posts.req[0] = '\0';
}

/* 1 when the POST bodies, one after another, are exactly want. */
static inline int posts_are(const char *want, size_t want_len)
{
    size_t off = 0;
    int i, ok = 1;
    pthread_mutex_lock(&srv_mu);
    for (i = 0; i < srv_posts.n && ok; i++) {
        ok = off + srv_posts.len[i] <= want_len &&
             memcmp(want + off, srv_posts.body[i], srv_posts.len[i]) == 0;
        off += srv_posts.len[i];
    }
    pthread_mutex_unlock(&srv_mu);
    return ok && off == want_len;
}

/* 1 when POST i's body is want. */
static inline int post_is(int i, const char *want)
{
    int ok;
    pthread_mutex_lock(&srv_mu);
    ok = i < srv_posts.n && srv_posts.len[i] == strlen(want) &&
         memcmp(srv_posts.body[i], want, srv_posts.len[i]) == 0;
    pthread_mutex_unlock(&srv_mu);
    return ok;
}

/* ------------------------------------------------------------ the server */

static inline void *srv_conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg, one = 1;
    char req[1 << 16];
    size_t len = 0;
    char *end = NULL, *cl;
    long clen = 0;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    while (len < sizeof req - 1) {
        ssize_t r = recv(fd, req + len, sizeof req - 1 - len, 0);
        if (r <= 0) break;
        len += (size_t)r;
        req[len] = '\0';
        if ((end = strstr(req, "\r\n\r\n")) != NULL) {
            cl = strcasestr(req, "\r\nContent-Length:");
            clen = cl && cl < end ? strtol(cl + 17, NULL, 10) : 0;
            if ((size_t)(end + 4 - req) + (size_t)clen <= len) break;
        }
    }
    if (end) {
        srv_req r = {req, (size_t)(end - req), end + 4, (size_t)clen};
        srv_handler(fd, &r);
    }
    close(fd);
    return NULL;
}

static inline void *srv_main(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(srv_fd, NULL, NULL);
        if (fd < 0) continue;
        if (srv_stopping() || srv_nconn == SRV_MAX_CONNS) {
            close(fd);
            break;
        }
        pthread_create(&srv_conns[srv_nconn++], NULL, srv_conn_main, (void *)(intptr_t)fd);
    }
    return NULL;
}

static inline void srv_start(srv_handler_fn handler)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int one = 1;
    srv_handler = handler;
    srv_fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(srv_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(srv_fd, (struct sockaddr *)&a, sizeof a);
    listen(srv_fd, 64);
    getsockname(srv_fd, (struct sockaddr *)&a, &alen);
    srv_port = ntohs(a.sin_port);
    pthread_create(&srv_thread, NULL, srv_main, NULL);
}

/* Stops accepting (a last connect wakes accept), wakes handlers that wait
 * on srv_cv so they see srv_stopping(), and joins every thread. */
static inline void srv_stop_all(void)
{
    struct sockaddr_in a;
    int fd, i;
    pthread_mutex_lock(&srv_mu);
    __atomic_store_n(&srv_stop, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&srv_cv);
    pthread_mutex_unlock(&srv_mu);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)srv_port);
    connect(fd, (struct sockaddr *)&a, sizeof a);
    pthread_join(srv_thread, NULL);
    close(fd);
    close(srv_fd);
    for (i = 0; i < srv_nconn; i++)
        pthread_join(srv_conns[i], NULL);
}

/* A port nothing listens on. */
static inline int closed_port(void)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &alen);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

#endif
