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

/* True when s[0..n) is valid UTF-8 with no control character but '\n' (and
 * '\t' with tabs: the JSON's indentation). */
static bool printable_utf8(const char *s, size_t n, bool tabs)
{
    if (!dr_utf8_valid(s, n, NULL))
        return false;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = dr_utf8_decode(s + i, n - i, &cp);
        if ((cp < 0x20 && cp != '\n' && !(tabs && cp == '\t')) || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F))
            return false;
        i += len;
    }
    return true;
}

/* Random bytes of every kind a name in a hand-edited or damaged log can hold:
 * ASCII, escape sequences, C1 controls, multi-byte characters, stray
 * continuation and lead bytes. */
static void hostile_name(uint64_t *st, char *out, size_t cap)
{
    static const char *const parts[] = {"gen", "\x1b[31m", "\x07", "\xc2\x9b", "\xc3\xa9",
                                        "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\x80", "\xc3",
                                        "\xed\xa0\x80", "\t", "\n", "aaaaaaaaaaaaaaaaaaaa"};
    size_t n = 0, pieces = 1 + test_rand(st) % 8;
    out[0] = '\0';
    for (size_t i = 0; i < pieces; i++) {
        const char *p = parts[test_rand(st) % (sizeof(parts) / sizeof(parts[0]))];
        size_t l = strlen(p);
        if (n + l + 1 > cap)
            break;
        memcpy(out + n, p, l + 1);
        n += l;
    }
}

/* dr_display_copy: printable UTF-8, never cut inside a character, never
 * longer than its input or the buffer, and the same input gives the same
 * copy (so counting by the copy is consistent). */
TEST(display_copy_property)
{
    uint64_t st = 11;
    for (int i = 0; i < 20000; i++) {
        char name[200], a[64], b[64];
        hostile_name(&st, name, sizeof(name));
        size_t size = 1 + test_rand(&st) % sizeof(a);
        dr_display_copy(a, size, name);
        size_t n = strlen(a);
        ASSERT(n < size);
        ASSERT(n <= strlen(name));
        ASSERT(printable_utf8(a, n, false) && strchr(a, '\n') == NULL);
        dr_display_copy(b, size, name);
        ASSERT_STR_EQ(a, b);
        /* a longer buffer extends the copy, it never changes its start */
        char c[200];
        dr_display_copy(c, sizeof(c), name);
        ASSERT(strncmp(a, c, n) == 0);
    }
    char one[1] = {'x'};
    dr_display_copy(one, 1, "abc");
    ASSERT_EQ(one[0], '\0');
    char t[16];
    ASSERT_STR_EQ(dr_display_copy(t, sizeof(t), "a\tb\x1b[0m\xff"), "a b?[0m?");
    ASSERT_STR_EQ(dr_display_copy(t, 4, "\xc3\xa9\xc3\xa9"), "\xc3\xa9"); /* not half of the second */
}

/* A route log whose stage and option names hold escape sequences, C1
 * controls, invalid UTF-8 and long multi-byte names: the report and the
 * JSON are printable UTF-8 (no byte of the log can drive a terminal), the
 * JSON parses, and every record is counted once per stage whatever the
 * length of its option's name. */
TEST(log_summary_hostile_names)
{
    uint64_t st = 5;
    for (int round = 0; round < 40; round++) {
        dr_buf log = {0};
        int n_rec = 1 + (int)(test_rand(&st) % 30);
        char stage[3][200], opt[4][200];
        for (int i = 0; i < 3; i++)
            hostile_name(&st, stage[i], sizeof(stage[i]));
        for (int i = 0; i < 4; i++)
            hostile_name(&st, opt[i], sizeof(opt[i]));
        for (int q = 0; q < n_rec; q++) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "id", opt[q % 4]);
            cJSON *sts = cJSON_AddArrayToObject(r, "stages");
            cJSON *fbs = cJSON_AddArrayToObject(r, "fallbacks");
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "stage", stage[0]);
            cJSON_AddStringToObject(d, "choice", opt[test_rand(&st) % 4]);
            cJSON_AddItemToArray(sts, d);
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "stage", stage[1]);
            cJSON_AddStringToObject(f, "failed", opt[0]);
            cJSON_AddStringToObject(f, "took", opt[test_rand(&st) % 4]);
            cJSON_AddItemToArray(fbs, f);
            char *line = cJSON_PrintUnformatted(r);
            /* cJSON escapes control characters; the raw bytes a damaged log
             * may hold are written as they are */
            dr_buf_puts(&log, line);
            dr_buf_putc(&log, '\n');
            free(line);
            cJSON_Delete(r);
            if (test_rand(&st) % 3 == 0) {
                dr_buf_printf(&log, "{\"id\":\"r\",\"stages\":[{\"stage\":\"%s\",\"choice\":\"%s\"}]}\n",
                              "raw\x1b]0;x\x07", opt[2]);
            }
        }
        const char *path = test_write_file("hostile.jsonl", log.data);
        dr_buf_free(&log);
        char *report = NULL, *json = NULL;
        dynrag_error err;
        ASSERT_OK(dynrag_log_summary(path, &report, &json, &err), &err);
        ASSERT(printable_utf8(report, strlen(report), false));
        ASSERT(printable_utf8(json, strlen(json), true));
        cJSON *j = cJSON_Parse(json);
        ASSERT(j != NULL);
        /* the first stage: every record counted once, in one slot per
         * distinct (shown) option name */
        char shown[32];
        dr_display_copy(shown, sizeof(shown), stage[0]);
        const cJSON *s0 = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(j, "stages"), shown);
        ASSERT(cJSON_IsObject(s0));
        double total = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, s0) total += c->valuedouble;
        ASSERT_NEAR(total, n_rec, 0);
        cJSON_Delete(j);
        dr_free(report);
        dr_free(json);
    }
}
