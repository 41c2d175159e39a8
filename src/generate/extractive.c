/* extractive.c - the embedded, offline answerer (sentence selection). */
#include "generate/extractive.h"

#include "core/text.h"
#include "core/util.h"
#include "generate/gen_text.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QWORDS_MAX 128      /* question words looked at */
#define QTERMS_MAX 64       /* distinct content terms (one bit each) */
#define QBIGRAMS_MAX 64     /* distinct question bigrams (one bit each) */
#define SENTENCES_MAX 1000000 /* sentences scored per call; the rest are ignored */
#define ANSWER_SENTENCE_BYTES 1000

/* Weights of the support score's parts (normalised over the parts that
 * apply to the question). */
#define W_COVERAGE 0.75
#define W_BIGRAM 0.15
#define W_TYPE 0.10
#define TITLE_WEIGHT 0.8
#define RANK_PENALTY 0.15 /* support *= 1 - RANK_PENALTY * r / (r + 1) */
#define NO_NEW_WORD 0.5   /* support *= this when the sentence adds nothing */
#define ACTION_CREDIT 0.5 /* share of the goal verb's weight an instruction earns */
#define W_HOWTO 0.25      /* how-to questions: weight of the instruction cue */
#define ASKS 0.5          /* support *= this when the sentence is itself a question */
#define ACRONYMS_MAX 32
#define CONTINUATION_BYTES 400 /* "...the following pragma:" + a block up to this */
#define LONG_WORDS 60 /* longer "sentences" (lists, keyword indexes, tables) are
                         discounted: support *= LONG_WORDS / words, since
                         their length alone buys coverage */

typedef enum qtype { QT_NONE, QT_PERSON, QT_TIME, QT_NUMBER, QT_PLACE, QT_HOWTO } qtype;

typedef struct acronym {
    char s[8];     /* initials, lower case, NUL-terminated */
    uint64_t mask; /* the question terms they stand for */
} acronym;

typedef struct keyed {
    uint64_t hash;
    int bit;
} keyed;

typedef struct question {
    keyed terms[QTERMS_MAX]; /* sorted by hash */
    size_t n_terms;
    keyed bigrams[QBIGRAMS_MAX];
    size_t n_bigrams;
    qtype type;
    uint64_t action; /* how-to: the goal verb ("enable" in "how do I enable X") */
    acronym acr[ACRONYMS_MAX];
    size_t n_acr;
} question;

typedef struct sentence {
    size_t p;            /* passage index */
    size_t start, end;   /* byte span in the passage text */
    uint64_t terms;      /* question terms present */
    uint64_t bigrams;    /* question bigrams present */
    size_t novel;        /* content words not in the question */
    size_t n_words;      /* words in the sentence */
    bool cue;            /* answer-type cue present */
    bool instr;          /* an instruction verb in imperative position */
    bool code;           /* a code-like token (x=y, f(), .cmd, snake_case, SQL) */
    bool asks;           /* ends with '?' */
    bool colon;          /* ends with ':' */
    bool lead;           /* first sentence of its passage */
    size_t out_end;      /* end of the text to output (> end: with its block) */
    double support;
} sentence;

typedef struct scan {
    const question *q;
    const char *text; /* the passage (or title) being scanned */
    size_t base;      /* offset of the current sentence in text */
    sentence cur;
    uint64_t prev_hash;
    bool have_prev;
    size_t n_words;     /* words seen in the current sentence */
    bool pending_instr; /* the last word may be an imperative verb */
    size_t prev_end;    /* end of the previous word (sentence-relative) */
    char prev_w[2][16]; /* the previous two words (prev_w[0] the last) */
    sentence *sents;
    size_t n_sents, cap_sents;
    bool full;
    int status;
} scan;

/* ---- question analysis --------------------------------------------------- */

typedef struct qword {
    char w[72];
    size_t len;
    uint64_t hash; /* of the stem */
    bool stop;
} qword;

typedef struct qcollect {
    qword words[QWORDS_MAX];
    size_t n;
} qcollect;

static uint64_t pair_hash(uint64_t a, uint64_t b)
{
    uint64_t v[2] = {a, b};
    return dr_hash64(v, sizeof(v), 0x5bd1e995u);
}

static int cmp_keyed(const void *a, const void *b)
{
    uint64_t x = ((const keyed *)a)->hash, y = ((const keyed *)b)->hash;
    return x < y ? -1 : x > y;
}

static int find_keyed(const keyed *k, size_t n, uint64_t hash)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (k[mid].hash == hash)
            return k[mid].bit;
        if (k[mid].hash < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static uint64_t stem_hash(const char *word, size_t len, char *out, size_t *out_len)
{
    char w[72];
    size_t n = len < 64 ? len : 64;
    memcpy(w, word, n);
    dr_gen_stem(w, &n);
    if (out != NULL) {
        memcpy(out, w, n);
        *out_len = n;
    }
    return dr_hash64(w, n, 0);
}

static int qword_cb(void *user, const char *word, size_t len, size_t s, size_t e)
{
    (void)s;
    (void)e;
    qcollect *c = user;
    if (c->n >= QWORDS_MAX)
        return 1;
    qword *q = &c->words[c->n++];
    q->len = len < 64 ? len : 64;
    memcpy(q->w, word, q->len);
    q->w[q->len] = '\0';
    q->stop = dr_text_is_stopword(q->w);
    q->hash = stem_hash(q->w, q->len, NULL, NULL);
    return 0;
}

static bool word_is(const qword *w, const char *s)
{
    return strcmp(w->w, s) == 0;
}

static bool word_in(const qword *w, const char *const *list)
{
    for (size_t i = 0; list[i] != NULL; i++)
        if (word_is(w, list[i]))
            return true;
    return false;
}

/* The expected answer type from the first wh-cue in the question. */
static qtype question_type(const qcollect *c)
{
    static const char *const num_after_how[] = {"many", "much", "long", "old", "far", "tall",
                                                "big", "large", "high", "often", NULL};
    static const char *const time_nouns[] = {"year", "century", "decade", "date", "month",
                                             "day", NULL};
    static const char *const place_nouns[] = {"city", "country", "state", "town", "county",
                                              "place", "region", "province", "island", NULL};
    static const char *const howto_after_how[] = {"do", "does", "can", "could", "should",
                                                  "would", "to", "must", "might", NULL};
    static const char *const code_nouns[] = {"command", "function", "pragma", "option",
                                             "setting", "flag", "api", "method", "syntax",
                                             "statement", "parameter", NULL};
    for (size_t i = 0; i < c->n; i++) {
        const qword *w = &c->words[i];
        const qword *next = i + 1 < c->n ? &c->words[i + 1] : NULL;
        if (word_is(w, "how") && next != NULL && word_in(next, num_after_how))
            return QT_NUMBER;
        if (word_is(w, "how") && next != NULL && word_in(next, howto_after_how))
            return QT_HOWTO;
        if (word_is(w, "when"))
            return QT_TIME;
        if (word_is(w, "who") || word_is(w, "whom") || word_is(w, "whose"))
            return QT_PERSON;
        if (word_is(w, "where"))
            return QT_PLACE;
        if ((word_is(w, "what") || word_is(w, "which")) && next != NULL) {
            if (word_in(next, time_nouns))
                return QT_TIME;
            if (word_in(next, place_nouns))
                return QT_PLACE;
            if (word_is(next, "number") || word_is(next, "percentage"))
                return QT_NUMBER;
            if (word_in(next, code_nouns))
                return QT_HOWTO;
        }
    }
    return QT_NONE;
}

static void analyse_question(const char *text, question *q)
{
    qcollect c;
    c.n = 0;
    memset(q, 0, sizeof(*q));
    dr_text_words(text, strlen(text), qword_cb, &c);
    for (size_t i = 0; i < c.n; i++) {
        const qword *w = &c.words[i];
        if (!w->stop && q->n_terms < QTERMS_MAX &&
            !(w->len == 1 && !(w->w[0] >= '0' && w->w[0] <= '9'))) {
            bool seen = false;
            for (size_t j = 0; j < q->n_terms; j++)
                seen = seen || q->terms[j].hash == w->hash;
            if (!seen) {
                q->terms[q->n_terms].hash = w->hash;
                q->terms[q->n_terms].bit = (int)q->n_terms;
                q->n_terms++;
            }
        }
        if (i > 0 && !(w->stop && c.words[i - 1].stop) && q->n_bigrams < QBIGRAMS_MAX) {
            uint64_t h = pair_hash(c.words[i - 1].hash, w->hash);
            bool seen = false;
            for (size_t j = 0; j < q->n_bigrams; j++)
                seen = seen || q->bigrams[j].hash == h;
            if (!seen) {
                q->bigrams[q->n_bigrams].hash = h;
                q->bigrams[q->n_bigrams].bit = (int)q->n_bigrams;
                q->n_bigrams++;
            }
        }
    }
    q->type = question_type(&c);
    /* the bit of each content word, for the action verb and acronyms */
    int bits[QWORDS_MAX];
    for (size_t i = 0; i < c.n; i++) {
        bits[i] = -1;
        for (size_t j = 0; j < q->n_terms; j++)
            if (q->terms[j].hash == c.words[i].hash)
                bits[i] = q->terms[j].bit;
    }
    if (q->type == QT_HOWTO) {
        for (size_t i = 0; i < c.n; i++)
            if (word_is(&c.words[i], "how") || word_is(&c.words[i], "what") ||
                word_is(&c.words[i], "which")) {
                for (size_t j = i + 1; j < c.n; j++)
                    if (bits[j] >= 0) {
                        q->action = (uint64_t)1 << bits[j];
                        break;
                    }
                break;
            }
    }
    /* Acronyms: initials of 3-6 consecutive content words ("write-ahead
     * logging" -> "wal"; stopwords between them are skipped). */
    for (size_t i = 0; i < c.n && q->n_acr < ACRONYMS_MAX; i++) {
        if (bits[i] < 0 || c.words[i].len < 2)
            continue;
        char ini[8];
        size_t k = 0;
        uint64_t mask = 0;
        for (size_t j = i; j < c.n && k < 6 && q->n_acr < ACRONYMS_MAX; j++) {
            if (c.words[j].stop)
                continue;
            if (bits[j] < 0 || c.words[j].len < 2 || !isalpha((unsigned char)c.words[j].w[0]))
                break;
            ini[k++] = c.words[j].w[0];
            mask |= (uint64_t)1 << bits[j];
            if (k >= 3) {
                memcpy(q->acr[q->n_acr].s, ini, k);
                q->acr[q->n_acr].s[k] = '\0';
                q->acr[q->n_acr].mask = mask;
                q->n_acr++;
            }
        }
    }
    qsort(q->terms, q->n_terms, sizeof(keyed), cmp_keyed);
    qsort(q->bigrams, q->n_bigrams, sizeof(keyed), cmp_keyed);
}

/* ---- sentence scanning --------------------------------------------------- */

static bool is_number_word(const char *w, size_t len)
{
    static const char *const nums[] = {"one", "two", "three", "four", "five", "six", "seven",
                                       "eight", "nine", "ten", "eleven", "twelve", "twenty",
                                       "thirty", "forty", "fifty", "hundred", "thousand",
                                       "million", "billion", "dozen"};
    for (size_t i = 0; i < DR_ARRAY_LEN(nums); i++)
        if (strlen(nums[i]) == len && memcmp(nums[i], w, len) == 0)
            return true;
    return false;
}

static bool is_year(const char *w, size_t len)
{
    if (len != 4)
        return false;
    int v = 0;
    for (size_t i = 0; i < 4; i++) {
        if (w[i] < '0' || w[i] > '9')
            return false;
        v = v * 10 + (w[i] - '0');
    }
    return v >= 1000 && v <= 2099;
}

static bool in_words(const char *w, size_t len, const char *const *list)
{
    for (size_t i = 0; list[i] != NULL; i++)
        if (strlen(list[i]) == len && memcmp(list[i], w, len) == 0)
            return true;
    return false;
}

/* Whether word w (case-folded, n bytes, at sentence offset s) is an
 * instruction verb in imperative position: first in its sentence or clause
 * (after , : ;), after a modal with a generic subject ("you can use", "one
 * should run"), after "simply/just/then/first/please/instead", or after
 * "has/need/merely ... to" ("one has merely to run"). The caller confirms a
 * clause-initial verb with the next word (see word_cb). */
static bool imperative(const scan *sc, const char *w, size_t n, size_t s)
{
    static const char *const verbs[] = {
        "run", "use", "set", "call", "type", "enter", "execute", "invoke", "issue", "pass",
        "specify", "add", "enable", "disable", "turn", "compile", "install", "configure",
        "open", "create", "load", "append", "change", "edit", "put", "insert", "declare",
        "define", "register", "link", "build", "start", "restart", "remove", "delete",
        "drop", "try", "make", "write", "launch", "attach", "apply", NULL};
    static const char *const modals[] = {"can", "could", "should", "must", "may", NULL};
    static const char *const subjects[] = {"you", "one", "we", "i", "user", "users",
                                           "application", "applications", "developers", NULL};
    static const char *const adverbs[] = {"simply", "just", "then", "first", "please",
                                          "instead", NULL};
    static const char *const before_to[] = {"merely", "simply", "just", "need", "needs", "has",
                                            "have", "only", NULL};
    if (!in_words(w, n, verbs))
        return false;
    const char *raw = sc->text + sc->base + s;
    if (n > 1 && raw[0] >= 'A' && raw[0] <= 'Z' && raw[1] >= 'A' && raw[1] <= 'Z')
        return false; /* "CREATE TABLE": SQL, not an instruction in prose */
    if (sc->n_words == 0)
        return true;
    const char *gap = sc->text + sc->base + sc->prev_end;
    for (size_t i = 0; i < s - sc->prev_end; i++)
        if (gap[i] == ',' || gap[i] == ':' || gap[i] == ';')
            return true;
    if (in_words(sc->prev_w[0], strlen(sc->prev_w[0]), adverbs))
        return true;
    if (in_words(sc->prev_w[0], strlen(sc->prev_w[0]), modals) &&
        in_words(sc->prev_w[1], strlen(sc->prev_w[1]), subjects))
        return true;
    return strcmp(sc->prev_w[0], "to") == 0 &&
           in_words(sc->prev_w[1], strlen(sc->prev_w[1]), before_to);
}

static bool ident_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* Whether t[0..n) holds a code-like token: name=value, name_with_underscore,
 * call() or name_x(, a dot command (" .import"), a --flag, or two upper-case
 * words in a row (SQL such as "PRAGMA", "CREATE TABLE": 3+ letters, one 4+). */
static bool has_code(const char *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (c == '=' && i > 0 && i + 1 < n) {
            size_t a = i - 1, b = i + 1;
            if (t[a] == ' ' && a > 0)
                a--;
            if (t[b] == ' ' && b + 1 < n)
                b++;
            if (ident_char(t[a]) && (ident_char(t[b]) || t[b] == '\'' || t[b] == '"'))
                return true;
        }
        if (c == '_' && i > 0 && i + 1 < n && isalnum((unsigned char)t[i - 1]) &&
            isalpha((unsigned char)t[i + 1]))
            return true;
        if (c == '(' && i > 0 && i + 1 < n && t[i + 1] == ')' && ident_char(t[i - 1]))
            return true;
        if ((c == '.' || c == '-') && (i == 0 || t[i - 1] == ' ' || t[i - 1] == '"') &&
            i + 2 < n && (c == '.' || t[i + 1] == '-')) {
            size_t j = i + 1 + (c == '-');
            size_t k = j;
            while (k < n && t[k] >= 'a' && t[k] <= 'z')
                k++;
            if (k - j >= 2 && (k == n || t[k] == ' ' || t[k] == '"' || t[k] == '\''))
                return true;
        }
        if (c >= 'A' && c <= 'Z' && (i == 0 || !ident_char(t[i - 1]))) {
            size_t k = i;
            while (k < n && t[k] >= 'A' && t[k] <= 'Z')
                k++;
            size_t l1 = k - i;
            if (l1 >= 3 && k + 1 < n && t[k] == ' ') {
                size_t m = k + 1;
                while (m < n && t[m] >= 'A' && t[m] <= 'Z')
                    m++;
                size_t l2 = m - k - 1;
                if (l2 >= 3 && (l1 >= 4 || l2 >= 4) && (m == n || !ident_char(t[m])))
                    return true;
            }
        }
    }
    return false;
}

static int word_cb(void *user, const char *word, size_t len, size_t s, size_t e)
{
    (void)e;
    scan *sc = user;
    const question *q = sc->q;
    char w[72];
    size_t n = len < 64 ? len : 64;
    memcpy(w, word, n);
    w[n] = '\0';
    bool stop = dr_text_is_stopword(w);
    uint64_t h = stem_hash(w, n, NULL, NULL);
    int bit = find_keyed(q->terms, q->n_terms, h);
    if (bit >= 0)
        sc->cur.terms |= (uint64_t)1 << bit;
    else if (!stop)
        sc->cur.novel++;
    if (sc->have_prev) {
        int b = find_keyed(q->bigrams, q->n_bigrams, pair_hash(sc->prev_hash, h));
        if (b >= 0)
            sc->cur.bigrams |= (uint64_t)1 << b;
    }
    sc->prev_hash = h;
    sc->have_prev = true;
    const char *raw0 = sc->text + sc->base + s;
    if (bit < 0 && n >= 3 && n <= 6 && q->n_acr > 0) {
        bool caps = true;
        for (size_t i = 0; i < n && caps; i++)
            caps = raw0[i] >= 'A' && raw0[i] <= 'Z';
        for (size_t a = 0; caps && a < q->n_acr; a++)
            if (strlen(q->acr[a].s) == n && memcmp(q->acr[a].s, w, n) == 0) {
                sc->cur.terms |= q->acr[a].mask;
                if (sc->cur.novel > 0)
                    sc->cur.novel--;
                break;
            }
    }
    if (q->type == QT_HOWTO && !sc->cur.instr) {
        /* a verb is confirmed by the next word: not "Use of", "Write-Ahead" */
        static const char *const not_after[] = {"of", "and", "or", "is", "are", "was",
                                                "were", "s", NULL};
        const char *gap = sc->text + sc->base + sc->prev_end;
        bool hyphen = sc->n_words > 0 && s > sc->prev_end && gap[0] == '-';
        if (sc->pending_instr && !hyphen && !in_words(w, n, not_after))
            sc->cur.instr = true;
        sc->pending_instr = !sc->cur.instr && imperative(sc, w, n, s);
    }
    sc->n_words++;
    sc->prev_end = e;
    dr_strlcpy(sc->prev_w[1], sc->prev_w[0], sizeof(sc->prev_w[1]));
    dr_strlcpy(sc->prev_w[0], w, sizeof(sc->prev_w[0]));
    if (!sc->cur.cue && bit < 0) {
        const char *raw = sc->text + sc->base + s;
        bool digit = false;
        for (size_t i = 0; i < n; i++)
            digit = digit || (w[i] >= '0' && w[i] <= '9');
        switch (q->type) {
        case QT_PERSON:
        case QT_PLACE:
            sc->cur.cue = !stop && !digit && dr_gen_is_upper_at(raw, e - s);
            break;
        case QT_TIME:
            sc->cur.cue = is_year(w, n) || dr_gen_is_month(w, n);
            break;
        case QT_NUMBER:
            sc->cur.cue = digit || is_number_word(w, n);
            break;
        case QT_NONE:
        case QT_HOWTO:
            break;
        }
    }
    return 0;
}

static int sentence_cb(void *user, size_t start, size_t end)
{
    scan *sc = user;
    if (sc->n_sents >= SENTENCES_MAX) {
        sc->full = true;
        return 1;
    }
    size_t p = sc->cur.p;
    memset(&sc->cur, 0, sizeof(sc->cur));
    sc->cur.p = p;
    sc->cur.start = start;
    sc->cur.end = end;
    sc->base = start;
    sc->have_prev = false;
    sc->n_words = 0;
    sc->pending_instr = false;
    sc->prev_end = 0;
    sc->prev_w[0][0] = sc->prev_w[1][0] = '\0';
    dr_text_words(sc->text + start, end - start, word_cb, sc);
    sc->cur.n_words = sc->n_words;
    sc->cur.out_end = end;
    sc->cur.lead = sc->n_sents == 0 || sc->sents[sc->n_sents - 1].p != p;
    sc->cur.asks = end > start && sc->text[end - 1] == '?';
    sc->cur.colon = end > start && sc->text[end - 1] == ':';
    if (sc->q->type == QT_HOWTO) {
        sc->cur.code = has_code(sc->text + start, end - start);
        /* a heading ("Change In Default Page Size") gives no instruction */
        char last = end > start ? sc->text[end - 1] : ' ';
        if (strchr(".:;!)\"'", last) == NULL || last == '\0')
            sc->cur.instr = false;
    }
    /* "... use the following pragma:" and its block answer together */
    if (sc->n_sents > 0 && sc->sents[sc->n_sents - 1].p == p &&
        sc->sents[sc->n_sents - 1].colon && sc->sents[sc->n_sents - 1].out_end <= start &&
        end - start <= CONTINUATION_BYTES) {
        sentence *prev = &sc->sents[sc->n_sents - 1];
        prev->out_end = end;
        prev->terms |= sc->cur.terms;
        prev->bigrams |= sc->cur.bigrams;
        prev->novel += sc->cur.novel;
        prev->code = prev->code || sc->cur.code;
        prev->cue = prev->cue || sc->cur.cue;
    }
    if (sc->n_sents == sc->cap_sents) {
        size_t cap = sc->cap_sents ? sc->cap_sents * 2 : 64;
        sentence *ns = dr_realloc(sc->sents, cap * sizeof(*ns));
        if (ns == NULL) {
            sc->status = DYNRAG_ERR_NOMEM;
            return 1;
        }
        sc->sents = ns;
        sc->cap_sents = cap;
    }
    sc->sents[sc->n_sents++] = sc->cur;
    return 0;
}

/* Question terms present in a title, as a bit mask. */
static uint64_t title_terms(const question *q, const char *title)
{
    scan sc;
    memset(&sc, 0, sizeof(sc));
    sc.q = q;
    sc.text = title;
    dr_text_words(title, strlen(title), word_cb, &sc);
    return sc.cur.terms;
}

/* ---- scoring and selection ----------------------------------------------- */

static double mask_weight(uint64_t mask, const double *idf, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        if (mask & ((uint64_t)1 << i))
            s += idf[i];
    return s;
}

/* Sets every sentence's support; idf[] gets each question term's IDF. */
static void score_sentences(const question *q, sentence *s, size_t n_s, const uint64_t *tmask,
                            double *idf)
{
    double total = 0;
    for (size_t t = 0; t < q->n_terms; t++) {
        size_t df = 0;
        for (size_t i = 0; i < n_s; i++)
            df += (s[i].terms >> t) & 1;
        idf[t] = log(1.0 + ((double)n_s - (double)df + 0.5) / ((double)df + 0.5));
        total += idf[t];
    }
    double w_type = q->type == QT_HOWTO ? W_HOWTO : q->type != QT_NONE ? W_TYPE : 0;
    double w_sum = W_COVERAGE + (q->n_bigrams ? W_BIGRAM : 0) + w_type;
    for (size_t i = 0; i < n_s; i++) {
        sentence *x = &s[i];
        uint64_t title_only = tmask[x->p] & ~x->terms;
        double cov = total > 0 ? (mask_weight(x->terms, idf, q->n_terms) +
                                  TITLE_WEIGHT * mask_weight(title_only, idf, q->n_terms)) /
                                     total
                               : 0;
        /* an instruction half stands for the how-to goal verb ("run ..."
         * answers "how do I enable ...") */
        if (x->instr && total > 0 && !(x->terms & q->action))
            cov += ACTION_CREDIT * mask_weight(q->action, idf, q->n_terms) / total;
        if (cov <= 0) {
            x->support = 0;
            continue;
        }
        double raw = W_COVERAGE * cov;
        if (q->n_bigrams)
            raw += W_BIGRAM * (double)__builtin_popcountll(x->bigrams) / (double)q->n_bigrams;
        if (q->type == QT_HOWTO)
            raw += W_HOWTO * (0.5 * x->instr + 0.5 * x->code);
        else if (q->type != QT_NONE && x->cue)
            raw += W_TYPE;
        raw /= w_sum;
        double r = (double)x->p;
        raw *= 1.0 - RANK_PENALTY * r / (r + 1.0);
        if (x->novel == 0)
            raw *= NO_NEW_WORD;
        if (x->asks)
            raw *= ASKS;
        if (x->n_words > LONG_WORDS)
            raw *= (double)LONG_WORDS / (double)x->n_words;
        x->support = raw < 0 ? 0 : raw > 1 ? 1 : raw;
    }
}

/* ---- bridge pass ---------------------------------------------------------- */

#define BRIDGE_WORDS_MAX 256
#define W_BRIDGE_REST 0.6 /* question terms the first sentence left uncovered */
#define W_BRIDGE_CUE 0.3  /* answer-type cue */
#define W_BRIDGE_LEAD 0.1 /* first sentence of the bridged passage */

typedef struct hashset {
    uint64_t h[BRIDGE_WORDS_MAX];
    size_t n;
    bool stop_words; /* collect stopwords too */
} hashset;

static int hash_cb(void *user, const char *word, size_t len, size_t s, size_t e)
{
    (void)s;
    (void)e;
    hashset *hs = user;
    char w[72];
    size_t n = len < 64 ? len : 64;
    memcpy(w, word, n);
    w[n] = '\0';
    if (hs->n >= BRIDGE_WORDS_MAX)
        return 1;
    if (!hs->stop_words && dr_text_is_stopword(w))
        return 0;
    hs->h[hs->n++] = stem_hash(w, n, NULL, NULL);
    return 0;
}

static bool hs_has(const hashset *hs, uint64_t h)
{
    for (size_t i = 0; i < hs->n; i++)
        if (hs->h[i] == h)
            return true;
    return false;
}

/* Whether passage title t names an entity the sentence mentions (every
 * content word of the title before " (" is in the sentence's words w) that
 * the question does not (one of those words is not a question term). */
static bool title_bridged(const question *q, const char *t, const hashset *w)
{
    size_t len = strlen(t);
    const char *paren = strstr(t, " (");
    if (paren != NULL)
        len = (size_t)(paren - t);
    hashset tw;
    tw.n = 0;
    tw.stop_words = false;
    dr_text_words(t, len, hash_cb, &tw);
    bool novel = false;
    for (size_t i = 0; i < tw.n; i++) {
        if (!hs_has(w, tw.h[i]))
            return false;
        novel = novel || find_keyed(q->terms, q->n_terms, tw.h[i]) < 0;
    }
    return tw.n > 0 && novel;
}

/* Bridge questions ("the woman who portrayed Corliss Archer ... held what
 * position?") have the answer in a second passage that the best sentence
 * names ("... starring Shirley Temple as Corliss Archer" -> "Shirley
 * Temple"). Given the sentences sorted by support, finds the passages whose
 * title the best sentence mentions and returns the index of their best
 * sentence by W_BRIDGE_REST * (share of the question's IDF weight the best
 * sentence did not cover that this one covers) + W_BRIDGE_CUE * answer-type
 * cue + W_BRIDGE_LEAD * (first sentence of its passage); *nomem set when
 * out of memory (SIZE_MAX returned); SIZE_MAX when no
 * passage is bridged. */
static size_t bridge_pick(const question *q, const sentence *s, size_t n_s,
                          const dr_passage *passages, size_t n_p, const double *idf, bool *nomem)
{
    if (n_s < 2 || n_p < 2)
        return SIZE_MAX;
    const sentence *top = &s[0];
    hashset w;
    w.n = 0;
    w.stop_words = false;
    const char *text = passages[top->p].text ? passages[top->p].text : "";
    dr_text_words(text + top->start, top->out_end - top->start, hash_cb, &w);
    bool any = false;
    bool *bridged = dr_calloc(n_p, sizeof(bool));
    if (bridged == NULL) {
        *nomem = true;
        return SIZE_MAX;
    }
    for (size_t p = 0; p < n_p; p++) {
        if (p == top->p || passages[p].title == NULL)
            continue;
        bridged[p] = title_bridged(q, passages[p].title, &w);
        any = any || bridged[p];
    }
    size_t best = SIZE_MAX;
    if (any) {
        uint64_t rest = ~top->terms;
        double rest_w = mask_weight(rest, idf, q->n_terms);
        double best_score = -1;
        for (size_t i = 1; i < n_s; i++) {
            const sentence *x = &s[i];
            if (!bridged[x->p])
                continue;
            double b = W_BRIDGE_CUE * (q->type != QT_NONE && x->cue) + W_BRIDGE_LEAD * x->lead;
            if (rest_w > 0)
                b += W_BRIDGE_REST * mask_weight(x->terms & rest, idf, q->n_terms) / rest_w;
            if (b > best_score) {
                best_score = b;
                best = i;
            }
        }
    }
    dr_free(bridged);
    return best;
}

static int cmp_support(const void *a, const void *b)
{
    const sentence *x = a, *y = b;
    if (x->support != y->support)
        return x->support > y->support ? -1 : 1;
    if (x->p != y->p)
        return x->p < y->p ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Appends one sentence, flattened and cut at a word boundary. */
static int put_sentence(dr_buf *b, const char *text, const sentence *s)
{
    size_t len = s->out_end - s->start;
    const char *p = text + s->start;
    bool cut = false;
    if (len > ANSWER_SENTENCE_BYTES) {
        size_t c = ANSWER_SENTENCE_BYTES;
        while (c > ANSWER_SENTENCE_BYTES / 2 && p[c] != ' ')
            c--;
        while (c > 0 && ((unsigned char)p[c] & 0xC0) == 0x80)
            c--;
        len = c;
        cut = true;
    }
    int rc = dr_gen_put_flat(b, p, len);
    if (rc == DYNRAG_OK && cut) {
        dr_gen_rstrip(b);
        rc = dr_buf_puts(b, " ...");
    }
    return rc;
}

static int set_unanswerable(dr_answer *out, double support)
{
    out->text = dr_strdup("unanswerable");
    out->unanswerable = true;
    out->support = support;
    return out->text ? DYNRAG_OK : DYNRAG_ERR_NOMEM;
}

int dr_extractive_answer(const dr_extractive_config *cfg, const char *question_text,
                         const dr_passage *passages, size_t n, dr_answer *out,
                         dynrag_error *err)
{
    if (out == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "extractive answer: no output given");
    memset(out, 0, sizeof(*out));
    if (passages == NULL && n > 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "extractive answer: %zu passages but NULL",
                          n);
    double threshold = cfg ? cfg->threshold : DR_EXTRACTIVE_DEFAULT_THRESHOLD;
    int max_sent = cfg && cfg->max_sentences > 0 ? cfg->max_sentences
                                                 : DR_EXTRACTIVE_DEFAULT_SENTENCES;
    if (!(threshold >= 0.0 && threshold <= 1.0))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "extractive answer: threshold %g is outside [0, 1]", threshold);
    if (max_sent > DR_EXTRACTIVE_MAX_SENTENCES)
        max_sent = DR_EXTRACTIVE_MAX_SENTENCES;

    int rc = DYNRAG_OK;
    question *q = dr_malloc(sizeof(*q));
    uint64_t *tmask = dr_calloc(n ? n : 1, sizeof(*tmask));
    scan sc;
    memset(&sc, 0, sizeof(sc));
    dr_buf b = {0};
    sentence pick[DR_EXTRACTIVE_MAX_SENTENCES];
    size_t n_pick = 0;
    if (q == NULL || tmask == NULL) {
        rc = DYNRAG_ERR_NOMEM;
        goto cleanup;
    }
    analyse_question(question_text ? question_text : "", q);
    if (q->n_terms == 0 || n == 0) {
        rc = set_unanswerable(out, 0.0);
        goto cleanup;
    }
    sc.q = q;
    for (size_t p = 0; p < n && !sc.full && sc.status == DYNRAG_OK; p++) {
        const char *title = passages[p].title ? passages[p].title : "";
        tmask[p] = title_terms(q, title);
        sc.text = passages[p].text ? passages[p].text : "";
        sc.cur.p = p;
        dr_text_sentences(sc.text, strlen(sc.text), sentence_cb, &sc);
    }
    if (sc.status != DYNRAG_OK) {
        rc = sc.status;
        goto cleanup;
    }
    if (sc.full)
        dr_log(DYNRAG_LOG_DEBUG, "generate", "extractive: only the first %d sentences scored",
               SENTENCES_MAX);
    double idf[QTERMS_MAX];
    score_sentences(q, sc.sents, sc.n_sents, tmask, idf);
    if (sc.n_sents > 0)
        qsort(sc.sents, sc.n_sents, sizeof(sentence), cmp_support);
    double best = sc.n_sents ? sc.sents[0].support : 0.0;
    /* The best sentence of a passage the top sentence names (bridge_pick)
     * answers when it holds the expected answer type and one sentence is
     * wanted; otherwise it comes second. best stays the top support. */
    bool nomem = false;
    size_t bridge = bridge_pick(q, sc.sents, sc.n_sents, passages, n, idf, &nomem);
    if (nomem) {
        rc = DYNRAG_ERR_NOMEM;
        goto cleanup;
    }
    if (bridge != SIZE_MAX) {
        size_t to = max_sent == 1 && q->type != QT_NONE && sc.sents[bridge].cue ? 0 : 1;
        sentence t = sc.sents[bridge];
        memmove(&sc.sents[to + 1], &sc.sents[to], (bridge - to) * sizeof(sentence));
        sc.sents[to] = t;
        if (max_sent == 1 || to == 0)
            bridge = SIZE_MAX;
    }
    if (sc.n_sents == 0 || best <= 0.0 || best < threshold) {
        rc = set_unanswerable(out, best);
        goto cleanup;
    }
    if (dr_log_enabled(DYNRAG_LOG_DEBUG))
        for (size_t i = 0; i < sc.n_sents && i < 5; i++) {
            const sentence *x = &sc.sents[i];
            dr_log(DYNRAG_LOG_DEBUG, "generate", "extractive #%zu support %.3f [%zu]%s%s: %.*s",
                   i + 1, x->support, x->p + 1, x->instr ? " instr" : "", x->code ? " code" : "",
                   (int)(x->out_end - x->start < 160 ? x->out_end - x->start : 160),
                   passages[x->p].text + x->start);
        }
    for (size_t i = 0; i < sc.n_sents && n_pick < (size_t)max_sent; i++) {
        bool bridged = i == 1 && bridge != SIZE_MAX;
        if (i > 0 && !bridged && (sc.sents[i].support < threshold || sc.sents[i].support <= 0))
            break;
        bool inside = false; /* already output as a block after a ':' */
        for (size_t j = 0; j < n_pick && !inside; j++)
            inside = pick[j].p == sc.sents[i].p && sc.sents[i].start >= pick[j].start &&
                     sc.sents[i].end <= pick[j].out_end;
        if (!inside)
            pick[n_pick++] = sc.sents[i];
    }
    /* Order: passages by their best picked sentence, document order inside. */
    size_t group[DR_EXTRACTIVE_MAX_SENTENCES];
    for (size_t i = 0; i < n_pick; i++) {
        group[i] = i;
        for (size_t j = 0; j < i; j++)
            if (pick[j].p == pick[i].p) {
                group[i] = group[j];
                break;
            }
    }
    for (size_t i = 1; i < n_pick; i++) {
        for (size_t j = i; j > 0; j--) {
            bool swap = group[j] < group[j - 1] ||
                        (group[j] == group[j - 1] && pick[j].start < pick[j - 1].start);
            if (!swap)
                break;
            sentence ts = pick[j];
            pick[j] = pick[j - 1];
            pick[j - 1] = ts;
            size_t tg = group[j];
            group[j] = group[j - 1];
            group[j - 1] = tg;
        }
    }
    out->citations = dr_malloc(n_pick * sizeof(size_t));
    if (out->citations == NULL) {
        rc = DYNRAG_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t i = 0; i < n_pick && rc == DYNRAG_OK; i++) {
        if (i > 0)
            rc = dr_buf_putc(&b, ' ');
        if (rc == DYNRAG_OK)
            rc = put_sentence(&b, passages[pick[i].p].text, &pick[i]);
        if (i == 0 || pick[i].p != pick[i - 1].p)
            out->citations[out->n_citations++] = pick[i].p;
    }
    if (rc != DYNRAG_OK)
        goto cleanup;
    dr_gen_rstrip(&b);
    out->text = dr_buf_take(&b);
    if (out->text == NULL) {
        rc = DYNRAG_ERR_NOMEM;
        goto cleanup;
    }
    out->support = best;
    out->unanswerable = false;

cleanup:
    dr_free(q);
    dr_free(tmask);
    dr_free(sc.sents);
    dr_buf_free(&b);
    if (rc != DYNRAG_OK) {
        dr_answer_free(out);
        return dr_err_set(err, rc, "extractive answer: %s", dynrag_strerror(rc));
    }
    return DYNRAG_OK;
}

void dr_answer_free(dr_answer *a)
{
    if (a == NULL)
        return;
    dr_free(a->text);
    dr_free(a->citations);
    memset(a, 0, sizeof(*a));
}
