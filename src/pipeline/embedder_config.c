/* embedder_config.c - a pipeline's embedder option as an index's embedder configuration. */
#include "core/util.h"
#include "pipeline/spec.h"

#include <stdlib.h>
#include <string.h>

int dynrag_pipeline_embedder(const dynrag_pipeline *p, const char *option,
                             dynrag_embedder_config *out, dynrag_error *err)
{
    memset(out, 0, sizeof(*out));
    const dr_stage *st = &p->stages[DR_STAGE_EMBEDDER];
    int oi = -1;
    if (option) {
        oi = dr_stage_find_option(st, option);
        if (oi < 0)
            return dr_err_set(err, DYNRAG_ERR_NOTFOUND, "%s: stages.embedder has no option '%s'",
                              p->path, option);
    } else {
        for (size_t i = 0; i < st->n_options && oi < 0; i++)
            if (st->options[i].available)
                oi = (int)i;
        if (oi < 0)
            return dr_err_set(err, DYNRAG_ERR_STATE,
                              "%s: no embedder option is available (endpoints not configured)",
                              p->path);
    }
    const dr_option *o = &st->options[oi];
    if (!o->available)
        return dr_err_set(err, DYNRAG_ERR_STATE,
                          "%s: stages.embedder option '%s': endpoint '%s' is not configured",
                          p->path, o->name, o->endpoint ? o->endpoint->name : "?");
    out->kind = o->kind;
    out->dim = dr_opt_int(o, "dim");
    if (o->endpoint) {
        out->base_url = o->endpoint->base_url;
        out->model = o->endpoint->model;
        out->api_key = o->endpoint->api_key_env ? getenv(o->endpoint->api_key_env) : NULL;
        out->timeout_s = o->endpoint->timeout_s;
        out->max_retries = o->endpoint->max_retries;
        out->batch_size = dr_opt_int(o, "batch_size");
    }
    return DYNRAG_OK;
}

size_t dynrag_pipeline_n_embedders(const dynrag_pipeline *p)
{
    return p->stages[DR_STAGE_EMBEDDER].n_options;
}

const char *dynrag_pipeline_embedder_name(const dynrag_pipeline *p, size_t i)
{
    const dr_stage *st = &p->stages[DR_STAGE_EMBEDDER];
    return i < st->n_options ? st->options[i].name : NULL;
}

char *dynrag_pipeline_embedder_index_dir(const dynrag_pipeline *p, const char *index_dir,
                                         const char *option)
{
    const dr_stage *st = &p->stages[DR_STAGE_EMBEDDER];
    int oi = dr_stage_find_option(st, option);
    if (oi < 0 || index_dir == NULL)
        return NULL;
    int first = -1;
    for (size_t i = 0; i < st->n_options && first < 0; i++)
        if (st->options[i].available)
            first = (int)i;
    if (oi == first || first < 0)
        return dr_strdup(index_dir);
    return dr_asprintf("%s/embedders/%s", index_dir, option);
}
