/*
 * nn/model.h - the classifier's insides, shared by classifier.c (loading,
 * saving, prediction) and train.c (internal to src/nn/).
 *
 * Weight-file metadata keys (all values are strings; JSON where noted):
 *   format          "dynrag-t5-classifier"
 *   format_version  "1"
 *   config          JSON {"vocab_size","d_model","n_layers","n_heads","d_ff",
 *                         "max_len","num_buckets","max_distance"[,"length_buckets"]}
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
#define DR_CLS_FORMAT_VERSION "1"
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
 * the single <pad> token, or just the length token). Returns the count. */
int dr_classifier_encode(const dr_classifier *c, const char *text, int32_t *ids);

/* Runs the model on n pre-encoded sequences one at a time, writing the
 * softmax probabilities of `head` into probs[n * K]. acts must hold B = 1,
 * T = max_len. */
void dr_classifier_probs_ids(const dr_classifier *c, int head, const int32_t *ids, int len,
                             dr_t5_acts *acts, float *probs);

#endif
