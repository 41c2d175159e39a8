/*
 * generate/llm.h - the OpenAI-compatible chat completions client (internal).
 *
 * dr_llm_chat() POSTs {base_url}/chat/completions on any OpenAI-compatible
 * server (OpenAI, vLLM, llama.cpp server, Ollama) through net/http.h, so it
 * shares its timeout, retry and backoff policy: 408/429/5xx, timeouts and
 * connection failures are retried up to max_retries times (Retry-After
 * honoured), other 4xx fail at once with the server's message. Each retry is
 * logged with dr_log(WARN, "llm", ...). Safe to call from many threads.
 */
#ifndef DYNRAG_GENERATE_LLM_H
#define DYNRAG_GENERATE_LLM_H

#include "dynrag/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dr_llm_config {
    const char *base_url;   /* e.g. "http://127.0.0.1:8000/v1"; "/chat/completions" is appended */
    const char *model;
    const char *api_key;    /* may be NULL */
    double timeout_s;       /* per attempt; 0 = 60 */
    int max_retries;        /* 0 = none */
    double temperature;
    int max_tokens;
    bool logprobs;          /* ask for logprobs */
    int top_logprobs;       /* 0..20 */
    int n;                  /* samples; 0 or 1 = one */
    double usd_per_1k_input, usd_per_1k_output;
    int64_t deadline_us;    /* absolute dr_now_us() deadline passed to the HTTP client (0 = none) */
} dr_llm_config;

typedef struct dr_llm_message {
    const char *role;
    const char *content;
} dr_llm_message;

typedef struct dr_llm_result {
    char *text;             /* first choice's message content */
    char *finish_reason;    /* may be NULL */
    int prompt_tokens, completion_tokens;  /* from usage; estimated (chars/4) and flagged when absent */
    bool usage_estimated;
    double cost_usd;        /* from tokens and the config's prices */
    double latency_ms;      /* wall time including retries */
    int attempts;
    double first_token_margin; /* logprob(top1) - logprob(top2) of the first generated token; NAN if n/a */
    double mean_logprob;    /* mean token logprob of choice 0; NAN if n/a */
    char **samples;         /* all choices' texts when n > 1 (n_samples of them), else NULL */
    size_t n_samples;
} dr_llm_result;

/*
 * Sends the conversation msgs[0..n_msgs) to the configured model and fills
 * *out (caller frees its members with dr_llm_result_free()). *out is reset
 * first. On failure *out holds no allocations, but attempts and latency_ms
 * still tell what the call cost. Fails with DYNRAG_ERR_INVALID (bad config
 * or messages), DYNRAG_ERR_HTTP (non-2xx after retries, connection failure,
 * truncated body), DYNRAG_ERR_TIMEOUT, DYNRAG_ERR_LIMIT (response over
 * 32 MiB) or DYNRAG_ERR_PARSE (malformed JSON, missing choices or content,
 * wrong types); messages name the endpoint URL and the HTTP status.
 *
 * Token usage comes from the response's "usage"; when a server omits it,
 * tokens are estimated as ceil(chars / 4) and usage_estimated is set.
 * cost_usd = prompt_tokens / 1000 * usd_per_1k_input
 *          + completion_tokens / 1000 * usd_per_1k_output.
 * With cfg->logprobs, mean_logprob and first_token_margin come from
 * choices[0].logprobs.content (NAN when the server sends none, or, for the
 * margin, fewer than two top_logprobs).
 */
int dr_llm_chat(const dr_llm_config *cfg, const dr_llm_message *msgs, size_t n_msgs,
                dr_llm_result *out, dynrag_error *err);

/* Frees the members of *r and resets it (counts 0, logprob fields NAN);
 * accepts NULL. */
void dr_llm_result_free(dr_llm_result *r);

#endif
