/*
 * nn/train.h - training the T5 classifier (internal; the public entry point
 * is dynrag_classifier_train() in include/dynrag/classifier.h).
 *
 * Determinism: the shuffle comes from the seed; each example's dropout
 * masks from (seed, its position in the run), whatever thread runs it; the
 * batch is split into contiguous per-thread ranges whose gradients are
 * summed in thread order. The same seed and thread count therefore give
 * bit-identical weights.
 */
#ifndef DYNRAG_NN_TRAIN_H
#define DYNRAG_NN_TRAIN_H

#include "dynrag/classifier.h"
#include "dynrag/train.h"
#include "nn/model.h"

#define DR_TRAIN_MAX_THREADS 64

typedef struct dr_train_config {
    dr_t5_config model; /* n_cls and n_labels come from the data */
    int epochs, batch_size, patience;
    double lr, warmup, weight_decay, dropout, clip;
    double token_dropout; /* input tokens replaced by <pad> with this probability */
    double wide_lr;       /* learning-rate multiplier of the wide branch (default 1) */
    bool cosine;        /* schedule after warm-up: cosine (else linear) to 0 */
    bool balanced;      /* class weights n / (K n_k) */
    bool keep_last;     /* write the last epoch's weights, not the best epoch's */
    char head[64];      /* name of the trained head */
    char strip[33];     /* punctuation the tokenizer deletes (default "?") */
} dr_train_config;

void dr_train_config_defaults(dr_train_config *t);
/* Applies "k=v,k=v" settings (docs/classifier.md lists them). */
int dr_train_config_parse(dr_train_config *t, const char *spec, dynrag_error *err);

/* Initialises a model's parameters from a seed (normal, fan-in scaled). */
void dr_train_init_params(dr_classifier *c, uint64_t seed);

/* The whole run: read data, learn the tokenizer, train, keep the best
 * epoch by validation macro-F1, write out_path with provenance. */
int dr_train_run(const dr_train_config *tc, const char *train_path, const char *valid_path,
                 const char *out_path, uint64_t seed, int threads,
                 dynrag_train_progress_fn progress, void *user, dynrag_train_result *res,
                 dynrag_error *err);

/* SHA-256 of data as 64 lower-case hex digits. */
void dr_sha256_hex(const void *data, size_t n, char out[65]);

#endif
