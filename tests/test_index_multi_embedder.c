/* test_index_multi_embedder.c - `dynrag index --pipeline` with several
 * embedder options writes the main index and every option's index in
 * embedders/<option> together: a failure changes none of them, and an
 * interrupted write is brought back in step by the next one. Through the
 * CLI, so that the same tests run against any build of the tool. */
#include "test.h"

#include "dynrag/index.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

/* The sorted document ids of the index in dir, one per line, in a malloc'ed
 * string (caller frees); "<none>" when dir has no index.db. Counts its
 * chunks in *chunks when not NULL. */
static char *doc_ids(const char *dir, long long *chunks)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/index.db", dir);
    if (chunks)
        *chunks = -1;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return strdup("<none>");
    sqlite3 *db = NULL;
    char uri[4500];
    snprintf(uri, sizeof(uri), "file:%s?mode=ro", path);
    if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return strdup("<unreadable>");
    }
    size_t cap = 1024, len = 0;
    char *out = malloc(cap);
    out[0] = '\0';
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT doc_id FROM docs ORDER BY doc_id", -1, &st, NULL) ==
        SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *id = (const char *)sqlite3_column_text(st, 0);
            size_t n = strlen(id);
            while (len + n + 2 > cap) {
                cap *= 2;
                out = realloc(out, cap);
            }
            memcpy(out + len, id, n);
            len += n;
            out[len++] = '\n';
            out[len] = '\0';
        }
    }
    sqlite3_finalize(st);
    if (chunks && sqlite3_prepare_v2(db, "SELECT count(*) FROM chunks", -1, &st, NULL) ==
                      SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            *chunks = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return out;
}

/* Number of documents of the index in dir, through the public API. */
static long long n_docs(const char *dir, int64_t *generation)
{
    dynrag_index *idx = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_index_open(dir, NULL, &idx, &err) != DYNRAG_OK) {
        fprintf(stderr, "open %s: %s\n", dir, dynrag_errmsg(&err));
        return -1;
    }
    dynrag_index_info info;
    dynrag_index_get_info(idx, &info);
    dynrag_index_close(idx);
    if (generation)
        *generation = info.generation;
    return (long long)info.docs;
}

/* Runs a command, printing its output when its exit status is not `want`;
 * returns the status and the output in *out (caller frees) when out is not
 * NULL. */
static int run(const char *cmd, int want, char **out)
{
    char *o = NULL;
    int rc = test_run(cmd, &o);
    if (rc != want)
        fprintf(stderr, "$ %s\n-> %d\n%s\n", cmd, rc, o ? o : "");
    if (out)
        *out = o;
    else
        free(o);
    return rc;
}

/* The SciFact corpus (skips the test without it) split like the
 * reproduction of the bug: small.jsonl = its first 200 documents,
 * more.jsonl = the next 100. Writes pe.yaml (options e256, e64) and
 * pe2.yaml (e64 now dim 128) for the index tmpdir/pidx. */
static int scifact_setup(char *idx, size_t size, char *small, char *more, char *pe, char *pe2)
{
    char corpus[4300];
    snprintf(corpus, sizeof(corpus), "%s/scifact/corpus.jsonl", test_data_dir());
    if (access(corpus, R_OK) != 0)
        return -1;
    const char *t = test_tmpdir();
    snprintf(idx, size, "%s/pidx", t);
    snprintf(small, 4300, "%s/small.jsonl", t);
    snprintf(more, 4300, "%s/more.jsonl", t);
    char cmd[13000];
    snprintf(cmd, sizeof(cmd), "head -200 '%s' > '%s' && head -300 '%s' | tail -100 > '%s'",
             corpus, small, corpus, more);
    if (run(cmd, 0, NULL) != 0)
        return -1;
    char yaml[6000];
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: pe\nindex: %s\nstages:\n  embedder:\n    options:\n"
             "      - {name: e256, kind: builtin, params: {dim: 256}}\n"
             "      - {name: e64, kind: builtin, params: {dim: %d}}\n"
             "  index:\n    options: [{name: dense, kind: dense}]\n",
             idx, 64);
    snprintf(pe, 4300, "%s", test_write_file("pe.yaml", yaml));
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: pe\nindex: %s\nstages:\n  embedder:\n    options:\n"
             "      - {name: e256, kind: builtin, params: {dim: 256}}\n"
             "      - {name: e64, kind: builtin, params: {dim: %d}}\n"
             "  index:\n    options: [{name: dense, kind: dense}]\n",
             idx, 128);
    snprintf(pe2, 4300, "%s", test_write_file("pe2.yaml", yaml));
    return 0;
}

/* The reported reproduction: a second call whose e64 option changed its
 * dimension must fail before the main index changes; both indexes keep the
 * first call's 200 documents and still answer queries. */
TEST(index_multi_embedder_failed_secondary_changes_nothing)
{
    char idx[4300], small[4300], more[4300], pe[4300], pe2[4300], sub[4400], cmd[20000];
    if (scifact_setup(idx, sizeof(idx), small, more, pe, pe2) != 0)
        SKIP("no SciFact corpus in the data folder");
    snprintf(sub, sizeof(sub), "%s/embedders/e64", idx);
    snprintf(cmd, sizeof(cmd), "'%s' index --pipeline '%s' '%s'", test_cli_path(), pe, small);
    ASSERT_EQ(run(cmd, 0, NULL), 0);
    int64_t gen_main = 0, gen_sub = 0;
    ASSERT_EQ(n_docs(idx, &gen_main), 200);
    ASSERT_EQ(n_docs(sub, &gen_sub), 200);
    char *out = NULL;
    snprintf(cmd, sizeof(cmd), "'%s' index --pipeline '%s' '%s'", test_cli_path(), pe2, more);
    ASSERT_EQ(run(cmd, 1, &out), 1);
    int64_t g1 = 0, g2 = 0;
    ASSERT_EQ(n_docs(idx, &g1), 200);
    ASSERT_EQ(n_docs(sub, &g2), 200);
    ASSERT_EQ(g1, gen_main);
    ASSERT_EQ(g2, gen_sub);
    /* The error names the option and its folder, and what changed. */
    ASSERT_CONTAINS(out, "embedder option 'e64'");
    ASSERT_CONTAINS(out, sub);
    ASSERT_CONTAINS(out, "no index changed");
    free(out);
    char *a = doc_ids(idx, NULL), *b = doc_ids(sub, NULL);
    ASSERT_STR_EQ(a, b);
    free(a);
    free(b);
    /* Queries still work on both. */
    snprintf(cmd, sizeof(cmd), "'%s' retrieve --index '%s' --mode hybrid -k 3 "
             "'vitamin D deficiency'", test_cli_path(), idx);
    ASSERT_EQ(run(cmd, 0, &out), 0);
    ASSERT_CONTAINS(out, " 1. ");
    free(out);
    snprintf(cmd, sizeof(cmd), "'%s' retrieve --index '%s' --mode dense -k 3 "
             "'vitamin D deficiency'", test_cli_path(), sub);
    ASSERT_EQ(run(cmd, 0, &out), 0);
    ASSERT_CONTAINS(out, " 1. ");
    free(out);
    /* The unchanged pipeline still adds to both. */
    snprintf(cmd, sizeof(cmd), "'%s' index --pipeline '%s' '%s'", test_cli_path(), pe, more);
    ASSERT_EQ(run(cmd, 0, NULL), 0);
    ASSERT_EQ(n_docs(idx, NULL), 300);
    ASSERT_EQ(n_docs(sub, NULL), 300);
}

/* A secondary folder that is a plain file, or whose lock another writer
 * holds, is refused before the main index changes. */
TEST(index_multi_embedder_bad_folder_refused)
{
    char idx[4300], small[4300], more[4300], pe[4300], pe2[4300], sub[4400], cmd[20000];
    if (scifact_setup(idx, sizeof(idx), small, more, pe, pe2) != 0)
        SKIP("no SciFact corpus in the data folder");
    snprintf(sub, sizeof(sub), "%s/embedders/e64", idx);
    snprintf(cmd, sizeof(cmd), "'%s' index --pipeline '%s' '%s'", test_cli_path(), pe, small);
    ASSERT_EQ(run(cmd, 0, NULL), 0);
    int64_t gen = 0, g = 0;
    ASSERT_EQ(n_docs(idx, &gen), 200);

    /* Another writer holds embedders/e64/lock. */
    char lock[4500];
    snprintf(lock, sizeof(lock), "%s/lock", sub);
    int fd = open(lock, O_RDWR | O_CREAT, 0644);
    ASSERT(fd >= 0);
    ASSERT_EQ(flock(fd, LOCK_EX), 0);
    char *out = NULL;
    snprintf(cmd, sizeof(cmd), "'%s' index --pipeline '%s' --lock-timeout 0.3 '%s'",
             test_cli_path(), pe, more);
    int rc = run(cmd, 1, &out);
    close(fd);
    ASSERT_EQ(rc, 1);
    ASSERT_CONTAINS(out, "embedder option 'e64'");
    ASSERT_CONTAINS(out, "lock");
    free(out);
    ASSERT_EQ(n_docs(idx, &g), 200);
    ASSERT_EQ(g, gen);

    /* embedders/e64 is a plain file. */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && echo x > '%s'", sub, sub);
    ASSERT_EQ(run(cmd, 0, NULL), 0);
    snprintf(cmd, sizeof(cmd), "'%s' index --pipeline '%s' '%s'", test_cli_path(), pe, more);
    ASSERT_EQ(run(cmd, 1, &out), 1);
    ASSERT_CONTAINS(out, "embedder option 'e64'");
    ASSERT_CONTAINS(out, sub);
    ASSERT_CONTAINS(out, "not a directory");
    free(out);
    ASSERT_EQ(n_docs(idx, &g), 200);
    ASSERT_EQ(g, gen);
    struct stat sb;
    ASSERT_EQ(stat(sub, &sb), 0);
    ASSERT(S_ISREG(sb.st_mode));

    /* With the file gone, the next call rebuilds e64 from the main index's
     * documents as well as adding the new ones. */
    ASSERT_EQ(unlink(sub), 0);
    ASSERT_EQ(run(cmd, 0, NULL), 0);
    ASSERT_EQ(n_docs(idx, NULL), 300);
    ASSERT_EQ(n_docs(sub, NULL), 300);
}

/* A crash between the commits leaves embedders/e64 ahead of the main
 * index; the next call says so and brings it back in step. */
TEST(index_multi_embedder_crash_between_commits_repaired)
{
    char idx[4300], small[4300], more[4300], pe[4300], pe2[4300], sub[4400], cmd[20000];
    if (scifact_setup(idx, sizeof(idx), small, more, pe, pe2) != 0)
        SKIP("no SciFact corpus in the data folder");
    snprintf(sub, sizeof(sub), "%s/embedders/e64", idx);
    snprintf(cmd, sizeof(cmd), "'%s' index --pipeline '%s' '%s'", test_cli_path(), pe, small);
    ASSERT_EQ(run(cmd, 0, NULL), 0);
    snprintf(cmd, sizeof(cmd),
             "DYNRAG_TEST_KILL_AT=group_between_commits '%s' index --pipeline '%s' '%s'",
             test_cli_path(), pe, more);
    char *out = NULL;
    ASSERT_EQ(run(cmd, 128 + 9, &out), 128 + 9);
    free(out);
    ASSERT_EQ(n_docs(idx, NULL), 200); /* the main index commits last */
    ASSERT_EQ(n_docs(sub, NULL), 300);
    const char *one = test_write_file("one.jsonl", "{\"_id\":\"new1\",\"text\":\"zeppelin airship\"}\n");
    snprintf(cmd, sizeof(cmd), "'%s' index --pipeline '%s' '%s'", test_cli_path(), pe, one);
    ASSERT_EQ(run(cmd, 0, &out), 0);
    ASSERT_CONTAINS(out, "out of step");
    ASSERT_CONTAINS(out, "embedder option 'e64'");
    free(out);
    long long ca = 0, cb = 0;
    char *a = doc_ids(idx, &ca), *b = doc_ids(sub, &cb);
    ASSERT_STR_EQ(a, b);
    ASSERT_EQ(ca, cb);
    free(a);
    free(b);
    ASSERT_EQ(n_docs(sub, NULL), 201);
    /* in step again: no warning on the next call */
    snprintf(cmd, sizeof(cmd), "'%s' index --pipeline '%s' --delete new1", test_cli_path(), pe);
    ASSERT_EQ(run(cmd, 0, &out), 0);
    ASSERT_NOT_CONTAINS(out, "out of step");
    free(out);
    ASSERT_EQ(n_docs(idx, NULL), 200);
    ASSERT_EQ(n_docs(sub, NULL), 200);
}

/* ---- property: random sequences of calls --------------------------------- */

#define POOL 24
#define N_SEC 3

static const char *const words[] = {
    "protein", "cell",  "gene",   "tumour", "vitamin", "bone",   "heart", "brain",
    "enzyme",  "virus", "immune", "blood",  "insulin", "muscle", "liver", "kidney",
};

/* Appends a JSONL line of document `id` (text drawn from rs) to f. */
static void write_doc(FILE *f, int id, uint64_t *rs)
{
    fprintf(f, "{\"_id\":\"d%02d\",\"title\":\"t%d\",\"text\":\"", id, id);
    int n = 3 + (int)(test_rand(rs) % 30);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%s", i ? " " : "", words[test_rand(rs) % (sizeof(words) / sizeof(*words))]);
    fprintf(f, ".\"}\n");
}

/*
 * 30 random sequences of 5 `dynrag index --pipeline` calls, each with a
 * random set of secondary embedder options (names s0..s2, each with its own
 * dimension), random documents (new and replaced) and deletions; about a
 * third of the calls are made to fail (an option's dimension changed, an
 * option's folder replaced by a file, a malformed input line, the main
 * embedder changed) and a few are killed between the commits. After every
 * call: a failed call changed no index; after a successful call the main
 * index holds the expected documents and every option of the call holds the
 * same document ids and chunk count as the main index.
 */
TEST(index_multi_embedder_property)
{
    static const int dims[] = {16, 24, 40, 48, 56};
    int failures = 0, repairs = 0, successes = 0;
    for (uint64_t seed = 1; seed <= 30; seed++) {
        uint64_t rs = seed * 7919;
        char idx[4300], subs[N_SEC][4400], cmd[20000], path[4400];
        snprintf(idx, sizeof(idx), "%s/prop%llu", test_tmpdir(), (unsigned long long)seed);
        for (int s = 0; s < N_SEC; s++)
            snprintf(subs[s], sizeof(subs[s]), "%s/embedders/s%d", idx, s);
        bool model[POOL] = {false}; /* the main index's expected documents */
        int rec_dim[N_SEC] = {0};   /* dimension recorded in s<k>'s index, 0: none */
        int dim_of[N_SEC];
        for (int s = 0; s < N_SEC; s++)
            dim_of[s] = dims[test_rand(&rs) % 5];
        for (int call = 0; call < 5; call++) {
            bool use[N_SEC];
            for (int s = 0; s < N_SEC; s++)
                use[s] = test_rand(&rs) % 3 != 0;
            int call_dim[N_SEC];
            memcpy(call_dim, dim_of, sizeof(call_dim));
            int main_dim = 32;
            bool bad_line = false, expect_fail = false, kill = false;
            int fault = call > 0 ? (int)(test_rand(&rs) % 12) : 99;
            if (fault == 0 || fault == 1) { /* an option's identity changes */
                int s = (int)(test_rand(&rs) % N_SEC);
                if (rec_dim[s] != 0) { /* (an option without an index yet would just take it) */
                    use[s] = true;
                    call_dim[s] = dim_of[s] == 16 ? 24 : 16;
                    expect_fail = true;
                }
            } else if (fault == 2) { /* an option's folder is a file */
                int s = (int)(test_rand(&rs) % N_SEC);
                use[s] = true;
                snprintf(cmd, sizeof(cmd), "mkdir -p '%s/embedders' && rm -rf '%s' && : > '%s'",
                         idx, subs[s], subs[s]);
                ASSERT_EQ(run(cmd, 0, NULL), 0);
                rec_dim[s] = 0;
                expect_fail = true;
            } else if (fault == 3) {
                bad_line = true;
                expect_fail = true;
            } else if (fault == 4) {
                main_dim = 64;
                expect_fail = true;
            } else if (fault == 5) {
                kill = true;
            }
            /* The pipeline of this call. */
            char yaml[4000];
            int yl = snprintf(yaml, sizeof(yaml),
                              "version: 1\nname: p\nindex: %s\nstages:\n  embedder:\n"
                              "    options:\n"
                              "      - {name: m, kind: builtin, params: {dim: %d}}\n",
                              idx, main_dim);
            bool any_sec = false;
            for (int s = 0; s < N_SEC; s++)
                if (use[s]) {
                    yl += snprintf(yaml + yl, sizeof(yaml) - (size_t)yl,
                                   "      - {name: s%d, kind: builtin, params: {dim: %d}}\n", s,
                                   call_dim[s]);
                    any_sec = true;
                }
            snprintf(yaml + yl, sizeof(yaml) - (size_t)yl,
                     "  index:\n    options: [{name: dense, kind: dense}]\n");
            if (kill && !any_sec)
                kill = false;
            char pfile[4300];
            snprintf(pfile, sizeof(pfile), "%s", test_write_file("p.yaml", yaml));
            /* Its documents and deletions. */
            bool next[POOL];
            memcpy(next, model, sizeof(next));
            snprintf(path, sizeof(path), "%s/in.jsonl", test_tmpdir());
            FILE *f = fopen(path, "w");
            ASSERT(f != NULL);
            int n_in = 2 + (int)(test_rand(&rs) % 6);
            for (int i = 0; i < n_in; i++) {
                int id = (int)(test_rand(&rs) % POOL);
                write_doc(f, id, &rs);
                if (bad_line && i == n_in / 2)
                    fprintf(f, "{\"_id\": \"broken\", \"text\": \n");
            }
            fclose(f);
            int cl = snprintf(cmd, sizeof(cmd), "%s'%s' index --pipeline '%s'",
                              kill ? "DYNRAG_TEST_KILL_AT=group_between_commits " : "",
                              test_cli_path(), pfile);
            int n_del = call > 0 ? (int)(test_rand(&rs) % 3) : 0;
            for (int i = 0; i < n_del; i++) {
                int id = (int)(test_rand(&rs) % POOL);
                cl += snprintf(cmd + cl, sizeof(cmd) - (size_t)cl, " --delete d%02d", id);
                next[id] = false;
            }
            snprintf(cmd + cl, sizeof(cmd) - (size_t)cl, " '%s'", path);
            /* The documents the input puts (re-read: ids only). */
            f = fopen(path, "r");
            char line[4096];
            while (f && fgets(line, sizeof(line), f)) {
                int id = -1;
                if (sscanf(line, "{\"_id\":\"d%d\"", &id) == 1 && id >= 0 && id < POOL)
                    next[id] = true;
            }
            if (f)
                fclose(f);
            /* Every index before the call. */
            char *before_main = doc_ids(idx, NULL), *before_sub[N_SEC];
            for (int s = 0; s < N_SEC; s++)
                before_sub[s] = doc_ids(subs[s], NULL);
            int want = kill ? 128 + 9 : expect_fail ? 1 : 0;
            char *out = NULL;
            int rc = run(cmd, want, &out);
            if (rc != want)
                fprintf(stderr, "seed %llu call %d (fault %d):\n%s\n", (unsigned long long)seed,
                        call, fault, yaml);
            ASSERT_EQ(rc, want);
            if (out && strstr(out, "out of step"))
                repairs++;
            free(out);
            char *after_main = doc_ids(idx, NULL);
            if (rc != 0) {
                /* Nothing changed but what the crash left ahead. */
                failures++;
                for (int s = 0; s < N_SEC && kill; s++)
                    if (use[s]) { /* killed after the first option's commit */
                        rec_dim[s] = call_dim[s];
                        break;
                    }
                ASSERT_STR_EQ(after_main, before_main);
                for (int s = 0; s < N_SEC && !kill; s++) {
                    char *now = doc_ids(subs[s], NULL);
                    if (strcmp(now, "<none>") != 0 || strcmp(before_sub[s], "<none>") == 0) {
                        /* a new, empty index.db may appear for an option
                         * checked before the failure */
                        if (strcmp(now, before_sub[s]) != 0 &&
                            !(strcmp(before_sub[s], "<none>") == 0 && now[0] == '\0')) {
                            fprintf(stderr, "seed %llu call %d: s%d changed by a failed call\n",
                                    (unsigned long long)seed, call, s);
                            ASSERT_STR_EQ(now, before_sub[s]);
                        }
                    }
                    free(now);
                }
                if (fault == 2) { /* put the folder back for the next calls */
                    int s = 0;
                    for (; s < N_SEC; s++) {
                        struct stat sb;
                        if (stat(subs[s], &sb) == 0 && S_ISREG(sb.st_mode))
                            ASSERT_EQ(unlink(subs[s]), 0);
                    }
                }
            } else {
                successes++;
                memcpy(model, next, sizeof(model));
                char want_ids[POOL * 8] = "";
                for (int i = 0; i < POOL; i++)
                    if (model[i])
                        snprintf(want_ids + strlen(want_ids), sizeof(want_ids) - strlen(want_ids),
                                 "d%02d\n", i);
                ASSERT_STR_EQ(after_main, want_ids);
                long long main_chunks = 0;
                free(doc_ids(idx, &main_chunks));
                for (int s = 0; s < N_SEC; s++) {
                    if (!use[s])
                        continue;
                    rec_dim[s] = call_dim[s];
                    long long chunks = 0;
                    char *ids = doc_ids(subs[s], &chunks);
                    if (strcmp(ids, after_main) != 0)
                        fprintf(stderr, "seed %llu call %d: s%d differs from the main index\n",
                                (unsigned long long)seed, call, s);
                    ASSERT_STR_EQ(ids, after_main);
                    ASSERT_EQ(chunks, main_chunks);
                    free(ids);
                }
            }
            free(after_main);
            free(before_main);
            for (int s = 0; s < N_SEC; s++)
                free(before_sub[s]);
        }
    }
    fprintf(stderr, "%d calls succeeded, %d failed or were killed, %d repairs\n", successes,
            failures, repairs);
    ASSERT_GT(failures, 10);
    ASSERT_GT(repairs, 0);
}
