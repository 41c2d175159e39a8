/*
 * test_net_util.h - start, script and stop the OpenAI-compatible TEST DOUBLE
 * (tests/openai_double.py) from C tests.
 *
 *     test_double d;
 *     if (test_double_start(&d) != 0)
 *         SKIP("python3 test double unavailable");
 *     test_double_script(&d, "{\"script\": [\"429\", \"ok\"]}");
 *     ... point a client at d.base_url ("http://127.0.0.1:<port>/v1") ...
 *     test_double_stop(&d);
 *
 * The double exits by itself after 120 s idle or when this process goes
 * away, so a failing test cannot leave it behind.
 */
#ifndef DYNRAG_TESTS_TEST_NET_UTIL_H
#define DYNRAG_TESTS_TEST_NET_UTIL_H

#include <sys/types.h>

typedef struct test_double {
    pid_t pid;          /* 0 when not running */
    int port;
    int out_fd;         /* read end of the double's stdout, -1 when closed */
    char root[64];      /* "http://127.0.0.1:<port>" */
    char base_url[96];  /* root + "/v1": the base_url to give clients */
} test_double;

/* Starts python3 tests/openai_double.py and waits (up to 10 s) for its port.
 * Returns 0, or -1 (with a message on stderr) when it cannot start. */
int test_double_start(test_double *d);

/* Kills the double and reaps it; accepts a stopped or zeroed double. */
void test_double_stop(test_double *d);

/* POSTs json to the double's /_control (e.g. {"script":["500","ok"]}).
 * Returns 0 on HTTP 200, -1 otherwise. */
int test_double_script(const test_double *d, const char *json);

/* Requests the double has received on path (e.g. "/v1/embeddings") since
 * start or the last {"reset": true}; -1 on failure. */
long test_double_count(const test_double *d, const char *path);

#endif
