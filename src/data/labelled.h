/*
 * data/labelled.h - a reader for labelled-example JSON Lines files
 * (internal). One example per line:
 *
 *   {"text": "who wrote hamlet", "label": "B", "source": "nq"}
 *
 * "text" and "label" are required non-empty strings of valid UTF-8;
 * "source" is optional (read as ""); other fields are ignored; blank lines
 * are skipped. This is the format `dynrag dataset complexity` writes and
 * the router trainers (data/logreg, nn/) read.
 *
 * Soft labels: a line may carry "targets", an object of label -> probability
 * (numbers in [0, 1] summing to 1 within 1e-3; at least one positive; keys
 * are labels like "label" values and join the label set), e.g.
 *
 *   {"text": "...", "targets": {"A": 0.1, "B": 0.7, "C": 0.2}}
 *
 * "label" is then optional and defaults to the most probable target (ties:
 * the label that sorts first). The classifier trainer (nn/) fits the targets
 * with cross-entropy; lines without "targets" count as one-hot of "label".
 */
#ifndef DYNRAG_DATA_LABELLED_H
#define DYNRAG_DATA_LABELLED_H

#include "dynrag/status.h"

#include <stddef.h>

#define DR_LABELLED_MAX_LINE 65536        /* bytes per line, newline excluded */
#define DR_LABELLED_MAX_COUNT 2000000     /* examples per file */
#define DR_LABELLED_MAX_LABELS 256        /* distinct labels per file */
#define DR_LABELLED_MAX_FILE (512u << 20) /* bytes per file */

typedef struct dr_labelled_set {
    size_t n;            /* examples */
    char **text;         /* [n] */
    char **label;        /* [n] the label strings */
    char **source;       /* [n] "" when absent */
    int *label_id;       /* [n] index into label_names */
    size_t n_labels;
    char **label_names;  /* [n_labels] distinct labels, sorted by strcmp */
    float *targets;      /* [n, n_labels] probability targets, rows summing to 1 (one-hot
                            for lines without "targets"); NULL when no line has any */
} dr_labelled_set;

/*
 * Reads a labelled JSONL file into *out (freed with dr_labelled_free()).
 * Label ids follow the sorted label names, so files with the same label set
 * agree on ids whatever their order. Fails with DYNRAG_ERR_NOTFOUND /
 * DYNRAG_ERR_IO when the file cannot be read, DYNRAG_ERR_PARSE or
 * DYNRAG_ERR_FORMAT with "path:line: ..." for a malformed line, and
 * DYNRAG_ERR_LIMIT past the caps above. *out is NULL on failure.
 */
int dr_labelled_load(const char *path, dr_labelled_set **out, dynrag_error *err);

/* Index of a label name in s->label_names, or -1. */
int dr_labelled_find_label(const dr_labelled_set *s, const char *name);

/* Frees a set; accepts NULL. */
void dr_labelled_free(dr_labelled_set *s);

#endif
