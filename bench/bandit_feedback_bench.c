/*
 * bandit_feedback_bench.c - what durable rewards cost: the time of one
 * bandit feedback() with a `state` file (one SQLite transaction committed
 * with synchronous=FULL before it returns, then the arms reloaded) against
 * the same router without a state file (memory only), in the same process.
 *
 *   dynrag_bench_bandit_feedback [--rewards N] [--repeat R] [--dir DIR]
 *
 * Prints per mode the median over R passes of the mean time per reward of a
 * pass of N rewards (distinct query ids), and the ratio durable / memory.
 */
#include "core/util.h"
#include "dynrag/pipeline.h"
#include "pipeline/spec.h"
#include "router/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median over `repeat` passes of the mean microseconds per reward. */
static double run(const char *dir, bool durable, int n, int repeat, int *failed)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "version: 1\nname: bench\nstages:\n  index:\n    options:\n"
             "      - {name: lexical, kind: bm25}\n      - {name: fused, kind: hybrid}\n"
             "    router: {type: bandit, params: {algorithm: linucb%s}}\n",
             durable ? ", state: state/bandit.json" : "");
    dynrag_pipeline *p = NULL;
    dynrag_error err;
    if (dynrag_pipeline_load_string(yaml, strlen(yaml), "bench.yaml", dir, &p, NULL, &err) !=
        DYNRAG_OK) {
        fprintf(stderr, "pipeline: %s\n", dynrag_errmsg(&err));
        return -1;
    }
    dr_router *r = NULL;
    if (dr_router_create(p, &p->stages[DR_STAGE_INDEX], &r, &err) != DYNRAG_OK) {
        fprintf(stderr, "router: %s\n", dynrag_errmsg(&err));
        dynrag_pipeline_free(p);
        return -1;
    }
    dr_query_features f;
    dr_query_features_compute("Which film came out first, The Dark Knight or Inception?", &f);
    double *pass = calloc((size_t)repeat, sizeof *pass);
    for (int rep = 0; pass != NULL && rep < repeat; rep++) {
        int64_t t0 = dr_now_us();
        for (int i = 0; i < n; i++) {
            char qid[64];
            snprintf(qid, sizeof qid, "bench-%d-%d-%d", (int)getpid(), rep, i);
            if (r->vt->feedback(r, qid, &f, i % 2, (double)(i % 3) / 2.0, &err) != DYNRAG_OK)
                (*failed)++;
        }
        pass[rep] = (double)(dr_now_us() - t0) / n;
    }
    double med = -1;
    if (pass != NULL) {
        qsort(pass, (size_t)repeat, sizeof *pass, cmp_double);
        med = pass[repeat / 2];
    }
    free(pass);
    dr_router_free(r);
    dynrag_pipeline_free(p);
    return med;
}

int main(int argc, char **argv)
{
    int n = 200, repeat = 5;
    const char *dir = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--rewards") == 0)
            n = (int)strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--repeat") == 0)
            repeat = (int)strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
    }
    char tmp[] = "/tmp/dynrag-bandit-bench-XXXXXX";
    if (dir == NULL && (dir = mkdtemp(tmp)) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    if (n < 1 || repeat < 1) {
        fprintf(stderr, "usage: %s [--rewards N] [--repeat R] [--dir DIR]\n", argv[0]);
        return 2;
    }
    int failed = 0;
    double mem = run(dir, false, n, repeat, &failed);
    double dur = run(dir, true, n, repeat, &failed);
    if (dir == tmp) { /* our own scratch folder: remove what the runs wrote */
        static const char *const files[] = {"bandit.json", "bandit.json.rewards.db",
                                            "bandit.json.rewards.db-wal",
                                            "bandit.json.rewards.db-shm"};
        char path[256];
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            snprintf(path, sizeof path, "%s/state/%s", tmp, files[i]);
            unlink(path);
        }
        snprintf(path, sizeof path, "%s/state", tmp);
        rmdir(path);
        rmdir(tmp);
    }
    if (mem < 0 || dur < 0)
        return 1;
    printf("bandit feedback, linucb, %d rewards x %d passes (median of per-pass means)\n", n,
           repeat);
    printf("memory only   %10.1f us/reward\n", mem);
    printf("durable store %10.1f us/reward  (%.0fx memory; %.0f rewards/s)\n", dur, dur / mem,
           1e6 / dur);
    printf("failed %d\n", failed);
    return failed ? 1 : 0;
}
