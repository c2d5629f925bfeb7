/*
 * value.c - the sr_value model: a JSON/MessagePack value tree.
 *
 * Strings and binaries are stored in the same allocation as their node
 * (one malloc per scalar) with a trailing NUL that is not part of the length.
 * Arrays and maps grow by doubling. Maps are ordered arrays of entries; keys
 * are unique (sr_value_map_set replaces) and looked up linearly.
 *
 * A decoder may build a whole tree in an arena (arena.h) instead: its nodes
 * are marked, sr_value_free leaves them to the arena, and its containers
 * have exactly the room reserved for them.
 */
#include "value.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct sr_entry {
    char *key; /* NUL-terminated copy; keylen excludes the NUL */
    size_t keylen;
    sr_value *val;
} sr_entry;

struct sr_value {
    sr_type type;
    unsigned char in_arena; /* freed with its arena, never by sr_value_free */
    union {
        int b;
        int64_t i;
        double d;
        struct {
            char *p; /* points just past the node, NUL-terminated */
            size_t len;
        } s;
        struct {
            void *items; /* sr_value ** (array) or sr_entry * (map) */
            size_t len;
            /* While the node is being freed its capacity is no longer needed,
             * so the slot holds the parent instead: that makes sr_value_free
             * iterative without extra memory (deep trees cannot overflow the
             * stack or fail to free). */
            union {
                size_t cap;
                sr_value *up;
            } c;
        } a;
    } u;
};

sr_value *sr__value_new(sr_arena *a, sr_type t)
{
    sr_value *v = a ? sr__arena_alloc(a, sizeof *v) : calloc(1, sizeof *v);
    if (v) {
        v->type = t;
        v->in_arena = a != NULL;
    }
    return v;
}

static sr_value *node(sr_type t)
{
    return sr__value_new(NULL, t);
}

sr_value *sr_value_null(void)
{
    return node(SR_NULL);
}

sr_value *sr__value_bool_in(sr_arena *a, int b)
{
    sr_value *v = sr__value_new(a, SR_BOOL);
    if (v) v->u.b = b != 0;
    return v;
}

sr_value *sr__value_int_in(sr_arena *a, int64_t i)
{
    sr_value *v = sr__value_new(a, SR_INT);
    if (v) v->u.i = i;
    return v;
}

sr_value *sr__value_float_in(sr_arena *a, double d)
{
    sr_value *v = sr__value_new(a, SR_FLOAT);
    if (v) v->u.d = d;
    return v;
}

sr_value *sr_value_bool(int b)
{
    return sr__value_bool_in(NULL, b);
}

sr_value *sr_value_int(int64_t i)
{
    return sr__value_int_in(NULL, i);
}

sr_value *sr_value_float(double d)
{
    return sr__value_float_in(NULL, d);
}

sr_value *sr__value_bytes(sr_arena *a, sr_type t, const void *p, size_t len)
{
    sr_value *v;

    if (len > SIZE_MAX - sizeof *v - 1 || (!p && len)) return NULL;
    v = a ? sr__arena_alloc(a, sizeof *v + len + 1) : malloc(sizeof *v + len + 1);
    if (!v) return NULL;
    memset(v, 0, sizeof *v);
    v->type = t;
    v->in_arena = a != NULL;
    v->u.s.p = (char *)(v + 1);
    v->u.s.len = len;
    if (len) memcpy(v->u.s.p, p, len);
    v->u.s.p[len] = '\0';
    return v;
}

static sr_value *bytes(sr_type t, const void *p, size_t len)
{
    return sr__value_bytes(NULL, t, p, len);
}

sr_value *sr_value_string(const char *s, size_t len)
{
    return bytes(SR_STRING, s, len);
}

sr_value *sr_value_binary(const void *p, size_t len)
{
    return bytes(SR_BINARY, p, len);
}

sr_value *sr_value_array(void)
{
    return node(SR_ARRAY);
}

sr_value *sr_value_map(void)
{
    return node(SR_MAP);
}

/* ------------------------------------------------------------ containers */

static int grow(sr_value *v, size_t extra)
{
    size_t esz = v->type == SR_ARRAY ? sizeof(sr_value *) : sizeof(sr_entry);
    size_t need, cap;
    void *p;

    if (extra <= v->u.a.c.cap - v->u.a.len) return SR_OK;
    if (v->in_arena) return SR_EUSAGE; /* its room was reserved once */
    if (extra > SIZE_MAX / esz - v->u.a.len) return SR_ENOMEM;
    need = v->u.a.len + extra;
    cap = v->u.a.c.cap ? v->u.a.c.cap : 4;
    while (cap < need)
        cap = cap > SIZE_MAX / esz / 2 ? need : cap * 2;
    p = realloc(v->u.a.items, cap * esz);
    if (!p) return SR_ENOMEM;
    v->u.a.items = p;
    v->u.a.c.cap = cap;
    return SR_OK;
}

int sr__value_reserve(sr_value *v, size_t n)
{
    if (!v || (v->type != SR_ARRAY && v->type != SR_MAP)) return SR_EUSAGE;
    return grow(v, n);
}

int sr__value_reserve_in(sr_arena *a, sr_value *v, size_t n)
{
    size_t esz;

    if (!a) return sr__value_reserve(v, n);
    if (!v || !v->in_arena || (v->type != SR_ARRAY && v->type != SR_MAP) || v->u.a.c.cap)
        return SR_EUSAGE;
    esz = v->type == SR_ARRAY ? sizeof(sr_value *) : sizeof(sr_entry);
    if (n == 0) return SR_OK;
    if (n > SIZE_MAX / esz || !(v->u.a.items = sr__arena_alloc(a, n * esz))) return SR_ENOMEM;
    v->u.a.c.cap = n;
    return SR_OK;
}

int sr_value_array_push(sr_value *arr, sr_value *item)
{
    int rc;

    if (!item) return SR_ENOMEM; /* lets callers chain a failed constructor */
    if (!arr || arr->type != SR_ARRAY || arr == item) {
        sr_value_free(item);
        return SR_EUSAGE;
    }
    rc = grow(arr, 1);
    if (rc != SR_OK) {
        sr_value_free(item);
        return rc;
    }
    ((sr_value **)arr->u.a.items)[arr->u.a.len++] = item;
    return SR_OK;
}

int sr__value_map_append_in(sr_arena *a, sr_value *map, const char *key, size_t keylen,
                            sr_value *item)
{
    sr_entry *e;
    char *k;
    int rc;

    if (!item) return SR_ENOMEM;
    /* an arena's map takes keys from its arena only, a heap map from the heap */
    if (!map || map->type != SR_MAP || map == item || (!key && keylen) || keylen == SIZE_MAX ||
        (a != NULL) != map->in_arena) {
        sr_value_free(item);
        return SR_EUSAGE;
    }
    /* a heap map grows or is out of memory; an arena's is full (SR_EUSAGE) */
    if ((rc = grow(map, 1)) != SR_OK) {
        sr_value_free(item);
        return rc;
    }
    k = a ? sr__arena_alloc(a, keylen + 1) : malloc(keylen + 1);
    if (!k) {
        sr_value_free(item);
        return SR_ENOMEM;
    }
    if (keylen) memcpy(k, key, keylen);
    k[keylen] = '\0';
    e = (sr_entry *)map->u.a.items + map->u.a.len++;
    e->key = k;
    e->keylen = keylen;
    e->val = item;
    return SR_OK;
}

int sr__value_map_append(sr_value *map, const char *key, size_t keylen, sr_value *item)
{
    return sr__value_map_append_in(NULL, map, key, keylen, item);
}

static sr_entry *find(const sr_value *map, const char *key, size_t keylen)
{
    sr_entry *e = map->u.a.items;
    size_t i;

    for (i = 0; i < map->u.a.len; i++)
        if (e[i].keylen == keylen && (keylen == 0 || memcmp(e[i].key, key, keylen) == 0))
            return &e[i];
    return NULL;
}

int sr_value_map_set(sr_value *map, const char *key, size_t keylen, sr_value *item)
{
    sr_entry *e;

    if (item && map && map->type == SR_MAP && map != item && (key || !keylen)) {
        e = find(map, key, keylen);
        if (e) {
            sr_value_free(e->val);
            e->val = item;
            return SR_OK;
        }
    }
    return sr__value_map_append(map, key, keylen, item);
}

/* --------------------------------------------------------- copy and free */

/* Recursive: decoded trees are at most SR_VALUE_MAX_DEPTH deep; only a tree
 * built by hand can be deeper, and then copying it recurses as deep. */
sr_value *sr_value_copy(const sr_value *v)
{
    sr_value *c;
    size_t i;

    if (!v) return NULL;
    switch (v->type) {
    case SR_STRING:
    case SR_BINARY:
        return bytes(v->type, v->u.s.p, v->u.s.len);
    case SR_ARRAY:
        c = sr_value_array();
        if (!c || grow(c, v->u.a.len) != SR_OK) goto fail;
        for (i = 0; i < v->u.a.len; i++)
            if (sr_value_array_push(c, sr_value_copy(((sr_value **)v->u.a.items)[i])) != SR_OK)
                goto fail;
        return c;
    case SR_MAP: {
        const sr_entry *e = v->u.a.items;
        c = sr_value_map();
        if (!c || grow(c, v->u.a.len) != SR_OK) goto fail;
        for (i = 0; i < v->u.a.len; i++)
            if (sr__value_map_append(c, e[i].key, e[i].keylen, sr_value_copy(e[i].val)) != SR_OK)
                goto fail;
        return c;
    }
    default:
        c = node(v->type);
        if (c) c->u = v->u;
        return c;
    }
fail:
    sr_value_free(c);
    return NULL;
}

static int is_container(const sr_value *v)
{
    return v->type == SR_ARRAY || v->type == SR_MAP;
}

void sr_value_free(sr_value *v)
{
    sr_value *child;

    if (!v || v->in_arena) return; /* an arena's tree is all in it */
    if (is_container(v)) v->u.a.c.up = NULL;
    /* Depth-first with parent links threaded through the capacity slot:
     * take children off the end of the current node until it is empty, then
     * free it and continue with its parent. */
    while (v) {
        if (is_container(v) && v->u.a.len > 0) {
            size_t i = --v->u.a.len;
            if (v->type == SR_ARRAY) {
                child = ((sr_value **)v->u.a.items)[i];
            } else {
                sr_entry *e = (sr_entry *)v->u.a.items + i;
                free(e->key);
                child = e->val;
            }
            if (is_container(child) && child->u.a.len > 0) {
                child->u.a.c.up = v;
                v = child;
            } else {
                if (is_container(child)) free(child->u.a.items);
                free(child);
            }
        } else {
            sr_value *up = is_container(v) ? v->u.a.c.up : NULL;
            if (is_container(v)) free(v->u.a.items);
            free(v);
            v = up;
        }
    }
}

/* -------------------------------------------------------------- accessors */

sr_type sr_value_type(const sr_value *v)
{
    return v ? v->type : SR_NULL;
}

int sr_value_get_bool(const sr_value *v)
{
    return v && v->type == SR_BOOL ? v->u.b : 0;
}

int64_t sr_value_get_int(const sr_value *v)
{
    return v && v->type == SR_INT ? v->u.i : 0;
}

/* An SR_INT reads as a float too: servers write integral doubles without a
 * fraction (.NET sends 3.0 as "3"), so a float result may arrive as SR_INT. */
double sr_value_get_float(const sr_value *v)
{
    if (!v) return 0.0;
    if (v->type == SR_FLOAT) return v->u.d;
    if (v->type == SR_INT) return (double)v->u.i;
    return 0.0;
}

const char *sr_value_get_string(const sr_value *v, size_t *len)
{
    if (!v || (v->type != SR_STRING && v->type != SR_BINARY)) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = v->u.s.len;
    return v->u.s.p;
}

size_t sr_value_len(const sr_value *v)
{
    return v && is_container(v) ? v->u.a.len : 0;
}

const sr_value *sr_value_at(const sr_value *v, size_t i)
{
    if (!v || !is_container(v) || i >= v->u.a.len) return NULL;
    if (v->type == SR_ARRAY) return ((sr_value **)v->u.a.items)[i];
    return ((sr_entry *)v->u.a.items)[i].val;
}

const char *sr_value_key_at(const sr_value *map, size_t i, size_t *keylen)
{
    const sr_entry *e;

    if (!map || map->type != SR_MAP || i >= map->u.a.len) {
        if (keylen) *keylen = 0;
        return NULL;
    }
    e = (const sr_entry *)map->u.a.items + i;
    if (keylen) *keylen = e->keylen;
    return e->key;
}

const sr_value *sr_value_get(const sr_value *map, const char *key)
{
    const sr_entry *e;

    if (!map || map->type != SR_MAP || !key) return NULL;
    e = find(map, key, strlen(key));
    return e ? e->val : NULL;
}
