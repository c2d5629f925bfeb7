/*
 * stream.c - the held-message FIFO of a paused connection and the parsing
 * of our invocation ids (see stream.h).
 */
#include "stream.h"
#include <stdlib.h>
#include <string.h>

int sr__held_push(sr_held *h, sr_rx_msg *m)
{
    if (h->n == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : 64, i;
        sr_rx_msg *nv = malloc(ncap * sizeof *nv);
        if (!nv) return SR_ENOMEM;
        /* Unroll the ring so the oldest message sits at 0. */
        for (i = 0; i < h->n; i++)
            nv[i] = h->v[(h->head + i) % h->cap];
        free(h->v);
        h->v = nv;
        h->cap = ncap;
        h->head = 0;
    }
    h->v[(h->head + h->n) % h->cap] = *m;
    h->n++;
    h->bytes += m->bytes;
    memset(m, 0, sizeof *m);
    return SR_OK;
}

int sr__held_pop(sr_held *h, sr_rx_msg *out)
{
    if (!h->n) return 0;
    *out = h->v[h->head];
    h->head = (h->head + 1) % h->cap;
    h->n--;
    h->bytes -= out->bytes;
    return 1;
}

void sr__held_clear(sr_held *h)
{
    sr_rx_msg m;
    while (sr__held_pop(h, &m))
        sr__msg_clear(&m.m);
    free(h->v);
    memset(h, 0, sizeof *h);
}

int sr__id_parse(const char *s, uint64_t *id)
{
    uint64_t v = 0;
    /* Ids are ours: plain decimals from 1, no sign, space or leading 0. */
    if (!s || *s < '1' || *s > '9') return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10) return 0;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *id = v;
    return 1;
}
