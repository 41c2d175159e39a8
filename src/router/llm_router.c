/*
 * llm_router.c - the `llm` router (HuggingGPT-style): an LLM endpoint is
 * shown the query and the available options' names and descriptions and
 * answers with the name of the option to use.
 *
 * params: {endpoint: an endpoint name (required), fallback: an option
 *          (required), timeout_s: per request (default: the endpoint's),
 *          max_retries (0), max_tokens: the answer's token cap (32),
 *          cost: {usd_per_1k_input, usd_per_1k_output, latency_ms, energy_wh}
 *          of one call (all 0 by default)}.
 *
 * The answer is accepted only when, after trimming ASCII white space, it is
 * exactly the name of an offered option (case-sensitive), or a JSON object
 * whose "option" member is such a name. Anything else (junk, an option
 * that was not offered), an HTTP error, a timeout, an endpoint that is not
 * configured, or a call the remaining budget cannot pay routes to
 * `fallback`, and the reason says which. Offered: the options available for
 * the query (dr_route_ok).
 *
 * The call is priced before it is made by the engine's estimator
 * (engine/budget.h, dr_budget_price_call) at `cost` with input tokens
 * ceil(prompt characters / 4) and output tokens max_tokens; it is made only
 * when that price fits ctx->remaining. What it spent (the server's token
 * usage at `cost`'s prices, the measured latency, the declared energy) goes
 * to the decision's `spent`, which the engine charges to the query. The
 * request's deadline is the remaining latency budget when that is finite.
 *
 * Thread-safe: the router holds no mutable state.
 */
#include "engine/budget.h"
#include "core/alloc.h"
#include "generate/llm.h"
#include "router/router_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

typedef struct llm_router {
    dr_router base;
    const dr_endpoint *endpoint;
    int fallback;
    double timeout_s;
    int max_retries;
    int max_tokens;
    dr_option pricing; /* a stand-in option carrying `cost`, for the estimator */
} llm_router;

/* The system message: the offered options (available[i]) with their
 * descriptions and the answer format. */
static int build_prompt(const dr_stage *st, const bool *offered, dr_buf *b)
{
    int rc = dr_buf_puts(b, "You are a router. Choose the one option below that is best suited "
                            "to answer the user's query.\n\nOptions:\n");
    for (size_t i = 0; rc == DYNRAG_OK && i < st->n_options; i++) {
        if (!offered[i])
            continue;
        rc = dr_buf_printf(b, "- %s: %s\n", st->options[i].name,
                           st->options[i].description != NULL ? st->options[i].description
                                                              : "(no description)");
    }
    if (rc == DYNRAG_OK)
        rc = dr_buf_puts(b, "\nReply with the chosen option's name and nothing else, or with "
                            "the JSON object {\"option\": \"<name>\"}.");
    return rc;
}

/* The offered option `text` names strictly (see the top of this file), or -1. */
static int parse_answer(const dr_stage *st, const bool *offered, const char *text)
{
    if (text == NULL)
        return -1;
    const char *s = text, *e = text + strlen(text);
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        e--;
    size_t len = (size_t)(e - s);
    for (size_t i = 0; i < st->n_options; i++)
        if (offered[i] && strlen(st->options[i].name) == len &&
            memcmp(st->options[i].name, s, len) == 0)
            return (int)i;
    if (len == 0 || *s != '{')
        return -1;
    cJSON *j = cJSON_ParseWithLength(s, len);
    const cJSON *o = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "option") : NULL;
    int pick = -1;
    if (cJSON_IsString(o))
        for (size_t i = 0; i < st->n_options; i++)
            if (offered[i] && strcmp(st->options[i].name, o->valuestring) == 0)
                pick = (int)i;
    cJSON_Delete(j);
    return pick;
}

/* Copies at most 60 bytes of text into buf as a one-line quote (control
 * characters become spaces, "..." when cut). */
static void quote(const char *text, char *buf, size_t size)
{
    size_t n = 0, max = size < 64 ? size - 4 : 60;
    const char *t = text != NULL ? text : "";
    for (; t[n] != '\0' && n < max; n++)
        buf[n] = (unsigned char)t[n] < 0x20 ? ' ' : t[n];
    /* Do not cut a UTF-8 sequence in half. */
    while (t[n] != '\0' && n > 0 && ((unsigned char)t[n] & 0xC0) == 0x80)
        n--;
    buf[n] = '\0';
    if (t[n] != '\0')
        memcpy(buf + n, "...", 4);
}

/* Routes to the fallback with a reason. */
static int to_fallback(const llm_router *lr, const dr_route_ctx *ctx, dr_route_decision *out,
                       dynrag_error *err, const char *fmt, ...) DR_PRINTF(5, 6);

static int to_fallback(const llm_router *lr, const dr_route_ctx *ctx, dr_route_decision *out,
                       dynrag_error *err, const char *fmt, ...)
{
    const dr_stage *st = lr->base.stage;
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    out->option = lr->fallback;
    out->scores[lr->fallback] = 1.0;
    snprintf(out->reason, sizeof out->reason, "llm: %s: fallback %s", why,
             st->options[lr->fallback].name);
    return dr_route_ensure_available(ctx, st, out, err);
}

static int llm_route(dr_router *r, const dr_route_ctx *ctx, dr_route_decision *out,
                     dynrag_error *err)
{
    const llm_router *lr = (const llm_router *)r;
    const dr_stage *st = r->stage;
    dr_route_decision_reset(out);
    if (!lr->endpoint->configured)
        return to_fallback(lr, ctx, out, err, "endpoint '%s' is not configured",
                           lr->endpoint->name);
    bool offered[DR_MAX_OPTIONS];
    size_t n_offered = 0;
    for (size_t i = 0; i < st->n_options; i++)
        n_offered += (offered[i] = dr_route_ok(ctx, st, i));
    if (n_offered == 0)
        return dr_route_ensure_available(ctx, st, out, err); /* fails, naming the stage */
    dr_buf sys = {0};
    if (build_prompt(st, offered, &sys) != DYNRAG_OK) {
        dr_buf_free(&sys);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    const char *query = ctx->query != NULL ? ctx->query : "";
    double in_tokens = ceil((double)(sys.len + strlen(query)) / 4.0);
    dr_budget price = dr_budget_price_call(&lr->pricing, in_tokens, lr->max_tokens);
    if (!dr_budget_fits(&price, &ctx->remaining)) {
        char p[96], left[96];
        dr_budget_format(&price, p, sizeof(p));
        dr_budget_format(&ctx->remaining, left, sizeof(left));
        dr_buf_free(&sys);
        return to_fallback(lr, ctx, out, err, "its call (%s) does not fit the remaining budget (%s)",
                           p, left);
    }
    dr_llm_config cfg = {0};
    cfg.base_url = lr->endpoint->base_url;
    cfg.model = lr->endpoint->model;
    cfg.api_key = lr->endpoint->api_key_env ? getenv(lr->endpoint->api_key_env) : NULL;
    cfg.timeout_s = lr->timeout_s;
    cfg.max_retries = lr->max_retries;
    cfg.temperature = 0;
    cfg.max_tokens = lr->max_tokens;
    cfg.usd_per_1k_input = lr->pricing.cost.usd_per_1k_input;
    cfg.usd_per_1k_output = lr->pricing.cost.usd_per_1k_output;
    if (isfinite(ctx->remaining.latency_ms))
        cfg.deadline_us = dr_now_us() + (int64_t)(DR_MAX(ctx->remaining.latency_ms, 0.0) * 1000.0);
    dr_llm_message msgs[2] = {{"system", sys.data}, {"user", query}};
    dr_llm_result res;
    dynrag_error cerr;
    dynrag_error_clear(&cerr);
    int rc = dr_llm_chat(&cfg, msgs, 2, &res, &cerr);
    dr_buf_free(&sys);
    out->spent.usd = rc == DYNRAG_OK ? res.cost_usd : 0.0;
    out->spent.latency_ms = res.latency_ms;
    out->spent.energy_wh = lr->pricing.cost.energy_wh;
    if (rc != DYNRAG_OK) {
        char msg[120];
        quote(dynrag_errmsg(&cerr), msg, sizeof(msg));
        dr_llm_result_free(&res);
        return to_fallback(lr, ctx, out, err, "%s (%s)",
                           rc == DYNRAG_ERR_TIMEOUT ? "the call timed out" : "the call failed",
                           msg);
    }
    int pick = parse_answer(st, offered, res.text);
    if (pick < 0) {
        char q[80];
        quote(res.text, q, sizeof(q));
        dr_llm_result_free(&res);
        return to_fallback(lr, ctx, out, err, "answer \"%s\" is not an offered option", q);
    }
    dr_llm_result_free(&res);
    for (size_t i = 0; i < st->n_options; i++)
        if (offered[i])
            out->scores[i] = (int)i == pick ? 1.0 : 0.0;
    out->option = pick;
    snprintf(out->reason, sizeof out->reason, "llm: answered %s (%zu options offered)",
             st->options[pick].name, n_offered);
    return dr_route_ensure_available(ctx, st, out, err);
}

static void llm_free(dr_router *r)
{
    dr_free(r);
}

static const dr_router_vtable llm_vt = {llm_route, dr_router_feedback_none, dr_router_save_none,
                                        llm_free};

int dr_router_create_llm(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                         dynrag_error *err)
{
    const cJSON *params = stage->router.params;
    const char *sn = dr_stage_name(stage->id);
    const char *ep = dr_param_str(params, "endpoint", NULL);
    if (ep == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.endpoint: required", sn);
    const dr_endpoint *endpoint = NULL;
    for (size_t i = 0; i < p->n_endpoints; i++)
        if (strcmp(p->endpoints[i].name, ep) == 0)
            endpoint = &p->endpoints[i];
    if (endpoint == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.endpoint: no endpoint named '%s'", sn, ep);
    int fallback = -1;
    int rc = dr_router_option_param(stage, "fallback", -1, &fallback, err);
    if (rc != DYNRAG_OK)
        return rc;
    llm_router *lr = dr_calloc(1, sizeof *lr);
    if (lr == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    lr->base.vt = &llm_vt;
    lr->base.stage = stage;
    lr->endpoint = endpoint;
    lr->fallback = fallback;
    lr->timeout_s = dr_param_num(params, "timeout_s", endpoint->timeout_s);
    lr->max_retries = dr_param_int(params, "max_retries", 0);
    lr->max_tokens = dr_param_int(params, "max_tokens", 32);
    const cJSON *cost = cJSON_GetObjectItemCaseSensitive(params, "cost");
    lr->pricing.cost.usd_per_1k_input = dr_param_num(cost, "usd_per_1k_input", 0);
    lr->pricing.cost.usd_per_1k_output = dr_param_num(cost, "usd_per_1k_output", 0);
    lr->pricing.cost.latency_ms = dr_param_num(cost, "latency_ms", 0);
    lr->pricing.cost.energy_wh = dr_param_num(cost, "energy_wh", 0);
    *out = &lr->base;
    return DYNRAG_OK;
}
