/*
 * jsonw.c - cJSON-compatible string and number output straight into a
 * dr_buf (see jsonw.h).
 */
#include "server/jsonw.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* 1 for the bytes cJSON escapes: below 0x20, '"' and '\\'. */
static const unsigned char needs_escape[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
};

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/*
 * True when one of the eight bytes of w needs escaping. The classic
 * word-at-a-time tests (exact as yes/no answers): a byte below 0x20 is one
 * for which w - 0x20 borrows while its top bit was clear; '"' and '\\'
 * are zero bytes of w xor the repeated character.
 */
static inline bool word_needs_escape(uint64_t w)
{
    uint64_t low = (w - 0x20 * ONES) & ~w & HIGHS;
    uint64_t q = w ^ (0x22 * ONES), bs = w ^ (0x5c * ONES);
    uint64_t zq = (q - ONES) & ~q & HIGHS, zb = (bs - ONES) & ~bs & HIGHS;
    return (low | zq | zb) != 0;
}

/* The length of the prefix of s[0..n) that needs no escaping. */
static size_t plain_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;
#ifdef __SSE2__
    /* Sixteen bytes at a time: x <= 0x1f (unsigned) is max(x, 0x1f) ==
     * 0x1f; the two characters by equality. */
    const __m128i c1f = _mm_set1_epi8(0x1f), cq = _mm_set1_epi8('"'), cb = _mm_set1_epi8('\\');
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(_mm_max_epu8(v, c1f), c1f),
                                   _mm_or_si128(_mm_cmpeq_epi8(v, cq), _mm_cmpeq_epi8(v, cb)));
        int mask = _mm_movemask_epi8(hit);
        if (mask != 0)
            return i + (size_t)__builtin_ctz((unsigned)mask);
    }
#endif
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (word_needs_escape(w))
            break;
    }
    while (i < n && !needs_escape[s[i]])
        i++;
    return i;
}

/*
 * Reserves room for the whole literal when nothing needs escaping, then
 * copies runs of plain bytes (found 16 or 8 bytes at a time) with one memcpy
 * each, so typical text costs a strlen, a scan and a copy.
 */
int dr_jsonw_str(dr_buf *b, const char *s)
{
    return dr_jsonw_strn(b, s ? s : "", s ? strlen(s) : 0);
}

int dr_jsonw_strn(dr_buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    int rc = dr_buf_reserve(b, n + 2);
    if (rc == DYNRAG_OK)
        rc = dr_buf_putc(b, '"');
    while (rc == DYNRAG_OK && n > 0) {
        size_t run = plain_prefix(p, n);
        if (run > 0)
            rc = dr_buf_append(b, p, run);
        p += run;
        n -= run;
        if (rc != DYNRAG_OK || n == 0)
            break;
        char esc[8];
        size_t en = 2;
        esc[0] = '\\';
        switch (*p) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default: en = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)*p); break;
        }
        rc = dr_buf_append(b, esc, en);
        p++;
        n--;
    }
    if (rc == DYNRAG_OK)
        rc = dr_buf_putc(b, '"');
    return rc;
}

static const uint64_t pow10_u64[20] = {1ull,
                                       10ull,
                                       100ull,
                                       1000ull,
                                       10000ull,
                                       100000ull,
                                       1000000ull,
                                       10000000ull,
                                       100000000ull,
                                       1000000000ull,
                                       10000000000ull,
                                       100000000000ull,
                                       1000000000000ull,
                                       10000000000000ull,
                                       100000000000000ull,
                                       1000000000000000ull,
                                       10000000000000000ull,
                                       100000000000000000ull,
                                       1000000000000000000ull,
                                       10000000000000000000ull};

/*
 * The first n (<= 17) significant decimal digits of the positive d,
 * correctly rounded (to nearest, ties to even, as glibc's printf rounds):
 * *m in [10^(n-1), 10^n) and *e10 the decimal exponent of the first digit.
 * Exact: d = f * 2^-s with f < 2^53, so d * 10^p = f * 10^p / 2^s is an
 * integer product (under 2^117) shifted right with its remainder kept.
 * Handles 1e-3 <= d < 1e15 (false otherwise), where p = n - 1 - e10 stays
 * within 0..19 and s within 1..62.
 */
static bool decimal_digits(double d, int n, uint64_t *m, int *e10)
{
    if (!(d >= 1e-3 && d < 1e15))
        return false;
    uint64_t bits;
    memcpy(&bits, &d, sizeof(bits));
    int be = (int)(bits >> 52); /* normal: d >= 1e-3, positive */
    uint64_t f = (bits & ((1ull << 52) - 1)) | (1ull << 52);
    int s = 1075 - be; /* d = f * 2^-s */
    /* log10(d) lies in [x * log10(2), (x + 1) * log10(2)): the estimate
     * floor(x * 78913 / 2^18) is the exponent or one below, fixed by the
     * loop. */
    int x = be - 1023, e = x >= 0 ? (x * 78913) >> 18 : -((-x * 78913 + 262143) >> 18);
    for (int tries = 0; tries < 3; tries++) {
        int p = n - 1 - e;
        if (p < 0 || p > 19 || s < 1 || s > 127)
            return false;
        unsigned __int128 prod = (unsigned __int128)f * pow10_u64[p];
        unsigned __int128 q = prod >> s;
        unsigned __int128 rem = prod - (q << s);
        unsigned __int128 half = (unsigned __int128)1 << (s - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        if (q >= pow10_u64[n]) {
            e++;
            continue;
        }
        if (q < pow10_u64[n - 1]) {
            e--;
            continue;
        }
        *m = (uint64_t)q;
        *e10 = e;
        return true;
    }
    return false;
}

/*
 * Writes what "%1.<n>g" prints for the digits m (n of them, first at
 * exponent e10, -4 <= e10 < n): fixed notation, trailing zeros dropped.
 */
static int put_fixed(dr_buf *b, bool neg, uint64_t m, int n, int e10)
{
    char dig[20], out[48];
    for (int i = n - 1; i >= 0; i--) {
        dig[i] = (char)('0' + m % 10);
        m /= 10;
    }
    int nd = n;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    size_t o = 0;
    if (neg)
        out[o++] = '-';
    if (e10 >= 0) {
        for (int i = 0; i <= e10; i++)
            out[o++] = i < nd ? dig[i] : '0';
        if (nd > e10 + 1) {
            out[o++] = '.';
            for (int i = e10 + 1; i < nd; i++)
                out[o++] = dig[i];
        }
    } else {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -e10 - 1; i++)
            out[o++] = '0';
        for (int i = 0; i < nd; i++)
            out[o++] = dig[i];
    }
    return dr_buf_append(b, out, o);
}

/*
 * cJSON 1.7.15's print_number() ("%1.15g", or "%1.17g" when that does not
 * read back within DBL_EPSILON) with strtod() in place of its
 * sscanf("%lg") check (same value, a fraction of the cost). Whole numbers
 * below 1e15 (ranks, ids, k), which "%1.15g" prints as plain digits, never
 * reach printf, and neither do numbers in [1e-3, 1e15) (scores): their
 * digits come from decimal_digits(), and the read-back of 15 digits m is
 * m / 10^p, one correctly rounded division of two exact doubles, which is
 * what strtod() returns for the same digits.
 */
int dr_jsonw_num(dr_buf *b, double d)
{
    char tmp[32];
    if (isnan(d) || isinf(d))
        return dr_buf_append(b, "null", 4);
    if (d > -1e15 && d < 1e15 && d == (double)(long long)d) {
        char *e = tmp + sizeof(tmp), *q = e;
        long long v = (long long)d;
        unsigned long long u = v < 0 ? (unsigned long long)(-v) : (unsigned long long)v;
        do {
            *--q = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (signbit(d))
            *--q = '-'; /* includes -0, which "%g" prints as "-0" */
        return dr_buf_append(b, q, (size_t)(e - q));
    }
    double a = fabs(d);
    uint64_t m15, m17;
    int e15, e17;
    if (decimal_digits(a, 15, &m15, &e15)) {
        double back = (double)m15 / (double)pow10_u64[14 - e15];
        double mx = back > a ? back : a;
        if (fabs(back - a) <= mx * DBL_EPSILON)
            return put_fixed(b, d < 0, m15, 15, e15);
        if (decimal_digits(a, 17, &m17, &e17))
            return put_fixed(b, d < 0, m17, 17, e17);
    }
    int n = snprintf(tmp, sizeof(tmp), "%1.15g", d);
    double back = strtod(tmp, NULL);
    double mx = fabs(back) > fabs(d) ? fabs(back) : fabs(d);
    if (!(fabs(back - d) <= mx * DBL_EPSILON))
        n = snprintf(tmp, sizeof(tmp), "%1.17g", d);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return DYNRAG_ERR_INVALID;
    return dr_buf_append(b, tmp, (size_t)n);
}
