/*
 * pipeline/spec.h - the in-memory form of a validated pipeline (internal).
 *
 * The loader (pipeline/loader.c) turns a YAML file into this structure and
 * validates every field against the schema in pipeline/schema.c, filling in
 * defaults, so consumers (engine, routers, server) read fields and option
 * params without re-validating. All strings and cJSON objects are owned by
 * the dynrag_pipeline and freed by dynrag_pipeline_free().
 */
#ifndef DYNRAG_PIPELINE_SPEC_H
#define DYNRAG_PIPELINE_SPEC_H

#include "dynrag/pipeline.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* The stages, in the fixed order the engine runs them. */
typedef enum dr_stage_id {
    DR_STAGE_RETRIEVAL_MODE = 0,
    DR_STAGE_EMBEDDER,
    DR_STAGE_INDEX,
    DR_STAGE_CONTEXT,
    DR_STAGE_PROMPT,
    DR_STAGE_GENERATOR,
    DR_STAGE_COUNT
} dr_stage_id;

/* The YAML name of a stage, e.g. "retrieval_mode". Static. */
const char *dr_stage_name(dr_stage_id id);
/* The stage with that YAML name, or -1. */
int dr_stage_from_name(const char *name);

#define DR_MAX_OPTIONS DYNRAG_MAX_OPTIONS /* dynrag/common.h */

/* An OpenAI-compatible endpoint, declared once under `endpoints:`. */
typedef struct dr_endpoint {
    char *name;
    char *base_url;    /* after ${VAR} expansion; "" when not configured */
    char *model;       /* "" when not configured */
    char *api_key_env; /* name of the environment variable with the key, or NULL */
    double timeout_s;  /* per request; default 60 */
    int max_retries;   /* default 3 */
    bool configured;   /* base_url and model are both non-empty */
    int line, col;
} dr_endpoint;

/* What running an option is expected to cost (declared in YAML). */
typedef struct dr_cost_spec {
    double usd_per_1k_input;  /* $ per 1k input (prompt) tokens */
    double usd_per_1k_output; /* $ per 1k output tokens */
    double latency_ms;        /* expected latency of one run */
    double energy_wh;         /* expected energy of one run */
} dr_cost_spec;

/* The type of a resolved option parameter. */
typedef enum dr_pv_type {
    DR_PV_NUM,  /* numbers and integers */
    DR_PV_BOOL,
    DR_PV_STR,  /* strings, enums, paths, templates */
    DR_PV_OTHER /* lists and mappings: read params */
} dr_pv_type;

/*
 * One parameter of an option, resolved once at load for every row of its
 * kind in the schema table (pipeline/schema.c, the one table of defaults):
 * `present` tells whether the pipeline file gave it, so 0 is a value like
 * any other, never "use the default"; `set` whether it has a value at all
 * (given, or the row's default).
 */
typedef struct dr_param_value {
    const char *key; /* the schema row's key (static) */
    dr_pv_type type;
    bool present;    /* given in the pipeline file */
    bool set;        /* given or defaulted: the value below is meaningful */
    double num;      /* DR_PV_NUM */
    bool flag;       /* DR_PV_BOOL */
    const char *str; /* DR_PV_STR, borrowed from the option's params */
} dr_param_value;

typedef struct dr_option {
    char *name;                  /* unique within its stage */
    char *kind;                  /* the implementation, e.g. "bm25", "openai" */
    char *description;           /* free text (the llm router shows it to its LLM), or NULL */
    cJSON *params;               /* validated object with defaults filled in; never NULL */
    const dr_endpoint *endpoint; /* resolved `endpoint:` reference, or NULL */
    dr_cost_spec cost;
    double quality;              /* expected quality in [0, 1]; NAN when not declared */
    bool available;              /* false when its endpoint is not configured */
    dr_param_value *values;      /* every param of its kind, typed (dr_option_param) */
    size_t n_values;
    int line, col;
} dr_option;

typedef struct dr_router_spec {
    char *type;    /* fixed | rules | classifier | knn | cost | bandit | cascade */
    cJSON *params; /* validated object with defaults filled in; never NULL */
    int line, col;
} dr_router_spec;

typedef struct dr_stage {
    dr_stage_id id;
    bool declared;      /* false: absent from the file, filled with the default option */
    dr_option *options; /* n_options >= 1 */
    size_t n_options;
    dr_router_spec router; /* a stage without `router:` gets type "fixed" on option 0 */
    int fallback;          /* index of the `fallback:` option, or -1 */
    int line, col;
} dr_stage;

/* Per-query budget; a field is INFINITY when not set. */
typedef struct dr_budget {
    double usd;
    double latency_ms;
    double energy_wh;
} dr_budget;

struct dynrag_pipeline {
    char *path;        /* the file it was loaded from ("<string>" for in-memory) */
    char *base_dir;    /* folder of `path`: relative paths in the file resolve here */
    char *name;
    char *description; /* may be NULL */
    char *index_dir;   /* resolved path, or NULL when the file names none */
    char *log_path;    /* resolved route-log path, or NULL */
    dr_budget budget;
    dr_endpoint *endpoints;
    size_t n_endpoints;
    dr_stage stages[DR_STAGE_COUNT];
};

/* Index of the option named `name` in a stage, or -1. */
int dr_stage_find_option(const dr_stage *stage, const char *name);

/* Resolves a path relative to the pipeline file's folder (absolute paths
 * are returned as they are). Caller frees. NULL on allocation failure. */
char *dr_pipeline_resolve_path(const dynrag_pipeline *p, const char *path);

/*
 * The resolved parameter `key` of an option (see dr_param_value), or NULL
 * when its kind has no such parameter. The dr_opt_* reads return its value
 * (given, else the schema default): dr_opt_num NAN, dr_opt_int 0,
 * dr_opt_bool false and dr_opt_str NULL when it has none; dr_opt_given
 * whether the pipeline file gave it.
 */
const dr_param_value *dr_option_param(const dr_option *o, const char *key);
double dr_opt_num(const dr_option *o, const char *key);
int dr_opt_int(const dr_option *o, const char *key);
bool dr_opt_bool(const dr_option *o, const char *key);
const char *dr_opt_str(const dr_option *o, const char *key);
bool dr_opt_given(const dr_option *o, const char *key);

struct dynrag_search_options;
/* Fills the BM25, hybrid and IVF fields of *so from an index-stage option's
 * resolved params (mode and k are left as they are); the BM25 k1 and b are
 * marked given, so a configured 0 stays 0. */
void dr_option_search_options(const dr_option *index_option, struct dynrag_search_options *so);

/* Typed reads of validated params (the schema guarantees type and range;
 * the default is returned only when the key is absent). */
double dr_param_num(const cJSON *params, const char *key, double dflt);
int dr_param_int(const cJSON *params, const char *key, int dflt);
bool dr_param_bool(const cJSON *params, const char *key, bool dflt);
const char *dr_param_str(const cJSON *params, const char *key, const char *dflt);

#endif
