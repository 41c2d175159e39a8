/*
 * server_bench.c - the in-process baseline for bench/server_bench.sh:
 * BM25 searches with dynrag_index_search() on T threads, the same queries
 * and k the HTTP benchmark posts to /v1/retrieve.
 *
 *   dynrag_bench_server build  --corpus FILE.jsonl --index DIR [--dense]
 *   dynrag_bench_server search --index DIR --queries FILE.jsonl [--threads 2]
 *                              [--seconds 10] [--k 10]
 *
 * `search` prints one line: "inproc qps=Q p50_ms=A p99_ms=B threads=T k=K n=N
 * failed=F cpu_us_per_q=C", C being the process's user+system CPU time over
 * the timed searches divided by their number.
 */
#include "core/util.h"
#include "dynrag/index.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct shared {
    dynrag_index *idx;
    char **queries;
    size_t n_queries;
    int k;
    int64_t until_us;
} shared;

typedef struct worker {
    shared *sh;
    size_t first;
    double *lat_ms; /* per request */
    size_t n, cap;
    int failed;
} worker;

static void *run(void *p)
{
    worker *w = p;
    dynrag_search_options so;
    dynrag_search_options_init(&so);
    so.mode = DYNRAG_SEARCH_BM25;
    so.k = w->sh->k;
    size_t i = w->first;
    while (dr_now_us() < w->sh->until_us) {
        dynrag_hits h;
        int64_t t0 = dr_now_us();
        if (dynrag_index_search(w->sh->idx, w->sh->queries[i % w->sh->n_queries], &so, &h,
                                NULL) != DYNRAG_OK)
            w->failed++;
        dynrag_hits_free(&h);
        if (w->n == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 4096;
            double *nl = realloc(w->lat_ms, w->cap * sizeof(double));
            if (nl == NULL)
                return NULL;
            w->lat_ms = nl;
        }
        w->lat_ms[w->n++] = (double)(dr_now_us() - t0) / 1000.0;
        i++;
    }
    return NULL;
}

/* User plus system CPU time of the whole process so far, microseconds. */
static int64_t cpu_us(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Reads the "text" (or "query") of every JSONL line. */
static char **read_queries(const char *path, size_t *n)
{
    char *data = NULL;
    dynrag_error err;
    if (dr_read_file(path, (size_t)1 << 28, &data, NULL, &err) != DYNRAG_OK) {
        fprintf(stderr, "%s\n", dynrag_errmsg(&err));
        return NULL;
    }
    char **q = NULL;
    size_t cap = 0;
    *n = 0;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        cJSON *t = cJSON_GetObjectItem(o, "text");
        if (!cJSON_IsString(t))
            t = cJSON_GetObjectItem(o, "query");
        if (cJSON_IsString(t)) {
            if (*n == cap) {
                cap = cap ? cap * 2 : 256;
                char **nq = realloc(q, cap * sizeof(*q));
                if (nq == NULL)
                    break;
                q = nq;
            }
            q[(*n)++] = dr_strdup(t->valuestring);
        }
        cJSON_Delete(o);
    }
    free(data);
    return q;
}

static const char *arg(int argc, char **argv, const char *name, const char *dflt)
{
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return dflt;
}

static bool flag(int argc, char **argv, const char *name)
{
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

static int cmd_build(int argc, char **argv)
{
    const char *corpus = arg(argc, argv, "--corpus", NULL);
    const char *dir = arg(argc, argv, "--index", NULL);
    if (corpus == NULL || dir == NULL) {
        fprintf(stderr, "build: --corpus FILE and --index DIR are required\n");
        return 2;
    }
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    bo.no_dense = !flag(argc, argv, "--dense");
    dynrag_build_stats st;
    dynrag_error err;
    const char *in[] = {corpus};
    if (dynrag_index_add(dir, in, 1, &bo, &st, &err) != DYNRAG_OK) {
        fprintf(stderr, "build: %s\n", dynrag_errmsg(&err));
        return 1;
    }
    printf("built %s: %llu docs, %llu chunks in %.1f s\n", dir,
           (unsigned long long)st.total_docs, (unsigned long long)st.total_chunks, st.seconds);
    return 0;
}

static int cmd_search(int argc, char **argv)
{
    const char *dir = arg(argc, argv, "--index", NULL);
    const char *qpath = arg(argc, argv, "--queries", NULL);
    long long threads = 2, seconds = 10, k = 10;
    if (dir == NULL || qpath == NULL ||
        dr_parse_ll(arg(argc, argv, "--threads", "2"), 1, 64, &threads) != DYNRAG_OK ||
        dr_parse_ll(arg(argc, argv, "--seconds", "10"), 1, 3600, &seconds) != DYNRAG_OK ||
        dr_parse_ll(arg(argc, argv, "--k", "10"), 1, 1000, &k) != DYNRAG_OK) {
        fprintf(stderr, "search: --index DIR --queries FILE [--threads 1..64] "
                        "[--seconds N] [--k 1..1000]\n");
        return 2;
    }
    shared sh;
    memset(&sh, 0, sizeof(sh));
    sh.k = (int)k;
    sh.queries = read_queries(qpath, &sh.n_queries);
    if (sh.queries == NULL || sh.n_queries == 0) {
        fprintf(stderr, "search: no queries in %s\n", qpath);
        return 1;
    }
    dynrag_error err;
    int rc = 0;
    if (dynrag_index_open(dir, NULL, &sh.idx, &err) != DYNRAG_OK) {
        fprintf(stderr, "search: %s\n", dynrag_errmsg(&err));
        rc = 1;
        goto cleanup;
    }
    /* Warm-up: one pass over the queries (page cache, per-thread handles). */
    for (size_t i = 0; i < sh.n_queries && i < 200; i++) {
        dynrag_search_options so;
        dynrag_search_options_init(&so);
        so.mode = DYNRAG_SEARCH_BM25;
        so.k = (int)k;
        dynrag_hits h;
        dynrag_index_search(sh.idx, sh.queries[i], &so, &h, NULL);
        dynrag_hits_free(&h);
    }
    worker w[64];
    pthread_t t[64];
    memset(w, 0, sizeof(w));
    int64_t t0 = dr_now_us();
    int64_t cpu0 = cpu_us();
    sh.until_us = t0 + seconds * 1000000;
    for (long long i = 0; i < threads; i++) {
        w[i].sh = &sh;
        w[i].first = (size_t)i * sh.n_queries / (size_t)threads;
        pthread_create(&t[i], NULL, run, &w[i]);
    }
    size_t total = 0;
    int failed = 0;
    for (long long i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        total += w[i].n;
        failed += w[i].failed;
    }
    double secs = (double)(dr_now_us() - t0) / 1e6;
    double cpu = (double)(cpu_us() - cpu0);
    double *all = malloc((total ? total : 1) * sizeof(double));
    size_t n = 0;
    for (long long i = 0; i < threads && all; i++) {
        memcpy(all + n, w[i].lat_ms, w[i].n * sizeof(double));
        n += w[i].n;
        free(w[i].lat_ms);
    }
    if (all && n > 0) {
        qsort(all, n, sizeof(double), cmp_double);
        printf("inproc qps=%.1f p50_ms=%.3f p99_ms=%.3f threads=%lld k=%lld n=%zu failed=%d "
               "cpu_us_per_q=%.1f\n",
               (double)n / secs, all[n / 2], all[(size_t)((double)n * 0.99)], threads, k, n,
               failed, cpu / (double)n);
    }
    free(all);
    rc = failed ? 1 : 0;
cleanup:
    dynrag_index_close(sh.idx);
    for (size_t i = 0; i < sh.n_queries; i++)
        free(sh.queries[i]);
    free(sh.queries);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "build") == 0)
        return cmd_build(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "search") == 0)
        return cmd_search(argc, argv);
    fprintf(stderr, "usage: dynrag_bench_server build --corpus FILE --index DIR [--dense]\n"
                    "       dynrag_bench_server search --index DIR --queries FILE "
                    "[--threads N] [--seconds N] [--k N]\n");
    return 2;
}
