/*
 * buf.h - growable byte buffer (sr_buf). Owns its bytes. Used for framing,
 * encoding and transport queues. Never shared between threads without the
 * owner's lock.
 */
#ifndef SR_BUF_H
#define SR_BUF_H

#include <stddef.h>

typedef struct sr_buf {
    char *data; /* NULL until first growth */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
} sr_buf;

#define SR_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* All return 0, or -1 when out of memory (the buffer is left unchanged). */
int sr__buf_reserve(sr_buf *b, size_t extra);
int sr__buf_append(sr_buf *b, const void *p, size_t n);
int sr__buf_append_str(sr_buf *b, const char *s);
int sr__buf_append_byte(sr_buf *b, char c);
/* Drop the first n bytes (memmove). */
void sr__buf_consume(sr_buf *b, size_t n);
void sr__buf_reset(sr_buf *b); /* len = 0, keeps memory */
void sr__buf_free(sr_buf *b);  /* frees memory, back to SR_BUF_INIT */

#endif
