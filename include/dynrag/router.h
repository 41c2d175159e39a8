/*
 * dynrag/router.h - one stage's router on its own, outside the engine.
 *
 * The engine builds a router per stage and calls it for every query. A
 * program that replays recorded outcomes, calibrates a threshold or routes
 * inside its own stack opens the same router here: it routes a query to
 * one of the stage's options, learns from rewards (bandit) and judges
 * answers (cascade), exactly as inside the engine, but runs no retrieval
 * and no generator (only the `llm` router calls a model: the LLM it asks).
 *
 * What the engine adds and a bare router does not: per-query option needs
 * (an option that needs retrieved passages when none were retrieved), the
 * engine's per-query price estimate (a bare router prices options at their
 * declared `cost:` for the query's length), the query budget left after the
 * earlier stages (a bare router sees the pipeline's whole `budget:`), and
 * the embedder the `knn` router compares queries with (a bare knn router
 * uses its built-in hashed representation). docs/library.md, "Routers".
 */
#ifndef DYNRAG_ROUTER_H
#define DYNRAG_ROUTER_H

#include "dynrag/common.h"
#include "dynrag/pipeline.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dynrag_router dynrag_router;

typedef struct dynrag_router_options {
    /* Every option of the stage counts as available, configured endpoint
     * or not (replaying recorded outcomes: no model is called). Default
     * false: an option whose endpoint is not configured is never chosen. */
    bool all_available;
    /* A router with saved state (bandit `state_file`) starts from it but
     * never writes it: what it learns stays in memory. Default false. */
    bool in_memory;
} dynrag_router_options;

DYNRAG_API void dynrag_router_options_init(dynrag_router_options *o);

/*
 * Opens the router of `stage` ("generator", "index", ...) of p, as the
 * engine would (model files read, saved bandit state loaded). p must
 * outlive the router. opt may be NULL (defaults). Fails with
 * DYNRAG_ERR_NOTFOUND for an unknown stage, and with the router's error
 * (naming the stage and field) when it cannot be built.
 */
DYNRAG_API int dynrag_router_open(const dynrag_pipeline *p, const char *stage,
                                  const dynrag_router_options *opt, dynrag_router **out,
                                  dynrag_error *err);
/* Closes a router without saving its state; accepts NULL. */
DYNRAG_API void dynrag_router_close(dynrag_router *r);

/* The router's type ("fixed", "rules", "bandit", "cascade", ...). */
DYNRAG_API const char *dynrag_router_type(const dynrag_router *r);

typedef struct dynrag_route {
    int option;                        /* index of the chosen option (dynrag_pipeline_option) */
    double scores[DYNRAG_MAX_OPTIONS]; /* the router's score per option; NAN: not scored */
    char reason[256];                  /* why, as in the route log's `reason` */
    double spent_usd;                  /* what deciding cost (the llm router's call), else 0 */
    double spent_latency_ms;
} dynrag_route;

/*
 * Routes a query (UTF-8; invalid UTF-8 is DYNRAG_ERR_INVALID naming the
 * byte). Thread-safe: one router may route from many threads. Fails like
 * the router inside the engine would (e.g. DYNRAG_ERR_STATE when no option
 * is available).
 */
DYNRAG_API int dynrag_router_route(dynrag_router *r, const char *query, dynrag_route *out,
                                   dynrag_error *err);

/*
 * Tells the router how the option it ran for a query did: quality in
 * [0, 1], what the query cost (cost_usd) and how long the generator took
 * (latency_ms; NAN when unknown). A bandit learns the reward the engine's
 * feedback would give it (quality minus its `lambda` times the cost, minus
 * its SLA penalty, docs/routers.md#bandit); other routers ignore it.
 * query_id (may be NULL: anonymous) names the query: a router keeping state
 * refuses a second reward for the same id with DYNRAG_ERR_STATE.
 */
DYNRAG_API int dynrag_router_feedback(dynrag_router *r, const char *query_id, const char *query,
                                      size_t option, double quality, double cost_usd,
                                      double latency_ms, dynrag_error *err);

/* An answer as a cascade's judge sees it. Pointers are borrowed. */
typedef struct dynrag_answer {
    const char *text;             /* the answer (NULL counts as "") */
    const char *query;            /* the query it answers (the scorer judge reads it) */
    const char *option;           /* the option that answered (scorer), or NULL */
    bool unanswerable;            /* the generator flagged it unanswerable */
    double first_token_margin;    /* logprob(top1) - logprob(top2) of the first token; NAN */
    double mean_logprob;          /* mean token log-probability; NAN when unknown */
    double confidence;            /* the generator's own confidence in [0, 1]; NAN */
    const char *const *samples;   /* the answers compared by the `agreement` judge */
    size_t n_samples;
} dynrag_answer;

/* Sets every field of a to "unknown": NULL texts, NAN numbers. */
DYNRAG_API void dynrag_answer_init(dynrag_answer *a);

/*
 * A cascade router's judge (its `judge` param): *confidence in [0, 1] that
 * the answer stands; the cascade escalates to the next option while it is
 * below the router's `threshold`. why (may be NULL) gets a short reason.
 * DYNRAG_ERR_UNSUPPORTED for a router that is not a cascade.
 */
DYNRAG_API int dynrag_router_judge(const dynrag_router *r, const dynrag_answer *a,
                                   double *confidence, char *why, size_t why_len,
                                   dynrag_error *err);

/*
 * A cascade's next option: the options marked in called[0..n_options) have
 * answered, the last of them (cur) with judged `confidence`; *next gets the
 * option to call, or -1 to stop. A listed cascade: the first option after
 * cur not yet called. A cascade with a `quality_model` (cascade routing,
 * docs/routers.md#cascade): among the options not called, the one of
 * highest predicted quality - willingness_to_pay x predicted cost for query,
 * when that score beats confidence (calling it gains more than it costs),
 * else none. Options that may run: all
 * when the router was opened with all_available, else the available ones.
 * DYNRAG_ERR_UNSUPPORTED for a router that is not a cascade.
 */
DYNRAG_API int dynrag_router_cascade_next(const dynrag_router *r, const char *query,
                                          const bool *called, int cur, double confidence,
                                          int *next, dynrag_error *err);

/*
 * Sets the numeric router param `key` of `stage` in p (added when absent),
 * checked as the YAML would be: the router type must have that numeric
 * param and value must be in its range (an integer for an integer param).
 * For sweeps and calibration: engines and routers opened on p afterwards
 * use the new value; it must not be called while any engine or router
 * opened on p is open.
 */
DYNRAG_API int dynrag_pipeline_set_router_param(dynrag_pipeline *p, const char *stage,
                                                const char *key, double value,
                                                dynrag_error *err);

#ifdef __cplusplus
}
#endif
#endif
