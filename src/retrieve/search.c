/* search.c - opening an index and searching it: BM25, dense and hybrid. */
#define _GNU_SOURCE
#include "dynrag/index.h"

#include "core/util.h"
#include "embed/builtin.h"
#include "retrieve/embedders.h"
#include "retrieve/titles.h"
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
    /* A snapshot's: the folder, open (or -1), so that every connection it
     * opens reads the files of that folder even after the path is given to
     * another one (store.h, dr_store_open_pinned). */
    int dir_fd;
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
    /* A snapshot's: meta.index_id of the database it was opened from
     * ("" when it has none), which every later connection must match. */
    bool id_known;
    char index_id[40];
    /* A snapshot's: the device and inode of the index.db it reads (when
     * db_known), to tell whether the path still names it. */
    bool db_known;
    dev_t db_dev;
    ino_t db_ino;
    /* The chunk -> document map every search uses when it could be built
     * (by the first search); map_tried set once that was attempted. */
    pthread_mutex_t map_lock;
    struct dr_docmap *map;
    bool map_tried;
    /* The documents' title keys (retrieve/titles.h), built under
     * titles_lock (not map_lock: searches never wait for them) by the first
     * dr_index_title_keys() call; read-only once titles_ready. */
    pthread_mutex_t titles_lock;
    uint64_t *title_keys;
    size_t n_title_keys;
    atomic_bool titles_ready;
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
    sqlite3_stmt *doc; /* a chunk's document row and id (prepared on first use) */
    sqlite3_stmt *body; /* a chunk's body and span, by chunk id (prepared on first use) */
} dr_conn;

static void conn_free(dr_conn *c)
{
    if (c == NULL)
        return;
    sqlite3_finalize(c->hit);
    sqlite3_finalize(c->gen);
    sqlite3_finalize(c->doc);
    sqlite3_finalize(c->body);
    sqlite3_close(c->db);
    dr_free(c);
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
    dr_conn *c = dr_calloc(1, sizeof(*c));
    if (c == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    int rc = dr_store_open_pinned(idx->db_path, idx->dir_fd, &c->db, err);
    if (rc != DYNRAG_OK) {
        dr_free(c);
        return rc;
    }
    /* Hits read chunk pages: mapped, a page read is a memory access, not a
     * pread() copying it from the page cache (a third of a k=100 search's
     * CPU). Best effort: without it SQLite reads as before. */
    (void)sqlite3_exec(c->db, "PRAGMA mmap_size=1073741824", NULL, NULL, NULL);
    if (sqlite3_prepare_v3(c->db,
                           "SELECT d.doc_id, d.title, c.body, c.start, c.\"end\" FROM chunks c"
                           " JOIN docs d ON d.id = c.doc WHERE c.id = ?1",
                           -1, SQLITE_PREPARE_PERSISTENT, &c->hit, NULL) != SQLITE_OK) {
        const char *m = sqlite3_errmsg(c->db);
        if (strncmp(m, "no such table", 13) == 0)
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                            "%s: not a complete index (index.db has %s: an empty file, or a "
                            "first build that did not finish); build it again with dynrag index",
                            idx->dir, m);
        else
            rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: %s", m);
        conn_free(c);
        return rc;
    }
    /* A connection opened after the snapshot reads whatever index.db is at
     * the path now. When the folder was replaced (removed and built again,
     * or another folder moved in), that is another database, whose rows
     * must not be read as this snapshot's, even at the same generation:
     * the search is then run again on a new snapshot (moved). */
    if (idx->id_known) {
        char *id = NULL;
        dynrag_error e2;
        int irc = dr_meta_get(c->db, "index_id", &id, &e2);
        bool same = irc == DYNRAG_OK && strcmp(id ? id : "", idx->index_id) == 0;
        dr_free(id);
        if (!same) {
            conn_free(c);
            if (irc == DYNRAG_ERR_NOMEM)
                return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            atomic_store(&idx->moved, true);
            return dr_err_set(err, DYNRAG_ERR_STATE,
                              "%s: the folder now holds another index (it was replaced while "
                              "this search ran)",
                              idx->dir);
        }
    }
    pthread_mutex_lock(&idx->pool_lock);
    if (idx->n_all == idx->cap_all) {
        size_t cap = idx->cap_all ? idx->cap_all * 2 : 8;
        dr_conn **a = dr_realloc(idx->all, cap * sizeof(*a));
        dr_conn **i = a ? dr_realloc(idx->idle, cap * sizeof(*i)) : NULL;
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

/* ---- the chunk -> document map ----------------------------------------------------- */

#define DOC_NONE UINT32_MAX

/* Every chunk's document, read once from index.db at the generation the
 * BM25 engine reflects, so that a hit's document id is known without a
 * SQLite read (a run file needs nothing else). */
typedef struct dr_docmap {
    size_t n_chunks;
    int64_t *chunk_id; /* ascending */
    uint32_t *doc;     /* index into doc_off; DOC_NONE: the chunk's document is missing */
    uint32_t *by_id;   /* when chunk ids are dense: by_id[id] = doc[i] of chunk id, for
                        * ids 0..max_id (DOC_NONE for ids without a chunk); else NULL */
    int64_t max_id;
    size_t n_docs;
    size_t *doc_off;   /* document i's id is names + doc_off[i], NUL-terminated */
    char *names;
} dr_docmap;

static void docmap_free(dr_docmap *m)
{
    if (m == NULL)
        return;
    dr_free(m->chunk_id);
    dr_free(m->doc);
    dr_free(m->by_id);
    dr_free(m->doc_off);
    dr_free(m->names);
    dr_free(m);
}

/* The document index of chunk id in m, DOC_NONE when the chunk is unknown. */
static uint32_t docmap_find(const dr_docmap *m, int64_t id)
{
    if (m->by_id)
        return id >= 0 && id <= m->max_id ? m->by_id[id] : DOC_NONE;
    size_t lo = 0, hi = m->n_chunks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->chunk_id[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->n_chunks && m->chunk_id[lo] == id ? m->doc[lo] : DOC_NONE;
}

/* Grows *p (elements of size sz, capacity *cap) to hold n + 1. */
static int grow(void **p, size_t *cap, size_t n, size_t sz)
{
    if (n < *cap)
        return DYNRAG_OK;
    size_t c = *cap ? *cap * 2 : 1024;
    if (c > SIZE_MAX / sz)
        return DYNRAG_ERR_NOMEM;
    void *q = dr_realloc(*p, c * sz);
    if (q == NULL)
        return DYNRAG_ERR_NOMEM;
    *p = q;
    *cap = c;
    return DYNRAG_OK;
}

/* A (row id, value) pair: a document's row and name offset, or a chunk's
 * id and document row. */
typedef struct idpair {
    int64_t id, v;
} idpair;

static int cmp_idpair(const void *a, const void *b)
{
    const idpair *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Reads the map from db (one read transaction) when index.db's generation
 * is gen; *out stays NULL when it is not (the map would not describe the
 * engine's chunks). Both tables are read through their covering indexes
 * (docs' doc_id UNIQUE, chunks_doc), not their rows with the texts, and
 * sorted here. A repeated row id is DYNRAG_ERR_FORMAT; a chunk whose
 * document row is missing maps to DOC_NONE (its hits are dropped, as the
 * joined read drops them). */
static int docmap_build(sqlite3 *db, int64_t gen, dr_docmap **out, dynrag_error *err)
{
    *out = NULL;
    dr_docmap *m = dr_calloc(1, sizeof(*m));
    idpair *docs = NULL, *chunks = NULL;
    size_t n_docs = 0, n_chunks = 0, cap_docs = 0, cap_chunks = 0, cap_names = 0, used = 0;
    sqlite3_stmt *st = NULL;
    long long now = 0;
    int s = SQLITE_DONE;
    if (m == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    int rc = dr_store_exec(db, "BEGIN", err);
    if (rc != DYNRAG_OK) {
        dr_free(m);
        return rc;
    }
    rc = dr_meta_get_ll(db, "generation", 0, &now, err);
    if (rc != DYNRAG_OK || now != gen)
        goto cleanup;
    if (sqlite3_prepare_v2(db, "SELECT id, doc_id FROM docs", -1, &st, NULL) != SQLITE_OK)
        goto db_error;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        if (n_docs >= DOC_NONE - 1) {
            rc = dr_err_set(err, DYNRAG_ERR_LIMIT, "index.db: too many documents for the map");
            goto cleanup;
        }
        if (grow((void **)&docs, &cap_docs, n_docs, sizeof(*docs)) != DYNRAG_OK)
            goto no_memory;
        while (cap_names - used < len + 1) {
            if (grow((void **)&m->names, &cap_names, cap_names, 1) != DYNRAG_OK)
                goto no_memory;
        }
        if (len > 0)
            memcpy(m->names + used, name, len);
        m->names[used + len] = '\0';
        docs[n_docs++] = (idpair){sqlite3_column_int64(st, 0), (int64_t)used};
        used += len + 1;
    }
    if (s != SQLITE_DONE)
        goto db_error;
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT id, doc FROM chunks", -1, &st, NULL) != SQLITE_OK)
        goto db_error;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&chunks, &cap_chunks, n_chunks, sizeof(*chunks)) != DYNRAG_OK)
            goto no_memory;
        chunks[n_chunks++] =
            (idpair){sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1)};
    }
    if (s != SQLITE_DONE)
        goto db_error;
    if (n_docs > 0)
        qsort(docs, n_docs, sizeof(*docs), cmp_idpair);
    if (n_chunks > 0)
        qsort(chunks, n_chunks, sizeof(*chunks), cmp_idpair);
    for (size_t i = 1; i < n_docs || i < n_chunks; i++) {
        if ((i < n_docs && docs[i].id == docs[i - 1].id) ||
            (i < n_chunks && chunks[i].id == chunks[i - 1].id)) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "index.db: a repeated row id");
            goto cleanup;
        }
    }
    m->n_docs = n_docs;
    m->n_chunks = n_chunks;
    m->doc_off = dr_malloc(DR_MAX(n_docs, 1) * sizeof(*m->doc_off));
    m->chunk_id = dr_malloc(DR_MAX(n_chunks, 1) * sizeof(*m->chunk_id));
    m->doc = dr_malloc(DR_MAX(n_chunks, 1) * sizeof(*m->doc));
    if (m->doc_off == NULL || m->chunk_id == NULL || m->doc == NULL)
        goto no_memory;
    for (size_t i = 0; i < n_docs; i++)
        m->doc_off[i] = (size_t)docs[i].v;
    for (size_t i = 0; i < n_chunks; i++) {
        size_t lo = 0, hi = n_docs;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (docs[mid].id < chunks[i].v)
                lo = mid + 1;
            else
                hi = mid;
        }
        m->chunk_id[i] = chunks[i].id;
        m->doc[i] = lo < n_docs && docs[lo].id == chunks[i].v ? (uint32_t)lo : DOC_NONE;
    }
    /* Chunk ids are handed out in order and never reused: unless many were
     * deleted, a table indexed by id is small and one memory access. */
    if (n_chunks > 0 && chunks[0].id >= 0 &&
        chunks[n_chunks - 1].id < (int64_t)(4 * n_chunks + 1024)) {
        m->max_id = chunks[n_chunks - 1].id;
        m->by_id = dr_malloc(((size_t)m->max_id + 1) * sizeof(*m->by_id));
        if (m->by_id == NULL)
            goto no_memory;
        for (int64_t i = 0; i <= m->max_id; i++)
            m->by_id[i] = DOC_NONE;
        for (size_t i = 0; i < n_chunks; i++)
            m->by_id[m->chunk_id[i]] = m->doc[i];
    }
    *out = m;
    m = NULL;
    goto cleanup;
db_error:
    rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: reading the chunk -> document map: %s",
                    sqlite3_errmsg(db));
    goto cleanup;
no_memory:
    rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
cleanup:
    sqlite3_finalize(st);
    (void)dr_store_exec(db, "COMMIT", NULL);
    dr_free(docs);
    dr_free(chunks);
    docmap_free(m);
    return rc;
}

/* The index's map, built on first call with db (a pooled connection);
 * NULL when it cannot be used (index.db is at another generation than the
 * BM25 engine, or reading it failed: logged, and the searches read each
 * hit's document from index.db instead). */
static const dr_docmap *docmap_get(dynrag_index *idx, sqlite3 *db)
{
    pthread_mutex_lock(&idx->map_lock);
    if (!idx->map_tried) {
        idx->map_tried = true;
        dr_bm25_info bi;
        dr_bm25_get_info(idx->bm25, &bi);
        dynrag_error e;
        dynrag_error_clear(&e);
        if (docmap_build(db, bi.generation, &idx->map, &e) != DYNRAG_OK)
            dr_log(DYNRAG_LOG_WARN, "index", "no chunk -> document map: %s", dynrag_errmsg(&e));
        else if (idx->map == NULL)
            dr_log(DYNRAG_LOG_INFO, "index",
                   "index.db changed since it was opened: hits read their document from it");
    }
    const dr_docmap *m = idx->map;
    pthread_mutex_unlock(&idx->map_lock);
    return m;
}

/* ---- document titles (retrieve/titles.h) ---------------------------------------- */

/* Reads every title of idx's documents into idx->title_keys (sorted,
 * distinct). Called once, under titles_lock. */
static int title_keys_build(dynrag_index *idx, dr_title_keyfn keyfn, dynrag_error *err)
{
    dr_conn *conn = NULL;
    sqlite3_stmt *st = NULL;
    uint64_t *keys = NULL;
    size_t n = 0, cap = 0;
    int rc = conn_acquire(idx, &conn, err);
    if (rc != DYNRAG_OK)
        return rc;
    if (sqlite3_prepare_v2(conn->db, "SELECT title FROM docs", -1, &st, NULL) != SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: %s", sqlite3_errmsg(conn->db));
        goto cleanup;
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        uint64_t k = t ? keyfn(t, (size_t)sqlite3_column_bytes(st, 0)) : 0;
        if (k == 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            uint64_t *nk = dr_realloc(keys, nc * sizeof(*nk));
            if (nk == NULL) {
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                goto cleanup;
            }
            keys = nk;
            cap = nc;
        }
        keys[n++] = k;
    }
    if (step != SQLITE_DONE) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: %s", sqlite3_errmsg(conn->db));
        goto cleanup;
    }
    qsort(keys, n, sizeof(*keys), dr_u64_cmp);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || keys[u - 1] != keys[i])
            keys[u++] = keys[i];
    idx->title_keys = keys;
    idx->n_title_keys = u;
    keys = NULL;
cleanup:
    sqlite3_finalize(st);
    conn_release(idx, conn);
    dr_free(keys);
    return rc;
}

const uint64_t *dr_index_title_keys(dynrag_index *idx, dr_title_keyfn keyfn, size_t *n,
                                    dynrag_index **pin)
{
    *n = 0;
    *pin = NULL;
    if (idx == NULL || keyfn == NULL)
        return NULL;
    if (idx->live) {
        dynrag_index *snap = live_acquire(idx->live, false);
        const uint64_t *k = dr_index_title_keys(snap, keyfn, n, pin);
        if (*pin == NULL)
            *pin = snap; /* the keys belong to snap: keep it until unpinned */
        else
            snap_release(snap);
        return k;
    }
    if (!atomic_load(&idx->titles_ready)) {
        pthread_mutex_lock(&idx->titles_lock);
        if (!atomic_load(&idx->titles_ready)) {
            dynrag_error e;
            dynrag_error_clear(&e);
            if (title_keys_build(idx, keyfn, &e) != DYNRAG_OK)
                dr_log(DYNRAG_LOG_WARN, "index", "document titles not read (no entity links): %s",
                       dynrag_errmsg(&e));
            atomic_store(&idx->titles_ready, true);
        }
        pthread_mutex_unlock(&idx->titles_lock);
    }
    *n = idx->n_title_keys;
    return idx->title_keys;
}

void dr_index_unpin(dynrag_index *pin)
{
    snap_release(pin);
}

/* ---- open and close ------------------------------------------------------------- */

void dynrag_index_close(dynrag_index *idx)
{
    if (idx == NULL)
        return;
    live_free(idx->live);
    for (size_t i = 0; i < idx->n_all; i++)
        conn_free(idx->all[i]);
    dr_free(idx->all);
    dr_free(idx->idle);
    pthread_mutex_destroy(&idx->pool_lock);
    docmap_free(idx->map);
    dr_free(idx->title_keys);
    pthread_mutex_destroy(&idx->titles_lock);
    pthread_mutex_destroy(&idx->map_lock);
    dr_vec_free(idx->vec);
    dr_bm25_free(idx->bm25);
    dr_embedder_free(idx->emb);
    if (idx->dir_fd >= 0)
        close(idx->dir_fd);
    dr_free(idx->dir);
    dr_free(idx->db_path);
    dr_free(idx);
}

/* The metadata of one consistent snapshot, read in one transaction. */
typedef struct snapshot {
    long long fmt, gen, dim, docs, chunks, tokens;
    char embedder[256], factory[128], hash[32], id[40];
    void *state;
    size_t state_len;
} snapshot;

static int read_str(sqlite3 *db, const char *key, char *buf, size_t size, dynrag_error *err)
{
    char *v = NULL;
    int rc = dr_meta_get(db, key, &v, err);
    dr_strlcpy(buf, v ? v : "", size);
    dr_free(v);
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
    if (rc == DYNRAG_OK)
        rc = read_str(db, "index_id", s->id, sizeof(s->id), err);
    if (rc == DYNRAG_OK) {
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(db, "SELECT blob FROM embedder_state WHERE id = 1", -1, &q,
                               NULL) != SQLITE_OK) {
            rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: %s", sqlite3_errmsg(db));
        } else if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_bytes(q, 0) > 0) {
            s->state_len = (size_t)sqlite3_column_bytes(q, 0);
            s->state = dr_malloc(s->state_len);
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
    dr_free(pending);
    dr_free(final);
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
    dynrag_index *idx = dr_calloc(1, sizeof(*idx));
    snapshot s;
    memset(&s, 0, sizeof(s));
    if (idx == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    /* Without the folder open (out of descriptors), connections open by
     * path as before. */
    idx->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    pthread_mutex_init(&idx->pool_lock, NULL);
    pthread_mutex_init(&idx->map_lock, NULL);
    pthread_mutex_init(&idx->titles_lock, NULL);
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
        dr_free(s.state);
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
    dr_strlcpy(idx->index_id, s.id, sizeof(idx->index_id));
    idx->id_known = true;
    struct stat dbst;
    if (fstatat(idx->dir_fd >= 0 ? idx->dir_fd : AT_FDCWD,
                idx->dir_fd >= 0 ? "index.db" : idx->db_path, &dbst, 0) == 0) {
        idx->db_known = true;
        idx->db_dev = dbst.st_dev;
        idx->db_ino = dbst.st_ino;
    }
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
    dr_free(s.state);
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
    int64_t *ids = dr_malloc(depth * sizeof(*ids));
    double *scores = dr_malloc(depth * sizeof(*scores));
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
    dr_free(ids);
    dr_free(scores);
    return rc;
}

static int dense_search(dynrag_index *idx, const char *query, size_t k, int nprobe,
                        dr_scored *out, size_t *n_out, dynrag_error *err)
{
    int dim = idx->emb->dim;
    *n_out = 0;
    float *q = dr_malloc((size_t)dim * sizeof(float));
    int64_t *labels = dr_malloc(k * sizeof(*labels));
    float *scores = dr_malloc(k * sizeof(*scores));
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
    dr_free(q);
    dr_free(labels);
    dr_free(scores);
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
        h->text_len = h->text ? strlen(h->text) : 0;
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

/* fill_hit() when the map knows the chunk's document doc_id: one read of
 * the chunks table (body, span) instead of a join with docs. The title is
 * the body's first line (body = title + "\n" + text, titles being one
 * line), the text the rest. *found false when the chunk is gone. */
static int fill_hit_mapped(dr_conn *conn, int64_t id, double score, const char *doc_id,
                           dynrag_hit *h, bool *found, dynrag_error *err)
{
    *found = false;
    if (conn->body == NULL &&
        sqlite3_prepare_v3(conn->db, "SELECT body, start, \"end\" FROM chunks WHERE id = ?1", -1,
                           SQLITE_PREPARE_PERSISTENT, &conn->body, NULL) != SQLITE_OK)
        return dr_err_set(err, DYNRAG_ERR_DB, "index.db: %s", sqlite3_errmsg(conn->db));
    sqlite3_stmt *st = conn->body;
    sqlite3_bind_int64(st, 1, id);
    int s = sqlite3_step(st);
    int rc = DYNRAG_OK;
    if (s == SQLITE_ROW) {
        const char *body = (const char *)sqlite3_column_text(st, 0);
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        const char *nl = body ? memchr(body, '\n', len) : NULL;
        *found = true;
        h->chunk_id = id;
        h->score = score;
        h->doc_id = dr_strdup(doc_id);
        h->title = nl ? dr_strndup(body, (size_t)(nl - body)) : dr_strdup("");
        /* (body holds no NUL: ingest refuses texts with one) */
        h->text_len = nl ? len - (size_t)(nl + 1 - body) : body ? len : 0;
        h->text = dr_strndup(nl ? nl + 1 : body ? body : "", h->text_len);
        h->start = sqlite3_column_int64(st, 1);
        h->end = sqlite3_column_int64(st, 2);
        if (h->doc_id == NULL || h->title == NULL || h->text == NULL)
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    } else if (s != SQLITE_DONE) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: reading a chunk: %s",
                        sqlite3_errmsg(conn->db));
    }
    sqlite3_reset(st);
    return rc;
}

void dynrag_hits_free(dynrag_hits *hits)
{
    if (hits == NULL)
        return;
    for (size_t i = 0; i < hits->n; i++) {
        dr_free(hits->hits[i].doc_id);
        dr_free(hits->hits[i].title);
        dr_free(hits->hits[i].text);
    }
    dr_free(hits->hits);
    memset(hits, 0, sizeof(*hits));
}

/* The BM25 and fusion parameters of one search, defaults applied. */
typedef struct params {
    double k1, b, rrf_k, wb, wd;
} params;

/* The chunk ranking of one search: *ranked points into one of the lists. */
typedef struct ranking {
    dr_scored *lb, *ld, *fused;
    const dr_scored *ranked;
    size_t n;
} ranking;

static void ranking_free(ranking *r)
{
    dr_free(r->lb);
    dr_free(r->ld);
    dr_free(r->fused);
    memset(r, 0, sizeof(*r));
}

/* Ranks the chunks for query in opt->mode: the top k (hybrid: the fusion
 * of each side's top `depth`, depth >= k). Adds the time spent in each part
 * to out's timings. */
static int rank_chunks(dynrag_index *idx, const char *query, const dynrag_search_options *opt,
                       const params *p, size_t k, size_t depth, ranking *r, dynrag_hits *out,
                       dynrag_error *err)
{
    bool use_bm25 = opt->mode != DYNRAG_SEARCH_DENSE;
    bool use_dense = opt->mode != DYNRAG_SEARCH_BM25;
    if (opt->mode != DYNRAG_SEARCH_HYBRID)
        depth = k;
    size_t nb = 0, nd = 0;
    memset(r, 0, sizeof(*r));
    r->lb = dr_calloc(depth, sizeof(*r->lb));
    r->ld = dr_calloc(depth, sizeof(*r->ld));
    r->fused = dr_calloc(2 * depth, sizeof(*r->fused));
    if (r->lb == NULL || r->ld == NULL || r->fused == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    if (use_bm25) {
        int64_t t = dr_now_us();
        int rc = bm25_search(idx, query, p->k1, p->b, depth, r->lb, &nb, err);
        out->bm25_us += (double)(dr_now_us() - t);
        if (rc != DYNRAG_OK)
            return rc;
    }
    if (use_dense) {
        int64_t t = dr_now_us();
        int rc = dense_search(idx, query, depth, opt->nprobe, r->ld, &nd, err);
        out->dense_us += (double)(dr_now_us() - t);
        if (rc != DYNRAG_OK)
            return rc;
    }
    if (opt->mode == DYNRAG_SEARCH_HYBRID) {
        r->n = rrf_fuse(r->lb, nb, p->wb, r->ld, nd, p->wd, p->rrf_k, r->fused);
        r->ranked = r->fused;
    } else if (use_bm25) {
        r->ranked = r->lb;
        r->n = nb;
    } else {
        r->ranked = r->ld;
        r->n = nd;
    }
    return DYNRAG_OK;
}

/* Finds chunk id's document: *key (equal for the chunks of one document)
 * and *doc_id (NULL when the chunk or its document is gone). From the map
 * when there is one, else read with conn (inside the caller's transaction);
 * a string read from index.db is copied to *owned (caller frees). */
static int chunk_doc(dr_conn *conn, const dr_docmap *m, int64_t id, int64_t *key,
                     const char **doc_id, char **owned, dynrag_error *err)
{
    *doc_id = NULL;
    *owned = NULL;
    if (m) {
        uint32_t d = docmap_find(m, id);
        if (d != DOC_NONE) {
            *key = d;
            *doc_id = m->names + m->doc_off[d];
        }
        return DYNRAG_OK;
    }
    if (conn->doc == NULL &&
        sqlite3_prepare_v3(conn->db,
                           "SELECT c.doc, d.doc_id FROM chunks c JOIN docs d ON d.id = c.doc"
                           " WHERE c.id = ?1",
                           -1, SQLITE_PREPARE_PERSISTENT, &conn->doc, NULL) != SQLITE_OK)
        return dr_err_set(err, DYNRAG_ERR_DB, "index.db: %s", sqlite3_errmsg(conn->db));
    sqlite3_bind_int64(conn->doc, 1, id);
    int s = sqlite3_step(conn->doc);
    int rc = DYNRAG_OK;
    if (s == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(conn->doc, 1);
        *key = sqlite3_column_int64(conn->doc, 0);
        *owned = dr_strdup(t ? t : "");
        *doc_id = *owned;
        if (*owned == NULL)
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    } else if (s != SQLITE_DONE) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: reading a chunk's document: %s",
                        sqlite3_errmsg(conn->db));
    }
    sqlite3_reset(conn->doc);
    return rc;
}

/* A set of document keys (open addressing; capacity a power of two at
 * least twice the number of keys it will hold). */
typedef struct keyset {
    int64_t *keys;
    unsigned char *used;
    size_t mask;
} keyset;

static int keyset_init(keyset *s, size_t max_keys)
{
    size_t cap = 16;
    while (cap < 2 * max_keys)
        cap *= 2;
    s->keys = dr_malloc(cap * sizeof(*s->keys));
    s->used = dr_calloc(cap, 1);
    s->mask = cap - 1;
    return s->keys && s->used ? DYNRAG_OK : DYNRAG_ERR_NOMEM;
}

/* Adds key; false when it was already there. */
static bool keyset_add(keyset *s, int64_t key)
{
    size_t i = (size_t)dr_hash64(&key, sizeof(key), 0) & s->mask;
    while (s->used[i]) {
        if (s->keys[i] == key)
            return false;
        i = (i + 1) & s->mask;
    }
    s->used[i] = 1;
    s->keys[i] = key;
    return true;
}

static void keyset_free(keyset *s)
{
    dr_free(s->keys);
    dr_free(s->used);
    memset(s, 0, sizeof(*s));
}

/* A chunk chosen for a document-level hit. */
typedef struct chosen {
    int64_t id;
    double score;
    const char *doc_id; /* borrowed from the map, or == owned */
    char *owned;
} chosen;

/* Document level: the first chunk of each document in r, in rank order,
 * at most k documents, looking at the first `want` chunks that still exist.
 * *n_found counts those chunks. */
static int collapse(dr_conn *conn, const dr_docmap *m, const ranking *r, size_t want, size_t k,
                    chosen *sel, size_t *n_sel, size_t *n_found, dynrag_error *err)
{
    keyset seen;
    memset(&seen, 0, sizeof(seen));
    *n_sel = *n_found = 0;
    if (keyset_init(&seen, k) != DYNRAG_OK) {
        keyset_free(&seen);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    int rc = DYNRAG_OK;
    for (size_t i = 0; i < r->n && *n_found < want && *n_sel < k; i++) {
        int64_t key = 0;
        const char *doc_id = NULL;
        char *owned = NULL;
        rc = chunk_doc(conn, m, r->ranked[i].id, &key, &doc_id, &owned, err);
        if (rc != DYNRAG_OK)
            break;
        if (doc_id == NULL)
            continue;
        (*n_found)++;
        if (!keyset_add(&seen, key)) {
            dr_free(owned);
            continue;
        }
        sel[(*n_sel)++] = (chosen){r->ranked[i].id, r->ranked[i].score, doc_id, owned};
    }
    keyset_free(&seen);
    return rc;
}

/* An ids_only hit. */
static int ids_hit(int64_t id, double score, const char *doc_id, dynrag_hit *h,
                   dynrag_error *err)
{
    memset(h, 0, sizeof(*h));
    h->chunk_id = id;
    h->score = score;
    h->doc_id = dr_strdup(doc_id);
    return h->doc_id ? DYNRAG_OK : dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
}

/* Public: see dynrag/index.h. */
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
            if (moved && attempt == 4) /* say what goes on, not only what the last one saw */
                dr_err_set(err, DYNRAG_ERR_STATE,
                           "%s: the index changed under 5 searches in a row and its new state "
                           "could not be opened (being rewritten or replaced?): retry later",
                           snap->dir);
            snap_release(snap);
            if (!moved)
                break;
        }
        return rc;
    }
    if (idx == NULL || query == NULL || opt == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "search: missing index, query or options");
    int64_t t0 = dr_now_us();
    int k = opt->k;
    params p = {opt->k1, opt->b, opt->rrf_k, opt->w_bm25, opt->w_dense};
    if (k < 1 || k > MAX_K)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "search: k must be 1 to %d, got %d", MAX_K, k);
    if (!(p.k1 >= 0 && p.k1 <= 100))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "search: k1 must be 0 to 100, got %g", p.k1);
    if (!(p.b >= 0 && p.b <= 1))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "search: b must be 0 to 1, got %g", p.b);
    if (!(p.rrf_k > 0))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "search: rrf_k must be > 0, got %g", p.rrf_k);
    if (!(p.wb >= 0) || !(p.wd >= 0) || (p.wb == 0 && p.wd == 0))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "search: w_bm25 and w_dense must be >= 0 and not both 0, got %g and %g",
                          p.wb, p.wd);
    if (opt->depth < 0 || opt->depth > MAX_K)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "search: depth must be 0 to %d, got %d", MAX_K,
                          opt->depth);
    if (opt->nprobe < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "search: nprobe must be >= 0, got %d",
                          opt->nprobe);
    if (opt->mode != DYNRAG_SEARCH_BM25 && opt->mode != DYNRAG_SEARCH_DENSE &&
        opt->mode != DYNRAG_SEARCH_HYBRID)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "search: unknown mode %d", (int)opt->mode);
    if (opt->mode != DYNRAG_SEARCH_BM25 && idx->vec == NULL)
        return dr_err_set(err, DYNRAG_ERR_UNSUPPORTED,
                          "search: mode %s needs a dense part; this index was built with "
                          "--no-dense",
                          dynrag_search_mode_name(opt->mode));
    bool per_doc = opt->per_document, ids_only = opt->ids_only;
    ranking r;
    memset(&r, 0, sizeof(r));
    chosen *sel = NULL;
    size_t n_sel = 0;
    dr_conn *conn = NULL;
    bool in_txn = false;
    int rc = conn_acquire(idx, &conn, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    const dr_docmap *map = docmap_get(idx, conn->db);
    /* One read transaction for all the reads of hits: one shared lock, not
     * one per row (each lock is several fcntl/pread calls). None at all
     * when the map answers everything. */
    if (!(map && ids_only))
        in_txn = sqlite3_exec(conn->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    /* The rows read below must be of this snapshot's generation. */
    if (in_txn && conn_moved(idx, conn)) {
        rc = dr_err_set(err, DYNRAG_ERR_STATE, "%s: changed during the search", idx->dir);
        goto cleanup;
    }
    /* Document level searches 3k chunks, then twice as many while fewer
     * than k documents came out of a full list. */
    size_t want = per_doc ? DR_MIN((size_t)k * 3, (size_t)MAX_K) : (size_t)k;
    if (per_doc && (sel = dr_calloc((size_t)k, sizeof(*sel))) == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (;;) {
        size_t depth = DR_MAX((size_t)opt->depth, (size_t)k);
        if (per_doc)
            depth = DR_MAX((size_t)opt->depth, want);
        ranking_free(&r);
        rc = rank_chunks(idx, query, opt, &p, want, depth, &r, out, err);
        if (rc != DYNRAG_OK || !per_doc)
            break;
        for (size_t i = 0; i < n_sel; i++)
            dr_free(sel[i].owned);
        size_t found = 0;
        rc = collapse(conn, map, &r, want, (size_t)k, sel, &n_sel, &found, err);
        if (rc != DYNRAG_OK || n_sel >= (size_t)k || found < want || want >= MAX_K)
            break;
        want = DR_MIN(want * 2, (size_t)MAX_K);
    }
    if (rc != DYNRAG_OK)
        goto cleanup;
    size_t cand = per_doc ? n_sel : r.n;
    if (cand > 0) {
        out->hits = dr_calloc(DR_MIN(cand, (size_t)k), sizeof(*out->hits));
        if (out->hits == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
    }
    for (size_t i = 0; i < cand && out->n < (size_t)k && rc == DYNRAG_OK; i++) {
        int64_t id = per_doc ? sel[i].id : r.ranked[i].id;
        double score = per_doc ? sel[i].score : r.ranked[i].score;
        dynrag_hit *h = &out->hits[out->n];
        bool found = false;
        if (ids_only) {
            const char *doc_id = per_doc ? sel[i].doc_id : NULL;
            char *owned = NULL;
            int64_t key = 0;
            if (!per_doc)
                rc = chunk_doc(conn, map, id, &key, &doc_id, &owned, err);
            found = rc == DYNRAG_OK && doc_id != NULL;
            if (found)
                rc = ids_hit(id, score, doc_id, h, err);
            dr_free(owned);
        } else if (map) {
            const char *doc_id = per_doc ? sel[i].doc_id : NULL;
            uint32_t d = per_doc ? 0 : docmap_find(map, id);
            if (!per_doc && d != DOC_NONE)
                doc_id = map->names + map->doc_off[d];
            if (doc_id)
                rc = fill_hit_mapped(conn, id, score, doc_id, h, &found, err);
        } else {
            rc = fill_hit(conn->db, conn->hit, id, score, h, &found, err);
        }
        if (found)
            out->n++;
    }
cleanup:
    if (conn && in_txn)
        sqlite3_exec(conn->db, "COMMIT", NULL, NULL, NULL);
    conn_release(idx, conn);
    ranking_free(&r);
    for (size_t i = 0; i < n_sel; i++)
        dr_free(sel[i].owned);
    dr_free(sel);
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
                dr_free(*title);
                *title = NULL;
            }
            if (text) {
                dr_free(*text);
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
    dev_t dir_dev;      /* the watched folder's device and inode */
    ino_t dir_ino;
    int64_t retry_us;   /* after a failed reopen: no settle-window attempt before this */
    /* Failed reopens are logged at most once a second (a folder rebuilt
     * under load changes on nearly every request): when the last warning
     * was, and how many failures it has not told of. */
    int64_t warned_us;
    unsigned long unwarned;
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
 * call (all are read). A full queue or a read error counts as a change.
 * When the watched folder itself was removed or moved away (the watch is
 * gone: a folder made again at that path would never be seen), inotify is
 * dropped for the stat signature of index.db and index.db-wal, which sees
 * a new folder's files by their new inodes. */
static bool events_pending(dr_live *lv)
{
    bool any = false, lost = false;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(lv->ino_fd, buf, sizeof(buf));
        if (n > 0) {
            any = true;
            for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
                const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
                if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW))
                    lost = true;
                /* The folder's own removal is reported only once nothing
                 * holds its inode: index.db itself removed or moved (which
                 * `dynrag index` never does; SQLite removes only the -wal)
                 * or a folder gone from the path counts as well. */
                if (!lost && (ev->mask & (IN_DELETE | IN_MOVED_FROM))) {
                    struct stat st;
                    lost = (ev->len > 0 && strcmp(ev->name, "index.db") == 0) ||
                           stat(lv->dir, &st) != 0 || st.st_dev != lv->dir_dev ||
                           st.st_ino != lv->dir_ino;
                }
                off += (ssize_t)sizeof(struct inotify_event) + (ssize_t)ev->len;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        bool failed = n < 0 && errno != EAGAIN && errno != EWOULDBLOCK;
        if (lost || failed) {
            dr_log(DYNRAG_LOG_INFO, "index",
                   "%s: the folder was removed or moved (or its watch failed): watching its "
                   "files by their status from now on",
                   lv->dir);
            close(lv->ino_fd);
            lv->ino_fd = -1;
        }
        return any || failed;
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
    /* The file at the path is the one last checked (same_file), and the one
     * cur reads (cur_db: not so when the folder was replaced, even if the
     * path's file was checked before, e.g. half copied). */
    bool same_file = now[0].exists && lv->sig[0].exists && now[0].dev == lv->sig[0].dev &&
                     now[0].ino == lv->sig[0].ino;
    bool cur_db = cur->db_known ? now[0].exists && now[0].dev == cur->db_dev &&
                                      now[0].ino == cur->db_ino
                                : same_file;
    long long gen = same_file || cur_db ? current_generation(lv) : -1;
    if ((cur_db && gen == cur->info.generation) ||
        (same_file && gen >= 0 && gen == lv->refused_gen)) {
        sig_record(lv, now); /* a checkpoint, not a write; or a generation refused below */
        return;
    }
    dynrag_index *snap = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (open_snapshot_retry(lv->dir, lv->has_emb ? &lv->emb : NULL, &snap, &err) != DYNRAG_OK) {
        int64_t t = dr_now_us();
        if (lv->warned_us == 0 || t - lv->warned_us >= 1000000) {
            char more[96] = "";
            if (lv->unwarned > 0)
                snprintf(more, sizeof(more), " (and %lu more failed reopens since the last warning)",
                         lv->unwarned);
            dr_log(DYNRAG_LOG_WARN, "index",
                   "%s changed but cannot be reopened (still using generation %lld; trying again "
                   "at its next change): %s%s",
                   lv->dir, (long long)cur->info.generation, dynrag_errmsg(&err), more);
            lv->warned_us = t;
            lv->unwarned = 0;
        } else {
            lv->unwarned++;
        }
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
    /* ino_fd changes only under the lock (to -1, once): read it there. */
    pthread_mutex_lock(&lv->lock);
    if (lv->ino_fd >= 0 && events_pending(lv)) {
        changed = true;
        lv->unsettled_until_us = dr_now_us() + SETTLE_US;
    } else if (lv->ino_fd < 0) {
        sig_take(lv, now);
        changed = !sig_equal(now, lv->sig);
    }
    int64_t t = dr_now_us();
    if (force || changed || (t < lv->unsettled_until_us && t >= lv->retry_us)) {
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
    dr_free(lv->dir);
    dr_free(lv->paths[0]);
    dr_free(lv->paths[1]);
    for (int i = 0; i < 4; i++)
        dr_free(lv->emb_strs[i]);
    dr_free(lv);
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
    dynrag_index *idx = dr_calloc(1, sizeof(*idx));
    dr_live *lv = dr_calloc(1, sizeof(*lv));
    if (idx == NULL || lv == NULL) {
        dr_free(idx);
        dr_free(lv);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    idx->dir_fd = -1; /* the live handle has no folder of its own: its snapshots do */
    pthread_mutex_init(&idx->pool_lock, NULL);
    pthread_mutex_init(&idx->map_lock, NULL);
    pthread_mutex_init(&idx->titles_lock, NULL);
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
    struct stat dst;
    if (lv->ino_fd >= 0 &&
        (stat(dir, &dst) != 0 ||
         inotify_add_watch(lv->ino_fd, dir,
                           IN_MODIFY | IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM |
                               IN_DELETE_SELF | IN_MOVE_SELF) < 0)) {
        close(lv->ino_fd);
        lv->ino_fd = -1;
    }
    if (lv->ino_fd >= 0) {
        lv->dir_dev = dst.st_dev;
        lv->dir_ino = dst.st_ino;
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
