/* normalize.c - SQuAD answer normalisation (lower, punctuation, articles, spaces). */
#include "router/normalize.h"

#include "core/util.h"

#include <stdlib.h>
#include <string.h>

/* Python's string.punctuation. */
static bool is_ascii_punct(unsigned char c)
{
    return c != 0 && strchr("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", c) != NULL;
}

static bool is_ascii_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static uint32_t lower_cp(uint32_t cp)
{
    if (cp >= 'A' && cp <= 'Z')
        return cp + 32;
    if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7)
        return cp + 32;
    if (cp >= 0x100 && cp <= 0x17F && cp % 2 == 0 && cp != 0x130 && cp != 0x138)
        return cp + 1;
    if (cp >= 0x391 && cp <= 0x3AB && cp != 0x3A2)
        return cp + 32;
    if (cp >= 0x410 && cp <= 0x42F)
        return cp + 32;
    return cp;
}

static bool is_article(const char *w, size_t len)
{
    return (len == 1 && w[0] == 'a') || (len == 2 && memcmp(w, "an", 2) == 0) ||
           (len == 3 && memcmp(w, "the", 3) == 0);
}

char *dr_squad_normalize(const char *text)
{
    if (text == NULL)
        text = "";
    size_t n = strlen(text);
    /* Pass 1: lower-case and drop punctuation. Lower-casing never grows a
     * code point's encoding in the ranges handled, so n + 1 bytes suffice. */
    char *low = malloc(n + 1);
    char *out = malloc(n + 1);
    if (low == NULL || out == NULL) {
        free(low);
        free(out);
        return NULL;
    }
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x80) {
            if (!is_ascii_punct(c))
                low[m++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            i++;
            continue;
        }
        uint32_t cp = 0;
        size_t k = dr_utf8_decode(text + i, n - i, &cp);
        if (cp == 0xFFFD && !(k == 3 && (unsigned char)text[i] == 0xEF)) {
            low[m++] = text[i]; /* invalid byte: keep it */
        } else {
            char enc[4];
            size_t e = dr_utf8_encode(lower_cp(cp), enc);
            if (e > k) { /* cannot happen for the ranges above; keep the original */
                memcpy(enc, text + i, k);
                e = k;
            }
            memcpy(low + m, enc, e);
            m += e;
        }
        i += k;
    }
    /* Pass 2: split on white space, drop articles, join with one space. */
    size_t o = 0;
    for (size_t i = 0; i < m;) {
        while (i < m && is_ascii_space((unsigned char)low[i]))
            i++;
        size_t s = i;
        while (i < m && !is_ascii_space((unsigned char)low[i]))
            i++;
        if (i == s || is_article(low + s, i - s))
            continue;
        if (o > 0)
            out[o++] = ' ';
        memcpy(out + o, low + s, i - s);
        o += i - s;
    }
    out[o] = '\0';
    free(low);
    return out;
}
