/*
 * test_params.c - option params resolved once at load into typed values
 * with explicit presence: over many generated pipelines every numeric and
 * boolean param of every kind resolves to the value the file gave (0
 * included) or else to the schema table's default; a configured BM25 `b: 0`
 * or `k1: 0` reaches the search as 0, not as the default.
 */
#include "test.h"

#include "core/util.h"
#include "dynrag/engine.h"
#include "dynrag/index.h"
#include "dynrag/pipeline.h"
#include "pipeline/internal.h"
#include "pipeline/spec.h"
#include "retrieve/bm25.h"

/* A random valid value of a numeric row: its bounds and zero (when in
 * range) often, else uniform (integers rounded). */
static double pick(dr_rng *rng, const dr_param_row *row)
{
    double lo = row->min, hi = row->max > 1e9 ? 1e9 : row->max;
    double v;
    switch (dr_rng_below(rng, 4)) {
    case 0: v = lo; break;
    case 1: v = hi; break;
    case 2: v = lo <= 0 && hi >= 0 ? 0 : lo; break;
    default: v = lo + dr_rng_uniform(rng) * (hi - lo); break;
    }
    if (row->type == DR_PT_INT)
        v = floor(v);
    return v;
}

/*
 * Invariant over 400 generated pipelines: for every option of every kind
 * and every INT/NUM/BOOL row of its kind, the resolved value is present
 * exactly when the file gave it, equals the given value (0 included), and
 * else equals the schema default; the legacy cJSON params agree.
 */
TEST(params_resolved_typed_with_presence_property)
{
    static const struct {
        const char *stage, *kind;
    } kinds[] = {{"retrieval_mode", "single"}, {"retrieval_mode", "multi"},
                 {"embedder", "builtin"},      {"index", "bm25"},
                 {"index", "dense"},           {"index", "hybrid"},
                 {"context", "topk"},          {"context", "tokens"},
                 {"context", "documents"},     {"generator", "extractive"}};
    dr_rng rng;
    dr_rng_seed(&rng, 404);
    for (int it = 0; it < 400; it++) {
        /* one stage, one to three options of random kinds of it */
        size_t first = (size_t)dr_rng_below(&rng, DR_ARRAY_LEN(kinds));
        const char *stage = kinds[first].stage;
        dr_buf y = {0};
        dr_buf_printf(&y, "version: 1\nname: t\nstages:\n  %s:\n    options:\n", stage);
        int n_opt = 1 + (int)dr_rng_below(&rng, 3);
        double given[3][16];
        bool has[3][16];
        const dr_param_row *rows[3][16];
        size_t nrows[3] = {0};
        const char *okind[3];
        for (int o = 0; o < n_opt; o++) {
            size_t k;
            do
                k = (size_t)dr_rng_below(&rng, DR_ARRAY_LEN(kinds));
            while (strcmp(kinds[k].stage, stage) != 0);
            okind[o] = kinds[k].kind;
            char owner[64];
            snprintf(owner, sizeof owner, "%s.%s", stage, okind[o]);
            dr_buf_printf(&y, "      - name: o%d\n        kind: %s\n        params: {", o,
                          okind[o]);
            bool any = false;
            for (size_t r = 0; r < dr_n_param_rows; r++) {
                const dr_param_row *row = &dr_param_rows[r];
                if (strcmp(row->owner, owner) != 0 ||
                    (row->type != DR_PT_INT && row->type != DR_PT_NUM && row->type != DR_PT_BOOL))
                    continue;
                size_t i = nrows[o]++;
                rows[o][i] = row;
                has[o][i] = dr_rng_below(&rng, 2) == 0;
                if (!has[o][i])
                    continue;
                if (row->type == DR_PT_BOOL) {
                    given[o][i] = (double)dr_rng_below(&rng, 2);
                    dr_buf_printf(&y, "%s%s: %s", any ? ", " : "", row->key,
                                  given[o][i] ? "true" : "false");
                } else {
                    given[o][i] = pick(&rng, row);
                    dr_buf_printf(&y, "%s%s: %.17g", any ? ", " : "", row->key, given[o][i]);
                }
                any = true;
            }
            dr_buf_puts(&y, "}\n");
        }
        dynrag_pipeline *p = NULL;
        dynrag_diags *d = NULL;
        dynrag_error err;
        int rc = dynrag_pipeline_load_string(y.data, y.len, "t.yaml", test_tmpdir(), &p, &d, &err);
        if (rc != DYNRAG_OK) {
            char *txt = dynrag_diags_format(d);
            test_fail_(__FILE__, __LINE__, "load failed: %s\n%s\n%s", dynrag_errmsg(&err),
                       txt ? txt : "", y.data);
            free(txt);
        }
        dynrag_diags_free(d);
        const dr_stage *st = p ? &p->stages[dr_stage_from_name(stage)] : NULL;
        for (int o = 0; st != NULL && o < n_opt; o++) {
            const dr_option *opt = &st->options[o];
            ASSERT_STR_EQ(opt->kind, okind[o]);
            for (size_t i = 0; i < nrows[o]; i++) {
                const dr_param_row *row = rows[o][i];
                const dr_param_value *v = dr_option_param(opt, row->key);
                ASSERT(v != NULL);
                ASSERT(v->set);
                if (v->present != has[o][i] || dr_opt_given(opt, row->key) != has[o][i])
                    test_fail_(__FILE__, __LINE__, "%s.%s: present %d, given %d", okind[o],
                               row->key, v->present, has[o][i]);
                double want = has[o][i]                 ? given[o][i]
                              : row->type == DR_PT_BOOL ? (strcmp(row->dflt, "true") == 0)
                                                        : strtod(row->dflt, NULL);
                double got = row->type == DR_PT_BOOL ? (double)dr_opt_bool(opt, row->key)
                                                     : dr_opt_num(opt, row->key);
                if (got != want)
                    test_fail_(__FILE__, __LINE__, "%s.%s: %.17g, want %.17g (given %d)", okind[o],
                               row->key, got, want, has[o][i]);
                if (row->type == DR_PT_INT && dr_opt_int(opt, row->key) != (int)want)
                    test_fail_(__FILE__, __LINE__, "%s.%s: int %d", okind[o], row->key,
                               dr_opt_int(opt, row->key));
                if (row->type == DR_PT_NUM && dr_param_num(opt->params, row->key, NAN) != want)
                    test_fail_(__FILE__, __LINE__, "%s.%s: params disagree", okind[o], row->key);
            }
            ASSERT(dr_option_param(opt, "no_such_key") == NULL);
            ASSERT(isnan(dr_opt_num(opt, "no_such_key")));
        }
        dynrag_pipeline_free(p);
        dr_buf_free(&y);
    }
}

/* The schema table's BM25 defaults are the search's. */
TEST(params_bm25_defaults_one_table)
{
    for (size_t r = 0; r < dr_n_param_rows; r++) {
        const dr_param_row *row = &dr_param_rows[r];
        if (strcmp(row->owner, "index.bm25") != 0)
            continue;
        if (strcmp(row->key, "k1") == 0)
            ASSERT_NEAR(strtod(row->dflt, NULL), DR_BM25_DEFAULT_K1, 0);
        if (strcmp(row->key, "b") == 0)
            ASSERT_NEAR(strtod(row->dflt, NULL), DR_BM25_DEFAULT_B, 0);
    }
}

static const char *const corpus =
    "{\"_id\":\"short\",\"title\":\"Owls\",\"text\":\"Owls hunt mice.\"}\n"
    "{\"_id\":\"long\",\"title\":\"Birds\",\"text\":\"Owls hunt mice at night. Many birds live "
    "in forests, fields and towns, and they eat seeds, insects, fish and small animals; some "
    "migrate across oceans every year while others stay in one valley all their lives, and "
    "owls hunt mice and voles and owls hunt mice again.\"}\n"
    "{\"_id\":\"other\",\"title\":\"Cats\",\"text\":\"Cats also hunt mice in barns.\"}\n";

/* Scores of a search (by doc id order of the hits) into out; returns n. */
static size_t scores(dynrag_index *idx, const dynrag_search_options *o, double *out, char ids[][32])
{
    dynrag_hits h;
    dynrag_error err;
    if (dynrag_index_search(idx, "owls hunt mice", o, &h, &err) != DYNRAG_OK)
        return 0;
    size_t n = h.n < 3 ? h.n : 3;
    for (size_t i = 0; i < n; i++) {
        out[i] = h.hits[i].score;
        snprintf(ids[i], 32, "%s", h.hits[i].doc_id);
    }
    dynrag_hits_free(&h);
    return n;
}

/*
 * `b: 0` and `k1: 0` in a pipeline reach the search as 0: the engine's
 * retrieved scores equal a direct search with b (k1) given as 0, and differ
 * from the defaults' scores.
 */
TEST(params_zero_is_a_value_end_to_end)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/idx", test_tmpdir());
    const char *in[] = {test_write_file("c.jsonl", corpus)};
    dynrag_error err;
    ASSERT_OK(dynrag_index_add(dir, in, 1, NULL, NULL, &err), &err);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    static const char *const cases[] = {"{b: 0}", "{k1: 0}", "{k1: 0, b: 0}", "{b: 0.4}"};
    for (size_t c = 0; c < DR_ARRAY_LEN(cases); c++) {
        char yaml[8400];
        snprintf(yaml, sizeof yaml,
                 "version: 1\nname: t\nindex: %s\nstages:\n  index:\n    options:\n"
                 "      - {name: lex, kind: bm25, params: %s}\n",
                 dir, cases[c]);
        dynrag_pipeline *p = NULL;
        ASSERT_OK(dynrag_pipeline_load_string(yaml, strlen(yaml), "t.yaml", test_tmpdir(), &p, NULL,
                                              &err),
                  &err);
        const dr_option *o = &p->stages[DR_STAGE_INDEX].options[0];
        dynrag_search_options so;
        dynrag_search_options_init(&so);
        so.mode = DYNRAG_SEARCH_BM25;
        so.k = 3;
        dr_option_search_options(o, &so);
        bool b0 = strstr(cases[c], "b: 0}") != NULL || strstr(cases[c], "b: 0,") != NULL;
        bool k0 = strstr(cases[c], "k1: 0") != NULL;
        ASSERT_NEAR(so.b, b0 ? 0 : 0.4, 0);
        ASSERT_NEAR(so.k1, k0 ? 0 : 0.9, 0);
        double want[3], dflt[3], got[3];
        char wid[3][32], did[3][32];
        size_t nw = scores(idx, &so, want, wid);
        dynrag_search_options def;
        dynrag_search_options_init(&def);
        def.mode = DYNRAG_SEARCH_BM25;
        def.k = 3;
        size_t nd = scores(idx, &def, dflt, did);
        ASSERT_EQ(nw, 3);
        ASSERT_EQ(nd, 3);
        bool differs = false;
        for (size_t i = 0; i < 3; i++)
            differs = differs || fabs(want[i] - dflt[i]) > 1e-9 || strcmp(wid[i], did[i]) != 0;
        ASSERT_EQ(differs, b0 || k0); /* only the defaults' own values give their scores */
        /* the engine retrieves with the same scores */
        dynrag_engine *e = NULL;
        dynrag_engine_options eo;
        dynrag_engine_options_init(&eo);
        ASSERT_OK(dynrag_engine_open(p, &eo, &e, &err), &err);
        dynrag_query_options qo;
        dynrag_query_options_init(&qo);
        qo.no_log = true;
        dynrag_result *r = NULL;
        ASSERT_OK(dynrag_engine_query(e, "owls hunt mice", &qo, &r, &err), &err);
        ASSERT(dynrag_result_n_retrieved(r) >= 3);
        for (size_t i = 0; i < 3; i++) {
            got[i] = dynrag_result_retrieved(r, i)->score;
            if (fabs(got[i] - want[i]) > 1e-9 ||
                strcmp(dynrag_result_retrieved(r, i)->doc_id, wid[i]) != 0)
                test_fail_(__FILE__, __LINE__, "%s: engine hit %zu %s %.9g, search %s %.9g",
                           cases[c], i, dynrag_result_retrieved(r, i)->doc_id, got[i], wid[i],
                           want[i]);
        }
        dynrag_result_free(r);
        dynrag_engine_close(e);
        dynrag_pipeline_free(p);
    }
    dynrag_index_close(idx);
}
