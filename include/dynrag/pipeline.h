/*
 * dynrag/pipeline.h - loading and validating YAML pipeline specs.
 *
 * A pipeline file names the pipeline and its index, declares endpoints, and
 * lists the stages in their fixed order (retrieval_mode, embedder, index,
 * context, prompt, generator), each with options and one router. The full
 * reference is docs/pipeline-yaml.md.
 */
#ifndef DYNRAG_PIPELINE_H
#define DYNRAG_PIPELINE_H

#include "dynrag/common.h"
#include "dynrag/index.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dynrag_pipeline dynrag_pipeline;

/* The diagnostics of one load: every error found, in file order. */
typedef struct dynrag_diag {
    const char *file;    /* as given to the loader */
    int line, col;       /* 1-based; 0 when not tied to a position */
    const char *path;    /* key path, e.g. "stages.index.router.type"; "" for the document */
    const char *message; /* e.g. "unknown router 'clasifier' (did you mean 'classifier'?)" */
} dynrag_diag;

typedef struct dynrag_diags dynrag_diags;

DYNRAG_API size_t dynrag_diags_count(const dynrag_diags *d);
/* The i-th diagnostic; the strings are owned by d. */
DYNRAG_API const dynrag_diag *dynrag_diags_get(const dynrag_diags *d, size_t i);
/* All diagnostics as "file:line:col: path: message\n" lines. Caller frees. */
DYNRAG_API char *dynrag_diags_format(const dynrag_diags *d);
DYNRAG_API void dynrag_diags_free(dynrag_diags *d);

/* Loads and validates a pipeline file. On success *out is set (free with
 * dynrag_pipeline_free). On invalid input returns DYNRAG_ERR_PARSE and, when
 * diags is non-NULL, *diags lists every error (free with dynrag_diags_free;
 * it may also be set on success, empty). Files above 1 MiB fail with
 * DYNRAG_ERR_LIMIT. */
DYNRAG_API int dynrag_pipeline_load(const char *path, dynrag_pipeline **out, dynrag_diags **diags,
                                    dynrag_error *err);

/* The same from memory: `display_name` is used in diagnostics and
 * `base_dir` resolves relative paths (NULL = current folder). */
DYNRAG_API int dynrag_pipeline_load_string(const char *text, size_t len, const char *display_name,
                                           const char *base_dir, dynrag_pipeline **out,
                                           dynrag_diags **diags, dynrag_error *err);

DYNRAG_API void dynrag_pipeline_free(dynrag_pipeline *p);

/* The resolved pipeline (defaults filled in, ${VAR} expanded, paths
 * resolved; API keys are never included, only their variable names) as
 * pretty-printed JSON. Caller frees. NULL on allocation failure. */
DYNRAG_API char *dynrag_pipeline_to_json(const dynrag_pipeline *p);

DYNRAG_API const char *dynrag_pipeline_name(const dynrag_pipeline *p);
/* The index folder the file names (resolved), or NULL. */
DYNRAG_API const char *dynrag_pipeline_index_dir(const dynrag_pipeline *p);

/* The embedder configuration of an embedder-stage option (`option` NULL:
 * the first available one), for building or opening the pipeline's index.
 * Strings point into the pipeline (and the environment, for the API key);
 * they live as long as the pipeline. DYNRAG_ERR_NOTFOUND for an unknown
 * option, DYNRAG_ERR_STATE when the option's endpoint is not configured. */
DYNRAG_API int dynrag_pipeline_embedder(const dynrag_pipeline *p, const char *option,
                                        dynrag_embedder_config *out, dynrag_error *err);

/* The embedder stage's options: how many, and the name of option i (NULL
 * when out of range; owned by the pipeline). */
DYNRAG_API size_t dynrag_pipeline_n_embedders(const dynrag_pipeline *p);
DYNRAG_API const char *dynrag_pipeline_embedder_name(const dynrag_pipeline *p, size_t i);

/*
 * Where the dense index of embedder option `option` lives inside index
 * folder `index_dir`: `index_dir` itself for the first available embedder
 * option (the one dynrag_pipeline_embedder(p, NULL) gives), else
 * `index_dir/embedders/<option>` (a complete index of the same documents
 * with that embedder's vectors; `dynrag index --pipeline` builds one per
 * embedder option). Caller frees; NULL on allocation failure or an unknown
 * option.
 */
DYNRAG_API char *dynrag_pipeline_embedder_index_dir(const dynrag_pipeline *p, const char *index_dir,
                                         const char *option);

#ifdef __cplusplus
}
#endif
#endif
