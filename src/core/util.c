/* util.c - buffers, strings, number parsing, files, time, PRNG, UTF-8. */
#define _GNU_SOURCE
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- buffers ------------------------------------------------------------ */


static int buf_reserve(dr_buf *b, size_t extra)
{
    size_t limit = b->cap_limit ? b->cap_limit : DR_BUF_DEFAULT_CAP;
    if (extra > limit || b->len > limit - extra)
        return DYNRAG_ERR_LIMIT;
    size_t need = b->len + extra + 1;
    if (need <= b->alloc)
        return DYNRAG_OK;
    size_t alloc = b->alloc ? b->alloc : 64;
    while (alloc < need)
        alloc = alloc > SIZE_MAX / 2 ? need : alloc * 2;
    char *p = dr_realloc(b->data, alloc);
    if (p == NULL)
        return DYNRAG_ERR_NOMEM;
    b->data = p;
    b->alloc = alloc;
    return DYNRAG_OK;
}

int dr_buf_reserve(dr_buf *b, size_t n)
{
    return buf_reserve(b, n);
}

int dr_buf_append_grow(dr_buf *b, const void *data, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc != DYNRAG_OK)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return DYNRAG_OK;
}

int dr_buf_puts(dr_buf *b, const char *s)
{
    return dr_buf_append(b, s, strlen(s));
}

int dr_buf_putc(dr_buf *b, char c)
{
    return dr_buf_append(b, &c, 1);
}

int dr_buf_printf(dr_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return DYNRAG_ERR_INVALID;
    int rc = buf_reserve(b, (size_t)n);
    if (rc != DYNRAG_OK)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return DYNRAG_OK;
}

int dr_buf_json_str(dr_buf *b, const char *s)
{
    int rc = dr_buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; rc == DYNRAG_OK && *p; p++) {
        switch (*p) {
        case '"':
            rc = dr_buf_puts(b, "\\\"");
            break;
        case '\\':
            rc = dr_buf_puts(b, "\\\\");
            break;
        case '\n':
            rc = dr_buf_puts(b, "\\n");
            break;
        case '\r':
            rc = dr_buf_puts(b, "\\r");
            break;
        case '\t':
            rc = dr_buf_puts(b, "\\t");
            break;
        default:
            if (*p < 0x20)
                rc = dr_buf_printf(b, "\\u%04x", *p);
            else
                rc = dr_buf_putc(b, (char)*p);
        }
    }
    if (rc == DYNRAG_OK)
        rc = dr_buf_putc(b, '"');
    return rc;
}

void dr_buf_reset(dr_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *dr_buf_take(dr_buf *b)
{
    char *p = b->data;
    if (p == NULL)
        p = dr_calloc(1, 1);
    b->data = NULL;
    b->len = b->alloc = 0;
    return p;
}

void dr_buf_free(dr_buf *b)
{
    if (b == NULL)
        return;
    dr_free(b->data);
    b->data = NULL;
    b->len = b->alloc = 0;
}

/* ---- strings ------------------------------------------------------------ */

char *dr_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = dr_malloc((size_t)n + 1);
    if (p == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

size_t dr_strlcpy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);
    if (size > 0) {
        size_t c = n < size - 1 ? n : size - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

size_t dr_edit_distance(const char *a, const char *b, size_t cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return cap;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t v = prev + cost;
            if (row[j] + 1 < v)
                v = row[j] + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            row[j] = v;
            prev = cur;
        }
    }
    return row[lb] < cap ? row[lb] : cap;
}

/* ---- number parsing ----------------------------------------------------- */

int dr_parse_ll(const char *s, long long min, long long max, long long *out)
{
    if (s == NULL || *s == '\0')
        return DYNRAG_ERR_INVALID;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return DYNRAG_ERR_INVALID;
    *out = v;
    return DYNRAG_OK;
}

int dr_parse_double(const char *s, double min, double max, double *out)
{
    if (s == NULL || *s == '\0')
        return DYNRAG_ERR_INVALID;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno == ERANGE || end == s || *end != '\0' || !isfinite(v) || v < min || v > max)
        return DYNRAG_ERR_INVALID;
    *out = v;
    return DYNRAG_OK;
}

/* ---- files -------------------------------------------------------------- */

int dr_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len,
                 dynrag_error *err)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return dr_err_set(err, errno == ENOENT ? DYNRAG_ERR_NOTFOUND : DYNRAG_ERR_IO,
                          "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return dr_err_set(err, DYNRAG_ERR_INVALID, "%s: is a directory, expected a file", path);
    }
    dr_buf b = {0};
    b.cap_limit = max_bytes;
    char chunk[65536];
    int rc = DYNRAG_OK;
    for (;;) {
        size_t n = fread(chunk, 1, sizeof(chunk), f);
        if (n > 0) {
            rc = dr_buf_append(&b, chunk, n);
            if (rc == DYNRAG_ERR_LIMIT) {
                dr_err_set(err, rc, "%s: file is larger than the limit of %zu bytes", path,
                           max_bytes);
                goto cleanup;
            }
            if (rc != DYNRAG_OK) {
                dr_err_set(err, rc, "%s: out of memory", path);
                goto cleanup;
            }
        }
        if (n < sizeof(chunk)) {
            if (ferror(f)) {
                rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: read error: %s", path, strerror(errno));
                goto cleanup;
            }
            break;
        }
    }
    if (out_len)
        *out_len = b.len;
    *out = dr_buf_take(&b);
    if (*out == NULL)
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "%s: out of memory", path);
cleanup:
    dr_buf_free(&b);
    fclose(f);
    return rc;
}

static const char *file_type_name(mode_t m)
{
    if (S_ISDIR(m))
        return "a folder";
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISSOCK(m))
        return "a socket";
    return "not a regular file";
}

int dr_output_target(const char *path, char **resolved, unsigned *mode, dynrag_error *err)
{
    *resolved = NULL;
    *mode = 0;
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT)
            return dr_err_set(err, DYNRAG_ERR_IO, "%s: %s", path, strerror(errno));
        *resolved = dr_strdup(path);
        return *resolved ? DYNRAG_OK : dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    char *target = NULL;
    if (S_ISLNK(st.st_mode)) {
        if (stat(path, &st) != 0) {
            /* A link to a file not made yet: the file is made where the
             * link leads (one level; a chain of missing links is refused). */
            char buf[4096];
            ssize_t n = readlink(path, buf, sizeof(buf) - 1);
            if (n <= 0 || (size_t)n >= sizeof(buf) - 1)
                return dr_err_set(err, DYNRAG_ERR_IO, "%s: cannot read the link", path);
            buf[n] = '\0';
            const char *slash = strrchr(path, '/');
            char *dest = buf[0] == '/' || slash == NULL
                             ? dr_strdup(buf)
                             : dr_asprintf("%.*s/%s", (int)(slash - path), path, buf);
            if (dest == NULL)
                return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            if (lstat(dest, &st) == 0 || errno != ENOENT) {
                dr_free(dest);
                return dr_err_set(err, DYNRAG_ERR_INVALID,
                                  "%s: a symbolic link to a missing file through another link; "
                                  "refusing to write through it",
                                  path);
            }
            *resolved = dest;
            return DYNRAG_OK;
        }
        char *real = realpath(path, NULL);
        if (real == NULL)
            return dr_err_set(err, DYNRAG_ERR_IO, "%s: %s", path, strerror(errno));
        target = dr_strdup(real);
        dr_libc_free(real);
    } else {
        target = dr_strdup(path);
    }
    if (target == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    if (!S_ISREG(st.st_mode)) {
        dr_free(target);
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "%s: is %s, not a regular file; refusing to replace it", path,
                          file_type_name(st.st_mode));
    }
    if ((st.st_mode & 0222) == 0) {
        dr_free(target);
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "%s: the file is read-only; refusing to replace it", path);
    }
    *mode = (unsigned)(st.st_mode & 07777);
    *resolved = target;
    return DYNRAG_OK;
}

bool dr_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (a == NULL || b == NULL || stat(a, &sa) != 0 || stat(b, &sb) != 0)
        return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int dr_write_file_atomic(const char *path, const void *data, size_t len, dynrag_error *err)
{
    /* The temporary name is unique per process and per call, so threads
     * replacing the same file at once never write into one another's
     * temporary file: the last rename wins and every version is whole. */
    static atomic_ulong counter;
    char *target = NULL;
    unsigned mode = 0;
    int rc = dr_output_target(path, &target, &mode, err);
    if (rc != DYNRAG_OK)
        return rc;
    path = target;
    unsigned long n = atomic_fetch_add(&counter, 1);
    char *tmp = dr_asprintf("%s.tmp.%ld.%lu", path, (long)getpid(), n);
    int fd = -1;
    if (tmp == NULL) {
        dr_free(target);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    /* A new file gets 0644 less the umask; a replaced one its old bits. */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode ? 0600 : 0644);
    if (fd < 0) {
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: cannot write it: %s", path, strerror(errno));
        goto cleanup;
    }
    if (mode != 0 && fchmod(fd, (mode_t)mode) != 0) {
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: chmod: %s (the file is unchanged)", path, strerror(errno));
        goto cleanup;
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: write: %s (the file is unchanged)", path,
                            strerror(errno));
            goto cleanup;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: fsync: %s (the file is unchanged)", path, strerror(errno));
        goto cleanup;
    }
    int c = close(fd);
    fd = -1;
    if (c != 0) {
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: close: %s (the file is unchanged)", path, strerror(errno));
        goto cleanup;
    }
    if (rename(tmp, path) != 0)
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: rename from %s: %s (the file is unchanged)", path, tmp,
                       strerror(errno));
cleanup:
    if (fd >= 0)
        close(fd);
    if (rc != DYNRAG_OK)
        unlink(tmp);
    dr_free(tmp);
    dr_free(target);
    return rc;
}

int dr_mkdirs(const char *path, dynrag_error *err)
{
    char *p = dr_strdup(path);
    if (p == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    int rc = DYNRAG_OK;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                rc = dr_err_set(err, DYNRAG_ERR_IO, "mkdir %s: %s", p, strerror(errno));
                break;
            }
            *s = c;
            if (c == '\0')
                break;
        }
    }
    if (rc == DYNRAG_OK && !dr_is_dir(path))
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: not a directory", path);
    dr_free(p);
    return rc;
}

bool dr_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

bool dr_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- time --------------------------------------------------------------- */

int64_t dr_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void dr_time_rfc3339(char *buf, size_t size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03ldZ", base, ts.tv_nsec / 1000000);
}

/* ---- PRNG --------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void dr_rng_seed(dr_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t dr_rng_next(dr_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double dr_rng_uniform(dr_rng *r)
{
    return (double)(dr_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t dr_rng_below(dr_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do
        v = dr_rng_next(r);
    while (v >= limit);
    return v % n;
}

double dr_rng_normal(dr_rng *r)
{
    double u1 = dr_rng_uniform(r);
    double u2 = dr_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- hashing ------------------------------------------------------------ */

uint64_t dr_hash64(const void *data, size_t n, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL ^ (seed * 0x9e3779b97f4a7c15ULL);
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* ---- UTF-8 -------------------------------------------------------------- */

size_t dr_utf8_decode(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0) {
        *cp = 0xFFFD;
        return 1;
    }
    unsigned char c = u[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        v = c & 0x0F;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    if (n < len) {
        *cp = 0xFFFD;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        v = (v << 6) | (u[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = v;
    return len;
}

bool dr_utf8_valid(const char *s, size_t n, size_t *bad_offset)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k = dr_utf8_decode(s + i, n - i, &cp);
        if (cp == 0xFFFD && k == 1) {
            /* U+FFFD itself is 3 bytes, so a 1-byte decode of it is an error. */
            if (bad_offset)
                *bad_offset = i;
            return false;
        }
        i += k;
    }
    return true;
}

size_t dr_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int dr_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

bool dr_u64_sorted_has(const uint64_t *a, size_t n, uint64_t key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && a[lo] == key;
}

char *dr_utf8_sanitize(const char *s, size_t n)
{
    /* Valid input (the common case) is copied as is. */
    size_t bad = 0;
    if (dr_utf8_valid(s, n, &bad) && memchr(s, '\0', n) == NULL)
        return dr_strndup(s, n);
    dr_buf b = {0};
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = dr_utf8_decode(s + i, n - i, &cp);
        int rc;
        if (cp == 0)
            rc = DYNRAG_OK;
        else if (cp == 0xFFFD)
            rc = dr_buf_append(&b, "\xef\xbf\xbd", 3);
        else
            rc = dr_buf_append(&b, s + i, k);
        if (rc != DYNRAG_OK) {
            dr_buf_free(&b);
            return NULL;
        }
        i += k;
    }
    return dr_buf_take(&b);
}

char *dr_display_copy(char *dst, size_t size, const char *src)
{
    if (size == 0)
        return dst;
    size_t n = src ? strlen(src) : 0, i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = dr_utf8_decode(src + i, n - i, &cp);
        bool invalid = len == 1 && cp == 0xFFFD;
        bool control = cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F);
        const char *put = src + i;
        size_t put_len = len;
        char sub = cp == '\t' || cp == '\n' || cp == '\r' ? ' ' : '?';
        if (invalid || control) {
            put = &sub;
            put_len = 1;
        }
        if (o + put_len >= size)
            break; /* no room for the whole character: cut before it */
        memcpy(dst + o, put, put_len);
        o += put_len;
        i += len;
    }
    dst[o] = '\0';
    return dst;
}

bool dr_regex_is_regular(const char *re, size_t *at)
{
    for (const char *p = re; *p; p++) {
        if (*p == '\\') {
            if (p[1] >= '1' && p[1] <= '9') {
                *at = (size_t)(p - re);
                return false;
            }
            if (p[1] != '\0')
                p++;
        } else if (*p == '[') {
            /* a bracket expression: backslash is literal inside; "]" first
             * (after an optional "^") is a member; [:class:], [.x.], [=x=] */
            const char *q = p + 1;
            if (*q == '^')
                q++;
            if (*q == ']')
                q++;
            while (*q && *q != ']') {
                if (*q == '[' && (q[1] == ':' || q[1] == '.' || q[1] == '=')) {
                    const char *e = strchr(q + 2, q[1]);
                    q = (e && e[1] == ']') ? e + 2 : q + 1;
                } else {
                    q++;
                }
            }
            if (*q == '\0')
                return true; /* unterminated: regcomp reports it */
            p = q;
        }
    }
    return true;
}

long long dr_getline(char **line, size_t *cap, FILE *f, size_t max)
{
    size_t len = 0;
    int c = EOF;
    long long rc = DR_LINE_EOF;
    flockfile(f);
    while ((c = getc_unlocked(f)) != EOF) {
        if (len >= max) {
            rc = DR_LINE_TOO_LONG;
            goto done;
        }
        if (len + 2 > *cap) {
            size_t want = *cap ? *cap * 2 : 256;
            if (want > max + 2)
                want = max + 2;
            char *n = dr_realloc(*line, want);
            if (n == NULL) {
                rc = DR_LINE_NOMEM;
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
