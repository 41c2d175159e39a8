/* test_router_outcomes.c - routers trained on outcome tables (router/omodel.h,
 * router/predict_router.c, dynrag_outcome_router_train, shipped pipelines). */
#include "test.h"

#include "core/util.h"
#include "dynrag/outcomes.h"
#include "dynrag/pipeline.h"
#include "eval/outcomes.h"
#include "pipeline/spec.h"
#include "router/omodel.h"
#include "router/router.h"

#include <cjson/cJSON.h>

/* A synthetic table: queries about "algebra ..." are answered by option
 * "math" only, "python ..." by "code" only, "chat ..." by every option;
 * "general" is right on half of each topic (by a query word), and costs
 * are a + b * len per option. Returns the table text. */
static char *synth_table(uint64_t seed, size_t n, double noise)
{
    static const char *topics[] = {"algebra", "python", "chat"};
    static const char *words[] = {"solve",   "the",      "value",   "list",     "sort", "hello",
                                  "compute", "function", "weather", "integral", "loop", "friend"};
    static const char *opts[] = {"math", "code", "general"};
    static const double ca[] = {0.001, 0.002, 0.0001}, cb[] = {0.004, 0.001, 0.0};
    dr_rng r;
    dr_rng_seed(&r, seed);
    dr_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        int topic = (int)dr_rng_below(&r, 3);
        dr_buf q = {0};
        dr_buf_printf(&q, "%s", topics[topic]);
        size_t nw = 2 + dr_rng_below(&r, 8);
        bool odd = false;
        for (size_t w = 0; w < nw; w++) {
            size_t k = dr_rng_below(&r, DR_ARRAY_LEN(words));
            odd = odd || k == 0;
            dr_buf_printf(&q, " %s", words[k]);
        }
        char id[32];
        snprintf(id, sizeof(id), "s%zu", i);
        dr_buf_puts(&b, "{\"id\":");
        dr_buf_json_str(&b, id);
        dr_buf_puts(&b, ",\"query\":");
        dr_buf_json_str(&b, q.data);
        dr_buf_printf(&b, ",\"task\":\"%s\",\"outcomes\":{", topics[topic]);
        for (int o = 0; o < 3; o++) {
            double qual = topic == 2 ? 1.0 : (o == topic ? 1.0 : (o == 2 && odd ? 1.0 : 0.0));
            if (dr_rng_uniform(&r) < noise)
                qual = 1.0 - qual;
            double cost = ca[o] + cb[o] * (double)q.len / 1000.0;
            dr_buf_printf(&b, "%s\"%s\":{\"quality\":%g,\"cost_usd\":%.17g}", o ? "," : "", opts[o],
                          qual, cost);
        }
        dr_buf_puts(&b, "}}\n");
        dr_buf_free(&q);
    }
    return dr_buf_take(&b);
}

static int load_text(const char *text, dr_outcome_table *t, dynrag_error *err)
{
    return dr_outcomes_parse("synth.jsonl", text, strlen(text), t, err);
}

/* Mean quality of the routed option over t at willingness to pay wtp, and
 * the mean recorded cost. */
static double routed(const dr_omodel *m, const dr_outcome_table *t, double wtp, double *cost)
{
    double q[6], sum = 0, c = 0;
    for (size_t i = 0; i < t->n_rows; i++) {
        dr_omodel_predict(m, t->rows[i].query, q, q + 3, NULL);
        int k = dr_omodel_pick(m, q, q + 3, wtp, NULL);
        sum += t->rows[i].o[k].quality;
        c += t->rows[i].o[k].cost_usd;
    }
    if (cost)
        *cost = c / (double)t->n_rows;
    return sum / (double)t->n_rows;
}

TEST(router_outcomes_predict_learns_per_query_skill)
{
    /* Over several generated data sets (with label noise), the trained
     * router beats the best single option on fresh queries and comes
     * close to the oracle. */
    for (uint64_t seed = 1; seed <= 3; seed++) {
        char *tr_text = synth_table(seed, 600, 0.05), *te_text = synth_table(seed + 100, 300, 0.0);
        dr_outcome_table tr, te;
        dynrag_error err = {0};
        ASSERT_OK(load_text(tr_text, &tr, &err), &err);
        ASSERT_OK(load_text(te_text, &te, &err), &err);
        dr_omodel_train_opts o = {.kind = "predict", .dim = 256, .clusters = 8, .seed = seed};
        dr_omodel *m = NULL;
        dr_omodel_train_report rep;
        ASSERT_OK(dr_omodel_train(&tr, NULL, 0, &te, NULL, te.n_rows, &o, &m, &rep, &err), &err);
        double best1 = 0;
        for (size_t k = 0; k < 3; k++) {
            double s = 0;
            for (size_t i = 0; i < te.n_rows; i++)
                s += te.rows[i].o[k].quality;
            best1 = DR_MAX(best1, s / (double)te.n_rows);
        }
        double rq = routed(m, &te, 0.0, NULL);
        ASSERT_NEAR(rq, rep.valid_quality, 1e-9);
        ASSERT_GT(rq, best1 + 0.15);
        ASSERT_GT(rq, 0.95); /* the oracle is 1 on this noise-free test set */
        dr_omodel_free(m);
        dr_outcomes_free(&tr);
        dr_outcomes_free(&te);
        free(tr_text);
        free(te_text);
    }
}

TEST(router_outcomes_cost_line_and_willingness_to_pay)
{
    char *text = synth_table(9, 300, 0.0);
    dr_outcome_table t;
    dynrag_error err = {0};
    ASSERT_OK(load_text(text, &t, &err), &err);
    dr_omodel_train_opts o = {.kind = "predict", .dim = 128, .clusters = 4, .lambda = 1};
    dr_omodel *m = NULL;
    ASSERT_OK(dr_omodel_train(&t, NULL, 0, NULL, NULL, 0, &o, &m, NULL, &err), &err);
    /* The recorded costs are exactly linear in length: the line recovers them. */
    double q[6];
    for (size_t i = 0; i < t.n_rows; i++) {
        ASSERT_OK(dr_omodel_predict(m, t.rows[i].query, q, q + 3, &err), &err);
        for (size_t k = 0; k < 3; k++) {
            ASSERT(dr_omodel_has_cost(m, k));
            ASSERT_NEAR(q[3 + k], t.rows[i].o[k].cost_usd, 1e-7);
        }
    }
    /* Raising the willingness to pay never raises the mean cost paid, and a
     * huge one always picks the cheapest option. */
    double prev = INFINITY;
    for (double wtp = 0; wtp <= 1e5; wtp = wtp == 0 ? 1 : wtp * 4) {
        double cost = 0;
        routed(m, &t, wtp, &cost);
        ASSERT_LE(cost, prev + 1e-12);
        prev = cost;
    }
    for (size_t i = 0; i < t.n_rows; i++) {
        dr_omodel_predict(m, t.rows[i].query, q, q + 3, NULL);
        ASSERT_EQ(dr_omodel_pick(m, q, q + 3, 1e9, NULL), 2); /* "general" is cheapest */
        bool allowed[3] = {true, true, false};
        int k = dr_omodel_pick(m, q, q + 3, 1e9, allowed);
        ASSERT(k == 0 || k == 1);
    }
    dr_omodel_free(m);
    dr_outcomes_free(&t);
    free(text);
}

TEST(router_outcomes_save_load_and_determinism)
{
    char *text = synth_table(4, 200, 0.1);
    dr_outcome_table t;
    dynrag_error err = {0};
    ASSERT_OK(load_text(text, &t, &err), &err);
    dr_omodel_train_opts o = {.kind = "predict", .dim = 64, .clusters = 5, .seed = 3};
    dr_omodel *a = NULL, *b = NULL, *c = NULL;
    ASSERT_OK(dr_omodel_train(&t, NULL, 0, &t, NULL, t.n_rows, &o, &a, NULL, &err), &err);
    ASSERT_OK(dr_omodel_train(&t, NULL, 0, &t, NULL, t.n_rows, &o, &b, NULL, &err), &err);
    char path[1024];
    snprintf(path, sizeof(path), "%s/m.safetensors", test_tmpdir());
    ASSERT_OK(dr_omodel_save(a, path, &err), &err);
    ASSERT_OK(dr_omodel_load(path, &c, &err), &err);
    ASSERT_STR_EQ(dr_omodel_kind(c), "predict");
    ASSERT_EQ(dr_omodel_n_options(c), 3);
    ASSERT_STR_EQ(dr_omodel_option(c, 1), "code");
    ASSERT_CONTAINS(dr_omodel_provenance(c), "\"rows\":200");
    double qa[6], qb[6], qc[6];
    for (size_t i = 0; i < t.n_rows; i++) {
        dr_omodel_predict(a, t.rows[i].query, qa, qa + 3, NULL);
        dr_omodel_predict(b, t.rows[i].query, qb, qb + 3, NULL);
        dr_omodel_predict(c, t.rows[i].query, qc, qc + 3, NULL);
        for (int k = 0; k < 6; k++) {
            ASSERT_EQ(qa[k], qb[k]);         /* same seed, same model */
            ASSERT_NEAR(qa[k], qc[k], 1e-6); /* weights are stored as F32 */
        }
    }
    dr_omodel_free(a);
    dr_omodel_free(b);
    dr_omodel_free(c);
    /* Every truncation of the file and a few byte flips fail cleanly or
     * load a model (a flip inside a weight), never crash. */
    char *data = NULL;
    size_t len = 0;
    ASSERT_OK(dr_read_file(path, 1 << 30, &data, &len, &err), &err);
    char bad[1100];
    snprintf(bad, sizeof(bad), "%s/bad.safetensors", test_tmpdir());
    for (size_t cut = 0; cut < len; cut += len / 97 + 1) {
        ASSERT_OK(dr_write_file_atomic(bad, data, cut, &err), &err);
        dr_omodel *m = NULL;
        ASSERT(dr_omodel_load(bad, &m, &err) < 0);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.safetensors");
    }
    dr_rng r;
    dr_rng_seed(&r, 1);
    for (int i = 0; i < 60; i++) {
        size_t at = (size_t)dr_rng_below(&r, 8 + 600);
        char saved = data[at];
        data[at] = (char)(data[at] ^ (1 << dr_rng_below(&r, 8)));
        ASSERT_OK(dr_write_file_atomic(bad, data, len, &err), &err);
        dr_omodel *m = NULL;
        if (dr_omodel_load(bad, &m, &err) == DYNRAG_OK) {
            ASSERT_EQ(dr_omodel_n_options(m), 3);
            dr_omodel_predict(m, "algebra solve", qa, qa + 3, NULL);
            dr_omodel_free(m);
        }
        data[at] = saved;
    }
    free(data);
    dr_outcomes_free(&t);
    free(text);
}

TEST(router_outcomes_train_api_and_cli)
{
    char *text = synth_table(6, 300, 0.05);
    const char *path = test_write_file("train.jsonl", text);
    char train[1024], model[1024], cmd[4096];
    snprintf(train, sizeof(train), "%s", path);
    snprintf(model, sizeof(model), "%s/cli.safetensors", test_tmpdir());
    snprintf(cmd, sizeof(cmd),
             "%s router train --kind predict --data %s --out %s --dim 128 "
             "--clusters 4",
             test_cli_path(), train, model);
    char *out = NULL;
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "predict router, 3 options");
    free(out);
    dr_omodel *m = NULL;
    dynrag_error err = {0};
    ASSERT_OK(dr_omodel_load(model, &m, &err), &err);
    dr_omodel_free(m);
    /* Usage and input errors. */
    snprintf(cmd, sizeof(cmd), "%s router train --kind nosuch --data %s --out %s", test_cli_path(),
             train, model);
    ASSERT_EQ(test_run(cmd, &out), 2);
    ASSERT_CONTAINS(out, "--kind nosuch");
    free(out);
    const char *bad = test_write_file("bad.jsonl", "{\"id\":\"a\",\"query\":\"q\",\"outcomes\":"
                                                   "{\"m\":{\"quality\":2}}}\n");
    snprintf(cmd, sizeof(cmd), "%s router train --kind predict --data %s --out %s", test_cli_path(),
             bad, model);
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "bad.jsonl:1: outcomes.m.quality");
    free(out);
    /* The API with a validation file. */
    const char *data[1] = {train};
    dynrag_outcome_router_options o;
    dynrag_outcome_router_options_init(&o);
    o.kind = "predict";
    o.data = data;
    o.n_data = 1;
    o.valid = train;
    o.out_path = model;
    o.dim = 128;
    o.clusters = 4;
    dynrag_outcome_router_result res;
    ASSERT_OK(dynrag_outcome_router_train(&o, &res, &err), &err);
    ASSERT_EQ(res.rows, 300);
    ASSERT_EQ(res.valid_rows, 300);
    ASSERT_GT(res.valid_quality, 0.9);
    free(text);
}

/* Loads a pipeline file, marks its generator options available (their
 * endpoints are not configured offline) and routes queries with the
 * stage's router: every decision names a scored option. */
static void route_pipeline(const char *file, const char *type, const char *const *queries,
                           size_t n)
{
    char path[2048];
    snprintf(path, sizeof(path), "%s/%s", test_source_dir(), file);
    dynrag_pipeline *p = NULL;
    dynrag_diags *dg = NULL;
    dynrag_error err = {0};
    ASSERT_OK(dynrag_pipeline_load(path, &p, &dg, &err), &err);
    dynrag_diags_free(dg);
    dr_stage *st = &p->stages[DR_STAGE_GENERATOR];
    ASSERT_STR_EQ(st->router.type, type);
    dr_router *r = NULL;
    ASSERT_OK(dr_router_create(p, st, &r, &err), &err);
    dr_route_decision d;
    dr_route_ctx ctx = {.stage = st};
    /* Offline every option is unavailable: routing fails cleanly. */
    ctx.query = queries[0];
    for (size_t i = 0; i < st->n_options; i++)
        ASSERT(!st->options[i].available);
    ASSERT_EQ(r->vt->route(r, &ctx, &d, &err), DYNRAG_ERR_STATE);
    for (size_t i = 0; i < st->n_options; i++)
        st->options[i].available = true;
    for (size_t q = 0; q < n; q++) {
        ctx.query = queries[q];
        ASSERT_OK(r->vt->route(r, &ctx, &d, &err), &err);
        ASSERT(d.option >= 0 && (size_t)d.option < st->n_options);
        for (size_t i = 0; i < st->n_options; i++) {
            ASSERT(isfinite(d.scores[i]));
            ASSERT_LE(d.scores[i], d.scores[d.option]);
        }
        char want[64];
        snprintf(want, sizeof(want), "%s: ", type);
        ASSERT_CONTAINS(d.reason, want);
    }
    dr_router_free(r);
    dynrag_pipeline_free(p);
}

TEST(router_outcomes_shipped_pipelines_route)
{
    static const char *const q[] = {
        "Natalia sold clips to 48 of her friends in April. How many clips did she sell?",
        "运行中变压器温度最高的部分是\nA. 绕组\nB. 变压器油\n答案：",
        "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n",
        "['Which skin surface will produce the most heat?\\nA) dry palms\\nB) wet palms']", ""};
    route_pipeline("pipelines/llm-router-routerdc.yaml", "contrastive", q, DR_ARRAY_LEN(q));
    route_pipeline("pipelines/llm-router-routerbench.yaml", "predict", q, DR_ARRAY_LEN(q));
}

TEST(router_outcomes_cluster_kind)
{
    /* Per-cluster mean qualities: on the topic data the clusters follow the
     * topics, so the router beats every single option; the weights sit on
     * the cluster one-hots only, and each is a mean quality in [0, 1]. */
    char *tr_text = synth_table(21, 600, 0.0), *te_text = synth_table(22, 300, 0.0);
    dr_outcome_table tr, te;
    dynrag_error err = {0};
    ASSERT_OK(load_text(tr_text, &tr, &err), &err);
    ASSERT_OK(load_text(te_text, &te, &err), &err);
    dr_omodel_train_opts o = {.kind = "cluster", .dim = 256, .clusters = 12, .seed = 2};
    dr_omodel *m = NULL;
    ASSERT_OK(dr_omodel_train(&tr, NULL, 0, NULL, NULL, 0, &o, &m, NULL, &err), &err);
    ASSERT_STR_EQ(dr_omodel_kind(m), "cluster");
    double best1 = 0;
    for (size_t k = 0; k < 3; k++) {
        double s = 0;
        for (size_t i = 0; i < te.n_rows; i++)
            s += te.rows[i].o[k].quality;
        best1 = DR_MAX(best1, s / (double)te.n_rows);
    }
    ASSERT_GT(routed(m, &te, 0.0, NULL), best1 + 0.1);
    double q[6];
    for (size_t i = 0; i < te.n_rows; i++) {
        dr_omodel_predict(m, te.rows[i].query, q, q + 3, NULL);
        for (int k = 0; k < 3; k++)
            ASSERT(q[k] >= 0 && q[k] <= 1);
    }
    /* A cluster model in a predict router is refused (and the reverse). */
    char path[1024];
    snprintf(path, sizeof(path), "%s/c.safetensors", test_tmpdir());
    ASSERT_OK(dr_omodel_save(m, path, &err), &err);
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: t\nstages:\n  generator:\n    options:\n"
             "      - {name: math, kind: extractive}\n      - {name: code, kind: extractive}\n"
             "    router: {type: predict, params: {model: %s}}\n",
             path);
    const char *yp = test_write_file("p.yaml", yaml);
    dynrag_pipeline *p = NULL;
    dynrag_diags *dg = NULL;
    ASSERT_OK(dynrag_pipeline_load(yp, &p, &dg, &err), &err);
    dynrag_diags_free(dg);
    dr_router *r = NULL;
    int rc = dr_router_create(p, &p->stages[DR_STAGE_GENERATOR], &r, &err);
    ASSERT_EQ(rc, DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "is a cluster model, the router type is predict");
    dynrag_pipeline_free(p);
    /* As a cluster router it routes the known options (general is unknown here). */
    char *at = strstr(yaml, "type: predict");
    memcpy(at, "type: cluster", 13);
    yp = test_write_file("p2.yaml", yaml);
    ASSERT_OK(dynrag_pipeline_load(yp, &p, &dg, &err), &err);
    dynrag_diags_free(dg);
    ASSERT_OK(dr_router_create(p, &p->stages[DR_STAGE_GENERATOR], &r, &err), &err);
    dr_route_ctx ctx = {.stage = &p->stages[DR_STAGE_GENERATOR], .query = "python sort list"};
    dr_route_decision d;
    ASSERT_OK(r->vt->route(r, &ctx, &d, &err), &err);
    ASSERT_EQ(d.option, 1);
    ASSERT_CONTAINS(d.reason, "cluster: code");
    dr_router_free(r);
    dynrag_pipeline_free(p);
    dr_omodel_free(m);
    dr_outcomes_free(&tr);
    dr_outcomes_free(&te);
    free(tr_text);
    free(te_text);
}

TEST(router_outcomes_distill_and_entropy_fallback)
{
    char *tr_text = synth_table(31, 500, 0.05), *te_text = synth_table(32, 200, 0.0);
    dr_outcome_table tr, te;
    dynrag_error err = {0};
    ASSERT_OK(load_text(tr_text, &tr, &err), &err);
    ASSERT_OK(load_text(te_text, &te, &err), &err);
    dr_omodel_train_opts o = {.kind = "distill", .dim = 128, .clusters = 6, .seed = 1};
    dr_omodel *m = NULL;
    ASSERT_OK(dr_omodel_train(&tr, NULL, 0, NULL, NULL, 0, &o, &m, NULL, &err), &err);
    double best1 = 0;
    for (size_t k = 0; k < 3; k++) {
        double s = 0;
        for (size_t i = 0; i < te.n_rows; i++)
            s += te.rows[i].o[k].quality;
        best1 = DR_MAX(best1, s / (double)te.n_rows);
    }
    ASSERT_GT(routed(m, &te, 0.0, NULL), best1 + 0.1);
    double q[6];
    for (size_t i = 0; i < te.n_rows; i++) {
        dr_omodel_predict(m, te.rows[i].query, q, q + 3, NULL);
        ASSERT_NEAR(q[0] + q[1] + q[2], 1.0, 1e-9); /* a distribution */
    }
    char path[1024];
    snprintf(path, sizeof(path), "%s/d.safetensors", test_tmpdir());
    ASSERT_OK(dr_omodel_save(m, path, &err), &err);
    /* The share of queries sent to the fallback never grows with max_entropy:
     * all at 0, none at 1. */
    double prev = 2.0;
    for (double me = 0.0; me <= 1.0001; me += 0.125) {
        char yaml[4096];
        snprintf(yaml, sizeof(yaml),
                 "version: 1\nname: t\nstages:\n  generator:\n    options:\n"
                 "      - {name: math, kind: extractive}\n      - {name: code, kind: extractive}\n"
                 "      - {name: general, kind: extractive}\n"
                 "    router: {type: distill, params: {model: %s, max_entropy: %g, fallback: "
                 "general}}\n",
                 path, me);
        const char *yp = test_write_file("d.yaml", yaml);
        dynrag_pipeline *p = NULL;
        dynrag_diags *dg = NULL;
        ASSERT_OK(dynrag_pipeline_load(yp, &p, &dg, &err), &err);
        dynrag_diags_free(dg);
        dr_router *r = NULL;
        ASSERT_OK(dr_router_create(p, &p->stages[DR_STAGE_GENERATOR], &r, &err), &err);
        size_t fb = 0;
        for (size_t i = 0; i < te.n_rows; i++) {
            dr_route_ctx ctx = {.stage = &p->stages[DR_STAGE_GENERATOR], .query = te.rows[i].query};
            dr_route_decision d;
            ASSERT_OK(r->vt->route(r, &ctx, &d, &err), &err);
            if (strstr(d.reason, "fallback general") != NULL) {
                ASSERT_EQ(d.option, 2);
                fb++;
            }
        }
        double share = (double)fb / (double)te.n_rows;
        ASSERT_LE(share, prev);
        if (me == 0.0)
            ASSERT_EQ(share, 1.0);
        if (me >= 1.0)
            ASSERT_EQ(share, 0.0);
        prev = share;
        dr_router_free(r);
        dynrag_pipeline_free(p);
    }
    /* The entropy criterion belongs to distill: the schema refuses it on predict. */
    const char *bad =
        "version: 1\nname: t\nstages:\n  generator:\n    options:\n"
        "      - {name: math, kind: extractive}\n"
        "    router: {type: predict, params: {model: d.safetensors, fallback: math}}\n";
    dynrag_pipeline *p = NULL;
    dynrag_diags *dg = NULL;
    ASSERT(dynrag_pipeline_load(test_write_file("b.yaml", bad), &p, &dg, &err) < 0);
    char *diag = dg ? dynrag_diags_format(dg) : NULL;
    ASSERT_CONTAINS(diag, "router.params.fallback: unknown key");
    free(diag);
    dynrag_diags_free(dg);
    dr_omodel_free(m);
    dr_outcomes_free(&tr);
    dr_outcomes_free(&te);
    free(tr_text);
    free(te_text);
}

/* Predictions of m for every query of t into q[i * 6 ..] (quality, cost). */
static void predict_all(const dr_omodel *m, const dr_outcome_table *t, double *q)
{
    for (size_t i = 0; i < t->n_rows; i++)
        dr_omodel_predict(m, t->rows[i].query, q + 6 * i, q + 6 * i + 3, NULL);
}

/*
 * The mf kind, over several generated data sets with label noise and no
 * cluster features (the skill must come from the factorised n-grams):
 * predictions are probabilities, routing beats the best single option on
 * fresh queries by a wide margin, training is deterministic per seed (and
 * depends on it), a saved model predicts exactly as the trained one, and
 * it routes as router type mf (and only there).
 */
TEST(router_outcomes_mf_kind)
{
    for (uint64_t seed = 1; seed <= 2; seed++) {
        char *tr_text = synth_table(40 + seed, 500, 0.05);
        char *te_text = synth_table(140 + seed, 200, 0.0);
        dr_outcome_table tr, te;
        dynrag_error err = {0};
        ASSERT_OK(load_text(tr_text, &tr, &err), &err);
        ASSERT_OK(load_text(te_text, &te, &err), &err);
        dr_omodel_train_opts o = {.kind = "mf", .dim = 128, .clusters = -1, .seed = seed};
        dr_omodel *m = NULL, *m2 = NULL, *m3 = NULL, *ml = NULL;
        dr_omodel_train_report rep;
        ASSERT_OK(dr_omodel_train(&tr, NULL, 0, NULL, NULL, 0, &o, &m, &rep, &err), &err);
        ASSERT_STR_EQ(dr_omodel_kind(m), "mf");
        ASSERT_EQ(rep.n_params, (size_t)DR_OMODEL_MF_RANK * (128 + DR_OMODEL_EXTRA + 1 + 3) + 9);
        double best1 = 0;
        for (size_t k = 0; k < 3; k++) {
            double s = 0;
            for (size_t i = 0; i < te.n_rows; i++)
                s += te.rows[i].o[k].quality;
            best1 = DR_MAX(best1, s / (double)te.n_rows);
        }
        double rq = routed(m, &te, 0.0, NULL);
        if (!(rq > best1 + 0.15 && rq > 0.9))
            test_fail_(__FILE__, __LINE__, "seed %llu: mf routed %.4f, best single %.4f",
                       (unsigned long long)seed, rq, best1);
        double *a = malloc(te.n_rows * 6 * sizeof(double));
        double *b = malloc(te.n_rows * 6 * sizeof(double));
        ASSERT(a != NULL && b != NULL);
        predict_all(m, &te, a);
        for (size_t i = 0; i < te.n_rows; i++)
            for (int k = 0; k < 3; k++)
                ASSERT(a[6 * i + k] > 0 && a[6 * i + k] < 1);
        /* Same seed: the same model; another seed: another one. */
        ASSERT_OK(dr_omodel_train(&tr, NULL, 0, NULL, NULL, 0, &o, &m2, NULL, &err), &err);
        predict_all(m2, &te, b);
        ASSERT(memcmp(a, b, te.n_rows * 6 * sizeof(double)) == 0);
        o.seed = seed + 1000;
        ASSERT_OK(dr_omodel_train(&tr, NULL, 0, NULL, NULL, 0, &o, &m3, NULL, &err), &err);
        predict_all(m3, &te, b);
        ASSERT(memcmp(a, b, te.n_rows * 6 * sizeof(double)) != 0);
        /* Saved and loaded: the same predictions, bit for bit. */
        char path[1024];
        snprintf(path, sizeof(path), "%s/mf%llu.safetensors", test_tmpdir(),
                 (unsigned long long)seed);
        ASSERT_OK(dr_omodel_save(m, path, &err), &err);
        ASSERT_OK(dr_omodel_load(path, &ml, &err), &err);
        ASSERT_STR_EQ(dr_omodel_kind(ml), "mf");
        predict_all(ml, &te, b);
        ASSERT(memcmp(a, b, te.n_rows * 6 * sizeof(double)) == 0);
        /* Router type mf routes with it; type predict refuses it. */
        static const char *const types[] = {"mf", "predict"};
        for (int ti = 0; ti < 2; ti++) {
            char yaml[4096];
            snprintf(yaml, sizeof(yaml),
                     "version: 1\nname: t\nstages:\n  generator:\n    options:\n"
                     "      - {name: math, kind: extractive}\n"
                     "      - {name: code, kind: extractive}\n"
                     "      - {name: general, kind: extractive}\n"
                     "    router: {type: %s, params: {model: %s}}\n",
                     types[ti], path);
            const char *yp = test_write_file("mf.yaml", yaml);
            dynrag_pipeline *p = NULL;
            dynrag_diags *dg = NULL;
            ASSERT_OK(dynrag_pipeline_load(yp, &p, &dg, &err), &err);
            dynrag_diags_free(dg);
            dr_router *r = NULL;
            int rc = dr_router_create(p, &p->stages[DR_STAGE_GENERATOR], &r, &err);
            if (ti == 1) {
                ASSERT_EQ(rc, DYNRAG_ERR_INVALID);
                ASSERT_CONTAINS(dynrag_errmsg(&err), "is a mf model, the router type is predict");
                dynrag_pipeline_free(p);
                continue;
            }
            ASSERT_OK(rc, &err);
            size_t agree = 0;
            for (size_t i = 0; i < te.n_rows; i++) {
                dr_route_ctx ctx = {.stage = &p->stages[DR_STAGE_GENERATOR],
                                    .query = te.rows[i].query};
                dr_route_decision d;
                ASSERT_OK(r->vt->route(r, &ctx, &d, &err), &err);
                agree += d.option == dr_omodel_pick(ml, a + 6 * i, a + 6 * i + 3, 0.0, NULL);
            }
            ASSERT_EQ(agree, te.n_rows);
            dr_router_free(r);
            dynrag_pipeline_free(p);
        }
        free(a);
        free(b);
        dr_omodel_free(m);
        dr_omodel_free(m2);
        dr_omodel_free(m3);
        dr_omodel_free(ml);
        dr_outcomes_free(&tr);
        dr_outcomes_free(&te);
        free(tr_text);
        free(te_text);
    }
}
