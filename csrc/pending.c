/*
 * pending.c - open-addressing table of pending invocations. Ids are
 * sequential, so the multiplicative hash spreads them well; deletion uses
 * backward shifting so no tombstones accumulate under steady load.
 */
#include "pending.h"
#include <stdlib.h>

static size_t slot_of(const sr_pending *p, uint64_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (p->cap - 1);
}

static int grow(sr_pending *p)
{
    size_t ncap = p->cap ? p->cap * 2 : 16, i;
    sr_pending_entry *old = p->slots, *ns = calloc(ncap, sizeof *ns);
    size_t ocap = p->cap;
    if (!ns) return -1;
    p->slots = ns;
    p->cap = ncap;
    for (i = 0; i < ocap; i++) {
        if (old[i].id) {
            size_t s = slot_of(p, old[i].id);
            while (ns[s].id)
                s = (s + 1) & (ncap - 1);
            ns[s] = old[i];
        }
    }
    free(old);
    return 0;
}

int sr__pending_put(sr_pending *p, uint64_t id, sr_done_fn done, sr_item_fn item, void *ud)
{
    size_t s;
    if ((p->count + 1) * 2 > p->cap && grow(p) < 0) return SR_ENOMEM;
    s = slot_of(p, id);
    while (p->slots[s].id)
        s = (s + 1) & (p->cap - 1);
    p->slots[s].id = id;
    p->slots[s].done = done;
    p->slots[s].item = item;
    p->slots[s].ud = ud;
    p->count++;
    return SR_OK;
}

static void remove_at(sr_pending *p, size_t s)
{
    size_t mask = p->cap - 1, j = s;
    p->slots[s].id = 0;
    p->count--;
    /* Backward shift: move later entries of the probe run into the hole. */
    for (;;) {
        size_t home;
        j = (j + 1) & mask;
        if (!p->slots[j].id) return;
        home = slot_of(p, p->slots[j].id);
        if (((j - home) & mask) >= ((j - s) & mask)) {
            p->slots[s] = p->slots[j];
            p->slots[j].id = 0;
            s = j;
        }
    }
}

sr_pending_entry *sr__pending_find(sr_pending *p, uint64_t id)
{
    size_t s;
    if (!p->count || !id) return NULL;
    s = slot_of(p, id);
    while (p->slots[s].id) {
        if (p->slots[s].id == id) return &p->slots[s];
        s = (s + 1) & (p->cap - 1);
    }
    return NULL;
}

int sr__pending_take(sr_pending *p, uint64_t id, sr_pending_entry *out)
{
    size_t s;
    if (!p->count || !id) return 0;
    s = slot_of(p, id);
    while (p->slots[s].id) {
        if (p->slots[s].id == id) {
            *out = p->slots[s];
            remove_at(p, s);
            return 1;
        }
        s = (s + 1) & (p->cap - 1);
    }
    return 0;
}

void sr__pending_free(sr_pending *p)
{
    free(p->slots);
    p->slots = NULL;
    p->cap = p->count = 0;
}
