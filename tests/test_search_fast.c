/* test_search_fast.c - the document-level and ids-only search paths and the
 * `dynrag retrieve` batch mode: same results as the full path over many
 * generated queries, atomic run files, --skip-bad counts, sanitised output. */
#include "test.h"

#include "core/util.h"
#include "dynrag/index.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <dirent.h>
#include <sys/stat.h>

static const char *const WORDS[] = {"alpha", "beta",  "gamma", "delta", "omega", "honey",
                                    "lava",  "stone", "river", "cloud", "bee",   "fox",
                                    "moon",  "sun",   "salt",  "iron",  "glass", "wind"};

/* Writes a corpus of n documents of random lengths (many span several
 * chunks at --chunk-tokens 6) drawn from WORDS, to tmpdir/name. */
static const char *write_corpus(const char *name, int n, dr_rng *rng)
{
    dr_buf b = {0};
    for (int d = 0; d < n; d++) {
        dr_buf_printf(&b, "{\"_id\":\"doc%d\",\"title\":\"t%d\",\"text\":\"", d, d);
        int words = 1 + (int)dr_rng_below(rng, 30);
        for (int w = 0; w < words; w++)
            dr_buf_printf(&b, "%s%s", w ? " " : "", WORDS[dr_rng_below(rng, DR_ARRAY_LEN(WORDS))]);
        dr_buf_puts(&b, "\"}\n");
    }
    const char *p = test_write_file(name, b.data);
    dr_buf_free(&b);
    return p;
}

static void random_query(dr_rng *rng, char *q, size_t size)
{
    int n = 1 + (int)dr_rng_below(rng, 4);
    q[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t len = strlen(q);
        snprintf(q + len, size - len, "%s%s", i ? " " : "",
                 WORDS[dr_rng_below(rng, DR_ARRAY_LEN(WORDS))]);
    }
}

/* The document-level ranking as `dynrag retrieve --queries` computed it
 * before per_document existed: full hits, 3k chunks doubled until k
 * distinct documents, the first chunk of each document by doc_id. Writes
 * "doc_id:chunk_id:score" per document into b. */
static int reference_docs(dynrag_index *idx, const char *q, dynrag_search_mode mode, int k,
                          dr_buf *b, dynrag_error *err)
{
    int want = k * 3;
    for (;;) {
        if (want > 10000)
            want = 10000;
        dynrag_search_options o;
        dynrag_search_options_init(&o);
        o.mode = mode;
        o.k = want;
        if (mode == DYNRAG_SEARCH_HYBRID)
            o.depth = want;
        dynrag_hits h;
        int rc = dynrag_index_search(idx, q, &o, &h, err);
        if (rc != DYNRAG_OK)
            return rc;
        int distinct = 0;
        dr_buf_reset(b);
        for (size_t i = 0; i < h.n && distinct < k; i++) {
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++)
                seen = strcmp(h.hits[j].doc_id, h.hits[i].doc_id) == 0;
            if (!seen) {
                distinct++;
                dr_buf_printf(b, "%s:%lld:%.17g ", h.hits[i].doc_id,
                              (long long)h.hits[i].chunk_id, h.hits[i].score);
            }
        }
        bool again = distinct < k && h.n == (size_t)want && want < 10000;
        dynrag_hits_free(&h);
        if (!again)
            return DYNRAG_OK;
        want *= 2;
    }
}

/* "doc_id:chunk_id:score " per hit; for full hits also checks that the
 * text fields are there (ids_only: NULL). */
static bool hits_sig(const dynrag_hits *h, bool ids_only, dr_buf *b)
{
    dr_buf_reset(b);
    for (size_t i = 0; i < h->n; i++) {
        const dynrag_hit *x = &h->hits[i];
        if (ids_only ? (x->title != NULL || x->text != NULL) : (x->title == NULL || x->text == NULL))
            return false;
        dr_buf_printf(b, "%s:%lld:%.17g ", x->doc_id, (long long)x->chunk_id, x->score);
    }
    if (h->n == 0)
        dr_buf_puts(b, "");
    return true;
}

/* Compares, for many random queries, modes and k: per_document (with and
 * without ids_only) against the reference, and ids_only against full hits. */
static void check_equivalence(dynrag_index *idx, dr_rng *rng, int n_queries, bool dense)
{
    dr_buf ref = {0}, got = {0}, full = {0};
    const int ks[] = {1, 2, 5, 13, 40};
    char q[128];
    dynrag_error err;
    for (int t = 0; t < n_queries; t++) {
        random_query(rng, q, sizeof(q));
        dynrag_search_mode mode = dense ? (dynrag_search_mode)dr_rng_below(rng, 3)
                                        : DYNRAG_SEARCH_BM25;
        int k = ks[dr_rng_below(rng, DR_ARRAY_LEN(ks))];
        int rc = reference_docs(idx, q, mode, k, &ref, &err);
        if (rc != DYNRAG_OK) {
            test_fail_(__FILE__, __LINE__, "reference search: %s", dynrag_errmsg(&err));
            break;
        }
        for (int ids = 0; ids < 2; ids++) {
            dynrag_search_options o;
            dynrag_search_options_init(&o);
            o.mode = mode;
            o.k = k;
            o.depth = 0; /* hybrid: each side as deep as the chunks searched, as the
                            reference */
            o.per_document = true;
            o.ids_only = ids;
            dynrag_hits h;
            rc = dynrag_index_search(idx, q, &o, &h, &err);
            bool shape = rc == DYNRAG_OK && hits_sig(&h, ids, &got);
            dynrag_hits_free(&h);
            if (!shape || strcmp(ref.data ? ref.data : "", got.data ? got.data : "") != 0) {
                test_fail_(__FILE__, __LINE__,
                           "per_document ids_only=%d mode %d k %d q '%s':\n  got %s\n  ref %s",
                           ids, (int)mode, k, q, got.data ? got.data : dynrag_errmsg(&err),
                           ref.data ? ref.data : "");
                goto done;
            }
        }
        /* chunk level: ids_only gives the full path's chunks */
        dynrag_search_options o;
        dynrag_search_options_init(&o);
        o.mode = mode;
        o.k = k;
        dynrag_hits h1, h2;
        int rc1 = dynrag_index_search(idx, q, &o, &h1, &err);
        o.ids_only = true;
        int rc2 = dynrag_index_search(idx, q, &o, &h2, &err);
        bool ok = rc1 == DYNRAG_OK && rc2 == DYNRAG_OK && hits_sig(&h1, false, &full) &&
                  hits_sig(&h2, true, &got) &&
                  strcmp(full.data ? full.data : "", got.data ? got.data : "") == 0;
        /* a full hit's title is its document's, its text the document's
         * text[start, end) */
        for (size_t i = 0; ok && i < h1.n; i++) {
            const dynrag_hit *x = &h1.hits[i];
            char *title = NULL, *text = NULL;
            ok = dynrag_index_document(idx, x->doc_id, &title, &text, &err) == DYNRAG_OK &&
                 strcmp(title, x->title) == 0 && x->start >= 0 && x->start <= x->end &&
                 (size_t)x->end <= strlen(text) &&
                 strlen(x->text) == (size_t)(x->end - x->start) &&
                 memcmp(text + x->start, x->text, (size_t)(x->end - x->start)) == 0;
            if (!ok)
                test_fail_(__FILE__, __LINE__, "hit %s/%lld: title '%s' text '%s' [%lld,%lld)",
                           x->doc_id, (long long)x->chunk_id, x->title, x->text,
                           (long long)x->start, (long long)x->end);
            free(title);
            free(text);
        }
        dynrag_hits_free(&h1);
        dynrag_hits_free(&h2);
        if (!ok) {
            test_fail_(__FILE__, __LINE__, "ids_only mode %d k %d q '%s':\n  got %s\n  full %s",
                       (int)mode, k, q, got.data ? got.data : "", full.data ? full.data : "");
            goto done;
        }
    }
done:
    dr_buf_free(&ref);
    dr_buf_free(&got);
    dr_buf_free(&full);
}

TEST(search_fast_paths_match_full_hits)
{
    dr_rng rng;
    dr_rng_seed(&rng, 1234);
    char dir[4300];
    snprintf(dir, sizeof(dir), "%s/ix", test_tmpdir());
    const char *in[] = {write_corpus("c.jsonl", 80, &rng)};
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    bo.chunk_tokens = 6;
    bo.chunk_overlap = 2;
    bo.embedder.dim = 32;
    dynrag_error err;
    ASSERT_OK(dynrag_index_add(dir, in, 1, &bo, NULL, &err), &err);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    check_equivalence(idx, &rng, 150, true);
    dynrag_index_close(idx);
}

/* When index.db moved on before the first ids_only search, hits read their
 * document from index.db: still the full path's results. */
TEST(search_fast_paths_after_a_write)
{
    dr_rng rng;
    dr_rng_seed(&rng, 99);
    char dir[4300];
    snprintf(dir, sizeof(dir), "%s/ix", test_tmpdir());
    const char *in[] = {write_corpus("a.jsonl", 40, &rng)};
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    bo.chunk_tokens = 6;
    bo.chunk_overlap = 2;
    bo.no_dense = true;
    dynrag_error err;
    ASSERT_OK(dynrag_index_add(dir, in, 1, &bo, NULL, &err), &err);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    /* replace half the documents and delete some before any search */
    const char *in2[] = {write_corpus("b.jsonl", 20, &rng)};
    ASSERT_OK(dynrag_index_add(dir, in2, 1, &bo, NULL, &err), &err);
    const char *del[] = {"doc30", "doc31", "doc32"};
    ASSERT_OK(dynrag_index_delete(dir, del, 3, NULL, &err), &err);
    check_equivalence(idx, &rng, 60, false);
    dynrag_index_close(idx);
    /* reopened: the map is used and agrees again */
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    check_equivalence(idx, &rng, 60, false);
    dynrag_index_close(idx);
}

/* ---- the CLI batch mode ---------------------------------------------------------- */

static char *slurp(const char *path)
{
    char *s = NULL;
    size_t n = 0;
    dynrag_error err;
    return dr_read_file(path, 1 << 24, &s, &n, &err) == DYNRAG_OK ? s : NULL;
}

/* Number of entries in dir whose name starts with prefix. */
static int count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    return n;
}

static const char *const BAD_LINES[] = {
    "not json",
    "{\"_id\":\"x1\"}",
    "{\"text\":\"honey\"}",
    "{\"_id\":\"has space\",\"text\":\"honey\"}",
    "{\"_id\":\"\",\"text\":\"honey\"}",
    "{\"_id\":1.5,\"text\":\"honey\"}",
    "{\"_id\":1e300,\"text\":\"honey\"}",
    "{\"_id\":\"nul\",\"text\":\"wal\\u0000mode\"}",
    "{\"_id\":\"ctl\\u001b\",\"text\":\"honey\"}",
    "[1,2]",
};

TEST(retrieve_batch_atomic_and_skip_bad)
{
    dr_rng rng;
    dr_rng_seed(&rng, 7);
    char dir[4300], cmd[20000], run[4300];
    snprintf(dir, sizeof(dir), "%s/ix", test_tmpdir());
    snprintf(run, sizeof(run), "%s/run.trec", test_tmpdir());
    char *out = NULL;
    snprintf(cmd, sizeof(cmd), "%s index --index %s --no-dense --chunk-tokens 6 %s",
             test_cli_path(), dir, write_corpus("c.jsonl", 30, &rng));
    ASSERT_EQ(test_run(cmd, &out), 0);
    free(out);
    for (int round = 0; round < 4; round++) {
        /* a file of good and bad lines, one repeated id */
        dr_buf q = {0};
        int good = 0, bad = 0, lines = 8 + (int)dr_rng_below(&rng, 10);
        int first_bad = 0;
        char text[128];
        for (int i = 0; i < lines; i++) {
            if (dr_rng_below(&rng, 3) == 0) {
                dr_buf_printf(&q, "%s\n", BAD_LINES[dr_rng_below(&rng, DR_ARRAY_LEN(BAD_LINES))]);
                bad++;
                if (first_bad == 0)
                    first_bad = i + 1;
            } else {
                random_query(&rng, text, sizeof(text));
                dr_buf_printf(&q, "{\"_id\":\"q%d\",\"text\":\"%s\"}\n", i, text);
                good++;
            }
        }
        dr_buf_puts(&q, "{\"_id\":\"qdup\",\"text\":\"x\"}\n"); /* no hits */
        good++;
        dr_buf_puts(&q, "{\"_id\":\"qdup\",\"text\":\"honey\"}\n"); /* repeated id */
        bad++;
        if (first_bad == 0)
            first_bad = lines + 2;
        char qpath[4300];
        snprintf(qpath, sizeof(qpath), "%s", test_write_file("q.jsonl", q.data));
        dr_buf_free(&q);
        /* without --skip-bad: fails naming the first bad line; the old run
         * file is untouched and no temporary file is left */
        char *old = dr_asprintf("old run %d\n", round);
        dynrag_error err;
        ASSERT_OK(dr_write_file_atomic(run, old, strlen(old), &err), &err);
        snprintf(cmd, sizeof(cmd), "%s retrieve --index %s --queries %s --trec %s -k 5 2>&1",
                 test_cli_path(), dir, qpath, run);
        ASSERT_EQ(test_run(cmd, &out), 1);
        char where[64];
        snprintf(where, sizeof(where), "q.jsonl:%d: ", first_bad);
        ASSERT_CONTAINS(out, where);
        free(out);
        char *now = slurp(run);
        ASSERT_STR_EQ(now, old);
        free(now);
        free(old);
        ASSERT_EQ(count_files(test_tmpdir(), "run.trec.tmp"), 0);
        /* with --skip-bad: every good query in the run, the bad ones counted */
        snprintf(cmd, sizeof(cmd),
                 "%s retrieve --index %s --queries %s --trec %s -k 5 --skip-bad 2>&1",
                 test_cli_path(), dir, qpath, run);
        ASSERT_EQ(test_run(cmd, &out), 0);
        char msg[96];
        snprintf(msg, sizeof(msg), "skipped %d bad quer%s of %d", bad, bad == 1 ? "y" : "ies",
                 good + bad);
        ASSERT_CONTAINS(out, msg);
        free(out);
        char *trec = slurp(run);
        ASSERT(trec != NULL);
        /* each good id appears, nothing else */
        int seen_ids = 0;
        char prev[64] = "";
        for (char *line = trec; *line;) {
            char *nl = strchr(line, '\n');
            ASSERT(nl != NULL);
            char id[64];
            ASSERT_EQ(sscanf(line, "%63s", id), 1);
            ASSERT(id[0] == 'q');
            if (strcmp(id, prev) != 0)
                seen_ids++;
            dr_strlcpy(prev, id, sizeof(prev));
            line = nl + 1;
        }
        free(trec);
        ASSERT_LE(seen_ids, good); /* a query may have no hits ("x") */
        ASSERT_GE(seen_ids, good - 1);
        ASSERT_EQ(count_files(test_tmpdir(), "run.trec.tmp"), 0);
    }
    /* an output folder that does not exist: an error, nothing written */
    snprintf(cmd, sizeof(cmd), "%s retrieve --index %s --queries %s --trec %s/nodir/run.trec 2>&1",
             test_cli_path(), dir, test_write_file("q2.jsonl", "{\"_id\":\"a\",\"text\":\"fox\"}\n"),
             test_tmpdir());
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "cannot create the run file");
    free(out);
    /* only bad lines with --skip-bad: a failure, no run file */
    snprintf(cmd, sizeof(cmd), "%s retrieve --index %s --queries %s --trec %s/none.trec --skip-bad 2>&1",
             test_cli_path(), dir, test_write_file("q3.jsonl", "nope\n"), test_tmpdir());
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "no query could be run");
    free(out);
    ASSERT_EQ(count_files(test_tmpdir(), "none.trec"), 0);
    snprintf(cmd, sizeof(cmd), "%s retrieve --index %s --skip-bad fox", test_cli_path(), dir);
    ASSERT_EQ(test_run(cmd, &out), 2);
    free(out);
}

/* True when s has a byte a terminal may act on: C0 other than '\n', DEL,
 * or a C1 control (UTF-8 C2 80..9F). */
static bool has_terminal_control(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; u[i]; i++) {
        if ((u[i] < 0x20 && u[i] != '\n') || u[i] == 0x7F)
            return true;
        if (u[i] == 0xC2 && u[i + 1] >= 0x80 && u[i + 1] <= 0x9F)
            return true;
    }
    return false;
}

TEST(retrieve_output_has_no_terminal_controls)
{
    /* documents whose id, title and text carry ESC, BEL, CSI (C1), DEL, tabs
     * and line breaks around a search word */
    static const char *const NASTY[] = {"\\u001b[31m", "\\u0007", "\\u009b2J", "\\u007f",
                                        "\\t",         "\\r\\n",  "\\u001b]0;owned\\u0007",
                                        "\\u0085",     "\\u0008"};
    dr_rng rng;
    dr_rng_seed(&rng, 4242);
    dr_buf b = {0};
    for (int d = 0; d < 24; d++) {
        const char *x = NASTY[dr_rng_below(&rng, DR_ARRAY_LEN(NASTY))];
        const char *y = NASTY[dr_rng_below(&rng, DR_ARRAY_LEN(NASTY))];
        dr_buf_printf(&b,
                      "{\"_id\":\"d%d%s\",\"title\":\"ti%stle\",\"text\":\"zebra %s quokka %d%s "
                      "end\"}\n",
                      d, d % 3 == 0 ? x : "", y, x, d, y);
    }
    char dir[4300], cmd[13000];
    snprintf(dir, sizeof(dir), "%s/ix", test_tmpdir());
    char *out = NULL;
    snprintf(cmd, sizeof(cmd), "%s index --index %s --no-dense %s", test_cli_path(), dir,
             test_write_file("nasty.jsonl", b.data));
    dr_buf_free(&b);
    ASSERT_EQ(test_run(cmd, &out), 0);
    free(out);
    snprintf(cmd, sizeof(cmd), "%s retrieve --index %s -k 30 'zebra quokka'", test_cli_path(),
             dir);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "zebra");
    ASSERT(!has_terminal_control(out));
    free(out);
    snprintf(cmd, sizeof(cmd), "%s retrieve --index %s -k 30 --json 'zebra quokka'",
             test_cli_path(), dir);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT(!has_terminal_control(out));
    /* the JSON still carries the exact text: it parses, and each hit's
     * text is the document text (escapes decoded) */
    cJSON *j = cJSON_Parse(out);
    free(out);
    ASSERT(j != NULL);
    const cJSON *hits = cJSON_GetObjectItemCaseSensitive(j, "hits");
    ASSERT_EQ(cJSON_GetArraySize(hits), 24);
    dynrag_index *idx = NULL;
    dynrag_error err;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    const cJSON *h;
    cJSON_ArrayForEach(h, hits)
    {
        const char *id = cJSON_GetObjectItemCaseSensitive(h, "doc_id")->valuestring;
        const char *text = cJSON_GetObjectItemCaseSensitive(h, "text")->valuestring;
        char *title = NULL, *full = NULL;
        int rc = dynrag_index_document(idx, id, &title, &full, &err);
        bool same = rc == DYNRAG_OK && strcmp(full, text) == 0 &&
                    strcmp(title, cJSON_GetObjectItemCaseSensitive(h, "title")->valuestring) == 0;
        free(title);
        free(full);
        if (!same) {
            dynrag_index_close(idx);
            cJSON_Delete(j);
            ASSERT(same);
        }
    }
    dynrag_index_close(idx);
    cJSON_Delete(j);
    /* `dynrag query` prints an extractive answer (document text), its
     * sources (titles, ids) and the route (reasons): none of it raw */
    char yaml[6000];
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: nasty\nindex: %s\nstages:\n  index:\n    options:\n"
             "      - {name: bm25, kind: bm25}\n  generator:\n    options:\n"
             "      - {name: extractive, kind: extractive, params: {threshold: 0}}\n",
             dir);
    const char *pipe_path = test_write_file("nasty.yaml", yaml);
    snprintf(cmd, sizeof(cmd), "%s query --pipeline %s 'zebra quokka end'", test_cli_path(),
             pipe_path);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "zebra");
    ASSERT_CONTAINS(out, "Sources:");
    ASSERT(!has_terminal_control(out));
    free(out);
}

/* Chunk ids far sparser than the chunks (documents replaced many times):
 * the map looks ids up by binary search instead of a table; same results. */
TEST(search_fast_paths_sparse_chunk_ids)
{
    dr_rng rng;
    dr_rng_seed(&rng, 5);
    dr_buf b = {0};
    for (int round = 0; round < 120; round++) {
        for (int d = 0; d < 12; d++) {
            dr_buf_printf(&b, "{\"_id\":\"doc%d\",\"title\":\"t%d\",\"text\":\"", d, d);
            int words = 1 + (int)dr_rng_below(&rng, 12);
            for (int w = 0; w < words; w++)
                dr_buf_printf(&b, "%s%s", w ? " " : "",
                              WORDS[dr_rng_below(&rng, DR_ARRAY_LEN(WORDS))]);
            dr_buf_puts(&b, "\"}\n");
        }
    }
    char dir[4300];
    snprintf(dir, sizeof(dir), "%s/ix", test_tmpdir());
    const char *in[] = {test_write_file("rep.jsonl", b.data)};
    dr_buf_free(&b);
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    bo.chunk_tokens = 6;
    bo.chunk_overlap = 2;
    bo.no_dense = true;
    dynrag_error err;
    dynrag_build_stats st;
    ASSERT_OK(dynrag_index_add(dir, in, 1, &bo, &st, &err), &err);
    ASSERT_EQ(st.total_docs, 12);
    ASSERT_GT(st.chunks, 4 * st.total_chunks + 1024); /* ids handed out vs chunks left */
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    check_equivalence(idx, &rng, 60, false);
    dynrag_index_close(idx);
}

/* Rows removed behind the index's back (damage, not a write: the
 * generation stays): a chunk whose document row is gone gives no hit on
 * any path, and the paths still agree. */
TEST(search_fast_paths_missing_document_rows)
{
    dr_rng rng;
    dr_rng_seed(&rng, 31);
    char dir[4300], db_path[4400];
    snprintf(dir, sizeof(dir), "%s/ix", test_tmpdir());
    snprintf(db_path, sizeof(db_path), "%s/index.db", dir);
    const char *in[] = {write_corpus("c.jsonl", 30, &rng)};
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    bo.chunk_tokens = 6;
    bo.chunk_overlap = 2;
    bo.no_dense = true;
    dynrag_error err;
    ASSERT_OK(dynrag_index_add(dir, in, 1, &bo, NULL, &err), &err);
    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open(db_path, &db), SQLITE_OK);
    int rc = sqlite3_exec(db, "DELETE FROM docs WHERE doc_id IN ('doc3', 'doc7', 'doc11')", NULL,
                          NULL, NULL);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    check_equivalence(idx, &rng, 60, false);
    for (int ids = 0; ids < 2; ids++) {
        dynrag_search_options o;
        dynrag_search_options_init(&o);
        o.k = 100;
        o.per_document = ids;
        o.ids_only = ids;
        dynrag_hits h;
        ASSERT_OK(dynrag_index_search(idx, "alpha beta gamma delta omega honey lava stone river", &o,
                                      &h, &err),
                  &err);
        bool gone = true;
        for (size_t i = 0; i < h.n; i++)
            gone = gone && strcmp(h.hits[i].doc_id, "doc3") != 0 &&
                   strcmp(h.hits[i].doc_id, "doc7") != 0 && strcmp(h.hits[i].doc_id, "doc11") != 0;
        size_t n = h.n;
        dynrag_hits_free(&h);
        ASSERT(gone);
        ASSERT_GT(n, 0);
    }
    dynrag_index_close(idx);
}
