/*
 * dynrag/train.h - training the text classifier (dynrag/classifier.h): a
 * T5-style encoder with one classification head, trained on JSON Lines
 * examples ({"text": ..., "label": ...}) and written as a safetensors model
 * (docs/classifier.md, docs/weights-format.md).
 */
#ifndef DYNRAG_TRAIN_H
#define DYNRAG_TRAIN_H

#include "dynrag/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dynrag_train_progress {
    int epoch, epochs;    /* 1-based current epoch, maximum */
    uint64_t done, total; /* examples seen in this epoch */
    double loss;          /* running mean training loss this epoch */
    double accuracy;      /* running training accuracy this epoch */
    double examples_per_sec;
    /* set at the end of an epoch (else negative): */
    double valid_macro_f1, valid_accuracy;
} dynrag_train_progress;

typedef void (*dynrag_train_progress_fn)(void *user, const dynrag_train_progress *p);

/* Options of dynrag_classifier_train(). Call dynrag_train_options_init()
 * first, then set what differs: every field is taken literally. */
typedef struct dynrag_train_options {
    const char *train_path; /* required: JSONL */
    const char *valid_path; /* required: JSONL */
    const char *out_path;   /* required: model file to write */
    /* "k=v,k=v": model (vocab_size, d_model, n_layers, n_heads, d_ff,
     * max_len, num_buckets, max_distance, length_buckets) and training
     * (epochs, batch_size, lr, warmup, weight_decay, dropout, token_dropout,
     * clip, patience, schedule=cosine|linear, class_weights=balanced|none,
     * head, strip) settings; see docs/classifier.md. NULL (default): every
     * setting at its default. */
    const char *config;
    uint64_t seed;  /* default 1 */
    int threads;    /* 1 to 64 (default 1); anything else is DYNRAG_ERR_INVALID */
    dynrag_train_progress_fn progress; /* NULL (default): no progress calls */
    void *progress_user;
} dynrag_train_options;

/* Sets every field of o to its default (above). */
DYNRAG_API void dynrag_train_options_init(dynrag_train_options *o);

typedef struct dynrag_train_result {
    int epochs_run, best_epoch;
    double best_valid_macro_f1, best_valid_accuracy;
    double seconds;
    double examples_per_sec;
    size_t n_params;
} dynrag_train_result;

/* Trains a model and writes it to opts->out_path. Deterministic for a given
 * seed and thread count. */
DYNRAG_API int dynrag_classifier_train(const dynrag_train_options *opts,
                                       dynrag_train_result *result, dynrag_error *err);

#ifdef __cplusplus
}
#endif
#endif
