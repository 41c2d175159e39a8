/*
 * net/http.h - the one HTTP client of DynamicRAG (internal; libcurl).
 *
 * Every component that talks to an endpoint (the chat client in
 * generate/llm.c, the embeddings client in embed/openai.c) posts JSON through
 * dr_http_post_json(). The retry policy lives here, in one place:
 *
 *   - retried: HTTP 408, 429 and 5xx; timeouts; connection failures
 *     (refused, reset, nothing received, body cut short);
 *   - not retried: every other status (4xx is the caller's fault, 3xx is a
 *     redirect, which is never followed), a response larger than the cap
 *     (DYNRAG_ERR_LIMIT), a malformed URL;
 *   - wait before retry k (k = 1, 2, ...): the server's Retry-After (delta
 *     seconds or an HTTP date) when present, capped at retry_after_cap_s;
 *     otherwise "full jitter" exponential backoff, a uniform random delay in
 *     [0, min(backoff_max_s, backoff_base_s * 2^(k-1))).
 *
 * Thread safety: curl_global_init() runs once (pthread_once); each call uses
 * its own easy handle, so any number of threads may post at once. Signals
 * are never used (CURLOPT_NOSIGNAL). Only http:// and https:// URLs are
 * accepted, and redirects are not followed (a 3xx fails and names the
 * Location it pointed to).
 */
#ifndef DYNRAG_NET_HTTP_H
#define DYNRAG_NET_HTTP_H

#include "dynrag/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define DR_HTTP_DEFAULT_TIMEOUT_S 60.0
#define DR_HTTP_DEFAULT_CONNECT_TIMEOUT_S 10.0
#define DR_HTTP_DEFAULT_MAX_RESPONSE ((size_t)32 << 20) /* 32 MiB */
#define DR_HTTP_DEFAULT_RETRY_AFTER_CAP_S 30.0
#define DR_HTTP_DEFAULT_BACKOFF_BASE_S 0.25
#define DR_HTTP_DEFAULT_BACKOFF_MAX_S 8.0
#define DR_HTTP_MAX_RETRIES 20

/* One POST. Zero-initialise and fill in; every 0 field means its default. */
typedef struct dr_http_request {
    const char *url;        /* http:// or https:// (required) */
    const char *body;       /* request body (JSON), required */
    size_t body_len;        /* 0 = strlen(body) */
    const char *api_key;    /* sent as "Authorization: Bearer <key>"; NULL or "" = none */
    const char *const *headers; /* extra "Name: value" lines, may be NULL */
    size_t n_headers;
    double timeout_s;         /* whole attempt, connect included (0 = 60) */
    double connect_timeout_s; /* connect phase (0 = min(10, timeout_s)) */
    int max_retries;          /* retries after the first attempt (0 = none; max 20) */
    size_t max_response;      /* response body cap in bytes (0 = 32 MiB) */
    double retry_after_cap_s; /* longest Retry-After honoured (0 = 30) */
    double backoff_base_s;    /* (0 = 0.25) */
    double backoff_max_s;     /* (0 = 8) */
    uint64_t seed;            /* jitter PRNG seed (0 = from the clock) */
    const char *log_module;   /* module name for dr_log() retry warnings (NULL = "http") */
    int64_t deadline_us;      /* absolute deadline on the dr_now_us() clock (0 = none): each
                                 attempt's timeout is cut to it, no attempt or retry wait
                                 starts past it (DYNRAG_ERR_TIMEOUT) */
} dr_http_request;

/*
 * Sets the deadline (absolute, dr_now_us() clock; 0 = none) that every
 * dr_http_post_json() call of the calling thread honours when its request
 * sets no deadline_us of its own, and returns the previous one. The engine
 * sets it around index searches, so that a remote embedder's calls (which
 * go through shared, thread-safe embedders) end by the query's deadline.
 */
int64_t dr_http_thread_deadline(int64_t deadline_us);

/* What came back. Filled in by dr_http_post_json() on success and, as far as
 * it got, on failure; release with dr_http_response_free(). */
typedef struct dr_http_response {
    long status;        /* HTTP status of the last attempt; 0 if none was received */
    char *body;         /* NUL-terminated body of the last attempt (owned), may be NULL */
    size_t body_len;
    int attempts;       /* requests sent, retries included */
    double elapsed_ms;  /* wall time of the whole call, waits included */
} dr_http_response;

/*
 * POSTs req->body to req->url with "Content-Type: application/json",
 * retrying as described at the top of this file. Returns DYNRAG_OK when the
 * last attempt got a 2xx status. Otherwise fails with
 *   DYNRAG_ERR_HTTP     non-2xx status (message: URL, status, attempts and
 *                       the server's error message), or a connection failure;
 *   DYNRAG_ERR_TIMEOUT  the last attempt timed out;
 *   DYNRAG_ERR_LIMIT    the response passed max_response bytes;
 *   DYNRAG_ERR_INVALID  bad request fields or URL;
 *   DYNRAG_ERR_NOMEM.
 * The error message always names the URL. *resp is reset first; its body
 * (the last attempt's, possibly partial) is kept on failure too, and the
 * caller frees it with dr_http_response_free(). Each retry is logged at WARN
 * level. The API key never appears in messages or logs.
 */
int dr_http_post_json(const dr_http_request *req, dr_http_response *resp, dynrag_error *err);

/* Frees the body and zeroes *resp; accepts NULL. */
void dr_http_response_free(dr_http_response *resp);

/*
 * Extracts a server's error message from a response body into buf (always
 * NUL-terminated): {"error":{"message":...}} (OpenAI, vLLM), {"error":"..."}
 * (Ollama, llama.cpp), {"detail":...} or {"message":...}; otherwise the
 * body's first bytes with control characters replaced. Returns buf.
 */
const char *dr_http_error_message(const char *body, size_t len, char *buf, size_t size);

/* Parses a Retry-After header value: delta seconds ("120") or an HTTP date
 * ("Wed, 21 Oct 2015 07:28:00 GMT") relative to `now`. Returns the delay in
 * seconds (>= 0; a past date gives 0) or -1 when the value is neither. */
double dr_http_parse_retry_after(const char *value, time_t now);

/* The full-jitter backoff delay before retry `retry` (1-based), given a
 * uniform random number u in [0, 1): u * min(max_s, base_s * 2^(retry-1)). */
double dr_http_backoff_delay(int retry, double base_s, double max_s, double u);

/* Joins a base URL and a path with exactly one '/' between them ("a/" +
 * "/b" = "a/b"). Returns a string the caller frees, NULL on allocation
 * failure. */
char *dr_http_join_url(const char *base, const char *path);

/*
 * Test hook: replaces the function that waits between retries (NULL
 * restores nanosleep). Process-wide; set it only while no request is in
 * flight. Used by tests to record the delays they would wait.
 */
typedef void (*dr_http_sleep_fn)(void *user, double seconds);
void dr_http_set_sleep_fn(dr_http_sleep_fn fn, void *user);

#endif
