/* llm.c - OpenAI-compatible chat completions over net/http. */
#include "generate/llm.h"

#include "core/util.h"
#include "net/http.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LLM_MAX_SAMPLES 128

void dr_llm_result_free(dr_llm_result *r)
{
    if (r == NULL)
        return;
    dr_free(r->text);
    dr_free(r->finish_reason);
    for (size_t i = 0; r->samples != NULL && i < r->n_samples; i++)
        dr_free(r->samples[i]);
    dr_free(r->samples);
    memset(r, 0, sizeof(*r));
    r->first_token_margin = NAN;
    r->mean_logprob = NAN;
}

/* Checks the configuration and messages; fills err naming the bad field. */
static int validate(const dr_llm_config *cfg, const dr_llm_message *msgs, size_t n_msgs,
                    dynrag_error *err)
{
    if (cfg == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "llm: no configuration");
    if (cfg->base_url == NULL || cfg->base_url[0] == '\0')
        return dr_err_set(err, DYNRAG_ERR_INVALID, "llm: base_url is required");
    if (cfg->model == NULL || cfg->model[0] == '\0')
        return dr_err_set(err, DYNRAG_ERR_INVALID, "llm %s: model is required", cfg->base_url);
    if (!(cfg->timeout_s >= 0) || cfg->timeout_s > 86400)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "llm %s: timeout_s %g not in 0..86400",
                          cfg->base_url, cfg->timeout_s);
    if (cfg->max_retries < 0 || cfg->max_retries > DR_HTTP_MAX_RETRIES)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "llm %s: max_retries %d not in 0..%d",
                          cfg->base_url, cfg->max_retries, DR_HTTP_MAX_RETRIES);
    if (!isfinite(cfg->temperature) || cfg->temperature < 0 || cfg->temperature > 2)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "llm %s: temperature %g not in 0..2",
                          cfg->base_url, cfg->temperature);
    if (cfg->max_tokens < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "llm %s: max_tokens %d is negative",
                          cfg->base_url, cfg->max_tokens);
    if (cfg->top_logprobs < 0 || cfg->top_logprobs > 20)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "llm %s: top_logprobs %d not in 0..20",
                          cfg->base_url, cfg->top_logprobs);
    if (cfg->n < 0 || cfg->n > LLM_MAX_SAMPLES)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "llm %s: n %d not in 0..%d", cfg->base_url,
                          cfg->n, LLM_MAX_SAMPLES);
    if (!(cfg->usd_per_1k_input >= 0) || !(cfg->usd_per_1k_output >= 0) ||
        !isfinite(cfg->usd_per_1k_input) || !isfinite(cfg->usd_per_1k_output))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "llm %s: prices must be finite and >= 0",
                          cfg->base_url);
    if (msgs == NULL || n_msgs == 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "llm %s: no messages", cfg->base_url);
    for (size_t i = 0; i < n_msgs; i++) {
        if (msgs[i].role == NULL || msgs[i].role[0] == '\0' || msgs[i].content == NULL)
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "llm %s: message %zu needs a role and a content", cfg->base_url,
                              i);
    }
    return DYNRAG_OK;
}

/* Builds the request body; caller frees. NULL on allocation failure. */
static char *build_request(const dr_llm_config *cfg, const dr_llm_message *msgs, size_t n_msgs)
{
    char *out = NULL;
    cJSON *root = cJSON_CreateObject();
    if (root == NULL)
        return NULL;
    if (!cJSON_AddStringToObject(root, "model", cfg->model))
        goto cleanup;
    cJSON *arr = cJSON_AddArrayToObject(root, "messages");
    if (arr == NULL)
        goto cleanup;
    for (size_t i = 0; i < n_msgs; i++) {
        cJSON *m = cJSON_CreateObject();
        if (m == NULL)
            goto cleanup;
        cJSON_AddItemToArray(arr, m);
        if (!cJSON_AddStringToObject(m, "role", msgs[i].role) ||
            !cJSON_AddStringToObject(m, "content", msgs[i].content))
            goto cleanup;
    }
    if (!cJSON_AddNumberToObject(root, "temperature", cfg->temperature))
        goto cleanup;
    if (cfg->max_tokens > 0 && !cJSON_AddNumberToObject(root, "max_tokens", cfg->max_tokens))
        goto cleanup;
    if (cfg->n > 1 && !cJSON_AddNumberToObject(root, "n", cfg->n))
        goto cleanup;
    if (cfg->logprobs) {
        if (!cJSON_AddTrueToObject(root, "logprobs"))
            goto cleanup;
        if (cfg->top_logprobs > 0 &&
            !cJSON_AddNumberToObject(root, "top_logprobs", cfg->top_logprobs))
            goto cleanup;
    }
    if (!cJSON_AddFalseToObject(root, "stream"))
        goto cleanup;
    out = cJSON_PrintUnformatted(root);
cleanup:
    cJSON_Delete(root);
    return out;
}

static int estimate_tokens(size_t chars)
{
    size_t t = (chars + 3) / 4;
    return t > (size_t)1 << 30 ? 1 << 30 : (int)t;
}

/* Reads a non-negative integer token count; -1 absent, -2 wrong type. */
static int usage_field(const cJSON *usage, const char *name, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(usage, name);
    if (v == NULL || cJSON_IsNull(v))
        return -1;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > 1e12)
        return -2;
    *out = v->valuedouble > 2147483647.0 ? 2147483647 : (int)v->valuedouble;
    return 0;
}

/* Logprob statistics of one choice: mean over generated tokens and the
 * top-1 minus top-2 margin of the first token. Leaves NAN where the server
 * gave nothing usable. */
static void parse_logprobs(const cJSON *choice, double *mean, double *margin)
{
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(choice, "logprobs");
    const cJSON *content = cJSON_IsObject(lp) ? cJSON_GetObjectItemCaseSensitive(lp, "content")
                                              : NULL;
    if (!cJSON_IsArray(content))
        return;
    double sum = 0;
    size_t n = 0;
    const cJSON *tok;
    cJSON_ArrayForEach(tok, content) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(tok, "logprob");
        if (!cJSON_IsNumber(l) || !isfinite(l->valuedouble))
            continue; /* e.g. -inf or null for a token outside the top list */
        sum += l->valuedouble;
        n++;
    }
    if (n > 0)
        *mean = sum / (double)n;
    const cJSON *first = cJSON_GetArrayItem(content, 0);
    const cJSON *top = first ? cJSON_GetObjectItemCaseSensitive(first, "top_logprobs") : NULL;
    if (!cJSON_IsArray(top))
        return;
    double best = -INFINITY, second = -INFINITY;
    size_t m = 0;
    const cJSON *alt;
    cJSON_ArrayForEach(alt, top) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(alt, "logprob");
        if (!cJSON_IsNumber(l) || isnan(l->valuedouble))
            continue;
        double v = l->valuedouble;
        if (v > best) {
            second = best;
            best = v;
        } else if (v > second) {
            second = v;
        }
        m++;
    }
    if (m >= 2 && isfinite(best) && isfinite(second))
        *margin = best - second;
}

/* A short printable excerpt of s around offset (for parse errors). */
static void excerpt(const char *s, size_t len, size_t off, char *buf, size_t size)
{
    size_t start = off > 20 ? off - 20 : 0;
    size_t n = len - start > 40 ? 40 : len - start;
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < size; i++) {
        unsigned char c = (unsigned char)s[start + i];
        buf[j++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    buf[j] = '\0';
}

/* The message content of a choice, or an error naming the field. */
static int choice_text(const cJSON *choice, size_t i, const char *url, long status,
                       const char **text, dynrag_error *err)
{
    if (!cJSON_IsObject(choice))
        return dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: choices[%zu] is not an "
                          "object", url, status, i);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(choice, "message");
    if (!cJSON_IsObject(msg))
        return dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: choices[%zu].message is "
                          "%s", url, status, i, msg ? "not an object" : "missing");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(msg, "content");
    if (c == NULL || cJSON_IsNull(c))
        return dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: choices[%zu].message."
                          "content is %s", url, status, i, c ? "null" : "missing");
    if (!cJSON_IsString(c))
        return dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: choices[%zu].message."
                          "content is not a string", url, status, i);
    *text = c->valuestring;
    return DYNRAG_OK;
}

/* True when the JSON text s[0..n) holds an escaped NUL (\u0000) in a
 * string: cJSON would end the string there and the answer would be cut. */
static bool has_escaped_nul(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\')
            continue;
        if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0)
            return true;
        i++; /* the escaped character, a backslash included */
    }
    return false;
}

/* Parses a 2xx response body into *out (see dr_llm_chat). */
static int parse_response(const dr_llm_config *cfg, const dr_llm_message *msgs, size_t n_msgs,
                          const char *url, const dr_http_response *resp, dr_llm_result *out,
                          dynrag_error *err)
{
    int rc = DYNRAG_OK;
    long status = resp->status;
    const cJSON **order = NULL;
    if (resp->body == NULL || resp->body_len == 0)
        return dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld with an empty body", url,
                          status);
    if (has_escaped_nul(resp->body, resp->body_len))
        return dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: the response holds an "
                          "escaped NUL character (\\u0000): refused rather than cutting the "
                          "answer there", url, status);
    const char *end = NULL;
    unsigned long failed = dr_alloc_failures();
    cJSON *root = cJSON_ParseWithLengthOpts(resp->body, resp->body_len, &end, false);
    if (root == NULL && dr_alloc_failures() != failed)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "POST %s: out of memory reading the response",
                          url);
    if (root == NULL) {
        size_t off = end && end >= resp->body ? (size_t)(end - resp->body) : 0;
        if (off > resp->body_len)
            off = resp->body_len;
        char ex[64];
        excerpt(resp->body, resp->body_len, off, ex, sizeof(ex));
        return dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: malformed JSON in the "
                          "response (%zu bytes) at byte %zu near '%s'", url, status,
                          resp->body_len, off, ex);
    }
    if (!cJSON_IsObject(root)) {
        rc = dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: response is not a JSON "
                        "object", url, status);
        goto cleanup;
    }
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    if (!cJSON_IsArray(choices) || cJSON_GetArraySize(choices) == 0) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
        char smsg[256] = "";
        if (e != NULL)
            dr_http_error_message(resp->body, resp->body_len, smsg, sizeof(smsg));
        rc = dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: response has %s%s%s", url,
                        status, choices == NULL ? "no \"choices\""
                        : !cJSON_IsArray(choices) ? "\"choices\" that is not an array"
                        : "an empty \"choices\" array",
                        smsg[0] ? "; server error: " : "", smsg);
        goto cleanup;
    }

    /* Order the choices by their "index" field (position when absent). */
    size_t nc = (size_t)cJSON_GetArraySize(choices);
    order = dr_calloc(nc, sizeof(*order));
    if (order == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "llm: out of memory");
        goto cleanup;
    }
    size_t pos = 0;
    const cJSON *ch;
    cJSON_ArrayForEach(ch, choices) {
        const cJSON *ix = cJSON_IsObject(ch) ? cJSON_GetObjectItemCaseSensitive(ch, "index")
                                             : NULL;
        size_t slot = pos;
        if (cJSON_IsNumber(ix) && ix->valuedouble >= 0 && ix->valuedouble < (double)nc &&
            order[(size_t)ix->valuedouble] == NULL)
            slot = (size_t)ix->valuedouble;
        else if (order[slot] != NULL) {
            slot = 0;
            while (order[slot] != NULL)
                slot++;
        }
        order[slot] = ch;
        pos++;
    }

    size_t completion_chars = 0;
    const char *first_text = NULL;
    for (size_t i = 0; i < nc; i++) {
        const char *t = NULL;
        rc = choice_text(order[i], i, url, status, &t, err);
        if (rc != DYNRAG_OK)
            goto cleanup;
        if (i == 0)
            first_text = t;
        completion_chars += strlen(t);
    }
    /* Invalid UTF-8 from the server becomes U+FFFD: the answer goes into
     * JSON logs and replies. */
    out->text = dr_utf8_sanitize(first_text, strlen(first_text));
    if (out->text == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "llm: out of memory");
        goto cleanup;
    }
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(order[0], "finish_reason");
    if (cJSON_IsString(fr)) {
        out->finish_reason = dr_strdup(fr->valuestring);
        if (out->finish_reason == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "llm: out of memory");
            goto cleanup;
        }
    }
    if (cfg->n > 1) {
        out->samples = dr_calloc(nc, sizeof(char *));
        if (out->samples == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "llm: out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < nc; i++) {
            const char *t = NULL;
            choice_text(order[i], i, url, status, &t, NULL); /* checked above */
            out->samples[i] = dr_utf8_sanitize(t, strlen(t));
            if (out->samples[i] == NULL) {
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "llm: out of memory");
                goto cleanup;
            }
            out->n_samples = i + 1;
        }
        if (nc != (size_t)cfg->n)
            dr_log(DYNRAG_LOG_WARN, "llm", "POST %s: asked for n=%d samples, got %zu", url,
                   cfg->n, nc);
    }

    /* Usage, or an estimate when the server sends none. */
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    int pt = -1, ct = -1;
    if (usage != NULL && !cJSON_IsNull(usage)) {
        if (!cJSON_IsObject(usage)) {
            rc = dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: \"usage\" is not an "
                            "object", url, status);
            goto cleanup;
        }
        int a = usage_field(usage, "prompt_tokens", &pt);
        int b = usage_field(usage, "completion_tokens", &ct);
        if (a == -2 || b == -2) {
            rc = dr_err_set(err, DYNRAG_ERR_PARSE, "POST %s: HTTP %ld: usage.%s is not a "
                            "non-negative number", url, status,
                            a == -2 ? "prompt_tokens" : "completion_tokens");
            goto cleanup;
        }
    }
    if (pt < 0) {
        size_t chars = 0;
        for (size_t i = 0; i < n_msgs; i++)
            chars += strlen(msgs[i].content);
        pt = estimate_tokens(chars);
        out->usage_estimated = true;
    }
    if (ct < 0) {
        ct = estimate_tokens(completion_chars);
        out->usage_estimated = true;
    }
    out->prompt_tokens = pt;
    out->completion_tokens = ct;
    out->cost_usd = (double)pt / 1000.0 * cfg->usd_per_1k_input +
                    (double)ct / 1000.0 * cfg->usd_per_1k_output;
    if (cfg->logprobs)
        parse_logprobs(order[0], &out->mean_logprob, &out->first_token_margin);

cleanup:
    dr_free(order);
    cJSON_Delete(root);
    return rc;
}

int dr_llm_chat(const dr_llm_config *cfg, const dr_llm_message *msgs, size_t n_msgs,
                dr_llm_result *out, dynrag_error *err)
{
    int rc;
    char *url = NULL, *body = NULL;
    dr_http_response resp = {0};
    if (out == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "llm: NULL result");
    memset(out, 0, sizeof(*out));
    out->first_token_margin = NAN;
    out->mean_logprob = NAN;
    rc = validate(cfg, msgs, n_msgs, err);
    if (rc != DYNRAG_OK)
        return rc;

    url = dr_http_join_url(cfg->base_url, "chat/completions");
    body = build_request(cfg, msgs, n_msgs);
    if (url == NULL || body == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "llm: out of memory building the request");
        goto cleanup;
    }
    dr_http_request req = {
        .url = url,
        .body = body,
        .api_key = cfg->api_key,
        .timeout_s = cfg->timeout_s,
        .max_retries = cfg->max_retries,
        .deadline_us = cfg->deadline_us,
        .log_module = "llm",
    };
    rc = dr_http_post_json(&req, &resp, err);
    out->attempts = resp.attempts;
    out->latency_ms = resp.elapsed_ms;
    if (rc != DYNRAG_OK)
        goto cleanup;
    rc = parse_response(cfg, msgs, n_msgs, url, &resp, out, err);

cleanup:
    if (rc != DYNRAG_OK) {
        int attempts = out->attempts;
        double latency = out->latency_ms;
        dr_llm_result_free(out);
        out->attempts = attempts;
        out->latency_ms = latency;
    }
    dr_http_response_free(&resp);
    dr_free(url);
    dr_free(body);
    return rc;
}
