/*
 * json_protocol.c - the JSON hub protocol (HubProtocol.md, "JSON Encoding"),
 * the handshake, and single JSON values <-> sr_value.
 *
 * Writing produces the text directly instead of building a jansson tree:
 * it is several times faster and lets us control the two things jansson gets
 * in the way of, number formatting (shortest text that reads back bit-exact)
 * and the error for text that is not UTF-8. Reading takes a record's
 * top-level fields with their values built as sr_value trees (simdjson
 * where it can decide the record, jansson where it cannot: json_fast.h),
 * then moves the values the message keeps out of them.
 *
 * Wire rules kept here:
 * - integers stay integers (int64), floats always carry '.' or an exponent,
 *   so a value read back has the type it was written with;
 * - NaN and infinities cannot be JSON and are refused (SR_EUSAGE);
 * - strings are UTF-8 (checked when writing) and may hold NUL (\u0000); map
 *   keys may not, because jansson cannot read such keys back;
 * - SR_BINARY is written as base64 text, like the official clients do; it
 *   reads back as SR_STRING (JSON cannot tell them apart).
 */
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framing.h"
#include "json_fast.h"
#include "protocol.h"
#include "value.h"

/* A handshake response is a few bytes; past this, the peer is not a SignalR
 * server and waiting for a separator would only buffer garbage. */
#define HANDSHAKE_MAX (64u * 1024u)

/* ================================================================ writing */

static int put(sr_buf *b, const void *p, size_t n)
{
    if (n <= b->cap - b->len) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
        return 0;
    }
    return sr__buf_append(b, p, n);
}

#define PUT_LIT(b, lit) put((b), (lit), sizeof(lit) - 1)

/* Per byte: 0 = copy as is, 1 = must be escaped, 2 = starts a multi-byte
 * UTF-8 sequence (validated), 3 = never valid in UTF-8. */
static const unsigned char char_class[256] = {
    /* 0x00-0x1f: control characters */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 0x20-0x7f: '"' and '\\' only */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* 0x80-0xbf: continuation bytes, invalid as a start */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    /* 0xc0-0xc1: overlong; 0xc2-0xf4: lead bytes; 0xf5-0xff: invalid */
    3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3};

/* Length of the valid UTF-8 sequence at s (lead byte class 2), or 0.
 * RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t n, i;

    if (c < 0xe0)
        n = 2;
    else if (c < 0xf0)
        n = 3;
    else
        n = 4;
    if (avail < n) return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (s[1] < lo || s[1] > hi) return 0;
    for (i = 2; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return n;
}

/* Quoted, escaped JSON string. 1 = not UTF-8 (nothing sensible to write). */
static int put_str(sr_buf *b, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run;

    if (sr__buf_reserve(b, len + 2) != 0) return -1;
    b->data[b->len++] = '"';
    while (i < len) {
        run = i;
        while (i < len && char_class[s[i]] == 0)
            i++;
        if (i > run && put(b, s + run, i - run) != 0) return -1;
        if (i == len) break;
        switch (char_class[s[i]]) {
        case 1: {
            char esc[6] = {'\\', 0, '0', '0', 0, 0};
            size_t n = 2;
            switch (s[i]) {
            case '"':
                esc[1] = '"';
                break;
            case '\\':
                esc[1] = '\\';
                break;
            case '\b':
                esc[1] = 'b';
                break;
            case '\f':
                esc[1] = 'f';
                break;
            case '\n':
                esc[1] = 'n';
                break;
            case '\r':
                esc[1] = 'r';
                break;
            case '\t':
                esc[1] = 't';
                break;
            default:
                esc[1] = 'u';
                esc[4] = hex[s[i] >> 4];
                esc[5] = hex[s[i] & 15];
                n = 6;
            }
            if (put(b, esc, n) != 0) return -1;
            i++;
            break;
        }
        case 2: {
            size_t n = utf8_seq(s + i, len - i);
            if (n == 0) return 1;
            if (put(b, s + i, n) != 0) return -1;
            i += n;
            break;
        }
        default:
            return 1;
        }
    }
    return sr__buf_append_byte(b, '"');
}

static int put_int(sr_buf *b, int64_t v)
{
    char tmp[24], *p = tmp + sizeof tmp;
    /* Via unsigned so INT64_MIN negates without overflow. */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--p = '-';
    return put(b, p, (size_t)(tmp + sizeof tmp - p));
}

/* Digits dig[0..nd) (first and last nonzero) with the decimal exponent of
 * the first, as JSON number text with '.' replaced by dp: fixed notation for
 * exponents -4..15 (as %g does) or when it is shorter, else scientific.
 * Always a '.' or an exponent, so it reads back as a float. Needs 40 + dplen
 * bytes. */
static size_t fmt_decimal(char *o, int neg, const char *dig, int nd, int exp, const char *dp,
                          size_t dplen)
{
    char *p = o;
    int i, sci = 0;

    if (neg) *p++ = '-';
    if (exp < -4 || exp > 15) {
        /* lengths without the sign; the exponent has at most 3 digits */
        int fixed = exp < 0 ? 1 - exp + nd : (nd > exp + 1 ? nd + 1 : exp + 3);
        int ew = exp <= -100 || exp >= 100 ? 3 : exp <= -10 || exp >= 10 ? 2 : 1;
        sci = fixed >= nd + (nd > 1) + 2 + ew;
    }
    if (sci) {
        *p++ = dig[0];
        if (nd > 1) {
            memcpy(p, dp, dplen);
            p += dplen;
            memcpy(p, dig + 1, (size_t)nd - 1);
            p += nd - 1;
        }
        p += sprintf(p, "e%c%d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp < 0) {
        *p++ = '0';
        memcpy(p, dp, dplen);
        p += dplen;
        for (i = -1; i > exp; i--)
            *p++ = '0';
        memcpy(p, dig, (size_t)nd);
        p += nd;
    } else if (nd <= exp + 1) {
        memcpy(p, dig, (size_t)nd);
        p += nd;
        for (i = nd; i <= exp; i++)
            *p++ = '0';
        memcpy(p, dp, dplen);
        p += dplen;
        *p++ = '0';
    } else {
        memcpy(p, dig, (size_t)exp + 1);
        p += exp + 1;
        memcpy(p, dp, dplen);
        p += dplen;
        memcpy(p, dig + exp + 1, (size_t)(nd - exp - 1));
        p += nd - exp - 1;
    }
    return (size_t)(p - o);
}

/* The shortest text that reads back to the same double, in practice: 0.1 is
 * "0.1", not jansson's "0.10000000000000001", and every double round-trips
 * bit for bit. d is finite. */
static int put_float(sr_buf *b, double d)
{
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    char dig[24], cand[24], out[64], chk[64], dp[8];
    double a = fabs(d);
    int neg = signbit(d) != 0, nd, exp, k, prec, i;
    size_t n, dplen;

    if (a == 0) return neg ? PUT_LIT(b, "-0.0") : PUT_LIT(b, "0.0");

    /* Fast path for numbers with a short decimal form (19.99, 0.25, 3.0):
     * find the fewest decimals k with an integer u such that u / 10^k == a.
     * u and 10^k are exact doubles and IEEE division rounds correctly, so
     * a reader converting "u e-k" (also correctly rounded) gets a back. */
    if (a >= 1e-5 && a < 1e15) {
        for (k = 0; k <= 22; k++) {
            double m = a * p10[k];
            uint64_t u;
            if (m >= 9007199254740992.0) break; /* 2^53: u would not be exact */
            u = (uint64_t)(m + 0.5);            /* round to nearest; no libm needed */
            if ((double)u / p10[k] != a) continue;
            nd = 0;
            do {
                cand[nd++] = (char)('0' + u % 10);
                u /= 10;
            } while (u);
            exp = nd - 1 - k;
            for (i = 0; i < nd; i++)
                dig[i] = cand[nd - 1 - i];
            while (nd > 1 && dig[nd - 1] == '0')
                nd--;
            return put(b, out, fmt_decimal(out, neg, dig, nd, exp, ".", 1));
        }
    }

    /* Otherwise: the 17 significant digits that always round-trip, then the
     * first of their roundings to 15 or 16 digits that still reads back to
     * a. snprintf and strtod follow LC_NUMERIC (a host may have set a
     * locale with ','), so the check uses the locale's decimal point and
     * the output uses '.'. */
    n = (size_t)snprintf(out, sizeof out, "%.16e", a);
    if (n >= sizeof out) return -1;
    dig[0] = out[0];
    for (dplen = 0; 1 + dplen < n && !(out[1 + dplen] >= '0' && out[1 + dplen] <= '9'); dplen++)
        ;
    if (dplen == 0 || dplen >= sizeof dp || 1 + dplen + 16 >= n) return -1;
    memcpy(dp, out + 1, dplen);
    memcpy(dig + 1, out + 1 + dplen, 16);
    exp = atoi(out + 1 + dplen + 16 + 1); /* past the 'e' */

    for (prec = 15; prec <= 17; prec++) {
        /* A dropped tail of exactly "5000.." may come from the rounding to
         * 17 digits itself, so then rounding down is tried as well. */
        int half = prec < 17 && dig[prec] == '5', up;
        for (i = prec + 1; half && i < 17; i++)
            half = dig[i] == '0';
        for (up = prec < 17 && dig[prec] >= '5'; up >= 0; up = half && up ? 0 : -1) {
            int cexp = exp;
            memcpy(cand, dig, (size_t)prec);
            if (up) {
                for (i = prec - 1; i >= 0 && cand[i] == '9'; i--)
                    cand[i] = '0';
                if (i >= 0) {
                    cand[i]++;
                } else {
                    cand[0] = '1';
                    cexp++;
                }
            }
            nd = prec;
            while (nd > 1 && cand[nd - 1] == '0')
                nd--;
            if (prec < 17) {
                n = fmt_decimal(chk, 0, cand, nd, cexp, dp, dplen);
                chk[n] = '\0';
                if (strtod(chk, NULL) != a) continue;
            }
            return put(b, out, fmt_decimal(out, neg, cand, nd, cexp, ".", 1));
        }
    }
    return -1; /* not reached: 17 digits are always written */
}

static int put_base64(sr_buf *b, const unsigned char *s, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, olen;
    char *o;

    if (len > (SIZE_MAX - 3) / 4 * 3) return -1;
    olen = (len + 2) / 3 * 4;
    if (sr__buf_reserve(b, olen + 2) != 0) return -1;
    o = b->data + b->len;
    *o++ = '"';
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < len ? (uint32_t)s[i + 1] << 8 : 0);
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

/* A string field; what names the value in an error message. */
static int enc_str(sr_buf *b, const char *s, size_t len, const char *what, sr_error *err)
{
    int rc = put_str(b, s, len);
    if (rc < 0) return sr__proto_oom(err);
    if (rc > 0) return sr__error_set(err, SR_EUSAGE, "%s is not valid UTF-8", what);
    return SR_OK;
}

static int enc_value(const sr_value *v, sr_buf *b, int depth, sr_error *err)
{
    size_t i, n, len;
    const char *s;
    int rc;

    if (depth > SR_VALUE_MAX_DEPTH)
        return sr__error_set(err, SR_EUSAGE, "value nested too deeply (more than %d levels)",
                             SR_VALUE_MAX_DEPTH);
    switch (sr_value_type(v)) {
    case SR_NULL:
        rc = PUT_LIT(b, "null");
        break;
    case SR_BOOL:
        rc = sr_value_get_bool(v) ? PUT_LIT(b, "true") : PUT_LIT(b, "false");
        break;
    case SR_INT:
        rc = put_int(b, sr_value_get_int(v));
        break;
    case SR_FLOAT: {
        double d = sr_value_get_float(v);
        if (isnan(d)) return sr__error_set(err, SR_EUSAGE, "cannot encode NaN as JSON");
        if (isinf(d))
            return sr__error_set(err, SR_EUSAGE, "cannot encode %s as JSON",
                                 d > 0 ? "infinity" : "-infinity");
        rc = put_float(b, d);
        break;
    }
    case SR_STRING:
        s = sr_value_get_string(v, &len);
        return enc_str(b, s, len, "string", err);
    case SR_BINARY:
        s = sr_value_get_string(v, &len);
        rc = put_base64(b, (const unsigned char *)s, len);
        break;
    case SR_ARRAY:
        n = sr_value_len(v);
        if (sr__buf_append_byte(b, '[') != 0) return sr__proto_oom(err);
        for (i = 0; i < n; i++) {
            if (i && sr__buf_append_byte(b, ',') != 0) return sr__proto_oom(err);
            rc = enc_value(sr_value_at(v, i), b, depth + 1, err);
            if (rc != SR_OK) return rc;
        }
        rc = sr__buf_append_byte(b, ']');
        break;
    case SR_MAP:
        n = sr_value_len(v);
        if (sr__buf_append_byte(b, '{') != 0) return sr__proto_oom(err);
        for (i = 0; i < n; i++) {
            s = sr_value_key_at(v, i, &len);
            if (i && sr__buf_append_byte(b, ',') != 0) return sr__proto_oom(err);
            if (memchr(s, '\0', len))
                return sr__error_set(err, SR_EUSAGE,
                                     "map key contains a NUL byte (not supported in JSON)");
            rc = enc_str(b, s, len, "map key", err);
            if (rc != SR_OK) return rc;
            if (sr__buf_append_byte(b, ':') != 0) return sr__proto_oom(err);
            rc = enc_value(sr_value_at(v, i), b, depth + 1, err);
            if (rc != SR_OK) return rc;
        }
        rc = sr__buf_append_byte(b, '}');
        break;
    default:
        return sr__error_set(err, SR_EUSAGE, "unknown value type %d", (int)sr_value_type(v));
    }
    return rc == 0 ? SR_OK : sr__proto_oom(err);
}

int sr__json_encode_value(const sr_value *v, sr_buf *out, sr_error *err)
{
    size_t start = out->len;
    int rc = enc_value(v, out, 1, err);
    if (rc != SR_OK) out->len = start;
    return rc;
}

/* ,"name":<C string> */
static int field_cstr(sr_buf *b, const char *key, const char *s, sr_error *err)
{
    if (put(b, key, strlen(key)) != 0) return sr__proto_oom(err);
    return enc_str(b, s, strlen(s), key + 2, err);
}

static int field_value(sr_buf *b, const char *key, const sr_value *v, sr_error *err)
{
    if (put(b, key, strlen(key)) != 0) return sr__proto_oom(err);
    return enc_value(v, b, 1, err);
}

static int write_invocation(const sr_msg *m, sr_buf *b, sr_error *err)
{
    int rc;

    if (m->type != SR_MSG_INVOCATION &&
        (rc = sr__proto_need(m, m->invocation_id, "an invocationId", err)))
        return rc;
    if ((rc = sr__proto_need(m, m->target, "a target", err))) return rc;
    if (m->arguments && sr_value_type(m->arguments) != SR_ARRAY)
        return sr__error_set(err, SR_EUSAGE, "arguments must be an array");
    if (m->stream_ids && !sr__proto_all_strings(m->stream_ids, 0))
        return sr__error_set(err, SR_EUSAGE, "streamIds must be an array of strings");
    if (m->invocation_id && (rc = field_cstr(b, ",\"invocationId\":", m->invocation_id, err)))
        return rc;
    if ((rc = field_cstr(b, ",\"target\":", m->target, err))) return rc;
    if (m->arguments) {
        if ((rc = field_value(b, ",\"arguments\":", m->arguments, err))) return rc;
    } else if (PUT_LIT(b, ",\"arguments\":[]") != 0) {
        return sr__proto_oom(err);
    }
    if (m->stream_ids && (rc = field_value(b, ",\"streamIds\":", m->stream_ids, err))) return rc;
    return SR_OK;
}

static int write_body(const sr_msg *m, sr_buf *b, sr_error *err)
{
    int rc = SR_OK;

    switch (m->type) {
    case SR_MSG_INVOCATION:
    case SR_MSG_STREAM_INVOCATION:
        return write_invocation(m, b, err);
    case SR_MSG_STREAM_ITEM:
        if ((rc = sr__proto_need(m, m->invocation_id, "an invocationId", err)) ||
            (rc = field_cstr(b, ",\"invocationId\":", m->invocation_id, err)))
            return rc;
        return field_value(b, ",\"item\":", m->item, err);
    case SR_MSG_COMPLETION:
        if ((rc = sr__proto_need(m, m->invocation_id, "an invocationId", err))) return rc;
        if (m->has_result && m->error)
            return sr__error_set(err, SR_EUSAGE,
                                 "Completion message cannot have both result and error");
        if ((rc = field_cstr(b, ",\"invocationId\":", m->invocation_id, err))) return rc;
        if (m->has_result) return field_value(b, ",\"result\":", m->result, err);
        if (m->error) return field_cstr(b, ",\"error\":", m->error, err);
        return SR_OK;
    case SR_MSG_CANCEL_INVOCATION:
        if ((rc = sr__proto_need(m, m->invocation_id, "an invocationId", err))) return rc;
        return field_cstr(b, ",\"invocationId\":", m->invocation_id, err);
    case SR_MSG_PING:
        return SR_OK;
    case SR_MSG_CLOSE:
        if (m->error && (rc = field_cstr(b, ",\"error\":", m->error, err))) return rc;
        if (m->allow_reconnect && PUT_LIT(b, ",\"allowReconnect\":true") != 0)
            return sr__proto_oom(err);
        return SR_OK;
    case SR_MSG_ACK:
    case SR_MSG_SEQUENCE:
        if (PUT_LIT(b, ",\"sequenceId\":") != 0 || put_int(b, m->sequence_id) != 0)
            return sr__proto_oom(err);
        return SR_OK;
    }
    return sr__error_set(err, SR_EUSAGE, "cannot write message type %d", (int)m->type);
}

static int json_write(const sr_msg *m, sr_buf *out, sr_error *err)
{
    size_t start = out->len;
    int rc;

    if ((unsigned)m->type - 1u > 8u)
        return sr__error_set(err, SR_EUSAGE, "cannot write message type %d", (int)m->type);
    if (PUT_LIT(out, "{\"type\":") != 0 || put_int(out, (int64_t)m->type) != 0) {
        rc = sr__proto_oom(err);
    } else {
        rc = write_body(m, out, err);
        /* Headers belong to the invocation-type messages (1..5). */
        if (rc == SR_OK && m->headers && m->type <= SR_MSG_CANCEL_INVOCATION) {
            if (!sr__proto_all_strings(m->headers, 1))
                rc = sr__error_set(err, SR_EUSAGE, "headers must be a map of strings");
            else
                rc = field_value(out, ",\"headers\":", m->headers, err);
        }
        if (rc == SR_OK && PUT_LIT(out, "}\x1e") != 0) rc = sr__proto_oom(err);
    }
    if (rc != SR_OK) out->len = start; /* a failed write leaves no partial message behind */
    return rc;
}

/* ================================================================ reading */

/* NULL only when out of memory. Depth is bounded by jansson's parser
 * (JSON_PARSER_MAX_DEPTH), so the recursion is too. */
static sr_value *from_json(json_t *j)
{
    sr_value *v;
    size_t i, n;

    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *key;
        size_t keylen;
        json_t *item;
        v = sr_value_map();
        if (!v || sr__value_reserve(v, json_object_size(j)) != SR_OK) break;
        /* Keys are unique and in document order (jansson keeps insertion
         * order; a repeated key keeps its first position, last value). */
        json_object_keylen_foreach(j, key, keylen, item)
        {
            if (sr__value_map_append(v, key, keylen, from_json(item)) != SR_OK) goto fail;
        }
        return v;
    }
    case JSON_ARRAY:
        n = json_array_size(j);
        v = sr_value_array();
        if (!v || sr__value_reserve(v, n) != SR_OK) break;
        for (i = 0; i < n; i++)
            if (sr_value_array_push(v, from_json(json_array_get(j, i))) != SR_OK) goto fail;
        return v;
    case JSON_STRING:
        return sr_value_string(json_string_value(j), json_string_length(j));
    case JSON_INTEGER:
        return sr_value_int((int64_t)json_integer_value(j));
    case JSON_REAL:
        return sr_value_float(json_real_value(j));
    case JSON_TRUE:
        return sr_value_bool(1);
    case JSON_FALSE:
        return sr_value_bool(0);
    default:
        return sr_value_null();
    }
fail:
    sr_value_free(v);
    return NULL;
}

/* What jansson said when it could not read the text (what names it). */
static int load_failed(const json_error_t *je, const char *what, sr_error *err)
{
    if (json_error_code(je) == json_error_out_of_memory) return sr__proto_oom(err);
    return sr__error_set(err, SR_EPROTOCOL, "invalid JSON in %s: %s (at byte %d)", what, je->text,
                         je->position);
}

static int load(const char *text, size_t len, const char *what, json_t **out, sr_error *err)
{
    json_error_t je;

    *out = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    return *out ? SR_OK : load_failed(&je, what, err);
}

int sr__json_read_jansson(const char *text, size_t len, const char *what, sr_value **out,
                          sr_error *err)
{
    json_t *j;
    int rc = load(text, len, what, &j, err);

    *out = NULL;
    if (rc != SR_OK) return rc;
    *out = from_json(j);
    json_decref(j);
    return *out ? SR_OK : sr__proto_oom(err);
}

/* simdjson when it can decide the text, jansson when it cannot (json_fast.h):
 * the same values and the same errors, the common case ten times faster. */
int sr__json_decode_value(const char *text, size_t len, sr_value **out, sr_error *err)
{
    int rc = sr__json_fast_read(text, len, out);

    if (rc == SR_JSON_UNDECIDED) return sr__json_read_jansson(text, len, "value", out, err);
    return rc == SR_OK ? SR_OK : sr__proto_oom(err);
}

/* A record's top-level object: its fields, values built, keys borrowed
 * (from simdjson's parser or jansson's tree, alive until the message is
 * made). The values the message keeps are moved out, the rest freed. When
 * simdjson read it, every value is in the arena, which the message takes
 * over whole. */
#define ENV_STACK 16

/* The fields a hub message may have, looked up by these ids: each record's
 * keys are matched once (env_index), not once per lookup. */
enum {
    K_TYPE,
    K_INVOCATION_ID,
    K_TARGET,
    K_ARGUMENTS,
    K_STREAM_IDS,
    K_HEADERS,
    K_ITEM,
    K_RESULT,
    K_ERROR,
    K_ALLOW_RECONNECT,
    K_SEQUENCE_ID,
    K_COUNT
};
static const char *const key_names[K_COUNT] = {
    "type", "invocationId", "target", "arguments",      "streamIds", "headers",
    "item", "result",       "error",  "allowReconnect", "sequenceId"};

typedef struct envelope {
    sr_json_field *f;
    size_t n;
    sr_json_field *key[K_COUNT]; /* the field of each name, or NULL */
    sr_json_field stack[ENV_STACK];
    json_t *tree;    /* when jansson read it: the keys live here */
    sr_arena *arena; /* when simdjson read it: the values live here */
} envelope;

/* Which of the names above a key is: its length leaves one or two. */
static int key_id(const char *k, size_t len)
{
    int a = -1, b = -1;
    switch (len) {
    case 4:
        a = K_TYPE, b = K_ITEM;
        break;
    case 5:
        a = K_ERROR;
        break;
    case 6:
        a = K_TARGET, b = K_RESULT;
        break;
    case 7:
        a = K_HEADERS;
        break;
    case 9:
        a = K_ARGUMENTS, b = K_STREAM_IDS;
        break;
    case 10:
        a = K_SEQUENCE_ID;
        break;
    case 12:
        a = K_INVOCATION_ID;
        break;
    case 14:
        a = K_ALLOW_RECONNECT;
        break;
    default:
        return -1;
    }
    if (memcmp(k, key_names[a], len) == 0) return a;
    if (b >= 0 && memcmp(k, key_names[b], len) == 0) return b;
    return -1;
}

/* Index the fields by name. Names are unique here: the fast reader leaves a
 * record with a repeated key to jansson, which keeps one of them. */
static void env_index(envelope *env)
{
    size_t i;
    memset(env->key, 0, sizeof env->key);
    for (i = 0; i < env->n; i++) {
        int id = key_id(env->f[i].key, env->f[i].keylen);
        if (id >= 0) env->key[id] = &env->f[i];
    }
}

static void env_free(envelope *env)
{
    size_t i;

    for (i = 0; i < env->n; i++)
        sr_value_free(env->f[i].val);
    if (env->f != env->stack) free(env->f);
    if (env->tree) json_decref(env->tree);
    sr__arena_free(env->arena);
    env->arena = NULL;
    env->n = 0;
}

/* From jansson's tree (owned by env from here on). */
static int env_from_tree(envelope *env, json_t *o, sr_error *err)
{
    const char *key;
    size_t keylen;
    json_t *item;

    env->tree = o;
    env->arena = NULL;
    env->f = env->stack;
    env->n = 0;
    if (!json_is_object(o)) return sr__error_set(err, SR_EPROTOCOL, "message is not a JSON object");
    if (json_object_size(o) > ENV_STACK &&
        !(env->f = malloc(json_object_size(o) * sizeof *env->f))) {
        env->f = env->stack;
        return sr__proto_oom(err);
    }
    json_object_keylen_foreach(o, key, keylen, item)
    {
        sr_json_field *f = &env->f[env->n];
        if (!(f->val = from_json(item))) return sr__proto_oom(err);
        f->key = key;
        f->keylen = keylen;
        env->n++;
    }
    env_index(env);
    return SR_OK;
}

/* What the values of a record of len bytes take in an arena, about: a
 * hub message's envelope and arguments (a node is 32 bytes, a string's
 * text follows its node), in one block for most messages. A call with one
 * number or a completion (about 50 bytes) takes the smallest pooled block. */
#define ARENA_SIZE(len) (2 * (len) + 128)

/* One record's envelope: simdjson when it decides, else jansson, which
 * also says what is wrong with a record that is not a hub message. */
static int env_read(envelope *env, const char *text, size_t len, sr_arena_pool *pool, sr_error *err)
{
    json_t *o;
    int rc;

    env->tree = NULL;
    env->arena = NULL;
    env->f = env->stack;
    env->n = 0;
    if (len <= SR_JSON_FAST_MAX) { /* past it, jansson reads it anyway */
        if (!(env->arena = sr__arena_get(pool, ARENA_SIZE(len)))) return sr__proto_oom(err);
        rc = sr__json_fast_read_fields(text, len, env->stack, ENV_STACK, &env->n, env->arena);
        if (rc == SR_OK) env_index(env);
        if (rc != SR_JSON_UNDECIDED) return rc == SR_OK ? SR_OK : sr__proto_oom(err);
        sr__arena_put(pool, env->arena);
        env->arena = NULL;
    }
    if ((rc = load(text, len, "message", &o, err)) != SR_OK) return rc;
    return env_from_tree(env, o, err);
}

static sr_json_field *env_find(const envelope *env, int id)
{
    sr_json_field *f = env->key[id];
    return f && f->val ? f : NULL;
}

/* A field's value, or NULL when absent. */
static const sr_value *env_get(const envelope *env, int id)
{
    sr_json_field *f = env_find(env, id);
    return f ? f->val : NULL;
}

/* A field's value moved out (the caller owns it), or NULL when absent. */
static sr_value *env_take(envelope *env, int id)
{
    sr_json_field *f = env_find(env, id);
    sr_value *v = f ? f->val : NULL;

    if (f) f->val = NULL;
    return v;
}

/* Optional fields treat JSON null as absent, as the .NET reader does. */
static const sr_value *field(const envelope *env, int id)
{
    const sr_value *f = env_get(env, id);
    return f && sr_value_type(f) != SR_NULL ? f : NULL;
}

static int get_str(const envelope *env, int id, int required, const sr_msg *m, char **out,
                   sr_error *err)
{
    const sr_value *f = field(env, id);
    const char *s;
    size_t len;

    if (!f) {
        if (!required) return SR_OK;
        if (env_get(env, id))
            return sr__error_set(err, SR_EPROTOCOL, "%s message has a null '%s'",
                                 sr__msg_type_name(m->type), key_names[id]);
        return sr__error_set(err, SR_EPROTOCOL, "%s message is missing '%s'",
                             sr__msg_type_name(m->type), key_names[id]);
    }
    if (sr_value_type(f) != SR_STRING)
        return sr__error_set(err, SR_EPROTOCOL, "%s message has a non-string '%s'",
                             sr__msg_type_name(m->type), key_names[id]);
    s = sr_value_get_string(f, &len);
    /* These become C strings; a NUL would silently cut an id or target. */
    if (memchr(s, '\0', len))
        return sr__error_set(err, SR_EPROTOCOL, "%s message has a NUL byte in '%s'",
                             sr__msg_type_name(m->type), key_names[id]);
    if (m->arena) {
        *out = (char *)s; /* the value is NUL-terminated, in the message's arena */
        return SR_OK;
    }
    *out = malloc(len + 1);
    if (!*out) return sr__proto_oom(err);
    memcpy(*out, s, len + 1);
    return SR_OK;
}

/* streamIds (array) or headers (object): strings only; moved out. */
static int get_strings(envelope *env, int id, int object, const sr_msg *m, sr_value **out,
                       sr_error *err)
{
    const sr_value *f = field(env, id);
    size_t i, n;

    if (!f) return SR_OK;
    if (sr_value_type(f) != (object ? SR_MAP : SR_ARRAY)) goto bad;
    n = sr_value_len(f);
    for (i = 0; i < n; i++)
        if (sr_value_type(sr_value_at(f, i)) != SR_STRING) goto bad;
    *out = env_take(env, id);
    return SR_OK;
bad:
    return sr__error_set(
        err, SR_EPROTOCOL, "%s message has an invalid '%s' (expected %s of strings)",
        sr__msg_type_name(m->type), key_names[id], object ? "an object" : "an array");
}

static int read_invocation(envelope *env, sr_msg *m, sr_error *err)
{
    const sr_value *args;
    int rc;

    if ((rc = get_str(env, K_INVOCATION_ID, m->type != SR_MSG_INVOCATION, m, &m->invocation_id,
                      err)) ||
        (rc = get_str(env, K_TARGET, 1, m, &m->target, err)))
        return rc;
    args = env_get(env, K_ARGUMENTS);
    if (!args)
        return sr__error_set(err, SR_EPROTOCOL, "%s message is missing 'arguments'",
                             sr__msg_type_name(m->type));
    if (sr_value_type(args) != SR_ARRAY)
        return sr__error_set(err, SR_EPROTOCOL, "%s message has a non-array 'arguments'",
                             sr__msg_type_name(m->type));
    m->arguments = env_take(env, K_ARGUMENTS);
    return get_strings(env, K_STREAM_IDS, 0, m, &m->stream_ids, err);
}

static int read_body(envelope *env, sr_msg *m, sr_error *err)
{
    const sr_value *f;
    int rc;

    switch (m->type) {
    case SR_MSG_INVOCATION:
    case SR_MSG_STREAM_INVOCATION:
        return read_invocation(env, m, err);
    case SR_MSG_STREAM_ITEM:
        if ((rc = get_str(env, K_INVOCATION_ID, 1, m, &m->invocation_id, err))) return rc;
        if (!(m->item = env_take(env, K_ITEM)))
            return sr__error_set(err, SR_EPROTOCOL, "StreamItem message is missing 'item'");
        return SR_OK;
    case SR_MSG_COMPLETION:
        if ((rc = get_str(env, K_INVOCATION_ID, 1, m, &m->invocation_id, err)) ||
            (rc = get_str(env, K_ERROR, 0, m, &m->error, err)))
            return rc;
        if (!env_get(env, K_RESULT)) return SR_OK;
        if (m->error)
            return sr__error_set(err, SR_EPROTOCOL,
                                 "Completion message has both 'result' and 'error'");
        m->has_result = 1;
        m->result = env_take(env, K_RESULT);
        return SR_OK;
    case SR_MSG_CANCEL_INVOCATION:
        return get_str(env, K_INVOCATION_ID, 1, m, &m->invocation_id, err);
    case SR_MSG_PING:
        return SR_OK;
    case SR_MSG_CLOSE:
        if ((rc = get_str(env, K_ERROR, 0, m, &m->error, err))) return rc;
        f = field(env, K_ALLOW_RECONNECT);
        if (f && sr_value_type(f) != SR_BOOL)
            return sr__error_set(err, SR_EPROTOCOL,
                                 "Close message has a non-boolean 'allowReconnect'");
        m->allow_reconnect = f && sr_value_get_bool(f);
        return SR_OK;
    case SR_MSG_ACK:
    case SR_MSG_SEQUENCE:
        f = env_get(env, K_SEQUENCE_ID);
        if (!f)
            return sr__error_set(err, SR_EPROTOCOL, "%s message is missing 'sequenceId'",
                                 sr__msg_type_name(m->type));
        if (sr_value_type(f) != SR_INT)
            return sr__error_set(err, SR_EPROTOCOL, "%s message has a non-integer 'sequenceId'",
                                 sr__msg_type_name(m->type));
        m->sequence_id = sr_value_get_int(f);
        return SR_OK;
    }
    return sr__error_set(err, SR_EPROTOCOL, "unknown message type %d", (int)m->type);
}

/* One message from its envelope (freed here, whatever happens). */
static int message_from(envelope *env, sr_msg *out, sr_error *err)
{
    const sr_value *t;
    sr_msg m;
    int rc;

    memset(&m, 0, sizeof m);
    /* from here on the message owns the arena, freed with it on a fault */
    m.arena = env->arena;
    env->arena = NULL;
    t = env_get(env, K_TYPE);
    if (!t) {
        rc = sr__error_set(err, SR_EPROTOCOL, "message is missing 'type'");
        goto done;
    }
    if (sr_value_type(t) != SR_INT) {
        rc = sr__error_set(err, SR_EPROTOCOL, "message has a non-integer 'type'");
        goto done;
    }
    if (sr_value_get_int(t) < 1 || sr_value_get_int(t) > 9) {
        rc = sr__error_set(err, SR_EPROTOCOL, "unknown message type %" PRId64, sr_value_get_int(t));
        goto done;
    }
    m.type = (sr_msg_type)sr_value_get_int(t);
    rc = read_body(env, &m, err);
    /* Headers belong to the invocation-type messages (1..5). */
    if (rc == SR_OK && m.type <= SR_MSG_CANCEL_INVOCATION)
        rc = get_strings(env, K_HEADERS, 1, &m, &m.headers, err);
done:
    env_free(env);
    if (rc != SR_OK) {
        sr__msg_clear(&m);
        return rc;
    }
    *out = m;
    return SR_OK;
}

static int json_parse_pooled(const char *data, size_t len, size_t max_size, sr_msg *out,
                             sr_arena_pool *pool, sr_error *err)
{
    long n = sr__rs_find(data, len);
    envelope env;
    int rc;

    /* 0 means no limit; INT_MAX keeps the consumed count representable. */
    if (max_size == 0 || max_size > (size_t)INT_MAX - 1) max_size = (size_t)INT_MAX - 1;
    if (n < 0) {
        if (len > max_size)
            return sr__error_set(err, SR_EPROTOCOL, "message too large (%zu bytes, limit %zu)", len,
                                 max_size);
        return 0;
    }
    if ((size_t)n > max_size)
        return sr__error_set(err, SR_EPROTOCOL, "message too large (%ld bytes, limit %zu)", n,
                             max_size);
    if (n == 0) return sr__error_set(err, SR_EPROTOCOL, "empty message");
    if ((rc = env_read(&env, data, (size_t)n, pool, err)) != SR_OK) {
        env_free(&env);
        return rc;
    }
    rc = message_from(&env, out, err);
    return rc == SR_OK ? (int)n + 1 : rc;
}

static int json_parse(const char *data, size_t len, size_t max_size, sr_msg *out, sr_error *err)
{
    return json_parse_pooled(data, len, max_size, out, NULL, err);
}

/* jansson pulls the record through this: the caller's reader hands it
 * pieces (and frees what it handed over), so a large record is never
 * held whole beside its parse. */
typedef struct stream_src {
    sr_read_fn read;
    void *ud;
} stream_src;

static size_t stream_read(void *buffer, size_t buflen, void *data)
{
    stream_src *src = data;
    return src->read(src->ud, buffer, buflen);
}

static int json_parse_stream(sr_read_fn read, void *ud, sr_msg *out, sr_error *err)
{
    stream_src src;
    json_error_t je;
    envelope env;
    json_t *o;
    int rc;

    src.read = read;
    src.ud = ud;
    o = json_load_callback(stream_read, &src, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!o) return load_failed(&je, "message", err);
    if ((rc = env_from_tree(&env, o, err)) != SR_OK) {
        env_free(&env);
        return rc;
    }
    return message_from(&env, out, err);
}

const sr_protocol sr__json_protocol = {
    "json", 1, 0, json_write, json_parse, json_parse_stream, json_parse_pooled};

/* ============================================================== handshake */

int sr__handshake_write(const char *protocol, int version, sr_buf *out)
{
    size_t start = out->len;
    int rc;

    if (!protocol) return SR_EUSAGE;
    if (PUT_LIT(out, "{\"protocol\":") != 0) {
        rc = -1;
    } else {
        rc = put_str(out, protocol, strlen(protocol));
        if (rc == 0 && (PUT_LIT(out, ",\"version\":") != 0 || put_int(out, version) != 0 ||
                        PUT_LIT(out, "}\x1e") != 0))
            rc = -1;
    }
    if (rc == 0) return SR_OK;
    out->len = start;
    return rc < 0 ? SR_ENOMEM : SR_EUSAGE;
}

int sr__handshake_parse(const char *data, size_t len, sr_error *err)
{
    long n = sr__rs_find(data, len);
    json_error_t je;
    json_t *o, *e;
    int rc;

    if (n < 0) {
        if (len > HANDSHAKE_MAX)
            return sr__error_set(
                err, SR_EPROTOCOL,
                "invalid handshake response: no record separator in the first %u bytes",
                HANDSHAKE_MAX);
        return 0;
    }
    if (n == 0) return sr__error_set(err, SR_EPROTOCOL, "invalid handshake response: empty");
    o = json_loadb(data, (size_t)n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!o) {
        if (json_error_code(&je) == json_error_out_of_memory) return sr__proto_oom(err);
        return sr__error_set(err, SR_EPROTOCOL, "invalid handshake response: %s (at byte %d)",
                             je.text, je.position);
    }
    rc = (int)n + 1;
    if (!json_is_object(o)) {
        rc = sr__error_set(err, SR_EPROTOCOL, "invalid handshake response: not a JSON object");
    } else if (json_object_get(o, "type")) {
        /* A hub message where the handshake answer belongs (as the
         * TypeScript client checks): the peer skipped the handshake. */
        rc = sr__error_set(
            err, SR_EPROTOCOL,
            "invalid handshake response: expected a handshake response, got a hub message");
    } else if ((e = json_object_get(o, "error")) != NULL && !json_is_null(e)) {
        if (json_is_string(e))
            rc = sr__error_set(err, SR_EHANDSHAKE, "%s", json_string_value(e));
        else
            rc = sr__error_set(err, SR_EPROTOCOL,
                               "invalid handshake response: 'error' is not a string");
    }
    json_decref(o);
    return rc;
}
