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

#include <stdbool.h>
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

/* A per-query budget. A field that is NAN is not set; INFINITY is
 * unbounded; negative values are rejected (DYNRAG_ERR_INVALID). */
typedef struct dynrag_budget {
    double usd;
    double latency_ms;
    double energy_wh;
} dynrag_budget;

/* ---- introspection ---------------------------------------------------------- */

/*
 * What a loaded pipeline holds, for programs that inspect or serve it: its
 * stages in run order, each stage's router and options, its endpoints and
 * budget. Every string is owned by the pipeline and lives as long as it;
 * params come as JSON text (defaults filled in) that the caller frees with
 * dynrag_free(). A stage is named as in the YAML ("retrieval_mode",
 * "embedder", "index", "context", "prompt", "generator"); an unknown stage
 * or an option index out of range fails with DYNRAG_ERR_NOTFOUND.
 */

/* Number of stages (6), and the name of stage i in run order (NULL past
 * the last). */
#define DYNRAG_N_STAGES 6
DYNRAG_API const char *dynrag_stage_name(size_t i);

typedef struct dynrag_stage_info {
    const char *name;     /* the stage's name */
    bool declared;        /* in the file; false: absent, holding the built-in default option */
    size_t n_options;     /* >= 1 */
    const char *router;   /* router type: "fixed", "rules", "classifier", "bandit", ... */
    const char *fallback; /* the `fallback:` option's name, or NULL */
    int line;             /* line where the stage's mapping starts (0 when not declared) */
    int router_line;      /* line and column of the stage's `router:` (0 when it has none */
    int router_col;       /* in the file) */
} dynrag_stage_info;

DYNRAG_API int dynrag_pipeline_stage(const dynrag_pipeline *p, const char *stage,
                                     dynrag_stage_info *out, dynrag_error *err);

typedef struct dynrag_option_info {
    const char *name;        /* unique within its stage */
    const char *kind;        /* implementation: "bm25", "openai", "multi", ... */
    const char *description; /* free text, or NULL */
    const char *endpoint;    /* the `endpoint:` it uses, or NULL */
    bool available;          /* false when that endpoint is not configured */
    double usd_per_1k_input, usd_per_1k_output; /* declared `cost:` (0 when not declared) */
    double latency_ms, energy_wh;
    double quality;          /* declared expected quality in [0, 1]; NAN when not declared */
    int line;                /* line of the option in the file (0 for a built-in default) */
} dynrag_option_info;

/* Option i (in the stage's listed order) of a stage. */
DYNRAG_API int dynrag_pipeline_option(const dynrag_pipeline *p, const char *stage, size_t i,
                                      dynrag_option_info *out, dynrag_error *err);
/* The index of the stage's option called name, or -1. */
DYNRAG_API int dynrag_pipeline_find_option(const dynrag_pipeline *p, const char *stage,
                                           const char *name);
/* The stage's router params / option i's params as compact JSON (defaults
 * filled in). Caller frees with dynrag_free(); NULL for an unknown stage or
 * option, or when out of memory. */
DYNRAG_API char *dynrag_pipeline_router_params(const dynrag_pipeline *p, const char *stage);
DYNRAG_API char *dynrag_pipeline_option_params(const dynrag_pipeline *p, const char *stage,
                                               size_t i);

/* The pipeline's `budget:` (INFINITY, unbounded, where it sets none). */
DYNRAG_API void dynrag_pipeline_budget(const dynrag_pipeline *p, dynrag_budget *out);

typedef struct dynrag_endpoint_info {
    const char *name;
    const char *base_url;    /* after ${VAR} expansion; "" when not configured */
    const char *model;       /* "" when not configured */
    const char *api_key_env; /* the environment variable holding the key, or NULL (never
                                the key itself) */
    double timeout_s;
    int max_retries;
    bool configured;         /* base_url and model both set */
} dynrag_endpoint_info;

DYNRAG_API size_t dynrag_pipeline_n_endpoints(const dynrag_pipeline *p);
/* Endpoint i, in the file's order. */
DYNRAG_API int dynrag_pipeline_endpoint(const dynrag_pipeline *p, size_t i,
                                        dynrag_endpoint_info *out, dynrag_error *err);

/* The search options an index-stage option stands for (the mode of its
 * kind, and its resolved k1, b, rrf_k, w_bm25, w_dense, depth and nprobe
 * where its kind has them; a configured 0 stays 0), starting from
 * dynrag_search_options_init(): what the engine searches with when it
 * routes to that option. option NULL: the stage's first option. */
DYNRAG_API int dynrag_pipeline_search_options(const dynrag_pipeline *p, const char *option,
                                              dynrag_search_options *out, dynrag_error *err);

#ifdef __cplusplus
}
#endif
#endif
