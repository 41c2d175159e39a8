/*
 * tests/test.h - the one test runner's assertion macros.
 *
 * Define a test with TEST(name) { ... } in any tests/test_*.c file; CMake
 * finds every TEST(name) line and registers `dynrag_tests name` with ctest.
 * Assertions print both values and the location on failure and end the test.
 *
 * Helpers: test_tmpdir() gives a fresh empty folder per test (removed after
 * a passing run), test_data_dir() the path of ../shared/data (or
 * $DYNRAG_DATA_DIR), test_source_dir() the repository root.
 */
#ifndef DYNRAG_TESTS_TEST_H
#define DYNRAG_TESTS_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
void test_fail_(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Marks the current test as skipped with a reason and returns from it. */
void test_skip_(const char *reason);

const char *test_tmpdir(void);
const char *test_source_dir(void);
const char *test_binary_dir(void);
const char *test_data_dir(void);
/* Path of the built dynrag CLI. */
const char *test_cli_path(void);
/* Writes text to a file under the test's tmpdir and returns its path
 * (static storage reused across calls: copy it if you need two). */
const char *test_write_file(const char *name, const char *text);
/* Runs a shell command, captures stdout+stderr into *out (malloc'ed, caller
 * frees) and returns the exit code (-1 on failure to run). */
int test_run(const char *cmd, char **out);
/* Trains a `predict` outcome router (hashed n-gram dimension dim, no
 * clusters, ridge penalty lambda) on the outcome table at table_path into
 * model_path; returns 0, or fails the test and returns -1. */
int test_train_predict(const char *table_path, const char *model_path, int dim, double lambda);

/* splitmix64: the next value of a small deterministic generator. */
uint64_t test_rand(uint64_t *state);

extern int test_failed_;

#define TEST(name)                                                     \
    static void test_##name(void);                                     \
    __attribute__((constructor)) static void test_reg_##name(void)     \
    {                                                                  \
        test_register(#name, test_##name);                             \
    }                                                                  \
    static void test_##name(void)

#define SKIP(reason)          \
    do {                      \
        test_skip_(reason);   \
        return;               \
    } while (0)

#define ASSERT(cond)                                                   \
    do {                                                               \
        if (!(cond)) {                                                 \
            test_fail_(__FILE__, __LINE__, "ASSERT(%s) failed", #cond); \
            return;                                                    \
        }                                                              \
    } while (0)

/* Compares as long double, so integers up to 64 bits and floating values
 * both compare exactly (no silent truncation of 0.9 to 0). */
#define ASSERT_INT_OP_(a, op, b)                                                        \
    do {                                                                                \
        long double a_ = (long double)(a), b_ = (long double)(b);                       \
        if (!(a_ op b_)) {                                                              \
            test_fail_(__FILE__, __LINE__, "%s %s %s: %.17Lg vs %.17Lg", #a, #op, #b, a_, \
                       b_);                                                             \
            return;                                                                     \
        }                                                                               \
    } while (0)

#define ASSERT_EQ(a, b) ASSERT_INT_OP_(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_INT_OP_(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_INT_OP_(a, <, b)
#define ASSERT_LE(a, b) ASSERT_INT_OP_(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_INT_OP_(a, >, b)
#define ASSERT_GE(a, b) ASSERT_INT_OP_(a, >=, b)

/* Asserts a DynamicRAG status is DYNRAG_OK, printing the error detail. */
#define ASSERT_OK(expr, errp)                                                             \
    do {                                                                                  \
        int rc_ = (expr);                                                                 \
        if (rc_ != 0) {                                                                   \
            test_fail_(__FILE__, __LINE__, "%s returned %d (%s): %s", #expr, rc_,         \
                       dynrag_strerror(rc_), dynrag_errmsg(errp));                        \
            return;                                                                       \
        }                                                                                 \
    } while (0)

#define ASSERT_NEAR(a, b, tol)                                                          \
    do {                                                                                \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);                  \
        if (!(fabs(a_ - b_) <= t_)) {                                                   \
            test_fail_(__FILE__, __LINE__, "%s ~= %s: %.9g vs %.9g (diff %.3g > %.3g)", \
                       #a, #b, a_, b_, fabs(a_ - b_), t_);                              \
            return;                                                                     \
        }                                                                               \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                            \
    do {                                                                               \
        const char *a_ = (a), *b_ = (b);                                               \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                         \
            test_fail_(__FILE__, __LINE__, "%s == %s:\n  got:      \"%s\"\n  expected: \"%s\"", \
                       #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                \
            return;                                                                    \
        }                                                                              \
    } while (0)

#define ASSERT_CONTAINS(hay, needle)                                                   \
    do {                                                                               \
        const char *h_ = (hay), *n_ = (needle);                                        \
        if (h_ == NULL || strstr(h_, n_) == NULL) {                                    \
            test_fail_(__FILE__, __LINE__, "%s does not contain \"%s\":\n%s", #hay, n_,  \
                       h_ ? h_ : "(null)");                                            \
            return;                                                                    \
        }                                                                              \
    } while (0)

#define ASSERT_NOT_CONTAINS(hay, needle)                                               \
    do {                                                                               \
        const char *h_ = (hay), *n_ = (needle);                                        \
        if (h_ != NULL && strstr(h_, n_) != NULL) {                                    \
            test_fail_(__FILE__, __LINE__, "%s contains \"%s\":\n%s", #hay, n_, h_);   \
            return;                                                                    \
        }                                                                              \
    } while (0)

#endif
