/*
 * value.h - internal helpers for decoders that build sr_value trees.
 * The value model itself is public (signalr.h); these skip checks that a
 * decoder has already made, so large inputs stay linear.
 */
#ifndef SR_VALUE_H
#define SR_VALUE_H

#include "signalr.h"
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Like sr_value_map_set, but never looks for an existing key: only for a
 * source whose keys are already unique (a parsed JSON object). */
int sr__value_map_append(sr_value *map, const char *key, size_t keylen, sr_value *item);
/* Make room for n more items/entries in an array or map. */
int sr__value_reserve(sr_value *arr_or_map, size_t n);

/* Deepest nesting the codecs write or read (jansson's parser limit). */
#define SR_VALUE_MAX_DEPTH 2048

#ifdef __cplusplus
}
#endif

#endif
