/* wide.c - hashed n-gram features of the classifier's wide branch (wide.h). */
#include "nn/wide.h"

#include "core/util.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { SEED_UNI = 0x77696465u, SEED_BI = 0x62696772u, SEED_CHAR = 0x63686172u };

typedef struct wide_state {
    char text[DR_WIDE_MAX_BYTES + 2]; /* " " + joined pieces (+ " " appended later) */
    size_t len;
    size_t prev_start, prev_len; /* previous piece within text, prev_len 0 = none */
    bool full;
    uint64_t *h; /* raw hashes */
    int n;
} wide_state;

static void add_hash(wide_state *st, uint64_t h) { st->h[st->n++] = h; }

static int wide_piece(void *user, const char *p, size_t len, int space)
{
    wide_state *st = user;
    size_t need = len + (space && st->len > 1 ? 1 : 0);
    if (st->len + need > DR_WIDE_MAX_BYTES) {
        st->full = true;
        return 1;
    }
    if (space && st->len > 1)
        st->text[st->len++] = ' ';
    size_t start = st->len;
    memcpy(st->text + st->len, p, len);
    st->len += len;
    add_hash(st, dr_hash64(p, len, SEED_UNI));
    if (st->prev_len > 0) {
        /* the bigram's bytes: previous piece, a 0x01 separator, this piece */
        char buf[2 * DR_WIDE_MAX_BYTES + 1];
        memcpy(buf, st->text + st->prev_start, st->prev_len);
        buf[st->prev_len] = '\x01';
        memcpy(buf + st->prev_len + 1, p, len);
        add_hash(st, dr_hash64(buf, st->prev_len + 1 + len, SEED_BI));
    }
    st->prev_start = start;
    st->prev_len = len;
    return 0;
}

int dr_wide_features(const dr_tokenizer *tok, const char *text, int bits, uint32_t *idx,
                     float *val)
{
    wide_state *st = dr_malloc(sizeof(*st));
    uint64_t *keys = dr_malloc(DR_WIDE_MAX_FEATURES * sizeof(uint64_t));
    int out = -1;
    if (!st || !keys)
        goto cleanup;
    memset(st, 0, sizeof(*st));
    st->h = keys;
    st->text[0] = ' ';
    st->len = 1;
    if (dr_tokenizer_pieces(tok, text, wide_piece, st) != DYNRAG_OK)
        goto cleanup;
    if (st->len > 1) {
        st->text[st->len++] = ' ';
        for (int g = 3; g <= 5; g++)
            for (size_t i = 0; i + (size_t)g <= st->len; i++)
                add_hash(st, dr_hash64(st->text + i, (size_t)g, SEED_CHAR + (unsigned)g));
    }
    /* key = bucket << 1 | sign, sorted: equal buckets are adjacent */
    uint64_t mask = ((uint64_t)1 << bits) - 1;
    for (int i = 0; i < st->n; i++)
        keys[i] = (keys[i] & mask) << 1 | keys[i] >> 63;
    qsort(keys, (size_t)st->n, sizeof(uint64_t), dr_u64_cmp);
    int m = 0;
    double norm = 0;
    for (int i = 0; i < st->n;) {
        uint64_t b = keys[i] >> 1;
        int c = 0;
        for (; i < st->n && keys[i] >> 1 == b; i++)
            c += (keys[i] & 1) ? -1 : 1;
        if (c == 0)
            continue;
        idx[m] = (uint32_t)b;
        val[m] = (float)c;
        norm += (double)c * c;
        m++;
    }
    float inv = m ? (float)(1.0 / sqrt(norm)) : 0.0f;
    for (int i = 0; i < m; i++)
        val[i] *= inv;
    out = m;
cleanup:
    dr_free(st);
    dr_free(keys);
    return out;
}
