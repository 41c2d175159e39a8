/*
 * dynrag/index.h - building and searching a DynamicRAG index.
 *
 * An index is a folder: index.db (SQLite: documents, chunks, an FTS5 table
 * with external content and the porter unicode61 tokenizer, metadata) and
 * dense.faiss (a FAISS index of chunk vectors, chunk ids as labels), plus
 * any sidecar files the BM25 engine keeps. Writers take an exclusive lock;
 * every write is atomic (a failure or kill leaves the last good state).
 *
 * A dynrag_index opened for reading is shared by any number of threads:
 * dynrag_index_search() is thread-safe (a SQLite connection per thread, one
 * read-only FAISS index).
 */
#ifndef DYNRAG_INDEX_H
#define DYNRAG_INDEX_H

#include "dynrag/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The embedder an index is built with and queried with. */
typedef struct dynrag_embedder_config {
    const char *kind;     /* "builtin" (default when NULL) or "openai" */
    int dim;              /* builtin: dimension (0 = 256); openai: expected (0 = any) */
    const char *base_url; /* openai: e.g. "http://127.0.0.1:8000/v1" */
    const char *model;    /* openai: model name */
    const char *api_key;  /* openai: bearer token, may be NULL */
    double timeout_s;     /* openai: per request (0 = 60) */
    int max_retries;      /* openai: (0 = 3; negative = none) */
    int batch_size;       /* openai: texts per request (0 = 64) */
} dynrag_embedder_config;

/* chunk_tokens / chunk_overlap value: the index's recorded setting (200
 * and 40 words for a new index; the overlap is capped below chunk_tokens). */
#define DYNRAG_CHUNK_RECORDED (-1)

/* Options of dynrag_index_add() and dynrag_index_delete_opt(). Call
 * dynrag_build_options_init() first, then set what differs: every field is
 * taken literally, and a value out of range fails with DYNRAG_ERR_INVALID
 * naming the field. */
typedef struct dynrag_build_options {
    dynrag_embedder_config embedder; /* default: every field 0/NULL (the builtin
                                        embedder, as documented above) */
    const char *faiss_factory; /* FAISS index_factory string; NULL (default) = the
                                  index's recorded one, "Flat" for a new index */
    int chunk_tokens;          /* target words per chunk, 1 to 100000; default
                                  DYNRAG_CHUNK_RECORDED */
    int chunk_overlap;         /* words of overlap, 0 to chunk_tokens - 1; default
                                  DYNRAG_CHUNK_RECORDED */
    bool skip_bad;             /* skip and count malformed input instead of failing (false) */
    bool no_dense;             /* BM25 only: no embedder, no FAISS index (false) */
    dynrag_progress_fn progress; /* NULL (default): no progress calls */
    void *progress_user;
    /* Seconds, >= 0, to wait for another writer's lock on the folder before
     * failing with DYNRAG_ERR_TIMEOUT; default INFINITY (wait as long as it
     * takes); 0 gives up at once. A writer that has to wait logs so
     * (warning) once. */
    double lock_timeout_s;
} dynrag_build_options;

/* Sets every field of o to its default (above). */
DYNRAG_API void dynrag_build_options_init(dynrag_build_options *o);

typedef struct dynrag_build_stats {
    uint64_t docs_added;    /* new document ids */
    uint64_t docs_replaced; /* ids that existed and were re-indexed */
    uint64_t docs_deleted;
    uint64_t chunks;        /* chunks written by this call */
    uint64_t bad_inputs;    /* skipped with skip_bad */
    uint64_t total_docs;    /* in the index afterwards */
    uint64_t total_chunks;
    double seconds;
} dynrag_build_stats;

/* Adds (or replaces, by document id) the documents of each input to the
 * index in `dir`, creating it when absent. Inputs are JSONL files (BEIR
 * {"_id","title","text"}, {"id","contents"}, {"id","title","text"}) or
 * folders walked recursively for .txt, .md and .html files. Malformed input
 * fails with the file and line in err and leaves the index unchanged (unless
 * opt->skip_bad). opt may be NULL (the defaults of dynrag_build_options_init);
 * stats may be NULL. */
DYNRAG_API int dynrag_index_add(const char *dir, const char *const *inputs, size_t n_inputs,
                                const dynrag_build_options *opt, dynrag_build_stats *stats,
                                dynrag_error *err);

/* Deletes documents by id (unknown ids are counted in *n_missing, which may
 * be NULL). Atomic. */
DYNRAG_API int dynrag_index_delete(const char *dir, const char *const *doc_ids, size_t n,
                                   size_t *n_missing, dynrag_error *err);

/* dynrag_index_delete() with options: only opt->lock_timeout_s is used
 * (opt may be NULL: the defaults of dynrag_build_options_init). */
DYNRAG_API int dynrag_index_delete_opt(const char *dir, const char *const *doc_ids, size_t n,
                            const dynrag_build_options *opt, size_t *n_missing, dynrag_error *err);

/* One index of dynrag_index_write_group(): a folder and its embedder. */
typedef struct dynrag_index_target {
    const char *dir;                 /* the index folder */
    const char *name;                /* names it in errors and logs (e.g. "embedder
                                        option 'e64'"); NULL: the folder alone */
    dynrag_embedder_config embedder; /* replaces opt->embedder for this index */
} dynrag_index_target;

/* Most targets of one dynrag_index_write_group() call. */
#define DYNRAG_INDEX_MAX_TARGETS 64

/*
 * Writes one document set to several indexes that must hold the same
 * documents (a pipeline's main index and one per other embedder option):
 * targets[0] is the main index, which reads the inputs (as
 * dynrag_index_add(), after deleting doc_ids first); every other target
 * gets the main index's resulting documents, chunked the same way and
 * embedded with its own embedder. All or nothing for every failure short
 * of a crash: every folder is locked (in target order) and checked
 * (embedder identity, dense or not, folder creatable) before anything is
 * written, every index's new state is built inside its own open
 * transaction, and only then are they committed back to back, the main
 * index last; a failure before that changes no index. A crash (or a
 * failed COMMIT) between those commits leaves the other indexes ahead of
 * the main one: each index records the write id of its last write (meta
 * group_write), and the next group write compares every other index with
 * the main one in full when the ids differ (also after a single-index
 * write to either, or for an index that is new), re-indexing and deleting
 * what differs, with a warning when it held documents. The main index is
 * created when inputs are given, the others always. opt applies to all
 * (its embedder field is ignored; progress reports the main index only).
 * stats, when not NULL, is an array of n_targets (docs_deleted counts the
 * deletions found). Errors of one target are prefixed with its name and
 * folder and end with what changed ("no index changed").
 */
DYNRAG_API int dynrag_index_write_group(const dynrag_index_target *targets, size_t n_targets,
                                        const char *const *doc_ids, size_t n_deletes,
                                        const char *const *inputs, size_t n_inputs,
                                        const dynrag_build_options *opt,
                                        dynrag_build_stats *stats, dynrag_error *err);

typedef struct dynrag_index dynrag_index;

/* Opens an index for reading. embedder may be NULL: the index's own
 * recorded embedder is used when it is "builtin"; an "openai" index needs
 * the endpoint given here, and a config whose identity differs from the
 * index's fails with DYNRAG_ERR_MISMATCH. *out is closed with
 * dynrag_index_close(). The handle follows the folder: when a writer
 * commits a new generation, the next call (search, document, embed, info)
 * opens it and uses it, while calls already running finish on the
 * generation they started with (docs/indexing.md). */
DYNRAG_API int dynrag_index_open(const char *dir, const dynrag_embedder_config *embedder,
                      dynrag_index **out, dynrag_error *err);
DYNRAG_API void dynrag_index_close(dynrag_index *idx);

typedef enum dynrag_search_mode {
    DYNRAG_SEARCH_BM25 = 0,
    DYNRAG_SEARCH_DENSE = 1,
    DYNRAG_SEARCH_HYBRID = 2
} dynrag_search_mode;

/* Parses "bm25" | "dense" | "hybrid"; -1 when unknown. */
DYNRAG_API int dynrag_search_mode_parse(const char *s);
DYNRAG_API const char *dynrag_search_mode_name(dynrag_search_mode m);

/* Options of dynrag_index_search(). Call dynrag_search_options_init()
 * first, then set what differs: every field is taken literally and checked
 * (DYNRAG_ERR_INVALID naming the field). */
typedef struct dynrag_search_options {
    dynrag_search_mode mode; /* default DYNRAG_SEARCH_BM25 */
    int k;             /* hits wanted, 1 to 10000 (default 10) */
    double k1;         /* BM25 term-frequency saturation, [0, 100] (default 0.9;
                          0: term frequency ignored) */
    double b;          /* BM25 length normalisation, [0, 1] (default 0.4; 0: none) */
    double rrf_k;      /* hybrid: reciprocal rank fusion constant, > 0 (default 60) */
    double w_bm25;     /* hybrid weights, >= 0 and not both 0 (default 1 and 1) */
    double w_dense;
    int depth;         /* hybrid: candidates taken from each side, 0 to 10000, at
                          least k are taken (default 100) */
    int nprobe;        /* IVF indexes: lists probed, >= 0; 0 (default) = the
                          index's own setting */
    /* Document level: at most one hit per document, its best chunk (a
     * document scores as its best chunk); k counts documents. The chunk
     * ranking is searched deeper (3k chunks, doubled until k documents are
     * found, the ranking runs out, or 10,000 chunks) as `dynrag retrieve
     * --queries` always did. */
    bool per_document;
    /* Hits carry chunk_id, doc_id and score only: title and text are NULL,
     * start and end 0, and nothing is read from index.db (what a run file
     * needs). Every search finds a chunk's document in a chunk -> document
     * map kept in memory, read from index.db by the handle's first search
     * at the generation the BM25 engine was loaded from (a full hit then
     * reads one chunks row); when index.db has moved on by then, each
     * hit's document is read from index.db instead. */
    bool ids_only;
} dynrag_search_options;

/* Sets every field of o to its default (above). */
DYNRAG_API void dynrag_search_options_init(dynrag_search_options *o);

typedef struct dynrag_hit {
    int64_t chunk_id;
    char *doc_id;
    char *title;
    char *text;        /* the chunk's text */
    double score;      /* mode's score (hybrid: fused RRF score) */
    int64_t start, end;/* byte offsets of the chunk in the document text */
    size_t text_len;   /* strlen(text) (0 without text) */
} dynrag_hit;

typedef struct dynrag_hits {
    dynrag_hit *hits;  /* best first */
    size_t n;
    double bm25_us, dense_us, total_us; /* time spent in each part */
} dynrag_hits;

/* Searches the index. The query is plain user text: it is never read as
 * FTS5 syntax; an empty or stopword-only query gives zero hits, not an
 * error. *out is filled (caller frees with dynrag_hits_free). */
DYNRAG_API int dynrag_index_search(dynrag_index *idx, const char *query,
                                   const dynrag_search_options *opt, dynrag_hits *out,
                                   dynrag_error *err);
DYNRAG_API void dynrag_hits_free(dynrag_hits *hits);

/* The full text of a document (for long-context escalation). Caller frees
 * *text and *title (either out-pointer may be NULL). */
DYNRAG_API int dynrag_index_document(dynrag_index *idx, const char *doc_id, char **title,
                                     char **text, dynrag_error *err);

/* Embeds a text with the index's embedder (for knn routers): out gets
 * dynrag_index_dim() floats. Fails when the index has no dense part. */
DYNRAG_API int dynrag_index_embed(dynrag_index *idx, const char *text, float *out,
                                  dynrag_error *err);
DYNRAG_API int dynrag_index_dim(const dynrag_index *idx);

typedef struct dynrag_index_info {
    uint64_t docs, chunks;
    int format_version;
    int dim;                      /* 0 when no dense part */
    char embedder[256];           /* identity string */
    char faiss_factory[128];
    double avg_chunk_tokens;
    int64_t generation; /* the committed write the handle opened: every
                           `dynrag index` run that changes the index adds 1 */
} dynrag_index_info;

DYNRAG_API int dynrag_index_get_info(const dynrag_index *idx, dynrag_index_info *info);

#ifdef __cplusplus
}
#endif
#endif
