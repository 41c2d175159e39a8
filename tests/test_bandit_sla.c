/*
 * test_bandit_sla.c - the SLA-aware bandit reward (PickLLM): the shaped
 * reward as an invariant over generated params and latencies, and the
 * loader's checks of sla_ms / sla_penalty.
 */
#include "test.h"

#include "core/util.h"
#include "dynrag/pipeline.h"
#include "engine/feedback.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Invariant: for every lambda, sla_ms, sla_penalty, cost and latency, the
 * shaped reward is reward - lambda * usd - sla_penalty * max(0, latency -
 * sla_ms) / sla_ms (no SLA term without sla_ms or with a NaN latency); it
 * is finite, never above the lambda-only reward, and non-increasing in the
 * latency.
 */
TEST(bandit_sla_shaped_reward_property)
{
    dr_rng rng;
    dr_rng_seed(&rng, 17);
    int penalised = 0, within = 0;
    for (int it = 0; it < 5000; it++) {
        cJSON *p = cJSON_CreateObject();
        ASSERT(p != NULL);
        double lambda = dr_rng_below(&rng, 3) == 0 ? 0 : dr_rng_uniform(&rng) * 10;
        bool has_sla = dr_rng_below(&rng, 4) != 0;
        double sla = it < 4 ? 1e-300 : 0.5 + dr_rng_uniform(&rng) * 2000;
        bool has_pen = dr_rng_below(&rng, 2) == 0;
        double pen = it < 4 ? 1e6 : dr_rng_uniform(&rng) * 5;
        cJSON_AddNumberToObject(p, "lambda", lambda);
        if (has_sla)
            cJSON_AddNumberToObject(p, "sla_ms", sla);
        if (has_pen)
            cJSON_AddNumberToObject(p, "sla_penalty", pen);
        double reward = dr_rng_uniform(&rng) * 2 - 0.5;
        double usd = dr_rng_uniform(&rng) * 0.01;
        double lat = it < 4                        ? 1e300
                     : dr_rng_below(&rng, 10) == 0 ? NAN
                                                   : dr_rng_uniform(&rng) * 5000;
        double got = dr_bandit_shaped_reward(p, reward, usd, lat);
        double want = reward - lambda * usd;
        double k = has_pen ? pen : 1;
        if (has_sla && lat > sla)
            want -= k * DR_MIN((lat - sla) / sla, DR_SLA_OVERSHOOT_MAX);
        if (!isfinite(got) || fabs(got - want) > 1e-9 * (1 + fabs(want)))
            test_fail_(__FILE__, __LINE__, "lambda %g sla %g pen %g lat %g: got %.17g want %.17g",
                       lambda, has_sla ? sla : NAN, k, lat, got, want);
        if (got > reward - lambda * usd + 1e-12)
            test_fail_(__FILE__, __LINE__, "the SLA term raised the reward");
        double later = dr_bandit_shaped_reward(p, reward, usd, isnan(lat) ? 1 : lat * 1.5 + 1);
        if (!isnan(lat) && later > got + 1e-12)
            test_fail_(__FILE__, __LINE__, "a slower answer got more reward (%g > %g)", later, got);
        penalised += has_sla && lat > sla && k > 0;
        within += !has_sla || !(lat > sla);
        cJSON_Delete(p);
    }
    ASSERT_GT(penalised, 100);
    ASSERT_GT(within, 100);
}

/* Loads yaml; returns the formatted diagnostics (caller frees) and status. */
static char *load_diags(const char *yaml, int *rc)
{
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = NULL;
    dynrag_error err;
    *rc = dynrag_pipeline_load_string(yaml, strlen(yaml), "sla.yaml", test_tmpdir(), &p, &d, &err);
    char *s = dynrag_diags_format(d);
    dynrag_pipeline_free(p);
    dynrag_diags_free(d);
    return s;
}

/* The loader accepts sla_ms > 0 with sla_penalty >= 0, and rejects every
 * other value (and a penalty without an SLA) with file:line:col and field. */
TEST(bandit_sla_params_validated)
{
    static const struct {
        const char *params;
        const char *diag; /* NULL: loads */
    } cases[] = {
        {"sla_ms: 800", NULL},
        {"sla_ms: 0.5, sla_penalty: 0", NULL},
        {"sla_ms: 800, sla_penalty: 2.5, lambda: 10", NULL},
        {"sla_ms: 0", "sla.yaml:6:72: stages.generator.router.params.sla_ms: must be greater "
                      "than 0 (the latency in ms the SLA allows), got 0"},
        {"sla_ms: -5", "sla.yaml:6:72: stages.generator.router.params.sla_ms: must be from 0 to "
                       "1e+12, got -5"},
        {"sla_ms: fast", "sla.yaml:6:72: stages.generator.router.params.sla_ms: expected a "
                         "number, got string 'fast'"},
        {"sla_ms: 800, sla_penalty: -1", "sla.yaml:6:90: stages.generator.router.params."
                                         "sla_penalty: must be from 0 to 1000000, got -1"},
        {"sla_penalty: 2", "sla.yaml:6:77: stages.generator.router.params.sla_penalty: has no "
                           "effect without 'sla_ms' (the SLA it penalises)"},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(cases); i++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml,
                 "version: 1\nname: sla\nstages:\n  generator:\n"
                 "    options: [{name: a, kind: extractive}, {name: b, kind: extractive}]\n"
                 "    router: {type: bandit, params: {algorithm: epsilon_greedy, %s}}\n",
                 cases[i].params);
        int rc = 0;
        char *d = load_diags(yaml, &rc);
        if (cases[i].diag == NULL && rc != DYNRAG_OK)
            test_fail_(__FILE__, __LINE__, "'%s' failed: %s", cases[i].params, d ? d : "");
        if (cases[i].diag != NULL &&
            (rc == DYNRAG_OK || d == NULL || strstr(d, cases[i].diag) == NULL))
            test_fail_(__FILE__, __LINE__, "'%s': expected\n  %s\ngot\n%s", cases[i].params,
                       cases[i].diag, d ? d : "");
        free(d);
    }
}
