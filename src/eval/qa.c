/*
 * qa.c - answer metrics with SQuAD normalisation, the metrics an outcome
 * records (slots, accessors), and the outcome-table container of the
 * evaluation harness.
 */
#include "dynrag/eval.h"
#include "dynrag/metrics.h"

#include "core/text.h"
#include "core/util.h"
#include "eval/eval_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- answer metrics --------------------------------------------------------- */

/* Splits a normalised string (single spaces, none at the ends) in place into
 * tokens; returns the count (0 for ""). toks must have room for
 * strlen(s)/2 + 1 pointers. */
static size_t split_tokens(char *s, char **toks)
{
    size_t n = 0;
    char *p = s;
    while (*p) {
        toks[n++] = p;
        char *sp = strchr(p, ' ');
        if (sp == NULL)
            break;
        *sp = '\0';
        p = sp + 1;
    }
    return n;
}

double dynrag_eval_em(const char *prediction, const char *const *golds, size_t n)
{
    char *p = dr_squad_normalize(prediction);
    double best = 0;
    for (size_t i = 0; p && i < n && best < 1; i++) {
        char *g = dr_squad_normalize(golds[i]);
        if (g && strcmp(p, g) == 0)
            best = 1;
        dr_free(g);
    }
    dr_free(p);
    return best;
}

/* Token F1 of one normalised pair (SQuAD: bag-of-tokens overlap; when either
 * side has no token, 1 if both are empty, else 0). */
static double f1_pair(const char *pn, const char *gn)
{
    char *a = dr_strdup(pn), *b = dr_strdup(gn);
    char **ta = dr_malloc((strlen(pn) / 2 + 1) * sizeof *ta);
    char **tb = dr_malloc((strlen(gn) / 2 + 1) * sizeof *tb);
    bool *used = dr_calloc(strlen(gn) / 2 + 1, sizeof *used);
    double f1 = 0;
    if (a == NULL || b == NULL || ta == NULL || tb == NULL || used == NULL)
        goto cleanup;
    size_t na = split_tokens(a, ta), nb = split_tokens(b, tb);
    if (na == 0 || nb == 0) {
        f1 = na == nb ? 1.0 : 0.0;
        goto cleanup;
    }
    size_t common = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (!used[j] && strcmp(ta[i], tb[j]) == 0) {
                used[j] = true;
                common++;
                break;
            }
    if (common > 0) {
        double prec = (double)common / (double)na, rec = (double)common / (double)nb;
        f1 = 2 * prec * rec / (prec + rec);
    }
cleanup:
    dr_free(a);
    dr_free(b);
    dr_free(ta);
    dr_free(tb);
    dr_free(used);
    return f1;
}

double dynrag_eval_f1(const char *prediction, const char *const *golds, size_t n)
{
    char *p = dr_squad_normalize(prediction);
    double best = 0;
    for (size_t i = 0; p && i < n; i++) {
        char *g = dr_squad_normalize(golds[i]);
        if (g) {
            double f = f1_pair(p, g);
            best = f > best ? f : best;
        }
        dr_free(g);
    }
    dr_free(p);
    return best;
}

double dynrag_eval_contains(const char *text, const char *const *golds, size_t n)
{
    char *t = dr_squad_normalize(text);
    double hit = 0;
    if (t == NULL)
        return 0;
    size_t tl = strlen(t);
    for (size_t i = 0; i < n && hit == 0; i++) {
        char *g = dr_squad_normalize(golds[i]);
        size_t gl = g ? strlen(g) : 0;
        for (const char *p = gl ? strstr(t, g) : NULL; p; p = strstr(p + 1, g)) {
            size_t off = (size_t)(p - t);
            bool left = off == 0 || t[off - 1] == ' ';
            bool right = off + gl == tl || t[off + gl] == ' ';
            if (left && right) {
                hit = 1;
                break;
            }
        }
        dr_free(g);
    }
    dr_free(t);
    return hit;
}

/* ---- recorded metrics ------------------------------------------------------------ */

/* Each slot's metric and key, indexed by dr_eval_slot. */
static const struct {
    dynrag_metric_spec metric;
    const char *key;
} slot_info[DR_EVAL_N_SLOTS] = {
    [DR_SLOT_EM] = {{DYNRAG_METRIC_EM, 0}, "em"},
    [DR_SLOT_F1] = {{DYNRAG_METRIC_F1, 0}, "f1"},
    [DR_SLOT_CONTEXT] = {{DYNRAG_METRIC_CONTEXT, 0}, "context"},
    [DR_SLOT_SUPPORT] = {{DYNRAG_METRIC_SUPPORT, 0}, "support"},
    [DR_SLOT_NDCG10] = {{DYNRAG_METRIC_NDCG, 10}, "ndcg@10"},
    [DR_SLOT_RECALL10] = {{DYNRAG_METRIC_RECALL, 10}, "recall@10"},
    [DR_SLOT_RECALL100] = {{DYNRAG_METRIC_RECALL, 100}, "recall@100"},
    [DR_SLOT_MRR10] = {{DYNRAG_METRIC_MRR, 10}, "mrr@10"},
    [DR_SLOT_STEPS] = {{DYNRAG_METRIC_STEPS, 0}, "steps"},
    [DR_SLOT_CALLS] = {{DYNRAG_METRIC_CALLS, 0}, "calls"},
    [DR_SLOT_TOKENS] = {{DYNRAG_METRIC_TOKENS, 0}, "tokens"},
    [DR_SLOT_USD] = {{DYNRAG_METRIC_USD, 0}, "usd"},
    [DR_SLOT_LATENCY] = {{DYNRAG_METRIC_LATENCY, 0}, "latency_ms"},
    [DR_SLOT_ENERGY] = {{DYNRAG_METRIC_ENERGY, 0}, "energy_wh"},
    [DR_SLOT_QUALITY] = {{DYNRAG_METRIC_QUALITY, 0}, "quality"},
};

const char *dr_eval_slot_key(dr_eval_slot s)
{
    return (unsigned)s < DR_EVAL_N_SLOTS ? slot_info[s].key : "?";
}

dynrag_metric_spec dr_eval_slot_metric(dr_eval_slot s)
{
    dynrag_metric_spec none = {DYNRAG_METRIC_DEFAULT, 0};
    return (unsigned)s < DR_EVAL_N_SLOTS ? slot_info[s].metric : none;
}

bool dr_eval_slot_is_cost(dr_eval_slot s)
{
    return (unsigned)s < DR_EVAL_N_SLOTS && dynrag_metric_is_cost(slot_info[s].metric.metric);
}

/* The slot of m, or -1. */
static int find_slot(dynrag_metric_spec m)
{
    for (int i = 0; i < DR_EVAL_N_SLOTS; i++)
        if (slot_info[i].metric.metric == m.metric && slot_info[i].metric.k == m.k)
            return i;
    return -1;
}

int dr_eval_slot_of(dynrag_metric_spec m, const char *field, dr_eval_slot *out, dynrag_error *err)
{
    int i = find_slot(m);
    if (i >= 0) {
        *out = (dr_eval_slot)i;
        return DYNRAG_OK;
    }
    const char *f = field ? field : "", *sep = field ? ": " : "";
    char name[48];
    dynrag_metric_key(m, name, sizeof name);
    if (m.metric == DYNRAG_METRIC_DEFAULT)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "%s%sDYNRAG_METRIC_DEFAULT is not accepted here (expected a metric "
                          "the evaluation records)",
                          f, sep);
    if (strcmp(name, "?") == 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "%s%sunknown metric %d", f, sep, (int)m.metric);
    if (m.metric <= DYNRAG_METRIC_P)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "%s%smetric '%s': the evaluation records only ndcg@10, recall@10, "
                          "recall@100 and mrr@10 of the ranking metrics",
                          f, sep, name);
    return dr_err_set(err, DYNRAG_ERR_INVALID,
                      "%s%smetric '%s': only ranking metrics take a cutoff (k must be 0)", f, sep,
                      name);
}

/* Public: see dynrag/eval.h. */
void dynrag_eval_outcome_init(dynrag_eval_outcome *o)
{
    for (int i = 0; i < DYNRAG_EVAL_SLOTS; i++)
        o->slots[i] = NAN;
    o->confidence = NAN;
    o->ok = false;
}

/* Public: see dynrag/eval.h. */
double dynrag_eval_outcome_get(const dynrag_eval_outcome *o, dynrag_metric_spec m)
{
    int i = find_slot(m);
    return o && i >= 0 ? o->slots[i] : NAN;
}

/* Public: see dynrag/eval.h. */
int dynrag_eval_outcome_set(dynrag_eval_outcome *o, dynrag_metric_spec m, double v,
                            dynrag_error *err)
{
    dr_eval_slot s;
    int rc = dr_eval_slot_of(m, NULL, &s, err);
    if (rc == DYNRAG_OK)
        o->slots[s] = v;
    return rc;
}

/* Public: see dynrag/eval.h. */
double dynrag_eval_row_get(const dynrag_eval_row *r, dynrag_metric_spec m)
{
    int i = find_slot(m);
    return r && i >= 0 ? r->means[i] : NAN;
}

/* ---- tables ----------------------------------------------------------------------- */

int dynrag_eval_table_new(const char *stage, const char *router_type, size_t n_queries,
                          size_t n_options, dynrag_eval_table **out, dynrag_error *err)
{
    *out = NULL;
    if (n_options == 0 || n_options > 16)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "eval table: %zu options (expected 1..16)",
                          n_options);
    if (n_queries > ((size_t)1 << 26))
        return dr_err_set(err, DYNRAG_ERR_LIMIT, "eval table: too many queries (%zu)", n_queries);
    dynrag_eval_table *t = dr_calloc(1, sizeof *t);
    if (t == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    size_t nq = n_queries ? n_queries : 1;
    t->stage = dr_strdup(stage ? stage : "");
    t->router_type = dr_strdup(router_type ? router_type : "");
    t->default_quality = dr_eval_slot_metric(DR_SLOT_F1);
    t->n_queries = n_queries;
    t->n_options = n_options;
    t->query_ids = dr_calloc(nq, sizeof *t->query_ids);
    t->options = dr_calloc(n_options, sizeof *t->options);
    t->cells = dr_malloc(nq * n_options * sizeof *t->cells);
    t->router_choice = dr_malloc(nq * sizeof *t->router_choice);
    t->router_first = dr_malloc(nq * sizeof *t->router_first);
    t->router_called = dr_calloc(nq, sizeof *t->router_called);
    t->router_unavailable = dr_calloc(nq, sizeof *t->router_unavailable);
    t->router_outcome = dr_malloc(nq * sizeof *t->router_outcome);
    t->router_scores = dr_malloc(nq * n_options * sizeof *t->router_scores);
    if (!t->stage || !t->router_type || !t->query_ids || !t->options || !t->cells ||
        !t->router_choice || !t->router_first || !t->router_called || !t->router_unavailable ||
        !t->router_outcome ||
        !t->router_scores) {
        dynrag_eval_table_free(t);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < nq * n_options; i++) {
        dynrag_eval_outcome_init(&t->cells[i]);
        t->router_scores[i] = NAN;
    }
    for (size_t i = 0; i < nq; i++) {
        t->router_choice[i] = -1;
        t->router_first[i] = -1;
        dynrag_eval_outcome_init(&t->router_outcome[i]);
    }
    *out = t;
    return DYNRAG_OK;
}

void dynrag_eval_table_free(dynrag_eval_table *t)
{
    if (t == NULL)
        return;
    if (t->query_ids)
        for (size_t i = 0; i < t->n_queries; i++)
            dr_free(t->query_ids[i]);
    if (t->options)
        for (size_t i = 0; i < t->n_options; i++)
            dr_free(t->options[i]);
    dr_free(t->query_ids);
    dr_free(t->options);
    dr_free(t->cells);
    dr_free(t->router_choice);
    dr_free(t->router_first);
    dr_free(t->router_called);
    dr_free(t->router_unavailable);
    dr_free(t->router_outcome);
    dr_free(t->router_scores);
    dr_free(t->stage);
    dr_free(t->router_type);
    dr_free(t);
}
