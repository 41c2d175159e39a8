/* cmd_index.c - `dynrag index`: build, extend or prune an index. */
#define _GNU_SOURCE
#include "cli.h"

#include "dynrag/index.h"
#include "dynrag/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "index"

/* True when two embedder configurations give the same vectors. */
static bool same_embedder(const dynrag_embedder_config *a, const dynrag_embedder_config *b)
{
    const char *ka = a->kind ? a->kind : "builtin", *kb = b->kind ? b->kind : "builtin";
    int da = a->dim ? a->dim : (strcmp(ka, "builtin") == 0 ? 256 : 0);
    int db = b->dim ? b->dim : (strcmp(kb, "builtin") == 0 ? 256 : 0);
    return strcmp(ka, kb) == 0 && da == db &&
           strcmp(a->base_url ? a->base_url : "", b->base_url ? b->base_url : "") == 0 &&
           strcmp(a->model ? a->model : "", b->model ? b->model : "") == 0;
}

/* Prints the summary line of an add to one index. */
static void print_add_summary(const dynrag_build_stats *st)
{
    uint64_t docs = st->docs_added + st->docs_replaced;
    printf("indexed %llu docs (%llu new, %llu replaced), %llu chunks in %.2f s "
           "(%.0f docs/s)",
           (unsigned long long)docs, (unsigned long long)st->docs_added,
           (unsigned long long)st->docs_replaced, (unsigned long long)st->chunks, st->seconds,
           st->seconds > 0 ? (double)docs / st->seconds : 0.0);
    if (st->bad_inputs)
        printf(", %llu bad inputs skipped", (unsigned long long)st->bad_inputs);
    printf("; index now has %llu docs, %llu chunks\n", (unsigned long long)st->total_docs,
           (unsigned long long)st->total_chunks);
}

/* "embedder option 'NAME'" in a malloc'ed string (NULL when out of memory). */
static char *option_label(const char *name)
{
    size_t len = strlen(name) + sizeof("embedder option ''");
    char *s = malloc(len);
    if (s)
        snprintf(s, len, "embedder option '%s'", name);
    return s;
}

/*
 * The indexes a pipeline's documents go to: targets[0] the main index
 * (`dir`, the main embedder), then one per other embedder option in
 * dynrag_pipeline_embedder_index_dir(). Options whose embedder equals the
 * main one's share the main index; options whose endpoint is not
 * configured are reported and skipped. *names gets the labels the targets
 * point to. Both arrays are freed by the caller (free_targets()); returns
 * false when out of memory.
 */
static bool pipeline_targets(const dynrag_pipeline *p, const char *dir,
                             const dynrag_embedder_config *main_emb,
                             dynrag_index_target **out, char ***names, size_t *n_out)
{
    size_t n_opt = dynrag_pipeline_n_embedders(p), n = 0;
    dynrag_index_target *t = calloc(n_opt + 1, sizeof(*t));
    char **nm = calloc(n_opt + 1, sizeof(*nm));
    *out = t;
    *names = nm;
    *n_out = 0;
    if (t == NULL || nm == NULL)
        return false;
    t[n].dir = dir;
    t[n].embedder = *main_emb;
    n++;
    for (size_t i = 0; i < n_opt && n <= DYNRAG_INDEX_MAX_TARGETS; i++) {
        const char *name = dynrag_pipeline_embedder_name(p, i);
        char *sub = dynrag_pipeline_embedder_index_dir(p, dir, name);
        bool is_main = sub != NULL && strcmp(sub, dir) == 0;
        if (is_main && nm[0] == NULL && (nm[0] = option_label(name)) != NULL)
            t[0].name = nm[0]; /* the main index's option, named in its errors */
        if (sub == NULL || is_main) {
            free(sub);
            continue;
        }
        dynrag_embedder_config emb;
        dynrag_error err;
        dynrag_error_clear(&err);
        if (dynrag_pipeline_embedder(p, name, &emb, &err) != DYNRAG_OK) {
            fprintf(stderr, "dynrag index: embedder option '%s' not indexed: %s\n", name,
                    dynrag_errmsg(&err));
            free(sub);
            continue;
        }
        if (same_embedder(&emb, main_emb)) {
            free(sub);
            continue; /* the main index serves it */
        }
        nm[n] = option_label(name);
        if (nm[n] == NULL) {
            free(sub);
            *n_out = n;
            return false;
        }
        t[n].name = nm[n];
        t[n].dir = sub; /* freed through free_targets() */
        t[n].embedder = emb;
        n++;
    }
    *n_out = n;
    return true;
}

/* Frees what pipeline_targets() made (targets[0].dir is the caller's). */
static void free_targets(dynrag_index_target *t, char **names, size_t n)
{
    for (size_t i = 1; t != NULL && i < n; i++)
        free((char *)t[i].dir);
    for (size_t i = 0; names != NULL && i < n; i++)
        free(names[i]);
    free(t);
    free(names);
}

/*
 * `dynrag index --pipeline`: the main index and every embedder option's
 * index in one dynrag_index_write_group() call (all change, or none).
 * Prints the summary lines of the main index, then one per other index.
 * Returns CLI_OK or CLI_FAIL.
 */
static int index_pipeline(const dynrag_pipeline *p, const char *dir, dynrag_build_options *opt,
                          const char *const *inputs, size_t n_inputs, const char *const *deletes,
                          size_t n_deletes)
{
    dynrag_index_target *t = NULL;
    char **names = NULL;
    size_t n = 0;
    dynrag_build_stats *st = NULL;
    int ret = CLI_FAIL;
    if (!pipeline_targets(p, dir, &opt->embedder, &t, &names, &n) ||
        (st = calloc(n, sizeof(*st))) == NULL) {
        cli_error(CMD, "out of memory");
        goto done;
    }
    if (n > DYNRAG_INDEX_MAX_TARGETS) {
        cli_error(CMD, "%s: more than %d embedder options to index", dir,
                  DYNRAG_INDEX_MAX_TARGETS);
        goto done;
    }
    cli_progress bar;
    if (n_inputs > 0) {
        cli_progress_init(&bar, "indexing");
        opt->progress = cli_progress_cb;
        opt->progress_user = &bar;
    }
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_index_write_group(t, n, deletes, n_deletes, inputs, n_inputs, opt, st, &err);
    if (n_inputs > 0)
        cli_progress_done(&bar);
    if (rc != DYNRAG_OK) {
        cli_error(CMD, "%s%s", dynrag_errmsg(&err), n > 1 ? "" : " (index unchanged)");
        goto done;
    }
    if (n_deletes > 0)
        printf("deleted %llu documents (%llu not found)\n",
               (unsigned long long)st[0].docs_deleted,
               (unsigned long long)(n_deletes - st[0].docs_deleted));
    if (n_inputs > 0)
        print_add_summary(&st[0]);
    for (size_t i = 1; i < n; i++)
        printf("%s: %llu docs, %llu chunks in %s\n", t[i].name,
               (unsigned long long)st[i].total_docs, (unsigned long long)st[i].total_chunks,
               t[i].dir);
    ret = CLI_OK;
done:
    free(st);
    free_targets(t, names, n);
    return ret;
}

int cmd_index(int argc, char **argv)
{
    dynrag_build_options opt;
    dynrag_build_options_init(&opt);
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
    if (opt.chunk_overlap != DYNRAG_CHUNK_RECORDED && opt.chunk_tokens != DYNRAG_CHUNK_RECORDED &&
        opt.chunk_overlap >= opt.chunk_tokens) {
        ret = cli_usage_error(CMD, "--chunk-overlap must be smaller than --chunk-tokens");
        goto done;
    }
    if (pipeline != NULL) {
        ret = index_pipeline(pipeline, dir, &opt, inputs, n_inputs, deletes, n_deletes);
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
        print_add_summary(&st);
    }
done:
    dynrag_pipeline_free(pipeline);
    free(inputs);
    free(deletes);
    return ret;
}
