/* search.c - opening an index and searching it: BM25, dense and hybrid. */
#define _GNU_SOURCE
#include "dynrag/index.h"

#include "core/util.h"
#include "embed/builtin.h"
#include "retrieve/embedders.h"
#include "retrieve/bm25.h"
#include "retrieve/store.h"
#include "retrieve/vec.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_K 10000

/* A ranked chunk. */
typedef struct dr_scored {
    int64_t id;   /* chunk id */
    double score; /* higher is better */
} dr_scored;

struct dynrag_index {
    char *dir;
    char *db_path;
    dr_embedder *emb; /* NULL without a dense part */
    dr_vec *vec;      /* NULL without a dense part */
    dr_bm25 *bm25;    /* the BM25 engine: postings loaded from FTS5 at open */
    dynrag_index_info info;
    /* SQLite connections: one per concurrent search, reused. */
    pthread_mutex_t pool_lock;
    struct dr_conn **all;
    size_t n_all, cap_all;
    struct dr_conn **idle;
    size_t n_idle;
    /* Live reload (the last section): the handle dynrag_index_open()
     * returns has only `live` set and passes every call to live->cur, a
     * snapshot (live NULL) that is freed when its last user releases it. */
    struct dr_live *live;
    atomic_int refs;    /* a snapshot's: live's pointer plus the calls using it */
    atomic_bool moved;  /* a snapshot's: its database is at a later generation */
};

static dynrag_index *live_acquire(struct dr_live *lv, bool force);
static void snap_release(dynrag_index *snap);
static void live_free(struct dr_live *lv);

/* A pooled read connection and the statement every search runs on it,
 * prepared once per connection rather than once per search. */
typedef struct dr_conn {
    sqlite3 *db;
    sqlite3_stmt *hit; /* a chunk with its document, by chunk id */
    sqlite3_stmt *gen; /* meta.generation (prepared on first use) */
} dr_conn;

static void conn_free(dr_conn *c)
{
    if (c == NULL)
        return;
    sqlite3_finalize(c->hit);
    sqlite3_finalize(c->gen);
    sqlite3_close(c->db);
    free(c);
}

int dynrag_search_mode_parse(const char *s)
{
    if (s == NULL)
        return -1;
    if (strcmp(s, "bm25") == 0)
        return DYNRAG_SEARCH_BM25;
    if (strcmp(s, "dense") == 0)
        return DYNRAG_SEARCH_DENSE;
    if (strcmp(s, "hybrid") == 0)
        return DYNRAG_SEARCH_HYBRID;
    return -1;
}

const char *dynrag_search_mode_name(dynrag_search_mode m)
{
    switch (m) {
    case DYNRAG_SEARCH_BM25:
        return "bm25";
    case DYNRAG_SEARCH_DENSE:
        return "dense";
    case DYNRAG_SEARCH_HYBRID:
        return "hybrid";
    }
    return "unknown";
}

/* ---- the connection pool ------------------------------------------------------ */

static int conn_acquire(dynrag_index *idx, dr_conn **out, dynrag_error *err)
{
    pthread_mutex_lock(&idx->pool_lock);
    if (idx->n_idle > 0) {
        *out = idx->idle[--idx->n_idle];
        pthread_mutex_unlock(&idx->pool_lock);
        return DYNRAG_OK;
    }
    pthread_mutex_unlock(&idx->pool_lock);
    dr_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    int rc = dr_store_open(idx->db_path, false, &c->db, err);
    if (rc != DYNRAG_OK) {
        free(c);
        return rc;
    }
    if (sqlite3_prepare_v3(c->db,
                           "SELECT d.doc_id, d.title, c.body, c.start, c.\"end\" FROM chunks c"
                           " JOIN docs d ON d.id = c.doc WHERE c.id = ?1",
                           -1, SQLITE_PREPARE_PERSISTENT, &c->hit, NULL) != SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: %s", sqlite3_errmsg(c->db));
        conn_free(c);
        return rc;
    }
    pthread_mutex_lock(&idx->pool_lock);
    if (idx->n_all == idx->cap_all) {
        size_t cap = idx->cap_all ? idx->cap_all * 2 : 8;
        dr_conn **a = realloc(idx->all, cap * sizeof(*a));
        dr_conn **i = a ? realloc(idx->idle, cap * sizeof(*i)) : NULL;
        if (a)
            idx->all = a;
        if (i)
            idx->idle = i;
        if (a == NULL || i == NULL) {
            pthread_mutex_unlock(&idx->pool_lock);
            conn_free(c);
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        }
        idx->cap_all = cap;
    }
    idx->all[idx->n_all++] = c;
    pthread_mutex_unlock(&idx->pool_lock);
    *out = c;
    return DYNRAG_OK;
}

/* Inside a read transaction on c: true (and idx->moved set) when the
 * database is no longer at the generation idx was opened at, so that its
 * rows do not belong with idx's BM25 and dense parts (live reload). */
static bool conn_moved(dynrag_index *idx, dr_conn *c)
{
    if (c->gen == NULL &&
        sqlite3_prepare_v3(c->db, "SELECT value FROM meta WHERE key = 'generation'", -1,
                           SQLITE_PREPARE_PERSISTENT, &c->gen, NULL) != SQLITE_OK)
        return false;
    bool moved = sqlite3_step(c->gen) == SQLITE_ROW &&
                 sqlite3_column_int64(c->gen, 0) != idx->info.generation;
    sqlite3_reset(c->gen);
    if (moved)
        atomic_store(&idx->moved, true);
    return moved;
}

static void conn_release(dynrag_index *idx, dr_conn *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&idx->pool_lock);
    idx->idle[idx->n_idle++] = c; /* idle has the capacity of all */
    pthread_mutex_unlock(&idx->pool_lock);
}

/* ---- open and close ------------------------------------------------------------- */

void dynrag_index_close(dynrag_index *idx)
{
    if (idx == NULL)
        return;
    live_free(idx->live);
    for (size_t i = 0; i < idx->n_all; i++)
        conn_free(idx->all[i]);
    free(idx->all);
    free(idx->idle);
    pthread_mutex_destroy(&idx->pool_lock);
    dr_vec_free(idx->vec);
    dr_bm25_free(idx->bm25);
    dr_embedder_free(idx->emb);
    free(idx->dir);
    free(idx->db_path);
    free(idx);
}

/* The metadata of one consistent snapshot, read in one transaction. */
typedef struct snapshot {
    long long fmt, gen, dim, docs, chunks, tokens;
    char embedder[256], factory[128], hash[32];
    void *state;
    size_t state_len;
} snapshot;

static int read_str(sqlite3 *db, const char *key, char *buf, size_t size, dynrag_error *err)
{
    char *v = NULL;
    int rc = dr_meta_get(db, key, &v, err);
    dr_strlcpy(buf, v ? v : "", size);
    free(v);
    return rc;
}

static int read_snapshot(sqlite3 *db, snapshot *s, dynrag_error *err)
{
    memset(s, 0, sizeof(*s));
    int rc = dr_store_exec(db, "BEGIN", err);
    if (rc != DYNRAG_OK)
        return rc;
    rc = dr_meta_get_ll(db, "format_version", 0, &s->fmt, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_get_ll(db, "generation", 0, &s->gen, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_get_ll(db, "dim", 0, &s->dim, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_get_ll(db, "docs", 0, &s->docs, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_get_ll(db, "chunks", 0, &s->chunks, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_get_ll(db, "chunk_tokens_total", 0, &s->tokens, err);
    if (rc == DYNRAG_OK)
        rc = read_str(db, "embedder", s->embedder, sizeof(s->embedder), err);
    if (rc == DYNRAG_OK)
        rc = read_str(db, "faiss_factory", s->factory, sizeof(s->factory), err);
    if (rc == DYNRAG_OK)
        rc = read_str(db, "dense_hash", s->hash, sizeof(s->hash), err);
    if (rc == DYNRAG_OK) {
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(db, "SELECT blob FROM embedder_state WHERE id = 1", -1, &q,
                               NULL) != SQLITE_OK) {
            rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: %s", sqlite3_errmsg(db));
        } else if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_bytes(q, 0) > 0) {
            s->state_len = (size_t)sqlite3_column_bytes(q, 0);
            s->state = malloc(s->state_len);
            if (s->state == NULL)
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            else
                memcpy(s->state, sqlite3_column_blob(q, 0), s->state_len);
        }
        sqlite3_finalize(q);
    }
    (void)dr_store_exec(db, "COMMIT", NULL);
    return rc;
}

/* Checks the snapshot's values before any of them is used as a size, an
 * index or a count: a damaged index.db fails here with DYNRAG_ERR_FORMAT
 * (or DYNRAG_ERR_MISMATCH for another format version) naming the value. */
static int check_snapshot(const char *dir, const snapshot *s, dynrag_error *err)
{
    if (s->fmt != DR_INDEX_FORMAT_VERSION)
        return dr_err_set(err, DYNRAG_ERR_MISMATCH, "%s: index format %lld, this version reads %d",
                          dir, s->fmt, DR_INDEX_FORMAT_VERSION);
    const char *bad = s->gen < 0      ? "generation"
                      : s->docs < 0   ? "docs"
                      : s->chunks < 0 ? "chunks"
                      : s->tokens < 0 ? "chunk_tokens_total"
                      : s->embedder[0] && (s->dim < 1 || s->dim > DR_INDEX_MAX_DIM) ? "dim"
                                                                                    : NULL;
    if (bad != NULL)
        return dr_err_set(err, DYNRAG_ERR_FORMAT,
                          "%s/index.db: meta %s is out of range (the index is damaged; rebuild "
                          "it with `dynrag index --index DIR INPUT...`)",
                          dir, bad);
    return DYNRAG_OK;
}

/* Loads the dense.faiss that matches the snapshot's generation. */
static int load_dense(const char *dir, const snapshot *s, dr_vec **out, dynrag_error *err)
{
    uint64_t hash = 0;
    if (sscanf(s->hash, "%" SCNx64, &hash) != 1)
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "index.db: meta dense_hash is missing");
    char *pending = dr_asprintf("%s/dense.faiss.%lld", dir, s->gen);
    char *final = dr_asprintf("%s/dense.faiss", dir);
    int rc = DYNRAG_ERR_STATE;
    if (pending == NULL || final == NULL)
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    else if (dr_path_exists(pending)) /* committed, not yet renamed */
        rc = dr_vec_load(pending, (int)s->dim, hash, out, err);
    /* a pending file that does not match is a leftover, not ours */
    if (rc == DYNRAG_ERR_STATE)
        rc = dr_vec_load(final, (int)s->dim, hash, out, err);
    free(pending);
    free(final);
    return rc;
}

/* Opens one snapshot of the index (what dynrag_index_open() did before
 * live reload): everything the calls below read, at one generation. */
static int open_snapshot(const char *dir, const dynrag_embedder_config *embedder,
                         dynrag_index **out, dynrag_error *err)
{
    *out = NULL;
    if (dir == NULL || dir[0] == '\0')
        return dr_err_set(err, DYNRAG_ERR_INVALID, "index: no folder given");
    dynrag_index *idx = calloc(1, sizeof(*idx));
    snapshot s;
    memset(&s, 0, sizeof(s));
    if (idx == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&idx->pool_lock, NULL);
    int rc = DYNRAG_OK;
    idx->dir = dr_strdup(dir);
    idx->db_path = dr_asprintf("%s/index.db", dir);
    if (idx->dir == NULL || idx->db_path == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (!dr_path_exists(idx->db_path)) {
        rc = dr_err_set(err, DYNRAG_ERR_NOTFOUND, "%s: no index here (no index.db)", dir);
        goto cleanup;
    }
    dr_conn *conn = NULL;
    rc = conn_acquire(idx, &conn, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    sqlite3 *db = conn->db;
    /* A writer may commit between reading meta and loading dense.faiss:
     * then the hash does not match and the generation has moved, so we
     * read the new snapshot again. A mismatch at an unchanged generation
     * is a damaged or foreign file and fails at once. */
    for (int attempt = 0;; attempt++) {
        long long prev_gen = s.gen;
        free(s.state);
        rc = read_snapshot(db, &s, err);
        if (rc == DYNRAG_OK)
            rc = check_snapshot(dir, &s, err);
        if (rc != DYNRAG_OK || s.dim == 0 || s.embedder[0] == '\0')
            break;
        if (attempt > 0 && s.gen == prev_gen) {
            rc = DYNRAG_ERR_STATE; /* err still says why */
            break;
        }
        rc = load_dense(dir, &s, &idx->vec, err);
        if (rc != DYNRAG_ERR_STATE || attempt >= 5)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* The BM25 engine reads FTS5's postings once (or its sidecar bm25.idx,
     * when that matches the index's generation). */
    if (rc == DYNRAG_OK) {
        /* bm25 reads through a TEMP fts5vocab table: lift query_only for it */
        rc = sqlite3_exec(db, "PRAGMA query_only=0", NULL, NULL, NULL) == SQLITE_OK
                 ? dr_bm25_load(db, dir, &idx->bm25, err)
                 : dr_err_set(err, DYNRAG_ERR_DB, "%s: %s", idx->db_path, sqlite3_errmsg(db));
        if (sqlite3_exec(db, "PRAGMA query_only=1", NULL, NULL, NULL) != SQLITE_OK &&
            rc == DYNRAG_OK)
            rc = dr_err_set(err, DYNRAG_ERR_DB, "%s: %s", idx->db_path, sqlite3_errmsg(db));
    }
    conn_release(idx, conn);
    if (rc != DYNRAG_OK)
        goto cleanup;
    if (idx->vec) {
        if (embedder == NULL && strncmp(s.embedder, "builtin:", 8) != 0) {
            rc = dr_err_set(err, DYNRAG_ERR_MISMATCH,
                            "%s was built with embedder '%s': give its configuration to open it",
                            dir, s.embedder);
            goto cleanup;
        }
        rc = dr_index_embedder_create(embedder, (int)s.dim, &idx->emb, err);
        if (rc != DYNRAG_OK)
            goto cleanup;
        if (strcmp(idx->emb->identity, s.embedder) != 0) {
            rc = dr_err_set(err, DYNRAG_ERR_MISMATCH,
                            "%s was built with embedder '%s', asked to query with '%s'", dir,
                            s.embedder, idx->emb->identity);
            goto cleanup;
        }
        if (dr_embedder_is_builtin(idx->emb) && s.state) {
            rc = dr_builtin_state_load(idx->emb, s.state, s.state_len, err);
            if (rc != DYNRAG_OK)
                goto cleanup;
        }
    }
    idx->info.docs = (uint64_t)s.docs;
    idx->info.chunks = (uint64_t)s.chunks;
    idx->info.format_version = (int)s.fmt;
    idx->info.generation = s.gen;
    idx->info.dim = idx->vec ? (int)s.dim : 0;
    dr_strlcpy(idx->info.embedder, s.embedder, sizeof(idx->info.embedder));
    dr_strlcpy(idx->info.faiss_factory, s.factory, sizeof(idx->info.faiss_factory));
    idx->info.avg_chunk_tokens = s.chunks > 0 ? (double)s.tokens / (double)s.chunks : 0;
    *out = idx;
    idx = NULL;
cleanup:
    free(s.state);
    dynrag_index_close(idx);
    return rc;
}

/* ---- searching -------------------------------------------------------------------- */

static int cmp_scored(const void *a, const void *b)
{
    const dr_scored *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* BM25 top-`depth` through the MaxScore engine (src/retrieve/bm25.c). */
static int bm25_search(dynrag_index *idx, const char *query, double k1, double b, size_t depth,
                       dr_scored *out, size_t *n_out, dynrag_error *err)
{
    int64_t *ids = malloc(depth * sizeof(*ids));
    double *scores = malloc(depth * sizeof(*scores));
    int n = 0;
    int rc = DYNRAG_OK;
    if (ids == NULL || scores == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    rc = dr_bm25_search(idx->bm25, query, (int)depth, k1, b, ids, scores, &n, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    for (int i = 0; i < n; i++)
        out[i] = (dr_scored){ids[i], scores[i]};
    *n_out = (size_t)n;
cleanup:
    free(ids);
    free(scores);
    return rc;
}

static int dense_search(dynrag_index *idx, const char *query, size_t k, int nprobe,
                        dr_scored *out, size_t *n_out, dynrag_error *err)
{
    int dim = idx->emb->dim;
    *n_out = 0;
    float *q = malloc((size_t)dim * sizeof(float));
    int64_t *labels = malloc(k * sizeof(*labels));
    float *scores = malloc(k * sizeof(*scores));
    int rc = DYNRAG_OK;
    if (q == NULL || labels == NULL || scores == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    const char *texts[1] = {query};
    rc = dr_embed(idx->emb, texts, 1, q, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    bool zero = true;
    for (int d = 0; d < dim && zero; d++)
        zero = q[d] == 0.0f;
    if (zero) /* no features: no hits, as for BM25 */
        goto cleanup;
    rc = dr_vec_search(idx->vec, q, k, nprobe, labels, scores, err);
    for (size_t i = 0; rc == DYNRAG_OK && i < k; i++) {
        if (labels[i] < 0)
            continue;
        out[*n_out].id = labels[i];
        out[*n_out].score = scores[i];
        (*n_out)++;
    }
cleanup:
    free(q);
    free(labels);
    free(scores);
    return rc;
}

/* Reciprocal rank fusion of two ranked lists into out (capacity na + nb). */
static size_t rrf_fuse(const dr_scored *a, size_t na, double wa, const dr_scored *b, size_t nb,
                       double wb, double rrf_k, dr_scored *out)
{
    size_t n = 0;
    for (size_t i = 0; i < na; i++) {
        out[n].id = a[i].id;
        out[n].score = wa / (rrf_k + (double)(i + 1));
        n++;
    }
    for (size_t i = 0; i < nb; i++) {
        double s = wb / (rrf_k + (double)(i + 1));
        size_t j = 0;
        while (j < na && out[j].id != b[i].id)
            j++;
        if (j < na) {
            out[j].score += s;
        } else {
            out[n].id = b[i].id;
            out[n].score = s;
            n++;
        }
    }
    qsort(out, n, sizeof(*out), cmp_scored);
    return n;
}

/* Fills hit h from chunk id; *found false when the chunk is gone (a stale
 * dense label after a concurrent write). */
static int fill_hit(sqlite3 *db, sqlite3_stmt *st, int64_t id, double score, dynrag_hit *h,
                    bool *found, dynrag_error *err)
{
    sqlite3_bind_int64(st, 1, id);
    int s = sqlite3_step(st);
    int rc = DYNRAG_OK;
    *found = s == SQLITE_ROW;
    if (s == SQLITE_ROW) {
        const char *doc = (const char *)sqlite3_column_text(st, 0);
        const char *title = (const char *)sqlite3_column_text(st, 1);
        const char *body = (const char *)sqlite3_column_text(st, 2);
        const char *nl = body ? strchr(body, '\n') : NULL;
        h->chunk_id = id;
        h->score = score;
        h->doc_id = dr_strdup(doc ? doc : "");
        h->title = dr_strdup(title ? title : "");
        h->text = dr_strdup(nl ? nl + 1 : (body ? body : ""));
        h->start = sqlite3_column_int64(st, 3);
        h->end = sqlite3_column_int64(st, 4);
        if (h->doc_id == NULL || h->title == NULL || h->text == NULL)
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    } else if (s != SQLITE_DONE) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: reading a chunk: %s", sqlite3_errmsg(db));
    }
    sqlite3_reset(st);
    return rc;
}

void dynrag_hits_free(dynrag_hits *hits)
{
    if (hits == NULL)
        return;
    for (size_t i = 0; i < hits->n; i++) {
        free(hits->hits[i].doc_id);
        free(hits->hits[i].title);
        free(hits->hits[i].text);
    }
    free(hits->hits);
    memset(hits, 0, sizeof(*hits));
}

int dynrag_index_search(dynrag_index *idx, const char *query, const dynrag_search_options *opt,
                        dynrag_hits *out, dynrag_error *err)
{
    memset(out, 0, sizeof(*out));
    if (idx && idx->live) {
        /* A write committed between the snapshot's check and its read of
         * the rows: reload and search again. */
        int rc = DYNRAG_OK;
        for (int attempt = 0; attempt < 5; attempt++) {
            dynrag_index *snap = live_acquire(idx->live, attempt > 0);
            rc = dynrag_index_search(snap, query, opt, out, err);
            bool moved = rc == DYNRAG_ERR_STATE && atomic_load(&snap->moved);
            snap_release(snap);
            if (!moved)
                break;
        }
        return rc;
    }
    if (idx == NULL || query == NULL || opt == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "search: missing index, query or options");
    int64_t t0 = dr_now_us();
    int k = opt->k ? opt->k : 10;
    double k1 = opt->k1_given || opt->k1 != 0 ? opt->k1 : DR_BM25_DEFAULT_K1;
    double b = opt->b_given || opt->b != 0 ? opt->b : DR_BM25_DEFAULT_B;
    double rrf_k = opt->rrf_k ? opt->rrf_k : 60;
    double wb = opt->w_bm25, wd = opt->w_dense;
    if (wb == 0 && wd == 0)
        wb = wd = 1;
    if (k < 1 || k > MAX_K)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "search: k must be 1 to %d, got %d", MAX_K, k);
    if (!(k1 >= 0 && k1 <= 100) || !(b >= 0 && b <= 1) || !(rrf_k > 0) || !(wb >= 0) ||
        !(wd >= 0) || opt->depth < 0 || opt->depth > MAX_K || opt->nprobe < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "search: bad option (k1 %g, b %g, rrf_k %g, weights %g/%g, depth %d, "
                          "nprobe %d)", k1, b, rrf_k, wb, wd, opt->depth, opt->nprobe);
    if (opt->mode != DYNRAG_SEARCH_BM25 && opt->mode != DYNRAG_SEARCH_DENSE &&
        opt->mode != DYNRAG_SEARCH_HYBRID)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "search: unknown mode %d", (int)opt->mode);
    bool use_bm25 = opt->mode != DYNRAG_SEARCH_DENSE;
    bool use_dense = opt->mode != DYNRAG_SEARCH_BM25;
    if (use_dense && idx->vec == NULL)
        return dr_err_set(err, DYNRAG_ERR_UNSUPPORTED,
                          "search: mode %s needs a dense part; this index was built with "
                          "--no-dense",
                          dynrag_search_mode_name(opt->mode));
    size_t depth = (size_t)k;
    if (opt->mode == DYNRAG_SEARCH_HYBRID)
        depth = (size_t)DR_MAX(DR_MAX(opt->depth ? opt->depth : 100, k), 1);
    dr_scored *lb = calloc(depth, sizeof(*lb));
    dr_scored *ld = calloc(depth, sizeof(*ld));
    dr_scored *fused = calloc(2 * depth, sizeof(*fused));
    dr_conn *conn = NULL;
    size_t nb = 0, nd = 0, nf = 0;
    int rc = DYNRAG_OK;
    if (lb == NULL || ld == NULL || fused == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    rc = conn_acquire(idx, &conn, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    if (use_bm25) {
        int64_t t = dr_now_us();
        rc = bm25_search(idx, query, k1, b, depth, lb, &nb, err);
        out->bm25_us = (double)(dr_now_us() - t);
        if (rc != DYNRAG_OK)
            goto cleanup;
    }
    if (use_dense) {
        int64_t t = dr_now_us();
        rc = dense_search(idx, query, depth, opt->nprobe, ld, &nd, err);
        out->dense_us = (double)(dr_now_us() - t);
        if (rc != DYNRAG_OK)
            goto cleanup;
    }
    const dr_scored *ranked = fused;
    if (opt->mode == DYNRAG_SEARCH_HYBRID) {
        nf = rrf_fuse(lb, nb, wb, ld, nd, wd, rrf_k, fused);
    } else if (use_bm25) {
        ranked = lb;
        nf = nb;
    } else {
        ranked = ld;
        nf = nd;
    }
    if (nf > 0) {
        sqlite3 *db = conn->db;
        sqlite3_stmt *st = conn->hit;
        out->hits = calloc(DR_MIN(nf, (size_t)k), sizeof(*out->hits));
        if (out->hits == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        /* One read transaction for all the hits: one shared lock, not one
         * per row (each lock is several fcntl/pread calls). */
        bool in_txn = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
        if (in_txn && conn_moved(idx, conn))
            rc = dr_err_set(err, DYNRAG_ERR_STATE, "%s: changed during the search", idx->dir);
        for (size_t i = 0; rc == DYNRAG_OK && i < nf && out->n < (size_t)k; i++) {
            bool found = false;
            rc = fill_hit(db, st, ranked[i].id, ranked[i].score, &out->hits[out->n], &found, err);
            if (found)
                out->n++;
            if (rc != DYNRAG_OK)
                break;
        }
        sqlite3_reset(st);
        if (in_txn)
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != DYNRAG_OK)
            goto cleanup;
    }
cleanup:
    conn_release(idx, conn);
    free(lb);
    free(ld);
    free(fused);
    if (rc != DYNRAG_OK)
        dynrag_hits_free(out);
    out->total_us = (double)(dr_now_us() - t0);
    return rc;
}

/* ---- documents, embeddings, info ---------------------------------------------------- */

int dynrag_index_document(dynrag_index *idx, const char *doc_id, char **title, char **text,
                          dynrag_error *err)
{
    if (title)
        *title = NULL;
    if (text)
        *text = NULL;
    if (idx && idx->live) {
        dynrag_index *snap = live_acquire(idx->live, false);
        int rc = dynrag_index_document(snap, doc_id, title, text, err);
        snap_release(snap);
        return rc;
    }
    if (idx == NULL || doc_id == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "document: missing index or id");
    dr_conn *conn = NULL;
    sqlite3_stmt *st = NULL;
    int rc = conn_acquire(idx, &conn, err);
    if (rc != DYNRAG_OK)
        return rc;
    sqlite3 *db = conn->db;
    if (sqlite3_prepare_v2(db, "SELECT title, text FROM docs WHERE doc_id = ?1", -1, &st, NULL) !=
        SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: %s", sqlite3_errmsg(db));
        goto cleanup;
    }
    sqlite3_bind_text(st, 1, doc_id, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_DONE) {
        rc = dr_err_set(err, DYNRAG_ERR_NOTFOUND, "no document '%s' in the index", doc_id);
    } else if (s != SQLITE_ROW) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: %s", sqlite3_errmsg(db));
    } else {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        const char *x = (const char *)sqlite3_column_text(st, 1);
        if (title && (*title = dr_strdup(t ? t : "")) == NULL)
            rc = DYNRAG_ERR_NOMEM;
        if (text && (*text = dr_strdup(x ? x : "")) == NULL)
            rc = DYNRAG_ERR_NOMEM;
        if (rc != DYNRAG_OK) {
            dr_err_set(err, rc, "out of memory");
            if (title) {
                free(*title);
                *title = NULL;
            }
            if (text) {
                free(*text);
                *text = NULL;
            }
        }
    }
cleanup:
    sqlite3_finalize(st);
    conn_release(idx, conn);
    return rc;
}

int dynrag_index_embed(dynrag_index *idx, const char *text, float *out, dynrag_error *err)
{
    if (idx && idx->live) {
        dynrag_index *snap = live_acquire(idx->live, false);
        int rc = dynrag_index_embed(snap, text, out, err);
        snap_release(snap);
        return rc;
    }
    if (idx == NULL || text == NULL || out == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "embed: missing argument");
    if (idx->emb == NULL)
        return dr_err_set(err, DYNRAG_ERR_UNSUPPORTED, "embed: the index has no dense part");
    const char *texts[1] = {text};
    return dr_embed(idx->emb, texts, 1, out, err);
}

int dynrag_index_dim(const dynrag_index *idx)
{
    if (idx && idx->live) {
        dynrag_index *snap = live_acquire(idx->live, false);
        int dim = dynrag_index_dim(snap);
        snap_release(snap);
        return dim;
    }
    return idx && idx->emb ? idx->emb->dim : 0;
}

int dynrag_index_get_info(const dynrag_index *idx, dynrag_index_info *info)
{
    if (idx == NULL || info == NULL)
        return DYNRAG_ERR_INVALID;
    if (idx->live) {
        dynrag_index *snap = live_acquire(idx->live, false);
        *info = snap->info;
        snap_release(snap);
        return DYNRAG_OK;
    }
    *info = idx->info;
    return DYNRAG_OK;
}

/* ---- live reload -------------------------------------------------------------------- */

/*
 * A writer (`dynrag index` in another process) commits a new generation
 * into index.db while a server keeps the index open. Every call on the
 * handle first looks for a change of the folder: one non-blocking read of
 * an inotify descriptor watching it (or, where inotify is unavailable, a
 * stat of index.db and index.db-wal: a commit changes one of them, a
 * rebuilt database has a new inode). Only after a change is the generation
 * read, and only when it changed is a new snapshot opened and swapped in.
 * A change keeps the state unsettled for 50 ms, during which every call
 * reads the generation: a commit's last write can be seen before its
 * generation is (SQLite publishes it in shared memory just after), and
 * file times are only as fine as the kernel's clock tick. Calls already
 * running keep the snapshot they acquired (reference counted); the old
 * snapshot is freed by the last of them. The call that notices the change
 * opens the new snapshot under the lock, and calls arriving meanwhile wait
 * for it: once a write has committed, no call that starts after the check
 * sees the old generation.
 */

typedef struct dr_file_sig {
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} dr_file_sig;

typedef struct dr_live {
    pthread_mutex_t lock;
    dynrag_index *cur; /* the current snapshot; the live handle holds one reference */
    char *dir;
    char *paths[2];     /* index.db, index.db-wal */
    dr_file_sig sig[2]; /* as they were when cur was opened or last checked */
    int64_t unsettled_until_us; /* read the generation on every call until then */
    int ino_fd;         /* inotify on dir (non-blocking), -1 = use sig instead */
    int64_t retry_us;   /* after a failed reopen: no settle-window attempt before this */
    long long refused_gen; /* a generation not swapped in (other embedder), or -1 */
    bool has_emb;       /* emb holds a copy of the open's embedder config */
    dynrag_embedder_config emb;
    char *emb_strs[4]; /* the copied strings of emb */
} dr_live;

static void sig_take(const dr_live *lv, dr_file_sig sig[2])
{
    for (int i = 0; i < 2; i++) {
        struct stat st;
        memset(&sig[i], 0, sizeof(sig[i]));
        if (stat(lv->paths[i], &st) != 0)
            continue;
        sig[i].exists = true;
        sig[i].dev = st.st_dev;
        sig[i].ino = st.st_ino;
        sig[i].size = st.st_size;
        sig[i].mtime = st.st_mtim;
    }
}

static bool sig_equal(const dr_file_sig a[2], const dr_file_sig b[2])
{
    for (int i = 0; i < 2; i++) {
        if (a[i].exists != b[i].exists || a[i].dev != b[i].dev || a[i].ino != b[i].ino ||
            a[i].size != b[i].size || a[i].mtime.tv_sec != b[i].mtime.tv_sec ||
            a[i].mtime.tv_nsec != b[i].mtime.tv_nsec)
            return false;
    }
    return true;
}

static void snap_release(dynrag_index *snap)
{
    if (snap && atomic_fetch_sub(&snap->refs, 1) == 1)
        dynrag_index_close(snap);
}

/* The committed generation as a new connection reads it now, or -1 (a
 * pooled one may still be inside the read transaction of a statement). */
static long long current_generation(const dr_live *lv)
{
    sqlite3 *db = NULL;
    long long gen = -1;
    if (dr_store_open(lv->paths[0], false, &db, NULL) != DYNRAG_OK ||
        dr_meta_get_ll(db, "generation", -1, &gen, NULL) != DYNRAG_OK)
        gen = -1;
    sqlite3_close(db);
    return gen;
}

#define SETTLE_US 50000

/* Records the files' state as checked. A file changed less than 50 ms ago
 * keeps the state unsettled until 50 ms after that change. */
static void sig_record(dr_live *lv, const dr_file_sig now[2])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    memcpy(lv->sig, now, sizeof(lv->sig));
    for (int i = 0; i < 2; i++) {
        int64_t age_us = (int64_t)(ts.tv_sec - now[i].mtime.tv_sec) * 1000000 +
                         (ts.tv_nsec - now[i].mtime.tv_nsec) / 1000;
        if (now[i].exists && age_us < SETTLE_US)
            lv->unsettled_until_us =
                DR_MAX(lv->unsettled_until_us, dr_now_us() + SETTLE_US - DR_MAX(age_us, 0));
    }
}

/* Under lv->lock, with inotify: true when events arrived since the last
 * call (all are read). A full queue or a read error counts as a change. */
static bool events_pending(dr_live *lv)
{
    bool any = false;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(lv->ino_fd, buf, sizeof(buf));
        if (n > 0) {
            any = true;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return any || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }
}

/* open_snapshot(), again while a writer commits during the open. */
static int open_snapshot_retry(const char *dir, const dynrag_embedder_config *embedder,
                               dynrag_index **out, dynrag_error *err)
{
    int rc = DYNRAG_ERR_STATE;
    for (int attempt = 0; attempt < 10 && rc == DYNRAG_ERR_STATE; attempt++) {
        if (attempt > 0) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        rc = open_snapshot(dir, embedder, out, err);
    }
    return rc;
}

/* Under lv->lock: the files changed (now); reopens when the generation or
 * the database did. A failed reopen keeps the current snapshot and logs
 * why; the next change of the files tries again (the settle window's
 * checks wait a second). */
static void live_reload(dr_live *lv, const dr_file_sig now[2])
{
    dynrag_index *cur = lv->cur;
    bool same_db = now[0].exists && lv->sig[0].exists && now[0].dev == lv->sig[0].dev &&
                   now[0].ino == lv->sig[0].ino;
    long long gen = same_db ? current_generation(lv) : -1;
    if (same_db && (gen == cur->info.generation || (gen >= 0 && gen == lv->refused_gen))) {
        sig_record(lv, now); /* a checkpoint, not a write; or a generation refused below */
        return;
    }
    dynrag_index *snap = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (open_snapshot_retry(lv->dir, lv->has_emb ? &lv->emb : NULL, &snap, &err) != DYNRAG_OK) {
        dr_log(DYNRAG_LOG_WARN, "index",
               "%s changed but cannot be reopened (still using generation %lld; trying again "
               "at its next change): %s",
               lv->dir, (long long)cur->info.generation, dynrag_errmsg(&err));
        sig_record(lv, now);
        lv->retry_us = dr_now_us() + 1000000;
        return;
    }
    sig_record(lv, now);
    if (snap->info.dim != cur->info.dim || strcmp(snap->info.embedder, cur->info.embedder) != 0) {
        dr_log(DYNRAG_LOG_WARN, "index",
               "%s was rebuilt with another embedder or dimension ('%s', %d; was '%s', %d): "
               "still using generation %lld until restarted",
               lv->dir, snap->info.embedder, snap->info.dim, cur->info.embedder, cur->info.dim,
               (long long)cur->info.generation);
        lv->refused_gen = snap->info.generation;
        dynrag_index_close(snap);
        return;
    }
    dr_log(DYNRAG_LOG_INFO, "index", "%s: now using generation %lld (was %lld)", lv->dir,
           (long long)snap->info.generation, (long long)cur->info.generation);
    atomic_init(&snap->refs, 1);
    lv->cur = snap;
    snap_release(cur);
}

/* The current snapshot with one reference for the caller (release with
 * snap_release), reloaded first when the index changed (or, with force,
 * when its generation did, whatever the files look like). */
static dynrag_index *live_acquire(dr_live *lv, bool force)
{
    dr_file_sig now[2];
    bool changed = false;
    if (lv->ino_fd < 0) {
        sig_take(lv, now);
        changed = !sig_equal(now, lv->sig);
    }
    pthread_mutex_lock(&lv->lock);
    if (lv->ino_fd >= 0 && events_pending(lv)) {
        changed = true;
        lv->unsettled_until_us = dr_now_us() + SETTLE_US;
    }
    int64_t t = dr_now_us();
    if (force || changed || (t < lv->unsettled_until_us && t >= lv->retry_us)) {
        if (lv->ino_fd >= 0)
            sig_take(lv, now);
        live_reload(lv, now);
    }
    dynrag_index *snap = lv->cur;
    atomic_fetch_add(&snap->refs, 1);
    pthread_mutex_unlock(&lv->lock);
    return snap;
}

static void live_free(dr_live *lv)
{
    if (lv == NULL)
        return;
    snap_release(lv->cur);
    if (lv->ino_fd >= 0)
        close(lv->ino_fd);
    pthread_mutex_destroy(&lv->lock);
    free(lv->dir);
    free(lv->paths[0]);
    free(lv->paths[1]);
    for (int i = 0; i < 4; i++)
        free(lv->emb_strs[i]);
    free(lv);
}

/* A copy of s into *slot (NULL stays NULL); false when out of memory. */
static bool copy_str(const char *s, char **slot, const char **dst)
{
    *dst = NULL;
    if (s == NULL)
        return true;
    *slot = dr_strdup(s);
    *dst = *slot;
    return *slot != NULL;
}

int dynrag_index_open(const char *dir, const dynrag_embedder_config *embedder,
                      dynrag_index **out, dynrag_error *err)
{
    *out = NULL;
    if (dir == NULL || dir[0] == '\0')
        return dr_err_set(err, DYNRAG_ERR_INVALID, "index: no folder given");
    dynrag_index *idx = calloc(1, sizeof(*idx));
    dr_live *lv = calloc(1, sizeof(*lv));
    if (idx == NULL || lv == NULL) {
        free(idx);
        free(lv);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&idx->pool_lock, NULL);
    pthread_mutex_init(&lv->lock, NULL);
    lv->ino_fd = -1;
    lv->refused_gen = -1;
    idx->live = lv;
    int rc = DYNRAG_OK;
    lv->dir = dr_strdup(dir);
    lv->paths[0] = dr_asprintf("%s/index.db", dir);
    lv->paths[1] = dr_asprintf("%s/index.db-wal", dir);
    bool ok = lv->dir && lv->paths[0] && lv->paths[1];
    if (ok && embedder) {
        lv->has_emb = true;
        lv->emb = *embedder;
        ok = copy_str(embedder->kind, &lv->emb_strs[0], &lv->emb.kind) &&
             copy_str(embedder->base_url, &lv->emb_strs[1], &lv->emb.base_url) &&
             copy_str(embedder->model, &lv->emb_strs[2], &lv->emb.model) &&
             copy_str(embedder->api_key, &lv->emb_strs[3], &lv->emb.api_key);
    }
    if (!ok) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    /* The files before the open: a write during it only causes one more
     * check at the next call. */
    /* Watch before the open: a write during it only causes one more check
     * at the next call. (Not IN_CLOSE_WRITE: the generation check's own
     * connection closes the -shm file it opened for writing.) Without inotify (limits, exotic file systems) the
     * files' state is compared instead. */
    /* DYNRAG_TEST_NO_INOTIFY: test hook for the fallback; never set it otherwise. */
    const char *no_ino = getenv("DYNRAG_TEST_NO_INOTIFY");
    lv->ino_fd = no_ino && *no_ino ? -1 : inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (lv->ino_fd >= 0 &&
        inotify_add_watch(lv->ino_fd, dir,
                          IN_MODIFY | IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM |
                              IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
        close(lv->ino_fd);
        lv->ino_fd = -1;
    }
    dr_file_sig before[2];
    sig_take(lv, before);
    sig_record(lv, before);
    rc = open_snapshot_retry(dir, embedder, &lv->cur, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    atomic_init(&lv->cur->refs, 1);
    *out = idx;
    idx = NULL;
cleanup:
    dynrag_index_close(idx);
    return rc;
}
