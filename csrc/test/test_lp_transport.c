/*
 * test_lp_transport.c - the Long Polling transport against the loopback
 * HTTP server of http_server.h, with these endpoints. Each poll (GET)
 * takes the next answer the test scripted (a status and a body), or is held
 * until one is scripted, a DELETE arrives (then it is answered 204, as the
 * ASP.NET Core server does) or the client goes away. POSTs are answered
 * with a status, optionally held until the test lets them go. The server
 * records every request, every POST body and the order of the requests.
 */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define SRV_MAX_CONNS 1024
#include "harness.h"
#include "http_server.h"
#include "http_tp_client.h"
#include "liveness.h"
#include "loop.h"
#include "transport.h"

/* ============================================================ the server */

#define MAX_ANSWERS 64

/* What the server does and saw; srv_mu guards it all, srv_cv signals changes. */
static struct {
    /* Behaviour, set by the test. */
    /* The polls' answers in order; body NULL with len > 0: a flood of len
     * bytes ('a' + i % 26). */
    int ans_status[MAX_ANSWERS];
    char *ans_body[MAX_ANSWERS];
    size_t ans_len[MAX_ANSWERS];
    int nans, next_ans;
    /* What it saw. */
    int polls;     /* GETs received */
    int held;      /* polls being held now */
    int poll_gone; /* held polls the client closed */
    int answered;  /* polls answered (scripted, or 204) */
    int got_204;   /* polls answered 204 after a DELETE */
    int deleted;   /* DELETEs received: later polls get 204 */
    int blocked;   /* a flood made no progress for 300 ms */
    char get_req[4096], del_req[4096];
    char order[512]; /* G(et) P(ost) D(elete), in arrival order */
    /* The test's number, in its URLs (g=): a request of an earlier test
     * that the server accepts late (its client is gone) is answered 410
     * and not recorded, so it cannot take this test's scripted answers. */
    int gen;
} S;

static void note(char c)
{
    size_t n = strlen(S.order);
    if (n + 1 < sizeof S.order) {
        S.order[n] = c;
        S.order[n + 1] = '\0';
    }
}

/* Between tests: the held polls of the last one end first (their clients
 * are gone), so nothing they do lands in the next test's record. */
static void srv_reset(void)
{
    int i;
    struct timespec end = srv_deadline(5000);
    pthread_mutex_lock(&srv_mu);
    while (S.held > 0 && pthread_cond_timedwait(&srv_cv, &srv_mu, &end) == 0)
        ;
    for (i = 0; i < S.nans; i++)
        free(S.ans_body[i]);
    srv_posts_reset();
    S.nans = S.next_ans = 0;
    S.polls = S.poll_gone = S.answered = S.got_204 = S.deleted = S.blocked = 0;
    S.get_req[0] = S.del_req[0] = S.order[0] = '\0';
    S.gen++;
    pthread_mutex_unlock(&srv_mu);
}

/* The next poll without an answer gets this one. */
static void srv_answer(int status, const char *body, size_t len)
{
    pthread_mutex_lock(&srv_mu);
    S.ans_status[S.nans] = status;
    S.ans_body[S.nans] = body ? malloc(len ? len : 1) : NULL;
    if (body) memcpy(S.ans_body[S.nans], body, len);
    S.ans_len[S.nans++] = len;
    pthread_cond_broadcast(&srv_cv);
    pthread_mutex_unlock(&srv_mu);
}

static void srv_answer_str(const char *s)
{
    srv_answer(200, s, strlen(s));
}

static void flood(int fd, size_t total)
{
    static char chunk[65536];
    size_t off = 0, i;
    for (i = 0; i < sizeof chunk; i++)
        chunk[i] = (char)('a' + i % 26);
    while (off < total) {
        size_t n = total - off < sizeof chunk ? total - off : sizeof chunk;
        if (send_watched(fd, chunk, n, &S.blocked) != 0) return;
        off += n;
    }
}

static void respond(int fd, int status, const char *body, size_t n)
{
    char head[256];
    int h =
        status == 204
            ? snprintf(head, sizeof head, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            : snprintf(head, sizeof head,
                       "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
                       n);
    send_all(fd, head, (size_t)h);
    if (status == 204) return;
    if (body)
        send_all(fd, body, n);
    else
        flood(fd, n);
}

/* A poll: the next scripted answer, or held. */
static void poll_req(int fd, const srv_req *req)
{
    int status = 0, i;
    char *body = NULL;
    size_t n = 0;
    pthread_mutex_lock(&srv_mu);
    S.polls++;
    note('G');
    snprintf(S.get_req, sizeof S.get_req, "%.*s", (int)req->head_len, req->head);
    pthread_cond_broadcast(&srv_cv);
    S.held++;
    for (;;) {
        struct timespec t = srv_deadline(20);
        if (S.next_ans < S.nans) {
            i = S.next_ans++;
            status = S.ans_status[i];
            body = S.ans_body[i];
            n = S.ans_len[i];
            break;
        }
        if (S.deleted) {
            status = 204;
            S.got_204++;
            break;
        }
        if (srv_stopping()) break;
        pthread_cond_timedwait(&srv_cv, &srv_mu, &t);
        pthread_mutex_unlock(&srv_mu);
        if (peer_gone(fd)) {
            pthread_mutex_lock(&srv_mu);
            S.poll_gone++;
            break;
        }
        pthread_mutex_lock(&srv_mu);
    }
    pthread_mutex_unlock(&srv_mu);
    /* The body stays allocated until srv_reset, which waits for held polls. */
    if (status) respond(fd, status, body, n);
    pthread_mutex_lock(&srv_mu);
    if (status) S.answered++;
    S.held--;
    pthread_cond_broadcast(&srv_cv);
    pthread_mutex_unlock(&srv_mu);
}

static void post_req(int fd, const srv_req *req)
{
    pthread_mutex_lock(&srv_mu);
    note('P');
    pthread_mutex_unlock(&srv_mu);
    respond(fd, srv_post(req), "ok", 2);
}

static void del_req(int fd, const srv_req *req)
{
    pthread_mutex_lock(&srv_mu);
    note('D');
    snprintf(S.del_req, sizeof S.del_req, "%.*s", (int)req->head_len, req->head);
    S.deleted++;
    pthread_cond_broadcast(&srv_cv);
    pthread_mutex_unlock(&srv_mu);
    respond(fd, 202, "", 0);
}

/* The request line's g= is not the current test's. */
static int stale(const char *req)
{
    const char *g = strstr(req, "&g="), *eol = strstr(req, "\r\n");
    int gen;
    if (!g || !eol || g > eol) return 0;
    pthread_mutex_lock(&srv_mu);
    gen = S.gen;
    pthread_mutex_unlock(&srv_mu);
    return atoi(g + 3) != gen;
}

static void serve(int fd, const srv_req *req)
{
    if (stale(req->head))
        respond(fd, 410, "stale", 5);
    else if (strncmp(req->head, "GET ", 4) == 0)
        poll_req(fd, req);
    else if (strncmp(req->head, "POST ", 5) == 0)
        post_req(fd, req);
    else if (strncmp(req->head, "DELETE ", 7) == 0)
        del_req(fd, req);
}

/* ============================================================ the client */

static char url_buf[128];
static const char *hub_url(void)
{
    snprintf(url_buf, sizeof url_buf, "http://127.0.0.1:%d/hub?id=tok&g=%d", srv_port, S.gen);
    return url_buf;
}

static sr_transport *open_tp(sr_loop *loop, const sr_transport_cfg *c, rec *r)
{
    sr_error err;
    memset(r, 0, sizeof *r);
    return sr__lp_transport_new(loop, c, &ups, r, &err);
}

/* Open a JSON transport whose first poll is answered with an empty 200:
 * on_open has run and the handshake has been POSTed (and answered unless
 * posts are held). */
static sr_transport *open_json(sr_loop *loop, sr_transport_cfg *c, rec *r)
{
    sr_transport *tp;
    srv_answer_str("");
    tp = open_tp(loop, c, r);
    if (!tp) return NULL;
    wait_for(loop, &r->opened, 1, 5000);
    srv_wait(&srv_posts.n, 1, 5000);
    return tp;
}

/* ================================================================= tests */

/* The first poll's 200 opens the transport and the handshake is the first
 * POST; the polls carry the headers; data across several polls (an empty
 * 200 among them, and one message split across two polls) arrives whole
 * and in order, the handshake reply raw. */
TEST(t_open_receive_json)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    srv_reset();
    c = json_cfg(hub_url());
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    CHECK_STR(sr__transport_name(tp), "LongPolling");
    CHECK(srv_wait(&S.polls, 1, 5000));
    sr_loop_dispatch(loop, 30);
    CHECK(r.opened == 0 && srv_posts.n == 0); /* no answer to the first poll yet */
    srv_answer_str("");
    wait_for(loop, &r.opened, 1, 5000);
    CHECK(r.opened == 1 && r.closed == 0);
    CHECK(srv_wait(&srv_posts.n, 1, 5000));
    CHECK(post_is(0, HANDSHAKE));
    CHECK(strstr(S.get_req, "GET /hub?id=tok&g=") == S.get_req);
    CHECK(strstr(S.get_req, "\r\nAuthorization: Bearer abc") != NULL);
    CHECK(strstr(S.get_req, "\r\nX-Test: yes") != NULL);
    CHECK(strstr(srv_posts.req, "POST /hub?id=tok&g=") == srv_posts.req);
    CHECK(strstr(srv_posts.req, "\r\nContent-Type: text/plain;charset=UTF-8") != NULL);
    CHECK(strstr(srv_posts.req, "\r\nAuthorization: Bearer abc") != NULL);

    srv_answer_str("{}\x1e" INV("a") "{\"type\":1,\"tar");
    srv_answer_str("");
    srv_answer_str("get\":\"b\",\"arguments\":[]}\x1e" INV("c") INV("d"));
    wait_for(loop, &r.nmsgs, 4, 5000);
    CHECK(r.nmsgs == 4);
    CHECK_STR(r.targets, "a,b,c,d,");
    CHECK(r.data_len == 3 && memcmp(r.data, "{}\x1e", 3) == 0); /* the reply, raw */
    CHECK(srv_wait(&S.polls, 5, 5000));                         /* and the next poll is waiting */
    CHECK(r.closed == 0 && r.after_close == 0);
    CHECK(srv_posts.n == 1);
    sr__transport_release(tp);
    sr_loop_free(loop);
    CHECK(srv_wait(&S.poll_gone, 1, 5000)); /* the held poll was ended */
}

/* Without a protocol every poll's body reaches on_data as it is, in order;
 * no handshake: nothing is POSTed. */
TEST(t_raw_polls)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    srv_reset();
    memset(&c, 0, sizeof c);
    c.url = hub_url();
    srv_answer_str("one");
    srv_answer_str("");
    srv_answer_str("two\x1e");
    srv_answer_str("three");
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.data_calls, 3, 5000);
    CHECK(r.opened == 1);
    CHECK(r.data_calls == 3);
    CHECK_STR(r.data, "onetwo\x1ethree");
    CHECK(r.msg_calls == 0);
    CHECK(srv_wait(&S.polls, 5, 5000));
    CHECK(srv_posts.n == 0);
    sr__transport_release(tp);
    sr_loop_free(loop);
}

/* One POST outstanding; what is sent meanwhile goes whole in the next. */
TEST(t_send_batching)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    srv_reset();
    c = json_cfg(hub_url());
    srv_posts.hold = 1;
    tp = open_json(loop, &c, &r);
    CHECK(tp != NULL && r.opened == 1);
    CHECK(srv_posts.n == 1); /* the handshake, held */
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

/* 204: the server closed the connection; the data before it arrives first. */
TEST(t_204_closes)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    srv_reset();
    c = json_cfg(hub_url());
    tp = open_json(loop, &c, &r);
    CHECK(tp != NULL && r.opened == 1);
    srv_answer_str("{}\x1e" INV("last"));
    srv_answer(204, "", 0);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.nmsgs == 1 && r.closed == 1);
    CHECK(r.close_code == SR_ECLOSED);
    printf("     message: %s\n", r.close_msg);
    CHECK(strstr(r.close_msg, "the server closed the connection (204)") != NULL);
    CHECK(strstr(r.close_msg, "tok") == NULL);
    CHECK(r.after_close == 0);
    CHECK(sr__transport_send(tp, "y", 1) == SR_ECLOSED);
    CHECK(S.deleted == 0);
    sr__transport_release(tp);
    sr_loop_free(loop);
}

/* 404 on a poll after the open: the connection is gone. */
TEST(t_poll_404)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    srv_reset();
    c = json_cfg(hub_url());
    tp = open_json(loop, &c, &r);
    CHECK(tp != NULL && r.opened == 1);
    srv_answer(404, "gone", 4);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.closed == 1 && r.close_code == SR_ETRANSPORT && r.close_status == 404);
    printf("     message: %s\n", r.close_msg);
    CHECK(strstr(r.close_msg, "HTTP 404") != NULL);
    CHECK(strstr(r.close_msg, "tok") == NULL); /* the token is left out */
    CHECK(r.data_len == 0);                    /* the error's body is not data */
    sr__transport_release(tp);
    sr_loop_free(loop);
}

/* A first poll answered 404 never opens. */
TEST(t_first_poll_404)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    srv_reset();
    c = json_cfg(hub_url());
    srv_answer(404, "gone", 4);
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.opened == 0 && r.closed == 1);
    CHECK(r.close_code == SR_ETRANSPORT && r.close_status == 404);
    CHECK(srv_posts.n == 0);
    sr__transport_release(tp);
    sr_loop_free(loop);
}

TEST(t_post_404)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    srv_reset();
    c = json_cfg(hub_url());
    tp = open_json(loop, &c, &r);
    CHECK(tp != NULL && r.opened == 1);
    srv_set(&srv_posts.status, 404); /* the handshake got its 200 */
    CHECK(sr__transport_send(tp, "x\x1e", 2) == SR_OK);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.closed == 1 && r.close_code == SR_ETRANSPORT && r.close_status == 404);
    printf("     message: %s\n", r.close_msg);
    CHECK(strstr(r.close_msg, "Long Polling send to") != NULL);
    CHECK(strstr(r.close_msg, "HTTP 404") != NULL);
    CHECK(strstr(r.close_msg, "tok") == NULL);
    CHECK(sr__transport_send(tp, "y", 1) == SR_ECLOSED);
    CHECK(srv_wait(&S.poll_gone, 1, 5000)); /* the poll was ended too */
    sr__transport_release(tp);
    sr_loop_free(loop);
}

TEST(t_refused)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    char u[64];
    srv_reset();
    c = json_cfg(hub_url());
    snprintf(u, sizeof u, "http://127.0.0.1:%d/hub?id=tok", closed_port());
    c.url = u;
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.opened == 0 && r.closed == 1 && r.close_code == SR_ETRANSPORT);
    printf("     message: %s\n", r.close_msg);
    CHECK(strstr(r.close_msg, "Connection refused") != NULL);
    CHECK(strstr(r.close_msg, "tok") == NULL);
    sr__transport_release(tp);
    sr_loop_free(loop);
}

/* A close asked by the host sends what was queued first, then DELETE; the
 * server answers the held poll 204; the end is clean. */
TEST(t_close_after_sends)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    const char *d, *p;
    srv_reset();
    c = json_cfg(hub_url());
    srv_posts.hold = 1;
    tp = open_json(loop, &c, &r);
    CHECK(tp != NULL && r.opened == 1);
    CHECK(sr__transport_send(tp, "m1\x1e", 3) == SR_OK);
    CHECK(sr__transport_send(tp, "m2\x1e", 3) == SR_OK);
    sr__transport_close(tp);
    CHECK(sr__transport_send(tp, "late", 4) == SR_ECLOSED);
    sr_loop_dispatch(loop, 30);
    CHECK(r.closed == 0 && S.deleted == 0); /* the queue is not out yet */
    srv_set(&srv_posts.released, 100);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.closed == 1 && r.close_code == SR_OK);
    CHECK(posts_are(HANDSHAKE "m1\x1em2\x1e", strlen(HANDSHAKE) + 6));
    CHECK(S.deleted == 1 && S.got_204 == 1);
    CHECK(strstr(S.del_req, "DELETE /hub?id=tok&g=") == S.del_req);
    CHECK(strstr(S.del_req, "\r\nAuthorization: Bearer abc") != NULL);
    printf("     requests: %s\n", S.order);
    d = strchr(S.order, 'D');
    p = strrchr(S.order, 'P');
    CHECK(d && p && p < d);
    CHECK(strchr(d, 'G') == NULL); /* no poll after the DELETE */
    sr__transport_release(tp);
    sr_loop_free(loop);
}

/* Idle, the transport POSTs the ping bytes every keepalive_ms, from the
 * HTTP thread: the host does not dispatch meanwhile. */
TEST(t_keepalive)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    double t0;
    srv_reset();
    c = json_cfg(hub_url());
    c.keepalive_ms = 60;
    /* Pings run from the open, which comes after this: a late open event on
     * a slow machine (valgrind) cannot make them look early. */
    t0 = now_ms();
    tp = open_json(loop, &c, &r);
    CHECK(tp != NULL && r.opened == 1);
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

/* A poll held far longer than server_timeout_ms is normal for Long Polling:
 * no timeout; data that comes afterwards still arrives. */
TEST(t_silent_poll_no_timeout)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    double end;
    srv_reset();
    c = json_cfg(hub_url());
    c.server_timeout_ms = 100;
    srv_answer_str("");
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.opened, 1, 5000);
    srv_answer_str("{}\x1e");
    CHECK(srv_wait(&S.polls, 3, 5000)); /* the third poll is held */
    end = now_ms() + 500;
    while (now_ms() < end && !r.closed)
        sr_loop_dispatch(loop, (int)(end - now_ms()) + 1);
    CHECK(r.closed == 0);
    srv_answer_str(INV("late"));
    wait_for(loop, &r.nmsgs, 1, 5000);
    CHECK(r.nmsgs == 1 && r.closed == 0);
    sr__transport_release(tp);
    sr_loop_free(loop);
}

/* The first poll opens it, the handshake goes, and no poll ever answers: the
 * handshake timeout fires from the HTTP thread. */
TEST(t_handshake_timeout)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    double t0;
    srv_reset();
    c = json_cfg(hub_url());
    c.handshake_timeout_ms = 150;
    c.server_timeout_ms = 5000;
    srv_answer_str("");
    t0 = now_ms();
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.opened, 1, 5000);
    CHECK(readable(loop, 5000)); /* the close, with no dispatch meanwhile */
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.opened == 1 && r.closed == 1 && r.close_code == SR_ETIMEOUT);
    CHECK_STR(r.close_msg, SR_LIVENESS_HANDSHAKE_TIMEOUT_TEXT);
    CHECK(now_ms() - t0 >= 145); /* 150 ms from the open, which came after t0 */
    CHECK(srv_wait(&S.poll_gone, 1, 5000));
    sr__transport_release(tp);
    sr_loop_free(loop);
}

/* Released with a POST held by the server, a poll held, data and the open
 * queued for the host, then the loop freed: no upcall, no leak, no thread
 * left. */
TEST(t_release_in_flight)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp, *tp2;
    rec r, r2;
    srv_reset();
    c = json_cfg(hub_url());
    srv_posts.hold = 1;
    srv_answer_str("{}\x1e" INV("x"));
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    CHECK(srv_wait(&srv_posts.n, 1, 5000));
    CHECK(srv_wait(&S.polls, 2, 5000));
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

/* Closed at once, while the first poll is out: a clean end. */
TEST(t_close_connecting)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    srv_reset();
    c = json_cfg(hub_url());
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    sr__transport_close(tp);
    wait_for(loop, &r.closed, 1, 5000);
    CHECK(r.closed == 1 && r.close_code == SR_OK);
    /* The first poll may answer before the close reaches the HTTP thread:
     * then the transport opened and its queue (the handshake) goes out
     * before the clean close; otherwise nothing is sent. */
    CHECK(srv_posts.n == 0 || (r.opened == 1 && srv_posts.n == 1 && post_is(0, HANDSHAKE)));
    sr__transport_release(tp);
    sr_loop_free(loop);
}

/* Binary: POSTs are application/octet-stream and carry every byte (NULs
 * too); polls' bodies reach on_data unchanged. */
TEST(t_binary)
{
    static const char hs[] = "{\"protocol\":\"messagepack\",\"version\":1}\x1e";
    static const char out[] = {0x05, (char)0x94, 0x01, 0x00, (char)0xa1, 'x'};
    static const char in[] = {0x00, (char)0xff, 0x1e, 0x00, 0x7f};
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    srv_reset();
    memset(&c, 0, sizeof c);
    c.url = hub_url();
    c.binary = 1;
    c.handshake = hs;
    c.handshake_len = sizeof hs - 1;
    srv_answer_str("");
    srv_answer(200, in, sizeof in);
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    wait_for(loop, &r.opened, 1, 5000);
    CHECK(srv_wait(&srv_posts.n, 1, 5000));
    CHECK(sr__transport_send(tp, out, sizeof out) == SR_OK);
    CHECK(srv_wait(&srv_posts.n, 2, 5000));
    CHECK(post_is(0, hs));
    pthread_mutex_lock(&srv_mu);
    CHECK(srv_posts.len[1] == sizeof out && memcmp(srv_posts.body[1], out, sizeof out) == 0);
    pthread_mutex_unlock(&srv_mu);
    CHECK(strstr(srv_posts.req, "\r\nContent-Type: application/octet-stream") != NULL);
    wait_for(loop, &r.data_calls, 1, 5000);
    CHECK(r.data_len == sizeof in && memcmp(r.data, in, sizeof in) == 0);
    sr__transport_release(tp);
    sr_loop_free(loop);
}

TEST(t_bad_args)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_header bad = {"X-Evil", "a\r\nInjected: 1"};
    sr_error err;
    rec r;
    srv_reset();
    c = json_cfg(hub_url());
    c.url = "ftp://127.0.0.1/hub";
    CHECK(sr__lp_transport_new(loop, &c, &ups, &r, &err) == NULL);
    CHECK(err.code == SR_EUSAGE && strstr(err.message, "Long Polling URL") != NULL);
    c.url = hub_url();
    c.headers = &bad;
    c.nheaders = 1;
    CHECK(sr__lp_transport_new(loop, &c, &ups, &r, &err) == NULL);
    CHECK(err.code == SR_EUSAGE && strstr(err.message, "header") != NULL);
    CHECK(sr__lp_transport_new(NULL, &c, &ups, &r, &err) == NULL);
    sr_loop_free(loop);
}

/* A poll carrying far more than the queue's bound while the host does not
 * dispatch: the poll pauses (the server's send blocks), then every byte
 * arrives in order. */
TEST(t_backpressure)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_transport_cfg c;
    sr_transport *tp;
    rec r;
    size_t total = (size_t)24 << 20, i;
    double end;
    int ok = 1;
    srv_reset();
    memset(&c, 0, sizeof c);
    c.url = hub_url();
    srv_answer(200, NULL, total);
    tp = open_tp(loop, &c, &r);
    CHECK(tp != NULL);
    CHECK(srv_wait(&S.blocked, 1, 30000));
    end = now_ms() + 60000;
    while (r.total < total && !r.closed && now_ms() < end)
        sr_loop_dispatch(loop, 100);
    printf("     %d pieces, %zu bytes\n", r.data_calls, r.total);
    CHECK(r.closed == 0 && r.opened == 1);
    CHECK(r.total == total);
    for (i = 0; i < r.data_len && ok; i++)
        ok = r.data[i] == (char)('a' + i % 26);
    CHECK(ok && r.data_len > 0);
    CHECK(srv_wait(&S.polls, 2, 5000)); /* and it polls again */
    sr__transport_release(tp);
    sr_loop_free(loop);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* a sanitizer's report ends the process unflushed */
    srv_start(serve);
    RUN(t_open_receive_json);
    RUN(t_raw_polls);
    RUN(t_send_batching);
    RUN(t_204_closes);
    RUN(t_poll_404);
    RUN(t_first_poll_404);
    RUN(t_post_404);
    RUN(t_refused);
    RUN(t_close_after_sends);
    RUN(t_keepalive);
    RUN(t_silent_poll_no_timeout);
    RUN(t_handshake_timeout);
    RUN(t_release_in_flight);
    RUN(t_close_connecting);
    RUN(t_binary);
    RUN(t_bad_args);
    RUN(t_backpressure);
    srv_stop_all();
    srv_reset();
    DONE();
}
