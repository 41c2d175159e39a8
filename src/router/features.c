/*
 * features.c - cheap, deterministic query features for routers.
 *
 * Words come from core/text.h (case-folded). Capitalisation and quotes are
 * read from the raw bytes at each word's span. One pass over the words plus
 * one pass over the bytes for quotes and possessives: O(length), no
 * allocation, any UTF-8 (invalid bytes count as U+FFFD).
 */
#include "core/text.h"
#include "core/util.h"
#include "router/router.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#define MAX_QUOTES 32

static const char *const question_words[] = {"who",   "what", "when", "where", "which",
                                             "why",   "how",  "whose", "whom"};

static const char *const comparison_words[] = {
    "than",    "compare", "compared", "comparison", "versus",  "vs",     "both",
    "same",    "older",   "younger",  "larger",     "bigger",  "smaller", "taller",
    "shorter", "longer",  "higher",   "lower",      "earlier", "faster", "slower",
    "differ",  "difference", "different", "better", "worse",   "either", "neither"};

static const char *const conjunction_words[] = {"and", "or", "also", "nor", "but"};

typedef struct feat_state {
    const char *text;
    size_t n;
    dr_query_features *f;
    size_t quote_start[MAX_QUOTES], quote_end[MAX_QUOTES];
    size_t n_quotes;
    bool in_cap_span;     /* the previous word was a counted capitalised word */
    size_t prev_end;      /* end of the previous word */
    bool have_prev;
    char prev[72];        /* previous word (folded) */
    char prev2[72];       /* the one before */
} feat_state;

static bool word_in(const char *w, size_t len, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(list[i]) == len && memcmp(list[i], w, len) == 0)
            return true;
    return false;
}

static bool is_upper_cp(uint32_t cp)
{
    return (cp >= 'A' && cp <= 'Z') || (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) ||
           (cp >= 0x100 && cp <= 0x17F && cp % 2 == 0 && cp != 0x138) ||
           (cp >= 0x391 && cp <= 0x3AB && cp != 0x3A2) || (cp >= 0x410 && cp <= 0x42F);
}

/* True when the word at byte `start` begins a sentence: nothing but spaces
 * and opening brackets/quotes before it, back to the start or to . ! ? */
static bool at_sentence_start(const char *t, size_t start)
{
    size_t i = start;
    while (i > 0) {
        unsigned char c = (unsigned char)t[i - 1];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(' || c == '"' ||
            c == '\'')
            i--;
        else
            return c == '.' || c == '!' || c == '?' || c == ':';
    }
    return true;
}

static bool in_quote(const feat_state *s, size_t pos)
{
    for (size_t i = 0; i < s->n_quotes; i++)
        if (pos >= s->quote_start[i] && pos < s->quote_end[i])
            return true;
    return false;
}

static void store_word(char *dst, const char *w, size_t len)
{
    if (len > 64)
        len = 64;
    memcpy(dst, w, len);
    dst[len] = '\0';
}

static int feat_word(void *user, const char *w, size_t len, size_t start, size_t end)
{
    feat_state *s = user;
    dr_query_features *f = s->f;
    if (f->n_words < INT_MAX)
        f->n_words++;

    if (word_in(w, len, question_words, DR_ARRAY_LEN(question_words))) {
        f->n_question_words++;
        if (f->first_qword[0] == '\0')
            memcpy(f->first_qword, w, len); /* len <= 5 */
        else
            f->has_nested = true; /* a second question word: a relative clause */
        if (len == 5 && memcmp(w, "whose", 5) == 0)
            f->has_nested = true;
    }
    if (word_in(w, len, comparison_words, DR_ARRAY_LEN(comparison_words)))
        f->has_comparison = true;
    if (word_in(w, len, conjunction_words, DR_ARRAY_LEN(conjunction_words)))
        f->has_conjunction = true;
    if (len == 4 && memcmp(w, "that", 4) == 0)
        f->has_nested = true;
    if (len == 3 && memcmp(w, "the", 3) == 0 && strcmp(s->prev, "of") == 0)
        f->has_nested = true;
    if (len == 2 && memcmp(w, "as", 2) == 0 && strcmp(s->prev, "well") == 0 &&
        strcmp(s->prev2, "as") == 0)
        f->has_conjunction = true;

    /* Entities: numbers, and runs of capitalised words not at a sentence
     * start (quoted spans were counted whole). */
    bool counted = false;
    if (!in_quote(s, start)) {
        uint32_t cp = 0;
        dr_utf8_decode(s->text + start, s->n - start, &cp);
        if (cp >= '0' && cp <= '9') {
            if (!s->in_cap_span)
                f->n_entities++;
            counted = true;
        } else if (is_upper_cp(cp) && !at_sentence_start(s->text, start)) {
            /* a run continues across spaces only */
            bool joined = s->in_cap_span && s->have_prev;
            for (size_t i = s->prev_end; joined && i < start; i++)
                if (s->text[i] != ' ')
                    joined = false;
            if (!joined)
                f->n_entities++;
            counted = true;
        }
    }
    s->in_cap_span = counted;
    s->prev_end = end;
    s->have_prev = true;
    memcpy(s->prev2, s->prev, sizeof s->prev);
    store_word(s->prev, w, len);
    return 0;
}

/* Finds "..." and “...” spans (non-empty, closed) and possessive 's. */
static void scan_bytes(feat_state *s)
{
    const char *t = s->text;
    size_t n = s->n;
    size_t open = SIZE_MAX;
    uint32_t open_cp = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t cp = 0;
        size_t k = dr_utf8_decode(t + i, n - i, &cp);
        if (cp == '"' || cp == 0x201C || cp == 0x201D) {
            if (open == SIZE_MAX && cp != 0x201D) {
                open = i + k;
                open_cp = cp;
            } else if (open != SIZE_MAX && (open_cp == '"') == (cp == '"')) {
                if (i > open && s->n_quotes < MAX_QUOTES) {
                    s->quote_start[s->n_quotes] = open;
                    s->quote_end[s->n_quotes] = i;
                    s->n_quotes++;
                    s->f->n_entities++;
                }
                open = SIZE_MAX;
            }
        } else if ((cp == '\'' || cp == 0x2019) && i > 0 && i + k < n &&
                   (t[i + k] == 's' || t[i + k] == 'S') &&
                   (i + k + 1 == n || !isalnum((unsigned char)t[i + k + 1]))) {
            unsigned char before = (unsigned char)t[i - 1];
            if (before >= 0x80 || isalnum(before))
                s->f->has_nested = true;
        }
        if (s->f->n_chars < INT_MAX)
            s->f->n_chars++;
        i += k;
    }
}

/*
 * Fills *f from query (NULL counts as ""). Deterministic; never fails. The
 * numeric vector is: 1, log(1 + words), entities, question words,
 * comparison, conjunction, nested, min(chars / 100, 100).
 */
void dr_query_features_compute(const char *query, dr_query_features *f)
{
    memset(f, 0, sizeof *f);
    feat_state s;
    memset(&s, 0, sizeof s);
    s.text = query != NULL ? query : "";
    s.n = strlen(s.text);
    s.f = f;
    scan_bytes(&s);
    dr_text_words(s.text, s.n, feat_word, &s);
    f->vec[0] = 1.0;
    f->vec[1] = log1p((double)f->n_words);
    f->vec[2] = (double)f->n_entities;
    f->vec[3] = (double)f->n_question_words;
    f->vec[4] = f->has_comparison ? 1.0 : 0.0;
    f->vec[5] = f->has_conjunction ? 1.0 : 0.0;
    f->vec[6] = f->has_nested ? 1.0 : 0.0;
    f->vec[7] = DR_MIN((double)f->n_chars / 100.0, 100.0);
}
