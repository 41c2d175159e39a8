/* test_router_task_clusters.c - outcome routers whose clusters are the
 * training rows' tasks (dr_omodel_train_opts.task_clusters, router/omodel.h):
 * a query's cluster is a logistic regression's argmax over the tasks. */
#include "test.h"

#include "core/util.h"
#include "dynrag/alloc.h"
#include "eval/outcomes.h"
#include "router/omodel.h"

#include <inttypes.h>
#include <math.h>

/* "algebra" rows are answered by option "math" only, "python" rows by
 * "code" only, "chat" rows by every option; the topic word is the task and
 * the query's first word, among shared filler words. Label noise flips a
 * cell with probability `noise`. With drop_task, row `drop_task - 1` has
 * no task. */
static char *task_table(uint64_t seed, size_t n, double noise, size_t drop_task)
{
    static const char *topics[] = {"algebra", "python", "chat"};
    static const char *words[] = {"the", "value", "list", "hello", "please", "what", "is", "a"};
    static const char *opts[] = {"math", "code", "general"};
    dr_rng r;
    dr_rng_seed(&r, seed);
    dr_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        int topic = (int)dr_rng_below(&r, 3);
        dr_buf q = {0};
        dr_buf_printf(&q, "%s", topics[topic]);
        size_t nw = 2 + dr_rng_below(&r, 8);
        for (size_t w = 0; w < nw; w++)
            dr_buf_printf(&q, " %s", words[dr_rng_below(&r, DR_ARRAY_LEN(words))]);
        dr_buf_printf(&b, "{\"id\":\"t%" PRIu64 "-%zu\",\"query\":", seed, i);
        dr_buf_json_str(&b, q.data);
        if (drop_task != i + 1)
            dr_buf_printf(&b, ",\"task\":\"%s\"", topics[topic]);
        dr_buf_puts(&b, ",\"outcomes\":{");
        for (int o = 0; o < 3; o++) {
            double qual = topic == 2 || o == topic ? 1.0 : 0.0;
            if (dr_rng_uniform(&r) < noise)
                qual = 1.0 - qual;
            dr_buf_printf(&b, "%s\"%s\":{\"quality\":%g}", o ? "," : "", opts[o], qual);
        }
        dr_buf_puts(&b, "}}\n");
        dr_buf_free(&q);
    }
    return dr_buf_take(&b);
}

static int table(uint64_t seed, size_t n, double noise, size_t drop, dr_outcome_table *t,
                 dynrag_error *err)
{
    char *text = task_table(seed, n, noise, drop);
    int rc = dr_outcomes_parse("tasks.jsonl", text, strlen(text), t, err);
    free(text);
    return rc;
}

static double routed(const dr_omodel *m, const dr_outcome_table *t)
{
    double q[6], sum = 0;
    for (size_t i = 0; i < t->n_rows; i++) {
        dr_omodel_predict(m, t->rows[i].query, q, q + 3, NULL);
        sum += t->rows[i].o[dr_omodel_pick(m, q, q + 3, 0, NULL)].quality;
    }
    return sum / (double)t->n_rows;
}

/* Over several seeds: the cluster kind with task clusters routes unseen
 * rows of each task to that task's best option (routed quality near
 * 1 - noise, far above the best single option, about 2/3), and a saved
 * and reloaded model predicts exactly what the trained one did. */
TEST(router_task_clusters_route_by_task_and_round_trip)
{
    for (uint64_t seed = 1; seed <= 4; seed++) {
        dr_outcome_table tr, te;
        dynrag_error err = {0};
        ASSERT_OK(table(seed, 300, 0.05, 0, &tr, &err), &err);
        ASSERT_OK(table(seed + 100, 200, 0.0, 0, &te, &err), &err);
        const char *kinds[] = {"cluster", "predict", "contrastive"};
        for (size_t k = 0; k < DR_ARRAY_LEN(kinds); k++) {
            dr_omodel_train_opts o = {
                .kind = kinds[k], .dim = 256, .task_clusters = true, .seed = seed, .epochs = 10};
            dr_omodel *m = NULL;
            ASSERT_OK(dr_omodel_train(&tr, NULL, 0, NULL, NULL, 0, &o, &m, NULL, &err), &err);
            double q = routed(m, &te);
            if (q < 0.95)
                test_fail_(__FILE__, __LINE__, "seed %" PRIu64 " kind %s: routed quality %.3f",
                           seed, kinds[k], q);
            char path[512];
            snprintf(path, sizeof(path), "%s/%s.safetensors", test_tmpdir(), kinds[k]);
            ASSERT_OK(dr_omodel_save(m, path, &err), &err);
            dr_omodel *l = NULL;
            ASSERT_OK(dr_omodel_load(path, &l, &err), &err);
            for (size_t i = 0; i < te.n_rows; i++) {
                double a[6], b[6];
                ASSERT_OK(dr_omodel_predict(m, te.rows[i].query, a, a + 3, &err), &err);
                ASSERT_OK(dr_omodel_predict(l, te.rows[i].query, b, b + 3, &err), &err);
                for (int j = 0; j < 3; j++)
                    ASSERT(a[j] == b[j]);
                /* The classifier's confidence: a probability of at least 1/3
                 * (the argmax of 3), above 1/2 on these separable tasks, the
                 * same after a reload. */
                double c = dr_omodel_task_confidence(m, te.rows[i].query);
                ASSERT(c > 0.5 && c <= 1.0);
                ASSERT(c == dr_omodel_task_confidence(l, te.rows[i].query));
            }
            /* A query of no task is less certain than one of a task. */
            ASSERT(dr_omodel_task_confidence(m, "hello please") <
                   dr_omodel_task_confidence(m, "algebra value"));
            dr_omodel_free(l);
            dr_omodel_free(m);
        }
        /* k-means clusters: no task classifier, no confidence. */
        dr_omodel_train_opts o = {.kind = "cluster", .dim = 256, .clusters = 3, .seed = seed};
        dr_omodel *m = NULL;
        ASSERT_OK(dr_omodel_train(&tr, NULL, 0, NULL, NULL, 0, &o, &m, NULL, &err), &err);
        ASSERT(isnan(dr_omodel_task_confidence(m, te.rows[0].query)));
        dr_omodel_free(m);
        dr_outcomes_free(&tr);
        dr_outcomes_free(&te);
    }
}

/* A training row without a task is an error naming the row; so is a
 * single task; a damaged cluster label in a model file is a format error
 * naming the file and the field. */
TEST(router_task_clusters_reject_bad_input)
{
    dr_outcome_table t;
    dynrag_error err = {0};
    ASSERT_OK(table(7, 120, 0.0, 17, &t, &err), &err);
    dr_omodel_train_opts o = {.kind = "cluster", .dim = 64, .task_clusters = true};
    dr_omodel *m = NULL;
    ASSERT_EQ(dr_omodel_train(&t, NULL, 0, NULL, NULL, 0, &o, &m, NULL, &err), DYNRAG_ERR_INVALID);
    ASSERT(m == NULL);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "t7-16");
    dr_outcomes_free(&t);

    ASSERT_OK(table(8, 120, 0.0, 0, &t, &err), &err);
    size_t one_task[40], n1 = 0;
    for (size_t i = 0; i < t.n_rows && n1 < 40; i++)
        if (strcmp(t.rows[i].task, "chat") == 0)
            one_task[n1++] = i;
    ASSERT_EQ(dr_omodel_train(&t, one_task, n1, NULL, NULL, 0, &o, &m, NULL, &err),
              DYNRAG_ERR_INVALID);
    ASSERT_OK(dr_omodel_train(&t, NULL, 0, NULL, NULL, 0, &o, &m, NULL, &err), &err);
    char path[512], bad[512];
    snprintf(path, sizeof(path), "%s/task.safetensors", test_tmpdir());
    snprintf(bad, sizeof(bad), "%s/bad.safetensors", test_tmpdir());
    ASSERT_OK(dr_omodel_save(m, path, &err), &err);
    dr_omodel_free(m);
    char *bytes = NULL;
    size_t len = 0;
    ASSERT_OK(dr_read_file(path, 1u << 28, &bytes, &len, &err), &err);
    /* Labels are sorted: algebra, chat, python. Same length, so only the
     * label changes. */
    static const char *from[] = {"\\\"algebra\\\",", "\\\"algebra\\\","};
    static const char *to[] = {"\\\"\\\",       ", "12345678901,"};
    for (size_t v = 0; v < 2; v++) {
        char *copy = dr_malloc(len);
        ASSERT(copy != NULL);
        memcpy(copy, bytes, len);
        /* The file starts with a binary length: memmem, not strstr. */
        char *at = memmem(copy, len, from[v], strlen(from[v]));
        ASSERT(at != NULL);
        memcpy(at, to[v], strlen(to[v]));
        ASSERT_OK(dr_write_file_atomic(bad, copy, len, &err), &err);
        dr_free(copy);
        ASSERT_EQ(dr_omodel_load(bad, &m, &err), DYNRAG_ERR_FORMAT);
        ASSERT(m == NULL);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.safetensors");
        ASSERT_CONTAINS(dynrag_errmsg(&err), "cluster_labels");
    }
    dr_free(bytes);
    dr_outcomes_free(&t);
}
