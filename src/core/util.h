/*
 * core/util.h - internal helpers shared by every module (not public API).
 *
 * Growable buffers with a size cap, error detail, checked number parsing,
 * whole-file reads with a cap, atomic file replacement, monotonic time, a
 * seeded PRNG and UTF-8 validation. No function here prints or exits.
 */
#ifndef DYNRAG_CORE_UTIL_H
#define DYNRAG_CORE_UTIL_H

#include "core/alloc.h"
#include "dynrag/log.h"
#include "dynrag/status.h"
#include "dynrag/version.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__GNUC__)
#define DR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DR_PRINTF(a, b)
#endif

#define DR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define DR_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DR_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- errors and logging ---------------------------------------------- */

/* Records status and a formatted message in err (which may be NULL) and
 * returns status, so callers can write `return dr_err_set(err, ...)`. */
int dr_err_set(dynrag_error *err, int status, const char *fmt, ...) DR_PRINTF(3, 4);

/* Prepends "prefix: " to err's message, keeping its status; returns it. */
int dr_err_prefix(dynrag_error *err, const char *fmt, ...) DR_PRINTF(2, 3);

/* Sends a message to the application's log callback, if any. */
void dr_log(dynrag_log_level level, const char *module, const char *fmt, ...) DR_PRINTF(3, 4);
bool dr_log_enabled(dynrag_log_level level);

/* ---- growable byte buffer with a cap ---------------------------------- */

/*
 * A NUL-terminated growable buffer. `cap_limit` bounds its length (0 means
 * the default of 1 GiB); an append that would pass it fails with
 * DYNRAG_ERR_LIMIT and leaves the buffer unchanged. Zero-initialise
 * (`dr_buf b = {0};`) and release with dr_buf_free().
 */
typedef struct dr_buf {
    char *data;       /* NULL until the first append; always NUL-terminated after */
    size_t len;
    size_t alloc;
    size_t cap_limit;
} dr_buf;

/* The default cap of a dr_buf's length (cap_limit 0). */
#define DR_BUF_DEFAULT_CAP ((size_t)1 << 30)

int dr_buf_append_grow(dr_buf *b, const void *data, size_t n);
/* Appends n bytes (the buffer stays NUL-terminated): inline while they fit
 * in what is allocated and within the cap, else dr_buf_append_grow(). */
static inline int dr_buf_append(dr_buf *b, const void *data, size_t n)
{
    size_t limit = b->cap_limit ? b->cap_limit : DR_BUF_DEFAULT_CAP;
    /* (alloc - len is 0 when nothing is allocated) */
    if (n < b->alloc - b->len && b->len <= limit && n <= limit - b->len) {
        if (n > 0)
            memcpy(b->data + b->len, data, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
    }
    return dr_buf_append_grow(b, data, n);
}
/* Makes room for n more bytes (and the NUL), so that appends of up to n
 * bytes in all do not reallocate. Errors as an append of n bytes. */
int dr_buf_reserve(dr_buf *b, size_t n);
int dr_buf_puts(dr_buf *b, const char *s);
/* dr_buf_puts() of a string literal, its length known at compile time. */
#define DR_BUF_PUTL(b, lit) dr_buf_append((b), "" lit, sizeof(lit) - 1)
int dr_buf_putc(dr_buf *b, char c);
int dr_buf_printf(dr_buf *b, const char *fmt, ...) DR_PRINTF(2, 3);
/* Appends s as a JSON string literal, quotes included. */
int dr_buf_json_str(dr_buf *b, const char *s);
void dr_buf_reset(dr_buf *b);
/* Hands the data to the caller (dr_free() it) and resets the buffer. Returns
 * an empty allocated string when the buffer was never written, NULL only on
 * allocation failure. */
char *dr_buf_take(dr_buf *b);
void dr_buf_free(dr_buf *b);

/* ---- strings ---------------------------------------------------------- */

/* dr_strdup() and dr_strndup() are in core/alloc.h. */
/* Formatted allocation; NULL on failure. Caller frees. */
char *dr_asprintf(const char *fmt, ...) DR_PRINTF(1, 2);
/* Copies at most size-1 bytes and always terminates; returns strlen(src). */
size_t dr_strlcpy(char *dst, const char *src, size_t size);
/* Levenshtein distance, capped at `cap` (returns cap when larger). */
size_t dr_edit_distance(const char *a, const char *b, size_t cap);

/* ---- checked number parsing (no atoi) --------------------------------- */

/* Parses a whole string as a base-10 integer within [min, max]. Leading or
 * trailing garbage, overflow and empty input fail with DYNRAG_ERR_INVALID. */
int dr_parse_ll(const char *s, long long min, long long max, long long *out);
/* Parses a whole string as a finite double within [min, max]. */
int dr_parse_double(const char *s, double min, double max, double *out);

/* ---- regular expressions ------------------------------------------------- */

/* Checks that a POSIX ERE uses only regular constructs, so that glibc
 * matches it in time polynomial in pattern and text: back-references
 * (\1 to \9 outside a bracket expression), which make matching
 * exponential (`(a*)*\1\1\1b`), are refused. Returns true when the
 * pattern is regular; else false with *at set to the 0-based byte offset of
 * the offending construct. Does not otherwise validate (regcomp does). */
bool dr_regex_is_regular(const char *re, size_t *at);

/* ---- files ------------------------------------------------------------ */

/*
 * Reads the next line of f (through its '\n', kept) into *line, grown with
 * dr_realloc (capacity *cap; free with dr_free) and NUL-terminated; a NUL
 * byte inside the line is kept, as getline() keeps it. Unlike getline(), it
 * stores at most max bytes of a line, so that an endless line (a pipe, a
 * device, a file with no newline for gigabytes) costs bounded memory.
 * Returns the line's length; DR_LINE_EOF at the end of f or on a read error
 * (see ferror); DR_LINE_TOO_LONG when the line has more than max bytes
 * (f is left inside it); DR_LINE_NOMEM when memory ran out.
 */
#define DR_LINE_EOF (-1)
#define DR_LINE_TOO_LONG (-2)
#define DR_LINE_NOMEM (-3)
long long dr_getline(char **line, size_t *cap, FILE *f, size_t max);

/* Reads a whole file into a NUL-terminated buffer the caller frees. Fails
 * with DYNRAG_ERR_LIMIT when the file is larger than max_bytes. */
int dr_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len,
                 dynrag_error *err);
/* Writes data to path atomically: a temporary file in the same folder
 * (named path.tmp.<pid>.<counter>, unique per call), fsync, rename. Readers
 * see the old file or the whole new one; concurrent writers of one path
 * (threads or processes) each leave a whole version, the last rename wins.
 * The target is first checked with dr_output_target(): a symbolic link is
 * followed (the link stays, its file is replaced), anything but a regular
 * file or a missing one is refused, and a replaced file keeps its
 * permission bits. A failure leaves the old file as it was and no
 * temporary file. */
int dr_write_file_atomic(const char *path, const void *data, size_t len, dynrag_error *err);
/* Where an atomic replacement of path must write: *resolved (caller frees)
 * gets path when it does not exist or is a regular file, the file a
 * symbolic link leads to when that is a regular file or missing. Fails
 * with DYNRAG_ERR_INVALID, naming path, when it is a folder, FIFO, device
 * or socket (replacing one would destroy it and deliver nothing) or a
 * regular file without any write permission bit (read-only data, even for
 * root), and DYNRAG_ERR_IO / DYNRAG_ERR_NOMEM otherwise. *mode gets the
 * existing file's permission bits, or 0 for a new file. */
int dr_output_target(const char *path, char **resolved, unsigned *mode, dynrag_error *err);
/* True when a and b name the same existing file (device and inode, links
 * followed). */
bool dr_same_file(const char *a, const char *b);
/* mkdir -p. */
int dr_mkdirs(const char *path, dynrag_error *err);
bool dr_path_exists(const char *path);
bool dr_is_dir(const char *path);

/* ---- time ------------------------------------------------------------- */

/* Monotonic microseconds. */
int64_t dr_now_us(void);
/* Wall-clock time as an RFC 3339 UTC string into buf (at least 32 bytes). */
void dr_time_rfc3339(char *buf, size_t size);

/* ---- PRNG (xoshiro256**, seeded by splitmix64) ------------------------- */

typedef struct dr_rng {
    uint64_t s[4];
} dr_rng;

void dr_rng_seed(dr_rng *r, uint64_t seed);
uint64_t dr_rng_next(dr_rng *r);
/* Uniform in [0, 1). */
double dr_rng_uniform(dr_rng *r);
/* Uniform integer in [0, n). n > 0. */
uint64_t dr_rng_below(dr_rng *r, uint64_t n);
/* Standard normal (Box-Muller). */
double dr_rng_normal(dr_rng *r);

/* ---- hashing ---------------------------------------------------------- */

/* 64-bit FNV-1a over bytes, then a murmur-style finaliser. */
uint64_t dr_hash64(const void *data, size_t n, uint64_t seed);

/* ---- sorted uint64_t arrays -------------------------------------------- */

/* qsort()/bsearch() comparison of two uint64_t. */
int dr_u64_cmp(const void *a, const void *b);
/* True when key is in a[0..n), sorted ascending (binary search). */
bool dr_u64_sorted_has(const uint64_t *a, size_t n, uint64_t key);

/* ---- UTF-8 ------------------------------------------------------------ */

/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates). On
 * failure *bad_offset (if non-NULL) gets the byte offset of the first error. */
bool dr_utf8_valid(const char *s, size_t n, size_t *bad_offset);
/* Decodes one code point at s (n bytes available). Returns the number of
 * bytes consumed (>= 1); invalid bytes decode as U+FFFD consuming one byte. */
size_t dr_utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Encodes cp into out (at least 4 bytes); returns bytes written. */
size_t dr_utf8_encode(uint32_t cp, char *out);
/* A copy of s[0..n) with each invalid UTF-8 byte replaced by U+FFFD and NUL
 * bytes dropped. Caller frees; NULL only when out of memory. */
char *dr_utf8_sanitize(const char *s, size_t n);
/* Copies src (NULL: "") into dst[0..size) for display on a terminal or in
 * JSON: valid UTF-8 with no control character. Tabs and line breaks become
 * spaces; other control characters (C0, DEL, C1) and invalid bytes become
 * '?'; the copy is cut before the first character that does not fit (never
 * inside one) and NUL-terminated (size > 0). The result is never longer than
 * src. Returns dst. */
char *dr_display_copy(char *dst, size_t size, const char *src);

#endif
