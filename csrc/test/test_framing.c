/* test_framing.c - record separator search, VarInt prefixes, sr_buf. */
#include <stdint.h>
#include <stdlib.h>

#include "buf.h"
#include "framing.h"
#include "harness.h"

TEST(record_separator)
{
    CHECK(sr__rs_find("", 0) == -1);
    CHECK(sr__rs_find(NULL, 0) == -1);
    CHECK(sr__rs_find("{}", 2) == -1);
    CHECK(sr__rs_find("\x1e", 1) == 0);
    CHECK(sr__rs_find("{}\x1e", 3) == 2);
    CHECK(sr__rs_find("{}\x1e{\x1e", 5) == 2);
    /* only data[0..len) counts */
    CHECK(sr__rs_find("{}\x1e", 2) == -1);
    CHECK(sr__rs_find("a\0b\x1e", 4) == 3);
}

static int vw(uint32_t n, const char *expect, size_t len)
{
    sr_buf b = SR_BUF_INIT;
    uint32_t back = 0;
    int ok;

    ok = sr__varint_write(&b, n) == 0 && b.len == len && memcmp(b.data, expect, len) == 0 &&
         sr__varint_read(b.data, b.len, &back) == (int)len && back == n;
    sr__buf_free(&b);
    return ok;
}

TEST(varint_known_values)
{
    CHECK(vw(0, "\x00", 1));
    CHECK(vw(1, "\x01", 1));
    CHECK(vw(127, "\x7f", 1));
    CHECK(vw(128, "\x80\x01", 2));
    CHECK(vw(300, "\xac\x02", 2));
    CHECK(vw(16383, "\xff\x7f", 2));
    CHECK(vw(16384, "\x80\x80\x01", 3));
    CHECK(vw(2097151, "\xff\xff\x7f", 3));
    CHECK(vw(268435455, "\xff\xff\xff\x7f", 4));
    CHECK(vw(268435456, "\x80\x80\x80\x80\x01", 5));
    CHECK(vw(0x7fffffff, "\xff\xff\xff\xff\x07", 5));
}

TEST(varint_round_trip)
{
    sr_buf b = SR_BUF_INIT;
    uint32_t n, back, x = 2463534242u;
    int i, used;

    for (i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        n = (x & 0x7fffffff) >> (i % 31);
        CHECK(sr__varint_write(&b, n) == 0);
        used = sr__varint_read(b.data, b.len, &back);
        CHECK(used > 0 && used == (int)b.len && back == n);
        sr__buf_reset(&b);
    }
    sr__buf_free(&b);
}

TEST(varint_incomplete_and_malformed)
{
    uint32_t n = 77;

    CHECK(sr__varint_read("", 0, &n) == 0);
    CHECK(sr__varint_read("\x80", 1, &n) == 0);
    CHECK(sr__varint_read("\xff\xff\xff\xff", 4, &n) == 0);
    CHECK(n == 77); /* untouched until complete */
    /* a sixth byte would be needed */
    CHECK(sr__varint_read("\xff\xff\xff\xff\x80\x01", 6, &n) == -1);
    CHECK(sr__varint_read("\xff\xff\xff\xff\x80", 5, &n) == -1);
    /* over 2^31-1 */
    CHECK(sr__varint_read("\x80\x80\x80\x80\x08", 5, &n) == -1);
    CHECK(sr__varint_read("\xff\xff\xff\xff\x0f", 5, &n) == -1);
    /* trailing bytes are the message, not the prefix */
    CHECK(sr__varint_read("\x05hello", 6, &n) == 1 && n == 5);
    /* non-minimal encodings are accepted: nothing is gained by refusing them */
    CHECK(sr__varint_read("\x81\x00", 2, &n) == 2 && n == 1);
}

TEST(buf_basics)
{
    sr_buf b = SR_BUF_INIT;
    int i;

    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
    CHECK(sr__buf_append(&b, NULL, 0) == 0 && b.len == 0);
    CHECK(sr__buf_append_str(&b, "hello") == 0 && b.len == 5);
    CHECK(sr__buf_append_byte(&b, ' ') == 0);
    CHECK(sr__buf_append(&b, "world", 5) == 0 && b.len == 11);
    CHECK(memcmp(b.data, "hello world", 11) == 0);
    sr__buf_consume(&b, 6);
    CHECK(b.len == 5 && memcmp(b.data, "world", 5) == 0);
    sr__buf_consume(&b, 100);
    CHECK(b.len == 0 && b.cap > 0);
    for (i = 0; i < 100000; i++)
        CHECK(sr__buf_append_byte(&b, (char)i) == 0);
    CHECK(b.len == 100000 && b.cap >= b.len && (unsigned char)b.data[99999] == (99999 & 0xff));
    CHECK(sr__buf_reserve(&b, 1u << 20) == 0 && b.cap - b.len >= 1u << 20);
    /* impossible sizes fail and leave the buffer alone */
    CHECK(sr__buf_reserve(&b, SIZE_MAX) == -1 && b.len == 100000);
    CHECK(sr__buf_reserve(&b, SIZE_MAX - 50000) == -1 && b.len == 100000);
    sr__buf_reset(&b);
    CHECK(b.len == 0 && b.data != NULL);
    sr__buf_free(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
    sr__buf_free(&b);
}

int main(void)
{
    RUN(record_separator);
    RUN(varint_known_values);
    RUN(varint_round_trip);
    RUN(varint_incomplete_and_malformed);
    RUN(buf_basics);
    DONE();
}
