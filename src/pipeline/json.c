/* json.c - the resolved pipeline as JSON (`dynrag show`). API keys are
 * never part of it: an endpoint names only the variable that holds its key. */
#include "pipeline/internal.h"

#include <math.h>
#include <stdlib.h>

/* Adds a number, or null when it is not finite (an unset budget). */
static bool add_num(cJSON *obj, const char *key, double x)
{
    if (isfinite(x))
        return cJSON_AddNumberToObject(obj, key, x) != NULL;
    return cJSON_AddNullToObject(obj, key) != NULL;
}

static bool add_str_or_null(cJSON *obj, const char *key, const char *s)
{
    if (s)
        return cJSON_AddStringToObject(obj, key, s) != NULL;
    return cJSON_AddNullToObject(obj, key) != NULL;
}

static bool add_dup(cJSON *obj, const char *key, const cJSON *src)
{
    cJSON *d = src ? cJSON_Duplicate(src, true) : cJSON_CreateObject();
    if (d == NULL)
        return false;
    if (!cJSON_AddItemToObject(obj, key, d)) { /* the key's copy failed */
        cJSON_Delete(d);
        return false;
    }
    return true;
}

static bool stage_json(cJSON *stages, const dr_stage *st)
{
    cJSON *s = cJSON_AddObjectToObject(stages, dr_stage_name(st->id));
    if (s == NULL || cJSON_AddBoolToObject(s, "declared", st->declared) == NULL)
        return false;
    cJSON *opts = cJSON_AddArrayToObject(s, "options");
    if (opts == NULL)
        return false;
    for (size_t i = 0; i < st->n_options; i++) {
        const dr_option *o = &st->options[i];
        cJSON *oj = cJSON_CreateObject();
        if (oj == NULL)
            return false;
        cJSON_AddItemToArray(opts, oj);
        cJSON *cost;
        if (!add_str_or_null(oj, "name", o->name) || !add_str_or_null(oj, "kind", o->kind) ||
            (o->description != NULL && !add_str_or_null(oj, "description", o->description)) ||
            !add_dup(oj, "params", o->params) ||
            !add_str_or_null(oj, "endpoint", o->endpoint ? o->endpoint->name : NULL) ||
            cJSON_AddBoolToObject(oj, "available", o->available) == NULL ||
            (cost = cJSON_AddObjectToObject(oj, "cost")) == NULL ||
            !add_num(cost, "usd_per_1k_input", o->cost.usd_per_1k_input) ||
            !add_num(cost, "usd_per_1k_output", o->cost.usd_per_1k_output) ||
            !add_num(cost, "latency_ms", o->cost.latency_ms) ||
            !add_num(cost, "energy_wh", o->cost.energy_wh) ||
            !add_num(oj, "quality", o->quality))
            return false;
    }
    cJSON *r = cJSON_AddObjectToObject(s, "router");
    if (r == NULL || !add_str_or_null(r, "type", st->router.type) ||
        !add_dup(r, "params", st->router.params))
        return false;
    return add_str_or_null(s, "fallback",
                           st->fallback >= 0 ? st->options[st->fallback].name : NULL);
}

/* Builds the JSON tree of p; NULL on allocation failure. */
static cJSON *pipeline_json(const dynrag_pipeline *p)
{
    cJSON *root = cJSON_CreateObject();
    if (root == NULL)
        return NULL;
    cJSON *budget, *eps, *stages;
    if (cJSON_AddNumberToObject(root, "version", 1) == NULL ||
        !add_str_or_null(root, "name", p->name) ||
        !add_str_or_null(root, "description", p->description) ||
        !add_str_or_null(root, "path", p->path) ||
        !add_str_or_null(root, "base_dir", p->base_dir) ||
        !add_str_or_null(root, "index", p->index_dir) ||
        !add_str_or_null(root, "log", p->log_path) ||
        (budget = cJSON_AddObjectToObject(root, "budget")) == NULL ||
        !add_num(budget, "usd", p->budget.usd) ||
        !add_num(budget, "latency_ms", p->budget.latency_ms) ||
        !add_num(budget, "energy_wh", p->budget.energy_wh) ||
        (eps = cJSON_AddObjectToObject(root, "endpoints")) == NULL)
        goto fail;
    for (size_t i = 0; i < p->n_endpoints; i++) {
        const dr_endpoint *e = &p->endpoints[i];
        cJSON *ej = cJSON_AddObjectToObject(eps, e->name);
        if (ej == NULL || !add_str_or_null(ej, "base_url", e->base_url) ||
            !add_str_or_null(ej, "model", e->model) ||
            !add_str_or_null(ej, "api_key_env", e->api_key_env) ||
            !add_num(ej, "timeout_s", e->timeout_s) ||
            cJSON_AddNumberToObject(ej, "max_retries", e->max_retries) == NULL ||
            cJSON_AddBoolToObject(ej, "configured", e->configured) == NULL)
            goto fail;
    }
    stages = cJSON_AddObjectToObject(root, "stages");
    if (stages == NULL)
        goto fail;
    for (int i = 0; i < DR_STAGE_COUNT; i++)
        if (!stage_json(stages, &p->stages[i]))
            goto fail;
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

char *dynrag_pipeline_to_json(const dynrag_pipeline *p)
{
    if (p == NULL)
        return NULL;
    cJSON *root = pipeline_json(p);
    if (root == NULL)
        return NULL;
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}
