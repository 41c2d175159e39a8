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

typedef struct dynrag_train_options {
    const char *train_path; /* JSONL */
    const char *valid_path; /* JSONL */
    const char *out_path;   /* model file to write */
    /* "k=v,k=v": model (vocab_size, d_model, n_layers, n_heads, d_ff,
     * max_len, num_buckets, max_distance, length_buckets) and training
     * (epochs, batch_size, lr, warmup, weight_decay, dropout, token_dropout,
     * clip, patience, schedule=cosine|linear, class_weights=balanced|none,
     * head, strip) settings; see docs/classifier.md. */
    const char *config;
    uint64_t seed;
    int threads; /* >= 1 */
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
DYNRAG_API int dynrag_classifier_train(const dynrag_train_options *opts,
                                       dynrag_train_result *result, dynrag_error *err);

#ifdef __cplusplus
}
#endif
#endif
