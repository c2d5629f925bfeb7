/*
 * framing.h - message framing on byte buffers, no I/O.
 * Text protocols end each record with 0x1E; binary protocols prefix each
 * message with a VarInt length (7 bits per byte, low group first, <= 5 bytes).
 */
#ifndef SR_FRAMING_H
#define SR_FRAMING_H

#include "buf.h"
#include <stddef.h>
#include <stdint.h>

#define SR_RECORD_SEPARATOR '\x1e'

/* Length of the first record (without the separator), or -1 when no
 * separator is in data[0..len) yet. */
long sr__rs_find(const char *data, size_t len);

/* Append a VarInt for n. */
int sr__varint_write(sr_buf *out, uint32_t n);
/* Read a VarInt: returns bytes used (>0), 0 when incomplete, -1 when
 * malformed (more than 5 bytes or value over 2^31-1). */
int sr__varint_read(const char *data, size_t len, uint32_t *n);

#endif
