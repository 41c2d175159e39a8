/* test_router_contrastive.c - the RouterDC `contrastive` outcome router
 * (router/contrastive.h, router/omodel.h, router type contrastive). */
#include "test.h"

#include "core/util.h"
#include "dynrag/outcomes.h"
#include "dynrag/pipeline.h"
#include "eval/outcomes.h"
#include "nn/safetensors.h"
#include "pipeline/spec.h"
#include "router/omodel.h"
#include "router/router.h"

#include <cjson/cJSON.h>

#define K 4

/*
 * A one-task table where the right option depends on the query, not on a
 * task: each query holds filler words and one key word; key word k is
 * answered by option k (quality 1, or a fraction of 10 samples in
 * [0.7, 1]), the other options are wrong (0, or up to 0.3), except that
 * option 3 ("general") is right on half of every key's queries (those with
 * the filler "please"). With probability `noise` a quality is replaced by
 * a uniform one. Returns the table text (free()).
 */
static char *skill_table(uint64_t seed, size_t n, double noise)
{
    static const char *keys[K] = {"integral", "python", "poem", "weather"};
    static const char *filler[] = {"the", "a", "what", "is", "please", "about", "tell", "me",
                                   "now", "quick", "short", "answer"};
    static const char *opts[K] = {"math", "code", "writer", "general"};
    dr_rng r;
    dr_rng_seed(&r, seed);
    dr_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        int key = (int)dr_rng_below(&r, K);
        size_t nw = 2 + dr_rng_below(&r, 7), at = dr_rng_below(&r, nw + 1);
        bool please = false;
        dr_buf q = {0};
        for (size_t w = 0; w <= nw; w++) {
            const char *word = w == at ? keys[key] : filler[dr_rng_below(&r, 12)];
            please = please || strcmp(word, "please") == 0;
            dr_buf_printf(&q, "%s%s", w ? " " : "", word);
        }
        char id[32];
        snprintf(id, sizeof(id), "c%zu", i);
        dr_buf_puts(&b, "{\"id\":");
        dr_buf_json_str(&b, id);
        dr_buf_puts(&b, ",\"query\":");
        dr_buf_json_str(&b, q.data);
        dr_buf_puts(&b, ",\"task\":\"mixed\",\"outcomes\":{");
        for (int o = 0; o < K; o++) {
            bool right = o == key || (o == 3 && please);
            double qual = right ? (i % 2 ? 1.0 : 0.7 + 0.1 * (double)dr_rng_below(&r, 4))
                                : (i % 2 ? 0.0 : 0.1 * (double)dr_rng_below(&r, 4));
            if (dr_rng_uniform(&r) < noise)
                qual = 0.1 * (double)dr_rng_below(&r, 11);
            dr_buf_printf(&b, "%s\"%s\":{\"quality\":%g}", o ? "," : "", opts[o], qual);
        }
        dr_buf_puts(&b, "}}\n");
        dr_buf_free(&q);
    }
    return dr_buf_take(&b);
}

static int load_text(const char *text, dr_outcome_table *t, dynrag_error *err)
{
    return dr_outcomes_parse("skill.jsonl", text, strlen(text), t, err);
}

/* Mean quality of the option m routes each row of t to (wtp 0). */
static double routed(const dr_omodel *m, const dr_outcome_table *t)
{
    double q[2 * K], sum = 0;
    for (size_t i = 0; i < t->n_rows; i++) {
        dr_omodel_predict(m, t->rows[i].query, q, q + K, NULL);
        sum += t->rows[i].o[dr_omodel_pick(m, q, q + K, 0.0, NULL)].quality;
    }
    return sum / (double)t->n_rows;
}

static double best_single(const dr_outcome_table *t)
{
    double best = 0;
    for (size_t o = 0; o < K; o++) {
        double s = 0;
        for (size_t i = 0; i < t->n_rows; i++)
            s += t->rows[i].o[o].quality;
        best = DR_MAX(best, s / (double)t->n_rows);
    }
    return best;
}

/*
 * Over generated tables with label noise, for the MLP and the linear
 * encoder, with and without the sample-sample loss: the router routes
 * fresh queries far above the best single option and close to the oracle
 * (1 on the noise-free test tables), every score is a cosine in [-1, 1],
 * and with validation rows the reported quality is the routed one.
 */
TEST(router_contrastive_learns_per_query_skill)
{
    static const int hidden[] = {0, -1};
    static const double ss[] = {0, -1};
    for (uint64_t seed = 1; seed <= 2; seed++) {
        char *tr_text = skill_table(seed, 600, 0.1), *te_text = skill_table(seed + 50, 300, 0);
        dr_outcome_table tr, te;
        dynrag_error err = {0};
        ASSERT_OK(load_text(tr_text, &tr, &err), &err);
        ASSERT_OK(load_text(te_text, &te, &err), &err);
        double best1 = best_single(&te);
        for (size_t v = 0; v < 4; v++) {
            dr_omodel_train_opts o = {.kind = "contrastive",
                                      .dim = 128,
                                      .clusters = 4,
                                      .seed = seed,
                                      .hidden = hidden[v % 2],
                                      .ss_weight = ss[v / 2],
                                      .epochs = 15};
            dr_omodel *m = NULL;
            dr_omodel_train_report rep;
            ASSERT_OK(dr_omodel_train(&tr, NULL, 0, &te, NULL, te.n_rows, &o, &m, &rep, &err),
                      &err);
            ASSERT_STR_EQ(dr_omodel_kind(m), "contrastive");
            ASSERT(rep.epochs >= 1 && rep.epochs <= 15);
            /* The cluster prior's weight and shrinkage come from their grids. */
            ASSERT(rep.prior_weight >= 0 && rep.prior_weight <= 8);
            ASSERT(rep.prior_rows == 1 || rep.prior_rows == 10 || rep.prior_rows == 30);
            double rq = routed(m, &te);
            ASSERT_NEAR(rq, rep.valid_quality, 1e-9);
            if (!(rq > 0.9 && rq > best1 + 0.3))
                test_fail_(__FILE__, __LINE__,
                           "seed %llu variant %zu: routed %.4f, best single %.4f",
                           (unsigned long long)seed, v, rq, best1);
            double q[2 * K];
            for (size_t i = 0; i < te.n_rows; i++) {
                ASSERT_OK(dr_omodel_predict(m, te.rows[i].query, q, q + K, &err), &err);
                for (int k = 0; k < K; k++)
                    ASSERT(q[k] >= -1.0 - 1e-9 && q[k] <= 1.0 + 1e-9);
            }
            dr_omodel_free(m);
        }
        dr_outcomes_free(&tr);
        dr_outcomes_free(&te);
        free(tr_text);
        free(te_text);
    }
}

/* Predictions of m for every query of t into q[i * 2K ..]. */
static void predict_all(const dr_omodel *m, const dr_outcome_table *t, double *q)
{
    for (size_t i = 0; i < t->n_rows; i++)
        dr_omodel_predict(m, t->rows[i].query, q + 2 * K * i, q + 2 * K * i + K, NULL);
}

/* Routes every query of t through the generator stage of a pipeline whose
 * router is {type, model}; returns the number of decisions equal to
 * dr_omodel_pick over `pred`, or -1 when the router cannot be created
 * (message in err). */
static long route_agree(const char *type, const char *model, const dr_outcome_table *t,
                        const dr_omodel *m, const double *pred, dynrag_error *err)
{
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: t\nstages:\n  generator:\n    options:\n"
             "      - {name: math, kind: extractive}\n"
             "      - {name: code, kind: extractive}\n"
             "      - {name: writer, kind: extractive}\n"
             "      - {name: general, kind: extractive}\n"
             "    router: {type: %s, params: {model: %s}}\n",
             type, model);
    dynrag_pipeline *p = NULL;
    dynrag_diags *dg = NULL;
    if (dynrag_pipeline_load(test_write_file("c.yaml", yaml), &p, &dg, err) != DYNRAG_OK) {
        dynrag_diags_free(dg);
        return -1;
    }
    dynrag_diags_free(dg);
    dr_router *r = NULL;
    if (dr_router_create(p, &p->stages[DR_STAGE_GENERATOR], &r, err) != DYNRAG_OK) {
        dynrag_pipeline_free(p);
        return -1;
    }
    long agree = 0;
    for (size_t i = 0; i < t->n_rows; i++) {
        dr_route_ctx ctx = {.stage = &p->stages[DR_STAGE_GENERATOR], .query = t->rows[i].query};
        dr_route_decision d;
        if (r->vt->route(r, &ctx, &d, err) != DYNRAG_OK)
            break;
        agree += d.option == dr_omodel_pick(m, pred + 2 * K * i, pred + 2 * K * i + K, 0, NULL);
        if (strncmp(d.reason, "contrastive: ", 13) != 0)
            agree = -1000000;
    }
    dr_router_free(r);
    dynrag_pipeline_free(p);
    return agree;
}

/*
 * Training is deterministic per seed and depends on it; a saved model
 * predicts bit for bit as the trained one; it routes as router type
 * contrastive (and only there); the pipeline validates the router's params
 * with file:line:col.
 */
TEST(router_contrastive_determinism_files_and_pipeline)
{
    char *tr_text = skill_table(7, 400, 0.1), *te_text = skill_table(77, 150, 0);
    dr_outcome_table tr, te;
    dynrag_error err = {0};
    ASSERT_OK(load_text(tr_text, &tr, &err), &err);
    ASSERT_OK(load_text(te_text, &te, &err), &err);
    double *a = malloc(te.n_rows * 2 * K * sizeof(double));
    double *b = malloc(te.n_rows * 2 * K * sizeof(double));
    ASSERT(a != NULL && b != NULL);
    for (int hidden = 0; hidden >= -1; hidden--) {
        dr_omodel_train_opts o = {.kind = "contrastive",
                                  .dim = 64,
                                  .clusters = 3,
                                  .seed = 5,
                                  .hidden = hidden,
                                  .epochs = 6};
        dr_omodel *m = NULL, *m2 = NULL, *m3 = NULL, *ml = NULL;
        dr_omodel_train_report rep;
        ASSERT_OK(dr_omodel_train(&tr, NULL, 0, NULL, NULL, 0, &o, &m, &rep, &err), &err);
        size_t F = 64 + DR_OMODEL_EXTRA + 3 + 1, H = hidden < 0 ? 0 : DR_OMODEL_CTR_HIDDEN;
        size_t D = DR_OMODEL_CTR_DIM;
        ASSERT_EQ(rep.n_params, F * (H ? H : D) + H * D + (H ? D : 0) + K * D + 2 * K);
        ASSERT_EQ(rep.epochs, 6); /* without validation rows: the last epoch */
        predict_all(m, &te, a);
        ASSERT_OK(dr_omodel_train(&tr, NULL, 0, NULL, NULL, 0, &o, &m2, NULL, &err), &err);
        predict_all(m2, &te, b);
        ASSERT(memcmp(a, b, te.n_rows * 2 * K * sizeof(double)) == 0);
        o.seed = 6;
        ASSERT_OK(dr_omodel_train(&tr, NULL, 0, NULL, NULL, 0, &o, &m3, NULL, &err), &err);
        predict_all(m3, &te, b);
        ASSERT(memcmp(a, b, te.n_rows * 2 * K * sizeof(double)) != 0);
        char path[1024];
        snprintf(path, sizeof(path), "%s/c%d.safetensors", test_tmpdir(), -hidden);
        ASSERT_OK(dr_omodel_save(m, path, &err), &err);
        ASSERT_OK(dr_omodel_load(path, &ml, &err), &err);
        ASSERT_STR_EQ(dr_omodel_kind(ml), "contrastive");
        ASSERT_CONTAINS(dr_omodel_provenance(ml), "\"rows\":400");
        predict_all(ml, &te, b);
        ASSERT(memcmp(a, b, te.n_rows * 2 * K * sizeof(double)) == 0);
        ASSERT_EQ(route_agree("contrastive", path, &te, ml, a, &err), (long)te.n_rows);
        ASSERT_EQ(route_agree("predict", path, &te, ml, a, &err), -1);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "is a contrastive model, the router type is predict");
        dr_omodel_free(m);
        dr_omodel_free(m2);
        dr_omodel_free(m3);
        dr_omodel_free(ml);
    }
    /* Params are validated by the schema, with their position. */
    const char *bad = "version: 1\nname: t\nstages:\n  generator:\n    options:\n"
                      "      - {name: math, kind: extractive}\n"
                      "    router: {type: contrastive, params: {model: c0.safetensors,\n"
                      "             willingness_to_pay: -1, tau: 2}}\n";
    dynrag_pipeline *p = NULL;
    dynrag_diags *dg = NULL;
    ASSERT(dynrag_pipeline_load(test_write_file("bad.yaml", bad), &p, &dg, &err) < 0);
    char *diag = dg ? dynrag_diags_format(dg) : NULL;
    ASSERT_CONTAINS(diag, "bad.yaml:8:");
    ASSERT_CONTAINS(diag, "willingness_to_pay");
    ASSERT_CONTAINS(diag, "router.params.tau: unknown key");
    free(diag);
    dynrag_diags_free(dg);
    const char *nomodel = "version: 1\nname: t\nstages:\n  generator:\n    options:\n"
                          "      - {name: math, kind: extractive}\n"
                          "    router: {type: contrastive}\n";
    dg = NULL;
    ASSERT(dynrag_pipeline_load(test_write_file("nomodel.yaml", nomodel), &p, &dg, &err) < 0);
    diag = dg ? dynrag_diags_format(dg) : NULL;
    ASSERT_CONTAINS(diag, "nomodel.yaml:7:");
    ASSERT_CONTAINS(diag, "model");
    free(diag);
    dynrag_diags_free(dg);
    free(a);
    free(b);
    dr_outcomes_free(&tr);
    dr_outcomes_free(&te);
    free(tr_text);
    free(te_text);
}

/*
 * Rewrites the model file `src` to `dst` with its config replaced by
 * `config` (NULL: kept) and, when `poison` names a tensor, its element
 * `at` set to NAN; drops tensor `drop` (NULL: none).
 */
static void rewrite(const char *src, const char *dst, const char *config, const char *poison,
                    const char *drop)
{
    dynrag_error err = {0};
    dr_st_file *f = NULL;
    ASSERT_OK(dr_st_open(src, &f, &err), &err);
    dr_st_writer *w = dr_st_writer_new();
    ASSERT(w != NULL);
    static const char *keys[] = {"format", "format_version", "config", "provenance"};
    for (size_t i = 0; i < DR_ARRAY_LEN(keys); i++) {
        const char *v = i == 2 && config != NULL ? config : dr_st_meta(f, keys[i]);
        ASSERT_OK(dr_st_writer_meta(w, keys[i], v, &err), &err);
    }
    size_t n = dr_st_count(f);
    float **bufs = calloc(n, sizeof(float *));
    ASSERT(bufs != NULL);
    for (size_t i = 0; i < n; i++) {
        const dr_st_tensor *t = dr_st_at(f, i);
        if (drop != NULL && strcmp(t->name, drop) == 0)
            continue;
        bufs[i] = malloc(t->numel * sizeof(float) + 1);
        ASSERT(bufs[i] != NULL);
        ASSERT_OK(dr_st_read_f32(f, t->name, t->ndim, t->shape, bufs[i], &err), &err);
        if (poison != NULL && strcmp(t->name, poison) == 0)
            bufs[i][t->numel / 2] = NAN;
        ASSERT_OK(dr_st_writer_add_f32(w, t->name, t->ndim, t->shape, bufs[i], &err), &err);
    }
    ASSERT_OK(dr_st_writer_save(w, dst, &err), &err);
    dr_st_writer_free(w);
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    dr_st_close(f);
}

/*
 * A damaged model file is refused with a message naming the file and the
 * field: every contrastive config key out of range, a missing or mis-shaped
 * encoder tensor, a non-finite weight in each tensor; the untouched
 * rewrite loads (so the rewriting itself is sound).
 */
TEST(router_contrastive_rejects_damaged_files)
{
    char *tr_text = skill_table(9, 200, 0.1);
    dr_outcome_table tr;
    dynrag_error err = {0};
    ASSERT_OK(load_text(tr_text, &tr, &err), &err);
    dr_omodel_train_opts o = {.kind = "contrastive", .dim = 32, .clusters = 2, .epochs = 2};
    dr_omodel *m = NULL;
    ASSERT_OK(dr_omodel_train(&tr, NULL, 0, NULL, NULL, 0, &o, &m, NULL, &err), &err);
    char good[1024], bad[1024];
    snprintf(good, sizeof(good), "%s/good.safetensors", test_tmpdir());
    snprintf(bad, sizeof(bad), "%s/bad.safetensors", test_tmpdir());
    ASSERT_OK(dr_omodel_save(m, good, &err), &err);
    dr_omodel_free(m);
    m = NULL;
    rewrite(good, bad, NULL, NULL, NULL);
    ASSERT_OK(dr_omodel_load(bad, &m, &err), &err);
    dr_omodel_free(m);
    m = NULL;
    /* Config keys. */
    dr_st_file *f = NULL;
    ASSERT_OK(dr_st_open(good, &f, &err), &err);
    char *cfg_text = dr_strdup(dr_st_meta(f, "config"));
    dr_st_close(f);
    static const struct {
        const char *key;
        double value;
        const char *msg;
    } cfg_cases[] = {
        {"hidden", -1, "config.hidden"},      {"hidden", 5000, "config.hidden"},
        {"hidden", 64, "enc_w1"},             {"hidden", 2.5, "config.hidden"},
        {"embed_dim", 1, "config.embed_dim"}, {"embed_dim", 16, "option_emb"},
        {"tau", 0, "config.tau"},             {"tau", NAN, "config.tau"},
        {"prior_weight", -1, "config.prior_weight"}, {"prior_rows", NAN, "config.prior_rows"},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(cfg_cases); i++) {
        cJSON *cfg = cJSON_Parse(cfg_text);
        ASSERT(cfg != NULL);
        cJSON_ReplaceItemInObject(cfg, cfg_cases[i].key,
                                  isnan(cfg_cases[i].value)
                                      ? cJSON_CreateString("x")
                                      : cJSON_CreateNumber(cfg_cases[i].value));
        char *text = cJSON_PrintUnformatted(cfg);
        rewrite(good, bad, text, NULL, NULL);
        int rc = dr_omodel_load(bad, &m, &err);
        if (rc == DYNRAG_OK)
            test_fail_(__FILE__, __LINE__, "config %s=%g loaded", cfg_cases[i].key,
                       cfg_cases[i].value);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.safetensors");
        ASSERT_CONTAINS(dynrag_errmsg(&err), cfg_cases[i].msg);
        free(text);
        cJSON_Delete(cfg);
    }
    cJSON *cfg = cJSON_Parse(cfg_text);
    cJSON_DeleteItemFromObject(cfg, "tau");
    char *text = cJSON_PrintUnformatted(cfg);
    rewrite(good, bad, text, NULL, NULL);
    ASSERT(dr_omodel_load(bad, &m, &err) < 0);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "config.tau");
    free(text);
    cJSON_Delete(cfg);
    /* Tensors. */
    static const char *tensors[] = {"enc_w1", "enc_w2", "enc_b2", "option_emb"};
    for (size_t i = 0; i < DR_ARRAY_LEN(tensors); i++) {
        rewrite(good, bad, NULL, tensors[i], NULL);
        ASSERT(dr_omodel_load(bad, &m, &err) < 0);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.safetensors");
        ASSERT_CONTAINS(dynrag_errmsg(&err), tensors[i]);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "not finite");
        rewrite(good, bad, NULL, NULL, tensors[i]);
        ASSERT(dr_omodel_load(bad, &m, &err) < 0);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.safetensors");
        ASSERT_CONTAINS(dynrag_errmsg(&err), tensors[i]);
    }
    free(cfg_text);
    dr_outcomes_free(&tr);
    free(tr_text);
}

/* `dynrag router train --kind contrastive` and the API without --valid
 * (the epoch is chosen on the fixed inner split, then a refit on all). */
TEST(router_contrastive_train_cli)
{
    char *text = skill_table(11, 300, 0.05);
    char train[1024], model[1024], cmd[4096];
    snprintf(train, sizeof(train), "%s", test_write_file("train.jsonl", text));
    snprintf(model, sizeof(model), "%s/cli.safetensors", test_tmpdir());
    snprintf(cmd, sizeof(cmd),
             "%s router train --kind contrastive --data %s --out %s --dim 128 --clusters 4",
             test_cli_path(), train, model);
    char *out = NULL;
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "contrastive router, 4 options");
    free(out);
    dr_omodel *m = NULL;
    dynrag_error err = {0};
    ASSERT_OK(dr_omodel_load(model, &m, &err), &err);
    ASSERT_STR_EQ(dr_omodel_kind(m), "contrastive");
    dr_outcome_table t;
    ASSERT_OK(load_text(text, &t, &err), &err);
    ASSERT_GT(routed(m, &t), 0.85);
    dr_omodel_free(m);
    /* --hidden 0: the linear projection (config.hidden 0), also routing well. */
    snprintf(cmd, sizeof(cmd),
             "%s router train --kind contrastive --data %s --out %s --dim 128 --clusters 4 "
             "--hidden 0",
             test_cli_path(), train, model);
    ASSERT_EQ(test_run(cmd, &out), 0);
    free(out);
    dr_st_file *f = NULL;
    ASSERT_OK(dr_st_open(model, &f, &err), &err);
    ASSERT_CONTAINS(dr_st_meta(f, "config"), "\"hidden\":0,");
    ASSERT(dr_st_find(f, "enc_w2") == NULL);
    dr_st_close(f);
    m = NULL;
    ASSERT_OK(dr_omodel_load(model, &m, &err), &err);
    ASSERT_GT(routed(m, &t), 0.85);
    dr_omodel_free(m);
    snprintf(cmd, sizeof(cmd),
             "%s router train --kind contrastive --data %s --out %s --hidden 2000",
             test_cli_path(), train, model);
    ASSERT_EQ(test_run(cmd, &out), 2);
    ASSERT_CONTAINS(out, "--hidden");
    free(out);
    dr_outcomes_free(&t);
    free(text);
}
