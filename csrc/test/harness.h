/* harness.h - a tiny test harness in the manner of hiredis' test.c. */
#ifndef SR_TEST_HARNESS_H
#define SR_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Heavy loops shrink when SR_TEST_QUICK is set (the valgrind run, which is
 * some 50 times slower); the native run keeps the full sizes. */
static inline long t_scale(long full, long quick)
{
    const char *q = getenv("SR_TEST_QUICK");
    return q && *q && *q != '0' ? quick : full;
}

static int t_passed, t_failed;
static const char *t_current = "";

#define TEST(name) static void name(void)
#define RUN(name)                                                                                  \
    do {                                                                                           \
        int before = t_failed;                                                                     \
        struct timespec t_a, t_b;                                                                  \
        clock_gettime(CLOCK_MONOTONIC, &t_a);                                                      \
        t_current = #name;                                                                         \
        name();                                                                                    \
        clock_gettime(CLOCK_MONOTONIC, &t_b);                                                      \
        if (t_failed == before) {                                                                  \
            t_passed++;                                                                            \
            printf("ok   %s (%.0f ms)\n", #name,                                                   \
                   (t_b.tv_sec - t_a.tv_sec) * 1e3 + (t_b.tv_nsec - t_a.tv_nsec) / 1e6);           \
        }                                                                                          \
    } while (0)
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            t_failed++;                                                                            \
            printf("FAIL %s: %s:%d: %s\n", t_current, __FILE__, __LINE__, #cond);                  \
            return;                                                                                \
        }                                                                                          \
    } while (0)
#define CHECK_STR(a, b) CHECK(strcmp((a), (b)) == 0)
#define DONE()                                                                                     \
    do {                                                                                           \
        printf("%d passed, %d failed\n", t_passed, t_failed);                                      \
        return t_failed ? 1 : 0;                                                                   \
    } while (0)

#endif
