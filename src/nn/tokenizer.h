/*
 * nn/tokenizer.h - byte-level BPE tokenizer of the classifier (internal).
 *
 * Normalisation: ASCII and Latin-1 letters are lower-cased and Latin-1
 * accented letters lose their accent ("É" -> "e"); the ASCII punctuation
 * characters of the tokenizer's `strip` set (e.g. "?") are deleted; every
 * other byte is kept.
 * Pre-tokenisation splits the text into pieces: runs of letters (ASCII
 * letters and any non-ASCII code point), runs of digits, and single
 * punctuation characters; white space separates pieces and is dropped. A
 * piece that follows white space (or starts the text) begins with a space
 * byte, so " who" and "who" (as in "'who") are different pieces.
 *
 * Vocabulary: id 0 is <pad>, ids 1..256 are the 256 single bytes (so any
 * input, valid UTF-8 or not, encodes without an unknown token), and id
 * 257 + i is the i-th merge (a, b) learned from the training text. Encoding
 * a piece starts from its bytes and applies the lowest-ranked applicable
 * merge until none applies (standard BPE). The tokenizer is stored as JSON
 * in the weight file:
 * {"type":"bpe-bytes","version":1,"strip":"?","merges":[[a,b],...]}
 * ("strip" optional, default "").
 */
#ifndef DYNRAG_NN_TOKENIZER_H
#define DYNRAG_NN_TOKENIZER_H

#include "dynrag/status.h"

#include <stddef.h>
#include <stdint.h>

#define DR_TOK_PAD 0
#define DR_TOK_BYTE0 1       /* id of byte b is 1 + b */
#define DR_TOK_FIRST_MERGE 257

typedef struct dr_tokenizer dr_tokenizer;

/* Learns merges from texts until the vocabulary has vocab_size ids or no
 * pair occurs twice. Deterministic (ties break on the smaller pair ids).
 * vocab_size must be in [257, 1<<20]; strip (NULL = "") is the set of ASCII
 * punctuation characters normalisation deletes. */
int dr_tokenizer_train(const char *const *texts, size_t n, int vocab_size, const char *strip,
                       dr_tokenizer **out, dynrag_error *err);

/* Builds a tokenizer from its JSON (validated: merge ids must refer to
 * earlier ids). */
int dr_tokenizer_from_json(const char *json, dr_tokenizer **out, dynrag_error *err);
/* JSON form (caller frees). NULL on allocation failure. */
char *dr_tokenizer_to_json(const dr_tokenizer *t);

void dr_tokenizer_free(dr_tokenizer *t);
int dr_tokenizer_vocab_size(const dr_tokenizer *t);

/* Encodes text (any bytes, NUL-terminated) into at most max_ids ids; returns
 * the number written (the text is truncated past max_ids), or -1 when out
 * of memory. Thread-safe. */
int dr_tokenizer_encode(const dr_tokenizer *t, const char *text, int32_t *ids, int max_ids);

/* Calls fn on each piece of the normalised text (see the top of this
 * file): its bytes p[0..len) (not NUL-terminated) and whether white space
 * (or the start) precedes it; stops when fn returns non-zero. Returns
 * DYNRAG_OK, or DYNRAG_ERR_NOMEM when out of memory. */
typedef int (*dr_tok_piece_fn)(void *user, const char *p, size_t len, int space);
int dr_tokenizer_pieces(const dr_tokenizer *t, const char *text, dr_tok_piece_fn fn,
                        void *user);

/* Number of word pieces (runs of letters or digits; punctuation excluded)
 * of the normalised text, or -1 when out of memory. */
int dr_tokenizer_count_words(const dr_tokenizer *t, const char *text);

/* Writes the bytes of token id into buf (NUL-terminated, truncated to
 * size); returns the full length. <pad> gives "". */
size_t dr_tokenizer_decode_token(const dr_tokenizer *t, int32_t id, char *buf, size_t size);

#endif
