/*
 * engine/budget.c - one price for every spending action and the check that
 * it fits what is left of a budget.
 */
#include "engine/budget.h"

#include <string.h>

/* Expected cost of running an option once, for in/out token estimates
 * (an option's own `max_tokens` bounds its output, so it is the estimate). */
void dr_budget_price(const dr_option *o, double in_tokens, double out_tokens, double *usd,
                     double *lat, double *wh)
{
    if (out_tokens > 0 && cJSON_GetObjectItemCaseSensitive(o->params, "max_tokens") &&
        strcmp(o->kind, "openai") == 0)
        out_tokens = dr_param_int(o->params, "max_tokens", (int)out_tokens);
    *usd = o->cost.usd_per_1k_input * in_tokens / 1000.0 +
           o->cost.usd_per_1k_output * out_tokens / 1000.0;
    *lat = o->cost.latency_ms;
    *wh = o->cost.energy_wh;
}

bool dr_budget_fits(const dr_budget *r, double usd, double lat, double wh)
{
    const double eps = 1e-12;
    return usd <= r->usd + eps && lat <= r->latency_ms + eps && wh <= r->energy_wh + eps;
}
