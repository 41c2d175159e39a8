/*
 * core/alloc.h - the library's one set of allocation functions (not public
 * API). Every heap allocation of src/ (outside the CLI) goes through these,
 * so that dynrag_set_allocator() (include/dynrag/alloc.h) sees every block:
 * a raw malloc/calloc/realloc/free/strdup in src/ is a bug (the test
 * raw_alloc_calls greps for them).
 *
 * Semantics are those of the C library's functions, with three
 * guarantees the hook functions may rely on: a size of 0 becomes 1 (so
 * success is never NULL), dr_realloc(NULL, n) is dr_malloc(n), and
 * dr_free(NULL) does nothing. dr_realloc(p, 0) reallocates to 1 byte; it
 * does not free.
 *
 * Blocks from the C library itself (realpath(), open_memstream()) are not
 * ours: release them with dr_libc_free(), never dr_free().
 */
#ifndef DYNRAG_CORE_ALLOC_H
#define DYNRAG_CORE_ALLOC_H

#include <stddef.h>

void *dr_malloc(size_t size);
/* Zeroed count * size bytes; NULL (no call to the hook) when the product
 * overflows size_t. */
void *dr_calloc(size_t count, size_t size);
void *dr_realloc(void *ptr, size_t size);
void dr_free(void *ptr);

/* count * size bytes (uninitialised), or NULL when the product overflows. */
void *dr_mallocarray(size_t count, size_t size);
/* Resizes ptr to count * size bytes; NULL (ptr untouched) on overflow or
 * allocation failure. */
void *dr_reallocarray(void *ptr, size_t count, size_t size);

/* strdup that returns NULL for NULL. */
char *dr_strdup(const char *s);
/* A NUL-terminated copy of the first n bytes of s (s must have n readable
 * bytes; embedded NULs are copied). NULL on allocation failure. */
char *dr_strndup(const char *s, size_t n);

/* How many allocations through these functions (and cJSON's, while a
 * custom allocator is installed) have failed on the calling thread so far.
 * A caller whose callee cannot tell "out of memory" from another failure
 * (cJSON_Parse returns NULL for both) compares the count before and after. */
unsigned long dr_alloc_failures(void);

/* free() for blocks the C library allocated on its own (realpath(),
 * open_memstream()). */
void dr_libc_free(void *ptr);

#endif
