/*
 * dynrag/engine.h - running queries through a routed pipeline.
 *
 * An engine binds a loaded pipeline to its index, routers and generators.
 * For each query it runs the stages in their fixed order (retrieval_mode,
 * embedder, index, context, prompt, generator); at each stage the stage's
 * router picks an option, the engine enforces the per-query budget, runs
 * the option and records the decision. The result of a query is also its
 * route-log record (docs/route-log.md), appended to the pipeline's log.
 *
 * An engine is shared by concurrent queries (server threads):
 * dynrag_engine_query() and dynrag_engine_feedback() are thread-safe.
 */
#ifndef DYNRAG_ENGINE_H
#define DYNRAG_ENGINE_H

#include "dynrag/common.h"
#include "dynrag/index.h"
#include "dynrag/pipeline.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dynrag_engine dynrag_engine;

/* Options of dynrag_engine_open(). Call dynrag_engine_options_init()
 * first, then set what differs: every field is taken literally. */
typedef struct dynrag_engine_options {
    const char *index_dir; /* overrides the pipeline's `index:`; NULL (default) = the pipeline's */
    const char *log_path;  /* overrides the pipeline's `log:`; NULL (default) = the pipeline's */
    bool no_log;           /* write no route log (default false) */
} dynrag_engine_options;

/* Sets every field of o to its default (above). */
DYNRAG_API void dynrag_engine_options_init(dynrag_engine_options *o);

/* Creates an engine for a pipeline (which must outlive it): opens the index
 * (when a stage needs one), creates every router and loads router state.
 * opt may be NULL (the defaults of dynrag_engine_options_init). Fails with
 * a message naming the stage or file. */
DYNRAG_API int dynrag_engine_open(const dynrag_pipeline *p, const dynrag_engine_options *opt,
                                    dynrag_engine **out, dynrag_error *err);

/* Saves router state (bandits), flushes the log and frees the engine.
 * Accepts NULL. */
DYNRAG_API void dynrag_engine_close(dynrag_engine *e);

/* The route-log path the engine appends to, or NULL when not logging.
 * Owned by the engine. */
DYNRAG_API const char *dynrag_engine_log_path(const dynrag_engine *e);

/* The index the engine opened for an embedder option, by option name (NULL
 * = the first one opened), for direct searches (the server's
 * /v1/retrieve). Owned by the engine; NULL when the name is unknown or the
 * option has no index (the pipeline does not retrieve, or the option's
 * embedder cannot serve the index). */
DYNRAG_API dynrag_index *dynrag_engine_index(const dynrag_engine *e, const char *embedder_option);

/* Persists router state now (atomic writes). */
DYNRAG_API int dynrag_engine_save(dynrag_engine *e, dynrag_error *err);

/* Forces a stage's option for one query, bypassing its router and the
 * budget check (the decision's reason says "forced"). For evaluation
 * baselines (always-X, random, oracle). A forced cascade stage runs only
 * the pinned option: its answer is still judged (the record's `cascade[]`
 * entry gives the confidence) but never escalated. */
typedef struct dynrag_force {
    const char *stage;  /* e.g. "index" */
    const char *option; /* an option name of that stage */
} dynrag_force;

/* Options of dynrag_engine_query(). Call dynrag_query_options_init()
 * first, then set what differs: every field is taken literally. */
typedef struct dynrag_query_options {
    const char *query_id;  /* NULL (default) = generated ("q-<time>-<pid>-<counter>") */
    bool route_only;       /* decide every stage from the query alone; run nothing (false) */
    bool retrieve_only;    /* run retrieval_mode, embedder and index only (false) */
    int k;                 /* retrieval depth for this query, 1 to 1000; 0 (default) = no
                              override: the retrieval_mode option's `k`. Negative or
                              above 1000: DYNRAG_ERR_INVALID naming "k" */
    bool no_log;           /* do not append this query to the route log (false) */
    const dynrag_force *force; /* NULL (default): no stage forced */
    size_t n_force;            /* entries of force (0) */
    /* NULL (default) = the pipeline's `budget:`. Each set field tightens the
     * pipeline's (the smaller of the two applies): a caller cannot loosen a
     * budget. */
    const dynrag_budget *budget;
    /* The result carries no route-log record: dynrag_result_json() returns
     * NULL, and a query that is not logged (route_only, no_log, or no route
     * log) never builds one, which makes routing-only calls cheaper. The
     * logged record is the same either way. */
    bool no_record;
} dynrag_query_options;

/* Sets every field of o to its default (above). */
DYNRAG_API void dynrag_query_options_init(dynrag_query_options *o);

typedef struct dynrag_result dynrag_result;

/* Runs one query. On success *out holds the result (free with
 * dynrag_result_free) and the record was appended to the route log. An
 * empty or whitespace-only question fails with DYNRAG_ERR_INVALID. A failing
 * endpoint with no fallback fails the query; the failed record is still
 * logged with its error. */
DYNRAG_API int dynrag_engine_query(dynrag_engine *e, const char *question,
                                   const dynrag_query_options *opt, dynrag_result **out,
                                   dynrag_error *err);

/* Reward feedback in [-1e6, 1e6] for a past query of this engine (bandit
 * routers learn from it). DYNRAG_ERR_NOTFOUND when the id is unknown (the
 * engine remembers the last 65,536 queries). A reward counts once per query
 * id: a second one fails with DYNRAG_ERR_STATE (checked in this engine and,
 * for a bandit router with a `state` file, in its reward store, which every
 * process sharing the file sees). With a state file the reward is on disk
 * before DYNRAG_OK is returned. */
DYNRAG_API int dynrag_engine_feedback(dynrag_engine *e, const char *query_id, double reward,
                           dynrag_error *err);

/* Feedback for a query known only from a route-log record (a JSON line with
 * its "id", "query" and "stages"); the same once-per-id rule and durability
 * as dynrag_engine_feedback(). */
DYNRAG_API int dynrag_engine_feedback_record(dynrag_engine *e, const char *record_json, double reward,
                                  dynrag_error *err);

/* ---- results ---------------------------------------------------------- */

DYNRAG_API const char *dynrag_result_id(const dynrag_result *r);
DYNRAG_API const char *dynrag_result_answer(const dynrag_result *r);
DYNRAG_API bool dynrag_result_unanswerable(const dynrag_result *r);

typedef struct dynrag_citation {
    const char *doc_id;
    const char *title;
    long long chunk_id;
    double score;
} dynrag_citation;

DYNRAG_API size_t dynrag_result_n_citations(const dynrag_result *r);
DYNRAG_API const dynrag_citation *dynrag_result_citation(const dynrag_result *r, size_t i);

typedef struct dynrag_decision {
    const char *stage;   /* e.g. "index" */
    const char *router;  /* router type, e.g. "rules" */
    const char *choice;  /* chosen option name, or "" when the stage was skipped */
    const char *reason;
    double latency_us;   /* routing + running the option */
    bool skipped;        /* stage not needed (e.g. index when retrieval_mode is none) */
} dynrag_decision;

/* Every passage retrieved (all steps, de-duplicated by chunk, in order of
 * retrieval); `title` may be "". Owned by r. */
DYNRAG_API size_t dynrag_result_n_retrieved(const dynrag_result *r);
DYNRAG_API const dynrag_citation *dynrag_result_retrieved(const dynrag_result *r, size_t i);

/* The packed context text the generator saw ("" without retrieval). */
DYNRAG_API const char *dynrag_result_context(const dynrag_result *r);

/* The passages of the packed context, in context order: selected from every
 * retrieval step's passages (docs/route-log.md, `context`). Owned by r. */
DYNRAG_API size_t dynrag_result_n_context(const dynrag_result *r);
DYNRAG_API const dynrag_citation *dynrag_result_context_passage(const dynrag_result *r, size_t i);

DYNRAG_API size_t dynrag_result_n_decisions(const dynrag_result *r);
DYNRAG_API const dynrag_decision *dynrag_result_decision(const dynrag_result *r, size_t i);

typedef struct dynrag_totals {
    long long input_tokens, output_tokens;
    double usd, latency_ms, energy_wh;
    int generator_calls, retrieval_steps;
    bool over_budget;    /* something ran past the budget: the record's
                            `totals.over_budget_reason` says what and why */
} dynrag_totals;

DYNRAG_API const dynrag_totals *dynrag_result_totals(const dynrag_result *r);

/* The result's route-log record as one line of compact JSON (no newline).
 * Owned by r. NULL when the query ran with `no_record`. */
DYNRAG_API const char *dynrag_result_json(const dynrag_result *r);

DYNRAG_API void dynrag_result_free(dynrag_result *r);

/* ---- route logs --------------------------------------------------------- */

/* Summarises a route-log file: route mix per stage and option, cascade
 * escalations per stage (attempts, escalations, queries escalated, counts
 * by "from -> to"), fallbacks per stage (counts by "failed -> taken"), cost
 * and latency totals, errors. *report is a human-readable table (caller frees);
 * *json (may be NULL) the same as JSON. Malformed lines are counted and
 * reported with their line numbers, not fatal. */
DYNRAG_API int dynrag_log_summary(const char *path, char **report, char **json, dynrag_error *err);

#ifdef __cplusplus
}
#endif
#endif
