/*
 * engine/query.c - one query's state, routing a stage (router, force, budget
 * enforcement), skipping and charging stages.
 */
#include "engine/query.h"

#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dr_own_passages_free(own_passage *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].doc_id);
        free(p[i].title);
        free(p[i].text);
    }
    free(p);
}

/* See query.h. */
void dr_qstate_free(qstate *s)
{
    dr_own_passages_free(s->pass, s->n_pass);
    dr_own_passages_free(s->docs, s->n_docs);
    cJSON_Delete(s->steps);
    cJSON_Delete(s->cascade);
    free(s->answer);
    free(s->cited);
    free(s->ctx_pass);
    free(s->context_text);
    free(s->prompt_text);
}

double dr_q_elapsed_ms(const qstate *s)
{
    return (double)(dr_now_us() - s->start_us) / 1000.0;
}

dr_budget dr_q_remaining(const qstate *s)
{
    dr_budget b = s->p->budget;
    dr_budget r;
    r.usd = b.usd - s->tot.usd;
    r.latency_ms = b.latency_ms - dr_q_elapsed_ms(s);
    r.energy_wh = b.energy_wh - s->tot.energy_wh;
    return r;
}

/*
 * Keeps the router's pick when the remaining budget can pay for it;
 * otherwise takes the best-scored option that fits, and when none fits the
 * cheapest available one (marking the query over budget). Appends the why
 * to rec->reason. Returns the option index.
 */
static int enforce_budget(qstate *s, const dr_stage *st, stage_rec *rec, int pick, double in_tokens,
                          double out_tokens)
{
    dr_budget r = dr_q_remaining(s);
    double usd, lat, wh;
    dr_budget_price(&st->options[pick], in_tokens, out_tokens, &usd, &lat, &wh);
    if (dr_budget_fits(&r, usd, lat, wh))
        return pick;
    int best = -1;
    double best_score = -INFINITY, best_usd = INFINITY;
    for (size_t i = 0; i < st->n_options; i++) {
        const dr_option *o = &st->options[i];
        if (!o->available)
            continue;
        dr_budget_price(o, in_tokens, out_tokens, &usd, &lat, &wh);
        if (!dr_budget_fits(&r, usd, lat, wh))
            continue;
        double sc = isnan(rec->scores[i]) ? -1e300 : rec->scores[i];
        if (best < 0 || sc > best_score || (sc == best_score && usd < best_usd)) {
            best = (int)i;
            best_score = sc;
            best_usd = usd;
        }
    }
    size_t len = strlen(rec->reason);
    if (best >= 0) {
        snprintf(rec->reason + len, sizeof(rec->reason) - len,
                 "; budget: '%s' does not fit the remaining budget, took '%s'",
                 st->options[pick].name, st->options[best].name);
        return best;
    }
    int cheapest = -1;
    double c_usd = INFINITY, c_lat = INFINITY, c_wh = INFINITY;
    for (size_t i = 0; i < st->n_options; i++) {
        if (!st->options[i].available)
            continue;
        dr_budget_price(&st->options[i], in_tokens, out_tokens, &usd, &lat, &wh);
        if (usd < c_usd || (usd == c_usd && (lat < c_lat || (lat == c_lat && wh < c_wh)))) {
            cheapest = (int)i;
            c_usd = usd;
            c_lat = lat;
            c_wh = wh;
        }
    }
    if (cheapest < 0)
        cheapest = pick;
    s->tot.over_budget = true;
    snprintf(rec->reason + len, sizeof(rec->reason) - len,
             "; budget: no option fits the remaining budget (usd %.6g, latency_ms %.6g, "
             "energy_wh %.6g left), ran the cheapest '%s'",
             r.usd, r.latency_ms, r.energy_wh, st->options[cheapest].name);
    return cheapest;
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

/* Routes one stage: fills rec (scores, reason, option) and returns the
 * chosen option index after budget enforcement, or a negative status. */
int dr_q_route_stage(qstate *s, dr_stage_id sid, double in_tokens, double out_tokens,
                     dynrag_error *err)
{
    const dr_stage *st = &s->p->stages[sid];
    stage_rec *rec = &s->st[sid];
    dr_router *r = s->e->routers[sid];
    dr_route_ctx ctx = {0};
    ctx.query = s->q;
    ctx.features = &s->f;
    ctx.stage = st;
    ctx.remaining = dr_q_remaining(s);
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
        return oi;
    }
    dr_route_decision d;
    memset(&d, 0, sizeof(d));
    for (size_t i = 0; i < DR_MAX_OPTIONS; i++)
        d.scores[i] = NAN;
    int64_t t0 = dr_now_us();
    int rc = r->vt->route(r, &ctx, &d, err);
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "stages.%s.router (%s)", dr_stage_name(sid), r->type);
    if (d.option < 0 || (size_t)d.option >= st->n_options)
        return dr_err_set(err, DYNRAG_ERR_INTERNAL, "stages.%s: router chose option %d of %zu",
                          dr_stage_name(sid), d.option, st->n_options);
    memcpy(rec->scores, d.scores, sizeof(rec->scores));
    dr_strlcpy(rec->reason, d.reason, sizeof(rec->reason));
    rec->routed = true;
    rec->option = enforce_budget(s, st, rec, d.option, in_tokens, out_tokens);
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
void dr_q_llm_config(const dr_option *o, dr_llm_config *c, const char **key_out)
{
    memset(c, 0, sizeof(*c));
    const dr_endpoint *ep = o->endpoint;
    c->base_url = ep ? ep->base_url : "";
    c->model = ep ? ep->model : "";
    c->api_key = (ep && ep->api_key_env) ? getenv(ep->api_key_env) : NULL;
    c->timeout_s = ep ? ep->timeout_s : 60;
    c->max_retries = ep ? ep->max_retries : 3;
    c->temperature = dr_param_num(o->params, "temperature", 0);
    c->max_tokens = dr_param_int(o->params, "max_tokens", 256);
    c->logprobs = dr_param_bool(o->params, "logprobs", false);
    c->top_logprobs = dr_param_int(o->params, "top_logprobs", 0);
    c->n = dr_param_int(o->params, "samples", 1);
    c->usd_per_1k_input = o->cost.usd_per_1k_input;
    c->usd_per_1k_output = o->cost.usd_per_1k_output;
    if (key_out)
        *key_out = c->api_key;
}

void dr_q_account_llm(qstate *s, dr_stage_id sid, const dr_option *o, const dr_llm_result *r)
{
    s->tot.input_tokens += r->prompt_tokens;
    s->tot.output_tokens += r->completion_tokens;
    s->tot.generator_calls++;
    dr_q_charge(s, sid, r->cost_usd, r->latency_ms, o->cost.energy_wh);
}
