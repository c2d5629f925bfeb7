/* harness.h - a tiny test harness in the manner of hiredis' test.c. */
#ifndef SR_TEST_HARNESS_H
#define SR_TEST_HARNESS_H

#include <stdio.h>
#include <string.h>

static int t_passed, t_failed;
static const char *t_current = "";

#define TEST(name) static void name(void)
#define RUN(name)                                                                                  \
    do {                                                                                           \
        int before = t_failed;                                                                     \
        t_current = #name;                                                                         \
        name();                                                                                    \
        if (t_failed == before) {                                                                  \
            t_passed++;                                                                            \
            printf("ok   %s\n", #name);                                                            \
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
