/*
 * router/bandit.h - inspecting a bandit router's learned state (internal).
 *
 * State file format (JSON, written atomically by save()):
 *   {"version": 1, "algorithm": "epsilon_greedy"|"ucb1"|"linucb", "dim": 8,
 *    "rng": ["<16 hex digits>" x 4],
 *    "arms": [{"option": name, "pulls": n, "n": n, "sum_reward": x,
 *              "A": [dim*dim numbers, row-major], "b": [dim numbers]}, ...]}
 * "pulls" counts route() picks, "n" and "sum_reward" count feedback; "A"
 * and "b" are LinUCB's per-arm statistics (A = I + sum x x^T, b = sum r x),
 * present for every algorithm so that switching algorithm keeps them.
 * Arms are matched to options by name on load: an option missing from the
 * file starts fresh, an arm naming no option is ignored. Rewards do not wait
 * for save(): each is committed to the reward store <state>.rewards.db
 * (router/bandit_store.h) before feedback() returns, and the store's
 * statistics of an arm ("n", "sum_reward", "A", "b") override the file's.
 */
#ifndef DYNRAG_ROUTER_BANDIT_H
#define DYNRAG_ROUTER_BANDIT_H

#include "router/router.h"

/* The state of a bandit router as the JSON text save() writes. Caller
 * frees. NULL when r is not a bandit router or out of memory. */
char *dr_bandit_state_json(dr_router *r);

/* Detaches r from its state file and reward store: from now on r learns in
 * memory only (what it loaded stays), and neither feedback() nor save()
 * writes anything. For evaluations that replay a pipeline's bandit over
 * recorded outcomes, which must not reward the deployed state. No-op when r
 * is not a bandit router. Not thread-safe against concurrent feedback. */
void dr_bandit_detach_state(dr_router *r);

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
