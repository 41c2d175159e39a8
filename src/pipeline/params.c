/*
 * params.c - option params resolved once at load into typed values with
 * explicit presence (dr_param_value), read by the engine, the server and
 * the routers without any default of their own: the defaults live only in
 * the schema table (schema.c).
 */
#include "pipeline/internal.h"
#include "core/alloc.h"

#include "dynrag/index.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dr_option_resolve(dr_option *o, dr_stage_id stage, const dr_ynode *params_node)
{
    char owner[64];
    snprintf(owner, sizeof owner, "%s.%s", dr_stage_name(stage), o->kind ? o->kind : "");
    size_t n = 0;
    for (size_t i = 0; i < dr_n_param_rows; i++)
        n += strcmp(dr_param_rows[i].owner, owner) == 0;
    dr_free(o->values);
    o->values = NULL;
    o->n_values = 0;
    if (n == 0)
        return DYNRAG_OK;
    o->values = dr_calloc(n, sizeof *o->values);
    if (o->values == NULL)
        return DYNRAG_ERR_NOMEM;
    for (size_t i = 0; i < dr_n_param_rows; i++) {
        const dr_param_row *row = &dr_param_rows[i];
        if (strcmp(row->owner, owner) != 0)
            continue;
        dr_param_value *v = &o->values[o->n_values++];
        v->key = row->key;
        v->present = params_node != NULL && dr_ymap_get(params_node, row->key) != NULL;
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o->params, row->key);
        switch (row->type) {
        case DR_PT_INT:
        case DR_PT_NUM:
            v->type = DR_PV_NUM;
            v->set = cJSON_IsNumber(j);
            v->num = v->set ? j->valuedouble : NAN;
            break;
        case DR_PT_BOOL:
            v->type = DR_PV_BOOL;
            v->set = cJSON_IsBool(j);
            v->flag = cJSON_IsTrue(j);
            break;
        case DR_PT_STR:
        case DR_PT_ENUM:
        case DR_PT_OPTION:
        case DR_PT_PATH:
        case DR_PT_FILE:
        case DR_PT_TEMPLATE:
        case DR_PT_TEMPLATE_FILE:
        case DR_PT_REGEX:
        case DR_PT_EXAMPLES_FILE:
            v->type = DR_PV_STR;
            v->set = cJSON_IsString(j);
            v->str = v->set ? j->valuestring : NULL;
            break;
        default:
            v->type = DR_PV_OTHER;
            v->set = j != NULL;
            break;
        }
        /* a value not in the file comes from the table, never from elsewhere */
        v->present = v->present && v->set;
    }
    return DYNRAG_OK;
}

const dr_param_value *dr_option_param(const dr_option *o, const char *key)
{
    for (size_t i = 0; o != NULL && i < o->n_values; i++)
        if (strcmp(o->values[i].key, key) == 0)
            return &o->values[i];
    return NULL;
}

double dr_opt_num(const dr_option *o, const char *key)
{
    const dr_param_value *v = dr_option_param(o, key);
    return v != NULL && v->set && v->type == DR_PV_NUM ? v->num : NAN;
}

int dr_opt_int(const dr_option *o, const char *key)
{
    double d = dr_opt_num(o, key);
    return d >= -2147483648.0 && d <= 2147483647.0 ? (int)d : 0;
}

bool dr_opt_bool(const dr_option *o, const char *key)
{
    const dr_param_value *v = dr_option_param(o, key);
    return v != NULL && v->set && v->type == DR_PV_BOOL && v->flag;
}

const char *dr_opt_str(const dr_option *o, const char *key)
{
    const dr_param_value *v = dr_option_param(o, key);
    return v != NULL && v->set && v->type == DR_PV_STR ? v->str : NULL;
}

bool dr_opt_given(const dr_option *o, const char *key)
{
    const dr_param_value *v = dr_option_param(o, key);
    return v != NULL && v->present;
}

void dr_option_search_options(const dr_option *o, dynrag_search_options *so)
{
    /* Only the keys the option's kind has: a bm25 option has no rrf_k, a
     * dense one no k1; the others keep what so holds (the caller's
     * dynrag_search_options_init() defaults). */
    const dr_param_value *v;
    if ((v = dr_option_param(o, "k1")) != NULL && v->set)
        so->k1 = v->num;
    if ((v = dr_option_param(o, "b")) != NULL && v->set)
        so->b = v->num;
    if ((v = dr_option_param(o, "rrf_k")) != NULL && v->set)
        so->rrf_k = v->num;
    if ((v = dr_option_param(o, "w_bm25")) != NULL && v->set)
        so->w_bm25 = v->num;
    if ((v = dr_option_param(o, "w_dense")) != NULL && v->set)
        so->w_dense = v->num;
    if ((v = dr_option_param(o, "depth")) != NULL && v->set)
        so->depth = (int)v->num;
    if ((v = dr_option_param(o, "nprobe")) != NULL && v->set)
        so->nprobe = (int)v->num;
}
