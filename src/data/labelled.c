/* labelled.c - the labelled-example JSONL reader (see labelled.h). */
#include "data/labelled.h"

#include "core/util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The "targets" of one line while reading (names owned). */
typedef struct soft_row {
    size_t n;
    char **name;
    double *p;
} soft_row;

static void soft_rows_free(soft_row *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++) {
        for (size_t k = 0; k < r[i].n; k++)
            dr_free(r[i].name[k]);
        dr_free(r[i].name);
        dr_free(r[i].p);
    }
    dr_free(r);
}

void dr_labelled_free(dr_labelled_set *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++) {
        dr_free(s->text[i]);
        dr_free(s->label[i]);
        dr_free(s->source[i]);
    }
    for (size_t i = 0; i < s->n_labels; i++)
        dr_free(s->label_names[i]);
    dr_free(s->text);
    dr_free(s->label);
    dr_free(s->source);
    dr_free(s->label_id);
    dr_free(s->label_names);
    dr_free(s->targets);
    dr_free(s);
}

int dr_labelled_find_label(const dr_labelled_set *s, const char *name)
{
    for (size_t i = 0; i < s->n_labels; i++)
        if (strcmp(s->label_names[i], name) == 0)
            return (int)i;
    return -1;
}

/* Grows the four per-example arrays of s to hold at least want items. */
static int grow(dr_labelled_set *s, size_t *alloc, size_t want)
{
    if (want <= *alloc)
        return DYNRAG_OK;
    size_t na = *alloc ? *alloc * 2 : 1024;
    char **t = dr_realloc(s->text, na * sizeof(*t));
    if (t == NULL)
        return DYNRAG_ERR_NOMEM;
    s->text = t;
    char **l = dr_realloc(s->label, na * sizeof(*l));
    if (l == NULL)
        return DYNRAG_ERR_NOMEM;
    s->label = l;
    char **src = dr_realloc(s->source, na * sizeof(*src));
    if (src == NULL)
        return DYNRAG_ERR_NOMEM;
    s->source = src;
    int *id = dr_realloc(s->label_id, na * sizeof(*id));
    if (id == NULL)
        return DYNRAG_ERR_NOMEM;
    s->label_id = id;
    *alloc = na;
    return DYNRAG_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads a required (or optional) string field of one JSON line, checking
 * UTF-8; *out is a malloc'ed copy. */
static int get_field(const cJSON *obj, const char *name, int required, const char *path,
                     size_t line, char **out, dynrag_error *err)
{
    *out = NULL;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (f == NULL || cJSON_IsNull(f)) {
        if (required)
            return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: missing field \"%s\"", path, line,
                              name);
        *out = dr_strdup("");
        return *out ? DYNRAG_OK : dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    if (!cJSON_IsString(f) || f->valuestring == NULL)
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: field \"%s\" is not a string", path,
                          line, name);
    size_t len = strlen(f->valuestring);
    if (required && len == 0)
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: field \"%s\" is empty", path, line,
                          name);
    if (!dr_utf8_valid(f->valuestring, len, NULL))
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: field \"%s\" is not valid UTF-8",
                          path, line, name);
    *out = dr_strdup(f->valuestring);
    return *out ? DYNRAG_OK : dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
}

/* Reads the optional "targets" object of a line into *row (row->n = 0 when
 * absent) and, when want_label, the most probable label into *label. */
static int get_targets(const cJSON *obj, const char *path, size_t line, soft_row *row,
                       char **label, dynrag_error *err)
{
    memset(row, 0, sizeof(*row));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "targets");
    if (t == NULL || cJSON_IsNull(t))
        return DYNRAG_OK;
    int n = cJSON_IsObject(t) ? cJSON_GetArraySize(t) : 0;
    if (n < 1 || n > DR_LABELLED_MAX_LABELS)
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: field \"targets\" must be an object "
                          "of 1..%d label -> probability entries", path, line,
                          DR_LABELLED_MAX_LABELS);
    row->name = dr_calloc((size_t)n, sizeof(char *));
    row->p = dr_calloc((size_t)n, sizeof(double));
    if (!row->name || !row->p)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    double sum = 0;
    size_t best = 0;
    for (const cJSON *e = t->child; e; e = e->next) {
        const char *k = e->string ? e->string : "";
        if (k[0] == '\0' || !dr_utf8_valid(k, strlen(k), NULL))
            return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: field \"targets\": a label is "
                              "empty or not valid UTF-8", path, line);
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || e->valuedouble < 0 ||
            e->valuedouble > 1)
            return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: field \"targets\": \"%s\" must "
                              "be a probability in [0, 1]", path, line, k);
        for (size_t j = 0; j < row->n; j++)
            if (strcmp(row->name[j], k) == 0)
                return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: field \"targets\": label "
                                  "\"%s\" appears twice", path, line, k);
        if (!(row->name[row->n] = dr_strdup(k)))
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        row->p[row->n] = e->valuedouble;
        sum += e->valuedouble;
        if (row->n > 0 && (row->p[row->n] > row->p[best] ||
                           (row->p[row->n] == row->p[best] && strcmp(k, row->name[best]) < 0)))
            best = row->n;
        row->n++;
    }
    if (!(fabs(sum - 1.0) <= 1e-3))
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: field \"targets\": probabilities "
                          "sum to %g, not 1", path, line, sum);
    for (size_t j = 0; j < row->n; j++)
        row->p[j] /= sum;
    if (*label == NULL && !(*label = dr_strdup(row->name[best])))
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    return DYNRAG_OK;
}

int dr_labelled_load(const char *path, dr_labelled_set **out, dynrag_error *err)
{
    *out = NULL;
    char *data = NULL;
    size_t len = 0, alloc = 0;
    cJSON *obj = NULL;
    soft_row *soft = NULL;
    size_t soft_alloc = 0, soft_n = 0; /* soft[0..soft_n) are filled */
    bool any_soft = false;
    dr_labelled_set *s = dr_calloc(1, sizeof(*s));
    if (s == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    int rc = dr_read_file(path, DR_LABELLED_MAX_FILE, &data, &len, err);
    if (rc != DYNRAG_OK)
        goto cleanup;

    size_t line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *p = data + pos;
        const char *nl = memchr(p, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - p) : len - pos;
        pos += n + (nl ? 1 : 0);
        line++;
        if (n > DR_LABELLED_MAX_LINE) {
            rc = dr_err_set(err, DYNRAG_ERR_LIMIT, "%s:%zu: line longer than %d bytes", path,
                            line, DR_LABELLED_MAX_LINE);
            goto cleanup;
        }
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'))
            k++;
        if (k == n)
            continue; /* blank line */
        if (s->n >= DR_LABELLED_MAX_COUNT) {
            rc = dr_err_set(err, DYNRAG_ERR_LIMIT, "%s:%zu: more than %d examples", path, line,
                            DR_LABELLED_MAX_COUNT);
            goto cleanup;
        }
        obj = cJSON_ParseWithLength(p, n);
        if (obj == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_PARSE, "%s:%zu: malformed JSON", path, line);
            goto cleanup;
        }
        if (!cJSON_IsObject(obj)) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: expected a JSON object", path, line);
            goto cleanup;
        }
        if (grow(s, &alloc, s->n + 1) != DYNRAG_OK) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        if (s->n >= soft_alloc) {
            size_t na = soft_alloc ? soft_alloc * 2 : 1024;
            soft_row *ns = dr_realloc(soft, na * sizeof(*ns));
            if (ns == NULL) {
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                goto cleanup;
            }
            soft = ns;
            soft_alloc = na;
        }
        char *t = NULL, *l = NULL, *src = NULL;
        bool has_targets = cJSON_GetObjectItemCaseSensitive(obj, "targets") != NULL &&
                           !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(obj, "targets"));
        rc = get_field(obj, "text", 1, path, line, &t, err);
        if (rc == DYNRAG_OK && (!has_targets || cJSON_GetObjectItemCaseSensitive(obj, "label")))
            rc = get_field(obj, "label", 1, path, line, &l, err);
        if (rc == DYNRAG_OK)
            rc = get_field(obj, "source", 0, path, line, &src, err);
        if (rc == DYNRAG_OK) /* the row joins soft[] even on failure, to be freed */
            rc = get_targets(obj, path, line, &soft[s->n], &l, err);
        else
            memset(&soft[s->n], 0, sizeof(soft[s->n]));
        if (rc != DYNRAG_OK) {
            for (size_t j = 0; j < soft[s->n].n; j++)
                dr_free(soft[s->n].name[j]);
            dr_free(soft[s->n].name);
            dr_free(soft[s->n].p);
            dr_free(t);
            dr_free(l);
            dr_free(src);
            goto cleanup;
        }
        any_soft = any_soft || soft[s->n].n > 0;
        soft_n = s->n + 1;
        s->text[s->n] = t;
        s->label[s->n] = l;
        s->source[s->n] = src;
        s->label_id[s->n] = -1;
        s->n++;
        cJSON_Delete(obj);
        obj = NULL;
    }

    /* Distinct labels, sorted, then ids. */
    if (s->n > 0) {
        char **tmp = dr_malloc(s->n * sizeof(*tmp));
        if (tmp == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        size_t nt = s->n;
        for (size_t i = 0; i < s->n; i++)
            nt += soft[i].n;
        if (nt > s->n) {
            char **bigger = dr_realloc(tmp, nt * sizeof(*tmp));
            if (bigger == NULL) {
                dr_free(tmp);
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                goto cleanup;
            }
            tmp = bigger;
        }
        memcpy(tmp, s->label, s->n * sizeof(*tmp));
        for (size_t i = 0, k = s->n; i < s->n; i++)
            for (size_t j = 0; j < soft[i].n; j++)
                tmp[k++] = soft[i].name[j];
        qsort(tmp, nt, sizeof(*tmp), cmp_str);
        size_t nd = 0;
        for (size_t i = 0; i < nt; i++)
            if (i == 0 || strcmp(tmp[i], tmp[i - 1]) != 0)
                tmp[nd++] = tmp[i];
        if (nd > DR_LABELLED_MAX_LABELS) {
            dr_free(tmp);
            rc = dr_err_set(err, DYNRAG_ERR_LIMIT, "%s: more than %d distinct labels", path,
                            DR_LABELLED_MAX_LABELS);
            goto cleanup;
        }
        s->label_names = dr_calloc(nd, sizeof(char *));
        if (s->label_names == NULL) {
            dr_free(tmp);
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < nd; i++) {
            s->label_names[i] = dr_strdup(tmp[i]);
            if (s->label_names[i] == NULL) {
                dr_free(tmp);
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                goto cleanup;
            }
            s->n_labels++;
        }
        dr_free(tmp);
        for (size_t i = 0; i < s->n; i++) {
            char **hit = bsearch(&s->label[i], s->label_names, s->n_labels, sizeof(char *),
                                 cmp_str);
            s->label_id[i] = (int)(hit - s->label_names);
        }
        if (any_soft) {
            s->targets = dr_calloc(s->n * s->n_labels, sizeof(float));
            if (s->targets == NULL) {
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                goto cleanup;
            }
            for (size_t i = 0; i < s->n; i++) {
                float *row = s->targets + i * s->n_labels;
                if (soft[i].n == 0)
                    row[s->label_id[i]] = 1.0f;
                for (size_t j = 0; j < soft[i].n; j++)
                    row[dr_labelled_find_label(s, soft[i].name[j])] = (float)soft[i].p[j];
            }
        }
    }
    *out = s;
    s = NULL;
cleanup:
    cJSON_Delete(obj);
    dr_free(data);
    soft_rows_free(soft, soft_n);
    dr_labelled_free(s);
    return rc;
}
