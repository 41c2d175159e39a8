/*
 * retrieval_bench.c - BM25 quality and speed: the MaxScore engine against
 * plain FTS5 (`MATCH ... ORDER BY rank LIMIT k`), in one process.
 *
 *   dynrag_bench_retrieval scifact DATA_DIR WORK_DIR [--repeat R] [--k1 X] [--b Y]
 *   dynrag_bench_retrieval scale N WORK_DIR [--queries Q] [--repeat R] [--fts-queries F]
 *
 * scifact: builds WORK_DIR/index.db from DATA_DIR/corpus.jsonl (agreed schema,
 * one chunk per document: title + "\n" + text) unless it exists, opens the
 * engine (building, then loading, the sidecar), evaluates nDCG@10, Recall@100
 * and MRR@10 on the queries judged in qrels/train.tsv, then times top-100
 * search over all queries on one thread: R repetitions for each engine,
 * QPS as the median over repetitions, latency percentiles over all calls.
 *
 * scale: generates N passages (deterministic; Zipf(1) vocabulary of 200,000
 * words; 20-80 words each) into WORK_DIR/index.db, reports build time and
 * sizes, and times Q generated queries (2-6 words of rank >= 20).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/util.h"
#include "dynrag/metrics.h"
#include "retrieve/bm25.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define K_TOP 100

static void die(const char *what, const dynrag_error *err)
{
    fprintf(stderr, "retrieval_bench: %s: %s\n", what, err ? dynrag_errmsg(err) : "");
    exit(1);
}

static const char *schema_sql =
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    "CREATE TABLE docs(id INTEGER PRIMARY KEY, doc_id TEXT UNIQUE NOT NULL, title TEXT, "
    "text TEXT, source TEXT);"
    "CREATE TABLE chunks(id INTEGER PRIMARY KEY, doc INTEGER NOT NULL, ord INTEGER, "
    "start INTEGER, end INTEGER, body TEXT NOT NULL);"
    "CREATE VIRTUAL TABLE chunk_fts USING fts5(body, content='chunks', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2');"
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
    "INSERT INTO meta VALUES('generation', '1');";

typedef struct loader {
    sqlite3 *db;
    sqlite3_stmt *d, *c, *f;
    int64_t n;
} loader;

static void loader_open(loader *L, const char *path)
{
    memset(L, 0, sizeof(*L));
    if (sqlite3_open(path, &L->db) != SQLITE_OK ||
        sqlite3_exec(L->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(L->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        die("creating index.db", NULL);
    if (sqlite3_prepare_v2(L->db, "INSERT INTO docs(id, doc_id, title, text, source) "
                                  "VALUES(?1, ?2, ?3, ?4, 'bench')", -1, &L->d, NULL) ||
        sqlite3_prepare_v2(L->db, "INSERT INTO chunks(id, doc, ord, start, end, body) "
                                  "VALUES(?1, ?1, 0, 0, ?2, ?3)", -1, &L->c, NULL) ||
        sqlite3_prepare_v2(L->db, "INSERT INTO chunk_fts(rowid, body) VALUES(?1, ?2)", -1, &L->f,
                           NULL))
        die(sqlite3_errmsg(L->db), NULL);
}

static void loader_add(loader *L, const char *doc_id, const char *title, const char *text)
{
    int64_t id = ++L->n;
    char *body = dr_asprintf("%s\n%s", title, text);
    if (body == NULL)
        die("out of memory", NULL);
    sqlite3_bind_int64(L->d, 1, id);
    sqlite3_bind_text(L->d, 2, doc_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(L->d, 3, title, -1, SQLITE_STATIC);
    sqlite3_bind_text(L->d, 4, text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(L->c, 1, id);
    sqlite3_bind_int64(L->c, 2, (int64_t)strlen(text));
    sqlite3_bind_text(L->c, 3, body, -1, SQLITE_STATIC);
    sqlite3_bind_int64(L->f, 1, id);
    sqlite3_bind_text(L->f, 2, body, -1, SQLITE_STATIC);
    if (sqlite3_step(L->d) != SQLITE_DONE || sqlite3_step(L->c) != SQLITE_DONE ||
        sqlite3_step(L->f) != SQLITE_DONE)
        die(sqlite3_errmsg(L->db), NULL);
    sqlite3_reset(L->d);
    sqlite3_reset(L->c);
    sqlite3_reset(L->f);
    free(body);
}

static void loader_close(loader *L)
{
    sqlite3_finalize(L->d);
    sqlite3_finalize(L->c);
    sqlite3_finalize(L->f);
    if (sqlite3_exec(L->db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE);", NULL, NULL, NULL) !=
        SQLITE_OK)
        die(sqlite3_errmsg(L->db), NULL);
    sqlite3_close(L->db);
}

/* Calls fn(json) for every line of a JSONL file. */
static void each_json(const char *path, void (*fn)(void *, cJSON *), void *user)
{
    char *data = NULL;
    size_t len = 0;
    dynrag_error err;
    if (dr_read_file(path, (size_t)1 << 30, &data, &len, &err) != DYNRAG_OK)
        die(path, &err);
    char *p = data;
    while (p < data + len) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        if (*p) {
            cJSON *j = cJSON_Parse(p);
            if (j == NULL)
                die("bad JSON line", NULL);
            fn(user, j);
            cJSON_Delete(j);
        }
        if (!nl)
            break;
        p = nl + 1;
    }
    free(data);
}

static const char *jstr(cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void add_corpus_doc(void *user, cJSON *j)
{
    loader_add(user, jstr(j, "_id"), jstr(j, "title"), jstr(j, "text"));
}

typedef struct queries {
    char **id, **text;
    size_t n, cap;
} queries;

static void add_query(void *user, cJSON *j)
{
    queries *q = user;
    if (q->n == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 256;
        q->id = realloc(q->id, q->cap * sizeof(char *));
        q->text = realloc(q->text, q->cap * sizeof(char *));
        if (!q->id || !q->text)
            die("out of memory", NULL);
    }
    q->id[q->n] = dr_strdup(jstr(j, "_id"));
    q->text[q->n] = dr_strdup(jstr(j, "text"));
    q->n++;
}

/* ---- FTS5 baseline ------------------------------------------------------------ */

typedef struct fts_q {
    dr_buf b;
    const char *text;
    int n;
} fts_q;

static int fts_tok(void *user, const char *tok, int len, int start, int end, bool stop)
{
    fts_q *f = user;
    (void)tok;
    (void)len;
    if (stop)
        return 0;
    if (f->n++ > 0)
        dr_buf_puts(&f->b, " OR ");
    dr_buf_putc(&f->b, '"');
    for (int i = start; i < end; i++) {
        if (f->text[i] == '"')
            dr_buf_putc(&f->b, '"');
        dr_buf_putc(&f->b, f->text[i]);
    }
    dr_buf_putc(&f->b, '"');
    return 0;
}

/* The FTS5 MATCH expression for a query: its non-stopword words, each
 * quoted (so never FTS5 syntax), joined by OR. NULL when none. */
static char *fts_expr(const dr_bm25 *e, const char *text)
{
    fts_q f = {{0}, text, 0};
    dynrag_error err;
    if (dr_bm25_tokenize(e, text, strlen(text), fts_tok, &f, &err) != DYNRAG_OK)
        die("tokenize", &err);
    if (f.n == 0) {
        dr_buf_free(&f.b);
        return NULL;
    }
    return dr_buf_take(&f.b);
}

static int fts_search(sqlite3_stmt *st, const char *expr, int64_t *ids, int *n)
{
    *n = 0;
    if (expr == NULL)
        return 0;
    sqlite3_bind_text(st, 1, expr, -1, SQLITE_STATIC);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW && *n < K_TOP)
        ids[(*n)++] = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return s == SQLITE_ROW || s == SQLITE_DONE ? 0 : -1;
}

/* ---- timing ---------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof(double), cmp_double);
    size_t i = (size_t)ceil(p / 100.0 * (double)n);
    return v[i == 0 ? 0 : i - 1];
}

typedef struct speed {
    double qps, p50_us, p99_us, mean_hits;
} speed;

enum { ENG_AUTO, ENG_MAXSCORE, ENG_EXACT, ENG_FTS5, ENG_TOKENIZE };

static int count_tok(void *user, const char *tok, int len, int start, int end, bool stop)
{
    (void)tok;
    (void)len;
    (void)start;
    (void)end;
    *(int *)user += !stop;
    return 0;
}

static speed time_engine(int which, const dr_bm25 *e, sqlite3_stmt *fts, char **texts,
                         char **exprs, size_t nq, int repeat, double k1, double b)
{
    double *lat = malloc(nq * (size_t)repeat * sizeof(double));
    double *qps = malloc((size_t)repeat * sizeof(double));
    int64_t ids[K_TOP];
    double sc[K_TOP];
    double hits = 0;
    dynrag_error err;
    for (int r = 0; r < repeat; r++) {
        int64_t t0 = dr_now_us();
        for (size_t i = 0; i < nq; i++) {
            int64_t a = dr_now_us();
            int n = 0, rc;
            if (which == ENG_AUTO)
                rc = dr_bm25_search(e, texts[i], K_TOP, k1, b, ids, sc, &n, &err);
            else if (which == ENG_MAXSCORE)
                rc = dr_bm25_search_with(e, texts[i], K_TOP, k1, b, DR_BM25_MAXSCORE, ids, sc, &n,
                                         &err);
            else if (which == ENG_EXACT)
                rc = dr_bm25_search_exact(e, texts[i], K_TOP, k1, b, ids, sc, &n, &err);
            else if (which == ENG_FTS5)
                rc = fts_search(fts, exprs[i], ids, &n);
            else
                rc = dr_bm25_tokenize(e, texts[i], strlen(texts[i]), count_tok, &n, &err);
            if (rc != 0)
                die("search", &err);
            lat[(size_t)r * nq + i] = (double)(dr_now_us() - a);
            if (r == 0)
                hits += n;
        }
        qps[r] = (double)nq / ((double)(dr_now_us() - t0) / 1e6);
    }
    speed s;
    s.qps = pct(qps, (size_t)repeat, 50);
    s.p50_us = pct(lat, nq * (size_t)repeat, 50);
    s.p99_us = pct(lat, nq * (size_t)repeat, 99);
    s.mean_hits = hits / (double)nq;
    free(lat);
    free(qps);
    return s;
}

static void print_speed(const char *name, speed s)
{
    printf("  %-22s QPS %9.0f   p50 %8.1f us   p99 %8.1f us   hits/query %.1f\n", name, s.qps,
           s.p50_us, s.p99_us, s.mean_hits);
}

static long long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

static sqlite3 *open_db(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        die(path, NULL);
    return db;
}

/* Opens the engine twice: building (sidecar removed first), then loading. */
static dr_bm25 *open_engine(sqlite3 *db, const char *dir)
{
    dynrag_error err;
    dr_bm25 *e = NULL;
    char *side = dr_asprintf("%s/%s", dir, DR_BM25_SIDECAR);
    remove(side);
    if (dr_bm25_open(db, dir, &e, &err) != DYNRAG_OK)
        die("dr_bm25_open", &err);
    dr_bm25_info info;
    dr_bm25_get_info(e, &info);
    printf("  BM25 index build      %.3f s  (%u chunks, %u terms, %llu postings, avgdl %.1f)\n",
           info.open_seconds, info.n_docs, info.n_terms, (unsigned long long)info.n_postings,
           info.avgdl);
    dr_bm25_free(e);
    if (dr_bm25_open(db, dir, &e, &err) != DYNRAG_OK)
        die("dr_bm25_open", &err);
    dr_bm25_get_info(e, &info);
    printf("  BM25 sidecar load     %.3f s  (from_sidecar=%d, %s %lld bytes)\n",
           info.open_seconds, info.from_sidecar, DR_BM25_SIDECAR, file_size(side));
    free(side);
    return e;
}

/* ---- scifact ------------------------------------------------------------------------ */

static int run_scifact(const char *data, const char *work, int repeat, double k1, double b)
{
    dynrag_error err;
    char path[4096];
    if (dr_mkdirs(work, &err) != DYNRAG_OK)
        die(work, &err);
    char *dbpath = dr_asprintf("%s/index.db", work);
    if (!dr_path_exists(dbpath)) {
        int64_t t0 = dr_now_us();
        loader L;
        loader_open(&L, dbpath);
        snprintf(path, sizeof(path), "%s/corpus.jsonl", data);
        each_json(path, add_corpus_doc, &L);
        loader_close(&L);
        printf("  index.db load         %.2f s (%lld docs)\n", (dr_now_us() - t0) / 1e6,
               (long long)L.n);
    }
    sqlite3 *db = open_db(dbpath);
    dr_bm25 *e = open_engine(db, work);

    /* chunk id -> corpus id */
    sqlite3_stmt *st = NULL;
    size_t n_chunks = 0;
    char **docid = NULL;
    sqlite3_prepare_v2(db, "SELECT max(c.id) FROM chunks c", -1, &st, NULL);
    if (sqlite3_step(st) == SQLITE_ROW)
        n_chunks = (size_t)sqlite3_column_int64(st, 0) + 1;
    sqlite3_finalize(st);
    docid = calloc(n_chunks, sizeof(char *));
    sqlite3_prepare_v2(db, "SELECT c.id, d.doc_id FROM chunks c JOIN docs d ON d.id = c.doc", -1,
                       &st, NULL);
    while (sqlite3_step(st) == SQLITE_ROW)
        docid[sqlite3_column_int64(st, 0)] = dr_strdup((const char *)sqlite3_column_text(st, 1));
    sqlite3_finalize(st);

    queries Q = {0};
    snprintf(path, sizeof(path), "%s/queries.jsonl", data);
    each_json(path, add_query, &Q);
    dynrag_qrels *qrels = NULL;
    snprintf(path, sizeof(path), "%s/qrels/train.tsv", data);
    if (dynrag_qrels_load(path, &qrels, &err) != DYNRAG_OK)
        die(path, &err);

    sqlite3_stmt *fts = NULL;
    if (sqlite3_prepare_v2(db, "SELECT rowid FROM chunk_fts WHERE chunk_fts MATCH ?1 "
                               "ORDER BY rank LIMIT 100", -1, &fts, NULL) != SQLITE_OK)
        die(sqlite3_errmsg(db), NULL);
    char **exprs = calloc(Q.n, sizeof(char *));
    for (size_t i = 0; i < Q.n; i++)
        exprs[i] = fts_expr(e, Q.text[i]);

    /* Quality on the judged queries (chunk = document here). */
    dynrag_run *run_bm25 = NULL, *run_fts = NULL;
    dynrag_run_new(&run_bm25, &err);
    dynrag_run_new(&run_fts, &err);
    size_t judged = 0;
    for (size_t i = 0; i < Q.n; i++) {
        int found = 0;
        for (size_t j = 0; j < dynrag_qrels_query_count(qrels); j++)
            if (strcmp(dynrag_qrels_query_id(qrels, j), Q.id[i]) == 0)
                found = 1;
        if (!found)
            continue;
        judged++;
        int64_t ids[K_TOP];
        double sc[K_TOP];
        int n = 0;
        if (dr_bm25_search(e, Q.text[i], K_TOP, k1, b, ids, sc, &n, &err) != DYNRAG_OK)
            die("search", &err);
        for (int h = 0; h < n; h++)
            dynrag_run_add(run_bm25, Q.id[i], docid[ids[h]], sc[h], &err);
        if (fts_search(fts, exprs[i], ids, &n) != 0)
            die("fts5", NULL);
        for (int h = 0; h < n; h++)
            dynrag_run_add(run_fts, Q.id[i], docid[ids[h]], (double)(K_TOP - h), &err);
    }
    dynrag_metric_spec ms[3];
    dynrag_metric_parse("ndcg@10", &ms[0], NULL);
    dynrag_metric_parse("recall@100", &ms[1], NULL);
    dynrag_metric_parse("mrr@10", &ms[2], NULL);
    dynrag_metrics_options opt;
    dynrag_metrics_options_init(&opt);
    opt.complete = true;
    dynrag_metrics_result r1, r2;
    if (dynrag_metrics_compute(qrels, run_bm25, ms, 3, &opt, &r1, &err) != DYNRAG_OK ||
        dynrag_metrics_compute(qrels, run_fts, ms, 3, &opt, &r2, &err) != DYNRAG_OK)
        die("metrics", &err);
    snprintf(path, sizeof(path), "%s/bm25.train.run", work);
    dynrag_run_write(run_bm25, path, "dynrag-bm25", &err);
    printf("\nSciFact train (%zu judged queries, trec_eval -c), top-%d:\n", judged, K_TOP);
    printf("  %-22s nDCG@10 %.4f   Recall@100 %.4f   MRR@10 %.4f\n", "dynrag BM25 (k1,b)",
           r1.mean[0], r1.mean[1], r1.mean[2]);
    printf("  %-22s nDCG@10 %.4f   Recall@100 %.4f   MRR@10 %.4f\n", "FTS5 bm25() rank", r2.mean[0],
           r2.mean[1], r2.mean[2]);
    printf("  (k1=%.2f b=%.2f; run written to %s)\n", k1, b, path);
    dynrag_metrics_result_free(&r1);
    dynrag_metrics_result_free(&r2);

    printf("\nSpeed, one thread, all %zu queries, top-%d, %d repetitions:\n", Q.n, K_TOP, repeat);
    speed a = time_engine(ENG_AUTO, e, NULL, Q.text, NULL, Q.n, repeat, k1, b);
    speed m = time_engine(ENG_MAXSCORE, e, NULL, Q.text, NULL, Q.n, repeat, k1, b);
    speed x = time_engine(ENG_EXACT, e, NULL, Q.text, NULL, Q.n, repeat, k1, b);
    speed f = time_engine(ENG_FTS5, e, fts, NULL, exprs, Q.n, repeat, k1, b);
    speed t = time_engine(ENG_TOKENIZE, e, NULL, Q.text, NULL, Q.n, repeat, k1, b);
    print_speed("dynrag BM25 (auto)", a);
    print_speed("dynrag BM25 MaxScore", m);
    print_speed("reference exhaustive", x);
    print_speed("(tokenize only)", t);
    print_speed("FTS5 MATCH rank", f);
    printf("  speed-up over FTS5: %.1fx (QPS), %.1fx (p50)\n", a.qps / f.qps, f.p50_us / a.p50_us);

    sqlite3_finalize(fts);
    for (size_t i = 0; i < Q.n; i++) {
        free(Q.id[i]);
        free(Q.text[i]);
        free(exprs[i]);
    }
    for (size_t i = 0; i < n_chunks; i++)
        free(docid[i]);
    free(docid);
    free(Q.id);
    free(Q.text);
    free(exprs);
    dynrag_run_free(run_bm25);
    dynrag_run_free(run_fts);
    dynrag_qrels_free(qrels);
    dr_bm25_free(e);
    sqlite3_close(db);
    free(dbpath);
    return 0;
}

/* ---- scale ---------------------------------------------------------------------------- */

#define VOCAB 200000

static void word_of(int rank, char *out, size_t size)
{
    static const char *syl[] = {"ba", "ce", "di", "fo", "gu", "ha", "je", "ki", "lo", "mu",
                                "na", "pe", "ri", "so", "tu", "va", "we", "xi", "yo", "zu"};
    size_t n = 0;
    int x = rank;
    do {
        n += (size_t)snprintf(out + n, size - n, "%s", syl[x % 20]);
        x /= 20;
    } while (x > 0 && n + 3 < size);
    snprintf(out + n, size - n, "t");
}

static int zipf_draw(dr_rng *r, const double *cdf, int lo)
{
    double u = cdf[lo] + dr_rng_uniform(r) * (1.0 - cdf[lo]);
    int a = lo, b = VOCAB - 1;
    while (a < b) {
        int m = (a + b) / 2;
        if (cdf[m + 1] <= u)
            a = m + 1;
        else
            b = m;
    }
    return a;
}

static int run_scale(long n, const char *work, int nq, int repeat, int fts_nq)
{
    dynrag_error err;
    if (dr_mkdirs(work, &err) != DYNRAG_OK)
        die(work, &err);
    /* cdf[i] = P(rank < i) for P(rank) ~ 1/(rank+1). */
    double *cdf = malloc((VOCAB + 1) * sizeof(double));
    double z = 0;
    for (int i = 0; i < VOCAB; i++)
        z += 1.0 / (i + 1);
    cdf[0] = 0;
    for (int i = 0; i < VOCAB; i++)
        cdf[i + 1] = cdf[i] + 1.0 / (i + 1) / z;
    char *dbpath = dr_asprintf("%s/index.db", work);
    char *side = dr_asprintf("%s/%s", work, DR_BM25_SIDECAR);
    remove(dbpath);
    remove(side);
    char *wal = dr_asprintf("%s-wal", dbpath);
    remove(wal);
    dr_rng r;
    dr_rng_seed(&r, 12345);
    printf("Scale: %ld generated passages (Zipf(1) over %d words, 20-80 words each)\n", n, VOCAB);
    int64_t t0 = dr_now_us();
    loader L;
    loader_open(&L, dbpath);
    dr_buf text = {0};
    for (long i = 0; i < n; i++) {
        dr_buf_reset(&text);
        int len = 20 + (int)dr_rng_below(&r, 61);
        for (int w = 0; w < len; w++) {
            char word[40];
            word_of(zipf_draw(&r, cdf, 0), word, sizeof(word));
            dr_buf_puts(&text, word);
            dr_buf_putc(&text, ' ');
        }
        char id[32], title[48];
        snprintf(id, sizeof(id), "p%ld", i);
        snprintf(title, sizeof(title), "passage %ld", i);
        loader_add(&L, id, title, text.data);
    }
    loader_close(&L);
    double load_s = (dr_now_us() - t0) / 1e6;
    printf("  index.db load (docs, chunks, FTS5)  %.1f s, %lld bytes\n", load_s,
           file_size(dbpath));
    sqlite3 *db = open_db(dbpath);
    dr_bm25 *e = open_engine(db, work);

    char **texts = calloc((size_t)nq, sizeof(char *));
    for (int i = 0; i < nq; i++) {
        dr_buf_reset(&text);
        int len = 2 + (int)dr_rng_below(&r, 5);
        for (int w = 0; w < len; w++) {
            char word[40];
            word_of(zipf_draw(&r, cdf, 20), word, sizeof(word));
            dr_buf_puts(&text, word);
            dr_buf_putc(&text, ' ');
        }
        texts[i] = dr_strdup(text.data);
    }
    char **exprs = calloc((size_t)nq, sizeof(char *));
    for (int i = 0; i < nq; i++)
        exprs[i] = fts_expr(e, texts[i]);
    sqlite3_stmt *fts = NULL;
    if (sqlite3_prepare_v2(db, "SELECT rowid FROM chunk_fts WHERE chunk_fts MATCH ?1 "
                               "ORDER BY rank LIMIT 100", -1, &fts, NULL) != SQLITE_OK)
        die(sqlite3_errmsg(db), NULL);
    printf("\nSpeed, one thread, top-%d, k1=0.9 b=0.4:\n", K_TOP);
    speed a = time_engine(ENG_AUTO, e, NULL, texts, NULL, (size_t)nq, repeat, 0.9, 0.4);
    print_speed("dynrag BM25 (auto)", a);
    int fq = fts_nq < nq ? fts_nq : nq;
    speed a2 = time_engine(ENG_AUTO, e, NULL, texts, NULL, (size_t)fq, repeat, 0.9, 0.4);
    speed f = time_engine(ENG_FTS5, e, fts, NULL, exprs, (size_t)fq, 1, 0.9, 0.4);
    printf("  first %d queries:\n", fq);
    print_speed("dynrag BM25 (auto)", a2);
    print_speed("FTS5 MATCH rank", f);
    printf("  speed-up over FTS5: %.1fx (QPS), %.1fx (p50)\n", a2.qps / f.qps, f.p50_us / a2.p50_us);
    sqlite3_finalize(fts);
    for (int i = 0; i < nq; i++) {
        free(texts[i]);
        free(exprs[i]);
    }
    free(texts);
    free(exprs);
    dr_buf_free(&text);
    dr_bm25_free(e);
    sqlite3_close(db);
    free(cdf);
    free(dbpath);
    free(side);
    free(wal);
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: dynrag_bench_retrieval scifact DATA_DIR WORK_DIR [--repeat R] [--k1 X] [--b Y]\n"
            "       dynrag_bench_retrieval scale N WORK_DIR [--queries Q] [--repeat R] "
            "[--fts-queries F]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 4)
        usage();
    int repeat = 5, nq = 1000, fts_nq = 100;
    double k1 = DR_BM25_DEFAULT_K1, b = DR_BM25_DEFAULT_B;
    for (int i = 4; i < argc; i++) {
        long long v;
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--repeat") == 0 && dr_parse_ll(argv[i + 1], 1, 1000, &v) == 0)
            repeat = (int)v;
        else if (strcmp(argv[i], "--queries") == 0 && dr_parse_ll(argv[i + 1], 1, 1000000, &v) == 0)
            nq = (int)v;
        else if (strcmp(argv[i], "--fts-queries") == 0 &&
                 dr_parse_ll(argv[i + 1], 1, 1000000, &v) == 0)
            fts_nq = (int)v;
        else if (strcmp(argv[i], "--k1") == 0 && dr_parse_double(argv[i + 1], 0, 100, &k1) == 0)
            ;
        else if (strcmp(argv[i], "--b") == 0 && dr_parse_double(argv[i + 1], 0, 1, &b) == 0)
            ;
        else
            usage();
        i++;
    }
    if (strcmp(argv[1], "scifact") == 0)
        return run_scifact(argv[2], argv[3], repeat, k1, b);
    if (strcmp(argv[1], "scale") == 0) {
        long long n;
        if (dr_parse_ll(argv[2], 1, 100000000, &n) != 0)
            usage();
        return run_scale((long)n, argv[3], nq, repeat, fts_nq);
    }
    usage();
    return 2;
}
