/* chunk.c - sentence-aware chunking with word overlap. */
#include "retrieve/chunk.h"

#include "core/text.h"
#include "core/util.h"

#include <stdlib.h>

typedef struct span_vec {
    dr_chunk_span *v;
    size_t n, cap;
    int rc;
} span_vec;

static int push(span_vec *s, size_t start, size_t end, size_t words)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        dr_chunk_span *v = dr_realloc(s->v, cap * sizeof(*v));
        if (v == NULL) {
            s->rc = DYNRAG_ERR_NOMEM;
            return 1;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (dr_chunk_span){start, end, words};
    return 0;
}

typedef struct sent_ctx {
    const char *text;
    span_vec *units;
} sent_ctx;

static int on_sentence(void *user, size_t start, size_t end)
{
    sent_ctx *c = user;
    return push(c->units, start, end, dr_text_word_count(c->text + start, end - start));
}

static int on_word_span(void *user, const char *w, size_t len, size_t start, size_t end)
{
    (void)w;
    (void)len;
    return push(user, start, end, 1);
}

/* Cuts one long sentence at [base, base + len) into overlapping windows. */
static int window_sentence(const char *text, size_t base, size_t len, size_t ct, size_t ov,
                           span_vec *out)
{
    span_vec words = {0};
    dr_text_words(text + base, len, on_word_span, &words);
    int rc = words.rc;
    size_t step = ct - ov;
    for (size_t s = 0; rc == DYNRAG_OK && s < words.n; s += step) {
        size_t e = DR_MIN(s + ct, words.n);
        if (push(out, base + words.v[s].start, base + words.v[e - 1].end, e - s))
            rc = out->rc;
        if (e == words.n)
            break;
    }
    dr_free(words.v);
    return rc;
}

int dr_chunk_text(const char *text, size_t n, int chunk_tokens, int chunk_overlap,
                  dr_chunk_span **out, size_t *n_out, dynrag_error *err)
{
    *out = NULL;
    *n_out = 0;
    if (chunk_tokens < 1 || chunk_overlap < 0 || chunk_overlap >= chunk_tokens)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "chunking: need 0 <= overlap (%d) < chunk tokens (%d)", chunk_overlap,
                          chunk_tokens);
    size_t ct = (size_t)chunk_tokens, ov = (size_t)chunk_overlap;
    span_vec units = {0}, chunks = {0};
    sent_ctx sc = {text, &units};
    int rc = DYNRAG_OK;
    dr_text_sentences(text, n, on_sentence, &sc);
    if (units.rc != DYNRAG_OK) {
        rc = units.rc;
        goto cleanup;
    }
    size_t i = 0;
    while (i < units.n) {
        if (units.v[i].words > ct) {
            rc = window_sentence(text, units.v[i].start, units.v[i].end - units.v[i].start, ct,
                                 ov, &chunks);
            if (rc != DYNRAG_OK)
                goto cleanup;
            i++;
            continue;
        }
        size_t j = i, words = 0;
        while (j < units.n && units.v[j].words <= ct && (j == i || words + units.v[j].words <= ct))
            words += units.v[j++].words;
        if (push(&chunks, units.v[i].start, units.v[j - 1].end, words)) {
            rc = chunks.rc;
            goto cleanup;
        }
        if (j >= units.n)
            break;
        /* overlap: the last sentences of this chunk with at most ov words */
        size_t k = j, acc = 0;
        while (k - 1 > i && acc + units.v[k - 1].words <= ov) {
            acc += units.v[k - 1].words;
            k--;
        }
        /* no overlap when the next sentence would not fit beside it anyway:
         * the next chunk must reach past this one */
        if (units.v[j].words > ct || acc + units.v[j].words > ct)
            k = j;
        i = k;
    }
    *out = chunks.v;
    *n_out = chunks.n;
    chunks.v = NULL;
cleanup:
    if (rc != DYNRAG_OK)
        dr_err_set(err, rc, "chunking: %s", dynrag_strerror(rc));
    dr_free(chunks.v);
    dr_free(units.v);
    return rc;
}
