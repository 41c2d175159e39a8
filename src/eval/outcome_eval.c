/*
 * outcome_eval.c - evaluation on outcome tables: the generator stage of a
 * pipeline replayed over recorded per-query outcomes of real LLMs (RouterDC,
 * RouterBench; docs/outcomes.md) without calling any model, with the
 * baselines of compare.c, per-task tables, the router's parameter sweep and
 * the routing-literature summaries of routing.c. Also the calibration of that
 * parameter on an outcome table. docs/evaluation.md describes the method.
 */
#include "dynrag/eval.h"

#include "core/util.h"
#include "dynrag/alloc.h"
#include "dynrag/router.h"
#include "eval/eval_internal.h"
#include "eval/outcomes.h"
#include "pipeline/spec.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_GRID 21
#define CALIBRATE_GRID 101

/* Everything one evaluation holds. */
typedef struct oeval {
    dynrag_pipeline *p;
    const char *path;        /* the pipeline file (borrowed from the options) */
    const char *router_type; /* the generator's router (owned by p) */
    size_t n_opt;            /* the generator's options */
    const char *opt_name[DYNRAG_MAX_OPTIONS];
    dr_outcome_table ot;
    int map[DYNRAG_MAX_OPTIONS]; /* stage option -> table option */
    dynrag_eval_table *t;    /* the whole table, the router's choices filled */
    dynrag_eval_compare_options co;
    size_t n_missing;
    double route_us_p50, route_us_p90;
    /* The sweep: values and each value's per-query chains. */
    char param[48];
    char costless[48]; /* a willingness-to-pay param not swept: the table has no cost */
    double *grid;
    size_t n_grid;
    int *sw_last;        /* [n_grid][n_rows] */
    uint32_t *sw_called; /* [n_grid][n_rows] */
    /* Tasks: names in first-seen order and each row's task index. */
    char **tasks;
    size_t n_tasks;
    size_t *row_task;
} oeval;

static void oeval_free(oeval *e)
{
    dynrag_eval_table_free(e->t);
    dr_free(e->grid);
    dr_free(e->sw_last);
    dr_free(e->sw_called);
    dr_free(e->tasks); /* names are borrowed from the outcome table */
    dr_free(e->row_task);
    dr_outcomes_free(&e->ot);
    dynrag_pipeline_free(e->p);
    memset(e, 0, sizeof(*e));
}

/* ---- the replay ------------------------------------------------------------- */

static const dr_outcome *outcome_of(const oeval *e, size_t q, int o)
{
    return &e->ot.rows[q].o[e->map[o]];
}

/* The generator router's params as parsed JSON (the caller deletes them). */
static cJSON *router_params(const oeval *e, dynrag_error *err)
{
    return dr_eval_router_params(e->p, "generator", err);
}

/* What the cascade's chain reads of its router's params. */
typedef struct cascade_params {
    double threshold;
    char judge[32];
    bool agreement; /* the agreement judge compares the answers called so far */
    size_t samples; /* ... once this many have answered (the judge's `samples`) */
    bool text;      /* the judge reads the answer text */
} cascade_params;

static void cascade_params_get(const cJSON *params, cascade_params *cp)
{
    /* Validated, defaults filled in by the loader (2 <= samples <= 16). */
    cp->threshold = dr_param_num(params, "threshold", 0.5);
    cp->samples = (size_t)dr_param_int(params, "samples", 3);
    dr_strlcpy(cp->judge, dr_param_str(params, "judge", "self_route"), sizeof cp->judge);
    cp->agreement = strcmp(cp->judge, "agreement") == 0;
    cp->text = strcmp(cp->judge, "self_route") == 0 || cp->agreement ||
               strcmp(cp->judge, "scorer") == 0;
}

/*
 * The cascade from option `first` for row q: judges each recorded answer
 * and, while the confidence is below the threshold, escalates to the option
 * the cascade router picks next (dynrag_router_cascade_next: the next in
 * listed order, or with a quality_model the routed choice). The agreement
 * judge compares the answers called so far, as the engine compares the
 * `samples` answers it draws from one option: until `samples` options have
 * answered, the next one is called without judging. The scorer judge (held by the cascade
 * router r) reads the query, the option and its recorded answer. Sets *last
 * and *called (a bit per option called).
 */
static int cascade_chain(const oeval *e, const dynrag_router *r, const cascade_params *cp,
                         size_t q, int first, int *last, uint32_t *called_mask,
                         dynrag_error *err)
{
    bool agreement = cp->agreement, text = cp->text;
    const char *answers[DYNRAG_MAX_OPTIONS];
    bool called[DYNRAG_MAX_OPTIONS] = {false};
    size_t na = 0;
    int cur = first;
    for (;;) {
        called[cur] = true;
        const dr_outcome *o = outcome_of(e, q, cur);
        if (text && o->present && o->response == NULL)
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "outcomes: query '%s': option '%s' has no recorded \"response\" "
                              "(the cascade's %s judge reads it)",
                              e->ot.rows[q].id, e->opt_name[cur], cp->judge);
        answers[na++] = o->response ? o->response : "";
        double conf = -INFINITY; /* agreement with too few answers: call another */
        if (!(agreement && na < cp->samples)) {
            /* A judge that reads no text has nothing recorded to judge (no
             * log-probabilities): the answer stands. */
            if (!text && o->response == NULL)
                break;
            dynrag_answer v;
            dynrag_answer_init(&v);
            v.text = answers[na - 1];
            v.samples = answers;
            v.n_samples = na;
            v.query = e->ot.rows[q].query;
            v.option = e->opt_name[cur];
            int rc = dynrag_router_judge(r, &v, &conf, NULL, 0, err);
            if (rc != DYNRAG_OK)
                return rc;
            if (conf >= cp->threshold)
                break;
        }
        int next = -1;
        int rc = dynrag_router_cascade_next(r, e->ot.rows[q].query, called, cur, conf, &next, err);
        if (rc != DYNRAG_OK)
            return rc;
        if (next < 0)
            break;
        cur = next;
    }
    *last = cur;
    *called_mask = 0;
    for (size_t i = 0; i < e->n_opt; i++)
        *called_mask |= called[i] ? (uint32_t)1 << i : 0;
    return DYNRAG_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * Routes every row with a router built from the stage's current params:
 * first[q] (first may be NULL) is the router's choice, last[q] where its
 * cascade stopped (the same without a cascade), called[q] a bit per option
 * called. scores (may be NULL) gets the router's scores ([n_rows][n_options]); us (may be NULL) the routing time per row. A stateful
 * router (bandit) learns, in memory only, from the feedback live use would
 * give it: the recorded quality of the final option, the recorded cost of
 * every call and the recorded latency of every call (0 where not recorded),
 * shaped by its params as the engine's feedback is.
 */
static int route_all(oeval *e, int *first, int *last, uint32_t *called, double *scores, double *us,
                     dynrag_error *err)
{
    cJSON *params = router_params(e, err);
    if (params == NULL)
        return DYNRAG_ERR_NOMEM;
    cascade_params cp;
    cascade_params_get(params, &cp);
    cJSON_Delete(params);
    dynrag_router_options ro;
    dynrag_router_options_init(&ro);
    ro.all_available = true; /* no model is called: every option of the table can run */
    ro.in_memory = true;     /* a replay must not reward the deployed state */
    dynrag_router *r = NULL;
    int rc = dynrag_router_open(e->p, "generator", &ro, &r, err);
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "%s", e->path);
    bool cascade = strcmp(e->router_type, "cascade") == 0;
    size_t no = e->n_opt;
    for (size_t q = 0; q < e->ot.n_rows; q++) {
        dynrag_route d;
        int64_t t0 = dr_now_us();
        rc = dynrag_router_route(r, e->ot.rows[q].query, &d, err);
        if (us)
            us[q] = (double)(dr_now_us() - t0);
        if (rc != DYNRAG_OK) {
            dr_err_prefix(err, "query '%s'", e->ot.rows[q].id);
            goto done;
        }
        if (first)
            first[q] = d.option;
        last[q] = d.option;
        called[q] = (uint32_t)1 << d.option;
        if (cascade &&
            (rc = cascade_chain(e, r, &cp, q, d.option, &last[q], &called[q], err)) != DYNRAG_OK)
            goto done;
        if (scores)
            for (size_t o = 0; o < no; o++)
                scores[q * no + o] = d.scores[o];
        const dr_outcome *fin = outcome_of(e, q, last[q]);
        double usd = 0, latency_ms = 0;
        for (size_t k = 0; k < no; k++)
            if (called[q] >> k & 1) {
                usd += outcome_of(e, q, (int)k)->cost_usd;
                latency_ms += outcome_of(e, q, (int)k)->latency_ms;
            }
        rc = dynrag_router_feedback(r, e->ot.rows[q].id, e->ot.rows[q].query, (size_t)last[q],
                                    fin->present ? fin->quality : 0, usd, latency_ms, err);
        if (rc != DYNRAG_OK)
            goto done;
    }
done:
    dynrag_router_close(r);
    return rc;
}

/* The parameter to sweep: opt's, or the first of the known ones the
 * router's params hold; "" for none. */
static int pick_param(oeval *e, const dynrag_eval_outcomes_options *opt, dynrag_error *err)
{
    static const char *const known[] = {"willingness_to_pay", "wtp", "threshold"};
    e->param[0] = '\0';
    if (opt->sweep_param && strcmp(opt->sweep_param, "none") == 0)
        return DYNRAG_OK;
    if (opt->sweep_param) {
        if (strlen(opt->sweep_param) >= sizeof e->param)
            return dr_err_set(err, DYNRAG_ERR_INVALID, "sweep: parameter name too long");
        dr_strlcpy(e->param, opt->sweep_param, sizeof e->param);
        return DYNRAG_OK;
    }
    if (strcmp(e->router_type, "fixed") == 0)
        return DYNRAG_OK;
    cJSON *params = router_params(e, err);
    if (params == NULL)
        return DYNRAG_ERR_NOMEM;
    /* A cascade's knob is its threshold (its willingness to pay matters
     * only with a quality_model): swept first. */
    bool cascade = strcmp(e->router_type, "cascade") == 0;
    if (cascade && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(params, "threshold"))) {
        dr_strlcpy(e->param, "threshold", sizeof e->param);
        cJSON_Delete(params);
        return DYNRAG_OK;
    }
    for (size_t i = 0; i < DR_ARRAY_LEN(known); i++)
        if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(params, known[i]))) {
            dr_strlcpy(e->param, known[i], sizeof e->param);
            break;
        }
    cJSON_Delete(params);
    return DYNRAG_OK;
}

/* The mean recorded cost of each stage option over the table. */
static void option_costs(const oeval *e, double *mean)
{
    for (size_t o = 0; o < e->n_opt; o++) {
        double s = 0;
        for (size_t q = 0; q < e->ot.n_rows; q++)
            s += outcome_of(e, q, (int)o)->cost_usd;
        mean[o] = e->ot.n_rows ? s / (double)e->ot.n_rows : 0;
    }
}

/* The default grid of n values: [0, 1] for thresholds and floors; for a
 * willingness to pay (quality per dollar) 0 and geometric values from
 * 0.01 to 100 times 1 / (the spread of the options' mean costs). A table
 * without any cost gets no willingness-to-pay sweep (every value routes
 * alike): e->param is cleared. */
static int default_grid(oeval *e, size_t n, dynrag_error *err)
{
    bool pay = strstr(e->param, "pay") != NULL || strcmp(e->param, "wtp") == 0 ||
               strcmp(e->param, "lambda") == 0;
    if (pay) {
        bool any_cost = false;
        for (size_t q = 0; q < e->ot.n_rows && !any_cost; q++)
            for (size_t o = 0; o < e->n_opt && !any_cost; o++)
                any_cost = outcome_of(e, q, (int)o)->cost_usd > 0;
        if (!any_cost) {
            dr_strlcpy(e->costless, e->param, sizeof e->costless);
            e->param[0] = '\0';
            return DYNRAG_OK;
        }
    }
    e->grid = dr_calloc(n, sizeof *e->grid);
    if (e->grid == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    e->n_grid = n;
    if (!pay) {
        for (size_t g = 0; g < n; g++)
            e->grid[g] = (double)g / (double)(n - 1);
        return DYNRAG_OK;
    }
    double mean[DYNRAG_MAX_OPTIONS], lo = INFINITY, hi = -INFINITY;
    option_costs(e, mean);
    for (size_t o = 0; o < e->n_opt; o++) {
        lo = fmin(lo, mean[o]);
        hi = fmax(hi, mean[o]);
    }
    double scale = hi > lo ? 1.0 / (hi - lo) : 1.0;
    e->grid[0] = 0;
    for (size_t g = 1; g < n; g++)
        e->grid[g] = scale * pow(10.0, -2.0 + 4.0 * (double)(g - 1) / (double)(n > 2 ? n - 2 : 1));
    return DYNRAG_OK;
}

/* Runs the sweep over e->grid, each value set as the YAML would be
 * checked (dynrag_pipeline_set_router_param), restoring a value the params
 * held before. */
static int run_sweep(oeval *e, dynrag_error *err)
{
    size_t nq = e->ot.n_rows;
    e->sw_last = dr_calloc(e->n_grid * nq + 1, sizeof(int));
    e->sw_called = dr_calloc(e->n_grid * nq + 1, sizeof(uint32_t));
    if (e->sw_last == NULL || e->sw_called == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    cJSON *params = router_params(e, err);
    if (params == NULL)
        return DYNRAG_ERR_NOMEM;
    const cJSON *orig = cJSON_GetObjectItemCaseSensitive(params, e->param);
    bool had = cJSON_IsNumber(orig);
    double saved = had ? orig->valuedouble : 0;
    cJSON_Delete(params);
    int rc = DYNRAG_OK;
    for (size_t g = 0; g < e->n_grid && rc == DYNRAG_OK; g++) {
        rc = dynrag_pipeline_set_router_param(e->p, "generator", e->param, e->grid[g], err);
        if (rc == DYNRAG_OK)
            rc = route_all(e, NULL, e->sw_last + g * nq, e->sw_called + g * nq, NULL, NULL, err);
        if (rc != DYNRAG_OK)
            dr_err_prefix(err, "sweep %s = %g", e->param, e->grid[g]);
    }
    if (had)
        dynrag_pipeline_set_router_param(e->p, "generator", e->param, saved, NULL);
    return rc;
}

/*
 * Loads the pipeline and the table, checks the options, routes every row
 * (the router's policy) and, unless no parameter applies, sweeps it over
 * n_default values (or opt's grid).
 */
static int oeval_prepare(const dynrag_eval_outcomes_options *opt, size_t n_default, oeval *e,
                         dynrag_error *err)
{
    memset(e, 0, sizeof(*e));
    if (opt->pipeline_path == NULL || opt->outcomes_path == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "eval: a pipeline and an outcome table are required");
    if (opt->grid != NULL && opt->n_grid == 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "eval: n_grid is 0 with a grid");
    int rc = dr_eval_pipeline_load(opt->pipeline_path, &e->p, err);
    if (rc != DYNRAG_OK)
        return rc;
    if ((rc = dr_outcomes_load(opt->outcomes_path, &e->ot, err)) != DYNRAG_OK)
        return rc;
    if (e->ot.n_rows == 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "%s: no queries", opt->outcomes_path);
    e->path = opt->pipeline_path;
    dynrag_stage_info si;
    if ((rc = dynrag_pipeline_stage(e->p, "generator", &si, err)) != DYNRAG_OK)
        return rc;
    e->router_type = si.router;
    if (strcmp(si.router, "llm") == 0)
        return dr_err_set(err, DYNRAG_ERR_UNSUPPORTED,
                          "%s:%d:%d: stages.generator.router: type llm asks an LLM which option "
                          "to use, and an outcome table records no answers of that LLM, so it "
                          "cannot be replayed (docs/routers.md#llm)",
                          opt->pipeline_path, si.router_line, si.router_col);
    size_t no = si.n_options;
    if (no > DYNRAG_MAX_OPTIONS)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "%s: stages.generator has %zu options (at most %d)", opt->pipeline_path,
                          no, DYNRAG_MAX_OPTIONS);
    e->n_opt = no;
    for (size_t o = 0; o < no; o++) {
        dynrag_option_info oi;
        if ((rc = dynrag_pipeline_option(e->p, "generator", o, &oi, err)) != DYNRAG_OK)
            return rc;
        e->opt_name[o] = oi.name;
    }
    for (size_t o = 0; o < no; o++) {
        e->map[o] = dr_outcomes_option(&e->ot, e->opt_name[o]);
        if (e->map[o] < 0) {
            dr_buf have = {0};
            for (size_t k = 0; k < e->ot.n_options && k < 20; k++)
                dr_buf_printf(&have, "%s%s", k ? ", " : "", e->ot.options[k]);
            rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                            "%s: generator option '%s' is not an option of the outcome table %s "
                            "(it has: %s%s)",
                            opt->pipeline_path, e->opt_name[o], opt->outcomes_path,
                            have.data ? have.data : "", e->ot.n_options > 20 ? ", ..." : "");
            dr_buf_free(&have);
            return rc;
        }
    }
    if (opt->strong && dynrag_pipeline_find_option(e->p, "generator", opt->strong) < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "--strong: the generator has no option '%s'",
                          opt->strong);
    if (opt->weak && dynrag_pipeline_find_option(e->p, "generator", opt->weak) < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "--weak: the generator has no option '%s'",
                          opt->weak);
    size_t nq = e->ot.n_rows;
    e->row_task = dr_calloc(nq, sizeof *e->row_task);
    e->tasks = dr_calloc(nq, sizeof *e->tasks);
    double *us = dr_calloc(nq, sizeof *us);
    if (e->row_task == NULL || e->tasks == NULL || us == NULL) {
        dr_free(us);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    for (size_t q = 0; q < nq; q++) {
        const char *task = e->ot.rows[q].task ? e->ot.rows[q].task : "";
        size_t k = 0;
        while (k < e->n_tasks && strcmp(e->tasks[k], task) != 0)
            k++;
        if (k == e->n_tasks)
            e->tasks[e->n_tasks++] = (char *)task;
        e->row_task[q] = k;
    }
    /* The table of dynrag_eval_compare. */
    if ((rc = dynrag_eval_table_new("generator", si.router, nq, no, &e->t, err)) !=
        DYNRAG_OK) {
        dr_free(us);
        return rc;
    }
    dynrag_eval_table *t = e->t;
    t->cascade = strcmp(si.router, "cascade") == 0;
    for (size_t o = 0; o < no; o++)
        if ((t->options[o] = dr_strdup(e->opt_name[o])) == NULL)
            rc = DYNRAG_ERR_NOMEM;
    for (size_t q = 0; q < nq && rc == DYNRAG_OK; q++) {
        if ((t->query_ids[q] = dr_strdup(e->ot.rows[q].id)) == NULL)
            rc = DYNRAG_ERR_NOMEM;
        for (size_t o = 0; o < no; o++) {
            const dr_outcome *x = outcome_of(e, q, (int)o);
            dynrag_eval_outcome *c = &t->cells[q * no + o];
            c->ok = x->present;
            c->slots[DR_SLOT_QUALITY] = x->present ? x->quality : NAN;
            c->slots[DR_SLOT_USD] = x->present ? x->cost_usd : 0;
            c->slots[DR_SLOT_LATENCY] = x->present && x->has_latency ? x->latency_ms : NAN;
            c->slots[DR_SLOT_CALLS] = 1;
            e->n_missing += !x->present;
        }
    }
    if (rc != DYNRAG_OK) {
        dr_free(us);
        return dr_err_set(err, rc, "out of memory");
    }
    dynrag_eval_compare_options_init(&e->co);
    e->co.quality = dr_eval_slot_metric(DR_SLOT_QUALITY);
    e->co.cost = dr_eval_slot_metric(DR_SLOT_USD);
    e->co.seed = opt->seed;
    rc = route_all(e, t->router_first, t->router_choice, t->router_called, t->router_scores, us,
                   err);
    if (rc == DYNRAG_OK) {
        qsort(us, nq, sizeof *us, cmp_double);
        e->route_us_p50 = us[nq / 2];
        e->route_us_p90 = us[(size_t)((double)(nq - 1) * 0.9)];
    }
    dr_free(us);
    if (rc != DYNRAG_OK)
        return rc;
    if ((rc = pick_param(e, opt, err)) != DYNRAG_OK || e->param[0] == '\0')
        return rc;
    if (opt->grid != NULL) {
        if ((e->grid = dr_malloc(opt->n_grid * sizeof *e->grid)) == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        memcpy(e->grid, opt->grid, opt->n_grid * sizeof *e->grid);
        e->n_grid = opt->n_grid;
    } else if ((rc = default_grid(e, n_default, err)) != DYNRAG_OK || e->param[0] == '\0') {
        return rc;
    }
    return run_sweep(e, err);
}

/* ---- per-task tables and summaries -------------------------------------------- */

/* The rows of table t listed in idx, as a new table (choices included). */
static int subtable(const dynrag_eval_table *t, const size_t *idx, size_t n,
                    dynrag_eval_table **out, dynrag_error *err)
{
    int rc = dynrag_eval_table_new(t->stage, t->router_type, n, t->n_options, out, err);
    if (rc != DYNRAG_OK)
        return rc;
    dynrag_eval_table *s = *out;
    size_t no = t->n_options;
    s->cascade = t->cascade;
    for (size_t o = 0; o < no; o++)
        if ((s->options[o] = dr_strdup(t->options[o])) == NULL)
            rc = DYNRAG_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t q = idx[i];
        if ((s->query_ids[i] = dr_strdup(t->query_ids[q])) == NULL)
            rc = DYNRAG_ERR_NOMEM;
        memcpy(&s->cells[i * no], &t->cells[q * no], no * sizeof *s->cells);
        memcpy(&s->router_scores[i * no], &t->router_scores[q * no], no * sizeof(double));
        s->router_choice[i] = t->router_choice[q];
        s->router_first[i] = t->router_first[q];
        s->router_called[i] = t->router_called[q];
        s->router_unavailable[i] = t->router_unavailable[q];
        s->router_outcome[i] = t->router_outcome[q];
    }
    if (rc != DYNRAG_OK) {
        dynrag_eval_table_free(s);
        *out = NULL;
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    return DYNRAG_OK;
}

/* The summaries of one (sub)table. */
typedef struct summary {
    double aiq_router, aiq_singles, aiq_oracle, c_lo, c_hi;
    double apgr, cpt50, cpt80, pgr_router;
    int strong, weak;
} summary;

/* The always-X row of option o (rows: router when routed, then always-X in
 * option order; the row name may be truncated, the position is not). */
static const dynrag_eval_row *always_row(const dynrag_eval_table *t,
                                         const dynrag_eval_comparison *c, size_t o)
{
    (void)t;
    size_t base = c->n_rows > 0 && strcmp(c->rows[0].name, "router") == 0 ? 1 : 0;
    return &c->rows[base + o];
}

/*
 * Fills c->sweep from the sweep chains of the rows idx (NULL = all), the
 * singles' hull into c->hull, and the summaries into *s.
 */
static int summarise(const oeval *e, const dynrag_eval_outcomes_options *opt,
                     const dynrag_eval_table *t, const size_t *idx, dynrag_eval_comparison *c,
                     summary *s, dynrag_error *err)
{
    size_t nq = t->n_queries, no = t->n_options;
    uint32_t *f = dr_calloc(nq + 1, sizeof *f);
    int *l = dr_calloc(nq + 1, sizeof *l);
    dynrag_eval_point *pts = dr_calloc(e->n_grid + no + 2, sizeof *pts);
    double *x = dr_calloc(e->n_grid + 2, sizeof *x), *qv = dr_calloc(e->n_grid + 2, sizeof *qv);
    c->sweep = dr_calloc(e->n_grid + 1, sizeof *c->sweep);
    c->hull = dr_calloc(no, sizeof *c->hull);
    int rc = DYNRAG_OK;
    if (!f || !l || !pts || !x || !qv || !c->sweep || !c->hull) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t g = 0; g < e->n_grid; g++) {
        for (size_t i = 0; i < nq; i++) {
            size_t q = idx ? idx[i] : i;
            f[i] = e->sw_called[g * e->ot.n_rows + q];
            l[i] = e->sw_last[g * e->ot.n_rows + q];
        }
        dr_eval_row_of_chains(t, &e->co, f, l, "sweep", e->grid[g], &c->sweep[c->n_sweep++]);
    }
    /* The singles: cost range, hull, AIQ; strong and weak. */
    s->c_lo = INFINITY;
    s->c_hi = -INFINITY;
    s->strong = s->weak = -1;
    for (size_t o = 0; o < no; o++) {
        const dynrag_eval_row *r = always_row(t, c, o);
        pts[o] = (dynrag_eval_point){r->cost, r->quality};
        s->c_lo = fmin(s->c_lo, r->cost);
        s->c_hi = fmax(s->c_hi, r->cost);
        if (s->weak < 0 || r->cost < pts[s->weak].cost ||
            (r->cost == pts[s->weak].cost && r->quality < pts[s->weak].quality))
            s->weak = (int)o;
    }
    c->n_hull = dynrag_eval_hull(pts, no, c->hull);
    s->aiq_singles = dynrag_eval_aiq(pts, no, s->c_lo, s->c_hi);
    const dynrag_eval_row *best = dynrag_eval_comparison_row(c, "best-single");
    for (size_t o = 0; o < no && s->strong < 0; o++)
        if (always_row(t, c, o)->quality == best->quality &&
            always_row(t, c, o)->cost == best->cost)
            s->strong = (int)o;
    if (opt->strong)
        s->strong = dynrag_eval_table_option(t, opt->strong);
    if (opt->weak)
        s->weak = dynrag_eval_table_option(t, opt->weak);
    const dynrag_eval_row *oracle = dynrag_eval_comparison_row(c, "oracle");
    dynrag_eval_point op = {oracle->cost, oracle->quality};
    s->aiq_oracle = dynrag_eval_aiq(&op, 1, s->c_lo, s->c_hi);
    /* The router's curve: its own point and the sweep. */
    const dynrag_eval_row *router = dynrag_eval_comparison_row(c, "router");
    size_t np = 0;
    pts[np++] = (dynrag_eval_point){router->cost, router->quality};
    for (size_t g = 0; g < c->n_sweep; g++)
        pts[np++] = (dynrag_eval_point){c->sweep[g].cost, c->sweep[g].quality};
    s->aiq_router = dynrag_eval_aiq(pts, np, s->c_lo, s->c_hi);
    double qs = always_row(t, c, (size_t)s->strong)->quality;
    double qw = always_row(t, c, (size_t)s->weak)->quality;
    size_t n = 0;
    x[n] = nq ? (double)router->calls[s->strong] / (double)nq : 0;
    qv[n++] = router->quality;
    for (size_t g = 0; g < c->n_sweep; g++) {
        x[n] = nq ? (double)c->sweep[g].calls[s->strong] / (double)nq : 0;
        qv[n++] = c->sweep[g].quality;
    }
    bool pair = s->strong != s->weak && qs > qw;
    s->apgr = pair ? dynrag_eval_apgr(x, qv, n, qw, qs) : NAN;
    s->cpt50 = pair ? dynrag_eval_cpt(x, qv, n, qw, qs, 0.5) : NAN;
    s->cpt80 = pair ? dynrag_eval_cpt(x, qv, n, qw, qs, 0.8) : NAN;
    s->pgr_router = pair ? (router->quality - qw) / (qs - qw) : NAN;
done:
    dr_free(f);
    dr_free(l);
    dr_free(pts);
    dr_free(x);
    dr_free(qv);
    return rc;
}

/* ---- the report ------------------------------------------------------------------ */

static void add_num(cJSON *o, const char *k, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static cJSON *policy_json(const dynrag_eval_table *t, const dynrag_eval_row *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", r->name);
    if (!isnan(r->param))
        cJSON_AddNumberToObject(o, "value", r->param);
    add_num(o, "quality", r->quality);
    add_num(o, "cost_usd", r->cost);
    if (!isnan(r->means[DR_SLOT_LATENCY]))
        cJSON_AddNumberToObject(o, "latency_ms", r->means[DR_SLOT_LATENCY]);
    add_num(o, "calls_per_query", r->means[DR_SLOT_CALLS]);
    cJSON_AddNumberToObject(o, "n_scored", (double)r->n_scored);
    cJSON *calls = cJSON_AddObjectToObject(o, "calls");
    cJSON *share = cJSON_AddObjectToObject(o, "share");
    for (size_t k = 0; k < t->n_options; k++) {
        cJSON_AddNumberToObject(calls, t->options[k], (double)r->calls[k]);
        cJSON_AddNumberToObject(share, t->options[k], r->share[k]);
    }
    return o;
}

/* Names the option best-single stands for. */
static void name_best_single(const dynrag_eval_table *t, const dynrag_eval_comparison *c,
                             cJSON *pol)
{
    const dynrag_eval_row *b = dynrag_eval_comparison_row(c, "best-single");
    for (size_t o = 0; b && o < t->n_options; o++) {
        const dynrag_eval_row *r = always_row(t, c, o);
        if (r->quality == b->quality && r->cost == b->cost) {
            cJSON_AddStringToObject(pol, "option", t->options[o]);
            return;
        }
    }
}

static cJSON *policies_json(const dynrag_eval_table *t, const dynrag_eval_comparison *c)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t r = 0; r < c->n_rows; r++) {
        cJSON *p = policy_json(t, &c->rows[r]);
        if (strcmp(c->rows[r].name, "best-single") == 0)
            name_best_single(t, c, p);
        for (size_t o = 0; o < t->n_options; o++)
            if (&c->rows[r] == always_row(t, c, o)) {
                /* The full option name (row names stop at 63 bytes). */
                char *full = dr_asprintf("always-%s", t->options[o]);
                if (full)
                    cJSON_ReplaceItemInObjectCaseSensitive(p, "name", cJSON_CreateString(full));
                dr_free(full);
                cJSON_AddStringToObject(p, "option", t->options[o]);
            }
        cJSON_AddItemToArray(a, p);
    }
    return a;
}

static cJSON *summary_json(const dynrag_eval_table *t, const summary *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *aiq = cJSON_AddObjectToObject(o, "aiq");
    add_num(aiq, "router", s->aiq_router);
    add_num(aiq, "singles_hull", s->aiq_singles);
    add_num(aiq, "oracle", s->aiq_oracle);
    cJSON *range = cJSON_AddArrayToObject(o, "aiq_cost_range_usd");
    cJSON_AddItemToArray(range, cJSON_CreateNumber(s->c_lo));
    cJSON_AddItemToArray(range, cJSON_CreateNumber(s->c_hi));
    cJSON_AddStringToObject(o, "strong", t->options[s->strong]);
    cJSON_AddStringToObject(o, "weak", t->options[s->weak]);
    add_num(o, "pgr_router", s->pgr_router);
    add_num(o, "apgr", s->apgr);
    add_num(o, "cpt50", s->cpt50);
    add_num(o, "cpt80", s->cpt80);
    return o;
}

static void md_num(dr_buf *b, double v)
{
    if (!isfinite(v))
        dr_buf_puts(b, " – |");
    else if (v != 0 && fabs(v) < 0.01)
        dr_buf_printf(b, " %.3e |", v);
    else
        dr_buf_printf(b, " %.4f |", v);
}

static void md_policies(dr_buf *b, const dynrag_eval_table *t, const dynrag_eval_comparison *c,
                        const summary *s)
{
    dr_buf_puts(b, "| policy | quality | cost_usd | calls per query | calls per option |\n"
                   "|---|---:|---:|---:|---|\n");
    for (size_t r = 0; r < c->n_rows; r++) {
        const dynrag_eval_row *row = &c->rows[r];
        dr_buf_printf(b, "| %s |", row->name);
        md_num(b, row->quality);
        md_num(b, row->cost);
        md_num(b, row->means[DR_SLOT_CALLS]);
        size_t shown = 0;
        for (size_t k = 0; k < t->n_options; k++)
            if (row->calls[k] > 0)
                dr_buf_printf(b, "%s%s %zu", shown++ ? ", " : " ", t->options[k], row->calls[k]);
        dr_buf_puts(b, " |\n");
    }
    dr_buf_printf(b,
                  "\nAIQ over cost [%.4g, %.4g]: router %.4f, single options' hull %.4f, "
                  "oracle %.4f. Strong `%s`, weak `%s`:",
                  s->c_lo, s->c_hi, s->aiq_router, s->aiq_singles, s->aiq_oracle,
                  t->options[s->strong], t->options[s->weak]);
    if (isnan(s->apgr))
        dr_buf_puts(b,
                    " APGR and CPT undefined (the strong option is not better than the weak).\n");
    else {
        dr_buf_printf(b, " router PGR %.3f, APGR %.4f", s->pgr_router, s->apgr);
        const double cpt[2] = {s->cpt50, s->cpt80};
        for (int i = 0; i < 2; i++) {
            if (isnan(cpt[i]))
                dr_buf_printf(b, ", CPT(%d%%) not reached", i ? 80 : 50);
            else
                dr_buf_printf(b, ", CPT(%d%%) %.1f%% strong calls", i ? 80 : 50, 100 * cpt[i]);
        }
        dr_buf_puts(b, ".\n");
    }
}

static int write_text(const char *dir, const char *name, const char *text, dynrag_error *err)
{
    char *path = dr_asprintf("%s/%s", dir, name);
    if (path == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    int rc = dr_write_file_atomic(path, text, strlen(text), err);
    dr_free(path);
    return rc;
}

static int write_svgs(const char *dir, const dynrag_eval_table *t, const dynrag_eval_comparison *c,
                      dynrag_error *err)
{
    char *svg = dynrag_eval_svg_scatter(t, c, "quality", "cost_usd");
    int rc = svg ? write_text(dir, "generator-cost-quality.svg", svg, err)
                 : dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    dr_free(svg);
    if (rc != DYNRAG_OK)
        return rc;
    svg = dynrag_eval_svg_calls(t, c);
    rc = svg ? write_text(dir, "generator-calls.svg", svg, err)
             : dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    dr_free(svg);
    return rc;
}

/* The per-query replay: what the router called and what it got. */
static cJSON *per_query_json(const oeval *e)
{
    const dynrag_eval_table *t = e->t;
    cJSON *a = cJSON_CreateArray();
    for (size_t q = 0; q < t->n_queries; q++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(a, o);
        cJSON_AddStringToObject(o, "id", t->query_ids[q]);
        if (e->ot.rows[q].task)
            cJSON_AddStringToObject(o, "task", e->ot.rows[q].task);
        cJSON *calls = cJSON_AddArrayToObject(o, "calls");
        double cost = 0;
        for (size_t k = 0; k < t->n_options; k++) /* in listed order */
            if (t->router_called[q] >> k & 1) {
                cJSON_AddItemToArray(calls, cJSON_CreateString(t->options[k]));
                cost += outcome_of(e, q, (int)k)->cost_usd;
            }
        const dr_outcome *fin = outcome_of(e, q, t->router_choice[q]);
        cJSON_AddStringToObject(o, "choice", t->options[t->router_choice[q]]);
        cJSON_AddNumberToObject(o, "quality", fin->present ? fin->quality : 0);
        cJSON_AddNumberToObject(o, "cost_usd", cost);
    }
    return a;
}

/* Public: see dynrag/eval.h. */
void dynrag_eval_outcomes_options_init(dynrag_eval_outcomes_options *o)
{
    memset(o, 0, sizeof(*o));
    o->pipeline_path = NULL;
    o->outcomes_path = NULL;
    o->out_dir = NULL;
    o->seed = 0;
    o->strong = NULL;
    o->weak = NULL;
    o->sweep_param = NULL;
    o->grid = NULL;
    o->n_grid = 0;
}

int dynrag_eval_outcomes(const dynrag_eval_outcomes_options *opt, dynrag_eval_outcomes_summary *sum,
                         char **report_md, dynrag_error *err)
{
    if (report_md)
        *report_md = NULL;
    oeval e;
    dynrag_eval_comparison c, tc;
    memset(&c, 0, sizeof(c));
    memset(&tc, 0, sizeof(tc));
    dynrag_eval_table *sub = NULL;
    size_t *idx = NULL;
    cJSON *rep = NULL;
    dr_buf md = {0};
    summary s;
    int rc = oeval_prepare(opt, DEFAULT_GRID, &e, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    dynrag_eval_table *t = e.t;
    if ((rc = dynrag_eval_compare(t, &e.co, &c, err)) != DYNRAG_OK ||
        (rc = summarise(&e, opt, t, NULL, &c, &s, err)) != DYNRAG_OK)
        goto cleanup;
    rep = cJSON_CreateObject();
    if (rep == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    cJSON_AddStringToObject(rep, "pipeline", opt->pipeline_path);
    cJSON_AddStringToObject(rep, "outcomes", opt->outcomes_path);
    cJSON_AddStringToObject(rep, "router", t->router_type);
    cJSON_AddNumberToObject(rep, "queries", (double)t->n_queries);
    cJSON_AddNumberToObject(rep, "missing_outcomes", (double)e.n_missing);
    cJSON_AddNumberToObject(rep, "seed", (double)opt->seed);
    cJSON *ops = cJSON_AddArrayToObject(rep, "options");
    for (size_t o = 0; o < t->n_options; o++)
        cJSON_AddItemToArray(ops, cJSON_CreateString(t->options[o]));
    /* Table options the generator does not have. */
    cJSON *ign = cJSON_AddArrayToObject(rep, "ignored_options");
    for (size_t k = 0; k < e.ot.n_options; k++)
        if (dynrag_pipeline_find_option(e.p, "generator", e.ot.options[k]) < 0)
            cJSON_AddItemToArray(ign, cJSON_CreateString(e.ot.options[k]));
    cJSON *rt = cJSON_AddObjectToObject(rep, "routing_us");
    cJSON_AddNumberToObject(rt, "p50", e.route_us_p50);
    cJSON_AddNumberToObject(rt, "p90", e.route_us_p90);
    cJSON_AddItemToObject(rep, "policies", policies_json(t, &c));
    cJSON_AddItemToObject(rep, "summary", summary_json(t, &s));
    cJSON *sw = cJSON_AddObjectToObject(rep, "sweep");
    cJSON_AddStringToObject(sw, "param", e.param);
    cJSON *swp = cJSON_AddArrayToObject(sw, "points");
    for (size_t g = 0; g < c.n_sweep; g++)
        cJSON_AddItemToArray(swp, policy_json(t, &c.sweep[g]));
    dr_buf_printf(&md,
                  "# Outcome evaluation of `%s`\n\nPipeline `%s`, outcome table `%s`: %zu "
                  "queries, %zu tasks, generator router `%s` over %zu options; "
                  "%zu missing outcomes (quality 0, cost 0). Routing p50 %.1f us.\n\n"
                  "## All queries\n\n",
                  dynrag_pipeline_name(e.p), opt->pipeline_path, opt->outcomes_path, t->n_queries,
                  e.n_tasks, t->router_type, t->n_options, e.n_missing, e.route_us_p50);
    md_policies(&md, t, &c, &s);
    if (c.n_sweep > 0) {
        dr_buf_printf(&md,
                      "\nSweep of `%s`:\n\n| %s | quality | cost_usd | share calling `%s` |\n"
                      "|---:|---:|---:|---:|\n",
                      e.param, e.param, t->options[s.strong]);
        for (size_t g = 0; g < c.n_sweep; g++) {
            dr_buf_printf(&md, "| %.4g |", c.sweep[g].param);
            md_num(&md, c.sweep[g].quality);
            md_num(&md, c.sweep[g].cost);
            md_num(&md, (double)c.sweep[g].calls[s.strong] / (double)t->n_queries);
            dr_buf_puts(&md, "\n");
        }
    }
    /* Per task. */
    cJSON *tasks = cJSON_AddObjectToObject(rep, "tasks");
    if ((idx = dr_calloc(t->n_queries, sizeof *idx)) == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    /* Every task, even a single one, unless no row names a task. */
    bool any_task = e.n_tasks > 1 || (e.n_tasks == 1 && e.tasks[0][0] != '\0');
    for (size_t k = 0; k < e.n_tasks && any_task; k++) {
        size_t n = 0;
        for (size_t q = 0; q < t->n_queries; q++)
            if (e.row_task[q] == k)
                idx[n++] = q;
        summary ts;
        if ((rc = subtable(t, idx, n, &sub, err)) != DYNRAG_OK ||
            (rc = dynrag_eval_compare(sub, &e.co, &tc, err)) != DYNRAG_OK ||
            (rc = summarise(&e, opt, sub, idx, &tc, &ts, err)) != DYNRAG_OK)
            goto cleanup;
        const char *name = e.tasks[k][0] ? e.tasks[k] : "(no task)";
        cJSON *tj = cJSON_AddObjectToObject(tasks, name);
        cJSON_AddNumberToObject(tj, "queries", (double)n);
        cJSON_AddItemToObject(tj, "policies", policies_json(sub, &tc));
        cJSON_AddItemToObject(tj, "summary", summary_json(sub, &ts));
        dr_buf_printf(&md, "\n## Task `%s` (%zu queries)\n\n", name, n);
        md_policies(&md, sub, &tc, &ts);
        dynrag_eval_comparison_free(&tc);
        dynrag_eval_table_free(sub);
        sub = NULL;
    }
    cJSON_AddItemToObject(rep, "per_query", per_query_json(&e));
    dr_buf_puts(&md,
                "\nQuality is the recorded quality of the final option; cost_usd adds up every "
                "call (cascades). AIQ: area under the non-decreasing convex hull over the "
                "single options' cost range, divided by that range. PGR/APGR/CPT: RouteLLM's, "
                "with the share of queries calling the strong option. Plots: "
                "`generator-cost-quality.svg`, `generator-calls.svg`. Method: "
                "docs/evaluation.md.\n");
    if (md.data == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (opt->out_dir) {
        char *json = cJSON_Print(rep);
        if (json == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        if ((rc = dr_mkdirs(opt->out_dir, err)) == DYNRAG_OK)
            rc = write_text(opt->out_dir, "report.json", json, err);
        dr_free(json);
        if (rc == DYNRAG_OK)
            rc = write_text(opt->out_dir, "report.md", md.data, err);
        if (rc == DYNRAG_OK)
            rc = write_svgs(opt->out_dir, t, &c, err);
        if (rc != DYNRAG_OK)
            goto cleanup;
    }
    if (sum) {
        memset(sum, 0, sizeof(*sum));
        const dynrag_eval_row *r = dynrag_eval_comparison_row(&c, "router");
        sum->n_queries = t->n_queries;
        sum->n_tasks = e.n_tasks;
        sum->n_missing = e.n_missing;
        sum->router_quality = r->quality;
        sum->router_cost = r->cost;
        sum->aiq_router = s.aiq_router;
        sum->aiq_singles = s.aiq_singles;
        sum->apgr = s.apgr;
        sum->cpt50 = s.cpt50;
        sum->cpt80 = s.cpt80;
        dr_strlcpy(sum->sweep_param, e.param, sizeof sum->sweep_param);
        sum->n_sweep = c.n_sweep;
        sum->route_us_p50 = e.route_us_p50;
    }
    if (report_md)
        *report_md = dr_buf_take(&md);
cleanup:
    cJSON_Delete(rep);
    dr_buf_free(&md);
    dr_free(idx);
    dynrag_eval_table_free(sub);
    dynrag_eval_comparison_free(&tc);
    dynrag_eval_comparison_free(&c);
    oeval_free(&e);
    return rc;
}

/* ---- calibration ------------------------------------------------------------------- */

int dynrag_eval_calibrate_outcomes(const dynrag_eval_outcomes_options *opt,
                                   const dynrag_eval_calibrate_options *copt,
                                   dynrag_eval_calibration *out, dynrag_error *err)
{
    memset(out, 0, sizeof(*out));
    out->value = NAN;
    int n_targets =
        !isnan(copt->target_cost) + !isnan(copt->target_share) + !isnan(copt->target_quality);
    if (n_targets != 1)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "calibrate: give exactly one of a target cost, share or quality");
    if (copt->stage && strcmp(copt->stage, "generator") != 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "calibrate: an outcome table calibrates the generator stage, not '%s'",
                          copt->stage);
    oeval e;
    dynrag_eval_row *rows = NULL;
    int rc = oeval_prepare(opt, CALIBRATE_GRID, &e, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    dynrag_eval_table *t = e.t;
    if (e.param[0] == '\0' && e.costless[0] != '\0') {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "calibrate: the outcome table has no cost_usd, so every value of the "
                        "'%s' router's %s routes alike; give the values to try with --grid, or "
                        "calibrate another parameter with --sweep",
                        t->router_type, e.costless);
        goto cleanup;
    }
    if (e.param[0] == '\0') {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "calibrate: the generator's '%s' router has no willingness_to_pay, wtp or "
                        "threshold parameter (name one with --sweep)",
                        t->router_type);
        goto cleanup;
    }
    int target = (int)t->n_options - 1;
    if (!isnan(copt->target_share) &&
        (target = dynrag_eval_table_option(t, copt->target_option ? copt->target_option : "")) <
            0) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "calibrate: the generator has no option '%s'",
                        copt->target_option ? copt->target_option : "(null)");
        goto cleanup;
    }
    size_t nq = t->n_queries;
    if ((rows = dr_calloc(e.n_grid, sizeof *rows)) == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t g = 0; g < e.n_grid; g++)
        dr_eval_row_of_chains(t, &e.co, e.sw_called + g * nq, e.sw_last + g * nq, "sweep",
                              e.grid[g], &rows[g]);
    /* Met values: best quality (then cheaper) for a cost or share target,
     * cheapest (then better) for a quality target; else the closest. */
    int best = -1;
    bool met = false;
    for (size_t g = 0; g < e.n_grid; g++) {
        const dynrag_eval_row *r = &rows[g];
        double share = (double)r->calls[target] / (double)nq;
        double miss;
        if (!isnan(copt->target_cost))
            miss = r->cost - copt->target_cost;
        else if (!isnan(copt->target_share))
            miss = share - copt->target_share;
        else
            miss = copt->target_quality - r->quality;
        bool ok = miss <= 1e-12;
        if (best < 0 || (ok && !met)) {
            best = (int)g;
            met = ok;
            continue;
        }
        if (ok != met)
            continue;
        const dynrag_eval_row *b = &rows[best];
        bool better;
        if (!met) {
            double bmiss = !isnan(copt->target_cost) ? b->cost - copt->target_cost
                           : !isnan(copt->target_share)
                               ? (double)b->calls[target] / (double)nq - copt->target_share
                               : copt->target_quality - b->quality;
            better = miss < bmiss;
        } else if (!isnan(copt->target_quality)) {
            better = r->cost < b->cost || (r->cost == b->cost && r->quality > b->quality);
        } else {
            better = r->quality > b->quality || (r->quality == b->quality && r->cost < b->cost);
        }
        if (better)
            best = (int)g;
    }
    const dynrag_eval_row *r = &rows[best];
    dr_strlcpy(out->param, e.param, sizeof out->param);
    out->value = r->param;
    out->quality = r->quality;
    out->cost = r->cost;
    out->share = (double)r->calls[target] / (double)nq;
    out->met = met;
    if (copt->out_yaml)
        rc = dynrag_eval_patch_router_param(opt->pipeline_path, copt->out_yaml, "generator",
                                            e.param, out->value, err);
cleanup:
    dr_free(rows);
    oeval_free(&e);
    return rc;
}
