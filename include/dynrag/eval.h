/*
 * dynrag/eval.h - the evaluation harness: QA and retrieval metrics, routing
 * baselines (always-X, random, random at the router's mix, oracle), threshold
 * sweeps, calibration and offline replay of route logs.
 *
 * The unit of comparison is an outcome table for one routed stage: for each
 * query and each option of the stage, the outcome of running the pipeline
 * with that stage forced to that option (every other stage routed as usual),
 * plus the router's own choice and outcome. Every baseline is computed from
 * the table, so a live run (dynrag_eval_run) and an offline replay of a
 * route log against a saved table (dynrag_eval_replay) give the same numbers
 * for the same outcomes. docs/evaluation.md describes the method and files.
 */
#ifndef DYNRAG_EVAL_H
#define DYNRAG_EVAL_H

#include "dynrag/common.h"
#include "dynrag/metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- classifier evaluation reports (dynrag_classifier_eval) ---------------- */

typedef struct dynrag_eval_report {
    size_t n;         /* examples of this head evaluated */
    size_t n_skipped; /* other heads' examples, or unknown labels */
    size_t n_labels;
    double accuracy, macro_f1;
    double *recall;      /* [n_labels] */
    double *precision;   /* [n_labels] */
    double *f1;          /* [n_labels] */
    uint64_t *confusion; /* [n_labels * n_labels], row = true, column = predicted */
} dynrag_eval_report;

/* Frees a report of dynrag_classifier_eval(). Accepts NULL. */
DYNRAG_API void dynrag_eval_report_free(dynrag_eval_report *r);

/* ---- QA answer metrics (SQuAD normalisation) -------------------------------- */

/* Exact match: 1 when the normalised prediction equals a normalised gold
 * answer, else 0 (max over the n gold answers; 0 when n == 0). */
DYNRAG_API double dynrag_eval_em(const char *prediction, const char *const *golds, size_t n);
/* SQuAD token F1 between normalised prediction and gold, max over golds. */
DYNRAG_API double dynrag_eval_f1(const char *prediction, const char *const *golds, size_t n);
/* 1 when some normalised gold answer occurs in the normalised text on word
 * boundaries ("1969" does not match "19690"), else 0. Empty golds never
 * match. */
DYNRAG_API double dynrag_eval_contains(const char *text, const char *const *golds, size_t n);

/* ---- per-query metrics --------------------------------------------------------- */

/*
 * The metrics an evaluation records per query and option (dynrag_metric,
 * dynrag/metrics.h): em, f1, context, support, ndcg@10, recall@10,
 * recall@100, mrr@10, steps, calls, tokens, usd, latency_ms, energy_wh and
 * quality. Another metric, or another cutoff of a ranking metric (e.g.
 * ndcg@5, or recip_rank without a cutoff), is not recorded: the accessors
 * below read it as NAN and refuse to store it, and options naming it fail
 * with DYNRAG_ERR_INVALID.
 */

/* The storage size of the per-metric arrays of dynrag_eval_outcome and
 * dynrag_eval_row: one value per recorded metric, in an internal order.
 * Read and write them through the accessors, never by index. */
#define DYNRAG_EVAL_SLOTS 15

/* The outcome of one query under one option. A metric is NAN when it does
 * not apply (e.g. EM without gold answers, nDCG for QA). */
typedef struct dynrag_eval_outcome {
    double slots[DYNRAG_EVAL_SLOTS]; /* private: use dynrag_eval_outcome_get/_set */
    double confidence; /* cascade judge confidence of this answer, NAN if none */
    bool ok;           /* false: the run failed (quality counts as 0) */
} dynrag_eval_outcome;

/* An outcome with every metric NAN, confidence NAN and ok false. */
DYNRAG_API void dynrag_eval_outcome_init(dynrag_eval_outcome *o);
/* The value of metric m in o: NAN when it has none or when the evaluation
 * does not record m. */
DYNRAG_API double dynrag_eval_outcome_get(const dynrag_eval_outcome *o, dynrag_metric_spec m);
/* Sets metric m of o to v (NAN: no value). Fails with DYNRAG_ERR_INVALID,
 * naming m, when the evaluation does not record m (o unchanged). */
DYNRAG_API int dynrag_eval_outcome_set(dynrag_eval_outcome *o, dynrag_metric_spec m, double v,
                                       dynrag_error *err);

/* ---- outcome tables -------------------------------------------------------------- */

typedef struct dynrag_eval_table {
    char *stage;               /* e.g. "retrieval_mode" */
    char *router_type;         /* router type, e.g. "rules" */
    size_t n_queries, n_options;
    char **query_ids;          /* [n_queries] */
    char **options;            /* [n_options], in the stage's listed order */
    dynrag_eval_outcome *cells; /* [n_queries][n_options]: forced runs */
    int *router_choice;        /* [n_queries]: the router's final option, -1 unknown */
    int *router_first;         /* [n_queries]: a cascade's first option (else = choice) */
    uint32_t *router_called;   /* [n_queries]: bit o set when the router's run called option o
                                  (a routed cascade's calls need not be consecutive); 0: not
                                  recorded, the options first..choice in listed order */
    uint32_t *router_unavailable; /* [n_queries]: bit o set when option o was unavailable to
                                     the router for that query (the classifier sweep then
                                     re-picks as the router does); 0: all available */
    dynrag_eval_outcome *router_outcome; /* [n_queries]: the router's own run; !ok = use the cell */
    double *router_scores;     /* [n_queries][n_options]: the router's scores (NAN) */
    bool cascade;              /* the router escalates (costs add up over its calls) */
    dynrag_metric_spec default_quality; /* what the outcomes' format calls for: ndcg@10 for
                                           BEIR retrieval outcomes, f1 for QA (the default) */
} dynrag_eval_table;

/* Allocates a table with every cell initialised (dynrag_eval_outcome_init),
 * choices -1 and scores NAN; the caller fills ids, options and cells. Free
 * with dynrag_eval_table_free. */
DYNRAG_API int dynrag_eval_table_new(const char *stage, const char *router_type, size_t n_queries,
                                     size_t n_options, dynrag_eval_table **out, dynrag_error *err);
DYNRAG_API void dynrag_eval_table_free(dynrag_eval_table *t);
/* The index of an option name in t, or -1. */
DYNRAG_API int dynrag_eval_table_option(const dynrag_eval_table *t, const char *name);

/* ---- comparing a router with its baselines ------------------------------------------ */

/* One row of a comparison: a routing policy and what it achieved. */
typedef struct dynrag_eval_row {
    char name[64];   /* "router", "always-<option>", "random", "random-mix", "oracle",
                        or "sweep" for threshold sweep points */
    double param;    /* the threshold of a sweep point; NAN otherwise */
    double means[DYNRAG_EVAL_SLOTS]; /* private: use dynrag_eval_row_get (the mean of each
                                        metric over the queries where it applies) */
    double quality;  /* mean of the quality metric (unscored queries excluded) */
    double cost;     /* mean of the cost metric */
    size_t n_scored; /* queries with a quality value */
    size_t calls[DYNRAG_MAX_OPTIONS]; /* per option: queries that ran it (cascades count every
                                         attempt) */
    double share[DYNRAG_MAX_OPTIONS]; /* per option: share of queries that ended on it */
} dynrag_eval_row;

/* The mean of metric m in row r over the queries where it applies: NAN when
 * it applies to none or when the evaluation does not record m. */
DYNRAG_API double dynrag_eval_row_get(const dynrag_eval_row *r, dynrag_metric_spec m);

typedef enum dynrag_eval_sweep_kind {
    DYNRAG_EVAL_SWEEP_NONE = 0,
    DYNRAG_EVAL_SWEEP_CLASSIFIER, /* argmax of router_scores unless < threshold: escalate */
    DYNRAG_EVAL_SWEEP_CASCADE     /* first option whose confidence >= threshold */
} dynrag_eval_sweep_kind;

/* Options of dynrag_eval_compare() and the replay functions. Call
 * dynrag_eval_compare_options_init() first, then set what differs: every
 * field is taken literally, and a value out of range fails with
 * DYNRAG_ERR_INVALID naming the field. */
typedef struct dynrag_eval_compare_options {
    dynrag_metric_spec quality; /* a recorded metric (default f1); the replay functions also
                                   take metric DYNRAG_METRIC_DEFAULT: the table's
                                   default_quality */
    dynrag_metric_spec cost;    /* a recorded metric (default latency_ms) */
    uint64_t seed;              /* random baselines (default 0) */
    dynrag_eval_sweep_kind sweep; /* default DYNRAG_EVAL_SWEEP_NONE */
    int escalate;               /* classifier sweep: the escalation option's index; -1
                                   (default) or out of range: the last option */
    const double *grid;         /* sweep thresholds (n_grid of them, >= 1); NULL (default):
                                   n_grid points evenly over [grid_lo, grid_hi] */
    size_t n_grid;              /* default 21; >= 2 when grid is NULL */
    double grid_lo, grid_hi;    /* used when grid is NULL, grid_lo < grid_hi (default 0
                                   and 1) */
} dynrag_eval_compare_options;

/* Sets every field of o to its default (above). */
DYNRAG_API void dynrag_eval_compare_options_init(dynrag_eval_compare_options *o);

/* The comparison of one stage. rows: router (when the table has choices),
 * always-X per option, best-single (the always-X of best quality, cheapest
 * among ties), random, random-mix (when the table has choices), oracle;
 * sweep: the threshold sweep points; hull: when n_hull > 0, the cost-quality
 * hull of the single options (dynrag_eval_hull), drawn by the scatter plot. */
typedef struct dynrag_eval_comparison {
    size_t n_rows;
    dynrag_eval_row *rows;
    size_t n_sweep;
    dynrag_eval_row *sweep;
    size_t n_hull;
    struct dynrag_eval_point *hull;
} dynrag_eval_comparison;

/* Computes every baseline of a table. The oracle takes, per query, the
 * option with the best quality and among those the cheapest (ties: fewer
 * steps, then listed order); a query without a quality value goes to its
 * cheapest option. Random picks options uniformly with dynrag's seeded PRNG;
 * random-mix with the router's observed shares. A failed cell counts as
 * quality 0. Fails with DYNRAG_ERR_INVALID for an empty table, more than
 * DYNRAG_MAX_OPTIONS options, or a quality or cost metric the evaluation
 * does not record (naming the field). Free with dynrag_eval_comparison_free. */
DYNRAG_API int dynrag_eval_compare(const dynrag_eval_table *t,
                                   const dynrag_eval_compare_options *opt,
                                   dynrag_eval_comparison *out, dynrag_error *err);
DYNRAG_API void dynrag_eval_comparison_free(dynrag_eval_comparison *c);
/* The row named `name`, or NULL. */
DYNRAG_API const dynrag_eval_row *dynrag_eval_comparison_row(const dynrag_eval_comparison *c,
                                                             const char *name);

/* ---- SVG plots (no dependency) ---------------------------------------------------- */

/* Cost (x) against quality (y): one labelled point per row, the sweep as a
 * line. Returns a complete SVG document (caller frees) or NULL when out of
 * memory. */
DYNRAG_API char *dynrag_eval_svg_scatter(const dynrag_eval_table *t,
                                         const dynrag_eval_comparison *c, const char *quality_name,
                                         const char *cost_name);
/* Stacked bars of the option mix of router, random-mix and oracle. */
DYNRAG_API char *dynrag_eval_svg_mix(const dynrag_eval_table *t, const dynrag_eval_comparison *c);
/* Grouped bars of the calls per option of router, best-single, random-mix
 * and oracle (cascades count every call). */
DYNRAG_API char *dynrag_eval_svg_calls(const dynrag_eval_table *t, const dynrag_eval_comparison *c);

/* ---- live evaluation ----------------------------------------------------------------- */

typedef enum dynrag_eval_format { DYNRAG_EVAL_FORMAT_QA = 0, DYNRAG_EVAL_FORMAT_BEIR } dynrag_eval_format;

/* Options of dynrag_eval_run() and dynrag_eval_calibrate(). Call
 * dynrag_eval_options_init() first, then set what differs: every field is
 * taken literally, and a value out of range fails with DYNRAG_ERR_INVALID
 * naming the field. */
typedef struct dynrag_eval_options {
    const char *pipeline_path; /* required */
    const char *data_path;     /* required: QA JSONL/JSON, or BEIR queries.jsonl */
    dynrag_eval_format format; /* default DYNRAG_EVAL_FORMAT_QA */
    const char *qrels_path;    /* BEIR: required */
    const char *out_dir;       /* required: report.json, report.md, *.svg, cache.jsonl */
    const char *index_dir;     /* NULL (default) = the pipeline's */
    size_t limit;              /* the first `limit` queries; 0 (default) = no limit */
    uint64_t seed;             /* default 0 */
    const char *const *stages; /* stages to compare; NULL (default) = every routed stage */
    size_t n_stages;
    bool no_baselines;         /* only the router run (no forced runs) (false) */
    bool no_cache;             /* neither read nor write OUT/cache.jsonl (false) */
    dynrag_metric_spec quality;  /* oracle's quality, a recorded metric; default metric
                                    DYNRAG_METRIC_DEFAULT: ndcg@10 (BEIR) / f1 (QA) */
    dynrag_metric_spec cost;     /* a recorded metric; default metric DYNRAG_METRIC_DEFAULT:
                                    usd when any run costs money, else latency_ms */
    dynrag_progress_fn progress; /* NULL (default): no progress calls */
    void *progress_user;
} dynrag_eval_options;

/* Sets every field of o to its default (above). */
DYNRAG_API void dynrag_eval_options_init(dynrag_eval_options *o);

/* Counts of a finished run. */
typedef struct dynrag_eval_summary {
    size_t n_queries;
    size_t n_runs;       /* pipeline runs needed (router + forced) */
    size_t cache_hits;   /* of which answered from OUT/cache.jsonl */
    size_t n_failed;     /* runs that failed (their error is in report.json) */
    size_t n_stages;     /* stages compared */
} dynrag_eval_summary;

/*
 * Runs the evaluation: loads the pipeline and the data (errors name file and
 * line), runs the router over every query and, per compared stage, every
 * option forced, reusing OUT/cache.jsonl (keyed by a hash of the pipeline
 * file, index, stage, option, query and gold), then writes OUT/report.json,
 * OUT/report.md, OUT/<stage>-cost-quality.svg, OUT/<stage>-mix.svg,
 * OUT/outcomes.jsonl (the tables, for replay) and OUT/routes.jsonl (the
 * router runs' route-log records). summary may be NULL. *report_md, when
 * non-NULL, receives the Markdown report (caller frees).
 */
DYNRAG_API int dynrag_eval_run(const dynrag_eval_options *opt, dynrag_eval_summary *summary,
                               char **report_md, dynrag_error *err);

/* ---- replay ----------------------------------------------------------------------------- */

/*
 * Offline evaluation of logged routing decisions. outcomes_path is a JSONL
 * table, one line per (query, stage, option):
 *   {"stage":"index","query_id":"q1","query":"...","option":"bm25",
 *    "metrics":{"f1":0.5,"latency_ms":3.1,...},"confidence":0.7}
 * (the format of OUT/outcomes.jsonl), or with top-level "quality" and "cost"
 * numbers instead of "metrics". A classifier or cascade table (its lines'
 * "router" field) gets the threshold sweep when opt->sweep is NONE. Lines
 * may carry "format": "beir"|"qa" (OUT/outcomes.jsonl does); without it a
 * table whose metrics hold ndcg@10 and never f1 is BEIR. opt->quality
 * DYNRAG_METRIC_DEFAULT takes the format's metric (ndcg@10 for BEIR, f1
 * for QA); opt NULL: that quality and the other compare defaults. log_path
 * is a route log: each record's choice for the stage (matched by "id" =
 * query_id, else by "query" text) is the router's decision; its outcome is
 * looked up in the table (for a cascade, the costs of every attempted
 * option add up). stage NULL = the table's first stage. Writes the
 * comparison to *out (free with dynrag_eval_comparison_free) and the
 * table to *table (may be NULL; free with dynrag_eval_table_free).
 */
DYNRAG_API int dynrag_eval_replay(const char *log_path, const char *outcomes_path,
                                  const char *stage, const dynrag_eval_compare_options *opt,
                                  dynrag_eval_table **table, dynrag_eval_comparison *out,
                                  dynrag_error *err);

/* Reads an outcome table file (format above) for one stage (NULL = first)
 * and sets the table's default_quality from its format. Top-level "quality"
 * and "cost" numbers fill opt's quality and cost metrics (opt NULL or quality
 * DYNRAG_METRIC_DEFAULT: the format's metric; cost default latency_ms); a
 * metric the evaluation does not record fails with DYNRAG_ERR_INVALID naming
 * the field. Errors name the file and line. */
DYNRAG_API int dynrag_eval_table_load(const char *outcomes_path, const char *stage,
                           const dynrag_eval_compare_options *opt, dynrag_eval_table **out,
                           dynrag_error *err);

/* ---- calibration ----------------------------------------------------------------------- */

typedef struct dynrag_eval_calibration {
    char param[48];       /* "threshold", "min_similarity" (knn), or the swept parameter */
    double value;         /* the chosen value */
    double quality, cost; /* what the chosen value achieved on the data */
    double share;         /* share of the target option at that value */
    bool met;             /* false: no grid value met the target (closest chosen) */
} dynrag_eval_calibration;

/* Options of the calibrations. Call dynrag_eval_calibrate_options_init()
 * first, then set the stage and one target: every field is taken
 * literally. */
typedef struct dynrag_eval_calibrate_options {
    const char *stage;          /* required (default NULL) */
    const char *target_option;  /* with target_share: the expensive option (NULL) */
    double target_share;        /* in [0, 1]; NAN (default) when not targeted */
    double target_quality;      /* NAN (default) when not targeted */
    double target_cost;         /* outcome tables only: mean cost_usd; NAN (default) when
                                   not targeted (dynrag_eval_calibrate ignores it) */
    const char *out_yaml;       /* NULL (default): do not write; else a full pipeline copy */
} dynrag_eval_calibrate_options;

/* Sets every field of o to its default (above). */
DYNRAG_API void dynrag_eval_calibrate_options_init(dynrag_eval_calibrate_options *o);

/*
 * Sweeps the stage router's threshold (classifier and cascade `threshold`
 * over 101 values, from the logged scores; knn `min_similarity` over 21
 * values in [0, 1], routing every query again at each; other routers fail
 * with DYNRAG_ERR_INVALID) using the cached per-query outcomes of a
 * dynrag_eval_run with the same opt, and picks: with a target share, the value of best quality whose
 * share of target_option is <= the target (the closest share when none is);
 * with a target quality, the cheapest value reaching it (the best quality when
 * none does). When out_yaml is set, writes a copy of the pipeline file with
 * only that router parameter changed (comments kept) and checks that the copy
 * loads with the new value.
 */
DYNRAG_API int dynrag_eval_calibrate(const dynrag_eval_options *opt,
                                     const dynrag_eval_calibrate_options *copt,
                                     dynrag_eval_calibration *out, dynrag_error *err);

/* Writes a copy of the pipeline YAML at in_path to out_path with
 * stages.<stage>.router.params.<param> set to value (added when absent),
 * keeping every other byte; the copy is validated by loading it. */
DYNRAG_API int dynrag_eval_patch_router_param(const char *in_path, const char *out_path,
                                              const char *stage, const char *param, double value,
                                              dynrag_error *err);

/* ---- routing-literature summaries ------------------------------------------------- */

/* One operating point of a policy: mean cost and mean quality. */
typedef struct dynrag_eval_point {
    double cost, quality;
} dynrag_eval_point;

/*
 * The non-decreasing upper convex hull of points (RouterBench): sorted by
 * cost, starting at the best of the cheapest points, keeping only points
 * that raise quality and lie on the upper concave chain. Points with a NAN
 * or infinite coordinate are ignored. Writes at most n points to out (in
 * increasing cost and quality) and returns how many.
 */
DYNRAG_API size_t dynrag_eval_hull(const dynrag_eval_point *pts, size_t n, dynrag_eval_point *out);

/*
 * AIQ (RouterBench): the area under the hull of pts over the cost range
 * [c_lo, c_hi], divided by c_hi - c_lo. The curve is the hull interpolated
 * linearly, flat at its best quality beyond its dearest point, and 0 below
 * its cheapest point (a policy cannot spend less than that). With an empty
 * range (c_hi <= c_lo) it is the curve's value at c_lo. NAN when no point is
 * finite.
 */
DYNRAG_API double dynrag_eval_aiq(const dynrag_eval_point *pts, size_t n, double c_lo, double c_hi);

/*
 * RouteLLM's summaries of a strong/weak pair. Point i of a policy sweep
 * calls the strong model on a share x[i] in [0, 1] of the queries and reaches
 * quality q[i]; its PGR (performance gap recovered) is
 * (q[i] - q_weak) / (q_strong - q_weak). PGR at a budget x is the best PGR of
 * the points with x[i] <= x, and 0 (the weak model alone) when none fits;
 * APGR is its integral over x in [0, 1]. NAN when q_strong <= q_weak or n is 0.
 */
DYNRAG_API double dynrag_eval_apgr(const double *x, const double *q, size_t n, double q_weak,
                        double q_strong);
/* CPT(target) (RouteLLM): the smallest share x[i] of strong calls among the
 * points whose PGR reaches target (e.g. 0.5 for CPT(50%)); NAN when none does
 * or the pair is degenerate as above. */
DYNRAG_API double dynrag_eval_cpt(const double *x, const double *q, size_t n, double q_weak,
                       double q_strong, double target);

/* ---- evaluation on outcome tables ---------------------------------------------------- */

/* Options of dynrag_eval_outcomes() and dynrag_eval_calibrate_outcomes().
 * Call dynrag_eval_outcomes_options_init() first, then set what differs:
 * every field is taken literally. */
typedef struct dynrag_eval_outcomes_options {
    const char *pipeline_path; /* required: its generator stage is replayed */
    const char *outcomes_path; /* required: an outcome table (docs/outcomes.md) */
    const char *out_dir;       /* report.json, report.md, generator-*.svg; NULL (default):
                                  write nothing */
    uint64_t seed;             /* random baselines (default 0) */
    const char *strong;        /* APGR/CPT strong option; NULL (default) = the best single */
    const char *weak;          /* weak option; NULL (default) = the cheapest single (worst
                                  among ties) */
    const char *sweep_param;   /* router parameter swept for AIQ/APGR/CPT and calibration;
                                  NULL (default) = willingness_to_pay, wtp or threshold, the
                                  first the router's params have; "none" = no sweep */
    const double *grid;        /* sweep values (n_grid >= 1 of them); NULL (default) = the
                                  parameter's default grid */
    size_t n_grid;
} dynrag_eval_outcomes_options;

/* Sets every field of o to its default (above). */
DYNRAG_API void dynrag_eval_outcomes_options_init(dynrag_eval_outcomes_options *o);

/* The headline figures of an outcome evaluation (all queries). */
typedef struct dynrag_eval_outcomes_summary {
    size_t n_queries, n_tasks;
    size_t n_missing;      /* (query, option) pairs of the pipeline without an outcome */
    double router_quality, router_cost;
    double aiq_router;     /* AIQ of the router's point and sweep */
    double aiq_singles;    /* AIQ of the single options' hull */
    double apgr, cpt50, cpt80; /* NAN when the strong/weak pair is degenerate */
    char sweep_param[48];  /* "" when no sweep */
    size_t n_sweep;
    double route_us_p50;   /* routing time per query (the router's decisions) */
} dynrag_eval_outcomes_summary;

/*
 * Replays the generator stage of a pipeline over an outcome table, calling
 * no model: the stage's router routes each query's text; the chosen option's
 * recorded quality and cost stand for the run. A cascade calls options in
 * listed order from the router's first choice and pays for every call; its
 * judge reads the recorded responses (the agreement judge compares the
 * answers of the options called so far, so it first judges after the second
 * call). Every option of the stage must be an option of the table (else
 * DYNRAG_ERR_INVALID naming it); table options the stage lacks are ignored.
 * A missing outcome counts as quality 0 and cost 0. Computes the baselines of
 * dynrag_eval_compare (quality "quality", cost "usd"), per task as well, the
 * router's parameter sweep and the summaries (AIQ over the single options'
 * cost range, APGR and CPT(50%/80%) of the strong/weak pair), and writes
 * OUT/report.json, OUT/report.md, OUT/generator-cost-quality.svg and
 * OUT/generator-calls.svg. summary and report_md (caller frees) may be NULL.
 */
DYNRAG_API int dynrag_eval_outcomes(const dynrag_eval_outcomes_options *opt,
                         dynrag_eval_outcomes_summary *summary, char **report_md,
                         dynrag_error *err);

/*
 * Calibration on an outcome table: sweeps the router parameter (opt's
 * sweep_param, over 101 values by default: [0, 1] for a threshold or floor,
 * 0 and geometric values for a willingness to pay) and picks, with
 * target_cost (not NAN): the best quality whose mean cost_usd is <= it; with
 * target_option/target_share: the best quality whose share of queries
 * calling that option is <= it; with target_quality: the cheapest value
 * reaching it. When none meets the target the closest value is chosen and
 * out->met is false. copt->stage, when set, must be "generator"; out_yaml as
 * for dynrag_eval_calibrate. out->share is the target option's call share
 * (the last option's without one).
 */
DYNRAG_API int dynrag_eval_calibrate_outcomes(const dynrag_eval_outcomes_options *opt,
                                   const dynrag_eval_calibrate_options *copt,
                                   dynrag_eval_calibration *out, dynrag_error *err);

/* ---- silver labels (Adaptive-RAG) ---------------------------------------------------- */

/* Options of dynrag_eval_label(). Call dynrag_label_options_init() first,
 * then set what differs: every field is taken literally, and a value out
 * of range fails with DYNRAG_ERR_INVALID naming the field. */
typedef struct dynrag_label_options {
    const char *pipeline_path; /* required: its retrieval_mode stage has none/single/multi options */
    const char *data_path;     /* required: a QA file with gold answers (formats of dynrag_eval_run) */
    const char *out_path;      /* required: JSONL {"text","label","source","option","quality"} */
    const char *work_dir;      /* required: the evaluation's outputs and cache */
    const char *index_dir;     /* NULL (default) = the pipeline's */
    size_t limit;              /* the first `limit` questions; 0 (default) = no limit */
    dynrag_metric_spec success; /* the success metric, a recorded one (default context) */
    double min_quality;        /* success = metric >= min_quality, a finite number (default
                                  0.5; 0: any run that has the metric succeeds) */
    const char *fallback_label; /* label when no mode succeeds; NULL (default) = leave the
                                   question out */
    const char *source;        /* "source" of every line; NULL (default) =
                                  "silver:<data file name>" */
    dynrag_progress_fn progress; /* NULL (default): no progress calls */
    void *progress_user;
} dynrag_label_options;

/* Sets every field of o to its default (above). */
DYNRAG_API void dynrag_label_options_init(dynrag_label_options *o);

typedef struct dynrag_label_stats {
    size_t n_queries;   /* questions evaluated */
    size_t n_labelled;  /* lines written */
    size_t n_fallback;  /* labelled with the fallback label */
    size_t n_skipped;   /* no mode succeeded and no fallback */
    size_t per_label[3]; /* A, B, C */
} dynrag_label_stats;

/*
 * Silver labels the Adaptive-RAG way: runs every retrieval_mode option of the
 * pipeline (forced, through dynrag_eval_run, with its cache) on each question
 * and labels the question with the cheapest mode that succeeds: A (kind
 * none) before B (single) before C (multi). The output file is written
 * atomically. stats may be NULL.
 */
DYNRAG_API int dynrag_eval_label(const dynrag_label_options *opt, dynrag_label_stats *stats,
                                 dynrag_error *err);

#ifdef __cplusplus
}
#endif
#endif
