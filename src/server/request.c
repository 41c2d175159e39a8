/*
 * request.c - routing table, error objects, request body validation and
 * bearer-token checks for the HTTP API (see docs/http-api.md).
 */
#include "server/request.h"

#include "core/util.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- routing ------------------------------------------------------------ */

static const struct {
    const char *path;
    const char *method;
    bool auth;
} endpoints[DR_EP_COUNT] = {
    [DR_EP_RETRIEVE] = {"/v1/retrieve", "POST", true},
    [DR_EP_QUERY] = {"/v1/query", "POST", true},
    [DR_EP_ROUTE] = {"/v1/route", "POST", true},
    [DR_EP_FEEDBACK] = {"/v1/feedback", "POST", true},
    [DR_EP_CHAT] = {"/v1/chat/completions", "POST", true},
    [DR_EP_MODELS] = {"/v1/models", "GET", true},
    [DR_EP_MODEL] = {"/v1/models/{id}", "GET", true},
    [DR_EP_HEALTHZ] = {"/healthz", "GET", false},
    [DR_EP_METRICS] = {"/metrics", "GET", false},
    [DR_EP_OTHER] = {"other", "GET", false},
};

const char *dr_endpoint_path(dr_endpoint_id ep)
{
    return (unsigned)ep < DR_EP_COUNT ? endpoints[ep].path : "other";
}

const char *dr_endpoint_method(dr_endpoint_id ep)
{
    return (unsigned)ep < DR_EP_COUNT ? endpoints[ep].method : "GET";
}

bool dr_endpoint_has_body(dr_endpoint_id ep)
{
    return strcmp(dr_endpoint_method(ep), "POST") == 0;
}

bool dr_endpoint_needs_auth(dr_endpoint_id ep)
{
    return (unsigned)ep < DR_EP_COUNT && endpoints[ep].auth;
}

int dr_http_route(const char *method, const char *path, dr_endpoint_id *ep)
{
    *ep = DR_EP_OTHER;
    if (method == NULL || path == NULL)
        return 404;
    size_t plen = strcspn(path, "?");
    static const char model_prefix[] = "/v1/models/";
    size_t mlen = sizeof(model_prefix) - 1;
    bool model = plen > mlen && memcmp(path, model_prefix, mlen) == 0 &&
                 memchr(path + mlen, '/', plen - mlen) == NULL;
    for (int i = 0; i < DR_EP_OTHER; i++) {
        const char *p = endpoints[i].path;
        if (i == DR_EP_MODEL ? !model : strlen(p) != plen || memcmp(p, path, plen) != 0)
            continue;
        *ep = (dr_endpoint_id)i;
        if (strcmp(method, endpoints[i].method) == 0)
            return 200;
        if (strcmp(method, "HEAD") == 0 && strcmp(endpoints[i].method, "GET") == 0)
            return 200;
        return 405;
    }
    return 404;
}

/* ---- errors ------------------------------------------------------------- */

int dr_http_error_set(dr_http_error *e, int status, const char *type, const char *code,
                      const char *param, const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    e->code = code;
    dr_strlcpy(e->param, param ? param : "", sizeof(e->param));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return status;
}

char *dr_http_error_json(const dr_http_error *e)
{
    dr_buf b = {0};
    int rc = dr_buf_puts(&b, "{\"error\":{\"message\":");
    if (rc == DYNRAG_OK)
        rc = dr_buf_json_str(&b, e->message);
    if (rc == DYNRAG_OK)
        rc = dr_buf_puts(&b, ",\"type\":");
    if (rc == DYNRAG_OK)
        rc = dr_buf_json_str(&b, e->type ? e->type : "server_error");
    if (rc == DYNRAG_OK)
        rc = dr_buf_puts(&b, ",\"code\":");
    if (rc == DYNRAG_OK)
        rc = dr_buf_json_str(&b, e->code ? e->code : "internal_error");
    if (rc == DYNRAG_OK)
        rc = dr_buf_puts(&b, ",\"param\":");
    if (rc == DYNRAG_OK)
        rc = e->param[0] ? dr_buf_json_str(&b, e->param) : dr_buf_puts(&b, "null");
    if (rc == DYNRAG_OK)
        rc = dr_buf_puts(&b, "}}");
    if (rc != DYNRAG_OK) {
        dr_buf_free(&b);
        return NULL;
    }
    return dr_buf_take(&b);
}

/* ---- shared validation helpers ------------------------------------------ */

static int bad_field(dr_http_error *e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A 400 naming the field: `"field": <message>`. */
static int bad_field(dr_http_error *e, const char *field, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return dr_http_error_set(e, 400, "invalid_request_error", "invalid_field", field, "\"%s\": %s",
                             field, msg);
}

static int no_memory(dr_http_error *e)
{
    return dr_http_error_set(e, 500, "server_error", "internal_error", NULL, "out of memory");
}

/*
 * What cJSON's tree cannot tell, read from the body's text (after cJSON
 * accepted it) in step with the tree: an escaped NUL (\u0000), which cJSON
 * decodes into a NUL that silently cuts its string, is rejected naming the
 * field ("messages[1].content"); a number written with a fraction or an
 * exponent (5.0, 1e2) gets JSON_NOT_INT in its node's type, so that
 * int_field() refuses it (cJSON's type tests mask the bit out).
 */
#define JSON_NOT_INT (1 << 12)

typedef struct jscan {
    const char *p, *end;
    char path[128];
    size_t plen;
    dr_http_error *e;
} jscan;

static void js_ws(jscan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* Appends ".key" / "key" / "[i]" to the path (truncated when long); returns
 * the old length to restore. */
static size_t js_push(jscan *s, const char *key, size_t key_len, int index)
{
    size_t old = s->plen;
    size_t room = sizeof(s->path) - s->plen;
    int n = key ? snprintf(s->path + s->plen, room, "%s%.*s", s->plen ? "." : "",
                           (int)DR_MIN(key_len, 60), key)
                : snprintf(s->path + s->plen, room, "[%d]", index);
    if (n > 0)
        s->plen = DR_MIN(s->plen + (size_t)n, sizeof(s->path) - 1);
    return old;
}

static void js_pop(jscan *s, size_t old)
{
    s->plen = old;
    s->path[old] = '\0';
}

/* Skips a string at s->p; -1 when malformed, 1 when it holds \u0000, else
 * 0. *raw and *raw_len give its text between the quotes. */
static int js_string(jscan *s, const char **raw, size_t *raw_len)
{
    if (s->p >= s->end || *s->p != '"')
        return -1;
    const char *start = ++s->p;
    bool nul = false;
    while (s->p < s->end && *s->p != '"') {
        if (*s->p == '\\') {
            if (s->end - s->p >= 6 && s->p[1] == 'u' && memcmp(s->p + 2, "0000", 4) == 0)
                nul = true;
            s->p++;
        }
        s->p++;
    }
    if (s->p >= s->end)
        return -1;
    *raw = start;
    *raw_len = (size_t)(s->p - start);
    s->p++;
    return nul ? 1 : 0;
}

/* Scans one value whose node is v. Returns 0 (also when the text does not
 * follow the tree: cJSON's verdict stands), or 400 with s->e filled. */
static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first key (in sorted order) that object o holds twice, "" when none,
 * NULL when out of memory. (cJSON keeps every member; lookups would use the
 * first silently.) */
static const char *dup_key(const cJSON *o)
{
    size_t n = 0;
    for (const cJSON *c = o->child; c; c = c->next)
        n++;
    if (n < 2)
        return "";
    const char **k = dr_malloc(n * sizeof(*k));
    if (k == NULL)
        return NULL;
    n = 0;
    for (const cJSON *c = o->child; c; c = c->next)
        k[n++] = c->string ? c->string : "";
    qsort(k, n, sizeof(*k), cmp_key);
    const char *d = "";
    for (size_t i = 1; i < n && d[0] == '\0'; i++)
        if (strcmp(k[i - 1], k[i]) == 0)
            d = k[i];
    dr_free(k);
    return d;
}

static int js_value(jscan *s, cJSON *v, int depth)
{
    js_ws(s);
    if (v == NULL || s->p >= s->end || depth > 1000)
        return 0;
    const char *raw;
    size_t raw_len;
    if (*s->p == '"') {
        int r = js_string(s, &raw, &raw_len);
        if (r == 1)
            return bad_field(s->e, s->plen ? s->path : "(body)",
                             "contains an escaped NUL character (\\u0000), which is not allowed");
        return 0;
    }
    if (*s->p == '{' || *s->p == '[') {
        bool obj = *s->p == '{';
        char close = obj ? '}' : ']';
        if (obj) {
            const char *d = dup_key(v);
            if (d == NULL)
                return dr_http_error_set(s->e, 500, "server_error", "internal_error", NULL,
                                         "out of memory");
            if (d[0] != '\0')
                return dr_http_error_set(s->e, 400, "invalid_request_error", "invalid_json",
                                         NULL, "the request body gives the key \"%.64s\" twice in %s",
                                         d, s->plen ? s->path : "the top-level object");
        }
        s->p++;
        cJSON *child = v->child;
        for (int i = 0; child; i++, child = child->next) {
            js_ws(s);
            if (s->p < s->end && *s->p == close)
                return 0;
            size_t old;
            if (obj) {
                int r = js_string(s, &raw, &raw_len);
                if (r < 0)
                    return 0;
                old = js_push(s, raw, raw_len, 0);
                if (r == 1)
                    return bad_field(s->e, s->path,
                                     "the name contains an escaped NUL character (\\u0000)");
                js_ws(s);
                if (s->p >= s->end || *s->p != ':')
                    return 0;
                s->p++;
            } else {
                old = js_push(s, NULL, 0, i);
            }
            int rc = js_value(s, child, depth + 1);
            if (rc != 0)
                return rc;
            js_pop(s, old);
            js_ws(s);
            if (s->p < s->end && *s->p == ',')
                s->p++;
        }
        js_ws(s);
        if (s->p < s->end && *s->p == close)
            s->p++;
        return 0;
    }
    /* A number or a literal: up to the next delimiter. */
    const char *start = s->p;
    while (s->p < s->end && !strchr(",]} \t\r\n", *s->p))
        s->p++;
    if (cJSON_IsNumber(v) && (memchr(start, '.', (size_t)(s->p - start)) ||
                              memchr(start, 'e', (size_t)(s->p - start)) ||
                              memchr(start, 'E', (size_t)(s->p - start))))
        v->type |= JSON_NOT_INT;
    return 0;
}

/*
 * Parses the body as one JSON object. Returns 0 with *out set (caller
 * deletes), or the error status. cJSON reads at most len bytes; anything
 * after the object other than white space is an error.
 */
static int parse_object(const char *body, size_t len, cJSON **out, dr_http_error *e)
{
    *out = NULL;
    if (body == NULL || len == 0)
        return dr_http_error_set(e, 400, "invalid_request_error", "invalid_json", NULL,
                                 "the request body is empty: expected a JSON object");
    /* JSON allows no raw control characters but white space (inside a
     * string they must be escaped); cJSON lets them through, and a NUL would
     * silently cut the string it is in. */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)body[i];
        if (ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r' && !(ch == 0 && i == len - 1))
            return dr_http_error_set(e, 400, "invalid_request_error", "invalid_json", NULL,
                                     "the request body is not valid JSON: control character "
                                     "0x%02x at byte %zu (inside a string write it as \\u00%02x)",
                                     ch, i, ch);
    }
    const char *end = NULL;
    unsigned long failed = dr_alloc_failures();
    cJSON *o = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (o == NULL && dr_alloc_failures() != failed)
        return dr_http_error_set(e, 500, "server_error", "internal_error", NULL,
                                 "out of memory");
    if (o == NULL) {
        size_t off = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        return dr_http_error_set(e, 400, "invalid_request_error", "invalid_json", NULL,
                                 "the request body is not valid JSON (near byte %zu)", off);
    }
    for (const char *p = end; p && p < body + len; p++) {
        if (*p == '\0' && p == body + len - 1)
            break; /* a terminating NUL counted in len */
        if (!isspace((unsigned char)*p)) {
            cJSON_Delete(o);
            return dr_http_error_set(e, 400, "invalid_request_error", "invalid_json", NULL,
                                     "the request body has data after the JSON value "
                                     "(byte %zu)",
                                     (size_t)(p - body));
        }
    }
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return dr_http_error_set(e, 400, "invalid_request_error", "invalid_json", NULL,
                                 "the request body must be a JSON object");
    }
    jscan js = {body, end, "", 0, e};
    int rc = js_value(&js, o, 0);
    if (rc != 0) {
        cJSON_Delete(o);
        return rc;
    }
    *out = o;
    return 0;
}

static bool is_blank(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return false;
    return true;
}

/*
 * Validates a text field: a string of valid UTF-8 without NUL bytes, at
 * most max bytes, and (when nonblank) not only white space. Returns 0 and
 * a copy in *out (NULL when the field is absent and optional).
 */
static int text_field(const cJSON *o, const char *field, bool required, bool nonblank, size_t max,
                      char **out, dr_http_error *e)
{
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    if (v == NULL || cJSON_IsNull(v)) {
        if (required)
            return bad_field(e, field, "required");
        return 0;
    }
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return bad_field(e, field, "expected a string");
    size_t n = strlen(v->valuestring);
    if (n > max)
        return bad_field(e, field, "longer than %zu bytes", max);
    size_t bad = 0;
    if (!dr_utf8_valid(v->valuestring, n, &bad))
        return bad_field(e, field, "not valid UTF-8 (byte %zu)", bad);
    if (nonblank && is_blank(v->valuestring))
        return bad_field(e, field, "must not be empty");
    *out = dr_strdup(v->valuestring);
    return *out ? 0 : no_memory(e);
}

/* An optional integer field in [min, max]; *out keeps its default when the
 * field is absent or null. */
static int int_field(const cJSON *o, const char *field, long long min, long long max, int *out,
                     dr_http_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(d) || d != floor(d) || d < (double)min || d > (double)max)
        return bad_field(e, field, "expected an integer from %lld to %lld", min, max);
    if (v->type & JSON_NOT_INT)
        return bad_field(e, field,
                         "expected an integer from %lld to %lld, written without a fraction or "
                         "exponent",
                         min, max);
    *out = (int)d;
    return 0;
}

static int bool_field(const cJSON *o, const char *field, bool *out, dr_http_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v))
        return bad_field(e, field, "expected true or false");
    *out = cJSON_IsTrue(v);
    return 0;
}

/*
 * The optional `budget` object: {usd, latency_ms, energy_wh}, each a number
 * >= 0 (absent or null: not set); any other key is rejected. The error
 * names the field, e.g. "budget.usd".
 */
static int budget_field(const cJSON *o, dr_budget_req *out, dr_http_error *e)
{
    out->set = false;
    out->usd = out->latency_ms = out->energy_wh = NAN;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "budget");
    if (b == NULL || cJSON_IsNull(b))
        return 0;
    if (!cJSON_IsObject(b))
        return bad_field(e, "budget", "expected an object {usd, latency_ms, energy_wh}");
    static const char *const keys[] = {"usd", "latency_ms", "energy_wh"};
    double *dst[] = {&out->usd, &out->latency_ms, &out->energy_wh};
    const cJSON *v;
    cJSON_ArrayForEach(v, b)
    {
        int k = -1;
        for (int i = 0; i < 3; i++)
            if (v->string != NULL && strcmp(v->string, keys[i]) == 0)
                k = i;
        char f[80];
        snprintf(f, sizeof(f), "budget.%.60s", v->string ? v->string : "");
        if (k < 0)
            return bad_field(e, f, "unknown field (expected usd, latency_ms or energy_wh)");
        if (cJSON_IsNull(v))
            continue;
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0)
            return bad_field(e, f, "expected a number >= 0");
        *dst[k] = v->valuedouble;
    }
    out->set = true;
    return 0;
}

/* ---- endpoints ------------------------------------------------------------ */

int dr_parse_retrieve(const char *body, size_t len, dr_retrieve_req *out, dr_http_error *e)
{
    memset(out, 0, sizeof(*out));
    out->k = 10;
    out->mode = -1;
    cJSON *o = NULL;
    int rc = parse_object(body, len, &o, e);
    if (rc == 0)
        rc = text_field(o, "query", true, true, DR_REQ_MAX_QUERY, &out->query, e);
    if (rc == 0)
        rc = int_field(o, "k", 1, DR_REQ_MAX_K, &out->k, e);
    if (rc == 0) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "mode");
        if (m != NULL && !cJSON_IsNull(m)) {
            static const char *const names[] = {"bm25", "dense", "hybrid"};
            out->mode = -2;
            for (int i = 0; i < 3 && cJSON_IsString(m); i++)
                if (strcmp(m->valuestring, names[i]) == 0)
                    out->mode = i;
            if (out->mode < 0)
                rc = bad_field(e, "mode", "expected \"bm25\", \"dense\" or \"hybrid\"");
        }
    }
    cJSON_Delete(o);
    if (rc != 0)
        dr_retrieve_req_free(out);
    return rc;
}

int dr_parse_query(const char *body, size_t len, dr_query_req *out, dr_http_error *e)
{
    memset(out, 0, sizeof(*out));
    cJSON *o = NULL;
    int rc = parse_object(body, len, &o, e);
    if (rc == 0)
        rc = text_field(o, "query", true, true, DR_REQ_MAX_QUERY, &out->query, e);
    if (rc == 0)
        rc = text_field(o, "id", false, true, DR_REQ_MAX_ID, &out->id, e);
    if (rc == 0)
        rc = budget_field(o, &out->budget, e);
    if (rc == 0 && out->id) {
        for (const char *c = out->id; *c && rc == 0; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                rc = bad_field(e, "id", "must not contain control characters");
    }
    cJSON_Delete(o);
    if (rc != 0)
        dr_query_req_free(out);
    return rc;
}

int dr_parse_route(const char *body, size_t len, dr_query_req *out, dr_http_error *e)
{
    memset(out, 0, sizeof(*out));
    cJSON *o = NULL;
    int rc = parse_object(body, len, &o, e);
    if (rc == 0)
        rc = text_field(o, "query", true, true, DR_REQ_MAX_QUERY, &out->query, e);
    cJSON_Delete(o);
    if (rc != 0)
        dr_query_req_free(out);
    return rc;
}

int dr_parse_feedback(const char *body, size_t len, dr_feedback_req *out, dr_http_error *e)
{
    memset(out, 0, sizeof(*out));
    cJSON *o = NULL;
    int rc = parse_object(body, len, &o, e);
    if (rc == 0)
        rc = text_field(o, "query_id", true, true, DR_REQ_MAX_ID, &out->query_id, e);
    if (rc == 0) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "reward");
        if (r == NULL || cJSON_IsNull(r))
            rc = bad_field(e, "reward", "required");
        else if (!cJSON_IsNumber(r) || !isfinite(r->valuedouble) || r->valuedouble < -1e6 ||
                 r->valuedouble > 1e6)
            rc = bad_field(e, "reward", "expected a number from -1e6 to 1e6");
        else
            out->reward = r->valuedouble;
    }
    cJSON_Delete(o);
    if (rc != 0)
        dr_feedback_req_free(out);
    return rc;
}

/*
 * The text of one chat message's content: a string, or an array of parts
 * of which the {"type":"text","text":...} ones are joined with newlines
 * (other part types, e.g. images, are skipped). Returns 0 with *out (owned)
 * or an error naming `field`.
 */
static int content_text(const cJSON *content, const char *field, char **out, dr_http_error *e)
{
    *out = NULL;
    if (cJSON_IsString(content)) {
        *out = dr_strdup(content->valuestring);
        return *out ? 0 : no_memory(e);
    }
    if (!cJSON_IsArray(content))
        return bad_field(e, field, "expected a string or an array of content parts");
    dr_buf b = {0};
    b.cap_limit = DR_REQ_MAX_QUERY + 1;
    int i = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, content)
    {
        char pf[64];
        snprintf(pf, sizeof(pf), "%s[%d]", field, i++);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type)) {
            dr_buf_free(&b);
            return bad_field(e, pf, "expected an object with a string \"type\"");
        }
        if (strcmp(type->valuestring, "text") != 0)
            continue;
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(text)) {
            dr_buf_free(&b);
            return bad_field(e, pf, "a \"text\" part needs a string \"text\"");
        }
        int rc = b.len ? dr_buf_putc(&b, '\n') : DYNRAG_OK;
        if (rc == DYNRAG_OK)
            rc = dr_buf_puts(&b, text->valuestring);
        if (rc != DYNRAG_OK) {
            dr_buf_free(&b);
            if (rc == DYNRAG_ERR_LIMIT)
                return bad_field(e, field, "longer than %d bytes", DR_REQ_MAX_QUERY);
            return no_memory(e);
        }
    }
    if (b.len == 0) {
        dr_buf_free(&b);
        return bad_field(e, field, "has no text part");
    }
    *out = dr_buf_take(&b);
    return *out ? 0 : no_memory(e);
}

int dr_parse_chat(const char *body, size_t len, dr_chat_req *out, dr_http_error *e)
{
    memset(out, 0, sizeof(*out));
    cJSON *o = NULL;
    char *text = NULL;
    int rc = parse_object(body, len, &o, e);
    if (rc == 0)
        rc = text_field(o, "model", false, false, 256, &out->model, e);
    if (rc == 0)
        rc = bool_field(o, "stream", &out->stream, e);
    if (rc == 0)
        rc = budget_field(o, &out->budget, e);
    if (rc == 0) {
        /* An integer first (1.0 is refused as every integer field refuses
         * it), then the one value supported. */
        int n = 1;
        rc = int_field(o, "n", 1, 128, &n, e);
        if (rc == 0 && n != 1)
            rc = bad_field(e, "n", "only 1 choice is supported, got %d", n);
    }
    if (rc == 0) {
        const cJSON *so = cJSON_GetObjectItemCaseSensitive(o, "stream_options");
        if (so != NULL && !cJSON_IsNull(so)) {
            if (!cJSON_IsObject(so))
                rc = bad_field(e, "stream_options", "expected an object");
            else
                rc = bool_field(so, "include_usage", &out->include_usage, e);
            if (rc != 0 && strcmp(e->param, "include_usage") == 0)
                rc = bad_field(e, "stream_options.include_usage", "expected true or false");
        }
    }
    const cJSON *msgs = rc == 0 ? cJSON_GetObjectItemCaseSensitive(o, "messages") : NULL;
    if (rc == 0 && msgs == NULL)
        rc = bad_field(e, "messages", "required");
    if (rc == 0 && (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0))
        rc = bad_field(e, "messages", "expected a non-empty array of messages");
    const cJSON *last_user = NULL;
    int last_i = -1;
    if (rc == 0) {
        static const char *const roles[] = {"system",    "developer", "user",
                                            "assistant", "tool",      "function"};
        int i = 0;
        const cJSON *m;
        cJSON_ArrayForEach(m, msgs)
        {
            char f[48];
            snprintf(f, sizeof(f), "messages[%d]", i);
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
            if (!cJSON_IsObject(m)) {
                rc = bad_field(e, f, "expected an object");
                break;
            }
            snprintf(f, sizeof(f), "messages[%d].role", i);
            bool known = false;
            for (size_t r = 0; r < DR_ARRAY_LEN(roles) && cJSON_IsString(role); r++)
                known = known || strcmp(role->valuestring, roles[r]) == 0;
            if (!known) {
                rc = bad_field(e, f,
                               "expected one of system, developer, user, assistant, "
                               "tool, function");
                break;
            }
            if (strcmp(role->valuestring, "user") == 0) {
                last_user = m;
                last_i = i;
            }
            i++;
        }
        if (rc == 0 && last_user == NULL)
            rc = bad_field(e, "messages", "no message has role \"user\"");
    }
    if (rc == 0) {
        char f[48];
        snprintf(f, sizeof(f), "messages[%d].content", last_i);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(last_user, "content");
        if (content == NULL || cJSON_IsNull(content))
            rc = bad_field(e, f, "required");
        else
            rc = content_text(content, f, &text, e);
        if (rc == 0) {
            size_t n = strlen(text), bad = 0;
            if (n > DR_REQ_MAX_QUERY)
                rc = bad_field(e, f, "longer than %d bytes", DR_REQ_MAX_QUERY);
            else if (!dr_utf8_valid(text, n, &bad))
                rc = bad_field(e, f, "not valid UTF-8 (byte %zu)", bad);
            else if (is_blank(text))
                rc = bad_field(e, f, "must not be empty");
        }
    }
    if (rc == 0) {
        out->query = text;
        text = NULL;
    }
    dr_free(text);
    cJSON_Delete(o);
    if (rc != 0)
        dr_chat_req_free(out);
    return rc;
}

void dr_retrieve_req_free(dr_retrieve_req *r)
{
    if (r == NULL)
        return;
    dr_free(r->query);
    r->query = NULL;
}

void dr_query_req_free(dr_query_req *r)
{
    if (r == NULL)
        return;
    dr_free(r->query);
    dr_free(r->id);
    r->query = r->id = NULL;
}

void dr_feedback_req_free(dr_feedback_req *r)
{
    if (r == NULL)
        return;
    dr_free(r->query_id);
    r->query_id = NULL;
}

void dr_chat_req_free(dr_chat_req *r)
{
    if (r == NULL)
        return;
    dr_free(r->query);
    dr_free(r->model);
    r->query = r->model = NULL;
}

/* ---- headers ----------------------------------------------------------------- */

bool dr_http_content_type_json(const char *header)
{
    if (header == NULL)
        return false;
    while (*header == ' ' || *header == '\t')
        header++;
    static const char want[] = "application/json";
    size_t n = sizeof(want) - 1;
    if (strncasecmp(header, want, n) != 0)
        return false;
    const char *rest = header + n;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    return *rest == '\0' || *rest == ';';
}

bool dr_http_bearer_ok(const char *header, const char *key)
{
    if (header == NULL || key == NULL || *key == '\0')
        return false;
    if (strncasecmp(header, "Bearer", 6) != 0 || (header[6] != ' ' && header[6] != '\t'))
        return false;
    const char *tok = header + 6;
    while (*tok == ' ' || *tok == '\t')
        tok++;
    size_t n = strlen(tok), m = strlen(key);
    /* Time depends on n only: every byte of the token is compared. */
    unsigned diff = (unsigned)(n != m);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)tok[i] ^ (unsigned char)key[i % m];
    return diff == 0;
}
