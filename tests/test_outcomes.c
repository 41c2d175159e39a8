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
