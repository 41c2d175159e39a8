/*
 * fuzz_http_framing.c - libFuzzer harness for the server's front door
 * framing (dr_frame_next, src/server/frontdoor.c): the hand-written HTTP/1.1
 * request framer every byte from the network goes through before
 * libmicrohttpd sees it.
 *
 * Input: byte 0 sets the piece size the bytes arrive in (1 + byte % 64, or
 * everything at once for 0xFF) and byte 1 the body limit; the rest is the
 * byte stream of one connection. The framer runs over it as the pump does,
 * once with every byte available and once with the bytes arriving in
 * pieces. Findings (abort) besides crashes and sanitizer reports:
 *   - a step that claims more bytes than it was given, or none for FORWARD
 *     or DROP (no progress: the pump would spin);
 *   - dropped bytes that are not empty-line bytes (CR/LF);
 *   - the two runs disagreeing: other bytes forwarded, another number of
 *     request starts, a different error status or code, or stopping at a
 *     different offset (framing must not depend on how bytes arrive);
 *   - an error that is not 4xx/5xx with a code and a message, or whose
 *     response (dr_frame_error_response) is not an HTTP response carrying
 *     the error JSON.
 * Build and run with scripts/fuzz.sh (`scripts/fuzz.sh 300 http_framing`);
 * seeds: fuzz/corpus/http_framing/.
 */
#include "core/util.h"
#include "server/frontdoor.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct run {
    dr_buf fwd;        /* every forwarded byte, in order */
    int starts;        /* requests begun */
    int status;        /* error status, 0 for none */
    char code[64];     /* error code */
    size_t used;       /* bytes forwarded or dropped */
} run;

static void check_error(const dr_http_error *e)
{
    if (e->status < 400 || e->status > 599 || e->code == NULL || e->code[0] == '\0' ||
        e->message[0] == '\0')
        abort();
    size_t len = 0;
    char *r = dr_frame_error_response(e, &len);
    if (r == NULL)
        return; /* out of memory */
    char want[16];
    snprintf(want, sizeof(want), "HTTP/1.1 %d ", e->status);
    const char *body = strstr(r, "\r\n\r\n");
    if (strncmp(r, want, strlen(want)) != 0 || body == NULL || strlen(r) != len)
        abort();
    cJSON *j = cJSON_Parse(body + 4);
    if (j == NULL || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "error")))
        abort();
    cJSON_Delete(j);
    dr_free(r);
}

/* Frames in[0..len) arriving in pieces of `piece` bytes (0: all at once). */
static void frame(const char *in, size_t len, size_t piece, size_t max_body, run *r)
{
    dr_frame f;
    memset(&f, 0, sizeof(f));
    f.max_body = max_body;
    memset(r, 0, sizeof(*r));
    size_t have = 0, off = 0;
    for (;;) {
        have += piece && len - have > piece ? piece : len - have;
        for (;;) {
            size_t n = 0;
            dr_http_error e;
            memset(&e, 0, sizeof(e));
            dr_frame_action a = dr_frame_next(&f, in + off, have - off, &n, &e);
            if (a == DR_FRAME_ERROR) {
                check_error(&e);
                r->status = e.status;
                snprintf(r->code, sizeof(r->code), "%s", e.code);
                r->used = off;
                return;
            }
            if (a == DR_FRAME_NEED) {
                if (n != 0)
                    abort();
                break;
            }
            if (n == 0 || n > have - off)
                abort(); /* progress and bounds */
            if (a == DR_FRAME_FORWARD) {
                if (dr_buf_append(&r->fwd, in + off, n) != 0)
                    abort();
                r->starts += f.starts;
            } else {
                for (size_t i = 0; i < n; i++)
                    if (in[off + i] != '\r' && in[off + i] != '\n')
                        abort(); /* only empty lines are dropped */
            }
            off += n;
        }
        if (have == len)
            break;
    }
    r->used = off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t piece = data[0] == 0xFF ? 0 : 1 + data[0] % 64;
    static const size_t limits[] = {0, 1, 16, 4096, 1 << 20};
    size_t max_body = limits[data[1] % 5];
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    run whole, parts;
    frame(in, len, 0, max_body, &whole);
    frame(in, len, piece, max_body, &parts);
    if (whole.status != parts.status || strcmp(whole.code, parts.code) != 0 ||
        whole.starts != parts.starts || whole.used != parts.used || whole.fwd.len != parts.fwd.len ||
        (whole.fwd.len && memcmp(whole.fwd.data, parts.fwd.data, whole.fwd.len) != 0))
        abort();
    dr_buf_free(&whole.fwd);
    dr_buf_free(&parts.fwd);
    return 0;
}
