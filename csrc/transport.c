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
 *  - Received bytes are parsed where they are read (sr__transport_post_data)
 *    so the host thread, which runs the handlers, only dispatches. Messages
 *    and raw bytes reach the host in the order they arrived; once anything
 *    fails to parse, the rest of the stream goes raw and the host's own
 *    parser reports the fault, so errors read the same either way.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "framing.h"
#include "transport_kind.h"

/* A batch's buffer (an sr_buf of sr_rx_msg) sits in sr_event.data. */
_Static_assert(offsetof(sr_event, data) % _Alignof(sr_buf) == 0, "sr_buf alignment");

static void tp_dispatch(sr_event *ev);
static void tp_discard(sr_event *ev);
static void batch_free(sr_buf *b);
static void batches_free(sr_buf *list);
static void free_spares(sr_transport *tp);

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

/* A piece of a record held in pieces: the first is rx_part's buffer
 * (malloc'd), the others RX_CHUNK bytes of their own mapping, so each goes
 * back to the system the moment the parser has read it, whatever malloc's
 * thresholds are by then. */
static void chunk_free(sr_buf *c, int first)
{
    if (first)
        sr__buf_free(c);
    else if (c->data)
        munmap(c->data, c->cap);
    memset(c, 0, sizeof *c);
}

static void chunks_free(sr_transport *tp)
{
    size_t i;
    for (i = 0; i < tp->rx_nchunks; i++)
        chunk_free(&tp->rx_chunks[i], i == 0);
    free(tp->rx_chunks);
    tp->rx_chunks = NULL;
    tp->rx_nchunks = tp->rx_chunks_cap = tp->rx_chunks_len = 0;
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
    sr__buf_free(&tp->rx_part);
    chunks_free(tp);
    batch_free(&tp->rx_msgs);
    batches_free(&tp->rx_done);
    batch_free(&tp->host_ret);
    sr__buf_free(&tp->rx_spare);
    free_spares(tp);
    sr__arena_pool_clear(&tp->rx_pool);
    pthread_mutex_destroy(&tp->mu);
    free(tp);
}

int sr__transport_released(const sr_transport *tp)
{
    return __atomic_load_n(&tp->released, __ATOMIC_ACQUIRE);
}

void sr__transport_post_end(sr_transport *tp, int code, long status, const char *text)
{
    int asked;
    pthread_mutex_lock(&tp->mu);
    asked = tp->close_req;
    pthread_mutex_unlock(&tp->mu);
    if (asked) {
        code = SR_OK;
        status = 0;
        text = NULL;
    }
    sr__transport_post_closed(tp, code, status, text);
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

int sr__transport_backpressure(sr_transport *tp)
{
    return sr__loop_congested(tp->loop) || __atomic_load_n(&tp->host_hold, __ATOMIC_SEQ_CST);
}

void sr__transport_hold(sr_transport *tp, int on)
{
    __atomic_store_n(&tp->host_hold, on, __ATOMIC_SEQ_CST);
    /* The I/O threads look at paused transports again. */
    if (!on) sr__loop_resume_io(tp->loop);
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

/* ---------------------------------------------- receiving (I/O side) */

void sr__transport_set_decoder(sr_transport *tp, const sr_transport_cfg *cfg)
{
    tp->rx_proto = cfg->protocol;
    tp->rx_max = cfg->max_message_size;
    tp->rx_handshake = cfg->handshake_len > 0;
}

/* A batch: an sr_buf of sr_rx_msg entries. Its messages are cleared, their
 * arenas back to pool (NULL: freed; a pool only on the I/O side). */
static void batch_clear(sr_buf *b, sr_arena_pool *pool)
{
    sr_rx_msg *e = (sr_rx_msg *)(void *)b->data;
    size_t i, n = b->len / sizeof(sr_rx_msg);
    for (i = 0; i < n; i++)
        sr__msg_recycle(&e[i].m, pool);
    b->len = 0;
}

static void batch_free(sr_buf *b)
{
    batch_clear(b, NULL);
    sr__buf_free(b);
}

/* A list of batches (an sr_buf of sr_buf), each freed, and the list. */
static void batches_free(sr_buf *list)
{
    size_t i;
    for (i = 0; i < list->len / sizeof(sr_buf); i++)
        batch_free((sr_buf *)(void *)list->data + i);
    sr__buf_free(list);
}

/* Under the loop's lock: the batch in rx_msgs added to the queue's last
 * event, this transport's batch the host has not taken yet. Then the host
 * gets one event, one hand-back and one dispatch for what came in several
 * reads, and the batch buffer here is reused at once. Bounded, so that one
 * event stays a small piece of work. */
#define MERGE_MAX 64
static int merge_batch(sr_event *tail, void *arg)
{
    sr_buf *into = (sr_buf *)(void *)tail->data, *from = arg;
    if ((into->len + from->len) / sizeof(sr_rx_msg) > MERGE_MAX) return -1;
    return sr__buf_append(into, from->data, from->len);
}

/* Post the batch in rx_msgs (wire: the bytes it took): merged into the
 * queue's tail, or the buffer itself goes in an event, not a copy, and comes
 * back to be reused (free_done); the next batch starts in a returned buffer
 * or a new one. */
static int post_msgs(sr_transport *tp, size_t wire)
{
    sr_buf batch = tp->rx_msgs;
    sr_event *ev = NULL;
    if (batch.len == 0) return 0;
    if (!sr__transport_released(tp) &&
        sr__loop_merge_tail(tp->loop, tp_dispatch, tp, SR_EV_TP_MSGS, merge_batch, &tp->rx_msgs,
                            batch.len + 2 * wire)) {
        tp->rx_msgs.len = 0; /* the entries moved */
        return 0;
    }
    if (!sr__transport_released(tp))
        ev = sr__event_new(tp_dispatch, tp_discard, tp, SR_EV_TP_MSGS, &batch, sizeof batch);
    if (!ev) {
        batch_clear(&tp->rx_msgs, &tp->rx_pool);
        return sr__transport_released(tp) ? 0 : -1;
    }
    memset(&tp->rx_msgs, 0, sizeof tp->rx_msgs);
    /* The values own allocations of their own, a few times the wire size. */
    ev->weight = batch.len + 2 * wire;
    sr__transport_ref(tp);
    sr__loop_post(tp->loop, ev);
    return 0;
}

/* From here on the host gets raw bytes: first what rx_part held, then
 * data[0..len). */
static int go_raw(sr_transport *tp, const char *data, size_t len)
{
    int rc = 0;
    size_t i;
    tp->rx_proto = NULL;
    for (i = 0; rc == 0 && i < tp->rx_nchunks; i++)
        if (tp->rx_chunks[i].len)
            rc = sr__transport_post(tp, SR_EV_TP_DATA, tp->rx_chunks[i].data, tp->rx_chunks[i].len);
    chunks_free(tp);
    if (rc == 0 && tp->rx_part.len)
        rc = sr__transport_post(tp, SR_EV_TP_DATA, tp->rx_part.data, tp->rx_part.len);
    sr__buf_free(&tp->rx_part);
    if (rc == 0 && len) rc = sr__transport_post(tp, SR_EV_TP_DATA, data, len);
    return rc;
}

/* Parse whole messages from data[0..len) into rx_msgs; *used gets the
 * bytes they took. 0 (stopped at an incomplete message or the end), or -1
 * with the batch posted and the stream gone raw (a fault: the host reports
 * it), or -2 when out of memory. */
static int parse_into(sr_transport *tp, const char *data, size_t len, size_t *used)
{
    size_t off = 0;
    *used = 0;
    while (off < len) {
        sr_rx_msg e;
        sr_error err;
        int r;
        memset(&e, 0, sizeof e);
        r = tp->rx_proto->parse_pooled
                ? tp->rx_proto->parse_pooled(data + off, len - off, tp->rx_max, &e.m, &tp->rx_pool,
                                             &err)
                : tp->rx_proto->parse(data + off, len - off, tp->rx_max, &e.m, &err);
        if (r == 0) break;
        if (r < 0) {
            *used = off;
            return -1;
        }
        e.bytes = (size_t)r;
        if (tp->rx_msgs.cap == 0 && tp->rx_nfree) tp->rx_msgs = tp->rx_free[--tp->rx_nfree];
        if (sr__buf_append(&tp->rx_msgs, (const char *)&e, sizeof e) != 0) {
            sr__msg_clear(&e.m);
            *used = off;
            return -2;
        }
        off += (size_t)r;
    }
    *used = off;
    return 0;
}

/* Free what the host handed back: on this thread, whose allocator made it,
 * the frees are cheap and the memory is reused here at once. Emptied batch
 * buffers of a usual size are kept for the next batches, and the messages'
 * arenas go to the pool for the next messages. A single message back (a
 * quiet connection: a ping, a call now and then) halves the pool and lets
 * the spare buffers go, so what a burst left goes over a few of them, and
 * a connection that only ever sees pings keeps none. */
static void free_done(sr_transport *tp)
{
    sr_buf list;
    size_t i, n = 0;
    pthread_mutex_lock(&tp->mu);
    list = tp->rx_done;
    tp->rx_done = tp->rx_spare;
    tp->rx_done_bytes = 0;
    __atomic_store_n(&tp->rx_returned, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&tp->mu);
    for (i = 0; i < list.len / sizeof(sr_buf); i++) {
        sr_buf *b = (sr_buf *)(void *)list.data + i;
        n += b->len / sizeof(sr_rx_msg);
        batch_clear(b, &tp->rx_pool);
        if (b->cap <= (256u << 10) &&
            tp->rx_nfree < (int)(sizeof tp->rx_free / sizeof *tp->rx_free))
            tp->rx_free[tp->rx_nfree++] = *b;
        else
            sr__buf_free(b);
    }
    list.len = 0;
    tp->rx_spare = list;
    if (n <= 1) {
        sr__arena_pool_halve(&tp->rx_pool);
        free_spares(tp);
    }
}

static void free_spares(sr_transport *tp)
{
    while (tp->rx_nfree)
        sr__buf_free(&tp->rx_free[--tp->rx_nfree]);
}

/* A large text record goes to pieces past this size (see rx_chunks). */
#define RX_STREAM_MIN (256u << 10)
#define RX_CHUNK (256u << 10)

/* Start holding the record in pieces: rx_part's buffer is the first,
 * uncopied. 0, or -1 when out of memory. */
static int chunks_begin(sr_transport *tp)
{
    sr_buf *v = malloc(16 * sizeof *v);
    if (!v) return -1;
    tp->rx_chunks = v;
    tp->rx_chunks_cap = 16;
    tp->rx_nchunks = 1;
    v[0] = tp->rx_part;
    tp->rx_chunks_len = tp->rx_part.len;
    memset(&tp->rx_part, 0, sizeof tp->rx_part);
    return 0;
}

/* Add data to the record in pieces; 0, or -1 when out of memory. */
static int chunks_add(sr_transport *tp, const char *data, size_t len)
{
    while (len) {
        sr_buf *last = &tp->rx_chunks[tp->rx_nchunks - 1];
        size_t k;
        if (tp->rx_nchunks == 1 || last->len == last->cap) {
            void *p;
            if (tp->rx_nchunks == tp->rx_chunks_cap) {
                size_t cap = tp->rx_chunks_cap * 2;
                sr_buf *v = realloc(tp->rx_chunks, cap * sizeof *v);
                if (!v) return -1;
                tp->rx_chunks = v;
                tp->rx_chunks_cap = cap;
            }
            p = mmap(NULL, RX_CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) return -1;
            last = &tp->rx_chunks[tp->rx_nchunks++];
            last->data = p;
            last->len = 0;
            last->cap = RX_CHUNK;
        }
        k = last->cap - last->len < len ? last->cap - last->len : len;
        memcpy(last->data + last->len, data, k);
        last->len += k;
        tp->rx_chunks_len += k;
        data += k;
        len -= k;
    }
    return 0;
}

typedef struct chunk_reader {
    sr_transport *tp;
    size_t i, off;
} chunk_reader;

/* The parser's reader: each piece is freed as soon as it has been read. */
static size_t chunk_read(void *ud, char *buf, size_t size)
{
    chunk_reader *r = ud;
    sr_transport *tp = r->tp;
    size_t n = 0;
    while (n < size && r->i < tp->rx_nchunks) {
        sr_buf *c = &tp->rx_chunks[r->i];
        size_t k = c->len - r->off;
        if (k > size - n) k = size - n;
        memcpy(buf + n, c->data + r->off, k);
        n += k;
        r->off += k;
        if (r->off == c->len) {
            chunk_free(c, r->i == 0);
            r->i++;
            r->off = 0;
        }
    }
    return n;
}

/* An entry that tells the host the stream failed here (type 0, error set):
 * the bytes of a record parsed in pieces are gone, so the host cannot
 * parse them again to find the fault. */
static int post_fault(sr_transport *tp, const sr_error *err, size_t wire)
{
    sr_rx_msg e;
    memset(&e, 0, sizeof e);
    e.m.error = strdup(err->message);
    e.bytes = wire;
    if (!e.m.error || sr__buf_append(&tp->rx_msgs, (const char *)&e, sizeof e) != 0) {
        free(e.m.error);
        return -1;
    }
    return post_msgs(tp, wire);
}

/* The record in pieces ends with data[0..n) (its separator excluded):
 * parse it. 0, or -1 when out of memory. After a fault the stream is raw. */
static int chunks_finish(sr_transport *tp, const char *data, size_t n, int *faulted)
{
    chunk_reader r = {tp, 0, 0};
    sr_rx_msg e;
    sr_error err;
    size_t wire;
    int rc;
    *faulted = 0;
    if (chunks_add(tp, data, n) != 0) return -1;
    wire = tp->rx_chunks_len + 1;
    memset(&e, 0, sizeof e);
    memset(&err, 0, sizeof err);
    if (tp->rx_max && tp->rx_chunks_len > tp->rx_max) {
        rc = SR_EPROTOCOL;
        snprintf(err.message, sizeof err.message, "message too large (%zu bytes, limit %zu)",
                 tp->rx_chunks_len, tp->rx_max);
    } else {
        rc = tp->rx_proto->parse_stream(chunk_read, &r, &e.m, &err);
    }
    chunks_free(tp);
    if (rc != SR_OK) {
        sr__msg_clear(&e.m);
        if (rc == SR_ENOMEM) return -1;
        *faulted = 1;
        return post_fault(tp, &err, wire);
    }
    e.bytes = wire;
    if (sr__buf_append(&tp->rx_msgs, (const char *)&e, sizeof e) != 0) {
        sr__msg_clear(&e.m);
        return -1;
    }
    return post_msgs(tp, wire);
}

int sr__transport_post_data(sr_transport *tp, const char *data, size_t len)
{
    size_t used, wire = 0;
    int rc;
    if (!tp->rx_proto) return len ? sr__transport_post(tp, SR_EV_TP_DATA, data, len) : 0;
    if (__atomic_load_n(&tp->rx_returned, __ATOMIC_RELAXED)) free_done(tp);
    if (tp->rx_handshake) {
        /* The reply is the host's to read; messages may follow it. */
        const char *rs = memchr(data, SR_RECORD_SEPARATOR, len);
        size_t h = rs ? (size_t)(rs - data) + 1 : len;
        if (h && sr__transport_post(tp, SR_EV_TP_DATA, data, h) != 0) return -1;
        if (!rs) return 0;
        tp->rx_handshake = 0;
        data += h;
        len -= h;
    }
    if (len == 0) return 0;
    if (tp->rx_part.len || tp->rx_nchunks) {
        /* Finish the message begun earlier from the fewest new bytes: for
         * text, up to the first separator (looked for only in the new
         * bytes, so a large message stays linear); binary framing says its
         * own length, so the parser is asked again as bytes come. */
        size_t take = len;
        if (!tp->rx_proto->binary) {
            const char *rs = memchr(data, SR_RECORD_SEPARATOR, len);
            size_t max = tp->rx_max ? tp->rx_max : (size_t)-1;
            if (rs) take = (size_t)(rs - data) + 1;
            if (tp->rx_proto->parse_stream &&
                (tp->rx_nchunks || tp->rx_part.len + len > RX_STREAM_MIN)) {
                int faulted;
                if (!tp->rx_nchunks && chunks_begin(tp) != 0) return -1;
                if (!rs) {
                    if (tp->rx_chunks_len + len > max) {
                        /* as parse says it: the record cannot fit */
                        sr_error err;
                        size_t have = tp->rx_chunks_len + len;
                        memset(&err, 0, sizeof err);
                        chunks_free(tp);
                        snprintf(err.message, sizeof err.message,
                                 "message too large (%zu bytes, limit %zu)", have, max);
                        if (post_fault(tp, &err, have) != 0) return -1;
                        return go_raw(tp, NULL, 0);
                    }
                    return chunks_add(tp, data, len);
                }
                if (chunks_finish(tp, data, take - 1, &faulted) != 0) return -1;
                if (faulted) return go_raw(tp, data + take, len - take);
                data += take;
                len -= take;
                goto rest;
            }
            if (!rs && tp->rx_part.len + len <= max)
                return sr__buf_append(&tp->rx_part, data, len) == 0 ? 0 : -1;
        }
        if (sr__buf_append(&tp->rx_part, data, take) != 0) return -1;
        rc = parse_into(tp, tp->rx_part.data, tp->rx_part.len, &used);
        if (rc == -1) {
            if (post_msgs(tp, used) != 0) return -1;
            sr__buf_consume(&tp->rx_part, used);
            return go_raw(tp, data + take, len - take);
        }
        if (rc == -2) return -1;
        if (used < tp->rx_part.len) {
            /* Still incomplete (binary): what is left waits in rx_part. */
            sr__buf_consume(&tp->rx_part, used);
            if (take < len && sr__buf_append(&tp->rx_part, data + take, len - take) != 0) return -1;
            return post_msgs(tp, used);
        }
        wire = used;
        tp->rx_part.len = 0;
        if (tp->rx_part.cap > (256u << 10)) sr__buf_free(&tp->rx_part);
        data += take;
        len -= take;
    }
rest:
    rc = parse_into(tp, data, len, &used);
    if (post_msgs(tp, wire + used) != 0 || rc == -2) return -1;
    if (rc == -1) return go_raw(tp, data + used, len - used);
    if (used < len && sr__buf_append(&tp->rx_part, data + used, len - used) != 0) return -1;
    return 0;
}

void sr__transport_post_closed(sr_transport *tp, int code, long status, const char *text)
{
    sr_event *ev = tp->closed_ev;
    /* A message cut off by the close: the host reports it. */
    if (tp->rx_proto && tp->rx_part.len) go_raw(tp, NULL, 0);
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

/* Hand a dispatched batch back to the I/O side to free, or free it here
 * when that side has finished (it will not run again) or has not come for
 * what it was given already (it frees on its next receive). */
#define RX_DONE_MAX (256u << 10)
static void give_back(sr_transport *tp, sr_buf *batch)
{
    int kept = 0;
    pthread_mutex_lock(&tp->mu);
    if (!tp->dead && !sr__transport_released(tp) && tp->rx_done_bytes + batch->len <= RX_DONE_MAX &&
        sr__buf_append(&tp->rx_done, batch, sizeof *batch) == 0) {
        kept = 1;
        tp->rx_done_bytes += batch->len;
        __atomic_store_n(&tp->rx_returned, 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&tp->mu);
    if (!kept) batch_free(batch);
}

/* Kept messages go back in batches of this many (a hand-back takes the
 * transport's lock). */
#define RECYCLE_BATCH 64
void sr__transport_recycle(sr_transport *tp, sr_rx_msg *m)
{
    if (sr__buf_append(&tp->host_ret, m, sizeof *m) != 0) sr__msg_clear(&m->m);
    memset(m, 0, sizeof *m);
    if (tp->host_ret.len >= RECYCLE_BATCH * sizeof *m) sr__transport_recycle_flush(tp);
}

void sr__transport_recycle_flush(sr_transport *tp)
{
    sr_buf b = tp->host_ret;
    if (b.len == 0) return;
    memset(&tp->host_ret, 0, sizeof tp->host_ret);
    give_back(tp, &b);
}

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
        case SR_EV_TP_MSGS: {
            sr_buf *batch = (sr_buf *)(void *)ev->data;
            if (tp->up.on_msgs)
                tp->up.on_msgs(tp->ud, tp, (sr_rx_msg *)(void *)batch->data,
                               batch->len / sizeof(sr_rx_msg));
            break;
        }
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
    if (ev->type == SR_EV_TP_MSGS) give_back(tp, (sr_buf *)(void *)ev->data);
    /* The event's reference; the upcall may have released the host's. */
    sr__transport_unref(tp);
}

static void tp_discard(sr_event *ev)
{
    if (ev->type == SR_EV_TP_MSGS) batch_free((sr_buf *)(void *)ev->data);
    sr__transport_unref(ev->target);
}
