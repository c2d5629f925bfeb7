/*
 * http_transport.c - the frame of the HTTP transport kinds (http_transport.h):
 * construction, the host's commands, the timer, the close and the end.
 *
 * Invariant: a kind's hooks run on the thread only, never once the state is
 * SR_HTTP_TP_DONE (detach stops the kind's requests before it drops the
 * I/O reference).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "http_transport.h"

/* ------------------------------------------------------ I/O-side lifetime */

/* Thread. The I/O side is done with t: stop its requests and timer, drop
 * the I/O reference. t may be freed on return. */
static void detach(sr_http_tp *t)
{
    if (t->state == SR_HTTP_TP_DONE) return;
    t->state = SR_HTTP_TP_DONE;
    sr__http_timer_cancel(t->io, &t->timer);
    t->kind->stop(t); /* cleaned up here, on the thread that used them */
    sr__http_send_stop(&t->send);
    sr__transport_unref(&t->base);
}

void sr__http_tp_fail(sr_http_tp *t, int code, long status, const char *text)
{
    sr__transport_post_end(&t->base, code, status, text);
    detach(t);
}

void sr__http_tp_arm(sr_http_tp *t, uint64_t due)
{
    sr__http_timer_arm(t->io, &t->timer, due);
}

void sr__http_tp_pump(sr_http_tp *t)
{
    char msg[600];
    int r;
    if (t->state != SR_HTTP_TP_OPEN) return;
    r = sr__http_send_pump(&t->send, msg, sizeof msg);
    if (r < 0)
        sr__http_tp_fail(t, SR_ETRANSPORT, 0, msg);
    else if (r == 0)
        t->kind->sent(t);
}

/* ------------------------------------------------------------ receiving */

int sr__http_tp_opened(sr_http_tp *t)
{
    uint64_t now = sr__liveness_clock();
    t->state = SR_HTTP_TP_OPEN;
    sr__liveness_opened(&t->live, now);
    if (sr__transport_post(&t->base, SR_EV_TP_OPEN, NULL, 0) != 0) return -1;
    sr__http_send_open(&t->send);
    sr__http_tp_arm(t, now);
    return 0;
}

void sr__http_tp_pause(sr_http_tp *t, sr_http_xfer *x)
{
    if (!t->paused) {
        t->paused = 1;
        sr__liveness_pause(&t->live, sr__liveness_clock());
    }
    x->paused = 1;
}

void sr__http_tp_resume(sr_http_tp *t)
{
    uint64_t now = sr__liveness_clock();
    if (!t->paused) return;
    t->paused = 0;
    sr__liveness_resume(&t->live, now);
    sr__http_tp_arm(t, now);
}

/* ----------------------------------------------------------------- timer */

/* Thread: what is due (the connect limit, close grace, the handshake POST,
 * liveness), then re-arm to the earliest deadline. t may be freed. */
static void tick(sr_http_io *io, sr_http_timer *tm)
{
    sr_http_tp *t = (sr_http_tp *)(void *)((char *)tm - offsetof(sr_http_tp, timer));
    uint64_t now = sr__liveness_clock(), next = 0;
    char msg[600];
    (void)io;
    if (t->state == SR_HTTP_TP_CONNECTING) {
        if (now >= t->connect_deadline) {
            snprintf(msg, sizeof msg, "%s connection to %s failed: no response within %u s",
                     t->kind->label, t->where, SR_HTTP_TP_CONNECT_US / 1000000u);
            sr__http_tp_fail(t, SR_ETIMEOUT, 0, msg);
            return;
        }
        sr__http_tp_arm(t, t->connect_deadline);
        return;
    }
    if (t->state != SR_HTTP_TP_OPEN) return;
    if (t->closing && now >= t->close_deadline) {
        sr__http_tp_fail(t, SR_OK, 0, NULL);
        return;
    }
    switch (sr__liveness_check(&t->live, now, &next)) {
    case SR_LIVENESS_PING:
        sr__transport_queue_if_idle(&t->base, t->ping, t->ping_len);
        break;
    case SR_LIVENESS_SERVER_TIMEOUT: /* never for Long Polling: not armed there */
        sr__http_tp_fail(t, SR_ETIMEOUT, 0, SR_LIVENESS_SERVER_TIMEOUT_TEXT);
        return;
    case SR_LIVENESS_HANDSHAKE_TIMEOUT:
        sr__http_tp_fail(t, SR_ETIMEOUT, 0, SR_LIVENESS_HANDSHAKE_TIMEOUT_TEXT);
        return;
    case SR_LIVENESS_NONE:
        break;
    }
    if (t->closing && (!next || t->close_deadline < next)) next = t->close_deadline;
    if (next) sr__http_tp_arm(t, next);
    sr__http_tp_pump(t); /* last: it may end t */
}

/* ------------------------------------------------------- host commands */

static void cmd_open(sr_transport *base)
{
    sr_http_tp *t = (sr_http_tp *)base;
    if (t->state != SR_HTTP_TP_IDLE) return;
    t->state = SR_HTTP_TP_CONNECTING;
    if (t->kind->start(t) != 0) return;
    t->connect_deadline = sr__liveness_clock() + SR_HTTP_TP_CONNECT_US;
    sr__http_tp_arm(t, t->connect_deadline);
}

static void cmd_close(sr_transport *base)
{
    sr_http_tp *t = (sr_http_tp *)base;
    if (t->state == SR_HTTP_TP_IDLE || t->state == SR_HTTP_TP_CONNECTING) {
        sr__http_tp_fail(t, SR_OK, 0, NULL); /* not open yet: nothing to say goodbye to */
    } else if (t->state == SR_HTTP_TP_OPEN && !t->closing) {
        t->closing = 1;
        t->close_deadline = sr__liveness_clock() + SR_HTTP_TP_CLOSE_US;
        sr__http_tp_arm(t, sr__liveness_clock()); /* the tick pumps, then the kind's sent hook */
    }
}

static void cmd_write(sr_transport *base)
{
    sr__http_tp_pump((sr_http_tp *)base);
}

static void cmd_release(sr_transport *base)
{
    detach((sr_http_tp *)base);
}

/* The handlers of host commands (http_io.h). Each checks the state itself:
 * open acts in SR_HTTP_TP_IDLE only, close and detach not in
 * SR_HTTP_TP_DONE, pump in SR_HTTP_TP_OPEN only. */
static const sr_http_cmd_ops cmd_ops = {cmd_open, cmd_write, cmd_close, cmd_release};

static void cmd(sr_transport *base, unsigned bits)
{
    sr_http_tp *t = (sr_http_tp *)base;
    sr__http_cmds_post(t->io, &t->cmds, bits);
}

void sr__http_tp_kick(sr_transport *tp)
{
    cmd(tp, SR_HTTP_CMD_WRITE);
}

void sr__http_tp_close(sr_transport *tp)
{
    cmd(tp, SR_HTTP_CMD_CLOSE);
}

void sr__http_tp_release(sr_transport *tp)
{
    cmd(tp, SR_HTTP_CMD_RELEASE);
}

/* --------------------------------------------------------- construction */

sr_http_tp *sr__http_tp_new(size_t size, const sr_http_tp_kind *kind, sr_loop *loop,
                            const sr_transport_cfg *cfg, const sr_transport_upcalls *up, void *ud,
                            sr_error *err)
{
    sr_http_tp *t;
    if (!loop || !cfg || !cfg->url) {
        sr__error_set(err, SR_EUSAGE, "%s transport: loop and url are required", kind->label);
        return NULL;
    }
    if (cfg->binary && kind->text_only) {
        sr__error_set(err, SR_EUSAGE, "%s", kind->text_only);
        return NULL;
    }
    t = calloc(1, size);
    if (!t) {
        sr__error_set(err, SR_ENOMEM, "out of memory");
        return NULL;
    }
    if (sr__transport_init(&t->base, &kind->ops, loop, up, ud, 0) != 0) {
        free(t);
        sr__error_set(err, SR_ENOMEM, "out of memory");
        return NULL;
    }
    t->kind = kind;
    t->state = SR_HTTP_TP_IDLE;
    t->timer.fire = tick;
    sr__http_cmds_init(&t->cmds, &t->base, &cmd_ops);
    sr__transport_set_decoder(&t->base, cfg);
    return t;
}

/* The kind's requests and the sender, configured; NULL or the failure's
 * message. */
static const char *setup_handles(sr_http_tp *t, const sr_transport_cfg *cfg)
{
    sr_http_conf conf;
    const char *msg;
    sr__http_conf_of(&conf, cfg);
    msg = t->kind->setup(t, &conf);
    if (msg) return msg;
    t->send.io = t->io;
    t->send.tp = &t->base;
    t->send.live = &t->live;
    t->send.label = t->kind->label;
    t->send.where = t->where;
    t->send.first = t->hs;
    t->send.first_len = t->hs_len;
    t->send.done = t->kind->post_done;
    t->send.owner = t;
    return sr__http_send_setup(&t->send, t->url, &conf, cfg->binary,
                               (long)(SR_HTTP_TP_CONNECT_US / 1000u));
}

sr_transport *sr__http_tp_open(sr_http_tp *t, const sr_transport_cfg *cfg, sr_error *err)
{
    const char *msg;
    if (sr__http_url_dup(cfg->url, t->kind->label, &t->url, &t->where, err) != 0) goto fail;
    t->hs_len = cfg->handshake ? cfg->handshake_len : 0;
    t->ping_len = cfg->ping ? cfg->ping_len : 0;
    if (!(t->hs = sr__http_dup_bytes(cfg->handshake, t->hs_len)) ||
        !(t->ping = sr__http_dup_bytes(cfg->ping, t->ping_len))) {
        sr__error_set(err, SR_ENOMEM, "out of memory");
        goto fail;
    }
    t->io = sr__http_io_get(t->base.loop, err);
    if (!t->io) goto fail;
    msg = setup_handles(t, cfg);
    if (msg) {
        sr__error_set(err, strcmp(msg, "out of memory") == 0 ? SR_ENOMEM : SR_EUSAGE, "%s", msg);
        goto fail;
    }
    sr__transport_ref(&t->base); /* the I/O side's, until detach */
    cmd(&t->base, SR_HTTP_CMD_OPEN);
    return &t->base;
fail:
    sr__transport_unref(&t->base);
    return NULL;
}

void sr__http_tp_free(sr_http_tp *t)
{
    sr__http_send_free(&t->send);
    free(t->url);
    free(t->where);
    free(t->hs);
    free(t->ping);
}
