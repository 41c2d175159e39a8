/* ingest.c - JSONL, folder and file readers for indexing. */
#define _GNU_SOURCE
#include "retrieve/ingest.h"

#include "core/util.h"
#include "retrieve/html.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

char *dr_utf8_sanitize(const char *s, size_t n)
{
    /* Valid input (the common case) is copied as is. */
    size_t bad = 0;
    if (dr_utf8_valid(s, n, &bad) && memchr(s, '\0', n) == NULL)
        return dr_strndup(s, n);
    dr_buf b = {0};
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = dr_utf8_decode(s + i, n - i, &cp);
        int rc;
        if (cp == 0)
            rc = DYNRAG_OK;
        else if (cp == 0xFFFD)
            rc = dr_buf_append(&b, "\xef\xbf\xbd", 3);
        else
            rc = dr_buf_append(&b, s + i, k);
        if (rc != DYNRAG_OK) {
            dr_buf_free(&b);
            return NULL;
        }
        i += k;
    }
    return dr_buf_take(&b);
}

/* Titles are one line: control characters become spaces, ends trimmed. */
static void one_line(char *s)
{
    for (char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    size_t len = strlen(s);
    while (len > 0 && s[len - 1] == ' ')
        s[--len] = '\0';
    size_t lead = strspn(s, " ");
    if (lead)
        memmove(s, s + lead, len - lead + 1);
}

/* A bad input: fail, or count and go on with skip_bad. */
static int bad_input(bool skip_bad, uint64_t *bad, dynrag_error *err, const char *file, long line,
                     const char *fmt, const char *detail)
{
    char msg[512];
    snprintf(msg, sizeof(msg), fmt, detail);
    if (skip_bad) {
        (*bad)++;
        if (line > 0)
            dr_log(DYNRAG_LOG_WARN, "index", "%s:%ld: %s (skipped)", file, line, msg);
        else
            dr_log(DYNRAG_LOG_WARN, "index", "%s: %s (skipped)", file, msg);
        return DYNRAG_OK;
    }
    if (line > 0)
        return dr_err_set(err, DYNRAG_ERR_PARSE, "%s:%ld: %s", file, line, msg);
    return dr_err_set(err, DYNRAG_ERR_PARSE, "%s: %s", file, msg);
}

/* ---- JSONL ------------------------------------------------------------------ */

static const cJSON *field(const cJSON *obj, const char *a, const char *b)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, a);
    if (f == NULL && b)
        f = cJSON_GetObjectItemCaseSensitive(obj, b);
    return f;
}

static int jsonl_line(const char *path, long lineno, const char *line, size_t len, bool skip_bad,
                      dr_doc_fn fn, void *user, uint64_t *bad, dynrag_error *err)
{
    cJSON *obj = cJSON_ParseWithLength(line, len);
    char *id = NULL, *title = NULL, *text = NULL;
    char numbuf[32];
    int rc = DYNRAG_OK;
    if (obj == NULL) {
        rc = bad_input(skip_bad, bad, err, path, lineno, "%s", "not valid JSON");
        goto cleanup;
    }
    if (!cJSON_IsObject(obj)) {
        rc = bad_input(skip_bad, bad, err, path, lineno, "%s", "expected a JSON object");
        goto cleanup;
    }
    const cJSON *jid = field(obj, "_id", "id");
    const cJSON *jtext = field(obj, "text", "contents");
    const cJSON *jtitle = field(obj, "title", NULL);
    const char *idsrc = NULL;
    if (cJSON_IsString(jid)) {
        idsrc = jid->valuestring;
    } else if (cJSON_IsNumber(jid) && jid->valuedouble == (double)(long long)jid->valuedouble) {
        snprintf(numbuf, sizeof(numbuf), "%lld", (long long)jid->valuedouble);
        idsrc = numbuf;
    }
    if (idsrc == NULL || idsrc[0] == '\0') {
        rc = bad_input(skip_bad, bad, err, path, lineno, "%s",
                       jid ? "\"_id\"/\"id\" must be a non-empty string or an integer"
                           : "missing \"_id\" or \"id\"");
        goto cleanup;
    }
    if (!cJSON_IsString(jtext)) {
        rc = bad_input(skip_bad, bad, err, path, lineno, "%s",
                       jtext ? "\"text\"/\"contents\" must be a string"
                             : "missing \"text\" or \"contents\"");
        goto cleanup;
    }
    if (jtitle && !cJSON_IsString(jtitle) && !cJSON_IsNull(jtitle)) {
        rc = bad_input(skip_bad, bad, err, path, lineno, "%s", "\"title\" must be a string");
        goto cleanup;
    }
    const char *ts = cJSON_IsString(jtitle) ? jtitle->valuestring : "";
    id = dr_utf8_sanitize(idsrc, strlen(idsrc));
    title = dr_utf8_sanitize(ts, strlen(ts));
    text = dr_utf8_sanitize(jtext->valuestring, strlen(jtext->valuestring));
    if (id == NULL || title == NULL || text == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "%s:%ld: out of memory", path, lineno);
        goto cleanup;
    }
    one_line(title);
    dr_doc d = {id, title, text, path, lineno};
    rc = fn(user, &d, err);
cleanup:
    cJSON_Delete(obj);
    free(id);
    free(title);
    free(text);
    return rc;
}

static int read_jsonl(const char *path, bool skip_bad, dr_doc_fn fn, void *user, uint64_t *bad,
                      dynrag_error *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return dr_err_set(err, errno == ENOENT ? DYNRAG_ERR_NOTFOUND : DYNRAG_ERR_IO,
                          "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t alloc = 0;
    long lineno = 0;
    int rc = DYNRAG_OK;
    ssize_t got;
    errno = 0;
    while ((got = getline(&line, &alloc, f)) >= 0) {
        lineno++;
        size_t len = (size_t)got;
        char *s = line;
        if (lineno == 1 && len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
            s += 3;
            len -= 3;
        }
        while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
            len--;
        size_t lead = 0;
        while (lead < len && (s[lead] == ' ' || s[lead] == '\t'))
            lead++;
        if (lead == len)
            continue;
        if (len > DR_INGEST_MAX_LINE) {
            rc = bad_input(skip_bad, bad, err, path, lineno, "%s", "line longer than 64 MiB");
        } else {
            rc = jsonl_line(path, lineno, s, len, skip_bad, fn, user, bad, err);
        }
        if (rc != DYNRAG_OK)
            break;
    }
    if (rc == DYNRAG_OK && ferror(f))
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s:%ld: read error", path, lineno + 1);
    free(line);
    fclose(f);
    return rc;
}

/* ---- files and folders --------------------------------------------------------- */

typedef enum { FT_NONE, FT_TXT, FT_MD, FT_HTML } file_type;

static file_type type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot == NULL)
        return FT_NONE;
    if (strcasecmp(dot, ".txt") == 0)
        return FT_TXT;
    if (strcasecmp(dot, ".md") == 0 || strcasecmp(dot, ".markdown") == 0)
        return FT_MD;
    if (strcasecmp(dot, ".html") == 0 || strcasecmp(dot, ".htm") == 0)
        return FT_HTML;
    return FT_NONE;
}

/* The first Markdown ATX heading ("# Title"), or NULL. Caller frees. */
static char *md_title(const char *s)
{
    const char *p = s;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        size_t h = 0;
        while (h < len && p[h] == '#')
            h++;
        if (h >= 1 && h <= 6 && h < len && (p[h] == ' ' || p[h] == '\t')) {
            size_t a = h, b = len;
            while (a < b && (p[a] == ' ' || p[a] == '\t'))
                a++;
            while (b > a && (p[b - 1] == ' ' || p[b - 1] == '#' || p[b - 1] == '\r'))
                b--;
            if (b > a)
                return dr_strndup(p + a, b - a);
        }
        if (!eol)
            break;
        p = eol + 1;
    }
    return NULL;
}

static int read_one_file(const char *path, const char *doc_id, file_type ft, bool skip_bad,
                         dr_doc_fn fn, void *user, uint64_t *bad, dynrag_error *err)
{
    char *raw = NULL, *clean = NULL, *text = NULL, *title = NULL;
    size_t len = 0;
    int rc = dr_read_file(path, DR_INGEST_MAX_FILE, &raw, &len, err);
    if (rc != DYNRAG_OK) {
        if (skip_bad && rc != DYNRAG_ERR_NOMEM) {
            (*bad)++;
            dr_log(DYNRAG_LOG_WARN, "index", "%s (skipped)", dynrag_errmsg(err));
            rc = DYNRAG_OK;
        }
        goto cleanup;
    }
    size_t off = len >= 3 && memcmp(raw, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
    clean = dr_utf8_sanitize(raw + off, len - off);
    if (clean == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    if (ft == FT_HTML) {
        rc = dr_html_to_text(clean, strlen(clean), &text, &title, err);
        if (rc != DYNRAG_OK) {
            dr_err_prefix(err, "%s", path);
            goto cleanup;
        }
    } else {
        text = clean;
        clean = NULL;
        if (ft == FT_MD)
            title = md_title(text);
    }
    if (title == NULL || title[0] == '\0') {
        free(title);
        const char *base = strrchr(path, '/');
        title = dr_strdup(base ? base + 1 : path);
        if (title == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "%s: out of memory", path);
            goto cleanup;
        }
    }
    one_line(title);
    dr_doc d = {doc_id, title, text, path, 0};
    rc = fn(user, &d, err);
cleanup:
    free(raw);
    free(clean);
    free(text);
    free(title);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct walk_ctx {
    const char *root;
    size_t root_len;
    bool skip_bad;
    dr_doc_fn fn;
    void *user;
    uint64_t *bad;
} walk_ctx;

static int walk(walk_ctx *w, const char *dir, int depth, dynrag_error *err)
{
    if (depth > 64)
        return dr_err_set(err, DYNRAG_ERR_LIMIT, "%s: folders nested too deep", dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return dr_err_set(err, DYNRAG_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = DYNRAG_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof(*names));
            if (nn == NULL) {
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                goto cleanup;
            }
            names = nn;
        }
        names[n] = dr_strdup(e->d_name);
        if (names[n] == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        n++;
    }
    if (n > 1)
        qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; i < n && rc == DYNRAG_OK; i++) {
        char *path = dr_asprintf("%s/%s", dir, names[i]);
        if (path == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            break;
        }
        struct stat st;
        if (stat(path, &st) != 0) {
            dr_log(DYNRAG_LOG_WARN, "index", "%s: %s (skipped)", path, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            rc = walk(w, path, depth + 1, err);
        } else if (S_ISREG(st.st_mode) && type_of(names[i]) != FT_NONE) {
            const char *rel = path + w->root_len;
            while (*rel == '/')
                rel++;
            rc = read_one_file(path, rel, type_of(names[i]), w->skip_bad, w->fn, w->user, w->bad,
                               err);
        }
        free(path);
    }
cleanup:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

int dr_ingest_input(const char *path, bool skip_bad, dr_doc_fn fn, void *user, uint64_t *bad,
                    dynrag_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return dr_err_set(err, errno == ENOENT ? DYNRAG_ERR_NOTFOUND : DYNRAG_ERR_IO,
                          "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        size_t len = strlen(path);
        while (len > 1 && path[len - 1] == '/')
            len--;
        walk_ctx w = {path, len, skip_bad, fn, user, bad};
        return walk(&w, path, 0, err);
    }
    const char *dot = strrchr(path, '.');
    if (dot && (strcasecmp(dot, ".jsonl") == 0 || strcasecmp(dot, ".ndjson") == 0))
        return read_jsonl(path, skip_bad, fn, user, bad, err);
    file_type ft = type_of(path);
    if (ft != FT_NONE)
        return read_one_file(path, path, ft, skip_bad, fn, user, bad, err);
    return dr_err_set(err, DYNRAG_ERR_INVALID,
                      "%s: unsupported input (expected .jsonl, .txt, .md, .html or a folder)",
                      path);
}
