/*
 * dynrag/classifier.h - the text classifier (query-complexity router model):
 * training, prediction and evaluation.
 *
 * A model is a small T5-style encoder with one or more classification heads
 * stored in a safetensors file (docs/weights-format.md, docs/classifier.md).
 * Training (dynrag/train.h) reads JSON Lines, one example per line (other fields ignored):
 *     {"text": "who wrote hamlet", "label": "B"}
 * Training creates one head (named by the config's head=, default
 * "complexity"); files may hold several heads, each with its own labels.
 */
#ifndef DYNRAG_CLASSIFIER_H
#define DYNRAG_CLASSIFIER_H

#include "dynrag/common.h"
#include "dynrag/eval.h"

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

/* ---- evaluation (the report type is in dynrag/eval.h) ------------------ */

/* Evaluates head on a JSONL file ({"text","label"}). Lines whose label the
 * head does not know are counted in n_skipped. Free the report
 * with dynrag_eval_report_free(). */
DYNRAG_API int dynrag_classifier_eval(const dynrag_classifier *c, int head, const char *data_path,
                                      dynrag_eval_report **out, dynrag_error *err);

#ifdef __cplusplus
}
#endif
#endif
