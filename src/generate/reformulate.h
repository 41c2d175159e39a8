/*
 * generate/reformulate.h - multi-step retrieval without an LLM.
 *
 * Bridge questions (HotpotQA-style: "the woman who portrayed Corliss Archer
 * in Kiss and Tell held which position?") need a second retrieval for an
 * entity the first one revealed ("Shirley Temple"). dr_reformulate() builds
 * one follow-up query per bridge candidate, best first:
 *   - candidates are runs of capitalised words ("Shirley Temple", "Chief of
 *     Protocol") in sentences of the top passages that share at least one
 *     content word with the question; those that name the title of an indexed
 *     document (a run of their words has the title's content words, see
 *     dr_title_key(); entity linking against the index, as multi-hop
 *     retrievers follow Wikipedia's links) rank first, then by that overlap,
 *     the run's length and the passage's rank;
 *   - a candidate is skipped when its content words all occur in the
 *     question or in an earlier step's bridge (the state), or when it names
 *     a passage already in hand (every content word of the title of one of
 *     the first DR_REFORM_HELD_PASSAGES passages is among its words);
 *   - the query is the bridge followed by the question's content words that
 *     its source passage does not contain ("Shirley Temple government
 *     position held"), or by the whole question when the passage has them all.
 * When no candidate is left the next query is NULL: the stop condition.
 */
#ifndef DYNRAG_GENERATE_REFORMULATE_H
#define DYNRAG_GENERATE_REFORMULATE_H

#include "dynrag/status.h"
#include "generate/passage.h"

#include <stdbool.h>
#include <stddef.h>

#include <stdint.h>

#define DR_REFORM_TOP_PASSAGES 3 /* passages looked at per step */
#define DR_REFORM_HELD_PASSAGES 5 /* passages whose titles count as in hand */

/*
 * The key of a document title or of a name: an order-free hash of its
 * distinct content-word stems (the stemmer and stop words of the rest of
 * this file), a trailing parenthetical left out ("Kiss and Tell (1945
 * film)" and "Kiss and Tell" have the same key). 0 when it has no content
 * word.
 */
uint64_t dr_title_key(const char *s, size_t n);

/* The titles of the indexed documents: has(user, key) is true when some
 * document's title has that dr_title_key(). */
typedef struct dr_titles {
    bool (*has)(void *user, uint64_t key);
    void *user;
} dr_titles;

/* The words used by earlier steps. Opaque; one per multi-step query. */
typedef struct dr_reform_state dr_reform_state;

/* Creates an empty state in *out (free with dr_reform_free). Fails with
 * DYNRAG_ERR_INVALID (out NULL) or DYNRAG_ERR_NOMEM. */
int dr_reform_create(dr_reform_state **out);

/* Frees the state. Accepts NULL. */
void dr_reform_free(dr_reform_state *s);

/* Sets the titles candidates are linked against (NULL or has NULL: none, the
 * default). t is copied; its user pointer must outlive the state's use. */
void dr_reform_set_titles(dr_reform_state *s, const dr_titles *t);

/*
 * Builds the next query from question and passages[0..n) (best first) into
 * *next (caller frees), or sets *next = NULL when there is no new bridge.
 * The bridge used is recorded in s so later steps do not repeat it. The
 * output is valid UTF-8 whatever the input. Fails with DYNRAG_ERR_INVALID
 * (s, question or next NULL, passages NULL with n > 0) or DYNRAG_ERR_NOMEM,
 * leaving *next NULL and s unchanged.
 */
int dr_reformulate(dr_reform_state *s, const char *question, const dr_passage *passages,
                   size_t n, char **next, dynrag_error *err);

/* What the first retrieval step's passages say about a question's needs. */
typedef struct dr_sufficiency {
    double coverage;     /* share of the question's content words (by stem) that
                          * occur in the first DR_REFORM_HELD_PASSAGES passages */
    bool has_bridge;     /* the passages name an entity the question does not */
    bool bridge_in_hand; /* that best bridge candidate names one of those passages */
    bool bridge_linked;  /* it names the title of an indexed document (dr_titles) */
    char bridge[128];    /* the best bridge candidate ("" when none) */
} dr_sufficiency;

/*
 * The sufficiency features of passages[0..n) (best first) for question, as
 * an adaptive retrieval step decides on them: the coverage of the question's
 * content words by the first DR_REFORM_HELD_PASSAGES passages, and the best
 * bridge candidate dr_reformulate() would consider first with the same
 * titles (NULL: none; ignoring whether its passage is in hand) and whether
 * its passage is. Fails with DYNRAG_ERR_INVALID (question or out NULL,
 * passages NULL with n > 0) or DYNRAG_ERR_NOMEM; *out is zeroed first.
 */
int dr_reform_sufficiency(const char *question, const dr_passage *passages, size_t n,
                          const dr_titles *titles, dr_sufficiency *out, dynrag_error *err);

#endif
