/*
 * framing.c - record separator search (text protocols) and VarInt length
 * prefixes (binary protocols). Pure functions over byte ranges.
 */
#include "framing.h"

#include <limits.h>
#include <string.h>

long sr__rs_find(const char *data, size_t len)
{
    const char *p;

    if (!data || len == 0) return -1;
    p = memchr(data, SR_RECORD_SEPARATOR, len);
    if (!p || p - data > LONG_MAX) return -1;
    return (long)(p - data);
}

int sr__varint_write(sr_buf *out, uint32_t n)
{
    char tmp[5];
    int i = 0;

    do {
        unsigned char b = n & 0x7f;
        n >>= 7;
        if (n) b |= 0x80;
        tmp[i++] = (char)b;
    } while (n);
    return sr__buf_append(out, tmp, (size_t)i);
}

int sr__varint_read(const char *data, size_t len, uint32_t *n)
{
    uint32_t v = 0;
    size_t i;

    for (i = 0; i < 5; i++) {
        unsigned char b;
        if (i >= len) return 0;
        b = (unsigned char)data[i];
        /* The fifth byte holds bits 28..34; anything above bit 30 would
         * exceed 2^31-1, and a continuation bit there means a sixth byte. */
        if (i == 4 && b > 0x07) return -1;
        v |= (uint32_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *n = v;
            return (int)i + 1;
        }
    }
    return -1; /* not reached: the fifth byte either ends or fails above */
}
