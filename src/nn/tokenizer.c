/* tokenizer.c - byte-level BPE: normalisation, training, encoding, JSON. */
#include "nn/tokenizer.h"

#include "core/util.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PIECE 64 /* longer runs are split into 64-byte pieces */

struct dr_tokenizer {
    char strip[33];       /* ASCII punctuation deleted by normalisation */
    int n_merges;
    int32_t (*merges)[2]; /* [n_merges][2] */
    /* (a, b) -> rank: open addressing, keys a<<32|b, empty = UINT64_MAX */
    uint64_t *keys;
    int32_t *ranks;
    size_t cap; /* power of two */
};

/* ---- a u64 -> i64 open-addressing map --------------------------------- */

typedef struct u64map {
    uint64_t *k;
    int64_t *v;
    size_t cap, n;
} u64map;

static size_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static int u64map_init(u64map *m, size_t cap)
{
    m->cap = 16;
    while (m->cap < cap * 2)
        m->cap *= 2;
    m->n = 0;
    m->k = dr_malloc(m->cap * sizeof(*m->k));
    m->v = dr_calloc(m->cap, sizeof(*m->v));
    if (!m->k || !m->v)
        return DYNRAG_ERR_NOMEM;
    memset(m->k, 0xff, m->cap * sizeof(*m->k));
    return DYNRAG_OK;
}

static void u64map_free(u64map *m)
{
    dr_free(m->k);
    dr_free(m->v);
}

/* Slot of key (existing or the empty slot where it would go). */
static size_t u64map_slot(const u64map *m, uint64_t key)
{
    size_t i = mix64(key) & (m->cap - 1);
    while (m->k[i] != UINT64_MAX && m->k[i] != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static int u64map_add(u64map *m, uint64_t key, int64_t delta)
{
    if ((m->n + 1) * 2 > m->cap) {
        u64map g;
        if (u64map_init(&g, m->cap) != DYNRAG_OK) {
            u64map_free(&g);
            return DYNRAG_ERR_NOMEM;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->k[i] != UINT64_MAX) {
                size_t s = u64map_slot(&g, m->k[i]);
                g.k[s] = m->k[i];
                g.v[s] = m->v[i];
                g.n++;
            }
        u64map_free(m);
        *m = g;
    }
    size_t s = u64map_slot(m, key);
    if (m->k[s] == UINT64_MAX) {
        m->k[s] = key;
        m->v[s] = 0;
        m->n++;
    }
    m->v[s] += delta;
    return DYNRAG_OK;
}

/* ---- normalisation and pre-tokenisation ------------------------------- */

/* ASCII replacements of U+00C0..U+00FF (NULL: keep the character). */
static const char *const latin1[64] = {
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
    "d", "n", "o", "o", "o", "o", "o", NULL, "o", "u", "u", "u", "u", "y", "th", "ss",
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
    "d", "n", "o", "o", "o", "o", "o", NULL, "o", "u", "u", "u", "u", "y", "th", "y",
};

/* Normalises text into a new buffer (caller frees): ASCII lower case,
 * Latin-1 letters folded to ASCII, the ASCII characters in strip deleted,
 * all other bytes unchanged. */
static char *normalise(const char *text, const char *strip, size_t *out_len)
{
    size_t n = strlen(text);
    char *out = dr_malloc(2 * n + 1); /* a 2-byte char maps to at most 2 bytes */
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x80) {
            if (!(strip[0] && strchr(strip, c)))
                out[o++] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = dr_utf8_decode(text + i, n - i, &cp);
        if (k == 2 && cp >= 0xC0 && cp <= 0xFF && latin1[cp - 0xC0]) {
            const char *r = latin1[cp - 0xC0];
            size_t rl = strlen(r);
            memcpy(out + o, r, rl);
            o += rl;
        } else {
            memcpy(out + o, text + i, k);
            o += k;
        }
        i += k;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

enum { CL_SPACE, CL_LETTER, CL_DIGIT, CL_PUNCT };

static int byte_class(unsigned char c)
{
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f')
        return CL_SPACE;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80)
        return CL_LETTER;
    if (c >= '0' && c <= '9')
        return CL_DIGIT;
    return CL_PUNCT;
}

/* Calls fn for each piece of the normalised text s[0..n): start, length,
 * and whether it follows white space. Stops when fn returns non-zero. */
typedef int (*piece_fn)(void *user, const char *p, size_t len, bool space);

static int for_each_piece(const char *s, size_t n, piece_fn fn, void *user)
{
    bool space = true;
    size_t i = 0;
    while (i < n) {
        int cl = byte_class((unsigned char)s[i]);
        if (cl == CL_SPACE) {
            space = true;
            i++;
            continue;
        }
        size_t j = i + 1;
        if (cl != CL_PUNCT)
            while (j < n && j - i < MAX_PIECE && byte_class((unsigned char)s[j]) == cl)
                j++;
        int r = fn(user, s + i, j - i, space);
        if (r)
            return r;
        space = false;
        i = j;
    }
    return 0;
}

/* ---- encoding --------------------------------------------------------- */

static int32_t merge_rank(const dr_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = mix64(key) & (t->cap - 1);
    while (t->keys[i] != UINT64_MAX) {
        if (t->keys[i] == key)
            return t->ranks[i];
        i = (i + 1) & (t->cap - 1);
    }
    return -1;
}

/* Byte ids of a piece (with the leading space byte when `space`). */
static int piece_bytes(const char *p, size_t len, bool space, int32_t *sym)
{
    int m = 0;
    if (space)
        sym[m++] = DR_TOK_BYTE0 + ' ';
    for (size_t i = 0; i < len; i++)
        sym[m++] = DR_TOK_BYTE0 + (unsigned char)p[i];
    return m;
}

/* Applies merges in rank order to sym[0..m); returns the new length. */
static int bpe_piece(const dr_tokenizer *t, int32_t *sym, int m)
{
    for (;;) {
        int best_i = -1;
        int32_t best_r = INT32_MAX;
        for (int i = 0; i + 1 < m; i++) {
            int32_t r = merge_rank(t, sym[i], sym[i + 1]);
            if (r >= 0 && r < best_r) {
                best_r = r;
                best_i = i;
            }
        }
        if (best_i < 0)
            return m;
        sym[best_i] = DR_TOK_FIRST_MERGE + best_r;
        memmove(&sym[best_i + 1], &sym[best_i + 2], (size_t)(m - best_i - 2) * sizeof(*sym));
        m--;
    }
}

typedef struct enc_state {
    const dr_tokenizer *t;
    int32_t *ids;
    int n, max;
} enc_state;

static int enc_piece(void *user, const char *p, size_t len, bool space)
{
    enc_state *st = user;
    int32_t sym[MAX_PIECE + 2];
    int m = bpe_piece(st->t, sym, piece_bytes(p, len, space, sym));
    for (int i = 0; i < m; i++) {
        if (st->n >= st->max)
            return 1;
        st->ids[st->n++] = sym[i];
    }
    return 0;
}

int dr_tokenizer_encode(const dr_tokenizer *t, const char *text, int32_t *ids, int max_ids)
{
    size_t n = 0;
    if (max_ids <= 0)
        return 0;
    char *norm = normalise(text ? text : "", t->strip, &n);
    if (!norm)
        return -1;
    enc_state st = {t, ids, 0, max_ids};
    for_each_piece(norm, n, enc_piece, &st);
    dr_free(norm);
    return st.n;
}

static int count_piece(void *user, const char *p, size_t len, bool space)
{
    (void)len;
    (void)space;
    if (byte_class((unsigned char)p[0]) != CL_PUNCT)
        (*(int *)user)++;
    return 0;
}

typedef struct piece_relay {
    dr_tok_piece_fn fn;
    void *user;
} piece_relay;

static int relay_piece(void *user, const char *p, size_t len, bool space)
{
    piece_relay *r = user;
    return r->fn(r->user, p, len, space ? 1 : 0);
}

int dr_tokenizer_pieces(const dr_tokenizer *t, const char *text, dr_tok_piece_fn fn,
                        void *user)
{
    size_t n = 0;
    char *norm = normalise(text ? text : "", t->strip, &n);
    if (!norm)
        return DYNRAG_ERR_NOMEM;
    piece_relay r = {fn, user};
    for_each_piece(norm, n, relay_piece, &r);
    dr_free(norm);
    return DYNRAG_OK;
}

int dr_tokenizer_count_words(const dr_tokenizer *t, const char *text)
{
    size_t n = 0;
    int words = 0;
    char *norm = normalise(text ? text : "", t->strip, &n);
    if (!norm)
        return -1;
    for_each_piece(norm, n, count_piece, &words);
    dr_free(norm);
    return words;
}

size_t dr_tokenizer_decode_token(const dr_tokenizer *t, int32_t id, char *buf, size_t size)
{
    /* Expand iteratively with an explicit stack of ids. */
    int32_t stack[256];
    int sp = 0;
    size_t len = 0;
    if (size)
        buf[0] = '\0';
    if (id <= DR_TOK_PAD || id >= DR_TOK_FIRST_MERGE + t->n_merges)
        return 0;
    stack[sp++] = id;
    while (sp > 0) {
        int32_t x = stack[--sp];
        if (x < DR_TOK_FIRST_MERGE) {
            if (len + 1 < size) {
                buf[len] = (char)(x - DR_TOK_BYTE0);
                buf[len + 1] = '\0';
            }
            len++;
        } else if (sp + 2 <= (int)DR_ARRAY_LEN(stack)) {
            stack[sp++] = t->merges[x - DR_TOK_FIRST_MERGE][1];
            stack[sp++] = t->merges[x - DR_TOK_FIRST_MERGE][0];
        }
    }
    return len;
}

int dr_tokenizer_vocab_size(const dr_tokenizer *t) { return DR_TOK_FIRST_MERGE + t->n_merges; }

void dr_tokenizer_free(dr_tokenizer *t)
{
    if (!t)
        return;
    dr_free(t->merges);
    dr_free(t->keys);
    dr_free(t->ranks);
    dr_free(t);
}

/* Allocates a tokenizer for n merges (merges left to fill) and its index. */
static dr_tokenizer *tok_alloc(int n)
{
    dr_tokenizer *t = dr_calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->n_merges = n;
    t->merges = dr_calloc((size_t)(n ? n : 1), sizeof(*t->merges));
    t->cap = 16;
    while (t->cap < (size_t)n * 2 + 2)
        t->cap *= 2;
    t->keys = dr_malloc(t->cap * sizeof(*t->keys));
    t->ranks = dr_malloc(t->cap * sizeof(*t->ranks));
    if (!t->merges || !t->keys || !t->ranks) {
        dr_tokenizer_free(t);
        return NULL;
    }
    memset(t->keys, 0xff, t->cap * sizeof(*t->keys));
    return t;
}

static void tok_index(dr_tokenizer *t)
{
    for (int r = 0; r < t->n_merges; r++) {
        uint64_t key = (uint64_t)(uint32_t)t->merges[r][0] << 32 | (uint32_t)t->merges[r][1];
        size_t i = mix64(key) & (t->cap - 1);
        while (t->keys[i] != UINT64_MAX && t->keys[i] != key)
            i = (i + 1) & (t->cap - 1);
        if (t->keys[i] == UINT64_MAX) { /* first (lowest) rank wins on duplicates */
            t->keys[i] = key;
            t->ranks[i] = r;
        }
    }
}

/* strip: printable ASCII punctuation only, at most 32 characters. */
static bool strip_valid(const char *strip)
{
    if (strlen(strip) > 32)
        return false;
    for (const char *p = strip; *p; p++)
        if (*p <= ' ' || *p >= 0x7f || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9'))
            return false;
    return true;
}

/* ---- JSON ------------------------------------------------------------- */

char *dr_tokenizer_to_json(const dr_tokenizer *t)
{
    dr_buf b = {0};
    int rc = dr_buf_puts(&b, "{\"type\":\"bpe-bytes\",\"version\":1,\"normalize\":\"lower+latin1\","
                             "\"strip\":");
    rc = rc ? rc : dr_buf_json_str(&b, t->strip);
    rc = rc ? rc : dr_buf_puts(&b, ",\"merges\":[");
    for (int i = 0; i < t->n_merges && rc == DYNRAG_OK; i++)
        rc = dr_buf_printf(&b, "%s[%d,%d]", i ? "," : "", (int)t->merges[i][0],
                           (int)t->merges[i][1]);
    if (rc == DYNRAG_OK)
        rc = dr_buf_puts(&b, "]}");
    if (rc != DYNRAG_OK) {
        dr_buf_free(&b);
        return NULL;
    }
    return dr_buf_take(&b);
}

int dr_tokenizer_from_json(const char *json, dr_tokenizer **out, dynrag_error *err)
{
    unsigned long failed = dr_alloc_failures();
    cJSON *root = cJSON_Parse(json);
    dr_tokenizer *t = NULL;
    int rc = DYNRAG_OK;
    *out = NULL;
    if (!root && dr_alloc_failures() != failed) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "tokenizer: out of memory");
        goto cleanup;
    }
    if (!root || !cJSON_IsObject(root)) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "tokenizer: not a JSON object");
        goto cleanup;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(root, "merges");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "bpe-bytes") != 0 ||
        !cJSON_IsNumber(ver) || ver->valuedouble != 1) {
        rc = dr_err_set(err, DYNRAG_ERR_UNSUPPORTED,
                        "tokenizer: type must be \"bpe-bytes\" with version 1");
        goto cleanup;
    }
    if (!cJSON_IsArray(merges) || cJSON_GetArraySize(merges) > (1 << 20)) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "tokenizer: merges must be an array of at most "
                        "2^20 pairs");
        goto cleanup;
    }
    const cJSON *strip = cJSON_GetObjectItemCaseSensitive(root, "strip");
    if (strip && (!cJSON_IsString(strip) || !strip_valid(strip->valuestring))) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "tokenizer: strip must be a string of at most 32 "
                        "ASCII punctuation characters");
        goto cleanup;
    }
    int n = cJSON_GetArraySize(merges);
    t = tok_alloc(n);
    if (!t) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (strip)
        dr_strlcpy(t->strip, strip->valuestring, sizeof(t->strip));
    int i = 0;
    for (const cJSON *m = merges->child; m; m = m->next, i++) {
        const cJSON *a = cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 ? m->child : NULL;
        const cJSON *b = a ? a->next : NULL;
        double lim = DR_TOK_FIRST_MERGE + i; /* a merge may only use earlier ids */
        if (!a || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) || a->valuedouble < DR_TOK_BYTE0 ||
            b->valuedouble < DR_TOK_BYTE0 || a->valuedouble >= lim || b->valuedouble >= lim ||
            a->valuedouble != (int32_t)a->valuedouble || b->valuedouble != (int32_t)b->valuedouble) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "tokenizer: merge %d is not a pair of "
                            "earlier token ids", i);
            goto cleanup;
        }
        t->merges[i][0] = (int32_t)a->valuedouble;
        t->merges[i][1] = (int32_t)b->valuedouble;
    }
    tok_index(t);
    *out = t;
    t = NULL;
cleanup:
    dr_tokenizer_free(t);
    cJSON_Delete(root);
    return rc;
}

/* ---- training --------------------------------------------------------- */

typedef struct word_set {
    /* unique pieces: symbols in sym[start[i] .. start[i]+len[i]) */
    int32_t *sym;
    size_t n_sym, alloc_sym;
    size_t *start;
    int *len;
    int64_t *freq;
    size_t n, alloc;
    u64map index; /* hash of bytes -> word index (collisions checked) */
    int rc;
} word_set;

static int add_piece(void *user, const char *p, size_t len, bool space)
{
    word_set *ws = user;
    int32_t sym[MAX_PIECE + 2];
    int m = piece_bytes(p, len, space, sym);
    uint64_t h = dr_hash64(sym, (size_t)m * sizeof(*sym), 7);
    if (h == UINT64_MAX)
        h--;
    /* Probe for an equal word: a collision moves on to key h+1, h+2, ... */
    for (;;) {
        size_t s = u64map_slot(&ws->index, h);
        if (ws->index.k[s] == UINT64_MAX)
            break;
        size_t w = (size_t)ws->index.v[s];
        if (ws->len[w] == m && memcmp(&ws->sym[ws->start[w]], sym, (size_t)m * sizeof(*sym)) == 0) {
            ws->freq[w]++;
            return 0;
        }
        h = (h + 1 == UINT64_MAX) ? 0 : h + 1;
    }
    if (ws->n == ws->alloc) {
        size_t na = ws->alloc ? ws->alloc * 2 : 1024;
        size_t *ns = dr_realloc(ws->start, na * sizeof(*ns));
        if (ns)
            ws->start = ns;
        int *nl = dr_realloc(ws->len, na * sizeof(*nl));
        if (nl)
            ws->len = nl;
        int64_t *nf = dr_realloc(ws->freq, na * sizeof(*nf));
        if (nf)
            ws->freq = nf;
        if (!ns || !nl || !nf)
            return ws->rc = DYNRAG_ERR_NOMEM;
        ws->alloc = na;
    }
    if (ws->n_sym + (size_t)m > ws->alloc_sym) {
        size_t na = ws->alloc_sym ? ws->alloc_sym * 2 : 8192;
        while (na < ws->n_sym + (size_t)m)
            na *= 2;
        int32_t *ns = dr_realloc(ws->sym, na * sizeof(*ns));
        if (!ns)
            return ws->rc = DYNRAG_ERR_NOMEM;
        ws->sym = ns;
        ws->alloc_sym = na;
    }
    memcpy(&ws->sym[ws->n_sym], sym, (size_t)m * sizeof(*sym));
    ws->start[ws->n] = ws->n_sym;
    ws->len[ws->n] = m;
    ws->freq[ws->n] = 1;
    ws->n_sym += (size_t)m;
    if (u64map_add(&ws->index, h, (int64_t)ws->n) != DYNRAG_OK)
        return ws->rc = DYNRAG_ERR_NOMEM;
    ws->n++;
    return 0;
}

static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

/* Adds sign * freq to the count of every adjacent pair of word w. */
static int count_word(const word_set *ws, size_t w, int64_t sign, u64map *pairs)
{
    const int32_t *s = &ws->sym[ws->start[w]];
    for (int i = 0; i + 1 < ws->len[w]; i++)
        if (u64map_add(pairs, pair_key(s[i], s[i + 1]), sign * ws->freq[w]) != DYNRAG_OK)
            return DYNRAG_ERR_NOMEM;
    return DYNRAG_OK;
}

int dr_tokenizer_train(const char *const *texts, size_t n, int vocab_size, const char *strip,
                       dr_tokenizer **out, dynrag_error *err)
{
    word_set ws = {0};
    u64map pairs = {0};
    int32_t (*merges)[2] = NULL;
    dr_tokenizer *t = NULL;
    int rc = DYNRAG_OK, n_merges = 0;
    *out = NULL;
    if (strip == NULL)
        strip = "";
    if (!strip_valid(strip)) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "strip '%s': only up to 32 ASCII punctuation "
                        "characters", strip);
        goto cleanup;
    }
    if (vocab_size < DR_TOK_FIRST_MERGE || vocab_size > (1 << 20)) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "vocab_size %d outside [%d, %d]", vocab_size,
                        DR_TOK_FIRST_MERGE, 1 << 20);
        goto cleanup;
    }
    if (u64map_init(&ws.index, 4096) != DYNRAG_OK || u64map_init(&pairs, 4096) != DYNRAG_OK)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        char *norm = normalise(texts[i], strip, &len);
        if (!norm)
            goto nomem;
        for_each_piece(norm, len, add_piece, &ws);
        dr_free(norm);
        if (ws.rc != DYNRAG_OK)
            goto nomem;
    }
    for (size_t w = 0; w < ws.n; w++)
        if (count_word(&ws, w, 1, &pairs) != DYNRAG_OK)
            goto nomem;
    int max_merges = vocab_size - DR_TOK_FIRST_MERGE;
    merges = dr_calloc((size_t)(max_merges ? max_merges : 1), sizeof(*merges));
    if (!merges)
        goto nomem;
    while (n_merges < max_merges) {
        uint64_t best = UINT64_MAX;
        int64_t best_c = 1;
        for (size_t i = 0; i < pairs.cap; i++)
            if (pairs.k[i] != UINT64_MAX &&
                (pairs.v[i] > best_c || (pairs.v[i] == best_c && best_c > 1 && pairs.k[i] < best)))
                best = pairs.k[i], best_c = pairs.v[i];
        if (best == UINT64_MAX || best_c < 2)
            break;
        int32_t a = (int32_t)(best >> 32), b = (int32_t)(best & 0xffffffffu);
        int32_t id = DR_TOK_FIRST_MERGE + n_merges;
        merges[n_merges][0] = a;
        merges[n_merges][1] = b;
        n_merges++;
        for (size_t w = 0; w < ws.n; w++) {
            int32_t *s = &ws.sym[ws.start[w]];
            int m = ws.len[w], i;
            for (i = 0; i + 1 < m; i++)
                if (s[i] == a && s[i + 1] == b)
                    break;
            if (i + 1 >= m)
                continue;
            if (count_word(&ws, w, -1, &pairs) != DYNRAG_OK)
                goto nomem;
            int o = 0;
            for (i = 0; i < m;) {
                if (i + 1 < m && s[i] == a && s[i + 1] == b) {
                    s[o++] = id;
                    i += 2;
                } else {
                    s[o++] = s[i++];
                }
            }
            ws.len[w] = o;
            if (count_word(&ws, w, 1, &pairs) != DYNRAG_OK)
                goto nomem;
        }
    }
    t = tok_alloc(n_merges);
    if (!t)
        goto nomem;
    memcpy(t->merges, merges, (size_t)n_merges * sizeof(*merges));
    dr_strlcpy(t->strip, strip, sizeof(t->strip));
    tok_index(t);
    *out = t;
    t = NULL;
    goto cleanup;
nomem:
    rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory training the tokenizer");
cleanup:
    dr_free(merges);
    dr_tokenizer_free(t);
    u64map_free(&pairs);
    u64map_free(&ws.index);
    dr_free(ws.sym);
    dr_free(ws.start);
    dr_free(ws.len);
    dr_free(ws.freq);
    return rc;
}
