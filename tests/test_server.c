/*
 * test_server.c - `dynrag serve` end to end: a tiny index and pipeline, the
 * real server on 127.0.0.1 (in-process through the public API, and once as
 * the CLI binary), every endpoint and error class over libcurl, 8 parallel
 * clients, the OpenAI SDK's request shape (streaming included), request
 * deadlines and graceful shutdown.
 */
#include "test.h"

#include "core/util.h"
#include "dynrag/engine.h"
#include "dynrag/index.h"
#include "dynrag/pipeline.h"
#include "dynrag/server.h"
#include "server_client.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char *const docs_jsonl =
    "{\"_id\":\"d1\",\"title\":\"BM25\",\"text\":\"BM25 is a ranking function used by search "
    "engines to rank documents by term frequency and inverse document frequency.\"}\n"
    "{\"_id\":\"d2\",\"title\":\"Vector search\",\"text\":\"Dense vector search embeds queries "
    "and documents and finds nearest neighbours by cosine similarity.\"}\n"
    "{\"_id\":\"d3\",\"title\":\"Eiffel Tower\",\"text\":\"The Eiffel Tower is a wrought-iron "
    "lattice tower in Paris, France. It was completed in 1889.\"}\n"
    "{\"_id\":\"d4\",\"title\":\"Python\",\"text\":\"Python is a programming language created "
    "by Guido van Rossum and first released in 1991.\"}\n"
    "{\"_id\":\"d5\",\"title\":\"Photosynthesis\",\"text\":\"Photosynthesis converts light "
    "energy into chemical energy in plants, producing oxygen.\"}\n"
    "{\"_id\":\"d6\",\"title\":\"Mount Everest\",\"text\":\"Mount Everest is the highest "
    "mountain above sea level, on the border of Nepal and China.\"}\n"
    "{\"_id\":\"d7\",\"title\":\"Reciprocal rank fusion\",\"text\":\"Reciprocal rank fusion "
    "combines the rankings of BM25 and vector search into one hybrid ranking.\"}\n"
    "{\"_id\":\"d8\",\"title\":\"Moon landing\",\"text\":\"Apollo 11 landed the first humans "
    "on the Moon in July 1969.\"}\n";

typedef struct fixture {
    char dir[1024];
    char index[1100];
    char log[1100];
    char yaml[1100];
    dynrag_pipeline *p;
} fixture;

/* Builds the index and pipeline under the test's tmpdir. */
static int fixture_make(fixture *f)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "%s", test_tmpdir());
    snprintf(f->index, sizeof(f->index), "%s/idx", f->dir);
    snprintf(f->log, sizeof(f->log), "%s/route.jsonl", f->dir);
    char docs[1100];
    snprintf(docs, sizeof(docs), "%s", test_write_file("docs.jsonl", docs_jsonl));
    const char *inputs[] = {docs};
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_index_add(f->index, inputs, 1, NULL, NULL, &err) != DYNRAG_OK) {
        fprintf(stderr, "index: %s\n", dynrag_errmsg(&err));
        return -1;
    }
    char *yaml = NULL;
    if (asprintf(&yaml,
                 "version: 1\n"
                 "name: server-test\n"
                 "index: %s\n"
                 "log: %s\n"
                 "stages:\n"
                 "  index:\n"
                 "    options:\n"
                 "      - {name: lexical, kind: bm25, params: {k1: 0.9, b: 0.4}}\n"
                 "      - {name: fused, kind: hybrid}\n"
                 "    router:\n"
                 "      type: rules\n"
                 "      params:\n"
                 "        rules:\n"
                 "          - when: {regex: 'vector|embedding'}\n"
                 "            option: fused\n"
                 "        default: lexical\n"
                 "  context:\n"
                 "    options:\n"
                 "      - {name: top3, kind: topk, params: {k: 3}}\n"
                 "  generator:\n"
                 "    options:\n"
                 "      - {name: extractive, kind: extractive}\n",
                 f->index, f->log) < 0)
        return -1;
    snprintf(f->yaml, sizeof(f->yaml), "%s", test_write_file("pipeline.yaml", yaml));
    free(yaml);
    dynrag_diags *d = NULL;
    int rc = dynrag_pipeline_load(f->yaml, &f->p, &d, &err);
    if (rc != DYNRAG_OK) {
        char *t = d ? dynrag_diags_format(d) : NULL;
        fprintf(stderr, "pipeline: %s %s\n", dynrag_errmsg(&err), t ? t : "");
        free(t);
    }
    dynrag_diags_free(d);
    return rc == DYNRAG_OK ? 0 : -1;
}

static dynrag_server *start_server(fixture *f, const char *key, int threads, int timeout_ms)
{
    dynrag_server_options o;
    dynrag_server_options_init(&o);
    o.port = 0;
    o.threads = threads;
    o.api_key = key;
    o.max_body = 64 * 1024;
    o.timeout_ms = timeout_ms;
    dynrag_server *s = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_server_open(f->p, &o, &s, &err) != DYNRAG_OK ||
        dynrag_server_start(s, &err) != DYNRAG_OK) {
        fprintf(stderr, "server: %s\n", dynrag_errmsg(&err));
        dynrag_server_close(s);
        return NULL;
    }
    return s;
}

static cJSON *jget(const cJSON *o, const char *path)
{
    /* "a.b.0.c": object keys and array indices. */
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    const cJSON *cur = o;
    char *save = NULL; /* strtok_r: the concurrency test calls this from 8 threads */
    for (char *tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save)) {
        if (cJSON_IsArray(cur))
            cur = cJSON_GetArrayItem(cur, (int)strtol(tok, NULL, 10));
        else
            cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
    }
    return (cJSON *)cur;
}

static const char *jstr(const cJSON *o, const char *path)
{
    cJSON *v = jget(o, path);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static size_t count_lines(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return 0;
    size_t n = 0;
    int c;
    while ((c = fgetc(fp)) != EOF)
        n += c == '\n';
    fclose(fp);
    return n;
}

TEST(server_api_every_endpoint)
{
    fixture f;
    ASSERT_EQ(fixture_make(&f), 0);
    dynrag_server *s = start_server(&f, "t0ken", 4, 10000);
    ASSERT(s != NULL);
    int port = dynrag_server_port(s);
    ASSERT_GT(port, 0);
    http_reply r;
    cJSON *o;

    /* /healthz */
    ASSERT_EQ(http_get(port, "/healthz", &r), 0);
    ASSERT_EQ(r.status, 200);
    o = cJSON_Parse(r.body);
    ASSERT_STR_EQ(jstr(o, "status"), "ok");
    ASSERT(cJSON_IsTrue(jget(o, "index_loaded")));
    ASSERT_EQ(jget(o, "docs")->valueint, 8);
    ASSERT_GT(jget(o, "generation")->valueint, 0); /* the index was written once or more */
    cJSON_Delete(o);
    http_reply_free(&r);

    /* /v1/retrieve with a mode equals a direct search of the same index. */
    ASSERT_EQ(http_post_json(port, "/v1/retrieve",
                             "{\"query\":\"ranking function of search engines\",\"k\":2,"
                             "\"mode\":\"bm25\"}",
                             "t0ken", &r),
              0);
    ASSERT_EQ(r.status, 200);
    o = cJSON_Parse(r.body);
    ASSERT(o != NULL);
    ASSERT_STR_EQ(jstr(o, "mode"), "bm25");
    ASSERT(cJSON_IsFalse(jget(o, "routed")));
    ASSERT_EQ(cJSON_GetArraySize(jget(o, "hits")), 2);
    ASSERT_STR_EQ(jstr(o, "hits.0.doc_id"), "d1");
    ASSERT_STR_EQ(jstr(o, "hits.0.title"), "BM25");
    ASSERT(jstr(o, "hits.0.text") != NULL);
    {
        dynrag_index *idx = NULL;
        dynrag_error err;
        ASSERT_OK(dynrag_index_open(f.index, NULL, &idx, &err), &err);
        dynrag_search_options so;
        dynrag_search_options_init(&so);
        so.mode = DYNRAG_SEARCH_BM25;
        so.k = 2;
        so.k1 = 0.9;
        so.b = 0.4;
        dynrag_hits h;
        ASSERT_OK(dynrag_index_search(idx, "ranking function of search engines", &so, &h, &err),
                  &err);
        ASSERT_EQ(h.n, 2);
        for (size_t i = 0; i < h.n; i++) {
            char p[64];
            snprintf(p, sizeof(p), "hits.%zu.doc_id", i);
            ASSERT_STR_EQ(jstr(o, p), h.hits[i].doc_id);
            snprintf(p, sizeof(p), "hits.%zu.score", i);
            ASSERT_NEAR(jget(o, p)->valuedouble, h.hits[i].score, 1e-9);
        }
        dynrag_hits_free(&h);
        dynrag_index_close(idx);
    }
    cJSON_Delete(o);
    http_reply_free(&r);

    /* Routed retrieve: the rules router picks the index option. */
    ASSERT_EQ(http_post_json(port, "/v1/retrieve", "{\"query\":\"how does vector search work\"}",
                             "t0ken", &r),
              0);
    ASSERT_EQ(r.status, 200);
    o = cJSON_Parse(r.body);
    ASSERT(cJSON_IsTrue(jget(o, "routed")));
    ASSERT_STR_EQ(jstr(o, "mode"), "hybrid");
    ASSERT_STR_EQ(jstr(o, "route.index.choice"), "fused");
    ASSERT_STR_EQ(jstr(o, "route.index.router"), "rules");
    ASSERT_GT(cJSON_GetArraySize(jget(o, "hits")), 0);
    cJSON_Delete(o);
    http_reply_free(&r);
    ASSERT_EQ(http_post_json(port, "/v1/retrieve", "{\"query\":\"Eiffel Tower Paris\",\"k\":2}",
                             "t0ken", &r),
              0);
    o = cJSON_Parse(r.body);
    ASSERT_STR_EQ(jstr(o, "mode"), "bm25");
    ASSERT_STR_EQ(jstr(o, "route.index.choice"), "lexical");
    ASSERT_STR_EQ(jstr(o, "hits.0.doc_id"), "d3");
    ASSERT_EQ(cJSON_GetArraySize(jget(o, "hits")), 1);
    cJSON_Delete(o);
    http_reply_free(&r);

    /* 400 naming the field. */
    ASSERT_EQ(http_post_json(port, "/v1/retrieve", "{\"query\":\"x\",\"k\":5000}", "t0ken", &r), 0);
    ASSERT_EQ(r.status, 400);
    o = cJSON_Parse(r.body);
    ASSERT_STR_EQ(jstr(o, "error.message"), "\"k\": expected an integer from 1 to 1000");
    ASSERT_STR_EQ(jstr(o, "error.type"), "invalid_request_error");
    ASSERT_STR_EQ(jstr(o, "error.code"), "invalid_field");
    cJSON_Delete(o);
    http_reply_free(&r);

    /* /v1/query with an id, then feedback for it. */
    ASSERT_EQ(http_post_json(port, "/v1/query",
                             "{\"query\":\"When was the Eiffel Tower completed?\",\"id\":\"q-et\"}",
                             "t0ken", &r),
              0);
    ASSERT_EQ(r.status, 200);
    o = cJSON_Parse(r.body);
    ASSERT(o != NULL);
    ASSERT_STR_EQ(jstr(o, "query_id"), "q-et");
    ASSERT_STR_EQ(jstr(o, "id"), "q-et");
    ASSERT_CONTAINS(jstr(o, "answer"), "1889");
    ASSERT_STR_EQ(jstr(o, "citations.0.doc_id"), "d3");
    ASSERT(cJSON_IsArray(jget(o, "stages")));
    ASSERT(cJSON_IsObject(jget(o, "totals")));
    cJSON_Delete(o);
    http_reply_free(&r);
    ASSERT_EQ(
        http_post_json(port, "/v1/feedback", "{\"query_id\":\"q-et\",\"reward\":1}", "t0ken", &r),
        0);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "\"status\":\"ok\"");
    http_reply_free(&r);
    ASSERT_EQ(
        http_post_json(port, "/v1/feedback", "{\"query_id\":\"nope\",\"reward\":1}", "t0ken", &r),
        0);
    ASSERT_EQ(r.status, 404);
    ASSERT_CONTAINS(r.body, "\"code\":\"unknown_query_id\"");
    http_reply_free(&r);

    /* /v1/route: every stage's decision, nothing run. */
    ASSERT_EQ(
        http_post_json(port, "/v1/route", "{\"query\":\"embedding vector question\"}", "t0ken", &r),
        0);
    ASSERT_EQ(r.status, 200);
    o = cJSON_Parse(r.body);
    ASSERT_GE(cJSON_GetArraySize(jget(o, "stages")), 5);
    bool saw_index = false;
    const cJSON *st;
    cJSON_ArrayForEach(st, jget(o, "stages"))
    {
        if (strcmp(jstr(st, "stage"), "index") == 0) {
            saw_index = true;
            ASSERT_STR_EQ(jstr(st, "choice"), "fused");
        }
    }
    ASSERT(saw_index);
    /* Nothing ran: no retrieval step, no generator call. */
    ASSERT_EQ(cJSON_GetArraySize(jget(o, "steps")), 0);
    ASSERT_EQ(jget(o, "totals.retrieval_steps")->valueint, 0);
    ASSERT_EQ(jget(o, "totals.generator_calls")->valueint, 0);
    cJSON_Delete(o);
    http_reply_free(&r);

    /* Error classes: 401, 404, 405 (+Allow), 413, invalid JSON. */
    char hv[128];
    ASSERT_EQ(http_post_json(port, "/v1/query", "{\"query\":\"x\"}", NULL, &r), 0);
    ASSERT_EQ(r.status, 401);
    http_reply_free(&r);
    ASSERT_EQ(http_post_json(port, "/v1/query", "{\"query\":\"x\"}", "wrong", &r), 0);
    ASSERT_EQ(r.status, 401);
    ASSERT_CONTAINS(r.body, "\"type\":\"authentication_error\"");
    http_reply_free(&r);
    ASSERT_EQ(http_get(port, "/v2/nothing", &r), 0);
    ASSERT_EQ(r.status, 404);
    http_reply_free(&r);
    ASSERT_EQ(http_get(port, "/v1/retrieve", &r), 0);
    ASSERT_EQ(r.status, 405);
    ASSERT_STR_EQ(http_header(&r, "Allow", hv, sizeof(hv)), "POST");
    http_reply_free(&r);
    char *big = malloc(100 * 1024);
    ASSERT(big != NULL);
    memset(big, 'a', 100 * 1024 - 1);
    big[100 * 1024 - 1] = '\0';
    ASSERT_EQ(http_post_json(port, "/v1/query", big, "t0ken", &r), 0);
    free(big);
    ASSERT_EQ(r.status, 413);
    http_reply_free(&r);
    ASSERT_EQ(http_post_json(port, "/v1/query", "{query: 1}", "t0ken", &r), 0);
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "\"code\":\"invalid_json\"");
    http_reply_free(&r);

    /* /metrics */
    ASSERT_EQ(http_get(port, "/metrics", &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(http_header(&r, "Content-Type", hv, sizeof(hv)), "text/plain");
    ASSERT_CONTAINS(r.body,
                    "dynrag_http_requests_total{endpoint=\"/v1/retrieve\",status=\"200\"} 3");
    ASSERT_CONTAINS(r.body, "dynrag_http_requests_total{endpoint=\"/v1/query\",status=\"401\"} 2");
    ASSERT_CONTAINS(r.body, "dynrag_route_decisions_total{stage=\"index\",option=\"fused\"}");
    ASSERT_CONTAINS(r.body, "dynrag_queries_total 1\n");
    http_reply_free(&r);

    /* Graceful stop flushes the route log: one line for the one query. */
    dynrag_error err;
    ASSERT_OK(dynrag_server_stop(s, &err), &err);
    dynrag_server_close(s);
    ASSERT_EQ(count_lines(f.log), 1);
    dynrag_pipeline_free(f.p);
}

/* The exact request shape of the OpenAI Python SDK (v1): headers included. */
static int sdk_chat(int port, const char *key, bool stream, http_reply *r)
{
    char auth[128];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    const char *hdrs[] = {"Content-Type: application/json",
                          "Accept: application/json",
                          "User-Agent: OpenAI/Python 1.51.0",
                          "X-Stainless-Lang: python",
                          "X-Stainless-Package-Version: 1.51.0",
                          "X-Stainless-Runtime: CPython",
                          "X-Stainless-Retry-Count: 0",
                          auth,
                          NULL};
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"messages\": [{\"role\": \"system\", \"content\": \"You are helpful.\"}, "
             "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Who created "
             "the Python programming language?\"}]}], \"model\": \"dynrag-test\", "
             "\"max_tokens\": 128, \"temperature\": 0.0, \"n\": 1, \"user\": \"u-1\"%s}",
             stream ? ", \"stream\": true, \"stream_options\": {\"include_usage\": true}" : "");
    return http_request(port, "POST", "/v1/chat/completions", hdrs, body, strlen(body), 0, r);
}

TEST(server_openai_chat_completions)
{
    fixture f;
    ASSERT_EQ(fixture_make(&f), 0);
    dynrag_server *s = start_server(&f, "sk-test", 2, 10000);
    ASSERT(s != NULL);
    int port = dynrag_server_port(s);
    http_reply r;
    ASSERT_EQ(sdk_chat(port, "sk-test", false, &r), 0);
    ASSERT_EQ(r.status, 200);
    cJSON *o = cJSON_Parse(r.body);
    ASSERT(o != NULL);
    ASSERT_STR_EQ(jstr(o, "object"), "chat.completion");
    ASSERT_STR_EQ(jstr(o, "model"), "dynrag-test");
    ASSERT(strncmp(jstr(o, "id"), "chatcmpl-", 9) == 0);
    ASSERT(cJSON_IsNumber(jget(o, "created")));
    ASSERT_STR_EQ(jstr(o, "choices.0.message.role"), "assistant");
    ASSERT_CONTAINS(jstr(o, "choices.0.message.content"), "Guido");
    ASSERT_STR_EQ(jstr(o, "choices.0.finish_reason"), "stop");
    int pt = jget(o, "usage.prompt_tokens")->valueint;
    int ct = jget(o, "usage.completion_tokens")->valueint;
    ASSERT_GT(pt, 0);
    ASSERT_GT(ct, 0);
    ASSERT_EQ(jget(o, "usage.total_tokens")->valueint, pt + ct);
    ASSERT_STR_EQ(jstr(o, "dynrag.citations.0.doc_id"), "d4");
    char *answer = strdup(jstr(o, "choices.0.message.content"));
    cJSON_Delete(o);
    http_reply_free(&r);

    /* Streaming: role chunk, content chunks, stop chunk, usage chunk, [DONE]. */
    ASSERT_EQ(sdk_chat(port, "sk-test", true, &r), 0);
    ASSERT_EQ(r.status, 200);
    char hv[128];
    ASSERT_STR_EQ(http_header(&r, "Content-Type", hv, sizeof(hv)), "text/event-stream");
    ASSERT(strncmp(r.body, "data: {", 7) == 0);
    size_t n = strlen(r.body);
    ASSERT(n > 14 && strcmp(r.body + n - 14, "data: [DONE]\n\n") == 0);
    char content[4096] = "";
    int stops = 0, usage = 0;
    for (char *p = r.body; (p = strstr(p, "data: {")) != NULL; p++) {
        char *end = strstr(p, "\n\n");
        ASSERT(end != NULL);
        *end = '\0';
        cJSON *c = cJSON_Parse(p + 6);
        *end = '\n';
        ASSERT(c != NULL);
        ASSERT_STR_EQ(jstr(c, "object"), "chat.completion.chunk");
        const char *piece = jstr(c, "choices.0.delta.content");
        if (piece)
            strncat(content, piece, sizeof(content) - strlen(content) - 1);
        const char *fr = jstr(c, "choices.0.finish_reason");
        if (fr && strcmp(fr, "stop") == 0)
            stops++;
        if (cJSON_IsObject(jget(c, "usage")))
            usage++;
        cJSON_Delete(c);
    }
    ASSERT_STR_EQ(content, answer);
    ASSERT_EQ(stops, 1);
    ASSERT_EQ(usage, 1);
    free(answer);
    http_reply_free(&r);

    /* Wrong key, and a request without a user message. */
    ASSERT_EQ(sdk_chat(port, "sk-wrong", false, &r), 0);
    ASSERT_EQ(r.status, 401);
    http_reply_free(&r);
    ASSERT_EQ(http_post_json(port, "/v1/chat/completions",
                             "{\"model\":\"m\",\"messages\":[{\"role\":\"system\","
                             "\"content\":\"x\"}]}",
                             "sk-test", &r),
              0);
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "\"param\":\"messages\"");
    http_reply_free(&r);
    dynrag_server_close(s);
    dynrag_pipeline_free(f.p);
}

/* ---- concurrency ----------------------------------------------------------- */

static const char *const cqueries[] = {
    "ranking function", "Eiffel Tower",      "vector search cosine", "Python language",
    "highest mountain", "Moon landing 1969", "light energy plants",  "hybrid ranking fusion",
};
#define N_CQ (sizeof(cqueries) / sizeof(cqueries[0]))

/* The comparable part of a reply: retrieve hits, or query answer+citations. */
static char *essence(const char *body, bool query)
{
    cJSON *o = cJSON_Parse(body);
    if (o == NULL)
        return NULL;
    cJSON *keep = cJSON_CreateObject();
    if (query) {
        cJSON_AddItemToObject(keep, "answer", cJSON_Duplicate(jget(o, "answer"), 1));
        cJSON_AddItemToObject(keep, "citations", cJSON_Duplicate(jget(o, "citations"), 1));
    } else {
        cJSON_AddItemToObject(keep, "hits", cJSON_Duplicate(jget(o, "hits"), 1));
        cJSON_AddItemToObject(keep, "mode", cJSON_Duplicate(jget(o, "mode"), 1));
    }
    char *s = cJSON_PrintUnformatted(keep);
    cJSON_Delete(keep);
    cJSON_Delete(o);
    return s;
}

/* The essence of the reply, or NULL; *status gets the HTTP status (-1 when
 * the request itself failed) and, when non-NULL, *raw a copy of the body. */
static char *ask_full(int port, size_t qi, bool query, long *status, char **raw)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"query\":\"%s\",\"k\":4}", cqueries[qi]);
    http_reply r;
    char *e = NULL;
    *status = -1;
    if (http_post_json(port, query ? "/v1/query" : "/v1/retrieve", body, NULL, &r) == 0) {
        *status = r.status;
        if (r.status == 200)
            e = essence(r.body, query);
        if (raw)
            *raw = r.body ? strdup(r.body) : NULL;
    }
    http_reply_free(&r);
    return e;
}

static char *ask(int port, size_t qi, bool query)
{
    long status;
    return ask_full(port, qi, query, &status, NULL);
}

typedef struct worker {
    int port;
    int rounds;
    char **expect; /* [N_CQ * 2] */
    int ok, bad;
    char first_bad[2048]; /* what the first mismatch was, for the failure message */
} worker;

static void *worker_main(void *p)
{
    worker *w = p;
    for (int r = 0; r < w->rounds; r++) {
        for (size_t i = 0; i < N_CQ * 2; i++) {
            size_t qi = (i + (size_t)r) % (N_CQ * 2);
            long status;
            char *raw = NULL;
            char *e = ask_full(w->port, qi / 2, qi % 2 == 1, &status, &raw);
            if (e && w->expect[qi] && strcmp(e, w->expect[qi]) == 0) {
                w->ok++;
            } else {
                if (w->bad++ == 0)
                    snprintf(w->first_bad, sizeof(w->first_bad),
                             "query %zu (%s): status %ld\n  got:      %.700s\n  expected: %.700s",
                             qi, qi % 2 ? "query" : "retrieve", status, e ? e : (raw ? raw : "-"),
                             w->expect[qi] ? w->expect[qi] : "-");
            }
            free(e);
            free(raw);
        }
    }
    return NULL;
}

TEST(server_concurrent_clients_match_serial)
{
    fixture f;
    ASSERT_EQ(fixture_make(&f), 0);
    dynrag_server *s = start_server(&f, NULL, 4, 30000);
    ASSERT(s != NULL);
    int port = dynrag_server_port(s);
    char *expect[N_CQ * 2];
    for (size_t i = 0; i < N_CQ * 2; i++) {
        expect[i] = ask(port, i / 2, i % 2 == 1);
        ASSERT(expect[i] != NULL);
    }
    pthread_t t[8];
    worker w[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (worker){port, 3, expect, 0, 0, ""};
        ASSERT_EQ(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 8; i++) {
        if (w[i].bad)
            fprintf(stderr, "worker %d: %s\n", i, w[i].first_bad);
        ASSERT_EQ(w[i].bad, 0);
        ASSERT_EQ(w[i].ok, 3 * (int)N_CQ * 2);
    }
    for (size_t i = 0; i < N_CQ * 2; i++)
        free(expect[i]);
    dynrag_server_close(s);
    /* Every /v1/query was logged: N_CQ serial + 8 x 3 x N_CQ parallel. */
    ASSERT_EQ(count_lines(f.log), N_CQ + 8 * 3 * N_CQ);
    dynrag_pipeline_free(f.p);
}

/* Removes the index files of dir (a rebuild from scratch follows). */
static void remove_index_files(const char *dir)
{
    static const char *const names[] = {"index.db", "index.db-wal", "index.db-shm",
                                        "dense.faiss", "bm25.idx"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char p[1200];
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
}

/* The doc id of the best BM25 hit for q through handle idx ("" for none). */
static void top_doc(dynrag_index *idx, const char *q, char *out, size_t size)
{
    dynrag_search_options so;
    dynrag_search_options_init(&so);
    so.mode = DYNRAG_SEARCH_BM25;
    so.k = 1;
    dynrag_hits h;
    dynrag_error err;
    out[0] = '\0';
    if (dynrag_index_search(idx, q, &so, &h, &err) == DYNRAG_OK && h.n > 0)
        snprintf(out, size, "%s", h.hits[0].doc_id);
    dynrag_hits_free(&h);
}

TEST(index_handle_follows_rebuild_refuses_other_embedder)
{
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/idx", test_tmpdir());
    const char *first = test_write_file("first.jsonl", docs_jsonl);
    char first_path[1100];
    snprintf(first_path, sizeof(first_path), "%s", first);
    const char *inputs[] = {first_path};
    dynrag_error err;
    ASSERT_OK(dynrag_index_add(dir, inputs, 1, NULL, NULL, &err), &err);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    char got[64];
    top_doc(idx, "Eiffel Tower", got, sizeof(got));
    ASSERT_STR_EQ(got, "d3");
    dynrag_index_info before;
    ASSERT_OK(dynrag_index_get_info(idx, &before), &err);
    /* Deleted and rebuilt from scratch (same embedder): a new database,
     * whatever its generation, is picked up. */
    remove_index_files(dir);
    char second[1100];
    snprintf(second, sizeof(second), "%s",
             test_write_file("second.jsonl",
                             "{\"_id\":\"n1\",\"title\":\"Tower\",\"text\":\"The Eiffel Tower "
                             "of the new index.\"}\n"
                             "{\"_id\":\"n2\",\"title\":\"Other\",\"text\":\"Something "
                             "else.\"}\n"));
    const char *inputs2[] = {second};
    ASSERT_OK(dynrag_index_add(dir, inputs2, 1, NULL, NULL, &err), &err);
    top_doc(idx, "Eiffel Tower", got, sizeof(got));
    ASSERT_STR_EQ(got, "n1");
    dynrag_index_info info;
    ASSERT_OK(dynrag_index_get_info(idx, &info), &err);
    ASSERT_EQ(info.docs, 2);
    /* Gone (mid-rebuild): the handle keeps serving what it had, and takes
     * the rebuilt index at once when it appears. */
    remove_index_files(dir);
    for (int i = 0; i < 3; i++) {
        top_doc(idx, "Eiffel Tower", got, sizeof(got));
        ASSERT_STR_EQ(got, "n1");
    }
    ASSERT_OK(dynrag_index_add(dir, inputs, 1, NULL, NULL, &err), &err);
    top_doc(idx, "Eiffel Tower", got, sizeof(got));
    ASSERT_STR_EQ(got, "d3");
    /* Rebuilt with another dimension: not swapped in (callers hold
     * vectors of the old one); the handle keeps serving what it had. */
    remove_index_files(dir);
    const char *inputs3[] = {second};
    dynrag_build_options bo;
    dynrag_build_options_init(&bo);
    bo.embedder.dim = before.dim == 64 ? 128 : 64;
    ASSERT_OK(dynrag_index_add(dir, inputs3, 1, &bo, NULL, &err), &err);
    for (int i = 0; i < 3; i++) {
        top_doc(idx, "Eiffel Tower", got, sizeof(got));
        ASSERT_STR_EQ(got, "d3");
    }
    ASSERT_OK(dynrag_index_get_info(idx, &info), &err);
    ASSERT_EQ(info.docs, 8);
    ASSERT_EQ(info.dim, before.dim);
    ASSERT_EQ(dynrag_index_dim(idx), before.dim);
    dynrag_index_close(idx);
}

/* ---- deadlines and idle connections ------------------------------------------ */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

TEST(server_request_deadline_and_idle_timeout)
{
    fixture f;
    ASSERT_EQ(fixture_make(&f), 0);
    dynrag_server *s = start_server(&f, NULL, 2, 50);
    ASSERT(s != NULL);
    int port = dynrag_server_port(s);
    /* Headers now, body 200 ms later: the request did not arrive within the
     * 50 ms limit -> 408 from the front door (it never reached a handler). */
    int fd = raw_connect(port);
    ASSERT(fd >= 0);
    const char *body = "{\"query\":\"Eiffel Tower\"}";
    char head[256];
    snprintf(head, sizeof(head),
             "POST /v1/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n",
             strlen(body));
    ASSERT_EQ(write(fd, head, strlen(head)), (ssize_t)strlen(head));
    sleep_ms(200);
    ASSERT_EQ(write(fd, body, strlen(body)), (ssize_t)strlen(body));
    char resp[4096];
    ssize_t n = read(fd, resp, sizeof(resp) - 1);
    ASSERT_GT(n, 0);
    resp[n] = '\0';
    close(fd);
    ASSERT(strncmp(resp, "HTTP/1.1 408", 12) == 0);
    ASSERT_CONTAINS(resp, "\"code\":\"request_timeout\"");
    /* The same with a query id: the query never ran, so its id is free, and
     * it is taken by the next query that succeeds (never a 409; a slow host
     * may time out a prompt try too, with 504 after it ran: then the id
     * stays taken and the next try gets 409). */
    const char *idbody = "{\"query\":\"Eiffel Tower\",\"id\":\"late-1\"}";
    for (int round = 0; round < 6; round++) {
        fd = raw_connect(port);
        ASSERT(fd >= 0);
        snprintf(head, sizeof(head),
                 "POST /v1/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 strlen(idbody));
        ASSERT_EQ(write(fd, head, strlen(head)), (ssize_t)strlen(head));
        if (round == 0)
            sleep_ms(200);
        ASSERT_EQ(write(fd, idbody, strlen(idbody)), (ssize_t)strlen(idbody));
        n = read(fd, resp, sizeof(resp) - 1);
        ASSERT_GT(n, 0);
        resp[n] = '\0';
        close(fd);
        if (round == 0) {
            ASSERT(strncmp(resp, "HTTP/1.1 408", 12) == 0);
            continue;
        }
        if (strncmp(resp, "HTTP/1.1 408", 12) == 0) {
            ASSERT_LT(round, 5);
            continue;
        }
        if (strncmp(resp, "HTTP/1.1 504", 12) == 0)
            break; /* ran, too late on a slow host: the id is now taken */
        ASSERT(strncmp(resp, "HTTP/1.1 200", 12) == 0);
        break;
    }
    /* A connection that sends half a request gets 408 once the limit has
     * passed since its first byte, and is closed. */
    fd = raw_connect(port);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, "GET /healthz HT", 15), 15);
    int64_t t0 = time(NULL);
    n = read(fd, resp, sizeof(resp) - 1);
    ASSERT_GT(n, 0);
    resp[n] = '\0';
    ASSERT(strncmp(resp, "HTTP/1.1 408", 12) == 0);
    n = read(fd, resp, sizeof(resp));
    close(fd);
    ASSERT_LE(n, 0);
    ASSERT_LE(time(NULL) - t0, 5);
    dynrag_server_close(s);
    dynrag_pipeline_free(f.p);
}

/* ---- serving after a re-index -------------------------------------------------- */

typedef struct reindex_client {
    int port;
    atomic_int *stop;
    int ok, bad, stale; /* stale: a lower version after a higher one */
    int last_version;
    char first_bad[1024];
} reindex_client;

/* The version number in the "live" document's text of a /v1/retrieve
 * reply ("... version N ..."), or -1. */
static int live_version(const char *body)
{
    cJSON *o = cJSON_Parse(body);
    const char *id = jstr(o, "hits.0.doc_id");
    const char *text = jstr(o, "hits.0.text");
    const char *v = text ? strstr(text, "version ") : NULL;
    int n = -1;
    if (id && strcmp(id, "live") == 0 && v)
        n = (int)strtol(v + 8, NULL, 10);
    cJSON_Delete(o);
    return n;
}

static void *reindex_client_main(void *p)
{
    reindex_client *c = p;
    while (!atomic_load(c->stop)) {
        http_reply r;
        bool other = (c->ok + c->bad) % 2 == 1;
        int rc = http_post_json(c->port, "/v1/retrieve",
                                other ? "{\"query\":\"Eiffel Tower Paris\",\"k\":2}"
                                      : "{\"query\":\"zebra crossing\",\"k\":2,\"mode\":\"bm25\"}",
                                NULL, &r);
        int v = rc == 0 && r.status == 200 && !other ? live_version(r.body) : c->last_version;
        bool good = rc == 0 && r.status == 200 && v >= 0 &&
                    (!other || strstr(r.body, "\"doc_id\":\"d3\"") != NULL);
        if (good) {
            c->ok++;
            if (v < c->last_version)
                c->stale++;
            if (v > c->last_version)
                c->last_version = v;
        } else if (c->bad++ == 0) {
            snprintf(c->first_bad, sizeof(c->first_bad), "status %ld: %.900s", r.status,
                     r.body ? r.body : "-");
        }
        http_reply_free(&r);
    }
    return NULL;
}

/* Replaces the "live" document with version v (a new generation). */
static int write_live(fixture *f, int v)
{
    char name[64], line[256];
    snprintf(name, sizeof(name), "live%d.jsonl", v);
    snprintf(line, sizeof(line),
             "{\"_id\":\"live\",\"title\":\"Zebra\",\"text\":\"A zebra crossing, version %d of "
             "the live document.\"}\n",
             v);
    char path[1100];
    snprintf(path, sizeof(path), "%s", test_write_file(name, line));
    const char *inputs[] = {path};
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_index_add(f->index, inputs, 1, NULL, NULL, &err);
    if (rc != DYNRAG_OK)
        fprintf(stderr, "re-index: %s\n", dynrag_errmsg(&err));
    return rc;
}

/* The generation a fresh handle opens, or -1. */
static long long fresh_generation(const char *dir)
{
    dynrag_index *idx = NULL;
    dynrag_error err;
    dynrag_index_info info;
    long long g = -1;
    if (dynrag_index_open(dir, NULL, &idx, &err) == DYNRAG_OK &&
        dynrag_index_get_info(idx, &info) == DYNRAG_OK)
        g = info.generation;
    dynrag_index_close(idx);
    return g;
}

/* Re-indexes 5 times under 4 clients' load; with_inotify false runs the
 * stat fallback of the change check. */
static void reindex_under_load(bool with_inotify)
{
    if (!with_inotify)
        setenv("DYNRAG_TEST_NO_INOTIFY", "1", 1);
    fixture f;
    ASSERT_EQ(fixture_make(&f), 0);
    ASSERT_EQ(write_live(&f, 0), DYNRAG_OK);
    dynrag_server *s = start_server(&f, NULL, 4, 30000);
    ASSERT(s != NULL);
    int port = dynrag_server_port(s);
    atomic_int stop;
    atomic_init(&stop, 0);
    reindex_client c[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        c[i].port = port;
        c[i].stop = &stop;
        ASSERT_EQ(pthread_create(&t[i], NULL, reindex_client_main, &c[i]), 0);
    }
    for (int v = 1; v <= 5; v++) {
        sleep_ms(30);
        ASSERT_EQ(write_live(&f, v), DYNRAG_OK);
        long long gen = fresh_generation(f.index);
        ASSERT_GT(gen, 0);
        /* The first request after the write sees it: the new text, the
         * old one gone, and the generation in /healthz. */
        http_reply r;
        ASSERT_EQ(http_post_json(port, "/v1/retrieve",
                                 "{\"query\":\"zebra crossing\",\"k\":5,\"mode\":\"bm25\"}", NULL,
                                 &r),
                  0);
        ASSERT_EQ(r.status, 200);
        if (live_version(r.body) != v)
            fprintf(stderr, "reply: %s\n", r.body);
        ASSERT_EQ(live_version(r.body), v);
        cJSON *o = cJSON_Parse(r.body);
        ASSERT_EQ(cJSON_GetArraySize(jget(o, "hits")), 1); /* one "live" document */
        cJSON_Delete(o);
        http_reply_free(&r);
        ASSERT_EQ(http_get(port, "/healthz", &r), 0);
        o = cJSON_Parse(r.body);
        ASSERT_EQ((long long)jget(o, "generation")->valuedouble, gen);
        ASSERT_EQ(jget(o, "docs")->valueint, 9);
        cJSON_Delete(o);
        http_reply_free(&r);
    }
    sleep_ms(30);
    atomic_store(&stop, 1);
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        if (c[i].bad)
            fprintf(stderr, "client %d: %s\n", i, c[i].first_bad);
        ASSERT_EQ(c[i].bad, 0);
        ASSERT_EQ(c[i].stale, 0);
        total += c[i].ok;
    }
    ASSERT_GT(total, 20);
    dynrag_server_close(s);
    dynrag_pipeline_free(f.p);
    unsetenv("DYNRAG_TEST_NO_INOTIFY");
}

TEST(server_reindex_under_load)
{
    reindex_under_load(true);
}

TEST(server_reindex_under_load_stat_fallback)
{
    reindex_under_load(false);
}

/* The index folder removed (its inotify watch ends) and made again at the
 * same path: requests meanwhile get the old snapshot or 503
 * index_unavailable (never 404 or 500), and the rebuilt folder is served
 * after its commit, with and without inotify. */
static void folder_removed_and_rebuilt(bool with_inotify)
{
    if (!with_inotify)
        setenv("DYNRAG_TEST_NO_INOTIFY", "1", 1);
    fixture f;
    ASSERT_EQ(fixture_make(&f), 0);
    ASSERT_EQ(write_live(&f, 0), DYNRAG_OK);
    dynrag_server *s = start_server(&f, NULL, 2, 30000);
    ASSERT(s != NULL);
    int port = dynrag_server_port(s);
    http_reply r;
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f.index);
    ASSERT_EQ(test_run(cmd, NULL), 0);
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(http_post_json(port, "/v1/retrieve",
                                 "{\"query\":\"zebra crossing\",\"k\":5,\"mode\":\"bm25\"}",
                                 NULL, &r),
                  0);
        if (r.status != 200 && r.status != 503)
            fprintf(stderr, "while removed: %ld %s\n", r.status, r.body);
        ASSERT(r.status == 200 || r.status == 503);
        if (r.status == 503)
            ASSERT_CONTAINS(r.body, "index_unavailable");
        http_reply_free(&r);
        sleep_ms(20);
    }
    /* The folder again, with version 7 of the live document. */
    char docs[1100];
    snprintf(docs, sizeof(docs), "%s/docs.jsonl", f.dir);
    const char *inputs[] = {docs};
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_index_add(f.index, inputs, 1, NULL, NULL, &err), &err);
    ASSERT_EQ(write_live(&f, 7), DYNRAG_OK);
    int seen = -1;
    for (int i = 0; i < 100 && seen != 7; i++) {
        ASSERT_EQ(http_post_json(port, "/v1/retrieve",
                                 "{\"query\":\"zebra crossing\",\"k\":5,\"mode\":\"bm25\"}",
                                 NULL, &r),
                  0);
        ASSERT(r.status == 200 || r.status == 503);
        if (r.status == 200)
            seen = live_version(r.body);
        http_reply_free(&r);
        if (seen != 7)
            sleep_ms(20);
    }
    ASSERT_EQ(seen, 7);
    ASSERT_EQ(http_get(port, "/healthz", &r), 0);
    cJSON *o = cJSON_Parse(r.body);
    ASSERT_EQ((long long)jget(o, "generation")->valuedouble, fresh_generation(f.index));
    cJSON_Delete(o);
    http_reply_free(&r);
    dynrag_server_close(s);
    dynrag_pipeline_free(f.p);
    unsetenv("DYNRAG_TEST_NO_INOTIFY");
}

TEST(server_index_folder_removed_and_rebuilt)
{
    folder_removed_and_rebuilt(true);
}

TEST(server_index_folder_removed_and_rebuilt_stat_fallback)
{
    folder_removed_and_rebuilt(false);
}

/* A query that ran but missed its time limit (504) keeps its id: the route
 * log may hold it, so the id cannot be used again. Ids the server makes
 * cannot be guessed from one another. */
TEST(server_query_id_kept_after_timeout)
{
    fixture f;
    ASSERT_EQ(fixture_make(&f), 0);
    dynrag_server *s = start_server(&f, NULL, 2, 1); /* a 1 ms limit: every query is late */
    ASSERT(s != NULL);
    int port = dynrag_server_port(s);
    http_reply r;
    int late = 0;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(http_post_json(port, "/v1/query",
                                 "{\"query\":\"Where is the Eiffel Tower?\",\"id\":\"late-1\"}",
                                 NULL, &r),
                  0);
        if (i == 0) {
            ASSERT_EQ(r.status, 504);
            late++;
        } else {
            ASSERT_EQ(r.status, 409);
            ASSERT_CONTAINS(r.body, "duplicate_query_id");
        }
        http_reply_free(&r);
    }
    ASSERT_EQ(late, 1);
    dynrag_server_close(s);
    /* Generated ids: the last 16 hex digits differ in many bits between
     * consecutive queries (a keyed mix, not a counter). */
    dynrag_engine *e = NULL;
    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    eo.no_log = true;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_engine_open(f.p, &eo, &e, &err), &err);
    unsigned long long prev = 0;
    int min_bits = 64;
    for (int i = 0; i < 50; i++) {
        dynrag_result *res = NULL;
        dynrag_query_options qo;
        dynrag_query_options_init(&qo);
        qo.route_only = true;
        ASSERT_OK(dynrag_engine_query(e, "Eiffel Tower", &qo, &res, &err), &err);
        const char *id = dynrag_result_id(res);
        const char *dash = strrchr(id, '-');
        ASSERT(dash != NULL && strlen(dash + 1) == 16);
        unsigned long long v = strtoull(dash + 1, NULL, 16);
        if (i > 0)
            min_bits = __builtin_popcountll(v ^ prev) < min_bits ? __builtin_popcountll(v ^ prev) : min_bits;
        prev = v;
        dynrag_result_free(res);
    }
    ASSERT_GT(min_bits, 8);
    dynrag_engine_close(e);
    dynrag_pipeline_free(f.p);
}

/* ---- OpenAI models, duplicate query ids ------------------------------------------ */

typedef struct dup_arg {
    int port;
    const char *body;
    long status;
} dup_arg;

static void *dup_main(void *p)
{
    dup_arg *a = p;
    http_reply r;
    a->status = http_post_json(a->port, "/v1/query", a->body, "k", &r) == 0 ? r.status : 0;
    http_reply_free(&r);
    return NULL;
}

TEST(server_models_and_duplicate_query_ids)
{
    fixture f;
    ASSERT_EQ(fixture_make(&f), 0);
    dynrag_server *s = start_server(&f, "k", 4, 10000);
    ASSERT(s != NULL);
    int port = dynrag_server_port(s);
    http_reply r;
    const char *auth[] = {"Authorization: Bearer k", NULL};
    /* GET /v1/models: OpenAI's list with the served pipeline; behind the key. */
    ASSERT_EQ(http_request(port, "GET", "/v1/models", auth, NULL, 0, 0, &r), 0);
    ASSERT_EQ(r.status, 200);
    cJSON *o = cJSON_Parse(r.body);
    ASSERT_STR_EQ(jstr(o, "object"), "list");
    ASSERT_EQ(cJSON_GetArraySize(jget(o, "data")), 1);
    ASSERT_STR_EQ(jstr(o, "data.0.id"), "server-test");
    ASSERT_STR_EQ(jstr(o, "data.0.object"), "model");
    ASSERT_STR_EQ(jstr(o, "data.0.owned_by"), "dynrag");
    ASSERT_GT(jget(o, "data.0.created")->valuedouble, 1.6e9);
    cJSON_Delete(o);
    http_reply_free(&r);
    ASSERT_EQ(http_get(port, "/v1/models", &r), 0);
    ASSERT_EQ(r.status, 401);
    http_reply_free(&r);
    ASSERT_EQ(http_request(port, "GET", "/v1/models/server-test", auth, NULL, 0, 0, &r), 0);
    ASSERT_EQ(r.status, 200);
    o = cJSON_Parse(r.body);
    ASSERT_STR_EQ(jstr(o, "id"), "server-test");
    ASSERT_STR_EQ(jstr(o, "object"), "model");
    cJSON_Delete(o);
    http_reply_free(&r);
    ASSERT_EQ(http_request(port, "GET", "/v1/models/gpt-4o", auth, NULL, 0, 0, &r), 0);
    ASSERT_EQ(r.status, 404);
    ASSERT_CONTAINS(r.body, "\"code\":\"model_not_found\"");
    http_reply_free(&r);
    ASSERT_EQ(http_request(port, "POST", "/v1/models", auth, "{}", 2, 0, &r), 0);
    ASSERT_EQ(r.status, 405);
    http_reply_free(&r);
    ASSERT_EQ(http_request(port, "GET", "/v1/models/a/b", auth, NULL, 0, 0, &r), 0);
    ASSERT_EQ(r.status, 404);
    http_reply_free(&r);

    /* A query id is used once: the second /v1/query with it is a 409 and
     * writes no record. */
    ASSERT_EQ(http_post_json(port, "/v1/query", "{\"query\":\"Eiffel Tower\",\"id\":\"dup-1\"}",
                             "k", &r),
              0);
    ASSERT_EQ(r.status, 200);
    http_reply_free(&r);
    ASSERT_EQ(http_post_json(port, "/v1/query", "{\"query\":\"Moon\",\"id\":\"dup-1\"}", "k", &r),
              0);
    ASSERT_EQ(r.status, 409);
    ASSERT_CONTAINS(r.body, "\"code\":\"duplicate_query_id\"");
    ASSERT_CONTAINS(r.body, "\"param\":\"id\"");
    http_reply_free(&r);
    /* /v1/route records nothing: its id is not taken. */
    ASSERT_EQ(http_post_json(port, "/v1/route", "{\"query\":\"Moon\",\"id\":\"dup-1\"}", "k", &r),
              0);
    ASSERT_EQ(r.status, 200);
    http_reply_free(&r);
    /* Eight clients race for each of five fresh ids: exactly one wins. */
    for (int round = 0; round < 5; round++) {
        char body[96];
        snprintf(body, sizeof(body), "{\"query\":\"Python language\",\"id\":\"race-%d\"}", round);
        dup_arg a[8];
        pthread_t t[8];
        for (int i = 0; i < 8; i++) {
            a[i] = (dup_arg){port, body, 0};
            ASSERT_EQ(pthread_create(&t[i], NULL, dup_main, &a[i]), 0);
        }
        int ok = 0, conflict = 0;
        for (int i = 0; i < 8; i++) {
            pthread_join(t[i], NULL);
            ok += a[i].status == 200;
            conflict += a[i].status == 409;
        }
        ASSERT_EQ(ok, 1);
        ASSERT_EQ(conflict, 7);
    }
    dynrag_server_close(s);
    /* One record per accepted query: dup-1 and five races. */
    ASSERT_EQ(count_lines(f.log), 6);
    dynrag_pipeline_free(f.p);
}

/* ---- the CLI binary ------------------------------------------------------------ */

/* One keep-alive connection sending /v1/query until the server refuses
 * or closes it. */
typedef struct ka_client {
    int port;
    int ok;      /* 200 replies read */
    int refused; /* 503 shutting_down replies read */
    int other;   /* anything else */
} ka_client;

static void *ka_client_main(void *p)
{
    ka_client *c = p;
    int fd = raw_connect(c->port);
    if (fd < 0) {
        c->other++;
        return NULL;
    }
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const char *body = "{\"query\":\"Who landed on the Moon?\"}";
    char req[512];
    snprintf(req, sizeof(req),
             "POST /v1/query HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer cli-key\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    for (;;) {
        if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
            break;
        char buf[16384];
        size_t n = 0;
        buf[0] = '\0';
        for (;;) { /* one reply: headers, then Content-Length bytes */
            char *end = strstr(buf, "\r\n\r\n");
            const char *cl = end ? strstr(buf, "Content-Length: ") : NULL;
            if (end && n >= (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 16, NULL, 10) : 0))
                break;
            ssize_t r = n + 1 < sizeof(buf) ? read(fd, buf + n, sizeof(buf) - 1 - n) : -1;
            if (r <= 0)
                break;
            n += (size_t)r;
            buf[n] = '\0';
        }
        if (n == 0)
            break; /* closed */
        if (strncmp(buf, "HTTP/1.1 200", 12) == 0) {
            c->ok++;
            continue;
        }
        if (strncmp(buf, "HTTP/1.1 503", 12) == 0 && strstr(buf, "shutting_down") &&
            strstr(buf, "Connection: close"))
            c->refused++;
        else
            c->other++;
        break;
    }
    close(fd);
    return NULL;
}

TEST(server_cli_sigterm_drains_keepalive_clients)
{
    fixture f;
    ASSERT_EQ(fixture_make(&f), 0);
    dynrag_pipeline_free(f.p);
    int out[2];
    ASSERT_EQ(pipe(out), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    setenv("DYNRAG_TEST_SERVE_KEY", "cli-key", 1);
    char *argv[] = {(char *)test_cli_path(), "serve", "--pipeline", f.yaml, "--port", "0",
                    "--threads", "2", "--api-key-env", "DYNRAG_TEST_SERVE_KEY",
                    "--drain-timeout", "5", NULL};
    pid_t pid;
    ASSERT_EQ(posix_spawn(&pid, test_cli_path(), &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    FILE *so = fdopen(out[0], "r");
    char line[256] = "";
    ASSERT(fgets(line, sizeof(line), so) != NULL);
    int port = 0;
    ASSERT_EQ(sscanf(line, "listening on http://127.0.0.1:%d", &port), 1);
    /* Four keep-alive clients send queries back to back through SIGTERM. */
    ka_client c[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        c[i] = (ka_client){port, 0, 0, 0};
        ASSERT_EQ(pthread_create(&t[i], NULL, ka_client_main, &c[i]), 0);
    }
    sleep_ms(300);
    ASSERT_EQ(kill(pid, SIGTERM), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    fclose(so);
    int ok = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ASSERT_EQ(c[i].other, 0);
        ASSERT_GT(c[i].ok, 0);
        ok += c[i].ok;
    }
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    /* Every logged query's reply reached its client, and nothing ran
     * that was not answered. */
    ASSERT_EQ(count_lines(f.log), (size_t)ok);
}

TEST(server_cli_serve_and_sigterm)
{
    fixture f;
    ASSERT_EQ(fixture_make(&f), 0);
    dynrag_pipeline_free(f.p);
    int out[2];
    ASSERT_EQ(pipe(out), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    setenv("DYNRAG_TEST_SERVE_KEY", "cli-key", 1);
    char *argv[] = {(char *)test_cli_path(),
                    "serve",
                    "--pipeline",
                    f.yaml,
                    "--port",
                    "0",
                    "--threads",
                    "2",
                    "--api-key-env",
                    "DYNRAG_TEST_SERVE_KEY",
                    NULL};
    pid_t pid;
    ASSERT_EQ(posix_spawn(&pid, test_cli_path(), &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    FILE *so = fdopen(out[0], "r");
    char line[256] = "";
    ASSERT(fgets(line, sizeof(line), so) != NULL);
    int port = 0;
    ASSERT_EQ(sscanf(line, "listening on http://127.0.0.1:%d", &port), 1);
    ASSERT_GT(port, 0);
    http_reply r;
    ASSERT_EQ(
        http_post_json(port, "/v1/query", "{\"query\":\"Who landed on the Moon?\"}", "cli-key", &r),
        0);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "\"answer\":");
    http_reply_free(&r);
    ASSERT_EQ(http_post_json(port, "/v1/query", "{\"query\":\"x\"}", NULL, &r), 0);
    ASSERT_EQ(r.status, 401);
    http_reply_free(&r);
    ASSERT_EQ(kill(pid, SIGTERM), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    fclose(so);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    ASSERT_EQ(count_lines(f.log), 1);
    /* Usage errors exit 2; an unset key variable exits 1. */
    char *o = NULL;
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s serve --pipeline %s --port 70000", test_cli_path(), f.yaml);
    ASSERT_EQ(test_run(cmd, &o), 2);
    ASSERT_CONTAINS(o, "--port");
    free(o);
    snprintf(cmd, sizeof(cmd), "%s serve --pipeline %s --api-key-env DYNRAG_TEST_UNSET_VAR",
             test_cli_path(), f.yaml);
    ASSERT_EQ(test_run(cmd, &o), 1);
    ASSERT_CONTAINS(o, "DYNRAG_TEST_UNSET_VAR");
    free(o);
}

/* ---- routing without a record ------------------------------------------- */

/* A generated query: 1-8 words from a small vocabulary (some trigger the
 * rules router's regex rule), with the odd punctuation, quote or escape. */
static void gen_query(unsigned *seed, char *out, size_t size)
{
    static const char *const words[] = {
        "vector", "embedding", "search", "Eiffel", "Tower", "Paris", "ranking", "BM25",
        "what",   "is",        "the",    "how",    "does",  "\"x\"", "tab\\t", "Moon",
        "Python", "1969",      "fusion", "é",      "why?",  "a,b",  "vectors"};
    size_t n = 1 + (size_t)(rand_r(seed) % 8), len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *w = words[(size_t)rand_r(seed) % (sizeof(words) / sizeof(words[0]))];
        int k = snprintf(out + len, size - len, "%s%s", i ? " " : "", w);
        if (k < 0 || (size_t)k >= size - len)
            break;
        len += (size_t)k;
    }
}

/* no_record changes nothing but the record: over many generated queries, a
 * route-only result with no_record has the same decisions as one with the
 * record, and no JSON; a logged query with no_record still writes its line. */
TEST(engine_no_record_same_result)
{
    fixture f;
    ASSERT_EQ(fixture_make(&f), 0);
    dynrag_engine *e = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    ASSERT_OK(dynrag_engine_open(f.p, NULL, &e, &err), &err);
    unsigned seed = 12;
    for (int it = 0; it < 200; it++) {
        char q[256];
        gen_query(&seed, q, sizeof(q));
        dynrag_query_options a, b;
        memset(&a, 0, sizeof(a));
        a.route_only = true;
        b = a;
        b.no_record = true;
        dynrag_result *ra = NULL, *rb = NULL;
        ASSERT_OK(dynrag_engine_query(e, q, &a, &ra, &err), &err);
        ASSERT_OK(dynrag_engine_query(e, q, &b, &rb, &err), &err);
        ASSERT(dynrag_result_json(ra) != NULL);
        ASSERT(dynrag_result_json(rb) == NULL);
        ASSERT_EQ(dynrag_result_n_decisions(ra), dynrag_result_n_decisions(rb));
        for (size_t i = 0; i < dynrag_result_n_decisions(ra); i++) {
            const dynrag_decision *da = dynrag_result_decision(ra, i);
            const dynrag_decision *db = dynrag_result_decision(rb, i);
            ASSERT_STR_EQ(da->stage, db->stage);
            ASSERT_STR_EQ(da->router, db->router);
            ASSERT_STR_EQ(da->choice, db->choice);
            ASSERT_STR_EQ(da->reason, db->reason);
            ASSERT_EQ(da->skipped, db->skipped);
        }
        /* the record names the same choices */
        cJSON *rec = cJSON_Parse(dynrag_result_json(ra));
        ASSERT(rec != NULL);
        cJSON *st = NULL;
        size_t j = 0;
        cJSON_ArrayForEach(st, cJSON_GetObjectItem(rec, "stages"))
        {
            const dynrag_decision *db = dynrag_result_decision(rb, j++);
            ASSERT(db != NULL);
            ASSERT_STR_EQ(jstr(st, "stage"), db->stage);
            if (!db->skipped)
                ASSERT_STR_EQ(jstr(st, "choice"), db->choice);
        }
        ASSERT_EQ(j, dynrag_result_n_decisions(rb));
        cJSON_Delete(rec);
        dynrag_result_free(ra);
        dynrag_result_free(rb);
    }
    /* A logged query with no_record: the line is written all the same. */
    size_t before = count_lines(f.log);
    dynrag_query_options o;
    dynrag_query_options_init(&o);
    o.no_record = true;
    o.query_id = "q-no-record";
    dynrag_result *r = NULL;
    ASSERT_OK(dynrag_engine_query(e, "When was the Eiffel Tower completed?", &o, &r, &err), &err);
    ASSERT(dynrag_result_json(r) == NULL);
    ASSERT_GT(dynrag_result_n_retrieved(r), 0);
    dynrag_result_free(r);
    ASSERT_EQ(count_lines(f.log), before + 1);
    FILE *fp = fopen(f.log, "rb");
    ASSERT(fp != NULL);
    char line[65536], last[65536] = "";
    while (fgets(line, sizeof(line), fp))
        snprintf(last, sizeof(last), "%s", line);
    fclose(fp);
    cJSON *rec = cJSON_Parse(last);
    ASSERT(rec != NULL);
    ASSERT_STR_EQ(jstr(rec, "id"), "q-no-record");
    ASSERT(jget(rec, "answer") != NULL && jget(rec, "totals") != NULL);
    cJSON_Delete(rec);
    dynrag_engine_close(e);
    dynrag_pipeline_free(f.p);
}

/* A routed /v1/retrieve reports the decisions /v1/route makes for the same
 * query, and its "route" member is the exact compact JSON of those values
 * (as a cJSON tree prints them), over many generated queries. */
TEST(server_routed_retrieve_matches_route)
{
    fixture f;
    ASSERT_EQ(fixture_make(&f), 0);
    dynrag_server *s = start_server(&f, NULL, 1, 10000);
    ASSERT(s != NULL);
    int port = dynrag_server_port(s);
    unsigned seed = 7;
    for (int it = 0; it < 60; it++) {
        char q[256];
        gen_query(&seed, q, sizeof(q));
        cJSON *req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "query", q);
        char *body = cJSON_PrintUnformatted(req);
        cJSON_Delete(req);
        http_reply rr, rt;
        ASSERT_EQ(http_post_json(port, "/v1/retrieve", body, NULL, &rr), 0);
        ASSERT_EQ(http_post_json(port, "/v1/route", body, NULL, &rt), 0);
        free(body);
        ASSERT_EQ(rr.status, 200);
        ASSERT_EQ(rt.status, 200);
        cJSON *o = cJSON_Parse(rr.body), *t = cJSON_Parse(rt.body);
        ASSERT(o != NULL && t != NULL);
        ASSERT(cJSON_IsTrue(jget(o, "routed")));
        cJSON *route = jget(o, "route");
        ASSERT(cJSON_IsObject(route));
        char *printed = cJSON_PrintUnformatted(route);
        char *want = NULL;
        ASSERT(asprintf(&want, ",\"route\":%s,\"hits\":", printed) > 0);
        ASSERT_CONTAINS(rr.body, want);
        free(want);
        free(printed);
        cJSON *st = NULL;
        int seen = 0;
        cJSON_ArrayForEach(st, cJSON_GetObjectItem(t, "stages"))
        {
            const char *name = jstr(st, "stage");
            if (strcmp(name, "index") != 0 && strcmp(name, "embedder") != 0)
                continue;
            cJSON *d = cJSON_GetObjectItem(route, name);
            ASSERT(d != NULL);
            seen++;
            ASSERT_STR_EQ(jstr(d, "router"), jstr(st, "router"));
            ASSERT_STR_EQ(jstr(d, "reason"), jstr(st, "reason"));
            ASSERT_EQ(cJSON_IsTrue(jget(d, "skipped")), cJSON_IsTrue(jget(st, "skipped")));
            if (!cJSON_IsTrue(jget(st, "skipped")))
                ASSERT_STR_EQ(jstr(d, "choice"), jstr(st, "choice"));
            if (strcmp(name, "index") == 0) {
                ASSERT_STR_EQ(jstr(route, "option"), jstr(st, "choice"));
                ASSERT_STR_EQ(jstr(o, "mode"),
                              strcmp(jstr(st, "choice"), "fused") == 0 ? "hybrid" : "bm25");
            }
        }
        ASSERT_EQ(seen, cJSON_GetArraySize(route) - 1);
        cJSON_Delete(o);
        cJSON_Delete(t);
        http_reply_free(&rr);
        http_reply_free(&rt);
    }
    dynrag_server_close(s);
    dynrag_pipeline_free(f.p);
}

/* /v1/retrieve with k beyond every fixed-size cache of the reply writer
 * (the text lengths of the first 128 hits) returns exactly the in-process
 * hits: same ids, same texts byte for byte (texts with quotes, backslashes,
 * line breaks, control characters and multi-byte characters), same order. */
TEST(server_retrieve_large_k_matches_in_process)
{
    fixture f;
    ASSERT_EQ(fixture_make(&f), 0);
    dr_buf b = {0};
    static const char *const bits[] = {"plain words", "a \\\"quote\\\"", "back\\\\slash",
                                       "line\\nbreak", "tab\\there", "\\u0007bell",
                                       "\\u00e9t\\u00e9 \\u2603", "\\ud83d\\ude00 emoji"};
    for (int i = 0; i < 300; i++)
        ASSERT_EQ(dr_buf_printf(&b,
                                "{\"_id\":\"z%03d\",\"title\":\"Zebra %d\",\"text\":\"zebra herd %d "
                                "%s %s %.*s\"}\n",
                                i, i, i, bits[i % 8], bits[(i / 8) % 8], i % 97,
                                "stripes stripes stripes stripes stripes stripes stripes stripes "
                                "stripes stripes stripes stripes stripes"),
                  0);
    const char *in[] = {test_write_file("zebras.jsonl", b.data)};
    dr_buf_free(&b);
    dynrag_error err;
    ASSERT_OK(dynrag_index_add(f.index, in, 1, NULL, NULL, &err), &err);
    dynrag_server *s = start_server(&f, NULL, 2, 10000);
    ASSERT(s != NULL);
    http_reply r;
    ASSERT_EQ(http_post_json(dynrag_server_port(s), "/v1/retrieve",
                             "{\"query\":\"zebra herd stripes\",\"k\":300,\"mode\":\"bm25\"}", NULL,
                             &r),
              0);
    ASSERT_EQ(r.status, 200);
    cJSON *o = cJSON_Parse(r.body);
    ASSERT(o != NULL);
    const cJSON *hits = jget(o, "hits");
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(f.index, NULL, &idx, &err), &err);
    dynrag_search_options so;
    dynrag_search_options_init(&so);
    so.mode = DYNRAG_SEARCH_BM25;
    so.k = 300;
    so.k1 = 0.9;
    so.b = 0.4;
    dynrag_hits h;
    ASSERT_OK(dynrag_index_search(idx, "zebra herd stripes", &so, &h, &err), &err);
    ASSERT_EQ((size_t)cJSON_GetArraySize(hits), h.n);
    ASSERT_GT(h.n, 128);
    for (size_t i = 0; i < h.n; i++) {
        const cJSON *x = cJSON_GetArrayItem(hits, (int)i);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(x, "text");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(x, "doc_id");
        ASSERT(cJSON_IsString(text) && cJSON_IsString(id));
        ASSERT_STR_EQ(id->valuestring, h.hits[i].doc_id);
        ASSERT_STR_EQ(text->valuestring, h.hits[i].text);
    }
    dynrag_hits_free(&h);
    dynrag_index_close(idx);
    cJSON_Delete(o);
    http_reply_free(&r);
    dynrag_server_close(s);
    dynrag_pipeline_free(f.p);
}
