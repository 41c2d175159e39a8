/* test_router.c - per-stage routers, query features, cascade judges, normalisation. */
#include "test.h"

#include "core/text.h"
#include "core/util.h"
#include "router/bandit.h"
#include "router/cascade.h"
#include "router/cost.h"
#include "router/router.h"

#include <pthread.h>

/* ---- fixture: a stage built by hand ------------------------------------------ */

typedef struct tfix {
    dynrag_pipeline p;
    dr_stage st;
    dr_option opt[DR_MAX_OPTIONS];
    char names[DR_MAX_OPTIONS][32];
    cJSON *empty;
} tfix;

/* Parses router params JSON with every "$TMP" replaced by the test's tmpdir
 * (paths reach routers resolved by the loader). */
static cJSON *parse_params(const char *json)
{
    dr_buf b = {0};
    for (const char *s = json; *s;) {
        const char *m = strstr(s, "$TMP");
        size_t n = m != NULL ? (size_t)(m - s) : strlen(s);
        dr_buf_append(&b, s, n);
        s += n;
        if (m != NULL) {
            dr_buf_puts(&b, test_tmpdir());
            s += 4;
        }
    }
    cJSON *j = cJSON_Parse(b.data != NULL ? b.data : "");
    dr_buf_free(&b);
    return j;
}

static void set_params(tfix *t, const char *json)
{
    cJSON_Delete(t->st.router.params);
    t->st.router.params = parse_params(json);
}

/* Options from a comma-separated list of names; router params from JSON. */
static bool tfix_init(tfix *t, const char *names, const char *type, const char *params_json)
{
    memset(t, 0, sizeof *t);
    t->p.base_dir = (char *)test_tmpdir();
    t->empty = cJSON_CreateObject();
    const char *s = names;
    while (*s && t->st.n_options < DR_MAX_OPTIONS) {
        size_t n = strcspn(s, ",");
        size_t i = t->st.n_options++;
        snprintf(t->names[i], sizeof t->names[i], "%.*s", (int)n, s);
        t->opt[i].name = t->names[i];
        t->opt[i].kind = (char *)"test";
        t->opt[i].params = t->empty;
        t->opt[i].quality = NAN;
        t->opt[i].available = true;
        s += n + (s[n] == ',');
    }
    t->st.id = DR_STAGE_GENERATOR;
    t->st.declared = true;
    t->st.options = t->opt;
    t->st.fallback = -1;
    t->st.router.type = (char *)type;
    t->st.router.params = parse_params(params_json);
    return t->st.router.params != NULL;
}

static void tfix_free(tfix *t)
{
    cJSON_Delete(t->st.router.params);
    cJSON_Delete(t->empty);
}

static dr_route_ctx make_ctx(const tfix *t, const char *q, dr_query_features *f)
{
    dr_query_features_compute(q, f);
    dr_route_ctx c;
    memset(&c, 0, sizeof c);
    c.query = q;
    c.features = f;
    c.stage = &t->st;
    c.remaining.usd = INFINITY;
    c.remaining.latency_ms = INFINITY;
    c.remaining.energy_wh = INFINITY;
    return c;
}

/* Routes q and returns the chosen option (-1 on error, detail in *d.reason). */
static int route_q(dr_router *r, const tfix *t, const char *q, dr_route_decision *d)
{
    dr_query_features f;
    dr_route_ctx c = make_ctx(t, q, &f);
    dynrag_error err;
    if (r->vt->route(r, &c, d, &err) != DYNRAG_OK) {
        snprintf(d->reason, sizeof d->reason, "ERROR %s", dynrag_errmsg(&err));
        return -1;
    }
    return d->option;
}

static bool all_scored_or_nan(const dr_route_decision *d, size_t n)
{
    for (size_t i = n; i < DR_MAX_OPTIONS; i++)
        if (!isnan(d->scores[i]))
            return false;
    return true;
}

/* ---- fixed, dispatch, unavailable ---------------------------------------------- */

TEST(router_fixed_and_dispatch)
{
    tfix t;
    ASSERT(tfix_init(&t, "small,large", "fixed", "{\"option\": \"large\"}"));
    dr_router *r = NULL;
    dynrag_error err;
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r, &err), &err);
    ASSERT_STR_EQ(r->type, "fixed");
    dr_route_decision d;
    ASSERT_EQ(route_q(r, &t, "anything", &d), 1);
    ASSERT_CONTAINS(d.reason, "fixed: large");
    ASSERT_NEAR(d.scores[1], 1.0, 0);
    ASSERT(isnan(d.scores[0]));
    ASSERT(all_scored_or_nan(&d, 2));
    /* The fixed option becomes unavailable: the other one, said so. */
    t.opt[1].available = false;
    ASSERT_EQ(route_q(r, &t, "anything", &d), 0);
    ASSERT_CONTAINS(d.reason, "large unavailable, using small");
    /* Nothing available: an error naming the stage. */
    t.opt[0].available = false;
    ASSERT_EQ(route_q(r, &t, "anything", &d), -1);
    ASSERT_CONTAINS(d.reason, "generator");
    dr_router_free(r);
    dr_router_free(NULL);

    /* Unknown option and unknown type fail with the field named. */
    set_params(&t, "{\"option\": \"huge\"}");
    ASSERT_EQ(dr_router_create(&t.p, &t.st, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "stages.generator.router.option");
    ASSERT_CONTAINS(dynrag_errmsg(&err), "huge");
    t.st.router.type = (char *)"clasifier";
    ASSERT_EQ(dr_router_create(&t.p, &t.st, &r, &err), DYNRAG_ERR_UNSUPPORTED);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "clasifier");
    ASSERT(r == NULL);
    tfix_free(&t);
}

/* ---- rules -------------------------------------------------------------------- */

TEST(router_rules_conditions)
{
    tfix t;
    ASSERT(tfix_init(&t, "bm25,dense,multihop,none",
                     "rules",
                     "{\"rules\": ["
                     " {\"when\": {\"regex\": \"^(hi|hello)\\\\b\"}, \"option\": \"none\"},"
                     " {\"when\": {\"has_comparison\": true, \"min_entities\": 2}, "
                     "\"option\": \"multihop\"},"
                     " {\"when\": {\"question_words\": [\"Who\", \"when\"], \"max_words\": 8}, "
                     "\"option\": \"bm25\"},"
                     " {\"when\": {\"min_words\": 12}, \"option\": \"multihop\"}],"
                     " \"default\": \"dense\"}"));
    dr_router *r = NULL;
    dynrag_error err;
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r, &err), &err);
    dr_route_decision d;
    ASSERT_EQ(route_q(r, &t, "HELLO there", &d), 3);
    ASSERT_CONTAINS(d.reason, "rule 0 matched");
    ASSERT_CONTAINS(d.reason, "regex");
    ASSERT_EQ(route_q(r, &t, "Is Paris older than London?", &d), 2);
    ASSERT_CONTAINS(d.reason, "rule 1 matched: n_entities>=2, has_comparison=true");
    ASSERT_EQ(route_q(r, &t, "Who wrote Hamlet?", &d), 0);
    ASSERT_CONTAINS(d.reason, "rule 2 matched: n_words<=8, question_word=who");
    ASSERT_NEAR(d.scores[0], 1.0, 0);
    ASSERT_NEAR(d.scores[2], 0.0, 0); /* rules name it, none matched */
    ASSERT(isnan(d.scores[1]));       /* only the default names it */
    /* "what" is not in the list; 3 words; no rule: default. */
    ASSERT_EQ(route_q(r, &t, "What is DNA?", &d), 1);
    ASSERT_CONTAINS(d.reason, "no rule matched: default dense");
    ASSERT_NEAR(d.scores[1], 1.0, 0);
    ASSERT_EQ(route_q(r, &t,
                      "which of the films directed by the director of Jaws came out after 1990",
                      &d),
              2);
    ASSERT_CONTAINS(d.reason, "rule 3 matched: n_words>=12");
    ASSERT_EQ(route_q(r, &t, "", &d), 1);
    /* A matching rule's option unavailable: the next matching rule wins. */
    t.opt[3].available = false;
    ASSERT_EQ(route_q(r, &t, "hello who is it", &d), 0);
    ASSERT_CONTAINS(d.reason, "rule 0 matched but none unavailable");
    ASSERT_CONTAINS(d.reason, "rule 2 matched");
    /* ...and the default unavailable too. */
    t.opt[1].available = false;
    ASSERT_EQ(route_q(r, &t, "What is DNA?", &d), 0);
    ASSERT_CONTAINS(d.reason, "dense unavailable");
    dr_router_free(r);

    /* Bad regex and bad option names are reported with their field. */
    set_params(&t, "{\"rules\": [{\"when\": {\"regex\": \"(unclosed\"}, \"option\": \"bm25\"}]}");
    ASSERT_EQ(dr_router_create(&t.p, &t.st, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "rules[0].when.regex");
    set_params(&t, "{\"rules\": [{\"when\": {}, \"option\": \"bm25\"}, {\"option\": \"nope\"}]}");
    ASSERT_EQ(dr_router_create(&t.p, &t.st, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "rules[1].option");
    tfix_free(&t);
}

/* ---- knn ---------------------------------------------------------------------- */

typedef struct fake_embedder {
    int calls;
    bool fail;
} fake_embedder;

/* Bag of words hashed into `dim` buckets: deterministic, and texts sharing
 * words are similar. */
static int fake_word(void *user, const char *w, size_t len, size_t s, size_t e)
{
    float *v = ((float **)user)[0];
    int dim = (int)(intptr_t)((float **)user)[1];
    v[dr_hash64(w, len, 7) % (uint64_t)dim] += 1.0f;
    return 0;
}

static int fake_embed(void *user, const char *text, float *out, int dim, dynrag_error *err)
{
    fake_embedder *fe = user;
    __atomic_fetch_add(&fe->calls, 1, __ATOMIC_RELAXED);
    if (fe->fail)
        return dr_err_set(err, DYNRAG_ERR_HTTP, "fake embedder is down");
    memset(out, 0, (size_t)dim * sizeof *out);
    void *ud[2] = {out, (void *)(intptr_t)dim};
    dr_text_words(text, strlen(text), fake_word, ud);
    return DYNRAG_OK;
}

static int knn_route(dr_router *r, const tfix *t, fake_embedder *fe, const char *q,
                     dr_route_decision *d, dynrag_error *err)
{
    dr_query_features f;
    dr_route_ctx c = make_ctx(t, q, &f);
    c.embed = fake_embed;
    c.embed_user = fe;
    c.embed_dim = 64;
    int rc = r->vt->route(r, &c, d, err);
    return rc == DYNRAG_OK ? d->option : rc;
}

TEST(router_knn_votes_and_default)
{
    const char *jsonl = "{\"query\": \"capital city of france\", \"option\": \"fast\"}\n"
                        "\n"
                        "{\"query\": \"capital city of spain\", \"option\": \"fast\"}\n";
    test_write_file("ex.jsonl", jsonl);
    tfix t;
    ASSERT(tfix_init(&t, "fast,deep",
                     "knn",
                     "{\"examples\": ["
                     " {\"query\": \"director of the film that won best picture\", "
                     "\"option\": \"deep\"},"
                     " {\"query\": \"director of the film starring the actor\", "
                     "\"option\": \"deep\"}],"
                     " \"examples_file\": \"$TMP/ex.jsonl\", \"k\": 3, \"min_similarity\": 0.3,"
                     " \"default\": \"deep\"}"));
    dr_router *r = NULL;
    dynrag_error err;
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r, &err), &err);
    fake_embedder fe = {0};
    dr_route_decision d;
    /* No embedder: a clear error. */
    dr_query_features f;
    dr_route_ctx c = make_ctx(&t, "x", &f);
    ASSERT_EQ(r->vt->route(r, &c, &d, &err), DYNRAG_ERR_STATE);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "embedder");
    /* A failing embedder: the error, then a retry succeeds. */
    fe.fail = true;
    ASSERT_EQ(knn_route(r, &t, &fe, "capital city of italy", &d, &err), DYNRAG_ERR_HTTP);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "fake embedder is down");
    fe.fail = false;
    fe.calls = 0;
    ASSERT_EQ(knn_route(r, &t, &fe, "capital city of italy", &d, &err), 0);
    ASSERT_EQ(fe.calls, 5); /* 4 examples + the query */
    ASSERT_CONTAINS(d.reason, "fast");
    ASSERT(d.scores[0] > d.scores[1]);
    ASSERT_NEAR(d.scores[0] + d.scores[1], 1.0, 1e-9);
    ASSERT_EQ(knn_route(r, &t, &fe, "who was the director of the film", &d, &err), 1);
    ASSERT_EQ(fe.calls, 6); /* examples embedded once */
    /* Nothing similar enough: the default. */
    ASSERT_EQ(knn_route(r, &t, &fe, "zebra quantum", &d, &err), 1);
    ASSERT_CONTAINS(d.reason, "default deep");
    /* The winner unavailable: the runner-up. */
    t.opt[0].available = false;
    ASSERT_EQ(knn_route(r, &t, &fe, "capital city of italy", &d, &err), 1);
    ASSERT_CONTAINS(d.reason, "fast unavailable, using deep");
    dr_router_free(r);

    /* A bad examples file line is named by file:line. */
    test_write_file("bad.jsonl", "{\"query\": \"a\", \"option\": \"fast\"}\n{\"query\": 3}\n");
    set_params(&t, "{\"examples_file\": \"$TMP/bad.jsonl\"}");
    ASSERT_EQ(dr_router_create(&t.p, &t.st, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.jsonl:2");
    set_params(&t, "{\"examples_file\": \"$TMP/missing.jsonl\"}");
    ASSERT_EQ(dr_router_create(&t.p, &t.st, &r, &err), DYNRAG_ERR_NOTFOUND);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "missing.jsonl");
    tfix_free(&t);
}

typedef struct knn_thread {
    dr_router *r;
    const tfix *t;
    fake_embedder *fe;
    int n, wrong;
} knn_thread;

static void *knn_worker(void *arg)
{
    knn_thread *kt = arg;
    for (int i = 0; i < kt->n; i++) {
        dr_route_decision d;
        dynrag_error err;
        if (knn_route(kt->r, kt->t, kt->fe, "capital city of peru", &d, &err) != 0)
            kt->wrong++;
    }
    return NULL;
}

TEST(router_knn_concurrent_lazy_init)
{
    tfix t;
    ASSERT(tfix_init(&t, "fast,deep", "knn",
                     "{\"examples\": [{\"query\": \"capital city of chile\", \"option\": \"fast\"},"
                     " {\"query\": \"director of the film\", \"option\": \"deep\"},"
                     " {\"query\": \"capital city of bolivia\", \"option\": \"fast\"}],"
                     " \"default\": \"deep\"}"));
    dr_router *r = NULL;
    dynrag_error err;
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r, &err), &err);
    fake_embedder fe = {0};
    pthread_t th[4];
    knn_thread kt[4];
    for (int i = 0; i < 4; i++) {
        kt[i] = (knn_thread){r, &t, &fe, 50, 0};
        ASSERT_EQ(pthread_create(&th[i], NULL, knn_worker, &kt[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ(kt[i].wrong, 0);
    }
    ASSERT_EQ(fe.calls, 3 + 4 * 50); /* the examples were embedded exactly once */
    dr_router_free(r);
    tfix_free(&t);
}

/* ---- cost --------------------------------------------------------------------- */

TEST(router_cost_objectives)
{
    tfix t;
    ASSERT(tfix_init(&t, "tiny,mid,premium", "cost", "{\"objective\": \"max_quality\"}"));
    double q[] = {0.5, 0.7, 0.9}, in[] = {0.0001, 0.001, 0.01}, lat[] = {100, 400, 2000};
    for (int i = 0; i < 3; i++) {
        t.opt[i].quality = q[i];
        t.opt[i].cost.usd_per_1k_input = in[i];
        t.opt[i].cost.usd_per_1k_output = in[i] * 4;
        t.opt[i].cost.latency_ms = lat[i];
    }
    /* The documented estimate: 400 chars -> 100 + 512 input tokens, 128 output. */
    dr_budget e = dr_cost_estimate(&t.opt[2], 400);
    ASSERT_NEAR(e.usd, 0.01 * 612 / 1000 + 0.04 * 128 / 1000, 1e-12);
    ASSERT_NEAR(e.latency_ms, 2000, 0);
    dr_router *r = NULL;
    dynrag_error err;
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r, &err), &err);
    dr_query_features f;
    dr_route_ctx c = make_ctx(&t, "What is the capital of France?", &f);
    dr_route_decision d;
    ASSERT_OK(r->vt->route(r, &c, &d, &err), &err);
    ASSERT_EQ(d.option, 2);
    ASSERT_NEAR(d.scores[1], 0.7, 1e-12);
    /* Over budget for premium: mid. */
    c.remaining.usd = 0.002;
    ASSERT_OK(r->vt->route(r, &c, &d, &err), &err);
    ASSERT_EQ(d.option, 1);
    ASSERT_CONTAINS(d.reason, "within budget");
    /* Latency rules mid out too. */
    c.remaining.latency_ms = 300;
    ASSERT_OK(r->vt->route(r, &c, &d, &err), &err);
    ASSERT_EQ(d.option, 0);
    /* Nothing fits: the cheapest, said so. */
    c.remaining.latency_ms = 10;
    ASSERT_OK(r->vt->route(r, &c, &d, &err), &err);
    ASSERT_EQ(d.option, 0);
    ASSERT_CONTAINS(d.reason, "nothing fits");
    /* Unbounded, premium unavailable: mid. */
    c.remaining.usd = c.remaining.latency_ms = INFINITY;
    t.opt[2].available = false;
    ASSERT_OK(r->vt->route(r, &c, &d, &err), &err);
    ASSERT_EQ(d.option, 1);
    t.opt[2].available = true;
    dr_router_free(r);

    /* min_cost with a floor of 0.6: mid; a floor nothing reaches: highest quality. */
    set_params(&t, "{\"objective\": \"min_cost\", \"quality_floor\": 0.6}");
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r, &err), &err);
    ASSERT_OK(r->vt->route(r, &c, &d, &err), &err);
    ASSERT_EQ(d.option, 1);
    ASSERT_CONTAINS(d.reason, "cheapest reaching the quality floor");
    ASSERT(d.scores[0] > d.scores[1]); /* score = -combined cost */
    dr_router_free(r);
    set_params(&t, "{\"objective\": \"min_cost\", \"quality_floor\": 0.95}");
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r, &err), &err);
    ASSERT_OK(r->vt->route(r, &c, &d, &err), &err);
    ASSERT_EQ(d.option, 2);
    ASSERT_CONTAINS(d.reason, "none reaches the quality floor");
    /* ...within budget. */
    c.remaining.usd = 0.002;
    ASSERT_OK(r->vt->route(r, &c, &d, &err), &err);
    ASSERT_EQ(d.option, 1);
    dr_router_free(r);
    set_params(&t, "{\"objective\": \"cheapest\"}");
    ASSERT_EQ(dr_router_create(&t.p, &t.st, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "router.objective");
    tfix_free(&t);
}

/* ---- bandit ------------------------------------------------------------------- */

/* Runs `rounds` route+feedback steps with arm means {0.2, 0.5, 0.8} plus
 * noise; returns the share of the last quarter that picked arm 2. */
static double bandit_run(dr_router *r, const tfix *t, int rounds, uint64_t seed)
{
    static const double means[] = {0.2, 0.5, 0.8};
    dr_rng rng;
    dr_rng_seed(&rng, seed);
    int best = 0, tail = 0;
    for (int i = 0; i < rounds; i++) {
        dr_route_decision d;
        int o = route_q(r, t, "what is the tallest mountain", &d);
        if (o < 0)
            return -1;
        double reward = means[o] + 0.1 * dr_rng_normal(&rng);
        dr_query_features f;
        dr_query_features_compute("what is the tallest mountain", &f);
        if (r->vt->feedback(r, NULL, &f, o, reward, NULL) != DYNRAG_OK)
            return -1;
        if (i >= rounds * 3 / 4) {
            tail++;
            best += o == 2;
        }
    }
    return (double)best / tail;
}

TEST(router_bandit_epsilon_greedy_converges)
{
    tfix t;
    ASSERT(tfix_init(&t, "a,b,c", "bandit",
                     "{\"algorithm\": \"epsilon_greedy\", \"epsilon\": 0.1, \"seed\": 7}"));
    dr_router *r = NULL;
    dynrag_error err;
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r, &err), &err);
    dr_route_decision d;
    /* Each arm is tried once first. */
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(route_q(r, &t, "q", &d), i);
        ASSERT_CONTAINS(d.reason, "no feedback yet");
        ASSERT_OK(r->vt->feedback(r, NULL, NULL, i, 0.5, &err), &err);
    }
    ASSERT_EQ(r->vt->feedback(r, NULL, NULL, 3, 0.5, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(r->vt->feedback(r, NULL, NULL, 0, NAN, &err), DYNRAG_ERR_INVALID);
    double share = bandit_run(r, &t, 2000, 1);
    ASSERT(share > 0.85);
    ASSERT(share < 0.999); /* epsilon keeps exploring */
    /* The best arm unavailable: never chosen. */
    t.opt[2].available = false;
    for (int i = 0; i < 200; i++)
        ASSERT_NE(route_q(r, &t, "q", &d), 2);
    dr_router_free(r);
    tfix_free(&t);
}

TEST(router_bandit_ucb1_converges)
{
    tfix t;
    ASSERT(tfix_init(&t, "a,b,c", "bandit", "{\"algorithm\": \"ucb1\"}"));
    dr_router *r = NULL;
    dynrag_error err;
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r, &err), &err);
    double share = bandit_run(r, &t, 2000, 2);
    ASSERT(share > 0.9);
    dr_route_decision d;
    route_q(r, &t, "q", &d);
    ASSERT_CONTAINS(d.reason, "ucb");
    for (int i = 0; i < 3; i++)
        ASSERT(!isnan(d.scores[i]));
    dr_router_free(r);
    tfix_free(&t);
}

TEST(router_bandit_linucb_learns_context)
{
    /* Arm 0 pays on short factoid queries, arm 1 on comparisons. */
    tfix t;
    ASSERT(tfix_init(&t, "single,multi", "bandit",
                     "{\"algorithm\": \"linucb\", \"alpha\": 0.5}"));
    dr_router *r = NULL;
    dynrag_error err;
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r, &err), &err);
    const char *qs[] = {"Who wrote Hamlet?",
                        "Is the Nile longer than the Amazon and which is older, Rome or Athens?"};
    dr_rng rng;
    dr_rng_seed(&rng, 3);
    int right = 0, tail = 0;
    for (int i = 0; i < 1200; i++) {
        int kind = (int)dr_rng_below(&rng, 2);
        dr_route_decision d;
        int o = route_q(r, &t, qs[kind], &d);
        ASSERT_GE(o, 0);
        double reward = (o == kind ? 0.9 : 0.1) + 0.05 * dr_rng_normal(&rng);
        dr_query_features f;
        dr_query_features_compute(qs[kind], &f);
        ASSERT_OK(r->vt->feedback(r, NULL, &f, o, reward, &err), &err);
        if (i >= 900) {
            tail++;
            right += o == kind;
        }
    }
    ASSERT_GT(right, tail * 9 / 10);
    dr_router_free(r);
    tfix_free(&t);
}

TEST(router_bandit_state_persists)
{
    tfix t;
    ASSERT(tfix_init(&t, "a,b,c", "bandit",
                     "{\"algorithm\": \"linucb\", \"state\": \"$TMP/sub/bandit.json\"}"));
    dynrag_error err;
    char *dir = dr_asprintf("%s/sub", test_tmpdir());
    ASSERT_OK(dr_mkdirs(dir, &err), &err);
    free(dir);
    dr_router *r = NULL;
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r, &err), &err); /* missing file: fresh */
    ASSERT(bandit_run(r, &t, 300, 4) >= 0);
    ASSERT_OK(r->vt->save(r, &err), &err);
    char *before = dr_bandit_state_json(r);
    ASSERT(before != NULL);
    ASSERT_CONTAINS(before, "\"algorithm\":");
    dr_router *r2 = NULL;
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r2, &err), &err);
    char *after = dr_bandit_state_json(r2);
    ASSERT_STR_EQ(after, before);
    /* The same next decisions too (the PRNG state is saved). */
    dr_route_decision d1, d2;
    ASSERT_EQ(route_q(r, &t, "some query", &d1), route_q(r2, &t, "some query", &d2));
    ASSERT_NEAR(d1.scores[0], d2.scores[0], 0);
    free(before);
    free(after);
    dr_router_free(r2);
    /* Not a bandit: NULL. */
    dr_router_free(r);

    /* A corrupt file: a clear error naming it. */
    test_write_file("sub/bandit.json", "{\"version\": 1, \"dim\": 8, \"rng\": [");
    ASSERT_EQ(dr_router_create(&t.p, &t.st, &r, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "sub/bandit.json");
    ASSERT_CONTAINS(dynrag_errmsg(&err), "not valid JSON");
    test_write_file("sub/bandit.json",
                    "{\"version\": 1, \"dim\": 8, \"rng\": [\"1\",\"2\",\"3\",\"4\"],"
                    " \"arms\": [{\"option\": \"a\", \"pulls\": 1, \"n\": -1}]}");
    ASSERT_EQ(dr_router_create(&t.p, &t.st, &r, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "an arm needs");
    ASSERT(r == NULL);
    tfix_free(&t);

    tfix f2;
    ASSERT(tfix_init(&f2, "a", "fixed", "{}"));
    ASSERT_OK(dr_router_create(&f2.p, &f2.st, &r, &err), &err);
    ASSERT(dr_bandit_state_json(r) == NULL);
    ASSERT_OK(r->vt->save(r, &err), &err);
    dr_router_free(r);
    tfix_free(&f2);
}

/* A bandit state file damaged in many ways (cut short, bytes changed,
 * numbers replaced by huge, negative, fractional or non-numeric values,
 * arms repeated or unknown): creating the router either fails with
 * DYNRAG_ERR_FORMAT naming the file, or succeeds and routes with an option
 * of the stage; never a crash (the suite also runs under ASan/UBSan). */
TEST(router_bandit_state_damaged_property)
{
    tfix t;
    ASSERT(tfix_init(&t, "a,b,c", "bandit",
                     "{\"algorithm\": \"linucb\", \"state\": \"$TMP/bandit.json\"}"));
    dynrag_error err;
    dr_router *r = NULL;
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r, &err), &err);
    ASSERT(bandit_run(r, &t, 200, 9) >= 0);
    ASSERT_OK(r->vt->save(r, &err), &err);
    char *good = dr_bandit_state_json(r);
    ASSERT(good != NULL);
    dr_router_free(r);
    static const char *const swaps[] = {"1e400", "-1", "0.5", "\"x\"", "null", "[]", "{}",
                                        "9007199254740993", "-0", "1e-320", "true", "\"a\""};
    uint64_t st = 3;
    size_t n = strlen(good);
    int ok = 0, refused = 0;
    for (int i = 0; i < 1500; i++) {
        dr_buf b = {0};
        dr_buf_append(&b, good, n);
        int edits = 1 + (int)(test_rand(&st) % 3);
        for (int e = 0; e < edits && b.len > 0; e++) {
            size_t at = test_rand(&st) % b.len;
            switch (test_rand(&st) % 4) {
            case 0: /* cut short */
                b.len = at;
                b.data[at] = '\0';
                break;
            case 1: /* one byte changed */
                b.data[at] = (char)(test_rand(&st) % 256);
                if (b.data[at] == '\0')
                    b.data[at] = '#';
                break;
            default: { /* a number (or a word) replaced */
                size_t s0 = at;
                while (s0 < b.len && !(b.data[s0] == '-' || (b.data[s0] >= '0' && b.data[s0] <= '9')))
                    s0++;
                size_t s1 = s0;
                while (s1 < b.len && strchr("-+.eE0123456789", b.data[s1]) != NULL)
                    s1++;
                if (s1 == s0)
                    break;
                const char *w = swaps[test_rand(&st) % DR_ARRAY_LEN(swaps)];
                dr_buf nb = {0};
                dr_buf_append(&nb, b.data, s0);
                dr_buf_puts(&nb, w);
                dr_buf_append(&nb, b.data + s1, b.len - s1);
                dr_buf_free(&b);
                b = nb;
                break;
            }
            }
        }
        test_write_file("bandit.json", b.data ? b.data : "");
        dr_buf_free(&b);
        int rc = dr_router_create(&t.p, &t.st, &r, &err);
        if (rc == DYNRAG_OK) {
            ok++;
            dr_route_decision d;
            int opt = route_q(r, &t, "how many moons does mars have", &d);
            ASSERT(opt >= 0 && opt < 3);
            dr_router_free(r);
        } else {
            refused++;
            ASSERT_EQ(rc, DYNRAG_ERR_FORMAT);
            ASSERT_CONTAINS(dynrag_errmsg(&err), "bandit.json");
            ASSERT(r == NULL);
        }
    }
    ASSERT(ok > 0 && refused > 0); /* both outcomes were exercised */
    free(good);
    tfix_free(&t);
}

typedef struct bandit_thread {
    dr_router *r;
    const tfix *t;
    int n, failures;
} bandit_thread;

static void *bandit_worker(void *arg)
{
    bandit_thread *bt = arg;
    for (int i = 0; i < bt->n; i++) {
        dr_route_decision d;
        int o = route_q(bt->r, bt->t, "who is the president of France", &d);
        if (o < 0 || bt->r->vt->feedback(bt->r, NULL, NULL, o, o == 1 ? 1.0 : 0.0, NULL) != 0)
            bt->failures++;
        if (i % 20 == 0 && bt->r->vt->save(bt->r, NULL) != 0)
            bt->failures++;
    }
    return NULL;
}

static double sum_field(const cJSON *arms, const char *key)
{
    double s = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, arms) s += cJSON_GetObjectItem(a, key)->valuedouble;
    return s;
}

TEST(router_bandit_concurrent)
{
    tfix t;
    ASSERT(tfix_init(&t, "a,b,c,d", "bandit",
                     "{\"algorithm\": \"ucb1\", \"state\": \"$TMP/state.json\"}"));
    dr_router *r = NULL;
    dynrag_error err;
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r, &err), &err);
    pthread_t th[4];
    bandit_thread bt[4];
    for (int i = 0; i < 4; i++) {
        bt[i] = (bandit_thread){r, &t, 100, 0}; /* each reward is a durable transaction */
        ASSERT_EQ(pthread_create(&th[i], NULL, bandit_worker, &bt[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ(bt[i].failures, 0);
    }
    char *js = dr_bandit_state_json(r);
    cJSON *root = cJSON_Parse(js);
    ASSERT(root != NULL);
    const cJSON *arms = cJSON_GetObjectItem(root, "arms");
    ASSERT_EQ(cJSON_GetArraySize(arms), 4);
    ASSERT_NEAR(sum_field(arms, "pulls"), 400, 0);
    ASSERT_NEAR(sum_field(arms, "n"), 400, 0);
    ASSERT_GT(cJSON_GetArrayItem(arms, 1)->child->next->valuedouble, 300); /* b's pulls */
    cJSON_Delete(root);
    free(js);
    dr_router_free(r);
    tfix_free(&t);
}

/* ---- cascade ------------------------------------------------------------------ */

TEST(router_cascade_route_and_judges)
{
    tfix t;
    ASSERT(tfix_init(&t, "small,medium,large", "cascade",
                     "{\"judge\": \"self_route\", \"threshold\": 0.5}"));
    dr_router *r = NULL;
    dynrag_error err;
    ASSERT_OK(dr_router_create(&t.p, &t.st, &r, &err), &err);
    dr_route_decision d;
    ASSERT_EQ(route_q(r, &t, "q", &d), 0);
    ASSERT_CONTAINS(d.reason, "start with small");
    t.opt[0].available = false;
    ASSERT_EQ(route_q(r, &t, "q", &d), 1);
    ASSERT_CONTAINS(d.reason, "small unavailable, using medium");
    dr_router_free(r);

    char why[128];
    dr_answer_view a = {.text = "Paris", .first_token_margin = NAN, .confidence = NAN};
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 1.0, 0);
    a.unanswerable = true;
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 0.0, 0);
    a.unanswerable = false;
    a.text = "The context does NOT contain Enough Information.";
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 1.0, 0);
    a.text = "There is not enough information to say.";
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 0.0, 0);
    ASSERT_CONTAINS(why, "not enough information");
    a.text = "This question CANNOT BE ANSWERED.";
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 0.0, 0);
    a.text = "  ";
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, NULL, 0), 0.0, 0);
    ASSERT_NEAR(dr_cascade_judge(NULL, NULL, &a, why, sizeof why), 0.0, 0);

    set_params(&t, "{\"judge\": \"logprob_margin\"}");
    a.text = "Paris";
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 1.0, 0);
    ASSERT_STR_EQ(why, "logprob_margin: no logprobs");
    a.confidence = 0.3; /* e.g. the extractive generator's support */
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 0.3, 0);
    ASSERT_CONTAINS(why, "generator confidence 0.300");
    a.confidence = NAN;
    a.first_token_margin = log(2.0);
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 0.5, 1e-12);
    a.first_token_margin = -1;
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 0.0, 0);

    set_params(&t, "{\"judge\": \"seq_logprob\"}");
    a.text = "Paris";
    a.first_token_margin = 5; /* not what this judge reads */
    a.mean_logprob = NAN;
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 1.0, 0);
    ASSERT_STR_EQ(why, "seq_logprob: no logprobs");
    a.confidence = 0.4;
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 0.4, 0);
    a.confidence = NAN;
    for (int i = 0; i <= 40; i++) { /* exp of the mean logprob, monotone, in [0, 1] */
        a.mean_logprob = -0.25 * i;
        ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), exp(-0.25 * i),
                    1e-12);
        ASSERT_CONTAINS(why, "seq_logprob: mean token logprob");
    }
    a.mean_logprob = -INFINITY;
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 0.0, 0);
    a.mean_logprob = 0.3; /* not a log-probability: clamped */
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 1.0, 0);
    a.mean_logprob = -0.1;
    a.text = "unanswerable";
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 0.0, 0);
    ASSERT_STR_EQ(why, "seq_logprob: answer says \"unanswerable\"");
    a.text = "Paris";
    a.first_token_margin = NAN;
    a.mean_logprob = NAN;

    set_params(&t, "{\"judge\": \"agreement\", \"samples\": 4}");
    const char *s4[] = {"The Eiffel Tower!", "eiffel tower", "Louvre", "an Eiffel  tower"};
    a.samples = s4;
    a.n_samples = 4;
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 0.75, 1e-12);
    ASSERT_CONTAINS(why, "3/4");
    ASSERT_CONTAINS(why, "eiffel tower");
    a.n_samples = 1;
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 1.0, 0);
    ASSERT_CONTAINS(why, "fewer than 2 samples");
    a.confidence = 0.2;
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 0.2, 0);

    set_params(&t, "{\"judge\": \"vibes\"}");
    ASSERT_EQ(dr_router_create(&t.p, &t.st, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "vibes");
    tfix_free(&t);
}

/*
 * Invariant: the agreement judge compares multiple-choice answers by their
 * letter, whatever the spelling (every pair of forms of one letter agrees,
 * forms of two letters never do), and keeps free text that starts with a
 * capital ("A dog", "I do") apart from the choice.
 */
TEST(router_cascade_agreement_choice_letters)
{
    tfix t;
    ASSERT(tfix_init(&t, "small,large", "cascade", "{\"judge\": \"agreement\"}"));
    static const char *const forms[] = {
        "%c",           "%c\n",       " (%c)",     "%c) text",         "%c.",
        "%c:",          "Answer: %c", "answer:%c", "The answer is %c", "the answer is (%c)",
        "Answer is %c."};
    char why[160], x[40], y[40];
    dr_rng rng;
    dr_rng_seed(&rng, 77);
    for (int round = 0; round < 400; round++) {
        char l1 = (char)('A' + dr_rng_below(&rng, 26)), l2 = (char)('A' + dr_rng_below(&rng, 26));
        const char *f1 = forms[dr_rng_below(&rng, DR_ARRAY_LEN(forms))];
        const char *f2 = forms[dr_rng_below(&rng, DR_ARRAY_LEN(forms))];
        snprintf(x, sizeof x, f1, l1);
        snprintf(y, sizeof y, f2, l2);
        const char *s2[] = {x, y};
        dr_answer_view a = {
            .text = x, .samples = s2, .n_samples = 2, .first_token_margin = NAN, .confidence = NAN};
        double c = dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why);
        if (c != (l1 == l2 ? 1.0 : 0.5)) {
            test_fail_(__FILE__, __LINE__, "'%s' vs '%s': %g (%s)", x, y, c, why);
            tfix_free(&t);
            return;
        }
    }
    const char *text[][2] = {{"A dog", "A"}, {"I do", "I"}, {"Bx", "B"}, {"(B", "B"}, {"b", "B"}};
    for (size_t i = 0; i < DR_ARRAY_LEN(text); i++) {
        dr_answer_view a = {.text = text[i][0],
                            .samples = text[i],
                            .n_samples = 2,
                            .first_token_margin = NAN,
                            .confidence = NAN};
        ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 0.5, 0);
    }
    /* Text still compares after SQuAD normalisation. */
    const char *same[] = {"The Eiffel Tower", "eiffel tower."};
    dr_answer_view a = {.text = same[0],
                        .samples = same,
                        .n_samples = 2,
                        .first_token_margin = NAN,
                        .confidence = NAN};
    ASSERT_NEAR(dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why), 1.0, 0);
    tfix_free(&t);
}

/*
 * Invariant: whatever the judge, margin, samples and reported confidence, an
 * answer that says it cannot answer gets confidence 0 (so every threshold in
 * (0, 1] escalates it), and every confidence is in [0, 1].
 */
TEST(router_cascade_refusal_escalates_under_every_judge)
{
    static const char *const judges[] = {"self_route", "logprob_margin", "seq_logprob",
                                         "agreement"};
    static const char *const refusals[] = {"unanswerable", "UNANSWERABLE.",
                                           "The question cannot be answered from the context.",
                                           "There is Not Enough Information here.", "", " \t\n"};
    static const char *const answers[] = {"Paris", "1997", "Use PRAGMA journal_mode=WAL;"};
    tfix t;
    ASSERT(tfix_init(&t, "small,large", "cascade", "{}"));
    dr_rng rng;
    dr_rng_seed(&rng, 11);
    const char *pool[] = {"Paris", "paris", "unanswerable", "Lyon", "cannot be answered"};
    for (int it = 0; it < 3000; it++) {
        const char *judge = judges[dr_rng_below(&rng, DR_ARRAY_LEN(judges))];
        char params[96];
        snprintf(params, sizeof params, "{\"judge\": \"%s\"}", judge);
        set_params(&t, params);
        const char *samples[5];
        size_t ns = (size_t)dr_rng_below(&rng, 6);
        for (size_t i = 0; i < ns; i++)
            samples[i] = pool[dr_rng_below(&rng, DR_ARRAY_LEN(pool))];
        dr_answer_view a = {.samples = ns ? samples : NULL, .n_samples = ns};
        a.first_token_margin = dr_rng_below(&rng, 3) == 0 ? NAN : dr_rng_uniform(&rng) * 20 - 2;
        a.mean_logprob = dr_rng_below(&rng, 3) == 0 ? NAN : dr_rng_uniform(&rng) * -12 + 1;
        a.confidence = dr_rng_below(&rng, 3) == 0 ? NAN : dr_rng_uniform(&rng) * 3 - 1;
        bool refuse = dr_rng_below(&rng, 2) == 0;
        a.unanswerable = refuse && dr_rng_below(&rng, 3) == 0;
        a.text = refuse && !a.unanswerable ? refusals[dr_rng_below(&rng, DR_ARRAY_LEN(refusals))]
                                           : answers[dr_rng_below(&rng, DR_ARRAY_LEN(answers))];
        char why[256];
        double c = dr_cascade_judge(NULL, &t.st.router, &a, why, sizeof why);
        if (!(c >= 0 && c <= 1))
            test_fail_(__FILE__, __LINE__, "judge %s gave %g outside [0, 1]", judge, c);
        if (refuse && c != 0)
            test_fail_(__FILE__, __LINE__, "judge %s gave %g to refusal '%s' (%s)", judge, c,
                       a.text, why);
        if (refuse && strncmp(why, judge, strlen(judge)) != 0)
            test_fail_(__FILE__, __LINE__, "reason '%s' does not name judge %s", why, judge);
    }
    tfix_free(&t);
}

/* Invariant: a cascade's threshold is accepted exactly when it is in the
 * judges' confidence range [0, 1], for every judge. */
TEST(router_cascade_threshold_range)
{
    static const char *const judges[] = {"self_route", "logprob_margin", "seq_logprob",
                                         "agreement"};
    tfix t;
    ASSERT(tfix_init(&t, "small,large", "cascade", "{}"));
    dr_rng rng;
    dr_rng_seed(&rng, 5);
    for (int it = 0; it < 600; it++) {
        const char *judge = judges[it % 4];
        double th = it < 12 ? (double[]){0, 1, -1e-9, 1 + 1e-9, 1.5, -0.5, 0.5, 2, 5, 1e6, -1e6,
                                         0.999}[it]
                            : dr_rng_uniform(&rng) * 4 - 1.5;
        char params[128];
        snprintf(params, sizeof params, "{\"judge\": \"%s\", \"threshold\": %.17g}", judge,
                 th);
        set_params(&t, params);
        dr_router *r = NULL;
        dynrag_error err;
        int rc = dr_router_create(&t.p, &t.st, &r, &err);
        bool ok = th >= 0 && th <= 1;
        if ((rc == DYNRAG_OK) != ok)
            test_fail_(__FILE__, __LINE__, "judge %s threshold %.17g: rc %d", judge, th, rc);
        if (rc != DYNRAG_OK && strstr(dynrag_errmsg(&err), "router.threshold") == NULL)
            test_fail_(__FILE__, __LINE__, "error does not name the field: %s",
                       dynrag_errmsg(&err));
        dr_router_free(r);
    }
    tfix_free(&t);
}

/* ---- features and normalisation ------------------------------------------------ */

TEST(router_features_basic)
{
    dr_query_features f;
    dr_query_features_compute("Which film came out first, \"The Dark Knight\" or Inception "
                              "directed by Christopher Nolan's brother?",
                              &f);
    ASSERT_EQ(f.n_words, 15);
    ASSERT_STR_EQ(f.first_qword, "which");
    ASSERT_EQ(f.n_question_words, 1);
    /* "The Dark Knight" (quoted), Inception, Christopher Nolan */
    ASSERT_EQ(f.n_entities, 3);
    ASSERT(f.has_conjunction);
    ASSERT(f.has_nested); /* Nolan's */
    ASSERT(!f.has_comparison);
    ASSERT_NEAR(f.vec[0], 1.0, 0);
    ASSERT_NEAR(f.vec[1], log(16.0), 1e-12);
    ASSERT_NEAR(f.vec[2], 3.0, 0);

    dr_query_features_compute("Who is older, the mother of Barack Obama or the author of "
                              "the book that won in 1999?",
                              &f);
    ASSERT(f.has_comparison);
    ASSERT(f.has_nested);
    ASSERT_STR_EQ(f.first_qword, "who");
    ASSERT_EQ(f.n_entities, 2); /* Barack Obama, 1999 */

    dr_query_features_compute("when was it built", &f);
    ASSERT(!f.has_comparison && !f.has_conjunction && !f.has_nested);
    ASSERT_EQ(f.n_entities, 0);
    ASSERT_EQ(f.n_chars, 17);
}

TEST(router_features_tricky_input)
{
    dr_query_features f;
    dr_query_features_compute("", &f);
    ASSERT_EQ(f.n_words, 0);
    ASSERT_STR_EQ(f.first_qword, "");
    ASSERT_NEAR(f.vec[0], 1.0, 0);
    ASSERT_NEAR(f.vec[1], 0.0, 0);
    dr_query_features_compute(NULL, &f);
    ASSERT_EQ(f.n_chars, 0);

    /* Non-ASCII: Greek capitals count as entities; characters are code points. */
    dr_query_features_compute("Wer war Ἀλέξανδρος und wo lebte Σωκράτης? 日本の首都は？", &f);
    ASSERT_GE(f.n_words, 6);
    ASSERT_EQ(f.n_chars, 49);
    ASSERT_GE(f.n_entities, 1);

    /* Invalid UTF-8 and control bytes: no crash, deterministic. */
    const char bad[] = "\xff\xfe who \xc3 what \x01\x02 \"unclosed";
    dr_query_features g;
    dr_query_features_compute(bad, &f);
    dr_query_features_compute(bad, &g);
    ASSERT(memcmp(&f, &g, sizeof f) == 0);
    ASSERT_EQ(f.n_question_words, 2);

    /* Very long input (2 MB): linear time, vec[7] capped. */
    size_t n = 2u << 20;
    char *big = malloc(n + 1);
    ASSERT(big != NULL);
    for (size_t i = 0; i < n; i++)
        big[i] = "Who and \"Q\" Z's "[i % 16];
    big[n] = '\0';
    int64_t t0 = dr_now_us();
    dr_query_features_compute(big, &f);
    int64_t us = dr_now_us() - t0;
    free(big);
    ASSERT_GT(f.n_words, 300000);
    ASSERT_NEAR(f.vec[7], 100.0, 0);
    ASSERT(f.has_conjunction && f.has_nested);
    ASSERT_LT(us, 5 * 1000 * 1000);
}

TEST(router_squad_normalize)
{
    struct {
        const char *in, *out;
    } cases[] = {
        {"The Eiffel Tower!", "eiffel tower"},
        {"  a  cat,   an apple; THE end ", "cat apple end"},
        {"theater anthem", "theater anthem"},
        {"U.S.A.", "usa"},
        {"Éire's \"Ünïcode\"", "éires ünïcode"},
        {"", ""},
        {"the", ""},
        {"\xff odd", "\xff odd"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = dr_squad_normalize(cases[i].in);
        ASSERT(s != NULL);
        ASSERT_STR_EQ(s, cases[i].out);
        free(s);
    }
    char *s = dr_squad_normalize(NULL);
    ASSERT_STR_EQ(s, "");
    free(s);
}
