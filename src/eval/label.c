/* label.c - silver complexity labels from forced no/single/multi-step runs. */
#include "core/util.h"
#include "dynrag/eval.h"
#include "dynrag/pipeline.h"
#include "eval/eval_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OUTCOMES_BYTES ((size_t)1 << 30)

/* Label rank of a retrieval_mode kind: A=0 (none), B=1 (single), C=2 (multi). */
static int kind_rank(const char *kind)
{
    if (strcmp(kind, "none") == 0)
        return 0;
    if (strcmp(kind, "single") == 0)
        return 1;
    if (strcmp(kind, "multi") == 0 || strcmp(kind, "adaptive") == 0)
        return 2;
    return -1;
}

typedef struct qbest {
    char *id;
    char *text;
    int rank;       /* best (lowest) successful rank so far, 3 = none */
    char option[64];
    double quality;
} qbest;

/* Reads OUT/outcomes.jsonl and keeps, per query, the cheapest mode that
 * succeeded. Queries keep their order of first appearance. */
static int read_outcomes(const char *path, const dynrag_pipeline *p, dr_eval_slot metric,
                         double min_q, qbest **out, size_t *n_out, dynrag_error *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc = dr_read_file(path, MAX_OUTCOMES_BYTES, &data, &len, err);
    if (rc != DYNRAG_OK)
        return rc;
    const char *mname = dr_eval_slot_key(metric);
    qbest *q = NULL;
    size_t n = 0, cap = 0, lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        cJSON *o = cJSON_Parse(line);
        const cJSON *stage = cJSON_GetObjectItemCaseSensitive(o, "stage");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "query_id");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "query");
        const cJSON *opt = cJSON_GetObjectItemCaseSensitive(o, "option");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(o, "metrics"), mname);
        if (!cJSON_IsString(stage) || !cJSON_IsString(id) || !cJSON_IsString(text) ||
            !cJSON_IsString(opt)) {
            cJSON_Delete(o);
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: not an outcome line", path, lineno);
            goto fail;
        }
        if (strcmp(stage->valuestring, "retrieval_mode") != 0) {
            cJSON_Delete(o);
            continue;
        }
        size_t i = 0;
        while (i < n && strcmp(q[i].id, id->valuestring) != 0)
            i++;
        if (i == n) {
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 256;
                qbest *nq = dr_realloc(q, nc * sizeof(*nq));
                if (nq == NULL) {
                    cJSON_Delete(o);
                    rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                    goto fail;
                }
                q = nq;
                cap = nc;
            }
            memset(&q[n], 0, sizeof(q[n]));
            q[n].id = dr_strdup(id->valuestring);
            q[n].text = dr_strdup(text->valuestring);
            q[n].rank = 3;
            n++;
            if (q[i].id == NULL || q[i].text == NULL) {
                cJSON_Delete(o);
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                goto fail;
            }
        }
        int oi = dynrag_pipeline_find_option(p, "retrieval_mode", opt->valuestring);
        dynrag_option_info info;
        int rank = oi >= 0 && dynrag_pipeline_option(p, "retrieval_mode", (size_t)oi, &info,
                                                     NULL) == DYNRAG_OK
                       ? kind_rank(info.kind)
                       : -1;
        bool ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ok"));
        if (rank >= 0 && ok && cJSON_IsNumber(m) && m->valuedouble >= min_q &&
            rank < q[i].rank) {
            q[i].rank = rank;
            q[i].quality = m->valuedouble;
            dr_strlcpy(q[i].option, opt->valuestring, sizeof(q[i].option));
        }
        cJSON_Delete(o);
    }
    dr_free(data);
    *out = q;
    *n_out = n;
    return DYNRAG_OK;
fail:
    for (size_t i = 0; i < n; i++) {
        dr_free(q[i].id);
        dr_free(q[i].text);
    }
    dr_free(q);
    dr_free(data);
    return rc;
}

/* Public: see dynrag/eval.h. */
void dynrag_label_options_init(dynrag_label_options *o)
{
    memset(o, 0, sizeof(*o));
    o->pipeline_path = NULL;
    o->data_path = NULL;
    o->out_path = NULL;
    o->work_dir = NULL;
    o->index_dir = NULL;
    o->limit = 0;
    o->success = dr_eval_slot_metric(DR_SLOT_CONTEXT);
    o->min_quality = 0.5;
    o->fallback_label = NULL;
    o->source = NULL;
    o->progress = NULL;
    o->progress_user = NULL;
}

int dynrag_eval_label(const dynrag_label_options *opt, dynrag_label_stats *stats,
                      dynrag_error *err)
{
    dynrag_label_stats st;
    memset(&st, 0, sizeof(st));
    if (!opt || !opt->pipeline_path || !opt->data_path || !opt->out_path || !opt->work_dir)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "label: pipeline, data, output and work folder are required");
    if (opt->fallback_label && strcmp(opt->fallback_label, "A") != 0 &&
        strcmp(opt->fallback_label, "B") != 0 && strcmp(opt->fallback_label, "C") != 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "label: fallback label must be A, B or C, got '%s'",
                          opt->fallback_label);
    dr_eval_slot success;
    int mrc = dr_eval_slot_of(opt->success, "label: success", &success, err);
    if (mrc != DYNRAG_OK)
        return mrc;
    if (!isfinite(opt->min_quality))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "label: min_quality %g is not a finite number",
                          opt->min_quality);
    dynrag_pipeline *p = NULL;
    qbest *q = NULL;
    size_t n = 0;
    char *outcomes = NULL;
    dr_buf out = {0};
    int rc = dynrag_pipeline_load(opt->pipeline_path, &p, NULL, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    dynrag_stage_info rm;
    dynrag_pipeline_stage(p, "retrieval_mode", &rm, NULL);
    bool have[3] = {false, false, false};
    for (size_t i = 0; i < rm.n_options; i++) {
        dynrag_option_info info;
        int r = dynrag_pipeline_option(p, "retrieval_mode", i, &info, NULL) == DYNRAG_OK
                    ? kind_rank(info.kind)
                    : -1;
        if (r >= 0)
            have[r] = true;
    }
    if (!have[0] || !have[1] || !have[2]) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "%s: stages.retrieval_mode needs options of kind none, single and multi",
                        opt->pipeline_path);
        goto cleanup;
    }
    const char *stages[] = {"retrieval_mode"};
    dynrag_eval_options eo;
    dynrag_eval_options_init(&eo);
    eo.pipeline_path = opt->pipeline_path;
    eo.data_path = opt->data_path;
    eo.format = DYNRAG_EVAL_FORMAT_QA;
    eo.out_dir = opt->work_dir;
    eo.index_dir = opt->index_dir;
    eo.limit = opt->limit;
    eo.stages = stages;
    eo.n_stages = 1;
    eo.quality = opt->success;
    eo.progress = opt->progress;
    eo.progress_user = opt->progress_user;
    rc = dynrag_eval_run(&eo, NULL, NULL, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    outcomes = dr_asprintf("%s/outcomes.jsonl", opt->work_dir);
    if (outcomes == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    double min_q = opt->min_quality;
    rc = read_outcomes(outcomes, p, success, min_q, &q, &n, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    const char *base = strrchr(opt->data_path, '/');
    base = base ? base + 1 : opt->data_path;
    char source[256];
    if (opt->source)
        dr_strlcpy(source, opt->source, sizeof(source));
    else
        snprintf(source, sizeof(source), "silver:%s", base);
    static const char *const names[3] = {"A", "B", "C"};
    st.n_queries = n;
    for (size_t i = 0; i < n && rc == DYNRAG_OK; i++) {
        const char *label;
        if (q[i].rank < 3) {
            label = names[q[i].rank];
        } else if (opt->fallback_label) {
            label = opt->fallback_label;
            st.n_fallback++;
        } else {
            st.n_skipped++;
            continue;
        }
        st.per_label[label[0] - 'A']++;
        st.n_labelled++;
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "text", q[i].text);
        cJSON_AddStringToObject(l, "label", label);
        cJSON_AddStringToObject(l, "source", source);
        if (q[i].rank < 3) {
            cJSON_AddStringToObject(l, "option", q[i].option);
            cJSON_AddNumberToObject(l, "quality", q[i].quality);
        } else {
            cJSON_AddNullToObject(l, "option");
        }
        char *s = cJSON_PrintUnformatted(l);
        cJSON_Delete(l);
        rc = s ? dr_buf_puts(&out, s) : DYNRAG_ERR_NOMEM;
        if (rc == DYNRAG_OK)
            rc = dr_buf_putc(&out, '\n');
        dr_free(s);
        if (rc != DYNRAG_OK)
            dr_err_set(err, rc, "out of memory");
    }
    if (rc == DYNRAG_OK)
        rc = dr_write_file_atomic(opt->out_path, out.data ? out.data : "", out.len, err);
cleanup:
    for (size_t i = 0; i < n; i++) {
        dr_free(q[i].id);
        dr_free(q[i].text);
    }
    dr_free(q);
    dr_free(outcomes);
    dr_buf_free(&out);
    dynrag_pipeline_free(p);
    if (stats)
        *stats = st;
    return rc;
}
