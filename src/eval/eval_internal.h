/*
 * eval/eval_internal.h - the evaluation harness's data sets and runner
 * (internal to src/eval/).
 */
#ifndef DYNRAG_EVAL_INTERNAL_H
#define DYNRAG_EVAL_INTERNAL_H

#include "dynrag/eval.h"
#include "dynrag/metrics.h"
#include "dynrag/pipeline.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the metrics an outcome records (qa.c) ---------------------------------- */

/* The slots of dynrag_eval_outcome.slots[] and dynrag_eval_row.means[]: one
 * per metric the evaluation records. The order is the order of every
 * "metrics" object the evaluation writes (report.json, outcomes.jsonl,
 * cache.jsonl), so it must not change. */
typedef enum dr_eval_slot {
    DR_SLOT_EM = 0,    /* em */
    DR_SLOT_F1,        /* f1 */
    DR_SLOT_CONTEXT,   /* context */
    DR_SLOT_SUPPORT,   /* support */
    DR_SLOT_NDCG10,    /* ndcg@10 */
    DR_SLOT_RECALL10,  /* recall@10 */
    DR_SLOT_RECALL100, /* recall@100 */
    DR_SLOT_MRR10,     /* mrr@10 */
    DR_SLOT_STEPS,     /* steps */
    DR_SLOT_CALLS,     /* calls */
    DR_SLOT_TOKENS,    /* tokens */
    DR_SLOT_USD,       /* usd */
    DR_SLOT_LATENCY,   /* latency_ms */
    DR_SLOT_ENERGY,    /* energy_wh */
    DR_SLOT_QUALITY,   /* quality */
    DR_EVAL_N_SLOTS
} dr_eval_slot;

_Static_assert(DR_EVAL_N_SLOTS == DYNRAG_EVAL_SLOTS, "DYNRAG_EVAL_SLOTS matches dr_eval_slot");

/* The slot's key in the evaluation's files, e.g. "ndcg@10" (static string;
 * "?" out of range). */
const char *dr_eval_slot_key(dr_eval_slot s);
/* The public metric of a slot, e.g. {DYNRAG_METRIC_NDCG, 10}. */
dynrag_metric_spec dr_eval_slot_metric(dr_eval_slot s);
/* True for the cost slots (steps .. energy_wh). */
bool dr_eval_slot_is_cost(dr_eval_slot s);
/*
 * The slot recording metric m. Fails with DYNRAG_ERR_INVALID naming m (and,
 * when field is not NULL, prefixed "field: ") when the evaluation does not
 * record m: a ranking metric with another cutoff, P, a cutoff on a metric
 * that takes none, DYNRAG_METRIC_DEFAULT or a value out of range.
 */
int dr_eval_slot_of(dynrag_metric_spec m, const char *field, dr_eval_slot *out, dynrag_error *err);

/* ---- plot axes and labels (svg.c) ------------------------------------------ */

/* A plot axis: ticks lo, lo + step, ..., hi (n of them), step = m x 10^k with
 * m in {1, 2, 5}. */
typedef struct dr_axis {
    double lo, hi, step;
    int n;        /* ticks, 2..DR_AXIS_MAX_TICKS */
    int decimals; /* digits after the point that print every tick exactly */
} dr_axis;

#define DR_AXIS_MAX_TICKS 11

/*
 * A "nice" axis covering the data range [dlo, dhi] and zero: lo <= min(0,
 * dlo), hi >= max(0, dhi), both multiples of a 1-2-5 step, with at most
 * DR_AXIS_MAX_TICKS ticks and the smallest such step. Non-finite input is
 * treated as [0, 1]; an empty range (all zero) gives [0, 1]. Never fails.
 */
void dr_axis_nice(double dlo, double dhi, dr_axis *out);

/* Estimated width in pixels of a label of n bytes at the plots' 12 px font
 * (used to keep labels apart; the tests check boxes of this size). */
#define DR_SVG_CHAR_W 7.0
#define DR_SVG_LABEL_H 13.0

/* One evaluation question with its gold data. */
typedef struct dr_eval_item {
    char *id;
    char *question;
    char **answers;  /* QA gold answers (may be 0: unscored) */
    size_t n_answers;
    char **support;  /* titles of supporting paragraphs (HotpotQA) */
    size_t n_support;
    char *gold_key;  /* serialised gold, part of the cache key */
} dr_eval_item;

typedef struct dr_eval_data {
    dr_eval_item *items;
    size_t n;
    dynrag_qrels *qrels; /* BEIR */
    uint64_t qrels_hash;
} dr_eval_data;

/*
 * Loads a QA file (HotpotQA/IRCoT JSONL, NQ-open JSONL, MuSiQue JSON array,
 * generic {question, answers} JSONL; detected per record) or BEIR queries +
 * qrels (only judged queries are kept, in file order). limit 0 = all.
 * Errors name the file and line (or array element).
 */
int dr_eval_data_load(const char *path, dynrag_eval_format fmt, const char *qrels_path,
                      size_t limit, dr_eval_data *out, dynrag_error *err);
void dr_eval_data_free(dr_eval_data *d);

/* Loads the pipeline at path into *out (caller frees with
 * dynrag_pipeline_free). On failure err holds the loader's diagnostics, one
 * per line (file:line:col: key.path: message), or its error when it gave none. */
int dr_eval_pipeline_load(const char *path, dynrag_pipeline **out, dynrag_error *err);

/* The router params of a stage of p as parsed JSON (dynrag_pipeline_router_params),
 * or NULL when out of memory (err set); the caller deletes them. */
struct cJSON *dr_eval_router_params(const dynrag_pipeline *p, const char *stage, dynrag_error *err);

/* The row of a policy given as one option per query (choice[q]; -1: the
 * stage did not run, so the router's own outcome stands): outcomes from the
 * table's forced-run cells. */
void dr_eval_row_of_choices(const dynrag_eval_table *t, const dynrag_eval_compare_options *opt,
                            const int *choice, const char *name, double param,
                            dynrag_eval_row *r);

/* The row of a policy given per query as the options it called (called[q],
 * a bit per option; a cascade, routed or listed) ending on last[q]: quality
 * of last[q], costs summed over every call (last[q] included), every call
 * counted. last[q] < 0: the router's own outcome stands. */
void dr_eval_row_of_chains(const dynrag_eval_table *t, const dynrag_eval_compare_options *opt,
                           const uint32_t *called, const int *last, const char *name,
                           double param, dynrag_eval_row *r);

/* The options first..last in listed order as a bit mask (first < 0 or
 * after last: last alone; last out of range: 0). */
uint32_t dr_eval_span(int first, int last);

#endif
