/*
 * generate/passage.h - a retrieved passage as the generation stage sees it.
 *
 * The strings are borrowed: they belong to the caller (usually a
 * dynrag_hits) and must outlive any call that takes the passage. Any of
 * them may be NULL (treated as ""). The text need not be valid UTF-8: every
 * function of src/generate/ copes and writes only valid UTF-8.
 */
#ifndef DYNRAG_GENERATE_PASSAGE_H
#define DYNRAG_GENERATE_PASSAGE_H

#include <stdint.h>

typedef struct dr_passage {
    const char *doc_id;
    const char *title;
    const char *text;
    double score;     /* retrieval score; passages are given best first */
    int64_t chunk_id; /* negative when unknown (e.g. whole documents) */
} dr_passage;

#endif
