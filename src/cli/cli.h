/*
 * cli/cli.h - shared pieces of the dynrag command-line tool.
 *
 * The CLI uses only the public API in include/dynrag/. Every subcommand is
 * one row of the commands[] table in main.c and one cmd_<name>() function
 * in a cmd_<name>.c file. A command returns its exit code: 0 success,
 * 1 failure of the work (bad input file, failed query), 2 usage error.
 */
#ifndef DYNRAG_CLI_H
#define DYNRAG_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dynrag/dynrag.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef struct cli_command {
    const char *name;
    const char *summary; /* one line for `dynrag help` */
    const char *usage;   /* full text for `dynrag <cmd> --help` */
    int (*run)(int argc, char **argv);
} cli_command;

/* Command handlers (one per cmd_*.c file). */
int cmd_query(int argc, char **argv);
int cmd_feedback(int argc, char **argv);
int cmd_log(int argc, char **argv);
/* Command handlers (one cmd_<name>.c each). */
int cmd_index(int argc, char **argv);
int cmd_retrieve(int argc, char **argv);

/* Looks a command up by name; NULL if unknown. */
const cli_command *cli_find_command(const char *name);

/* Prints "dynrag <cmd>: message" on stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the usage error and a hint to use --help; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a command's --help text to stdout. */
void cli_print_usage(const char *cmd);
/* True when argv contains -h or --help before "--". */
bool cli_wants_help(int argc, char **argv);

/* Checked number parsing for flags: on failure prints which flag is wrong. */
bool cli_parse_int(const char *cmd, const char *flag, const char *value, long long min,
                   long long max, long long *out);
bool cli_parse_double(const char *cmd, const char *flag, const char *value, double min,
                      double max, double *out);

/* Checks an output path before any work is done: refuses (printing
 * "dynrag <cmd>: <flag> <out>: ..." and returning false) an output that is
 * the same file as one of inputs[0..n) (NULL entries skipped; links
 * followed), and, when `replace` (the file is replaced as a whole, through
 * a temporary file and a rename), one that exists and is not a regular
 * file (a folder, FIFO or device: replacing it would destroy it and deliver
 * nothing) or is read-only. "-" (standard output) always passes. */
bool cli_check_output(const char *cmd, const char *flag, const char *out,
                      const char *const *inputs, size_t n, bool replace);

/* Parses one JSON Lines line, text[0..len): one JSON value and nothing
 * after it but white space, no top-level key given twice. Returns it (the
 * caller deletes it) or NULL with why[0..whysize) saying what is wrong. */
struct cJSON *cli_parse_json_line(const char *text, size_t len, char *why, size_t whysize);

/* getline() that stores at most max bytes of a line (malloc'ed *line,
 * free()): the line's length, CLI_LINE_EOF at the end (or a read error:
 * see ferror), CLI_LINE_TOO_LONG past max bytes (f is left inside the
 * line, which may never end: /dev/zero, a pipe), CLI_LINE_NOMEM. */
#define CLI_LINE_EOF (-1)
#define CLI_LINE_TOO_LONG (-2)
#define CLI_LINE_NOMEM (-3)
#define CLI_MAX_LINE ((size_t)64 << 20)
long long cli_getline(char **line, size_t *cap, FILE *f, size_t max);

/* Prints the error for a cli_getline() result below 0 other than the end
 * ("FILE:LINE: line longer than N MiB" or out of memory); returns
 * CLI_FAIL for those, CLI_OK for CLI_LINE_EOF. */
int cli_line_error(const char *cmd, const char *path, unsigned long long lineno, long long got,
                   size_t max);

/* Prints s[0..n) for a terminal: tabs and line breaks as spaces (line
 * breaks kept with keep_lines), every other control character (ESC, BEL,
 * C1 ...) and every invalid UTF-8 byte as '?', so that text from documents,
 * logs or a model cannot drive the terminal. */
void cli_print_safe(FILE *f, const char *s, size_t n, bool keep_lines);
/* cli_print_safe() of a NUL-terminated string (NULL prints nothing), no
 * line breaks. */
void cli_puts_safe(FILE *f, const char *s);
/* Prints s as a JSON string with every control character escaped (C0, DEL
 * and C1 as \u00XX) and invalid UTF-8 bytes as \ufffd: valid JSON that
 * carries no raw control byte to a terminal. NULL prints null. */
void cli_print_json_str(FILE *f, const char *s);

/* A terminal progress bar (only drawn when stderr is a TTY and CI is unset).
 * Suitable as a dynrag_progress_fn: user is a cli_progress. */
typedef struct cli_progress {
    const char *label;
    int64_t start_us;
    int64_t last_draw_us;
    bool enabled;
    bool drawn;
} cli_progress;

/* True when progress should be drawn: stderr is a terminal and CI is unset. */
bool cli_progress_wanted(void);
void cli_progress_init(cli_progress *p, const char *label);
void cli_progress_cb(void *user, uint64_t done, uint64_t total, const char *unit);
void cli_progress_done(cli_progress *p);

/* Subcommand handlers (one per cmd_<name>.c). */
int cmd_validate(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_dataset(int argc, char **argv);
int cmd_label(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_router(int argc, char **argv);

#endif
