/*
 * test_oom.c - out-of-memory behaviour on the main paths, in the way SQLite
 * and curl test it: a test allocator (installed with dynrag_set_allocator)
 * counts allocation calls and fails the Nth; for N = 1, 2, ... each path is
 * run until a run completes without reaching call N, so every allocation
 * the path makes has failed once. Every failing run must return the path's
 * error (DYNRAG_ERR_NOMEM unless the path documents another), must not
 * crash, and must leave no block of the allocator live once its handles
 * are closed. The allocator puts a header with a magic number in front of
 * every block, so a block freed through the hook that it did not hand out
 * (one from the C library, or one freed twice) is caught too.
 *
 * Paths: pipeline load (a shipped pipeline), index open, search (bm25,
 * dense, hybrid), a query through an open engine (single and multi-step
 * retrieval, the extractive answer, the route-log record), and requests to
 * a running server (/v1/query, /v1/retrieve, /v1/chat/completions), where
 * the promise is that the client is always answered.
 */
#include "test.h"

#include "dynrag/dynrag.h"
#include "server_client.h"

#include <execinfo.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* ---- the failing allocator ----------------------------------------------- */

#define OOM_MAGIC 0x6f6f6d2d626c6b21ull /* "oom-blk!" */
#define OOM_FREED 0x6465616462656566ull /* "deadbeef" */

typedef struct {
    alignas(max_align_t) uint64_t magic;
    uint64_t size;
} oom_hdr;

typedef struct {
    atomic_long calls;    /* allocation calls (malloc, calloc, realloc) this run */
    long fail_at;         /* the call that fails (1-based); 0 = none */
    atomic_int hit;       /* call fail_at was reached (and failed) */
    atomic_long live;     /* blocks handed out and not freed */
    atomic_int bad_free;  /* frees or reallocs of blocks this allocator did not hand out */
} oom_state;

static oom_state oom;

/* Where the failed call came from, printed when a run breaks a promise. */
static void *oom_bt[32];
static int oom_bt_n;

/* Counts a call; true when this one must fail. */
static bool oom_should_fail(void)
{
    long n = atomic_fetch_add(&oom.calls, 1) + 1;
    if (oom.fail_at != 0 && n == oom.fail_at) {
        atomic_store(&oom.hit, 1);
        oom_bt_n = backtrace(oom_bt, 32);
        return true;
    }
    return false;
}

static void *oom_block(oom_hdr *h, size_t size)
{
    h->magic = OOM_MAGIC;
    h->size = size;
    atomic_fetch_add(&oom.live, 1);
    return h + 1;
}

/* The header of a block, or NULL (counted as a bad free) when p is not a
 * live block of this allocator. */
static oom_hdr *oom_header(void *p)
{
    oom_hdr *h = (oom_hdr *)p - 1;
    if (h->magic != OOM_MAGIC) {
        atomic_fetch_add(&oom.bad_free, 1);
        return NULL;
    }
    return h;
}

static void *oom_malloc(void *user, size_t size)
{
    (void)user;
    if (size == 0)
        atomic_fetch_add(&oom.bad_free, 1); /* the hook promises size >= 1 */
    if (oom_should_fail() || size > SIZE_MAX - sizeof(oom_hdr))
        return NULL;
    oom_hdr *h = malloc(sizeof(oom_hdr) + size);
    return h ? oom_block(h, size) : NULL;
}

static void *oom_calloc(void *user, size_t count, size_t size)
{
    (void)user;
    if (count == 0 || size == 0)
        atomic_fetch_add(&oom.bad_free, 1);
    if (oom_should_fail() || (size && count > (SIZE_MAX - sizeof(oom_hdr)) / size))
        return NULL;
    oom_hdr *h = calloc(1, sizeof(oom_hdr) + count * size);
    return h ? oom_block(h, count * size) : NULL;
}

static void *oom_realloc(void *user, void *p, size_t size)
{
    (void)user;
    if (p == NULL || size == 0)
        atomic_fetch_add(&oom.bad_free, 1);
    oom_hdr *h = p ? oom_header(p) : NULL;
    if (h == NULL || oom_should_fail() || size > SIZE_MAX - sizeof(oom_hdr))
        return NULL;
    oom_hdr *n = realloc(h, sizeof(oom_hdr) + size);
    if (n == NULL)
        return NULL;
    n->size = size;
    return n + 1;
}

static void oom_free(void *user, void *p)
{
    (void)user;
    if (p == NULL) {
        atomic_fetch_add(&oom.bad_free, 1); /* the hook promises non-NULL */
        return;
    }
    oom_hdr *h = oom_header(p);
    if (h == NULL)
        return;
    h->magic = OOM_FREED;
    atomic_fetch_sub(&oom.live, 1);
    free(h);
}

static const dynrag_allocator oom_allocator = {
    .malloc_fn = oom_malloc,
    .calloc_fn = oom_calloc,
    .realloc_fn = oom_realloc,
    .free_fn = oom_free,
    .user = NULL,
};

/* ---- fixtures ------------------------------------------------------------------ */

static const char *const oom_corpus =
    "{\"_id\":\"france\",\"title\":\"France\",\"text\":\"France is a country in Western Europe. "
    "The capital of France is Paris, which is also its largest city.\"}\n"
    "{\"_id\":\"eiffel\",\"title\":\"Eiffel Tower\",\"text\":\"The Eiffel Tower is a wrought-iron "
    "lattice tower in Paris. It was completed in 1889.\"}\n"
    "{\"_id\":\"sqlite\",\"title\":\"SQLite\",\"text\":\"SQLite is a C library that implements a "
    "small, fast, self-contained SQL database engine.\"}\n"
    "{\"_id\":\"moon\",\"title\":\"Moon\",\"text\":\"The Moon is the only natural satellite of the "
    "Earth. Neil Armstrong walked on the Moon in 1969.\"}\n";

typedef struct {
    char index_dir[4200];
    char pipeline[4200];
    dynrag_search_mode mode;
    uint64_t sig; /* what the run computed (hits, answer, JSON), hashed */
    /* Paths over a long-lived handle (an engine, a server): the handle was
     * opened through the test allocator (failing nothing), which stays
     * installed across runs; each run must free what it allocates. */
    bool hook_kept;
    dynrag_pipeline *pipe;
    dynrag_engine *engine;
    const char *const *questions; /* NULL-terminated */
    int max_steps;                /* most retrieval steps of one query (path_query) */
    bool force_multi;             /* path_query also runs the last question with multi forced */
    /* > 1: past the first and before the last OOM_DENSE calls, fail only
     * every stride-th call (a path whose middle is one long homogeneous
     * loop, e.g. parsing a 19,000-node JSON vocabulary);
     * DYNRAG_TEST_OOM_FULL=1 fails every call all the same. */
    long stride;
    dynrag_server *server;
    int port;
    const char *const *requests; /* path_serve: NULL-terminated pairs of path and JSON body */
} oom_ctx;

/* FNV-1a over a string, folded into *h (NULL hashes as a marker). */
static void oom_mix(uint64_t *h, const char *s)
{
    if (s == NULL)
        s = "\x01(null)";
    for (; *s; s++)
        *h = (*h ^ (unsigned char)*s) * 0x100000001b3ull;
    *h = (*h ^ 0xff) * 0x100000001b3ull;
}

/* Folds JSON text into *h with every number and every digit of a string
 * left out (times and timings vary between runs; keys, strings and
 * structure must not). */
static void oom_mix_json_shape(uint64_t *h, const char *json)
{
    if (json == NULL) {
        oom_mix(h, NULL);
        return;
    }
    bool in_str = false;
    for (const char *p = json; *p; p++) {
        char ch = *p;
        if (in_str) {
            if (ch == '\\' && p[1]) {
                *h = (*h ^ (unsigned char)ch) * 0x100000001b3ull;
                ch = *++p;
            } else if (ch == '"') {
                in_str = false;
            }
        } else if (ch == '"') {
            in_str = true;
        } else if ((ch >= '0' && ch <= '9') || ch == '-') {
            while (p[1] && strchr("0123456789.eE+-", p[1]))
                p++;
            ch = '#';
        }
        if (in_str && ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            continue; /* times, timings and query ids' random hex inside strings */
        *h = (*h ^ (unsigned char)ch) * 0x100000001b3ull;
    }
}

/* Calls failed one by one at both ends of a strided path (oom_ctx.stride). */
#define OOM_DENSE 1500

/* ---- the driver ------------------------------------------------------------ */

/* Prints the failed call's stack (addresses for addr2line). */
static void oom_print_bt(void)
{
    fprintf(stderr, "the failed allocation was called from:\n");
    backtrace_symbols_fd(oom_bt, oom_bt_n, 2);
}

/* One run of a path under the failing allocator: returns the path's status
 * with every handle it opened closed again. */
typedef int (*oom_path_fn)(void *ctx, dynrag_error *err);

/* One run with no failure: its status, and ctx->sig as the reference. */
static int oom_reference(oom_path_fn fn, oom_ctx *c, long *calls)
{
    atomic_store(&oom.calls, 0);
    atomic_store(&oom.live, 0);
    oom.fail_at = 0;
    dynrag_error err;
    dynrag_error_clear(&err);
    c->sig = 0xcbf29ce484222325ull;
    dynrag_set_allocator(&oom_allocator);
    int rc = fn(c, &err);
    if (!c->hook_kept)
        dynrag_set_allocator(NULL);
    if (calls)
        *calls = atomic_load(&oom.calls);
    return rc;
}

typedef struct {
    long total;      /* allocation calls of a run that fails nothing */
    long runs;       /* runs with a failure */
    long nomem;      /* of which returned DYNRAG_ERR_NOMEM */
    long other;      /* of which returned another allowed status */
    long absorbed;   /* of which succeeded all the same (a cache or pool that
                        does without), with the reference run's output */
} oom_report;

/*
 * Runs fn with call N failing for N = first, first+1, ... until a run makes
 * fewer than N calls (and must then succeed). Every run must leave no live
 * block and no bad free; a run whose failure was reached must return
 * DYNRAG_ERR_NOMEM or one of `allowed` (n_allowed entries), or succeed with
 * exactly the output (c->sig) of a run that fails nothing: a best-effort
 * cache may do without its memory, a result may not. Returns false
 * (after reporting with test_fail_) on the first broken run. `max_runs`
 * bounds the loop so a path that never completes fails instead of hanging.
 */
static bool oom_drive(const char *name, oom_path_fn fn, oom_ctx *ctx, long first, long max_runs,
                      const int *allowed, size_t n_allowed, oom_report *rep)
{
    /* DYNRAG_TEST_OOM_ALL=1 reports every broken run instead of the first. */
    const char *all = getenv("DYNRAG_TEST_OOM_ALL");
    bool keep_going = all != NULL && *all != '\0';
    memset(rep, 0, sizeof(*rep));
    oom_bt_n = backtrace(oom_bt, 32); /* loads libgcc before the first run */
    long ref_calls = 0;
    int ref_rc = oom_reference(fn, ctx, &ref_calls);
    const char *full = getenv("DYNRAG_TEST_OOM_FULL");
    long stride = full && *full ? 1 : ctx->stride;
    uint64_t ref_sig = ctx->sig;
    if (ref_rc != DYNRAG_OK) {
        test_fail_(__FILE__, __LINE__, "%s: the reference run returned %s", name,
                   dynrag_status_name(ref_rc));
        return false;
    }
    for (long n = first; n < first + max_runs; n++) {
        if (stride > 1 && n > first + OOM_DENSE && n < ref_calls - OOM_DENSE &&
            (n - first) % stride != 0)
            continue;
        atomic_store(&oom.calls, 0);
        atomic_store(&oom.hit, 0);
        atomic_store(&oom.live, 0);
        atomic_store(&oom.bad_free, 0);
        oom.fail_at = n;
        dynrag_error err;
        dynrag_error_clear(&err);
        ctx->sig = 0xcbf29ce484222325ull;
        if (dynrag_set_allocator(&oom_allocator) != DYNRAG_OK) {
            test_fail_(__FILE__, __LINE__, "%s: dynrag_set_allocator failed", name);
            return false;
        }
        int rc = fn(ctx, &err);
        if (!ctx->hook_kept)
            dynrag_set_allocator(NULL);
        long live = atomic_load(&oom.live), calls = atomic_load(&oom.calls);
        int hit = atomic_load(&oom.hit), bad = atomic_load(&oom.bad_free);
        if (live != 0 || bad != 0) {
            test_fail_(__FILE__, __LINE__,
                       "%s: failing allocation %ld of %ld: %ld blocks left live, %d bad "
                       "frees (status %s: %s)",
                       name, n, calls, live, bad, dynrag_status_name(rc), dynrag_errmsg(&err));
            if (hit)
                oom_print_bt();
            if (!keep_going)
                return false;
            continue;
        }
        if (!hit) {
            if (rc != DYNRAG_OK || ctx->sig != ref_sig) {
                test_fail_(__FILE__, __LINE__, "%s: the run without a failure returned %s (%s): %s",
                           name, dynrag_status_name(rc),
                           ctx->sig != ref_sig ? "other output" : "same output",
                           dynrag_errmsg(&err));
                return false;
            }
            rep->total = calls;
            fprintf(stderr, "%s: %ld allocation calls, failed %s from %ld: %ld runs, %ld "
                            "NOMEM, %ld other allowed status, %ld absorbed\n",
                    name, calls, stride > 1 ? "strided" : "each", first, rep->runs, rep->nomem,
                    rep->other, rep->absorbed);
            return true;
        }
        rep->runs++;
        bool ok = rc == DYNRAG_ERR_NOMEM;
        if (ok)
            rep->nomem++;
        if (rc == DYNRAG_OK && ctx->sig == ref_sig) {
            ok = true;
            rep->absorbed++;
        }
        for (size_t i = 0; i < n_allowed && !ok; i++)
            if (rc == allowed[i]) {
                ok = true;
                rep->other++;
            }
        if (!ok) {
            test_fail_(__FILE__, __LINE__, "%s: failing allocation %ld of %ld returned %s: %s",
                       name, n, calls, dynrag_status_name(rc), dynrag_errmsg(&err));
            oom_print_bt();
            if (!keep_going)
                return false;
        }
    }
    test_fail_(__FILE__, __LINE__, "%s: still failing after %ld runs", name, max_runs);
    return false;
}

/* Builds the small index (default allocator) and fills the context. */
static int oom_setup(oom_ctx *c)
{
    memset(c, 0, sizeof(*c));
    char corpus[4200];
    snprintf(corpus, sizeof(corpus), "%s", test_write_file("corpus.jsonl", oom_corpus));
    snprintf(c->index_dir, sizeof(c->index_dir), "%s/index", test_tmpdir());
    snprintf(c->pipeline, sizeof(c->pipeline), "%s/pipelines/adaptive-rag.yaml",
             test_source_dir());
    const char *inputs[] = {corpus};
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    bo.embedder.kind = "builtin";
    bo.chunk_tokens = 40;
    bo.chunk_overlap = 5;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_index_add(c->index_dir, inputs, 1, &bo, NULL, &err);
    if (rc != DYNRAG_OK)
        fprintf(stderr, "index: %s\n", dynrag_errmsg(&err));
    return rc;
}

/* ---- the paths ------------------------------------------------------------------- */

static int path_pipeline_load(void *ctx, dynrag_error *err)
{
    oom_ctx *c = ctx;
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = NULL;
    int rc = dynrag_pipeline_load(c->pipeline, &p, &d, err);
    if (rc == DYNRAG_OK) {
        char *json = dynrag_pipeline_to_json(p);
        if (json == NULL)
            rc = DYNRAG_ERR_NOMEM;
        oom_mix(&c->sig, json);
        dynrag_free(json);
    }
    dynrag_diags_free(d);
    dynrag_pipeline_free(p);
    return rc;
}

static int path_index_open(void *ctx, dynrag_error *err)
{
    oom_ctx *c = ctx;
    dynrag_index *idx = NULL;
    int rc = dynrag_index_open(c->index_dir, NULL, &idx, err);
    if (rc == DYNRAG_OK) {
        dynrag_index_info info;
        rc = dynrag_index_get_info(idx, &info);
        char line[512];
        snprintf(line, sizeof(line), "%llu %llu %d %s %s %.9g %lld",
                 (unsigned long long)info.docs, (unsigned long long)info.chunks, info.dim,
                 info.embedder, info.faiss_factory, info.avg_chunk_tokens,
                 (long long)info.generation);
        oom_mix(&c->sig, line);
    }
    dynrag_index_close(idx);
    return rc;
}

static int path_search(void *ctx, dynrag_error *err)
{
    oom_ctx *c = ctx;
    dynrag_index *idx = NULL;
    dynrag_hits h;
    memset(&h, 0, sizeof(h));
    int rc = dynrag_index_open(c->index_dir, NULL, &idx, err);
    if (rc == DYNRAG_OK) {
        dynrag_search_options o;
        dynrag_search_options_init(&o);
        o.mode = c->mode;
        o.k = 3;
        rc = dynrag_index_search(idx, "capital of France Paris", &o, &h, err);
    }
    for (size_t i = 0; rc == DYNRAG_OK && i < h.n; i++) {
        char line[128];
        snprintf(line, sizeof(line), "%lld %.12g", (long long)h.hits[i].chunk_id, h.hits[i].score);
        oom_mix(&c->sig, line);
        oom_mix(&c->sig, h.hits[i].doc_id);
        oom_mix(&c->sig, h.hits[i].title);
        oom_mix(&c->sig, h.hits[i].text);
    }
    dynrag_hits_free(&h);
    dynrag_index_close(idx);
    return rc;
}

/* The query path over an engine opened once (oom_engine_open): each run
 * answers the questions, and hashes answers, citations and decisions (the
 * the shape of the route-log record: its numbers vary with timings). */
static int path_query(void *ctx, dynrag_error *err)
{
    oom_ctx *c = ctx;
    int rc = DYNRAG_OK;
    size_t n_q = 0;
    while (c->questions[n_q] != NULL)
        n_q++;
    /* Every question as routed, then the last one again with multi-step
     * retrieval forced (the router may find one step enough for it). */
    static const dynrag_force multi = {"retrieval_mode", "multi"};
    for (size_t run = 0; rc == DYNRAG_OK && run <= n_q; run++) {
        size_t q = run < n_q ? run : n_q - 1;
        if (n_q == 0)
            break;
        dynrag_query_options o;
        dynrag_query_options_init(&o);
        o.query_id = "oom";
        if (run == n_q && c->force_multi) {
            o.force = &multi;
            o.n_force = 1;
        } else if (run == n_q) {
            break;
        }
        dynrag_result *r = NULL;
        rc = dynrag_engine_query(c->engine, c->questions[q], &o, &r, err);
        if (rc != DYNRAG_OK)
            break;
        oom_mix(&c->sig, dynrag_result_answer(r));
        oom_mix(&c->sig, dynrag_result_unanswerable(r) ? "u" : "a");
        for (size_t i = 0; i < dynrag_result_n_citations(r); i++)
            oom_mix(&c->sig, dynrag_result_citation(r, i)->doc_id);
        for (size_t i = 0; i < dynrag_result_n_decisions(r); i++) {
            const dynrag_decision *d = dynrag_result_decision(r, i);
            oom_mix(&c->sig, d->stage);
            oom_mix(&c->sig, d->choice);
        }
        oom_mix_json_shape(&c->sig, dynrag_result_json(r));
        int steps = dynrag_result_totals(r)->retrieval_steps;
        c->max_steps = steps > c->max_steps ? steps : c->max_steps;
        dynrag_result_free(r);
    }
    return rc;
}

/* Opens the pipeline and its engine through the test allocator, failing
 * nothing, and leaves the allocator installed (oom_engine_close restores
 * the default). */
/* Installs the test allocator for good (failing nothing) and loads a
 * shipped pipeline through it: the start of oom_engine_open and
 * oom_server_open. */
static int oom_hook_and_load(oom_ctx *c, const char *pipeline, dynrag_error *err)
{
    snprintf(c->pipeline, sizeof(c->pipeline), "%s/pipelines/%s", test_source_dir(), pipeline);
    oom.fail_at = 0;
    atomic_store(&oom.live, 0);
    dynrag_set_allocator(&oom_allocator);
    c->hook_kept = true;
    dynrag_error_clear(err);
    return dynrag_pipeline_load(c->pipeline, &c->pipe, NULL, err);
}

/* Frees the pipeline and restores the default allocator (after the
 * engine or server over it was closed). */
static void oom_unload_and_unhook(oom_ctx *c)
{
    dynrag_pipeline_free(c->pipe);
    c->pipe = NULL;
    dynrag_set_allocator(NULL);
    c->hook_kept = false;
}

static int oom_engine_open(oom_ctx *c, const char *pipeline)
{
    dynrag_error err;
    int rc = oom_hook_and_load(c, pipeline, &err);
    if (rc == DYNRAG_OK) {
        dynrag_engine_options eo;
        dynrag_engine_options_init(&eo);
        eo.index_dir = c->index_dir;
        eo.no_log = true;
        rc = dynrag_engine_open(c->pipe, &eo, &c->engine, &err);
    }
    if (rc != DYNRAG_OK)
        fprintf(stderr, "engine: %s\n", dynrag_errmsg(&err));
    return rc;
}

/* Closes what oom_engine_open opened and restores the default allocator
 * (leaks of the engine itself are LeakSanitizer's to find). */
static void oom_engine_close(oom_ctx *c)
{
    dynrag_engine_close(c->engine);
    c->engine = NULL;
    oom_unload_and_unhook(c);
}

/* A pipeline whose stages carry the routers a program drives on their own
 * (dynrag/router.h): rules, cost, an in-memory bandit and a cascade. */
static const char oom_router_yaml[] =
    "version: 1\nname: routers\n"
    "stages:\n"
    "  index:\n"
    "    options:\n"
    "      - {name: lex, kind: bm25}\n"
    "      - {name: lex2, kind: bm25, params: {k1: 1.2}}\n"
    "    router:\n"
    "      type: rules\n"
    "      params:\n"
    "        rules:\n"
    "          - {when: {regex: \"sqlite|wal\"}, option: lex2}\n"
    "        default: lex\n"
    "  context:\n"
    "    options:\n"
    "      - {name: small, kind: topk, params: {k: 2}}\n"
    "      - {name: big, kind: topk, params: {k: 6}}\n"
    "    router: {type: cascade, params: {judge: agreement, threshold: 0.6}}\n"
    "  generator:\n"
    "    options:\n"
    "      - {name: a, kind: extractive, quality: 0.4, cost: {usd_per_1k_input: 0.001}}\n"
    "      - {name: b, kind: extractive, quality: 0.8, cost: {usd_per_1k_input: 0.01}}\n"
    "    router: {type: cost, params: {objective: max_quality}}\n"
    "  prompt:\n"
    "    options:\n"
    "      - {name: t, kind: template, params: {template: \"{{question}}\"}}\n"
    "    router: {type: bandit, params: {algorithm: linucb}}\n";

/* The router API: load, open every stage's router (a bandit in memory),
 * route two queries, feed a reward back, judge and pick a cascade's next
 * option, set a router param. */
static int path_router(void *ctx, dynrag_error *err)
{
    oom_ctx *c = ctx;
    (void)c;
    dynrag_pipeline *p = NULL;
    int rc = dynrag_pipeline_load_string(oom_router_yaml, strlen(oom_router_yaml), "r.yaml", NULL,
                                         &p, NULL, err);
    static const char *const stages[] = {"index", "context", "generator", "prompt"};
    static const char *const queries[] = {"How do I enable WAL mode in sqlite?",
                                          "Who wrote the Iliad and when?"};
    for (size_t si = 0; si < 4 && rc == DYNRAG_OK; si++) {
        dynrag_router_options ro;
        dynrag_router_options_init(&ro);
        ro.in_memory = true;
        dynrag_router *r = NULL;
        rc = dynrag_router_open(p, stages[si], &ro, &r, err);
        for (size_t qi = 0; qi < 2 && rc == DYNRAG_OK; qi++) {
            dynrag_route d;
            rc = dynrag_router_route(r, queries[qi], &d, err);
            if (rc != DYNRAG_OK)
                break;
            char line[400];
            snprintf(line, sizeof line, "%s %d %s", stages[si], d.option, d.reason);
            oom_mix(&c->sig, line);
            char id[16];
            snprintf(id, sizeof id, "q%zu", qi);
            rc = dynrag_router_feedback(r, id, queries[qi], (size_t)d.option, 0.7, 0.001, 20, err);
        }
        if (rc == DYNRAG_OK && strcmp(stages[si], "context") == 0) {
            const char *samples[] = {"Paris", "paris.", "Lyon"};
            dynrag_answer a;
            dynrag_answer_init(&a);
            a.text = "Paris";
            a.samples = samples;
            a.n_samples = 3;
            double conf = 0;
            char why[128];
            rc = dynrag_router_judge(r, &a, &conf, why, sizeof why, err);
            bool called[2] = {true, false};
            int next = -1;
            if (rc == DYNRAG_OK)
                rc = dynrag_router_cascade_next(r, queries[0], called, 0, conf, &next, err);
            char line[200];
            snprintf(line, sizeof line, "judge %.6f %s next %d", conf, why, next);
            oom_mix(&c->sig, line);
        }
        dynrag_router_close(r);
    }
    if (rc == DYNRAG_OK)
        rc = dynrag_pipeline_set_router_param(p, "context", "threshold", 0.75, err);
    dynrag_pipeline_free(p);
    return rc;
}

/* ---- the tests -------------------------------------------------------------------- */

/* Bound on runs per path: far above any path's allocation count, so it
 * only stops a path that never completes. */
#define OOM_MAX_RUNS 200000

TEST(oom_allocator_hook_contract)
{
    /* NULL functions are refused and change nothing. */
    dynrag_allocator a = oom_allocator;
    a.calloc_fn = NULL;
    ASSERT_EQ(dynrag_set_allocator(&a), DYNRAG_ERR_INVALID);
    /* The wrappers' guarantees: size 0 asks for 1 byte, free(NULL) and
     * realloc(NULL) never reach the hook (bad_free counts violations). */
    ASSERT_EQ(dynrag_set_allocator(&oom_allocator), DYNRAG_OK);
    atomic_store(&oom.live, 0);
    atomic_store(&oom.bad_free, 0);
    oom.fail_at = 0;
    dynrag_free(NULL);
    dynrag_pipeline *p = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    const char *yaml = "version: 1\nname: x\nstages:\n  generator:\n    options:\n"
                       "      - {name: e, kind: extractive}\n";
    int rc = dynrag_pipeline_load_string(yaml, strlen(yaml), "x.yaml", NULL, &p, NULL, &err);
    char *json = rc == DYNRAG_OK ? dynrag_pipeline_to_json(p) : NULL;
    long live_with_json = atomic_load(&oom.live);
    dynrag_free(json);
    dynrag_pipeline_free(p);
    ASSERT_EQ(dynrag_set_allocator(NULL), DYNRAG_OK);
    ASSERT_OK(rc, &err);
    ASSERT(json != NULL);
    ASSERT_GT(live_with_json, 0);
    ASSERT_EQ(atomic_load(&oom.live), 0);
    ASSERT_EQ(atomic_load(&oom.bad_free), 0);
    /* The default allocator is back: nothing more reaches the hook. */
    long before = atomic_load(&oom.calls);
    rc = dynrag_pipeline_load_string(yaml, strlen(yaml), "x.yaml", NULL, &p, NULL, &err);
    dynrag_pipeline_free(p);
    ASSERT_OK(rc, &err);
    ASSERT_EQ(atomic_load(&oom.calls), before);
}

TEST(oom_pipeline_load)
{
    oom_ctx c;
    ASSERT_OK(oom_setup(&c), NULL);
    oom_report rep;
    /* An out-of-memory diagnostic is a diagnostic: PARSE carries it. */
    const int allowed[] = {DYNRAG_ERR_PARSE};
    if (!oom_drive("pipeline load", path_pipeline_load, &c, 1, OOM_MAX_RUNS, allowed, 1, &rep))
        return;
    ASSERT_GT(rep.total, 10);
}

TEST(oom_index_open)
{
    oom_ctx c;
    ASSERT_OK(oom_setup(&c), NULL);
    oom_report rep;
    if (!oom_drive("index open", path_index_open, &c, 1, OOM_MAX_RUNS, NULL, 0, &rep))
        return;
    ASSERT_GT(rep.total, 5);
}

/* Search: the open's calls failed in oom_index_open; here every call after
 * them. */
static void oom_search_mode(dynrag_search_mode mode, const char *name)
{
    oom_ctx c;
    ASSERT_OK(oom_setup(&c), NULL);
    c.mode = mode;
    int rc;
    long open_calls = 0;
    rc = oom_reference(path_index_open, &c, &open_calls);
    ASSERT_OK(rc, NULL);
    oom_report rep;
    if (!oom_drive(name, path_search, &c, open_calls + 1, OOM_MAX_RUNS, NULL, 0, &rep))
        return;
    ASSERT_GT(rep.runs, 3);
}

TEST(oom_search_bm25)
{
    oom_search_mode(DYNRAG_SEARCH_BM25, "search bm25");
}

TEST(oom_search_dense)
{
    oom_search_mode(DYNRAG_SEARCH_DENSE, "search dense");
}

TEST(oom_search_hybrid)
{
    oom_search_mode(DYNRAG_SEARCH_HYBRID, "search hybrid");
}

/* A query of the shipped quick-start pipeline, offline (builtin embedder,
 * extractive answerer): routing, retrieval (single and multi-step), context,
 * prompt, generation and the record. Failed allocations inside the engine
 * must fail the query with NOMEM (or be absorbed) and free everything the
 * query allocated. */
TEST(oom_engine_query)
{
    oom_ctx c;
    ASSERT_OK(oom_setup(&c), NULL);
    static const char *const questions[] = {
        "What is the capital of France?",
        "When was the tower in the capital of France completed, and who walked on the Moon?",
        NULL};
    c.questions = questions;
    c.force_multi = true;
    int rc = oom_engine_open(&c, "adaptive-rag.yaml");
    if (rc != DYNRAG_OK) {
        oom_engine_close(&c);
        ASSERT_OK(rc, NULL);
    }
    oom_report rep;
    bool ok = oom_drive("engine query", path_query, &c, 1, OOM_MAX_RUNS, NULL, 0, &rep);
    oom_engine_close(&c);
    if (!ok)
        return;
    ASSERT_GT(rep.runs, 100);
    ASSERT_GT(c.max_steps, 1); /* the second question took the multi-step path */
}

/* ---- serve ----------------------------------------------------------------- */

/* Waits (up to about 2 s) until the server has freed every block a request made:
 * its threads may still be finishing after the client got the reply. */
static void oom_wait_idle(void)
{
    for (int i = 0; i < 40000 && atomic_load(&oom.live) != 0; i++)
        nanosleep(&(struct timespec){0, 50000}, NULL);
}

/*
 * The serve path: each request of c->requests sent to a server started once
 * (oom_server_open), on a new connection. A reply of 200 counts as success
 * (its status and body shape hashed); a 500 or 503 whose JSON error says
 * "out of memory" as DYNRAG_ERR_NOMEM; anything else (another status, a
 * connection closed without a reply) as DYNRAG_ERR_INTERNAL, which fails
 * the test: a client is always told.
 */
static int path_serve(void *ctx, dynrag_error *err)
{
    oom_ctx *c = ctx;
    int rc = DYNRAG_OK;
    for (size_t i = 0; rc == DYNRAG_OK && c->requests[i] != NULL; i += 2) {
        http_reply r;
        memset(&r, 0, sizeof(r));
        int t = http_post_json(c->port, c->requests[i], c->requests[i + 1], NULL, &r);
        char line[64];
        snprintf(line, sizeof(line), "%ld", r.status);
        if (t == 0 && r.status == 200) {
            oom_mix(&c->sig, line);
            oom_mix_json_shape(&c->sig, r.body);
        } else if (t == 0 && (r.status == 500 || r.status == 503) && r.body &&
                   strstr(r.body, "out of memory") != NULL) {
            rc = DYNRAG_ERR_NOMEM;
            snprintf(err->msg, sizeof(err->msg), "%s: %ld out of memory", c->requests[i],
                     r.status);
        } else {
            rc = DYNRAG_ERR_INTERNAL;
            snprintf(err->msg, sizeof(err->msg), "%s: %s %ld: %.200s", c->requests[i],
                     t == 0 ? "status" : "transport failure, status", r.status,
                     r.body ? r.body : "");
        }
        err->status = rc;
        http_reply_free(&r);
    }
    oom_wait_idle(); /* the connections' teardown, before the run's blocks are counted */
    return rc;
}

/* Opens and starts a server over the pipeline through the test allocator
 * (failing nothing), which stays installed. */
static int oom_server_open(oom_ctx *c, const char *pipeline)
{
    dynrag_error err;
    int rc = oom_hook_and_load(c, pipeline, &err);
    if (rc == DYNRAG_OK) {
        dynrag_server_options so;
        dynrag_server_options_init(&so);
        so.index_dir = c->index_dir;
        so.no_log = true;
        so.threads = 1;
        rc = dynrag_server_open(c->pipe, &so, &c->server, &err);
    }
    if (rc == DYNRAG_OK)
        rc = dynrag_server_start(c->server, &err);
    if (rc == DYNRAG_OK)
        c->port = dynrag_server_port(c->server);
    if (rc != DYNRAG_OK)
        fprintf(stderr, "server: %s\n", dynrag_errmsg(&err));
    return rc;
}

static void oom_server_close(oom_ctx *c)
{
    dynrag_server_close(c->server);
    c->server = NULL;
    oom_unload_and_unhook(c);
}

/* Requests to a running server: parsing, validation, the engine, the JSON
 * reply, for /v1/query, /v1/retrieve and the OpenAI-compatible
 * /v1/chat/completions. Every failed allocation inside the server must
 * still answer the client (500 or 503, "out of memory") and leave no block
 * behind once the request is over. */
TEST(oom_serve_request)
{
    oom_ctx c;
    ASSERT_OK(oom_setup(&c), NULL);
    static const char *const requests[] = {
        "/v1/query", "{\"query\": \"What is the capital of France?\"}",
        "/v1/retrieve", "{\"query\": \"Eiffel Tower Paris\", \"k\": 3}",
        "/v1/chat/completions",
        "{\"model\": \"dynrag\", \"messages\": [{\"role\": \"user\", "
        "\"content\": \"Who walked on the Moon?\"}]}",
        NULL};
    c.requests = requests;
    int rc = oom_server_open(&c, "adaptive-rag.yaml");
    if (rc != DYNRAG_OK) {
        oom_server_close(&c);
        ASSERT_OK(rc, NULL);
    }
    oom_report rep;
    bool ok = oom_drive("serve request", path_serve, &c, 1, OOM_MAX_RUNS, NULL, 0, &rep);
    oom_server_close(&c);
    if (!ok)
        return;
    ASSERT_GT(rep.runs, 100);
}

/* Engine open and close over a loaded pipeline: the index, every router
 * (the shipped complexity classifier's model file included) and the
 * generators. */
static int path_engine_open(void *ctx, dynrag_error *err)
{
    oom_ctx *c = ctx;
    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    eo.index_dir = c->index_dir;
    eo.no_log = true;
    dynrag_engine *e = NULL;
    int rc = dynrag_engine_open(c->pipe, &eo, &e, err);
    if (rc == DYNRAG_OK)
        oom_mix(&c->sig, dynrag_engine_index(e, NULL) ? "index" : "no index");
    dynrag_engine_close(e);
    return rc;
}

TEST(oom_engine_open)
{
    oom_ctx c;
    ASSERT_OK(oom_setup(&c), NULL);
    int rc = oom_engine_open(&c, "adaptive-rag.yaml");
    /* the pipeline stays loaded; each run opens and closes an engine */
    dynrag_engine_close(c.engine);
    c.engine = NULL;
    if (rc != DYNRAG_OK) {
        oom_engine_close(&c);
        ASSERT_OK(rc, NULL);
    }
    c.stride = 37;
    oom_report rep;
    bool ok = oom_drive("engine open", path_engine_open, &c, 1, OOM_MAX_RUNS, NULL, 0, &rep);
    oom_engine_close(&c);
    if (!ok)
        return;
    ASSERT_GT(rep.runs, 100);
}

TEST(oom_router_api)
{
    oom_ctx c;
    memset(&c, 0, sizeof c);
    oom_report rep;
    const int allowed[] = {DYNRAG_ERR_PARSE};
    if (!oom_drive("router api", path_router, &c, 1, OOM_MAX_RUNS, allowed, 1, &rep))
        return;
    ASSERT_GT(rep.total, 50);
}
