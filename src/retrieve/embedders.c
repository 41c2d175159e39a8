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
    if (strcmp(kind, "openai") == 0)
        /* MERGE: the openai embedder lives on the `net` branch; once merged
         * this becomes dr_embedder_openai_create() with cfg copied into a
         * dr_embedder_config. */
        return dr_err_set(err, DYNRAG_ERR_UNSUPPORTED,
                          "embedder 'openai' is not built into this version");
    return dr_err_set(err, DYNRAG_ERR_INVALID, "unknown embedder kind '%s' (builtin or openai)",
                      kind);
}
