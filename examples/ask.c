/*
 * ask.c - DynamicRAG from a C program: load a pipeline, open its engine,
 * answer questions and show how each stage was routed.
 *
 *   dynrag_example_ask PIPELINE.yaml "question" ["question" ...]
 *
 * Only the public API (include/dynrag/) is used; link with -ldynrag. The
 * pipeline's `index:` must exist (build it with `dynrag index`); without
 * an LLM endpoint the pipeline answers with the embedded extractive
 * answerer, so this runs offline. Every question gets its answer, its
 * sources, one line per stage (router, choice, reason) and the totals.
 * Exit status: 0 when every question was answered or declared
 * unanswerable, 1 on an error.
 */
#include "dynrag/dynrag.h"
#include "dynrag/engine.h"
#include "dynrag/pipeline.h"

#include <stdio.h>
#include <stdlib.h>

static void print_result(const dynrag_result *r)
{
    printf("answer: %s%s\n", dynrag_result_answer(r),
           dynrag_result_unanswerable(r) ? "  (unanswerable from the sources)" : "");
    for (size_t i = 0; i < dynrag_result_n_citations(r); i++) {
        const dynrag_citation *c = dynrag_result_citation(r, i);
        printf("  source [%zu] %s%s%s (score %.3f)\n", i + 1, c->doc_id, *c->title ? ": " : "",
               c->title, c->score);
    }
    for (size_t i = 0; i < dynrag_result_n_decisions(r); i++) {
        const dynrag_decision *d = dynrag_result_decision(r, i);
        printf("  route %-15s %-10s -> %-12s %s\n", d->stage, d->router,
               d->skipped ? "(skipped)" : d->choice, d->reason);
    }
    const dynrag_totals *t = dynrag_result_totals(r);
    printf("  totals: %.1f ms, $%.6f, %d retrieval step(s), %d generator call(s)\n", t->latency_ms,
           t->usd, t->retrieval_steps, t->generator_calls);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PIPELINE.yaml \"question\" [\"question\" ...]\n", argv[0]);
        return 2;
    }
    dynrag_error err;
    dynrag_error_clear(&err);
    dynrag_pipeline *p = NULL;
    dynrag_diags *diags = NULL;
    if (dynrag_pipeline_load(argv[1], &p, &diags, &err) != DYNRAG_OK) {
        /* Diagnostics name file:line:col and the key path of each problem. */
        char *text = diags ? dynrag_diags_format(diags) : NULL;
        fprintf(stderr, "%s\n", text && *text ? text : dynrag_errmsg(&err));
        free(text);
        dynrag_diags_free(diags);
        return 1;
    }
    dynrag_diags_free(diags);

    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    eo.no_log = true; /* the pipeline's index; no route log */
    dynrag_engine *e = NULL;
    if (dynrag_engine_open(p, &eo, &e, &err) != DYNRAG_OK) {
        fprintf(stderr, "%s\n", dynrag_errmsg(&err));
        dynrag_pipeline_free(p);
        return 1;
    }
    int status = 0;
    for (int i = 2; i < argc; i++) {
        dynrag_result *r = NULL;
        printf("question: %s\n", argv[i]);
        if (dynrag_engine_query(e, argv[i], NULL, &r, &err) != DYNRAG_OK) {
            fprintf(stderr, "%s\n", dynrag_errmsg(&err));
            status = 1;
            continue;
        }
        print_result(r);
        dynrag_result_free(r);
    }
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
    return status;
}
