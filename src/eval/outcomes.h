/*
 * eval/outcomes.h - outcome tables: per-query recorded outcomes of every
 * option (internal API shared by the outcome evaluation and the trained
 * routers).
 *
 * File format (docs/outcomes.md): JSONL, one query per line,
 *
 *   {"id": "...", "query": "...", "task": "..."?,
 *    "outcomes": {"<option>": {"quality": q, "cost_usd": c?, "latency_ms": l?,
 *                              "response": "..."?}, ...}}
 *
 * quality is a number in [0, 1]; cost_usd and latency_ms are finite numbers
 * >= 0. Blank lines are skipped. Every line is validated and an error names
 * "path:line: field: message"; ids must be unique, strings valid UTF-8
 * without NUL, and unknown keys are rejected (a misspelt "quality" would
 * otherwise silently read as a missing outcome).
 */
#ifndef DYNRAG_EVAL_OUTCOMES_H
#define DYNRAG_EVAL_OUTCOMES_H

#include "core/util.h"
#include "dynrag/status.h"

#include <stdbool.h>
#include <stddef.h>

/* Limits: a file of at most 1 GiB, lines of at most 64 MiB, 256 options. */
#define DR_OUTCOMES_MAX_FILE ((size_t)1 << 30)
#define DR_OUTCOMES_MAX_LINE ((size_t)64 << 20)
#define DR_OUTCOMES_MAX_OPTIONS 256

typedef struct dr_outcome {
    double quality;    /* [0, 1] */
    double cost_usd;   /* 0 when absent */
    double latency_ms; /* 0 when absent */
    char *response;    /* NULL when absent; owned by the table */
    bool present;      /* false: this row has no outcome for this option */
    bool has_cost, has_latency;
} dr_outcome;

typedef struct dr_outcome_row {
    char *id, *query, *task; /* task NULL when absent; owned by the table */
    dr_outcome *o;           /* n_options entries, indexed like table->options */
} dr_outcome_row;

typedef struct dr_outcome_table {
    char **options;
    size_t n_options; /* union of option names, in first-seen order */
    dr_outcome_row *rows;
    size_t n_rows;
} dr_outcome_table;

/* Reads and validates PATH. 0 on success (caller frees with dr_outcomes_free), else a
 * negative dynrag status with err naming path:line and field. */
int dr_outcomes_load(const char *path, dr_outcome_table *t, dynrag_error *err);
void dr_outcomes_free(dr_outcome_table *t);                          /* accepts a zeroed table */
int dr_outcomes_option(const dr_outcome_table *t, const char *name); /* index or -1 */

/* ---- additions (not part of the original contract) --------------------- */

/*
 * Parses outcome-table text already in memory (len bytes; NUL bytes inside
 * are rejected), naming errors after `name` as dr_outcomes_load does. Same
 * ownership rules. Used by dr_outcomes_load and by tests.
 */
int dr_outcomes_parse(const char *name, const char *data, size_t len, dr_outcome_table *t,
                      dynrag_error *err);

/*
 * Appends one row as a JSONL line (with the trailing newline) to b. Options
 * without `present` are left out. The line reads back equal through
 * dr_outcomes_parse (numbers are printed with 17 significant digits).
 * Fails (DYNRAG_ERR_NOMEM / DYNRAG_ERR_LIMIT) leaving b valid.
 */
int dr_outcomes_write_row(const dr_outcome_table *t, const dr_outcome_row *row, dr_buf *b);

#endif
