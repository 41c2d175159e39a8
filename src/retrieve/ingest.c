/* ingest.c - JSONL, folder and file readers for indexing. */
#define _GNU_SOURCE
#include "retrieve/ingest.h"

#include "core/jsonb.h"
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

/* What a raw scan of one JSONL line finds that cJSON does not say: an
 * escaped NUL (cJSON would cut the string there) and the exact source text
 * of a numeric "_id"/"id" (cJSON keeps a double, exact only to 2^53). */
typedef struct line_scan {
    char nul_field[48];    /* top-level key whose string has a \u0000, or "" */
    const char *num_id[2]; /* raw number text of "_id" [0] and "id" [1] */
    size_t num_id_len[2];
} line_scan;

static bool used_field(const char *key, size_t n)
{
    static const char *const used[] = {"_id", "id", "text", "contents", "title"};
    for (size_t i = 0; i < DR_ARRAY_LEN(used); i++)
        if (strlen(used[i]) == n && memcmp(used[i], key, n) == 0)
            return true;
    return false;
}

/*
 * Scans the JSON text s[0..n) (already known to parse) for top-level keys:
 * records in sc the first field used for indexing whose string value holds
 * an escaped NUL, and the raw text of the first "_id" and "id" values that
 * are numbers. Nested values are skipped over.
 */
static void scan_line(const char *s, size_t n, line_scan *sc)
{
    memset(sc, 0, sizeof(*sc));
    int depth = 0;
    bool expect_key = false; /* at depth 1: the next string is a key */
    const char *key = NULL;  /* the current top-level key */
    size_t key_len = 0;
    bool after_colon = false; /* at depth 1, between ':' and the value */
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '"') {
            size_t start = ++i;
            bool nul = false;
            while (i < n && s[i] != '"') {
                if (s[i] == '\\' && i + 1 < n) {
                    if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0)
                        nul = true;
                    i++;
                }
                i++;
            }
            if (depth == 1 && expect_key) {
                key = s + start;
                key_len = i - start;
                expect_key = false;
            } else if (nul && depth >= 1 && key != NULL && sc->nul_field[0] == '\0' &&
                       used_field(key, key_len)) {
                snprintf(sc->nul_field, sizeof(sc->nul_field), "%.*s", (int)key_len, key);
            }
            after_colon = false;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
            expect_key = depth == 1 && c == '{';
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',' && depth == 1) {
            expect_key = true;
        } else if (c == ':' && depth == 1) {
            after_colon = true;
        } else if (depth == 1 && after_colon && (c == '-' || (c >= '0' && c <= '9'))) {
            size_t start = i;
            while (i + 1 < n && strchr("+-.eE0123456789", s[i + 1]) != NULL)
                i++;
            int which = key_len == 3 && memcmp(key, "_id", 3) == 0  ? 0
                        : key_len == 2 && memcmp(key, "id", 2) == 0 ? 1
                                                                    : -1;
            if (which >= 0 && sc->num_id[which] == NULL) {
                sc->num_id[which] = s + start;
                sc->num_id_len[which] = i + 1 - start;
            }
            after_colon = false;
        } else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            after_colon = false;
        }
    }
}

/* True when s[0..n) is a JSON integer literal: -?(0|[1-9][0-9]*). */
static bool integer_literal(const char *s, size_t n)
{
    size_t i = n > 0 && s[0] == '-' ? 1 : 0;
    if (i == n || n > 40)
        return false;
    if (s[i] == '0')
        return i + 1 == n;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int jsonl_line(const char *path, long lineno, const char *line, size_t len, bool skip_bad,
                      dr_doc_fn fn, void *user, uint64_t *bad, dynrag_error *err)
{
    /* a raw NUL byte is not JSON (control characters must be escaped), and
     * cJSON would cut the string holding it: refused, never truncated */
    const char *raw_nul = memchr(line, '\0', len);
    unsigned long failed = dr_alloc_failures();
    char why[128] = "";
    cJSON *obj = raw_nul ? NULL : dr_json_parse_line(line, len, why, sizeof(why));
    char *id = NULL, *title = NULL, *text = NULL;
    char numbuf[48];
    int rc = DYNRAG_OK;
    if (raw_nul != NULL) {
        char what[96];
        snprintf(what, sizeof(what), "raw NUL byte at column %zu: %%s",
                 (size_t)(raw_nul - line) + 1);
        rc = bad_input(skip_bad, bad, err, path, lineno, what,
                       "not valid JSON (control characters must be escaped)");
        goto cleanup;
    }
    if (obj == NULL && (dr_alloc_failures() != failed || why[0] == '\0')) {
        /* never skipped as a bad line: the line is not at fault */
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "%s:%ld: out of memory", path, lineno);
        goto cleanup;
    }
    if (obj == NULL) {
        rc = bad_input(skip_bad, bad, err, path, lineno, "%s", why);
        goto cleanup;
    }
    if (!cJSON_IsObject(obj)) {
        rc = bad_input(skip_bad, bad, err, path, lineno, "%s", "expected a JSON object");
        goto cleanup;
    }
    line_scan sc;
    scan_line(line, len, &sc);
    if (sc.nul_field[0] != '\0') {
        char what[128];
        snprintf(what, sizeof(what), "field \"%s\": %%s", sc.nul_field);
        rc = bad_input(skip_bad, bad, err, path, lineno, what,
                       "escaped NUL (\\u0000) in a string: not supported (the text would be "
                       "cut there)");
        goto cleanup;
    }
    const cJSON *jid = field(obj, "_id", "id");
    const cJSON *jtext = field(obj, "text", "contents");
    const cJSON *jtitle = field(obj, "title", NULL);
    const char *idsrc = NULL;
    if (cJSON_IsString(jid)) {
        idsrc = jid->valuestring;
    } else if (cJSON_IsNumber(jid)) {
        /* An integer id is kept as its exact source text (a double would
         * merge ids above 2^53); other numbers are refused below. */
        int which = cJSON_GetObjectItemCaseSensitive(obj, "_id") != NULL ? 0 : 1;
        const char *raw = sc.num_id[which];
        size_t rl = sc.num_id_len[which];
        if (raw != NULL && integer_literal(raw, rl)) {
            snprintf(numbuf, sizeof(numbuf), "%.*s", (int)rl, raw);
            idsrc = numbuf;
        }
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
    dr_free(id);
    dr_free(title);
    dr_free(text);
    return rc;
}

static int read_jsonl(const char *path, bool skip_bad, dr_doc_fn fn, void *user, uint64_t *bad,
                      dynrag_error *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL && skip_bad && errno != ENOENT) {
        (*bad)++;
        dr_log(DYNRAG_LOG_WARN, "index", "%s: cannot open: %s (skipped)", path, strerror(errno));
        return DYNRAG_OK;
    }
    if (f == NULL)
        return dr_err_set(err, errno == ENOENT ? DYNRAG_ERR_NOTFOUND : DYNRAG_ERR_IO,
                          "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t alloc = 0;
    long lineno = 0;
    int rc = DYNRAG_OK;
    long long got;
    errno = 0;
    while ((got = dr_getline(&line, &alloc, f, DR_INGEST_MAX_LINE + 8)) >= 0) {
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
    if (rc == DYNRAG_OK && got == DR_LINE_NOMEM)
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "%s:%ld: out of memory", path, lineno + 1);
    else if (rc == DYNRAG_OK && got == DR_LINE_TOO_LONG)
        /* The rest of the line may never end (a device, a pipe): the file
         * stops here, as a bad line (skipped and counted with --skip-bad). */
        rc = bad_input(skip_bad, bad, err, path, lineno + 1, "%s",
                       "line longer than 64 MiB (the rest of the file is not read)");
    if (rc == DYNRAG_OK && ferror(f))
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s:%ld: read error: %s", path, lineno + 1,
                        strerror(errno));
    dr_free(line);
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
        dr_free(title);
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
    dr_free(raw);
    dr_free(clean);
    dr_free(text);
    dr_free(title);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The (device, inode) pairs a walk has visited: an open-addressing hash
 * set, so that a folder reached again through a symbolic link (`x -> .`,
 * two links to one folder) is not walked again and a file reached through
 * two paths is indexed once. */
typedef struct inode_set {
    struct inode_key {
        dev_t dev;
        ino_t ino;
        bool used;
    } * slots;
    size_t n, cap; /* cap: a power of two, or 0 */
} inode_set;

static size_t inode_hash(dev_t dev, ino_t ino, size_t cap)
{
    uint64_t h = ((uint64_t)dev * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)ino * 0xbf58476d1ce4e5b9ULL);
    h ^= h >> 31;
    return (size_t)h & (cap - 1);
}

/* Adds (dev, ino): 1 when it was new, 0 when already present, or
 * DYNRAG_ERR_NOMEM. */
static int inode_set_add(inode_set *s, dev_t dev, ino_t ino)
{
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        struct inode_key *slots = dr_calloc(cap, sizeof(*slots));
        if (slots == NULL)
            return DYNRAG_ERR_NOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slots[i].used)
                continue;
            size_t j = inode_hash(s->slots[i].dev, s->slots[i].ino, cap);
            while (slots[j].used)
                j = (j + 1) & (cap - 1);
            slots[j] = s->slots[i];
        }
        dr_free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    size_t j = inode_hash(dev, ino, s->cap);
    while (s->slots[j].used) {
        if (s->slots[j].dev == dev && s->slots[j].ino == ino)
            return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->slots[j] = (struct inode_key){dev, ino, true};
    s->n++;
    return 1;
}

typedef struct walk_ctx {
    const char *root;
    size_t root_len;
    bool skip_bad;
    dr_doc_fn fn;
    void *user;
    uint64_t *bad;
    inode_set seen; /* folders and files visited by this call */
} walk_ctx;

/* Walks folder `dir` (already added to w->seen). */
static int walk(walk_ctx *w, const char *dir, int depth, dynrag_error *err)
{
    if (depth > 64)
        return dr_err_set(err, DYNRAG_ERR_LIMIT, "%s: folders nested too deep", dir);
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (w->skip_bad) {
            (*w->bad)++;
            dr_log(DYNRAG_LOG_WARN, "index", "%s: cannot open folder: %s (skipped)", dir,
                   strerror(errno));
            return DYNRAG_OK;
        }
        return dr_err_set(err, DYNRAG_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = DYNRAG_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = dr_realloc(names, cap * sizeof(*names));
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
        bool dir_or_doc = false;
        if (stat(path, &st) != 0) {
            dr_log(DYNRAG_LOG_WARN, "index", "%s: %s (skipped)", path, strerror(errno));
        } else {
            dir_or_doc =
                S_ISDIR(st.st_mode) || (S_ISREG(st.st_mode) && type_of(names[i]) != FT_NONE);
        }
        int added = dir_or_doc ? inode_set_add(&w->seen, st.st_dev, st.st_ino) : 1;
        if (added < 0) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        } else if (added == 0) {
            dr_log(DYNRAG_LOG_INFO, "index",
                   "%s: already visited through another path (a symbolic link): skipped", path);
        } else if (!dir_or_doc) {
            /* other entries are ignored */
        } else if (S_ISDIR(st.st_mode)) {
            rc = walk(w, path, depth + 1, err);
        } else {
            const char *rel = path + w->root_len;
            while (*rel == '/')
                rel++;
            rc = read_one_file(path, rel, type_of(names[i]), w->skip_bad, w->fn, w->user, w->bad,
                               err);
        }
        dr_free(path);
    }
cleanup:
    for (size_t i = 0; i < n; i++)
        dr_free(names[i]);
    dr_free(names);
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
        walk_ctx w = {path, len, skip_bad, fn, user, bad, {NULL, 0, 0}};
        int rc = inode_set_add(&w.seen, st.st_dev, st.st_ino) < 0
                     ? dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory")
                     : walk(&w, path, 0, err);
        dr_free(w.seen.slots);
        return rc;
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
