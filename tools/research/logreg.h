/*
 * research/logreg.h - multinomial logistic regression on signed hashed text
 * features (research tools module, not in libdynrag): the baseline
 * query-complexity router (bench/router_baseline.c).
 *
 * Features of a text: its case-folded words (core/text.h) as unigrams and
 * bigrams, and byte 3..5-grams of " w1 w2 ... wn " (words joined by one
 * space, padded). Each feature is hashed (dr_hash64) to one of 2^bits
 * buckets with a sign from another hash bit, so collisions cancel on
 * average. A bucket's value is its signed count, made binary (sign only)
 * or TF-IDF (sign x (1 + ln|count|) x idf, idf = ln((1 + N) / (1 + df)) + 1
 * from the training texts); rows are L2-normalised.
 *
 * Training minimises mean (optionally class-balanced) cross-entropy + l2/2 ||W||^2 (biases not decayed)
 * by plain SGD over seeded shuffles of the data, step size
 * lr / (1 + lr * l2 * t), with the weight-scale trick so that each update
 * costs O(nonzeros x classes). Everything is deterministic for a seed.
 */
#ifndef DYNRAG_RESEARCH_LOGREG_H
#define DYNRAG_RESEARCH_LOGREG_H

#include "dynrag/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DR_LOGREG_MAX_CLASSES 64

typedef struct dr_logreg_options {
    int bits;          /* log2 of the number of buckets, 10..24 (default 18) */
    bool words;        /* word unigrams and bigrams (default true) */
    int char_min;      /* char n-gram range; char_min 0 disables (default 3..5) */
    int char_max;
    bool tfidf;        /* TF-IDF values, else binary (default true) */
    double l2;         /* L2 strength (default 1e-5) */
    double lr;         /* initial SGD step (default 0.5) */
    int epochs;        /* passes over the data (default 10) */
    uint64_t seed;     /* shuffling seed (default 1) */
    bool balanced;     /* weight each example by n / (classes x its class count),
                          so every class carries the same total loss (default false) */
} dr_logreg_options;

typedef struct dr_logreg dr_logreg;

void dr_logreg_options_init(dr_logreg_options *opt);

/*
 * Trains a model on n texts with labels label[i] in [0, n_classes).
 * *out is freed with dr_logreg_free(). Fails with DYNRAG_ERR_INVALID for
 * bad options, an out-of-range label, n == 0 or n_classes outside
 * [2, DR_LOGREG_MAX_CLASSES]; DYNRAG_ERR_NOMEM when memory runs out.
 */
int dr_logreg_train(const dr_logreg_options *opt, size_t n, const char *const *text,
                    const int *label, int n_classes, dr_logreg **out, dynrag_error *err);

/* Class probabilities of text: probs[n_classes]. Never fails on valid
 * arguments (empty text scores the biases only) except for DYNRAG_ERR_NOMEM.
 * A trained model is read-only: safe to call from several threads. */
int dr_logreg_predict(const dr_logreg *m, const char *text, float *probs, dynrag_error *err);

int dr_logreg_n_classes(const dr_logreg *m);

/* Frees a model; accepts NULL. */
void dr_logreg_free(dr_logreg *m);

#endif
