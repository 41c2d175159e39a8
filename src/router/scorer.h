/*
 * router/scorer.h - the trained answer-scorer judge of cascades (internal).
 *
 * FrugalGPT's scorer: a classifier over a query and one option's answer
 * predicting that the answer is correct. Logistic regression over hashed
 * sparse features (DR_SCORER_BUCKETS buckets, each feature weighs 1 and each
 * group is scaled by 1/sqrt(its size)); words are lower-cased runs of
 * letters, digits and non-ASCII bytes:
 *   t   the prompt's template: its first 12 words as one feature, alone and
 *       crossed with the option ("ot");
 *   a   the answer's words and word bigrams (the first DR_SCORER_ANSWER_WORDS);
 *   o   the option that answered (its name), alone and crossed with the
 *       answer's words ("oa");
 *   c   the answer as a choice (the query / answer interaction): when the
 *       answer's first word is one letter or digit X (or the answer says
 *       "answer is X"), the words of the last query line that starts with
 *       "X." / "X)" / "(X)" / "X:", alone and crossed with the option ("oc");
 *   s   shape: the answer's length (log2 bucket of its bytes), whether it is
 *       blank, holds a code fence, and the share of its words found in the
 *       last DR_SCORER_QUERY_BYTES bytes of the query (5 buckets); each alone
 *       and crossed with the option;
 *   and a bias. The query's own words are not features: on RouterBench
 *   they let the model memorise the training queries (validation AUC 0.709
 *   with them, 0.717 without, docs/router-outcomes.md).
 * The score is sigmoid(<w, x>), a probability in [0, 1].
 *
 * Training (`dynrag router train --kind scorer`): one example per row and
 * option with a recorded response and quality; the label is the quality in
 * [0, 1] (soft labels for fractional qualities). Log loss with an L2
 * penalty, AdaGrad over DR_SCORER_EPOCHS epochs in a seeded order:
 * deterministic per seed. The penalty is chosen on validation rows by their
 * AUC (or given).
 *
 * File (safetensors): tensor "w" F32 [DR_SCORER_BUCKETS]; metadata
 * "format" = "dynrag-answer-scorer", "format_version" = "1", "config" =
 * {"kind": "scorer", "method": "hashed_logreg", "buckets", "lambda",
 * "epochs", "options": [...]}, "provenance" = {"data", "rows", "examples",
 * "valid_rows", "valid_examples", "valid_auc", "valid_logloss", "seed",
 * "created", "dynrag_version"}.
 */
#ifndef DYNRAG_ROUTER_SCORER_H
#define DYNRAG_ROUTER_SCORER_H

#include "dynrag/status.h"
#include "eval/outcomes.h"

#include <stddef.h>
#include <stdint.h>

#define DR_SCORER_FORMAT "dynrag-answer-scorer"
#define DR_SCORER_BUCKETS ((size_t)1 << 16)
#define DR_SCORER_EPOCHS 6
#define DR_SCORER_QUERY_BYTES 4096
#define DR_SCORER_ANSWER_WORDS 256

typedef struct dr_scorer dr_scorer;

typedef struct dr_scorer_train_opts {
    double lambda;         /* L2 penalty; <= 0: chosen on the validation rows (else 1) */
    uint64_t seed;         /* the example order */
    const char *data_desc; /* provenance: the training files, as a JSON array text */
    /* Provenance without validation rows: the AUC an earlier fit with the
     * same penalty reached on held-out rows (NAN or 0 rows: none). */
    double prior_valid_auc;
    size_t prior_valid_rows;
    void (*progress)(void *user, const char *phase, size_t done, size_t total);
    void *progress_user;
} dr_scorer_train_opts;

typedef struct dr_scorer_train_report {
    double lambda;
    size_t examples, valid_examples;
    double train_auc, valid_auc; /* NAN: undefined (one class only, or no rows) */
    double valid_logloss;        /* NAN without validation examples */
} dr_scorer_train_report;

/*
 * Trains a scorer on rows[0..n) of t (every row when rows is NULL); with
 * validation rows valid[0..n_valid) of v (v may be NULL) and opts->lambda
 * <= 0, the penalty among 1e-3, 1e-2, .., 10 with the best validation AUC.
 * Errors: DYNRAG_ERR_INVALID (no example with a response, or labels all
 * equal), DYNRAG_ERR_NOMEM. Deterministic for a seed.
 */
int dr_scorer_train(const dr_outcome_table *t, const size_t *rows, size_t n,
                    const dr_outcome_table *v, const size_t *valid, size_t n_valid,
                    const dr_scorer_train_opts *opts, dr_scorer **out,
                    dr_scorer_train_report *report, dynrag_error *err);

int dr_scorer_save(const dr_scorer *s, const char *path, dynrag_error *err);
/* Reads and validates a scorer file; errors name the path and field. */
int dr_scorer_load(const char *path, dr_scorer **out, dynrag_error *err);
void dr_scorer_free(dr_scorer *s);

/*
 * The probability in [0, 1] that `answer`, given by `option` (may be NULL or
 * unknown to the model: then no option features), answers `query` correctly.
 * NULL strings count as "". Thread-safe; never fails (features that do not
 * fit a fixed buffer are dropped).
 */
double dr_scorer_score(const dr_scorer *s, const char *query, const char *option,
                       const char *answer);

/* Area under the ROC curve of scores p against labels y >= 0.5 (ties count
 * one half); NAN when one class is empty. */
double dr_scorer_auc(const double *p, const double *y, size_t n);

#endif
