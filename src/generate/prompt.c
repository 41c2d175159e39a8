/* prompt.c - template rendering with {question}, {context}, {steps}. */
#include "generate/prompt.h"

#include "core/util.h"

#include <string.h>

#define PLACEHOLDER_MAX 32 /* longest text between braces reported verbatim */

const char *const dr_prompt_default_template =
    "Answer the question using only the numbered context passages below.\n"
    "- Cite each passage you use by its number in square brackets, e.g. [1] or [2][3].\n"
    "- Be brief: give the answer first, then at most two sentences of support.\n"
    "- If the passages do not contain the answer, reply with exactly: unanswerable\n"
    "\n"
    "Context:\n"
    "{context}\n"
    "\n"
    "{steps}"
    "Question: {question}\n"
    "Answer:";

/* Renders (out non-NULL) or only checks (out NULL) tmpl. */
static int render(const char *tmpl, const char *const values[3], dr_buf *out,
                  dynrag_error *err)
{
    static const char *const names[3] = {"question", "context", "steps"};
    size_t i = 0, lit = 0; /* literal text pending from `lit` */
    int rc = DYNRAG_OK;
#define FLUSH(upto)                                                          \
    do {                                                                     \
        if (out != NULL && rc == DYNRAG_OK && (upto) > lit)                  \
            rc = dr_buf_append(out, tmpl + lit, (upto) - lit);               \
    } while (0)
    while (tmpl[i] != '\0' && rc == DYNRAG_OK) {
        char c = tmpl[i];
        if (c == '}') {
            if (tmpl[i + 1] != '}')
                return dr_err_set(err, DYNRAG_ERR_PARSE,
                                  "prompt template: unbalanced '}' at offset %zu (write }} for "
                                  "a literal brace)",
                                  i);
            FLUSH(i + 1); /* keep one brace */
            i += 2;
            lit = i;
            continue;
        }
        if (c != '{') {
            i++;
            continue;
        }
        if (tmpl[i + 1] == '{') {
            FLUSH(i + 1);
            i += 2;
            lit = i;
            continue;
        }
        size_t j = i + 1;
        while (tmpl[j] != '\0' && tmpl[j] != '}' && tmpl[j] != '{' && tmpl[j] != '\n')
            j++;
        if (tmpl[j] != '}')
            return dr_err_set(err, DYNRAG_ERR_PARSE,
                              "prompt template: unbalanced '{' at offset %zu (write {{ for a "
                              "literal brace)",
                              i);
        size_t len = j - i - 1;
        int which = -1;
        for (int k = 0; k < 3; k++)
            if (strlen(names[k]) == len && memcmp(names[k], tmpl + i + 1, len) == 0)
                which = k;
        if (which < 0)
            return dr_err_set(err, DYNRAG_ERR_PARSE,
                              "prompt template: unknown placeholder {%.*s%s} at offset %zu "
                              "(known: {question}, {context}, {steps})",
                              (int)DR_MIN(len, (size_t)PLACEHOLDER_MAX), tmpl + i + 1,
                              len > PLACEHOLDER_MAX ? "..." : "", i);
        FLUSH(i);
        if (out != NULL && rc == DYNRAG_OK && values[which] != NULL)
            rc = dr_buf_puts(out, values[which]);
        i = j + 1;
        lit = i;
    }
    FLUSH(i);
#undef FLUSH
    if (rc != DYNRAG_OK)
        return dr_err_set(err, rc, "prompt: %s", dynrag_strerror(rc));
    return DYNRAG_OK;
}

int dr_prompt_render(const char *tmpl, const char *question, const char *context,
                     const char *steps, char **out, dynrag_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (tmpl == NULL || out == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "prompt: no template or output given");
    const char *values[3] = {question, context, steps};
    dr_buf b = {0};
    int rc = render(tmpl, values, &b, err);
    if (rc == DYNRAG_OK) {
        *out = dr_buf_take(&b);
        if (*out == NULL)
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "prompt: out of memory");
    }
    dr_buf_free(&b);
    return rc;
}

int dr_prompt_check(const char *tmpl, dynrag_error *err)
{
    if (tmpl == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "prompt: no template given");
    const char *values[3] = {NULL, NULL, NULL};
    return render(tmpl, values, NULL, err);
}
