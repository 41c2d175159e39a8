/* cmd_query.c - `dynrag query`, `dynrag feedback` and `dynrag log`. */
#define _GNU_SOURCE
#include "cli.h"

#include "dynrag/engine.h"
#include "dynrag/pipeline.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Loads a pipeline, printing every diagnostic on failure. */
static dynrag_pipeline *load_pipeline(const char *cmd, const char *path)
{
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_pipeline_load(path, &p, &d, &err);
    if (rc != DYNRAG_OK) {
        char *text = d ? dynrag_diags_format(d) : NULL;
        if (text && *text)
            fputs(text, stderr);
        else
            cli_error(cmd, "%s", dynrag_errmsg(&err));
        free(text);
    }
    dynrag_diags_free(d);
    return p;
}

/* The human-readable result. Every string that may come from a document,
 * a model or an endpoint (answer, titles, ids, reasons) goes through
 * cli_print_safe(): none of it can drive the terminal. */
static void print_human(const dynrag_result *r)
{
    const char *a = dynrag_result_answer(r);
    cli_print_safe(stdout, a ? a : "", a ? strlen(a) : 0, true);
    putchar('\n');
    size_t nc = dynrag_result_n_citations(r);
    if (nc > 0) {
        printf("\nSources:\n");
        for (size_t i = 0; i < nc; i++) {
            const dynrag_citation *c = dynrag_result_citation(r, i);
            printf("  [%zu] ", i + 1);
            cli_puts_safe(stdout, c->title && *c->title ? c->title : c->doc_id);
            fputs("  (", stdout);
            cli_puts_safe(stdout, c->doc_id);
            fputs(")\n", stdout);
        }
    }
    printf("\nRoute:\n");
    for (size_t i = 0; i < dynrag_result_n_decisions(r); i++) {
        const dynrag_decision *d = dynrag_result_decision(r, i);
        if (d->skipped) {
            printf("  %-15s (skipped: ", d->stage);
            cli_puts_safe(stdout, d->reason);
            fputs(")\n", stdout);
        } else {
            printf("  %-15s %-12s %-10s %8.0f us  ", d->stage, d->choice, d->router,
                   d->latency_us);
            cli_puts_safe(stdout, d->reason);
            putchar('\n');
        }
    }
    const dynrag_totals *t = dynrag_result_totals(r);
    printf("\nTotals: %.1f ms, $%.6f, %.4f Wh, tokens in %lld out %lld, %d retrieval step(s), "
           "%d generator call(s)%s\n",
           t->latency_ms, t->usd, t->energy_wh, t->input_tokens, t->output_tokens,
           t->retrieval_steps, t->generator_calls, t->over_budget ? ", OVER BUDGET" : "");
    fputs("Query id: ", stdout);
    cli_puts_safe(stdout, dynrag_result_id(r));
    putchar('\n');
}

/* Reads a question from one JSONL line: {"question"|"query"|"text", "id"|"_id"?}. */
static int parse_question(const char *line, size_t len, char **q, char **id, char *why,
                          size_t whysize)
{
    *q = *id = NULL;
    cJSON *o = cli_parse_json_line(line, len, why, whysize);
    if (o == NULL)
        return -1;
    snprintf(why, whysize, "expected a JSON object with \"question\" (or \"query\", \"text\")");
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return -1;
    }
    const char *keys[] = {"question", "query", "text", "question_text"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && *q == NULL; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
        if (cJSON_IsString(v))
            *q = strdup(v->valuestring);
    }
    const char *idkeys[] = {"id", "_id", "question_id", "qid"};
    for (size_t i = 0; i < sizeof(idkeys) / sizeof(idkeys[0]) && *id == NULL; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(o, idkeys[i]);
        if (cJSON_IsString(v))
            *id = strdup(v->valuestring);
        else if (cJSON_IsNumber(v) && asprintf(id, "%.0f", v->valuedouble) < 0)
            *id = NULL;
    }
    cJSON_Delete(o);
    return *q ? 0 : -1;
}

static int run_batch(dynrag_engine *e, const char *in_path, const char *out_path,
                     const dynrag_budget *budget)
{
    const char *ins[] = {in_path};
    if (!cli_check_output("query", "--out", out_path, ins, 1, false))
        return CLI_FAIL;
    FILE *in = fopen(in_path, "rb");
    if (in == NULL) {
        cli_error("query", "%s: cannot open: %s", in_path, strerror(errno));
        return CLI_FAIL;
    }
    /* Count lines first for the progress bar, when the input can be read
     * twice (a pipe cannot: then the bar counts without a total). */
    unsigned long long total = 0;
    struct stat st;
    if (fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode)) {
        int ch, last = '\n';
        while ((ch = fgetc(in)) != EOF) {
            if (ch == '\n')
                total++;
            last = ch;
        }
        if (last != '\n')
            total++;
        rewind(in);
    }
    /* Results are streamed (a long batch can be followed, and what ran is
     * kept if a later line is bad); a write error stops the batch. */
    FILE *out = strcmp(out_path, "-") == 0 ? stdout : fopen(out_path, "wb");
    if (out == NULL) {
        cli_error("query", "%s: cannot create: %s", out_path, strerror(errno));
        fclose(in);
        return CLI_FAIL;
    }
    cli_progress prog;
    cli_progress_init(&prog, "query");
    char *line = NULL;
    size_t cap = 0;
    long long len;
    unsigned long long lineno = 0, done = 0, failed = 0;
    int rc = CLI_OK;
    while ((len = cli_getline(&line, &cap, in, CLI_MAX_LINE)) >= 0) {
        lineno++;
        if (len <= 1)
            continue;
        char *q, *id, why[160];
        if (parse_question(line, (size_t)len, &q, &id, why, sizeof(why)) != 0) {
            cli_error("query", "%s:%llu: %s", in_path, lineno, why);
            free(q);
            free(id);
            rc = CLI_FAIL;
            break;
        }
        dynrag_query_options qo;
        dynrag_query_options_init(&qo);
        qo.query_id = id;
        qo.budget = budget;
        dynrag_result *r = NULL;
        dynrag_error err;
        dynrag_error_clear(&err);
        if (dynrag_engine_query(e, q, &qo, &r, &err) == DYNRAG_OK) {
            fprintf(out, "%s\n", dynrag_result_json(r));
        } else {
            failed++;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "id", id ? id : "");
            cJSON_AddStringToObject(o, "query", q);
            cJSON_AddStringToObject(o, "error", dynrag_errmsg(&err));
            char *s = cJSON_PrintUnformatted(o);
            if (s)
                fprintf(out, "%s\n", s);
            free(s);
            cJSON_Delete(o);
            cli_error("query", "%s:%llu: %s", in_path, lineno, dynrag_errmsg(&err));
        }
        dynrag_result_free(r);
        free(q);
        free(id);
        cli_progress_cb(&prog, ++done, total, "queries");
        if (ferror(out)) {
            cli_error("query", "%s: write error after %llu results: %s; stopped", out_path, done,
                      strerror(errno));
            rc = CLI_FAIL;
            break;
        }
    }
    cli_progress_done(&prog);
    if (rc == CLI_OK)
        rc = cli_line_error("query", in_path, lineno + 1, len, CLI_MAX_LINE);
    free(line);
    fclose(in);
    if (fflush(out) != 0 || ferror(out)) {
        if (rc == CLI_OK)
            cli_error("query", "%s: write error: %s", out_path, strerror(errno));
        rc = CLI_FAIL;
    }
    if (out != stdout && fclose(out) != 0 && rc == CLI_OK) {
        cli_error("query", "%s: write error: %s", out_path, strerror(errno));
        rc = CLI_FAIL;
    }
    fprintf(stderr, "dynrag query: %llu queries, %llu failed\n", done, failed);
    if (failed > 0)
        rc = CLI_FAIL;
    return rc;
}

int cmd_query(int argc, char **argv)
{
    static const struct option opts[] = {
        {"pipeline", required_argument, NULL, 'p'}, {"index", required_argument, NULL, 'i'},
        {"log", required_argument, NULL, 'l'},      {"no-log", no_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},           {"route-only", no_argument, NULL, 'r'},
        {"questions", required_argument, NULL, 'q'}, {"out", required_argument, NULL, 'o'},
        {"budget-usd", required_argument, NULL, 'U'}, {"budget-ms", required_argument, NULL, 'M'},
        {"budget-wh", required_argument, NULL, 'W'}, {NULL, 0, NULL, 0}};
    const char *pipeline = NULL, *questions = NULL, *out = NULL;
    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    bool json = false, route_only = false;
    dynrag_budget budget = {NAN, NAN, NAN};
    bool has_budget = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+p:i:l:njrq:o:U:M:W:", opts, NULL)) != -1) {
        switch (c) {
        case 'p': pipeline = optarg; break;
        case 'i': eo.index_dir = optarg; break;
        case 'l': eo.log_path = optarg; break;
        case 'n': eo.no_log = true; break;
        case 'j': json = true; break;
        case 'r': route_only = true; break;
        case 'q': questions = optarg; break;
        case 'o': out = optarg; break;
        case 'U':
            if (!cli_parse_double("query", "--budget-usd", optarg, 0, 1e9, &budget.usd))
                return CLI_USAGE;
            has_budget = true;
            break;
        case 'M':
            if (!cli_parse_double("query", "--budget-ms", optarg, 0, 1e9, &budget.latency_ms))
                return CLI_USAGE;
            has_budget = true;
            break;
        case 'W':
            if (!cli_parse_double("query", "--budget-wh", optarg, 0, 1e9, &budget.energy_wh))
                return CLI_USAGE;
            has_budget = true;
            break;
        default:
            return cli_usage_error("query", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (pipeline == NULL)
        return cli_usage_error("query", "--pipeline FILE is required");
    int n_pos = argc - optind;
    if (questions == NULL && n_pos != 1)
        return cli_usage_error("query", "expected one question (or --questions FILE.jsonl)");
    if (questions != NULL && (n_pos != 0 || out == NULL))
        return cli_usage_error("query", "--questions needs --out FILE.jsonl and no question argument");
    if (questions == NULL && out != NULL)
        return cli_usage_error("query", "--out goes with --questions");

    dynrag_pipeline *p = load_pipeline("query", pipeline);
    if (p == NULL)
        return CLI_FAIL;
    dynrag_engine *e = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = CLI_OK;
    if (dynrag_engine_open(p, &eo, &e, &err) != DYNRAG_OK) {
        cli_error("query", "%s", dynrag_errmsg(&err));
        rc = CLI_FAIL;
        goto cleanup;
    }
    if (questions) {
        rc = run_batch(e, questions, out, has_budget ? &budget : NULL);
        goto cleanup;
    }
    dynrag_query_options qo;
    dynrag_query_options_init(&qo);
    qo.route_only = route_only;
    qo.budget = has_budget ? &budget : NULL;
    dynrag_result *r = NULL;
    if (dynrag_engine_query(e, argv[optind], &qo, &r, &err) != DYNRAG_OK) {
        cli_error("query", "%s", dynrag_errmsg(&err));
        rc = CLI_FAIL;
        goto cleanup;
    }
    if (json)
        printf("%s\n", dynrag_result_json(r));
    else
        print_human(r);
    dynrag_result_free(r);
cleanup:
    /* Router state (bandit route counts) that cannot be saved fails the
     * command: dynrag_engine_close() would only log it. */
    if (e != NULL && dynrag_engine_save(e, &err) != DYNRAG_OK) {
        cli_error("query", "%s", dynrag_errmsg(&err));
        rc = CLI_FAIL;
    }
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
    return rc;
}

/* Finds the route-log record with this id; returns a malloc'ed line or NULL. */
static char *find_record(const char *log_path, const char *id)
{
    FILE *f = fopen(log_path, "rb");
    if (f == NULL)
        return NULL;
    char *line = NULL, *found = NULL;
    size_t cap = 0;
    /* Ids JSON writes unescaped can be looked for in the raw line first. */
    bool plain = strpbrk(id, "\"\\") == NULL;
    for (const char *c = id; plain && *c; c++)
        plain = (unsigned char)*c >= 0x20;
    /* A longer line (or an endless one) is no route-log record: the
     * search stops there. */
    while (cli_getline(&line, &cap, f, CLI_MAX_LINE) >= 0) {
        if (plain && strstr(line, id) == NULL)
            continue; /* parse only the lines that can hold the id */
        cJSON *o = cJSON_Parse(line);
        cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "id");
        if (cJSON_IsString(v) && strcmp(v->valuestring, id) == 0) {
            free(found);
            found = strdup(line); /* the last record with this id wins */
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    return found;
}

int cmd_feedback(int argc, char **argv)
{
    static const struct option opts[] = {{"pipeline", required_argument, NULL, 'p'},
                                         {"log", required_argument, NULL, 'l'},
                                         {"query-id", required_argument, NULL, 'q'},
                                         {"reward", required_argument, NULL, 'r'},
                                         {NULL, 0, NULL, 0}};
    const char *pipeline = NULL, *log = NULL, *qid = NULL, *reward_s = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+p:l:q:r:", opts, NULL)) != -1) {
        switch (c) {
        case 'p': pipeline = optarg; break;
        case 'l': log = optarg; break;
        case 'q': qid = optarg; break;
        case 'r': reward_s = optarg; break;
        default:
            return cli_usage_error("feedback", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!pipeline || !qid || !reward_s || optind != argc)
        return cli_usage_error("feedback", "--pipeline, --query-id and --reward are required");
    double reward;
    if (!cli_parse_double("feedback", "--reward", reward_s, -1e6, 1e6, &reward))
        return CLI_USAGE;
    dynrag_pipeline *p = load_pipeline("feedback", pipeline);
    if (p == NULL)
        return CLI_FAIL;
    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    eo.log_path = log;
    dynrag_engine *e = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = CLI_FAIL;
    char *rec = NULL;
    if (dynrag_engine_open(p, &eo, &e, &err) != DYNRAG_OK) {
        cli_error("feedback", "%s", dynrag_errmsg(&err));
        goto cleanup;
    }
    const char *log_path = dynrag_engine_log_path(e);
    if (log_path == NULL) {
        cli_error("feedback", "the pipeline has no `log:`; pass --log FILE");
        goto cleanup;
    }
    rec = find_record(log_path, qid);
    if (rec == NULL) {
        cli_error("feedback", "query id '%s' not found in %s", qid, log_path);
        goto cleanup;
    }
    if (dynrag_engine_feedback_record(e, rec, reward, &err) != DYNRAG_OK ||
        dynrag_engine_save(e, &err) != DYNRAG_OK) {
        cli_error("feedback", "%s", dynrag_errmsg(&err));
        goto cleanup;
    }
    printf("feedback %.6g recorded for %s\n", reward, qid);
    rc = CLI_OK;
cleanup:
    free(rec);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
    return rc;
}

int cmd_log(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "summary") != 0)
        return cli_usage_error("log", "expected `dynrag log summary [--json] FILE`");
    bool json = false;
    const char *path = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (argv[i][0] == '-')
            return cli_usage_error("log", "unknown option '%s'", argv[i]);
        else if (path == NULL)
            path = argv[i];
        else
            return cli_usage_error("log", "expected one FILE");
    }
    if (path == NULL)
        return cli_usage_error("log", "expected a route-log FILE");
    char *report = NULL, *js = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_log_summary(path, &report, json ? &js : NULL, &err) != DYNRAG_OK) {
        cli_error("log", "%s", dynrag_errmsg(&err));
        return CLI_FAIL;
    }
    fputs(json ? js : report, stdout);
    if (json)
        fputc('\n', stdout);
    free(report);
    free(js);
    return CLI_OK;
}
