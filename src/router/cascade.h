/*
 * router/cascade.h - the cascade router's answer judges (internal).
 *
 * A cascade runs the first available option, judges its answer, and the
 * engine escalates to the next option in listed order while the judge's
 * confidence is below the router's `threshold`.
 */
#ifndef DYNRAG_ROUTER_CASCADE_H
#define DYNRAG_ROUTER_CASCADE_H

#include "pipeline/spec.h"
#include "router/router.h"

#include <stdbool.h>
#include <stddef.h>

/* What a judge sees of an answer. All pointers are borrowed. */
typedef struct dr_answer_view {
    const char *text;             /* the answer (NULL counts as "") */
    bool unanswerable;            /* the generator flagged it unanswerable */
    double first_token_margin;    /* logprob(top1) - logprob(top2) of the first token; NAN: none */
    double mean_logprob;          /* mean token log-probability of the answer; NAN: none */
    double confidence;            /* the generator's own confidence in [0, 1] (the extractive
                                     generator's support); NAN: none */
    const char *const *samples;   /* extra sampled answers for `agreement` */
    size_t n_samples;
    const char *query;            /* the query the answer answers (scorer; NULL counts as "") */
    const char *option;           /* the option that answered (scorer; may be NULL) */
} dr_answer_view;

/* Every judge's confidence is in [0, 1], so is every valid threshold (the
 * pipeline schema and dr_router_create_cascade() reject others). */
#define DR_CASCADE_THRESHOLD_MIN 0.0
#define DR_CASCADE_THRESHOLD_MAX 1.0

/*
 * Judges an answer with the spec's `judge` (self_route by default) and
 * returns a confidence in [0, 1]; `why` (may be NULL) gets a short reason.
 * r is the stage's cascade router (it holds the scorer model; may be NULL
 * for the other judges).
 * The caller escalates to the next option when confidence < threshold.
 * Under every judge, an answer that says it cannot answer (flagged
 * unanswerable, empty, or saying "unanswerable" / "cannot be answered" /
 * "not enough information", case-insensitive) gets 0. Otherwise:
 *   self_route: 1.
 *   logprob_margin: 1 - exp(-margin), clamped to [0, 1]; without a margin,
 *     the generator's reported confidence when finite, else 1 ("no logprobs").
 *   seq_logprob: exp(mean token log-probability), clamped to [0, 1]; without
 *     log-probabilities as logprob_margin.
 *   agreement: the share of samples whose SQuAD-normalised text equals the
 *     most common one (ties: the first seen); with fewer than 2 samples, the
 *     generator's reported confidence when finite, else 1 ("fewer than 2
 *     samples").
 *   scorer: the trained answer scorer's probability that the answer is
 *     correct given the query and the option (router/scorer.h); without a
 *     cascade router holding a scorer (r NULL or not a cascade), 1
 *     ("no scorer model").
 * Out of memory (`agreement` normalises the samples) gives NAN and the
 * reason "out of memory": the caller fails with DYNRAG_ERR_NOMEM.
 */
double dr_cascade_judge(const dr_router *r, const dr_router_spec *spec, const dr_answer_view *a,
                        char *why, size_t why_len);

/* True when r is a cascade router with a quality_model (cascade routing:
 * the order of its options is chosen per query, not listed). */
bool dr_cascade_routed(const dr_router *r);

/*
 * The option a cascade escalates to after option `cur` answered with judged
 * `confidence`, into *next (-1: stop). called[i]: option i has answered
 * already; ok[i]: option i may run (available, fits the budget). Listed
 * order: the first option after cur that is ok and not called. Routed
 * (quality_model): among the options ok and not called, the one of highest
 * predicted quality - willingness_to_pay * predicted cost for query, when
 * that score is above confidence (its expected gain net of its price is
 * positive), else none. why (may be NULL) gets the
 * reason. Fails only when the quality model cannot predict (NOMEM).
 */
int dr_cascade_next(const dr_router *r, const char *query, const bool *called, const bool *ok,
                    int cur, double confidence, int *next, char *why, size_t why_len,
                    dynrag_error *err);

#endif
