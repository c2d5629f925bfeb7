/*
 * sse.h - the text/event-stream format (Server-Sent Events) as the SignalR
 * SSE transport receives it, on byte buffers, no I/O.
 *
 * Follows the WHATWG EventSource parsing rules: lines end with CRLF, LF or
 * CR (a CRLF split between two feeds is one line end); "data:" lines (one
 * leading space dropped) accumulate, joined by "\n"; a blank line ends the
 * event; comments (":...") and the other fields (event, id, retry) are
 * ignored, as the SignalR server sends only data. An event with no data
 * line is not an event.
 */
#ifndef SR_SSE_H
#define SR_SSE_H

#include "buf.h"
#include "signalr.h"
#include <stddef.h>

typedef struct sr_sse {
    sr_buf line;  /* the line being read */
    sr_buf data;  /* the event's data so far, each line followed by '\n' */
    int has_data; /* a data line was seen since the last blank line */
    int after_cr; /* the last byte fed was a CR: a LF next is its pair */
    size_t max;   /* line plus data longer than this is an error; 0 = none */
    /* Streaming (sr__sse_init_stream): data goes out as it arrives. */
    int stream;
    int lstate;    /* 0 reading a field name, 1 a data line's value, 2 a line to skip */
    size_t ev_len; /* data bytes of the event so far */
} sr_sse;

/* One complete event's data (without the final '\n'). Return non-zero to
 * stop feeding (sr__sse_feed returns that value). */
typedef int (*sr_sse_event_fn)(void *ud, const char *data, size_t len);

void sr__sse_init(sr_sse *p, size_t max);
/* Streaming: the callback gets the event data in pieces as they arrive
 * (the '\n' between data lines included), so no event is held whole; the
 * pieces of consecutive events follow each other with nothing between. For
 * a consumer that joins everything anyway (the SignalR records carry their
 * own separators). */
void sr__sse_init_stream(sr_sse *p, size_t max);
void sr__sse_free(sr_sse *p);

/* Feed received bytes. Returns 0; the callback's non-zero value; or
 * SR_EPROTOCOL ("event too large") / SR_ENOMEM with err set. After an
 * error the parser must not be fed again. */
int sr__sse_feed(sr_sse *p, const char *in, size_t len, sr_sse_event_fn on_event, void *ud,
                 sr_error *err);

/* 1 when bytes of an unfinished event are held (a stream that ends here was
 * cut in the middle of an event). */
int sr__sse_pending(const sr_sse *p);

#endif
