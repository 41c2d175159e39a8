/* embedders.c - the embedder of an index configuration. */
#include "retrieve/embedders.h"

#include "core/util.h"
#include "embed/builtin.h"

#include <string.h>

int dr_index_embedder_create(const dynrag_embedder_config *cfg, int default_dim,
                             dr_embedder **out, dynrag_error *err)
{
    *out = NULL;
    const char *kind = cfg && cfg->kind ? cfg->kind : "builtin";
    int dim = cfg && cfg->dim ? cfg->dim : default_dim;
    if (strcmp(kind, "builtin") == 0)
        return dr_embedder_builtin_create(dim, out, err);
    if (strcmp(kind, "openai") == 0) {
        dr_embedder_config ec;
        memset(&ec, 0, sizeof(ec));
        ec.kind = "openai";
        ec.dim = dim;
        ec.base_url = cfg->base_url;
        ec.model = cfg->model;
        ec.api_key = cfg->api_key;
        ec.timeout_s = cfg->timeout_s;
        ec.max_retries = cfg->max_retries;
        ec.batch_size = cfg->batch_size;
        if (ec.base_url == NULL || ec.base_url[0] == '\0' || ec.model == NULL ||
            ec.model[0] == '\0')
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "embedder 'openai' needs base_url and model");
        return dr_embedder_openai_create(&ec, out, err);
    }
    return dr_err_set(err, DYNRAG_ERR_INVALID, "unknown embedder kind '%s' (builtin or openai)",
                      kind);
}
