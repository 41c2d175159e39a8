/*
 * engine/generate.c - prompt rendering, the extractive and openai generators,
 * the generator fallback, judges and cascades (generator and Self-Route).
 */
#define _GNU_SOURCE
#include "engine/generate.h"

#include "core/text.h"
#include "core/util.h"
#include "engine/retrieve.h"
#include "generate/context.h"
#include "generate/extractive.h"
#include "generate/prompt.h"
#include "router/cascade.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "engine"

static bool text_says_unanswerable(const char *t)
{
    static const char *const cues[] = {"unanswerable", "cannot be answered",
                                       "not enough information", "cannot answer"};
    for (size_t i = 0; i < DR_ARRAY_LEN(cues); i++)
        if (strcasestr(t, cues[i]))
            return true;
    return false;
}

/* Citations of an LLM answer: the [n] markers it uses, else every passage. */
static int cite_markers(qstate *s, const char *text)
{
    dr_free(s->cited);
    s->cited = dr_calloc(s->n_ctx ? s->n_ctx : 1, sizeof(size_t));
    s->n_cited = 0;
    if (s->cited == NULL)
        return DYNRAG_ERR_NOMEM;
    for (const char *p = text; *p; p++) {
        if (*p != '[' || !isdigit((unsigned char)p[1]))
            continue;
        long long v = 0;
        const char *q = p + 1;
        while (isdigit((unsigned char)*q) && v < 100000)
            v = v * 10 + (*q++ - '0');
        if (*q != ']' || v < 1 || (size_t)v > s->n_ctx)
            continue;
        bool dup = false;
        for (size_t i = 0; i < s->n_cited && !dup; i++)
            dup = s->cited[i] == (size_t)(v - 1);
        if (!dup)
            s->cited[s->n_cited++] = (size_t)(v - 1);
    }
    if (s->n_cited == 0 && !s->unanswerable)
        for (size_t i = 0; i < s->n_ctx; i++)
            s->cited[s->n_cited++] = i;
    return DYNRAG_OK;
}

typedef struct gen_out {
    double margin;
    double mean_logprob; /* mean token logprob of the LLM answer; NAN: none */
    double confidence; /* the generator's own confidence (extractive: support); NAN: none */
    char **samples;
    size_t n_samples;
} gen_out;

static void gen_out_free(gen_out *g)
{
    for (size_t i = 0; i < g->n_samples; i++)
        dr_free(g->samples[i]);
    dr_free(g->samples);
    memset(g, 0, sizeof(*g));
    g->margin = NAN;
    g->mean_logprob = NAN;
    g->confidence = NAN;
}

/* Answers with the extractive generator over the packed context; the answer
 * and its citations replace earlier ones; energy is the declared one. Its
 * support score goes to g as the confidence judges use. */
static int run_extractive(qstate *s, const dr_option *o, gen_out *g, dynrag_error *err)
{
    dr_extractive_config ec = {dr_opt_num(o, "threshold"),
                               dr_opt_int(o, "max_sentences")};
    dr_answer a;
    memset(&a, 0, sizeof(a));
    int64_t t0 = dr_now_us();
    int rc = dr_extractive_answer(&ec, s->q, s->ctx_pass, s->n_ctx, &a, err);
    if (rc != DYNRAG_OK) {
        dr_answer_free(&a);
        return dr_err_prefix(err, "generator '%s'", o->name);
    }
    dr_free(s->answer);
    dr_free(s->cited);
    s->answer = a.text;
    s->unanswerable = a.unanswerable;
    s->cited = a.citations;
    s->n_cited = a.n_citations;
    g->confidence = a.support;
    a.text = NULL;
    a.citations = NULL;
    dr_answer_free(&a);
    s->tot.generator_calls++;
    dr_q_charge(s, DR_STAGE_GENERATOR, 0, (double)(dr_now_us() - t0) / 1000.0, o->cost.energy_wh);
    char after[160];
    snprintf(after, sizeof(after), "generator '%s'", o->name);
    dr_q_check_spent(s, after);
    return DYNRAG_OK;
}

/* Answers with an openai option over the rendered prompt, charging what the
 * endpoint reported; keeps the margin, mean token logprob and samples for
 * judges in g. */
static int run_openai(qstate *s, const dr_option *o, gen_out *g, dynrag_error *err)
{
    dr_llm_config cfg;
    dr_q_llm_config(s, o, &cfg);
    dr_llm_message msg = {"user", s->prompt_text ? s->prompt_text : s->q};
    dr_llm_result res;
    memset(&res, 0, sizeof(res));
    int rc = dr_llm_chat(&cfg, &msg, 1, &res, err);
    if (rc != DYNRAG_OK) {
        dr_q_charge(s, DR_STAGE_GENERATOR, 0, res.latency_ms, 0);
        dr_llm_result_free(&res);
        return dr_err_prefix(err, "generator '%s'", o->name);
    }
    dr_q_account_llm(s, DR_STAGE_GENERATOR, o, &res);
    char after[160];
    snprintf(after, sizeof(after), "generator '%s'", o->name);
    dr_q_check_spent(s, after);
    dr_free(s->answer);
    s->answer = res.text ? res.text : dr_strdup("");
    res.text = NULL;
    s->unanswerable = text_says_unanswerable(s->answer);
    g->margin = res.first_token_margin;
    g->mean_logprob = res.mean_logprob;
    g->samples = res.samples;
    g->n_samples = res.n_samples;
    res.samples = NULL;
    res.n_samples = 0;
    dr_llm_result_free(&res);
    if (s->answer == NULL || cite_markers(s, s->answer) != DYNRAG_OK)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    return DYNRAG_OK;
}

/* Runs generator option gi; when it fails, the stage's fallback option
 * (dr_q_fallback) when one is declared and available. */
static int run_generator(qstate *s, int gi, gen_out *g, dynrag_error *err)
{
    const dr_stage *st = &s->p->stages[DR_STAGE_GENERATOR];
    gen_out_free(g);
    const dr_option *o = &st->options[gi];
    int rc =
        strcmp(o->kind, "openai") == 0 ? run_openai(s, o, g, err) : run_extractive(s, o, g, err);
    if (rc == DYNRAG_OK || rc == DYNRAG_ERR_NOMEM)
        return rc;
    int fb = dr_q_fallback(s, DR_STAGE_GENERATOR, gi, err);
    if (fb < 0)
        return rc;
    dynrag_error_clear(err);
    gen_out_free(g);
    o = &st->options[fb];
    return strcmp(o->kind, "openai") == 0 ? run_openai(s, o, g, err) : run_extractive(s, o, g, err);
}

/* Renders prompt option `pi` with the question, context and (multi-step)
 * retrieval queries into s->prompt_text. */
static int render_prompt(qstate *s, int pi, dynrag_error *err)
{
    const dr_option *o = &s->p->stages[DR_STAGE_PROMPT].options[pi];
    /* The loader always stores the template text here (read from `file`
     * when the option names one, the built-in default for an absent stage). */
    const char *tmpl = dr_param_str(o->params, "template", dr_prompt_default_template);
    dr_buf steps = {0};
    /* {steps} lists the retrieval queries of a multi-step run (empty for one step). */
    int n_steps = cJSON_GetArraySize(s->steps);
    int rc = DYNRAG_OK;
    for (int i = 0; n_steps > 1 && i < n_steps && rc == DYNRAG_OK; i++) {
        cJSON *st = cJSON_GetArrayItem(s->steps, i);
        cJSON *q = cJSON_GetObjectItem(st, "query");
        if (cJSON_IsString(q))
            rc = dr_buf_printf(&steps, "%d. %s\n", i + 1, q->valuestring);
    }
    if (steps.len > 0 && rc == DYNRAG_OK)
        rc = dr_buf_putc(&steps, '\n'); /* the default template wants a blank line after */
    dr_free(s->prompt_text);
    s->prompt_text = NULL;
    if (rc != DYNRAG_OK) {
        dr_buf_free(&steps);
        return dr_err_set(err, rc, "out of memory");
    }
    rc = dr_prompt_render(tmpl, s->q, s->context_text ? s->context_text : "",
                              steps.data ? steps.data : "", &s->prompt_text, err);
    dr_buf_free(&steps);
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "stages.prompt option '%s'", o->name);
    return DYNRAG_OK;
}

/* The confidence of the current answer of stage sid's option `cur` under
 * the stage's cascade router's judge; `why` gets the judgement in words. A
 * judge out of memory fails the query with DYNRAG_ERR_NOMEM (the sticky
 * flag the query checks) and lets the answer stand meanwhile. */
static double judge(qstate *s, dr_stage_id sid, int cur, const gen_out *g, char *why,
                    size_t why_len)
{
    dr_answer_view v;
    memset(&v, 0, sizeof(v));
    v.query = s->q;
    v.option = s->p->stages[sid].options[cur].name;
    v.text = s->answer ? s->answer : "";
    v.unanswerable = s->unanswerable;
    v.first_token_margin = g->margin;
    v.mean_logprob = g->mean_logprob;
    v.confidence = g->confidence;
    v.samples = (const char *const *)g->samples;
    v.n_samples = g->n_samples;
    double c = dr_cascade_judge(s->e->routers[sid], &s->p->stages[sid].router, &v, why, why_len);
    if (isnan(c)) {
        s->jb.nomem = true;
        return 1.0;
    }
    return c;
}

/* Appends one cascade attempt to the record's `cascade` array. */
static void record_attempt(qstate *s, const char *stage, const char *option, double conf,
                           double threshold, const char *why, bool escalated)
{
    cJSON *a = dr_jb_obj(&s->jb, s->cascade, NULL);
    dr_jb_str(&s->jb, a, "stage", stage);
    dr_jb_str(&s->jb, a, "option", option);
    dr_jb_num(&s->jb, a, "confidence", conf);
    dr_jb_num(&s->jb, a, "threshold", threshold);
    dr_jb_str(&s->jb, a, "judgement", why);
    dr_jb_bool(&s->jb, a, "escalated", escalated);
}

static bool is_cascade(const qstate *s, dr_stage_id sid)
{
    return strcmp(s->p->stages[sid].router.type, "cascade") == 0;
}

/* The price of escalating stage sid to option j (for a context escalation,
 * plus the generator's answer again). */
static dr_budget escalation_price(const qstate *s, dr_stage_id sid, size_t j, double in_tok)
{
    const dr_stage *st = &s->p->stages[sid];
    dr_budget price = dr_budget_price(&st->options[j], in_tok, DR_BUDGET_ANSWER_TOKENS);
    int gi = s->st[DR_STAGE_GENERATOR].option;
    if (sid == DR_STAGE_CONTEXT && gi >= 0)
        price = dr_budget_add(price, dr_budget_price(&s->p->stages[DR_STAGE_GENERATOR].options[gi],
                                                     in_tok, DR_BUDGET_ANSWER_TOKENS));
    return price;
}

/* Records that the escalation of stage sid to option j does not fit what
 * is left of the budget (a cut with its price). */
static void cut_escalation(qstate *s, dr_stage_id sid, size_t j, const dr_budget *price,
                           const dr_budget *left)
{
    char l[160], cost[160], action[160];
    dr_budget_format(left, l, sizeof(l));
    dr_budget_format(price, cost, sizeof(cost));
    snprintf(action, sizeof(action), "escalation to '%s'", s->p->stages[sid].options[j].name);
    dr_q_cut(s, sid, action, "costs %s, %s left", cost, l);
}

/*
 * The next option after `i` in listed order that is available for the query
 * and whose price (plus, for a context escalation, the generator's answer
 * again) fits the remaining budget, or -1. Escalations skipped for the
 * budget or the deadline are recorded as cuts.
 */
static int next_escalation(qstate *s, dr_stage_id sid, int i, double in_tok)
{
    const dr_stage *st = &s->p->stages[sid];
    if (dr_q_past_deadline(s)) {
        if ((size_t)i + 1 < st->n_options)
            dr_q_cut(s, sid, "cascade escalation", "the latency budget (%.6g ms) is used up",
                     s->budget.latency_ms);
        return -1;
    }
    dr_budget r = dr_q_remaining(s);
    for (size_t j = (size_t)i + 1; j < st->n_options; j++) {
        if (!s->avail[sid][j])
            continue;
        dr_budget price = escalation_price(s, sid, j, in_tok);
        if (dr_budget_fits(&price, &r))
            return (int)j;
        cut_escalation(s, sid, j, &price, &r);
    }
    return -1;
}

/*
 * Cascade routing (a cascade router with a quality_model): the option not
 * yet called that the router picks for an answer judged `conf`
 * (dr_cascade_next), among those available whose price fits the remaining
 * budget, or -1. When the option it would pick ignoring the budget does not
 * fit, that is recorded as a cut. A NOMEM from the quality model stops the
 * cascade (the answer in hand stands).
 */
static int routed_escalation(qstate *s, dr_stage_id sid, int cur, double conf, double in_tok,
                             const bool *called, char *why, size_t why_len)
{
    const dr_stage *st = &s->p->stages[sid];
    const dr_router *r = s->e->routers[sid];
    if (dr_q_past_deadline(s)) {
        dr_q_cut(s, sid, "cascade escalation", "the latency budget (%.6g ms) is used up",
                 s->budget.latency_ms);
        return -1;
    }
    dr_budget left = dr_q_remaining(s);
    bool ok[DR_MAX_OPTIONS];
    dr_budget price[DR_MAX_OPTIONS];
    for (size_t j = 0; j < st->n_options; j++) {
        price[j] = escalation_price(s, sid, j, in_tok);
        ok[j] = s->avail[sid][j] && dr_budget_fits(&price[j], &left);
    }
    /* The router's pick among the available options; when it does not fit
     * the budget (a cut), its pick among those that fit. */
    int next = -1;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dr_cascade_next(r, s->q, called, s->avail[sid], cur, conf, &next, why, why_len, &err);
    if (rc == DYNRAG_OK && next >= 0 && !ok[next]) {
        cut_escalation(s, sid, (size_t)next, &price[next], &left);
        rc = dr_cascade_next(r, s->q, called, ok, cur, conf, &next, why, why_len, &err);
    }
    if (rc != DYNRAG_OK) {
        dr_log(DYNRAG_LOG_WARN, MOD, "cascade routing: %s", dynrag_errmsg(&err));
        return -1;
    }
    return next;
}

/*
 * One cascade decision for stage sid after option `cur` answered (called:
 * every option that answered so far): judges the answer with the stage's
 * cascade router, records the attempt, and returns the option to escalate
 * to (reason appended), or -1 to stop (confident enough, forced by the
 * caller, nothing left, or over budget).
 */
static int cascade_step(qstate *s, dr_stage_id sid, int cur, const gen_out *g, int in_tok,
                        const bool *called)
{
    const dr_stage *st = &s->p->stages[sid];
    stage_rec *rec = &s->st[sid];
    char why[256];
    double conf = judge(s, sid, cur, g, why, sizeof(why));
    double thr = dr_param_num(st->router.params, "threshold", 0.5);
    int next = -1;
    if (conf < thr && !rec->forced) {
        if (dr_cascade_routed(s->e->routers[sid])) {
            char how[200];
            how[0] = '\0';
            next = routed_escalation(s, sid, cur, conf, in_tok, called, how, sizeof(how));
            size_t len = strlen(why);
            if (how[0] != '\0' && len + 3 < sizeof(why))
                snprintf(why + len, sizeof(why) - len, "; %s", how);
        } else {
            next = next_escalation(s, sid, cur, in_tok);
        }
    }
    record_attempt(s, dr_stage_name(sid), st->options[cur].name, conf, thr, why, next >= 0);
    if (next >= 0) {
        size_t len = strlen(rec->reason);
        snprintf(rec->reason + len, sizeof(rec->reason) - len,
                 "; cascade: escalated '%s' -> '%s' (%s)", st->options[cur].name,
                 st->options[next].name, why);
    }
    return next;
}

/*
 * Generation with its cascades. The generator stage's router (or, for
 * Self-Route, the context stage's) may be a cascade: answer with the
 * cheaper option, judge the answer, and escalate to the next option while
 * the judgement is below the threshold and the budget allows.
 */
int dr_q_generate(qstate *s, bool retrieved, dynrag_error *err)
{
    int rc = DYNRAG_OK;
    gen_out g;
    memset(&g, 0, sizeof(g));
    g.margin = NAN;
    g.mean_logprob = NAN;
    g.confidence = NAN;
    int ci = retrieved ? s->st[DR_STAGE_CONTEXT].option : -1;
    bool called_c[DR_MAX_OPTIONS] = {false};
    for (;;) {
        int64_t t0 = dr_now_us();
        if (ci >= 0) {
            rc = dr_q_build_context(s, ci, err);
            if (rc != DYNRAG_OK && rc != DYNRAG_ERR_NOMEM) {
                int fb = dr_q_fallback(s, DR_STAGE_CONTEXT, ci, err);
                if (fb >= 0) {
                    dynrag_error_clear(err);
                    ci = fb;
                    rc = dr_q_build_context(s, ci, err);
                }
            }
            s->st[DR_STAGE_CONTEXT].latency_us += dr_now_us() - t0;
            if (rc != DYNRAG_OK)
                break;
        }
        t0 = dr_now_us();
        if (!s->st[DR_STAGE_PROMPT].routed) {
            int in_tok = dr_estimate_tokens(s->q) +
                         dr_estimate_tokens(s->context_text ? s->context_text : "");
            rc = dr_q_route_stage(s, DR_STAGE_PROMPT, in_tok, 0, err);
            if (rc < 0)
                break;
        }
        rc = render_prompt(s, s->st[DR_STAGE_PROMPT].option, err);
        if (rc != DYNRAG_OK && rc != DYNRAG_ERR_NOMEM) {
            int fb = dr_q_fallback(s, DR_STAGE_PROMPT, s->st[DR_STAGE_PROMPT].option, err);
            if (fb >= 0) {
                dynrag_error_clear(err);
                rc = render_prompt(s, fb, err);
            }
        }
        s->st[DR_STAGE_PROMPT].latency_us += dr_now_us() - t0;
        if (rc != DYNRAG_OK)
            break;

        int in_tok = dr_estimate_tokens(s->prompt_text);
        if (!s->st[DR_STAGE_GENERATOR].routed) {
            int gi = dr_q_route_stage(s, DR_STAGE_GENERATOR, in_tok, DR_BUDGET_ANSWER_TOKENS, err);
            if (gi < 0) {
                rc = gi;
                break;
            }
        }
        /* The generator cascade. */
        int gi = s->st[DR_STAGE_GENERATOR].option;
        bool called_g[DR_MAX_OPTIONS] = {false};
        for (;;) {
            t0 = dr_now_us();
            rc = run_generator(s, gi, &g, err);
            s->st[DR_STAGE_GENERATOR].latency_us += dr_now_us() - t0;
            if (rc != DYNRAG_OK)
                break;
            called_g[gi] = true;
            gi = s->st[DR_STAGE_GENERATOR].option; /* may have become the fallback */
            called_g[gi] = true;
            if (!is_cascade(s, DR_STAGE_GENERATOR))
                break;
            int next = cascade_step(s, DR_STAGE_GENERATOR, gi, &g, in_tok, called_g);
            if (next < 0)
                break;
            gi = next;
            s->st[DR_STAGE_GENERATOR].option = gi;
        }
        if (rc != DYNRAG_OK)
            break;
        /* The context cascade (Self-Route). */
        if (ci < 0 || !is_cascade(s, DR_STAGE_CONTEXT))
            break;
        called_c[ci] = true;
        int next = cascade_step(s, DR_STAGE_CONTEXT, ci, &g, in_tok, called_c);
        if (next < 0)
            break;
        ci = next;
        s->st[DR_STAGE_CONTEXT].option = ci;
        const dr_option *co = &s->p->stages[DR_STAGE_CONTEXT].options[ci];
        dr_q_charge(s, DR_STAGE_CONTEXT, 0, 0, co->cost.energy_wh);
    }
    gen_out_free(&g);
    return rc;
}
