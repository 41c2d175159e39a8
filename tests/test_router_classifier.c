/* test_router_classifier.c - the classifier router with the shipped model. */
#include "test.h"

#include "dynrag/pipeline.h"
#include "router/router.h"

static dynrag_pipeline *load(const char *threshold)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: t\nstages:\n  retrieval_mode:\n    options:\n"
             "      - {name: none, kind: none}\n      - {name: single, kind: single}\n"
             "      - {name: multi, kind: multi}\n"
             "    router:\n      type: classifier\n      params:\n"
             "        model: %s/models/complexity.safetensors\n"
             "        labels: {A: none, B: single, C: multi}\n"
             "        threshold: %s\n        escalate: multi\n",
             test_source_dir(), threshold);
    dynrag_pipeline *p = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_pipeline_load_string(yaml, strlen(yaml), "t.yaml", NULL, &p, NULL, &err) != 0)
        fprintf(stderr, "%s\n", dynrag_errmsg(&err));
    return p;
}

static int route(dr_router *r, const dynrag_pipeline *p, const char *q, dr_route_decision *d)
{
    dr_query_features f;
    dr_query_features_compute(q, &f);
    dr_route_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.query = q;
    ctx.features = &f;
    ctx.stage = &p->stages[DR_STAGE_RETRIEVAL_MODE];
    ctx.remaining = (dr_budget){INFINITY, INFINITY, INFINITY};
    memset(d, 0, sizeof(*d));
    dynrag_error err;
    return r->vt->route(r, &ctx, d, &err);
}

TEST(router_classifier_shipped_model)
{
    dynrag_pipeline *p = load("0.5");
    ASSERT(p != NULL);
    dr_router *r = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dr_router_create(p, &p->stages[DR_STAGE_RETRIEVAL_MODE], &r, &err), &err);
    dr_route_decision d;
    ASSERT_OK(route(r, p, "hello, how are you today?", &d), &err);
    ASSERT_EQ(d.option, 0);
    ASSERT(d.scores[0] > 0.9);
    ASSERT_OK(route(r, p, "who wrote the novel war and peace", &d), &err);
    ASSERT_EQ(d.option, 1);
    ASSERT_OK(route(r, p,
                    "Which film came out first, the one directed by the man who made Jaws or "
                    "Alien?",
                    &d),
              &err);
    ASSERT_EQ(d.option, 2);
    ASSERT_NEAR(d.scores[0] + d.scores[1] + d.scores[2], 1.0, 1e-4);
    dr_router_free(r);
    dynrag_pipeline_free(p);

    /* A threshold no prediction reaches: always escalate, and say so. */
    p = load("1.0");
    ASSERT(p != NULL);
    ASSERT_OK(dr_router_create(p, &p->stages[DR_STAGE_RETRIEVAL_MODE], &r, &err), &err);
    ASSERT_OK(route(r, p, "who wrote the novel war and peace", &d), &err);
    ASSERT_EQ(d.option, 2);
    ASSERT_CONTAINS(d.reason, "escalate");
    dr_router_free(r);
    dynrag_pipeline_free(p);
}

/* The cost router with a quality model: the cheapest retrieval mode that
 * suffices with probability >= the floor. */
TEST(router_cost_quality_model)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: t\nstages:\n  retrieval_mode:\n    options:\n"
             "      - {name: none, kind: none}\n      - {name: single, kind: single}\n"
             "      - {name: multi, kind: multi}\n"
             "    router:\n      type: cost\n      params:\n"
             "        objective: min_cost\n        quality_floor: 0.9\n"
             "        quality_model: %s/models/complexity.safetensors\n"
             "        quality_labels: {A: none, B: single, C: multi}\n",
             test_source_dir());
    dynrag_pipeline *p = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_pipeline_load_string(yaml, strlen(yaml), "t.yaml", NULL, &p, NULL, &err),
              &err);
    dr_router *r = NULL;
    ASSERT_OK(dr_router_create(p, &p->stages[DR_STAGE_RETRIEVAL_MODE], &r, &err), &err);
    dr_route_decision d;
    ASSERT_OK(route(r, p, "hello, how are you today?", &d), &err);
    ASSERT_EQ(d.option, 0);
    ASSERT_OK(route(r, p, "who wrote the novel war and peace", &d), &err);
    ASSERT_EQ(d.option, 1);
    ASSERT_CONTAINS(d.reason, "cheapest reaching the quality floor: single");
    ASSERT_OK(route(r, p,
                    "Which film came out first, the one directed by the man who made Jaws or "
                    "Alien?",
                    &d),
              &err);
    ASSERT_EQ(d.option, 2);
    dr_router_free(r);
    dynrag_pipeline_free(p);

    /* quality_model without quality_labels is a load error */
    snprintf(yaml, sizeof(yaml),
             "version: 1\nname: t\nstages:\n  retrieval_mode:\n    options:\n"
             "      - {name: none, kind: none}\n      - {name: single, kind: single}\n"
             "    router:\n      type: cost\n      params:\n"
             "        quality_model: %s/models/complexity.safetensors\n",
             test_source_dir());
    dynrag_diags *dg = NULL;
    ASSERT_EQ(dynrag_pipeline_load_string(yaml, strlen(yaml), "t.yaml", NULL, &p, &dg, &err),
              DYNRAG_ERR_PARSE);
    char *text = dynrag_diags_format(dg);
    ASSERT_CONTAINS(text, "quality_model and quality_labels go together");
    free(text);
    dynrag_diags_free(dg);
}
