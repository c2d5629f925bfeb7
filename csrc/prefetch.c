/*
 * prefetch.c - whether the CPU has x86's PREFETCHW (prefetch.h).
 */
#include "prefetch.h"

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#endif

int sr__have_prefetchw;

void sr__prefetch_init(void)
{
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    unsigned a, b, c, d;
    /* CPUID 0x80000001: ECX bit 8, PRFCHW (3DNowPrefetch) */
    int have = __get_cpuid(0x80000001u, &a, &b, &c, &d) && (c & (1u << 8));
    __atomic_store_n(&sr__have_prefetchw, have, __ATOMIC_RELAXED);
#endif
}
