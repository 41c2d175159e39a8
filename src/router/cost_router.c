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
 * "Cheapest" compares a combined cost: the sum over usd, latency_ms and
 * energy_wh of the option's value divided by the largest value of that field
 * among the stage's options (fields that are 0 everywhere are ignored), ties
 * broken by listed order. Options with no declared quality (NAN) rank below
 * any declared quality and never reach a floor.
 */
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
    return !(cost->usd > remaining->usd) && !(cost->latency_ms > remaining->latency_ms) &&
           !(cost->energy_wh > remaining->energy_wh);
}

typedef struct cost_router {
    dr_router base;
    bool min_cost;
    double floor;
} cost_router;

static double qual(const dr_option *o)
{
    return isnan(o->quality) ? -INFINITY : o->quality;
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
        est[i] = dr_cost_estimate(&st->options[i], chars);
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
    dr_route_decision_reset(out);
    int pick = -1;
    const char *why = "";
    if (!cr->min_cost) {
        for (size_t i = 0; i < n; i++) {
            out->scores[i] = st->options[i].quality;
            if (!st->options[i].available || !fits[i])
                continue;
            if (pick < 0 || qual(&st->options[i]) > qual(&st->options[pick]) ||
                (qual(&st->options[i]) == qual(&st->options[pick]) &&
                 combined[i] < combined[pick]))
                pick = (int)i;
        }
        why = "highest quality within budget";
    } else {
        for (size_t i = 0; i < n; i++) {
            out->scores[i] = -combined[i];
            if (!st->options[i].available || !fits[i] || !(st->options[i].quality >= cr->floor))
                continue;
            if (pick < 0 || combined[i] < combined[pick])
                pick = (int)i;
        }
        why = "cheapest reaching the quality floor";
        if (pick < 0) {
            for (size_t i = 0; i < n; i++) {
                if (!st->options[i].available || !fits[i])
                    continue;
                if (pick < 0 || qual(&st->options[i]) > qual(&st->options[pick]))
                    pick = (int)i;
            }
            why = "none reaches the quality floor: highest quality within budget";
        }
    }
    if (pick < 0) {
        for (size_t i = 0; i < n; i++)
            if (st->options[i].available && (pick < 0 || combined[i] < combined[pick]))
                pick = (int)i;
        why = "nothing fits the remaining budget: cheapest";
    }
    if (pick < 0)
        return dr_err_set(err, DYNRAG_ERR_STATE, "stages.%s: no option is available",
                          dr_router_stage_label(st));
    out->option = pick;
    snprintf(out->reason, sizeof out->reason,
             "cost %s: %s: %s (quality %.3g, est $%.6f, %.0f ms, %.3g Wh)",
             cr->min_cost ? "min_cost" : "max_quality", why, st->options[pick].name,
             st->options[pick].quality, est[pick].usd, est[pick].latency_ms,
             est[pick].energy_wh);
    return DYNRAG_OK;
}

static void cost_free(dr_router *r)
{
    free(r);
}

static const dr_router_vtable cost_vt = {cost_route, dr_router_feedback_none,
                                         dr_router_save_none, cost_free};

int dr_router_create_cost(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                          dynrag_error *err)
{
    const cJSON *params = stage->router.params;
    const char *obj = dr_rparam_str(params, "objective", "max_quality");
    bool min_cost = strcmp(obj, "min_cost") == 0;
    if (!min_cost && strcmp(obj, "max_quality") != 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.objective: unknown objective '%s' (max_quality or "
                          "min_cost)",
                          dr_router_stage_label(stage), obj);
    double floor_q = dr_rparam_num(params, "quality_floor", 0.0);
    if (!(floor_q >= 0 && floor_q <= 1))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.quality_floor: expected a number in [0, 1]",
                          dr_router_stage_label(stage));
    cost_router *cr = calloc(1, sizeof *cr);
    if (cr == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    cr->base.vt = &cost_vt;
    cr->min_cost = min_cost;
    cr->floor = floor_q;
    *out = &cr->base;
    return DYNRAG_OK;
}
