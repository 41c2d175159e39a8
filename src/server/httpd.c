/*
 * httpd.c - libmicrohttpd glue: per-request state, limits, auth, routing,
 * error responses, event streams, graceful stop.
 *
 * A request's life: the first access-handler call (headers only) creates
 * its req_state, routes it and checks the token and Content-Length; an
 * early error is answered at once (MHD then closes the connection without
 * reading the body). Later calls append the body (past max_body it is
 * drained and dropped: 413). The last call runs the handler, queues its
 * response and counts it in the metrics. MHD's completion callback counts
 * requests that got no response (499) and frees the state.
 *
 * Threads: one MHD daemon per worker thread, each with its own polling
 * thread and no listening socket, and an acceptor thread that owns the
 * listening socket and hands every new connection to the worker with the
 * fewest open connections (round robin among equals). MHD's own thread pool
 * lets whichever worker wakes first accept every pending connection, so a
 * client with a few keep-alive connections (a proxy, a benchmark) often had
 * all of them served by one thread while the others idled.
 *
 * MHD never reads a client's socket itself: the acceptor hands each
 * connection to the front door (frontdoor.c), whose pump thread validates
 * every request head on it and gives MHD one end of a socketpair instead.
 * So every request MHD parses is well formed, and the errors it would
 * answer with its own HTML are the front door's JSON.
 */
#define _GNU_SOURCE
#include "server/httpd.h"
#include "server/frontdoor.h"

#include "core/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MOD "server"

/*
 * One worker: an MHD daemon with its polling thread. MHD reports a new
 * connection as started from the worker's own thread, some time after the
 * acceptor handed it over; until then it counts as pending, so that a burst
 * of connections is spread before any of them has started. A pending count
 * older than a second is dropped (MHD closes a connection it could not set
 * up without reporting it).
 */
typedef struct worker {
    struct dr_httpd *h;
    struct MHD_Daemon *d;
    atomic_int open;        /* started minus closed */
    atomic_int pending;     /* handed over, not yet started */
    int64_t last_handed_us; /* the acceptor's own */
} worker;

struct dr_httpd {
    worker *w;
    int n_w;
    dr_httpd_config cfg;
    char *api_key;
    char *cors_origin;
    atomic_int in_flight;
    atomic_bool draining; /* the stop began: close after every response */
    int port;
    int listen_fd;
    int wake[2]; /* the stop writes wake[1]; the acceptor polls wake[0] */
    pthread_t acceptor;
    bool acceptor_started;
    unsigned next; /* round-robin start, the acceptor's own */
    dr_front *front; /* validates every request before libmicrohttpd reads it */
    int flush_ms;    /* at the stop: how long the pumps may take to deliver replies */
};

typedef struct req_state {
    dr_httpd *h;
    dr_endpoint_id ep;
    int64_t start_us;
    dr_buf body;
    bool too_big;
    bool answered;
    bool started; /* the access handler ran once (headers checked) */
    bool counted; /* in the request metrics (when its response was queued) */
    bool is_post; /* its reply may be handed off (HEAD never is) */
    int status;   /* of the queued response */
    char query_id[80]; /* of the queued response ("" for none) */
} req_state;

/* An event stream being sent: the prepared body and how far it got. */
typedef struct stream_state {
    char *data;
    size_t len;
} stream_state;

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    /* MHD serves the front door's socketpairs, not TCP sockets: its TCP
     * tuning (TCP_NODELAY, TCP_CORK, and the "push" that needs them) fails
     * there on every reply (it only gives up for other errors than Linux's
     * EOPNOTSUPP), and its failing is no news: dropped before formatting. */
    if (strncmp(fmt, "Setting ", 8) == 0 || strncmp(fmt, "Failed to push the data", 23) == 0)
        return;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    dr_log(DYNRAG_LOG_WARN, MOD, "libmicrohttpd: %s", msg);
}

/* Serves one "\n\n"-terminated event (or what fits in max) per call, so
 * that each event leaves in its own chunk. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream_state *s = cls;
    if (pos >= s->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t off = (size_t)pos;
    const char *end = strstr(s->data + off, "\n\n");
    size_t n = end ? (size_t)(end - (s->data + off)) + 2 : s->len - off;
    if (n > max)
        n = max;
    memcpy(buf, s->data + off, n);
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    stream_state *s = cls;
    if (s == NULL)
        return;
    dr_free(s->data);
    dr_free(s);
}

/* The request's Origin header when it is the configured CORS origin. */
static const char *allowed_origin(struct MHD_Connection *c, const dr_httpd *h)
{
    if (h->cors_origin == NULL)
        return NULL;
    const char *o = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    return o && strcmp(o, h->cors_origin) == 0 ? h->cors_origin : NULL;
}

/* CORS headers for a request from the configured origin (none otherwise). */
static void add_cors_headers(struct MHD_Connection *c, const dr_httpd *h, struct MHD_Response *r)
{
    const char *origin = allowed_origin(c, h);
    if (origin == NULL)
        return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
    MHD_add_response_header(r, "Vary", "Origin");
}

/*
 * A large reply goes to the client from the connection's pump, not through
 * the socketpair: MHD sends a placeholder the pump replaces (frontdoor.h,
 * "Reply handoff"). Returns the placeholder with *body handed over (set to
 * NULL); or NULL with *body still the caller's, or, out of memory after
 * the handoff, NULL with *body NULL (then a 500).
 */
static struct MHD_Response *handoff_response(struct MHD_Connection *c, char **body,
                                             size_t body_len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    char tok[21];
    if (r == NULL || ci == NULL || !dr_front_handoff(ci->socket_context, *body, body_len, tok)) {
        if (r != NULL)
            MHD_destroy_response(r);
        return NULL;
    }
    *body = NULL; /* the pump's now */
    if (MHD_add_response_header(r, DR_FRONT_HANDOFF_HEADER, tok) != MHD_YES) {
        MHD_destroy_response(r);
        return NULL;
    }
    return r;
}

/*
 * Queues a response for the exchange (its body_out is consumed). Falls back
 * to a plain 500 when memory runs out. Returns MHD's result.
 */
static enum MHD_Result respond(struct MHD_Connection *c, req_state *rs, dr_http_exchange *x)
{
    int status = x->status ? x->status : 500;
    char *body = x->body_out;
    size_t body_len = body && x->body_out_len ? x->body_out_len : body ? strlen(body) : 0;
    x->body_out = NULL;
    const char *ctype = x->content_type ? x->content_type : "application/json";
    if (body == NULL && status >= 400) {
        if (x->err.message[0] == '\0')
            dr_http_error_set(&x->err, status, "server_error", "internal_error", NULL,
                              "internal error");
        body = dr_http_error_json(&x->err);
        body_len = body ? strlen(body) : 0;
        ctype = "application/json";
    }
    struct MHD_Response *r = NULL;
    if (body && x->stream && status < 400) {
        stream_state *s = dr_calloc(1, sizeof(*s));
        if (s) {
            s->data = body;
            s->len = body_len;
            body = NULL;
            r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s,
                                                  stream_free);
            if (r == NULL)
                stream_free(s);
        }
    } else if (body) {
        if (status == 200 && body_len >= DR_FRONT_HANDOFF_MIN && rs->is_post)
            r = handoff_response(c, &body, body_len);
        /* MHD releases the body through dr_free, the allocator that made it. */
        if (body != NULL)
            r = MHD_create_response_from_buffer_with_free_callback(body_len, body, dr_free);
        if (r != NULL)
            body = NULL;
    }
    dr_free(body);
    if (r == NULL) {
        static char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                            "\"code\":\"internal_error\",\"param\":null}}";
        status = 500;
        ctype = "application/json";
        r = MHD_create_response_from_buffer(strlen(oom), oom, MHD_RESPMEM_PERSISTENT);
        if (r == NULL)
            return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (x->stream && status < 400) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(r, "X-Accel-Buffering", "no");
    }
    if (status == 405)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, dr_endpoint_method(x->ep));
    if (status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 503)
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    add_cors_headers(c, rs->h, r);
    if (atomic_load(&rs->h->draining))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    rs->answered = true;
    rs->status = status;
    dr_strlcpy(rs->query_id, x->query_id, sizeof(rs->query_id));
    /* Counted now, before the client can read the response, so that a
     * /metrics scrape that follows a response always includes it. */
    if (ret == MHD_YES) {
        dr_metrics_request(rs->h->cfg.metrics, rs->ep, status,
                           (double)(dr_now_us() - rs->start_us) / 1e6);
        rs->counted = true;
    }
    return ret;
}

static enum MHD_Result respond_error(struct MHD_Connection *c, req_state *rs, int status,
                                     const char *type, const char *code, const char *fmt,
                                     const char *arg)
{
    dr_http_exchange x;
    memset(&x, 0, sizeof(x));
    x.ep = rs->ep;
    x.status = status;
    dr_http_error_set(&x.err, status, type, code, NULL, fmt, arg);
    return respond(c, rs, &x);
}

/* Answers a CORS preflight (OPTIONS) for a known endpoint: 204 with the
 * endpoint's method for the configured origin, 403 for another origin. */
static enum MHD_Result preflight(struct MHD_Connection *c, req_state *rs)
{
    const char *origin = allowed_origin(c, rs->h);
    if (origin == NULL)
        return respond_error(c, rs, 403, "invalid_request_error", "origin_not_allowed", "%s",
                             "cross-origin requests are allowed only from the origin given "
                             "with --cors-origin");
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    char methods[32];
    snprintf(methods, sizeof(methods), "%s, OPTIONS", dr_endpoint_method(rs->ep));
    MHD_add_response_header(r, "Access-Control-Allow-Methods", methods);
    MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
    MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    add_cors_headers(c, rs->h, r);
    if (atomic_load(&rs->h->draining))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_NO_CONTENT, r);
    MHD_destroy_response(r);
    rs->answered = true;
    rs->status = 204;
    if (ret == MHD_YES) {
        dr_metrics_request(rs->h->cfg.metrics, rs->ep, 204,
                           (double)(dr_now_us() - rs->start_us) / 1e6);
        rs->counted = true;
    }
    return ret;
}

/* The checks that need only the headers, in order: draining (503), Host
 * (400), CORS preflight, route (404, 405), token (401), Content-Type
 * (415), Content-Length (413). Returns MHD_YES with the request answered
 * (rs->answered) or not (continue reading). */
static enum MHD_Result check_headers(struct MHD_Connection *c, req_state *rs, const char *url,
                                     const char *method, const char *version)
{
    dr_httpd *h = rs->h;
    int route = dr_http_route(method, url, &rs->ep);
    if (atomic_load(&h->draining))
        return respond_error(c, rs, 503, "server_error", "shutting_down", "%s",
                             "the server is shutting down: retry on a new connection");
    /* RFC 9112 3.2: an HTTP/1.1 request without Host is a 400. */
    if (version && strcmp(version, MHD_HTTP_VERSION_1_1) == 0 &&
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST) == NULL)
        return respond_error(c, rs, 400, "invalid_request_error", "missing_host", "%s",
                             "an HTTP/1.1 request needs a Host header");
    if (route != 404 && strcmp(method, "OPTIONS") == 0 && h->cors_origin)
        return preflight(c, rs);
    if (route == 404)
        return respond_error(c, rs, 404, "invalid_request_error", "not_found",
                             "no endpoint %s (see docs/http-api.md)", url);
    if (route == 405) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s does not accept %.16s: use %s", dr_endpoint_path(rs->ep),
                 method, dr_endpoint_method(rs->ep));
        return respond_error(c, rs, 405, "invalid_request_error", "method_not_allowed", "%s", msg);
    }
    if (h->api_key && dr_endpoint_needs_auth(rs->ep)) {
        const char *auth =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        if (auth == NULL)
            return respond_error(c, rs, 401, "authentication_error", "missing_api_key", "%s",
                                 "missing bearer token: send \"Authorization: Bearer <key>\"");
        if (!dr_http_bearer_ok(auth, h->api_key))
            return respond_error(c, rs, 401, "authentication_error", "invalid_api_key", "%s",
                                 "invalid bearer token");
    }
    /* A JSON body must say so: a browser page can send a cross-site POST
     * without a CORS preflight only as text/plain or a form. */
    if (dr_endpoint_has_body(rs->ep) &&
        !dr_http_content_type_json(
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE)))
        return respond_error(c, rs, 415, "invalid_request_error", "unsupported_media_type", "%s",
                             "the request body must be sent with \"Content-Type: "
                             "application/json\"");
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    long long n = 0;
    if (cl && dr_parse_ll(cl, 0, (long long)1 << 62, &n) == DYNRAG_OK &&
        (unsigned long long)n > (unsigned long long)h->cfg.max_body) {
        char msg[64];
        snprintf(msg, sizeof(msg), "%zu", h->cfg.max_body);
        return respond_error(c, rs, 413, "invalid_request_error", "body_too_large",
                             "the request body is larger than the limit of %s bytes", msg);
    }
    /* Room for the announced body in one allocation (a failure here only
     * means the appends grow the buffer instead). */
    if (n > 0)
        (void)dr_buf_reserve(&rs->body, (size_t)n);
    return MHD_YES;
}

/* Stands for a request whose state could not be allocated (on_uri): it is
 * answered 503 from static memory and never counted. */
static req_state nomem_request;

/* 503 "out of memory" from static memory, connection closed after. */
static enum MHD_Result respond_nomem(struct MHD_Connection *c)
{
    static const char body[] = DR_HTTP_NOMEM_BODY;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(c, 503, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    dr_httpd *h = cls;
    req_state *rs = *con_cls;
    if (rs == &nomem_request) { /* answered: drop the body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rs == NULL) { /* out of memory in on_uri */
        *con_cls = &nomem_request;
        return respond_nomem(c);
    }
    if (!rs->started) {
        rs->started = true;
        rs->is_post = strcmp(method, "POST") == 0;
        return check_headers(c, rs, url, method, version);
    }
    if (rs->answered) {
        /* Answered early: drop whatever body still arrives. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!rs->too_big && dr_buf_append(&rs->body, upload_data, *upload_data_size) != 0) {
            rs->too_big = true;
            dr_buf_free(&rs->body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rs->too_big) {
        char msg[64];
        snprintf(msg, sizeof(msg), "%zu", h->cfg.max_body);
        return respond_error(c, rs, 413, "invalid_request_error", "body_too_large",
                             "the request body is larger than the limit of %s bytes", msg);
    }
    dr_http_exchange x;
    memset(&x, 0, sizeof(x));
    x.ep = rs->ep;
    x.method = method;
    x.url = url;
    x.body = rs->body.data ? rs->body.data : "";
    x.body_len = rs->body.len;
    x.start_us = rs->start_us;
    x.deadline_us = rs->start_us + (int64_t)h->cfg.timeout_ms * 1000;
    h->cfg.handler(h->cfg.user, &x);
    enum MHD_Result ret = respond(c, rs, &x);
    dr_free(x.body_out);
    dr_buf_free(&rs->body);
    return ret;
}

/*
 * MHD's URI logger: called once a request line is read, before the headers.
 * The request's state starts here (and not at the first access-handler
 * call), so that the completion callback also sees the requests libmicrohttpd
 * refuses itself after the request line (malformed or oversized headers, a
 * bad Content-Length, another HTTP version) and counts them in /metrics.
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)uri;
    (void)c;
    dr_httpd *h = cls;
    req_state *rs = dr_calloc(1, sizeof(*rs));
    if (rs == NULL)
        return NULL;
    rs->h = h;
    rs->ep = DR_EP_OTHER;
    rs->start_us = dr_now_us();
    rs->body.cap_limit = h->cfg.max_body;
    atomic_fetch_add(&h->in_flight, 1);
    dr_metrics_inflight(h->cfg.metrics, 1);
    return rs;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    dr_httpd *h = cls;
    req_state *rs = *con_cls;
    if (rs == NULL || rs == &nomem_request)
        return;
    double secs = (double)(dr_now_us() - rs->start_us) / 1e6;
    /* A response libmicrohttpd queued itself (the request never reached
     * the handler) counts with its status; a request that never got a
     * response (client gone, timeout) as 499, nginx's "client closed
     * request". */
    int status = rs->answered ? rs->status : 499;
    if (!rs->answered) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (ci && ci->http_status >= 100 && ci->http_status <= 599) {
            status = (int)ci->http_status;
            rs->answered = true;
            dr_log(DYNRAG_LOG_INFO, MOD, "libmicrohttpd answered a request %d itself", status);
        }
    }
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !rs->answered)
        dr_log(DYNRAG_LOG_INFO, MOD, "%s: connection ended before a response (code %d)",
               dr_endpoint_path(rs->ep), (int)toe);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && rs->answered && rs->query_id[0])
        dr_log(DYNRAG_LOG_WARN, MOD,
               "%s: the %d reply to query %s was not sent (the connection ended, code %d)",
               dr_endpoint_path(rs->ep), rs->status, rs->query_id, (int)toe);
    if (!rs->counted)
        dr_metrics_request(h->cfg.metrics, rs->ep, status, secs);
    dr_metrics_inflight(h->cfg.metrics, -1);
    dr_log(DYNRAG_LOG_DEBUG, MOD, "%s %d %.3f ms", dr_endpoint_path(rs->ep), status, secs * 1000);
    dr_buf_free(&rs->body);
    dr_free(rs);
    *con_cls = NULL;
    atomic_fetch_sub(&h->in_flight, 1);
}

/* One fewer pending connection, never below 0 (a stale count may have been
 * dropped already). */
static void pending_done(worker *w)
{
    int p = atomic_load(&w->pending);
    while (p > 0 && !atomic_compare_exchange_weak(&w->pending, &p, p - 1))
        ;
}

/* Counts the worker's open connections; a started connection claims its
 * reply handoff state from the front door (frontdoor.h), kept as MHD's
 * socket context until the connection closes. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    worker *w = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci ? dr_front_claim(w->h->front, ci->connect_fd) : NULL;
        atomic_fetch_add(&w->open, 1);
        pending_done(w);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        dr_front_conn_release(*socket_context);
        *socket_context = NULL;
        atomic_fetch_sub(&w->open, 1);
    }
}

/* A worker's connections: open plus pending (stale pending dropped). */
static int worker_load(worker *w, int64_t now)
{
    int pending = atomic_load(&w->pending);
    if (pending > 0 && now - w->last_handed_us > 1000000 &&
        atomic_compare_exchange_strong(&w->pending, &pending, 0))
        pending = 0;
    return atomic_load(&w->open) + pending;
}

/* The worker for a new connection, or -1 when all are at the limit. */
static int pick_worker(dr_httpd *h, int limit)
{
    int best = -1, best_n = 0, total = 0;
    int64_t now = dr_now_us();
    for (int k = 0; k < h->n_w; k++) {
        int i = (int)((h->next + (unsigned)k) % (unsigned)h->n_w);
        int n = worker_load(&h->w[i], now);
        total += n;
        if (best < 0 || n < best_n) {
            best = i;
            best_n = n;
        }
    }
    if (total >= limit)
        return -1;
    h->next = (unsigned)best + 1;
    return best;
}

/* Sleeps up to ms milliseconds unless a stop is signalled; true on stop. */
static bool wait_wake(dr_httpd *h, int ms)
{
    struct pollfd p = {h->wake[0], POLLIN, 0};
    return poll(&p, 1, ms) > 0;
}

#define DEFAULT_CONNECTION_LIMIT 1000
/*
 * libmicrohttpd's memory per connection, which it clears for every request
 * (a keep-alive connection's pool is reset with memset): half is its read
 * buffer (room for the largest head the front door lets through,
 * DR_FRONT_MAX_HEAD, or the bytes pipelined after it), the other half holds
 * a record per header line, query argument, cookie and trailer line (at
 * most 100 + 32 + 32 + 32, 64 bytes each), the copy of the Cookie header
 * (at most DR_FRONT_MAX_HEAD) and the reply's head. So libmicrohttpd never
 * runs out of it (which it answers with its own 431, or a dropped
 * connection); the largest heads are in test
 * server_http_front_door_hostile_heads_property.
 */
#define MHD_MEMORY_LIMIT (4 * DR_FRONT_MAX_HEAD)

/* Answers a connection past the limit with a 503 (best effort: one
 * non-blocking send, the request unread) and closes it. */
static void refuse_overloaded(dr_httpd *h, int fd)
{
    dr_metrics_request(h->cfg.metrics, DR_EP_OTHER, 503, 0);
    static const char body[] = "{\"error\":{\"message\":\"too many open connections: retry "
                               "later\",\"type\":\"server_error\",\"code\":\"overloaded\","
                               "\"param\":null}}";
    char reply[512];
    int n = snprintf(reply, sizeof(reply),
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     "Retry-After: 1\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                     sizeof(body) - 1, body);
    if (n > 0 && (size_t)n < sizeof(reply))
        (void)!send(fd, reply, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    close(fd);
}

static void *acceptor_main(void *arg)
{
    dr_httpd *h = arg;
    struct pollfd p[2] = {{h->listen_fd, POLLIN, 0}, {h->wake[0], POLLIN, 0}};
    int64_t last_warn = 0;
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            /* Never give up accepting: warn, back off, try again. */
            if (dr_now_us() - last_warn > 1000000) {
                dr_log(DYNRAG_LOG_WARN, MOD, "acceptor: poll: %s", strerror(errno));
                last_warn = dr_now_us();
            }
            if (wait_wake(h, 10))
                break;
            continue;
        }
        if (p[1].revents)
            break;
        /* An error state on the socket that accept() does not clear must
         * not turn this loop into a spin. */
        bool sock_error = (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) != 0;
        /* Everything pending, then back to poll. */
        for (;;) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            int fd = accept4(h->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                /* Out of descriptors or memory: the connection waits in the
                 * backlog; warn at most once a second and back off. */
                if (dr_now_us() - last_warn > 1000000) {
                    dr_log(DYNRAG_LOG_WARN, MOD, "accept: %s", strerror(errno));
                    last_warn = dr_now_us();
                }
                if (wait_wake(h, 10))
                    return NULL;
                break;
            }
            int i = pick_worker(h, h->cfg.max_connections);
            if (i < 0) {
                if (dr_now_us() - last_warn > 1000000) {
                    dr_log(DYNRAG_LOG_WARN, MOD,
                           "%d connections open: refusing new ones (503) until some close",
                           h->cfg.max_connections);
                    last_warn = dr_now_us();
                }
                refuse_overloaded(h, fd);
                continue;
            }
            sock_error = false;
            /* The front door owns fd from here; MHD gets its end of the
             * pump's socketpair (and closes it itself on failure). */
            int mfd = dr_front_serve(h->front, fd);
            if (mfd < 0) {
                dr_log(DYNRAG_LOG_WARN, MOD, "cannot serve a new connection: %s", strerror(errno));
                continue;
            }
            worker *w = &h->w[i];
            atomic_fetch_add(&w->pending, 1);
            w->last_handed_us = dr_now_us();
            struct sockaddr_un ua;
            memset(&ua, 0, sizeof(ua));
            ua.sun_family = AF_UNIX;
            if (MHD_add_connection(w->d, mfd, (struct sockaddr *)&ua, sizeof(ua)) != MHD_YES) {
                dr_front_unclaim(h->front, mfd);
                pending_done(w);
                dr_log(DYNRAG_LOG_WARN, MOD, "cannot serve a new connection: %s", strerror(errno));
            }
        }
        if (sock_error && wait_wake(h, 10))
            break;
    }
    return NULL;
}

/* A non-blocking listening socket bound to addr; -1 with errno on failure. */
static int listen_on(const struct sockaddr *addr, socklen_t len, bool v6)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (v6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
        bind(fd, addr, len) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Stops the acceptor (if running) and closes the listening socket. */
static void stop_accepting(dr_httpd *h)
{
    if (h->acceptor_started) {
        ssize_t wr;
        do
            wr = write(h->wake[1], "x", 1);
        while (wr < 0 && errno == EINTR);
        pthread_join(h->acceptor, NULL);
        h->acceptor_started = false;
    }
    if (h->listen_fd >= 0)
        close(h->listen_fd);
    h->listen_fd = -1;
}

static void free_httpd(dr_httpd *h)
{
    stop_accepting(h);
    for (int i = 0; i < h->n_w; i++)
        if (h->w[i].d)
            MHD_stop_daemon(h->w[i].d);
    /* The daemons closed their ends: the pumps deliver what they hold. */
    dr_front_free(h->front, h->flush_ms > 1000 ? h->flush_ms : 1000);
    for (int i = 0; i < 2; i++)
        if (h->wake[i] >= 0)
            close(h->wake[i]);
    dr_free(h->w);
    dr_free(h->api_key);
    dr_free(h->cors_origin);
    dr_free(h);
}

int dr_httpd_start(const dr_httpd_config *cfg, dr_httpd **out, dynrag_error *err)
{
    *out = NULL;
    if (cfg->handler == NULL || cfg->metrics == NULL || cfg->threads < 1 || cfg->threads > 1024 ||
        cfg->port < 0 || cfg->port > 65535 || cfg->max_body == 0 || cfg->timeout_ms < 1 ||
        cfg->max_connections < 0 || cfg->max_connections > 1000000)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "invalid server configuration");
    const char *host = cfg->host ? cfg->host : "127.0.0.1";
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof(a4));
    memset(&a6, 0, sizeof(a6));
    const struct sockaddr *addr;
    socklen_t addr_len;
    bool v6 = false;
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)cfg->port);
        addr = (const struct sockaddr *)&a4;
        addr_len = sizeof(a4);
    } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)cfg->port);
        addr = (const struct sockaddr *)&a6;
        addr_len = sizeof(a6);
        v6 = true;
    } else {
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "--host '%s': expected a numeric IPv4 or IPv6 address", host);
    }
    dr_httpd *h = dr_calloc(1, sizeof(*h));
    if (h == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    int rc_front;
    h->cfg = *cfg;
    h->cfg.host = NULL;
    h->cfg.api_key = NULL;
    h->cfg.cors_origin = NULL;
    if (h->cfg.max_connections == 0)
        h->cfg.max_connections = DEFAULT_CONNECTION_LIMIT;
    h->listen_fd = -1;
    h->wake[0] = h->wake[1] = -1;
    atomic_init(&h->in_flight, 0);
    atomic_init(&h->draining, false);
    h->w = dr_calloc((size_t)cfg->threads, sizeof(*h->w));
    if (h->w == NULL ||
        (cfg->api_key && *cfg->api_key && (h->api_key = dr_strdup(cfg->api_key)) == NULL) ||
        (cfg->cors_origin && *cfg->cors_origin &&
         (h->cors_origin = dr_strdup(cfg->cors_origin)) == NULL)) {
        free_httpd(h);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    rc_front = dr_front_create(h->cfg.max_body, cfg->timeout_ms, cfg->metrics, &h->front, err);
    if (rc_front != DYNRAG_OK) {
        free_httpd(h);
        return rc_front;
    }
    h->listen_fd = listen_on(addr, addr_len, v6);
    if (h->listen_fd < 0) {
        int e = errno;
        free_httpd(h);
        return dr_err_set(err, DYNRAG_ERR_IO, "cannot listen on %s port %d: %s%s", host, cfg->port,
                          strerror(e), e == EADDRINUSE ? " (another server?)" : "");
    }
    struct sockaddr_storage bound;
    socklen_t bl = sizeof(bound);
    if (getsockname(h->listen_fd, (struct sockaddr *)&bound, &bl) == 0)
        h->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    else
        h->port = cfg->port;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET | (v6 ? MHD_USE_IPv6 : 0);
    unsigned timeout_s = (unsigned)((cfg->timeout_ms + 999) / 1000);
    for (int i = 0; i < cfg->threads; i++) {
        h->w[i].h = h;
        atomic_init(&h->w[i].open, 0);
        atomic_init(&h->w[i].pending, 0);
        h->w[i].d = MHD_start_daemon(
            flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
            MHD_OPTION_CONNECTION_TIMEOUT, timeout_s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
            MHD_OPTION_NOTIFY_CONNECTION, on_connection, &h->w[i], MHD_OPTION_URI_LOG_CALLBACK,
            on_uri, h, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MHD_MEMORY_LIMIT,
            MHD_OPTION_CONNECTION_LIMIT,
            (unsigned)h->cfg.max_connections, MHD_OPTION_END);
        h->n_w = i + 1;
        if (h->w[i].d == NULL) {
            free_httpd(h);
            return dr_err_set(err, DYNRAG_ERR_IO, "cannot start HTTP worker %d of %d", i + 1,
                              cfg->threads);
        }
    }
    if (pipe2(h->wake, O_CLOEXEC) != 0 ||
        pthread_create(&h->acceptor, NULL, acceptor_main, h) != 0) {
        free_httpd(h);
        return dr_err_set(err, DYNRAG_ERR_IO, "cannot start the acceptor thread");
    }
    h->acceptor_started = true;
    *out = h;
    return DYNRAG_OK;
}

int dr_httpd_port(const dr_httpd *h)
{
    return h->port;
}

size_t dr_httpd_handoff_peak(const dr_httpd *h)
{
    return dr_front_handoff_peak(h->front);
}

int dr_httpd_in_flight(const dr_httpd *h)
{
    return atomic_load(&((dr_httpd *)h)->in_flight);
}

void dr_httpd_stop(dr_httpd *h, int drain_ms)
{
    if (h == NULL)
        return;
    stop_accepting(h);
    atomic_store(&h->draining, true);
    int64_t until = dr_now_us() + (int64_t)drain_ms * 1000;
    while (atomic_load(&h->in_flight) > 0 && dr_now_us() < until) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&h->in_flight) > 0)
        dr_log(DYNRAG_LOG_WARN, MOD,
               "drain timeout (%d ms): cutting %d request(s) still in flight", drain_ms,
               atomic_load(&h->in_flight));
    /* Replies already written by MHD still reach their clients (a stalled
     * client is cut at the request time limit by its pump). */
    h->flush_ms = drain_ms;
    free_httpd(h);
}
