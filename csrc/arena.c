/*
 * arena.c - the bump allocator of arena.h. The arena is its first block;
 * later blocks hang off it, the newest first, and allocation goes on in
 * the newest. A pooled arena is its first block, of a class's size; in a
 * pool, the blocks are linked through that same next.
 */
#include "arena.h"
#include "prefetch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Every block, the first (the arena itself) as the others. */
struct sr_arena {
    struct sr_arena *next; /* older blocks; in the first block: the newest */
    size_t used, cap;
    unsigned char data[]; /* at a multiple of 8: after a pointer and two size_t */
};
typedef struct sr_arena block;

/* What sr_value and its strings need: pointers, int64_t, double. */
#define ALIGN ((size_t)8)

static block *block_new(size_t cap)
{
    block *b;
    if (cap > SIZE_MAX - sizeof *b) return NULL;
    b = malloc(sizeof *b + cap);
    if (!b) return NULL;
    b->next = NULL;
    b->used = 0;
    b->cap = cap;
    return b;
}

sr_arena *sr__arena_new(size_t size)
{
    return block_new(size);
}

void *sr__arena_alloc(sr_arena *a, size_t n)
{
    block *cur;
    void *p;
    if (!a || n > SIZE_MAX - ALIGN) return NULL;
    n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    cur = a->next ? a->next : a;
    if (n > cur->cap - cur->used) {
        size_t cap = cur->cap > SIZE_MAX / 4 ? n : cur->cap * 2;
        block *b;
        if (cap < n) cap = n;
        if (!(b = block_new(cap))) return NULL;
        /* the newest goes first, behind the first block */
        b->next = a->next;
        a->next = b;
        cur = b;
    }
    p = cur->data + cur->used;
    cur->used += n;
    memset(p, 0, n);
    return p;
}

/* Free the blocks after the first. */
static void free_more(sr_arena *a)
{
    block *b = a->next;
    while (b) {
        block *next = b->next;
        free(b);
        b = next;
    }
    a->next = NULL;
}

void sr__arena_free(sr_arena *a)
{
    if (!a) return;
    free_more(a);
    free(a);
}

/* The class whose payload holds size bytes, or -1 past the largest. */
static int class_of(size_t size)
{
    size_t cap = SR_ARENA_CLASS_MIN;
    int c;
    for (c = 0; c < SR_ARENA_CLASSES; c++, cap *= 4)
        if (size <= cap) return c;
    return -1;
}

static size_t class_cap(int c)
{
    return (size_t)SR_ARENA_CLASS_MIN << (2 * c);
}

/* A pooled block's first bytes, asked for with the intent to write before
 * the parse fills them (prefetch.h): the block comes back after the host's
 * CPU read the message in it. */
#define PREFETCH_BYTES 512
static void prefetch_block(const block *b)
{
    const char *p = (const char *)b;
    size_t n = sizeof *b + (b->cap < PREFETCH_BYTES ? b->cap : PREFETCH_BYTES), i;
    for (i = 0; i < n; i += SR_CACHE_LINE)
        sr__prefetch_w(p + i);
}

sr_arena *sr__arena_get(sr_arena_pool *p, size_t size)
{
    int c = class_of(size);
    sr_arena *a;
    if (c < 0) return sr__arena_new(size);
    if (p && (a = p->free[c])) {
        prefetch_block(a);
        p->free[c] = a->next;
        p->n[c]--;
        p->bytes -= class_cap(c);
        a->next = NULL;
        a->used = 0;
        return a;
    }
    return sr__arena_new(class_cap(c));
}

void sr__arena_put(sr_arena_pool *p, sr_arena *a)
{
    int c;
    if (!a) return;
    c = class_of(a->cap);
    if (!p || c < 0 || a->cap != class_cap(c) || p->bytes + class_cap(c) > SR_ARENA_POOL_BYTES) {
        sr__arena_free(a);
        return;
    }
    free_more(a);
    a->next = p->free[c];
    p->free[c] = a;
    p->n[c]++;
    p->bytes += class_cap(c);
}

/* Keep the first keep blocks of class c, free the rest. */
static void trim(sr_arena_pool *p, int c, size_t keep)
{
    sr_arena **link = &p->free[c];
    size_t i;
    for (i = 0; i < keep && *link; i++)
        link = &(*link)->next;
    while (*link) {
        sr_arena *a = *link;
        *link = a->next;
        free(a);
        p->n[c]--;
        p->bytes -= class_cap(c);
    }
}

void sr__arena_pool_halve(sr_arena_pool *p)
{
    int c;
    for (c = 0; c < SR_ARENA_CLASSES; c++)
        trim(p, c, p->n[c] / 2);
}

void sr__arena_pool_clear(sr_arena_pool *p)
{
    int c;
    for (c = 0; c < SR_ARENA_CLASSES; c++)
        trim(p, c, 0);
}
