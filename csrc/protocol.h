/*
 * protocol.h - hub messages and the hub protocol interface.
 *
 * A protocol turns sr_msg into framed bytes and framed bytes back into
 * sr_msg. It does no I/O (feed bytes in, take messages out). The JSON
 * protocol lives in json_protocol.c, the MessagePack one in
 * msgpack_protocol.c; protocol.c holds what they share (lookup, clearing).
 */
#ifndef SR_PROTOCOL_H
#define SR_PROTOCOL_H

#include "arena.h"
#include "buf.h"
#include "error.h"
#include "signalr.h"
#include <stdint.h>

typedef enum sr_msg_type {
    SR_MSG_INVOCATION = 1,
    SR_MSG_STREAM_ITEM = 2,
    SR_MSG_COMPLETION = 3,
    SR_MSG_STREAM_INVOCATION = 4,
    SR_MSG_CANCEL_INVOCATION = 5,
    SR_MSG_PING = 6,
    SR_MSG_CLOSE = 7,
    SR_MSG_ACK = 8,
    SR_MSG_SEQUENCE = 9
} sr_msg_type;

/* One hub message. Every pointer is owned by the message (sr__msg_clear
 * frees them). Fields not used by a type stay NULL/0. A parsed message may
 * hold all its strings and values in its arena instead (then they are
 * freed with it): a parsed message may move whole, but no field may be
 * moved out of it alone. */
typedef struct sr_msg {
    sr_msg_type type;
    char *invocation_id;  /* NULL when absent (fire-and-forget) */
    char *target;         /* Invocation, StreamInvocation */
    sr_value *arguments;  /* SR_ARRAY; Invocation, StreamInvocation */
    sr_value *stream_ids; /* SR_ARRAY of strings, or NULL */
    sr_value *headers;    /* SR_MAP of strings, or NULL */
    sr_value *item;       /* StreamItem */
    int has_result;       /* Completion: 1 when "result" is present */
    sr_value *result;     /* Completion result (may be SR_NULL) */
    char *error;          /* Completion or Close error, or NULL */
    int allow_reconnect;  /* Close */
    int64_t sequence_id;  /* Ack, Sequence */
    sr_arena *arena;      /* when set: holds every string and value above */
} sr_msg;

void sr__msg_clear(sr_msg *m); /* frees the fields, zeroes the struct */
/* The same, but the message's arena goes back to pool (NULL: freed). Only
 * on the pool's reader side. */
void sr__msg_recycle(sr_msg *m, sr_arena_pool *pool);

/* Both codecs report faults with sr__error_set (error.h); this is its
 * out-of-memory case. */
int sr__proto_oom(sr_error *err); /* SR_ENOMEM, "out of memory" */
/* "Invocation", "StreamItem", ... for types 1..9; "unknown" otherwise. */
const char *sr__msg_type_name(int type);
int sr__proto_need(const sr_msg *m, const void *field, const char *name, sr_error *err);
int sr__proto_all_strings(const sr_value *v, int map);

/* Copy up to size bytes of the input into buf; 0 at its end. */
typedef size_t (*sr_read_fn)(void *ud, char *buf, size_t size);

typedef struct sr_protocol {
    const char *name; /* "json", "messagepack" */
    int version;      /* 1 */
    int binary;       /* 1: binary transfer format (WebSocket binary frames) */
    /* Append m, framed, to out. Borrowed fields are only read. */
    int (*write)(const sr_msg *m, sr_buf *out, sr_error *err);
    /* Parse one framed message from data[0..len).
     * Returns >0 = bytes consumed and *m filled (caller clears it),
     *          0 = incomplete, need more bytes (m untouched),
     *         <0 = SR_EPROTOCOL with err->message set (the data is bad;
     *              the connection must close). A message longer than
     *              max_size is an error too (SR_EPROTOCOL, "message too large"). */
    int (*parse)(const char *data, size_t len, size_t max_size, sr_msg *m, sr_error *err);
    /* Text protocols, optional: parse one record (its bytes without the
     * separator) pulled in pieces through read, so a large record need not
     * sit whole in memory beside its parse. SR_OK with *m filled, or <0
     * with err set, as parse. */
    int (*parse_stream)(sr_read_fn read, void *ud, sr_msg *m, sr_error *err);
    /* Optional: parse, taking the arena a message is built in from pool
     * (one reader's; sr__msg_recycle gives it back). */
    int (*parse_pooled)(const char *data, size_t len, size_t max_size, sr_msg *m,
                        sr_arena_pool *pool, sr_error *err);
} sr_protocol;

extern const sr_protocol sr__json_protocol;
extern const sr_protocol sr__msgpack_protocol;
const sr_protocol *sr__protocol_find(const char *name); /* NULL if unknown */

/* A single JSON value to text and back (no framing); used by the protocol
 * and by the value round-trip tests. Integers stay integers (int64), floats
 * are written with full precision (the shortest text, at most 17 significant
 * digits, that reads back to the same bits; always with a '.' or exponent so
 * they read back as floats), SR_BINARY is written as base64. */
int sr__json_encode_value(const sr_value *v, sr_buf *out, sr_error *err);
int sr__json_decode_value(const char *text, size_t len, sr_value **out, sr_error *err);
/* The same with jansson alone, never the fast path: what decides the
 * records the fast path leaves undecided, and what the tests compare the
 * fast path with. what names the text in errors ("value", "message"). */
int sr__json_read_jansson(const char *text, size_t len, const char *what, sr_value **out,
                          sr_error *err);

/* A single MessagePack value to bytes and back (no framing), as the
 * MessagePack protocol maps them: decoding takes exactly one complete value
 * filling data[0..len); see msgpack_protocol.c for the mapping. */
int sr__msgpack_encode_value(const sr_value *v, sr_buf *out, sr_error *err);
int sr__msgpack_decode_value(const char *data, size_t len, sr_value **out, sr_error *err);

/* ------------------------------------------------------------ handshake */
/* The handshake is always JSON text ending with the record separator. */
int sr__handshake_write(const char *protocol, int version, sr_buf *out);
/* Parse the server's handshake response from data[0..len).
 * Returns >0 = bytes consumed (success: "{}" possibly with extra unknown fields),
 *          0 = incomplete,
 *         <0 = SR_EHANDSHAKE (server sent {"error":...}: err->message is that
 *              text) or SR_EPROTOCOL (not JSON / not an object). */
int sr__handshake_parse(const char *data, size_t len, sr_error *err);

#endif
