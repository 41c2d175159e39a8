/*
 * test_options.c - the *_options_init() contract of the public API
 * (docs/library.md, "Options structs"): init sets every field to its
 * documented default whatever the struct held before, and the library takes
 * every field literally, so that a field set to 0 is either a value (the
 * call behaves as with the default: same status) or an error
 * (DYNRAG_ERR_INVALID) whose message names the field. Checked field by field
 * for every options struct, and for each struct zeroed as a whole.
 */
#include "test.h"

#include "core/util.h"
#include "dynrag/dynrag.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* ---- init is complete and documented ------------------------------------ */

/* Runs init on a struct filled with `fill` bytes; the caller compares. */
#define INIT_FROM(T, init, fill, var) \
    T var;                            \
    memset(&var, fill, sizeof(var));  \
    init(&var)

/* init gives the same bytes whatever the struct held before (so it sets
 * every field, padding included), for every options struct. */
#define CHECK_COMPLETE(T, init)                                                             \
    do {                                                                                    \
        INIT_FROM(T, init, 0x00, a_);                                                       \
        INIT_FROM(T, init, 0xA5, b_);                                                       \
        INIT_FROM(T, init, 0xFF, c_);                                                       \
        if (memcmp(&a_, &b_, sizeof(T)) != 0 || memcmp(&a_, &c_, sizeof(T)) != 0)          \
            test_fail_(__FILE__, __LINE__, "%s leaves bytes of %s unset", #init, #T);       \
    } while (0)

TEST(options_init_sets_every_byte)
{
    CHECK_COMPLETE(dynrag_engine_options, dynrag_engine_options_init);
    CHECK_COMPLETE(dynrag_query_options, dynrag_query_options_init);
    CHECK_COMPLETE(dynrag_search_options, dynrag_search_options_init);
    CHECK_COMPLETE(dynrag_build_options, dynrag_build_options_init);
    CHECK_COMPLETE(dynrag_server_options, dynrag_server_options_init);
    CHECK_COMPLETE(dynrag_metrics_options, dynrag_metrics_options_init);
    CHECK_COMPLETE(dynrag_outcome_router_options, dynrag_outcome_router_options_init);
    CHECK_COMPLETE(dynrag_train_options, dynrag_train_options_init);
    CHECK_COMPLETE(dynrag_eval_compare_options, dynrag_eval_compare_options_init);
    CHECK_COMPLETE(dynrag_eval_options, dynrag_eval_options_init);
    CHECK_COMPLETE(dynrag_eval_calibrate_options, dynrag_eval_calibrate_options_init);
    CHECK_COMPLETE(dynrag_eval_outcomes_options, dynrag_eval_outcomes_options_init);
    CHECK_COMPLETE(dynrag_label_options, dynrag_label_options_init);
}

/* The defaults the headers document, field by field (a change of a default
 * must change the header comment and this table together). */
TEST(options_init_documented_defaults)
{
    INIT_FROM(dynrag_search_options, dynrag_search_options_init, 0xA5, s);
    ASSERT_EQ(s.mode, DYNRAG_SEARCH_BM25);
    ASSERT_EQ(s.k, 10);
    ASSERT_NEAR(s.k1, 0.9, 0);
    ASSERT_NEAR(s.b, 0.4, 0);
    ASSERT_NEAR(s.rrf_k, 60, 0);
    ASSERT_NEAR(s.w_bm25, 1, 0);
    ASSERT_NEAR(s.w_dense, 1, 0);
    ASSERT_EQ(s.depth, 100);
    ASSERT_EQ(s.nprobe, 0);
    ASSERT(!s.per_document && !s.ids_only);

    INIT_FROM(dynrag_build_options, dynrag_build_options_init, 0xA5, b);
    ASSERT(b.embedder.kind == NULL && b.embedder.dim == 0 && b.faiss_factory == NULL);
    ASSERT_EQ(b.chunk_tokens, DYNRAG_CHUNK_RECORDED);
    ASSERT_EQ(b.chunk_overlap, DYNRAG_CHUNK_RECORDED);
    ASSERT(!b.skip_bad && !b.no_dense && b.progress == NULL);
    ASSERT(isinf(b.lock_timeout_s) && b.lock_timeout_s > 0);

    INIT_FROM(dynrag_server_options, dynrag_server_options_init, 0xA5, sv);
    ASSERT_STR_EQ(sv.host, "127.0.0.1");
    ASSERT_EQ(sv.port, 0);
    ASSERT_EQ(sv.threads, 4);
    ASSERT(sv.api_key == NULL && sv.index_dir == NULL && sv.log_path == NULL && !sv.no_log);
    ASSERT_EQ(sv.max_body, (size_t)1 << 20);
    ASSERT_EQ(sv.timeout_ms, 30000);
    ASSERT_EQ(sv.max_connections, 1000);
    ASSERT_EQ(sv.drain_timeout_ms, 10000);
    ASSERT(sv.cors_origin == NULL);

    INIT_FROM(dynrag_engine_options, dynrag_engine_options_init, 0xA5, e);
    ASSERT(e.index_dir == NULL && e.log_path == NULL && !e.no_log);
    INIT_FROM(dynrag_query_options, dynrag_query_options_init, 0xA5, q);
    ASSERT(q.query_id == NULL && !q.route_only && !q.retrieve_only && !q.no_log);
    ASSERT_EQ(q.k, 0);
    ASSERT(q.force == NULL && q.n_force == 0 && q.budget == NULL);

    INIT_FROM(dynrag_metrics_options, dynrag_metrics_options_init, 0xA5, m);
    ASSERT_EQ(m.relevance_level, 1);
    ASSERT(!m.complete);

    INIT_FROM(dynrag_outcome_router_options, dynrag_outcome_router_options_init, 0xA5, r);
    ASSERT_STR_EQ(r.kind, "predict");
    ASSERT(r.data == NULL && r.n_data == 0 && r.valid == NULL && r.out_path == NULL);
    ASSERT_EQ(r.dim, 1024);
    ASSERT_EQ(r.clusters, 64);
    ASSERT(isnan(r.lambda));
    ASSERT_NEAR(r.cluster_lambda, 0.3, 0);
    ASSERT_EQ(r.seed, 0);

    INIT_FROM(dynrag_train_options, dynrag_train_options_init, 0xA5, t);
    ASSERT(t.train_path == NULL && t.valid_path == NULL && t.out_path == NULL);
    ASSERT(t.config == NULL && t.progress == NULL);
    ASSERT_EQ(t.seed, 1);
    ASSERT_EQ(t.threads, 1);

    INIT_FROM(dynrag_eval_compare_options, dynrag_eval_compare_options_init, 0xA5, c);
    ASSERT_EQ(c.quality.metric, DYNRAG_METRIC_F1);
    ASSERT_EQ(c.quality.k, 0);
    ASSERT_EQ(c.cost.metric, DYNRAG_METRIC_LATENCY);
    ASSERT_EQ(c.cost.k, 0);
    ASSERT_EQ(c.seed, 0);
    ASSERT_EQ(c.sweep, DYNRAG_EVAL_SWEEP_NONE);
    ASSERT_EQ(c.escalate, -1);
    ASSERT(c.grid == NULL);
    ASSERT_EQ(c.n_grid, 21);
    ASSERT_NEAR(c.grid_lo, 0, 0);
    ASSERT_NEAR(c.grid_hi, 1, 0);

    INIT_FROM(dynrag_eval_options, dynrag_eval_options_init, 0xA5, ev);
    ASSERT_EQ(ev.format, DYNRAG_EVAL_FORMAT_QA);
    ASSERT_EQ(ev.limit, 0);
    ASSERT_EQ(ev.seed, 0);
    ASSERT(ev.stages == NULL && ev.n_stages == 0 && ev.index_dir == NULL);
    ASSERT_EQ(ev.quality.metric, DYNRAG_METRIC_DEFAULT);
    ASSERT_EQ(ev.quality.k, 0);
    ASSERT_EQ(ev.cost.metric, DYNRAG_METRIC_DEFAULT);
    ASSERT_EQ(ev.cost.k, 0);

    INIT_FROM(dynrag_eval_calibrate_options, dynrag_eval_calibrate_options_init, 0xA5, ca);
    ASSERT(ca.stage == NULL && ca.target_option == NULL && ca.out_yaml == NULL);
    ASSERT(isnan(ca.target_share) && isnan(ca.target_quality) && isnan(ca.target_cost));

    INIT_FROM(dynrag_eval_outcomes_options, dynrag_eval_outcomes_options_init, 0xA5, oo);
    ASSERT(oo.out_dir == NULL && oo.strong == NULL && oo.weak == NULL);
    ASSERT(oo.sweep_param == NULL && oo.grid == NULL && oo.n_grid == 0);

    INIT_FROM(dynrag_label_options, dynrag_label_options_init, 0xA5, l);
    ASSERT_EQ(l.limit, 0);
    ASSERT_EQ(l.success.metric, DYNRAG_METRIC_CONTEXT);
    ASSERT_EQ(l.success.k, 0);
    ASSERT_NEAR(l.min_quality, 0.5, 0);
    ASSERT(l.fallback_label == NULL && l.source == NULL && l.index_dir == NULL);
}

/* ---- a literal 0: a value or a named error -------------------------------- */

/* One field of an options struct: where it is and what 0 means there. */
typedef struct field {
    const char *name; /* the field */
    size_t off, size;
    const char *error; /* NULL: 0 is a value; else the text the error names */
} field;

#define VALUE(T, f) {#f, offsetof(T, f), sizeof(((T *)0)->f), NULL}
#define ERROR(T, f, msg) {#f, offsetof(T, f), sizeof(((T *)0)->f), msg}

/* Calls the function under test with options `opt`; returns its status. */
typedef int (*call_fn)(void *ctx, const void *opt, dynrag_error *err);

#define MAX_OPT_SIZE 512

/*
 * For each field: opt (an init'ed struct the caller completed) with that
 * one field zeroed must give the status the unchanged opt gives (a value)
 * or DYNRAG_ERR_INVALID with the field's text in the message. Then, with
 * `whole` (structs without required fields), the whole struct zeroed: the
 * baseline status or an INVALID naming one of the error fields.
 */
static void check_zeroes(const char *type, const void *opt, size_t size, const field *fs,
                         size_t n, call_fn call, void *ctx, bool whole)
{
    unsigned char buf[MAX_OPT_SIZE];
    dynrag_error err;
    if (size > sizeof(buf)) {
        test_fail_(__FILE__, __LINE__, "%s: %zu bytes, raise MAX_OPT_SIZE", type, size);
        return;
    }
    dynrag_error_clear(&err);
    int rc0 = call(ctx, opt, &err);
    if (rc0 == DYNRAG_ERR_INVALID) {
        test_fail_(__FILE__, __LINE__, "%s: the defaults are invalid: %s", type,
                   dynrag_errmsg(&err));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(buf, opt, size);
        memset(buf + fs[i].off, 0, fs[i].size);
        dynrag_error_clear(&err);
        int rc = call(ctx, buf, &err);
        if (fs[i].error == NULL && rc != rc0)
            test_fail_(__FILE__, __LINE__, "%s.%s = 0 is a value, but the call gave %d (%s), "
                       "not %d as with the default", type, fs[i].name, rc, dynrag_errmsg(&err),
                       rc0);
        if (fs[i].error != NULL &&
            (rc != DYNRAG_ERR_INVALID || strstr(dynrag_errmsg(&err), fs[i].error) == NULL))
            test_fail_(__FILE__, __LINE__,
                       "%s.%s = 0 must fail with DYNRAG_ERR_INVALID naming \"%s\"; got %d (%s)",
                       type, fs[i].name, fs[i].error, rc, dynrag_errmsg(&err));
    }
    if (!whole) /* required fields: zeroed, the call fails on them first */
        return;
    memset(buf, 0, size);
    dynrag_error_clear(&err);
    int rc = call(ctx, buf, &err);
    bool named = false;
    for (size_t i = 0; i < n; i++)
        named = named || (fs[i].error && strstr(dynrag_errmsg(&err), fs[i].error) != NULL);
    if (rc != rc0 && !(rc == DYNRAG_ERR_INVALID && named))
        test_fail_(__FILE__, __LINE__, "%s zeroed as a whole: %d (%s)", type, rc,
                   dynrag_errmsg(&err));
}

#define CHECK_ZEROES(T, opt, fields, call, ctx, whole) \
    check_zeroes(#T, &(opt), sizeof(T), fields, DR_ARRAY_LEN(fields), call, ctx, whole)

static const char *const corpus =
    "{\"_id\":\"france\",\"title\":\"France\",\"text\":\"The capital of France is Paris.\"}\n"
    "{\"_id\":\"moon\",\"title\":\"Moon\",\"text\":\"Neil Armstrong walked on the Moon in "
    "1969.\"}\n"
    "{\"_id\":\"owl\",\"title\":\"Owl\",\"text\":\"Owls hunt mice at night.\"}\n";

typedef struct fixture {
    char idx[4200];
    const char *corpus_path;
    dynrag_index *index;
    dynrag_pipeline *p;
    dynrag_engine *e;
    size_t n_builds;
    const char *missing; /* a path that does not exist */
} fixture;

static int call_search(void *ctx, const void *opt, dynrag_error *err)
{
    fixture *f = ctx;
    dynrag_hits h;
    int rc = dynrag_index_search(f->index, "capital of France", opt, &h, err);
    if (rc == DYNRAG_OK) {
        rc = h.n > 0 ? DYNRAG_OK : DYNRAG_ERR_NOTFOUND;
        dynrag_hits_free(&h);
    }
    return rc;
}

static int call_build(void *ctx, const void *opt, dynrag_error *err)
{
    fixture *f = ctx;
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/b%zu", test_tmpdir(), f->n_builds++);
    return dynrag_index_add(dir, &f->corpus_path, 1, opt, NULL, err);
}

static int call_server(void *ctx, const void *opt, dynrag_error *err)
{
    fixture *f = ctx;
    dynrag_server *s = NULL;
    int rc = dynrag_server_open(f->p, opt, &s, err);
    dynrag_server_close(s);
    return rc;
}

static int call_engine(void *ctx, const void *opt, dynrag_error *err)
{
    fixture *f = ctx;
    dynrag_engine *e = NULL;
    int rc = dynrag_engine_open(f->p, opt, &e, err);
    dynrag_engine_close(e);
    return rc;
}

static int call_query(void *ctx, const void *opt, dynrag_error *err)
{
    fixture *f = ctx;
    dynrag_result *r = NULL;
    int rc = dynrag_engine_query(f->e, "capital of France", opt, &r, err);
    dynrag_result_free(r);
    return rc;
}

static int call_metrics(void *ctx, const void *opt, dynrag_error *err)
{
    (void)ctx;
    dynrag_qrels *q = NULL;
    dynrag_run *r = NULL;
    dynrag_metrics_result res;
    memset(&res, 0, sizeof(res));
    dynrag_metric_spec ms = {DYNRAG_METRIC_NDCG, 10};
    int rc = dynrag_qrels_new(&q, err);
    if (rc == DYNRAG_OK)
        rc = dynrag_qrels_add(q, "q1", "d1", 1, err);
    if (rc == DYNRAG_OK)
        rc = dynrag_run_new(&r, err);
    if (rc == DYNRAG_OK)
        rc = dynrag_run_add(r, "q1", "d1", 2.0, err);
    if (rc == DYNRAG_OK)
        rc = dynrag_metrics_compute(q, r, &ms, 1, opt, &res, err);
    dynrag_metrics_result_free(&res);
    dynrag_run_free(r);
    dynrag_qrels_free(q);
    return rc;
}

static int call_outcome_router(void *ctx, const void *opt, dynrag_error *err)
{
    (void)ctx;
    dynrag_outcome_router_result r;
    return dynrag_outcome_router_train(opt, &r, err);
}

static int call_train(void *ctx, const void *opt, dynrag_error *err)
{
    (void)ctx;
    dynrag_train_result r;
    return dynrag_classifier_train(opt, &r, err);
}

static int call_eval(void *ctx, const void *opt, dynrag_error *err)
{
    (void)ctx;
    return dynrag_eval_run(opt, NULL, NULL, err);
}

static int call_eval_outcomes(void *ctx, const void *opt, dynrag_error *err)
{
    (void)ctx;
    return dynrag_eval_outcomes(opt, NULL, NULL, err);
}

static int call_label(void *ctx, const void *opt, dynrag_error *err)
{
    (void)ctx;
    return dynrag_eval_label(opt, NULL, err);
}

static int call_compare(void *ctx, const void *opt, dynrag_error *err)
{
    const dynrag_eval_table *t = ctx;
    dynrag_eval_comparison c;
    int rc = dynrag_eval_compare(t, opt, &c, err);
    dynrag_eval_comparison_free(&c);
    return rc;
}

TEST(options_zero_is_value_or_named_error)
{
    fixture f;
    memset(&f, 0, sizeof(f));
    dynrag_error err;
    dynrag_error_clear(&err);
    snprintf(f.idx, sizeof f.idx, "%s/idx", test_tmpdir());
    f.corpus_path = test_write_file("c.jsonl", corpus);
    char missing[4300];
    snprintf(missing, sizeof missing, "%s/no/such/file", test_tmpdir());
    f.missing = missing;

    /* dynrag_build_options: the index the other checks use, then each zero. */
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    bo.no_dense = true;
    ASSERT_OK(dynrag_index_add(f.idx, &f.corpus_path, 1, &bo, NULL, &err), &err);
    static const field build_fields[] = {
        VALUE(dynrag_build_options, faiss_factory),
        ERROR(dynrag_build_options, chunk_tokens, "chunk_tokens"),
        VALUE(dynrag_build_options, chunk_overlap),
        VALUE(dynrag_build_options, skip_bad),
        VALUE(dynrag_build_options, no_dense),
        VALUE(dynrag_build_options, progress),
        VALUE(dynrag_build_options, lock_timeout_s),
    };
    CHECK_ZEROES(dynrag_build_options, bo, build_fields, call_build, &f, true);
    /* chunk_overlap 0 is taken: no overlap (the old API made 0 mean the
     * index's 40, capped below chunk_tokens), so fewer chunks than with 2. */
    dynrag_build_stats st0, st2;
    char dir0[4300], dir2[4300];
    snprintf(dir0, sizeof dir0, "%s/overlap0", test_tmpdir());
    snprintf(dir2, sizeof dir2, "%s/overlap2", test_tmpdir());
    bo.chunk_tokens = 3;
    bo.chunk_overlap = 0;
    ASSERT_OK(dynrag_index_add(dir0, &f.corpus_path, 1, &bo, &st0, &err), &err);
    bo.chunk_overlap = 2;
    ASSERT_OK(dynrag_index_add(dir2, &f.corpus_path, 1, &bo, &st2, &err), &err);
    ASSERT_LT(st0.chunks, st2.chunks);
    dynrag_build_options_init(&bo);
    bo.no_dense = true;

    /* dynrag_search_options */
    ASSERT_OK(dynrag_index_open(f.idx, NULL, &f.index, &err), &err);
    dynrag_search_options so;
    dynrag_search_options_init(&so);
    static const field search_fields[] = {
        VALUE(dynrag_search_options, mode),
        ERROR(dynrag_search_options, k, "k must be"),
        VALUE(dynrag_search_options, k1),
        VALUE(dynrag_search_options, b),
        ERROR(dynrag_search_options, rrf_k, "rrf_k"),
        VALUE(dynrag_search_options, w_bm25),
        VALUE(dynrag_search_options, w_dense),
        VALUE(dynrag_search_options, depth),
        VALUE(dynrag_search_options, nprobe),
        VALUE(dynrag_search_options, per_document),
        VALUE(dynrag_search_options, ids_only),
    };
    CHECK_ZEROES(dynrag_search_options, so, search_fields, call_search, &f, true);
    /* Both weights 0 is no fusion at all: an error naming them. */
    so.w_bm25 = so.w_dense = 0;
    ASSERT_EQ(call_search(&f, &so, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "w_bm25");

    /* engine, query and server options over a pipeline on that index */
    char yaml[8400];
    snprintf(yaml, sizeof yaml,
             "version: 1\nname: o\nindex: %s\nstages:\n  index:\n    options:\n"
             "      - {name: bm25, kind: bm25}\n",
             f.idx);
    ASSERT_OK(dynrag_pipeline_load_string(yaml, strlen(yaml), "o.yaml", test_tmpdir(), &f.p,
                                          NULL, &err),
              &err);
    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    eo.no_log = true;
    static const field engine_fields[] = {
        VALUE(dynrag_engine_options, index_dir),
        VALUE(dynrag_engine_options, log_path),
    };
    CHECK_ZEROES(dynrag_engine_options, eo, engine_fields, call_engine, &f, false);
    ASSERT_OK(dynrag_engine_open(f.p, &eo, &f.e, &err), &err);
    dynrag_query_options qo;
    dynrag_query_options_init(&qo);
    qo.no_log = true;
    qo.k = 2;
    static const field query_fields[] = {
        VALUE(dynrag_query_options, query_id),
        VALUE(dynrag_query_options, route_only),
        VALUE(dynrag_query_options, retrieve_only),
        VALUE(dynrag_query_options, k),
        VALUE(dynrag_query_options, force),
        VALUE(dynrag_query_options, n_force),
        VALUE(dynrag_query_options, budget),
    };
    CHECK_ZEROES(dynrag_query_options, qo, query_fields, call_query, &f, true);
    qo.k = -1;
    ASSERT_EQ(call_query(&f, &qo, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "k: -1");

    dynrag_server_options sv;
    dynrag_server_options_init(&sv);
    sv.no_log = true;
    static const field server_fields[] = {
        ERROR(dynrag_server_options, host, "host"),
        VALUE(dynrag_server_options, port),
        ERROR(dynrag_server_options, threads, "threads"),
        VALUE(dynrag_server_options, api_key),
        ERROR(dynrag_server_options, max_body, "max_body"),
        ERROR(dynrag_server_options, timeout_ms, "timeout"),
        ERROR(dynrag_server_options, max_connections, "max_connections"),
        VALUE(dynrag_server_options, index_dir),
        VALUE(dynrag_server_options, log_path),
        VALUE(dynrag_server_options, drain_timeout_ms),
        VALUE(dynrag_server_options, cors_origin),
    };
    CHECK_ZEROES(dynrag_server_options, sv, server_fields, call_server, &f, true);

    /* dynrag_metrics_options: level 0 is trec_eval -l 0 */
    dynrag_metrics_options mo;
    dynrag_metrics_options_init(&mo);
    static const field metrics_fields[] = {
        VALUE(dynrag_metrics_options, relevance_level),
        VALUE(dynrag_metrics_options, complete),
    };
    CHECK_ZEROES(dynrag_metrics_options, mo, metrics_fields, call_metrics, NULL, true);
    mo.relevance_level = -1;
    ASSERT_EQ(call_metrics(NULL, &mo, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "relevance_level");

    /* Training and evaluation: the options are checked before any file is
     * read, so a missing input shows that a zeroed field passed the checks
     * (the baseline fails with the same not-found status). */
    const char *data[1] = {f.missing};
    dynrag_outcome_router_options ro;
    dynrag_outcome_router_options_init(&ro);
    ro.data = data;
    ro.n_data = 1;
    ro.out_path = f.missing;
    static const field router_fields[] = {
        ERROR(dynrag_outcome_router_options, kind, "kind"),
        VALUE(dynrag_outcome_router_options, valid),
        ERROR(dynrag_outcome_router_options, dim, "dim"),
        VALUE(dynrag_outcome_router_options, clusters),
        ERROR(dynrag_outcome_router_options, lambda, "lambda"),
        ERROR(dynrag_outcome_router_options, cluster_lambda, "cluster_lambda"),
        VALUE(dynrag_outcome_router_options, seed),
        VALUE(dynrag_outcome_router_options, progress),
    };
    CHECK_ZEROES(dynrag_outcome_router_options, ro, router_fields, call_outcome_router, NULL,
                 false);

    dynrag_train_options to;
    dynrag_train_options_init(&to);
    to.train_path = to.valid_path = to.out_path = f.missing;
    static const field train_fields[] = {
        VALUE(dynrag_train_options, config),
        VALUE(dynrag_train_options, seed),
        ERROR(dynrag_train_options, threads, "threads"),
        VALUE(dynrag_train_options, progress),
    };
    CHECK_ZEROES(dynrag_train_options, to, train_fields, call_train, NULL, false);

    dynrag_eval_options ev;
    dynrag_eval_options_init(&ev);
    ev.pipeline_path = ev.data_path = ev.out_dir = f.missing;
    static const field eval_fields[] = {
        VALUE(dynrag_eval_options, format),
        VALUE(dynrag_eval_options, index_dir),
        VALUE(dynrag_eval_options, limit),
        VALUE(dynrag_eval_options, seed),
        VALUE(dynrag_eval_options, no_baselines),
        /* 0 is {DYNRAG_METRIC_NDCG, 0}: nDCG without a cutoff, not recorded */
        ERROR(dynrag_eval_options, quality, "quality"),
        ERROR(dynrag_eval_options, cost, "cost"),
    };
    CHECK_ZEROES(dynrag_eval_options, ev, eval_fields, call_eval, NULL, false);

    static const double grid[] = {0.1, 0.5};
    dynrag_eval_outcomes_options oo;
    dynrag_eval_outcomes_options_init(&oo);
    oo.pipeline_path = oo.outcomes_path = f.missing;
    oo.grid = grid;
    oo.n_grid = 2;
    static const field outcomes_fields[] = {
        VALUE(dynrag_eval_outcomes_options, out_dir),
        VALUE(dynrag_eval_outcomes_options, seed),
        VALUE(dynrag_eval_outcomes_options, strong),
        VALUE(dynrag_eval_outcomes_options, sweep_param),
        VALUE(dynrag_eval_outcomes_options, grid),
        ERROR(dynrag_eval_outcomes_options, n_grid, "n_grid"),
    };
    CHECK_ZEROES(dynrag_eval_outcomes_options, oo, outcomes_fields, call_eval_outcomes, NULL,
                 false);

    dynrag_label_options lo;
    dynrag_label_options_init(&lo);
    lo.pipeline_path = lo.data_path = lo.out_path = lo.work_dir = f.missing;
    static const field label_fields[] = {
        VALUE(dynrag_label_options, index_dir),          VALUE(dynrag_label_options, limit),
        ERROR(dynrag_label_options, success, "success"), VALUE(dynrag_label_options, min_quality),
        VALUE(dynrag_label_options, fallback_label),
    };
    CHECK_ZEROES(dynrag_label_options, lo, label_fields, call_label, NULL, false);

    /* dynrag_eval_compare_options on a 3-query table with a classifier sweep;
     * every metric the evaluation records has a value */
    static const dynrag_metric_spec recorded[] = {
        {DYNRAG_METRIC_EM, 0},       {DYNRAG_METRIC_F1, 0},     {DYNRAG_METRIC_CONTEXT, 0},
        {DYNRAG_METRIC_SUPPORT, 0},  {DYNRAG_METRIC_NDCG, 10},  {DYNRAG_METRIC_RECALL, 10},
        {DYNRAG_METRIC_RECALL, 100}, {DYNRAG_METRIC_MRR, 10},   {DYNRAG_METRIC_STEPS, 0},
        {DYNRAG_METRIC_CALLS, 0},    {DYNRAG_METRIC_TOKENS, 0}, {DYNRAG_METRIC_USD, 0},
        {DYNRAG_METRIC_LATENCY, 0},  {DYNRAG_METRIC_ENERGY, 0}, {DYNRAG_METRIC_QUALITY, 0},
    };
    dynrag_eval_table *t = NULL;
    ASSERT_OK(dynrag_eval_table_new("generator", "classifier", 3, 2, &t, &err), &err);
    for (size_t q = 0; q < 3; q++) {
        char id[16];
        snprintf(id, sizeof id, "q%zu", q);
        t->query_ids[q] = dr_strdup(id);
        for (size_t o = 0; o < 2; o++) {
            dynrag_eval_outcome *c = &t->cells[q * 2 + o];
            for (size_t m = 0; m < DR_ARRAY_LEN(recorded); m++)
                ASSERT_OK(
                    dynrag_eval_outcome_set(c, recorded[m], (double)((q + o + m) % 3) / 2, &err),
                    &err);
            c->ok = true;
            t->router_scores[q * 2 + o] = o == 0 ? 0.3 * (double)q : 1 - 0.3 * (double)q;
        }
        t->router_choice[q] = t->router_first[q] = (int)(q % 2);
    }
    t->options[0] = dr_strdup("small");
    t->options[1] = dr_strdup("large");
    dynrag_eval_compare_options co;
    dynrag_eval_compare_options_init(&co);
    co.sweep = DYNRAG_EVAL_SWEEP_CLASSIFIER;
    static const field compare_fields[] = {
        ERROR(dynrag_eval_compare_options, quality, "quality"),
        ERROR(dynrag_eval_compare_options, cost, "cost"),
        VALUE(dynrag_eval_compare_options, seed),
        VALUE(dynrag_eval_compare_options, sweep),
        VALUE(dynrag_eval_compare_options, escalate),
        VALUE(dynrag_eval_compare_options, grid),
        ERROR(dynrag_eval_compare_options, n_grid, "n_grid"),
        VALUE(dynrag_eval_compare_options, grid_lo),
        ERROR(dynrag_eval_compare_options, grid_hi, "grid_hi"),
    };
    CHECK_ZEROES(dynrag_eval_compare_options, co, compare_fields, call_compare, t, true);
    /* The init'ed sweep is the old default: 21 points over [0, 1]. */
    dynrag_eval_comparison c;
    ASSERT_OK(dynrag_eval_compare(t, &co, &c, &err), &err);
    ASSERT_EQ(c.n_sweep, 21);
    ASSERT_NEAR(c.sweep[0].param, 0, 0);
    ASSERT_NEAR(c.sweep[20].param, 1, 1e-12);
    dynrag_eval_comparison_free(&c);

    /* Metric fields: a metric the evaluation does not record fails naming
     * the field and the metric, before any file is read. */
    co.quality = (dynrag_metric_spec){DYNRAG_METRIC_NDCG, 5};
    ASSERT_EQ(call_compare(t, &co, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "quality: metric 'ndcg@5'");
    co.quality = (dynrag_metric_spec){DYNRAG_METRIC_DEFAULT, 0}; /* the replay functions' */
    ASSERT_EQ(call_compare(t, &co, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "quality: DYNRAG_METRIC_DEFAULT");
    dynrag_eval_compare_options_init(&co);
    co.cost = (dynrag_metric_spec){DYNRAG_METRIC_P, 5};
    ASSERT_EQ(call_compare(t, &co, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "cost: metric 'p@5'");
    co.cost = (dynrag_metric_spec){DYNRAG_METRIC_USD, 0};
    co.quality = (dynrag_metric_spec){DYNRAG_METRIC_NDCG, 10};
    ASSERT_OK(dynrag_eval_compare(t, &co, &c, &err), &err);
    dynrag_eval_comparison_free(&c);
    ev.quality = (dynrag_metric_spec){DYNRAG_METRIC_MRR, 0};
    ASSERT_EQ(call_eval(NULL, &ev, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "quality: metric 'mrr'");
    ev.quality.metric = DYNRAG_METRIC_DEFAULT;
    ev.cost = (dynrag_metric_spec){DYNRAG_METRIC_LATENCY, 3};
    ASSERT_EQ(call_eval(NULL, &ev, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "cost: metric 'latency_ms@3'");
    ev.cost = (dynrag_metric_spec){DYNRAG_METRIC_STEPS, 0};
    ASSERT_EQ(call_eval(NULL, &ev, &err), DYNRAG_ERR_NOTFOUND);
    lo.success = (dynrag_metric_spec){DYNRAG_METRIC_P, 10};
    ASSERT_EQ(call_label(NULL, &lo, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "success: metric 'p@10'");
    lo.success = (dynrag_metric_spec){DYNRAG_METRIC_DEFAULT, 0};
    ASSERT_EQ(call_label(NULL, &lo, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "success");

    dynrag_eval_table_free(t);
    dynrag_engine_close(f.e);
    dynrag_pipeline_free(f.p);
    dynrag_index_close(f.index);
}
