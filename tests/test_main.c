/* test_main.c - the test runner: `dynrag_tests [--list] [NAME...]`. */
#include "test.h"

#include "dynrag/outcomes.h"

#include <dirent.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TESTS 4096

typedef struct {
    const char *name;
    test_fn fn;
} test_entry;

static test_entry tests[MAX_TESTS];
static int n_tests;
int test_failed_;
static int test_skipped;
static char tmpdir[4096];
static char pathbuf[8192];

void test_register(const char *name, test_fn fn)
{
    if (n_tests < MAX_TESTS)
        tests[n_tests++] = (test_entry){name, fn};
}

void test_fail_(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: FAIL: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    test_failed_ = 1;
}

void test_skip_(const char *reason)
{
    fprintf(stderr, "SKIP: %s\n", reason);
    test_skipped = 1;
}

const char *test_tmpdir(void)
{
    return tmpdir;
}

const char *test_source_dir(void)
{
    return DYNRAG_SOURCE_DIR;
}

const char *test_binary_dir(void)
{
    return DYNRAG_BINARY_DIR;
}

const char *test_cli_path(void)
{
    return DYNRAG_BINARY_DIR "/dynrag";
}

const char *test_data_dir(void)
{
    const char *env = getenv("DYNRAG_DATA_DIR");
    if (env && *env)
        return env;
    return DYNRAG_SOURCE_DIR "/../shared/data";
}

const char *test_write_file(const char *name, const char *text)
{
    snprintf(pathbuf, sizeof(pathbuf), "%s/%s", tmpdir, name);
    FILE *f = fopen(pathbuf, "wb");
    if (f == NULL) {
        fprintf(stderr, "cannot write %s\n", pathbuf);
        abort();
    }
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    return pathbuf;
}

int test_run(const char *cmd, char **out)
{
    char *full = NULL;
    if (asprintf(&full, "(%s) 2>&1", cmd) < 0)
        return -1;
    FILE *p = popen(full, "r");
    free(full);
    if (p == NULL)
        return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
    }
    if (buf)
        buf[len] = '\0';
    int status = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    if (status == -1)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                    continue;
                char sub[4096];
                snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
                rm_rf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int run_one(const test_entry *t)
{
    snprintf(tmpdir, sizeof(tmpdir), "%s/test-tmp/%s", DYNRAG_BINARY_DIR, t->name);
    rm_rf(tmpdir);
    char mk[4200];
    snprintf(mk, sizeof(mk), "mkdir -p '%s'", tmpdir);
    if (system(mk) != 0) {
        fprintf(stderr, "cannot create %s\n", tmpdir);
        return 1;
    }
    test_failed_ = 0;
    test_skipped = 0;
    t->fn();
    if (test_failed_) {
        printf("not ok - %s (files kept in %s)\n", t->name, tmpdir);
        return 1;
    }
    rm_rf(tmpdir);
    printf("%s - %s\n", test_skipped ? "skip" : "ok", t->name);
    return test_skipped ? 77 : 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < n_tests; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    int failed = 0, ran = 0, skipped = 0;
    for (int i = 0; i < n_tests; i++) {
        bool want = argc <= 1;
        for (int a = 1; a < argc && !want; a++)
            want = strcmp(argv[a], tests[i].name) == 0;
        if (!want)
            continue;
        ran++;
        int rc = run_one(&tests[i]);
        if (rc == 77)
            skipped++;
        else if (rc != 0)
            failed++;
    }
    if (ran == 0) {
        fprintf(stderr, "no test matched\n");
        return 2;
    }
    if (argc == 2 && skipped == 1 && failed == 0)
        return 77; /* ctest SKIP_RETURN_CODE */
    printf("%d passed, %d failed, %d skipped\n", ran - failed - skipped, failed, skipped);
    return failed ? 1 : 0;
}

int test_train_predict(const char *table_path, const char *model_path, int dim, double lambda)
{
    dynrag_outcome_router_options o;
    dynrag_outcome_router_options_init(&o);
    const char *data[1] = {table_path};
    o.data = data;
    o.n_data = 1;
    o.out_path = model_path;
    o.dim = dim;
    o.clusters = 0;
    o.lambda = lambda;
    dynrag_error err;
    if (dynrag_outcome_router_train(&o, NULL, &err) != DYNRAG_OK) {
        test_fail_(__FILE__, __LINE__, "train %s: %s", table_path, err.msg);
        return -1;
    }
    return 0;
}

uint64_t test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
