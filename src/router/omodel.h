/*
 * router/omodel.h - routers trained on outcome tables (internal).
 *
 * Kind `predict` (HybridLLM / RouterBench's predictors): per option, a ridge
 * regression from the query's features to the option's recorded quality,
 * and a least-squares line from the query's length to its recorded cost.
 * The router scores option o as  q_o(query) - willingness_to_pay * c_o(query)
 * and picks the highest score.
 *
 * Query features (F = dim + DR_OMODEL_EXTRA + 1): the built-in embedder's
 * hashed word and character n-grams (embed/builtin.c) with IDF learned on
 * the training queries, L2-normalised, then DR_OMODEL_EXTRA dense features
 * (log length, share of digits, of non-ASCII bytes, of newlines), then 1.
 *
 * Kind `predict` with method `knn` (RouterBench's kNN) and kind
 * `preference` (Bradley-Terry ratings, RouteLLM SW ranking / Eagle) keep
 * the training queries' embeddings and qualities instead (router/onbr.h):
 * quality_w is all zero, no clusters; tensors "train_x" F32 [rows, dim],
 * "train_q" F32 [rows, n_options] (-1 = missing), "ratings" F32
 * [n_options] (preference: the global log-strengths; zeros for knn), and
 * config "rows", "k", "local_weight" and "prior".
 *
 * Kind `mf` (RouteLLM's matrix factorisation): quality(q, o) =
 * sigmoid(<P x_q, v_o> + b_o) with a rank-DR_OMODEL_MF_RANK projection P of
 * the same features and an embedding v_o per option, trained by SGD
 * (deterministic per seed); stored collapsed as quality_w (w_o = P^T v_o,
 * b_o on the bias), so routing costs what `predict` costs, plus a sigmoid.
 * Routed like predict.
 *
 * File (safetensors, docs/routers.md "Routers trained on outcomes"):
 *   tensors  "quality_w" F32 [n_options, F]   ridge weights (bias last)
 *            "cost_w"    F32 [n_options, 2]   cost_usd = a + b * chars / 1000
 *            "idf"       F32 [262144]         the embedder's IDF
 *   metadata "format" = "dynrag-outcome-router", "format_version" = "1",
 *            "config" = {"kind", "method", "dim", "extra", "lambda", "rank" (mf),
 *                        "options": [...], "has_cost": [...], "idf_docs"},
 *            (task clusters: also "clusters_by": "task", "cluster_labels": [...])
 *            "provenance" = {"data": [...], "rows", "valid_rows", "seed",
 *                            "valid_quality", "created", "dynrag_version"}
 */
#ifndef DYNRAG_ROUTER_OMODEL_H
#define DYNRAG_ROUTER_OMODEL_H

#include "dynrag/status.h"
#include "eval/outcomes.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DR_OMODEL_FORMAT "dynrag-outcome-router"
#define DR_OMODEL_EXTRA 4
#define DR_OMODEL_MAX_DIM 4096
#define DR_OMODEL_MAX_CLUSTERS 256
#define DR_OMODEL_MF_RANK 16   /* mf: the factorisation's dimension */
#define DR_OMODEL_MAX_RANK 256 /* mf: the largest rank a model file may declare */
#define DR_OMODEL_MF_EPOCHS 30
#define DR_OMODEL_CTR_HIDDEN 128
#define DR_OMODEL_CTR_DIM 64
#define DR_OMODEL_CTR_EPOCHS 30
#define DR_OMODEL_CTR_TOP_K 3
#define DR_OMODEL_CTR_TAU 0.2
#define DR_OMODEL_CTR_SS_WEIGHT 0.2
#define DR_OMODEL_CTR_LR 0.002
#define DR_OMODEL_TASK_STEPS 200 /* task clusters: the classifier's Adam steps */

typedef struct dr_omodel dr_omodel;

typedef struct dr_omodel_train_opts {
    const char *kind;      /* "predict", "cluster", "distill", "mf" or "preference" */
    const char *method;    /* predict: "ridge" (NULL) or "knn"; NULL for the other kinds */
    int k;                 /* knn, preference: neighbours (0: chosen on the validation rows,
                              10 without them) */
    double local_weight;   /* preference: weight of the local ratings, in [0, 1] ... */
    bool fix_local_weight; /* ... used when set; else chosen on the validation rows (0.5
                              without them) */
    int dim;               /* embedder dimension (0: 1024) */
    double lambda;         /* ridge penalty; <= 0: chosen on the validation rows */
    int clusters;          /* k-means clusters of the training queries (0: 32; -1: none) */
    bool task_clusters;    /* instead of k-means: one cluster per task of the training rows
                              (every row needs a task; clusters is ignored), a query's cluster
                              the argmax of a logistic regression over the embedding and the
                              extras trained on the rows' tasks (its weights stored as the
                              centroids, [C][dim + DR_OMODEL_EXTRA + 1]) */
    double cluster_lambda; /* penalty of the cluster one-hot features (<= 0: 0.1) */
    double temperature;    /* distill: soft labels softmax(quality / T) (<= 0: 0.1) */
    /* contrastive (router/contrastive.h; 0: the defaults DR_OMODEL_CTR_*) */
    int hidden;       /* encoder hidden units (-1: a linear projection) */
    int embed_dim;    /* encoder output and option embedding dimension */
    int epochs;       /* with validation rows: the most; the best epoch is kept */
    int top_k;        /* positives / negatives per query */
    double tau;       /* sample-option temperature */
    double ss_weight; /* sample-sample loss weight (-1: off) */
    double lr;        /* Adam step */
    /* The cluster prior added to the cosines: weight (0: chosen on the
     * validation rows, 0 without them; < 0: off) and shrinkage pseudo-rows
     * (0: chosen with the weight, 1 without validation rows). */
    double prior_weight;
    double prior_rows;
    uint64_t seed;         /* recorded; the ridge fit itself is deterministic */
    const char *data_desc; /* provenance: the training files, as a JSON array text */
    /* Progress (may be NULL): a phase name and done/total. */
    void (*progress)(void *user, const char *phase, size_t done, size_t total);
    void *progress_user;
} dr_omodel_train_opts;

typedef struct dr_omodel_train_report {
    double lambda;        /* the penalty used */
    double valid_quality; /* mean quality of the routed option on valid (NAN: none) */
    double train_quality; /* the same on the training rows */
    int epochs;           /* contrastive: the epoch kept (0 otherwise) */
    double prior_weight;  /* contrastive: the cluster prior's weight used */
    double prior_rows;    /* contrastive: its shrinkage pseudo-rows */
    size_t n_params;
    int k;               /* knn, preference: the neighbours used (0 otherwise) */
    double local_weight; /* preference: the local weight used (NAN otherwise) */
} dr_omodel_train_report;

/*
 * Trains a model on the rows `rows[0..n)` of table t (every row when rows is
 * NULL), choosing lambda on the rows `valid[0..n_valid)` of table v (which
 * may be NULL: then lambda is opts->lambda, or 1 when that is <= 0). Options
 * are t's. *out is freed with dr_omodel_free. Errors: DYNRAG_ERR_INVALID
 * (unknown kind, bad dim, fewer than 2 rows), DYNRAG_ERR_NOMEM.
 */
int dr_omodel_train(const dr_outcome_table *t, const size_t *rows, size_t n,
                    const dr_outcome_table *v, const size_t *valid, size_t n_valid,
                    const dr_omodel_train_opts *opts, dr_omodel **out,
                    dr_omodel_train_report *report, dynrag_error *err);

/* Writes the model (atomically). */
int dr_omodel_save(const dr_omodel *m, const char *path, dynrag_error *err);
/* Reads and validates a model file; errors name the path and field. */
int dr_omodel_load(const char *path, dr_omodel **out, dynrag_error *err);
void dr_omodel_free(dr_omodel *m);

size_t dr_omodel_n_options(const dr_omodel *m);
const char *dr_omodel_option(const dr_omodel *m, size_t i);
const char *dr_omodel_kind(const dr_omodel *m);
/* True when the training data had costs for model option i. */
bool dr_omodel_has_cost(const dr_omodel *m, size_t i);
/* The model's provenance JSON text (never NULL). */
const char *dr_omodel_provenance(const dr_omodel *m);
/* The model's method ("ridge", "knn", "bradley_terry", ...). */
const char *dr_omodel_method(const dr_omodel *m);

/*
 * knn and preference models (router/onbr.h): the number of training rows
 * they keep (0 for the other models, which keep none), and the neighbours
 * k and local weight they use. dr_omodel_set_neighbours changes them (k in
 * 1..min(rows, 1000), local weight in [0, 1], NAN keeps it); not while
 * another thread predicts. DYNRAG_ERR_INVALID for other models or values
 * out of range.
 */
size_t dr_omodel_neighbour_rows(const dr_omodel *m);
int dr_omodel_neighbours(const dr_omodel *m, double *local_weight);
int dr_omodel_set_neighbours(dr_omodel *m, int k, double local_weight, dynrag_error *err);

/*
 * Predicts the quality q[i] and cost c[i] (USD) of every model option i for
 * a query. Thread-safe. Fails only on allocation failure.
 */
int dr_omodel_predict(const dr_omodel *m, const char *query, double *q, double *c,
                      dynrag_error *err);

/* Task clusters: the task classifier's softmax probability of its chosen
 * task for the query (in (0, 1]); NAN for other models or on failure. */
double dr_omodel_task_confidence(const dr_omodel *m, const char *query);

/* The option index with the highest q[i] - wtp * c[i] among those with
 * allowed[i] (allowed may be NULL: every option); ties: the lower index. */
int dr_omodel_pick(const dr_omodel *m, const double *q, const double *c, double wtp,
                   const bool *allowed);

#endif
