/* diags.c - the list of diagnostics one pipeline load produces. */
#include "pipeline/internal.h"
#include "core/alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dynrag_diags {
    char *file;
    dynrag_diag *items;
    size_t n, cap;
    size_t seq_dropped; /* diagnostics dropped by the cap */
};

dynrag_diags *dr_diags_new(const char *file)
{
    dynrag_diags *d = dr_calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->file = dr_strdup(file ? file : "<string>");
    if (d->file == NULL) {
        dr_free(d);
        return NULL;
    }
    return d;
}

/* A copy of s with every byte that is not part of valid UTF-8 replaced by
 * '?' (messages quote user text cut at a byte limit, which may split a
 * character). Caller frees; NULL on allocation failure. */
static char *utf8_clean(const char *s)
{
    size_t n = strlen(s);
    char *c = dr_strndup(s, n);
    if (c == NULL || dr_utf8_valid(c, n, NULL))
        return c;
    for (size_t i = 0; i < n;) {
        size_t bad = 0;
        if (dr_utf8_valid(c + i, n - i, &bad))
            break;
        i += bad;
        /* Replace the first byte of the bad sequence and go on after it. */
        c[i++] = '?';
    }
    return c;
}

/* Adds a diagnostic with an already formatted message (copied). */
static void diags_push(dynrag_diags *d, int line, int col, const char *path, const char *msg)
{
    if (d->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 8;
        dynrag_diag *ni = dr_realloc(d->items, ncap * sizeof(*ni));
        if (ni == NULL)
            return;
        d->items = ni;
        d->cap = ncap;
    }
    char *p = utf8_clean(path ? path : "");
    char *m = utf8_clean(msg);
    if (p == NULL || m == NULL) {
        dr_free(p);
        dr_free(m);
        return;
    }
    dynrag_diag *g = &d->items[d->n++];
    g->file = d->file;
    g->line = line;
    g->col = col;
    g->path = p;
    g->message = m;
}

void dr_diags_add(dynrag_diags *d, int line, int col, const char *path, const char *fmt, ...)
{
    if (d == NULL)
        return;
    if (d->n >= DR_DIAGS_MAX) {
        d->seq_dropped++;
        return;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    diags_push(d, line, col, path, msg);
}

void dr_pathf(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, size, fmt, ap);
    va_end(ap);
}

static int diag_cmp(const void *a, const void *b)
{
    const dynrag_diag *x = a, *y = b;
    /* Position-less diagnostics (line 0) go first: they concern the file. */
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return 0;
}

/* A stable sort: insertion sort over positions (lists are capped small). */
void dr_diags_sort(dynrag_diags *d)
{
    if (d == NULL)
        return;
    for (size_t i = 1; i < d->n; i++) {
        dynrag_diag t = d->items[i];
        size_t j = i;
        while (j > 0 && diag_cmp(&d->items[j - 1], &t) > 0) {
            d->items[j] = d->items[j - 1];
            j--;
        }
        d->items[j] = t;
    }
    if (d->seq_dropped > 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "too many errors: %zu more not shown", d->seq_dropped);
        diags_push(d, 0, 0, "", msg);
        d->seq_dropped = 0;
    }
}

size_t dynrag_diags_count(const dynrag_diags *d)
{
    return d ? d->n : 0;
}

const dynrag_diag *dynrag_diags_get(const dynrag_diags *d, size_t i)
{
    if (d == NULL || i >= d->n)
        return NULL;
    return &d->items[i];
}

/* Formats every diagnostic as "file:line:col: path: message\n"; the line
 * and column are left out when 0, the path when empty. Caller frees; NULL
 * on allocation failure. */
char *dynrag_diags_format(const dynrag_diags *d)
{
    dr_buf b = {0};
    int rc = DYNRAG_OK;
    for (size_t i = 0; d != NULL && i < d->n && rc == DYNRAG_OK; i++) {
        const dynrag_diag *g = &d->items[i];
        rc = dr_buf_puts(&b, g->file);
        if (rc == DYNRAG_OK && g->line > 0)
            rc = dr_buf_printf(&b, ":%d:%d", g->line, g->col);
        if (rc == DYNRAG_OK)
            rc = dr_buf_puts(&b, ": ");
        if (rc == DYNRAG_OK && g->path[0] != '\0')
            rc = dr_buf_printf(&b, "%s: ", g->path);
        if (rc == DYNRAG_OK)
            rc = dr_buf_printf(&b, "%s\n", g->message);
    }
    if (rc != DYNRAG_OK) {
        dr_buf_free(&b);
        return NULL;
    }
    return dr_buf_take(&b);
}

void dynrag_diags_free(dynrag_diags *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n; i++) {
        dr_free((char *)d->items[i].path);
        dr_free((char *)d->items[i].message);
    }
    dr_free(d->items);
    dr_free(d->file);
    dr_free(d);
}
