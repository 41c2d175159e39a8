/* test_eval_outcomes.c - evaluation on outcome tables: the routing-literature
 * summaries (hull, AIQ, APGR, CPT) against hand-computed values and as
 * properties over generated point sets. */
#include "test.h"

#include "core/util.h"
#include "dynrag/eval.h"
#include "dynrag/alloc.h"
#include "dynrag/outcomes.h"
#include "dynrag/router.h"

TEST(eval_aiq_hull_hand_values)
{
    /* Sorted: (1,.5) (1,.3) (2,.6) (2.5,.5) (3,.9) (4,.8). (2,.6) lies below
     * the segment (1,.5)-(3,.9) (0.7 at cost 2); the rest lower quality. */
    const dynrag_eval_point p[] = {{3, 0.9}, {1, 0.5}, {2, 0.6}, {4, 0.8}, {1, 0.3}, {2.5, 0.5}};
    dynrag_eval_point h[6];
    size_t m = dynrag_eval_hull(p, 6, h);
    ASSERT_EQ(m, 2);
    ASSERT_NEAR(h[0].cost, 1, 0);
    ASSERT_NEAR(h[0].quality, 0.5, 0);
    ASSERT_NEAR(h[1].cost, 3, 0);
    ASSERT_NEAR(h[1].quality, 0.9, 0);
    /* [1,4]: 1..3 from .5 to .9 (area 1.4), 3..4 flat .9: 2.3 / 3. */
    ASSERT_NEAR(dynrag_eval_aiq(p, 6, 1, 4), 2.3 / 3, 1e-12);
    /* [0,4]: nothing below cost 1. */
    ASSERT_NEAR(dynrag_eval_aiq(p, 6, 0, 4), 2.3 / 4, 1e-12);
    /* [2,3]: .7 to .9. */
    ASSERT_NEAR(dynrag_eval_aiq(p, 6, 2, 3), 0.8, 1e-12);
    /* A single point: 0 below its cost, its quality from there on. */
    const dynrag_eval_point one[] = {{2, 0.7}};
    ASSERT_NEAR(dynrag_eval_aiq(one, 1, 1, 3), 0.35, 1e-12);
    ASSERT_NEAR(dynrag_eval_aiq(one, 1, 2, 5), 0.7, 1e-12);
    /* An empty range: the curve's value there (no costs recorded at all). */
    ASSERT_NEAR(dynrag_eval_aiq(one, 1, 2, 2), 0.7, 0);
    ASSERT_NEAR(dynrag_eval_aiq(one, 1, 1, 1), 0, 0);
    const dynrag_eval_point zero[] = {{0, 0.4}, {0, 0.6}, {0, 0.5}};
    ASSERT_NEAR(dynrag_eval_aiq(zero, 3, 0, 0), 0.6, 0);
    /* Non-finite points are ignored; none left gives NAN. */
    const dynrag_eval_point bad[] = {{NAN, 0.4}, {1, INFINITY}};
    ASSERT(isnan(dynrag_eval_aiq(bad, 2, 0, 1)));
    ASSERT_EQ(dynrag_eval_hull(bad, 2, h), 0);
}

TEST(eval_aiq_hull_properties)
{
    dr_rng rng;
    dr_rng_seed(&rng, 42);
    dynrag_eval_point p[40], h[40], sub[40];
    for (int round = 0; round < 500; round++) {
        size_t n = 1 + (size_t)dr_rng_below(&rng, 40);
        for (size_t i = 0; i < n; i++) {
            /* Some repeated costs to exercise ties. */
            p[i].cost = dr_rng_below(&rng, 4) == 0 ? (double)dr_rng_below(&rng, 5)
                                                   : dr_rng_uniform(&rng) * 5;
            p[i].quality = dr_rng_uniform(&rng);
        }
        size_t m = dynrag_eval_hull(p, n, h);
        ASSERT(m >= 1 && m <= n);
        /* Strictly increasing in cost and quality, slopes non-increasing. */
        for (size_t i = 1; i < m; i++) {
            ASSERT_LT(h[i - 1].cost, h[i].cost);
            ASSERT_LT(h[i - 1].quality, h[i].quality);
            if (i >= 2) {
                double s1 = (h[i - 1].quality - h[i - 2].quality) / (h[i - 1].cost - h[i - 2].cost);
                double s2 = (h[i].quality - h[i - 1].quality) / (h[i].cost - h[i - 1].cost);
                ASSERT(s2 <= s1 + 1e-9);
            }
        }
        /* Starts at the best of the cheapest points; ends at the best point. */
        double cmin = INFINITY, qbest = -1, qcheap = -1;
        for (size_t i = 0; i < n; i++)
            cmin = fmin(cmin, p[i].cost);
        for (size_t i = 0; i < n; i++) {
            qbest = fmax(qbest, p[i].quality);
            if (p[i].cost == cmin)
                qcheap = fmax(qcheap, p[i].quality);
        }
        ASSERT_NEAR(h[0].cost, cmin, 0);
        ASSERT_NEAR(h[0].quality, qcheap, 0);
        ASSERT_NEAR(h[m - 1].quality, qbest, 0);
        /* Every point lies on or below the curve. */
        for (size_t i = 0; i < n; i++) {
            double c = p[i].cost;
            double y = h[m - 1].quality;
            for (size_t k = 0; k + 1 < m; k++)
                if (c < h[k + 1].cost) {
                    y = h[k].quality + (h[k + 1].quality - h[k].quality) * (c - h[k].cost) /
                                           (h[k + 1].cost - h[k].cost);
                    break;
                }
            ASSERT(p[i].quality <= y + 1e-9);
        }
        /* AIQ: within [0, best quality]; a subset never scores higher. */
        double lo = dr_rng_uniform(&rng) * 2, hi = lo + dr_rng_uniform(&rng) * 4;
        double a = dynrag_eval_aiq(p, n, lo, hi);
        ASSERT(a >= -1e-12 && a <= qbest + 1e-12);
        size_t ns = 0;
        for (size_t i = 0; i < n; i++)
            if (dr_rng_below(&rng, 2))
                sub[ns++] = p[i];
        if (ns > 0)
            ASSERT(dynrag_eval_aiq(sub, ns, lo, hi) <= a + 1e-9);
        /* The hull's own AIQ equals the points' (the hull is the curve). */
        ASSERT_NEAR(dynrag_eval_aiq(h, m, lo, hi), a, 1e-9);
    }
}

TEST(eval_apgr_cpt_hand_values_and_properties)
{
    /* Weak 0.5, strong 1.0: PGR 0.5 at 20% strong calls, 0.9 at 60%. */
    const double x[] = {0.6, 0.2}, q[] = {0.95, 0.75};
    ASSERT_NEAR(dynrag_eval_apgr(x, q, 2, 0.5, 1.0), 0.5 * 0.4 + 0.9 * 0.4, 1e-12);
    ASSERT_NEAR(dynrag_eval_cpt(x, q, 2, 0.5, 1.0, 0.5), 0.2, 1e-12);
    ASSERT_NEAR(dynrag_eval_cpt(x, q, 2, 0.5, 1.0, 0.8), 0.6, 1e-12);
    ASSERT(isnan(dynrag_eval_cpt(x, q, 2, 0.5, 1.0, 0.95)));
    /* A worse point later does not lower the running best. */
    const double x2[] = {0.2, 0.5}, q2[] = {0.75, 0.6};
    ASSERT_NEAR(dynrag_eval_apgr(x2, q2, 2, 0.5, 1.0), 0.5 * 0.8, 1e-12);
    /* Below the weak model everywhere: the weak model alone (PGR 0). */
    const double q3[] = {0.4, 0.3};
    ASSERT_NEAR(dynrag_eval_apgr(x2, q3, 2, 0.5, 1.0), 0, 0);
    /* Degenerate pairs. */
    ASSERT(isnan(dynrag_eval_apgr(x, q, 2, 0.7, 0.7)));
    ASSERT(isnan(dynrag_eval_cpt(x, q, 2, 0.8, 0.7, 0.5)));
    ASSERT(isnan(dynrag_eval_apgr(x, q, 0, 0.5, 1.0)));
    /* The random router (quality linear in the strong share) recovers about
     * half the gap; always-strong alone recovers nothing below 100%. */
    double xr[101], qr[101];
    for (int k = 0; k <= 100; k++) {
        xr[k] = k / 100.0;
        qr[k] = 0.3 + 0.4 * xr[k];
    }
    ASSERT_NEAR(dynrag_eval_apgr(xr, qr, 101, 0.3, 0.7), 0.5, 0.006);
    ASSERT_NEAR(dynrag_eval_cpt(xr, qr, 101, 0.3, 0.7, 0.5), 0.5, 1e-9);
    const double xs[] = {1}, qs[] = {0.7};
    ASSERT_NEAR(dynrag_eval_apgr(xs, qs, 1, 0.3, 0.7), 0, 0);
    /* Properties: APGR grows with quality at every point and stays within
     * [0, max PGR]; CPT(50%) <= CPT(80%) when both exist. */
    dr_rng rng;
    dr_rng_seed(&rng, 7);
    for (int round = 0; round < 300; round++) {
        size_t n = 1 + (size_t)dr_rng_below(&rng, 20);
        double xx[20], qq[20], qb[20], maxp = 0;
        for (size_t i = 0; i < n; i++) {
            xx[i] = dr_rng_uniform(&rng);
            qq[i] = dr_rng_uniform(&rng);
            qb[i] = qq[i] + dr_rng_uniform(&rng) * 0.1;
            maxp = fmax(maxp, (qq[i] - 0.2) / 0.6);
        }
        double a = dynrag_eval_apgr(xx, qq, n, 0.2, 0.8);
        ASSERT(a >= 0 && a <= maxp + 1e-12);
        ASSERT(dynrag_eval_apgr(xx, qb, n, 0.2, 0.8) >= a - 1e-12);
        double c5 = dynrag_eval_cpt(xx, qq, n, 0.2, 0.8, 0.5);
        double c8 = dynrag_eval_cpt(xx, qq, n, 0.2, 0.8, 0.8);
        if (!isnan(c8))
            ASSERT(!isnan(c5) && c5 <= c8);
    }
}

/* ---- replay on generated outcome tables ------------------------------------------ */

#include <cjson/cJSON.h>

#define GEN_MAX_OPT 5
#define GEN_MAX_ROWS 60

/* One generated table, kept in memory to recompute what the report says. */
typedef struct gen_table {
    size_t n_opt, n_rows;
    char opt[GEN_MAX_OPT][32];
    bool alpha[GEN_MAX_ROWS]; /* query mentions "alpha" */
    int task[GEN_MAX_ROWS];   /* 0..2 */
    bool present[GEN_MAX_ROWS][GEN_MAX_OPT];
    double q[GEN_MAX_ROWS][GEN_MAX_OPT], c[GEN_MAX_ROWS][GEN_MAX_OPT];
    char resp[GEN_MAX_ROWS][GEN_MAX_OPT][24];
} gen_table;

/* Text answers (two spellings each) and a multiple-choice letter Z in three
 * forms ("Z" alone would be a choice, so the text answers are words). */
static const char *const gen_answers[] = {"Xo",  "Yo", "unanswerable", "The xo",
                                          "yo.", "Z",  "(Z)",          "Answer: Z"};

/* Writes a random table to DIR/name and fills g. Options named with a '/'
 * (model ids) every other one. */
static const char *gen_write(dr_rng *rng, gen_table *g, const char *name)
{
    memset(g, 0, sizeof(*g));
    g->n_opt = 2 + (size_t)dr_rng_below(rng, GEN_MAX_OPT - 1);
    g->n_rows = 5 + (size_t)dr_rng_below(rng, GEN_MAX_ROWS - 5);
    for (size_t o = 0; o < g->n_opt; o++)
        snprintf(g->opt[o], sizeof g->opt[o], o % 2 ? "org/model-%zu" : "m%zu", o);
    dr_buf b = {0};
    for (size_t r = 0; r < g->n_rows; r++) {
        g->alpha[r] = dr_rng_below(rng, 2);
        g->task[r] = (int)dr_rng_below(rng, 3);
        dr_buf_printf(&b,
                      "{\"id\": \"q%zu\", \"query\": \"question %zu %s\", \"task\": \"t%d\", "
                      "\"outcomes\": {",
                      r, r, g->alpha[r] ? "alpha" : "beta", g->task[r]);
        bool first = true;
        for (size_t o = 0; o < g->n_opt; o++) {
            /* About 1 in 12 outcomes missing, never all of a row's. */
            g->present[r][o] = o == 0 || dr_rng_below(rng, 12) != 0;
            if (!g->present[r][o])
                continue;
            g->q[r][o] = dr_rng_below(rng, 3) == 0 ? (double)dr_rng_below(rng, 11) / 10
                                                   : (double)dr_rng_below(rng, 2);
            g->c[r][o] = (double)(o + 1) * 0.001 * (1 + (double)dr_rng_below(rng, 3));
            snprintf(g->resp[r][o], sizeof g->resp[r][o], "%s",
                     gen_answers[dr_rng_below(rng, DR_ARRAY_LEN(gen_answers))]);
            dr_buf_printf(&b,
                          "%s\"%s\": {\"quality\": %.17g, \"cost_usd\": %.17g, "
                          "\"response\": \"%s\"}",
                          first ? "" : ", ", g->opt[o], g->q[r][o], g->c[r][o], g->resp[r][o]);
            first = false;
        }
        dr_buf_puts(&b, "}}\n");
    }
    const char *path = test_write_file(name, b.data);
    dr_buf_free(&b);
    return path;
}

/* A pipeline whose generator has the table's options and the router given
 * as YAML (indented 4 spaces under `router:`). */
static const char *gen_pipeline(const gen_table *g, const char *router_yaml, const char *name)
{
    dr_buf b = {0};
    dr_buf_puts(&b, "version: 1\nname: gen\nendpoints:\n  llm: {base_url: \"\", model: \"\"}\n"
                    "stages:\n  generator:\n    options:\n");
    for (size_t o = 0; o < g->n_opt; o++)
        dr_buf_printf(&b,
                      "      - {name: %s, kind: openai, endpoint: llm, quality: %.2f, "
                      "cost: {usd_per_1k_input: %zu}}\n",
                      g->opt[o], 0.2 + 0.15 * (double)o, o + 1);
    dr_buf_printf(&b, "    router:\n%s", router_yaml);
    const char *path = test_write_file(name, b.data);
    dr_buf_free(&b);
    return path;
}

/* The share of the most common answer as the agreement judge compares them
 * (the generated answers normalise to "xo", "yo", "unanswerable" or the
 * choice Z; a missing one to ""). */
static double agreement_of(const gen_table *g, size_t r, int from, int to)
{
    int counts[5] = {0}, best = 0;
    for (int o = from; o <= to; o++) {
        const char *s = g->resp[r][o];
        int k = !g->present[r][o]                                    ? 3 /* "" */
                : (strcmp(s, "Xo") == 0 || strcmp(s, "The xo") == 0) ? 0
                : strcmp(s, "unanswerable") == 0                     ? 2
                : strchr(s, 'Z') != NULL                             ? 4
                                                                     : 1;
        counts[k]++;
    }
    for (int k = 0; k < 5; k++)
        best = counts[k] > best ? counts[k] : best;
    return (double)best / (double)(to - from + 1);
}

/* The chain the test expects: router kind 0 rules (alpha -> option 1, else
 * 0), 1 cascade self_route at 0.5, 2 cascade agreement at thr, judging
 * once `samples` options have answered. */
static int expected_last(const gen_table *g, size_t r, int kind, double thr, int samples)
{
    int last = (int)g->n_opt - 1;
    if (kind == 0)
        return g->alpha[r] ? 1 : 0;
    for (int o = 0; o < last; o++) {
        if (kind == 1 && g->present[r][o] && strcmp(g->resp[r][o], "unanswerable") != 0)
            return o;
        /* Under every judge a refusal (or a missing, empty answer) scores 0. */
        if (kind == 2 && o + 1 >= samples && g->present[r][o] &&
            strcmp(g->resp[r][o], "unanswerable") != 0 && agreement_of(g, r, 0, o) >= thr)
            return o;
    }
    return last;
}

static const cJSON *policy(const cJSON *arr, const char *name)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, arr)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(p, "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
            return p;
    }
    return NULL;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static cJSON *read_report(const char *dir)
{
    char *path = dr_asprintf("%s/report.json", dir);
    FILE *f = path ? fopen(path, "rb") : NULL;
    free(path);
    if (f == NULL)
        return NULL;
    dr_buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        dr_buf_append(&b, chunk, n);
    fclose(f);
    cJSON *j = b.data ? cJSON_Parse(b.data) : NULL;
    dr_buf_free(&b);
    return j;
}

TEST(eval_outcomes_replay_invariants)
{
    dr_rng rng;
    dr_rng_seed(&rng, 2024);
    static const char *const routers[] = {
        "      type: rules\n      params:\n        rules:\n"
        "          - {when: {regex: alpha}, option: org/model-1}\n        default: m0\n",
        "      type: cascade\n      params: {judge: self_route, threshold: 0.5}\n",
        "      type: cascade\n      params: {judge: agreement, threshold: 0.6, samples: 2}\n",
        "      type: cascade\n      params: {judge: agreement, threshold: 0.6}\n"};
    for (int round = 0; round < 16; round++) {
        int kind = round % 4 == 3 ? 2 : round % 4;
        int samples = round % 4 == 2 ? 2 : 3; /* the agreement judge's default: 3 */
        gen_table g;
        char tname[32], pname[32], out[1024];
        snprintf(tname, sizeof tname, "t%d.jsonl", round);
        snprintf(pname, sizeof pname, "p%d.yaml", round);
        char tpath[1024];
        snprintf(tpath, sizeof tpath, "%s", gen_write(&rng, &g, tname));
        const char *ppath = gen_pipeline(&g, routers[round % 4], pname);
        snprintf(out, sizeof out, "%s/out%d", test_tmpdir(), round);
        dynrag_eval_outcomes_options o;
        dynrag_eval_outcomes_options_init(&o);
        o.pipeline_path = ppath;
        o.outcomes_path = tpath;
        o.out_dir = out;
        o.seed = (uint64_t)round;
        dynrag_eval_outcomes_summary sum;
        dynrag_error err;
        ASSERT_OK(dynrag_eval_outcomes(&o, &sum, NULL, &err), &err);
        ASSERT_EQ(sum.n_queries, g.n_rows);
        cJSON *rep = read_report(out);
        ASSERT(rep != NULL);
        const cJSON *pol = cJSON_GetObjectItemCaseSensitive(rep, "policies");
        const cJSON *pq = cJSON_GetObjectItemCaseSensitive(rep, "per_query");
        ASSERT_EQ(cJSON_GetArraySize(pq), (int)g.n_rows);
        /* Per query: the chain, its summed cost and the last option's quality. */
        double sum_q = 0, sum_c = 0;
        size_t calls[GEN_MAX_OPT] = {0}, n_missing = 0;
        for (size_t r = 0; r < g.n_rows; r++) {
            const cJSON *e = cJSON_GetArrayItem(pq, (int)r);
            int last = expected_last(&g, r, kind, 0.6, samples), first = kind == 0 ? last : 0;
            double cost = 0;
            const cJSON *ch = cJSON_GetObjectItemCaseSensitive(e, "calls");
            ASSERT_EQ(cJSON_GetArraySize(ch), last - first + 1);
            for (int k = first; k <= last; k++) {
                ASSERT_STR_EQ(cJSON_GetArrayItem(ch, k - first)->valuestring, g.opt[k]);
                cost += g.present[r][k] ? g.c[r][k] : 0;
                calls[k]++;
            }
            double q = g.present[r][last] ? g.q[r][last] : 0;
            ASSERT_NEAR(num(e, "cost_usd"), cost, 1e-12);
            ASSERT_NEAR(num(e, "quality"), q, 1e-12);
            sum_q += q;
            sum_c += cost;
            for (size_t k = 0; k < g.n_opt; k++)
                n_missing += !g.present[r][k];
        }
        ASSERT_NEAR(num(rep, "missing_outcomes"), n_missing, 0);
        /* The router policy: the means of the per-query values, every call counted. */
        const cJSON *rt = policy(pol, "router");
        ASSERT(rt != NULL);
        ASSERT_NEAR(num(rt, "quality"), sum_q / (double)g.n_rows, 1e-9);
        ASSERT_NEAR(num(rt, "cost_usd"), sum_c / (double)g.n_rows, 1e-12);
        for (size_t k = 0; k < g.n_opt; k++)
            ASSERT_NEAR(num(cJSON_GetObjectItemCaseSensitive(rt, "calls"), g.opt[k]), calls[k], 0);
        /* always-X: the column means (missing = quality 0, cost 0); best-single the best. */
        double best_q = -1, oracle_sum = 0;
        for (size_t k = 0; k < g.n_opt; k++) {
            char name[64];
            snprintf(name, sizeof name, "always-%s", g.opt[k]);
            const cJSON *a = policy(pol, name);
            ASSERT(a != NULL);
            double sq = 0, sc = 0;
            for (size_t r = 0; r < g.n_rows; r++) {
                sq += g.present[r][k] ? g.q[r][k] : 0;
                sc += g.present[r][k] ? g.c[r][k] : 0;
            }
            ASSERT_NEAR(num(a, "quality"), sq / (double)g.n_rows, 1e-9);
            ASSERT_NEAR(num(a, "cost_usd"), sc / (double)g.n_rows, 1e-12);
            best_q = fmax(best_q, sq / (double)g.n_rows);
        }
        for (size_t r = 0; r < g.n_rows; r++) {
            double m = 0;
            for (size_t k = 0; k < g.n_opt; k++)
                m = fmax(m, g.present[r][k] ? g.q[r][k] : 0);
            oracle_sum += m;
        }
        ASSERT_NEAR(num(policy(pol, "best-single"), "quality"), best_q, 1e-9);
        double oracle_q = num(policy(pol, "oracle"), "quality");
        ASSERT_NEAR(oracle_q, oracle_sum / (double)g.n_rows, 1e-9);
        /* Schema: every policy has its name, quality, cost and
         * calls of every option; the named policies are all there. */
        static const char *const named[] = {"router", "best-single", "random", "random-mix",
                                            "oracle"};
        for (size_t i = 0; i < DR_ARRAY_LEN(named); i++)
            ASSERT(policy(pol, named[i]) != NULL);
        ASSERT_EQ(cJSON_GetArraySize(pol), (int)(g.n_opt + DR_ARRAY_LEN(named)));
        const cJSON *p;
        cJSON_ArrayForEach(p, pol)
        {
            ASSERT(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(p, "name")));
            ASSERT(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(p, "quality")));
            ASSERT(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(p, "cost_usd")));
            const cJSON *cl = cJSON_GetObjectItemCaseSensitive(p, "calls");
            ASSERT_EQ(cJSON_GetArraySize(cl), (int)g.n_opt);
            for (size_t k = 0; k < g.n_opt; k++)
                ASSERT(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(cl, g.opt[k])));
        }
        /* The oracle is at least as good as every policy and sweep point. */
        cJSON_ArrayForEach(p, pol) ASSERT(num(p, "quality") <= oracle_q + 1e-9);
        const cJSON *sw = cJSON_GetObjectItemCaseSensitive(rep, "sweep");
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(sw, "points"))
            ASSERT(num(p, "quality") <= oracle_q + 1e-9);
        /* Cascades sweep their threshold; threshold 0 stops at the first answer
         * (agreement: the `samples`-th, or the last option). */
        if (kind > 0) {
            ASSERT_STR_EQ(cJSON_GetObjectItemCaseSensitive(sw, "param")->valuestring, "threshold");
            const cJSON *p0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(sw, "points"), 0);
            ASSERT_NEAR(num(p0, "value"), 0, 0);
            ASSERT_NEAR(num(cJSON_GetObjectItemCaseSensitive(p0, "calls"), g.opt[0]), g.n_rows, 0);
            for (size_t k = 1; k < g.n_opt; k++)
                ASSERT_NEAR(num(cJSON_GetObjectItemCaseSensitive(p0, "calls"), g.opt[k]),
                            kind == 2 && (int)k < samples ? g.n_rows : 0, 0);
        }
        /* Per task: the queries add up and the router's quality is the weighted mean. */
        const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(rep, "tasks"), *t;
        double tq = 0, tn = 0;
        cJSON_ArrayForEach(t, tasks)
        {
            double n = num(t, "queries");
            const cJSON *tp = cJSON_GetObjectItemCaseSensitive(t, "policies");
            double toq = num(policy(tp, "oracle"), "quality");
            const cJSON *x;
            cJSON_ArrayForEach(x, tp) ASSERT(num(x, "quality") <= toq + 1e-9);
            tq += n * num(policy(tp, "router"), "quality");
            tn += n;
            ASSERT(cJSON_GetObjectItemCaseSensitive(t, "summary") != NULL);
        }
        if (cJSON_GetArraySize(tasks) > 0) {
            ASSERT_NEAR(tn, g.n_rows, 0);
            ASSERT_NEAR(tq / tn, sum_q / (double)g.n_rows, 1e-9);
        }
        /* The summary: AIQ of the singles' hull and the router, the pair. */
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(rep, "summary");
        const cJSON *aiq = cJSON_GetObjectItemCaseSensitive(s, "aiq");
        ASSERT(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(aiq, "router")));
        ASSERT(num(aiq, "singles_hull") <= best_q + 1e-9);
        ASSERT(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(s, "strong")));
        ASSERT(cJSON_GetObjectItemCaseSensitive(s, "apgr") != NULL);
        cJSON_Delete(rep);
        /* The files. */
        static const char *const files[] = {"report.md", "generator-cost-quality.svg",
                                            "generator-calls.svg"};
        for (size_t i = 0; i < DR_ARRAY_LEN(files); i++) {
            char *f = dr_asprintf("%s/%s", out, files[i]);
            char *text = NULL;
            size_t len = 0;
            int rc = dr_read_file(f, 1 << 24, &text, &len, &err);
            free(f);
            ASSERT_OK(rc, &err);
            /* The plots: the singles' hull; every option's call bars. */
            bool ok = i != 1 || strstr(text, "hull of the single options") != NULL;
            for (size_t k = 0; i == 2 && k < g.n_opt; k++)
                ok = ok && strstr(text, g.opt[k]) != NULL;
            free(text);
            ASSERT(ok);
        }
    }
}

TEST(eval_outcomes_errors_name_the_culprit)
{
    const char *table = test_write_file(
        "t.jsonl", "{\"id\": \"q1\", \"query\": \"x\", \"outcomes\": {\"a\": {\"quality\": 1}, "
                   "\"org/b\": {\"quality\": 0, \"cost_usd\": 0.5}}}\n");
    char tpath[1024];
    snprintf(tpath, sizeof tpath, "%s", table);
    static const char *const head =
        "version: 1\nname: e\nendpoints:\n  llm: {base_url: \"\", model: \"\"}\nstages:\n"
        "  generator:\n    options:\n      - {name: a, kind: openai, endpoint: llm}\n";
    char yaml[1024];
    dynrag_eval_outcomes_options o;
    dynrag_eval_outcomes_options_init(&o);
    o.outcomes_path = tpath;
    dynrag_error err;
    /* A pipeline option missing from the table. */
    snprintf(yaml, sizeof yaml,
             "%s      - {name: c, kind: openai, endpoint: llm}\n"
             "    router: {type: fixed, params: {option: a}}\n",
             head);
    o.pipeline_path = test_write_file("p1.yaml", yaml);
    ASSERT_EQ(dynrag_eval_outcomes(&o, NULL, NULL, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err),
                    "generator option 'c' is not an option of the outcome table");
    ASSERT_CONTAINS(dynrag_errmsg(&err), "it has: a, org/b");
    /* A cascade whose judge reads responses the table does not have. */
    snprintf(yaml, sizeof yaml,
             "%s      - {name: org/b, kind: openai, endpoint: llm}\n"
             "    router: {type: cascade, params: {judge: self_route}}\n",
             head);
    o.pipeline_path = test_write_file("p2.yaml", yaml);
    ASSERT_EQ(dynrag_eval_outcomes(&o, NULL, NULL, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "query 'q1': option 'a' has no recorded \"response\"");
    /* The logprob judge reads no text: it never escalates (no logprobs recorded). */
    snprintf(yaml, sizeof yaml,
             "%s      - {name: org/b, kind: openai, endpoint: llm}\n"
             "    router: {type: cascade, params: {judge: logprob_margin}}\n",
             head);
    o.pipeline_path = test_write_file("p3.yaml", yaml);
    dynrag_eval_outcomes_summary sum;
    ASSERT_OK(dynrag_eval_outcomes(&o, &sum, NULL, &err), &err);
    ASSERT_NEAR(sum.router_quality, 1, 0);
    ASSERT_NEAR(sum.router_cost, 0, 0);
    /* So does the sequence-probability judge, whatever its threshold. */
    for (int t = 0; t <= 4; t++) {
        snprintf(yaml, sizeof yaml,
                 "%s      - {name: org/b, kind: openai, endpoint: llm}\n"
                 "    router: {type: cascade, params: {judge: seq_logprob, threshold: %g}}\n",
                 head, t / 4.0);
        o.pipeline_path = test_write_file("p4.yaml", yaml);
        ASSERT_OK(dynrag_eval_outcomes(&o, &sum, NULL, &err), &err);
        ASSERT_NEAR(sum.router_quality, 1, 0);
        ASSERT_NEAR(sum.router_cost, 0, 0);
    }
    /* Unknown strong option; a bad table line names file and line. */
    o.strong = "nope";
    ASSERT_EQ(dynrag_eval_outcomes(&o, NULL, NULL, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "--strong: the generator has no option 'nope'");
    o.strong = NULL;
    o.outcomes_path =
        test_write_file("bad.jsonl", "{\"id\": \"q1\", \"query\": \"x\", \"outcomes\": "
                                     "{\"a\": {\"quality\": 1}}}\n{\"id\": 3}\n");
    ASSERT(dynrag_eval_outcomes(&o, NULL, NULL, &err) != DYNRAG_OK);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.jsonl:2");
    /* The CLI: usage errors exit 2, a failed evaluation 1, success 0 with the files. */
    char cmd[4096], *text = NULL;
    snprintf(cmd, sizeof cmd, "%s eval --pipeline %s --outcomes %s --data x.jsonl 2>&1",
             test_cli_path(), o.pipeline_path, tpath);
    ASSERT_EQ(test_run(cmd, &text), 2);
    free(text);
    snprintf(cmd, sizeof cmd, "%s eval --outcomes %s --strong a 2>&1", test_cli_path(), tpath);
    ASSERT_EQ(test_run(cmd, &text), 2);
    free(text);
    snprintf(cmd, sizeof cmd, "%s eval --pipeline %s/p1.yaml --outcomes %s --out %s/o 2>&1",
             test_cli_path(), test_tmpdir(), tpath, test_tmpdir());
    ASSERT_EQ(test_run(cmd, &text), 1);
    ASSERT_CONTAINS(text, "generator option 'c'");
    free(text);
    snprintf(cmd, sizeof cmd,
             "%s eval --pipeline %s/p3.yaml --outcomes %s --out %s/o --grid 0,0.5,1 2>&1",
             test_cli_path(), test_tmpdir(), tpath, test_tmpdir());
    ASSERT_EQ(test_run(cmd, &text), 0);
    ASSERT_CONTAINS(text, "| router | 1.0000 |");
    free(text);
    /* p3 has both options: none ignored. p4 leaves org/b out. */
    snprintf(yaml, sizeof yaml, "%s    router: {type: fixed, params: {option: a}}\n", head);
    const char *p4 = test_write_file("p4.yaml", yaml);
    snprintf(cmd, sizeof cmd, "%s eval --pipeline %s --outcomes %s --out %s/o4 >/dev/null 2>&1",
             test_cli_path(), p4, tpath, test_tmpdir());
    ASSERT_EQ(test_run(cmd, &text), 0);
    free(text);
    char *od4 = dr_asprintf("%s/o4", test_tmpdir());
    cJSON *rep4 = read_report(od4);
    free(od4);
    ASSERT(rep4 != NULL);
    const cJSON *ign = cJSON_GetObjectItemCaseSensitive(rep4, "ignored_options");
    bool ign_ok = cJSON_GetArraySize(ign) == 1 &&
                  strcmp(cJSON_GetArrayItem(ign, 0)->valuestring, "org/b") == 0;
    cJSON_Delete(rep4);
    ASSERT(ign_ok);
    char *od = dr_asprintf("%s/o", test_tmpdir());
    cJSON *rep = read_report(od);
    free(od);
    ASSERT(rep != NULL);
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(rep, "sweep");
    int n_points = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(sw, "points"));
    cJSON_Delete(rep);
    ASSERT_EQ(n_points, 3);
}

#include "pipeline/spec.h"

TEST(eval_outcomes_sweep_and_calibrate)
{
    dr_rng rng;
    dr_rng_seed(&rng, 99);
    double grid[11];
    for (int i = 0; i <= 10; i++)
        grid[i] = i / 10.0;
    for (int round = 0; round < 4; round++) {
        gen_table g;
        char tname[32], pname[32], tpath[1024], ppath[1024], out[1024];
        snprintf(tname, sizeof tname, "t%d.jsonl", round);
        snprintf(pname, sizeof pname, "p%d.yaml", round);
        snprintf(tpath, sizeof tpath, "%s", gen_write(&rng, &g, tname));
        /* Declared qualities 0.2 + 0.15 o, costs rising with o: min_cost picks
         * the first option whose quality reaches the floor, else the best. */
        snprintf(ppath, sizeof ppath, "%s",
                 gen_pipeline(&g,
                              "      type: cost\n      params: {objective: min_cost, "
                              "quality_floor: 0}\n",
                              pname));
        snprintf(out, sizeof out, "%s/out%d", test_tmpdir(), round);
        dynrag_eval_outcomes_options o;
        dynrag_eval_outcomes_options_init(&o);
        o.pipeline_path = ppath;
        o.outcomes_path = tpath;
        o.out_dir = out;
        dynrag_eval_outcomes_summary sum;
        dynrag_error err;
        /* No known parameter: no sweep; the router is one point. */
        ASSERT_OK(dynrag_eval_outcomes(&o, &sum, NULL, &err), &err);
        ASSERT_EQ(sum.n_sweep, 0);
        ASSERT_STR_EQ(sum.sweep_param, "");
        o.sweep_param = "quality_floor";
        o.grid = grid;
        o.n_grid = 11;
        ASSERT_OK(dynrag_eval_outcomes(&o, &sum, NULL, &err), &err);
        ASSERT_EQ(sum.n_sweep, 11);
        cJSON *rep = read_report(out);
        ASSERT(rep != NULL);
        const cJSON *pts = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(rep, "sweep"), "points");
        double cost[11], quality[11], share_last[11];
        for (int k = 0; k <= 10; k++) {
            const cJSON *p = cJSON_GetArrayItem(pts, k);
            int want = (int)g.n_opt - 1;
            for (int x = 0; x < (int)g.n_opt; x++)
                if (0.2 + 0.15 * x >= grid[k] - 1e-12) {
                    want = x;
                    break;
                }
            ASSERT_NEAR(num(cJSON_GetObjectItemCaseSensitive(p, "calls"), g.opt[want]), g.n_rows,
                        0);
            cost[k] = num(p, "cost_usd");
            quality[k] = num(p, "quality");
            share_last[k] = num(cJSON_GetObjectItemCaseSensitive(p, "calls"), g.opt[g.n_opt - 1]) /
                            (double)g.n_rows;
        }
        cJSON_Delete(rep);
        /* The sweep did not leave its last value behind: the router point
         * is still floor 0 (option 0 everywhere). */
        double q0 = 0;
        for (size_t r = 0; r < g.n_rows; r++)
            q0 += g.q[r][0];
        ASSERT_NEAR(sum.router_quality, q0 / (double)g.n_rows, 1e-9);
        /* Calibration: each target against the sweep's own points. */
        for (int target_kind = 0; target_kind < 3; target_kind++) {
            double tv = target_kind == 0   ? cost[0] + (cost[10] - cost[0]) * dr_rng_uniform(&rng)
                        : target_kind == 1 ? dr_rng_uniform(&rng)
                                           : quality[0] + (quality[10] - quality[0]) * 0.5;
            dynrag_eval_calibrate_options co;
            dynrag_eval_calibrate_options_init(&co);
            co.target_cost = target_kind == 0 ? tv : NAN;
            co.target_share = target_kind == 1 ? tv : NAN;
            co.target_quality = target_kind == 2 ? tv : NAN;
            co.target_option = g.opt[g.n_opt - 1];
            char *yaml = dr_asprintf("%s/cal%d-%d.yaml", test_tmpdir(), round, target_kind);
            co.out_yaml = yaml;
            dynrag_eval_calibration cal;
            int rc = dynrag_eval_calibrate_outcomes(&o, &co, &cal, &err);
            if (rc != DYNRAG_OK)
                free(yaml);
            ASSERT_OK(rc, &err);
            /* The expected pick. */
            int best = -1;
            for (int k = 0; k <= 10; k++) {
                bool ok = target_kind == 0   ? cost[k] <= tv + 1e-12
                          : target_kind == 1 ? share_last[k] <= tv + 1e-12
                                             : quality[k] >= tv - 1e-12;
                if (!ok)
                    continue;
                if (best < 0 ||
                    (target_kind == 2 ? (cost[k] < cost[best] ||
                                         (cost[k] == cost[best] && quality[k] > quality[best]))
                                      : (quality[k] > quality[best] ||
                                         (quality[k] == quality[best] && cost[k] < cost[best]))))
                    best = k;
            }
            ASSERT_STR_EQ(cal.param, "quality_floor");
            ASSERT(cal.met == (best >= 0));
            if (best >= 0) {
                ASSERT_NEAR(cal.quality, quality[best], 1e-12);
                ASSERT_NEAR(cal.cost, cost[best], 1e-12);
            }
            /* The written copy carries the value and loads. */
            dynrag_pipeline *p = NULL;
            rc = dynrag_pipeline_load(yaml, &p, NULL, &err);
            free(yaml);
            ASSERT_OK(rc, &err);
            double v =
                dr_param_num(p->stages[DR_STAGE_GENERATOR].router.params, "quality_floor", -1);
            dynrag_pipeline_free(p);
            ASSERT_NEAR(v, cal.value, 1e-9);
        }
    }
    /* A target no value meets: the closest, not met. */
    dynrag_eval_outcomes_options o;
    dynrag_eval_outcomes_options_init(&o);
    gen_table g;
    char tpath[1024];
    snprintf(tpath, sizeof tpath, "%s", gen_write(&rng, &g, "tx.jsonl"));
    o.outcomes_path = tpath;
    char ppath[1024];
    snprintf(
        ppath, sizeof ppath, "%s",
        gen_pipeline(&g, "      type: cost\n      params: {objective: min_cost}\n", "px.yaml"));
    o.pipeline_path = ppath;
    o.sweep_param = "quality_floor";
    dynrag_eval_calibrate_options co;
    dynrag_eval_calibrate_options_init(&co);
    co.target_cost = 1e-9;
    co.target_share = NAN;
    co.target_quality = NAN;
    dynrag_eval_calibration cal;
    dynrag_error err;
    ASSERT_OK(dynrag_eval_calibrate_outcomes(&o, &co, &cal, &err), &err);
    ASSERT(!cal.met);
    ASSERT_NEAR(cal.value, 0, 0); /* floor 0: option 0, the cheapest */
    /* A param the router does not have is refused, naming it (a sweep of
     * it would route alike at every value). */
    dynrag_eval_outcomes_options w = o;
    w.sweep_param = "willingness_to_pay";
    dynrag_eval_outcomes_summary sum;
    ASSERT_EQ(dynrag_eval_outcomes(&w, &sum, NULL, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(err.msg, "a cost router has no numeric param 'willingness_to_pay'");
    /* A price of cost (a bandit's lambda, a willingness to pay) sweeps
     * geometric values when costs are recorded, and not at all on a table
     * without any. */
    char bpath[1024];
    snprintf(bpath, sizeof bpath, "%s",
             gen_pipeline(&g, "      type: bandit\n      params: {algorithm: ucb1}\n", "pb.yaml"));
    w.pipeline_path = bpath;
    w.sweep_param = "lambda";
    ASSERT_OK(dynrag_eval_outcomes(&w, &sum, NULL, &err), &err);
    ASSERT_EQ(sum.n_sweep, 21);
    dr_buf nb = {0};
    for (size_t r = 0; r < 4; r++) {
        dr_buf_printf(&nb, "{\"id\": \"n%zu\", \"query\": \"q\", \"outcomes\": {", r);
        for (size_t k = 0; k < g.n_opt; k++)
            dr_buf_printf(&nb, "%s\"%s\": {\"quality\": %zu}", k ? ", " : "", g.opt[k],
                          (r + k) % 2);
        dr_buf_puts(&nb, "}}\n");
    }
    w.outcomes_path = test_write_file("nocost.jsonl", nb.data);
    dr_buf_free(&nb);
    ASSERT_OK(dynrag_eval_outcomes(&w, &sum, NULL, &err), &err);
    ASSERT_EQ(sum.n_sweep, 0);
    {
        /* Calibrating that sweep says why it cannot (no cost in the table). */
        dynrag_eval_calibrate_options nc;
        dynrag_eval_calibrate_options_init(&nc);
        nc.target_cost = NAN;
        nc.target_share = NAN;
        nc.target_quality = 0.5;
        ASSERT_EQ(dynrag_eval_calibrate_outcomes(&w, &nc, &cal, &err), DYNRAG_ERR_INVALID);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "has no cost_usd, so every value of the 'bandit' "
                                             "router's lambda routes alike");
    }
    /* The CLI: a met target exits 0 and writes the copy, an unmet one 1,
     * --target-cost without --outcomes is a usage error. */
    char cmd[4096], *text = NULL;
    snprintf(cmd, sizeof cmd,
             "%s calibrate --pipeline %s --outcomes %s --sweep quality_floor --grid 0,0.5,1 "
             "--target-cost 1 --out %s/cli.yaml 2>&1",
             test_cli_path(), ppath, tpath, test_tmpdir());
    ASSERT_EQ(test_run(cmd, &text), 0);
    ASSERT_CONTAINS(text, "stages.generator.router.params.quality_floor = ");
    ASSERT_CONTAINS(text, "/cli.yaml (a copy of");
    free(text);
    snprintf(
        cmd, sizeof cmd,
        "%s calibrate --pipeline %s --outcomes %s --sweep quality_floor --target-cost 1e-9 2>&1",
        test_cli_path(), ppath, tpath);
    ASSERT_EQ(test_run(cmd, &text), 1);
    ASSERT_CONTAINS(text, "target NOT met");
    free(text);
    snprintf(cmd, sizeof cmd, "%s calibrate --pipeline %s --target-cost 1 2>&1", test_cli_path(),
             ppath);
    ASSERT_EQ(test_run(cmd, &text), 2);
    free(text);
    /* Two targets, or a router without a parameter, are refused. */
    co.target_share = 0.5;
    ASSERT_EQ(dynrag_eval_calibrate_outcomes(&o, &co, &cal, &err), DYNRAG_ERR_INVALID);
    co.target_share = NAN;
    o.sweep_param = NULL;
    ASSERT_EQ(dynrag_eval_calibrate_outcomes(&o, &co, &cal, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "has no willingness_to_pay, wtp or threshold parameter");
}

/* A routed cascade (cascade routing: a quality_model picks the first option
 * and every escalation) replayed over random tables: per query, the calls
 * are the chain the router itself gives through the public router API
 * (route, judge, cascade_next), the cost is the sum of the called options'
 * recorded costs and the quality the last one's; the router policy is the
 * mean of those and counts every call. */
TEST(eval_outcomes_routed_cascade_invariants)
{
    dr_rng rng;
    dr_rng_seed(&rng, 77);
    int non_listed = 0;
    for (int round = 0; round < 8; round++) {
        gen_table g;
        char tname[32], pname[32], out[1024], tpath[1024], model[1024], rtext[1600];
        snprintf(tname, sizeof tname, "rt%d.jsonl", round);
        snprintf(pname, sizeof pname, "rp%d.yaml", round);
        snprintf(tpath, sizeof tpath, "%s", gen_write(&rng, &g, tname));
        snprintf(model, sizeof model, "%s/rq%d.safetensors", test_tmpdir(), round);
        ASSERT_EQ(test_train_predict(tpath, model, 32, 0.1), 0);
        dynrag_error err;
        double wtp = round % 2 ? 0 : 50;
        snprintf(rtext, sizeof rtext,
                 "      type: cascade\n      params: {judge: self_route, threshold: 0.5, "
                 "quality_model: %s, willingness_to_pay: %g}\n",
                 model, wtp);
        const char *ppath = gen_pipeline(&g, rtext, pname);
        snprintf(out, sizeof out, "%s/rout%d", test_tmpdir(), round);
        dynrag_eval_outcomes_options o;
        dynrag_eval_outcomes_options_init(&o);
        o.pipeline_path = ppath;
        o.outcomes_path = tpath;
        o.out_dir = out;
        dynrag_eval_outcomes_summary sum;
        ASSERT_OK(dynrag_eval_outcomes(&o, &sum, NULL, &err), &err);
        cJSON *rep = read_report(out);
        ASSERT(rep != NULL);
        const cJSON *pq = cJSON_GetObjectItemCaseSensitive(rep, "per_query");
        ASSERT_EQ(cJSON_GetArraySize(pq), (int)g.n_rows);
        /* The chain from the router itself. */
        dynrag_pipeline *p = NULL;
        ASSERT_OK(dynrag_pipeline_load(ppath, &p, NULL, &err), &err);
        dynrag_router_options opt;
        dynrag_router_options_init(&opt);
        opt.all_available = true;
        dynrag_router *r = NULL;
        ASSERT_OK(dynrag_router_open(p, "generator", &opt, &r, &err), &err);
        double sum_q = 0, sum_c = 0;
        size_t calls[GEN_MAX_OPT] = {0};
        for (size_t row = 0; row < g.n_rows; row++) {
            const cJSON *e = cJSON_GetArrayItem(pq, (int)row);
            const cJSON *ch = cJSON_GetObjectItemCaseSensitive(e, "calls");
            char qq[64];
            snprintf(qq, sizeof qq, "question %zu %s", row, g.alpha[row] ? "alpha" : "beta");
            /* Replay the chain with the public API. */
            bool want_called[GEN_MAX_OPT] = {false};
            dynrag_route d;
            ASSERT_OK(dynrag_router_route(r, qq, &d, &err), &err);
            int cur = d.option;
            for (;;) {
                want_called[cur] = true;
                dynrag_answer a;
                dynrag_answer_init(&a);
                a.text = g.present[row][cur] ? g.resp[row][cur] : "";
                a.query = qq;
                a.option = g.opt[cur];
                double conf = 0;
                ASSERT_OK(dynrag_router_judge(r, &a, &conf, NULL, 0, &err), &err);
                if (conf >= 0.5)
                    break;
                int next = -1;
                ASSERT_OK(dynrag_router_cascade_next(r, qq, want_called, cur, conf, &next, &err),
                          &err);
                if (next < 0)
                    break;
                non_listed += next != cur + 1;
                cur = next;
            }
            int last = cur;
            double cost = 0;
            int n_called = 0;
            for (size_t k = 0; k < g.n_opt; k++)
                if (want_called[k]) {
                    ASSERT_STR_EQ(cJSON_GetArrayItem(ch, n_called)->valuestring, g.opt[k]);
                    n_called++;
                    cost += g.present[row][k] ? g.c[row][k] : 0;
                    calls[k]++;
                }
            ASSERT_EQ(cJSON_GetArraySize(ch), n_called);
            ASSERT_STR_EQ(cJSON_GetObjectItemCaseSensitive(e, "choice")->valuestring, g.opt[last]);
            double q = g.present[row][last] ? g.q[row][last] : 0;
            ASSERT_NEAR(num(e, "cost_usd"), cost, 1e-12);
            ASSERT_NEAR(num(e, "quality"), q, 1e-12);
            sum_q += q;
            sum_c += cost;
        }
        const cJSON *rt = policy(cJSON_GetObjectItemCaseSensitive(rep, "policies"), "router");
        ASSERT(rt != NULL);
        ASSERT_NEAR(num(rt, "quality"), sum_q / (double)g.n_rows, 1e-9);
        ASSERT_NEAR(num(rt, "cost_usd"), sum_c / (double)g.n_rows, 1e-12);
        for (size_t k = 0; k < g.n_opt; k++)
            ASSERT_NEAR(num(cJSON_GetObjectItemCaseSensitive(rt, "calls"), g.opt[k]), calls[k], 0);
        dynrag_router_close(r);
        dynrag_pipeline_free(p);
        cJSON_Delete(rep);
    }
    /* The property is about routed chains: some escalations skip or go back
     * in listed order. */
    ASSERT(non_listed > 0);
}

/* Calibration writes the value it picked into a copy of the pipeline and
 * checks the copy: for values of every magnitude and many digits (a
 * willingness-to-pay grid is geometric), the copy holds the value to ten
 * significant digits and the check accepts it. (It refused 14.39817..., once
 * written with six digits.) */
TEST(eval_patch_router_param_any_value)
{
    dr_rng rng;
    dr_rng_seed(&rng, 9);
    const char *in = test_write_file(
        "b.yaml", "version: 1\nname: b\nstages:\n  generator:\n    options:\n"
                  "      - {name: a, kind: extractive}\n      - {name: b, kind: extractive}\n"
                  "    router:\n      type: bandit\n      params: {algorithm: ucb1}\n");
    char inp[1024], out[1024];
    snprintf(inp, sizeof inp, "%s", in);
    snprintf(out, sizeof out, "%s/out.yaml", test_tmpdir());
    for (int i = 0; i < 60; i++) {
        double v = dr_rng_uniform(&rng) * pow(10.0, (double)dr_rng_below(&rng, 13) - 6);
        dynrag_error err;
        ASSERT_OK(dynrag_eval_patch_router_param(inp, out, "generator", "lambda", v, &err), &err);
        dynrag_pipeline *p = NULL;
        ASSERT_OK(dynrag_pipeline_load(out, &p, NULL, &err), &err);
        char *params = dynrag_pipeline_router_params(p, "generator");
        cJSON *j = cJSON_Parse(params);
        double got = cJSON_GetObjectItem(j, "lambda")->valuedouble;
        ASSERT(fabs(got - v) <= 1e-9 * fmax(fabs(v), 1e-300));
        cJSON_Delete(j);
        dynrag_free(params);
        dynrag_pipeline_free(p);
    }
}
