/*
 * core/jsonb.h - building cJSON trees that are complete or known to be
 * incomplete.
 *
 * cJSON's Add/Create functions return NULL when an allocation fails, and
 * adding a NULL item (or adding to a NULL parent) is silently skipped, which
 * leaks the item or drops the member: a route-log record built with them
 * under memory pressure comes out with pieces missing and nobody told. The
 * functions here never lose track: each one that cannot add what it was
 * given frees it and sets the builder's sticky `nomem` flag, so a caller
 * builds a whole tree without checking every call and then checks the flag
 * once (and fails with DYNRAG_ERR_NOMEM).
 *
 * A parent of NULL is a parent whose creation failed (the flag is already
 * set): every function accepts it and does nothing but free its item.
 */
#ifndef DR_CORE_JSONB_H
#define DR_CORE_JSONB_H

#include <cjson/cJSON.h>
#include <stdbool.h>

typedef struct dr_jb {
    bool nomem; /* some add failed: the tree is incomplete */
} dr_jb;

/* Adds item to parent under key (an object), or appends it (key NULL, an
 * array). Returns item, or NULL (item freed, flag set) when item is NULL,
 * parent is NULL, or the key could not be copied. */
cJSON *dr_jb_add(dr_jb *b, cJSON *parent, const char *key, cJSON *item);

/* A new empty object / array added to parent (as dr_jb_add). */
cJSON *dr_jb_obj(dr_jb *b, cJSON *parent, const char *key);
cJSON *dr_jb_arr(dr_jb *b, cJSON *parent, const char *key);

/* Scalars added to parent (as dr_jb_add). A non-finite number is written as
 * null (JSON has no NaN); a NULL string as null. */
void dr_jb_num(dr_jb *b, cJSON *parent, const char *key, double v);
void dr_jb_str(dr_jb *b, cJSON *parent, const char *key, const char *s);
void dr_jb_bool(dr_jb *b, cJSON *parent, const char *key, bool v);
void dr_jb_null(dr_jb *b, cJSON *parent, const char *key);

/* A deep copy of item added to parent (nothing added when item is NULL). */
void dr_jb_copy(dr_jb *b, cJSON *parent, const char *key, const cJSON *item);

/*
 * Parses one line of a JSON Lines file, text[0..len): exactly one JSON value,
 * white space around it allowed, nothing after it, and, when it is an
 * object, no key given twice at its top level (cJSON would keep the first
 * silently; a line "{...}{...}" would lose its second record). Returns the
 * value (caller deletes), or NULL with why[0..whysize) saying what is wrong
 * ("not valid JSON", "text after the JSON value at column N", "key 'k'
 * given twice") — or with why "" when memory ran out.
 */
cJSON *dr_json_parse_line(const char *text, size_t len, char *why, size_t whysize);

#endif
