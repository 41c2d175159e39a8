/*
 * engine/query.c - one query's state, routing a stage (router, force, budget
 * enforcement), skipping and charging stages.
 */
#include "engine/query.h"

#include "core/util.h"
#include "net/http.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "engine"

void dr_own_passages_free(own_passage *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dr_free(p[i].doc_id);
        dr_free(p[i].title);
        dr_free(p[i].text);
    }
    dr_free(p);
}

/* See query.h. */
void dr_qstate_free(qstate *s)
{
    dr_own_passages_free(s->pass, s->n_pass);
    dr_own_passages_free(s->docs, s->n_docs);
    cJSON_Delete(s->steps);
    cJSON_Delete(s->cascade);
    cJSON_Delete(s->cuts);
    cJSON_Delete(s->fallbacks);
    dr_free(s->answer);
    dr_free(s->cited);
    dr_free(s->ctx_pass);
    dr_free(s->ctx_step);
    dr_free(s->ctx_fused);
    dr_free(s->context_text);
    dr_free(s->prompt_text);
}

double dr_q_elapsed_ms(const qstate *s)
{
    return (double)(dr_now_us() - s->start_us) / 1000.0;
}

dr_budget dr_q_remaining(const qstate *s)
{
    dr_budget r;
    r.usd = s->budget.usd - s->tot.usd;
    r.latency_ms = s->budget.latency_ms - dr_q_elapsed_ms(s);
    r.energy_wh = s->budget.energy_wh - s->tot.energy_wh;
    return r;
}

bool dr_q_past_deadline(const qstate *s)
{
    return s->deadline_us > 0 && dr_now_us() >= s->deadline_us;
}

static void reason_append(stage_rec *rec, const char *fmt, ...) DR_PRINTF(2, 3);

static void reason_append(stage_rec *rec, const char *fmt, ...)
{
    size_t len = strlen(rec->reason);
    if (len + 1 >= sizeof(rec->reason))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rec->reason + len, sizeof(rec->reason) - len, fmt, ap);
    va_end(ap);
}

void dr_q_cut(qstate *s, dr_stage_id sid, const char *action, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    cJSON *c = dr_jb_obj(&s->jb, s->cuts, NULL);
    dr_jb_str(&s->jb, c, "stage", dr_stage_name(sid));
    dr_jb_str(&s->jb, c, "action", action);
    dr_jb_str(&s->jb, c, "why", why);
    reason_append(&s->st[sid], "; budget: cut %s (%s)", action, why);
}

void dr_q_over_budget(qstate *s, const char *fmt, ...)
{
    s->tot.over_budget = true;
    size_t len = strlen(s->over_reason);
    if (len > 0 && len + 3 < sizeof(s->over_reason)) {
        memcpy(s->over_reason + len, "; ", 3);
        len += 2;
    }
    if (len + 1 >= sizeof(s->over_reason))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->over_reason + len, sizeof(s->over_reason) - len, fmt, ap);
    va_end(ap);
}

bool dr_q_check_spent(qstate *s, const char *after)
{
    const double eps = 1e-12;
    double ms = dr_q_elapsed_ms(s);
    bool over = false;
    if (s->tot.usd > s->budget.usd + eps) {
        if (!(s->over_fields & 1u))
            dr_q_over_budget(s, "spent $%.6g of a $%.6g budget after %s", s->tot.usd, s->budget.usd,
                             after);
        s->over_fields |= 1u;
        over = true;
    }
    if (s->tot.energy_wh > s->budget.energy_wh + eps) {
        if (!(s->over_fields & 2u))
            dr_q_over_budget(s, "spent %.6g Wh of a %.6g Wh budget after %s", s->tot.energy_wh,
                             s->budget.energy_wh, after);
        s->over_fields |= 2u;
        over = true;
    }
    if (ms > s->budget.latency_ms + eps) {
        if (!(s->over_fields & 4u))
            dr_q_over_budget(s, "took %.1f ms of a %.6g ms budget after %s", ms,
                             s->budget.latency_ms, after);
        s->over_fields |= 4u;
        over = true;
    }
    return over;
}

int dr_q_fallback(qstate *s, dr_stage_id sid, int failed, const dynrag_error *why)
{
    const dr_stage *st = &s->p->stages[sid];
    stage_rec *rec = &s->st[sid];
    const char *msg = dynrag_errmsg(why);
    int fb = st->fallback;
    if (fb < 0 || fb == failed || !s->avail[sid][fb]) {
        reason_append(rec, "; '%s' failed: %s; %s", st->options[failed].name, msg,
                      fb < 0         ? "no fallback declared"
                      : fb == failed ? "it is the fallback"
                                     : "the fallback is unavailable");
        return -1;
    }
    reason_append(rec, "; fallback to '%s' after error: %s", st->options[fb].name, msg);
    dr_log(DYNRAG_LOG_WARN, MOD, "stages.%s option '%s' failed (%s); using fallback '%s'",
           dr_stage_name(sid), st->options[failed].name, msg, st->options[fb].name);
    cJSON *f = dr_jb_obj(&s->jb, s->fallbacks, NULL);
    dr_jb_str(&s->jb, f, "stage", dr_stage_name(sid));
    dr_jb_str(&s->jb, f, "failed", st->options[failed].name);
    dr_jb_str(&s->jb, f, "error", msg);
    dr_jb_str(&s->jb, f, "took", st->options[fb].name);
    rec->option = fb;
    return fb;
}

/* True when an available generator option can answer without passages. */
static bool generator_without_passages(const qstate *s)
{
    const dr_stage *g = &s->p->stages[DR_STAGE_GENERATOR];
    for (size_t i = 0; i < g->n_options; i++)
        if (g->options[i].available && strcmp(g->options[i].kind, "openai") == 0)
            return true;
    return false;
}

/* Why option i of stage sid cannot serve this query, or NULL when it can. */
static const char *unmet_need(const qstate *s, dr_stage_id sid, size_t i, char *buf, size_t size)
{
    const dr_option *o = &s->p->stages[sid].options[i];
    switch (sid) {
    case DR_STAGE_RETRIEVAL_MODE:
        if (strcmp(o->kind, "none") == 0)
            return generator_without_passages(s)
                       ? NULL
                       : "no available generator can answer without passages";
        return dr_engine_first_index(s->e) == NULL ? "no index is open" : NULL;
    case DR_STAGE_EMBEDDER:
        if (i < DR_MAX_OPTIONS && s->e->index[i] == NULL) {
            snprintf(buf, size, "no index for this embedder: %s",
                     s->e->index_error[i] ? s->e->index_error[i] : "none opened");
            return buf;
        }
        return NULL;
    case DR_STAGE_INDEX:
        if ((strcmp(o->kind, "dense") == 0 || strcmp(o->kind, "hybrid") == 0) && s->idx != NULL &&
            dynrag_index_dim(s->idx) <= 0)
            return "the embedder's index has no dense vectors";
        return NULL;
    case DR_STAGE_GENERATOR: {
        int rm = s->st[DR_STAGE_RETRIEVAL_MODE].option;
        bool no_passages =
            rm >= 0 && strcmp(s->p->stages[DR_STAGE_RETRIEVAL_MODE].options[rm].kind, "none") == 0;
        if (strcmp(o->kind, "extractive") == 0 && no_passages)
            return "needs retrieved passages (retrieval_mode is none)";
        return NULL;
    }
    default: return NULL;
    }
}

void dr_q_availability(qstate *s, dr_stage_id sid)
{
    const dr_stage *st = &s->p->stages[sid];
    bool *av = s->avail[sid];
    size_t n_static = 0, n_met = 0;
    for (size_t i = 0; i < st->n_options; i++) {
        char *why = s->unavail_why[sid][i];
        why[0] = '\0';
        av[i] = st->options[i].available;
        if (!av[i]) {
            snprintf(why, sizeof(s->unavail_why[sid][i]), "endpoint '%s' is not configured",
                     st->options[i].endpoint ? st->options[i].endpoint->name : "?");
            continue;
        }
        n_static++;
        char buf[sizeof(s->unavail_why[sid][i])];
        const char *need = unmet_need(s, sid, i, buf, sizeof(buf));
        if (need != NULL)
            snprintf(why, sizeof(s->unavail_why[sid][i]), "%s", need);
        else
            n_met++;
    }
    if (n_met == 0 && n_static > 0) {
        /* Nothing meets its needs: keep what can run at all. */
        for (size_t i = 0; i < st->n_options; i++)
            if (st->options[i].available)
                s->unavail_why[sid][i][0] = '\0';
        return;
    }
    for (size_t i = 0; i < st->n_options; i++) {
        if (av[i] && s->unavail_why[sid][i][0] != '\0')
            dr_log(DYNRAG_LOG_DEBUG, MOD, "stages.%s option '%s' unavailable: %s",
                   dr_stage_name(sid), st->options[i].name, s->unavail_why[sid][i]);
        av[i] = av[i] && s->unavail_why[sid][i][0] == '\0';
    }
}

/*
 * Keeps the router's pick when the remaining budget `r` (the one the router
 * saw) can pay for it (price[] from dr_budget_price); otherwise takes the best-scored available option
 * that fits, and when none fits the cheapest available one (marking the
 * query over budget with the why). Appends the why to rec->reason. Returns
 * the option index.
 */
static int enforce_budget(qstate *s, dr_stage_id sid, int pick, const dr_budget *price,
                          dr_budget r)
{
    const dr_stage *st = &s->p->stages[sid];
    stage_rec *rec = &s->st[sid];
    if (dr_budget_fits(&price[pick], &r))
        return pick;
    int best = -1;
    double best_score = -INFINITY;
    for (size_t i = 0; i < st->n_options; i++) {
        if (!s->avail[sid][i] || !dr_budget_fits(&price[i], &r))
            continue;
        double sc = isnan(rec->scores[i]) ? -1e300 : rec->scores[i];
        if (best < 0 || sc > best_score || (sc == best_score && price[i].usd < price[best].usd)) {
            best = (int)i;
            best_score = sc;
        }
    }
    if (best >= 0) {
        reason_append(rec, "; budget: '%s' does not fit the remaining budget, took '%s'",
                      st->options[pick].name, st->options[best].name);
        return best;
    }
    int c = -1;
    for (size_t i = 0; i < st->n_options; i++) {
        if (!s->avail[sid][i])
            continue;
        const dr_budget *p = &price[i];
        if (c < 0 || p->usd < price[c].usd ||
            (p->usd == price[c].usd &&
             (p->latency_ms < price[c].latency_ms ||
              (p->latency_ms == price[c].latency_ms && p->energy_wh < price[c].energy_wh))))
            c = (int)i;
    }
    if (c < 0)
        c = pick;
    char left[160], cost[160];
    dr_budget_format(&r, left, sizeof(left));
    dr_budget_format(&price[c], cost, sizeof(cost));
    reason_append(rec,
                  "; budget: no option fits the remaining budget (%s left), ran the cheapest '%s'",
                  left, st->options[c].name);
    dr_q_over_budget(s,
                     "stage %s: no option fits the remaining budget (%s left); ran the "
                     "cheapest '%s' (%s)",
                     dr_stage_name(sid), left, st->options[c].name, cost);
    return c;
}

static int embed_cb(void *user, const char *text, float *out, int dim, dynrag_error *err)
{
    dynrag_index *idx = user;
    if (idx == NULL || dynrag_index_dim(idx) != dim)
        return dr_err_set(err, DYNRAG_ERR_STATE, "no dense embedder available for routing");
    return dynrag_index_embed(idx, text, out, err);
}

dynrag_index *dr_engine_first_index(const dynrag_engine *e)
{
    for (size_t i = 0; i < DR_MAX_OPTIONS; i++)
        if (e->index[i])
            return e->index[i];
    return NULL;
}

/* See query.h. */
int dr_q_route_stage(qstate *s, dr_stage_id sid, double in_tokens, double out_tokens,
                     dynrag_error *err)
{
    const dr_stage *st = &s->p->stages[sid];
    stage_rec *rec = &s->st[sid];
    dr_router *r = s->e->routers[sid];
    dr_q_availability(s, sid);
    dr_budget price[DR_MAX_OPTIONS];
    for (size_t i = 0; i < st->n_options; i++)
        price[i] = dr_budget_price(&st->options[i], in_tokens, out_tokens);
    dr_route_ctx ctx = {0};
    ctx.query = s->q;
    ctx.features = &s->f;
    ctx.stage = st;
    ctx.remaining = dr_q_remaining(s); /* the router and the check see the same */
    ctx.available = s->avail[sid];
    ctx.price = price;
    dynrag_index *ei = s->idx ? s->idx : dr_engine_first_index(s->e);
    if (ei && dynrag_index_dim(ei) > 0) {
        ctx.embed = embed_cb;
        ctx.embed_user = ei;
        ctx.embed_dim = dynrag_index_dim(ei);
    }
    for (size_t i = 0; i < s->opt->n_force; i++) {
        const dynrag_force *f = &s->opt->force[i];
        if (f->stage == NULL || strcmp(f->stage, dr_stage_name(sid)) != 0)
            continue;
        int oi = f->option ? dr_stage_find_option(st, f->option) : -1;
        if (oi < 0)
            return dr_err_set(err, DYNRAG_ERR_INVALID, "force: stage %s has no option '%s'",
                              dr_stage_name(sid), f->option ? f->option : "(null)");
        if (!st->options[oi].available)
            return dr_err_set(err, DYNRAG_ERR_STATE,
                              "force: option '%s' of stage %s is unavailable (endpoint not "
                              "configured)",
                              f->option, dr_stage_name(sid));
        for (size_t j = 0; j < DR_MAX_OPTIONS; j++)
            rec->scores[j] = NAN;
        rec->scores[oi] = 1;
        snprintf(rec->reason, sizeof(rec->reason), "forced by caller: %s", f->option);
        rec->routed = true;
        rec->forced = true;
        rec->option = oi;
        s->avail[sid][oi] = true; /* the caller's choice overrides the needs */
        s->unavail_why[sid][oi][0] = '\0';
        return oi;
    }
    dr_route_decision d;
    memset(&d, 0, sizeof(d));
    for (size_t i = 0; i < DR_MAX_OPTIONS; i++)
        d.scores[i] = NAN;
    int64_t t0 = dr_now_us();
    int64_t prev = dr_http_thread_deadline(s->deadline_us); /* knn embeds the query */
    int rc = r->vt->route(r, &ctx, &d, err);
    dr_http_thread_deadline(prev);
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "stages.%s.router (%s)", dr_stage_name(sid), r->type);
    if (d.option < 0 || (size_t)d.option >= st->n_options)
        return dr_err_set(err, DYNRAG_ERR_INTERNAL, "stages.%s: router chose option %d of %zu",
                          dr_stage_name(sid), d.option, st->n_options);
    memcpy(rec->scores, d.scores, sizeof(rec->scores));
    dr_strlcpy(rec->reason, d.reason, sizeof(rec->reason));
    rec->routed = true;
    /* A router that spent (the llm router's call) pays before the check. */
    dr_budget left = ctx.remaining;
    if (d.spent.usd > 0 || d.spent.latency_ms > 0 || d.spent.energy_wh > 0) {
        dr_q_charge(s, sid, d.spent.usd, d.spent.latency_ms, d.spent.energy_wh);
        dr_q_check_spent(s, "the router's own call");
        left = dr_q_remaining(s);
    }
    rec->option = enforce_budget(s, sid, d.option, price, left);
    rec->latency_us += dr_now_us() - t0;
    return rec->option;
}

void dr_q_skip_stage(qstate *s, dr_stage_id sid, const char *why)
{
    stage_rec *rec = &s->st[sid];
    rec->skipped = true;
    rec->option = -1;
    for (size_t i = 0; i < DR_MAX_OPTIONS; i++)
        rec->scores[i] = NAN;
    dr_strlcpy(rec->reason, why, sizeof(rec->reason));
}

void dr_q_charge(qstate *s, dr_stage_id sid, double usd, double lat_ms, double wh)
{
    stage_rec *rec = &s->st[sid];
    rec->usd += usd;
    rec->latency_ms += lat_ms;
    rec->energy_wh += wh;
    s->tot.usd += usd;
    s->tot.energy_wh += wh;
}

/* See query.h. */
void dr_q_llm_config(const qstate *s, const dr_option *o, dr_llm_config *c)
{
    memset(c, 0, sizeof(*c));
    const dr_endpoint *ep = o->endpoint;
    c->base_url = ep ? ep->base_url : "";
    c->model = ep ? ep->model : "";
    c->api_key = (ep && ep->api_key_env) ? getenv(ep->api_key_env) : NULL;
    c->timeout_s = ep ? ep->timeout_s : 60;
    c->max_retries = ep ? ep->max_retries : 3;
    c->temperature = dr_opt_num(o, "temperature");
    c->max_tokens = dr_opt_int(o, "max_tokens");
    c->logprobs = dr_opt_bool(o, "logprobs");
    c->top_logprobs = dr_opt_int(o, "top_logprobs");
    c->n = dr_opt_int(o, "samples");
    c->usd_per_1k_input = o->cost.usd_per_1k_input;
    c->usd_per_1k_output = o->cost.usd_per_1k_output;
    c->deadline_us = s->deadline_us;
}

void dr_q_account_llm(qstate *s, dr_stage_id sid, const dr_option *o, const dr_llm_result *r)
{
    s->tot.input_tokens += r->prompt_tokens;
    s->tot.output_tokens += r->completion_tokens;
    s->tot.generator_calls++;
    dr_q_charge(s, sid, r->cost_usd, r->latency_ms, o->cost.energy_wh);
}
