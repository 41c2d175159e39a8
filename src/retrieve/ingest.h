/*
 * retrieve/ingest.h - reading documents from JSONL files and folders
 * (internal).
 *
 * JSONL: one JSON object per line (blank lines are skipped), with an id in
 * "_id" or "id" (string or integer), the text in "text" or "contents" and
 * an optional "title" (BEIR and Pyserini layouts). Folders are walked
 * recursively (sorted, hidden entries skipped) for .txt, .md, .html and
 * .htm files: the document id is the path relative to the folder, the title
 * the <title> or first heading (HTML), the first "#" heading (Markdown), or
 * else the file name. A single such file given directly gets its path as
 * given for id. Invalid UTF-8 is replaced with U+FFFD; titles are made one
 * line.
 */
#ifndef DYNRAG_RETRIEVE_INGEST_H
#define DYNRAG_RETRIEVE_INGEST_H

#include "dynrag/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DR_INGEST_MAX_FILE ((size_t)256 << 20) /* bytes per input file (not JSONL) */
#define DR_INGEST_MAX_LINE ((size_t)64 << 20)  /* bytes per JSONL line */

typedef struct dr_doc {
    const char *doc_id;
    const char *title; /* "" when none */
    const char *text;
    const char *source; /* the file it came from */
    long line;          /* JSONL line (1-based), 0 for files */
} dr_doc;

/* Receives each document; the strings live until it returns. A non-zero
 * return (a status, with err filled) stops the reading. */
typedef int (*dr_doc_fn)(void *user, const dr_doc *doc, dynrag_error *err);

/* Reads one input (a JSONL file, a folder or a single text/HTML file) and
 * calls fn per document. Malformed input fails with "file:line: reason" and
 * DYNRAG_ERR_PARSE, unless skip_bad: then it is counted in *bad, logged,
 * and reading goes on. Fails with DYNRAG_ERR_NOTFOUND / DYNRAG_ERR_IO /
 * DYNRAG_ERR_INVALID (unsupported file type) as well. */
int dr_ingest_input(const char *path, bool skip_bad, dr_doc_fn fn, void *user, uint64_t *bad,
                    dynrag_error *err);


#endif
