/*
 * jsonw.c - cJSON-compatible string and number output straight into a
 * dr_buf (see jsonw.h).
 */
#include "server/jsonw.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 for the bytes cJSON escapes: below 0x20, '"' and '\\'. */
static const unsigned char needs_escape[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
};

/*
 * Copies runs of bytes that need no escaping with one append each, so the
 * cost is one scan and one memcpy for typical text.
 */
int dr_jsonw_str(dr_buf *b, const char *s)
{
    int rc = dr_buf_putc(b, '"');
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (rc == DYNRAG_OK && *p) {
        const unsigned char *run = p;
        while (*p && !needs_escape[*p])
            p++;
        if (p > run)
            rc = dr_buf_append(b, run, (size_t)(p - run));
        if (rc != DYNRAG_OK || *p == '\0')
            break;
        char esc[8];
        size_t n = 2;
        esc[0] = '\\';
        switch (*p) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default: n = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)*p); break;
        }
        rc = dr_buf_append(b, esc, n);
        p++;
    }
    if (rc == DYNRAG_OK)
        rc = dr_buf_putc(b, '"');
    return rc;
}

/*
 * cJSON 1.7.15's print_number() ("%1.15g", or "%1.17g" when that does not
 * read back within DBL_EPSILON) with strtod() in place of its
 * sscanf("%lg") check (same value, a fraction of the cost). Whole numbers
 * below 1e15 (ranks, ids, k), which "%1.15g" prints as plain digits, never
 * reach printf.
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
    int n = snprintf(tmp, sizeof(tmp), "%1.15g", d);
    double back = strtod(tmp, NULL);
    double mx = fabs(back) > fabs(d) ? fabs(back) : fabs(d);
    if (!(fabs(back - d) <= mx * DBL_EPSILON))
        n = snprintf(tmp, sizeof(tmp), "%1.17g", d);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return DYNRAG_ERR_INVALID;
    return dr_buf_append(b, tmp, (size_t)n);
}
