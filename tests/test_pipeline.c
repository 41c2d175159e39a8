/* test_pipeline.c - the YAML pipeline loader, validator and CLI commands. */
#include "test.h"

#include "core/util.h"
#include "dynrag/pipeline.h"
#include "generate/prompt.h"
#include "pipeline/internal.h"
#include "pipeline/spec.h"

#include <dirent.h>
#include <sys/stat.h>

/* Loads yaml from memory (base folder: the test's tmpdir). Returns the
 * formatted diagnostics ("" when valid; caller frees) and the status. */
static char *diags_of(const char *yaml, int *rc_out)
{
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = NULL;
    dynrag_error err;
    int rc = dynrag_pipeline_load_string(yaml, strlen(yaml), "t.yaml", test_tmpdir(), &p, &d,
                                         &err);
    char *s = dynrag_diags_format(d);
    if (rc_out)
        *rc_out = rc;
    if ((rc == DYNRAG_OK) != (p != NULL)) { /* the contract: pipeline iff success */
        free(s);
        s = strdup("CONTRACT VIOLATION: pipeline/status mismatch");
    }
    dynrag_pipeline_free(p);
    dynrag_diags_free(d);
    return s;
}

/* Loads valid yaml; the caller frees the pipeline. */
static dynrag_pipeline *load_ok(const char *yaml)
{
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = NULL;
    dynrag_error err;
    int rc = dynrag_pipeline_load_string(yaml, strlen(yaml), "t.yaml", test_tmpdir(), &p, &d,
                                         &err);
    if (rc != DYNRAG_OK) {
        char *s = dynrag_diags_format(d);
        fprintf(stderr, "unexpected load failure: %s\n%s", dynrag_errmsg(&err), s ? s : "");
        free(s);
    }
    dynrag_diags_free(d);
    return p;
}

/* Checks that yaml fails with exactly the diagnostic line `expected` among
 * its diagnostics (a mismatch fails the test but does not end it). */
#define ASSERT_DIAG(yaml, expected)                                 \
    do {                                                            \
        int rc_ = 0;                                                \
        char *out_ = diags_of((yaml), &rc_);                        \
        if (rc_ == DYNRAG_OK)                                       \
            test_fail_(__FILE__, __LINE__, "loaded, expected: %s", (expected)); \
        char want_[4096];                                           \
        snprintf(want_, sizeof(want_), "%s\n", (expected));         \
        if (out_ == NULL || strstr(out_, want_) == NULL) {          \
            test_fail_(__FILE__, __LINE__, "expected diagnostic:\n  %s\ngot:\n%s", \
                       (expected), out_ ? out_ : "(null)");         \
            /* not fatal: report every mismatch of a test at once */ \
        }                                                           \
        free(out_);                                                 \
    } while (0)

#define HDR "version: 1\nname: t\n"

TEST(pipeline_minimal_defaults)
{
    dynrag_pipeline *p = load_ok(HDR);
    ASSERT(p != NULL);
    ASSERT_STR_EQ(dynrag_pipeline_name(p), "t");
    ASSERT(dynrag_pipeline_index_dir(p) == NULL);
    ASSERT(p->log_path == NULL && p->description == NULL);
    ASSERT(isinf(p->budget.usd) && isinf(p->budget.latency_ms) && isinf(p->budget.energy_wh));
    ASSERT_EQ(p->n_endpoints, 0);
    const char *kinds[] = {"single", "builtin", "bm25", "topk", "template", "extractive"};
    for (int i = 0; i < DR_STAGE_COUNT; i++) {
        const dr_stage *st = &p->stages[i];
        ASSERT_EQ(st->id, i);
        ASSERT(!st->declared);
        ASSERT_EQ(st->n_options, 1);
        ASSERT_STR_EQ(st->options[0].kind, kinds[i]);
        ASSERT_STR_EQ(st->options[0].name, kinds[i]);
        ASSERT(st->options[0].available);
        ASSERT(isnan(st->options[0].quality));
        ASSERT_STR_EQ(st->router.type, "fixed");
        ASSERT_STR_EQ(dr_param_str(st->router.params, "option", NULL), kinds[i]);
        ASSERT_EQ(st->fallback, -1);
    }
    ASSERT_EQ(dr_param_int(p->stages[DR_STAGE_RETRIEVAL_MODE].options[0].params, "k", -1), 10);
    ASSERT_EQ(dr_param_int(p->stages[DR_STAGE_EMBEDDER].options[0].params, "dim", -1), 256);
    ASSERT_NEAR(dr_param_num(p->stages[DR_STAGE_INDEX].options[0].params, "k1", -1), 0.9, 1e-12);
    ASSERT_NEAR(dr_param_num(p->stages[DR_STAGE_INDEX].options[0].params, "b", -1), 0.4, 1e-12);
    ASSERT_EQ(dr_param_int(p->stages[DR_STAGE_CONTEXT].options[0].params, "k", -1), 5);
    const char *tmpl = dr_param_str(p->stages[DR_STAGE_PROMPT].options[0].params, "template", "");
    ASSERT_CONTAINS(tmpl, "{question}");
    ASSERT_CONTAINS(tmpl, "{context}");
    const cJSON *gp = p->stages[DR_STAGE_GENERATOR].options[0].params;
    ASSERT_NEAR(dr_param_num(gp, "threshold", -1), 0.25, 1e-12);
    ASSERT_EQ(dr_param_int(gp, "max_sentences", -1), 3);
    dynrag_pipeline_free(p);
}

TEST(pipeline_declared_params_defaults_filled)
{
    dynrag_pipeline *p = load_ok(HDR "stages:\n"
                                     "  generator:\n"
                                     "    options:\n"
                                     "      - {name: g, kind: openai, endpoint: e, params: "
                                     "{temperature: 0.5}}\n"
                                     "  index:\n"
                                     "    options: [{name: h, kind: hybrid}]\n"
                                     "endpoints: {e: {base_url: 'http://x', model: m}}\n");
    ASSERT(p != NULL);
    const dr_option *g = &p->stages[DR_STAGE_GENERATOR].options[0];
    ASSERT(p->stages[DR_STAGE_GENERATOR].declared);
    ASSERT_NEAR(dr_param_num(g->params, "temperature", -1), 0.5, 1e-12);
    ASSERT_EQ(dr_param_int(g->params, "max_tokens", -1), 256);
    ASSERT_EQ(dr_param_bool(g->params, "logprobs", true), false);
    ASSERT_EQ(dr_param_int(g->params, "top_logprobs", -1), 0);
    ASSERT_EQ(dr_param_int(g->params, "samples", -1), 1);
    ASSERT(g->endpoint == &p->endpoints[0]);
    ASSERT(g->available);
    ASSERT(p->endpoints[0].configured);
    ASSERT_NEAR(p->endpoints[0].timeout_s, 60, 0);
    ASSERT_EQ(p->endpoints[0].max_retries, 3);
    const cJSON *h = p->stages[DR_STAGE_INDEX].options[0].params;
    ASSERT_NEAR(dr_param_num(h, "rrf_k", -1), 60, 0);
    ASSERT_NEAR(dr_param_num(h, "w_bm25", -1), 1, 0);
    ASSERT_NEAR(dr_param_num(h, "w_dense", -1), 1, 0);
    ASSERT_EQ(dr_param_int(h, "depth", -1), 100);
    dynrag_pipeline_free(p);
}

TEST(pipeline_env_expansion)
{
    setenv("DR_TEST_URL", "http://127.0.0.1:8080/v1", 1);
    setenv("DR_TEST_K", "7", 1);
    setenv("DR_TEST_EMPTY", "", 1);
    unsetenv("DR_TEST_UNSET");
    dynrag_pipeline *p = load_ok(HDR "description: \"costs $$5 and ${DR_TEST_UNSET:-nothing}"
                                     " or ${DR_TEST_EMPTY:-dflt}, $HOME stays\"\n"
                                     "endpoints:\n"
                                     "  llm: {base_url: '${DR_TEST_URL}', model: "
                                     "'${DR_TEST_UNSET:-m-1}'}\n"
                                     "stages:\n"
                                     "  retrieval_mode:\n"
                                     "    options: [{name: s, kind: single, params: {k: "
                                     "'${DR_TEST_K}'}}]\n");
    ASSERT(p != NULL);
    ASSERT_STR_EQ(p->description, "costs $5 and nothing or dflt, $HOME stays");
    ASSERT_STR_EQ(p->endpoints[0].base_url, "http://127.0.0.1:8080/v1");
    ASSERT_STR_EQ(p->endpoints[0].model, "m-1");
    ASSERT(p->endpoints[0].configured);
    /* A plain scalar is typed after expansion: k is the integer 7. */
    ASSERT_EQ(dr_param_int(p->stages[DR_STAGE_RETRIEVAL_MODE].options[0].params, "k", -1), 7);
    dynrag_pipeline_free(p);

    ASSERT_DIAG(HDR "description: ${DR_TEST_UNSET}\n",
                "t.yaml:3:14: description: undefined environment variable 'DR_TEST_UNSET' "
                "(set it, or write ${DR_TEST_UNSET:-default})");
    ASSERT_DIAG(HDR "description: \"a ${ b\"\n",
                "t.yaml:3:14: description: malformed '${': expected a variable name after "
                "'${' (write $$ for a literal '$')");
    ASSERT_DIAG(HDR "description: \"${X:-abc\"\n",
                "t.yaml:3:14: description: malformed '${X:-': missing '}'");
    ASSERT_DIAG(HDR "description: \"${X abc}\"\n",
                "t.yaml:3:14: description: malformed '${X': expected '}' or ':-default}' after "
                "the variable name");
    /* The expanded text is type-checked like any value. */
    setenv("DR_TEST_K", "many", 1);
    ASSERT_DIAG(HDR "stages: {context: {options: [{name: c, kind: topk, params: {k: "
                    "'${DR_TEST_K}'}}]}}\n",
                "t.yaml:3:64: stages.context.options[0].params.k: expected an integer, got "
                "string 'many'");
    unsetenv("DR_TEST_K");
    unsetenv("DR_TEST_URL");
    unsetenv("DR_TEST_EMPTY");
}

TEST(pipeline_endpoint_unconfigured_loads_offline)
{
    unsetenv("DR_TEST_NOPE_URL");
    dynrag_pipeline *p = load_ok(HDR "endpoints:\n"
                                     "  llm:\n"
                                     "    base_url: ${DR_TEST_NOPE_URL:-}\n"
                                     "    model: gpt\n"
                                     "    api_key_env: DR_TEST_KEY\n"
                                     "stages:\n"
                                     "  generator:\n"
                                     "    options:\n"
                                     "      - {name: ext, kind: extractive}\n"
                                     "      - {name: llm, kind: openai, endpoint: llm}\n");
    ASSERT(p != NULL);
    ASSERT_EQ(p->n_endpoints, 1);
    ASSERT_STR_EQ(p->endpoints[0].base_url, "");
    ASSERT(!p->endpoints[0].configured);
    ASSERT_STR_EQ(p->endpoints[0].api_key_env, "DR_TEST_KEY");
    const dr_stage *g = &p->stages[DR_STAGE_GENERATOR];
    ASSERT(g->options[0].available);
    ASSERT(!g->options[1].available);
    ASSERT(g->options[1].endpoint == &p->endpoints[0]);
    char *json = dynrag_pipeline_to_json(p);
    ASSERT(json != NULL);
    cJSON *j = cJSON_Parse(json);
    free(json);
    ASSERT(j != NULL);
    const cJSON *ep = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "endpoints"), "llm");
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(ep, "configured")));
    ASSERT_STR_EQ(cJSON_GetObjectItem(ep, "api_key_env")->valuestring, "DR_TEST_KEY");
    const cJSON *gen = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "stages"), "generator");
    const cJSON *o1 = cJSON_GetArrayItem(cJSON_GetObjectItem(gen, "options"), 1);
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(o1, "available")));
    ASSERT_STR_EQ(cJSON_GetObjectItem(o1, "endpoint")->valuestring, "llm");
    cJSON_Delete(j);
    dynrag_pipeline_free(p);
}

TEST(pipeline_relative_paths_and_full_fixture)
{
    const char *fx = DYNRAG_SOURCE_DIR "/tests/fixtures/pipelines/valid-full.yaml";
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = NULL;
    dynrag_error err;
    ASSERT_OK(dynrag_pipeline_load(fx, &p, &d, &err), &err);
    ASSERT_EQ(dynrag_diags_count(d), 0);
    dynrag_diags_free(d);
    char *dir = realpath(DYNRAG_SOURCE_DIR "/tests/fixtures/pipelines", NULL);
    ASSERT(dir != NULL);
    char want[4096];
    ASSERT_STR_EQ(p->base_dir, dir);
    snprintf(want, sizeof(want), "%s/../idx", dir);
    ASSERT_STR_EQ(dynrag_pipeline_index_dir(p), want);
    snprintf(want, sizeof(want), "%s/runs/full.jsonl", dir);
    ASSERT_STR_EQ(p->log_path, want);
    char *abs = dr_pipeline_resolve_path(p, "/etc/x");
    ASSERT_STR_EQ(abs, "/etc/x");
    free(abs);
    char *rel = dr_pipeline_resolve_path(p, "a/b");
    snprintf(want, sizeof(want), "%s/a/b", dir);
    ASSERT_STR_EQ(rel, want);
    free(rel);
    ASSERT_NEAR(p->budget.usd, 0.01, 1e-12);
    ASSERT_NEAR(p->budget.energy_wh, 1.5, 1e-12);

    /* Prompt: a file's text is loaded into params.template. */
    const dr_stage *pr = &p->stages[DR_STAGE_PROMPT];
    ASSERT_CONTAINS(dr_param_str(pr->options[0].params, "template", ""), "{{like this}}");
    snprintf(want, sizeof(want), "%s/prompt.txt", dir);
    ASSERT_STR_EQ(dr_param_str(pr->options[0].params, "file", ""), want);
    ASSERT_STR_EQ(pr->router.type, "classifier");
    snprintf(want, sizeof(want), "%s/router-model.bin", dir);
    ASSERT_STR_EQ(dr_param_str(pr->router.params, "model", ""), want);
    ASSERT_STR_EQ(dr_param_str(cJSON_GetObjectItem(pr->router.params, "labels"), "short", ""),
                  "inline");
    /* Routers: defaults filled in. */
    const dr_stage *em = &p->stages[DR_STAGE_EMBEDDER];
    ASSERT_STR_EQ(dr_param_str(em->router.params, "algorithm", ""), "linucb");
    ASSERT_EQ(dr_param_int(em->router.params, "seed", -1), 42);
    ASSERT_NEAR(dr_param_num(em->router.params, "epsilon", -1), 0.1, 1e-12);
    snprintf(want, sizeof(want), "%s/state/bandit.json", dir);
    ASSERT_STR_EQ(dr_param_str(em->router.params, "state", ""), want);
    const dr_stage *rm = &p->stages[DR_STAGE_RETRIEVAL_MODE];
    ASSERT_EQ(dr_param_int(rm->router.params, "k", -1), 5);
    ASSERT_NEAR(dr_param_num(rm->router.params, "min_similarity", -1), 0.2, 1e-12);
    const dr_stage *gen = &p->stages[DR_STAGE_GENERATOR];
    ASSERT_EQ(dr_param_int(gen->router.params, "samples", -1), 3);
    ASSERT_EQ(gen->fallback, 0);
    ASSERT(gen->options[1].available);
    ASSERT(!gen->options[2].available);
    ASSERT_NEAR(gen->options[1].cost.usd_per_1k_output, 0.0006, 1e-15);
    ASSERT_NEAR(gen->options[0].quality, 0.4, 1e-12);
    const dr_stage *ix = &p->stages[DR_STAGE_INDEX];
    const cJSON *rules = cJSON_GetObjectItem(ix->router.params, "rules");
    ASSERT_EQ(cJSON_GetArraySize(rules), 2);
    const cJSON *when1 = cJSON_GetObjectItem(cJSON_GetArrayItem(rules, 1), "when");
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(when1, "question_words")), 2);
    ASSERT_STR_EQ(dr_param_str(ix->router.params, "default", ""), "vectors");
    ASSERT_EQ(dr_stage_find_option(ix, "both"), 2);
    ASSERT_EQ(dr_stage_find_option(ix, "nope"), -1);
    free(dir);
    dynrag_pipeline_free(p);
}

TEST(pipeline_spec_helpers)
{
    for (int i = 0; i < DR_STAGE_COUNT; i++)
        ASSERT_EQ(dr_stage_from_name(dr_stage_name((dr_stage_id)i)), i);
    ASSERT_STR_EQ(dr_stage_name(DR_STAGE_RETRIEVAL_MODE), "retrieval_mode");
    ASSERT_STR_EQ(dr_stage_name(DR_STAGE_GENERATOR), "generator");
    ASSERT_EQ(dr_stage_from_name("generatr"), -1);
    ASSERT_EQ(dr_stage_from_name(NULL), -1);
    cJSON *j = cJSON_Parse("{\"n\": 2.5, \"i\": 7, \"b\": true, \"s\": \"x\"}");
    ASSERT(j != NULL);
    ASSERT_NEAR(dr_param_num(j, "n", 0), 2.5, 0);
    ASSERT_NEAR(dr_param_num(j, "missing", -3), -3, 0);
    ASSERT_EQ(dr_param_int(j, "i", 0), 7);
    ASSERT_EQ(dr_param_int(j, "s", 9), 9);
    ASSERT_EQ(dr_param_bool(j, "b", false), true);
    ASSERT_EQ(dr_param_bool(j, "i", false), false);
    ASSERT_STR_EQ(dr_param_str(j, "s", NULL), "x");
    ASSERT(dr_param_str(j, "n", NULL) == NULL);
    cJSON_Delete(j);
    ASSERT_EQ(dr_param_int(NULL, "x", 4), 4);
    char *r = dr_pipeline_resolve_path(NULL, "a/b");
    ASSERT_STR_EQ(r, "a/b");
    free(r);
}

TEST(pipeline_schema_table_consistent)
{
    /* Every row's owner exists, defaults are in range and of the right type. */
    for (size_t i = 0; i < dr_n_param_rows; i++) {
        const dr_param_row *r = &dr_param_rows[i];
        const char *dot = strchr(r->owner, '.');
        bool known = strcmp(r->owner, "endpoint") == 0 || strcmp(r->owner, "budget") == 0 ||
                     strcmp(r->owner, "cost") == 0 || strncmp(r->owner, "rules.", 6) == 0 ||
                     strncmp(r->owner, "knn.", 4) == 0;
        if (!known && dot != NULL && strncmp(r->owner, "router.", 7) == 0)
            known = dr_schema_router(dot + 1) != NULL;
        else if (!known && dot != NULL) {
            char stage[32];
            snprintf(stage, sizeof(stage), "%.*s", (int)(dot - r->owner), r->owner);
            int id = dr_stage_from_name(stage);
            known = id >= 0 && dr_schema_kind((dr_stage_id)id, dot + 1) != NULL;
        }
        if (!known)
            test_fail_(__FILE__, __LINE__, "row %zu: unknown owner '%s'", i, r->owner);
        ASSERT(known);
        if (r->dflt != NULL && (r->type == DR_PT_INT || r->type == DR_PT_NUM)) {
            double x = 0;
            ASSERT_EQ(dr_parse_double(r->dflt, r->min, r->max, &x), DYNRAG_OK);
            if (r->type == DR_PT_INT)
                ASSERT(x == floor(x));
        }
        if (r->type == DR_PT_ENUM) {
            ASSERT(r->extra != NULL && r->dflt != NULL);
            ASSERT(strstr(r->extra, r->dflt) != NULL);
        }
        if (r->flags & DR_PF_REQUIRED)
            ASSERT(r->dflt == NULL);
        for (size_t k = 0; k < i; k++)
            ASSERT(!(strcmp(dr_param_rows[k].owner, r->owner) == 0 &&
                     strcmp(dr_param_rows[k].key, r->key) == 0));
    }
    /* Every stage has at least one kind and its default kind exists. */
    dynrag_pipeline *p = load_ok(HDR);
    ASSERT(p != NULL);
    for (int s = 0; s < DR_STAGE_COUNT; s++)
        ASSERT(dr_schema_kind((dr_stage_id)s, p->stages[s].options[0].kind) != NULL);
    dynrag_pipeline_free(p);
}

TEST(pipeline_errors_structure)
{
    /* A UTF-8 byte-order mark at the start is allowed (YAML allows it). */
    dynrag_pipeline *bom = load_ok("\xEF\xBB\xBF" HDR);
    ASSERT(bom != NULL);
    dynrag_pipeline_free(bom);
    ASSERT_DIAG(HDR "nmae: x\n", "t.yaml:3:1: nmae: unknown key 'nmae' (did you mean 'name'?)");
    ASSERT_DIAG("name: t\n", "t.yaml:1:1: missing required key 'version'");
    ASSERT_DIAG("version: 1\n", "t.yaml:1:1: missing required key 'name'");
    ASSERT_DIAG("version: 3\nname: t\n",
                "t.yaml:1:10: version: unsupported version 3 (this dynrag reads version 1)");
    ASSERT_DIAG("version: one\nname: t\n",
                "t.yaml:1:10: version: expected an integer, got string 'one'");
    ASSERT_DIAG("version: 1\nname: a b\n", "t.yaml:2:7: name: invalid pipeline name 'a b': use "
                                           "1 to 128 letters, digits, '_', '.' or '-'");
    ASSERT_DIAG(HDR "stages:\n  retreival_mode: {}\n",
                "t.yaml:4:3: stages.retreival_mode: unknown stage 'retreival_mode' (did you "
                "mean 'retrieval_mode'?)");
    ASSERT_DIAG(HDR "stages:\n  index:\n    options: [{name: a, kind: bm52}]\n",
                "t.yaml:5:31: stages.index.options[0].kind: unknown kind 'bm52' for stage "
                "'index' (expected one of: bm25, dense, hybrid) (did you mean 'bm25'?)");
    ASSERT_DIAG(HDR "stages:\n  index:\n    options: [{name: a, kind: bm25}]\n"
                    "    router: {type: clasifier}\n",
                "t.yaml:6:20: stages.index.router.type: unknown router 'clasifier' (did you "
                "mean 'classifier'?)");
    ASSERT_DIAG(HDR "stages:\n  index:\n    options: [{name: a, kind: bm25}]\n    rooter: {}\n",
                "t.yaml:6:5: stages.index.rooter: unknown key 'rooter' (did you mean 'router'?)");
    ASSERT_DIAG(HDR "stages:\n  index:\n    options:\n      - {name: a, kind: bm25}\n"
                    "      - {name: a, kind: dense}\n",
                "t.yaml:7:16: stages.index.options[1].name: duplicate option name 'a' (first "
                "at line 6)");
    ASSERT_DIAG(HDR "stages:\n  index: {}\n",
                "t.yaml:4:10: stages.index: missing required key 'options'");
    ASSERT_DIAG(HDR "stages:\n  index: {options: []}\n",
                "t.yaml:4:20: stages.index.options: expected a list of at least one option, "
                "got an empty list");
    ASSERT_DIAG(HDR "stages:\n  index:\n    options: [{kind: bm25}]\n",
                "t.yaml:5:15: stages.index.options[0]: missing required key 'name'");
    ASSERT_DIAG(HDR "stages:\n  generator:\n", "t.yaml:4:13: stages.generator: expected a "
                                                 "mapping, got null");
    /* A quoted key cut at 64 bytes inside a 2-byte character stays UTF-8. */
    char yaml[256];
    snprintf(yaml, sizeof(yaml), HDR "%s\xc3\xa9: 1\n",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    char *out = diags_of(yaml, NULL);
    ASSERT(out != NULL);
    ASSERT(dr_utf8_valid(out, strlen(out), NULL));
    ASSERT_CONTAINS(out, "aaa?'");
    free(out);
}

TEST(pipeline_errors_values)
{
    ASSERT_DIAG(HDR "stages:\n  index:\n    options: [{name: a, kind: bm25, params: {b: abc}}]\n",
                "t.yaml:5:49: stages.index.options[0].params.b: expected a number, got string "
                "'abc'");
    ASSERT_DIAG(HDR "stages:\n  index:\n    options: [{name: a, kind: bm25, params: {b: 1.5}}]\n",
                "t.yaml:5:49: stages.index.options[0].params.b: must be from 0 to 1, got 1.5");
    ASSERT_DIAG(HDR "stages:\n  context:\n    options: [{name: a, kind: topk, params: {k: 2.5}}]\n",
                "t.yaml:5:49: stages.context.options[0].params.k: expected an integer, got "
                "number 2.5");
    ASSERT_DIAG(HDR "stages:\n  context:\n    options: [{name: a, kind: topk, params: {k: 0}}]\n",
                "t.yaml:5:49: stages.context.options[0].params.k: must be from 1 to 1000, got 0");
    ASSERT_DIAG(HDR "stages:\n  context:\n    options: [{name: a, kind: topk, params: {kk: 3}}]\n",
                "t.yaml:5:46: stages.context.options[0].params.kk: unknown key 'kk' (did you "
                "mean 'k'?)");
    ASSERT_DIAG(HDR "stages:\n  retrieval_mode:\n    options: [{name: a, kind: none, params: "
                    "{k: 3}}]\n",
                "t.yaml:5:46: stages.retrieval_mode.options[0].params.k: unknown key 'k' (takes "
                "no keys here)");
    ASSERT_DIAG(HDR "stages:\n  generator:\n    options: [{name: a, kind: openai, endpoint: e, "
                    "params: {logprobs: yes}}]\nendpoints: {e: {}}\n",
                "t.yaml:5:71: stages.generator.options[0].params.logprobs: expected true or "
                "false, got string 'yes'");
    ASSERT_DIAG(HDR "stages:\n  generator:\n    options: [{name: a, kind: extractive}, {name: b, "
                    "kind: extractive}]\n    router: {type: cascade, params: {judge: "
                    "logprob_margin, threshold: 1.5}}\n",
                "t.yaml:6:72: stages.generator.router.params.threshold: must be from 0 to 1, got "
                "1.5");
    ASSERT_DIAG(HDR "budget: {usd: -1}\n", "t.yaml:3:15: budget.usd: must be from 0 to 1e+12, "
                                           "got -1");
    ASSERT_DIAG(HDR "budget: {dollars: 1}\n",
                "t.yaml:3:10: budget.dollars: unknown key 'dollars'");
    ASSERT_DIAG(HDR "stages:\n  index:\n    options: [{name: a, kind: bm25, quality: 2}]\n",
                "t.yaml:5:46: stages.index.options[0].quality: must be from 0 to 1, got 2");
    ASSERT_DIAG(HDR "stages:\n  index:\n    options: [{name: a, kind: bm25, cost: {usd: 1}}]\n",
                "t.yaml:5:44: stages.index.options[0].cost.usd: unknown key 'usd'");
    ASSERT_DIAG(HDR "description: [a]\n", "t.yaml:3:14: description: expected a string, got a "
                                          "list");
    ASSERT_DIAG(HDR "stages:\n  generator:\n    options: [{name: a, kind: openai}]\n",
                "t.yaml:5:15: stages.generator.options[0]: kind 'openai' requires an "
                "'endpoint'");
}

TEST(pipeline_errors_references)
{
    ASSERT_DIAG(HDR "endpoints: {llm: {model: m}}\nstages:\n  generator:\n    options: [{name: "
                    "a, kind: openai, endpoint: lm}]\n",
                "t.yaml:6:49: stages.generator.options[0].endpoint: undefined endpoint 'lm' "
                "(did you mean 'llm'?)");
    ASSERT_DIAG(HDR "stages:\n  generator:\n    options: [{name: a, kind: openai, endpoint: x}]\n",
                "t.yaml:5:49: stages.generator.options[0].endpoint: undefined endpoint 'x' (no "
                "endpoints are declared)");
    ASSERT_DIAG(HDR "stages:\n  index:\n    options: [{name: bm, kind: bm25}]\n"
                    "    router: {type: fixed, params: {option: bn}}\n",
                "t.yaml:6:44: stages.index.router.params.option: unknown option 'bn' in stage "
                "'index' (did you mean 'bm'?)");
    ASSERT_DIAG(HDR "stages:\n  index:\n    options: [{name: bm25, kind: bm25}]\n"
                    "    router: {type: fixed}\n",
                "t.yaml:6:13: stages.index.router.params: missing required key 'option'");
    ASSERT_DIAG(HDR "stages:\n  index:\n    options: [{name: bm25, kind: bm25}]\n"
                    "    fallback: bm52\n",
                "t.yaml:6:15: stages.index.fallback: unknown option 'bm52' in stage 'index' "
                "(did you mean 'bm25'?)");
    ASSERT_DIAG(HDR "stages:\n  index:\n    options: [{name: bm25, kind: bm25}]\n"
                    "    router: {type: cascade}\n",
                "t.yaml:6:20: stages.index.router.type: router 'cascade' is not allowed on "
                "stage 'index' (only on: context, generator)");
    ASSERT_DIAG(HDR "stages:\n  context:\n    options: [{name: a, kind: topk, quality: 0.5}, "
                    "{name: b, kind: tokens}]\n    router: {type: cost}\n",
                "t.yaml:5:52: stages.context.options[1]: option 'b' needs a 'quality' for the "
                "cost router (or set the router's quality_model)");
    ASSERT_DIAG(HDR "stages:\n  context:\n    options: [{name: a, kind: topk}]\n"
                    "    router: {type: knn, params: {default: a}}\n",
                "t.yaml:6:13: stages.context.router.params: the knn router needs 'examples', "
                "'examples_file' or both");
    ASSERT_DIAG(HDR "stages:\n  context:\n    options: [{name: a, kind: topk}]\n"
                    "    router: {type: bandit, params: {algorithm: ucb}}\n",
                "t.yaml:6:48: stages.context.router.params.algorithm: unknown value 'ucb' "
                "(expected one of: epsilon_greedy, ucb1, linucb) (did you mean 'ucb1'?)");
    ASSERT_DIAG(HDR "stages:\n  context:\n    options: [{name: a, kind: topk, "
                    "params: {order: coverge}}]\n",
                "t.yaml:5:53: stages.context.options[0].params.order: unknown value 'coverge' "
                "(expected one of: rank, coverage) (did you mean 'coverage'?)");
    char want[2048];
    snprintf(want, sizeof(want), "t.yaml:6:48: stages.context.router.params.model: file "
             "'%s/nope.bin' does not exist or is not a readable file (relative paths are "
             "resolved against the pipeline file's folder)", test_tmpdir());
    ASSERT_DIAG(HDR "stages:\n  context:\n    options: [{name: a, kind: topk}]\n"
                    "    router: {type: classifier, params: {model: nope.bin, labels: {x: a}}}\n",
                want);
    ASSERT_DIAG(HDR "stages:\n  context:\n    options: [{name: a, kind: topk}]\n"
                    "    router:\n      type: rules\n      params:\n        default: a\n"
                    "        rules:\n          - {when: {regex: 'a(b'}, option: a}\n",
                "t.yaml:11:28: stages.context.router.params.rules[0].when.regex: invalid regex "
                "'a(b': Unmatched ( or \\(");
    ASSERT_DIAG(HDR "stages:\n  context:\n    options: [{name: a, kind: topk}]\n"
                    "    router:\n      type: rules\n      params:\n        default: a\n"
                    "        rules:\n          - {when: {regex: '((a{100}){100}){100}'}, option: "
                    "a}\n",
                "t.yaml:11:28: stages.context.router.params.rules[0].when.regex: regex too large "
                "(at most 1024 characters, and repetitions ({n}, +) may expand to at most "
                "20000 atoms)");
    /* "+" copies its operand (x+ is x x*): a run of them doubles each time. */
    ASSERT_DIAG(HDR "stages:\n  context:\n    options: [{name: a, kind: topk}]\n"
                    "    router:\n      type: rules\n      params:\n        default: a\n"
                    "        rules:\n          - {when: {regex: '(a{9}.)++++++++++++++++++++++++++++'},"
                    " option: a}\n",
                "t.yaml:11:28: stages.context.router.params.rules[0].when.regex: regex too large "
                "(at most 1024 characters, and repetitions ({n}, +) may expand to at most "
                "20000 atoms)");
    ASSERT_DIAG(HDR "endpoints: {e: {api_key_env: sk-abc123}}\n",
                "t.yaml:3:30: endpoints.e.api_key_env: must be the name of an environment "
                "variable holding the key (e.g. DYNRAG_LLM_API_KEY), never the key itself");
}

/* The message names the resolved path, which depends on the tmpdir. */
TEST(pipeline_errors_prompt)
{
    ASSERT_DIAG(HDR "stages:\n  prompt:\n    options: [{name: p, kind: template, params: "
                    "{template: 'Q: {qestion}'}}]\n",
                "t.yaml:5:60: stages.prompt.options[0].params.template: unknown placeholder "
                "'{qestion}' (did you mean '{question}'?); allowed: {question}, {context}, "
                "{steps} ({{ and }} are literal braces)");
    ASSERT_DIAG(HDR "stages:\n  prompt:\n    options: [{name: p, kind: template, params: "
                    "{template: 'Q: {question'}}]\n",
                "t.yaml:5:60: stages.prompt.options[0].params.template: unmatched '{' at "
                "character 4 (write {{ for a literal brace)");
    ASSERT_DIAG(HDR "stages:\n  prompt:\n    options: [{name: p, kind: template, params: "
                    "{template: 'a } b'}}]\n",
                "t.yaml:5:60: stages.prompt.options[0].params.template: unmatched '}' at "
                "character 3 (write }} for a literal brace)");
    ASSERT_DIAG(HDR "stages:\n  prompt:\n    options: [{name: p, kind: template}]\n",
                "t.yaml:5:15: stages.prompt.options[0].params: missing 'template' or 'file' "
                "(exactly one is required)");
    test_write_file("p.txt", "{question} {nope}");
    ASSERT_DIAG(HDR "stages:\n  prompt:\n    options: [{name: p, kind: template, params: "
                    "{template: '{question}', file: p.txt}}]\n",
                "t.yaml:5:15: stages.prompt.options[0].params: give exactly one of 'template' "
                "and 'file', not both");
    char want[2048];
    snprintf(want, sizeof(want),
             "t.yaml:5:15: stages.prompt.options[0].params: template file '%s/p.txt': unknown "
             "placeholder '{nope}'; allowed: {question}, {context}, {steps} ({{ and }} are "
             "literal braces)", test_tmpdir());
    ASSERT_DIAG(HDR "stages:\n  prompt:\n    options: [{name: p, kind: template, params: "
                    "{file: p.txt}}]\n", want);
    test_write_file("bad.txt", "{question} \xff");
    snprintf(want, sizeof(want),
             "t.yaml:5:15: stages.prompt.options[0].params: template file '%s/bad.txt' is not "
             "UTF-8 text (byte 11)", test_tmpdir());
    ASSERT_DIAG(HDR "stages:\n  prompt:\n    options: [{name: p, kind: template, params: "
                    "{file: bad.txt}}]\n", want);
    snprintf(want, sizeof(want),
             "t.yaml:5:56: stages.prompt.options[0].params.file: file '%s/missing.txt' does "
             "not exist or is not a readable file (relative paths are resolved against the "
             "pipeline file's folder)", test_tmpdir());
    ASSERT_DIAG(HDR "stages:\n  prompt:\n    options: [{name: p, kind: template, params: "
                    "{file: missing.txt}}]\n", want);
    /* A file template is fine; the default template passes its own check. */
    char msg[256];
    ASSERT(dr_template_check(dr_prompt_default_template, msg, sizeof(msg)));
    ASSERT(dr_template_check("{{x}} {steps}", msg, sizeof(msg)));
}

TEST(pipeline_errors_yaml_level)
{
    ASSERT_DIAG("", "t.yaml:1:1: empty document: expected a pipeline mapping with at least "
                    "'version' and 'name'");
    ASSERT_DIAG("# only a comment\n", "t.yaml:1:1: empty document: expected a pipeline mapping "
                                      "with at least 'version' and 'name'");
    ASSERT_DIAG("---\n", "t.yaml:2:1: empty document: expected a pipeline mapping with at "
                         "least 'version' and 'name'");
    ASSERT_DIAG("- a\n- b\n", "t.yaml:1:1: expected a mapping at the top level, got a list");
    ASSERT_DIAG(HDR "---\nversion: 1\n", "t.yaml:3:1: more than one YAML document: a pipeline "
                                          "file holds exactly one");
    ASSERT_DIAG(HDR "description: \"caf\xe9\"\n",
                "t.yaml:3:18: invalid UTF-8 at byte 36 (line 3, column 18): pipeline files must "
                "be UTF-8");
    ASSERT_DIAG(HDR "a: &x 1\nb: *x\n", "t.yaml:4:4: YAML aliases (*x) are not supported");
    ASSERT_DIAG(HDR "a: &x 1\n", "t.yaml:3:4: YAML anchors (&x) are not supported");
    ASSERT_DIAG(HDR "a: !custom 1\n", "t.yaml:3:4: YAML tags (!custom) are not supported");
    ASSERT_DIAG(HDR "description: x\ndescription: y\n",
                "t.yaml:4:1: description: duplicate key 'description' (first at line 3)");
    ASSERT_DIAG(HDR "? [a]\n: 1\n", "t.yaml:3:3: mapping keys must be plain strings");
    ASSERT_DIAG(HDR "stages:\n  index:\n\toptions: []\n",
                "t.yaml:5:1: tab character in indentation (YAML indents with spaces only)");
    ASSERT_DIAG(HDR "stages: {index: [}\n",
                "t.yaml:3:18: YAML syntax error: did not find expected node content (while "
                "parsing a flow node at line 3, column 18)");
    ASSERT_DIAG(HDR "description: \"a\\0b\"\n", "t.yaml:3:14: string contains a NUL character");
    /* Nesting cap. */
    char deep[400] = "version: 1\nname: t\nx: ";
    for (int i = 0; i < 70; i++)
        strcat(deep, "[");
    ASSERT_DIAG(deep, "t.yaml:3:67: nesting deeper than 64 levels");
    /* Size cap: DYNRAG_ERR_LIMIT. */
    size_t n = DR_PIPELINE_MAX_BYTES + 1;
    char *big = malloc(n + 1);
    ASSERT(big != NULL);
    memset(big, '#', n);
    big[n] = '\0';
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = NULL;
    dynrag_error err;
    int rc = dynrag_pipeline_load_string(big, n, "big.yaml", NULL, &p, &d, &err);
    ASSERT_EQ(rc, DYNRAG_ERR_LIMIT);
    ASSERT(p == NULL);
    ASSERT_EQ(dynrag_diags_count(d), 1);
    ASSERT_CONTAINS(dynrag_diags_get(d, 0)->message, "larger than the limit of 1 MiB");
    dynrag_diags_free(d);
    const char *path = test_write_file("big.yaml", big);
    free(big);
    rc = dynrag_pipeline_load(path, &p, &d, &err);
    ASSERT_EQ(rc, DYNRAG_ERR_LIMIT);
    ASSERT(p == NULL);
    dynrag_diags_free(d);
    rc = dynrag_pipeline_load("/nonexistent/x.yaml", &p, NULL, &err);
    ASSERT_EQ(rc, DYNRAG_ERR_NOTFOUND);
}

TEST(pipeline_every_error_reported_in_order)
{
    const char *fx = DYNRAG_SOURCE_DIR "/tests/fixtures/pipelines/invalid-many.yaml";
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = NULL;
    dynrag_error err;
    ASSERT_EQ(dynrag_pipeline_load(fx, &p, &d, &err), DYNRAG_ERR_PARSE);
    ASSERT(p == NULL);
    ASSERT_EQ(dynrag_diags_count(d), 7);
    for (size_t i = 1; i < dynrag_diags_count(d); i++) {
        const dynrag_diag *a = dynrag_diags_get(d, i - 1), *b = dynrag_diags_get(d, i);
        ASSERT(a->line < b->line || (a->line == b->line && a->col <= b->col));
    }
    const dynrag_diag *g = dynrag_diags_get(d, 5);
    ASSERT_STR_EQ(g->file, fx);
    ASSERT_EQ(g->line, 8);
    ASSERT_EQ(g->col, 20);
    ASSERT_STR_EQ(g->path, "stages.index.router.type");
    ASSERT_STR_EQ(g->message, "unknown router 'clasifier' (did you mean 'classifier'?)");
    ASSERT(dynrag_diags_get(d, 7) == NULL);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "invalid-many.yaml:1:10: version: unsupported version 2");
    ASSERT_CONTAINS(dynrag_errmsg(&err), "(7 errors)");
    dynrag_diags_free(d);
}

TEST(pipeline_cli_validate_and_show)
{
    char cmd[4096], *out = NULL;
    const char *fx = DYNRAG_SOURCE_DIR "/tests/fixtures/pipelines";
    snprintf(cmd, sizeof(cmd), "%s validate %s/valid-full.yaml " DYNRAG_SOURCE_DIR
             "/pipelines/naive-rag.yaml", test_cli_path(), fx);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "valid-full.yaml: OK\n");
    ASSERT_CONTAINS(out, "naive-rag.yaml: OK\n");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s validate %s/valid-full.yaml %s/invalid-many.yaml",
             test_cli_path(), fx, fx);
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "valid-full.yaml: OK\n");
    ASSERT_CONTAINS(out, "invalid-many.yaml:8:20: stages.index.router.type: unknown router "
                         "'clasifier' (did you mean 'classifier'?)\n");
    ASSERT_CONTAINS(out, "invalid-many.yaml:9:3: stages.generatr: unknown stage 'generatr'");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s validate /nonexistent/p.yaml", test_cli_path());
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "/nonexistent/p.yaml");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s validate", test_cli_path());
    ASSERT_EQ(test_run(cmd, &out), 2);
    free(out);
    snprintf(cmd, sizeof(cmd), "%s validate --bogus x.yaml", test_cli_path());
    ASSERT_EQ(test_run(cmd, &out), 2);
    free(out);

    /* show: JSON with the key's variable name, never its value. */
    snprintf(cmd, sizeof(cmd), "DYNRAG_LLM_API_KEY=sk-secret-value %s show %s/valid-full.yaml",
             test_cli_path(), fx);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_NOT_CONTAINS(out, "sk-secret-value");
    cJSON *j = cJSON_Parse(out);
    ASSERT(j != NULL);
    free(out);
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "name")->valuestring, "full.example-1");
    const cJSON *llm = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "endpoints"), "llm");
    ASSERT_STR_EQ(cJSON_GetObjectItem(llm, "api_key_env")->valuestring, "DYNRAG_LLM_API_KEY");
    const cJSON *ctx = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "stages"), "context");
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(ctx, "router"), "type")->valuestring,
                  "cost");
    const cJSON *o1 = cJSON_GetArrayItem(cJSON_GetObjectItem(ctx, "options"), 1);
    ASSERT_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(o1, "params"), "max_tokens")->valueint,
              1500);
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(ctx, "options")->child->next
                                                ->next, "endpoint")));
    cJSON_Delete(j);
    snprintf(cmd, sizeof(cmd), "%s show %s/invalid-many.yaml", test_cli_path(), fx);
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "unknown router 'clasifier'");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s show a.yaml b.yaml", test_cli_path());
    ASSERT_EQ(test_run(cmd, &out), 2);
    free(out);
    snprintf(cmd, sizeof(cmd), "%s show", test_cli_path());
    ASSERT_EQ(test_run(cmd, &out), 2);
    free(out);
}

TEST(pipeline_examples_file_checked)
{
    test_write_file("ex.jsonl", "{\"query\": \"q\", \"option\": \"a\"}\nnot json\n"
                                "{\"query\": \"q\", \"option\": \"zz\"}\n");
    char want[2048];
    snprintf(want, sizeof(want),
             "t.yaml:6:49: stages.context.router.params.examples_file: examples file "
             "'%s/ex.jsonl' line 2: not valid JSON", test_tmpdir());
    const char *yaml = HDR "stages:\n  context:\n    options: [{name: a, kind: topk}]\n"
                           "    router: {type: knn, params: {examples_file: ex.jsonl, default: "
                           "a}}\n";
    ASSERT_DIAG(yaml, want);
    snprintf(want, sizeof(want),
             "t.yaml:6:49: stages.context.router.params.examples_file: examples file "
             "'%s/ex.jsonl' line 3: unknown option 'zz' in stage 'context'", test_tmpdir());
    ASSERT_DIAG(yaml, want);
    test_write_file("ex.jsonl", "{\"query\": \"q\", \"option\": \"a\"}\n[1]\n");
    snprintf(want, sizeof(want),
             "t.yaml:6:49: stages.context.router.params.examples_file: examples file "
             "'%s/ex.jsonl' line 2: expected a JSON object with string \"query\" and \"option\"",
             test_tmpdir());
    ASSERT_DIAG(yaml, want);
    test_write_file("ex.jsonl", "{\"query\": \"q\", \"option\": \"a\"}\n");
    dynrag_pipeline *p = load_ok(yaml);
    ASSERT(p != NULL);
    dynrag_pipeline_free(p);
}

TEST(pipeline_shipped_files_load)
{
    /* Every pipeline in pipelines/ loads without a diagnostic (models,
     * example files and templates it names included). */
    DIR *d = opendir(DYNRAG_SOURCE_DIR "/pipelines");
    ASSERT(d != NULL);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".yaml") != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/pipelines/%s", DYNRAG_SOURCE_DIR, de->d_name);
        dynrag_pipeline *p = NULL;
        dynrag_diags *dg = NULL;
        dynrag_error err;
        dynrag_error_clear(&err);
        int rc = dynrag_pipeline_load(path, &p, &dg, &err);
        if (rc != DYNRAG_OK) {
            char *t = dg ? dynrag_diags_format(dg) : NULL;
            fprintf(stderr, "%s: %s\n", path, t ? t : dynrag_errmsg(&err));
            free(t);
        }
        ASSERT_EQ(rc, DYNRAG_OK);
        ASSERT_EQ(dg ? dynrag_diags_count(dg) : 0, 0);
        dynrag_diags_free(dg);
        dynrag_pipeline_free(p);
        n++;
    }
    closedir(d);
    ASSERT_GT(n, 7); /* naive-rag, adaptive-rag, ..., knn-router */
}

