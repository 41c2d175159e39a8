/*
 * test_budget.c - per-query budgets at every entry point (C API, CLI flags,
 * the HTTP `budget` object) and the deadline the HTTP client honours.
 */
#include "test.h"
#include "test_net_util.h"

#include "core/util.h"
#include "dynrag/engine.h"
#include "dynrag/index.h"
#include "dynrag/pipeline.h"
#include "net/http.h"
#include "server/request.h"

#include <cjson/cJSON.h>

TEST(budget_http_object_validated)
{
    dr_query_req q;
    dr_http_error e;
    const char *ok = "{\"query\": \"x\", \"budget\": {\"usd\": 0.5, \"latency_ms\": 0}}";
    ASSERT_EQ(dr_parse_query(ok, strlen(ok), &q, &e), 0);
    ASSERT(q.budget.set);
    ASSERT_NEAR(q.budget.usd, 0.5, 0);
    ASSERT_NEAR(q.budget.latency_ms, 0, 0);
    ASSERT(isnan(q.budget.energy_wh));
    dr_query_req_free(&q);
    const char *none = "{\"query\": \"x\"}";
    ASSERT_EQ(dr_parse_query(none, strlen(none), &q, &e), 0);
    ASSERT(!q.budget.set);
    dr_query_req_free(&q);
    /* Each bad budget is a 400 naming the field. */
    static const char *const bad[][2] = {
        {"{\"query\": \"x\", \"budget\": {\"usd\": -1}}", "budget.usd"},
        {"{\"query\": \"x\", \"budget\": {\"latency_ms\": \"fast\"}}", "budget.latency_ms"},
        {"{\"query\": \"x\", \"budget\": {\"energy_wh\": -0.001}}", "budget.energy_wh"},
        {"{\"query\": \"x\", \"budget\": {\"tokens\": 5}}", "budget.tokens"},
        {"{\"query\": \"x\", \"budget\": 3}", "budget"},
        {"{\"query\": \"x\", \"budget\": [1]}", "budget"},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(bad); i++) {
        ASSERT_EQ(dr_parse_query(bad[i][0], strlen(bad[i][0]), &q, &e), 400);
        ASSERT_STR_EQ(e.param, bad[i][1]);
        ASSERT_CONTAINS(e.message, bad[i][1]);
    }
    /* The chat endpoint takes the same object. */
    dr_chat_req c;
    const char *chat = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
                       "\"budget\": {\"energy_wh\": 2}}";
    ASSERT_EQ(dr_parse_chat(chat, strlen(chat), &c, &e), 0);
    ASSERT(c.budget.set);
    ASSERT_NEAR(c.budget.energy_wh, 2, 0);
    dr_chat_req_free(&c);
    const char *chat_bad = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
                           "\"budget\": {\"usd\": -3}}";
    ASSERT_EQ(dr_parse_chat(chat_bad, strlen(chat_bad), &c, &e), 400);
    ASSERT_STR_EQ(e.param, "budget.usd");
}

static const char *const corpus =
    "{\"_id\":\"france\",\"title\":\"France\",\"text\":\"The capital of France is Paris.\"}\n"
    "{\"_id\":\"moon\",\"title\":\"Moon\",\"text\":\"Neil Armstrong walked on the Moon in "
    "1969.\"}\n";

TEST(budget_per_query_api_and_cli)
{
    char idx[4200], yaml[8192], path[4200], cmd[20000];
    snprintf(idx, sizeof(idx), "%s/idx", test_tmpdir());
    const char *in[] = {test_write_file("c.jsonl", corpus)};
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_index_add(idx, in, 1, &bo, NULL, &err), &err);
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: b\nindex: %s\nbudget: {usd: 0.01, latency_ms: 60000}\n"
             "stages:\n  index:\n    options:\n      - {name: bm25, kind: bm25, cost: "
             "{energy_wh: 0.002}}\n",
             idx);
    snprintf(path, sizeof(path), "%s", test_write_file("b.yaml", yaml));
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = NULL;
    ASSERT_OK(dynrag_pipeline_load(path, &p, &d, &err), &err);
    dynrag_diags_free(d);
    dynrag_engine *e = NULL;
    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    eo.no_log = true;
    ASSERT_OK(dynrag_engine_open(p, &eo, &e, &err), &err);
    /* A caller's budget tightens the pipeline's, field by field. */
    dynrag_budget b = {0.5, 100, 0.001};
    dynrag_query_options qo;
    dynrag_query_options_init(&qo);
    qo.budget = &b;
    dynrag_result *r = NULL;
    ASSERT_OK(dynrag_engine_query(e, "capital of France", &qo, &r, &err), &err);
    cJSON *rec = cJSON_Parse(dynrag_result_json(r));
    cJSON *bud = cJSON_GetObjectItem(rec, "budget");
    ASSERT_NEAR(cJSON_GetObjectItem(bud, "usd")->valuedouble, 0.01, 0); /* pipeline's is smaller */
    ASSERT_NEAR(cJSON_GetObjectItem(bud, "latency_ms")->valuedouble, 100, 0);
    ASSERT_NEAR(cJSON_GetObjectItem(bud, "energy_wh")->valuedouble, 0.001, 0);
    /* The index's energy (0.002 Wh) is over the caller's 0.001 Wh: the one
     * option runs and the record says why. */
    ASSERT(dynrag_result_totals(r)->over_budget);
    cJSON *tot = cJSON_GetObjectItem(rec, "totals");
    ASSERT_CONTAINS(cJSON_GetObjectItem(tot, "over_budget_reason")->valuestring, "Wh");
    cJSON_Delete(rec);
    dynrag_result_free(r);
    /* Negative values are rejected, naming the field. */
    dynrag_budget neg = {NAN, -5, NAN};
    qo.budget = &neg;
    ASSERT_EQ(dynrag_engine_query(e, "capital of France", &qo, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "budget.latency_ms");
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
    /* The CLI flags. */
    char *out = NULL;
    snprintf(cmd, sizeof(cmd),
             "'%s' query --pipeline '%s' --no-log --json --budget-usd 0 --budget-ms 5000 "
             "--budget-wh 1 'capital of France'",
             test_cli_path(), path);
    ASSERT_EQ(test_run(cmd, &out), 0);
    rec = cJSON_Parse(out);
    ASSERT(rec != NULL);
    bud = cJSON_GetObjectItem(rec, "budget");
    ASSERT_NEAR(cJSON_GetObjectItem(bud, "usd")->valuedouble, 0, 0);
    ASSERT_NEAR(cJSON_GetObjectItem(bud, "latency_ms")->valuedouble, 5000, 0);
    ASSERT_NEAR(cJSON_GetObjectItem(bud, "energy_wh")->valuedouble, 1, 0);
    cJSON_Delete(rec);
    free(out);
    snprintf(cmd, sizeof(cmd), "'%s' query --pipeline '%s' --no-log --budget-usd -1 'q' 2>&1",
             test_cli_path(), path);
    ASSERT_EQ(test_run(cmd, &out), 2);
    ASSERT_CONTAINS(out, "--budget-usd");
    free(out);
}

TEST(budget_http_deadline_bounds_the_call)
{
    test_double d;
    if (test_double_start(&d) != 0)
        SKIP("python3 test double unavailable");
    char url[200];
    snprintf(url, sizeof(url), "%s/chat/completions", d.base_url);
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    /* A 0.4 s answer under a 100 ms deadline: the call ends at the deadline,
     * although the request's own timeout is 10 s and retries are allowed. */
    test_double_script(&d, "{\"script\": [\"sleep:0.4\", \"sleep:0.4\"]}");
    dr_http_request req = {.url = url, .body = body, .timeout_s = 10, .max_retries = 2};
    req.deadline_us = dr_now_us() + 100000;
    dr_http_response resp;
    dynrag_error err;
    dynrag_error_clear(&err);
    int64_t t0 = dr_now_us();
    int rc = dr_http_post_json(&req, &resp, &err);
    double ms = (double)(dr_now_us() - t0) / 1000.0;
    dr_http_response_free(&resp);
    /* A deadline already past: no attempt at all. */
    req.deadline_us = dr_now_us() - 1;
    long before = test_double_count(&d, "/v1/chat/completions");
    int rc2 = dr_http_post_json(&req, &resp, &err);
    long after = test_double_count(&d, "/v1/chat/completions");
    dr_http_response_free(&resp);
    test_double_stop(&d);
    ASSERT_EQ(rc, DYNRAG_ERR_TIMEOUT);
    ASSERT_LT(ms, 300);
    ASSERT_EQ(rc2, DYNRAG_ERR_TIMEOUT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "deadline");
    ASSERT_EQ(before, after);
}

TEST(budget_deadline_bounds_remote_embedder_calls)
{
    test_double d;
    if (test_double_start(&d) != 0)
        SKIP("python3 test double unavailable");
    char idx[4200], yaml[8192];
    snprintf(idx, sizeof(idx), "%s/idx", test_tmpdir());
    const char *in[] = {test_write_file("c.jsonl", corpus)};
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    bo.embedder.kind = "openai";
    bo.embedder.base_url = d.base_url;
    bo.embedder.model = "emb";
    bo.embedder.dim = 64;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_index_add(idx, in, 1, &bo, NULL, &err);
    if (rc != DYNRAG_OK)
        test_double_stop(&d);
    ASSERT_OK(rc, &err);
    /* A dense search embeds the query remotely; the embedder endpoint is slow
     * (0.5 s) and the query's latency budget is 150 ms. With an index
     * fallback the BM25 search answers in time; without, the query fails at
     * the deadline, not after the endpoint's 5 s timeout. */
    double ms[2];
    int rcs[2];
    char fb_line[2][64] = {"", "    fallback: bm25\n"};
    for (int i = 0; i < 2; i++) {
        snprintf(yaml, sizeof(yaml),
                 "version: 1\nname: remote\nindex: %s\nbudget: {latency_ms: 150}\n"
                 "endpoints:\n  emb: {base_url: '%s', model: emb, timeout_s: 5, max_retries: 0}\n"
                 "stages:\n"
                 "  embedder:\n    options:\n"
                 "      - {name: remote, kind: openai, endpoint: emb, params: {dim: 64}}\n"
                 "  index:\n    options:\n"
                 "      - {name: dense, kind: dense}\n"
                 "      - {name: bm25, kind: bm25}\n"
                 "%s",
                 idx, d.base_url, fb_line[i]);
        dynrag_pipeline *p = NULL;
        dynrag_diags *diags = NULL;
        rc = dynrag_pipeline_load_string(yaml, strlen(yaml), "r.yaml", test_tmpdir(), &p, &diags,
                                         &err);
        dynrag_diags_free(diags);
        dynrag_engine *e = NULL;
        dynrag_engine_options eo;
        dynrag_engine_options_init(&eo);
        eo.no_log = true;
        if (rc == DYNRAG_OK)
            rc = dynrag_engine_open(p, &eo, &e, &err);
        if (rc != DYNRAG_OK) {
            dynrag_pipeline_free(p);
            test_double_stop(&d);
        }
        ASSERT_OK(rc, &err);
        test_double_script(&d, "{\"script\": [\"sleep:0.5\"]}");
        dynrag_result *r = NULL;
        int64_t t0 = dr_now_us();
        rcs[i] = dynrag_engine_query(e, "capital of France", NULL, &r, &err);
        ms[i] = (double)(dr_now_us() - t0) / 1000.0;
        if (rcs[i] == DYNRAG_OK) {
            cJSON *rec = cJSON_Parse(dynrag_result_json(r));
            cJSON *f = cJSON_GetArrayItem(cJSON_GetObjectItem(rec, "fallbacks"), 0);
            bool took_bm25 = f != NULL && cJSON_IsString(cJSON_GetObjectItem(f, "took")) &&
                             strcmp(cJSON_GetObjectItem(f, "took")->valuestring, "bm25") == 0;
            cJSON_Delete(rec);
            if (!took_bm25)
                rcs[i] = -1000;
        }
        dynrag_result_free(r);
        dynrag_engine_close(e);
        dynrag_pipeline_free(p);
    }
    test_double_stop(&d);
    ASSERT(rcs[0] != DYNRAG_OK);
    ASSERT_LT(ms[0], 450);
    ASSERT_EQ(rcs[1], DYNRAG_OK);
    ASSERT_LT(ms[1], 450);
}
