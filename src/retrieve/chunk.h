/*
 * retrieve/chunk.h - sentence-aware chunking (internal).
 *
 * A chunk is a run of whole sentences (core/text.h dr_text_sentences) of
 * about chunk_tokens words: sentences are added while the total stays within
 * chunk_tokens (a chunk always gets at least one). The next chunk starts with
 * the last sentences of the previous one that together have at most
 * chunk_overlap words. A sentence longer than chunk_tokens is cut into
 * windows of chunk_tokens words that start every chunk_tokens -
 * chunk_overlap words. Words are core/text.h words.
 */
#ifndef DYNRAG_RETRIEVE_CHUNK_H
#define DYNRAG_RETRIEVE_CHUNK_H

#include "dynrag/status.h"

#include <stddef.h>

typedef struct dr_chunk_span {
    size_t start, end; /* byte span [start, end) in the text */
    size_t words;
} dr_chunk_span;

/* Chunks text[0..n). *out gets a malloc'ed array of *n_out spans in order
 * (NULL and 0 for text without sentences). Needs 0 <= overlap < tokens.
 * Fails with DYNRAG_ERR_INVALID or DYNRAG_ERR_NOMEM. */
int dr_chunk_text(const char *text, size_t n, int chunk_tokens, int chunk_overlap,
                  dr_chunk_span **out, size_t *n_out, dynrag_error *err);

#endif
