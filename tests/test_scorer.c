/* test_scorer.c - the trained answer-scorer judge (router/scorer.h): training,
 * files, the cascade judge in outcome replay and live, and the shaped
 * rewards of bandits replayed over outcome tables. */
#include "test.h"
#include "test_net_util.h"

#include "core/util.h"
#include "dynrag/engine.h"
#include "dynrag/eval.h"
#include "dynrag/outcomes.h"
#include "dynrag/pipeline.h"
#include "eval/outcomes.h"
#include "nn/safetensors.h"
#include "router/scorer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

/* Words of a multiple-choice line: the right choice's word is in the
 * first half, the wrong one's in the second. */
static const char *const right_words[] = {"sun", "lava", "fire", "oven", "desert", "steam"};
static const char *const wrong_words[] = {"ice", "snow", "frost", "glacier", "winter", "hail"};

/*
 * Writes an outcome table of n multiple-choice rows (ids "<prefix>N") with
 * options "m1" (answers a bare letter) and "org/m2" (answers "The answer is
 * X"), each picking A or B at random: quality 1 when the picked line's word
 * is a right word. Every kth response (k = refuse_every, 0: none) of m1 is
 * "unanswerable" (quality 0). Only the choice line the letter names tells a
 * right answer from a wrong one. Returns the text (caller frees).
 */
static char *choice_table(uint64_t seed, size_t n, const char *prefix, size_t refuse_every)
{
    dr_rng r;
    dr_rng_seed(&r, seed);
    dr_buf b = {0};
    static const char *const opts[] = {"m1", "org/m2"};
    for (size_t i = 0; i < n; i++) {
        int right_is_a = (int)dr_rng_below(&r, 2);
        const char *rw = right_words[dr_rng_below(&r, DR_ARRAY_LEN(right_words))];
        const char *ww = wrong_words[dr_rng_below(&r, DR_ARRAY_LEN(wrong_words))];
        dr_buf_printf(&b,
                      "{\"id\": \"%s%zu\", \"query\": \"Which one is hot? (%zu)\\nA) %s\\nB) "
                      "%s\\nAnswer:\", \"task\": \"t%zu\", \"outcomes\": {",
                      prefix, i, i, right_is_a ? rw : ww, right_is_a ? ww : rw, i % 2);
        for (size_t o = 0; o < 2; o++) {
            int pick_a = (int)dr_rng_below(&r, 2);
            bool refuse = o == 0 && refuse_every > 0 && i % refuse_every == 0;
            double q = refuse ? 0 : pick_a == right_is_a;
            char resp[64];
            if (refuse)
                snprintf(resp, sizeof resp, "unanswerable");
            else
                snprintf(resp, sizeof resp, o == 0 ? "%c" : "The answer is %c", pick_a ? 'A' : 'B');
            dr_buf_printf(&b, "%s\"%s\": {\"quality\": %g, \"cost_usd\": %g, \"response\": \"%s\"}",
                          o ? ", " : "", opts[o], q, 0.001 * (double)(o + 1), resp);
        }
        dr_buf_puts(&b, "}}\n");
    }
    return dr_buf_take(&b);
}

static void parse_table(const char *text, dr_outcome_table *t)
{
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dr_outcomes_parse("gen.jsonl", text, strlen(text), t, &err), &err);
}

/* The AUC of scorer s over every response of t. */
static double table_auc(const dr_scorer *s, const dr_outcome_table *t)
{
    size_t n = 0;
    double *p = calloc(t->n_rows * t->n_options + 1, sizeof *p);
    double *y = calloc(t->n_rows * t->n_options + 1, sizeof *y);
    for (size_t i = 0; i < t->n_rows; i++)
        for (size_t o = 0; o < t->n_options; o++) {
            const dr_outcome *oc = &t->rows[i].o[o];
            if (!oc->present || oc->response == NULL)
                continue;
            p[n] = dr_scorer_score(s, t->rows[i].query, t->options[o], oc->response);
            y[n] = oc->quality;
            n++;
        }
    double auc = dr_scorer_auc(p, y, n);
    free(p);
    free(y);
    return auc;
}

TEST(scorer_auc_hand_values)
{
    const double p1[] = {0.1, 0.4, 0.35, 0.8}, y1[] = {0, 0, 1, 1};
    ASSERT_NEAR(dr_scorer_auc(p1, y1, 4), 0.75, 1e-12);
    const double p2[] = {0.5, 0.5, 0.5}, y2[] = {1, 0, 1};
    ASSERT_NEAR(dr_scorer_auc(p2, y2, 3), 0.5, 1e-12); /* ties count one half */
    const double y3[] = {1, 1, 1};
    ASSERT(isnan(dr_scorer_auc(p2, y3, 3)));
    /* Property: AUC(p) + AUC(-p) = 1 and a monotone transform keeps it. */
    dr_rng r;
    dr_rng_seed(&r, 5);
    for (int it = 0; it < 50; it++) {
        double p[40], q[40], e[40], y[40];
        size_t n = 2 + (size_t)dr_rng_below(&r, 38);
        for (size_t i = 0; i < n; i++) {
            p[i] = (double)dr_rng_below(&r, 10) / 10;
            q[i] = -p[i];
            e[i] = exp(3 * p[i]);
            y[i] = (double)dr_rng_below(&r, 2);
        }
        y[0] = 0;
        y[1] = 1;
        double a = dr_scorer_auc(p, y, n);
        ASSERT(a >= 0 && a <= 1);
        ASSERT_NEAR(a + dr_scorer_auc(q, y, n), 1.0, 1e-12);
        ASSERT_NEAR(dr_scorer_auc(e, y, n), a, 1e-12);
    }
}

/*
 * Invariants over generated tables: the scorer learns the query/answer
 * interaction (only the choice line the answer names predicts correctness,
 * so a held-out AUC near 1 needs it); scores lie in [0, 1]; training is
 * deterministic per seed; a saved model scores exactly as the trained one.
 */
TEST(scorer_learns_the_query_answer_interaction)
{
    for (uint64_t seed = 1; seed <= 3; seed++) {
        char *tr_text = choice_table(seed, 240, "tr", 0);
        char *te_text = choice_table(seed + 100, 120, "te", 0);
        dr_outcome_table tr = {0}, te = {0};
        parse_table(tr_text, &tr);
        parse_table(te_text, &te);
        dr_scorer_train_opts o = {.lambda = 0, .seed = seed, .data_desc = "[\"gen\"]"};
        dr_scorer *s = NULL, *s2 = NULL, *back = NULL;
        dr_scorer_train_report rep;
        dynrag_error err;
        dynrag_error_clear(&err);
        ASSERT_OK(dr_scorer_train(&tr, NULL, 0, &te, NULL, te.n_rows, &o, &s, &rep, &err), &err);
        ASSERT_EQ(rep.examples, 480);
        ASSERT_EQ(rep.valid_examples, 240);
        ASSERT_GT(rep.valid_auc, 0.95);
        ASSERT_NEAR(table_auc(s, &te), rep.valid_auc, 1e-9);
        ASSERT_OK(dr_scorer_train(&tr, NULL, 0, &te, NULL, te.n_rows, &o, &s2, &rep, &err), &err);
        char path[1024];
        snprintf(path, sizeof path, "%s/scorer%d.safetensors", test_tmpdir(), (int)seed);
        ASSERT_OK(dr_scorer_save(s, path, &err), &err);
        ASSERT_OK(dr_scorer_load(path, &back, &err), &err);
        for (size_t i = 0; i < te.n_rows; i++)
            for (size_t k = 0; k < te.n_options; k++) {
                const char *resp = te.rows[i].o[k].response;
                double p = dr_scorer_score(s, te.rows[i].query, te.options[k], resp);
                ASSERT(p >= 0 && p <= 1);
                ASSERT(p == dr_scorer_score(s2, te.rows[i].query, te.options[k], resp));
                ASSERT(p == dr_scorer_score(back, te.rows[i].query, te.options[k], resp));
            }
        /* Unknown options, NULL and empty strings are scored, not rejected. */
        double p = dr_scorer_score(back, NULL, "no-such-option", NULL);
        ASSERT(p >= 0 && p <= 1);
        p = dr_scorer_score(back, "", NULL, "");
        ASSERT(p >= 0 && p <= 1);
        dr_scorer_free(s);
        dr_scorer_free(s2);
        dr_scorer_free(back);
        dr_outcomes_free(&tr);
        dr_outcomes_free(&te);
        free(tr_text);
        free(te_text);
    }
    dr_scorer_free(NULL);
}

/* The public trainer: kind scorer writes a loadable model with provenance;
 * tables without both right and wrong recorded answers are refused. */
TEST(scorer_train_api_and_errors)
{
    char *text = choice_table(7, 200, "q", 0);
    const char *data = test_write_file("scorer_train.jsonl", text);
    char model[1024];
    snprintf(model, sizeof model, "%s/api_scorer.safetensors", test_tmpdir());
    const char *files[] = {data};
    dynrag_outcome_router_options o;
    dynrag_outcome_router_options_init(&o);
    o.kind = "scorer";
    o.data = files;
    o.n_data = 1;
    o.out_path = model;
    o.seed = 3;
    dynrag_outcome_router_result res;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_outcome_router_train(&o, &res, &err), &err);
    ASSERT_EQ(res.rows, 200);
    ASSERT_EQ(res.n_options, 2);
    ASSERT_GT(res.valid_rows, 0); /* the inner 15% chose the penalty */
    ASSERT(res.valid_quality > 0.5 && res.valid_quality <= 1);
    ASSERT(res.train_quality > 0.5 && res.train_quality <= 1);
    dr_scorer *s = NULL;
    ASSERT_OK(dr_scorer_load(model, &s, &err), &err);
    dr_scorer_free(s);
    char *file = NULL;
    size_t len = 0;
    ASSERT_OK(dr_read_file(model, 1 << 24, &file, &len, &err), &err);
    ASSERT(len > 8);
    ASSERT_CONTAINS(file + 8, "valid_auc"); /* the header's metadata */
    ASSERT_CONTAINS(file + 8, "dynrag-answer-scorer");
    free(file);
    free(text);

    /* No responses: nothing to learn from. */
    const char *bare = test_write_file(
        "bare.jsonl", "{\"id\": \"a\", \"query\": \"q\", \"outcomes\": {\"m\": {\"quality\": 1}}}\n"
                      "{\"id\": \"b\", \"query\": \"r\", \"outcomes\": {\"m\": {\"quality\": 0}}}\n");
    files[0] = bare;
    ASSERT_EQ(dynrag_outcome_router_train(&o, &res, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "response");
    /* All answers right: a scorer needs both. */
    const char *allright = test_write_file(
        "allright.jsonl",
        "{\"id\": \"a\", \"query\": \"q\", \"outcomes\": {\"m\": {\"quality\": 1, \"response\": "
        "\"x\"}}}\n");
    files[0] = allright;
    ASSERT_EQ(dynrag_outcome_router_train(&o, &res, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "both correct and wrong");
}

/* Corrupt or foreign files are rejected with the path and the field. */
TEST(scorer_load_rejects_bad_files)
{
    dynrag_error err;
    dynrag_error_clear(&err);
    dr_scorer *s = NULL;
    char missing[1024];
    snprintf(missing, sizeof missing, "%s/nope.safetensors", test_tmpdir());
    ASSERT(dr_scorer_load(missing, &s, &err) != DYNRAG_OK && s == NULL);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "nope.safetensors");
    const char *junk = test_write_file("junk.safetensors", "this is not a safetensors file");
    ASSERT(dr_scorer_load(junk, &s, &err) != DYNRAG_OK && s == NULL);
    /* A valid model, then every truncation and a sample of byte flips:
     * either rejected or loaded whole (never a crash). */
    char *text = choice_table(9, 60, "q", 0);
    dr_outcome_table t = {0};
    parse_table(text, &t);
    dr_scorer_train_opts o = {.lambda = 0.1, .seed = 1};
    dr_scorer *m = NULL;
    ASSERT_OK(dr_scorer_train(&t, NULL, 0, NULL, NULL, 0, &o, &m, NULL, &err), &err);
    char good[1024], bad[1024];
    snprintf(good, sizeof good, "%s/good.safetensors", test_tmpdir());
    snprintf(bad, sizeof bad, "%s/bad.safetensors", test_tmpdir());
    ASSERT_OK(dr_scorer_save(m, good, &err), &err);
    char *bytes = NULL;
    size_t len = 0;
    ASSERT_OK(dr_read_file(good, 1 << 24, &bytes, &len, &err), &err);
    /* The header: metadata and the tensor table. */
    uint64_t hlen = 0;
    memcpy(&hlen, bytes, sizeof hlen);
    ASSERT(hlen > 0 && hlen + 8 < len);
    dr_rng r;
    dr_rng_seed(&r, 11);
    for (int it = 0; it < 60; it++) {
        size_t n = len;
        char *copy = malloc(len);
        memcpy(copy, bytes, len);
        if (it < 20) {
            n = (size_t)dr_rng_below(&r, hlen + 8);
        } else {
            size_t at = 8 + (size_t)dr_rng_below(&r, hlen);
            copy[at] = (char)(copy[at] ^ (1 + dr_rng_below(&r, 255)));
        }
        ASSERT_OK(dr_write_file_atomic(bad, copy, n, &err), &err);
        free(copy);
        dr_scorer *x = NULL;
        int rc = dr_scorer_load(bad, &x, &err);
        if (rc == DYNRAG_OK) {
            double p = dr_scorer_score(x, "q", "m1", "A");
            ASSERT(p >= 0 && p <= 1);
            dr_scorer_free(x);
        } else {
            ASSERT(x == NULL);
            ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.safetensors");
        }
    }
    /* A non-finite weight. */
    float nan_f = NAN;
    memcpy(bytes + 8 + hlen + 4 * 123, &nan_f, sizeof nan_f);
    ASSERT_OK(dr_write_file_atomic(bad, bytes, len, &err), &err);
    ASSERT_EQ(dr_scorer_load(bad, &s, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "not finite");
    free(bytes);
    dr_scorer_free(m);
    dr_outcomes_free(&t);
    free(text);
}

/* A count in the config must be an integer: "epochs": 6.5 used to load as
 * 6 (found while writing fuzz/fuzz_router_model.c); 6 still loads. */
TEST(scorer_load_rejects_fractional_epochs)
{
    dynrag_error err;
    dynrag_error_clear(&err);
    char *text = choice_table(9, 30, "q", 0);
    dr_outcome_table t = {0};
    parse_table(text, &t);
    dr_scorer_train_opts o = {.lambda = 0.1, .seed = 1};
    dr_scorer *m = NULL;
    ASSERT_OK(dr_scorer_train(&t, NULL, 0, NULL, NULL, 0, &o, &m, NULL, &err), &err);
    char good[1024], bad[1024];
    snprintf(good, sizeof good, "%s/good.safetensors", test_tmpdir());
    snprintf(bad, sizeof bad, "%s/bad.safetensors", test_tmpdir());
    ASSERT_OK(dr_scorer_save(m, good, &err), &err);
    dr_scorer_free(m);
    static const double epochs[] = {6.5, 6};
    for (size_t i = 0; i < 2; i++) {
        dr_st_file *f = NULL;
        ASSERT_OK(dr_st_open(good, &f, &err), &err);
        cJSON *cfg = cJSON_Parse(dr_st_meta(f, "config"));
        ASSERT(cfg != NULL);
        cJSON_ReplaceItemInObject(cfg, "epochs", cJSON_CreateNumber(epochs[i]));
        char *cfg_text = cJSON_PrintUnformatted(cfg);
        dr_st_writer *w = dr_st_writer_new();
        float *wt = malloc(DR_SCORER_BUCKETS * sizeof(float));
        uint64_t shape[1] = {DR_SCORER_BUCKETS};
        ASSERT(w != NULL && wt != NULL && cfg_text != NULL);
        ASSERT_OK(dr_st_read_f32(f, "w", 1, shape, wt, &err), &err);
        ASSERT_OK(dr_st_writer_meta(w, "format", dr_st_meta(f, "format"), &err), &err);
        ASSERT_OK(dr_st_writer_meta(w, "format_version", "1", &err), &err);
        ASSERT_OK(dr_st_writer_meta(w, "config", cfg_text, &err), &err);
        ASSERT_OK(dr_st_writer_add_f32(w, "w", 1, shape, wt, &err), &err);
        ASSERT_OK(dr_st_writer_save(w, bad, &err), &err);
        dr_st_writer_free(w);
        free(wt);
        free(cfg_text);
        cJSON_Delete(cfg);
        dr_st_close(f);
        dr_scorer *x = NULL;
        int rc = dr_scorer_load(bad, &x, &err);
        if (i == 0) {
            ASSERT_EQ(rc, DYNRAG_ERR_FORMAT);
            ASSERT(x == NULL);
            ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.safetensors: config.lambda/epochs");
        } else {
            ASSERT_OK(rc, &err);
            double p = dr_scorer_score(x, "Which one is hot?\nA) sun\nB) ice", "m1", "A");
            ASSERT(p >= 0 && p <= 1);
            dr_scorer_free(x);
        }
    }
    dr_outcomes_free(&t);
    free(text);
}

/* ---- the judge in outcome replay ---------------------------------------------------- */

static const char *scorer_pipeline(const char *name, const char *params)
{
    char *yaml = dr_asprintf("version: 1\nname: sc\nendpoints:\n  llm: {base_url: \"\", model: "
                             "\"\"}\nstages:\n  generator:\n    options:\n"
                             "      - {name: m1, kind: openai, endpoint: llm}\n"
                             "      - {name: org/m2, kind: openai, endpoint: llm}\n"
                             "    router:\n      type: cascade\n      params: {%s}\n",
                             params);
    const char *path = test_write_file(name, yaml);
    free(yaml);
    return path;
}

static cJSON *read_json_file(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    dynrag_error err;
    if (dr_read_file(path, 1 << 26, &text, &len, &err) != DYNRAG_OK)
        return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

/*
 * Invariant: a cascade judged by the scorer, replayed over recorded
 * responses, stops at m1 exactly when the scorer gives m1's recorded
 * answer to that query a probability >= threshold (a refusal always
 * escalates); it pays for every call; and a higher threshold never calls
 * fewer options for any query.
 */
TEST(eval_outcomes_scorer_cascade_invariants)
{
    dynrag_error err;
    dynrag_error_clear(&err);
    char *tr_text = choice_table(21, 200, "tr", 0);
    dr_outcome_table tr = {0};
    parse_table(tr_text, &tr);
    dr_scorer_train_opts so = {.lambda = 0.01, .seed = 2};
    dr_scorer *s = NULL;
    ASSERT_OK(dr_scorer_train(&tr, NULL, 0, NULL, NULL, 0, &so, &s, NULL, &err), &err);
    char model[1024];
    snprintf(model, sizeof model, "%s/replay_scorer.safetensors", test_tmpdir());
    ASSERT_OK(dr_scorer_save(s, model, &err), &err);
    char *te_text = choice_table(22, 80, "te", 5);
    char te_path[1024]; /* test_write_file's buffer is reused */
    snprintf(te_path, sizeof te_path, "%s", test_write_file("replay_te.jsonl", te_text));
    dr_outcome_table te = {0};
    parse_table(te_text, &te);
    int m1 = dr_outcomes_option(&te, "m1"), m2 = dr_outcomes_option(&te, "org/m2");
    ASSERT(m1 >= 0 && m2 >= 0);
    dr_rng r;
    dr_rng_seed(&r, 4);
    int prev_calls[80];
    size_t escalated_total = 0, kept_total = 0;
    double thr = 0;
    for (int it = 0; it < 8; it++) {
        thr = it == 0 ? 0 : fmin(1.0, thr + 0.25 * dr_rng_uniform(&r));
        char params[1200], name[32], out[1024];
        snprintf(params, sizeof params, "judge: scorer, model: '%s', threshold: %.17g", model, thr);
        snprintf(name, sizeof name, "sc%d.yaml", it);
        snprintf(out, sizeof out, "%s/sc_out%d", test_tmpdir(), it);
        dynrag_eval_outcomes_options o;
        dynrag_eval_outcomes_options_init(&o);
        o.pipeline_path = scorer_pipeline(name, params);
        o.outcomes_path = te_path;
        o.out_dir = out;
        o.sweep_param = "none";
        ASSERT_OK(dynrag_eval_outcomes(&o, NULL, NULL, &err), &err);
        char rp[1100];
        snprintf(rp, sizeof rp, "%s/report.json", out);
        cJSON *rep = read_json_file(rp);
        ASSERT(rep != NULL);
        const cJSON *pq = cJSON_GetObjectItemCaseSensitive(rep, "per_query");
        ASSERT_EQ(cJSON_GetArraySize(pq), (int)te.n_rows);
        for (size_t q = 0; q < te.n_rows; q++) {
            const cJSON *e = cJSON_GetArrayItem(pq, (int)q);
            const dr_outcome *a = &te.rows[q].o[m1], *b = &te.rows[q].o[m2];
            double p = strcmp(a->response, "unanswerable") == 0
                           ? 0
                           : dr_scorer_score(s, te.rows[q].query, "m1", a->response);
            bool esc = p < thr;
            int calls = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(e, "calls"));
            ASSERT_EQ(calls, esc ? 2 : 1);
            ASSERT_STR_EQ(cJSON_GetObjectItemCaseSensitive(e, "choice")->valuestring,
                          esc ? "org/m2" : "m1");
            ASSERT_NEAR(cJSON_GetObjectItemCaseSensitive(e, "cost_usd")->valuedouble,
                        a->cost_usd + (esc ? b->cost_usd : 0), 1e-12);
            ASSERT_NEAR(cJSON_GetObjectItemCaseSensitive(e, "quality")->valuedouble,
                        esc ? b->quality : a->quality, 1e-12);
            if (it > 0)
                ASSERT(calls >= prev_calls[q]);
            prev_calls[q] = calls;
            escalated_total += esc;
            kept_total += !esc;
        }
        cJSON_Delete(rep);
    }
    ASSERT_GT(escalated_total, 0);
    ASSERT_GT(kept_total, 0);
    dr_scorer_free(s);
    dr_outcomes_free(&tr);
    dr_outcomes_free(&te);
    free(tr_text);
    free(te_text);
}

/* The cascade's scorer params are checked with the field named. */
TEST(cascade_scorer_params_are_validated)
{
    dynrag_error err;
    dynrag_error_clear(&err);
    char *text = choice_table(3, 40, "q", 0);
    char table[1024];
    snprintf(table, sizeof table, "%s", test_write_file("val_te.jsonl", text));
    free(text);
    char model[1024];
    snprintf(model, sizeof model, "%s/val_scorer.safetensors", test_tmpdir());
    {
        dr_outcome_table t = {0};
        char *tt = choice_table(4, 60, "t", 0);
        parse_table(tt, &t);
        dr_scorer_train_opts so = {.lambda = 0.1, .seed = 1};
        dr_scorer *s = NULL;
        ASSERT_OK(dr_scorer_train(&t, NULL, 0, NULL, NULL, 0, &so, &s, NULL, &err), &err);
        ASSERT_OK(dr_scorer_save(s, model, &err), &err);
        dr_scorer_free(s);
        dr_outcomes_free(&t);
        free(tt);
    }
    char foreign[1024];
    snprintf(foreign, sizeof foreign, "%s", test_write_file("foreign.safetensors", "garbage"));
    struct {
        const char *params, *want;
    } cases[] = {
        {"judge: scorer, threshold: 0.5", "stages.generator.router.model"},
        {"judge: agreement, model: '@M@'", "only judge 'scorer' reads a model"},
        {"judge: scorer, model: '@F@'", "stages.generator.router.model"},
        {"judge: scorer, model: '@M@', threshold: 1.5", "threshold"},
        {"judge: scorer, model: '@M@', threshold: -0.1", "threshold"},
        {"judge: scorer, model: '@D@/absent.safetensors'", "absent.safetensors"},
        {"judge: scorerx, model: '@M@'", "judge"},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(cases); i++) {
        dr_buf b = {0};
        for (const char *p = cases[i].params; *p;) {
            if (strncmp(p, "@M@", 3) == 0 || strncmp(p, "@F@", 3) == 0 ||
                strncmp(p, "@D@", 3) == 0) {
                dr_buf_puts(&b, p[1] == 'M' ? model : p[1] == 'F' ? foreign : test_tmpdir());
                p += 3;
            } else {
                dr_buf_append(&b, p++, 1);
            }
        }
        char name[32];
        snprintf(name, sizeof name, "val%zu.yaml", i);
        dynrag_eval_outcomes_options o;
        dynrag_eval_outcomes_options_init(&o);
        o.pipeline_path = scorer_pipeline(name, b.data);
        o.outcomes_path = table;
        o.sweep_param = "none";
        int rc = dynrag_eval_outcomes(&o, NULL, NULL, &err);
        if (rc == DYNRAG_OK)
            test_fail_(__FILE__, __LINE__, "case %zu (%s) was accepted", i, b.data);
        ASSERT_CONTAINS(dynrag_errmsg(&err), cases[i].want);
        dr_buf_free(&b);
    }
}

/* ---- bandits replayed over outcome tables learn the shaped reward ----------------- */

/*
 * Invariant: a bandit replayed over an outcome table learns from what live
 * feedback would give it, not from the raw quality: option "dear" is always
 * right but costs $0.01 and takes 900-1100 ms, "cheap" is right 70% of the
 * time, free and fast. Unshaped (lambda 0, no SLA), the bandit settles on
 * dear; with lambda 100 (dear's reward 1 - 1 = 0) or with sla_ms 500 (dear
 * overshoots by 80-120%) it settles on cheap.
 */
TEST(eval_outcomes_bandit_reward_is_shaped)
{
    static const char *const shapes[] = {"lambda: 0", "lambda: 100",
                                         "sla_ms: 500, sla_penalty: 1"};
    for (uint64_t seed = 1; seed <= 3; seed++) {
        dr_rng r;
        dr_rng_seed(&r, seed);
        dr_buf b = {0};
        const size_t n = 400;
        for (size_t i = 0; i < n; i++)
            dr_buf_printf(&b,
                          "{\"id\": \"q%zu\", \"query\": \"question %zu\", \"outcomes\": {"
                          "\"cheap\": {\"quality\": %d, \"cost_usd\": 0, \"latency_ms\": 50}, "
                          "\"dear\": {\"quality\": 1, \"cost_usd\": 0.01, \"latency_ms\": %g}}}\n",
                          i, i, dr_rng_uniform(&r) < 0.7, 900 + 200 * dr_rng_uniform(&r));
        char table[1024];
        snprintf(table, sizeof table, "%s", test_write_file("bandit.jsonl", b.data));
        dr_buf_free(&b);
        for (size_t k = 0; k < DR_ARRAY_LEN(shapes); k++) {
            char *yaml = dr_asprintf(
                "version: 1\nname: bd\nendpoints:\n  llm: {base_url: \"\", model: \"\"}\n"
                "stages:\n  generator:\n    options:\n"
                "      - {name: cheap, kind: openai, endpoint: llm}\n"
                "      - {name: dear, kind: openai, endpoint: llm}\n"
                "    router:\n      type: bandit\n      params: {algorithm: epsilon_greedy, "
                "epsilon: 0.1, seed: %d, %s}\n",
                (int)seed, shapes[k]);
            const char *pp = test_write_file("bandit.yaml", yaml);
            free(yaml);
            char out[1024];
            snprintf(out, sizeof out, "%s/bandit_out", test_tmpdir());
            dynrag_eval_outcomes_options o;
            dynrag_eval_outcomes_options_init(&o);
            o.pipeline_path = pp;
            o.outcomes_path = table;
            o.out_dir = out;
            o.sweep_param = "none";
            dynrag_error err;
            dynrag_error_clear(&err);
            ASSERT_OK(dynrag_eval_outcomes(&o, NULL, NULL, &err), &err);
            char rp[1100];
            snprintf(rp, sizeof rp, "%s/report.json", out);
            cJSON *rep = read_json_file(rp);
            ASSERT(rep != NULL);
            /* The choices over the second half, after the bandit has learnt. */
            const cJSON *pq = cJSON_GetObjectItemCaseSensitive(rep, "per_query");
            size_t dear = 0;
            for (size_t i = n / 2; i < n; i++)
                dear += strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(pq, (int)i),
                                                                "choice")
                                   ->valuestring,
                               "dear") == 0;
            double share = (double)dear / (double)(n - n / 2);
            if (k == 0 ? share < 0.8 : share > 0.2)
                test_fail_(__FILE__, __LINE__, "seed %d, %s: dear chosen for %.2f of the queries",
                           (int)seed, shapes[k], share);
            cJSON_Delete(rep);
        }
    }
}

/* ---- live: the engine's cascade judged by the scorer ---------------------------------- */

static const char *const live_yaml =
    "version: 1\n"
    "name: livescorer\n"
    "endpoints:\n"
    "  weak: {base_url: '%s', model: 'weak', max_retries: 0, timeout_s: 5}\n"
    "  strong: {base_url: '%s', model: 'strong', max_retries: 0, timeout_s: 5}\n"
    "stages:\n"
    "  retrieval_mode:\n"
    "    options:\n"
    "      - {name: none, kind: none}\n"
    "  prompt:\n"
    "    options:\n"
    "      - {name: bare, kind: template, params: {template: '{question}'}}\n"
    "  generator:\n"
    "    options:\n"
    "      - {name: m1, kind: openai, endpoint: weak}\n"
    "      - {name: org/m2, kind: openai, endpoint: strong}\n"
    "    router: {type: cascade, params: {judge: scorer, model: '%s', threshold: %.17g}}\n";

/*
 * Invariant, over real LLM calls to the test double (which answers "Test
 * double answer: <prompt>"): the first attempt's confidence is the scorer's
 * probability for (query, "m1", that answer), the cascade escalates to the
 * second option exactly when it is below the threshold, and the route log
 * names the scorer.
 */
TEST(engine_scorer_cascade_live)
{
    dynrag_error err;
    dynrag_error_clear(&err);
    char *tt = choice_table(5, 120, "t", 0);
    dr_outcome_table t = {0};
    parse_table(tt, &t);
    dr_scorer_train_opts so = {.lambda = 0.01, .seed = 1};
    dr_scorer *s = NULL;
    ASSERT_OK(dr_scorer_train(&t, NULL, 0, NULL, NULL, 0, &so, &s, NULL, &err), &err);
    char model[1024];
    snprintf(model, sizeof model, "%s/live_scorer.safetensors", test_tmpdir());
    ASSERT_OK(dr_scorer_save(s, model, &err), &err);
    dr_outcomes_free(&t);
    free(tt);
    test_double d;
    if (test_double_start(&d) != 0) {
        dr_scorer_free(s);
        SKIP("python3 test double unavailable");
    }
    static const char *const qs[] = {"Which one is hot?\nA) sun\nB) ice\nAnswer:",
                                     "A) frost\nB) lava\nWhich one is hot?", "What is the capital?",
                                     "Tell me about winter and snow"};
    dr_rng r;
    dr_rng_seed(&r, 8);
    int escalations = 0, kept = 0;
    for (int it = 0; it < 8; it++) {
        const char *q = qs[it % 4];
        char *answer = dr_asprintf("Test double answer: %s", q);
        double p = dr_scorer_score(s, q, "m1", answer);
        free(answer);
        /* Thresholds on both sides of p. */
        double thr = it % 2 ? fmin(1, p + 0.05 * dr_rng_uniform(&r) + 1e-6)
                            : fmax(0, p - 0.05 * dr_rng_uniform(&r) - 1e-6);
        char *yaml = dr_asprintf(live_yaml, d.base_url, d.base_url, model, thr);
        dynrag_pipeline *pl = NULL;
        dynrag_diags *dg = NULL;
        int rc = dynrag_pipeline_load_string(yaml, strlen(yaml), "live.yaml", test_tmpdir(), &pl,
                                             &dg, &err);
        free(yaml);
        dynrag_diags_free(dg);
        dynrag_engine *e = NULL;
        if (rc == DYNRAG_OK)
            rc = dynrag_engine_open(pl, NULL, &e, &err);
        dynrag_result *res = NULL;
        if (rc == DYNRAG_OK)
            rc = dynrag_engine_query(e, q, NULL, &res, &err);
        if (rc != DYNRAG_OK)
            test_double_stop(&d);
        ASSERT_OK(rc, &err);
        cJSON *rec = cJSON_Parse(dynrag_result_json(res));
        cJSON *a0 = cJSON_GetArrayItem(cJSON_GetObjectItem(rec, "cascade"), 0);
        ASSERT(a0 != NULL);
        /* The log rounds nothing: the confidence is the scorer's. */
        ASSERT_NEAR(cJSON_GetObjectItem(a0, "confidence")->valuedouble, p, 1e-12);
        bool esc = p < thr;
        ASSERT_EQ(cJSON_IsTrue(cJSON_GetObjectItem(a0, "escalated")), esc);
        ASSERT_CONTAINS(cJSON_GetObjectItem(a0, "judgement")->valuestring, "scorer");
        ASSERT_EQ(dynrag_result_totals(res)->generator_calls, esc ? 2 : 1);
        escalations += esc;
        kept += !esc;
        cJSON_Delete(rec);
        dynrag_result_free(res);
        dynrag_engine_close(e);
        dynrag_pipeline_free(pl);
    }
    test_double_stop(&d);
    dr_scorer_free(s);
    ASSERT_GT(escalations, 0);
    ASSERT_GT(kept, 0);
}
