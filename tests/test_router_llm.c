/* test_router_llm.c - the `llm` router (router/llm_router.c) against the
 * OpenAI-compatible TEST DOUBLE (tests/openai_double.py, "reply:TEXT"
 * scripts its answer): strict parsing, fallbacks with reasons, the budget
 * check before the call, the engine charging the call, and the refusal in
 * outcome replay. */
#include "test.h"
#include "test_net_util.h"

#include "core/util.h"
#include "dynrag/engine.h"
#include "dynrag/pipeline.h"
#include "pipeline/spec.h"
#include "router/router.h"

#include <cjson/cJSON.h>
#include <math.h>

/* A pipeline whose generator has options small, medium and large (all
 * extractive, so nothing but the router calls the double), routed by the
 * llm router at base_url; `extra` is appended to the router's params. */
static dynrag_pipeline *llm_pipeline(const char *base_url, const char *extra, const char *budget)
{
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: llm-router\n%s"
             "endpoints:\n  picker: {base_url: '%s', model: picker-model}\n"
             "stages:\n  retrieval_mode:\n    options: [{name: none, kind: none}]\n"
             "  generator:\n    options:\n"
             "      - {name: small, kind: extractive, description: 'a small fast model for chat'}\n"
             "      - {name: medium, kind: extractive}\n"
             "      - {name: large, kind: extractive, description: 'a large model for math'}\n"
             "    router:\n      type: llm\n      params: {endpoint: picker, fallback: small, "
             "timeout_s: 0.4, cost: {usd_per_1k_input: 1, usd_per_1k_output: 2}%s}\n",
             budget ? budget : "", base_url, extra ? extra : "");
    dynrag_pipeline *p = NULL;
    dynrag_diags *dg = NULL;
    dynrag_error err = {0};
    if (dynrag_pipeline_load_string(yaml, strlen(yaml), "llm.yaml", NULL, &p, &dg, &err) !=
        DYNRAG_OK) {
        char *all = dynrag_diags_format(dg);
        fprintf(stderr, "llm pipeline: %s %s\n", dynrag_errmsg(&err), all ? all : "");
        free(all);
    }
    dynrag_diags_free(dg);
    return p;
}

/* Routes one query with the double scripted to answer `mode`. */
static int route_once(const test_double *d, dr_router *r, const bool *available, double usd_left,
                      const char *mode, dr_route_decision *out, dynrag_error *err)
{
    cJSON *script = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(script, "script");
    cJSON_AddItemToArray(arr, cJSON_CreateString(mode));
    char *body = cJSON_PrintUnformatted(script);
    int rc = test_double_script(d, body);
    free(body);
    cJSON_Delete(script);
    if (rc != 0)
        return dr_err_set(err, DYNRAG_ERR_IO, "cannot script the double");
    dr_route_ctx ctx = {.query = "What is 12 times 7?", .stage = r->stage, .available = available};
    ctx.remaining.usd = usd_left;
    ctx.remaining.latency_ms = ctx.remaining.energy_wh = INFINITY;
    memset(out, 0, sizeof(*out));
    return r->vt->route(r, &ctx, out, err);
}

TEST(router_llm_answers_parsed_strictly)
{
    test_double d;
    if (test_double_start(&d) != 0)
        SKIP("python3 test double unavailable");
    dynrag_pipeline *p = llm_pipeline(d.base_url, NULL, NULL);
    if (p == NULL)
        test_double_stop(&d);
    ASSERT(p != NULL);
    dr_router *r = NULL;
    dynrag_error err = {0};
    ASSERT_OK(dr_router_create(p, &p->stages[DR_STAGE_GENERATOR], &r, &err), &err);
    dr_route_decision dec;
    static const struct {
        const char *mode;
        int want;       /* option index */
        const char *in; /* the reason contains */
    } cases[] = {
        {"reply:large", 2, "llm: answered large (3 options offered)"},
        {"reply:  medium \n", 1, "llm: answered medium"},
        {"reply:{\"option\": \"large\"}", 2, "llm: answered large"},
        {"reply: {\"option\":\"medium\",\"why\":\"x\"}\n", 1, "llm: answered medium"},
        {"reply:Large", 0, "llm: answer \"Large\" is not an offered option: fallback small"},
        {"reply:large.", 0, "is not an offered option"},
        {"reply:I pick large", 0, "is not an offered option"},
        {"reply:\"large\"", 0, "is not an offered option"},
        {"reply:{\"option\": \"huge\"}", 0, "is not an offered option"},
        {"reply:{\"option\": 2}", 0, "is not an offered option"},
        {"reply:", 0, "answer \"\" is not an offered option"},
        {"500", 0, "llm: the call failed ("},
        {"malformed", 0, "llm: the call failed ("},
        {"sleep:2", 0, "llm: the call timed out ("},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(cases); i++) {
        int64_t t0 = dr_now_us();
        int rc = route_once(&d, r, NULL, INFINITY, cases[i].mode, &dec, &err);
        if (rc != DYNRAG_OK)
            test_double_stop(&d);
        ASSERT_OK(rc, &err);
        if (dec.option != cases[i].want || strstr(dec.reason, cases[i].in) == NULL)
            fprintf(stderr, "case %zu (%s): option %d, reason %s\n", i, cases[i].mode, dec.option,
                    dec.reason);
        ASSERT_EQ(dec.option, cases[i].want);
        ASSERT_CONTAINS(dec.reason, cases[i].in);
        /* A call that answered is paid at the router's prices; a failed one
         * costs its time only; a slow one is cut at timeout_s. */
        ASSERT_GT(dec.spent.latency_ms, 0);
        if (strncmp(cases[i].mode, "reply", 5) == 0)
            ASSERT_GT(dec.spent.usd, 0);
        else
            ASSERT_EQ(dec.spent.usd, 0);
        ASSERT_LT(dr_now_us() - t0, 1500000);
    }
    /* Generated answers: accepted exactly when, trimmed, they are an
     * offered option's name. */
    static const char *const names[] = {"small", "medium", "large"};
    dr_rng rng;
    dr_rng_seed(&rng, 5);
    for (int i = 0; i < 30; i++) {
        const char *name = names[dr_rng_below(&rng, 3)];
        char ans[64];
        int kind = (int)dr_rng_below(&rng, 4);
        switch (kind) {
        case 0: /* white space around: accepted */
            snprintf(ans, sizeof(ans), "%.*s%s%.*s", (int)dr_rng_below(&rng, 3), "\n \t", name,
                     (int)dr_rng_below(&rng, 3), " \r\n");
            break;
        case 1: /* one letter's case flipped */
            snprintf(ans, sizeof(ans), "%s", name);
            ans[dr_rng_below(&rng, strlen(name))] ^= 0x20;
            break;
        case 2: /* a character added before or after */
            snprintf(ans, sizeof(ans), dr_rng_below(&rng, 2) ? "%s%c" : "%2$c%1$s", name,
                     "x.:!-"[dr_rng_below(&rng, 5)]);
            break;
        default: /* white space inside */
            snprintf(ans, sizeof(ans), "%.2s %s", name, name + 2);
            break;
        }
        char mode[80];
        snprintf(mode, sizeof(mode), "reply:%s", ans);
        ASSERT_OK(route_once(&d, r, NULL, INFINITY, mode, &dec, &err), &err);
        if (kind == 0) {
            ASSERT_STR_EQ(p->stages[DR_STAGE_GENERATOR].options[dec.option].name, name);
            ASSERT_CONTAINS(dec.reason, "answered");
        } else {
            ASSERT_EQ(dec.option, 0);
            ASSERT_CONTAINS(dec.reason, "is not an offered option");
        }
    }
    /* An unavailable option is not offered: naming it falls back. */
    bool avail[3] = {true, true, false};
    ASSERT_OK(route_once(&d, r, avail, INFINITY, "reply:large", &dec, &err), &err);
    ASSERT_EQ(dec.option, 0);
    ASSERT_CONTAINS(dec.reason, "\"large\" is not an offered option");
    ASSERT_OK(route_once(&d, r, avail, INFINITY, "reply:medium", &dec, &err), &err);
    ASSERT_EQ(dec.option, 1);
    ASSERT_CONTAINS(dec.reason, "(2 options offered)");
    /* An unavailable fallback: the best available instead, said so. */
    bool avail2[3] = {false, true, true};
    ASSERT_OK(route_once(&d, r, avail2, INFINITY, "reply:junk", &dec, &err), &err);
    ASSERT(dec.option == 1 || dec.option == 2);
    ASSERT_CONTAINS(dec.reason, "small unavailable, using");
    /* A call the remaining budget cannot pay is never made. */
    ASSERT_OK(test_double_script(&d, "{\"reset\": true}") == 0 ? DYNRAG_OK : DYNRAG_ERR_IO, &err);
    ASSERT_OK(route_once(&d, r, NULL, 1e-6, "reply:large", &dec, &err), &err);
    ASSERT_EQ(dec.option, 0);
    ASSERT_CONTAINS(dec.reason, "does not fit the remaining budget");
    ASSERT_EQ(dec.spent.usd, 0);
    ASSERT_EQ(test_double_count(&d, "/v1/chat/completions"), 0);
    dr_router_free(r);
    dynrag_pipeline_free(p);

    /* An endpoint that is not configured: the fallback, no request. */
    p = llm_pipeline("${DYNRAG_TEST_SURELY_UNSET_URL:-}", NULL, NULL);
    ASSERT(p != NULL);
    ASSERT_OK(dr_router_create(p, &p->stages[DR_STAGE_GENERATOR], &r, &err), &err);
    ASSERT_OK(route_once(&d, r, NULL, INFINITY, "reply:large", &dec, &err), &err);
    ASSERT_EQ(dec.option, 0);
    ASSERT_CONTAINS(dec.reason, "endpoint 'picker' is not configured: fallback small");
    ASSERT_EQ(test_double_count(&d, "/v1/chat/completions"), 0);
    dr_router_free(r);
    dynrag_pipeline_free(p);
    test_double_stop(&d);
}

/* The generator stage's entry of a route-log record. */
static const cJSON *generator_entry(const cJSON *rec)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(rec, "stages"))
    {
        const cJSON *n = cJSON_GetObjectItem(s, "stage");
        if (cJSON_IsString(n) && strcmp(n->valuestring, "generator") == 0)
            return s;
    }
    return NULL;
}

TEST(router_llm_engine_charges_and_logs)
{
    test_double d;
    if (test_double_start(&d) != 0)
        SKIP("python3 test double unavailable");
    dynrag_pipeline *p = llm_pipeline(d.base_url, NULL, NULL);
    dynrag_engine *e = NULL;
    dynrag_result *res = NULL;
    dynrag_error err = {0};
    if (p == NULL || dynrag_engine_open(p, NULL, &e, &err) != DYNRAG_OK)
        test_double_stop(&d);
    ASSERT(e != NULL);
    test_double_script(&d, "{\"script\": [\"reply:large\"]}");
    int rc = dynrag_engine_query(e, "What is 12 times 7?", NULL, &res, &err);
    if (rc != DYNRAG_OK)
        test_double_stop(&d);
    ASSERT_OK(rc, &err);
    cJSON *rec = cJSON_Parse(dynrag_result_json(res));
    const cJSON *g = generator_entry(rec);
    ASSERT(g != NULL);
    ASSERT_STR_EQ(cJSON_GetObjectItem(g, "choice")->valuestring, "large");
    ASSERT_CONTAINS(cJSON_GetObjectItem(g, "reason")->valuestring, "llm: answered large");
    /* The extractive options are free: everything spent is the router's
     * call, at 1 $/1k input and 2 $/1k output tokens; the double counts
     * words as tokens: the prompt's (at least the query's 5) and 1 out. */
    double usd = dynrag_result_totals(res)->usd;
    ASSERT_GT(usd, (5 + 2) / 1000.0);
    ASSERT_LT(usd, 0.2);
    ASSERT_NEAR(usd * 1000 - floor(usd * 1000 + 0.5), 0, 1e-6);
    cJSON_Delete(rec);
    dynrag_result_free(res);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);

    /* A budget smaller than the call's price: no call, the fallback, and
     * the log says why. */
    p = llm_pipeline(d.base_url, NULL, "budget: {usd: 0.00001}\n");
    ASSERT(p != NULL);
    ASSERT_OK(dynrag_engine_open(p, NULL, &e, &err), &err);
    test_double_script(&d, "{\"reset\": true, \"script\": [\"reply:large\"]}");
    rc = dynrag_engine_query(e, "What is 12 times 7?", NULL, &res, &err);
    long calls = test_double_count(&d, "/v1/chat/completions");
    test_double_stop(&d);
    ASSERT_OK(rc, &err);
    ASSERT_EQ(calls, 0);
    rec = cJSON_Parse(dynrag_result_json(res));
    g = generator_entry(rec);
    ASSERT(g != NULL);
    ASSERT_STR_EQ(cJSON_GetObjectItem(g, "choice")->valuestring, "small");
    ASSERT_CONTAINS(cJSON_GetObjectItem(g, "reason")->valuestring,
                    "does not fit the remaining budget");
    ASSERT_EQ(dynrag_result_totals(res)->usd, 0);
    cJSON_Delete(rec);
    dynrag_result_free(res);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
}

TEST(router_llm_validation_and_replay_refused)
{
    /* An undefined endpoint is reported at load with file:line:col. */
    const char *yaml =
        "version: 1\nname: bad\nendpoints:\n  a: {base_url: 'http://127.0.0.1:9/v1', model: m}\n"
        "stages:\n  generator:\n    options:\n      - {name: x, kind: extractive}\n"
        "    router:\n      type: llm\n      params:\n        endpoint: nosuch\n"
        "        fallback: x\n";
    dynrag_pipeline *p = NULL;
    dynrag_diags *dg = NULL;
    dynrag_error err = {0};
    ASSERT(dynrag_pipeline_load_string(yaml, strlen(yaml), "bad.yaml", NULL, &p, &dg, &err) !=
           DYNRAG_OK);
    char *all = dynrag_diags_format(dg);
    ASSERT_CONTAINS(all, "bad.yaml:12:19: stages.generator.router.params.endpoint: undefined "
                         "endpoint 'nosuch'");
    free(all);
    dynrag_diags_free(dg);
    /* A missing fallback and a bad timeout too. */
    const char *yaml2 = "version: 1\nname: bad\nendpoints:\n  a: {base_url: '', model: m}\n"
                        "stages:\n  generator:\n    options:\n      - {name: x, kind: extractive}\n"
                        "    router: {type: llm, params: {endpoint: a, timeout_s: 0}}\n";
    ASSERT(dynrag_pipeline_load_string(yaml2, strlen(yaml2), "bad2.yaml", NULL, &p, &dg, &err) !=
           DYNRAG_OK);
    all = dynrag_diags_format(dg);
    ASSERT_CONTAINS(all, "fallback");
    ASSERT_CONTAINS(all, "timeout_s");
    free(all);
    dynrag_diags_free(dg);

    /* Descriptions appear in the resolved pipeline; a non-string one is
     * an error naming the field. */
    dynrag_pipeline *ok = llm_pipeline("http://127.0.0.1:9/v1", NULL, NULL);
    ASSERT(ok != NULL);
    char *json = dynrag_pipeline_to_json(ok);
    cJSON *root = cJSON_Parse(json);
    free(json);
    const cJSON *gopts = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(root, "stages"), "generator"), "options");
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(gopts, 2), "description")->valuestring,
                  "a large model for math");
    ASSERT(cJSON_GetObjectItem(cJSON_GetArrayItem(gopts, 1), "description") == NULL);
    cJSON_Delete(root);
    dynrag_pipeline_free(ok);
    const char *yaml3 = "version: 1\nname: bad\nstages:\n  generator:\n    options:\n"
                        "      - {name: x, kind: extractive, description: [a, b]}\n";
    ASSERT(dynrag_pipeline_load_string(yaml3, strlen(yaml3), "bad3.yaml", NULL, &p, &dg, &err) !=
           DYNRAG_OK);
    all = dynrag_diags_format(dg);
    ASSERT_CONTAINS(all, "bad3.yaml:6:");
    ASSERT_CONTAINS(all, "stages.generator.options[0].description");
    free(all);
    dynrag_diags_free(dg);

    /* Outcome replay refuses it, naming the pipeline's router line. */
    const char *pipe = test_write_file(
        "llm-replay.yaml",
        "version: 1\nname: replay\nendpoints:\n  a: {base_url: 'http://127.0.0.1:9/v1', model: m}\n"
        "stages:\n  generator:\n    options:\n      - {name: m1, kind: extractive}\n"
        "      - {name: m2, kind: extractive}\n"
        "    router: {type: llm, params: {endpoint: a, fallback: m1}}\n");
    char pipe_path[1024];
    snprintf(pipe_path, sizeof(pipe_path), "%s", pipe);
    const char *table = test_write_file(
        "replay.jsonl", "{\"id\":\"a\",\"query\":\"q\",\"outcomes\":{\"m1\":{\"quality\":1},"
                        "\"m2\":{\"quality\":0}}}\n");
    char cmd[4200], *out = NULL;
    snprintf(cmd, sizeof(cmd), "%s eval --pipeline %s --outcomes %s --out %s/replay-out",
             test_cli_path(), pipe_path, table, test_tmpdir());
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "llm-replay.yaml:10:13: stages.generator.router: type llm");
    ASSERT_CONTAINS(out, "cannot be replayed");
    free(out);
}
