/*
 * stream.h - the state streams add beside the pending table (pending.h),
 * owned by one connection, used on the host thread only:
 *  - the FIFO of messages held while a slow stream consumer has paused the
 *    connection (sr_conn_pause): received messages wait here, in order,
 *    until the last sr_conn_resume;
 *  - our invocation ids as text: the exact decimal form we send, so a
 *    server's " 1" or "01" never matches id 1.
 * The ids of open client-to-server streams live in a second sr_pending
 * table (entries without a done function).
 */
#ifndef SR_STREAM_H
#define SR_STREAM_H

#include "transport.h"
#include <stddef.h>
#include <stdint.h>

typedef struct sr_held {
    sr_rx_msg *v; /* ring buffer */
    size_t head, n, cap;
    size_t bytes; /* wire bytes of the held messages */
} sr_held;

/* Move *m into the queue (its fields now belong to the queue and *m is
 * zeroed). SR_ENOMEM leaves *m untouched. */
int sr__held_push(sr_held *h, sr_rx_msg *m);
/* Take the oldest message; 0 when empty. The caller clears out->m. */
int sr__held_pop(sr_held *h, sr_rx_msg *out);
/* Free every held message and the ring. */
void sr__held_clear(sr_held *h);

/* Parse an invocation id we issued ("1", "2", ...): 1 and *id set when s
 * is exactly such a decimal, 0 otherwise. */
int sr__id_parse(const char *s, uint64_t *id);

#endif
