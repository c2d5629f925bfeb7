/*
 * sse.c - the text/event-stream parser (see sse.h). It owns the partial
 * line and the event's data; events go out through a callback as soon as
 * their blank line arrives.
 */
#include "sse.h"

#include <string.h>

#include "error.h"

void sr__sse_init(sr_sse *p, size_t max)
{
    memset(p, 0, sizeof *p);
    p->max = max;
}

void sr__sse_free(sr_sse *p)
{
    sr__buf_free(&p->line);
    sr__buf_free(&p->data);
    memset(p, 0, sizeof *p);
}

void sr__sse_init_stream(sr_sse *p, size_t max)
{
    sr__sse_init(p, max);
    p->stream = 1;
}

int sr__sse_pending(const sr_sse *p)
{
    return p->line.len > 0 || p->has_data || p->lstate != 0;
}

static int too_large(const sr_sse *p, size_t more)
{
    return p->max && p->line.len + p->data.len + more > p->max;
}

#define KEEP_MAX (64u << 10)

/* The first data line of an event, gathered in p->line: becomes the
 * event's data in place (no copy of a large message). */
static int steal_line(sr_sse *p)
{
    sr_buf t;
    const char *s = p->line.data;
    size_t n = p->line.len, skip = 5; /* "data:" */
    if (n < 5 || memcmp(s, "data:", 5) != 0) return 0;
    if (n > 5 && s[5] == ' ') skip = 6;
    memmove(p->line.data, p->line.data + skip, n - skip);
    p->line.len = n - skip;
    if (sr__buf_append_byte(&p->line, '\n') != 0) return -1;
    t = p->data;
    p->data = p->line;
    p->line = t;
    p->line.len = 0;
    p->has_data = 1;
    return 1;
}

/* One complete line (without its end). */
static int take_line(sr_sse *p, const char *s, size_t n, sr_sse_event_fn on_event, void *ud,
                     sr_error *err)
{
    const char *colon;
    size_t flen;
    if (n == 0) {
        int rc = 0;
        if (p->has_data) {
            /* The last data line's '\n' is not part of the event. */
            rc = on_event(ud, p->data.data, p->data.len - 1);
        }
        p->data.len = 0;
        p->has_data = 0;
        /* Keep no large message's buffer around between events. */
        if (p->data.cap > KEEP_MAX) sr__buf_free(&p->data);
        return rc;
    }
    if (s[0] == ':') return 0; /* a comment: the server's keep-alive or first flush */
    colon = memchr(s, ':', n);
    flen = colon ? (size_t)(colon - s) : n;
    if (flen != 4 || memcmp(s, "data", 4) != 0) return 0; /* event, id, retry: unused */
    if (colon) {
        s = colon + 1;
        n -= flen + 1;
        if (n && *s == ' ') {
            s++;
            n--;
        }
    } else {
        n = 0;
    }
    if (sr__buf_append(&p->data, s, n) != 0 || sr__buf_append_byte(&p->data, '\n') != 0)
        return sr__error_set(err, SR_ENOMEM, "out of memory reading an event stream");
    p->has_data = 1;
    return 0;
}

/* Streaming: emit data bytes, counted against the event's limit. */
static int emit(sr_sse *p, const char *s, size_t n, sr_sse_event_fn on_event, void *ud,
                sr_error *err)
{
    if (!n) return 0;
    if (p->max && p->ev_len + n > p->max)
        return sr__error_set(err, SR_EPROTOCOL, "event too large in the event stream");
    p->ev_len += n;
    return on_event(ud, s, n);
}

/* Streaming: the field of the line in p->line is known, or the line ended
 * (eol). Returns 0 while undecided, 1 decided, <0 / the callback's value on
 * error. */
static int decide(sr_sse *p, int eol, sr_sse_event_fn on_event, void *ud, sr_error *err)
{
    const char *s = p->line.data;
    size_t n = p->line.len, skip;
    int rc;
    if (n == 0) {
        if (eol) { /* a blank line ends the event */
            p->has_data = 0;
            p->ev_len = 0;
        }
        return eol;
    }
    if (s[0] == ':') {
        p->lstate = 2;
        return 1;
    }
    if (n < 6 && !eol && memcmp(s, "data:", n < 5 ? n : 5) == 0) return 0; /* not yet known */
    if (n >= 5 && memcmp(s, "data:", 5) == 0)
        skip = n > 5 && s[5] == ' ' ? 6 : 5;
    else if (eol && n == 4 && memcmp(s, "data", 4) == 0)
        skip = 4;
    else {
        p->lstate = 2;
        return 1;
    }
    if (p->has_data && (rc = emit(p, "\n", 1, on_event, ud, err)) != 0) return rc;
    p->has_data = 1;
    p->lstate = 1;
    if ((rc = emit(p, s + skip, n - skip, on_event, ud, err)) != 0) return rc;
    return 1;
}

static int feed_stream(sr_sse *p, const char *in, size_t len, sr_sse_event_fn on_event, void *ud,
                       sr_error *err)
{
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        int rc = 0, eol;
        if (p->after_cr) {
            p->after_cr = 0;
            if (in[i] == '\n') {
                i++;
                continue;
            }
        }
        while (i < len && in[i] != '\n' && in[i] != '\r')
            i++;
        eol = i < len;
        if (p->lstate == 1) {
            rc = emit(p, in + start, i - start, on_event, ud, err);
        } else if (p->lstate == 0) {
            if (sr__buf_append(&p->line, in + start, i - start) != 0)
                return sr__error_set(err, SR_ENOMEM, "out of memory reading an event stream");
            rc = decide(p, eol, on_event, ud, err);
            if (rc == 1) {
                p->line.len = 0;
                rc = 0;
            }
            if (rc == 0 && p->max && p->line.len > p->max)
                return sr__error_set(err, SR_EPROTOCOL, "event too large in the event stream");
        }
        if (rc) return rc;
        if (eol) {
            p->after_cr = in[i] == '\r';
            p->lstate = 0;
            p->line.len = 0;
            i++;
        }
    }
    return 0;
}

int sr__sse_feed(sr_sse *p, const char *in, size_t len, sr_sse_event_fn on_event, void *ud,
                 sr_error *err)
{
    size_t i = 0;
    if (p->stream) return feed_stream(p, in, len, on_event, ud, err);
    while (i < len) {
        size_t start = i;
        int rc;
        if (p->after_cr) {
            p->after_cr = 0;
            if (in[i] == '\n') {
                i++;
                continue;
            }
        }
        while (i < len && in[i] != '\n' && in[i] != '\r')
            i++;
        if (too_large(p, i - start))
            return sr__error_set(err, SR_EPROTOCOL, "event too large in the event stream");
        if (i == len) {
            /* No line end yet: keep the piece. */
            if (sr__buf_append(&p->line, in + start, i - start) != 0)
                return sr__error_set(err, SR_ENOMEM, "out of memory reading an event stream");
            break;
        }
        p->after_cr = in[i] == '\r';
        if (p->line.len) {
            int stolen = 0;
            if (sr__buf_append(&p->line, in + start, i - start) != 0 ||
                (!p->has_data && (stolen = steal_line(p)) < 0))
                return sr__error_set(err, SR_ENOMEM, "out of memory reading an event stream");
            rc = stolen ? 0 : take_line(p, p->line.data, p->line.len, on_event, ud, err);
            p->line.len = 0;
            if (p->line.cap > KEEP_MAX) sr__buf_free(&p->line);
        } else {
            rc = take_line(p, in + start, i - start, on_event, ud, err);
        }
        i++;
        if (rc) return rc;
    }
    return 0;
}
