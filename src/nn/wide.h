/*
 * nn/wide.h - the hashed n-gram features of the classifier's wide branch
 * (internal; docs/classifier.md, "Wide branch").
 *
 * A model with wide_bits = W > 0 adds to each head's logits a linear
 * function of sparse text features: logits_k += sum_f x_f * wide_k[f],
 * with wide_k a row of the head's [K, 2^W] tensor heads.N.wide.weight.
 * Features come from the tokenizer's normalised text (so the same case
 * folding, accent folding and `strip` set apply as to the encoder), at
 * most DR_WIDE_MAX_BYTES bytes of it, pieces joined by one space where the
 * text had white space:
 *   - every piece (word, number or punctuation character) as a unigram,
 *   - every pair of adjacent pieces as a bigram,
 *   - every byte 3-, 4- and 5-gram of " " + joined text + " ".
 * Each feature string is hashed (dr_hash64, a different seed per kind) to a
 * bucket (low W bits) and a sign (bit 63); values are the signed counts per
 * bucket, L2-normalised over the text (an empty text has no features).
 * Deterministic and independent of the CPU.
 */
#ifndef DYNRAG_NN_WIDE_H
#define DYNRAG_NN_WIDE_H

#include "nn/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

#define DR_WIDE_MAX_BYTES 512
/* upper bound of the number of features of one text */
#define DR_WIDE_MAX_FEATURES (2 * DR_WIDE_MAX_BYTES + 3 * (DR_WIDE_MAX_BYTES + 2))
#define DR_WIDE_MIN_BITS 8
#define DR_WIDE_MAX_BITS 22

/* Computes the features of text for 2^bits buckets into idx/val (each of
 * DR_WIDE_MAX_FEATURES entries), sorted by bucket, distinct, non-zero.
 * Returns the count (>= 0), or -1 when out of memory. */
int dr_wide_features(const dr_tokenizer *tok, const char *text, int bits, uint32_t *idx,
                     float *val);

#endif
