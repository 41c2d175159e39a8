/*
 * dynrag/server.h - the retrieval microservice (`dynrag serve`).
 *
 * A server binds a loaded pipeline's engine to an HTTP API (JSON in and
 * out; docs/http-api.md): /v1/retrieve, /v1/query, /v1/route,
 * /v1/feedback, an OpenAI-compatible /v1/chat/completions (streaming
 * included) and /v1/models, /healthz and Prometheus /metrics. Requests run on a pool of
 * threads sharing one engine.
 *
 * Life cycle: dynrag_server_open() (opens the engine) ->
 * dynrag_server_start() (binds and serves) -> dynrag_server_wait() (until
 * dynrag_server_request_stop(), e.g. from a signal) -> dynrag_server_close()
 * (stops accepting, lets in-flight requests finish, saves router state and
 * flushes the route log).
 */
#ifndef DYNRAG_SERVER_H
#define DYNRAG_SERVER_H

#include "dynrag/common.h"
#include "dynrag/pipeline.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dynrag_server dynrag_server;

/* Options of dynrag_server_open(). Call dynrag_server_options_init()
 * first, then set what differs: every field is taken literally, and a value
 * out of range fails with DYNRAG_ERR_INVALID naming the field. */
typedef struct dynrag_server_options {
    const char *host;      /* numeric address to bind (default "127.0.0.1"; NULL or "" is
                              an error) */
    int port;              /* 0 to 65535; 0 (default) = any free port (dynrag_server_port) */
    int threads;           /* worker threads, 1 to 1024 (default 4) */
    const char *api_key;   /* bearer token required on /v1/...; NULL (default) or "" = none */
    size_t max_body;       /* request body limit in bytes, >= 1 (default 1 MiB) */
    int timeout_ms;        /* per-request time limit, >= 1 (default 30000) */
    int max_connections;   /* open connections before new ones get 503, >= 1 (default 1000) */
    const char *index_dir; /* overrides the pipeline's `index:`; NULL (default) = the pipeline's */
    const char *log_path;  /* route log; overrides the pipeline's `log:`; NULL (default) */
    bool no_log;           /* write no route log (default false) */
    int drain_timeout_ms;  /* stop: longest wait for in-flight requests, >= 0 (default 10000;
                              0: cut them at once) */
    const char *cors_origin; /* the one origin allowed cross-site (CORS); NULL (default) = none */
} dynrag_server_options;

/* Sets every field of o to its default (above). */
DYNRAG_API void dynrag_server_options_init(dynrag_server_options *o);

/* Creates a server for a pipeline (which must outlive it) and its engine.
 * opt may be NULL (the defaults of dynrag_server_options_init). Nothing is
 * bound yet. Fails with a message naming the stage, file or option. */
DYNRAG_API int dynrag_server_open(const dynrag_pipeline *p, const dynrag_server_options *opt,
                                    dynrag_server **out, dynrag_error *err);

/* Binds the address and starts the worker threads. DYNRAG_ERR_IO when the
 * address cannot be bound; DYNRAG_ERR_STATE when already started. */
DYNRAG_API int dynrag_server_start(dynrag_server *s, dynrag_error *err);

/* The bound port (after start), e.g. the one picked for port 0. */
DYNRAG_API int dynrag_server_port(const dynrag_server *s);

/* Blocks until dynrag_server_request_stop() is called. */
DYNRAG_API void dynrag_server_wait(dynrag_server *s);

/* Asks the server to stop: wakes dynrag_server_wait(). Async-signal-safe
 * (it writes one byte to a pipe). */
DYNRAG_API void dynrag_server_request_stop(dynrag_server *s);

/* Installs SIGTERM and SIGINT handlers that call
 * dynrag_server_request_stop(s) (one server per process), and ignores
 * SIGPIPE. */
DYNRAG_API int dynrag_server_stop_on_signals(dynrag_server *s, dynrag_error *err);

/* Graceful stop (drain): stops accepting; every response from then on
 * carries "Connection: close" and new requests on open keep-alive
 * connections get 503 without running; waits for in-flight requests (up to
 * the drain timeout, then cuts what is left, logging every reply that was
 * not sent with its query id), then saves router state (bandits) and
 * flushes the route log. Idempotent; the server cannot be restarted. */
DYNRAG_API int dynrag_server_stop(dynrag_server *s, dynrag_error *err);

/* Stops (if needed) and frees the server and its engine. Accepts NULL. */
DYNRAG_API void dynrag_server_close(dynrag_server *s);

#ifdef __cplusplus
}
#endif
#endif
