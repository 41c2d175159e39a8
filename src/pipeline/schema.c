/*
 * schema.c - the one table of stage kinds, router types and their params,
 * and the generic validator that checks a YAML mapping against it.
 *
 * To add a param, add a row to dr_param_rows[]: its owner ("<stage>.<kind>"
 * for option params, "router.<type>" for router params), key, type, range,
 * default (as YAML text; NULL for none) and flags. To add a kind or router,
 * add a row to dr_kind_rows[] / dr_router_rows[] and its param rows. The
 * reference in docs/pipeline-yaml.md lists the same rows: keep them in step.
 */
#include "pipeline/internal.h"
#include "core/alloc.h"
#include "core/jsonb.h"

#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define R DR_PF_REQUIRED
#define BIG 1e12

/* clang-format off */
const dr_param_row dr_param_rows[] = {
    /* owner                    key                  type                 min    max          default         flags extra */
    {"retrieval_mode.single",  "k",                  DR_PT_INT,           1,     1000,        "10",           0, NULL},
    {"retrieval_mode.multi",   "k",                  DR_PT_INT,           1,     1000,        "10",           0, NULL},
    {"retrieval_mode.multi",   "max_steps",          DR_PT_INT,           1,     10,          "3",            0, NULL},
    {"retrieval_mode.adaptive", "k",                 DR_PT_INT,           1,     1000,        "10",           0, NULL},
    {"retrieval_mode.adaptive", "max_steps",         DR_PT_INT,           1,     10,          "3",            0, NULL},
    {"retrieval_mode.adaptive", "min_coverage",      DR_PT_NUM,           0,     1,           "0.9",          0, NULL},
    {"retrieval_mode.adaptive", "follow_bridge",     DR_PT_BOOL,          0,     0,           "false",        0, NULL},
    {"embedder.builtin",       "dim",                DR_PT_INT,           16,    4096,        "256",          0, NULL},
    {"embedder.openai",        "dim",                DR_PT_INT,           0,     65536,       "0",            0, NULL},
    {"embedder.openai",        "batch_size",         DR_PT_INT,           1,     2048,        "64",           0, NULL},
    {"index.bm25",             "k1",                 DR_PT_NUM,           0,     10,          "0.9",          0, NULL},
    {"index.bm25",             "b",                  DR_PT_NUM,           0,     1,           "0.4",          0, NULL},
    {"index.dense",            "nprobe",             DR_PT_INT,           0,     65536,       "0",            0, NULL},
    {"index.hybrid",           "rrf_k",              DR_PT_NUM,           1,     1000,        "60",           0, NULL},
    {"index.hybrid",           "w_bm25",             DR_PT_NUM,           0,     100,         "1",            0, NULL},
    {"index.hybrid",           "w_dense",            DR_PT_NUM,           0,     100,         "1",            0, NULL},
    {"index.hybrid",           "depth",              DR_PT_INT,           1,     10000,       "100",          0, NULL},
    {"context.topk",           "k",                  DR_PT_INT,           1,     1000,        "5",            0, NULL},
    {"context.tokens",         "max_tokens",         DR_PT_INT,           16,    1000000,     "1500",         0, NULL},
    {"context.documents",      "max_tokens",         DR_PT_INT,           16,    1000000,     "8000",         0, NULL},
    {"context.topk",           "order",              DR_PT_ENUM,          0,     0,           "rank",         0, "rank|coverage"},
    {"context.tokens",         "order",              DR_PT_ENUM,          0,     0,           "rank",         0, "rank|coverage"},
    {"context.documents",      "order",              DR_PT_ENUM,          0,     0,           "rank",         0, "rank|coverage"},
    {"prompt.template",        "template",           DR_PT_TEMPLATE,      0,     0,           NULL,           0, NULL},
    {"prompt.template",        "file",               DR_PT_TEMPLATE_FILE, 0,     0,           NULL,           0, NULL},
    {"generator.extractive",   "threshold",          DR_PT_NUM,           0,     1,           "0.25",         0, NULL},
    {"generator.extractive",   "max_sentences",      DR_PT_INT,           1,     20,          "3",            0, NULL},
    {"generator.openai",       "temperature",        DR_PT_NUM,           0,     2,           "0",            0, NULL},
    {"generator.openai",       "max_tokens",         DR_PT_INT,           1,     100000,      "256",          0, NULL},
    {"generator.openai",       "logprobs",           DR_PT_BOOL,          0,     0,           "false",        0, NULL},
    {"generator.openai",       "top_logprobs",       DR_PT_INT,           0,     20,          "0",            0, NULL},
    {"generator.openai",       "samples",            DR_PT_INT,           1,     16,          "1",            0, NULL},

    {"router.fixed",           "option",             DR_PT_OPTION,        0,     0,           NULL,           R, NULL},
    {"router.rules",           "rules",              DR_PT_OBJECT_LIST,   0,     1000,        NULL,           R, "rules.rule"},
    {"router.rules",           "default",            DR_PT_OPTION,        0,     0,           NULL,           R, NULL},
    {"rules.rule",             "when",               DR_PT_OBJECT,        0,     0,           NULL,           R, "rules.when"},
    {"rules.rule",             "option",             DR_PT_OPTION,        0,     0,           NULL,           R, NULL},
    {"rules.when",             "min_words",          DR_PT_INT,           0,     100000,      NULL,           0, NULL},
    {"rules.when",             "max_words",          DR_PT_INT,           0,     100000,      NULL,           0, NULL},
    {"rules.when",             "min_entities",       DR_PT_INT,           0,     100000,      NULL,           0, NULL},
    {"rules.when",             "max_entities",       DR_PT_INT,           0,     100000,      NULL,           0, NULL},
    {"rules.when",             "question_words",     DR_PT_STR_LIST,      1,     100,         NULL,           0, NULL},
    {"rules.when",             "has_comparison",     DR_PT_BOOL,          0,     0,           NULL,           0, NULL},
    {"rules.when",             "has_conjunction",    DR_PT_BOOL,          0,     0,           NULL,           0, NULL},
    {"rules.when",             "regex",              DR_PT_REGEX,         0,     0,           NULL,           0, NULL},
    {"router.classifier",      "model",              DR_PT_FILE,          0,     0,           NULL,           R, NULL},
    {"router.classifier",      "head",               DR_PT_STR,           0,     0,           NULL,           0, NULL},
    {"router.classifier",      "labels",             DR_PT_OPTION_MAP,    1,     0,           NULL,           R, NULL},
    {"router.classifier",      "threshold",          DR_PT_NUM,           0,     1,           "0",            0, NULL},
    {"router.classifier",      "escalate",           DR_PT_OPTION,        0,     0,           NULL,           0, NULL},
    {"router.knn",             "examples",           DR_PT_OBJECT_LIST,   1,     20000,       NULL,           0, "knn.example"},
    {"router.knn",             "examples_file",      DR_PT_EXAMPLES_FILE, 0,     0,           NULL,           0, NULL},
    {"router.knn",             "k",                  DR_PT_INT,           1,     100,         "5",            0, NULL},
    {"router.knn",             "min_similarity",     DR_PT_NUM,           -1,    1,           "0.2",          0, NULL},
    {"router.knn",             "default",            DR_PT_OPTION,        0,     0,           NULL,           R, NULL},
    {"knn.example",            "query",              DR_PT_STR,           0,     0,           NULL,           R, NULL},
    {"knn.example",            "option",             DR_PT_OPTION,        0,     0,           NULL,           R, NULL},
    {"router.cost",            "objective",          DR_PT_ENUM,          0,     0,           "max_quality",  0, "max_quality|min_cost"},
    {"router.cost",            "quality_floor",      DR_PT_NUM,           0,     1,           "0",            0, NULL},
    {"router.cost",            "quality_model",      DR_PT_FILE,          0,     0,           NULL,           0, NULL},
    {"router.cost",            "quality_head",       DR_PT_STR,           0,     0,           NULL,           0, NULL},
    {"router.cost",            "quality_labels",     DR_PT_OPTION_MAP,    1,     0,           NULL,           0, NULL},
    {"router.bandit",          "algorithm",          DR_PT_ENUM,          0,     0,           "ucb1",         0, "epsilon_greedy|ucb1|linucb"},
    {"router.bandit",          "epsilon",            DR_PT_NUM,           0,     1,           "0.1",          0, NULL},
    {"router.bandit",          "alpha",              DR_PT_NUM,           0,     10,          "1",            0, NULL},
    {"router.bandit",          "lambda",             DR_PT_NUM,           0,     1e6,         "0",            0, NULL},
    {"router.bandit",          "state",              DR_PT_PATH,          0,     0,           NULL,           0, NULL},
    {"router.bandit",          "seed",               DR_PT_INT,           0,     2147483647,  "42",           0, NULL},
    {"router.bandit",          "sla_ms",             DR_PT_NUM,           0,     BIG,         NULL,           0, NULL},
    {"router.bandit",          "sla_penalty",        DR_PT_NUM,           0,     1e6,         NULL,           0, NULL},
    {"router.predict",         "model",              DR_PT_FILE,          0,     0,           NULL,           R, NULL},
    {"router.predict",         "willingness_to_pay", DR_PT_NUM,           0,     BIG,         "0",            0, NULL},
    {"router.predict",         "k",                  DR_PT_INT,           1,     1000,        NULL,           0, NULL},
    {"router.preference",      "model",              DR_PT_FILE,          0,     0,           NULL,           R, NULL},
    {"router.preference",      "willingness_to_pay", DR_PT_NUM,           0,     BIG,         "0",            0, NULL},
    {"router.preference",      "k",                  DR_PT_INT,           1,     1000,        NULL,           0, NULL},
    {"router.preference",      "local_weight",       DR_PT_NUM,           0,     1,           NULL,           0, NULL},
    {"router.mf",              "model",              DR_PT_FILE,          0,     0,           NULL,           R, NULL},
    {"router.mf",              "willingness_to_pay", DR_PT_NUM,           0,     BIG,         "0",            0, NULL},
    {"router.contrastive",     "model",              DR_PT_FILE,          0,     0,           NULL,           R, NULL},
    {"router.contrastive",     "willingness_to_pay", DR_PT_NUM,           0,     BIG,         "0",            0, NULL},
    {"router.cluster",         "model",              DR_PT_FILE,          0,     0,           NULL,           R, NULL},
    {"router.cluster",         "willingness_to_pay", DR_PT_NUM,           0,     BIG,         "0",            0, NULL},
    {"router.distill",         "model",              DR_PT_FILE,          0,     0,           NULL,           R, NULL},
    {"router.distill",         "willingness_to_pay", DR_PT_NUM,           0,     BIG,         "0",            0, NULL},
    {"router.distill",         "max_entropy",        DR_PT_NUM,           0,     1,           "1",            0, NULL},
    {"router.distill",         "fallback",           DR_PT_OPTION,        0,     0,           NULL,           0, NULL},
    {"router.llm",             "endpoint",           DR_PT_STR,           0,     0,           NULL,           R, NULL},
    {"router.llm",             "fallback",           DR_PT_OPTION,        0,     0,           NULL,           R, NULL},
    {"router.llm",             "timeout_s",          DR_PT_NUM,           0.001, 86400,       NULL,           0, NULL},
    {"router.llm",             "max_retries",        DR_PT_INT,           0,     20,          "0",            0, NULL},
    {"router.llm",             "max_tokens",         DR_PT_INT,           1,     4096,        "32",           0, NULL},
    {"router.llm",             "cost",               DR_PT_OBJECT,        0,     0,           NULL,           0, "cost"},
    {"router.cascade",         "judge",              DR_PT_ENUM,          0,     0,           "self_route",   0, "self_route|logprob_margin|seq_logprob|agreement|scorer"},
    {"router.cascade",         "threshold",          DR_PT_NUM,           0,     1,           "0.5",          0, NULL},
    {"router.cascade",         "samples",            DR_PT_INT,           2,     16,          "3",            0, NULL},
    {"router.cascade",         "model",              DR_PT_FILE,          0,     0,           NULL,           0, NULL},
    {"router.cascade",         "quality_model",      DR_PT_FILE,          0,     0,           NULL,           0, NULL},
    {"router.cascade",         "willingness_to_pay", DR_PT_NUM,           0,     BIG,         "0",            0, NULL},

    {"endpoint",               "base_url",           DR_PT_STR,           0,     0,           "",             0, NULL},
    {"endpoint",               "model",              DR_PT_STR,           0,     0,           "",             0, NULL},
    {"endpoint",               "api_key_env",        DR_PT_STR,           0,     0,           NULL,           0, NULL},
    {"endpoint",               "timeout_s",          DR_PT_NUM,           0.001, 86400,       "60",           0, NULL},
    {"endpoint",               "max_retries",        DR_PT_INT,           0,     100,         "3",            0, NULL},
    {"budget",                 "usd",                DR_PT_NUM,           0,     BIG,         NULL,           0, NULL},
    {"budget",                 "latency_ms",         DR_PT_NUM,           0,     BIG,         NULL,           0, NULL},
    {"budget",                 "energy_wh",          DR_PT_NUM,           0,     BIG,         NULL,           0, NULL},
    {"cost",                   "usd_per_1k_input",   DR_PT_NUM,           0,     1e6,         "0",            0, NULL},
    {"cost",                   "usd_per_1k_output",  DR_PT_NUM,           0,     1e6,         "0",            0, NULL},
    {"cost",                   "latency_ms",         DR_PT_NUM,           0,     BIG,         "0",            0, NULL},
    {"cost",                   "energy_wh",          DR_PT_NUM,           0,     BIG,         "0",            0, NULL},
};
const size_t dr_n_param_rows = DR_ARRAY_LEN(dr_param_rows);

const dr_kind_row dr_kind_rows[] = {
    {DR_STAGE_RETRIEVAL_MODE, "none",       false},
    {DR_STAGE_RETRIEVAL_MODE, "single",     false},
    {DR_STAGE_RETRIEVAL_MODE, "multi",      false},
    {DR_STAGE_RETRIEVAL_MODE, "adaptive",   false},
    {DR_STAGE_EMBEDDER,       "builtin",    false},
    {DR_STAGE_EMBEDDER,       "openai",     true},
    {DR_STAGE_INDEX,          "bm25",       false},
    {DR_STAGE_INDEX,          "dense",      false},
    {DR_STAGE_INDEX,          "hybrid",     false},
    {DR_STAGE_CONTEXT,        "topk",       false},
    {DR_STAGE_CONTEXT,        "tokens",     false},
    {DR_STAGE_CONTEXT,        "documents",  false},
    {DR_STAGE_PROMPT,         "template",   false},
    {DR_STAGE_GENERATOR,      "extractive", false},
    {DR_STAGE_GENERATOR,      "openai",     true},
};
const size_t dr_n_kind_rows = DR_ARRAY_LEN(dr_kind_rows);

#define ALL_STAGES ((1u << DR_STAGE_COUNT) - 1u)
const dr_router_row dr_router_rows[] = {
    {"fixed",      ALL_STAGES},
    {"rules",      ALL_STAGES},
    {"classifier", ALL_STAGES},
    {"knn",        ALL_STAGES},
    {"cost",       ALL_STAGES},
    {"bandit",     ALL_STAGES},
    {"cascade",    (1u << DR_STAGE_CONTEXT) | (1u << DR_STAGE_GENERATOR)},
    {"predict",    1u << DR_STAGE_GENERATOR},
    {"cluster",    1u << DR_STAGE_GENERATOR},
    {"mf",         1u << DR_STAGE_GENERATOR},
    {"contrastive", 1u << DR_STAGE_GENERATOR},
    {"distill",    1u << DR_STAGE_GENERATOR},
    {"preference", 1u << DR_STAGE_GENERATOR},
    {"llm",        ALL_STAGES},
};
const size_t dr_n_router_rows = DR_ARRAY_LEN(dr_router_rows);
/* clang-format on */

const dr_kind_row *dr_schema_kind(dr_stage_id stage, const char *kind)
{
    for (size_t i = 0; i < dr_n_kind_rows; i++)
        if (dr_kind_rows[i].stage == stage && strcmp(dr_kind_rows[i].kind, kind) == 0)
            return &dr_kind_rows[i];
    return NULL;
}

const dr_router_row *dr_schema_router(const char *type)
{
    for (size_t i = 0; i < dr_n_router_rows; i++)
        if (strcmp(dr_router_rows[i].type, type) == 0)
            return &dr_router_rows[i];
    return NULL;
}

/* The closest candidate within a small edit distance (at most 2 edits and
 * at most half the longer word), or NULL. */
const char *dr_suggest(const char *word, const char *const *candidates, size_t n)
{
    const char *best = NULL;
    size_t best_d = 3;
    size_t lw = strlen(word);
    for (size_t i = 0; i < n; i++) {
        size_t d = dr_edit_distance(word, candidates[i], 3);
        size_t lc = strlen(candidates[i]);
        size_t longer = lw > lc ? lw : lc;
        if (d > 0 && d < best_d && d * 2 <= longer) {
            best_d = d;
            best = candidates[i];
        }
    }
    return best;
}

/* ---- helpers ------------------------------------------------------------------ */

void dr_path_join(char *out, size_t size, const char *base, const char *key)
{
    if (base[0] == '\0')
        dr_pathf(out, size, "%s", key);
    else
        dr_pathf(out, size, "%s.%s", base, key);
}

const char *dr_did_you_mean(char *buf, size_t size, const char *word, const char *const *cands,
                            size_t n)
{
    const char *s = dr_suggest(word, cands, n);
    if (s)
        snprintf(buf, size, " (did you mean '%s'?)", s);
    else
        buf[0] = '\0';
    return buf;
}

static bool is_str_scalar(const dr_ynode *n)
{
    return n != NULL && n->type == DR_YN_SCALAR && !dr_ynode_is_null(n);
}

/* Reports "expected X, got Y" for node at path. */
static void type_error(dr_vctx *v, const dr_ynode *n, int line, int col, const char *path,
                       const char *expected)
{
    char got[96];
    dr_ynode_describe(n, got, sizeof(got));
    dr_diags_add(v->diags, n ? n->line : line, n ? n->col : col, path, "expected %s, got %s",
                 expected, got);
}

static bool regular_readable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, R_OK) == 0;
}

/* Checks a string-valued option reference against the current stage. */
static bool check_option_ref(dr_vctx *v, const dr_ynode *n, const char *path)
{
    const dr_stage *st = v->stage;
    if (st == NULL)
        return true;
    if (dr_stage_find_option(st, n->value) >= 0)
        return true;
    const char *names[DR_MAX_OPTIONS];
    size_t k = 0;
    for (size_t i = 0; i < st->n_options && k < DR_MAX_OPTIONS; i++)
        if (st->options[i].name)
            names[k++] = st->options[i].name;
    char dym[128];
    dr_diags_add(v->diags, n->line, n->col, path, "unknown option '%.64s' in stage '%s'%s",
                 n->value, dr_stage_name(st->id),
                 dr_did_you_mean(dym, sizeof(dym), n->value, names, k));
    return false;
}

/*
 * Estimates how big glibc's compiled form of a POSIX ERE gets, since
 * repetitions are expanded by copying (regcomp.c, parse_dup_op): each atom
 * counts 1, a group the sum of its contents, "{m,n}" makes max(m, n) copies
 * of the preceding atom or group, "{m,}" m + 1, and "+" two (x+ is x x*),
 * so that "x++++..." doubles with every "+". "*" and "?" copy nothing.
 * Returns false when the estimate passes `limit`.
 */
static bool regex_size_ok(const char *re, double limit)
{
    double sums[DR_YAML_MAX_DEPTH + 2];
    int depth = 0;
    double last = 0; /* cost of the previous atom or group */
    sums[0] = 0;
    for (const char *p = re; *p; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            last = 1;
            sums[depth] += 1;
        } else if (*p == '[') {
            const char *q = p + 1;
            if (*q == '^')
                q++;
            if (*q == ']')
                q++;
            while (*q && *q != ']') {
                if (*q == '[' && (q[1] == ':' || q[1] == '.' || q[1] == '=')) {
                    const char *e = strchr(q + 2, q[1]);
                    q = (e && e[1] == ']') ? e + 2 : q + 1;
                } else
                    q++;
            }
            if (*q == '\0')
                return true; /* unterminated: regcomp reports it */
            p = q;
            last = 1;
            sums[depth] += 1;
        } else if (*p == '(') {
            if (depth >= DR_YAML_MAX_DEPTH)
                return false;
            sums[++depth] = 0;
        } else if (*p == ')' && depth > 0) {
            last = sums[depth--] + 1;
            sums[depth] += last;
        } else if (*p == '{') {
            double m = 0, cur = 0;
            bool comma = false;
            const char *q = p + 1;
            while (*q && *q != '}') {
                if (*q >= '0' && *q <= '9')
                    cur = cur * 10 + (*q - '0');
                else {
                    comma = comma || *q == ',';
                    m = fmax(m, cur);
                    cur = 0;
                }
                if (cur > 1e9)
                    return false;
                q++;
            }
            if (*q == '\0')
                return true;
            /* {m}: m copies; {m,n}: max(m, n); {m,}: m + 1 (the last
             * copy starred). */
            double copies = comma && cur == 0 && q[-1] == ',' ? m + 1 : fmax(m, cur);
            copies = fmax(copies, 1);
            sums[depth] += last * (copies - 1);
            last *= copies;
            p = q;
        } else if (*p == '+') {
            sums[depth] += last;
            last *= 2;
        } else if (*p == '*' || *p == '?' || *p == '|') {
            /* no copies */
        } else {
            last = 1;
            sums[depth] += 1;
        }
        if (sums[depth] > limit || last > limit)
            return false;
    }
    return true;
}

bool dr_template_check(const char *t, char *msg, size_t msg_size)
{
    static const char *const allowed[] = {"question", "context", "steps"};
    for (size_t i = 0; t[i];) {
        if (t[i] == '{' && t[i + 1] == '{') {
            i += 2;
        } else if (t[i] == '}' && t[i + 1] == '}') {
            i += 2;
        } else if (t[i] == '}') {
            snprintf(msg, msg_size, "unmatched '}' at character %zu (write }} for a literal "
                     "brace)", i + 1);
            return false;
        } else if (t[i] == '{') {
            size_t j = i + 1;
            while (t[j] && t[j] != '}' && t[j] != '{' && t[j] != '\n' && j - i < 64)
                j++;
            if (t[j] != '}') {
                snprintf(msg, msg_size, "unmatched '{' at character %zu (write {{ for a "
                         "literal brace)", i + 1);
                return false;
            }
            char name[64];
            size_t n = j - i - 1;
            memcpy(name, t + i + 1, n);
            name[n] = '\0';
            bool ok = false;
            for (size_t k = 0; k < DR_ARRAY_LEN(allowed); k++)
                ok = ok || strcmp(name, allowed[k]) == 0;
            if (!ok) {
                const char *s = dr_suggest(name, allowed, DR_ARRAY_LEN(allowed));
                char dym[64] = "";
                if (s)
                    snprintf(dym, sizeof(dym), " (did you mean '{%s}'?)", s);
                snprintf(msg, msg_size, "unknown placeholder '{%s}'%s; allowed: {question}, "
                         "{context}, {steps} ({{ and }} are literal braces)", name, dym);
                return false;
            }
            i = j + 1;
        } else {
            i++;
        }
    }
    return true;
}

/* Validates a JSONL examples file: one {"query": str, "option": name} per
 * non-blank line. Reports up to 5 bad lines. */
static void check_examples_file(dr_vctx *v, const dr_ynode *n, const char *path,
                                const char *file)
{
    char *text = NULL;
    size_t len = 0;
    dynrag_error e;
    int rc = dr_read_file(file, (size_t)64 << 20, &text, &len, &e);
    if (rc != DYNRAG_OK) {
        dr_diags_add(v->diags, n->line, n->col, path, "cannot read examples file: %s",
                     dynrag_errmsg(&e));
        return;
    }
    size_t bad = 0;
    int reported = 0;
    if (!dr_utf8_valid(text, len, &bad)) {
        dr_diags_add(v->diags, n->line, n->col, path,
                     "examples file '%s' is not UTF-8 (byte %zu)", file, bad);
        goto cleanup;
    }
    size_t lineno = 0, examples = 0;
    for (char *p = text; p < text + len && reported < 5;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        char *end = nl ? nl : text + len;
        lineno++;
        char save = *end;
        *end = '\0';
        const char *s = p;
        while (*s == ' ' || *s == '\t' || *s == '\r')
            s++;
        if (*s != '\0') {
            char why[128];
            cJSON *j = dr_json_parse_line(s, strlen(s), why, sizeof(why));
            const cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "query");
            const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, "option");
            if (j == NULL) {
                dr_diags_add(v->diags, n->line, n->col, path, "examples file '%s' line %zu: %s",
                             file, lineno, why[0] ? why : "out of memory");
                reported++;
            } else if (!cJSON_IsObject(j) || !cJSON_IsString(q) || !cJSON_IsString(o)) {
                dr_diags_add(v->diags, n->line, n->col, path,
                             "examples file '%s' line %zu: expected a JSON object with "
                             "string \"query\" and \"option\"", file, lineno);
                reported++;
            } else if (v->stage && dr_stage_find_option(v->stage, o->valuestring) < 0) {
                dr_diags_add(v->diags, n->line, n->col, path,
                             "examples file '%s' line %zu: unknown option '%.64s' in stage '%s'",
                             file, lineno, o->valuestring, dr_stage_name(v->stage->id));
                reported++;
            } else {
                examples++;
            }
            cJSON_Delete(j);
        }
        *end = save;
        p = end + 1;
    }
    if (reported == 0 && examples == 0)
        dr_diags_add(v->diags, n->line, n->col, path, "examples file '%s' has no examples",
                     file);
cleanup:
    dr_free(text);
}

static cJSON *validate_value(dr_vctx *v, const dr_param_row *row, const dr_ynode *n,
                             const char *path);

/* A string scalar resolved as a path (relative to the YAML folder). */
static cJSON *path_value(dr_vctx *v, const dr_ynode *n, const char *path, bool must_exist)
{
    if (!is_str_scalar(n) || n->value[0] == '\0') {
        type_error(v, n, 0, 0, path, "a path");
        return NULL;
    }
    char *full = dr_pipeline_resolve_path(v->p, n->value);
    if (full == NULL) {
        v->nomem = true;
        return NULL;
    }
    if (must_exist && !regular_readable_file(full)) {
        dr_diags_add(v->diags, n->line, n->col, path,
                     "file '%s' does not exist or is not a readable file (relative paths are "
                     "resolved against the pipeline file's folder)", full);
        dr_free(full);
        return NULL;
    }
    cJSON *j = cJSON_CreateString(full);
    dr_free(full);
    if (j == NULL)
        v->nomem = true;
    return j;
}

static cJSON *number_value(dr_vctx *v, const dr_param_row *row, const dr_ynode *n,
                           const char *path)
{
    long long iv = 0;
    double x = 0;
    bool is_int = dr_ynode_int(n, &iv);
    bool is_num = dr_ynode_num(n, &x);
    if (row->type == DR_PT_INT) {
        /* integers are written as integers: 5.0 and 1e2 are refused, not
         * silently converted (a typo like 0.5 -> 5 would pass otherwise) */
        if (!is_int) {
            type_error(v, n, 0, 0, path, "an integer");
            return NULL;
        }
        x = (double)iv;
    } else if (!is_num) {
        type_error(v, n, 0, 0, path, "a number");
        return NULL;
    }
    if (x < row->min || x > row->max) {
        dr_diags_add(v->diags, n->line, n->col, path, "must be from %.10g to %.10g, got %.40s",
                     row->min, row->max, n->value);
        return NULL;
    }
    cJSON *j = cJSON_CreateNumber(x);
    if (j == NULL)
        v->nomem = true;
    return j;
}

static cJSON *string_value(dr_vctx *v, const dr_ynode *n, const char *path)
{
    if (!is_str_scalar(n)) {
        type_error(v, n, 0, 0, path, "a string");
        return NULL;
    }
    cJSON *j = cJSON_CreateString(n->value);
    if (j == NULL)
        v->nomem = true;
    return j;
}

static cJSON *enum_value(dr_vctx *v, const dr_param_row *row, const dr_ynode *n,
                         const char *path)
{
    if (!is_str_scalar(n)) {
        type_error(v, n, 0, 0, path, "a string");
        return NULL;
    }
    const char *choices[16];
    char buf[256];
    size_t k = 0;
    dr_strlcpy(buf, row->extra, sizeof(buf));
    for (char *save = NULL, *t = strtok_r(buf, "|", &save); t && k < 16;
         t = strtok_r(NULL, "|", &save))
        choices[k++] = t;
    for (size_t i = 0; i < k; i++)
        if (strcmp(choices[i], n->value) == 0)
            return string_value(v, n, path);
    char dym[128], list[256] = "";
    for (size_t i = 0; i < k; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "", choices[i]);
    }
    dr_diags_add(v->diags, n->line, n->col, path, "unknown value '%.64s' (expected one of: %s)%s",
                 n->value, list, dr_did_you_mean(dym, sizeof(dym), n->value, choices, k));
    return NULL;
}

static cJSON *list_value(dr_vctx *v, const dr_param_row *row, const dr_ynode *n,
                         const char *path)
{
    if (n->type != DR_YN_SEQ) {
        type_error(v, n, 0, 0, path, "a list");
        return NULL;
    }
    if ((double)n->n < row->min || (row->max > 0 && (double)n->n > row->max)) {
        dr_diags_add(v->diags, n->line, n->col, path, "expected %.0f to %.0f items, got %zu",
                     row->min, row->max, n->n);
        return NULL;
    }
    cJSON *arr = cJSON_CreateArray();
    if (arr == NULL) {
        v->nomem = true;
        return NULL;
    }
    bool ok = true;
    for (size_t i = 0; i < n->n; i++) {
        char sub[512];
        dr_pathf(sub, sizeof(sub), "%s[%zu]", path, i);
        cJSON *item = NULL;
        if (row->type == DR_PT_STR_LIST)
            item = string_value(v, n->kids[i], sub);
        else
            item = dr_schema_validate(v, row->extra, n->kids[i], n->kids[i]->line,
                                      n->kids[i]->col, sub);
        if (item == NULL || (row->type == DR_PT_OBJECT_LIST && n->kids[i]->type != DR_YN_MAP)) {
            cJSON_Delete(item);
            ok = false;
            continue;
        }
        cJSON_AddItemToArray(arr, item);
    }
    if (!ok) {
        cJSON_Delete(arr);
        return NULL;
    }
    return arr;
}

static cJSON *option_map_value(dr_vctx *v, const dr_param_row *row, const dr_ynode *n,
                               const char *path)
{
    if (n->type != DR_YN_MAP) {
        type_error(v, n, 0, 0, path, "a mapping");
        return NULL;
    }
    if ((double)(n->n / 2) < row->min) {
        dr_diags_add(v->diags, n->line, n->col, path, "expected at least %.0f entries",
                     row->min);
        return NULL;
    }
    cJSON *obj = cJSON_CreateObject();
    if (obj == NULL) {
        v->nomem = true;
        return NULL;
    }
    bool ok = true;
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        const dr_ynode *k = n->kids[i], *val = n->kids[i + 1];
        if (k->type != DR_YN_SCALAR || val->bad)
            continue; /* reported by the key pass */
        char sub[512];
        dr_path_join(sub, sizeof(sub), path, k->raw);
        if (!is_str_scalar(val)) {
            type_error(v, val, 0, 0, sub, "an option name");
            ok = false;
            continue;
        }
        if (!check_option_ref(v, val, sub)) {
            ok = false;
            continue;
        }
        if (cJSON_GetObjectItemCaseSensitive(obj, k->raw) == NULL &&
            cJSON_AddStringToObject(obj, k->raw, val->value) == NULL)
            v->nomem = true;
    }
    if (!ok) {
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

/* Converts one present value per its row; NULL after reporting a problem. */
static cJSON *validate_value(dr_vctx *v, const dr_param_row *row, const dr_ynode *n,
                             const char *path)
{
    if (n->bad)
        return NULL;
    switch (row->type) {
    case DR_PT_INT:
    case DR_PT_NUM:
        return number_value(v, row, n, path);
    case DR_PT_BOOL: {
        bool b;
        if (!dr_ynode_bool(n, &b)) {
            type_error(v, n, 0, 0, path, "true or false");
            return NULL;
        }
        cJSON *j = cJSON_CreateBool(b);
        if (j == NULL)
            v->nomem = true;
        return j;
    }
    case DR_PT_STR:
        return string_value(v, n, path);
    case DR_PT_ENUM:
        return enum_value(v, row, n, path);
    case DR_PT_OPTION:
        if (!is_str_scalar(n)) {
            type_error(v, n, 0, 0, path, "an option name");
            return NULL;
        }
        if (!check_option_ref(v, n, path))
            return NULL;
        return string_value(v, n, path);
    case DR_PT_PATH:
        return path_value(v, n, path, false);
    case DR_PT_FILE:
    case DR_PT_TEMPLATE_FILE:
        return path_value(v, n, path, true);
    case DR_PT_EXAMPLES_FILE: {
        cJSON *j = path_value(v, n, path, true);
        if (j != NULL)
            check_examples_file(v, n, path, j->valuestring);
        return j;
    }
    case DR_PT_TEMPLATE: {
        if (!is_str_scalar(n)) {
            type_error(v, n, 0, 0, path, "a string");
            return NULL;
        }
        char msg[256];
        if (!dr_template_check(n->value, msg, sizeof(msg))) {
            dr_diags_add(v->diags, n->line, n->col, path, "%s", msg);
            return NULL;
        }
        return string_value(v, n, path);
    }
    case DR_PT_REGEX: {
        if (!is_str_scalar(n)) {
            type_error(v, n, 0, 0, path, "a regular expression string");
            return NULL;
        }
        if (strlen(n->value) > 1024 || !regex_size_ok(n->value, 20000)) {
            dr_diags_add(v->diags, n->line, n->col, path,
                         "regex too large (at most 1024 characters, and repetitions ({n}, "
                         "+) may expand to at most 20000 atoms)");
            return NULL;
        }
        size_t at = 0;
        if (!dr_regex_is_regular(n->value, &at)) {
            dr_diags_add(v->diags, n->line, n->col, path,
                         "regex '%.64s': back-reference '%.2s' at character %zu is not "
                         "supported (it makes matching take exponential time); use a regular "
                         "expression without \\1-\\9",
                         n->value, n->value + at, at + 1);
            return NULL;
        }
        regex_t re;
        int rc = regcomp(&re, n->value, REG_EXTENDED | REG_ICASE | REG_NOSUB);
        if (rc != 0) {
            char eb[160];
            regerror(rc, &re, eb, sizeof(eb));
            dr_diags_add(v->diags, n->line, n->col, path, "invalid regex '%.64s': %s",
                         n->value, eb);
            return NULL;
        }
        regfree(&re);
        return string_value(v, n, path);
    }
    case DR_PT_STR_LIST:
    case DR_PT_OBJECT_LIST:
        return list_value(v, row, n, path);
    case DR_PT_OBJECT:
        if (n->type != DR_YN_MAP) {
            type_error(v, n, 0, 0, path, "a mapping");
            return NULL;
        }
        return dr_schema_validate(v, row->extra, n, n->line, n->col, path);
    case DR_PT_OPTION_MAP:
        return option_map_value(v, row, n, path);
    }
    return NULL;
}

/* The default of a row as a cJSON value (the table is trusted). */
static cJSON *default_value(const dr_param_row *row)
{
    switch (row->type) {
    case DR_PT_INT:
    case DR_PT_NUM:
        return cJSON_CreateNumber(strtod(row->dflt, NULL));
    case DR_PT_BOOL:
        return cJSON_CreateBool(strcmp(row->dflt, "true") == 0);
    default:
        return cJSON_CreateString(row->dflt);
    }
}

cJSON *dr_schema_validate(dr_vctx *v, const char *owner, const dr_ynode *node, int line,
                          int col, const char *path)
{
    cJSON *out = cJSON_CreateObject();
    if (out == NULL) {
        v->nomem = true;
        return NULL;
    }
    if (node != NULL && node->bad)
        return out;
    if (node != NULL && dr_ynode_is_null(node))
        node = NULL;
    if (node != NULL && node->type != DR_YN_MAP) {
        type_error(v, node, line, col, path, "a mapping");
        node = NULL;
    }
    const dr_param_row *rows[64];
    const char *keys[64];
    size_t nr = 0;
    for (size_t i = 0; i < dr_n_param_rows && nr < 64; i++)
        if (strcmp(dr_param_rows[i].owner, owner) == 0) {
            rows[nr] = &dr_param_rows[i];
            keys[nr++] = dr_param_rows[i].key;
        }
    for (size_t i = 0; node != NULL && i + 1 < node->n; i += 2) {
        const dr_ynode *k = node->kids[i], *val = node->kids[i + 1];
        if (k->type != DR_YN_SCALAR)
            continue; /* reported by the key pass */
        char sub[512];
        dr_path_join(sub, sizeof(sub), path, k->raw);
        const dr_param_row *row = NULL;
        for (size_t r = 0; r < nr && row == NULL; r++)
            if (strcmp(rows[r]->key, k->raw) == 0)
                row = rows[r];
        if (row == NULL) {
            char dym[128];
            if (nr == 0)
                dr_diags_add(v->diags, k->line, k->col, sub, "unknown key '%.64s' (takes no "
                             "keys here)", k->raw);
            else
                dr_diags_add(v->diags, k->line, k->col, sub, "unknown key '%.64s'%s", k->raw,
                             dr_did_you_mean(dym, sizeof(dym), k->raw, keys, nr));
            continue;
        }
        if (cJSON_GetObjectItemCaseSensitive(out, row->key) != NULL)
            continue; /* a duplicate key, reported by the key pass */
        cJSON *j = validate_value(v, row, val, sub);
        if (j != NULL && !cJSON_AddItemToObject(out, row->key, j)) {
            cJSON_Delete(j); /* the key's copy failed */
            v->nomem = true;
        }
    }
    for (size_t r = 0; r < nr; r++) {
        if (cJSON_GetObjectItemCaseSensitive(out, rows[r]->key) != NULL ||
            dr_ymap_get(node, rows[r]->key) != NULL)
            continue;
        if (rows[r]->flags & DR_PF_REQUIRED) {
            dr_diags_add(v->diags, node ? node->line : line, node ? node->col : col, path,
                         "missing required key '%s'", rows[r]->key);
        } else if (rows[r]->dflt != NULL) {
            cJSON *j = default_value(rows[r]);
            if (j == NULL || !cJSON_AddItemToObject(out, rows[r]->key, j)) {
                cJSON_Delete(j);
                v->nomem = true;
            }
        }
    }
    return out;
}

/* ---- cross-field checks ---------------------------------------------------------- */

/* The prompt `template` kind: exactly one of template/file; a file is read
 * (< 1 MiB, UTF-8), checked, and its text stored as params.template. */
static void check_prompt_template(dr_vctx *v, dr_option *o, const char *opath,
                                  const dr_ynode *params_node)
{
    cJSON *t = cJSON_GetObjectItemCaseSensitive(o->params, "template");
    cJSON *f = cJSON_GetObjectItemCaseSensitive(o->params, "file");
    char ppath[512];
    dr_pathf(ppath, sizeof(ppath), "%s.params", opath);
    if (t != NULL && f != NULL) {
        dr_diags_add(v->diags, o->line, o->col, ppath,
                     "give exactly one of 'template' and 'file', not both");
        return;
    }
    if (f == NULL) {
        /* Silent when one was given but invalid (already reported). */
        if (t == NULL && dr_ymap_get(params_node, "template") == NULL &&
            dr_ymap_get(params_node, "file") == NULL)
            dr_diags_add(v->diags, o->line, o->col, ppath,
                         "missing 'template' or 'file' (exactly one is required)");
        return;
    }
    char *text = NULL;
    size_t len = 0;
    dynrag_error e;
    int rc = dr_read_file(f->valuestring, DR_PIPELINE_MAX_BYTES - 1, &text, &len, &e);
    size_t bad = 0;
    char msg[256];
    if (rc == DYNRAG_ERR_LIMIT)
        dr_diags_add(v->diags, o->line, o->col, ppath, "template file '%s' is 1 MiB or larger",
                     f->valuestring);
    else if (rc != DYNRAG_OK)
        dr_diags_add(v->diags, o->line, o->col, ppath, "cannot read template file: %s",
                     dynrag_errmsg(&e));
    else if (!dr_utf8_valid(text, len, &bad) || memchr(text, '\0', len) != NULL)
        dr_diags_add(v->diags, o->line, o->col, ppath,
                     "template file '%s' is not UTF-8 text (byte %zu)", f->valuestring, bad);
    else if (!dr_template_check(text, msg, sizeof(msg)))
        dr_diags_add(v->diags, o->line, o->col, ppath, "template file '%s': %s",
                     f->valuestring, msg);
    else if (cJSON_AddStringToObject(o->params, "template", text) == NULL)
        v->nomem = true;
    dr_free(text);
}

/* See internal.h. */
const char *dr_router_param_conflict(const char *type, const cJSON *params, const char *key)
{
    if (strcmp(type, "bandit") != 0)
        return NULL;
    const cJSON *sla = cJSON_GetObjectItemCaseSensitive(params, "sla_ms");
    if (strcmp(key, "sla_ms") == 0 && cJSON_IsNumber(sla) && !(sla->valuedouble > 0))
        return "must be greater than 0 (the latency in ms the SLA allows)";
    if (strcmp(key, "sla_penalty") == 0 && sla == NULL)
        return "has no effect without 'sla_ms' (the SLA it penalises)";
    return NULL;
}

void dr_schema_check_stage(dr_vctx *v, const dr_stage *stage, const char *path,
                           const dr_ynode *stage_node)
{
    for (size_t i = 0; i < stage->n_options; i++) {
        dr_option *o = &stage->options[i];
        char opath[512];
        dr_pathf(opath, sizeof(opath), "%s.options[%zu]", path, i);
        if (o->kind == NULL || o->params == NULL)
            continue;
        const dr_kind_row *kr = dr_schema_kind(stage->id, o->kind);
        if (kr == NULL)
            continue;
        if (kr->endpoint_required && o->endpoint == NULL) {
            /* Only report when the option did not name an endpoint at all (an
             * undefined one was reported already). */
            bool named = false;
            const dr_ynode *opts = dr_ymap_get(stage_node, "options");
            if (opts && opts->type == DR_YN_SEQ && i < opts->n)
                named = dr_ymap_get(opts->kids[i], "endpoint") != NULL;
            if (!named)
                dr_diags_add(v->diags, o->line, o->col, opath,
                             "kind '%s' requires an 'endpoint'", o->kind);
        }
        if (stage->id == DR_STAGE_PROMPT && strcmp(o->kind, "template") == 0) {
            const dr_ynode *opts = dr_ymap_get(stage_node, "options");
            const dr_ynode *pn = NULL;
            if (opts && opts->type == DR_YN_SEQ && i < opts->n)
                pn = dr_ymap_get(opts->kids[i], "params");
            check_prompt_template(v, o, opath, pn);
        }
    }
    const dr_router_spec *r = &stage->router;
    if (r->type == NULL || r->params == NULL)
        return;
    char rpath[512];
    dr_pathf(rpath, sizeof(rpath), "%s.router.params", path);
    if (strcmp(r->type, "knn") == 0 &&
        cJSON_GetObjectItemCaseSensitive(r->params, "examples") == NULL &&
        cJSON_GetObjectItemCaseSensitive(r->params, "examples_file") == NULL) {
        const dr_ynode *rn = dr_ymap_get(dr_ymap_get(stage_node, "router"), "params");
        /* Silent when one was given but invalid (already reported). */
        if (dr_ymap_get(rn, "examples") == NULL && dr_ymap_get(rn, "examples_file") == NULL)
            dr_diags_add(v->diags, r->line, r->col, rpath,
                         "the knn router needs 'examples', 'examples_file' or both");
    }
    if (strcmp(r->type, "llm") == 0 && v->p != NULL) {
        const char *ep = dr_param_str(r->params, "endpoint", NULL);
        bool found = ep == NULL; /* missing: reported already */
        for (size_t i = 0; ep != NULL && i < v->p->n_endpoints; i++)
            found = found || strcmp(v->p->endpoints[i].name, ep) == 0;
        if (!found) {
            const dr_ynode *en = dr_ymap_get(dr_ymap_get(dr_ymap_get(stage_node, "router"),
                                                         "params"),
                                             "endpoint");
            char kpath[600];
            dr_pathf(kpath, sizeof(kpath), "%s.endpoint", rpath);
            dr_diags_add(v->diags, en ? en->line : r->line, en ? en->col : r->col, kpath,
                         "undefined endpoint '%.64s'%s", ep,
                         v->p->n_endpoints == 0 ? " (no endpoints are declared)" : "");
        }
    }
    if (strcmp(r->type, "bandit") == 0) {
        const dr_ynode *rn = dr_ymap_get(dr_ymap_get(stage_node, "router"), "params");
        static const char *const keys[] = {"sla_ms", "sla_penalty"};
        for (size_t k = 0; k < DR_ARRAY_LEN(keys); k++) {
            const dr_ynode *n = dr_ymap_get(rn, keys[k]);
            const char *why = n ? dr_router_param_conflict(r->type, r->params, keys[k]) : NULL;
            if (why != NULL) {
                char kpath[600];
                dr_pathf(kpath, sizeof(kpath), "%s.%s", rpath, keys[k]);
                if (strcmp(keys[k], "sla_ms") == 0)
                    dr_diags_add(v->diags, n->line, n->col, kpath, "%s, got %.40s", why, n->value);
                else
                    dr_diags_add(v->diags, n->line, n->col, kpath, "%s", why);
            }
        }
    }
    if (strcmp(r->type, "cost") == 0 &&
        (cJSON_GetObjectItemCaseSensitive(r->params, "quality_model") == NULL) !=
            (cJSON_GetObjectItemCaseSensitive(r->params, "quality_labels") == NULL)) {
        const dr_ynode *rn = dr_ymap_get(dr_ymap_get(stage_node, "router"), "params");
        /* Silent when one was given but invalid (already reported). */
        if ((dr_ymap_get(rn, "quality_model") == NULL) !=
            (dr_ymap_get(rn, "quality_labels") == NULL))
            dr_diags_add(v->diags, r->line, r->col, rpath,
                         "the cost router's quality_model and quality_labels go together");
    }
    if (strcmp(r->type, "cost") == 0 &&
        cJSON_GetObjectItemCaseSensitive(r->params, "quality_model") == NULL) {
        for (size_t i = 0; i < stage->n_options; i++) {
            const dr_option *o = &stage->options[i];
            if (isnan(o->quality) && o->name != NULL) {
                char opath[512];
                dr_pathf(opath, sizeof(opath), "%s.options[%zu]", path, i);
                dr_diags_add(v->diags, o->line, o->col, opath,
                             "option '%s' needs a 'quality' for the cost router (or set the "
                             "router's quality_model)", o->name);
            }
        }
    }
}
