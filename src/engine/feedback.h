/*
 * engine/feedback.h - what the engine remembers of a query so that a later
 * reward reaches its bandit routers (internal to the engine; the feedback
 * calls are public in dynrag/engine.h).
 */
#ifndef DYNRAG_ENGINE_FEEDBACK_H
#define DYNRAG_ENGINE_FEEDBACK_H

#include "engine/query.h"

/* Remembers query `id`'s choices, features, cost and generator latency in
 * the engine's ring of the last DR_MEMO_CAP queries (thread-safe). */
void dr_engine_remember(dynrag_engine *e, const char *id, const qstate *s);

/*
 * The reward a bandit router with router params `params` learns for a query
 * given `reward`: reward - lambda * usd, and when params has `sla_ms` (> 0),
 * minus sla_penalty (default 1) * max(0, latency_ms - sla_ms) / sla_ms
 * (PickLLM's SLA penalty), the overshoot ratio capped at
 * DR_SLA_OVERSHOOT_MAX so the result stays finite. latency_ms is the
 * query's generator latency; a NaN one counts as within the SLA.
 */
#define DR_SLA_OVERSHOOT_MAX 1e6
double dr_bandit_shaped_reward(const cJSON *params, double reward, double usd, double latency_ms);

#endif
