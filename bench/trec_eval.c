/*
 * trec_eval.c - scores a TREC run file against judgements with the
 * library's trec_eval-compatible metrics (include/dynrag/metrics.h), for
 * bench/retrieve_bench.sh.
 *
 *   dynrag_bench_trec_eval QRELS RUN
 *
 * Prints one line "ndcg@10=X recall@100=Y mrr@10=Z queries=N" (means over
 * the judged queries, trec_eval -c: a judged query without results scores
 * 0). Exit status 1 with a message on stderr when a file cannot be read.
 */
#include "dynrag/metrics.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: dynrag_bench_trec_eval QRELS RUN\n");
        return 2;
    }
    dynrag_error err;
    dynrag_qrels *q = NULL;
    dynrag_run *r = NULL;
    dynrag_metrics_result res = {0};
    int rc = 1;
    dynrag_metric_spec ms[3] = {
        {DYNRAG_METRIC_NDCG, 10}, {DYNRAG_METRIC_RECALL, 100}, {DYNRAG_METRIC_MRR, 10}};
    dynrag_metrics_options opt;
    dynrag_metrics_options_init(&opt);
    opt.complete = true;
    if (dynrag_qrels_load(argv[1], &q, &err) != DYNRAG_OK ||
        dynrag_run_load(argv[2], &r, &err) != DYNRAG_OK ||
        dynrag_metrics_compute(q, r, ms, 3, &opt, &res, &err) != DYNRAG_OK) {
        fprintf(stderr, "trec_eval: %s\n", dynrag_errmsg(&err));
        goto cleanup;
    }
    printf("ndcg@10=%.4f recall@100=%.4f mrr@10=%.4f queries=%zu\n", res.mean[0], res.mean[1],
           res.mean[2], res.n_queries);
    rc = 0;
cleanup:
    dynrag_metrics_result_free(&res);
    dynrag_run_free(r);
    dynrag_qrels_free(q);
    return rc;
}
