/*
 * fuzz_files.h - whole-file helpers shared by the libFuzzer harnesses that
 * write their inputs (or damaged copies of template files) to disk.
 */
#ifndef DYNRAG_FUZZ_FILES_H
#define DYNRAG_FUZZ_FILES_H

#include <stdio.h>
#include <stdlib.h>

/* The whole file in a malloc'd buffer (*len bytes), or NULL. */
static inline unsigned char *fuzz_read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            unsigned char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *len = n;
    return buf;
}

/* Writes p[0..len) as the whole file; 0, or -1 on failure. */
static inline int fuzz_write_all(const char *path, const void *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    size_t w = len ? fwrite(p, 1, len, f) : 0;
    return fclose(f) == 0 && w == len ? 0 : -1;
}

#endif
