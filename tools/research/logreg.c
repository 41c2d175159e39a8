/* logreg.c - hashed-feature multinomial logistic regression (logreg.h). */
#include "research/logreg.h"

#include "core/text.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT_BYTES 16384 /* longer texts are featurised on their prefix */

struct dr_logreg {
    dr_logreg_options opt;
    int K;          /* classes */
    size_t D;       /* buckets = 1 << bits */
    float *W;       /* [K][D] */
    float *b;       /* [K] */
    float *idf;     /* [D], NULL when binary */
};

typedef struct feat {
    uint32_t idx;
    float val;
} feat;

/* A sparse feature vector under construction; caller frees v. */
typedef struct fvec {
    feat *v;
    size_t n, alloc;
} fvec;

void dr_logreg_options_init(dr_logreg_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->bits = 18;
    opt->words = true;
    opt->char_min = 3;
    opt->char_max = 5;
    opt->tfidf = true;
    opt->l2 = 1e-5;
    opt->lr = 0.5;
    opt->epochs = 10;
    opt->seed = 1;
}

void dr_logreg_free(dr_logreg *m)
{
    if (m == NULL)
        return;
    dr_free(m->W);
    dr_free(m->b);
    dr_free(m->idf);
    dr_free(m);
}

int dr_logreg_n_classes(const dr_logreg *m)
{
    return m->K;
}

static int fvec_push(fvec *f, uint64_t h, uint32_t mask)
{
    if (f->n == f->alloc) {
        size_t na = f->alloc ? f->alloc * 2 : 256;
        feat *v = dr_realloc(f->v, na * sizeof(*v));
        if (v == NULL)
            return DYNRAG_ERR_NOMEM;
        f->v = v;
        f->alloc = na;
    }
    f->v[f->n++] = (feat){.idx = (uint32_t)(h & mask), .val = (h >> 63) ? -1.0f : 1.0f};
    return DYNRAG_OK;
}

typedef struct word_ctx {
    dr_buf joined;     /* " w1 w2 ... " */
    size_t prev_start; /* offset of the previous word in joined, or SIZE_MAX */
    size_t prev_len;
    fvec *f;
    uint32_t mask;
    bool words;
    int rc;
} word_ctx;

static int on_word(void *user, const char *word, size_t len, size_t start, size_t end)
{
    (void)start;
    (void)end;
    word_ctx *c = user;
    if (c->joined.len == 0 && dr_buf_putc(&c->joined, ' ') != DYNRAG_OK)
        goto oom;
    size_t at = c->joined.len;
    if (dr_buf_append(&c->joined, word, len) != DYNRAG_OK || dr_buf_putc(&c->joined, ' ') != 0)
        goto oom;
    if (c->words) {
        if (fvec_push(c->f, dr_hash64(word, len, 1), c->mask) != DYNRAG_OK)
            goto oom;
        if (c->prev_start != SIZE_MAX) {
            /* bigram "prev word": the bytes from prev_start to the end of word */
            const char *bg = c->joined.data + c->prev_start;
            size_t bl = at + len - c->prev_start;
            if (fvec_push(c->f, dr_hash64(bg, bl, 2), c->mask) != DYNRAG_OK)
                goto oom;
        }
    }
    c->prev_start = at;
    c->prev_len = len;
    return 0;
oom:
    c->rc = DYNRAG_ERR_NOMEM;
    return 1;
}

static int cmp_feat(const void *a, const void *b)
{
    uint32_t x = ((const feat *)a)->idx, y = ((const feat *)b)->idx;
    return (x > y) - (x < y);
}

/*
 * Extracts text's raw features into f: sorted unique buckets with signed
 * counts (zero sums dropped). f->v is reused across calls; caller frees.
 */
static int extract(const dr_logreg_options *opt, const char *text, fvec *f)
{
    f->n = 0;
    uint32_t mask = (uint32_t)((1u << opt->bits) - 1);
    word_ctx c = {.prev_start = SIZE_MAX, .f = f, .mask = mask, .words = opt->words};
    size_t len = strlen(text);
    if (len > MAX_TEXT_BYTES)
        len = MAX_TEXT_BYTES;
    dr_text_words(text, len, on_word, &c);
    int rc = c.rc;
    if (rc == DYNRAG_OK && opt->char_min > 0 && c.joined.len > 0) {
        const char *s = c.joined.data;
        for (int n = opt->char_min; n <= opt->char_max && rc == DYNRAG_OK; n++)
            for (size_t i = 0; i + (size_t)n <= c.joined.len; i++)
                if ((rc = fvec_push(f, dr_hash64(s + i, (size_t)n, 3), mask)) != DYNRAG_OK)
                    break;
    }
    dr_buf_free(&c.joined);
    if (rc != DYNRAG_OK)
        return rc;
    if (f->n > 1)
        qsort(f->v, f->n, sizeof(feat), cmp_feat);
    size_t k = 0;
    for (size_t i = 0; i < f->n;) {
        uint32_t idx = f->v[i].idx;
        float sum = 0;
        while (i < f->n && f->v[i].idx == idx)
            sum += f->v[i++].val;
        if (sum != 0)
            f->v[k++] = (feat){.idx = idx, .val = sum};
    }
    f->n = k;
    return DYNRAG_OK;
}

/* Turns raw signed counts into the model's values and L2-normalises. */
static void weigh(const dr_logreg_options *opt, const float *idf, fvec *f)
{
    double norm = 0;
    for (size_t i = 0; i < f->n; i++) {
        float v = f->v[i].val;
        float s = v < 0 ? -1.0f : 1.0f;
        if (opt->tfidf)
            v = s * (1.0f + logf(fabsf(v))) * (idf ? idf[f->v[i].idx] : 1.0f);
        else
            v = s;
        f->v[i].val = v;
        norm += (double)v * v;
    }
    if (norm > 0) {
        float inv = (float)(1.0 / sqrt(norm));
        for (size_t i = 0; i < f->n; i++)
            f->v[i].val *= inv;
    }
}

/* Softmax of z[K] in place. */
static void softmax(float *z, int K)
{
    float mx = z[0];
    for (int k = 1; k < K; k++)
        mx = z[k] > mx ? z[k] : mx;
    double sum = 0;
    for (int k = 0; k < K; k++) {
        z[k] = expf(z[k] - mx);
        sum += z[k];
    }
    for (int k = 0; k < K; k++)
        z[k] = (float)(z[k] / sum);
}

static int check_opts(const dr_logreg_options *o, dynrag_error *err)
{
    if (o->bits < 10 || o->bits > 24)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "logreg: bits %d outside 10..24", o->bits);
    if (o->char_min < 0 || (o->char_min > 0 && (o->char_max < o->char_min || o->char_max > 8)))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "logreg: bad char n-gram range %d..%d",
                          o->char_min, o->char_max);
    if (!o->words && o->char_min == 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "logreg: no features enabled");
    if (!(o->l2 >= 0 && o->l2 < 1) || !(o->lr > 0 && o->lr <= 100))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "logreg: l2 %g or lr %g out of range", o->l2,
                          o->lr);
    if (o->epochs < 1 || o->epochs > 1000)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "logreg: epochs %d outside 1..1000",
                          o->epochs);
    return DYNRAG_OK;
}

int dr_logreg_train(const dr_logreg_options *opt, size_t n, const char *const *text,
                    const int *label, int n_classes, dr_logreg **out, dynrag_error *err)
{
    *out = NULL;
    int rc = check_opts(opt, err);
    if (rc != DYNRAG_OK)
        return rc;
    if (n == 0 || n_classes < 2 || n_classes > DR_LOGREG_MAX_CLASSES)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "logreg: need examples and 2..%d classes",
                          DR_LOGREG_MAX_CLASSES);
    for (size_t i = 0; i < n; i++)
        if (label[i] < 0 || label[i] >= n_classes || text[i] == NULL)
            return dr_err_set(err, DYNRAG_ERR_INVALID, "logreg: example %zu: label %d outside "
                              "0..%d or no text", i, label[i], n_classes - 1);

    fvec f = {0};
    feat **X = NULL;    /* [n] weighted rows */
    size_t *nnz = NULL; /* [n] */
    size_t *order = NULL;
    dr_logreg *m = dr_calloc(1, sizeof(*m));
    if (m == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    m->opt = *opt;
    m->K = n_classes;
    m->D = (size_t)1 << opt->bits;
    int K = n_classes;
    m->W = dr_calloc((size_t)K * m->D, sizeof(float));
    m->b = dr_calloc((size_t)K, sizeof(float));
    X = dr_calloc(n, sizeof(*X));
    nnz = dr_calloc(n, sizeof(*nnz));
    order = dr_malloc(n * sizeof(*order));
    if (m->W == NULL || m->b == NULL || X == NULL || nnz == NULL || order == NULL)
        goto oom;

    /* Features of every example; document frequencies for the idf. */
    double *df = NULL;
    if (opt->tfidf) {
        df = dr_calloc(m->D, sizeof(double));
        m->idf = dr_malloc(m->D * sizeof(float));
        if (df == NULL || m->idf == NULL) {
            dr_free(df);
            goto oom;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (extract(opt, text[i], &f) != DYNRAG_OK) {
            dr_free(df);
            goto oom;
        }
        X[i] = dr_malloc((f.n ? f.n : 1) * sizeof(feat));
        if (X[i] == NULL) {
            dr_free(df);
            goto oom;
        }
        if (f.n > 0)
            memcpy(X[i], f.v, f.n * sizeof(feat));
        nnz[i] = f.n;
        if (df)
            for (size_t j = 0; j < f.n; j++)
                df[f.v[j].idx] += 1;
    }
    if (df) {
        for (size_t d = 0; d < m->D; d++)
            m->idf[d] = (float)(log((1.0 + (double)n) / (1.0 + df[d])) + 1.0);
        dr_free(df);
    }
    for (size_t i = 0; i < n; i++) {
        fvec row = {.v = X[i], .n = nnz[i], .alloc = nnz[i]};
        weigh(opt, m->idf, &row);
    }

    /* SGD with W = scale * V (V stored in m->W). */
    dr_rng rng;
    dr_rng_seed(&rng, opt->seed);
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    double cw[DR_LOGREG_MAX_CLASSES];
    for (int k = 0; k < K; k++)
        cw[k] = 0;
    for (size_t i = 0; i < n; i++)
        cw[label[i]] += 1;
    for (int k = 0; k < K; k++)
        cw[k] = (opt->balanced && cw[k] > 0) ? (double)n / ((double)K * cw[k]) : 1.0;
    double scale = 1.0;
    uint64_t t = 0;
    float z[DR_LOGREG_MAX_CLASSES];
    for (int ep = 0; ep < opt->epochs; ep++) {
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)dr_rng_below(&rng, i);
            size_t tmp = order[i - 1];
            order[i - 1] = order[j];
            order[j] = tmp;
        }
        for (size_t r = 0; r < n; r++) {
            size_t i = order[r];
            double eta = opt->lr / (1.0 + opt->lr * opt->l2 * (double)t);
            t++;
            const feat *x = X[i];
            for (int k = 0; k < K; k++) {
                const float *w = m->W + (size_t)k * m->D;
                double s = 0;
                for (size_t j = 0; j < nnz[i]; j++)
                    s += (double)w[x[j].idx] * x[j].val;
                z[k] = (float)(s * scale) + m->b[k];
            }
            softmax(z, K);
            scale *= 1.0 - eta * opt->l2;
            for (int k = 0; k < K; k++) {
                double g = ((double)z[k] - (k == label[i] ? 1.0 : 0.0)) * cw[label[i]];
                float *w = m->W + (size_t)k * m->D;
                float step = (float)(eta * g / scale);
                for (size_t j = 0; j < nnz[i]; j++)
                    w[x[j].idx] -= step * x[j].val;
                m->b[k] -= (float)(eta * g);
            }
            if (scale < 1e-6) {
                for (size_t d = 0; d < (size_t)K * m->D; d++)
                    m->W[d] = (float)(m->W[d] * scale);
                scale = 1.0;
            }
        }
    }
    for (size_t d = 0; d < (size_t)K * m->D; d++)
        m->W[d] = (float)(m->W[d] * scale);
    *out = m;
    m = NULL;
    rc = DYNRAG_OK;
    goto cleanup;
oom:
    rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "logreg: out of memory");
cleanup:
    if (X)
        for (size_t i = 0; i < n; i++)
            dr_free(X[i]);
    dr_free(X);
    dr_free(nnz);
    dr_free(order);
    dr_free(f.v);
    dr_logreg_free(m);
    return rc;
}

int dr_logreg_predict(const dr_logreg *m, const char *text, float *probs, dynrag_error *err)
{
    fvec f = {0};
    if (extract(&m->opt, text ? text : "", &f) != DYNRAG_OK) {
        dr_free(f.v);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "logreg: out of memory");
    }
    weigh(&m->opt, m->idf, &f);
    float z[DR_LOGREG_MAX_CLASSES];
    for (int k = 0; k < m->K; k++) {
        const float *w = m->W + (size_t)k * m->D;
        double s = 0;
        for (size_t j = 0; j < f.n; j++)
            s += (double)w[f.v[j].idx] * f.v[j].val;
        z[k] = (float)s + m->b[k];
    }
    dr_free(f.v);
    softmax(z, m->K);
    memcpy(probs, z, (size_t)m->K * sizeof(float));
    return DYNRAG_OK;
}
