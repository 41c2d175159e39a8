/*
 * engine/record.h - a query's route-log record and its result (internal to
 * the engine; the result accessors are public in dynrag/engine.h).
 */
#ifndef DYNRAG_ENGINE_RECORD_H
#define DYNRAG_ENGINE_RECORD_H

#include "engine/query.h"

/* The route-log record of query `s` with id `id`; `error` (may be NULL)
 * replaces the answer. Caller frees with cJSON_Delete; NULL on NOMEM. */
cJSON *dr_q_build_record(const qstate *s, const char *id, const char *error);

/* Appends `line` and a newline to the engine's route log under its lock (no-op
 * when not logging). Fails with DYNRAG_ERR_IO naming the log. */
int dr_engine_write_log(dynrag_engine *e, const char *line, dynrag_error *err);

/* Fills res (answer, citations, retrieved, context, decisions, totals and,
 * when rec is not NULL, the record's JSON) from the state; res owns copies. Returns DYNRAG_ERR_NOMEM
 * on allocation failure, leaving res for dynrag_result_free. */
int dr_q_fill_result(dynrag_result *res, const qstate *s, cJSON *rec);

#endif
