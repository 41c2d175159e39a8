/*
 * router_api.c - one stage's router on its own (dynrag/router.h): the
 * public face of router/router.h for programs outside the engine
 * (replaying outcome tables, calibrating, routing in another stack).
 */
#include "dynrag/router.h"

#include "core/alloc.h"
#include "core/util.h"
#include "router/bandit.h"
#include "router/cascade.h"
#include "router/router.h"
#include "router/router_impl.h"

#include <math.h>
#include <string.h>

struct dynrag_router {
    dr_router *r;
    const dynrag_pipeline *p;
    const dr_stage *st;
    bool all_available;
    bool avail[DR_MAX_OPTIONS]; /* every option, for all_available */
};

void dynrag_router_options_init(dynrag_router_options *o)
{
    memset(o, 0, sizeof(*o));
}

int dynrag_router_open(const dynrag_pipeline *p, const char *stage,
                       const dynrag_router_options *opt, dynrag_router **out, dynrag_error *err)
{
    *out = NULL;
    if (p == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "no pipeline");
    int id = stage ? dr_stage_from_name(stage) : -1;
    if (id < 0)
        return dr_err_set(err, DYNRAG_ERR_NOTFOUND,
                          "no stage '%s' (expected retrieval_mode, embedder, index, context, "
                          "prompt or generator)",
                          stage ? stage : "(null)");
    dynrag_router_options def;
    if (opt == NULL) {
        dynrag_router_options_init(&def);
        opt = &def;
    }
    dynrag_router *h = dr_calloc(1, sizeof *h);
    if (h == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    h->p = p;
    h->st = &p->stages[id];
    h->all_available = opt->all_available;
    for (size_t i = 0; i < DR_MAX_OPTIONS; i++)
        h->avail[i] = i < h->st->n_options;
    int rc = dr_router_create(p, h->st, &h->r, err);
    if (rc != DYNRAG_OK) {
        dr_free(h);
        return rc;
    }
    if (opt->in_memory)
        dr_bandit_detach_state(h->r);
    *out = h;
    return DYNRAG_OK;
}

void dynrag_router_close(dynrag_router *r)
{
    if (r == NULL)
        return;
    dr_router_free(r->r);
    dr_free(r);
}

const char *dynrag_router_type(const dynrag_router *r)
{
    return r ? r->r->type : NULL;
}

int dynrag_router_route(dynrag_router *r, const char *query, dynrag_route *out, dynrag_error *err)
{
    memset(out, 0, sizeof(*out));
    out->option = -1;
    for (size_t i = 0; i < DYNRAG_MAX_OPTIONS; i++)
        out->scores[i] = NAN;
    if (r == NULL || query == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "route: %s is NULL",
                          r == NULL ? "the router" : "the query");
    size_t bad = 0;
    if (!dr_utf8_valid(query, strlen(query), &bad))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "route: the query is not valid UTF-8 (byte %zu)",
                          bad);
    dr_query_features f;
    dr_query_features_compute(query, &f);
    dr_route_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.query = query;
    ctx.features = &f;
    ctx.stage = r->st;
    ctx.remaining = r->p->budget;
    ctx.available = r->all_available ? r->avail : NULL;
    dr_route_decision d;
    dr_route_decision_reset(&d);
    int rc = r->r->vt->route(r->r, &ctx, &d, err);
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "stages.%s.router (%s)", dr_stage_name(r->st->id), r->r->type);
    if (d.option < 0 || (size_t)d.option >= r->st->n_options)
        return dr_err_set(err, DYNRAG_ERR_INTERNAL, "stages.%s: router chose option %d of %zu",
                          dr_stage_name(r->st->id), d.option, r->st->n_options);
    out->option = d.option;
    for (size_t i = 0; i < r->st->n_options; i++)
        out->scores[i] = d.scores[i];
    dr_strlcpy(out->reason, d.reason, sizeof out->reason);
    out->spent_usd = d.spent.usd;
    out->spent_latency_ms = d.spent.latency_ms;
    return DYNRAG_OK;
}

int dynrag_router_feedback(dynrag_router *r, const char *query_id, const char *query,
                           size_t option, double quality, double cost_usd, double latency_ms,
                           dynrag_error *err)
{
    if (r == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "feedback: the router is NULL");
    if (option >= r->st->n_options)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "feedback: stages.%s has %zu options: no option %zu",
                          dr_stage_name(r->st->id), r->st->n_options, option);
    if (!isfinite(quality) || quality < -1e6 || quality > 1e6)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "feedback: quality must be a finite number in [-1e6, 1e6]");
    if (!isfinite(cost_usd) || cost_usd < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "feedback: cost_usd must be a finite number >= 0");
    if (!isnan(latency_ms) && (!isfinite(latency_ms) || latency_ms < 0))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "feedback: latency_ms must be NAN (unknown) or a finite number >= 0");
    size_t bad = 0;
    if (query != NULL && !dr_utf8_valid(query, strlen(query), &bad))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "feedback: the query is not valid UTF-8 (byte %zu)", bad);
    dr_query_features f;
    dr_query_features_compute(query ? query : "", &f);
    double reward = dr_bandit_shaped_reward(r->st->router.params, quality, cost_usd, latency_ms);
    int rc = r->r->vt->feedback(r->r, query_id, &f, (int)option, reward, err);
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "stages.%s.router", dr_stage_name(r->st->id));
    return DYNRAG_OK;
}

void dynrag_answer_init(dynrag_answer *a)
{
    memset(a, 0, sizeof(*a));
    a->first_token_margin = NAN;
    a->mean_logprob = NAN;
    a->confidence = NAN;
}

int dynrag_router_judge(const dynrag_router *r, const dynrag_answer *a, double *confidence,
                        char *why, size_t why_len, dynrag_error *err)
{
    *confidence = NAN;
    if (why && why_len)
        why[0] = '\0';
    if (r == NULL || a == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "judge: %s is NULL",
                          r == NULL ? "the router" : "the answer");
    if (strcmp(r->r->type, "cascade") != 0)
        return dr_err_set(err, DYNRAG_ERR_UNSUPPORTED,
                          "judge: stages.%s.router is a %s router, not a cascade",
                          dr_stage_name(r->st->id), r->r->type);
    dr_answer_view v;
    memset(&v, 0, sizeof(v));
    v.text = a->text;
    v.unanswerable = a->unanswerable;
    v.first_token_margin = a->first_token_margin;
    v.mean_logprob = a->mean_logprob;
    v.confidence = a->confidence;
    v.samples = a->samples;
    v.n_samples = a->n_samples;
    v.query = a->query;
    v.option = a->option;
    *confidence = dr_cascade_judge(r->r, &r->st->router, &v, why, why_len);
    if (isnan(*confidence))
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "judge: out of memory");
    return DYNRAG_OK;
}

int dynrag_router_cascade_next(const dynrag_router *r, const char *query, const bool *called,
                               int cur, double confidence, int *next, dynrag_error *err)
{
    *next = -1;
    if (r == NULL || called == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "cascade_next: %s is NULL",
                          r == NULL ? "the router" : "called");
    if (strcmp(r->r->type, "cascade") != 0)
        return dr_err_set(err, DYNRAG_ERR_UNSUPPORTED,
                          "cascade_next: stages.%s.router is a %s router, not a cascade",
                          dr_stage_name(r->st->id), r->r->type);
    if (cur < 0 || (size_t)cur >= r->st->n_options)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "cascade_next: stages.%s has no option %d",
                          dr_stage_name(r->st->id), cur);
    bool ok[DR_MAX_OPTIONS];
    for (size_t i = 0; i < r->st->n_options; i++)
        ok[i] = r->all_available || r->st->options[i].available;
    return dr_cascade_next(r->r, query ? query : "", called, ok, cur, confidence, next, NULL, 0,
                           err);
}
