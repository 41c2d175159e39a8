/*
 * server/request.h - the HTTP API's routing table and request validation
 * (internal).
 *
 * Everything here is pure: no sockets, no engine. Each parser takes a
 * request body (any bytes, not necessarily NUL-terminated) and either fills
 * a request struct or fills a dr_http_error naming the offending field, e.g.
 * `"k": expected an integer from 1 to 1000`. The fuzzer
 * (fuzz/fuzz_http_request.c) drives these functions directly.
 */
#ifndef DYNRAG_SERVER_REQUEST_H
#define DYNRAG_SERVER_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

/* The API's endpoints; DR_EP_OTHER stands for any unknown path. */
typedef enum dr_endpoint_id {
    DR_EP_RETRIEVE = 0,
    DR_EP_QUERY,
    DR_EP_ROUTE,
    DR_EP_FEEDBACK,
    DR_EP_CHAT,
    DR_EP_MODELS, /* GET /v1/models */
    DR_EP_MODEL,  /* GET /v1/models/{id} */
    DR_EP_HEALTHZ,
    DR_EP_METRICS,
    DR_EP_OTHER,
    DR_EP_COUNT
} dr_endpoint_id;

/* The endpoint's path, e.g. "/v1/retrieve" ("other" for DR_EP_OTHER,
 * "/v1/models/{id}" for DR_EP_MODEL). */
const char *dr_endpoint_path(dr_endpoint_id ep);

/* The one method an endpoint accepts ("GET" or "POST"). */
const char *dr_endpoint_method(dr_endpoint_id ep);

/* True for the endpoints that take a JSON body (POST). */
bool dr_endpoint_has_body(dr_endpoint_id ep);

/* True for the endpoints behind the bearer token (/v1/...). */
bool dr_endpoint_needs_auth(dr_endpoint_id ep);

/*
 * Routes a request. Returns 200 and sets *ep when path and method match;
 * 404 when the path is unknown (*ep = DR_EP_OTHER); 405 when the path is
 * known but the method is not (*ep is the endpoint, whose
 * dr_endpoint_method() is the Allow header). HEAD is accepted for GET
 * endpoints. A query string ("?...") is ignored. "/v1/models/<id>" routes
 * to DR_EP_MODEL for any id without '/'. Never fails otherwise.
 */
int dr_http_route(const char *method, const char *path, dr_endpoint_id *ep);

/* An error response in the making: HTTP status plus the OpenAI-style error
 * object's fields. message is a fixed buffer so that parsers never
 * allocate for errors. */
/* The body of the reply sent when the server cannot allocate what a
 * request needs (503; no allocation needed to send it). */
#define DR_HTTP_NOMEM_BODY                                                                       \
    "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"code\":"           \
    "\"out_of_memory\",\"param\":null}}"

typedef struct dr_http_error {
    int status;       /* 400, 401, 404, 405, 413, 500, 502, 504 ... */
    const char *type; /* "invalid_request_error", "authentication_error", ... (static) */
    const char *code; /* "invalid_json", "invalid_field", ... (static) */
    char param[64];   /* the offending field ("" when none) */
    char message[512];
} dr_http_error;

/* Fills e and returns e->status. The param is the field name ("" for none). */
int dr_http_error_set(dr_http_error *e, int status, const char *type, const char *code,
                      const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* The error as {"error":{"message","type","code","param"}} JSON. Caller
 * frees. NULL only when out of memory. */
char *dr_http_error_json(const dr_http_error *e);

/* Limits the parsers enforce. */
#define DR_REQ_MAX_K 1000
#define DR_REQ_MAX_QUERY 65536 /* bytes */
#define DR_REQ_MAX_ID 79       /* bytes of a query id */

/* POST /v1/retrieve {query, k?, mode?}. mode is -1 when absent (route it),
 * else a dynrag_search_mode value (0 bm25, 1 dense, 2 hybrid). */
typedef struct dr_retrieve_req {
    char *query; /* owned, valid UTF-8 */
    int k;       /* 1..DR_REQ_MAX_K, default 10 */
    int mode;
} dr_retrieve_req;

/* POST /v1/query {query, id?} and POST /v1/route {query} (id ignored by
 * route). */
/* An optional per-query `budget` object {usd?, latency_ms?, energy_wh?}:
 * each field a number >= 0; a field that is absent is NAN. */
typedef struct dr_budget_req {
    bool set; /* the body had a budget object */
    double usd, latency_ms, energy_wh;
} dr_budget_req;

typedef struct dr_query_req {
    char *query; /* owned */
    char *id;    /* owned, NULL when absent */
    dr_budget_req budget; /* /v1/query only */
} dr_query_req;

/* POST /v1/feedback {query_id, reward}. */
typedef struct dr_feedback_req {
    char *query_id; /* owned */
    double reward;  /* finite, in [-1e6, 1e6] */
} dr_feedback_req;

/* POST /v1/chat/completions: the fields the server uses. */
typedef struct dr_chat_req {
    char *query; /* owned: the text of the last user message */
    char *model; /* owned, NULL when absent */
    bool stream;
    bool include_usage; /* stream_options.include_usage */
    dr_budget_req budget;
} dr_chat_req;

/* The parsers: return 0 and fill *out (release with the matching _free),
 * or return the HTTP status of the error (400; 500 when out of memory) with
 * *e filled and *out left empty. body need not be NUL-terminated. */
int dr_parse_retrieve(const char *body, size_t len, dr_retrieve_req *out, dr_http_error *e);
int dr_parse_query(const char *body, size_t len, dr_query_req *out, dr_http_error *e);
int dr_parse_route(const char *body, size_t len, dr_query_req *out, dr_http_error *e);
int dr_parse_feedback(const char *body, size_t len, dr_feedback_req *out, dr_http_error *e);
int dr_parse_chat(const char *body, size_t len, dr_chat_req *out, dr_http_error *e);

void dr_retrieve_req_free(dr_retrieve_req *r);
void dr_query_req_free(dr_query_req *r);
void dr_feedback_req_free(dr_feedback_req *r);
void dr_chat_req_free(dr_chat_req *r);

/*
 * Checks a Content-Type header for a JSON body: true for
 * "application/json" (case-insensitive) with or without parameters such as
 * "; charset=utf-8". NULL gives false.
 */
bool dr_http_content_type_json(const char *header);

/*
 * Checks an Authorization header against the expected key: true when the
 * header is "Bearer <key>" (scheme case-insensitive, one or more spaces).
 * The key comparison takes time independent of where the strings differ
 * (it depends only on the lengths). header may be NULL (false).
 */
bool dr_http_bearer_ok(const char *header, const char *key);

#endif
