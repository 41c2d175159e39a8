/*
 * retrieve/bm25.h - a fast in-memory BM25 engine over an index folder's
 * SQLite FTS5 postings (internal API).
 *
 * Source of truth. FTS5 owns the postings: dr_bm25_open() reads every
 * (term, chunk) instance of `chunk_fts` through an `fts5vocab` table of type
 * 'instance' inside one read transaction, together with meta.generation, and
 * builds a compact docid-ordered inverted index: per term its postings
 * (chunk index, tf) in ascending chunk-id order and a small "frontier" of
 * (tf, doc length) points from which the exact per-term score upper bound
 * is computed for ANY k1 and b; per chunk its length in tokens (every token
 * FTS5 indexed, stopwords included). The index is persisted as the sidecar
 * file DIR/bm25.idx (format below), written to a temporary file and renamed,
 * so a later open with the same generation only reads and checks a file.
 * The sidecar records the identity of the database it was built from
 * (meta.index_id, 128 random bits written when index.db is created) and
 * its generation: a sidecar of another database (index.db deleted and
 * rebuilt in the same folder), of another generation, or truncated,
 * corrupt or of another version is never trusted.
 *
 * Tokens. Queries are tokenized with FTS5's own tokenizer, created through
 * the fts5_api (xFindTokenizer "porter" over "unicode61 remove_diacritics 2",
 * the tokenizer of the agreed chunk_fts table), so query and index tokens are
 * the same. User text is never FTS5 query syntax: MATCH is never called
 * with it; quotes, '*', NEAR(, AND/OR/NOT, '-', ':', '^' and parentheses are
 * plain separators or words. Query tokens whose source word is one of
 * Lucene's 33 English stopwords (the Anserini default) are dropped; repeated
 * terms are deduplicated and weighted by their count in the query (as
 * Anserini's bag-of-words queries do). A query with no remaining known term
 * gives zero hits, not an error.
 *
 * Scoring (Lucene/Anserini BM25):
 *   idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))      (always > 0)
 *   score(d, q) = sum_t qtf(t) * idf(t) * tf*(k1+1) / (tf + k1*(1 - b + b*dl/avgdl))
 * with N the number of chunks, dl the chunk's token count, avgdl their mean.
 * k1 and b are per-call parameters. The sum runs over the query terms in a
 * fixed (canonical) order so that the pruned search and the exhaustive
 * reference scorer give bit-identical scores. Top-k is ordered by score
 * descending, ties broken by lower chunk id.
 *
 * Search. MaxScore (Turtle & Flood) document-at-a-time over the docid-ordered
 * postings with a min-heap of k hits: terms whose upper bounds together
 * cannot lift a document into the heap are only probed (galloping search)
 * for documents found through the others. When the query's postings cover
 * much of a small collection, a term-at-a-time accumulator is cheaper and
 * is used instead (see dr_bm25_strategy). Both are exact: they return the
 * same hits and bit-identical scores as dr_bm25_search_exact().
 *
 * Threads. After dr_bm25_open() the engine is read-only; any number of
 * threads may call dr_bm25_search*() and dr_bm25_tokenize() concurrently
 * (each call uses its own scratch memory; FTS5 tokenizer instances, which
 * are not reentrant, come from a small mutex-guarded pool).
 *
 * Sidecar file format, version 2 (all integers little-endian, as written by
 * the host; a file from a host of the other byte order fails its magic):
 *   offset size  field
 *   0      8     magic "DRBM25IX"
 *   8      4     u32 version (1)
 *   12     4     u32 header size (96)
 *   16     8     i64 generation (meta.generation it was built from)
 *   24     4     u32 n_docs   (chunks)
 *   28     4     u32 n_terms
 *   32     8     u64 n_postings
 *   40     8     u64 n_frontier (frontier points over all terms)
 *   48     8     u64 term_bytes (size of the term text blob)
 *   56     8     u64 total_len  (sum of chunk lengths)
 *   64     8     u64 checksum of bytes [96, file size)
 *   72     8     u64 file size
 *   80     16    index_id: meta.index_id (32 hex digits) as 16 bytes, all
 *                zero when the database has none
 *   then these arrays, each starting at a multiple of 8 bytes (zero padding):
 *     i64 chunk_id[n_docs]           ascending chunk ids (chunks.id)
 *     u32 doc_len[n_docs]            tokens per chunk
 *     u32 term_off[n_terms + 1]      term i's bytes are blob[term_off[i], term_off[i+1])
 *     u64 post_off[n_terms + 1]      term i's postings are [post_off[i], post_off[i+1])
 *     u64 front_off[n_terms + 1]     term i's frontier points
 *     u32 front_tf[n_frontier]       frontier: tf strictly decreasing ...
 *     u32 front_dl[n_frontier]       ... and doc length strictly decreasing
 *     u32 post_doc[n_postings]       chunk index (into chunk_id), ascending per term
 *     u16 post_tf[n_postings]        term frequency (saturated at 65535)
 *     u8  blob[term_bytes]           term texts, terms sorted by memcmp, unique
 *   Opening checks the magic, version, sizes, checksum and every offset and
 *   index against its bounds before use.
 */
#ifndef DYNRAG_RETRIEVE_BM25_H
#define DYNRAG_RETRIEVE_BM25_H

#include "dynrag/status.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dr_bm25 dr_bm25;

#define DR_BM25_SIDECAR "bm25.idx"
#define DR_BM25_VERSION 2
#define DR_BM25_DEFAULT_K1 0.9
#define DR_BM25_DEFAULT_B 0.4
/* Largest k accepted by the search functions. */
#define DR_BM25_MAX_K 100000

typedef struct dr_bm25_info {
    int64_t generation;     /* meta.generation the index reflects */
    uint32_t n_docs;        /* chunks */
    uint32_t n_terms;
    uint64_t n_postings;
    double avgdl;           /* mean chunk length in tokens */
    bool from_sidecar;      /* true: loaded DIR/bm25.idx; false: built from FTS5 */
    bool sidecar_written;   /* built and DIR/bm25.idx (re)written */
    double open_seconds;    /* wall time of dr_bm25_open() */
    uint64_t bytes;         /* size of the in-memory index (= sidecar size) */
} dr_bm25_info;

/*
 * Opens the BM25 engine of the index folder `dir` whose index.db is open as
 * `db` (read access suffices; the engine does not keep `db`). When
 * DIR/bm25.idx exists, is intact and was built from the current
 * meta.generation it is loaded; otherwise the index is built from chunk_fts
 * (in one read transaction unless `db` is already inside one) and the
 * sidecar is (re)written atomically; a failure to write it (read-only
 * folder) is logged and not an error. `dir` may be NULL: build in memory,
 * no sidecar. A missing meta table or generation counts as generation 0.
 * On success *out owns the engine (free with dr_bm25_free()). Fails with
 * DYNRAG_ERR_DB (SQLite error, e.g. no chunk_fts table), DYNRAG_ERR_FORMAT
 * (FTS5 postings referring to a chunk id missing from `chunks`),
 * DYNRAG_ERR_MISMATCH (chunk_fts declared with another tokenizer),
 * DYNRAG_ERR_LIMIT (over 2^32-2 chunks) or DYNRAG_ERR_NOMEM, with detail in
 * err; *out is then NULL.
 */
int dr_bm25_open(sqlite3 *db, const char *dir, dr_bm25 **out, dynrag_error *err);

/* Like dr_bm25_open() but never writes: loads a matching sidecar, else
 * builds the engine in memory and leaves the folder untouched (readers of
 * an index; `dynrag index` writes the sidecar). */
int dr_bm25_load(sqlite3 *db, const char *dir, dr_bm25 **out, dynrag_error *err);

/* Like dr_bm25_open() but ignores any existing sidecar: always rebuilds and
 * (re)writes it (writers, after a committed change). */
int dr_bm25_rebuild(sqlite3 *db, const char *dir, dr_bm25 **out, dynrag_error *err);

/* Releases the engine. Accepts NULL. No search may be running. */
void dr_bm25_free(dr_bm25 *e);

/* Fills *info. */
void dr_bm25_get_info(const dr_bm25 *e, dr_bm25_info *info);

/*
 * Top-k BM25 search (MaxScore). `query` is plain UTF-8 user text. Writes up
 * to k hits, best first, into chunk_ids[] and scores[] (arrays of at least
 * k elements; scores may be NULL) and their number into *n_out (0 for an
 * empty, stopword-only or unknown-words query). k must be in
 * [1, DR_BM25_MAX_K], k1 in [0, 100] and b in [0, 1], else
 * DYNRAG_ERR_INVALID. Fails with DYNRAG_ERR_NOMEM or DYNRAG_ERR_INTERNAL
 * (tokenizer failure). Thread-safe.
 */
int dr_bm25_search(const dr_bm25 *e, const char *query, int k, double k1, double b,
                   int64_t *chunk_ids, double *scores, int *n_out, dynrag_error *err);

/* How dr_bm25_search_with() finds the top k; all give identical results. */
typedef enum dr_bm25_strategy {
    DR_BM25_AUTO = 0,     /* TAAT when n_docs <= DR_BM25_TAAT_MAX_DOCS and the
                             query's postings number at least n_docs/2, else MaxScore */
    DR_BM25_MAXSCORE = 1, /* MaxScore document-at-a-time with a min-heap */
    DR_BM25_TAAT = 2      /* term-at-a-time into a per-call accumulator */
} dr_bm25_strategy;

#define DR_BM25_TAAT_MAX_DOCS 262144

/* dr_bm25_search() with a chosen strategy (tests and benchmarks). */
int dr_bm25_search_with(const dr_bm25 *e, const char *query, int k, double k1, double b,
                        dr_bm25_strategy strategy, int64_t *chunk_ids, double *scores, int *n_out,
                        dynrag_error *err);

/*
 * Reference scorer with the same contract and results as dr_bm25_search():
 * scores every posting of every query term into a per-chunk accumulator,
 * then selects the top k. O(total postings + n_docs); for tests and
 * benchmarks.
 */
int dr_bm25_search_exact(const dr_bm25 *e, const char *query, int k, double k1, double b,
                         int64_t *chunk_ids, double *scores, int *n_out, dynrag_error *err);

/*
 * Called once per FTS5 token, in text order: the token's bytes (not
 * NUL-terminated; what FTS5 indexes: case-folded, diacritics removed,
 * porter-stemmed), the byte span [start, end) of its source word in the
 * text, and whether that word is a stopword (dropped from queries; still
 * indexed and counted in chunk lengths). Return non-zero to stop.
 */
typedef int (*dr_bm25_token_fn)(void *user, const char *tok, int len, int start, int end,
                                bool stopword);

/*
 * Tokenizes text[0..n) exactly as FTS5 tokenizes chunk bodies (used by the
 * search and exposed for tests). Returns DYNRAG_OK, DYNRAG_ERR_INVALID when
 * n exceeds INT_MAX, DYNRAG_ERR_INTERNAL when the tokenizer fails, or
 * DYNRAG_ERR_CANCELLED when fn stopped it. Thread-safe.
 */
int dr_bm25_tokenize(const dr_bm25 *e, const char *text, size_t n, dr_bm25_token_fn fn,
                     void *user, dynrag_error *err);

/* True when the lower-case ASCII word w[0..n) is a Lucene English stopword. */
bool dr_bm25_is_stopword(const char *w, size_t n);

#endif
