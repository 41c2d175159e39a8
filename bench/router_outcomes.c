/*
 * router_outcomes.c - trains the outcome routers (router/omodel.h) on one
 * split of outcome tables and scores them on another: the training and
 * validation bench of docs/router-outcomes.md.
 *
 * usage: dynrag_bench_router_outcomes --data FILE.jsonl [--data FILE ...]
 *            [--valid-frac F] [--dim D] [--lambda L] [--loto] [--wtp W,W,...]
 *
 * The tables are merged. A row is in the validation split when
 * hash64(id) mod 10000 < F * 10000 (F default 0.2), so the split is the
 * same on every run and machine. The router is trained on the other rows
 * (the penalty is chosen on an inner split of them: the same rule with the
 * hash seeded differently, 0.15 of them) and scored on the validation rows.
 * Printed per task: the router's mean quality (at willingness-to-pay 0),
 * every always-X, the best single model of the validation rows and the
 * per-query oracle; then the unweighted mean over tasks of each, and the
 * routing time per query (features + prediction + pick, p50/p99 in us).
 * --loto trains on every task but one (all of their rows) and scores the
 * left-out task, for each task: an estimate of out-of-distribution
 * behaviour. --wtp prints, per task, mean quality and mean cost of the
 * router at each willingness to pay (USD^-1), with each always-X.
 * --dump FILE writes a line per scored row: phase (valid or loto), id,
 * task, the routed option's quality and, for task clusters, the task
 * classifier's confidence (nan otherwise), to combine routers offline.
 * --write-split DIR writes the two splits as DIR/train.jsonl and
 * DIR/valid.jsonl (outcome tables) and exits, so that `dynrag router train`
 * and `dynrag eval --outcomes` can be run on the same split.
 */
#include "dynrag/eval.h"

#include "core/util.h"
#include "embed/builtin.h"
#include "eval/outcomes.h"
#include "router/omodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TASKS 32

static bool in_split(const char *id, uint64_t seed, double frac)
{
    return (double)(dr_hash64(id, strlen(id), seed) % 10000) < frac * 10000.0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct tasks {
    const char *name[MAX_TASKS];
    size_t n;
} tasks;

static int task_of(tasks *ts, const char *name)
{
    const char *nm = name ? name : "(none)";
    for (size_t i = 0; i < ts->n; i++)
        if (strcmp(ts->name[i], nm) == 0)
            return (int)i;
    if (ts->n == MAX_TASKS)
        return -1;
    ts->name[ts->n] = nm;
    return (int)ts->n++;
}

/* Trains on rows tr (lambda picked on an inner split unless given). */
static int g_clusters = 0;
static bool g_task_clusters = false; /* --clusters task */
static const char *g_kind = "predict";
static double g_cluster_lambda = 0;
static double g_temperature = 0;
static const char *g_method = NULL; /* predict: ridge (NULL) or knn */
static int g_k = 0;                 /* knn, preference: neighbours (0: chosen on the inner split) */
static dr_omodel_train_opts g_ctr;  /* contrastive settings (0: defaults) */
static FILE *g_dump = NULL;         /* --dump: per scored row, the routed quality */
static const char *g_phase = "valid";

static int train(const dr_outcome_table *t, const size_t *tr, size_t n_tr, int dim, double lambda,
                 dr_omodel **m)
{
    size_t *fit = malloc(n_tr * sizeof(*fit)), *inner = malloc(n_tr * sizeof(*inner));
    size_t n_fit = 0, n_inner = 0;
    for (size_t i = 0; i < n_tr; i++) {
        if (lambda <= 0 && in_split(t->rows[tr[i]].id, 77, 0.15))
            inner[n_inner++] = tr[i];
        else
            fit[n_fit++] = tr[i];
    }
    dr_omodel_train_opts o = {.kind = g_kind,
                              .dim = dim,
                              .lambda = lambda,
                              .seed = 1,
                              .method = g_method,
                              .k = g_k,
                              .clusters = g_clusters,
                              .task_clusters = g_task_clusters,
                              .cluster_lambda = g_cluster_lambda,
                              .temperature = g_temperature,
                              .hidden = g_ctr.hidden,
                              .embed_dim = g_ctr.embed_dim,
                              .epochs = g_ctr.epochs,
                              .top_k = g_ctr.top_k,
                              .tau = g_ctr.tau,
                              .ss_weight = g_ctr.ss_weight,
                              .lr = g_ctr.lr,
                              .prior_weight = g_ctr.prior_weight,
                              .prior_rows = g_ctr.prior_rows};
    dr_omodel_train_report rep;
    dynrag_error err = {0};
    dr_omodel *probe = NULL;
    int rc =
        dr_omodel_train(t, fit, n_fit, n_inner ? t : NULL, inner, n_inner, &o, &probe, &rep, &err);
    if (rc == DYNRAG_OK) {
        /* Refit on every training row with the chosen penalty. */
        o.lambda = rep.lambda;
        o.k = rep.k;
        o.local_weight = rep.local_weight;
        o.fix_local_weight = !isnan(rep.local_weight);
        o.epochs = rep.epochs > 0 ? rep.epochs : o.epochs;
        o.prior_weight = rep.prior_weight > 0 ? rep.prior_weight : -1;
        o.prior_rows = rep.prior_rows;
        rc = dr_omodel_train(t, tr, n_tr, NULL, NULL, 0, &o, m, NULL, &err);
        fprintf(stderr,
                "  lambda %g k %d local weight %g epochs %d prior %g x %g rows (inner-valid "
                "quality %.4f)\n",
                rep.lambda, rep.k, rep.local_weight, rep.epochs, rep.prior_weight, rep.prior_rows,
                rep.valid_quality);
    }
    dr_omodel_free(probe);
    if (rc != DYNRAG_OK)
        fprintf(stderr, "train: %s\n", dynrag_errmsg(&err));
    free(fit);
    free(inner);
    return rc;
}

/* Scores rows te with model m at willingness to pay wtp: per task sums of
 * the router's quality and cost, of each option's, and of the oracle's. */
typedef struct score {
    double router_q[MAX_TASKS], router_c[MAX_TASKS], oracle[MAX_TASKS];
    double opt_q[MAX_TASKS][DR_OUTCOMES_MAX_OPTIONS], opt_c[MAX_TASKS][DR_OUTCOMES_MAX_OPTIONS];
    size_t n[MAX_TASKS];
    int64_t *us;
} score;

static void run(const dr_outcome_table *t, const dr_omodel *m, const size_t *te, size_t n_te,
                tasks *ts, double wtp, score *s)
{
    memset(s->router_q, 0, sizeof(s->router_q));
    memset(s->router_c, 0, sizeof(s->router_c));
    memset(s->oracle, 0, sizeof(s->oracle));
    memset(s->opt_q, 0, sizeof(s->opt_q));
    memset(s->opt_c, 0, sizeof(s->opt_c));
    memset(s->n, 0, sizeof(s->n));
    size_t K = dr_omodel_n_options(m);
    double q[2 * DR_OUTCOMES_MAX_OPTIONS];
    bool allowed[DR_OUTCOMES_MAX_OPTIONS];
    int map[DR_OUTCOMES_MAX_OPTIONS];
    for (size_t o = 0; o < K; o++)
        map[o] = dr_outcomes_option(t, dr_omodel_option(m, o));
    for (size_t i = 0; i < n_te; i++) {
        const dr_outcome_row *row = &t->rows[te[i]];
        int k = task_of(ts, row->task);
        int64_t t0 = dr_now_us();
        dr_omodel_predict(m, row->query, q, q + K, NULL);
        for (size_t o = 0; o < K; o++)
            allowed[o] = map[o] >= 0 && row->o[map[o]].present;
        int pick = dr_omodel_pick(m, q, q + K, wtp, allowed);
        s->us[i] = dr_now_us() - t0;
        if (k < 0 || pick < 0)
            continue;
        if (g_dump != NULL)
            fprintf(g_dump, "%s\t%s\t%s\t%.17g\t%.6f\n", g_phase, row->id, ts->name[k],
                    row->o[map[pick]].quality, dr_omodel_task_confidence(m, row->query));
        s->n[k]++;
        s->router_q[k] += row->o[map[pick]].quality;
        s->router_c[k] += row->o[map[pick]].cost_usd;
        double best = 0;
        for (size_t o = 0; o < t->n_options; o++) {
            if (!row->o[o].present)
                continue;
            s->opt_q[k][o] += row->o[o].quality;
            s->opt_c[k][o] += row->o[o].cost_usd;
            best = DR_MAX(best, row->o[o].quality);
        }
        s->oracle[k] += best;
    }
}

/* Prints the per-task table of s and the mean over tasks. */
static void print_table(const dr_outcome_table *t, const tasks *ts, const score *s)
{
    printf("%-16s %6s %8s %8s %8s", "task", "n", "router", "best1", "oracle");
    for (size_t o = 0; o < t->n_options; o++)
        printf(" %7.7s",
               strrchr(t->options[o], '/') ? strrchr(t->options[o], '/') + 1 : t->options[o]);
    printf("\n");
    double mr = 0, mo = 0, mopt[DR_OUTCOMES_MAX_OPTIONS] = {0};
    size_t nt = 0;
    for (size_t k = 0; k < ts->n; k++) {
        if (s->n[k] == 0)
            continue;
        double n = (double)s->n[k], b1 = 0;
        for (size_t o = 0; o < t->n_options; o++)
            b1 = DR_MAX(b1, s->opt_q[k][o] / n);
        printf("%-16.16s %6zu %8.4f %8.4f %8.4f", ts->name[k], s->n[k], s->router_q[k] / n, b1,
               s->oracle[k] / n);
        for (size_t o = 0; o < t->n_options; o++) {
            printf(" %7.4f", s->opt_q[k][o] / n);
            mopt[o] += s->opt_q[k][o] / n;
        }
        printf("\n");
        mr += s->router_q[k] / n;
        mo += s->oracle[k] / n;
        nt++;
    }
    double b1 = 0;
    for (size_t o = 0; o < t->n_options; o++)
        b1 = DR_MAX(b1, mopt[o] / (double)nt);
    printf("%-16s %6s %8.4f %8.4f %8.4f   (mean over %zu tasks; best1 = best single model's "
           "mean)\n",
           "MEAN", "", mr / (double)nt, b1, mo / (double)nt, nt);
}

/* Writes rows tr[0..n_tr) to DIR/train.jsonl and te[0..n_te) to
 * DIR/valid.jsonl; 0 or 1 (message on stderr). */
static int write_split(const dr_outcome_table *t, const char *dir, const size_t *tr, size_t n_tr,
                       const size_t *te, size_t n_te)
{
    dynrag_error err = {0};
    if (dr_mkdirs(dir, &err) != DYNRAG_OK) {
        fprintf(stderr, "%s\n", dynrag_errmsg(&err));
        return 1;
    }
    for (int k = 0; k < 2; k++) {
        const size_t *rows = k ? te : tr;
        size_t n = k ? n_te : n_tr;
        dr_buf b = {0};
        int rc = DYNRAG_OK;
        for (size_t i = 0; i < n && rc == DYNRAG_OK; i++)
            rc = dr_outcomes_write_row(t, &t->rows[rows[i]], &b);
        char *path = dr_asprintf("%s/%s", dir, k ? "valid.jsonl" : "train.jsonl");
        if (rc == DYNRAG_OK && path != NULL)
            rc = dr_write_file_atomic(path, b.data ? b.data : "", b.len, &err);
        else if (rc == DYNRAG_OK)
            rc = DYNRAG_ERR_NOMEM;
        if (rc == DYNRAG_OK)
            printf("wrote %s (%zu rows)\n", path, n);
        else
            fprintf(stderr, "%s: %s\n", path ? path : dir, dynrag_errmsg(&err));
        free(path);
        dr_buf_free(&b);
        if (rc != DYNRAG_OK)
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    dr_outcome_table t = {0};
    double frac = 0.2, lambda = 0;
    int dim = 1024;
    bool loto = false;
    const char *wtps = NULL, *split_dir = NULL;
    dynrag_error err = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--dump") == 0 && v) {
            g_dump = fopen(v, "w");
            if (g_dump == NULL)
                return 2;
            i++;
            continue;
        }
        if (strcmp(a, "--loto") == 0) {
            loto = true;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "%s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--data") == 0) {
            dr_outcome_table one;
            if (dr_outcomes_load(v, &one, &err) != DYNRAG_OK ||
                dr_outcomes_merge(&t, &one, v, &err) != DYNRAG_OK) {
                fprintf(stderr, "%s\n", dynrag_errmsg(&err));
                return 1;
            }
            dr_outcomes_free(&one);
        } else if (strcmp(a, "--valid-frac") == 0) {
            frac = strtod(v, NULL);
        } else if (strcmp(a, "--dim") == 0) {
            dim = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--lambda") == 0) {
            lambda = strtod(v, NULL);
        } else if (strcmp(a, "--temperature") == 0) {
            g_temperature = strtod(v, NULL);
        } else if (strcmp(a, "--kind") == 0) {
            g_kind = v;
        } else if (strcmp(a, "--method") == 0) {
            g_method = v;
        } else if (strcmp(a, "--k") == 0) {
            g_k = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--clusters") == 0) {
            g_task_clusters = strcmp(v, "task") == 0;
            g_clusters = g_task_clusters ? 0 : (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--cluster-lambda") == 0) {
            g_cluster_lambda = strtod(v, NULL);
        } else if (strcmp(a, "--hidden") == 0) {
            g_ctr.hidden = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--embed-dim") == 0) {
            g_ctr.embed_dim = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--epochs") == 0) {
            g_ctr.epochs = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--top-k") == 0) {
            g_ctr.top_k = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--tau") == 0) {
            g_ctr.tau = strtod(v, NULL);
        } else if (strcmp(a, "--ss-weight") == 0) {
            g_ctr.ss_weight = strtod(v, NULL);
        } else if (strcmp(a, "--prior-rows") == 0) {
            g_ctr.prior_rows = strtod(v, NULL);
        } else if (strcmp(a, "--prior-weight") == 0) {
            g_ctr.prior_weight = strtod(v, NULL);
        } else if (strcmp(a, "--lr") == 0) {
            g_ctr.lr = strtod(v, NULL);
        } else if (strcmp(a, "--wtp") == 0) {
            wtps = v;
        } else if (strcmp(a, "--write-split") == 0) {
            split_dir = v;
        } else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    if (t.n_rows == 0) {
        fprintf(stderr,
                "usage: %s --data FILE.jsonl [--data ...] [--valid-frac F] [--dim D] "
                "[--lambda L] [--loto] [--wtp W,...] [--write-split DIR]\n",
                argv[0]);
        return 2;
    }
    tasks ts = {0};
    for (size_t i = 0; i < t.n_rows; i++)
        task_of(&ts, t.rows[i].task);
    size_t *tr = malloc(t.n_rows * sizeof(*tr)), *te = malloc(t.n_rows * sizeof(*te));
    score *s = calloc(1, sizeof(*s));
    s->us = malloc(t.n_rows * sizeof(int64_t));
    size_t n_tr = 0, n_te = 0;
    for (size_t i = 0; i < t.n_rows; i++) {
        if (in_split(t.rows[i].id, 14, frac))
            te[n_te++] = i;
        else
            tr[n_tr++] = i;
    }
    printf("rows %zu: train %zu, valid %zu (hash64(id) mod 10000 < %.0f); dim %d\n", t.n_rows, n_tr,
           n_te, frac * 10000, dim);
    if (split_dir != NULL)
        return write_split(&t, split_dir, tr, n_tr, te, n_te);
    dr_omodel *m = NULL;
    int64_t t0 = dr_now_us();
    if (train(&t, tr, n_tr, dim, lambda, &m) != DYNRAG_OK)
        return 1;
    printf("trained in %.1f s\n", (double)(dr_now_us() - t0) / 1e6);
    run(&t, m, te, n_te, &ts, 0.0, s);
    print_table(&t, &ts, s);
    qsort(s->us, n_te, sizeof(int64_t), cmp_i64);
    long long p50 = (long long)s->us[n_te / 2], p99 = (long long)s->us[(n_te * 99) / 100];
    /* Baseline in the same process: the hashed n-gram embedding alone. */
    dr_embedder *emb = NULL;
    float *vec = malloc((size_t)dim * sizeof(float));
    dr_embedder_builtin_create(dim, &emb, NULL);
    for (size_t i = 0; i < n_te; i++) {
        const char *texts[1] = {t.rows[te[i]].query};
        int64_t t1 = dr_now_us();
        dr_embed(emb, texts, 1, vec, NULL);
        s->us[i] = dr_now_us() - t1;
    }
    qsort(s->us, n_te, sizeof(int64_t), cmp_i64);
    long long b50 = (long long)s->us[n_te / 2];
    printf("routing time per query: p50 %lld us, p99 %lld us (one thread); the embedding alone "
           "p50 %lld us (ratio %.2f)\n",
           p50, p99, b50, b50 > 0 ? (double)p50 / (double)b50 : NAN);
    dr_embedder_free(emb);
    free(vec);
    if (wtps != NULL) {
        printf("\nwillingness-to-pay sweep (valid split): task wtp quality cost_usd\n");
        char *copy = dr_strdup(wtps), *save = NULL;
        for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
            double wtp = strtod(w, NULL);
            run(&t, m, te, n_te, &ts, wtp, s);
            for (size_t k = 0; k < ts.n; k++)
                if (s->n[k])
                    printf("%-16s %8g %.4f %.6f\n", ts.name[k], wtp,
                           s->router_q[k] / (double)s->n[k], s->router_c[k] / (double)s->n[k]);
        }
        free(copy);
        for (size_t k = 0; k < ts.n; k++)
            for (size_t o = 0; o < t.n_options && s->n[k]; o++)
                printf("%-16s always %-36s %.4f %.6f\n", ts.name[k], t.options[o],
                       s->opt_q[k][o] / (double)s->n[k], s->opt_c[k][o] / (double)s->n[k]);
    }
    if (wtps != NULL) {
        /* AIQ per task over a willingness-to-pay sweep, against the single
         * models' hull, on the common cost range of the single models. */
        enum { NW = 41 };
        dynrag_eval_point *rp = calloc(ts.n * NW, sizeof(*rp));
        for (int wi = 0; wi < NW; wi++) {
            double wtp = wi == 0 ? 0.0 : pow(10.0, -1.0 + 5.0 * (wi - 1) / (NW - 2));
            run(&t, m, te, n_te, &ts, wtp, s);
            for (size_t k = 0; k < ts.n; k++)
                if (s->n[k])
                    rp[k * NW + (size_t)wi] = (dynrag_eval_point){s->router_c[k] / (double)s->n[k],
                                                                  s->router_q[k] / (double)s->n[k]};
        }
        run(&t, m, te, n_te, &ts, 0.0, s);
        printf("\nAIQ (willingness-to-pay sweep of %d values 0, 0.1 .. 1e4; cost range of the "
               "single models):\n",
               NW);
        for (size_t k = 0; k < ts.n; k++) {
            if (!s->n[k])
                continue;
            dynrag_eval_point sp[DR_OUTCOMES_MAX_OPTIONS];
            double lo = INFINITY, hi = 0;
            for (size_t o = 0; o < t.n_options; o++) {
                sp[o] = (dynrag_eval_point){s->opt_c[k][o] / (double)s->n[k],
                                            s->opt_q[k][o] / (double)s->n[k]};
                lo = DR_MIN(lo, sp[o].cost);
                hi = DR_MAX(hi, sp[o].cost);
            }
            printf("%-16s router AIQ %.4f  single models' hull AIQ %.4f\n", ts.name[k],
                   dynrag_eval_aiq(rp + k * NW, NW, lo, hi),
                   dynrag_eval_aiq(sp, t.n_options, lo, hi));
        }
        free(rp);
    }
    dr_omodel_free(m);
    if (loto) {
        printf("\nleave one task out (train on the other tasks, score the left-out one):\n");
        double sum_r = 0, sum_b = 0, sum_tb = 0;
        for (size_t k = 0; k < ts.n; k++) {
            n_tr = n_te = 0;
            for (size_t i = 0; i < t.n_rows; i++) {
                const char *nm = t.rows[i].task ? t.rows[i].task : "(none)";
                if (strcmp(nm, ts.name[k]) == 0)
                    te[n_te++] = i;
                else
                    tr[n_tr++] = i;
            }
            fprintf(stderr, "leave out %s\n", ts.name[k]);
            g_phase = "loto";
            if (train(&t, tr, n_tr, dim, lambda, &m) != DYNRAG_OK)
                return 1;
            run(&t, m, te, n_te, &ts, 0.0, s);
            /* The single model best on the training tasks (what a
             * non-routing deployment would pick without seeing the task). */
            double trq[DR_OUTCOMES_MAX_OPTIONS] = {0};
            for (size_t i = 0; i < n_tr; i++)
                for (size_t o = 0; o < t.n_options; o++)
                    trq[o] += t.rows[tr[i]].o[o].quality;
            size_t tb = 0;
            for (size_t o = 1; o < t.n_options; o++)
                if (trq[o] > trq[tb])
                    tb = o;
            double n = (double)s->n[k], b1 = 0;
            for (size_t o = 0; o < t.n_options; o++)
                b1 = DR_MAX(b1, s->opt_q[k][o] / n);
            printf("%-16s router %.4f  best single (on this task) %.4f  best single of the "
                   "training tasks (%s) %.4f  oracle %.4f\n",
                   ts.name[k], s->router_q[k] / n, b1, t.options[tb], s->opt_q[k][tb] / n,
                   s->oracle[k] / n);
            sum_r += s->router_q[k] / n;
            sum_b += b1;
            sum_tb += s->opt_q[k][tb] / n;
            dr_omodel_free(m);
        }
        printf("%-16s router %.4f  best single (per task) %.4f  best single of the training "
               "tasks %.4f\n",
               "MEAN", sum_r / (double)ts.n, sum_b / (double)ts.n, sum_tb / (double)ts.n);
    }
    if (g_dump != NULL && fclose(g_dump) != 0) {
        fprintf(stderr, "--dump: write failed\n");
        return 1;
    }
    free(tr);
    free(te);
    free(s->us);
    free(s);
    dr_outcomes_free(&t);
    return 0;
}
