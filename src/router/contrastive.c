/* contrastive.c - RouterDC's dual contrastive router (see contrastive.h). */
#include "router/contrastive.h"

#include "core/util.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void dr_contrastive_free(dr_contrastive *c)
{
    if (c == NULL)
        return;
    dr_free(c->w1);
    dr_free(c->w2);
    dr_free(c->b2);
    dr_free(c->emb);
    dr_free(c);
}

dr_contrastive *dr_contrastive_new(size_t F, size_t hidden, size_t dim, size_t K, double tau)
{
    dr_contrastive *c = dr_calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    size_t h1 = hidden ? hidden : dim;
    c->n_feat = F;
    c->hidden = hidden;
    c->dim = dim;
    c->n_options = K;
    c->tau = tau;
    c->w1 = dr_calloc(F * h1, sizeof(float));
    c->emb = dr_calloc(K * dim, sizeof(float));
    if (hidden > 0) {
        c->w2 = dr_calloc(dim * hidden, sizeof(float));
        c->b2 = dr_calloc(dim, sizeof(float));
    }
    if (c->w1 == NULL || c->emb == NULL || (hidden > 0 && (c->w2 == NULL || c->b2 == NULL))) {
        dr_contrastive_free(c);
        return NULL;
    }
    return c;
}

/* Copies the weights of src into dst (same sizes). */
static void copy_weights(dr_contrastive *dst, const dr_contrastive *src)
{
    size_t h1 = src->hidden ? src->hidden : src->dim;
    memcpy(dst->w1, src->w1, src->n_feat * h1 * sizeof(float));
    memcpy(dst->emb, src->emb, src->n_options * src->dim * sizeof(float));
    if (src->hidden > 0) {
        memcpy(dst->w2, src->w2, src->dim * src->hidden * sizeof(float));
        memcpy(dst->b2, src->b2, src->dim * sizeof(float));
    }
}

/*
 * Encodes the feature row x[F] (its non-zero indices nz[0..nnz)): a[h1]
 * gets the first layer's pre-activations, zn[D] the unit-length output.
 * Returns |z| (before normalisation; 1e-12 at least).
 */
static double encode(const dr_contrastive *c, const float *x, const size_t *nz, size_t nnz,
                     float *a, float *zn)
{
    size_t h1 = c->hidden ? c->hidden : c->dim, D = c->dim;
    memset(a, 0, h1 * sizeof(float));
    for (size_t j = 0; j < nnz; j++) {
        const float *wr = c->w1 + nz[j] * h1;
        float xv = x[nz[j]];
        for (size_t h = 0; h < h1; h++)
            a[h] += xv * wr[h];
    }
    if (c->hidden == 0) {
        memcpy(zn, a, D * sizeof(float));
    } else {
        for (size_t d = 0; d < D; d++) {
            const float *wr = c->w2 + d * c->hidden;
            float s = c->b2[d];
            for (size_t h = 0; h < c->hidden; h++)
                s += wr[h] * (a[h] > 0 ? a[h] : 0.0f);
            zn[d] = s;
        }
    }
    double norm = 0;
    for (size_t d = 0; d < D; d++)
        norm += (double)zn[d] * zn[d];
    norm = DR_MAX(sqrt(norm), 1e-12);
    for (size_t d = 0; d < D; d++)
        zn[d] = (float)(zn[d] / norm);
    return norm;
}

/* The non-zero indices of x[F] into nz; returns their count. */
static size_t nonzeros(const float *x, size_t F, size_t *nz)
{
    size_t nnz = 0;
    for (size_t f = 0; f < F; f++)
        if (x[f] != 0.0f)
            nz[nnz++] = f;
    return nnz;
}

void dr_contrastive_scores(const dr_contrastive *c, const float *x, double *s)
{
    float a[DR_CTR_MAX_HIDDEN > DR_CTR_MAX_DIM ? DR_CTR_MAX_HIDDEN : DR_CTR_MAX_DIM];
    float zn[DR_CTR_MAX_DIM];
    size_t h1 = c->hidden ? c->hidden : c->dim, D = c->dim;
    /* The sparse first layer without an index list (routing needs no
     * scratch beyond the stack). */
    memset(a, 0, h1 * sizeof(float));
    for (size_t f = 0; f < c->n_feat; f++) {
        if (x[f] == 0.0f)
            continue;
        const float *wr = c->w1 + f * h1;
        for (size_t h = 0; h < h1; h++)
            a[h] += x[f] * wr[h];
    }
    if (c->hidden == 0) {
        memcpy(zn, a, D * sizeof(float));
    } else {
        for (size_t d = 0; d < D; d++) {
            const float *wr = c->w2 + d * c->hidden;
            float v = c->b2[d];
            for (size_t h = 0; h < c->hidden; h++)
                v += wr[h] * (a[h] > 0 ? a[h] : 0.0f);
            zn[d] = v;
        }
    }
    double zz = 0;
    for (size_t d = 0; d < D; d++)
        zz += (double)zn[d] * zn[d];
    zz = DR_MAX(sqrt(zz), 1e-12);
    for (size_t o = 0; o < c->n_options; o++) {
        const float *e = c->emb + o * D;
        double dot = 0, ee = 0;
        for (size_t d = 0; d < D; d++) {
            dot += (double)e[d] * zn[d];
            ee += (double)e[d] * e[d];
        }
        s[o] = dot / (zz * DR_MAX(sqrt(ee), 1e-12));
    }
}

/* One Adam step (bias-corrected, step t >= 1) with decoupled weight decay
 * l2 on w[0..n) except where `nodecay` is true for the index range
 * [nd_lo, nd_hi). Clears g. */
static void adam(float *w, float *g, float *m, float *v, size_t n, double lr, double l2, int t,
                 size_t nd_lo, size_t nd_hi)
{
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double c1 = 1.0 - pow(b1, t), c2 = 1.0 - pow(b2, t);
    for (size_t i = 0; i < n; i++) {
        double gi = g[i];
        m[i] = (float)(b1 * m[i] + (1 - b1) * gi);
        v[i] = (float)(b2 * v[i] + (1 - b2) * gi * gi);
        double step = lr * (m[i] / c1) / (sqrt(v[i] / c2) + eps);
        double decay = (i >= nd_lo && i < nd_hi) ? 0.0 : lr * l2 * w[i];
        w[i] = (float)(w[i] - step - decay);
        g[i] = 0;
    }
}

/* Marks role[o] = 1 (positive), -1 (negative) or 0 for one row's
 * qualities q[K] (NAN: not recorded); returns false when the row carries
 * no preference (no positive or no negative). */
static bool roles(const float *q, size_t K, int top_k, int bottom_k, signed char *role)
{
    float sorted[256];
    size_t m = 0;
    for (size_t o = 0; o < K; o++) {
        role[o] = 0;
        if (!isnan(q[o]))
            sorted[m++] = q[o];
    }
    if (m < 2)
        return false;
    /* Insertion sort, descending (K <= 256). */
    for (size_t i = 1; i < m; i++) {
        float v = sorted[i];
        size_t j = i;
        while (j > 0 && sorted[j - 1] < v) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = v;
    }
    float hi = sorted[0], lo = sorted[m - 1];
    if (!(hi > lo))
        return false;
    float top = sorted[DR_MIN((size_t)top_k, m) - 1];
    float bottom = sorted[m - DR_MIN((size_t)bottom_k, m)];
    float min_pos = hi;
    size_t n_pos = 0, n_neg = 0;
    for (size_t o = 0; o < K; o++)
        if (!isnan(q[o]) && q[o] >= top && q[o] > lo) {
            role[o] = 1;
            n_pos++;
            min_pos = DR_MIN(min_pos, q[o]);
        }
    for (size_t o = 0; o < K; o++)
        if (!isnan(q[o]) && role[o] == 0 && q[o] <= bottom && q[o] < min_pos) {
            role[o] = -1;
            n_neg++;
        }
    return n_pos > 0 && n_neg > 0;
}

int dr_contrastive_fit(const float *x, size_t n, size_t F, const float *quality, size_t K,
                       const int *cluster, const dr_contrastive_opts *opts, dr_contrastive **out,
                       int *best_epoch, dynrag_error *err)
{
    *out = NULL;
    const size_t H = opts->hidden > 0 ? (size_t)opts->hidden : 0, D = (size_t)opts->dim;
    const size_t h1 = H ? H : D;
    if (n < 2 || F < 2 || K < 2 || K > 256 || D < 2 || D > DR_CTR_MAX_DIM ||
        H > DR_CTR_MAX_HIDDEN || opts->epochs < 1 || opts->batch < 2 || opts->top_k < 1 ||
        opts->bottom_k < 1 || !(opts->tau > 0) || !(opts->lr > 0) || !(opts->l2 >= 0) ||
        !(opts->ss_weight >= 0) || (opts->ss_weight > 0 && !(opts->ss_tau > 0)))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "contrastive: bad sizes or settings (rows %zu, features %zu, "
                          "options %zu, hidden %zu, dim %zu)",
                          n, F, K, H, D);
    const bool ss = cluster != NULL && opts->ss_weight > 0;
    const size_t B = (size_t)opts->batch, R = ss ? 2 * B : B; /* rows per step (with partners) */
    int rc = DYNRAG_OK;
    dr_contrastive *c = dr_contrastive_new(F, H, D, K, opts->tau);
    dr_contrastive *best = dr_contrastive_new(F, H, D, K, opts->tau);
    size_t n_w1 = F * h1, n_w2 = H * D, n_emb = K * D;
    /* gradients and Adam moments: w1, w2, b2, emb in one block each */
    size_t n_par = n_w1 + n_w2 + (H ? D : 0) + n_emb;
    float *g = dr_calloc(n_par, sizeof(float)), *am = dr_calloc(n_par, sizeof(float));
    float *av = dr_calloc(n_par, sizeof(float));
    signed char *role = dr_malloc(n * K);
    bool *useful = dr_malloc(n * sizeof(bool));
    size_t *order = dr_malloc(n * sizeof(size_t)), *nz = dr_malloc(F * sizeof(size_t));
    size_t *rowid = dr_malloc(R * sizeof(size_t));
    float *A = dr_malloc(R * h1 * sizeof(float)), *ZN = dr_malloc(R * D * sizeof(float));
    float *DZN = dr_malloc(R * D * sizeof(float)), *EN = dr_malloc(n_emb * sizeof(float));
    float *dh = dr_malloc(h1 * sizeof(float)), *dz = dr_malloc(D * sizeof(float));
    double *NRM = dr_malloc(R * sizeof(double)), *ENRM = dr_malloc(K * sizeof(double));
    double *ds = dr_malloc(K * sizeof(double)), *lg = dr_malloc((B + 1) * sizeof(double));
    size_t *by_cluster = NULL, *cl_start = NULL;
    if (!c || !best || !g || !am || !av || !role || !useful || !order || !nz || !rowid || !A ||
        !ZN || !DZN || !EN || !dh || !dz || !NRM || !ENRM || !ds || !lg) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    float *gw1 = g, *gw2 = g + n_w1, *gb2 = gw2 + n_w2, *gemb = gb2 + (H ? D : 0);
    float *mw1 = am, *mw2 = am + n_w1, *mb2 = mw2 + n_w2, *memb = mb2 + (H ? D : 0);
    float *vw1 = av, *vw2 = av + n_w1, *vb2 = vw2 + n_w2, *vemb = vb2 + (H ? D : 0);

    dr_rng rng;
    dr_rng_seed(&rng, opts->seed ^ 0x44430u);
    /* Feature rows have norm ~2 (unit n-gram block, a one-hot, the bias). */
    for (size_t i = 0; i < n_w1; i++)
        c->w1[i] = (float)(dr_rng_normal(&rng) * 0.5);
    for (size_t i = 0; i < n_w2; i++)
        c->w2[i] = (float)(dr_rng_normal(&rng) / sqrt((double)H));
    for (size_t i = 0; i < n_emb; i++)
        c->emb[i] = (float)dr_rng_normal(&rng);

    for (size_t i = 0; i < n; i++)
        useful[i] = roles(quality + i * K, K, opts->top_k, opts->bottom_k, role + i * K);
    if (ss) {
        /* Rows grouped by cluster, for drawing a same-cluster partner. */
        int max_c = 0;
        for (size_t i = 0; i < n; i++)
            max_c = DR_MAX(max_c, cluster[i]);
        by_cluster = dr_malloc(n * sizeof(size_t));
        cl_start = dr_calloc((size_t)max_c + 2, sizeof(size_t));
        if (by_cluster == NULL || cl_start == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++)
            cl_start[cluster[i] + 1]++;
        for (int k = 0; k <= max_c; k++)
            cl_start[k + 1] += cl_start[k];
        size_t *fill = dr_calloc((size_t)max_c + 1, sizeof(size_t));
        if (fill == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++)
            by_cluster[cl_start[cluster[i]] + fill[cluster[i]]++] = i;
        dr_free(fill);
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    double best_score = -INFINITY;
    int kept = 0, t = 0;
    for (int ep = 0; ep < opts->epochs; ep++) {
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)dr_rng_below(&rng, (uint64_t)i);
            size_t tmp = order[i - 1];
            order[i - 1] = order[j];
            order[j] = tmp;
        }
        for (size_t b0 = 0; b0 < n; b0 += B) {
            size_t nb = DR_MIN(B, n - b0), nr = nb;
            for (size_t r = 0; r < nb; r++)
                rowid[r] = order[b0 + r];
            if (ss) {
                for (size_t r = 0; r < nb; r++) {
                    int k = cluster[rowid[r]];
                    size_t cnt = cl_start[k + 1] - cl_start[k];
                    size_t j = by_cluster[cl_start[k] + (size_t)dr_rng_below(&rng, cnt)];
                    if (j == rowid[r] && cnt > 1)
                        j = by_cluster[cl_start[k] + (size_t)dr_rng_below(&rng, cnt)];
                    rowid[nb + r] = j;
                }
                nr = 2 * nb;
            }
            for (size_t r = 0; r < nr; r++) {
                const float *xr = x + rowid[r] * F;
                size_t nnz = nonzeros(xr, F, nz);
                NRM[r] = encode(c, xr, nz, nnz, A + r * h1, ZN + r * D);
            }
            memset(DZN, 0, nr * D * sizeof(float));
            for (size_t o = 0; o < K; o++) {
                double ee = 0;
                for (size_t d = 0; d < D; d++)
                    ee += (double)c->emb[o * D + d] * c->emb[o * D + d];
                ENRM[o] = DR_MAX(sqrt(ee), 1e-12);
                for (size_t d = 0; d < D; d++)
                    EN[o * D + d] = (float)(c->emb[o * D + d] / ENRM[o]);
            }
            /* Sample-option loss. */
            float *gen = gemb; /* gradient w.r.t. the unit embeddings, converted after */
            for (size_t r = 0; r < nb; r++) {
                size_t i = rowid[r];
                if (!useful[i])
                    continue;
                const signed char *ro = role + i * K;
                const float *zn = ZN + r * D;
                double s[256];
                size_t n_pos = 0;
                for (size_t o = 0; o < K; o++) {
                    ds[o] = 0;
                    s[o] = 0;
                    if (ro[o] == 0)
                        continue;
                    double dot = 0;
                    for (size_t d = 0; d < D; d++)
                        dot += (double)zn[d] * EN[o * D + d];
                    s[o] = dot / opts->tau;
                    n_pos += ro[o] > 0;
                }
                double negmax = -INFINITY;
                for (size_t o = 0; o < K; o++)
                    if (ro[o] < 0)
                        negmax = DR_MAX(negmax, s[o]);
                double scale = 1.0 / ((double)n_pos * (double)nb * opts->tau);
                for (size_t p = 0; p < K; p++) {
                    if (ro[p] <= 0)
                        continue;
                    double mx = DR_MAX(negmax, s[p]), sum = exp(s[p] - mx);
                    for (size_t o = 0; o < K; o++)
                        if (ro[o] < 0)
                            sum += exp(s[o] - mx);
                    ds[p] += (exp(s[p] - mx) / sum - 1.0) * scale;
                    for (size_t o = 0; o < K; o++)
                        if (ro[o] < 0)
                            ds[o] += exp(s[o] - mx) / sum * scale;
                }
                float *dzn = DZN + r * D;
                for (size_t o = 0; o < K; o++) {
                    if (ds[o] == 0)
                        continue;
                    for (size_t d = 0; d < D; d++) {
                        dzn[d] += (float)(ds[o] * EN[o * D + d]);
                        gen[o * D + d] += (float)(ds[o] * zn[d]);
                    }
                }
            }
            /* Sample-sample loss: partner rowid[nb + r], negatives the
             * batch's rows of other clusters. */
            if (ss) {
                double w = opts->ss_weight / ((double)nb * opts->ss_tau);
                for (size_t r = 0; r < nb; r++) {
                    int k = cluster[rowid[r]];
                    const float *zi = ZN + r * D;
                    size_t m = 0;
                    double mx = -INFINITY;
                    /* lg[0]: the partner; lg[1 + r2]: batch row r2 (NAN: not a negative). */
                    for (size_t r2 = 0; r2 <= nb; r2++) {
                        const float *zk = r2 == 0 ? ZN + (nb + r) * D : ZN + (r2 - 1) * D;
                        if (r2 > 0 && cluster[rowid[r2 - 1]] == k) {
                            lg[r2] = NAN;
                            continue;
                        }
                        double dot = 0;
                        for (size_t d = 0; d < D; d++)
                            dot += (double)zi[d] * zk[d];
                        lg[r2] = dot / opts->ss_tau;
                        mx = DR_MAX(mx, lg[r2]);
                        m++;
                    }
                    if (m < 2)
                        continue;
                    double sum = 0;
                    for (size_t r2 = 0; r2 <= nb; r2++)
                        if (!isnan(lg[r2]))
                            sum += exp(lg[r2] - mx);
                    float *dzi = DZN + r * D;
                    for (size_t r2 = 0; r2 <= nb; r2++) {
                        if (isnan(lg[r2]))
                            continue;
                        double dl = (exp(lg[r2] - mx) / sum - (r2 == 0 ? 1.0 : 0.0)) * w;
                        size_t rk = r2 == 0 ? nb + r : r2 - 1;
                        const float *zk = ZN + rk * D;
                        float *dzk = DZN + rk * D;
                        for (size_t d = 0; d < D; d++) {
                            dzi[d] += (float)(dl * zk[d]);
                            dzk[d] += (float)(dl * zi[d]);
                        }
                    }
                }
            }
            /* Back through the normalisation and the encoder. */
            for (size_t r = 0; r < nr; r++) {
                const float *zn = ZN + r * D, *dzn = DZN + r * D;
                double proj = 0;
                for (size_t d = 0; d < D; d++)
                    proj += (double)zn[d] * dzn[d];
                bool any = false;
                for (size_t d = 0; d < D; d++) {
                    dz[d] = (float)((dzn[d] - zn[d] * proj) / NRM[r]);
                    any |= dz[d] != 0.0f;
                }
                if (!any)
                    continue;
                const float *a = A + r * h1;
                const float *gin = dz;
                if (H > 0) {
                    memset(dh, 0, H * sizeof(float));
                    for (size_t d = 0; d < D; d++) {
                        float *gr = gw2 + d * H;
                        const float *wr = c->w2 + d * H;
                        gb2[d] += dz[d];
                        for (size_t h = 0; h < H; h++) {
                            if (a[h] <= 0)
                                continue;
                            gr[h] += dz[d] * a[h];
                            dh[h] += dz[d] * wr[h];
                        }
                    }
                    gin = dh;
                }
                const float *xr = x + rowid[r] * F;
                size_t nnz = nonzeros(xr, F, nz);
                for (size_t j = 0; j < nnz; j++) {
                    float *gr = gw1 + nz[j] * h1;
                    float xv = xr[nz[j]];
                    for (size_t h = 0; h < h1; h++)
                        gr[h] += xv * gin[h];
                }
            }
            /* Unit-embedding gradients to raw-embedding gradients. */
            for (size_t o = 0; o < K; o++) {
                double proj = 0;
                for (size_t d = 0; d < D; d++)
                    proj += (double)EN[o * D + d] * gen[o * D + d];
                for (size_t d = 0; d < D; d++)
                    gen[o * D + d] =
                        (float)((gen[o * D + d] - EN[o * D + d] * proj) / ENRM[o]);
            }
            t++;
            adam(c->w1, gw1, mw1, vw1, n_w1, opts->lr, opts->l2, t, (F - 1) * h1, F * h1);
            if (H > 0) {
                adam(c->w2, gw2, mw2, vw2, n_w2, opts->lr, opts->l2, t, 0, 0);
                adam(c->b2, gb2, mb2, vb2, D, opts->lr, 0, t, 0, 0);
            }
            adam(c->emb, gemb, memb, vemb, n_emb, opts->lr, 0, t, 0, 0);
        }
        double score = opts->valid != NULL ? opts->valid(opts->valid_user, c) : NAN;
        if (isnan(score) || ep == 0 || score > best_score) {
            best_score = isnan(score) ? best_score : score;
            copy_weights(best, c);
            kept = ep + 1;
        }
        if (opts->progress != NULL)
            opts->progress(opts->progress_user, "contrastive", (size_t)ep + 1,
                           (size_t)opts->epochs);
    }
    *out = best;
    best = NULL;
    if (best_epoch != NULL)
        *best_epoch = kept;
cleanup:
    dr_contrastive_free(c);
    dr_contrastive_free(best);
    dr_free(g);
    dr_free(am);
    dr_free(av);
    dr_free(role);
    dr_free(useful);
    dr_free(order);
    dr_free(nz);
    dr_free(rowid);
    dr_free(A);
    dr_free(ZN);
    dr_free(DZN);
    dr_free(EN);
    dr_free(dh);
    dr_free(dz);
    dr_free(NRM);
    dr_free(ENRM);
    dr_free(ds);
    dr_free(lg);
    dr_free(by_cluster);
    dr_free(cl_start);
    return rc;
}
