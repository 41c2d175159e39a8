/*
 * core/text.h - the one word tokenizer and sentence splitter shared by the
 * embedder, the extractive answerer, the rules router and query features,
 * and the SQuAD answer normalisation of the QA metrics.
 *
 * Words are maximal runs of letters and digits (any code point >= U+0080
 * that is not punctuation counts as a letter), case-folded: ASCII and the
 * Latin-1/Latin Extended-A upper-case letters are lowered. Apostrophes inside
 * a word are dropped ("don't" -> "dont"). BM25 uses FTS5's own tokenizer
 * instead (see src/retrieve/), so these words are not index terms.
 */
#ifndef DYNRAG_CORE_TEXT_H
#define DYNRAG_CORE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Called once per word with its case-folded UTF-8 bytes (not
 * NUL-terminated) and the byte span [start, end) in the input. Return
 * non-zero to stop. */
typedef int (*dr_word_fn)(void *user, const char *word, size_t len, size_t start, size_t end);

/* Tokenizes text[0..n) into words; returns the callback's non-zero value if
 * it stopped early, else 0. Words longer than 64 bytes are truncated. */
int dr_text_words(const char *text, size_t n, dr_word_fn fn, void *user);

/* Counts words. */
size_t dr_text_word_count(const char *text, size_t n);

/* True for an English stopword (lower-case, NUL-terminated). */
bool dr_text_is_stopword(const char *word);

/* Called once per sentence with its byte span [start, end), trimmed. */
typedef int (*dr_sentence_fn)(void *user, size_t start, size_t end);

/* Splits text into sentences at '.', '!', '?' followed by white space and
 * an upper-case letter, digit or quote, or at blank lines; abbreviations
 * such as "e.g.", "Dr." and single initials do not end a sentence. */
int dr_text_sentences(const char *text, size_t n, dr_sentence_fn fn, void *user);

/*
 * SQuAD answer normalisation, shared by the cascade router's agreement judge
 * and the evaluation harness's QA metrics. Normalises an answer the way the
 * official SQuAD evaluation script does: lower-case (ASCII, Latin-1, Latin
 * Extended-A, Greek and Cyrillic capitals), remove ASCII punctuation, remove
 * the articles "a", "an", "the" as whole words, and collapse runs of white
 * space into one space with none at the ends. NULL counts as "". Returns a
 * new string the caller frees, or NULL when out of memory. Invalid UTF-8
 * bytes are kept as they are.
 */
char *dr_squad_normalize(const char *text);

#endif
