/*
 * embed/builtin.h - the built-in offline embedder (internal).
 *
 * Signed feature hashing of word unigrams, word bigrams (stopwords dropped)
 * and character 3-5-grams of non-stopword words (padded as "<word>"), with
 * sublinear term frequency (1 + log tf), an IDF learned at index time over
 * 2^18 hashed feature buckets (smoothed: log((N + 1) / (df + 1)) + 1), and
 * L2 normalisation. Without learned IDF every feature has IDF 1.
 *
 * Identity: "builtin:v1:dim=<D>:ngrams=w1,w2,c3-5". The learned IDF is the
 * embedder's state, saved to and loaded from a blob (format below).
 *
 * Blob format (little-endian): "DRBE" magic, u32 version (1), u32 dim,
 * u32 n_buckets (2^18), u64 documents seen, then n_buckets f32 IDF values.
 */
#ifndef DYNRAG_EMBED_BUILTIN_H
#define DYNRAG_EMBED_BUILTIN_H

#include "embed/embedder.h"

#include <stdbool.h>
#include <stdint.h>

#define DR_BUILTIN_DEFAULT_DIM 256
#define DR_BUILTIN_MAX_DIM 8192

/* Creates a built-in embedder of dimension dim (0 = 256, at most 8192)
 * without learned IDF. *out is freed with dr_embedder_free(). Fails with
 * DYNRAG_ERR_INVALID for a bad dim, DYNRAG_ERR_NOMEM. */
int dr_embedder_builtin_create(int dim, dr_embedder **out, dynrag_error *err);

/* True when e was made by dr_embedder_builtin_create(). */
bool dr_embedder_is_builtin(const dr_embedder *e);

/* True when e has IDF (learned or loaded). */
bool dr_builtin_has_idf(const dr_embedder *e);

/* Counts the features of one text (a document for IDF) into e's
 * document-frequency table. Not thread-safe; only before the IDF is
 * finished. Fails with DYNRAG_ERR_STATE when e already has IDF. */
int dr_builtin_observe(dr_embedder *e, const char *text, size_t n, dynrag_error *err);

/* Turns the observed document frequencies into IDF (also with zero
 * documents observed: every IDF is then 1). */
int dr_builtin_finish_idf(dr_embedder *e, dynrag_error *err);

/* Serialises the IDF into a malloc'ed blob the caller frees. Fails with
 * DYNRAG_ERR_STATE when e has no IDF. */
int dr_builtin_state_save(const dr_embedder *e, void **blob, size_t *len, dynrag_error *err);

/* Loads IDF from a blob made by dr_builtin_state_save() for the same dim.
 * Fails with DYNRAG_ERR_FORMAT (bad magic, size, version) or
 * DYNRAG_ERR_MISMATCH (other dim). */
int dr_builtin_state_load(dr_embedder *e, const void *blob, size_t len, dynrag_error *err);

#endif
