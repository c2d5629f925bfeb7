/*
 * json_fast.cpp - the fast path for reading JSON records (json_fast.h):
 * simdjson's DOM parser on a padded copy of the record, then one walk of
 * its document that builds the sr_value tree. The core's only C++; it
 * exports C and throws nothing.
 *
 * jansson spends about 800 ns on a 46-byte hub message and allocates every
 * node twice (its tree, then ours); simdjson parses it in about 65 ns into
 * memory it reuses, so the only allocations left are our tree's.
 *
 * Each thread that parses keeps its own reader (parser and buffer): the
 * parser reuses its memory between records, which is most of its speed on
 * small ones. The thread finds it through a thread_local pointer, never a
 * thread_local object: a C++ destructor of thread storage in a module that
 * is dlclose'd (the Lua module, at lua_close) keeps glibc from unloading it
 * and loses memory. So every reader is also on one list: the core's I/O
 * threads free their own as they end, and when the last loop is freed
 * (when no thread of ours can be parsing) every reader still on the list
 * goes, the host threads' included.
 */
#define SIMDJSON_EXCEPTIONS 0
#include <simdjson.h>

#include <pthread.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "json_fast.h"
#include "value.h"

namespace
{

using simdjson::SUCCESS;
using simdjson::dom::element;
using simdjson::dom::element_type;

/* The capacity a parser starts with, and jansson's nesting limit, which
 * simdjson counts the same way (2048 nested arrays parse, 2049 do not). */
constexpr size_t START_CAPACITY = 1024;
constexpr size_t MAX_DEPTH = SR_VALUE_MAX_DEPTH;

struct reader {
    reader *prev = nullptr, *next = nullptr; /* on all_readers */
    simdjson::dom::parser parser{SR_JSON_FAST_MAX};
    char *buf = nullptr; /* the record, then SIMDJSON_PADDING zero bytes */
    size_t cap = 0;      /* of buf, padding excluded */

    reader() = default;
    reader(const reader &) = delete;
    reader &operator=(const reader &) = delete;
    ~reader()
    {
        std::free(buf);
    }

    /* Room for a record of len bytes, in the buffer and in the parser;
     * grows by doubling so a run of growing records does not reallocate
     * each time. */
    bool reserve(size_t len)
    {
        if (len > cap) {
            size_t want = std::max(cap ? cap * 2 : START_CAPACITY, len);
            want = std::min<size_t>(want, SR_JSON_FAST_MAX);
            /* zeroed: simdjson reads the padding, and valgrind must see it
             * defined */
            char *nb = static_cast<char *>(std::calloc(1, want + simdjson::SIMDJSON_PADDING));
            if (!nb) return false;
            std::free(buf);
            buf = nb;
            cap = want;
        }
        /* a parser never allocated has capacity 0 */
        return parser.capacity() >= cap || parser.allocate(cap, MAX_DEPTH) == SUCCESS;
    }
};

pthread_mutex_t readers_mu = PTHREAD_MUTEX_INITIALIZER;
reader *all_readers;       /* under readers_mu */
unsigned long generation;  /* under readers_mu: bumped when all are freed */
unsigned long loops_alive; /* under readers_mu */

/* This thread's reader, valid while tl_generation is the current one. */
thread_local reader *tl_reader;
thread_local unsigned long tl_generation;

reader *this_threads_reader()
{
    reader *r = tl_reader;

    /* No lock: readers are freed all at once only when no loop is left,
     * so none can be freed under a parse. */
    if (r && tl_generation == __atomic_load_n(&generation, __ATOMIC_ACQUIRE)) return r;
    r = new (std::nothrow) reader;
    if (!r) return nullptr;
    pthread_mutex_lock(&readers_mu);
    r->next = all_readers;
    if (all_readers) all_readers->prev = r;
    all_readers = r;
    tl_generation = generation;
    pthread_mutex_unlock(&readers_mu);
    tl_reader = r;
    return r;
}

/* Repeated keys: jansson keeps the first position with the last value,
 * which the caller gets by reading the record with jansson. Finding them
 * costs a few compares for the small objects of hub messages; large ones
 * are sorted so a hostile object stays O(n log n). */
bool has_repeated_key(const sr_value *map)
{
    size_t n = sr_value_len(map), i, j, la, lb;

    if (n <= 8) {
        for (i = 0; i < n; i++) {
            const char *a = sr_value_key_at(map, i, &la);
            for (j = i + 1; j < n; j++) {
                const char *b = sr_value_key_at(map, j, &lb);
                if (la == lb && std::memcmp(a, b, la) == 0) return true;
            }
        }
        return false;
    }
    std::string_view *keys = static_cast<std::string_view *>(std::malloc(n * sizeof *keys));
    if (!keys) return true; /* let jansson decide, with its own memory */
    for (i = 0; i < n; i++) {
        const char *k = sr_value_key_at(map, i, &la);
        new (&keys[i]) std::string_view(k, la);
    }
    std::sort(keys, keys + n);
    bool rep = std::adjacent_find(keys, keys + n) != keys + n;
    std::free(keys);
    return rep;
}

/* SR_OK, SR_ENOMEM or SR_JSON_UNDECIDED; in the arena a (on the heap when
 * NULL). Recursion is bounded by the parser's depth limit. */
int build(element e, sr_arena *a, sr_value **out)
{
    sr_value *v = nullptr;
    int rc = SR_OK;

    *out = nullptr;
    switch (e.type()) {
    case element_type::ARRAY: {
        simdjson::dom::array arr = e.get_array().value_unsafe();
        v = sr__value_new(a, SR_ARRAY);
        if (!v || sr__value_reserve_in(a, v, arr.size()) != SR_OK) {
            rc = SR_ENOMEM;
            break;
        }
        for (element item : arr) {
            sr_value *iv;
            if ((rc = build(item, a, &iv)) != SR_OK) break;
            if (sr_value_array_push(v, iv) != SR_OK) {
                rc = SR_ENOMEM;
                break;
            }
        }
        break;
    }
    case element_type::OBJECT: {
        simdjson::dom::object o = e.get_object().value_unsafe();
        v = sr__value_new(a, SR_MAP);
        if (!v || sr__value_reserve_in(a, v, o.size()) != SR_OK) {
            rc = SR_ENOMEM;
            break;
        }
        for (simdjson::dom::key_value_pair kv : o) {
            sr_value *iv;
            /* jansson refuses a NUL in a key, with its own message */
            if (std::memchr(kv.key.data(), '\0', kv.key.size())) {
                rc = SR_JSON_UNDECIDED;
                break;
            }
            if ((rc = build(kv.value, a, &iv)) != SR_OK) break;
            if (sr__value_map_append_in(a, v, kv.key.data(), kv.key.size(), iv) != SR_OK) {
                rc = SR_ENOMEM;
                break;
            }
        }
        if (rc == SR_OK && has_repeated_key(v)) rc = SR_JSON_UNDECIDED;
        break;
    }
    case element_type::INT64:
        v = sr__value_int_in(a, e.get_int64().value_unsafe());
        break;
    case element_type::UINT64:
        /* past int64: jansson refuses it ("too big integer") */
        rc = SR_JSON_UNDECIDED;
        break;
    case element_type::DOUBLE:
        v = sr__value_float_in(a, e.get_double().value_unsafe());
        break;
    case element_type::STRING: {
        std::string_view s = e.get_string().value_unsafe();
        v = sr__value_bytes(a, SR_STRING, s.data(), s.size());
        break;
    }
    case element_type::BOOL:
        v = sr__value_bool_in(a, e.get_bool().value_unsafe());
        break;
    case element_type::NULL_VALUE:
        v = sr__value_new(a, SR_NULL);
        break;
    }
    if (rc == SR_OK && !v) rc = SR_ENOMEM;
    if (rc != SR_OK) {
        sr_value_free(v); /* a no-op in an arena: its owner frees it */
        return rc;
    }
    *out = v;
    return SR_OK;
}

/* The record parsed by this thread's reader: false when simdjson could
 * not (then jansson decides). */
bool parse(const char *text, size_t len, element *root)
{
    reader *r;

    if (len > SR_JSON_FAST_MAX || !(r = this_threads_reader()) || !r->reserve(len)) return false;
    std::memcpy(r->buf, text, len);
    /* the padding simdjson may read must not hold the end of a longer
     * record from before */
    std::memset(r->buf + len, 0, simdjson::SIMDJSON_PADDING);
    return r->parser.parse(r->buf, len, false).get(*root) == SUCCESS;
}

} // namespace

extern "C" int sr__json_fast_read(const char *text, size_t len, sr_value **out)
{
    element root;

    *out = nullptr;
    if (!parse(text, len, &root)) return SR_JSON_UNDECIDED;
    return build(root, nullptr, out);
}

extern "C" int sr__json_fast_read_fields(const char *text, size_t len, sr_json_field *fields,
                                         size_t max, size_t *n, sr_arena *a)
{
    element root;
    simdjson::dom::object o;
    int rc = SR_OK;

    *n = 0;
    if (!parse(text, len, &root) || root.get_object().get(o) != SUCCESS) return SR_JSON_UNDECIDED;
    for (simdjson::dom::key_value_pair kv : o) {
        sr_value *v;
        if (*n == max || std::memchr(kv.key.data(), '\0', kv.key.size())) {
            rc = SR_JSON_UNDECIDED;
            break;
        }
        for (size_t i = 0; i < *n; i++)
            if (fields[i].keylen == kv.key.size() &&
                std::memcmp(fields[i].key, kv.key.data(), kv.key.size()) == 0)
                rc = SR_JSON_UNDECIDED; /* repeated: jansson's rule */
        if (rc != SR_OK || (rc = build(kv.value, a, &v)) != SR_OK) break;
        fields[*n].key = kv.key.data();
        fields[*n].keylen = kv.key.size();
        fields[*n].val = v;
        ++*n;
    }
    if (rc != SR_OK) {
        while (*n > 0)
            sr_value_free(fields[--*n].val);
    }
    return rc;
}

extern "C" void sr__json_fast_thread_done(void)
{
    reader *r = tl_reader;

    tl_reader = nullptr;
    if (!r) return;
    pthread_mutex_lock(&readers_mu);
    if (tl_generation == generation) {
        if (r->prev)
            r->prev->next = r->next;
        else
            all_readers = r->next;
        if (r->next) r->next->prev = r->prev;
    } else {
        r = nullptr; /* already freed with all the others */
    }
    pthread_mutex_unlock(&readers_mu);
    delete r;
}

extern "C" void sr__json_fast_loop_born(void)
{
    pthread_mutex_lock(&readers_mu);
    loops_alive++;
    pthread_mutex_unlock(&readers_mu);
}

extern "C" void sr__json_fast_loop_gone(void)
{
    reader *r = nullptr;

    /* Freed under the lock: a loop made meanwhile on another thread cannot
     * parse before its sr_loop_new has counted it, after this. */
    pthread_mutex_lock(&readers_mu);
    if (loops_alive > 0 && --loops_alive == 0) {
        r = all_readers;
        all_readers = nullptr;
        __atomic_store_n(&generation, generation + 1, __ATOMIC_RELEASE);
    }
    while (r) {
        reader *next = r->next;
        delete r;
        r = next;
    }
    pthread_mutex_unlock(&readers_mu);
}
