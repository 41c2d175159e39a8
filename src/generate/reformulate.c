/* reformulate.c - next-query construction for multi-step retrieval. */
#include "generate/reformulate.h"

#include "core/text.h"
#include "core/util.h"
#include "generate/gen_text.h"

#include <stdlib.h>
#include <string.h>

#define CAND_WORDS_MAX 12    /* content words remembered per candidate */
#define CANDS_MAX 4096       /* candidates per call */
#define SENT_WORDS_MAX 256   /* words of a sentence looked at for entities */
#define QSET_MAX 128

struct dr_reform_state {
    uint64_t *used; /* stem hashes of content words added by earlier steps */
    size_t n_used, cap_used;
    dr_titles titles; /* has NULL: no title linking */
};

typedef struct wordset {
    uint64_t h[QSET_MAX];
    size_t n;
} wordset;

typedef struct cand {
    const char *s; /* span in a passage's title or text */
    size_t len;
    uint64_t words[CAND_WORDS_MAX];
    size_t n_words;
    double score;
    bool titled; /* a run of its words names an indexed document's title */
    size_t order;
    size_t src; /* the passage it came from */
} cand;

typedef struct sword {
    size_t start, end;  /* byte span in the sentence's text */
    uint64_t hash;      /* stem hash */
    bool stop, upper, content, connector;
} sword;

typedef struct collect {
    const char *text;
    size_t base;
    sword w[SENT_WORDS_MAX];
    size_t n;
} collect;

typedef struct ctx {
    const wordset *q;
    cand *c;
    size_t n, cap;
    int status;
} ctx;

int dr_reform_create(dr_reform_state **out)
{
    if (out == NULL)
        return DYNRAG_ERR_INVALID;
    *out = dr_calloc(1, sizeof(**out));
    return *out ? DYNRAG_OK : DYNRAG_ERR_NOMEM;
}

void dr_reform_free(dr_reform_state *s)
{
    if (s == NULL)
        return;
    dr_free(s->used);
    dr_free(s);
}

static bool has_hash(const uint64_t *h, size_t n, uint64_t v)
{
    for (size_t i = 0; i < n; i++)
        if (h[i] == v)
            return true;
    return false;
}

static bool is_connector(const char *w, size_t len)
{
    static const char *const conn[] = {"of", "and", "the", "de", "von", "van", "da", "du",
                                       "la", "le", "del", "di", "der", "for"};
    for (size_t i = 0; i < DR_ARRAY_LEN(conn); i++)
        if (strlen(conn[i]) == len && memcmp(conn[i], w, len) == 0)
            return true;
    return false;
}

static bool is_weekday(const char *w, size_t len)
{
    static const char *const days[] = {"monday", "tuesday", "wednesday", "thursday",
                                       "friday", "saturday", "sunday"};
    for (size_t i = 0; i < DR_ARRAY_LEN(days); i++)
        if (strlen(days[i]) == len && memcmp(days[i], w, len) == 0)
            return true;
    return false;
}

static int collect_cb(void *user, const char *word, size_t len, size_t s, size_t e)
{
    collect *c = user;
    if (c->n >= SENT_WORDS_MAX)
        return 1;
    char w[72];
    size_t n = len < 64 ? len : 64;
    memcpy(w, word, n);
    w[n] = '\0';
    sword *x = &c->w[c->n++];
    x->start = s;
    x->end = e;
    x->stop = dr_text_is_stopword(w);
    x->upper = dr_gen_is_upper_at(c->text + c->base + s, e - s);
    x->connector = is_connector(w, n);
    x->content = !x->stop && !(n == 1 && !(w[0] >= '0' && w[0] <= '9')) &&
                 !dr_gen_is_month(w, n) && !is_weekday(w, n);
    dr_gen_stem(w, &n);
    x->hash = dr_hash64(w, n, 0);
    return 0;
}

static int add_cand(ctx *cx, const char *s, size_t len, const sword *w, size_t n_w,
                    double score)
{
    if (cx->n >= CANDS_MAX)
        return 0;
    if (cx->n == cx->cap) {
        size_t cap = cx->cap ? cx->cap * 2 : 32;
        cand *nc = dr_realloc(cx->c, cap * sizeof(*nc));
        if (nc == NULL)
            return DYNRAG_ERR_NOMEM;
        cx->c = nc;
        cx->cap = cap;
    }
    cand *c = &cx->c[cx->n];
    memset(c, 0, sizeof(*c));
    c->s = s;
    c->len = len;
    for (size_t i = 0; i < n_w && c->n_words < CAND_WORDS_MAX; i++)
        if (w[i].content && !has_hash(c->words, c->n_words, w[i].hash))
            c->words[c->n_words++] = w[i].hash;
    if (c->n_words == 0)
        return 0;
    c->score = score;
    c->order = cx->n;
    cx->n++;
    return 0;
}

typedef struct sent_ctx {
    ctx *cx;
    const char *text;
    size_t rank;
} sent_ctx;

/* Only white space between two words of a name. */
static bool plain_gap(const char *text, size_t a, size_t b)
{
    for (size_t i = a; i < b; i++)
        if (text[i] != ' ')
            return false;
    return true;
}

static int entity_sentence_cb(void *user, size_t start, size_t end)
{
    sent_ctx *sx = user;
    ctx *cx = sx->cx;
    collect c;
    c.text = sx->text;
    c.base = start;
    c.n = 0;
    dr_text_words(sx->text + start, end - start, collect_cb, &c);
    const char *st = sx->text + start;
    size_t overlap = 0;
    uint64_t seen[SENT_WORDS_MAX];
    for (size_t i = 0; i < c.n; i++)
        if (c.w[i].content && has_hash(cx->q->h, cx->q->n, c.w[i].hash) &&
            !has_hash(seen, overlap, c.w[i].hash))
            seen[overlap++] = c.w[i].hash;
    if (overlap == 0)
        return 0;
    size_t i = 0;
    while (i < c.n) {
        if (!c.w[i].upper || c.w[i].stop) {
            i++;
            continue;
        }
        size_t j = i + 1; /* run is [i, last] */
        size_t last = i;
        while (j < c.n && plain_gap(st, c.w[j - 1].end, c.w[j].start)) {
            if (c.w[j].upper && !c.w[j].stop) {
                last = j++;
            } else if (c.w[j].connector && j + 1 < c.n && c.w[j + 1].upper &&
                       plain_gap(st, c.w[j].end, c.w[j + 1].start)) {
                j++;
            } else {
                break;
            }
        }
        size_t n_w = last - i + 1;
        if (!(n_w == 1 && i == 0)) { /* a lone capitalised first word is just a sentence start */
            double score = (double)overlap + 0.5 * (double)DR_MIN(n_w - 1, 2) +
                           0.5 / (1.0 + (double)sx->rank);
            int rc = add_cand(cx, st + c.w[i].start, c.w[last].end - c.w[i].start, &c.w[i], n_w,
                              score);
            if (rc != DYNRAG_OK) {
                cx->status = rc;
                return 1;
            }
        }
        i = last + 1;
    }
    return 0;
}

static int qset_cb(void *user, const char *word, size_t len, size_t s, size_t e)
{
    (void)s;
    (void)e;
    wordset *q = user;
    uint64_t h;
    if (q->n >= QSET_MAX || !dr_gen_content_hash(word, len, &h))
        return 0;
    if (!has_hash(q->h, q->n, h))
        q->h[q->n++] = h;
    return 0;
}

static int cmp_cand(const void *a, const void *b);

/* One word's share of a title key (keys XOR these: order-free). */
static uint64_t key_part(uint64_t stem_hash)
{
    return dr_hash64(&stem_hash, sizeof(stem_hash), 0x7469746c65ULL);
}

uint64_t dr_title_key(const char *s, size_t n)
{
    if (s == NULL)
        return 0;
    /* Without a trailing "(...)". */
    size_t end = n;
    while (end > 0 && (s[end - 1] == ' ' || s[end - 1] == '\t'))
        end--;
    if (end > 0 && s[end - 1] == ')') {
        size_t open = end - 1;
        while (open > 0 && s[open] != '(')
            open--;
        if (s[open] == '(' && open > 0)
            end = open;
    }
    collect tc;
    tc.text = s;
    tc.base = 0;
    tc.n = 0;
    dr_text_words(s, end, collect_cb, &tc);
    uint64_t seen[SENT_WORDS_MAX], key = 0;
    size_t n_seen = 0;
    for (size_t i = 0; i < tc.n; i++) {
        if (!tc.w[i].content || has_hash(seen, n_seen, tc.w[i].hash))
            continue;
        seen[n_seen++] = tc.w[i].hash;
        key ^= key_part(tc.w[i].hash);
    }
    return n_seen > 0 ? key : 0;
}

/* True when a run of c's words (consecutive among its distinct content
 * words) has the key of an indexed title. */
static bool names_title(const cand *c, const dr_titles *t)
{
    if (t == NULL || t->has == NULL)
        return false;
    for (size_t i = 0; i < c->n_words; i++) {
        uint64_t key = 0;
        for (size_t j = i; j < c->n_words; j++) {
            key ^= key_part(c->words[j]);
            if (t->has(t->user, key))
                return true;
        }
    }
    return false;
}

/* Marks the candidates that name a title, then sorts them best first. */
static void rank_cands(ctx *cx, const dr_titles *t)
{
    for (size_t i = 0; i < cx->n; i++)
        cx->c[i].titled = names_title(&cx->c[i], t);
    if (cx->n > 0)
        qsort(cx->c, cx->n, sizeof(cand), cmp_cand);
}

void dr_reform_set_titles(dr_reform_state *s, const dr_titles *t)
{
    if (s == NULL)
        return;
    if (t == NULL)
        memset(&s->titles, 0, sizeof(s->titles));
    else
        s->titles = *t;
}

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->titled != y->titled)
        return x->titled ? -1 : 1;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* A growing set of stem hashes (status: DYNRAG_ERR_NOMEM once a push failed). */
typedef struct hashvec {
    uint64_t *h;
    size_t n, cap;
    int status;
} hashvec;

/* dr_text_words() callback: adds the stem of each non-stopword to the set. */
static int hashvec_cb(void *user, const char *word, size_t len, size_t s, size_t e)
{
    (void)s;
    (void)e;
    hashvec *v = user;
    uint64_t h;
    if (!dr_gen_content_hash(word, len, &h))
        return 0;
    if (has_hash(v->h, v->n, h))
        return 0;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        uint64_t *nh = dr_realloc(v->h, cap * sizeof(*nh));
        if (nh == NULL) {
            v->status = DYNRAG_ERR_NOMEM;
            return 1;
        }
        v->h = nh;
        v->cap = cap;
    }
    v->h[v->n++] = h;
    return 0;
}

/* The length of a title without its trailing " (disambiguator)". */
static size_t title_len(const char *title)
{
    const char *paren = strstr(title, " (");
    return paren != NULL ? (size_t)(paren - title) : strlen(title);
}

/* True when every content word of the title of one of passages[0..n) is
 * among candidate c's words ("Ralph Franklin Hefferline" and the passage
 * "Ralph Hefferline"): the bridge it names is already in hand. */
static bool resolved(const cand *c, const dr_passage *passages, size_t n)
{
    for (size_t p = 0; p < n; p++) {
        const char *title = passages[p].title ? passages[p].title : "";
        collect tc;
        tc.text = title;
        tc.base = 0;
        tc.n = 0;
        dr_text_words(title, title_len(title), collect_cb, &tc);
        size_t n_content = 0;
        bool all_in_cand = true;
        for (size_t i = 0; i < tc.n && all_in_cand; i++) {
            if (!tc.w[i].content)
                continue;
            n_content++;
            all_in_cand = has_hash(c->words, c->n_words, tc.w[i].hash);
        }
        if (all_in_cand && n_content > 0)
            return true;
    }
    return false;
}

typedef struct qword_ctx {
    const char *q;
    const hashvec *seen; /* the bridge passage's words */
    dr_buf *b;
    size_t n_out;
    int status;
} qword_ctx;

/* Appends each question content word the bridge passage does not contain. */
static int leftover_cb(void *user, const char *word, size_t len, size_t s, size_t e)
{
    qword_ctx *x = user;
    uint64_t h;
    if (!dr_gen_content_hash(word, len, &h) || has_hash(x->seen->h, x->seen->n, h))
        return 0;
    int rc = dr_buf_putc(x->b, ' ');
    if (rc == DYNRAG_OK)
        rc = dr_gen_put_flat(x->b, x->q + s, e - s);
    if (rc != DYNRAG_OK) {
        x->status = rc;
        return 1;
    }
    x->n_out++;
    return 0;
}

int dr_reformulate(dr_reform_state *s, const char *question, const dr_passage *passages,
                   size_t n, char **next, dynrag_error *err)
{
    if (next != NULL)
        *next = NULL;
    if (s == NULL || question == NULL || next == NULL || (passages == NULL && n > 0))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "reformulate: missing argument");
    int rc = DYNRAG_OK;
    wordset q;
    q.n = 0;
    dr_text_words(question, strlen(question), qset_cb, &q);
    ctx cx;
    memset(&cx, 0, sizeof(cx));
    cx.q = &q;
    dr_buf b = {0};
    hashvec pw = {0};
    const cand *pick = NULL;

    size_t top = DR_MIN(n, (size_t)DR_REFORM_TOP_PASSAGES);
    for (size_t p = 0; p < top && cx.status == DYNRAG_OK; p++) {
        size_t first = cx.n;
        sent_ctx sx = {&cx, passages[p].text ? passages[p].text : "", p};
        dr_text_sentences(sx.text, strlen(sx.text), entity_sentence_cb, &sx);
        for (size_t i = first; i < cx.n; i++)
            cx.c[i].src = p;
    }
    if (cx.status != DYNRAG_OK) {
        rc = cx.status;
        goto cleanup;
    }
    rank_cands(&cx, &s->titles);
    size_t held = DR_MIN(n, (size_t)DR_REFORM_HELD_PASSAGES);
    for (size_t i = 0; i < cx.n && pick == NULL; i++) {
        const cand *c = &cx.c[i];
        bool fresh = false;
        for (size_t k = 0; k < c->n_words && !fresh; k++)
            fresh = !has_hash(q.h, q.n, c->words[k]) && !has_hash(s->used, s->n_used, c->words[k]);
        if (fresh && !resolved(c, passages, held))
            pick = c;
    }
    if (pick == NULL)
        goto cleanup;
    /* The bridge, then what of the question its passage does not say (the
     * whole question when it says all of it). */
    const dr_passage *src = &passages[pick->src];
    const char *pt = src->title ? src->title : "";
    const char *px = src->text ? src->text : "";
    dr_text_words(pt, strlen(pt), hashvec_cb, &pw);
    dr_text_words(px, strlen(px), hashvec_cb, &pw);
    rc = pw.status;
    if (rc == DYNRAG_OK)
        rc = dr_gen_put_flat(&b, pick->s, pick->len);
    qword_ctx qx = {question, &pw, &b, 0, DYNRAG_OK};
    if (rc == DYNRAG_OK) {
        dr_text_words(question, strlen(question), leftover_cb, &qx);
        rc = qx.status;
    }
    if (rc == DYNRAG_OK && qx.n_out == 0) {
        rc = dr_buf_putc(&b, ' ');
        if (rc == DYNRAG_OK)
            rc = dr_gen_put_flat(&b, question, strlen(question));
    }
    if (rc != DYNRAG_OK)
        goto cleanup;
    dr_gen_rstrip(&b);
    if (s->n_used + pick->n_words > s->cap_used) {
        size_t cap = (s->n_used + pick->n_words) * 2;
        uint64_t *nu = dr_realloc(s->used, cap * sizeof(*nu));
        if (nu == NULL) {
            rc = DYNRAG_ERR_NOMEM;
            goto cleanup;
        }
        s->used = nu;
        s->cap_used = cap;
    }
    *next = dr_buf_take(&b);
    if (*next == NULL) {
        rc = DYNRAG_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t k = 0; k < pick->n_words; k++)
        if (!has_hash(s->used, s->n_used, pick->words[k]))
            s->used[s->n_used++] = pick->words[k];

cleanup:
    dr_free(cx.c);
    dr_free(pw.h);
    dr_buf_free(&b);
    if (rc != DYNRAG_OK)
        return dr_err_set(err, rc, "reformulate: %s", dynrag_strerror(rc));
    return DYNRAG_OK;
}

/* dr_text_words() callback: counts the question's content words (by stem,
 * once each) and how many of them the passages' word set holds. */
typedef struct cover_ctx {
    const hashvec *have;
    uint64_t seen[QSET_MAX];
    size_t n_seen, n_found;
} cover_ctx;

static int cover_cb(void *user, const char *word, size_t len, size_t s, size_t e)
{
    (void)s;
    (void)e;
    cover_ctx *c = user;
    uint64_t h;
    if (c->n_seen >= QSET_MAX || !dr_gen_content_hash(word, len, &h))
        return 0;
    if (has_hash(c->seen, c->n_seen, h))
        return 0;
    c->seen[c->n_seen++] = h;
    c->n_found += has_hash(c->have->h, c->have->n, h);
    return 0;
}

/* Copies the valid UTF-8 string src into dst[size], cut at a character
 * boundary when it does not fit. */
static void utf8_copy(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size) {
        n = size - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

int dr_reform_sufficiency(const char *question, const dr_passage *passages, size_t n,
                          const dr_titles *titles, dr_sufficiency *out, dynrag_error *err)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (question == NULL || out == NULL || (passages == NULL && n > 0))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "sufficiency: missing argument");
    int rc = DYNRAG_OK;
    size_t held = DR_MIN(n, (size_t)DR_REFORM_HELD_PASSAGES);
    hashvec have = {0};
    for (size_t p = 0; p < held; p++) {
        const char *t = passages[p].title ? passages[p].title : "";
        const char *x = passages[p].text ? passages[p].text : "";
        dr_text_words(t, strlen(t), hashvec_cb, &have);
        dr_text_words(x, strlen(x), hashvec_cb, &have);
    }
    cover_ctx cc;
    memset(&cc, 0, sizeof(cc));
    cc.have = &have;
    if (have.status == DYNRAG_OK)
        dr_text_words(question, strlen(question), cover_cb, &cc);
    out->coverage = cc.n_seen > 0 ? (double)cc.n_found / (double)cc.n_seen : 1.0;

    wordset q;
    q.n = 0;
    dr_text_words(question, strlen(question), qset_cb, &q);
    ctx cx;
    memset(&cx, 0, sizeof(cx));
    cx.q = &q;
    size_t top = DR_MIN(n, (size_t)DR_REFORM_TOP_PASSAGES);
    for (size_t p = 0; p < top && cx.status == DYNRAG_OK; p++) {
        sent_ctx sx = {&cx, passages[p].text ? passages[p].text : "", p};
        dr_text_sentences(sx.text, strlen(sx.text), entity_sentence_cb, &sx);
    }
    rc = have.status != DYNRAG_OK ? have.status : cx.status;
    if (rc != DYNRAG_OK)
        goto cleanup;
    rank_cands(&cx, titles);
    for (size_t i = 0; i < cx.n && !out->has_bridge; i++) {
        const cand *c = &cx.c[i];
        bool fresh = false;
        for (size_t k = 0; k < c->n_words && !fresh; k++)
            fresh = !has_hash(q.h, q.n, c->words[k]);
        if (!fresh)
            continue;
        out->has_bridge = true;
        out->bridge_in_hand = resolved(c, passages, held);
        out->bridge_linked = c->titled;
        dr_buf b = {0};
        rc = dr_gen_put_flat(&b, c->s, c->len);
        if (rc == DYNRAG_OK && b.data != NULL)
            utf8_copy(out->bridge, sizeof(out->bridge), b.data);
        dr_buf_free(&b);
    }
cleanup:
    dr_free(cx.c);
    dr_free(have.h);
    if (rc != DYNRAG_OK)
        return dr_err_set(err, rc, "sufficiency: %s", dynrag_strerror(rc));
    return DYNRAG_OK;
}
