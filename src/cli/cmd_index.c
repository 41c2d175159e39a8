/* cmd_index.c - `dynrag index`: build, extend or prune an index. */
#define _GNU_SOURCE
#include "cli.h"

#include "dynrag/index.h"
#include "dynrag/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "index"

int cmd_index(int argc, char **argv)
{
    dynrag_build_options opt;
    memset(&opt, 0, sizeof(opt));
    const char *dir = NULL, *pipeline_path = NULL;
    dynrag_pipeline *pipeline = NULL;
    bool dim_given = false;
    const char **inputs = calloc((size_t)argc, sizeof(*inputs));
    const char **deletes = calloc((size_t)argc, sizeof(*deletes));
    size_t n_inputs = 0, n_deletes = 0;
    int ret = CLI_USAGE;
    long long v = 0;
    if (inputs == NULL || deletes == NULL) {
        cli_error(CMD, "out of memory");
        ret = CLI_FAIL;
        goto done;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++)
                inputs[n_inputs++] = argv[i];
            break;
        } else if (strcmp(a, "--index") == 0 && has_val) {
            dir = argv[++i];
        } else if (strcmp(a, "--pipeline") == 0 && has_val) {
            pipeline_path = argv[++i];
        } else if (strcmp(a, "--dim") == 0 && has_val) {
            if (!cli_parse_int(CMD, a, argv[++i], 8, 8192, &v))
                goto done;
            opt.embedder.dim = (int)v;
            dim_given = true;
        } else if (strcmp(a, "--faiss") == 0 && has_val) {
            opt.faiss_factory = argv[++i];
        } else if (strcmp(a, "--chunk-tokens") == 0 && has_val) {
            if (!cli_parse_int(CMD, a, argv[++i], 1, 100000, &v))
                goto done;
            opt.chunk_tokens = (int)v;
        } else if (strcmp(a, "--chunk-overlap") == 0 && has_val) {
            if (!cli_parse_int(CMD, a, argv[++i], 0, 99999, &v))
                goto done;
            opt.chunk_overlap = (int)v;
        } else if (strcmp(a, "--skip-bad") == 0) {
            opt.skip_bad = true;
        } else if (strcmp(a, "--no-dense") == 0) {
            opt.no_dense = true;
        } else if (strcmp(a, "--lock-timeout") == 0 && has_val) {
            double t = 0;
            if (!cli_parse_double(CMD, a, argv[++i], 0.001, 1e9, &t))
                goto done;
            opt.lock_timeout_s = t;
        } else if (strcmp(a, "--delete") == 0 && has_val) {
            deletes[n_deletes++] = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            ret = cli_usage_error(CMD, "unknown option or missing value: %s", a);
            goto done;
        } else {
            inputs[n_inputs++] = a;
        }
    }
    if (pipeline_path) {
        /* The pipeline names the index and the embedder queries will use. */
        dynrag_diags *diags = NULL;
        dynrag_error perr;
        dynrag_error_clear(&perr);
        if (dynrag_pipeline_load(pipeline_path, &pipeline, &diags, &perr) != DYNRAG_OK) {
            char *text = diags ? dynrag_diags_format(diags) : NULL;
            if (text && *text)
                fputs(text, stderr);
            else
                cli_error(CMD, "%s", dynrag_errmsg(&perr));
            free(text);
            dynrag_diags_free(diags);
            ret = CLI_FAIL;
            goto done;
        }
        dynrag_diags_free(diags);
        if (dir == NULL)
            dir = dynrag_pipeline_index_dir(pipeline);
        int dim = opt.embedder.dim;
        if (dynrag_pipeline_embedder(pipeline, NULL, &opt.embedder, &perr) != DYNRAG_OK) {
            cli_error(CMD, "%s", dynrag_errmsg(&perr));
            ret = CLI_FAIL;
            goto done;
        }
        if (dim_given && dim != opt.embedder.dim && opt.embedder.dim != 0) {
            ret = cli_usage_error(CMD, "--dim %d contradicts the pipeline's embedder (dim %d)",
                                  dim, opt.embedder.dim);
            goto done;
        }
        if (dim_given)
            opt.embedder.dim = dim;
    }
    if (dir == NULL) {
        ret = cli_usage_error(CMD, "--index DIR is required (or a --pipeline that names one)");
        goto done;
    }
    if (n_inputs == 0 && n_deletes == 0) {
        ret = cli_usage_error(CMD, "give at least one INPUT or --delete ID");
        goto done;
    }
    if (opt.chunk_overlap && opt.chunk_tokens && opt.chunk_overlap >= opt.chunk_tokens) {
        ret = cli_usage_error(CMD, "--chunk-overlap must be smaller than --chunk-tokens");
        goto done;
    }
    dynrag_error err;
    dynrag_error_clear(&err);
    ret = CLI_OK;
    if (n_deletes > 0) {
        size_t missing = 0;
        int rc = dynrag_index_delete_opt(dir, deletes, n_deletes, &opt, &missing, &err);
        if (rc != DYNRAG_OK) {
            cli_error(CMD, "%s", dynrag_errmsg(&err));
            ret = CLI_FAIL;
            goto done;
        }
        printf("deleted %zu documents (%zu not found)\n", n_deletes - missing, missing);
    }
    if (n_inputs > 0) {
        cli_progress bar;
        cli_progress_init(&bar, "indexing");
        opt.progress = cli_progress_cb;
        opt.progress_user = &bar;
        dynrag_build_stats st;
        int rc = dynrag_index_add(dir, inputs, n_inputs, &opt, &st, &err);
        cli_progress_done(&bar);
        if (rc != DYNRAG_OK) {
            cli_error(CMD, "%s (index unchanged)", dynrag_errmsg(&err));
            ret = CLI_FAIL;
            goto done;
        }
        uint64_t docs = st.docs_added + st.docs_replaced;
        printf("indexed %llu docs (%llu new, %llu replaced), %llu chunks in %.2f s "
               "(%.0f docs/s)",
               (unsigned long long)docs, (unsigned long long)st.docs_added,
               (unsigned long long)st.docs_replaced, (unsigned long long)st.chunks, st.seconds,
               st.seconds > 0 ? (double)docs / st.seconds : 0.0);
        if (st.bad_inputs)
            printf(", %llu bad inputs skipped", (unsigned long long)st.bad_inputs);
        printf("; index now has %llu docs, %llu chunks\n", (unsigned long long)st.total_docs,
               (unsigned long long)st.total_chunks);
    }
done:
    dynrag_pipeline_free(pipeline);
    free(inputs);
    free(deletes);
    return ret;
}
