/* test_net.c - the HTTP client, the chat client and the embeddings client,
 * against the OpenAI-compatible TEST DOUBLE (tests/openai_double.py). */
#include "test.h"
#include "test_net_util.h"

#include "core/util.h"
#include "embed/embedder.h"
#include "generate/llm.h"
#include "net/http.h"

#include <pthread.h>
#include <time.h>

/* ---- helpers ---------------------------------------------------------------- */

/* Records the waits between retries; really sleeps only when `real`. */
typedef struct sleep_log {
    double delays[32];
    int n;
    bool real;
} sleep_log;

static void record_sleep(void *user, double s)
{
    sleep_log *l = user;
    if (l->n < (int)DR_ARRAY_LEN(l->delays))
        l->delays[l->n++] = s;
    if (l->real && s > 0) {
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* Counts WARN messages from module "llm" / "embed" mentioning a retry. */
static int retry_warnings;
static void count_retry_logs(void *user, dynrag_log_level level, const char *module,
                             const char *msg)
{
    (void)user;
    if (level == DYNRAG_LOG_WARN && strstr(msg, "retry") != NULL &&
        (strcmp(module, "llm") == 0 || strcmp(module, "embed") == 0))
        __atomic_add_fetch(&retry_warnings, 1, __ATOMIC_SEQ_CST);
}

#define START_DOUBLE(d)                                          \
    test_double d;                                               \
    if (test_double_start(&d) != 0)                              \
        SKIP("cannot start tests/openai_double.py (python3?)")

static dr_llm_config chat_config(const test_double *d)
{
    dr_llm_config c;
    memset(&c, 0, sizeof(c));
    c.base_url = d->base_url;
    c.model = "test-chat";
    c.api_key = "sk-test-not-a-secret";
    c.timeout_s = 5;
    c.max_retries = 0;
    c.temperature = 0;
    c.max_tokens = 64;
    return c;
}

static const dr_llm_message chat_msgs[] = {
    {"system", "Be brief."},
    {"user", "What is RAG?"},
};

/* ---- net/http pure helpers ------------------------------------------------------- */

TEST(net_http_helpers)
{
    time_t now = 1445412480; /* Wed, 21 Oct 2015 07:28:00 GMT */
    ASSERT_NEAR(dr_http_parse_retry_after("5", now), 5, 0);
    ASSERT_NEAR(dr_http_parse_retry_after("  7 ", now), 7, 0);
    ASSERT_NEAR(dr_http_parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), 30, 0);
    ASSERT_NEAR(dr_http_parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), 0, 0);
    ASSERT_NEAR(dr_http_parse_retry_after("-1", now), -1, 0);
    ASSERT_NEAR(dr_http_parse_retry_after("1.5", now), -1, 0);
    ASSERT_NEAR(dr_http_parse_retry_after("soon", now), -1, 0);
    ASSERT_NEAR(dr_http_parse_retry_after("", now), -1, 0);

    /* Full jitter: u * min(max, base * 2^(retry-1)). */
    ASSERT_NEAR(dr_http_backoff_delay(1, 0.25, 8, 0.5), 0.125, 1e-12);
    ASSERT_NEAR(dr_http_backoff_delay(3, 0.25, 8, 0.999), 0.999, 1e-12);
    ASSERT_NEAR(dr_http_backoff_delay(20, 0.25, 8, 0.5), 4.0, 1e-12);
    ASSERT_NEAR(dr_http_backoff_delay(2, 0.25, 8, 0.0), 0.0, 0);

    char *u = dr_http_join_url("http://h:1/v1/", "/chat/completions");
    ASSERT_STR_EQ(u, "http://h:1/v1/chat/completions");
    free(u);
    u = dr_http_join_url("http://h:1/v1", "embeddings");
    ASSERT_STR_EQ(u, "http://h:1/v1/embeddings");
    free(u);

    char buf[128];
    const char *b1 = "{\"error\":{\"message\":\"bad key\",\"type\":\"x\"}}";
    ASSERT_STR_EQ(dr_http_error_message(b1, strlen(b1), buf, sizeof(buf)), "bad key");
    const char *b2 = "{\"error\":\"model 'x' not found\"}";
    ASSERT_STR_EQ(dr_http_error_message(b2, strlen(b2), buf, sizeof(buf)),
                  "model 'x' not found");
    const char *b3 = "{\"detail\":\"Not Found\"}";
    ASSERT_STR_EQ(dr_http_error_message(b3, strlen(b3), buf, sizeof(buf)), "Not Found");
    const char *b4 = "<html>\nBad Gateway</html>";
    ASSERT_STR_EQ(dr_http_error_message(b4, strlen(b4), buf, sizeof(buf)),
                  "<html> Bad Gateway</html>");
}

TEST(net_http_rejects_bad_requests)
{
    dynrag_error err;
    dr_http_response resp;
    dr_http_request req = {.url = "ftp://127.0.0.1/x", .body = "{}"};
    ASSERT_EQ(dr_http_post_json(&req, &resp, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(err.msg, "http://");
    req.url = "http://127.0.0.1:9/x";
    req.max_retries = 99;
    ASSERT_EQ(dr_http_post_json(&req, &resp, &err), DYNRAG_ERR_INVALID);
    req.max_retries = 0;
    req.api_key = "key\r\nX-Injected: 1";
    ASSERT_EQ(dr_http_post_json(&req, &resp, &err), DYNRAG_ERR_INVALID);
    ASSERT_NOT_CONTAINS(err.msg, "X-Injected");
    dr_http_response_free(&resp);
    dr_http_response_free(NULL);
}

TEST(net_http_response_cap_and_redirect)
{
    START_DOUBLE(d);
    dynrag_error err;
    dr_http_response resp;
    char url[160];
    snprintf(url, sizeof(url), "%s/chat/completions", d.base_url);
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    dr_http_request req = {.url = url, .body = body, .max_response = 50, .max_retries = 2};
    ASSERT_EQ(dr_http_post_json(&req, &resp, &err), DYNRAG_ERR_LIMIT);
    ASSERT_CONTAINS(err.msg, "50-byte cap");
    ASSERT_EQ(resp.attempts, 1);
    dr_http_response_free(&resp);

    /* A redirect is reported, never followed, never retried. */
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"redirect\"]}"), 0);
    req.max_response = 0;
    ASSERT_EQ(dr_http_post_json(&req, &resp, &err), DYNRAG_ERR_HTTP);
    ASSERT_EQ(resp.status, 307);
    ASSERT_EQ(resp.attempts, 1);
    ASSERT_CONTAINS(err.msg, "127.0.0.1:9/elsewhere");
    ASSERT_CONTAINS(err.msg, "not followed");
    dr_http_response_free(&resp);

    /* Success keeps status and body. */
    ASSERT_OK(dr_http_post_json(&req, &resp, &err), &err);
    ASSERT_EQ(resp.status, 200);
    ASSERT_CONTAINS(resp.body, "test-double/m");
    ASSERT_EQ(resp.body_len, strlen(resp.body));
    dr_http_response_free(&resp);
    test_double_stop(&d);
}

TEST(net_http_connection_refused_retried)
{
    /* Find a closed port: bind-free approach, the double's port after stop. */
    START_DOUBLE(d);
    char url[160];
    snprintf(url, sizeof(url), "%s/chat/completions", d.base_url);
    test_double_stop(&d);
    sleep_log sl = {.real = false};
    dr_http_set_sleep_fn(record_sleep, &sl);
    dynrag_error err;
    dr_http_response resp;
    dr_http_request req = {.url = url, .body = "{}", .max_retries = 2, .seed = 42};
    int rc = dr_http_post_json(&req, &resp, &err);
    dr_http_set_sleep_fn(NULL, NULL);
    ASSERT_EQ(rc, DYNRAG_ERR_HTTP);
    ASSERT_EQ(resp.attempts, 3);
    ASSERT_EQ(sl.n, 2);
    ASSERT(sl.delays[0] >= 0 && sl.delays[0] < 0.25);
    ASSERT(sl.delays[1] >= 0 && sl.delays[1] < 0.5);
    ASSERT_CONTAINS(err.msg, url);
    ASSERT_CONTAINS(err.msg, "retries exhausted");
    dr_http_response_free(&resp);
}

/* ---- chat ------------------------------------------------------------------------- */

TEST(net_llm_success)
{
    START_DOUBLE(d);
    dr_llm_config c = chat_config(&d);
    dr_llm_result r;
    dynrag_error err;
    ASSERT_OK(dr_llm_chat(&c, chat_msgs, 2, &r, &err), &err);
    ASSERT_STR_EQ(r.text, "Test double answer: What is RAG?");
    ASSERT_STR_EQ(r.finish_reason, "stop");
    ASSERT_EQ(r.attempts, 1);
    ASSERT(!r.usage_estimated);
    ASSERT_EQ(r.prompt_tokens, 5);     /* the double counts words */
    ASSERT_EQ(r.completion_tokens, 6);
    ASSERT(r.latency_ms > 0);
    ASSERT(isnan(r.first_token_margin));
    ASSERT(isnan(r.mean_logprob));
    ASSERT(r.samples == NULL);
    ASSERT_EQ(r.n_samples, 0);
    dr_llm_result_free(&r);
    ASSERT(r.text == NULL);
    dr_llm_result_free(NULL);
    /* A trailing slash on base_url is fine. */
    char base[128];
    snprintf(base, sizeof(base), "%s/", d.base_url);
    c.base_url = base;
    ASSERT_OK(dr_llm_chat(&c, chat_msgs, 2, &r, &err), &err);
    dr_llm_result_free(&r);
    ASSERT_EQ(test_double_count(&d, "/v1/chat/completions"), 2);
    test_double_stop(&d);
}

TEST(net_llm_429_then_success)
{
    START_DOUBLE(d);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"429:1\",\"ok\"]}"), 0);
    sleep_log sl = {.real = true};
    dr_http_set_sleep_fn(record_sleep, &sl);
    retry_warnings = 0;
    dynrag_log_set(count_retry_logs, NULL, DYNRAG_LOG_WARN);
    dr_llm_config c = chat_config(&d);
    c.max_retries = 3;
    dr_llm_result r;
    dynrag_error err;
    int rc = dr_llm_chat(&c, chat_msgs, 2, &r, &err);
    dr_http_set_sleep_fn(NULL, NULL);
    dynrag_log_set(NULL, NULL, DYNRAG_LOG_INFO);
    ASSERT_OK(rc, &err);
    ASSERT_EQ(r.attempts, 2);
    ASSERT_EQ(sl.n, 1);
    ASSERT_NEAR(sl.delays[0], 1.0, 0); /* Retry-After: 1, not the jittered backoff */
    ASSERT(r.latency_ms >= 1000);
    ASSERT_EQ(retry_warnings, 1);
    ASSERT_STR_EQ(r.text, "Test double answer: What is RAG?");
    dr_llm_result_free(&r);
    test_double_stop(&d);
}

TEST(net_llm_retry_after_capped)
{
    START_DOUBLE(d);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"429:3600\",\"ok\"]}"), 0);
    sleep_log sl = {.real = false};
    dr_http_set_sleep_fn(record_sleep, &sl);
    dr_llm_config c = chat_config(&d);
    c.max_retries = 1;
    dr_llm_result r;
    dynrag_error err;
    int rc = dr_llm_chat(&c, chat_msgs, 2, &r, &err);
    dr_http_set_sleep_fn(NULL, NULL);
    ASSERT_OK(rc, &err);
    ASSERT_EQ(sl.n, 1);
    ASSERT_NEAR(sl.delays[0], DR_HTTP_DEFAULT_RETRY_AFTER_CAP_S, 0);
    dr_llm_result_free(&r);
    test_double_stop(&d);
}

TEST(net_llm_5xx_retries_exhausted)
{
    START_DOUBLE(d);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"500\",\"503\",\"500\",\"ok\"]}"), 0);
    sleep_log sl = {.real = true};
    dr_http_set_sleep_fn(record_sleep, &sl);
    dr_llm_config c = chat_config(&d);
    c.max_retries = 2;
    dr_llm_result r;
    dynrag_error err;
    int rc = dr_llm_chat(&c, chat_msgs, 2, &r, &err);
    dr_http_set_sleep_fn(NULL, NULL);
    ASSERT_EQ(rc, DYNRAG_ERR_HTTP);
    ASSERT_EQ(r.attempts, 3);
    ASSERT(r.text == NULL);
    ASSERT_CONTAINS(err.msg, "HTTP 500");
    ASSERT_CONTAINS(err.msg, "retries exhausted");
    ASSERT_CONTAINS(err.msg, "/v1/chat/completions");
    ASSERT_CONTAINS(err.msg, "test double 500");
    ASSERT_EQ(sl.n, 2);
    ASSERT(sl.delays[0] >= 0 && sl.delays[0] < 0.25);
    ASSERT(sl.delays[1] >= 0 && sl.delays[1] < 0.5);
    ASSERT_EQ(test_double_count(&d, "/v1/chat/completions"), 3);
    test_double_stop(&d);
}

TEST(net_llm_timeout)
{
    START_DOUBLE(d);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"sleep:3\",\"sleep:3\"]}"), 0);
    sleep_log sl = {.real = false};
    dr_http_set_sleep_fn(record_sleep, &sl);
    dr_llm_config c = chat_config(&d);
    c.timeout_s = 0.3;
    c.max_retries = 1;
    dr_llm_result r;
    dynrag_error err;
    int64_t t0 = dr_now_us();
    int rc = dr_llm_chat(&c, chat_msgs, 2, &r, &err);
    double ms = (double)(dr_now_us() - t0) / 1000.0;
    dr_http_set_sleep_fn(NULL, NULL);
    ASSERT_EQ(rc, DYNRAG_ERR_TIMEOUT);
    ASSERT_EQ(r.attempts, 2);
    ASSERT_CONTAINS(err.msg, "timed out");
    ASSERT_CONTAINS(err.msg, "retries exhausted");
    ASSERT(ms >= 550 && ms < 2500);
    ASSERT(r.latency_ms >= 550);
    test_double_stop(&d);
}

TEST(net_llm_400_not_retried)
{
    START_DOUBLE(d);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"400\",\"ok\"]}"), 0);
    dr_llm_config c = chat_config(&d);
    c.max_retries = 3;
    dr_llm_result r;
    dynrag_error err;
    ASSERT_EQ(dr_llm_chat(&c, chat_msgs, 2, &r, &err), DYNRAG_ERR_HTTP);
    ASSERT_EQ(r.attempts, 1);
    ASSERT_CONTAINS(err.msg, "HTTP 400");
    ASSERT_CONTAINS(err.msg, "Invalid 'messages': rejected by the test double");
    ASSERT_CONTAINS(err.msg, "not retried");
    ASSERT_NOT_CONTAINS(err.msg, "sk-test");
    ASSERT_EQ(test_double_count(&d, "/v1/chat/completions"), 1);
    test_double_stop(&d);
}

TEST(net_llm_malformed_json)
{
    START_DOUBLE(d);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"malformed\"]}"), 0);
    dr_llm_config c = chat_config(&d);
    c.max_retries = 2;
    dr_llm_result r;
    dynrag_error err;
    ASSERT_EQ(dr_llm_chat(&c, chat_msgs, 2, &r, &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(err.msg, "malformed JSON");
    ASSERT_CONTAINS(err.msg, "HTTP 200");
    ASSERT_CONTAINS(err.msg, d.base_url);
    ASSERT_EQ(r.attempts, 1);
    test_double_stop(&d);
}

/* An escaped NUL in the answer fails the call (cJSON would cut the answer
 * there); invalid UTF-8 bytes become U+FFFD; an escaped backslash before
 * "u0000" is plain text and kept. */
TEST(net_llm_content_nul_and_invalid_utf8)
{
    START_DOUBLE(d);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"nulcontent\"]}"), 0);
    dr_llm_config c = chat_config(&d);
    dr_llm_result r;
    dynrag_error err;
    ASSERT_EQ(dr_llm_chat(&c, chat_msgs, 2, &r, &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(err.msg, "escaped NUL");
    ASSERT_CONTAINS(err.msg, "HTTP 200");
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"badutf8\"]}"), 0);
    ASSERT_OK(dr_llm_chat(&c, chat_msgs, 2, &r, &err), &err);
    ASSERT_STR_EQ(r.text, "Par\xef\xbf\xbdis \\u0000 \xef\xbf\xbd(");
    ASSERT(dr_utf8_valid(r.text, strlen(r.text), NULL));
    dr_llm_result_free(&r);
    test_double_stop(&d);
}

TEST(net_llm_truncated_body)
{
    START_DOUBLE(d);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"truncated\"]}"), 0);
    dr_llm_config c = chat_config(&d);
    dr_llm_result r;
    dynrag_error err;
    ASSERT_EQ(dr_llm_chat(&c, chat_msgs, 2, &r, &err), DYNRAG_ERR_HTTP);
    ASSERT_CONTAINS(err.msg, "truncated");
    ASSERT_EQ(r.attempts, 1);
    /* A cut-off transfer is transient: with retries the next answer is used. */
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"truncated\",\"ok\"]}"), 0);
    sleep_log sl = {.real = false};
    dr_http_set_sleep_fn(record_sleep, &sl);
    c.max_retries = 1;
    int rc = dr_llm_chat(&c, chat_msgs, 2, &r, &err);
    dr_http_set_sleep_fn(NULL, NULL);
    ASSERT_OK(rc, &err);
    ASSERT_EQ(r.attempts, 2);
    dr_llm_result_free(&r);
    test_double_stop(&d);
}

TEST(net_llm_bad_shapes)
{
    START_DOUBLE(d);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"nochoices\",\"nocontent\",\"wrongtype\"]}"),
              0);
    dr_llm_config c = chat_config(&d);
    dr_llm_result r;
    dynrag_error err;
    ASSERT_EQ(dr_llm_chat(&c, chat_msgs, 2, &r, &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(err.msg, "no \"choices\"");
    ASSERT_EQ(dr_llm_chat(&c, chat_msgs, 2, &r, &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(err.msg, "choices[0].message.content is missing");
    ASSERT_EQ(dr_llm_chat(&c, chat_msgs, 2, &r, &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(err.msg, "content is not a string");
    ASSERT(r.text == NULL);
    /* Bad configuration and messages are refused before any request. */
    c.top_logprobs = 21;
    ASSERT_EQ(dr_llm_chat(&c, chat_msgs, 2, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(err.msg, "top_logprobs");
    c.top_logprobs = 0;
    dr_llm_message bad[1] = {{"user", NULL}};
    ASSERT_EQ(dr_llm_chat(&c, bad, 1, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dr_llm_chat(&c, chat_msgs, 0, &r, &err), DYNRAG_ERR_INVALID);
    c.model = NULL;
    ASSERT_EQ(dr_llm_chat(&c, chat_msgs, 2, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(test_double_count(&d, "/v1/chat/completions"), 3);
    test_double_stop(&d);
}

TEST(net_llm_missing_usage_estimated)
{
    START_DOUBLE(d);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"nousage\"]}"), 0);
    dr_llm_config c = chat_config(&d);
    dr_llm_result r;
    dynrag_error err;
    ASSERT_OK(dr_llm_chat(&c, chat_msgs, 2, &r, &err), &err);
    ASSERT(r.usage_estimated);
    /* ceil(chars / 4): "Be brief." + "What is RAG?" = 9 + 12 = 21 -> 6;
     * "Test double answer: What is RAG?" = 32 -> 8. */
    ASSERT_EQ(r.prompt_tokens, 6);
    ASSERT_EQ(r.completion_tokens, 8);
    dr_llm_result_free(&r);
    test_double_stop(&d);
}

TEST(net_llm_logprobs_margin)
{
    START_DOUBLE(d);
    dr_llm_config c = chat_config(&d);
    c.logprobs = true;
    c.top_logprobs = 3;
    dr_llm_result r;
    dynrag_error err;
    ASSERT_OK(dr_llm_chat(&c, chat_msgs, 2, &r, &err), &err);
    ASSERT_NEAR(r.first_token_margin, 1.5, 1e-9); /* -0.2 - (-1.7) */
    ASSERT_NEAR(r.mean_logprob, -0.2, 1e-9);
    dr_llm_result_free(&r);
    /* One top logprob: no margin, but a mean. */
    c.top_logprobs = 1;
    ASSERT_OK(dr_llm_chat(&c, chat_msgs, 2, &r, &err), &err);
    ASSERT(isnan(r.first_token_margin));
    ASSERT_NEAR(r.mean_logprob, -0.2, 1e-9);
    dr_llm_result_free(&r);
    test_double_stop(&d);
}

TEST(net_llm_n_samples)
{
    START_DOUBLE(d);
    dr_llm_config c = chat_config(&d);
    c.n = 3;
    c.temperature = 0.8;
    dr_llm_result r;
    dynrag_error err;
    ASSERT_OK(dr_llm_chat(&c, chat_msgs, 2, &r, &err), &err);
    ASSERT_EQ(r.n_samples, 3);
    /* The double sends choices in reverse: the client orders them by index. */
    ASSERT_STR_EQ(r.samples[0], "Sample 0: Test double answer: What is RAG?");
    ASSERT_STR_EQ(r.samples[2], "Sample 2: Test double answer: What is RAG?");
    ASSERT_STR_EQ(r.text, r.samples[0]);
    ASSERT_EQ(r.completion_tokens, 3 * 8);
    dr_llm_result_free(&r);
    ASSERT(r.samples == NULL);
    test_double_stop(&d);
}

TEST(net_llm_cost_accounting)
{
    START_DOUBLE(d);
    dr_llm_config c = chat_config(&d);
    c.usd_per_1k_input = 0.5;
    c.usd_per_1k_output = 1.5;
    dr_llm_result r;
    dynrag_error err;
    ASSERT_OK(dr_llm_chat(&c, chat_msgs, 2, &r, &err), &err);
    ASSERT_EQ(r.prompt_tokens, 5);
    ASSERT_EQ(r.completion_tokens, 6);
    ASSERT_NEAR(r.cost_usd, 5 * 0.5 / 1000 + 6 * 1.5 / 1000, 1e-12);
    dr_llm_result_free(&r);
    /* Estimated usage is priced the same way. */
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"nousage\"]}"), 0);
    ASSERT_OK(dr_llm_chat(&c, chat_msgs, 2, &r, &err), &err);
    ASSERT_NEAR(r.cost_usd, 6 * 0.5 / 1000 + 8 * 1.5 / 1000, 1e-12);
    dr_llm_result_free(&r);
    c.usd_per_1k_input = -1;
    ASSERT_EQ(dr_llm_chat(&c, chat_msgs, 2, &r, &err), DYNRAG_ERR_INVALID);
    test_double_stop(&d);
}

typedef struct chat_thread_arg {
    const test_double *d;
    int ok;
} chat_thread_arg;

static void *chat_thread(void *p)
{
    chat_thread_arg *a = p;
    dr_llm_config c = chat_config(a->d);
    char q[64];
    for (int i = 0; i < 5; i++) {
        snprintf(q, sizeof(q), "question %p %d", (void *)a, i);
        dr_llm_message m[1] = {{"user", q}};
        dr_llm_result r;
        dynrag_error err;
        if (dr_llm_chat(&c, m, 1, &r, &err) == DYNRAG_OK && strstr(r.text, q) != NULL)
            a->ok++;
        dr_llm_result_free(&r);
    }
    return NULL;
}

TEST(net_llm_threads)
{
    START_DOUBLE(d);
    pthread_t th[4];
    chat_thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (chat_thread_arg){.d = &d};
        ASSERT_EQ(pthread_create(&th[i], NULL, chat_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(args[i].ok, 5);
    ASSERT_EQ(test_double_count(&d, "/v1/chat/completions"), 20);
    test_double_stop(&d);
}

/* ---- embeddings -------------------------------------------------------------------- */

static dr_embedder_config embed_config(const test_double *d, int dim)
{
    dr_embedder_config c;
    memset(&c, 0, sizeof(c));
    c.kind = "openai";
    c.dim = dim;
    c.base_url = d->base_url;
    c.model = "test-embed";
    c.timeout_s = 5;
    c.max_retries = -1; /* none */
    return c;
}

static double dot(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

TEST(net_embed_success)
{
    START_DOUBLE(d);
    dr_embedder_config c = embed_config(&d, 64);
    dr_embedder *e = NULL;
    dynrag_error err;
    ASSERT_OK(dr_embedder_openai_create(&c, &e, &err), &err);
    ASSERT_EQ(e->dim, 64);
    ASSERT_STR_EQ(e->identity, "openai:test-embed:dim=64");
    const char *texts[] = {"the cat sat on the mat", "the cat sat on a mat today",
                           "quantum chromodynamics lattice", "", "   "};
    float out[5 * 64];
    ASSERT_OK(dr_embed(e, texts, 5, out, &err), &err);
    for (int i = 0; i < 3; i++)
        ASSERT_NEAR(dot(out + i * 64, out + i * 64, 64), 1.0, 1e-5);
    ASSERT_NEAR(dot(out + 3 * 64, out + 3 * 64, 64), 0.0, 0); /* empty: zero row */
    ASSERT_NEAR(dot(out + 4 * 64, out + 4 * 64, 64), 0.0, 0);
    ASSERT(dot(out, out + 64, 64) > dot(out, out + 128, 64) + 0.3);
    /* Rows follow "index", not the (reversed) order of "data". */
    float one[64];
    ASSERT_OK(dr_embed(e, texts + 2, 1, one, &err), &err);
    ASSERT_NEAR(dot(one, out + 128, 64), 1.0, 1e-5);
    ASSERT_EQ(test_double_count(&d, "/v1/embeddings"), 2);
    dr_embedder_free(e);

    /* dim 0: the dimension is probed at creation. */
    c.dim = 0;
    ASSERT_OK(dr_embedder_openai_create(&c, &e, &err), &err);
    ASSERT_EQ(e->dim, 64);
    ASSERT_STR_EQ(e->identity, "openai:test-embed:dim=64");
    dr_embedder_free(e);
    dr_embedder_free(NULL);
    test_double_stop(&d);
}

TEST(net_embed_batching)
{
    START_DOUBLE(d);
    dr_embedder_config c = embed_config(&d, 64);
    c.batch_size = 64;
    dr_embedder *e = NULL;
    dynrag_error err;
    ASSERT_OK(dr_embedder_openai_create(&c, &e, &err), &err);
    enum { N = 130 };
    char store[N][32];
    const char *texts[N];
    for (int i = 0; i < N; i++) {
        snprintf(store[i], sizeof(store[i]), "document number %d word%d", i, i);
        texts[i] = store[i];
    }
    float *out = malloc(sizeof(float) * N * 64);
    ASSERT(out != NULL);
    int rc = dr_embed(e, texts, N, out, &err);
    long count = test_double_count(&d, "/v1/embeddings");
    float single[64];
    int rc2 = dr_embed(e, texts + 129, 1, single, &err);
    double same = dot(single, out + 129 * 64, 64);
    free(out);
    dr_embedder_free(e);
    test_double_stop(&d);
    ASSERT_OK(rc, &err);
    ASSERT_OK(rc2, &err);
    ASSERT_EQ(count, 3); /* 64 + 64 + 2 */
    ASSERT_NEAR(same, 1.0, 1e-5);
}

TEST(net_embed_429_then_success)
{
    START_DOUBLE(d);
    dr_embedder_config c = embed_config(&d, 64);
    c.max_retries = 2;
    dr_embedder *e = NULL;
    dynrag_error err;
    ASSERT_OK(dr_embedder_openai_create(&c, &e, &err), &err);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"429:2\",\"ok\"]}"), 0);
    sleep_log sl = {.real = false};
    dr_http_set_sleep_fn(record_sleep, &sl);
    const char *texts[] = {"alpha beta", "gamma"};
    float out[2 * 64];
    int rc = dr_embed(e, texts, 2, out, &err);
    dr_http_set_sleep_fn(NULL, NULL);
    ASSERT_OK(rc, &err);
    ASSERT_EQ(sl.n, 1);
    ASSERT_NEAR(sl.delays[0], 2.0, 0);
    ASSERT_NEAR(dot(out, out, 64), 1.0, 1e-5);
    ASSERT_EQ(test_double_count(&d, "/v1/embeddings"), 2);
    dr_embedder_free(e);
    test_double_stop(&d);
}

TEST(net_embed_500_exhausted)
{
    START_DOUBLE(d);
    dr_embedder_config c = embed_config(&d, 64);
    c.max_retries = 2;
    dr_embedder *e = NULL;
    dynrag_error err;
    ASSERT_OK(dr_embedder_openai_create(&c, &e, &err), &err);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"500\",\"500\",\"500\",\"ok\"]}"), 0);
    sleep_log sl = {.real = false};
    dr_http_set_sleep_fn(record_sleep, &sl);
    const char *texts[] = {"alpha beta"};
    float out[64];
    int rc = dr_embed(e, texts, 1, out, &err);
    dr_http_set_sleep_fn(NULL, NULL);
    ASSERT_EQ(rc, DYNRAG_ERR_HTTP);
    ASSERT_CONTAINS(err.msg, "retries exhausted");
    ASSERT_CONTAINS(err.msg, "/v1/embeddings");
    ASSERT_CONTAINS(err.msg, "embedding texts 0..0");
    ASSERT_EQ(test_double_count(&d, "/v1/embeddings"), 3);
    dr_embedder_free(e);
    test_double_stop(&d);
}

TEST(net_embed_malformed_json)
{
    START_DOUBLE(d);
    dr_embedder_config c = embed_config(&d, 64);
    dr_embedder *e = NULL;
    dynrag_error err;
    ASSERT_OK(dr_embedder_openai_create(&c, &e, &err), &err);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"malformed\",\"truncated\"]}"), 0);
    const char *texts[] = {"alpha beta"};
    float out[64];
    ASSERT_EQ(dr_embed(e, texts, 1, out, &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(err.msg, "malformed JSON");
    ASSERT_EQ(dr_embed(e, texts, 1, out, &err), DYNRAG_ERR_HTTP);
    ASSERT_CONTAINS(err.msg, "truncated");
    dr_embedder_free(e);
    test_double_stop(&d);
}

TEST(net_embed_wrong_dimension)
{
    START_DOUBLE(d);
    dr_embedder_config c = embed_config(&d, 64);
    dr_embedder *e = NULL;
    dynrag_error err;
    ASSERT_OK(dr_embedder_openai_create(&c, &e, &err), &err);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"wrongdim\"]}"), 0);
    const char *texts[] = {"alpha beta", "gamma delta"};
    float out[2 * 64];
    ASSERT_EQ(dr_embed(e, texts, 2, out, &err), DYNRAG_ERR_MISMATCH);
    ASSERT_CONTAINS(err.msg, "63 components, expected 64");
    dr_embedder_free(e);
    /* The configured dimension must match what the server returns. */
    c.dim = 32;
    ASSERT_OK(dr_embedder_openai_create(&c, &e, &err), &err);
    float out32[2 * 32];
    ASSERT_EQ(dr_embed(e, texts, 2, out32, &err), DYNRAG_ERR_MISMATCH);
    ASSERT_CONTAINS(err.msg, "expected 32");
    dr_embedder_free(e);
    /* Inconsistent dimensions within one response, dimension probed. */
    c.dim = 0;
    ASSERT_OK(dr_embedder_openai_create(&c, &e, &err), &err);
    ASSERT_EQ(test_double_script(&d, "{\"script\":[\"wrongdim\"]}"), 0);
    ASSERT_EQ(dr_embed(e, texts, 2, out, &err), DYNRAG_ERR_MISMATCH);
    dr_embedder_free(e);
    /* Bad configuration. */
    c.batch_size = -1;
    ASSERT_EQ(dr_embedder_openai_create(&c, &e, &err), DYNRAG_ERR_INVALID);
    ASSERT(e == NULL);
    test_double_stop(&d);
}
