/* test_eval.c - the evaluation harness: answer metrics, baselines and oracle
 * on a synthetic table, sweeps, a small live run (report, SVG, cache, replay),
 * data errors and the YAML patch of `calibrate`. The trec_eval metrics
 * themselves (ties included) are tested in test_metrics.c. */
#include "test.h"
#include "test_net_util.h"

#include "core/util.h"
#include "dynrag/eval.h"
#include "dynrag/index.h"
#include "dynrag/pipeline.h"

#include <cjson/cJSON.h>
#include <math.h>

/* A metric spec: the metric and its cutoff (0 for all but ranking metrics). */
static dynrag_metric_spec metric(dynrag_metric m, int k)
{
    dynrag_metric_spec s = {m, k};
    return s;
}

TEST(eval_em_f1_normalisation)
{
    const char *g1[] = {"Paris"};
    ASSERT_NEAR(dynrag_eval_em("The  PARIS!", g1, 1), 1, 0);
    ASSERT_NEAR(dynrag_eval_em("Paris, France", g1, 1), 0, 0);
    /* 1 common token of 2 predicted and 1 gold: P 0.5, R 1, F1 2/3. */
    ASSERT_NEAR(dynrag_eval_f1("Paris, France", g1, 1), 2.0 / 3.0, 1e-12);
    /* Max over golds; articles and punctuation are dropped. */
    const char *g2[] = {"New York City", "the Big Apple"};
    ASSERT_NEAR(dynrag_eval_em("big apple.", g2, 2), 1, 0);
    ASSERT_NEAR(dynrag_eval_f1("new york", g2, 2), 2 * (1.0 * 2 / 3) / (1 + 2.0 / 3), 1e-12);
    /* Repeated tokens count once each (bag overlap): "a a b" vs "a b b". */
    const char *g3[] = {"x x y"};
    ASSERT_NEAR(dynrag_eval_f1("x y y", g3, 1), 2.0 / 3.0, 1e-12);
    /* Empty after normalisation: both empty is 1, one empty is 0. */
    const char *g4[] = {"The"};
    ASSERT_NEAR(dynrag_eval_f1("a", g4, 1), 1, 0);
    ASSERT_NEAR(dynrag_eval_f1("Paris", g4, 1), 0, 0);
    ASSERT_NEAR(dynrag_eval_em("x", NULL, 0), 0, 0);
    /* Containment on word boundaries, after normalisation. */
    const char *g5[] = {"1969"};
    ASSERT_NEAR(dynrag_eval_contains("He walked there in 1969.", g5, 1), 1, 0);
    ASSERT_NEAR(dynrag_eval_contains("In 19690 BC", g5, 1), 0, 0);
    const char *g6[] = {"Neil Armstrong"};
    ASSERT_NEAR(dynrag_eval_contains("...said NEIL  armstrong, later", g6, 1), 1, 0);
    ASSERT_NEAR(dynrag_eval_contains("", g6, 1), 0, 0);
    dynrag_metric_spec m;
    dynrag_error err;
    ASSERT_OK(dynrag_metric_parse("NDCG@10", &m, &err), &err);
    ASSERT_EQ(m.metric, DYNRAG_METRIC_NDCG);
    ASSERT_EQ(m.k, 10);
    ASSERT_EQ(dynrag_metric_parse("bleu", &m, &err), DYNRAG_ERR_INVALID);
}

/* 4 queries x 3 options (cheap, mid, dear) with known qualities and costs. */
static dynrag_eval_table *synthetic_table(void)
{
    static const double q[4][3] = {{1, 1, 1}, {0, 1, 1}, {0, 0, 1}, {0.5, 0.2, 0.5}};
    static const double c[3] = {1, 2, 4};
    dynrag_eval_table *t = NULL;
    dynrag_error err;
    if (dynrag_eval_table_new("generator", "classifier", 4, 3, &t, &err) != DYNRAG_OK)
        return NULL;
    const char *names[3] = {"cheap", "mid", "dear"};
    for (size_t o = 0; o < 3; o++)
        t->options[o] = strdup(names[o]);
    for (size_t i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof id, "q%zu", i);
        t->query_ids[i] = strdup(id);
        for (size_t o = 0; o < 3; o++) {
            dynrag_eval_outcome *x = &t->cells[i * 3 + o];
            x->ok = true;
            if (dynrag_eval_outcome_set(x, metric(DYNRAG_METRIC_F1, 0), q[i][o], &err) ||
                dynrag_eval_outcome_set(x, metric(DYNRAG_METRIC_USD, 0), c[o], &err) ||
                dynrag_eval_outcome_set(x, metric(DYNRAG_METRIC_STEPS, 0), 1, &err)) {
                dynrag_eval_table_free(t);
                return NULL;
            }
        }
    }
    /* The router: scores favour cheap on q0/q3, mid on q1, dear on q2. */
    static const double sc[4][3] = {{0.9, 0.05, 0.05}, {0.2, 0.7, 0.1}, {0.1, 0.3, 0.6}, {0.4, 0.35, 0.25}};
    static const int choice[4] = {0, 1, 2, 0};
    for (size_t i = 0; i < 4; i++) {
        t->router_choice[i] = choice[i];
        t->router_first[i] = choice[i];
        for (size_t o = 0; o < 3; o++)
            t->router_scores[i * 3 + o] = sc[i][o];
    }
    return t;
}

TEST(eval_baselines_known_oracle)
{
    dynrag_eval_table *t = synthetic_table();
    ASSERT(t != NULL);
    dynrag_eval_compare_options co;
    dynrag_eval_compare_options_init(&co);
    co.quality = metric(DYNRAG_METRIC_F1, 0);
    co.cost = metric(DYNRAG_METRIC_USD, 0);
    co.seed = 5;
    co.sweep = DYNRAG_EVAL_SWEEP_CLASSIFIER;
    co.escalate = 2;
    dynrag_eval_comparison c;
    dynrag_error err;
    ASSERT_OK(dynrag_eval_compare(t, &co, &c, &err), &err);
    const dynrag_eval_row *r = dynrag_eval_comparison_row(&c, "oracle");
    ASSERT(r != NULL);
    /* Oracle: q0 cheap (1), q1 mid (2), q2 dear (4), q3 cheap (1: ties with dear at 0.5). */
    ASSERT_NEAR(r->quality, (1 + 1 + 1 + 0.5) / 4, 1e-12);
    ASSERT_NEAR(r->cost, (1 + 2 + 4 + 1) / 4.0, 1e-12);
    ASSERT_EQ(r->calls[0], 2);
    ASSERT_EQ(r->calls[1], 1);
    ASSERT_EQ(r->calls[2], 1);
    /* The row's means through the accessor: quality and cost are two of them. */
    ASSERT_NEAR(dynrag_eval_row_get(r, metric(DYNRAG_METRIC_F1, 0)), r->quality, 0);
    ASSERT_NEAR(dynrag_eval_row_get(r, metric(DYNRAG_METRIC_USD, 0)), r->cost, 0);
    ASSERT_NEAR(dynrag_eval_row_get(r, metric(DYNRAG_METRIC_STEPS, 0)), 1, 0);
    ASSERT(isnan(dynrag_eval_row_get(r, metric(DYNRAG_METRIC_NDCG, 10)))); /* no values */
    ASSERT(isnan(dynrag_eval_row_get(r, metric(DYNRAG_METRIC_NDCG, 5))));  /* not recorded */
    ASSERT(isnan(dynrag_eval_row_get(r, metric(DYNRAG_METRIC_DEFAULT, 0))));
    /* The router picked the oracle's options here. */
    r = dynrag_eval_comparison_row(&c, "router");
    ASSERT_NEAR(r->quality, 0.875, 1e-12);
    ASSERT_NEAR(r->cost, 2.0, 1e-12);
    ASSERT_NEAR(r->share[0], 0.5, 1e-12);
    r = dynrag_eval_comparison_row(&c, "always-cheap");
    ASSERT_NEAR(r->quality, 1.5 / 4, 1e-12);
    ASSERT_NEAR(r->cost, 1, 1e-12);
    r = dynrag_eval_comparison_row(&c, "always-dear");
    ASSERT_NEAR(r->quality, 3.5 / 4, 1e-12);
    ASSERT_NEAR(r->cost, 4, 1e-12);
    /* Random rows exist, use every query, and are reproducible by seed. */
    const dynrag_eval_row *rnd = dynrag_eval_comparison_row(&c, "random");
    ASSERT(rnd != NULL && dynrag_eval_comparison_row(&c, "random-mix") != NULL);
    ASSERT_EQ(rnd->calls[0] + rnd->calls[1] + rnd->calls[2], 4);
    dynrag_eval_comparison c2;
    ASSERT_OK(dynrag_eval_compare(t, &co, &c2, &err), &err);
    ASSERT_NEAR(dynrag_eval_comparison_row(&c2, "random")->quality, rnd->quality, 0);
    /* Sweep: threshold 0 = argmax everywhere = the router; threshold 1 = always escalate. */
    ASSERT_EQ(c.n_sweep, 21);
    ASSERT_NEAR(c.sweep[0].quality, 0.875, 1e-12);
    ASSERT_NEAR(c.sweep[20].cost, 4, 1e-12);
    ASSERT_NEAR(c.sweep[20].share[2], 1, 1e-12);
    /* Threshold 0.5: q3 (max 0.4) escalates to dear. */
    ASSERT_NEAR(c.sweep[10].param, 0.5, 1e-12);
    ASSERT_NEAR(c.sweep[10].share[2], 0.5, 1e-12);
    /* A failed cell scores 0. */
    t->cells[0 * 3 + 0].ok = false;
    dynrag_eval_comparison_free(&c2);
    ASSERT_OK(dynrag_eval_compare(t, &co, &c2, &err), &err);
    ASSERT_NEAR(dynrag_eval_comparison_row(&c2, "always-cheap")->quality, 0.5 / 4, 1e-12);
    char *svg = dynrag_eval_svg_scatter(t, &c, "f1", "usd");
    ASSERT_CONTAINS(svg, "<svg");
    ASSERT_CONTAINS(svg, "oracle");
    ASSERT_CONTAINS(svg, "polyline");
    free(svg);
    svg = dynrag_eval_svg_mix(t, &c);
    ASSERT_CONTAINS(svg, "random-mix");
    free(svg);
    dynrag_eval_comparison_free(&c);
    dynrag_eval_comparison_free(&c2);
    dynrag_eval_table_free(t);
}

TEST(eval_cascade_chain_costs)
{
    dynrag_eval_table *t = synthetic_table();
    ASSERT(t != NULL);
    t->cascade = true;
    /* Confidences of cheap and mid per query. */
    static const double conf[4][2] = {{0.9, 0.9}, {0.2, 0.8}, {0.1, 0.3}, {0.6, 0.1}};
    for (size_t i = 0; i < 4; i++)
        for (size_t o = 0; o < 2; o++)
            t->cells[i * 3 + o].confidence = conf[i][o];
    dynrag_eval_compare_options co;
    dynrag_eval_compare_options_init(&co);
    co.quality = metric(DYNRAG_METRIC_F1, 0);
    co.cost = metric(DYNRAG_METRIC_USD, 0);
    co.sweep = DYNRAG_EVAL_SWEEP_CASCADE;
    double grid[1] = {0.5};
    co.grid = grid;
    co.n_grid = 1;
    dynrag_eval_comparison c;
    dynrag_error err;
    ASSERT_OK(dynrag_eval_compare(t, &co, &c, &err), &err);
    /* At 0.5: q0 stops at cheap (1), q1 at mid (1+2), q2 at dear (1+2+4), q3 at cheap (1). */
    ASSERT_NEAR(c.sweep[0].cost, (1 + 3 + 7 + 1) / 4.0, 1e-12);
    ASSERT_NEAR(c.sweep[0].quality, (1 + 1 + 1 + 0.5) / 4, 1e-12);
    ASSERT_EQ(c.sweep[0].calls[0], 4);
    ASSERT_EQ(c.sweep[0].calls[1], 2);
    ASSERT_EQ(c.sweep[0].calls[2], 1);
    dynrag_eval_comparison_free(&c);
    dynrag_eval_table_free(t);
}

/*
 * Invariant: replay with the quality metric left to the table follows the
 * outcomes' format, over many generated tables: BEIR outcomes (ndcg@10, no
 * f1; "format" named or not) are judged by ndcg@10, QA outcomes by f1, so
 * the router's, every always-X's and the oracle's quality are the means of
 * that metric (never nan); the oracle is at least every always-X.
 */
TEST(eval_replay_default_metric_follows_format)
{
    uint64_t st = 99;
    for (int it = 0; it < 60; it++) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        bool beir = (st >> 33) & 1;
        int named = (int)((st >> 40) % 3); /* 0: no "format", 1: named, 2: named, other fields */
        size_t nq = 2 + (size_t)((st >> 20) % 9), no = 2 + (size_t)((st >> 12) % 3);
        dr_buf tb = {0}, lb = {0};
        double sum_router = 0, sum_always[4] = {0};
        for (size_t q = 0; q < nq; q++) {
            st = st * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t choice = (size_t)(st >> 50) % no;
            for (size_t o = 0; o < no; o++) {
                st = st * 6364136223846793005ULL + 1442695040888963407ULL;
                double v = (double)((st >> 40) % 1000) / 1000.0;
                double other = (double)((st >> 20) % 1000) / 1000.0;
                dr_buf_printf(&tb, "{\"stage\":\"index\",\"router\":\"rules\",\"query_id\":\"q%zu\","
                                   "\"option\":\"o%zu\",%s\"metrics\":{",
                              q, o,
                              named ? (beir ? "\"format\":\"beir\"," : "\"format\":\"qa\",") : "");
                if (beir)
                    dr_buf_printf(&tb, "\"ndcg@10\":%.3f,\"recall@10\":%.3f%s", v, other,
                                  named == 2 ? ",\"context\":1" : "");
                else
                    dr_buf_printf(&tb, "\"f1\":%.3f,\"em\":%.3f%s", v, other,
                                  named == 2 ? ",\"ndcg@10\":0.5" : "");
                dr_buf_printf(&tb, ",\"latency_ms\":%zu}}\n", o + 1);
                sum_always[o] += v;
                if (o == choice)
                    sum_router += v;
            }
            dr_buf_printf(&lb, "{\"id\":\"q%zu\",\"query\":\"x\",\"stages\":[{\"stage\":\"index\","
                               "\"router\":\"rules\",\"choice\":\"o%zu\"}]}\n",
                          q, choice);
        }
        char *tp = dr_strdup(test_write_file("outcomes.jsonl", tb.data));
        char *lp = dr_strdup(test_write_file("log.jsonl", lb.data));
        dynrag_eval_compare_options co;
        dynrag_eval_compare_options_init(&co);
        co.quality = metric(DYNRAG_METRIC_DEFAULT, 0);
        co.cost = metric(DYNRAG_METRIC_LATENCY, 0);
        co.escalate = -1;
        dynrag_eval_table *t = NULL;
        dynrag_eval_comparison c;
        dynrag_error err;
        ASSERT_OK(dynrag_eval_replay(lp, tp, NULL, it % 2 ? &co : NULL, &t, &c, &err), &err);
        ASSERT_EQ(t->default_quality.metric, beir ? DYNRAG_METRIC_NDCG : DYNRAG_METRIC_F1);
        ASSERT_EQ(t->default_quality.k, beir ? 10 : 0);
        double best_always = -1;
        for (size_t r = 0; r < c.n_rows; r++) {
            const dynrag_eval_row *row = &c.rows[r];
            ASSERT(isfinite(row->quality));
            if (strcmp(row->name, "router") == 0)
                ASSERT_NEAR(row->quality, sum_router / (double)nq, 1e-9);
            if (strncmp(row->name, "always-o", 8) == 0) {
                size_t o = (size_t)(row->name[8] - '0');
                ASSERT_NEAR(row->quality, sum_always[o] / (double)nq, 1e-9);
                best_always = row->quality > best_always ? row->quality : best_always;
            }
        }
        const dynrag_eval_row *oracle = &c.rows[c.n_rows - 1];
        ASSERT_STR_EQ(oracle->name, "oracle");
        ASSERT(oracle->quality >= best_always - 1e-12);
        dynrag_eval_comparison_free(&c);
        dynrag_eval_table_free(t);
        dr_buf_free(&tb);
        dr_buf_free(&lb);
        free(tp);
        free(lp);
    }
}

TEST(eval_data_errors_name_file_and_line)
{
    const char *p = test_write_file("bad.jsonl", "{\"question\":\"q1\",\"answers\":[\"a\"]}\n"
                                                 "{\"question\":\"q2\"}\n");
    char path[4200];
    snprintf(path, sizeof path, "%s", p);
    const char *pl = test_write_file("p.yaml", "version: 1\nname: t\n");
    char ppath[4200];
    snprintf(ppath, sizeof ppath, "%s", pl);
    dynrag_eval_options o;
    dynrag_eval_options_init(&o);
    o.pipeline_path = ppath;
    o.data_path = path;
    o.out_dir = test_tmpdir();
    o.format = DYNRAG_EVAL_FORMAT_QA;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_EQ(dynrag_eval_run(&o, NULL, NULL, &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.jsonl:2:");
    test_write_file("bad.jsonl", "{\"question\":\"q1\",\"answers\":[\"a\"]}\n{not json\n");
    ASSERT_EQ(dynrag_eval_run(&o, NULL, NULL, &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.jsonl:2: invalid JSON");
    test_write_file("bad.jsonl", "[{\"question\":\"q\",\"answer\":\"a\"},{\"question\":\"q2\"}]");
    ASSERT_EQ(dynrag_eval_run(&o, NULL, NULL, &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "element 2");
}

static const char *const corpus_jsonl =
    "{\"_id\":\"france\",\"title\":\"France\",\"text\":\"France is a country in Western Europe. "
    "The capital of France is Paris, which is also its largest city.\"}\n"
    "{\"_id\":\"moon\",\"title\":\"Moon\",\"text\":\"The Moon is the only natural satellite of the "
    "Earth. Neil Armstrong was the first person to walk on the Moon in 1969.\"}\n"
    "{\"_id\":\"python\",\"title\":\"Python\",\"text\":\"Python is a programming language created "
    "by Guido van Rossum. It was first released in 1991.\"}\n";

static const char *const questions_jsonl =
    "{\"id\":\"a\",\"question\":\"What is the capital of France?\",\"answers\":[\"Paris\"]}\n"
    "{\"id\":\"b\",\"question\":\"Who was the first person to walk on the Moon?\","
    "\"answers\":[\"Neil Armstrong\"]}\n"
    "{\"id\":\"c\",\"question\":\"Who created the Python programming language and when was it "
    "first released?\",\"answers\":[\"Guido van Rossum\"]}\n"
    "{\"id\":\"d\",\"question\":\"hello there\",\"answers\":[]}\n";

/* Builds the small corpus's index (built-in embedder) in index_dir. */
static int build_small_index(const char *index_dir)
{
    const char *inputs[] = {test_write_file("corpus.jsonl", corpus_jsonl)};
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    bo.embedder.kind = "builtin";
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_index_add(index_dir, inputs, 1, &bo, NULL, &err);
    if (rc != DYNRAG_OK)
        fprintf(stderr, "index: %s\n", dynrag_errmsg(&err));
    return rc;
}

/* QA evaluation options: answer-in-context quality, retrieval steps cost. */
static dynrag_eval_options qa_options(const char *yaml, const char *data, const char *out)
{
    dynrag_eval_options o;
    dynrag_eval_options_init(&o);
    o.pipeline_path = yaml;
    o.data_path = data;
    o.out_dir = out;
    o.format = DYNRAG_EVAL_FORMAT_QA;
    o.quality = metric(DYNRAG_METRIC_CONTEXT, 0);
    o.cost = metric(DYNRAG_METRIC_STEPS, 0);
    return o;
}

/* Replays OUT/routes.jsonl against OUT/outcomes.jsonl for a stage, with the
 * quality and cost of qa_options(). */
static int replay_out(const char *out, const char *stage, dynrag_eval_table **t,
                      dynrag_eval_comparison *c, dynrag_error *err)
{
    char log[4400], table[4400];
    snprintf(log, sizeof log, "%s/routes.jsonl", out);
    snprintf(table, sizeof table, "%s/outcomes.jsonl", out);
    dynrag_eval_compare_options co;
    dynrag_eval_compare_options_init(&co);
    co.quality = metric(DYNRAG_METRIC_CONTEXT, 0);
    co.cost = metric(DYNRAG_METRIC_STEPS, 0);
    return dynrag_eval_replay(log, table, stage, &co, t, c, err);
}

TEST(eval_small_run_report_cache_replay)
{
    test_double dbl;
    if (test_double_start(&dbl) != 0)
        SKIP("python3 test double unavailable");
    char corpus[4200], index_dir[4200], yaml[4200], data[4200], out[4200], cmd[20000];
    snprintf(corpus, sizeof corpus, "%s", test_write_file("corpus.jsonl", corpus_jsonl));
    snprintf(index_dir, sizeof index_dir, "%s/index", test_tmpdir());
    snprintf(out, sizeof out, "%s/out", test_tmpdir());
    const char *inputs[] = {corpus};
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    bo.embedder.kind = "builtin";
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_index_add(index_dir, inputs, 1, &bo, NULL, &err), &err);
    char text[10000];
    snprintf(text, sizeof text,
             "version: 1\nname: evaltest\nindex: %s\n"
             "stages:\n"
             "  retrieval_mode:\n"
             "    options:\n"
             "      - {name: none, kind: none}\n"
             "      - {name: single, kind: single, params: {k: 3}}\n"
             "    router:\n"
             "      type: rules\n"
             "      params:\n"
             "        rules:\n"
             "          - when: {regex: \"^hello\"}\n"
             "            option: none\n"
             "        default: single\n"
             "  index:\n"
             "    options:\n"
             "      - {name: bm25, kind: bm25}\n"
             "      - {name: dense, kind: dense}\n"
             "    router: {type: rules, params: {rules: [{when: {min_words: 12}, option: dense}], default: bm25}}\n"
             "  generator:\n"
             "    options:\n"
             "      - {name: extractive, kind: extractive, params: {threshold: 0.1, max_sentences: 1}}\n"
             /* Offline, `none` is available only when a generator answers
              * without passages: the test double plays that LLM. */
             "      - {name: llm, kind: openai, endpoint: llm}\n"
             "endpoints:\n"
             "  llm: {base_url: '%s', model: m, max_retries: 0, timeout_s: 5}\n",
             index_dir, dbl.base_url);
    snprintf(yaml, sizeof yaml, "%s", test_write_file("p.yaml", text));
    snprintf(data, sizeof data, "%s", test_write_file("q.jsonl", questions_jsonl));
    dynrag_eval_options o = qa_options(yaml, data, out);
    dynrag_eval_summary s1, s2;
    char *md = NULL;
    ASSERT_OK(dynrag_eval_run(&o, &s1, &md, &err), &err);
    /* 4 queries x (router + 2 retrieval modes + 2 indexes). */
    ASSERT_EQ(s1.n_queries, 4);
    ASSERT_EQ(s1.n_runs, 20);
    ASSERT_EQ(s1.cache_hits, 0);
    ASSERT_EQ(s1.n_stages, 2);
    ASSERT_CONTAINS(md, "## Stage `retrieval_mode`");
    ASSERT_CONTAINS(md, "## Stage `index`");
    ASSERT_CONTAINS(md, "| oracle |");
    ASSERT_CONTAINS(md, "| always-single | 1.000 | 1.000 |");
    ASSERT_CONTAINS(md, "| always-none | 0.000 | 0.000 |");
    free(md);
    char path[4400];
    char *svg = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "%s/retrieval_mode-cost-quality.svg", out);
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    svg = calloc(1, 200000);
    n = fread(svg, 1, 199999, f);
    fclose(f);
    ASSERT_GT(n, 100);
    ASSERT_CONTAINS(svg, "<svg");
    ASSERT_CONTAINS(svg, "always-single");
    free(svg);
    snprintf(path, sizeof path, "%s/report.json", out);
    f = fopen(path, "r");
    ASSERT(f != NULL);
    char *js = calloc(1, 1 << 20);
    n = fread(js, 1, (1 << 20) - 1, f);
    fclose(f);
    cJSON *rep = cJSON_Parse(js);
    free(js);
    ASSERT(rep != NULL);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(rep, "stages")), 2);
    cJSON *st0 = cJSON_GetArrayItem(cJSON_GetObjectItem(rep, "stages"), 0);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(st0, "per_query")), 4);
    cJSON_Delete(rep);
    /* Second run: everything from the cache, same numbers. */
    ASSERT_OK(dynrag_eval_run(&o, &s2, &md, &err), &err);
    ASSERT_EQ(s2.n_runs, 20);
    ASSERT_EQ(s2.cache_hits, 20);
    free(md);
    /* Replay of the router log against the outcome table equals the live run. */
    dynrag_eval_comparison c;
    dynrag_eval_table *t = NULL;
    ASSERT_OK(replay_out(out, "retrieval_mode", &t, &c, &err), &err);
    const dynrag_eval_row *router = dynrag_eval_comparison_row(&c, "router");
    ASSERT(router != NULL);
    /* Live (from report.json): router quality and steps. */
    snprintf(cmd, sizeof cmd,
             "python3 -c \"import json;r=json.load(open('%s/report.json'));"
             "row=[x for x in r['stages'][0]['rows'] if x['name']=='router'][0];"
             "print('%%.6f %%.6f' %% (row['quality'], row['cost']))\"",
             out);
    char *live = NULL;
    if (test_run(cmd, &live) == 0) {
        char expect[64];
        snprintf(expect, sizeof expect, "%.6f %.6f", router->quality, router->cost);
        ASSERT_CONTAINS(live, expect);
    } else {
        ASSERT_NEAR(router->quality, 0.75, 1e-9); /* without python: the known value */
    }
    free(live);
    ASSERT_NEAR(router->share[0], 0.25, 1e-12); /* "hello there" -> none */
    const dynrag_eval_row *orc = dynrag_eval_comparison_row(&c, "oracle");
    ASSERT_NEAR(orc->quality, router->quality, 1e-12);
    dynrag_eval_comparison_free(&c);
    dynrag_eval_table_free(t);
    /* The CLI: the second run reports its cache hits. */
    snprintf(cmd, sizeof cmd, "%s eval --pipeline %s --data %s --format qa --quality context "
                              "--cost steps --out %s 2>&1",
             test_cli_path(), yaml, data, out);
    char *cli = NULL;
    ASSERT_EQ(test_run(cmd, &cli), 0);
    ASSERT_CONTAINS(cli, "20 runs (20 cache hits)");
    free(cli);
    /* A write to the index (a new generation) invalidates the cached runs. */
    static const char extra_doc[] =
        "{\"_id\": \"extra\", \"title\": \"Extra\", \"text\": \"A later document.\"}\n";
    const char *more[] = {test_write_file("more.jsonl", extra_doc)};
    ASSERT_OK(dynrag_index_add(index_dir, more, 1, &bo, NULL, &err), &err);
    ASSERT_EQ(test_run(cmd, &cli), 0);
    ASSERT_CONTAINS(cli, "20 runs (0 cache hits)");
    free(cli);
    test_double_stop(&dbl);
}

TEST(eval_calibrate_knn_min_similarity_matches_live)
{
    test_double dbl;
    if (test_double_start(&dbl) != 0)
        SKIP("python3 test double unavailable");
    /* A knn router on retrieval_mode: calibrate sweeps min_similarity by
     * routing again; running the calibrated copy must give exactly the
     * share and quality calibrate reported. */
    char index_dir[4200], yaml[4200], data[4200], out[4200], out2[4200], copy[4200];
    snprintf(index_dir, sizeof index_dir, "%s/index", test_tmpdir());
    snprintf(out, sizeof out, "%s/out", test_tmpdir());
    snprintf(out2, sizeof out2, "%s/out2", test_tmpdir());
    snprintf(copy, sizeof copy, "%s/calibrated.yaml", test_tmpdir());
    ASSERT_EQ(build_small_index(index_dir), DYNRAG_OK);
    dynrag_error err;
    dynrag_error_clear(&err);
    char text[10000];
    snprintf(text, sizeof text,
             "version: 1\nname: knncal\nindex: %s\n"
             "stages:\n"
             "  retrieval_mode:\n"
             "    options:\n"
             "      - {name: none, kind: none}\n"
             "      - {name: single, kind: single, params: {k: 3}}\n"
             "    router:\n"
             "      type: knn\n"
             "      params:\n"
             "        k: 3\n"
             "        default: none\n"
             "        examples:\n"
             "          - {query: hello there, option: none}\n"
             "          - {query: 'hi, how are you', option: none}\n"
             "          - {query: What is the capital of Germany?, option: single}\n"
             "          - {query: Who was the first man in space?, option: single}\n"
             "          - {query: Who created the C language and when?, option: single}\n"
             "  generator:\n"
             "    options:\n"
             "      - {name: extractive, kind: extractive, params: {threshold: 0.1, max_sentences: 1}}\n"
             /* Offline, `none` is available only when a generator answers
              * without passages: the test double plays that LLM. */
             "      - {name: llm, kind: openai, endpoint: llm}\n"
             "endpoints:\n"
             "  llm: {base_url: '%s', model: m, max_retries: 0, timeout_s: 5}\n",
             index_dir, dbl.base_url);
    snprintf(yaml, sizeof yaml, "%s", test_write_file("knn.yaml", text));
    snprintf(data, sizeof data, "%s", test_write_file("q.jsonl", questions_jsonl));
    dynrag_eval_options o = qa_options(yaml, data, out);
    dynrag_eval_calibrate_options co;
    dynrag_eval_calibrate_options_init(&co);
    co.stage = "retrieval_mode";
    co.target_option = "single";
    co.target_share = 0.5;
    co.target_quality = NAN;
    co.out_yaml = copy;
    dynrag_eval_calibration cal;
    ASSERT_OK(dynrag_eval_calibrate(&o, &co, &cal, &err), &err);
    ASSERT_STR_EQ(cal.param, "min_similarity");
    ASSERT(cal.met);
    ASSERT(cal.share <= 0.5 + 1e-12);
    ASSERT_GT(cal.share, 0); /* not the trivial all-"none" end of the sweep */
    ASSERT(cal.value >= 0 && cal.value <= 1);
    /* The copy, evaluated live, routes as calibrate predicted. */
    o.pipeline_path = copy;
    o.out_dir = out2;
    ASSERT_OK(dynrag_eval_run(&o, NULL, NULL, &err), &err);
    dynrag_eval_comparison c;
    dynrag_eval_table *t = NULL;
    ASSERT_OK(replay_out(out2, "retrieval_mode", &t, &c, &err), &err);
    const dynrag_eval_row *router = dynrag_eval_comparison_row(&c, "router");
    ASSERT(router != NULL);
    ASSERT_NEAR(router->share[1], cal.share, 1e-12);
    ASSERT_NEAR(router->quality, cal.quality, 1e-12);
    dynrag_eval_comparison_free(&c);
    dynrag_eval_table_free(t);
    /* Other routers are still refused, naming what can be calibrated. */
    co.out_yaml = NULL;
    o.pipeline_path = yaml;
    co.stage = "generator";
    ASSERT_EQ(dynrag_eval_calibrate(&o, &co, &cal, &err), DYNRAG_ERR_INVALID);
    test_double_stop(&dbl);
}

TEST(eval_patch_router_param)
{
    const char *yaml =
        "version: 1\nname: p   # keep this comment\n"
        "stages:\n"
        "  context:\n"
        "    options:\n"
        "      - {name: chunks, kind: topk, params: {k: 5}}\n"
        "      - {name: long, kind: documents}\n"
        "    router:\n"
        "      type: cascade\n"
        "      params: {judge: self_route, threshold: 0.5}\n"
        "  generator:\n"
        "    options:\n"
        "      - {name: a, kind: extractive}\n"
        "      - {name: b, kind: extractive}\n"
        "    router:\n"
        "      type: cascade\n";
    char in[4200], outp[4300];
    snprintf(in, sizeof in, "%s", test_write_file("in.yaml", yaml));
    snprintf(outp, sizeof outp, "%s/out.yaml", test_tmpdir());
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_eval_patch_router_param(in, outp, "context", "threshold", 0.25, &err), &err);
    char *text = NULL;
    char cmd[8800];
    snprintf(cmd, sizeof cmd, "cat %s", outp);
    ASSERT_EQ(test_run(cmd, &text), 0);
    ASSERT_CONTAINS(text, "params: {judge: self_route, threshold: 0.25}");
    ASSERT_CONTAINS(text, "# keep this comment");
    free(text);
    /* Absent params: added to the router mapping. */
    ASSERT_OK(dynrag_eval_patch_router_param(in, outp, "generator", "threshold", 0.75, &err), &err);
    ASSERT_EQ(test_run(cmd, &text), 0);
    ASSERT_CONTAINS(text, "      params: {threshold: 0.75}\n      type: cascade\n");
    free(text);
    /* A stage without a router is an error. */
    ASSERT_EQ(dynrag_eval_patch_router_param(in, outp, "index", "threshold", 0.5, &err),
              DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "stages.index has no router");
}

/* A classifier router whose top label's option is unavailable for a query
 * (offline, `none`: no generator answers without passages) takes another
 * option; the threshold sweep replays that too, so at the router's own
 * threshold the sweep row is the router row, live and in a log replay. */
TEST(eval_classifier_sweep_follows_availability)
{
    char index_dir[4200], yaml[4200], data[4200], out[4200], model[4200];
    snprintf(index_dir, sizeof index_dir, "%s/index", test_tmpdir());
    snprintf(out, sizeof out, "%s/out", test_tmpdir());
    snprintf(model, sizeof model, "%s/models/complexity.safetensors", test_source_dir());
    ASSERT_EQ(build_small_index(index_dir), DYNRAG_OK);
    char text[10000];
    snprintf(text, sizeof text,
             "version: 1\nname: sweeptest\nindex: %s\n"
             "stages:\n"
             "  retrieval_mode:\n"
             "    options:\n"
             "      - {name: none, kind: none}\n"
             "      - {name: single, kind: single, params: {k: 3}}\n"
             "      - {name: multi, kind: multi, params: {k: 2, max_steps: 2}}\n"
             "    router:\n"
             "      type: classifier\n"
             "      params: {model: %s, labels: {A: none, B: single, C: multi}, "
             "threshold: 0.5, escalate: multi}\n"
             "  generator:\n"
             "    options:\n"
             "      - {name: extractive, kind: extractive, params: {threshold: 0.1}}\n",
             index_dir, model);
    snprintf(yaml, sizeof yaml, "%s", test_write_file("p.yaml", text));
    snprintf(data, sizeof data, "%s", test_write_file("q.jsonl", questions_jsonl));
    dynrag_eval_options o = qa_options(yaml, data, out);
    const char *stages[] = {"retrieval_mode"};
    o.stages = stages;
    o.n_stages = 1;
    dynrag_error err;
    dynrag_eval_summary s;
    ASSERT_OK(dynrag_eval_run(&o, &s, NULL, &err), &err);
    char path[4400];
    snprintf(path, sizeof path, "%s/report.json", out);
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    char *js = calloc(1, 1 << 20);
    size_t n = fread(js, 1, (1 << 20) - 1, f);
    fclose(f);
    ASSERT_GT(n, 0);
    cJSON *rep = cJSON_Parse(js);
    free(js);
    ASSERT(rep != NULL);
    cJSON *st = cJSON_GetArrayItem(cJSON_GetObjectItem(rep, "stages"), 0);
    const cJSON *router = NULL, *at = NULL, *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(st, "rows"))
        if (strcmp(cJSON_GetObjectItem(row, "name")->valuestring, "router") == 0)
            router = row;
    int n_sweep = 0;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(st, "sweep"))
    {
        n_sweep++;
        /* Never `none`, at any threshold: it was unavailable to every query. */
        ASSERT_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(row, "calls"), "none")->valuedouble, 0);
        if (fabs(cJSON_GetObjectItem(row, "threshold")->valuedouble - 0.5) < 1e-9)
            at = row;
    }
    ASSERT_GT(n_sweep, 2);
    ASSERT(router != NULL && at != NULL);
    ASSERT_NEAR(cJSON_GetObjectItem(at, "quality")->valuedouble,
                cJSON_GetObjectItem(router, "quality")->valuedouble, 1e-12);
    ASSERT_NEAR(cJSON_GetObjectItem(at, "cost")->valuedouble,
                cJSON_GetObjectItem(router, "cost")->valuedouble, 1e-12);
    static const char *const names[] = {"none", "single", "multi"};
    for (int k = 0; k < 3; k++)
        ASSERT_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(at, "calls"), names[k])->valuedouble,
                  cJSON_GetObjectItem(cJSON_GetObjectItem(router, "calls"), names[k])->valuedouble);
    cJSON_Delete(rep);
    /* The replay of the route log reads the same availability. */
    dynrag_eval_comparison c;
    dynrag_eval_table *t = NULL;
    ASSERT_OK(replay_out(out, "retrieval_mode", &t, &c, &err), &err);
    ASSERT(c.n_sweep > 0);
    for (size_t i = 0; i < c.n_sweep; i++)
        ASSERT_EQ(c.sweep[i].calls[0], 0);
    dynrag_eval_comparison_free(&c);
    dynrag_eval_table_free(t);
}
