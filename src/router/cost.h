/*
 * router/cost.h - the expected cost of running an option for a query when
 * the engine gives no prices (internal). Inside the engine the cost router
 * uses the engine's own prices (dr_route_ctx.price, engine/budget.c).
 */
#ifndef DYNRAG_ROUTER_COST_H
#define DYNRAG_ROUTER_COST_H

#include "pipeline/spec.h"

/* Fixed allowances of the estimate (tokens). */
#define DR_COST_CONTEXT_TOKENS 512 /* retrieved context and instructions in the prompt */
#define DR_COST_OUTPUT_TOKENS 128  /* a short answer */

/*
 * The expected cost of one run of `opt` for a query of `query_chars`
 * characters: input tokens = ceil(query_chars / 4) + DR_COST_CONTEXT_TOKENS,
 * output tokens = DR_COST_OUTPUT_TOKENS,
 *   usd        = usd_per_1k_input * in / 1000 + usd_per_1k_output * out / 1000,
 *   latency_ms = opt->cost.latency_ms,  energy_wh = opt->cost.energy_wh.
 * NAN or negative declared costs count as 0.
 */
dr_budget dr_cost_estimate(const dr_option *opt, int query_chars);

/* True when every field of `cost` is <= the same field of `remaining` plus
 * 1e-12 (INFINITY fields always fit), as the engine's dr_budget_fits(). */
bool dr_cost_fits(const dr_budget *cost, const dr_budget *remaining);

#endif
