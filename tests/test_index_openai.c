/* test_index_openai.c - an index built and searched with the openai embedder
 * against the loopback OpenAI-compatible test double. */
#include "test.h"
#include "test_net_util.h"

#include "dynrag/index.h"

TEST(index_openai_embedder_end_to_end)
{
    test_double d;
    if (test_double_start(&d) != 0)
        SKIP("python3 test double unavailable");
    const char *corpus = test_write_file(
        "c.jsonl", "{\"_id\":\"a\",\"title\":\"Cats\",\"text\":\"Cats purr and chase mice.\"}\n"
                   "{\"_id\":\"b\",\"title\":\"Rockets\",\"text\":\"Rockets burn fuel to reach "
                   "orbit.\"}\n");
    char cpath[4200], dir[4200];
    snprintf(cpath, sizeof(cpath), "%s", corpus);
    snprintf(dir, sizeof(dir), "%s/idx", test_tmpdir());
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    bo.embedder.kind = "openai";
    bo.embedder.base_url = d.base_url;
    bo.embedder.model = "emb";
    bo.embedder.dim = 64;
    const char *inputs[] = {cpath};
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_index_add(dir, inputs, 1, &bo, NULL, &err);
    dynrag_index *idx = NULL;
    if (rc == DYNRAG_OK) {
        /* opening without the endpoint is refused with a clear message */
        ASSERT_EQ(dynrag_index_open(dir, NULL, &idx, &err), DYNRAG_ERR_MISMATCH);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "openai:emb:dim=64");
        /* a different model is a mismatch too */
        dynrag_embedder_config other = bo.embedder;
        other.model = "other";
        ASSERT_EQ(dynrag_index_open(dir, &other, &idx, &err), DYNRAG_ERR_MISMATCH);
        rc = dynrag_index_open(dir, &bo.embedder, &idx, &err);
    }
    dynrag_hits h;
    memset(&h, 0, sizeof(h));
    if (rc == DYNRAG_OK) {
        dynrag_search_options so;
        dynrag_search_options_init(&so);
        so.mode = DYNRAG_SEARCH_DENSE;
        so.k = 2;
        rc = dynrag_index_search(idx, "rockets fuel orbit", &so, &h, &err);
    }
    long n_emb = test_double_count(&d, "/v1/embeddings");
    test_double_stop(&d);
    ASSERT_OK(rc, &err);
    ASSERT_EQ(h.n, 2);
    ASSERT_STR_EQ(h.hits[0].doc_id, "b");
    ASSERT_GE(n_emb, 2); /* the corpus, then the query */
    dynrag_hits_free(&h);
    dynrag_index_close(idx);
}
