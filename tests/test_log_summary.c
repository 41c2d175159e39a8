/*
 * test_log_summary.c - `dynrag log summary`: escalations per cascade and
 * fallbacks per stage, checked against counts kept while generating many
 * random route logs (records with cascade attempts, fallbacks[] entries,
 * older records that give a fallback only in the stage reason, malformed
 * lines).
 */
#include "test.h"

#include "core/util.h"
#include "dynrag/engine.h"

#include <cjson/cJSON.h>

static const char *const stages[] = {"context", "generator", "index"};
static const char *const opts[] = {"a", "b", "c"};

typedef struct expect {
    long long attempts[3], escalations[3], queries[3], fallbacks[3];
    long long pair_esc[3][3][3]; /* stage, from, to */
    long long pair_fb[3][4][3];  /* stage, failed (3 = "?"), took */
} expect;

static double jnum(const cJSON *o, const char *a, const char *b, const char *c)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b)
        v = cJSON_GetObjectItemCaseSensitive(v, b);
    if (c)
        v = cJSON_GetObjectItemCaseSensitive(v, c);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

TEST(log_summary_cascades_and_fallbacks_property)
{
    dr_rng rng;
    dr_rng_seed(&rng, 77);
    for (int round = 0; round < 25; round++) {
        expect x;
        memset(&x, 0, sizeof x);
        dr_buf log = {0};
        int n_rec = 1 + (int)dr_rng_below(&rng, 40);
        for (int q = 0; q < n_rec; q++) {
            if (dr_rng_below(&rng, 15) == 0)
                dr_buf_puts(&log, "{not json\n");
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "id", "q");
            cJSON *st = cJSON_AddArrayToObject(r, "stages");
            cJSON *cas = cJSON_AddArrayToObject(r, "cascade");
            bool old_style = dr_rng_below(&rng, 4) == 0;
            cJSON *fbs = old_style ? NULL : cJSON_AddArrayToObject(r, "fallbacks");
            for (int s = 0; s < 3; s++) {
                /* a cascade on this stage: start at some option, escalate up */
                int cur = (int)dr_rng_below(&rng, 3);
                bool cascaded = dr_rng_below(&rng, 2) == 0;
                bool esc_any = false;
                while (cascaded) {
                    cJSON *a = cJSON_CreateObject();
                    cJSON_AddStringToObject(a, "stage", stages[s]);
                    cJSON_AddStringToObject(a, "option", opts[cur]);
                    bool esc = cur < 2 && dr_rng_below(&rng, 2) == 0;
                    cJSON_AddBoolToObject(a, "escalated", esc);
                    cJSON_AddItemToArray(cas, a);
                    x.attempts[s]++;
                    if (!esc)
                        break;
                    x.escalations[s]++;
                    x.pair_esc[s][cur][cur + 1]++;
                    esc_any = true;
                    cur++;
                }
                x.queries[s] += esc_any;
                int fails = (int)dr_rng_below(&rng, 3) == 0 ? 1 : 0;
                char reason[128] = "rule 1 matched";
                if (fails) {
                    int failed = (int)dr_rng_below(&rng, 3), took = (int)dr_rng_below(&rng, 3);
                    x.fallbacks[s]++;
                    if (old_style) {
                        snprintf(reason, sizeof reason,
                                 "rule 1; fallback to '%s' after error: HTTP 500", opts[took]);
                        x.pair_fb[s][3][took]++;
                        cur = took;
                    } else {
                        cJSON *f = cJSON_CreateObject();
                        cJSON_AddStringToObject(f, "stage", stages[s]);
                        cJSON_AddStringToObject(f, "failed", opts[failed]);
                        cJSON_AddStringToObject(f, "error", "HTTP 500");
                        cJSON_AddStringToObject(f, "took", opts[took]);
                        cJSON_AddItemToArray(fbs, f);
                        x.pair_fb[s][failed][took]++;
                    }
                }
                cJSON *d = cJSON_CreateObject();
                cJSON_AddStringToObject(d, "stage", stages[s]);
                cJSON_AddStringToObject(d, "choice", opts[cur]);
                cJSON_AddStringToObject(d, "reason", reason);
                cJSON_AddItemToArray(st, d);
            }
            char *line = cJSON_PrintUnformatted(r);
            dr_buf_puts(&log, line);
            dr_buf_putc(&log, '\n');
            free(line);
            cJSON_Delete(r);
        }
        const char *path = test_write_file("route.jsonl", log.data);
        dr_buf_free(&log);
        char *report = NULL, *json = NULL;
        dynrag_error err;
        ASSERT_OK(dynrag_log_summary(path, &report, &json, &err), &err);
        cJSON *j = cJSON_Parse(json);
        ASSERT(j != NULL);
        for (int s = 0; s < 3; s++) {
            ASSERT_NEAR(jnum(j, "cascades", stages[s], "attempts"), x.attempts[s], 0);
            ASSERT_NEAR(jnum(j, "cascades", stages[s], "escalations"), x.escalations[s], 0);
            ASSERT_NEAR(jnum(j, "cascades", stages[s], "queries_escalated"), x.queries[s], 0);
            ASSERT_NEAR(jnum(j, "fallbacks", stages[s], "count"), x.fallbacks[s], 0);
            const cJSON *esc = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "cascades"),
                                                 stages[s]),
                "escalated");
            const cJSON *taken = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "fallbacks"),
                                                 stages[s]),
                "taken");
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 3; b++) {
                    char key[32];
                    snprintf(key, sizeof key, "%s -> %s", a < 3 ? opts[a] : "?", opts[b]);
                    const cJSON *v = cJSON_GetObjectItemCaseSensitive(taken, key);
                    ASSERT_NEAR(cJSON_IsNumber(v) ? v->valuedouble : 0, x.pair_fb[s][a][b], 0);
                    if (a == 3)
                        continue;
                    v = cJSON_GetObjectItemCaseSensitive(esc, key);
                    ASSERT_NEAR(cJSON_IsNumber(v) ? v->valuedouble : 0, x.pair_esc[s][a][b], 0);
                }
            if (x.escalations[s] > 0) {
                char want[64];
                snprintf(want, sizeof want, "%lld escalations", x.escalations[s]);
                ASSERT_CONTAINS(report, want);
            }
        }
        if (x.attempts[0] + x.attempts[1] + x.attempts[2] > 0)
            ASSERT_CONTAINS(report, "cascades (escalations per stage)");
        if (x.fallbacks[0] + x.fallbacks[1] + x.fallbacks[2] > 0)
            ASSERT_CONTAINS(report, "fallbacks per stage");
        cJSON_Delete(j);
        free(report);
        free(json);
    }
}
