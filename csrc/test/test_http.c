/* test_http.c - http.h requests against the loopback server of http_server.h,
 * with the endpoints below. */
#include <curl/curl.h> /* CURL_MAX_WRITE_SIZE: the largest piece a write callback gets */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"
#include "http.h"
#include "http_server.h"
#include "loop.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------- the server */

static char big[2 << 20];

static void respond(int fd, const char *status, const char *extra, const char *body, size_t len)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n", status,
                     len, extra ? extra : "");
    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
}

/* Wait for the client to go away (or 5 s): a response that never comes.
 * 1 when the client closed. */
static int hang(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    char c;
    ssize_t r = 1;
    while (poll(&p, 1, 5000) == 1 && (r = recv(fd, &c, 1, 0)) > 0)
        ;
    return r <= 0;
}

/* --------------------------------------------- streams: server <-> test */

/* What a streaming endpoint and the test tell each other; one stream test
 * runs at a time. */
static struct {
    int step;         /* test -> server: pieces the server may go past */
    int peer_closed;  /* server -> test: the client closed the stream's socket */
    int blocked;      /* server -> test: a send made no progress for 300 ms */
    size_t sent;      /* bytes of body the server has sent */
    size_t sent_then; /* ... when it first blocked */
} ctl;

#define BIG_STREAM ((size_t)48 << 20)

static void ctl_reset(void)
{
    pthread_mutex_lock(&srv_mu);
    ctl.step = ctl.peer_closed = ctl.blocked = 0;
    ctl.sent = ctl.sent_then = 0;
    pthread_mutex_unlock(&srv_mu);
}

static unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 131u + (i >> 10));
}

static void send_chunk(int fd, const char *p, size_t n)
{
    char head[32];
    int h = snprintf(head, sizeof head, "%zx\r\n", n);
    send_all(fd, head, (size_t)h);
    send_all(fd, p, n);
    send_all(fd, "\r\n", 2);
}

static const char *chunked_head =
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    "Content-Type: text/event-stream\r\n\r\n";

/* BIG_STREAM bytes of pattern in chunks of varied sizes. */
static void stream_big(int fd)
{
    static char buf[65536 + 32];
    size_t off = 0, k = 0;
    send_all(fd, chunked_head, strlen(chunked_head));
    while (off < BIG_STREAM) {
        size_t n = 4096 + (k++ * 7919) % 61440, i;
        int h;
        if (n > BIG_STREAM - off) n = BIG_STREAM - off;
        h = snprintf(buf, 32, "%zx\r\n", n);
        for (i = 0; i < n; i++)
            buf[h + i] = (char)pattern(off + i);
        memcpy(buf + h + n, "\r\n", 2);
        if (send_watched(fd, buf, (size_t)h + n + 2, &ctl.blocked) != 0) return;
        off += n;
        pthread_mutex_lock(&srv_mu);
        ctl.sent = off;
        if (!ctl.blocked) ctl.sent_then = off; /* what went before the first stall */
        pthread_mutex_unlock(&srv_mu);
    }
    send_all(fd, "0\r\n\r\n", 5);
}

/* The streaming endpoints. Each returns as the common tail expects. */
static void stream_respond(int fd, const char *path)
{
    if (strcmp(path, "/stream-steps") == 0) {
        /* One piece per step: the client must see each before the next. */
        static const char *pieces[] = {"alpha", "beta", "gamma"};
        int k;
        send_all(fd, chunked_head, strlen(chunked_head));
        for (k = 0; k < 3; k++) {
            send_chunk(fd, pieces[k], strlen(pieces[k]));
            if (k < 2 && !srv_wait(&ctl.step, k + 1, 5000)) return;
        }
        send_all(fd, "0\r\n\r\n", 5);
    } else if (strcmp(path, "/stream-hold") == 0) {
        send_all(fd, chunked_head, strlen(chunked_head));
        send_chunk(fd, "first", 5);
        if (!srv_wait(&ctl.step, 1, 5000)) return;
        send_chunk(fd, "second", 6);
        hang(fd); /* never ends: until the client goes */
    } else if (strcmp(path, "/stream-flood") == 0) {
        /* 256 KiB and the end at once: many pieces wait for the host. */
        send_all(fd, chunked_head, strlen(chunked_head));
        send_chunk(fd, big, 256 << 10);
        send_all(fd, "0\r\n\r\n", 5);
    } else if (strcmp(path, "/stream-cut") == 0) {
        /* Closed inside a chunked body: no last chunk. */
        send_all(fd, chunked_head, strlen(chunked_head));
        send_chunk(fd, "partial", 7);
    } else if (strcmp(path, "/stream-eof") == 0) {
        /* No length: the close ends the body. */
        const char *head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        send_all(fd, head, strlen(head));
        send_all(fd, "until close", 11);
    } else if (strcmp(path, "/stream-big") == 0) {
        stream_big(fd);
    }
}

static void serve(int fd, const srv_req *req)
{
    char path[256] = "", method[16] = "";
    sscanf(req->head, "%15s %255s", method, path);
    if (strcmp(path, "/hello") == 0) {
        respond(fd, "200 OK", "Content-Type: text/plain\r\n", "hello world", 11);
    } else if (strcmp(path, "/echo") == 0) {
        char out[4096];
        size_t ml = strlen(method);
        memcpy(out, method, ml);
        out[ml] = ':';
        memcpy(out + ml + 1, req->body, req->body_len); /* may hold NUL bytes */
        respond(fd, "200 OK", NULL, out, ml + 1 + req->body_len);
    } else if (strcmp(path, "/headers") == 0) {
        respond(fd, "200 OK", NULL, req->head, req->head_len);
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
    } else if (strncmp(path, "/stream-", 8) == 0) {
        stream_respond(fd, path);
    } else {
        respond(fd, "400 Bad Request", NULL, "", 0);
    }
    shutdown(fd, SHUT_WR);
    /* Until the client closes, so it reads everything. */
    if (hang(fd) && strncmp(path, "/stream-", 8) == 0) srv_set(&ctl.peer_closed, 1);
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

/* ------------------------------------------------------------- streams */

typedef struct stream {
    int headers, data, done;
    long headers_status, data_status, done_status;
    int code; /* done's: SR_OK when err was NULL */
    char message[512];
    int data_before_headers, data_after_done;
    char text[256]; /* the body, while it fits */
    size_t total, pieces[8];
    size_t bad;        /* check_pattern: 1 + offset of the first wrong byte */
    int check_pattern; /* the body is BIG_STREAM's pattern */
    int step_on_data;  /* each piece lets the server go one step further */
    int cancel_at;     /* cancel from inside the n-th on_data */
    const char *done_body;
    sr_http_req *req;
} stream;

static void st_headers(void *ud, long status)
{
    stream *st = ud;
    st->headers++;
    st->headers_status = status;
}

static void st_data(void *ud, long status, const char *p, size_t len)
{
    stream *st = ud;
    size_t i;
    st->data++;
    st->data_status = status;
    st->data_before_headers += !st->headers;
    st->data_after_done += st->done;
    if (st->data <= 8) st->pieces[st->data - 1] = len;
    if (st->total + len < sizeof st->text) {
        memcpy(st->text + st->total, p, len);
        st->text[st->total + len] = '\0';
    }
    for (i = 0; st->check_pattern && !st->bad && i < len; i++)
        if ((unsigned char)p[i] != pattern(st->total + i)) st->bad = st->total + i + 1;
    st->total += len;
    if (st->step_on_data) srv_set(&ctl.step, st->data);
    if (st->cancel_at == st->data) sr__http_cancel(st->req);
}

static void st_done(void *ud, long status, const char *body, size_t len, const sr_error *err)
{
    stream *st = ud;
    st->done++;
    st->done_status = status;
    st->done_body = body;
    st->code = err ? err->code : SR_OK;
    (void)len;
    snprintf(st->message, sizeof st->message, "%s", err ? err->message : "");
}

static sr_http_req *open_stream(sr_loop *loop, const char *u, stream *st, double timeout_ms)
{
    sr_http_opts o;
    sr_error err;
    memset(&o, 0, sizeof o);
    o.url = u;
    o.timeout_ms = timeout_ms;
    o.on_data = st_data;
    o.on_headers = st_headers;
    ctl_reset();
    st->req = sr__http_request(loop, &o, st_done, st, &err);
    return st->req;
}

TEST(stream_pieces_in_order)
{
    sr_loop *loop = sr_loop_new(NULL);
    stream st;
    memset(&st, 0, sizeof st);
    st.step_on_data = 1;
    CHECK(open_stream(loop, url("/stream-steps"), &st, 0) != NULL);
    wait_for(loop, &st.done, 5000);
    CHECK(st.headers == 1 && st.headers_status == 200);
    CHECK(st.data == 3 && st.data_status == 200);
    CHECK(st.pieces[0] == 5 && st.pieces[1] == 4 && st.pieces[2] == 5);
    CHECK_STR(st.text, "alphabetagamma");
    CHECK(st.data_before_headers == 0 && st.data_after_done == 0);
    CHECK(st.done == 1 && st.code == SR_OK && st.done_status == 200);
    CHECK(st.done_body == NULL);
    sr_loop_dispatch(loop, 0);
    CHECK(st.done == 1 && st.data == 3);
    sr_loop_free(loop);
}

TEST(stream_follows_redirects)
{
    sr_loop *loop = sr_loop_new(NULL);
    stream st;
    memset(&st, 0, sizeof st);
    CHECK(open_stream(loop, url("/redirect"), &st, 0) != NULL);
    wait_for(loop, &st.done, 5000);
    CHECK(st.headers == 1 && st.headers_status == 200); /* not the 302 */
    CHECK_STR(st.text, "hello world");
    CHECK(st.done == 1 && st.code == SR_OK && st.done_status == 200);
    sr_loop_free(loop);
}

/* The host does not dispatch while the server pushes far more than the
 * queue's bound: the transfer pauses (the server's send blocks) with the
 * queue over its high mark by one piece at most; then every byte arrives. */
TEST(stream_backpressure)
{
    sr_loop *loop = sr_loop_new(NULL);
    stream st;
    size_t queued, sent_then;
    double end;
    memset(&st, 0, sizeof st);
    st.check_pattern = 1;
    CHECK(open_stream(loop, url("/stream-big"), &st, 0) != NULL);
    CHECK(srv_wait(&ctl.blocked, 1, 30000));
    pthread_mutex_lock(&srv_mu);
    sent_then = ctl.sent_then;
    pthread_mutex_unlock(&srv_mu);
    /* One dispatch(0) runs exactly what was queued when it started. */
    sr_loop_dispatch(loop, 0);
    queued = st.total;
    printf("     queued %zu bytes when the server blocked after %zu\n", queued, sent_then);
    CHECK(sent_then < BIG_STREAM);
    CHECK(queued > SR_QUEUE_HIGH);
    CHECK(queued <= SR_QUEUE_HIGH + CURL_MAX_WRITE_SIZE);
    end = now_ms() + 60000;
    while (!st.done && now_ms() < end)
        sr_loop_dispatch(loop, 100);
    CHECK(st.done == 1 && st.code == SR_OK && st.done_status == 200);
    CHECK(st.total == BIG_STREAM);
    CHECK(st.bad == 0);
    CHECK(st.data_after_done == 0 && st.headers == 1);
    sr_loop_free(loop);
}

TEST(stream_cancel_midway)
{
    sr_loop *loop = sr_loop_new(NULL);
    stream st;
    memset(&st, 0, sizeof st);
    /* The connect timeout must not end a stream that lasts longer. */
    CHECK(open_stream(loop, url("/stream-hold"), &st, 100) != NULL);
    wait_for(loop, &st.data, 5000);
    CHECK(st.data == 1 && st.headers == 1);
    CHECK_STR(st.text, "first");
    sr_loop_dispatch(loop, 300); /* longer than timeout_ms; nothing may happen */
    CHECK(st.done == 0 && st.data == 1);
    /* "second" is posted but not dispatched when the host cancels. */
    srv_set(&ctl.step, 1);
    CHECK(readable(loop, 5000));
    sr__http_cancel(st.req);
    CHECK(srv_wait(&ctl.peer_closed, 1, 3000)); /* the transfer stopped at once */
    sr_loop_dispatch(loop, 0);
    CHECK(!readable(loop, 0));
    CHECK(st.data == 1 && st.done == 0);
    sr_loop_free(loop);
    CHECK(st.data == 1 && st.done == 0);
}

TEST(stream_cancel_inside_on_data)
{
    sr_loop *loop = sr_loop_new(NULL);
    stream st;
    memset(&st, 0, sizeof st);
    st.cancel_at = 1;
    CHECK(open_stream(loop, url("/stream-flood"), &st, 0) != NULL);
    /* The whole body (many pieces) and the end are queued before the host
     * dispatches: the server saw the client close after the last chunk. */
    CHECK(srv_wait(&ctl.peer_closed, 1, 5000));
    CHECK(readable(loop, 0));
    sr_loop_dispatch(loop, 0);
    CHECK(st.data == 1 && st.done == 0);
    CHECK(st.total < (256 << 10)); /* more pieces were waiting */
    sr_loop_dispatch(loop, 0);
    CHECK(!readable(loop, 0));
    sr_loop_free(loop);
    CHECK(st.data == 1 && st.done == 0);
}

TEST(stream_closed_early)
{
    sr_loop *loop = sr_loop_new(NULL);
    stream st;
    memset(&st, 0, sizeof st);
    /* Cut inside a chunked body: the data first, then a transport error
     * that still carries the status. */
    CHECK(open_stream(loop, url("/stream-cut"), &st, 0) != NULL);
    wait_for(loop, &st.done, 5000);
    CHECK_STR(st.text, "partial");
    CHECK(st.done == 1 && st.code == SR_ETRANSPORT && st.done_status == 200);
    CHECK(st.data_after_done == 0);
    printf("     message: %s\n", st.message);
    /* A body without a length ends with the close: no error. */
    memset(&st, 0, sizeof st);
    CHECK(open_stream(loop, url("/stream-eof"), &st, 0) != NULL);
    wait_for(loop, &st.done, 5000);
    CHECK_STR(st.text, "until close");
    CHECK(st.done == 1 && st.code == SR_OK && st.done_status == 200);
    sr_loop_free(loop);
}

TEST(stream_connection_refused)
{
    sr_loop *loop = sr_loop_new(NULL);
    stream st;
    char u[64];
    memset(&st, 0, sizeof st);
    snprintf(u, sizeof u, "http://127.0.0.1:%d/stream", closed_port());
    CHECK(open_stream(loop, u, &st, 1000) != NULL);
    wait_for(loop, &st.done, 5000);
    CHECK(st.done == 1 && st.code == SR_ETRANSPORT);
    CHECK(strstr(st.message, "Connection refused") != NULL);
    CHECK(st.headers == 0 && st.data == 0);
    sr_loop_free(loop);
}

/* The host cancels and frees the loop at once: the cancel job still ends
 * the transfer before the HTTP thread stops, and the queued data is
 * dropped without a callback. */
TEST(stream_cancel_then_free_loop)
{
    sr_loop *loop = sr_loop_new(NULL);
    stream st;
    memset(&st, 0, sizeof st);
    CHECK(open_stream(loop, url("/stream-hold"), &st, 0) != NULL);
    wait_for(loop, &st.data, 5000);
    CHECK(st.data == 1);
    srv_set(&ctl.step, 1);
    CHECK(readable(loop, 5000)); /* "second" waits in the queue */
    sr__http_cancel(st.req);
    sr_loop_free(loop);
    CHECK(srv_wait(&ctl.peer_closed, 1, 3000));
    CHECK(st.done == 0 && st.data == 1);
}

int main(void)
{
    memset(big, 'x', sizeof big);
    srv_start(serve);
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
    RUN(stream_pieces_in_order);
    RUN(stream_follows_redirects);
    RUN(stream_backpressure);
    RUN(stream_cancel_midway);
    RUN(stream_cancel_inside_on_data);
    RUN(stream_closed_early);
    RUN(stream_connection_refused);
    RUN(stream_cancel_then_free_loop);
    srv_stop_all();
    DONE();
}
