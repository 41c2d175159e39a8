/*
 * cascade.c - the cascade router (cheapest option first) and its judges.
 *
 * params: {judge: self_route|logprob_margin|seq_logprob|agreement|scorer, threshold (0.5,
 * in [0, 1]), samples (3), model (the scorer file; required by judge scorer),
 * quality_model (an outcome-router file: cascade routing), willingness_to_pay (0)}.
 * route() picks the first available option in listed order; the engine calls
 * dr_cascade_judge() after generation and escalates to dr_cascade_next().
 *
 * With a quality_model (Dekoninck et al. 2024, cascade routing) the order is
 * not the list's: the model predicts each option's quality q and cost c for
 * the query; route() starts with the available option of the highest
 * q - willingness_to_pay * c, and each escalation goes to the option not yet
 * called with the highest such score, provided that score beats the judged
 * confidence of the answer in hand (the expected gain of calling it, net of
 * its price, is positive; the answer in hand is paid for); none: the cascade
 * stops.
 */
#include "router/cascade.h"
#include "core/alloc.h"

#include "core/text.h"
#include "router/omodel.h"
#include "router/predict.h"
#include "router/router_impl.h"
#include "router/scorer.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

static void set_why(char *why, size_t why_len, const char *fmt, ...) DR_PRINTF(3, 4);
static void set_why(char *why, size_t why_len, const char *fmt, ...)
{
    if (why == NULL || why_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

/* Case-insensitive (ASCII) substring search. */
static bool contains_ci(const char *hay, const char *needle)
{
    size_t nl = strlen(needle);
    for (const char *h = hay; *h; h++) {
        size_t i = 0;
        while (i < nl && h[i] && tolower((unsigned char)h[i]) == needle[i])
            i++;
        if (i == nl)
            return true;
    }
    return false;
}

/*
 * Whether the answer says it cannot answer: flagged unanswerable by its
 * generator, blank, or saying "unanswerable" / "cannot be answered" / "not
 * enough information" (case-insensitive). Every judge gives such an answer
 * confidence 0, so a cascade escalates it whatever its judge; `why` gets the
 * reason prefixed by the judge's name.
 */
static bool says_cannot_answer(const dr_answer_view *a, const char *judge, char *why,
                               size_t why_len)
{
    static const char *const refusals[] = {"unanswerable", "cannot be answered",
                                           "not enough information"};
    const char *t = a->text != NULL ? a->text : "";
    if (a->unanswerable) {
        set_why(why, why_len, "%s: flagged unanswerable", judge);
        return true;
    }
    bool blank = true;
    for (const char *c = t; *c && blank; c++)
        blank = isspace((unsigned char)*c) != 0;
    if (blank) {
        set_why(why, why_len, "%s: empty answer", judge);
        return true;
    }
    for (size_t i = 0; i < DR_ARRAY_LEN(refusals); i++)
        if (contains_ci(t, refusals[i])) {
            set_why(why, why_len, "%s: answer says \"%s\"", judge, refusals[i]);
            return true;
        }
    return false;
}

/* The generator's own confidence when it reports one (the extractive
 * generator's support), else `dflt`; `why` says which was used. */
static double reported_or(const dr_answer_view *a, const char *judge, const char *missing,
                          double dflt, char *why, size_t why_len)
{
    if (isfinite(a->confidence)) {
        double c = DR_MIN(DR_MAX(a->confidence, 0.0), 1.0);
        set_why(why, why_len, "%s: %s; generator confidence %.3f", judge, missing, c);
        return c;
    }
    set_why(why, why_len, "%s: %s", judge, missing);
    return dflt;
}

static double judge_self_route(const dr_answer_view *a, char *why, size_t why_len)
{
    (void)a;
    set_why(why, why_len, "self_route: answered");
    return 1.0;
}

static double judge_margin(const dr_answer_view *a, char *why, size_t why_len)
{
    double m = a->first_token_margin;
    if (isnan(m))
        return reported_or(a, "logprob_margin", "no logprobs", 1.0, why, why_len);
    double c = m <= 0 ? 0.0 : 1.0 - exp(-m);
    c = DR_MIN(DR_MAX(c, 0.0), 1.0);
    set_why(why, why_len, "logprob_margin: margin %.3f -> %.3f", m, c);
    return c;
}

static double judge_seq_logprob(const dr_answer_view *a, char *why, size_t why_len)
{
    double m = a->mean_logprob;
    if (isnan(m))
        return reported_or(a, "seq_logprob", "no logprobs", 1.0, why, why_len);
    double c = m >= 0 ? 1.0 : exp(m); /* -inf gives 0 */
    c = DR_MIN(DR_MAX(c, 0.0), 1.0);
    set_why(why, why_len, "seq_logprob: mean token logprob %.3f -> %.3f", m, c);
    return c;
}

/* s advanced past prefix when it starts with it, ignoring ASCII case; else NULL. */
static const char *skip_prefix_ci(const char *s, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncasecmp(s, prefix, n) == 0 ? s + n : NULL;
}

/*
 * The choice letter when an answer is a multiple-choice letter (an
 * upper-case letter alone, or in parentheses or followed by ')', '.' or ':'
 * and then the end or white space, after optional white space and
 * "Answer:", "Answer is", "The answer is"): "B", "B\n", "(B)", "B) east",
 * "Answer: B"; not "A dog". Else 0. SQuAD normalisation would drop "A" as an article and
 * keep "B) east" apart from "B", so the agreement judge compares choices by
 * their letter.
 */
static char choice_letter(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    static const char *const prefixes[] = {"the answer is", "answer is", "answer:"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        const char *t = skip_prefix_ci(s, prefixes[i]);
        if (t != NULL) {
            s = t;
            while (isspace((unsigned char)*s) || *s == ':')
                s++;
            break;
        }
    }
    bool paren = *s == '(';
    s += paren;
    char c = *s;
    if (c < 'A' || c > 'Z')
        return 0;
    s++;
    if (paren) {
        if (*s != ')')
            return 0;
        s++;
    } else if (*s == ')' || *s == '.' || *s == ':') {
        s++;
    } else { /* a bare letter: nothing may follow ("A dog" is text) */
        while (isspace((unsigned char)*s))
            s++;
        return *s == '\0' ? c : 0;
    }
    return *s == '\0' || isspace((unsigned char)*s) ? c : 0;
}

/* The text the agreement judge compares: "(X)" for a choice letter X (no
 * normalised text has parentheses), else the SQuAD-normalised answer. */
static char *agreement_key(const char *answer)
{
    char c = choice_letter(answer ? answer : "");
    if (c == 0)
        return dr_squad_normalize(answer);
    const char key[] = {'(', c, ')', '\0'};
    return dr_strdup(key);
}

static double judge_agreement(const dr_answer_view *a, char *why, size_t why_len)
{
    size_t n = a->n_samples;
    if (n < 2 || a->samples == NULL)
        return reported_or(a, "agreement", "fewer than 2 samples", 1.0, why, why_len);
    double conf = 1.0;
    char **norm = dr_calloc(n, sizeof *norm);
    if (norm == NULL)
        goto oom;
    for (size_t i = 0; i < n; i++)
        if ((norm[i] = agreement_key(a->samples[i])) == NULL)
            goto oom;
    size_t best = 0, best_count = 0;
    for (size_t i = 0; i < n; i++) {
        size_t c = 0;
        for (size_t j = 0; j < n; j++)
            c += strcmp(norm[i], norm[j]) == 0;
        if (c > best_count) {
            best_count = c;
            best = i;
        }
    }
    conf = (double)best_count / (double)n;
    set_why(why, why_len, "agreement: %zu/%zu samples agree on \"%.60s\"", best_count, n,
            norm[best]);
    goto cleanup;
oom:
    set_why(why, why_len, "agreement: out of memory");
    conf = NAN; /* the caller fails with DYNRAG_ERR_NOMEM */
cleanup:
    for (size_t i = 0; norm != NULL && i < n; i++)
        dr_free(norm[i]);
    dr_free(norm);
    return conf;
}

/* The cascade router: its scorer when the judge is `scorer`. */
static const dr_router_vtable cascade_vt;

typedef struct cascade_router {
    dr_router base;
    dr_scorer *scorer;
    dr_omodel *qmodel;                /* quality_model, or NULL: listed order */
    int model_index[DR_MAX_OPTIONS]; /* stage option -> model option, -1 unknown */
    double wtp;
} cascade_router;

/* The quality model's predicted quality q[i] and score q[i] - wtp * c[i] of
 * each stage option for the query (NAN for options the model does not
 * know). */
static int cascade_predict(const cascade_router *cr, const dr_stage *st, const char *query,
                           const dr_budget *price, double *q, double *score, dynrag_error *err)
{
    double qc[2 * DR_OUTCOMES_MAX_OPTIONS], c[DR_MAX_OPTIONS];
    int rc = dr_predict_scores(cr->qmodel, cr->model_index, st, query, price, cr->wtp, qc, q, c,
                               score, err);
    return rc != DYNRAG_OK ? dr_err_prefix(err, "cascade quality_model") : DYNRAG_OK;
}

/* See cascade.h. */
bool dr_cascade_routed(const dr_router *r)
{
    return r != NULL && r->vt == &cascade_vt && ((const cascade_router *)r)->qmodel != NULL;
}

/* See cascade.h. */
int dr_cascade_next(const dr_router *r, const char *query, const bool *called, const bool *ok,
                    int cur, double confidence, int *next, char *why, size_t why_len,
                    dynrag_error *err)
{
    *next = -1;
    const dr_stage *st = r->stage;
    if (!dr_cascade_routed(r)) {
        for (size_t j = (size_t)cur + 1; j < st->n_options && *next < 0; j++)
            if (!called[j] && ok[j])
                *next = (int)j;
        set_why(why, why_len, "%s", *next >= 0 ? "next in listed order" : "no option left");
        return DYNRAG_OK;
    }
    const cascade_router *cr = (const cascade_router *)r;
    double q[DR_MAX_OPTIONS], score[DR_MAX_OPTIONS];
    int rc = cascade_predict(cr, st, query != NULL ? query : "", NULL, q, score, err);
    if (rc != DYNRAG_OK)
        return rc;
    for (size_t j = 0; j < st->n_options; j++) {
        if (called[j] || !ok[j] || isnan(score[j]) || !(score[j] > confidence))
            continue;
        if (*next < 0 || score[j] > score[*next])
            *next = (int)j;
    }
    if (*next >= 0)
        set_why(why, why_len,
                "routed: '%s' predicted quality %.3f, net of its price %.3f > confidence %.3f",
                st->options[*next].name, q[*next], score[*next], confidence);
    else
        set_why(why, why_len,
                "routed: no option left whose predicted quality net of its price beats "
                "confidence %.3f",
                confidence);
    return DYNRAG_OK;
}


static double judge_scorer(const dr_router *r, const dr_answer_view *a, char *why, size_t why_len)
{
    if (r == NULL || r->vt != &cascade_vt || ((const cascade_router *)r)->scorer == NULL)
        return reported_or(a, "scorer", "no scorer model", 1.0, why, why_len);
    const dr_scorer *s = ((const cascade_router *)r)->scorer;
    double p = dr_scorer_score(s, a->query, a->option, a->text);
    p = DR_MIN(DR_MAX(p, 0.0), 1.0);
    set_why(why, why_len, "scorer: P(correct | query, %.60s answer) = %.3f",
            a->option != NULL ? a->option : "the", p);
    return p;
}

double dr_cascade_judge(const dr_router *r, const dr_router_spec *spec, const dr_answer_view *a,
                        char *why, size_t why_len)
{
    const char *judge = spec != NULL ? dr_param_str(spec->params, "judge", "self_route")
                                     : "self_route";
    if (says_cannot_answer(a, judge, why, why_len))
        return 0.0;
    if (strcmp(judge, "logprob_margin") == 0)
        return judge_margin(a, why, why_len);
    if (strcmp(judge, "seq_logprob") == 0)
        return judge_seq_logprob(a, why, why_len);
    if (strcmp(judge, "agreement") == 0)
        return judge_agreement(a, why, why_len);
    if (strcmp(judge, "scorer") == 0)
        return judge_scorer(r, a, why, why_len);
    return judge_self_route(a, why, why_len);
}

/* ---- the router: the first available option ------------------------------- */

static int cascade_route(dr_router *r, const dr_route_ctx *ctx, dr_route_decision *out,
                         dynrag_error *err)
{
    const dr_stage *st = r->stage;
    dr_route_decision_reset(out);
    const cascade_router *cr = (const cascade_router *)r;
    if (cr->qmodel != NULL) {
        double q[DR_MAX_OPTIONS];
        const char *query = ctx->query != NULL ? ctx->query : "";
        int rc = cascade_predict(cr, st, query, ctx->price, q, out->scores, err);
        if (rc != DYNRAG_OK)
            return rc;
        for (size_t i = 0; i < st->n_options; i++)
            if (dr_route_ok(ctx, st, i) && !isnan(out->scores[i]) &&
                (out->option < 0 || out->scores[i] > out->scores[out->option]))
                out->option = (int)i;
        if (out->option < 0)
            out->option = 0; /* nothing the model knows is available */
        snprintf(out->reason, sizeof out->reason,
                 "cascade (routed): start with %s (predicted quality %.3f, judge %s)",
                 st->options[out->option].name, q[out->option],
                 dr_param_str(st->router.params, "judge", "self_route"));
        return dr_route_ensure_available(ctx, st, out, err);
    }
    /* Score: earlier options rank higher (1, 1/2, 1/3, ...). */
    for (size_t i = 0; i < st->n_options; i++)
        out->scores[i] = 1.0 / (double)(i + 1);
    out->option = 0;
    snprintf(out->reason, sizeof out->reason, "cascade: start with %s (judge %s)",
             st->options[0].name, dr_param_str(st->router.params, "judge", "self_route"));
    return dr_route_ensure_available(ctx, st, out, err);
}

static void cascade_free(dr_router *r)
{
    if (r == NULL)
        return;
    dr_scorer_free(((cascade_router *)r)->scorer);
    dr_omodel_free(((cascade_router *)r)->qmodel);
    dr_free(r);
}

static const dr_router_vtable cascade_vt = {cascade_route, dr_router_feedback_none,
                                            dr_router_save_none, cascade_free};

int dr_router_create_cascade(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                             dynrag_error *err)
{
    (void)p;
    const cJSON *params = stage->router.params;
    const char *sn = dr_stage_name(stage->id);
    const char *judge = dr_param_str(params, "judge", "self_route");
    if (strcmp(judge, "self_route") != 0 && strcmp(judge, "logprob_margin") != 0 &&
        strcmp(judge, "seq_logprob") != 0 && strcmp(judge, "agreement") != 0 &&
        strcmp(judge, "scorer") != 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.judge: unknown judge '%s' (self_route, "
                          "logprob_margin, seq_logprob, agreement or scorer)",
                          sn, judge);
    double th = dr_param_num(params, "threshold", 0.5);
    if (!(th >= DR_CASCADE_THRESHOLD_MIN && th <= DR_CASCADE_THRESHOLD_MAX))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.threshold: %g is outside [0, 1] (judge '%s' gives a "
                          "confidence in [0, 1])",
                          sn, th, judge);
    const char *model = dr_param_str(params, "model", NULL);
    bool scorer = strcmp(judge, "scorer") == 0;
    if (scorer && model == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.model: judge 'scorer' needs a model (a file of "
                          "`dynrag router train --kind scorer`)",
                          sn);
    if (!scorer && model != NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.model: only judge 'scorer' reads a model (judge is '%s')",
                          sn, judge);
    cascade_router *cr = dr_calloc(1, sizeof *cr);
    if (cr == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    cr->base.vt = &cascade_vt;
    if (scorer) {
        int rc = dr_scorer_load(model, &cr->scorer, err);
        if (rc != DYNRAG_OK) {
            dr_free(cr);
            return dr_err_prefix(err, "stages.%s.router.model", sn);
        }
    }
    cr->wtp = dr_param_num(params, "willingness_to_pay", 0);
    const char *qm = dr_param_str(params, "quality_model", NULL);
    if (qm != NULL) {
        int rc = dr_omodel_load(qm, &cr->qmodel, err);
        if (rc != DYNRAG_OK) {
            cascade_free(&cr->base);
            return dr_err_prefix(err, "stages.%s.router.quality_model", sn);
        }
        if (dr_predict_map_options(cr->qmodel, stage, cr->model_index) == 0) {
            dr_err_set(err, DYNRAG_ERR_INVALID,
                       "stages.%s.router.quality_model: %s knows none of the stage's options "
                       "(it was trained on options like '%s')",
                       sn, qm, dr_omodel_option(cr->qmodel, 0));
            cascade_free(&cr->base);
            return DYNRAG_ERR_INVALID;
        }
    }
    *out = &cr->base;
    return DYNRAG_OK;
}
