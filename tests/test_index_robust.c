/* test_index_robust.c - damaged, stale and read-only index folders, hostile
 * folder layouts and inputs (issue 12, "Index and CLI"). */
#include "test.h"

#include "core/util.h"
#include "dynrag/index.h"

#include <errno.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <sys/stat.h>
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
            dynrag_search_options o = {0};
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
                if (x->doc_id == NULL || x->title == NULL || x->text == NULL ||
                    !isfinite(x->score))
                    dr_buf_printf(&b, "BAD HIT ");
                else
                    dr_buf_printf(&b, "%s:%lld:%.5f ", x->doc_id, (long long)x->chunk_id,
                                  x->score);
            }
            dr_buf_printf(&b, "| ");
            dynrag_hits_free(&h);
        }
    }
    return dr_buf_take(&b);
}

/* Opens dir and returns its signature, or NULL (with *rc) when open fails. */
static char *open_sig(const char *dir, bool dense, int *rc)
{
    dynrag_index *idx = NULL;
    dynrag_error err;
    *rc = dynrag_index_open(dir, NULL, &idx, &err);
    if (*rc != DYNRAG_OK)
        return NULL;
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
    default: /* truncation */
        return rnd(s) % len;
    }
}

/* Builds tiny.jsonl into dir; dense or not. */
static void build(const char *dir, bool dense)
{
    dynrag_build_options o = {0};
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
            if (got == NULL) {
                refused++;
                ASSERT(rc < 0);
                /* a damaged sidecar is rebuilt, never fatal */
                if (f == 1)
                    test_fail_(__FILE__, __LINE__, "target %d seed %d: damaged bm25.idx "
                               "made open fail (%d)", target, i, rc);
                if (f == 2)
                    ASSERT_EQ(rc, DYNRAG_ERR_STATE);
            } else {
                opened++;
                if (f != 0 && strcmp(got, want[d]) != 0)
                    test_fail_(__FILE__, __LINE__,
                               "target %d seed %d: damaged %s changed results:\n%s\nvs\n%s",
                               target, i, files[f], got, want[d]);
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
    dynrag_build_options o = {0};
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
    dr_strlcpy(b, test_write_file("b.jsonl", "{\"_id\":\"b1\",\"text\":\"black hole gravity "
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
    snprintf(cmd, sizeof(cmd), "cd '%s' && ls -A | sort | while read f; do stat -c '%%n %%s %%Y "
             "%%y' \"$f\"; done", dir);
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
    snprintf(cmd, sizeof(cmd), "setpriv --reuid=65534 --regid=65534 --clear-groups true");
    char *o = NULL;
    int rc = test_run(cmd, &o);
    free(o);
    if (rc != 0 || getuid() != 0)
        return 77;
    snprintf(cmd, sizeof(cmd),
             "setpriv --reuid=65534 --regid=65534 --clear-groups '%s' %s", test_cli_path(), args);
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
