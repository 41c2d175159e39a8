/*
 * yaml.c - YAML text to a small tree with positions, through libyaml's
 * event API (so that aliases are seen and refused, and nesting is capped
 * before anything deep is built).
 *
 * Refused with a diagnostic: bytes that are not UTF-8 (with the byte
 * offset, line and column), NUL bytes, syntax errors (libyaml's message and
 * position; a tab in indentation is named as such), more than one document,
 * aliases (*x) and anchors (&x), tags other than !!str, nesting deeper than
 * DR_YAML_MAX_DEPTH and more than DR_YAML_MAX_NODES nodes.
 */
#include "pipeline/internal.h"
#include "core/alloc.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

void dr_ynode_free(dr_ynode *n)
{
    if (n == NULL)
        return;
    /* Iterative over the kids array would need a stack; depth is capped at
     * DR_YAML_MAX_DEPTH, so recursion is bounded. */
    for (size_t i = 0; i < n->n; i++)
        dr_ynode_free(n->kids[i]);
    dr_free(n->kids);
    if (n->value != n->raw)
        dr_free(n->value);
    dr_free(n->raw);
    dr_free(n);
}

static int ynode_push(dr_ynode *parent, dr_ynode *kid)
{
    if (parent->n == parent->cap) {
        size_t ncap = parent->cap ? parent->cap * 2 : 4;
        dr_ynode **nk = dr_realloc(parent->kids, ncap * sizeof(*nk));
        if (nk == NULL)
            return DYNRAG_ERR_NOMEM;
        parent->kids = nk;
        parent->cap = ncap;
    }
    parent->kids[parent->n++] = kid;
    return DYNRAG_OK;
}

/* 1-based line and column (in characters) of byte offset `off`. */
static void offset_to_pos(const char *text, size_t len, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* If line `line` (1-based) has a tab before its first non-blank character,
 * sets *col to the tab's column and returns true. */
static bool line_has_indent_tab(const char *text, size_t len, int line, int *col)
{
    size_t i = 0;
    for (int l = 1; l < line && i < len; i++)
        if (text[i] == '\n')
            l++;
    for (int c = 1; i < len && (text[i] == ' ' || text[i] == '\t'); i++, c++) {
        if (text[i] == '\t') {
            *col = c;
            return true;
        }
    }
    return false;
}

static void report_syntax_error(const yaml_parser_t *ps, const char *text, size_t len,
                                dynrag_diags *d)
{
    int line = (int)ps->problem_mark.line + 1, col = (int)ps->problem_mark.column + 1;
    if (ps->error == YAML_READER_ERROR)
        offset_to_pos(text, len, ps->problem_offset, &line, &col);
    int tab_col = 0;
    if (line_has_indent_tab(text, len, line, &tab_col)) {
        dr_diags_add(d, line, tab_col, "", "tab character in indentation (YAML indents with "
                                           "spaces only)");
        return;
    }
    if (line > 1 && line_has_indent_tab(text, len, line - 1, &tab_col)) {
        dr_diags_add(d, line - 1, tab_col, "", "tab character in indentation (YAML indents "
                                               "with spaces only)");
        return;
    }
    const char *problem = ps->problem ? ps->problem : "unknown error";
    if (ps->context != NULL)
        dr_diags_add(d, line, col, "", "YAML syntax error: %s (%s at line %d, column %d)",
                     problem, ps->context, (int)ps->context_mark.line + 1,
                     (int)ps->context_mark.column + 1);
    else
        dr_diags_add(d, line, col, "", "YAML syntax error: %s", problem);
}

/* Checks anchor and tag of a node event; sets *force_str for !!str. */
static void check_props(const yaml_char_t *anchor, const yaml_char_t *tag, int line, int col,
                        dynrag_diags *d, bool *force_str)
{
    if (anchor != NULL)
        dr_diags_add(d, line, col, "", "YAML anchors (&%.40s) are not supported",
                     (const char *)anchor);
    if (tag != NULL) {
        if (strcmp((const char *)tag, YAML_STR_TAG) == 0 && force_str != NULL)
            *force_str = true;
        else
            dr_diags_add(d, line, col, "", "YAML tags (%.60s) are not supported",
                         (const char *)tag);
    }
}

/*
 * Parses one document into a tree. Pre-checks the bytes (UTF-8, NUL), then
 * walks libyaml's events, keeping a stack of open containers. Returns
 * DYNRAG_OK with *root (NULL for an empty stream), DYNRAG_ERR_PARSE after
 * reporting why, or DYNRAG_ERR_NOMEM. The tree is freed on failure.
 */
int dr_yaml_parse(const char *text, size_t len, dynrag_diags *d, dr_ynode **root)
{
    *root = NULL;
    size_t bad = 0;
    if (!dr_utf8_valid(text, len, &bad)) {
        int line, col;
        offset_to_pos(text, len, bad, &line, &col);
        dr_diags_add(d, line, col, "", "invalid UTF-8 at byte %zu (line %d, column %d): "
                     "pipeline files must be UTF-8", bad, line, col);
        return DYNRAG_ERR_PARSE;
    }
    const char *nul = memchr(text, '\0', len);
    if (nul != NULL) {
        int line, col;
        offset_to_pos(text, len, (size_t)(nul - text), &line, &col);
        dr_diags_add(d, line, col, "", "NUL byte at byte %zu", (size_t)(nul - text));
        return DYNRAG_ERR_PARSE;
    }

    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps))
        return DYNRAG_ERR_NOMEM;
    /* A UTF-8 byte-order mark (editors on Windows write one) is allowed
     * by YAML; with the encoding set, libyaml would read it as content. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        len -= 3;
    }
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    yaml_parser_set_encoding(&ps, YAML_UTF8_ENCODING);

    dr_ynode *stack[DR_YAML_MAX_DEPTH + 1];
    size_t depth = 0, nodes = 0;
    int docs = 0;
    int rc = DYNRAG_OK;
    bool done = false;
    dr_ynode *top = NULL;
    while (!done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&ps, &ev)) {
            if (ps.error == YAML_MEMORY_ERROR) {
                rc = DYNRAG_ERR_NOMEM;
            } else {
                report_syntax_error(&ps, text, len, d);
                rc = DYNRAG_ERR_PARSE;
            }
            break;
        }
        int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
        yaml_event_type_t et = ev.type; /* yaml_event_delete() zeroes ev */
        dr_ynode *node = NULL;
        bool container = false;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                dr_diags_add(d, line, col, "", "more than one YAML document: a pipeline file "
                                               "holds exactly one");
                rc = DYNRAG_ERR_PARSE;
                done = true;
            }
            break;
        case YAML_ALIAS_EVENT:
            dr_diags_add(d, line, col, "", "YAML aliases (*%.40s) are not supported",
                         (const char *)ev.data.alias.anchor);
            rc = DYNRAG_ERR_PARSE;
            /* A null stand-in keeps the mapping's key/value pairing. */
            node = dr_calloc(1, sizeof(*node));
            if (node != NULL) {
                node->raw = dr_strdup("");
                node->plain = true;
            }
            break;
        case YAML_SCALAR_EVENT: {
            node = dr_calloc(1, sizeof(*node));
            if (node == NULL)
                break;
            node->type = DR_YN_SCALAR;
            check_props(ev.data.scalar.anchor, ev.data.scalar.tag, line, col, d,
                        &node->force_str);
            node->raw = dr_strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
            node->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            if (node->raw != NULL && strlen(node->raw) != ev.data.scalar.length)
                dr_diags_add(d, line, col, "", "string contains a NUL character");
            else if (node->raw != NULL && !dr_utf8_valid(node->raw, strlen(node->raw), NULL))
                dr_diags_add(d, line, col, "", "string is not valid UTF-8 after escapes");
            break;
        }
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            node = dr_calloc(1, sizeof(*node));
            if (node == NULL)
                break;
            container = true;
            if (ev.type == YAML_SEQUENCE_START_EVENT) {
                node->type = DR_YN_SEQ;
                check_props(ev.data.sequence_start.anchor, ev.data.sequence_start.tag, line,
                            col, d, NULL);
            } else {
                node->type = DR_YN_MAP;
                check_props(ev.data.mapping_start.anchor, ev.data.mapping_start.tag, line,
                            col, d, NULL);
            }
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0)
                depth--;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
        if (rc == DYNRAG_ERR_NOMEM)
            break;
        /* By event type, not `container`: a collection whose node could not
         * be allocated is still a node (and fails below as NOMEM). */
        bool is_node = et == YAML_SCALAR_EVENT || et == YAML_ALIAS_EVENT ||
                       et == YAML_SEQUENCE_START_EVENT || et == YAML_MAPPING_START_EVENT;
        if (!is_node)
            continue;
        if (node == NULL || (node->type == DR_YN_SCALAR && node->raw == NULL)) {
            dr_ynode_free(node);
            rc = DYNRAG_ERR_NOMEM;
            break;
        }
        node->line = line;
        node->col = col;
        if (++nodes > DR_YAML_MAX_NODES) {
            dr_ynode_free(node);
            dr_diags_add(d, line, col, "", "too many YAML nodes (limit %d)", DR_YAML_MAX_NODES);
            rc = DYNRAG_ERR_PARSE;
            break;
        }
        if (depth == 0) {
            if (top != NULL) { /* cannot happen with one document; be safe */
                dr_ynode_free(node);
                continue;
            }
            top = node;
        } else if (ynode_push(stack[depth - 1], node) != DYNRAG_OK) {
            dr_ynode_free(node);
            rc = DYNRAG_ERR_NOMEM;
            break;
        }
        if (container) {
            if (depth >= DR_YAML_MAX_DEPTH) {
                dr_diags_add(d, line, col, "", "nesting deeper than %d levels",
                             DR_YAML_MAX_DEPTH);
                rc = DYNRAG_ERR_PARSE;
                break;
            }
            stack[depth++] = node;
        }
    }
    yaml_parser_delete(&ps);
    if (rc != DYNRAG_OK) {
        dr_ynode_free(top);
        return rc;
    }
    *root = top;
    return DYNRAG_OK;
}

/* ---- scalar typing -------------------------------------------------------- */

bool dr_ynode_is_null(const dr_ynode *n)
{
    if (n == NULL)
        return true;
    if (n->type != DR_YN_SCALAR || !n->plain || n->force_str)
        return false;
    const char *s = n->raw;
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static bool typed_scalar(const dr_ynode *n)
{
    return n != NULL && n->type == DR_YN_SCALAR && n->plain && !n->force_str && n->value;
}

/* [-+]?digits */
static bool looks_int(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* [-+]?(digits[.digits*]|.digits)([eE][-+]?digits)? */
static bool looks_num(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    size_t digits = 0;
    while (*s >= '0' && *s <= '9') {
        s++;
        digits++;
    }
    if (*s == '.') {
        s++;
        while (*s >= '0' && *s <= '9') {
            s++;
            digits++;
        }
    }
    if (digits == 0)
        return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+')
            s++;
        if (!(*s >= '0' && *s <= '9'))
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

bool dr_ynode_int(const dr_ynode *n, long long *out)
{
    if (!typed_scalar(n) || !looks_int(n->value))
        return false;
    return dr_parse_ll(n->value, -9223372036854775807LL - 1, 9223372036854775807LL, out) ==
           DYNRAG_OK;
}

bool dr_ynode_num(const dr_ynode *n, double *out)
{
    if (!typed_scalar(n) || !looks_num(n->value))
        return false;
    return dr_parse_double(n->value, -DBL_MAX, DBL_MAX, out) == DYNRAG_OK;
}

bool dr_ynode_bool(const dr_ynode *n, bool *out)
{
    if (!typed_scalar(n))
        return false;
    const char *s = n->value;
    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0) {
        *out = false;
        return true;
    }
    return false;
}

const char *dr_ynode_describe(const dr_ynode *n, char *buf, size_t size)
{
    long long i;
    double x;
    bool b;
    if (n == NULL || dr_ynode_is_null(n))
        snprintf(buf, size, "null");
    else if (n->type == DR_YN_MAP)
        snprintf(buf, size, "a mapping");
    else if (n->type == DR_YN_SEQ)
        snprintf(buf, size, "a list");
    else if (dr_ynode_bool(n, &b))
        snprintf(buf, size, "boolean %s", b ? "true" : "false");
    else if (dr_ynode_int(n, &i))
        snprintf(buf, size, "integer %lld", i);
    else if (dr_ynode_num(n, &x))
        snprintf(buf, size, "number %.40s", n->value);
    else {
        const char *v = n->value ? n->value : n->raw;
        snprintf(buf, size, "string '%.40s%s'", v, strlen(v) > 40 ? "..." : "");
    }
    return buf;
}

const dr_ynode *dr_ymap_get(const dr_ynode *map, const char *key)
{
    if (map == NULL || map->type != DR_YN_MAP)
        return NULL;
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const dr_ynode *k = map->kids[i];
        if (k->type == DR_YN_SCALAR && strcmp(k->raw, key) == 0)
            return map->kids[i + 1];
    }
    return NULL;
}
