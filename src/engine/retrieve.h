/*
 * engine/retrieve.h - single and multi-step retrieval and the context built
 * from what was retrieved (internal to the engine).
 */
#ifndef DYNRAG_ENGINE_RETRIEVE_H
#define DYNRAG_ENGINE_RETRIEVE_H

#include "engine/query.h"

/* Sets s->search from index option `ii`'s kind and params. Returns
 * DYNRAG_ERR_INVALID for a kind that is not a search mode. */
int dr_q_search_options(qstate *s, int ii);

/*
 * One retrieval step: searches s->idx with `query` and s->search, keeps up
 * to k chunks not held before (s->pass), records the step in s->steps and
 * counts it. *n_new gets the number of new chunks. A search that embeds the
 * query is priced first (the embedder option's price, charged to the
 * embedder stage); a later step (step > 1) that does not fit the remaining
 * budget is cut (recorded) and returns DYNRAG_ERR_LIMIT. When the search
 * fails and the index stage declares a usable fallback, the step runs again
 * with it. Fails with the search's status (prefixed "retrieval step N") or
 * DYNRAG_ERR_NOMEM.
 */
int dr_q_retrieve_step(qstate *s, int step, const char *query, int k, size_t *n_new,
                       dynrag_error *err);

/*
 * Multi-step retrieval of up to max_steps steps of k new chunks each. With
 * an available openai generator option (IRCoT-style), each later step
 * retrieves with the LLM's next reasoning sentence and stops when it gives
 * the answer; without one, or once a reasoning call failed (a fallback) or
 * did not fit the budget (a cut), with one offline follow-up query per
 * bridge entity of the evidence (dr_reformulate), stopping when no bridge is
 * left or a step's best hit is new (the bridge was found). Every path stops
 * when a step brings nothing new. No step starts
 * past the deadline. Fails only when a search fails with no index fallback.
 */
int dr_q_retrieve_multi(qstate *s, int k, int max_steps, dynrag_error *err);

/*
 * Adaptive retrieval (kind "adaptive"): step 1 with the question, then the
 * later steps of dr_q_retrieve_multi() (reusing step 1's hits: no step runs
 * twice) only when step 1's passages do not suffice: when their coverage of
 * the question's content words is below min_coverage, or (follow_bridge)
 * when they name a bridge entity whose passage is not among them
 * (dr_reform_sufficiency).
 * The features and the decision are logged as step 1's "sufficiency" and in
 * the retrieval_mode stage's reason. Never more steps than
 * dr_q_retrieve_multi() with the same k and max_steps takes.
 */
int dr_q_retrieve_adaptive(qstate *s, int k, int max_steps, double min_coverage,
                           bool follow_bridge, dynrag_error *err);

/*
 * Packs the context of context option `ci` from the retrieved passages (or
 * their whole documents for kind "documents") into s->ctx_pass (views into
 * s->pass or s->docs) and s->context_text, replacing earlier ones. Fails on
 * a document read or packing error (prefixed with the option) or NOMEM.
 */
int dr_q_build_context(qstate *s, int ci, dynrag_error *err);

#endif
