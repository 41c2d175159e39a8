/*
 * retrieve/store.h - the SQLite side of an index (internal).
 *
 * DIR/index.db, WAL mode. Schema (agreed with the BM25 engine, which reads
 * chunk_fts and chunks):
 *
 *   meta(key TEXT PRIMARY KEY, value TEXT)
 *       format_version=1, index_id (32 hex digits: 128 random bits written
 *       when the database is created; sidecars record it), generation (+1
 *       per committed write), embedder
 *       (identity, "" without a dense part), dim, faiss_factory,
 *       chunk_tokens, chunk_overlap, docs, chunks, chunk_tokens_total,
 *       next_chunk_id (chunk ids are never reused), dense_hash (hex hash of
 *       the dense.faiss bytes that match this generation), group_write
 *       (32 hex digits: the id of the last committed write, shared by the
 *       indexes of one dynrag_index_write_group() call)
 *   docs(id INTEGER PRIMARY KEY, doc_id TEXT UNIQUE NOT NULL, title TEXT,
 *        text TEXT, source TEXT)
 *   chunks(id INTEGER PRIMARY KEY, doc INTEGER NOT NULL, ord INTEGER,
 *          start INTEGER, end INTEGER, body TEXT NOT NULL)
 *       body = title + "\n" + text[start:end] (byte offsets)
 *   chunk_fts: fts5(body, content='chunks', content_rowid='id',
 *                   tokenize='porter unicode61 remove_diacritics 2')
 *   embedder_state(id INTEGER PRIMARY KEY, blob BLOB)   -- builtin IDF, id 1
 *   vectors(chunk INTEGER PRIMARY KEY, v BLOB)          -- dim float32, LE
 */
#ifndef DYNRAG_RETRIEVE_STORE_H
#define DYNRAG_RETRIEVE_STORE_H

#include "dynrag/status.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DR_INDEX_FORMAT_VERSION 1
/* Largest vector dimension an index may record (meta dim). */
#define DR_INDEX_MAX_DIM 65536

/* Opens DIR/index.db (path is the db file). writable: read-write and
 * create, WAL mode, synchronous=FULL; else read-only (query_only), and
 * with SQLite's immutable=1 when the folder cannot be written, so that a
 * reader never needs to create -shm/-wal files there. Sets a busy timeout.
 * *out is closed with sqlite3_close(). */
int dr_store_open(const char *path, bool writable, sqlite3 **out, dynrag_error *err);

/*
 * Opens path read-only like dr_store_open(), but through dir_fd, an open
 * descriptor of the folder holding it (when dir_fd >= 0 and /proc/self/fd
 * is there): SQLite then opens the database and, later, its -wal, -shm and
 * -journal files in that folder, whatever is at the folder's path by then.
 * A connection opened by path finds its -wal and -journal by path at each
 * read transaction (and its -shm when it first needs it), so a folder
 * removed and built again, or another folder moved in, under a running
 * reader would hand it another database's WAL and shared memory: wrong rows,
 * and a SIGBUS when that database's writer truncates the -shm it mapped.
 * Messages name path.
 */
int dr_store_open_pinned(const char *path, int dir_fd, sqlite3 **out, dynrag_error *err);

/* Creates the tables when absent, and meta index_id (idempotent). */
int dr_store_create_schema(sqlite3 *db, dynrag_error *err);

/* Runs SQL without results; the error names the statement's purpose. */
int dr_store_exec(sqlite3 *db, const char *sql, dynrag_error *err);

/* Reads a meta value: *value malloc'ed (caller frees) or NULL when absent. */
int dr_meta_get(sqlite3 *db, const char *key, char **value, dynrag_error *err);
/* Reads an integer meta value, def when absent; a non-integer is
 * DYNRAG_ERR_FORMAT. */
int dr_meta_get_ll(sqlite3 *db, const char *key, long long def, long long *out,
                   dynrag_error *err);
int dr_meta_set(sqlite3 *db, const char *key, const char *value, dynrag_error *err);
int dr_meta_set_ll(sqlite3 *db, const char *key, long long value, dynrag_error *err);

/* Prepared statements for writing documents inside one transaction. */
typedef struct dr_store_writer {
    sqlite3 *db;
    sqlite3_stmt *find_doc, *ins_doc, *upd_doc, *sel_chunks, *fts_del, *del_chunks, *del_vec,
        *ins_chunk, *fts_ins, *ins_vec, *del_doc;
    int64_t next_chunk_id;
    int64_t docs, chunks, tokens; /* running totals (meta docs, chunks, chunk_tokens_total) */
} dr_store_writer;

/* Prepares the statements and reads the running totals from meta. */
int dr_store_writer_init(dr_store_writer *w, sqlite3 *db, dynrag_error *err);
/* Writes the running totals back to meta (same transaction). */
int dr_store_writer_save_totals(dr_store_writer *w, dynrag_error *err);
void dr_store_writer_fini(dr_store_writer *w);

/* Inserts a document, or replaces one with the same doc_id (its chunks, FTS
 * rows and vectors are removed). *rowid gets docs.id, *replaced whether it
 * existed. */
int dr_store_put_doc(dr_store_writer *w, const char *doc_id, const char *title, const char *text,
                     const char *source, int64_t *rowid, bool *replaced, dynrag_error *err);

/* Adds a chunk of document rowid with its FTS row; *chunk_id gets its id.
 * words is its word count (for the average chunk length). */
int dr_store_add_chunk(dr_store_writer *w, int64_t doc_rowid, int ord, size_t start, size_t end,
                       const char *body, size_t body_len, size_t words, int64_t *chunk_id,
                       dynrag_error *err);

/* Deletes a document by id with its chunks, FTS rows and vectors. *found
 * says whether it existed. */
int dr_store_delete_doc(dr_store_writer *w, const char *doc_id, bool *found, dynrag_error *err);

/* Stores a chunk's vector (dim floats). */
int dr_store_put_vector(dr_store_writer *w, int64_t chunk_id, const float *v, int dim,
                        dynrag_error *err);

#endif
