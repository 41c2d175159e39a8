/* omodel_api.c - dynrag_outcome_router_train (include/dynrag/outcomes.h). */
#include "core/util.h"
#include "dynrag/outcomes.h"
#include "router/omodel.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The fixed internal validation share when no --valid is given. */
static bool internal_valid(const char *id)
{
    return dr_hash64(id, strlen(id), 77) % 10000 < 1500;
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
    const char *kind = opts->kind ? opts->kind : "predict";
    if (strcmp(kind, "predict") != 0 && strcmp(kind, "cluster") != 0 &&
        strcmp(kind, "distill") != 0 && strcmp(kind, "mf") != 0 &&
        strcmp(kind, "contrastive") != 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "--kind %s: unknown (expected predict, cluster, distill, mf or "
                          "contrastive)",
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
    dr_omodel_train_opts o = {
        .kind = kind,
        .dim = opts->dim,
        .lambda = opts->lambda,
        .clusters = opts->clusters == 0 ? 64 : opts->clusters,
        .cluster_lambda = opts->cluster_lambda > 0 ? opts->cluster_lambda : 0.3,
        .hidden = opts->hidden,
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
        fit = malloc(t.n_rows * sizeof(*fit));
        inner = malloc(t.n_rows * sizeof(*inner));
        if (fit == NULL || inner == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        size_t n_fit = 0, n_inner = 0;
        for (size_t i = 0; i < t.n_rows; i++) {
            if (opts->lambda <= 0 && internal_valid(t.rows[i].id))
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
    res.seconds = (double)(dr_now_us() - t0) / 1e6;
    if (result != NULL)
        *result = res;
cleanup:
    cJSON_Delete(files);
    free(desc);
    free(fit);
    free(inner);
    dr_omodel_free(m);
    dr_omodel_free(probe);
    dr_outcomes_free(&t);
    dr_outcomes_free(&v);
    return rc;
}
