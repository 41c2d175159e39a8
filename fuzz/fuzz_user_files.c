/*
 * fuzz_user_files.c - libFuzzer harness for the files users hand to the
 * CLI besides pipelines, weights and indexes: corpus inputs (JSONL, HTML,
 * Markdown, text) and the chunker, route logs, QA evaluation data, qrels
 * and TREC runs (with the metrics over them), labelled data sets and
 * outcome tables.
 *
 *   byte 0   which reader (mod 10, below); the rest is the file's content
 *   0 corpus JSONL      dr_ingest_input(.jsonl), then each text chunked
 *   1 HTML file         dr_ingest_input(.html); dr_html_to_text on the
 *                       sanitised bytes directly as well
 *   2 Markdown file     dr_ingest_input(.md)
 *   3 text file         dr_ingest_input(.txt)
 *   4 route log         dynrag_log_summary (report and JSON)
 *   5 QA data           dr_eval_data_load (QA JSONL)
 *   6 qrels             dynrag_qrels_load, then the metrics against a fixed run
 *   7 TREC run          dynrag_run_load, then the metrics against fixed qrels
 *   8 labelled set      dr_labelled_load
 *   9 outcome table     dr_outcomes_load
 *  10 RouterBench CSV   dynrag_convert_routerbench, then the table it wrote
 *                       must load (dr_outcomes_load) with as many rows
 *  11 RouterDC JSON     dynrag_convert_routerdc, the same (the file is named
 *                       by byte 1: a fractional task such as gsm8k or not)
 *
 * Every reader must either fail with an error or succeed; crashes,
 * sanitizer reports, leaks and hangs are findings, and so is an invariant
 * the harness checks failing (abort): texts handed on are NUL-free valid
 * UTF-8, chunk spans are ordered, inside the text and not empty, metric
 * values are finite and within [0, 1]. Build and run with scripts/fuzz.sh
 * (`scripts/fuzz.sh 300 user_files`); seeds: fuzz/corpus/user_files/.
 */
#define _GNU_SOURCE
#include "dynrag/alloc.h"
#include "dynrag/engine.h"
#include "dynrag/log.h"
#include "dynrag/metrics.h"
#include "dynrag/outcomes.h"
#include "core/alloc.h"
#include "core/util.h"
#include "data/labelled.h"
#include "eval/eval_internal.h"
#include "eval/outcomes.h"
#include "retrieve/chunk.h"
#include "retrieve/html.h"
#include "retrieve/ingest.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static char fixed_qrels[128], fixed_run[128];

/* Aborts unless s[0..n) is valid UTF-8 without NUL bytes (overlongs,
 * surrogates and code points past U+10FFFF count as invalid). */
static void check_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c == 0)
            abort();
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
        if (len == 0 || c > 0xf4 || i + len > n)
            abort();
        unsigned cp = c & (0x3fu >> (len - 1));
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                abort();
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            abort();
        i += len;
    }
}

static void setup(void)
{
    dynrag_log_set(NULL, NULL, DYNRAG_LOG_ERROR); /* silenced: errors are expected */
    snprintf(dir, sizeof(dir), "/tmp/fuzz_user_files.XXXXXX");
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(fixed_qrels, sizeof(fixed_qrels), "%s/fixed.qrels", dir);
    snprintf(fixed_run, sizeof(fixed_run), "%s/fixed.run", dir);
    static const char qrels[] = "q1 0 d1 1\nq1 0 d2 2\nq2 0 d3 1\nq3 0 d9 0\n";
    static const char run[] = "q1 Q0 d2 1 9.5 r\nq1 Q0 d7 2 3 r\nq2 Q0 d3 1 1 r\n"
                              "q3 Q0 d9 1 1 r\n";
    if (fuzz_write_all(fixed_qrels, qrels, sizeof(qrels) - 1) != 0 ||
        fuzz_write_all(fixed_run, run, sizeof(run) - 1) != 0)
        abort();
}

/* Per document: the strings are whole UTF-8 and the text chunks well. */
static int on_doc(void *user, const dr_doc *d, dynrag_error *err)
{
    (void)err;
    size_t *n = user;
    (*n)++;
    if (d->doc_id == NULL || d->title == NULL || d->text == NULL)
        abort();
    check_utf8(d->doc_id, strlen(d->doc_id));
    check_utf8(d->title, strlen(d->title));
    size_t tn = strlen(d->text);
    check_utf8(d->text, tn);
    if (strchr(d->title, '\n') != NULL)
        abort(); /* titles are made one line */
    static const int sizes[][2] = {{1, 0}, {3, 2}, {200, 40}};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        dr_chunk_span *sp = NULL;
        size_t ns = 0;
        dynrag_error e;
        if (dr_chunk_text(d->text, tn, sizes[s][0], sizes[s][1], &sp, &ns, &e) != DYNRAG_OK)
            continue;
        for (size_t i = 0; i < ns; i++) {
            if (sp[i].start >= sp[i].end || sp[i].end > tn)
                abort();
            if (i > 0 && sp[i].start < sp[i - 1].start)
                abort();
        }
        dr_free(sp);
    }
    return 0;
}

static void ingest(const char *ext, const uint8_t *p, size_t n)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/input.%s", dir, ext);
    if (fuzz_write_all(path, p, n) != 0)
        abort();
    for (int skip = 0; skip < 2; skip++) {
        size_t docs = 0;
        uint64_t bad = 0;
        dynrag_error err;
        (void)dr_ingest_input(path, skip == 1, on_doc, &docs, &bad, &err);
    }
}

static void metrics(dynrag_qrels *q, const dynrag_run *r)
{
    static const char *const names[] = {"ndcg@10", "recall@100", "mrr@10", "p@5"};
    dynrag_metric_spec m[4];
    dynrag_error err;
    for (size_t i = 0; i < 4; i++)
        if (dynrag_metric_parse(names[i], &m[i], &err) != DYNRAG_OK)
            abort();
    for (int complete = 0; complete < 2; complete++) {
        dynrag_metrics_options o;
        dynrag_metrics_options_init(&o);
        o.complete = complete == 1;
        dynrag_metrics_result res;
        if (dynrag_metrics_compute(q, r, m, 4, &o, &res, &err) != DYNRAG_OK)
            continue;
        for (size_t i = 0; i < res.n_queries * res.n_metrics; i++)
            if (!isfinite(res.per_query[i]) || res.per_query[i] < 0 || res.per_query[i] > 1 + 1e-9)
                abort();
        dynrag_metrics_result_free(&res);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dir[0] == '\0')
        setup();
    if (size < 1)
        return 0;
    int kind = data[0] % 12;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    char path[128];
    snprintf(path, sizeof(path), "%s/file", dir);
    dynrag_error err;
    switch (kind) {
    case 0:
        ingest("jsonl", p, n);
        break;
    case 1: {
        ingest("html", p, n);
        char *clean = dr_utf8_sanitize((const char *)p, n);
        if (clean == NULL)
            break;
        char *text = NULL, *title = NULL;
        if (dr_html_to_text(clean, strlen(clean), &text, &title, &err) == DYNRAG_OK) {
            check_utf8(text, strlen(text));
            check_utf8(title, strlen(title));
        }
        dr_free(text);
        dr_free(title);
        dr_free(clean);
        break;
    }
    case 2:
        ingest("md", p, n);
        break;
    case 3:
        ingest("txt", p, n);
        break;
    case 4: {
        if (fuzz_write_all(path, p, n) != 0)
            abort();
        char *report = NULL, *json = NULL;
        if (dynrag_log_summary(path, &report, &json, &err) == DYNRAG_OK) {
            check_utf8(report, strlen(report));
            dynrag_free(report);
            dynrag_free(json);
        }
        break;
    }
    case 5: {
        if (fuzz_write_all(path, p, n) != 0)
            abort();
        dr_eval_data d;
        if (dr_eval_data_load(path, DYNRAG_EVAL_FORMAT_QA, NULL, 0, &d, &err) == DYNRAG_OK)
            dr_eval_data_free(&d);
        break;
    }
    case 6:
    case 7: {
        if (fuzz_write_all(path, p, n) != 0)
            abort();
        dynrag_qrels *q = NULL;
        dynrag_run *r = NULL;
        if (dynrag_qrels_load(kind == 6 ? path : fixed_qrels, &q, &err) == DYNRAG_OK &&
            dynrag_run_load(kind == 7 ? path : fixed_run, &r, &err) == DYNRAG_OK)
            metrics(q, r);
        dynrag_run_free(r);
        dynrag_qrels_free(q);
        break;
    }
    case 8: {
        if (fuzz_write_all(path, p, n) != 0)
            abort();
        dr_labelled_set *s = NULL;
        if (dr_labelled_load(path, &s, &err) == DYNRAG_OK)
            dr_labelled_free(s);
        break;
    }
    case 10:
    case 11: {
        char in[160], out[160];
        const char *name = kind == 10 ? "rb.csv" : (n > 0 && p[0] % 2 ? "gsm8k-test.json" : "mmlu_train.json");
        snprintf(in, sizeof(in), "%s/%s", dir, name);
        snprintf(out, sizeof(out), "%s/converted.jsonl", dir);
        const uint8_t *body = kind == 11 && n > 0 ? p + 1 : p; /* RouterDC: after the name byte */
        size_t body_len = kind == 11 && n > 0 ? n - 1 : n;
        if (fuzz_write_all(in, body, body_len) != 0)
            abort();
        unlink(out);
        dynrag_convert_stats st;
        int rc = kind == 10 ? dynrag_convert_routerbench(in, out, &st, &err)
                            : dynrag_convert_routerdc(in, out, &st, &err);
        if (rc != DYNRAG_OK)
            break;
        /* what a converter writes is a valid outcome table, row for row */
        dr_outcome_table t;
        memset(&t, 0, sizeof(t));
        if (st.rows_written == 0)
            break;
        if (dr_outcomes_load(out, &t, &err) != DYNRAG_OK) {
            fprintf(stderr, "converted table does not load: %s\n", dynrag_errmsg(&err));
            abort();
        }
        if (t.n_rows != st.rows_written)
            abort();
        dr_outcomes_free(&t);
        break;
    }
    default: {
        if (fuzz_write_all(path, p, n) != 0)
            abort();
        dr_outcome_table t;
        memset(&t, 0, sizeof(t));
        if (dr_outcomes_load(path, &t, &err) == DYNRAG_OK)
            dr_outcomes_free(&t);
        break;
    }
    }
    return 0;
}
