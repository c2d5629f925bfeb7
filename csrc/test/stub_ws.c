/*
 * stub_ws.c - stand-ins for the WebSocket back end (ws_transport.c /
 * transport.c) so loop and http tests link before, or without, the real one.
 * Only for tests built by hand: compile with -DSR_TEST_STUB_WS and link this
 * file instead of ws_transport.c and transport.c.
 */
#include <stdlib.h>

#include "loop.h"

struct sr_ws_io {
    sr_loop *loop;
};

int sr_test_ws_resumes;
int sr_test_tp_dispatched;
int sr_test_tp_discarded;

struct sr_ws_io *sr__ws_io_new(sr_loop *loop, sr_error *err)
{
    struct sr_ws_io *io = calloc(1, sizeof *io);
    if (!io && err) {
        err->code = SR_ENOMEM;
        err->status = 0;
        err->message[0] = '\0';
    }
    if (io) io->loop = loop;
    return io;
}

void sr__ws_io_free(struct sr_ws_io *io)
{
    free(io);
}

void sr__ws_io_resume(struct sr_ws_io *io)
{
    (void)io;
    sr_test_ws_resumes++;
}

void sr__transport_dispatch(sr_event *ev)
{
    (void)ev;
    sr_test_tp_dispatched++;
}

void sr__transport_event_discard(sr_event *ev)
{
    (void)ev;
    sr_test_tp_discarded++;
}
