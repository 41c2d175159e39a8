/*
 * router/normalize.h - SQuAD-style answer normalisation (internal), shared
 * by the cascade router's agreement judge and the evaluation harness.
 */
#ifndef DYNRAG_ROUTER_NORMALIZE_H
#define DYNRAG_ROUTER_NORMALIZE_H

/*
 * Normalises an answer the way the official SQuAD evaluation script does:
 * lower-case (ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic capitals),
 * remove ASCII punctuation, remove the articles "a", "an", "the" as whole
 * words, and collapse runs of white space into one space with none at the
 * ends. NULL counts as "". Returns a new string the caller frees, or NULL
 * when out of memory. Invalid UTF-8 bytes are kept as they are.
 */
char *dr_squad_normalize(const char *text);

#endif
