/*
 * generate/gen_text.h - small text helpers shared by the generation modules
 * (extractive answerer, context packer, reformulation). Internal.
 */
#ifndef DYNRAG_GENERATE_GEN_TEXT_H
#define DYNRAG_GENERATE_GEN_TEXT_H

#include "core/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Appends s[0..n) to b as valid UTF-8: invalid bytes become U+FFFD, control
 * characters and all white space become one space per run, and no space is
 * written at the start of b or when b already ends with one. Returns
 * DYNRAG_OK or the dr_buf error (DYNRAG_ERR_NOMEM, DYNRAG_ERR_LIMIT). */
int dr_gen_put_flat(dr_buf *b, const char *s, size_t n);

/* Strips trailing spaces from b. */
void dr_gen_rstrip(dr_buf *b);

/* A light, deterministic English suffix stripper applied to case-folded
 * words before matching ("films" -> "film", "portrayed" -> "portray",
 * "starring" -> "starr"): both sides of a comparison go through it, so the
 * stems need not be words. Rewrites w[0..*len) in place. */
void dr_gen_stem(char *w, size_t *len);

/* The content-word key of a case-folded word (as dr_text_words() gives it):
 * false for a stopword, else true with *hash the hash of its stem (the
 * first 64 bytes of the word, through dr_gen_stem()). Question words and
 * passage words are matched by these keys. */
bool dr_gen_content_hash(const char *word, size_t len, uint64_t *hash);

/* True when the code point at s (n bytes) starts with an upper-case letter
 * (ASCII, Latin-1, Latin Extended-A, Greek or Cyrillic capitals). */
bool dr_gen_is_upper_at(const char *s, size_t n);

/* True for an English month name (case-folded word, not NUL-terminated). */
bool dr_gen_is_month(const char *w, size_t len);

#endif
