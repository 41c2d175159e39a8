/* test_core.c - status codes, buffers, parsing, UTF-8, text, PRNG. */
#include "test.h"

#include "core/text.h"
#include "core/util.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>

TEST(core_status_strings)
{
    ASSERT_STR_EQ(dynrag_strerror(DYNRAG_OK), "success");
    ASSERT_STR_EQ(dynrag_strerror(DYNRAG_ERR_NOMEM), "out of memory");
    ASSERT_STR_EQ(dynrag_strerror(12345), "unknown status");
    ASSERT_STR_EQ(dynrag_status_name(DYNRAG_ERR_PARSE), "ERR_PARSE");
    /* Every status has a distinct negative value and a message. */
    int values[] = {
#define V_(name, value, msg) value,
        DYNRAG_STATUS_MAP(V_)
#undef V_
    };
    for (size_t i = 1; i < sizeof(values) / sizeof(values[0]); i++) {
        ASSERT_LT(values[i], 0);
        ASSERT_EQ(values[i], values[i - 1] - 1);
        ASSERT(strcmp(dynrag_strerror(values[i]), "unknown status") != 0);
    }
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_EQ(dr_err_set(&err, DYNRAG_ERR_IO, "file %s", "x.txt"), DYNRAG_ERR_IO);
    ASSERT_STR_EQ(dynrag_errmsg(&err), "file x.txt");
    dr_err_prefix(&err, "loading %d", 3);
    ASSERT_STR_EQ(dynrag_errmsg(&err), "loading 3: file x.txt");
    ASSERT_EQ(err.status, DYNRAG_ERR_IO);
    dynrag_error_clear(&err);
    ASSERT_STR_EQ(dynrag_errmsg(&err), "success");
    ASSERT_EQ(dr_err_set(NULL, DYNRAG_ERR_LIMIT, "ignored"), DYNRAG_ERR_LIMIT);
}

TEST(core_buf_cap_and_json)
{
    dr_buf b = {0};
    b.cap_limit = 8;
    ASSERT_EQ(dr_buf_puts(&b, "12345678"), DYNRAG_OK);
    ASSERT_EQ(dr_buf_putc(&b, 'x'), DYNRAG_ERR_LIMIT);
    ASSERT_EQ(b.len, 8);
    ASSERT_STR_EQ(b.data, "12345678");
    dr_buf_free(&b);
    dr_buf j = {0};
    ASSERT_EQ(dr_buf_json_str(&j, "a\"b\\c\n\x01"), DYNRAG_OK);
    ASSERT_STR_EQ(j.data, "\"a\\\"b\\\\c\\n\\u0001\"");
    char *t = dr_buf_take(&j);
    ASSERT(j.data == NULL);
    free(t);
    dr_buf e = {0};
    char *empty = dr_buf_take(&e);
    ASSERT_STR_EQ(empty, "");
    free(empty);
}

TEST(core_parse_numbers)
{
    long long v = 0;
    ASSERT_EQ(dr_parse_ll("42", 0, 100, &v), DYNRAG_OK);
    ASSERT_EQ(v, 42);
    ASSERT_EQ(dr_parse_ll("42x", 0, 100, &v), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dr_parse_ll("", 0, 100, &v), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dr_parse_ll("101", 0, 100, &v), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dr_parse_ll("99999999999999999999999", 0, 100, &v), DYNRAG_ERR_INVALID);
    double d = 0;
    ASSERT_EQ(dr_parse_double("0.25", 0, 1, &d), DYNRAG_OK);
    ASSERT_NEAR(d, 0.25, 1e-12);
    ASSERT_EQ(dr_parse_double("nan", 0, 1, &d), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dr_parse_double("1e999", 0, 1e308, &d), DYNRAG_ERR_INVALID);
}

TEST(core_utf8)
{
    size_t bad = 0;
    ASSERT(dr_utf8_valid("h\xc3\xa9llo", 6, NULL));
    ASSERT(!dr_utf8_valid("ab\xff", 3, &bad));
    ASSERT_EQ(bad, 2);
    ASSERT(!dr_utf8_valid("\xc0\xaf", 2, &bad)); /* overlong '/' */
    ASSERT(!dr_utf8_valid("\xed\xa0\x80", 3, &bad)); /* surrogate */
    ASSERT(!dr_utf8_valid("\xe2\x82", 2, &bad)); /* truncated */
    ASSERT(dr_utf8_valid("\xef\xbf\xbd", 3, NULL)); /* U+FFFD itself */
    char enc[4];
    uint32_t cp;
    ASSERT_EQ(dr_utf8_encode(0x1F600, enc), 4);
    ASSERT_EQ(dr_utf8_decode(enc, 4, &cp), 4);
    ASSERT_EQ(cp, 0x1F600);
}

typedef struct {
    char words[16][70];
    int n;
} word_list;

static int collect(void *user, const char *w, size_t len, size_t s, size_t e)
{
    (void)s;
    (void)e;
    word_list *l = user;
    if (l->n < 16) {
        memcpy(l->words[l->n], w, len);
        l->words[l->n][len] = '\0';
        l->n++;
    }
    return 0;
}

TEST(core_text_words)
{
    word_list l = {0};
    const char *s = "Don't STOP: \xc3\x89t\xc3\xa9 1,000 co-op!";
    dr_text_words(s, strlen(s), collect, &l);
    ASSERT_EQ(l.n, 7);
    ASSERT_STR_EQ(l.words[0], "dont");
    ASSERT_STR_EQ(l.words[1], "stop");
    ASSERT_STR_EQ(l.words[2], "\xc3\xa9t\xc3\xa9");
    ASSERT_STR_EQ(l.words[3], "1");
    ASSERT_STR_EQ(l.words[4], "000");
    ASSERT_STR_EQ(l.words[5], "co");
    ASSERT_STR_EQ(l.words[6], "op");
    ASSERT(dr_text_is_stopword("the"));
    ASSERT(dr_text_is_stopword("yourselves"));
    ASSERT(!dr_text_is_stopword("sqlite"));
}

static int count_sent(void *user, size_t s, size_t e)
{
    (void)s;
    (void)e;
    (*(int *)user)++;
    return 0;
}

TEST(core_text_sentences)
{
    int n = 0;
    const char *s = "Dr. Smith wrote it, e.g. in 1990. It works! Does it? Yes.\n\nNew para";
    dr_text_sentences(s, strlen(s), count_sent, &n);
    ASSERT_EQ(n, 5);
}

TEST(core_rng_deterministic)
{
    dr_rng a, b;
    dr_rng_seed(&a, 7);
    dr_rng_seed(&b, 7);
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(dr_rng_next(&a), dr_rng_next(&b));
    for (int i = 0; i < 1000; i++) {
        double u = dr_rng_uniform(&a);
        ASSERT(u >= 0.0 && u < 1.0);
        ASSERT_LT(dr_rng_below(&a, 10), 10);
    }
    ASSERT_EQ(dr_edit_distance("clasifier", "classifier", 10), 1);
}

TEST(core_atomic_write)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/f.txt", test_tmpdir());
    dynrag_error err;
    ASSERT_OK(dr_write_file_atomic(path, "one", 3, &err), &err);
    ASSERT_OK(dr_write_file_atomic(path, "two!", 4, &err), &err);
    char *data = NULL;
    size_t len = 0;
    ASSERT_OK(dr_read_file(path, 100, &data, &len, &err), &err);
    ASSERT_STR_EQ(data, "two!");
    free(data);
    ASSERT_EQ(dr_read_file(path, 2, &data, &len, &err), DYNRAG_ERR_LIMIT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "larger than the limit");
    ASSERT_EQ(dr_read_file("/nonexistent/x", 2, &data, &len, &err), DYNRAG_ERR_NOTFOUND);
}

/* Concurrent writers of one file through dr_write_file_atomic. */
enum { AW_THREADS = 4, AW_WRITES = 20 };

typedef struct aw_ctx {
    const char *path;
    int thread;
    atomic_int *bad;  /* whole-version violations and write errors */
    atomic_int *done; /* writers finished */
} aw_ctx;

/* Version k of the file: (4096 + 101 k) copies of the byte 'A' + k % 26. */
static size_t aw_len(int k)
{
    return 4096 + 101 * (size_t)k;
}

/* 1 when data is a whole version: one repeated byte of the right count. */
static int aw_whole(const char *data, size_t len)
{
    if (len < 4096 || (len - 4096) % 101 != 0)
        return 0;
    int k = (int)((len - 4096) / 101);
    for (size_t i = 0; i < len; i++)
        if (data[i] != 'A' + k % 26)
            return 0;
    return 1;
}

static void *aw_writer(void *arg)
{
    aw_ctx *c = arg;
    for (int i = 0; i < AW_WRITES; i++) {
        int k = c->thread * AW_WRITES + i;
        size_t len = aw_len(k);
        char *buf = malloc(len);
        if (buf == NULL) {
            atomic_fetch_add(c->bad, 1);
            break;
        }
        memset(buf, 'A' + k % 26, len);
        dynrag_error err;
        if (dr_write_file_atomic(c->path, buf, len, &err) != DYNRAG_OK)
            atomic_fetch_add(c->bad, 1);
        free(buf);
    }
    atomic_fetch_add(c->done, 1);
    return NULL;
}

TEST(core_atomic_write_concurrent_writers)
{
    /* Threads replace one file at once while the test reads it: every read
     * sees a whole version, every write succeeds, and no temporary file is
     * left behind (a temporary name shared by the threads of a process
     * would mix their bytes or fail their renames). */
    char dir[4200], path[4300];
    snprintf(dir, sizeof(dir), "%s/aw", test_tmpdir());
    dynrag_error err;
    ASSERT_OK(dr_mkdirs(dir, &err), &err);
    snprintf(path, sizeof(path), "%s/f.bin", dir);
    atomic_int bad = 0, done = 0;
    aw_ctx ctx[AW_THREADS];
    pthread_t th[AW_THREADS];
    for (int t = 0; t < AW_THREADS; t++) {
        ctx[t] = (aw_ctx){path, t, &bad, &done};
        ASSERT_EQ(pthread_create(&th[t], NULL, aw_writer, &ctx[t]), 0);
    }
    int reads = 0, torn = 0;
    while (atomic_load(&done) < AW_THREADS) {
        char *data = NULL;
        size_t len = 0;
        int rc = dr_read_file(path, 1 << 20, &data, &len, &err);
        if (rc == DYNRAG_OK) {
            reads++;
            torn += !aw_whole(data, len);
        } else if (rc != DYNRAG_ERR_NOTFOUND) {
            torn++;
        }
        free(data);
    }
    for (int t = 0; t < AW_THREADS; t++)
        pthread_join(th[t], NULL);
    ASSERT_EQ(atomic_load(&bad), 0);
    ASSERT_EQ(torn, 0);
    char *data = NULL;
    size_t len = 0;
    ASSERT_OK(dr_read_file(path, 1 << 20, &data, &len, &err), &err);
    int whole = aw_whole(data, len);
    free(data);
    ASSERT(whole);
    DIR *d = opendir(dir);
    ASSERT(d != NULL);
    int entries = 0;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d))
        entries += e->d_name[0] != '.';
    closedir(d);
    ASSERT_EQ(entries, 1); /* f.bin only: no f.bin.tmp.* left */
    (void)reads;
}

TEST(cli_exit_codes)
{
    char cmd[4300];
    char *out = NULL;
    snprintf(cmd, sizeof(cmd), "%s help", test_cli_path());
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "Commands:");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s nosuchcmd", test_cli_path());
    ASSERT_EQ(test_run(cmd, &out), 2);
    ASSERT_CONTAINS(out, "unknown command 'nosuchcmd'");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s", test_cli_path());
    ASSERT_EQ(test_run(cmd, &out), 2);
    free(out);
    snprintf(cmd, sizeof(cmd), "%s version --help", test_cli_path());
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "usage: dynrag version");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s help nosuch", test_cli_path());
    ASSERT_EQ(test_run(cmd, &out), 2);
    free(out);
}

TEST(cli_doc_is_current)
{
    char cmd[8800];
    char *out = NULL;
    snprintf(cmd, sizeof(cmd), "%s/scripts/gen-cli-doc.sh '%s' '%s/cli.md' && diff -u '%s/docs/cli.md' '%s/cli.md'",
             test_source_dir(), test_cli_path(), test_tmpdir(), test_source_dir(), test_tmpdir());
    int rc = test_run(cmd, &out);
    if (rc != 0)
        fprintf(stderr, "docs/cli.md is stale: run scripts/gen-cli-doc.sh\n%s\n", out ? out : "");
    free(out);
    ASSERT_EQ(rc, 0);
}

/* dr_getline: getline() with a bound on the bytes of one line. */
TEST(core_getline_bounded)
{
    static const char data[] = "ab\n\ncd\0ef\n0123456789\nlast";
    FILE *f = fmemopen((void *)data, sizeof(data) - 1, "r");
    ASSERT(f != NULL);
    char *line = NULL;
    size_t cap = 0;
    ASSERT_EQ(dr_getline(&line, &cap, f, 10), 3);
    ASSERT_STR_EQ(line, "ab\n");
    ASSERT_EQ(dr_getline(&line, &cap, f, 10), 1);
    ASSERT_EQ(dr_getline(&line, &cap, f, 10), 6); /* the NUL byte is kept */
    ASSERT(memcmp(line, "cd\0ef\n", 6) == 0);
    ASSERT(cap <= 12);                          /* never more than max + 2 */
    ASSERT_EQ(dr_getline(&line, &cap, f, 10), DR_LINE_TOO_LONG); /* 11 bytes with '\n' */
    ASSERT(cap <= 12);
    ASSERT_EQ(dr_getline(&line, &cap, f, 10), 4); /* its last byte was the newline */
    ASSERT_EQ(dr_getline(&line, &cap, f, 10), DR_LINE_EOF);
    fclose(f);
    /* an endless line costs max bytes, not all of it */
    f = fopen("/dev/zero", "r");
    ASSERT(f != NULL);
    ASSERT_EQ(dr_getline(&line, &cap, f, 1 << 16), DR_LINE_TOO_LONG);
    ASSERT(cap <= (1 << 16) + 2);
    fclose(f);
    dr_free(line);
}
