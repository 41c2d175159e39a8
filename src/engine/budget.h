/*
 * engine/budget.h - the one price estimator of every spending action, and
 * the remaining budget and deadline of a query (internal to the engine).
 *
 * Every action that spends (a generator call, a multi-step reasoning call, a
 * cascade escalation, a remote embedder call, a retrieval step) is priced
 * here before it runs; the cost router sees the same prices (through
 * dr_route_ctx.price), so the router and the engine never disagree.
 * Depends on nothing in src/engine/.
 */
#ifndef DYNRAG_ENGINE_BUDGET_H
#define DYNRAG_ENGINE_BUDGET_H

#include "pipeline/spec.h"

#include <stdint.h>

/* Output tokens assumed for a generator call when the option declares no
 * `max_tokens`; a reasoning call asks for DR_BUDGET_REASONING_TOKENS. */
#define DR_BUDGET_ANSWER_TOKENS 256
#define DR_BUDGET_REASONING_TOKENS 96

/*
 * The expected cost of running option `o` once with `in_tokens` input and
 * `out_tokens` output tokens:
 *   usd        = usd_per_1k_input * in / 1000 + usd_per_1k_output * out / 1000
 *   latency_ms = the declared latency_ms, energy_wh = the declared energy_wh.
 * An openai option's own `max_tokens` replaces a non-zero out_tokens (it
 * bounds the output). NAN or negative declared costs count as 0.
 */
dr_budget dr_budget_price(const dr_option *o, double in_tokens, double out_tokens);

/* The price of a call of option `o` that asks for exactly out_tokens output
 * tokens (a multi-step reasoning call): as dr_budget_price() without the
 * option's max_tokens. */
dr_budget dr_budget_price_call(const dr_option *o, double in_tokens, double out_tokens);

/* True when every field of `cost` is within the same field of `remaining`
 * (INFINITY fields always fit; a tolerance of 1e-12 absorbs rounding). */
bool dr_budget_fits(const dr_budget *cost, const dr_budget *remaining);

/* a + b field by field. */
dr_budget dr_budget_add(dr_budget a, dr_budget b);

/*
 * The budget a query runs under: each field of the pipeline's budget, or
 * the caller's field when that is smaller (a caller can tighten a budget,
 * never loosen it). `caller` may be NULL; its NAN fields are not set.
 */
dr_budget dr_budget_effective(const dr_budget *pipeline, const dr_budget *caller);

/* The absolute deadline (dr_now_us() clock) of a query that started at
 * start_us with latency budget latency_ms; 0 when the budget is unbounded. */
int64_t dr_budget_deadline(int64_t start_us, double latency_ms);

/* Writes "usd X, latency_ms Y, energy_wh Z" (finite fields only) into buf. */
void dr_budget_format(const dr_budget *b, char *buf, size_t size);

#endif
