/*
 * frontdoor.c - request framing and validation before libmicrohttpd, and
 * the per-connection pump (see frontdoor.h).
 *
 * The pump of one connection, a thread of its own: it polls the client's
 * socket `c`, its end `m` of the socketpair libmicrohttpd serves, and the
 * front door's stop pipe. Bytes from c accumulate in `in`; dr_frame_next()
 * marks the valid ones as forwardable (`fwd` bytes at the front of `in`),
 * which are written to m; replies read from m go through `out` to c, each
 * head held until it is whole so that a handoff placeholder can be
 * rewritten and followed by its body (frontdoor.h, "Reply handoff"). On the
 * first invalid request the pump stops reading c, forwards what was valid
 * before it, half-closes m (libmicrohttpd finishes the requests it got and
 * closes), copies the last replies and only then writes its own JSON
 * error, and closes. It ends when m has closed and everything read from it
 * reached c, or when c fails.
 */
#define _GNU_SOURCE
#include "server/frontdoor.h"

#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MOD "server"

/* ---- framing -------------------------------------------------------------- */

enum { ST_HEAD = 0, ST_BODY, ST_CHUNKED };
enum { CH_SIZE = 0, CH_DATA, CH_DATA_END, CH_TRAILER };

#define MAX_CL_VALUE 1000000000000000000ULL /* 10^18: larger is refused as 413 */
#define MAX_CHUNK_LINE 1024
/* Header and trailer lines: libmicrohttpd keeps each in its per-connection
 * memory pool (MHD_MEMORY_LIMIT), and answers past it with its own HTML 431;
 * the front door stops well before. */
#define MAX_FIELDS 100
/* libmicrohttpd also keeps a record per query argument ('&'-separated) and
 * per cookie (';'-separated, in a copy of the Cookie header) in that
 * memory; past it, it drops the connection without a reply. */
#define MAX_QUERY_ARGS 32
#define MAX_COOKIES 32
#define MAX_TRAILER_FIELDS 32
#define MAX_TRAILER_BYTES 8192

static int frame_err(dr_http_error *e, int status, const char *code, const char *msg)
{
    const char *type = status >= 500 && status != 505 && status != 501 ? "server_error"
                                                                       : "invalid_request_error";
    dr_http_error_set(e, status, type, code, NULL, "%s", msg);
    return DR_FRAME_ERROR;
}

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* True for the bytes a field value may hold: HTAB, visible ASCII, SP and
 * obs-text (0x80-0xFF). */
static bool is_field_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Case-insensitive equality of s[0..n) with the NUL-terminated lit. */
static bool ieq(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    if (n != l)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)s[i], b = (unsigned char)lit[i];
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a - 'A' + 'a');
        if (a != b)
            return false;
    }
    return true;
}

/* The end of the line starting at p (the '\n'), or NULL. *content is the
 * line's length without its "\r\n" or "\n". A '\r' elsewhere than before
 * the '\n' makes the line invalid (*bad). */
static const char *line_end(const char *p, const char *end, size_t *content, bool *bad)
{
    *content = 0;
    *bad = false;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL)
        return NULL;
    size_t n = (size_t)(nl - p);
    if (n > 0 && p[n - 1] == '\r')
        n--;
    *content = n;
    *bad = memchr(p, '\r', n) != NULL;
    return nl;
}

/* The request line "METHOD SP target SP HTTP/d.d" (n bytes at p). */
static dr_frame_action check_request_line(dr_frame *f, const char *p, size_t n, dr_http_error *e)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i >= n || p[i] != ' ')
        return frame_err(e, 400, "malformed_request",
                         "malformed request line: expected \"METHOD /target HTTP/1.1\"");
    size_t t0 = ++i;
    while (i < n && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f)
        i++;
    if (i - t0 > DR_FRONT_MAX_TARGET)
        return frame_err(e, 414, "uri_too_long",
                         "the request target is longer than 8192 bytes");
    if (i == t0 || i >= n || p[i] != ' ')
        return frame_err(e, 400, "malformed_request",
                         "malformed request line: expected \"METHOD /target HTTP/1.1\"");
    const char *v = p + i + 1;
    size_t vn = n - i - 1;
    if (vn != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
        v[7] < '0' || v[7] > '9')
        return frame_err(e, 400, "malformed_request",
                         "malformed request line: expected \"METHOD /target HTTP/1.1\"");
    /* The endpoint the error is counted under: as the handler would route it. */
    char method[24], path[512];
    size_t pl = i - t0;
    const char *q = memchr(p + t0, '?', pl);
    if (q)
        pl = (size_t)(q - (p + t0));
    f->ep = DR_EP_OTHER;
    if (t0 - 1 < sizeof(method) && pl < sizeof(path)) {
        memcpy(method, p, t0 - 1);
        method[t0 - 1] = '\0';
        memcpy(path, p + t0, pl);
        path[pl] = '\0';
        dr_endpoint_id ep;
        if (dr_http_route(method, path, &ep) != 404)
            f->ep = (int)ep;
    }
    if (q != NULL) {
        size_t args = 1;
        for (const char *c = q + 1; c < p + i; c++)
            args += *c == '&';
        if (args > MAX_QUERY_ARGS)
            return frame_err(e, 414, "uri_too_long",
                             "the request target has more than 32 query arguments");
    }
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return frame_err(e, 505, "http_version_not_supported",
                         "only HTTP/1.0 and HTTP/1.1 are supported");
    f->v11 = v[7] == '1';
    f->is_head = t0 - 1 == 4 && memcmp(p, "HEAD", 4) == 0;
    return DR_FRAME_FORWARD;
}

/* A header field line "name: value" (n bytes at p); the value, trimmed,
 * in *val and *vn, the name length in *nn. */
static bool check_field(const char *p, size_t n, size_t *nn, const char **val, size_t *vn)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i >= n || p[i] != ':')
        return false;
    *nn = i;
    size_t a = i + 1, b = n;
    for (size_t k = a; k < b; k++)
        if (!is_field_byte((unsigned char)p[k]))
            return false;
    while (a < b && (p[a] == ' ' || p[a] == '\t'))
        a++;
    while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t'))
        b--;
    *val = p + a;
    *vn = b - a;
    return true;
}

/*
 * Validates the complete head buf[0..end) and sets the body framing.
 * Returns DR_FRAME_FORWARD or DR_FRAME_ERROR.
 */
static dr_frame_action check_head(dr_frame *f, const char *buf, size_t end, dr_http_error *e)
{
    if (end > DR_FRONT_MAX_HEAD)
        return frame_err(e, 431, "headers_too_large",
                         "the request head (request line and headers) is larger than 16384 bytes");
    const char *p = buf, *lim = buf + end;
    size_t n;
    bool bad;
    const char *nl = line_end(p, lim, &n, &bad);
    if (bad)
        return frame_err(e, 400, "malformed_request", "a bare CR in the request line");
    dr_frame_action a = check_request_line(f, p, n, e);
    if (a != DR_FRAME_FORWARD)
        return a;
    int n_cl = 0, n_te = 0, n_host = 0, n_fields = 0;
    size_t n_cookies = 0;
    bool chunked = false;
    uint64_t cl = 0;
    for (p = nl + 1; p < lim;) {
        nl = line_end(p, lim, &n, &bad);
        if (nl == NULL || bad)
            return frame_err(e, 400, "malformed_request", "a bare CR in a header line");
        if (n == 0)
            break; /* the empty line ending the head */
        if (p[0] == ' ' || p[0] == '\t')
            return frame_err(e, 400, "malformed_request",
                             "a folded header line (obsolete line folding is not accepted)");
        if (++n_fields > MAX_FIELDS)
            return frame_err(e, 431, "headers_too_large",
                             "more than 100 header lines in the request head");
        size_t nn, vn;
        const char *v;
        if (!check_field(p, n, &nn, &v, &vn))
            return frame_err(e, 400, "malformed_request",
                             "a malformed header line: expected \"Name: value\" (a token, a "
                             "colon, no control characters)");
        if (ieq(p, nn, "content-length")) {
            if (++n_cl > 1)
                return frame_err(e, 400, "invalid_content_length",
                                 "more than one Content-Length header");
            if (vn == 0)
                return frame_err(e, 400, "invalid_content_length",
                                 "Content-Length: expected a number of bytes (digits only)");
            for (size_t k = 0; k < vn; k++) {
                if (v[k] < '0' || v[k] > '9')
                    return frame_err(e, 400, "invalid_content_length",
                                     "Content-Length: expected a number of bytes (digits only)");
                if (cl > MAX_CL_VALUE)
                    continue; /* keep checking the digits */
                cl = cl * 10 + (uint64_t)(v[k] - '0');
            }
        } else if (ieq(p, nn, "transfer-encoding")) {
            if (++n_te > 1 || !ieq(v, vn, "chunked"))
                return frame_err(e, 501, "unsupported_transfer_encoding",
                                 "Transfer-Encoding: only a single \"chunked\" is supported");
            chunked = true;
        } else if (ieq(p, nn, "host")) {
            if (++n_host > 1)
                return frame_err(e, 400, "malformed_request", "more than one Host header");
        } else if (ieq(p, nn, "cookie")) {
            /* (libmicrohttpd splits only the first; counted over all) */
            n_cookies++;
            for (size_t k = 0; k < vn; k++)
                n_cookies += v[k] == ';';
            if (n_cookies > MAX_COOKIES)
                return frame_err(e, 431, "headers_too_large",
                                 "more than 32 cookies in the Cookie headers");
        }
        p = nl + 1;
    }
    if (chunked && n_cl)
        return frame_err(e, 400, "invalid_content_length",
                         "both Content-Length and Transfer-Encoding: send only one");
    if (chunked && !f->v11)
        return frame_err(e, 400, "malformed_request",
                         "Transfer-Encoding: chunked needs HTTP/1.1");
    if (cl > MAX_CL_VALUE)
        return frame_err(e, 413, "body_too_large",
                         "Content-Length is larger than the body size limit");
    if (chunked) {
        f->state = ST_CHUNKED;
        f->scan = end;
        f->chunk_pos = end;
        f->chunk_state = CH_SIZE;
        f->chunk_total = 0;
        f->trailer_lines = 0;
        f->trailer_bytes = 0;
    } else if (cl > 0) {
        f->state = ST_BODY;
        f->body_left = cl;
    }
    return DR_FRAME_FORWARD;
}

/* Advances the chunked message buffered in buf[0..len) (head at the
 * front). FORWARD with *n the whole message once it ended. */
static dr_frame_action next_chunked(dr_frame *f, const char *buf, size_t len, size_t *n,
                                    dr_http_error *e)
{
    size_t wire_cap = DR_FRONT_MAX_HEAD + 2 * f->max_body + 65536;
    for (;;) {
        if (f->chunk_pos > wire_cap)
            return frame_err(e, 413, "body_too_large",
                             "the chunked body is larger than the body size limit");
        const char *p = buf + f->chunk_pos, *end = buf + len;
        if (f->chunk_state == CH_DATA) {
            uint64_t avail = (uint64_t)(end - p);
            uint64_t take = avail < f->chunk_left ? avail : f->chunk_left;
            f->chunk_pos += (size_t)take;
            f->chunk_left -= take;
            if (f->chunk_left > 0)
                return DR_FRAME_NEED;
            f->chunk_state = CH_DATA_END;
            continue;
        }
        if (f->chunk_state == CH_DATA_END) {
            if (p >= end)
                return DR_FRAME_NEED;
            if (*p == '\n') {
                f->chunk_pos += 1;
            } else if (*p == '\r') {
                if (p + 1 >= end)
                    return DR_FRAME_NEED;
                if (p[1] != '\n')
                    return frame_err(e, 400, "invalid_chunked_body",
                                     "chunked body: a chunk's data is not followed by CRLF");
                f->chunk_pos += 2;
            } else {
                return frame_err(e, 400, "invalid_chunked_body",
                                 "chunked body: a chunk's data is not followed by CRLF");
            }
            f->chunk_state = CH_SIZE;
            continue;
        }
        size_t ln;
        bool bad;
        const char *nl = line_end(p, end, &ln, &bad);
        if (nl == NULL)
            return (size_t)(end - p) > MAX_CHUNK_LINE
                       ? frame_err(e, 400, "invalid_chunked_body",
                                   "chunked body: a chunk-size or trailer line is too long")
                       : DR_FRAME_NEED;
        if (bad || ln > MAX_CHUNK_LINE)
            return frame_err(e, 400, "invalid_chunked_body",
                             "chunked body: a malformed chunk-size or trailer line");
        if (f->chunk_state == CH_TRAILER) {
            f->chunk_pos = (size_t)(nl + 1 - buf);
            if (ln == 0) {
                *n = f->chunk_pos;
                f->starts = true;
                f->state = ST_HEAD;
                f->scan = 0;
                return DR_FRAME_FORWARD;
            }
            size_t nn, vn;
            const char *v;
            if (!check_field(p, ln, &nn, &v, &vn))
                return frame_err(e, 400, "invalid_chunked_body",
                                 "chunked body: a malformed trailer line");
            f->trailer_bytes += ln;
            if (++f->trailer_lines > MAX_TRAILER_FIELDS || f->trailer_bytes > MAX_TRAILER_BYTES)
                return frame_err(e, 431, "headers_too_large",
                                 "chunked body: the trailer has more than 32 lines or 8192 "
                                 "bytes");
            continue;
        }
        /* chunk-size [; extensions]; leading zeros do not count as digits */
        size_t i = 0, zeros = 0;
        uint64_t size = 0;
        while (zeros + 1 < ln && p[zeros] == '0' &&
               ((p[zeros + 1] >= '0' && p[zeros + 1] <= '9') ||
                (p[zeros + 1] >= 'a' && p[zeros + 1] <= 'f') ||
                (p[zeros + 1] >= 'A' && p[zeros + 1] <= 'F')))
            zeros++;
        i = zeros;
        while (i < ln) {
            char c = p[i];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0)
                break;
            if (i - zeros >= 15)
                return frame_err(e, 413, "body_too_large",
                                 "chunked body: a chunk is larger than the body size limit");
            size = size * 16 + (uint64_t)d;
            i++;
        }
        if (i == 0)
            return frame_err(e, 400, "invalid_chunked_body",
                             "chunked body: a chunk-size line without a hexadecimal size");
        size_t k = i;
        if (k < ln && (p[k] == ' ' || p[k] == '\t'))
            return frame_err(e, 400, "invalid_chunked_body",
                             "chunked body: white space after a chunk size is not accepted "
                             "(write \"18;name=value\", not \"18 ;name=value\")");
        if (k < ln && p[k] != ';')
            return frame_err(e, 400, "invalid_chunked_body",
                             "chunked body: a malformed chunk-size line");
        for (; k < ln; k++)
            if (!is_field_byte((unsigned char)p[k]))
                return frame_err(e, 400, "invalid_chunked_body",
                                 "chunked body: a control character in a chunk extension");
        f->chunk_total += size;
        if (f->chunk_total > f->max_body)
            return frame_err(e, 413, "body_too_large",
                             "the chunked body is larger than the body size limit");
        f->chunk_pos = (size_t)(nl + 1 - buf);
        if (size == 0) {
            f->chunk_state = CH_TRAILER;
        } else {
            f->chunk_state = CH_DATA;
            f->chunk_left = size;
        }
    }
}

dr_frame_action dr_frame_next(dr_frame *f, const char *buf, size_t len, size_t *n,
                              dr_http_error *err)
{
    *n = 0;
    f->starts = false;
    if (f->state == ST_BODY) {
        if (len == 0)
            return DR_FRAME_NEED;
        uint64_t take = len < f->body_left ? len : f->body_left;
        f->body_left -= take;
        if (f->body_left == 0)
            f->state = ST_HEAD;
        *n = (size_t)take;
        return DR_FRAME_FORWARD;
    }
    if (f->state == ST_CHUNKED)
        return next_chunked(f, buf, len, n, err);
    /* At a head: empty lines before a request line are dropped. */
    size_t drop = 0;
    while (drop < len && (buf[drop] == '\n' || (buf[drop] == '\r' && drop + 1 < len &&
                                                 buf[drop + 1] == '\n')))
        drop += buf[drop] == '\r' ? 2 : 1;
    f->ep = DR_EP_OTHER;
    if (drop > 0) {
        f->scan = 0;
        *n = drop;
        return DR_FRAME_DROP;
    }
    /* The end of the head: a line feed followed by an empty line. */
    size_t i = f->scan, end = 0;
    for (; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < len && buf[i + 1] == '\n') {
            end = i + 2;
            break;
        }
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
            end = i + 3;
            break;
        }
        if (i + 2 >= len)
            break; /* the rest may complete it: look here again next time */
    }
    if (end == 0) {
        f->scan = i < len ? i : len;
        /* A request line that cannot end within the limits. */
        const char *nl = memchr(buf, '\n', len);
        size_t first = nl ? (size_t)(nl - buf) : len;
        if (first > DR_FRONT_MAX_TARGET + 32) {
            const char *sp = memchr(buf, ' ', first);
            if (sp && (size_t)(buf + first - sp) > DR_FRONT_MAX_TARGET + 1) {
                const char *sp2 = memchr(sp + 1, ' ', (size_t)(buf + first - sp - 1));
                if (sp2 == NULL || (size_t)(sp2 - sp - 1) > DR_FRONT_MAX_TARGET)
                    return frame_err(err, 414, "uri_too_long",
                                     "the request target is longer than 8192 bytes");
            }
            if (nl == NULL)
                return frame_err(err, 400, "malformed_request",
                                 "malformed request line: expected \"METHOD /target HTTP/1.1\"");
        }
        if (len > DR_FRONT_MAX_HEAD)
            return frame_err(err, 431, "headers_too_large",
                             "the request head (request line and headers) is larger than "
                             "16384 bytes");
        return DR_FRAME_NEED;
    }
    f->scan = 0;
    dr_frame_action a = check_head(f, buf, end, err);
    if (a != DR_FRAME_FORWARD)
        return a;
    if (f->state == ST_CHUNKED)
        return next_chunked(f, buf, len, n, err);
    *n = end;
    f->starts = true;
    return DR_FRAME_FORWARD;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

char *dr_frame_error_response(const dr_http_error *err, size_t *len)
{
    char *body = dr_http_error_json(err);
    if (body == NULL)
        return NULL;
    dr_buf b = {0};
    int rc = dr_buf_printf(&b,
                           "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                           "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
                           err->status, reason_phrase(err->status), strlen(body), body);
    dr_free(body);
    if (rc != 0) {
        dr_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return dr_buf_take(&b);
}

/* ---- the pumps ------------------------------------------------------------ */

struct dr_front {
    size_t max_body;
    int timeout_ms;
    dr_metrics *m;
    int stop[2]; /* writing stop[1] ends every pump */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int live;     /* pumps running */
    int flushing; /* ... of which not yet in their closing linger */
    /* Bytes the pumps' request buffers hold beyond their first IN_CHUNK:
     * what clients can make the server keep for requests still arriving
     * (slow or huge uploads on many connections) is bounded by in_budget. */
    atomic_size_t in_held;
    size_t in_budget;
    atomic_size_t handoff_peak; /* the most bytes one connection had queued */
    /* Handoff states of connections handed to libmicrohttpd and not yet
     * claimed, by libmicrohttpd's descriptor (under mu). */
    dr_front_conn **by_fd;
    size_t by_fd_cap;
};

/* ---- reply handoff (see frontdoor.h) -------------------------------------- */

typedef struct handoff_item {
    uint64_t tok;
    char *d;
    size_t len;
} handoff_item;

/* Shared by a pump and libmicrohttpd's connection: freed when both let go. */
struct dr_front_conn {
    pthread_mutex_t mu;
    atomic_int refs;
    bool closed;         /* the pump takes no more bodies */
    size_t q_bytes;      /* of the bodies given and not yet taken */
    atomic_size_t *peak; /* the front door's largest q_bytes (for tests) */
    uint64_t next_tok;   /* the last token given out */
    handoff_item *q;     /* bodies given, in token order: q[q_off..q_n) */
    size_t q_off, q_n, q_cap;
};

/* Writes v in decimal at out, zero-padded to at least width digits (at
 * most 20); returns the number of digits. */
static size_t put_u64(char *out, uint64_t v, int width)
{
    char rev[20];
    int n = 0;
    do
        rev[n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    while (n < width)
        rev[n++] = '0';
    for (int k = 0; k < n; k++)
        out[k] = rev[n - 1 - k];
    return (size_t)n;
}

static dr_front_conn *conn_new(void)
{
    dr_front_conn *c = dr_calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->refs, 1);
    return c;
}

void dr_front_conn_release(dr_front_conn *c)
{
    if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    for (size_t i = c->q_off; i < c->q_n; i++)
        dr_free(c->q[i].d);
    dr_free(c->q);
    pthread_mutex_destroy(&c->mu);
    dr_free(c);
}

bool dr_front_handoff(dr_front_conn *c, char *body, size_t len, char tok[21])
{
    if (c == NULL)
        return false;
    bool ok = false;
    pthread_mutex_lock(&c->mu);
    if (!c->closed) {
        if (c->q_off == c->q_n)
            c->q_off = c->q_n = 0;
        if (c->q_n == c->q_cap) {
            size_t cap = c->q_cap ? c->q_cap * 2 : 4;
            handoff_item *q = dr_realloc(c->q, cap * sizeof(*q));
            if (q != NULL) {
                c->q = q;
                c->q_cap = cap;
            }
        }
        /* Backpressure: past DR_FRONT_HANDOFF_QUEUE bytes not yet taken (a
         * client pipelining requests without reading its replies), bodies
         * go through the socketpair again, whose full buffer stops
         * libmicrohttpd from answering more on this connection. */
        bool room = c->q_off == c->q_n || c->q_bytes + len <= DR_FRONT_HANDOFF_QUEUE;
        if (room && c->q_n < c->q_cap) {
            c->q_bytes += len;
            if (c->peak) {
                size_t pk = atomic_load(c->peak);
                while (pk < c->q_bytes && !atomic_compare_exchange_weak(c->peak, &pk, c->q_bytes))
                    ;
            }
            uint64_t t = ++c->next_tok;
            c->q[c->q_n++] = (handoff_item){t, body, len};
            tok[put_u64(tok, t, 20)] = '\0';
            ok = true;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* The pump's side: the body given with token tok (bodies given before it,
 * whose placeholders were never sent, are dropped), or NULL. */
static char *conn_take(dr_front_conn *c, uint64_t tok, size_t *len)
{
    char *d = NULL;
    pthread_mutex_lock(&c->mu);
    while (c->q_off < c->q_n && c->q[c->q_off].tok <= tok) {
        handoff_item it = c->q[c->q_off++];
        c->q_bytes -= it.len;
        if (it.tok == tok) {
            d = it.d;
            *len = it.len;
            break;
        }
        dr_free(it.d);
    }
    pthread_mutex_unlock(&c->mu);
    return d;
}

/* The pump stops taking bodies; true when one was given and not taken (a
 * placeholder the pump will not replace may still come). */
static bool conn_close(dr_front_conn *c, uint64_t last_taken)
{
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    bool owed = c->next_tok > last_taken;
    pthread_mutex_unlock(&c->mu);
    return owed;
}

/* Registers c (one reference) under mfd: false when out of memory. */
static bool register_conn(dr_front *f, int mfd, dr_front_conn *c)
{
    bool ok = true;
    pthread_mutex_lock(&f->mu);
    if ((size_t)mfd >= f->by_fd_cap) {
        size_t cap = f->by_fd_cap ? f->by_fd_cap : 64;
        while (cap <= (size_t)mfd)
            cap *= 2;
        dr_front_conn **t = dr_realloc(f->by_fd, cap * sizeof(*t));
        if (t == NULL) {
            ok = false;
        } else {
            memset(t + f->by_fd_cap, 0, (cap - f->by_fd_cap) * sizeof(*t));
            f->by_fd = t;
            f->by_fd_cap = cap;
        }
    }
    dr_front_conn *stale = NULL;
    if (ok) {
        /* A registration libmicrohttpd never claimed (it closed the
         * connection without reporting it): the descriptor was reused. */
        stale = f->by_fd[mfd];
        f->by_fd[mfd] = c;
    }
    pthread_mutex_unlock(&f->mu);
    dr_front_conn_release(stale);
    return ok;
}

dr_front_conn *dr_front_claim(dr_front *f, int mfd)
{
    dr_front_conn *c = NULL;
    pthread_mutex_lock(&f->mu);
    if (mfd >= 0 && (size_t)mfd < f->by_fd_cap) {
        c = f->by_fd[mfd];
        f->by_fd[mfd] = NULL;
    }
    pthread_mutex_unlock(&f->mu);
    return c;
}

void dr_front_unclaim(dr_front *f, int mfd)
{
    dr_front_conn_release(dr_front_claim(f, mfd));
}

/* A byte queue: the bytes d[off..len). budget, when set, is shared by
 * queues that may only grow while their capacities together stay within
 * budget_max bytes. */
typedef struct qbuf {
    char *d;
    size_t off, len, cap;
    atomic_size_t *budget;
    size_t budget_max;
} qbuf;

/* Room for at least `want` more bytes at the end (moving the data to the
 * front first); false when out of memory or over the shared budget. */
static bool q_room(qbuf *q, size_t want)
{
    if (q->off == q->len)
        q->off = q->len = 0;
    if (q->cap - q->len >= want)
        return true;
    if (q->off > 0) {
        memmove(q->d, q->d + q->off, q->len - q->off);
        q->len -= q->off;
        q->off = 0;
        if (q->cap - q->len >= want)
            return true;
    }
    size_t cap = q->cap ? q->cap : 16384;
    while (cap - q->len < want)
        cap *= 2;
    if (q->budget != NULL) {
        size_t grow = cap - q->cap;
        size_t held = atomic_fetch_add(q->budget, grow);
        if (held + grow > q->budget_max) {
            atomic_fetch_sub(q->budget, grow);
            return false;
        }
    }
    char *d = dr_realloc(q->d, cap);
    if (d == NULL) {
        if (q->budget != NULL)
            atomic_fetch_sub(q->budget, cap - q->cap);
        return false;
    }
    q->d = d;
    q->cap = cap;
    return true;
}

/* The whole reply to a request the front door cannot take in for want of
 * memory: static, so that sending it needs none. */
static const char nomem_reply[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                  "Content-Type: application/json\r\n"
                                  "Connection: close\r\n"
                                  "Content-Length: 95\r\n\r\n" DR_HTTP_NOMEM_BODY;
_Static_assert(sizeof(DR_HTTP_NOMEM_BODY) - 1 == 95, "Content-Length of nomem_reply");

/* Initial buffer sizes: what recv_some asks room for on each side. */
#define IN_CHUNK 16384
#define OUT_CHUNK 131072

typedef struct pump {
    dr_front *f;
    int c, m;
    dr_frame fr;
    qbuf in;         /* from the client: fwd bytes forwardable, then unframed ones */
    size_t fwd;
    qbuf out;        /* from libmicrohttpd, for the client */
    char *err_resp;  /* the front door's own reply, once the framing failed */
    size_t err_len, err_off;
    bool err_static; /* err_resp is nomem_reply (not to be freed) */
    bool out_full;   /* out could not grow: read m again once out is drained */
    bool failed, c_eof, m_eof, m_shut;
    bool m_dead;    /* a write to m failed: libmicrohttpd closed it */
    bool tracking;  /* the replies are followed (follow_replies) */
    bool decided;   /* after a bad request: whether to answer it is known */
    dr_http_error err;
    /* Requests forwarded and replies seen, to know when libmicrohttpd has
     * answered everything before a bad request. */
    uint64_t n_req, n_rep;
    dr_buf heads; /* per forwarded, unanswered request: 1 for HEAD, else 0 */
    size_t heads_off;
    /* The reply being read from m (libmicrohttpd's output is well formed). */
    int r_state;      /* RS_HEAD, RS_BODY, RS_CHUNK_SIZE, RS_CHUNK_DATA, RS_TRAILER */
    dr_buf r_line;    /* the head (RS_HEAD) or the current chunk/trailer line */
    uint64_t r_left;  /* body or chunk bytes (with its CRLF) still to come */
    bool r_close;     /* the last complete reply said "Connection: close" */
    int64_t req_start_us; /* when the request now arriving began (0: none is) */
    /* out's bytes from out.off: scan_n of them followed, of which ready_n
     * may be sent (the rest is a reply head still arriving, which a
     * handoff may rewrite), then body[body_off..body_len) when set. */
    size_t scan_n, ready_n;
    dr_front_conn *conn; /* the handoff state shared with libmicrohttpd (or NULL) */
    uint64_t last_tok;   /* the last handoff token taken */
    bool conn_closed;    /* conn takes no more bodies */
    char *body;
    size_t body_len, body_off;
} pump;

enum { RS_HEAD = 0, RS_BODY, RS_CHUNK_SIZE, RS_CHUNK_DATA, RS_TRAILER };

/* True when the header block h (NUL-terminated) has a field `name` whose
 * value contains the token `tok` (both lower case; h is lowered). */
static bool head_has(const char *h, const char *name, const char *tok)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(h, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        const char *f = l + 2;
        if (strncmp(f, name, nl) == 0 && f[nl] == ':') {
            const char *e = strstr(f, "\r\n");
            size_t vl = e ? (size_t)(e - f) : strlen(f);
            char v[256];
            snprintf(v, sizeof(v), "%.*s", (int)(vl < 255 ? vl : 255), f);
            if (strstr(v + nl + 1, tok))
                return true;
        }
    }
    return false;
}

/* One reply has ended. */
static void reply_done(pump *p, bool close)
{
    p->n_rep++;
    p->r_close = close;
    if (p->heads_off < p->heads.len)
        p->heads_off++;
    if (p->heads_off == p->heads.len) {
        dr_buf_reset(&p->heads);
        p->heads_off = 0;
    }
    p->r_state = RS_HEAD;
    dr_buf_reset(&p->r_line);
}

/* The handoff header's line start in a lower-cased reply head. */
#define HANDOFF_LINE "\r\nx-dynrag-handoff:"

/*
 * A completed placeholder head (frontdoor.h, "Reply handoff") at
 * out.d[out.off + hs ..) of ll bytes, l its lower-cased copy and h where
 * HANDOFF_LINE is in it: takes the handed-off body, and rewrites the head
 * in place without the handoff header and with the body's Content-Length
 * (never longer: the header line is longer than any length). False when it
 * is not a placeholder of this connection.
 */
static bool take_handoff(pump *p, size_t hs, const char *l, size_t ll, const char *h,
                         size_t *new_ll)
{
    const char *cl = strstr(l, "\r\ncontent-length:");
    if (cl == NULL || p->conn == NULL)
        return false;
    size_t a = (size_t)(h - l) + 2, b;
    const char *v = h + sizeof(HANDOFF_LINE) - 1, *e;
    while (*v == ' ')
        v++;
    uint64_t tok = strtoull(v, (char **)&e, 10);
    const char *eol = strstr(v, "\r\n");
    if (e == v || eol == NULL)
        return false;
    b = (size_t)(eol - l) + 2; /* the header line is [a, b) */
    size_t c0 = (size_t)(cl - l) + 17, c1;
    while (l[c0] == ' ')
        c0++;
    const char *ce = strstr(l + c0, "\r\n");
    if (ce == NULL)
        return false;
    c1 = (size_t)(ce - l); /* the length's value is [c0, c1) */
    if (c1 != c0 + 1 || l[c0] != '0' || (c0 >= a && c0 < b))
        return false;
    char small[1024];
    char *tmp = ll + 32 <= sizeof(small) ? small : dr_malloc(ll + 32);
    if (tmp == NULL)
        return false;
    size_t len = 0;
    char *body = conn_take(p->conn, tok, &len);
    if (body == NULL) {
        if (tmp != small)
            dr_free(tmp);
        return false;
    }
    p->last_tok = tok;
    char num[20];
    size_t nn = put_u64(num, len, 1);
    char *d = p->out.d + p->out.off + hs;
    size_t o = 0;
    /* [0, ll) without [a, b), with [c0, c1) replaced by num */
    size_t cut[2][2] = {{a, b}, {c0, c1}};
    if (c0 < a) {
        cut[0][0] = c0, cut[0][1] = c1;
        cut[1][0] = a, cut[1][1] = b;
    }
    size_t pos = 0;
    for (int k = 0; k < 2; k++) {
        memcpy(tmp + o, d + pos, cut[k][0] - pos);
        o += cut[k][0] - pos;
        if (cut[k][0] == c0) {
            memcpy(tmp + o, num, nn);
            o += nn;
        }
        pos = cut[k][1];
    }
    memcpy(tmp + o, d + pos, ll - pos);
    o += ll - pos;
    /* Shrink in place: the followed bytes after the head move up. */
    size_t after = p->out.len - (p->out.off + hs + ll);
    memcpy(d, tmp, o);
    if (tmp != small)
        dr_free(tmp);
    memmove(d + o, d + ll, after);
    p->out.len -= ll - o;
    p->body = body;
    p->body_len = len;
    p->body_off = 0;
    *new_ll = o;
    return true;
}

/*
 * Follows the replies in out's bytes not yet followed: status line and
 * headers, then a Content-Length body, a chunked one, or none (a reply to
 * HEAD, 1xx, 204, 304). Counts complete final replies in n_rep; marks the
 * followed bytes ready to send, except a head still arriving. Stops after
 * a handoff placeholder, whose body goes next. Returns false when the
 * bytes are not what libmicrohttpd writes (then the pump stops tracking
 * and never sends its own reply on this connection).
 */
static bool follow_replies(pump *p)
{
    while (p->body == NULL && p->out.off + p->scan_n < p->out.len) {
        const char *d = p->out.d + p->out.off;
        size_t i = p->scan_n, n = p->out.len - p->out.off;
        if (p->r_state == RS_BODY || p->r_state == RS_CHUNK_DATA) {
            uint64_t take = n - i < p->r_left ? n - i : p->r_left;
            p->scan_n += (size_t)take;
            p->ready_n = p->scan_n;
            p->r_left -= take;
            if (p->r_left == 0) {
                if (p->r_state == RS_BODY)
                    reply_done(p, p->r_close);
                else
                    p->r_state = RS_CHUNK_SIZE;
            }
            continue;
        }
        /* a line-oriented state: collect up to the end of the line (head: of
         * the empty line) */
        const char *nl = memchr(d + i, '\n', n - i);
        size_t take = nl ? (size_t)(nl - (d + i)) + 1 : n - i;
        if (dr_buf_append(&p->r_line, d + i, take) != 0 || p->r_line.len > 65536)
            return false;
        p->scan_n += take;
        if (p->r_state != RS_HEAD)
            p->ready_n = p->scan_n;
        if (nl == NULL)
            continue;
        char *l = p->r_line.data;
        size_t ll = p->r_line.len;
        if (p->r_state == RS_HEAD) {
            if (!(ll >= 4 && memcmp(l + ll - 4, "\r\n\r\n", 4) == 0))
                continue;
            if (ll < 13 || memcmp(l, "HTTP/1.", 7) != 0)
                return false;
            size_t hs = p->scan_n - ll; /* where the head starts in out */
            p->ready_n = p->scan_n;
            int status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
            for (size_t k = 0; k < ll; k++)
                if (l[k] >= 'A' && l[k] <= 'Z')
                    l[k] = (char)(l[k] - 'A' + 'a');
            bool close = head_has(l, "connection", "close");
            if (status >= 100 && status < 200) {
                dr_buf_reset(&p->r_line); /* interim: the final reply follows */
                continue;
            }
            bool is_head = p->heads_off < p->heads.len && p->heads.data[p->heads_off] == 1;
            const char *cl = strstr(l, "\r\ncontent-length:");
            const char *handoff = strstr(l, HANDOFF_LINE);
            if (handoff != NULL) {
                size_t new_ll = 0;
                if (is_head || !take_handoff(p, hs, l, ll, handoff, &new_ll))
                    return false; /* a placeholder that cannot be replaced */
                p->scan_n = p->ready_n = hs + new_ll;
                reply_done(p, close);
            } else if (is_head || status == 204 || status == 304) {
                reply_done(p, close);
            } else if (head_has(l, "transfer-encoding", "chunked")) {
                p->r_close = close;
                p->r_state = RS_CHUNK_SIZE;
                dr_buf_reset(&p->r_line);
            } else if (cl) {
                uint64_t len = strtoull(cl + 17, NULL, 10);
                p->r_close = close;
                dr_buf_reset(&p->r_line);
                if (len == 0) {
                    reply_done(p, close);
                } else {
                    p->r_state = RS_BODY;
                    p->r_left = len;
                }
            } else {
                return false; /* a body up to the close: nothing follows it */
            }
        } else if (p->r_state == RS_CHUNK_SIZE) {
            char *end;
            uint64_t size = strtoull(l, &end, 16);
            if (end == l)
                return false;
            dr_buf_reset(&p->r_line);
            if (size == 0) {
                p->r_state = RS_TRAILER;
            } else {
                p->r_state = RS_CHUNK_DATA;
                p->r_left = size + 2;
            }
        } else { /* RS_TRAILER */
            bool empty = ll <= 2;
            dr_buf_reset(&p->r_line);
            if (empty)
                reply_done(p, p->r_close);
        }
    }
    return true;
}

/* Follows what libmicrohttpd wrote (or, once the replies cannot be
 * followed, lets every byte through). False when a handoff placeholder
 * may be left unreplaced: the connection must end. */
static bool follow(pump *p)
{
    if (p->tracking && !follow_replies(p))
        p->tracking = false;
    if (!p->tracking) {
        if (p->conn && !p->conn_closed) {
            p->conn_closed = true;
            if (conn_close(p->conn, p->last_tok))
                return false;
        }
        if (p->body == NULL)
            p->scan_n = p->ready_n = p->out.len - p->out.off;
    }
    return true;
}

/* Frames the unframed bytes of p->in. */
static void pump_frame(pump *p)
{
    while (!p->failed) {
        size_t start = p->in.off + p->fwd, n = 0;
        dr_http_error e;
        dr_frame_action a = dr_frame_next(&p->fr, p->in.d + start, p->in.len - start, &n, &e);
        if (a == DR_FRAME_NEED)
            return;
        if (a == DR_FRAME_FORWARD) {
            p->fwd += n;
            if (p->fr.starts) {
                p->n_req++;
                if (dr_buf_putc(&p->heads, p->fr.is_head ? 1 : 0) != 0)
                    p->tracking = false;
            }
        } else if (a == DR_FRAME_DROP) {
            /* drop n bytes at `start`: move the forwardable ones up */
            memmove(p->in.d + p->in.off + n, p->in.d + p->in.off, p->fwd);
            p->in.off += n;
        } else {
            p->failed = true;
            p->err = e;
            dr_log(DYNRAG_LOG_DEBUG, MOD, "front door: %d %s", e.status, e.message);
            return;
        }
    }
}

/* Non-blocking send of q's bytes (or n bytes at d) to fd; false when fd
 * failed. */
static bool send_some(int fd, const char *d, size_t n, size_t *sent)
{
    *sent = 0;
    while (*sent < n) {
        ssize_t w = send(fd, d + *sent, n - *sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            *sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        return w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    return true;
}

/* Reads what fd has into q (up to limit bytes queued), with room for at
 * least `chunk` bytes per recv. Returns 1 on data or nothing, 0 on end of
 * stream, -1 on error. */
static int recv_some(int fd, qbuf *q, size_t limit, size_t chunk)
{
    for (int rounds = 0; rounds < 4 && q->len - q->off < limit; rounds++) {
        /* Out of memory to grow: read into the room there is, if any. */
        if (!q_room(q, chunk) && q->cap == q->len)
            return rounds == 0 ? -2 : 1;
        ssize_t r = recv(fd, q->d + q->len, q->cap - q->len, MSG_DONTWAIT);
        if (r > 0) {
            size_t got = (size_t)r;
            q->len += got;
            if (q->len < q->cap)
                return 1; /* a short read: most likely all there was */
            continue;
        }
        if (r == 0)
            return 0;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -1;
    }
    return 1;
}

/* Sends out's ready bytes, then the handed-off body, as far as c takes
 * them (one sendmsg for both); false when c failed, or when a handoff
 * placeholder may be left unreplaced. */
static bool flush_out(pump *p)
{
    for (;;) {
        struct iovec iov[2];
        int n = 0;
        if (p->ready_n > 0)
            iov[n++] = (struct iovec){p->out.d + p->out.off, p->ready_n};
        if (p->body)
            iov[n++] = (struct iovec){p->body + p->body_off, p->body_len - p->body_off};
        if (n == 0)
            return true;
        struct msghdr mh;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)n;
        ssize_t w = sendmsg(p->c, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
        size_t k = (size_t)w, take = k < p->ready_n ? k : p->ready_n;
        p->out.off += take;
        p->ready_n -= take;
        p->scan_n -= take;
        k -= take;
        if (p->body) {
            p->body_off += k;
            if (p->body_off == p->body_len) {
                dr_free(p->body);
                p->body = NULL;
                if (!follow(p)) /* the replies after it */
                    return false;
            }
        }
    }
}

/* Writes what can go: forwardable bytes to m, replies (then the error
 * reply) to c. False when c failed. */
static bool pump_flush(pump *p)
{
    size_t s;
    if (p->fwd > 0 && !p->m_dead) {
        if (!send_some(p->m, p->in.d + p->in.off, p->fwd, &s))
            p->m_dead = true; /* libmicrohttpd closed; its replies are still read */
        p->in.off += s;
        p->fwd -= s;
    }
    if (p->m_dead) {
        p->in.off += p->fwd;
        p->fwd = 0;
    }
    if (!flush_out(p))
        return false;
    if (p->failed && !p->decided) {
        bool settled = p->fwd == 0 && p->tracking && p->n_rep == p->n_req &&
                       p->r_state == RS_HEAD && p->r_line.len == 0;
        if (settled && !p->r_close && !p->m_eof) {
            p->decided = true;
            p->err_resp = dr_frame_error_response(&p->err, &p->err_len);
            if (p->err_resp == NULL) {
                p->err_resp = (char *)nomem_reply;
                p->err_len = sizeof(nomem_reply) - 1;
                p->err_static = true;
                p->err.status = 503;
            }
            /* Counted before it is sent, so that a /metrics scrape after the
             * reply sees it. */
            dr_metrics_request(p->f->m, (dr_endpoint_id)p->fr.ep, p->err.status, 0);
        } else if (settled || p->m_eof || !p->tracking) {
            p->decided = true; /* the connection ended before the bad request */
            dr_log(DYNRAG_LOG_DEBUG, MOD,
                   "front door: a %d request after the connection's last reply: not answered",
                   p->err.status);
        }
    }
    /* The error reply goes last: after every reply libmicrohttpd sent. */
    if (p->err_resp && p->out.off == p->out.len && p->body == NULL && p->err_off < p->err_len) {
        if (!send_some(p->c, p->err_resp + p->err_off, p->err_len - p->err_off, &s))
            return false;
        p->err_off += s;
    }
    /* The client sent its last byte: let libmicrohttpd see the end. */
    if (p->c_eof && !p->failed && p->fwd == 0 && !p->m_shut) {
        shutdown(p->m, SHUT_WR);
        p->m_shut = true;
    }
    return true;
}

/*
 * Closes the client's socket without losing the last reply: closing a
 * socket with unread input makes the kernel send a reset, which can
 * discard a reply the client has not read yet. So the write side is shut
 * first and the input read and dropped until the client closes too (at
 * most a second, 1 MiB, or a stop).
 */
static void linger_close(int c, bool eof, int stop_fd)
{
    shutdown(c, SHUT_WR);
    int64_t until = dr_now_us() + 1000000;
    size_t dropped = 0;
    char buf[16384];
    while (!eof && dropped < (1u << 20)) {
        int64_t left = until - dr_now_us();
        if (left <= 0)
            break;
        struct pollfd pf[2] = {{c, POLLIN, 0}, {stop_fd, POLLIN, 0}};
        int r = poll(pf, 2, (int)(left / 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || pf[1].revents)
            break;
        ssize_t n = recv(c, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n <= 0)
            break;
        dropped += (size_t)n;
    }
    close(c);
}

/* True while a request is arriving: unframed bytes are held, or a body
 * (Content-Length or chunked) has begun and not ended. */
static bool request_arriving(const pump *p)
{
    return !p->failed && (p->in.len - p->in.off > p->fwd || p->fr.state != ST_HEAD);
}

/*
 * A request took longer than the time limit to arrive (a client sending a
 * byte now and then holds a connection and its buffers): answered 408 when
 * every reply before it was delivered and libmicrohttpd has none of it
 * pending, then the connection is closed either way (libmicrohttpd, whose
 * end is closed, drops the part it has).
 */
static void request_timeout(pump *p)
{
    dr_front *f = p->f;
    bool partial = p->fr.state == ST_BODY; /* its head was forwarded */
    bool settled = p->tracking && p->n_rep + (partial ? 1 : 0) == p->n_req &&
                   p->r_state == RS_HEAD && p->r_line.len == 0 && p->out.off == p->out.len &&
                   p->body == NULL;
    dr_http_error e;
    dr_http_error_set(&e, 408, "invalid_request_error", "request_timeout", NULL,
                      "the request did not arrive within the time limit of %d ms",
                      f->timeout_ms);
    dr_log(DYNRAG_LOG_DEBUG, MOD, "front door: %s", e.message);
    dr_metrics_request(f->m, (dr_endpoint_id)p->fr.ep, 408, 0);
    if (!settled)
        return;
    size_t len = 0, sent = 0;
    char *resp = dr_frame_error_response(&e, &len);
    if (resp != NULL)
        (void)send_some(p->c, resp, len, &sent);
    dr_free(resp);
}

static void *pump_main(void *arg)
{
    pump *p = arg;
    dr_front *f = p->f;
    size_t in_limit = DR_FRONT_MAX_HEAD + 2 * f->max_body + 65536 + 16384;
    for (;;) {
        if (!pump_flush(p))
            break;
        /* The time limit of the request arriving, from its first byte. */
        int64_t now = dr_now_us();
        if (!request_arriving(p))
            p->req_start_us = 0;
        else if (p->req_start_us == 0)
            p->req_start_us = now;
        int64_t req_left_ms = -1;
        if (p->req_start_us != 0 && f->timeout_ms > 0) {
            req_left_ms = (p->req_start_us + (int64_t)f->timeout_ms * 1000 - now + 999) / 1000;
            if (req_left_ms <= 0) {
                request_timeout(p);
                break;
            }
        }
        bool err_pending = p->err_resp && p->err_off < p->err_len;
        bool out_pending = p->ready_n > 0 || p->body != NULL || err_pending;
        if (!out_pending && (p->failed ? p->decided : p->m_eof))
            break; /* everything there is to send was sent */
        /* A closed side is left out (its POLLHUP would spin the loop). */
        struct pollfd pf[3] = {
            {p->c, 0, 0}, {p->m_eof ? -1 : p->m, 0, 0}, {f->stop[0], POLLIN, 0}};
        if (!p->failed && !p->c_eof && p->in.len - p->in.off < in_limit)
            pf[0].events |= POLLIN;
        if (out_pending)
            pf[0].events |= POLLOUT;
        if (!p->m_eof && p->out.len - p->out.off < (p->out_full ? 1 : 262144))
            pf[1].events |= POLLIN;
        if (p->fwd > 0 && !p->m_dead)
            pf[1].events |= POLLOUT;
        int wait_ms = out_pending ? f->timeout_ms : -1;
        if (req_left_ms > 0 && (wait_ms < 0 || req_left_ms < wait_ms))
            wait_ms = (int)req_left_ms;
        int r = poll(pf, 3, wait_ms);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (r == 0 && req_left_ms > 0 && wait_ms == (int)req_left_ms)
            continue; /* the request's time is up: answered at the top */
        if (r == 0)
            break; /* the client stopped reading its replies */
        if (pf[2].revents)
            break;
        if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            int rr = recv_some(p->m, &p->out, 262144, OUT_CHUNK);
            p->out_full = rr == -2; /* no memory to grow: wait for the client to drain out */
            if (rr == -2)
                rr = 1;
            if (!follow(p))
                break;
            if (rr <= 0)
                p->m_eof = true;
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR) && (pf[0].events & POLLIN)) {
            int rr = recv_some(p->c, &p->in, in_limit, IN_CHUNK);
            if (rr == -2 && !p->failed) {
                /* No memory (or no room in the budget of requests still
                 * arriving) to take the request in: answered like a bad one. */
                p->failed = true;
                dr_http_error_set(&p->err, 503, "server_error", "out_of_memory", NULL, "%s",
                                  "out of memory for requests still arriving; retry later");
                rr = 1;
            }
            if (rr < 0)
                break; /* the client is gone: closing m tells libmicrohttpd */
            if (rr == 0)
                p->c_eof = true;
            pump_frame(p);
            if (!p->failed && !p->c_eof && p->fwd == 0 &&
                p->in.len - p->in.off >= in_limit) {
                /* cannot happen within the framing's limits; never wait forever */
                break;
            }
        } else if (pf[0].revents & (POLLERR | POLLNVAL | POLLHUP)) {
            break; /* the client is gone (reset, or closed both ways) */
        }
    }
    close(p->m);
    if (p->conn) {
        (void)conn_close(p->conn, p->last_tok);
        dr_front_conn_release(p->conn);
    }
    dr_free(p->body);
    pthread_mutex_lock(&f->mu);
    f->flushing--; /* everything for the client was written */
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    linger_close(p->c, p->c_eof, f->stop[0]);
    atomic_fetch_sub(&f->in_held, p->in.cap - IN_CHUNK);
    bool big = p->in.cap + p->out.cap > ((size_t)1 << 20);
    dr_free(p->in.d);
    dr_free(p->out.d);
    if (big)
        malloc_trim(0); /* give large buffers back to the system, not only to malloc */
    if (!p->err_static)
        dr_free(p->err_resp);
    dr_buf_free(&p->heads);
    dr_buf_free(&p->r_line);
    dr_free(p);
    pthread_mutex_lock(&f->mu);
    f->live--;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

int dr_front_create(size_t max_body, int timeout_ms, dr_metrics *metrics, dr_front **out,
                    dynrag_error *err)
{
    *out = NULL;
    dr_front *f = dr_calloc(1, sizeof(*f));
    if (f == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    f->max_body = max_body;
    f->timeout_ms = timeout_ms;
    f->m = metrics;
    /* Room for 16 requests of the largest size at once, and at least
     * 256 MiB; past it, a request that needs more is answered 503. */
    f->in_budget = 16 * (2 * max_body + DR_FRONT_MAX_HEAD + 65536);
    if (f->in_budget < ((size_t)256 << 20))
        f->in_budget = (size_t)256 << 20;
    atomic_init(&f->in_held, 0);
    atomic_init(&f->handoff_peak, 0);
    if (pipe2(f->stop, O_CLOEXEC) != 0) {
        dr_free(f);
        return dr_err_set(err, DYNRAG_ERR_IO, "front door: pipe: %s", strerror(errno));
    }
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    *out = f;
    return DYNRAG_OK;
}

int dr_front_serve(dr_front *f, int client)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
        int e = errno;
        close(client);
        errno = e;
        return -1;
    }
    /* Both buffers at once, so that a connection is refused (503) when
     * memory is short rather than dropped halfway. */
    pump *p = dr_calloc(1, sizeof(*p));
    char *in = dr_malloc(IN_CHUNK), *out = dr_malloc(OUT_CHUNK);
    if (p == NULL || in == NULL || out == NULL) {
        dr_free(p);
        dr_free(in);
        dr_free(out);
        close(sp[0]);
        close(sp[1]);
        size_t sent = 0;
        (void)send_some(client, nomem_reply, sizeof(nomem_reply) - 1, &sent);
        linger_close(client, false, f->stop[0]);
        errno = ENOMEM;
        return -1;
    }
    p->in.d = in;
    p->in.cap = IN_CHUNK;
    p->in.budget = &f->in_held;
    p->in.budget_max = f->in_budget;
    p->out.d = out;
    p->out.cap = OUT_CHUNK;
    p->f = f;
    p->c = client;
    p->m = sp[0];
    p->fr.max_body = f->max_body;
    p->tracking = true;
    /* The handoff state: one reference for the pump, one registered for
     * libmicrohttpd's start notification. Without it (no memory), replies
     * only go through the socketpair. */
    p->conn = conn_new();
    if (p->conn != NULL) {
        p->conn->peak = &f->handoff_peak;
        atomic_fetch_add(&p->conn->refs, 1);
        if (!register_conn(f, sp[1], p->conn)) {
            dr_front_conn_release(p->conn);
            dr_front_conn_release(p->conn);
            p->conn = NULL;
        }
    }
    /* Replies leave as the pump gets them: no Nagle delay between pieces. */
    int one = 1;
    (void)setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 128 * 1024);
    pthread_t t;
    pthread_mutex_lock(&f->mu);
    f->live++;
    f->flushing++;
    pthread_mutex_unlock(&f->mu);
    int rc = pthread_create(&t, &at, pump_main, p);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        pthread_mutex_lock(&f->mu);
        f->live--;
        f->flushing--;
        pthread_mutex_unlock(&f->mu);
        if (p->conn) {
            dr_front_unclaim(f, sp[1]);
            dr_front_conn_release(p->conn);
        }
        close(client);
        close(sp[0]);
        close(sp[1]);
        dr_free(p);
        errno = rc;
        return -1;
    }
    return sp[1];
}

size_t dr_front_handoff_peak(dr_front *f)
{
    return atomic_load(&f->handoff_peak);
}

int dr_front_live(dr_front *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->live;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* Waits until no pump is still writing to its client, or ms passed. */
static void wait_flushed(dr_front *f, int ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&f->mu);
    while (f->flushing > 0)
        if (pthread_cond_timedwait(&f->cv, &f->mu, &until) != 0)
            break;
    pthread_mutex_unlock(&f->mu);
}

void dr_front_free(dr_front *f, int flush_ms)
{
    if (f == NULL)
        return;
    /* The replies first; then the lingering closes are cut. */
    wait_flushed(f, flush_ms);
    ssize_t w;
    do
        w = write(f->stop[1], "x", 1);
    while (w < 0 && errno == EINTR);
    pthread_mutex_lock(&f->mu);
    while (f->live > 0)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    close(f->stop[0]);
    close(f->stop[1]);
    for (size_t i = 0; i < f->by_fd_cap; i++)
        dr_front_conn_release(f->by_fd[i]);
    dr_free(f->by_fd);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    dr_free(f);
}
