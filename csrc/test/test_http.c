/* test_http.c - http.h requests against a tiny HTTP server inside the test. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "http.h"
#include "loop.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------- the server */

#define MAX_CONNS 256

static int srv_fd, srv_port, srv_stop;
static pthread_t srv_thread, conn_threads[MAX_CONNS];
static int nconn;
static char big[2 << 20];

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

static void respond(int fd, const char *status, const char *extra, const char *body, size_t len)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n", status,
                     len, extra ? extra : "");
    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
}

/* Wait for the client to go away (or 5 s): a response that never comes. */
static void hang(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    char c;
    while (poll(&p, 1, 5000) == 1 && recv(fd, &c, 1, 0) > 0)
        ;
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char req[8192], path[256] = "", method[16] = "";
    size_t len = 0;
    char *end = NULL, *body, *cl;
    long clen = 0;
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
    if (!end) {
        close(fd);
        return NULL;
    }
    sscanf(req, "%15s %255s", method, path);
    body = end + 4;
    if (strcmp(path, "/hello") == 0) {
        respond(fd, "200 OK", "Content-Type: text/plain\r\n", "hello world", 11);
    } else if (strcmp(path, "/echo") == 0) {
        char out[4096];
        size_t ml = strlen(method);
        memcpy(out, method, ml);
        out[ml] = ':';
        memcpy(out + ml + 1, body, (size_t)clen); /* may hold NUL bytes */
        respond(fd, "200 OK", NULL, out, ml + 1 + (size_t)clen);
    } else if (strcmp(path, "/headers") == 0) {
        respond(fd, "200 OK", NULL, req, (size_t)(end - req));
    } else if (strcmp(path, "/missing") == 0) {
        respond(fd, "404 Not Found", NULL, "no such thing", 13);
    } else if (strcmp(path, "/redirect") == 0) {
        respond(fd, "302 Found", "Location: /hello\r\n", "", 0);
    } else if (strcmp(path, "/loop") == 0) {
        respond(fd, "302 Found", "Location: /loop\r\n", "", 0);
    } else if (strcmp(path, "/big") == 0) {
        respond(fd, "200 OK", NULL, big, sizeof big);
    } else if (strcmp(path, "/big-unsized") == 0) {
        /* No Content-Length: the size is only known by reading. */
        const char *head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        send_all(fd, head, strlen(head));
        send_all(fd, big, sizeof big);
    } else if (strcmp(path, "/slow") == 0) {
        hang(fd);
    } else {
        respond(fd, "400 Bad Request", NULL, "", 0);
    }
    shutdown(fd, SHUT_WR);
    hang(fd); /* until the client closes, so it reads everything */
    close(fd);
    return NULL;
}

static void *srv_main(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(srv_fd, NULL, NULL);
        if (fd < 0) continue;
        if (__atomic_load_n(&srv_stop, __ATOMIC_ACQUIRE) || nconn == MAX_CONNS) {
            close(fd);
            break;
        }
        pthread_create(&conn_threads[nconn++], NULL, conn_main, (void *)(intptr_t)fd);
    }
    return NULL;
}

static void srv_start(void)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int one = 1;
    memset(big, 'x', sizeof big);
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

static void srv_stop_all(void)
{
    struct sockaddr_in a;
    int fd, i;
    __atomic_store_n(&srv_stop, 1, __ATOMIC_RELEASE);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)srv_port);
    connect(fd, (struct sockaddr *)&a, sizeof a);
    pthread_join(srv_thread, NULL);
    close(fd);
    close(srv_fd);
    for (i = 0; i < nconn; i++)
        pthread_join(conn_threads[i], NULL);
}

/* A port nothing listens on. */
static int closed_port(void)
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

/* --------------------------------------------------------------- helpers */

typedef struct result {
    int calls;
    long status;
    int code; /* SR_OK when err was NULL */
    char body[1024];
    size_t len;
    char message[512];
} result;

static void on_done(void *ud, long status, const char *body, size_t len, const sr_error *err)
{
    result *r = ud;
    r->calls++;
    r->status = status;
    r->len = len;
    r->code = err ? err->code : SR_OK;
    if (len > sizeof r->body - 1) len = sizeof r->body - 1;
    memcpy(r->body, body ? body : "", body ? len : 0);
    r->body[body ? len : 0] = '\0';
    snprintf(r->message, sizeof r->message, "%s", err ? err->message : "");
}

static char url_buf[256];
static const char *url(const char *path)
{
    snprintf(url_buf, sizeof url_buf, "http://127.0.0.1:%d%s", srv_port, path);
    return url_buf;
}

static sr_http_req *get(sr_loop *loop, const char *u, result *r)
{
    sr_http_opts o;
    sr_error err;
    memset(&o, 0, sizeof o);
    memset(r, 0, sizeof *r);
    o.url = u;
    return sr__http_request(loop, &o, on_done, r, &err);
}

static void wait_for(sr_loop *loop, const int *flag, int ms)
{
    double end = now_ms() + ms;
    while (!*flag && now_ms() < end)
        sr_loop_dispatch(loop, (int)(end - now_ms()) + 1);
}

static int readable(sr_loop *loop, int ms)
{
    struct pollfd p = {sr_loop_fd(loop), POLLIN, 0};
    return poll(&p, 1, ms) == 1;
}

/* ----------------------------------------------------------------- tests */

TEST(get_ok)
{
    sr_loop *loop = sr_loop_new(NULL);
    result r;
    CHECK(get(loop, url("/hello"), &r) != NULL);
    wait_for(loop, &r.calls, 5000);
    CHECK(r.calls == 1);
    CHECK(r.code == SR_OK);
    CHECK(r.status == 200);
    CHECK(r.len == 11);
    CHECK_STR(r.body, "hello world");
    sr_loop_free(loop);
}

TEST(post_body_and_headers)
{
    sr_loop *loop = sr_loop_new(NULL);
    result r, h;
    sr_http_opts o;
    sr_error err;
    sr_header hs[2] = {{"X-Test", "yes"}, {"Authorization", "Bearer abc"}};
    memset(&o, 0, sizeof o);
    memset(&r, 0, sizeof r);
    o.method = "POST";
    o.url = url("/echo");
    o.body = "a\0b";
    o.body_len = 3;
    CHECK(sr__http_request(loop, &o, on_done, &r, &err) != NULL);
    wait_for(loop, &r.calls, 5000);
    CHECK(r.code == SR_OK && r.status == 200);
    CHECK(r.len == 8 && memcmp(r.body, "POST:a\0b", 8) == 0);

    /* POST without a body, then DELETE. */
    o.body = NULL;
    o.body_len = 0;
    memset(&r, 0, sizeof r);
    CHECK(sr__http_request(loop, &o, on_done, &r, &err) != NULL);
    wait_for(loop, &r.calls, 5000);
    CHECK(r.code == SR_OK);
    CHECK_STR(r.body, "POST:");
    o.method = "DELETE";
    memset(&r, 0, sizeof r);
    CHECK(sr__http_request(loop, &o, on_done, &r, &err) != NULL);
    wait_for(loop, &r.calls, 5000);
    CHECK_STR(r.body, "DELETE:");

    memset(&o, 0, sizeof o);
    memset(&h, 0, sizeof h);
    o.url = url("/headers");
    o.headers = hs;
    o.nheaders = 2;
    CHECK(sr__http_request(loop, &o, on_done, &h, &err) != NULL);
    wait_for(loop, &h.calls, 5000);
    CHECK(h.status == 200);
    CHECK(strstr(h.body, "X-Test: yes") != NULL);
    CHECK(strstr(h.body, "Authorization: Bearer abc") != NULL);
    CHECK(strstr(h.body, "User-Agent: signalr-lua/0.1.0 (libcurl/") != NULL);
    sr_loop_free(loop);
}

TEST(not_found_is_a_response)
{
    sr_loop *loop = sr_loop_new(NULL);
    result r;
    CHECK(get(loop, url("/missing"), &r) != NULL);
    wait_for(loop, &r.calls, 5000);
    CHECK(r.calls == 1 && r.code == SR_OK && r.status == 404);
    CHECK_STR(r.body, "no such thing");
    sr_loop_free(loop);
}

TEST(redirects)
{
    sr_loop *loop = sr_loop_new(NULL);
    result r;
    CHECK(get(loop, url("/redirect"), &r) != NULL);
    wait_for(loop, &r.calls, 5000);
    CHECK(r.code == SR_OK && r.status == 200);
    CHECK_STR(r.body, "hello world");
    CHECK(get(loop, url("/loop"), &r) != NULL);
    wait_for(loop, &r.calls, 5000);
    CHECK(r.calls == 1 && r.code == SR_ETRANSPORT);
    CHECK(strstr(r.message, "redirect") != NULL || strstr(r.message, "Redirect") != NULL);
    sr_loop_free(loop);
}

TEST(connection_refused)
{
    sr_loop *loop = sr_loop_new(NULL);
    result r;
    char u[64];
    double t0 = now_ms();
    snprintf(u, sizeof u, "http://127.0.0.1:%d/negotiate?id=secret", closed_port());
    CHECK(get(loop, u, &r) != NULL);
    wait_for(loop, &r.calls, 5000);
    CHECK(r.calls == 1);
    CHECK(r.code == SR_ETRANSPORT);
    CHECK(now_ms() - t0 < 1000);
    printf("     message: %s\n", r.message);
    CHECK(strstr(r.message, "GET http://127.0.0.1:") == r.message);
    CHECK(strstr(r.message, "Connection refused") != NULL);
    CHECK(strstr(r.message, "secret") == NULL); /* the query is left out */
    sr_loop_free(loop);
}

TEST(timeout)
{
    sr_loop *loop = sr_loop_new(NULL);
    result r;
    sr_http_opts o;
    double t0 = now_ms(), dt;
    memset(&o, 0, sizeof o);
    memset(&r, 0, sizeof r);
    o.url = url("/slow");
    o.timeout_ms = 200;
    CHECK(sr__http_request(loop, &o, on_done, &r, NULL) != NULL);
    wait_for(loop, &r.calls, 5000);
    dt = now_ms() - t0;
    CHECK(r.calls == 1);
    CHECK(r.code == SR_ETIMEOUT);
    CHECK(dt >= 190 && dt < 2000);
    printf("     message: %s (after %.0f ms)\n", r.message, dt);
    sr_loop_free(loop);
}

TEST(response_too_large)
{
    sr_loop *loop = sr_loop_new(NULL);
    result r;
    sr_http_opts o;
    memset(&o, 0, sizeof o);
    memset(&r, 0, sizeof r);
    o.url = url("/big"); /* 2 MiB with Content-Length; default limit 1 MiB */
    CHECK(sr__http_request(loop, &o, on_done, &r, NULL) != NULL);
    wait_for(loop, &r.calls, 5000);
    CHECK(r.calls == 1 && r.code == SR_EPROTOCOL);
    CHECK(strstr(r.message, "response too large") != NULL);

    memset(&r, 0, sizeof r);
    o.url = url("/big-unsized");
    o.max_body = 1000;
    CHECK(sr__http_request(loop, &o, on_done, &r, NULL) != NULL);
    wait_for(loop, &r.calls, 5000);
    CHECK(r.calls == 1 && r.code == SR_EPROTOCOL);
    CHECK(strstr(r.message, "response too large (over 1000 bytes)") != NULL);

    memset(&r, 0, sizeof r);
    o.url = url("/big");
    o.max_body = sizeof big;
    CHECK(sr__http_request(loop, &o, on_done, &r, NULL) != NULL);
    wait_for(loop, &r.calls, 5000);
    CHECK(r.calls == 1 && r.code == SR_OK && r.len == sizeof big);
    sr_loop_free(loop);
}

TEST(cancel)
{
    sr_loop *loop = sr_loop_new(NULL);
    result r1, r2, r3;
    sr_http_req *q;

    /* Cancelled at once, before the thread even started it. */
    q = get(loop, url("/hello"), &r1);
    CHECK(q != NULL);
    sr__http_cancel(q);

    /* Cancelled while the server is sitting on it. */
    q = get(loop, url("/slow"), &r2);
    CHECK(q != NULL);
    sr_loop_dispatch(loop, 100);
    sr__http_cancel(q);

    /* Cancelled after it finished but before its event was dispatched. */
    q = get(loop, url("/hello"), &r3);
    CHECK(q != NULL);
    CHECK(readable(loop, 5000));
    sr__http_cancel(q);

    sr_loop_dispatch(loop, 300);
    CHECK(r1.calls == 0 && r2.calls == 0 && r3.calls == 0);
    CHECK(!readable(loop, 0));
    sr_loop_free(loop);
}

TEST(cancel_then_free_loop_with_event_queued)
{
    sr_loop *loop = sr_loop_new(NULL);
    result r;
    sr_http_req *q = get(loop, url("/hello"), &r);
    CHECK(q != NULL);
    CHECK(readable(loop, 5000));
    sr__http_cancel(q);
    sr_loop_free(loop); /* the cancel job runs, the event is discarded: no leak */
    CHECK(r.calls == 0);
}

static sr_http_req *self_req;
static void cancel_self(void *ud, long status, const char *body, size_t len, const sr_error *err)
{
    on_done(ud, status, body, len, err);
    sr__http_cancel(self_req); /* no-op from inside its own done */
}

TEST(cancel_inside_done)
{
    sr_loop *loop = sr_loop_new(NULL);
    result r;
    sr_http_opts o;
    memset(&o, 0, sizeof o);
    memset(&r, 0, sizeof r);
    o.url = url("/hello");
    self_req = sr__http_request(loop, &o, cancel_self, &r, NULL);
    CHECK(self_req != NULL);
    wait_for(loop, &r.calls, 5000);
    CHECK(r.calls == 1 && r.status == 200);
    sr_loop_free(loop);
}

TEST(many_in_parallel)
{
    sr_loop *loop = sr_loop_new(NULL);
    static result r[40];
    int i, done = 0;
    double end = now_ms() + 10000;
    for (i = 0; i < 40; i++)
        CHECK(get(loop, url(i % 2 ? "/hello" : "/missing"), &r[i]) != NULL);
    while (done < 40 && now_ms() < end) {
        sr_loop_dispatch(loop, 100);
        for (done = 0, i = 0; i < 40; i++)
            done += r[i].calls;
    }
    for (i = 0; i < 40; i++) {
        CHECK(r[i].calls == 1 && r[i].code == SR_OK);
        CHECK(r[i].status == (i % 2 ? 200 : 404));
    }
    sr_loop_free(loop);
}

TEST(bad_arguments)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_http_opts o;
    sr_error err;
    result r;
    sr_header bad = {"X-Evil", "a\r\nInjected: 1"};
    memset(&o, 0, sizeof o);
    CHECK(sr__http_request(loop, &o, on_done, &r, &err) == NULL);
    CHECK(err.code == SR_EUSAGE);
    o.url = url("/hello");
    o.headers = &bad;
    o.nheaders = 1;
    CHECK(sr__http_request(loop, &o, on_done, &r, &err) == NULL);
    CHECK(err.code == SR_EUSAGE);
    CHECK(strstr(err.message, "header") != NULL);
    o.nheaders = 0;
    o.url = "ftp://127.0.0.1/x";
    memset(&r, 0, sizeof r);
    CHECK(sr__http_request(loop, &o, on_done, &r, &err) != NULL);
    wait_for(loop, &r.calls, 5000);
    CHECK(r.calls == 1 && r.code == SR_ETRANSPORT); /* unsupported protocol */
    sr_loop_free(loop);
}

int main(void)
{
    srv_start();
    RUN(get_ok);
    RUN(post_body_and_headers);
    RUN(not_found_is_a_response);
    RUN(redirects);
    RUN(connection_refused);
    RUN(timeout);
    RUN(response_too_large);
    RUN(cancel);
    RUN(cancel_then_free_loop_with_event_queued);
    RUN(cancel_inside_done);
    RUN(many_in_parallel);
    RUN(bad_arguments);
    srv_stop_all();
    DONE();
}
