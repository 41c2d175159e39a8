/*
 * introspect.c - the public view of a loaded pipeline (dynrag/pipeline.h,
 * "introspection"): stages, options, routers, endpoints, budget and the
 * search options of index options, without the internals of spec.h.
 */
#include "core/util.h"
#include "dynrag/router.h"
#include "pipeline/internal.h"
#include "pipeline/spec.h"

#include <cjson/cJSON.h>
#include <math.h>

#include <stdio.h>
#include <string.h>

const char *dynrag_stage_name(size_t i)
{
    return i < DR_STAGE_COUNT ? dr_stage_name((dr_stage_id)i) : NULL;
}

/* The stage called name, or NULL (with err set when err is given). */
static const dr_stage *stage_of(const dynrag_pipeline *p, const char *name, dynrag_error *err)
{
    int id = name ? dr_stage_from_name(name) : -1;
    if (p == NULL || id < 0) {
        if (err)
            dr_err_set(err, p ? DYNRAG_ERR_NOTFOUND : DYNRAG_ERR_INVALID,
                       p ? "no stage '%s' (expected retrieval_mode, embedder, index, context, "
                           "prompt or generator)"
                         : "no pipeline",
                       name ? name : "(null)");
        return NULL;
    }
    return &p->stages[id];
}

int dynrag_pipeline_stage(const dynrag_pipeline *p, const char *stage, dynrag_stage_info *out,
                          dynrag_error *err)
{
    memset(out, 0, sizeof(*out));
    const dr_stage *st = stage_of(p, stage, err);
    if (st == NULL)
        return err ? err->status : DYNRAG_ERR_NOTFOUND;
    out->name = dr_stage_name(st->id);
    out->declared = st->declared;
    out->n_options = st->n_options;
    out->router = st->router.type;
    out->fallback = st->fallback >= 0 ? st->options[st->fallback].name : NULL;
    out->line = st->declared ? st->line : 0;
    out->router_line = st->declared ? st->router.line : 0;
    out->router_col = st->declared ? st->router.col : 0;
    return DYNRAG_OK;
}

int dynrag_pipeline_option(const dynrag_pipeline *p, const char *stage, size_t i,
                           dynrag_option_info *out, dynrag_error *err)
{
    memset(out, 0, sizeof(*out));
    const dr_stage *st = stage_of(p, stage, err);
    if (st == NULL)
        return err ? err->status : DYNRAG_ERR_NOTFOUND;
    if (i >= st->n_options)
        return dr_err_set(err, DYNRAG_ERR_NOTFOUND, "stages.%s has %zu options: no option %zu",
                          stage, st->n_options, i);
    const dr_option *o = &st->options[i];
    out->name = o->name;
    out->kind = o->kind;
    out->description = o->description;
    out->endpoint = o->endpoint ? o->endpoint->name : NULL;
    out->available = o->available;
    out->usd_per_1k_input = o->cost.usd_per_1k_input;
    out->usd_per_1k_output = o->cost.usd_per_1k_output;
    out->latency_ms = o->cost.latency_ms;
    out->energy_wh = o->cost.energy_wh;
    out->quality = o->quality;
    out->line = o->line;
    return DYNRAG_OK;
}

int dynrag_pipeline_find_option(const dynrag_pipeline *p, const char *stage, const char *name)
{
    const dr_stage *st = stage_of(p, stage, NULL);
    return st && name ? dr_stage_find_option(st, name) : -1;
}

char *dynrag_pipeline_router_params(const dynrag_pipeline *p, const char *stage)
{
    const dr_stage *st = stage_of(p, stage, NULL);
    return st ? cJSON_PrintUnformatted(st->router.params) : NULL;
}

char *dynrag_pipeline_option_params(const dynrag_pipeline *p, const char *stage, size_t i)
{
    const dr_stage *st = stage_of(p, stage, NULL);
    return st && i < st->n_options ? cJSON_PrintUnformatted(st->options[i].params) : NULL;
}

void dynrag_pipeline_budget(const dynrag_pipeline *p, dynrag_budget *out)
{
    out->usd = p->budget.usd;
    out->latency_ms = p->budget.latency_ms;
    out->energy_wh = p->budget.energy_wh;
}

size_t dynrag_pipeline_n_endpoints(const dynrag_pipeline *p)
{
    return p ? p->n_endpoints : 0;
}

int dynrag_pipeline_endpoint(const dynrag_pipeline *p, size_t i, dynrag_endpoint_info *out,
                             dynrag_error *err)
{
    memset(out, 0, sizeof(*out));
    if (p == NULL || i >= p->n_endpoints)
        return dr_err_set(err, DYNRAG_ERR_NOTFOUND, "no endpoint %zu (the pipeline has %zu)", i,
                          p ? p->n_endpoints : 0);
    const dr_endpoint *e = &p->endpoints[i];
    out->name = e->name;
    out->base_url = e->base_url;
    out->model = e->model;
    out->api_key_env = e->api_key_env;
    out->timeout_s = e->timeout_s;
    out->max_retries = e->max_retries;
    out->configured = e->configured;
    return DYNRAG_OK;
}

int dynrag_pipeline_search_options(const dynrag_pipeline *p, const char *option,
                                   dynrag_search_options *out, dynrag_error *err)
{
    dynrag_search_options_init(out);
    if (p == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "no pipeline");
    const dr_stage *st = &p->stages[DR_STAGE_INDEX];
    int oi = option ? dr_stage_find_option(st, option) : 0;
    if (oi < 0)
        return dr_err_set(err, DYNRAG_ERR_NOTFOUND, "%s: stages.index has no option '%s'",
                          p->path, option);
    const dr_option *o = &st->options[oi];
    int mode = dynrag_search_mode_parse(o->kind);
    if (mode < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "%s: stages.index option '%s': kind '%s' is not a search mode", p->path,
                          o->name, o->kind);
    out->mode = (dynrag_search_mode)mode;
    dr_option_search_options(o, out);
    return DYNRAG_OK;
}

int dynrag_pipeline_set_router_param(dynrag_pipeline *p, const char *stage, const char *key,
                                     double value, dynrag_error *err)
{
    const dr_stage *cst = stage_of(p, stage, err);
    if (cst == NULL)
        return err ? err->status : DYNRAG_ERR_NOTFOUND;
    dr_stage *st = &p->stages[cst->id];
    char owner[64];
    snprintf(owner, sizeof owner, "router.%s", st->router.type);
    const dr_param_row *row = NULL;
    for (size_t i = 0; key != NULL && i < dr_n_param_rows && row == NULL; i++)
        if (strcmp(dr_param_rows[i].owner, owner) == 0 && strcmp(dr_param_rows[i].key, key) == 0)
            row = &dr_param_rows[i];
    if (row == NULL || (row->type != DR_PT_NUM && row->type != DR_PT_INT))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.params.%s: a %s router has no numeric param '%s'",
                          stage, key ? key : "(null)", st->router.type, key ? key : "(null)");
    if (!isfinite(value) || value < row->min || value > row->max)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.params.%s: must be from %.10g to %.10g, got %.17g",
                          stage, key, row->min, row->max, value);
    if (row->type == DR_PT_INT && value != floor(value))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.params.%s: must be an integer, got %.17g", stage, key,
                          value);
    cJSON *params = st->router.params;
    cJSON *cur = cJSON_GetObjectItemCaseSensitive(params, key);
    if (cJSON_IsNumber(cur)) {
        double was = cur->valuedouble;
        cJSON_SetNumberValue(cur, value);
        const char *why = dr_router_param_conflict(st->router.type, params, key);
        if (why != NULL) {
            cJSON_SetNumberValue(cur, was);
            return dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.params.%s: %s, got %.17g",
                              stage, key, why, value);
        }
        return DYNRAG_OK;
    }
    cJSON *num = cJSON_CreateNumber(value);
    if (num == NULL || (cur != NULL ? !cJSON_ReplaceItemInObjectCaseSensitive(params, key, num)
                                    : !cJSON_AddItemToObject(params, key, num))) {
        cJSON_Delete(num);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    const char *why = dr_router_param_conflict(st->router.type, params, key);
    if (why != NULL) {
        cJSON_DeleteItemFromObjectCaseSensitive(params, key);
        return dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.params.%s: %s, got %.17g",
                          stage, key, why, value);
    }
    return DYNRAG_OK;
}
