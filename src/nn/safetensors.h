/*
 * nn/safetensors.h - reading and writing safetensors weight files (internal).
 *
 * Layout (all integers little-endian; docs/weights-format.md has the byte
 * by byte description):
 *
 *   offset 0      u64 N: length of the header in bytes
 *   offset 8      N bytes of UTF-8 JSON, an object:
 *                   { "__metadata__": { "key": "string value", ... },   (optional)
 *                     "tensor.name": { "dtype": "F32", "shape": [d0, d1, ...],
 *                                      "data_offsets": [begin, end] }, ... }
 *                 padded with spaces so that 8 + N is a multiple of 8
 *   offset 8 + N  the data area: each tensor's raw bytes at [begin, end)
 *                 relative to the start of the data area, row-major, LE
 *
 * The reader validates everything before handing out a tensor: the header
 * length against the file size and a cap, the JSON, every dtype, shape and
 * offset pair (end - begin must equal the element count times the dtype
 * size, offsets inside the data area, tensors may not overlap and must tile
 * the data area without holes, as upstream safetensors requires), duplicate
 * names, and that metadata values are strings. Any violation is a
 * DYNRAG_ERR_FORMAT with a message naming the tensor and field.
 */
#ifndef DYNRAG_NN_SAFETENSORS_H
#define DYNRAG_NN_SAFETENSORS_H

#include "dynrag/status.h"

#include <stddef.h>
#include <stdint.h>

/* Largest header accepted (bytes). Upstream uses 100 MB; ours holds a
 * tokenizer at most, so 64 MiB is ample. */
#define DR_ST_MAX_HEADER ((uint64_t)64 << 20)
#define DR_ST_MAX_DIMS 8

typedef enum dr_st_dtype {
    DR_ST_F64, DR_ST_F32, DR_ST_F16, DR_ST_BF16, DR_ST_I64, DR_ST_I32, DR_ST_I16,
    DR_ST_I8, DR_ST_U8, DR_ST_BOOL
} dr_st_dtype;

typedef struct dr_st_tensor {
    char *name;
    dr_st_dtype dtype;
    int ndim;
    uint64_t shape[DR_ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;   /* byte offsets in the data area */
    const uint8_t *data;   /* points into the mapping/buffer (may be unaligned) */
} dr_st_tensor;

typedef struct dr_st_file dr_st_file;

/* Maps path read-only and parses it. *out is closed with dr_st_close(),
 * which unmaps the file. Fails with DYNRAG_ERR_IO (cannot open/map) or
 * DYNRAG_ERR_FORMAT (any validation failure), message naming path. */
int dr_st_open(const char *path, dr_st_file **out, dynrag_error *err);

/* Parses an in-memory file of len bytes. The buffer is borrowed: it must
 * outlive *out. Same validation as dr_st_open (used by the fuzzer). */
int dr_st_parse(const void *buf, size_t len, dr_st_file **out, dynrag_error *err);

void dr_st_close(dr_st_file *f);

size_t dr_st_count(const dr_st_file *f);
const dr_st_tensor *dr_st_at(const dr_st_file *f, size_t i);
/* Tensor by name, NULL if absent. */
const dr_st_tensor *dr_st_find(const dr_st_file *f, const char *name);
/* Metadata string by key, NULL if absent. Owned by f. */
const char *dr_st_meta(const dr_st_file *f, const char *key);

/* Copies tensor `name` into dst as host floats after checking that it
 * exists, is F32 and has exactly the given shape. Errors: DYNRAG_ERR_NOTFOUND
 * (missing), DYNRAG_ERR_MISMATCH (dtype or shape), each naming the tensor. */
int dr_st_read_f32(const dr_st_file *f, const char *name, int ndim, const uint64_t *shape,
                   float *dst, dynrag_error *err);
/* The checks of dr_st_read_f32 (same errors) without copying: lets a loader
 * check that a file holds the sizes its config claims before it allocates
 * anything of those sizes. */
int dr_st_check_f32(const dr_st_file *f, const char *name, int ndim, const uint64_t *shape,
                    dynrag_error *err);

/* ---- writer ----------------------------------------------------------- */

typedef struct dr_st_writer dr_st_writer;

dr_st_writer *dr_st_writer_new(void);
void dr_st_writer_free(dr_st_writer *w);
/* Adds an F32 tensor; data is borrowed until dr_st_writer_save(). */
int dr_st_writer_add_f32(dr_st_writer *w, const char *name, int ndim, const uint64_t *shape,
                         const float *data, dynrag_error *err);
/* Adds a metadata key (value copied). */
int dr_st_writer_meta(dr_st_writer *w, const char *key, const char *value, dynrag_error *err);
/* Serialises to memory (caller frees *out) or atomically to path. */
int dr_st_writer_serialize(dr_st_writer *w, uint8_t **out, size_t *out_len, dynrag_error *err);
int dr_st_writer_save(dr_st_writer *w, const char *path, dynrag_error *err);

#endif
