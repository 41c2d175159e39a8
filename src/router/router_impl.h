/*
 * router/router_impl.h - what the router implementations share (internal to
 * src/router/).
 *
 * Each router type has one create function listed in the table of
 * router/router.c. Params are read with the pipeline loader's dr_param_*
 * and options resolved with dr_stage_find_option (pipeline/spec.h).
 */
#ifndef DYNRAG_ROUTER_ROUTER_IMPL_H
#define DYNRAG_ROUTER_ROUTER_IMPL_H

#include "core/util.h"
#include "router/router.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* ---- create functions (one per router type) --------------------------- */

typedef int (*dr_router_create_fn)(const dynrag_pipeline *p, const dr_stage *stage,
                                   dr_router **out, dynrag_error *err);

int dr_router_create_fixed(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                           dynrag_error *err);
int dr_router_create_rules(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                           dynrag_error *err);
int dr_router_create_knn(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                         dynrag_error *err);
int dr_router_create_cost(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                          dynrag_error *err);
int dr_router_create_bandit(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                            dynrag_error *err);
int dr_router_create_cascade(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                             dynrag_error *err);
/* router/classifier_router.c: the T5-style complexity classifier. */
int dr_router_create_classifier(const dynrag_pipeline *p, const dr_stage *stage,
                                dr_router **out, dynrag_error *err);

/* router/predict_router.c: a model trained on outcome tables (router/omodel.h). */
int dr_router_create_predict(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                             dynrag_error *err);

/* router/llm_router.c: an LLM picks the option from their descriptions. */
int dr_router_create_llm(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                         dynrag_error *err);

/* ---- decisions (router/router.c) -------------------------------------- */

/* Resets a decision: option -1, every score NAN, empty reason. */
void dr_route_decision_reset(dr_route_decision *d);

/*
 * Makes sure the decision names an option available for the query in ctx
 * (dr_route_ok). When d->option is
 * available nothing changes. Otherwise the available option with the highest
 * non-NAN score is taken (ties and unscored options in listed order) and
 * "; <wanted> unavailable, using <other>" is appended to the reason. Fails
 * with DYNRAG_ERR_STATE, naming the stage, when no option is available.
 */
int dr_route_ensure_available(const dr_route_ctx *ctx, const dr_stage *stage, dr_route_decision *d,
                              dynrag_error *err);

/* Appends printf-style text to a decision's reason (truncating). */
void dr_route_reason_append(dr_route_decision *d, const char *fmt, ...) DR_PRINTF(2, 3);

/* The no-op feedback and save of stateless routers. */
int dr_router_feedback_none(dr_router *r, const char *query_id,
                            const dr_query_features *features, int option, double reward,
                            dynrag_error *err);
int dr_router_save_none(dr_router *r, dynrag_error *err);

/* ---- option params ------------------------------------------------------ */

/*
 * Reads the option name at params[key] and resolves it. When the key is
 * absent, *out gets `dflt` (which may be -1 for "required"). Fails with
 * DYNRAG_ERR_INVALID naming the stage, router and field.
 */
static inline int dr_router_option_param(const dr_stage *stage, const char *key, int dflt,
                                         int *out, dynrag_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(stage->router.params, key);
    if (v == NULL) {
        if (dflt < 0)
            return dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.%s: required",
                              dr_stage_name(stage->id), key);
        *out = dflt;
        return DYNRAG_OK;
    }
    if (!cJSON_IsString(v))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.%s: expected an option name",
                          dr_stage_name(stage->id), key);
    int i = dr_stage_find_option(stage, v->valuestring);
    if (i < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.%s: no option named '%s'",
                          dr_stage_name(stage->id), key, v->valuestring);
    *out = i;
    return DYNRAG_OK;
}

#endif
