/*
 * router/contrastive.h - RouterDC's dual contrastive router (internal).
 *
 * A query encoder and one learned embedding per option (Chen et al.,
 * "RouterDC: Query-Based Router by Dual Contrastive Learning", NeurIPS 2024).
 * The encoder maps the outcome router's query features x (router/omodel.h:
 * hashed n-grams with IDF, dense extras, the nearest-cluster one-hot, a
 * constant 1; F values, sparse) through a learned projection:
 *
 *   hidden > 0:  a = W1^T x  [H],  h = relu(a),  z = W2 h + b2  [D]
 *   hidden = 0:  z = W1^T x  [D]                 (a linear projection)
 *
 * and scores option o by the cosine s_o = <z/|z|, e_o/|e_o|>. Training
 * minimises, per query, RouterDC's sample-option contrastive loss: with
 * P the options whose quality is among the top_k and above the query's
 * worst, and N the options among the bottom_k whose quality is below every
 * positive,
 *
 *   L_so = mean over p in P of  -log( exp(s_p/tau) / (exp(s_p/tau) + sum_{n in N} exp(s_n/tau)) )
 *
 * (queries where every option scores the same carry no preference and are
 * skipped), plus ss_weight times the sample-sample loss on task clusters:
 * with c(i) the query's k-means cluster, one random query j of the same
 * cluster as positive and the batch's queries of other clusters as
 * negatives,
 *
 *   L_ss = -log( exp(<zn_i, zn_j>/ss_tau) / sum_{k in {j} + negatives} exp(<zn_i, zn_k>/ss_tau) )
 *
 * Mini-batches in a seeded order, Adam, L2 weight decay l2 on W1/W2 (not
 * on biases or the bias feature's row). Deterministic per seed (one thread).
 *
 * File tensors (added to the outcome router's safetensors file by omodel.c):
 *   "enc_w1"     F32 [F, H]   (H = hidden, or D when hidden = 0)
 *   "enc_w2"     F32 [D, H]   (hidden > 0 only)
 *   "enc_b2"     F32 [D]      (hidden > 0 only)
 *   "option_emb" F32 [K, D]
 * and the config keys "hidden", "embed_dim", "tau".
 */
#ifndef DYNRAG_ROUTER_CONTRASTIVE_H
#define DYNRAG_ROUTER_CONTRASTIVE_H

#include "dynrag/status.h"

#include <stddef.h>
#include <stdint.h>

#define DR_CTR_MAX_HIDDEN 1024
#define DR_CTR_MAX_DIM 512
/* The largest weight magnitude a model file may hold. Trained weights are
 * O(1) to O(100) (Adam moves each by at most about lr per step); with
 * |w| <= 1e6 and feature rows of L1 norm below 100, every float sum of
 * dr_contrastive_scores stays below 1e17, far from overflow (a larger,
 * damaged weight could make the encoding infinite and the cosines NaN). */
#define DR_CTR_MAX_WEIGHT 1e6

typedef struct dr_contrastive {
    size_t n_feat;    /* F */
    size_t hidden;    /* H (0: linear projection) */
    size_t dim;       /* D */
    size_t n_options; /* K */
    double tau;
    float *w1;  /* [F][hidden ? hidden : dim] */
    float *w2;  /* [dim][hidden] or NULL */
    float *b2;  /* [dim] or NULL */
    float *emb; /* [K][dim] */
} dr_contrastive;

typedef struct dr_contrastive_opts {
    int hidden;       /* 0: linear projection; default set by the caller */
    int dim;          /* embedding dimension D */
    int epochs;       /* passes over the rows */
    int batch;        /* rows per Adam step */
    int top_k;        /* positives: options among the top_k by quality */
    int bottom_k;     /* negatives: options among the bottom_k */
    double tau;       /* sample-option temperature */
    double ss_weight; /* weight of the sample-sample loss (0: off) */
    double ss_tau;    /* its temperature */
    double lr;        /* Adam step size */
    double l2;        /* weight decay */
    uint64_t seed;
    /* Called after every epoch with the current model (may be NULL); returns
     * a validation score, higher is better (NAN: none). The epoch with the
     * best score is kept; *best_epoch reports it (1-based). */
    double (*valid)(void *user, dr_contrastive *c);
    void *valid_user;
    void (*progress)(void *user, const char *phase, size_t done, size_t total);
    void *progress_user;
} dr_contrastive_opts;

/*
 * Trains an encoder and option embeddings on the n feature rows x[n][F]
 * with qualities quality[n][K] (NAN: not recorded) and the rows' cluster
 * ids cluster[n] (NULL: no sample-sample loss). *out is freed with
 * dr_contrastive_free. *best_epoch (may be NULL) gets the epoch kept.
 * Errors: DYNRAG_ERR_INVALID (bad sizes), DYNRAG_ERR_NOMEM.
 */
int dr_contrastive_fit(const float *x, size_t n, size_t F, const float *quality, size_t K,
                       const int *cluster, const dr_contrastive_opts *opts, dr_contrastive **out,
                       int *best_epoch, dynrag_error *err);

/* Allocates an untrained model of the given sizes (zeros). NULL on
 * allocation failure. */
dr_contrastive *dr_contrastive_new(size_t F, size_t hidden, size_t dim, size_t K, double tau);
void dr_contrastive_free(dr_contrastive *c);

/* The cosine s[o] between the encoded feature row x[F] and each option's
 * embedding. Thread-safe; no allocation. */
void dr_contrastive_scores(const dr_contrastive *c, const float *x, double *s);

#endif
