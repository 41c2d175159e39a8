/* cmd_retrieve.c - `dynrag retrieve`: search an index, one query or a batch. */
#define _GNU_SOURCE
#include "cli.h"

#include "dynrag/index.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CMD "retrieve"
#define MAX_CHUNKS 10000 /* --depth bound (the library's) */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The process's CPU time (user + system) in ms. */
static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Prints the hits of one query (plain or --json). Every string from the
 * index goes through print_safe() or cli_print_json_str(). */
static void print_hits(const dynrag_hits *h, bool json)
{
    if (json) {
        printf("{\"bm25_us\":%.0f,\"dense_us\":%.0f,\"total_us\":%.0f,\"hits\":[", h->bm25_us,
               h->dense_us, h->total_us);
        for (size_t i = 0; i < h->n; i++) {
            const dynrag_hit *x = &h->hits[i];
            printf("%s{\"rank\":%zu,\"chunk_id\":%lld,\"doc_id\":", i ? "," : "", i + 1,
                   (long long)x->chunk_id);
            cli_print_json_str(stdout, x->doc_id);
            printf(",\"title\":");
            cli_print_json_str(stdout, x->title);
            printf(",\"score\":%.6g,\"start\":%lld,\"end\":%lld,\"text\":", x->score,
                   (long long)x->start, (long long)x->end);
            cli_print_json_str(stdout, x->text);
            printf("}");
        }
        printf("]}\n");
        return;
    }
    for (size_t i = 0; i < h->n; i++) {
        const dynrag_hit *x = &h->hits[i];
        const char *text = x->text ? x->text : "";
        size_t len = strlen(text);
        size_t cut = len > 160 ? 160 : len;
        while (cut < len && cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80)
            cut--; /* do not cut inside a UTF-8 sequence */
        printf("%2zu. %-10.4f ", i + 1, x->score);
        cli_puts_safe(stdout, x->doc_id);
        fputs("  ", stdout);
        cli_puts_safe(stdout, x->title);
        fputs("\n    ", stdout);
        cli_print_safe(stdout, text, cut, false);
        printf("%s\n", cut < len ? "..." : "");
    }
    if (h->n == 0)
        printf("no hits\n");
}

/* Document-level ranking (a document scores as its best chunk) of one
 * query, written as run-file lines: ids only, no chunk text is read. */
static int doc_level(dynrag_index *idx, const char *q, dynrag_search_options opt, int k,
                     const char *qid, const char *tag, FILE *out, dynrag_error *err)
{
    opt.k = k;
    opt.per_document = true;
    opt.ids_only = true;
    dynrag_hits h;
    int rc = dynrag_index_search(idx, q, &opt, &h, err);
    if (rc != DYNRAG_OK)
        return rc;
    for (size_t i = 0; i < h.n; i++) {
        const char *d = h.hits[i].doc_id ? h.hits[i].doc_id : "";
        bool bad = d[0] == '\0';
        for (const unsigned char *c = (const unsigned char *)d; *c && !bad; c++)
            bad = *c <= ' ' || *c == 0x7f;
        if (bad) {
            /* A run file's columns are split at white space: such an id
             * would shift or split the line, and trec_eval would misread
             * every later one. */
            err->status = DYNRAG_ERR_FORMAT;
            snprintf(err->msg, sizeof(err->msg),
                     "document id \"%.200s\" is empty or has white space or a control "
                     "character: a TREC run file cannot hold it (index with ids without them)",
                     d);
            dynrag_hits_free(&h);
            return DYNRAG_ERR_FORMAT;
        }
    }
    for (size_t i = 0; i < h.n; i++)
        fprintf(out, "%s Q0 %s %zu %.6f %s\n", qid, h.hits[i].doc_id, i + 1, h.hits[i].score,
                tag);
    dynrag_hits_free(&h);
    return DYNRAG_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* True when the JSON text line[0..n) has a string with an escaped NUL
 * (\u0000), which cJSON would silently cut the string at. */
static bool has_escaped_nul(const char *line, size_t n)
{
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        if (!in_str) {
            in_str = line[i] == '"';
        } else if (line[i] == '"') {
            in_str = false;
        } else if (line[i] == '\\' && i + 1 < n) {
            if (line[i + 1] == 'u' && i + 5 < n && memcmp(line + i + 2, "0000", 4) == 0)
                return true;
            i++; /* the escaped character */
        }
    }
    return false;
}

/* The query ids seen so far (to refuse a repeated id: its run lines would
 * list documents twice). Open addressing over strdup'ed ids. */
typedef struct idset {
    char **ids;
    long *lines;
    size_t n, cap; /* cap a power of two, or 0 */
} idset;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Adds id seen on line; *first_line gets the earlier line when it is
 * already there (then returns 1). 0 when added, -1 when out of memory. */
static int idset_add(idset *s, const char *id, long line, long *first_line)
{
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        char **ids = calloc(cap, sizeof(*ids));
        long *lines = calloc(cap, sizeof(*lines));
        if (ids == NULL || lines == NULL) {
            free(ids);
            free(lines);
            return -1;
        }
        for (size_t i = 0; i < s->cap; i++) {
            if (s->ids[i] == NULL)
                continue;
            size_t j = (size_t)hash_str(s->ids[i]) & (cap - 1);
            while (ids[j])
                j = (j + 1) & (cap - 1);
            ids[j] = s->ids[i];
            lines[j] = s->lines[i];
        }
        free(s->ids);
        free(s->lines);
        s->ids = ids;
        s->lines = lines;
        s->cap = cap;
    }
    size_t j = (size_t)hash_str(id) & (s->cap - 1);
    while (s->ids[j]) {
        if (strcmp(s->ids[j], id) == 0) {
            *first_line = s->lines[j];
            return 1;
        }
        j = (j + 1) & (s->cap - 1);
    }
    if ((s->ids[j] = strdup(id)) == NULL)
        return -1;
    s->lines[j] = line;
    s->n++;
    return 0;
}

static void idset_free(idset *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->ids[i]);
    free(s->ids);
    free(s->lines);
    memset(s, 0, sizeof(*s));
}

/* Checks one line of the queries file: *qid (into idbuf or the JSON tree)
 * and *text, or a reason in why. j is the parsed line (may be NULL). */
static bool query_fields(const cJSON *j, const char *line, size_t len, char *idbuf,
                         size_t idsize, const char **qid, const char **text, char *why,
                         size_t whysize)
{
    *qid = *text = NULL;
    if (j == NULL || !cJSON_IsObject(j)) {
        snprintf(why, whysize, "not a JSON object");
        return false;
    }
    if (has_escaped_nul(line, len)) {
        snprintf(why, whysize, "a string contains an escaped NUL (\\u0000)");
        return false;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "_id");
    if (!id)
        id = cJSON_GetObjectItemCaseSensitive(j, "id");
    if (!id)
        id = cJSON_GetObjectItemCaseSensitive(j, "qid");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
    if (!t)
        t = cJSON_GetObjectItemCaseSensitive(j, "query");
    if (cJSON_IsString(id)) {
        *qid = id->valuestring;
    } else if (cJSON_IsNumber(id)) {
        double v = id->valuedouble;
        if (!(v == floor(v) && fabs(v) <= 9007199254740992.0)) {
            snprintf(why, whysize, "a numeric query id must be an integer of at most 2^53");
            return false;
        }
        snprintf(idbuf, idsize, "%lld", (long long)v);
        *qid = idbuf;
    }
    if (*qid == NULL || !cJSON_IsString(t)) {
        snprintf(why, whysize, "expected {\"_id\": ..., \"text\": ...} (or id/qid, query)");
        return false;
    }
    if ((*qid)[0] == '\0') {
        snprintf(why, whysize, "empty query id");
        return false;
    }
    for (const unsigned char *c = (const unsigned char *)*qid; *c; c++) {
        if (*c <= 0x20 || *c == 0x7F) {
            snprintf(why, whysize, "the query id has a space or control character");
            return false;
        }
    }
    *text = t->valuestring;
    return true;
}

/* The index (0-based) of the nearest-rank q-quantile of n > 0 sorted values:
 * the smallest value with at least q * n values at or below it. */
static size_t nearest_rank(size_t n, double q)
{
    double r = ceil(q * (double)n);
    return r < 1 ? 0 : (size_t)r - 1 < n ? (size_t)r - 1 : n - 1;
}

/* True when path would be written inside the folder dir (its parent folder,
 * links resolved, is dir or below it). */
static bool inside_folder(const char *path, const char *dir)
{
    char *real_dir = realpath(dir, NULL);
    char *copy = strdup(path);
    bool inside = false;
    if (real_dir != NULL && copy != NULL) {
        char *slash = strrchr(copy, '/');
        const char *parent = slash == NULL ? "." : slash == copy ? "/" : (*slash = '\0', copy);
        char *real_parent = realpath(parent, NULL);
        size_t n = strlen(real_dir);
        inside = real_parent != NULL && strncmp(real_parent, real_dir, n) == 0 &&
                 (real_parent[n] == '\0' || real_parent[n] == '/');
        free(real_parent);
    }
    free(real_dir);
    free(copy);
    return inside;
}

/* Creates the temporary file next to path that becomes path on success:
 * *tmp_out gets its name (caller frees). Mode as fopen("w") gives. */
static FILE *open_temp(const char *path, char **tmp_out)
{
    *tmp_out = NULL;
    size_t n = strlen(path) + sizeof(".tmp.XXXXXX");
    char *tmp = malloc(n);
    if (tmp == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        free(tmp);
        return NULL;
    }
    mode_t mask = umask(0);
    umask(mask);
    FILE *f = fchmod(fd, 0666 & ~mask) == 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        errno = e;
        return NULL;
    }
    *tmp_out = tmp;
    return f;
}

/* Batch mode: each line of qpath is a query; the run file trec is written
 * to a temporary file renamed over trec only when every query ran (or, with
 * skip_bad, every good one): a failure leaves no partial run. A bad line
 * (not JSON, missing or bad id or text, repeated id) or a failed search
 * fails the call naming the file and line, or with skip_bad is reported,
 * skipped and counted. */
static int run_batch(dynrag_index *idx, const dynrag_search_options *opt, int k,
                     const char *qpath, const char *trec, const char *tag, bool skip_bad)
{
    FILE *in = fopen(qpath, "rb");
    if (in == NULL) {
        cli_error(CMD, "%s: %s", qpath, strerror(errno));
        return CLI_FAIL;
    }
    char *tmp = NULL;
    bool to_stdout = strcmp(trec, "-") == 0;
    /* A symbolic link stays: the file it leads to is replaced. */
    struct stat ls;
    char *link_target = NULL;
    if (!to_stdout && lstat(trec, &ls) == 0 && S_ISLNK(ls.st_mode))
        link_target = realpath(trec, NULL);
    const char *dest = link_target != NULL ? link_target : trec;
    FILE *out = to_stdout ? stdout : open_temp(dest, &tmp);
    if (out == NULL) {
        cli_error(CMD, "%s: cannot create the run file: %s", trec, strerror(errno));
        free(link_target);
        fclose(in);
        return CLI_FAIL;
    }
    char *line = NULL;
    size_t alloc = 0;
    long lineno = 0, skipped = 0;
    long long got;
    int ret = CLI_OK;
    double *lat = NULL;
    size_t n_lat = 0, cap_lat = 0;
    idset seen = {0};
    double t_start = now_ms(), c_start = cpu_ms();
    while ((got = cli_getline(&line, &alloc, in, CLI_MAX_LINE)) >= 0) {
        lineno++;
        size_t len = (size_t)got;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = '\0';
        if (len == 0)
            continue;
        char idbuf[64], why[160];
        cJSON *j = cli_parse_json_line(line, len, why, sizeof(why));
        const char *qid = NULL, *text = NULL;
        long first = 0;
        bool ok = j != NULL &&
                  query_fields(j, line, len, idbuf, sizeof(idbuf), &qid, &text, why, sizeof(why));
        if (ok) {
            int added = idset_add(&seen, qid, lineno, &first);
            if (added < 0) {
                cli_error(CMD, "out of memory");
                cJSON_Delete(j);
                ret = CLI_FAIL;
                break;
            }
            if (added > 0) {
                snprintf(why, sizeof(why), "query id repeated (first on line %ld)", first);
                ok = false;
            }
        }
        dynrag_error err;
        double t = now_ms();
        if (ok && doc_level(idx, text, *opt, k, qid, tag, out, &err) != DYNRAG_OK) {
            snprintf(why, sizeof(why), "%s", dynrag_errmsg(&err));
            ok = false;
        }
        t = now_ms() - t;
        cJSON_Delete(j);
        if (!ok) {
            if (!skip_bad) {
                cli_error(CMD, "%s:%ld: %s", qpath, lineno, why);
                ret = CLI_FAIL;
                break;
            }
            if (skipped++ < 10)
                cli_error(CMD, "%s:%ld: %s (skipped)", qpath, lineno, why);
            continue;
        }
        if (n_lat == cap_lat) {
            cap_lat = cap_lat ? cap_lat * 2 : 256;
            double *nl = realloc(lat, cap_lat * sizeof(*nl));
            if (nl == NULL) {
                cli_error(CMD, "out of memory");
                ret = CLI_FAIL;
                break;
            }
            lat = nl;
        }
        lat[n_lat++] = t;
    }
    int read_errno = errno;
    double wall = now_ms() - t_start, cpu = cpu_ms() - c_start;
    if (ret == CLI_OK)
        ret = cli_line_error(CMD, qpath, (unsigned long long)lineno + 1, got, CLI_MAX_LINE);
    if (ret == CLI_OK && ferror(in)) {
        cli_error(CMD, "%s: read error: %s", qpath,
                  read_errno == EISDIR ? "is a directory, expected a JSONL file"
                                       : strerror(read_errno));
        ret = CLI_FAIL;
    }
    if (ret == CLI_OK && skipped > 0 && n_lat == 0) {
        cli_error(CMD, "%s: no query could be run (%ld bad)", qpath, skipped);
        ret = CLI_FAIL;
    }
    if (fflush(out) != 0 || ferror(out)) {
        if (ret == CLI_OK)
            cli_error(CMD, "%s: write failed: %s", trec, strerror(errno));
        ret = CLI_FAIL;
    }
    if (!to_stdout) {
        if (ret == CLI_OK && fsync(fileno(out)) != 0) {
            cli_error(CMD, "%s: write failed: %s", trec, strerror(errno));
            ret = CLI_FAIL;
        }
        if (fclose(out) != 0 && ret == CLI_OK) {
            cli_error(CMD, "%s: write failed: %s", trec, strerror(errno));
            ret = CLI_FAIL;
        }
        if (ret == CLI_OK && rename(tmp, dest) != 0) {
            cli_error(CMD, "%s: %s", trec, strerror(errno));
            ret = CLI_FAIL;
        }
        if (ret != CLI_OK)
            unlink(tmp);
    }
    if (ret == CLI_OK) {
        if (skipped > 0)
            fprintf(stderr, "skipped %ld bad quer%s of %ld\n", skipped, skipped == 1 ? "y" : "ies",
                    skipped + (long)n_lat);
        if (n_lat > 0) {
            qsort(lat, n_lat, sizeof(*lat), cmp_double);
            fprintf(stderr,
                    "%zu queries (%s, k=%d): %.0f QPS, median %.3f ms, p95 %.3f ms per query, "
                    "cpu %.4f ms per query\n",
                    n_lat, dynrag_search_mode_name(opt->mode), k,
                    wall > 0 ? (double)n_lat * 1e3 / wall : 0,
                    n_lat % 2 ? lat[n_lat / 2] : (lat[n_lat / 2 - 1] + lat[n_lat / 2]) / 2,
                    lat[nearest_rank(n_lat, 0.95)], cpu / (double)n_lat);
        }
    }
    idset_free(&seen);
    free(link_target);
    free(tmp);
    free(lat);
    free(line);
    fclose(in);
    return ret;
}

int cmd_retrieve(int argc, char **argv)
{
    dynrag_search_options opt;
    dynrag_search_options_init(&opt);
    bool depth_given = false;
    const char *dir = NULL, *query = NULL, *qfile = NULL, *trec = NULL, *tag = "dynrag";
    bool json = false, skip_bad = false;
    long long v = 0;
    double d = 0;
    int k = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (strcmp(a, "--index") == 0 && has_val) {
            dir = argv[++i];
        } else if (strcmp(a, "--mode") == 0 && has_val) {
            int m = dynrag_search_mode_parse(argv[++i]);
            if (m < 0)
                return cli_usage_error(CMD, "--mode: expected bm25, dense or hybrid, got '%s'",
                                       argv[i]);
            opt.mode = (dynrag_search_mode)m;
        } else if ((strcmp(a, "-k") == 0 || strcmp(a, "--k") == 0) && has_val) {
            if (!cli_parse_int(CMD, a, argv[++i], 1, 1000, &v))
                return CLI_USAGE;
            k = (int)v;
        } else if (strcmp(a, "--k1") == 0 && has_val) {
            if (!cli_parse_double(CMD, a, argv[++i], 0, 100, &d))
                return CLI_USAGE;
            opt.k1 = d;
        } else if (strcmp(a, "--b") == 0 && has_val) {
            if (!cli_parse_double(CMD, a, argv[++i], 0, 1, &d))
                return CLI_USAGE;
            opt.b = d;
        } else if (strcmp(a, "--rrf-k") == 0 && has_val) {
            if (!cli_parse_double(CMD, a, argv[++i], 0.001, 1e6, &d))
                return CLI_USAGE;
            opt.rrf_k = d;
        } else if (strcmp(a, "--depth") == 0 && has_val) {
            if (!cli_parse_int(CMD, a, argv[++i], 1, MAX_CHUNKS, &v))
                return CLI_USAGE;
            opt.depth = (int)v;
            depth_given = true;
        } else if (strcmp(a, "--nprobe") == 0 && has_val) {
            if (!cli_parse_int(CMD, a, argv[++i], 1, 1 << 20, &v))
                return CLI_USAGE;
            opt.nprobe = (int)v;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--skip-bad") == 0) {
            skip_bad = true;
        } else if (strcmp(a, "--queries") == 0 && has_val) {
            qfile = argv[++i];
        } else if (strcmp(a, "--trec") == 0 && has_val) {
            trec = argv[++i];
        } else if (strcmp(a, "--tag") == 0 && has_val) {
            tag = argv[++i];
            if (tag[0] == '\0' || strpbrk(tag, " \t\n"))
                return cli_usage_error(CMD, "--tag: one word expected");
        } else if (strcmp(a, "--") == 0 && has_val && query == NULL && i + 2 == argc) {
            query = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error(CMD, "unknown option or missing value: %s", a);
        } else if (query == NULL) {
            query = a;
        } else {
            return cli_usage_error(CMD, "one query expected (quote it), got also '%s'", a);
        }
    }
    if (dir == NULL)
        return cli_usage_error(CMD, "--index DIR is required");
    if ((qfile == NULL) != (trec == NULL))
        return cli_usage_error(CMD, "--queries and --trec go together");
    if (skip_bad && !qfile)
        return cli_usage_error(CMD, "--skip-bad goes with --queries");
    if (qfile && query)
        return cli_usage_error(CMD, "give a query or --queries FILE, not both");
    if (!qfile && !query)
        return cli_usage_error(CMD, "give a query or --queries FILE --trec OUT");
    const char *ins[] = {qfile};
    if (trec != NULL && !cli_check_output(CMD, "--trec", trec, ins, 1, true))
        return CLI_FAIL;
    if (trec != NULL && strcmp(trec, "-") != 0 && inside_folder(trec, dir)) {
        cli_error(CMD, "--trec %s: is inside the index folder %s; write the run elsewhere", trec,
                  dir);
        return CLI_FAIL;
    }
    dynrag_error err;
    dynrag_index *idx = NULL;
    if (dynrag_index_open(dir, NULL, &idx, &err) != DYNRAG_OK) {
        cli_error(CMD, "%s", dynrag_errmsg(&err));
        return CLI_FAIL;
    }
    int ret = CLI_OK;
    if (qfile) {
        /* Document level without --depth: the search's own deepening (3k
         * chunks, doubled as needed) sets the hybrid depth alone. */
        if (!depth_given)
            opt.depth = 0;
        ret = run_batch(idx, &opt, k, qfile, trec, tag, skip_bad);
    } else {
        opt.k = k;
        dynrag_hits h;
        if (dynrag_index_search(idx, query, &opt, &h, &err) != DYNRAG_OK) {
            cli_error(CMD, "%s", dynrag_errmsg(&err));
            ret = CLI_FAIL;
        } else {
            print_hits(&h, json);
            dynrag_hits_free(&h);
        }
    }
    dynrag_index_close(idx);
    return ret;
}
