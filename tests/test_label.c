/* test_label.c - `dynrag label`: silver labels from forced none/single/multi runs. */
#include "test.h"

#include "dynrag/eval.h"
#include "dynrag/index.h"

#include <cjson/cJSON.h>

TEST(label_cheapest_successful_mode)
{
    char corpus[4200], dir[4200], yaml[4200], qa[4200], out[4200], work[4200];
    snprintf(corpus, sizeof(corpus), "%s",
             test_write_file(
                 "c.jsonl",
                 "{\"_id\":\"france\",\"title\":\"France\",\"text\":\"France is a country in "
                 "Western Europe. Its capital city is Paris.\"}\n"
                 "{\"_id\":\"eiffel\",\"title\":\"Eiffel Tower\",\"text\":\"The Eiffel Tower "
                 "stands on the Champ de Mars in France.\"}\n"
                 "{\"_id\":\"python\",\"title\":\"Python\",\"text\":\"Python was created by "
                 "Guido van Rossum.\"}\n"));
    snprintf(dir, sizeof(dir), "%s/idx", test_tmpdir());
    const char *inputs[] = {corpus};
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_index_add(dir, inputs, 1, NULL, NULL, &err), &err);
    char text[8192];
    snprintf(text, sizeof(text),
             "version: 1\nname: lab\nindex: %s\nstages:\n  retrieval_mode:\n    options:\n"
             "      - {name: none, kind: none}\n"
             "      - {name: one, kind: single, params: {k: 1}}\n"
             "      - {name: hops, kind: multi, params: {k: 1, max_steps: 3}}\n"
             "    router: {type: fixed, params: {option: one}}\n",
             dir);
    snprintf(yaml, sizeof(yaml), "%s", test_write_file("p.yaml", text));
    /* B: one retrieval finds it. C: the bridge (Eiffel Tower -> France)
     * needs a second step. Unanswerable: no mode finds it. */
    snprintf(qa, sizeof(qa), "%s",
             test_write_file(
                 "qa.jsonl",
                 "{\"question\":\"Who created Python?\",\"answers\":[\"Guido van Rossum\"]}\n"
                 "{\"question\":\"What is the capital of the country where the Eiffel Tower "
                 "stands?\",\"answers\":[\"Paris\"]}\n"
                 "{\"question\":\"Who painted the Mona Lisa?\",\"answers\":[\"Leonardo\"]}\n"));
    snprintf(out, sizeof(out), "%s/labels.jsonl", test_tmpdir());
    snprintf(work, sizeof(work), "%s/work", test_tmpdir());
    dynrag_label_options o;
    dynrag_label_options_init(&o);
    o.pipeline_path = yaml;
    o.data_path = qa;
    o.out_path = out;
    o.work_dir = work;
    dynrag_label_stats st;
    ASSERT_OK(dynrag_eval_label(&o, &st, &err), &err);
    ASSERT_EQ(st.n_queries, 3);
    ASSERT_EQ(st.n_labelled, 2);
    ASSERT_EQ(st.n_skipped, 1);
    ASSERT_EQ(st.per_label[1], 1);
    ASSERT_EQ(st.per_label[2], 1);
    char *data = NULL;
    char cmd[4300];
    snprintf(cmd, sizeof(cmd), "cat '%s'", out);
    ASSERT_EQ(test_run(cmd, &data), 0);
    ASSERT_CONTAINS(data, "\"text\":\"Who created Python?\",\"label\":\"B\"");
    ASSERT_CONTAINS(data, "Eiffel Tower stands?\",\"label\":\"C\"");
    ASSERT_NOT_CONTAINS(data, "Mona Lisa");
    free(data);
    /* with a fallback every question is labelled; the CLI says so */
    char line[24000];
    snprintf(line, sizeof(line),
             "%s label --pipeline '%s' --data '%s' --out '%s' --work '%s' --fallback C",
             test_cli_path(), yaml, qa, out, work);
    ASSERT_EQ(test_run(line, &data), 0);
    ASSERT_CONTAINS(data, "labelled 3 of 3 questions (A 0, B 1, C 2; 1 by fallback");
    free(data);
    snprintf(line, sizeof(line), "%s label --pipeline '%s' --data '%s' --out '%s' --fallback X",
             test_cli_path(), yaml, qa, out);
    ASSERT_EQ(test_run(line, &data), 2);
    free(data);
}
