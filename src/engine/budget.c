/*
 * engine/budget.c - one price for every spending action and the check that
 * it fits what is left of a budget.
 */
#include "engine/budget.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static double nonneg(double v)
{
    return isnan(v) || v < 0 ? 0.0 : v;
}

dr_budget dr_budget_price(const dr_option *o, double in_tokens, double out_tokens)
{
    if (out_tokens > 0 && strcmp(o->kind, "openai") == 0 &&
        cJSON_GetObjectItemCaseSensitive(o->params, "max_tokens") != NULL)
        out_tokens = dr_param_int(o->params, "max_tokens", (int)out_tokens);
    return dr_budget_price_call(o, in_tokens, out_tokens);
}

dr_budget dr_budget_price_call(const dr_option *o, double in_tokens, double out_tokens)
{
    dr_budget b;
    b.usd = nonneg(o->cost.usd_per_1k_input) * nonneg(in_tokens) / 1000.0 +
            nonneg(o->cost.usd_per_1k_output) * nonneg(out_tokens) / 1000.0;
    b.latency_ms = nonneg(o->cost.latency_ms);
    b.energy_wh = nonneg(o->cost.energy_wh);
    return b;
}

bool dr_budget_fits(const dr_budget *cost, const dr_budget *remaining)
{
    const double eps = 1e-12;
    return !(cost->usd > remaining->usd + eps) &&
           !(cost->latency_ms > remaining->latency_ms + eps) &&
           !(cost->energy_wh > remaining->energy_wh + eps);
}

dr_budget dr_budget_add(dr_budget a, dr_budget b)
{
    dr_budget r = {a.usd + b.usd, a.latency_ms + b.latency_ms, a.energy_wh + b.energy_wh};
    return r;
}

static double tighter(double pipeline, double caller)
{
    return !isnan(caller) && caller < pipeline ? caller : pipeline;
}

dr_budget dr_budget_effective(const dr_budget *pipeline, const dr_budget *caller)
{
    dr_budget b = *pipeline;
    if (caller != NULL) {
        b.usd = tighter(b.usd, caller->usd);
        b.latency_ms = tighter(b.latency_ms, caller->latency_ms);
        b.energy_wh = tighter(b.energy_wh, caller->energy_wh);
    }
    return b;
}

int64_t dr_budget_deadline(int64_t start_us, double latency_ms)
{
    if (!isfinite(latency_ms))
        return 0;
    double us = latency_ms > 0 ? latency_ms * 1000.0 : 0.0;
    if (us > 9e15)
        return 0;
    int64_t d = start_us + (int64_t)us;
    return d > 0 ? d : 1;
}

void dr_budget_format(const dr_budget *b, char *buf, size_t size)
{
    snprintf(buf, size, "usd %.6g, latency_ms %.6g, energy_wh %.6g", b->usd, b->latency_ms,
             b->energy_wh);
}
