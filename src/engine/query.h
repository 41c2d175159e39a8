/*
 * engine/query.h - one query's state and the stage routing every stage file
 * uses (internal to the engine).
 *
 * Layering of src/engine/ (each file includes only files below it):
 *   engine.c  (driver) -> record.c, feedback.c -> generate.c -> retrieve.c
 *   -> query.c -> budget.c
 */
#ifndef DYNRAG_ENGINE_QUERY_H
#define DYNRAG_ENGINE_QUERY_H

#include "engine/budget.h"
#include "engine/engine_internal.h"
#include "generate/llm.h"
#include "generate/passage.h"

#include <cjson/cJSON.h>

/* What happened in one stage of a query. */
typedef struct stage_rec {
    int option; /* chosen option, -1 when skipped */
    bool skipped;
    bool routed;
    bool forced; /* pinned by the caller: a cascade judges but never escalates */
    double scores[DR_MAX_OPTIONS];
    char reason[512];
    int64_t latency_us;
    double usd, latency_ms, energy_wh; /* cost of what ran in this stage */
} stage_rec;

/* A retrieved passage the query owns (copied from index hits). */
typedef struct own_passage {
    char *doc_id;
    char *title;
    char *text;
    double score;
    int64_t chunk_id;
} own_passage;

/* The state of one query while it runs; dr_qstate_free() releases it. */
typedef struct qstate {
    dynrag_engine *e;
    const dynrag_query_options *opt; /* never NULL */
    const dynrag_pipeline *p;
    const char *q;
    dr_query_features f;
    int64_t start_us;
    stage_rec st[DR_STAGE_COUNT];
    dynrag_totals tot;
    dynrag_index *idx;
    dynrag_search_options search;
    own_passage *pass;
    size_t n_pass, cap_pass;
    cJSON *steps;   /* array of retrieval steps */
    cJSON *cascade; /* array of cascade attempts */
    char *answer;
    bool unanswerable;
    size_t *cited; /* indices into ctx_pass */
    size_t n_cited;
    dr_passage *ctx_pass; /* the packed context's passages (views) */
    size_t n_ctx;
    own_passage *docs; /* whole documents for the "documents" context */
    size_t n_docs;
    char *context_text;
    char *prompt_text;
} qstate;

/* Frees n passages and their strings, then the array (NULL is fine). */
void dr_own_passages_free(own_passage *p, size_t n);

/* Frees what the state owns (not the state itself, not s->e or s->p). */
void dr_qstate_free(qstate *s);

/* Milliseconds since the query started. */
double dr_q_elapsed_ms(const qstate *s);

/* The pipeline budget minus what the query has spent and the time elapsed. */
dr_budget dr_q_remaining(const qstate *s);

/* The first index the engine opened (any embedder option), or NULL. */
dynrag_index *dr_engine_first_index(const dynrag_engine *e);

/*
 * Routes stage `sid`: applies a caller's force, else asks the stage's router
 * and keeps its pick only when the remaining budget pays for it (priced with
 * in_tokens/out_tokens), else the best-scored option that fits, else the
 * cheapest available (marking the query over budget). Fills s->st[sid]
 * (scores, reason, option). Returns the chosen option index, or a negative
 * status with err set (router failure, unknown or unavailable forced option).
 */
int dr_q_route_stage(qstate *s, dr_stage_id sid, double in_tokens, double out_tokens,
                     dynrag_error *err);

/* Marks stage `sid` skipped with reason `why` (no option, no scores). */
void dr_q_skip_stage(qstate *s, dr_stage_id sid, const char *why);

/* Charges a cost to stage `sid` and the query totals (latency to the stage only). */
void dr_q_charge(qstate *s, dr_stage_id sid, double usd, double lat_ms, double wh);

/* Fills an LLM client config from an openai option and its endpoint; the
 * strings point into the option (and the environment for the key). */
void dr_q_llm_config(const dr_option *o, dr_llm_config *c, const char **key_out);

/* Counts one LLM call of option `o` in the totals and charges stage `sid`
 * its reported cost and latency and the option's declared energy. */
void dr_q_account_llm(qstate *s, dr_stage_id sid, const dr_option *o, const dr_llm_result *r);

#endif
