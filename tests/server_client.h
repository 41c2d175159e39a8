/*
 * tests/server_client.h - a small libcurl client for the server tests.
 */
#ifndef DYNRAG_TESTS_SERVER_CLIENT_H
#define DYNRAG_TESTS_SERVER_CLIENT_H

#include <stddef.h>

typedef struct http_reply {
    long status; /* 0 when the request failed at the transport level */
    char *body;  /* malloc'ed, NUL-terminated ("" when empty) */
    size_t body_len;
    char *headers; /* all response header lines, malloc'ed */
    int chunks;    /* write callbacks seen (streamed bodies give several) */
} http_reply;

/*
 * Sends one request to http://127.0.0.1:port<path>. body may be NULL (no
 * body). extra_headers is a NULL-terminated list of "Name: value" lines
 * (may be NULL). chunked sends the body with Transfer-Encoding: chunked.
 * Returns 0 on transport success (see r->status), -1 otherwise.
 */
int http_request(int port, const char *method, const char *path, const char *const *extra_headers,
                 const char *body, size_t body_len, int chunked, http_reply *r);

/* POST a JSON body with Content-Type: application/json, optional bearer key. */
int http_post_json(int port, const char *path, const char *json, const char *api_key,
                   http_reply *r);
int http_get(int port, const char *path, http_reply *r);

void http_reply_free(http_reply *r);

/* A plain TCP connection to host (numeric IPv4 or IPv6) : port, or -1;
 * raw_connect() is raw_connect_to("127.0.0.1", port). */
int raw_connect_to(const char *host, int port);
int raw_connect(int port);

/* Reads from fd until the peer closes it or size-1 bytes arrived, and
 * NUL-terminates. */
void raw_read_all(int fd, char *buf, size_t size);

/* The value of header `name` (case-insensitive) in r->headers copied into
 * buf, or NULL. */
const char *http_header(const http_reply *r, const char *name, char *buf, size_t size);

#endif
