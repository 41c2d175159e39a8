/* html.c - tolerant HTML to text conversion. */
#include "retrieve/html.h"

#include "core/util.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    uint32_t cp;
} entities[] = {
    {"amp", '&'},      {"lt", '<'},        {"gt", '>'},        {"quot", '"'},
    {"apos", '\''},    {"nbsp", 0xA0},     {"copy", 0xA9},     {"reg", 0xAE},
    {"trade", 0x2122}, {"mdash", 0x2014},  {"ndash", 0x2013},  {"hellip", 0x2026},
    {"lsquo", 0x2018}, {"rsquo", 0x2019},  {"ldquo", 0x201C},  {"rdquo", 0x201D},
    {"laquo", 0xAB},   {"raquo", 0xBB},    {"middot", 0xB7},   {"bull", 0x2022},
    {"deg", 0xB0},     {"plusmn", 0xB1},   {"times", 0xD7},    {"divide", 0xF7},
    {"euro", 0x20AC},  {"pound", 0xA3},    {"yen", 0xA5},      {"cent", 0xA2},
    {"sect", 0xA7},    {"para", 0xB6},     {"micro", 0xB5},    {"shy", 0xAD},
    {"eacute", 0xE9},  {"egrave", 0xE8},   {"ecirc", 0xEA},    {"euml", 0xEB},
    {"aacute", 0xE1},  {"agrave", 0xE0},   {"acirc", 0xE2},    {"auml", 0xE4},
    {"aring", 0xE5},   {"ccedil", 0xE7},   {"iacute", 0xED},   {"iuml", 0xEF},
    {"oacute", 0xF3},  {"ocirc", 0xF4},    {"ouml", 0xF6},     {"uacute", 0xFA},
    {"uuml", 0xFC},    {"ntilde", 0xF1},   {"szlig", 0xDF},    {"Eacute", 0xC9},
    {"Auml", 0xC4},    {"Ouml", 0xD6},     {"Uuml", 0xDC},     {"alpha", 0x3B1},
    {"beta", 0x3B2},   {"gamma", 0x3B3},   {"delta", 0x3B4},   {"mu", 0x3BC},
    {"pi", 0x3C0},     {"sigma", 0x3C3},   {"larr", 0x2190},   {"rarr", 0x2192},
    {"le", 0x2264},    {"ge", 0x2265},     {"ne", 0x2260},     {"ensp", 0x2002},
    {"emsp", 0x2003},  {"thinsp", 0x2009}, {"zwj", 0x200D},    {"zwnj", 0x200C},
};

size_t dr_html_entity(const char *s, size_t n, char *out, size_t *out_len)
{
    if (n < 3 || s[0] != '&')
        return 0;
    size_t end = 1;
    while (end < n && end < 34 && s[end] != ';' && (isalnum((unsigned char)s[end]) || s[end] == '#'))
        end++;
    if (end >= n || s[end] != ';' || end == 1)
        return 0;
    uint32_t cp = 0;
    if (s[1] == '#') {
        bool hex = end > 2 && (s[2] == 'x' || s[2] == 'X');
        size_t i = hex ? 3 : 2;
        if (i >= end)
            return 0;
        for (; i < end; i++) {
            int c = (unsigned char)s[i];
            int d;
            if (isdigit(c))
                d = c - '0';
            else if (hex && isxdigit(c))
                d = tolower(c) - 'a' + 10;
            else
                return 0;
            cp = cp * (hex ? 16u : 10u) + (uint32_t)d;
            if (cp > 0x10FFFF)
                return 0;
        }
        if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
            cp = 0xFFFD;
    } else {
        size_t len = end - 1;
        size_t i;
        for (i = 0; i < DR_ARRAY_LEN(entities); i++)
            if (strlen(entities[i].name) == len && memcmp(entities[i].name, s + 1, len) == 0)
                break;
        if (i == DR_ARRAY_LEN(entities))
            return 0;
        cp = entities[i].cp;
    }
    *out_len = dr_utf8_encode(cp, out);
    return end + 1;
}

/* Output with white-space collapsing: pending space and pending newlines are
 * only written before the next visible character. */
typedef struct out_text {
    dr_buf b;
    int pending_nl; /* 0, 1 or 2 (blank line) */
    bool pending_sp;
} out_text;

static int out_char_bytes(out_text *o, const char *p, size_t n)
{
    int rc = DYNRAG_OK;
    if (o->b.len > 0) {
        if (o->pending_nl)
            rc = dr_buf_append(&o->b, "\n\n", (size_t)o->pending_nl);
        else if (o->pending_sp)
            rc = dr_buf_putc(&o->b, ' ');
    }
    o->pending_nl = 0;
    o->pending_sp = false;
    if (rc == DYNRAG_OK)
        rc = dr_buf_append(&o->b, p, n);
    return rc;
}

static bool is_space_c(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static const char *const block_tags[] = {
    "address", "article", "aside", "blockquote", "br", "caption", "dd", "details", "div",
    "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
    "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary",
    "table", "td", "th", "tr", "ul", "title", "body", "html", "head",
};

static bool is_block(const char *name)
{
    for (size_t i = 0; i < DR_ARRAY_LEN(block_tags); i++)
        if (strcmp(name, block_tags[i]) == 0)
            return true;
    return false;
}

static bool is_heading(const char *name)
{
    return name[0] == 'h' && name[1] >= '1' && name[1] <= '6' && name[2] == '\0';
}

/* Finds the case-insensitive closing tag "</name" from position i; returns
 * the index after its '>' (or n when absent). */
static size_t skip_raw_element(const char *s, size_t n, size_t i, const char *name)
{
    size_t len = strlen(name);
    for (; i + 2 + len <= n; i++) {
        if (s[i] == '<' && s[i + 1] == '/' && strncasecmp(s + i + 2, name, len) == 0) {
            const char *gt = memchr(s + i, '>', n - i);
            return gt ? (size_t)(gt - s) + 1 : n;
        }
    }
    return n;
}

/* ---- navigation boilerplate ------------------------------------------------
 * Site chrome (menus, navigation bars, tables of contents, banners, footers)
 * is the same on every page of a site: indexed, it fills chunks with words
 * like "Home About Download Search" and wins retrieval for nothing. Dropped:
 * - <nav> and <footer> elements, and <header> outside <article>/<main>;
 * - container elements (div, section, aside, ul, ol, table, span, form,
 *   menu) with role="navigation", "banner", "contentinfo", "menu", "menubar"
 *   or "search", or whose class or id has a word (split at anything not a
 *   letter or digit) that ends in "menu" or is one of nav_words below
 *   ("header" too, but only outside <article>/<main>).
 * An element is dropped only when its closing tag is found (same-name
 * nesting counted); otherwise it is kept, so broken markup never loses the
 * rest of the page. The scans share a budget proportional to the input. */

static const char *const nav_words[] = {
    "nav",     "navbar",     "navigation", "navpath", "breadcrumb", "breadcrumbs",
    "sidebar", "footer",     "toc",        "tagline", "banner",     "masthead",
    "skiplink", "skiplinks",
};

static const char *const nav_roles[] = {"navigation", "banner", "contentinfo",
                                        "menu",       "menubar", "search"};

static const char *const container_tags[] = {"div",   "section", "aside", "ul",  "ol",
                                             "table", "span",    "form",  "menu"};

static bool in_list(const char *w, size_t len, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(list[i]) == len && strncasecmp(w, list[i], len) == 0)
            return true;
    return false;
}

/* True when the class/id value v[0..len) has a navigation word; "header" counts
 * only when allow_header. */
static bool nav_class(const char *v, size_t len, bool allow_header)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && !isalnum((unsigned char)v[i]))
            i++;
        size_t st = i;
        while (i < len && isalnum((unsigned char)v[i]))
            i++;
        size_t wl = i - st;
        if (wl == 0)
            continue;
        if (in_list(v + st, wl, nav_words, DR_ARRAY_LEN(nav_words)))
            return true;
        if (wl >= 4 && strncasecmp(v + st + wl - 4, "menu", 4) == 0)
            return true;
        if (allow_header && wl == 6 && strncasecmp(v + st, "header", 6) == 0)
            return true;
    }
    return false;
}

/* Whether the start tag `name` with attribute text a[0..len) is navigation
 * (see above). in_content: inside <article> or <main>. */
static bool is_boilerplate(const char *name, const char *a, size_t len, bool in_content)
{
    if (strcmp(name, "nav") == 0 || strcmp(name, "footer") == 0)
        return true;
    if (strcmp(name, "header") == 0 && !in_content)
        return true;
    if (!in_list(name, strlen(name), container_tags, DR_ARRAY_LEN(container_tags)))
        return false; /* void elements and those with optional end tags (li, p) */
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_space_c(a[i]) || a[i] == '/'))
            i++;
        size_t ns = i;
        while (i < len && !is_space_c(a[i]) && a[i] != '=' && a[i] != '/')
            i++;
        size_t nlen = i - ns;
        if (nlen == 0) {
            i++;
            continue;
        }
        while (i < len && is_space_c(a[i]))
            i++;
        const char *v = a + i;
        size_t vlen = 0;
        if (i < len && a[i] == '=') {
            i++;
            while (i < len && is_space_c(a[i]))
                i++;
            if (i < len && (a[i] == '"' || a[i] == '\'')) {
                char q = a[i++];
                v = a + i;
                while (i < len && a[i] != q)
                    i++;
                vlen = (size_t)(a + i - v);
                if (i < len)
                    i++;
            } else {
                v = a + i;
                while (i < len && !is_space_c(a[i]))
                    i++;
                vlen = (size_t)(a + i - v);
            }
        }
        const char *an = a + ns;
        if (nlen == 4 && strncasecmp(an, "role", 4) == 0 &&
            in_list(v, vlen, nav_roles, DR_ARRAY_LEN(nav_roles)))
            return true;
        if (((nlen == 5 && strncasecmp(an, "class", 5) == 0) ||
                          (nlen == 2 && strncasecmp(an, "id", 2) == 0)) &&
            nav_class(v, vlen, !in_content))
            return true;
    }
    return false;
}

/* Finds the end of the element `name` whose start tag ends at i: the index
 * after the '>' of its matching closing tag, counting nested start tags of
 * the same name and skipping comments, script and style. Returns 0 when there
 * is none or when *budget (bytes still allowed to scan) runs out. */
static size_t element_end(const char *s, size_t n, size_t i, const char *name, size_t *budget)
{
    size_t len = strlen(name);
    size_t depth = 1;
    size_t start = i;
    for (; i < n; i++) {
        if (i - start >= *budget) {
            *budget = 0;
            return 0;
        }
        if (s[i] != '<')
            continue;
        if (n - i >= 4 && memcmp(s + i, "<!--", 4) == 0) {
            const char *e = NULL;
            for (size_t j = i + 4; j + 3 <= n; j++)
                if (memcmp(s + j, "-->", 3) == 0) {
                    e = s + j;
                    break;
                }
            if (e == NULL)
                break;
            i = (size_t)(e - s) + 2;
            continue;
        }
        bool closing = i + 1 < n && s[i + 1] == '/';
        size_t k = i + 1 + (closing ? 1 : 0);
        if (!closing && (n - k >= 6 && strncasecmp(s + k, "script", 6) == 0)) {
            i = skip_raw_element(s, n, k, "script") - 1;
            continue;
        }
        if (!closing && (n - k >= 5 && strncasecmp(s + k, "style", 5) == 0)) {
            i = skip_raw_element(s, n, k, "style") - 1;
            continue;
        }
        if (n - k < len || strncasecmp(s + k, name, len) != 0)
            continue;
        if (k + len < n && (isalnum((unsigned char)s[k + len]) || s[k + len] == '-'))
            continue;
        if (!closing) {
            depth++;
            continue;
        }
        if (--depth == 0) {
            const char *gt = memchr(s + i, '>', n - i);
            size_t end = gt ? (size_t)(gt - s) + 1 : n;
            *budget -= end - start < *budget ? end - start : *budget;
            return end;
        }
    }
    *budget -= (i - start) < *budget ? i - start : *budget;
    return 0;
}

int dr_html_to_text(const char *s, size_t n, char **text, char **title, dynrag_error *err)
{
    out_text o = {{0}, 0, false};
    dr_buf tbuf = {0};   /* <title> text */
    dr_buf hbuf = {0};   /* first heading text */
    bool in_title = false, in_heading = false, heading_done = false;
    size_t content_depth = 0;   /* open <article>/<main> elements */
    size_t skip_budget = 8 * n + 65536;
    int rc = DYNRAG_OK;
    *text = NULL;
    if (title)
        *title = NULL;
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (c == '<') {
            if (n - i >= 4 && memcmp(s + i, "<!--", 4) == 0) {
                const char *e = NULL;
                for (size_t j = i + 4; j + 3 <= n; j++)
                    if (memcmp(s + j, "-->", 3) == 0) {
                        e = s + j;
                        break;
                    }
                i = e ? (size_t)(e - s) + 3 : n;
                continue;
            }
            size_t j = i + 1;
            bool closing = false;
            if (j < n && s[j] == '/') {
                closing = true;
                j++;
            }
            if (j < n && (s[j] == '!' || s[j] == '?')) { /* doctype, processing instruction */
                const char *gt = memchr(s + j, '>', n - j);
                i = gt ? (size_t)(gt - s) + 1 : n;
                continue;
            }
            if (j >= n || !isalpha((unsigned char)s[j])) {
                /* not a tag: literal '<' */
                rc = out_char_bytes(&o, "<", 1);
                if (rc != DYNRAG_OK)
                    goto cleanup;
                i++;
                continue;
            }
            char name[16];
            size_t nl = 0;
            while (j < n && (isalnum((unsigned char)s[j]) || s[j] == '-') ) {
                if (nl + 1 < sizeof(name))
                    name[nl++] = (char)tolower((unsigned char)s[j]);
                j++;
            }
            name[nl] = '\0';
            size_t attr_start = j;
            /* the tag ends at the next '>' outside quotes */
            char q = 0;
            while (j < n && (q || s[j] != '>')) {
                if (q && s[j] == q)
                    q = 0;
                else if (!q && (s[j] == '"' || s[j] == '\''))
                    q = s[j];
                else if (!q && s[j] == '<')
                    break; /* broken tag: a new one starts */
                j++;
            }
            size_t attr_end = j;
            if (j < n && s[j] == '>')
                j++;
            i = j;
            if (strcmp(name, "article") == 0 || strcmp(name, "main") == 0) {
                if (!closing)
                    content_depth++;
                else if (content_depth > 0)
                    content_depth--;
            }
            if (!closing && skip_budget > 0 && (attr_end == attr_start || s[attr_end - 1] != '/') &&
                is_boilerplate(name, s + attr_start, attr_end - attr_start, content_depth > 0)) {
                size_t end = element_end(s, n, i, name, &skip_budget);
                if (end > 0) {
                    i = end;
                    if (o.pending_nl < 2)
                        o.pending_nl = 2;
                    continue;
                }
            }
            if (!closing && (strcmp(name, "script") == 0 || strcmp(name, "style") == 0 ||
                             strcmp(name, "noscript") == 0 || strcmp(name, "template") == 0)) {
                i = skip_raw_element(s, n, i, name);
                continue;
            }
            if (strcmp(name, "title") == 0)
                in_title = !closing;
            if (is_heading(name)) {
                if (!closing && !heading_done)
                    in_heading = true;
                else if (closing && in_heading) {
                    in_heading = false;
                    heading_done = true;
                }
            }
            if (is_block(name)) {
                int want = (strcmp(name, "br") == 0 || strcmp(name, "li") == 0 ||
                            strcmp(name, "tr") == 0 || strcmp(name, "td") == 0 ||
                            strcmp(name, "th") == 0 || strcmp(name, "dt") == 0 ||
                            strcmp(name, "dd") == 0)
                               ? 1
                               : 2;
                if (o.pending_nl < want)
                    o.pending_nl = want;
            }
            /* inline tags (b, a, span, ...) separate nothing */
            continue;
        }
        /* text: a character, an entity or white space */
        char enc[8];
        size_t elen = 0, used = 1;
        const char *p = s + i;
        if (c == '&') {
            size_t k = dr_html_entity(s + i, n - i, enc, &elen);
            if (k > 0) {
                p = enc;
                used = k;
            } else {
                elen = 1;
            }
        } else {
            elen = 1;
        }
        bool space = elen == 1 && is_space_c(p[0]);
        if (elen == 2 && (unsigned char)p[0] == 0xC2 && (unsigned char)p[1] == 0xA0)
            space = true; /* nbsp */
        if (space) {
            o.pending_sp = true;
        } else {
            rc = out_char_bytes(&o, p, elen);
            if (rc == DYNRAG_OK && in_title)
                rc = dr_buf_append(&tbuf, p, elen);
            if (rc == DYNRAG_OK && in_heading)
                rc = dr_buf_append(&hbuf, p, elen);
            if (rc != DYNRAG_OK)
                goto cleanup;
        }
        if (space && in_title && tbuf.len > 0 && tbuf.data[tbuf.len - 1] != ' ')
            rc = dr_buf_putc(&tbuf, ' ');
        if (rc == DYNRAG_OK && space && in_heading && hbuf.len > 0 &&
            hbuf.data[hbuf.len - 1] != ' ')
            rc = dr_buf_putc(&hbuf, ' ');
        if (rc != DYNRAG_OK)
            goto cleanup;
        i += used;
    }
    if (title) {
        dr_buf *src = tbuf.len > 0 ? &tbuf : &hbuf;
        while (src->len > 0 && src->data[src->len - 1] == ' ')
            src->data[--src->len] = '\0';
        *title = dr_buf_take(src);
        if (*title == NULL) {
            rc = DYNRAG_ERR_NOMEM;
            goto cleanup;
        }
    }
    *text = dr_buf_take(&o.b);
    if (*text == NULL)
        rc = DYNRAG_ERR_NOMEM;
cleanup:
    if (rc != DYNRAG_OK) {
        dr_err_set(err, rc, "HTML conversion: %s", dynrag_strerror(rc));
        if (title) {
            dr_free(*title);
            *title = NULL;
        }
        dr_free(*text);
        *text = NULL;
    }
    dr_buf_free(&o.b);
    dr_buf_free(&tbuf);
    dr_buf_free(&hbuf);
    return rc;
}
