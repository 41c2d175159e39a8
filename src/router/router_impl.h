/*
 * router/router_impl.h - what the router implementations share (internal to
 * src/router/).
 *
 * Each router type has one create function listed in the table of
 * router/router.c. The helpers here read validated params and resolve
 * option names; they are `static inline` so that they add no symbols (the
 * pipeline loader owns dr_param_* and dr_stage_find_option; once it is
 * merged these can forward to it).
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

/* ---- decisions (router/router.c) -------------------------------------- */

/* Resets a decision: option -1, every score NAN, empty reason. */
void dr_route_decision_reset(dr_route_decision *d);

/*
 * Makes sure the decision names an available option. When d->option is
 * available nothing changes. Otherwise the available option with the highest
 * non-NAN score is taken (ties and unscored options in listed order) and
 * "; <wanted> unavailable, using <other>" is appended to the reason. Fails
 * with DYNRAG_ERR_STATE, naming the stage, when no option is available.
 */
int dr_route_ensure_available(const dr_stage *stage, dr_route_decision *d, dynrag_error *err);

/* Appends printf-style text to a decision's reason (truncating). */
void dr_route_reason_append(dr_route_decision *d, const char *fmt, ...) DR_PRINTF(2, 3);

/* The no-op feedback and save of stateless routers. */
int dr_router_feedback_none(dr_router *r, const dr_query_features *features, int option,
                            double reward, dynrag_error *err);
int dr_router_save_none(dr_router *r, dynrag_error *err);

/* ---- params and names --------------------------------------------------- */

/* The YAML name of a stage, for messages (the loader's dr_stage_name()
 * lives on another branch; this one is private to the routers). */
static inline const char *dr_router_stage_label(const dr_stage *stage)
{
    static const char *const names[] = {"retrieval_mode", "embedder", "index",
                                        "context",        "prompt",   "generator"};
    if (stage == NULL || (int)stage->id < 0 || (int)stage->id >= (int)DR_ARRAY_LEN(names))
        return "?";
    return names[stage->id];
}

static inline double dr_rparam_num(const cJSON *params, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static inline int dr_rparam_int(const cJSON *params, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= -2147483648.0) ||
        !(v->valuedouble <= 2147483647.0))
        return dflt;
    return (int)v->valuedouble;
}

static inline bool dr_rparam_bool(const cJSON *params, const char *key, bool dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static inline const char *dr_rparam_str(const cJSON *params, const char *key, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, key);
    return cJSON_IsString(v) && v->valuestring != NULL ? v->valuestring : dflt;
}

/* Index of the option named `name` in a stage, or -1. */
static inline int dr_router_find_option(const dr_stage *stage, const char *name)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < stage->n_options; i++)
        if (stage->options[i].name != NULL && strcmp(stage->options[i].name, name) == 0)
            return (int)i;
    return -1;
}

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
                              dr_router_stage_label(stage), key);
        *out = dflt;
        return DYNRAG_OK;
    }
    if (!cJSON_IsString(v))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.%s: expected an option name",
                          dr_router_stage_label(stage), key);
    int i = dr_router_find_option(stage, v->valuestring);
    if (i < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.%s: no option named '%s'",
                          dr_router_stage_label(stage), key, v->valuestring);
    *out = i;
    return DYNRAG_OK;
}

#endif
