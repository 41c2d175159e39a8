/*
 * retrieve/html.h - HTML to plain text for indexing (internal).
 *
 * A tolerant single pass: script, style, noscript, template and comments
 * are dropped; block elements (p, div, br, li, h1-h6, tr, ...) become line
 * breaks; runs of white space collapse to one space and blank lines to one;
 * entities are decoded (common named ones, &#NNN; and &#xHH;; unknown ones
 * are kept as written). Navigation boilerplate is dropped: <nav>, <footer>,
 * <header> outside <article>/<main>, and containers (div, ul, section, ...)
 * with a navigation role or a class/id word such as menu, nav, toc, sidebar,
 * breadcrumb, banner (rules in html.c); only when the element's closing tag
 * is found. Broken markup (unclosed tags, a stray '<') never fails: a '<'
 * that does not start a tag is text.
 */
#ifndef DYNRAG_RETRIEVE_HTML_H
#define DYNRAG_RETRIEVE_HTML_H

#include "dynrag/status.h"

#include <stddef.h>

/* Converts html[0..n) (valid UTF-8) to text. *text gets the visible text
 * with headings kept; *title gets the <title> text, else the first h1-h6
 * heading, else "" (title may be NULL). Both are malloc'ed, caller frees.
 * Fails only with DYNRAG_ERR_NOMEM or DYNRAG_ERR_LIMIT. */
int dr_html_to_text(const char *html, size_t n, char **text, char **title, dynrag_error *err);

/* Decodes one entity at s[0] == '&' (n bytes available): on success writes
 * its UTF-8 into out (at least 8 bytes), sets *out_len and returns the bytes
 * consumed; returns 0 when s does not start a known entity. */
size_t dr_html_entity(const char *s, size_t n, char *out, size_t *out_len);

#endif
