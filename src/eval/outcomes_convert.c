/*
 * outcomes_convert.c - RouterDC JSON and RouterBench CSV files to outcome
 * tables (include/dynrag/outcomes.h, docs/outcomes.md).
 *
 * Both converters build the JSONL text in memory, check it with the table
 * reader (so a converter can never write a file the reader rejects) and
 * write it atomically.
 */
#include "core/util.h"
#include "dynrag/outcomes.h"
#include "eval/outcomes.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_INPUT ((size_t)1 << 30)

/* Checks the JSONL text with the reader and writes it to out_path. */
static int check_and_write(const char *in_path, const char *out_path, const dr_buf *b,
                           dynrag_error *err)
{
    dr_outcome_table t;
    char name[512];
    snprintf(name, sizeof(name), "%.240s (converted from %.240s)", out_path, in_path);
    int rc = dr_outcomes_parse(name, b->data ? b->data : "", b->len, &t, err);
    if (rc != DYNRAG_OK)
        return rc;
    dr_outcomes_free(&t);
    return dr_write_file_atomic(out_path, b->data ? b->data : "", b->len, err);
}

/* ---- RouterDC ------------------------------------------------------------ */

/* The task name of a RouterDC file: base name without extension and a
 * trailing _train/-train/_test/-test. Fails when nothing is left. */
static int routerdc_task(const char *path, char *task, size_t size, dynrag_error *err)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot != NULL && dot != base)
        n = (size_t)(dot - base);
    static const char *const suffixes[] = {"_train", "-train", "_test", "-test"};
    for (size_t i = 0; i < DR_ARRAY_LEN(suffixes); i++) {
        size_t sl = strlen(suffixes[i]);
        if (n >= sl && strncasecmp(base + n - sl, suffixes[i], sl) == 0) {
            n -= sl;
            break;
        }
    }
    if (n == 0 || n >= size)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "%s: cannot take a task name from the file name",
                          path);
    memcpy(task, base, n);
    task[n] = '\0';
    return DYNRAG_OK;
}

/* True when the task's scores are fractions of samples (RouterDC's
 * evaluation: gsm8k, humaneval, mbpp and javascript). */
static bool routerdc_fractional(const char *task)
{
    static const char *const frac[] = {"gsm8k", "humaneval", "mbpp", "javascript"};
    char low[64];
    size_t n = 0;
    for (; task[n] && n + 1 < sizeof(low); n++)
        low[n] = (char)tolower((unsigned char)task[n]);
    low[n] = '\0';
    for (size_t i = 0; i < DR_ARRAY_LEN(frac); i++)
        if (strstr(low, frac[i]) != NULL)
            return true;
    return false;
}

int dynrag_convert_routerdc(const char *in_path, const char *out_path, dynrag_convert_stats *stats,
                            dynrag_error *err)
{
    dynrag_convert_stats st = {0};
    char *data = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    dr_buf b = {0};
    dr_outcome_table opts = {0}; /* only for the option union */
    int rc = routerdc_task(in_path, st.task, sizeof(st.task), err);
    if (rc != DYNRAG_OK)
        return rc;
    st.fractional = routerdc_fractional(st.task);
    if ((rc = dr_read_file(in_path, MAX_INPUT, &data, &len, err)) != DYNRAG_OK)
        goto cleanup;
    if (memchr(data, '\0', len) != NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: contains a NUL byte", in_path);
        goto cleanup;
    }
    /* len + 1: cJSON checks for the terminating NUL inside the length. */
    root = cJSON_ParseWithLengthOpts(data, len + 1, NULL, 1);
    if (root == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_PARSE, "%s: malformed JSON", in_path);
        goto cleanup;
    }
    if (!cJSON_IsArray(root)) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: expected a JSON array of records", in_path);
        goto cleanup;
    }
    size_t idx = 0;
    const cJSON *rec;
    cJSON_ArrayForEach(rec, root)
    {
        st.rows_read++;
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(rec, "question");
        const cJSON *scores = cJSON_GetObjectItemCaseSensitive(rec, "scores");
        if (!cJSON_IsObject(rec)) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: [%zu]: not an object", in_path, idx);
            goto cleanup;
        }
        if (!cJSON_IsString(q) || q->valuestring == NULL || q->valuestring[0] == '\0') {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                            "%s: [%zu].question: missing or not a non-empty string", in_path, idx);
            goto cleanup;
        }
        if (!cJSON_IsObject(scores) || scores->child == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                            "%s: [%zu].scores: missing or not a non-empty object", in_path, idx);
            goto cleanup;
        }
        char id[128];
        snprintf(id, sizeof(id), "%s-%zu", st.task, idx);
        rc = dr_buf_puts(&b, "{\"id\":");
        rc = rc ? rc : dr_buf_json_str(&b, id);
        rc = rc ? rc : dr_buf_puts(&b, ",\"query\":");
        rc = rc ? rc : dr_buf_json_str(&b, q->valuestring);
        rc = rc ? rc : dr_buf_puts(&b, ",\"task\":");
        rc = rc ? rc : dr_buf_json_str(&b, st.task);
        rc = rc ? rc : dr_buf_puts(&b, ",\"outcomes\":{");
        for (const cJSON *s = scores->child; rc == DYNRAG_OK && s != NULL; s = s->next) {
            if (!cJSON_IsNumber(s) || !isfinite(s->valuedouble)) {
                rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: [%zu].scores.%.200s: not a number",
                                in_path, idx, s->string);
                goto cleanup;
            }
            double v = s->valuedouble, quality = v > 0 ? 1.0 : 0.0;
            if (st.fractional) {
                if (v < 0 || v > 1) {
                    rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                                    "%s: [%zu].scores.%.200s: %g is not a fraction in [0, 1] "
                                    "(%s scores are fractions of samples)",
                                    in_path, idx, s->string, v, st.task);
                    goto cleanup;
                }
                quality = v;
            }
            if (dr_outcomes_option(&opts, s->string) < 0) {
                char **o = dr_realloc(opts.options, (opts.n_options + 1) * sizeof(*o));
                if (o == NULL || (o[opts.n_options] = dr_strdup(s->string)) == NULL) {
                    if (o != NULL)
                        opts.options = o;
                    rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                    goto cleanup;
                }
                opts.options = o;
                opts.n_options++;
            }
            if (s != scores->child)
                rc = dr_buf_putc(&b, ',');
            rc = rc ? rc : dr_buf_json_str(&b, s->string);
            rc = rc ? rc : dr_buf_puts(&b, ":{\"quality\":");
            rc = rc ? rc : dr_outcomes_put_number(&b, quality);
            rc = rc ? rc : dr_buf_putc(&b, '}');
        }
        rc = rc ? rc : dr_buf_puts(&b, "}}\n");
        if (rc != DYNRAG_OK) {
            rc = dr_err_set(err, rc, "%s: [%zu]: %s", in_path, idx, dynrag_strerror(rc));
            goto cleanup;
        }
        st.rows_written++;
        idx++;
    }
    if (st.rows_written == 0) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: no records", in_path);
        goto cleanup;
    }
    st.n_options = opts.n_options;
    rc = check_and_write(in_path, out_path, &b, err);
cleanup:
    if (rc == DYNRAG_OK && stats != NULL)
        *stats = st;
    dr_outcomes_free(&opts);
    cJSON_Delete(root);
    dr_buf_free(&b);
    dr_free(data);
    return rc;
}

/* ---- RouterBench (CSV) ------------------------------------------------------ */

/* An RFC 4180 reader over a buffer: one record at a time. */
typedef struct csv_reader {
    const char *path;
    const char *p, *end;
    size_t line;   /* current line (1-based) */
    dr_buf field;  /* scratch for the field being read */
    char **fields; /* the last record's fields (malloc'ed copies) */
    size_t n_fields, alloc;
} csv_reader;

static void csv_clear(csv_reader *r)
{
    for (size_t i = 0; i < r->n_fields; i++)
        dr_free(r->fields[i]);
    r->n_fields = 0;
}

static void csv_free(csv_reader *r)
{
    csv_clear(r);
    dr_free(r->fields);
    dr_buf_free(&r->field);
}

/* Ends the current field: appends a copy to the record. */
static int csv_push(csv_reader *r, dynrag_error *err)
{
    if (r->n_fields == r->alloc) {
        size_t na = r->alloc ? r->alloc * 2 : 64;
        char **f = dr_realloc(r->fields, na * sizeof(*f));
        if (f == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        r->fields = f;
        r->alloc = na;
    }
    char *copy = dr_strndup(r->field.data ? r->field.data : "", r->field.len);
    if (copy == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    r->fields[r->n_fields++] = copy;
    dr_buf_reset(&r->field);
    return DYNRAG_OK;
}

/*
 * Reads the next record into r->fields. Returns 1 when a record was read,
 * 0 at the end of the input, or a negative status (an unterminated quote,
 * a stray quote or text after a closing quote, naming the line). *start_line
 * gets the line the record begins on. A NUL byte is an error.
 */
static int csv_next(csv_reader *r, size_t *start_line, dynrag_error *err)
{
    csv_clear(r);
    dr_buf_reset(&r->field);
    if (r->p >= r->end)
        return 0;
    *start_line = r->line;
    int rc;
    for (;;) {
        /* At the start of a field. */
        if (r->p < r->end && *r->p == '"') {
            size_t qline = r->line;
            r->p++;
            for (;;) {
                if (r->p >= r->end)
                    return dr_err_set(err, DYNRAG_ERR_PARSE,
                                      "%s:%zu: quoted field not closed before the end of the file",
                                      r->path, qline);
                char c = *r->p++;
                if (c == '"') {
                    if (r->p < r->end && *r->p == '"') {
                        r->p++;
                        c = '"';
                    } else {
                        break;
                    }
                } else if (c == '\n') {
                    r->line++;
                } else if (c == '\0') {
                    return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: NUL byte", r->path, r->line);
                }
                if ((rc = dr_buf_putc(&r->field, c)) != DYNRAG_OK)
                    return dr_err_set(err, rc, "%s:%zu: %s", r->path, r->line, dynrag_strerror(rc));
            }
            if (r->p < r->end && *r->p == '\r' && r->p + 1 < r->end && r->p[1] == '\n')
                r->p++;
            if (r->p < r->end && *r->p != ',' && *r->p != '\n')
                return dr_err_set(err, DYNRAG_ERR_PARSE,
                                  "%s:%zu: text after the closing quote of field %zu", r->path,
                                  r->line, r->n_fields + 1);
        } else {
            while (r->p < r->end && *r->p != ',' && *r->p != '\n') {
                char c = *r->p++;
                if (c == '"')
                    return dr_err_set(err, DYNRAG_ERR_PARSE,
                                      "%s:%zu: quote inside unquoted field %zu", r->path, r->line,
                                      r->n_fields + 1);
                if (c == '\0')
                    return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: NUL byte", r->path, r->line);
                if (c == '\r' && (r->p >= r->end || *r->p == '\n'))
                    continue; /* CRLF */
                if ((rc = dr_buf_putc(&r->field, c)) != DYNRAG_OK)
                    return dr_err_set(err, rc, "%s:%zu: %s", r->path, r->line, dynrag_strerror(rc));
            }
        }
        if ((rc = csv_push(r, err)) != DYNRAG_OK)
            return rc;
        if (r->p >= r->end)
            return 1;
        char sep = *r->p++;
        if (sep == '\n') {
            r->line++;
            return 1;
        }
        /* sep == ',': another field follows (possibly empty at the end). */
    }
}

/* The columns of one model in the header. */
typedef struct rb_model {
    const char *name;             /* in header[] */
    size_t score, cost, response; /* column indexes; response SIZE_MAX when absent */
} rb_model;

/* True when s is empty or only blanks. */
static bool blank(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return *s == '\0';
}

/* The value of hex digit c, or -1. */
static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Reads one Python string literal ('...' or "...", no prefix) at *pp into
 * out, resolving its backslash escapes (\\ \' \" \n \t \r \a \b \f \v, \ooo,
 * \xHH, \uHHHH, \UHHHHHHHH, and a backslash before a line break; any other
 * backslash stays, as in Python). Returns 1 and advances *pp past the
 * closing quote; 0 when the text is not such a literal or decodes to NUL or
 * a surrogate; DYNRAG_ERR_LIMIT or NOMEM from the buffer.
 */
static int pystr_read(const char **pp, dr_buf *out)
{
    const char *p = *pp;
    char q = *p;
    if (q != '\'' && q != '"')
        return 0;
    p++;
    while (*p != q) {
        if (*p == '\0' || *p == '\n')
            return 0;
        if (*p != '\\') {
            const char *run = p;
            while (*p != '\0' && *p != '\n' && *p != '\\' && *p != q)
                p++;
            int rc = dr_buf_append(out, run, (size_t)(p - run));
            if (rc != DYNRAG_OK)
                return rc;
            continue;
        }
        p++; /* the escape */
        uint32_t cp = 0;
        int digits = 0;
        switch (*p) {
        case '\\':
        case '\'':
        case '"': cp = (unsigned char)*p; break;
        case 'n': cp = '\n'; break;
        case 't': cp = '\t'; break;
        case 'r': cp = '\r'; break;
        case 'a': cp = 7; break;
        case 'b': cp = 8; break;
        case 'f': cp = 12; break;
        case 'v': cp = 11; break;
        case '\n': p++; continue; /* a line continuation */
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (*p >= '0' && *p <= '7') {
                cp = 0;
                for (int k = 0; k < 3 && *p >= '0' && *p <= '7'; k++)
                    cp = cp * 8 + (uint32_t)(*p++ - '0');
                p--;
                break;
            }
            if (*p == '\0')
                return 0;
            { /* not an escape: the backslash stays */
                int rc = dr_buf_putc(out, '\\');
                if (rc != DYNRAG_OK)
                    return rc;
            }
            continue;
        }
        if (digits > 0) {
            cp = 0;
            for (int k = 0; k < digits; k++) {
                int h = hexval((unsigned char)p[1 + k]);
                if (h < 0)
                    return 0;
                cp = cp * 16 + (uint32_t)h;
            }
            p += digits;
        }
        if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        char u8[4];
        int rc = dr_buf_append(out, u8, dr_utf8_encode(cp, u8));
        if (rc != DYNRAG_OK)
            return rc;
        p++;
    }
    *pp = p + 1;
    return 1;
}

/*
 * RouterBench stores each model's answer as a Python list literal of
 * strings (`['C\n']`). When s is exactly such a literal (white space around
 * the tokens allowed, a trailing comma too), out gets its strings, escapes
 * resolved, joined by line breaks, and the result is 1; else 0 and out is
 * left as it was (the caller keeps s verbatim). Negative: out of memory.
 */
static int pylist_strings(const char *s, dr_buf *out)
{
    size_t mark = out->len;
    const char *p = s;
    while (isspace((unsigned char)*p))
        p++;
    if (*p++ != '[')
        return 0;
    int rc = 1;
    bool first = true;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == ']')
            break;
        if (!first) {
            rc = dr_buf_putc(out, '\n');
            if (rc != DYNRAG_OK)
                break;
        }
        rc = pystr_read(&p, out);
        if (rc != 1)
            break;
        first = false;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == ',')
            p++;
        else if (*p != ']') {
            rc = 0;
            break;
        }
    }
    if (rc == 1) {
        p++; /* the ']' */
        while (isspace((unsigned char)*p))
            p++;
        if (*p != '\0')
            rc = 0;
    }
    if (rc == 1 && !dr_utf8_valid(out->data + mark, out->len - mark, NULL))
        rc = 0;
    if (rc != 1) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
    }
    return rc < 0 ? rc : rc == 1;
}

int dynrag_convert_routerbench(const char *in_path, const char *out_path,
                               dynrag_convert_stats *stats, dynrag_error *err)
{
    dynrag_convert_stats st = {0};
    char *data = NULL;
    size_t len = 0;
    char **header = NULL;
    size_t n_header = 0;
    rb_model *models = NULL;
    dr_buf b = {0}, answer = {0};
    csv_reader r = {.path = in_path, .line = 1};
    int rc = dr_read_file(in_path, MAX_INPUT, &data, &len, err);
    if (rc != DYNRAG_OK)
        return rc;
    r.p = data;
    r.end = data + len;
    size_t line = 0;
    rc = csv_next(&r, &line, err);
    if (rc <= 0) {
        if (rc == 0)
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: empty file", in_path);
        goto cleanup;
    }
    /* Take the header over. */
    header = r.fields;
    n_header = r.n_fields;
    r.fields = NULL;
    r.n_fields = r.alloc = 0;
    size_t c_id = SIZE_MAX, c_prompt = SIZE_MAX, c_task = SIZE_MAX;
    for (size_t i = 0; i < n_header; i++) {
        if (strcmp(header[i], "sample_id") == 0)
            c_id = i;
        else if (strcmp(header[i], "prompt") == 0)
            c_prompt = i;
        else if (strcmp(header[i], "eval_name") == 0)
            c_task = i;
    }
    if (c_id == SIZE_MAX || c_prompt == SIZE_MAX) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:1: header: needs columns sample_id and prompt",
                        in_path);
        goto cleanup;
    }
    models = dr_calloc(n_header, sizeof(*models));
    if (models == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n_header; i++) {
        size_t cost = SIZE_MAX, resp = SIZE_MAX, hl = strlen(header[i]);
        if (hl == 0 || strchr(header[i], '|') != NULL)
            continue;
        for (size_t j = 0; j < n_header; j++) {
            if (strncmp(header[j], header[i], hl) != 0 || header[j][hl] != '|')
                continue;
            if (strcmp(header[j] + hl, "|total_cost") == 0)
                cost = j;
            else if (strcmp(header[j] + hl, "|model_response") == 0)
                resp = j;
        }
        if (cost == SIZE_MAX)
            continue;
        models[st.n_options++] = (rb_model){header[i], i, cost, resp};
    }
    if (st.n_options == 0) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                        "%s:1: header: no model columns (a column X with a column X|total_cost)",
                        in_path);
        goto cleanup;
    }
    while ((rc = csv_next(&r, &line, err)) == 1) {
        if (r.n_fields == 1 && blank(r.fields[0]))
            continue; /* a blank line */
        st.rows_read++;
        if (r.n_fields != n_header) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: %zu fields, the header has %zu",
                            in_path, line, r.n_fields, n_header);
            goto cleanup;
        }
        bool missing = false;
        for (size_t m = 0; m < st.n_options; m++)
            missing = missing || blank(r.fields[models[m].score]);
        if (missing) {
            st.rows_dropped++;
            continue;
        }
        if (blank(r.fields[c_id]) || r.fields[c_prompt][0] == '\0') {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: %s: empty", in_path, line,
                            blank(r.fields[c_id]) ? "sample_id" : "prompt");
            goto cleanup;
        }
        rc = dr_buf_puts(&b, "{\"id\":");
        rc = rc ? rc : dr_buf_json_str(&b, r.fields[c_id]);
        rc = rc ? rc : dr_buf_puts(&b, ",\"query\":");
        rc = rc ? rc : dr_buf_json_str(&b, r.fields[c_prompt]);
        if (c_task != SIZE_MAX && !blank(r.fields[c_task])) {
            rc = rc ? rc : dr_buf_puts(&b, ",\"task\":");
            rc = rc ? rc : dr_buf_json_str(&b, r.fields[c_task]);
        }
        rc = rc ? rc : dr_buf_puts(&b, ",\"outcomes\":{");
        for (size_t m = 0; rc == DYNRAG_OK && m < st.n_options; m++) {
            const rb_model *md = &models[m];
            double q = 0, cost = 0;
            if (dr_parse_double(r.fields[md->score], 0.0, 1.0, &q) != DYNRAG_OK) {
                rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                                "%s:%zu: %s: '%.40s' is not a score in [0, 1]", in_path, line,
                                md->name, r.fields[md->score]);
                goto cleanup;
            }
            bool has_cost = !blank(r.fields[md->cost]);
            if (has_cost && dr_parse_double(r.fields[md->cost], 0.0, 1e12, &cost) != DYNRAG_OK) {
                rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s:%zu: %s: '%.40s' is not a cost >= 0",
                                in_path, line, header[md->cost], r.fields[md->cost]);
                goto cleanup;
            }
            if (m > 0)
                rc = dr_buf_putc(&b, ',');
            rc = rc ? rc : dr_buf_json_str(&b, md->name);
            rc = rc ? rc : dr_buf_puts(&b, ":{\"quality\":");
            rc = rc ? rc : dr_outcomes_put_number(&b, q);
            if (has_cost) {
                rc = rc ? rc : dr_buf_puts(&b, ",\"cost_usd\":");
                rc = rc ? rc : dr_outcomes_put_number(&b, cost);
            }
            if (md->response != SIZE_MAX) {
                rc = rc ? rc : dr_buf_puts(&b, ",\"response\":");
                if (rc == DYNRAG_OK) {
                    dr_buf_reset(&answer);
                    int d = pylist_strings(r.fields[md->response], &answer);
                    if (d < 0)
                        rc = d;
                    else
                        rc = dr_buf_json_str(&b, d ? (answer.data ? answer.data : "")
                                                   : r.fields[md->response]);
                }
            }
            rc = rc ? rc : dr_buf_putc(&b, '}');
        }
        rc = rc ? rc : dr_buf_puts(&b, "}}\n");
        if (rc != DYNRAG_OK) {
            rc = dr_err_set(err, rc, "%s:%zu: %s", in_path, line, dynrag_strerror(rc));
            goto cleanup;
        }
        st.rows_written++;
    }
    if (rc < 0)
        goto cleanup;
    if (st.rows_written == 0) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: no complete rows", in_path);
        goto cleanup;
    }
    rc = check_and_write(in_path, out_path, &b, err);
cleanup:
    if (rc == DYNRAG_OK && stats != NULL)
        *stats = st;
    if (rc > 0)
        rc = DYNRAG_OK;
    for (size_t i = 0; i < n_header; i++)
        dr_free(header[i]);
    dr_free(header);
    dr_free(models);
    csv_free(&r);
    dr_buf_free(&b);
    dr_buf_free(&answer);
    dr_free(data);
    return rc;
}
