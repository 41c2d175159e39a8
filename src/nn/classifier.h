/*
 * nn/classifier.h - the query-complexity classifier as routers use it
 * (internal; the public face is include/dynrag/classifier.h).
 *
 * A model is a T5-style encoder with one or more classification heads, read
 * from a safetensors weight file (docs/weights-format.md). A loaded model is
 * read-only: dr_classifier_predict() may run on several threads at once.
 */
#ifndef DYNRAG_NN_CLASSIFIER_H
#define DYNRAG_NN_CLASSIFIER_H

#include "dynrag/status.h"

#include <stddef.h>

typedef struct dr_classifier dr_classifier;

/* Loads (mmap) a weight file. *out is freed with dr_classifier_free(). */
int dr_classifier_load(const char *path, dr_classifier **out, dynrag_error *err);
void dr_classifier_free(dr_classifier *c);

/* Head lookup: index of the head named `name` (NULL = the first head), or -1. */
int dr_classifier_head(const dr_classifier *c, const char *name);
/* Number of labels of a head and the name of label i (owned by the model). */
size_t dr_classifier_n_labels(const dr_classifier *c, int head);
const char *dr_classifier_label(const dr_classifier *c, int head, size_t i);

/* Classifies text with one head: probs[n_labels] gets the softmax
 * probabilities. Returns DYNRAG_OK or an error (empty text is valid). */
int dr_classifier_predict(const dr_classifier *c, int head, const char *text, float *probs,
                          dynrag_error *err);

#endif
