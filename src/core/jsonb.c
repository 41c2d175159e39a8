/* jsonb.c - cJSON trees built with one out-of-memory flag (core/jsonb.h). */
#include "core/jsonb.h"

#include "core/alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cJSON *dr_jb_add(dr_jb *b, cJSON *parent, const char *key, cJSON *item)
{
    bool ok = item != NULL && parent != NULL &&
              (key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item));
    if (!ok) {
        cJSON_Delete(item);
        b->nomem = true;
        return NULL;
    }
    return item;
}

cJSON *dr_jb_obj(dr_jb *b, cJSON *parent, const char *key)
{
    return dr_jb_add(b, parent, key, cJSON_CreateObject());
}

cJSON *dr_jb_arr(dr_jb *b, cJSON *parent, const char *key)
{
    return dr_jb_add(b, parent, key, cJSON_CreateArray());
}

void dr_jb_num(dr_jb *b, cJSON *parent, const char *key, double v)
{
    dr_jb_add(b, parent, key, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
}

void dr_jb_str(dr_jb *b, cJSON *parent, const char *key, const char *s)
{
    dr_jb_add(b, parent, key, s ? cJSON_CreateString(s) : cJSON_CreateNull());
}

void dr_jb_bool(dr_jb *b, cJSON *parent, const char *key, bool v)
{
    dr_jb_add(b, parent, key, cJSON_CreateBool(v));
}

void dr_jb_null(dr_jb *b, cJSON *parent, const char *key)
{
    dr_jb_add(b, parent, key, cJSON_CreateNull());
}

void dr_jb_copy(dr_jb *b, cJSON *parent, const char *key, const cJSON *item)
{
    if (item != NULL)
        dr_jb_add(b, parent, key, cJSON_Duplicate(item, 1));
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

cJSON *dr_json_parse_line(const char *text, size_t len, char *why, size_t whysize)
{
    if (whysize > 0)
        why[0] = '\0';
    unsigned long failed = dr_alloc_failures();
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (v == NULL) {
        if (dr_alloc_failures() == failed)
            snprintf(why, whysize, "not valid JSON");
        return NULL;
    }
    const char *stop = text + len;
    while (end != NULL && end < stop &&
           (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end != NULL && end < stop) {
        snprintf(why, whysize, "text after the JSON value at column %zu",
                 (size_t)(end - text) + 1);
        cJSON_Delete(v);
        return NULL;
    }
    if (!cJSON_IsObject(v))
        return v;
    /* Duplicate keys: sort the key pointers (a hostile line may hold many). */
    size_t n = 0;
    for (const cJSON *f = v->child; f != NULL; f = f->next)
        n++;
    const char **keys = dr_malloc((n ? n : 1) * sizeof(*keys));
    if (keys == NULL) {
        cJSON_Delete(v);
        return NULL;
    }
    n = 0;
    for (const cJSON *f = v->child; f != NULL; f = f->next)
        keys[n++] = f->string ? f->string : "";
    qsort(keys, n, sizeof(*keys), cmp_key);
    for (size_t i = 1; i < n; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            snprintf(why, whysize, "key '%.64s' given twice", keys[i]);
            dr_free(keys);
            cJSON_Delete(v);
            return NULL;
        }
    dr_free(keys);
    return v;
}
