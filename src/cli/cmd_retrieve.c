/* cmd_retrieve.c - `dynrag retrieve`: search an index, one query or a batch. */
#define _GNU_SOURCE
#include "cli.h"

#include "dynrag/index.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CMD "retrieve"
#define MAX_CHUNKS 10000 /* --depth bound (the library's) */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void print_json_str(FILE *f, const char *s)
{
    cJSON *j = cJSON_CreateString(s ? s : "");
    char *t = j ? cJSON_PrintUnformatted(j) : NULL;
    fputs(t ? t : "\"\"", f);
    free(t);
    cJSON_Delete(j);
}

static void print_hits(const dynrag_hits *h, bool json)
{
    if (json) {
        printf("{\"bm25_us\":%.0f,\"dense_us\":%.0f,\"total_us\":%.0f,\"hits\":[", h->bm25_us,
               h->dense_us, h->total_us);
        for (size_t i = 0; i < h->n; i++) {
            const dynrag_hit *x = &h->hits[i];
            printf("%s{\"rank\":%zu,\"chunk_id\":%lld,\"doc_id\":", i ? "," : "", i + 1,
                   (long long)x->chunk_id);
            print_json_str(stdout, x->doc_id);
            printf(",\"title\":");
            print_json_str(stdout, x->title);
            printf(",\"score\":%.6g,\"start\":%lld,\"end\":%lld,\"text\":", x->score,
                   (long long)x->start, (long long)x->end);
            print_json_str(stdout, x->text);
            printf("}");
        }
        printf("]}\n");
        return;
    }
    for (size_t i = 0; i < h->n; i++) {
        const dynrag_hit *x = &h->hits[i];
        int len = (int)strlen(x->text);
        int cut = len > 160 ? 160 : len;
        while (cut < len && cut > 0 && ((unsigned char)x->text[cut] & 0xC0) == 0x80)
            cut--; /* do not cut inside a UTF-8 sequence */
        printf("%2zu. %-10.4f %s  %s\n    %.*s%s\n", i + 1, x->score, x->doc_id, x->title, cut,
               x->text, cut < len ? "..." : "");
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

static int run_batch(dynrag_index *idx, const dynrag_search_options *opt, int k,
                     const char *qpath, const char *trec, const char *tag)
{
    FILE *in = fopen(qpath, "rb");
    if (in == NULL) {
        cli_error(CMD, "%s: %s", qpath, strerror(errno));
        return CLI_FAIL;
    }
    FILE *out = strcmp(trec, "-") == 0 ? stdout : fopen(trec, "w");
    if (out == NULL) {
        cli_error(CMD, "%s: %s", trec, strerror(errno));
        fclose(in);
        return CLI_FAIL;
    }
    char *line = NULL;
    size_t alloc = 0;
    long lineno = 0;
    ssize_t got;
    int ret = CLI_OK;
    double *lat = NULL;
    size_t n_lat = 0, cap_lat = 0;
    while ((got = getline(&line, &alloc, in)) >= 0) {
        lineno++;
        size_t len = (size_t)got;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = '\0';
        if (len == 0)
            continue;
        cJSON *j = cJSON_ParseWithLength(line, len);
        const cJSON *id = j ? cJSON_GetObjectItemCaseSensitive(j, "_id") : NULL;
        if (j && !id)
            id = cJSON_GetObjectItemCaseSensitive(j, "id");
        if (j && !id)
            id = cJSON_GetObjectItemCaseSensitive(j, "qid");
        const cJSON *text = j ? cJSON_GetObjectItemCaseSensitive(j, "text") : NULL;
        if (j && !text)
            text = cJSON_GetObjectItemCaseSensitive(j, "query");
        char idbuf[64];
        const char *qid = NULL;
        if (cJSON_IsString(id))
            qid = id->valuestring;
        else if (cJSON_IsNumber(id)) {
            snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id->valuedouble);
            qid = idbuf;
        }
        if (qid == NULL || qid[0] == '\0' || strpbrk(qid, " \t") || !cJSON_IsString(text)) {
            cli_error(CMD, "%s:%ld: expected {\"_id\": ..., \"text\": ...} (or id/qid, query)",
                      qpath, lineno);
            cJSON_Delete(j);
            ret = CLI_FAIL;
            break;
        }
        dynrag_error err;
        double t = now_ms();
        int rc = doc_level(idx, text->valuestring, *opt, k, qid, tag, out, &err);
        t = now_ms() - t;
        cJSON_Delete(j);
        if (rc != DYNRAG_OK) {
            cli_error(CMD, "%s:%ld: %s", qpath, lineno, dynrag_errmsg(&err));
            ret = CLI_FAIL;
            break;
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
    if (ret == CLI_OK && n_lat > 0) {
        qsort(lat, n_lat, sizeof(*lat), cmp_double);
        fprintf(stderr, "%zu queries (%s, k=%d): median %.3f ms, p95 %.3f ms per query\n", n_lat,
                dynrag_search_mode_name(opt->mode), k, lat[n_lat / 2],
                lat[(size_t)((double)(n_lat - 1) * 0.95)]);
    }
    free(lat);
    free(line);
    fclose(in);
    if (out != stdout && fclose(out) != 0) {
        cli_error(CMD, "%s: write failed", trec);
        ret = CLI_FAIL;
    }
    return ret;
}

int cmd_retrieve(int argc, char **argv)
{
    dynrag_search_options opt;
    memset(&opt, 0, sizeof(opt));
    const char *dir = NULL, *query = NULL, *qfile = NULL, *trec = NULL, *tag = "dynrag";
    bool json = false;
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
            if (!cli_parse_double(CMD, a, argv[++i], 0.001, 100, &d))
                return CLI_USAGE;
            opt.k1 = d;
        } else if (strcmp(a, "--b") == 0 && has_val) {
            if (!cli_parse_double(CMD, a, argv[++i], 0.0001, 1, &d))
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
        } else if (strcmp(a, "--nprobe") == 0 && has_val) {
            if (!cli_parse_int(CMD, a, argv[++i], 1, 1 << 20, &v))
                return CLI_USAGE;
            opt.nprobe = (int)v;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
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
    if (qfile && query)
        return cli_usage_error(CMD, "give a query or --queries FILE, not both");
    if (!qfile && !query)
        return cli_usage_error(CMD, "give a query or --queries FILE --trec OUT");
    dynrag_error err;
    dynrag_index *idx = NULL;
    if (dynrag_index_open(dir, NULL, &idx, &err) != DYNRAG_OK) {
        cli_error(CMD, "%s", dynrag_errmsg(&err));
        return CLI_FAIL;
    }
    int ret = CLI_OK;
    if (qfile) {
        ret = run_batch(idx, &opt, k, qfile, trec, tag);
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
