/*
 * buf.c - sr_buf, the growable byte buffer.
 *
 * Invariant: len <= cap, and data is NULL exactly when cap is 0. A failed
 * growth leaves the buffer as it was, so callers can roll back by restoring
 * len.
 */
#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int sr__buf_reserve(sr_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (extra <= b->cap - b->len) return 0;
    if (extra > SIZE_MAX - b->len) return -1;
    need = b->len + extra;
    /* Doubling keeps appends amortised O(1); 64 avoids a string of tiny
     * reallocs for the small messages that dominate. */
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int sr__buf_append(sr_buf *b, const void *p, size_t n)
{
    if (n == 0) return 0;
    if (sr__buf_reserve(b, n) != 0) return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int sr__buf_append_str(sr_buf *b, const char *s)
{
    return sr__buf_append(b, s, strlen(s));
}

int sr__buf_append_byte(sr_buf *b, char c)
{
    if (b->len == b->cap && sr__buf_reserve(b, 1) != 0) return -1;
    b->data[b->len++] = c;
    return 0;
}

void sr__buf_consume(sr_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void sr__buf_reset(sr_buf *b)
{
    b->len = 0;
}

void sr__buf_free(sr_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}
