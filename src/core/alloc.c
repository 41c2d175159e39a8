/* alloc.c - the allocator hook (dynrag_set_allocator) and the dr_malloc
 * family every allocation of the library goes through. */
#include "core/alloc.h"

#include "dynrag/alloc.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *libc_malloc(void *user, size_t size)
{
    (void)user;
    return malloc(size);
}

static void *libc_calloc(void *user, size_t count, size_t size)
{
    (void)user;
    return calloc(count, size);
}

static void *libc_realloc(void *user, void *ptr, size_t size)
{
    (void)user;
    return realloc(ptr, size);
}

static void libc_free(void *user, void *ptr)
{
    (void)user;
    free(ptr);
}

static const dynrag_allocator default_allocator = {
    .malloc_fn = libc_malloc,
    .calloc_fn = libc_calloc,
    .realloc_fn = libc_realloc,
    .free_fn = libc_free,
    .user = NULL,
};

/* The installed allocator. Written only by dynrag_set_allocator(), which
 * its contract says runs while no other thread is inside the library. */
static dynrag_allocator cur = {
    .malloc_fn = libc_malloc,
    .calloc_fn = libc_calloc,
    .realloc_fn = libc_realloc,
    .free_fn = libc_free,
    .user = NULL,
};

static _Thread_local unsigned long failures;

unsigned long dr_alloc_failures(void)
{
    return failures;
}

/* p, counting a failure when it is NULL. */
static void *counted(void *p)
{
    if (p == NULL)
        failures++;
    return p;
}

void *dr_malloc(size_t size)
{
    return counted(cur.malloc_fn(cur.user, size ? size : 1));
}

void *dr_calloc(size_t count, size_t size)
{
    if (count == 0 || size == 0)
        count = size = 1;
    else if (count > SIZE_MAX / size)
        return counted(NULL);
    return counted(cur.calloc_fn(cur.user, count, size));
}

void *dr_realloc(void *ptr, size_t size)
{
    if (ptr == NULL)
        return dr_malloc(size);
    return counted(cur.realloc_fn(cur.user, ptr, size ? size : 1));
}

void dr_free(void *ptr)
{
    if (ptr != NULL)
        cur.free_fn(cur.user, ptr);
}

void *dr_mallocarray(size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size)
        return NULL;
    return dr_malloc(count * size);
}

void *dr_reallocarray(void *ptr, size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size)
        return NULL;
    return dr_realloc(ptr, count * size);
}

char *dr_strdup(const char *s)
{
    return s ? dr_strndup(s, strlen(s)) : NULL;
}

char *dr_strndup(const char *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *p = dr_malloc(n + 1);
    if (p == NULL)
        return NULL;
    if (n > 0)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void dr_libc_free(void *ptr)
{
    free(ptr);
}

/* cJSON's hooks have no user pointer and no realloc: trampolines into the
 * installed allocator (cJSON then grows its print buffers by copying). */
static void *cjson_malloc(size_t size)
{
    return dr_malloc(size);
}

static void cjson_free(void *ptr)
{
    dr_free(ptr);
}

/*
 * Installs `a` (or the C library's functions for NULL), and points cJSON at
 * it: cJSON's trampolines while a custom allocator is set, cJSON's own
 * defaults (malloc/free) with the default one, so that an application that
 * never sets an allocator sees cJSON exactly as it was.
 */
int dynrag_set_allocator(const dynrag_allocator *a)
{
    if (a != NULL && (a->malloc_fn == NULL || a->calloc_fn == NULL || a->realloc_fn == NULL ||
                      a->free_fn == NULL))
        return DYNRAG_ERR_INVALID;
    cur = a ? *a : default_allocator;
    if (a != NULL) {
        cJSON_Hooks hooks = {.malloc_fn = cjson_malloc, .free_fn = cjson_free};
        cJSON_InitHooks(&hooks);
    } else {
        cJSON_InitHooks(NULL);
    }
    return DYNRAG_OK;
}

void dynrag_free(void *ptr)
{
    dr_free(ptr);
}
