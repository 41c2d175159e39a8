/*
 * openai.c - chat.completion and chat.completion.chunk bodies.
 */
#include "server/openai.h"

#include "core/text.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

long long dr_chat_estimate_tokens(const char *text)
{
    size_t w = dr_text_word_count(text, strlen(text));
    return (long long)((w * 4 + 2) / 3);
}

static cJSON *usage_json(const dr_chat_reply *r)
{
    cJSON *u = cJSON_CreateObject();
    if (u == NULL)
        return NULL;
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)r->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)r->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(r->prompt_tokens + r->completion_tokens));
    return u;
}

/* The fields every object shares: id, object, created, model. */
static cJSON *base(const dr_chat_reply *r, const char *object)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)r->created);
    cJSON_AddStringToObject(o, "model", r->model);
    cJSON_AddNullToObject(o, "system_fingerprint");
    return o;
}

char *dr_chat_completion_json(const dr_chat_reply *r)
{
    cJSON *o = base(r, "chat.completion");
    if (o == NULL)
        return NULL;
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddNumberToObject(ch, "index", 0);
    cJSON *msg = cJSON_AddObjectToObject(ch, "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddStringToObject(msg, "content", r->content);
    cJSON_AddNullToObject(msg, "refusal");
    cJSON_AddNullToObject(ch, "logprobs");
    cJSON_AddStringToObject(ch, "finish_reason", "stop");
    cJSON_AddItemToObject(o, "usage", usage_json(r));
    if (r->extra)
        cJSON_AddItemToObject(o, "dynrag", cJSON_Duplicate(r->extra, 1));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* Appends "data: <chunk>\n\n" for a chunk with the given delta fields. */
static int add_chunk(dr_buf *b, const dr_chat_reply *r, const char *role, const char *content,
                     size_t content_len, bool final)
{
    cJSON *o = base(r, "chat.completion.chunk");
    if (o == NULL)
        return DYNRAG_ERR_NOMEM;
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddNumberToObject(ch, "index", 0);
    cJSON *delta = cJSON_AddObjectToObject(ch, "delta");
    if (role)
        cJSON_AddStringToObject(delta, "role", role);
    if (content) {
        char *c = dr_strndup(content, content_len);
        if (c)
            cJSON_AddStringToObject(delta, "content", c);
        dr_free(c);
    }
    cJSON_AddNullToObject(ch, "logprobs");
    if (final)
        cJSON_AddStringToObject(ch, "finish_reason", "stop");
    else
        cJSON_AddNullToObject(ch, "finish_reason");
    if (final && r->extra)
        cJSON_AddItemToObject(o, "dynrag", cJSON_Duplicate(r->extra, 1));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    int rc = s ? dr_buf_printf(b, "data: %s\n\n", s) : DYNRAG_ERR_NOMEM;
    dr_free(s);
    return rc;
}

char *dr_chat_sse(const dr_chat_reply *r, bool include_usage)
{
    dr_buf b = {0};
    int rc = add_chunk(&b, r, "assistant", "", 0, false);
    /* One chunk per word, each with the white space that follows it. */
    const char *p = r->content;
    while (rc == DYNRAG_OK && *p) {
        const char *q = p;
        while (*q == ' ' || *q == '\n' || *q == '\t')
            q++;
        while (*q && *q != ' ' && *q != '\n' && *q != '\t')
            q++;
        while (*q == ' ' || *q == '\n' || *q == '\t')
            q++;
        rc = add_chunk(&b, r, NULL, p, (size_t)(q - p), false);
        p = q;
    }
    if (rc == DYNRAG_OK)
        rc = add_chunk(&b, r, NULL, NULL, 0, true);
    if (rc == DYNRAG_OK && include_usage) {
        cJSON *o = base(r, "chat.completion.chunk");
        char *s = NULL;
        if (o) {
            cJSON_AddArrayToObject(o, "choices");
            cJSON_AddItemToObject(o, "usage", usage_json(r));
            s = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
        }
        rc = s ? dr_buf_printf(&b, "data: %s\n\n", s) : DYNRAG_ERR_NOMEM;
        dr_free(s);
    }
    if (rc == DYNRAG_OK)
        rc = dr_buf_puts(&b, "data: [DONE]\n\n");
    if (rc != DYNRAG_OK) {
        dr_buf_free(&b);
        return NULL;
    }
    return dr_buf_take(&b);
}
