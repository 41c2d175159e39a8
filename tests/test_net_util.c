/* test_net_util.c - start, script and stop the OpenAI-compatible test double. */
#include "test_net_util.h"

#include "test.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int test_double_start(test_double *d)
{
    memset(d, 0, sizeof(*d));
    d->out_fd = -1;
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread uses curl; ref-counted */
    char script[4096];
    snprintf(script, sizeof(script), "%s/tests/openai_double.py", test_source_dir());
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "test_double_start: pipe: %s\n", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    char *argv[] = {"python3", script, "--idle-timeout", "120", NULL};
    pid_t pid = 0;
    int rc = posix_spawnp(&pid, "python3", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        fprintf(stderr, "test_double_start: cannot run python3: %s\n", strerror(rc));
        close(fds[0]);
        return -1;
    }
    d->pid = pid;
    d->out_fd = fds[0];
    /* Read the first line (the port), waiting at most 10 s. */
    char line[32];
    size_t len = 0;
    while (len + 1 < sizeof(line)) {
        struct pollfd p = {.fd = d->out_fd, .events = POLLIN};
        int pr = poll(&p, 1, 10000);
        if (pr <= 0)
            break;
        ssize_t n = read(d->out_fd, line + len, 1);
        if (n <= 0)
            break;
        if (line[len] == '\n')
            break;
        len++;
    }
    line[len] = '\0';
    char *end = NULL;
    long port = strtol(line, &end, 10);
    if (len == 0 || *end != '\0' || port <= 0 || port > 65535) {
        fprintf(stderr, "test_double_start: no port from %s (got '%s')\n", script, line);
        test_double_stop(d);
        return -1;
    }
    d->port = (int)port;
    snprintf(d->root, sizeof(d->root), "http://127.0.0.1:%d", d->port);
    snprintf(d->base_url, sizeof(d->base_url), "%s/v1", d->root);
    return 0;
}

void test_double_stop(test_double *d)
{
    if (d == NULL)
        return;
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        int st;
        for (int i = 0; i < 200; i++) { /* up to 2 s, then SIGKILL */
            pid_t r = waitpid(d->pid, &st, WNOHANG);
            if (r == d->pid || r < 0)
                break;
            if (i == 199) {
                kill(d->pid, SIGKILL);
                waitpid(d->pid, &st, 0);
            }
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    if (d->out_fd >= 0)
        close(d->out_fd);
    d->pid = 0;
    d->out_fd = -1;
}

static size_t collect(char *ptr, size_t size, size_t nmemb, void *user)
{
    char **buf = user;
    size_t n = size * nmemb;
    size_t old = *buf ? strlen(*buf) : 0;
    char *nb = realloc(*buf, old + n + 1);
    if (nb == NULL)
        return 0;
    memcpy(nb + old, ptr, n);
    nb[old + n] = '\0';
    *buf = nb;
    return n;
}

/* One request to the double's control plane; body NULL means GET. */
static long control_request(const test_double *d, const char *path, const char *body,
                            char **out)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", d->root, path);
    CURL *h = curl_easy_init();
    if (h == NULL)
        return -1;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (body != NULL)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    long status = -1;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return status;
}

int test_double_script(const test_double *d, const char *json)
{
    char *out = NULL;
    long status = control_request(d, "/_control", json, &out);
    free(out);
    return status == 200 ? 0 : -1;
}

long test_double_count(const test_double *d, const char *path)
{
    char *out = NULL;
    long status = control_request(d, "/_stats", NULL, &out);
    long count = -1;
    cJSON *root = status == 200 && out ? cJSON_Parse(out) : NULL;
    cJSON *req = cJSON_GetObjectItemCaseSensitive(root, "requests");
    if (cJSON_IsObject(req)) {
        cJSON *c = cJSON_GetObjectItemCaseSensitive(req, path);
        count = cJSON_IsNumber(c) ? (long)c->valuedouble : 0;
    }
    cJSON_Delete(root);
    free(out);
    return count;
}
