/*
 * retrieve/fts.h - FTS5 access and the fallback BM25 ranker (internal).
 *
 * Query text is never handed to FTS5 as query syntax. It is tokenized with
 * the index's own FTS5 tokenizer ("porter unicode61 remove_diacritics 2",
 * found through the fts5_api pointer), English stopwords are dropped (tested
 * on the token's surface form, core/text.h list), each remaining distinct
 * token is double-quoted and the tokens are ORed. So quotes, '*', NEAR(,
 * AND, OR, NOT, '-', ':', '^' and unbalanced parentheses are searched as
 * words (or dropped as separators), and a query without terms has no hits.
 *
 * SEAM FOR THE FAST ENGINE: dr_bm25_fallback_search() is the one function
 * search.c calls for BM25. The MaxScore engine (src/retrieve/bm25.c) is
 * meant to replace it at merge time: same inputs (a connection to index.db,
 * the raw query, k1, b, k), same output (chunk ids with scores, best
 * first). The fallback scores with BM25 (Lucene/Anserini IDF
 * log(1 + (N - df + 0.5) / (df + 0.5)), document length = FTS5 tokens of
 * the chunk body) through an FTS5 auxiliary function, dr_bm25(chunk_fts,
 * k1, b), evaluated on every matching chunk - correct, not pruned.
 */
#ifndef DYNRAG_RETRIEVE_FTS_H
#define DYNRAG_RETRIEVE_FTS_H

#include "dynrag/status.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* Registers the dr_bm25 FTS5 auxiliary function on a connection. */
int dr_fts_register(sqlite3 *db, dynrag_error *err);

typedef struct dr_fts_terms {
    char **terms;  /* distinct stemmed tokens, in query order */
    size_t n;
    char *match;   /* FTS5 expression: "w1" OR "w2" ... ("" when n == 0) */
} dr_fts_terms;

/* Tokenizes a query as described above. out is freed with
 * dr_fts_terms_free(), also after a failure. */
int dr_fts_query_terms(sqlite3 *db, const char *query, dr_fts_terms *out, dynrag_error *err);
void dr_fts_terms_free(dr_fts_terms *t);

typedef struct dr_scored {
    int64_t id;   /* chunk id */
    double score; /* higher is better */
} dr_scored;

/* BM25 top-k over chunk_fts: out[0..k) gets up to k chunks, best first
 * (ties by chunk id), *n_out how many. k1 >= 0, 0 <= b <= 1. */
int dr_bm25_fallback_search(sqlite3 *db, const char *query, double k1, double b, size_t k,
                            dr_scored *out, size_t *n_out, dynrag_error *err);

#endif
