/*
 * server/httpd.h - the HTTP layer of `dynrag serve` over libmicrohttpd
 * (internal).
 *
 * dr_httpd owns the daemon (an internal polling thread per pool thread),
 * and for every request does what does not depend on the engine: routing
 * (404, 405 + Allow), the bearer token (401), the body size limit (413),
 * body accumulation, metrics, in-flight accounting, JSON error rendering
 * and streaming (server-sent events) of a prepared body. Everything else is
 * the handler's: it receives a dr_http_exchange with the routed endpoint
 * and the whole body and fills in the response. Malformed requests never
 * reach either: the front door (frontdoor.h) answers them.
 */
#ifndef DYNRAG_SERVER_HTTPD_H
#define DYNRAG_SERVER_HTTPD_H

#include "dynrag/status.h"
#include "server/metrics.h"
#include "server/request.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dr_http_exchange {
    /* The request (owned by the httpd). */
    dr_endpoint_id ep;
    const char *method;
    const char *url; /* the request target, e.g. "/v1/models/x?y" */
    const char *body; /* NUL-terminated; "" when there was none */
    size_t body_len;
    int64_t start_us;    /* dr_now_us() when the request's headers arrived */
    int64_t deadline_us; /* start_us + the request time limit */

    /* The response, filled by the handler. */
    int status;               /* 0 = 500 */
    char *body_out;           /* malloc'ed; the httpd frees it. NULL with status >= 400
                                 means "render err" */
    size_t body_out_len;      /* strlen(body_out) when known; 0 = measure it */
    const char *content_type; /* static; NULL = application/json */
    bool stream;              /* send body_out as a chunked event stream, one
                                 "\n\n"-terminated event per chunk */
    dr_http_error err;        /* the error when body_out is NULL */
    char query_id[80];        /* the query id the reply carries ("" for none): a
                                 reply that cannot be sent is logged with it */
} dr_http_exchange;

/* Called on a pool thread once the whole body has arrived (never for
 * requests the httpd already answered). Must fill x->status and x->body_out
 * (or x->err). Must be thread-safe. */
typedef void (*dr_httpd_handler)(void *user, dr_http_exchange *x);

typedef struct dr_httpd_config {
    const char *host;    /* numeric IPv4 or IPv6 address; NULL = "127.0.0.1" */
    int port;            /* 0 = any free port */
    int threads;         /* pool size, >= 1 */
    const char *api_key; /* required bearer token on /v1/ endpoints; NULL = none */
    size_t max_body;     /* bytes; larger bodies get 413 */
    int timeout_ms;      /* per request: idle connection timeout and deadline */
    int max_connections; /* open connections; past it new ones get a 503; 0 = 1000 */
    const char *cors_origin; /* the one origin allowed cross-site (CORS); NULL = none */
    dr_httpd_handler handler;
    void *user;
    dr_metrics *metrics; /* required; not owned */
} dr_httpd_config;

typedef struct dr_httpd dr_httpd;

/* Binds and starts serving. The config's strings are copied. Fails with
 * DYNRAG_ERR_INVALID for a bad host and DYNRAG_ERR_IO when the address
 * cannot be bound. */
int dr_httpd_start(const dr_httpd_config *cfg, dr_httpd **out, dynrag_error *err);

/* The port actually bound (useful with port 0). */
int dr_httpd_port(const dr_httpd *h);

/* Requests accepted and not yet completed. */
int dr_httpd_in_flight(const dr_httpd *h);

/* The most bytes of reply bodies one connection had handed to its pump and
 * not yet sent (frontdoor.h, "Reply handoff"; for tests). */
size_t dr_httpd_handoff_peak(const dr_httpd *h);

/*
 * Graceful stop (drain): stops accepting connections; from then on every
 * response carries "Connection: close" and a new request on an open
 * keep-alive connection is refused with 503 (code "shutting_down") without
 * running it. Waits until no request is in flight or drain_ms passed, then
 * stops the daemon (closing idle connections and cutting uploads still in
 * progress) and frees h. A reply that could not be sent is logged (with
 * its query id). Accepts NULL.
 */
void dr_httpd_stop(dr_httpd *h, int drain_ms);

#endif
