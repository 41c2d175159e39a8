/* test_router_kinds.c - the neighbour-based outcome routers: the kNN
 * predictor (`predict` with method knn) and the Bradley-Terry `preference`
 * router (router/onbr.h, router/omodel.h, router/predict_router.c). */
#include "test.h"

#include "core/util.h"
#include "dynrag/alloc.h"
#include "dynrag/outcomes.h"
#include "dynrag/pipeline.h"
#include "embed/builtin.h"
#include "eval/outcomes.h"
#include "nn/safetensors.h"
#include "pipeline/spec.h"
#include "router/contrastive.h"
#include "router/omodel.h"
#include "router/onbr.h"
#include "router/router.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>

/* A synthetic table: "algebra" queries are answered by option "math"
 * only, "python" ones by "code" only, "chat" ones by every option;
 * "general" is right on a topic query when it holds the word "solve".
 * Label noise flips a cell with probability `noise`. */
static char *topic_table(uint64_t seed, size_t n, double noise)
{
    static const char *topics[] = {"algebra", "python", "chat"};
    static const char *words[] = {"solve",   "the",      "value",   "list",     "sort", "hello",
                                  "compute", "function", "weather", "integral", "loop", "friend"};
    static const char *opts[] = {"math", "code", "general"};
    dr_rng r;
    dr_rng_seed(&r, seed);
    dr_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        int topic = (int)dr_rng_below(&r, 3);
        dr_buf q = {0};
        dr_buf_printf(&q, "%s", topics[topic]);
        size_t nw = 2 + dr_rng_below(&r, 8);
        bool solve = false;
        for (size_t w = 0; w < nw; w++) {
            size_t k = dr_rng_below(&r, DR_ARRAY_LEN(words));
            solve = solve || k == 0;
            dr_buf_printf(&q, " %s", words[k]);
        }
        dr_buf_printf(&b, "{\"id\":\"r%" PRIu64 "-%zu\",\"query\":", seed, i);
        dr_buf_json_str(&b, q.data);
        dr_buf_printf(&b, ",\"task\":\"%s\",\"outcomes\":{", topics[topic]);
        for (int o = 0; o < 3; o++) {
            double qual = topic == 2 ? 1.0 : (o == topic ? 1.0 : (o == 2 && solve ? 1.0 : 0.0));
            if (dr_rng_uniform(&r) < noise)
                qual = 1.0 - qual;
            dr_buf_printf(&b, "%s\"%s\":{\"quality\":%g,\"cost_usd\":%g}", o ? "," : "", opts[o],
                          qual, 0.001 * (3 - o));
        }
        dr_buf_puts(&b, "}}\n");
        dr_buf_free(&q);
    }
    return dr_buf_take(&b);
}

static int parse_table(const char *text, dr_outcome_table *t, dynrag_error *err)
{
    return dr_outcomes_parse("topics.jsonl", text, strlen(text), t, err);
}

/* Mean quality of the options m routes t's rows to (wtp 0). */
static double routed_quality(const dr_omodel *m, const dr_outcome_table *t)
{
    double q[6], sum = 0;
    for (size_t i = 0; i < t->n_rows; i++) {
        dr_omodel_predict(m, t->rows[i].query, q, q + 3, NULL);
        sum += t->rows[i].o[dr_omodel_pick(m, q, q + 3, 0, NULL)].quality;
    }
    return sum / (double)t->n_rows;
}

static double best_single(const dr_outcome_table *t)
{
    double best = 0;
    for (size_t o = 0; o < t->n_options; o++) {
        double s = 0;
        for (size_t i = 0; i < t->n_rows; i++)
            s += t->rows[i].o[o].quality;
        best = DR_MAX(best, s / (double)t->n_rows);
    }
    return best;
}

/* A random unit vector of dim entries, sparse with probability `zero`. */
static void unit_vector(dr_rng *r, float *v, int dim, double zero)
{
    double norm = 0;
    for (int d = 0; d < dim; d++) {
        v[d] = dr_rng_uniform(r) < zero ? 0.0f : (float)(dr_rng_uniform(r) * 2 - 1);
        norm += (double)v[d] * v[d];
    }
    if (norm == 0) {
        v[0] = 1;
        norm = 1;
    }
    for (int d = 0; d < dim; d++)
        v[d] = (float)(v[d] / sqrt(norm));
}

TEST(router_kinds_knn_matches_brute_force)
{
    /* Over random tables (missing cells, duplicate rows for ties), the
     * neighbour search returns the k most similar rows, most similar first
     * and the lower row first among equals, and the kNN prediction is the
     * mean of the present cells over those with similarity > 0 (the
     * option's overall mean when none). */
    dr_rng r;
    dr_rng_seed(&r, 7);
    for (int round = 0; round < 40; round++) {
        size_t n = 1 + dr_rng_below(&r, 120), K = 1 + dr_rng_below(&r, 6);
        int dim = 4 + (int)dr_rng_below(&r, 40);
        float *x = malloc(n * (size_t)dim * sizeof(float)), *q = malloc(n * K * sizeof(float));
        for (size_t i = 0; i < n; i++) {
            if (i > 0 && dr_rng_uniform(&r) < 0.1) /* an exact duplicate: a tie */
                memcpy(x + i * (size_t)dim, x + (i - 1) * (size_t)dim, (size_t)dim * sizeof(float));
            else
                unit_vector(&r, x + i * (size_t)dim, dim, 0.5);
            for (size_t o = 0; o < K; o++)
                q[i * K + o] = dr_rng_uniform(&r) < 0.15 ? -1.0f : (float)dr_rng_below(&r, 11) / 10;
        }
        dr_onbr *nb = dr_onbr_create(x, (size_t)dim, dim, n, q, K, false);
        ASSERT(nb != NULL);
        float e[64], scratch[128], sim[128];
        size_t idx[128];
        double pred[8];
        for (int t = 0; t < 10; t++) {
            unit_vector(&r, e, dim, 0.3);
            size_t k = 1 + dr_rng_below(&r, n + 3);
            size_t got = dr_onbr_nearest(nb, e, k, idx, sim, scratch);
            ASSERT_EQ(got, DR_MIN(k, n));
            /* Brute force: the similarity of every row, and for each
             * returned row, no unreturned row is strictly more similar or
             * equally similar with a lower index. */
            double s_all[128];
            bool taken[128] = {false};
            for (size_t i = 0; i < n; i++) {
                double s = 0;
                for (int d = 0; d < dim; d++)
                    s += (double)e[d] * x[i * (size_t)dim + (size_t)d];
                s_all[i] = s;
            }
            for (size_t j = 0; j < got; j++) {
                ASSERT_NEAR(sim[j], s_all[idx[j]], 1e-5);
                if (j > 0)
                    ASSERT(sim[j] <= sim[j - 1]);
                taken[idx[j]] = true;
            }
            for (size_t i = 0; i < n; i++)
                if (!taken[i])
                    ASSERT(s_all[i] <= sim[got - 1] + 1e-5);
            int kk = 1 + (int)dr_rng_below(&r, (uint64_t)got);
            dr_onbr_predict(nb, idx, sim, got, kk, 0.5, pred);
            for (size_t o = 0; o < K; o++) {
                double s = 0, c = 0;
                for (size_t j = 0; j < (size_t)kk && sim[j] > 0; j++)
                    if (q[idx[j] * K + o] >= 0) {
                        s += q[idx[j] * K + o];
                        c += 1;
                    }
                ASSERT_NEAR(pred[o], c > 0 ? s / c : nb->mean[o], 1e-9);
            }
        }
        dr_onbr_free(nb);
        free(x);
        free(q);
    }
}

TEST(router_kinds_bradley_terry_recovers_strengths)
{
    /* Win counts drawn from known log-strengths: the fit recovers them (up
     * to the centring), is invariant to scaling the counts when there is no
     * prior, and ranks options by their true strength. */
    dr_rng r;
    dr_rng_seed(&r, 11);
    for (int round = 0; round < 20; round++) {
        size_t K = 2 + dr_rng_below(&r, 9);
        double truth[16], wins[16 * 16] = {0}, scaled[16 * 16], fit[16], fit2[16], mean = 0;
        for (size_t a = 0; a < K; a++) {
            truth[a] = dr_rng_uniform(&r) * 4 - 2;
            mean += truth[a] / (double)K;
        }
        for (size_t a = 0; a < K; a++)
            for (size_t b = 0; b < K; b++)
                if (a != b) /* expected wins of 4000 games per pair */
                    wins[a * K + b] = 2000.0 / (1.0 + exp(truth[b] - truth[a]));
        for (size_t i = 0; i < K * K; i++)
            scaled[i] = wins[i] * 3.5;
        dr_bt_fit(K, wins, NULL, 0.0, fit);
        dr_bt_fit(K, scaled, NULL, 0.0, fit2);
        double c = 0;
        for (size_t a = 0; a < K; a++)
            c += fit[a];
        ASSERT_NEAR(c, 0, 1e-6);
        for (size_t a = 0; a < K; a++) {
            ASSERT_NEAR(fit[a], truth[a] - mean, 0.05);
            ASSERT_NEAR(fit[a], fit2[a], 1e-6);
            for (size_t b = 0; b < K; b++)
                if (truth[a] > truth[b] + 0.1)
                    ASSERT_GT(fit[a], fit[b]);
        }
        /* A strong prior toward other ratings pulls the fit to them. */
        double toward[16];
        for (size_t a = 0; a < K; a++)
            toward[a] = -truth[a];
        dr_bt_fit(K, wins, toward, 1e9, fit2);
        for (size_t a = 0; a < K; a++)
            ASSERT_NEAR(fit2[a], -(truth[a] - mean), 0.01);
    }
    /* An option that never plays gets 0; one that always wins stays finite
     * with a prior. */
    double w[9] = {0, 10, 0, 0, 0, 0, 0, 0, 0}, f[3];
    dr_bt_fit(3, w, NULL, 1.0, f);
    ASSERT(isfinite(f[0]) && isfinite(f[1]));
    ASSERT_GT(f[0], f[1]);
}

/* Trains a model of kind/method on tr (k and local weight chosen on va). */
static dr_omodel *train(const char *kind, const char *method, const dr_outcome_table *tr,
                        const dr_outcome_table *va, int k)
{
    dr_omodel_train_opts o = {.kind = kind, .method = method, .dim = 256, .seed = 1, .k = k};
    dr_omodel *m = NULL;
    dr_omodel_train_report rep;
    dynrag_error err = {0};
    if (dr_omodel_train(tr, NULL, 0, va, NULL, va ? va->n_rows : 0, &o, &m, &rep, &err) !=
        DYNRAG_OK) {
        fprintf(stderr, "train: %s\n", dynrag_errmsg(&err));
        return NULL;
    }
    return m;
}

TEST(router_kinds_learn_per_query_skill)
{
    /* On several generated data sets with label noise, both the kNN
     * predictor and the preference router beat the best single option on
     * fresh queries by a wide margin. The preference router with local
     * weight 0 (global ratings only) routes every query to one option. */
    for (uint64_t seed = 1; seed <= 3; seed++) {
        char *a = topic_table(seed, 500, 0.05), *b = topic_table(seed + 50, 200, 0.05),
             *c = topic_table(seed + 100, 300, 0.0);
        dr_outcome_table tr, va, te;
        dynrag_error err = {0};
        ASSERT_OK(parse_table(a, &tr, &err), &err);
        ASSERT_OK(parse_table(b, &va, &err), &err);
        ASSERT_OK(parse_table(c, &te, &err), &err);
        dr_omodel *knn = train("predict", "knn", &tr, &va, 0);
        dr_omodel *pref = train("preference", NULL, &tr, &va, 0);
        ASSERT(knn != NULL && pref != NULL);
        ASSERT_STR_EQ(dr_omodel_method(knn), "knn");
        ASSERT_STR_EQ(dr_omodel_kind(pref), "preference");
        double b1 = best_single(&te);
        ASSERT_GT(routed_quality(knn, &te), b1 + 0.15);
        ASSERT_GT(routed_quality(pref, &te), b1 + 0.15);
        double lw = 0;
        ASSERT_GT(dr_omodel_neighbours(pref, &lw), 0);
        ASSERT_GT(lw, 0); /* the local ratings were worth something */
        ASSERT_OK(dr_omodel_set_neighbours(pref, 10, 0.0, &err), &err);
        double q[6];
        int first = -1;
        for (size_t i = 0; i < te.n_rows; i++) {
            dr_omodel_predict(pref, te.rows[i].query, q, q + 3, NULL);
            int pick = dr_omodel_pick(pref, q, q + 3, 0, NULL);
            for (int o = 0; o < 3; o++)
                ASSERT(q[o] >= 0 && q[o] <= 1);
            if (first < 0)
                first = pick;
            ASSERT_EQ(pick, first);
        }
        dr_omodel_free(knn);
        dr_omodel_free(pref);
        dr_outcomes_free(&tr);
        dr_outcomes_free(&va);
        dr_outcomes_free(&te);
        free(a);
        free(b);
        free(c);
    }
}

TEST(router_kinds_save_load_and_corruption)
{
    char *text = topic_table(5, 150, 0.1);
    dr_outcome_table t;
    dynrag_error err = {0};
    ASSERT_OK(parse_table(text, &t, &err), &err);
    static const char *const kinds[2][2] = {{"predict", "knn"}, {"preference", NULL}};
    for (int kk = 0; kk < 2; kk++) {
        dr_omodel *a = train(kinds[kk][0], kinds[kk][1], &t, NULL, 7), *c = NULL;
        ASSERT(a != NULL);
        char path[1024], bad[1100];
        snprintf(path, sizeof(path), "%s/%s.safetensors", test_tmpdir(), kinds[kk][0]);
        snprintf(bad, sizeof(bad), "%s/bad.safetensors", test_tmpdir());
        ASSERT_OK(dr_omodel_save(a, path, &err), &err);
        ASSERT_OK(dr_omodel_load(path, &c, &err), &err);
        ASSERT_EQ(dr_omodel_neighbour_rows(c), 150);
        ASSERT_EQ(dr_omodel_neighbours(c, NULL), 7);
        double qa[6], qc[6];
        for (size_t i = 0; i < t.n_rows; i++) {
            dr_omodel_predict(a, t.rows[i].query, qa, qa + 3, NULL);
            dr_omodel_predict(c, t.rows[i].query, qc, qc + 3, NULL);
            for (int o = 0; o < 6; o++)
                ASSERT_NEAR(qa[o], qc[o], 1e-5);
        }
        /* k is validated against the rows kept; local_weight only for
         * preference models. */
        ASSERT_EQ(dr_omodel_set_neighbours(c, 0, NAN, &err), DYNRAG_ERR_INVALID);
        ASSERT_EQ(dr_omodel_set_neighbours(c, 151, NAN, &err), DYNRAG_ERR_INVALID);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "keeps 150 training queries");
        ASSERT_EQ(dr_omodel_set_neighbours(c, 5, 1.5, &err), DYNRAG_ERR_INVALID);
        ASSERT_EQ(dr_omodel_set_neighbours(c, 150, kk == 0 ? 0.5 : NAN, &err),
                  kk == 0 ? DYNRAG_ERR_INVALID : DYNRAG_OK);
        dr_omodel_free(a);
        dr_omodel_free(c);
        /* Truncations fail naming the file; byte flips in the header fail
         * cleanly or load a model that predicts values in range. */
        char *data = NULL;
        size_t len = 0;
        ASSERT_OK(dr_read_file(path, 1 << 30, &data, &len, &err), &err);
        for (size_t cut = 0; cut < len; cut += len / 41 + 1) {
            ASSERT_OK(dr_write_file_atomic(bad, data, cut, &err), &err);
            dr_omodel *m = NULL;
            ASSERT(dr_omodel_load(bad, &m, &err) < 0);
            ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.safetensors");
        }
        dr_rng r;
        dr_rng_seed(&r, 3);
        for (int i = 0; i < 40; i++) {
            size_t at = (size_t)dr_rng_below(&r, 8 + 900);
            char saved = data[at];
            data[at] = (char)(data[at] ^ (1 << dr_rng_below(&r, 8)));
            ASSERT_OK(dr_write_file_atomic(bad, data, len, &err), &err);
            dr_omodel *m = NULL;
            if (dr_omodel_load(bad, &m, &err) == DYNRAG_OK) {
                dr_omodel_predict(m, "algebra solve", qa, qa + 3, NULL);
                for (int o = 0; o < 3; o++)
                    ASSERT(isfinite(qa[o]));
                dr_omodel_free(m);
            }
            data[at] = saved;
        }
        free(data);
    }
    /* Training options are validated. */
    dr_omodel *m = NULL;
    dr_omodel_train_opts o = {.kind = "predict", .method = "knn", .dim = 64, .k = 151};
    ASSERT_EQ(dr_omodel_train(&t, NULL, 0, NULL, NULL, 0, &o, &m, NULL, &err), DYNRAG_ERR_INVALID);
    o.k = 5;
    o.method = "lasso";
    ASSERT_EQ(dr_omodel_train(&t, NULL, 0, NULL, NULL, 0, &o, &m, NULL, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "lasso");
    o.kind = "mf";
    o.method = NULL;
    ASSERT_EQ(dr_omodel_train(&t, NULL, 0, NULL, NULL, 0, &o, &m, NULL, &err), DYNRAG_ERR_INVALID);
    dr_outcomes_free(&t);
    free(text);
}

/* A generator stage routed by `router` over options math, code, general. */
static int route_with(const char *router, const char *query, dr_route_decision *d,
                      dynrag_error *err)
{
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: kinds\nstages:\n  generator:\n    options:\n"
             "      - {name: math, kind: extractive}\n      - {name: code, kind: extractive}\n"
             "      - {name: general, kind: extractive}\n    router: %s\n",
             router);
    dynrag_pipeline *p = NULL;
    dynrag_diags *dg = NULL;
    int rc = dynrag_pipeline_load_string(yaml, strlen(yaml), "kinds.yaml", test_tmpdir(), &p, &dg,
                                         err);
    if (rc != DYNRAG_OK && dg != NULL && dynrag_diags_count(dg) > 0) {
        char *all = dynrag_diags_format(dg);
        dr_err_set(err, rc, "%s", all ? all : "");
        free(all);
    }
    dynrag_diags_free(dg);
    if (rc != DYNRAG_OK)
        return rc;
    dr_router *r = NULL;
    rc = dr_router_create(p, &p->stages[DR_STAGE_GENERATOR], &r, err);
    if (rc == DYNRAG_OK) {
        dr_route_ctx ctx = {.query = query, .stage = &p->stages[DR_STAGE_GENERATOR]};
        ctx.remaining.usd = ctx.remaining.latency_ms = ctx.remaining.energy_wh = INFINITY;
        rc = r->vt->route(r, &ctx, d, err);
    }
    dr_router_free(r);
    dynrag_pipeline_free(p);
    return rc;
}

TEST(router_kinds_pipeline_params_and_cli)
{
    char *text = topic_table(8, 400, 0.0);
    char train_path[1024], knn[1024], pref[1024], ridge[1024], cmd[4200];
    snprintf(train_path, sizeof(train_path), "%s", test_write_file("topics.jsonl", text));
    snprintf(knn, sizeof(knn), "%s/knn.safetensors", test_tmpdir());
    snprintf(pref, sizeof(pref), "%s/pref.safetensors", test_tmpdir());
    snprintf(ridge, sizeof(ridge), "%s/ridge.safetensors", test_tmpdir());
    char *out = NULL;
    snprintf(cmd, sizeof(cmd),
             "%s router train --kind predict --method knn --data %s --out %s --dim 128",
             test_cli_path(), train_path, knn);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "predict router, 3 options");
    ASSERT_CONTAINS(out, ", k ");
    free(out);
    snprintf(cmd, sizeof(cmd),
             "%s router train --kind preference --k 15 --data %s --out %s --dim 128",
             test_cli_path(), train_path, pref);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "preference router, 3 options");
    ASSERT_CONTAINS(out, "k 15, local weight ");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s router train --kind predict --data %s --out %s --dim 64 --k 0",
             test_cli_path(), train_path, ridge);
    ASSERT_EQ(test_run(cmd, &out), 2);
    ASSERT_CONTAINS(out, "--k");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s router train --kind predict --method svm --data %s --out %s",
             test_cli_path(), train_path, ridge);
    ASSERT_EQ(test_run(cmd, &out), 2);
    ASSERT_CONTAINS(out, "--method svm");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s router train --kind predict --data %s --out %s --dim 64",
             test_cli_path(), train_path, ridge);
    ASSERT_EQ(test_run(cmd, &out), 0);
    free(out);

    /* In a pipeline: a topic query goes to its option, with the reason. */
    dr_route_decision d;
    dynrag_error err = {0};
    char router[2048];
    snprintf(router, sizeof(router), "{type: predict, params: {model: %s, k: 5}}", knn);
    ASSERT_OK(route_with(router, "algebra compute the integral value", &d, &err), &err);
    ASSERT_EQ(d.option, 0);
    ASSERT_CONTAINS(d.reason, "predict: math quality");
    snprintf(router, sizeof(router),
             "{type: preference, params: {model: %s, k: 20, local_weight: 1}}", pref);
    ASSERT_OK(route_with(router, "python sort the list in a loop", &d, &err), &err);
    ASSERT_EQ(d.option, 1);
    ASSERT_CONTAINS(d.reason, "preference: code win rate");
    /* Errors name the field. */
    snprintf(router, sizeof(router), "{type: predict, params: {model: %s, k: 5}}", ridge);
    ASSERT_EQ(route_with(router, "q", &d, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "stages.generator.router.k");
    ASSERT_CONTAINS(dynrag_errmsg(&err), "keeps no training queries");
    snprintf(router, sizeof(router), "{type: preference, params: {model: %s, k: 401}}", pref);
    ASSERT_EQ(route_with(router, "q", &d, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "k 401");
    snprintf(router, sizeof(router), "{type: preference, params: {model: %s, k: 0}}", pref);
    ASSERT(route_with(router, "q", &d, &err) != DYNRAG_OK);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "router.params.k");
    snprintf(router, sizeof(router), "{type: predict, params: {model: %s}}", pref);
    ASSERT_EQ(route_with(router, "q", &d, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "is a preference model, the router type is predict");
    free(text);
}

/* ---- damaged and oversized model files (fuzz/fuzz_router_model.c) ------------ */

/*
 * Copies the model file src to dst with config key `key` set to the number
 * `value` (key NULL: config unchanged) and element `at` of tensor `tensor`
 * set to v (tensor NULL: no tensor changed). Fails the test on error.
 */
static void rewrite_model(const char *src, const char *dst, const char *key, double value,
                          const char *tensor, size_t at, float v)
{
    dynrag_error err = {0};
    dr_st_file *f = NULL;
    ASSERT_OK(dr_st_open(src, &f, &err), &err);
    dr_st_writer *w = dr_st_writer_new();
    cJSON *cfg = cJSON_Parse(dr_st_meta(f, "config"));
    ASSERT(w != NULL && cfg != NULL);
    if (key != NULL) {
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, key);
        ASSERT(cJSON_AddNumberToObject(cfg, key, value) != NULL);
    }
    char *cfg_text = cJSON_PrintUnformatted(cfg);
    static const char *const keys[] = {"format", "format_version", "config", "provenance"};
    for (size_t i = 0; i < DR_ARRAY_LEN(keys); i++)
        ASSERT_OK(dr_st_writer_meta(w, keys[i], i == 2 ? cfg_text : dr_st_meta(f, keys[i]), &err),
                  &err);
    size_t n = dr_st_count(f);
    float **bufs = calloc(n, sizeof(float *));
    ASSERT(bufs != NULL);
    for (size_t i = 0; i < n; i++) {
        const dr_st_tensor *t = dr_st_at(f, i);
        bufs[i] = malloc(t->numel * sizeof(float) + 1);
        ASSERT(bufs[i] != NULL);
        ASSERT_OK(dr_st_read_f32(f, t->name, t->ndim, t->shape, bufs[i], &err), &err);
        if (tensor != NULL && strcmp(t->name, tensor) == 0) {
            ASSERT(at < t->numel);
            bufs[i][at] = v;
        }
        ASSERT_OK(dr_st_writer_add_f32(w, t->name, t->ndim, t->shape, bufs[i], &err), &err);
    }
    ASSERT_OK(dr_st_writer_save(w, dst, &err), &err);
    dr_st_writer_free(w);
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(cfg_text);
    cJSON_Delete(cfg);
    dr_st_close(f);
}

/* A test allocator that records the largest block asked for and refuses
 * blocks above 64 MiB (a loader that trusts a declared size fails with
 * DYNRAG_ERR_NOMEM instead of DYNRAG_ERR_FORMAT then). */
#define CAP_LIMIT ((size_t)64 << 20)
static size_t cap_largest;

static void *cap_malloc(void *user, size_t size)
{
    (void)user;
    cap_largest = DR_MAX(cap_largest, size);
    return size > CAP_LIMIT ? NULL : malloc(size);
}

static void *cap_calloc(void *user, size_t count, size_t size)
{
    (void)user;
    cap_largest = DR_MAX(cap_largest, count * size);
    return count * size > CAP_LIMIT ? NULL : calloc(count, size);
}

static void *cap_realloc(void *user, void *ptr, size_t size)
{
    (void)user;
    cap_largest = DR_MAX(cap_largest, size);
    return size > CAP_LIMIT ? NULL : realloc(ptr, size);
}

static void cap_free(void *user, void *ptr)
{
    (void)user;
    free(ptr);
}

/*
 * Loads path and checks that the load fails with an error about the file
 * (DYNRAG_ERR_FORMAT, or DYNRAG_ERR_MISMATCH / DYNRAG_ERR_NOTFOUND for a
 * tensor of another shape or none; never DYNRAG_ERR_NOMEM), returns no
 * model, and names the file and `field`, with no single allocation larger
 * than `most` bytes on the way.
 */
static bool rejected(const char *path, const char *field, size_t most)
{
    static const dynrag_allocator cap = {cap_malloc, cap_calloc, cap_realloc, cap_free, NULL};
    dynrag_error err = {0};
    dr_omodel *m = NULL;
    cap_largest = 0;
    dynrag_set_allocator(&cap);
    int rc = dr_omodel_load(path, &m, &err);
    dynrag_set_allocator(NULL);
    const char *msg = dynrag_errmsg(&err);
    bool file_error =
        rc == DYNRAG_ERR_FORMAT || rc == DYNRAG_ERR_MISMATCH || rc == DYNRAG_ERR_NOTFOUND;
    if (!file_error || m != NULL || strstr(msg, "bad.safetensors") == NULL ||
        strstr(msg, field) == NULL || cap_largest > most) {
        test_fail_(__FILE__, __LINE__,
                   "damaged %s: load returned %d (%s), largest block %zu (at most %zu): %s", field,
                   rc, dynrag_strerror(rc), cap_largest, most, msg);
        dr_omodel_free(m);
        return false;
    }
    return true;
}

/* Predicts for a long query of repeated words, checks every quality and
 * cost is a number and the pick is an option; frees m. */
static bool predicts_numbers(dr_omodel *m)
{
    static char q[20000];
    for (size_t i = 0; i + 1 < sizeof(q); i++)
        q[i] = "solve the integral of x \xc3\xa9t\xc3\xa9 42\n"[i % 32];
    q[sizeof(q) - 1] = '\0';
    double qc[2 * 3];
    dynrag_error err = {0};
    bool ok = dr_omodel_n_options(m) == 3 && dr_omodel_predict(m, q, qc, qc + 3, &err) == 0;
    for (int o = 0; ok && o < 6; o++)
        ok = isfinite(qc[o]);
    int pick = ok ? dr_omodel_pick(m, qc, qc + 3, 15.0, NULL) : -1;
    dr_omodel_free(m);
    return ok && pick >= 0 && pick < 3;
}

/*
 * Regressions found by fuzz/fuzz_router_model.c and while writing it:
 *  - an IDF value above 1 + ln(1 + idf_docs) loaded, and a huge one
 *    (3e38) overflowed the embedder's float sums for a query with
 *    repeated words: infinite features, NaN qualities;
 *  - a huge contrastive weight (3e38 in the row of the log-length
 *    feature) loaded and made the encoding infinite and the cosines NaN;
 *  - count and size fields (dim, clusters, rows, k, rank, idf_docs) loaded
 *    when not integers (16.5 read as 16);
 *  - the contrastive encoder was allocated at the config's sizes before
 *    the file's tensors were checked against them.
 * Sizes declared huge fail as format errors without a large allocation.
 */
TEST(router_kinds_load_rejects_damaged_values)
{
    char *text = topic_table(5, 60, 0.1);
    dr_outcome_table t;
    dynrag_error err = {0};
    ASSERT_OK(parse_table(text, &t, &err), &err);
    static const dr_omodel_train_opts opts[] = {
        {.kind = "predict", .dim = 16, .clusters = 2, .lambda = 1, .seed = 1},
        {.kind = "predict", .method = "knn", .dim = 16, .k = 5, .seed = 1},
        {.kind = "mf", .dim = 16, .clusters = -1, .lambda = 1, .seed = 1},
        {.kind = "contrastive",
         .dim = 16,
         .clusters = 2,
         .hidden = 8,
         .embed_dim = 4,
         .epochs = 2,
         .lambda = 1,
         .seed = 1},
    };
    static const char *const names[] = {"ridge", "knn", "mf", "contrastive"};
    char good[4][1024], bad[1024];
    for (size_t i = 0; i < DR_ARRAY_LEN(opts); i++) {
        dr_omodel *m = NULL;
        ASSERT_OK(dr_omodel_train(&t, NULL, 0, NULL, NULL, 0, &opts[i], &m, NULL, &err), &err);
        snprintf(good[i], sizeof(good[i]), "%s/%s.safetensors", test_tmpdir(), names[i]);
        ASSERT_OK(dr_omodel_save(m, good[i], &err), &err);
        dr_omodel_free(m);
    }
    snprintf(bad, sizeof(bad), "%s/bad.safetensors", test_tmpdir());
    const size_t small = (size_t)1 << 20; /* the IDF table: the largest block of a load */

    /* IDF: at most 1 + ln(1 + config.idf_docs), what training can give. */
    dr_st_file *f = NULL;
    ASSERT_OK(dr_st_open(good[0], &f, &err), &err);
    cJSON *cfg = cJSON_Parse(dr_st_meta(f, "config"));
    dr_st_close(f);
    ASSERT(cfg != NULL);
    double docs = cJSON_GetObjectItemCaseSensitive(cfg, "idf_docs")->valuedouble;
    cJSON_Delete(cfg);
    ASSERT_GT(docs, 0);
    float top = (float)(1.0 + log1p(docs));
    dr_omodel *m = NULL;
    rewrite_model(good[0], bad, NULL, 0, "idf", 123, top);
    ASSERT_OK(dr_omodel_load(bad, &m, &err), &err);
    ASSERT(predicts_numbers(m));
    rewrite_model(good[0], bad, NULL, 0, "idf", 123, top + 0.01f);
    ASSERT(rejected(bad, "idf", small));
    rewrite_model(good[0], bad, NULL, 0, "idf", 123, 3.0e38f);
    ASSERT(rejected(bad, "idf", small));
    rewrite_model(good[0], bad, NULL, 0, "idf", 123, -0.5f);
    ASSERT(rejected(bad, "idf", small));
    /* idf_docs is what bounds the IDF: lowering it makes the file inconsistent. */
    rewrite_model(good[0], bad, "idf_docs", 1, NULL, 0, 0);
    ASSERT(rejected(bad, "idf", small));
    /* The embedder's own state loader (also used by indexes) refuses an IDF
     * above what any document count can give. */
    dr_embedder *e = NULL;
    ASSERT_OK(dr_embedder_builtin_create(16, &e, &err), &err);
    ASSERT_OK(dr_builtin_observe(e, "bees make honey", 15, &err), &err);
    ASSERT_OK(dr_builtin_finish_idf(e, &err), &err);
    void *blob = NULL;
    size_t len = 0;
    ASSERT_OK(dr_builtin_state_save(e, &blob, &len, &err), &err);
    float big = 1.0e30f;
    memcpy((unsigned char *)blob + 24 + 4 * 77, &big, 4);
    ASSERT_EQ(dr_builtin_state_load(e, blob, len, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "bad IDF value");
    free(blob);
    dr_embedder_free(e);

    /* Contrastive weights: at most DR_CTR_MAX_WEIGHT in magnitude. Row 16 of
     * enc_w1 is the log-length feature's (dim 16, hidden 8). */
    static const struct {
        const char *tensor;
        size_t at;
    } ctr[] = {{"enc_w1", 16 * 8}, {"enc_w1", 0}, {"option_emb", 5}, {"enc_w2", 3}, {"enc_b2", 1}};
    for (size_t i = 0; i < DR_ARRAY_LEN(ctr); i++) {
        rewrite_model(good[3], bad, NULL, 0, ctr[i].tensor, ctr[i].at, i % 2 ? -3.0e38f : 3.0e38f);
        ASSERT(rejected(bad, ctr[i].tensor, small));
        rewrite_model(good[3], bad, NULL, 0, ctr[i].tensor, ctr[i].at,
                      (float)DR_CTR_MAX_WEIGHT * 1.5f);
        ASSERT(rejected(bad, ctr[i].tensor, small));
        rewrite_model(good[3], bad, NULL, 0, ctr[i].tensor, ctr[i].at, (float)DR_CTR_MAX_WEIGHT);
        ASSERT_OK(dr_omodel_load(bad, &m, &err), &err);
        ASSERT(predicts_numbers(m));
    }

    /* Counts and sizes are integers. */
    static const struct {
        int model;
        const char *key;
        double value;
    } ints[] = {{0, "dim", 16.5},   {0, "clusters", 1.5},  {0, "idf_docs", 60.5},
                {1, "rows", 59.5},  {1, "k", 4.5},         {2, "rank", 16.5},
                {3, "hidden", 8.5}, {3, "embed_dim", 4.25}};
    for (size_t i = 0; i < DR_ARRAY_LEN(ints); i++) {
        char field[64];
        snprintf(field, sizeof(field), "config.%s: %g is not an integer", ints[i].key,
                 ints[i].value);
        rewrite_model(good[ints[i].model], bad, ints[i].key, ints[i].value, NULL, 0, 0);
        ASSERT(rejected(bad, field, small));
    }

    /* Sizes declared huge: the file must hold them before anything of that
     * size is allocated. */
    static const struct {
        int model;
        const char *key;
        double value;
        const char *field;
    } huge[] = {{1, "rows", 1e8, "train_x"},         {0, "dim", 4096, "quality_w"},
                {0, "clusters", 256, "quality_w"},   {3, "hidden", 1024, "enc_w1"},
                {3, "embed_dim", 512, "option_emb"}, {2, "rank", 1e9, "config.rank"}};
    for (size_t i = 0; i < DR_ARRAY_LEN(huge); i++) {
        rewrite_model(good[huge[i].model], bad, huge[i].key, huge[i].value, NULL, 0, 0);
        ASSERT(rejected(bad, huge[i].field, small));
    }
    /* A tensor whose header declares a huge shape. */
    char *bytes = NULL;
    ASSERT_OK(dr_read_file(good[0], 1 << 26, &bytes, &len, &err), &err);
    uint64_t hlen = 0;
    for (int b = 7; b >= 0; b--)
        hlen = hlen << 8 | (unsigned char)bytes[b];
    char *at = strstr(bytes + 8, "\"shape\":[3,23]");
    ASSERT(at != NULL && (size_t)(at - bytes) < 8 + hlen);
    static const char shape[] = "\"shape\":[3000000000,3000000000]";
    size_t grow = strlen(shape) - strlen("\"shape\":[3,23]");
    char *out = malloc(len + grow);
    ASSERT(out != NULL);
    size_t pre = (size_t)(at - bytes);
    memcpy(out, bytes, pre);
    memcpy(out + pre, shape, strlen(shape));
    memcpy(out + pre + strlen(shape), at + strlen("\"shape\":[3,23]"),
           len - pre - strlen("\"shape\":[3,23]"));
    for (int b = 0; b < 8; b++)
        out[b] = (char)((hlen + grow) >> (8 * b));
    ASSERT_OK(dr_write_file_atomic(bad, out, len + grow, &err), &err);
    ASSERT(rejected(bad, "quality_w", small));
    free(out);
    free(bytes);
    dr_outcomes_free(&t);
    free(text);
}
