/* test_bm25.c - the BM25 engine over FTS5 postings: exactness of the pruned
 * search, parameters, tokenizer parity with FTS5, query syntax safety, the
 * sidecar's generation check and corruption handling, threads. */
#include "test.h"

#include "core/util.h"
#include "retrieve/bm25.h"

#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *schema_sql =
    "CREATE TABLE docs(id INTEGER PRIMARY KEY, doc_id TEXT UNIQUE NOT NULL, title TEXT, "
    "text TEXT, source TEXT);"
    "CREATE TABLE chunks(id INTEGER PRIMARY KEY, doc INTEGER NOT NULL, ord INTEGER, "
    "start INTEGER, end INTEGER, body TEXT NOT NULL);"
    "CREATE VIRTUAL TABLE chunk_fts USING fts5(body, content='chunks', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2');"
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
    "INSERT INTO meta VALUES('generation', '0');";

/* Creates DIR/index.db with the agreed schema; returns the open handle. */
static sqlite3 *make_db(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/index.db", dir);
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return NULL;
    if (sqlite3_exec(db, schema_sql, NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* Adds one chunk (and its document) with the given id, bumps the generation. */
static int add_chunk(sqlite3 *db, int64_t id, const char *body)
{
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    ok = ok && sqlite3_prepare_v2(db, "INSERT INTO docs(id, doc_id, text) VALUES(?1, 'd' || ?1, ?2)",
                                  -1, &st, NULL) == SQLITE_OK;
    ok = ok && sqlite3_bind_int64(st, 1, id) == SQLITE_OK &&
         sqlite3_bind_text(st, 2, body, -1, SQLITE_STATIC) == SQLITE_OK &&
         sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    st = NULL;
    ok = ok && sqlite3_prepare_v2(db, "INSERT INTO chunks(id, doc, ord, start, end, body) "
                                      "VALUES(?1, ?1, 0, 0, length(?2), ?2)",
                                  -1, &st, NULL) == SQLITE_OK;
    ok = ok && sqlite3_bind_int64(st, 1, id) == SQLITE_OK &&
         sqlite3_bind_text(st, 2, body, -1, SQLITE_STATIC) == SQLITE_OK &&
         sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    st = NULL;
    ok = ok && sqlite3_prepare_v2(db, "INSERT INTO chunk_fts(rowid, body) VALUES(?1, ?2)", -1, &st,
                                  NULL) == SQLITE_OK;
    ok = ok && sqlite3_bind_int64(st, 1, id) == SQLITE_OK &&
         sqlite3_bind_text(st, 2, body, -1, SQLITE_STATIC) == SQLITE_OK &&
         sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    ok = ok && sqlite3_exec(db, "UPDATE meta SET value = value + 1 WHERE key = 'generation';"
                                "COMMIT",
                            NULL, NULL, NULL) == SQLITE_OK;
    if (!ok)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return ok ? 0 : -1;
}

/* A random word from a Zipf-like vocabulary of `v` words "w<rank>x". */
static void zipf_word(dr_rng *r, int v, char *out, size_t size)
{
    /* rank = floor(v^u) - 1 approximates a 1/rank law. */
    double u = dr_rng_uniform(r);
    int rank = (int)pow((double)v, u) - 1;
    if (rank < 0)
        rank = 0;
    if (rank >= v)
        rank = v - 1;
    static const char *syll[] = {"ka", "lo", "mi", "ne", "ru", "so", "ti", "va", "ze", "po"};
    size_t n = 0;
    out[0] = '\0';
    int x = rank;
    do {
        n += (size_t)snprintf(out + n, size - n, "%s", syll[x % 10]);
        x /= 10;
    } while (x > 0 && n + 3 < size);
    snprintf(out + n, size - n, "q");
}

static sqlite3 *make_random_corpus(const char *dir, int n_docs, int vocab, uint64_t seed)
{
    sqlite3 *db = make_db(dir);
    if (db == NULL)
        return NULL;
    dr_rng r;
    dr_rng_seed(&r, seed);
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    sqlite3_stmt *c = NULL, *f = NULL;
    sqlite3_prepare_v2(db, "INSERT INTO chunks(id, doc, ord, start, end, body) VALUES(?1, ?1, 0, 0, 0, ?2)",
                       -1, &c, NULL);
    sqlite3_prepare_v2(db, "INSERT INTO chunk_fts(rowid, body) VALUES(?1, ?2)", -1, &f, NULL);
    for (int d = 0; d < n_docs; d++) {
        char body[4096];
        size_t n = 0;
        int len = 1 + (int)dr_rng_below(&r, 60);
        for (int w = 0; w < len && n + 40 < sizeof(body); w++) {
            char word[32];
            zipf_word(&r, vocab, word, sizeof(word));
            n += (size_t)snprintf(body + n, sizeof(body) - n, "%s ", word);
        }
        /* Gaps in the ids, as deletions leave. */
        int64_t id = 10 + 3 * (int64_t)d;
        sqlite3_bind_int64(c, 1, id);
        sqlite3_bind_text(c, 2, body, -1, SQLITE_TRANSIENT);
        sqlite3_step(c);
        sqlite3_reset(c);
        sqlite3_bind_int64(f, 1, id);
        sqlite3_bind_text(f, 2, body, -1, SQLITE_TRANSIENT);
        sqlite3_step(f);
        sqlite3_reset(f);
    }
    sqlite3_finalize(c);
    sqlite3_finalize(f);
    sqlite3_exec(db, "UPDATE meta SET value = 7 WHERE key = 'generation'; COMMIT", NULL, NULL, NULL);
    return db;
}

TEST(bm25_pruned_equals_exact)
{
    const char *dir = test_tmpdir();
    sqlite3 *db = make_random_corpus(dir, 3000, 400, 42);
    ASSERT(db != NULL);
    dynrag_error err;
    dr_bm25 *e = NULL;
    ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err);
    dr_bm25_info info;
    dr_bm25_get_info(e, &info);
    ASSERT_EQ(info.n_docs, 3000);
    ASSERT_EQ(info.generation, 7);
    dr_rng r;
    dr_rng_seed(&r, 7);
    static const int ks[] = {1, 3, 10, 100, 5000};
    static const double params[][2] = {{0.9, 0.4}, {1.2, 0.75}, {0.0, 0.5}, {3.0, 1.0}, {0.5, 0.0}};
    int64_t ids_a[5000], ids_b[5000];
    double sc_a[5000], sc_b[5000];
    int nonempty = 0;
    for (int qi = 0; qi < 600; qi++) {
        char q[512];
        size_t n = 0;
        int len = 1 + (int)dr_rng_below(&r, 8);
        for (int w = 0; w < len; w++) {
            char word[32];
            zipf_word(&r, 450, word, sizeof(word)); /* some words are unknown */
            n += (size_t)snprintf(q + n, sizeof(q) - n, "%s ", word);
        }
        int k = ks[qi % 5];
        double k1 = params[(qi / 5) % 5][0], b = params[(qi / 5) % 5][1];
        int na = -1, nb = -2;
        dr_bm25_strategy strat = (dr_bm25_strategy)(qi % 3);
        ASSERT_OK(dr_bm25_search_with(e, q, k, k1, b, strat, ids_a, sc_a, &na, &err), &err);
        ASSERT_OK(dr_bm25_search_exact(e, q, k, k1, b, ids_b, sc_b, &nb, &err), &err);
        ASSERT_EQ(na, nb);
        nonempty += na > 0;
        for (int i = 0; i < na; i++) {
            if (ids_a[i] != ids_b[i] || sc_a[i] != sc_b[i])
                printf("query '%s' k=%d k1=%g b=%g strategy %d rank %d\n", q, k, k1, b,
                       (int)strat, i);
            ASSERT_EQ(ids_a[i], ids_b[i]);
            ASSERT(sc_a[i] == sc_b[i]);
            if (i > 0) {
                ASSERT(sc_a[i] <= sc_a[i - 1]);
                if (sc_a[i] == sc_a[i - 1])
                    ASSERT_GT(ids_a[i], ids_a[i - 1]);
            }
        }
    }
    ASSERT_GT(nonempty, 500);
    dr_bm25_free(e);
    sqlite3_close(db);
}

TEST(bm25_scores_by_hand_and_params)
{
    const char *dir = test_tmpdir();
    sqlite3 *db = make_db(dir);
    ASSERT(db != NULL);
    ASSERT_EQ(add_chunk(db, 1, "apple banana"), 0);                 /* dl 2 */
    ASSERT_EQ(add_chunk(db, 2, "apple apple apple cherry date fig"), 0); /* dl 6 */
    ASSERT_EQ(add_chunk(db, 3, "banana cherry"), 0);                /* dl 2 */
    ASSERT_EQ(add_chunk(db, 4, "grape"), 0);                        /* dl 1 */
    dynrag_error err;
    dr_bm25 *e = NULL;
    ASSERT_OK(dr_bm25_open(db, NULL, &e, &err), &err);
    dr_bm25_info info;
    dr_bm25_get_info(e, &info);
    ASSERT_NEAR(info.avgdl, 11.0 / 4.0, 1e-12);
    int64_t ids[10];
    double sc[10];
    int n = 0;
    double params[][2] = {{0.9, 0.4}, {1.2, 0.75}, {2.0, 0.0}};
    for (int p = 0; p < 3; p++) {
        double k1 = params[p][0], b = params[p][1], avgdl = 11.0 / 4.0;
        ASSERT_OK(dr_bm25_search(e, "APPLES", 10, k1, b, ids, sc, &n, &err), &err);
        ASSERT_EQ(n, 2);
        double idf = log(1 + (4 - 2 + 0.5) / (2 + 0.5));
        double s1 = idf * 1 * (k1 + 1) / (1 + k1 * (1 - b + b * 2 / avgdl));
        double s2 = idf * 3 * (k1 + 1) / (3 + k1 * (1 - b + b * 6 / avgdl));
        ASSERT_EQ(ids[0], s2 > s1 ? 2 : 1);
        ASSERT_NEAR(sc[0], s2 > s1 ? s2 : s1, 1e-12);
        ASSERT_NEAR(sc[1], s2 > s1 ? s1 : s2, 1e-12);
    }
    /* k1 and b change the order: the long chunk 2 (tf 3, dl 6) against the
     * short chunk 1 (tf 1, dl 2). */
    double p2[][2] = {{1.2, 0.75}, {1.2, 0.0}, {0.0, 1.0}};
    for (int p = 0; p < 3; p++) {
        double k1 = p2[p][0], b = p2[p][1], avgdl = 11.0 / 4.0;
        double s1 = 1 * (k1 + 1) / (1 + k1 * (1 - b + b * 2 / avgdl));
        double s2 = 3 * (k1 + 1) / (3 + k1 * (1 - b + b * 6 / avgdl));
        ASSERT_OK(dr_bm25_search(e, "apple", 10, k1, b, ids, sc, &n, &err), &err);
        ASSERT_EQ(n, 2);
        ASSERT_EQ(ids[0], s2 > s1 ? 2 : 1);
        ASSERT_NEAR(sc[0] / sc[1], (s2 > s1 ? s2 / s1 : s1 / s2), 1e-12);
    }
    ASSERT_OK(dr_bm25_search(e, "apple", 10, 0.0, 1.0, ids, sc, &n, &err), &err);
    ASSERT(sc[0] == sc[1]); /* k1 = 0: tf and length ignored */
    ASSERT_EQ(ids[0], 1);
    ASSERT_OK(dr_bm25_search(e, "apple", 10, 1.2, 0.0, ids, sc, &n, &err), &err);
    ASSERT_EQ(ids[0], 2);
    /* A repeated query word counts twice; ties go to the lower chunk id. */
    ASSERT_OK(dr_bm25_search(e, "banana", 10, 0.9, 0.4, ids, sc, &n, &err), &err);
    ASSERT_EQ(n, 2);
    ASSERT(sc[0] == sc[1]);
    ASSERT_EQ(ids[0], 1);
    ASSERT_EQ(ids[1], 3);
    double one = sc[0];
    ASSERT_OK(dr_bm25_search(e, "banana Banana", 10, 0.9, 0.4, ids, sc, &n, &err), &err);
    ASSERT_NEAR(sc[0], 2 * one, 1e-12);
    /* k limits the hits. */
    ASSERT_OK(dr_bm25_search(e, "apple banana cherry grape", 2, 0.9, 0.4, ids, sc, &n, &err), &err);
    ASSERT_EQ(n, 2);
    /* Bad parameters. */
    ASSERT_EQ(dr_bm25_search(e, "apple", 0, 0.9, 0.4, ids, sc, &n, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dr_bm25_search(e, "apple", 10, -1, 0.4, ids, sc, &n, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dr_bm25_search(e, "apple", 10, 0.9, 1.5, ids, sc, &n, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dr_bm25_search(e, "apple", 10, NAN, 0.4, ids, sc, &n, &err), DYNRAG_ERR_INVALID);
    dr_bm25_free(e);
    sqlite3_close(db);
}

TEST(bm25_empty_and_stopword_queries)
{
    const char *dir = test_tmpdir();
    sqlite3 *db = make_db(dir);
    ASSERT(db != NULL);
    ASSERT_EQ(add_chunk(db, 1, "the cat is on the mat"), 0);
    dynrag_error err;
    dr_bm25 *e = NULL;
    ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err);
    int64_t ids[10];
    double sc[10];
    int n = 5;
    const char *empty[] = {"", "   ", "the a an of", "THE Is", "!!! ??? ...", "zebra", NULL};
    for (int i = 0; i < 7; i++) {
        n = 5;
        ASSERT_OK(dr_bm25_search(e, empty[i], 10, 0.9, 0.4, ids, sc, &n, &err), &err);
        ASSERT_EQ(n, 0);
    }
    ASSERT_OK(dr_bm25_search(e, "the cats", 10, 0.9, 0.4, ids, sc, &n, &err), &err);
    ASSERT_EQ(n, 1);
    dr_bm25_free(e);
    sqlite3_close(db);
}

/* An empty index: zero hits. */
TEST(bm25_empty_index)
{
    const char *dir = test_tmpdir();
    sqlite3 *db = make_db(dir);
    ASSERT(db != NULL);
    dynrag_error err;
    dr_bm25 *e = NULL;
    ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err);
    int64_t ids[10];
    int n = 3;
    ASSERT_OK(dr_bm25_search(e, "anything", 10, 0.9, 0.4, ids, NULL, &n, &err), &err);
    ASSERT_EQ(n, 0);
    dr_bm25_free(e);
    e = NULL;
    ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err); /* loads the empty sidecar */
    dr_bm25_info info;
    dr_bm25_get_info(e, &info);
    ASSERT(info.from_sidecar);
    dr_bm25_free(e);
    sqlite3_close(db);
}

typedef struct tok_rec {
    char toks[64][64];
    int n;
} tok_rec;

static int rec_tok(void *user, const char *tok, int len, int start, int end, bool stop)
{
    tok_rec *r = user;
    (void)start;
    (void)end;
    (void)stop;
    if (r->n < 64 && len < 64) {
        memcpy(r->toks[r->n], tok, (size_t)len);
        r->toks[r->n][len] = '\0';
    }
    r->n++;
    return 0;
}

TEST(bm25_tokenizer_equals_fts5)
{
    const char *dir = test_tmpdir();
    sqlite3 *db = make_db(dir);
    ASSERT(db != NULL);
    static const char *texts[] = {
        "Running runners RAN quickly; the studies' results were generalized.",
        "Caf\xc3\xa9 na\xc3\xafve r\xc3\xa9sum\xc3\xa9 \xc3\x85ngstr\xc3\xb6m ZO\xc3\x8b",
        "COVID-19 e.g. x86_64 3.14159 foo@bar.com \"quoted\" NEAR(a b) x*y",
        "\xce\x91\xce\xbb\xcf\x86\xce\xb1 \xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb0 "
        "\xe6\x9d\xb1\xe4\xba\xac emoji\xf0\x9f\x98\x80tail",
    };
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(add_chunk(db, i + 1, texts[i]), 0);
    dynrag_error err;
    dr_bm25 *e = NULL;
    ASSERT_OK(dr_bm25_open(db, NULL, &e, &err), &err);
    ASSERT_EQ(sqlite3_exec(db, "CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, chunk_fts, instance)",
                           NULL, NULL, NULL),
              SQLITE_OK);
    for (int i = 0; i < 4; i++) {
        tok_rec mine = {0};
        ASSERT_OK(dr_bm25_tokenize(e, texts[i], strlen(texts[i]), rec_tok, &mine, &err), &err);
        sqlite3_stmt *st = NULL;
        ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT term, offset FROM temp.v WHERE doc = ?1 ORDER BY offset",
                                     -1, &st, NULL),
                  SQLITE_OK);
        sqlite3_bind_int(st, 1, i + 1);
        int n = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            ASSERT_LT(n, mine.n);
            ASSERT_EQ(sqlite3_column_int(st, 1), n);
            ASSERT_STR_EQ(mine.toks[n], (const char *)sqlite3_column_text(st, 0));
            n++;
        }
        sqlite3_finalize(st);
        ASSERT_EQ(n, mine.n);
        ASSERT_GT(n, 3);
    }
    /* Spot checks: stemming, folding, diacritics. */
    tok_rec r = {0};
    ASSERT_OK(dr_bm25_tokenize(e, "Running Caf\xc3\xa9", 13, rec_tok, &r, &err), &err);
    ASSERT_EQ(r.n, 2);
    ASSERT_STR_EQ(r.toks[0], "run");
    ASSERT_STR_EQ(r.toks[1], "cafe");
    dr_bm25_free(e);
    sqlite3_close(db);
}

TEST(bm25_fts5_syntax_is_plain_words)
{
    const char *dir = test_tmpdir();
    sqlite3 *db = make_db(dir);
    ASSERT(db != NULL);
    ASSERT_EQ(add_chunk(db, 1, "near the corner stands a star column"), 0);
    ASSERT_EQ(add_chunk(db, 2, "column store and row store"), 0);
    ASSERT_EQ(add_chunk(db, 3, "prefix queries with a caret"), 0);
    dynrag_error err;
    dr_bm25 *e = NULL;
    ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err);
    static const char *queries[] = {
        "\"", "\"corner", "corner\"", "star*", "*", "NEAR(", "NEAR(corner star", "NEAR/2",
        "AND", "OR", "NOT", "corner AND", "OR corner", "NOT corner", "-corner", "column:store",
        "body:corner", "^caret", "^", "(", ")", "((corner", "corner))", "{body}: star", "'",
        "a\"b\"c", "+", "col*umn", ":", "- - -", "\"\"\"", "NEAR(\"corner\" \"star\", 2)",
    };
    int64_t ids[10], ids2[10];
    double sc[10], sc2[10];
    for (size_t i = 0; i < DR_ARRAY_LEN(queries); i++) {
        int n = -1;
        ASSERT_OK(dr_bm25_search(e, queries[i], 10, 0.9, 0.4, ids, sc, &n, &err), &err);
        ASSERT_GE(n, 0);
        /* Same hits as the query with the punctuation replaced by spaces. */
        char plain[128];
        dr_strlcpy(plain, queries[i], sizeof(plain));
        for (char *p = plain; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
                *p = ' ';
        int n2 = -1;
        ASSERT_OK(dr_bm25_search(e, plain, 10, 0.9, 0.4, ids2, sc2, &n2, &err), &err);
        ASSERT_EQ(n, n2);
        for (int j = 0; j < n; j++) {
            ASSERT_EQ(ids[j], ids2[j]);
            ASSERT(sc[j] == sc2[j]);
        }
    }
    int n = 0;
    ASSERT_OK(dr_bm25_search(e, "NEAR(corner", 10, 0.9, 0.4, ids, sc, &n, &err), &err);
    ASSERT_EQ(n, 1); /* "near" and "corner" are words of chunk 1 */
    ASSERT_EQ(ids[0], 1);
    ASSERT_OK(dr_bm25_search(e, "column:store", 10, 0.9, 0.4, ids, sc, &n, &err), &err);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(ids[0], 2);
    dr_bm25_free(e);
    sqlite3_close(db);
}

static char *sidecar_path(const char *dir)
{
    return dr_asprintf("%s/%s", dir, DR_BM25_SIDECAR);
}

TEST(bm25_sidecar_follows_generation)
{
    const char *dir = test_tmpdir();
    sqlite3 *db = make_db(dir);
    ASSERT(db != NULL);
    ASSERT_EQ(add_chunk(db, 1, "alpha beta"), 0);
    dynrag_error err;
    dr_bm25 *e = NULL;
    dr_bm25_info info;
    ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err);
    dr_bm25_get_info(e, &info);
    ASSERT(!info.from_sidecar);
    ASSERT(info.sidecar_written);
    ASSERT_EQ(info.generation, 1);
    dr_bm25_free(e);
    char *path = sidecar_path(dir);
    ASSERT(dr_path_exists(path));
    ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err);
    dr_bm25_get_info(e, &info);
    ASSERT(info.from_sidecar);
    ASSERT_EQ(info.n_docs, 1);
    dr_bm25_free(e);
    /* A committed write bumps the generation: the sidecar is rebuilt. */
    ASSERT_EQ(add_chunk(db, 2, "gamma alpha"), 0);
    ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err);
    dr_bm25_get_info(e, &info);
    ASSERT(!info.from_sidecar);
    ASSERT(info.sidecar_written);
    ASSERT_EQ(info.generation, 2);
    ASSERT_EQ(info.n_docs, 2);
    int64_t ids[4];
    int n = 0;
    ASSERT_OK(dr_bm25_search(e, "gamma", 4, 0.9, 0.4, ids, NULL, &n, &err), &err);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(ids[0], 2);
    dr_bm25_free(e);
    ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err);
    dr_bm25_get_info(e, &info);
    ASSERT(info.from_sidecar);
    ASSERT_EQ(info.generation, 2);
    dr_bm25_free(e);
    /* A read-only folder: the index still opens (built in memory). */
    free(path);
    sqlite3_close(db);
}

/* Writes bytes over the sidecar at offset (or truncates to len when bytes is NULL). */
static int damage(const char *path, long off, const void *bytes, size_t n, long trunc_len)
{
    if (bytes == NULL)
        return truncate(path, trunc_len);
    FILE *f = fopen(path, "r+b");
    if (f == NULL)
        return -1;
    fseek(f, off, SEEK_SET);
    fwrite(bytes, 1, n, f);
    fclose(f);
    return 0;
}

TEST(bm25_sidecar_corruption_rebuilds)
{
    const char *dir = test_tmpdir();
    sqlite3 *db = make_random_corpus(dir, 300, 200, 3);
    ASSERT(db != NULL);
    dynrag_error err;
    dr_bm25 *e = NULL;
    ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err);
    int64_t ref[20];
    double refsc[20];
    int nref = 0;
    ASSERT_OK(dr_bm25_search(e, "kaq loq miq kalaq", 20, 0.9, 0.4, ref, refsc, &nref, &err), &err);
    ASSERT_GT(nref, 5);
    dr_bm25_info info;
    dr_bm25_get_info(e, &info);
    long size = (long)info.bytes;
    dr_bm25_free(e);
    char *path = sidecar_path(dir);
    struct {
        long off;
        const char *bytes;
        size_t n;
        long trunc;
    } cases[] = {
        {0, NULL, 0, 0},              /* empty file */
        {0, NULL, 0, 50},             /* shorter than the header */
        {0, NULL, 0, size / 2},       /* truncated */
        {0, NULL, 0, size - 1},       /* one byte short */
        {0, "XXXX", 4, 0},            /* magic */
        {8, "\x07\x00\x00\x00", 4, 0},/* version */
        {24, "\xff\xff\xff\x7f", 4, 0}, /* n_docs */
        {32, "\xff\xff\xff\xff\xff\xff\xff\x0f", 8, 0}, /* n_postings */
        {size / 2, "\x5a\xa5", 2, 0}, /* a flipped payload byte */
        {size - 3, "\x01", 1, 0},     /* the tail */
        {100, "\xff\xff\xff\xff", 4, 0},/* a chunk id */
    };
    for (size_t c = 0; c < DR_ARRAY_LEN(cases); c++) {
        ASSERT_EQ(damage(path, cases[c].off, cases[c].bytes, cases[c].n, cases[c].trunc), 0);
        ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err);
        dr_bm25_get_info(e, &info);
        ASSERT(!info.from_sidecar);
        ASSERT(info.sidecar_written);
        int64_t ids[20];
        double sc[20];
        int n = 0;
        ASSERT_OK(dr_bm25_search(e, "kaq loq miq kalaq", 20, 0.9, 0.4, ids, sc, &n, &err), &err);
        ASSERT_EQ(n, nref);
        for (int i = 0; i < n; i++) {
            ASSERT_EQ(ids[i], ref[i]);
            ASSERT(sc[i] == refsc[i]);
        }
        dr_bm25_free(e);
        /* The rebuilt file is good again. */
        ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err);
        dr_bm25_get_info(e, &info);
        ASSERT(info.from_sidecar);
        dr_bm25_free(e);
    }
    /* Random single-byte damage anywhere: always detected and rebuilt. */
    dr_rng rng;
    dr_rng_seed(&rng, 99);
    for (int i = 0; i < 40; i++) {
        unsigned char x = (unsigned char)(1 + dr_rng_below(&rng, 255));
        long off = (long)dr_rng_below(&rng, (uint64_t)size);
        FILE *f = fopen(path, "r+b");
        ASSERT(f != NULL);
        fseek(f, off, SEEK_SET);
        int c = fgetc(f);
        fseek(f, off, SEEK_SET);
        fputc(c ^ x, f);
        fclose(f);
        ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err);
        dr_bm25_get_info(e, &info);
        if (info.from_sidecar)
            printf("undetected damage at offset %ld\n", off);
        ASSERT(!info.from_sidecar);
        int64_t ids[20];
        int n = 0;
        ASSERT_OK(dr_bm25_search(e, "kaq loq miq kalaq", 20, 0.9, 0.4, ids, NULL, &n, &err), &err);
        ASSERT_EQ(n, nref);
        ASSERT_EQ(ids[0], ref[0]);
        dr_bm25_free(e);
    }
    /* A folder in place of the file: built in memory, not an error. */
    unlink(path);
    ASSERT_EQ(mkdir(path, 0755), 0);
    ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err);
    dr_bm25_get_info(e, &info);
    ASSERT(!info.from_sidecar);
    ASSERT(!info.sidecar_written);
    dr_bm25_free(e);
    rmdir(path);
    free(path);
    sqlite3_close(db);
}

TEST(bm25_out_of_sync_fts_fails_cleanly)
{
    const char *dir = test_tmpdir();
    sqlite3 *db = make_db(dir);
    ASSERT(db != NULL);
    ASSERT_EQ(add_chunk(db, 1, "alpha"), 0);
    /* A posting for a chunk that is not in chunks. */
    ASSERT_EQ(sqlite3_exec(db, "INSERT INTO chunk_fts(rowid, body) VALUES(99, 'ghost')", NULL, NULL, NULL),
              SQLITE_OK);
    dynrag_error err;
    dr_bm25 *e = NULL;
    ASSERT_EQ(dr_bm25_open(db, dir, &e, &err), DYNRAG_ERR_FORMAT);
    ASSERT(e == NULL);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "99");
    sqlite3_close(db);
    /* No chunk_fts at all. */
    sqlite3 *db2 = NULL;
    ASSERT_EQ(sqlite3_open(":memory:", &db2), SQLITE_OK);
    ASSERT_EQ(dr_bm25_open(db2, NULL, &e, &err), DYNRAG_ERR_DB);
    /* Another tokenizer: query tokens would not match the index's. */
    ASSERT_EQ(sqlite3_exec(db2, "CREATE TABLE chunks(id INTEGER PRIMARY KEY, body TEXT);"
                                "CREATE VIRTUAL TABLE chunk_fts USING fts5(body, content='chunks', "
                                "content_rowid='id', tokenize='unicode61')",
                           NULL, NULL, NULL),
              SQLITE_OK);
    ASSERT_EQ(dr_bm25_open(db2, NULL, &e, &err), DYNRAG_ERR_MISMATCH);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "porter");
    sqlite3_close(db2);
}

typedef struct thr_arg {
    const dr_bm25 *e;
    int seed;
    int failures;
} thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    dr_rng r;
    dr_rng_seed(&r, (uint64_t)a->seed);
    for (int i = 0; i < 200; i++) {
        char q[256];
        size_t n = 0;
        for (int w = 0; w < 4; w++) {
            char word[32];
            zipf_word(&r, 300, word, sizeof(word));
            n += (size_t)snprintf(q + n, sizeof(q) - n, "%s ", word);
        }
        int64_t x[10], y[10];
        double sx[10], sy[10];
        int nx = 0, ny = 0;
        if (dr_bm25_search_with(a->e, q, 10, 0.9, 0.4, (dr_bm25_strategy)(i % 3), x, sx, &nx,
                                NULL) != 0 ||
            dr_bm25_search_exact(a->e, q, 10, 0.9, 0.4, y, sy, &ny, NULL) != 0 || nx != ny) {
            a->failures++;
            continue;
        }
        for (int j = 0; j < nx; j++)
            if (x[j] != y[j] || sx[j] != sy[j])
                a->failures++;
    }
    return NULL;
}

TEST(bm25_concurrent_searches)
{
    const char *dir = test_tmpdir();
    sqlite3 *db = make_random_corpus(dir, 1000, 300, 11);
    ASSERT(db != NULL);
    dynrag_error err;
    dr_bm25 *e = NULL;
    ASSERT_OK(dr_bm25_open(db, dir, &e, &err), &err);
    sqlite3_close(db); /* the engine does not need the connection */
    pthread_t th[4];
    thr_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_arg){e, i + 1, 0};
        ASSERT_EQ(pthread_create(&th[i], NULL, thr_main, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(args[i].failures, 0);
    dr_bm25_free(e);
}
