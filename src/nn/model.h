/*
 * nn/model.h - the classifier's insides, shared by classifier.c (loading,
 * saving, prediction) and train.c (internal to src/nn/).
 *
 * Weight-file metadata keys (all values are strings; JSON where noted):
 *   format          "dynrag-t5-classifier"
 *   format_version  "1", or "2" for a model with a wide branch (wide_bits > 0:
 *                   one more tensor per head, heads.N.wide.weight [K, 2^wide_bits],
 *                   nn/wide.h); a version-1 file has no wide_bits
 *   config          JSON {"vocab_size","d_model","n_layers","n_heads","d_ff",
 *                         "max_len","num_buckets","max_distance"[,"length_buckets"]
 *                         [,"wide_bits"]}
 *
 * Input encoding: with length_buckets = LB > 0 the sequence starts with a
 * length token, id vocab_size - LB + min(words / 2, LB - 1), where words
 * is dr_tokenizer_count_words() of the text; the tokenizer's ids follow
 * (at most max_len - 1 of them). The last LB rows of shared.weight are the
 * length embeddings. Mean pooling cannot see the length of the input, and
 * the number of words is the strongest structural cue of multi-hop
 * questions (docs/classifier.md).
 *   heads           JSON [{"name": "...", "labels": ["A", ...]}, ...]
 *   tokenizer       JSON (nn/tokenizer.h)
 *   provenance      JSON, free-form (training data, hashes, seed, metrics)
 */
#ifndef DYNRAG_NN_MODEL_H
#define DYNRAG_NN_MODEL_H

#include "nn/classifier.h"
#include "nn/t5.h"
#include "nn/tokenizer.h"

#define DR_CLS_FORMAT "dynrag-t5-classifier"
#define DR_CLS_FORMAT_VERSION "1"      /* without a wide branch */
#define DR_CLS_FORMAT_VERSION_WIDE "2" /* with one */
#define DR_CLS_MAX_NAME 64

struct dr_classifier {
    dr_t5_config cfg;
    float *params;      /* one block of n_params floats */
    size_t n_params;
    dr_t5_params p;     /* pointers into params */
    int *rel_bucket;    /* dr_t5_bucket_table() */
    dr_tokenizer *tok;
    char head_name[DR_T5_MAX_HEADS][DR_CLS_MAX_NAME];
    char *labels[DR_T5_MAX_HEADS][DR_T5_MAX_LABELS];
    char *provenance;   /* JSON or NULL */
};

/* Creates a model with zeroed parameters for cfg (checked), taking
 * ownership of tok. head names and labels are copied. On failure tok is
 * freed too. */
int dr_classifier_create(const dr_t5_config *cfg, dr_tokenizer *tok,
                         const char *const *head_names, const char *const *const *labels,
                         dr_classifier **out, dynrag_error *err);

/* Like dr_classifier_load() from an in-memory weight file (borrowed; the
 * weights are copied, so buf may be freed afterwards). */
int dr_classifier_load_buffer(const void *buf, size_t len, dr_classifier **out,
                              dynrag_error *err);

/* Writes the model with the given provenance JSON (may be NULL) to path
 * atomically. */
int dr_classifier_save(const dr_classifier *c, const char *path, const char *provenance,
                       dynrag_error *err);

/* Encodes text into ids (at most max_len, at least one: an empty text is
 * the single <pad> token, or just the length token). Returns the count, or
 * -1 when out of memory. */
int dr_classifier_encode(const dr_classifier *c, const char *text, int32_t *ids);

/* Runs the model on one pre-encoded sequence (and, with a wide branch, its
 * nf features fidx/fval from dr_wide_features()), writing the softmax
 * probabilities of `head` into probs[K]. acts must hold B = 1, T >= len. */
void dr_classifier_probs_ids(const dr_classifier *c, int head, const int32_t *ids, int len,
                             const uint32_t *fidx, const float *fval, int nf,
                             dr_t5_acts *acts, float *probs);

/* Adds the wide branch of `head` over features fidx/fval[0..nf) to
 * logits[K] (no-op without a wide branch). */
void dr_classifier_add_wide(const dr_classifier *c, int head, const uint32_t *fidx,
                            const float *fval, int nf, float *logits);
/* Adds the gradient of the wide branch of `head` to gw ([K, 2^wide_bits],
 * the head's wide tensor in a gradient block): gw[k][f] += dlogits[k] x_f.
 * No-op without a wide branch. */
void dr_classifier_wide_backward(const dr_classifier *c, int head, const uint32_t *fidx,
                                 const float *fval, int nf, const float *dlogits, float *gw);

#endif
