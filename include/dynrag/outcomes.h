/*
 * dynrag/outcomes.h - outcome tables (docs/outcomes.md): converters from the
 * routing benchmarks' files, and routers trained on outcome tables
 * (docs/routers.md, "Routers trained on outcomes").
 */
#ifndef DYNRAG_OUTCOMES_H
#define DYNRAG_OUTCOMES_H

#include "dynrag/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a conversion read and wrote. */
typedef struct dynrag_convert_stats {
    size_t rows_read;    /* records in the input */
    size_t rows_written; /* lines in the output */
    size_t rows_dropped; /* records left out (RouterBench: a missing score) */
    size_t n_options;    /* models */
    int fractional;      /* RouterDC: 1 when scores are kept as fractions of samples */
    char task[64];       /* RouterDC: the task name taken from the file name */
} dynrag_convert_stats;

/*
 * Converts a RouterDC file (a JSON array of {"question", "scores": {model:
 * number}, ...}) to an outcome table at out_path (written atomically).
 * The task is the file name without folder, extension and a trailing
 * "_train"/"-train"/"_test"/"-test". Files whose name contains gsm8k,
 * humaneval, mbpp or javascript hold fractions of 10 samples, kept as
 * quality (they must lie in [0, 1]); the others hold probability-style
 * scores, and quality is 1 when the score is > 0, else 0. Ids are
 * "<task>-<index>". Errors name the file and the array element.
 */
int dynrag_convert_routerdc(const char *in_path, const char *out_path, dynrag_convert_stats *stats,
                            dynrag_error *err);

/*
 * Converts a RouterBench CSV file to an outcome table at out_path. The
 * models are the columns X for which a column "X|total_cost" exists;
 * quality is column X (0 or 1), cost_usd "X|total_cost" and response
 * "X|model_response" (when present). The query is the whole `prompt`
 * field (RouterBench stores it as a Python list string), the task
 * `eval_name` and the id `sample_id`. Rows with a missing score are
 * dropped and counted. The CSV parser follows RFC 4180 (quoted fields
 * with "" escapes and embedded newlines). Errors name file:line and column.
 */
int dynrag_convert_routerbench(const char *in_path, const char *out_path,
                               dynrag_convert_stats *stats, dynrag_error *err);

#ifdef __cplusplus
}
#endif
#endif
