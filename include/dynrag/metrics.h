/*
 * dynrag/metrics.h - retrieval metrics that match trec_eval, and the one
 * metric enum (names, parsing) of the whole API.
 *
 * nDCG@k, Recall@k, MRR@k and P@k per query and their mean over queries,
 * computed exactly as trec_eval 9.x computes ndcg_cut.k, recall.k,
 * recip_rank (with a cutoff) and P.k:
 *   - A run's documents for a query are ranked by score descending, ties
 *     broken by document id in DEcreasing strcmp order (trec_eval's
 *     comp_sim_docno); the rank column of a run file is ignored.
 *   - A document is relevant when its judgement is >= relevance_level
 *     (default 1). nDCG's gain is the judgement value itself (any value
 *     > 0 counts), discounted by log2(rank + 1); the ideal DCG ranks all
 *     positively judged documents of the query by judgement. Recall divides
 *     by the number of relevant judged documents (0 when there are none);
 *     P@k always divides by k; MRR@k is 1/rank of the first relevant
 *     document within the first k, else 0.
 *   - Queries evaluated: those with judgements AND results; with the
 *     `complete` option (trec_eval -c), every judged query, a query without
 *     results scoring 0. Run queries without judgements are ignored.
 *   - A document listed twice for one query, in qrels or in a run, is an
 *     error (trec_eval refuses such files too).
 *
 * Files. Qrels: TREC `qid iter docno rel` or BEIR TSV `query-id corpus-id
 * score`, separated by tabs or spaces, an optional header line (a first line
 * whose last field is not an integer), CRLF or LF line ends, blank lines
 * ignored. Runs: TREC `qid Q0 docno rank score tag` (extra fields ignored;
 * blank lines and lines starting with '#' skipped).
 *
 * A qrels object sorts itself lazily on first lookup, so calls on one qrels
 * (including dynrag_metrics_compute) must not run concurrently. A run is
 * only read by compute and write.
 */
#ifndef DYNRAG_METRICS_H
#define DYNRAG_METRICS_H

#include "dynrag/common.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- relevance judgements ------------------------------------------------ */

typedef struct dynrag_qrels dynrag_qrels;

/* An empty set of judgements; free with dynrag_qrels_free(). */
DYNRAG_API int dynrag_qrels_new(dynrag_qrels **out, dynrag_error *err);
/* Adds a judgement (ids are copied). A second judgement of the same
 * (query, document) fails with DYNRAG_ERR_INVALID. */
DYNRAG_API int dynrag_qrels_add(dynrag_qrels *q, const char *query_id, const char *doc_id,
                                int relevance, dynrag_error *err);
/* Reads a qrels file (see above). Errors name the file and line:
 * DYNRAG_ERR_NOTFOUND/IO, DYNRAG_ERR_PARSE (wrong field count, bad
 * judgement), DYNRAG_ERR_INVALID (duplicate judgement). */
DYNRAG_API int dynrag_qrels_load(const char *path, dynrag_qrels **out, dynrag_error *err);
DYNRAG_API void dynrag_qrels_free(dynrag_qrels *q);
/* Number of distinct judged queries, and the i-th in strcmp order (the
 * string is owned by q; valid until the next add or free). */
DYNRAG_API size_t dynrag_qrels_query_count(dynrag_qrels *q);
DYNRAG_API const char *dynrag_qrels_query_id(dynrag_qrels *q, size_t i);
/* The judgement of (query, document), or -1 when not judged. */
DYNRAG_API int dynrag_qrels_get(dynrag_qrels *q, const char *query_id, const char *doc_id);

/* ---- runs ------------------------------------------------------------------ */

typedef struct dynrag_run dynrag_run;

DYNRAG_API int dynrag_run_new(dynrag_run **out, dynrag_error *err);
/* Adds a scored document for a query (ids are copied; score must be finite). */
DYNRAG_API int dynrag_run_add(dynrag_run *r, const char *query_id, const char *doc_id, double score,
                              dynrag_error *err);
/* Reads a TREC run file. Errors name the file and line. */
DYNRAG_API int dynrag_run_load(const char *path, dynrag_run **out, dynrag_error *err);
/* Writes the run as a TREC run file (queries in strcmp order, documents in
 * trec_eval's rank order, ranks from 1, scores with 17 significant digits),
 * atomically. tag NULL means "dynrag". */
DYNRAG_API int dynrag_run_write(const dynrag_run *r, const char *path, const char *tag,
                                dynrag_error *err);
DYNRAG_API void dynrag_run_free(dynrag_run *r);

/* ---- metrics ---------------------------------------------------------------- */

/*
 * Every metric DynamicRAG computes or records, one enum for the whole API.
 *
 * Ranking metrics take a cutoff (dynrag_metric_spec.k) and are what
 * dynrag_metrics_compute() computes, exactly as trec_eval does (above).
 * The per-query answer metrics and the cost metrics are recorded by the
 * evaluation harness (dynrag/eval.h), which also records four ranking
 * metrics: ndcg@10, recall@10, recall@100 and mrr@10.
 *
 * DYNRAG_METRIC_DEFAULT is not a metric: an options field set to it takes
 * the default its context documents (e.g. dynrag_eval_options.quality:
 * ndcg@10 for BEIR, f1 for QA). Only fields documented to accept it do.
 */
typedef enum dynrag_metric {
    DYNRAG_METRIC_DEFAULT = -1, /* options only: "the default for the context" */
    /* ranking metrics, with a cutoff k */
    DYNRAG_METRIC_NDCG = 0,   /* "ndcg@k": trec_eval ndcg_cut.k */
    DYNRAG_METRIC_RECALL = 1, /* "recall@k": trec_eval recall.k */
    DYNRAG_METRIC_MRR = 2,    /* "mrr@k": trec_eval recip_rank, counting the first k only */
    DYNRAG_METRIC_P = 3,      /* "p@k": trec_eval P.k */
    /* per-query answer and quality metrics (k 0) */
    DYNRAG_METRIC_EM = 4,      /* "em": exact match (SQuAD normalisation) */
    DYNRAG_METRIC_F1 = 5,      /* "f1": SQuAD token F1 */
    DYNRAG_METRIC_CONTEXT = 6, /* "context": a gold answer is in the retrieved context */
    DYNRAG_METRIC_SUPPORT = 7, /* "support": share of supporting titles retrieved */
    DYNRAG_METRIC_QUALITY = 8, /* "quality": a recorded quality in [0, 1] (outcome tables) */
    /* cost metrics (k 0): they add up along a cascade */
    DYNRAG_METRIC_STEPS = 9,    /* "steps": retrieval steps */
    DYNRAG_METRIC_CALLS = 10,   /* "calls": generator calls */
    DYNRAG_METRIC_TOKENS = 11,  /* "tokens": input + output tokens */
    DYNRAG_METRIC_USD = 12,     /* "usd": money spent */
    DYNRAG_METRIC_LATENCY = 13, /* "latency_ms" */
    DYNRAG_METRIC_ENERGY = 14   /* "energy_wh" */
} dynrag_metric;

/* A metric and its cutoff. k: for a ranking metric the cutoff >= 1, or 0 for
 * the whole ranking (Recall and MRR only: nDCG and P need a cutoff); 0 for
 * every other metric. */
typedef struct dynrag_metric_spec {
    dynrag_metric metric;
    int k;
} dynrag_metric_spec;

/*
 * Parses a metric name, case-insensitively, into *out (untouched on
 * failure). Ranking metrics: "ndcg@10", "recall@100", "mrr@10", "p@5"
 * ("mrr" and "recall" alone mean no cutoff) and the trec_eval names
 * "ndcg_cut.10", "ndcg_cut_10", "recall_100", "recip_rank", "P_5", "P.5";
 * the others: "em", "f1", "context", "support", "quality", "steps",
 * "calls", "tokens", "usd", "latency_ms" (or "latency") and "energy_wh" (or
 * "energy"), with k 0. Fails with DYNRAG_ERR_INVALID naming s when it is
 * unknown (s NULL included). Whether a consumer takes the metric is its own
 * check: dynrag_metrics_compute() takes the ranking metrics, the
 * evaluation the metrics it records.
 */
DYNRAG_API int dynrag_metric_parse(const char *s, dynrag_metric_spec *out, dynrag_error *err);

/*
 * Writes the display name of m to buf (at most size bytes, NUL-terminated,
 * truncated when too small) and returns buf: "nDCG@10", "Recall@100",
 * "MRR@10", "P@5" ("Recall", "MRR" without a cutoff), and for the other
 * metrics their key ("f1", "latency_ms"). A value that is not a metric
 * (DYNRAG_METRIC_DEFAULT included) writes "?". dynrag_metric_parse() reads
 * every name back.
 */
DYNRAG_API const char *dynrag_metric_name(dynrag_metric_spec m, char *buf, size_t size);

/*
 * Writes the key of m, the lower-case name the evaluation's files use
 * (report.json, report.md, outcomes.jsonl, cache.jsonl): "ndcg@10",
 * "recall@100", "mrr@10", "p@5", "em", "f1", "context", "support",
 * "quality", "steps", "calls", "tokens", "usd", "latency_ms", "energy_wh".
 * Same buffer rules and "?" as dynrag_metric_name(); dynrag_metric_parse()
 * reads every key back.
 */
DYNRAG_API const char *dynrag_metric_key(dynrag_metric_spec m, char *buf, size_t size);

/* True for the cost metrics (steps .. energy_wh): they add up along a
 * cascade. False for every other value. */
DYNRAG_API bool dynrag_metric_is_cost(dynrag_metric m);

/* Options of dynrag_metrics_compute(). Call dynrag_metrics_options_init()
 * first, then set what differs: every field is taken literally. */
typedef struct dynrag_metrics_options {
    int relevance_level; /* judgement needed to count as relevant, >= 0 (default 1, as
                            trec_eval -l; 0: every judged document is relevant) */
    bool complete;       /* trec_eval -c: judged queries without results score 0 (false) */
} dynrag_metrics_options;

/* Sets every field of o to its default (above). */
DYNRAG_API void dynrag_metrics_options_init(dynrag_metrics_options *o);

typedef struct dynrag_metrics_result {
    size_t n_metrics;
    dynrag_metric_spec *metrics; /* copy of the requested metrics */
    size_t n_queries;
    char **query_ids;            /* evaluated queries, strcmp order */
    double *per_query;           /* [n_queries][n_metrics], row-major */
    double *mean;                /* [n_metrics]: arithmetic mean over the queries */
} dynrag_metrics_result;

/*
 * Evaluates run against qrels. opt may be NULL (the defaults of
 * dynrag_metrics_options_init). metrics must be ranking metrics (nDCG,
 * Recall, MRR, P) with a valid cutoff. On success *out is filled (free
 * with dynrag_metrics_result_free()). Fails with DYNRAG_ERR_INVALID (a
 * metric that is not a ranking metric, e.g. f1, or a bad cutoff: the
 * message names it; a duplicate document in a query of the run) or
 * DYNRAG_ERR_NOTFOUND when no query has both judgements and results (and
 * complete is false).
 */
DYNRAG_API int dynrag_metrics_compute(dynrag_qrels *qrels, const dynrag_run *run,
                                      const dynrag_metric_spec *metrics, size_t n_metrics,
                                      const dynrag_metrics_options *opt, dynrag_metrics_result *out,
                                      dynrag_error *err);
DYNRAG_API void dynrag_metrics_result_free(dynrag_metrics_result *r);

#ifdef __cplusplus
}
#endif
#endif
