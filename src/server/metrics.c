/*
 * metrics.c - request counters, latency histograms, route counts and cost
 * totals, rendered in the Prometheus text format.
 */
#include "server/metrics.h"

#include "core/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Latency histogram bucket upper bounds, seconds. */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define N_BUCKETS (sizeof(buckets) / sizeof(buckets[0]))
#define MAX_ROUTES 256
#define NAME_MAX_ 64

typedef struct route_count {
    char stage[NAME_MAX_];
    char option[NAME_MAX_];
    uint64_t n;
} route_count;

/* The per-request counters, updated without a lock (every request touches
 * them); the rarer route and cost updates share the mutex. */
struct dr_metrics {
    _Atomic uint64_t requests[DR_EP_COUNT][500];       /* by status - 100 */
    _Atomic uint64_t hist[DR_EP_COUNT][N_BUCKETS + 1]; /* non-cumulative; last = +Inf */
    _Atomic double latency_sum[DR_EP_COUNT];
    _Atomic uint64_t latency_count[DR_EP_COUNT];
    atomic_long inflight;

    pthread_mutex_t mu; /* guards the fields below */
    route_count routes[MAX_ROUTES];
    size_t n_routes;
    double usd, energy_wh;
    long long input_tokens, output_tokens;
    uint64_t generator_calls, retrieval_steps, over_budget, queries;
};

/* A plain copy of the metrics, rendered outside any lock. */
typedef struct snapshot {
    uint64_t requests[DR_EP_COUNT][500];
    uint64_t hist[DR_EP_COUNT][N_BUCKETS + 1];
    double latency_sum[DR_EP_COUNT];
    uint64_t latency_count[DR_EP_COUNT];
    long inflight;
    route_count routes[MAX_ROUTES];
    size_t n_routes;
    double usd, energy_wh;
    long long input_tokens, output_tokens;
    uint64_t generator_calls, retrieval_steps, over_budget, queries;
} snapshot;

dr_metrics *dr_metrics_create(void)
{
    dr_metrics *m = dr_calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void dr_metrics_free(dr_metrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->mu);
    dr_free(m);
}

void dr_metrics_request(dr_metrics *m, dr_endpoint_id ep, int status, double seconds)
{
    if ((unsigned)ep >= DR_EP_COUNT)
        ep = DR_EP_OTHER;
    if (status < 100 || status > 599)
        status = 500;
    size_t b = 0;
    while (b < N_BUCKETS && seconds > buckets[b])
        b++;
    atomic_fetch_add_explicit(&m->requests[ep][status - 100], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->hist[ep][b], 1, memory_order_relaxed);
    double old = atomic_load_explicit(&m->latency_sum[ep], memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&m->latency_sum[ep], &old, old + seconds,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
    atomic_fetch_add_explicit(&m->latency_count[ep], 1, memory_order_relaxed);
}

void dr_metrics_route(dr_metrics *m, const char *stage, const char *option)
{
    char s[NAME_MAX_], o[NAME_MAX_];
    dr_strlcpy(s, stage ? stage : "", sizeof(s));
    dr_strlcpy(o, option ? option : "", sizeof(o));
    pthread_mutex_lock(&m->mu);
    route_count *hit = NULL;
    for (size_t i = 0; i < m->n_routes && hit == NULL; i++)
        if (strcmp(m->routes[i].stage, s) == 0 && strcmp(m->routes[i].option, o) == 0)
            hit = &m->routes[i];
    if (hit == NULL && m->n_routes < MAX_ROUTES - 1) {
        hit = &m->routes[m->n_routes++];
        memcpy(hit->stage, s, sizeof(s));
        memcpy(hit->option, o, sizeof(o));
    }
    if (hit == NULL) {
        /* The last slot collects every pair past the cap. */
        hit = &m->routes[MAX_ROUTES - 1];
        if (m->n_routes < MAX_ROUTES) {
            m->n_routes = MAX_ROUTES;
            dr_strlcpy(hit->stage, "_other", sizeof(hit->stage));
            dr_strlcpy(hit->option, "_other", sizeof(hit->option));
        }
    }
    hit->n++;
    pthread_mutex_unlock(&m->mu);
}

void dr_metrics_cost(dr_metrics *m, double usd, double energy_wh, long long input_tokens,
                     long long output_tokens, int generator_calls, int retrieval_steps,
                     int over_budget)
{
    pthread_mutex_lock(&m->mu);
    m->usd += usd;
    m->energy_wh += energy_wh;
    m->input_tokens += input_tokens;
    m->output_tokens += output_tokens;
    m->generator_calls += (uint64_t)(generator_calls > 0 ? generator_calls : 0);
    m->retrieval_steps += (uint64_t)(retrieval_steps > 0 ? retrieval_steps : 0);
    m->over_budget += over_budget ? 1 : 0;
    m->queries++;
    pthread_mutex_unlock(&m->mu);
}

void dr_metrics_inflight(dr_metrics *m, int delta)
{
    atomic_fetch_add_explicit(&m->inflight, delta, memory_order_relaxed);
}

uint64_t dr_metrics_request_count(dr_metrics *m, dr_endpoint_id ep, int status)
{
    if ((unsigned)ep >= DR_EP_COUNT || status < 100 || status > 599)
        return 0;
    return atomic_load(&m->requests[ep][status - 100]);
}

uint64_t dr_metrics_route_count(dr_metrics *m, const char *stage, const char *option)
{
    uint64_t n = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n_routes; i++)
        if (strcmp(m->routes[i].stage, stage) == 0 && strcmp(m->routes[i].option, option) == 0)
            n = m->routes[i].n;
    pthread_mutex_unlock(&m->mu);
    return n;
}

/* Appends a label value with Prometheus escaping (\\, \", \n). */
static int label(dr_buf *b, const char *v)
{
    int rc = DYNRAG_OK;
    for (; *v && rc == DYNRAG_OK; v++) {
        if (*v == '\\' || *v == '"')
            rc = dr_buf_printf(b, "\\%c", *v);
        else if (*v == '\n')
            rc = dr_buf_puts(b, "\\n");
        else
            rc = dr_buf_putc(b, *v);
    }
    return rc;
}

char *dr_metrics_render(dr_metrics *m)
{
    snapshot *c = dr_malloc(sizeof(*c));
    if (c == NULL)
        return NULL;
    /* Each counter is read atomically; the set is not one instant, as a
     * scrape never is across a live server. */
    for (int ep = 0; ep < DR_EP_COUNT; ep++) {
        for (int st = 0; st < 500; st++)
            c->requests[ep][st] = atomic_load_explicit(&m->requests[ep][st], memory_order_relaxed);
        for (size_t i = 0; i <= N_BUCKETS; i++)
            c->hist[ep][i] = atomic_load_explicit(&m->hist[ep][i], memory_order_relaxed);
        c->latency_sum[ep] = atomic_load_explicit(&m->latency_sum[ep], memory_order_relaxed);
        c->latency_count[ep] = atomic_load_explicit(&m->latency_count[ep], memory_order_relaxed);
    }
    c->inflight = atomic_load_explicit(&m->inflight, memory_order_relaxed);
    pthread_mutex_lock(&m->mu);
    memcpy(c->routes, m->routes, sizeof(c->routes));
    c->n_routes = m->n_routes;
    c->usd = m->usd;
    c->energy_wh = m->energy_wh;
    c->input_tokens = m->input_tokens;
    c->output_tokens = m->output_tokens;
    c->generator_calls = m->generator_calls;
    c->retrieval_steps = m->retrieval_steps;
    c->over_budget = m->over_budget;
    c->queries = m->queries;
    pthread_mutex_unlock(&m->mu);

    dr_buf b = {0};
    int rc = dr_buf_puts(&b, "# HELP dynrag_http_requests_total HTTP requests by endpoint and "
                             "status.\n# TYPE dynrag_http_requests_total counter\n");
    for (int ep = 0; ep < DR_EP_COUNT && rc == DYNRAG_OK; ep++)
        for (int s = 0; s < 500 && rc == DYNRAG_OK; s++)
            if (c->requests[ep][s])
                rc = dr_buf_printf(&b,
                                   "dynrag_http_requests_total{endpoint=\"%s\",status=\"%d\"} "
                                   "%llu\n",
                                   dr_endpoint_path((dr_endpoint_id)ep), s + 100,
                                   (unsigned long long)c->requests[ep][s]);
    if (rc == DYNRAG_OK)
        rc = dr_buf_puts(&b, "# HELP dynrag_http_request_duration_seconds Time from the "
                             "request's first byte to its response.\n"
                             "# TYPE dynrag_http_request_duration_seconds histogram\n");
    for (int ep = 0; ep < DR_EP_COUNT && rc == DYNRAG_OK; ep++) {
        if (c->latency_count[ep] == 0)
            continue;
        const char *path = dr_endpoint_path((dr_endpoint_id)ep);
        uint64_t cum = 0;
        for (size_t i = 0; i < N_BUCKETS && rc == DYNRAG_OK; i++) {
            cum += c->hist[ep][i];
            rc = dr_buf_printf(&b,
                               "dynrag_http_request_duration_seconds_bucket{endpoint=\"%s\","
                               "le=\"%g\"} %llu\n",
                               path, buckets[i], (unsigned long long)cum);
        }
        if (rc == DYNRAG_OK)
            rc = dr_buf_printf(&b,
                               "dynrag_http_request_duration_seconds_bucket{endpoint=\"%s\","
                               "le=\"+Inf\"} %llu\n"
                               "dynrag_http_request_duration_seconds_sum{endpoint=\"%s\"} %.9g\n"
                               "dynrag_http_request_duration_seconds_count{endpoint=\"%s\"} "
                               "%llu\n",
                               path, (unsigned long long)c->latency_count[ep], path,
                               c->latency_sum[ep], path, (unsigned long long)c->latency_count[ep]);
    }
    if (rc == DYNRAG_OK)
        rc = dr_buf_puts(&b, "# HELP dynrag_route_decisions_total Options chosen per stage.\n"
                             "# TYPE dynrag_route_decisions_total counter\n");
    for (size_t i = 0; i < c->n_routes && rc == DYNRAG_OK; i++) {
        rc = dr_buf_puts(&b, "dynrag_route_decisions_total{stage=\"");
        if (rc == DYNRAG_OK)
            rc = label(&b, c->routes[i].stage);
        if (rc == DYNRAG_OK)
            rc = dr_buf_puts(&b, "\",option=\"");
        if (rc == DYNRAG_OK)
            rc = label(&b, c->routes[i].option);
        if (rc == DYNRAG_OK)
            rc = dr_buf_printf(&b, "\"} %llu\n", (unsigned long long)c->routes[i].n);
    }
    if (rc == DYNRAG_OK)
        rc = dr_buf_printf(
            &b,
            "# HELP dynrag_queries_total Queries run through the pipeline.\n"
            "# TYPE dynrag_queries_total counter\ndynrag_queries_total %llu\n"
            "# HELP dynrag_cost_usd_total Dollar cost of the queries.\n"
            "# TYPE dynrag_cost_usd_total counter\ndynrag_cost_usd_total %.9g\n"
            "# HELP dynrag_energy_wh_total Energy of the queries, watt-hours.\n"
            "# TYPE dynrag_energy_wh_total counter\ndynrag_energy_wh_total %.9g\n"
            "# HELP dynrag_tokens_total LLM tokens by direction.\n"
            "# TYPE dynrag_tokens_total counter\n"
            "dynrag_tokens_total{direction=\"input\"} %lld\n"
            "dynrag_tokens_total{direction=\"output\"} %lld\n"
            "# HELP dynrag_generator_calls_total Generator (LLM or extractive) calls.\n"
            "# TYPE dynrag_generator_calls_total counter\ndynrag_generator_calls_total %llu\n"
            "# HELP dynrag_retrieval_steps_total Index searches.\n"
            "# TYPE dynrag_retrieval_steps_total counter\ndynrag_retrieval_steps_total %llu\n"
            "# HELP dynrag_over_budget_total Queries that ran past their budget.\n"
            "# TYPE dynrag_over_budget_total counter\ndynrag_over_budget_total %llu\n"
            "# HELP dynrag_http_requests_in_flight Requests being handled.\n"
            "# TYPE dynrag_http_requests_in_flight gauge\ndynrag_http_requests_in_flight %ld\n",
            (unsigned long long)c->queries, c->usd, c->energy_wh, c->input_tokens, c->output_tokens,
            (unsigned long long)c->generator_calls, (unsigned long long)c->retrieval_steps,
            (unsigned long long)c->over_budget, c->inflight);
    dr_free(c);
    if (rc != DYNRAG_OK) {
        dr_buf_free(&b);
        return NULL;
    }
    return dr_buf_take(&b);
}
