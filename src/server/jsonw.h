/*
 * server/jsonw.h - a streaming JSON writer for hot response bodies
 * (internal).
 *
 * Appends JSON values to a dr_buf without building a cJSON tree. The bytes
 * are exactly those cJSON_PrintUnformatted() (cJSON 1.7.15, the version the
 * build uses) writes for the same
 * values, so a body written with these functions is indistinguishable from
 * one printed from a tree; tests/test_server_http.c checks that byte for
 * byte. Used by POST /v1/retrieve, whose body (ten chunk texts) dominated
 * the server's per-request JSON cost.
 */
#ifndef DYNRAG_SERVER_JSONW_H
#define DYNRAG_SERVER_JSONW_H

#include "core/util.h"

/* Appends s as a JSON string literal, quotes included, escaped as cJSON
 * escapes (\" \\ \b \f \n \r \t, other bytes below 0x20 as \u00xx, the
 * rest verbatim). NULL is written as "". Returns 0, or DYNRAG_ERR_NOMEM /
 * DYNRAG_ERR_LIMIT from the buffer (which is then left partly written). */
int dr_jsonw_str(dr_buf *b, const char *s);

/* The same for the n bytes at s (n = strlen(s) when the caller knows it;
 * a NUL among them is written as \u0000). */
int dr_jsonw_strn(dr_buf *b, const char *s, size_t n);

/* Appends d as cJSON 1.7.15 prints a number: null for NaN and infinities,
 * else "%1.15g", or "%1.17g" when the former does not read back as d.
 * Errors as above. */
int dr_jsonw_num(dr_buf *b, double d);

#endif
