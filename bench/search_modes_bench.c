/*
 * search_modes_bench.c - latency of dynrag_index_search per mode (bm25,
 * dense, hybrid) on one thread, through the public API, over a BEIR queries
 * file. Medians of --repeat passes; QPS as queries / pass time.
 *
 *   dynrag_bench_search_modes INDEX_DIR QUERIES.jsonl [-k K] [--repeat N] [--nprobe P]
 */
#include "dynrag/index.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s INDEX_DIR QUERIES.jsonl [-k K] [--repeat N] [--nprobe P]\n",
                argv[0]);
        return 2;
    }
    int k = 10, repeat = 3, nprobe = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-k") == 0)
            k = (int)strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--repeat") == 0)
            repeat = (int)strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--nprobe") == 0)
            nprobe = (int)strtol(argv[i + 1], NULL, 10);
    }
    if (k < 1 || k > 1000 || repeat < 1 || repeat > 100 || nprobe < 0 || nprobe > 65536) {
        fprintf(stderr, "bad -k or --repeat\n");
        return 2;
    }
    FILE *f = fopen(argv[2], "r");
    if (f == NULL) {
        fprintf(stderr, "%s: cannot open\n", argv[2]);
        return 1;
    }
    char **qs = NULL;
    size_t n = 0, cap = 0;
    char line[1 << 16];
    while (fgets(line, sizeof(line), f)) {
        cJSON *o = cJSON_Parse(line);
        cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
        if (cJSON_IsString(t)) {
            if (n == cap) {
                cap = cap ? cap * 2 : 1024;
                qs = realloc(qs, cap * sizeof(*qs));
            }
            qs[n++] = strdup(t->valuestring);
        }
        cJSON_Delete(o);
    }
    fclose(f);
    dynrag_index *idx = NULL;
    dynrag_error err;
    if (dynrag_index_open(argv[1], NULL, &idx, &err) != DYNRAG_OK) {
        fprintf(stderr, "%s\n", dynrag_errmsg(&err));
        return 1;
    }
    double *lat = malloc(n * sizeof(double));
    double *pass_qps = malloc((size_t)repeat * sizeof(double));
    printf("%zu queries, k=%d, nprobe %d, 1 thread, median of %d passes\n", n, k, nprobe, repeat);
    printf("%-7s %10s %10s %10s\n", "mode", "QPS", "p50 ms", "p99 ms");
    for (int m = 0; m < 3; m++) {
        dynrag_search_options so;
        dynrag_search_options_init(&so);
        so.mode = (dynrag_search_mode)m;
        so.k = k;
        so.nprobe = nprobe;
        double p50s[100], p99s[100];
        for (int r = 0; r < repeat; r++) {
            double t0 = now_us();
            for (size_t i = 0; i < n; i++) {
                dynrag_hits h;
                double a = now_us();
                if (dynrag_index_search(idx, qs[i], &so, &h, &err) != DYNRAG_OK) {
                    fprintf(stderr, "%s\n", dynrag_errmsg(&err));
                    return 1;
                }
                lat[i] = now_us() - a;
                dynrag_hits_free(&h);
            }
            pass_qps[r] = (double)n / ((now_us() - t0) / 1e6);
            qsort(lat, n, sizeof(double), cmp_d);
            p50s[r] = lat[n / 2] / 1000;
            p99s[r] = lat[(size_t)((double)n * 0.99)] / 1000;
        }
        qsort(pass_qps, (size_t)repeat, sizeof(double), cmp_d);
        qsort(p50s, (size_t)repeat, sizeof(double), cmp_d);
        qsort(p99s, (size_t)repeat, sizeof(double), cmp_d);
        printf("%-7s %10.0f %10.3f %10.3f\n", dynrag_search_mode_name(so.mode),
               pass_qps[repeat / 2], p50s[repeat / 2], p99s[repeat / 2]);
    }
    dynrag_index_close(idx);
    for (size_t i = 0; i < n; i++)
        free(qs[i]);
    free(qs);
    free(lat);
    free(pass_qps);
    return 0;
}
