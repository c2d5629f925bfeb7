/*
 * test_sse_transport.c - the Server-Sent Events transport against the
 * loopback HTTP server of http_server.h, with these endpoints. The server
 * answers GET with an event stream the test feeds piece by piece (or a
 * status), and POST with a status, optionally holding each answer until the
 * test lets it go; it records every request and POST body.
 */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define SRV_MAX_CONNS 512
#include "harness.h"
#include "http_server.h"
#include "http_tp_client.h"
#include "liveness.h"
#include "loop.h"
#include "transport.h"

/* ============================================================ the server */

#define MAX_PIECES 64

/* What the server does and saw; srv_mu guards it all, srv_cv signals changes. */
static struct {
    /* Behaviour, set by the test. */
    int get_status; /* the GET's answer: 200 (an event stream) or an error */
    size_t flood;   /* > 0: after the headers send this many bytes of events */
    char *pieces[MAX_PIECES];
    size_t piece_len[MAX_PIECES];
    int npieces;
    int end_stream; /* end the event stream after the pieces */
    /* What it saw. */
    int gets;
    int streams; /* event streams still being served */
    char get_req[4096];
    int get_closed; /* the client closed an event stream */
    int blocked;    /* the flood made no progress for 300 ms */
} S;

/* Between tests: the streams of the last one end first (their clients are
 * gone), so nothing they do lands in the next test's record. */
static void srv_reset(void)
{
    int i;
    struct timespec end = srv_deadline(5000);
    pthread_mutex_lock(&srv_mu);
    while (S.streams > 0 && pthread_cond_timedwait(&srv_cv, &srv_mu, &end) == 0)
        ;
    for (i = 0; i < S.npieces; i++)
        free(S.pieces[i]);
    srv_posts_reset();
    S.get_status = 200;
    S.flood = 0;
    S.npieces = S.end_stream = 0;
    S.gets = S.get_closed = S.blocked = 0;
    S.get_req[0] = '\0';
    pthread_mutex_unlock(&srv_mu);
}

/* The event stream gets these bytes as one send of their own. */
static void srv_push(const char *p, size_t n)
{
    pthread_mutex_lock(&srv_mu);
    S.pieces[S.npieces] = malloc(n);
    memcpy(S.pieces[S.npieces], p, n);
    S.piece_len[S.npieces++] = n;
    pthread_cond_broadcast(&srv_cv);
    pthread_mutex_unlock(&srv_mu);
}

static void srv_push_str(const char *s)
{
    srv_push(s, strlen(s));
}

/* Events of 16 KiB until S.flood bytes went. */
#define FLOOD_X 16000
static void flood(int fd, size_t total)
{
    static char ev[FLOOD_X + 32];
    size_t off = 0, k = 0;
    while (off < total) {
        int n = snprintf(ev, sizeof ev, "data: %08zu", k++);
        memset(ev + n, 'x', FLOOD_X);
        memcpy(ev + n + FLOOD_X, "\x1e\n\n", 3);
        if (send_watched(fd, ev, (size_t)n + FLOOD_X + 3, &S.blocked) != 0) return;
        off += (size_t)n + FLOOD_X + 3;
    }
}

static void stream(int fd)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
    int sent = 0;
    size_t fl;
    send_all(fd, head, sizeof head - 1);
    pthread_mutex_lock(&srv_mu);
    fl = S.flood;
    pthread_mutex_unlock(&srv_mu);
    if (fl) flood(fd, fl);
    for (;;) {
        struct timespec t = srv_deadline(20);
        pthread_mutex_lock(&srv_mu);
        if (sent < S.npieces) {
            char *p = S.pieces[sent];
            size_t n = S.piece_len[sent++];
            pthread_mutex_unlock(&srv_mu);
            send_all(fd, p, n);
            usleep(2000); /* so the client reads the pieces apart */
            continue;
        }
        if (S.end_stream || srv_stopping()) {
            pthread_mutex_unlock(&srv_mu);
            return;
        }
        pthread_cond_timedwait(&srv_cv, &srv_mu, &t);
        pthread_mutex_unlock(&srv_mu);
        if (fl) send_all(fd, ":\n", 2); /* after a flood: a comment every 20 ms keeps it alive */
        if (peer_gone(fd)) {
            srv_set(&S.get_closed, 1);
            return;
        }
    }
}

static void respond(int fd, int status)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno", status);
    send_all(fd, head, (size_t)n);
}

static void serve(int fd, const srv_req *req)
{
    if (strncmp(req->head, "GET ", 4) == 0) {
        int status;
        pthread_mutex_lock(&srv_mu);
        S.gets++;
        snprintf(S.get_req, sizeof S.get_req, "%.*s", (int)req->head_len, req->head);
        status = S.get_status;
        pthread_cond_broadcast(&srv_cv);
        pthread_mutex_unlock(&srv_mu);
        if (status == 200) {
            pthread_mutex_lock(&srv_mu);
            S.streams++;
            pthread_mutex_unlock(&srv_mu);
            stream(fd);
            pthread_mutex_lock(&srv_mu);
            S.streams--;
            pthread_cond_broadcast(&srv_cv);
            pthread_mutex_unlock(&srv_mu);
        } else
            respond(fd, status);
    } else if (strncmp(req->head, "POST ", 5) == 0) {
        respond(fd, srv_post(req));
    }
}

/* ============================================================ the client */

static char url_buf[128];
static const char *hub_url(void)
{
    snprintf(url_buf, sizeof url_buf, "http://127.0.0.1:%d/hub?id=tok", srv_port);
    return url_buf;
}

static sr_transport *open_tp(sr_loop *loop, const sr_transport_cfg *c, rec *r)
{
    sr_error err;
    memset(r, 0, sizeof *r);
    return sr__sse_transport_new(loop, c, &ups, r, &err);
}

/* ================================================================= tests */

/* The GET carries Accept and the headers; the handshake is the first POST;
 * events cut at odd places, several records per event and a record split
 * across two events arrive whole and in order. */
TEST(t_open_receive_json)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c = json_cfg(hub_url());
    sr_transport *tp;
    rec r;
    srv_reset();
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    CHECK_STR(sr__transport_name(tp), "ServerSentEvents");
    wait_for(loop, &r.opened, 1, 5000);
    CHECK(r.opened == 1 && r.closed == 0);
    CHECK(srv_wait(&srv_posts.n, 1, 5000));
    CHECK(post_is(0, HANDSHAKE));
    CHECK(strstr(S.get_req, "GET /hub?id=tok HTTP/1.1\r\n") == S.get_req);
    CHECK(strstr(S.get_req, "\r\nAccept: text/event-stream") != NULL);
    CHECK(strstr(S.get_req, "\r\nAuthorization: Bearer abc") != NULL);
    CHECK(strstr(S.get_req, "\r\nX-Test: yes") != NULL);
    CHECK(strstr(srv_posts.req, "POST /hub?id=tok HTTP/1.1\r\n") == srv_posts.req);
    CHECK(strstr(srv_posts.req, "\r\nContent-Type: text/plain;charset=UTF-8") != NULL);
    CHECK(strstr(srv_posts.req, "\r\nAuthorization: Bearer abc") != NULL);

    srv_push_str("data: {}\x1e\r\n\r\ndata: " INV("a") "{\"type\":1,\"tar");
    srv_push_str("\r\n\r\n:comment\r\nda");
    srv_push_str("ta: get\":\"b\",\"arguments\":[]}\x1e\n\ndata: " INV("c") INV("d") "\r");
    srv_push_str("\n\r\n");
    wait_for(loop, &r.nmsgs, 4, 5000);
    CHECK(r.nmsgs == 4);
    CHECK_STR(r.targets, "a,b,c,d,");
    CHECK(r.data_len == 3 && memcmp(r.data, "{}\x1e", 3) == 0); /* the reply, raw */
    CHECK(r.closed == 0 && r.after_close == 0);
    CHECK(srv_posts.n == 1);
    sr__transport_release(tp);
    sr_loop_free(loop);
    CHECK(srv_wait(&S.get_closed, 1, 5000));
}

/* Without a protocol the events' data reaches on_data as it arrives (in
 * pieces, events one after the other): multi-line data joined by "\n",
 * comments and other fields dropped. No handshake: nothing is POSTed. */
TEST(t_raw_events)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    srv_reset();
    memset(&c, 0, sizeof c);
    c.url = hub_url();
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.opened, 1, 5000);
    srv_push_str("data: one\n\ndata: tw");
    srv_push_str("o\ndata: three\r\n\r\n: c\n\nid: 5\nevent: x\ndata:four\r\r");
    srv_push_str("retry: 1\n\ndata\n\ndata: end\n\n");
    {
        double end = now_ms() + 5000;
        while (strcmp(r.data, "onetwo\nthreefourend") != 0 && now_ms() < end)
            sr_loop_dispatch(loop, 50);
    }
    CHECK_STR(r.data, "onetwo\nthreefourend");
    CHECK(r.msg_calls == 0);
    CHECK(srv_posts.n == 0);
    sr__transport_close(tp);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.closed == 1 && r.close_code == SR_OK);
    CHECK(srv_wait(&S.get_closed, 1, 5000));
    sr__transport_release(tp);
    sr_loop_free(loop);
}

/* One POST outstanding; what is sent meanwhile goes whole in the next. */
TEST(t_send_batching)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c = json_cfg(hub_url());
    sr_transport *tp;
    rec r;
    srv_reset();
    srv_posts.hold = 1;
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.opened, 1, 5000);
    CHECK(srv_wait(&srv_posts.n, 1, 5000)); /* the handshake, held */
    CHECK(sr__transport_send(tp, "m1\x1e", 3) == SR_OK);
    CHECK(sr__transport_send(tp, "m2\x1e", 3) == SR_OK);
    CHECK(sr__transport_send(tp, "m3\x1e", 3) == SR_OK);
    srv_set(&srv_posts.released, 1);
    CHECK(srv_wait(&srv_posts.n, 2, 5000));
    CHECK(post_is(1, "m1\x1em2\x1em3\x1e"));
    CHECK(sr__transport_send(tp, "m4\x1e", 3) == SR_OK);
    CHECK(sr__transport_send(tp, "m5\x1e", 3) == SR_OK);
    srv_set(&srv_posts.released, 2);
    CHECK(srv_wait(&srv_posts.n, 3, 5000));
    CHECK(post_is(2, "m4\x1em5\x1e"));
    srv_set(&srv_posts.released, 100);
    CHECK(sr__transport_send(tp, "m6\x1e", 3) == SR_OK);
    CHECK(srv_wait(&srv_posts.n, 4, 5000));
    CHECK(posts_are(HANDSHAKE "m1\x1em2\x1em3\x1em4\x1em5\x1em6\x1e", strlen(HANDSHAKE) + 18));
    CHECK(srv_posts.max_inflight == 1);
    sr_loop_dispatch(loop, 0);
    CHECK(r.closed == 0);
    sr__transport_release(tp);
    sr_loop_free(loop);
}

TEST(t_post_404)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c = json_cfg(hub_url());
    sr_transport *tp;
    rec r;
    srv_reset();
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.opened, 1, 5000);
    CHECK(srv_wait(&srv_posts.n, 1, 5000));
    srv_set(&srv_posts.status, 404); /* the handshake got its 200 */
    CHECK(sr__transport_send(tp, "x\x1e", 2) == SR_OK);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.closed == 1 && r.close_code == SR_ETRANSPORT && r.close_status == 404);
    printf("     message: %s\n", r.close_msg);
    CHECK(strstr(r.close_msg, "HTTP 404") != NULL);
    CHECK(strstr(r.close_msg, "tok") == NULL); /* the token is left out */
    CHECK(sr__transport_send(tp, "y", 1) == SR_ECLOSED);
    CHECK(srv_wait(&S.get_closed, 1, 5000)); /* the stream was ended too */
    sr__transport_release(tp);
    sr_loop_free(loop);
}

TEST(t_get_404)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c = json_cfg(hub_url());
    sr_transport *tp;
    rec r;
    srv_reset();
    S.get_status = 404;
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.opened == 0 && r.closed == 1);
    CHECK(r.close_code == SR_ETRANSPORT && r.close_status == 404);
    printf("     message: %s\n", r.close_msg);
    CHECK(strstr(r.close_msg, "HTTP 404") != NULL);
    CHECK(strstr(r.close_msg, "tok") == NULL);
    CHECK(srv_posts.n == 0);
    sr__transport_release(tp);
    sr_loop_free(loop);
}

TEST(t_refused)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c = json_cfg(hub_url());
    sr_transport *tp;
    rec r;
    char u[64];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/hub?id=tok", closed_port());
    c.url = u;
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.opened == 0 && r.closed == 1 && r.close_code == SR_ETRANSPORT);
    printf("     message: %s\n", r.close_msg);
    CHECK(strstr(r.close_msg, "Connection refused") != NULL);
    sr__transport_release(tp);
    sr_loop_free(loop);
}

TEST(t_server_ends_stream)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c = json_cfg(hub_url());
    sr_transport *tp;
    rec r;
    srv_reset();
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.opened, 1, 5000);
    srv_push_str("data: {}\x1e\n\ndata: " INV("last") "\n\n");
    srv_set(&S.end_stream, 1);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.nmsgs == 1 && r.closed == 1); /* the data first, then the end */
    CHECK(r.close_code == SR_ECLOSED);
    printf("     message: %s\n", r.close_msg);
    CHECK(strstr(r.close_msg, "ended by the server") != NULL);
    CHECK(r.after_close == 0);
    sr__transport_release(tp);
    sr_loop_free(loop);
}

/* A close asked by the host sends what was queued first, then ends the
 * stream cleanly. */
TEST(t_close_after_sends)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c = json_cfg(hub_url());
    sr_transport *tp;
    rec r;
    srv_reset();
    srv_posts.hold = 1;
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.opened, 1, 5000);
    CHECK(srv_wait(&srv_posts.n, 1, 5000));
    CHECK(sr__transport_send(tp, "m1\x1e", 3) == SR_OK);
    CHECK(sr__transport_send(tp, "m2\x1e", 3) == SR_OK);
    sr__transport_close(tp);
    CHECK(sr__transport_send(tp, "late", 4) == SR_ECLOSED);
    sr_loop_dispatch(loop, 30);
    CHECK(r.closed == 0 && S.get_closed == 0); /* the queue is not out yet */
    srv_set(&srv_posts.released, 100);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.closed == 1 && r.close_code == SR_OK);
    CHECK(posts_are(HANDSHAKE "m1\x1em2\x1e", strlen(HANDSHAKE) + 6));
    CHECK(srv_wait(&S.get_closed, 1, 5000));
    sr__transport_release(tp);
    sr_loop_free(loop);
}

/* Idle, the transport POSTs the ping bytes every keepalive_ms, from the
 * HTTP thread: the host does not dispatch meanwhile. */
TEST(t_keepalive)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c = json_cfg(hub_url());
    sr_transport *tp;
    rec r;
    double t0;
    srv_reset();
    c.keepalive_ms = 60;
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.opened, 1, 5000);
    t0 = now_ms();
    CHECK(srv_wait(&srv_posts.n, 3, 5000));
    printf("     two pings after %.0f ms\n", now_ms() - t0);
    CHECK(now_ms() - t0 >= 100);
    CHECK(post_is(0, HANDSHAKE) && post_is(1, PING) && post_is(2, PING));
    CHECK(srv_posts.max_inflight == 1);
    sr_loop_dispatch(loop, 0);
    CHECK(r.closed == 0);
    sr__transport_release(tp);
    sr_loop_free(loop);
}

TEST(t_server_timeout)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c = json_cfg(hub_url());
    sr_transport *tp;
    rec r;
    double t0;
    srv_reset();
    c.server_timeout_ms = 200;
    /* The timeout runs from the open, which comes after this: however late
     * a loaded machine delivers the open event, the close cannot come
     * sooner than 200 ms from here. */
    t0 = now_ms();
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.opened, 1, 5000);
    CHECK(readable(loop, 5000)); /* the close, with no dispatch meanwhile */
    CHECK(now_ms() - t0 >= 195);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.closed == 1 && r.close_code == SR_ETIMEOUT);
    CHECK_STR(r.close_msg, SR_LIVENESS_SERVER_TIMEOUT_TEXT);
    CHECK(srv_wait(&S.get_closed, 1, 5000));
    sr__transport_release(tp);
    sr_loop_free(loop);
}

TEST(t_handshake_timeout)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c = json_cfg(hub_url());
    sr_transport *tp;
    rec r;
    srv_reset();
    c.handshake_timeout_ms = 150;
    c.server_timeout_ms = 5000;
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    srv_push_str(": a comment is no answer\n\n");
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.opened == 1 && r.closed == 1 && r.close_code == SR_ETIMEOUT);
    CHECK_STR(r.close_msg, SR_LIVENESS_HANDSHAKE_TIMEOUT_TEXT);
    sr__transport_release(tp);
    sr_loop_free(loop);
}

/* Released with a POST held by the server, data and the open queued for
 * the host, then the loop freed: no upcall, no leak, no thread left. */
TEST(t_release_in_flight)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c = json_cfg(hub_url());
    sr_transport *tp, *tp2;
    rec r, r2;
    srv_reset();
    srv_posts.hold = 1;
    srv_push_str("data: {}\x1e" INV("x") "\n\n");
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    CHECK(srv_wait(&srv_posts.n, 1, 5000));
    CHECK(sr__transport_send(tp, "m1\x1e", 3) == SR_OK);
    CHECK(readable(loop, 5000));
    /* A second one released before its open job even ran. */
    tp2 = open_tp(loop, &c, &r2);
    CHECK(tp2 != NULL);
    sr__transport_release(tp2);
    sr__transport_release(tp);
    sr_loop_dispatch(loop, 0);
    sr_loop_free(loop);
    CHECK(r.opened == 0 && r.closed == 0 && r.data_calls == 0 && r.nmsgs == 0);
    CHECK(r2.opened == 0 && r2.closed == 0);
    srv_set(&srv_posts.released, 100);
}

/* Closed at once, while connecting: a clean end. */
TEST(t_close_connecting)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c = json_cfg(hub_url());
    sr_transport *tp;
    rec r;
    srv_reset();
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    sr__transport_close(tp);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.closed == 1 && r.close_code == SR_OK);
    /* The GET may answer before the close reaches the HTTP thread: then the
     * transport opened, and its queue (the handshake) goes out before the
     * clean close; otherwise nothing is sent. */
    CHECK(srv_posts.n == 0 || (r.opened == 1 && srv_posts.n == 1 && post_is(0, HANDSHAKE)));
    sr__transport_release(tp);
    sr_loop_free(loop);
}

TEST(t_bad_args)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c = json_cfg(hub_url());
    sr_header bad = {"X-Evil", "a\r\nInjected: 1"};
    sr_error err;
    rec r;
    c.binary = 1;
    CHECK(sr__sse_transport_new(loop, &c, &ups, &r, &err) == NULL);
    CHECK(err.code == SR_EUSAGE);
    CHECK(strstr(err.message, "text only") != NULL);
    c.binary = 0;
    c.url = "ftp://127.0.0.1/hub";
    CHECK(sr__sse_transport_new(loop, &c, &ups, &r, &err) == NULL);
    CHECK(err.code == SR_EUSAGE);
    c.url = hub_url();
    c.headers = &bad;
    c.nheaders = 1;
    CHECK(sr__sse_transport_new(loop, &c, &ups, &r, &err) == NULL);
    CHECK(err.code == SR_EUSAGE && strstr(err.message, "header") != NULL);
    CHECK(sr__sse_transport_new(NULL, &c, &ups, &r, &err) == NULL);
    sr_loop_free(loop);
}

/* The server pushes far more than the queue's bound while the host does
 * not dispatch: the GET pauses (the server's send blocks), the server
 * timeout does not fire while paused, and then every byte arrives in
 * order. */
TEST(t_backpressure)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    /* Over the queue's 8 MiB and what the sockets buffer: the server blocks. */
    size_t total = (size_t)24 << 20, per = 14 + FLOOD_X + 3, events;
    double end;
    srv_reset();
    memset(&c, 0, sizeof c);
    c.url = hub_url();
    c.server_timeout_ms = 250;
    S.flood = total;
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    CHECK(srv_wait(&S.blocked, 1, 30000));
    usleep(400000); /* longer than the server timeout: paused, it must not fire */
    end = now_ms() + 60000;
    events = (total + per - 1) / per;
    while (r.total < events * (per - 8) && !r.closed && now_ms() < end)
        sr_loop_dispatch(loop, 100);
    printf("     %d data upcalls, %zu bytes\n", r.data_calls, r.total);
    CHECK(r.closed == 0);
    CHECK(r.total == events * (per - 8)); /* "data: " and the blank line are not data */
    sr__transport_release(tp);
    sr_loop_free(loop);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* a sanitizer's report ends the process unflushed */
    srv_start(serve);
    RUN(t_open_receive_json);
    RUN(t_raw_events);
    RUN(t_send_batching);
    RUN(t_post_404);
    RUN(t_get_404);
    RUN(t_refused);
    RUN(t_server_ends_stream);
    RUN(t_close_after_sends);
    RUN(t_keepalive);
    RUN(t_server_timeout);
    RUN(t_handshake_timeout);
    RUN(t_release_in_flight);
    RUN(t_close_connecting);
    RUN(t_bad_args);
    RUN(t_backpressure);
    srv_stop_all();
    srv_reset();
    DONE();
}
