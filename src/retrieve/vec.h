/*
 * retrieve/vec.h - the FAISS side of an index (internal).
 *
 * DIR/dense.faiss holds an IndexIDMap2 around the index_factory index
 * (inner product over L2-normalised vectors, so scores are cosines), with
 * chunk ids as labels. It is rebuilt from the stored vectors on every
 * write, serialised in memory, hashed (dr_vec_hash of the bytes, recorded
 * in meta dense_hash) and written atomically. Loading checks the hash, so a
 * dense.faiss that does not belong to index.db's generation is refused.
 *
 * A loaded dr_vec is shared by searching threads. IVF nprobe is per query:
 * a query with another nprobe than the current one takes the write side of
 * a rwlock to change it; queries with the same nprobe search concurrently.
 */
#ifndef DYNRAG_RETRIEVE_VEC_H
#define DYNRAG_RETRIEVE_VEC_H

#include "dynrag/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dr_vec dr_vec;

/* Builds an index of n vectors x[n * dim] with labels ids[n] from a FAISS
 * factory string (e.g. "Flat", "IVF64,Flat", "HNSW32"), training it when
 * needed. Fails with DYNRAG_ERR_VECTOR carrying FAISS's message. */
int dr_vec_build(const char *factory, int dim, const float *x, const int64_t *ids, size_t n,
                 dr_vec **out, dynrag_error *err);

/* Serialises the index to path atomically (temporary file, fsync, rename);
 * *hash gets the hash of the written bytes. */
int dr_vec_save(const dr_vec *v, const char *path, uint64_t *hash, dynrag_error *err);

/* Loads path, checking that its bytes hash to expect_hash and its dimension
 * is dim. DYNRAG_ERR_NOTFOUND when absent, DYNRAG_ERR_STATE on a hash
 * mismatch, DYNRAG_ERR_VECTOR / DYNRAG_ERR_FORMAT otherwise. */
int dr_vec_load(const char *path, int dim, uint64_t expect_hash, dr_vec **out, dynrag_error *err);

/* Top-k search of one query vector: labels[k] (-1 past the end) and
 * scores[k]. nprobe > 0 sets IVF nprobe for this query (ignored for other
 * indexes). Thread-safe. */
int dr_vec_search(dr_vec *v, const float *q, size_t k, int nprobe, int64_t *labels, float *scores,
                  dynrag_error *err);

int64_t dr_vec_count(const dr_vec *v);
void dr_vec_free(dr_vec *v);

/* The 64-bit hash used for dense.faiss bytes. */
uint64_t dr_vec_hash(const void *data, size_t n);

#endif
