/* fts.c - FTS5 tokenizer access, safe query building and fallback BM25. */
#include "retrieve/fts.h"

#include "core/text.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The FTS5 API of a connection, via the documented "SELECT fts5(?1)"
 * pointer-passing idiom. NULL when FTS5 is missing. */
static fts5_api *fts5_api_of(sqlite3 *db)
{
    fts5_api *api = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return api;
}

/* ---- the dr_bm25 auxiliary function ------------------------------------------ */

typedef struct bm25_data {
    int n_phrase;
    double avgdl;
    double *idf; /* [n_phrase] */
    double *freq; /* [n_phrase] scratch */
} bm25_data;

static int count_row(const Fts5ExtensionApi *api, Fts5Context *ctx, void *user)
{
    (void)api;
    (void)ctx;
    (*(sqlite3_int64 *)user)++;
    return SQLITE_OK;
}

static void bm25_data_free(void *p)
{
    bm25_data *d = p;
    if (d) {
        free(d->idf);
        free(d);
    }
}

/* Per-query statistics, computed on the first row and kept as aux data. */
static int bm25_data_get(const Fts5ExtensionApi *api, Fts5Context *ctx, bm25_data **out)
{
    bm25_data *d = api->xGetAuxdata(ctx, 0);
    if (d) {
        *out = d;
        return SQLITE_OK;
    }
    int np = api->xPhraseCount(ctx);
    sqlite3_int64 n_row = 0, n_tok = 0;
    int rc = api->xRowCount(ctx, &n_row);
    if (rc == SQLITE_OK)
        rc = api->xColumnTotalSize(ctx, -1, &n_tok);
    if (rc != SQLITE_OK)
        return rc;
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return SQLITE_NOMEM;
    d->idf = calloc((size_t)(np > 0 ? np : 1) * 2, sizeof(double));
    if (d->idf == NULL) {
        free(d);
        return SQLITE_NOMEM;
    }
    d->freq = d->idf + (np > 0 ? np : 1);
    d->n_phrase = np;
    d->avgdl = n_row > 0 ? (double)n_tok / (double)n_row : 1.0;
    if (d->avgdl <= 0)
        d->avgdl = 1.0;
    for (int i = 0; i < np && rc == SQLITE_OK; i++) {
        sqlite3_int64 hits = 0;
        rc = api->xQueryPhrase(ctx, i, &hits, count_row);
        double N = (double)n_row, df = (double)hits;
        d->idf[i] = log(1.0 + (N - df + 0.5) / (df + 0.5));
    }
    if (rc == SQLITE_OK)
        rc = api->xSetAuxdata(ctx, d, bm25_data_free);
    else
        bm25_data_free(d);
    if (rc == SQLITE_OK)
        *out = d;
    return rc;
}

static void bm25_fn(const Fts5ExtensionApi *api, Fts5Context *ctx, sqlite3_context *res,
                    int n_val, sqlite3_value **val)
{
    double k1 = n_val > 0 ? sqlite3_value_double(val[0]) : 0.9;
    double b = n_val > 1 ? sqlite3_value_double(val[1]) : 0.4;
    bm25_data *d = NULL;
    int rc = bm25_data_get(api, ctx, &d);
    int n_inst = 0, dl = 0;
    if (rc == SQLITE_OK)
        rc = api->xInstCount(ctx, &n_inst);
    if (rc == SQLITE_OK)
        rc = api->xColumnSize(ctx, -1, &dl);
    if (rc != SQLITE_OK) {
        sqlite3_result_error_code(res, rc);
        return;
    }
    for (int i = 0; i < d->n_phrase; i++)
        d->freq[i] = 0;
    for (int i = 0; i < n_inst; i++) {
        int phrase, col, off;
        if (api->xInst(ctx, i, &phrase, &col, &off) == SQLITE_OK && phrase >= 0 &&
            phrase < d->n_phrase)
            d->freq[phrase] += 1.0;
    }
    double norm = k1 * (1.0 - b + b * (double)dl / d->avgdl);
    double score = 0;
    for (int i = 0; i < d->n_phrase; i++)
        if (d->freq[i] > 0)
            score += d->idf[i] * d->freq[i] * (k1 + 1.0) / (d->freq[i] + norm);
    sqlite3_result_double(res, score);
}

int dr_fts_register(sqlite3 *db, dynrag_error *err)
{
    fts5_api *api = fts5_api_of(db);
    if (api == NULL)
        return dr_err_set(err, DYNRAG_ERR_DB, "SQLite has no FTS5");
    if (api->xCreateFunction(api, "dr_bm25", NULL, bm25_fn, NULL) != SQLITE_OK)
        return dr_err_set(err, DYNRAG_ERR_DB, "cannot register the dr_bm25 FTS5 function");
    return DYNRAG_OK;
}

/* ---- query terms --------------------------------------------------------------- */

typedef struct term_ctx {
    const char *query;
    dr_fts_terms *out;
    dr_buf match;
    size_t cap;
    int rc;
} term_ctx;

static int on_token(void *user, int tflags, const char *tok, int n_tok, int start, int end)
{
    term_ctx *c = user;
    if (tflags & FTS5_TOKEN_COLOCATED)
        return SQLITE_OK;
    /* stopword test on the lower-cased surface form */
    char surf[72];
    size_t slen = (size_t)(end - start);
    if (slen < sizeof(surf)) {
        for (size_t i = 0; i < slen; i++) {
            char ch = c->query[start + (int)i];
            surf[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        }
        surf[slen] = '\0';
        if (dr_text_is_stopword(surf))
            return SQLITE_OK;
    }
    for (size_t i = 0; i < c->out->n; i++)
        if (strlen(c->out->terms[i]) == (size_t)n_tok &&
            memcmp(c->out->terms[i], tok, (size_t)n_tok) == 0)
            return SQLITE_OK;
    if (c->out->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        char **t = realloc(c->out->terms, cap * sizeof(*t));
        if (t == NULL)
            goto nomem;
        c->out->terms = t;
        c->cap = cap;
    }
    char *term = dr_strndup(tok, (size_t)n_tok);
    if (term == NULL)
        goto nomem;
    c->out->terms[c->out->n++] = term;
    /* the quoted surface form: FTS5 re-tokenizes it to the same token */
    int rc = c->match.len ? dr_buf_puts(&c->match, " OR \"") : dr_buf_putc(&c->match, '"');
    for (int i = start; rc == DYNRAG_OK && i < end; i++) {
        if (c->query[i] == '"')
            rc = dr_buf_putc(&c->match, '"');
        if (rc == DYNRAG_OK)
            rc = dr_buf_putc(&c->match, c->query[i]);
    }
    if (rc == DYNRAG_OK)
        rc = dr_buf_putc(&c->match, '"');
    if (rc != DYNRAG_OK) {
        c->rc = rc;
        return SQLITE_NOMEM;
    }
    return SQLITE_OK;
nomem:
    c->rc = DYNRAG_ERR_NOMEM;
    return SQLITE_NOMEM;
}

void dr_fts_terms_free(dr_fts_terms *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->terms[i]);
    free(t->terms);
    free(t->match);
    memset(t, 0, sizeof(*t));
}

int dr_fts_query_terms(sqlite3 *db, const char *query, dr_fts_terms *out, dynrag_error *err)
{
    memset(out, 0, sizeof(*out));
    size_t qlen = strlen(query);
    if (qlen > (1u << 20))
        return dr_err_set(err, DYNRAG_ERR_LIMIT, "query longer than 1 MiB");
    fts5_api *api = fts5_api_of(db);
    if (api == NULL)
        return dr_err_set(err, DYNRAG_ERR_DB, "SQLite has no FTS5");
    void *tok_user = NULL;
    fts5_tokenizer tk;
    if (api->xFindTokenizer(api, "porter", &tok_user, &tk) != SQLITE_OK)
        return dr_err_set(err, DYNRAG_ERR_DB, "FTS5 porter tokenizer not found");
    const char *args[] = {"unicode61", "remove_diacritics", "2"};
    Fts5Tokenizer *inst = NULL;
    if (tk.xCreate(tok_user, args, 3, &inst) != SQLITE_OK)
        return dr_err_set(err, DYNRAG_ERR_DB, "cannot create the FTS5 tokenizer");
    term_ctx c = {query, out, {0}, 0, DYNRAG_OK};
    int src = tk.xTokenize(inst, &c, FTS5_TOKENIZE_QUERY, query, (int)qlen, on_token);
    tk.xDelete(inst);
    int rc = DYNRAG_OK;
    if (c.rc != DYNRAG_OK)
        rc = dr_err_set(err, c.rc, "tokenizing the query: %s", dynrag_strerror(c.rc));
    else if (src != SQLITE_OK)
        rc = dr_err_set(err, DYNRAG_ERR_DB, "tokenizing the query: %s", sqlite3_errstr(src));
    if (rc == DYNRAG_OK) {
        out->match = dr_buf_take(&c.match);
        if (out->match == NULL)
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    dr_buf_free(&c.match);
    if (rc != DYNRAG_OK)
        dr_fts_terms_free(out);
    return rc;
}

int dr_bm25_fallback_search(sqlite3 *db, const char *query, double k1, double b, size_t k,
                            dr_scored *out, size_t *n_out, dynrag_error *err)
{
    dr_fts_terms t;
    sqlite3_stmt *st = NULL;
    *n_out = 0;
    int rc = dr_fts_query_terms(db, query, &t, err);
    if (rc != DYNRAG_OK)
        return rc;
    if (t.n == 0 || k == 0)
        goto cleanup;
    if (sqlite3_prepare_v2(db,
                           "SELECT rowid, dr_bm25(chunk_fts, ?2, ?3) AS s FROM chunk_fts"
                           " WHERE chunk_fts MATCH ?1 ORDER BY s DESC, rowid LIMIT ?4",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "BM25 query: %s", sqlite3_errmsg(db));
        goto cleanup;
    }
    sqlite3_bind_text(st, 1, t.match, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, k1);
    sqlite3_bind_double(st, 3, b);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)k);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW && *n_out < k) {
        out[*n_out].id = sqlite3_column_int64(st, 0);
        out[*n_out].score = sqlite3_column_double(st, 1);
        (*n_out)++;
    }
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        rc = dr_err_set(err, DYNRAG_ERR_DB, "BM25 query: %s", sqlite3_errmsg(db));
cleanup:
    sqlite3_finalize(st);
    dr_fts_terms_free(&t);
    return rc;
}
