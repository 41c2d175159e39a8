/* test_metrics.c - IR metrics against hand-computed trec_eval values, ties
 * included, and the qrels/run readers. */
#include "test.h"

#include "dynrag/eval.h"
#include "dynrag/metrics.h"

#include <math.h>
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

/* One parser for ranking-metric names: every spelling dynrag_metric_parse()
 * accepts for a metric the evaluation records gives the same evaluation
 * metric, every other cutoff is an error naming the input, and every
 * evaluation metric's own name parses back to it. */
TEST(metrics_eval_parser_is_the_ranking_parser)
{
    dynrag_error err;
    dynrag_eval_metric e;
    for (int i = 0; i < DYNRAG_EVAL_N_METRICS; i++) {
        ASSERT_OK(dynrag_eval_metric_parse(dynrag_eval_metric_name((dynrag_eval_metric)i), &e,
                                           &err),
                  &err);
        ASSERT_EQ(e, i);
    }
    static const char *const forms[] = {"%s@%d", "%s.%d", "%s_%d"};
    static const struct {
        const char *const names[3];
        int k;
        dynrag_eval_metric e;
    } recorded[] = {
        {{"ndcg", "NDCG", "ndcg_cut"}, 10, DYNRAG_EVAL_NDCG10},
        {{"recall", "Recall", "RECALL"}, 10, DYNRAG_EVAL_RECALL10},
        {{"recall", "Recall", "RECALL"}, 100, DYNRAG_EVAL_RECALL100},
        {{"mrr", "MRR", "recip_rank"}, 10, DYNRAG_EVAL_MRR10},
    };
    for (size_t r = 0; r < sizeof recorded / sizeof recorded[0]; r++)
        for (int k = 1; k <= 120; k++)
            for (size_t n = 0; n < 3; n++)
                for (size_t f = 0; f < 3; f++) {
                    char s[64];
                    snprintf(s, sizeof s, forms[f], recorded[r].names[n], k);
                    dynrag_metric_spec spec;
                    ASSERT_OK(dynrag_metric_parse(s, &spec, &err), &err);
                    ASSERT_EQ(spec.k, k);
                    int rc = dynrag_eval_metric_parse(s, &e, &err);
                    bool is_recorded = false;
                    for (size_t o = 0; o < sizeof recorded / sizeof recorded[0]; o++)
                        if (recorded[o].k == k && strcasecmp(recorded[o].names[0],
                                                             recorded[r].names[0]) == 0) {
                            is_recorded = true;
                            ASSERT_EQ(rc, DYNRAG_OK);
                            ASSERT_EQ(e, recorded[o].e);
                        }
                    if (!is_recorded) {
                        ASSERT_EQ(rc, DYNRAG_ERR_INVALID);
                        ASSERT_CONTAINS(dynrag_errmsg(&err), s);
                    }
                }
    ASSERT_EQ(dynrag_eval_metric_parse("recip_rank", &e, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dynrag_eval_metric_parse("p@10", &e, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dynrag_eval_metric_parse("bleu", &e, &err), DYNRAG_ERR_INVALID);
}
