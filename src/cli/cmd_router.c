/* cmd_router.c - `dynrag router train|predict|eval`: the query-complexity
 * classifier (include/dynrag/classifier.h, docs/classifier.md). */
#include "cli.h"

#include "dynrag/classifier.h"
#include "dynrag/outcomes.h"
#include "dynrag/train.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct train_view {
    bool tty;
    bool drawn;
} train_view;

static void train_progress(void *user, const dynrag_train_progress *p)
{
    train_view *v = user;
    if (p->valid_macro_f1 >= 0) {
        if (v->drawn)
            fputc('\n', stderr);
        v->drawn = false;
        fprintf(stderr, "epoch %d/%d: loss %.4f acc %.4f  %.0f ex/s  valid macro-F1 %.4f acc "
                "%.4f\n", p->epoch, p->epochs, p->loss, p->accuracy, p->examples_per_sec,
                p->valid_macro_f1, p->valid_accuracy);
        return;
    }
    if (!v->tty)
        return;
    int width = 24, fill = p->total ? (int)((double)width * (double)p->done / (double)p->total) : 0;
    fprintf(stderr, "\repoch %d/%d [%.*s%*s] %llu/%llu  loss %.4f  acc %.4f  %.0f ex/s  ",
            p->epoch, p->epochs, fill, "########################", width - fill, "",
            (unsigned long long)p->done, (unsigned long long)p->total, p->loss, p->accuracy,
            p->examples_per_sec);
    fflush(stderr);
    v->drawn = true;
}

static void outcome_progress(void *user, const char *phase, size_t done, size_t total)
{
    train_view *v = user;
    if (!v->tty)
        return;
    fprintf(stderr, "\r%-8s %zu/%zu   ", phase, done, total);
    fflush(stderr);
    v->drawn = true;
}

/* `router train --kind KIND --data FILE [--data FILE...] [--valid FILE] --out M`. */
static int router_train_outcomes(int argc, char **argv)
{
    const char *cmd = "router train";
    dynrag_outcome_router_options o;
    dynrag_outcome_router_options_init(&o);
    const char *data[65]; /* one more for --valid in the output check */
    o.kind = NULL; /* --kind is required */
    o.data = data;
    o.seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n = 0;
        if (a[0] != '-' || a[1] != '-')
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        if (v == NULL)
            return cli_usage_error(cmd, "%s needs a value", a);
        i++;
        if (strcmp(a, "--kind") == 0) {
            o.kind = v;
        } else if (strcmp(a, "--data") == 0) {
            if (o.n_data == sizeof(data) / sizeof(data[0]) - 1)
                return cli_usage_error(cmd, "at most 64 --data files");
            data[o.n_data++] = v;
        } else if (strcmp(a, "--valid") == 0) {
            o.valid = v;
        } else if (strcmp(a, "--out") == 0) {
            o.out_path = v;
        } else if (strcmp(a, "--seed") == 0) {
            if (!cli_parse_int(cmd, a, v, 0, INT64_MAX, &n))
                return CLI_USAGE;
            o.seed = (uint64_t)n;
        } else if (strcmp(a, "--dim") == 0) {
            if (!cli_parse_int(cmd, a, v, 16, 4096, &n))
                return CLI_USAGE;
            o.dim = (int)n;
        } else if (strcmp(a, "--clusters") == 0) {
            if (!cli_parse_int(cmd, a, v, 0, 256, &n))
                return CLI_USAGE;
            o.clusters = (int)n;
        } else if (strcmp(a, "--hidden") == 0) {
            if (!cli_parse_int(cmd, a, v, 0, 1024, &n))
                return CLI_USAGE;
            o.hidden = (int)n;
        } else if (strcmp(a, "--lambda") == 0) {
            if (!cli_parse_double(cmd, a, v, 1e-9, 1e9, &o.lambda))
                return CLI_USAGE;
        } else if (strcmp(a, "--method") == 0) {
            if (strcmp(v, "ridge") != 0 && strcmp(v, "knn") != 0)
                return cli_usage_error(cmd, "--method %s: unknown (expected ridge or knn)", v);
            o.method = v;
        } else if (strcmp(a, "--k") == 0) {
            if (!cli_parse_int(cmd, a, v, 1, 1000, &n))
                return CLI_USAGE;
            o.k = (int)n;
        } else {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        }
    }
    if (o.kind == NULL || o.n_data == 0 || o.out_path == NULL)
        return cli_usage_error(cmd, "--kind, --data and --out are required");
    data[o.n_data] = o.valid;
    if (!cli_check_output(cmd, "--out", o.out_path, data, o.n_data + 1, true))
        return CLI_FAIL;
    bool scorer = strcmp(o.kind, "scorer") == 0;
    if (strcmp(o.kind, "predict") != 0 && strcmp(o.kind, "cluster") != 0 &&
        strcmp(o.kind, "distill") != 0 && strcmp(o.kind, "mf") != 0 &&
        strcmp(o.kind, "preference") != 0 && strcmp(o.kind, "contrastive") != 0 && !scorer)
        return cli_usage_error(cmd,
                               "--kind %s: unknown (expected predict, cluster, distill, mf, "
                               "preference, contrastive or scorer)",
            o.kind);
    train_view view = {cli_progress_wanted(), false};
    o.progress = outcome_progress;
    o.progress_user = &view;
    dynrag_outcome_router_result r;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_outcome_router_train(&o, &r, &err);
    if (view.drawn)
        fputc('\n', stderr);
    if (rc != DYNRAG_OK) {
        cli_error(cmd, "%s", dynrag_errmsg(&err));
        return rc == DYNRAG_ERR_INVALID ? CLI_USAGE : CLI_FAIL;
    }
    if (scorer) {
        printf("wrote %s: answer scorer, %zu options, %zu parameters, %zu training rows, lambda "
               "%g, AUC: train %.4f, validation %.4f (%zu rows), %.1f s\n",
               o.out_path, r.n_options, r.n_params, r.rows, r.lambda, r.train_quality,
               r.valid_quality, r.valid_rows, r.seconds);
        return CLI_OK;
    }
    char knobs[96];
    if (r.k > 0 && !isnan(r.local_weight))
        snprintf(knobs, sizeof(knobs), "k %d, local weight %g", r.k, r.local_weight);
    else if (r.k > 0)
        snprintf(knobs, sizeof(knobs), "k %d", r.k);
    else
        snprintf(knobs, sizeof(knobs), "lambda %g", r.lambda);
    printf("wrote %s: %s router, %zu options, %zu parameters, %zu training rows, %s, "
           "routed quality: train %.4f, validation %.4f (%zu rows), %.1f s\n",
           o.out_path, o.kind, r.n_options, r.n_params, r.rows, knobs, r.train_quality,
           r.valid_quality, r.valid_rows, r.seconds);
    return CLI_OK;
}

static int router_train(int argc, char **argv)
{
    const char *cmd = "router train";
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--kind") == 0)
            return router_train_outcomes(argc, argv);
    dynrag_train_options o;
    dynrag_train_options_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n = 0;
        if (a[0] != '-' || a[1] != '-')
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        if (v == NULL)
            return cli_usage_error(cmd, "%s needs a value", a);
        i++;
        if (strcmp(a, "--train") == 0)
            o.train_path = v;
        else if (strcmp(a, "--valid") == 0)
            o.valid_path = v;
        else if (strcmp(a, "--out") == 0)
            o.out_path = v;
        else if (strcmp(a, "--config") == 0)
            o.config = v;
        else if (strcmp(a, "--seed") == 0) {
            if (!cli_parse_int(cmd, a, v, 0, INT64_MAX, &n))
                return CLI_USAGE;
            o.seed = (uint64_t)n;
        } else if (strcmp(a, "--threads") == 0) {
            if (!cli_parse_int(cmd, a, v, 1, 64, &n))
                return CLI_USAGE;
            o.threads = (int)n;
        } else
            return cli_usage_error(cmd, "unknown option '%s'", a);
    }
    if (!o.train_path || !o.valid_path || !o.out_path)
        return cli_usage_error(cmd, "--train, --valid and --out are required");
    const char *ins[] = {o.train_path, o.valid_path, o.config};
    if (!cli_check_output(cmd, "--out", o.out_path, ins, 2, true))
        return CLI_FAIL;
    train_view view = {cli_progress_wanted(), false};
    o.progress = train_progress;
    o.progress_user = &view;
    dynrag_train_result r;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_classifier_train(&o, &r, &err);
    if (view.drawn)
        fputc('\n', stderr);
    if (rc != DYNRAG_OK) {
        cli_error(cmd, "%s", dynrag_errmsg(&err));
        return CLI_FAIL;
    }
    printf("wrote %s: %zu parameters, best epoch %d of %d, valid macro-F1 %.4f, accuracy %.4f, "
           "%.1f s (%.0f examples/s)\n",
           o.out_path, r.n_params, r.best_epoch, r.epochs_run, r.best_valid_macro_f1,
           r.best_valid_accuracy, r.seconds, r.examples_per_sec);
    return CLI_OK;
}

/* Opens --model and resolves --head; prints errors. */
static int open_model(const char *cmd, const char *path, const char *head_name,
                      dynrag_classifier **c, int *head)
{
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_classifier_open(path, c, &err) != DYNRAG_OK) {
        cli_error(cmd, "%s", dynrag_errmsg(&err));
        return CLI_FAIL;
    }
    *head = dynrag_classifier_head(*c, head_name);
    if (*head < 0) {
        cli_error(cmd, "%s: no head named '%s'", path, head_name);
        dynrag_classifier_close(*c);
        *c = NULL;
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* Prints one prediction as text or a JSON line. */
static int print_prediction(const char *cmd, const dynrag_classifier *c, int head,
                            const char *text, bool json)
{
    float probs[64];
    size_t K = dynrag_classifier_n_labels(c, head);
    dynrag_error err;
    dynrag_error_clear(&err);
    if (K > 64 || dynrag_classifier_predict(c, head, text, probs, &err) != DYNRAG_OK) {
        cli_error(cmd, "%s", dynrag_errmsg(&err));
        return CLI_FAIL;
    }
    size_t best = 0;
    for (size_t k = 1; k < K; k++)
        if (probs[k] > probs[best])
            best = k;
    if (!json) {
        printf("%s", dynrag_classifier_label(c, head, best));
        for (size_t k = 0; k < K; k++)
            printf(" %s=%.4f", dynrag_classifier_label(c, head, k), probs[k]);
        printf("\n");
        return CLI_OK;
    }
    cJSON *o = cJSON_CreateObject(), *p = NULL;
    char *s = NULL;
    if (o && cJSON_AddStringToObject(o, "text", text) &&
        cJSON_AddStringToObject(o, "head", dynrag_classifier_head_name(c, head)) &&
        cJSON_AddStringToObject(o, "label", dynrag_classifier_label(c, head, best)) &&
        (p = cJSON_AddObjectToObject(o, "probs")) != NULL) {
        bool ok = true;
        for (size_t k = 0; k < K && ok; k++)
            ok = cJSON_AddNumberToObject(p, dynrag_classifier_label(c, head, k),
                                         (double)(int)(probs[k] * 1e6f + 0.5f) / 1e6) != NULL;
        s = ok ? cJSON_PrintUnformatted(o) : NULL;
    }
    cJSON_Delete(o);
    if (!s) {
        cli_error(cmd, "out of memory");
        return CLI_FAIL;
    }
    printf("%s\n", s);
    free(s);
    return CLI_OK;
}

/* --input FILE.jsonl: one {"text": ...} object (or a JSON string) a line. */
static int predict_file(const char *cmd, const dynrag_classifier *c, int head, const char *path,
                        bool json)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        cli_error(cmd, "%s: cannot open", path);
        return CLI_FAIL;
    }
    char *line = NULL;
    size_t cap = 0;
    long long n;
    long lineno = 0;
    int rc = CLI_OK;
    while ((n = cli_getline(&line, &cap, f, (size_t)1 << 20)) >= 0) {
        lineno++;
        size_t k = strspn(line, " \t\r\n");
        if (line[k] == '\0')
            continue;
        cJSON *o = cJSON_Parse(line);
        const cJSON *t = cJSON_IsString(o) ? o : cJSON_GetObjectItemCaseSensitive(o, "text");
        if (!cJSON_IsString(t)) {
            cli_error(cmd, "%s:%ld: expected {\"text\": \"...\"} or a JSON string", path, lineno);
            cJSON_Delete(o);
            rc = CLI_FAIL;
            break;
        }
        rc = print_prediction(cmd, c, head, t->valuestring, json);
        cJSON_Delete(o);
        if (rc != CLI_OK)
            break;
    }
    if (rc == CLI_OK)
        rc = cli_line_error(cmd, path, (unsigned long long)lineno + 1, n, (size_t)1 << 20);
    free(line);
    if (f != stdin)
        fclose(f);
    return rc;
}

static int router_predict(int argc, char **argv)
{
    const char *cmd = "router predict";
    const char *model = NULL, *head_name = NULL, *input = NULL, *query = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            json = true;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            if (i + 2 != argc)
                return cli_usage_error(cmd, "expected one query after --");
            query = argv[i + 1];
            break;
        }
        if (a[0] != '-' || a[1] != '-') {
            if (query)
                return cli_usage_error(cmd, "expected one query (quote it)");
            query = a;
            continue;
        }
        if (v == NULL)
            return cli_usage_error(cmd, "%s needs a value", a);
        i++;
        if (strcmp(a, "--model") == 0)
            model = v;
        else if (strcmp(a, "--head") == 0)
            head_name = v;
        else if (strcmp(a, "--input") == 0)
            input = v;
        else
            return cli_usage_error(cmd, "unknown option '%s'", a);
    }
    if (!model)
        return cli_usage_error(cmd, "--model is required");
    if ((query == NULL) == (input == NULL))
        return cli_usage_error(cmd, "give either a query or --input FILE");
    dynrag_classifier *c = NULL;
    int head = 0;
    int rc = open_model(cmd, model, head_name, &c, &head);
    if (rc != CLI_OK)
        return rc;
    rc = input ? predict_file(cmd, c, head, input, json) : print_prediction(cmd, c, head, query, json);
    dynrag_classifier_close(c);
    return rc;
}

static int router_eval(int argc, char **argv)
{
    const char *cmd = "router eval";
    const char *model = NULL, *head_name = NULL, *data = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            json = true;
            continue;
        }
        if (a[0] != '-' || a[1] != '-')
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        if (v == NULL)
            return cli_usage_error(cmd, "%s needs a value", a);
        i++;
        if (strcmp(a, "--model") == 0)
            model = v;
        else if (strcmp(a, "--head") == 0)
            head_name = v;
        else if (strcmp(a, "--data") == 0)
            data = v;
        else
            return cli_usage_error(cmd, "unknown option '%s'", a);
    }
    if (!model || !data)
        return cli_usage_error(cmd, "--model and --data are required");
    dynrag_classifier *c = NULL;
    int head = 0;
    int rc = open_model(cmd, model, head_name, &c, &head);
    if (rc != CLI_OK)
        return rc;
    dynrag_eval_report *r = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_classifier_eval(c, head, data, &r, &err) != DYNRAG_OK) {
        cli_error(cmd, "%s", dynrag_errmsg(&err));
        dynrag_classifier_close(c);
        return CLI_FAIL;
    }
    size_t K = r->n_labels;
    if (json) {
        printf("{\"n\":%zu,\"skipped\":%zu,\"accuracy\":%.4f,\"macro_f1\":%.4f,\"recall\":{", r->n,
               r->n_skipped, r->accuracy, r->macro_f1);
        for (size_t k = 0; k < K; k++)
            printf("%s\"%s\":%.4f", k ? "," : "", dynrag_classifier_label(c, head, k), r->recall[k]);
        printf("},\"confusion\":[");
        for (size_t k = 0; k < K; k++) {
            printf("%s[", k ? "," : "");
            for (size_t j = 0; j < K; j++)
                printf("%s%llu", j ? "," : "", (unsigned long long)r->confusion[k * K + j]);
            printf("]");
        }
        printf("]}\n");
    } else {
        printf("examples: %zu (skipped %zu)\naccuracy: %.4f\nmacro-F1: %.4f\n", r->n, r->n_skipped,
               r->accuracy, r->macro_f1);
        printf("%-10s %8s %9s %8s\n", "label", "recall", "precision", "F1");
        for (size_t k = 0; k < K; k++)
            printf("%-10s %8.4f %9.4f %8.4f\n", dynrag_classifier_label(c, head, k), r->recall[k],
                   r->precision[k], r->f1[k]);
        printf("confusion (rows = true, columns = predicted):\n%-10s", "");
        for (size_t j = 0; j < K; j++)
            printf(" %8s", dynrag_classifier_label(c, head, j));
        printf("\n");
        for (size_t k = 0; k < K; k++) {
            printf("%-10s", dynrag_classifier_label(c, head, k));
            for (size_t j = 0; j < K; j++)
                printf(" %8llu", (unsigned long long)r->confusion[k * K + j]);
            printf("\n");
        }
    }
    dynrag_eval_report_free(r);
    dynrag_classifier_close(c);
    return CLI_OK;
}

int cmd_router(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("router", "expected a subcommand: train, predict or eval");
    const char *sub = argv[1];
    if (strcmp(sub, "train") == 0)
        return router_train(argc - 1, argv + 1);
    if (strcmp(sub, "predict") == 0)
        return router_predict(argc - 1, argv + 1);
    if (strcmp(sub, "eval") == 0)
        return router_eval(argc - 1, argv + 1);
    return cli_usage_error("router", "unknown subcommand '%s' (train, predict, eval)", sub);
}
