/*
 * reload_check_bench.c - what the live-reload check costs a search.
 *
 *   dynrag_bench_reload_check INDEX_DIR QUERIES.jsonl [-k K] [--repeat R]
 *
 * Every call on an index handle first looks for a change of the folder to
 * notice a new generation (src/retrieve/search.c, live reload): one
 * non-blocking read of an inotify descriptor, or where inotify is missing,
 * a stat of index.db and index.db-wal. This opens INDEX_DIR, runs every
 * query ({"_id","text"} per line) as a BM25 top-K search through the
 * handle (check included), and in the same process times each kind of
 * check alone (as many iterations as queries), R rounds each. Prints the
 * medians over rounds of the mean time per search and per check, and the
 * ratios check/search.
 */
#include "core/util.h"
#include "dynrag/index.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The "text" of every line of a BEIR queries file; *n set. */
static char **load_queries(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "r");
    char **q = NULL;
    size_t cap = 0;
    *n = 0;
    if (fp == NULL)
        return NULL;
    char line[65536];
    while (fgets(line, sizeof(line), fp)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
        if (cJSON_IsString(t)) {
            if (*n == cap) {
                cap = cap ? cap * 2 : 256;
                char **g = realloc(q, cap * sizeof(*q));
                if (g == NULL)
                    break;
                q = g;
            }
            q[(*n)++] = dr_strdup(t->valuestring);
        }
        cJSON_Delete(o);
    }
    fclose(fp);
    return q;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: dynrag_bench_reload_check INDEX_DIR QUERIES.jsonl [-k K] "
                        "[--repeat R]\n");
        return 2;
    }
    long long k = 10, repeat = 5;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-k") == 0 && dr_parse_ll(argv[i + 1], 1, 1000, &k) == 0)
            continue;
        if (strcmp(argv[i], "--repeat") == 0 && dr_parse_ll(argv[i + 1], 1, 100, &repeat) == 0)
            continue;
        fprintf(stderr, "reload_check_bench: bad option %s\n", argv[i]);
        return 2;
    }
    size_t nq = 0;
    char **queries = load_queries(argv[2], &nq);
    dynrag_index *idx = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (nq == 0 || dynrag_index_open(argv[1], NULL, &idx, &err) != DYNRAG_OK) {
        fprintf(stderr, "reload_check_bench: %s\n", nq ? dynrag_errmsg(&err) : "no queries");
        return 1;
    }
    char *paths[2] = {dr_asprintf("%s/index.db", argv[1]), dr_asprintf("%s/index.db-wal", argv[1])};
    dynrag_search_options so;
    dynrag_search_options_init(&so);
    so.mode = DYNRAG_SEARCH_BM25;
    so.k = (int)k;
    double *search_us = calloc((size_t)repeat, sizeof(double));
    double *check_us = calloc((size_t)repeat, sizeof(double));
    double *ino_us = calloc((size_t)repeat, sizeof(double));
    int ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ino < 0 || inotify_add_watch(ino, argv[1], IN_MODIFY | IN_CREATE | IN_DELETE) < 0) {
        fprintf(stderr, "reload_check_bench: inotify unavailable\n");
        return 1;
    }
    for (long long r = 0; r < repeat; r++) {
        int64_t t0 = dr_now_us();
        for (size_t i = 0; i < nq; i++) {
            dynrag_hits h;
            if (dynrag_index_search(idx, queries[i], &so, &h, &err) != DYNRAG_OK) {
                fprintf(stderr, "reload_check_bench: %s\n", dynrag_errmsg(&err));
                return 1;
            }
            dynrag_hits_free(&h);
        }
        search_us[r] = (double)(dr_now_us() - t0) / (double)nq;
        t0 = dr_now_us();
        for (size_t i = 0; i < nq; i++) {
            struct stat st;
            for (int f = 0; f < 2; f++)
                (void)stat(paths[f], &st);
        }
        check_us[r] = (double)(dr_now_us() - t0) / (double)nq;
        t0 = dr_now_us();
        for (size_t i = 0; i < nq; i++) {
            char buf[4096];
            (void)!read(ino, buf, sizeof(buf));
        }
        ino_us[r] = (double)(dr_now_us() - t0) / (double)nq;
    }
    close(ino);
    qsort(search_us, (size_t)repeat, sizeof(double), cmp_double);
    qsort(check_us, (size_t)repeat, sizeof(double), cmp_double);
    qsort(ino_us, (size_t)repeat, sizeof(double), cmp_double);
    double s = search_us[repeat / 2], c = check_us[repeat / 2], in = ino_us[repeat / 2];
    printf("reload_check: %zu queries, bm25 k=%lld, %lld rounds, medians: search %.2f us "
           "(check included); inotify check %.3f us (%.4f of a search); stat check %.3f us "
           "(%.4f)\n",
           nq, k, repeat, s, in, in / s, c, c / s);
    for (size_t i = 0; i < nq; i++)
        free(queries[i]);
    free(queries);
    free(paths[0]);
    free(paths[1]);
    free(search_us);
    free(check_us);
    free(ino_us);
    dynrag_index_close(idx);
    return 0;
}
