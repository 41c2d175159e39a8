/* text.c - word tokenizer and sentence splitter. */
#include "core/text.h"
#include "core/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static bool is_word_cp(uint32_t cp)
{
    if (cp < 0x80)
        return isalnum((int)cp) != 0;
    /* General punctuation, symbols and spaces in the BMP that are not letters. */
    if (cp == 0xA0 || (cp >= 0x2000 && cp <= 0x206F) || (cp >= 0x3000 && cp <= 0x303F) ||
        (cp >= 0xA1 && cp <= 0xBF) || cp == 0xD7 || cp == 0xF7 || cp == 0xFEFF || cp == 0xFFFD ||
        (cp >= 0x2190 && cp <= 0x2BFF) || (cp >= 0xFF00 && cp <= 0xFF0F))
        return false;
    return true;
}

static uint32_t fold_cp(uint32_t cp)
{
    if (cp >= 'A' && cp <= 'Z')
        return cp + 32;
    if ((cp >= 0xC0 && cp <= 0xDE && cp != 0xD7))
        return cp + 32;
    if (cp >= 0x100 && cp <= 0x17F && (cp % 2) == 0 && cp != 0x130 && cp != 0x138)
        return cp + 1;
    if (cp >= 0x391 && cp <= 0x3AB && cp != 0x3A2) /* Greek capitals */
        return cp + 32;
    if (cp >= 0x410 && cp <= 0x42F) /* Cyrillic capitals */
        return cp + 32;
    return cp;
}

#define WORD_MAX 64

/* ASCII fast path: 1 for [0-9A-Za-z]. */
static const unsigned char ascii_word[128] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1,
    ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1,
    ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
    ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

int dr_text_words(const char *text, size_t n, dr_word_fn fn, void *user)
{
    char word[WORD_MAX + 4];
    size_t wlen = 0, wstart = 0;
    bool in_word = false;
    size_t i = 0;
    while (i <= n) {
        uint32_t cp = 0;
        size_t k = 1;
        bool word_cp = false;
        if (i < n) {
            unsigned char c = (unsigned char)text[i];
            if (c < 0x80) {
                cp = c;
                word_cp = ascii_word[c] != 0;
            } else {
                k = dr_utf8_decode(text + i, n - i, &cp);
                word_cp = is_word_cp(cp);
            }
        }
        /* apostrophe inside a word: skip it, stay in the word */
        if (in_word && i < n && (cp == '\'' || cp == 0x2019) && i + k < n) {
            uint32_t next;
            dr_utf8_decode(text + i + k, n - i - k, &next);
            if (is_word_cp(next)) {
                i += k;
                continue;
            }
        }
        if (word_cp) {
            if (!in_word) {
                in_word = true;
                wstart = i;
                wlen = 0;
            }
            if (cp < 0x80) {
                if (wlen < WORD_MAX)
                    word[wlen++] = (char)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
            } else {
                char enc[4];
                size_t e = dr_utf8_encode(fold_cp(cp), enc);
                if (wlen + e <= WORD_MAX) {
                    memcpy(word + wlen, enc, e);
                    wlen += e;
                }
            }
        } else if (in_word) {
            in_word = false;
            int rc = fn(user, word, wlen, wstart, i);
            if (rc != 0)
                return rc;
        }
        i += k;
    }
    return 0;
}

static int count_cb(void *user, const char *w, size_t len, size_t s, size_t e)
{
    (void)w;
    (void)len;
    (void)s;
    (void)e;
    (*(size_t *)user)++;
    return 0;
}

size_t dr_text_word_count(const char *text, size_t n)
{
    size_t c = 0;
    dr_text_words(text, n, count_cb, &c);
    return c;
}

static const char *const stopwords[] = {
    "a",       "about", "above", "after", "again",   "against", "all",   "am",    "an",
    "and",     "any",   "are",   "as",    "at",      "be",      "because", "been", "before",
    "being",   "below", "between", "both", "but",    "by",      "can",   "could", "did",
    "do",      "does",  "doing", "down",  "during",  "each",    "few",   "for",   "from",
    "further", "had",   "has",   "have",  "having",  "he",      "her",   "here",  "hers",
    "herself", "him",   "himself", "his", "how",     "i",       "if",    "in",    "into",
    "is",      "it",    "its",   "itself", "just",   "me",      "more",  "most",  "my",
    "myself",  "no",    "nor",   "not",   "now",     "of",      "off",   "on",    "once",
    "only",    "or",    "other", "our",   "ours",    "ourselves", "out", "over",  "own",
    "same",    "she",   "should", "so",   "some",    "such",    "than",  "that",  "the",
    "their",   "theirs", "them", "themselves", "then", "there", "these", "they",  "this",
    "those",   "through", "to",  "too",   "under",   "until",   "up",    "very",  "was",
    "we",      "were",  "what",  "when",  "where",   "which",   "while", "who",   "whom",
    "why",     "will",  "with",  "would", "you",     "your",    "yours", "yourself",
    "yourselves",
};

bool dr_text_is_stopword(const char *word)
{
    size_t lo = 0, hi = DR_ARRAY_LEN(stopwords);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(word, stopwords[mid]);
        if (c == 0)
            return true;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}

static bool is_abbrev_before(const char *text, size_t dot)
{
    /* The token ending at `dot` (exclusive of the dot). */
    size_t s = dot;
    while (s > 0 && !isspace((unsigned char)text[s - 1]) && text[s - 1] != '(')
        s--;
    size_t len = dot - s;
    if (len == 1 && isupper((unsigned char)text[s]))
        return true; /* initial: "J. Smith" */
    static const char *const abbr[] = {"e.g", "i.e", "etc", "vs", "Dr", "Mr", "Mrs", "Ms",
                                       "Prof", "St", "Jr", "Sr", "No", "Fig", "al", "approx",
                                       "cf", "Inc", "Ltd", "Co", "U.S", "Vol", "pp"};
    for (size_t i = 0; i < DR_ARRAY_LEN(abbr); i++)
        if (strlen(abbr[i]) == len && strncmp(text + s, abbr[i], len) == 0)
            return true;
    return false;
}

static int emit_sentence(const char *text, size_t s, size_t e, dr_sentence_fn fn, void *user)
{
    while (s < e && isspace((unsigned char)text[s]))
        s++;
    while (e > s && isspace((unsigned char)text[e - 1]))
        e--;
    if (e > s)
        return fn(user, s, e);
    return 0;
}

int dr_text_sentences(const char *text, size_t n, dr_sentence_fn fn, void *user)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        size_t cut = 0;
        if (c == '\n' && i + 1 < n && text[i + 1] == '\n') {
            cut = i;
        } else if (c == '.' || c == '!' || c == '?') {
            size_t j = i + 1;
            while (j < n && (text[j] == '"' || text[j] == '\'' || text[j] == ')'))
                j++;
            if (j < n && isspace((unsigned char)text[j])) {
                size_t k = j;
                while (k < n && isspace((unsigned char)text[k]))
                    k++;
                bool next_ok = k >= n || isupper((unsigned char)text[k]) ||
                               isdigit((unsigned char)text[k]) || text[k] == '"' ||
                               text[k] == '(' || (unsigned char)text[k] >= 0x80;
                if (next_ok && !(c == '.' && is_abbrev_before(text, i)))
                    cut = j;
            }
        }
        if (cut) {
            int rc = emit_sentence(text, start, cut, fn, user);
            if (rc != 0)
                return rc;
            start = cut;
            i = cut;
        }
    }
    return emit_sentence(text, start, n, fn, user);
}

/* ---- SQuAD answer normalisation ---------------------------------------------- */

/* Python's string.punctuation. */
static bool squad_is_ascii_punct(unsigned char c)
{
    return c != 0 && strchr("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", c) != NULL;
}

static bool squad_is_ascii_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static uint32_t squad_lower_cp(uint32_t cp)
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

static bool squad_is_article(const char *w, size_t len)
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
    char *low = dr_malloc(n + 1);
    char *out = dr_malloc(n + 1);
    if (low == NULL || out == NULL) {
        dr_free(low);
        dr_free(out);
        return NULL;
    }
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x80) {
            if (!squad_is_ascii_punct(c))
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
            size_t e = dr_utf8_encode(squad_lower_cp(cp), enc);
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
        while (i < m && squad_is_ascii_space((unsigned char)low[i]))
            i++;
        size_t s = i;
        while (i < m && !squad_is_ascii_space((unsigned char)low[i]))
            i++;
        if (i == s || squad_is_article(low + s, i - s))
            continue;
        if (o > 0)
            out[o++] = ' ';
        memcpy(out + o, low + s, i - s);
        o += i - s;
    }
    out[o] = '\0';
    dr_free(low);
    return out;
}
