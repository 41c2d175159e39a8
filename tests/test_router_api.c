/*
 * test_router_api.c - one stage's router on its own (dynrag/router.h),
 * through the public API only: it routes as the router inside the engine
 * does, all_available and in_memory do what they say, feedback and judges
 * validate their input, and dynrag_pipeline_set_router_param checks a value
 * as the YAML would.
 */
#include "test.h"

#include "dynrag/dynrag.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* A small PRNG of the test's own (the test uses the public API only). */
typedef struct test_rng {
    uint64_t s;
} test_rng;

static void test_rng_seed(test_rng *r, uint64_t seed)
{
    r->s = seed * 0x9E3779B97F4A7C15ull + 1;
}

static size_t test_rng_below(test_rng *r, size_t n)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (size_t)(r->s % n);
}

#define DR_TEST_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define FAIL(...)                                       \
    do {                                                \
        test_fail_(__FILE__, __LINE__, __VA_ARGS__);    \
        return;                                         \
    } while (0)

static dynrag_pipeline *load(const char *yaml)
{
    dynrag_pipeline *p = NULL;
    dynrag_diags *dg = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_pipeline_load_string(yaml, strlen(yaml), "test.yaml", test_tmpdir(), &p, &dg,
                                         &err);
    if (rc != DYNRAG_OK) {
        char *t = dg ? dynrag_diags_format(dg) : NULL;
        test_fail_(__FILE__, __LINE__, "load: %s %s", dynrag_errmsg(&err), t ? t : "");
        dynrag_free(t);
    }
    dynrag_diags_free(dg);
    return p;
}

/* A random query of words, some of which the rules below match. */
static void random_query(test_rng *rng, char *out, size_t size)
{
    static const char *const words[] = {"who",   "what",  "alpha", "beta",   "compare",
                                        "older", "when",  "the",   "Paris",  "and",
                                        "of",    "river", "1999",  "longer", "which"};
    size_t n = 1 + test_rng_below(rng, 14), len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && len + 12 < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%s", i ? " " : "",
                                words[test_rng_below(rng, DR_TEST_ARRAY_LEN(words))]);
}

/* A rules router on the index stage and on the generator: the bare router
 * chooses what the engine's route-only query chooses, for many queries. */
TEST(router_api_routes_as_the_engine)
{
    const char *yaml =
        "version: 1\nname: t\n"
        "stages:\n"
        "  index:\n    options:\n      - {name: lex, kind: bm25}\n      - {name: lex2, kind: bm25}\n"
        "    router:\n      type: rules\n      params:\n        rules:\n"
        "          - {when: {min_words: 6}, option: lex2}\n"
        "          - {when: {regex: alpha}, option: lex2}\n        default: lex\n"
        "  generator:\n    options:\n      - {name: a, kind: extractive}\n"
        "      - {name: b, kind: extractive}\n      - {name: c, kind: extractive}\n"
        "    router:\n      type: rules\n      params:\n        rules:\n"
        "          - {when: {has_comparison: true}, option: c}\n"
        "          - {when: {min_entities: 1}, option: b}\n        default: a\n";
    dynrag_pipeline *p = load(yaml);
    ASSERT(p != NULL);
    dynrag_error err;
    dynrag_router *ri = NULL, *rg = NULL;
    ASSERT_OK(dynrag_router_open(p, "index", NULL, &ri, &err), &err);
    ASSERT_OK(dynrag_router_open(p, "generator", NULL, &rg, &err), &err);
    ASSERT_STR_EQ(dynrag_router_type(ri), "rules");
    test_rng rng;
    test_rng_seed(&rng, 7);
    size_t picked[3] = {0};
    for (int i = 0; i < 300; i++) {
        char q[256];
        random_query(&rng, q, sizeof q);
        dynrag_route a, b;
        ASSERT_OK(dynrag_router_route(ri, q, &a, &err), &err);
        ASSERT_OK(dynrag_router_route(rg, q, &b, &err), &err);
        ASSERT(a.option >= 0 && a.option < 2);
        ASSERT(b.option >= 0 && b.option < 3);
        ASSERT(a.reason[0] != '\0');
        picked[b.option]++;
        /* The expected choice, from the rules themselves. */
        size_t words = 1;
        for (const char *c = q; *c; c++)
            words += *c == ' ';
        int want_index = (words >= 6 || strstr(q, "alpha") != NULL) ? 1 : 0;
        if (a.option != want_index)
            FAIL("query '%s' (%zu words): index option %d, want %d", q, words, a.option,
                 want_index);
    }
    /* Each generator rule fires on some queries. */
    ASSERT(picked[0] > 0 && picked[1] > 0 && picked[2] > 0);
    dynrag_router_close(ri);
    dynrag_router_close(rg);
    dynrag_pipeline_free(p);
}

/* An option whose endpoint is not configured is never chosen, unless the
 * router is opened with all_available (a replay of recorded outcomes). */
TEST(router_api_all_available)
{
    const char *yaml =
        "version: 1\nname: t\nendpoints:\n  llm: {base_url: \"\", model: \"\"}\n"
        "stages:\n  generator:\n    options:\n      - {name: ext, kind: extractive}\n"
        "      - {name: big, kind: openai, endpoint: llm}\n"
        "    router:\n      type: rules\n      params:\n        rules:\n"
        "          - {when: {regex: big}, option: big}\n        default: ext\n";
    dynrag_pipeline *p = load(yaml);
    ASSERT(p != NULL);
    dynrag_option_info oi;
    dynrag_error err;
    ASSERT_OK(dynrag_pipeline_option(p, "generator", 1, &oi, &err), &err);
    ASSERT(!oi.available);
    for (int all = 0; all < 2; all++) {
        dynrag_router_options ro;
        dynrag_router_options_init(&ro);
        ro.all_available = all;
        dynrag_router *r = NULL;
        ASSERT_OK(dynrag_router_open(p, "generator", &ro, &r, &err), &err);
        dynrag_route d;
        ASSERT_OK(dynrag_router_route(r, "the big one", &d, &err), &err);
        ASSERT_EQ(d.option, all ? 1 : 0);
        ASSERT_OK(dynrag_router_route(r, "a small one", &d, &err), &err);
        ASSERT_EQ(d.option, 0);
        dynrag_router_close(r);
    }
    dynrag_pipeline_free(p);
}

static bool exists(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

/* A bandit learns from feedback; with a state file its rewards persist,
 * except when opened in_memory; a second reward for an id is refused;
 * feedback input is validated. */
TEST(router_api_bandit_feedback_and_in_memory)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "version: 1\nname: t\n"
             "stages:\n  generator:\n    options:\n      - {name: a, kind: extractive}\n"
             "      - {name: b, kind: extractive}\n"
             "    router:\n      type: bandit\n"
             "      params: {algorithm: epsilon_greedy, epsilon: 0.05, seed: 3, state: %s/b.json}\n",
             test_tmpdir());
    dynrag_pipeline *p = load(yaml);
    ASSERT(p != NULL);
    dynrag_error err;
    /* In memory: learns that b is better, writes nothing. */
    dynrag_router_options ro;
    dynrag_router_options_init(&ro);
    ro.in_memory = true;
    dynrag_router *r = NULL;
    ASSERT_OK(dynrag_router_open(p, "generator", &ro, &r, &err), &err);
    size_t late_b = 0;
    for (int i = 0; i < 400; i++) {
        char id[16];
        snprintf(id, sizeof id, "q%d", i);
        dynrag_route d;
        ASSERT_OK(dynrag_router_route(r, "what is it", &d, &err), &err);
        double quality = d.option == 1 ? 0.9 : 0.1;
        ASSERT_OK(dynrag_router_feedback(r, id, "what is it", (size_t)d.option, quality, 0.001,
                                         NAN, &err),
                  &err);
        late_b += i >= 300 && d.option == 1;
    }
    ASSERT(late_b >= 90); /* epsilon 0.05: ~97.5% of the last 100 */
    /* Invalid feedback is refused, naming what. */
    ASSERT_EQ(dynrag_router_feedback(r, NULL, "q", 2, 1, 0, NAN, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(err.msg, "no option 2");
    ASSERT_EQ(dynrag_router_feedback(r, NULL, "q", 0, NAN, 0, NAN, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dynrag_router_feedback(r, NULL, "q", 0, 1, -1, NAN, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dynrag_router_feedback(r, NULL, "q", 0, 1, INFINITY, NAN, &err),
              DYNRAG_ERR_INVALID);
    ASSERT_EQ(dynrag_router_feedback(r, NULL, "q", 0, 1, 0, -5, &err), DYNRAG_ERR_INVALID);
    dynrag_router_close(r);
    ASSERT(!exists(test_tmpdir(), "b.json"));
    ASSERT(!exists(test_tmpdir(), "b.json.rewards.db"));
    /* Durable: a reward given through a router opened normally is there
     * for the next router: a second one for the same id is refused, across
     * handles, and the in-memory rewards above were never recorded. */
    ASSERT_OK(dynrag_router_open(p, "generator", NULL, &r, &err), &err);
    ASSERT_OK(dynrag_router_feedback(r, "q3", "x", 1, 1, 0, NAN, &err), &err);
    ASSERT_EQ(dynrag_router_feedback(r, "q3", "x", 1, 1, 0, NAN, &err), DYNRAG_ERR_STATE);
    dynrag_router_close(r);
    ASSERT(exists(test_tmpdir(), "b.json.rewards.db"));
    ASSERT_OK(dynrag_router_open(p, "generator", NULL, &r, &err), &err);
    ASSERT_EQ(dynrag_router_feedback(r, "q3", "x", 0, 1, 0, NAN, &err), DYNRAG_ERR_STATE);
    ASSERT_OK(dynrag_router_feedback(r, "q4", "x", 0, 1, 0, NAN, &err), &err);
    dynrag_router_close(r);
    dynrag_pipeline_free(p);
}

/* A cascade's judge through the public API: an answer that says it cannot
 * answer scores 0 under every judge; the agreement judge is the share of
 * the most common answer; a router that is not a cascade has no judge. */
TEST(router_api_judge)
{
    static const char *const judges[] = {"self_route", "logprob_margin", "seq_logprob",
                                         "agreement"};
    dynrag_error err;
    for (size_t j = 0; j < DR_TEST_ARRAY_LEN(judges); j++) {
        char yaml[768];
        snprintf(yaml, sizeof yaml,
                 "version: 1\nname: t\n"
                 "stages:\n  generator:\n    options:\n      - {name: a, kind: extractive}\n"
                 "      - {name: b, kind: extractive}\n"
                 "    router:\n      type: cascade\n      params: {judge: %s, threshold: 0.5}\n",
                 judges[j]);
        dynrag_pipeline *p = load(yaml);
        ASSERT(p != NULL);
        dynrag_router *r = NULL;
        ASSERT_OK(dynrag_router_open(p, "generator", NULL, &r, &err), &err);
        dynrag_route d;
        ASSERT_OK(dynrag_router_route(r, "who wrote it", &d, &err), &err);
        ASSERT_EQ(d.option, 0); /* a cascade starts with its first option */
        static const char *const refusals[] = {"unanswerable", "", "Not enough information.",
                                               "This cannot be answered"};
        for (size_t k = 0; k < DR_TEST_ARRAY_LEN(refusals); k++) {
            dynrag_answer a;
            dynrag_answer_init(&a);
            a.text = refusals[k];
            a.samples = &refusals[k];
            a.n_samples = 1;
            a.first_token_margin = 9;
            a.mean_logprob = -0.01;
            double c = -1;
            char why[128];
            ASSERT_OK(dynrag_router_judge(r, &a, &c, why, sizeof why, &err), &err);
            if (c != 0)
                FAIL("judge %s: refusal '%s' scored %g (%s)", judges[j], refusals[k], c, why);
        }
        if (strcmp(judges[j], "agreement") == 0) {
            const char *s3[] = {"Paris", "paris.", "Lyon"};
            dynrag_answer a;
            dynrag_answer_init(&a);
            a.text = "Paris";
            a.samples = s3;
            a.n_samples = 3;
            double c = 0;
            ASSERT_OK(dynrag_router_judge(r, &a, &c, NULL, 0, &err), &err);
            ASSERT_NEAR(c, 2.0 / 3.0, 1e-12);
        }
        dynrag_router_close(r);
        dynrag_pipeline_free(p);
    }
    dynrag_pipeline *p = load("version: 1\nname: t\nstages:\n  generator:\n    options:\n"
                              "      - {name: a, kind: extractive}\n");
    ASSERT(p != NULL);
    dynrag_router *r = NULL;
    ASSERT_OK(dynrag_router_open(p, "generator", NULL, &r, &err), &err);
    dynrag_answer a;
    dynrag_answer_init(&a);
    double c = 0;
    ASSERT_EQ(dynrag_router_judge(r, &a, &c, NULL, 0, &err), DYNRAG_ERR_UNSUPPORTED);
    ASSERT_CONTAINS(err.msg, "not a cascade");
    ASSERT(isnan(c));
    dynrag_router_close(r);
    /* Unknown stages and NULLs are refused, not crashed on. */
    ASSERT_EQ(dynrag_router_open(p, "generatr", NULL, &r, &err), DYNRAG_ERR_NOTFOUND);
    ASSERT(r == NULL);
    ASSERT_EQ(dynrag_router_open(p, NULL, NULL, &r, &err), DYNRAG_ERR_NOTFOUND);
    ASSERT_EQ(dynrag_router_open(NULL, "generator", NULL, &r, &err), DYNRAG_ERR_INVALID);
    dynrag_route d;
    ASSERT_EQ(dynrag_router_route(NULL, "q", &d, &err), DYNRAG_ERR_INVALID);
    ASSERT_OK(dynrag_router_open(p, "generator", NULL, &r, &err), &err);
    ASSERT_EQ(dynrag_router_route(r, "caf\xc3 x", &d, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(err.msg, "not valid UTF-8 (byte 3)");
    ASSERT_EQ(dynrag_router_feedback(r, NULL, "\xff", 0, 1, 0, NAN, &err), DYNRAG_ERR_INVALID);
    dynrag_router_close(r);
    dynrag_router_close(NULL);
    dynrag_pipeline_free(p);
}

/* dynrag_pipeline_set_router_param: for random keys and values, a value is
 * accepted exactly when the YAML with that value loads, and then the
 * router params say it. */
TEST(router_api_set_param_checked_as_the_yaml)
{
    static const struct {
        const char *type, *params, *key;
    } cases[] = {
        {"cascade", "{judge: self_route}", "threshold"},
        {"cascade", "{judge: agreement}", "samples"},
        {"bandit", "{algorithm: ucb1}", "epsilon"},
        {"bandit", "{algorithm: ucb1}", "lambda"},
        {"bandit", "{algorithm: ucb1}", "seed"},
        {"bandit", "{algorithm: ucb1}", "sla_ms"},
        {"bandit", "{algorithm: ucb1}", "sla_penalty"},
        {"bandit", "{algorithm: ucb1, sla_ms: 100}", "sla_penalty"},
        {"cost", "{objective: min_cost}", "quality_floor"},
        {"cost", "{objective: min_cost}", "willingness_to_pay"},
        {"cost", "{objective: min_cost}", "objective"},
        {"fixed", "{option: a}", "threshold"},
    };
    static const double values[] = {0, 0.5, 1, 2, 3, -0.1, 1e7, 7.5, 16, 17, NAN, INFINITY};
    test_rng rng;
    test_rng_seed(&rng, 11);
    size_t accepted = 0, refused = 0;
    for (int round = 0; round < 200; round++) {
        size_t ci = test_rng_below(&rng, DR_TEST_ARRAY_LEN(cases));
        double v = values[test_rng_below(&rng, DR_TEST_ARRAY_LEN(values))];
        char base[768], with[896];
        const char *head = "version: 1\nname: t\nstages:\n  generator:\n    options:\n"
                           "      - {name: a, kind: extractive, quality: 0.5}\n"
                           "      - {name: b, kind: extractive, quality: 0.7}\n"
                           "    router:\n      type: %s\n      params: %s\n";
        snprintf(base, sizeof base, head, cases[ci].type, cases[ci].params);
        char params[256];
        snprintf(params, sizeof params, "%.*s, %s: %.17g}", (int)strlen(cases[ci].params) - 1,
                 cases[ci].params, cases[ci].key, v);
        snprintf(with, sizeof with, head, cases[ci].type, params);
        dynrag_pipeline *p = load(base);
        ASSERT(p != NULL);
        dynrag_pipeline *q = NULL;
        bool yaml_ok = isfinite(v) &&
                       dynrag_pipeline_load_string(with, strlen(with), "w.yaml", test_tmpdir(), &q,
                                                   NULL, NULL) == DYNRAG_OK;
        dynrag_error err;
        int rc = dynrag_pipeline_set_router_param(p, "generator", cases[ci].key, v, &err);
        if ((rc == DYNRAG_OK) != yaml_ok)
            FAIL("%s.%s = %g: set says %d (%s), the YAML %s", cases[ci].type, cases[ci].key, v,
                 rc, rc ? err.msg : "", yaml_ok ? "loads" : "does not load");
        if (rc == DYNRAG_OK) {
            accepted++;
            char *a = dynrag_pipeline_router_params(p, "generator");
            char *b = dynrag_pipeline_router_params(q, "generator");
            ASSERT(a != NULL && b != NULL);
            cJSON *ja = cJSON_Parse(a), *jb = cJSON_Parse(b);
            bool same = ja && jb && cJSON_Compare(ja, jb, true);
            cJSON_Delete(ja);
            cJSON_Delete(jb);
            if (!same)
                FAIL("%s.%s = %g: params %s, the YAML's %s", cases[ci].type, cases[ci].key, v, a,
                     b);
            dynrag_free(a);
            dynrag_free(b);
            /* The router opened afterwards is built from the new value. */
            dynrag_router *r = NULL;
            ASSERT_OK(dynrag_router_open(p, "generator", NULL, &r, &err), &err);
            dynrag_router_close(r);
        } else {
            refused++;
            ASSERT_EQ(rc, DYNRAG_ERR_INVALID);
            ASSERT_CONTAINS(err.msg, "stages.generator.router.params.");
        }
        dynrag_pipeline_free(q);
        dynrag_pipeline_free(p);
    }
    ASSERT(accepted > 20 && refused > 20);
    dynrag_pipeline *p = load("version: 1\nname: t\nstages:\n  generator:\n    options:\n"
                              "      - {name: a, kind: extractive}\n");
    dynrag_error err;
    ASSERT_EQ(dynrag_pipeline_set_router_param(p, "nope", "threshold", 0.5, &err),
              DYNRAG_ERR_NOTFOUND);
    ASSERT_EQ(dynrag_pipeline_set_router_param(p, "generator", NULL, 0.5, &err),
              DYNRAG_ERR_INVALID);
    dynrag_pipeline_free(p);
}

/* Writes an outcome table where option a scores 0.6, b 0.3 and c 0.9 on
 * every query, at costs 0.001, 0.0001 and 0.01, and trains a `predict`
 * model on it; returns the model's path (static storage). */
static const char *constant_quality_model(void)
{
    static char model[1024];
    char table[1024];
    FILE *f;
    snprintf(table, sizeof table, "%s/oc.jsonl", test_tmpdir());
    f = fopen(table, "w");
    if (f == NULL)
        return NULL;
    for (int i = 0; i < 80; i++)
        fprintf(f,
                "{\"id\": \"q%d\", \"query\": \"question number %d about topic %d\", "
                "\"outcomes\": {\"a\": {\"quality\": 0.6, \"cost_usd\": 0.001}, "
                "\"b\": {\"quality\": 0.3, \"cost_usd\": 0.0001}, "
                "\"c\": {\"quality\": 0.9, \"cost_usd\": 0.01}}}\n",
                i, i, i % 7);
    fclose(f);
    snprintf(model, sizeof model, "%s/q.safetensors", test_tmpdir());
    return test_train_predict(table, model, 64, 1) == 0 ? model : NULL;
}

/* Cascade routing (a cascade with a quality_model): it starts with the
 * option of the best predicted quality - willingness_to_pay x cost and
 * escalates to the best option not yet called whose predicted quality beats
 * the judged confidence, stopping when none does; a listed cascade goes in
 * listed order. */
TEST(router_api_cascade_routing)
{
    const char *model = constant_quality_model();
    ASSERT(model != NULL);
    dynrag_error err;
    static const double wtps[] = {0, 100};
    for (int w = 0; w < 2; w++) {
        char yaml[2048];
        snprintf(yaml, sizeof yaml,
                 "version: 1\nname: t\nstages:\n  generator:\n    options:\n"
                 "      - {name: a, kind: extractive}\n      - {name: b, kind: extractive}\n"
                 "      - {name: c, kind: extractive}\n"
                 "    router:\n      type: cascade\n"
                 "      params: {judge: self_route, quality_model: %s, willingness_to_pay: %g}\n",
                 model, wtps[w]);
        dynrag_pipeline *p = load(yaml);
        ASSERT(p != NULL);
        dynrag_router *r = NULL;
        ASSERT_OK(dynrag_router_open(p, "generator", NULL, &r, &err), &err);
        dynrag_route d;
        ASSERT_OK(dynrag_router_route(r, "question number 3 about topic 3", &d, &err), &err);
        /* predicted about 0.9 / 0.6 / 0.3 */
        ASSERT(d.scores[2] > d.scores[0] - 1 && d.reason[0] != '\0');
        bool called[3] = {false, false, false};
        int next = -1;
        if (w == 0) {
            /* wtp 0: c (0.9) first; after a confidence of 0.4 the best
             * remaining above it is a (0.6); then nothing (b 0.3 < 0.4);
             * after a confidence of 0.2, b. */
            ASSERT_EQ(d.option, 2);
            called[2] = true;
            ASSERT_OK(dynrag_router_cascade_next(r, "q", called, 2, 0.4, &next, &err), &err);
            ASSERT_EQ(next, 0);
            called[0] = true;
            ASSERT_OK(dynrag_router_cascade_next(r, "q", called, 0, 0.4, &next, &err), &err);
            ASSERT_EQ(next, -1);
            ASSERT_OK(dynrag_router_cascade_next(r, "q", called, 0, 0.2, &next, &err), &err);
            ASSERT_EQ(next, 1);
            /* nothing beats a confidence of 0.95 */
            called[0] = false;
            ASSERT_OK(dynrag_router_cascade_next(r, "q", called, 2, 0.95, &next, &err), &err);
            ASSERT_EQ(next, -1);
        } else {
            /* wtp 100: a (0.6 - 0.1) first; after a confidence of 0.4
             * nothing gains more than it costs (b 0.3 - 0.01, c 0.9 - 1);
             * after 0.1, b does. */
            ASSERT_EQ(d.option, 0);
            called[0] = true;
            ASSERT_OK(dynrag_router_cascade_next(r, "q", called, 0, 0.4, &next, &err), &err);
            ASSERT_EQ(next, -1);
            ASSERT_OK(dynrag_router_cascade_next(r, "q", called, 0, 0.1, &next, &err), &err);
            ASSERT_EQ(next, 1);
            /* c's net score is negative: never worth it */
            called[1] = true;
            ASSERT_OK(dynrag_router_cascade_next(r, "q", called, 1, -0.05, &next, &err), &err);
            ASSERT_EQ(next, -1);
            ASSERT_OK(dynrag_router_cascade_next(r, "q", called, 1, -0.5, &next, &err), &err);
            ASSERT_EQ(next, 2);
        }
        ASSERT_EQ(dynrag_router_cascade_next(r, "q", called, 7, 0.1, &next, &err),
                  DYNRAG_ERR_INVALID);
        dynrag_router_close(r);
        dynrag_pipeline_free(p);
    }
    /* Listed order without a quality model. */
    dynrag_pipeline *p = load("version: 1\nname: t\nstages:\n  generator:\n    options:\n"
                              "      - {name: a, kind: extractive}\n"
                              "      - {name: b, kind: extractive}\n"
                              "      - {name: c, kind: extractive}\n"
                              "    router: {type: cascade}\n");
    ASSERT(p != NULL);
    dynrag_router *r = NULL;
    ASSERT_OK(dynrag_router_open(p, "generator", NULL, &r, &err), &err);
    bool called[3] = {true, false, false};
    int next = -1;
    ASSERT_OK(dynrag_router_cascade_next(r, "q", called, 0, 0.99, &next, &err), &err);
    ASSERT_EQ(next, 1);
    called[1] = true;
    ASSERT_OK(dynrag_router_cascade_next(r, "q", called, 1, 0.0, &next, &err), &err);
    ASSERT_EQ(next, 2);
    called[2] = true;
    ASSERT_OK(dynrag_router_cascade_next(r, "q", called, 2, 0.0, &next, &err), &err);
    ASSERT_EQ(next, -1);
    dynrag_router_close(r);
    dynrag_pipeline_free(p);
    /* Not a cascade; a quality model that knows none of the options. */
    p = load("version: 1\nname: t\nstages:\n  generator:\n    options:\n"
             "      - {name: a, kind: extractive}\n    router: {type: fixed, params: {option: a}}\n");
    ASSERT_OK(dynrag_router_open(p, "generator", NULL, &r, &err), &err);
    ASSERT_EQ(dynrag_router_cascade_next(r, "q", called, 0, 0.0, &next, &err),
              DYNRAG_ERR_UNSUPPORTED);
    dynrag_router_close(r);
    dynrag_pipeline_free(p);
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "version: 1\nname: t\nstages:\n  generator:\n    options:\n"
             "      - {name: x, kind: extractive}\n      - {name: y, kind: extractive}\n"
             "    router: {type: cascade, params: {quality_model: %s}}\n",
             model);
    p = load(yaml);
    ASSERT(p != NULL);
    ASSERT_EQ(dynrag_router_open(p, "generator", NULL, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(err.msg, "knows none of the stage's options");
    dynrag_pipeline_free(p);
}
