/* test_loop.c - sr_loop: timers, queue, wake-ups, nested dispatch, backpressure, services. */
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "loop.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int readable(sr_loop *loop)
{
    struct pollfd p = {sr_loop_fd(loop), POLLIN, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Labels for mark(): string literals are const under -Wwrite-strings. */
static void *T(const char *s)
{
    return (void *)(uintptr_t)s;
}

/* A test event runs fn(arg); its target is a malloc'd call that dispatch
 * and discard both free, so valgrind sees a discard that was skipped. */
typedef struct call {
    void (*fn)(void *);
    void *arg;
} call;

static int discarded;

static void call_dispatch(sr_event *ev)
{
    call *c = ev->target;
    c->fn(c->arg);
    free(c);
}

static void call_discard(sr_event *ev)
{
    discarded++;
    free(ev->target);
}

static void post_call(sr_loop *loop, void (*fn)(void *), void *arg, size_t len)
{
    static char zeros[1 << 20];
    call *c = malloc(sizeof *c);
    sr_event *ev;
    c->fn = fn;
    c->arg = arg;
    ev = sr__event_new(call_dispatch, call_discard, c, 0, len ? zeros : NULL, len);
    sr__loop_post(loop, ev);
}

/* ---------------------------------------------------------------- timers */

static int counted;
static void count_cb(void *ud)
{
    (void)ud;
    counted++;
}

static char order[64];
static size_t norder;
static sr_loop *g_loop;
static uint64_t g_victim;

static void mark(void *ud)
{
    order[norder++] = *(const char *)ud;
    order[norder] = '\0';
}

TEST(timers_order)
{
    sr_loop *loop = sr_loop_new(NULL);
    double t0 = now_ms();
    norder = 0;
    order[0] = '\0';
    CHECK(sr_loop_next_timeout(loop) == -1);
    CHECK(sr_loop_add_timer(loop, 30, mark, T("d")) != 0);
    CHECK(sr_loop_add_timer(loop, 10, mark, T("a")) != 0);
    CHECK(sr_loop_add_timer(loop, 20, mark, T("c")) != 0);
    CHECK(sr_loop_add_timer(loop, 10, mark, T("b")) != 0); /* same deadline-ish: after "a" */
    CHECK(sr_loop_next_timeout(loop) >= 1 && sr_loop_next_timeout(loop) <= 10);
    CHECK(sr_loop_dispatch(loop, 0) == 0);
    while (norder < 4)
        sr_loop_dispatch(loop, -1);
    CHECK_STR(order, "abcd");
    CHECK(now_ms() - t0 >= 29.0);
    CHECK(sr_loop_next_timeout(loop) == -1);
    CHECK(!readable(loop));
    sr_loop_free(loop);
}

static void cancel_victim(void *ud)
{
    mark(ud);
    sr_loop_cancel_timer(g_loop, g_victim);
}

TEST(timers_cancel)
{
    sr_loop *loop = sr_loop_new(NULL);
    uint64_t a, b, c;
    g_loop = loop;
    norder = 0;
    order[0] = '\0';
    a = sr_loop_add_timer(loop, 5, mark, T("a"));
    b = sr_loop_add_timer(loop, 5, mark, T("b"));
    c = sr_loop_add_timer(loop, 5, mark, T("c"));
    CHECK(a && b && c && a != b && b != c);
    sr_loop_cancel_timer(loop, b);
    sr_loop_cancel_timer(loop, b);         /* twice: no-op */
    sr_loop_cancel_timer(loop, 0);         /* no-op */
    sr_loop_cancel_timer(loop, c + 12345); /* unknown id: no-op */
    usleep(10000);
    CHECK(sr_loop_dispatch(loop, 0) == 2);
    CHECK_STR(order, "ac");
    sr_loop_cancel_timer(loop, a); /* already ran: no-op */

    /* Cancelled from inside an earlier timer's callback, same deadline. */
    norder = 0;
    sr_loop_add_timer(loop, 0, cancel_victim, T("x"));
    g_victim = sr_loop_add_timer(loop, 0, mark, T("y"));
    sr_loop_add_timer(loop, 0, mark, T("z"));
    CHECK(sr_loop_dispatch(loop, 100) == 2);
    CHECK_STR(order, "xz");
    CHECK(sr_loop_dispatch(loop, 20) == 0);
    CHECK_STR(order, "xz");

    /* Cancelling the only timer leaves the descriptor quiet. */
    a = sr_loop_add_timer(loop, 1, mark, T("q"));
    sr_loop_cancel_timer(loop, a);
    usleep(5000);
    CHECK(!readable(loop));
    CHECK(sr_loop_next_timeout(loop) == -1);
    sr_loop_free(loop);
}

static int rearm_count;
static void rearm(void *ud)
{
    (void)ud;
    if (++rearm_count < 3) sr_loop_add_timer(g_loop, 0, rearm, NULL);
}

TEST(timer_added_by_timer_runs_next_pass)
{
    sr_loop *loop = sr_loop_new(NULL);
    g_loop = loop;
    rearm_count = 0;
    sr_loop_add_timer(loop, 0, rearm, NULL);
    CHECK(sr_loop_dispatch(loop, 0) == 1);
    CHECK(readable(loop)); /* the new, already due timer */
    CHECK(sr_loop_dispatch(loop, 0) == 1);
    CHECK(sr_loop_dispatch(loop, 0) == 1);
    CHECK(rearm_count == 3);
    CHECK(!readable(loop));
    CHECK(sr_loop_dispatch(loop, 0) == 0);
    sr_loop_free(loop);
}

TEST(many_timers)
{
    sr_loop *loop = sr_loop_new(NULL);
    static uint64_t ids[5000];
    int i, ran = 0;
    srand(7);
    counted = 0;
    for (i = 0; i < 5000; i++)
        ids[i] = sr_loop_add_timer(loop, rand() % 20, count_cb, NULL);
    for (i = 0; i < 5000; i += 2)
        sr_loop_cancel_timer(loop, ids[i]);
    while (sr_loop_next_timeout(loop) != -1)
        ran += sr_loop_dispatch(loop, -1);
    CHECK(ran == 2500 && counted == 2500);
    sr_loop_free(loop);
}

/* ---------------------------------------------------------------- events */

static void nested(void *ud)
{
    mark(ud);
    /* A blocking wait inside a callback: continues with B and C, in order. */
    sr_loop_dispatch(g_loop, 0);
    mark(T("/"));
}

TEST(nested_dispatch)
{
    sr_loop *loop = sr_loop_new(NULL);
    g_loop = loop;
    norder = 0;
    order[0] = '\0';
    post_call(loop, nested, T("A"), 0);
    post_call(loop, mark, T("B"), 0);
    post_call(loop, mark, T("C"), 0);
    CHECK(readable(loop));
    CHECK(sr_loop_dispatch(loop, 0) == 1); /* B, C were counted by the nested call */
    CHECK_STR(order, "ABC/");
    CHECK(!readable(loop));
    sr_loop_free(loop);
}

static void wait_timer(void *ud)
{
    (void)ud;
    mark(T("W"));
    sr_loop_add_timer(g_loop, 10, mark, T("T"));
    while (norder < 4) /* W, X, Y, T */
        sr_loop_dispatch(g_loop, -1);
    mark(T("w"));
}

TEST(nested_blocking_wait)
{
    sr_loop *loop = sr_loop_new(NULL);
    g_loop = loop;
    norder = 0;
    order[0] = '\0';
    post_call(loop, wait_timer, NULL, 0);
    post_call(loop, mark, T("X"), 0);
    post_call(loop, mark, T("Y"), 0);
    while (norder < 5)
        sr_loop_dispatch(loop, -1);
    CHECK_STR(order, "WXYTw");
    CHECK(!readable(loop));
    sr_loop_free(loop);
}

static void mark_and_break(void *ud)
{
    mark(ud);
    sr_loop_break(g_loop);
}

/* sr_loop_break: the dispatch running the callback returns after it, with
 * the rest ready for the next call (from an event or a timer); outside a
 * dispatch, the next one returns at once. */
TEST(break_ends_the_dispatch)
{
    sr_loop *loop = sr_loop_new(NULL);
    g_loop = loop;
    norder = 0;
    order[0] = '\0';
    post_call(loop, mark, T("A"), 0);
    post_call(loop, mark_and_break, T("B"), 0);
    post_call(loop, mark, T("C"), 0);
    post_call(loop, mark, T("D"), 0);
    CHECK(sr_loop_dispatch(loop, -1) == 2);
    CHECK_STR(order, "AB");
    CHECK(readable(loop));
    CHECK(sr_loop_dispatch(loop, 0) == 2);
    CHECK_STR(order, "ABCD");
    CHECK(!readable(loop));
    /* a timer's callback, with an event ready behind it */
    sr_loop_add_timer(loop, 0, mark_and_break, T("T"));
    post_call(loop, mark, T("E"), 0);
    CHECK(sr_loop_dispatch(loop, -1) == 1);
    CHECK_STR(order, "ABCDT");
    CHECK(readable(loop));
    /* called outside: the next dispatch returns without running E */
    sr_loop_break(loop);
    CHECK(sr_loop_dispatch(loop, -1) == 0);
    CHECK_STR(order, "ABCDT");
    CHECK(sr_loop_dispatch(loop, -1) == 1);
    CHECK_STR(order, "ABCDTE");
    CHECK(!readable(loop));
    sr_loop_free(loop);
}

TEST(fd_readability)
{
    sr_loop *loop = sr_loop_new(NULL);
    int n, total = 0, i;
    CHECK(sr_loop_fd(loop) >= 0);
    CHECK(!readable(loop));
    post_call(loop, count_cb, NULL, 0);
    CHECK(readable(loop));
    CHECK(readable(loop)); /* level-triggered: stays until dispatched */
    CHECK(sr_loop_dispatch(loop, 0) == 1);
    CHECK(!readable(loop));

    /* More than one call's worth: the fd stays readable until all are done. */
    counted = 0;
    for (i = 0; i < 10000; i++)
        post_call(loop, count_cb, NULL, 0);
    n = sr_loop_dispatch(loop, 0);
    CHECK(n > 0 && n < 10000);
    total += n;
    CHECK(readable(loop));
    while (total < 10000) {
        CHECK(readable(loop));
        total += sr_loop_dispatch(loop, 0);
    }
    CHECK(counted == 10000);
    CHECK(!readable(loop));

    /* Timers: readable only once due. */
    sr_loop_add_timer(loop, 20, count_cb, NULL);
    CHECK(!readable(loop));
    usleep(30000);
    CHECK(readable(loop));
    CHECK(sr_loop_dispatch(loop, 0) == 1);
    CHECK(!readable(loop));

    /* A timeout with nothing to do returns 0 after about that long. */
    {
        double t0 = now_ms();
        CHECK(sr_loop_dispatch(loop, 30) == 0);
        CHECK(now_ms() - t0 >= 29.0);
    }
    sr_loop_free(loop);
}

/* --------------------------------------------------------- thread posting */

#define NTHREADS 4
#define PER_THREAD ((int)t_scale(100000, 5000))

static sr_loop *mt_loop;
static long mt_next[NTHREADS];
static long mt_total, mt_bad;

static void mt_cb(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    unsigned t = (unsigned)(v >> 24);
    long seq = (long)(v & 0xffffff);
    if (t >= NTHREADS || seq != mt_next[t])
        mt_bad++;
    else
        mt_next[t]++;
    mt_total++;
}

/* No allocation besides the event: the target carries the argument. */
static void mt_dispatch(sr_event *ev)
{
    mt_cb(ev->target);
}

static void *mt_poster(void *arg)
{
    uintptr_t t = (uintptr_t)arg;
    long i;
    for (i = 0; i < PER_THREAD; i++) {
        sr_event *ev =
            sr__event_new(mt_dispatch, NULL, (void *)((t << 24) | (uintptr_t)i), 0, NULL, 0);
        sr__loop_post(mt_loop, ev);
    }
    return NULL;
}

/* nthreads posters, PER_THREAD events each; checks per-thread order. */
static void run_posters(unsigned nthreads)
{
    pthread_t th[NTHREADS];
    uintptr_t i;
    double t0, dt;
    mt_loop = sr_loop_new(NULL);
    mt_total = mt_bad = 0;
    memset(mt_next, 0, sizeof mt_next);
    t0 = now_ms();
    for (i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, mt_poster, (void *)i);
    while (mt_total < (long)nthreads * PER_THREAD)
        sr_loop_dispatch(mt_loop, -1);
    dt = now_ms() - t0;
    for (i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    CHECK(mt_bad == 0);
    for (i = 0; i < nthreads; i++)
        CHECK(mt_next[i] == PER_THREAD);
    CHECK(sr_loop_dispatch(mt_loop, 0) == 0);
    CHECK(!readable(mt_loop));
    printf("     %u thread(s) x %d events: %.0f ms, %.2f M events/s\n", nthreads, PER_THREAD, dt,
           nthreads * PER_THREAD / dt / 1e3);
    sr_loop_free(mt_loop);
}

TEST(one_thread_posts)
{
    run_posters(1);
}

TEST(threads_post_in_order)
{
    run_posters(NTHREADS);
}

/* ---------------------------------------------------------------- latency */

#define LAT_N 2000
static int lat_n;         /* LAT_N natively; a few under valgrind, where spinning threads crawl */
static uint64_t lat_sent; /* microseconds */
static volatile int lat_go;

static void count_dispatch(sr_event *ev)
{
    count_cb(ev->target);
}

static void *lat_poster(void *arg)
{
    int i;
    (void)arg;
    for (i = 0; i < lat_n; i++) {
        sr_event *ev;
        while (__atomic_load_n(&lat_go, __ATOMIC_ACQUIRE) != i + 1)
            ;
        usleep(200); /* let the host block in epoll_wait */
        ev = sr__event_new(count_dispatch, NULL, NULL, 0, NULL, 0);
        __atomic_store_n(&lat_sent, (uint64_t)(now_ms() * 1e3), __ATOMIC_RELEASE);
        sr__loop_post(mt_loop, ev);
    }
    return NULL;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

TEST(wakeup_latency)
{
    static double lat[LAT_N];
    pthread_t th;
    int i;
    lat_n = (int)t_scale(LAT_N, 20);
    mt_loop = sr_loop_new(NULL);
    pthread_create(&th, NULL, lat_poster, NULL);
    for (i = 0; i < lat_n; i++) {
        __atomic_store_n(&lat_go, i + 1, __ATOMIC_RELEASE);
        while (sr_loop_dispatch(mt_loop, -1) == 0)
            ;
        lat[i] = now_ms() * 1e3 - (double)__atomic_load_n(&lat_sent, __ATOMIC_ACQUIRE);
    }
    pthread_join(th, NULL);
    qsort(lat, (size_t)lat_n, sizeof lat[0], cmpd);
    printf("     wake-up latency post -> dispatch returns: p50 %.1f us, p99 %.1f us, max %.1f us\n",
           lat[lat_n / 2], lat[lat_n * 99 / 100], lat[lat_n - 1]);
    sr_loop_free(mt_loop);
}

/* ----------------------------------------------------------- backpressure */

static int bp_seen[16];
static int bp_i;
static void bp_cb(void *ud)
{
    bp_seen[bp_i++] = sr__loop_congested(ud);
}

/* ------------------------------------------------------------- services */

/* A fake back end: records resumes and the order services are freed in. */
typedef struct fake_svc {
    char name;
    int resumes;
} fake_svc;

static char freed[8];
static size_t nfreed;
static int creates;
static fake_svc svc_a = {'a', 0}, svc_b = {'b', 0};
static const char key_a = 0, key_b = 0, key_bad = 0;

static void fake_resume(void *self)
{
    ((fake_svc *)self)->resumes++;
}

static void fake_free(void *self)
{
    freed[nfreed++] = ((fake_svc *)self)->name;
}

static int new_a(sr_loop *loop, sr_loop_service *svc, sr_error *err)
{
    (void)loop;
    (void)err;
    creates++;
    svc->self = &svc_a;
    svc->resume = fake_resume;
    svc->free = fake_free;
    return 0;
}

static int new_b(sr_loop *loop, sr_loop_service *svc, sr_error *err)
{
    (void)loop;
    (void)err;
    creates++;
    svc->self = &svc_b;
    svc->resume = NULL; /* allowed */
    svc->free = fake_free;
    return 0;
}

static int new_bad(sr_loop *loop, sr_loop_service *svc, sr_error *err)
{
    (void)loop;
    (void)svc;
    err->code = SR_ETRANSPORT;
    strcpy(err->message, "no back end");
    return -1;
}

TEST(services)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_error err;
    creates = 0;
    nfreed = 0;
    CHECK(sr__loop_service(loop, &key_a, new_a, &err) == &svc_a);
    CHECK(sr__loop_service(loop, &key_b, new_b, &err) == &svc_b);
    CHECK(sr__loop_service(loop, &key_a, new_a, &err) == &svc_a); /* once per key */
    CHECK(creates == 2);
    memset(&err, 0, sizeof err);
    CHECK(sr__loop_service(loop, &key_bad, new_bad, &err) == NULL);
    CHECK(err.code == SR_ETRANSPORT);
    CHECK(sr__loop_service(loop, &key_bad, new_bad, &err) == NULL); /* not remembered */
    sr_loop_free(loop);
    /* Reverse order of creation: a later service may use an earlier one. */
    CHECK(nfreed == 2 && freed[0] == 'b' && freed[1] == 'a');
}

TEST(backpressure)
{
    sr_loop *loop = sr_loop_new(NULL);
    sr_error err;
    int i;
    CHECK(sr__loop_service(loop, &key_a, new_a, &err) == &svc_a);
    CHECK(sr__loop_service(loop, &key_b, new_b, &err) == &svc_b);
    svc_a.resumes = 0;
    bp_i = 0;
    for (i = 0; i < 8; i++) {
        post_call(loop, bp_cb, loop, 1u << 20);
        CHECK(!sr__loop_congested(loop)); /* 8 MiB is not over HIGH yet */
    }
    post_call(loop, bp_cb, loop, 1u << 20);
    CHECK(sr__loop_congested(loop));
    CHECK(sr_loop_dispatch(loop, 0) == 9);
    /* Event k runs with 9-k+1 MiB still counted: congested until under 2 MiB. */
    for (i = 0; i < 8; i++)
        CHECK(bp_seen[i] == 1);
    CHECK(bp_seen[8] == 0);
    CHECK(!sr__loop_congested(loop));
    CHECK(svc_a.resumes == 1); /* once, when the queue went under LOW */
    sr_loop_free(loop);
}

/* Merging into the queue's last event: only while the host has not taken
 * it, only for the same dispatch, target and type, only when the merge
 * agrees; the weight it adds counts towards congestion like a post's. */
static int merge_calls;
static int merge_ok(sr_event *tail, void *arg)
{
    (void)tail;
    merge_calls++;
    return *(int *)arg;
}

TEST(merge_into_tail)
{
    sr_loop *loop = sr_loop_new(NULL);
    int yes = 0, no = -1, other;
    call *c;
    counted = 0;
    CHECK(!sr__loop_merge_tail(loop, call_dispatch, NULL, 0, merge_ok, &yes, 1)); /* empty */
    CHECK(merge_calls == 0);
    c = malloc(sizeof *c);
    c->fn = count_cb;
    c->arg = NULL;
    sr__loop_post(loop, sr__event_new(call_dispatch, call_discard, c, 7, NULL, 0));
    CHECK(!sr__loop_merge_tail(loop, call_dispatch, c, 8, merge_ok, &yes, 1));      /* type */
    CHECK(!sr__loop_merge_tail(loop, call_dispatch, &other, 7, merge_ok, &yes, 1)); /* target */
    CHECK(!sr__loop_merge_tail(loop, count_dispatch, c, 7, merge_ok, &yes, 1));     /* dispatch */
    CHECK(merge_calls == 0);
    CHECK(!sr__loop_merge_tail(loop, call_dispatch, c, 7, merge_ok, &no, 1)); /* refused */
    CHECK(merge_calls == 1);
    CHECK(!sr__loop_congested(loop));
    CHECK(sr__loop_merge_tail(loop, call_dispatch, c, 7, merge_ok, &yes, SR_QUEUE_HIGH + 1));
    CHECK(merge_calls == 2);
    CHECK(sr__loop_congested(loop)); /* the merged weight counts */
    CHECK(readable(loop));           /* woken once, for the event itself */
    CHECK(sr_loop_dispatch(loop, 0) == 1);
    CHECK(counted == 1);
    CHECK(!sr__loop_congested(loop)); /* and is taken off with the event */
    CHECK(!sr__loop_merge_tail(loop, call_dispatch, c, 7, merge_ok, &yes, 1)); /* taken */
    CHECK(merge_calls == 2);
    sr_loop_free(loop);
}

/* A driver that cannot drive (its own thread holds the sockets) while
 * another thread posts: the post woke the driver, not the eventfd, so the
 * blocking dispatch must go round for the event instead of waiting on the
 * descriptor. Before the fix this waited out the whole timeout (a stream
 * read hung forever in bench-peers). */
static sr_loop *nd_loop;
static int nd_drives;

static void *nd_poster(void *arg)
{
    (void)arg;
    post_call(nd_loop, count_cb, NULL, 0);
    return NULL;
}

static int nd_drive(void *self, int timeout_ms)
{
    pthread_t t;
    (void)self;
    (void)timeout_ms;
    nd_drives++;
    pthread_create(&t, NULL, nd_poster, NULL);
    pthread_join(t, NULL);
    return 0; /* cannot drive now */
}

static void nd_wake(void *self)
{
    (void)self;
}

static void nd_free(void *self)
{
    (void)self;
}

static int new_nd(sr_loop *loop, sr_loop_service *svc, sr_error *err)
{
    (void)loop;
    (void)err;
    memset(svc, 0, sizeof *svc);
    svc->self = &nd_drives;
    svc->free = nd_free;
    svc->drive = nd_drive;
    svc->wake = nd_wake;
    return 0;
}

TEST(post_during_a_drive_that_cannot_drive)
{
    static int key_nd;
    sr_loop *loop = sr_loop_new(NULL);
    sr_error err;
    double t0;
    nd_loop = loop;
    nd_drives = 0;
    counted = 0;
    CHECK(sr__loop_service(loop, &key_nd, new_nd, &err) == &nd_drives);
    t0 = now_ms();
    CHECK(sr_loop_dispatch(loop, 5000) == 1);
    CHECK(counted == 1 && nd_drives == 1);
    CHECK(now_ms() - t0 < 1000); /* not the timeout */
    sr_loop_free(loop);
}

TEST(free_with_pending_events)
{
    sr_loop *loop = sr_loop_new(NULL);
    counted = 0;
    discarded = 0;
    post_call(loop, count_cb, NULL, 100);
    post_call(loop, count_cb, NULL, 0);
    sr__loop_post(loop, sr__event_new(count_dispatch, NULL, NULL, 0, NULL, 0)); /* no discard */
    sr_loop_add_timer(loop, 1000, count_cb, NULL);
    sr_loop_free(loop); /* valgrind: no leak; nothing runs */
    CHECK(counted == 0);
    CHECK(discarded == 2);
}

int main(void)
{
    RUN(timers_order);
    RUN(timers_cancel);
    RUN(timer_added_by_timer_runs_next_pass);
    RUN(many_timers);
    RUN(nested_dispatch);
    RUN(nested_blocking_wait);
    RUN(break_ends_the_dispatch);
    RUN(fd_readability);
    RUN(one_thread_posts);
    RUN(threads_post_in_order);
    RUN(wakeup_latency);
    RUN(services);
    RUN(backpressure);
    RUN(merge_into_tail);
    RUN(post_during_a_drive_that_cannot_drive);
    RUN(free_with_pending_events);
    DONE();
}
