/*
 * arena.h - bump allocation for the values of one received message: one
 * block (a chain of them only for a large message), freed all at once with
 * the message.
 *
 * The reading thread parses every message into a handful of small
 * allocations and frees them again once the host has dispatched them; in a
 * receive flood malloc and free were about 40% of that thread's time. With
 * an arena it is one malloc and one free per message.
 */
#ifndef SR_ARENA_H
#define SR_ARENA_H
#include <stddef.h>

typedef struct sr_arena sr_arena;

/* An arena whose first block holds about size bytes; NULL when out of
 * memory. */
sr_arena *sr__arena_new(size_t size);
/* n bytes aligned for pointers, int64_t and double, zeroed; NULL when out of memory (what was
 * allocated stays valid). Further blocks double, so a large message costs
 * a few mallocs, never one per value. */
void *sr__arena_alloc(sr_arena *a, size_t n);
/* Frees every block (a NULL arena is a no-op). */
void sr__arena_free(sr_arena *a);

/* Blocks kept for reuse by one reader (a transport's receiving side, which
 * parses on one thread at a time): a message's arena comes back once the
 * host has dispatched the message, and a later message reuses it. Freeing
 * them instead made glibc coalesce the runs of freed blocks into the top
 * of its heap, give it back to the kernel and fault it in again. Blocks
 * come in a few sizes, so a small message holds a small one. */
#define SR_ARENA_CLASSES 3
#define SR_ARENA_CLASS_MIN 256u /* payload of the smallest class; each next is 4x */
/* Most bytes of blocks a pool keeps. */
#define SR_ARENA_POOL_BYTES (1u << 20)
typedef struct sr_arena_pool {
    sr_arena *free[SR_ARENA_CLASSES]; /* per class, linked */
    size_t n[SR_ARENA_CLASSES];
    size_t bytes; /* in all classes */
} sr_arena_pool;

/* An arena for about size bytes: a pooled block of the smallest class that
 * holds size (taken from p, or a new one that may go back to p), an arena
 * of its own past the largest. p may be NULL. */
sr_arena *sr__arena_get(sr_arena_pool *p, size_t size);
/* Give a back: its first block to p when it is of a class and p has room,
 * the rest freed. p may be NULL (then like sr__arena_free). */
void sr__arena_put(sr_arena_pool *p, sr_arena *a);
/* Keep at most half of each class's blocks (what a reader does when its
 * connection has gone quiet), or none. */
void sr__arena_pool_halve(sr_arena_pool *p);
void sr__arena_pool_clear(sr_arena_pool *p);

#endif
