/*
 * json_fast.h - the fast way in for JSON records: simdjson parses, and its
 * document becomes an sr_value tree directly (json_fast.cpp).
 *
 * It is a fast path only. Whatever it cannot decide exactly as jansson
 * would (any error, an integer past int64, a NUL in a key, a repeated key,
 * a record past SR_JSON_FAST_MAX) it hands back undecided, and the caller
 * reads the record with jansson, which gives the value or the error text.
 * So both readers accept the same records with the same values, and every
 * error reads the same whichever reader met the record first.
 */
#ifndef SR_JSON_FAST_H
#define SR_JSON_FAST_H

#include "arena.h"
#include "signalr.h"
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Records up to this size take the fast path. simdjson's parser keeps
 * about 14 bytes per byte of its largest record, once per thread that
 * parses; past this, jansson's tree costs less memory than that does. */
#define SR_JSON_FAST_MAX (16u << 10)

/* The record was not decided: read it with jansson. */
#define SR_JSON_UNDECIDED 1

/* One JSON text (len bytes, no separator) into *out: SR_OK, SR_ENOMEM or
 * SR_JSON_UNDECIDED (then *out is NULL). */
int sr__json_fast_read(const char *text, size_t len, sr_value **out);

/* A field of a record's top-level object: the key borrowed, the value
 * built (owned by whoever holds the field, or by the arena it was built
 * in). */
typedef struct sr_json_field {
    const char *key;
    size_t keylen;
    sr_value *val;
} sr_json_field;

/* A record's top-level object into fields[0..*n): SR_OK, SR_ENOMEM or
 * SR_JSON_UNDECIDED (also when the record is not an object or has more
 * than max fields). The keys point into this thread's parser: they are
 * valid until its next read. Saves the map and key copies of a whole
 * tree for the envelope of each message. With an arena a, the values are
 * built in it (on the heap when NULL); after SR_JSON_UNDECIDED or
 * SR_ENOMEM it may hold some, for its owner to free. */
int sr__json_fast_read_fields(const char *text, size_t len, sr_json_field *fields, size_t max,
                              size_t *n, sr_arena *a);

/* Readers are kept per thread and freed by these, never by thread storage
 * destructors (json_fast.cpp says why): a thread of the core frees its own
 * as it ends; loops are counted, and when the last one is freed every
 * reader goes. */
void sr__json_fast_thread_done(void);
void sr__json_fast_loop_born(void);
void sr__json_fast_loop_gone(void);

#ifdef __cplusplus
}
#endif

#endif
