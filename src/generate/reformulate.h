/*
 * generate/reformulate.h - multi-step retrieval without an LLM.
 *
 * Bridge questions (HotpotQA-style: "the woman who portrayed Corliss Archer
 * in Kiss and Tell held which position?") need a second retrieval for an
 * entity the first one revealed ("Shirley Temple"). dr_reformulate() builds
 * that next query: the question followed by new evidence terms taken from
 * the top passages retrieved so far:
 *   - their titles (without a trailing "(disambiguator)"), and
 *   - runs of capitalised words ("Shirley Temple", "Chief of Protocol") in
 *     sentences that share at least one content word with the question,
 *     ranked by that overlap, the run's length and the passage's rank,
 * skipping every candidate whose content words all occur in the question,
 * in an earlier step (the state) or in a term already chosen. When nothing
 * new is left the next query is NULL: the stop condition.
 */
#ifndef DYNRAG_GENERATE_REFORMULATE_H
#define DYNRAG_GENERATE_REFORMULATE_H

#include "dynrag/status.h"
#include "generate/passage.h"

#include <stddef.h>

#define DR_REFORM_TOP_PASSAGES 3 /* passages looked at per step */
#define DR_REFORM_MAX_TERMS 3    /* evidence terms added per step */

/* The words used by earlier steps. Opaque; one per multi-step query. */
typedef struct dr_reform_state dr_reform_state;

/* Creates an empty state in *out (free with dr_reform_free). Fails with
 * DYNRAG_ERR_INVALID (out NULL) or DYNRAG_ERR_NOMEM. */
int dr_reform_create(dr_reform_state **out);

/* Frees the state. Accepts NULL. */
void dr_reform_free(dr_reform_state *s);

/*
 * Builds the next query from question and passages[0..n) (best first) into
 * *next (caller frees), or sets *next = NULL when there is no new evidence.
 * The terms added are recorded in s so later steps do not repeat them. The
 * output is valid UTF-8 whatever the input. Fails with DYNRAG_ERR_INVALID
 * (s, question or next NULL, passages NULL with n > 0) or DYNRAG_ERR_NOMEM,
 * leaving *next NULL and s unchanged.
 */
int dr_reformulate(dr_reform_state *s, const char *question, const dr_passage *passages,
                   size_t n, char **next, dynrag_error *err);

#endif
