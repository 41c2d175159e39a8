/* cmd_eval.c - `dynrag eval` (live evaluation and replay) and `dynrag calibrate`. */
#define _GNU_SOURCE
#include "cli.h"

#include "dynrag/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Splits a comma list in place into at most max items. */
static size_t split_list(char *s, const char **items, size_t max)
{
    size_t n = 0;
    for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ","))
        if (*tok)
            items[n++] = tok;
    return n;
}

/* Parses the value of a metric flag (--quality, --cost, --success) into
 * *out: a metric name dynrag_metric_parse() reads that the evaluation also
 * records (the check a scratch outcome's setter makes, so ndcg@5 fails here
 * rather than after loading the pipeline). Returns false after reporting a
 * usage error. */
static bool parse_eval_metric(const char *cmd, const char *flag, const char *v,
                              dynrag_metric_spec *out)
{
    dynrag_error err;
    dynrag_error_clear(&err);
    dynrag_metric_spec m;
    dynrag_eval_outcome scratch;
    dynrag_eval_outcome_init(&scratch);
    if (dynrag_metric_parse(v, &m, &err) != DYNRAG_OK ||
        dynrag_eval_outcome_set(&scratch, m, 0, &err) != DYNRAG_OK) {
        cli_usage_error(cmd, "%s: %s", flag, dynrag_errmsg(&err));
        return false;
    }
    *out = m;
    return true;
}

/* Flags shared by eval and calibrate; returns 1 when argv[*i] was consumed,
 * 0 when unknown, -1 on a bad value (already reported). */
static int common_flag(const char *cmd, int argc, char **argv, int *i, dynrag_eval_options *o,
                       char *stages_buf, size_t stages_size, const char **stages)
{
    const char *a = argv[*i];
    bool has_val = *i + 1 < argc;
    const char *v = has_val ? argv[*i + 1] : NULL;
    long long n;
    if (!has_val)
        return 0;
    if (strcmp(a, "--pipeline") == 0)
        o->pipeline_path = v;
    else if (strcmp(a, "--data") == 0)
        o->data_path = v;
    else if (strcmp(a, "--qrels") == 0)
        o->qrels_path = v;
    else if (strcmp(a, "--index") == 0)
        o->index_dir = v;
    else if (strcmp(a, "--format") == 0) {
        if (strcmp(v, "qa") == 0)
            o->format = DYNRAG_EVAL_FORMAT_QA;
        else if (strcmp(v, "beir") == 0)
            o->format = DYNRAG_EVAL_FORMAT_BEIR;
        else
            return cli_usage_error(cmd, "--format: expected beir or qa, got '%s'", v), -1;
    } else if (strcmp(a, "--limit") == 0) {
        if (!cli_parse_int(cmd, "--limit", v, 1, 100000000, &n))
            return -1;
        o->limit = (size_t)n;
    } else if (strcmp(a, "--seed") == 0) {
        if (!cli_parse_int(cmd, "--seed", v, 0, INT64_MAX, &n))
            return -1;
        o->seed = (uint64_t)n;
    } else if (strcmp(a, "--stages") == 0) {
        snprintf(stages_buf, stages_size, "%s", v);
        o->n_stages = split_list(stages_buf, stages, 6);
        o->stages = stages;
    } else if (strcmp(a, "--quality") == 0) {
        if (!parse_eval_metric(cmd, "--quality", v, &o->quality))
            return -1;
    } else if (strcmp(a, "--cost") == 0) {
        if (!parse_eval_metric(cmd, "--cost", v, &o->cost))
            return -1;
    } else {
        return 0;
    }
    (*i)++;
    return 1;
}

/* Outcome-table flags shared by eval and calibrate; returns 1 when argv[*i]
 * was consumed, 0 when unknown, -1 on a bad value (already reported). grid
 * has room for max values. */
static int outcome_flag(const char *cmd, int argc, char **argv, int *i,
                        dynrag_eval_outcomes_options *oo, double *grid, size_t max)
{
    const char *a = argv[*i];
    if (*i + 1 >= argc)
        return 0;
    const char *v = argv[*i + 1];
    if (strcmp(a, "--strong") == 0) {
        oo->strong = v;
    } else if (strcmp(a, "--weak") == 0) {
        oo->weak = v;
    } else if (strcmp(a, "--sweep") == 0) {
        oo->sweep_param = v;
    } else if (strcmp(a, "--grid") == 0) {
        char buf[4096];
        if (strlen(v) >= sizeof buf)
            return cli_usage_error(cmd, "--grid: list too long"), -1;
        snprintf(buf, sizeof buf, "%s", v);
        size_t n = 0;
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (n == max)
                return cli_usage_error(cmd, "--grid: at most %zu values", max), -1;
            if (!cli_parse_double(cmd, "--grid", tok, -1e12, 1e12, &grid[n]))
                return -1;
            n++;
        }
        if (n == 0)
            return cli_usage_error(cmd, "--grid: expected comma-separated numbers"), -1;
        oo->grid = grid;
        oo->n_grid = n;
    } else {
        return 0;
    }
    (*i)++;
    return 1;
}

#define MAX_GRID 1001

/* `dynrag eval --pipeline P --outcomes T`. */
static int run_outcomes(dynrag_eval_outcomes_options *oo)
{
    if (!oo->out_dir)
        oo->out_dir = "eval-out";
    dynrag_eval_outcomes_summary sum;
    char *md = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_eval_outcomes(oo, &sum, &md, &err) != DYNRAG_OK) {
        cli_error("eval", "%s", dynrag_errmsg(&err));
        return CLI_FAIL;
    }
    fputs(md, stdout);
    free(md);
    fprintf(stderr, "eval: %zu queries, %zu tasks, %zu missing outcomes; router quality %.4f, "
                    "cost_usd %.4g; wrote %s/report.md, report.json\n",
            sum.n_queries, sum.n_tasks, sum.n_missing, sum.router_quality, sum.router_cost,
            oo->out_dir);
    return CLI_OK;
}

static void print_comparison(const dynrag_eval_table *t, const dynrag_eval_comparison *c,
                             const char *qname, const char *cname)
{
    printf("stage %s (router %s), %zu queries\n%-22s %10s %12s  calls per option\n", t->stage,
           t->router_type, t->n_queries, "policy", qname, cname);
    for (size_t r = 0; r < c->n_rows; r++) {
        printf("%-22s %10.4f %12.4g ", c->rows[r].name, c->rows[r].quality, c->rows[r].cost);
        for (size_t o = 0; o < t->n_options; o++)
            printf(" %s=%zu", t->options[o], c->rows[r].calls[o]);
        printf("\n");
    }
    for (size_t s = 0; s < c->n_sweep; s++)
        printf("sweep threshold %-6.3g %10.4f %12.4g\n", c->sweep[s].param, c->sweep[s].quality,
               c->sweep[s].cost);
}

static int run_replay(const char *log, const char *outcomes, const dynrag_eval_options *o)
{
    dynrag_eval_compare_options co;
    dynrag_eval_compare_options_init(&co);
    co.quality = o->quality; /* DYNRAG_METRIC_DEFAULT unless --quality: the table's */
    if (o->cost.metric != DYNRAG_METRIC_DEFAULT)
        co.cost = o->cost; /* else the compare default, latency_ms */
    co.seed = o->seed;
    dynrag_eval_table *t = NULL;
    dynrag_eval_comparison c;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_eval_replay(log, outcomes, o->n_stages ? o->stages[0] : NULL, &co, &t, &c, &err) !=
        DYNRAG_OK) {
        cli_error("eval", "%s", dynrag_errmsg(&err));
        return CLI_FAIL;
    }
    if (co.quality.metric == DYNRAG_METRIC_DEFAULT)
        co.quality = t->default_quality;
    char qname[48], cname[48];
    print_comparison(t, &c, dynrag_metric_key(co.quality, qname, sizeof qname),
                     dynrag_metric_key(co.cost, cname, sizeof cname));
    dynrag_eval_comparison_free(&c);
    dynrag_eval_table_free(t);
    return CLI_OK;
}

int cmd_eval(int argc, char **argv)
{
    dynrag_eval_options o;
    dynrag_eval_options_init(&o);
    o.format = (dynrag_eval_format)-1;
    char stages_buf[256];
    const char *stages[6];
    const char *replay = NULL, *outcomes = NULL;
    bool format_set = false, outcome_flags = false;
    dynrag_eval_outcomes_options oo;
    dynrag_eval_outcomes_options_init(&oo);
    static double grid[MAX_GRID];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = common_flag("eval", argc, argv, &i, &o, stages_buf, sizeof stages_buf, stages);
        if (r < 0)
            return CLI_USAGE;
        if (r > 0) {
            format_set = format_set || strcmp(a, "--format") == 0;
            continue;
        }
        if ((r = outcome_flag("eval", argc, argv, &i, &oo, grid, MAX_GRID)) < 0)
            return CLI_USAGE;
        if (r > 0) {
            outcome_flags = true;
            continue;
        }
        if (strcmp(a, "--out") == 0 && i + 1 < argc)
            o.out_dir = argv[++i];
        else if (strcmp(a, "--replay") == 0 && i + 1 < argc)
            replay = argv[++i];
        else if (strcmp(a, "--outcomes") == 0 && i + 1 < argc)
            outcomes = argv[++i];
        else if (strcmp(a, "--no-baselines") == 0)
            o.no_baselines = true;
        else if (strcmp(a, "--no-cache") == 0)
            o.no_cache = true;
        else
            return cli_usage_error("eval", "unknown or incomplete option '%s'", a);
    }
    if (outcomes && !replay && o.pipeline_path) {
        if (o.data_path || format_set || o.qrels_path || o.index_dir || o.n_stages || o.limit ||
            o.quality.metric != DYNRAG_METRIC_DEFAULT || o.cost.metric != DYNRAG_METRIC_DEFAULT ||
            o.no_baselines || o.no_cache)
            return cli_usage_error("eval", "--pipeline with --outcomes takes only --out, --seed, "
                                           "--strong, --weak, --sweep and --grid");
        oo.pipeline_path = o.pipeline_path;
        oo.outcomes_path = outcomes;
        oo.out_dir = o.out_dir;
        oo.seed = o.seed;
        return run_outcomes(&oo);
    }
    if (outcome_flags)
        return cli_usage_error("eval", "--strong, --weak, --sweep and --grid need --pipeline "
                                       "and --outcomes");
    if (replay || outcomes) {
        if (!replay || !outcomes)
            return cli_usage_error("eval", "--replay LOG needs --outcomes TABLE (and vice versa)");
        return run_replay(replay, outcomes, &o);
    }
    if (!o.pipeline_path || !o.data_path || !format_set)
        return cli_usage_error("eval", "--pipeline, --data and --format are required");
    if (o.format == DYNRAG_EVAL_FORMAT_BEIR && !o.qrels_path)
        return cli_usage_error("eval", "--format beir needs --qrels FILE");
    if (!o.out_dir)
        o.out_dir = "eval-out";
    cli_progress prog;
    cli_progress_init(&prog, "eval");
    o.progress = cli_progress_cb;
    o.progress_user = &prog;
    dynrag_eval_summary sum;
    char *md = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_eval_run(&o, &sum, &md, &err);
    cli_progress_done(&prog);
    if (rc != DYNRAG_OK) {
        cli_error("eval", "%s", dynrag_errmsg(&err));
        return CLI_FAIL;
    }
    fputs(md, stdout);
    free(md);
    fprintf(stderr, "eval: %zu queries, %zu runs (%zu cache hits), %zu failed; wrote %s/report.md, "
                    "report.json\n",
            sum.n_queries, sum.n_runs, sum.cache_hits, sum.n_failed, o.out_dir);
    return CLI_OK;
}

int cmd_calibrate(int argc, char **argv)
{
    dynrag_eval_options o;
    dynrag_eval_options_init(&o);
    char stages_buf[256];
    const char *stages[6];
    dynrag_eval_calibrate_options co;
    dynrag_eval_calibrate_options_init(&co);
    char share_buf[256];
    bool format_set = false, outcome_flags = false;
    const char *outcomes = NULL;
    dynrag_eval_outcomes_options oo;
    dynrag_eval_outcomes_options_init(&oo);
    static double grid[MAX_GRID];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = common_flag("calibrate", argc, argv, &i, &o, stages_buf, sizeof stages_buf, stages);
        if (r < 0)
            return CLI_USAGE;
        if (r > 0) {
            format_set = format_set || strcmp(a, "--format") == 0;
            continue;
        }
        if ((r = outcome_flag("calibrate", argc, argv, &i, &oo, grid, MAX_GRID)) < 0)
            return CLI_USAGE;
        if (r > 0) {
            outcome_flags = outcome_flags || strcmp(a, "--sweep") == 0 || strcmp(a, "--grid") == 0;
            if (strcmp(a, "--strong") == 0 || strcmp(a, "--weak") == 0)
                return cli_usage_error("calibrate", "unknown or incomplete option '%s'", a);
            continue;
        }
        if (strcmp(a, "--outcomes") == 0 && i + 1 < argc) {
            outcomes = argv[++i];
        } else if (strcmp(a, "--target-cost") == 0 && i + 1 < argc) {
            if (!cli_parse_double("calibrate", "--target-cost", argv[++i], 0, 1e12, &co.target_cost))
                return CLI_USAGE;
        } else if (strcmp(a, "--stage") == 0 && i + 1 < argc) {
            co.stage = argv[++i];
        } else if (strcmp(a, "--out") == 0 && i + 1 < argc) {
            co.out_yaml = argv[++i];
        } else if (strcmp(a, "--work") == 0 && i + 1 < argc) {
            o.out_dir = argv[++i];
        } else if (strcmp(a, "--target-share") == 0 && i + 1 < argc) {
            snprintf(share_buf, sizeof share_buf, "%s", argv[++i]);
            char *eq = strrchr(share_buf, '=');
            if (eq == NULL || eq == share_buf)
                return cli_usage_error("calibrate", "--target-share: expected OPTION=SHARE");
            *eq = '\0';
            co.target_option = share_buf;
            if (!cli_parse_double("calibrate", "--target-share", eq + 1, 0, 1, &co.target_share))
                return CLI_USAGE;
        } else if (strcmp(a, "--target-quality") == 0 && i + 1 < argc) {
            /* Every quality metric (answer metrics, ranking metrics, an
             * outcome table's quality) lies in [0, 1]. */
            if (!cli_parse_double("calibrate", "--target-quality", argv[++i], 0, 1,
                                  &co.target_quality))
                return CLI_USAGE;
        } else {
            return cli_usage_error("calibrate", "unknown or incomplete option '%s'", a);
        }
    }
    const char *ins[] = {o.pipeline_path, outcomes, o.data_path};
    if (co.out_yaml && !cli_check_output("calibrate", "--out", co.out_yaml, ins, 3, true))
        return CLI_FAIL;
    if (outcomes) {
        if (!o.pipeline_path)
            return cli_usage_error("calibrate", "--outcomes needs --pipeline");
        if (o.data_path || format_set || o.qrels_path || o.index_dir || o.out_dir)
            return cli_usage_error("calibrate", "--outcomes does not take --data, --format, "
                                                "--qrels, --index or --work");
        if (!isnan(co.target_cost) + !isnan(co.target_share) + !isnan(co.target_quality) != 1)
            return cli_usage_error("calibrate", "give exactly one of --target-cost, "
                                                "--target-share and --target-quality");
        oo.pipeline_path = o.pipeline_path;
        oo.outcomes_path = outcomes;
        oo.seed = o.seed;
        dynrag_eval_calibration cal;
        dynrag_error err;
        dynrag_error_clear(&err);
        if (dynrag_eval_calibrate_outcomes(&oo, &co, &cal, &err) != DYNRAG_OK) {
            cli_error("calibrate", "%s", dynrag_errmsg(&err));
            return CLI_FAIL;
        }
        printf("stages.generator.router.params.%s = %g  (quality %.4f, cost_usd %.4g, share %.3f%s)\n",
               cal.param, cal.value, cal.quality, cal.cost, cal.share,
               cal.met ? "" : "; target NOT met: closest value");
        if (co.out_yaml)
            printf("wrote %s (a copy of %s with only that value changed); use it with --pipeline "
                   "%s\n",
                   co.out_yaml, o.pipeline_path, co.out_yaml);
        return cal.met ? CLI_OK : CLI_FAIL;
    }
    if (outcome_flags || !isnan(co.target_cost))
        return cli_usage_error("calibrate", "--sweep, --grid and --target-cost need --outcomes");
    if (!o.pipeline_path || !o.data_path || !format_set || !co.stage)
        return cli_usage_error("calibrate", "--pipeline, --data, --format and --stage are required");
    if (isnan(co.target_share) == isnan(co.target_quality))
        return cli_usage_error("calibrate", "give exactly one of --target-share and --target-quality");
    if (o.format == DYNRAG_EVAL_FORMAT_BEIR && !o.qrels_path)
        return cli_usage_error("calibrate", "--format beir needs --qrels FILE");
    if (!o.out_dir)
        o.out_dir = "eval-out";
    cli_progress prog;
    cli_progress_init(&prog, "calibrate");
    o.progress = cli_progress_cb;
    o.progress_user = &prog;
    dynrag_eval_calibration cal;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_eval_calibrate(&o, &co, &cal, &err);
    cli_progress_done(&prog);
    if (rc != DYNRAG_OK) {
        cli_error("calibrate", "%s", dynrag_errmsg(&err));
        return CLI_FAIL;
    }
    printf("stages.%s.router.params.%s = %g  (quality %.4f, cost %.4g, share %.3f%s)%s\n", co.stage,
           cal.param, cal.value, cal.quality, cal.cost, cal.share,
           cal.met ? "" : "; target NOT met: closest value", "");
    if (co.out_yaml)
        printf("wrote %s (a copy of %s with only that value changed); use it with --pipeline %s\n",
               co.out_yaml, o.pipeline_path, co.out_yaml);
    return cal.met ? CLI_OK : CLI_FAIL;
}

int cmd_label(int argc, char **argv)
{
    dynrag_label_options o;
    dynrag_label_options_init(&o);
    long long lim = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool val = i + 1 < argc;
        if (strcmp(a, "--pipeline") == 0 && val) {
            o.pipeline_path = argv[++i];
        } else if (strcmp(a, "--data") == 0 && val) {
            o.data_path = argv[++i];
        } else if (strcmp(a, "--out") == 0 && val) {
            o.out_path = argv[++i];
        } else if (strcmp(a, "--work") == 0 && val) {
            o.work_dir = argv[++i];
        } else if (strcmp(a, "--index") == 0 && val) {
            o.index_dir = argv[++i];
        } else if (strcmp(a, "--limit") == 0 && val) {
            if (!cli_parse_int("label", a, argv[++i], 1, 100000000, &lim))
                return CLI_USAGE;
            o.limit = (size_t)lim;
        } else if (strcmp(a, "--success") == 0 && val) {
            if (!parse_eval_metric("label", "--success", argv[++i], &o.success))
                return CLI_USAGE;
        } else if (strcmp(a, "--min-quality") == 0 && val) {
            if (!cli_parse_double("label", a, argv[++i], 0, 1e9, &o.min_quality))
                return CLI_USAGE;
        } else if (strcmp(a, "--fallback") == 0 && val) {
            o.fallback_label = argv[++i];
            if (strcmp(o.fallback_label, "A") && strcmp(o.fallback_label, "B") &&
                strcmp(o.fallback_label, "C"))
                return cli_usage_error("label", "--fallback: expected A, B or C");
        } else if (strcmp(a, "--source") == 0 && val) {
            o.source = argv[++i];
        } else {
            return cli_usage_error("label", "unknown or incomplete option '%s'", a);
        }
    }
    if (!o.pipeline_path || !o.data_path || !o.out_path)
        return cli_usage_error("label", "--pipeline, --data and --out are required");
    const char *ins[] = {o.pipeline_path, o.data_path};
    if (!cli_check_output("label", "--out", o.out_path, ins, 2, true))
        return CLI_FAIL;
    if (!o.work_dir)
        o.work_dir = "label-work";
    cli_progress prog;
    cli_progress_init(&prog, "label");
    o.progress = cli_progress_cb;
    o.progress_user = &prog;
    dynrag_label_stats st;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_eval_label(&o, &st, &err);
    cli_progress_done(&prog);
    if (rc != DYNRAG_OK) {
        cli_error("label", "%s", dynrag_errmsg(&err));
        return CLI_FAIL;
    }
    printf("labelled %zu of %zu questions (A %zu, B %zu, C %zu; %zu by fallback, %zu left out) "
           "-> %s\n",
           st.n_labelled, st.n_queries, st.per_label[0], st.per_label[1], st.per_label[2],
           st.n_fallback, st.n_skipped, o.out_path);
    return CLI_OK;
}
