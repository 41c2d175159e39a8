/*
 * retrieve/embedders.h - making the embedder an index names (internal).
 */
#ifndef DYNRAG_RETRIEVE_EMBEDDERS_H
#define DYNRAG_RETRIEVE_EMBEDDERS_H

#include "dynrag/index.h"
#include "embed/embedder.h"

/* Creates the embedder of a public config (NULL or kind NULL = builtin).
 * default_dim is used when cfg->dim is 0 (0 = the builtin default).
 * "openai" is not built into this branch yet and fails with
 * DYNRAG_ERR_UNSUPPORTED (MERGE: call dr_embedder_openai_create() here).
 * Unknown kinds fail with DYNRAG_ERR_INVALID. */
int dr_index_embedder_create(const dynrag_embedder_config *cfg, int default_dim,
                             dr_embedder **out, dynrag_error *err);

#endif
