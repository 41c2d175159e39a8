/*
 * openai.c - chat.completion and chat.completion.chunk bodies.
 */
#include "server/openai.h"

#include "core/jsonb.h"

#include "core/text.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

long long dr_chat_estimate_tokens(const char *text)
{
    size_t w = dr_text_word_count(text, strlen(text));
    return (long long)((w * 4 + 2) / 3);
}

static cJSON *usage_json(dr_jb *jb, const dr_chat_reply *r)
{
    cJSON *u = cJSON_CreateObject();
    if (u == NULL)
        return NULL;
    dr_jb_num(jb, u, "prompt_tokens", (double)r->prompt_tokens);
    dr_jb_num(jb, u, "completion_tokens", (double)r->completion_tokens);
    dr_jb_num(jb, u, "total_tokens", (double)(r->prompt_tokens + r->completion_tokens));
    return u;
}

/* The fields every object shares: id, object, created, model. */
static cJSON *base(dr_jb *jb, const dr_chat_reply *r, const char *object)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    dr_jb_str(jb, o, "id", r->id);
    dr_jb_str(jb, o, "object", object);
    dr_jb_num(jb, o, "created", (double)r->created);
    dr_jb_str(jb, o, "model", r->model);
    dr_jb_null(jb, o, "system_fingerprint");
    return o;
}

char *dr_chat_completion_json(const dr_chat_reply *r)
{
    dr_jb jbs = {0}, *jb = &jbs;
    cJSON *o = base(jb, r, "chat.completion");
    if (o == NULL)
        return NULL;
    cJSON *choices = dr_jb_arr(jb, o, "choices");
    cJSON *ch = dr_jb_obj(jb, choices, NULL);
    dr_jb_num(jb, ch, "index", 0);
    cJSON *msg = dr_jb_obj(jb, ch, "message");
    dr_jb_str(jb, msg, "role", "assistant");
    dr_jb_str(jb, msg, "content", r->content);
    dr_jb_null(jb, msg, "refusal");
    dr_jb_null(jb, ch, "logprobs");
    dr_jb_str(jb, ch, "finish_reason", "stop");
    dr_jb_add(jb, o, "usage", usage_json(jb, r));
    if (r->extra)
        dr_jb_copy(jb, o, "dynrag", r->extra);
    char *s = jb->nomem ? NULL : cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* Appends "data: <chunk>\n\n" for a chunk with the given delta fields. */
static int add_chunk(dr_buf *b, const dr_chat_reply *r, const char *role, const char *content,
                     size_t content_len, bool final)
{
    dr_jb jbs = {0}, *jb = &jbs;
    cJSON *o = base(jb, r, "chat.completion.chunk");
    if (o == NULL)
        return DYNRAG_ERR_NOMEM;
    cJSON *choices = dr_jb_arr(jb, o, "choices");
    cJSON *ch = dr_jb_obj(jb, choices, NULL);
    dr_jb_num(jb, ch, "index", 0);
    cJSON *delta = dr_jb_obj(jb, ch, "delta");
    if (role)
        dr_jb_str(jb, delta, "role", role);
    if (content) {
        char *c = dr_strndup(content, content_len);
        if (c)
            dr_jb_str(jb, delta, "content", c);
        else
            jb->nomem = true;
        dr_free(c);
    }
    dr_jb_null(jb, ch, "logprobs");
    if (final)
        dr_jb_str(jb, ch, "finish_reason", "stop");
    else
        dr_jb_null(jb, ch, "finish_reason");
    if (final && r->extra)
        dr_jb_copy(jb, o, "dynrag", r->extra);
    char *s = jb->nomem ? NULL : cJSON_PrintUnformatted(o);
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
        dr_jb jbs = {0}, *jb = &jbs;
        cJSON *o = base(jb, r, "chat.completion.chunk");
        char *s = NULL;
        if (o) {
            dr_jb_arr(jb, o, "choices");
            dr_jb_add(jb, o, "usage", usage_json(jb, r));
            s = jb->nomem ? NULL : cJSON_PrintUnformatted(o);
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
