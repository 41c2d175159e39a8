/* outcomes.c - the outcome-table JSONL reader and writer (see outcomes.h). */
#include "eval/outcomes.h"
#include "core/alloc.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dr_outcomes_free(dr_outcome_table *t)
{
    if (t == NULL)
        return;
    for (size_t r = 0; r < t->n_rows; r++) {
        dr_outcome_row *row = &t->rows[r];
        dr_free(row->id);
        dr_free(row->query);
        dr_free(row->task);
        if (row->o != NULL)
            for (size_t k = 0; k < t->n_options; k++)
                dr_free(row->o[k].response);
        dr_free(row->o);
    }
    dr_free(t->rows);
    for (size_t k = 0; k < t->n_options; k++)
        dr_free(t->options[k]);
    dr_free(t->options);
    memset(t, 0, sizeof(*t));
}

int dr_outcomes_option(const dr_outcome_table *t, const char *name)
{
    if (t == NULL || name == NULL)
        return -1;
    for (size_t k = 0; k < t->n_options; k++)
        if (strcmp(t->options[k], name) == 0)
            return (int)k;
    return -1;
}

/* The parse state of one file: the table being built, its row capacity and
 * the line number of every row (for the duplicate-id error). */
typedef struct parse_ctx {
    const char *name;
    dr_outcome_table *t;
    size_t rows_alloc;
    size_t *row_line;
    dynrag_error *err;
} parse_ctx;

/* The marker a "\u0000" escape is rewritten to before cJSON sees it (cJSON
 * would otherwise cut the string silently): U+FFFF, a noncharacter. */
static const char nul_marker[] = "\xEF\xBF\xBF";

/*
 * Copies the JSON text p[0..n) into a malloc'ed NUL-terminated buffer,
 * rewriting every "\u0000" escape inside a string to "\uFFFF" and setting
 * *had_nul when there was one. NULL on allocation failure.
 */
static char *copy_line(const char *p, size_t n, bool *had_nul)
{
    *had_nul = false;
    char *s = dr_malloc(n + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        if (!in_str) {
            if (s[i] == '"')
                in_str = true;
            continue;
        }
        if (s[i] == '"') {
            in_str = false;
        } else if (s[i] == '\\' && i + 1 < n) {
            if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0) {
                memcpy(s + i + 2, "FFFF", 4);
                *had_nul = true;
            }
            i++; /* skip the escaped character */
        }
    }
    return s;
}

/* Checks a string value: valid UTF-8 and (when the line had a NUL escape)
 * free of the NUL marker. `field` names it in the error. */
static int check_string(parse_ctx *c, size_t line, const char *field, const char *s, bool had_nul)
{
    size_t len = strlen(s);
    if (!dr_utf8_valid(s, len, NULL))
        return dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: %s: not valid UTF-8", c->name, line,
                          field);
    if (had_nul && strstr(s, nul_marker) != NULL)
        return dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: %s: contains a NUL character",
                          c->name, line, field);
    return DYNRAG_OK;
}

/* Reads string member `key` of obj into *out (malloc'ed). Absent or null:
 * an error when required, else *out stays NULL. */
static int get_string(parse_ctx *c, size_t line, const cJSON *obj, const char *key, bool required,
                      bool nonempty, bool had_nul, char **out)
{
    *out = NULL;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (f == NULL || (!required && cJSON_IsNull(f))) {
        if (required)
            return dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: %s: missing", c->name, line, key);
        return DYNRAG_OK;
    }
    if (!cJSON_IsString(f) || f->valuestring == NULL)
        return dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: %s: not a string", c->name, line,
                          key);
    if (nonempty && f->valuestring[0] == '\0')
        return dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: %s: empty", c->name, line, key);
    int rc = check_string(c, line, key, f->valuestring, had_nul);
    if (rc != DYNRAG_OK)
        return rc;
    *out = dr_strdup(f->valuestring);
    return *out ? DYNRAG_OK : dr_err_set(c->err, DYNRAG_ERR_NOMEM, "out of memory");
}

/* Reads number member `key` of the outcome object o (field path prefix
 * `where`, e.g. "outcomes.gpt-4") within [lo, hi]. *present says whether it
 * was there; absent is an error only when required. */
static int get_number(parse_ctx *c, size_t line, const cJSON *o, const char *where, const char *key,
                      bool required, double lo, double hi, double *out, bool *present)
{
    *present = false;
    *out = 0.0;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, key);
    if (f == NULL) {
        if (required)
            return dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: %s.%s: missing", c->name, line,
                              where, key);
        return DYNRAG_OK;
    }
    if (!cJSON_IsNumber(f))
        return dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: %s.%s: not a number", c->name, line,
                          where, key);
    double v = f->valuedouble;
    if (!isfinite(v) || v < lo || v > hi)
        return dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: %s.%s: %g is outside [%g, %g]",
                          c->name, line, where, key, v, lo, hi);
    *out = v;
    *present = true;
    return DYNRAG_OK;
}

/* Finds or adds option `name`, widening every existing row's outcome array
 * when a new option appears. Returns the index or a negative status. */
static int option_index(parse_ctx *c, size_t line, const char *name)
{
    dr_outcome_table *t = c->t;
    int k = dr_outcomes_option(t, name);
    if (k >= 0)
        return k;
    if (t->n_options >= DR_OUTCOMES_MAX_OPTIONS)
        return dr_err_set(c->err, DYNRAG_ERR_LIMIT, "%s:%zu: outcomes: more than %d options",
                          c->name, line, DR_OUTCOMES_MAX_OPTIONS);
    char **opts = dr_realloc(t->options, (t->n_options + 1) * sizeof(*opts));
    if (opts == NULL)
        return dr_err_set(c->err, DYNRAG_ERR_NOMEM, "out of memory");
    t->options = opts;
    char *copy = dr_strdup(name);
    if (copy == NULL)
        return dr_err_set(c->err, DYNRAG_ERR_NOMEM, "out of memory");
    /* Widen the rows first so that a failure leaves the table consistent. */
    for (size_t r = 0; r < t->n_rows; r++) {
        dr_outcome *o = dr_realloc(t->rows[r].o, (t->n_options + 1) * sizeof(*o));
        if (o == NULL) {
            dr_free(copy);
            return dr_err_set(c->err, DYNRAG_ERR_NOMEM, "out of memory");
        }
        memset(&o[t->n_options], 0, sizeof(*o));
        t->rows[r].o = o;
    }
    t->options[t->n_options] = copy;
    return (int)t->n_options++;
}

static const char *const row_keys[] = {"id", "query", "task", "outcomes"};
static const char *const outcome_keys[] = {"quality", "cost_usd", "latency_ms", "response"};

/* True when key is one of the n names in keys. */
static bool known_key(const char *key, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, keys[i]) == 0)
            return true;
    return false;
}

/* Parses the outcome object `o` of option `name` on one line into *out. */
static int parse_outcome(parse_ctx *c, size_t line, const char *name, const cJSON *o, bool had_nul,
                         dr_outcome *out)
{
    char where[320];
    snprintf(where, sizeof(where), "outcomes.%.300s", name);
    if (!cJSON_IsObject(o))
        return dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: %s: not an object", c->name, line,
                          where);
    for (const cJSON *f = o->child; f != NULL; f = f->next) {
        if (!known_key(f->string, outcome_keys, DR_ARRAY_LEN(outcome_keys)))
            return dr_err_set(c->err, DYNRAG_ERR_FORMAT,
                              "%s:%zu: %s.%.100s: unknown field (expected quality, cost_usd, "
                              "latency_ms or response)",
                              c->name, line, where, f->string);
        for (const cJSON *g = o->child; g != f; g = g->next)
            if (strcmp(g->string, f->string) == 0)
                return dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: %s.%s: given twice", c->name,
                                  line, where, f->string);
    }
    bool has_q = false;
    int rc = get_number(c, line, o, where, "quality", true, 0.0, 1.0, &out->quality, &has_q);
    if (rc == DYNRAG_OK)
        rc = get_number(c, line, o, where, "cost_usd", false, 0.0, 1e12, &out->cost_usd,
                        &out->has_cost);
    if (rc == DYNRAG_OK)
        rc = get_number(c, line, o, where, "latency_ms", false, 0.0, 1e12, &out->latency_ms,
                        &out->has_latency);
    if (rc != DYNRAG_OK)
        return rc;
    const cJSON *resp = cJSON_GetObjectItemCaseSensitive(o, "response");
    if (resp != NULL && !cJSON_IsNull(resp)) {
        char field[340];
        snprintf(field, sizeof(field), "%s.response", where);
        if (!cJSON_IsString(resp) || resp->valuestring == NULL)
            return dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: %s: not a string", c->name, line,
                              field);
        rc = check_string(c, line, field, resp->valuestring, had_nul);
        if (rc != DYNRAG_OK)
            return rc;
        out->response = dr_strdup(resp->valuestring);
        if (out->response == NULL)
            return dr_err_set(c->err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    out->present = true;
    return DYNRAG_OK;
}

/* Parses one non-blank line (a NUL-terminated copy) and appends its row. */
static int parse_row(parse_ctx *c, size_t line, const char *text, bool had_nul)
{
    dr_outcome_table *t = c->t;
    int rc = DYNRAG_OK;
    cJSON *obj = cJSON_ParseWithOpts(text, NULL, 1); /* no trailing garbage */
    if (obj == NULL)
        return dr_err_set(c->err, DYNRAG_ERR_PARSE, "%s:%zu: malformed JSON", c->name, line);
    if (!cJSON_IsObject(obj)) {
        rc = dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: expected a JSON object", c->name, line);
        goto cleanup;
    }
    for (const cJSON *f = obj->child; f != NULL; f = f->next) {
        if (!known_key(f->string, row_keys, DR_ARRAY_LEN(row_keys))) {
            rc = dr_err_set(c->err, DYNRAG_ERR_FORMAT,
                            "%s:%zu: %.100s: unknown field (expected id, query, task or "
                            "outcomes)",
                            c->name, line, f->string);
            goto cleanup;
        }
        for (const cJSON *g = obj->child; g != f; g = g->next)
            if (strcmp(g->string, f->string) == 0) {
                rc = dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: %s: given twice", c->name, line,
                                f->string);
                goto cleanup;
            }
    }
    if (t->n_rows >= c->rows_alloc) {
        size_t na = c->rows_alloc ? c->rows_alloc * 2 : 256;
        dr_outcome_row *rows = dr_realloc(t->rows, na * sizeof(*rows));
        if (rows == NULL) {
            rc = dr_err_set(c->err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        t->rows = rows;
        size_t *lines = dr_realloc(c->row_line, na * sizeof(*lines));
        if (lines == NULL) {
            rc = dr_err_set(c->err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        c->row_line = lines;
        c->rows_alloc = na;
    }
    /* The row joins the table at once (zeroed), so the table's destructor
     * owns whatever the parse below allocates, even on failure. */
    dr_outcome_row *row = &t->rows[t->n_rows];
    memset(row, 0, sizeof(*row));
    c->row_line[t->n_rows] = line;
    t->n_rows++;
    if (t->n_options > 0) {
        row->o = dr_calloc(t->n_options, sizeof(*row->o));
        if (row->o == NULL) {
            rc = dr_err_set(c->err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
    }
    rc = get_string(c, line, obj, "id", true, true, had_nul, &row->id);
    if (rc == DYNRAG_OK)
        rc = get_string(c, line, obj, "query", true, true, had_nul, &row->query);
    if (rc == DYNRAG_OK)
        rc = get_string(c, line, obj, "task", false, true, had_nul, &row->task);
    if (rc != DYNRAG_OK)
        goto cleanup;
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(obj, "outcomes");
    if (outs == NULL) {
        rc = dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: outcomes: missing", c->name, line);
        goto cleanup;
    }
    if (!cJSON_IsObject(outs)) {
        rc =
            dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: outcomes: not an object", c->name, line);
        goto cleanup;
    }
    if (outs->child == NULL) {
        rc = dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: outcomes: no option", c->name, line);
        goto cleanup;
    }
    for (const cJSON *o = outs->child; o != NULL; o = o->next) {
        if (o->string == NULL || o->string[0] == '\0') {
            rc = dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: outcomes: empty option name",
                            c->name, line);
            goto cleanup;
        }
        rc = check_string(c, line, "outcomes (option name)", o->string, had_nul);
        if (rc != DYNRAG_OK)
            goto cleanup;
        int k = option_index(c, line, o->string);
        if (k < 0) {
            rc = k;
            goto cleanup;
        }
        if (row->o == NULL) { /* the first option of the first row */
            row->o = dr_calloc(t->n_options, sizeof(*row->o));
            if (row->o == NULL) {
                rc = dr_err_set(c->err, DYNRAG_ERR_NOMEM, "out of memory");
                goto cleanup;
            }
        }
        if (row->o[k].present) {
            rc = dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: outcomes.%.300s: given twice",
                            c->name, line, o->string);
            goto cleanup;
        }
        rc = parse_outcome(c, line, o->string, o, had_nul, &row->o[k]);
        if (rc != DYNRAG_OK)
            goto cleanup;
    }
    if (had_nul) /* the NUL escape was in a key or an ignored place */
        rc = dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: a string contains a NUL character",
                        c->name, line);
cleanup:
    cJSON_Delete(obj);
    return rc;
}

/* A row's id with its index, sorted by id then index. */
typedef struct id_ref {
    const char *id;
    size_t idx;
} id_ref;

static int cmp_id_ref(const void *a, const void *b)
{
    const id_ref *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    if (c != 0)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Rejects a repeated id, naming the earliest repeating line and the line of
 * the id's first occurrence. */
static int check_unique_ids(parse_ctx *c)
{
    dr_outcome_table *t = c->t;
    if (t->n_rows < 2)
        return DYNRAG_OK;
    id_ref *idx = dr_malloc(t->n_rows * sizeof(*idx));
    if (idx == NULL)
        return dr_err_set(c->err, DYNRAG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < t->n_rows; i++)
        idx[i] = (id_ref){t->rows[i].id, i};
    qsort(idx, t->n_rows, sizeof(*idx), cmp_id_ref);
    size_t bad = SIZE_MAX, first = 0, run_start = 0;
    for (size_t i = 1; i < t->n_rows; i++) {
        if (strcmp(idx[i].id, idx[i - 1].id) != 0) {
            run_start = i;
            continue;
        }
        if (idx[i].idx < bad) {
            bad = idx[i].idx;
            first = idx[run_start].idx;
        }
    }
    int rc = DYNRAG_OK;
    if (bad != SIZE_MAX)
        rc = dr_err_set(c->err, DYNRAG_ERR_FORMAT, "%s:%zu: id: \"%.200s\" repeats line %zu",
                        c->name, c->row_line[bad], t->rows[bad].id, c->row_line[first]);
    dr_free(idx);
    return rc;
}

int dr_outcomes_parse(const char *name, const char *data, size_t len, dr_outcome_table *t,
                      dynrag_error *err)
{
    memset(t, 0, sizeof(*t));
    parse_ctx c = {.name = name, .t = t, .err = err};
    int rc = DYNRAG_OK;
    size_t line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *p = data + pos;
        const char *nl = memchr(p, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - p) : len - pos;
        pos += n + (nl ? 1 : 0);
        line++;
        if (n > DR_OUTCOMES_MAX_LINE) {
            rc = dr_err_set(err, DYNRAG_ERR_LIMIT, "%s:%zu: line longer than %zu bytes", name, line,
                            DR_OUTCOMES_MAX_LINE);
            goto cleanup;
        }
        if (memchr(p, '\0', n) != NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: contains a NUL byte", name, line);
            goto cleanup;
        }
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'))
            k++;
        if (k == n)
            continue; /* blank line */
        bool had_nul = false;
        char *text = copy_line(p, n, &had_nul);
        if (text == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        rc = parse_row(&c, line, text, had_nul);
        dr_free(text);
        if (rc != DYNRAG_OK)
            goto cleanup;
    }
    if (t->n_rows == 0) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: no rows", name);
        goto cleanup;
    }
    rc = check_unique_ids(&c);
cleanup:
    dr_free(c.row_line);
    if (rc != DYNRAG_OK)
        dr_outcomes_free(t);
    return rc;
}

int dr_outcomes_load(const char *path, dr_outcome_table *t, dynrag_error *err)
{
    memset(t, 0, sizeof(*t));
    char *data = NULL;
    size_t len = 0;
    int rc = dr_read_file(path, DR_OUTCOMES_MAX_FILE, &data, &len, err);
    if (rc != DYNRAG_OK)
        return rc;
    rc = dr_outcomes_parse(path, data, len, t, err);
    dr_free(data);
    return rc;
}

int dr_outcomes_put_number(dr_buf *b, double v)
{
    char tmp[40];
    snprintf(tmp, sizeof(tmp), "%.15g", v);
    if (strtod(tmp, NULL) != v)
        snprintf(tmp, sizeof(tmp), "%.17g", v);
    return dr_buf_puts(b, tmp);
}

/* Appends ,"key":number (reading back equal). */
static int put_number(dr_buf *b, const char *key, double v)
{
    int rc = dr_buf_printf(b, ",\"%s\":", key);
    return rc ? rc : dr_outcomes_put_number(b, v);
}

int dr_outcomes_write_row(const dr_outcome_table *t, const dr_outcome_row *row, dr_buf *b)
{
    size_t start = b->len;
    int rc = dr_buf_puts(b, "{\"id\":");
    if (rc == DYNRAG_OK)
        rc = dr_buf_json_str(b, row->id);
    if (rc == DYNRAG_OK)
        rc = dr_buf_puts(b, ",\"query\":");
    if (rc == DYNRAG_OK)
        rc = dr_buf_json_str(b, row->query);
    if (rc == DYNRAG_OK && row->task != NULL) {
        rc = dr_buf_puts(b, ",\"task\":");
        if (rc == DYNRAG_OK)
            rc = dr_buf_json_str(b, row->task);
    }
    if (rc == DYNRAG_OK)
        rc = dr_buf_puts(b, ",\"outcomes\":{");
    bool first = true;
    for (size_t k = 0; rc == DYNRAG_OK && k < t->n_options; k++) {
        const dr_outcome *o = &row->o[k];
        if (!o->present)
            continue;
        if (!first)
            rc = dr_buf_putc(b, ',');
        first = false;
        if (rc == DYNRAG_OK)
            rc = dr_buf_json_str(b, t->options[k]);
        if (rc == DYNRAG_OK)
            rc = dr_buf_puts(b, ":{\"quality\":");
        if (rc == DYNRAG_OK)
            rc = dr_outcomes_put_number(b, o->quality);
        if (rc == DYNRAG_OK && o->has_cost)
            rc = put_number(b, "cost_usd", o->cost_usd);
        if (rc == DYNRAG_OK && o->has_latency)
            rc = put_number(b, "latency_ms", o->latency_ms);
        if (rc == DYNRAG_OK && o->response != NULL) {
            rc = dr_buf_puts(b, ",\"response\":");
            if (rc == DYNRAG_OK)
                rc = dr_buf_json_str(b, o->response);
        }
        if (rc == DYNRAG_OK)
            rc = dr_buf_putc(b, '}');
    }
    if (rc == DYNRAG_OK)
        rc = dr_buf_puts(b, "}}\n");
    if (rc != DYNRAG_OK && b->data != NULL) { /* leave b as it was */
        b->len = start;
        b->data[start] = '\0';
    }
    return rc;
}

int dr_outcomes_merge(dr_outcome_table *dst, dr_outcome_table *src, const char *src_name,
                      dynrag_error *err)
{
    int rc = DYNRAG_OK;
    int *map = NULL;
    id_ref *ids = NULL;
    size_t n_new = 0;
    for (size_t k = 0; k < src->n_options; k++)
        n_new += dr_outcomes_option(dst, src->options[k]) < 0;
    if (dst->n_options + n_new > DR_OUTCOMES_MAX_OPTIONS)
        return dr_err_set(err, DYNRAG_ERR_LIMIT, "%s: more than %d options in all", src_name,
                          DR_OUTCOMES_MAX_OPTIONS);
    /* Ids must stay unique: sort dst's ids and look each of src's up. */
    if (dst->n_rows > 0) {
        ids = dr_malloc(dst->n_rows * sizeof(*ids));
        if (ids == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < dst->n_rows; i++)
            ids[i] = (id_ref){dst->rows[i].id, i};
        qsort(ids, dst->n_rows, sizeof(*ids), cmp_id_ref);
        for (size_t i = 0; i < src->n_rows; i++) {
            id_ref key = {src->rows[i].id, 0};
            size_t lo = 0, hi = dst->n_rows;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(ids[mid].id, key.id) < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < dst->n_rows && strcmp(ids[lo].id, key.id) == 0) {
                rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: id \"%.200s\" is already in the table",
                                src_name, key.id);
                goto cleanup;
            }
        }
    }
    size_t n_opt = dst->n_options + n_new;
    char **opts = dr_realloc(dst->options, (n_opt ? n_opt : 1) * sizeof(*opts));
    dr_outcome_row *rows = dr_realloc(dst->rows, (dst->n_rows + src->n_rows + 1) * sizeof(*rows));
    if (opts != NULL)
        dst->options = opts;
    if (rows != NULL)
        dst->rows = rows;
    map = dr_malloc((src->n_options + 1) * sizeof(*map));
    if (opts == NULL || rows == NULL || map == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    /* Widen dst's rows before adding the names, so a failure keeps it valid. */
    for (size_t r = 0; r < dst->n_rows && n_new > 0; r++) {
        dr_outcome *o = dr_realloc(dst->rows[r].o, n_opt * sizeof(*o));
        if (o == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        memset(o + dst->n_options, 0, n_new * sizeof(*o));
        dst->rows[r].o = o;
    }
    /* New rows' outcome arrays, allocated before anything moves. */
    dr_outcome **fresh = dr_calloc(src->n_rows + 1, sizeof(*fresh));
    if (fresh == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t r = 0; r < src->n_rows; r++)
        if ((fresh[r] = dr_calloc(n_opt ? n_opt : 1, sizeof(dr_outcome))) == NULL) {
            for (size_t j = 0; j < r; j++)
                dr_free(fresh[j]);
            dr_free(fresh);
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
    /* From here nothing fails. */
    for (size_t k = 0; k < src->n_options; k++) {
        int d = dr_outcomes_option(dst, src->options[k]);
        if (d < 0) {
            dst->options[dst->n_options] = src->options[k];
            src->options[k] = NULL;
            d = (int)dst->n_options++;
        }
        map[k] = d;
    }
    for (size_t r = 0; r < src->n_rows; r++) {
        dr_outcome_row *sr = &src->rows[r], *dr = &dst->rows[dst->n_rows++];
        *dr = *sr;
        dr->o = fresh[r];
        for (size_t k = 0; k < src->n_options; k++)
            dr->o[map[k]] = sr->o[k];
        dr_free(sr->o);
    }
    dr_free(fresh);
    for (size_t k = 0; k < src->n_options; k++)
        dr_free(src->options[k]);
    dr_free(src->options);
    dr_free(src->rows);
    memset(src, 0, sizeof(*src));
cleanup:
    dr_free(map);
    dr_free(ids);
    return rc;
}
