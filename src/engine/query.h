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

#include "core/jsonb.h"
#include "core/util.h"
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
    int step;     /* the retrieval step that first found it (1-based) */
    int rank;     /* its rank in that step's hits (1-based) */
    double fused; /* reciprocal-rank fusion over the steps that returned it */
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
    bool top_new; /* the last search's best hit was not held before */
    cJSON *steps;   /* array of retrieval steps */
    cJSON *cascade; /* array of cascade attempts */
    char *answer;
    bool unanswerable;
    size_t *cited; /* indices into ctx_pass */
    size_t n_cited;
    dr_passage *ctx_pass; /* the packed context's passages (views) */
    int *ctx_step;        /* [n_ctx]: the step each context passage came from */
    double *ctx_fused;    /* [n_ctx]: its fused score */
    size_t n_ctx;
    own_passage *docs; /* whole documents for the "documents" context */
    size_t n_docs;
    char *context_text;
    char *prompt_text;
    dr_budget budget;    /* the budget this query runs under (pipeline's, tightened) */
    int64_t deadline_us; /* start + latency budget on the dr_now_us() clock; 0 = none */
    /* Per-query availability of each option and, when unavailable, why. */
    bool avail[DR_STAGE_COUNT][DR_MAX_OPTIONS];
    char unavail_why[DR_STAGE_COUNT][DR_MAX_OPTIONS][112];
    cJSON *cuts;           /* array of {stage, action, why}: what the budget cut */
    dr_jb jb;              /* building steps/cascade/cuts/fallbacks ran out of memory */
    cJSON *fallbacks;      /* array of {stage, failed, error, took} */
    char over_reason[512]; /* why the query went over budget ("" when it did not) */
    unsigned over_fields;  /* bits 1 usd, 2 energy, 4 latency: already reported */
} qstate;

/* Frees n passages and their strings, then the array (NULL is fine). */
void dr_own_passages_free(own_passage *p, size_t n);

/* Frees what the state owns (not the state itself, not s->e or s->p). */
void dr_qstate_free(qstate *s);

/* Milliseconds since the query started. */
double dr_q_elapsed_ms(const qstate *s);

/* The query's budget minus what it has spent and the time elapsed. */
dr_budget dr_q_remaining(const qstate *s);

/* True when the query's latency budget is used up (the deadline passed). */
bool dr_q_past_deadline(const qstate *s);

/* Records that the budget cut `action` of stage sid (it did not run), with
 * the why as printf-style text; also appended to the stage's reason. */
void dr_q_cut(qstate *s, dr_stage_id sid, const char *action, const char *fmt, ...) DR_PRINTF(4, 5);

/* Marks the query over budget and appends the why (printf-style) to
 * s->over_reason, which the record shows as totals.over_budget_reason. */
void dr_q_over_budget(qstate *s, const char *fmt, ...) DR_PRINTF(2, 3);

/* True when what the query spent so far ($ and energy) or its wall time
 * passed its budget; marks it over budget with the figures when so. */
bool dr_q_check_spent(qstate *s, const char *after);

/*
 * After option `failed` of stage sid failed with `why`: the stage's
 * `fallback:` option when one is declared, differs from `failed` and is
 * available for the query, else -1. A fallback taken is recorded (the stage's
 * reason, the record's fallbacks[], a WARN log line) and becomes the stage's
 * choice; without one the failure is recorded in the reason only.
 */
int dr_q_fallback(qstate *s, dr_stage_id sid, int failed, const dynrag_error *why);

/* The first index the engine opened (any embedder option), or NULL. */
dynrag_index *dr_engine_first_index(const dynrag_engine *e);

/*
 * Routes stage `sid`: works out which options the query can use (each
 * option's needs, dr_q_availability), applies a caller's force, else asks
 * the stage's router (with those options and the engine's prices of them)
 * and keeps its pick only when the remaining budget pays for it (priced with
 * in_tokens/out_tokens by dr_budget_price), else the best-scored option that
 * fits, else the cheapest available (marking the query over budget). Fills
 * s->st[sid] (scores, reason, option). Returns the chosen option index, or a
 * negative status with err set (router failure, unknown or unavailable forced
 * option, no option available).
 */
int dr_q_route_stage(qstate *s, dr_stage_id sid, double in_tokens, double out_tokens,
                     dynrag_error *err);

/*
 * Fills s->avail[sid] and s->unavail_why[sid]: an option is available when
 * its endpoint is configured and its needs are met for this query:
 *   retrieval_mode none     an available generator that answers without
 *                           passages (openai); single/multi: an open index;
 *   embedder                an index opened with that embedder's identity;
 *   index dense/hybrid      dense vectors in the chosen embedder's index;
 *   generator extractive    retrieved passages (retrieval_mode is not none).
 * When no option of the stage meets its needs, the needs are not applied
 * (every option with a configured endpoint stays) and the stage's reason
 * says so, so that a query fails only when nothing can run.
 */
void dr_q_availability(qstate *s, dr_stage_id sid);

/* Marks stage `sid` skipped with reason `why` (no option, no scores). */
void dr_q_skip_stage(qstate *s, dr_stage_id sid, const char *why);

/* Charges a cost to stage `sid` and the query totals (latency to the stage only). */
void dr_q_charge(qstate *s, dr_stage_id sid, double usd, double lat_ms, double wh);

/* Fills an LLM client config from an openai option and its endpoint, with
 * the query's deadline; the strings point into the option (and the
 * environment for the key). */
void dr_q_llm_config(const qstate *s, const dr_option *o, dr_llm_config *c);

/* Counts one LLM call of option `o` in the totals and charges stage `sid`
 * its reported cost and latency and the option's declared energy. */
void dr_q_account_llm(qstate *s, dr_stage_id sid, const dr_option *o, const dr_llm_result *r);

#endif
