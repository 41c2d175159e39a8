/*
 * test_introspect.c - the public view of a loaded pipeline
 * (dynrag/pipeline.h, "introspection"), through the public API only: for
 * every shipped pipeline and the full fixture, every stage, option,
 * router, endpoint and the budget must say what dynrag_pipeline_to_json()
 * says.
 */
#include "test.h"

#include "dynrag/dynrag.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>

/* A JSON number or null (NAN) as the API gives it. */
static double num_or_nan(const cJSON *j)
{
    return cJSON_IsNumber(j) ? j->valuedouble : NAN;
}

static bool same_num(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b || (isinf(a) && isinf(b) && (a > 0) == (b > 0));
}

/* Equal JSON texts, compared as parsed trees. */
static bool same_json(const char *text, const cJSON *want)
{
    cJSON *got = text ? cJSON_Parse(text) : NULL;
    bool eq = got != NULL && cJSON_Compare(got, want, true);
    cJSON_Delete(got);
    return eq;
}

/* Checks one loaded pipeline against its JSON form; returns the number of
 * options seen. */
static size_t check_pipeline(const char *path)
{
    dynrag_pipeline *p = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_pipeline_load(path, &p, NULL, &err);
    if (rc != DYNRAG_OK) {
        test_fail_(__FILE__, __LINE__, "%s: %s", path, dynrag_errmsg(&err));
        return 0;
    }
    char *text = dynrag_pipeline_to_json(p);
    cJSON *doc = cJSON_Parse(text);
    dynrag_free(text);
    size_t seen = 0;
    if (doc == NULL) {
        test_fail_(__FILE__, __LINE__, "%s: to_json is not JSON", path);
        dynrag_pipeline_free(p);
        return 0;
    }
    const cJSON *stages = cJSON_GetObjectItem(doc, "stages");
    for (size_t s = 0; dynrag_stage_name(s) != NULL; s++) {
        const char *sn = dynrag_stage_name(s);
        const cJSON *sj = cJSON_GetObjectItem(stages, sn);
        dynrag_stage_info si;
        if (sj == NULL || dynrag_pipeline_stage(p, sn, &si, &err) != DYNRAG_OK) {
            test_fail_(__FILE__, __LINE__, "%s: stage %s", path, sn);
            continue;
        }
        const cJSON *opts = cJSON_GetObjectItem(sj, "options");
        const cJSON *router = cJSON_GetObjectItem(sj, "router");
        const cJSON *fb = cJSON_GetObjectItem(sj, "fallback");
        if (strcmp(si.name, sn) != 0 || si.declared != cJSON_IsTrue(cJSON_GetObjectItem(sj, "declared")) ||
            si.n_options != (size_t)cJSON_GetArraySize(opts) ||
            strcmp(si.router, cJSON_GetObjectItem(router, "type")->valuestring) != 0 ||
            (si.fallback == NULL) != cJSON_IsNull(fb) ||
            (si.fallback && strcmp(si.fallback, fb->valuestring) != 0))
            test_fail_(__FILE__, __LINE__, "%s: stage %s: info differs from the JSON", path, sn);
        char *rp = dynrag_pipeline_router_params(p, sn);
        if (!same_json(rp, cJSON_GetObjectItem(router, "params")))
            test_fail_(__FILE__, __LINE__, "%s: stage %s: router params %s", path, sn, rp);
        dynrag_free(rp);
        for (size_t i = 0; i < si.n_options; i++, seen++) {
            const cJSON *oj = cJSON_GetArrayItem(opts, (int)i);
            const cJSON *cost = cJSON_GetObjectItem(oj, "cost");
            const cJSON *ep = cJSON_GetObjectItem(oj, "endpoint");
            dynrag_option_info oi;
            if (dynrag_pipeline_option(p, sn, i, &oi, &err) != DYNRAG_OK) {
                test_fail_(__FILE__, __LINE__, "%s: %s option %zu: %s", path, sn, i,
                           dynrag_errmsg(&err));
                continue;
            }
            const char *oname = cJSON_GetObjectItem(oj, "name")->valuestring;
            if (strcmp(oi.name, oname) != 0 ||
                strcmp(oi.kind, cJSON_GetObjectItem(oj, "kind")->valuestring) != 0 ||
                oi.available != cJSON_IsTrue(cJSON_GetObjectItem(oj, "available")) ||
                (oi.endpoint == NULL) != cJSON_IsNull(ep) ||
                (oi.endpoint && strcmp(oi.endpoint, ep->valuestring) != 0) ||
                !same_num(oi.usd_per_1k_input,
                          num_or_nan(cJSON_GetObjectItem(cost, "usd_per_1k_input"))) ||
                !same_num(oi.usd_per_1k_output,
                          num_or_nan(cJSON_GetObjectItem(cost, "usd_per_1k_output"))) ||
                !same_num(oi.latency_ms, num_or_nan(cJSON_GetObjectItem(cost, "latency_ms"))) ||
                !same_num(oi.energy_wh, num_or_nan(cJSON_GetObjectItem(cost, "energy_wh"))) ||
                !same_num(oi.quality, num_or_nan(cJSON_GetObjectItem(oj, "quality"))) ||
                dynrag_pipeline_find_option(p, sn, oname) != (int)i ||
                (si.declared ? oi.line <= si.line - 1 : oi.line != 0))
                test_fail_(__FILE__, __LINE__, "%s: %s option %s differs from the JSON", path,
                           sn, oname);
            char *op = dynrag_pipeline_option_params(p, sn, i);
            if (!same_json(op, cJSON_GetObjectItem(oj, "params")))
                test_fail_(__FILE__, __LINE__, "%s: %s option %s params %s", path, sn, oname, op);
            dynrag_free(op);
        }
        /* out of range and unknown names */
        dynrag_option_info oi;
        if (dynrag_pipeline_option(p, sn, si.n_options, &oi, &err) != DYNRAG_ERR_NOTFOUND ||
            dynrag_pipeline_option_params(p, sn, si.n_options) != NULL ||
            dynrag_pipeline_find_option(p, sn, "no such option") != -1)
            test_fail_(__FILE__, __LINE__, "%s: %s: out-of-range option accepted", path, sn);
    }
    const cJSON *eps = cJSON_GetObjectItem(doc, "endpoints");
    if (dynrag_pipeline_n_endpoints(p) != (size_t)cJSON_GetArraySize(eps))
        test_fail_(__FILE__, __LINE__, "%s: %zu endpoints", path, dynrag_pipeline_n_endpoints(p));
    for (size_t i = 0; i < dynrag_pipeline_n_endpoints(p); i++) {
        dynrag_endpoint_info ei;
        if (dynrag_pipeline_endpoint(p, i, &ei, &err) != DYNRAG_OK) {
            test_fail_(__FILE__, __LINE__, "%s: endpoint %zu: %s", path, i, dynrag_errmsg(&err));
            continue;
        }
        const cJSON *ej = cJSON_GetObjectItem(eps, ei.name);
        const cJSON *key = cJSON_GetObjectItem(ej, "api_key_env");
        if (ej == NULL || strcmp(ei.base_url, cJSON_GetObjectItem(ej, "base_url")->valuestring) ||
            strcmp(ei.model, cJSON_GetObjectItem(ej, "model")->valuestring) ||
            (ei.api_key_env == NULL) != !cJSON_IsString(key) ||
            (ei.api_key_env && strcmp(ei.api_key_env, key->valuestring) != 0) ||
            ei.timeout_s != cJSON_GetObjectItem(ej, "timeout_s")->valuedouble ||
            ei.max_retries != cJSON_GetObjectItem(ej, "max_retries")->valueint ||
            ei.configured != cJSON_IsTrue(cJSON_GetObjectItem(ej, "configured")))
            test_fail_(__FILE__, __LINE__, "%s: endpoint %s differs from the JSON", path,
                       ei.name);
    }
    dynrag_endpoint_info ei;
    if (dynrag_pipeline_endpoint(p, dynrag_pipeline_n_endpoints(p), &ei, &err) !=
        DYNRAG_ERR_NOTFOUND)
        test_fail_(__FILE__, __LINE__, "%s: endpoint out of range accepted", path);
    /* the JSON writes an unbounded budget as null */
    const cJSON *bj = cJSON_GetObjectItem(doc, "budget");
    dynrag_budget b;
    dynrag_pipeline_budget(p, &b);
    double want[3] = {num_or_nan(cJSON_GetObjectItem(bj, "usd")),
                      num_or_nan(cJSON_GetObjectItem(bj, "latency_ms")),
                      num_or_nan(cJSON_GetObjectItem(bj, "energy_wh"))};
    double got[3] = {b.usd, b.latency_ms, b.energy_wh};
    for (int k = 0; k < 3; k++)
        if (!(isnan(want[k]) ? isinf(got[k]) : got[k] == want[k]))
            test_fail_(__FILE__, __LINE__, "%s: budget field %d: %g", path, k, got[k]);
    cJSON_Delete(doc);
    dynrag_pipeline_free(p);
    return seen;
}

TEST(introspect_matches_json_for_every_shipped_pipeline)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/pipelines", test_source_dir());
    DIR *d = opendir(dir);
    ASSERT(d != NULL);
    size_t files = 0, options = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".yaml") != 0)
            continue;
        char path[4500];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        options += check_pipeline(path);
        files++;
    }
    closedir(d);
    char fixture[4200];
    snprintf(fixture, sizeof(fixture), "%s/tests/fixtures/pipelines/valid-full.yaml",
             test_source_dir());
    options += check_pipeline(fixture);
    ASSERT_GT(files, 5);
    ASSERT_GT(options, 40);
}

TEST(introspect_unknown_stage_and_search_options)
{
    const char *yaml = "version: 1\nname: t\nstages:\n"
                       "  index:\n"
                       "    options:\n"
                       "      - {name: lex, kind: bm25, params: {k1: 0, b: 0}}\n"
                       "      - {name: mix, kind: hybrid, params: {rrf_k: 7}}\n"
                       "    router: {type: fixed, params: {option: mix}}\n"
                       "    fallback: lex\n";
    dynrag_pipeline *p = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_pipeline_load_string(yaml, strlen(yaml), "t.yaml", NULL, &p, NULL, &err),
              &err);
    dynrag_stage_info si;
    ASSERT_EQ(dynrag_pipeline_stage(p, "indexes", &si, &err), DYNRAG_ERR_NOTFOUND);
    ASSERT(strstr(dynrag_errmsg(&err), "indexes") != NULL);
    ASSERT_EQ(dynrag_pipeline_stage(p, NULL, &si, NULL), DYNRAG_ERR_NOTFOUND);
    ASSERT(dynrag_pipeline_router_params(p, "nope") == NULL);
    ASSERT_EQ(dynrag_pipeline_find_option(p, "nope", "lex"), -1);
    ASSERT_OK(dynrag_pipeline_stage(p, "index", &si, &err), &err);
    ASSERT_STR_EQ(si.fallback, "lex");
    ASSERT_STR_EQ(si.router, "fixed");
    ASSERT(si.declared);
    ASSERT_EQ(si.line, 5); /* where the stage's mapping starts */
    /* a configured 0 stays 0 */
    dynrag_search_options so;
    ASSERT_OK(dynrag_pipeline_search_options(p, "lex", &so, &err), &err);
    ASSERT_EQ(so.mode, DYNRAG_SEARCH_BM25);
    ASSERT(so.k1 == 0 && so.b == 0);
    ASSERT_OK(dynrag_pipeline_search_options(p, "mix", &so, &err), &err);
    ASSERT_EQ(so.mode, DYNRAG_SEARCH_HYBRID);
    ASSERT(so.rrf_k == 7);
    ASSERT_OK(dynrag_pipeline_search_options(p, NULL, &so, &err), &err);
    ASSERT_EQ(so.mode, DYNRAG_SEARCH_BM25);
    ASSERT_EQ(dynrag_pipeline_search_options(p, "nope", &so, &err), DYNRAG_ERR_NOTFOUND);
    ASSERT_STR_EQ(dynrag_stage_name(0), "retrieval_mode");
    ASSERT_STR_EQ(dynrag_stage_name(DYNRAG_N_STAGES - 1), "generator");
    ASSERT(dynrag_stage_name(DYNRAG_N_STAGES) == NULL);
    dynrag_pipeline_free(p);
}
