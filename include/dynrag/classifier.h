/*
 * dynrag/classifier.h - the text classifier (query-complexity router model):
 * training, prediction and evaluation.
 *
 * A model is a small T5-style encoder with one or more classification heads
 * stored in a safetensors file (docs/weights-format.md, docs/classifier.md).
 * Training data is JSON Lines, one example per line (other fields ignored):
 *     {"text": "who wrote hamlet", "label": "B"}
 * Training creates one head (named by the config's head=, default
 * "complexity"); files may hold several heads, each with its own labels.
 */
#ifndef DYNRAG_CLASSIFIER_H
#define DYNRAG_CLASSIFIER_H

#include "dynrag/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dynrag_classifier dynrag_classifier;

/* Opens (mmap, validates, copies the weights) a model file. Close with
 * dynrag_classifier_close(). Fails with DYNRAG_ERR_IO, _FORMAT, _MISMATCH,
 * _NOTFOUND or _UNSUPPORTED and a message naming the file and field. */
DYNRAG_API int dynrag_classifier_open(const char *path, dynrag_classifier **out, dynrag_error *err);
DYNRAG_API void dynrag_classifier_close(dynrag_classifier *c);

/* Head index by name (NULL: the first head), or -1. */
DYNRAG_API int dynrag_classifier_head(const dynrag_classifier *c, const char *name);
DYNRAG_API int dynrag_classifier_n_heads(const dynrag_classifier *c);
DYNRAG_API const char *dynrag_classifier_head_name(const dynrag_classifier *c, int head);
DYNRAG_API size_t dynrag_classifier_n_labels(const dynrag_classifier *c, int head);
DYNRAG_API const char *dynrag_classifier_label(const dynrag_classifier *c, int head, size_t i);
/* Training provenance JSON stored in the file, or NULL. Owned by c. */
DYNRAG_API const char *dynrag_classifier_provenance(const dynrag_classifier *c);

/* probs[n_labels(head)] gets the softmax probabilities for text. Thread-safe. */
DYNRAG_API int dynrag_classifier_predict(const dynrag_classifier *c, int head, const char *text,
                              float *probs, dynrag_error *err);

/* ---- training --------------------------------------------------------- */

typedef struct dynrag_train_progress {
    int epoch, epochs;         /* 1-based current epoch, maximum */
    uint64_t done, total;      /* examples seen in this epoch */
    double loss;               /* running mean training loss this epoch */
    double accuracy;           /* running training accuracy this epoch */
    double examples_per_sec;
    /* set at the end of an epoch (else negative): */
    double valid_macro_f1, valid_accuracy;
} dynrag_train_progress;

typedef void (*dynrag_train_progress_fn)(void *user, const dynrag_train_progress *p);

typedef struct dynrag_train_options {
    const char *train_path;  /* JSONL */
    const char *valid_path;  /* JSONL */
    const char *out_path;    /* model file to write */
    /* "k=v,k=v": model (vocab_size, d_model, n_layers, n_heads, d_ff,
     * max_len, num_buckets, max_distance, length_buckets) and training
     * (epochs, batch_size, lr, warmup, weight_decay, dropout, token_dropout,
     * clip, patience, schedule=cosine|linear, class_weights=balanced|none,
     * head, strip) settings; see docs/classifier.md. */
    const char *config;
    uint64_t seed;
    int threads;             /* >= 1 */
    dynrag_train_progress_fn progress;
    void *progress_user;
} dynrag_train_options;

typedef struct dynrag_train_result {
    int epochs_run, best_epoch;
    double best_valid_macro_f1, best_valid_accuracy;
    double seconds;
    double examples_per_sec;
    size_t n_params;
} dynrag_train_result;

/* Trains a model and writes it to opts->out_path. Deterministic for a given
 * seed and thread count. */
DYNRAG_API int dynrag_classifier_train(const dynrag_train_options *opts, dynrag_train_result *result,
                            dynrag_error *err);

/* ---- evaluation -------------------------------------------------------- */

typedef struct dynrag_eval_report {
    size_t n;                 /* examples of this head evaluated */
    size_t n_skipped;         /* other heads' examples, or unknown labels */
    size_t n_labels;
    double accuracy, macro_f1;
    double *recall;           /* [n_labels] */
    double *precision;        /* [n_labels] */
    double *f1;               /* [n_labels] */
    uint64_t *confusion;      /* [n_labels * n_labels], row = true, column = predicted */
} dynrag_eval_report;

/* Evaluates head on a JSONL file ({"text","label"}). Lines whose label the
 * head does not know are counted in n_skipped. Free the report
 * with dynrag_eval_report_free(). */
DYNRAG_API int dynrag_classifier_eval(const dynrag_classifier *c, int head, const char *data_path,
                           dynrag_eval_report **out, dynrag_error *err);
DYNRAG_API void dynrag_eval_report_free(dynrag_eval_report *r);

#ifdef __cplusplus
}
#endif
#endif
