/*
 * server/frontdoor.h - the server's front door (internal): every byte a
 * client sends is framed and validated here before libmicrohttpd reads it.
 *
 * libmicrohttpd 0.9.75 answers malformed requests itself, with HTML bodies
 * (some sent twice: a negative or 20-digit Content-Length) that the server
 * can neither replace nor always count. So each connection gets a pump
 * thread between the client's socket and one end of a socketpair whose
 * other end is handed to libmicrohttpd. The pump reads the client's bytes,
 * finds each request's head and body framing (Content-Length or chunked)
 * with dr_frame_next(), and forwards only whole, valid request heads and
 * their bodies, unchanged; it copies libmicrohttpd's replies back to the
 * client. The first invalid request on a connection is answered by the
 * pump itself with the documented JSON error (docs/http-api.md, "Errors"),
 * after the replies to the requests before it, with "Connection: close",
 * counted in the metrics under the endpoint its request line names (as
 * the handler routes it; "other" for an unknown path or no valid request
 * line); nothing after it is read.
 * libmicrohttpd therefore only ever parses requests it accepts.
 */
#ifndef DYNRAG_SERVER_FRONTDOOR_H
#define DYNRAG_SERVER_FRONTDOOR_H

#include "dynrag/status.h"
#include "server/metrics.h"
#include "server/request.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits of the framing (also what libmicrohttpd's buffers are sized for). */
#define DR_FRONT_MAX_HEAD 16384 /* bytes of a request head, request line included: 431 */
#define DR_FRONT_MAX_TARGET 8192 /* bytes of the request target: 414 */

/* What dr_frame_next() asks the caller to do with the first n bytes. */
typedef enum dr_frame_action {
    DR_FRAME_NEED,    /* nothing yet: wait for more bytes (n = 0) */
    DR_FRAME_FORWARD, /* the first n bytes are valid: forward them, unchanged */
    DR_FRAME_DROP,    /* the first n bytes are empty lines before a request: drop */
    DR_FRAME_ERROR    /* the request at the start is invalid: answer err, close */
} dr_frame_action;

/* A connection's framing state; zero-initialise, then set max_body. */
typedef struct dr_frame {
    size_t max_body; /* larger bodies (Content-Length or chunked): 413 */
    int state;       /* internal: at a head, inside a Content-Length body, in a chunked message */
    uint64_t body_left;
    size_t scan;       /* bytes of the pending head or chunked message already scanned */
    size_t chunk_pos;  /* chunked: where the next chunk element starts */
    int chunk_state;   /* chunked: size line, data, data CRLF, trailer */
    uint64_t chunk_left;
    uint64_t chunk_total; /* chunked: data bytes so far */
    size_t trailer_lines, trailer_bytes; /* chunked: of the trailer so far */
    bool v11;             /* the request at the start is HTTP/1.1 */
    bool starts;          /* out: the bytes just forwarded begin a request */
    bool is_head;         /* out: ... whose method is HEAD (its reply has no body) */
    int ep;               /* its dr_endpoint_id (DR_EP_OTHER until its request line
                             is known, or when the path is unknown) */
} dr_frame;

/*
 * The next step for the unforwarded bytes buf[0..len) of a connection,
 * which begin where the previous call's forwarded or dropped bytes ended.
 * A request head is forwarded once it is complete and valid (request line
 * "METHOD SP target SP HTTP/1.x", header lines "name: value", at most one
 * Content-Length of digits only, Transfer-Encoding only "chunked" and
 * never with Content-Length, at most one Host); a Content-Length body as it
 * arrives; a chunked request only whole (head, every chunk and trailer),
 * once its framing is valid. Sets *n; on DR_FRAME_ERROR fills *err (400
 * malformed_request / invalid_content_length / invalid_chunked_body, 413
 * body_too_large, 414 uri_too_long, 431 headers_too_large, 501
 * unsupported_transfer_encoding, 505 http_version_not_supported). Pure: no
 * I/O; fuzz/fuzz_http_framing.c drives it with arbitrary bytes, whole and in
 * pieces (the framing must not depend on how the bytes arrive).
 */
dr_frame_action dr_frame_next(dr_frame *f, const char *buf, size_t len, size_t *n,
                              dr_http_error *err);

/* The whole HTTP response for a front-door error: status line, JSON
 * Content-Type, Content-Length, "Connection: close" and the error JSON.
 * Caller frees; NULL when out of memory. */
char *dr_frame_error_response(const dr_http_error *err, size_t *len);

typedef struct dr_front dr_front;

/* Creates the front door. metrics is borrowed; timeout_ms bounds a stalled
 * write to a client. */
int dr_front_create(size_t max_body, int timeout_ms, dr_metrics *metrics, dr_front **out,
                    dynrag_error *err);

/*
 * Takes the client's connected socket `client` (owned from here on, also on
 * failure) and starts its pump. Returns the socket libmicrohttpd is to
 * serve (via MHD_add_connection), or -1 with errno set.
 */
int dr_front_serve(dr_front *f, int client);

/*
 * Reply handoff. A large reply body does not have to travel through the
 * socketpair (libmicrohttpd writing it, the pump reading it back): the
 * handler gives the body to the connection's pump with dr_front_handoff()
 * and has libmicrohttpd send, in its place, an empty reply with the header
 * DR_FRONT_HANDOFF_HEADER: <token>. The pump, which follows every reply on
 * the socketpair, drops that header, puts the body's length in the reply's
 * Content-Length and sends the body after the head, so the client gets
 * the same bytes as without the handoff (minus the placeholder header).
 *
 * dr_front_serve() registers each connection's handoff state under the
 * descriptor it returns; libmicrohttpd's start notification claims it
 * (dr_front_claim) and its close notification releases it.
 */
#define DR_FRONT_HANDOFF_HEADER "X-Dynrag-Handoff"
#define DR_FRONT_HANDOFF_MIN 16384 /* smaller bodies go through libmicrohttpd */
/* Bytes of bodies a connection may have handed off and not yet sent (one
 * body always): past it, bodies go through the socketpair, whose limited
 * buffer holds libmicrohttpd back (a client that pipelines requests and
 * does not read its replies cannot make the server queue more). */
#define DR_FRONT_HANDOFF_QUEUE (256u << 10)

typedef struct dr_front_conn dr_front_conn;

/* The handoff state registered for libmicrohttpd's socket mfd (the caller
 * owns the reference, released with dr_front_conn_release), or NULL. */
dr_front_conn *dr_front_claim(dr_front *f, int mfd);

/* Drops the registration of mfd (libmicrohttpd refused the connection). */
void dr_front_unclaim(dr_front *f, int mfd);

void dr_front_conn_release(dr_front_conn *c);

/*
 * Gives body[0..len) (allocated with dr_malloc) to the pump of c: returns
 * the token to send as the placeholder reply's DR_FRONT_HANDOFF_HEADER
 * value (written as 20 digits into tok, NUL-terminated), with the body
 * owned by the pump; or false (the pump no longer follows replies, or no
 * memory) with the body still the caller's.
 */
bool dr_front_handoff(dr_front_conn *c, char *body, size_t len, char tok[21]);

/* The most bytes of handed-off bodies one connection had waiting (tests). */
size_t dr_front_handoff_peak(dr_front *f);

/* Pumps still running (each ends when both of its sockets have closed). */
int dr_front_live(dr_front *f);

/*
 * Lets the pumps deliver what libmicrohttpd already wrote (call after its
 * daemons stopped) for up to flush_ms, then cuts the rest (and the
 * lingering closes after delivered replies), waits for every pump to end
 * and frees f. Accepts NULL.
 */
void dr_front_free(dr_front *f, int flush_ms);

#endif
