/* test_index_robust.c - damaged, stale and read-only index folders, hostile
 * folder layouts and inputs (issue 12, "Index and CLI"). */
#include "test.h"

#include "core/util.h"
#include "dynrag/index.h"
#include "dynrag/pipeline.h"
#include "generate/reformulate.h"
#include "retrieve/titles.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <regex.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char fixture_buf[2][4300];

/* Path of tests/fixtures/corpus/<name> (2 rotating static buffers). */
static const char *fixture(const char *name)
{
    static int next = 0;
    char *b = fixture_buf[next++ % 2];
    snprintf(b, sizeof(fixture_buf[0]), "%s/tests/fixtures/corpus/%s", test_source_dir(), name);
    return b;
}

/* splitmix64: a small deterministic generator for reproducible cases. */
static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static char *slurp(const char *path, size_t *len)
{
    char *data = NULL;
    dynrag_error err;
    if (dr_read_file(path, (size_t)1 << 30, &data, len, &err) != DYNRAG_OK)
        return NULL;
    return data;
}

static void spit(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return;
    if (len)
        fwrite(data, 1, len, f);
    fclose(f);
}

static const char *const queries[] = {"photosynthesis sunlight", "volcano lava ash",
                                      "black hole gravity light", "bees honey"};

/* A canonical string of the results of every query in every mode the index
 * supports, or "error <status>" at the first failure. Checks the hit
 * invariants (count, strings present, finite scores) on the way. */
static char *signature(dynrag_index *idx, bool dense)
{
    dr_buf b = {0};
    for (int m = 0; m < (dense ? 3 : 1); m++) {
        for (size_t q = 0; q < DR_ARRAY_LEN(queries); q++) {
            dynrag_search_options o;
            dynrag_search_options_init(&o);
            o.mode = (dynrag_search_mode)m;
            o.k = 4;
            dynrag_hits h;
            dynrag_error err;
            int rc = dynrag_index_search(idx, queries[q], &o, &h, &err);
            if (rc != DYNRAG_OK) {
                dr_buf_printf(&b, "error %d ", rc);
                continue;
            }
            if (h.n > 4)
                dr_buf_printf(&b, "TOO MANY HITS ");
            for (size_t i = 0; i < h.n; i++) {
                const dynrag_hit *x = &h.hits[i];
                if (x->doc_id == NULL || x->title == NULL || x->text == NULL || !isfinite(x->score))
                    dr_buf_printf(&b, "BAD HIT ");
                else
                    dr_buf_printf(&b, "%s:%lld:%.5f ", x->doc_id, (long long)x->chunk_id, x->score);
            }
            dr_buf_printf(&b, "| ");
            dynrag_hits_free(&h);
        }
    }
    return dr_buf_take(&b);
}

/* Opens dir and returns its signature, or NULL (with *rc) when open fails. */
static char last_open_error[1024];

static char *open_sig(const char *dir, bool dense, int *rc)
{
    dynrag_index *idx = NULL;
    dynrag_error err;
    *rc = dynrag_index_open(dir, NULL, &idx, &err);
    if (*rc != DYNRAG_OK) {
        dr_strlcpy(last_open_error, dynrag_errmsg(&err), sizeof(last_open_error));
        return NULL;
    }
    char *s = signature(idx, dense);
    dynrag_index_close(idx);
    return s;
}

typedef struct pristine {
    const char *name;
    char *data;
    size_t len;
} pristine;

/* Applies one random damage to buf (len bytes): bit flips, a random run of
 * bytes, a zeroed 512-byte block, or truncation. Returns the new length. */
static size_t damage(uint64_t *s, char *buf, size_t len)
{
    if (len == 0)
        return 0;
    switch (rnd(s) % 4) {
    case 0: { /* 1-8 bit flips */
        int n = 1 + (int)(rnd(s) % 8);
        for (int i = 0; i < n; i++)
            buf[rnd(s) % len] ^= (char)(1u << (rnd(s) % 8));
        return len;
    }
    case 1: { /* a run of random bytes */
        size_t at = rnd(s) % len, n = 1 + rnd(s) % 64;
        for (size_t i = at; i < len && i < at + n; i++)
            buf[i] = (char)rnd(s);
        return len;
    }
    case 2: { /* a zeroed block */
        size_t at = (rnd(s) % len) & ~(size_t)511;
        memset(buf + at, 0, DR_MIN((size_t)512, len - at));
        return len;
    }
    default: /* truncation */ return rnd(s) % len;
    }
}

/* Builds tiny.jsonl into dir; dense or not. */
static void build(const char *dir, bool dense)
{
    dynrag_build_options o;
    dynrag_build_options_init(&o);
    o.no_dense = !dense;
    o.embedder.dim = 16;
    const char *in[] = {fixture("tiny.jsonl")};
    dynrag_error err;
    ASSERT_OK(dynrag_index_add(dir, in, 1, &o, NULL, &err), &err);
}

/*
 * Property: whatever damage is done to one file of an index folder, opening
 * and searching it either fails with a clean error or works; a damaged
 * bm25.idx is never trusted (results equal the undamaged index's); a
 * damaged dense.faiss is refused or, when the bytes still hash right,
 * harmless. Run under ASan/UBSan in the sanitizer build, any out-of-bounds
 * use of a value read from disk is a failure too.
 */
TEST(index_corrupt_files_property)
{
    char base[2][2048], work[2048];
    snprintf(base[0], sizeof(base[0]), "%s/plain", test_tmpdir());
    snprintf(base[1], sizeof(base[1]), "%s/dense", test_tmpdir());
    snprintf(work, sizeof(work), "%s/work", test_tmpdir());
    build(base[0], false);
    build(base[1], true);
    static const char *const files[] = {"index.db", "bm25.idx", "dense.faiss"};
    char *want[2];
    for (int d = 0; d < 2; d++) {
        int rc;
        want[d] = open_sig(base[d], d == 1, &rc);
        ASSERT_EQ(rc, DYNRAG_OK);
        ASSERT_NOT_CONTAINS(want[d], "error");
        ASSERT_CONTAINS(want[d], "d1:");
    }
    /* plain: index.db and bm25.idx; dense: all three */
    pristine p[2][3];
    memset(p, 0, sizeof(p));
    for (int d = 0; d < 2; d++)
        for (int f = 0; f < (d ? 3 : 2); f++) {
            char path[4300];
            snprintf(path, sizeof(path), "%s/%s", base[d], files[f]);
            p[d][f].name = files[f];
            p[d][f].data = slurp(path, &p[d][f].len);
            ASSERT(p[d][f].data != NULL);
        }
    dynrag_error err;
    ASSERT_OK(dr_mkdirs(work, &err), &err);
    int opened = 0, refused = 0;
    int per_target[5] = {140, 70, 40, 70, 50}; /* plain db, plain bm25, dense db/bm25/faiss */
    for (int target = 0; target < 5; target++) {
        int d = target < 2 ? 0 : 1;
        int f = target < 2 ? target : target - 2;
        for (int i = 0; i < per_target[target]; i++) {
            uint64_t s = (uint64_t)(target * 1000 + i);
            char *buf = NULL;
            for (int g = 0; g < (d ? 3 : 2); g++) {
                char path[4300];
                snprintf(path, sizeof(path), "%s/%s", work, files[g]);
                if (g != f) {
                    spit(path, p[d][g].data, p[d][g].len);
                    continue;
                }
                buf = malloc(p[d][g].len);
                ASSERT(buf != NULL);
                memcpy(buf, p[d][g].data, p[d][g].len);
                size_t len = damage(&s, buf, p[d][g].len);
                spit(path, buf, len);
            }
            free(buf);
            int rc;
            char *got = open_sig(work, d == 1, &rc);
            /* a reader writes nothing: no new file (sidecar, -wal, -shm) */
            DIR *dh = opendir(work);
            ASSERT(dh != NULL);
            struct dirent *de;
            while ((de = readdir(dh)) != NULL) {
                bool known = de->d_name[0] == '.';
                for (int g = 0; g < (d ? 3 : 2); g++)
                    known = known || strcmp(de->d_name, files[g]) == 0;
                if (!known)
                    test_fail_(__FILE__, __LINE__, "target %d seed %d: open wrote %s", target, i,
                               de->d_name);
            }
            closedir(dh);
            if (got == NULL) {
                refused++;
                ASSERT(rc < 0);
                /* a damaged sidecar is rebuilt, never fatal */
                if (f == 1)
                    test_fail_(__FILE__, __LINE__,
                               "target %d seed %d: damaged bm25.idx "
                               "made open fail (%d)",
                               target, i, rc);
                if (f == 2) { /* the advice is a complete command */
                    ASSERT_EQ(rc, DYNRAG_ERR_STATE);
                    char advice[2200];
                    snprintf(advice, sizeof(advice), "`dynrag index --index %s INPUT...`", work);
                    ASSERT_CONTAINS(last_open_error, advice);
                }
            } else {
                opened++;
                if (f != 0 && strcmp(got, want[d]) != 0)
                    test_fail_(__FILE__, __LINE__,
                               "target %d seed %d: damaged %s changed results:\n%s\nvs\n%s", target,
                               i, files[f], got, want[d]);
                free(got);
            }
            if (test_failed_)
                break;
        }
    }
    printf("corrupt files: %d opened, %d refused cleanly\n", opened, refused);
    ASSERT_GT(opened, 0);
    ASSERT_GT(refused, 0);
    for (int d = 0; d < 2; d++) {
        free(want[d]);
        for (int f = 0; f < 3; f++)
            free(p[d][f].data);
    }
}

/* Builds `inputs` into dir with two calls (generation 2). */
static void build_twice(const char *dir, const char *a, const char *b)
{
    dynrag_build_options o;
    dynrag_build_options_init(&o);
    o.embedder.dim = 16;
    dynrag_error err;
    const char *in1[] = {a}, *in2[] = {b};
    ASSERT_OK(dynrag_index_add(dir, in1, 1, &o, NULL, &err), &err);
    ASSERT_OK(dynrag_index_add(dir, in2, 1, &o, NULL, &err), &err);
}

static void copy_file(const char *from, const char *to)
{
    size_t len = 0;
    char *d = slurp(from, &len);
    ASSERT(d != NULL);
    spit(to, d, len);
    free(d);
}

/*
 * Stale sidecars: index.db deleted and rebuilt in the same folder up to the
 * same generation, with other documents. Neither the old bm25.idx (put back
 * over the new one) nor the old dense.faiss (left as the pending file of
 * that generation) may be used: results equal those of the same build in a
 * fresh folder, over several corpora pairs.
 */
TEST(index_stale_sidecars_rejected)
{
    const char *docs[3] = {test_write_file("a.jsonl", "{\"_id\":\"a1\",\"text\":\"bees make honey "
                                                      "in the hive\"}\n{\"_id\":\"a2\",\"text\":"
                                                      "\"volcano lava and ash\"}\n"),
                           NULL, NULL};
    char a[4300], b[4300], c[4300];
    dr_strlcpy(a, docs[0], sizeof(a));
    dr_strlcpy(b,
               test_write_file("b.jsonl", "{\"_id\":\"b1\",\"text\":\"black hole gravity "
                                          "bends light\"}\n{\"_id\":\"b2\",\"text\":\"bees "
                                          "pollinate flowers; honey\"}\n{\"_id\":\"b3\","
                                          "\"text\":\"photosynthesis needs sunlight\"}\n"),
               sizeof(b));
    dr_strlcpy(c, fixture("tiny.jsonl"), sizeof(c));
    const char *corp[3] = {a, b, c};
    char dir[2048], fresh[2048], path[4300], save[4300];
    snprintf(dir, sizeof(dir), "%s/idx", test_tmpdir());
    for (int round = 0; round < 3; round++) {
        const char *old1 = corp[round], *old2 = corp[(round + 1) % 3];
        const char *new1 = corp[(round + 2) % 3], *new2 = corp[round];
        char cmd[4400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        ASSERT_EQ(system(cmd), 0);
        build_twice(dir, old1, old2);
        snprintf(path, sizeof(path), "%s/bm25.idx", dir);
        snprintf(save, sizeof(save), "%s/old-bm25.idx", test_tmpdir());
        ASSERT(dr_path_exists(path)); /* written by the writer */
        copy_file(path, save);
        snprintf(path, sizeof(path), "%s/dense.faiss", dir);
        snprintf(save, sizeof(save), "%s/old-dense.faiss", test_tmpdir());
        copy_file(path, save);
        snprintf(path, sizeof(path), "%s/index.db", dir);
        ASSERT_EQ(unlink(path), 0);
        build_twice(dir, new1, new2);
        snprintf(fresh, sizeof(fresh), "%s/fresh%d", test_tmpdir(), round);
        build_twice(fresh, new1, new2);
        int rc;
        char *want = open_sig(fresh, true, &rc);
        ASSERT_EQ(rc, DYNRAG_OK);
        char *got = open_sig(dir, true, &rc);
        ASSERT_EQ(rc, DYNRAG_OK);
        ASSERT_STR_EQ(got, want);
        free(got);
        /* put the old database's sidecars back, as a stale leftover */
        snprintf(save, sizeof(save), "%s/old-bm25.idx", test_tmpdir());
        snprintf(path, sizeof(path), "%s/bm25.idx", dir);
        copy_file(save, path);
        snprintf(save, sizeof(save), "%s/old-dense.faiss", test_tmpdir());
        snprintf(path, sizeof(path), "%s/dense.faiss.2", dir);
        copy_file(save, path);
        got = open_sig(dir, true, &rc);
        ASSERT_EQ(rc, DYNRAG_OK);
        ASSERT_STR_EQ(got, want);
        free(got);
        /* the next writer does not adopt the leftover dense.faiss.2 either */
        dynrag_error err;
        ASSERT_OK(dynrag_index_delete(dir, (const char *[]){"nothing"}, 1, NULL, &err), &err);
        ASSERT(!dr_path_exists(path));
        got = open_sig(dir, true, &rc);
        ASSERT_EQ(rc, DYNRAG_OK);
        ASSERT_STR_EQ(got, want);
        free(got);
        free(want);
    }
}

/* "name size mtime_ns" of every entry of dir, sorted (malloc'ed). */
static char *folder_state(const char *dir)
{
    char cmd[4400], *out = NULL;
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && ls -A | sort | while read f; do stat -c '%%n %%s %%Y "
             "%%y' \"$f\"; done",
             dir);
    if (test_run(cmd, &out) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* Runs the CLI as user nobody; 77 when that is impossible here. */
static int run_as_nobody(const char *args, char **out)
{
    char cmd[8800];
    /* nobody must be able to run the CLI and reach the test folder */
    snprintf(cmd, sizeof(cmd),
             "setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "
             "'test -x \"$0\" && test -x \"$1\" && test -r \"$1\"' '%s' '%s'",
             test_cli_path(), test_tmpdir());
    char *o = NULL;
    int rc = test_run(cmd, &o);
    free(o);
    if (rc != 0 || getuid() != 0)
        return 77;
    snprintf(cmd, sizeof(cmd), "setpriv --reuid=65534 --regid=65534 --clear-groups '%s' %s",
             test_cli_path(), args);
    return test_run(cmd, out);
}

/*
 * Read-only indexes: `dynrag index` leaves a complete index (bm25.idx
 * written, no -wal/-shm), opening and searching it writes nothing into the
 * folder (names, sizes and mtimes unchanged, also with the folder chmod
 * 555), and a user who cannot write the folder can search it, also a copy
 * whose database was left in WAL mode (opened immutable).
 */
TEST(index_read_only_folder)
{
    char dir[2048], copy[2048];
    snprintf(dir, sizeof(dir), "%s/ro", test_tmpdir());
    snprintf(copy, sizeof(copy), "%s/ro-wal", test_tmpdir());
    build(dir, true);
    char *before = folder_state(dir);
    ASSERT(before != NULL);
    ASSERT_CONTAINS(before, "bm25.idx ");
    ASSERT_NOT_CONTAINS(before, "-wal");
    ASSERT_NOT_CONTAINS(before, "-shm");
    ASSERT_NOT_CONTAINS(before, "-journal");
    char cmd[8800];
    snprintf(cmd, sizeof(cmd), "chmod 555 '%s'", dir);
    ASSERT_EQ(system(cmd), 0);
    for (int pass = 0; pass < 3; pass++) {
        int rc;
        char *sig = open_sig(dir, true, &rc);
        ASSERT_EQ(rc, DYNRAG_OK);
        ASSERT_CONTAINS(sig, "d4:");
        free(sig);
        char *after = folder_state(dir);
        ASSERT_STR_EQ(after, before);
        free(after);
    }
    /* a copy in WAL mode (as when a writer's database stayed open elsewhere) */
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s' && chmod 755 '%s'", dir, copy, copy);
    ASSERT_EQ(system(cmd), 0);
    char dbp[4300];
    snprintf(dbp, sizeof(dbp), "%s/index.db", copy);
    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open(dbp, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    snprintf(cmd, sizeof(cmd), "chmod 555 '%s'", copy);
    ASSERT_EQ(system(cmd), 0);
    char *wal_before = folder_state(copy);
    ASSERT(wal_before != NULL);
    for (int i = 0; i < 2; i++) {
        char args[4400], *out = NULL;
        snprintf(args, sizeof(args), "retrieve --index '%s' -k 3 'bees honey hive'",
                 i == 0 ? dir : copy);
        int rc = run_as_nobody(args, &out);
        if (rc == 77) {
            free(out);
            free(before);
            free(wal_before);
            SKIP("cannot run as user nobody here (not root, or no setpriv)");
        }
        if (rc != 0)
            test_fail_(__FILE__, __LINE__, "search as nobody failed (%d): %s", rc, out);
        ASSERT_CONTAINS(out, "d4");
        free(out);
    }
    char *after = folder_state(dir);
    ASSERT_STR_EQ(after, before);
    free(after);
    after = folder_state(copy);
    ASSERT_STR_EQ(after, wal_before);
    free(after);
    free(before);
    free(wal_before);
    snprintf(cmd, sizeof(cmd), "chmod 755 '%s' '%s'", dir, copy);
    ASSERT_EQ(system(cmd), 0);
}

/* ---- folders: symbolic link loops -------------------------------------------- */

static void mkpath(const char *p)
{
    dynrag_error err;
    ASSERT_OK(dr_mkdirs(p, &err), &err);
}

/*
 * Property over generated folder trees: whatever symbolic links to folders
 * (itself, `x -> .`, ancestors, siblings, two links to one folder) and to
 * files are added, a folder walk ends and indexes every real file exactly
 * once.
 */
TEST(index_symlink_loops_property)
{
    char cmd[8800];
    for (uint64_t seed = 1; seed <= 12; seed++) {
        uint64_t s = seed;
        char root[2048], idx[2048];
        snprintf(root, sizeof(root), "%s/tree%llu", test_tmpdir(), (unsigned long long)seed);
        snprintf(idx, sizeof(idx), "%s/idx%llu", test_tmpdir(), (unsigned long long)seed);
        /* folders: root + up to 5 nested or sibling ones */
        char dirs[8][2200];
        int nd = 1;
        dr_strlcpy(dirs[0], root, sizeof(dirs[0]));
        mkpath(root);
        int want_dirs = 1 + (int)(rnd(&s) % 5);
        for (int i = 0; i < want_dirs; i++) {
            char parent[2200];
            dr_strlcpy(parent, dirs[rnd(&s) % (uint64_t)nd], sizeof(parent));
            snprintf(dirs[nd], sizeof(dirs[nd]), "%.2100s/d%d", parent, i);
            mkpath(dirs[nd]);
            nd++;
        }
        int files = 0;
        for (int d = 0; d < nd; d++) {
            int nf = (int)(rnd(&s) % 3);
            for (int f = 0; f < nf; f++) {
                char text[128];
                snprintf(text, sizeof(text), "# File %d %d\n\nword%d%d here.\n", d, f, d, f);
                char path[4400];
                snprintf(path, sizeof(path), "%.4300s/f%d_%d.md", dirs[d], d, f);
                spit(path, text, strlen(text));
                files++;
            }
        }
        /* links: self (x -> .), to the root, to a random folder, to a file */
        int nl = 2 + (int)(rnd(&s) % 4);
        for (int l = 0; l < nl; l++) {
            const char *at = dirs[rnd(&s) % (uint64_t)nd];
            const char *to = l == 0 ? "." : dirs[rnd(&s) % (uint64_t)nd];
            snprintf(cmd, sizeof(cmd), "ln -s '%s' '%s/link%d'", to, at, l);
            ASSERT_EQ(system(cmd), 0);
        }
        if (files > 0) { /* a link to a file indexes it once, not twice */
            snprintf(cmd, sizeof(cmd),
                     "f=$(find '%s' -name '*.md' -type f | head -1); "
                     "ln -s \"$f\" '%s/alias.md'",
                     root, root);
            ASSERT_EQ(system(cmd), 0);
        }
        dynrag_build_options o;
        dynrag_build_options_init(&o);
        o.no_dense = true;
        dynrag_build_stats st;
        dynrag_error err;
        const char *in[] = {root};
        ASSERT_OK(dynrag_index_add(idx, in, 1, &o, &st, &err), &err);
        if (st.docs_added != (uint64_t)files)
            test_fail_(__FILE__, __LINE__, "seed %llu: %d files, %llu documents indexed",
                       (unsigned long long)seed, files, (unsigned long long)st.docs_added);
        ASSERT_EQ(st.total_docs, (uint64_t)files);
    }
}

/* The cases: `x -> .` (41 copies of every file before), two links
 * to the folder itself plus one to the parent (an endless walk before),
 * and a link to itself (ELOOP, skipped). */
TEST(index_symlink_self_links)
{
    char root[1000], idx[2048], cmd[8800];
    snprintf(root, sizeof(root), "%s/self", test_tmpdir());
    snprintf(idx, sizeof(idx), "%s/self-idx", test_tmpdir());
    snprintf(cmd, sizeof(cmd),
             "mkdir -p '%s/sub' && echo '# A' > '%s/a.md' && echo 'b text' > '%s/sub/b.txt' && "
             "ln -s . '%s/x' && ln -s . '%s/y' && ln -s .. '%s/sub/up' && ln -s me '%s/me'",
             root, root, root, root, root, root, root);
    ASSERT_EQ(system(cmd), 0);
    dynrag_build_options o;
    dynrag_build_options_init(&o);
    o.no_dense = true;
    dynrag_build_stats st;
    dynrag_error err;
    const char *in[] = {root};
    ASSERT_OK(dynrag_index_add(idx, in, 1, &o, &st, &err), &err);
    ASSERT_EQ(st.docs_added, 2);
    dynrag_index *ix = NULL;
    ASSERT_OK(dynrag_index_open(idx, NULL, &ix, &err), &err);
    char *text = NULL;
    ASSERT_OK(dynrag_index_document(ix, "sub/b.txt", NULL, &text, &err), &err);
    free(text);
    ASSERT_EQ(dynrag_index_document(ix, "x/a.md", NULL, NULL, &err), DYNRAG_ERR_NOTFOUND);
    dynrag_index_close(ix);
}

/* ---- JSONL: escaped NUL, large integer ids -------------------------------------- */

static int add_text(const char *dir, const char *name, const char *jsonl, bool skip_bad,
                    dynrag_build_stats *st, dynrag_error *err)
{
    char path[4300];
    dr_strlcpy(path, test_write_file(name, jsonl), sizeof(path));
    dynrag_build_options o;
    dynrag_build_options_init(&o);
    o.no_dense = true;
    o.skip_bad = skip_bad;
    const char *in[] = {path};
    return dynrag_index_add(dir, in, 1, &o, st, err);
}

/*
 * An escaped NUL in any field used for indexing is refused with file:line
 * and the field (or counted with skip_bad), never cut; in fields not used
 * it is harmless; an escaped backslash before "u0000" is plain text, kept.
 */
TEST(index_jsonl_escaped_nul)
{
    char dir[2048];
    snprintf(dir, sizeof(dir), "%s/nul", test_tmpdir());
    static const struct {
        const char *line, *field;
    } bad[] = {
        {"{\"_id\":\"a\",\"text\":\"wal\\u0000mode rest\"}", "text"},
        {"{\"_id\":\"a\\u0000b\",\"text\":\"x\"}", "_id"},
        {"{\"id\":\"a\",\"contents\":\"\\u0000\"}", "contents"},
        {"{\"_id\":\"a\",\"title\":\"t\\u0000\",\"text\":\"x\"}", "title"},
        {"{\"_id\":\"a\", \"meta\": {\"k\": [1]}, \"text\" : \"x\\\\\\u0000\"}", "text"},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(bad); i++) {
        char doc[512];
        snprintf(doc, sizeof(doc), "{\"_id\":\"ok\",\"text\":\"fine\"}\n%s\n", bad[i].line);
        dynrag_error err;
        dynrag_build_stats st;
        int rc = add_text(dir, "nul.jsonl", doc, false, &st, &err);
        ASSERT_EQ(rc, DYNRAG_ERR_PARSE);
        char want[128];
        snprintf(want, sizeof(want), "nul.jsonl:2: field \"%s\": escaped NUL", bad[i].field);
        ASSERT_CONTAINS(dynrag_errmsg(&err), want);
        ASSERT_OK(add_text(dir, "nul.jsonl", doc, true, &st, &err), &err);
        ASSERT_EQ(st.bad_inputs, 1);
        ASSERT_EQ(st.docs_added + st.docs_replaced, 1);
    }
    /* a raw NUL byte (not JSON) is refused too, never cut */
    {
        char doc[64] = "{\"_id\":\"r\",\"text\":\"wal?mode\"}\n";
        char *q = strchr(doc, '?');
        *q = '\0';
        char path[4300];
        snprintf(path, sizeof(path), "%s/raw.jsonl", test_tmpdir());
        spit(path, doc, 29);
        dynrag_build_options o;
        dynrag_build_options_init(&o);
        o.no_dense = true;
        const char *in[] = {path};
        dynrag_error err;
        ASSERT_EQ(dynrag_index_add(dir, in, 1, &o, NULL, &err), DYNRAG_ERR_PARSE);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "raw.jsonl:1: raw NUL byte at column 23");
    }
    /* not NULs: an unused field, and an escaped backslash + "u0000" */
    dynrag_error err;
    dynrag_build_stats st;
    ASSERT_OK(add_text(dir, "ok.jsonl",
                       "{\"_id\":\"m\",\"meta\":\"\\u0000\",\"text\":\"keep \\\\u0000 this\"}\n",
                       false, &st, &err),
              &err);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    char *text = NULL;
    ASSERT_OK(dynrag_index_document(idx, "m", NULL, &text, &err), &err);
    ASSERT_STR_EQ(text, "keep \\u0000 this");
    free(text);
    dynrag_index_close(idx);
}

/*
 * Integer ids are kept as their exact text: generated ids around and far
 * above 2^53 (which a double merges) stay distinct documents; non-integer
 * numbers are refused.
 */
TEST(index_jsonl_large_integer_ids)
{
    char dir[2048];
    snprintf(dir, sizeof(dir), "%s/ids", test_tmpdir());
    dr_buf b = {0};
    uint64_t s = 53;
    char ids[120][32];
    int n = 0;
    for (int i = 0; i < 40; i++) /* 2^53 - 20 ... 2^53 + 19: neighbours a double merges */
        snprintf(ids[n++], sizeof(ids[0]), "%llu", (1ULL << 53) - 20 + (unsigned long long)i);
    for (int i = 0; i < 40; i++) /* up to 20 digits */
        snprintf(ids[n++], sizeof(ids[0]), "%llu", (unsigned long long)(rnd(&s) | (1ULL << 62)));
    for (int i = 0; i < 40; i++) /* negative and beyond 64 bits */
        snprintf(ids[n++], sizeof(ids[0]), i % 2 ? "-%llu" : "%llu99", (unsigned long long)rnd(&s));
    for (int i = 0; i < n; i++)
        dr_buf_printf(&b, "{\"_id\": %s, \"text\": \"document %d\"}\n", ids[i], i);
    dynrag_build_stats st;
    dynrag_error err;
    ASSERT_OK(add_text(dir, "ids.jsonl", b.data, false, &st, &err), &err);
    dr_buf_free(&b);
    ASSERT_EQ(st.docs_added, (uint64_t)n);
    ASSERT_EQ(st.docs_replaced, 0);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    for (int i = 0; i < n; i++) {
        char *text = NULL, want[32];
        ASSERT_OK(dynrag_index_document(idx, ids[i], NULL, &text, &err), &err);
        snprintf(want, sizeof(want), "document %d", i);
        ASSERT_STR_EQ(text, want);
        free(text);
    }
    dynrag_index_close(idx);
    static const char *const bad[] = {"1.5", "1e2", "2.0", "-0.5"};
    for (size_t i = 0; i < DR_ARRAY_LEN(bad); i++) {
        char line[128];
        snprintf(line, sizeof(line), "{\"_id\": %s, \"text\": \"x\"}\n", bad[i]);
        ASSERT_EQ(add_text(dir, "bad.jsonl", line, false, &st, &err), DYNRAG_ERR_PARSE);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.jsonl:1:");
    }
}

/* ---- pipelines: integers and regular expressions ------------------------------------ */

/* Loads YAML text; returns the formatted diagnostics ("" when it loads). */
static char *pipeline_diags(const char *yaml)
{
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = NULL;
    dynrag_error err;
    int rc = dynrag_pipeline_load_string(yaml, strlen(yaml), "t.yaml", test_tmpdir(), &p, &d, &err);
    char *out = d ? dynrag_diags_format(d) : NULL;
    if (out == NULL)
        out = dr_strdup(rc == DYNRAG_OK ? "" : dynrag_errmsg(&err));
    dynrag_pipeline_free(p);
    dynrag_diags_free(d);
    return out;
}

TEST(pipeline_integer_fields_refuse_non_integers)
{
    static const char *const bad[] = {"5.0", "1e2", "1E1", "2.", "+3.0e0"};
    static const char *const good[] = {"5", "100", "+7"};
    for (size_t i = 0; i < DR_ARRAY_LEN(bad) + DR_ARRAY_LEN(good); i++) {
        bool ok = i >= DR_ARRAY_LEN(bad);
        const char *v = ok ? good[i - DR_ARRAY_LEN(bad)] : bad[i];
        char yaml[512];
        snprintf(yaml, sizeof(yaml),
                 "version: 1\nname: t\nstages:\n  context:\n"
                 "    options: [{name: a, kind: topk, params: {k: %s}}]\n",
                 v);
        char *d = pipeline_diags(yaml);
        if (ok) {
            ASSERT_STR_EQ(d, "");
        } else {
            ASSERT_CONTAINS(d, "t.yaml:5:");
            ASSERT_CONTAINS(d, "params.k: expected an integer");
        }
        free(d);
    }
}

/* A random POSIX ERE from a small grammar; with backrefs, \1-\3 may appear. */
static void gen_regex(uint64_t *s, dr_buf *b, int depth, bool backrefs)
{
    int n = 1 + (int)(rnd(s) % 3);
    for (int i = 0; i < n; i++) {
        uint64_t r = rnd(s) % 10;
        if (r < 3 || depth >= 3) {
            static const char *const atoms[] = {"a", "b", ".", "[ab]", "[^b]", "\\.", "[\\1]"};
            dr_buf_puts(b, atoms[rnd(s) % DR_ARRAY_LEN(atoms)]);
        } else if (r < 6) {
            dr_buf_putc(b, '(');
            gen_regex(s, b, depth + 1, backrefs);
            if (rnd(s) % 2) {
                dr_buf_putc(b, '|');
                gen_regex(s, b, depth + 1, backrefs);
            }
            dr_buf_putc(b, ')');
        } else if (backrefs && r == 6) {
            dr_buf_printf(b, "\\%d", 1 + (int)(rnd(s) % 3));
            continue;
        } else {
            dr_buf_putc(b, 'a');
        }
        static const char *const q[] = {"", "*", "+", "?", "{1,3}", "*"};
        dr_buf_puts(b, q[rnd(s) % DR_ARRAY_LEN(q)]);
    }
}

/* True when the pattern has a back-reference outside brackets (the
 * generator only puts a backslash-digit inside "[\\1]"). */
static bool has_backref(const char *re)
{
    for (const char *p = re; *p; p++) {
        if (*p == '[') {
            p = strchr(p, ']');
            if (p == NULL)
                return false;
        } else if (*p == '\\' && p[1] >= '1' && p[1] <= '9') {
            return true;
        } else if (*p == '\\' && p[1]) {
            p++;
        }
    }
    return false;
}

/*
 * Property over generated patterns: a rules-router regex with a
 * back-reference is refused at load with file:line:col; every pattern that
 * loads matches adversarial 2,000-character queries in bounded time.
 */
TEST(pipeline_regex_backrefs_refused_property)
{
    uint64_t s = 7;
    int refused = 0, loaded = 0;
    char *text = malloc(2002);
    ASSERT(text != NULL);
    for (int i = 0; i < 300; i++) {
        dr_buf re = {0};
        gen_regex(&s, &re, 0, i % 2 == 0);
        if (i == 0) { /* the example */
            dr_buf_reset(&re);
            dr_buf_puts(&re, "(a*)*\\1\\1\\1b");
        }
        dr_buf yaml = {0};
        dr_buf_puts(&yaml, "version: 1\nname: t\nstages:\n  index:\n    options:\n"
                           "      - {name: lexical, kind: bm25}\n    router:\n      type: rules\n"
                           "      params:\n        rules:\n          - when: {regex: '");
        dr_buf_puts(&yaml, re.data);
        dr_buf_puts(&yaml, "'}\n            option: lexical\n        default: lexical\n");
        char *d = pipeline_diags(yaml.data);
        if (has_backref(re.data)) {
            refused++;
            if (strstr(d, "t.yaml:11:") == NULL || strstr(d, "back-reference") == NULL)
                test_fail_(__FILE__, __LINE__,
                           "pattern %s: expected a back-reference error at "
                           "t.yaml:11:COL, got: %s",
                           re.data, d);
        } else if (d[0] == '\0') {
            loaded++;
            regex_t r;
            ASSERT_EQ(regcomp(&r, re.data, REG_EXTENDED | REG_ICASE | REG_NOSUB), 0);
            for (int k = 0; k < 3; k++) {
                memset(text, "ab."[k], 2000);
                text[2000] = '!';
                text[2001] = '\0';
                struct timespec t0, t1;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                (void)regexec(&r, text, 0, NULL, 0);
                clock_gettime(CLOCK_MONOTONIC, &t1);
                double ms =
                    (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
                if (ms > 500)
                    test_fail_(__FILE__, __LINE__, "pattern %s took %.0f ms", re.data, ms);
            }
            regfree(&r);
        }
        free(d);
        dr_buf_free(&re);
        dr_buf_free(&yaml);
        if (test_failed_)
            break;
    }
    free(text);
    printf("regex patterns: %d with back-references refused, %d loaded and matched\n", refused,
           loaded);
    ASSERT_GT(refused, 20);
    ASSERT_GT(loaded, 50);
}

/* ---- errors: lock waits, unreadable inputs, directories ------------------------------- */

/*
 * A writer blocked on the index lock says that it waits; with
 * --lock-timeout it gives up with a clear error and exit 1; once the lock
 * is released a waiting writer goes on.
 */
TEST(index_lock_wait_and_timeout)
{
    char dir[2048], lock[2100], cmd[8800];
    snprintf(dir, sizeof(dir), "%s/locked", test_tmpdir());
    build(dir, false);
    snprintf(lock, sizeof(lock), "%s/lock", dir);
    int fd = open(lock, O_RDWR | O_CLOEXEC);
    ASSERT(fd >= 0);
    ASSERT_EQ(flock(fd, LOCK_EX), 0);
    char *out = NULL;
    snprintf(cmd, sizeof(cmd), "'%s' index --index '%s' --no-dense --lock-timeout 0.3 '%s'",
             test_cli_path(), dir, fixture("tiny.jsonl"));
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "another writer holds the index lock; waiting up to 0.3 s");
    ASSERT_CONTAINS(out, "gave up: lock timeout");
    free(out);
    snprintf(cmd, sizeof(cmd), "'%s' index --index '%s' --delete d1 --lock-timeout 0.2",
             test_cli_path(), dir);
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "gave up: lock timeout");
    free(out);
    /* without a timeout: waits, says so, and finishes once the lock is free */
    snprintf(cmd, sizeof(cmd), "timeout 60 '%s' index --index '%s' --no-dense '%s' 2>&1",
             test_cli_path(), dir, fixture("tiny.jsonl"));
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    /* release the lock only once the CLI has said that it waits */
    char buf[4096];
    size_t n = 0;
    bool waiting = false;
    while (!waiting && n + 1 < sizeof(buf) && fgets(buf + n, (int)(sizeof(buf) - n), p) != NULL) {
        waiting = strstr(buf + n, "another writer holds the index lock; waiting for it to "
                                  "finish") != NULL;
        n += strlen(buf + n);
    }
    close(fd); /* release: the CLI goes on */
    n += fread(buf + n, 1, sizeof(buf) - 1 - n, p);
    buf[n] = '\0';
    int status = pclose(p);
    ASSERT(waiting);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ASSERT_CONTAINS(buf, "indexed 6 docs");
}

/*
 * --skip-bad skips and counts a folder or .jsonl the user cannot read
 * (run as user nobody: root reads everything); without it the call fails.
 */
TEST(index_skip_bad_unreadable_inputs)
{
    char base[600], cmd[8800];
    snprintf(base, sizeof(base), "%s/unread", test_tmpdir());
    snprintf(cmd, sizeof(cmd),
             "mkdir -p '%s/corpus/locked' '%s/out' && echo '# Ok' > '%s/corpus/ok.md' && "
             "echo '# Hidden' > '%s/corpus/locked/x.md' && "
             "printf '{\"_id\":\"j\",\"text\":\"t\"}\\n' > '%s/bad.jsonl' && "
             "chmod 000 '%s/corpus/locked' '%s/bad.jsonl' && chmod 777 '%s/out' && "
             "chmod 755 '%s' '%s/corpus'",
             base, base, base, base, base, base, base, base, base, base);
    ASSERT_EQ(system(cmd), 0);
    char args[8800], *out = NULL;
    snprintf(args, sizeof(args),
             "index --index '%s/out/i1' --no-dense --skip-bad '%s/corpus' "
             "'%s/bad.jsonl'",
             base, base, base);
    int rc = run_as_nobody(args, &out);
    if (rc == 77) {
        free(out);
        SKIP("cannot run as user nobody here (not root, or no setpriv)");
    }
    if (rc != 0)
        test_fail_(__FILE__, __LINE__, "exit %d: %s", rc, out);
    ASSERT_CONTAINS(out, "indexed 1 docs");
    ASSERT_CONTAINS(out, "2 bad inputs skipped");
    ASSERT_CONTAINS(out, "cannot open folder");
    free(out);
    snprintf(args, sizeof(args), "index --index '%s/out/i2' --no-dense '%s/corpus'", base, base);
    ASSERT_EQ(run_as_nobody(args, &out), 1);
    ASSERT_CONTAINS(out, "locked: cannot open folder: Permission denied");
    free(out);
    snprintf(cmd, sizeof(cmd), "chmod 755 '%s/corpus/locked' '%s/bad.jsonl'", base, base);
    ASSERT_EQ(system(cmd), 0);
}

TEST(index_directory_where_file_expected)
{
    char *data = NULL;
    size_t len = 0;
    dynrag_error err;
    ASSERT_EQ(dr_read_file(test_tmpdir(), 1024, &data, &len, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "is a directory, expected a file");
    char cmd[4400], *out = NULL;
    snprintf(cmd, sizeof(cmd), "'%s' validate '%s'", test_cli_path(), test_tmpdir());
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "is a directory");
    ASSERT_NOT_CONTAINS(out, "read error");
    free(out);
    out = NULL;
    /* the batch query file of retrieve and the route log of log summary */
    char idx[2048];
    snprintf(idx, sizeof(idx), "%s/idx", test_tmpdir());
    build(idx, false);
    snprintf(cmd, sizeof(cmd), "'%s' retrieve --index '%s' --queries '%s' --trec '%s/run.trec'",
             test_cli_path(), idx, test_tmpdir(), test_tmpdir());
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "is a directory, expected a JSONL file");
    free(out);
    out = NULL;
    snprintf(cmd, sizeof(cmd), "'%s' log summary '%s'", test_cli_path(), test_tmpdir());
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "is a directory, expected a route-log file");
    free(out);
}

/* A writer checks the meta totals it continues from: damaged values fail
 * cleanly (DYNRAG_ERR_FORMAT) and leave the index as it was. */
TEST(index_writer_refuses_damaged_totals)
{
    static const char *const cases[][2] = {
        {"next_chunk_id", "-5"}, {"next_chunk_id", "0"},       {"docs", "-1"},
        {"chunks", "-2"},        {"chunk_tokens_total", "-3"}, {"next_chunk_id", "x"}};
    for (size_t i = 0; i < DR_ARRAY_LEN(cases); i++) {
        char dir[2048], dbp[2100];
        snprintf(dir, sizeof(dir), "%s/tot%zu", test_tmpdir(), i);
        build(dir, false);
        snprintf(dbp, sizeof(dbp), "%s/index.db", dir);
        sqlite3 *db = NULL;
        ASSERT_EQ(sqlite3_open(dbp, &db), SQLITE_OK);
        char sql[256];
        snprintf(sql, sizeof(sql), "UPDATE meta SET value = '%s' WHERE key = '%s'", cases[i][1],
                 cases[i][0]);
        ASSERT_EQ(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        dynrag_build_options o;
        dynrag_build_options_init(&o);
        o.no_dense = true;
        const char *in[] = {fixture("tiny.jsonl")};
        dynrag_error err;
        ASSERT_EQ(dynrag_index_add(dir, in, 1, &o, NULL, &err), DYNRAG_ERR_FORMAT);
        ASSERT_CONTAINS(dynrag_errmsg(&err), cases[i][0]);
    }
}

/* ---- a folder replaced under an open snapshot --------------------------- */

typedef struct swap_ctx {
    dynrag_index *snap;
    atomic_int go, stop;
    atomic_int mixed, errs, ok;
} swap_ctx;

static void *swap_searcher(void *arg)
{
    swap_ctx *c = arg;
    while (!atomic_load(&c->go))
        ;
    dynrag_search_options so;
    dynrag_search_options_init(&so);
    so.k = 5;
    while (!atomic_load(&c->stop)) {
        dynrag_hits h;
        dynrag_error err;
        if (dynrag_index_search(c->snap, "alpha beta marker", &so, &h, &err) != DYNRAG_OK) {
            atomic_fetch_add(&c->errs, 1);
            continue;
        }
        atomic_fetch_add(&c->ok, 1);
        for (size_t i = 0; i < h.n; i++)
            if (h.hits[i].text == NULL || strstr(h.hits[i].text, "oldcorpus") == NULL)
                atomic_fetch_add(&c->mixed, 1);
        dynrag_hits_free(&h);
    }
    return NULL;
}

/* Runs 8 searchers on c->snap while `writes` documents are added to dir
 * (0: for 300 ms). */
static void swap_round(swap_ctx *c, const char *dir, int writes)
{
    atomic_store(&c->go, 0);
    atomic_store(&c->stop, 0);
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, swap_searcher, c), 0);
    atomic_store(&c->go, 1);
    dynrag_build_options o;
    dynrag_build_options_init(&o);
    o.no_dense = true;
    for (int w = 0; w < writes; w++) {
        char name[64], doc[160], path[2048];
        snprintf(name, sizeof(name), "swap_w%d.jsonl", w);
        snprintf(doc, sizeof(doc),
                 "{\"_id\":\"w%d\",\"text\":\"newcorpus alpha beta marker written %d\"}\n", w, w);
        dr_strlcpy(path, test_write_file(name, doc), sizeof(path));
        const char *in[] = {path};
        dynrag_error err;
        ASSERT_OK(dynrag_index_add(dir, in, 1, &o, NULL, &err), &err);
    }
    if (writes == 0) {
        struct timespec ts = {0, 300 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&c->stop, 1);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
}

/*
 * A snapshot opens more SQLite connections as searches overlap, and SQLite
 * looks for a database's -wal and -journal files by name at every read
 * transaction. When the folder is replaced under a running reader (another
 * index moved in at its path, then written to; the old folder removed),
 * nothing a search on the old snapshot returns may come from the other
 * database: not through a new connection, not through another database's
 * WAL. (By name, this read the other index's rows, even at a different
 * generation; and mapping its -shm is how a reader got SIGBUS.)
 */
TEST(index_replaced_folder_never_mixes_databases)
{
    char x[2048], y[2048], old[2048];
    snprintf(x, sizeof(x), "%s/X", test_tmpdir());
    snprintf(y, sizeof(y), "%s/Y", test_tmpdir());
    snprintf(old, sizeof(old), "%s/X.old", test_tmpdir());
    dr_buf a = {0}, b = {0};
    for (int i = 0; i < 40; i++) {
        ASSERT_EQ(dr_buf_printf(&a, "{\"_id\":\"d%d\",\"title\":\"Topic %d\",\"text\":\"oldcorpus "
                                    "alpha beta marker %d\"}\n", i, i, i), 0);
        ASSERT_EQ(dr_buf_printf(&b, "{\"_id\":\"d%d\",\"title\":\"Topic %d\",\"text\":\"newcorpus "
                                    "alpha beta marker %d\"}\n", i, i, i), 0);
    }
    char pa[2048], pb[2048]; /* test_write_file's result is reused by its next call */
    dr_strlcpy(pa, test_write_file("swap_a.jsonl", a.data), sizeof(pa));
    dr_strlcpy(pb, test_write_file("swap_b.jsonl", b.data), sizeof(pb));
    dr_buf_free(&a);
    dr_buf_free(&b);
    const char *ina[] = {pa}, *inb[] = {pb};
    dynrag_build_options o;
    dynrag_build_options_init(&o);
    o.no_dense = true;
    dynrag_error err;
    ASSERT_OK(dynrag_index_add(x, ina, 1, &o, NULL, &err), &err);
    ASSERT_OK(dynrag_index_add(y, inb, 1, &o, NULL, &err), &err);
    dynrag_index *live = NULL;
    ASSERT_OK(dynrag_index_open(x, NULL, &live, &err), &err);
    /* The snapshot, held as a search in flight would hold it. */
    size_t n = 0;
    dynrag_index *snap = NULL;
    (void)dr_index_title_keys(live, dr_title_key, &n, &snap);
    ASSERT(snap != NULL);
    ASSERT_EQ(rename(x, old), 0);
    ASSERT_EQ(rename(y, x), 0);
    swap_ctx c;
    memset(&c, 0, sizeof(c));
    c.snap = snap;
    /* Moved away: it still serves its own rows while the new index at
     * its old path is written to. */
    swap_round(&c, x, 4);
    ASSERT_EQ(atomic_load(&c.mixed), 0);
    ASSERT_EQ(atomic_load(&c.errs), 0);
    ASSERT(atomic_load(&c.ok) > 0);
    /* Removed: its open connections may still serve it, new ones fail;
     * either way nothing of the other index. */
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", old);
    ASSERT_EQ(system(cmd), 0);
    swap_round(&c, x, 2);
    ASSERT_EQ(atomic_load(&c.mixed), 0);
    dr_index_unpin(snap);
    /* The live handle follows the folder to the new index. */
    dynrag_search_options so;
    dynrag_search_options_init(&so);
    so.k = 3;
    dynrag_hits h;
    ASSERT_OK(dynrag_index_search(live, "alpha beta marker", &so, &h, &err), &err);
    ASSERT(h.n > 0);
    for (size_t i = 0; i < h.n; i++)
        ASSERT_CONTAINS(h.hits[i].text, "newcorpus");
    dynrag_hits_free(&h);
    dynrag_index_close(live);
}

typedef struct warn_count {
    int reopen_warnings;
    bool told_more;
} warn_count;

static void count_reopen_warnings(void *user, dynrag_log_level level, const char *module,
                                  const char *msg)
{
    (void)module;
    warn_count *w = user;
    if (level == DYNRAG_LOG_WARN && strstr(msg, "cannot be reopened")) {
        w->reopen_warnings++;
        if (strstr(msg, "more failed reopens since the last warning"))
            w->told_more = true;
    }
}

/* Swaps a file that is no database in as DIR/index.db. */
static void break_index_db(const char *dir, int i)
{
    char tmp[2100], db[2100];
    snprintf(tmp, sizeof(tmp), "%s/garbage.tmp", dir);
    snprintf(db, sizeof(db), "%s/index.db", dir);
    FILE *f = fopen(tmp, "w");
    ASSERT(f != NULL);
    fprintf(f, "not a database, version %d\n", i);
    fclose(f);
    ASSERT_EQ(rename(tmp, db), 0);
}

/* A folder that changes on every request but cannot be reopened (a rebuild
 * under load, a broken file) keeps the last good snapshot serving and is
 * reported at most once a second, with the count of failures not told. */
TEST(index_failed_reopens_are_not_logged_per_request)
{
    char dir[2048];
    snprintf(dir, sizeof(dir), "%s/idx", test_tmpdir());
    build(dir, false);
    dynrag_error err;
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    warn_count w = {0, false};
    dynrag_log_set(count_reopen_warnings, &w, DYNRAG_LOG_WARN);
    dynrag_search_options so;
    dynrag_search_options_init(&so);
    so.k = 2;
    int64_t t0 = dr_now_us();
    int rounds = 0;
    for (; rounds < 100 && dr_now_us() - t0 < 800000; rounds++) {
        break_index_db(dir, rounds);
        dynrag_hits h;
        ASSERT_OK(dynrag_index_search(idx, "honey", &so, &h, &err), &err);
        dynrag_hits_free(&h);
    }
    int in_burst = w.reopen_warnings;
    struct timespec ts = {1, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    break_index_db(dir, 1000);
    dynrag_hits h;
    ASSERT_OK(dynrag_index_search(idx, "honey", &so, &h, &err), &err);
    dynrag_hits_free(&h);
    dynrag_log_set(NULL, NULL, DYNRAG_LOG_WARN);
    ASSERT(rounds >= 10);
    ASSERT(in_burst >= 1 && in_burst <= 2);
    ASSERT_EQ(w.reopen_warnings, in_burst + 1);
    ASSERT(w.told_more);
    dynrag_index_close(idx);
}

/* Copies the file src over dst in place (dst keeps its inode), as a copy
 * still being written and then finished does. */
static void copy_in_place(const char *src, const char *dst)
{
    char *data = NULL;
    size_t len = 0;
    dynrag_error err;
    ASSERT_OK(dr_read_file(src, (size_t)1 << 30, &data, &len, &err), &err);
    FILE *f = fopen(dst, "r+b");
    ASSERT(f != NULL);
    ASSERT_EQ(fwrite(data, 1, len, f), len);
    fclose(f);
    dr_free(data);
}

/*
 * The folder moved away and a copy put at its path, the copy first seen
 * half written (it cannot be opened: the snapshot stays), then finished at
 * the same generation: when the moved folder is then written to, the open
 * handle must switch to the copy at its path, not keep failing on the
 * moved folder it no longer names (it took the finished copy, same inode
 * as the half one, for the snapshot's own file).
 */
TEST(index_follows_a_copy_finished_in_place)
{
    char x[2048], old[2048], p[2200], q[2200];
    snprintf(x, sizeof(x), "%s/X", test_tmpdir());
    snprintf(old, sizeof(old), "%s/X.old", test_tmpdir());
    build(x, false);
    dynrag_error err;
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(x, NULL, &idx, &err), &err);
    dynrag_search_options so;
    dynrag_search_options_init(&so);
    so.k = 2;
    dynrag_hits h;
    ASSERT_OK(dynrag_index_search(idx, "volcanic ash", &so, &h, &err), &err);
    ASSERT(h.n > 0);
    dynrag_hits_free(&h);
    ASSERT_EQ(rename(x, old), 0);
    ASSERT_EQ(mkdir(x, 0755), 0);
    snprintf(p, sizeof(p), "%s/index.db", x);
    FILE *f = fopen(p, "wb"); /* half copied: nothing yet */
    ASSERT(f != NULL);
    fclose(f);
    /* seen half copied: the handle keeps its snapshot */
    ASSERT_OK(dynrag_index_search(idx, "volcanic ash", &so, &h, &err), &err);
    dynrag_hits_free(&h);
    /* the copy finished, in place */
    snprintf(q, sizeof(q), "%s/index.db", old);
    copy_in_place(q, p);
    snprintf(q, sizeof(q), "%s/bm25.idx", old);
    snprintf(p, sizeof(p), "%s/bm25.idx", x);
    f = fopen(p, "wb");
    ASSERT(f != NULL);
    fclose(f);
    copy_in_place(q, p);
    ASSERT_OK(dynrag_index_search(idx, "volcanic ash", &so, &h, &err), &err);
    dynrag_hits_free(&h);
    /* the moved folder is written to: its generation moves on */
    const char *in[] = {test_write_file("more.jsonl",
                                        "{\"_id\":\"m1\",\"text\":\"volcanic ash clouds\"}\n")};
    dynrag_build_options o;
    dynrag_build_options_init(&o);
    o.no_dense = true;
    ASSERT_OK(dynrag_index_add(old, in, 1, &o, NULL, &err), &err);
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(dynrag_index_search(idx, "volcanic ash", &so, &h, &err), &err);
        ASSERT(h.n > 0);
        for (size_t j = 0; j < h.n; j++)
            ASSERT(strcmp(h.hits[j].doc_id, "m1") != 0); /* the copy has no m1 */
        dynrag_hits_free(&h);
    }
    dynrag_index_close(idx);
}
