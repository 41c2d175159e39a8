/* openai.c - the "openai" embedder: POST {base_url}/embeddings over net/http. */
#include "embed/embedder.h"

#include "core/util.h"
#include "net/http.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPENAI_DEFAULT_BATCH 64
#define OPENAI_MAX_BATCH 2048
#define OPENAI_DEFAULT_RETRIES 3
#define OPENAI_MAX_DIM 65536

typedef struct openai_embedder {
    dr_embedder base;   /* first: the vtable's dr_embedder * is this struct */
    char *url;          /* {base_url}/embeddings */
    char *model;
    char *api_key;      /* NULL when none */
    double timeout_s;
    int max_retries;
    int batch_size;
} openai_embedder;

static void openai_free(dr_embedder *e)
{
    openai_embedder *o = (openai_embedder *)e;
    if (o == NULL)
        return;
    dr_free(o->url);
    dr_free(o->model);
    if (o->api_key != NULL) {
        memset(o->api_key, 0, strlen(o->api_key));
        dr_free(o->api_key);
    }
    dr_free(o);
}

/* True when s has a non-whitespace byte (servers reject empty inputs). */
static bool has_content(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != '\f' && *s != '\v')
            return true;
    return false;
}

/*
 * Embeds texts[0..n) (all non-empty) with one request. Writes n rows of
 * *dim floats into out (L2-normalised). When *dim is 0 on entry (dimension
 * not known yet) the response's dimension is taken and stored in *dim, and
 * out must then have room for n * OPENAI_MAX_DIM floats; otherwise every
 * vector must have exactly *dim components (DYNRAG_ERR_MISMATCH).
 */
static int embed_request(const openai_embedder *o, const char *const *texts, size_t n,
                         int *dim, float *out, dynrag_error *err)
{
    int rc = DYNRAG_OK;
    char *body = NULL;
    cJSON *root = NULL;
    bool *seen = NULL;
    dr_http_response resp = {0};

    cJSON *req = cJSON_CreateObject();
    cJSON *input = req ? cJSON_AddArrayToObject(req, "input") : NULL;
    if (input == NULL || !cJSON_AddStringToObject(req, "model", o->model)) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "embed: out of memory");
        cJSON_Delete(req);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        cJSON *s = cJSON_CreateString(texts[i]);
        if (s == NULL || !cJSON_AddItemToArray(input, s)) {
            cJSON_Delete(s);
            cJSON_Delete(req);
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "embed: out of memory");
            goto cleanup;
        }
    }
    body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (body == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "embed: out of memory");
        goto cleanup;
    }

    dr_http_request hr = {
        .url = o->url,
        .body = body,
        .api_key = o->api_key,
        .timeout_s = o->timeout_s,
        .max_retries = o->max_retries,
        .log_module = "embed",
    };
    rc = dr_http_post_json(&hr, &resp, err);
    if (rc != DYNRAG_OK)
        goto cleanup;

    const char *url = o->url;
    long status = resp.status;
    const char *end = NULL;
    unsigned long failed = dr_alloc_failures();
    root = resp.body ? cJSON_ParseWithLengthOpts(resp.body, resp.body_len, &end, false) : NULL;
    if (root == NULL && dr_alloc_failures() != failed) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "POST %s: out of memory reading the response",
                        url);
        goto cleanup;
    }
    if (root == NULL) {
        size_t off = resp.body && end && end >= resp.body ? (size_t)(end - resp.body) : 0;
        rc = dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: malformed JSON in the "
                        "response (%zu bytes) at byte %zu", url, status, resp.body_len, off);
        goto cleanup;
    }
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!cJSON_IsArray(data)) {
        rc = dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: response has %s", url,
                        status, data ? "\"data\" that is not an array" : "no \"data\" array");
        goto cleanup;
    }
    size_t got = (size_t)cJSON_GetArraySize(data);
    if (got != n) {
        rc = dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: sent %zu inputs, got %zu "
                        "embeddings", url, status, n, got);
        goto cleanup;
    }
    seen = dr_calloc(n, sizeof(bool));
    if (seen == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "embed: out of memory");
        goto cleanup;
    }
    size_t pos = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, data) {
        const cJSON *ix = cJSON_GetObjectItemCaseSensitive(item, "index");
        size_t row = pos;
        if (ix != NULL) {
            if (!cJSON_IsNumber(ix) || ix->valuedouble < 0 || ix->valuedouble >= (double)n ||
                ix->valuedouble != floor(ix->valuedouble)) {
                rc = dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: data[%zu].index is "
                                "not an integer in 0..%zu", url, status, pos, n - 1);
                goto cleanup;
            }
            row = (size_t)ix->valuedouble;
        }
        if (seen[row]) {
            rc = dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: index %zu appears twice "
                            "in \"data\"", url, status, row);
            goto cleanup;
        }
        seen[row] = true;
        const cJSON *vec = cJSON_GetObjectItemCaseSensitive(item, "embedding");
        if (!cJSON_IsArray(vec)) {
            rc = dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: data[%zu].embedding is "
                            "%s", url, status, pos,
                            vec == NULL ? "missing"
                            : cJSON_IsString(vec) ? "a string (base64 encoding is not supported)"
                                                  : "not an array");
            goto cleanup;
        }
        int d = cJSON_GetArraySize(vec);
        if (*dim == 0) {
            if (d < 1 || d > OPENAI_MAX_DIM) {
                rc = dr_err_set(err, DYNRAG_ERR_MISMATCH, "POST %s: data[%zu].embedding has "
                                "%d components (expected 1..%d)", url, pos, d, OPENAI_MAX_DIM);
                goto cleanup;
            }
            *dim = d;
        } else if (d != *dim) {
            rc = dr_err_set(err, DYNRAG_ERR_MISMATCH, "POST %s: data[%zu].embedding (index %zu) "
                            "has %d components, expected %d (model '%s')", url, pos, row, d,
                            *dim, o->model);
            goto cleanup;
        }
        float *dst = out + row * (size_t)*dim;
        double norm2 = 0;
        int k = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, vec) {
            if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) ||
                fabs(x->valuedouble) > 3.0e38) {
                rc = dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: data[%zu]."
                                "embedding[%d] is not a finite number", url, status, pos, k);
                goto cleanup;
            }
            dst[k++] = (float)x->valuedouble;
            norm2 += x->valuedouble * x->valuedouble;
        }
        if (norm2 > 0 && isfinite(norm2)) {
            float inv = (float)(1.0 / sqrt(norm2));
            for (int j = 0; j < *dim; j++)
                dst[j] *= inv;
        } else {
            memset(dst, 0, (size_t)*dim * sizeof(float));
        }
        pos++;
    }

cleanup:
    dr_free(seen);
    cJSON_Delete(root);
    dr_http_response_free(&resp);
    dr_free(body);
    return rc;
}

/*
 * Embeds n texts into out[n * dim] in batches of batch_size. Empty or
 * whitespace-only texts are not sent (servers reject them): their rows are
 * all zero. Fails on the first failing batch, naming its range.
 */
static int openai_embed(dr_embedder *e, const char *const *texts, size_t n, float *out,
                        dynrag_error *err)
{
    openai_embedder *o = (openai_embedder *)e;
    int rc = DYNRAG_OK;
    size_t dim = (size_t)e->dim;
    const char **batch = NULL;
    size_t *rows = NULL;
    float *tmp = NULL;
    if (n == 0)
        return DYNRAG_OK;
    if (texts == NULL || out == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "embed: NULL texts or output");
    size_t bs = (size_t)o->batch_size;
    batch = dr_malloc(bs * sizeof(*batch));
    rows = dr_malloc(bs * sizeof(*rows));
    tmp = dr_malloc(bs * dim * sizeof(float));
    if (batch == NULL || rows == NULL || tmp == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "embed: out of memory for a batch");
        goto cleanup;
    }
    memset(out, 0, n * dim * sizeof(float));
    size_t i = 0;
    while (i < n) {
        size_t nb = 0, first = i;
        for (; i < n && nb < bs; i++) {
            if (texts[i] == NULL) {
                rc = dr_err_set(err, DYNRAG_ERR_INVALID, "embed: text %zu is NULL", i);
                goto cleanup;
            }
            if (!has_content(texts[i]))
                continue;
            batch[nb] = texts[i];
            rows[nb] = i;
            nb++;
        }
        if (nb == 0)
            continue;
        int d = e->dim;
        rc = embed_request(o, batch, nb, &d, tmp, err);
        if (rc != DYNRAG_OK) {
            dr_err_prefix(err, "embedding texts %zu..%zu", first, i - 1);
            goto cleanup;
        }
        for (size_t j = 0; j < nb; j++)
            memcpy(out + rows[j] * dim, tmp + j * dim, dim * sizeof(float));
    }

cleanup:
    dr_free(batch);
    dr_free(rows);
    dr_free(tmp);
    return rc;
}

static const dr_embedder_vtable openai_vtable = {
    .embed = openai_embed,
    .free = openai_free,
};

/*
 * Creates the "openai" embedder. Defaults: timeout 60 s, 3 retries
 * (negative max_retries = none), batches of 64. When cfg->dim is 0 the
 * dimension is learned by embedding one probe text now (so creation talks
 * to the endpoint); otherwise every response must match cfg->dim. The
 * identity is "openai:<model>:dim=<d>". *out is freed with
 * dr_embedder_free().
 */
int dr_embedder_openai_create(const dr_embedder_config *cfg, dr_embedder **out,
                              dynrag_error *err)
{
    int rc = DYNRAG_OK;
    openai_embedder *o = NULL;
    float *probe = NULL;
    if (out == NULL || cfg == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "embed: NULL config or output");
    *out = NULL;
    if (cfg->base_url == NULL || cfg->base_url[0] == '\0')
        return dr_err_set(err, DYNRAG_ERR_INVALID, "embedder openai: base_url is required");
    if (cfg->model == NULL || cfg->model[0] == '\0')
        return dr_err_set(err, DYNRAG_ERR_INVALID, "embedder openai %s: model is required",
                          cfg->base_url);
    if (cfg->dim < 0 || cfg->dim > OPENAI_MAX_DIM)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "embedder openai: dim %d not in 0..%d",
                          cfg->dim, OPENAI_MAX_DIM);
    if (!(cfg->timeout_s >= 0) || cfg->timeout_s > 86400)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "embedder openai: timeout %g s not in "
                          "0..86400", cfg->timeout_s);
    if (cfg->max_retries > DR_HTTP_MAX_RETRIES)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "embedder openai: max_retries %d > %d",
                          cfg->max_retries, DR_HTTP_MAX_RETRIES);
    if (cfg->batch_size < 0 || cfg->batch_size > OPENAI_MAX_BATCH)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "embedder openai: batch_size %d not in "
                          "0..%d", cfg->batch_size, OPENAI_MAX_BATCH);
    if (strlen(cfg->model) > 160)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "embedder openai: model name too long");

    o = dr_calloc(1, sizeof(*o));
    if (o == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "embed: out of memory");
    o->base.vt = &openai_vtable;
    o->url = dr_http_join_url(cfg->base_url, "embeddings");
    o->model = dr_strdup(cfg->model);
    if (cfg->api_key != NULL && cfg->api_key[0] != '\0')
        o->api_key = dr_strdup(cfg->api_key);
    if (o->url == NULL || o->model == NULL ||
        (cfg->api_key != NULL && cfg->api_key[0] != '\0' && o->api_key == NULL)) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "embed: out of memory");
        goto cleanup;
    }
    o->timeout_s = cfg->timeout_s;
    o->max_retries = cfg->max_retries == 0 ? OPENAI_DEFAULT_RETRIES
                     : cfg->max_retries < 0 ? 0 : cfg->max_retries;
    o->batch_size = cfg->batch_size > 0 ? cfg->batch_size : OPENAI_DEFAULT_BATCH;

    int dim = cfg->dim;
    if (dim == 0) {
        probe = dr_malloc((size_t)OPENAI_MAX_DIM * sizeof(float));
        if (probe == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "embed: out of memory");
            goto cleanup;
        }
        const char *probe_text[1] = {"dimension probe"};
        rc = embed_request(o, probe_text, 1, &dim, probe, err);
        if (rc != DYNRAG_OK) {
            dr_err_prefix(err, "embedder openai: probing the dimension");
            goto cleanup;
        }
    }
    o->base.dim = dim;
    snprintf(o->base.identity, sizeof(o->base.identity), "openai:%s:dim=%d", o->model, dim);
    *out = &o->base;
    o = NULL;

cleanup:
    dr_free(probe);
    openai_free(o ? &o->base : NULL);
    return rc;
}
