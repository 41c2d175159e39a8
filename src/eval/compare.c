/*
 * compare.c - routing baselines from an outcome table: the router, always-X
 * for each option, uniform random, random at the router's observed mix, the
 * oracle, and threshold sweeps of classifier and cascade routers.
 */
#include "dynrag/eval.h"

#include "core/util.h"
#include "eval/eval_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Running sums of one row. */
typedef struct acc {
    double sum[DR_EVAL_N_SLOTS];
    size_t cnt[DR_EVAL_N_SLOTS];
    size_t final_count[DYNRAG_MAX_OPTIONS];
    size_t n;
} acc;

static const dynrag_eval_outcome *cell(const dynrag_eval_table *t, size_t q, size_t o)
{
    return &t->cells[q * t->n_options + o];
}

/* True when metric m has a value in some cell of query q: a failed run then
 * scores 0 on it rather than being left out. */
static bool query_has_metric(const dynrag_eval_table *t, size_t q, int m)
{
    for (size_t o = 0; o < t->n_options; o++)
        if (!isnan(cell(t, q, o)->slots[m]))
            return true;
    return !isnan(t->router_outcome[q].slots[m]);
}

/* The value of metric m of outcome x for query q, with failures as 0. */
static double value_of(const dynrag_eval_table *t, size_t q, const dynrag_eval_outcome *x, int m)
{
    if (!x->ok && !dr_eval_slot_is_cost((dr_eval_slot)m))
        return query_has_metric(t, q, m) ? 0.0 : NAN;
    return x->slots[m];
}

static void acc_add(acc *a, const dynrag_eval_table *t, size_t q, const dynrag_eval_outcome *x,
                    int final_opt)
{
    for (int m = 0; m < DR_EVAL_N_SLOTS; m++) {
        double v = value_of(t, q, x, m);
        if (!isnan(v)) {
            a->sum[m] += v;
            a->cnt[m]++;
        }
    }
    if (final_opt >= 0 && final_opt < DYNRAG_MAX_OPTIONS)
        a->final_count[final_opt]++;
    a->n++;
}

/* The slots of opt's quality and cost metrics. dynrag_eval_compare checks
 * them; the internal callers pass recorded metrics (else f1, latency_ms). */
static void metric_slots(const dynrag_eval_compare_options *opt, dr_eval_slot *qs, dr_eval_slot *cs)
{
    if (dr_eval_slot_of(opt->quality, NULL, qs, NULL) != DYNRAG_OK)
        *qs = DR_SLOT_F1;
    if (dr_eval_slot_of(opt->cost, NULL, cs, NULL) != DYNRAG_OK)
        *cs = DR_SLOT_LATENCY;
}

static void acc_finish(const acc *a, const dynrag_eval_compare_options *opt, dynrag_eval_row *r)
{
    dr_eval_slot qs, cs;
    metric_slots(opt, &qs, &cs);
    for (int m = 0; m < DR_EVAL_N_SLOTS; m++)
        r->means[m] = a->cnt[m] ? a->sum[m] / (double)a->cnt[m] : NAN;
    r->quality = r->means[qs];
    r->cost = r->means[cs];
    r->n_scored = a->cnt[qs];
    for (int o = 0; o < DYNRAG_MAX_OPTIONS; o++)
        r->share[o] = a->n ? (double)a->final_count[o] / (double)a->n : 0.0;
}

/* The outcome of a chain of attempts first..last (listed order): quality
 * from `last`, cost metrics summed over every attempt. Counts calls. */
static void chain_outcome(const dynrag_eval_table *t, size_t q, uint32_t called, int last,
                          dynrag_eval_outcome *out, dynrag_eval_row *row)
{
    *out = *cell(t, q, (size_t)last);
    called |= (uint32_t)1 << last;
    for (int m = 0; m < DR_EVAL_N_SLOTS; m++) {
        if (!dr_eval_slot_is_cost((dr_eval_slot)m))
            continue;
        double s = 0;
        bool any = false;
        for (size_t o = 0; o < t->n_options; o++) {
            double v = called >> o & 1 ? cell(t, q, o)->slots[m] : NAN;
            if (!isnan(v)) {
                s += v;
                any = true;
            }
        }
        out->slots[m] = any ? s : NAN;
    }
    for (size_t o = 0; o < t->n_options; o++)
        row->calls[o] += called >> o & 1;
}

/* See eval_internal.h. */
uint32_t dr_eval_span(int first, int last)
{
    if (last < 0 || last >= DYNRAG_MAX_OPTIONS)
        return 0;
    if (first < 0 || first > last)
        first = last;
    uint32_t m = 0;
    for (int o = first; o <= last; o++)
        m |= (uint32_t)1 << o;
    return m;
}

/* The options the router's run of query q called: recorded, else its
 * first option to its final one in listed order (a cascade), else the
 * final one. */
static uint32_t router_calls(const dynrag_eval_table *t, size_t q)
{
    int c = t->router_choice[q];
    if (t->router_called != NULL && t->router_called[q] != 0)
        return t->router_called[q] | (c >= 0 ? (uint32_t)1 << c : 0);
    return dr_eval_span(t->cascade ? t->router_first[q] : c, c);
}

/* Quality and cost used to rank options for the oracle. */
static double qual(const dynrag_eval_table *t, size_t q, size_t o, int m)
{
    return value_of(t, q, cell(t, q, o), m);
}

static double cost0(const dynrag_eval_outcome *x, int m)
{
    return isnan(x->slots[m]) ? 0.0 : x->slots[m];
}

/* The oracle's option for query q. */
static int oracle_pick(const dynrag_eval_table *t, size_t q, const dynrag_eval_compare_options *opt)
{
    dr_eval_slot qs, cs;
    metric_slots(opt, &qs, &cs);
    double best_q = -INFINITY;
    bool scored = false;
    for (size_t o = 0; o < t->n_options; o++) {
        double v = qual(t, q, o, (int)qs);
        if (!isnan(v)) {
            scored = true;
            if (v > best_q)
                best_q = v;
        }
    }
    int pick = -1;
    for (size_t o = 0; o < t->n_options; o++) {
        if (scored) {
            double v = qual(t, q, o, (int)qs);
            if (isnan(v) || v < best_q - 1e-12)
                continue;
        }
        if (pick < 0) {
            pick = (int)o;
            continue;
        }
        const dynrag_eval_outcome *a = cell(t, q, o), *b = cell(t, q, (size_t)pick);
        double ca = cost0(a, (int)cs), cb = cost0(b, (int)cs);
        double sa = cost0(a, DR_SLOT_STEPS), sb = cost0(b, DR_SLOT_STEPS);
        if (ca < cb || (ca == cb && sa < sb))
            pick = (int)o;
    }
    return pick < 0 ? 0 : pick;
}

/* The classifier router's choice at threshold thr from its logged scores. */
static int classifier_pick(const dynrag_eval_table *t, size_t q, double thr, int escalate)
{
    int best = -1;
    const double *s = &t->router_scores[q * t->n_options];
    for (size_t o = 0; o < t->n_options; o++)
        if (!isnan(s[o]) && (best < 0 || s[o] > s[best]))
            best = (int)o;
    int pick = best < 0 || s[best] < thr ? escalate : best;
    uint32_t un = t->router_unavailable != NULL ? t->router_unavailable[q] : 0;
    if (pick < 0 || pick >= DYNRAG_MAX_OPTIONS || !(un >> pick & 1))
        return pick;
    /* As the router does when its pick is unavailable: the available
     * option with the highest score, else the first available one. */
    int alt = -1;
    for (size_t o = 0; o < t->n_options && o < DYNRAG_MAX_OPTIONS; o++) {
        if (un >> o & 1)
            continue;
        if (alt < 0 || (!isnan(s[o]) && (isnan(s[alt]) || s[o] > s[alt])))
            alt = (int)o;
    }
    return alt >= 0 ? alt : pick;
}

/* The cascade's final option at threshold thr: the first (listed order)
 * whose judged confidence reaches thr; an unjudged answer stops the cascade. */
static int cascade_pick(const dynrag_eval_table *t, size_t q, double thr)
{
    for (size_t o = 0; o + 1 < t->n_options; o++) {
        double c = cell(t, q, o)->confidence;
        if (isnan(c) || c >= thr)
            return (int)o;
    }
    return (int)t->n_options - 1;
}

/* A row's mean cost with NAN as 0 (rows without cost compare equal). */
static double cost0_mean(const dynrag_eval_row *r)
{
    return isnan(r->cost) ? 0.0 : r->cost;
}

static bool has_choices(const dynrag_eval_table *t)
{
    for (size_t q = 0; q < t->n_queries; q++)
        if (t->router_choice[q] >= 0)
            return true;
    return false;
}

/* Public: see dynrag/eval.h. */
void dynrag_eval_compare_options_init(dynrag_eval_compare_options *o)
{
    memset(o, 0, sizeof(*o));
    o->quality = dr_eval_slot_metric(DR_SLOT_F1);
    o->cost = dr_eval_slot_metric(DR_SLOT_LATENCY);
    o->seed = 0;
    o->sweep = DYNRAG_EVAL_SWEEP_NONE;
    o->escalate = -1;
    o->grid = NULL;
    o->n_grid = 21;
    o->grid_lo = 0;
    o->grid_hi = 1;
}

/* The checks of dynrag_eval_compare_options's grid fields. */
static int check_grid(const dynrag_eval_compare_options *o, dynrag_error *err)
{
    if (o->sweep != DYNRAG_EVAL_SWEEP_NONE && o->sweep != DYNRAG_EVAL_SWEEP_CLASSIFIER &&
        o->sweep != DYNRAG_EVAL_SWEEP_CASCADE)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "eval: sweep %d is unknown", (int)o->sweep);
    if (o->sweep == DYNRAG_EVAL_SWEEP_NONE)
        return DYNRAG_OK;
    if (o->grid != NULL && o->n_grid < 1)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "eval: n_grid is 0 with a grid");
    if (o->grid == NULL && o->n_grid < 2)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "eval: n_grid %zu: expected at least 2 points over [grid_lo, grid_hi]",
                          o->n_grid);
    if (o->grid == NULL && !(o->grid_lo < o->grid_hi && isfinite(o->grid_lo) &&
                             isfinite(o->grid_hi)))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "eval: grid_lo %g and grid_hi %g: expected finite numbers, lo < hi",
                          o->grid_lo, o->grid_hi);
    return DYNRAG_OK;
}

int dynrag_eval_compare(const dynrag_eval_table *t, const dynrag_eval_compare_options *opt_in,
                        dynrag_eval_comparison *out, dynrag_error *err)
{
    memset(out, 0, sizeof(*out));
    if (opt_in == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "eval: no compare options");
    dynrag_eval_compare_options opt = *opt_in;
    if (t == NULL || t->n_queries == 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "eval: no queries to compare");
    if (t->n_options == 0 || t->n_options > DYNRAG_MAX_OPTIONS)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "eval: stage %s has %zu options (1..%d)",
                          t->stage, t->n_options, DYNRAG_MAX_OPTIONS);
    dr_eval_slot qs, cs;
    int mrc = dr_eval_slot_of(opt.quality, "eval: quality", &qs, err);
    if (mrc == DYNRAG_OK)
        mrc = dr_eval_slot_of(opt.cost, "eval: cost", &cs, err);
    if (mrc != DYNRAG_OK)
        return mrc;
    int grc = check_grid(&opt, err);
    if (grc != DYNRAG_OK)
        return grc;
    size_t no = t->n_options, nq = t->n_queries;
    bool choices = has_choices(t);
    size_t cap = no + 5;
    out->rows = dr_calloc(cap, sizeof *out->rows);
    if (out->rows == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    dynrag_eval_outcome tmp;
    dr_rng rng;

    /* The router. */
    if (choices) {
        dynrag_eval_row *r = &out->rows[out->n_rows++];
        acc a = {0};
        snprintf(r->name, sizeof r->name, "router");
        r->param = NAN;
        for (size_t q = 0; q < nq; q++) {
            int c = t->router_choice[q];
            const dynrag_eval_outcome *ro = &t->router_outcome[q];
            if (ro->ok || c < 0) {
                uint32_t m = c >= 0 ? router_calls(t, q) : 0;
                for (size_t o = 0; o < no; o++)
                    r->calls[o] += m >> o & 1;
                acc_add(&a, t, q, ro, c);
                continue;
            }
            chain_outcome(t, q, router_calls(t, q), c, &tmp, r);
            acc_add(&a, t, q, &tmp, c);
        }
        acc_finish(&a, &opt, r);
    }
    /* Always-X. */
    for (size_t o = 0; o < no; o++) {
        dynrag_eval_row *r = &out->rows[out->n_rows++];
        acc a = {0};
        snprintf(r->name, sizeof r->name, "always-%s", t->options[o] ? t->options[o] : "?");
        r->param = NAN;
        for (size_t q = 0; q < nq; q++) {
            acc_add(&a, t, q, cell(t, q, o), (int)o);
            r->calls[o]++;
        }
        acc_finish(&a, &opt, r);
    }
    /* The best single option: the always-X of best quality, cheapest among
     * ties (listed order after that). */
    {
        const dynrag_eval_row *always = &out->rows[out->n_rows - no], *best = NULL;
        for (size_t o = 0; o < no; o++) {
            const dynrag_eval_row *r = &always[o];
            double q = isnan(r->quality) ? -INFINITY : r->quality;
            double bq = best == NULL || isnan(best->quality) ? -INFINITY : best->quality;
            if (best == NULL || q > bq || (q == bq && cost0_mean(r) < cost0_mean(best)))
                best = r;
        }
        dynrag_eval_row *r = &out->rows[out->n_rows++];
        *r = *best;
        snprintf(r->name, sizeof r->name, "best-single");
    }
    /* Uniform random. */
    {
        dynrag_eval_row *r = &out->rows[out->n_rows++];
        acc a = {0};
        snprintf(r->name, sizeof r->name, "random");
        r->param = NAN;
        dr_rng_seed(&rng, opt.seed);
        for (size_t q = 0; q < nq; q++) {
            int o = (int)dr_rng_below(&rng, no);
            acc_add(&a, t, q, cell(t, q, (size_t)o), o);
            r->calls[o]++;
        }
        acc_finish(&a, &opt, r);
    }
    /* Random at the router's mix. */
    if (choices) {
        double mix[DYNRAG_MAX_OPTIONS] = {0};
        size_t n_chosen = 0;
        for (size_t q = 0; q < nq; q++)
            if (t->router_choice[q] >= 0) {
                mix[t->router_choice[q]] += 1;
                n_chosen++;
            }
        dynrag_eval_row *r = &out->rows[out->n_rows++];
        acc a = {0};
        snprintf(r->name, sizeof r->name, "random-mix");
        r->param = NAN;
        dr_rng_seed(&rng, opt.seed ^ 0x9e3779b97f4a7c15ULL);
        for (size_t q = 0; q < nq; q++) {
            double u = dr_rng_uniform(&rng) * (double)n_chosen, c = 0;
            int o = (int)no - 1;
            for (size_t k = 0; k < no; k++) {
                c += mix[k];
                if (u < c) {
                    o = (int)k;
                    break;
                }
            }
            while (o > 0 && mix[o] == 0)
                o--;
            acc_add(&a, t, q, cell(t, q, (size_t)o), o);
            r->calls[o]++;
        }
        acc_finish(&a, &opt, r);
    }
    /* The oracle. */
    {
        dynrag_eval_row *r = &out->rows[out->n_rows++];
        acc a = {0};
        snprintf(r->name, sizeof r->name, "oracle");
        r->param = NAN;
        for (size_t q = 0; q < nq; q++) {
            int o = oracle_pick(t, q, &opt);
            acc_add(&a, t, q, cell(t, q, (size_t)o), o);
            r->calls[o]++;
        }
        acc_finish(&a, &opt, r);
    }
    /* The threshold sweep. */
    if (opt.sweep != DYNRAG_EVAL_SWEEP_NONE) {
        double lo = opt.grid_lo, hi = opt.grid_hi;
        size_t ng = opt.n_grid;
        out->sweep = dr_calloc(ng ? ng : 1, sizeof *out->sweep);
        if (out->sweep == NULL) {
            dynrag_eval_comparison_free(out);
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        }
        int esc = opt.escalate >= 0 && (size_t)opt.escalate < no ? opt.escalate : (int)no - 1;
        for (size_t g = 0; g < ng; g++) {
            double thr = opt.grid ? opt.grid[g] : lo + (hi - lo) * (double)g / (double)(ng - 1);
            dynrag_eval_row *r = &out->sweep[out->n_sweep++];
            acc a = {0};
            snprintf(r->name, sizeof r->name, "sweep");
            r->param = thr;
            for (size_t q = 0; q < nq; q++) {
                if (opt.sweep == DYNRAG_EVAL_SWEEP_CLASSIFIER) {
                    int o = classifier_pick(t, q, thr, esc);
                    acc_add(&a, t, q, cell(t, q, (size_t)o), o);
                    r->calls[o]++;
                } else {
                    int o = cascade_pick(t, q, thr);
                    chain_outcome(t, q, dr_eval_span(0, o), o, &tmp, r);
                    acc_add(&a, t, q, &tmp, o);
                }
            }
            acc_finish(&a, &opt, r);
        }
    }
    return DYNRAG_OK;
}

void dr_eval_row_of_choices(const dynrag_eval_table *t, const dynrag_eval_compare_options *opt,
                            const int *choice, const char *name, double param,
                            dynrag_eval_row *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof r->name, "%s", name);
    r->param = param;
    acc a = {0};
    for (size_t q = 0; q < t->n_queries; q++) {
        int c = choice[q];
        if (c >= 0 && (size_t)c < t->n_options && c < DYNRAG_MAX_OPTIONS) {
            acc_add(&a, t, q, cell(t, q, (size_t)c), c);
            r->calls[c]++;
        } else {
            acc_add(&a, t, q, &t->router_outcome[q], -1);
        }
    }
    acc_finish(&a, opt, r);
}

void dr_eval_row_of_chains(const dynrag_eval_table *t, const dynrag_eval_compare_options *opt,
                           const uint32_t *called, const int *last, const char *name,
                           double param, dynrag_eval_row *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof r->name, "%s", name);
    r->param = param;
    acc a = {0};
    dynrag_eval_outcome tmp;
    for (size_t q = 0; q < t->n_queries; q++) {
        int l = last[q];
        if (l >= 0 && (size_t)l < t->n_options && l < DYNRAG_MAX_OPTIONS) {
            chain_outcome(t, q, called[q], l, &tmp, r);
            acc_add(&a, t, q, &tmp, l);
        } else {
            acc_add(&a, t, q, &t->router_outcome[q], -1);
        }
    }
    acc_finish(&a, opt, r);
}

void dynrag_eval_comparison_free(dynrag_eval_comparison *c)
{
    if (c == NULL)
        return;
    dr_free(c->rows);
    dr_free(c->sweep);
    dr_free(c->hull);
    memset(c, 0, sizeof(*c));
}

const dynrag_eval_row *dynrag_eval_comparison_row(const dynrag_eval_comparison *c,
                                                  const char *name)
{
    for (size_t i = 0; c && i < c->n_rows; i++)
        if (strcmp(c->rows[i].name, name) == 0)
            return &c->rows[i];
    return NULL;
}
