/* context.c - context packing: de-duplication, budget, rendering. */
#include "generate/context.h"

#include "core/text.h"
#include "core/util.h"
#include "generate/gen_text.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { KIND_TOPK, KIND_TOKENS, KIND_DOCUMENTS };

/* A sorted set of shingle hashes. */
typedef struct shingles {
    uint64_t *h;
    size_t n;
} shingles;

typedef struct shingle_ctx {
    uint64_t w[3]; /* last three word hashes */
    size_t seen;
    uint64_t *h;
    size_t n, cap;
    int status;
} shingle_ctx;

static int shingle_push(shingle_ctx *c, uint64_t v)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        uint64_t *nh = dr_realloc(c->h, cap * sizeof(*nh));
        if (nh == NULL) {
            c->status = DYNRAG_ERR_NOMEM;
            return 1;
        }
        c->h = nh;
        c->cap = cap;
    }
    c->h[c->n++] = v;
    return 0;
}

static int shingle_word_cb(void *user, const char *word, size_t len, size_t s, size_t e)
{
    (void)s;
    (void)e;
    shingle_ctx *c = user;
    c->w[0] = c->w[1];
    c->w[1] = c->w[2];
    c->w[2] = dr_hash64(word, len, 0);
    c->seen++;
    if (c->seen >= 3)
        return shingle_push(c, dr_hash64(c->w, sizeof(c->w), 3));
    return 0;
}

/* The 3-word shingles of text (single words when it has fewer than three),
 * sorted and unique. */
static int make_shingles(const char *text, shingles *out)
{
    shingle_ctx c;
    memset(&c, 0, sizeof(c));
    dr_text_words(text, strlen(text), shingle_word_cb, &c);
    if (c.status == DYNRAG_OK && c.seen > 0 && c.seen < 3)
        for (size_t i = 3 - c.seen; i < 3 && c.status == DYNRAG_OK; i++)
            shingle_push(&c, c.w[i]);
    if (c.status != DYNRAG_OK) {
        dr_free(c.h);
        return c.status;
    }
    if (c.n > 0)
        qsort(c.h, c.n, sizeof(uint64_t), dr_u64_cmp);
    size_t m = 0;
    for (size_t i = 0; i < c.n; i++)
        if (m == 0 || c.h[m - 1] != c.h[i])
            c.h[m++] = c.h[i];
    out->h = c.h;
    out->n = m;
    return DYNRAG_OK;
}

static double jaccard(const shingles *a, const shingles *b)
{
    if (a->n == 0 && b->n == 0)
        return 1.0;
    size_t i = 0, j = 0, inter = 0;
    while (i < a->n && j < b->n) {
        if (a->h[i] == b->h[j]) {
            inter++;
            i++;
            j++;
        } else if (a->h[i] < b->h[j]) {
            i++;
        } else {
            j++;
        }
    }
    return (double)inter / (double)(a->n + b->n - inter);
}

static size_t tokens_of(size_t words)
{
    return (words * 4 + 2) / 3;
}

int dr_estimate_tokens(const char *text)
{
    if (text == NULL)
        return 0;
    size_t t = tokens_of(dr_text_word_count(text, strlen(text)));
    return t > INT_MAX ? INT_MAX : (int)t;
}

typedef struct fit_ctx {
    const char *text;
    size_t budget_words; /* words still allowed for the text */
    size_t words;        /* words of the whole sentences taken */
    size_t end;          /* end of the last whole sentence taken */
    bool stopped;
} fit_ctx;

static int fit_sentence_cb(void *user, size_t start, size_t end)
{
    fit_ctx *f = user;
    size_t w = dr_text_word_count(f->text + start, end - start);
    if (f->words + w > f->budget_words) {
        f->stopped = true;
        return 1;
    }
    f->words += w;
    f->end = end;
    return 0;
}

static bool same_passage(enum kind kind, const dr_passage *a, const dr_passage *b)
{
    if (kind == KIND_DOCUMENTS)
        return a->doc_id != NULL && b->doc_id != NULL && strcmp(a->doc_id, b->doc_id) == 0;
    return a->chunk_id >= 0 && a->chunk_id == b->chunk_id;
}

int dr_context_pack(const dr_context_config *cfg, const dr_passage *in, size_t n,
                    size_t **kept, size_t *n_kept, char **text, int *tokens, dynrag_error *err)
{
    if (kept != NULL)
        *kept = NULL;
    if (n_kept != NULL)
        *n_kept = 0;
    if (text != NULL)
        *text = NULL;
    if (tokens != NULL)
        *tokens = 0;
    if (cfg == NULL || kept == NULL || n_kept == NULL || text == NULL || (in == NULL && n > 0))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "context: missing argument");
    enum kind kind;
    if (cfg->kind != NULL && strcmp(cfg->kind, "topk") == 0)
        kind = KIND_TOPK;
    else if (cfg->kind != NULL && strcmp(cfg->kind, "tokens") == 0)
        kind = KIND_TOKENS;
    else if (cfg->kind != NULL && strcmp(cfg->kind, "documents") == 0)
        kind = KIND_DOCUMENTS;
    else
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "context: unknown kind \"%s\" (expected topk, tokens or documents)",
                          cfg->kind ? cfg->kind : "(null)");
    if (kind == KIND_TOPK && cfg->k < 1)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "context: topk needs k >= 1 (got %d)",
                          cfg->k);
    if (kind != KIND_TOPK && cfg->max_tokens < 1)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "context: %s needs max_tokens >= 1 (got %d)", cfg->kind,
                          cfg->max_tokens);
    if (cfg->k < 0 || cfg->max_tokens < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "context: negative k or max_tokens");
    size_t limit_k = cfg->k > 0 ? (size_t)cfg->k : SIZE_MAX;
    size_t budget = cfg->max_tokens > 0 ? (size_t)cfg->max_tokens : SIZE_MAX;

    int rc = DYNRAG_OK;
    dr_buf b = {0};
    size_t *idx = NULL;
    shingles *sh = NULL;
    size_t n_idx = 0, words = 0;
    if (n > 0) {
        idx = dr_malloc(DR_MIN(n, limit_k) * sizeof(*idx));
        sh = dr_calloc(DR_MIN(n, limit_k), sizeof(*sh));
        if (idx == NULL || sh == NULL) {
            rc = DYNRAG_ERR_NOMEM;
            goto cleanup;
        }
    }
    for (size_t i = 0; i < n && n_idx < limit_k; i++) {
        const dr_passage *p = &in[i];
        const char *ptext = p->text ? p->text : "";
        const char *title = p->title ? p->title : "";
        bool dup = false;
        for (size_t j = 0; j < n_idx && !dup; j++)
            dup = same_passage(kind, &in[idx[j]], p);
        if (dup)
            continue;
        shingles cur = {0};
        rc = make_shingles(ptext, &cur);
        if (rc != DYNRAG_OK)
            goto cleanup;
        for (size_t j = 0; j < n_idx && !dup; j++)
            dup = jaccard(&sh[j], &cur) >= DR_CONTEXT_DUP_JACCARD;
        if (dup) {
            dr_free(cur.h);
            continue;
        }
        /* Words of the header "[n] Title" and of the text. */
        char marker[32];
        snprintf(marker, sizeof(marker), "[%zu]", n_idx + 1);
        size_t head_w = dr_text_word_count(marker, strlen(marker)) +
                        dr_text_word_count(title, strlen(title));
        size_t text_len = strlen(ptext);
        size_t text_w = dr_text_word_count(ptext, text_len);
        size_t cut = text_len;
        bool last = false;
        if (budget != SIZE_MAX && tokens_of(words + head_w + text_w) > budget) {
            /* Largest whole-sentence prefix that fits: the words allowed
             * are the largest w with tokens_of(words + head_w + w) <= budget. */
            size_t max_total = (budget * 3) / 4; /* tokens_of(x) <= budget <=> x <= 3*budget/4 */
            fit_ctx f = {ptext, 0, 0, 0, false};
            if (max_total > words + head_w)
                f.budget_words = max_total - words - head_w;
            if (max_total > words + head_w)
                dr_text_sentences(ptext, text_len, fit_sentence_cb, &f);
            if (f.words == 0) {
                dr_free(cur.h);
                break; /* not even one sentence fits: drop it and stop */
            }
            cut = f.end;
            text_w = f.words;
            last = true;
        }
        if (n_idx > 0)
            rc = dr_buf_puts(&b, "\n\n");
        if (rc == DYNRAG_OK)
            rc = dr_buf_puts(&b, marker);
        if (rc == DYNRAG_OK && title[0] != '\0') {
            rc = dr_buf_putc(&b, ' ');
            if (rc == DYNRAG_OK)
                rc = dr_gen_put_flat(&b, title, strlen(title));
            dr_gen_rstrip(&b);
        }
        if (rc == DYNRAG_OK)
            rc = dr_buf_putc(&b, '\n');
        if (rc == DYNRAG_OK)
            rc = dr_gen_put_flat(&b, ptext, cut);
        dr_gen_rstrip(&b);
        if (rc != DYNRAG_OK) {
            dr_free(cur.h);
            goto cleanup;
        }
        sh[n_idx] = cur;
        idx[n_idx++] = i;
        words += head_w + text_w;
        if (last)
            break;
    }
    *text = dr_buf_take(&b);
    if (*text == NULL) {
        rc = DYNRAG_ERR_NOMEM;
        goto cleanup;
    }
    if (tokens != NULL)
        *tokens = tokens_of(words) > INT_MAX ? INT_MAX : (int)tokens_of(words);
    if (n_idx > 0) {
        *kept = idx;
        *n_kept = n_idx;
        idx = NULL;
    }

cleanup:
    if (sh != NULL)
        for (size_t j = 0; j < n_idx; j++)
            dr_free(sh[j].h);
    dr_free(sh);
    dr_free(idx);
    dr_buf_free(&b);
    if (rc != DYNRAG_OK) {
        dr_free(*text);
        *text = NULL;
        return dr_err_set(err, rc, "context: %s", dynrag_strerror(rc));
    }
    return DYNRAG_OK;
}

/* ---- coverage order -------------------------------------------------------------- */

/* The question's content-word keys (dr_gen_content_hash), distinct. */
typedef struct cover_words {
    uint64_t h[DR_CONTEXT_COVER_WORDS];
    size_t n;
} cover_words;

static int question_word_cb(void *user, const char *word, size_t len, size_t s, size_t e)
{
    (void)s;
    (void)e;
    cover_words *q = user;
    uint64_t h;
    if (q->n >= DR_CONTEXT_COVER_WORDS || !dr_gen_content_hash(word, len, &h))
        return 0;
    for (size_t i = 0; i < q->n; i++)
        if (q->h[i] == h)
            return 0;
    q->h[q->n++] = h;
    return 0;
}

/* Sets bit i of *mask for each question word i that a passage word matches. */
typedef struct mask_ctx {
    const cover_words *q;
    uint64_t mask;
} mask_ctx;

static int passage_word_cb(void *user, const char *word, size_t len, size_t s, size_t e)
{
    (void)s;
    (void)e;
    mask_ctx *m = user;
    uint64_t h;
    if (!dr_gen_content_hash(word, len, &h))
        return 0;
    for (size_t i = 0; i < m->q->n; i++)
        if (m->q->h[i] == h)
            m->mask |= UINT64_C(1) << i;
    return 0;
}

int dr_context_cover_order(const char *question, const dr_passage *in, size_t n, size_t n_fixed,
                           size_t *order, dynrag_error *err)
{
    if (question == NULL || order == NULL || (in == NULL && n > 0))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "context: missing argument");
    cover_words q = {.n = 0};
    dr_text_words(question, strlen(question), question_word_cb, &q);
    uint64_t *mask = dr_calloc(n ? n : 1, sizeof(*mask));
    bool *placed = dr_calloc(n ? n : 1, sizeof(*placed));
    if (mask == NULL || placed == NULL) {
        dr_free(mask);
        dr_free(placed);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n && q.n > 0; i++) {
        mask_ctx m = {&q, 0};
        const char *title = in[i].title ? in[i].title : "";
        const char *text = in[i].text ? in[i].text : "";
        dr_text_words(title, strlen(title), passage_word_cb, &m);
        dr_text_words(text, strlen(text), passage_word_cb, &m);
        mask[i] = m.mask;
    }
    uint64_t covered = 0;
    size_t next = 0;
    for (; next < n && next < n_fixed; next++) {
        order[next] = next;
        placed[next] = true;
        covered |= mask[next];
    }
    for (; next < n; next++) {
        size_t best = n;
        int best_gain = -1;
        for (size_t i = 0; i < n; i++) {
            if (placed[i])
                continue;
            int gain = __builtin_popcountll(mask[i] & ~covered);
            if (gain > best_gain) {
                best_gain = gain;
                best = i;
            }
        }
        if (best_gain == 0)
            break; /* nothing left to cover: the rest keep their order */
        order[next] = best;
        placed[best] = true;
        covered |= mask[best];
    }
    for (size_t i = 0; i < n && next < n; i++)
        if (!placed[i])
            order[next++] = i;
    dr_free(mask);
    dr_free(placed);
    return DYNRAG_OK;
}
