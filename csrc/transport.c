/*
 * transport.c - the generic part of sr_transport: references, the host-side
 * send queue, release, and dispatching events to the upcalls.
 *
 * Invariants:
 *  - refs counts the host's reference (until release), the kind's I/O side
 *    and every event in flight; the last unref frees, on any thread.
 *  - Upcalls run only in sr__transport_dispatch, on the host thread, and
 *    never after release or after on_close.
 *  - The send queue (out) is shared by the host (appends) and the I/O side
 *    (takes it whole) under mu. Sends fail once the host asked to close or
 *    the I/O side finished.
 *  - want_drain (mu) is set by a send that failed with SR_EFULL and cleared
 *    by the take that brings the queue under SR_SEND_LOW, which posts the
 *    one SR_EV_TP_DRAIN owed (kept owed when that allocation fails).
 */
#include <stdlib.h>
#include <string.h>

#include "transport_kind.h"

static void tp_dispatch(sr_event *ev);
static void tp_discard(sr_event *ev);

int sr__transport_init(sr_transport *tp, const sr_transport_ops *ops, sr_loop *loop,
                       const sr_transport_upcalls *up, void *ud, size_t pre)
{
    tp->ops = ops;
    tp->loop = loop;
    tp->refs = 1;
    tp->released = 0;
    if (up) tp->up = *up;
    tp->ud = ud;
    tp->pre = pre;
    tp->closed_ev = sr__event_new(tp_dispatch, tp_discard, tp, SR_EV_TP_CLOSED, NULL, 0);
    if (!tp->closed_ev) return -1;
    if (pthread_mutex_init(&tp->mu, NULL) != 0) {
        sr__event_free(tp->closed_ev);
        tp->closed_ev = NULL;
        return -1;
    }
    return 0;
}

void sr__transport_ref(sr_transport *tp)
{
    __atomic_add_fetch(&tp->refs, 1, __ATOMIC_RELAXED);
}

void sr__transport_unref(sr_transport *tp)
{
    if (!tp || __atomic_sub_fetch(&tp->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    if (tp->ops->destroy) tp->ops->destroy(tp);
    sr__event_free(tp->closed_ev);
    sr__buf_free(&tp->out);
    pthread_mutex_destroy(&tp->mu);
    free(tp);
}

int sr__transport_released(const sr_transport *tp)
{
    return __atomic_load_n(&tp->released, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------ host side */

int sr__transport_send(sr_transport *tp, const char *data, size_t len)
{
    int was_empty;
    size_t queued;
    if (!tp || (!data && len)) return SR_EUSAGE;
    pthread_mutex_lock(&tp->mu);
    if (tp->close_req || tp->dead) {
        pthread_mutex_unlock(&tp->mu);
        return SR_ECLOSED;
    }
    queued = tp->out.len > tp->pre ? tp->out.len - tp->pre : 0;
    if (len > SR_SEND_MAX - queued) {
        tp->want_drain = 1;
        pthread_mutex_unlock(&tp->mu);
        return SR_EFULL;
    }
    was_empty = queued == 0;
    if (tp->out.len < tp->pre) {
        /* First use, or a buffer handed back empty: restore the headroom. */
        if (sr__buf_reserve(&tp->out, tp->pre - tp->out.len + len) != 0) {
            pthread_mutex_unlock(&tp->mu);
            return SR_ENOMEM;
        }
        tp->out.len = tp->pre;
    }
    if (sr__buf_append(&tp->out, data, len) != 0) {
        pthread_mutex_unlock(&tp->mu);
        return SR_ENOMEM;
    }
    pthread_mutex_unlock(&tp->mu);
    /* One kick per empty -> non-empty change; the I/O side asks for more
     * writes itself while it finds bytes queued. */
    if (was_empty && len) tp->ops->kick(tp);
    return SR_OK;
}

void sr__transport_close(sr_transport *tp)
{
    int first;
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    first = !tp->close_req;
    tp->close_req = 1;
    pthread_mutex_unlock(&tp->mu);
    if (first) tp->ops->close(tp);
}

void sr__transport_release(sr_transport *tp)
{
    if (!tp) return;
    __atomic_store_n(&tp->released, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&tp->mu);
    tp->close_req = 1;
    pthread_mutex_unlock(&tp->mu);
    tp->ops->release(tp);
    sr__transport_unref(tp);
}

const char *sr__transport_name(const sr_transport *tp)
{
    return tp ? tp->ops->name : "";
}

/* -------------------------------------------------------------- I/O side */

size_t sr__transport_take(sr_transport *tp, sr_buf *spare)
{
    sr_buf b;
    size_t n = 0;
    int drain = 0;
    pthread_mutex_lock(&tp->mu);
    if (tp->out.len > tp->pre) {
        b = tp->out;
        tp->out = *spare;
        *spare = b;
        n = b.len - tp->pre;
    }
    if (tp->want_drain && (tp->out.len > tp->pre ? tp->out.len - tp->pre : 0) < SR_SEND_LOW) {
        tp->want_drain = 0;
        drain = 1;
    }
    pthread_mutex_unlock(&tp->mu);
    /* Posted outside mu: the loop's lock is never taken under a transport's. */
    if (drain && sr__transport_post(tp, SR_EV_TP_DRAIN, NULL, 0) != 0) {
        pthread_mutex_lock(&tp->mu);
        tp->want_drain = 1; /* out of memory: the next take tries again */
        pthread_mutex_unlock(&tp->mu);
    }
    return n;
}

int sr__transport_pending(sr_transport *tp)
{
    int r;
    pthread_mutex_lock(&tp->mu);
    r = tp->out.len > tp->pre;
    pthread_mutex_unlock(&tp->mu);
    return r;
}

int sr__transport_queue_if_idle(sr_transport *tp, const char *data, size_t len)
{
    int r = 0;
    pthread_mutex_lock(&tp->mu);
    if (!tp->close_req && !tp->dead && tp->out.len <= tp->pre &&
        sr__buf_reserve(&tp->out, tp->pre + len) == 0) {
        tp->out.len = tp->pre;
        memcpy(tp->out.data + tp->pre, data, len);
        tp->out.len += len;
        r = 1;
    }
    pthread_mutex_unlock(&tp->mu);
    return r;
}

void sr__transport_set_dead(sr_transport *tp)
{
    pthread_mutex_lock(&tp->mu);
    tp->dead = 1;
    pthread_mutex_unlock(&tp->mu);
}

int sr__transport_post(sr_transport *tp, sr_tp_event type, const void *data, size_t len)
{
    sr_event *ev;
    if (sr__transport_released(tp)) return 0;
    ev = sr__event_new(tp_dispatch, tp_discard, tp, (int)type, data, len);
    if (!ev) return -1;
    sr__transport_ref(tp);
    sr__loop_post(tp->loop, ev);
    return 0;
}

void sr__transport_post_closed(sr_transport *tp, int code, long status, const char *text)
{
    sr_event *ev = tp->closed_ev;
    sr__transport_set_dead(tp);
    if (!ev) return;
    tp->closed_ev = NULL;
    if (sr__transport_released(tp)) {
        sr__event_free(ev);
        return;
    }
    ev->code = code;
    ev->status = status;
    ev->text = text ? strdup(text) : NULL;
    sr__transport_ref(tp);
    sr__loop_post(tp->loop, ev);
}

/* ------------------------------------------------------------ host side */

static void tp_dispatch(sr_event *ev)
{
    sr_transport *tp = ev->target;
    if (!sr__transport_released(tp) && !tp->closed_seen) {
        switch (ev->type) {
        case SR_EV_TP_OPEN:
            if (tp->up.on_open) tp->up.on_open(tp->ud, tp);
            break;
        case SR_EV_TP_DATA:
            if (tp->up.on_data) tp->up.on_data(tp->ud, tp, ev->data, ev->len);
            break;
        case SR_EV_TP_CLOSED: {
            sr_error err;
            tp->closed_seen = 1;
            memset(&err, 0, sizeof err);
            err.code = ev->code;
            err.status = ev->status;
            if (ev->text) {
                size_t n = strlen(ev->text);
                if (n >= sizeof err.message) n = sizeof err.message - 1;
                memcpy(err.message, ev->text, n);
                err.message[n] = '\0';
            } else {
                strcpy(err.message, sr_strerror(ev->code));
            }
            if (tp->up.on_close) tp->up.on_close(tp->ud, tp, ev->code == SR_OK ? NULL : &err);
            break;
        }
        case SR_EV_TP_DRAIN:
            if (tp->up.on_drain) tp->up.on_drain(tp->ud, tp);
            break;
        default:
            break;
        }
    }
    /* The event's reference; the upcall may have released the host's. */
    sr__transport_unref(tp);
}

static void tp_discard(sr_event *ev)
{
    sr__transport_unref(ev->target);
}
