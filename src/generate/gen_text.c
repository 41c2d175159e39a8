/* gen_text.c - helpers shared by the generation modules. */
#include "generate/gen_text.h"

#include "core/text.h"

#include <string.h>

int dr_gen_put_flat(dr_buf *b, const char *s, size_t n)
{
    size_t i = 0;
    bool space = b->len == 0 || b->data[b->len - 1] == ' ' || b->data[b->len - 1] == '\n';
    while (i < n) {
        uint32_t cp = 0;
        size_t k = dr_utf8_decode(s + i, n - i, &cp);
        /* invalid bytes decode as U+FFFD, which is written back encoded */
        bool ws = cp < 0x20 || cp == 0x7F || cp == ' ' || cp == 0x85 || cp == 0xA0 ||
                  cp == 0x2028 || cp == 0x2029 || (cp >= 0x80 && cp < 0xA0);
        int rc;
        if (ws) {
            if (!space) {
                rc = dr_buf_putc(b, ' ');
                if (rc != DYNRAG_OK)
                    return rc;
                space = true;
            }
        } else {
            char enc[4];
            size_t e = dr_utf8_encode(cp, enc);
            rc = dr_buf_append(b, enc, e);
            if (rc != DYNRAG_OK)
                return rc;
            space = false;
        }
        i += k;
    }
    return DYNRAG_OK;
}

void dr_gen_rstrip(dr_buf *b)
{
    while (b->len > 0 && b->data[b->len - 1] == ' ')
        b->data[--b->len] = '\0';
}

static bool ends_with(const char *w, size_t len, const char *suf)
{
    size_t n = strlen(suf);
    return len >= n && memcmp(w + len - n, suf, n) == 0;
}

void dr_gen_stem(char *w, size_t *len)
{
    size_t n = *len;
    /* Only plain ASCII words: anything else is left as is. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)w[i] >= 0x80)
            return;
    if (n > 4 && ends_with(w, n, "ies")) {
        w[n - 3] = 'y';
        n -= 2;
    } else if (n > 5 && ends_with(w, n, "ing")) {
        n -= 3;
    } else if (n > 4 && ends_with(w, n, "ed") && !ends_with(w, n, "eed")) {
        n -= 2;
    } else if (n > 3 && w[n - 1] == 's' && !ends_with(w, n, "ss") && !ends_with(w, n, "us") &&
               !ends_with(w, n, "is")) {
        n -= 1;
    }
    *len = n;
}

bool dr_gen_content_hash(const char *word, size_t len, uint64_t *hash)
{
    char w[72];
    size_t n = len < 64 ? len : 64;
    memcpy(w, word, n);
    w[n] = '\0';
    if (dr_text_is_stopword(w))
        return false;
    dr_gen_stem(w, &n);
    *hash = dr_hash64(w, n, 0);
    return true;
}

bool dr_gen_is_upper_at(const char *s, size_t n)
{
    if (n == 0)
        return false;
    uint32_t cp = 0;
    dr_utf8_decode(s, n, &cp);
    if (cp >= 'A' && cp <= 'Z')
        return true;
    if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7)
        return true;
    if (cp >= 0x100 && cp <= 0x17F && cp % 2 == 0 && cp != 0x138)
        return true;
    return (cp >= 0x391 && cp <= 0x3AB) || (cp >= 0x410 && cp <= 0x42F);
}

bool dr_gen_is_month(const char *w, size_t len)
{
    static const char *const months[] = {"january", "february", "march",     "april",
                                         "may",     "june",     "july",      "august",
                                         "september", "october", "november", "december"};
    for (size_t i = 0; i < DR_ARRAY_LEN(months); i++)
        if (strlen(months[i]) == len && memcmp(months[i], w, len) == 0)
            return true;
    return false;
}
