/*
 * generate/prompt.h - prompt templates.
 *
 * A template is text with the placeholders {question}, {context} and
 * {steps}; "{{" and "}}" stand for literal braces. Values are inserted
 * verbatim (never re-read as template text). Anything else in braces, a
 * '{' without its '}' and a lone '}' are errors.
 */
#ifndef DYNRAG_GENERATE_PROMPT_H
#define DYNRAG_GENERATE_PROMPT_H

#include "dynrag/status.h"

/*
 * Renders tmpl into *out (caller frees). NULL values render as "". Fails
 * with DYNRAG_ERR_PARSE for an unknown placeholder or unbalanced braces, the
 * message giving the byte offset (e.g. "prompt template: unknown
 * placeholder {answer} at offset 12"), DYNRAG_ERR_INVALID for NULL tmpl or
 * out, DYNRAG_ERR_NOMEM; *out is then NULL.
 */
int dr_prompt_render(const char *tmpl, const char *question, const char *context,
                     const char *steps, char **out, dynrag_error *err);

/* Validates tmpl as dr_prompt_render() would, without rendering. */
int dr_prompt_check(const char *tmpl, dynrag_error *err);

/* The built-in RAG prompt: answer only from the numbered context, cite [n],
 * reply exactly "unanswerable" when the context lacks the answer. {steps}
 * is where the multi-step engine puts its intermediate findings; it should
 * be "" or end with a blank line. */
extern const char *const dr_prompt_default_template;

#endif
