/*
 * router/router.h - the common interface of the per-stage routers (internal).
 *
 * The engine builds one router per stage from the stage's `router:` spec.
 * For each query it fills a dr_route_ctx and calls route(); the router
 * writes a score per option and its pick into a dr_route_decision. The
 * engine then enforces the budget (an option the remaining budget cannot
 * pay for is never run; when nothing fits, the cheapest runs and the reason
 * says why) and records the decision in the route log.
 *
 * Routers are shared by concurrent queries (server threads): route() must be
 * thread-safe; routers with state (bandit) lock internally.
 */
#ifndef DYNRAG_ROUTER_ROUTER_H
#define DYNRAG_ROUTER_ROUTER_H

#include "pipeline/spec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Query features: computed once per query (router/features.c), shown in the
 * route log and used by rules, bandit (LinUCB) and cost routers. */
#define DR_FEATURE_DIM 8
typedef struct dr_query_features {
    int n_words;          /* words (core/text.h) */
    int n_chars;
    int n_entities;       /* capitalised spans not at sentence start, quoted spans, numbers */
    int n_question_words; /* who/what/when/where/which/why/how/whose/whom */
    char first_qword[12]; /* the first question word, "" if none */
    bool has_comparison;  /* "more than", "older", "same as", "compare", "both", ... */
    bool has_conjunction; /* "and", "or", "also", "as well as" joining clauses */
    bool has_nested;      /* possessive/relative chains: "of the", "'s", "that", "whose" */
    /* A fixed numeric vector for LinUCB and logging: bias, log words, entities,
     * qwords, comparison, conjunction, nested, chars/100. */
    double vec[DR_FEATURE_DIM];
} dr_query_features;

/* Computes features of a query (any UTF-8; never fails). */
void dr_query_features_compute(const char *query, dr_query_features *f);

/* What the engine tells a router about the query in flight. */
typedef struct dr_route_ctx {
    const char *query;
    const dr_query_features *features;
    const dr_stage *stage;
    /* Budget left for the rest of the query (INFINITY when unbounded). */
    dr_budget remaining;
    /* Embeds text with the pipeline's embedder (for the knn router); may be
     * NULL when the pipeline has none. out has `dim` floats. */
    int (*embed)(void *user, const char *text, float *out, int dim, dynrag_error *err);
    void *embed_user;
    int embed_dim;
    /* Per-query availability of each option (the engine removes options whose
     * needs are not met, docs/pipeline-yaml.md); NULL = each option's static
     * `available` (endpoint configured). Routers pick only available options. */
    const bool *available;
    /* The engine's price of each option for this query (engine/budget.c, the
     * same estimate its budget check uses); NULL = dr_cost_estimate(). */
    const dr_budget *price;
} dr_route_ctx;

/* True when option i of `stage` is available for the query in ctx. */
static inline bool dr_route_ok(const dr_route_ctx *ctx, const dr_stage *stage, size_t i)
{
    return ctx != NULL && ctx->available != NULL ? ctx->available[i]
                                                 : stage->options[i].available;
}

typedef struct dr_route_decision {
    int option;                     /* index into stage->options */
    double scores[DR_MAX_OPTIONS];  /* router's score per option (NAN: not scored) */
    char reason[256];               /* e.g. "rule 2 matched: n_words>=12" */
    /* What the router itself spent deciding (the llm router's call: usd,
     * latency_ms, energy_wh); zero for the others. The engine charges it
     * to the query before its budget check. */
    dr_budget spent;
} dr_route_decision;

typedef struct dr_router dr_router;

typedef struct dr_router_vtable {
    int (*route)(dr_router *r, const dr_route_ctx *ctx, dr_route_decision *out,
                 dynrag_error *err);
    /* Reward feedback for a past decision (bandit); others return DYNRAG_OK
     * and ignore it. features may be NULL when unknown. query_id names the
     * query rewarded: a router with durable state records the reward before
     * returning and refuses a second one for the same id with
     * DYNRAG_ERR_STATE (NULL: an anonymous reward, never refused). */
    int (*feedback)(dr_router *r, const char *query_id, const dr_query_features *features,
                    int option, double reward, dynrag_error *err);
    /* Persists state (bandit), atomically; no-op for stateless routers. */
    int (*save)(dr_router *r, dynrag_error *err);
    void (*free)(dr_router *r);
} dr_router_vtable;

struct dr_router {
    const dr_router_vtable *vt;
    const char *type;     /* static string, e.g. "rules" */
    const dr_stage *stage;
};

/* Creates the router a stage's spec describes. The pipeline must outlive
 * it. Fails with a message naming the stage and field. */
int dr_router_create(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                     dynrag_error *err);
/* Destroys a router (saving nothing); accepts NULL. */
void dr_router_free(dr_router *r);

#endif
