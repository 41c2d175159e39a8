/*
 * predict_router.c - routes by the per-option quality and cost a model
 * trained on outcome tables predicts for the query (router/omodel.h,
 * `dynrag router train --kind predict|cluster|distill|mf|preference`). Router
 * types `predict`, `cluster`, `distill`, `mf` and `preference`; the model's
 * kind must be the router's type. A predict model of method knn and a
 * preference model take param `k` (neighbours, 1..min(rows kept, 1000));
 * a preference model also `local_weight` (0..1); both override the values
 * the model was trained with (router/onbr.h). distill models predict a probability per option (softmax); with
 * params `fallback` (an option) and `max_entropy` (0..1, default 1 = off) a
 * prediction whose entropy, divided by log(options), exceeds max_entropy
 * routes to `fallback` instead (MoDEM).
 *
 * params: {model: path (resolved by the pipeline loader),
 *          willingness_to_pay: USD^-1 (0)}.
 *
 * Each stage option is matched by name to a model option. Its score is the
 * predicted quality minus willingness_to_pay times the predicted cost (the
 * model's cost line when its training data had costs for that option, else
 * the pipeline's declared price for the query, router/cost.h). The highest
 * score among available matched options wins; options the model does not
 * know are scored NAN and only chosen when nothing else is available.
 */
#include "router/cost.h"
#include "core/alloc.h"
#include "router/omodel.h"
#include "router/predict.h"
#include "router/router_impl.h"

#include <math.h>
#include <stdio.h>

typedef struct predict_router {
    dr_router base;
    dr_omodel *model;
    int model_index[DR_MAX_OPTIONS]; /* stage option -> model option, -1 unknown */
    double wtp;
    double max_entropy; /* distill: normalised entropy above which `fallback` is used */
    int fallback;       /* option index, -1 none */
} predict_router;

/* See predict.h. */
size_t dr_predict_map_options(const dr_omodel *m, const dr_stage *st, int *model_index)
{
    size_t matched = 0;
    for (size_t i = 0; i < st->n_options; i++) {
        model_index[i] = -1;
        for (size_t o = 0; o < dr_omodel_n_options(m); o++)
            if (st->options[i].name != NULL &&
                strcmp(st->options[i].name, dr_omodel_option(m, o)) == 0)
                model_index[i] = (int)o;
        matched += model_index[i] >= 0;
    }
    return matched;
}

/* See predict.h. */
int dr_predict_scores(const dr_omodel *m, const int *model_index, const dr_stage *st,
                      const char *query, const dr_budget *price, double wtp, double *qc,
                      double *q, double *c, double *score, dynrag_error *err)
{
    size_t k = dr_omodel_n_options(m);
    int rc = dr_omodel_predict(m, query, qc, qc + k, err);
    if (rc != DYNRAG_OK)
        return rc;
    for (size_t i = 0; i < st->n_options; i++) {
        int mi = model_index[i];
        q[i] = c[i] = score[i] = NAN;
        if (mi < 0)
            continue;
        c[i] = dr_omodel_has_cost(m, (size_t)mi)
                   ? qc[k + (size_t)mi]
                   : (price != NULL ? price[i].usd
                                    : dr_cost_estimate(&st->options[i], (int)strlen(query)).usd);
        q[i] = qc[mi];
        score[i] = q[i] - wtp * c[i];
    }
    return DYNRAG_OK;
}

static int predict_route(dr_router *r, const dr_route_ctx *ctx, dr_route_decision *out,
                         dynrag_error *err)
{
    const predict_router *pr = (const predict_router *)r;
    const dr_stage *st = r->stage;
    size_t k = dr_omodel_n_options(pr->model);
    double qc[2 * DR_OUTCOMES_MAX_OPTIONS], q[DR_MAX_OPTIONS], c[DR_MAX_OPTIONS];
    dr_route_decision_reset(out);
    const char *query = ctx->query != NULL ? ctx->query : "";
    int rc = dr_predict_scores(pr->model, pr->model_index, st, query, ctx->price, pr->wtp, qc, q,
                               c, out->scores, err);
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "predict router");
    int best = -1;
    double best_q = 0, best_c = 0;
    for (size_t i = 0; i < st->n_options; i++) {
        if (isnan(out->scores[i]))
            continue;
        if (dr_route_ok(ctx, st, i) && (best < 0 || out->scores[i] > out->scores[best])) {
            best = (int)i;
            best_q = q[i];
            best_c = c[i];
        }
    }
    out->option = best;
    if (best >= 0 && pr->fallback >= 0 && k > 1) {
        /* MoDEM's entropy criterion: an unsure classifier hands the query to
         * the general option. */
        double h = 0;
        for (size_t o = 0; o < k; o++)
            if (qc[o] > 0)
                h -= qc[o] * log(qc[o]);
        h /= log((double)k);
        if (h > pr->max_entropy) {
            out->option = pr->fallback;
            snprintf(out->reason, sizeof out->reason,
                     "%s: entropy %.3f > %.3g: fallback %s (top %s p=%.3f)",
                     dr_omodel_kind(pr->model), h, pr->max_entropy, st->options[pr->fallback].name,
                     st->options[best].name, best_q);
            return dr_route_ensure_available(ctx, st, out, err);
        }
    }
    if (best >= 0)
        snprintf(out->reason, sizeof out->reason, "%s: %s %s %.3f cost $%.6f score %.4f (wtp %g)",
                 dr_omodel_kind(pr->model), st->options[best].name,
                 strcmp(dr_omodel_kind(pr->model), "preference") == 0 ? "win rate" : "quality",
                 best_q, best_c, out->scores[best], pr->wtp);
    else
        snprintf(out->reason, sizeof out->reason, "%s: no available option is in the model",
                 dr_omodel_kind(pr->model));
    return dr_route_ensure_available(ctx, st, out, err);
}

static void predict_free(dr_router *r)
{
    predict_router *pr = (predict_router *)r;
    if (pr == NULL)
        return;
    dr_omodel_free(pr->model);
    dr_free(pr);
}

static const dr_router_vtable predict_vt = {predict_route, dr_router_feedback_none,
                                            dr_router_save_none, predict_free};

int dr_router_create_predict(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                             dynrag_error *err)
{
    const cJSON *params = stage->router.params;
    const char *sn = dr_stage_name(stage->id);
    int rc = DYNRAG_OK;
    predict_router *pr = dr_calloc(1, sizeof *pr);
    if (pr == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    pr->base.vt = &predict_vt;
    pr->base.stage = stage;
    pr->wtp = dr_param_num(params, "willingness_to_pay", 0.0);
    if (!(pr->wtp >= 0 && isfinite(pr->wtp))) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "stages.%s.router.willingness_to_pay: expected a number >= 0", sn);
        goto cleanup;
    }
    pr->max_entropy = dr_param_num(params, "max_entropy", 1.0);
    if (!(pr->max_entropy >= 0 && pr->max_entropy <= 1)) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "stages.%s.router.max_entropy: expected a number in [0, 1]", sn);
        goto cleanup;
    }
    pr->fallback = -1;
    if (cJSON_GetObjectItemCaseSensitive(params, "fallback") != NULL &&
        (rc = dr_router_option_param(stage, "fallback", -1, &pr->fallback, err)) != DYNRAG_OK)
        goto cleanup;
    const char *model = dr_param_str(params, "model", NULL);
    if (model == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.model: required", sn);
        goto cleanup;
    }
    if ((rc = dr_omodel_load(model, &pr->model, err)) != DYNRAG_OK) {
        dr_err_prefix(err, "stages.%s.router.model", sn);
        goto cleanup;
    }
    const char *type = stage->router.type != NULL ? stage->router.type : "predict";
    if (strcmp(dr_omodel_kind(pr->model), type) != 0) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "stages.%s.router.model: %s is a %s model, the router type is %s", sn,
                        model, dr_omodel_kind(pr->model), type);
        goto cleanup;
    }
    const cJSON *kp = cJSON_GetObjectItemCaseSensitive(params, "k");
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(params, "local_weight");
    if (kp != NULL || lp != NULL) {
        int k = kp != NULL ? dr_param_int(params, "k", 0) : dr_omodel_neighbours(pr->model, NULL);
        double lw = lp != NULL ? dr_param_num(params, "local_weight", NAN) : NAN;
        if ((rc = dr_omodel_set_neighbours(pr->model, k, lw, err)) != DYNRAG_OK) {
            dr_err_prefix(err, "stages.%s.router.%s: %s", sn, kp != NULL ? "k" : "local_weight",
                          model);
            goto cleanup;
        }
    }
    if (pr->fallback >= 0 && strcmp(type, "distill") != 0) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "stages.%s.router.fallback: the entropy criterion needs a distill model "
                        "(its predictions are probabilities)",
                        sn);
        goto cleanup;
    }
    if (dr_predict_map_options(pr->model, stage, pr->model_index) == 0) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "stages.%s.router.model: no option of the stage is one of the model's "
                        "options (first: '%s')",
                        sn, dr_omodel_option(pr->model, 0));
        goto cleanup;
    }
    *out = &pr->base;
    return DYNRAG_OK;
cleanup:
    predict_free(&pr->base);
    return rc;
}
