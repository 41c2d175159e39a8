/*
 * test_bandit_store.c - durable, consistent bandit learning: the reward
 * store counts a reward once per query id across handles (processes), the
 * real server's acknowledged rewards survive kill -9 while the CLI gives
 * rewards at the same time, and a state file that cannot be saved fails the
 * command.
 */
#include "test.h"

#include "core/util.h"
#include "dynrag/index.h"
#include "router/bandit_store.h"
#include "server_client.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define D DR_FEATURE_DIM

static void stats_identity(dr_bandit_stats *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < D; i++)
        s->A[i * D + i] = 1;
}

static void stats_add(dr_bandit_stats *s, double r, const double *x)
{
    s->n += 1;
    s->sum_reward += r;
    for (int i = 0; x != NULL && i < D; i++) {
        for (int j = 0; j < D; j++)
            s->A[i * D + j] += x[i] * x[j];
        s->b[i] += r * x[i];
    }
}

static double stats_diff(const dr_bandit_stats *a, const dr_bandit_stats *b)
{
    double d = fabs(a->n - b->n) + fabs(a->sum_reward - b->sum_reward);
    for (int i = 0; i < D * D; i++)
        d = fmax(d, fabs(a->A[i] - b->A[i]));
    for (int i = 0; i < D; i++)
        d = fmax(d, fabs(a->b[i] - b->b[i]));
    return d;
}

typedef struct read_ctx {
    const char *names[3];
    dr_bandit_stats got[3];
    int seen[3];
} read_ctx;

static void collect(void *ctx, const char *option, const dr_bandit_stats *st)
{
    read_ctx *c = ctx;
    for (int i = 0; i < 3; i++)
        if (strcmp(option, c->names[i]) == 0) {
            c->got[i] = *st;
            c->seen[i]++;
        }
}

/*
 * Invariant, over a random interleaving of rewards through two handles of
 * one store (as the server and the CLI hold): a query id is accepted once
 * and refused with DYNRAG_ERR_STATE ever after, whichever handle asks; each
 * reward returns the arm's statistics including every reward any handle
 * gave before; a third handle opened at the end reads exactly the sum of the
 * accepted rewards; another stage's rewards stay apart.
 */
TEST(bandit_store_once_per_id_across_handles)
{
    char state[4200];
    snprintf(state, sizeof state, "%s/sub/dir/state.json", test_tmpdir());
    dynrag_error err;
    dr_bandit_store *h[2] = {NULL, NULL}, *other = NULL;
    dr_bandit_store *none = (dr_bandit_store *)1;
    ASSERT_OK(dr_bandit_store_open(state, "index", false, &none, &err), &err);
    ASSERT(none == NULL); /* without create, no store yet */
    ASSERT_OK(dr_bandit_store_open(state, "index", true, &h[0], &err), &err);
    ASSERT_OK(dr_bandit_store_open(state, "index", false, &h[1], &err), &err);
    ASSERT(h[1] != NULL);
    ASSERT_OK(dr_bandit_store_open(state, "generator", false, &other, &err), &err);
    read_ctx c;
    memset(&c, 0, sizeof c);
    c.names[0] = "a";
    c.names[1] = "b";
    c.names[2] = "c";
    dr_bandit_stats want[3], init;
    stats_identity(&init);
    for (int i = 0; i < 3; i++)
        want[i] = init;
    char accepted[120] = {0};
    int n_ok = 0, n_dup = 0;
    dr_rng rng;
    dr_rng_seed(&rng, 2026);
    for (int it = 0; it < 300; it++) {
        int q = (int)dr_rng_below(&rng, 120), o = (int)dr_rng_below(&rng, 3);
        dr_bandit_store *s = h[dr_rng_below(&rng, 2)];
        char qid[32];
        snprintf(qid, sizeof qid, "q-%d", q);
        double r = (double)(dr_rng_below(&rng, 9)) / 4.0 - 1.0;
        double x[D];
        for (int i = 0; i < D; i++)
            x[i] = dr_rng_uniform(&rng);
        bool with_x = dr_rng_below(&rng, 4) != 0;
        dr_bandit_stats got;
        int rc =
            dr_bandit_store_reward(s, qid, c.names[o], r, with_x ? x : NULL, &init, &got, &err);
        if (accepted[q]) {
            if (rc != DYNRAG_ERR_STATE)
                test_fail_(__FILE__, __LINE__, "duplicate %s: rc %d", qid, rc);
            n_dup++;
            continue;
        }
        ASSERT_OK(rc, &err);
        accepted[q] = 1;
        n_ok++;
        stats_add(&want[o], r, with_x ? x : NULL);
        if (stats_diff(&got, &want[o]) > 1e-9)
            test_fail_(__FILE__, __LINE__, "%s on %s: stats differ by %g", qid, c.names[o],
                       stats_diff(&got, &want[o]));
        /* the same id for another stage is another reward */
        if (q % 7 == 0)
            ASSERT_OK(dr_bandit_store_reward(other, qid, "a", 1.0, NULL, &init, &got, &err), &err);
    }
    ASSERT_GT(n_ok, 50);
    ASSERT_GT(n_dup, 50);
    dr_bandit_store *fresh = NULL;
    ASSERT_OK(dr_bandit_store_open(state, "index", false, &fresh, &err), &err);
    ASSERT_OK(dr_bandit_store_read(fresh, collect, &c, &err), &err);
    double total = 0;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(c.seen[i], want[i].n > 0 ? 1 : 0);
        if (c.seen[i])
            ASSERT(stats_diff(&c.got[i], &want[i]) < 1e-9);
        total += c.got[i].n;
    }
    ASSERT_NEAR(total, n_ok, 0);
    dr_bandit_store_close(fresh);
    dr_bandit_store_close(other);
    dr_bandit_store_close(h[0]);
    dr_bandit_store_close(h[1]);
}

static const char *const docs_jsonl =
    "{\"_id\":\"d1\",\"title\":\"BM25\",\"text\":\"BM25 is a ranking function used by search "
    "engines to rank documents by term frequency.\"}\n"
    "{\"_id\":\"d2\",\"title\":\"Eiffel Tower\",\"text\":\"The Eiffel Tower is a wrought-iron "
    "lattice tower in Paris, France. It was completed in 1889.\"}\n"
    "{\"_id\":\"d3\",\"title\":\"Python\",\"text\":\"Python is a programming language created "
    "by Guido van Rossum and first released in 1991.\"}\n"
    "{\"_id\":\"d4\",\"title\":\"Moon landing\",\"text\":\"Apollo 11 landed the first humans "
    "on the Moon in July 1969.\"}\n";

/* Writes the index and a bandit pipeline (state `state_rel`, relative to
 * the tmpdir) under the tmpdir; the pipeline's path goes to yaml. */
static int make_pipeline(const char *state_rel, char *yaml, size_t size)
{
    char docs[4200], index[4200], text[12000];
    snprintf(docs, sizeof docs, "%s", test_write_file("docs.jsonl", docs_jsonl));
    snprintf(index, sizeof index, "%s/idx", test_tmpdir());
    const char *inputs[] = {docs};
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_index_add(index, inputs, 1, NULL, NULL, &err) != DYNRAG_OK) {
        fprintf(stderr, "index: %s\n", dynrag_errmsg(&err));
        return -1;
    }
    snprintf(text, sizeof text,
             "version: 1\n"
             "name: durable\n"
             "index: %s\n"
             "log: %s/route.jsonl\n"
             "stages:\n"
             "  index:\n"
             "    options:\n"
             "      - {name: lexical, kind: bm25}\n"
             "      - {name: fused, kind: hybrid}\n"
             "    router: {type: bandit, params: {algorithm: epsilon_greedy, epsilon: 0.3, "
             "state: %s}}\n",
             index, test_tmpdir(), state_rel);
    snprintf(yaml, size, "%s", test_write_file("durable.yaml", text));
    return 0;
}

/* Starts `dynrag serve` on a free port; returns its pid (0 on failure) and
 * the port in *port. */
static pid_t spawn_server(const char *yaml, int *port, FILE **so)
{
    int out[2];
    if (pipe(out) != 0)
        return 0;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    char *argv[] = {(char *)test_cli_path(),
                    "serve",
                    "--pipeline",
                    (char *)yaml,
                    "--port",
                    "0",
                    "--threads",
                    "4",
                    NULL};
    pid_t pid = 0;
    if (posix_spawn(&pid, test_cli_path(), &fa, NULL, argv, environ) != 0)
        pid = 0;
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    *so = fdopen(out[0], "r");
    char line[256] = "";
    if (pid == 0 || *so == NULL || fgets(line, sizeof line, *so) == NULL ||
        sscanf(line, "listening on http://127.0.0.1:%d", port) != 1) {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        return 0;
    }
    return pid;
}

static double reward_of(int i)
{
    return (double)(i % 5) * 0.25; /* exact in binary: sums compare exactly */
}

/*
 * The real server process: rewards given over HTTP while `dynrag feedback`
 * processes reward other queries of the same state at the same time; a
 * duplicate is refused (409 over HTTP, exit 1 in the CLI) whichever process
 * gave the first; then kill -9. The store then holds every acknowledged
 * reward exactly once, and the pipeline loads again.
 */
TEST(bandit_store_rewarded_ids_bounded)
{
    char state[4200];
    snprintf(state, sizeof state, "%s/state.json", test_tmpdir());
    dynrag_error err;
    dr_bandit_store *s = NULL, *g = NULL;
    ASSERT_OK(dr_bandit_store_open(state, "index", true, &s, &err), &err);
    ASSERT_OK(dr_bandit_store_open(state, "generator", true, &g, &err), &err);
    dr_bandit_stats init, got;
    stats_identity(&init);
    dr_rng rng;
    dr_rng_seed(&rng, 7);
    for (int round = 0; round < 6; round++) {
        /* n rewards spread over both stages, then check the window. */
        int window = 1 + (int)dr_rng_below(&rng, 8), n = window + 1 + (int)dr_rng_below(&rng, 20);
        dr_bandit_store_set_retention(s, window);
        dr_bandit_store_set_retention(g, window);
        char qid[48];
        bool on_g[32];
        for (int i = 0; i < n; i++) {
            on_g[i] = dr_rng_below(&rng, 3) == 0;
            snprintf(qid, sizeof qid, "r%d-%d", round, i);
            ASSERT_OK(dr_bandit_store_reward(on_g[i] ? g : s, qid, "a", 0.5, NULL, &init, &got,
                                             &err),
                      &err);
        }
        /* Within the window (the newest `window` rewards of the store) a
         * duplicate is refused; just before it the id is forgotten and can
         * be rewarded again (documented retention). */
        for (int i = n - window; i < n; i++) {
            snprintf(qid, sizeof qid, "r%d-%d", round, i);
            ASSERT_EQ(dr_bandit_store_reward(on_g[i] ? g : s, qid, "a", 0.5, NULL, &init, &got,
                                             &err),
                      DYNRAG_ERR_STATE);
        }
        snprintf(qid, sizeof qid, "r%d-%d", round, n - window - 1);
        ASSERT_OK(dr_bandit_store_reward(on_g[n - window - 1] ? g : s, qid, "a", 0.5, NULL, &init,
                                         &got, &err),
                  &err);
    }
    dr_bandit_store_set_retention(NULL, 3);
    dr_bandit_store_close(s);
    dr_bandit_store_close(g);
}

TEST(bandit_state_survives_kill9_with_cli_writers)
{
    char yaml[4200];
    ASSERT_EQ(make_pipeline("state/bandit.json", yaml, sizeof yaml), 0);
    int port = 0;
    FILE *so = NULL;
    pid_t pid = spawn_server(yaml, &port, &so);
    ASSERT(pid > 0);
    enum { NQ = 24, NCLI = 8 };
    char ids[NQ][96];
    static const char *const qs[] = {"Who created Python?", "When was the Eiffel Tower built?",
                                     "What is BM25?", "Who landed on the Moon?"};
    bool ok = true;
    for (int i = 0; i < NQ && ok; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"query\": \"%s (%d)\"}", qs[i % 4], i);
        http_reply r;
        ok = http_post_json(port, "/v1/query", body, NULL, &r) == 0 && r.status == 200;
        cJSON *o = ok ? cJSON_Parse(r.body) : NULL;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "query_id");
        ok = ok && cJSON_IsString(id);
        if (ok)
            snprintf(ids[i], sizeof ids[i], "%s", id->valuestring);
        cJSON_Delete(o);
        http_reply_free(&r);
    }
    /* The CLI rewards the last NCLI queries in the background ... */
    char cmd[20000];
    size_t len = 0;
    for (int i = NQ - NCLI; i < NQ; i++)
        len += (size_t)snprintf(cmd + len, sizeof cmd - len,
                                "%s'%s' feedback --pipeline '%s' --query-id '%s' --reward %g",
                                i > NQ - NCLI ? " && " : "", test_cli_path(), yaml, ids[i],
                                reward_of(i));
    char *sh_argv[] = {"/bin/sh", "-c", cmd, NULL};
    pid_t cli = 0;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (ok && posix_spawn(&cli, "/bin/sh", &fa, NULL, sh_argv, environ) != 0)
        cli = 0;
    posix_spawn_file_actions_destroy(&fa);
    /* ... while HTTP rewards the others, each acknowledged with 200, and a
     * repeat of each is refused with 409. */
    int acked = 0;
    double sum = 0;
    for (int i = 0; ok && i < NQ - NCLI; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"query_id\": \"%.95s\", \"reward\": %g}", ids[i],
                 reward_of(i));
        http_reply r;
        if (http_post_json(port, "/v1/feedback", body, NULL, &r) == 0 && r.status == 200) {
            acked++;
            sum += reward_of(i);
        } else {
            test_fail_(__FILE__, __LINE__, "feedback %d: status %ld %s", i, r.status, r.body);
        }
        http_reply_free(&r);
        if (http_post_json(port, "/v1/feedback", body, NULL, &r) != 0 || r.status != 409)
            test_fail_(__FILE__, __LINE__, "repeat %d: status %ld, want 409", i, r.status);
        else if (strstr(r.body, "already_rewarded") == NULL)
            test_fail_(__FILE__, __LINE__, "409 body: %s", r.body);
        http_reply_free(&r);
    }
    int st = -1;
    if (cli > 0 && waitpid(cli, &st, 0) == cli && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        acked += NCLI;
        for (int i = NQ - NCLI; i < NQ; i++)
            sum += reward_of(i);
    } else {
        test_fail_(__FILE__, __LINE__, "the CLI feedback commands failed (status %d)", st);
    }
    /* The server refuses what the CLI rewarded, and the CLI what the server did. */
    char body[256];
    snprintf(body, sizeof body, "{\"query_id\": \"%.95s\", \"reward\": 1}", ids[NQ - 1]);
    http_reply r;
    if (ok && (http_post_json(port, "/v1/feedback", body, NULL, &r) != 0 || r.status != 409))
        test_fail_(__FILE__, __LINE__, "server accepted a reward the CLI gave: %ld", r.status);
    if (ok)
        http_reply_free(&r);
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "'%s' feedback --pipeline '%s' --query-id '%s' --reward 1",
             test_cli_path(), yaml, ids[0]);
    int cli_rc = test_run(cmd, &out);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fclose(so);
    ASSERT(ok);
    ASSERT_EQ(cli_rc, 1);
    ASSERT_CONTAINS(out, "already rewarded");
    free(out);
    /* After kill -9: every acknowledged reward, once. */
    char state[4300];
    snprintf(state, sizeof state, "%s/state/bandit.json", test_tmpdir());
    dr_bandit_store *s = NULL;
    dynrag_error err;
    ASSERT_OK(dr_bandit_store_open(state, "index", false, &s, &err), &err);
    ASSERT(s != NULL);
    read_ctx c;
    memset(&c, 0, sizeof c);
    c.names[0] = "lexical";
    c.names[1] = "fused";
    c.names[2] = "none";
    ASSERT_OK(dr_bandit_store_read(s, collect, &c, &err), &err);
    dr_bandit_store_close(s);
    ASSERT_EQ(acked, NQ);
    ASSERT_NEAR(c.got[0].n + c.got[1].n, acked, 0);
    ASSERT_NEAR(c.got[0].sum_reward + c.got[1].sum_reward, sum, 1e-12);
    /* and the pipeline loads its state again: the next CLI query runs */
    snprintf(cmd, sizeof cmd, "'%s' query --pipeline '%s' 'Who created Python?'", test_cli_path(),
             yaml);
    ASSERT_EQ(test_run(cmd, &out), 0);
    free(out);
}

/* A bandit state file that cannot be saved (its folder does not exist)
 * fails `dynrag query` with exit 1 and the reason, not only a log line. */
TEST(bandit_state_unsavable_fails_the_command)
{
    char yaml[4200];
    ASSERT_EQ(make_pipeline("no-such-dir/bandit.json", yaml, sizeof yaml), 0);
    char cmd[9000], *out = NULL;
    snprintf(cmd, sizeof cmd, "'%s' query --pipeline '%s' 'Who created Python?'", test_cli_path(),
             yaml);
    int rc = test_run(cmd, &out);
    ASSERT_EQ(rc, 1);
    ASSERT_CONTAINS(out, "saving bandit state");
    free(out);
}
