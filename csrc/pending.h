/*
 * pending.h - the table of invocations waiting for a Completion, keyed by
 * invocation id. Owned by one connection, used on the host thread only.
 */
#ifndef SR_PENDING_H
#define SR_PENDING_H

#include "signalr.h"
#include <stddef.h>
#include <stdint.h>

typedef struct sr_pending_entry {
    uint64_t id;
    sr_done_fn done; /* NULL in a table of open client-to-server streams */
    sr_item_fn item; /* server-to-client streams: each item; NULL otherwise */
    void *ud;
} sr_pending_entry;

typedef struct sr_pending {
    sr_pending_entry *slots; /* open addressing, linear probing; id 0 = empty */
    size_t cap;              /* power of two */
    size_t count;
} sr_pending;

int sr__pending_put(sr_pending *p, uint64_t id, sr_done_fn done, sr_item_fn item, void *ud);
/* The entry of id, left in place (valid until the table changes); NULL
 * when absent. */
sr_pending_entry *sr__pending_find(sr_pending *p, uint64_t id);
/* Remove id; fills *out and returns 1 when it was there. */
int sr__pending_take(sr_pending *p, uint64_t id, sr_pending_entry *out);
void sr__pending_free(sr_pending *p);

#endif
