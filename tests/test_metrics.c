/* test_metrics.c - IR metrics against hand-computed trec_eval values, ties
 * included, and the qrels/run readers. */
#include "test.h"

#include "dynrag/eval.h"
#include "dynrag/metrics.h"

#include <ctype.h>
#include <math.h>
#include <string.h>
#include <strings.h>

/* q1: d1=2 d2=1 d3=0 d4=1; q2: d5=1; q3: d9=1 (no results). */
static const char *qrels_beir = "query-id\tcorpus-id\tscore\r\n"
                                "q1\td1\t2\r\n"
                                "q1\td2\t1\r\n"
                                "q1\td3\t0\r\n"
                                "q1\td4\t1\r\n"
                                "\r\n"
                                "q2\td5\t1\r\n"
                                "q3\td9\t1\r\n";

/* q1 ranks dA, then the tie d2/d1 (2.0) broken by docno DEcreasing: d2, d1;
 * then d3, d4. q2's tie d5/d6 goes d6 first. q4 has no judgements. */
static const char *run_text = "# a comment\n"
                              "q1 Q0 d1 1 2.0 t\n"
                              "q1 Q0 d4 5 0.5 t\n"
                              "q1 Q0 dA 9 3.0 t\n"
                              "q1 Q0 d3 2 1.0 t\n"
                              "q1 Q0 d2 3 2.0 t\n"
                              "q2 Q0 d5 1 1.0 t extra fields\n"
                              "q2 Q0 d6 2 1.0 t\n"
                              "q4 Q0 d1 1 1.0 t\n";

static dynrag_metric_spec spec(const char *s)
{
    dynrag_metric_spec m = {DYNRAG_METRIC_P, -1};
    dynrag_metric_parse(s, &m, NULL);
    return m;
}

static double L2(double x)
{
    return log2(x);
}

TEST(metrics_hand_computed_with_ties)
{
    dynrag_error err;
    dynrag_qrels *q = NULL;
    dynrag_run *r = NULL;
    char qpath[1024];
    snprintf(qpath, sizeof(qpath), "%s", test_write_file("qrels.tsv", qrels_beir));
    ASSERT_OK(dynrag_qrels_load(qpath, &q, &err), &err);
    ASSERT_OK(dynrag_run_load(test_write_file("run.trec", run_text), &r, &err), &err);
    ASSERT_EQ(dynrag_qrels_query_count(q), 3);
    ASSERT_STR_EQ(dynrag_qrels_query_id(q, 0), "q1");
    ASSERT_EQ(dynrag_qrels_get(q, "q1", "d1"), 2);
    ASSERT_EQ(dynrag_qrels_get(q, "q1", "dA"), -1);
    const char *names[] = {"ndcg@3", "ndcg@5", "ndcg@10", "recall@3", "recall@5", "p@2",
                           "p@5",    "mrr@1",  "mrr@10",  "ndcg_cut.3", "recip_rank", "P_5"};
    dynrag_metric_spec ms[12];
    for (int i = 0; i < 12; i++)
        ASSERT_OK(dynrag_metric_parse(names[i], &ms[i], &err), &err);
    dynrag_metrics_result res;
    ASSERT_OK(dynrag_metrics_compute(q, r, ms, 12, NULL, &res, &err), &err);
    ASSERT_EQ(res.n_queries, 2); /* q3 has no results, q4 no judgements */
    ASSERT_STR_EQ(res.query_ids[0], "q1");
    ASSERT_STR_EQ(res.query_ids[1], "q2");
    const double *q1 = res.per_query, *q2 = res.per_query + 12;
    /* q1 ranking: dA(-), d2(1), d1(2), d3(0), d4(1). */
    double dcg3 = 1 / L2(3) + 2 / L2(4);
    double idcg3 = 2 + 1 / L2(3) + 1 / L2(4);
    ASSERT_NEAR(q1[0], dcg3 / idcg3, 1e-12);
    double dcg5 = dcg3 + 1 / L2(6);
    ASSERT_NEAR(q1[1], dcg5 / idcg3, 1e-12);
    ASSERT_NEAR(q1[2], dcg5 / idcg3, 1e-12);
    ASSERT_NEAR(q1[3], 2.0 / 3.0, 1e-12);
    ASSERT_NEAR(q1[4], 1.0, 1e-12);
    ASSERT_NEAR(q1[5], 0.5, 1e-12);
    ASSERT_NEAR(q1[6], 3.0 / 5.0, 1e-12);
    ASSERT_NEAR(q1[7], 0.0, 1e-12);
    ASSERT_NEAR(q1[8], 0.5, 1e-12);
    ASSERT_NEAR(q1[9], q1[0], 1e-15);
    ASSERT_NEAR(q1[10], 0.5, 1e-12);
    ASSERT_NEAR(q1[11], q1[6], 1e-15);
    /* q2: the tie puts d6 (unjudged) before d5. */
    ASSERT_NEAR(q2[2], 1 / L2(3), 1e-12);
    ASSERT_NEAR(q2[8], 0.5, 1e-12);
    ASSERT_NEAR(q2[7], 0.0, 1e-12);
    ASSERT_NEAR(q2[5], 0.5, 1e-12);
    ASSERT_NEAR(res.mean[2], (dcg5 / idcg3 + 1 / L2(3)) / 2, 1e-12);
    ASSERT_NEAR(res.mean[8], 0.5, 1e-12);
    dynrag_metrics_result_free(&res);

    /* trec_eval -c: q3 counts, as zeros. */
    dynrag_metrics_options opt;
    dynrag_metrics_options_init(&opt);
    opt.complete = true;
    ASSERT_OK(dynrag_metrics_compute(q, r, ms, 12, &opt, &res, &err), &err);
    ASSERT_EQ(res.n_queries, 3);
    ASSERT_NEAR(res.per_query[2 * 12 + 2], 0.0, 0);
    ASSERT_NEAR(res.mean[2], (dcg5 / idcg3 + 1 / L2(3)) / 3, 1e-12);
    dynrag_metrics_result_free(&res);

    /* trec_eval -l 2: only d1 is relevant for q1 (nDCG gains unchanged). */
    dynrag_metrics_options_init(&opt);
    opt.relevance_level = 2;
    ASSERT_OK(dynrag_metrics_compute(q, r, ms, 12, &opt, &res, &err), &err);
    ASSERT_NEAR(res.per_query[3], 1.0, 1e-12);  /* recall@3 */
    ASSERT_NEAR(res.per_query[8], 1.0 / 3, 1e-12); /* mrr@10 */
    ASSERT_NEAR(res.per_query[0], dcg3 / idcg3, 1e-12);
    dynrag_metrics_result_free(&res);
    dynrag_qrels_free(q);
    dynrag_run_free(r);
    /* A first line is taken as a header only when it has the shape of one
     * (3 or 4 fields): another file given by mistake fails at its line 1. */
    snprintf(qpath, sizeof(qpath), "%s",
             test_write_file("notqrels.jsonl", "{\"_id\": \"d1\", \"text\": \"some words here\"}\n"
                                               "{\"_id\": \"d2\", \"text\": \"more\"}\n"));
    ASSERT_EQ(dynrag_qrels_load(qpath, &q, &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "notqrels.jsonl:1:");
}

TEST(metrics_tie_order_is_docno_decreasing)
{
    /* Three tied documents, only the smallest docno relevant: trec_eval
     * ranks it last (docnos compared with strcmp, decreasing). */
    dynrag_error err;
    dynrag_qrels *q = NULL;
    dynrag_run *r = NULL;
    ASSERT_OK(dynrag_qrels_new(&q, &err), &err);
    ASSERT_OK(dynrag_run_new(&r, &err), &err);
    ASSERT_OK(dynrag_qrels_add(q, "1", "doc10", 1, &err), &err);
    ASSERT_OK(dynrag_run_add(r, "1", "doc10", 0.25, &err), &err);
    ASSERT_OK(dynrag_run_add(r, "1", "doc9", 0.25, &err), &err);
    ASSERT_OK(dynrag_run_add(r, "1", "doc2", 0.25, &err), &err);
    /* "doc9" > "doc2" > "doc10" by strcmp: doc10 is third. */
    dynrag_metric_spec ms[2] = {spec("mrr@10"), spec("ndcg@10")};
    dynrag_metrics_result res;
    ASSERT_OK(dynrag_metrics_compute(q, r, ms, 2, NULL, &res, &err), &err);
    ASSERT_NEAR(res.mean[0], 1.0 / 3, 1e-12);
    ASSERT_NEAR(res.mean[1], 1 / L2(4), 1e-12);
    dynrag_metrics_result_free(&res);
    /* A higher score wins over the docno order. */
    ASSERT_OK(dynrag_run_add(r, "1", "doc1", 0.2500001, &err), &err);
    ASSERT_OK(dynrag_metrics_compute(q, r, ms, 2, NULL, &res, &err), &err);
    ASSERT_NEAR(res.mean[0], 1.0 / 4, 1e-12);
    dynrag_metrics_result_free(&res);
    /* The written run keeps trec_eval's order and reads back equal. */
    char path[1024];
    snprintf(path, sizeof(path), "%s/out.run", test_tmpdir());
    ASSERT_OK(dynrag_run_write(r, path, "tag", &err), &err);
    dynrag_run *r2 = NULL;
    ASSERT_OK(dynrag_run_load(path, &r2, &err), &err);
    ASSERT_OK(dynrag_metrics_compute(q, r2, ms, 2, NULL, &res, &err), &err);
    ASSERT_NEAR(res.mean[0], 1.0 / 4, 1e-12);
    dynrag_metrics_result_free(&res);
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    char line[256];
    ASSERT(fgets(line, sizeof(line), f) != NULL);
    ASSERT_STR_EQ(line, "1 Q0 doc1 1 0.2500001 tag\n");
    ASSERT(fgets(line, sizeof(line), f) != NULL);
    ASSERT_STR_EQ(line, "1 Q0 doc9 2 0.25 tag\n");
    fclose(f);
    dynrag_run_free(r2);
    dynrag_qrels_free(q);
    dynrag_run_free(r);
}

TEST(metrics_graded_ndcg_and_short_lists)
{
    /* Graded gains 3,2,0 judged; run retrieves only the 2-graded doc and an
     * unjudged one. nDCG@10 = (2/log2(3)) / (3 + 2/log2(3)). P@10 divides by 10. */
    dynrag_error err;
    dynrag_qrels *q = NULL;
    dynrag_run *r = NULL;
    ASSERT_OK(dynrag_qrels_load(test_write_file("q.trec", "7 0 a 3\n7 0 b 2\n7 0 c 0\n"), &q, &err),
              &err);
    ASSERT_OK(dynrag_run_new(&r, &err), &err);
    ASSERT_OK(dynrag_run_add(r, "7", "x", 5, &err), &err);
    ASSERT_OK(dynrag_run_add(r, "7", "b", 4, &err), &err);
    dynrag_metric_spec ms[4] = {spec("ndcg@10"), spec("p@10"), spec("recall@1"), spec("recall")};
    dynrag_metrics_result res;
    ASSERT_OK(dynrag_metrics_compute(q, r, ms, 4, NULL, &res, &err), &err);
    ASSERT_NEAR(res.mean[0], (2 / L2(3)) / (3 + 2 / L2(3)), 1e-12);
    ASSERT_NEAR(res.mean[1], 0.1, 1e-12);
    ASSERT_NEAR(res.mean[2], 0.0, 1e-12);
    ASSERT_NEAR(res.mean[3], 0.5, 1e-12);
    dynrag_metrics_result_free(&res);
    dynrag_qrels_free(q);
    dynrag_run_free(r);
}

TEST(metrics_bad_inputs)
{
    dynrag_error err;
    dynrag_qrels *q = NULL;
    dynrag_run *r = NULL;
    /* Wrong field count, with the line number. */
    ASSERT_EQ(dynrag_qrels_load(test_write_file("a.tsv", "q1 d1 1\nq1 d2\n"), &q, &err),
              DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "a.tsv:2");
    ASSERT(q == NULL);
    ASSERT_EQ(dynrag_qrels_load(test_write_file("b.tsv", "q1 d1 1\nq1 d2 x\n"), &q, &err),
              DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "not an integer");
    ASSERT_EQ(dynrag_qrels_load(test_write_file("c.tsv", "q1 d1 1\nq1 d1 0\n"), &q, &err),
              DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "c.tsv:2");
    ASSERT_EQ(dynrag_qrels_load("/nonexistent/qrels", &q, &err), DYNRAG_ERR_NOTFOUND);
    ASSERT_EQ(dynrag_run_load(test_write_file("r1", "q1 Q0 d1 1 abc t\n"), &r, &err),
              DYNRAG_ERR_PARSE);
    ASSERT_EQ(dynrag_run_load(test_write_file("r2", "q1 Q0 d1 1\n"), &r, &err), DYNRAG_ERR_PARSE);
    ASSERT_EQ(dynrag_run_load(test_write_file("r3", "q1 Q0 d1 1 nan t\n"), &r, &err),
              DYNRAG_ERR_PARSE);
    /* A document twice for one query. */
    ASSERT_OK(dynrag_qrels_load(test_write_file("ok.tsv", "q1 d1 1\n"), &q, &err), &err);
    ASSERT_OK(dynrag_run_load(test_write_file("r4", "q1 Q0 d1 1 3 t\nq1 Q0 d2 2 2 t\n"
                                                    "q1 Q0 d1 3 1 t\n"),
                              &r, &err),
              &err);
    dynrag_metric_spec ms[1] = {spec("ndcg@10")};
    dynrag_metrics_result res;
    ASSERT_EQ(dynrag_metrics_compute(q, r, ms, 1, NULL, &res, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "twice");
    dynrag_run_free(r);
    /* No overlap between run and qrels. */
    ASSERT_OK(dynrag_run_load(test_write_file("r5", "q9 Q0 d1 1 3 t\n"), &r, &err), &err);
    ASSERT_EQ(dynrag_metrics_compute(q, r, ms, 1, NULL, &res, &err), DYNRAG_ERR_NOTFOUND);
    dynrag_run_free(r);
    dynrag_qrels_free(q);
    /* Metric names. */
    dynrag_metric_spec m;
    ASSERT_EQ(dynrag_metric_parse("ndcg", &m, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dynrag_metric_parse("ndcg@0", &m, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dynrag_metric_parse("map@10", &m, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dynrag_metric_parse("p@x", &m, &err), DYNRAG_ERR_INVALID);
    ASSERT_OK(dynrag_metric_parse("NDCG_CUT_10", &m, &err), &err);
    ASSERT_EQ(m.metric, DYNRAG_METRIC_NDCG);
    ASSERT_EQ(m.k, 10);
    ASSERT_OK(dynrag_metric_parse("Recall@100", &m, &err), &err);
    char name[32];
    dynrag_metric_name(m, name, sizeof(name));
    ASSERT_STR_EQ(name, "Recall@100");
}

/* Every name the two parsers of the old API accepted (the ranking parser of
 * metrics.h and the evaluation's parser of eval.h), each with what it meant
 * then: one parser now reads them all to the same metric. */
static const struct {
    const char *name;
    dynrag_metric metric;
    int k;
} old_names[] = {
    /* the evaluation's own names, and its aliases */
    {"em", DYNRAG_METRIC_EM, 0},
    {"f1", DYNRAG_METRIC_F1, 0},
    {"context", DYNRAG_METRIC_CONTEXT, 0},
    {"support", DYNRAG_METRIC_SUPPORT, 0},
    {"ndcg@10", DYNRAG_METRIC_NDCG, 10},
    {"recall@10", DYNRAG_METRIC_RECALL, 10},
    {"recall@100", DYNRAG_METRIC_RECALL, 100},
    {"mrr@10", DYNRAG_METRIC_MRR, 10},
    {"steps", DYNRAG_METRIC_STEPS, 0},
    {"calls", DYNRAG_METRIC_CALLS, 0},
    {"tokens", DYNRAG_METRIC_TOKENS, 0},
    {"usd", DYNRAG_METRIC_USD, 0},
    {"latency_ms", DYNRAG_METRIC_LATENCY, 0},
    {"energy_wh", DYNRAG_METRIC_ENERGY, 0},
    {"quality", DYNRAG_METRIC_QUALITY, 0},
    {"latency", DYNRAG_METRIC_LATENCY, 0},
    {"energy", DYNRAG_METRIC_ENERGY, 0},
    /* case-insensitive, both parsers */
    {"EM", DYNRAG_METRIC_EM, 0},
    {"F1", DYNRAG_METRIC_F1, 0},
    {"Context", DYNRAG_METRIC_CONTEXT, 0},
    {"SUPPORT", DYNRAG_METRIC_SUPPORT, 0},
    {"Steps", DYNRAG_METRIC_STEPS, 0},
    {"CALLS", DYNRAG_METRIC_CALLS, 0},
    {"Tokens", DYNRAG_METRIC_TOKENS, 0},
    {"USD", DYNRAG_METRIC_USD, 0},
    {"Latency_MS", DYNRAG_METRIC_LATENCY, 0},
    {"LATENCY", DYNRAG_METRIC_LATENCY, 0},
    {"Energy_Wh", DYNRAG_METRIC_ENERGY, 0},
    {"ENERGY", DYNRAG_METRIC_ENERGY, 0},
    {"Quality", DYNRAG_METRIC_QUALITY, 0},
    {"nDCG@10", DYNRAG_METRIC_NDCG, 10},
    {"NDCG@10", DYNRAG_METRIC_NDCG, 10},
    {"MRR@10", DYNRAG_METRIC_MRR, 10},
    {"Recall@100", DYNRAG_METRIC_RECALL, 100},
    /* trec_eval spellings and cutoff-less forms of the ranking parser */
    {"ndcg_cut.10", DYNRAG_METRIC_NDCG, 10},
    {"ndcg_cut_10", DYNRAG_METRIC_NDCG, 10},
    {"NDCG_CUT_10", DYNRAG_METRIC_NDCG, 10},
    {"ndcg.5", DYNRAG_METRIC_NDCG, 5},
    {"recall_100", DYNRAG_METRIC_RECALL, 100},
    {"recall.1000", DYNRAG_METRIC_RECALL, 1000},
    {"recall", DYNRAG_METRIC_RECALL, 0},
    {"recip_rank", DYNRAG_METRIC_MRR, 0},
    {"recip_rank.10", DYNRAG_METRIC_MRR, 10},
    {"mrr", DYNRAG_METRIC_MRR, 0},
    {"mrr_10", DYNRAG_METRIC_MRR, 10},
    {"P_5", DYNRAG_METRIC_P, 5},
    {"P.5", DYNRAG_METRIC_P, 5},
    {"p@5", DYNRAG_METRIC_P, 5},
    {"P@1000000", DYNRAG_METRIC_P, 1000000},
};

/* The one parser reads every old name to the metric it meant. */
TEST(metrics_parse_every_old_name)
{
    dynrag_error err;
    for (size_t i = 0; i < sizeof old_names / sizeof old_names[0]; i++) {
        dynrag_metric_spec m = {DYNRAG_METRIC_DEFAULT, -1};
        ASSERT_OK(dynrag_metric_parse(old_names[i].name, &m, &err), &err);
        if (m.metric != old_names[i].metric || m.k != old_names[i].k)
            test_fail_(__FILE__, __LINE__, "'%s' parsed to %d@%d, expected %d@%d",
                       old_names[i].name, (int)m.metric, m.k, (int)old_names[i].metric,
                       old_names[i].k);
    }
    /* Every trec_eval-style spelling of each ranking metric and cutoff. */
    static const char *const forms[] = {"%s@%d", "%s.%d", "%s_%d"};
    static const struct {
        const char *const names[3];
        dynrag_metric metric;
    } ranking[] = {
        {{"ndcg", "NDCG", "ndcg_cut"}, DYNRAG_METRIC_NDCG},
        {{"recall", "Recall", "RECALL"}, DYNRAG_METRIC_RECALL},
        {{"mrr", "MRR", "recip_rank"}, DYNRAG_METRIC_MRR},
        {{"p", "P", "P"}, DYNRAG_METRIC_P},
    };
    for (size_t r = 0; r < sizeof ranking / sizeof ranking[0]; r++)
        for (int k = 1; k <= 120; k++)
            for (size_t n = 0; n < 3; n++)
                for (size_t f = 0; f < 3; f++) {
                    char s[64];
                    snprintf(s, sizeof s, forms[f], ranking[r].names[n], k);
                    dynrag_metric_spec m;
                    ASSERT_OK(dynrag_metric_parse(s, &m, &err), &err);
                    ASSERT_EQ(m.metric, ranking[r].metric);
                    ASSERT_EQ(m.k, k);
                }
    /* Unknown names, and a failure leaves *out alone. */
    static const char *const bad[] = {"bleu",    "",          "ndcg",       "p",
                                      "P@0",     "ndcg@x",    "map@10",     "em@5",
                                      "f1_3",    "latency_s", "energy_kwh", "precision",
                                      "recall@", "mrr@-1",    "quality@10", "default"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dynrag_metric_spec m = {DYNRAG_METRIC_USD, 7};
        ASSERT_EQ(dynrag_metric_parse(bad[i], &m, &err), DYNRAG_ERR_INVALID);
        ASSERT_CONTAINS(dynrag_errmsg(&err), bad[i]);
        ASSERT_EQ(m.metric, DYNRAG_METRIC_USD);
        ASSERT_EQ(m.k, 7);
    }
    ASSERT_EQ(dynrag_metric_parse(NULL, &(dynrag_metric_spec){DYNRAG_METRIC_P, 1}, &err),
              DYNRAG_ERR_INVALID);
}

/* Names and keys: the display names trec_eval-style reports print, the keys
 * the evaluation's files use, both read back by the parser. */
TEST(metrics_name_key_round_trip)
{
    dynrag_error err;
    static const int cutoffs[] = {0, 1, 5, 10, 100, 1000000};
    size_t n_checked = 0;
    for (int m = DYNRAG_METRIC_NDCG; m <= DYNRAG_METRIC_ENERGY; m++)
        for (size_t c = 0; c < sizeof cutoffs / sizeof cutoffs[0]; c++) {
            dynrag_metric_spec s = {(dynrag_metric)m, cutoffs[c]};
            bool ranking = m <= DYNRAG_METRIC_P;
            if (!ranking && s.k != 0)
                continue; /* only ranking metrics take a cutoff */
            if (s.k == 0 && (m == DYNRAG_METRIC_NDCG || m == DYNRAG_METRIC_P))
                continue; /* these need one */
            char name[48], key[48];
            ASSERT(dynrag_metric_name(s, name, sizeof name) == name);
            ASSERT(dynrag_metric_key(s, key, sizeof key) == key);
            dynrag_metric_spec back;
            ASSERT_OK(dynrag_metric_parse(name, &back, &err), &err);
            ASSERT_EQ(back.metric, s.metric);
            ASSERT_EQ(back.k, s.k);
            ASSERT_OK(dynrag_metric_parse(key, &back, &err), &err);
            ASSERT_EQ(back.metric, s.metric);
            ASSERT_EQ(back.k, s.k);
            ASSERT_EQ(strcasecmp(name, key), 0);
            for (const char *p = key; *p; p++)
                ASSERT(!isupper((unsigned char)*p));
            n_checked++;
        }
    ASSERT_EQ(n_checked, 4 * 5 + 2 + 11);
    /* The spellings outputs use today. */
    static const struct {
        dynrag_metric metric;
        int k;
        const char *name, *key;
    } fixed[] = {
        {DYNRAG_METRIC_NDCG, 10, "nDCG@10", "ndcg@10"},
        {DYNRAG_METRIC_RECALL, 100, "Recall@100", "recall@100"},
        {DYNRAG_METRIC_RECALL, 0, "Recall", "recall"},
        {DYNRAG_METRIC_MRR, 10, "MRR@10", "mrr@10"},
        {DYNRAG_METRIC_MRR, 0, "MRR", "mrr"},
        {DYNRAG_METRIC_P, 5, "P@5", "p@5"},
        {DYNRAG_METRIC_EM, 0, "em", "em"},
        {DYNRAG_METRIC_F1, 0, "f1", "f1"},
        {DYNRAG_METRIC_CONTEXT, 0, "context", "context"},
        {DYNRAG_METRIC_SUPPORT, 0, "support", "support"},
        {DYNRAG_METRIC_QUALITY, 0, "quality", "quality"},
        {DYNRAG_METRIC_STEPS, 0, "steps", "steps"},
        {DYNRAG_METRIC_CALLS, 0, "calls", "calls"},
        {DYNRAG_METRIC_TOKENS, 0, "tokens", "tokens"},
        {DYNRAG_METRIC_USD, 0, "usd", "usd"},
        {DYNRAG_METRIC_LATENCY, 0, "latency_ms", "latency_ms"},
        {DYNRAG_METRIC_ENERGY, 0, "energy_wh", "energy_wh"},
        {DYNRAG_METRIC_DEFAULT, 0, "?", "?"},
        {(dynrag_metric)99, 0, "?", "?"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        dynrag_metric_spec s = {fixed[i].metric, fixed[i].k};
        char buf[48];
        ASSERT_STR_EQ(dynrag_metric_name(s, buf, sizeof buf), fixed[i].name);
        ASSERT_STR_EQ(dynrag_metric_key(s, buf, sizeof buf), fixed[i].key);
    }
    /* A small buffer truncates, NUL-terminated. */
    char small[4];
    ASSERT_STR_EQ(
        dynrag_metric_key((dynrag_metric_spec){DYNRAG_METRIC_LATENCY, 0}, small, sizeof small),
        "lat");
}

/* The cost metrics, and nothing else, add up along a cascade. */
TEST(metrics_is_cost)
{
    for (int m = DYNRAG_METRIC_DEFAULT; m <= DYNRAG_METRIC_ENERGY + 1; m++)
        ASSERT_EQ(dynrag_metric_is_cost((dynrag_metric)m),
                  m >= DYNRAG_METRIC_STEPS && m <= DYNRAG_METRIC_ENERGY);
    ASSERT(dynrag_metric_is_cost(DYNRAG_METRIC_USD));
    ASSERT(dynrag_metric_is_cost(DYNRAG_METRIC_LATENCY));
    ASSERT(!dynrag_metric_is_cost(DYNRAG_METRIC_QUALITY));
    ASSERT(!dynrag_metric_is_cost(DYNRAG_METRIC_NDCG));
}

/* dynrag_metrics_compute takes ranking metrics only: any other metric (or
 * a bad cutoff) is DYNRAG_ERR_INVALID naming it. */
TEST(metrics_compute_rejects_non_ranking)
{
    dynrag_error err;
    dynrag_qrels *q = NULL;
    dynrag_run *r = NULL;
    ASSERT_OK(dynrag_qrels_new(&q, &err), &err);
    ASSERT_OK(dynrag_qrels_add(q, "q1", "d1", 1, &err), &err);
    ASSERT_OK(dynrag_run_new(&r, &err), &err);
    ASSERT_OK(dynrag_run_add(r, "q1", "d1", 1.0, &err), &err);
    dynrag_metrics_result res;
    for (int m = DYNRAG_METRIC_EM; m <= DYNRAG_METRIC_ENERGY; m++) {
        dynrag_metric_spec ms[2] = {{DYNRAG_METRIC_NDCG, 10}, {(dynrag_metric)m, 0}};
        char key[48];
        dynrag_metric_key(ms[1], key, sizeof key);
        ASSERT_EQ(dynrag_metrics_compute(q, r, ms, 2, NULL, &res, &err), DYNRAG_ERR_INVALID);
        ASSERT_CONTAINS(dynrag_errmsg(&err), key);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "not a ranking metric");
        dynrag_metrics_result_free(&res);
    }
    static const struct {
        dynrag_metric_spec m;
        const char *text;
    } bad[] = {
        {{DYNRAG_METRIC_DEFAULT, 0}, "unknown metric -1"},
        {{(dynrag_metric)99, 0}, "unknown metric 99"},
        {{DYNRAG_METRIC_NDCG, 0}, "nDCG: bad cutoff 0"},
        {{DYNRAG_METRIC_P, 0}, "P: bad cutoff 0"},
        {{DYNRAG_METRIC_RECALL, -2}, "Recall: bad cutoff -2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_EQ(dynrag_metrics_compute(q, r, &bad[i].m, 1, NULL, &res, &err), DYNRAG_ERR_INVALID);
        ASSERT_CONTAINS(dynrag_errmsg(&err), bad[i].text);
        dynrag_metrics_result_free(&res);
    }
    /* Recall and MRR without a cutoff are ranking metrics over the whole run. */
    dynrag_metric_spec ok[2] = {{DYNRAG_METRIC_RECALL, 0}, {DYNRAG_METRIC_MRR, 0}};
    ASSERT_OK(dynrag_metrics_compute(q, r, ok, 2, NULL, &res, &err), &err);
    ASSERT_NEAR(res.mean[0], 1, 0);
    ASSERT_NEAR(res.mean[1], 1, 0);
    dynrag_metrics_result_free(&res);
    dynrag_run_free(r);
    dynrag_qrels_free(q);
}

/* The metrics an evaluation records: every old evaluation name maps to a
 * slot of dynrag_eval_outcome (set and get round trip), and a ranking metric
 * at a cutoff the evaluation does not record is refused naming it, as the
 * old evaluation parser refused it. */
TEST(metrics_eval_records_the_old_eval_names)
{
    dynrag_error err;
    dynrag_eval_outcome o;
    dynrag_eval_outcome_init(&o);
    size_t n_recorded = 0;
    for (size_t i = 0; i < 15; i++) { /* the first 15 old names: the evaluation's own */
        dynrag_metric_spec m;
        ASSERT_OK(dynrag_metric_parse(old_names[i].name, &m, &err), &err);
        ASSERT(isnan(dynrag_eval_outcome_get(&o, m)));
        ASSERT_OK(dynrag_eval_outcome_set(&o, m, (double)i + 0.5, &err), &err);
        n_recorded++;
    }
    ASSERT_EQ(n_recorded, DYNRAG_EVAL_SLOTS);
    for (size_t i = 0; i < 15; i++) {
        dynrag_metric_spec m;
        ASSERT_OK(dynrag_metric_parse(old_names[i].name, &m, &err), &err);
        ASSERT_NEAR(dynrag_eval_outcome_get(&o, m), (double)i + 0.5, 0);
    }
    /* Spellings of the four recorded ranking metrics reach the same slot;
     * every other cutoff is refused naming the metric. */
    static const char *const forms[] = {"%s@%d", "%s.%d", "%s_%d"};
    static const struct {
        const char *const names[3];
        const char *key;
    } ranking[] = {
        {{"ndcg", "NDCG", "ndcg_cut"}, "ndcg"},
        {{"recall", "Recall", "RECALL"}, "recall"},
        {{"mrr", "MRR", "recip_rank"}, "mrr"},
        {{"p", "P", "P"}, "p"},
    };
    for (size_t r = 0; r < sizeof ranking / sizeof ranking[0]; r++)
        for (int k = 1; k <= 120; k++)
            for (size_t n = 0; n < 3; n++)
                for (size_t f = 0; f < 3; f++) {
                    char s[64], key[64];
                    snprintf(s, sizeof s, forms[f], ranking[r].names[n], k);
                    snprintf(key, sizeof key, "%s@%d", ranking[r].key, k);
                    dynrag_metric_spec m;
                    ASSERT_OK(dynrag_metric_parse(s, &m, &err), &err);
                    bool recorded = (r == 0 && k == 10) || (r == 1 && (k == 10 || k == 100)) ||
                                    (r == 2 && k == 10);
                    dynrag_eval_outcome x = o;
                    int rc = dynrag_eval_outcome_set(&x, m, -1, &err);
                    if (recorded) {
                        ASSERT_EQ(rc, DYNRAG_OK);
                        ASSERT_NEAR(dynrag_eval_outcome_get(&x, m), -1, 0);
                    } else {
                        ASSERT_EQ(rc, DYNRAG_ERR_INVALID);
                        ASSERT_CONTAINS(dynrag_errmsg(&err), key);
                        ASSERT(isnan(dynrag_eval_outcome_get(&o, m)));
                        ASSERT_EQ(memcmp(x.slots, o.slots, sizeof o.slots), 0);
                    }
                }
    static const char *const unrecorded[] = {"recip_rank", "recall", "mrr", "p@10"};
    for (size_t i = 0; i < sizeof unrecorded / sizeof unrecorded[0]; i++) {
        dynrag_metric_spec m;
        ASSERT_OK(dynrag_metric_parse(unrecorded[i], &m, &err), &err);
        ASSERT_EQ(dynrag_eval_outcome_set(&o, m, 1, &err), DYNRAG_ERR_INVALID);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "records only");
    }
    /* A cutoff on a metric that takes none, and the default sentinel. */
    ASSERT_EQ(dynrag_eval_outcome_set(&o, (dynrag_metric_spec){DYNRAG_METRIC_F1, 3}, 1, &err),
              DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "f1@3");
    ASSERT(isnan(dynrag_eval_outcome_get(&o, (dynrag_metric_spec){DYNRAG_METRIC_F1, 3})));
    ASSERT_EQ(dynrag_eval_outcome_set(&o, (dynrag_metric_spec){DYNRAG_METRIC_DEFAULT, 0}, 1, &err),
              DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "DYNRAG_METRIC_DEFAULT");
    ASSERT(isnan(dynrag_eval_outcome_get(&o, (dynrag_metric_spec){DYNRAG_METRIC_DEFAULT, 0})));
    /* NAN clears a value. */
    dynrag_metric_spec f1 = {DYNRAG_METRIC_F1, 0};
    ASSERT_OK(dynrag_eval_outcome_set(&o, f1, NAN, &err), &err);
    ASSERT(isnan(dynrag_eval_outcome_get(&o, f1)));
}
