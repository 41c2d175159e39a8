/*
 * generate/extractive.h - the embedded, offline answerer.
 *
 * No model: the answer is the passage sentence(s) that best support the
 * question. Each sentence is scored by the IDF-weighted share of the
 * question's content words it contains (words of its passage's title count
 * 0.8), plus bonuses for question bigrams it repeats and for answer-type
 * cues (who -> a new capitalised name, when -> a year or month, how many ->
 * a number, how do I / how to -> an instruction and code-like tokens), scaled
 * down gently by the passage's retrieval rank and halved when the sentence
 * adds no word beyond the question or is itself a question. Acronyms stand
 * for question phrases (WAL = write-ahead logging); a sentence ending in ':'
 * goes with the block after it. The result, in [0,1], is the sentence's
 * support. A bridge pass takes the next sentence from a passage whose title
 * the best sentence names. When the best support is below the threshold
 * the answer is "unanswerable", which lets Self-Route work offline.
 * Details and measurements: docs/generation.md.
 * Deterministic: the same input gives the same answer.
 */
#ifndef DYNRAG_GENERATE_EXTRACTIVE_H
#define DYNRAG_GENERATE_EXTRACTIVE_H

#include "dynrag/status.h"
#include "generate/passage.h"

#include <stdbool.h>
#include <stddef.h>

#define DR_EXTRACTIVE_DEFAULT_THRESHOLD 0.25
#define DR_EXTRACTIVE_DEFAULT_SENTENCES 2
#define DR_EXTRACTIVE_MAX_SENTENCES 16

typedef struct dr_extractive_config {
    double threshold;  /* minimum support in [0,1] for an answer */
    int max_sentences; /* sentences in the answer (<= 0 means the default, 2; capped at 16) */
} dr_extractive_config;

typedef struct dr_answer {
    char *text;        /* the answer ("unanswerable" when below threshold) */
    bool unanswerable;
    double support;    /* best sentence support score in [0,1] */
    size_t *citations; /* indices into the passages given, in citation order */
    size_t n_citations;
} dr_answer;

/*
 * Answers `question` from passages[0..n) (best first). cfg NULL uses the
 * defaults. On success *out is filled (free with dr_answer_free): the text
 * is the chosen sentences, white space flattened, invalid UTF-8 replaced,
 * each cut at a word boundary after ~1000 bytes, joined by spaces; further
 * sentences beyond the best one are kept only when their own support
 * reaches the threshold, except the bridge sentence. An empty question, no passages or no sentence
 * above the threshold give an "unanswerable" answer, not an error.
 * Fails with DYNRAG_ERR_INVALID (out NULL, passages NULL with n > 0, a
 * threshold outside [0,1]) or DYNRAG_ERR_NOMEM; *out is then zeroed.
 */
int dr_extractive_answer(const dr_extractive_config *cfg, const char *question,
                         const dr_passage *passages, size_t n, dr_answer *out,
                         dynrag_error *err);

/* Frees the members of a (not a itself) and zeroes it. Accepts NULL. */
void dr_answer_free(dr_answer *a);

#endif
