/*
 * dynrag/outcomes.h - outcome tables (docs/outcomes.md): converters from the
 * routing benchmarks' files, and routers trained on outcome tables
 * (docs/routers.md, "Routers trained on outcomes").
 */
#ifndef DYNRAG_OUTCOMES_H
#define DYNRAG_OUTCOMES_H

#include "dynrag/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a conversion read and wrote. */
typedef struct dynrag_convert_stats {
    size_t rows_read;    /* records in the input */
    size_t rows_written; /* lines in the output */
    size_t rows_dropped; /* records left out (RouterBench: a missing score) */
    size_t n_options;    /* models */
    int fractional;      /* RouterDC: 1 when scores are kept as fractions of samples */
    char task[64];       /* RouterDC: the task name taken from the file name */
} dynrag_convert_stats;

/*
 * Converts a RouterDC file (a JSON array of {"question", "scores": {model:
 * number}, ...}) to an outcome table at out_path (written atomically).
 * The task is the file name without folder, extension and a trailing
 * "_train"/"-train"/"_test"/"-test". Files whose name contains gsm8k,
 * humaneval, mbpp or javascript hold fractions of 10 samples, kept as
 * quality (they must lie in [0, 1]); the others hold probability-style
 * scores, and quality is 1 when the score is > 0, else 0. Ids are
 * "<task>-<index>". Errors name the file and the array element.
 */
DYNRAG_API int dynrag_convert_routerdc(const char *in_path, const char *out_path, dynrag_convert_stats *stats,
                            dynrag_error *err);

/*
 * Converts a RouterBench CSV file to an outcome table at out_path. The
 * models are the columns X for which a column "X|total_cost" exists;
 * quality is column X (0 or 1), cost_usd "X|total_cost" and response
 * "X|model_response" (when present). The query is the whole `prompt`
 * field (RouterBench stores it as a Python list string), the task
 * `eval_name` and the id `sample_id`. Rows with a missing score are
 * dropped and counted. The CSV parser follows RFC 4180 (quoted fields
 * with "" escapes and embedded newlines). Errors name file:line and column.
 */
DYNRAG_API int dynrag_convert_routerbench(const char *in_path, const char *out_path,
                               dynrag_convert_stats *stats, dynrag_error *err);

/* ---- routers trained on outcome tables ---------------------------------- */

/* Options of dynrag_outcome_router_train(). Call
 * dynrag_outcome_router_options_init() first, then set what differs: every
 * field is taken literally, and a value out of range fails with
 * DYNRAG_ERR_INVALID naming the field. */
typedef struct dynrag_outcome_router_options {
    const char *kind;        /* "predict" (default), "cluster", "distill", "mf",
                                "preference", "contrastive" or "scorer" */
    const char *const *data; /* required: training tables (merged; ids must not repeat) */
    size_t n_data;
    const char *valid;     /* validation table, or NULL (default; see below) */
    const char *out_path;  /* required: the model file (safetensors), written atomically */
    int dim;               /* hashed n-gram dimension, >= 1 (default 1024) */
    int clusters;          /* k-means clusters, >= 0 (default 64; 0: none) */
    double lambda;         /* ridge penalty, > 0; NAN (default): chosen on validation rows
                              (predict, cluster) or the kind's own (distill, mf) */
    double cluster_lambda; /* penalty of the cluster features, > 0 (default 0.3) */
    int hidden;            /* contrastive: encoder hidden units, >= 0 (default 128; 0: a
                              linear projection) */
    uint64_t seed;         /* k-means seeding (default 0) */
    /* Progress (may be NULL): phase ("embed", "k-means", "ridge") and done/total. */
    void (*progress)(void *user, const char *phase, size_t done, size_t total);
    void *progress_user;
    const char *method; /* predict: "ridge" (NULL) or "knn"; NULL for the other kinds */
    int k;              /* knn, preference: neighbours (0: chosen on the validation rows) */
} dynrag_outcome_router_options;

/* Sets every field of o to its default (above). */
DYNRAG_API void dynrag_outcome_router_options_init(dynrag_outcome_router_options *o);

typedef struct dynrag_outcome_router_result {
    size_t rows, valid_rows, n_options, n_params;
    double lambda;        /* the ridge penalty used */
    double valid_quality; /* mean quality of the routed option on the validation rows
                             (kind scorer: the judge's AUC there) */
    double train_quality; /* the same on the training rows */
    double seconds;
    int k;               /* knn, preference: the neighbours used (0 otherwise) */
    double local_weight; /* preference: the local ratings' weight (NAN otherwise) */
} dynrag_outcome_router_result;

/*
 * Trains a router of opts->kind on outcome tables and writes it to
 * opts->out_path (docs/routers.md). The penalty is chosen on --valid when
 * given (the model is fitted on the training tables only); otherwise on the
 * training rows whose id hashes into a fixed 15% (hash64(id) mod 10000 <
 * 1500), after which the model is refitted on every training row.
 * Kind "scorer" trains the cascades' answer-scorer judge instead (a
 * classifier over query + recorded response predicting correctness;
 * docs/routers.md); dim and clusters do not apply to it.
 * Deterministic for a seed. Errors name the file and field.
 */
DYNRAG_API int dynrag_outcome_router_train(const dynrag_outcome_router_options *opts,
                                dynrag_outcome_router_result *result, dynrag_error *err);

#ifdef __cplusplus
}
#endif
#endif
