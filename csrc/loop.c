/*
 * loop.c - sr_loop: the host-side event queue, host timers, the one
 * descriptor (epoll) that tells a foreign event loop when to dispatch, and
 * the registry of per-loop services (I/O back ends) it frees last.
 *
 * Invariants:
 *  - The queue (qhead..qtail) is shared with the I/O threads under mu. The
 *    batch (bhead..btail) is host-only: dispatch moves the whole queue into
 *    it in one swap and pops events from it one at a time, so a nested
 *    sr_loop_dispatch (a blocking wait inside a callback) continues with the
 *    next event of the same batch and order is kept. Only events still in
 *    the queue may grow (sr__loop_merge_tail, under mu): once swapped into
 *    the batch, an event is the host's alone.
 *  - The eventfd is signalled (value > 0) exactly when `signalled` is set.
 *    Posters only write it when `signalled` is clear, i.e. at most once
 *    between two host drains. Dispatch clears it only when the queue and the
 *    batch are both empty, under mu, so sr_loop_fd is readable whenever
 *    events are waiting and quiet when none are.
 *  - The timerfd is armed (absolute, CLOCK_MONOTONIC) to the earliest timer,
 *    or disarmed when there is none; `armed` mirrors what the kernel holds.
 *    Arming resets the timerfd's tick count, which clears its readiness.
 *  - `bytes` counts ev->weight of posted and not yet dispatched events; it and
 *    `congested` are accessed with __atomic builtins (the project is C99).
 *  - Services are host-only (created and resumed from the host thread) and
 *    freed in reverse order of creation: a later one may use an earlier one.
 *  - While `driving` is set (under mu), the host thread is inside a
 *    service's drive: events it posts itself need no signal (it dispatches
 *    them when drive returns), and another thread's post calls the
 *    service's wake once (`drive_woken`) instead of writing the eventfd.
 *    The host sets `driving` only with the queue empty, under mu, so no
 *    post can slip between its last look and the drive.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "json_fast.h"
#include "loop.h"
#include "prefetch.h"

/* Events handled per sr_loop_dispatch call, so a host that calls it from a
 * foreign loop keeps serving its other descriptors. Left-over events keep
 * the descriptor readable. */
#define DISPATCH_MAX 4096

/* Timer ids: sequence number above, slot index below. Ids are never reused
 * (the sequence would need 2^40 timers to wrap). */
#define SLOT_BITS 24
#define SLOT_MASK ((UINT64_C(1) << SLOT_BITS) - 1)
#define SLOT_MAX (1u << SLOT_BITS)

typedef struct tslot {
    uint64_t id;       /* 0 when the slot is free */
    uint64_t deadline; /* CLOCK_MONOTONIC ns */
    sr_timer_fn fn;
    void *ud;
    uint32_t pos; /* index in the heap; next free slot when free */
} tslot;

struct svc_entry {
    const void *key;
    sr_loop_service svc;
};

struct sr_loop {
    int epfd, efd, tfd;

    pthread_mutex_t mu;
    sr_event *qhead, *qtail; /* mu */
    int signalled;           /* mu */

    size_t bytes;  /* atomic */
    int congested; /* atomic */

    sr_event *bhead, *btail; /* host only */

    tslot *slots;
    uint32_t nslots, free_slot; /* free_slot == UINT32_MAX: none */
    uint32_t *heap;             /* slot indices, min-heap on (deadline, id) */
    uint32_t nheap;
    uint64_t seq;   /* next timer sequence number */
    uint64_t armed; /* deadline the timerfd holds, 0 = disarmed */

    struct svc_entry *svcs; /* host only */
    size_t nsvcs;

    sr_loop_service *driver; /* host only: the service with drive, if any */
    int driving;             /* mu */
    int drive_woken;         /* mu */
    pthread_t host;          /* mu: the driving thread while driving */
    int brk;                 /* host only: sr_loop_break was called */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- events */

sr_event *sr__event_new(sr_event_fn dispatch, sr_event_fn discard, void *target, int type,
                        const void *data, size_t len)
{
    sr_event *ev = malloc(sizeof *ev + len + 1);
    if (!ev) return NULL;
    memset(ev, 0, sizeof *ev);
    ev->dispatch = dispatch;
    ev->discard = discard;
    ev->type = type;
    ev->target = target;
    ev->len = len;
    ev->weight = len;
    if (len) memcpy(ev->data, data, len);
    ev->data[len] = '\0'; /* bodies can be read as C strings */
    return ev;
}

void sr__event_free(sr_event *ev)
{
    if (!ev) return;
    free(ev->text);
    free(ev);
}

static void efd_signal(sr_loop *loop)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already huge, i.e. signalled. */
    while (write(loop->efd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static void efd_drain(sr_loop *loop)
{
    uint64_t v;
    while (read(loop->efd, &v, sizeof v) < 0 && errno == EINTR)
        ;
}

/* Under mu: make the host's wait return, once. */
static void wake_locked(sr_loop *loop)
{
    if (loop->driving) {
        /* The host is serving sockets in a drive: its own posts are seen
         * when drive returns; anyone else's ends the drive. */
        if (!loop->drive_woken && !pthread_equal(pthread_self(), loop->host)) {
            loop->drive_woken = 1;
            loop->driver->wake(loop->driver->self);
        }
    } else if (!loop->signalled) {
        /* Written under mu so a concurrent host drain cannot interleave
         * between the flag and the counter. Once per empty -> non-empty. */
        loop->signalled = 1;
        efd_signal(loop);
    }
}

void sr__loop_post(sr_loop *loop, sr_event *ev)
{
    ev->next = NULL;
    pthread_mutex_lock(&loop->mu);
    if (loop->qtail)
        loop->qtail->next = ev;
    else
        loop->qhead = ev;
    loop->qtail = ev;
    if (ev->weight) {
        /* Set congested before the event is visible to the host, so the
         * host's subtraction of this very event sees the flag. */
        size_t n = __atomic_add_fetch(&loop->bytes, ev->weight, __ATOMIC_SEQ_CST);
        if (n > SR_QUEUE_HIGH) __atomic_store_n(&loop->congested, 1, __ATOMIC_SEQ_CST);
    }
    wake_locked(loop);
    pthread_mutex_unlock(&loop->mu);
}

int sr__loop_merge_tail(sr_loop *loop, sr_event_fn dispatch, void *target, int type,
                        int (*merge)(sr_event *tail, void *arg), void *arg, size_t weight)
{
    sr_event *t;
    int merged = 0;
    pthread_mutex_lock(&loop->mu);
    t = loop->qtail;
    if (t && t->dispatch == dispatch && t->target == target && t->type == type &&
        merge(t, arg) == 0) {
        merged = 1;
        t->weight += weight;
        if (weight && __atomic_add_fetch(&loop->bytes, weight, __ATOMIC_SEQ_CST) > SR_QUEUE_HIGH)
            __atomic_store_n(&loop->congested, 1, __ATOMIC_SEQ_CST);
    }
    pthread_mutex_unlock(&loop->mu);
    return merged;
}

void sr__loop_wake(sr_loop *loop)
{
    pthread_mutex_lock(&loop->mu);
    wake_locked(loop);
    pthread_mutex_unlock(&loop->mu);
}

int sr__loop_congested(sr_loop *loop)
{
    return __atomic_load_n(&loop->congested, __ATOMIC_SEQ_CST);
}

static void resume_io(sr_loop *loop);

void sr__loop_resume_io(sr_loop *loop)
{
    if (!__atomic_load_n(&loop->congested, __ATOMIC_SEQ_CST)) resume_io(loop);
}

/* ---------------------------------------------------------------- timers */

static int tless(const sr_loop *loop, uint32_t a, uint32_t b)
{
    const tslot *x = &loop->slots[a], *y = &loop->slots[b];
    return x->deadline < y->deadline || (x->deadline == y->deadline && x->id < y->id);
}

static void hset(sr_loop *loop, uint32_t pos, uint32_t s)
{
    loop->heap[pos] = s;
    loop->slots[s].pos = pos;
}

static void hup(sr_loop *loop, uint32_t pos)
{
    uint32_t s = loop->heap[pos];
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (!tless(loop, s, loop->heap[parent])) break;
        hset(loop, pos, loop->heap[parent]);
        pos = parent;
    }
    hset(loop, pos, s);
}

static void hdown(sr_loop *loop, uint32_t pos)
{
    uint32_t s = loop->heap[pos];
    for (;;) {
        uint32_t c = 2 * pos + 1;
        if (c >= loop->nheap) break;
        if (c + 1 < loop->nheap && tless(loop, loop->heap[c + 1], loop->heap[c])) c++;
        if (!tless(loop, loop->heap[c], s)) break;
        hset(loop, pos, loop->heap[c]);
        pos = c;
    }
    hset(loop, pos, s);
}

/* Remove the slot at heap position pos and put the slot on the free list. */
static void hremove(sr_loop *loop, uint32_t pos)
{
    uint32_t s = loop->heap[pos];
    uint32_t last = loop->heap[--loop->nheap];
    if (pos < loop->nheap) {
        hset(loop, pos, last);
        if (pos > 0 && tless(loop, last, loop->heap[(pos - 1) / 2]))
            hup(loop, pos);
        else
            hdown(loop, pos);
    }
    loop->slots[s].id = 0;
    loop->slots[s].fn = NULL;
    loop->slots[s].ud = NULL;
    loop->slots[s].pos = loop->free_slot;
    loop->free_slot = s;
}

/* Point the timerfd at the earliest timer. A deadline already passed makes
 * it readable at once; re-arming a fired timer clears its readiness. */
static void tarm(sr_loop *loop, uint64_t now)
{
    uint64_t want = loop->nheap ? loop->slots[loop->heap[0]].deadline : 0;
    struct itimerspec its;
    if (want == loop->armed && !(want && want <= now)) return;
    memset(&its, 0, sizeof its);
    if (want) {
        its.it_value.tv_sec = (time_t)(want / 1000000000u);
        its.it_value.tv_nsec = (long)(want % 1000000000u);
    }
    timerfd_settime(loop->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    loop->armed = want;
}

uint64_t sr_loop_add_timer(sr_loop *loop, double delay_ms, sr_timer_fn fn, void *ud)
{
    uint32_t s;
    uint64_t now = now_ns(), delay;
    if (!loop || !fn) return 0;
    if (!(delay_ms > 0)) /* also NaN */
        delay = 0;
    else if (delay_ms > 1e12) /* ~31 years */
        delay = UINT64_C(1000000000000000000);
    else
        delay = (uint64_t)(delay_ms * 1e6);
    if (loop->free_slot == UINT32_MAX) {
        uint32_t n = loop->nslots ? loop->nslots * 2 : 16, i;
        tslot *ns;
        uint32_t *nh;
        if (loop->nslots >= SLOT_MAX) return 0;
        if (n > SLOT_MAX) n = SLOT_MAX;
        ns = realloc(loop->slots, n * sizeof *ns);
        if (!ns) return 0;
        loop->slots = ns;
        nh = realloc(loop->heap, n * sizeof *nh);
        if (!nh) return 0; /* slots grew but stay unused; harmless */
        loop->heap = nh;
        for (i = n; i-- > loop->nslots;) {
            ns[i].id = 0;
            ns[i].fn = NULL;
            ns[i].ud = NULL;
            ns[i].pos = loop->free_slot;
            loop->free_slot = i;
        }
        loop->nslots = n;
    }
    s = loop->free_slot;
    loop->free_slot = loop->slots[s].pos;
    loop->slots[s].id = (loop->seq++ << SLOT_BITS) | s;
    loop->slots[s].deadline = now + delay;
    loop->slots[s].fn = fn;
    loop->slots[s].ud = ud;
    loop->heap[loop->nheap] = s;
    hup(loop, loop->nheap++);
    if (loop->heap[0] == s) tarm(loop, now);
    return loop->slots[s].id;
}

void sr_loop_cancel_timer(sr_loop *loop, uint64_t id)
{
    uint64_t s = id & SLOT_MASK;
    int top;
    if (!loop || id == 0 || s >= loop->nslots || loop->slots[s].id != id) return;
    top = loop->slots[s].pos == 0;
    hremove(loop, loop->slots[s].pos);
    if (top) tarm(loop, now_ns());
}

int sr_loop_next_timeout(const sr_loop *loop)
{
    uint64_t d, now;
    if (!loop || !loop->nheap) return -1;
    d = loop->slots[loop->heap[0]].deadline;
    now = now_ns();
    if (d <= now) return 0;
    d = (d - now + 999999) / 1000000; /* round up: sleeping that long finds it due */
    return d > INT32_MAX ? INT32_MAX : (int)d;
}

/* Run the timers due now that existed when this pass started: a timer added
 * by a callback with delay 0 waits for the next pass instead of looping. A
 * timer cancelled by an earlier callback is out of the heap and never runs. */
static int run_timers(sr_loop *loop)
{
    uint64_t now = now_ns(), limit = loop->seq << SLOT_BITS;
    int n = 0;
    while (loop->nheap && !loop->brk) {
        tslot *t = &loop->slots[loop->heap[0]];
        sr_timer_fn fn;
        void *ud;
        if (t->deadline > now || t->id >= limit) break;
        fn = t->fn;
        ud = t->ud;
        hremove(loop, 0);
        fn(ud);
        n++;
    }
    tarm(loop, now);
    return n;
}

/* ------------------------------------------------------------- dispatch */

static void resume_io(sr_loop *loop)
{
    size_t i;
    for (i = 0; i < loop->nsvcs; i++)
        if (loop->svcs[i].svc.resume) loop->svcs[i].svc.resume(loop->svcs[i].svc.self);
}

static int run_events(sr_loop *loop)
{
    int n = 0;
    if (!loop->bhead) {
        pthread_mutex_lock(&loop->mu);
        loop->bhead = loop->qhead;
        loop->btail = loop->qtail;
        loop->qhead = loop->qtail = NULL;
        pthread_mutex_unlock(&loop->mu);
    }
    while (n < DISPATCH_MAX && loop->bhead && !loop->brk) {
        sr_event *ev = loop->bhead;
        size_t len = ev->weight;
        loop->bhead = ev->next;
        if (!loop->bhead) loop->btail = NULL;
        ev->next = NULL;
        ev->dispatch(ev);
        sr__event_free(ev);
        n++;
        if (len) {
            size_t left = __atomic_sub_fetch(&loop->bytes, len, __ATOMIC_SEQ_CST);
            if (left < SR_QUEUE_LOW && __atomic_load_n(&loop->congested, __ATOMIC_SEQ_CST) &&
                __atomic_exchange_n(&loop->congested, 0, __ATOMIC_SEQ_CST))
                resume_io(loop);
        }
    }
    return n;
}

/* Make the eventfd's state match the queue: signalled while anything waits
 * (also events left in the batch by DISPATCH_MAX), drained when nothing
 * does. Under mu, so it cannot race a poster's empty -> non-empty write. */
static void sync_wakeup(sr_loop *loop)
{
    pthread_mutex_lock(&loop->mu);
    if (!loop->qhead && !loop->bhead) {
        if (loop->signalled) {
            efd_drain(loop);
            loop->signalled = 0;
        }
    } else if (!loop->signalled) {
        loop->signalled = 1;
        efd_signal(loop);
    }
    pthread_mutex_unlock(&loop->mu);
}

static int run_ready(sr_loop *loop)
{
    int n = run_timers(loop);
    n += run_events(loop);
    sync_wakeup(loop);
    return n;
}

/* Wait up to wait_ms (-1: no limit) by serving the driving service's
 * sockets on this thread. 1 when it did, 0 when the caller must wait on the
 * descriptor instead (no driver, it cannot drive now, or events arrived).
 * wait_ms 0 only flushes what the host queued while it holds the sockets. */
static int drive(sr_loop *loop, int wait_ms)
{
    int t = sr_loop_next_timeout(loop), served;
    if (!loop->driver) return 0;
    if (t >= 0 && (wait_ms < 0 || t < wait_ms)) wait_ms = t;
    pthread_mutex_lock(&loop->mu);
    if (loop->qhead) {
        pthread_mutex_unlock(&loop->mu);
        return 1; /* posted since run_ready looked: go round */
    }
    loop->driving = 1;
    loop->drive_woken = 0;
    loop->host = pthread_self();
    pthread_mutex_unlock(&loop->mu);
    served = loop->driver->drive(loop->driver->self, wait_ms);
    pthread_mutex_lock(&loop->mu);
    loop->driving = 0;
    /* A post while driving woke the driver, not the eventfd: go round for
     * it even when the driver could not drive (it gave the sockets to its
     * own thread meanwhile), or the wait on the descriptor never ends. */
    if (loop->qhead) served = 1;
    pthread_mutex_unlock(&loop->mu);
    return served;
}

int sr_loop_dispatch(sr_loop *loop, int timeout_ms)
{
    uint64_t deadline = 0;
    int n;
    if (!loop) return 0;
    if (timeout_ms > 0) deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        struct epoll_event evs[2];
        int wait_ms = -1;
        n = run_ready(loop);
        if (loop->brk) {
            loop->brk = 0;
            return n;
        }
        if (timeout_ms == 0) {
            /* Never waits, but sends what waits for a host holding the
             * sockets (cheap: nothing unless such commands exist). */
            if (drive(loop, 0)) n += run_ready(loop);
            return n;
        }
        if (n > 0) return n;
        if (timeout_ms > 0) {
            uint64_t now = now_ns();
            if (now >= deadline) return 0;
            wait_ms = (int)((deadline - now + 999999) / 1000000);
        }
        if (wait_ms != 0 && drive(loop, wait_ms)) continue;
        /* Readiness is level-triggered; run_ready clears it. A wake-up for
         * a timer cancelled meanwhile just goes round again. */
        if (epoll_wait(loop->epfd, evs, 2, wait_ms) < 0 && errno != EINTR) return 0;
    }
}

void sr_loop_break(sr_loop *loop)
{
    if (loop) loop->brk = 1;
}

int sr_loop_fd(const sr_loop *loop)
{
    return loop ? loop->epfd : -1;
}

/* ------------------------------------------------------ lifetime, services */

sr_loop *sr_loop_new(sr_error *err)
{
    struct epoll_event e;
    sr_loop *loop = calloc(1, sizeof *loop);
    if (!loop) {
        sr__error_set(err, SR_ENOMEM, "%s", "out of memory");
        return NULL;
    }
    sr__json_fast_loop_born(); /* sr_loop_free counts it gone, whatever fails next */
    sr__prefetch_init();
    loop->epfd = loop->efd = loop->tfd = -1;
    loop->free_slot = UINT32_MAX;
    loop->seq = 1; /* id 0 means "no timer" */
    if (pthread_mutex_init(&loop->mu, NULL) != 0) {
        free(loop);
        sr__json_fast_loop_gone();
        sr__error_set(err, SR_ENOMEM, "%s", "pthread_mutex_init failed");
        return NULL;
    }
    loop->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    loop->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->efd < 0 || loop->tfd < 0 || loop->epfd < 0) goto fail;
    memset(&e, 0, sizeof e);
    e.events = EPOLLIN;
    e.data.fd = loop->efd;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->efd, &e) < 0) goto fail;
    e.data.fd = loop->tfd;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->tfd, &e) < 0) goto fail;
    return loop;
fail:
    sr__error_set(err, SR_ENOMEM, "event loop descriptors: %s", strerror(errno));
    sr_loop_free(loop);
    return NULL;
}

static void discard_list(sr_event *ev)
{
    while (ev) {
        sr_event *next = ev->next;
        if (ev->discard) ev->discard(ev);
        sr__event_free(ev);
        ev = next;
    }
}

void sr_loop_free(sr_loop *loop)
{
    if (!loop) return;
    /* Stop the threads first: after this nothing posts any more. */
    loop->driver = NULL;
    while (loop->nsvcs > 0) {
        sr_loop_service *svc = &loop->svcs[--loop->nsvcs].svc;
        svc->free(svc->self);
    }
    free(loop->svcs);
    discard_list(loop->bhead);
    discard_list(loop->qhead);
    if (loop->epfd >= 0) close(loop->epfd);
    if (loop->efd >= 0) close(loop->efd);
    if (loop->tfd >= 0) close(loop->tfd);
    pthread_mutex_destroy(&loop->mu);
    free(loop->slots);
    free(loop->heap);
    free(loop);
    sr__json_fast_loop_gone(); /* the last loop frees the threads' JSON readers */
}

void *sr__loop_service(sr_loop *loop, const void *key, sr_loop_service_new_fn create, sr_error *err)
{
    struct svc_entry *grown;
    sr_loop_service svc;
    size_t i;
    for (i = 0; i < loop->nsvcs; i++)
        if (loop->svcs[i].key == key) return loop->svcs[i].svc.self;
    grown = realloc(loop->svcs, (loop->nsvcs + 1) * sizeof *grown);
    if (!grown) {
        sr__error_set(err, SR_ENOMEM, "%s", "out of memory");
        return NULL;
    }
    loop->svcs = grown;
    memset(&svc, 0, sizeof svc);
    if (create(loop, &svc, err) != 0) return NULL;
    loop->svcs[loop->nsvcs].key = key;
    loop->svcs[loop->nsvcs].svc = svc;
    loop->nsvcs++;
    /* The array may have moved: point at the driver afresh. */
    loop->driver = NULL;
    for (i = 0; i < loop->nsvcs; i++)
        if (loop->svcs[i].svc.drive && !loop->driver) loop->driver = &loop->svcs[i].svc;
    return svc.self;
}
