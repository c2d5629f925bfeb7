/*
 * msgpack_protocol.c - the MessagePack hub protocol (HubProtocol.md,
 * "MessagePack (MsgPack) encoding") and single MessagePack values <->
 * sr_value.
 *
 * Each message is a VarInt length prefix (framing.c) and one MessagePack
 * array. msgpack-c parses a frame's body into a msgpack_object tree (in a
 * zone freed at once); this file only checks the shape and maps it. Writing
 * uses msgpack-c's packer with our sr_buf as its sink.
 *
 * Value mapping, reading:
 * - every integer width, signed or unsigned, becomes SR_INT; an unsigned
 *   integer above 2^63-1 has no int64 (nor Lua integer) and is refused, as
 *   the JSON reader refuses integers past int64: no silent rounding;
 * - float32 and float64 become SR_FLOAT (float32 widens exactly);
 * - str becomes SR_STRING (bytes as they are), bin SR_BINARY;
 * - map keys that are not strings become the text of the key: integers in
 *   decimal, floats as the shortest text that reads back (an integral one
 *   without ".0", as .NET writes such a JSON key), true/false, bin as its
 *   bytes, a timestamp as below; nil, array and map keys are refused;
 *   repeated keys keep the first position and the last value, as the JSON
 *   reader does;
 * - the timestamp extension (-1) becomes the ISO 8601 UTC text .NET's JSON
 *   gives a DateTime, "2024-01-02T03:04:05.1234567Z" (fraction digits as
 *   needed, up to 9), years 0001..9999; other extensions are refused.
 * Writing: SR_INT as the smallest integer form, SR_FLOAT always as float64
 * (exact), SR_STRING as str, SR_BINARY as bin, map keys as str.
 *
 * Depth: msgpack-c's C parser holds at most 32 open arrays/maps per object
 * (MSGPACK_EMBED_STACK_SIZE, fixed in the library) and reports deeper data
 * as out of memory; the protocol says so as a protocol error. Its header
 * reader also reserves memory for a container's announced size before the
 * items arrive, so an absurd count fails the allocation the same way.
 */
#include <limits.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framing.h"
#include "protocol.h"
#include "value.h"

/* Containers msgpack-c's parser can hold open at once (see above). */
#define MP_MAX_OPEN 32

static const char *kind_name(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "a boolean";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "an integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return "a float";
    case MSGPACK_OBJECT_STR:
        return "a string";
    case MSGPACK_OBJECT_BIN:
        return "a binary";
    case MSGPACK_OBJECT_ARRAY:
        return "an array";
    case MSGPACK_OBJECT_MAP:
        return "a map";
    default:
        return "an extension";
    }
}

/* ============================================================ timestamps */

/* Gregorian date of a day count from 1970-01-01 (proleptic, any sign):
 * shift to eras of 400 years starting on March 1st, where the leap day is
 * the last day of a year and month lengths repeat every five months. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468; /* days from 0000-03-01 to 1970-01-01 */
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;                                      /* 0..146096 */
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* 0..399 */
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* 0..365, from March 1st */
    mp = (5 * doy + 2) / 153;                                    /* 0 = March .. 11 = February */
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* .NET's DateTime range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z. */
#define TS_MIN_SEC (-62135596800LL)
#define TS_MAX_SEC 253402300799LL

/* The timestamp extension as ISO 8601 UTC text; returns its length, or
 * SR_EPROTOCOL. out holds at least 40 bytes. */
static int timestamp_text(const msgpack_object *o, char *out, sr_error *err)
{
    msgpack_timestamp ts;
    int64_t days, secs, y;
    unsigned mo, d, frac, i;
    int n;

    if (!msgpack_object_to_timestamp(o, &ts))
        return sr__error_set(err, SR_EPROTOCOL,
                             "invalid MessagePack timestamp (%u bytes; expected 4, 8 or 12)",
                             (unsigned)o->via.ext.size);
    if (ts.tv_nsec > 999999999u)
        return sr__error_set(err, SR_EPROTOCOL, "invalid MessagePack timestamp (%u nanoseconds)",
                             (unsigned)ts.tv_nsec);
    if (ts.tv_sec < TS_MIN_SEC || ts.tv_sec > TS_MAX_SEC)
        return sr__error_set(err, SR_EPROTOCOL,
                             "MessagePack timestamp %lld s from 1970 is outside years 0001..9999",
                             (long long)ts.tv_sec);
    /* floor division: times before 1970 belong to the day before */
    days = ts.tv_sec >= 0 ? ts.tv_sec / 86400 : -((-ts.tv_sec + 86399) / 86400);
    secs = ts.tv_sec - days * 86400;
    civil_from_days(days, &y, &mo, &d);
    n = sprintf(out, "%04d-%02u-%02uT%02u:%02u:%02u", (int)y, mo, d, (unsigned)(secs / 3600),
                (unsigned)(secs / 60 % 60), (unsigned)(secs % 60));
    if (ts.tv_nsec) {
        char digits[10];
        frac = ts.tv_nsec;
        for (i = 9; i-- > 0; frac /= 10)
            digits[i] = (char)('0' + frac % 10);
        for (i = 9; digits[i - 1] == '0'; i--)
            ;
        out[n++] = '.';
        memcpy(out + n, digits, i);
        n += (int)i;
    }
    out[n++] = 'Z';
    out[n] = '\0';
    return n;
}

/* ================================================================ reading */

static int to_value(sr_arena *a, const msgpack_object *o, int depth, sr_value **out, sr_error *err);

static int int_value(const msgpack_object *o, int64_t *v, sr_error *err)
{
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return SR_OK;
    }
    if (o->via.u64 > (uint64_t)INT64_MAX)
        return sr__error_set(
            err, SR_EPROTOCOL,
            "an unsigned integer above 2^63-1 (%llu) has no 64-bit signed (Lua) integer",
            (unsigned long long)o->via.u64);
    *v = (int64_t)o->via.u64;
    return SR_OK;
}

static int is_int(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
}

/* A float key: shortest text that reads back (float32 keys as a float32),
 * without a trailing ".0". */
static int float_key(const msgpack_object *o, sr_buf *b, sr_error *err)
{
    double d = o->via.f64;
    sr_value *tmp;
    size_t start = b->len;
    int rc, p;

    if (isnan(d)) return sr__buf_append_str(b, "NaN") ? sr__proto_oom(err) : SR_OK;
    if (isinf(d))
        return sr__buf_append_str(b, d > 0 ? "Infinity" : "-Infinity") ? sr__proto_oom(err) : SR_OK;
    if (o->type == MSGPACK_OBJECT_FLOAT32) {
        /* The fewest digits that read back as this float32; that decimal
         * as a double is what the double formatter then shortens. */
        float f = (float)d;
        char t[32];
        for (p = 0; p < 9; p++) {
            snprintf(t, sizeof t, "%.*e", p, d);
            if (strtof(t, NULL) == f) {
                double dd = strtod(t, NULL);
                if ((float)dd == f) d = dd;
                break;
            }
        }
    }
    tmp = sr_value_float(d);
    if (!tmp) return sr__proto_oom(err);
    rc = sr__json_encode_value(tmp, b, err);
    sr_value_free(tmp);
    if (rc != SR_OK) return rc;
    if (b->len - start >= 2 && memcmp(b->data + b->len - 2, ".0", 2) == 0) b->len -= 2;
    return SR_OK;
}

/* Append the text of map key k to b. */
static int key_text(const msgpack_object *k, sr_buf *b, sr_error *err)
{
    char t[48];
    int n;

    switch (k->type) {
    case MSGPACK_OBJECT_STR:
        return sr__buf_append(b, k->via.str.ptr, k->via.str.size) ? sr__proto_oom(err) : SR_OK;
    case MSGPACK_OBJECT_BIN:
        return sr__buf_append(b, k->via.bin.ptr, k->via.bin.size) ? sr__proto_oom(err) : SR_OK;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        n = snprintf(t, sizeof t, "%llu", (unsigned long long)k->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        n = snprintf(t, sizeof t, "%lld", (long long)k->via.i64);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        n = snprintf(t, sizeof t, "%s", k->via.boolean ? "true" : "false");
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return float_key(k, b, err);
    case MSGPACK_OBJECT_EXT:
        if (k->via.ext.type != -1)
            return sr__error_set(err, SR_EPROTOCOL, "unsupported MessagePack extension type %d",
                                 (int)k->via.ext.type);
        n = timestamp_text(k, t, err);
        if (n < 0) return n;
        break;
    default:
        return sr__error_set(err, SR_EPROTOCOL, "MessagePack map has %s as a key", kind_name(k));
    }
    return sr__buf_append(b, t, (size_t)n) ? sr__proto_oom(err) : SR_OK;
}

typedef struct key_ref {
    const char *p;
    size_t len;
    uint32_t idx;
} key_ref;

static int key_cmp(const void *a, const void *b)
{
    const key_ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->p, y->p, n) : 0;

    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* A map: keys to text, then repeated keys resolved (first position, last
 * value) by sorting, so a large hostile map stays O(n log n). */
static int map_value(sr_arena *a, const msgpack_object *o, int depth, sr_value **out, sr_error *err)
{
    uint32_t n = o->via.map.size, i, j;
    size_t *off = NULL;
    key_ref *keys = NULL;
    uint32_t *take = NULL; /* per position: the entry whose value it gets, or n to skip */
    sr_value **vals = NULL, *map = sr__value_new(a, SR_MAP);
    sr_buf arena = SR_BUF_INIT;
    const char *base;
    int rc = SR_OK;

    if (!map) return sr__proto_oom(err);
    if (n == 0) goto done;
    off = malloc(((size_t)n + 1) * sizeof *off);
    keys = malloc((size_t)n * sizeof *keys);
    take = malloc((size_t)n * sizeof *take);
    vals = calloc(n, sizeof *vals);
    if (!off || !keys || !take || !vals || sr__value_reserve_in(a, map, n) != SR_OK) {
        rc = sr__proto_oom(err);
        goto done;
    }
    for (i = 0; i < n; i++) {
        off[i] = arena.len;
        if ((rc = key_text(&o->via.map.ptr[i].key, &arena, err)) != SR_OK) goto done;
        /* Values of repeated keys are converted too: bad data is bad
         * wherever it sits. */
        if ((rc = to_value(a, &o->via.map.ptr[i].val, depth + 1, &vals[i], err)) != SR_OK)
            goto done;
    }
    off[n] = arena.len;
    base = arena.data ? arena.data : "";
    for (i = 0; i < n; i++) {
        keys[i].p = base + off[i];
        keys[i].len = off[i + 1] - off[i];
        keys[i].idx = i;
        take[i] = i;
    }
    if (n > 1) {
        qsort(keys, n, sizeof *keys, key_cmp);
        for (i = 0; i < n; i = j) {
            for (j = i + 1; j < n && keys[j].len == keys[i].len &&
                            memcmp(keys[j].p, keys[i].p, keys[i].len) == 0;
                 j++)
                take[keys[j].idx] = n;
            take[keys[i].idx] = keys[j - 1].idx;
        }
    }
    for (i = 0; i < n; i++) {
        if (take[i] == n) continue;
        rc = sr__value_map_append_in(a, map, base + off[i], off[i + 1] - off[i], vals[take[i]]);
        vals[take[i]] = NULL;
        if (rc != SR_OK) {
            rc = sr__proto_oom(err);
            goto done;
        }
    }
done:
    for (i = 0; vals && i < n; i++)
        sr_value_free(vals[i]);
    free(vals);
    free(off);
    free(keys);
    free(take);
    sr__buf_free(&arena);
    if (rc != SR_OK) {
        sr_value_free(map);
        map = NULL;
    }
    *out = map;
    return rc;
}

/* In the arena a (on the heap when NULL); in an arena, what a fault leaves
 * half built stays there until the arena goes. */
static int to_value(sr_arena *a, const msgpack_object *o, int depth, sr_value **out, sr_error *err)
{
    sr_value *v = NULL, *item;
    int64_t i64 = 0;
    uint32_t i;
    int rc;

    *out = NULL;
    if (depth > SR_VALUE_MAX_DEPTH)
        return sr__error_set(err, SR_EPROTOCOL, "value nested too deeply (more than %d levels)",
                             SR_VALUE_MAX_DEPTH);
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        v = sr__value_new(a, SR_NULL);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        v = sr__value_bool_in(a, o->via.boolean);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        if ((rc = int_value(o, &i64, err)) != SR_OK) return rc;
        v = sr__value_int_in(a, i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        v = sr__value_float_in(a, o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        v = sr__value_bytes(a, SR_STRING, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        v = sr__value_bytes(a, SR_BINARY, o->via.bin.ptr, o->via.bin.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        v = sr__value_new(a, SR_ARRAY);
        if (!v || sr__value_reserve_in(a, v, o->via.array.size) != SR_OK) {
            sr_value_free(v);
            return sr__proto_oom(err);
        }
        for (i = 0; i < o->via.array.size; i++) {
            if ((rc = to_value(a, &o->via.array.ptr[i], depth + 1, &item, err)) != SR_OK) {
                sr_value_free(v);
                return rc;
            }
            if (sr_value_array_push(v, item) != SR_OK) {
                sr_value_free(v);
                return sr__proto_oom(err);
            }
        }
        *out = v;
        return SR_OK;
    case MSGPACK_OBJECT_MAP:
        return map_value(a, o, depth, out, err);
    case MSGPACK_OBJECT_EXT: {
        char t[48];
        int n;
        if (o->via.ext.type != -1)
            return sr__error_set(err, SR_EPROTOCOL, "unsupported MessagePack extension type %d",
                                 (int)o->via.ext.type);
        if ((n = timestamp_text(o, t, err)) < 0) return n;
        v = sr__value_bytes(a, SR_STRING, t, (size_t)n);
        break;
    }
    default:
        return sr__error_set(err, SR_EPROTOCOL, "unknown MessagePack type %d", (int)o->type);
    }
    if (!v) return sr__proto_oom(err);
    *out = v;
    return SR_OK;
}

/* Parse data[0..len) as exactly one MessagePack object into u. */
static int unpack(const char *data, size_t len, const char *what, msgpack_unpacked *u,
                  sr_error *err)
{
    size_t off = 0;

    if (len == 0) return sr__error_set(err, SR_EPROTOCOL, "empty %s", what);
    switch (msgpack_unpack_next(u, data, len, &off)) {
    case MSGPACK_UNPACK_SUCCESS:
    case MSGPACK_UNPACK_EXTRA_BYTES:
        if (off != len)
            return sr__error_set(err, SR_EPROTOCOL, "%s has %zu bytes after its MessagePack value",
                                 what, len - off);
        return SR_OK;
    case MSGPACK_UNPACK_CONTINUE:
        return sr__error_set(err, SR_EPROTOCOL, "%s ends inside a MessagePack value (%zu bytes)",
                             what, len);
    case MSGPACK_UNPACK_NOMEM_ERROR:
        return sr__error_set(
            err, SR_EPROTOCOL,
            "%s nests more than %d MessagePack arrays/maps or announces more items than "
            "memory holds",
            what, MP_MAX_OPEN);
    default:
        return sr__error_set(err, SR_EPROTOCOL, "invalid MessagePack data in %s", what);
    }
}

int sr__msgpack_decode_value(const char *data, size_t len, sr_value **out, sr_error *err)
{
    msgpack_unpacked u;
    int rc;

    *out = NULL;
    msgpack_unpacked_init(&u);
    rc = unpack(data, len, "value", &u, err);
    if (rc == SR_OK) rc = to_value(NULL, &u.data, 1, out, err);
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* A field that becomes a C string: nil is absent (an error when required). */
static int get_str(const msgpack_object *f, const char *name, int required, const sr_msg *m,
                   char **out, sr_error *err)
{
    if (f->type == MSGPACK_OBJECT_NIL) {
        if (!required) return SR_OK;
        return sr__error_set(err, SR_EPROTOCOL, "%s message has a null '%s'",
                             sr__msg_type_name(m->type), name);
    }
    if (f->type != MSGPACK_OBJECT_STR)
        return sr__error_set(err, SR_EPROTOCOL, "%s message has a non-string '%s' (%s)",
                             sr__msg_type_name(m->type), name, kind_name(f));
    /* A NUL would silently cut an id or target. */
    if (f->via.str.size && memchr(f->via.str.ptr, '\0', f->via.str.size))
        return sr__error_set(err, SR_EPROTOCOL, "%s message has a NUL byte in '%s'",
                             sr__msg_type_name(m->type), name);
    /* in the message's arena when it has one */
    *out = m->arena ? sr__arena_alloc(m->arena, (size_t)f->via.str.size + 1)
                    : malloc((size_t)f->via.str.size + 1);
    if (!*out) return sr__proto_oom(err);
    if (f->via.str.size) memcpy(*out, f->via.str.ptr, f->via.str.size);
    (*out)[f->via.str.size] = '\0';
    return SR_OK;
}

static int get_value(const msgpack_object *f, const sr_msg *m, sr_value **out, sr_error *err)
{
    return to_value(m->arena, f, 1, out, err);
}

/* Headers (a map) or streamIds (an array): strings only; nil or empty is
 * absent, as the JSON reader gives for a message without them. */
static int get_strings(const msgpack_object *f, const char *name, int map, const sr_msg *m,
                       sr_value **out, sr_error *err)
{
    uint32_t i;

    if (f->type == MSGPACK_OBJECT_NIL) return SR_OK;
    if (f->type != (map ? MSGPACK_OBJECT_MAP : MSGPACK_OBJECT_ARRAY)) goto bad;
    if (map) {
        for (i = 0; i < f->via.map.size; i++)
            if (f->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR ||
                f->via.map.ptr[i].val.type != MSGPACK_OBJECT_STR)
                goto bad;
        if (f->via.map.size == 0) return SR_OK;
    } else {
        for (i = 0; i < f->via.array.size; i++)
            if (f->via.array.ptr[i].type != MSGPACK_OBJECT_STR) goto bad;
        if (f->via.array.size == 0) return SR_OK;
    }
    return get_value(f, m, out, err);
bad:
    return sr__error_set(err, SR_EPROTOCOL,
                         "%s message has an invalid '%s' (expected %s of strings)",
                         sr__msg_type_name(m->type), name, map ? "a map" : "an array");
}

static int get_int(const msgpack_object *f, const char *name, const sr_msg *m, int64_t *v,
                   sr_error *err)
{
    if (!is_int(f))
        return sr__error_set(err, SR_EPROTOCOL, "%s message has a non-integer '%s' (%s)",
                             sr__msg_type_name(m->type), name, kind_name(f));
    return int_value(f, v, err);
}

/* Items per message type: at least, at most. */
static const unsigned char arity[10][2] = {{0, 0}, {5, 6}, {4, 4}, {4, 5}, {5, 6},
                                           {3, 3}, {1, 1}, {2, 3}, {2, 2}, {2, 2}};

static int read_body(const msgpack_object *it, uint32_t n, sr_msg *m, sr_error *err)
{
    int64_t kind;
    int rc;

    switch (m->type) {
    case SR_MSG_INVOCATION:
    case SR_MSG_STREAM_INVOCATION:
        if ((rc = get_str(&it[2], "invocationId", m->type != SR_MSG_INVOCATION, m,
                          &m->invocation_id, err)) ||
            (rc = get_str(&it[3], "target", 1, m, &m->target, err)))
            return rc;
        if (it[4].type != MSGPACK_OBJECT_ARRAY)
            return sr__error_set(err, SR_EPROTOCOL, "%s message has a non-array 'arguments' (%s)",
                                 sr__msg_type_name(m->type), kind_name(&it[4]));
        if ((rc = get_value(&it[4], m, &m->arguments, err))) return rc;
        /* Servers before ASP.NET Core 3.0 send no StreamIds. */
        return n > 5 ? get_strings(&it[5], "streamIds", 0, m, &m->stream_ids, err) : SR_OK;
    case SR_MSG_STREAM_ITEM:
        if ((rc = get_str(&it[2], "invocationId", 1, m, &m->invocation_id, err))) return rc;
        return get_value(&it[3], m, &m->item, err);
    case SR_MSG_COMPLETION:
        if ((rc = get_str(&it[2], "invocationId", 1, m, &m->invocation_id, err)) ||
            (rc = get_int(&it[3], "resultKind", m, &kind, err)))
            return rc;
        if (kind < 1 || kind > 3)
            return sr__error_set(
                err, SR_EPROTOCOL,
                "Completion message has an invalid result kind %lld (expected 1 error, 2 "
                "void or 3 result)",
                (long long)kind);
        if (n != (kind == 2 ? 4u : 5u))
            return sr__error_set(
                err, SR_EPROTOCOL,
                "Completion message with result kind %lld has %u items (expected %u)",
                (long long)kind, (unsigned)n, kind == 2 ? 4u : 5u);
        if (kind == 1) return get_str(&it[4], "error", 0, m, &m->error, err);
        if (kind == 3) {
            m->has_result = 1;
            return get_value(&it[4], m, &m->result, err);
        }
        return SR_OK;
    case SR_MSG_CANCEL_INVOCATION:
        return get_str(&it[2], "invocationId", 1, m, &m->invocation_id, err);
    case SR_MSG_PING:
        return SR_OK;
    case SR_MSG_CLOSE:
        if ((rc = get_str(&it[1], "error", 0, m, &m->error, err))) return rc;
        if (n > 2 && it[2].type != MSGPACK_OBJECT_NIL) {
            if (it[2].type != MSGPACK_OBJECT_BOOLEAN)
                return sr__error_set(err, SR_EPROTOCOL,
                                     "Close message has a non-boolean 'allowReconnect'");
            m->allow_reconnect = it[2].via.boolean;
        }
        return SR_OK;
    case SR_MSG_ACK:
    case SR_MSG_SEQUENCE:
        return get_int(&it[1], "sequenceId", m, &m->sequence_id, err);
    }
    return sr__error_set(err, SR_EPROTOCOL, "unknown message type %d", (int)m->type);
}

static int read_msg(const msgpack_object *o, sr_msg *m, sr_error *err)
{
    const msgpack_object *it;
    uint32_t n;
    int64_t t;
    int rc;

    if (o->type != MSGPACK_OBJECT_ARRAY)
        return sr__error_set(err, SR_EPROTOCOL, "message is not a MessagePack array (%s)",
                             kind_name(o));
    n = o->via.array.size;
    it = o->via.array.ptr;
    if (n == 0) return sr__error_set(err, SR_EPROTOCOL, "message is an empty array (no type)");
    if (!is_int(&it[0]))
        return sr__error_set(err, SR_EPROTOCOL, "message has a non-integer type (%s)",
                             kind_name(&it[0]));
    if (it[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && it[0].via.u64 > 9)
        return sr__error_set(err, SR_EPROTOCOL, "unknown message type %llu",
                             (unsigned long long)it[0].via.u64);
    t = it[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)it[0].via.u64 : it[0].via.i64;
    if (t < 1) return sr__error_set(err, SR_EPROTOCOL, "unknown message type %lld", (long long)t);
    m->type = (sr_msg_type)t;
    if (n < arity[t][0] || n > arity[t][1]) {
        if (arity[t][0] == arity[t][1])
            return sr__error_set(err, SR_EPROTOCOL, "%s message has %u items (expected %u)",
                                 sr__msg_type_name((int)t), (unsigned)n, (unsigned)arity[t][0]);
        return sr__error_set(err, SR_EPROTOCOL, "%s message has %u items (expected %u or %u)",
                             sr__msg_type_name((int)t), (unsigned)n, (unsigned)arity[t][0],
                             (unsigned)arity[t][1]);
    }
    /* Headers follow the type in the invocation-type messages (1..5). */
    if (t <= SR_MSG_CANCEL_INVOCATION &&
        (rc = get_strings(&it[1], "headers", 1, m, &m->headers, err)))
        return rc;
    return read_body(it, n, m, err);
}

/* What the values of a message of len bytes take in an arena, about:
 * MessagePack is compact (a small number is one byte, a node 32). A large
 * message starts at 16 KiB and grows by doubling blocks. */
#define ARENA_SIZE(len) ((len) < 4000 ? 4 * (size_t)(len) + 128 : (size_t)16384)

static int mp_parse_pooled(const char *data, size_t len, size_t max_size, sr_msg *out,
                           sr_arena_pool *pool, sr_error *err)
{
    msgpack_unpacked u;
    uint32_t body;
    sr_msg m;
    int k, rc;

    /* 0 means no limit; the bound keeps the consumed count an int. */
    if (max_size == 0 || max_size > (size_t)INT_MAX - 5) max_size = (size_t)INT_MAX - 5;
    k = sr__varint_read(data, len, &body);
    if (k == 0) return 0;
    if (k < 0) {
        if ((unsigned char)data[4] & 0x80)
            return sr__error_set(err, SR_EPROTOCOL,
                                 "invalid message length prefix (more than 5 bytes)");
        return sr__error_set(err, SR_EPROTOCOL, "invalid message length prefix (over 2^31-1)");
    }
    if (body > max_size)
        return sr__error_set(err, SR_EPROTOCOL, "message too large (%lu bytes, limit %zu)",
                             (unsigned long)body, max_size);
    if (len - (size_t)k < body) return 0;
    memset(&m, 0, sizeof m);
    /* every string and value of the message in one arena, freed with it */
    if (!(m.arena = sr__arena_get(pool, ARENA_SIZE(body)))) return sr__proto_oom(err);
    msgpack_unpacked_init(&u);
    rc = unpack(data + k, body, "message", &u, err);
    if (rc == SR_OK) rc = read_msg(&u.data, &m, err);
    msgpack_unpacked_destroy(&u);
    if (rc != SR_OK) {
        sr__msg_recycle(&m, pool);
        return rc;
    }
    *out = m;
    return k + (int)body;
}

static int mp_parse(const char *data, size_t len, size_t max_size, sr_msg *out, sr_error *err)
{
    return mp_parse_pooled(data, len, max_size, out, NULL, err);
}

/* ================================================================ writing */

static int sink(void *data, const char *buf, size_t len)
{
    return sr__buf_append(data, buf, len) == 0 ? 0 : -1;
}

static int enc_value(msgpack_packer *pk, const sr_value *v, int depth, sr_error *err)
{
    size_t i, n, len;
    const char *s;
    int rc;

    if (depth > SR_VALUE_MAX_DEPTH)
        return sr__error_set(err, SR_EUSAGE, "value nested too deeply (more than %d levels)",
                             SR_VALUE_MAX_DEPTH);
    switch (sr_value_type(v)) {
    case SR_NULL:
        rc = msgpack_pack_nil(pk);
        break;
    case SR_BOOL:
        rc = sr_value_get_bool(v) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        break;
    case SR_INT:
        rc = msgpack_pack_int64(pk, sr_value_get_int(v));
        break;
    case SR_FLOAT:
        rc = msgpack_pack_double(pk, sr_value_get_float(v));
        break;
    case SR_STRING:
    case SR_BINARY:
        s = sr_value_get_string(v, &len);
        if (len > UINT32_MAX)
            return sr__error_set(err, SR_EUSAGE, "%s too long for MessagePack (over 4 GiB)",
                                 sr_value_type(v) == SR_STRING ? "string" : "binary");
        rc = sr_value_type(v) == SR_STRING ? msgpack_pack_str_with_body(pk, s, len)
                                           : msgpack_pack_bin_with_body(pk, s, len);
        break;
    case SR_ARRAY:
        n = sr_value_len(v);
        if ((rc = msgpack_pack_array(pk, n)) != 0) break;
        for (i = 0; i < n; i++)
            if ((rc = enc_value(pk, sr_value_at(v, i), depth + 1, err)) != SR_OK) return rc;
        return SR_OK;
    case SR_MAP:
        n = sr_value_len(v);
        if ((rc = msgpack_pack_map(pk, n)) != 0) break;
        for (i = 0; i < n; i++) {
            s = sr_value_key_at(v, i, &len);
            if (len > UINT32_MAX)
                return sr__error_set(err, SR_EUSAGE, "map key too long for MessagePack");
            if (msgpack_pack_str_with_body(pk, s, len) != 0) return sr__proto_oom(err);
            if ((rc = enc_value(pk, sr_value_at(v, i), depth + 1, err)) != SR_OK) return rc;
        }
        return SR_OK;
    default:
        return sr__error_set(err, SR_EUSAGE, "unknown value type %d", (int)sr_value_type(v));
    }
    return rc == 0 ? SR_OK : sr__proto_oom(err);
}

int sr__msgpack_encode_value(const sr_value *v, sr_buf *out, sr_error *err)
{
    size_t start = out->len;
    msgpack_packer pk;
    int rc;

    msgpack_packer_init(&pk, out, sink);
    rc = enc_value(&pk, v, 1, err);
    if (rc != SR_OK) out->len = start;
    return rc;
}

static int put_cstr(msgpack_packer *pk, const char *s)
{
    if (!s) return msgpack_pack_nil(pk);
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Refuse what cannot be written before writing anything. */
static int check(const sr_msg *m, sr_error *err)
{
    int rc;

    if (m->type <= SR_MSG_CANCEL_INVOCATION && m->headers && !sr__proto_all_strings(m->headers, 1))
        return sr__error_set(err, SR_EUSAGE, "headers must be a map of strings");
    switch (m->type) {
    case SR_MSG_INVOCATION:
    case SR_MSG_STREAM_INVOCATION:
        if (m->type != SR_MSG_INVOCATION &&
            (rc = sr__proto_need(m, m->invocation_id, "an invocationId", err)))
            return rc;
        if ((rc = sr__proto_need(m, m->target, "a target", err))) return rc;
        if (m->arguments && sr_value_type(m->arguments) != SR_ARRAY)
            return sr__error_set(err, SR_EUSAGE, "arguments must be an array");
        if (m->stream_ids && !sr__proto_all_strings(m->stream_ids, 0))
            return sr__error_set(err, SR_EUSAGE, "streamIds must be an array of strings");
        return SR_OK;
    case SR_MSG_STREAM_ITEM:
    case SR_MSG_CANCEL_INVOCATION:
        return sr__proto_need(m, m->invocation_id, "an invocationId", err);
    case SR_MSG_COMPLETION:
        if ((rc = sr__proto_need(m, m->invocation_id, "an invocationId", err))) return rc;
        if (m->has_result && m->error)
            return sr__error_set(err, SR_EUSAGE,
                                 "Completion message cannot have both result and error");
        return SR_OK;
    default:
        return SR_OK;
    }
}

static int write_body(const sr_msg *m, msgpack_packer *pk, sr_error *err)
{
    static const unsigned char items[10] = {0, 6, 4, 0, 6, 3, 1, 3, 2, 2};
    unsigned n = items[m->type];
    int rc;

    /* The layouts the .NET server writes (MessagePackHubProtocolWorker). */
    if (m->type == SR_MSG_COMPLETION) n = m->error || m->has_result ? 5 : 4;
    if (msgpack_pack_array(pk, n) || msgpack_pack_int(pk, (int)m->type)) return sr__proto_oom(err);
    if (m->type <= SR_MSG_CANCEL_INVOCATION) {
        if (m->headers) {
            if ((rc = enc_value(pk, m->headers, 1, err))) return rc;
        } else if (msgpack_pack_map(pk, 0)) {
            return sr__proto_oom(err);
        }
    }
    switch (m->type) {
    case SR_MSG_INVOCATION:
    case SR_MSG_STREAM_INVOCATION:
        if (put_cstr(pk, m->invocation_id) || put_cstr(pk, m->target)) return sr__proto_oom(err);
        if (m->arguments) {
            if ((rc = enc_value(pk, m->arguments, 1, err))) return rc;
        } else if (msgpack_pack_array(pk, 0)) {
            return sr__proto_oom(err);
        }
        if (m->stream_ids) return enc_value(pk, m->stream_ids, 1, err);
        return msgpack_pack_array(pk, 0) ? sr__proto_oom(err) : SR_OK;
    case SR_MSG_STREAM_ITEM:
        if (put_cstr(pk, m->invocation_id)) return sr__proto_oom(err);
        return enc_value(pk, m->item, 1, err);
    case SR_MSG_COMPLETION:
        if (put_cstr(pk, m->invocation_id) || msgpack_pack_int(pk, m->error        ? 1
                                                                   : m->has_result ? 3
                                                                                   : 2))
            return sr__proto_oom(err);
        if (m->error) return put_cstr(pk, m->error) ? sr__proto_oom(err) : SR_OK;
        if (m->has_result) return enc_value(pk, m->result, 1, err);
        return SR_OK;
    case SR_MSG_CANCEL_INVOCATION:
        return put_cstr(pk, m->invocation_id) ? sr__proto_oom(err) : SR_OK;
    case SR_MSG_PING:
        return SR_OK;
    case SR_MSG_CLOSE:
        if (put_cstr(pk, m->error) ||
            (m->allow_reconnect ? msgpack_pack_true(pk) : msgpack_pack_false(pk)))
            return sr__proto_oom(err);
        return SR_OK;
    case SR_MSG_ACK:
    case SR_MSG_SEQUENCE:
        return msgpack_pack_int64(pk, m->sequence_id) ? sr__proto_oom(err) : SR_OK;
    }
    return sr__error_set(err, SR_EUSAGE, "cannot write message type %d", (int)m->type);
}

static int mp_write(const sr_msg *m, sr_buf *out, sr_error *err)
{
    size_t start = out->len, body, k;
    msgpack_packer pk;
    char prefix[5];
    int rc;

    if ((unsigned)m->type - 1u > 8u)
        return sr__error_set(err, SR_EUSAGE, "cannot write message type %d", (int)m->type);
    if ((rc = check(m, err))) return rc;
    msgpack_packer_init(&pk, out, sink);
    rc = write_body(m, &pk, err);
    body = out->len - start;
    if (rc == SR_OK && body > (size_t)INT32_MAX)
        rc = sr__error_set(err, SR_EUSAGE, "message too large for its length prefix (%zu bytes)",
                           body);
    /* The length is known once the body is written: append the prefix,
     * then rotate it in front of the body (no second buffer). */
    if (rc == SR_OK && sr__varint_write(out, (uint32_t)body) != 0) rc = sr__proto_oom(err);
    if (rc != SR_OK) {
        out->len = start; /* a failed write leaves no partial message behind */
        return rc;
    }
    k = out->len - start - body;
    memcpy(prefix, out->data + start + body, k);
    memmove(out->data + start + k, out->data + start, body);
    memcpy(out->data + start, prefix, k);
    return SR_OK;
}

const sr_protocol sr__msgpack_protocol = {"messagepack",  1, 1, mp_write, mp_parse, NULL,
                                          mp_parse_pooled};
