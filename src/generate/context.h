/*
 * generate/context.h - packing retrieved passages into the prompt's context.
 *
 * Passages are taken in rank order, de-duplicated (the same chunk id, the
 * same document id for kind "documents", or near-identical text: a Jaccard
 * similarity >= 0.9 between their sets of 3-word shingles), and rendered as
 *
 *     [1] Title
 *     text
 *
 *     [2] Title
 *     ...
 *
 * with white space flattened and invalid UTF-8 replaced by U+FFFD. Packing
 * stops at k passages or at the token budget; a passage that would pass the
 * budget is cut after its last whole sentence that fits, or dropped when
 * not even its first sentence fits, and packing ends there. Tokens are
 * estimated as ceil(words * 4 / 3) with the words of core/text.h, counted
 * over the whole rendered text (markers and titles included).
 */
#ifndef DYNRAG_GENERATE_CONTEXT_H
#define DYNRAG_GENERATE_CONTEXT_H

#include "dynrag/status.h"
#include "generate/passage.h"

#include <stddef.h>

#define DR_CONTEXT_DUP_JACCARD 0.9

typedef struct dr_context_config {
    const char *kind; /* "topk" | "tokens" | "documents" */
    int k;            /* topk: passages kept (>= 1); others: a cap when > 0 */
    int max_tokens;   /* tokens/documents: budget (>= 1); topk: a cap when > 0 */
} dr_context_config;

/*
 * Packs in[0..n) (best first). On success *kept gets the indices into `in`
 * of the passages used, in context order (caller frees; NULL when none),
 * *n_kept their count, *text the rendered context (caller frees; "" when
 * empty) and *tokens (may be NULL) its estimate, equal to
 * dr_estimate_tokens(*text). For kind "documents" the caller passes whole
 * documents as passages. Fails with DYNRAG_ERR_INVALID (unknown kind, k or
 * max_tokens out of range, NULL arguments) or DYNRAG_ERR_NOMEM, leaving the
 * outputs NULL/0.
 */
int dr_context_pack(const dr_context_config *cfg, const dr_passage *in, size_t n,
                    size_t **kept, size_t *n_kept, char **text, int *tokens, dynrag_error *err);

#define DR_CONTEXT_COVER_WORDS 64 /* question words tracked by coverage order */

/*
 * The coverage order of in[0..n) (best first) for question: the first
 * n_fixed passages keep their places; each next place goes to the passage,
 * of those left, whose title and text hold the most of the question's
 * content words (stems of non-stopwords, the first DR_CONTEXT_COVER_WORDS
 * distinct ones) that no passage placed before it holds; ties, and every
 * passage once nothing is left to cover, keep their order in `in`. So a
 * multi-hop question's context gets the passage for each part of the
 * question before a second passage for a part already covered. Writes n
 * indices into order[0..n) (caller allocates). Fails with
 * DYNRAG_ERR_INVALID (NULL arguments) or DYNRAG_ERR_NOMEM.
 */
int dr_context_cover_order(const char *question, const dr_passage *in, size_t n, size_t n_fixed,
                           size_t *order, dynrag_error *err);

/* Estimated tokens of text: ceil(words * 4 / 3), >= 0 (NULL gives 0;
 * saturates at INT_MAX). */
int dr_estimate_tokens(const char *text);

#endif
