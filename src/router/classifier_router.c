/*
 * classifier_router.c - a trained query classifier picks the option.
 *
 * NOT YET IN THE BUILD: it needs nn/classifier.c (branch `nn`). To enable,
 * rename this file to classifier_router.c and define
 * DYNRAG_HAVE_CLASSIFIER_ROUTER in router/router.c (or drop the #ifdef
 * around its row in the router table).
 *
 * params: {model: path (resolved by the pipeline loader), head (name; default
 * the first head), labels: {label: option} (default: every label that names
 * an option maps to it), threshold (0), escalate (option; default the last
 * option)}.
 *
 * The score of an option is the sum of the probabilities of the labels
 * mapped to it (NAN for options no label maps to). The highest-scoring
 * option wins; when its score is below threshold, `escalate` is chosen.
 */
#include "nn/classifier.h"
#include "core/alloc.h"
#include "router/router_impl.h"

#include <math.h>
#include <stdio.h>

typedef struct classifier_router {
    dr_router base;
    dr_classifier *model;
    int head;
    size_t n_labels;
    int *label_option; /* [n_labels]: option index or -1 (unmapped) */
    double threshold;
    int escalate;
} classifier_router;

static int classifier_route(dr_router *r, const dr_route_ctx *ctx, dr_route_decision *out,
                            dynrag_error *err)
{
    const classifier_router *cr = (const classifier_router *)r;
    const dr_stage *st = r->stage;
    dr_route_decision_reset(out);
    float *probs = dr_malloc((cr->n_labels > 0 ? cr->n_labels : 1) * sizeof *probs);
    if (probs == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    int rc = dr_classifier_predict(cr->model, cr->head, ctx->query != NULL ? ctx->query : "",
                                   probs, err);
    if (rc != DYNRAG_OK) {
        dr_free(probs);
        return dr_err_prefix(err, "classifier router");
    }
    for (size_t i = 0; i < cr->n_labels; i++) {
        int o = cr->label_option[i];
        if (o < 0)
            continue;
        out->scores[o] = (isnan(out->scores[o]) ? 0.0 : out->scores[o]) + (double)probs[i];
    }
    dr_free(probs);
    int best = -1;
    for (size_t o = 0; o < st->n_options; o++)
        if (!isnan(out->scores[o]) && (best < 0 || out->scores[o] > out->scores[best]))
            best = (int)o;
    if (best < 0 || out->scores[best] < cr->threshold) {
        out->option = cr->escalate;
        snprintf(out->reason, sizeof out->reason,
                 "classifier: top %s p=%.3f < threshold %.3g: escalate to %s",
                 best >= 0 ? st->options[best].name : "-", best >= 0 ? out->scores[best] : 0.0,
                 cr->threshold, st->options[cr->escalate].name);
    } else {
        out->option = best;
        snprintf(out->reason, sizeof out->reason, "classifier: %s p=%.3f",
                 st->options[best].name, out->scores[best]);
    }
    return dr_route_ensure_available(ctx, st, out, err);
}

static void classifier_free(dr_router *r)
{
    classifier_router *cr = (classifier_router *)r;
    if (cr == NULL)
        return;
    dr_classifier_free(cr->model);
    dr_free(cr->label_option);
    dr_free(cr);
}

static const dr_router_vtable classifier_vt = {classifier_route, dr_router_feedback_none,
                                               dr_router_save_none, classifier_free};

int dr_router_create_classifier(const dynrag_pipeline *p, const dr_stage *stage,
                                dr_router **out, dynrag_error *err)
{
    const cJSON *params = stage->router.params;
    const char *sn = dr_stage_name(stage->id);
    char *path = NULL;
    int rc = DYNRAG_OK;
    classifier_router *cr = dr_calloc(1, sizeof *cr);
    if (cr == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    cr->base.vt = &classifier_vt;
    cr->base.stage = stage;
    cr->threshold = dr_param_num(params, "threshold", 0.0);
    if (!(cr->threshold >= 0 && cr->threshold <= 1)) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "stages.%s.router.threshold: expected a number in [0, 1]", sn);
        goto cleanup;
    }
    rc = dr_router_option_param(stage, "escalate", (int)stage->n_options - 1, &cr->escalate, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    const char *model = dr_param_str(params, "model", NULL);
    if (model == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.model: required", sn);
        goto cleanup;
    }
    path = dr_strdup(model); /* resolved by the loader */
    if (path == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if ((rc = dr_classifier_load(path, &cr->model, err)) != DYNRAG_OK) {
        dr_err_prefix(err, "stages.%s.router.model", sn);
        goto cleanup;
    }
    const char *head = dr_param_str(params, "head", NULL);
    cr->head = dr_classifier_head(cr->model, head);
    if (cr->head < 0) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.head: %s has no head '%s'",
                        sn, path, head != NULL ? head : "(first)");
        goto cleanup;
    }
    cr->n_labels = dr_classifier_n_labels(cr->model, cr->head);
    cr->label_option = dr_malloc((cr->n_labels > 0 ? cr->n_labels : 1) * sizeof *cr->label_option);
    if (cr->label_option == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(params, "labels");
    if (labels != NULL && !cJSON_IsObject(labels)) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "stages.%s.router.labels: expected a map of label: option", sn);
        goto cleanup;
    }
    size_t mapped = 0;
    for (size_t i = 0; i < cr->n_labels; i++) {
        const char *label = dr_classifier_label(cr->model, cr->head, i);
        cr->label_option[i] = labels == NULL ? dr_stage_find_option(stage, label) : -1;
        mapped += cr->label_option[i] >= 0;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, labels)
    {
        size_t li = 0;
        while (li < cr->n_labels &&
               strcmp(dr_classifier_label(cr->model, cr->head, li), m->string) != 0)
            li++;
        if (li == cr->n_labels) {
            rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                            "stages.%s.router.labels.%s: the model's head has no label '%s'", sn,
                            m->string, m->string);
            goto cleanup;
        }
        int o = cJSON_IsString(m) ? dr_stage_find_option(stage, m->valuestring) : -1;
        if (o < 0) {
            rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                            "stages.%s.router.labels.%s: expected the name of an option", sn,
                            m->string);
            goto cleanup;
        }
        cr->label_option[li] = o;
        mapped++;
    }
    if (mapped == 0) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "stages.%s.router.labels: no label of the model maps to an option", sn);
        goto cleanup;
    }
    dr_free(path);
    *out = &cr->base;
    return DYNRAG_OK;
cleanup:
    dr_free(path);
    classifier_free(&cr->base);
    return rc;
}
