/*
 * prefetch.h - asking for cache lines that are about to be written
 * (sr__prefetch_w) or read (sr__prefetch_r).
 *
 * The reading thread reuses memory that comes back from the host: the
 * arena blocks of dispatched messages (arena.c). The host's CPU read them
 * last, so the first write to each line waited for the line to cross from
 * that CPU's cache (perf: a tenth of the reading thread's time in a
 * flood). Asked for with the intent to write before the parse, the lines
 * cross while simdjson works. x86's PREFETCHW only where CPUID reports it
 * (a plain prefetch, which fetches the line but not its ownership, did not
 * help); the compiler's write prefetch on other machines.
 */
#ifndef SR_PREFETCH_H
#define SR_PREFETCH_H

/* The line size the prefetches step by (x86-64's and most ARM cores'). */
#define SR_CACHE_LINE 64

/* Set by sr__prefetch_init: the CPU has PREFETCHW. */
extern int sr__have_prefetchw;
/* Looks the CPU up once; sr_loop_new calls it before any thread of ours
 * can parse. */
void sr__prefetch_init(void);

static inline void sr__prefetch_w(const void *p)
{
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    if (__atomic_load_n(&sr__have_prefetchw, __ATOMIC_RELAXED))
        __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#elif defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 1, 3);
#else
    (void)p;
#endif
}

/* A line about to be read: the host asks for the messages the reading
 * thread's CPU wrote, a few ahead of the one it dispatches. */
static inline void sr__prefetch_r(const void *p)
{
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 3);
#else
    (void)p;
#endif
}

#endif
