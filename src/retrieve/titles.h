/*
 * retrieve/titles.h - the indexed documents' titles as a set of keys
 * (internal), for linking the entities a passage names to documents of the
 * index (generate/reformulate.h, multi-step retrieval).
 */
#ifndef DYNRAG_RETRIEVE_TITLES_H
#define DYNRAG_RETRIEVE_TITLES_H

#include "dynrag/index.h"

#include <stddef.h>
#include <stdint.h>

/* Makes a title's key (0: no key). Every caller passes the same function. */
typedef uint64_t (*dr_title_keyfn)(const char *title, size_t len);

/*
 * The sorted, distinct keys keyfn(title) of the documents of idx (titles
 * without a key left out), read from index.db on the first call per index
 * generation and kept with it: one SQLite scan of the docs table and 8 bytes
 * per document. *pin gets what the keys belong to (the generation's
 * snapshot, or NULL): pass it to dr_index_unpin() when done with the keys.
 * Returns NULL with *n = 0 when the titles cannot be read (a warning is
 * logged once) or idx or keyfn is NULL. Thread-safe.
 */
const uint64_t *dr_index_title_keys(dynrag_index *idx, dr_title_keyfn keyfn, size_t *n,
                                    dynrag_index **pin);

/* Releases what dr_index_title_keys() pinned. Accepts NULL. */
void dr_index_unpin(dynrag_index *pin);

#endif
