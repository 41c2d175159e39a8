/*
 * router_baseline.c - trains the hashed-feature logistic-regression
 * query-complexity router (tools/research/logreg.h) on a labelled JSONL train
 * set and reports, for the valid set and each extra evaluation set:
 * accuracy, macro-F1, per-class recall, the confusion matrix and the
 * per-query latency (feature extraction + scoring) p50/p99. Prints
 * Markdown.
 *
 * usage: dynrag_bench_router_baseline --train FILE --eval NAME=FILE [--eval ...]
 *            [--balanced] [--binary] [--bits N] [--epochs N] [--l2 X] [--lr X] [--seed N]
 *            [--no-words] [--no-chars]
 */
#include "core/util.h"
#include "data/labelled.h"
#include "research/logreg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_EVALS 16

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int usage(void)
{
    fprintf(stderr, "usage: dynrag_bench_router_baseline --train FILE --eval NAME=FILE ...\n"
                    "       [--balanced] [--binary] [--bits N] [--epochs N] [--l2 X] [--lr X] [--seed N]\n"
                    "       [--no-words] [--no-chars]\n");
    return 2;
}

/* Evaluates m on set s (labels mapped by name to the train set's names). */
static int evaluate(const dr_logreg *m, const dr_labelled_set *train, const char *name,
                    const dr_labelled_set *s)
{
    int K = (int)train->n_labels;
    size_t conf[DR_LOGREG_MAX_CLASSES][DR_LOGREG_MAX_CLASSES];
    memset(conf, 0, sizeof(conf));
    int64_t *lat = malloc((s->n ? s->n : 1) * sizeof(int64_t));
    if (lat == NULL)
        return 1;
    float probs[DR_LOGREG_MAX_CLASSES];
    dynrag_error err;
    size_t correct = 0;
    for (size_t i = 0; i < s->n; i++) {
        int gold = dr_labelled_find_label(train, s->label[i]);
        if (gold < 0) {
            fprintf(stderr, "%s: example %zu has label '%s' not seen in train\n", name, i,
                    s->label[i]);
            free(lat);
            return 1;
        }
        int64_t t0 = now_ns();
        if (dr_logreg_predict(m, s->text[i], probs, &err) != DYNRAG_OK) {
            fprintf(stderr, "%s: %s\n", name, dynrag_errmsg(&err));
            free(lat);
            return 1;
        }
        int best = 0;
        for (int k = 1; k < K; k++)
            if (probs[k] > probs[best])
                best = k;
        lat[i] = now_ns() - t0;
        conf[gold][best]++;
        correct += best == gold;
    }
    qsort(lat, s->n, sizeof(int64_t), cmp_i64);
    /* Macro-F1 over the classes present in gold or predictions (sklearn's default). */
    double f1sum = 0;
    int f1n = 0;
    printf("### %s (%zu queries)\n\n", name, s->n);
    printf("| accuracy | macro-F1 |");
    for (int k = 0; k < K; k++)
        printf(" recall %s |", train->label_names[k]);
    printf(" p50 us | p99 us |\n|---|---|");
    for (int k = 0; k < K; k++)
        printf("---|");
    printf("---|---|\n");
    double rec[DR_LOGREG_MAX_CLASSES];
    for (int k = 0; k < K; k++) {
        size_t tp = conf[k][k], gold = 0, pred = 0;
        for (int j = 0; j < K; j++) {
            gold += conf[k][j];
            pred += conf[j][k];
        }
        rec[k] = gold ? (double)tp / (double)gold : -1;
        if (gold + pred > 0) {
            f1sum += 2.0 * (double)tp / (double)(gold + pred);
            f1n++;
        }
    }
    printf("| %.4f | %.4f |", s->n ? (double)correct / (double)s->n : 0.0,
           f1n ? f1sum / f1n : 0.0);
    for (int k = 0; k < K; k++) {
        if (rec[k] < 0)
            printf(" - |");
        else
            printf(" %.4f |", rec[k]);
    }
    size_t i50 = s->n ? (s->n - 1) / 2 : 0, i99 = s->n ? (size_t)((double)(s->n - 1) * 0.99) : 0;
    printf(" %.1f | %.1f |\n\n", s->n ? (double)lat[i50] / 1000.0 : 0.0,
           s->n ? (double)lat[i99] / 1000.0 : 0.0);
    printf("Confusion (rows gold, columns predicted):\n\n| gold \\ pred |");
    for (int k = 0; k < K; k++)
        printf(" %s |", train->label_names[k]);
    printf("\n|---|");
    for (int k = 0; k < K; k++)
        printf("---|");
    printf("\n");
    for (int g = 0; g < K; g++) {
        printf("| %s |", train->label_names[g]);
        for (int k = 0; k < K; k++)
            printf(" %zu |", conf[g][k]);
        printf("\n");
    }
    printf("\n");
    free(lat);
    return 0;
}

int main(int argc, char **argv)
{
    const char *train_path = NULL;
    const char *eval_name[MAX_EVALS], *eval_path[MAX_EVALS];
    char *eval_spec[MAX_EVALS];
    int n_eval = 0;
    dr_logreg_options opt;
    dr_logreg_options_init(&opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long ll = 0;
        if (strcmp(a, "--balanced") == 0) {
            opt.balanced = true;
        } else if (strcmp(a, "--binary") == 0) {
            opt.tfidf = false;
        } else if (strcmp(a, "--no-words") == 0) {
            opt.words = false;
        } else if (strcmp(a, "--no-chars") == 0) {
            opt.char_min = 0;
        } else if (v == NULL) {
            return usage();
        } else if (strcmp(a, "--train") == 0) {
            train_path = v;
            i++;
        } else if (strcmp(a, "--eval") == 0) {
            const char *eq = strchr(v, '=');
            if (eq == NULL || eq == v || n_eval == MAX_EVALS)
                return usage();
            eval_spec[n_eval] = dr_strndup(v, (size_t)(eq - v));
            eval_name[n_eval] = eval_spec[n_eval];
            eval_path[n_eval] = eq + 1;
            n_eval++;
            i++;
        } else if (strcmp(a, "--bits") == 0 && dr_parse_ll(v, 10, 24, &ll) == 0) {
            opt.bits = (int)ll;
            i++;
        } else if (strcmp(a, "--epochs") == 0 && dr_parse_ll(v, 1, 1000, &ll) == 0) {
            opt.epochs = (int)ll;
            i++;
        } else if (strcmp(a, "--seed") == 0 && dr_parse_ll(v, 0, INT64_MAX, &ll) == 0) {
            opt.seed = (uint64_t)ll;
            i++;
        } else if (strcmp(a, "--l2") == 0 && dr_parse_double(v, 0, 0.999, &opt.l2) == 0) {
            i++;
        } else if (strcmp(a, "--lr") == 0 && dr_parse_double(v, 1e-9, 100, &opt.lr) == 0) {
            i++;
        } else {
            fprintf(stderr, "bad option or value: %s\n", a);
            return usage();
        }
    }
    if (train_path == NULL || n_eval == 0)
        return usage();

    int status = 1;
    dr_labelled_set *train = NULL, *ev = NULL;
    dr_logreg *m = NULL;
    dynrag_error err;
    if (dr_labelled_load(train_path, &train, &err) != DYNRAG_OK) {
        fprintf(stderr, "%s\n", dynrag_errmsg(&err));
        goto cleanup;
    }
    int64_t t0 = now_ns();
    if (dr_logreg_train(&opt, train->n, (const char *const *)train->text, train->label_id,
                        (int)train->n_labels, &m, &err) != DYNRAG_OK) {
        fprintf(stderr, "%s\n", dynrag_errmsg(&err));
        goto cleanup;
    }
    double train_s = (double)(now_ns() - t0) / 1e9;
    printf("## %s\n\n", train_path);
    printf("Train: %zu examples, %zu labels; features: %s%s, %s, 2^%d buckets; "
           "SGD %d epochs, lr %g, l2 %g, seed %llu%s; training took %.2f s.\n\n",
           train->n, train->n_labels, opt.words ? "word 1-2-grams" : "",
           opt.char_min ? " + char 3-5-grams" : "", opt.tfidf ? "TF-IDF" : "binary", opt.bits,
           opt.epochs, opt.lr, opt.l2, (unsigned long long)opt.seed,
           opt.balanced ? ", class-balanced loss" : "", train_s);
    for (int e = 0; e < n_eval; e++) {
        if (dr_labelled_load(eval_path[e], &ev, &err) != DYNRAG_OK) {
            fprintf(stderr, "%s\n", dynrag_errmsg(&err));
            goto cleanup;
        }
        if (evaluate(m, train, eval_name[e], ev) != 0)
            goto cleanup;
        dr_labelled_free(ev);
        ev = NULL;
    }
    status = 0;
cleanup:
    for (int e = 0; e < n_eval; e++)
        free(eval_spec[e]);
    dr_labelled_free(ev);
    dr_labelled_free(train);
    dr_logreg_free(m);
    return status;
}
