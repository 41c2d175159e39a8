/*
 * test_engine_invariants.c - the engine's promises checked as invariants:
 * budgets, fallbacks and whole records over many generated pipelines
 * against the OpenAI-compatible test double (random latencies, failures,
 * prices); the context over all retrieval steps; availability before
 * routing on the offline quick start.
 */
#include "test.h"
#include "test_net_util.h"

#include "core/util.h"
#include "dynrag/engine.h"
#include "dynrag/index.h"
#include "dynrag/log.h"
#include "dynrag/outcomes.h"
#include "dynrag/pipeline.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <sys/stat.h>

static const char *const corpus_jsonl =
    "{\"_id\":\"france\",\"title\":\"France\",\"text\":\"France is a country in Western Europe. "
    "The capital of France is Paris, which is also its largest city. France has a population "
    "of about 68 million people.\"}\n"
    "{\"_id\":\"eiffel\",\"title\":\"Eiffel Tower\",\"text\":\"The Eiffel Tower is a wrought-iron "
    "lattice tower on the Champ de Mars. It was designed by the engineering company of Gustave "
    "Eiffel and completed in 1889. The tower is located in France.\"}\n"
    "{\"_id\":\"sqlite\",\"title\":\"SQLite\",\"text\":\"SQLite is a C library that implements a "
    "small, fast, self-contained SQL database engine. Write-ahead logging is enabled with "
    "PRAGMA journal_mode=WAL.\"}\n"
    "{\"_id\":\"python\",\"title\":\"Python\",\"text\":\"Python is a programming language created "
    "by Guido van Rossum in the Netherlands. It was first released in 1991.\"}\n"
    "{\"_id\":\"guido\",\"title\":\"Guido van Rossum\",\"text\":\"Guido van Rossum is a Dutch "
    "programmer. He worked at Google and Dropbox and was born in Haarlem.\"}\n"
    "{\"_id\":\"netherlands\",\"title\":\"Netherlands\",\"text\":\"The Netherlands is a country "
    "in Northwestern Europe. Its capital is Amsterdam.\"}\n"
    "{\"_id\":\"haarlem\",\"title\":\"Haarlem\",\"text\":\"Haarlem is a city in the Netherlands, "
    "the capital of the province of North Holland.\"}\n"
    "{\"_id\":\"moon\",\"title\":\"Moon\",\"text\":\"The Moon is the only natural satellite of the "
    "Earth. Neil Armstrong was the first person to walk on the Moon in 1969.\"}\n"
    "{\"_id\":\"armstrong\",\"title\":\"Neil Armstrong\",\"text\":\"Neil Armstrong was an American "
    "astronaut born in Wapakoneta, Ohio. He commanded Apollo 11.\"}\n"
    "{\"_id\":\"ohio\",\"title\":\"Ohio\",\"text\":\"Ohio is a state in the Midwestern United "
    "States. Its capital is Columbus.\"}\n";

static char index_dir[4200];

static int build_index(void)
{
    char corpus[4200];
    snprintf(corpus, sizeof(corpus), "%s", test_write_file("corpus.jsonl", corpus_jsonl));
    snprintf(index_dir, sizeof(index_dir), "%s/index", test_tmpdir());
    const char *inputs[] = {corpus};
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    bo.embedder.kind = "builtin";
    bo.chunk_tokens = 60;
    bo.chunk_overlap = 10;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_index_add(index_dir, inputs, 1, &bo, NULL, &err);
    if (rc != DYNRAG_OK)
        fprintf(stderr, "index: %s\n", dynrag_errmsg(&err));
    return rc;
}

static dynrag_pipeline *load_text(const char *yaml)
{
    dynrag_pipeline *pl = NULL;
    dynrag_diags *d = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_pipeline_load_string(yaml, strlen(yaml), "gen.yaml", test_tmpdir(), &pl, &d, &err) !=
        DYNRAG_OK) {
        char *t = d ? dynrag_diags_format(d) : NULL;
        fprintf(stderr, "pipeline: %s\n%s\n%s\n", dynrag_errmsg(&err), t ? t : "", yaml);
        free(t);
    }
    dynrag_diags_free(d);
    return pl;
}

static cJSON *stage_entry(const cJSON *rec, const char *stage)
{
    const cJSON *st;
    cJSON_ArrayForEach(st, cJSON_GetObjectItem(rec, "stages"))
    {
        const cJSON *n = cJSON_GetObjectItem(st, "stage");
        if (cJSON_IsString(n) && strcmp(n->valuestring, stage) == 0)
            return (cJSON *)st;
    }
    return NULL;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : (cJSON_IsNull(v) ? INFINITY : NAN);
}

/* ---- multi-step evidence reaches the context ------------------------------ */

TEST(engine_multi_step_context_has_later_step_passages)
{
    if (build_index() != 0)
        ASSERT(0);
    char yaml[8192];
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: multi\nindex: %s\n"
             "stages:\n"
             "  retrieval_mode:\n"
             "    options:\n"
             "      - {name: multi, kind: multi, params: {k: 3, max_steps: 3}}\n"
             "  index:\n"
             "    options:\n"
             "      - {name: bm25, kind: bm25}\n"
             "  context:\n"
             "    options:\n"
             "      - {name: top3, kind: topk, params: {k: 3}}\n"
             "  generator:\n"
             "    options:\n"
             "      - {name: extractive, kind: extractive, params: {threshold: 0.1}}\n",
             index_dir);
    dynrag_pipeline *p = load_text(yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    eo.no_log = true;
    ASSERT_OK(dynrag_engine_open(p, &eo, &e, &err), &err);
    static const char *const qs[] = {
        "What is the capital of the country where the Eiffel Tower is located?",
        "In which city was the creator of Python born?",
        "What is the capital of the state where Neil Armstrong was born?",
        "Which country is Haarlem in, and what is its capital?",
        "Who walked on the Moon first and where was he born?",
    };
    int multi_step_queries = 0, later_in_context = 0;
    for (size_t qi = 0; qi < DR_ARRAY_LEN(qs); qi++) {
        dynrag_result *r = NULL;
        ASSERT_OK(dynrag_engine_query(e, qs[qi], NULL, &r, &err), &err);
        cJSON *rec = cJSON_Parse(dynrag_result_json(r));
        ASSERT(rec != NULL);
        /* Invariant: every step whose best hit was new (top_new) has a
         * passage in the context (k = 3 >= the number of steps). */
        const cJSON *step;
        int n_steps = 0;
        cJSON_ArrayForEach(step, cJSON_GetObjectItem(rec, "steps"))
        {
            n_steps++;
            if (!cJSON_IsTrue(cJSON_GetObjectItem(step, "top_new")))
                continue;
            int sn = (int)num(step, "step");
            bool found = false;
            const cJSON *c;
            cJSON_ArrayForEach(c, cJSON_GetObjectItem(rec, "context")) found =
                found || (int)num(c, "step") == sn;
            if (!found)
                fprintf(stderr, "query %zu: step %d's best hit was new but is not in the context\n",
                        qi, sn);
            ASSERT(found);
        }
        multi_step_queries += n_steps >= 2;
        const cJSON *c;
        bool later = false;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(rec, "context")) later = later || num(c, "step") > 1;
        later_in_context += later;
        ASSERT_LE(cJSON_GetArraySize(cJSON_GetObjectItem(rec, "context")), 3);
        cJSON_Delete(rec);
        dynrag_result_free(r);
    }
    /* The property is about later steps: most of these bridge questions take
     * more than one step. A later step's passage enters the context when the
     * step's best hit is new (reserved, checked above for every step) or when
     * it ranks as high in its step as a question passage does in step 1; in
     * this corpus only the Python question's bridge (Guido van Rossum) is
     * found by a later step alone, the other bridges are in step 1's hits. */
    ASSERT_GE(multi_step_queries, 3);
    ASSERT_GE(later_in_context, 1);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
}

/* ---- adaptive retrieval: steps only where step 1 does not suffice -------- */

/* An engine over the test index whose retrieval_mode is the one option `opt`
 * (a YAML flow mapping), with the pipeline budget `budget` ("" for none). */
static dynrag_engine *one_mode_engine(const char *opt, const char *budget,
                                      dynrag_pipeline **pl)
{
    char yaml[8192];
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: adaptive\nindex: %s\n%s"
             "stages:\n"
             "  retrieval_mode:\n    options:\n      - %s\n"
             "  index:\n    options:\n      - {name: bm25, kind: bm25}\n"
             "  context:\n    options:\n      - {name: top4, kind: topk, params: {k: 4}}\n"
             "  generator:\n    options:\n      - {name: ex, kind: extractive}\n",
             index_dir, budget, opt);
    *pl = load_text(yaml);
    if (*pl == NULL)
        return NULL;
    dynrag_engine *e = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    eo.no_log = true;
    if (dynrag_engine_open(*pl, &eo, &e, &err) != DYNRAG_OK) {
        fprintf(stderr, "engine: %s\n", dynrag_errmsg(&err));
        dynrag_pipeline_free(*pl);
        *pl = NULL;
    }
    return e;
}

/* The record of question q on engine e (caller deletes), NULL on failure. */
static cJSON *record_of(dynrag_engine *e, const char *q)
{
    dynrag_result *r = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_engine_query(e, q, NULL, &r, &err) != DYNRAG_OK) {
        fprintf(stderr, "query '%s': %s\n", q, dynrag_errmsg(&err));
        return NULL;
    }
    cJSON *rec = cJSON_Parse(dynrag_result_json(r));
    dynrag_result_free(r);
    return rec;
}

TEST(engine_adaptive_retrieval_invariants)
{
    if (build_index() != 0)
        ASSERT(0);
    /* Questions generated from the corpus's words: bridge-like, one-hop and
     * off-corpus ones. */
    static const char *const heads[] = {"What is the capital of", "Who was born in",
                                        "Where is", "Which country has", "When was"};
    static const char *const ents[] = {
        "the country where the Eiffel Tower is located", "the creator of Python",
        "the state where Neil Armstrong was born", "Haarlem", "the Moon", "SQLite",
        "the Netherlands", "zorb land", "Ohio and France"};
    dr_rng rng;
    dr_rng_seed(&rng, 11);
    int cases = 0, continued = 0, stopped = 0;
    for (int round = 0; round < 12; round++) {
        int k = 1 + (int)dr_rng_below(&rng, 4), max_steps = 1 + (int)dr_rng_below(&rng, 4);
        double min_cov = (double)dr_rng_below(&rng, 11) / 10.0;
        bool bridge = dr_rng_below(&rng, 2) == 1;
        char mo[256], ao[256];
        snprintf(mo, sizeof(mo), "{name: m, kind: multi, params: {k: %d, max_steps: %d}}", k,
                 max_steps);
        snprintf(ao, sizeof(ao),
                 "{name: a, kind: adaptive, params: {k: %d, max_steps: %d, min_coverage: %g, "
                 "follow_bridge: %s}}",
                 k, max_steps, min_cov, bridge ? "true" : "false");
        dynrag_pipeline *pm = NULL, *pa = NULL;
        dynrag_engine *em = one_mode_engine(mo, "", &pm);
        dynrag_engine *ea = one_mode_engine(ao, "", &pa);
        ASSERT(em != NULL && ea != NULL);
        for (int qi = 0; qi < 6; qi++) {
            char q[256];
            snprintf(q, sizeof(q), "%s %s?", heads[dr_rng_below(&rng, DR_ARRAY_LEN(heads))],
                     ents[dr_rng_below(&rng, DR_ARRAY_LEN(ents))]);
            cJSON *rm = record_of(em, q), *ra = record_of(ea, q);
            ASSERT(rm != NULL && ra != NULL);
            const cJSON *sm = cJSON_GetObjectItem(rm, "steps");
            const cJSON *sa = cJSON_GetObjectItem(ra, "steps");
            int nm = cJSON_GetArraySize(sm), na = cJSON_GetArraySize(sa);
            /* Never more steps than multi-step on the same query; step 1 is
             * the question and runs once; steps are numbered 1..n. */
            ASSERT(na >= 1);
            ASSERT_LE(na, nm);
            ASSERT_LE(na, max_steps);
            for (int i = 0; i < na; i++) {
                const cJSON *st = cJSON_GetArrayItem(sa, i);
                ASSERT_EQ((int)num(st, "step"), i + 1);
                const char *sq = cJSON_GetObjectItem(st, "query")->valuestring;
                ASSERT((i == 0) == (strcmp(sq, q) == 0));
            }
            /* The decision follows the logged features. */
            const cJSON *suf = cJSON_GetObjectItem(cJSON_GetArrayItem(sa, 0), "sufficiency");
            ASSERT(cJSON_IsObject(suf));
            double cov = num(suf, "coverage");
            ASSERT(cov >= 0 && cov <= 1);
            bool sufficient = cJSON_IsTrue(cJSON_GetObjectItem(suf, "sufficient"));
            /* With the index's titles, only a bridge linked to an indexed
             * document counts (bridge_linked null: no titles to link to). */
            const cJSON *linked = cJSON_GetObjectItem(suf, "bridge_linked");
            ASSERT(cJSON_IsBool(linked) || cJSON_IsNull(linked));
            bool pending = cJSON_IsTrue(cJSON_GetObjectItem(suf, "bridge_in_hand")) == false &&
                           cJSON_IsString(cJSON_GetObjectItem(suf, "bridge")) &&
                           !cJSON_IsFalse(linked);
            bool found = num(cJSON_GetArrayItem(sa, 0), "hits") > 0;
            ASSERT_EQ(sufficient, !found || (cov >= min_cov && !(bridge && pending)));
            if (sufficient) {
                ASSERT_EQ(na, 1);
                stopped++;
            } else {
                /* Not sufficient: exactly multi-step's steps (same queries),
                 * step 1 not paid twice. */
                ASSERT_EQ(na, nm);
                for (int i = 0; i < na; i++)
                    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(sa, i), "query")->valuestring,
                                  cJSON_GetObjectItem(cJSON_GetArrayItem(sm, i), "query")->valuestring);
                continued += na > 1;
            }
            ASSERT_EQ((int)num(cJSON_GetObjectItem(ra, "totals"), "retrieval_steps"), na);
            cases++;
            cJSON_Delete(rm);
            cJSON_Delete(ra);
        }
        dynrag_engine_close(em);
        dynrag_engine_close(ea);
        dynrag_pipeline_free(pm);
        dynrag_pipeline_free(pa);
    }
    ASSERT_EQ(cases, 72);
    /* Both branches were exercised. */
    ASSERT_GE(stopped, 5);
    ASSERT_GE(continued, 5);

    /* A used-up latency budget stops an insufficient query (no passage has
     * "zorb": coverage < 1) after step 1 and records the cut. */
    dynrag_pipeline *pb = NULL;
    dynrag_engine *eb = one_mode_engine(
        "{name: a, kind: adaptive, params: {k: 2, max_steps: 4, min_coverage: 1}}",
        "budget: {latency_ms: 0.000001}\n", &pb);
    ASSERT(eb != NULL);
    cJSON *rb = record_of(eb, "Which zorb country is the Eiffel Tower located in?");
    ASSERT(rb != NULL);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(rb, "steps")), 1);
    const cJSON *suf = cJSON_GetObjectItem(
        cJSON_GetArrayItem(cJSON_GetObjectItem(rb, "steps"), 0), "sufficiency");
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(suf, "sufficient")));
    bool cut = false;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(rb, "cuts"))
    {
        const cJSON *a = cJSON_GetObjectItem(c, "action");
        cut = cut || (cJSON_IsString(a) && strcmp(a->valuestring, "later retrieval steps") == 0);
    }
    ASSERT(cut);
    cJSON_Delete(rb);
    dynrag_engine_close(eb);
    dynrag_pipeline_free(pb);
}

/* ---- the offline quick start always retrieves --------------------------- */

TEST(engine_quickstart_offline_answers_sqlite_howtos)
{
    /* The quick start indexes Debian's sqlite3-doc HTML; three of its pages
     * hold the answers (indexing all 30 MB would be too slow for a test). */
    static const char *const pages[] = {"wal.html", "pragma.html", "lang_createindex.html"};
    const char *doc_dir = "/usr/share/doc/sqlite3";
    char docs[4200], idx[4200], cmd[20000], src[4400], pipeline[4200];
    snprintf(docs, sizeof(docs), "%s/docs", test_tmpdir());
    snprintf(idx, sizeof(idx), "%s/idx", test_tmpdir());
    snprintf(pipeline, sizeof(pipeline), "%s/pipelines/adaptive-rag.yaml", test_source_dir());
    ASSERT_EQ(mkdir(docs, 0755), 0);
    for (size_t i = 0; i < DR_ARRAY_LEN(pages); i++) {
        snprintf(src, sizeof(src), "%s/%s", doc_dir, pages[i]);
        struct stat sb;
        if (stat(src, &sb) != 0)
            SKIP("sqlite3-doc is not installed (scripts/setup.sh installs it)");
        snprintf(cmd, sizeof(cmd), "cp '%s' '%s/'", src, docs);
        ASSERT_EQ(test_run(cmd, NULL), 0);
    }
    /* Offline: no LLM endpoint. */
    unsetenv("DYNRAG_LLM_BASE_URL");
    unsetenv("DYNRAG_LLM_MODEL");
    snprintf(cmd, sizeof(cmd), "'%s' index --pipeline '%s' --index '%s' '%s' 2>&1", test_cli_path(),
             pipeline, idx, docs);
    char *out = NULL;
    int rc = test_run(cmd, &out);
    if (rc != 0)
        fprintf(stderr, "%s\n", out ? out : "");
    free(out);
    ASSERT_EQ(rc, 0);
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_pipeline_load(pipeline, &p, &d, &err), &err);
    dynrag_diags_free(d);
    dynrag_engine *e = NULL;
    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    eo.index_dir = idx;
    eo.no_log = true;
    ASSERT_OK(dynrag_engine_open(p, &eo, &e, &err), &err);
    static const char *const qs[][2] = {
        {"How do I enable WAL mode?", "journal_mode=WAL"},
        {"What is the default page size?", "4096"},
        {"How do I create an index?", "CREATE INDEX"},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(qs); i++) {
        dynrag_result *r = NULL;
        ASSERT_OK(dynrag_engine_query(e, qs[i][0], NULL, &r, &err), &err);
        ASSERT(!dynrag_result_unanswerable(r));
        ASSERT_NOT_CONTAINS(dynrag_result_answer(r), "unanswerable");
        ASSERT_CONTAINS(dynrag_result_answer(r), qs[i][1]);
        cJSON *rec = cJSON_Parse(dynrag_result_json(r));
        cJSON *rm = stage_entry(rec, "retrieval_mode");
        ASSERT_STR_EQ(cJSON_GetObjectItem(rm, "choice")->valuestring, "single");
        cJSON *un = cJSON_GetObjectItem(rm, "unavailable");
        ASSERT(cJSON_IsString(cJSON_GetObjectItem(un, "none")));
        ASSERT_GE(dynrag_result_totals(r)->retrieval_steps, 1);
        cJSON_Delete(rec);
        dynrag_result_free(r);
    }
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
}

/* ---- the property test -------------------------------------------------- */

typedef struct gen {
    dr_rng rng;
    char buf[16384];
    size_t len;
} gen;

static void put(gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(gen *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g->buf + g->len, sizeof(g->buf) - g->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        g->len = DR_MIN(g->len + (size_t)n, sizeof(g->buf) - 1);
}

static int pick(gen *g, int n)
{
    return (int)(dr_rng_next(&g->rng) % (uint64_t)n);
}

static double pick_of(gen *g, const double *v, int n)
{
    return v[pick(g, n)];
}

/* What the generator decided about a pipeline, for the checks. */
typedef struct gen_info {
    bool gen_fallback_extractive; /* the generator stage falls back to extractive */
    bool has_none;                /* retrieval_mode offers none */
} gen_info;

/* Writes a random pipeline: random stages, routers, costs and budget, its
 * LLM generators on the test double. */
static void gen_pipeline(gen *g, const char *url, gen_info *gi)
{
    static const double usd_b[] = {1e-7, 1e-5, 2e-4, 0.01, 1};
    static const double ms_b[] = {1, 15, 50, 200, 5000};
    static const double wh_b[] = {0.0005, 0.01, 0.5, 100};
    static const double price[] = {0, 0.0005, 0.01, 0.5, 5};
    static const double lat[] = {0, 5, 50, 300, 2000};
    static const double wh[] = {0, 0.001, 0.01, 0.2};
    memset(gi, 0, sizeof(*gi));
    g->len = 0;
    put(g, "version: 1\nname: gen\nindex: %s\n", index_dir);
    put(g, "budget: {");
    const char *sep = "";
    if (pick(g, 3)) {
        put(g, "usd: %g", pick_of(g, usd_b, 5));
        sep = ", ";
    }
    if (pick(g, 3)) {
        put(g, "%slatency_ms: %g", sep, pick_of(g, ms_b, 5));
        sep = ", ";
    }
    if (pick(g, 3))
        put(g, "%senergy_wh: %g", sep, pick_of(g, wh_b, 4));
    put(g, "}\n");
    put(g, "endpoints:\n  llm: {base_url: '%s', model: m, max_retries: %d, timeout_s: 2}\n", url,
        pick(g, 2));
    put(g, "stages:\n");
    /* retrieval_mode */
    static const char *const rm_kinds[] = {"none", "single", "multi", "adaptive"};
    int n_rm = 1 + pick(g, 4), first = pick(g, 4);
    put(g, "  retrieval_mode:\n    options:\n");
    for (int i = 0; i < n_rm; i++) {
        const char *k = rm_kinds[(first + i) % 4];
        gi->has_none |= strcmp(k, "none") == 0;
        put(g,
            "      - {name: %s, kind: %s, params: {%s}, quality: %.2f, cost: {latency_ms: %g, "
            "energy_wh: %g}}\n",
            k, k,
            strcmp(k, "none") == 0       ? ""
            : strcmp(k, "multi") == 0    ? "k: 3, max_steps: 3"
            : strcmp(k, "adaptive") == 0 ? "k: 3, max_steps: 3, min_coverage: 1"
                                         : "k: 4",
            0.3 + 0.2 * i, pick_of(g, lat, 4), pick_of(g, wh, 4));
    }
    static const char *const routers[] = {"fixed", "cost_q", "cost_c", "rules"};
    const char *rt = routers[pick(g, 4)];
    if (strcmp(rt, "cost_q") == 0)
        put(g, "    router: {type: cost, params: {objective: max_quality}}\n");
    else if (strcmp(rt, "cost_c") == 0)
        put(g, "    router: {type: cost, params: {objective: min_cost, quality_floor: 0.4}}\n");
    else if (strcmp(rt, "rules") == 0)
        put(g,
            "    router: {type: rules, params: {rules: [{when: {min_words: 9}, option: %s}], "
            "default: %s}}\n",
            rm_kinds[(first + n_rm - 1) % 4], rm_kinds[first]);
    else
        put(g, "    router: {type: fixed, params: {option: %s}}\n",
            rm_kinds[(first + pick(g, n_rm)) % 4]);
    if (pick(g, 2))
        put(g, "    fallback: %s\n", rm_kinds[(first + pick(g, n_rm)) % 4]);
    /* index */
    static const char *const ix_kinds[] = {"bm25", "dense", "hybrid"};
    int n_ix = 1 + pick(g, 3);
    put(g, "  index:\n    options:\n");
    for (int i = 0; i < n_ix; i++)
        put(g,
            "      - {name: %s, kind: %s, quality: %.2f, cost: {latency_ms: %g, energy_wh: %g}}\n",
            ix_kinds[i], ix_kinds[i], 0.5 + 0.1 * i, pick_of(g, lat, 3), pick_of(g, wh, 4));
    if (pick(g, 2))
        put(g, "    router: {type: cost, params: {objective: %s}}\n",
            pick(g, 2) ? "max_quality" : "min_cost");
    if (n_ix > 1 && pick(g, 2))
        put(g, "    fallback: bm25\n");
    /* context */
    put(g, "  context:\n    options:\n      - {name: top%d, kind: topk, params: {k: %d}}\n",
        2 + pick(g, 4), 3);
    /* generator: extractive and one or two LLM options at random prices */
    int n_llm = 1 + pick(g, 2);
    bool ext_first = pick(g, 2);
    put(g, "  generator:\n    options:\n");
    if (ext_first)
        put(g, "      - {name: ext, kind: extractive, quality: 0.4, cost: {energy_wh: %g}}\n",
            pick_of(g, wh, 3));
    for (int i = 0; i < n_llm; i++)
        put(g,
            "      - {name: llm%d, kind: openai, endpoint: llm, quality: %.2f, params: "
            "{max_tokens: %d}, cost: {usd_per_1k_input: %g, usd_per_1k_output: %g, "
            "latency_ms: %g, energy_wh: %g}}\n",
            i, 0.6 + 0.2 * i, 16 + 32 * pick(g, 4), pick_of(g, price, 5), pick_of(g, price, 5),
            pick_of(g, lat, 5), pick_of(g, wh, 4));
    if (!ext_first)
        put(g, "      - {name: ext, kind: extractive, quality: 0.4, cost: {energy_wh: %g}}\n",
            pick_of(g, wh, 3));
    int gr = pick(g, 4);
    if (gr == 0)
        put(g, "    router: {type: cascade, params: {judge: self_route, threshold: 0.5}}\n");
    else if (gr == 1)
        put(g, "    router: {type: cost, params: {objective: %s}}\n",
            pick(g, 2) ? "max_quality" : "min_cost");
    else if (gr == 2)
        put(g, "    router: {type: fixed, params: {option: llm0}}\n");
    int fb = pick(g, 3);
    if (fb == 0) {
        put(g, "    fallback: ext\n");
        gi->gen_fallback_extractive = true;
    } else if (fb == 1) {
        put(g, "    fallback: llm0\n");
    }
}

/* A random script of test-double behaviours for the next requests. */
static void gen_script(gen *g, char *out, size_t size)
{
    static const char *const modes[] = {"ok",         "ok",         "ok",  "500",     "sleep:0.005",
                                        "sleep:0.02", "sleep:0.06", "503", "nousage", "400"};
    size_t o = (size_t)snprintf(out, size, "{\"script\": [");
    int n = pick(g, 6);
    for (int i = 0; i < n && o + 32 < size; i++)
        o += (size_t)snprintf(out + o, size - o, "%s\"%s\"", i ? ", " : "",
                              modes[pick(g, (int)DR_ARRAY_LEN(modes))]);
    snprintf(out + o, size - o, "]}");
}

/* The last line of a file (static buffer), "" when none. */
static const char *last_line(const char *path)
{
    static char line[1 << 17];
    line[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return line;
    char *buf = malloc(sizeof(line));
    while (buf != NULL && fgets(buf, (int)sizeof(line), f) != NULL)
        if (buf[0] != '\n')
            memcpy(line, buf, strlen(buf) + 1);
    free(buf);
    fclose(f);
    return line;
}

TEST(engine_budget_fallback_record_invariants_generated)
{
    if (build_index() != 0)
        ASSERT(0);
    test_double d;
    if (test_double_start(&d) != 0)
        SKIP("python3 test double unavailable");
    char log[4200];
    snprintf(log, sizeof(log), "%s/route.jsonl", test_tmpdir());
    static const char *const questions[] = {
        "What is the capital of France?",
        "What is the capital of the country where the Eiffel Tower is located?",
        "Who created Python and where was he born?",
        "hello",
        "Which state was Neil Armstrong born in and what is its capital city?",
    };
    static const double q_usd[] = {NAN, 0, 1e-6, 1e-3};
    static const double q_ms[] = {NAN, 0, 10, 40};
    static const double q_wh[] = {NAN, 0, 0.005};
    const double slack_ms = 250; /* process scheduling, the double's sleeps, ASan */
    gen g;
    dr_rng_seed(&g.rng, 20261204);
    int n_cases = 0, n_failed = 0, n_over = 0, n_cuts = 0, n_fallbacks = 0;
    for (int pc = 0; pc < 50; pc++) {
        gen_info gi;
        gen_pipeline(&g, d.base_url, &gi);
        dynrag_pipeline *p = load_text(g.buf);
        if (p == NULL)
            test_double_stop(&d);
        ASSERT(p != NULL);
        dynrag_engine *e = NULL;
        dynrag_error err;
        dynrag_error_clear(&err);
        dynrag_engine_options eo;
        dynrag_engine_options_init(&eo);
        eo.log_path = log;
        int rc = dynrag_engine_open(p, &eo, &e, &err);
        if (rc != DYNRAG_OK)
            test_double_stop(&d);
        ASSERT_OK(rc, &err);
        for (int qc = 0; qc < 5; qc++, n_cases++) {
            char script[512];
            gen_script(&g, script, sizeof(script));
            test_double_script(&d, script);
            dynrag_budget qb = {pick_of(&g, q_usd, 4), pick_of(&g, q_ms, 4), pick_of(&g, q_wh, 3)};
            dynrag_query_options qo;
            dynrag_query_options_init(&qo);
            qo.budget = pick(&g, 2) ? &qb : NULL;
            const char *q = questions[pick(&g, (int)DR_ARRAY_LEN(questions))];
            dynrag_result *r = NULL;
            int64_t t0 = dr_now_us();
            rc = dynrag_engine_query(e, q, &qo, &r, &err);
            double wall_ms = (double)(dr_now_us() - t0) / 1000.0;
            /* The record is whole JSON, in the result and in the log. */
            cJSON *rec = cJSON_Parse(last_line(log));
            if (rec == NULL)
                fprintf(stderr, "case %d: log line is not JSON\n", n_cases);
            ASSERT(rec != NULL);
            if (rc == DYNRAG_OK) {
                cJSON *rj = cJSON_Parse(dynrag_result_json(r));
                ASSERT(rj != NULL);
                cJSON_Delete(rj);
            } else {
                n_failed++;
                if (getenv("DYNRAG_TEST_VERBOSE"))
                    fprintf(stderr, "case %d failed: %s\n", n_cases, dynrag_errmsg(&err));
                ASSERT(cJSON_IsString(cJSON_GetObjectItem(rec, "error")));
                /* No query fails while a fallback could run: with an
                 * extractive generator fallback and passages retrieved, the
                 * generator stage cannot be what failed. */
                cJSON *rm = stage_entry(rec, "retrieval_mode");
                const cJSON *ch = cJSON_GetObjectItem(rm, "choice");
                bool retrieved = cJSON_IsString(ch) && strcmp(ch->valuestring, "none") != 0;
                if (gi.gen_fallback_extractive && retrieved) {
                    fprintf(stderr,
                            "case %d: failed although the extractive fallback could "
                            "run: %s\n%s\n",
                            n_cases, dynrag_errmsg(&err), g.buf);
                    test_double_stop(&d);
                    ASSERT(0);
                }
            }
            const cJSON *tot = cJSON_GetObjectItem(rec, "totals");
            const cJSON *bud = cJSON_GetObjectItem(rec, "budget");
            ASSERT(tot != NULL && bud != NULL);
            /* The budget the query ran under is the tighter of the two. */
            if (qo.budget != NULL && !isnan(qb.usd))
                ASSERT(num(bud, "usd") <= qb.usd + 1e-15);
            /* Totals are the sum of what the stages charged. */
            double s_usd = 0, s_wh = 0;
            const cJSON *st;
            cJSON_ArrayForEach(st, cJSON_GetObjectItem(rec, "stages"))
            {
                const cJSON *c = cJSON_GetObjectItem(st, "cost");
                s_usd += num(c, "usd");
                s_wh += num(c, "energy_wh");
                /* The cost router and the engine price alike: the engine
                 * never overrides a cost router's pick as over budget. */
                const cJSON *router = cJSON_GetObjectItem(st, "router");
                const cJSON *reason = cJSON_GetObjectItem(st, "reason");
                if (cJSON_IsString(router) && strcmp(router->valuestring, "cost") == 0 &&
                    cJSON_IsString(reason) &&
                    strstr(reason->valuestring, "does not fit the remaining budget, took")) {
                    fprintf(stderr, "case %d: engine overrode the cost router: %s\n", n_cases,
                            reason->valuestring);
                    test_double_stop(&d);
                    ASSERT(0);
                }
            }
            ASSERT_NEAR(num(tot, "usd"), s_usd, 1e-12);
            ASSERT_NEAR(num(tot, "energy_wh"), s_wh, 1e-12);
            /* Spent within the budget, or over_budget with its reason. */
            bool over = cJSON_IsTrue(cJSON_GetObjectItem(tot, "over_budget"));
            if (num(tot, "usd") > num(bud, "usd") + 1e-12 ||
                num(tot, "energy_wh") > num(bud, "energy_wh") + 1e-12) {
                if (!over)
                    fprintf(stderr, "case %d: over budget but not flagged\n%s\n", n_cases,
                            cJSON_PrintUnformatted(rec));
                ASSERT(over);
            }
            if (over) {
                n_over++;
                const cJSON *why = cJSON_GetObjectItem(tot, "over_budget_reason");
                ASSERT(cJSON_IsString(why) && why->valuestring[0] != '\0');
            }
            /* Wall time within the latency budget plus a small slack. */
            double lim = num(bud, "latency_ms");
            if (wall_ms > lim + slack_ms) {
                fprintf(stderr, "case %d: %.1f ms under a %.1f ms budget\n%s\n", n_cases, wall_ms,
                        lim, cJSON_PrintUnformatted(rec));
                test_double_stop(&d);
                ASSERT(0);
            }
            n_cuts += cJSON_GetArraySize(cJSON_GetObjectItem(rec, "cuts")) > 0;
            n_fallbacks += cJSON_GetArraySize(cJSON_GetObjectItem(rec, "fallbacks")) > 0;
            cJSON_Delete(rec);
            dynrag_result_free(r);
        }
        dynrag_engine_close(e);
        dynrag_pipeline_free(p);
    }
    test_double_stop(&d);
    fprintf(stderr, "%d cases: %d failed, %d over budget, %d with cuts, %d with fallbacks\n",
            n_cases, n_failed, n_over, n_cuts, n_fallbacks);
    /* The generator reaches the interesting paths. */
    ASSERT_GT(n_cuts, 0);
    ASSERT_GT(n_fallbacks, 0);
    ASSERT_GT(n_over, 0);
    ASSERT_LT(n_failed, n_cases);
}

/* ---- several embedders per index ---------------------------------------- */

TEST(engine_embedder_routing_uses_each_embedders_index)
{
    char corpus[4200], idx[4200], yaml_path[4200], cmd[16000], yaml[8192];
    snprintf(corpus, sizeof(corpus), "%s", test_write_file("corpus.jsonl", corpus_jsonl));
    snprintf(idx, sizeof(idx), "%s/idx", test_tmpdir());
    /* Two embedders with different identities; the rules route long queries
     * to the second one. */
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: emb\nindex: %s\n"
             "stages:\n"
             "  embedder:\n"
             "    options:\n"
             "      - {name: small, kind: builtin, params: {dim: 64}}\n"
             "      - {name: large, kind: builtin, params: {dim: 128}}\n"
             "    router: {type: rules, params: {rules: [{when: {min_words: 6}, option: large}], "
             "default: small}}\n"
             "  index:\n"
             "    options:\n"
             "      - {name: dense, kind: dense}\n"
             "  generator:\n"
             "    options:\n"
             "      - {name: ext, kind: extractive, params: {threshold: 0.1}}\n",
             idx);
    snprintf(yaml_path, sizeof(yaml_path), "%s", test_write_file("emb.yaml", yaml));
    /* First only the main index (the first embedder): `large` has no index
     * of its own, so it is unavailable and the record says why. */
    snprintf(cmd, sizeof(cmd), "'%s' index --index '%s' --dim 64 '%s' 2>&1", test_cli_path(), idx,
             corpus);
    ASSERT_EQ(test_run(cmd, NULL), 0);
    dynrag_pipeline *p = load_text(yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    eo.no_log = true;
    ASSERT_OK(dynrag_engine_open(p, &eo, &e, &err), &err);
    const char *long_q = "Who was the first person to walk on the Moon?";
    dynrag_result *r = NULL;
    ASSERT_OK(dynrag_engine_query(e, long_q, NULL, &r, &err), &err);
    cJSON *rec = cJSON_Parse(dynrag_result_json(r));
    cJSON *es = stage_entry(rec, "embedder");
    ASSERT_STR_EQ(cJSON_GetObjectItem(es, "choice")->valuestring, "small");
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(cJSON_GetObjectItem(es, "unavailable"), "large")));
    cJSON_Delete(rec);
    dynrag_result_free(r);
    dynrag_engine_close(e);
    /* `dynrag index --pipeline` builds one dense index per embedder option:
     * now the router's choice runs, with its own index (identity checked). */
    snprintf(cmd, sizeof(cmd), "'%s' index --pipeline '%s' '%s' 2>&1", test_cli_path(), yaml_path,
             corpus);
    char *out = NULL;
    int rc = test_run(cmd, &out);
    if (rc != 0)
        fprintf(stderr, "%s\n", out ? out : "");
    ASSERT_EQ(rc, 0);
    ASSERT_CONTAINS(out, "embedder option 'large'");
    free(out);
    ASSERT_OK(dynrag_engine_open(p, &eo, &e, &err), &err);
    static const char *const qs[][2] = {
        {"Who was the first person to walk on the Moon?", "large"},
        {"capital of France", "small"},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(qs); i++) {
        ASSERT_OK(dynrag_engine_query(e, qs[i][0], NULL, &r, &err), &err);
        rec = cJSON_Parse(dynrag_result_json(r));
        es = stage_entry(rec, "embedder");
        ASSERT_STR_EQ(cJSON_GetObjectItem(es, "choice")->valuestring, qs[i][1]);
        ASSERT(cJSON_GetObjectItem(es, "unavailable") == NULL);
        ASSERT_GT(dynrag_result_n_retrieved(r), 0);
        cJSON_Delete(rec);
        dynrag_result_free(r);
    }
    /* Each option's index answers with its own identity. */
    ASSERT_EQ(dynrag_index_dim(dynrag_engine_index(e, "small")), 64);
    ASSERT_EQ(dynrag_index_dim(dynrag_engine_index(e, "large")), 128);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
}

/* ---- a re-index between the search and the context ---------------------- */

typedef struct reindex_hook {
    bool armed;
    int deletions;
    int rc;
} reindex_hook;

/* The log callback: right after a query's first retrieval step (the
 * engine's debug line), once, a writer deletes every document of the
 * corpus, as a live re-index would between the search and the context. */
static void reindex_on_step(void *user, dynrag_log_level level, const char *module,
                            const char *msg)
{
    (void)level;
    (void)module;
    reindex_hook *h = user;
    if (!h->armed || strncmp(msg, "retrieval step 1:", 17) != 0)
        return;
    h->armed = false;
    static const char *const ids[] = {"france", "eiffel", "sqlite", "python", "guido",
                                      "netherlands", "haarlem", "moon", "armstrong", "ohio"};
    size_t missing = 0;
    dynrag_error err;
    dynrag_error_clear(&err);
    h->rc = dynrag_index_delete(index_dir, ids, DR_ARRAY_LEN(ids), &missing, &err);
    h->deletions++;
}

/* The `documents` context kind reads whole documents after the search: when
 * a writer removed them in between, the query still answers, from the
 * passages it retrieved (each document's retrieved passage stands for it). */
TEST(engine_documents_context_survives_reindex_mid_query)
{
    if (build_index() != 0)
        ASSERT(0);
    char yaml[8192];
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: docs\nindex: %s\n"
             "stages:\n"
             "  retrieval_mode:\n"
             "    options:\n"
             "      - {name: single, kind: single, params: {k: 4}}\n"
             "  index:\n"
             "    options:\n"
             "      - {name: bm25, kind: bm25}\n"
             "  context:\n"
             "    options:\n"
             "      - {name: docs, kind: documents, params: {max_tokens: 2000}}\n"
             "  generator:\n"
             "    options:\n"
             "      - {name: extractive, kind: extractive, params: {threshold: 0.1}}\n",
             index_dir);
    dynrag_pipeline *p = load_text(yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    eo.no_log = true;
    ASSERT_OK(dynrag_engine_open(p, &eo, &e, &err), &err);
    /* Before: the context holds the whole document. */
    dynrag_result *r = NULL;
    ASSERT_OK(dynrag_engine_query(e, "Where was Guido van Rossum born?", NULL, &r, &err), &err);
    ASSERT(dynrag_result_n_context(r) >= 1);
    ASSERT_CONTAINS(dynrag_result_context(r), "Haarlem");
    dynrag_result_free(r);
    reindex_hook h = {true, 0, 0};
    dynrag_log_set(reindex_on_step, &h, DYNRAG_LOG_DEBUG);
    int rc = dynrag_engine_query(e, "Where was Guido van Rossum born?", NULL, &r, &err);
    dynrag_log_set(NULL, NULL, DYNRAG_LOG_WARN);
    ASSERT_EQ(h.deletions, 1);
    ASSERT_EQ(h.rc, DYNRAG_OK);
    ASSERT_OK(rc, &err);
    /* The retrieved passages stand for the documents that left. */
    ASSERT(dynrag_result_n_context(r) >= 1);
    ASSERT_CONTAINS(dynrag_result_context(r), "Guido");
    dynrag_result_free(r);
    /* After: the index is empty; the query answers that it cannot. */
    ASSERT_OK(dynrag_engine_query(e, "Where was Guido van Rossum born?", NULL, &r, &err), &err);
    ASSERT_EQ(dynrag_result_n_context(r), 0);
    dynrag_result_free(r);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
}

/* ---- cascade routing in the engine ---------------------------------------- */

/* A generator cascade with a quality_model (cascade routing) over three
 * extractive options that the model rates c 0.9, a 0.6, b 0.3: the engine
 * starts with c and escalates only to an option predicted above the judged
 * confidence, best first, never calling an option twice. */
TEST(engine_routed_cascade_follows_predictions)
{
    if (build_index() != 0)
        ASSERT(0);
    char table[1024], model[1024];
    snprintf(table, sizeof table, "%s/oc.jsonl", test_tmpdir());
    snprintf(model, sizeof model, "%s/q.safetensors", test_tmpdir());
    FILE *f = fopen(table, "w");
    ASSERT(f != NULL);
    for (int i = 0; i < 60; i++)
        fprintf(f,
                "{\"id\": \"q%d\", \"query\": \"question %d on topic %d\", \"outcomes\": "
                "{\"a\": {\"quality\": 0.6}, \"b\": {\"quality\": 0.3}, \"c\": {\"quality\": 0.9}}}\n",
                i, i, i % 5);
    fclose(f);
    ASSERT_EQ(test_train_predict(table, model, 32, 1), 0);
    dynrag_error err;
    dynrag_error_clear(&err);
    char yaml[8192];
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: routed\nindex: %s\n"
             "stages:\n"
             "  retrieval_mode:\n"
             "    options:\n"
             "      - {name: single, kind: single, params: {k: 3}}\n"
             "  index:\n"
             "    options:\n"
             "      - {name: bm25, kind: bm25}\n"
             "  generator:\n"
             "    options:\n"
             "      - {name: a, kind: extractive, params: {threshold: 0.05}}\n"
             "      - {name: b, kind: extractive, params: {threshold: 0.05}}\n"
             "      - {name: c, kind: extractive, params: {threshold: 0.05}}\n"
             "    router:\n"
             "      type: cascade\n"
             "      params: {judge: logprob_margin, threshold: 1, quality_model: %s}\n",
             index_dir, model);
    dynrag_pipeline *p = load_text(yaml);
    ASSERT(p != NULL);
    dynrag_engine *e = NULL;
    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    eo.no_log = true;
    ASSERT_OK(dynrag_engine_open(p, &eo, &e, &err), &err);
    static const char *const qs[] = {
        "Where was Guido van Rossum born?", "What is the capital of France?",
        "Who walked on the Moon first?", "Which state is Ohio in?", "zzz qqq",
        "What is SQLite?"};
    int escalated = 0;
    for (size_t qi = 0; qi < DR_ARRAY_LEN(qs); qi++) {
        dynrag_result *r = NULL;
        ASSERT_OK(dynrag_engine_query(e, qs[qi], NULL, &r, &err), &err);
        cJSON *rec = cJSON_Parse(dynrag_result_json(r));
        ASSERT(rec != NULL);
        const cJSON *att = cJSON_GetObjectItem(rec, "cascade");
        int n = cJSON_GetArraySize(att);
        ASSERT(n >= 1 && n <= 3);
        ASSERT_EQ((int)dynrag_result_totals(r)->generator_calls, n);
        static const char *const order[] = {"c", "a", "b"};
        static const double predicted[] = {0.9, 0.6, 0.3};
        for (int i = 0; i < n; i++) {
            const cJSON *a = cJSON_GetArrayItem(att, i);
            ASSERT_STR_EQ(cJSON_GetObjectItem(a, "option")->valuestring, order[i]);
            double conf = num(a, "confidence");
            bool esc = cJSON_IsTrue(cJSON_GetObjectItem(a, "escalated"));
            ASSERT_EQ(esc, i + 1 < n);
            /* escalated only to an option predicted above the confidence;
             * stopped when none was (the model's predictions are within
             * 0.05 of the recorded constants) */
            if (esc)
                ASSERT(predicted[i + 1] + 0.05 > conf);
            else if (i + 1 < 3 && conf < 1)
                ASSERT(predicted[i + 1] - 0.05 < conf);
        }
        escalated += n > 1;
        cJSON_Delete(rec);
        dynrag_result_free(r);
    }
    ASSERT(escalated > 0);
    dynrag_engine_close(e);
    dynrag_pipeline_free(p);
}
