/* vec.c - FAISS index build, atomic save, checked load and search. */
#define _GNU_SOURCE
#include "retrieve/vec.h"

#include "core/util.h"

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dr_vec {
    FaissIndex *index;
    int dim;
    bool tunable;   /* nprobe can be set (an IVF index) */
    int cur_nprobe; /* 0 = as loaded */
    pthread_rwlock_t lock;
};

static int faiss_fail(dynrag_error *err, const char *what)
{
    const char *m = faiss_get_last_error();
    return dr_err_set(err, DYNRAG_ERR_VECTOR, "FAISS: %s: %s", what, m ? m : "failed");
}

uint64_t dr_vec_hash(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h ^= w * 0xff51afd7ed558ccdULL;
        h = (h << 29 | h >> 35) * 0xc4ceb9fe1a85ec53ULL;
    }
    for (; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static int vec_wrap(FaissIndex *index, int dim, dr_vec **out, dynrag_error *err)
{
    dr_vec *v = dr_calloc(1, sizeof(*v));
    if (v == NULL) {
        faiss_Index_free(index);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    v->index = index;
    v->dim = dim;
    pthread_rwlock_init(&v->lock, NULL);
    /* Probe whether nprobe applies (IVF somewhere inside). */
    FaissParameterSpace *ps = NULL;
    if (faiss_ParameterSpace_new(&ps) == 0) {
        v->tunable = faiss_ParameterSpace_set_index_parameter(ps, index, "nprobe", 1) == 0;
        faiss_ParameterSpace_free(ps);
    }
    v->cur_nprobe = v->tunable ? 1 : 0;
    *out = v;
    return DYNRAG_OK;
}

int dr_vec_build(const char *factory, int dim, const float *x, const int64_t *ids, size_t n,
                 dr_vec **out, dynrag_error *err)
{
    *out = NULL;
    char desc[160];
    if (strstr(factory, "IDMap") != NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "FAISS factory '%s': IDMap is added for you",
                          factory);
    if ((size_t)snprintf(desc, sizeof(desc), "IDMap2,%s", factory) >= sizeof(desc))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "FAISS factory string too long");
    FaissIndex *index = NULL;
    if (faiss_index_factory(&index, dim, desc, METRIC_INNER_PRODUCT) != 0)
        return faiss_fail(err, factory);
    if (!faiss_Index_is_trained(index)) {
        if (n == 0) {
            faiss_Index_free(index);
            return dr_err_set(err, DYNRAG_ERR_VECTOR,
                              "FAISS: index '%s' needs training but there are no vectors",
                              factory);
        }
        if (faiss_Index_train(index, (idx_t)n, x) != 0) {
            int rc = faiss_fail(err, "training");
            faiss_Index_free(index);
            return rc;
        }
    }
    if (n > 0 && faiss_Index_add_with_ids(index, (idx_t)n, x, ids) != 0) {
        int rc = faiss_fail(err, "adding vectors");
        faiss_Index_free(index);
        return rc;
    }
    return vec_wrap(index, dim, out, err);
}

int dr_vec_save(const dr_vec *v, const char *path, uint64_t *hash, dynrag_error *err)
{
    char *data = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&data, &len);
    if (f == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    int wrc = faiss_write_index(v->index, f);
    int crc = fclose(f);
    int rc = DYNRAG_OK;
    if (wrc != 0)
        rc = faiss_fail(err, "serialising");
    else if (crc != 0)
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "FAISS: serialising: out of memory");
    if (rc == DYNRAG_OK) {
        *hash = dr_vec_hash(data, len);
        rc = dr_write_file_atomic(path, data, len, err);
    }
    dr_libc_free(data); /* open_memstream()'s */
    return rc;
}

int dr_vec_load(const char *path, int dim, uint64_t expect_hash, dr_vec **out, dynrag_error *err)
{
    char *data = NULL;
    size_t len = 0;
    FaissIndex *index = NULL;
    *out = NULL;
    int rc = dr_read_file(path, (size_t)1 << 40, &data, &len, err);
    if (rc != DYNRAG_OK)
        return rc;
    if (dr_vec_hash(data, len) != expect_hash) {
        /* the advice names the index folder: the one holding path */
        const char *slash = strrchr(path, '/');
        int dir_len = slash ? (int)(slash - path) : 1;
        rc = dr_err_set(err, DYNRAG_ERR_STATE,
                        "%s does not match index.db (damaged, or left by an interrupted "
                        "write); any write rebuilds it from the stored vectors: run "
                        "`dynrag index --index %.*s INPUT...` (INPUT: a corpus file or folder "
                        "to add, e.g. one it was built from)",
                        path, dir_len, slash ? path : ".");
        goto cleanup;
    }
    FILE *f = fmemopen(data, len, "rb");
    if (f == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    int frc = faiss_read_index(f, 0, &index);
    fclose(f);
    if (frc != 0) {
        rc = faiss_fail(err, path);
        goto cleanup;
    }
    if (faiss_Index_d(index) != dim) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: dimension %d, index.db says %d", path,
                        (int)faiss_Index_d(index), dim);
        faiss_Index_free(index);
        goto cleanup;
    }
    rc = vec_wrap(index, dim, out, err);
cleanup:
    dr_free(data);
    return rc;
}

/* One query runs on the calling thread: FAISS would otherwise fork an
 * OpenMP team per query, which costs more than it saves for one vector
 * (measured on SciFact Flat: median 12 ms vs 1.8 ms on a busy 2-core
 * machine) and competes with concurrent searching threads. The OpenMP
 * thread count is the calling thread's own setting and is restored. */
static int do_search(dr_vec *v, const float *q, size_t k, int64_t *labels, float *scores,
                     dynrag_error *err)
{
    int prev = omp_get_max_threads();
    omp_set_num_threads(1);
    int frc = faiss_Index_search(v->index, 1, q, (idx_t)k, scores, labels);
    omp_set_num_threads(prev);
    if (frc != 0)
        return faiss_fail(err, "search");
    return DYNRAG_OK;
}

int dr_vec_search(dr_vec *v, const float *q, size_t k, int nprobe, int64_t *labels, float *scores,
                  dynrag_error *err)
{
    int want = !v->tunable ? 0 : (nprobe > 0 ? nprobe : 1); /* FAISS default: 1 */
    int rc;
    pthread_rwlock_rdlock(&v->lock);
    if (!v->tunable || want == v->cur_nprobe) {
        rc = do_search(v, q, k, labels, scores, err);
        pthread_rwlock_unlock(&v->lock);
        return rc;
    }
    pthread_rwlock_unlock(&v->lock);
    pthread_rwlock_wrlock(&v->lock);
    FaissParameterSpace *ps = NULL;
    rc = DYNRAG_OK;
    if (faiss_ParameterSpace_new(&ps) != 0 ||
        faiss_ParameterSpace_set_index_parameter(ps, v->index, "nprobe", want) != 0)
        rc = faiss_fail(err, "setting nprobe");
    faiss_ParameterSpace_free(ps);
    if (rc == DYNRAG_OK) {
        v->cur_nprobe = want;
        rc = do_search(v, q, k, labels, scores, err);
    }
    pthread_rwlock_unlock(&v->lock);
    return rc;
}

int64_t dr_vec_count(const dr_vec *v)
{
    return v ? (int64_t)faiss_Index_ntotal(v->index) : 0;
}

void dr_vec_free(dr_vec *v)
{
    if (v == NULL)
        return;
    faiss_Index_free(v->index);
    pthread_rwlock_destroy(&v->lock);
    dr_free(v);
}
