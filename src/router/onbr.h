/*
 * router/onbr.h - the training neighbours of outcome routers (internal).
 *
 * Two routers trained on outcome tables (router/omodel.h) keep their
 * training queries instead of weights:
 *
 *  - `predict` with method `knn` (RouterBench's kNN predictor): the
 *    predicted quality of option o is the mean recorded quality of o over
 *    the k training queries nearest to the query (cosine similarity of the
 *    unit-length hashed n-gram embeddings; only neighbours with similarity
 *    > 0 count; none: o's mean over every training row).
 *  - `preference` (RouteLLM's similarity-weighted ranking, Eagle): a
 *    Bradley-Terry model of the pairwise outcomes of the training table
 *    (on each query, option a beats option b when its quality is higher;
 *    equal qualities are no comparison). The global log-strengths g are
 *    fitted once on every pair; at route time the pairs of the k nearest
 *    training queries, each weighted by its similarity, plus `prior`
 *    pseudo-comparisons per option pair that follow the global model, give
 *    local log-strengths l; the rating is (1 - local_weight) g +
 *    local_weight l. The predicted "quality" of o is its mean probability
 *    of beating each other option under the rating, a number in [0, 1].
 *
 * The neighbour search is an exact scan: the query's non-zero embedding
 * entries times the transposed training matrix (n x nnz multiply-adds).
 */
#ifndef DYNRAG_ROUTER_ONBR_H
#define DYNRAG_ROUTER_ONBR_H

#include <stdbool.h>
#include <stddef.h>

#define DR_ONBR_MAX_K 1000     /* the largest k a model or a router param may use */
#define DR_ONBR_BT_ITERS 100   /* MM iterations of a Bradley-Terry fit */
#define DR_ONBR_MAX_OPTIONS 64 /* preference: the most options a model may have */

typedef struct dr_onbr {
    size_t n;            /* training rows */
    int dim;             /* embedding dimension */
    size_t K;            /* options */
    bool preference;     /* preference ratings (else kNN means) */
    float *x;            /* [n][dim] unit embeddings (as saved) */
    float *xt;           /* [dim][n] the same, transposed for the scan */
    float *q;            /* [n][K] recorded quality, -1 when missing */
    double *mean;        /* [K] mean quality per option over every row */
    float *ratings;      /* [K] global Bradley-Terry log-strengths (preference) */
    int k;               /* neighbours used */
    double local_weight; /* preference: weight of the local ratings */
    double prior;        /* preference: pseudo-comparisons per pair in the local fit */
} dr_onbr;

/*
 * Builds the neighbour table from n training rows: row i's unit embedding
 * is x[i * stride .. + dim), its qualities q[i * K .. + K) (-1 missing,
 * else in [0, 1]). Copies both. With `preference` the global ratings are
 * fitted. k, local_weight and prior start at 10, 0.5 and 1. NULL on
 * allocation failure.
 */
dr_onbr *dr_onbr_create(const float *x, size_t stride, int dim, size_t n, const float *q, size_t K,
                        bool preference);
/* Computes xt, mean and (for preference) checks nothing else: call after
 * filling x and q of a table made by dr_onbr_alloc (the loader). -1 on
 * allocation failure. */
int dr_onbr_finish(dr_onbr *nb);
/* A table with x, q and (preference) ratings allocated, uninitialised. */
dr_onbr *dr_onbr_alloc(size_t n, int dim, size_t K, bool preference);
void dr_onbr_free(dr_onbr *nb);

/*
 * The min(k, n) training rows most similar to the unit vector e (dim
 * entries), most similar first (ties: lower row first), into idx/sim;
 * returns how many. scratch has n floats. Thread-safe.
 */
size_t dr_onbr_nearest(const dr_onbr *nb, const float *e, size_t k, size_t *idx, float *sim,
                       float *scratch);

/*
 * The per-option prediction (K values) from neighbours idx/sim[0..kn)
 * (most similar first): the first min(k, kn) with similarity > 0 are used,
 * with local_weight for preference (see the top of this file).
 */
void dr_onbr_predict(const dr_onbr *nb, const size_t *idx, const float *sim, size_t kn, int k,
                     double local_weight, double *out);

/*
 * Fits Bradley-Terry log-strengths r[0..K) to the weighted win counts
 * wins[a * K + b] (a beat b) plus `prior` pseudo-comparisons per pair
 * split by the win probabilities of the log-strengths `toward` (NULL:
 * even), by DR_ONBR_BT_ITERS minorisation-maximisation steps (Hunter
 * 2004); r is centred on 0. Options without comparisons and prior 0 get 0.
 */
void dr_bt_fit(size_t K, const double *wins, const double *toward, double prior, double *r);

/*
 * Chooses k (and, for preference, local_weight) from a fixed grid by the
 * mean quality of the option picked (highest prediction among present
 * options) over nv validation rows: embedding ev[i * stride .. + dim),
 * qualities vq[i * K .. + K) in the table's option order (-1 missing). Sets
 * nb->k and nb->local_weight; fixed_k > 0 keeps k = fixed_k, fixed_lw keeps
 * nb->local_weight. Ties: the first in the grid (k ascending, local weight
 * ascending). Returns the best mean quality (NAN without rows), -1 on
 * allocation failure.
 */
double dr_onbr_tune(dr_onbr *nb, const float *ev, size_t stride, size_t nv, const float *vq,
                    int fixed_k, bool fixed_lw);

#endif
