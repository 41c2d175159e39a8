/* onbr.c - the training neighbours of the kNN and preference outcome
 * routers (see onbr.h). */
#include "router/onbr.h"

#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void dr_onbr_free(dr_onbr *nb)
{
    if (nb == NULL)
        return;
    dr_free(nb->x);
    dr_free(nb->xt);
    dr_free(nb->q);
    dr_free(nb->mean);
    dr_free(nb->ratings);
    dr_free(nb);
}

dr_onbr *dr_onbr_alloc(size_t n, int dim, size_t K, bool preference)
{
    dr_onbr *nb = dr_calloc(1, sizeof(*nb));
    if (nb == NULL)
        return NULL;
    nb->n = n;
    nb->dim = dim;
    nb->K = K;
    nb->preference = preference;
    nb->k = 10;
    nb->local_weight = 0.5;
    nb->prior = 1.0;
    nb->x = dr_malloc((n ? n : 1) * (size_t)dim * sizeof(float));
    nb->q = dr_malloc((n ? n : 1) * K * sizeof(float));
    nb->mean = dr_calloc(K, sizeof(double));
    nb->ratings = dr_calloc(K, sizeof(float));
    if (!nb->x || !nb->q || !nb->mean || !nb->ratings) {
        dr_onbr_free(nb);
        return NULL;
    }
    return nb;
}

/* The win counts of rows[0..n) (every row when rows is NULL): wins[a*K+b]
 * += w_i when a's quality beats b's on row i (w_i = 1 when w is NULL). */
static void count_wins(const dr_onbr *nb, const size_t *rows, const float *w, size_t n,
                       double *wins)
{
    const size_t K = nb->K;
    for (size_t j = 0; j < n; j++) {
        const float *qi = nb->q + (rows ? rows[j] : j) * K;
        double wj = w ? (double)w[j] : 1.0;
        for (size_t a = 0; a < K; a++) {
            if (qi[a] < 0)
                continue;
            for (size_t b = 0; b < K; b++)
                if (b != a && qi[b] >= 0 && qi[a] > qi[b])
                    wins[a * K + b] += wj;
        }
    }
}

void dr_bt_fit(size_t K, const double *wins, const double *toward, double prior, double *r)
{
    double p[64], w[64 * 64];
    if (K == 0 || K > 64)
        return;
    /* Win counts plus the prior's pseudo-comparisons. */
    for (size_t a = 0; a < K; a++)
        for (size_t b = 0; b < K; b++) {
            double e = 0.5;
            if (toward != NULL)
                e = 1.0 / (1.0 + exp(toward[b] - toward[a]));
            w[a * K + b] = a == b ? 0.0 : wins[a * K + b] + prior * e;
        }
    for (size_t a = 0; a < K; a++)
        p[a] = 1.0;
    for (int it = 0; it < DR_ONBR_BT_ITERS; it++) {
        double logsum = 0;
        size_t counted = 0;
        for (size_t a = 0; a < K; a++) {
            double won = 0, den = 0;
            for (size_t b = 0; b < K; b++) {
                if (b == a)
                    continue;
                double nab = w[a * K + b] + w[b * K + a];
                won += w[a * K + b];
                if (nab > 0)
                    den += nab / (p[a] + p[b]);
            }
            if (den > 0)
                p[a] = DR_MAX(won / den, 1e-12);
        }
        for (size_t a = 0; a < K; a++) {
            logsum += log(p[a]);
            counted++;
        }
        double gm = exp(logsum / (double)counted);
        for (size_t a = 0; a < K; a++)
            p[a] /= gm;
    }
    for (size_t a = 0; a < K; a++)
        r[a] = log(p[a]);
}

int dr_onbr_finish(dr_onbr *nb)
{
    const size_t n = nb->n, K = nb->K, dim = (size_t)nb->dim;
    dr_free(nb->xt);
    nb->xt = dr_malloc((n ? n : 1) * dim * sizeof(float));
    if (nb->xt == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        for (size_t d = 0; d < dim; d++)
            nb->xt[d * n + i] = nb->x[i * dim + d];
    for (size_t o = 0; o < K; o++) {
        double s = 0, c = 0;
        for (size_t i = 0; i < n; i++)
            if (nb->q[i * K + o] >= 0) {
                s += nb->q[i * K + o];
                c += 1;
            }
        nb->mean[o] = c > 0 ? s / c : 0.0;
    }
    return 0;
}

dr_onbr *dr_onbr_create(const float *x, size_t stride, int dim, size_t n, const float *q, size_t K,
                        bool preference)
{
    dr_onbr *nb = dr_onbr_alloc(n, dim, K, preference);
    if (nb == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        memcpy(nb->x + i * (size_t)dim, x + i * stride, (size_t)dim * sizeof(float));
    memcpy(nb->q, q, n * K * sizeof(float));
    if (dr_onbr_finish(nb) != 0) {
        dr_onbr_free(nb);
        return NULL;
    }
    if (preference) {
        double *wins = dr_calloc(K * K, sizeof(double)), r[64];
        if (wins == NULL || K > 64) {
            dr_free(wins);
            dr_onbr_free(nb);
            return NULL;
        }
        count_wins(nb, NULL, NULL, n, wins);
        dr_bt_fit(K, wins, NULL, 1.0, r);
        for (size_t o = 0; o < K; o++)
            nb->ratings[o] = (float)r[o];
        dr_free(wins);
    }
    return nb;
}

size_t dr_onbr_nearest(const dr_onbr *nb, const float *e, size_t k, size_t *idx, float *sim,
                       float *scratch)
{
    const size_t n = nb->n;
    if (k > n)
        k = n;
    if (k == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        scratch[i] = 0;
    /* Only the query's non-zero entries cost anything (the embedding of a
     * short query is sparse); the inner loop runs over independent rows,
     * 8 at a time in two 4-float vectors. */
    const size_t n8 = n & ~(size_t)7;
    float *restrict acc = scratch;
    for (int d = 0; d < nb->dim; d++) {
        const float v = e[d];
        if (v == 0)
            continue;
        const float *restrict col = nb->xt + (size_t)d * n;
#if defined(__GNUC__)
        /* GCC/Clang vector extension: 4 floats per operation (SSE/NEON);
         * memcpy makes the loads and stores unaligned-safe. */
        typedef float v4f __attribute__((vector_size(16)));
        const v4f vv = {v, v, v, v};
        for (size_t i = 0; i < n8; i += 8) {
            v4f a0, a1, c0, c1;
            memcpy(&a0, acc + i, sizeof a0);
            memcpy(&a1, acc + i + 4, sizeof a1);
            memcpy(&c0, col + i, sizeof c0);
            memcpy(&c1, col + i + 4, sizeof c1);
            a0 += vv * c0;
            a1 += vv * c1;
            memcpy(acc + i, &a0, sizeof a0);
            memcpy(acc + i + 4, &a1, sizeof a1);
        }
#else
        for (size_t i = 0; i < n8; i++)
            acc[i] += v * col[i];
#endif
        for (size_t i = n8; i < n; i++)
            acc[i] += v * col[i];
    }
    /* Keep the k best in idx/sim, sorted, by insertion (strictly better
     * only: among equal similarities the lower row stays first). */
    size_t have = 0;
    for (size_t i = 0; i < n; i++) {
        float s = scratch[i];
        if (have == k && !(s > sim[k - 1]))
            continue;
        size_t at = have < k ? have++ : k - 1;
        while (at > 0 && s > sim[at - 1]) {
            sim[at] = sim[at - 1];
            idx[at] = idx[at - 1];
            at--;
        }
        sim[at] = s;
        idx[at] = i;
    }
    return have;
}

void dr_onbr_predict(const dr_onbr *nb, const size_t *idx, const float *sim, size_t kn, int k,
                     double local_weight, double *out)
{
    const size_t K = nb->K;
    size_t use = 0;
    while (use < kn && use < (size_t)k && sim[use] > 0)
        use++;
    if (!nb->preference) {
        for (size_t o = 0; o < K; o++) {
            double s = 0, c = 0;
            for (size_t j = 0; j < use; j++) {
                float v = nb->q[idx[j] * K + o];
                if (v >= 0) {
                    s += v;
                    c += 1;
                }
            }
            out[o] = c > 0 ? s / c : nb->mean[o];
        }
        return;
    }
    double g[64], l[64], wins[64 * 64];
    for (size_t o = 0; o < K; o++)
        g[o] = nb->ratings[o];
    double *rating = l;
    if (use > 0 && local_weight > 0) {
        memset(wins, 0, K * K * sizeof(double));
        count_wins(nb, idx, sim, use, wins);
        dr_bt_fit(K, wins, g, nb->prior, l);
        for (size_t o = 0; o < K; o++)
            l[o] = (1.0 - local_weight) * g[o] + local_weight * l[o];
    } else {
        rating = g;
    }
    for (size_t o = 0; o < K; o++) {
        double s = 0;
        for (size_t b = 0; b < K; b++)
            if (b != o)
                s += 1.0 / (1.0 + exp(rating[b] - rating[o]));
        out[o] = K > 1 ? s / (double)(K - 1) : 1.0;
    }
}

double dr_onbr_tune(dr_onbr *nb, const float *ev, size_t stride, size_t nv, const float *vq,
                    int fixed_k, bool fixed_lw)
{
    static const int ks[] = {1, 3, 5, 10, 20, 50, 100, 200};
    static const double lws[] = {0.0, 0.25, 0.5, 0.75, 1.0};
    if (nv == 0)
        return NAN;
    const size_t K = nb->K;
    size_t kmax = fixed_k > 0 ? (size_t)fixed_k : (size_t)ks[DR_ARRAY_LEN(ks) - 1];
    kmax = DR_MIN(kmax, nb->n);
    size_t *idx = dr_malloc(nv * (kmax ? kmax : 1) * sizeof(size_t));
    float *sim = dr_malloc(nv * (kmax ? kmax : 1) * sizeof(float));
    size_t *got = dr_malloc(nv * sizeof(size_t));
    float *scratch = dr_malloc((nb->n ? nb->n : 1) * sizeof(float));
    double *pred = dr_malloc(K * sizeof(double));
    double best = -1;
    if (!idx || !sim || !got || !scratch || !pred)
        goto done;
    for (size_t i = 0; i < nv; i++)
        got[i] = dr_onbr_nearest(nb, ev + i * stride, kmax, idx + i * kmax, sim + i * kmax,
                                 scratch);
    size_t nk = fixed_k > 0 ? 1 : DR_ARRAY_LEN(ks), nl = nb->preference && !fixed_lw ? DR_ARRAY_LEN(lws) : 1;
    int best_k = nb->k;
    double best_lw = nb->local_weight;
    for (size_t ki = 0; ki < nk; ki++) {
        int k = fixed_k > 0 ? fixed_k : ks[ki];
        for (size_t li = 0; li < nl; li++) {
            double lw = nl > 1 ? lws[li] : nb->local_weight, sum = 0;
            size_t counted = 0;
            for (size_t i = 0; i < nv; i++) {
                const float *qi = vq + i * K;
                dr_onbr_predict(nb, idx + i * kmax, sim + i * kmax, got[i], k, lw, pred);
                int pick = -1;
                for (size_t o = 0; o < K; o++)
                    if (qi[o] >= 0 && (pick < 0 || pred[o] > pred[pick]))
                        pick = (int)o;
                if (pick >= 0) {
                    sum += qi[pick];
                    counted++;
                }
            }
            double mq = counted ? sum / (double)counted : 0.0;
            if (mq > best) {
                best = mq;
                best_k = k;
                best_lw = lw;
            }
        }
    }
    nb->k = best_k;
    nb->local_weight = best_lw;
done:
    dr_free(idx);
    dr_free(sim);
    dr_free(got);
    dr_free(scratch);
    dr_free(pred);
    return best;
}
