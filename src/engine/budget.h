/*
 * engine/budget.h - the price of a spending action and whether it fits what
 * is left of a budget (internal to the engine).
 *
 * Depends on nothing in src/engine/: the pipeline's types only.
 */
#ifndef DYNRAG_ENGINE_BUDGET_H
#define DYNRAG_ENGINE_BUDGET_H

#include "pipeline/spec.h"

/*
 * The expected cost of running option `o` once with `in_tokens` input and
 * `out_tokens` output tokens: *usd from the option's per-1k prices, *lat and
 * *wh its declared latency_ms and energy_wh. An openai option's own
 * `max_tokens` replaces a non-zero `out_tokens` (it bounds the output).
 */
void dr_budget_price(const dr_option *o, double in_tokens, double out_tokens, double *usd,
                     double *lat, double *wh);

/* True when usd, lat and wh are each within the same field of `r` (with a
 * 1e-12 tolerance; INFINITY fields always fit). */
bool dr_budget_fits(const dr_budget *r, double usd, double lat, double wh);

#endif
