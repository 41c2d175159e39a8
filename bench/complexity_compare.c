/*
 * complexity_compare.c - the query-complexity classifier next to a TF-IDF
 * logistic-regression baseline trained on the same data, on the same
 * evaluation sets, in one run (docs/classifier.md, "Against the linear
 * baseline"; bench/complexity_compare.sh builds the sets and trains).
 *
 * The baseline is implemented here, self-contained: scikit-learn's recipe
 * of a TfidfVectorizer over words plus one over characters, then a
 * multinomial logistic regression:
 *   - text: ASCII lower-cased, white space runs collapsed to one space; with
 *     --strip CHARS those characters are deleted first (the classifier's
 *     tokenizer deletes "?"); everything else, punctuation included, is kept;
 *   - word unigrams and bigrams: runs of letters/digits (core/text.h words);
 *   - character 2..5-grams of each white-space token padded with spaces
 *     (scikit-learn's "char_wb"), punctuation included;
 *   - features hashed to 2^20 buckets (unsigned; the two families use
 *     different hash seeds), TF-IDF with sublinear tf (1 + ln tf) and smooth
 *     idf (ln((1 + N) / (1 + df)) + 1), each family's row L2-normalised,
 *     the two halves scaled by 1/sqrt(2) (a unit row);
 *   - multinomial logistic regression with L2 (C = 10, i.e. l2 = 1/(C N)),
 *     fitted by SGD over seeded shuffles (15 epochs, step lr/(1 + lr l2 t),
 *     lr 0.5) with the weight-scale trick; deterministic.
 *
 * For every --eval set the share of examples whose gold label is predicted
 * (per-source accuracy) is printed for each model, the mean over the --eval
 * sets, and each --extra set (shown, not averaged: the leave-one-source-out
 * share). Prints Markdown.
 *
 * usage: dynrag_bench_complexity_compare --train FILE --eval NAME=FILE ... [--extra NAME=FILE]
 *            [--model NAME=M.safetensors ...] [--seed N]
 */
#include "core/text.h"
#include "core/util.h"
#include "data/labelled.h"
#include "nn/classifier.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETS 16
#define MAX_MODELS 8
#define LR_BITS 20
#define LR_MAX_K 16

/* ---- TF-IDF features ------------------------------------------------------ */

typedef struct feats {
    uint32_t *idx;
    float *val;
    size_t n, cap;
} feats;

typedef struct word_ctx {
    feats *f;
    char prev[72];
    size_t prev_len;
} word_ctx;

static int push(feats *f, uint32_t idx, float v)
{
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 256;
        uint32_t *ni = realloc(f->idx, nc * sizeof(*ni));
        if (ni)
            f->idx = ni;
        float *nv = realloc(f->val, nc * sizeof(*nv));
        if (nv)
            f->val = nv;
        if (!ni || !nv)
            return 1;
        f->cap = nc;
    }
    f->idx[f->n] = idx;
    f->val[f->n++] = v;
    return 0;
}

static uint32_t bucket(const void *p, size_t n, uint64_t seed)
{
    return (uint32_t)(dr_hash64(p, n, seed) & ((1u << LR_BITS) - 1));
}

static int on_word(void *user, const char *w, size_t len, size_t start, size_t end)
{
    (void)start;
    (void)end;
    word_ctx *c = user;
    if (push(c->f, bucket(w, len, 11), 1.0f))
        return 1;
    if (c->prev_len) {
        char buf[160];
        memcpy(buf, c->prev, c->prev_len);
        buf[c->prev_len] = ' ';
        memcpy(buf + c->prev_len + 1, w, len);
        if (push(c->f, bucket(buf, c->prev_len + 1 + len, 11), 1.0f))
            return 1;
    }
    c->prev_len = len < sizeof(c->prev) ? len : sizeof(c->prev) - 1;
    memcpy(c->prev, w, c->prev_len);
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Raw term counts of one text: words into *w, characters into *c (sorted,
 * merged: idx distinct, val = count). */
static int raw_counts(const char *text, const char *strip, feats *w, feats *c)
{
    size_t n = strlen(text), k = 0;
    char *t = malloc(n + 1);
    if (!t)
        return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (strip && ch && strchr(strip, ch))
            continue;
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            if (k > 0 && t[k - 1] != ' ')
                t[k++] = ' ';
            continue;
        }
        t[k++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    while (k > 0 && t[k - 1] == ' ')
        k--;
    t[k] = '\0';
    w->n = c->n = 0;
    word_ctx wc = {.f = w};
    int rc = dr_text_words(t, k, on_word, &wc);
    /* char_wb: each white-space token padded with one space on both sides */
    for (size_t s = 0; s < k && rc == 0;) {
        size_t e = s;
        while (e < k && t[e] != ' ')
            e++;
        char buf[260];
        size_t tl = e - s < 256 ? e - s : 256;
        buf[0] = ' ';
        memcpy(buf + 1, t + s, tl);
        buf[tl + 1] = ' ';
        for (size_t g = 2; g <= 5 && rc == 0; g++)
            for (size_t i = 0; i + g <= tl + 2 && rc == 0; i++)
                rc = push(c, bucket(buf + i, g, 29), 1.0f);
        s = e + 1;
    }
    free(t);
    feats *fs[2] = {w, c};
    for (int q = 0; q < 2 && rc == 0; q++) {
        feats *f = fs[q];
        qsort(f->idx, f->n, sizeof(uint32_t), cmp_u32);
        size_t m = 0;
        for (size_t i = 0; i < f->n;) {
            size_t j = i;
            while (j < f->n && f->idx[j] == f->idx[i])
                j++;
            f->idx[m] = f->idx[i];
            f->val[m++] = (float)(j - i);
            i = j;
        }
        f->n = m;
    }
    return rc;
}

typedef struct lr_model {
    const char *strip;
    float *idf[2];   /* [2^LR_BITS] per family */
    float *w;        /* [K, 2 * 2^LR_BITS] */
    float b[LR_MAX_K];
    int K;
} lr_model;

/* The TF-IDF row of text: out (merged families; word buckets first, char
 * buckets offset by 2^LR_BITS). */
static int tfidf(const lr_model *m, const char *text, feats *w, feats *c, feats *out)
{
    if (raw_counts(text, m->strip, w, c))
        return 1;
    out->n = 0;
    feats *fs[2] = {w, c};
    for (int q = 0; q < 2; q++) {
        double norm = 0;
        for (size_t i = 0; i < fs[q]->n; i++) {
            float v = (1.0f + logf(fs[q]->val[i])) * m->idf[q][fs[q]->idx[i]];
            fs[q]->val[i] = v;
            norm += (double)v * v;
        }
        float inv = norm > 0 ? (float)(1.0 / sqrt(2.0 * norm)) : 0.0f;
        for (size_t i = 0; i < fs[q]->n; i++)
            if (push(out, fs[q]->idx[i] + (q ? 1u << LR_BITS : 0), fs[q]->val[i] * inv))
                return 1;
    }
    return 0;
}

static void lr_probs(const lr_model *m, const feats *x, float scale, float *p)
{
    size_t D = (size_t)2 << LR_BITS;
    float mx = -INFINITY, sum = 0;
    for (int k = 0; k < m->K; k++) {
        float s = 0;
        for (size_t i = 0; i < x->n; i++)
            s += x->val[i] * m->w[(size_t)k * D + x->idx[i]];
        p[k] = s * scale + m->b[k];
        mx = p[k] > mx ? p[k] : mx;
    }
    for (int k = 0; k < m->K; k++) {
        p[k] = expf(p[k] - mx);
        sum += p[k];
    }
    for (int k = 0; k < m->K; k++)
        p[k] /= sum;
}

static void lr_free(lr_model *m)
{
    free(m->idf[0]);
    free(m->idf[1]);
    free(m->w);
}

/* Fits m on the train set (labels = train label ids). */
static int lr_train(lr_model *m, const dr_labelled_set *tr, uint64_t seed)
{
    size_t H = (size_t)1 << LR_BITS, D = 2 * H, N = tr->n;
    int K = m->K = (int)tr->n_labels, rc = 1;
    feats w = {0}, c = {0};
    feats *rows = calloc(N, sizeof(feats));
    size_t *perm = malloc(N * sizeof(size_t));
    uint32_t *df[2] = {calloc(H, sizeof(uint32_t)), calloc(H, sizeof(uint32_t))};
    m->idf[0] = malloc(H * sizeof(float));
    m->idf[1] = malloc(H * sizeof(float));
    m->w = calloc((size_t)K * D, sizeof(float));
    if (!rows || !perm || !df[0] || !df[1] || !m->idf[0] || !m->idf[1] || !m->w ||
        K > LR_MAX_K)
        goto cleanup;
    for (size_t i = 0; i < N; i++) {
        if (raw_counts(tr->text[i], m->strip, &w, &c))
            goto cleanup;
        for (size_t j = 0; j < w.n; j++)
            df[0][w.idx[j]]++;
        for (size_t j = 0; j < c.n; j++)
            df[1][c.idx[j]]++;
    }
    for (int q = 0; q < 2; q++)
        for (size_t h = 0; h < H; h++)
            m->idf[q][h] = (float)(log((1.0 + (double)N) / (1.0 + df[q][h])) + 1.0);
    for (size_t i = 0; i < N; i++)
        if (tfidf(m, tr->text[i], &w, &c, &rows[i]))
            goto cleanup;
    /* SGD with L2 via the weight scale: W_true = scale * w */
    double l2 = 1.0 / (10.0 * (double)N), lr0 = 0.5, scale = 1.0;
    size_t t = 0;
    dr_rng rng;
    dr_rng_seed(&rng, seed);
    for (size_t i = 0; i < N; i++)
        perm[i] = i;
    float p[LR_MAX_K];
    for (int ep = 0; ep < 15; ep++) {
        for (size_t i = N; i > 1; i--) {
            size_t j = (size_t)dr_rng_below(&rng, i), tmp = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = tmp;
        }
        for (size_t r = 0; r < N; r++, t++) {
            const feats *x = &rows[perm[r]];
            int y = tr->label_id[perm[r]];
            double eta = lr0 / (1.0 + lr0 * l2 * (double)t);
            lr_probs(m, x, (float)scale, p);
            scale *= 1.0 - eta * l2;
            if (scale < 1e-6) { /* fold the scale into the weights */
                for (size_t q = 0; q < (size_t)K * D; q++)
                    m->w[q] *= (float)scale;
                scale = 1.0;
            }
            for (int k = 0; k < K; k++) {
                float g = p[k] - (k == y ? 1.0f : 0.0f);
                float *wk = m->w + (size_t)k * D;
                for (size_t q = 0; q < x->n; q++)
                    wk[x->idx[q]] -= (float)(eta * g / scale) * x->val[q];
                m->b[k] -= (float)eta * g;
            }
        }
    }
    for (size_t q = 0; q < (size_t)K * D; q++)
        m->w[q] *= (float)scale;
    rc = 0;
cleanup:
    for (size_t i = 0; rows && i < N; i++) {
        free(rows[i].idx);
        free(rows[i].val);
    }
    free(rows);
    free(perm);
    free(df[0]);
    free(df[1]);
    free(w.idx);
    free(w.val);
    free(c.idx);
    free(c.val);
    return rc;
}

/* ---- the comparison -------------------------------------------------------- */

typedef struct named {
    const char *name, *path;
    dr_labelled_set *set;
    bool extra;
} named;

static int split_arg(const char *a, named *out)
{
    const char *eq = strchr(a, '=');
    if (!eq || eq == a || !eq[1])
        return 1;
    out->name = dr_strndup(a, (size_t)(eq - a));
    out->path = eq + 1;
    return out->name == NULL;
}

/* Share of s whose gold label is predicted; model = NULL uses lr. */
static double share(const dr_classifier *cls, const lr_model *lr, const dr_labelled_set *tr,
                    const dr_labelled_set *s, size_t *hits)
{
    feats w = {0}, c = {0}, x = {0};
    float p[64];
    dynrag_error err;
    size_t ok = 0;
    for (size_t i = 0; i < s->n; i++) {
        int best = 0, K;
        const char *pred;
        if (cls) {
            K = (int)dr_classifier_n_labels(cls, 0);
            if (dr_classifier_predict(cls, 0, s->text[i], p, &err) != DYNRAG_OK)
                break;
        } else {
            K = lr->K;
            if (tfidf(lr, s->text[i], &w, &c, &x))
                break;
            lr_probs(lr, &x, 1.0f, p);
        }
        for (int k = 1; k < K; k++)
            if (p[k] > p[best])
                best = k;
        pred = cls ? dr_classifier_label(cls, 0, (size_t)best) : tr->label_names[best];
        ok += strcmp(pred, s->label[i]) == 0;
    }
    free(w.idx);
    free(w.val);
    free(c.idx);
    free(c.val);
    free(x.idx);
    free(x.val);
    *hits = ok;
    return s->n ? (double)ok / (double)s->n : 0.0;
}

static void row(const char *name, const dr_classifier *cls, const lr_model *lr,
                const dr_labelled_set *tr, const named *sets, int ns)
{
    double sum = 0;
    int nin = 0;
    printf("| %s |", name);
    for (int i = 0; i < ns; i++) {
        size_t hits = 0;
        double v = share(cls, lr, tr, sets[i].set, &hits);
        printf(" %.4f (%zu/%zu) |", v, hits, sets[i].set->n);
        if (!sets[i].extra) {
            sum += v;
            nin++;
        }
        /* the mean column sits after the last --eval set */
        if (!sets[i].extra && (i + 1 == ns || sets[i + 1].extra))
            printf(" **%.4f** |", nin ? sum / nin : 0.0);
    }
    printf("\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *train = NULL;
    named sets[MAX_SETS], models[MAX_MODELS];
    int ns = 0, nm = 0, rc = 1;
    uint64_t seed = 1;
    memset(sets, 0, sizeof(sets));
    memset(models, 0, sizeof(models));
    dr_labelled_set *tr = NULL;
    dr_classifier *cls[MAX_MODELS] = {0};
    lr_model lr[2] = {{.strip = NULL}, {.strip = "?"}};
    dynrag_error err;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            goto usage;
        i++;
        if (strcmp(a, "--train") == 0)
            train = v;
        else if ((strcmp(a, "--eval") == 0 || strcmp(a, "--extra") == 0) && ns < MAX_SETS) {
            if (split_arg(v, &sets[ns]))
                goto usage;
            sets[ns++].extra = strcmp(a, "--extra") == 0;
        } else if (strcmp(a, "--model") == 0 && nm < MAX_MODELS) {
            if (split_arg(v, &models[nm++]))
                goto usage;
        } else if (strcmp(a, "--seed") == 0) {
            long long s = 0;
            if (dr_parse_ll(v, 0, INT64_MAX, &s) != DYNRAG_OK)
                goto usage;
            seed = (uint64_t)s;
        } else
            goto usage;
    }
    if (!train || ns == 0)
        goto usage;
    /* --eval sets first, then --extra ones (the mean column follows the former) */
    for (int i = 0, j = 0; i < ns; i++)
        if (!sets[i].extra) {
            named t = sets[i];
            memmove(&sets[j + 1], &sets[j], (size_t)(i - j) * sizeof(named));
            sets[j++] = t;
        }
    if (dr_labelled_load(train, &tr, &err) != DYNRAG_OK) {
        fprintf(stderr, "%s\n", dynrag_errmsg(&err));
        goto cleanup;
    }
    for (int i = 0; i < ns; i++)
        if (dr_labelled_load(sets[i].path, &sets[i].set, &err) != DYNRAG_OK) {
            fprintf(stderr, "%s\n", dynrag_errmsg(&err));
            goto cleanup;
        }
    for (int i = 0; i < nm; i++)
        if (dr_classifier_load(models[i].path, &cls[i], &err) != DYNRAG_OK) {
            fprintf(stderr, "%s\n", dynrag_errmsg(&err));
            goto cleanup;
        }
    for (int q = 0; q < 2; q++) {
        int64_t t0 = dr_now_us();
        if (lr_train(&lr[q], tr, seed)) {
            fprintf(stderr, "baseline training failed (out of memory or > %d labels)\n",
                    LR_MAX_K);
            goto cleanup;
        }
        fprintf(stderr, "baseline %d trained in %.1f s\n", q, (double)(dr_now_us() - t0) / 1e6);
    }
    printf("Train: `%s` (%zu examples). Share of each set labelled with its gold label; "
           "mean over the evaluation sets.\n\n| model |", train, tr->n);
    for (int i = 0; i < ns; i++) {
        printf(" %s%s |", sets[i].name, sets[i].extra ? " (held-out source)" : "");
        if (!sets[i].extra && (i + 1 == ns || sets[i + 1].extra))
            printf(" mean |");
    }
    printf("\n|---|");
    for (int i = 0; i < ns; i++)
        printf("---|%s", !sets[i].extra && (i + 1 == ns || sets[i + 1].extra) ? "---|" : "");
    printf("\n");
    row("TF-IDF word+char LR (punctuation kept)", NULL, &lr[0], tr, sets, ns);
    row("TF-IDF word+char LR (`?` deleted)", NULL, &lr[1], tr, sets, ns);
    for (int i = 0; i < nm; i++)
        row(models[i].name, cls[i], NULL, tr, sets, ns);
    rc = 0;
    goto cleanup;
usage:
    fprintf(stderr, "usage: dynrag_bench_complexity_compare --train FILE --eval NAME=FILE ...\n"
                    "       [--extra NAME=FILE] [--model NAME=M.safetensors ...] [--seed N]\n");
    rc = 2;
cleanup:
    for (int i = 0; i < ns; i++) {
        free((char *)sets[i].name);
        dr_labelled_free(sets[i].set);
    }
    for (int i = 0; i < nm; i++) {
        free((char *)models[i].name);
        dr_classifier_free(cls[i]);
    }
    lr_free(&lr[0]);
    lr_free(&lr[1]);
    dr_labelled_free(tr);
    return rc;
}
