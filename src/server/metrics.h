/*
 * server/metrics.h - the server's Prometheus metrics (internal).
 *
 * One dr_metrics per server, updated from every worker thread: the
 * per-request counters (requests, latency histogram, in-flight gauge) with
 * relaxed atomics, route and cost totals under one mutex. dr_metrics_render() writes the Prometheus text exposition format
 * (version 0.0.4).
 */
#ifndef DYNRAG_SERVER_METRICS_H
#define DYNRAG_SERVER_METRICS_H

#include "server/request.h"

#include <stdint.h>

typedef struct dr_metrics dr_metrics;

/* NULL when out of memory. */
dr_metrics *dr_metrics_create(void);
void dr_metrics_free(dr_metrics *m);

/* One finished request: endpoint, HTTP status (100..599) and latency. */
void dr_metrics_request(dr_metrics *m, dr_endpoint_id ep, int status, double seconds);

/* One routing decision: the stage and chosen option (skipped stages are not
 * counted). Names longer than 63 bytes are truncated; at most 256 distinct
 * (stage, option) pairs are kept, later ones are counted under
 * option "_other". */
void dr_metrics_route(dr_metrics *m, const char *stage, const char *option);

/* The cost of one query run by the engine. */
void dr_metrics_cost(dr_metrics *m, double usd, double energy_wh, long long input_tokens,
                     long long output_tokens, int generator_calls, int retrieval_steps,
                     int over_budget);

/* Requests currently being handled (a gauge). */
void dr_metrics_inflight(dr_metrics *m, int delta);

/* The metrics in Prometheus text format. Caller frees; NULL when out of
 * memory. */
char *dr_metrics_render(dr_metrics *m);

/* Test helpers: the count of requests seen for (ep, status), and of a
 * route decision. */
uint64_t dr_metrics_request_count(dr_metrics *m, dr_endpoint_id ep, int status);
uint64_t dr_metrics_route_count(dr_metrics *m, const char *stage, const char *option);

#endif
