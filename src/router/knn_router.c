/*
 * knn_router.c - nearest labelled example queries vote for an option.
 *
 * params: {examples: [{query, option}], examples_file: JSONL path (one
 * {"query": ..., "option": ...} object per line, blank lines skipped), k (5),
 * min_similarity (0.2), default (first option)}. Paths in params arrive
 * resolved by the pipeline loader (relative to the pipeline file's folder)
 * and are used as they are.
 *
 * The examples are embedded once, on the first route() call, with the
 * pipeline's embedder (ctx->embed): a router is created before any
 * embedder exists. The first caller embeds under a mutex; others wait; a
 * failure is returned to that caller and retried by the next one. After
 * that the embeddings are read-only.
 *
 * A query is embedded too; the k examples with the highest cosine similarity
 * that is >= min_similarity vote with their similarity as weight. The option
 * with the largest vote wins (ties: listed order); with no such neighbour
 * the default is chosen. scores[o] = o's vote / total vote (0 for options
 * with examples but no vote, NAN for options with no example).
 */
#include "router/router_impl.h"
#include "core/jsonb.h"
#include "core/alloc.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>

#define KNN_FILE_MAX (64u << 20)
#define KNN_MAX_EXAMPLES 1000000

typedef struct knn_router {
    dr_router base;
    char **queries;
    int *labels;
    size_t n, cap;
    int k;
    double min_sim;
    int dflt;
    bool has_example[DR_MAX_OPTIONS];

    pthread_mutex_t lock;
    bool ready;   /* emb is filled (read without the lock only after seeing true under it) */
    int dim;
    float *emb;   /* [n * dim], L2-normalised rows */
} knn_router;

static void knn_free(dr_router *r)
{
    knn_router *kr = (knn_router *)r;
    if (kr == NULL)
        return;
    for (size_t i = 0; i < kr->n; i++)
        dr_free(kr->queries[i]);
    dr_free(kr->queries);
    dr_free(kr->labels);
    dr_free(kr->emb);
    pthread_mutex_destroy(&kr->lock);
    dr_free(kr);
}

static void l2_normalise(float *v, int dim)
{
    double s = 0;
    for (int i = 0; i < dim; i++)
        s += (double)v[i] * v[i];
    if (!(s > 0) || !isfinite(s))
        return;
    float inv = (float)(1.0 / sqrt(s));
    for (int i = 0; i < dim; i++)
        v[i] *= inv;
}

/* Embeds every example (called with the lock held). */
static int knn_prepare(knn_router *kr, const dr_route_ctx *ctx, dynrag_error *err)
{
    if (ctx->embed == NULL || ctx->embed_dim <= 0)
        return dr_err_set(err, DYNRAG_ERR_STATE,
                          "stages.%s.router: the knn router needs the pipeline's embedder",
                          dr_stage_name(kr->base.stage->id));
    int dim = ctx->embed_dim;
    float *emb = dr_malloc(kr->n * (size_t)dim * sizeof *emb + 1);
    if (emb == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "knn: out of memory embedding %zu examples",
                          kr->n);
    for (size_t i = 0; i < kr->n; i++) {
        int rc = ctx->embed(ctx->embed_user, kr->queries[i], emb + i * (size_t)dim, dim, err);
        if (rc != DYNRAG_OK) {
            dr_free(emb);
            return dr_err_prefix(err, "knn: embedding example %zu", i);
        }
        l2_normalise(emb + i * (size_t)dim, dim);
    }
    kr->emb = emb;
    kr->dim = dim;
    kr->ready = true;
    return DYNRAG_OK;
}

typedef struct neighbour {
    double sim;
    size_t idx;
} neighbour;

static int knn_route(dr_router *r, const dr_route_ctx *ctx, dr_route_decision *out,
                     dynrag_error *err)
{
    knn_router *kr = (knn_router *)r;
    const dr_stage *st = r->stage;
    dr_route_decision_reset(out);
    if (kr->n == 0) {
        out->option = kr->dflt;
        snprintf(out->reason, sizeof out->reason, "knn: no examples: default %s",
                 st->options[kr->dflt].name);
        return dr_route_ensure_available(ctx, st, out, err);
    }
    pthread_mutex_lock(&kr->lock);
    int rc = kr->ready ? DYNRAG_OK : knn_prepare(kr, ctx, err);
    pthread_mutex_unlock(&kr->lock);
    if (rc != DYNRAG_OK)
        return rc;
    if (ctx->embed == NULL)
        return dr_err_set(err, DYNRAG_ERR_STATE,
                          "stages.%s.router: the knn router needs the pipeline's embedder",
                          dr_stage_name(st->id));
    if (ctx->embed_dim != kr->dim)
        return dr_err_set(err, DYNRAG_ERR_MISMATCH,
                          "knn: embedder dimension %d differs from the examples' %d",
                          ctx->embed_dim, kr->dim);

    int dim = kr->dim;
    size_t k = (size_t)kr->k;
    float *q = dr_malloc((size_t)dim * sizeof *q);
    neighbour *top = dr_calloc(k, sizeof *top);
    if (q == NULL || top == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    rc = ctx->embed(ctx->embed_user, ctx->query != NULL ? ctx->query : "", q, dim, err);
    if (rc != DYNRAG_OK) {
        dr_err_prefix(err, "knn: embedding the query");
        goto cleanup;
    }
    l2_normalise(q, dim);
    /* Keep the k best (sorted, highest first) among those >= min_similarity. */
    size_t n_top = 0;
    for (size_t i = 0; i < kr->n; i++) {
        const float *e = kr->emb + i * (size_t)dim;
        double s = 0;
        for (int j = 0; j < dim; j++)
            s += (double)q[j] * e[j];
        if (!(s >= kr->min_sim))
            continue;
        if (n_top == k && !(s > top[k - 1].sim))
            continue;
        size_t pos = n_top < k ? n_top++ : k - 1;
        while (pos > 0 && top[pos - 1].sim < s) {
            top[pos] = top[pos - 1];
            pos--;
        }
        top[pos].sim = s;
        top[pos].idx = i;
    }
    double votes[DR_MAX_OPTIONS] = {0};
    double total = 0;
    for (size_t i = 0; i < n_top; i++) {
        double w = DR_MAX(top[i].sim, 1e-9); /* a neighbour at similarity <= 0 still counts */
        votes[kr->labels[top[i].idx]] += w;
        total += w;
    }
    for (size_t o = 0; o < st->n_options; o++)
        if (kr->has_example[o])
            out->scores[o] = total > 0 ? votes[o] / total : 0.0;
    if (n_top == 0) {
        out->option = kr->dflt;
        snprintf(out->reason, sizeof out->reason,
                 "knn: no example with similarity >= %.3g: default %s", kr->min_sim,
                 st->options[kr->dflt].name);
        rc = dr_route_ensure_available(ctx, st, out, err);
        goto cleanup;
    }
    int best = -1;
    for (size_t o = 0; o < st->n_options; o++)
        if (votes[o] > 0 && (best < 0 || votes[o] > votes[best]))
            best = (int)o;
    out->option = best;
    snprintf(out->reason, sizeof out->reason,
             "knn: %zu neighbour%s (best similarity %.3f), %s has %.0f%% of the vote", n_top,
             n_top == 1 ? "" : "s", top[0].sim, st->options[best].name,
             100.0 * votes[best] / total);
    rc = dr_route_ensure_available(ctx, st, out, err);
cleanup:
    dr_free(q);
    dr_free(top);
    return rc;
}

static const dr_router_vtable knn_vt = {knn_route, dr_router_feedback_none, dr_router_save_none,
                                        knn_free};

/* Adds one example; `where` names it in errors. */
static int add_example(knn_router *kr, const cJSON *ex, const char *where, dynrag_error *err)
{
    const dr_stage *st = kr->base.stage;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(ex, "query");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(ex, "option");
    if (!cJSON_IsObject(ex) || !cJSON_IsString(q) || !cJSON_IsString(o))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "%s: expected {\"query\": string, \"option\": string}", where);
    int opt = dr_stage_find_option(st, o->valuestring);
    if (opt < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "%s: no option named '%s' in stage %s",
                          where, o->valuestring, dr_stage_name(st->id));
    if (kr->n >= KNN_MAX_EXAMPLES)
        return dr_err_set(err, DYNRAG_ERR_LIMIT, "%s: more than %d examples", where,
                          KNN_MAX_EXAMPLES);
    if (kr->n == kr->cap) {
        size_t nc = kr->cap ? kr->cap * 2 : 16;
        char **nq = dr_realloc(kr->queries, nc * sizeof *nq);
        if (nq == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        kr->queries = nq;
        int *nl = dr_realloc(kr->labels, nc * sizeof *nl);
        if (nl == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        kr->labels = nl;
        kr->cap = nc;
    }
    char *copy = dr_strdup(q->valuestring);
    if (copy == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    kr->queries[kr->n] = copy;
    kr->labels[kr->n] = opt;
    kr->n++;
    kr->has_example[opt] = true;
    return DYNRAG_OK;
}

static int load_examples_file(knn_router *kr, const char *path, dynrag_error *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc = dr_read_file(path, KNN_FILE_MAX, &data, &len, err);
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "knn examples_file");
    char *line = data;
    int lineno = 0;
    while (line != NULL && *line != '\0') {
        lineno++;
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        const char *c = line;
        while (*c == ' ' || *c == '\t' || *c == '\r')
            c++;
        if (*c != '\0') {
            char where[600];
            snprintf(where, sizeof where, "%s:%d", path, lineno);
            char why[128];
            cJSON *ex = dr_json_parse_line(line, strlen(line), why, sizeof(why));
            if (ex == NULL) {
                rc = why[0] ? dr_err_set(err, DYNRAG_ERR_PARSE, "%s: %s", where, why)
                            : dr_err_set(err, DYNRAG_ERR_NOMEM, "%s: out of memory", where);
                goto cleanup;
            }
            rc = add_example(kr, ex, where, err);
            cJSON_Delete(ex);
            if (rc != DYNRAG_OK)
                goto cleanup;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
cleanup:
    dr_free(data);
    return rc;
}

int dr_router_create_knn(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                         dynrag_error *err)
{
    const cJSON *params = stage->router.params;
    const char *sn = dr_stage_name(stage->id);
    knn_router *kr = dr_calloc(1, sizeof *kr);
    if (kr == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&kr->lock, NULL);
    kr->base.vt = &knn_vt;
    kr->base.stage = stage;
    kr->k = dr_param_int(params, "k", 5);
    kr->min_sim = dr_param_num(params, "min_similarity", 0.2);
    int rc = DYNRAG_OK;
    if (kr->k < 1 || kr->k > 1000) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.k: expected 1 to 1000", sn);
        goto cleanup;
    }
    if (!(kr->min_sim >= -1 && kr->min_sim <= 1)) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "stages.%s.router.min_similarity: expected a number in [-1, 1]", sn);
        goto cleanup;
    }
    if ((rc = dr_router_option_param(stage, "default", 0, &kr->dflt, err)) != DYNRAG_OK)
        goto cleanup;
    const cJSON *exs = cJSON_GetObjectItemCaseSensitive(params, "examples");
    if (exs != NULL && !cJSON_IsArray(exs)) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.examples: expected a list",
                        sn);
        goto cleanup;
    }
    const cJSON *ex;
    size_t i = 0;
    cJSON_ArrayForEach(ex, exs)
    {
        char where[96];
        snprintf(where, sizeof where, "stages.%s.router.examples[%zu]", sn, i++);
        if ((rc = add_example(kr, ex, where, err)) != DYNRAG_OK)
            goto cleanup;
    }
    const char *file = dr_param_str(params, "examples_file", NULL);
    if (file != NULL) {
        if ((rc = load_examples_file(kr, file, err)) != DYNRAG_OK) {
            dr_err_prefix(err, "stages.%s.router", sn);
            goto cleanup;
        }
    }
    *out = &kr->base;
    return DYNRAG_OK;
cleanup:
    knn_free(&kr->base);
    return rc;
}
