/*
 * data.c - evaluation data sets: QA question files in four layouts and
 * BEIR queries with their qrels.
 */
#include "eval/eval_internal.h"

#include "core/jsonb.h"
#include "core/util.h"
#include "dynrag/alloc.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATA_MAX_BYTES ((size_t)1 << 30)

static void item_free(dr_eval_item *it)
{
    dr_free(it->id);
    dr_free(it->question);
    for (size_t i = 0; i < it->n_answers; i++)
        dr_free(it->answers[i]);
    dr_free(it->answers);
    for (size_t i = 0; i < it->n_support; i++)
        dr_free(it->support[i]);
    dr_free(it->support);
    dr_free(it->gold_key);
}

void dr_eval_data_free(dr_eval_data *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n; i++)
        item_free(&d->items[i]);
    dr_free(d->items);
    dynrag_qrels_free(d->qrels);
    memset(d, 0, sizeof(*d));
}

static int push_str(char ***arr, size_t *n, const char *s)
{
    char **na = dr_realloc(*arr, (*n + 1) * sizeof **arr);
    if (na == NULL)
        return DYNRAG_ERR_NOMEM;
    *arr = na;
    if ((na[*n] = dr_strdup(s)) == NULL)
        return DYNRAG_ERR_NOMEM;
    (*n)++;
    return DYNRAG_OK;
}

/* Fills it from one QA record; where is "file:line" for messages. */
static int parse_qa_record(const cJSON *o, const char *where, size_t ordinal, dr_eval_item *it,
                           dynrag_error *err)
{
    if (!cJSON_IsObject(o))
        return dr_err_set(err, DYNRAG_ERR_PARSE, "%s: expected a JSON object", where);
    const cJSON *qt = cJSON_GetObjectItemCaseSensitive(o, "question_text");
    const cJSON *qq = cJSON_GetObjectItemCaseSensitive(o, "question");
    const cJSON *q = cJSON_IsString(qt) ? qt : qq;
    if (!cJSON_IsString(q) || q->valuestring[0] == '\0')
        return dr_err_set(err, DYNRAG_ERR_PARSE,
                          "%s: no \"question_text\" (HotpotQA/IRCoT) or \"question\" string",
                          where);
    int rc = DYNRAG_OK;
    it->question = dr_strdup(q->valuestring);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "question_id");
    if (!cJSON_IsString(id))
        id = cJSON_GetObjectItemCaseSensitive(o, "id");
    if (!cJSON_IsString(id))
        id = cJSON_GetObjectItemCaseSensitive(o, "_id");
    it->id = cJSON_IsString(id) ? dr_strdup(id->valuestring) : dr_asprintf("q%zu", ordinal);
    if (it->question == NULL || it->id == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    if (q == qt) { /* HotpotQA / IRCoT */
        const cJSON *ao, *sp;
        const cJSON *aos = cJSON_GetObjectItemCaseSensitive(o, "answers_objects");
        if (!cJSON_IsArray(aos))
            return dr_err_set(err, DYNRAG_ERR_PARSE, "%s: \"answers_objects\" must be an array",
                              where);
        cJSON_ArrayForEach(ao, aos)
        {
            const cJSON *spans = cJSON_GetObjectItemCaseSensitive(ao, "spans");
            if (!cJSON_IsArray(spans))
                return dr_err_set(err, DYNRAG_ERR_PARSE,
                                  "%s: \"answers_objects[].spans\" must be an array", where);
            cJSON_ArrayForEach(sp, spans)
            {
                if (!cJSON_IsString(sp))
                    return dr_err_set(err, DYNRAG_ERR_PARSE, "%s: a span is not a string", where);
                if ((rc = push_str(&it->answers, &it->n_answers, sp->valuestring)) != DYNRAG_OK)
                    return dr_err_set(err, rc, "out of memory");
            }
        }
        const cJSON *ctx, *ctxs = cJSON_GetObjectItemCaseSensitive(o, "contexts");
        cJSON_ArrayForEach(ctx, ctxs)
        {
            const cJSON *sup = cJSON_GetObjectItemCaseSensitive(ctx, "is_supporting");
            const cJSON *title = cJSON_GetObjectItemCaseSensitive(ctx, "title");
            if (cJSON_IsTrue(sup) && cJSON_IsString(title)) {
                bool dup = false;
                for (size_t i = 0; i < it->n_support; i++)
                    dup = dup || strcmp(it->support[i], title->valuestring) == 0;
                if (!dup && (rc = push_str(&it->support, &it->n_support, title->valuestring)))
                    return dr_err_set(err, rc, "out of memory");
            }
        }
    } else {
        const cJSON *ans = cJSON_GetObjectItemCaseSensitive(o, "answers");
        if (ans == NULL)
            ans = cJSON_GetObjectItemCaseSensitive(o, "answer");
        const cJSON *a;
        if (cJSON_IsString(ans)) { /* MuSiQue: answer + answer_aliases */
            if ((rc = push_str(&it->answers, &it->n_answers, ans->valuestring)) != DYNRAG_OK)
                return dr_err_set(err, rc, "out of memory");
            cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(o, "answer_aliases"))
            {
                if (cJSON_IsString(a) &&
                    (rc = push_str(&it->answers, &it->n_answers, a->valuestring)) != DYNRAG_OK)
                    return dr_err_set(err, rc, "out of memory");
            }
        } else if (cJSON_IsArray(ans)) { /* NQ-open "answer": [...], generic "answers": [...] */
            cJSON_ArrayForEach(a, ans)
            {
                if (!cJSON_IsString(a))
                    return dr_err_set(err, DYNRAG_ERR_PARSE, "%s: an answer is not a string",
                                      where);
                if ((rc = push_str(&it->answers, &it->n_answers, a->valuestring)) != DYNRAG_OK)
                    return dr_err_set(err, rc, "out of memory");
            }
        } else {
            return dr_err_set(err, DYNRAG_ERR_PARSE,
                              "%s: expected \"answers\" (list), \"answer\" (list, NQ-open) or "
                              "\"answer\" (string, MuSiQue)",
                              where);
        }
    }
    dr_buf key = {0};
    for (size_t i = 0; i < it->n_answers; i++) {
        dr_buf_puts(&key, "a:");
        dr_buf_json_str(&key, it->answers[i]);
    }
    for (size_t i = 0; i < it->n_support; i++) {
        dr_buf_puts(&key, "s:");
        dr_buf_json_str(&key, it->support[i]);
    }
    it->gold_key = dr_buf_take(&key);
    return it->gold_key ? DYNRAG_OK : dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
}

static int grow(dr_eval_data *d, size_t *cap, dynrag_error *err)
{
    if (d->n < *cap)
        return DYNRAG_OK;
    size_t nc = *cap ? *cap * 2 : 256;
    dr_eval_item *ni = dr_realloc(d->items, nc * sizeof *ni);
    if (ni == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    d->items = ni;
    *cap = nc;
    return DYNRAG_OK;
}

static int load_qa(const char *path, char *text, size_t len, size_t limit, dr_eval_data *d,
                   dynrag_error *err)
{
    size_t cap = 0;
    char where[4200];
    const char *p = text;
    while (p < text + len && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    if (*p == '[') { /* a JSON array (MuSiQue) */
        cJSON *arr = cJSON_ParseWithLength(text, len);
        if (arr == NULL)
            return dr_err_set(err, DYNRAG_ERR_PARSE, "%s: invalid JSON near byte %zu", path,
                              (size_t)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - text : 0));
        int rc = DYNRAG_OK;
        size_t i = 0;
        const cJSON *o;
        cJSON_ArrayForEach(o, arr)
        {
            if (limit && d->n >= limit)
                break;
            if ((rc = grow(d, &cap, err)) != DYNRAG_OK)
                break;
            snprintf(where, sizeof where, "%s: element %zu", path, i + 1);
            dr_eval_item *it = &d->items[d->n];
            memset(it, 0, sizeof(*it));
            rc = parse_qa_record(o, where, i + 1, it, err);
            d->n++;
            if (rc != DYNRAG_OK)
                break;
            i++;
        }
        cJSON_Delete(arr);
        return rc;
    }
    size_t lineno = 0;
    for (char *line = text; line < text + len && !(limit && d->n >= limit);) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        char *end = nl ? nl : text + len;
        lineno++;
        char *s = line;
        line = nl ? nl + 1 : text + len;
        while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++;
        if (s == end)
            continue;
        snprintf(where, sizeof where, "%s:%zu", path, lineno);
        char why[128];
        cJSON *o = dr_json_parse_line(s, (size_t)(end - s), why, sizeof(why));
        if (o == NULL)
            return why[0] ? dr_err_set(err, DYNRAG_ERR_PARSE, "%s: invalid JSON: %s", where, why)
                          : dr_err_set(err, DYNRAG_ERR_NOMEM, "%s: out of memory", where);
        int rc = grow(d, &cap, err);
        if (rc == DYNRAG_OK) {
            dr_eval_item *it = &d->items[d->n];
            memset(it, 0, sizeof(*it));
            rc = parse_qa_record(o, where, lineno, it, err);
            d->n++;
        }
        cJSON_Delete(o);
        if (rc != DYNRAG_OK)
            return rc;
    }
    return DYNRAG_OK;
}

static int load_beir(const char *path, char *text, size_t len, size_t limit, dr_eval_data *d,
                     dynrag_error *err)
{
    size_t cap = 0, lineno = 0;
    for (char *line = text; line < text + len && !(limit && d->n >= limit);) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        char *end = nl ? nl : text + len;
        lineno++;
        char *s = line;
        line = nl ? nl + 1 : text + len;
        while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++;
        if (s == end)
            continue;
        char why[128];
        cJSON *o = dr_json_parse_line(s, (size_t)(end - s), why, sizeof(why));
        if (o == NULL)
            return why[0] ? dr_err_set(err, DYNRAG_ERR_PARSE, "%s:%zu: invalid JSON: %s", path,
                                       lineno, why)
                          : dr_err_set(err, DYNRAG_ERR_NOMEM, "%s:%zu: out of memory", path,
                                       lineno);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "_id");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(o, "text");
        if (!cJSON_IsString(id) || !cJSON_IsString(tx)) {
            cJSON_Delete(o);
            return dr_err_set(err, DYNRAG_ERR_PARSE,
                              "%s:%zu: expected a BEIR query {\"_id\": string, \"text\": string}",
                              path, lineno);
        }
        /* Only judged queries are evaluated. */
        bool judged = false;
        for (size_t i = 0, nq = dynrag_qrels_query_count(d->qrels); i < nq && !judged; i++)
            judged = strcmp(dynrag_qrels_query_id(d->qrels, i), id->valuestring) == 0;
        int rc = DYNRAG_OK;
        if (judged && tx->valuestring[0] && (rc = grow(d, &cap, err)) == DYNRAG_OK) {
            dr_eval_item *it = &d->items[d->n++];
            memset(it, 0, sizeof(*it));
            it->id = dr_strdup(id->valuestring);
            it->question = dr_strdup(tx->valuestring);
            it->gold_key = dr_asprintf("qrels:%016llx", (unsigned long long)d->qrels_hash);
            if (!it->id || !it->question || !it->gold_key)
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        }
        cJSON_Delete(o);
        if (rc != DYNRAG_OK)
            return rc;
    }
    return DYNRAG_OK;
}

int dr_eval_data_load(const char *path, dynrag_eval_format fmt, const char *qrels_path,
                      size_t limit, dr_eval_data *out, dynrag_error *err)
{
    memset(out, 0, sizeof(*out));
    char *text = NULL, *qtext = NULL;
    size_t len = 0, qlen = 0;
    int rc = dr_read_file(path, DATA_MAX_BYTES, &text, &len, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    if (fmt == DYNRAG_EVAL_FORMAT_BEIR) {
        if (qrels_path == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_INVALID, "BEIR evaluation needs a qrels file");
            goto cleanup;
        }
        if ((rc = dynrag_qrels_load(qrels_path, &out->qrels, err)) != DYNRAG_OK)
            goto cleanup;
        if ((rc = dr_read_file(qrels_path, DATA_MAX_BYTES, &qtext, &qlen, err)) != DYNRAG_OK)
            goto cleanup;
        out->qrels_hash = dr_hash64(qtext, qlen, 7);
        rc = load_beir(path, text, len, limit, out, err);
    } else {
        rc = load_qa(path, text, len, limit, out, err);
    }
    if (rc == DYNRAG_OK && out->n == 0)
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "%s: no %squeries", path,
                        fmt == DYNRAG_EVAL_FORMAT_BEIR ? "judged " : "");
cleanup:
    dr_free(text);
    dr_free(qtext);
    if (rc != DYNRAG_OK)
        dr_eval_data_free(out);
    return rc;
}

int dr_eval_pipeline_load(const char *path, dynrag_pipeline **out, dynrag_error *err)
{
    dynrag_diags *dg = NULL;
    int rc = dynrag_pipeline_load(path, out, &dg, err);
    if (rc != DYNRAG_OK) {
        char *t = dg ? dynrag_diags_format(dg) : NULL;
        if (t && *t)
            dr_err_set(err, rc, "%s", t);
        dr_free(t);
    }
    dynrag_diags_free(dg);
    return rc;
}

/* See eval_internal.h. */
cJSON *dr_eval_router_params(const dynrag_pipeline *p, const char *stage, dynrag_error *err)
{
    char *txt = dynrag_pipeline_router_params(p, stage);
    cJSON *j = txt ? cJSON_Parse(txt) : NULL;
    dynrag_free(txt);
    if (j == NULL)
        dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    return j;
}
