/* test_router_kinds.c - the neighbour-based outcome routers: the kNN
 * predictor (`predict` with method knn) and the Bradley-Terry `preference`
 * router (router/onbr.h, router/omodel.h, router/predict_router.c). */
#include "test.h"

#include "core/util.h"
#include "dynrag/outcomes.h"
#include "dynrag/pipeline.h"
#include "eval/outcomes.h"
#include "pipeline/spec.h"
#include "router/omodel.h"
#include "router/onbr.h"
#include "router/router.h"

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
