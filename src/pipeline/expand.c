/* expand.c - ${VAR}, ${VAR:-default} and $$ in pipeline scalar values. */
#include "pipeline/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool var_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool var_char(char c)
{
    return var_start(c) || (c >= '0' && c <= '9');
}

/*
 * Expands s: "$$" is one '$'; "${NAME}" is the environment variable NAME
 * (an error when it is not set); "${NAME:-text}" is NAME's value when set
 * and non-empty, else text (which is not expanded further and cannot hold
 * '}'); any other '$' is kept as it is. NAME is [A-Za-z_][A-Za-z0-9_]*.
 * Returns a new string (caller frees) or NULL with the reason in msg.
 */
char *dr_env_expand(const char *s, char *msg, size_t msg_size)
{
    dr_buf b = {0};
    b.cap_limit = DR_PIPELINE_MAX_BYTES * 2;
    int rc = DYNRAG_OK;
    const char *p = s;
    while (*p && rc == DYNRAG_OK) {
        if (p[0] != '$') {
            const char *q = strchr(p, '$');
            size_t n = q ? (size_t)(q - p) : strlen(p);
            rc = dr_buf_append(&b, p, n);
            p += n;
            continue;
        }
        if (p[1] == '$') {
            rc = dr_buf_putc(&b, '$');
            p += 2;
            continue;
        }
        if (p[1] != '{') {
            rc = dr_buf_putc(&b, '$');
            p++;
            continue;
        }
        const char *name = p + 2;
        const char *e = name;
        if (!var_start(*e)) {
            snprintf(msg, msg_size,
                     "malformed '${': expected a variable name after '${' (write $$ for a "
                     "literal '$')");
            goto fail;
        }
        while (var_char(*e))
            e++;
        size_t name_len = (size_t)(e - name);
        char var[128];
        if (name_len >= sizeof(var)) {
            snprintf(msg, msg_size, "malformed '${': variable name longer than %zu characters",
                     sizeof(var) - 1);
            goto fail;
        }
        memcpy(var, name, name_len);
        var[name_len] = '\0';
        const char *dflt = NULL;
        size_t dflt_len = 0;
        if (e[0] == ':' && e[1] == '-') {
            dflt = e + 2;
            const char *close = strchr(dflt, '}');
            if (close == NULL) {
                snprintf(msg, msg_size, "malformed '${%s:-': missing '}'", var);
                goto fail;
            }
            dflt_len = (size_t)(close - dflt);
            e = close;
        }
        if (*e != '}') {
            snprintf(msg, msg_size,
                     "malformed '${%s': expected '}' or ':-default}' after the variable name",
                     var);
            goto fail;
        }
        const char *val = getenv(var);
        if (dflt != NULL && (val == NULL || val[0] == '\0'))
            rc = dr_buf_append(&b, dflt, dflt_len);
        else if (val == NULL) {
            snprintf(msg, msg_size,
                     "undefined environment variable '%s' (set it, or write ${%s:-default})",
                     var, var);
            goto fail;
        } else
            rc = dr_buf_puts(&b, val);
        p = e + 1;
    }
    if (rc != DYNRAG_OK) {
        snprintf(msg, msg_size, rc == DYNRAG_ERR_LIMIT ? "value too long after expansion"
                                                       : "out of memory");
        goto fail;
    }
    char *out = dr_buf_take(&b);
    if (out == NULL)
        snprintf(msg, msg_size, "out of memory");
    return out;
fail:
    dr_buf_free(&b);
    return NULL;
}
