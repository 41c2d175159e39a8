/*
 * dynrag/alloc.h - the allocator hook: every heap block DynamicRAG's own
 * code allocates goes through one process-wide set of functions, which an
 * application may replace (to account memory, to use its own arena, or to
 * fail allocations on purpose in tests, as tests/test_oom.c does).
 *
 * What goes through the hook: every allocation of the library's C code and
 * of cJSON (the library installs cJSON_InitHooks() trampolines while a
 * custom allocator is set). What does not: SQLite, libyaml, libcurl,
 * libmicrohttpd, FAISS and the C++ runtime, and the C library's own
 * allocations (realpath(), open_memstream()), which keep their own
 * allocators (lines read from files are the library's own allocations).
 * SQLite is not routed through sqlite3_config(SQLITE_CONFIG_MALLOC): that
 * call is process-wide for every SQLite user in the process, is refused
 * once any of them has initialised SQLite, and needs the size of a live
 * block (xSize), which this hook does not provide. See docs/library.md.
 */
#ifndef DYNRAG_ALLOC_H
#define DYNRAG_ALLOC_H

#include "dynrag/common.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * An allocator. All four functions are required; each receives `user`.
 * The library never passes a size of 0 (it asks for at least 1 byte), never
 * passes NULL to realloc_fn or free_fn, and asks calloc_fn only for counts
 * whose product does not overflow size_t. A function returns NULL when it
 * cannot allocate; the library then fails the call with DYNRAG_ERR_NOMEM
 * (or the documented error of that call) and releases what it held.
 * The functions may be called from any thread the library runs on (server
 * worker threads included), concurrently: they must be thread-safe.
 */
typedef struct dynrag_allocator {
    void *(*malloc_fn)(void *user, size_t size);
    void *(*calloc_fn)(void *user, size_t count, size_t size);
    void *(*realloc_fn)(void *user, void *ptr, size_t size);
    void (*free_fn)(void *user, void *ptr);
    void *user;
} dynrag_allocator;

/*
 * Installs a process-wide allocator (copied; `a` need not outlive the
 * call), or restores the C library's malloc/calloc/realloc/free when `a` is
 * NULL. Returns DYNRAG_OK, or DYNRAG_ERR_INVALID (nothing changed) when one
 * of the four functions is NULL.
 *
 * Call it before any other DynamicRAG call, or at a moment when no memory
 * the library allocated is live: every handle closed, every result and
 * every "caller frees" string released. A block allocated through one
 * allocator is released through whatever allocator is installed when it is
 * freed, so switching while blocks are live hands them to the wrong free
 * function (undefined behaviour unless both allocators are compatible).
 * The call is not synchronised: no other thread may be inside the library
 * while it runs.
 */
DYNRAG_API int dynrag_set_allocator(const dynrag_allocator *a);

/*
 * Releases memory the library returned as "caller frees" (strings such as
 * dynrag_pipeline_to_json()'s) through the installed allocator. With the
 * default allocator free() does the same. Accepts NULL.
 */
DYNRAG_API void dynrag_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif
