/*
 * value.h - internal helpers for decoders that build sr_value trees.
 * The value model itself is public (signalr.h); these skip checks that a
 * decoder has already made, so large inputs stay linear.
 */
#ifndef SR_VALUE_H
#define SR_VALUE_H

#include "arena.h"
#include "signalr.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Like sr_value_map_set, but never looks for an existing key: only for a
 * source whose keys are already unique (a parsed JSON object). */
int sr__value_map_append(sr_value *map, const char *key, size_t keylen, sr_value *item);
/* Make room for n more items/entries in an array or map. */
int sr__value_reserve(sr_value *arr_or_map, size_t n);

/* The same in an arena (arena.h), or on the heap when a is NULL. A node
 * made in an arena is freed with it (sr_value_free leaves it alone), and
 * its containers get their room once, exactly: sr__value_reserve_in on the
 * empty container, then sr_value_array_push or sr__value_map_append_in. */
sr_value *sr__value_new(sr_arena *a, sr_type t); /* a scalar (zero) or an empty container */
sr_value *sr__value_bool_in(sr_arena *a, int b);
sr_value *sr__value_int_in(sr_arena *a, int64_t i);
sr_value *sr__value_float_in(sr_arena *a, double d);
sr_value *sr__value_bytes(sr_arena *a, sr_type t, const void *p, size_t len); /* string, binary */
int sr__value_reserve_in(sr_arena *a, sr_value *arr_or_map, size_t n);
int sr__value_map_append_in(sr_arena *a, sr_value *map, const char *key, size_t keylen,
                            sr_value *item);
/* Deepest nesting the codecs write or read (jansson's parser limit). */
#define SR_VALUE_MAX_DEPTH 2048

#ifdef __cplusplus
}
#endif

#endif
