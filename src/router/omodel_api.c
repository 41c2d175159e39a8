/* omodel_api.c - dynrag_outcome_router_train (include/dynrag/outcomes.h). */
#include "core/util.h"
#include "dynrag/outcomes.h"
#include "router/omodel.h"
#include "router/scorer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The fixed internal validation share when no --valid is given. */
static bool internal_valid(const char *id)
{
    return dr_hash64(id, strlen(id), 77) % 10000 < 1500;
}

/* Public: see dynrag/outcomes.h. */
void dynrag_outcome_router_options_init(dynrag_outcome_router_options *o)
{
    memset(o, 0, sizeof(*o));
    o->kind = "predict";
    o->data = NULL;
    o->valid = NULL;
    o->out_path = NULL;
    o->dim = 1024;
    o->clusters = 64;
    o->lambda = NAN;
    o->cluster_lambda = 0.3;
    o->hidden = 128;
    o->seed = 0;
    o->progress = NULL;
    o->progress_user = NULL;
}

/* Checks the fields of opts that have a range (dynrag/outcomes.h), err
 * naming the first bad one. */
static int check_options(const dynrag_outcome_router_options *opts, dynrag_error *err)
{
    if (opts->kind == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "kind: required (predict, cluster, distill, "
                                                   "mf, preference, contrastive or scorer)");
    if (opts->dim < 1 || opts->dim > 65536)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "dim %d: expected 1 to 65536", opts->dim);
    if (opts->clusters < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "clusters %d: expected >= 0 (0: none)",
                          opts->clusters);
    if (!isnan(opts->lambda) && !(opts->lambda > 0 && isfinite(opts->lambda)))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "lambda %g: expected a number > 0, or NAN to choose it", opts->lambda);
    if (opts->hidden < 0 || opts->hidden > 4096)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "hidden %d: expected 0 (linear) to 4096",
                          opts->hidden);
    if (!(opts->cluster_lambda > 0 && isfinite(opts->cluster_lambda)))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "cluster_lambda %g: expected a number > 0",
                          opts->cluster_lambda);
    return DYNRAG_OK;
}

/*
 * The answer scorer (router/scorer.h) on table t: with opts->valid, fitted
 * on t and its penalty chosen on the valid table; else the penalty is
 * chosen on the fixed inner 15% of t (unless given), then refitted on every
 * row. Fills res (train/valid_quality are AUCs) and writes the model.
 */
static int train_scorer(const dynrag_outcome_router_options *opts, const dr_outcome_table *t,
                        const char *desc, dynrag_outcome_router_result *res, dynrag_error *err)
{
    dr_outcome_table v = {0};
    dr_scorer *s = NULL;
    size_t *fit = NULL, *inner = NULL;
    dr_scorer_train_opts o = {.lambda = opts->lambda,
                              .seed = opts->seed,
                              .data_desc = desc,
                              .progress = opts->progress,
                              .progress_user = opts->progress_user};
    dr_scorer_train_report rep;
    int rc;
    res->valid_quality = NAN;
    if (opts->valid != NULL) {
        if ((rc = dr_outcomes_load(opts->valid, &v, err)) != DYNRAG_OK)
            goto cleanup;
        if ((rc = dr_scorer_train(t, NULL, 0, &v, NULL, v.n_rows, &o, &s, &rep, err)) != DYNRAG_OK)
            goto cleanup;
        res->valid_rows = v.n_rows;
        res->valid_quality = rep.valid_auc;
    } else {
        fit = dr_malloc((t->n_rows ? t->n_rows : 1) * sizeof(*fit));
        inner = dr_malloc((t->n_rows ? t->n_rows : 1) * sizeof(*inner));
        if (fit == NULL || inner == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        size_t n_fit = 0, n_inner = 0;
        for (size_t i = 0; i < t->n_rows; i++) {
            if (!(opts->lambda > 0) && internal_valid(t->rows[i].id))
                inner[n_inner++] = i;
            else
                fit[n_fit++] = i;
        }
        if (n_inner > 0 && n_fit > 0) {
            rc = dr_scorer_train(t, fit, n_fit, t, inner, n_inner, &o, &s, &rep, err);
            if (rc != DYNRAG_OK)
                goto cleanup;
            res->valid_rows = n_inner;
            res->valid_quality = rep.valid_auc;
            o.lambda = rep.lambda;
            o.prior_valid_auc = rep.valid_auc;
            o.prior_valid_rows = n_inner;
            dr_scorer_free(s);
            s = NULL;
        }
        if ((rc = dr_scorer_train(t, NULL, 0, NULL, NULL, 0, &o, &s, &rep, err)) != DYNRAG_OK)
            goto cleanup;
    }
    if ((rc = dr_scorer_save(s, opts->out_path, err)) != DYNRAG_OK)
        goto cleanup;
    res->rows = t->n_rows;
    res->n_options = t->n_options;
    res->n_params = DR_SCORER_BUCKETS;
    res->lambda = rep.lambda;
    res->train_quality = rep.train_auc;
cleanup:
    dr_free(fit);
    dr_free(inner);
    dr_scorer_free(s);
    dr_outcomes_free(&v);
    return rc;
}

int dynrag_outcome_router_train(const dynrag_outcome_router_options *opts,
                                dynrag_outcome_router_result *result, dynrag_error *err)
{
    dynrag_outcome_router_result res = {0};
    dr_outcome_table t = {0}, v = {0};
    dr_omodel *m = NULL, *probe = NULL;
    size_t *fit = NULL, *inner = NULL;
    char *desc = NULL;
    int rc = DYNRAG_OK;
    int64_t t0 = dr_now_us();
    if (opts->n_data == 0 || opts->out_path == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "training data and an output path are required");
    if ((rc = check_options(opts, err)) != DYNRAG_OK)
        return rc;
    const char *kind = opts->kind;
    bool scorer = strcmp(kind, "scorer") == 0;
    if (strcmp(kind, "predict") != 0 && strcmp(kind, "cluster") != 0 &&
        strcmp(kind, "distill") != 0 && strcmp(kind, "mf") != 0 &&
        strcmp(kind, "preference") != 0 && strcmp(kind, "contrastive") != 0 && !scorer)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "--kind %s: unknown (expected predict, cluster, distill, mf, "
                          "preference, contrastive or scorer)",
                          kind);
    cJSON *files = cJSON_CreateArray();
    if (files == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < opts->n_data; i++) {
        dr_outcome_table one;
        if ((rc = dr_outcomes_load(opts->data[i], &one, err)) != DYNRAG_OK)
            goto cleanup;
        rc = dr_outcomes_merge(&t, &one, opts->data[i], err);
        dr_outcomes_free(&one);
        if (rc != DYNRAG_OK)
            goto cleanup;
        const char *base = strrchr(opts->data[i], '/');
        cJSON_AddItemToArray(files, cJSON_CreateString(base ? base + 1 : opts->data[i]));
    }
    desc = cJSON_PrintUnformatted(files);
    if (desc == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (scorer) {
        rc = train_scorer(opts, &t, desc, &res, err);
        goto done;
    }
    dr_omodel_train_opts o = {
        .kind = kind,
        .method = opts->method,
        .k = opts->k,
        .dim = opts->dim,
        .lambda = isnan(opts->lambda) ? 0 : opts->lambda, /* internal: 0 = choose */
        .clusters = opts->clusters == 0 ? -1 : opts->clusters, /* internal: -1 = none */
        .cluster_lambda = opts->cluster_lambda,
        .hidden = opts->hidden > 0 ? opts->hidden : -1, /* internal: -1 = linear */
        .seed = opts->seed,
        .data_desc = desc,
        .progress = opts->progress,
        .progress_user = opts->progress_user,
    };
    dr_omodel_train_report rep;
    if (opts->valid != NULL) {
        if ((rc = dr_outcomes_load(opts->valid, &v, err)) != DYNRAG_OK)
            goto cleanup;
        rc = dr_omodel_train(&t, NULL, 0, &v, NULL, v.n_rows, &o, &m, &rep, err);
        if (rc != DYNRAG_OK)
            goto cleanup;
        res.valid_rows = v.n_rows;
        res.valid_quality = rep.valid_quality;
    } else {
        fit = dr_malloc(t.n_rows * sizeof(*fit));
        inner = dr_malloc(t.n_rows * sizeof(*inner));
        if (fit == NULL || inner == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        size_t n_fit = 0, n_inner = 0;
        for (size_t i = 0; i < t.n_rows; i++) {
            if (isnan(opts->lambda) && internal_valid(t.rows[i].id))
                inner[n_inner++] = i;
            else
                fit[n_fit++] = i;
        }
        if (n_inner > 0 && n_fit >= 2) {
            rc = dr_omodel_train(&t, fit, n_fit, &t, inner, n_inner, &o, &probe, &rep, err);
            if (rc != DYNRAG_OK)
                goto cleanup;
            res.valid_rows = n_inner;
            res.valid_quality = rep.valid_quality;
            o.lambda = rep.lambda;
            if (rep.k > 0)
                o.k = rep.k;
            if (!isnan(rep.local_weight)) {
                o.local_weight = rep.local_weight;
                o.fix_local_weight = true;
            }
            o.epochs = rep.epochs; /* contrastive: the epoch and the prior chosen there */
            o.prior_weight = rep.prior_weight > 0 ? rep.prior_weight : -1;
            o.prior_rows = rep.prior_rows;
        }
        rc = dr_omodel_train(&t, NULL, 0, NULL, NULL, 0, &o, &m, &rep, err);
        if (rc != DYNRAG_OK)
            goto cleanup;
        if (n_inner == 0 || n_fit < 2)
            res.valid_quality = NAN;
    }
    if ((rc = dr_omodel_save(m, opts->out_path, err)) != DYNRAG_OK)
        goto cleanup;
    res.rows = t.n_rows;
    res.n_options = t.n_options;
    res.n_params = rep.n_params;
    res.lambda = rep.lambda;
    res.train_quality = rep.train_quality;
    res.k = rep.k;
    res.local_weight = rep.local_weight;
done:
    if (rc != DYNRAG_OK)
        goto cleanup;
    res.seconds = (double)(dr_now_us() - t0) / 1e6;
    if (result != NULL)
        *result = res;
cleanup:
    cJSON_Delete(files);
    dr_free(desc);
    dr_free(fit);
    dr_free(inner);
    dr_omodel_free(m);
    dr_omodel_free(probe);
    dr_outcomes_free(&t);
    dr_outcomes_free(&v);
    return rc;
}
