/* test_engine.c - the pipeline engine: stages, routers, budget, cascades, route log. */
#include "test.h"
#include "test_net_util.h"

#include "dynrag/engine.h"
#include "dynrag/index.h"
#include "dynrag/pipeline.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static const char *const corpus_jsonl =
    "{\"_id\":\"france\",\"title\":\"France\",\"text\":\"France is a country in Western Europe. "
    "The capital of France is Paris, which is also its largest city. France has a population "
    "of about 68 million people.\"}\n"
    "{\"_id\":\"eiffel\",\"title\":\"Eiffel Tower\",\"text\":\"The Eiffel Tower is a wrought-iron "
    "lattice tower on the Champ de Mars. It was designed by the engineering company of Gustave "
    "Eiffel and completed in 1889. The tower is located in France.\"}\n"
    "{\"_id\":\"sqlite\",\"title\":\"SQLite\",\"text\":\"SQLite is a C library that implements a "
    "small, fast, self-contained SQL database engine. Write-ahead logging is enabled with "
    "PRAGMA journal_mode=WAL.\"}\n"
    "{\"_id\":\"python\",\"title\":\"Python\",\"text\":\"Python is a programming language created "
    "by Guido van Rossum. It was first released in 1991.\"}\n"
    "{\"_id\":\"moon\",\"title\":\"Moon\",\"text\":\"The Moon is the only natural satellite of the "
    "Earth. Neil Armstrong was the first person to walk on the Moon in 1969.\"}\n";

static char index_dir[4200];
static char log_path[4200];

/* Builds the tiny index under the test's tmpdir; returns 0 on success. */
static int build_index(void)
{
    char corpus[4200];
    snprintf(corpus, sizeof(corpus), "%s", test_write_file("corpus.jsonl", corpus_jsonl));
    snprintf(index_dir, sizeof(index_dir), "%s/index", test_tmpdir());
    snprintf(log_path, sizeof(log_path), "%s/route.jsonl", test_tmpdir());
    const char *inputs[] = {corpus};
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    bo.embedder.kind = "builtin";
    bo.chunk_tokens = 60;
    bo.chunk_overlap = 10;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_index_add(index_dir, inputs, 1, &bo, NULL, &err);
    if (rc != DYNRAG_OK)
        fprintf(stderr, "index: %s\n", dynrag_errmsg(&err));
    return rc;
}

/* Copies tmpl into out with "@INDEX@" and "@LOG@" replaced by the test's
 * index folder and route-log path. */
static void subst(const char *tmpl, char *out, size_t size)
{
    size_t o = 0;
    for (const char *p = tmpl; *p && o + 4300 < size;) {
        if (strncmp(p, "@INDEX@", 7) == 0) {
            o += (size_t)snprintf(out + o, size - o, "%s", index_dir);
            p += 7;
        } else if (strncmp(p, "@LOG@", 5) == 0) {
            o += (size_t)snprintf(out + o, size - o, "%s", log_path);
            p += 5;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

/* Writes a substituted pipeline to the tmpdir; returns its path (static). */
static const char *write_yaml(const char *name, const char *tmpl)
{
    static char yaml[16384];
    subst(tmpl, yaml, sizeof(yaml));
    return test_write_file(name, yaml);
}

/* Loads a pipeline from YAML text with "@INDEX@" and "@LOG@" substituted. */
static dynrag_pipeline *load_yaml(const char *yaml_tmpl)
{
    char yaml[16384];
    subst(yaml_tmpl, yaml, sizeof(yaml));
    dynrag_pipeline *pl = NULL;
    dynrag_diags *d = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_pipeline_load_string(yaml, strlen(yaml), "test.yaml", test_tmpdir(), &pl, &d,
                                    &err) != DYNRAG_OK) {
        char *t = d ? dynrag_diags_format(d) : NULL;
        fprintf(stderr, "pipeline: %s\n%s\n", dynrag_errmsg(&err), t ? t : "");
        free(t);
    }
    dynrag_diags_free(d);
    return pl;
}

static cJSON *stage_entry(cJSON *rec, const char *stage)
{
    cJSON *st;
    cJSON_ArrayForEach(st, cJSON_GetObjectItem(rec, "stages"))
    {
        cJSON *n = cJSON_GetObjectItem(st, "stage");
        if (cJSON_IsString(n) && strcmp(n->valuestring, stage) == 0)
            return st;
    }
    return NULL;
}

static const char *choice_of(cJSON *rec, const char *stage)
{
    cJSON *c = cJSON_GetObjectItem(stage_entry(rec, stage), "choice");
    return cJSON_IsString(c) ? c->valuestring : "(null)";
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static const char *const naive_yaml =
    "version: 1\n"
    "name: naive\n"
    "index: @INDEX@\n"
    "log: @LOG@\n"
    "stages:\n"
    "  index:\n"
    "    options:\n"
    "      - {name: bm25, kind: bm25}\n"
    "  context:\n"
    "    options:\n"
    "      - {name: top3, kind: topk, params: {k: 3}}\n"
    "  generator:\n"
    "    options:\n"
    "      - {name: extractive, kind: extractive, params: {threshold: 0.1, max_sentences: 1}}\n";

TEST(engine_naive_answer_and_log)
{
    if (build_index() != 0)
        ASSERT(0);
    dynrag_pipeline *p = load_yaml(naive_yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);
    dynrag_result *r = NULL;
    ASSERT_OK(dynrag_engine_query(e, "What is the capital of France?", NULL, &r, &err), &err);
    ASSERT_CONTAINS(dynrag_result_answer(r), "Paris");
    ASSERT(!dynrag_result_unanswerable(r));
    ASSERT_GE(dynrag_result_n_citations(r), 1);
    ASSERT_STR_EQ(dynrag_result_citation(r, 0)->doc_id, "france");
    ASSERT_EQ(dynrag_result_n_decisions(r), 6);
    ASSERT_STR_EQ(dynrag_result_decision(r, 0)->stage, "retrieval_mode");
    ASSERT_STR_EQ(dynrag_result_decision(r, 5)->stage, "generator");
    ASSERT_EQ(dynrag_result_totals(r)->retrieval_steps, 1);
    ASSERT_EQ(dynrag_result_totals(r)->generator_calls, 1);
    cJSON *rec = cJSON_Parse(dynrag_result_json(r));
    ASSERT(rec != NULL);
    ASSERT_STR_EQ(choice_of(rec, "index"), "bm25");
    ASSERT_STR_EQ(choice_of(rec, "generator"), "extractive");
    cJSON *ent = stage_entry(rec, "index");
    ASSERT(cJSON_IsObject(cJSON_GetObjectItem(ent, "features")));
    ASSERT(cJSON_IsObject(cJSON_GetObjectItem(ent, "cost")));
    ASSERT(cJSON_IsNumber(cJSON_GetObjectItem(ent, "latency_us")));
    ASSERT(cJSON_IsNumber(cJSON_GetObjectItem(cJSON_GetObjectItem(ent, "scores"), "bm25")));
    cJSON_Delete(rec);
    char id[128];
    snprintf(id, sizeof(id), "%s", dynrag_result_id(r));
    dynrag_result_free(r);
    /* empty and invalid questions fail cleanly and are not logged */
    ASSERT_EQ(dynrag_engine_query(e, "   ", NULL, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dynrag_engine_query(e, "bad \xff utf8", NULL, &r, &err), DYNRAG_ERR_INVALID);
    /* route-only runs nothing and logs nothing */
    dynrag_query_options qo;
    dynrag_query_options_init(&qo);
    qo.route_only = true;
    ASSERT_OK(dynrag_engine_query(e, "capital of France", &qo, &r, &err), &err);
    ASSERT_EQ(dynrag_result_totals(r)->retrieval_steps, 0);
    ASSERT_EQ(dynrag_result_n_decisions(r), 6);
    dynrag_result_free(r);
    /* feedback on a non-bandit pipeline is accepted; unknown ids are not */
    ASSERT_OK(dynrag_engine_feedback(e, id, 1.0, &err), &err);
    ASSERT_EQ(dynrag_engine_feedback(e, "nope", 1.0, &err), DYNRAG_ERR_NOTFOUND);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
    ASSERT_EQ(count_lines(log_path), 1);
    char *report = NULL, *json = NULL;
    ASSERT_OK(dynrag_log_summary(log_path, &report, &json, &err), &err);
    ASSERT_CONTAINS(report, "1 queries");
    ASSERT_CONTAINS(report, "bm25 1 (100.0%)");
    free(report);
    free(json);
}

static const char *const rules_yaml =
    "version: 1\n"
    "name: rules\n"
    "index: @INDEX@\n"
    "stages:\n"
    "  retrieval_mode:\n"
    "    options:\n"
    "      - {name: none, kind: none}\n"
    "      - {name: single, kind: single, params: {k: 5}}\n"
    "      - {name: multi, kind: multi, params: {k: 3, max_steps: 3}}\n"
    "    router:\n"
    "      type: rules\n"
    "      params:\n"
    "        rules:\n"
    "          - {when: {regex: '^(hi|hello|thanks)'}, option: none}\n"
    "          - {when: {regex: 'country where'}, option: multi}\n"
    "        default: single\n"
    "  generator:\n"
    "    options:\n"
    "      - {name: extractive, kind: extractive, params: {threshold: 0.1, max_sentences: 1}}\n";

TEST(engine_adaptive_none_single_multi)
{
    if (build_index() != 0)
        ASSERT(0);
    dynrag_pipeline *p = load_yaml(rules_yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);

    /* The rule wants `none`, but offline no generator can answer without
     * passages: `none` is unavailable, removed before routing, and the
     * record says why. */
    dynrag_result *r = NULL;
    ASSERT_OK(dynrag_engine_query(e, "hello, how are you?", NULL, &r, &err), &err);
    cJSON *rec = cJSON_Parse(dynrag_result_json(r));
    ASSERT_STR_EQ(choice_of(rec, "retrieval_mode"), "single");
    cJSON *un = cJSON_GetObjectItem(stage_entry(rec, "retrieval_mode"), "unavailable");
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(un, "none")));
    ASSERT_CONTAINS(cJSON_GetObjectItem(un, "none")->valuestring,
                    "no available generator can answer without passages");
    ASSERT_CONTAINS(cJSON_GetObjectItem(stage_entry(rec, "retrieval_mode"), "reason")->valuestring,
                    "none unavailable");
    ASSERT_EQ(dynrag_result_totals(r)->retrieval_steps, 1);
    cJSON_Delete(rec);
    dynrag_result_free(r);

    ASSERT_OK(dynrag_engine_query(e, "Who created Python?", NULL, &r, &err), &err);
    ASSERT_EQ(dynrag_result_totals(r)->retrieval_steps, 1);
    ASSERT_CONTAINS(dynrag_result_answer(r), "Guido");
    dynrag_result_free(r);

    /* Multi-step with the embedded answerer: reformulation follows a bridge
     * entity of the Eiffel Tower passage (one per step: Champ de Mars,
     * France), within max_steps. */
    ASSERT_OK(dynrag_engine_query(e, "What is the capital of the country where the Eiffel Tower "
                                     "is located?",
                                  NULL, &r, &err),
              &err);
    rec = cJSON_Parse(dynrag_result_json(r));
    ASSERT_STR_EQ(choice_of(rec, "retrieval_mode"), "multi");
    int steps = dynrag_result_totals(r)->retrieval_steps;
    ASSERT_GE(steps, 2);
    ASSERT_LE(steps, 3);
    cJSON *st2 = cJSON_GetArrayItem(cJSON_GetObjectItem(rec, "steps"), 1);
    ASSERT(st2 != NULL);
    const char *q2 = cJSON_GetObjectItem(st2, "query")->valuestring;
    ASSERT(strncmp(q2, "France ", 7) == 0 || strncmp(q2, "Champ de Mars ", 14) == 0);
    /* the bridge document was retrieved by one of the steps */
    bool found_france = false;
    cJSON *step;
    cJSON_ArrayForEach(step, cJSON_GetObjectItem(rec, "steps"))
    {
        cJSON *id;
        cJSON_ArrayForEach(id, cJSON_GetObjectItem(step, "doc_ids"))
            found_france |= cJSON_IsString(id) && strcmp(id->valuestring, "france") == 0;
    }
    ASSERT(found_france);
    cJSON_Delete(rec);
    dynrag_result_free(r);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
}

/* A generator stage with a cheap extractive option and an expensive LLM. */
static const char *const budget_yaml_tmpl =
    "version: 1\n"
    "name: budget\n"
    "index: @INDEX@\n"
    "budget: {usd: %s}\n"
    "endpoints:\n"
    "  llm: {base_url: '%s', model: big-model, max_retries: 0, timeout_s: 5}\n"
    "stages:\n"
    "  generator:\n"
    "    options:\n"
    "      - name: big\n"
    "        kind: openai\n"
    "        endpoint: llm\n"
    "        cost: {usd_per_1k_input: 10, usd_per_1k_output: 30}\n"
    "      - name: small\n"
    "        kind: extractive\n"
    "        params: {threshold: 0.1}\n"
    "    router: {type: fixed, params: {option: big}}\n";

TEST(engine_budget_enforced)
{
    if (build_index() != 0)
        ASSERT(0);
    char yaml[4096];
    /* The LLM would cost far more than $0.001: the engine must not run it. */
    snprintf(yaml, sizeof(yaml), budget_yaml_tmpl, "0.001", "http://127.0.0.1:9/v1");
    dynrag_pipeline *p = load_yaml(yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);
    dynrag_result *r = NULL;
    ASSERT_OK(dynrag_engine_query(e, "What is the capital of France?", NULL, &r, &err), &err);
    cJSON *rec = cJSON_Parse(dynrag_result_json(r));
    ASSERT_STR_EQ(choice_of(rec, "generator"), "small");
    ASSERT_CONTAINS(cJSON_GetObjectItem(stage_entry(rec, "generator"), "reason")->valuestring,
                    "budget");
    ASSERT(!dynrag_result_totals(r)->over_budget);
    ASSERT_EQ(dynrag_result_totals(r)->usd, 0);
    cJSON_Delete(rec);
    dynrag_result_free(r);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);

    /* A budget of zero with a non-free retrieval option: nothing fits, the
     * cheapest runs and the record says so. */
    const char *zero =
        "version: 1\nname: zero\nindex: @INDEX@\nbudget: {latency_ms: 0}\n"
        "stages:\n  index:\n    options:\n"
        "      - {name: dense, kind: dense, cost: {latency_ms: 50}}\n"
        "      - {name: bm25, kind: bm25, cost: {latency_ms: 5}}\n"
        "    router: {type: fixed, params: {option: dense}}\n";
    p = load_yaml(zero);
    ASSERT(p != NULL);
    ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);
    ASSERT_OK(dynrag_engine_query(e, "capital of France", NULL, &r, &err), &err);
    rec = cJSON_Parse(dynrag_result_json(r));
    ASSERT_STR_EQ(choice_of(rec, "index"), "bm25");
    ASSERT(dynrag_result_totals(r)->over_budget);
    ASSERT_CONTAINS(cJSON_GetObjectItem(stage_entry(rec, "index"), "reason")->valuestring,
                    "ran the cheapest");
    cJSON_Delete(rec);
    dynrag_result_free(r);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
}

static const char *const llm_yaml_tmpl =
    "version: 1\n"
    "name: llm\n"
    "index: @INDEX@\n"
    "log: @LOG@\n"
    "endpoints:\n"
    "  llm: {base_url: '%s', model: m1, max_retries: 1, timeout_s: 5}\n"
    "stages:\n"
    "  generator:\n"
    "    options:\n"
    "      - name: llm\n"
    "        kind: openai\n"
    "        endpoint: llm\n"
    "        cost: {usd_per_1k_input: 1, usd_per_1k_output: 2}\n"
    "      - {name: extractive, kind: extractive, params: {threshold: 0.1}}\n"
    "    router: {type: fixed, params: {option: llm}}\n"
    "    fallback: extractive\n";

TEST(engine_openai_generator_and_fallback)
{
    if (build_index() != 0)
        ASSERT(0);
    test_double d;
    if (test_double_start(&d) != 0)
        SKIP("python3 test double unavailable");
    char yaml[4096];
    snprintf(yaml, sizeof(yaml), llm_yaml_tmpl, d.base_url);
    dynrag_pipeline *p = load_yaml(yaml);
    dynrag_engine *e = NULL;
    dynrag_result *r = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (p == NULL || dynrag_engine_open(p, NULL, &e, &err) != DYNRAG_OK) {
        test_double_stop(&d);
        ASSERT(0);
    }
    int rc = dynrag_engine_query(e, "What is the capital of France?", NULL, &r, &err);
    if (rc != DYNRAG_OK)
        test_double_stop(&d);
    ASSERT_OK(rc, &err);
    ASSERT_CONTAINS(dynrag_result_answer(r), "Test double answer");
    const dynrag_totals *t = dynrag_result_totals(r);
    ASSERT_GT(t->input_tokens, 0);
    ASSERT_GT(t->output_tokens, 0);
    ASSERT_NEAR(t->usd, (double)t->input_tokens / 1000.0 + 2.0 * (double)t->output_tokens / 1000.0,
                1e-9);
    dynrag_result_free(r);

    /* 5xx until the retries run out: the fallback answers, and says so. */
    test_double_script(&d, "{\"script\": [\"500\", \"500\", \"500\"]}");
    rc = dynrag_engine_query(e, "What is the capital of France?", NULL, &r, &err);
    test_double_stop(&d);
    ASSERT_OK(rc, &err);
    cJSON *rec = cJSON_Parse(dynrag_result_json(r));
    ASSERT_STR_EQ(choice_of(rec, "generator"), "extractive");
    ASSERT_CONTAINS(cJSON_GetObjectItem(stage_entry(rec, "generator"), "reason")->valuestring,
                    "fallback to 'extractive'");
    ASSERT_CONTAINS(dynrag_result_answer(r), "Paris");
    cJSON_Delete(rec);
    dynrag_result_free(r);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
    ASSERT_EQ(count_lines(log_path), 2);
}

TEST(engine_unconfigured_endpoint_runs_offline)
{
    if (build_index() != 0)
        ASSERT(0);
    char yaml[4096];
    snprintf(yaml, sizeof(yaml), llm_yaml_tmpl, "${DYNRAG_TEST_SURELY_UNSET_URL:-}");
    dynrag_pipeline *p = load_yaml(yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_result *r = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);
    ASSERT_OK(dynrag_engine_query(e, "Who walked on the Moon first?", NULL, &r, &err), &err);
    ASSERT_CONTAINS(dynrag_result_answer(r), "Armstrong");
    ASSERT_STR_EQ(dynrag_result_decision(r, 5)->choice, "extractive");
    dynrag_result_free(r);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
}

static const char *const cascade_yaml =
    "version: 1\n"
    "name: cascade\n"
    "index: @INDEX@\n"
    "stages:\n"
    "  context:\n"
    "    options:\n"
    "      - {name: one, kind: topk, params: {k: 1}}\n"
    "      - {name: docs, kind: documents, params: {max_tokens: 4000}}\n"
    "    router: {type: cascade, params: {judge: self_route, threshold: 0.5}}\n"
    "  generator:\n"
    "    options:\n"
    "      - {name: strict, kind: extractive, params: {threshold: 1.0}}\n"
    "      - {name: lenient, kind: extractive, params: {threshold: 0.0}}\n"
    "    router: {type: cascade, params: {judge: self_route, threshold: 0.5}}\n";

TEST(engine_cascades_escalate)
{
    if (build_index() != 0)
        ASSERT(0);
    dynrag_pipeline *p = load_yaml(cascade_yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_result *r = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);
    ASSERT_OK(dynrag_engine_query(e, "When was the Eiffel Tower completed by the zebra committee?", NULL,
                                  &r, &err),
              &err);
    cJSON *rec = cJSON_Parse(dynrag_result_json(r));
    cJSON *cas = cJSON_GetObjectItem(rec, "cascade");
    ASSERT(cJSON_IsArray(cas));
    /* strict says unanswerable -> escalate to lenient, which answers */
    cJSON *a0 = cJSON_GetArrayItem(cas, 0);
    ASSERT_STR_EQ(cJSON_GetObjectItem(a0, "option")->valuestring, "strict");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(a0, "escalated")));
    ASSERT_STR_EQ(choice_of(rec, "generator"), "lenient");
    ASSERT(!dynrag_result_unanswerable(r));
    ASSERT_CONTAINS(dynrag_result_answer(r), "1889");
    ASSERT_CONTAINS(cJSON_GetObjectItem(stage_entry(rec, "generator"), "reason")->valuestring,
                    "escalated 'strict' -> 'lenient'");
    ASSERT_EQ(dynrag_result_totals(r)->generator_calls, 2);
    cJSON_Delete(rec);
    dynrag_result_free(r);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
}

/* A uniform draw in [0, 1) from a 64-bit LCG (Knuth's MMIX constants). */
static double lcg_uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / 9007199254740992.0;
}

/* Two LLM options whose test-double models give every token the logprob
 * in their name (tests/openai_double.py "@logprob=X"); the prompt is the bare
 * question, so the double's echo says "not enough information" only when
 * the question does. */
static const char *const seqlp_yaml_tmpl =
    "version: 1\n"
    "name: seqlp\n"
    "index: @INDEX@\n"
    "endpoints:\n"
    "  weak: {base_url: '%s', model: 'weak@logprob=%s', max_retries: 0, timeout_s: 5}\n"
    "  strong: {base_url: '%s', model: 'strong@logprob=-0.01', max_retries: 0, timeout_s: 5}\n"
    "stages:\n"
    "  prompt:\n"
    "    options:\n"
    "      - {name: bare, kind: template, params: {template: '{question}'}}\n"
    "  generator:\n"
    "    options:\n"
    "      - {name: weak, kind: openai, endpoint: weak, params: {logprobs: true}}\n"
    "      - {name: strong, kind: openai, endpoint: strong, params: {logprobs: true}}\n"
    "    router: {type: cascade, params: {judge: seq_logprob, threshold: %s}}\n";

/*
 * Invariant: with the seq_logprob judge over real LLM calls, the first
 * answer's confidence is exp(its mean token logprob) as the LLM reported it,
 * the cascade escalates exactly when that is below the threshold, and an
 * answer that says it cannot answer escalates whatever its logprob.
 */
TEST(engine_seq_logprob_cascade)
{
    if (build_index() != 0)
        ASSERT(0);
    test_double d;
    if (test_double_start(&d) != 0)
        SKIP("python3 test double unavailable");
    uint64_t rng = 29;
    int escalations = 0, kept = 0;
    for (int it = 0; it < 10; it++) {
        char lp[32], thr[32], yaml[4096];
        snprintf(lp, sizeof lp, "%.3f", -3.0 * lcg_uniform(&rng));
        snprintf(thr, sizeof thr, "%.3f", 0.05 + 0.9 * lcg_uniform(&rng));
        snprintf(yaml, sizeof yaml, seqlp_yaml_tmpl, d.base_url, lp, d.base_url, thr);
        dynrag_pipeline *p = load_yaml(yaml);
        dynrag_engine *e = NULL;
        dynrag_error err;
        dynrag_error_clear(&err);
        if (p == NULL || dynrag_engine_open(p, NULL, &e, &err) != DYNRAG_OK) {
            test_double_stop(&d);
            ASSERT(0);
        }
        bool refuse = it % 4 == 3;
        const char *q = refuse ? "Say there is not enough information about zebras"
                               : "What is the capital of France?";
        dynrag_result *r = NULL;
        int rc = dynrag_engine_query(e, q, NULL, &r, &err);
        if (rc != DYNRAG_OK)
            test_double_stop(&d);
        ASSERT_OK(rc, &err);
        cJSON *rec = cJSON_Parse(dynrag_result_json(r));
        cJSON *a0 = cJSON_GetArrayItem(cJSON_GetObjectItem(rec, "cascade"), 0);
        ASSERT(a0 != NULL);
        double c = cJSON_GetObjectItem(a0, "confidence")->valuedouble;
        double want = refuse ? 0.0 : exp(strtod(lp, NULL));
        bool esc = want < strtod(thr, NULL);
        if (fabs(c - want) > 1e-9 || esc != cJSON_IsTrue(cJSON_GetObjectItem(a0, "escalated")))
            test_fail_(__FILE__, __LINE__, "logprob %s threshold %s refuse %d: confidence %g, "
                       "escalated %d", lp, thr, refuse, c,
                       cJSON_IsTrue(cJSON_GetObjectItem(a0, "escalated")));
        ASSERT_CONTAINS(cJSON_GetObjectItem(a0, "judgement")->valuestring, "seq_logprob");
        ASSERT_STR_EQ(choice_of(rec, "generator"), esc ? "strong" : "weak");
        ASSERT_EQ(dynrag_result_totals(r)->generator_calls, esc ? 2 : 1);
        escalations += esc;
        kept += !esc;
        cJSON_Delete(rec);
        dynrag_result_free(r);
        dynrag_engine_close(e);
        dynrag_pipeline_free(p);
    }
    test_double_stop(&d);
    ASSERT_GT(escalations, 0);
    ASSERT_GT(kept, 0);
}

static const char *const support_cascade_yaml =
    "version: 1\n"
    "name: supportcascade\n"
    "index: @INDEX@\n"
    "stages:\n"
    "  generator:\n"
    "    options:\n"
    "      - {name: cheap, kind: extractive, params: {threshold: 0.0, max_sentences: 1}}\n"
    "      - {name: dear, kind: extractive, params: {threshold: 0.0}}\n"
    "    router: {type: cascade, params: {judge: %s, threshold: %s}}\n";

/*
 * Invariant: with the logprob_margin and agreement judges, an extractive
 * first attempt is judged by its support score (no longer always 1): over
 * many questions and thresholds, the recorded confidence is in [0, 1], the
 * attempt escalates exactly when it is below the threshold, and the
 * confidences are not all 1.
 */
TEST(engine_extractive_support_drives_cascade)
{
    if (build_index() != 0)
        ASSERT(0);
    static const char *const judges[] = {"logprob_margin", "agreement"};
    static const char *const thresholds[] = {"0.2", "0.5", "0.8", "1"};
    static const char *const qs[] = {"What is the capital of France?", "Who created Python?",
                                     "When was the Eiffel Tower completed?",
                                     "How do I enable write-ahead logging?",
                                     "Tell me about zebras", "Who walked on the Moon first?",
                                     "population of France", "tower engineering company"};
    int below_one = 0, escalations = 0, kept = 0;
    for (size_t j = 0; j < sizeof judges / sizeof *judges; j++)
        for (size_t t = 0; t < sizeof thresholds / sizeof *thresholds; t++) {
            char yaml[4096];
            snprintf(yaml, sizeof yaml, support_cascade_yaml, judges[j], thresholds[t]);
            dynrag_pipeline *p = load_yaml(yaml);
            ASSERT(p != NULL);
            dynrag_engine *e = NULL;
            dynrag_error err;
            dynrag_error_clear(&err);
            ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);
            double thr = strtod(thresholds[t], NULL);
            for (size_t q = 0; q < sizeof qs / sizeof *qs; q++) {
                dynrag_result *r = NULL;
                ASSERT_OK(dynrag_engine_query(e, qs[q], NULL, &r, &err), &err);
                cJSON *rec = cJSON_Parse(dynrag_result_json(r));
                cJSON *a0 = cJSON_GetArrayItem(cJSON_GetObjectItem(rec, "cascade"), 0);
                ASSERT(a0 != NULL);
                ASSERT_STR_EQ(cJSON_GetObjectItem(a0, "option")->valuestring, "cheap");
                double c = cJSON_GetObjectItem(a0, "confidence")->valuedouble;
                bool esc = cJSON_IsTrue(cJSON_GetObjectItem(a0, "escalated"));
                ASSERT(c >= 0 && c <= 1);
                if (esc != (c < thr))
                    test_fail_(__FILE__, __LINE__, "%s %s '%s': confidence %g escalated %d",
                               judges[j], thresholds[t], qs[q], c, esc);
                ASSERT_STR_EQ(choice_of(rec, "generator"), esc ? "dear" : "cheap");
                if (dynrag_result_unanswerable(r))
                    ASSERT(c == 0 || strcmp(choice_of(rec, "generator"), "dear") == 0);
                below_one += c < 1;
                escalations += esc;
                kept += !esc;
                cJSON_Delete(rec);
                dynrag_result_free(r);
            }
            dynrag_engine_close(e);
            dynrag_pipeline_free(p);
        }
    ASSERT_GT(below_one, 0);
    ASSERT_GT(escalations, 0);
    ASSERT_GT(kept, 0);
}

static const char *const selfroute_yaml =
    "version: 1\n"
    "name: selfroute\n"
    "index: @INDEX@\n"
    "stages:\n"
    "  context:\n"
    "    options:\n"
    "      - {name: one, kind: topk, params: {k: 1}}\n"
    "      - {name: docs, kind: documents, params: {max_tokens: 4000}}\n"
    "    router: {type: cascade, params: {judge: self_route, threshold: 0.5}}\n"
    "  generator:\n"
    "    options:\n"
    "      - {name: strict, kind: extractive, params: {threshold: 1.0}}\n";

TEST(engine_self_route_context_escalation)
{
    if (build_index() != 0)
        ASSERT(0);
    dynrag_pipeline *p = load_yaml(selfroute_yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_result *r = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);
    ASSERT_OK(dynrag_engine_query(e, "Tell me about zebras", NULL, &r, &err), &err);
    cJSON *rec = cJSON_Parse(dynrag_result_json(r));
    cJSON *cas = cJSON_GetObjectItem(rec, "cascade");
    /* unanswerable with one chunk -> escalate to whole documents; still
     * unanswerable there, and nothing is left to escalate to */
    ASSERT_EQ(cJSON_GetArraySize(cas), 2);
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(cas, 0), "option")->valuestring, "one");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(cas, 0), "escalated")));
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(cas, 1), "option")->valuestring, "docs");
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetArrayItem(cas, 1), "escalated")));
    ASSERT_STR_EQ(choice_of(rec, "context"), "docs");
    ASSERT(dynrag_result_unanswerable(r));
    cJSON_Delete(rec);
    dynrag_result_free(r);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
}

typedef struct worker {
    dynrag_engine *e;
    int n;
    int failures;
} worker;

static void *query_worker(void *arg)
{
    worker *w = arg;
    static const char *const qs[] = {"What is the capital of France?", "Who created Python?",
                                     "When was the Eiffel Tower completed?",
                                     "How do I enable write-ahead logging?"};
    for (int i = 0; i < w->n; i++) {
        dynrag_result *r = NULL;
        dynrag_error err;
        if (dynrag_engine_query(w->e, qs[i % 4], NULL, &r, &err) != DYNRAG_OK)
            w->failures++;
        dynrag_result_free(r);
    }
    return NULL;
}

TEST(engine_route_log_whole_lines_concurrent)
{
    if (build_index() != 0)
        ASSERT(0);
    dynrag_pipeline *p = load_yaml(naive_yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){e, 25, 0};
        pthread_create(&th[i], NULL, query_worker, &w[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(w[i].failures, 0);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
    FILE *f = fopen(log_path, "r");
    ASSERT(f != NULL);
    char *line = NULL;
    size_t cap = 0;
    int n = 0, ok = 0;
    while (getline(&line, &cap, f) > 0) {
        n++;
        cJSON *o = cJSON_Parse(line);
        ok += cJSON_IsObject(o) && cJSON_IsString(cJSON_GetObjectItem(o, "answer"));
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    ASSERT_EQ(n, 100);
    ASSERT_EQ(ok, 100);
}

static const char *const sla_bandit_yaml =
    "version: 1\n"
    "name: slabandit\n"
    "index: @INDEX@\n"
    "stages:\n"
    "  generator:\n"
    "    options:\n"
    "      - {name: quick, kind: extractive, params: {threshold: 0.0, max_sentences: 1}}\n"
    "      - {name: full, kind: extractive, params: {threshold: 0.0}}\n"
    "    router: {type: bandit, params: {algorithm: epsilon_greedy, sla_ms: 0.001, "
    "sla_penalty: 0.5, state: sla-state.json}}\n";

/* The reward the SLA bandit above must learn: R - 0.5 x overshoot ratio. */
static double sla_expected(double reward, double latency_ms)
{
    return latency_ms > 0.001 ? reward - 0.5 * (latency_ms - 0.001) / 0.001 : reward;
}

/*
 * Invariant: the reward a generator bandit with sla_ms learns is the given
 * reward minus sla_penalty x the generator latency's overshoot ratio, both
 * when rewarded by query id (the latency the engine remembered) and from a
 * route-log record (its generator cost.latency_ms, here rewritten to
 * generated values on both sides of the SLA). Checked per option against
 * the saved state's reward sums.
 */
TEST(engine_bandit_sla_penalty)
{
    if (build_index() != 0)
        ASSERT(0);
    dynrag_pipeline *p = load_yaml(sla_bandit_yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);
    uint64_t rng = 7;
    double want[2] = {0, 0};
    int n[2] = {0, 0}, over = 0, under = 0;
    for (int i = 0; i < 12; i++) {
        dynrag_result *r = NULL;
        ASSERT_OK(dynrag_engine_query(e, "What is the capital of France?", NULL, &r, &err), &err);
        cJSON *rec = cJSON_Parse(dynrag_result_json(r));
        ASSERT(rec != NULL);
        cJSON *gen = stage_entry(rec, "generator");
        int arm = strcmp(choice_of(rec, "generator"), "full") == 0;
        cJSON *lat = cJSON_GetObjectItem(cJSON_GetObjectItem(gen, "cost"), "latency_ms");
        ASSERT(cJSON_IsNumber(lat));
        double reward = lcg_uniform(&rng);
        if (i % 2 == 0) { /* by id: the latency the engine measured */
            ASSERT_OK(dynrag_engine_feedback(e, dynrag_result_id(r), reward, &err), &err);
        } else { /* from the record, its latency rewritten */
            double l = 0.004 * lcg_uniform(&rng);
            cJSON_SetNumberValue(lat, l);
            char *json = cJSON_PrintUnformatted(rec);
            ASSERT(json != NULL);
            int rc = dynrag_engine_feedback_record(e, json, reward, &err);
            free(json);
            ASSERT_OK(rc, &err);
        }
        want[arm] += sla_expected(reward, lat->valuedouble);
        over += lat->valuedouble > 0.001;
        under += !(lat->valuedouble > 0.001);
        n[arm]++;
        cJSON_Delete(rec);
        dynrag_result_free(r);
    }
    dynrag_engine_close(e); /* saves the state */
    dynrag_pipeline_free(p);
    char path[4300], cmd[4400], *text = NULL;
    snprintf(path, sizeof path, "%s/sla-state.json", test_tmpdir());
    snprintf(cmd, sizeof cmd, "cat '%s'", path);
    ASSERT_EQ(test_run(cmd, &text), 0);
    cJSON *st = cJSON_Parse(text);
    free(text);
    ASSERT(st != NULL);
    int seen = 0;
    cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(st, "arms"))
    {
        int arm = strcmp(cJSON_GetObjectItem(a, "option")->valuestring, "full") == 0;
        ASSERT_EQ((int)cJSON_GetObjectItem(a, "n")->valuedouble, n[arm]);
        ASSERT_NEAR(cJSON_GetObjectItem(a, "sum_reward")->valuedouble, want[arm], 1e-9);
        seen++;
    }
    cJSON_Delete(st);
    ASSERT_EQ(seen, 2);
    ASSERT_GT(over, 0);
    ASSERT_GT(under, 0);
}

static const char *const bandit_yaml =
    "version: 1\n"
    "name: bandit\n"
    "index: @INDEX@\n"
    "log: @LOG@\n"
    "stages:\n"
    "  index:\n"
    "    options:\n"
    "      - {name: bm25, kind: bm25}\n"
    "      - {name: dense, kind: dense}\n"
    "    router: {type: bandit, params: {algorithm: ucb1, state: bandit-state.json}}\n";

TEST(engine_bandit_feedback_persists)
{
    if (build_index() != 0)
        ASSERT(0);
    dynrag_pipeline *p = load_yaml(bandit_yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_result *r = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);
    char ids[4][128];
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(dynrag_engine_query(e, "What is the capital of France?", NULL, &r, &err), &err);
        snprintf(ids[i], sizeof(ids[i]), "%s", dynrag_result_id(r));
        dynrag_result_free(r);
    }
    ASSERT_EQ(dynrag_engine_feedback(e, ids[0], NAN, &err), DYNRAG_ERR_INVALID);
    for (int i = 0; i < 4; i++)
        ASSERT_OK(dynrag_engine_feedback(e, ids[i], 1.0, &err), &err);
    /* a reward counts once per query id */
    ASSERT_EQ(dynrag_engine_feedback(e, ids[0], 1.0, &err), DYNRAG_ERR_STATE);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "already rewarded");
    dynrag_engine_close(e); /* saves the state */
    char state[4300];
    snprintf(state, sizeof(state), "%s/bandit-state.json", test_tmpdir());
    char *text = NULL;
    char cmd[9000];
    snprintf(cmd, sizeof(cmd), "cat '%s'", state);
    ASSERT_EQ(test_run(cmd, &text), 0);
    ASSERT_CONTAINS(text, "bm25");
    ASSERT_CONTAINS(text, "dense");
    free(text);
    /* reload: the state is read back and routing continues */
    ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);
    ASSERT_OK(dynrag_engine_query(e, "Who created Python?", NULL, &r, &err), &err);
    char id5[128];
    snprintf(id5, sizeof id5, "%s", dynrag_result_id(r));
    dynrag_result_free(r);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
    /* and feedback from the CLI, by query id, through the route log; the
     * reward store refuses ids the engine already rewarded */
    char yaml_path[4300];
    snprintf(yaml_path, sizeof(yaml_path), "%s", write_yaml("bandit.yaml", bandit_yaml));
    char *out = NULL;
    snprintf(cmd, sizeof(cmd), "%s feedback --pipeline '%s' --query-id '%s' --reward 0.5",
             test_cli_path(), yaml_path, id5);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "recorded");
    free(out);
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "already rewarded");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s feedback --pipeline '%s' --query-id '%s' --reward 0.5",
             test_cli_path(), yaml_path, ids[1]);
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "already rewarded");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s feedback --pipeline '%s' --query-id nope --reward 0.5",
             test_cli_path(), yaml_path);
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "not found");
    free(out);
}

TEST(engine_example_ask_runs_offline)
{
    /* examples/ask.c, built against the public API, answers from the index
     * and prints the route of every stage. */
    if (build_index() != 0)
        ASSERT(0);
    char yaml_path[4300];
    snprintf(yaml_path, sizeof(yaml_path), "%s", write_yaml("naive.yaml", naive_yaml));
    char cmd[9000];
    char *out = NULL;
    snprintf(cmd, sizeof(cmd), "%s/dynrag_example_ask '%s' 'What is the capital of France?' 2>&1",
             DYNRAG_BINARY_DIR, yaml_path);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "question: What is the capital of France?");
    ASSERT_CONTAINS(out, "Paris");
    ASSERT_CONTAINS(out, "source [1]");
    ASSERT_CONTAINS(out, "route retrieval_mode");
    ASSERT_CONTAINS(out, "route generator");
    ASSERT_CONTAINS(out, "totals:");
    free(out);
    /* A broken pipeline: the diagnostics name the file; exit status 1. */
    snprintf(cmd, sizeof(cmd), "%s/dynrag_example_ask '%s' 'q' 2>&1", DYNRAG_BINARY_DIR,
             write_yaml("broken.yaml", "version: 1\nstages: [\n"));
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "broken.yaml:");
    free(out);
}

TEST(engine_cli_query_and_log_summary)
{
    if (build_index() != 0)
        ASSERT(0);
    char yaml_path[4300];
    snprintf(yaml_path, sizeof(yaml_path), "%s", write_yaml("naive.yaml", naive_yaml));
    char cmd[9000];
    char *out = NULL;
    snprintf(cmd, sizeof(cmd), "%s query --pipeline '%s' 'What is the capital of France?'",
             test_cli_path(), yaml_path);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "Paris");
    ASSERT_CONTAINS(out, "Sources:");
    ASSERT_CONTAINS(out, "Route:");
    ASSERT_CONTAINS(out, "retrieval_mode");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s query --pipeline '%s' --json 'Who created Python?'",
             test_cli_path(), yaml_path);
    ASSERT_EQ(test_run(cmd, &out), 0);
    cJSON *o = cJSON_Parse(out);
    ASSERT(cJSON_IsObject(o));
    cJSON_Delete(o);
    free(out);
    const char *qs = test_write_file("q.jsonl", "{\"id\":\"a\",\"question\":\"Who created Python?\"}\n"
                                                "{\"id\":\"b\",\"query\":\"capital of France\"}\n");
    char qpath[4300];
    snprintf(qpath, sizeof(qpath), "%s", qs);
    snprintf(cmd, sizeof(cmd), "%s query --pipeline '%s' --questions '%s' --out '%s/out.jsonl'",
             test_cli_path(), yaml_path, qpath, test_tmpdir());
    ASSERT_EQ(test_run(cmd, &out), 0);
    free(out);
    snprintf(cmd, sizeof(cmd), "grep -c '\"id\":\"[ab]\"' '%s/out.jsonl'", test_tmpdir());
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "2");
    free(out);
    /* usage errors */
    snprintf(cmd, sizeof(cmd), "%s query 'x'", test_cli_path());
    ASSERT_EQ(test_run(cmd, &out), 2);
    ASSERT_CONTAINS(out, "--pipeline");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s query --pipeline /nonexistent.yaml 'x'", test_cli_path());
    ASSERT_EQ(test_run(cmd, &out), 1);
    free(out);
    /* a malformed batch line names the file and line */
    qs = test_write_file("bad.jsonl", "{\"question\":\"ok?\"}\nnot json\n");
    snprintf(qpath, sizeof(qpath), "%s", qs);
    snprintf(cmd, sizeof(cmd), "%s query --pipeline '%s' --questions '%s' --out '%s/o2.jsonl'",
             test_cli_path(), yaml_path, qpath, test_tmpdir());
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "bad.jsonl:2:");
    free(out);
    /* log summary over 4 good records and one malformed line */
    FILE *f = fopen(log_path, "a");
    ASSERT(f != NULL);
    fputs("garbage\n", f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "%s log summary '%s'", test_cli_path(), log_path);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "5 queries");
    ASSERT_CONTAINS(out, "1 malformed lines (first at line 6)");
    free(out);
}

TEST(engine_force_retrieve_only_and_k)
{
    if (build_index() != 0)
        ASSERT(0);
    dynrag_pipeline *p = load_yaml(bandit_yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_result *r = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);
    dynrag_force f = {"index", "dense"};
    dynrag_query_options qo;
    dynrag_query_options_init(&qo);
    qo.retrieve_only = true;
    qo.k = 4;
    qo.no_log = true;
    qo.force = &f;
    qo.n_force = 1;
    ASSERT_OK(dynrag_engine_query(e, "capital of France", &qo, &r, &err), &err);
    cJSON *rec = cJSON_Parse(dynrag_result_json(r));
    ASSERT_STR_EQ(choice_of(rec, "index"), "dense");
    ASSERT_CONTAINS(cJSON_GetObjectItem(stage_entry(rec, "index"), "reason")->valuestring,
                    "forced");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(stage_entry(rec, "generator"), "skipped")));
    ASSERT_EQ(dynrag_result_totals(r)->generator_calls, 0);
    ASSERT_EQ(dynrag_result_n_retrieved(r), 4);
    ASSERT_STR_EQ(dynrag_result_context(r), "");
    cJSON_Delete(rec);
    dynrag_result_free(r);
    /* an unknown forced option is an error naming it */
    f.option = "nope";
    ASSERT_EQ(dynrag_engine_query(e, "capital of France", &qo, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "no option 'nope'");
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
    ASSERT_EQ(count_lines(log_path), 0);
}

/* The route log follows its path: moved away (logrotate's default) or
 * removed, the next records go to a new file at the path; none is lost. */
TEST(engine_route_log_follows_rotation)
{
    if (build_index() != 0)
        ASSERT(0);
    dynrag_pipeline *p = load_yaml(naive_yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_error err;
    ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);
    char rotated[4300];
    snprintf(rotated, sizeof(rotated), "%s.1", log_path);
    const char *q = "What is the capital of France?";
    dynrag_result *r = NULL;
    ASSERT_OK(dynrag_engine_query(e, q, NULL, &r, &err), &err);
    dynrag_result_free(r);
    ASSERT_EQ(count_lines(log_path), 1);
    ASSERT_EQ(rename(log_path, rotated), 0);
    struct timespec ts = {1, 100 * 1000 * 1000}; /* the path is checked once a second */
    nanosleep(&ts, NULL);
    for (int i = 0; i < 2; i++) {
        ASSERT_OK(dynrag_engine_query(e, q, NULL, &r, &err), &err);
        dynrag_result_free(r);
    }
    ASSERT_EQ(count_lines(rotated), 1);
    ASSERT_EQ(count_lines(log_path), 2);
    /* removed: made again */
    ASSERT_EQ(unlink(log_path), 0);
    nanosleep(&ts, NULL);
    ASSERT_OK(dynrag_engine_query(e, q, NULL, &r, &err), &err);
    dynrag_result_free(r);
    ASSERT_EQ(count_lines(log_path), 1);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
}
