/*
 * embed/embedder.h - the embedder interface (internal).
 *
 * An embedder turns texts into L2-normalised float vectors of a fixed
 * dimension. Implementations: "builtin" (embed/builtin.c: hashed word and
 * character n-grams with sublinear TF and IDF learned at index time; works
 * offline) and "openai" (embed/openai.c: POST {base_url}/embeddings on any
 * OpenAI-compatible server).
 *
 * An index records its embedder's identity string; opening an index with an
 * embedder of another identity fails with DYNRAG_ERR_MISMATCH. embed() is
 * safe to call from several threads at once on one embedder.
 */
#ifndef DYNRAG_EMBED_EMBEDDER_H
#define DYNRAG_EMBED_EMBEDDER_H

#include "dynrag/status.h"

#include <stddef.h>

typedef struct dr_embedder dr_embedder;

typedef struct dr_embedder_vtable {
    /* Embeds n texts into out[n * dim] (row-major), each row L2-normalised
     * (an all-zero row for a text with no features). */
    int (*embed)(dr_embedder *e, const char *const *texts, size_t n, float *out,
                 dynrag_error *err);
    void (*free)(dr_embedder *e);
} dr_embedder_vtable;

struct dr_embedder {
    const dr_embedder_vtable *vt;
    int dim;
    /* e.g. "builtin:v1:dim=256:ngrams=w1,w2,c3-5" or "openai:text-embedding-3-small:dim=1536" */
    char identity[256];
};

/* Configuration of an embedder, as a pipeline's embedder option gives it. */
typedef struct dr_embedder_config {
    const char *kind;     /* "builtin" or "openai" */
    int dim;              /* builtin: dimension (default 256); openai: expected, 0 = any */
    /* openai only */
    const char *base_url; /* e.g. http://127.0.0.1:8000/v1 */
    const char *model;
    const char *api_key;  /* may be NULL */
    double timeout_s;
    int max_retries;
    int batch_size;       /* texts per request, default 64 */
} dr_embedder_config;

static inline int dr_embed(dr_embedder *e, const char *const *texts, size_t n, float *out,
                           dynrag_error *err)
{
    return e->vt->embed(e, texts, n, out, err);
}

/* Destroys an embedder; accepts NULL. */
static inline void dr_embedder_free(dr_embedder *e)
{
    if (e)
        e->vt->free(e);
}

/* Creates the openai embedder (embed/openai.c). */
int dr_embedder_openai_create(const dr_embedder_config *cfg, dr_embedder **out,
                              dynrag_error *err);

#endif
