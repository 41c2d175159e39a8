/* jsonb.c - cJSON trees built with one out-of-memory flag (core/jsonb.h). */
#include "core/jsonb.h"

#include <math.h>

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
