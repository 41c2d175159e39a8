/* build.c - dynrag_index_add(), dynrag_index_delete() and
 * dynrag_index_write_group(): atomic writes.
 *
 * Write protocol (a kill at any point leaves the last good state usable):
 *   1. flock(DIR/lock, LOCK_EX); finish an earlier interrupted rename (if
 *      DIR/dense.faiss.<G> exists for the committed generation G, it becomes
 *      dense.faiss) and remove stray dense.faiss.* files.
 *   2. BEGIN IMMEDIATE; all document, chunk, FTS and vector writes; meta with
 *      generation G+1.
 *   3. Rebuild the FAISS index from the vectors table, write it to
 *      DIR/dense.faiss.<G+1> (temporary file, fsync, rename) and record the
 *      hash of its bytes in meta dense_hash.
 *   4. COMMIT.
 *   5. rename dense.faiss.<G+1> -> dense.faiss; fsync the folder.
 *   6. write bm25.idx for generation G+1 (it records meta index_id and the
 *      generation) and switch index.db to journal_mode=DELETE, so readers
 *      need to write nothing into the folder.
 * When index.db does not exist yet, step 1 first removes every file of an
 * earlier database in the folder (sidecars, -wal/-shm/-journal); a pending
 * dense.faiss.<G> is adopted only when its bytes hash to meta dense_hash.
 * Readers take dense.faiss.<G> when present and matching, else dense.faiss,
 * and check its hash against meta, so a reader never pairs files of two
 * generations or of two databases. Step 2 also records meta group_write,
 * the write's id (128 random bits).
 *
 * A group write (several indexes of one document set: a pipeline's main
 * index and one per other embedder option) runs steps 1 to 3 for every
 * index before step 4 of any: every lock, check and transaction first, then
 * the main index's documents, then every other index's copy of them, then
 * the COMMITs back to back, the main index last, then steps 5 and 6 of each.
 * All get one write id; a later group write whose other index's id differs
 * from the main index's compares their documents in full and repairs
 * (docs/indexing.md, "Several embedder options").
 */
#define _GNU_SOURCE
#include "dynrag/index.h"

#include "core/text.h"
#include "core/util.h"
#include "embed/builtin.h"
#include "retrieve/bm25.h"
#include "retrieve/chunk.h"
#include "retrieve/embedders.h"
#include "retrieve/ingest.h"
#include "retrieve/store.h"
#include "retrieve/vec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define EMBED_BATCH 256

/* Test hook: DYNRAG_TEST_KILL_AT=<point> kills the process there (SIGKILL),
 * to test that every point of the protocol leaves a usable index. */
static void test_kill_point(const char *point)
{
    const char *at = getenv("DYNRAG_TEST_KILL_AT");
    if (at && strcmp(at, point) == 0)
        raise(SIGKILL);
}

/*
 * Takes the writers' lock DIR/lock (flock, exclusive). When another writer
 * holds it, logs once (warning) that this one waits, then polls every 50 ms
 * until it gets the lock or `timeout_s` seconds have passed (INFINITY: wait
 * as long as it takes; 0: give up at once), failing then with
 * DYNRAG_ERR_TIMEOUT. *fd gets
 * the lock's descriptor (closing it releases the lock).
 */
static int lock_dir(const char *dir, double timeout_s, int *fd, dynrag_error *err)
{
    char *path = dr_asprintf("%s/lock", dir);
    if (path == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    int rc = DYNRAG_OK;
    int64_t t0 = dr_now_us();
    bool told = false;
    if (*fd < 0) {
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: %s", path, strerror(errno));
        goto cleanup;
    }
    while (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK) {
            rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: cannot lock: %s", path, strerror(errno));
            break;
        }
        double waited = (double)(dr_now_us() - t0) / 1e6;
        if (waited >= timeout_s) {
            rc = dr_err_set(err, DYNRAG_ERR_TIMEOUT,
                            "%s: another writer still holds the index lock after %.1f s "
                            "(gave up: lock timeout)",
                            dir, waited);
            break;
        }
        if (!told) {
            if (isfinite(timeout_s))
                dr_log(DYNRAG_LOG_WARN, "index",
                       "%s: another writer holds the index lock; waiting up to %.1f s", dir,
                       timeout_s);
            else
                dr_log(DYNRAG_LOG_WARN, "index",
                       "%s: another writer holds the index lock; waiting for it to finish "
                       "(--lock-timeout SECONDS gives up)",
                       dir);
            told = true;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (rc == DYNRAG_OK && told)
        dr_log(DYNRAG_LOG_INFO, "index", "%s: got the index lock after %.1f s", dir,
               (double)(dr_now_us() - t0) / 1e6);
cleanup:
    if (rc != DYNRAG_OK && *fd >= 0) {
        close(*fd);
        *fd = -1;
    }
    dr_free(path);
    return rc;
}

static int meta_str(sqlite3 *db, const char *key, char *buf, size_t size, bool *present,
                    dynrag_error *err);

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* True when the file at path hashes to meta dense_hash (hex). */
static bool dense_matches(const char *path, const char *hex)
{
    uint64_t want = 0;
    char *data = NULL;
    size_t len = 0;
    dynrag_error ignored;
    if (sscanf(hex, "%" SCNx64, &want) != 1 ||
        dr_read_file(path, (size_t)1 << 40, &data, &len, &ignored) != DYNRAG_OK)
        return false;
    bool ok = dr_vec_hash(data, len) == want;
    dr_free(data);
    return ok;
}

/* Step 1's recovery, under the lock, before the transaction. A pending
 * dense.faiss.<G> of the committed generation G becomes dense.faiss only
 * when its bytes hash to meta dense_hash (so a file left by an earlier
 * database of the same folder, at the same generation, is not taken). */
static int recover_dense(const char *dir, sqlite3 *db, dynrag_error *err)
{
    long long gen = 0;
    char hash[32];
    int rc = dr_meta_get_ll(db, "generation", 0, &gen, err);
    if (rc == DYNRAG_OK)
        rc = meta_str(db, "dense_hash", hash, sizeof(hash), NULL, err);
    if (rc != DYNRAG_OK)
        return rc;
    char keep[64];
    snprintf(keep, sizeof(keep), "dense.faiss.%lld", gen);
    DIR *d = opendir(dir);
    if (d == NULL)
        return dr_err_set(err, DYNRAG_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    while (rc == DYNRAG_OK && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "dense.faiss.", 12) != 0 && strncmp(e->d_name, ".dense.faiss", 12) != 0)
            continue;
        char *path = dr_asprintf("%s/%s", dir, e->d_name);
        char *final = dr_asprintf("%s/dense.faiss", dir);
        if (path == NULL || final == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        } else if (strcmp(e->d_name, keep) == 0 && dense_matches(path, hash)) {
            if (rename(path, final) != 0)
                rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: %s", path, strerror(errno));
            else
                dr_log(DYNRAG_LOG_INFO, "index", "finished an interrupted write: %s", keep);
        } else {
            (void)unlink(path);
        }
        dr_free(path);
        dr_free(final);
    }
    closedir(d);
    if (rc == DYNRAG_OK)
        fsync_dir(dir);
    return rc;
}

/* ---- adding documents ----------------------------------------------------- */

typedef struct build_ctx {
    dr_store_writer w;
    dr_embedder *emb;   /* NULL without a dense part */
    bool learn_idf;
    int ct, ov;
    dynrag_build_stats *st;
    const dynrag_build_options *opt;
    uint64_t docs_seen, chunks_seen;
    int64_t last_progress_us;
    dr_buf body;
    struct id_list *touched; /* dynrag_index_write_group(): the main index's put ids */
} build_ctx;

static void progress(build_ctx *c, bool final)
{
    if (c->opt == NULL || c->opt->progress == NULL)
        return;
    int64_t now = dr_now_us();
    if (!final && now - c->last_progress_us < 100000)
        return;
    c->last_progress_us = now;
    c->opt->progress(c->opt->progress_user, c->docs_seen, 0, "docs");
}

/* IDF is learned from every chunk of the first 2048, then from every 4th
 * up to 16384, every 8th up to 32768, and so on (the stride doubles with
 * the count): a sample spread over the whole first build that keeps
 * learning cheap on large corpora. */
static bool idf_sample(uint64_t i)
{
    if (i < 2048)
        return true;
    uint64_t stride = 4;
    for (uint64_t limit = 16384; i >= limit && stride < ((uint64_t)1 << 40); limit *= 2)
        stride *= 2;
    return i % stride == 0;
}

static int add_chunk(build_ctx *c, int64_t doc, int ord, const char *title, size_t title_words,
                     const char *text, size_t s, size_t e, size_t words, dynrag_error *err)
{
    dr_buf_reset(&c->body);
    int rc = dr_buf_puts(&c->body, title);
    if (rc == DYNRAG_OK)
        rc = dr_buf_putc(&c->body, '\n');
    if (rc == DYNRAG_OK)
        rc = dr_buf_append(&c->body, text + s, e - s);
    if (rc != DYNRAG_OK)
        return dr_err_set(err, rc, "chunk body: %s", dynrag_strerror(rc));
    int64_t id = 0;
    rc = dr_store_add_chunk(&c->w, doc, ord, s, e, c->body.data, c->body.len,
                            title_words + words, &id, err);
    if (rc == DYNRAG_OK && c->learn_idf && idf_sample(c->chunks_seen))
        rc = dr_builtin_observe(c->emb, c->body.data, c->body.len, err);
    c->chunks_seen++;
    if (rc == DYNRAG_OK)
        c->st->chunks++;
    return rc;
}

static int on_doc(void *user, const dr_doc *d, dynrag_error *err)
{
    build_ctx *c = user;
    int64_t rowid = 0;
    bool replaced = false;
    dr_chunk_span *spans = NULL;
    size_t n = 0;
    int rc = dr_store_put_doc(&c->w, d->doc_id, d->title, d->text, d->source, &rowid, &replaced,
                              err);
    if (rc == DYNRAG_OK)
        rc = dr_chunk_text(d->text, strlen(d->text), c->ct, c->ov, &spans, &n, err);
    size_t tw = dr_text_word_count(d->title, strlen(d->title));
    if (rc == DYNRAG_OK && n == 0 && d->title[0] != '\0')
        rc = add_chunk(c, rowid, 0, d->title, tw, d->text, 0, 0, 0, err); /* title only */
    for (size_t i = 0; rc == DYNRAG_OK && i < n; i++)
        rc = add_chunk(c, rowid, (int)i, d->title, tw, d->text, spans[i].start, spans[i].end,
                       spans[i].words, err);
    dr_free(spans);
    if (rc != DYNRAG_OK) {
        if (d->line > 0)
            return dr_err_prefix(err, "%s:%ld", d->source, d->line);
        return dr_err_prefix(err, "%s", d->source);
    }
    if (replaced)
        c->st->docs_replaced++;
    else
        c->st->docs_added++;
    c->docs_seen++;
    progress(c, false);
    return DYNRAG_OK;
}

/* Embeds every chunk that has no vector yet, in id order and batches. */
static int embed_missing(build_ctx *c, dynrag_error *err)
{
    sqlite3 *db = c->w.db;
    sqlite3_stmt *st = NULL;
    int dim = c->emb->dim;
    char *texts[EMBED_BATCH];
    int64_t ids[EMBED_BATCH];
    size_t n = 0;
    float *vecs = dr_malloc((size_t)EMBED_BATCH * (size_t)dim * sizeof(float));
    int rc = DYNRAG_OK;
    if (vecs == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    if (sqlite3_prepare_v2(db,
                           "SELECT c.id, c.body FROM chunks c WHERE c.id > ?1 AND NOT EXISTS"
                           " (SELECT 1 FROM vectors v WHERE v.chunk = c.id) ORDER BY c.id LIMIT ?2",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: selecting chunks to embed: %s",
                        sqlite3_errmsg(db));
        goto cleanup;
    }
    int64_t last = 0;
    for (;;) {
        n = 0;
        sqlite3_bind_int64(st, 1, last);
        sqlite3_bind_int(st, 2, EMBED_BATCH);
        int s;
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            ids[n] = sqlite3_column_int64(st, 0);
            const char *b = (const char *)sqlite3_column_text(st, 1);
            texts[n] = dr_strdup(b ? b : "");
            if (texts[n] == NULL) {
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                break;
            }
            n++;
        }
        sqlite3_reset(st);
        if (rc == DYNRAG_OK && s != SQLITE_DONE && s != SQLITE_ROW)
            rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: reading chunks: %s",
                            sqlite3_errmsg(db));
        if (rc == DYNRAG_OK && n > 0)
            rc = dr_embed(c->emb, (const char *const *)texts, n, vecs, err);
        for (size_t i = 0; rc == DYNRAG_OK && i < n; i++)
            rc = dr_store_put_vector(&c->w, ids[i], vecs + i * (size_t)dim, dim, err);
        for (size_t i = 0; i < n; i++)
            dr_free(texts[i]);
        if (rc != DYNRAG_OK || n == 0)
            break;
        last = ids[n - 1];
    }
cleanup:
    sqlite3_finalize(st);
    dr_free(vecs);
    return rc;
}

/* Builds the FAISS index from every stored vector and writes it to path. */
static int rebuild_dense(sqlite3 *db, const char *factory, int dim, const char *path,
                         uint64_t *hash, dynrag_error *err)
{
    sqlite3_stmt *st = NULL;
    float *x = NULL;
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    dr_vec *v = NULL;
    int rc = DYNRAG_OK;
    if (sqlite3_prepare_v2(db, "SELECT chunk, v FROM vectors ORDER BY chunk", -1, &st, NULL) !=
        SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: reading vectors: %s", sqlite3_errmsg(db));
        goto cleanup;
    }
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 1) != dim * (int)sizeof(float)) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "index.db: vector of chunk %lld has %d bytes, "
                            "expected %d", (long long)sqlite3_column_int64(st, 0),
                            sqlite3_column_bytes(st, 1), dim * (int)sizeof(float));
            goto cleanup;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            float *nx = dr_realloc(x, nc * (size_t)dim * sizeof(float));
            if (nx == NULL) {
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                goto cleanup;
            }
            x = nx;
            int64_t *ni = dr_realloc(ids, nc * sizeof(*ids));
            if (ni == NULL) {
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                goto cleanup;
            }
            ids = ni;
            cap = nc;
        }
        ids[n] = sqlite3_column_int64(st, 0);
        memcpy(x + n * (size_t)dim, sqlite3_column_blob(st, 1), (size_t)dim * sizeof(float));
        n++;
    }
    if (s != SQLITE_DONE) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: reading vectors: %s", sqlite3_errmsg(db));
        goto cleanup;
    }
    rc = dr_vec_build(factory, dim, x, ids, n, &v, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    if (getenv("DYNRAG_TEST_FAIL_FAISS_WRITE")) {
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: injected failure (DYNRAG_TEST_FAIL_FAISS_WRITE)",
                        path);
        goto cleanup;
    }
    rc = dr_vec_save(v, path, hash, err);
cleanup:
    sqlite3_finalize(st);
    dr_free(x);
    dr_free(ids);
    dr_vec_free(v);
    return rc;
}

/* The state shared by add and delete: lock, connection, transaction. */
typedef struct write_session {
    const char *dir;
    int lock_fd;
    sqlite3 *db;
    bool in_tx;
    long long gen;
    char *new_dense; /* DIR/dense.faiss.<gen+1> once written */
} write_session;

/* Removes DIR/name when present; a failure other than absence is an error. */
static int remove_file(const char *dir, const char *name, dynrag_error *err)
{
    char *path = dr_asprintf("%s/%s", dir, name);
    if (path == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    int rc = DYNRAG_OK;
    if (unlink(path) != 0 && errno != ENOENT)
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: cannot remove a stale file: %s", path,
                        strerror(errno));
    dr_free(path);
    return rc;
}

/* Under the lock, before index.db is created: every file of an earlier
 * database in this folder (sidecars, SQLite's -wal/-shm/-journal) belongs
 * to it, not to the new one, and is removed. */
static int remove_stale_files(const char *dir, dynrag_error *err)
{
    static const char *const names[] = {DR_BM25_SIDECAR, "dense.faiss", "index.db-wal",
                                        "index.db-shm", "index.db-journal"};
    int rc = DYNRAG_OK;
    for (size_t i = 0; rc == DYNRAG_OK && i < DR_ARRAY_LEN(names); i++)
        rc = remove_file(dir, names[i], err);
    return rc; /* dense.faiss.* go in recover_dense() */
}

static int session_begin(write_session *ws, const char *dir, bool create, double lock_timeout_s,
                         dynrag_error *err)
{
    memset(ws, 0, sizeof(*ws));
    ws->dir = dir;
    ws->lock_fd = -1;
    int rc = DYNRAG_OK;
    char *dbpath = dr_asprintf("%s/index.db", dir);
    if (dbpath == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    if (!create && !dr_path_exists(dbpath)) {
        rc = dr_err_set(err, DYNRAG_ERR_NOTFOUND, "%s: no index here", dir);
        goto cleanup;
    }
    if (create)
        rc = dr_mkdirs(dir, err);
    if (rc == DYNRAG_OK)
        rc = lock_dir(dir, lock_timeout_s, &ws->lock_fd, err);
    if (rc == DYNRAG_OK && !dr_path_exists(dbpath))
        rc = remove_stale_files(dir, err);
    if (rc == DYNRAG_OK)
        rc = dr_store_open(dbpath, true, &ws->db, err);
    if (rc == DYNRAG_OK)
        rc = dr_store_create_schema(ws->db, err);
    if (rc == DYNRAG_OK)
        rc = recover_dense(dir, ws->db, err);
    if (rc == DYNRAG_OK)
        rc = dr_store_exec(ws->db, "BEGIN IMMEDIATE", err);
    if (rc == DYNRAG_OK) {
        ws->in_tx = true;
        long long fmt = 0;
        rc = dr_meta_get_ll(ws->db, "format_version", 0, &fmt, err);
        if (rc == DYNRAG_OK && fmt != DR_INDEX_FORMAT_VERSION)
            rc = dr_err_set(err, DYNRAG_ERR_MISMATCH, "%s: index format %lld, this version reads %d",
                            dir, fmt, DR_INDEX_FORMAT_VERSION);
    }
    if (rc == DYNRAG_OK)
        rc = dr_meta_get_ll(ws->db, "generation", 0, &ws->gen, err);
cleanup:
    dr_free(dbpath);
    return rc;
}

/*
 * After a commit, still under the lock: writes the BM25 sidecar of the new
 * generation (so readers never need to write into the folder), and turns
 * the database back to a rollback journal (journal_mode=DELETE) so that a
 * reader needs no -shm/-wal files, and so no write access to the folder.
 * Neither is an error when it fails: the old sidecar no longer matches the
 * generation and is removed (readers then build the BM25 index in memory);
 * while other connections have the database open it stays in WAL mode
 * (busy timeout 0: the writer does not wait for them).
 */
static void finish_sidecars(write_session *ws)
{
    dynrag_error e;
    dynrag_error_clear(&e);
    dr_bm25 *bm = NULL;
    if (dr_bm25_rebuild(ws->db, ws->dir, &bm, &e) != DYNRAG_OK) {
        dr_log(DYNRAG_LOG_WARN, "index", "%s: BM25 sidecar not written: %s", ws->dir,
               dynrag_errmsg(&e));
    } else {
        dr_bm25_info info;
        dr_bm25_get_info(bm, &info);
        if (!info.sidecar_written) {
            dynrag_error ignored;
            (void)remove_file(ws->dir, DR_BM25_SIDECAR, &ignored);
        }
    }
    dr_bm25_free(bm);
    sqlite3_busy_timeout(ws->db, 0);
    if (sqlite3_exec(ws->db, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK)
        dr_log(DYNRAG_LOG_INFO, "index",
               "%s: index.db stays in WAL mode while it is open "
               "elsewhere: %s",
               ws->dir, sqlite3_errmsg(ws->db));
}

/* Fills out[33] with 128 random bits as 32 hex digits (getrandom; time,
 * pid and an address mixed when it is unavailable). */
static void random_hex(char out[33])
{
    uint8_t b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t r = getrandom(b + got, sizeof(b) - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got < sizeof(b)) {
        static _Atomic uint64_t calls;
        uint64_t seed[3] = {(uint64_t)dr_now_us(), (uint64_t)getpid(), ++calls};
        uint64_t h1 = dr_hash64(seed, sizeof(seed), 0x243f6a8885a308d3ULL);
        uint64_t h2 = dr_hash64(seed, sizeof(seed), (uint64_t)(uintptr_t)out);
        memcpy(b, &h1, 8);
        memcpy(b + 8, &h2, 8);
    }
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/*
 * Steps 2 (generation) and 3 of the protocol, inside the transaction:
 * meta generation G+1, meta group_write (the write id: `group_write` when
 * given, the id shared by every index of one dynrag_index_write_group()
 * call, else a fresh random one), and, when dim > 0, the FAISS index of
 * the new state written to DIR/dense.faiss.<G+1> with its hash in meta
 * dense_hash. Nothing is committed; on failure session_end() rolls back and
 * removes the new FAISS file.
 */
static int session_prepare(write_session *ws, const char *factory, int dim,
                           const char *group_write, dynrag_error *err)
{
    long long gen = ws->gen + 1;
    char own[33];
    if (group_write == NULL) {
        random_hex(own);
        group_write = own;
    }
    int rc = dr_meta_set_ll(ws->db, "generation", gen, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_set(ws->db, "group_write", group_write, err);
    if (rc == DYNRAG_OK && dim > 0) {
        ws->new_dense = dr_asprintf("%s/dense.faiss.%lld", ws->dir, gen);
        if (ws->new_dense == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        uint64_t hash = 0;
        rc = rebuild_dense(ws->db, factory, dim, ws->new_dense, &hash, err);
        if (rc == DYNRAG_OK) {
            char hex[32];
            snprintf(hex, sizeof(hex), "%016" PRIx64, hash);
            rc = dr_meta_set(ws->db, "dense_hash", hex, err);
        }
    }
    return rc;
}

/* Step 4: COMMIT of a prepared session. */
static int session_commit_tx(write_session *ws, dynrag_error *err)
{
    int rc = dr_store_exec(ws->db, "COMMIT", err);
    if (rc == DYNRAG_OK)
        ws->in_tx = false;
    return rc;
}

/* Steps 5 and 6 after a COMMIT: the new FAISS file takes its final name
 * and the sidecars are written. Never fails: a failed rename is finished
 * by the next writer (readers take dense.faiss.<G> meanwhile). */
static void session_publish(write_session *ws)
{
    if (ws->new_dense) {
        char *final = dr_asprintf("%s/dense.faiss", ws->dir);
        if (final == NULL || rename(ws->new_dense, final) != 0)
            /* Committed: readers use dense.faiss.<gen> until the next writer
             * finishes the rename. */
            dr_log(DYNRAG_LOG_WARN, "index", "%s: rename failed: %s", ws->new_dense,
                   strerror(errno));
        else
            fsync_dir(ws->dir);
        dr_free(final);
        dr_free(ws->new_dense);
        ws->new_dense = NULL;
    }
    finish_sidecars(ws);
}

/* Steps 2 to 6 of the protocol for one index. dim 0: no dense part. */
static int session_commit(write_session *ws, const char *factory, int dim, dynrag_error *err)
{
    int rc = session_prepare(ws, factory, dim, NULL, err);
    if (rc != DYNRAG_OK)
        return rc;
    test_kill_point("before_commit");
    rc = session_commit_tx(ws, err);
    if (rc != DYNRAG_OK)
        return rc;
    test_kill_point("after_commit");
    session_publish(ws);
    return DYNRAG_OK;
}

static void session_end(write_session *ws)
{
    if (ws->in_tx)
        (void)dr_store_exec(ws->db, "ROLLBACK", NULL);
    if (ws->new_dense) {
        (void)unlink(ws->new_dense);
        dr_free(ws->new_dense);
    }
    sqlite3_close(ws->db);
    if (ws->lock_fd >= 0)
        close(ws->lock_fd); /* releases the flock */
    memset(ws, 0, sizeof(*ws));
    ws->lock_fd = -1;
}

/* Reads a meta text value into buf ("" when absent). */
static int meta_str(sqlite3 *db, const char *key, char *buf, size_t size, bool *present,
                    dynrag_error *err)
{
    char *v = NULL;
    int rc = dr_meta_get(db, key, &v, err);
    if (present)
        *present = v != NULL;
    dr_strlcpy(buf, v ? v : "", size);
    dr_free(v);
    return rc;
}

/* Public: see dynrag/index.h. */
void dynrag_build_options_init(dynrag_build_options *o)
{
    memset(o, 0, sizeof(*o));
    o->embedder.kind = NULL;
    o->embedder.base_url = NULL;
    o->embedder.model = NULL;
    o->embedder.api_key = NULL;
    o->faiss_factory = NULL;
    o->chunk_tokens = DYNRAG_CHUNK_RECORDED;
    o->chunk_overlap = DYNRAG_CHUNK_RECORDED;
    o->progress = NULL;
    o->progress_user = NULL;
    o->lock_timeout_s = INFINITY;
}

/* DYNRAG_ERR_INVALID naming the lock_timeout_s field unless it is >= 0. */
static int check_lock_timeout(double t, dynrag_error *err)
{
    if (!(t >= 0))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "lock_timeout_s %g: expected seconds >= 0 (INFINITY: no limit)", t);
    return DYNRAG_OK;
}

/* The checks of dynrag_build_options that need no index. */
static int check_build_options(const dynrag_build_options *opt, dynrag_error *err)
{
    if (check_lock_timeout(opt->lock_timeout_s, err) != DYNRAG_OK)
        return DYNRAG_ERR_INVALID;
    if (opt->chunk_tokens != DYNRAG_CHUNK_RECORDED && opt->chunk_tokens < 1)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "chunk_tokens %d: expected 1 to 100000 (or DYNRAG_CHUNK_RECORDED)",
                          opt->chunk_tokens);
    if (opt->chunk_overlap != DYNRAG_CHUNK_RECORDED && opt->chunk_overlap < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "chunk_overlap %d: expected 0 to chunk_tokens - 1 (or "
                          "DYNRAG_CHUNK_RECORDED)",
                          opt->chunk_overlap);
    return DYNRAG_OK;
}

/* ---- one index's write, in phases ------------------------------------------ */

/* An add to one index: its session (lock, connection, open transaction),
 * its embedder and document writer. Phases: index_write_open(), then
 * documents through ctx.w / on_doc(), index_write_prepare(), then
 * session_commit_tx() and session_publish(); index_write_close() always. */
typedef struct index_write {
    write_session ws;
    build_ctx c;
    char factory[128]; /* the FAISS factory the commit uses */
    bool dense;
    bool began;        /* ws holds a session to end */
    bool committed;
} index_write;

/*
 * Opens the write of one index in `dir` (created when absent and `create`):
 * takes its lock, begins the transaction, and checks, before anything is
 * written, that opt agrees with what the index records (dense or not, the
 * embedder identity, chunk parameters); loads the builtin embedder's IDF
 * state. stats are where on_doc() counts; opt must outlive the write. On
 * failure the index is unchanged and index_write_close() still runs.
 */
static int index_write_open(index_write *iw, const char *dir, bool create,
                            const dynrag_build_options *opt, dynrag_build_stats *stats,
                            dynrag_error *err)
{
    memset(iw, 0, sizeof(*iw));
    build_ctx *c = &iw->c;
    c->st = stats;
    c->opt = opt;
    iw->began = true;
    write_session *ws = &iw->ws;
    int rc = session_begin(ws, dir, create, opt->lock_timeout_s, err);
    char rec_emb[256] = "", rec_factory[128] = "";
    bool have_emb = false;
    long long rec_dim = 0, rec_ct = 0, rec_ov = 0;
    if (rc == DYNRAG_OK)
        rc = meta_str(ws->db, "embedder", rec_emb, sizeof(rec_emb), &have_emb, err);
    if (rc == DYNRAG_OK)
        rc = meta_str(ws->db, "faiss_factory", rec_factory, sizeof(rec_factory), NULL, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_get_ll(ws->db, "dim", 0, &rec_dim, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_get_ll(ws->db, "chunk_tokens", 200, &rec_ct, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_get_ll(ws->db, "chunk_overlap", 40, &rec_ov, err);
    if (rc != DYNRAG_OK)
        return rc;
    c->ct = opt->chunk_tokens != DYNRAG_CHUNK_RECORDED ? opt->chunk_tokens : (int)rec_ct;
    c->ov = opt->chunk_overlap != DYNRAG_CHUNK_RECORDED
                ? opt->chunk_overlap
                : (int)DR_MIN(rec_ov, (long long)c->ct - 1);
    if (c->ct < 1 || c->ct > 100000 || c->ov < 0 || c->ov >= c->ct)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "chunk tokens must be 1 to 100000 and overlap 0 to tokens - 1 "
                          "(got %d and %d)", c->ct, c->ov);
    iw->dense = !opt->no_dense;
    if (have_emb && (rec_emb[0] != '\0') != iw->dense)
        return dr_err_set(err, DYNRAG_ERR_MISMATCH,
                          iw->dense ? "%s was built without a dense part (--no-dense); add with "
                                      "--no-dense or build a new index"
                                    : "%s has a dense part; adding without embedding (--no-dense) "
                                      "would leave chunks without vectors",
                          dir);
    dr_strlcpy(iw->factory,
               opt->faiss_factory ? opt->faiss_factory : rec_factory[0] ? rec_factory : "Flat",
               sizeof(iw->factory));
    if (iw->dense) {
        rc = dr_index_embedder_create(&opt->embedder, (int)rec_dim, &c->emb, err);
        if (rc != DYNRAG_OK)
            return rc;
        if (have_emb && strcmp(rec_emb, c->emb->identity) != 0)
            return dr_err_set(err, DYNRAG_ERR_MISMATCH,
                              "%s was built with embedder '%s', not '%s'", dir, rec_emb,
                              c->emb->identity);
        if (dr_embedder_is_builtin(c->emb)) {
            sqlite3_stmt *q = NULL;
            if (sqlite3_prepare_v2(ws->db, "SELECT blob FROM embedder_state WHERE id = 1", -1, &q,
                                   NULL) != SQLITE_OK)
                return dr_err_set(err, DYNRAG_ERR_DB, "index.db: %s", sqlite3_errmsg(ws->db));
            if (sqlite3_step(q) == SQLITE_ROW)
                rc = dr_builtin_state_load(c->emb, sqlite3_column_blob(q, 0),
                                           (size_t)sqlite3_column_bytes(q, 0), err);
            else
                c->learn_idf = true;
            sqlite3_finalize(q);
            if (rc != DYNRAG_OK)
                return rc;
        }
    }
    return dr_store_writer_init(&c->w, ws->db, err);
}

/*
 * After the documents: learns and saves the builtin IDF (first build),
 * embeds every chunk without a vector, writes totals and the recorded
 * settings to meta, and prepares the commit (session_prepare(): new
 * generation, write id `group_write` (NULL: a fresh one), the new FAISS
 * file). Nothing is committed yet.
 */
static int index_write_prepare(index_write *iw, const char *group_write, dynrag_error *err)
{
    build_ctx *c = &iw->c;
    write_session *ws = &iw->ws;
    int rc = DYNRAG_OK;
    if (c->learn_idf) {
        void *blob = NULL;
        size_t len = 0;
        rc = dr_builtin_finish_idf(c->emb, err);
        if (rc == DYNRAG_OK)
            rc = dr_builtin_state_save(c->emb, &blob, &len, err);
        if (rc == DYNRAG_OK) {
            sqlite3_stmt *q = NULL;
            if (sqlite3_prepare_v2(ws->db, "INSERT OR REPLACE INTO embedder_state(id, blob)"
                                           " VALUES(1, ?1)", -1, &q, NULL) != SQLITE_OK ||
                sqlite3_bind_blob(q, 1, blob, (int)len, SQLITE_STATIC) != SQLITE_OK ||
                sqlite3_step(q) != SQLITE_DONE)
                rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: saving embedder state: %s",
                                sqlite3_errmsg(ws->db));
            sqlite3_finalize(q);
        }
        dr_free(blob);
    }
    if (rc == DYNRAG_OK && iw->dense)
        rc = embed_missing(c, err);
    if (rc == DYNRAG_OK)
        rc = dr_store_writer_save_totals(&c->w, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_set(ws->db, "embedder", iw->dense ? c->emb->identity : "", err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_set_ll(ws->db, "dim", iw->dense ? c->emb->dim : 0, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_set(ws->db, "faiss_factory", iw->dense ? iw->factory : "", err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_set_ll(ws->db, "chunk_tokens", c->ct, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_set_ll(ws->db, "chunk_overlap", c->ov, err);
    if (rc != DYNRAG_OK)
        return rc;
    c->st->total_docs = (uint64_t)c->w.docs;
    c->st->total_chunks = (uint64_t)c->w.chunks;
    dr_store_writer_fini(&c->w); /* statements must be finished before COMMIT */
    return session_prepare(ws, iw->factory, iw->dense ? c->emb->dim : 0, group_write, err);
}

/* Ends the write: rolls back what is not committed, releases the lock and
 * frees everything. Accepts a write that was never opened. */
static void index_write_close(index_write *iw)
{
    if (!iw->began)
        return;
    dr_store_writer_fini(&iw->c.w);
    dr_buf_free(&iw->c.body);
    dr_embedder_free(iw->c.emb);
    session_end(&iw->ws);
    iw->began = false;
}

int dynrag_index_add(const char *dir, const char *const *inputs, size_t n_inputs,
                     const dynrag_build_options *opt, dynrag_build_stats *stats,
                     dynrag_error *err)
{
    dynrag_build_options defaults;
    dynrag_build_options_init(&defaults);
    dynrag_build_stats local_stats;
    dynrag_build_stats *st = stats ? stats : &local_stats;
    memset(st, 0, sizeof(*st));
    if (opt == NULL)
        opt = &defaults;
    if (dir == NULL || dir[0] == '\0' || (n_inputs > 0 && inputs == NULL))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "index: missing folder or inputs");
    int rc = check_build_options(opt, err);
    if (rc != DYNRAG_OK)
        return rc;
    int64_t t0 = dr_now_us();
    index_write iw;
    rc = index_write_open(&iw, dir, true, opt, st, err);
    for (size_t i = 0; rc == DYNRAG_OK && i < n_inputs; i++)
        rc = dr_ingest_input(inputs[i], opt->skip_bad, on_doc, &iw.c, &st->bad_inputs, err);
    progress(&iw.c, true);
    if (rc == DYNRAG_OK)
        rc = index_write_prepare(&iw, NULL, err);
    if (rc == DYNRAG_OK) {
        test_kill_point("before_commit");
        rc = session_commit_tx(&iw.ws, err);
    }
    if (rc == DYNRAG_OK) {
        test_kill_point("after_commit");
        session_publish(&iw.ws);
    }
    index_write_close(&iw);
    st->seconds = (double)(dr_now_us() - t0) / 1e6;
    return rc;
}

int dynrag_index_delete(const char *dir, const char *const *doc_ids, size_t n,
                        size_t *n_missing, dynrag_error *err)
{
    return dynrag_index_delete_opt(dir, doc_ids, n, NULL, n_missing, err);
}

int dynrag_index_delete_opt(const char *dir, const char *const *doc_ids, size_t n,
                            const dynrag_build_options *opt, size_t *n_missing, dynrag_error *err)
{
    if (n_missing)
        *n_missing = 0;
    if (dir == NULL || (n > 0 && doc_ids == NULL))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "index delete: missing folder or ids");
    write_session ws;
    dr_store_writer w;
    memset(&w, 0, sizeof(w));
    char factory[128] = "";
    long long dim = 0;
    double lock_timeout_s = opt ? opt->lock_timeout_s : INFINITY;
    if (check_lock_timeout(lock_timeout_s, err) != DYNRAG_OK)
        return DYNRAG_ERR_INVALID;
    int rc = session_begin(&ws, dir, false, lock_timeout_s, err);
    if (rc == DYNRAG_OK)
        rc = meta_str(ws.db, "faiss_factory", factory, sizeof(factory), NULL, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_get_ll(ws.db, "dim", 0, &dim, err);
    if (rc == DYNRAG_OK)
        rc = dr_store_writer_init(&w, ws.db, err);
    for (size_t i = 0; rc == DYNRAG_OK && i < n; i++) {
        bool found = false;
        rc = dr_store_delete_doc(&w, doc_ids[i], &found, err);
        if (rc == DYNRAG_OK && !found && n_missing)
            (*n_missing)++;
    }
    if (rc == DYNRAG_OK)
        rc = dr_store_writer_save_totals(&w, err);
    dr_store_writer_fini(&w);
    if (rc == DYNRAG_OK)
        rc = session_commit(&ws, factory[0] ? factory : "Flat", (int)dim, err);
    session_end(&ws);
    return rc;
}

/* ---- several indexes of one document set ------------------------------------ */

/* A growable list of owned strings. */
typedef struct id_list {
    char **v;
    size_t n, cap;
} id_list;

static int id_list_push(id_list *l, const char *s, dynrag_error *err)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 256;
        char **nv = dr_realloc(l->v, nc * sizeof(*nv));
        if (nv == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n] = dr_strdup(s);
    if (l->v[l->n] == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    l->n++;
    return DYNRAG_OK;
}

static void id_list_free(id_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        dr_free(l->v[i]);
    dr_free(l->v);
    memset(l, 0, sizeof(*l));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts the list and drops repeated strings. */
static void id_list_sort_unique(id_list *l)
{
    if (l->n < 2)
        return;
    qsort(l->v, l->n, sizeof(*l->v), cmp_str);
    size_t out = 1;
    for (size_t i = 1; i < l->n; i++) {
        if (strcmp(l->v[i], l->v[out - 1]) == 0)
            dr_free(l->v[i]);
        else
            l->v[out++] = l->v[i];
    }
    l->n = out;
}

/* on_doc() records the id of every document the main index's write puts. */
static int on_main_doc(void *user, const dr_doc *d, dynrag_error *err)
{
    index_write *iw = user;
    int rc = on_doc(&iw->c, d, err);
    if (rc == DYNRAG_OK)
        rc = id_list_push(iw->c.touched, d->doc_id, err);
    return rc;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "";
}

/*
 * Finds which documents of the index `sec` (connection of its open
 * transaction) differ from those of `main_db` (the main index's open
 * transaction, with this call's writes): ids in the main index whose
 * title or text differ, or that `sec` lacks, go to *copy; ids only in
 * `sec` go to *del. A merge of both `docs` tables in doc_id order
 * (BINARY collation on both sides, the order strcmp() gives).
 */
static int diff_docs(sqlite3 *main_db, sqlite3 *sec, id_list *copy, id_list *del,
                     dynrag_error *err)
{
    static const char *sql = "SELECT doc_id, title, text FROM docs ORDER BY doc_id";
    sqlite3_stmt *a = NULL, *b = NULL;
    int rc = DYNRAG_OK;
    if (sqlite3_prepare_v2(main_db, sql, -1, &a, NULL) != SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "main index.db: reading documents: %s",
                        sqlite3_errmsg(main_db));
        goto cleanup;
    }
    if (sqlite3_prepare_v2(sec, sql, -1, &b, NULL) != SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: reading documents: %s",
                        sqlite3_errmsg(sec));
        goto cleanup;
    }
    int sa = sqlite3_step(a), sb = sqlite3_step(b);
    while (rc == DYNRAG_OK && (sa == SQLITE_ROW || sb == SQLITE_ROW)) {
        int c = sa != SQLITE_ROW   ? 1
                : sb != SQLITE_ROW ? -1
                                   : strcmp(col_text(a, 0), col_text(b, 0));
        if (c < 0) {
            rc = id_list_push(copy, col_text(a, 0), err);
            sa = sqlite3_step(a);
        } else if (c > 0) {
            rc = id_list_push(del, col_text(b, 0), err);
            sb = sqlite3_step(b);
        } else {
            if (strcmp(col_text(a, 1), col_text(b, 1)) != 0 ||
                strcmp(col_text(a, 2), col_text(b, 2)) != 0)
                rc = id_list_push(copy, col_text(a, 0), err);
            sa = sqlite3_step(a);
            sb = sqlite3_step(b);
        }
    }
    if (rc == DYNRAG_OK && sa != SQLITE_DONE)
        rc = dr_err_set(err, DYNRAG_ERR_DB, "main index.db: reading documents: %s",
                        sqlite3_errmsg(main_db));
    if (rc == DYNRAG_OK && sb != SQLITE_DONE)
        rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: reading documents: %s",
                        sqlite3_errmsg(sec));
cleanup:
    sqlite3_finalize(a);
    sqlite3_finalize(b);
    return rc;
}

/*
 * Gives the index of `sec` the documents `ids` (sorted, unique) as the
 * main index's open transaction `main_db` has them: each id the main index
 * has is put (title, text and source copied, then chunked and embedded by
 * sec's embedder), each it lacks is deleted from sec (counted in
 * docs_deleted when it was there).
 */
static int copy_docs(sqlite3 *main_db, index_write *sec, char *const *ids, size_t n,
                     dynrag_error *err)
{
    sqlite3_stmt *q = NULL;
    int rc = DYNRAG_OK;
    if (sqlite3_prepare_v2(main_db, "SELECT title, text, source FROM docs WHERE doc_id = ?1", -1,
                           &q, NULL) != SQLITE_OK)
        return dr_err_set(err, DYNRAG_ERR_DB, "main index.db: reading documents: %s",
                          sqlite3_errmsg(main_db));
    for (size_t i = 0; rc == DYNRAG_OK && i < n; i++) {
        sqlite3_bind_text(q, 1, ids[i], -1, SQLITE_STATIC);
        int s = sqlite3_step(q);
        if (s == SQLITE_ROW) {
            dr_doc d = {ids[i], col_text(q, 0), col_text(q, 1), col_text(q, 2), 0};
            rc = on_doc(&sec->c, &d, err);
        } else if (s == SQLITE_DONE) {
            bool found = false;
            rc = dr_store_delete_doc(&sec->c.w, ids[i], &found, err);
            if (rc == DYNRAG_OK && found)
                sec->c.st->docs_deleted++;
        } else {
            rc = dr_err_set(err, DYNRAG_ERR_DB, "main index.db: reading document '%s': %s",
                            ids[i], sqlite3_errmsg(main_db));
        }
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
    }
    sqlite3_finalize(q);
    return rc;
}

/*
 * Brings secondary index `sec` to the main index's documents (main_w is
 * prepared: its totals are in its stats). When `sec`
 * recorded the main index's last write id (`in_step`), only this call's
 * `touched` ids are copied; otherwise (an interrupted or single-index
 * write in between, a new or older index) every document is compared and
 * the differences are copied or deleted, and when sec already held
 * documents that is logged (warning), naming the counts.
 */
static int sync_secondary(index_write *main_w, index_write *sec, const id_list *touched,
                          bool in_step, const char *label, dynrag_error *err)
{
    if (in_step)
        return copy_docs(main_w->ws.db, sec, touched->v, touched->n, err);
    id_list copy = {0}, del = {0};
    long long had = sec->c.w.docs;
    int rc = diff_docs(main_w->ws.db, sec->ws.db, &copy, &del, err);
    if (rc == DYNRAG_OK && had > 0)
        dr_log(DYNRAG_LOG_WARN, "index",
               "%s (%s): was out of step with the main index %s (%lld docs here, %lld there): "
               "re-indexing %zu documents from it and deleting %zu it does not have",
               label ? label : "index", sec->ws.dir, main_w->ws.dir, had,
               (long long)main_w->c.st->total_docs, copy.n, del.n);
    if (rc == DYNRAG_OK)
        rc = copy_docs(main_w->ws.db, sec, copy.v, copy.n, err);
    if (rc == DYNRAG_OK)
        rc = copy_docs(main_w->ws.db, sec, del.v, del.n, err);
    id_list_free(&copy);
    id_list_free(&del);
    return rc;
}

/* Prefixes err with the target's name and folder when the write has
 * several targets (one target's errors read as dynrag_index_add()'s). */
static int target_error(const dynrag_index_target *t, size_t n_targets, dynrag_error *err)
{
    if (n_targets < 2)
        return err ? err->status : DYNRAG_OK;
    if (t->name)
        return dr_err_prefix(err, "%s (%s)", t->name, t->dir);
    return dr_err_prefix(err, "%s", t->dir);
}

/* Appends ` (what)` to err's message, keeping its status. */
static int err_append(dynrag_error *err, int rc, const char *what)
{
    if (err == NULL)
        return rc;
    char msg[sizeof(err->msg)];
    dr_strlcpy(msg, err->msg, sizeof(msg));
    return dr_err_set(err, rc, "%s (%s)", msg, what);
}

int dynrag_index_write_group(const dynrag_index_target *targets, size_t n_targets,
                             const char *const *deletes, size_t n_deletes,
                             const char *const *inputs, size_t n_inputs,
                             const dynrag_build_options *opt, dynrag_build_stats *stats,
                             dynrag_error *err)
{
    dynrag_build_options defaults;
    dynrag_build_options_init(&defaults);
    if (opt == NULL)
        opt = &defaults;
    if (targets == NULL || n_targets == 0 || n_targets > DYNRAG_INDEX_MAX_TARGETS ||
        (n_inputs > 0 && inputs == NULL) || (n_deletes > 0 && deletes == NULL))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "index group write: 1 to %d targets, and the inputs and ids given",
                          DYNRAG_INDEX_MAX_TARGETS);
    for (size_t i = 0; i < n_targets; i++) {
        if (targets[i].dir == NULL || targets[i].dir[0] == '\0')
            return dr_err_set(err, DYNRAG_ERR_INVALID, "index group write: target %zu has no "
                              "folder", i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(targets[i].dir, targets[j].dir) == 0 ||
                dr_same_file(targets[i].dir, targets[j].dir))
                return dr_err_set(err, DYNRAG_ERR_INVALID,
                                  "index group write: targets %zu and %zu are one folder (%s)", j,
                                  i, targets[i].dir);
    }
    int rc = check_build_options(opt, err);
    if (rc != DYNRAG_OK)
        return rc;
    int64_t t0 = dr_now_us();
    index_write *iw = dr_calloc(n_targets, sizeof(*iw));
    dynrag_build_options *opts = dr_calloc(n_targets, sizeof(*opts));
    dynrag_build_stats *st = stats ? stats : dr_calloc(n_targets, sizeof(*st));
    id_list touched = {0};
    size_t n_committed = 0;
    if (iw == NULL || opts == NULL || st == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    memset(st, 0, n_targets * sizeof(*st));
    /* 1. Every index: lock, transaction, compatibility checks. Nothing is
     * written before all have passed them. The main index's chunking
     * applies to all, so a document is cut the same way everywhere. */
    char main_prev[64] = "";
    bool main_has_prev = false;
    for (size_t i = 0; i < n_targets; i++) {
        opts[i] = *opt;
        opts[i].embedder = targets[i].embedder;
        if (i > 0) {
            opts[i].progress = NULL;
            opts[i].progress_user = NULL;
            opts[i].chunk_tokens = iw[0].c.ct;
            opts[i].chunk_overlap = iw[0].c.ov;
        }
        rc = index_write_open(&iw[i], targets[i].dir, i > 0 || n_inputs > 0, &opts[i], &st[i],
                              err);
        if (rc != DYNRAG_OK) {
            target_error(&targets[i], n_targets, err);
            goto cleanup;
        }
    }
    rc = meta_str(iw[0].ws.db, "group_write", main_prev, sizeof(main_prev), &main_has_prev, err);
    /* 2. The main index: deletions, then the inputs (read once). */
    iw[0].c.touched = &touched;
    for (size_t i = 0; rc == DYNRAG_OK && i < n_deletes; i++) {
        bool found = false;
        rc = dr_store_delete_doc(&iw[0].c.w, deletes[i], &found, err);
        if (rc == DYNRAG_OK && found)
            st[0].docs_deleted++;
        if (rc == DYNRAG_OK)
            rc = id_list_push(&touched, deletes[i], err);
    }
    for (size_t i = 0; rc == DYNRAG_OK && i < n_inputs; i++)
        rc = dr_ingest_input(inputs[i], opt->skip_bad, on_main_doc, &iw[0], &st[0].bad_inputs,
                             err);
    progress(&iw[0].c, true);
    char group_write[33];
    random_hex(group_write);
    if (rc == DYNRAG_OK)
        rc = index_write_prepare(&iw[0], group_write, err);
    if (rc != DYNRAG_OK) {
        target_error(&targets[0], n_targets, err);
        goto cleanup;
    }
    id_list_sort_unique(&touched);
    /* 3. Every other index gets the main index's documents as they now are
     * (uncommitted), and its new state is prepared. */
    for (size_t i = 1; i < n_targets; i++) {
        char prev[64] = "";
        bool has_prev = false;
        rc = meta_str(iw[i].ws.db, "group_write", prev, sizeof(prev), &has_prev, err);
        bool in_step = rc == DYNRAG_OK && main_has_prev && has_prev && strcmp(prev, main_prev) == 0;
        if (rc == DYNRAG_OK)
            rc = sync_secondary(&iw[0], &iw[i], &touched, in_step, targets[i].name, err);
        if (rc == DYNRAG_OK)
            rc = index_write_prepare(&iw[i], group_write, err);
        if (rc != DYNRAG_OK) {
            target_error(&targets[i], n_targets, err);
            goto cleanup;
        }
    }
    /* 4. COMMIT the others, then the main index: back to back, nothing
     * between them but the test hook. */
    for (size_t k = 0; k < n_targets; k++) {
        size_t i = (k + 1) % n_targets; /* 1, 2, ..., n-1, then 0 */
        if (k == 0)
            test_kill_point("before_commit");
        else
            test_kill_point("group_between_commits");
        rc = session_commit_tx(&iw[i].ws, err);
        if (rc != DYNRAG_OK) {
            target_error(&targets[i], n_targets, err);
            break;
        }
        iw[i].committed = true;
        n_committed++;
    }
    if (rc == DYNRAG_OK)
        test_kill_point("after_commit");
    /* 5. Sidecars of every committed index. */
    for (size_t i = 0; i < n_targets; i++)
        if (iw[i].committed)
            session_publish(&iw[i].ws);
cleanup:
    if (rc != DYNRAG_OK && n_targets > 1)
        err_append(err, rc,
                   n_committed == 0
                       ? "no index changed"
                       : "the main index is unchanged; the embedder indexes committed before the "
                         "failure are ahead of it until the next write to the group, which "
                         "brings them back in step");
    for (size_t i = 0; iw != NULL && i < n_targets; i++)
        index_write_close(&iw[i]);
    for (size_t i = 0; st != NULL && i < n_targets; i++)
        st[i].seconds = (double)(dr_now_us() - t0) / 1e6;
    id_list_free(&touched);
    dr_free(iw);
    dr_free(opts);
    if (st != stats)
        dr_free(st);
    return rc;
}
