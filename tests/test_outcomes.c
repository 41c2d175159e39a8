/* test_outcomes.c - the outcome-table reader and writer (src/eval/outcomes.c). */
#include "test.h"

#include "core/util.h"
#include "eval/outcomes.h"

/* Fills a random table of n rows over up to 5 options (some cells absent,
 * some optional fields absent, strings with escapes and UTF-8). */
static int random_table(dr_rng *r, size_t n, dr_outcome_table *t)
{
    static const char *names[] = {"gpt-4", "mistral-7b", "Llama-3\"8B\\", "zéphyr", "o\tpt"};
    static const char *pieces[] = {"a", "é", "\"", "\\", "\n", "\x01", "日本", " ", "x/y"};
    memset(t, 0, sizeof(*t));
    t->n_options = 1 + dr_rng_below(r, 5);
    t->options = calloc(t->n_options, sizeof(char *));
    t->rows = calloc(n, sizeof(dr_outcome_row));
    if (t->options == NULL || t->rows == NULL)
        return -1;
    for (size_t k = 0; k < t->n_options; k++)
        t->options[k] = dr_strdup(names[k]);
    t->n_rows = n;
    for (size_t i = 0; i < n; i++) {
        dr_outcome_row *row = &t->rows[i];
        row->id = dr_asprintf("q%zu", i);
        dr_buf q = {0};
        size_t len = 1 + dr_rng_below(r, 8);
        for (size_t j = 0; j < len; j++)
            dr_buf_puts(&q, pieces[dr_rng_below(r, DR_ARRAY_LEN(pieces))]);
        row->query = dr_buf_take(&q);
        row->task = dr_rng_below(r, 2) ? dr_asprintf("task%d", (int)dr_rng_below(r, 3)) : NULL;
        row->o = calloc(t->n_options, sizeof(dr_outcome));
        /* The first row has every option, so first-seen order is the table's;
         * every row has at least option `must`. */
        size_t must = dr_rng_below(r, t->n_options);
        for (size_t k = 0; k < t->n_options; k++) {
            dr_outcome *o = &row->o[k];
            o->present = i == 0 || k == must || dr_rng_below(r, 4) != 0;
            if (!o->present)
                continue;
            o->quality = dr_rng_below(r, 3) == 0 ? (double)dr_rng_below(r, 2) : dr_rng_uniform(r);
            o->has_cost = dr_rng_below(r, 2);
            o->cost_usd = o->has_cost ? dr_rng_uniform(r) * 1e-3 : 0.0;
            o->has_latency = dr_rng_below(r, 2);
            o->latency_ms = o->has_latency ? dr_rng_uniform(r) * 5000 : 0.0;
            o->response = dr_rng_below(r, 2) ? dr_strdup(pieces[dr_rng_below(r, 9)]) : NULL;
        }
    }
    return 0;
}

/* Writes every row of t as JSONL into *text (malloc'ed). */
static int write_table(const dr_outcome_table *t, char **text)
{
    dr_buf b = {0};
    for (size_t i = 0; i < t->n_rows; i++)
        if (dr_outcomes_write_row(t, &t->rows[i], &b) != DYNRAG_OK) {
            dr_buf_free(&b);
            return -1;
        }
    *text = dr_buf_take(&b);
    return 0;
}

static bool str_eq_null(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

TEST(outcomes_roundtrip_random_tables)
{
    dr_rng r;
    dr_rng_seed(&r, 14);
    for (int iter = 0; iter < 200; iter++) {
        dr_outcome_table t, back;
        size_t n = 1 + dr_rng_below(&r, 12);
        ASSERT_EQ(random_table(&r, n, &t), 0);
        char *text = NULL;
        ASSERT_EQ(write_table(&t, &text), 0);
        dynrag_error err = {0};
        int rc = dr_outcomes_parse("gen.jsonl", text, strlen(text), &back, &err);
        if (rc != DYNRAG_OK)
            fprintf(stderr, "%s\n%s\n", dynrag_errmsg(&err), text);
        ASSERT_OK(rc, &err);
        ASSERT_EQ(back.n_rows, t.n_rows);
        ASSERT_EQ(back.n_options, t.n_options);
        for (size_t k = 0; k < t.n_options; k++) {
            ASSERT_STR_EQ(back.options[k], t.options[k]);
            ASSERT_EQ(dr_outcomes_option(&back, t.options[k]), (int)k);
        }
        for (size_t i = 0; i < n; i++) {
            ASSERT_STR_EQ(back.rows[i].id, t.rows[i].id);
            ASSERT_STR_EQ(back.rows[i].query, t.rows[i].query);
            ASSERT(str_eq_null(back.rows[i].task, t.rows[i].task));
            for (size_t k = 0; k < t.n_options; k++) {
                const dr_outcome *a = &t.rows[i].o[k], *b = &back.rows[i].o[k];
                ASSERT_EQ(a->present, b->present);
                ASSERT_EQ(a->quality, b->quality);
                ASSERT_EQ(a->has_cost, b->has_cost);
                ASSERT_EQ(a->cost_usd, b->cost_usd);
                ASSERT_EQ(a->has_latency, b->has_latency);
                ASSERT_EQ(a->latency_ms, b->latency_ms);
                ASSERT(str_eq_null(a->response, b->response));
            }
        }
        ASSERT_EQ(dr_outcomes_option(&back, "no such option"), -1);
        free(text);
        dr_outcomes_free(&t);
        dr_outcomes_free(&back);
    }
    dr_outcomes_free(NULL);
}

TEST(outcomes_load_file_and_option_union)
{
    const char *path = test_write_file(
        "t.jsonl", "{\"id\":\"1\",\"query\":\"q one\",\"task\":\"mmlu\",\"outcomes\":"
                   "{\"a\":{\"quality\":1,\"cost_usd\":0.5},\"b\":{\"quality\":0}}}\n"
                   "\n"
                   "{\"id\":\"2\",\"query\":\"q two\",\"outcomes\":{\"c\":{\"quality\":0.3,"
                   "\"latency_ms\":12,\"response\":\"hi\"},\"a\":{\"quality\":0}}}\n");
    dr_outcome_table t;
    dynrag_error err = {0};
    ASSERT_OK(dr_outcomes_load(path, &t, &err), &err);
    ASSERT_EQ(t.n_rows, 2);
    ASSERT_EQ(t.n_options, 3);
    ASSERT_STR_EQ(t.options[2], "c");
    ASSERT_STR_EQ(t.rows[0].task, "mmlu");
    ASSERT(t.rows[1].task == NULL);
    ASSERT(t.rows[0].o[0].has_cost && t.rows[0].o[0].cost_usd == 0.5);
    ASSERT(!t.rows[0].o[2].present); /* widened when "c" appeared on line 3 */
    ASSERT(!t.rows[1].o[1].present);
    ASSERT(t.rows[1].o[2].has_latency && t.rows[1].o[2].latency_ms == 12);
    ASSERT_STR_EQ(t.rows[1].o[2].response, "hi");
    dr_outcomes_free(&t);
    ASSERT_EQ(t.n_rows, 0);
    ASSERT(dr_outcomes_load("/nonexistent/x.jsonl", &t, &err) < 0);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "/nonexistent/x.jsonl");
}

/* One invalid-line case: the line, and the field the error must name. */
typedef struct bad_case {
    const char *line;
    const char *field;
} bad_case;

TEST(outcomes_errors_name_line_and_field)
{
    static const bad_case cases[] = {
        {"{\"query\":\"q\",\"outcomes\":{\"a\":{\"quality\":1}}}", "id: missing"},
        {"{\"id\":\"\",\"query\":\"q\",\"outcomes\":{\"a\":{\"quality\":1}}}", "id: empty"},
        {"{\"id\":7,\"query\":\"q\",\"outcomes\":{\"a\":{\"quality\":1}}}", "id: not a string"},
        {"{\"id\":\"x\",\"outcomes\":{\"a\":{\"quality\":1}}}", "query: missing"},
        {"{\"id\":\"x\",\"query\":\"q\",\"task\":3,\"outcomes\":{\"a\":{\"quality\":1}}}",
         "task: not a string"},
        {"{\"id\":\"x\",\"query\":\"q\"}", "outcomes: missing"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":[]}", "outcomes: not an object"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{}}", "outcomes: no option"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"a\":{}}}", "outcomes.a.quality: missing"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"a\":1}}", "outcomes.a: not an object"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"a\":{\"quality\":1.5}}}",
         "outcomes.a.quality: 1.5 is outside [0, 1]"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"a\":{\"quality\":-0.1}}}",
         "outcomes.a.quality: -0.1 is outside"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"a\":{\"quality\":\"1\"}}}",
         "outcomes.a.quality: not a number"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"a\":{\"quality\":1,\"cost_usd\":-1}}}",
         "outcomes.a.cost_usd: -1 is outside"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"a\":{\"quality\":1,\"latency_ms\":1e999}}}",
         "outcomes.a.latency_ms:"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"a\":{\"quality\":1,\"response\":2}}}",
         "outcomes.a.response: not a string"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"a\":{\"quality\":1,\"qualty\":1}}}",
         "outcomes.a.qualty: unknown field"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"a\":{\"quality\":1},\"a\":{\"quality\":0}}"
         "}",
         "outcomes.a: given twice"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"a\":{\"quality\":1,\"quality\":0}}}",
         "outcomes.a.quality: given twice"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"\":{\"quality\":1}}}",
         "outcomes: empty option name"},
        {"{\"id\":\"x\",\"query\":\"q\",\"extra\":1,\"outcomes\":{\"a\":{\"quality\":1}}}",
         "extra: unknown field"},
        {"{\"id\":\"x\",\"query\":\"a\\u0000b\",\"outcomes\":{\"a\":{\"quality\":1}}}",
         "query: contains a NUL character"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"a\":{\"quality\":1,\"response\":"
         "\"\\u0000\"}}}",
         "outcomes.a.response: contains a NUL character"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"a\\u0000\":{\"quality\":1}}}",
         "contains a NUL character"},
        {"{\"id\":\"x\",\"query\":\"\xff\",\"outcomes\":{\"a\":{\"quality\":1}}}",
         "query: not valid UTF-8"},
        {"{\"id\":\"x\",\"query\":\"q\",\"outcomes\":{\"a\":{\"quality\":1}}} trailing",
         "malformed JSON"},
        {"[1,2]", "expected a JSON object"},
        {"{\"id\":\"x\",", "malformed JSON"},
    };
    const char *good = "{\"id\":\"g%d\",\"query\":\"fine\",\"outcomes\":{\"a\":{\"quality\":0}}}\n";
    for (size_t c = 0; c < DR_ARRAY_LEN(cases); c++) {
        /* The bad line at line 1..4 after good lines and a blank one. */
        for (int pos = 0; pos < 4; pos++) {
            dr_buf b = {0};
            for (int i = 0; i < pos; i++)
                dr_buf_printf(&b, good, i);
            if (pos == 3)
                dr_buf_puts(&b, "   \n");
            dr_buf_printf(&b, "%s\n", cases[c].line);
            dr_buf_printf(&b, good, 99);
            dr_outcome_table t;
            dynrag_error err = {0};
            int rc = dr_outcomes_parse("bad.jsonl", b.data, b.len, &t, &err);
            ASSERT(rc < 0);
            ASSERT_EQ(t.n_rows, 0); /* freed on failure */
            char want[64];
            snprintf(want, sizeof(want), "bad.jsonl:%d: ", pos + 1 + (pos == 3));
            ASSERT_CONTAINS(dynrag_errmsg(&err), want);
            ASSERT_CONTAINS(dynrag_errmsg(&err), cases[c].field);
            dr_buf_free(&b);
        }
    }
}

TEST(outcomes_duplicate_ids_and_empty_files)
{
    dr_outcome_table t;
    dynrag_error err = {0};
    const char *dup = "{\"id\":\"a\",\"query\":\"q\",\"outcomes\":{\"m\":{\"quality\":1}}}\n"
                      "{\"id\":\"b\",\"query\":\"q\",\"outcomes\":{\"m\":{\"quality\":1}}}\n"
                      "{\"id\":\"c\",\"query\":\"q\",\"outcomes\":{\"m\":{\"quality\":1}}}\n"
                      "{\"id\":\"b\",\"query\":\"q\",\"outcomes\":{\"m\":{\"quality\":1}}}\n"
                      "{\"id\":\"a\",\"query\":\"q\",\"outcomes\":{\"m\":{\"quality\":1}}}\n";
    ASSERT_EQ(dr_outcomes_parse("d.jsonl", dup, strlen(dup), &t, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "d.jsonl:4: id: \"b\" repeats line 2");
    ASSERT_EQ(dr_outcomes_parse("e.jsonl", "\n  \n", 4, &t, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "e.jsonl: no rows");
    const char nul[] = "{\"id\":\"a\",\"query\":\"q\0\",\"outcomes\":{\"m\":{\"quality\":1}}}\n";
    ASSERT_EQ(dr_outcomes_parse("n.jsonl", nul, sizeof(nul) - 1, &t, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "n.jsonl:1: contains a NUL byte");
    /* An escaped backslash before u0000 is not a NUL. */
    const char *esc = "{\"id\":\"a\",\"query\":\"\\\\u0000\",\"outcomes\":{\"m\":{\"quality\":1}}}";
    ASSERT_OK(dr_outcomes_parse("s.jsonl", esc, strlen(esc), &t, &err), &err);
    ASSERT_STR_EQ(t.rows[0].query, "\\u0000");
    dr_outcomes_free(&t);
}

TEST(outcomes_truncated_files_never_crash)
{
    /* Every prefix of a valid table either parses (to a prefix of its rows)
     * or fails with an error naming the file. */
    dr_rng r;
    dr_rng_seed(&r, 7);
    dr_outcome_table t;
    ASSERT_EQ(random_table(&r, 6, &t), 0);
    char *text = NULL;
    ASSERT_EQ(write_table(&t, &text), 0);
    size_t len = strlen(text);
    for (size_t cut = 0; cut <= len; cut++) {
        dr_outcome_table back;
        dynrag_error err = {0};
        int rc = dr_outcomes_parse("cut.jsonl", text, cut, &back, &err);
        if (rc == DYNRAG_OK) {
            ASSERT_LE(back.n_rows, t.n_rows);
            for (size_t i = 0; i < back.n_rows; i++)
                ASSERT_STR_EQ(back.rows[i].id, t.rows[i].id);
            dr_outcomes_free(&back);
        } else {
            ASSERT_CONTAINS(dynrag_errmsg(&err), "cut.jsonl");
        }
    }
    free(text);
    dr_outcomes_free(&t);
}

/* ---- converters ------------------------------------------------------------ */

#include "dynrag/outcomes.h"

/* Converts with routerdc/routerbench and loads the result. */
static int convert_load(bool routerdc, const char *in, dr_outcome_table *t,
                        dynrag_convert_stats *st, dynrag_error *err)
{
    char out[1024];
    snprintf(out, sizeof(out), "%s/out.jsonl", test_tmpdir());
    int rc = routerdc ? dynrag_convert_routerdc(in, out, st, err)
                      : dynrag_convert_routerbench(in, out, st, err);
    memset(t, 0, sizeof(*t));
    return rc != DYNRAG_OK ? rc : dr_outcomes_load(out, t, err);
}

TEST(outcomes_convert_routerdc_scoring_by_file_name)
{
    /* The same records under names of each scoring type. */
    const char *json =
        "[{\"question\":\"What is 2+2?\",\"scores\":{\"m1\":0.7,\"m2\":0,\"m3\":1.0}},"
        " {\"question\":\"Q \\\"two\\\"\",\"scores\":{\"m1\":0.0001,\"m2\":0.5,"
        "\"m3\":0}, \"cluster_id\": 3}]";
    static const struct {
        const char *file, *task;
        bool frac;
    } names[] = {{"gsm8k-train.json", "gsm8k", true},
                 {"humaneval_test.json", "humaneval", true},
                 {"mbpp.json", "mbpp", true},
                 {"javascript_test.json", "javascript", true},
                 {"mmlu_train.json", "mmlu", false},
                 {"cmmlu-test.json", "cmmlu", false},
                 {"MATH_prealgebra.json", "MATH_prealgebra", false},
                 {"ceval.json", "ceval", false}};
    for (size_t i = 0; i < DR_ARRAY_LEN(names); i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s", test_write_file(names[i].file, json));
        dr_outcome_table t;
        dynrag_convert_stats st;
        dynrag_error err = {0};
        ASSERT_OK(convert_load(true, path, &t, &st, &err), &err);
        ASSERT_STR_EQ(st.task, names[i].task);
        ASSERT_EQ(st.fractional, names[i].frac);
        ASSERT_EQ(st.rows_written, 2);
        ASSERT_EQ(t.n_rows, 2);
        ASSERT_EQ(t.n_options, 3);
        ASSERT_STR_EQ(t.rows[1].query, "Q \"two\"");
        ASSERT_STR_EQ(t.rows[0].task, names[i].task);
        char id[128];
        snprintf(id, sizeof(id), "%s-1", names[i].task);
        ASSERT_STR_EQ(t.rows[1].id, id);
        static const double raw[2][3] = {{0.7, 0, 1.0}, {0.0001, 0.5, 0}};
        for (int r = 0; r < 2; r++)
            for (int k = 0; k < 3; k++) {
                double want = names[i].frac ? raw[r][k] : (raw[r][k] > 0 ? 1.0 : 0.0);
                ASSERT_EQ(t.rows[r].o[k].quality, want);
                ASSERT(!t.rows[r].o[k].has_cost);
            }
        dr_outcomes_free(&t);
    }
    /* A fraction file with a score outside [0, 1], and malformed records. */
    static const struct {
        const char *file, *json, *msg;
    } bad[] = {
        {"gsm8k.json", "[{\"question\":\"q\",\"scores\":{\"m\":1.5}}]",
         "[0].scores.m: 1.5 is not a fraction"},
        {"mmlu.json", "[{\"question\":\"q\",\"scores\":{\"m\":1}},{\"scores\":{\"m\":1}}]",
         "[1].question"},
        {"mmlu.json", "[{\"question\":\"q\",\"scores\":{}}]", "[0].scores"},
        {"mmlu.json", "[{\"question\":\"q\",\"scores\":{\"m\":\"x\"}}]",
         "[0].scores.m: not a number"},
        {"mmlu.json", "{\"question\":\"q\"}", "expected a JSON array"},
        {"mmlu.json", "[", "malformed JSON"},
        {"mmlu.json", "[]", "no records"},
        {"_train.json", "[]", "task name"},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(bad); i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s", test_write_file(bad[i].file, bad[i].json));
        dr_outcome_table t;
        dynrag_convert_stats st;
        dynrag_error err = {0};
        ASSERT(convert_load(true, path, &t, &st, &err) < 0);
        ASSERT_CONTAINS(dynrag_errmsg(&err), bad[i].file);
        ASSERT_CONTAINS(dynrag_errmsg(&err), bad[i].msg);
    }
}

/* Appends s as one CSV field, quoted when it holds a comma, quote, CR or LF
 * (or always when `force`). */
static void csv_field(dr_buf *b, const char *s, bool force)
{
    if (!force && strpbrk(s, ",\"\r\n") == NULL) {
        dr_buf_puts(b, s);
        return;
    }
    dr_buf_putc(b, '"');
    for (; *s; s++) {
        if (*s == '"')
            dr_buf_putc(b, '"');
        dr_buf_putc(b, *s);
    }
    dr_buf_putc(b, '"');
}

TEST(outcomes_convert_routerbench_csv_roundtrip)
{
    /* Random RouterBench-like files: prompts and responses full of commas,
     * quotes, newlines and CRs, random quoting, CRLF or LF line ends, rows
     * with a missing score; the table must hold exactly the kept rows. */
    static const char *pieces[] = {"a", ",", "\"", "\n", "\r\n", "['x', \"y\"]", "é", " ", "''"};
    /* Responses: no '[', so never a Python list literal (decoded: below). */
    static const char *resp_pieces[] = {"a", ",", "\"", "\n", "\r\n", "é", " ", "''", "x]"};
    static const char *models[] = {"gpt-4-1106-preview", "mistralai/mistral-7b-chat", "claude-v2"};
    dr_rng r;
    dr_rng_seed(&r, 5);
    for (int iter = 0; iter < 40; iter++) {
        const char *eol = dr_rng_below(&r, 2) ? "\r\n" : "\n";
        dr_buf b = {0};
        dr_buf_puts(&b, ",sample_id,prompt,eval_name");
        for (int m = 0; m < 3; m++)
            dr_buf_printf(&b, ",%s", models[m]);
        for (int m = 0; m < 3; m++)
            dr_buf_printf(&b, ",%s|model_response", models[m]);
        for (int m = 0; m < 3; m++)
            dr_buf_printf(&b, ",%s|total_cost", models[m]);
        dr_buf_printf(&b, ",oracle_model_to_route_to%s", eol);
        size_t n = 1 + dr_rng_below(&r, 8), kept = 0;
        char *prompt[8], *resp[8][3];
        double q[8][3], cost[8][3];
        bool keep[8];
        for (size_t i = 0; i < n; i++) {
            dr_buf p = {0};
            size_t len = 1 + dr_rng_below(&r, 6);
            for (size_t j = 0; j < len; j++)
                dr_buf_puts(&p, pieces[dr_rng_below(&r, DR_ARRAY_LEN(pieces))]);
            prompt[i] = dr_buf_take(&p);
            keep[i] = i == 0 || dr_rng_below(&r, 4) != 0;
            kept += keep[i];
            dr_buf_printf(&b, "%zu,task.%zu,", i, i);
            csv_field(&b, prompt[i], dr_rng_below(&r, 2));
            dr_buf_puts(&b, ",mytask");
            size_t miss = dr_rng_below(&r, 3);
            for (int m = 0; m < 3; m++) {
                q[i][m] = (double)dr_rng_below(&r, 2);
                if (!keep[i] && (size_t)m == miss)
                    dr_buf_puts(&b, ",");
                else
                    dr_buf_printf(&b, ",%.1f", q[i][m]);
            }
            for (int m = 0; m < 3; m++) {
                dr_buf p2 = {0};
                size_t l2 = dr_rng_below(&r, 4);
                for (size_t j = 0; j < l2; j++)
                    dr_buf_puts(&p2, resp_pieces[dr_rng_below(&r, DR_ARRAY_LEN(resp_pieces))]);
                resp[i][m] = dr_buf_take(&p2);
                dr_buf_putc(&b, ',');
                csv_field(&b, resp[i][m], dr_rng_below(&r, 2));
            }
            for (int m = 0; m < 3; m++) {
                cost[i][m] = (double)dr_rng_below(&r, 100000) * 1e-8;
                dr_buf_printf(&b, ",%.17g", cost[i][m]);
            }
            dr_buf_printf(&b, ",%s%s", models[0], i + 1 < n || dr_rng_below(&r, 2) ? eol : "");
        }
        char path[1024];
        snprintf(path, sizeof(path), "%s", test_write_file("rb.csv", b.data));
        dr_outcome_table t;
        dynrag_convert_stats st;
        dynrag_error err = {0};
        ASSERT_OK(convert_load(false, path, &t, &st, &err), &err);
        ASSERT_EQ(st.rows_read, n);
        ASSERT_EQ(st.rows_written, kept);
        ASSERT_EQ(st.rows_dropped, n - kept);
        ASSERT_EQ(t.n_rows, kept);
        ASSERT_EQ(t.n_options, 3);
        size_t row = 0;
        for (size_t i = 0; i < n; i++) {
            if (!keep[i])
                continue;
            const dr_outcome_row *o = &t.rows[row++];
            ASSERT_STR_EQ(o->query, prompt[i]);
            ASSERT_STR_EQ(o->task, "mytask");
            for (int m = 0; m < 3; m++) {
                int k = dr_outcomes_option(&t, models[m]);
                ASSERT(k >= 0);
                ASSERT_EQ(o->o[k].quality, q[i][m]);
                ASSERT(o->o[k].has_cost);
                ASSERT_EQ(o->o[k].cost_usd, cost[i][m]);
                ASSERT_STR_EQ(o->o[k].response, resp[i][m]);
            }
        }
        dr_outcomes_free(&t);
        for (size_t i = 0; i < n; i++) {
            free(prompt[i]);
            for (int m = 0; m < 3; m++)
                free(resp[i][m]);
        }
        dr_buf_free(&b);
    }
}

/* Converts a one-row RouterBench file whose only model answered `resp` (a
 * raw CSV field) and returns the stored response (caller frees), or NULL. */
static char *rb_response(const char *resp)
{
    dr_buf b = {0};
    dr_buf_puts(&b, "sample_id,prompt,m,m|model_response,m|total_cost\nq1,p,1,");
    csv_field(&b, resp, true);
    dr_buf_puts(&b, ",0.5\n");
    char path[1024];
    snprintf(path, sizeof(path), "%s", test_write_file("rb1.csv", b.data));
    dr_buf_free(&b);
    dr_outcome_table t;
    dynrag_convert_stats st;
    dynrag_error err = {0};
    if (convert_load(false, path, &t, &st, &err) != DYNRAG_OK || t.n_rows != 1)
        return NULL;
    char *out = t.rows[0].o[0].response ? strdup(t.rows[0].o[0].response) : NULL;
    dr_outcomes_free(&t);
    return out;
}

/*
 * Invariant: a response stored as a Python list literal of strings (as
 * RouterBench stores them) converts to its strings, escapes resolved, joined
 * by line breaks, whatever the quoting and escaping; anything else that
 * is not exactly such a literal is kept verbatim.
 */
TEST(outcomes_convert_routerbench_response_literals)
{
    static const char *const chars[] = {"a", "Z", ",",  "\"", "'", "\n", "\\",
                                        "é", " ", "\t", "]",  "[", "\r", "\xe2\x82\xac"};
    dr_rng r;
    dr_rng_seed(&r, 11);
    for (int iter = 0; iter < 150; iter++) {
        size_t n_el = dr_rng_below(&r, 3); /* [] is the empty answer */
        dr_buf lit = {0}, want = {0};
        dr_buf_puts(&lit, dr_rng_below(&r, 2) ? "[" : " [ ");
        for (size_t e = 0; e < n_el; e++) {
            char q = dr_rng_below(&r, 2) ? '\'' : '"';
            if (e > 0) {
                dr_buf_puts(&lit, dr_rng_below(&r, 2) ? ", " : ",");
                dr_buf_putc(&want, '\n');
            }
            dr_buf_putc(&lit, q);
            size_t len = dr_rng_below(&r, 8);
            for (size_t k = 0; k < len; k++) {
                const char *c = chars[dr_rng_below(&r, DR_ARRAY_LEN(chars))];
                dr_buf_puts(&want, c);
                int how = (int)dr_rng_below(&r, 3);
                if (*c == '\\' || *c == q)
                    dr_buf_printf(&lit, "\\%c", *c);
                else if (*c == '\n')
                    dr_buf_puts(&lit, how == 0 ? "\\n" : how == 1 ? "\\x0a" : "\\012");
                else if (*c == '\r')
                    dr_buf_puts(&lit, "\\r");
                else if (*c == '\t')
                    dr_buf_puts(&lit, how == 0 ? "\\t" : "\\u0009");
                else if (strcmp(c, "é") == 0)
                    dr_buf_puts(&lit, how == 0 ? "é" : how == 1 ? "\\xe9" : "\\u00E9");
                else if (strcmp(c, "\xe2\x82\xac") == 0)
                    dr_buf_puts(&lit, how == 0 ? c : "\\U000020ac");
                else if (*c == '\'' || *c == '"')
                    dr_buf_puts(&lit, how == 0 ? c : *c == '\'' ? "\\'" : "\\\"");
                else
                    dr_buf_puts(&lit, c);
            }
            dr_buf_putc(&lit, q);
        }
        if (n_el > 0 && dr_rng_below(&r, 4) == 0)
            dr_buf_putc(&lit, ',');
        dr_buf_puts(&lit, dr_rng_below(&r, 2) ? "]" : "] ");
        char *got = rb_response(lit.data);
        if (got == NULL || strcmp(got, want.data ? want.data : "") != 0) {
            test_fail_(__FILE__, __LINE__, "literal %s: got '%s', want '%s'", lit.data,
                       got ? got : "(null)", want.data ? want.data : "");
            free(got);
            dr_buf_free(&lit);
            dr_buf_free(&want);
            return;
        }
        free(got);
        dr_buf_free(&lit);
        dr_buf_free(&want);
    }
    /* Not exactly a list of string literals: kept as it is. */
    static const char *const raw[] = {"[PYTHON]\ndef f(): pass",
                                      "['a'] tail",
                                      "['a' 'b']",
                                      "['a', b]",
                                      "[1]",
                                      "['\\x4']",
                                      "['\\0']",
                                      "['a\\x00']",
                                      "['\\ud800']",
                                      "['unterminated]",
                                      "['a\nb']",
                                      "b'x'",
                                      "[b'x']",
                                      "['\\U00110000']",
                                      "['\\u12']",
                                      "[",
                                      "['a',,]",
                                      "['\\"};
    for (size_t i = 0; i < DR_ARRAY_LEN(raw); i++) {
        char *got = rb_response(raw[i]);
        ASSERT(got != NULL);
        if (strcmp(got, raw[i]) != 0) {
            test_fail_(__FILE__, __LINE__, "'%s' became '%s'", raw[i], got);
            free(got);
            return;
        }
        free(got);
    }
    /* Backslashes that are not escapes stay, as in Python. */
    char *got = rb_response("['C\\\\n', 'a\\d']");
    ASSERT(got != NULL);
    ASSERT_STR_EQ(got, "C\\n\na\\d");
    free(got);
    got = rb_response("['B\\n']");
    ASSERT(got != NULL);
    ASSERT_STR_EQ(got, "B\n");
    free(got);
}

TEST(outcomes_convert_routerbench_errors)
{
    static const struct {
        const char *csv, *msg;
    } bad[] = {
        {"sample_id,prompt,m,m|total_cost\nx,\"unclosed,1,0.1\n",
         "rb.csv:2: quoted field not closed"},
        {"sample_id,prompt,m,m|total_cost\nx,a\"b,1,0.1\n",
         "rb.csv:2: quote inside unquoted field 2"},
        {"sample_id,prompt,m,m|total_cost\nx,\"ab\"c,1,0.1\n",
         "rb.csv:2: text after the closing quote"},
        {"sample_id,prompt,m,m|total_cost\nx,p,1\n", "rb.csv:2: 3 fields, the header has 4"},
        {"sample_id,prompt,m,m|total_cost\nx,\"multi\nline\",1,0.1\ny,p,2,0.1\n",
         "rb.csv:4: m: '2' is not a score"},
        {"sample_id,prompt,m,m|total_cost\nx,p,1,-3\n", "m|total_cost: '-3' is not a cost"},
        {"sample_id,prompt,m\nx,p,1\n", "no model columns"},
        {"id,prompt,m,m|total_cost\nx,p,1,0\n", "needs columns sample_id and prompt"},
        {"sample_id,prompt,m,m|total_cost\n,p,1,0\n", "rb.csv:2: sample_id: empty"},
        {"sample_id,prompt,m,m|total_cost\nx,p,,0\n", "no complete rows"},
        {"sample_id,prompt,m,m|total_cost\nx,p,1,0\nx,q,0,0\n", "id: \"x\" repeats line 1"},
        {"", "empty file"},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(bad); i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s", test_write_file("rb.csv", bad[i].csv));
        dr_outcome_table t;
        dynrag_convert_stats st;
        dynrag_error err = {0};
        ASSERT(convert_load(false, path, &t, &st, &err) < 0);
        ASSERT_CONTAINS(dynrag_errmsg(&err), bad[i].msg);
    }
}

TEST(outcomes_convert_shared_routing_data)
{
    /* The real training files: counts from ../shared/data/routing/README. */
    char path[1024];
    snprintf(path, sizeof(path), "%s/routing/routerbench/arc_challenge_train.csv", test_data_dir());
    if (!dr_path_exists(path))
        SKIP("no ../shared/data/routing");
    dr_outcome_table t;
    dynrag_convert_stats st;
    dynrag_error err = {0};
    ASSERT_OK(convert_load(false, path, &t, &st, &err), &err);
    ASSERT_EQ(st.rows_read, 1039);
    ASSERT_EQ(st.rows_dropped, 20); /* the 14 split sample ids and 6 other incomplete rows */
    ASSERT_EQ(t.n_options, 11);
    ASSERT(dr_outcomes_option(&t, "gpt-4-1106-preview") >= 0);
    for (size_t i = 0; i < t.n_rows; i++) {
        ASSERT_EQ(strncmp(t.rows[i].query, "['", 2), 0); /* the whole Python-list prompt */
        for (size_t k = 0; k < t.n_options; k++)
            ASSERT(t.rows[i].o[k].present && t.rows[i].o[k].has_cost &&
                   (t.rows[i].o[k].quality == 0 || t.rows[i].o[k].quality == 1));
    }
    dr_outcomes_free(&t);
    snprintf(path, sizeof(path), "%s/routing/routerdc/gsm8k-train.json", test_data_dir());
    ASSERT_OK(convert_load(true, path, &t, &st, &err), &err);
    ASSERT(st.fractional);
    ASSERT_EQ(t.n_rows, 1000);
    ASSERT_EQ(t.n_options, 7);
    ASSERT_EQ(t.rows[0].o[3].quality, 0.9); /* zephyr: 9 of 10 samples */
    dr_outcomes_free(&t);
}

TEST(outcomes_merge_keeps_every_cell)
{
    /* Splitting a random table's text at any row and merging the halves
     * gives back the same cells by option name; a repeated id is refused
     * and leaves both tables usable. */
    dr_rng r;
    dr_rng_seed(&r, 33);
    for (int iter = 0; iter < 60; iter++) {
        dr_outcome_table t;
        size_t n = 2 + dr_rng_below(&r, 10);
        ASSERT_EQ(random_table(&r, n, &t), 0);
        size_t cut = 1 + dr_rng_below(&r, n - 1);
        dr_buf a = {0}, b = {0};
        for (size_t i = 0; i < n; i++)
            ASSERT_EQ(dr_outcomes_write_row(&t, &t.rows[i], i < cut ? &a : &b), DYNRAG_OK);
        dr_outcome_table ta, tb, dst = {0};
        dynrag_error err = {0};
        ASSERT_OK(dr_outcomes_parse("a", a.data, a.len, &ta, &err), &err);
        ASSERT_OK(dr_outcomes_parse("b", b.data, b.len, &tb, &err), &err);
        ASSERT_OK(dr_outcomes_merge(&dst, &ta, "a", &err), &err);
        ASSERT_OK(dr_outcomes_merge(&dst, &tb, "b", &err), &err);
        ASSERT_EQ(ta.n_rows + tb.n_rows, 0); /* moved */
        ASSERT_EQ(dst.n_rows, n);
        for (size_t i = 0; i < n; i++) {
            ASSERT_STR_EQ(dst.rows[i].id, t.rows[i].id);
            for (size_t k = 0; k < t.n_options; k++) {
                int d = dr_outcomes_option(&dst, t.options[k]);
                const dr_outcome *x = &t.rows[i].o[k];
                if (d < 0) { /* an option no row of either half had */
                    ASSERT(!x->present);
                    continue;
                }
                const dr_outcome *y = &dst.rows[i].o[d];
                ASSERT_EQ(x->present, y->present);
                ASSERT_EQ(x->quality, y->quality);
                ASSERT_EQ(x->cost_usd, y->cost_usd);
            }
        }
        /* Merging the first half again repeats its ids. */
        ASSERT_OK(dr_outcomes_parse("a", a.data, a.len, &ta, &err), &err);
        ASSERT_EQ(dr_outcomes_merge(&dst, &ta, "again", &err), DYNRAG_ERR_FORMAT);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "again: id");
        ASSERT_EQ(dst.n_rows, n);
        ASSERT_EQ(ta.n_rows, cut);
        dr_outcomes_free(&ta);
        dr_outcomes_free(&dst);
        dr_outcomes_free(&t);
        dr_buf_free(&a);
        dr_buf_free(&b);
    }
}

TEST(outcomes_convert_mutated_inputs_never_crash)
{
    /* Random edits of a valid RouterBench CSV and RouterDC JSON (quotes,
     * commas, newlines, NUL, truncation): each conversion succeeds with a
     * loadable table or fails with an error naming the input. */
    const char *csv = "x,sample_id,prompt,eval_name,m1,m2,m1|total_cost,m2|total_cost,"
                      "m1|model_response,m2|model_response\n"
                      "0,a.1,\"['q, \"\"one\"\"\n two']\",t,1.0,0.0,0.001,0.002,\"r1\",r2\n"
                      "1,a.2,plain,t,0.0,1.0,0.001,0.002,,\"x\r\ny\"\n";
    const char *json = "[{\"question\":\"q1\",\"scores\":{\"m1\":0.5,\"m2\":0}},"
                       "{\"question\":\"q \\\"2\\\"\",\"scores\":{\"m1\":1,\"m2\":0.25}}]";
    static const char edits[] = ",\"\n\r x0{}[]:\\";
    dr_rng r;
    dr_rng_seed(&r, 77);
    size_t n_ok = 0, n_fail = 0;
    for (int iter = 0; iter < 300; iter++) {
        bool rb = iter % 2 == 0;
        const char *src = rb ? csv : json;
        size_t len = strlen(src);
        char buf[1024];
        memcpy(buf, src, len);
        int n_edits = 1 + (int)dr_rng_below(&r, 3);
        for (int e = 0; e < n_edits && len > 0; e++) {
            size_t at = (size_t)dr_rng_below(&r, len);
            switch (dr_rng_below(&r, 3)) {
            case 0: buf[at] = edits[dr_rng_below(&r, sizeof(edits) - 1)]; break;
            case 1: buf[at] = '\0' + (char)(dr_rng_below(&r, 2) ? 0 : 'z'); break;
            default: len = at; /* truncate */
            }
        }
        char path[1024], out[1024];
        snprintf(path, sizeof(path), "%s/%s", test_tmpdir(), rb ? "m.csv" : "gsm8k_test.json");
        snprintf(out, sizeof(out), "%s/m.jsonl", test_tmpdir());
        dynrag_error err = {0};
        ASSERT_OK(dr_write_file_atomic(path, buf, len, &err), &err);
        dynrag_convert_stats st;
        int rc = rb ? dynrag_convert_routerbench(path, out, &st, &err)
                    : dynrag_convert_routerdc(path, out, &st, &err);
        if (rc == DYNRAG_OK) {
            dr_outcome_table t;
            ASSERT_OK(dr_outcomes_load(out, &t, &err), &err);
            ASSERT_EQ(t.n_rows, st.rows_written);
            dr_outcomes_free(&t);
            n_ok++;
        } else {
            ASSERT_CONTAINS(dynrag_errmsg(&err), rb ? "m.csv" : "gsm8k_test.json");
            n_fail++;
        }
    }
    ASSERT_GT(n_ok, 10); /* both outcomes were exercised */
    ASSERT_GT(n_fail, 20);
}
