/* test_sse.c - the text/event-stream parser (sse.c), fed whole and cut at
 * every byte. */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "sse.h"

/* The events seen, each as "<data>|". */
typedef struct seen {
    char text[4096];
    size_t len;
    int count, stop_at;
} seen;

static int on_event(void *ud, const char *data, size_t len)
{
    seen *s = ud;
    if (s->len + len + 1 < sizeof s->text) {
        memcpy(s->text + s->len, data, len);
        s->len += len;
        s->text[s->len++] = '|';
        s->text[s->len] = 0;
    }
    s->count++;
    return s->count == s->stop_at ? 7 : 0;
}

/* Feed stream in two pieces cut at `cut`; returns the events as text. */
static int feed_cut(const char *stream, size_t len, size_t cut, size_t max, seen *s, sr_error *err)
{
    sr_sse p;
    int rc;
    memset(s, 0, sizeof *s);
    sr__sse_init(&p, max);
    rc = sr__sse_feed(&p, stream, cut, on_event, s, err);
    if (rc == 0) rc = sr__sse_feed(&p, stream + cut, len - cut, on_event, s, err);
    sr__sse_free(&p);
    return rc;
}

/* What the SignalR server sends: a comment first, then one data line per
 * record; plus every line ending and the fields a server may add. */
static const char STREAM[] = ":\r\n"
                             "data: {}\x1e\r\n\r\n"
                             "data: {\"type\":6}\x1e\n\n"
                             "data: a\rdata: b\r\r"
                             "event: x\r\nid: 7\r\nretry: 10\r\ndata:no-space\r\n\r\n"
                             "data:  two\r\ndata\r\n\r\n"
                             "\r\n\r\n"
                             ": only a comment\r\n\r\n"
                             "data: last\r\n\r\n";
static const char EVENTS[] = "{}\x1e|{\"type\":6}\x1e|a\nb|no-space| two\n|last|";

TEST(events_whole)
{
    seen s;
    sr_error err;
    CHECK(feed_cut(STREAM, sizeof STREAM - 1, sizeof STREAM - 1, 0, &s, &err) == 0);
    CHECK_STR(s.text, EVENTS);
    CHECK(s.count == 6);
}

TEST(events_cut_at_every_byte)
{
    size_t k;
    for (k = 0; k < sizeof STREAM; k++) {
        seen s;
        sr_error err;
        int rc = feed_cut(STREAM, sizeof STREAM - 1, k, 0, &s, &err);
        if (rc != 0 || strcmp(s.text, EVENTS) != 0) {
            printf("cut at %zu: rc %d, events %s\n", k, rc, s.text);
            CHECK(0);
            return;
        }
    }
}

TEST(byte_by_byte)
{
    sr_sse p;
    seen s;
    sr_error err;
    size_t i;
    memset(&s, 0, sizeof s);
    sr__sse_init(&p, 0);
    for (i = 0; i < sizeof STREAM - 1; i++)
        CHECK(sr__sse_feed(&p, STREAM + i, 1, on_event, &s, &err) == 0);
    CHECK_STR(s.text, EVENTS);
    CHECK(!sr__sse_pending(&p));
    sr__sse_free(&p);
}

TEST(pending_when_cut_mid_event)
{
    sr_sse p;
    seen s;
    sr_error err;
    memset(&s, 0, sizeof s);
    sr__sse_init(&p, 0);
    CHECK(sr__sse_feed(&p, "data: {}\x1e\r\n", 11, on_event, &s, &err) == 0);
    CHECK(s.count == 0 && sr__sse_pending(&p)); /* no blank line yet */
    CHECK(sr__sse_feed(&p, "\r\ndat", 5, on_event, &s, &err) == 0);
    CHECK(s.count == 1 && sr__sse_pending(&p)); /* half a line */
    sr__sse_free(&p);
    sr__sse_init(&p, 0);
    CHECK(sr__sse_feed(&p, ":hello\r\n\r\n", 10, on_event, &s, &err) == 0);
    CHECK(!sr__sse_pending(&p));
    sr__sse_free(&p);
}

TEST(too_large_is_a_protocol_error)
{
    seen s;
    sr_error err;
    char big[300];
    size_t k;
    memcpy(big, "data: ", 6);
    memset(big + 6, 'x', sizeof big - 6);
    /* Over the limit in one line, whether the line arrives whole or cut. */
    for (k = 0; k <= sizeof big; k += 50) {
        CHECK(feed_cut(big, sizeof big, k, 100, &s, &err) == SR_EPROTOCOL);
        CHECK(strstr(err.message, "too large") != NULL);
    }
    /* Over the limit across several data lines of one event. */
    CHECK(feed_cut("data: 0123456789\ndata: 0123456789\ndata: 0123456789\n\n", 54, 20, 30, &s,
                   &err) == SR_EPROTOCOL);
    /* Exactly at the limit of separate events is fine. */
    CHECK(feed_cut("data: 0123456789\n\ndata: 0123456789\n\n", 36, 3, 20, &s, &err) == 0);
    CHECK(s.count == 2);
}

TEST(callback_stops_feeding)
{
    seen s;
    sr_error err;
    sr_sse p;
    memset(&s, 0, sizeof s);
    s.stop_at = 2;
    sr__sse_init(&p, 0);
    CHECK(sr__sse_feed(&p, STREAM, sizeof STREAM - 1, on_event, &s, &err) == 7);
    CHECK(s.count == 2);
    CHECK_STR(s.text, "{}\x1e|{\"type\":6}\x1e|");
    sr__sse_free(&p);
}

/* Streaming: the pieces, joined, are the events' data joined. */
static int on_piece(void *ud, const char *data, size_t len)
{
    seen *s = ud;
    if (s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, data, len);
        s->len += len;
        s->text[s->len] = 0;
    }
    s->count++;
    return 0;
}

static const char JOINED[] = "{}\x1e"
                             "{\"type\":6}\x1e"
                             "a\nbno-space two\nlast";

TEST(stream_cut_at_every_pair_of_bytes)
{
    size_t a, b, n = sizeof STREAM - 1;
    for (a = 0; a <= n; a++) {
        for (b = a; b <= n; b += 7) {
            sr_sse p;
            seen s;
            sr_error err;
            int rc;
            memset(&s, 0, sizeof s);
            sr__sse_init_stream(&p, 0);
            rc = sr__sse_feed(&p, STREAM, a, on_piece, &s, &err);
            if (rc == 0) rc = sr__sse_feed(&p, STREAM + a, b - a, on_piece, &s, &err);
            if (rc == 0) rc = sr__sse_feed(&p, STREAM + b, n - b, on_piece, &s, &err);
            if (rc != 0 || strcmp(s.text, JOINED) != 0 || sr__sse_pending(&p)) {
                printf("cut at %zu, %zu: rc %d, data %s\n", a, b, rc, s.text);
                CHECK(0);
                sr__sse_free(&p);
                return;
            }
            sr__sse_free(&p);
        }
    }
}

TEST(stream_byte_by_byte_and_limits)
{
    sr_sse p;
    seen s;
    sr_error err;
    size_t i;
    char big[300];
    memset(&s, 0, sizeof s);
    sr__sse_init_stream(&p, 0);
    for (i = 0; i < sizeof STREAM - 1; i++)
        CHECK(sr__sse_feed(&p, STREAM + i, 1, on_piece, &s, &err) == 0);
    CHECK_STR(s.text, JOINED);
    CHECK(!sr__sse_pending(&p));
    CHECK(sr__sse_feed(&p, "data: x", 7, on_piece, &s, &err) == 0);
    CHECK(sr__sse_pending(&p)); /* cut in the middle of an event */
    sr__sse_free(&p);
    /* an event's data over the limit, in one line or across lines */
    memcpy(big, "data: ", 6);
    memset(big + 6, 'x', sizeof big - 6);
    sr__sse_init_stream(&p, 100);
    CHECK(sr__sse_feed(&p, big, sizeof big, on_piece, &s, &err) == SR_EPROTOCOL);
    CHECK(strstr(err.message, "too large") != NULL);
    sr__sse_free(&p);
    sr__sse_init_stream(&p, 30);
    CHECK(sr__sse_feed(&p, "data: 0123456789\ndata: 0123456789\ndata: 0123456789\n\n", 54, on_piece,
                       &s, &err) == SR_EPROTOCOL);
    sr__sse_free(&p);
    /* separate events at the limit are fine; a long ignored line is not */
    sr__sse_init_stream(&p, 20);
    CHECK(sr__sse_feed(&p, "data: 0123456789\n\ndata: 0123456789\n\n", 36, on_piece, &s, &err) ==
          0);
    CHECK(sr__sse_feed(&p, ": a comment that is long but skipped whole\n", 43, on_piece, &s,
                       &err) == 0);
    sr__sse_free(&p);
}

int main(void)
{
    RUN(events_whole);
    RUN(events_cut_at_every_byte);
    RUN(byte_by_byte);
    RUN(pending_when_cut_mid_event);
    RUN(too_large_is_a_protocol_error);
    RUN(callback_stops_feeding);
    RUN(stream_cut_at_every_pair_of_bytes);
    RUN(stream_byte_by_byte_and_limits);
    DONE();
}
