/*
 * server.c - `dynrag serve`: the endpoints of docs/http-api.md on top of
 * the HTTP layer (httpd.c) and the engine.
 *
 * Each handler validates its body (request.c), runs the engine or the
 * index, checks the request's deadline, records route and cost metrics,
 * and renders JSON. Engine failures map to HTTP statuses in engine_error().
 */
#define _GNU_SOURCE
#include "dynrag/server.h"

#include "core/jsonb.h"
#include "core/util.h"
#include "dynrag/engine.h"
#include "dynrag/index.h"
#include "server/httpd.h"
#include "server/jsonw.h"
#include "server/metrics.h"
#include "server/openai.h"
#include "server/request.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MOD "server"

/*
 * The query ids clients chose on /v1/query, so that a second query with an
 * id already used is refused (409) instead of writing a second record
 * under it: the last ID_CAP ids of this server's life (older ones are
 * forgotten, oldest first). An id is reserved before the query runs and
 * released again when the query fails (nothing was logged).
 */
#define ID_CAP 65536
#define ID_BUCKETS 65536

typedef struct id_node {
    struct id_node *next;
    size_t slot; /* in ring */
    char id[DR_REQ_MAX_ID + 1];
} id_node;

typedef struct id_set {
    pthread_mutex_t mu;
    id_node **bucket; /* [ID_BUCKETS] chains */
    id_node **ring;   /* [ID_CAP] by age; NULL = free */
    size_t next;      /* the ring slot the next id takes */
} id_set;

struct dynrag_server {
    const dynrag_pipeline *p;
    dynrag_engine *e;
    dr_metrics *m;
    dr_httpd *h;
    char *host;
    char *api_key;
    int port;
    int threads;
    size_t max_body;
    int timeout_ms;
    int max_connections;
    int drain_ms;
    char *cors_origin;
    id_set ids;
    int wake[2]; /* self-pipe: request_stop writes, wait reads */
    bool started, stopped;
    int64_t start_us;
    int64_t start_unix; /* time(NULL) at start: the models' "created" */
};

/* ---- query ids ----------------------------------------------------------- */

static size_t id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ull;
    return (size_t)(h % ID_BUCKETS);
}

/* Unlinks n from its chain (under mu). */
static void id_unlink(id_set *set, id_node *n)
{
    id_node **pp = &set->bucket[id_hash(n->id)];
    while (*pp && *pp != n)
        pp = &(*pp)->next;
    if (*pp)
        *pp = n->next;
}

/* Reserves id: 1 when it was free (now taken), 0 when already used, -1
 * when out of memory. */
static int id_reserve(id_set *set, const char *id)
{
    pthread_mutex_lock(&set->mu);
    int rc = 1;
    size_t b = id_hash(id);
    for (id_node *n = set->bucket[b]; n && rc == 1; n = n->next)
        if (strcmp(n->id, id) == 0)
            rc = 0;
    if (rc == 1) {
        id_node *n = set->ring[set->next];
        if (n)
            id_unlink(set, n); /* the oldest id is forgotten */
        else
            n = dr_malloc(sizeof(*n));
        if (n == NULL) {
            rc = -1;
        } else {
            dr_strlcpy(n->id, id, sizeof(n->id));
            n->slot = set->next;
            n->next = set->bucket[b];
            set->bucket[b] = n;
            set->ring[set->next] = n;
            set->next = (set->next + 1) % ID_CAP;
        }
    }
    pthread_mutex_unlock(&set->mu);
    return rc;
}

/* Releases an id reserved by id_reserve() (its query failed). */
static void id_release(id_set *set, const char *id)
{
    pthread_mutex_lock(&set->mu);
    for (id_node *n = set->bucket[id_hash(id)]; n; n = n->next) {
        if (strcmp(n->id, id) == 0) {
            id_unlink(set, n);
            set->ring[n->slot] = NULL;
            dr_free(n);
            break;
        }
    }
    pthread_mutex_unlock(&set->mu);
}

static int id_set_init(id_set *set)
{
    pthread_mutex_init(&set->mu, NULL);
    set->bucket = dr_calloc(ID_BUCKETS, sizeof(*set->bucket));
    set->ring = dr_calloc(ID_CAP, sizeof(*set->ring));
    return set->bucket && set->ring ? 0 : -1;
}

static void id_set_free(id_set *set)
{
    if (set->ring)
        for (size_t i = 0; i < ID_CAP; i++)
            dr_free(set->ring[i]);
    dr_free(set->ring);
    dr_free(set->bucket);
    pthread_mutex_destroy(&set->mu);
}

/* ---- helpers ----------------------------------------------------------- */

/* Maps an engine or index failure to an HTTP error. */
static void engine_error(dr_http_exchange *x, int rc, const dynrag_error *err)
{
    const char *msg = dynrag_errmsg(err);
    switch (rc) {
    case DYNRAG_ERR_INVALID:
    case DYNRAG_ERR_LIMIT:
    case DYNRAG_ERR_PARSE:
        dr_http_error_set(&x->err, 400, "invalid_request_error", "invalid_query", "query", "%s",
                          msg);
        break;
    case DYNRAG_ERR_NOTFOUND:
    case DYNRAG_ERR_STATE:
    case DYNRAG_ERR_DB:
    case DYNRAG_ERR_IO:
        /* No request names a file: a missing index, one changing under the
         * search or a database error is the server's state, not the
         * client's fault, and usually passes (an index being rebuilt). */
        dr_http_error_set(&x->err, 503, "server_error", "index_unavailable", NULL, "%s", msg);
        break;
    case DYNRAG_ERR_TIMEOUT:
        dr_http_error_set(&x->err, 504, "server_error", "timeout", NULL, "%s", msg);
        break;
    case DYNRAG_ERR_HTTP:
        dr_http_error_set(&x->err, 502, "server_error", "upstream_error", NULL, "%s", msg);
        break;
    default:
        dr_http_error_set(&x->err, 500, "server_error", "internal_error", NULL, "%s: %s",
                          dynrag_status_name(rc), msg);
        break;
    }
    x->status = x->err.status;
}

/* True (and a 504 in x) when the request ran past its deadline. */
static bool past_deadline(dr_http_exchange *x)
{
    if (dr_now_us() <= x->deadline_us)
        return false;
    dr_http_error_set(&x->err, 504, "server_error", "timeout", NULL,
                      "the request took longer than its time limit of %.0f ms",
                      (double)(x->deadline_us - x->start_us) / 1000.0);
    x->status = 504;
    return true;
}

static void no_memory(dr_http_exchange *x)
{
    dr_http_error_set(&x->err, 500, "server_error", "internal_error", NULL, "out of memory");
    x->status = 500;
}

/* Sets a JSON object built with jb as the response (consumed); 500 when
 * building it ran out of memory. */
static void reply_json(dr_http_exchange *x, cJSON *o, const dr_jb *jb)
{
    char *s = o && !jb->nomem ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (s == NULL) {
        no_memory(x);
        return;
    }
    x->status = 200;
    x->body_out = s;
}

/* Counts a result's routing decisions and, when it ran, its cost. */
static void count_result(dynrag_server *s, const dynrag_result *r, bool ran)
{
    for (size_t i = 0; i < dynrag_result_n_decisions(r); i++) {
        const dynrag_decision *d = dynrag_result_decision(r, i);
        if (!d->skipped)
            dr_metrics_route(s->m, d->stage, d->choice);
    }
    if (ran) {
        const dynrag_totals *t = dynrag_result_totals(r);
        dr_metrics_cost(s->m, t->usd, t->energy_wh, t->input_tokens, t->output_tokens,
                        t->generator_calls, t->retrieval_steps, t->over_budget);
    }
}

/* Runs the engine (no_record: the result needs no route-log record); on
 * failure fills the error response and returns NULL. */
static dynrag_result *run_query(dynrag_server *s, dr_http_exchange *x, const char *q,
                                const char *id, bool route_only, bool no_record,
                                const dr_budget_req *b, bool *ran)
{
    if (ran != NULL)
        *ran = false;
    if (past_deadline(x))
        return NULL;
    dynrag_query_options qo;
    dynrag_query_options_init(&qo);
    qo.query_id = id;
    qo.route_only = route_only;
    qo.no_record = no_record;
    dynrag_budget budget;
    if (b != NULL && b->set) {
        budget = (dynrag_budget){b->usd, b->latency_ms, b->energy_wh};
        qo.budget = &budget;
    }
    dynrag_result *r = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (ran != NULL)
        *ran = true; /* the engine may log it (and learn from its id) from here on */
    int rc = dynrag_engine_query(s->e, q, &qo, &r, &err);
    if (rc != DYNRAG_OK) {
        engine_error(x, rc, &err);
        return NULL;
    }
    count_result(s, r, !route_only);
    if (past_deadline(x)) {
        dynrag_result_free(r);
        return NULL;
    }
    return r;
}

/* ---- endpoints ------------------------------------------------------------ */

static void do_healthz(dynrag_server *s, dr_http_exchange *x)
{
    dr_jb jbs = {0}, *jb = &jbs;
    cJSON *o = cJSON_CreateObject();
    dynrag_index *idx = dynrag_engine_index(s->e, NULL);
    dr_jb_str(jb, o, "status", "ok");
    dr_jb_str(jb, o, "pipeline", dynrag_pipeline_name(s->p));
    dr_jb_str(jb, o, "version", dynrag_version());
    dr_jb_bool(jb, o, "index_loaded", idx != NULL);
    dynrag_index_info info;
    if (idx && dynrag_index_get_info(idx, &info) == DYNRAG_OK) {
        dr_jb_num(jb, o, "docs", (double)info.docs);
        dr_jb_num(jb, o, "chunks", (double)info.chunks);
        dr_jb_num(jb, o, "generation", (double)info.generation);
        dr_jb_bool(jb, o, "dense", info.dim > 0);
    }
    dr_jb_num(jb, o, "threads", s->threads);
    dr_jb_num(jb, o, "uptime_s", (double)(dr_now_us() - s->start_us) / 1e6);
    reply_json(x, o, jb);
}

static void do_metrics(dynrag_server *s, dr_http_exchange *x)
{
    x->body_out = dr_metrics_render(s->m);
    if (x->body_out == NULL) {
        no_memory(x);
        return;
    }
    x->status = 200;
    x->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/*
 * Writes the /v1/retrieve body straight into a buffer (no cJSON tree: ten
 * chunk texts made the tree's copies and printing the server's largest
 * per-request cost). The bytes are those cJSON_PrintUnformatted() gave for
 * the tree this replaced: {"query","mode","k","routed","route"?,"hits":[
 * {"rank","doc_id","title","text","score","chunk_id"}...],"search_us"}.
 * route (may be NULL) and route_option are borrowed. Fills the response or
 * a 500.
 */
/*
 * Appends the "route" member of a routed /v1/retrieve body: the embedder
 * and index decisions of `route` (in stage order), each as
 * {"router","choice" (null when skipped),"skipped","reason"}, then
 * "option", the index option searched. The bytes are those of the cJSON
 * tree this replaced. Returns 0 or the buffer's error.
 */
static int put_route(dr_buf *b, const dynrag_result *route, const char *option)
{
    int rc = DR_BUF_PUTL(b, ",\"route\":{");
    bool first = true;
    for (size_t i = 0; i < dynrag_result_n_decisions(route) && rc == DYNRAG_OK; i++) {
        const dynrag_decision *d = dynrag_result_decision(route, i);
        if (strcmp(d->stage, "index") != 0 && strcmp(d->stage, "embedder") != 0)
            continue;
        if (!first)
            rc = dr_buf_putc(b, ',');
        first = false;
        if (rc == DYNRAG_OK)
            rc = dr_jsonw_str(b, d->stage);
        if (rc == DYNRAG_OK)
            rc = DR_BUF_PUTL(b, ":{\"router\":");
        if (rc == DYNRAG_OK)
            rc = dr_jsonw_str(b, d->router);
        if (rc == DYNRAG_OK)
            rc = DR_BUF_PUTL(b, ",\"choice\":");
        if (rc == DYNRAG_OK)
            rc = d->skipped ? DR_BUF_PUTL(b, "null") : dr_jsonw_str(b, d->choice);
        if (rc == DYNRAG_OK)
            rc = dr_buf_puts(b, d->skipped ? ",\"skipped\":true,\"reason\":"
                                           : ",\"skipped\":false,\"reason\":");
        if (rc == DYNRAG_OK)
            rc = dr_jsonw_str(b, d->reason);
        if (rc == DYNRAG_OK)
            rc = dr_buf_putc(b, '}');
    }
    if (rc == DYNRAG_OK)
        rc = (first ? DR_BUF_PUTL(b, "\"option\":") : DR_BUF_PUTL(b, ",\"option\":"));
    if (rc == DYNRAG_OK)
        rc = dr_jsonw_str(b, option);
    if (rc == DYNRAG_OK)
        rc = dr_buf_putc(b, '}');
    return rc;
}

static void reply_retrieve(dr_http_exchange *x, const dr_retrieve_req *req,
                           const dynrag_search_options *so, const dynrag_result *route,
                           const char *route_option, const dynrag_hits *hits)
{
    dr_buf b = {0};
    /* One allocation for the whole body in the usual case (no escapes). */
    size_t need = 256 + strlen(req->query);
    size_t lens[2 * 128]; /* doc_id and title lengths of the first 128 hits, measured once */
    for (size_t i = 0; i < hits->n; i++) {
        const dynrag_hit *h = &hits->hits[i];
        size_t dl = h->doc_id ? strlen(h->doc_id) : 0, tl = h->title ? strlen(h->title) : 0;
        if (i < DR_ARRAY_LEN(lens) / 2) {
            lens[2 * i] = dl;
            lens[2 * i + 1] = tl;
        }
        need += 128 + dl + tl + (h->text ? h->text_len : 0);
    }
    int rc = dr_buf_reserve(&b, need);
    if (rc == DYNRAG_OK)
        rc = DR_BUF_PUTL(&b, "{\"query\":");
    if (rc == DYNRAG_OK)
        rc = dr_jsonw_str(&b, req->query);
    if (rc == DYNRAG_OK)
        rc = DR_BUF_PUTL(&b, ",\"mode\":");
    if (rc == DYNRAG_OK)
        rc = dr_jsonw_str(&b, dynrag_search_mode_name(so->mode));
    if (rc == DYNRAG_OK)
        rc = DR_BUF_PUTL(&b, ",\"k\":");
    if (rc == DYNRAG_OK)
        rc = dr_jsonw_num(&b, req->k);
    if (rc == DYNRAG_OK)
        rc = (req->mode < 0 ? DR_BUF_PUTL(&b, ",\"routed\":true")
                            : DR_BUF_PUTL(&b, ",\"routed\":false"));
    if (rc == DYNRAG_OK && route)
        rc = put_route(&b, route, route_option);
    if (rc == DYNRAG_OK)
        rc = DR_BUF_PUTL(&b, ",\"hits\":[");
    for (size_t i = 0; i < hits->n && rc == DYNRAG_OK; i++) {
        const dynrag_hit *h = &hits->hits[i];
        rc = (i ? DR_BUF_PUTL(&b, ",{\"rank\":") : DR_BUF_PUTL(&b, "{\"rank\":"));
        if (rc == DYNRAG_OK)
            rc = dr_jsonw_num(&b, (double)(i + 1));
        if (rc == DYNRAG_OK)
            rc = DR_BUF_PUTL(&b, ",\"doc_id\":");
        bool known = i < DR_ARRAY_LEN(lens) / 2;
        if (rc == DYNRAG_OK)
            rc = known && h->doc_id ? dr_jsonw_strn(&b, h->doc_id, lens[2 * i])
                                    : dr_jsonw_str(&b, h->doc_id);
        if (rc == DYNRAG_OK)
            rc = DR_BUF_PUTL(&b, ",\"title\":");
        if (rc == DYNRAG_OK)
            rc = known && h->title ? dr_jsonw_strn(&b, h->title, lens[2 * i + 1])
                                   : dr_jsonw_str(&b, h->title);
        if (rc == DYNRAG_OK)
            rc = DR_BUF_PUTL(&b, ",\"text\":");
        if (rc == DYNRAG_OK)
            rc = h->text ? dr_jsonw_strn(&b, h->text, h->text_len) : dr_jsonw_str(&b, h->text);
        if (rc == DYNRAG_OK)
            rc = DR_BUF_PUTL(&b, ",\"score\":");
        if (rc == DYNRAG_OK)
            rc = dr_jsonw_num(&b, h->score);
        if (rc == DYNRAG_OK)
            rc = DR_BUF_PUTL(&b, ",\"chunk_id\":");
        if (rc == DYNRAG_OK)
            rc = dr_jsonw_num(&b, (double)h->chunk_id);
        if (rc == DYNRAG_OK)
            rc = dr_buf_putc(&b, '}');
    }
    if (rc == DYNRAG_OK)
        rc = DR_BUF_PUTL(&b, "],\"search_us\":");
    if (rc == DYNRAG_OK)
        rc = dr_jsonw_num(&b, hits->total_us);
    if (rc == DYNRAG_OK)
        rc = dr_buf_putc(&b, '}');
    if (rc != DYNRAG_OK) {
        dr_buf_free(&b);
        no_memory(x);
        return;
    }
    x->status = 200;
    x->body_out_len = b.len;
    x->body_out = dr_buf_take(&b);
}

/*
 * POST /v1/retrieve. With a mode: search the engine's first index with it
 * (using the params of the pipeline's first index option of that kind, if
 * any). Without: route the query (route_only) and search with the index
 * stage's choice on the embedder stage's index.
 */
static void do_retrieve(dynrag_server *s, dr_http_exchange *x)
{
    dr_retrieve_req req;
    if (dr_parse_retrieve(x->body, x->body_len, &req, &x->err) != 0) {
        x->status = x->err.status;
        return;
    }
    dynrag_search_options so;
    dynrag_search_options_init(&so);
    dynrag_index *idx = NULL;
    dynrag_result *route = NULL;
    const char *route_option = NULL;
    dynrag_hits hits;
    memset(&hits, 0, sizeof(hits));
    if (req.mode >= 0) {
        /* The params of the first index option of that mode, if any. */
        dynrag_stage_info ist;
        dynrag_pipeline_stage(s->p, "index", &ist, NULL);
        for (size_t i = 0; i < ist.n_options; i++) {
            dynrag_option_info oi;
            if (dynrag_pipeline_option(s->p, "index", i, &oi, NULL) == DYNRAG_OK &&
                dynrag_search_mode_parse(oi.kind) == req.mode) {
                dynrag_pipeline_search_options(s->p, oi.name, &so, NULL);
                break;
            }
        }
        so.mode = (dynrag_search_mode)req.mode;
        idx = dynrag_engine_index(s->e, NULL);
    } else {
        route = run_query(s, x, req.query, NULL, true, true, NULL, NULL);
        if (route == NULL)
            goto cleanup;
        const char *emb = NULL, *ichoice = NULL;
        for (size_t i = 0; i < dynrag_result_n_decisions(route); i++) {
            const dynrag_decision *d = dynrag_result_decision(route, i);
            if (strcmp(d->stage, "embedder") == 0 && !d->skipped)
                emb = d->choice;
            if (strcmp(d->stage, "index") == 0 && !d->skipped)
                ichoice = d->choice;
        }
        /* retrieval_mode "none" skips the index stage; the client asked to
         * retrieve anyway, so the stage's first option is used. */
        int oi = ichoice ? dynrag_pipeline_find_option(s->p, "index", ichoice) : 0;
        dynrag_option_info io;
        dynrag_pipeline_option(s->p, "index", oi < 0 ? 0 : (size_t)oi, &io, NULL);
        if (dynrag_pipeline_search_options(s->p, io.name, &so, NULL) != DYNRAG_OK)
            dynrag_search_options_init(&so); /* bm25 with the defaults */
        route_option = io.name;
        idx = dynrag_engine_index(s->e, emb);
        if (idx == NULL)
            idx = dynrag_engine_index(s->e, NULL);
    }
    so.k = req.k;
    if (idx == NULL) {
        dr_http_error_set(&x->err, 503, "server_error", "no_index", NULL,
                          "the pipeline has no index open (it never retrieves, or no embedder "
                          "option can open the index)");
        x->status = 503;
        goto cleanup;
    }
    if (so.mode != DYNRAG_SEARCH_BM25 && dynrag_index_dim(idx) <= 0) {
        dr_http_error_set(&x->err, 400, "invalid_request_error", "mode_unavailable", "mode",
                          "\"mode\": the index has no dense vectors, so only \"bm25\" works");
        x->status = 400;
        goto cleanup;
    }
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_index_search(idx, req.query, &so, &hits, &err);
    if (rc != DYNRAG_OK) {
        engine_error(x, rc, &err);
        goto cleanup;
    }
    if (past_deadline(x))
        goto cleanup;
    reply_retrieve(x, &req, &so, route, route_option, &hits);
cleanup:
    dynrag_hits_free(&hits);
    dynrag_result_free(route);
    dr_retrieve_req_free(&req);
}

/* The result's record (parsed) with "query_id" added. */
static cJSON *record_of(dr_jb *jb, const dynrag_result *r)
{
    cJSON *o = cJSON_Parse(dynrag_result_json(r));
    if (o == NULL)
        jb->nomem = true; /* the engine's own record: only memory can fail it */
    else
        dr_jb_str(jb, o, "query_id", dynrag_result_id(r));
    return o;
}

static void do_query(dynrag_server *s, dr_http_exchange *x, bool route_only)
{
    dr_query_req req;
    int st = route_only ? dr_parse_route(x->body, x->body_len, &req, &x->err)
                        : dr_parse_query(x->body, x->body_len, &req, &x->err);
    if (st != 0) {
        x->status = st;
        return;
    }
    bool reserved = false;
    if (!route_only && req.id) {
        int ir = id_reserve(&s->ids, req.id);
        if (ir == 0) {
            dr_http_error_set(&x->err, 409, "invalid_request_error", "duplicate_query_id", "id",
                              "\"id\": query id '%s' was already used on this server", req.id);
            x->status = 409;
            goto cleanup;
        }
        if (ir < 0) {
            no_memory(x);
            goto cleanup;
        }
        reserved = true;
    }
    bool ran = false;
    dynrag_result *r = run_query(s, x, req.query, req.id, route_only, false, &req.budget, &ran);
    if (r) {
        dr_jb jbs = {0}, *jb = &jbs;
        cJSON *o = record_of(jb, r);
        reply_json(x, o, jb);
        if (!route_only)
            dr_strlcpy(x->query_id, dynrag_result_id(r), sizeof(x->query_id));
    } else if (reserved && !ran) {
        /* Only a query the engine never saw gives its id back: one that ran
         * (and timed out or failed after) may be in the route log. */
        id_release(&s->ids, req.id);
    }
    dynrag_result_free(r);
cleanup:
    dr_query_req_free(&req);
}

static void do_feedback(dynrag_server *s, dr_http_exchange *x)
{
    dr_feedback_req req;
    if (dr_parse_feedback(x->body, x->body_len, &req, &x->err) != 0) {
        x->status = x->err.status;
        return;
    }
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = dynrag_engine_feedback(s->e, req.query_id, req.reward, &err);
    if (rc == DYNRAG_ERR_NOTFOUND) {
        dr_http_error_set(&x->err, 404, "invalid_request_error", "unknown_query_id", "query_id",
                          "\"query_id\": %s", dynrag_errmsg(&err));
        x->status = 404;
    } else if (rc == DYNRAG_ERR_STATE) {
        /* a reward counts once per query id */
        dr_http_error_set(&x->err, 409, "invalid_request_error", "already_rewarded", "query_id",
                          "\"query_id\": %s", dynrag_errmsg(&err));
        x->status = 409;
    } else if (rc != DYNRAG_OK) {
        engine_error(x, rc, &err);
    } else {
        dr_jb jbs = {0}, *jb = &jbs;
        cJSON *o = cJSON_CreateObject();
        dr_jb_str(jb, o, "status", "ok");
        dr_jb_str(jb, o, "query_id", req.query_id);
        dr_jb_num(jb, o, "reward", req.reward);
        reply_json(x, o, jb);
    }
    dr_feedback_req_free(&req);
}

/* The "dynrag" extras of a chat reply: query id, citations, route, totals
 * (NULL when out of memory). */
static cJSON *chat_extra(const dynrag_result *r)
{
    dr_jb jbs = {0}, *jb = &jbs;
    cJSON *o = cJSON_CreateObject();
    dr_jb_str(jb, o, "query_id", dynrag_result_id(r));
    dr_jb_bool(jb, o, "unanswerable", dynrag_result_unanswerable(r));
    cJSON *c = dr_jb_arr(jb, o, "citations");
    for (size_t i = 0; i < dynrag_result_n_citations(r); i++) {
        const dynrag_citation *ci = dynrag_result_citation(r, i);
        cJSON *cj = dr_jb_obj(jb, c, NULL);
        dr_jb_str(jb, cj, "doc_id", ci->doc_id);
        dr_jb_str(jb, cj, "title", ci->title);
        dr_jb_num(jb, cj, "chunk_id", (double)ci->chunk_id);
        dr_jb_num(jb, cj, "score", ci->score);
    }
    cJSON *route = dr_jb_obj(jb, o, "route");
    for (size_t i = 0; i < dynrag_result_n_decisions(r); i++) {
        const dynrag_decision *d = dynrag_result_decision(r, i);
        if (d->skipped)
            dr_jb_null(jb, route, d->stage);
        else
            dr_jb_str(jb, route, d->stage, d->choice);
    }
    const dynrag_totals *t = dynrag_result_totals(r);
    cJSON *tj = dr_jb_obj(jb, o, "cost");
    dr_jb_num(jb, tj, "usd", t->usd);
    dr_jb_num(jb, tj, "latency_ms", t->latency_ms);
    dr_jb_num(jb, tj, "energy_wh", t->energy_wh);
    if (jb->nomem) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static void do_chat(dynrag_server *s, dr_http_exchange *x)
{
    dr_chat_req req;
    if (dr_parse_chat(x->body, x->body_len, &req, &x->err) != 0) {
        x->status = x->err.status;
        return;
    }
    dynrag_result *r = run_query(s, x, req.query, NULL, false, false, &req.budget, NULL);
    if (r == NULL) {
        dr_chat_req_free(&req);
        return;
    }
    const dynrag_totals *t = dynrag_result_totals(r);
    char *id = dr_asprintf("chatcmpl-%s", dynrag_result_id(r));
    cJSON *extra = chat_extra(r);
    dr_chat_reply rep;
    memset(&rep, 0, sizeof(rep));
    rep.id = id ? id : "chatcmpl";
    rep.created = (int64_t)time(NULL);
    rep.model = req.model && *req.model ? req.model : dynrag_pipeline_name(s->p);
    rep.content = dynrag_result_answer(r);
    /* LLM token counts when an LLM ran, else word-based estimates. */
    rep.prompt_tokens = t->input_tokens > 0 ? t->input_tokens : dr_chat_estimate_tokens(req.query);
    rep.completion_tokens =
        t->output_tokens > 0 ? t->output_tokens : dr_chat_estimate_tokens(rep.content);
    rep.extra = extra;
    if (req.stream) {
        x->body_out = dr_chat_sse(&rep, req.include_usage);
        x->stream = true;
        x->content_type = "text/event-stream";
    } else {
        x->body_out = dr_chat_completion_json(&rep);
    }
    dr_strlcpy(x->query_id, dynrag_result_id(r), sizeof(x->query_id));
    if (x->body_out == NULL || extra == NULL || id == NULL) {
        dr_free(x->body_out);
        x->body_out = NULL;
        x->stream = false;
        no_memory(x);
    } else {
        x->status = 200;
    }
    cJSON_Delete(extra);
    dr_free(id);
    dynrag_result_free(r);
    dr_chat_req_free(&req);
}

/* One OpenAI model object: the served pipeline. */
static cJSON *model_object(dr_jb *jb, const dynrag_server *s)
{
    cJSON *o = cJSON_CreateObject();
    dr_jb_str(jb, o, "id", dynrag_pipeline_name(s->p));
    dr_jb_str(jb, o, "object", "model");
    dr_jb_num(jb, o, "created", (double)s->start_unix);
    dr_jb_str(jb, o, "owned_by", "dynrag");
    return o;
}

/* GET /v1/models: OpenAI's list format, one model per served pipeline. */
static void do_models(dynrag_server *s, dr_http_exchange *x)
{
    dr_jb jbs = {0}, *jb = &jbs;
    cJSON *o = cJSON_CreateObject();
    dr_jb_str(jb, o, "object", "list");
    cJSON *data = dr_jb_arr(jb, o, "data");
    dr_jb_add(jb, data, NULL, model_object(jb, s));
    reply_json(x, o, jb);
}

/* GET /v1/models/{id}: the model, or 404 for another id. */
static void do_model(dynrag_server *s, dr_http_exchange *x)
{
    const char *id = x->url ? x->url + strlen("/v1/models/") : "";
    size_t n = strcspn(id, "?");
    const char *name = dynrag_pipeline_name(s->p);
    if (strlen(name) != n || memcmp(name, id, n) != 0) {
        dr_http_error_set(&x->err, 404, "invalid_request_error", "model_not_found", "model",
                          "The model '%.*s' does not exist: this server serves '%s'",
                          (int)DR_MIN(n, 200), id, name);
        x->status = 404;
        return;
    }
    dr_jb jbs = {0}, *jb = &jbs;
    cJSON *o = model_object(jb, s);
    reply_json(x, o, jb);
}

static void handle(void *user, dr_http_exchange *x)
{
    dynrag_server *s = user;
    switch (x->ep) {
    case DR_EP_HEALTHZ: do_healthz(s, x); break;
    case DR_EP_METRICS: do_metrics(s, x); break;
    case DR_EP_RETRIEVE: do_retrieve(s, x); break;
    case DR_EP_QUERY: do_query(s, x, false); break;
    case DR_EP_ROUTE: do_query(s, x, true); break;
    case DR_EP_FEEDBACK: do_feedback(s, x); break;
    case DR_EP_CHAT: do_chat(s, x); break;
    case DR_EP_MODELS: do_models(s, x); break;
    case DR_EP_MODEL: do_model(s, x); break;
    default:
        dr_http_error_set(&x->err, 404, "invalid_request_error", "not_found", NULL,
                          "no such endpoint");
        x->status = 404;
        break;
    }
}

/* ---- life cycle ------------------------------------------------------------- */

/* Public: see dynrag/server.h. */
void dynrag_server_options_init(dynrag_server_options *o)
{
    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->port = 0;
    o->threads = 4;
    o->api_key = NULL;
    o->max_body = (size_t)1 << 20;
    o->timeout_ms = 30000;
    o->max_connections = 1000;
    o->index_dir = NULL;
    o->log_path = NULL;
    o->drain_timeout_ms = 10000;
    o->cors_origin = NULL;
}

int dynrag_server_open(const dynrag_pipeline *p, const dynrag_server_options *opt,
                         dynrag_server **out, dynrag_error *err)
{
    *out = NULL;
    dynrag_server_options o;
    dynrag_server_options_init(&o);
    if (opt)
        o = *opt;
    if (o.host == NULL || o.host[0] == '\0')
        return dr_err_set(err, DYNRAG_ERR_INVALID, "host: a numeric address is required");
    if (o.port < 0 || o.port > 65535)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "port %d: expected 0 to 65535", o.port);
    if (o.threads < 1 || o.threads > 1024)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "threads %d: expected 1 to 1024", o.threads);
    if (o.max_body < 1)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "max_body %zu: expected at least 1 byte",
                          o.max_body);
    if (o.timeout_ms < 1)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "timeout %d ms: must be positive", o.timeout_ms);
    if (o.max_connections < 1)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "max_connections %d: expected at least 1",
                          o.max_connections);
    if (o.drain_timeout_ms < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "drain timeout %d ms: must be >= 0",
                          o.drain_timeout_ms);
    dynrag_server *s = dr_calloc(1, sizeof(*s));
    if (s == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    s->p = p;
    s->wake[0] = s->wake[1] = -1;
    s->port = o.port;
    s->threads = o.threads;
    s->max_body = o.max_body;
    s->timeout_ms = o.timeout_ms;
    s->max_connections = o.max_connections;
    s->host = dr_strdup(o.host);
    s->api_key = o.api_key && *o.api_key ? dr_strdup(o.api_key) : NULL;
    s->drain_ms = o.drain_timeout_ms;
    s->cors_origin = o.cors_origin && *o.cors_origin ? dr_strdup(o.cors_origin) : NULL;
    s->m = dr_metrics_create();
    int ids_rc = id_set_init(&s->ids);
    int rc = DYNRAG_OK;
    if (s->host == NULL || s->m == NULL || (o.api_key && *o.api_key && s->api_key == NULL) ||
        (o.cors_origin && *o.cors_origin && s->cors_origin == NULL) || ids_rc != 0) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (pipe(s->wake) != 0) {
        rc = dr_err_set(err, DYNRAG_ERR_IO, "pipe: %s", strerror(errno));
        goto fail;
    }
    fcntl(s->wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(s->wake[1], F_SETFD, FD_CLOEXEC);
    fcntl(s->wake[1], F_SETFL, O_NONBLOCK);
    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    eo.index_dir = o.index_dir;
    eo.log_path = o.log_path;
    eo.no_log = o.no_log;
    rc = dynrag_engine_open(p, &eo, &s->e, err);
    if (rc != DYNRAG_OK)
        goto fail;
    *out = s;
    return DYNRAG_OK;
fail:
    dynrag_server_close(s);
    return rc;
}

int dynrag_server_start(dynrag_server *s, dynrag_error *err)
{
    if (s->started)
        return dr_err_set(err, DYNRAG_ERR_STATE, "the server was already started");
    dr_httpd_config c;
    memset(&c, 0, sizeof(c));
    c.host = s->host;
    c.port = s->port;
    c.threads = s->threads;
    c.api_key = s->api_key;
    c.max_body = s->max_body;
    c.timeout_ms = s->timeout_ms;
    c.max_connections = s->max_connections;
    c.cors_origin = s->cors_origin;
    c.handler = handle;
    c.user = s;
    c.metrics = s->m;
    s->start_us = dr_now_us();
    s->start_unix = (int64_t)time(NULL);
    int rc = dr_httpd_start(&c, &s->h, err);
    if (rc != DYNRAG_OK)
        return rc;
    s->started = true;
    dr_log(DYNRAG_LOG_INFO, MOD, "serving pipeline '%s' on %s port %d with %d thread(s)",
           dynrag_pipeline_name(s->p), s->host, dr_httpd_port(s->h), s->threads);
    return DYNRAG_OK;
}

int dynrag_server_port(const dynrag_server *s)
{
    return s->h ? dr_httpd_port(s->h) : s->port;
}

void dynrag_server_wait(dynrag_server *s)
{
    char c;
    for (;;) {
        ssize_t n = read(s->wake[0], &c, 1);
        if (n == 1 || (n < 0 && errno != EINTR) || n == 0)
            return;
    }
}

void dynrag_server_request_stop(dynrag_server *s)
{
    if (s == NULL || s->wake[1] < 0)
        return;
    char c = 1;
    ssize_t n = write(s->wake[1], &c, 1);
    (void)n;
}

static dynrag_server *volatile signal_server;

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    dynrag_server_request_stop(signal_server);
    errno = saved;
}

int dynrag_server_stop_on_signals(dynrag_server *s, dynrag_error *err)
{
    signal_server = s;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return dr_err_set(err, DYNRAG_ERR_IO, "sigaction: %s", strerror(errno));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    return DYNRAG_OK;
}

int dynrag_server_stop(dynrag_server *s, dynrag_error *err)
{
    if (s->stopped)
        return DYNRAG_OK;
    s->stopped = true;
    if (s->h) {
        dr_httpd_stop(s->h, s->drain_ms);
        s->h = NULL;
        dr_log(DYNRAG_LOG_INFO, MOD, "stopped; saving router state");
    }
    return s->e ? dynrag_engine_save(s->e, err) : DYNRAG_OK;
}

void dynrag_server_close(dynrag_server *s)
{
    if (s == NULL)
        return;
    if (signal_server == s)
        signal_server = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_server_stop(s, &err) != DYNRAG_OK)
        dr_log(DYNRAG_LOG_ERROR, MOD, "saving state: %s", dynrag_errmsg(&err));
    dynrag_engine_close(s->e);
    dr_metrics_free(s->m);
    if (s->wake[0] >= 0)
        close(s->wake[0]);
    if (s->wake[1] >= 0)
        close(s->wake[1]);
    id_set_free(&s->ids);
    dr_free(s->host);
    dr_free(s->api_key);
    dr_free(s->cors_origin);
    dr_free(s);
}
