/* common.c - error printing, flag parsing and the progress bar of the CLI. */
#define _GNU_SOURCE
#include "cli.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

void cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "dynrag %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "dynrag %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun `dynrag %s --help` for usage.\n", cmd);
    return CLI_USAGE;
}

void cli_print_usage(const char *cmd)
{
    const cli_command *c = cli_find_command(cmd);
    if (c)
        fputs(c->usage, stdout);
}

bool cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return true;
    }
    return false;
}

bool cli_parse_int(const char *cmd, const char *flag, const char *value, long long min,
                   long long max, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = value ? strtoll(value, &end, 10) : 0;
    if (value == NULL || *value == '\0' || errno != 0 || *end != '\0' || v < min || v > max) {
        cli_error(cmd, "%s: expected an integer from %lld to %lld, got '%s'", flag, min, max,
                  value ? value : "");
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_double(const char *cmd, const char *flag, const char *value, double min,
                      double max, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = value ? strtod(value, &end) : 0;
    if (value == NULL || *value == '\0' || errno != 0 || *end != '\0' || !isfinite(v) ||
        v < min || v > max) {
        cli_error(cmd, "%s: expected a number from %g to %g, got '%s'", flag, min, max,
                  value ? value : "");
        return false;
    }
    *out = v;
    return true;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

bool cli_progress_wanted(void)
{
    const char *ci = getenv("CI");
    return isatty(STDERR_FILENO) && !(ci && *ci);
}

void cli_progress_init(cli_progress *p, const char *label)
{
    memset(p, 0, sizeof(*p));
    p->label = label;
    p->start_us = now_us();
    p->enabled = cli_progress_wanted();
}

void cli_progress_cb(void *user, uint64_t done, uint64_t total, const char *unit)
{
    cli_progress *p = user;
    if (!p->enabled)
        return;
    int64_t t = now_us();
    if (p->drawn && t - p->last_draw_us < 100000 && done != total)
        return;
    p->last_draw_us = t;
    p->drawn = true;
    double secs = (double)(t - p->start_us) / 1e6;
    double rate = secs > 0 ? (double)done / secs : 0;
    if (total > 0) {
        int width = 30;
        int fill = (int)((double)width * (double)done / (double)total);
        if (fill > width)
            fill = width;
        double eta = rate > 0 ? (double)(total - (done < total ? done : total)) / rate : 0;
        fprintf(stderr, "\r%s [%.*s%*s] %llu/%llu %s  %.0f %s/s  eta %.0fs  ", p->label, fill,
                "##############################", width - fill, "", (unsigned long long)done,
                (unsigned long long)total, unit, rate, unit, eta);
    } else {
        fprintf(stderr, "\r%s %llu %s  %.0f %s/s  ", p->label, (unsigned long long)done, unit,
                rate, unit);
    }
    fflush(stderr);
}

void cli_progress_done(cli_progress *p)
{
    if (p->enabled && p->drawn)
        fputc('\n', stderr);
    p->drawn = false;
}

bool cli_check_output(const char *cmd, const char *flag, const char *out,
                      const char *const *inputs, size_t n, bool replace)
{
    if (out == NULL || strcmp(out, "-") == 0)
        return true;
    struct stat so;
    bool exists = stat(out, &so) == 0;
    for (size_t i = 0; exists && i < n; i++) {
        struct stat si;
        if (inputs[i] != NULL && stat(inputs[i], &si) == 0 && si.st_dev == so.st_dev &&
            si.st_ino == so.st_ino) {
            cli_error(cmd, "%s %s: is the same file as the input %s; refusing to overwrite it",
                      flag, out, inputs[i]);
            return false;
        }
    }
    if (!replace || !exists)
        return true;
    if (!S_ISREG(so.st_mode)) {
        cli_error(cmd, "%s %s: is %s, not a regular file; refusing to replace it", flag, out,
                  S_ISDIR(so.st_mode)    ? "a folder"
                  : S_ISFIFO(so.st_mode) ? "a FIFO"
                  : S_ISCHR(so.st_mode)  ? "a character device"
                  : S_ISBLK(so.st_mode)  ? "a block device"
                                         : "a special file");
        return false;
    }
    if ((so.st_mode & 0222) == 0) {
        cli_error(cmd, "%s %s: the file is read-only; refusing to replace it", flag, out);
        return false;
    }
    return true;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

cJSON *cli_parse_json_line(const char *text, size_t len, char *why, size_t whysize)
{
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (v == NULL) {
        snprintf(why, whysize, "not valid JSON");
        return NULL;
    }
    while (end != NULL && end < text + len &&
           (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end != NULL && end < text + len) {
        snprintf(why, whysize, "text after the JSON value at column %zu",
                 (size_t)(end - text) + 1);
        cJSON_Delete(v);
        return NULL;
    }
    size_t n = 0;
    for (const cJSON *f = cJSON_IsObject(v) ? v->child : NULL; f != NULL; f = f->next)
        n++;
    const char **keys = n > 1 ? malloc(n * sizeof(*keys)) : NULL;
    if (n > 1 && keys == NULL) {
        snprintf(why, whysize, "out of memory");
        cJSON_Delete(v);
        return NULL;
    }
    n = 0;
    for (const cJSON *f = keys ? v->child : NULL; f != NULL; f = f->next)
        keys[n++] = f->string ? f->string : "";
    if (keys != NULL)
        qsort(keys, n, sizeof(*keys), cmp_key);
    for (size_t i = 1; keys != NULL && i < n; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            snprintf(why, whysize, "key '%.64s' given twice", keys[i]);
            free(keys);
            cJSON_Delete(v);
            return NULL;
        }
    free(keys);
    return v;
}

/* ---- printing text from documents, logs and models ------------------------ */

/* The length of the valid UTF-8 sequence at s[0..n), 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80                    ? 1
                 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2
                 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
                 : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4
                                                : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
        return 0; /* overlong, surrogate or beyond U+10FFFF */
    return len;
}

/* True for a terminal control character: C0, DEL or C1 (U+0080-U+009F,
 * which terminals may read as the start of an escape sequence). s[0..len)
 * is one valid UTF-8 sequence. */
static bool is_control(const unsigned char *s, size_t len)
{
    return (len == 1 && (s[0] < 0x20 || s[0] == 0x7F)) ||
           (len == 2 && s[0] == 0xC2 && s[1] < 0xA0);
}

/* See cli.h. */
void cli_print_safe(FILE *f, const char *s, size_t n, bool keep_lines)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t len = utf8_len(u + i, n - i);
        if (len == 0) {
            fputc('?', f);
            i++;
        } else if (keep_lines && u[i] == '\n') {
            fputc('\n', f);
            i++;
        } else if (is_control(u + i, len)) {
            fputc(u[i] == '\t' || u[i] == '\n' || u[i] == '\r' ? ' ' : '?', f);
            i += len;
        } else {
            fwrite(u + i, 1, len, f);
            i += len;
        }
    }
}

/* See cli.h. */
void cli_print_json_str(FILE *f, const char *s)
{
    if (s == NULL) {
        fputs("null", f);
        return;
    }
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), i = 0;
    fputc('"', f);
    while (i < n) {
        size_t len = utf8_len(u + i, n - i);
        if (len == 0) {
            fputs("\\ufffd", f);
            i++;
            continue;
        }
        unsigned c = len == 1 ? u[i] : len == 2 ? ((u[i] & 0x1Fu) << 6) | (u[i + 1] & 0x3Fu) : 0;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", (char)c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c == '\r')
            fputs("\\r", f);
        else if (is_control(u + i, len))
            fprintf(f, "\\u%04x", c);
        else
            fwrite(u + i, 1, len, f);
        i += len;
    }
    fputc('"', f);
}

/* See cli.h. */
void cli_puts_safe(FILE *f, const char *s)
{
    cli_print_safe(f, s ? s : "", s ? strlen(s) : 0, false);
}

long long cli_getline(char **line, size_t *cap, FILE *f, size_t max)
{
    size_t len = 0;
    int c;
    long long rc = CLI_LINE_EOF;
    flockfile(f);
    while ((c = getc_unlocked(f)) != EOF) {
        if (len >= max) {
            rc = CLI_LINE_TOO_LONG;
            goto done;
        }
        if (len + 2 > *cap) {
            size_t want = *cap ? *cap * 2 : 256;
            if (want > max + 2)
                want = max + 2;
            char *n = realloc(*line, want);
            if (n == NULL) {
                rc = CLI_LINE_NOMEM;
                goto done;
            }
            *line = n;
            *cap = want;
        }
        (*line)[len++] = (char)c;
        if (c == '\n')
            break;
    }
    if (len > 0) {
        (*line)[len] = '\0';
        rc = (long long)len;
    }
done:
    funlockfile(f);
    return rc;
}

int cli_line_error(const char *cmd, const char *path, unsigned long long lineno, long long got,
                   size_t max)
{
    if (got == CLI_LINE_TOO_LONG) {
        cli_error(cmd, "%s:%llu: line longer than %zu MiB", path, lineno, max >> 20);
        return CLI_FAIL;
    }
    if (got == CLI_LINE_NOMEM) {
        cli_error(cmd, "%s:%llu: out of memory", path, lineno);
        return CLI_FAIL;
    }
    return CLI_OK;
}
