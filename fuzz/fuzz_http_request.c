/*
 * fuzz_http_request.c - libFuzzer target for the HTTP API's request
 * handling that runs before the engine: routing, every body validator and
 * the bearer-token check (src/server/request.c).
 *
 * Input layout: byte 0 picks the parser, the rest is the body. Every parse
 * must either succeed with valid UTF-8 fields within their limits, or fail
 * with a 4xx/5xx status and an error that renders as JSON; no body with an
 * escaped NUL (\u0000) in a string is ever accepted (an independent scan
 * decides which bodies have one). The routing case also checks the
 * Content-Type test. A first byte of
 * 0xF0 or more instead checks the reply writer (src/server/jsonw.c): the
 * body as a string and its bytes as doubles must come out exactly as cJSON
 * prints them.
 *
 *   cmake -S . -B build-fuzz -DDYNRAG_FUZZ=ON -DCMAKE_C_COMPILER=clang ...
 *   cmake --build build-fuzz --target fuzz_http_request
 *   ./build-fuzz/fuzz_http_request -max_total_time=60 fuzz/corpus/http
 */
#include "core/util.h"
#include "server/jsonw.h"
#include "server/request.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(int st, const dr_http_error *e)
{
    if (st < 400 || st > 599 || e->message[0] == '\0')
        abort();
    char *j = dr_http_error_json(e);
    cJSON *o = j ? cJSON_Parse(j) : NULL;
    if (j && o == NULL)
        abort(); /* the error must be valid JSON */
    cJSON_Delete(o);
    free(j);
}

/* dr_jsonw_* against cJSON_PrintUnformatted() for the same value. */
static void check_writer(const uint8_t *data, size_t size)
{
    char *s = dr_strndup((const char *)data, size); /* cJSON stops at a NUL */
    if (s == NULL)
        return;
    dr_buf b = {0};
    cJSON *v = cJSON_CreateString(s);
    char *want = v ? cJSON_PrintUnformatted(v) : NULL;
    if (want && (dr_jsonw_strn(&b, s, strlen(s)) != 0 || strcmp(b.data, want) != 0))
        abort();
    cJSON_Delete(v);
    free(want);
    free(s);
    for (size_t i = 0; i + 8 <= size; i += 8) {
        double d;
        memcpy(&d, data + i, sizeof(d));
        dr_buf_reset(&b);
        v = cJSON_CreateNumber(d);
        want = v ? cJSON_PrintUnformatted(v) : NULL;
        if (want && (dr_jsonw_num(&b, d) != 0 || strcmp(b.data, want) != 0))
            abort();
        cJSON_Delete(v);
        free(want);
    }
    dr_buf_free(&b);
}

/* True when a string of the body holds the escape \u0000 (a lexer of its
 * own: quotes open and close strings, a backslash takes the next byte). */
static bool has_escaped_nul(const char *b, size_t n)
{
    bool in = false;
    for (size_t i = 0; i < n; i++) {
        if (!in) {
            in = b[i] == '"';
        } else if (b[i] == '"') {
            in = false;
        } else if (b[i] == '\\' && i + 1 < n) {
            if (b[i + 1] == 'u' && i + 5 < n && memcmp(b + i + 2, "0000", 4) == 0)
                return true;
            i++;
        }
    }
    return false;
}

static void check_accepted(const char *body, size_t len)
{
    if (has_escaped_nul(body, len))
        abort();
}

static void check_text(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max || !dr_utf8_valid(s, n, NULL))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] >= 0xF0) {
        check_writer(data + 1, size - 1);
        return 0;
    }
    dr_http_error e;
    memset(&e, 0, sizeof(e));
    int st;
    switch (data[0] % 7) {
    case 0: {
        dr_retrieve_req r;
        st = dr_parse_retrieve(body, len, &r, &e);
        if (st == 0) {
            check_accepted(body, len);
            check_text(r.query, DR_REQ_MAX_QUERY);
            if (r.k < 1 || r.k > DR_REQ_MAX_K || r.mode < -1 || r.mode > 2)
                abort();
        } else {
            check_error(st, &e);
        }
        dr_retrieve_req_free(&r);
        break;
    }
    case 1:
    case 2: {
        dr_query_req q;
        st = data[0] % 7 == 1 ? dr_parse_query(body, len, &q, &e)
                              : dr_parse_route(body, len, &q, &e);
        if (st == 0) {
            check_accepted(body, len);
            check_text(q.query, DR_REQ_MAX_QUERY);
            if (q.id)
                check_text(q.id, DR_REQ_MAX_ID);
        } else {
            check_error(st, &e);
        }
        dr_query_req_free(&q);
        break;
    }
    case 3: {
        dr_feedback_req f;
        st = dr_parse_feedback(body, len, &f, &e);
        if (st == 0) {
            check_accepted(body, len);
            check_text(f.query_id, DR_REQ_MAX_ID);
            if (!(f.reward >= -1e6 && f.reward <= 1e6))
                abort();
        } else {
            check_error(st, &e);
        }
        dr_feedback_req_free(&f);
        break;
    }
    case 4: {
        dr_chat_req c;
        st = dr_parse_chat(body, len, &c, &e);
        if (st == 0) {
            check_accepted(body, len);
            check_text(c.query, DR_REQ_MAX_QUERY);
        } else {
            check_error(st, &e);
        }
        dr_chat_req_free(&c);
        break;
    }
    case 5: {
        /* Routing: "METHOD PATH" split at the first space. */
        char *s = dr_strndup(body, len);
        if (s == NULL)
            return 0;
        /* The whole text as a Content-Type value: JSON only when it is
         * "application/json" after blanks, then nothing or parameters. */
        if (dr_http_content_type_json(s)) {
            const char *v = s + strspn(s, " \t");
            const char *rest = v + 16;
            rest += strspn(rest, " \t");
            if (strncasecmp(v, "application/json", 16) != 0 || (*rest != '\0' && *rest != ';'))
                abort();
        }
        char *sp = strchr(s, ' ');
        dr_endpoint_id ep;
        int r = sp ? (*sp = '\0', dr_http_route(s, sp + 1, &ep)) : dr_http_route(s, "", &ep);
        if (r != 200 && r != 404 && r != 405)
            abort();
        if ((unsigned)ep >= DR_EP_COUNT)
            abort();
        free(s);
        break;
    }
    default: {
        /* Bearer check: "header\nkey". */
        char *s = dr_strndup(body, len);
        if (s == NULL)
            return 0;
        char *nl = strchr(s, '\n');
        const char *key = "k";
        if (nl) {
            *nl = '\0';
            key = nl + 1;
        }
        bool ok = dr_http_bearer_ok(s, key);
        if (ok && (strstr(s, key) == NULL || *key == '\0'))
            abort();
        free(s);
        break;
    }
    }
    return 0;
}
