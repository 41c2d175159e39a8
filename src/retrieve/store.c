/* store.c - SQLite schema, metadata and document writes of an index. */
#include "retrieve/store.h"

#include "core/text.h"
#include "core/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int db_err(sqlite3 *db, dynrag_error *err, const char *what)
{
    return dr_err_set(err, DYNRAG_ERR_DB, "index.db: %s: %s", what, sqlite3_errmsg(db));
}

/* True when the folder holding path can be written (to create the -shm,
 * -wal or -journal files SQLite may need next to it). */
static bool folder_writable(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return access(".", W_OK) == 0;
    char dir[4096]; /* no allocation: this check has no way to report one failing */
    size_t n = (size_t)(slash - path) + 1;
    if (n >= sizeof(dir))
        return true; /* longer than any path the kernel takes: let SQLite say */
    memcpy(dir, path, n);
    dir[n] = '\0';
    return access(dir, W_OK) == 0;
}

/* "file:" URI of path with the immutable flag: the file is read with no
 * locks and no -shm/-wal/-journal files (caller frees). */
static char *immutable_uri(const char *path)
{
    dr_buf b = {0};
    int rc = dr_buf_puts(&b, "file:");
    for (const char *p = path; rc == DYNRAG_OK && *p; p++) {
        if (*p == '%' || *p == '?' || *p == '#')
            rc = dr_buf_printf(&b, "%%%02X", (unsigned char)*p);
        else
            rc = dr_buf_putc(&b, *p);
    }
    if (rc == DYNRAG_OK)
        rc = dr_buf_puts(&b, "?mode=ro&immutable=1");
    if (rc != DYNRAG_OK) {
        dr_buf_free(&b);
        return NULL;
    }
    return dr_buf_take(&b);
}

/* ---- folder-pinned connections ---------------------------------------------- */

/*
 * The "dynrag-dirfd" VFS: the default one (a byte copy, so its methods and
 * their state are the same) except that it keeps a name under
 * /proc/self/fd/ as it is. The default xFullPathname resolves symbolic
 * links, which would turn /proc/self/fd/N/index.db back into the folder's
 * path at the time of the open; kept, every name SQLite derives from it
 * (-wal, -shm, -journal) stays in the folder that descriptor N holds.
 */
static sqlite3_vfs fd_vfs;
static sqlite3_vfs *fd_vfs_base;
static bool fd_vfs_ok;
static pthread_once_t fd_vfs_once = PTHREAD_ONCE_INIT;

#define PROC_FD "/proc/self/fd/"

static int fd_full_pathname(sqlite3_vfs *vfs, const char *name, int n_out, char *out)
{
    (void)vfs;
    if (strncmp(name, PROC_FD, strlen(PROC_FD)) == 0) {
        size_t len = strlen(name);
        if (n_out < 1 || len >= (size_t)n_out)
            return SQLITE_CANTOPEN;
        memcpy(out, name, len + 1);
        return SQLITE_OK;
    }
    return fd_vfs_base->xFullPathname(fd_vfs_base, name, n_out, out);
}

static void fd_vfs_init(void)
{
    struct stat st;
    fd_vfs_base = sqlite3_vfs_find(NULL);
    if (fd_vfs_base == NULL || stat(PROC_FD, &st) != 0)
        return;
    fd_vfs = *fd_vfs_base;
    fd_vfs.pNext = NULL;
    fd_vfs.zName = "dynrag-dirfd";
    fd_vfs.xFullPathname = fd_full_pathname;
    fd_vfs_ok = sqlite3_vfs_register(&fd_vfs, 0) == SQLITE_OK;
}

static int store_open(const char *path, bool writable, int dir_fd, sqlite3 **out,
                      dynrag_error *err)
{
    char pinned[64];
    const char *vfs = NULL;
    if (dir_fd >= 0) {
        pthread_once(&fd_vfs_once, fd_vfs_init);
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        int n = snprintf(pinned, sizeof(pinned), PROC_FD "%d/%s", dir_fd, base);
        if (fd_vfs_ok && n > 0 && (size_t)n < sizeof(pinned))
            vfs = "dynrag-dirfd";
    }
    const char *open_path = vfs ? pinned : path;
    sqlite3 *db = NULL;
    *out = NULL;
    int flags = writable ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY;
    flags |= SQLITE_OPEN_NOMUTEX;
    /* A reader of a folder it cannot write (another user's index, a
     * read-only mount) opens the file immutable: SQLite would otherwise
     * need to create -shm/-wal files there for a WAL-mode database. No
     * writer can change an index in a folder this process cannot write
     * (writers need DIR/lock), short of another, privileged user. */
    char *uri = NULL;
    if (!writable && !folder_writable(open_path)) {
        uri = immutable_uri(open_path);
        if (uri == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        flags |= SQLITE_OPEN_URI;
    }
    int rc = sqlite3_open_v2(uri ? uri : open_path, &db, flags, vfs);
    dr_free(uri);
    if (rc != SQLITE_OK) {
        int st = rc == SQLITE_CANTOPEN ? DYNRAG_ERR_NOTFOUND : DYNRAG_ERR_DB;
        dr_err_set(err, st, "%s: cannot open: %s", path,
                   db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return st;
    }
    sqlite3_busy_timeout(db, 10000);
    if (writable) {
        rc = dr_store_exec(db, "PRAGMA journal_mode=WAL", err);
        if (rc == DYNRAG_OK)
            rc = dr_store_exec(db, "PRAGMA synchronous=FULL", err);
        /* a large page cache keeps a big transaction from spilling early */
        if (rc == DYNRAG_OK)
            rc = dr_store_exec(db, "PRAGMA cache_size=-131072", err);
    } else {
        rc = dr_store_exec(db, "PRAGMA query_only=1", err);
    }
    if (rc != DYNRAG_OK) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return DYNRAG_OK;
}

int dr_store_open(const char *path, bool writable, sqlite3 **out, dynrag_error *err)
{
    return store_open(path, writable, -1, out, err);
}

int dr_store_open_pinned(const char *path, int dir_fd, sqlite3 **out, dynrag_error *err)
{
    return store_open(path, false, dir_fd, out, err);
}

int dr_store_exec(sqlite3 *db, const char *sql, dynrag_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = dr_err_set(err, DYNRAG_ERR_DB, "index.db: %.60s: %s", sql,
                            msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return rc;
    }
    return DYNRAG_OK;
}

int dr_store_create_schema(sqlite3 *db, dynrag_error *err)
{
    static const char *const sql =
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
        "CREATE TABLE IF NOT EXISTS docs(id INTEGER PRIMARY KEY, doc_id TEXT UNIQUE NOT NULL,"
        " title TEXT, text TEXT, source TEXT);"
        "CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY, doc INTEGER NOT NULL,"
        " ord INTEGER, start INTEGER, \"end\" INTEGER, body TEXT NOT NULL);"
        "CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc);"
        "CREATE VIRTUAL TABLE IF NOT EXISTS chunk_fts USING fts5(body, content='chunks',"
        " content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');"
        "CREATE TABLE IF NOT EXISTS embedder_state(id INTEGER PRIMARY KEY, blob BLOB);"
        "CREATE TABLE IF NOT EXISTS vectors(chunk INTEGER PRIMARY KEY, v BLOB);"
        "INSERT OR IGNORE INTO meta(key, value) VALUES('format_version', '1');"
        "INSERT OR IGNORE INTO meta(key, value) VALUES('generation', '0');";
    int rc = dr_store_exec(db, sql, err);
    if (rc != DYNRAG_OK)
        return rc;
    /* The database's identity, tying its sidecar files to it: 128 random
     * bits, written once (an index from before ids gets one at its next
     * write). */
    uint8_t id[16];
    size_t got = 0;
    while (got < sizeof(id)) {
        ssize_t r = getrandom(id + got, sizeof(id) - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got < sizeof(id)) { /* no getrandom: time, address and pid, mixed */
        uint64_t h = (uint64_t)dr_now_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)db;
        for (size_t i = 0; i < sizeof(id); i++) {
            h = (h ^ (h >> 31)) * 0x9e3779b97f4a7c15ULL + i;
            id[i] = (uint8_t)(h >> 56);
        }
    }
    char hex[33];
    for (size_t i = 0; i < sizeof(id); i++)
        snprintf(hex + 2 * i, 3, "%02x", id[i]);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO meta(key, value) VALUES('index_id', ?1)", -1,
                           &st, NULL) != SQLITE_OK)
        return db_err(db, err, "writing meta index_id");
    sqlite3_bind_text(st, 1, hex, 32, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? DYNRAG_OK : db_err(db, err, "writing meta index_id");
    sqlite3_finalize(st);
    return rc;
}

int dr_meta_get(sqlite3 *db, const char *key, char **value, dynrag_error *err)
{
    sqlite3_stmt *st = NULL;
    *value = NULL;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return db_err(db, err, "reading meta");
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int status = DYNRAG_OK;
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        *value = dr_strdup(v ? v : "");
        if (*value == NULL)
            status = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    } else if (rc != SQLITE_DONE) {
        status = db_err(db, err, "reading meta");
    }
    sqlite3_finalize(st);
    return status;
}

int dr_meta_get_ll(sqlite3 *db, const char *key, long long def, long long *out,
                   dynrag_error *err)
{
    char *v = NULL;
    int rc = dr_meta_get(db, key, &v, err);
    if (rc != DYNRAG_OK)
        return rc;
    *out = def;
    if (v != NULL && dr_parse_ll(v, INT64_MIN, INT64_MAX, out) != DYNRAG_OK)
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "index.db: meta %s is not an integer: '%s'", key,
                        v);
    dr_free(v);
    return rc;
}

int dr_meta_set(sqlite3 *db, const char *key, const char *value, dynrag_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)", -1, &st,
                           NULL) != SQLITE_OK)
        return db_err(db, err, "writing meta");
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? DYNRAG_OK : db_err(db, err, "writing meta");
    sqlite3_finalize(st);
    return rc;
}

int dr_meta_set_ll(sqlite3 *db, const char *key, long long value, dynrag_error *err)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", value);
    return dr_meta_set(db, key, buf, err);
}

/* ---- the writer -------------------------------------------------------------- */

int dr_store_writer_init(dr_store_writer *w, sqlite3 *db, dynrag_error *err)
{
    memset(w, 0, sizeof(*w));
    w->db = db;
    struct {
        sqlite3_stmt **st;
        const char *sql;
    } stmts[] = {
        {&w->find_doc, "SELECT id FROM docs WHERE doc_id = ?1"},
        {&w->ins_doc, "INSERT INTO docs(doc_id, title, text, source) VALUES(?1, ?2, ?3, ?4)"},
        {&w->upd_doc, "UPDATE docs SET title = ?2, text = ?3, source = ?4 WHERE id = ?1"},
        {&w->sel_chunks, "SELECT id, body FROM chunks WHERE doc = ?1"},
        {&w->fts_del, "INSERT INTO chunk_fts(chunk_fts, rowid, body) VALUES('delete', ?1, ?2)"},
        {&w->del_chunks, "DELETE FROM chunks WHERE doc = ?1"},
        {&w->del_vec, "DELETE FROM vectors WHERE chunk = ?1"},
        {&w->ins_chunk, "INSERT INTO chunks(id, doc, ord, start, \"end\", body)"
                        " VALUES(?1, ?2, ?3, ?4, ?5, ?6)"},
        {&w->fts_ins, "INSERT INTO chunk_fts(rowid, body) VALUES(?1, ?2)"},
        {&w->ins_vec, "INSERT OR REPLACE INTO vectors(chunk, v) VALUES(?1, ?2)"},
        {&w->del_doc, "DELETE FROM docs WHERE id = ?1"},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(stmts); i++) {
        if (sqlite3_prepare_v3(db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, stmts[i].st,
                               NULL) != SQLITE_OK) {
            int rc = db_err(db, err, "preparing writes");
            dr_store_writer_fini(w);
            return rc;
        }
    }
    long long next = 0, docs = 0, chunks = 0, tokens = 0;
    int rc = dr_meta_get_ll(db, "next_chunk_id", 1, &next, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_get_ll(db, "docs", 0, &docs, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_get_ll(db, "chunks", 0, &chunks, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_get_ll(db, "chunk_tokens_total", 0, &tokens, err);
    if (rc == DYNRAG_OK &&
        (next < 1 || next > INT64_MAX / 2 || docs < 0 || chunks < 0 || tokens < 0))
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                        "index.db: meta totals out of range (next_chunk_id %lld, docs %lld, "
                        "chunks %lld, chunk_tokens_total %lld): the index is damaged",
                        next, docs, chunks, tokens);
    if (rc != DYNRAG_OK) {
        dr_store_writer_fini(w);
        return rc;
    }
    w->next_chunk_id = next;
    w->docs = docs;
    w->chunks = chunks;
    w->tokens = tokens;
    return DYNRAG_OK;
}

int dr_store_writer_save_totals(dr_store_writer *w, dynrag_error *err)
{
    int rc = dr_meta_set_ll(w->db, "next_chunk_id", w->next_chunk_id, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_set_ll(w->db, "docs", w->docs, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_set_ll(w->db, "chunks", w->chunks, err);
    if (rc == DYNRAG_OK)
        rc = dr_meta_set_ll(w->db, "chunk_tokens_total", w->tokens, err);
    return rc;
}

void dr_store_writer_fini(dr_store_writer *w)
{
    if (w == NULL)
        return;
    sqlite3_stmt *all[] = {w->find_doc, w->ins_doc, w->upd_doc, w->sel_chunks,
                           w->fts_del,  w->del_chunks, w->del_vec, w->ins_chunk,
                           w->fts_ins,  w->ins_vec, w->del_doc};
    for (size_t i = 0; i < DR_ARRAY_LEN(all); i++)
        sqlite3_finalize(all[i]);
    memset(w, 0, sizeof(*w));
}

/* Runs a bound statement to completion and resets it. */
static int step_done(dr_store_writer *w, sqlite3_stmt *st, dynrag_error *err, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? DYNRAG_OK : db_err(w->db, err, what);
}

/* Finds a document's rowid: 0 when absent. */
static int find_doc(dr_store_writer *w, const char *doc_id, int64_t *rowid, dynrag_error *err)
{
    sqlite3_bind_text(w->find_doc, 1, doc_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(w->find_doc);
    *rowid = rc == SQLITE_ROW ? sqlite3_column_int64(w->find_doc, 0) : 0;
    sqlite3_reset(w->find_doc);
    sqlite3_clear_bindings(w->find_doc);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_err(w->db, err, "looking up a document");
    return DYNRAG_OK;
}

/* Removes a document's chunks with their FTS rows and vectors. */
static int remove_chunks(dr_store_writer *w, int64_t doc_rowid, dynrag_error *err)
{
    int rc = DYNRAG_OK;
    sqlite3_bind_int64(w->sel_chunks, 1, doc_rowid);
    int step;
    while ((step = sqlite3_step(w->sel_chunks)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(w->sel_chunks, 0);
        const char *body = (const char *)sqlite3_column_text(w->sel_chunks, 1);
        int blen = sqlite3_column_bytes(w->sel_chunks, 1);
        sqlite3_bind_int64(w->fts_del, 1, id);
        sqlite3_bind_text(w->fts_del, 2, body ? body : "", blen, SQLITE_TRANSIENT);
        rc = step_done(w, w->fts_del, err, "removing a chunk from chunk_fts");
        if (rc == DYNRAG_OK) {
            sqlite3_bind_int64(w->del_vec, 1, id);
            rc = step_done(w, w->del_vec, err, "removing a vector");
        }
        if (rc != DYNRAG_OK)
            break;
        w->chunks--;
        w->tokens -= (int64_t)dr_text_word_count(body ? body : "", (size_t)blen);
    }
    if (rc == DYNRAG_OK && step != SQLITE_DONE)
        rc = db_err(w->db, err, "reading a document's chunks");
    sqlite3_reset(w->sel_chunks);
    sqlite3_clear_bindings(w->sel_chunks);
    if (rc == DYNRAG_OK) {
        sqlite3_bind_int64(w->del_chunks, 1, doc_rowid);
        rc = step_done(w, w->del_chunks, err, "removing chunks");
    }
    return rc;
}

int dr_store_put_doc(dr_store_writer *w, const char *doc_id, const char *title, const char *text,
                     const char *source, int64_t *rowid, bool *replaced, dynrag_error *err)
{
    int64_t id = 0;
    int rc = find_doc(w, doc_id, &id, err);
    if (rc != DYNRAG_OK)
        return rc;
    *replaced = id != 0;
    if (id != 0) {
        rc = remove_chunks(w, id, err);
        if (rc != DYNRAG_OK)
            return rc;
        sqlite3_bind_int64(w->upd_doc, 1, id);
        sqlite3_bind_text(w->upd_doc, 2, title, -1, SQLITE_STATIC);
        sqlite3_bind_text(w->upd_doc, 3, text, -1, SQLITE_STATIC);
        sqlite3_bind_text(w->upd_doc, 4, source, -1, SQLITE_STATIC);
        rc = step_done(w, w->upd_doc, err, "updating a document");
        *rowid = id;
        return rc;
    }
    sqlite3_bind_text(w->ins_doc, 1, doc_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(w->ins_doc, 2, title, -1, SQLITE_STATIC);
    sqlite3_bind_text(w->ins_doc, 3, text, -1, SQLITE_STATIC);
    sqlite3_bind_text(w->ins_doc, 4, source, -1, SQLITE_STATIC);
    rc = step_done(w, w->ins_doc, err, "inserting a document");
    if (rc == DYNRAG_OK) {
        *rowid = sqlite3_last_insert_rowid(w->db);
        w->docs++;
    }
    return rc;
}

int dr_store_add_chunk(dr_store_writer *w, int64_t doc_rowid, int ord, size_t start, size_t end,
                       const char *body, size_t body_len, size_t words, int64_t *chunk_id,
                       dynrag_error *err)
{
    int64_t id = w->next_chunk_id;
    sqlite3_bind_int64(w->ins_chunk, 1, id);
    sqlite3_bind_int64(w->ins_chunk, 2, doc_rowid);
    sqlite3_bind_int(w->ins_chunk, 3, ord);
    sqlite3_bind_int64(w->ins_chunk, 4, (sqlite3_int64)start);
    sqlite3_bind_int64(w->ins_chunk, 5, (sqlite3_int64)end);
    sqlite3_bind_text(w->ins_chunk, 6, body, (int)body_len, SQLITE_STATIC);
    int rc = step_done(w, w->ins_chunk, err, "inserting a chunk");
    if (rc == DYNRAG_OK) {
        sqlite3_bind_int64(w->fts_ins, 1, id);
        sqlite3_bind_text(w->fts_ins, 2, body, (int)body_len, SQLITE_STATIC);
        rc = step_done(w, w->fts_ins, err, "indexing a chunk in chunk_fts");
    }
    if (rc == DYNRAG_OK) {
        w->next_chunk_id++;
        w->chunks++;
        w->tokens += (int64_t)words;
        *chunk_id = id;
    }
    return rc;
}

int dr_store_delete_doc(dr_store_writer *w, const char *doc_id, bool *found, dynrag_error *err)
{
    int64_t id = 0;
    int rc = find_doc(w, doc_id, &id, err);
    *found = id != 0;
    if (rc != DYNRAG_OK || id == 0)
        return rc;
    rc = remove_chunks(w, id, err);
    if (rc == DYNRAG_OK) {
        sqlite3_bind_int64(w->del_doc, 1, id);
        rc = step_done(w, w->del_doc, err, "deleting a document");
    }
    if (rc == DYNRAG_OK)
        w->docs--;
    return rc;
}

int dr_store_put_vector(dr_store_writer *w, int64_t chunk_id, const float *v, int dim,
                        dynrag_error *err)
{
    sqlite3_bind_int64(w->ins_vec, 1, chunk_id);
    sqlite3_bind_blob(w->ins_vec, 2, v, dim * (int)sizeof(float), SQLITE_STATIC);
    return step_done(w, w->ins_vec, err, "storing a vector");
}
