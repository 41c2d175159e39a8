/* builtin.c - the built-in embedder: hashed word and character n-grams. */
#include "embed/builtin.h"

#include "core/text.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDF_BITS 18
#define IDF_BUCKETS (1u << IDF_BITS)
#define IDF_MASK (IDF_BUCKETS - 1u)
#define STATE_VERSION 1u
/* The largest IDF dr_builtin_finish_idf can give: 1 + ln(n_docs + 1) with
 * n_docs < 2^64 is below 1 + 44.37. A loaded state with a larger value is
 * damaged, and a value near FLT_MAX would overflow the float sums of
 * builtin_embed (an infinite component, then NaN after normalising). */
#define MAX_IDF 45.5f

/* Feature groups and their weights, tuned on SciFact train queries at dim
 * 256 (dense nDCG@10 0.53; character n-grams carry most of the signal and
 * bigrams collide more than they help at small dims). */
enum { G_UNI = 0, G_BI = 1, G_CHAR = 2 };
static const float group_weight[3] = {0.5f, 0.15f, 1.0f};

typedef struct builtin_embedder {
    dr_embedder base;
    float *idf;       /* [IDF_BUCKETS] once finished or loaded, else NULL */
    uint32_t *df;     /* [IDF_BUCKETS] while learning, else NULL */
    uint64_t n_docs;  /* documents observed */
    void *learn_table; /* feat_table * reused by dr_builtin_observe() */
} builtin_embedder;



/* ---- fast hashing --------------------------------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static inline uint64_t fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static inline uint64_t fnv_bytes(const char *s, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* ---- per-call feature table (open addressing with generation stamps) ------ */

typedef struct feat_entry {
    uint64_t key;
    uint32_t stamp;
    uint16_t count;
    uint8_t group;
} feat_entry;

typedef struct feat_table {
    feat_entry *slots;
    uint32_t *used; /* slot indices used under the current stamp */
    size_t cap;     /* power of two */
    size_t n_used;
    uint32_t stamp;
    /* direct-mapped cache of stopword tests, keyed by the word's hash */
    uint64_t stop_key[512];
    uint8_t stop_val[512];
} feat_table;

static int table_init(feat_table *t, size_t cap)
{
    t->slots = dr_calloc(cap, sizeof(*t->slots));
    t->used = dr_malloc(cap / 2 * sizeof(*t->used));
    if (t->slots == NULL || t->used == NULL) {
        dr_free(t->slots);
        dr_free(t->used);
        t->slots = NULL;
        t->used = NULL;
        return DYNRAG_ERR_NOMEM;
    }
    t->cap = cap;
    t->n_used = 0;
    t->stamp = 1;
    memset(t->stop_key, 0, sizeof(t->stop_key));
    memset(t->stop_val, 2, sizeof(t->stop_val)); /* 2 = empty */
    return DYNRAG_OK;
}

static void table_free(feat_table *t)
{
    dr_free(t->slots);
    dr_free(t->used);
    t->slots = NULL;
    t->used = NULL;
}

/* Starts a new text: every slot becomes empty without clearing memory. */
static void table_reset(feat_table *t)
{
    t->n_used = 0;
    if (++t->stamp == 0) {
        memset(t->slots, 0, t->cap * sizeof(*t->slots));
        t->stamp = 1;
    }
}

static int table_grow(feat_table *t)
{
    feat_table n;
    if (t->cap > ((size_t)1 << 28))
        return DYNRAG_ERR_LIMIT;
    if (table_init(&n, t->cap * 2) != DYNRAG_OK)
        return DYNRAG_ERR_NOMEM;
    memcpy(n.stop_key, t->stop_key, sizeof(n.stop_key));
    memcpy(n.stop_val, t->stop_val, sizeof(n.stop_val));
    for (size_t i = 0; i < t->n_used; i++) {
        const feat_entry *e = &t->slots[t->used[i]];
        size_t j = (size_t)e->key & (n.cap - 1);
        while (n.slots[j].stamp == n.stamp)
            j = (j + 1) & (n.cap - 1);
        n.slots[j] = *e;
        n.slots[j].stamp = n.stamp;
        n.used[n.n_used++] = (uint32_t)j;
    }
    table_free(t);
    *t = n;
    return DYNRAG_OK;
}

static inline int table_add(feat_table *t, uint64_t key, uint8_t group)
{
    if (t->n_used + 1 > t->cap / 2) {
        int rc = table_grow(t);
        if (rc != DYNRAG_OK)
            return rc;
    }
    size_t j = (size_t)key & (t->cap - 1);
    for (;;) {
        feat_entry *e = &t->slots[j];
        if (e->stamp != t->stamp) {
            e->key = key;
            e->stamp = t->stamp;
            e->count = 1;
            e->group = group;
            t->used[t->n_used++] = (uint32_t)j;
            return DYNRAG_OK;
        }
        if (e->key == key) {
            if (e->count < UINT16_MAX)
                e->count++;
            return DYNRAG_OK;
        }
        j = (j + 1) & (t->cap - 1);
    }
}

/* ---- featurisation ----------------------------------------------------------- */

typedef struct feat_ctx {
    feat_table *t;
    uint64_t prev_content; /* unigram hash of the previous non-stopword word */
    bool have_prev;
    int rc;
} feat_ctx;

static int on_word(void *user, const char *w, size_t len, size_t start, size_t end)
{
    (void)start;
    (void)end;
    feat_ctx *c = user;
    uint64_t uni = fnv_bytes(w, len, FNV_OFFSET);
    int rc = table_add(c->t, fmix64(uni ^ 0x1111), G_UNI);
    if (rc != DYNRAG_OK)
        goto fail;
    size_t slot = (size_t)(uni & 511);
    if (c->t->stop_val[slot] == 2 || c->t->stop_key[slot] != uni) {
        char word[72];
        memcpy(word, w, len);
        word[len] = '\0';
        c->t->stop_key[slot] = uni;
        c->t->stop_val[slot] = dr_text_is_stopword(word) ? 1 : 0;
    }
    if (c->t->stop_val[slot])
        return 0;
    if (c->have_prev) {
        rc = table_add(c->t, fmix64(c->prev_content * 31 + uni + 0x2222), G_BI);
        if (rc != DYNRAG_OK)
            goto fail;
    }
    c->prev_content = uni;
    c->have_prev = true;
    /* character 3-5-grams of "<word>" */
    char pad[72];
    pad[0] = '<';
    memcpy(pad + 1, w, len);
    pad[len + 1] = '>';
    size_t plen = len + 2;
    for (size_t i = 0; i + 3 <= plen; i++) {
        uint64_t h = fnv_bytes(pad + i, 3, FNV_OFFSET);
        for (size_t n = 3; n <= 5 && i + n <= plen; n++) {
            if (n > 3) {
                h ^= (unsigned char)pad[i + n - 1];
                h *= FNV_PRIME;
            }
            rc = table_add(c->t, fmix64(h ^ (0x3333 + n)), G_CHAR);
            if (rc != DYNRAG_OK)
                goto fail;
        }
    }
    return 0;
fail:
    c->rc = rc;
    return 1;
}

static int featurize(feat_table *t, const char *text, size_t n)
{
    feat_ctx c = {t, 0, false, DYNRAG_OK};
    table_reset(t);
    dr_text_words(text, n, on_word, &c);
    return c.rc;
}

/* ---- the vtable ------------------------------------------------------------ */

static int builtin_embed(dr_embedder *base, const char *const *texts, size_t n, float *out,
                         dynrag_error *err)
{
    builtin_embedder *e = (builtin_embedder *)base;
    size_t dim = (size_t)base->dim;
    feat_table t;
    if (table_init(&t, 4096) != DYNRAG_OK)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "builtin embedder: out of memory");
    int rc = DYNRAG_OK;
    for (size_t i = 0; i < n; i++) {
        float *row = out + i * dim;
        memset(row, 0, dim * sizeof(float));
        const char *s = texts[i] ? texts[i] : "";
        rc = featurize(&t, s, strlen(s));
        if (rc != DYNRAG_OK) {
            dr_err_set(err, rc, "builtin embedder: text %zu has too many features", i);
            goto cleanup;
        }
        for (size_t u = 0; u < t.n_used; u++) {
            const feat_entry *f = &t.slots[t.used[u]];
            float w = group_weight[f->group] * (1.0f + logf((float)f->count));
            if (e->idf)
                w *= e->idf[f->key & IDF_MASK];
            size_t bucket = (size_t)((f->key >> 20) % dim);
            row[bucket] += (f->key >> 63) ? -w : w;
        }
        double norm = 0;
        for (size_t d = 0; d < dim; d++)
            norm += (double)row[d] * row[d];
        if (norm > 0) {
            float inv = (float)(1.0 / sqrt(norm));
            for (size_t d = 0; d < dim; d++)
                row[d] *= inv;
        }
    }
cleanup:
    table_free(&t);
    return rc;
}

static void free_learn_table(builtin_embedder *e)
{
    if (e->learn_table) {
        table_free(e->learn_table);
        dr_free(e->learn_table);
        e->learn_table = NULL;
    }
}

static void builtin_free(dr_embedder *base)
{
    builtin_embedder *e = (builtin_embedder *)base;
    free_learn_table(e);
    dr_free(e->idf);
    dr_free(e->df);
    dr_free(e);
}

static const dr_embedder_vtable builtin_vt = {builtin_embed, builtin_free};

int dr_embedder_builtin_create(int dim, dr_embedder **out, dynrag_error *err)
{
    *out = NULL;
    if (dim == 0)
        dim = DR_BUILTIN_DEFAULT_DIM;
    if (dim < 8 || dim > DR_BUILTIN_MAX_DIM)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "builtin embedder: dim %d out of range (8 to %d)", dim,
                          DR_BUILTIN_MAX_DIM);
    builtin_embedder *e = dr_calloc(1, sizeof(*e));
    if (e == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "builtin embedder: out of memory");
    e->base.vt = &builtin_vt;
    e->base.dim = dim;
    snprintf(e->base.identity, sizeof(e->base.identity), "builtin:v1:dim=%d:ngrams=w1,w2,c3-5",
             dim);
    *out = &e->base;
    return DYNRAG_OK;
}

bool dr_embedder_is_builtin(const dr_embedder *e)
{
    return e != NULL && e->vt == &builtin_vt;
}

bool dr_builtin_has_idf(const dr_embedder *e)
{
    return dr_embedder_is_builtin(e) && ((const builtin_embedder *)e)->idf != NULL;
}

int dr_builtin_observe(dr_embedder *base, const char *text, size_t n, dynrag_error *err)
{
    builtin_embedder *e = (builtin_embedder *)base;
    if (!dr_embedder_is_builtin(base) || e->idf != NULL)
        return dr_err_set(err, DYNRAG_ERR_STATE, "builtin embedder: IDF already finished");
    if (e->df == NULL) {
        e->df = dr_calloc(IDF_BUCKETS, sizeof(*e->df));
        if (e->df == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "builtin embedder: out of memory");
    }
    if (e->learn_table == NULL) {
        feat_table *t = dr_calloc(1, sizeof(*t));
        if (t == NULL || table_init(t, 4096) != DYNRAG_OK) {
            dr_free(t);
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "builtin embedder: out of memory");
        }
        e->learn_table = t;
    }
    feat_table *t = e->learn_table;
    int rc = featurize(t, text, n);
    if (rc != DYNRAG_OK)
        return dr_err_set(err, rc, "builtin embedder: text has too many features");
    for (size_t u = 0; u < t->n_used; u++)
        e->df[t->slots[t->used[u]].key & IDF_MASK]++;
    e->n_docs++;
    return DYNRAG_OK;
}

int dr_builtin_finish_idf(dr_embedder *base, dynrag_error *err)
{
    builtin_embedder *e = (builtin_embedder *)base;
    if (!dr_embedder_is_builtin(base) || e->idf != NULL)
        return dr_err_set(err, DYNRAG_ERR_STATE, "builtin embedder: IDF already finished");
    float *idf = dr_malloc(IDF_BUCKETS * sizeof(*idf));
    if (idf == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "builtin embedder: out of memory");
    double n1 = (double)e->n_docs + 1.0;
    for (size_t b = 0; b < IDF_BUCKETS; b++) {
        double df = e->df ? (double)e->df[b] : 0.0;
        idf[b] = e->n_docs ? (float)(log(n1 / (df + 1.0)) + 1.0) : 1.0f;
    }
    dr_free(e->df);
    e->df = NULL;
    free_learn_table(e);
    e->idf = idf;
    return DYNRAG_OK;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

#define STATE_HEADER 24

int dr_builtin_state_save(const dr_embedder *base, void **blob, size_t *len, dynrag_error *err)
{
    const builtin_embedder *e = (const builtin_embedder *)base;
    *blob = NULL;
    *len = 0;
    if (!dr_builtin_has_idf(base))
        return dr_err_set(err, DYNRAG_ERR_STATE, "builtin embedder: no IDF to save");
    size_t n = STATE_HEADER + (size_t)IDF_BUCKETS * 4;
    unsigned char *p = dr_malloc(n);
    if (p == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "builtin embedder: out of memory");
    memcpy(p, "DRBE", 4);
    put_u32(p + 4, STATE_VERSION);
    put_u32(p + 8, (uint32_t)base->dim);
    put_u32(p + 12, IDF_BUCKETS);
    put_u32(p + 16, (uint32_t)(e->n_docs & 0xffffffffu));
    put_u32(p + 20, (uint32_t)(e->n_docs >> 32));
    for (size_t b = 0; b < IDF_BUCKETS; b++) {
        uint32_t bits;
        memcpy(&bits, &e->idf[b], 4);
        put_u32(p + STATE_HEADER + 4 * b, bits);
    }
    *blob = p;
    *len = n;
    return DYNRAG_OK;
}

int dr_builtin_state_load(dr_embedder *base, const void *blob, size_t len, dynrag_error *err)
{
    builtin_embedder *e = (builtin_embedder *)base;
    const unsigned char *p = blob;
    if (!dr_embedder_is_builtin(base))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "not a builtin embedder");
    if (len < STATE_HEADER || memcmp(p, "DRBE", 4) != 0)
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "builtin embedder state: bad magic");
    if (get_u32(p + 4) != STATE_VERSION)
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "builtin embedder state: version %u unknown",
                          get_u32(p + 4));
    if (get_u32(p + 8) != (uint32_t)base->dim)
        return dr_err_set(err, DYNRAG_ERR_MISMATCH,
                          "builtin embedder state: dim %u, embedder has %d", get_u32(p + 8),
                          base->dim);
    if (get_u32(p + 12) != IDF_BUCKETS || len != STATE_HEADER + (size_t)IDF_BUCKETS * 4)
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "builtin embedder state: bad size");
    float *idf = dr_malloc(IDF_BUCKETS * sizeof(*idf));
    if (idf == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "builtin embedder: out of memory");
    for (size_t b = 0; b < IDF_BUCKETS; b++) {
        uint32_t bits = get_u32(p + STATE_HEADER + 4 * b);
        memcpy(&idf[b], &bits, 4);
        if (!(idf[b] >= 0 && idf[b] <= MAX_IDF)) { /* also NaN */
            double bad = (double)idf[b];
            dr_free(idf);
            return dr_err_set(err, DYNRAG_ERR_FORMAT,
                              "builtin embedder state: bad IDF value %g at bucket %zu (expected "
                              "0 to %g)",
                              bad, b, (double)MAX_IDF);
        }
    }
    dr_free(e->idf);
    dr_free(e->df);
    e->df = NULL;
    e->idf = idf;
    e->n_docs = (uint64_t)get_u32(p + 16) | ((uint64_t)get_u32(p + 20) << 32);
    return DYNRAG_OK;
}
