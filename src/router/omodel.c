/* omodel.c - routers trained on outcome tables (see omodel.h). */
#include "router/omodel.h"

#include "router/contrastive.h"

#include "core/util.h"
#include "embed/builtin.h"
#include "nn/safetensors.h"
#include "router/onbr.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDF_BUCKETS ((size_t)1 << 18) /* embed/builtin.h: the blob's bucket count */
#define IDF_BLOB_HEADER 24

struct dr_omodel {
    char *kind, *method;
    size_t n_options;
    char **options;
    bool *has_cost;
    int dim;
    size_t n_clusters; /* C */
    float *centroids;  /* [C][cdim]: k-means: unit length, cdim = dim; task clusters: a
                          classifier's weights over the embedding, the extras and 1 */
    size_t cdim;
    char **cluster_labels; /* task clusters: [C] task names (else NULL) */
    size_t n_feat;         /* dim + DR_OMODEL_EXTRA + C + 1 */
    dr_embedder *emb;
    float *idf; /* [IDF_BUCKETS], as saved */
    uint64_t idf_docs;
    float *qw; /* [n_options][n_feat] */
    float *cw; /* [n_options][2] */
    double lambda;
    bool is_distill;     /* quality_w are logits of a softmax over options */
    bool is_mf;          /* quality_w are the collapsed factors: q = sigmoid(w . x) */
    int rank;            /* mf: the factorisation's dimension (0 otherwise) */
    dr_contrastive *ctr; /* contrastive: the encoder and option embeddings */
    double prior_weight; /* contrastive: q = cosine + prior_weight * (quality_w . x) */
    double prior_rows;   /* contrastive: the prior's shrinkage (provenance) */
    char *provenance;    /* JSON text */
    dr_onbr *nbr;        /* knn and preference: the training neighbours (else NULL) */
};

void dr_omodel_free(dr_omodel *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_options; i++)
        dr_free(m->options[i]);
    dr_free(m->options);
    dr_free(m->has_cost);
    dr_free(m->kind);
    dr_free(m->method);
    dr_embedder_free(m->emb);
    dr_free(m->idf);
    dr_free(m->centroids);
    if (m->cluster_labels != NULL)
        for (size_t c = 0; c < m->n_clusters; c++)
            dr_free(m->cluster_labels[c]);
    dr_free(m->cluster_labels);
    dr_free(m->qw);
    dr_free(m->cw);
    dr_free(m->provenance);
    dr_onbr_free(m->nbr);
    dr_contrastive_free(m->ctr);
    dr_free(m);
}

size_t dr_omodel_n_options(const dr_omodel *m)
{
    return m->n_options;
}

const char *dr_omodel_option(const dr_omodel *m, size_t i)
{
    return i < m->n_options ? m->options[i] : NULL;
}

const char *dr_omodel_kind(const dr_omodel *m)
{
    return m->kind;
}

bool dr_omodel_has_cost(const dr_omodel *m, size_t i)
{
    return i < m->n_options && m->has_cost[i];
}

const char *dr_omodel_provenance(const dr_omodel *m)
{
    return m->provenance != NULL ? m->provenance : "{}";
}

const char *dr_omodel_method(const dr_omodel *m)
{
    return m->method;
}

size_t dr_omodel_neighbour_rows(const dr_omodel *m)
{
    return m->nbr != NULL ? m->nbr->n : 0;
}

int dr_omodel_neighbours(const dr_omodel *m, double *local_weight)
{
    if (local_weight != NULL)
        *local_weight = m->nbr != NULL && m->nbr->preference ? m->nbr->local_weight : NAN;
    return m->nbr != NULL ? m->nbr->k : 0;
}

int dr_omodel_set_neighbours(dr_omodel *m, int k, double local_weight, dynrag_error *err)
{
    if (m->nbr == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "a %s/%s model keeps no training queries (k and local_weight are for "
                          "predict/knn and preference models)",
                          m->kind, m->method);
    size_t most = DR_MIN(m->nbr->n, (size_t)DR_ONBR_MAX_K);
    if (k < 1 || (size_t)k > most)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "k %d: expected 1 to %zu (the model keeps %zu training queries)", k, most,
                          m->nbr->n);
    if (!isnan(local_weight) && !(local_weight >= 0 && local_weight <= 1))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "local_weight %g: expected 0 to 1",
                          local_weight);
    if (!isnan(local_weight) && !m->nbr->preference)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "local_weight is for preference models, this one is %s/%s", m->kind,
                          m->method);
    m->nbr->k = k;
    if (!isnan(local_weight))
        m->nbr->local_weight = local_weight;
    return DYNRAG_OK;
}

/* In-place softmax of v[0..n). */
/* The indices of x's non-zero features (x has F entries) into nz; returns
 * how many. The hashed n-gram rows are sparse: the fits loop over these. */
static size_t nonzeros(const float *x, size_t F, size_t *nz)
{
    size_t nnz = 0;
    for (size_t f = 0; f < F; f++)
        if (x[f] != 0.0f)
            nz[nnz++] = f;
    return nnz;
}

/* <w, x> over x's non-zero features nz[0..nnz). */
static double sparse_dot(const double *w, const float *x, const size_t *nz, size_t nnz)
{
    double s = 0;
    for (size_t j = 0; j < nnz; j++)
        s += w[nz[j]] * x[nz[j]];
    return s;
}

static void softmax(double *v, size_t n)
{
    double mx = -INFINITY, sum = 0;
    for (size_t i = 0; i < n; i++)
        mx = DR_MAX(mx, v[i]);
    for (size_t i = 0; i < n; i++) {
        v[i] = exp(v[i] - mx);
        sum += v[i];
    }
    for (size_t i = 0; i < n; i++)
        v[i] /= sum;
}

/* ---- features ------------------------------------------------------------- */

/* The dense extras of a query: log length, digit, non-ASCII and newline shares. */
static void extras(const char *q, float *x)
{
    size_t n = 0, digits = 0, high = 0, nl = 0;
    for (const unsigned char *p = (const unsigned char *)q; *p; p++, n++) {
        digits += *p >= '0' && *p <= '9';
        high += *p >= 0x80;
        nl += *p == '\n';
    }
    double d = n > 0 ? (double)n : 1.0;
    x[0] = (float)(log1p((double)n) / 8.0);
    x[1] = (float)((double)digits / d);
    x[2] = (float)((double)high / d);
    x[3] = (float)(10.0 * (double)nl / d);
}

/* The index of the centroid nearest to the unit vector e (highest dot). */
static size_t nearest(const float *centroids, size_t n_clusters, int dim, const float *e)
{
    size_t best = 0;
    double bs = -INFINITY;
    for (size_t c = 0; c < n_clusters; c++) {
        const float *cv = centroids + c * (size_t)dim;
        double s = 0;
        for (int d = 0; d < dim; d++)
            s += (double)cv[d] * e[d];
        if (s > bs) {
            bs = s;
            best = c;
        }
    }
    return best;
}

/* Task clusters: class c's score w_c . (x[0..cdim-1), 1). */
static double task_score(const float *w, size_t cdim, const float *x, size_t c)
{
    const float *wc = w + c * cdim;
    double s = wc[cdim - 1];
    for (size_t d = 0; d + 1 < cdim; d++)
        if (x[d] != 0.0f)
            s += (double)wc[d] * x[d];
    return s;
}

/* Task clusters: the class with the highest score (ties: the lower class). */
static size_t task_argmax(const float *w, size_t C, size_t cdim, const float *x)
{
    size_t best = 0;
    double bs = -INFINITY;
    for (size_t c = 0; c < C; c++) {
        double s = task_score(w, cdim, x, c);
        if (s > bs) {
            bs = s;
            best = c;
        }
    }
    return best;
}

/* Fills the features after the embedding x[0..dim): extras, the one-hot
 * nearest cluster (task clusters: the classifier's class), the bias. */
static void finish_features(const dr_omodel *m, const char *q, float *x)
{
    extras(q, x + m->dim);
    float *oh = x + m->dim + DR_OMODEL_EXTRA;
    memset(oh, 0, m->n_clusters * sizeof(float));
    if (m->cluster_labels != NULL)
        oh[task_argmax(m->centroids, m->n_clusters, m->cdim, x)] = 1.0f;
    else if (m->n_clusters > 0)
        oh[nearest(m->centroids, m->n_clusters, m->dim, x)] = 1.0f;
    x[m->n_feat - 1] = 1.0f;
}

/* Fills x[0..n_feat) with the features of query q. */
static int features(const dr_omodel *m, const char *q, float *x, dynrag_error *err)
{
    const char *texts[1] = {q != NULL ? q : ""};
    int rc = dr_embed(m->emb, texts, 1, x, err);
    if (rc != DYNRAG_OK)
        return rc;
    finish_features(m, texts[0], x);
    return DYNRAG_OK;
}

/*
 * Spherical k-means of the n unit rows e[i * stride .. + dim) into C
 * centroids (unit length): k-means++ seeding from `seed`, then `iters`
 * rounds of assignment and renormalised means; an empty cluster takes the
 * row farthest from its centroid. Deterministic for a seed.
 */
static int kmeans(const float *e, size_t stride, size_t n, int dim, size_t C, uint64_t seed,
                  int iters, float *centroids)
{
    double *dist = dr_malloc(n * sizeof(*dist));
    double *sum = dr_malloc(C * (size_t)dim * sizeof(*sum));
    size_t *assign = dr_malloc(n * sizeof(*assign)), *count = dr_malloc(C * sizeof(*count));
    if (!dist || !sum || !assign || !count) {
        dr_free(dist);
        dr_free(sum);
        dr_free(assign);
        dr_free(count);
        return DYNRAG_ERR_NOMEM;
    }
    dr_rng r;
    dr_rng_seed(&r, seed);
    size_t first = (size_t)dr_rng_below(&r, n);
    memcpy(centroids, e + first * stride, (size_t)dim * sizeof(float));
    for (size_t i = 0; i < n; i++)
        dist[i] = INFINITY;
    for (size_t c = 1; c < C; c++) {
        double total = 0;
        const float *prev = centroids + (c - 1) * (size_t)dim;
        for (size_t i = 0; i < n; i++) {
            double dot = 0;
            for (int d = 0; d < dim; d++)
                dot += (double)prev[d] * e[i * stride + (size_t)d];
            double dd = DR_MAX(0.0, 2.0 - 2.0 * dot);
            dist[i] = DR_MIN(dist[i], dd);
            total += dist[i];
        }
        double pick = dr_rng_uniform(&r) * total;
        size_t chosen = n - 1;
        for (size_t i = 0; i < n; i++) {
            pick -= dist[i];
            if (pick < 0) {
                chosen = i;
                break;
            }
        }
        memcpy(centroids + c * (size_t)dim, e + chosen * stride, (size_t)dim * sizeof(float));
    }
    for (int it = 0; it < iters; it++) {
        memset(sum, 0, C * (size_t)dim * sizeof(*sum));
        memset(count, 0, C * sizeof(*count));
        size_t far = 0;
        double far_d = -1;
        for (size_t i = 0; i < n; i++) {
            const float *ei = e + i * stride;
            size_t c = nearest(centroids, C, dim, ei);
            assign[i] = c;
            count[c]++;
            double dot = 0;
            for (int d = 0; d < dim; d++) {
                sum[c * (size_t)dim + (size_t)d] += ei[d];
                dot += (double)centroids[c * (size_t)dim + (size_t)d] * ei[d];
            }
            if (1.0 - dot > far_d) {
                far_d = 1.0 - dot;
                far = i;
            }
        }
        for (size_t c = 0; c < C; c++) {
            float *cv = centroids + c * (size_t)dim;
            if (count[c] == 0) {
                memcpy(cv, e + far * stride, (size_t)dim * sizeof(float));
                continue;
            }
            double norm = 0;
            for (int d = 0; d < dim; d++)
                norm += sum[c * (size_t)dim + (size_t)d] * sum[c * (size_t)dim + (size_t)d];
            norm = norm > 0 ? sqrt(norm) : 1.0;
            for (int d = 0; d < dim; d++)
                cv[d] = (float)(sum[c * (size_t)dim + (size_t)d] / norm);
        }
    }
    dr_free(dist);
    dr_free(sum);
    dr_free(assign);
    dr_free(count);
    return DYNRAG_OK;
}

/* Builds the embedder of dimension m->dim with m->idf as its IDF. */
static int make_embedder(dr_omodel *m, dynrag_error *err)
{
    int rc = dr_embedder_builtin_create(m->dim, &m->emb, err);
    if (rc != DYNRAG_OK)
        return rc;
    size_t len = IDF_BLOB_HEADER + IDF_BUCKETS * 4;
    unsigned char *blob = dr_malloc(len);
    if (blob == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    /* The blob layout of embed/builtin.h (little-endian). */
    uint32_t hdr[6] = {0,
                       1u,
                       (uint32_t)m->dim,
                       (uint32_t)IDF_BUCKETS,
                       (uint32_t)(m->idf_docs & 0xffffffffu),
                       (uint32_t)(m->idf_docs >> 32)};
    memcpy(blob, "DRBE", 4);
    for (int i = 1; i < 6; i++)
        for (int b = 0; b < 4; b++)
            blob[4 * i + b] = (unsigned char)(hdr[i] >> (8 * b));
    for (size_t i = 0; i < IDF_BUCKETS; i++) {
        uint32_t bits;
        memcpy(&bits, &m->idf[i], 4);
        for (int b = 0; b < 4; b++)
            blob[IDF_BLOB_HEADER + 4 * i + b] = (unsigned char)(bits >> (8 * b));
    }
    rc = dr_builtin_state_load(m->emb, blob, len, err);
    dr_free(blob);
    return rc;
}

double dr_omodel_task_confidence(const dr_omodel *m, const char *query)
{
    if (m->cluster_labels == NULL)
        return NAN;
    float x[DR_OMODEL_MAX_DIM + DR_OMODEL_EXTRA + DR_OMODEL_MAX_CLUSTERS + 1];
    if (features(m, query, x, NULL) != DYNRAG_OK)
        return NAN;
    double p[DR_OMODEL_MAX_CLUSTERS], best = 0;
    for (size_t c = 0; c < m->n_clusters; c++)
        p[c] = task_score(m->centroids, m->cdim, x, c);
    softmax(p, m->n_clusters);
    for (size_t c = 0; c < m->n_clusters; c++)
        best = DR_MAX(best, p[c]);
    return isfinite(best) && best > 0 ? best : NAN;
}

int dr_omodel_predict(const dr_omodel *m, const char *query, double *q, double *c,
                      dynrag_error *err)
{
    float stackx[DR_OMODEL_MAX_DIM + DR_OMODEL_EXTRA + DR_OMODEL_MAX_CLUSTERS + 1];
    int rc = features(m, query, stackx, err);
    if (rc != DYNRAG_OK)
        return rc;
    size_t chars = query != NULL ? strlen(query) : 0;
    if (m->nbr != NULL) {
        /* kNN and preference: from the nearest training queries. */
        size_t idx[DR_ONBR_MAX_K];
        float sim[DR_ONBR_MAX_K];
        float *scratch = dr_malloc((m->nbr->n ? m->nbr->n : 1) * sizeof(float));
        if (scratch == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        size_t kn = dr_onbr_nearest(m->nbr, stackx, (size_t)m->nbr->k, idx, sim, scratch);
        dr_free(scratch);
        dr_onbr_predict(m->nbr, idx, sim, kn, m->nbr->k, m->nbr->local_weight, q);
    }
    if (m->ctr != NULL)
        dr_contrastive_scores(m->ctr, stackx, q); /* cosines, not qualities */
    for (size_t o = 0; o < m->n_options; o++) {
        const float *w = m->qw + o * m->n_feat;
        if (m->nbr == NULL) {
            double s = 0;
            for (size_t f = 0; f < m->n_feat; f++)
                s += (double)w[f] * stackx[f];
            q[o] = m->ctr != NULL ? q[o] + m->prior_weight * s : s;
        }
        double cost = m->cw[2 * o] + m->cw[2 * o + 1] * (double)chars / 1000.0;
        c[o] = cost > 0 ? cost : 0.0;
    }
    if (m->is_distill)
        softmax(q, m->n_options);
    if (m->is_mf)
        for (size_t o = 0; o < m->n_options; o++)
            q[o] = 1.0 / (1.0 + exp(-q[o]));
    return DYNRAG_OK;
}

int dr_omodel_pick(const dr_omodel *m, const double *q, const double *c, double wtp,
                   const bool *allowed)
{
    int best = -1;
    double bs = -INFINITY;
    for (size_t o = 0; o < m->n_options; o++) {
        if (allowed != NULL && !allowed[o])
            continue;
        double s = q[o] - wtp * c[o];
        if (best < 0 || s > bs) {
            best = (int)o;
            bs = s;
        }
    }
    return best;
}

/* ---- training --------------------------------------------------------------- */

/* In-place Cholesky factorisation of the symmetric positive definite n x n
 * matrix a (row-major, lower triangle used). DYNRAG_ERR_INTERNAL when a is
 * not positive definite. */
static int cholesky(double *a, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        double *rj = a + j * n;
        double d = rj[j];
        for (size_t k = 0; k < j; k++)
            d -= rj[k] * rj[k];
        if (!(d > 0))
            return DYNRAG_ERR_INTERNAL;
        d = sqrt(d);
        rj[j] = d;
        for (size_t i = j + 1; i < n; i++) {
            double *ri = a + i * n;
            double s = ri[j];
            for (size_t k = 0; k < j; k++)
                s -= ri[k] * rj[k];
            ri[j] = s / d;
        }
    }
    return DYNRAG_OK;
}

/* Solves L L^T x = b in place (L from cholesky()). */
static void chol_solve(const double *l, size_t n, double *b)
{
    for (size_t i = 0; i < n; i++) {
        const double *ri = l + i * n;
        double s = b[i];
        for (size_t k = 0; k < i; k++)
            s -= ri[k] * b[k];
        b[i] = s / ri[i];
    }
    for (size_t i = n; i-- > 0;) {
        double s = b[i];
        for (size_t k = i + 1; k < n; k++)
            s -= l[k * n + i] * b[k];
        b[i] = s / l[i * n + i];
    }
}

/* The mean quality of the options the model routes rows[0..n) of t to
 * (wtp 0), with map[o] the table index of model option o. */
static double routed_quality(const dr_omodel *m, const dr_outcome_table *t, const size_t *rows,
                             size_t n, const int *map, dynrag_error *err)
{
    double *q = dr_malloc(2 * m->n_options * sizeof(*q));
    bool *allowed = dr_malloc(m->n_options * sizeof(*allowed));
    double sum = 0;
    size_t counted = 0;
    if (q == NULL || allowed == NULL) {
        dr_free(q);
        dr_free(allowed);
        return NAN;
    }
    for (size_t i = 0; i < n; i++) {
        const dr_outcome_row *row = &t->rows[rows ? rows[i] : i];
        if (dr_omodel_predict(m, row->query, q, q + m->n_options, err) != DYNRAG_OK)
            continue;
        for (size_t o = 0; o < m->n_options; o++)
            allowed[o] = map[o] >= 0 && row->o[map[o]].present;
        int pick = dr_omodel_pick(m, q, q + m->n_options, 0.0, allowed);
        if (pick < 0)
            continue;
        sum += row->o[map[pick]].quality;
        counted++;
    }
    dr_free(q);
    dr_free(allowed);
    return counted ? sum / (double)counted : NAN;
}

/*
 * Zooter-style distillation: multinomial logistic regression of the soft
 * labels softmax(quality / temperature) over the options on the features x
 * (n rows of m->n_feat), by full-batch gradient descent with momentum on the
 * sparse rows (300 steps, L2 penalty l2 except on the bias). Deterministic.
 * Weights go to m->qw as logits.
 */
static int distill_fit(dr_omodel *m, const dr_outcome_table *t, const size_t *rows, size_t n,
                       const float *x, double temperature, double l2,
                       const dr_omodel_train_opts *opts)
{
    const size_t F = m->n_feat, K = m->n_options;
    double *w = dr_calloc(K * F, sizeof(double)), *g = dr_calloc(K * F, sizeof(double));
    double *vel = dr_calloc(K * F, sizeof(double)), *y = dr_malloc(n * K * sizeof(double));
    double *p = dr_malloc(K * sizeof(double));
    size_t *nz = dr_malloc(F * sizeof(size_t));
    if (!w || !g || !vel || !y || !p || !nz) {
        dr_free(w);
        dr_free(g);
        dr_free(vel);
        dr_free(y);
        dr_free(p);
        dr_free(nz);
        return DYNRAG_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const dr_outcome_row *row = &t->rows[rows ? rows[i] : i];
        double *yi = y + i * K;
        for (size_t o = 0; o < K; o++)
            yi[o] = row->o[o].present ? row->o[o].quality / temperature : -INFINITY;
        softmax(yi, K);
    }
    const int steps = 300;
    const double lr = 0.5, mom = 0.9;
    for (int step = 0; step < steps; step++) {
        memset(g, 0, K * F * sizeof(double));
        for (size_t i = 0; i < n; i++) {
            const float *xi = x + i * F;
            size_t nnz = nonzeros(xi, F, nz);
            for (size_t o = 0; o < K; o++)
                p[o] = sparse_dot(w + o * F, xi, nz, nnz);
            softmax(p, K);
            for (size_t o = 0; o < K; o++) {
                double d = (p[o] - y[i * K + o]) / (double)n;
                for (size_t j = 0; j < nnz; j++)
                    g[o * F + nz[j]] += d * xi[nz[j]];
            }
        }
        for (size_t o = 0; o < K; o++)
            for (size_t f = 0; f < F; f++) {
                double gr = g[o * F + f] + (f + 1 == F ? 0.0 : l2 * w[o * F + f]);
                vel[o * F + f] = mom * vel[o * F + f] - lr * gr;
                w[o * F + f] += vel[o * F + f];
            }
        if (opts->progress != NULL && (step % 20 == 0 || step + 1 == steps))
            opts->progress(opts->progress_user, "distill", (size_t)step + 1, (size_t)steps);
    }
    for (size_t i = 0; i < K * F; i++)
        m->qw[i] = (float)w[i];
    dr_free(w);
    dr_free(g);
    dr_free(vel);
    dr_free(y);
    dr_free(p);
    dr_free(nz);
    return DYNRAG_OK;
}

/*
 * RouteLLM-style matrix factorisation: quality(q, o) ~ sigmoid(<P x_q, v_o> +
 * b_o), with P [rank x F] projecting the query features x and v_o [rank] an
 * embedding per option, fitted by SGD on the logistic loss against the
 * recorded qualities (missing cells skipped) with L2 penalty l2 on P and v
 * (b_o starts at the logit of o's mean quality). Rows are visited in a
 * seeded random order each epoch (DR_OMODEL_MF_EPOCHS epochs, learning rate
 * decaying as lr0 / (1 + epoch / 10)); with validation rows, the epoch with
 * the best routed validation quality is kept. Deterministic per seed. The
 * factors are collapsed into m->qw: w_o = P^T v_o, plus b_o on the bias.
 */
static int mf_fit(dr_omodel *m, const dr_outcome_table *t, const size_t *rows, size_t n,
                  const float *x, double l2, uint64_t seed, const dr_outcome_table *v,
                  const size_t *valid, size_t n_valid, const int *vmap,
                  const dr_omodel_train_opts *opts, dynrag_error *err)
{
    const size_t F = m->n_feat, K = m->n_options, R = (size_t)m->rank;
    double *P = dr_malloc(R * F * sizeof(double)), *V = dr_malloc(K * R * sizeof(double));
    double *b = dr_calloc(K, sizeof(double)), *h = dr_malloc(R * sizeof(double));
    double *dh = dr_malloc(R * sizeof(double));
    size_t *nz = dr_malloc(F * sizeof(size_t)), *order = dr_malloc(n * sizeof(size_t));
    float *best = dr_malloc(K * F * sizeof(float));
    int rc = DYNRAG_OK;
    if (!P || !V || !b || !h || !dh || !nz || !order || !best) {
        rc = DYNRAG_ERR_NOMEM;
        goto cleanup;
    }
    dr_rng rng;
    dr_rng_seed(&rng, seed ^ 0x6d66u);
    for (size_t i = 0; i < R * F; i++)
        P[i] = (dr_rng_uniform(&rng) - 0.5) * 0.2;
    for (size_t i = 0; i < K * R; i++)
        V[i] = (dr_rng_uniform(&rng) - 0.5) * 0.2;
    for (size_t o = 0; o < K; o++) {
        double sq = 0, cnt = 0;
        for (size_t i = 0; i < n; i++) {
            const dr_outcome *oc = &t->rows[rows ? rows[i] : i].o[o];
            if (oc->present) {
                sq += oc->quality;
                cnt += 1;
            }
        }
        double mean = cnt > 0 ? DR_MIN(DR_MAX(sq / cnt, 0.01), 0.99) : 0.5;
        b[o] = log(mean / (1 - mean));
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    const double lr0 = 0.1;
    double best_q = -INFINITY;
    for (int ep = 0; ep < DR_OMODEL_MF_EPOCHS; ep++) {
        double lr = lr0 / (1.0 + ep / 10.0);
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)dr_rng_below(&rng, (uint64_t)i);
            size_t tmp = order[i - 1];
            order[i - 1] = order[j];
            order[j] = tmp;
        }
        for (size_t ii = 0; ii < n; ii++) {
            size_t i = order[ii];
            const dr_outcome_row *row = &t->rows[rows ? rows[i] : i];
            const float *xi = x + i * F;
            size_t nnz = nonzeros(xi, F, nz);
            for (size_t k = 0; k < R; k++) {
                h[k] = sparse_dot(P + k * F, xi, nz, nnz);
                dh[k] = 0;
            }
            for (size_t o = 0; o < K; o++) {
                if (!row->o[o].present)
                    continue;
                double *vo = V + o * R, z = b[o];
                for (size_t k = 0; k < R; k++)
                    z += vo[k] * h[k];
                double g = 1.0 / (1.0 + exp(-z)) - row->o[o].quality;
                for (size_t k = 0; k < R; k++) {
                    dh[k] += g * vo[k];
                    vo[k] -= lr * (g * h[k] + l2 * vo[k]);
                }
                b[o] -= lr * g;
            }
            for (size_t k = 0; k < R; k++)
                for (size_t j = 0; j < nnz; j++) {
                    double *pk = &P[k * F + nz[j]];
                    *pk -= lr * (dh[k] * xi[nz[j]] + l2 * *pk);
                }
        }
        for (size_t o = 0; o < K; o++)
            for (size_t f = 0; f < F; f++) {
                double w = f + 1 == F ? b[o] : 0.0;
                for (size_t k = 0; k < R; k++)
                    w += V[o * R + k] * P[k * F + f];
                m->qw[o * F + f] = (float)w;
            }
        if (v != NULL && n_valid > 0) {
            double qv = routed_quality(m, v, valid, n_valid, vmap, err);
            if (ep == 0 || qv > best_q) {
                best_q = qv;
                memcpy(best, m->qw, K * F * sizeof(float));
            }
        }
        if (opts->progress != NULL)
            opts->progress(opts->progress_user, "mf", (size_t)ep + 1, DR_OMODEL_MF_EPOCHS);
    }
    if (v != NULL && n_valid > 0)
        memcpy(m->qw, best, K * F * sizeof(float));
cleanup:
    dr_free(P);
    dr_free(V);
    dr_free(b);
    dr_free(h);
    dr_free(dh);
    dr_free(nz);
    dr_free(order);
    dr_free(best);
    return rc;
}

/* Sorts task names for task_index (strcmp order). */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Task clusters: the distinct tasks of rows[0..n) of t, sorted, into
 * m->cluster_labels (m->n_clusters of them) and each row's task index into
 * of[0..n). DYNRAG_ERR_INVALID when a row has no task or there are fewer
 * than 2 tasks or more than DR_OMODEL_MAX_CLUSTERS.
 */
static int task_index(dr_omodel *m, const dr_outcome_table *t, const size_t *rows, size_t n,
                      size_t *of, dynrag_error *err)
{
    const char **names = dr_malloc(n * sizeof(*names));
    if (names == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const dr_outcome_row *row = &t->rows[rows ? rows[i] : i];
        if (row->task == NULL || row->task[0] == '\0') {
            dr_free(names);
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "task clusters: training row '%s' has no \"task\" (every row "
                              "needs one)",
                              row->id);
        }
        names[i] = row->task;
    }
    qsort(names, n, sizeof(*names), cmp_str);
    size_t C = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(names[i], names[i - 1]) != 0)
            names[C++] = names[i];
    int rc = DYNRAG_OK;
    if (C < 2 || C > DR_OMODEL_MAX_CLUSTERS) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "task clusters: the training rows have %zu distinct tasks (expected 2 "
                        "to %d)",
                        C, DR_OMODEL_MAX_CLUSTERS);
        goto done;
    }
    m->cluster_labels = dr_calloc(C, sizeof(char *));
    if (m->cluster_labels == NULL)
        goto nomem;
    m->n_clusters = C;
    for (size_t c = 0; c < C; c++)
        if ((m->cluster_labels[c] = dr_strdup(names[c])) == NULL)
            goto nomem;
    for (size_t i = 0; i < n; i++) {
        const char *key = t->rows[rows ? rows[i] : i].task;
        const char **hit = bsearch(&key, names, C, sizeof(*names), cmp_str);
        of[i] = (size_t)(hit - names);
    }
    goto done;
nomem:
    rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
done:
    dr_free(names);
    return rc;
}

/*
 * Task clusters' classifier: a multinomial logistic regression from the
 * features x[i * stride .. + D) (the embedding, then the extras; a bias is
 * added as weight D) to the rows' tasks of[i], into w [C][D + 1]. Full-batch
 * Adam on the mean cross-entropy plus an L2 penalty on the embedding
 * weights (the extras and the bias are not penalised: they carry the
 * formats' strongest cues, such as line breaks), from zero;
 * DR_OMODEL_TASK_STEPS steps. Deterministic. DYNRAG_ERR_NOMEM on
 * allocation failure.
 */
static int task_classifier_fit(const float *x, size_t stride, size_t n, int dim, const size_t *of,
                               size_t C, const dr_omodel_train_opts *opts, float *w_out)
{
    const size_t D = (size_t)dim + DR_OMODEL_EXTRA, W = D + 1;
    double *w = dr_calloc(C * W, sizeof(double)), *g = dr_calloc(C * W, sizeof(double));
    double *m1 = dr_calloc(C * W, sizeof(double)), *m2 = dr_calloc(C * W, sizeof(double));
    double *p = dr_malloc(C * sizeof(double)), *cw = dr_calloc(C, sizeof(double));
    size_t *nz = dr_malloc(D * sizeof(size_t));
    int rc = DYNRAG_ERR_NOMEM;
    if (!w || !g || !m1 || !m2 || !p || !cw || !nz)
        goto done;
    /* Each task weighs the same in the loss, however few its rows. */
    for (size_t i = 0; i < n; i++)
        cw[of[i]] += 1;
    for (size_t c = 0; c < C; c++)
        cw[c] = cw[c] > 0 ? 1.0 / ((double)C * cw[c]) : 0.0;
    const int steps = DR_OMODEL_TASK_STEPS;
    const double lr = 0.2, b1 = 0.9, b2 = 0.999, l2 = 1e-4;
    double b1t = 1, b2t = 1;
    for (int step = 0; step < steps; step++) {
        memset(g, 0, C * W * sizeof(double));
        for (size_t i = 0; i < n; i++) {
            const float *xi = x + i * stride;
            size_t nnz = nonzeros(xi, D, nz);
            for (size_t c = 0; c < C; c++)
                p[c] = sparse_dot(w + c * W, xi, nz, nnz) + w[c * W + D];
            softmax(p, C);
            for (size_t c = 0; c < C; c++) {
                double d = (p[c] - (of[i] == c ? 1.0 : 0.0)) * cw[of[i]];
                double *gc = g + c * W;
                for (size_t j = 0; j < nnz; j++)
                    gc[nz[j]] += d * xi[nz[j]];
                gc[D] += d;
            }
        }
        b1t *= b1;
        b2t *= b2;
        for (size_t f = 0; f < C * W; f++) {
            double gr = g[f] + (f % W < (size_t)dim ? l2 * w[f] : 0.0);
            m1[f] = b1 * m1[f] + (1 - b1) * gr;
            m2[f] = b2 * m2[f] + (1 - b2) * gr * gr;
            w[f] -= lr * (m1[f] / (1 - b1t)) / (sqrt(m2[f] / (1 - b2t)) + 1e-8);
        }
        if (opts->progress != NULL && (step % 20 == 0 || step + 1 == steps))
            opts->progress(opts->progress_user, "task classifier", (size_t)step + 1, (size_t)steps);
    }
    for (size_t f = 0; f < C * W; f++)
        w_out[f] = (float)w[f];
    rc = DYNRAG_OK;
done:
    dr_free(cw);
    dr_free(w);
    dr_free(g);
    dr_free(m1);
    dr_free(m2);
    dr_free(p);
    dr_free(nz);
    return rc;
}

/*
 * Expert Router: each cluster's mean quality per option, shrunk towards the
 * option's overall mean by `kappa` pseudo-rows, into the cluster columns of
 * m->qw (the rest stays as it is). x holds the rows' features (their
 * cluster one-hot). DYNRAG_ERR_NOMEM on allocation failure.
 */
static int cluster_prior(dr_omodel *m, const dr_outcome_table *t, const size_t *rows, size_t n,
                         const float *x, double kappa)
{
    const size_t C = m->n_clusters, K = m->n_options, F = m->n_feat;
    const size_t off = (size_t)m->dim + DR_OMODEL_EXTRA;
    double *sum = dr_calloc(C * K + 2 * K, sizeof(double)), *cnt = dr_calloc(C * K, sizeof(double));
    if (sum == NULL || cnt == NULL) {
        dr_free(sum);
        dr_free(cnt);
        return DYNRAG_ERR_NOMEM;
    }
    double *all = sum + C * K, *all_n = all + K;
    for (size_t i = 0; i < n; i++) {
        const dr_outcome_row *row = &t->rows[rows ? rows[i] : i];
        const float *xi = x + i * F;
        size_t c = 0;
        while (c + 1 < C && xi[off + c] == 0.0f)
            c++;
        for (size_t o = 0; o < K; o++)
            if (row->o[o].present) {
                sum[c * K + o] += row->o[o].quality;
                cnt[c * K + o] += 1;
                all[o] += row->o[o].quality;
                all_n[o] += 1;
            }
    }
    for (size_t o = 0; o < K; o++) {
        double prior = all_n[o] > 0 ? all[o] / all_n[o] : 0.0;
        for (size_t c = 0; c < C; c++)
            m->qw[o * F + off + c] =
                (float)((sum[c * K + o] + kappa * prior) / (cnt[c * K + o] + kappa));
    }
    dr_free(sum);
    dr_free(cnt);
    return DYNRAG_OK;
}

/* The validation hook of contrastive_fit: routed quality with the model
 * under training. */
typedef struct ctr_valid {
    dr_omodel *m;
    const dr_outcome_table *v;
    const size_t *valid;
    size_t n_valid;
    const int *vmap;
    dynrag_error *err;
} ctr_valid;

static double ctr_valid_score(void *user, dr_contrastive *c)
{
    ctr_valid *cv = user;
    dr_contrastive *saved = cv->m->ctr;
    cv->m->ctr = c;
    double q = routed_quality(cv->m, cv->v, cv->valid, cv->n_valid, cv->vmap, cv->err);
    cv->m->ctr = saved;
    return q;
}

/*
 * RouterDC: trains m->ctr (router/contrastive.h) on the feature rows x of
 * rows[0..n) of t, the sample-sample loss on the rows' k-means clusters
 * (the one-hot block of x; off without clusters or with ss_weight < 0).
 * With validation rows the epoch with the best routed validation quality
 * is kept and reported. m->lambda records the weight decay.
 */
static int contrastive_fit(dr_omodel *m, const dr_outcome_table *t, const size_t *rows, size_t n,
                           const float *x, const dr_outcome_table *v, const size_t *valid,
                           size_t n_valid, const int *vmap, const dr_omodel_train_opts *opts,
                           dr_omodel_train_report *report, dynrag_error *err)
{
    const size_t F = m->n_feat, K = m->n_options, off = (size_t)m->dim + DR_OMODEL_EXTRA;
    float *qual = dr_malloc(n * K * sizeof(float));
    int *cl = dr_malloc(n * sizeof(int));
    if (qual == NULL || cl == NULL) {
        dr_free(qual);
        dr_free(cl);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const dr_outcome_row *row = &t->rows[rows ? rows[i] : i];
        for (size_t o = 0; o < K; o++)
            qual[i * K + o] = row->o[o].present ? (float)row->o[o].quality : NAN;
        cl[i] = 0;
        for (size_t c = 0; c < m->n_clusters; c++)
            if (x[i * F + off + c] != 0.0f)
                cl[i] = (int)c;
    }
    ctr_valid cv = {m, v, valid, n_valid, vmap, err};
    double l2 = opts->lambda > 0 ? opts->lambda : 1e-4;
    dr_contrastive_opts co = {
        .hidden = opts->hidden < 0   ? 0
                  : opts->hidden > 0 ? opts->hidden
                                     : DR_OMODEL_CTR_HIDDEN,
        .dim = opts->embed_dim > 0 ? opts->embed_dim : DR_OMODEL_CTR_DIM,
        .epochs = opts->epochs > 0 ? opts->epochs : DR_OMODEL_CTR_EPOCHS,
        .batch = 64,
        .top_k = opts->top_k > 0 ? opts->top_k : DR_OMODEL_CTR_TOP_K,
        .bottom_k = opts->top_k > 0 ? opts->top_k : DR_OMODEL_CTR_TOP_K,
        .tau = opts->tau > 0 ? opts->tau : DR_OMODEL_CTR_TAU,
        .ss_weight = opts->ss_weight < 0   ? 0.0
                     : opts->ss_weight > 0 ? opts->ss_weight
                                           : DR_OMODEL_CTR_SS_WEIGHT,
        .ss_tau = 0.2,
        .lr = opts->lr > 0 ? opts->lr : DR_OMODEL_CTR_LR,
        .l2 = l2,
        .seed = opts->seed,
        .valid = v != NULL && n_valid > 0 ? ctr_valid_score : NULL,
        .valid_user = &cv,
        .progress = opts->progress,
        .progress_user = opts->progress_user,
    };
    int kept = 0;
    m->prior_weight = 0;
    int rc = dr_contrastive_fit(x, n, F, qual, K, m->n_clusters > 0 ? cl : NULL, &co, &m->ctr,
                                &kept, err);
    dr_free(qual);
    dr_free(cl);
    m->lambda = l2;
    if (rc != DYNRAG_OK)
        return rc;
    /* The cluster prior: fixed, or the (weight, pseudo-rows) pair with the
     * best routed validation quality (ties: the earlier, smaller pair). */
    static const double weights[] = {0, 0.25, 0.5, 1, 2, 4, 8};
    static const double kappas[] = {1, 10, 30};
    bool choose = opts->prior_weight == 0 && v != NULL && n_valid > 0 && m->n_clusters > 0;
    double w_best = opts->prior_weight > 0 ? opts->prior_weight : 0;
    double k_best = opts->prior_rows > 0 ? opts->prior_rows : 1;
    if (m->n_clusters == 0)
        w_best = 0;
    if (choose) {
        double best_q = -INFINITY;
        for (size_t ki = 0; ki < DR_ARRAY_LEN(kappas); ki++) {
            if (opts->prior_rows > 0 && ki > 0)
                break;
            double kappa = opts->prior_rows > 0 ? opts->prior_rows : kappas[ki];
            if (cluster_prior(m, t, rows, n, x, kappa) != DYNRAG_OK)
                return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            for (size_t wi = 0; wi < DR_ARRAY_LEN(weights); wi++) {
                m->prior_weight = weights[wi];
                double qv = routed_quality(m, v, valid, n_valid, vmap, err);
                if (qv > best_q) {
                    best_q = qv;
                    w_best = weights[wi];
                    k_best = kappa;
                }
            }
        }
    }
    if (m->n_clusters > 0 && cluster_prior(m, t, rows, n, x, k_best) != DYNRAG_OK)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    m->prior_weight = w_best;
    m->prior_rows = k_best;
    if (report != NULL) {
        report->epochs = kept;
        report->prior_weight = w_best;
        report->prior_rows = k_best;
    }
    return DYNRAG_OK;
}

/* Fits cost = a + b * chars/1000 per option by least squares over rows
 * with a recorded cost (the mean when the lengths do not vary). */
static void fit_cost(dr_omodel *m, const dr_outcome_table *t, const size_t *rows, size_t n)
{
    for (size_t o = 0; o < m->n_options; o++) {
        double s1 = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (size_t i = 0; i < n; i++) {
            const dr_outcome_row *row = &t->rows[rows ? rows[i] : i];
            const dr_outcome *oc = &row->o[o];
            if (!oc->present || !oc->has_cost)
                continue;
            double x = (double)strlen(row->query) / 1000.0, y = oc->cost_usd;
            s1 += 1;
            sx += x;
            sy += y;
            sxx += x * x;
            sxy += x * y;
        }
        m->has_cost[o] = s1 > 0;
        double a = s1 > 0 ? sy / s1 : 0, b = 0;
        double den = s1 * sxx - sx * sx;
        if (s1 >= 2 && den > 1e-12 * s1 * s1) {
            b = (s1 * sxy - sx * sy) / den;
            a = (sy - b * sx) / s1;
        }
        m->cw[2 * o] = (float)a;
        m->cw[2 * o + 1] = (float)b;
    }
}

/*
 * kNN and preference (router/onbr.h): keeps the training rows' embeddings
 * (the first dim entries of each row of x, n rows of m->n_feat) and
 * qualities; with validation rows (v, valid, vmap: model option -> v's
 * option) chooses k (unless opts->k) and, for preference, the local weight
 * (unless opts->fix_local_weight) on them; without, k = opts->k (10 when
 * 0) and the local weight opts->local_weight when fixed, else 0.5.
 */
static int nbr_fit(dr_omodel *m, const dr_outcome_table *t, const size_t *rows, size_t n,
                   const float *x, const dr_outcome_table *v, const size_t *valid, size_t n_valid,
                   const int *vmap, const dr_omodel_train_opts *opts, dynrag_error *err)
{
    const size_t K = m->n_options, F = m->n_feat;
    bool pref = strcmp(m->kind, "preference") == 0;
    float *q = dr_malloc(n * K * sizeof(float)), *ev = NULL, *vq = NULL;
    int rc = DYNRAG_OK;
    if (q == NULL)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        const dr_outcome_row *row = &t->rows[rows ? rows[i] : i];
        for (size_t o = 0; o < K; o++)
            q[i * K + o] = row->o[o].present ? (float)row->o[o].quality : -1.0f;
    }
    if ((m->nbr = dr_onbr_create(x, F, m->dim, n, q, K, pref)) == NULL)
        goto nomem;
    m->nbr->k = opts->k > 0 ? opts->k : (int)DR_MIN((size_t)10, n);
    if (pref && opts->fix_local_weight)
        m->nbr->local_weight = opts->local_weight;
    if (v == NULL || n_valid == 0 || (opts->k > 0 && (!pref || opts->fix_local_weight)))
        goto done;
    ev = dr_malloc(n_valid * F * sizeof(float));
    vq = dr_malloc(n_valid * K * sizeof(float));
    if (ev == NULL || vq == NULL)
        goto nomem;
    for (size_t i = 0; i < n_valid; i++) {
        const dr_outcome_row *row = &v->rows[valid ? valid[i] : i];
        if ((rc = features(m, row->query, ev + i * F, err)) != DYNRAG_OK)
            goto done;
        for (size_t o = 0; o < K; o++)
            vq[i * K + o] =
                vmap[o] >= 0 && row->o[vmap[o]].present ? (float)row->o[vmap[o]].quality : -1.0f;
        if (opts->progress != NULL && (i % 256 == 0 || i + 1 == n_valid))
            opts->progress(opts->progress_user, "valid", i + 1, n_valid);
    }
    if (dr_onbr_tune(m->nbr, ev, F, n_valid, vq, opts->k, opts->fix_local_weight) < -0.5)
        goto nomem;
    goto done;
nomem:
    rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
done:
    dr_free(q);
    dr_free(ev);
    dr_free(vq);
    return rc;
}

int dr_omodel_train(const dr_outcome_table *t, const size_t *rows, size_t n,
                    const dr_outcome_table *v, const size_t *valid, size_t n_valid,
                    const dr_omodel_train_opts *opts, dr_omodel **out,
                    dr_omodel_train_report *report, dynrag_error *err)
{
    *out = NULL;
    if (rows == NULL)
        n = t->n_rows;
    if (report != NULL)
        memset(report, 0, sizeof(*report));
    const char *kind = opts->kind ? opts->kind : "predict";
    bool is_cluster = strcmp(kind, "cluster") == 0, is_distill = strcmp(kind, "distill") == 0;
    bool is_mf = strcmp(kind, "mf") == 0, is_pref = strcmp(kind, "preference") == 0;
    bool is_ctr = strcmp(kind, "contrastive") == 0;
    if (strcmp(kind, "predict") != 0 && !is_cluster && !is_distill && !is_mf && !is_pref && !is_ctr)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "unknown router kind '%s' (expected predict, cluster, distill, mf, "
                          "preference or contrastive)",
                          kind);
    bool is_knn = false;
    if (opts->method != NULL && strcmp(kind, "predict") == 0 && strcmp(opts->method, "knn") == 0)
        is_knn = true;
    else if (opts->method != NULL &&
             !(strcmp(kind, "predict") == 0 && strcmp(opts->method, "ridge") == 0))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "method '%s': the %s kind has none (predict: ridge or knn)", opts->method,
                          kind);
    if (opts->k < 0 || opts->k > DR_ONBR_MAX_K || (opts->k > 0 && !is_knn && !is_pref) ||
        (size_t)opts->k > n)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "k %d: expected 1 to %d and at most the training rows, for the knn "
                          "method or the preference kind only",
                          opts->k, DR_ONBR_MAX_K);
    if (is_pref && t->n_options > DR_ONBR_MAX_OPTIONS)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "the preference kind takes at most %d options",
                          DR_ONBR_MAX_OPTIONS);
    if (is_cluster && opts->clusters < 0 && !opts->task_clusters)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "the cluster kind needs clusters");
    int dim = opts->dim > 0 ? opts->dim : 1024;
    if (dim < 16 || dim > DR_OMODEL_MAX_DIM)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "dim %d: expected 16 to %d", dim,
                          DR_OMODEL_MAX_DIM);
    if (n < 2)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "need at least 2 training rows, got %zu", n);
    if (t->n_options == 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "the table has no options");
    int rc = DYNRAG_OK;
    float *x = NULL;
    double *gram = NULL, *a = NULL, *rhs = NULL, *best_w = NULL;
    float *best_qw = NULL;
    int *vmap = NULL;
    size_t *task_of = NULL;
    cJSON *prov = NULL;
    dr_omodel *m = dr_calloc(1, sizeof(*m));
    if (m == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    m->kind = dr_strdup(kind);
    m->method = dr_strdup(is_cluster   ? "cluster_mean"
                          : is_distill ? "softmax_regression"
                          : is_mf      ? "sgd_mf"
                          : is_pref    ? "bradley_terry"
                          : is_knn     ? "knn"
                          : is_ctr     ? "dual_contrastive"
                                       : "ridge");
    m->is_distill = is_distill;
    m->is_mf = is_mf;
    m->rank = is_mf ? DR_OMODEL_MF_RANK : 0;
    m->n_options = t->n_options;
    m->options = dr_calloc(t->n_options, sizeof(char *));
    m->has_cost = dr_calloc(t->n_options, sizeof(bool));
    m->dim = dim;
    m->n_clusters = opts->clusters < 0 || is_knn || is_pref ? 0
                    : opts->clusters == 0                   ? 32
                                                            : (size_t)opts->clusters;
    if (opts->task_clusters && !is_knn && !is_pref) {
        m->n_clusters = 0;
        task_of = dr_malloc(n * sizeof(*task_of));
        if (task_of == NULL)
            goto nomem;
        if ((rc = task_index(m, t, rows, n, task_of, err)) != DYNRAG_OK)
            goto cleanup;
    }
    if (m->n_clusters > DR_OMODEL_MAX_CLUSTERS || m->n_clusters > n) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "clusters %zu: expected at most %d and at most "
                        "the number of training rows (%zu)",
                        m->n_clusters, DR_OMODEL_MAX_CLUSTERS, n);
        goto cleanup;
    }
    double cluster_lambda = opts->cluster_lambda > 0 ? opts->cluster_lambda : 0.1;
    m->n_feat = (size_t)dim + DR_OMODEL_EXTRA + m->n_clusters + 1;
    const size_t F = m->n_feat, K = m->n_options;
    m->cdim = m->cluster_labels != NULL ? (size_t)dim + DR_OMODEL_EXTRA + 1 : (size_t)dim;
    m->centroids = dr_malloc((m->n_clusters ? m->n_clusters : 1) * m->cdim * sizeof(float));
    if (m->centroids == NULL)
        goto nomem;
    m->qw = dr_calloc(K * F, sizeof(float));
    m->cw = dr_calloc(K * 2, sizeof(float));
    if (!m->kind || !m->method || !m->options || !m->has_cost || !m->qw || !m->cw)
        goto nomem;
    for (size_t o = 0; o < K; o++)
        if ((m->options[o] = dr_strdup(t->options[o])) == NULL)
            goto nomem;

    /* IDF over the training queries. */
    if ((rc = dr_embedder_builtin_create(dim, &m->emb, err)) != DYNRAG_OK)
        goto cleanup;
    for (size_t i = 0; i < n; i++) {
        const char *qt = t->rows[rows ? rows[i] : i].query;
        if ((rc = dr_builtin_observe(m->emb, qt, strlen(qt), err)) != DYNRAG_OK)
            goto cleanup;
    }
    if ((rc = dr_builtin_finish_idf(m->emb, err)) != DYNRAG_OK)
        goto cleanup;
    {
        void *blob = NULL;
        size_t len = 0;
        if ((rc = dr_builtin_state_save(m->emb, &blob, &len, err)) != DYNRAG_OK)
            goto cleanup;
        m->idf = dr_malloc(IDF_BUCKETS * sizeof(float));
        if (m->idf == NULL || len != IDF_BLOB_HEADER + IDF_BUCKETS * 4) {
            dr_free(blob);
            goto nomem;
        }
        const unsigned char *p = blob;
        m->idf_docs = 0;
        for (int b = 0; b < 8; b++)
            m->idf_docs |= (uint64_t)p[16 + b] << (8 * b);
        for (size_t i = 0; i < IDF_BUCKETS; i++) {
            uint32_t bits = 0;
            for (int b = 0; b < 4; b++)
                bits |= (uint32_t)p[IDF_BLOB_HEADER + 4 * i + b] << (8 * b);
            memcpy(&m->idf[i], &bits, 4);
        }
        dr_free(blob);
    }

    /* Features and the Gram matrix (sparse rows: the embedding is sparse). */
    x = dr_malloc(n * F * sizeof(float));
    gram = dr_calloc(F * F, sizeof(double));
    a = dr_malloc(F * F * sizeof(double));
    rhs = dr_calloc(K * F, sizeof(double));
    best_w = dr_malloc(K * F * sizeof(double));
    best_qw = dr_malloc(K * F * sizeof(float));
    size_t *nz = dr_malloc(F * sizeof(size_t));
    if (!x || !gram || !a || !rhs || !best_w || !best_qw || !nz) {
        dr_free(nz);
        goto nomem;
    }
    bool all_present = true;
    for (size_t i = 0; i < n; i++) {
        const char *texts[1] = {t->rows[rows ? rows[i] : i].query};
        if ((rc = dr_embed(m->emb, texts, 1, x + i * F, err)) != DYNRAG_OK) {
            dr_free(nz);
            goto cleanup;
        }
        if (opts->progress != NULL && (i % 256 == 0 || i + 1 == n))
            opts->progress(opts->progress_user, "embed", i + 1, n);
    }
    if (task_of != NULL) {
        for (size_t i = 0; i < n; i++)
            extras(t->rows[rows ? rows[i] : i].query, x + i * F + dim);
        if (task_classifier_fit(x, F, n, dim, task_of, m->n_clusters, opts, m->centroids) !=
            DYNRAG_OK) {
            dr_free(nz);
            goto nomem;
        }
    } else if (m->n_clusters > 0) {
        if (opts->progress != NULL)
            opts->progress(opts->progress_user, "k-means", 0, 1);
        if (kmeans(x, F, n, dim, m->n_clusters, opts->seed, 20, m->centroids) != DYNRAG_OK) {
            dr_free(nz);
            goto nomem;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const dr_outcome_row *row = &t->rows[rows ? rows[i] : i];
        float *xi = x + i * F;
        finish_features(m, row->query, xi);
        size_t nnz = nonzeros(xi, F, nz);
        for (size_t p1 = 0; p1 < nnz && !is_knn && !is_pref; p1++) {
            double xa = xi[nz[p1]];
            double *g = gram + nz[p1] * F;
            for (size_t p2 = 0; p2 <= p1; p2++)
                g[nz[p2]] += xa * xi[nz[p2]];
        }
        for (size_t o = 0; o < K; o++) {
            if (!row->o[o].present) {
                all_present = false;
                continue;
            }
            double y = row->o[o].quality;
            for (size_t p1 = 0; p1 < nnz; p1++)
                rhs[o * F + nz[p1]] += y * xi[nz[p1]];
        }
    }
    dr_free(nz);

    vmap = dr_malloc(K * sizeof(int));
    if (vmap == NULL)
        goto nomem;
    for (size_t o = 0; o < K; o++)
        vmap[o] = v != NULL ? dr_outcomes_option(v, m->options[o]) : -1;
    if (is_cluster) {
        if (cluster_prior(m, t, rows, n, x, 1.0) != DYNRAG_OK)
            goto nomem;
        m->lambda = 0;
        goto fitted;
    }
    if (is_distill) {
        double l2 = opts->lambda > 0 ? opts->lambda : 1e-4;
        if (distill_fit(m, t, rows, n, x, opts->temperature > 0 ? opts->temperature : 0.1, l2,
                        opts) != DYNRAG_OK)
            goto nomem;
        m->lambda = l2;
        goto fitted;
    }
    if (is_knn || is_pref) {
        if ((rc = nbr_fit(m, t, rows, n, x, v, valid, n_valid, vmap, opts, err)) != DYNRAG_OK)
            goto cleanup;
        m->lambda = 0;
        goto fitted;
    }
    if (is_ctr) {
        int crc = contrastive_fit(m, t, rows, n, x, v, valid, n_valid, vmap, opts, report, err);
        if (crc != DYNRAG_OK) {
            rc = crc;
            goto cleanup;
        }
        goto fitted;
    }
    if (is_mf) {
        double l2 = opts->lambda > 0 ? opts->lambda : 1e-5;
        int mrc = mf_fit(m, t, rows, n, x, l2, opts->seed, v, valid, n_valid, vmap, opts, err);
        if (mrc != DYNRAG_OK)
            goto nomem;
        m->lambda = l2;
        goto fitted;
    }
    /* Candidate penalties: the given one, or a grid judged on valid. */
    static const double grid[] = {0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0};
    double one = opts->lambda > 0 ? opts->lambda : 1.0;
    const double *lams = &one;
    size_t n_lams = 1;
    if (opts->lambda <= 0 && v != NULL && n_valid > 0) {
        lams = grid;
        n_lams = DR_ARRAY_LEN(grid);
    }
    double best_q = -INFINITY;
    m->lambda = lams[0];
    for (size_t li = 0; li < n_lams; li++) {
        for (size_t o = 0; o < K; o++) {
            /* With missing cells an option gets its own Gram matrix. */
            const double *g = gram;
            double *own = NULL;
            if (!all_present) {
                own = dr_calloc(F * F, sizeof(double));
                if (own == NULL)
                    goto nomem;
                for (size_t i = 0; i < n; i++) {
                    if (!t->rows[rows ? rows[i] : i].o[o].present)
                        continue;
                    const float *xi = x + i * F;
                    for (size_t f1 = 0; f1 < F; f1++)
                        if (xi[f1] != 0.0f)
                            for (size_t f2 = 0; f2 <= f1; f2++)
                                own[f1 * F + f2] += (double)xi[f1] * xi[f2];
                }
                g = own;
            }
            for (size_t f1 = 0; f1 < F; f1++)
                for (size_t f2 = 0; f2 <= f1; f2++)
                    a[f1 * F + f2] = g[f1 * F + f2];
            dr_free(own);
            /* The bias (last feature) is barely penalised, the cluster
             * one-hots less than the n-grams. */
            for (size_t f = 0; f < F; f++)
                a[f * F + f] += f + 1 == F                           ? 1e-6
                                : f >= (size_t)dim + DR_OMODEL_EXTRA ? cluster_lambda
                                                                     : lams[li];
            if (cholesky(a, F) != DYNRAG_OK) {
                rc = dr_err_set(err, DYNRAG_ERR_INTERNAL, "ridge: matrix not positive definite");
                goto cleanup;
            }
            double *w = best_w; /* scratch for this option's solution */
            memcpy(w, rhs + o * F, F * sizeof(double));
            chol_solve(a, F, w);
            for (size_t f = 0; f < F; f++)
                m->qw[o * F + f] = (float)w[f];
            if (!all_present)
                continue;
            /* Same Gram for every option: solve the others with this factor. */
            for (size_t o2 = o + 1; o2 < K; o2++) {
                memcpy(w, rhs + o2 * F, F * sizeof(double));
                chol_solve(a, F, w);
                for (size_t f = 0; f < F; f++)
                    m->qw[o2 * F + f] = (float)w[f];
            }
            break;
        }
        if (opts->progress != NULL)
            opts->progress(opts->progress_user, "ridge", li + 1, n_lams);
        if (n_lams == 1)
            break;
        double qv = routed_quality(m, v, valid, n_valid, vmap, err);
        if (li == 0 || qv > best_q) {
            best_q = qv;
            m->lambda = lams[li];
            memcpy(best_qw, m->qw, K * F * sizeof(float));
        }
    }
    if (n_lams > 1)
        memcpy(m->qw, best_qw, K * F * sizeof(float));
fitted:
    fit_cost(m, t, rows, n);
    if (report != NULL) {
        report->lambda = m->lambda;
        report->valid_quality =
            v != NULL && n_valid > 0 ? routed_quality(m, v, valid, n_valid, vmap, err) : NAN;
        int *tmap = vmap;
        for (size_t o = 0; o < K; o++)
            tmap[o] = (int)o;
        report->train_quality = routed_quality(m, t, rows, n, tmap, err);
        report->n_params = is_mf    ? (size_t)m->rank * (F + K) + K + 2 * K
                           : m->nbr ? m->nbr->n * ((size_t)dim + K) + K + 2 * K
                                    : K * F + 2 * K;
        report->k = m->nbr ? m->nbr->k : 0;
        report->local_weight = m->nbr && m->nbr->preference ? m->nbr->local_weight : NAN;
        if (is_ctr) {
            const dr_contrastive *c = m->ctr;
            size_t h1 = c->hidden ? c->hidden : c->dim;
            report->n_params =
                F * h1 + c->hidden * c->dim + (c->hidden ? c->dim : 0) + K * c->dim + 2 * K;
        }
    }
    /* Provenance. */
    prov = cJSON_CreateObject();
    if (prov == NULL)
        goto nomem;
    cJSON *data = opts->data_desc ? cJSON_Parse(opts->data_desc) : NULL;
    if (data == NULL)
        data = cJSON_CreateArray();
    cJSON_AddItemToObject(prov, "data", data);
    cJSON_AddNumberToObject(prov, "rows", (double)n);
    cJSON_AddNumberToObject(prov, "valid_rows", (double)n_valid);
    cJSON_AddNumberToObject(prov, "seed", (double)opts->seed);
    if (report != NULL && !isnan(report->valid_quality))
        cJSON_AddNumberToObject(prov, "valid_quality", report->valid_quality);
    char ts[40];
    dr_time_rfc3339(ts, sizeof(ts));
    cJSON_AddStringToObject(prov, "created", ts);
    cJSON_AddStringToObject(prov, "dynrag_version", dynrag_version());
    m->provenance = cJSON_PrintUnformatted(prov);
    if (m->provenance == NULL)
        goto nomem;
    goto cleanup;
nomem:
    rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
cleanup:
    cJSON_Delete(prov);
    dr_free(x);
    dr_free(gram);
    dr_free(a);
    dr_free(rhs);
    dr_free(best_w);
    dr_free(best_qw);
    dr_free(vmap);
    dr_free(task_of);
    if (rc != DYNRAG_OK) {
        dr_omodel_free(m);
        return rc;
    }
    *out = m;
    return DYNRAG_OK;
}

/* ---- files ------------------------------------------------------------------ */

int dr_omodel_save(const dr_omodel *m, const char *path, dynrag_error *err)
{
    int rc = DYNRAG_OK;
    char *cfg_text = NULL;
    cJSON *cfg = cJSON_CreateObject();
    dr_st_writer *w = dr_st_writer_new();
    if (cfg == NULL || w == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    cJSON_AddStringToObject(cfg, "kind", m->kind);
    cJSON_AddStringToObject(cfg, "method", m->method);
    cJSON_AddNumberToObject(cfg, "dim", m->dim);
    cJSON_AddNumberToObject(cfg, "extra", DR_OMODEL_EXTRA);
    cJSON_AddNumberToObject(cfg, "clusters", (double)m->n_clusters);
    if (m->cluster_labels != NULL) {
        cJSON_AddStringToObject(cfg, "clusters_by", "task");
        cJSON *labels = cJSON_AddArrayToObject(cfg, "cluster_labels");
        for (size_t c = 0; labels != NULL && c < m->n_clusters; c++)
            cJSON_AddItemToArray(labels, cJSON_CreateString(m->cluster_labels[c]));
    }
    cJSON_AddNumberToObject(cfg, "lambda", m->lambda);
    if (m->is_mf)
        cJSON_AddNumberToObject(cfg, "rank", m->rank);
    if (m->nbr != NULL) {
        cJSON_AddNumberToObject(cfg, "rows", (double)m->nbr->n);
        cJSON_AddNumberToObject(cfg, "k", m->nbr->k);
        cJSON_AddNumberToObject(cfg, "local_weight", m->nbr->local_weight);
        cJSON_AddNumberToObject(cfg, "prior", m->nbr->prior);
    }
    if (m->ctr != NULL) {
        cJSON_AddNumberToObject(cfg, "hidden", (double)m->ctr->hidden);
        cJSON_AddNumberToObject(cfg, "embed_dim", (double)m->ctr->dim);
        cJSON_AddNumberToObject(cfg, "tau", m->ctr->tau);
        cJSON_AddNumberToObject(cfg, "prior_weight", m->prior_weight);
        cJSON_AddNumberToObject(cfg, "prior_rows", m->prior_rows);
    }
    cJSON_AddNumberToObject(cfg, "idf_docs", (double)m->idf_docs);
    cJSON *opts = cJSON_AddArrayToObject(cfg, "options");
    cJSON *hc = cJSON_AddArrayToObject(cfg, "has_cost");
    for (size_t o = 0; opts != NULL && hc != NULL && o < m->n_options; o++) {
        cJSON_AddItemToArray(opts, cJSON_CreateString(m->options[o]));
        cJSON_AddItemToArray(hc, cJSON_CreateBool(m->has_cost[o]));
    }
    cfg_text = cJSON_PrintUnformatted(cfg);
    if (cfg_text == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    uint64_t qshape[2] = {m->n_options, m->n_feat}, cshape[2] = {m->n_options, 2},
             ishape[1] = {IDF_BUCKETS};
    if ((rc = dr_st_writer_meta(w, "format", DR_OMODEL_FORMAT, err)) ||
        (rc = dr_st_writer_meta(w, "format_version", "1", err)) ||
        (rc = dr_st_writer_meta(w, "config", cfg_text, err)) ||
        (rc = dr_st_writer_meta(w, "provenance", m->provenance ? m->provenance : "{}", err)) ||
        (rc = dr_st_writer_add_f32(w, "quality_w", 2, qshape, m->qw, err)) ||
        (rc = dr_st_writer_add_f32(w, "cost_w", 2, cshape, m->cw, err)) ||
        (rc = dr_st_writer_add_f32(w, "idf", 1, ishape, m->idf, err)))
        goto cleanup;
    uint64_t kshape[2] = {m->n_clusters, (uint64_t)m->cdim};
    if (m->n_clusters > 0 &&
        (rc = dr_st_writer_add_f32(w, "centroids", 2, kshape, m->centroids, err)))
        goto cleanup;
    if (m->nbr != NULL) {
        uint64_t xshape[2] = {m->nbr->n, (uint64_t)m->dim}, qs[2] = {m->nbr->n, m->n_options},
                 rshape[1] = {m->n_options};
        if ((rc = dr_st_writer_add_f32(w, "train_x", 2, xshape, m->nbr->x, err)) ||
            (rc = dr_st_writer_add_f32(w, "train_q", 2, qs, m->nbr->q, err)) ||
            (rc = dr_st_writer_add_f32(w, "ratings", 1, rshape, m->nbr->ratings, err)))
            goto cleanup;
    }
    if (m->ctr != NULL) {
        const dr_contrastive *c = m->ctr;
        uint64_t s1[2] = {c->n_feat, c->hidden ? c->hidden : c->dim}, s2[2] = {c->dim, c->hidden},
                 sb[1] = {c->dim}, se[2] = {c->n_options, c->dim};
        if ((rc = dr_st_writer_add_f32(w, "enc_w1", 2, s1, c->w1, err)) ||
            (rc = dr_st_writer_add_f32(w, "option_emb", 2, se, c->emb, err)))
            goto cleanup;
        if (c->hidden > 0 && ((rc = dr_st_writer_add_f32(w, "enc_w2", 2, s2, c->w2, err)) ||
                              (rc = dr_st_writer_add_f32(w, "enc_b2", 1, sb, c->b2, err))))
            goto cleanup;
    }
    rc = dr_st_writer_save(w, path, err);
cleanup:
    cJSON_Delete(cfg);
    dr_free(cfg_text);
    dr_st_writer_free(w);
    return rc;
}

/* Reads a number field of the config, checking its range. */
static int cfg_num(const cJSON *cfg, const char *path, const char *key, double lo, double hi,
                   double *out, dynrag_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: config.%s: missing or outside [%g, %g]",
                          path, key, lo, hi);
    *out = v->valuedouble;
    return DYNRAG_OK;
}

/* Reads a count or size field of the config: a number in [lo, hi] that
 * must be an integer (a damaged 16.5 is an error, not dimension 16). */
static int cfg_int(const cJSON *cfg, const char *path, const char *key, double lo, double hi,
                   double *out, dynrag_error *err)
{
    int rc = cfg_num(cfg, path, key, lo, hi, out, err);
    if (rc == DYNRAG_OK && *out != floor(*out))
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: config.%s: %g is not an integer", path, key,
                          *out);
    return rc;
}

/* Reads the training neighbours of a knn or preference model (config
 * rows, k, local_weight, prior; tensors train_x, train_q, ratings),
 * checking every value. */
static int load_neighbours(dr_omodel *m, const dr_st_file *f, const cJSON *cfg, const char *path,
                           bool pref, dynrag_error *err)
{
    double rows = 0, k = 0, lw = 0, prior = 0;
    int rc;
    if ((rc = cfg_int(cfg, path, "rows", 1, 1e8, &rows, err)) ||
        (rc = cfg_int(cfg, path, "k", 1, DR_MIN(rows, (double)DR_ONBR_MAX_K), &k, err)) ||
        (rc = cfg_num(cfg, path, "local_weight", 0, 1, &lw, err)) ||
        (rc = cfg_num(cfg, path, "prior", 0, 1e6, &prior, err)))
        return rc;
    if (m->n_clusters != 0)
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: config.clusters: must be 0 for a %s model",
                          path, m->kind);
    if (pref && m->n_options > DR_ONBR_MAX_OPTIONS)
        return dr_err_set(err, DYNRAG_ERR_FORMAT,
                          "%s: config.options: a preference model has at most %d", path,
                          DR_ONBR_MAX_OPTIONS);
    /* The rows the config claims must be the rows the file holds before
     * anything is allocated for them. */
    const dr_st_tensor *tx = dr_st_find(f, "train_x");
    if (tx == NULL || tx->ndim != 2 || tx->shape[0] != (uint64_t)rows ||
        tx->shape[1] != (uint64_t)m->dim)
        return dr_err_set(err, DYNRAG_ERR_FORMAT,
                          "%s: train_x: missing or not [config.rows, config.dim] = [%.0f, %d]",
                          path, rows, m->dim);
    if ((m->nbr = dr_onbr_alloc((size_t)rows, m->dim, m->n_options, pref)) == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    m->nbr->k = (int)k;
    m->nbr->local_weight = lw;
    m->nbr->prior = prior;
    const size_t n = m->nbr->n, K = m->n_options;
    uint64_t xshape[2] = {n, (uint64_t)m->dim}, qs[2] = {n, K}, rshape[1] = {K};
    if ((rc = dr_st_read_f32(f, "train_x", 2, xshape, m->nbr->x, err)) ||
        (rc = dr_st_read_f32(f, "train_q", 2, qs, m->nbr->q, err)) ||
        (rc = dr_st_read_f32(f, "ratings", 1, rshape, m->nbr->ratings, err)))
        return dr_err_prefix(err, "%s", path);
    for (size_t i = 0; i < n * (size_t)m->dim; i++)
        if (!isfinite(m->nbr->x[i]) || fabsf(m->nbr->x[i]) > 1.0f + 1e-4f)
            return dr_err_set(err, DYNRAG_ERR_FORMAT,
                              "%s: train_x: a value is not finite or outside [-1, 1]", path);
    for (size_t i = 0; i < n * K; i++)
        if (!(m->nbr->q[i] == -1.0f || (m->nbr->q[i] >= 0 && m->nbr->q[i] <= 1)))
            return dr_err_set(err, DYNRAG_ERR_FORMAT,
                              "%s: train_q: a value is neither -1 (missing) nor in [0, 1]", path);
    for (size_t o = 0; o < K; o++)
        if (!isfinite(m->nbr->ratings[o]) || fabsf(m->nbr->ratings[o]) > 100)
            return dr_err_set(err, DYNRAG_ERR_FORMAT,
                              "%s: ratings: a value is not finite or outside [-100, 100]", path);
    if (dr_onbr_finish(m->nbr) != 0)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    return DYNRAG_OK;
}

/* Reads and checks the contrastive encoder of a model file (config
 * hidden/embed_dim/tau, tensors enc_w1, enc_w2, enc_b2, option_emb) into
 * m->ctr; m's features and options are already known. */
static int load_contrastive(dr_st_file *f, const cJSON *cfg, const char *path, dr_omodel *m,
                            dynrag_error *err)
{
    double hidden = 0, dim = 0, tau = 0;
    int rc;
    if ((rc = cfg_int(cfg, path, "hidden", 0, DR_CTR_MAX_HIDDEN, &hidden, err)) ||
        (rc = cfg_int(cfg, path, "embed_dim", 2, DR_CTR_MAX_DIM, &dim, err)) ||
        (rc = cfg_num(cfg, path, "tau", 1e-6, 1e6, &tau, err)) ||
        (rc = cfg_num(cfg, path, "prior_weight", 0, 1e6, &m->prior_weight, err)) ||
        (rc = cfg_num(cfg, path, "prior_rows", 0, 1e9, &m->prior_rows, err)))
        return rc;
    /* The sizes the config claims must be the sizes the file holds before
     * anything is allocated for them. */
    size_t h1 = hidden > 0 ? (size_t)hidden : (size_t)dim;
    uint64_t s1[2] = {m->n_feat, h1}, s2[2] = {(uint64_t)dim, (uint64_t)hidden},
             sb[1] = {(uint64_t)dim}, se[2] = {m->n_options, (uint64_t)dim};
    if ((rc = dr_st_check_f32(f, "enc_w1", 2, s1, err)) ||
        (rc = dr_st_check_f32(f, "option_emb", 2, se, err)) ||
        (hidden > 0 && ((rc = dr_st_check_f32(f, "enc_w2", 2, s2, err)) ||
                        (rc = dr_st_check_f32(f, "enc_b2", 1, sb, err))))) {
        dr_err_prefix(err, "%s", path);
        return rc;
    }
    dr_contrastive *c =
        dr_contrastive_new(m->n_feat, (size_t)hidden, (size_t)dim, m->n_options, tau);
    if (c == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    m->ctr = c;
    if ((rc = dr_st_read_f32(f, "enc_w1", 2, s1, c->w1, err)) ||
        (rc = dr_st_read_f32(f, "option_emb", 2, se, c->emb, err)) ||
        (c->hidden > 0 && ((rc = dr_st_read_f32(f, "enc_w2", 2, s2, c->w2, err)) ||
                           (rc = dr_st_read_f32(f, "enc_b2", 1, sb, c->b2, err))))) {
        dr_err_prefix(err, "%s", path);
        return rc;
    }
    struct {
        const char *name;
        const float *v;
        size_t n;
    } parts[] = {{"enc_w1", c->w1, c->n_feat * h1},
                 {"option_emb", c->emb, c->n_options * c->dim},
                 {"enc_w2", c->w2, c->hidden * c->dim},
                 {"enc_b2", c->b2, c->hidden ? c->dim : 0}};
    for (size_t p = 0; p < DR_ARRAY_LEN(parts); p++)
        for (size_t i = 0; i < parts[p].n; i++) {
            if (!isfinite(parts[p].v[i]))
                return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: %s: a value is not finite", path,
                                  parts[p].name);
            if (fabsf(parts[p].v[i]) > DR_CTR_MAX_WEIGHT) /* see contrastive.h */
                return dr_err_set(
                    err, DYNRAG_ERR_FORMAT, "%s: %s: value %g at [%zu] is outside [-%g, %g]", path,
                    parts[p].name, (double)parts[p].v[i], i, DR_CTR_MAX_WEIGHT, DR_CTR_MAX_WEIGHT);
        }
    return DYNRAG_OK;
}

int dr_omodel_load(const char *path, dr_omodel **out, dynrag_error *err)
{
    *out = NULL;
    dr_st_file *f = NULL;
    cJSON *cfg = NULL;
    int rc = dr_st_open(path, &f, err);
    if (rc != DYNRAG_OK)
        return rc;
    dr_omodel *m = dr_calloc(1, sizeof(*m));
    if (m == NULL) {
        dr_st_close(f);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    const char *fmt = dr_st_meta(f, "format"), *ver = dr_st_meta(f, "format_version");
    if (fmt == NULL || strcmp(fmt, DR_OMODEL_FORMAT) != 0) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: metadata format: expected \"%s\"", path,
                        DR_OMODEL_FORMAT);
        goto cleanup;
    }
    if (ver == NULL || strcmp(ver, "1") != 0) {
        rc =
            dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: metadata format_version: expected \"1\"", path);
        goto cleanup;
    }
    const char *cfg_text = dr_st_meta(f, "config");
    cfg = cfg_text ? cJSON_Parse(cfg_text) : NULL;
    if (!cJSON_IsObject(cfg)) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: metadata config: missing or not JSON", path);
        goto cleanup;
    }
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(cfg, "kind");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(cfg, "method");
    bool ok_kind =
        cJSON_IsString(kind) && cJSON_IsString(method) &&
        ((strcmp(kind->valuestring, "predict") == 0 && strcmp(method->valuestring, "ridge") == 0) ||
         (strcmp(kind->valuestring, "cluster") == 0 &&
          strcmp(method->valuestring, "cluster_mean") == 0) ||
         (strcmp(kind->valuestring, "distill") == 0 &&
          strcmp(method->valuestring, "softmax_regression") == 0) ||
         (strcmp(kind->valuestring, "mf") == 0 && strcmp(method->valuestring, "sgd_mf") == 0) ||
         (strcmp(kind->valuestring, "contrastive") == 0 &&
          strcmp(method->valuestring, "dual_contrastive") == 0));
    bool is_knn = cJSON_IsString(kind) && cJSON_IsString(method) &&
                  strcmp(kind->valuestring, "predict") == 0 &&
                  strcmp(method->valuestring, "knn") == 0;
    bool is_pref = cJSON_IsString(kind) && cJSON_IsString(method) &&
                   strcmp(kind->valuestring, "preference") == 0 &&
                   strcmp(method->valuestring, "bradley_terry") == 0;
    if (!ok_kind && !is_knn && !is_pref) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                        "%s: config.kind/method: expected predict/ridge, predict/knn, "
                        "cluster/cluster_mean, distill/softmax_regression, mf/sgd_mf, "
                        "preference/bradley_terry or contrastive/dual_contrastive",
                        path);
        goto cleanup;
    }
    double rank = 0;
    if (strcmp(kind->valuestring, "mf") == 0 &&
        (rc = cfg_int(cfg, path, "rank", 1, DR_OMODEL_MAX_RANK, &rank, err)) != DYNRAG_OK)
        goto cleanup;
    double dim = 0, extra = 0, lambda = 0, docs = 0, clusters = 0;
    if ((rc = cfg_int(cfg, path, "dim", 16, DR_OMODEL_MAX_DIM, &dim, err)) ||
        (rc = cfg_int(cfg, path, "clusters", 0, DR_OMODEL_MAX_CLUSTERS, &clusters, err)) ||
        (rc = cfg_num(cfg, path, "extra", DR_OMODEL_EXTRA, DR_OMODEL_EXTRA, &extra, err)) ||
        (rc = cfg_num(cfg, path, "lambda", 0, 1e12, &lambda, err)) ||
        (rc = cfg_int(cfg, path, "idf_docs", 0, 1e15, &docs, err)))
        goto cleanup;
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(cfg, "options");
    const cJSON *hc = cJSON_GetObjectItemCaseSensitive(cfg, "has_cost");
    int n_opt = cJSON_GetArraySize(opts);
    if (!cJSON_IsArray(opts) || n_opt < 1 || n_opt > DR_OUTCOMES_MAX_OPTIONS ||
        !cJSON_IsArray(hc) || cJSON_GetArraySize(hc) != n_opt) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                        "%s: config.options/has_cost: expected two arrays of 1 to %d entries", path,
                        DR_OUTCOMES_MAX_OPTIONS);
        goto cleanup;
    }
    m->kind = dr_strdup(kind->valuestring);
    m->method = dr_strdup(method->valuestring);
    m->is_distill = strcmp(kind->valuestring, "distill") == 0;
    m->is_mf = strcmp(kind->valuestring, "mf") == 0;
    m->rank = (int)rank;
    m->dim = (int)dim;
    m->n_clusters = (size_t)clusters;
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(cfg, "cluster_labels");
    if (labels != NULL) {
        if (!cJSON_IsArray(labels) || (size_t)cJSON_GetArraySize(labels) != m->n_clusters ||
            m->n_clusters == 0) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                            "%s: config.cluster_labels: expected an array of config.clusters "
                            "(%zu) strings",
                            path, m->n_clusters);
            goto cleanup;
        }
        m->cluster_labels = dr_calloc(m->n_clusters, sizeof(char *));
        if (m->cluster_labels == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        size_t c = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, labels)
        {
            if (!cJSON_IsString(it) || it->valuestring[0] == '\0') {
                rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                                "%s: config.cluster_labels[%zu]: expected a non-empty string", path,
                                c);
                goto cleanup;
            }
            if ((m->cluster_labels[c++] = dr_strdup(it->valuestring)) == NULL) {
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                goto cleanup;
            }
        }
    }
    m->n_feat = (size_t)m->dim + DR_OMODEL_EXTRA + m->n_clusters + 1;
    m->cdim = m->cluster_labels != NULL ? (size_t)m->dim + DR_OMODEL_EXTRA + 1 : (size_t)m->dim;
    m->centroids = dr_malloc((m->n_clusters ? m->n_clusters : 1) * m->cdim * sizeof(float));
    m->lambda = lambda;
    m->idf_docs = (uint64_t)docs;
    m->n_options = (size_t)n_opt;
    m->options = dr_calloc(m->n_options, sizeof(char *));
    m->has_cost = dr_calloc(m->n_options, sizeof(bool));
    m->qw = dr_malloc(m->n_options * m->n_feat * sizeof(float));
    m->cw = dr_malloc(m->n_options * 2 * sizeof(float));
    m->idf = dr_malloc(IDF_BUCKETS * sizeof(float));
    const char *prov = dr_st_meta(f, "provenance");
    m->provenance = dr_strdup(prov ? prov : "{}");
    if (!m->kind || !m->method || !m->options || !m->has_cost || !m->qw || !m->cw || !m->idf ||
        !m->provenance || !m->centroids) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t o = 0; o < m->n_options; o++) {
        const cJSON *s = cJSON_GetArrayItem(opts, (int)o);
        const cJSON *b = cJSON_GetArrayItem(hc, (int)o);
        if (!cJSON_IsString(s) || s->valuestring[0] == '\0' || !cJSON_IsBool(b)) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: config.options[%zu]: bad entry", path, o);
            goto cleanup;
        }
        for (size_t p = 0; p < o; p++)
            if (strcmp(m->options[p], s->valuestring) == 0) {
                rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: config.options[%zu]: '%s' repeats",
                                path, o, s->valuestring);
                goto cleanup;
            }
        if ((m->options[o] = dr_strdup(s->valuestring)) == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        m->has_cost[o] = cJSON_IsTrue(b);
    }
    uint64_t qshape[2] = {m->n_options, m->n_feat}, cshape[2] = {m->n_options, 2},
             ishape[1] = {IDF_BUCKETS};
    if ((rc = dr_st_read_f32(f, "quality_w", 2, qshape, m->qw, err)) ||
        (rc = dr_st_read_f32(f, "cost_w", 2, cshape, m->cw, err)) ||
        (rc = dr_st_read_f32(f, "idf", 1, ishape, m->idf, err))) {
        dr_err_prefix(err, "%s", path);
        goto cleanup;
    }
    uint64_t kshape[2] = {m->n_clusters, (uint64_t)m->cdim};
    if (m->n_clusters > 0 &&
        (rc = dr_st_read_f32(f, "centroids", 2, kshape, m->centroids, err)) != DYNRAG_OK) {
        dr_err_prefix(err, "%s", path);
        goto cleanup;
    }
    for (size_t i = 0; i < m->n_clusters * m->cdim; i++)
        if (!isfinite(m->centroids[i])) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: centroids: a value is not finite", path);
            goto cleanup;
        }
    for (size_t i = 0; i < m->n_options * m->n_feat; i++)
        if (!isfinite(m->qw[i])) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: quality_w: a value is not finite", path);
            goto cleanup;
        }
    for (size_t i = 0; i < m->n_options * 2; i++)
        if (!isfinite(m->cw[i])) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: cost_w: a value is not finite", path);
            goto cleanup;
        }
    /* Training gives idf = 1 + ln((docs + 1) / (df + 1)) <= 1 + ln(1 + docs).
     * A larger (damaged) value can overflow the embedder's float sums of a
     * query with repeated words: an infinite component, then NaN features
     * and NaN qualities. */
    double idf_max = 1.0 + log1p((double)m->idf_docs) + 1e-4;
    for (size_t i = 0; i < IDF_BUCKETS; i++)
        if (!(m->idf[i] >= 0 && m->idf[i] <= idf_max)) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                            "%s: idf: value %g at [%zu] is not finite or outside [0, %g] "
                            "(1 + ln(1 + config.idf_docs))",
                            path, (double)m->idf[i], i, idf_max);
            goto cleanup;
        }
    if ((is_knn || is_pref) && (rc = load_neighbours(m, f, cfg, path, is_pref, err)) != DYNRAG_OK)
        goto cleanup;
    if (strcmp(kind->valuestring, "contrastive") == 0 &&
        (rc = load_contrastive(f, cfg, path, m, err)) != DYNRAG_OK)
        goto cleanup;
    if ((rc = make_embedder(m, err)) != DYNRAG_OK) { /* checks every IDF value */
        dr_err_prefix(err, "%s", path);
        goto cleanup;
    }
cleanup:
    cJSON_Delete(cfg);
    dr_st_close(f);
    if (rc != DYNRAG_OK) {
        dr_omodel_free(m);
        return rc;
    }
    *out = m;
    return DYNRAG_OK;
}
