/*
 * server/openai.h - OpenAI chat.completion response bodies (internal).
 *
 * Pure formatting: the JSON object of a non-streamed completion, and the
 * server-sent-event stream of chat.completion.chunk objects of a streamed
 * one (https://platform.openai.com/docs/api-reference/chat/streaming).
 */
#ifndef DYNRAG_SERVER_OPENAI_H
#define DYNRAG_SERVER_OPENAI_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct dr_chat_reply {
    const char *id;  /* "chatcmpl-..." */
    int64_t created; /* Unix seconds */
    const char *model;
    const char *content; /* the answer */
    long long prompt_tokens, completion_tokens;
    const cJSON *extra; /* added as "dynrag" (citations, route, ...); may be NULL */
} dr_chat_reply;

/* The chat.completion object as compact JSON. Caller frees; NULL when out
 * of memory. */
char *dr_chat_completion_json(const dr_chat_reply *r);

/*
 * The event stream: a first chunk with the assistant role, one chunk per
 * word of content (each "data: {...}\n\n"), a final chunk with an empty
 * delta and finish_reason "stop" (carrying "dynrag" extras), then, when
 * include_usage, a chunk with empty choices and the usage, then
 * "data: [DONE]\n\n". Caller frees; NULL when out of memory.
 */
char *dr_chat_sse(const dr_chat_reply *r, bool include_usage);

/* Rough token count for usage when no LLM reported one: ceil(words * 4 / 3). */
long long dr_chat_estimate_tokens(const char *text);

#endif
