/*
 * cost_router.c - picks by declared quality and expected cost.
 *
 * params: {objective: max_quality|min_cost (max_quality), quality_floor (0)}.
 *   max_quality: the available option with the highest declared quality whose
 *     expected cost fits the remaining budget (ties: the cheaper one).
 *   min_cost: the cheapest available option whose quality >= quality_floor
 *     and whose cost fits; when none reaches the floor, the highest quality
 *     that fits.
 *   When no available option fits the budget, the cheapest available one is
 *   chosen and the reason says so (the engine then applies its own rule).
 * Expected costs are the engine's prices for the query (dr_route_ctx.price,
 * from engine/budget.c: the same numbers the engine's budget check uses);
 * without them (a router used on its own) dr_cost_estimate() below.
 * "Cheapest" compares a combined cost: the sum over usd, latency_ms and
 * energy_wh of the option's value divided by the largest value of that field
 * among the stage's options (fields that are 0 everywhere are ignored), ties
 * broken by listed order. Options with no declared quality (NAN) rank below
 * any declared quality and never reach a floor.
 */
#include "nn/classifier.h"
#include "core/alloc.h"
#include "router/cost.h"
#include "router/router_impl.h"

#include <math.h>
#include <stdio.h>

static double nonneg(double v)
{
    return isnan(v) || v < 0 ? 0.0 : v;
}

dr_budget dr_cost_estimate(const dr_option *opt, int query_chars)
{
    double in = ceil((double)DR_MAX(query_chars, 0) / 4.0) + DR_COST_CONTEXT_TOKENS;
    double outk = DR_COST_OUTPUT_TOKENS;
    dr_budget b;
    b.usd = nonneg(opt->cost.usd_per_1k_input) * in / 1000.0 +
            nonneg(opt->cost.usd_per_1k_output) * outk / 1000.0;
    b.latency_ms = nonneg(opt->cost.latency_ms);
    b.energy_wh = nonneg(opt->cost.energy_wh);
    return b;
}

bool dr_cost_fits(const dr_budget *cost, const dr_budget *remaining)
{
    const double eps = 1e-12; /* the engine's tolerance (engine/budget.c) */
    return !(cost->usd > remaining->usd + eps) &&
           !(cost->latency_ms > remaining->latency_ms + eps) &&
           !(cost->energy_wh > remaining->energy_wh + eps);
}

typedef struct cost_router {
    dr_router base;
    bool min_cost;
    double floor;
    dr_classifier *model; /* quality_model, or NULL for declared qualities */
    int head;
    size_t n_labels;
    int *label_option; /* [n_labels]: option index of each label, -1 unmapped */
} cost_router;

static double qv(double q)
{
    return isnan(q) ? -INFINITY : q;
}

/* The query's per-option quality: declared, or from the quality model. */
static int option_qualities(const cost_router *cr, const dr_route_ctx *ctx, double *q,
                            dynrag_error *err)
{
    const dr_stage *st = cr->base.stage;
    for (size_t i = 0; i < st->n_options; i++)
        q[i] = st->options[i].quality;
    if (cr->model == NULL)
        return DYNRAG_OK;
    float probs[64];
    if (cr->n_labels > 64)
        return dr_err_set(err, DYNRAG_ERR_UNSUPPORTED, "quality_model: more than 64 labels");
    int rc = dr_classifier_predict(cr->model, cr->head, ctx->query ? ctx->query : "", probs, err);
    if (rc != DYNRAG_OK)
        return rc;
    for (size_t i = 0; i < st->n_options; i++) {
        double sum = 0;
        for (size_t l = 0; l < cr->n_labels; l++)
            if (cr->label_option[l] >= 0 && (size_t)cr->label_option[l] <= i)
                sum += probs[l];
        q[i] = sum > 1 ? 1 : sum;
    }
    return DYNRAG_OK;
}

static int cost_route(dr_router *r, const dr_route_ctx *ctx, dr_route_decision *out,
                      dynrag_error *err)
{
    const cost_router *cr = (const cost_router *)r;
    const dr_stage *st = r->stage;
    size_t n = st->n_options;
    int chars = 0;
    if (ctx->features != NULL) {
        chars = ctx->features->n_chars;
    } else if (ctx->query != NULL) {
        size_t len = strlen(ctx->query);
        chars = len > (size_t)INT32_MAX ? INT32_MAX : (int)len;
    }
    dr_budget est[DR_MAX_OPTIONS];
    double maxv[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        est[i] = ctx->price != NULL ? ctx->price[i] : dr_cost_estimate(&st->options[i], chars);
        maxv[0] = DR_MAX(maxv[0], est[i].usd);
        maxv[1] = DR_MAX(maxv[1], est[i].latency_ms);
        maxv[2] = DR_MAX(maxv[2], est[i].energy_wh);
    }
    double combined[DR_MAX_OPTIONS];
    bool fits[DR_MAX_OPTIONS];
    for (size_t i = 0; i < n; i++) {
        combined[i] = (maxv[0] > 0 ? est[i].usd / maxv[0] : 0) +
                      (maxv[1] > 0 ? est[i].latency_ms / maxv[1] : 0) +
                      (maxv[2] > 0 ? est[i].energy_wh / maxv[2] : 0);
        fits[i] = dr_cost_fits(&est[i], &ctx->remaining);
    }
    double q[DR_MAX_OPTIONS];
    int qrc = option_qualities(cr, ctx, q, err);
    if (qrc != DYNRAG_OK)
        return qrc;
    dr_route_decision_reset(out);
    int pick = -1;
    const char *why = "";
    if (!cr->min_cost) {
        for (size_t i = 0; i < n; i++) {
            out->scores[i] = q[i];
            if (!dr_route_ok(ctx, st, i) || !fits[i])
                continue;
            if (pick < 0 || qv(q[i]) > qv(q[pick]) ||
                (qv(q[i]) == qv(q[pick]) && combined[i] < combined[pick]))
                pick = (int)i;
        }
        why = "highest quality within budget";
    } else {
        for (size_t i = 0; i < n; i++) {
            out->scores[i] = -combined[i];
            if (!dr_route_ok(ctx, st, i) || !fits[i] || !(q[i] >= cr->floor))
                continue;
            if (pick < 0 || combined[i] < combined[pick])
                pick = (int)i;
        }
        why = "cheapest reaching the quality floor";
        if (pick < 0) {
            for (size_t i = 0; i < n; i++) {
                if (!dr_route_ok(ctx, st, i) || !fits[i])
                    continue;
                if (pick < 0 || qv(q[i]) > qv(q[pick]))
                    pick = (int)i;
            }
            why = "none reaches the quality floor: highest quality within budget";
        }
    }
    if (pick < 0) {
        for (size_t i = 0; i < n; i++)
            if (dr_route_ok(ctx, st, i) && (pick < 0 || combined[i] < combined[pick]))
                pick = (int)i;
        why = "nothing fits the remaining budget: cheapest";
    }
    if (pick < 0)
        return dr_err_set(err, DYNRAG_ERR_STATE, "stages.%s: no option is available",
                          dr_stage_name(st->id));
    out->option = pick;
    snprintf(out->reason, sizeof out->reason,
             "cost %s: %s: %s (quality %.3g, est $%.6f, %.0f ms, %.3g Wh)",
             cr->min_cost ? "min_cost" : "max_quality", why, st->options[pick].name,
             q[pick], est[pick].usd, est[pick].latency_ms,
             est[pick].energy_wh);
    return DYNRAG_OK;
}

static void cost_free(dr_router *r)
{
    cost_router *cr = (cost_router *)r;
    if (cr == NULL)
        return;
    dr_classifier_free(cr->model);
    dr_free(cr->label_option);
    dr_free(cr);
}

/* Loads quality_model and maps its labels to options (quality_labels). */
static int load_quality_model(cost_router *cr, const dr_stage *stage, const cJSON *params,
                              const char *model, dynrag_error *err)
{
    const char *sn = dr_stage_name(stage->id);
    int rc = dr_classifier_load(model, &cr->model, err);
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "stages.%s.router.quality_model", sn);
    const char *head = dr_param_str(params, "quality_head", NULL);
    cr->head = dr_classifier_head(cr->model, head);
    if (cr->head < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.quality_head: %s has no head '%s'", sn, model,
                          head ? head : "(first)");
    cr->n_labels = dr_classifier_n_labels(cr->model, cr->head);
    cr->label_option = dr_malloc((cr->n_labels ? cr->n_labels : 1) * sizeof(*cr->label_option));
    if (cr->label_option == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(params, "quality_labels");
    size_t mapped = 0;
    for (size_t l = 0; l < cr->n_labels; l++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(
            labels, dr_classifier_label(cr->model, cr->head, l));
        cr->label_option[l] = cJSON_IsString(v) ? dr_stage_find_option(stage, v->valuestring) : -1;
        mapped += cr->label_option[l] >= 0;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, labels)
    {
        bool known = false;
        for (size_t l = 0; l < cr->n_labels && !known; l++)
            known = strcmp(it->string, dr_classifier_label(cr->model, cr->head, l)) == 0;
        if (!known)
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "stages.%s.router.quality_labels: %s has no label '%s'", sn, model,
                              it->string);
    }
    if (mapped == 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.quality_labels: no label of %s is mapped", sn, model);
    return DYNRAG_OK;
}

static const dr_router_vtable cost_vt = {cost_route, dr_router_feedback_none,
                                         dr_router_save_none, cost_free};

int dr_router_create_cost(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                          dynrag_error *err)
{
    const cJSON *params = stage->router.params;
    const char *obj = dr_param_str(params, "objective", "max_quality");
    bool min_cost = strcmp(obj, "min_cost") == 0;
    if (!min_cost && strcmp(obj, "max_quality") != 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.objective: unknown objective '%s' (max_quality or "
                          "min_cost)",
                          dr_stage_name(stage->id), obj);
    double floor_q = dr_param_num(params, "quality_floor", 0.0);
    if (!(floor_q >= 0 && floor_q <= 1))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.quality_floor: expected a number in [0, 1]",
                          dr_stage_name(stage->id));
    cost_router *cr = dr_calloc(1, sizeof *cr);
    if (cr == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    cr->base.vt = &cost_vt;
    cr->base.stage = stage;
    cr->min_cost = min_cost;
    cr->floor = floor_q;
    const char *model = dr_param_str(params, "quality_model", NULL);
    if (model != NULL) {
        int rc = load_quality_model(cr, stage, params, model, err);
        if (rc != DYNRAG_OK) {
            cost_free(&cr->base);
            return rc;
        }
    }
    *out = &cr->base;
    return DYNRAG_OK;
}
