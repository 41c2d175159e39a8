/* bm25.c - BM25 over FTS5 postings: build/load the sidecar index, MaxScore top-k. */
#include "retrieve/bm25.h"

#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The FTS5 tokenizer API (fts5_api, fts5_tokenizer) is declared in sqlite3.h. */

/* ---- engine ----------------------------------------------------------------- */

#define HEADER_SIZE 96
#define MAGIC "DRBM25IX"
#define MAX_SIDECAR_BYTES ((uint64_t)1 << 40)
#define MAX_QUERY_BYTES ((size_t)1 << 20)
#define UB_SLACK (1.0 + 1e-9)

struct dr_bm25 {
    uint8_t *blob;      /* the sidecar image (header + arrays), owned */
    size_t blob_size;
    const int64_t *chunk_id;
    const uint32_t *doc_len;
    const uint32_t *term_off;
    const uint64_t *post_off;
    const uint64_t *front_off;
    const uint32_t *front_tf;
    const uint32_t *front_dl;
    const uint32_t *post_doc;
    const uint16_t *post_tf;
    const char *terms;
    uint32_t n_docs, n_terms;
    uint64_t n_postings, n_frontier, term_bytes, total_len;
    int64_t generation;
    uint8_t index_id[16]; /* meta index_id of the database it was built from */
    double avgdl;
    dr_bm25_info info;

    /* Tokenizer: a private in-memory connection hosts the fts5_api, so the
     * engine does not depend on the caller's connection staying open. */
    sqlite3 *tokdb;
    fts5_tokenizer tokapi;
    void *tokctx;
    pthread_mutex_t mu;
    Fts5Tokenizer **pool; /* idle tokenizer instances */
    size_t n_pool, cap_pool;
};

typedef struct layout {
    uint64_t chunk_id, doc_len, term_off, post_off, front_off, front_tf, front_dl, post_doc,
        post_tf, blob, total;
} layout;

static uint64_t align8(uint64_t x)
{
    return (x + 7) & ~(uint64_t)7;
}

/* Section offsets for the given counts. Fails (DYNRAG_ERR_LIMIT) when the
 * total passes MAX_SIDECAR_BYTES; the counts are bounded so no product
 * overflows 64 bits. */
static int layout_compute(uint64_t n_docs, uint64_t n_terms, uint64_t n_post, uint64_t n_front,
                          uint64_t term_bytes, layout *L)
{
    if (n_docs > UINT32_MAX || n_terms >= UINT32_MAX || n_post > MAX_SIDECAR_BYTES ||
        n_front > MAX_SIDECAR_BYTES || term_bytes > UINT32_MAX)
        return DYNRAG_ERR_LIMIT;
    uint64_t o = HEADER_SIZE;
    L->chunk_id = o;
    o = align8(o + 8 * n_docs);
    L->doc_len = o;
    o = align8(o + 4 * n_docs);
    L->term_off = o;
    o = align8(o + 4 * (n_terms + 1));
    L->post_off = o;
    o = align8(o + 8 * (n_terms + 1));
    L->front_off = o;
    o = align8(o + 8 * (n_terms + 1));
    L->front_tf = o;
    o = align8(o + 4 * n_front);
    L->front_dl = o;
    o = align8(o + 4 * n_front);
    L->post_doc = o;
    o = align8(o + 4 * n_post);
    L->post_tf = o;
    o = align8(o + 2 * n_post);
    L->blob = o;
    o = align8(o + term_bytes);
    L->total = o;
    return o > MAX_SIDECAR_BYTES ? DYNRAG_ERR_LIMIT : DYNRAG_OK;
}

/* A fast 64-bit checksum over whole words (the tail zero-padded). */
static uint64_t checksum64(const uint8_t *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    memcpy(&w, p + i, n - i);
    h = (h ^ w) * 0x100000001b3ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static void put_u64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}
static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Points the typed arrays into e->blob according to the header counts. */
static void bind_arrays(dr_bm25 *e, const layout *L)
{
    uint8_t *b = e->blob;
    e->chunk_id = (const int64_t *)(void *)(b + L->chunk_id);
    e->doc_len = (const uint32_t *)(void *)(b + L->doc_len);
    e->term_off = (const uint32_t *)(void *)(b + L->term_off);
    e->post_off = (const uint64_t *)(void *)(b + L->post_off);
    e->front_off = (const uint64_t *)(void *)(b + L->front_off);
    e->front_tf = (const uint32_t *)(void *)(b + L->front_tf);
    e->front_dl = (const uint32_t *)(void *)(b + L->front_dl);
    e->post_doc = (const uint32_t *)(void *)(b + L->post_doc);
    e->post_tf = (const uint16_t *)(void *)(b + L->post_tf);
    e->terms = (const char *)(b + L->blob);
    e->avgdl = e->n_docs ? (double)e->total_len / (double)e->n_docs : 1.0;
    if (e->avgdl <= 0)
        e->avgdl = 1.0;
}

/* ---- Lucene's English stopwords ------------------------------------------- */

static const char *const stopwords[] = {
    "a",    "an",   "and",  "are",   "as",    "at",    "be",    "but",  "by",
    "for",  "if",   "in",   "into",  "is",    "it",    "no",    "not",  "of",
    "on",   "or",   "such", "that",  "the",   "their", "then",  "there", "these",
    "they", "this", "to",   "was",   "will",  "with",
};

bool dr_bm25_is_stopword(const char *w, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < DR_ARRAY_LEN(stopwords); i++)
        if (strlen(stopwords[i]) == n && memcmp(stopwords[i], w, n) == 0)
            return true;
    return false;
}

/* The source word text[start, end) lower-cased is a stopword (ASCII only). */
static bool span_is_stopword(const char *text, int start, int end)
{
    int n = end - start;
    if (n <= 0 || n > 5)
        return false;
    char w[8];
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[start + i];
        if (c >= 0x80)
            return false;
        w[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    return dr_bm25_is_stopword(w, (size_t)n);
}

/* ---- tokenizer ------------------------------------------------------------- */

/* Opens the private connection and finds FTS5's porter tokenizer. */
static int tokenizer_init(dr_bm25 *e, dynrag_error *err)
{
    int rc = DYNRAG_OK;
    sqlite3_stmt *st = NULL;
    fts5_api *api = NULL;
    if (sqlite3_open_v2(":memory:", &e->tokdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                        NULL) != SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "bm25: cannot open an in-memory SQLite database");
        goto cleanup;
    }
    if (sqlite3_prepare_v2(e->tokdb, "SELECT fts5(?1)", -1, &st, NULL) != SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_UNSUPPORTED, "bm25: SQLite has no FTS5: %s",
                        sqlite3_errmsg(e->tokdb));
        goto cleanup;
    }
    sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
    sqlite3_step(st);
    if (api == NULL || api->iVersion < 2) {
        rc = dr_err_set(err, DYNRAG_ERR_UNSUPPORTED, "bm25: cannot get the fts5_api (v2)");
        goto cleanup;
    }
    if (api->xFindTokenizer(api, "porter", &e->tokctx, &e->tokapi) != SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_UNSUPPORTED, "bm25: FTS5 has no porter tokenizer");
        goto cleanup;
    }
cleanup:
    sqlite3_finalize(st);
    return rc;
}

static Fts5Tokenizer *tokenizer_acquire(const dr_bm25 *ce)
{
    dr_bm25 *e = (dr_bm25 *)ce; /* only the mutex-guarded pool changes */
    static const char *args[] = {"unicode61", "remove_diacritics", "2"};
    Fts5Tokenizer *t = NULL;
    pthread_mutex_lock(&e->mu);
    if (e->n_pool > 0)
        t = e->pool[--e->n_pool];
    else if (e->tokapi.xCreate(e->tokctx, args, 3, &t) != SQLITE_OK)
        t = NULL;
    pthread_mutex_unlock(&e->mu);
    return t;
}

static void tokenizer_release(const dr_bm25 *ce, Fts5Tokenizer *t)
{
    dr_bm25 *e = (dr_bm25 *)ce;
    if (t == NULL)
        return;
    pthread_mutex_lock(&e->mu);
    if (e->n_pool == e->cap_pool) {
        size_t cap = e->cap_pool ? e->cap_pool * 2 : 4;
        Fts5Tokenizer **p = dr_realloc(e->pool, cap * sizeof(*p));
        if (p != NULL) {
            e->pool = p;
            e->cap_pool = cap;
        }
    }
    if (e->n_pool < e->cap_pool) {
        e->pool[e->n_pool++] = t;
        t = NULL;
    }
    pthread_mutex_unlock(&e->mu);
    if (t != NULL)
        e->tokapi.xDelete(t);
}

typedef struct tok_ctx {
    const char *text;
    dr_bm25_token_fn fn;
    void *user;
    int stopped;
} tok_ctx;

static int tok_cb(void *p, int tflags, const char *tok, int n, int start, int end)
{
    tok_ctx *c = p;
    (void)tflags;
    if (c->fn(c->user, tok, n, start, end, span_is_stopword(c->text, start, end)) != 0) {
        c->stopped = 1;
        return SQLITE_DONE; /* any non-OK value ends xTokenize */
    }
    return SQLITE_OK;
}

static int tokenize_flags(const dr_bm25 *e, const char *text, size_t n, int flags,
                          dr_bm25_token_fn fn, void *user, dynrag_error *err)
{
    if (n > INT_MAX)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "bm25: text of %zu bytes is too long", n);
    Fts5Tokenizer *t = tokenizer_acquire(e);
    if (t == NULL)
        return dr_err_set(err, DYNRAG_ERR_INTERNAL, "bm25: cannot create an FTS5 tokenizer");
    tok_ctx c = {text, fn, user, 0};
    int src = e->tokapi.xTokenize(t, &c, flags, text ? text : "", (int)n, tok_cb);
    tokenizer_release(e, t);
    if (c.stopped)
        return DYNRAG_ERR_CANCELLED;
    if (src != SQLITE_OK)
        return dr_err_set(err, src == SQLITE_NOMEM ? DYNRAG_ERR_NOMEM : DYNRAG_ERR_INTERNAL,
                          "bm25: FTS5 tokenizer failed (SQLite code %d)", src);
    return DYNRAG_OK;
}

int dr_bm25_tokenize(const dr_bm25 *e, const char *text, size_t n, dr_bm25_token_fn fn,
                     void *user, dynrag_error *err)
{
    return tokenize_flags(e, text, n, FTS5_TOKENIZE_DOCUMENT, fn, user, err);
}

/* ---- building from FTS5 ------------------------------------------------------ */

/* Grows *p (elements of `size` bytes, capacity *cap) to hold `need`. */
static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return DYNRAG_OK;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    if (c > SIZE_MAX / size)
        return DYNRAG_ERR_NOMEM;
    void *q = dr_realloc(*p, c * size);
    if (q == NULL)
        return DYNRAG_ERR_NOMEM;
    *p = q;
    *cap = c;
    return DYNRAG_OK;
}

typedef struct builder {
    int64_t *ids;        /* ascending chunk ids */
    size_t n_ids, cap_ids;
    uint32_t *dense;     /* id - min_id -> index, or NULL (binary search) */
    int64_t min_id;
    uint64_t dense_n;
    uint32_t *doc_len;
    dr_buf terms;
    uint32_t *term_off;
    size_t n_terms, cap_terms;
    uint64_t *post_off;
    size_t cap_post_off;
    uint32_t *post_doc;
    uint16_t *post_tf;
    size_t n_post, cap_post, cap_post_tf;
    uint32_t *front_tf, *front_dl;
    uint64_t *front_off;
    size_t n_front, cap_front, cap_front_dl;
} builder;

static void builder_free(builder *B)
{
    dr_free(B->ids);
    dr_free(B->dense);
    dr_free(B->doc_len);
    dr_buf_free(&B->terms);
    dr_free(B->term_off);
    dr_free(B->post_off);
    dr_free(B->post_doc);
    dr_free(B->post_tf);
    dr_free(B->front_tf);
    dr_free(B->front_dl);
    dr_free(B->front_off);
}

static int64_t read_generation(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int64_t g = 0;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'generation'", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        g = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return g;
}

/* Reads meta index_id (32 hex digits, written when the database was
 * created) into id; all zero when absent or malformed (an index from
 * before index ids, or a damaged one: such a sidecar matches only a
 * database without an id, and writers always give it one). */
static void read_index_id(sqlite3 *db, uint8_t id[16])
{
    sqlite3_stmt *st = NULL;
    memset(id, 0, 16);
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'index_id'", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const char *hex = (const char *)sqlite3_column_text(st, 0);
        uint8_t tmp[16];
        bool ok = hex != NULL && strlen(hex) == 32;
        for (int i = 0; ok && i < 16; i++) {
            int v = 0;
            for (int j = 0; j < 2; j++) {
                char c = hex[2 * i + j];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
                if (d < 0)
                    ok = false;
                v = v * 16 + d;
            }
            tmp[i] = (uint8_t)v;
        }
        if (ok)
            memcpy(id, tmp, 16);
    }
    sqlite3_finalize(st);
}

static uint32_t lookup_doc(const builder *B, int64_t id)
{
    if (B->dense) {
        if (id < B->min_id || (uint64_t)id - (uint64_t)B->min_id >= B->dense_n)
            return UINT32_MAX;
        return B->dense[(uint64_t)id - (uint64_t)B->min_id];
    }
    size_t lo = 0, hi = B->n_ids;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (B->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < B->n_ids && B->ids[lo] == id ? (uint32_t)lo : UINT32_MAX;
}

static int load_ids(sqlite3 *db, builder *B, dynrag_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = DYNRAG_OK;
    if (sqlite3_prepare_v2(db, "SELECT id FROM chunks ORDER BY id", -1, &st, NULL) != SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "bm25: reading chunks: %s", sqlite3_errmsg(db));
        goto cleanup;
    }
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (B->n_ids >= UINT32_MAX - 1) {
            rc = dr_err_set(err, DYNRAG_ERR_LIMIT, "bm25: more than 2^32-2 chunks");
            goto cleanup;
        }
        if (grow((void **)&B->ids, &B->cap_ids, B->n_ids + 1, sizeof(int64_t)) != DYNRAG_OK) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "bm25: out of memory");
            goto cleanup;
        }
        /* A damaged database can return ids out of order, repeated or
         * NULL: the id -> index map below relies on strictly ascending ids,
         * so anything else is refused here rather than trusted. */
        if (sqlite3_column_type(st, 0) != SQLITE_INTEGER) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                            "bm25: table chunks has a non-integer id "
                            "(the index is damaged)");
            goto cleanup;
        }
        int64_t id = sqlite3_column_int64(st, 0);
        if (B->n_ids > 0 && id <= B->ids[B->n_ids - 1]) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                            "bm25: table chunks returned id %lld after %lld (ids not strictly "
                            "ascending: the index is damaged)",
                            (long long)id, (long long)B->ids[B->n_ids - 1]);
            goto cleanup;
        }
        B->ids[B->n_ids++] = id;
    }
    if (s != SQLITE_DONE) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "bm25: reading chunks: %s", sqlite3_errmsg(db));
        goto cleanup;
    }
    B->doc_len = dr_calloc(B->n_ids ? B->n_ids : 1, sizeof(uint32_t));
    if (B->doc_len == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "bm25: out of memory");
        goto cleanup;
    }
    if (B->n_ids > 0) {
        B->min_id = B->ids[0];
        /* ids ascend strictly, so range >= n_ids and every id - min_id is
         * below range (computed unsigned: no overflow for any int64 pair) */
        uint64_t range = (uint64_t)B->ids[B->n_ids - 1] - (uint64_t)B->ids[0] + 1;
        if (range != 0 && range <= 4 * (uint64_t)B->n_ids + 4096) {
            B->dense = dr_malloc(range * sizeof(uint32_t));
            if (B->dense != NULL) {
                B->dense_n = range;
                memset(B->dense, 0xff, range * sizeof(uint32_t));
                for (size_t i = 0; i < B->n_ids; i++)
                    B->dense[(uint64_t)B->ids[i] - (uint64_t)B->min_id] = (uint32_t)i;
            }
        }
    }
cleanup:
    sqlite3_finalize(st);
    return rc;
}

/* Reads every (term, chunk) instance of chunk_fts in FTS5 order (terms by
 * memcmp, chunks ascending) into postings and chunk lengths. */
static int scan_instances(sqlite3 *db, builder *B, dynrag_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = DYNRAG_OK;
    if (sqlite3_prepare_v2(db, "SELECT term, doc FROM temp.dr_bm25_instance", -1, &st, NULL) !=
        SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "bm25: reading chunk_fts postings: %s",
                        sqlite3_errmsg(db));
        goto cleanup;
    }
    const char *cur = NULL; /* current term, in B->terms */
    size_t cur_len = 0;
    int64_t last_id = 0;
    uint32_t last_doc = UINT32_MAX;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_blob(st, 0);
        size_t tl = (size_t)sqlite3_column_bytes(st, 0);
        int64_t id = sqlite3_column_int64(st, 1);
        bool same = cur != NULL && tl == cur_len && memcmp(t, cur, tl) == 0;
        if (!same) {
            if (tl == 0)
                continue;
            if (cur != NULL) {
                int c = memcmp(cur, t, DR_MIN(cur_len, tl));
                if (c > 0 || (c == 0 && cur_len >= tl)) {
                    rc = dr_err_set(err, DYNRAG_ERR_INTERNAL,
                                    "bm25: fts5vocab terms out of order");
                    goto cleanup;
                }
            }
            if (grow((void **)&B->term_off, &B->cap_terms, B->n_terms + 2, sizeof(uint32_t)) ||
                grow((void **)&B->post_off, &B->cap_post_off, B->n_terms + 2, sizeof(uint64_t))) {
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "bm25: out of memory");
                goto cleanup;
            }
            B->term_off[B->n_terms] = (uint32_t)B->terms.len;
            B->post_off[B->n_terms] = B->n_post;
            B->n_terms++;
            if (B->n_terms >= UINT32_MAX - 1 || B->terms.len + tl > UINT32_MAX) {
                rc = dr_err_set(err, DYNRAG_ERR_LIMIT, "bm25: vocabulary too large");
                goto cleanup;
            }
            if (dr_buf_append(&B->terms, t, tl) != DYNRAG_OK) {
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "bm25: out of memory");
                goto cleanup;
            }
            cur = B->terms.data + B->terms.len - tl;
            cur_len = tl;
            last_doc = UINT32_MAX;
        }
        uint32_t d;
        if (last_doc != UINT32_MAX && id == last_id) {
            d = last_doc;
        } else {
            d = lookup_doc(B, id);
            if (d == UINT32_MAX) {
                rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                                "bm25: chunk_fts has postings for chunk id %lld, which is not "
                                "in table chunks (the FTS5 index is out of sync)",
                                (long long)id);
                goto cleanup;
            }
        }
        B->doc_len[d]++;
        if (d == last_doc) {
            if (B->post_tf[B->n_post - 1] < UINT16_MAX)
                B->post_tf[B->n_post - 1]++;
            continue;
        }
        if (last_doc != UINT32_MAX && d < last_doc) {
            rc = dr_err_set(err, DYNRAG_ERR_INTERNAL, "bm25: fts5vocab chunks out of order");
            goto cleanup;
        }
        if (grow((void **)&B->post_doc, &B->cap_post, B->n_post + 1, sizeof(uint32_t)) ||
            grow((void **)&B->post_tf, &B->cap_post_tf, B->n_post + 1, sizeof(uint16_t))) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "bm25: out of memory");
            goto cleanup;
        }
        B->post_doc[B->n_post] = d;
        B->post_tf[B->n_post] = 1;
        B->n_post++;
        last_doc = d;
        last_id = id;
    }
    if (s != SQLITE_DONE) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "bm25: reading chunk_fts postings: %s",
                        sqlite3_errmsg(db));
        goto cleanup;
    }
    if (grow((void **)&B->term_off, &B->cap_terms, B->n_terms + 1, sizeof(uint32_t)) ||
        grow((void **)&B->post_off, &B->cap_post_off, B->n_terms + 1, sizeof(uint64_t))) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "bm25: out of memory");
        goto cleanup;
    }
    B->term_off[B->n_terms] = (uint32_t)B->terms.len;
    B->post_off[B->n_terms] = B->n_post;
cleanup:
    sqlite3_finalize(st);
    return rc;
}

/* Per term, the Pareto frontier of its postings' (tf, doc length) points:
 * tf strictly decreasing, length strictly decreasing. The maximum of any
 * score increasing in tf and non-increasing in length lies on it. */
static int build_frontiers(builder *B, dynrag_error *err)
{
    int rc = DYNRAG_OK;
    uint32_t *mindl = dr_malloc(((size_t)UINT16_MAX + 1) * sizeof(uint32_t));
    B->front_off = dr_malloc((B->n_terms + 1) * sizeof(uint64_t));
    if (mindl == NULL || B->front_off == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "bm25: out of memory");
        goto cleanup;
    }
    for (size_t t = 0; t < B->n_terms; t++) {
        uint32_t maxtf = 0;
        for (uint64_t p = B->post_off[t]; p < B->post_off[t + 1]; p++)
            if (B->post_tf[p] > maxtf)
                maxtf = B->post_tf[p];
        for (uint32_t i = 1; i <= maxtf; i++)
            mindl[i] = UINT32_MAX;
        for (uint64_t p = B->post_off[t]; p < B->post_off[t + 1]; p++) {
            uint32_t dl = B->doc_len[B->post_doc[p]];
            if (dl < mindl[B->post_tf[p]])
                mindl[B->post_tf[p]] = dl;
        }
        B->front_off[t] = B->n_front;
        uint32_t best = UINT32_MAX;
        for (uint32_t tf = maxtf; tf >= 1; tf--) {
            if (mindl[tf] == UINT32_MAX || (best != UINT32_MAX && mindl[tf] >= best))
                continue;
            best = mindl[tf];
            if (grow((void **)&B->front_tf, &B->cap_front, B->n_front + 1, sizeof(uint32_t)) ||
                grow((void **)&B->front_dl, &B->cap_front_dl, B->n_front + 1, sizeof(uint32_t))) {
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "bm25: out of memory");
                goto cleanup;
            }
            B->front_tf[B->n_front] = tf;
            B->front_dl[B->n_front] = best;
            B->n_front++;
        }
    }
    B->front_off[B->n_terms] = B->n_front;
cleanup:
    dr_free(mindl);
    return rc;
}

/* Lays the builder's arrays out as a sidecar image in e->blob. */
static int assemble(dr_bm25 *e, builder *B, int64_t generation, const uint8_t index_id[16],
                    dynrag_error *err)
{
    layout L;
    if (layout_compute(B->n_ids, B->n_terms, B->n_post, B->n_front, B->terms.len, &L) !=
        DYNRAG_OK)
        return dr_err_set(err, DYNRAG_ERR_LIMIT, "bm25: index too large");
    e->blob = dr_calloc(1, L.total);
    if (e->blob == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "bm25: out of memory (%llu bytes)",
                          (unsigned long long)L.total);
    e->blob_size = L.total;
    uint8_t *b = e->blob;
    uint64_t total_len = 0;
    for (size_t i = 0; i < B->n_ids; i++)
        total_len += B->doc_len[i];
    if (B->n_ids) {
        memcpy(b + L.chunk_id, B->ids, 8 * B->n_ids);
        memcpy(b + L.doc_len, B->doc_len, 4 * B->n_ids);
    }
    memcpy(b + L.term_off, B->term_off, 4 * (B->n_terms + 1));
    memcpy(b + L.post_off, B->post_off, 8 * (B->n_terms + 1));
    memcpy(b + L.front_off, B->front_off, 8 * (B->n_terms + 1));
    if (B->n_front) {
        memcpy(b + L.front_tf, B->front_tf, 4 * B->n_front);
        memcpy(b + L.front_dl, B->front_dl, 4 * B->n_front);
    }
    if (B->n_post) {
        memcpy(b + L.post_doc, B->post_doc, 4 * B->n_post);
        memcpy(b + L.post_tf, B->post_tf, 2 * B->n_post);
    }
    if (B->terms.len)
        memcpy(b + L.blob, B->terms.data, B->terms.len);
    memcpy(b, MAGIC, 8);
    put_u32(b + 8, DR_BM25_VERSION);
    put_u32(b + 12, HEADER_SIZE);
    put_u64(b + 16, (uint64_t)generation);
    put_u32(b + 24, (uint32_t)B->n_ids);
    put_u32(b + 28, (uint32_t)B->n_terms);
    put_u64(b + 32, B->n_post);
    put_u64(b + 40, B->n_front);
    put_u64(b + 48, B->terms.len);
    put_u64(b + 56, total_len);
    put_u64(b + 64, checksum64(b + HEADER_SIZE, L.total - HEADER_SIZE));
    put_u64(b + 72, L.total);
    memcpy(b + 80, index_id, 16);
    memcpy(e->index_id, index_id, 16);
    e->generation = generation;
    e->n_docs = (uint32_t)B->n_ids;
    e->n_terms = (uint32_t)B->n_terms;
    e->n_postings = B->n_post;
    e->n_frontier = B->n_front;
    e->term_bytes = B->terms.len;
    e->total_len = total_len;
    bind_arrays(e, &L);
    return DYNRAG_OK;
}

/* Checks that chunk_fts uses the tokenizer the engine queries with. */
static int check_tokenizer(sqlite3 *db, dynrag_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = DYNRAG_OK;
    if (sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_master WHERE name = 'chunk_fts'", -1, &st,
                           NULL) != SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "bm25: %s", sqlite3_errmsg(db));
    } else if (sqlite3_step(st) != SQLITE_ROW) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "bm25: the index has no chunk_fts table");
    } else {
        const char *sql = (const char *)sqlite3_column_text(st, 0);
        if (sql == NULL || strstr(sql, "porter unicode61 remove_diacritics 2") == NULL)
            rc = dr_err_set(err, DYNRAG_ERR_MISMATCH,
                            "bm25: chunk_fts must use tokenize='porter unicode61 "
                            "remove_diacritics 2' (found: %s)",
                            sql ? sql : "?");
    }
    sqlite3_finalize(st);
    return rc;
}

static int build_from_fts(dr_bm25 *e, sqlite3 *db, dynrag_error *err)
{
    builder B = {0};
    int rc = DYNRAG_OK;
    bool began = false, created = false;
    char *msg = NULL;
    rc = check_tokenizer(db, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    if (sqlite3_exec(db,
                     "CREATE VIRTUAL TABLE IF NOT EXISTS temp.dr_bm25_instance USING "
                     "fts5vocab(main, chunk_fts, instance)",
                     NULL, NULL, &msg) != SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "bm25: cannot read chunk_fts through fts5vocab: %s",
                        msg ? msg : sqlite3_errmsg(db));
        goto cleanup;
    }
    created = true;
    if (sqlite3_get_autocommit(db)) {
        if (sqlite3_exec(db, "BEGIN", NULL, NULL, &msg) != SQLITE_OK) {
            rc = dr_err_set(err, DYNRAG_ERR_DB, "bm25: BEGIN: %s", msg ? msg : "");
            goto cleanup;
        }
        began = true;
    }
    int64_t generation = read_generation(db);
    uint8_t index_id[16];
    read_index_id(db, index_id);
    rc = load_ids(db, &B, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    rc = scan_instances(db, &B, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    rc = build_frontiers(&B, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    rc = assemble(e, &B, generation, index_id, err);
cleanup:
    sqlite3_free(msg);
    if (began)
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (created)
        sqlite3_exec(db, "DROP TABLE IF EXISTS temp.dr_bm25_instance", NULL, NULL, NULL);
    builder_free(&B);
    return rc;
}

/* ---- the sidecar file --------------------------------------------------------- */

/* Writes e->blob to path atomically (dr_write_file_atomic: a uniquely named
 * temporary file, fsync and rename), so readers see the old file or the
 * whole new one. */
static int write_sidecar(const dr_bm25 *e, const char *path, dynrag_error *err)
{
    return dr_write_file_atomic(path, e->blob, e->blob_size, err);
}

/* Checks every array of a loaded image against its bounds and invariants. */
static int validate(const dr_bm25 *e, const char *path, dynrag_error *err)
{
#define BAD(what) return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: corrupt sidecar (%s)", path, what)
    uint64_t total = 0;
    for (uint32_t i = 0; i < e->n_docs; i++) {
        if (i > 0 && e->chunk_id[i] <= e->chunk_id[i - 1])
            BAD("chunk ids not ascending");
        total += e->doc_len[i];
    }
    if (total != e->total_len)
        BAD("chunk lengths");
    if (e->term_off[0] != 0 || e->term_off[e->n_terms] != e->term_bytes || e->post_off[0] != 0 ||
        e->post_off[e->n_terms] != e->n_postings || e->front_off[0] != 0 ||
        e->front_off[e->n_terms] != e->n_frontier)
        BAD("offset bounds");
    for (uint32_t t = 0; t < e->n_terms; t++) {
        if (e->term_off[t + 1] <= e->term_off[t] || e->post_off[t + 1] <= e->post_off[t] ||
            e->front_off[t + 1] <= e->front_off[t] ||
            e->term_off[t + 1] > e->term_bytes || e->post_off[t + 1] > e->n_postings ||
            e->front_off[t + 1] > e->n_frontier)
            BAD("offsets not increasing");
        if (t > 0) {
            size_t la = e->term_off[t] - e->term_off[t - 1];
            size_t lb = e->term_off[t + 1] - e->term_off[t];
            int c = memcmp(e->terms + e->term_off[t - 1], e->terms + e->term_off[t],
                           DR_MIN(la, lb));
            if (c > 0 || (c == 0 && la >= lb))
                BAD("terms not sorted");
        }
        for (uint64_t p = e->post_off[t]; p < e->post_off[t + 1]; p++) {
            if (e->post_doc[p] >= e->n_docs || e->post_tf[p] == 0)
                BAD("posting out of range");
            if (p > e->post_off[t] && e->post_doc[p] <= e->post_doc[p - 1])
                BAD("postings not ascending");
        }
        for (uint64_t f = e->front_off[t]; f < e->front_off[t + 1]; f++) {
            if (e->front_tf[f] == 0)
                BAD("frontier");
            if (f > e->front_off[t] &&
                (e->front_tf[f] >= e->front_tf[f - 1] || e->front_dl[f] >= e->front_dl[f - 1]))
                BAD("frontier order");
        }
    }
    return DYNRAG_OK;
#undef BAD
}

/* Loads and checks path. DYNRAG_ERR_NOTFOUND when absent, DYNRAG_ERR_FORMAT
 * when damaged, DYNRAG_ERR_MISMATCH when built from another database
 * (index_id) or another generation of it. */
static int load_sidecar(dr_bm25 *e, const char *path, int64_t generation,
                        const uint8_t index_id[16], dynrag_error *err)
{
    int rc = DYNRAG_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dr_err_set(err, errno == ENOENT ? DYNRAG_ERR_NOTFOUND : DYNRAG_ERR_IO, "%s: %s",
                          path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: not a regular file", path);
        goto cleanup;
    }
    if (sb.st_size < HEADER_SIZE || (uint64_t)sb.st_size > MAX_SIDECAR_BYTES) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: bad size %lld", path,
                        (long long)sb.st_size);
        goto cleanup;
    }
    size_t size = (size_t)sb.st_size;
    e->blob = dr_malloc(size);
    if (e->blob == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    e->blob_size = size;
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, e->blob + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: short read", path);
            goto cleanup;
        }
        got += (size_t)r;
    }
    const uint8_t *b = e->blob;
    if (memcmp(b, MAGIC, 8) != 0 || get_u32(b + 8) != DR_BM25_VERSION ||
        get_u32(b + 12) != HEADER_SIZE) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: not a version %d BM25 sidecar", path,
                        DR_BM25_VERSION);
        goto cleanup;
    }
    e->generation = (int64_t)get_u64(b + 16);
    memcpy(e->index_id, b + 80, 16);
    e->n_docs = get_u32(b + 24);
    e->n_terms = get_u32(b + 28);
    e->n_postings = get_u64(b + 32);
    e->n_frontier = get_u64(b + 40);
    e->term_bytes = get_u64(b + 48);
    e->total_len = get_u64(b + 56);
    layout L;
    if (get_u64(b + 72) != size ||
        layout_compute(e->n_docs, e->n_terms, e->n_postings, e->n_frontier, e->term_bytes,
                       &L) != DYNRAG_OK ||
        L.total != size) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: truncated or inconsistent sizes", path);
        goto cleanup;
    }
    if (checksum64(b + HEADER_SIZE, size - HEADER_SIZE) != get_u64(b + 64)) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: checksum mismatch", path);
        goto cleanup;
    }
    bind_arrays(e, &L);
    rc = validate(e, path, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    if (memcmp(e->index_id, index_id, 16) != 0)
        rc = dr_err_set(err, DYNRAG_ERR_MISMATCH,
                        "%s: built from another index.db (index_id differs): stale", path);
    else if (e->generation != generation)
        rc = dr_err_set(err, DYNRAG_ERR_MISMATCH, "%s: built from generation %lld, index is at %lld",
                        path, (long long)e->generation, (long long)generation);
cleanup:
    close(fd);
    if (rc != DYNRAG_OK) {
        dr_free(e->blob);
        e->blob = NULL;
        e->blob_size = 0;
    }
    return rc;
}

/* force: ignore an existing sidecar; save: write the sidecar after a
 * build (a failure is logged, not an error). */
static int open_engine(sqlite3 *db, const char *dir, bool force, bool save, dr_bm25 **out,
                       dynrag_error *err)
{
    int64_t t0 = dr_now_us();
    int rc = DYNRAG_OK;
    char *path = NULL;
    *out = NULL;
    if (db == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "bm25: no database");
    dr_bm25 *e = dr_calloc(1, sizeof(*e));
    if (e == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&e->mu, NULL);
    rc = tokenizer_init(e, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    if (dir != NULL) {
        path = dr_asprintf("%s/%s", dir, DR_BM25_SIDECAR);
        if (path == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
    }
    if (path != NULL && !force) {
        dynrag_error lerr;
        dynrag_error_clear(&lerr);
        uint8_t index_id[16];
        read_index_id(db, index_id);
        int lrc = load_sidecar(e, path, read_generation(db), index_id, &lerr);
        if (lrc == DYNRAG_OK) {
            e->info.from_sidecar = true;
            goto done;
        }
        if (lrc != DYNRAG_ERR_NOTFOUND)
            dr_log(DYNRAG_LOG_INFO, "bm25", "rebuilding: %s", dynrag_errmsg(&lerr));
    }
    rc = build_from_fts(e, db, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    if (path != NULL && save) {
        dynrag_error werr;
        dynrag_error_clear(&werr);
        if (write_sidecar(e, path, &werr) == DYNRAG_OK)
            e->info.sidecar_written = true;
        else
            dr_log(DYNRAG_LOG_WARN, "bm25", "cannot save the BM25 sidecar: %s",
                   dynrag_errmsg(&werr));
    }
done:
    e->info.generation = e->generation;
    e->info.n_docs = e->n_docs;
    e->info.n_terms = e->n_terms;
    e->info.n_postings = e->n_postings;
    e->info.avgdl = e->n_docs ? (double)e->total_len / e->n_docs : 0.0;
    e->info.bytes = e->blob_size;
    e->info.open_seconds = (double)(dr_now_us() - t0) / 1e6;
    *out = e;
    e = NULL;
cleanup:
    dr_free(path);
    dr_bm25_free(e);
    return rc;
}

int dr_bm25_open(sqlite3 *db, const char *dir, dr_bm25 **out, dynrag_error *err)
{
    return open_engine(db, dir, false, true, out, err);
}

int dr_bm25_load(sqlite3 *db, const char *dir, dr_bm25 **out, dynrag_error *err)
{
    return open_engine(db, dir, false, false, out, err);
}

int dr_bm25_rebuild(sqlite3 *db, const char *dir, dr_bm25 **out, dynrag_error *err)
{
    return open_engine(db, dir, true, true, out, err);
}

void dr_bm25_free(dr_bm25 *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->n_pool; i++)
        e->tokapi.xDelete(e->pool[i]);
    dr_free(e->pool);
    sqlite3_close(e->tokdb);
    pthread_mutex_destroy(&e->mu);
    dr_free(e->blob);
    dr_free(e);
}

void dr_bm25_get_info(const dr_bm25 *e, dr_bm25_info *info)
{
    *info = e->info;
}

/* ---- query preparation -------------------------------------------------------- */

typedef struct qterm {
    uint32_t term;
    int qtf;
    double w;  /* qtf * idf * (k1 + 1) */
    double ub; /* max contribution over the term's postings */
    const uint32_t *docs;
    const uint16_t *tfs;
    uint64_t n, pos;
} qterm;

typedef struct query {
    qterm *t;
    int n;
    double c0, c1; /* K(dl) = c0 + c1 * dl */
} query;

typedef struct tok_list {
    dr_buf bytes;
    size_t *off;
    int *len;
    size_t n, cap;
    int rc;
} tok_list;

static int collect_tok(void *user, const char *tok, int len, int start, int end, bool stop)
{
    tok_list *L = user;
    (void)start;
    (void)end;
    if (stop || len <= 0)
        return 0;
    if (L->n == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 32;
        size_t *o = dr_realloc(L->off, cap * sizeof(size_t));
        if (o == NULL)
            goto nomem;
        L->off = o;
        int *l = dr_realloc(L->len, cap * sizeof(int));
        if (l == NULL)
            goto nomem;
        L->len = l;
        L->cap = cap;
    }
    L->off[L->n] = L->bytes.len;
    L->len[L->n] = len;
    if (dr_buf_append(&L->bytes, tok, (size_t)len) != DYNRAG_OK)
        goto nomem;
    L->n++;
    return 0;
nomem:
    L->rc = DYNRAG_ERR_NOMEM;
    return 1;
}

/* Index of the term equal to s[0..n) or UINT32_MAX. */
static uint32_t find_term(const dr_bm25 *e, const char *s, size_t n)
{
    uint32_t lo = 0, hi = e->n_terms;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const char *t = e->terms + e->term_off[mid];
        size_t tl = e->term_off[mid + 1] - e->term_off[mid];
        int c = memcmp(t, s, DR_MIN(tl, n));
        if (c == 0)
            c = tl < n ? -1 : tl > n ? 1 : 0;
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return UINT32_MAX;
}

static inline double bm25_part(double w, double tf, double K)
{
    return w * tf / (tf + K);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_qterm_ub(const void *a, const void *b)
{
    const qterm *x = a, *y = b;
    if (x->ub != y->ub)
        return x->ub < y->ub ? -1 : 1;
    return x->term < y->term ? -1 : x->term > y->term;
}

/* Tokenizes the query, looks its terms up and orders them by upper bound
 * (the canonical summation order). q->t is malloc'ed (caller frees). */
static int prepare_query(const dr_bm25 *e, const char *text, int k, double k1, double b,
                         query *q, dynrag_error *err)
{
    tok_list L = {0};
    uint32_t *ids = NULL;
    int rc = DYNRAG_OK;
    memset(q, 0, sizeof(*q));
    if (k < 1 || k > DR_BM25_MAX_K)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "bm25: k=%d is outside [1, %d]", k,
                          DR_BM25_MAX_K);
    if (!(k1 >= 0 && k1 <= 100) || !(b >= 0 && b <= 1))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "bm25: k1=%g must be in [0, 100], b=%g in [0, 1]",
                          k1, b);
    if (text == NULL)
        return DYNRAG_OK;
    size_t n = strlen(text);
    if (n > MAX_QUERY_BYTES)
        return dr_err_set(err, DYNRAG_ERR_LIMIT, "bm25: query of %zu bytes (limit %zu)", n,
                          MAX_QUERY_BYTES);
    rc = tokenize_flags(e, text, n, FTS5_TOKENIZE_QUERY, collect_tok, &L, err);
    if (rc == DYNRAG_ERR_CANCELLED)
        rc = dr_err_set(err, L.rc ? L.rc : DYNRAG_ERR_INTERNAL, "bm25: out of memory");
    if (rc != DYNRAG_OK || L.n == 0)
        goto cleanup;
    ids = dr_malloc(L.n * sizeof(uint32_t));
    q->t = dr_calloc(L.n, sizeof(qterm));
    if (ids == NULL || q->t == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "bm25: out of memory");
        goto cleanup;
    }
    size_t m = 0;
    for (size_t i = 0; i < L.n; i++) {
        uint32_t t = find_term(e, L.bytes.data + L.off[i], (size_t)L.len[i]);
        if (t != UINT32_MAX)
            ids[m++] = t;
    }
    qsort(ids, m, sizeof(uint32_t), cmp_u32);
    double N = (double)e->n_docs;
    q->c0 = k1 * (1.0 - b);
    q->c1 = k1 * b / e->avgdl;
    for (size_t i = 0; i < m;) {
        size_t j = i;
        while (j < m && ids[j] == ids[i])
            j++;
        uint32_t t = ids[i];
        qterm *qt = &q->t[q->n++];
        qt->term = t;
        qt->qtf = (int)(j - i);
        qt->docs = e->post_doc + e->post_off[t];
        qt->tfs = e->post_tf + e->post_off[t];
        qt->n = e->post_off[t + 1] - e->post_off[t];
        double df = (double)qt->n;
        double idf = log(1.0 + (N - df + 0.5) / (df + 0.5));
        qt->w = (double)qt->qtf * idf * (k1 + 1.0);
        double ub = 0;
        for (uint64_t f = e->front_off[t]; f < e->front_off[t + 1]; f++) {
            double s = bm25_part(qt->w, (double)e->front_tf[f],
                                 q->c0 + q->c1 * (double)e->front_dl[f]);
            if (s > ub)
                ub = s;
        }
        qt->ub = ub;
        i = j;
    }
    qsort(q->t, (size_t)q->n, sizeof(qterm), cmp_qterm_ub);
cleanup:
    dr_buf_free(&L.bytes);
    dr_free(L.off);
    dr_free(L.len);
    dr_free(ids);
    if (rc != DYNRAG_OK) {
        dr_free(q->t);
        q->t = NULL;
        q->n = 0;
    }
    return rc;
}

/* ---- top-k heap --------------------------------------------------------------- */

typedef struct hit {
    double score;
    uint32_t doc;
} hit;

/* a ranks below b: lower score, or equal score and higher chunk index. */
static inline bool worse(hit a, hit b)
{
    return a.score < b.score || (a.score == b.score && a.doc > b.doc);
}

static void sift_down(hit *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(h[l], h[m]))
            m = l;
        if (r < n && worse(h[r], h[m]))
            m = r;
        if (m == i)
            return;
        hit t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void sift_up(hit *h, int i)
{
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!worse(h[i], h[p]))
            return;
        hit t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

/* Offers a hit to a heap of capacity k; returns true when it was taken. */
static inline bool heap_offer(hit *h, int *n, int k, hit x)
{
    if (*n < k) {
        h[*n] = x;
        sift_up(h, (*n)++);
        return true;
    }
    if (!worse(h[0], x))
        return false;
    h[0] = x;
    sift_down(h, *n, 0);
    return true;
}

static int cmp_hit_best(const void *a, const void *b)
{
    hit x = *(const hit *)a, y = *(const hit *)b;
    return worse(y, x) ? -1 : worse(x, y) ? 1 : 0;
}

static void emit(const dr_bm25 *e, hit *h, int n, int64_t *ids, double *scores, int *n_out)
{
    qsort(h, (size_t)n, sizeof(hit), cmp_hit_best);
    for (int i = 0; i < n; i++) {
        ids[i] = e->chunk_id[h[i].doc];
        if (scores)
            scores[i] = h[i].score;
    }
    *n_out = n;
}

/* ---- MaxScore ------------------------------------------------------------------ */

/* First position >= pos whose doc is >= target (n when none). */
static inline uint64_t gallop(const uint32_t *d, uint64_t pos, uint64_t n, uint32_t target)
{
    if (pos >= n || d[pos] >= target)
        return pos;
    uint64_t lo = pos, step = 1;
    while (lo + step < n && d[lo + step] < target) {
        lo += step;
        step <<= 1;
    }
    uint64_t hi = lo + step < n ? lo + step : n;
    while (lo + 1 < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (d[mid] < target)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/* MaxScore document-at-a-time top-k over a prepared query. */
static int search_maxscore(const dr_bm25 *e, query q, int k, int64_t *chunk_ids, double *scores,
                           int *n_out, dynrag_error *err)
{
    hit *heap = NULL;
    double *bound = NULL, *contrib = NULL;
    int rc = DYNRAG_OK;
    int n = q.n;
    int cap = k < (int)e->n_docs ? k : (int)e->n_docs;
    heap = dr_malloc((size_t)(cap > 0 ? cap : 1) * sizeof(hit));
    bound = dr_malloc((size_t)(n + 1) * sizeof(double));
    contrib = dr_calloc((size_t)n, sizeof(double));
    if (heap == NULL || bound == NULL || contrib == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "bm25: out of memory");
        goto cleanup;
    }
    /* bound[i]: what terms 0..i-1 together can add (with a rounding margin). */
    bound[0] = 0;
    for (int i = 0; i < n; i++)
        bound[i + 1] = (bound[i] + q.t[i].ub);
    for (int i = 1; i <= n; i++)
        bound[i] *= UB_SLACK;
    double theta = -INFINITY; /* score to beat once the heap is full */
    int ess = 0;              /* terms [ess, n) are essential */
    int nh = 0;
    const double c0 = q.c0, c1 = q.c1;
    const uint32_t *dl = e->doc_len;
    for (;;) {
        uint32_t cur = UINT32_MAX;
        for (int i = ess; i < n; i++)
            if (q.t[i].pos < q.t[i].n && q.t[i].docs[q.t[i].pos] < cur)
                cur = q.t[i].docs[q.t[i].pos];
        if (cur == UINT32_MAX)
            break;
        const double K = c0 + c1 * (double)dl[cur];
        double partial = 0;
        for (int i = ess; i < n; i++) {
            qterm *t = &q.t[i];
            if (t->pos < t->n && t->docs[t->pos] == cur) {
                contrib[i] = bm25_part(t->w, (double)t->tfs[t->pos], K);
                partial += contrib[i];
                t->pos++;
            }
        }
        bool pruned = false;
        for (int i = ess - 1; i >= 0; i--) {
            if (partial + bound[i + 1] <= theta) {
                pruned = true;
                break;
            }
            qterm *t = &q.t[i];
            t->pos = gallop(t->docs, t->pos, t->n, cur);
            if (t->pos < t->n && t->docs[t->pos] == cur) {
                contrib[i] = bm25_part(t->w, (double)t->tfs[t->pos], K);
                partial += contrib[i];
            }
        }
        if (!pruned) {
            double s = 0;
            for (int i = 0; i < n; i++) {
                s += contrib[i];
                contrib[i] = 0;
            }
            hit h = {s, cur};
            if (heap_offer(heap, &nh, cap, h) && nh == cap) {
                theta = heap[0].score;
                while (ess < n && bound[ess + 1] <= theta)
                    ess++;
            }
        } else {
            memset(contrib, 0, (size_t)n * sizeof(double));
        }
        if (ess >= n)
            break;
    }
    emit(e, heap, nh, chunk_ids, scores, n_out);
cleanup:
    dr_free(heap);
    dr_free(bound);
    dr_free(contrib);
    return rc;
}

/* Term-at-a-time into a per-call accumulator, then a heap over the touched
 * chunks. Contributions are > 0, so acc[d] == 0 means "not touched". */
static int search_taat(const dr_bm25 *e, query q, int k, int64_t *chunk_ids, double *scores,
                       int *n_out, dynrag_error *err)
{
    int rc = DYNRAG_OK;
    uint64_t sum_df = 0;
    for (int i = 0; i < q.n; i++)
        sum_df += q.t[i].n;
    size_t max_touched = (size_t)DR_MIN(sum_df, (uint64_t)e->n_docs);
    int cap = k < (int)e->n_docs ? k : (int)e->n_docs;
    double *acc = dr_calloc(e->n_docs, sizeof(double));
    uint32_t *touched = dr_malloc((max_touched ? max_touched : 1) * sizeof(uint32_t));
    hit *heap = dr_malloc((size_t)(cap > 0 ? cap : 1) * sizeof(hit));
    if (acc == NULL || touched == NULL || heap == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "bm25: out of memory");
        goto cleanup;
    }
    size_t nt = 0;
    const uint32_t *dl = e->doc_len;
    for (int i = 0; i < q.n; i++) {
        const qterm *t = &q.t[i];
        for (uint64_t p = 0; p < t->n; p++) {
            uint32_t d = t->docs[p];
            if (acc[d] == 0)
                touched[nt++] = d;
            acc[d] += bm25_part(t->w, (double)t->tfs[p], q.c0 + q.c1 * (double)dl[d]);
        }
    }
    int nh = 0;
    for (size_t i = 0; i < nt; i++)
        heap_offer(heap, &nh, cap, (hit){acc[touched[i]], touched[i]});
    emit(e, heap, nh, chunk_ids, scores, n_out);
cleanup:
    dr_free(acc);
    dr_free(touched);
    dr_free(heap);
    return rc;
}

int dr_bm25_search_with(const dr_bm25 *e, const char *text, int k, double k1, double b,
                        dr_bm25_strategy strategy, int64_t *chunk_ids, double *scores, int *n_out,
                        dynrag_error *err)
{
    query q;
    *n_out = 0;
    int rc = prepare_query(e, text, k, k1, b, &q, err);
    if (rc != DYNRAG_OK || q.n == 0)
        goto cleanup;
    if (strategy == DR_BM25_AUTO) {
        /* The accumulator wins when the query's postings cover a good part
         * of a collection small enough for it to stay in cache. */
        uint64_t sum_df = 0;
        for (int i = 0; i < q.n; i++)
            sum_df += q.t[i].n;
        strategy = e->n_docs <= DR_BM25_TAAT_MAX_DOCS && 2 * sum_df >= e->n_docs
                       ? DR_BM25_TAAT
                       : DR_BM25_MAXSCORE;
    }
    if (strategy == DR_BM25_TAAT)
        rc = search_taat(e, q, k, chunk_ids, scores, n_out, err);
    else
        rc = search_maxscore(e, q, k, chunk_ids, scores, n_out, err);
cleanup:
    dr_free(q.t);
    return rc;
}

int dr_bm25_search(const dr_bm25 *e, const char *text, int k, double k1, double b,
                   int64_t *chunk_ids, double *scores, int *n_out, dynrag_error *err)
{
    return dr_bm25_search_with(e, text, k, k1, b, DR_BM25_AUTO, chunk_ids, scores, n_out, err);
}

int dr_bm25_search_exact(const dr_bm25 *e, const char *text, int k, double k1, double b,
                         int64_t *chunk_ids, double *scores, int *n_out, dynrag_error *err)
{
    query q;
    hit *heap = NULL;
    double *acc = NULL;
    uint8_t *seen = NULL;
    *n_out = 0;
    int rc = prepare_query(e, text, k, k1, b, &q, err);
    if (rc != DYNRAG_OK || q.n == 0)
        goto cleanup;
    int cap = k < (int)e->n_docs ? k : (int)e->n_docs;
    heap = dr_malloc((size_t)(cap > 0 ? cap : 1) * sizeof(hit));
    acc = dr_calloc(e->n_docs, sizeof(double));
    seen = dr_calloc(e->n_docs, 1);
    if (heap == NULL || acc == NULL || seen == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "bm25: out of memory");
        goto cleanup;
    }
    /* Term-at-a-time in the canonical order: the same additions, in the
     * same order, as dr_bm25_search() performs for each scored chunk. */
    for (int i = 0; i < q.n; i++) {
        const qterm *t = &q.t[i];
        for (uint64_t p = 0; p < t->n; p++) {
            uint32_t d = t->docs[p];
            acc[d] += bm25_part(t->w, (double)t->tfs[p], q.c0 + q.c1 * (double)e->doc_len[d]);
            seen[d] = 1;
        }
    }
    int nh = 0;
    for (uint32_t d = 0; d < e->n_docs; d++)
        if (seen[d])
            heap_offer(heap, &nh, cap, (hit){acc[d], d});
    emit(e, heap, nh, chunk_ids, scores, n_out);
cleanup:
    dr_free(q.t);
    dr_free(heap);
    dr_free(acc);
    dr_free(seen);
    return rc;
}
