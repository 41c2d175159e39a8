/*
 * pipeline/internal.h - pieces shared by the pipeline loader's files
 * (internal to src/pipeline/ and its tests).
 *
 *   yaml.c    turns YAML text into a small tree (dr_ynode) with line/column
 *             marks, rejecting aliases, tags, deep nesting and huge trees;
 *   expand.c  ${VAR} / ${VAR:-default} / $$ expansion of scalar values;
 *   diags.c   the diagnostics list (dynrag_diags);
 *   schema.c  the one table of kinds, routers and params, and the generic
 *             validator that turns a mapping into a cJSON params object;
 *   loader.c  the top-level walk that builds the dynrag_pipeline.
 */
#ifndef DYNRAG_PIPELINE_INTERNAL_H
#define DYNRAG_PIPELINE_INTERNAL_H

#include "core/util.h"
#include "pipeline/spec.h"

#include <stdbool.h>
#include <stddef.h>

#define DR_PIPELINE_MAX_BYTES ((size_t)1 << 20) /* 1 MiB */
#define DR_YAML_MAX_DEPTH 64
#define DR_YAML_MAX_NODES 100000
#define DR_DIAGS_MAX 200 /* further errors are summarised in one line */

/* ---- diagnostics ------------------------------------------------------- */

/* An empty list for `file` (copied). NULL on allocation failure. */
dynrag_diags *dr_diags_new(const char *file);
/* Appends one diagnostic; allocation failures and the DR_DIAGS_MAX cap drop
 * it silently (the cap adds one "too many errors" line). */
void dr_diags_add(dynrag_diags *d, int line, int col, const char *path, const char *fmt, ...)
    DR_PRINTF(5, 6);
/* Sorts the list by position (stable), as dynrag_diags_get promises. */
void dr_diags_sort(dynrag_diags *d);

/* snprintf for key paths and names, which may be truncated silently. */
void dr_pathf(char *out, size_t size, const char *fmt, ...) DR_PRINTF(3, 4);

/* ---- the YAML tree ------------------------------------------------------ */

typedef enum dr_ynode_type { DR_YN_SCALAR = 0, DR_YN_MAP, DR_YN_SEQ } dr_ynode_type;

typedef struct dr_ynode dr_ynode;
struct dr_ynode {
    dr_ynode_type type;
    int line, col;    /* 1-based start mark */
    char *raw;        /* scalar text as written (escapes decoded), NUL-free */
    char *value;      /* scalar text after ${VAR} expansion (may equal raw) */
    bool plain;       /* plain style (may be a number, bool or null) */
    bool force_str;   /* explicit !!str tag */
    bool bad;         /* already reported (e.g. failed ${VAR} expansion): skip */
    dr_ynode **kids;  /* SEQ: items; MAP: key, value, key, value, ... */
    size_t n, cap;
};

/* Parses text[0..len) into one document's tree. Every problem is added to
 * d (syntax errors with libyaml's position). Returns DYNRAG_OK and *root
 * (free with dr_ynode_free; NULL for an empty document), DYNRAG_ERR_PARSE
 * when the text is not a usable single document, DYNRAG_ERR_NOMEM. */
int dr_yaml_parse(const char *text, size_t len, dynrag_diags *d, dr_ynode **root);
void dr_ynode_free(dr_ynode *n);

/* Scalar typing (after expansion; nulls by the text as written). */
bool dr_ynode_is_null(const dr_ynode *n);
/* Integer / number / bool reading of a plain scalar; false when it is not one. */
bool dr_ynode_int(const dr_ynode *n, long long *out);
bool dr_ynode_num(const dr_ynode *n, double *out);
bool dr_ynode_bool(const dr_ynode *n, bool *out);
/* "string 'abc'", "integer 5", "mapping", "list", "null", ... into buf. */
const char *dr_ynode_describe(const dr_ynode *n, char *buf, size_t size);
/* The value of `key` in a mapping (first occurrence), or NULL. */
const dr_ynode *dr_ymap_get(const dr_ynode *map, const char *key);

/* ---- ${VAR} expansion ---------------------------------------------------- */

/* Expands ${VAR}, ${VAR:-default} and $$ in s. Returns a new string the
 * caller frees, or NULL with a message in msg (undefined variable, malformed
 * ${...}) or on allocation failure (msg "out of memory"). */
char *dr_env_expand(const char *s, char *msg, size_t msg_size);

/* ---- schema ---------------------------------------------------------------- */

typedef enum dr_ptype {
    DR_PT_INT,          /* integer in [min, max] */
    DR_PT_NUM,          /* finite number in [min, max] */
    DR_PT_BOOL,
    DR_PT_STR,          /* any scalar, kept as text */
    DR_PT_ENUM,         /* one of `extra` ("a|b|c") */
    DR_PT_OPTION,       /* names an option of the current stage */
    DR_PT_PATH,         /* relative to the YAML folder; resolved; need not exist */
    DR_PT_FILE,         /* like PATH, and must be an existing readable file */
    DR_PT_TEMPLATE,     /* prompt template text; placeholders checked */
    DR_PT_TEMPLATE_FILE,/* file (< 1 MiB, UTF-8) holding a template; checked */
    DR_PT_REGEX,        /* POSIX ERE, compiled with REG_EXTENDED|REG_ICASE|REG_NOSUB */
    DR_PT_STR_LIST,     /* list of strings, [min, max] items */
    DR_PT_OBJECT_LIST,  /* list of mappings validated as owner `extra` */
    DR_PT_OBJECT,       /* mapping validated as owner `extra` */
    DR_PT_OPTION_MAP,   /* mapping of string -> option name, >= min entries */
    DR_PT_EXAMPLES_FILE /* JSONL file of {"query": str, "option": option-name} */
} dr_ptype;

#define DR_PF_REQUIRED 1u

/* One row of the params schema: `owner` is "<stage>.<kind>" for option
 * params, "router.<type>" for router params, or a nested object name
 * ("rules.rule", "rules.when", "knn.example", "endpoint", "budget", "cost"). */
typedef struct dr_param_row {
    const char *owner;
    const char *key;
    dr_ptype type;
    double min, max;
    const char *dflt; /* default as text ("10", "0.9", "false", "ucb1"); NULL: none */
    unsigned flags;
    const char *extra; /* ENUM choices or nested owner */
} dr_param_row;

/*
 * Resolves option o's params (already validated into o->params, defaults
 * filled) into o->values: one typed value per schema row of owner
 * "<stage>.<kind>", present when params_node (the YAML `params:` mapping,
 * may be NULL) gives the key. DYNRAG_ERR_NOMEM on allocation failure.
 */
int dr_option_resolve(dr_option *o, dr_stage_id stage, const dr_ynode *params_node);

typedef struct dr_kind_row {
    dr_stage_id stage;
    const char *kind;
    bool endpoint_required;
} dr_kind_row;

typedef struct dr_router_row {
    const char *type;
    unsigned stage_mask; /* bit (1u << stage id) for each stage allowed */
} dr_router_row;

extern const dr_param_row dr_param_rows[];
extern const size_t dr_n_param_rows;
extern const dr_kind_row dr_kind_rows[];
extern const size_t dr_n_kind_rows;
extern const dr_router_row dr_router_rows[];
extern const size_t dr_n_router_rows;

const dr_kind_row *dr_schema_kind(dr_stage_id stage, const char *kind);
const dr_router_row *dr_schema_router(const char *type);

/* The rule that a router's params break through `key` beyond its schema
 * row's range (e.g. a bandit's sla_ms must be > 0, sla_penalty needs
 * sla_ms), or NULL when none: shared by the YAML check and
 * dynrag_pipeline_set_router_param. */
const char *dr_router_param_conflict(const char *type, const cJSON *params, const char *key);
/* Suggestion among candidates[0..n) for a misspelt word, or NULL. */
const char *dr_suggest(const char *word, const char *const *candidates, size_t n);
/* " (did you mean 'x'?)" into buf when dr_suggest() finds x, else "". Returns buf. */
const char *dr_did_you_mean(char *buf, size_t size, const char *word, const char *const *cands,
                            size_t n);
/* The key path "base.key" ("key" when base is "") into out (truncated). */
void dr_path_join(char *out, size_t size, const char *base, const char *key);

/* What the validator needs besides the node. */
typedef struct dr_vctx {
    dynrag_diags *diags;
    const dynrag_pipeline *p; /* for base_dir */
    const dr_stage *stage;    /* option names for DR_PT_OPTION; may be NULL */
    bool nomem;               /* an allocation failed somewhere */
} dr_vctx;

/* Validates `node` (a mapping, or NULL when absent: then only defaults) as
 * the params of `owner`, reporting every problem under `path`. Returns a new
 * cJSON object with the given values and the defaults filled in (NULL only
 * on allocation failure); it may be partial when errors were reported. */
cJSON *dr_schema_validate(dr_vctx *v, const char *owner, const dr_ynode *node, int line,
                          int col, const char *path);

/* Cross-field checks of one stage once its options and router are known
 * (endpoint required by kind, prompt template/file, knn examples, cost
 * router quality, cascade stages). */
void dr_schema_check_stage(dr_vctx *v, const dr_stage *stage, const char *path,
                           const dr_ynode *stage_node);

/* Checks a template's placeholders; on the first problem writes a message
 * to msg and returns false. */
bool dr_template_check(const char *tmpl, char *msg, size_t msg_size);

#endif
