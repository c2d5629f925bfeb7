/* test_value.c - the sr_value model: constructors, accessors, ownership. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "signalr.h"
#include "value.h"
#include "value_equal.h"

TEST(scalars)
{
    sr_value *v;

    v = sr_value_null();
    CHECK(v && sr_value_type(v) == SR_NULL);
    sr_value_free(v);

    v = sr_value_bool(42);
    CHECK(sr_value_type(v) == SR_BOOL && sr_value_get_bool(v) == 1);
    sr_value_free(v);

    v = sr_value_int(INT64_MIN);
    CHECK(sr_value_type(v) == SR_INT && sr_value_get_int(v) == INT64_MIN);
    sr_value_free(v);

    v = sr_value_float(-0.0);
    CHECK(sr_value_type(v) == SR_FLOAT && signbit(sr_value_get_float(v)));
    sr_value_free(v);
}

TEST(strings_hold_nul_and_end_in_nul)
{
    size_t len = 99;
    sr_value *v = sr_value_string("a\0b", 3);
    const char *s = sr_value_get_string(v, &len);

    CHECK(sr_value_type(v) == SR_STRING);
    CHECK(len == 3 && memcmp(s, "a\0b", 3) == 0 && s[3] == '\0');
    sr_value_free(v);

    v = sr_value_string(NULL, 0);
    s = sr_value_get_string(v, &len);
    CHECK(v && len == 0 && s && s[0] == '\0');
    sr_value_free(v);

    CHECK(sr_value_string(NULL, 3) == NULL);

    v = sr_value_binary("\xff\x00\x01", 3);
    s = sr_value_get_string(v, &len);
    CHECK(sr_value_type(v) == SR_BINARY && len == 3 && (unsigned char)s[0] == 0xff);
    sr_value_free(v);
}

TEST(wrong_type_accessors_are_safe)
{
    sr_value *s = sr_value_string("x", 1), *i = sr_value_int(7), *f = sr_value_float(2.5);
    size_t len = 5;

    CHECK(sr_value_get_int(s) == 0 && sr_value_get_bool(s) == 0 && sr_value_get_float(s) == 0.0);
    CHECK(sr_value_get_string(i, &len) == NULL && len == 0);
    CHECK(sr_value_len(s) == 0 && sr_value_at(s, 0) == NULL);
    CHECK(sr_value_key_at(i, 0, &len) == NULL && sr_value_get(i, "x") == NULL);
    /* floats do not truncate into integers... */
    CHECK(sr_value_get_int(f) == 0);
    /* ...but integers read as floats: .NET writes 3.0 as 3 */
    CHECK(sr_value_get_float(i) == 7.0);
    CHECK(sr_value_type(NULL) == SR_NULL && sr_value_len(NULL) == 0 && !sr_value_at(NULL, 0));
    CHECK(sr_value_get_string(NULL, NULL) == NULL && sr_value_get(NULL, "a") == NULL);
    sr_value_free(s);
    sr_value_free(i);
    sr_value_free(f);
    sr_value_free(NULL);
}

TEST(array_grows)
{
    sr_value *a = sr_value_array();
    int i;

    CHECK(sr_value_type(a) == SR_ARRAY && sr_value_len(a) == 0);
    for (i = 0; i < 10000; i++)
        CHECK(sr_value_array_push(a, sr_value_int(i)) == SR_OK);
    CHECK(sr_value_len(a) == 10000);
    for (i = 0; i < 10000; i++)
        CHECK(sr_value_get_int(sr_value_at(a, (size_t)i)) == i);
    CHECK(sr_value_at(a, 10000) == NULL);
    sr_value_free(a);
}

TEST(push_and_set_own_the_item_on_failure)
{
    sr_value *a = sr_value_array(), *m = sr_value_map();

    /* wrong container type: item freed (valgrind would see a leak) */
    CHECK(sr_value_array_push(m, sr_value_int(1)) == SR_EUSAGE);
    CHECK(sr_value_map_set(a, "k", 1, sr_value_int(1)) == SR_EUSAGE);
    CHECK(sr_value_array_push(NULL, sr_value_string("x", 1)) == SR_EUSAGE);
    /* a failed constructor chains into a failed push */
    CHECK(sr_value_array_push(a, NULL) == SR_ENOMEM);
    CHECK(sr_value_map_set(m, "k", 1, NULL) == SR_ENOMEM);
    /* a container cannot hold itself; as the item it is freed */
    CHECK(sr_value_array_push(a, a) == SR_EUSAGE);
    sr_value_free(m);
}

TEST(map_keeps_order_and_replaces)
{
    sr_value *m = sr_value_map();
    size_t kl;

    CHECK(sr_value_type(m) == SR_MAP && sr_value_len(m) == 0);
    CHECK(sr_value_map_set(m, "b", 1, sr_value_int(1)) == SR_OK);
    CHECK(sr_value_map_set(m, "a", 1, sr_value_int(2)) == SR_OK);
    CHECK(sr_value_map_set(m, "", 0, sr_value_int(3)) == SR_OK);
    CHECK(sr_value_map_set(m, "k\0z", 3, sr_value_int(4)) == SR_OK);
    CHECK(sr_value_map_set(m, "b", 1, sr_value_string("new", 3)) == SR_OK);
    CHECK(sr_value_len(m) == 4);
    CHECK_STR(sr_value_key_at(m, 0, &kl), "b");
    CHECK(kl == 1 && sr_value_type(sr_value_at(m, 0)) == SR_STRING);
    CHECK_STR(sr_value_key_at(m, 1, NULL), "a");
    CHECK(sr_value_key_at(m, 2, &kl)[0] == '\0' && kl == 0);
    CHECK(sr_value_key_at(m, 3, &kl) && kl == 3 &&
          memcmp(sr_value_key_at(m, 3, NULL), "k\0z", 4) == 0);
    CHECK(sr_value_get_int(sr_value_get(m, "a")) == 2);
    CHECK(sr_value_get_int(sr_value_get(m, "")) == 3);
    CHECK(sr_value_get(m, "k") == NULL);
    CHECK(sr_value_get(m, "zz") == NULL);
    CHECK(sr_value_key_at(m, 4, &kl) == NULL && kl == 0);
    /* append skips the duplicate check; set after it still finds the first */
    CHECK(sr__value_map_append(m, "a", 1, sr_value_int(9)) == SR_OK);
    CHECK(sr_value_len(m) == 5 && sr_value_get_int(sr_value_get(m, "a")) == 2);
    sr_value_free(m);
}

TEST(copy_is_deep)
{
    sr_value *m = sr_value_map(), *a = sr_value_array(), *c;

    sr_value_array_push(a, sr_value_float(0.1));
    sr_value_array_push(a, sr_value_binary("\0\1", 2));
    sr_value_array_push(a, sr_value_map());
    sr_value_array_push(a, sr_value_array());
    sr_value_map_set(m, "list", 4, a);
    sr_value_map_set(m, "n", 1, sr_value_null());
    sr_value_map_set(m, "t", 1, sr_value_bool(1));
    sr_value_map_set(m, "i", 1, sr_value_int(-5));
    c = sr_value_copy(m);
    CHECK(c && c != m && equal(c, m));
    CHECK(sr_value_at(c, 0) != sr_value_at(m, 0));
    sr_value_free(m);
    /* the copy survives the original */
    CHECK(sr_value_type(sr_value_at(sr_value_at(c, 0), 2)) == SR_MAP);
    CHECK(sr_value_len(sr_value_at(sr_value_at(c, 0), 2)) == 0);
    sr_value_free(c);
    CHECK(sr_value_copy(NULL) == NULL);
}

TEST(free_is_iterative)
{
    /* Far deeper than any C stack could recurse through. */
    sr_value *root = sr_value_array(), *cur = root, *next;
    int i;

    for (i = 0; i < t_scale(1000000, 100000); i++) {
        next = i % 2 ? sr_value_array() : sr_value_map();
        CHECK(next);
        if (sr_value_type(cur) == SR_ARRAY) {
            sr_value_array_push(cur, sr_value_int(i));
            CHECK(sr_value_array_push(cur, next) == SR_OK);
        } else {
            CHECK(sr_value_map_set(cur, "k", 1, next) == SR_OK);
            sr_value_map_set(cur, "s", 1, sr_value_string("x", 1));
        }
        cur = next;
    }
    sr_value_free(root);
}

TEST(arena_blocks_are_aligned_zeroed_and_grow)
{
    sr_arena *a = sr__arena_new(16);
    unsigned char *p, *q, *big;
    size_t i;

    CHECK(a);
    p = sr__arena_alloc(a, 3);
    q = sr__arena_alloc(a, 5);
    CHECK(p && q && q != p && ((uintptr_t)p % 8) == 0 && ((uintptr_t)q % 8) == 0);
    /* past the first block: a new one, large enough, and zeroed */
    big = sr__arena_alloc(a, 5000);
    CHECK(big && ((uintptr_t)big % 8) == 0);
    for (i = 0; i < 5000; i++)
        CHECK(big[i] == 0);
    memset(big, 0xab, 5000);
    /* what came before stays where it was */
    memset(p, 1, 3);
    CHECK(p[0] == 1 && q[0] == 0);
    CHECK(sr__arena_alloc(a, SIZE_MAX) == NULL);
    sr__arena_free(a);
    sr__arena_free(NULL);
}

static size_t pooled(const sr_arena_pool *p)
{
    size_t n = 0;
    int c;
    for (c = 0; c < SR_ARENA_CLASSES; c++)
        n += p->n[c];
    return n;
}

TEST(arena_pool_reuses_by_class_and_trims)
{
    sr_arena_pool pool;
    sr_arena *a, *b, *c, *d;
    unsigned char *x;

    memset(&pool, 0, sizeof pool);
    a = sr__arena_get(&pool, 100);
    b = sr__arena_get(&pool, 200);
    d = sr__arena_get(&pool, SR_ARENA_CLASS_MIN + 1); /* the next class */
    CHECK(a && b && d && pooled(&pool) == 0);
    CHECK(sr__arena_alloc(a, 3000)); /* a block more: freed on the way back */
    sr__arena_put(&pool, a);
    sr__arena_put(&pool, b);
    sr__arena_put(&pool, d);
    CHECK(pool.n[0] == 2 && pool.n[1] == 1);
    CHECK(pool.bytes == 2 * SR_ARENA_CLASS_MIN + 4 * SR_ARENA_CLASS_MIN);
    c = sr__arena_get(&pool, 50);
    CHECK(c == b && pool.n[0] == 1);
    /* a reused arena starts empty and zeroed, with its class's room */
    x = sr__arena_alloc(c, SR_ARENA_CLASS_MIN);
    CHECK(x && x[0] == 0 && x[SR_ARENA_CLASS_MIN - 1] == 0);
    sr__arena_put(&pool, c);
    CHECK(sr__arena_get(&pool, 4 * SR_ARENA_CLASS_MIN) == d && pool.n[1] == 0);
    sr__arena_put(&pool, d);
    /* past the largest class an arena is its own, never pooled */
    c = sr__arena_get(&pool, (size_t)SR_ARENA_CLASS_MIN << (2 * SR_ARENA_CLASSES));
    CHECK(c && pooled(&pool) == 3);
    sr__arena_put(&pool, c);
    CHECK(pooled(&pool) == 3);
    sr__arena_put(NULL, sr__arena_get(NULL, 10)); /* no pool: plain new and free */
    /* the pool holds SR_ARENA_POOL_BYTES at most */
    {
        enum { N = SR_ARENA_POOL_BYTES / SR_ARENA_CLASS_MIN + 10 };
        static sr_arena *many[N];
        size_t i;
        for (i = 0; i < N; i++)
            CHECK((many[i] = sr__arena_get(NULL, 1)) != NULL);
        for (i = 0; i < N; i++)
            sr__arena_put(&pool, many[i]);
        CHECK(pool.bytes <= SR_ARENA_POOL_BYTES && pool.bytes > SR_ARENA_POOL_BYTES / 2);
    }
    sr__arena_pool_halve(&pool);
    CHECK(pool.bytes <= SR_ARENA_POOL_BYTES / 2 + 4 * SR_ARENA_CLASS_MIN);
    sr__arena_pool_clear(&pool);
    CHECK(pooled(&pool) == 0 && pool.bytes == 0 && !pool.free[0] && !pool.free[1]);
}

TEST(values_in_an_arena)
{
    sr_arena *a = sr__arena_new(64);
    sr_value *arr = sr__value_new(a, SR_ARRAY), *map = sr__value_new(a, SR_MAP), *copy;

    CHECK(arr && map);
    CHECK(sr__value_reserve_in(a, arr, 3) == SR_OK);
    CHECK(sr__value_reserve_in(a, arr, 3) == SR_EUSAGE); /* room is given once */
    CHECK(sr_value_array_push(arr, sr__value_int_in(a, INT64_MAX)) == SR_OK);
    CHECK(sr_value_array_push(arr, sr__value_bytes(a, SR_STRING, "a\0b", 3)) == SR_OK);
    CHECK(sr__value_reserve_in(a, map, 2) == SR_OK);
    CHECK(sr__value_map_append_in(a, map, "f", 1, sr__value_float_in(a, 0.5)) == SR_OK);
    CHECK(sr__value_map_append_in(a, map, "b", 1, sr__value_bool_in(a, 7)) == SR_OK);
    /* full: an arena's container never grows */
    CHECK(sr__value_map_append_in(a, map, "x", 1, sr__value_new(a, SR_NULL)) == SR_EUSAGE);
    CHECK(sr_value_array_push(arr, map) == SR_OK);
    CHECK(sr_value_array_push(arr, sr__value_new(a, SR_NULL)) == SR_EUSAGE);
    CHECK(sr_value_len(arr) == 3 && sr_value_get_int(sr_value_at(arr, 0)) == INT64_MAX);
    CHECK(sr_value_get_float(sr_value_get(map, "f")) == 0.5);
    CHECK(sr_value_get_bool(sr_value_get(map, "b")) == 1);
    /* a heap container never takes a reserve for an arena */
    {
        sr_value *h = sr_value_array();
        CHECK(sr__value_reserve_in(a, h, 1) == SR_EUSAGE);
        sr_value_free(h);
    }
    /* freeing leaves them to the arena; a copy is the caller's own */
    sr_value_free(arr);
    copy = sr_value_copy(arr);
    sr__arena_free(a);
    CHECK(copy && sr_value_len(copy) == 3);
    {
        size_t len;
        const char *s = sr_value_get_string(sr_value_at(copy, 1), &len);
        CHECK(len == 3 && memcmp(s, "a\0b", 3) == 0);
    }
    CHECK(sr_value_get_bool(sr_value_get(sr_value_at(copy, 2), "b")) == 1);
    sr_value_free(copy);
}

int main(void)
{
    RUN(scalars);
    RUN(strings_hold_nul_and_end_in_nul);
    RUN(wrong_type_accessors_are_safe);
    RUN(array_grows);
    RUN(push_and_set_own_the_item_on_failure);
    RUN(map_keeps_order_and_replaces);
    RUN(copy_is_deep);
    RUN(free_is_iterative);
    RUN(arena_blocks_are_aligned_zeroed_and_grow);
    RUN(arena_pool_reuses_by_class_and_trims);
    RUN(values_in_an_arena);
    DONE();
}
