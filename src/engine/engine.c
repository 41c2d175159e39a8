/*
 * engine.c - runs a query through the routed stages of a pipeline.
 *
 * Flow of one query (docs/architecture.md has the picture):
 *   features -> retrieval_mode -> embedder -> index (+ retrieval steps)
 *            -> context -> prompt -> generator (cascades escalate here)
 * Each stage: the router scores the options and picks one; enforce_budget()
 * keeps the pick only when the remaining budget can pay for it; the option
 * runs; a decision record (scores, choice, reason, latency, cost) is kept.
 * The whole record is the query's route-log line.
 */
#define _GNU_SOURCE
#include "engine/engine_internal.h"

#include "core/text.h"
#include "core/util.h"
#include "generate/context.h"
#include "generate/extractive.h"
#include "generate/llm.h"
#include "generate/passage.h"
#include "generate/prompt.h"
#include "generate/reformulate.h"
#include "router/cascade.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MOD "engine"

/* ---- per-query state ------------------------------------------------------- */

typedef struct stage_rec {
    int option;       /* chosen option, -1 when skipped */
    bool skipped;
    bool routed;
    bool forced;      /* pinned by the caller: a cascade judges but never escalates */
    double scores[DR_MAX_OPTIONS];
    char reason[512];
    int64_t latency_us;
    double usd, latency_ms, energy_wh; /* cost of what ran in this stage */
} stage_rec;

/* A retrieved passage the query owns (copied from index hits). */
typedef struct own_passage {
    char *doc_id;
    char *title;
    char *text;
    double score;
    int64_t chunk_id;
} own_passage;

typedef struct qstate {
    dynrag_engine *e;
    const dynrag_query_options *opt; /* never NULL */
    const dynrag_pipeline *p;
    const char *q;
    dr_query_features f;
    int64_t start_us;
    stage_rec st[DR_STAGE_COUNT];
    dynrag_totals tot;
    dynrag_index *idx;
    dynrag_search_options search;
    own_passage *pass;
    size_t n_pass, cap_pass;
    cJSON *steps;   /* array of retrieval steps */
    cJSON *cascade; /* array of cascade attempts */
    char *answer;
    bool unanswerable;
    size_t *cited; /* indices into ctx_pass */
    size_t n_cited;
    dr_passage *ctx_pass; /* the packed context's passages (views) */
    size_t n_ctx;
    own_passage *docs; /* whole documents for the "documents" context */
    size_t n_docs;
    char *context_text;
    char *prompt_text;
} qstate;

static void own_passages_free(own_passage *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].doc_id);
        free(p[i].title);
        free(p[i].text);
    }
    free(p);
}

static void qstate_free(qstate *s)
{
    own_passages_free(s->pass, s->n_pass);
    own_passages_free(s->docs, s->n_docs);
    cJSON_Delete(s->steps);
    cJSON_Delete(s->cascade);
    free(s->answer);
    free(s->cited);
    free(s->ctx_pass);
    free(s->context_text);
    free(s->prompt_text);
}

static double elapsed_ms(const qstate *s)
{
    return (double)(dr_now_us() - s->start_us) / 1000.0;
}

/* ---- budget ------------------------------------------------------------------ */

static dr_budget remaining_budget(const qstate *s)
{
    dr_budget b = s->p->budget;
    dr_budget r;
    r.usd = b.usd - s->tot.usd;
    r.latency_ms = b.latency_ms - elapsed_ms(s);
    r.energy_wh = b.energy_wh - s->tot.energy_wh;
    return r;
}

/* Expected cost of running an option once, for in/out token estimates
 * (an option's own `max_tokens` bounds its output, so it is the estimate). */
static void option_cost(const dr_option *o, double in_tokens, double out_tokens, double *usd,
                        double *lat, double *wh)
{
    if (out_tokens > 0 && cJSON_GetObjectItemCaseSensitive(o->params, "max_tokens") &&
        strcmp(o->kind, "openai") == 0)
        out_tokens = dr_param_int(o->params, "max_tokens", (int)out_tokens);
    *usd = o->cost.usd_per_1k_input * in_tokens / 1000.0 +
           o->cost.usd_per_1k_output * out_tokens / 1000.0;
    *lat = o->cost.latency_ms;
    *wh = o->cost.energy_wh;
}

static bool fits(const dr_budget *r, double usd, double lat, double wh)
{
    const double eps = 1e-12;
    return usd <= r->usd + eps && lat <= r->latency_ms + eps && wh <= r->energy_wh + eps;
}

/*
 * Keeps the router's pick when the remaining budget can pay for it;
 * otherwise takes the best-scored option that fits, and when none fits the
 * cheapest available one (marking the query over budget). Appends the why
 * to rec->reason. Returns the option index.
 */
static int enforce_budget(qstate *s, const dr_stage *st, stage_rec *rec, int pick,
                          double in_tokens, double out_tokens)
{
    dr_budget r = remaining_budget(s);
    double usd, lat, wh;
    option_cost(&st->options[pick], in_tokens, out_tokens, &usd, &lat, &wh);
    if (fits(&r, usd, lat, wh))
        return pick;
    int best = -1;
    double best_score = -INFINITY, best_usd = INFINITY;
    for (size_t i = 0; i < st->n_options; i++) {
        const dr_option *o = &st->options[i];
        if (!o->available)
            continue;
        option_cost(o, in_tokens, out_tokens, &usd, &lat, &wh);
        if (!fits(&r, usd, lat, wh))
            continue;
        double sc = isnan(rec->scores[i]) ? -1e300 : rec->scores[i];
        if (best < 0 || sc > best_score || (sc == best_score && usd < best_usd)) {
            best = (int)i;
            best_score = sc;
            best_usd = usd;
        }
    }
    size_t len = strlen(rec->reason);
    if (best >= 0) {
        snprintf(rec->reason + len, sizeof(rec->reason) - len,
                 "; budget: '%s' does not fit the remaining budget, took '%s'",
                 st->options[pick].name, st->options[best].name);
        return best;
    }
    int cheapest = -1;
    double c_usd = INFINITY, c_lat = INFINITY, c_wh = INFINITY;
    for (size_t i = 0; i < st->n_options; i++) {
        if (!st->options[i].available)
            continue;
        option_cost(&st->options[i], in_tokens, out_tokens, &usd, &lat, &wh);
        if (usd < c_usd || (usd == c_usd && (lat < c_lat || (lat == c_lat && wh < c_wh)))) {
            cheapest = (int)i;
            c_usd = usd;
            c_lat = lat;
            c_wh = wh;
        }
    }
    if (cheapest < 0)
        cheapest = pick;
    s->tot.over_budget = true;
    snprintf(rec->reason + len, sizeof(rec->reason) - len,
             "; budget: no option fits the remaining budget (usd %.6g, latency_ms %.6g, "
             "energy_wh %.6g left), ran the cheapest '%s'",
             r.usd, r.latency_ms, r.energy_wh, st->options[cheapest].name);
    return cheapest;
}

/* ---- routing ---------------------------------------------------------------- */

static int embed_cb(void *user, const char *text, float *out, int dim, dynrag_error *err)
{
    dynrag_index *idx = user;
    if (idx == NULL || dynrag_index_dim(idx) != dim)
        return dr_err_set(err, DYNRAG_ERR_STATE, "no dense embedder available for routing");
    return dynrag_index_embed(idx, text, out, err);
}

static dynrag_index *first_index(const dynrag_engine *e)
{
    for (size_t i = 0; i < DR_MAX_OPTIONS; i++)
        if (e->index[i])
            return e->index[i];
    return NULL;
}

/* Routes one stage: fills rec (scores, reason, option) and returns the
 * chosen option index after budget enforcement, or a negative status. */
static int route_stage(qstate *s, dr_stage_id sid, double in_tokens, double out_tokens,
                       dynrag_error *err)
{
    const dr_stage *st = &s->p->stages[sid];
    stage_rec *rec = &s->st[sid];
    dr_router *r = s->e->routers[sid];
    dr_route_ctx ctx = {0};
    ctx.query = s->q;
    ctx.features = &s->f;
    ctx.stage = st;
    ctx.remaining = remaining_budget(s);
    dynrag_index *ei = s->idx ? s->idx : first_index(s->e);
    if (ei && dynrag_index_dim(ei) > 0) {
        ctx.embed = embed_cb;
        ctx.embed_user = ei;
        ctx.embed_dim = dynrag_index_dim(ei);
    }
    for (size_t i = 0; i < s->opt->n_force; i++) {
        const dynrag_force *f = &s->opt->force[i];
        if (f->stage == NULL || strcmp(f->stage, dr_stage_name(sid)) != 0)
            continue;
        int oi = f->option ? dr_stage_find_option(st, f->option) : -1;
        if (oi < 0)
            return dr_err_set(err, DYNRAG_ERR_INVALID, "force: stage %s has no option '%s'",
                              dr_stage_name(sid), f->option ? f->option : "(null)");
        if (!st->options[oi].available)
            return dr_err_set(err, DYNRAG_ERR_STATE,
                              "force: option '%s' of stage %s is unavailable (endpoint not "
                              "configured)",
                              f->option, dr_stage_name(sid));
        for (size_t j = 0; j < DR_MAX_OPTIONS; j++)
            rec->scores[j] = NAN;
        rec->scores[oi] = 1;
        snprintf(rec->reason, sizeof(rec->reason), "forced by caller: %s", f->option);
        rec->routed = true;
        rec->forced = true;
        rec->option = oi;
        return oi;
    }
    dr_route_decision d;
    memset(&d, 0, sizeof(d));
    for (size_t i = 0; i < DR_MAX_OPTIONS; i++)
        d.scores[i] = NAN;
    int64_t t0 = dr_now_us();
    int rc = r->vt->route(r, &ctx, &d, err);
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "stages.%s.router (%s)", dr_stage_name(sid), r->type);
    if (d.option < 0 || (size_t)d.option >= st->n_options)
        return dr_err_set(err, DYNRAG_ERR_INTERNAL, "stages.%s: router chose option %d of %zu",
                          dr_stage_name(sid), d.option, st->n_options);
    memcpy(rec->scores, d.scores, sizeof(rec->scores));
    dr_strlcpy(rec->reason, d.reason, sizeof(rec->reason));
    rec->routed = true;
    rec->option = enforce_budget(s, st, rec, d.option, in_tokens, out_tokens);
    rec->latency_us += dr_now_us() - t0;
    return rec->option;
}

static void skip_stage(qstate *s, dr_stage_id sid, const char *why)
{
    stage_rec *rec = &s->st[sid];
    rec->skipped = true;
    rec->option = -1;
    for (size_t i = 0; i < DR_MAX_OPTIONS; i++)
        rec->scores[i] = NAN;
    dr_strlcpy(rec->reason, why, sizeof(rec->reason));
}

static void charge(qstate *s, dr_stage_id sid, double usd, double lat_ms, double wh)
{
    stage_rec *rec = &s->st[sid];
    rec->usd += usd;
    rec->latency_ms += lat_ms;
    rec->energy_wh += wh;
    s->tot.usd += usd;
    s->tot.energy_wh += wh;
}

/* ---- retrieval ---------------------------------------------------------------- */

/* Adds up to max_new hits not retrieved before (by chunk id). */
static int add_hits(qstate *s, const dynrag_hits *h, size_t max_new, size_t *n_new)
{
    *n_new = 0;
    for (size_t i = 0; i < h->n && *n_new < max_new; i++) {
        bool seen = false;
        for (size_t j = 0; j < s->n_pass && !seen; j++)
            seen = s->pass[j].chunk_id == h->hits[i].chunk_id;
        if (seen)
            continue;
        if (s->n_pass == s->cap_pass) {
            size_t cap = s->cap_pass ? s->cap_pass * 2 : 16;
            own_passage *np = realloc(s->pass, cap * sizeof(*np));
            if (np == NULL)
                return DYNRAG_ERR_NOMEM;
            s->pass = np;
            s->cap_pass = cap;
        }
        own_passage *o = &s->pass[s->n_pass];
        o->doc_id = dr_strdup(h->hits[i].doc_id ? h->hits[i].doc_id : "");
        o->title = dr_strdup(h->hits[i].title ? h->hits[i].title : "");
        o->text = dr_strdup(h->hits[i].text ? h->hits[i].text : "");
        o->score = h->hits[i].score;
        o->chunk_id = h->hits[i].chunk_id;
        if (!o->doc_id || !o->title || !o->text) {
            free(o->doc_id);
            free(o->title);
            free(o->text);
            return DYNRAG_ERR_NOMEM;
        }
        s->n_pass++;
        (*n_new)++;
    }
    return DYNRAG_OK;
}

static int retrieve_step(qstate *s, int step, const char *query, int k, size_t *n_new,
                         dynrag_error *err)
{
    /* Later steps look past what earlier steps found: ask for k more than
     * already held, keep the first k new chunks. */
    dynrag_search_options so = s->search;
    so.k = (int)DR_MIN((size_t)k + s->n_pass, 10000);
    dynrag_hits h;
    memset(&h, 0, sizeof(h));
    int64_t t0 = dr_now_us();
    int rc = dynrag_index_search(s->idx, query, &so, &h, err);
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "retrieval step %d", step);
    rc = add_hits(s, &h, (size_t)k, n_new);
    int64_t dt = dr_now_us() - t0;
    cJSON *js = cJSON_CreateObject();
    cJSON_AddNumberToObject(js, "step", step);
    cJSON_AddStringToObject(js, "query", query);
    cJSON_AddStringToObject(js, "mode", dynrag_search_mode_name(so.mode));
    cJSON_AddNumberToObject(js, "hits", (double)h.n);
    cJSON_AddNumberToObject(js, "new_hits", (double)*n_new);
    cJSON *ids = cJSON_AddArrayToObject(js, "doc_ids");
    for (size_t i = 0; i < h.n && i < 10; i++)
        cJSON_AddItemToArray(ids, cJSON_CreateString(h.hits[i].doc_id ? h.hits[i].doc_id : ""));
    cJSON_AddNumberToObject(js, "latency_us", (double)dt);
    cJSON_AddItemToArray(s->steps, js);
    dynrag_hits_free(&h);
    s->tot.retrieval_steps++;
    if (rc != DYNRAG_OK)
        return dr_err_set(err, rc, "out of memory");
    return DYNRAG_OK;
}

/* The first available openai generator option, used for IRCoT reasoning. */
static const dr_option *reasoning_llm(const dynrag_pipeline *p)
{
    const dr_stage *g = &p->stages[DR_STAGE_GENERATOR];
    for (size_t i = 0; i < g->n_options; i++)
        if (g->options[i].available && strcmp(g->options[i].kind, "openai") == 0)
            return &g->options[i];
    return NULL;
}

static void llm_config_from(const dr_option *o, dr_llm_config *c, const char **key_out)
{
    memset(c, 0, sizeof(*c));
    const dr_endpoint *ep = o->endpoint;
    c->base_url = ep ? ep->base_url : "";
    c->model = ep ? ep->model : "";
    c->api_key = (ep && ep->api_key_env) ? getenv(ep->api_key_env) : NULL;
    c->timeout_s = ep ? ep->timeout_s : 60;
    c->max_retries = ep ? ep->max_retries : 3;
    c->temperature = dr_param_num(o->params, "temperature", 0);
    c->max_tokens = dr_param_int(o->params, "max_tokens", 256);
    c->logprobs = dr_param_bool(o->params, "logprobs", false);
    c->top_logprobs = dr_param_int(o->params, "top_logprobs", 0);
    c->n = dr_param_int(o->params, "samples", 1);
    c->usd_per_1k_input = o->cost.usd_per_1k_input;
    c->usd_per_1k_output = o->cost.usd_per_1k_output;
    if (key_out)
        *key_out = c->api_key;
}

static void account_llm(qstate *s, dr_stage_id sid, const dr_option *o, const dr_llm_result *r)
{
    s->tot.input_tokens += r->prompt_tokens;
    s->tot.output_tokens += r->completion_tokens;
    s->tot.generator_calls++;
    charge(s, sid, r->cost_usd, r->latency_ms, o->cost.energy_wh);
}

/* Writes the evidence gathered so far as numbered lines into b. */
static int evidence_text(const qstate *s, dr_buf *b, size_t max_pass)
{
    int rc = DYNRAG_OK;
    for (size_t i = 0; i < s->n_pass && i < max_pass && rc == DYNRAG_OK; i++)
        rc = dr_buf_printf(b, "[%zu] %s: %s\n", i + 1, s->pass[i].title, s->pass[i].text);
    return rc;
}

/*
 * Multi-step retrieval. With an LLM (IRCoT-style): ask for the next
 * reasoning sentence given the evidence so far, retrieve with it, and stop
 * when the sentence gives the answer or max_steps is reached. Without an
 * LLM: reformulate the query from new titles/entities in the evidence and
 * stop when there is no new evidence.
 */
static int retrieve_multi(qstate *s, int k, int max_steps, dynrag_error *err)
{
    size_t n_new = 0;
    int rc = retrieve_step(s, 1, s->q, k, &n_new, err);
    if (rc != DYNRAG_OK)
        return rc;
    const dr_option *llm = reasoning_llm(s->p);
    dr_reform_state *rs = NULL;
    dr_buf steps_text = {0};
    if (llm == NULL && (rc = dr_reform_create(&rs)) != DYNRAG_OK)
        return dr_err_set(err, rc, "out of memory");
    for (int step = 2; step <= max_steps; step++) {
        char *next = NULL;
        if (llm) {
            dr_buf prompt = {0};
            rc = dr_buf_printf(&prompt,
                               "Answer the question step by step using the evidence. Write only "
                               "the NEXT reasoning sentence. If the evidence already gives the "
                               "answer, write: So the answer is: <answer>.\n\nQuestion: %s\n\n"
                               "Evidence:\n",
                               s->q);
            if (rc == DYNRAG_OK)
                rc = evidence_text(s, &prompt, 12);
            if (rc == DYNRAG_OK)
                rc = dr_buf_printf(&prompt, "\nReasoning so far:\n%s\nNext sentence:",
                                   steps_text.data ? steps_text.data : "(none)");
            if (rc != DYNRAG_OK) {
                dr_buf_free(&prompt);
                rc = dr_err_set(err, rc, "out of memory");
                break;
            }
            dr_llm_config cfg;
            llm_config_from(llm, &cfg, NULL);
            cfg.n = 1;
            cfg.max_tokens = 96;
            dr_llm_message msg = {"user", prompt.data};
            dr_llm_result res;
            memset(&res, 0, sizeof(res));
            rc = dr_llm_chat(&cfg, &msg, 1, &res, err);
            dr_buf_free(&prompt);
            if (rc != DYNRAG_OK) {
                dr_llm_result_free(&res);
                dr_err_prefix(err, "multi-step reasoning (option '%s')", llm->name);
                break;
            }
            account_llm(s, DR_STAGE_INDEX, llm, &res);
            const char *t = res.text ? res.text : "";
            dr_buf_printf(&steps_text, "%s\n", t);
            bool done = strcasestr(t, "answer is") != NULL || t[0] == '\0';
            if (!done)
                next = dr_strdup(t);
            dr_llm_result_free(&res);
        } else {
            dr_passage *views = calloc(s->n_pass ? s->n_pass : 1, sizeof(*views));
            if (views == NULL) {
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                break;
            }
            for (size_t i = 0; i < s->n_pass; i++)
                views[i] = (dr_passage){s->pass[i].doc_id, s->pass[i].title, s->pass[i].text,
                                        s->pass[i].score, s->pass[i].chunk_id};
            rc = dr_reformulate(rs, s->q, views, s->n_pass, &next, err);
            free(views);
            if (rc != DYNRAG_OK)
                break;
        }
        if (next == NULL)
            break; /* stop: answer found or no new evidence */
        rc = retrieve_step(s, step, next, k, &n_new, err);
        free(next);
        if (rc != DYNRAG_OK)
            break;
        if (n_new == 0)
            break; /* nothing new came back */
    }
    dr_buf_free(&steps_text);
    dr_reform_free(rs);
    return rc;
}

/* ---- context, prompt, generation ------------------------------------------ */

static int load_documents(qstate *s, dynrag_error *err)
{
    if (s->docs)
        return DYNRAG_OK;
    s->docs = calloc(s->n_pass ? s->n_pass : 1, sizeof(*s->docs));
    if (s->docs == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n_pass; i++) {
        bool seen = false;
        for (size_t j = 0; j < s->n_docs && !seen; j++)
            seen = strcmp(s->docs[j].doc_id, s->pass[i].doc_id) == 0;
        if (seen)
            continue;
        own_passage *d = &s->docs[s->n_docs];
        int rc = dynrag_index_document(s->idx, s->pass[i].doc_id, &d->title, &d->text, err);
        if (rc != DYNRAG_OK)
            return dr_err_prefix(err, "context: document '%s'", s->pass[i].doc_id);
        d->doc_id = dr_strdup(s->pass[i].doc_id);
        d->score = s->pass[i].score;
        d->chunk_id = s->pass[i].chunk_id;
        s->n_docs++;
        if (d->doc_id == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    return DYNRAG_OK;
}

/* Packs the context for context option `ci` into s->ctx_pass/context_text. */
static int build_context(qstate *s, int ci, dynrag_error *err)
{
    const dr_option *o = &s->p->stages[DR_STAGE_CONTEXT].options[ci];
    free(s->ctx_pass);
    free(s->context_text);
    s->ctx_pass = NULL;
    s->context_text = NULL;
    s->n_ctx = 0;
    own_passage *src = s->pass;
    size_t n_src = s->n_pass;
    if (strcmp(o->kind, "documents") == 0) {
        int rc = load_documents(s, err);
        if (rc != DYNRAG_OK)
            return rc;
        src = s->docs;
        n_src = s->n_docs;
    }
    dr_passage *views = calloc(n_src ? n_src : 1, sizeof(*views));
    if (views == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n_src; i++)
        views[i] = (dr_passage){src[i].doc_id, src[i].title, src[i].text, src[i].score,
                                src[i].chunk_id};
    dr_context_config cc = {o->kind, dr_param_int(o->params, "k", 5),
                            dr_param_int(o->params, "max_tokens", 1500)};
    size_t *kept = NULL, n_kept = 0;
    int tokens = 0;
    int rc = dr_context_pack(&cc, views, n_src, &kept, &n_kept, &s->context_text, &tokens, err);
    if (rc != DYNRAG_OK) {
        free(views);
        return dr_err_prefix(err, "stages.context option '%s'", o->name);
    }
    s->ctx_pass = calloc(n_kept ? n_kept : 1, sizeof(*s->ctx_pass));
    if (s->ctx_pass == NULL) {
        free(kept);
        free(views);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n_kept; i++)
        s->ctx_pass[i] = views[kept[i]];
    s->n_ctx = n_kept;
    free(kept);
    free(views);
    return DYNRAG_OK;
}

static bool text_says_unanswerable(const char *t)
{
    static const char *const cues[] = {"unanswerable", "cannot be answered",
                                       "not enough information", "cannot answer"};
    for (size_t i = 0; i < DR_ARRAY_LEN(cues); i++)
        if (strcasestr(t, cues[i]))
            return true;
    return false;
}

/* Citations of an LLM answer: the [n] markers it uses, else every passage. */
static int cite_markers(qstate *s, const char *text)
{
    free(s->cited);
    s->cited = calloc(s->n_ctx ? s->n_ctx : 1, sizeof(size_t));
    s->n_cited = 0;
    if (s->cited == NULL)
        return DYNRAG_ERR_NOMEM;
    for (const char *p = text; *p; p++) {
        if (*p != '[' || !isdigit((unsigned char)p[1]))
            continue;
        long long v = 0;
        const char *q = p + 1;
        while (isdigit((unsigned char)*q) && v < 100000)
            v = v * 10 + (*q++ - '0');
        if (*q != ']' || v < 1 || (size_t)v > s->n_ctx)
            continue;
        bool dup = false;
        for (size_t i = 0; i < s->n_cited && !dup; i++)
            dup = s->cited[i] == (size_t)(v - 1);
        if (!dup)
            s->cited[s->n_cited++] = (size_t)(v - 1);
    }
    if (s->n_cited == 0 && !s->unanswerable)
        for (size_t i = 0; i < s->n_ctx; i++)
            s->cited[s->n_cited++] = i;
    return DYNRAG_OK;
}

typedef struct gen_out {
    double margin;
    char **samples;
    size_t n_samples;
} gen_out;

static void gen_out_free(gen_out *g)
{
    for (size_t i = 0; i < g->n_samples; i++)
        free(g->samples[i]);
    free(g->samples);
    memset(g, 0, sizeof(*g));
    g->margin = NAN;
}

static int run_extractive(qstate *s, const dr_option *o, dynrag_error *err)
{
    dr_extractive_config ec = {dr_param_num(o->params, "threshold", 0.25),
                               dr_param_int(o->params, "max_sentences", 3)};
    dr_answer a;
    memset(&a, 0, sizeof(a));
    int64_t t0 = dr_now_us();
    int rc = dr_extractive_answer(&ec, s->q, s->ctx_pass, s->n_ctx, &a, err);
    if (rc != DYNRAG_OK) {
        dr_answer_free(&a);
        return dr_err_prefix(err, "generator '%s'", o->name);
    }
    free(s->answer);
    free(s->cited);
    s->answer = a.text;
    s->unanswerable = a.unanswerable;
    s->cited = a.citations;
    s->n_cited = a.n_citations;
    a.text = NULL;
    a.citations = NULL;
    dr_answer_free(&a);
    s->tot.generator_calls++;
    charge(s, DR_STAGE_GENERATOR, 0, (double)(dr_now_us() - t0) / 1000.0, o->cost.energy_wh);
    return DYNRAG_OK;
}

static int run_openai(qstate *s, const dr_option *o, gen_out *g, dynrag_error *err)
{
    dr_llm_config cfg;
    llm_config_from(o, &cfg, NULL);
    dr_llm_message msg = {"user", s->prompt_text ? s->prompt_text : s->q};
    dr_llm_result res;
    memset(&res, 0, sizeof(res));
    int rc = dr_llm_chat(&cfg, &msg, 1, &res, err);
    if (rc != DYNRAG_OK) {
        dr_llm_result_free(&res);
        return dr_err_prefix(err, "generator '%s'", o->name);
    }
    account_llm(s, DR_STAGE_GENERATOR, o, &res);
    free(s->answer);
    s->answer = res.text ? res.text : dr_strdup("");
    res.text = NULL;
    s->unanswerable = text_says_unanswerable(s->answer);
    g->margin = res.first_token_margin;
    g->samples = res.samples;
    g->n_samples = res.n_samples;
    res.samples = NULL;
    res.n_samples = 0;
    dr_llm_result_free(&res);
    if (s->answer == NULL || cite_markers(s, s->answer) != DYNRAG_OK)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    return DYNRAG_OK;
}

/* Runs generator option gi; on an endpoint failure falls back to the
 * stage's fallback option when one is declared. */
static int run_generator(qstate *s, int gi, gen_out *g, dynrag_error *err)
{
    const dr_stage *st = &s->p->stages[DR_STAGE_GENERATOR];
    const dr_option *o = &st->options[gi];
    gen_out_free(g);
    int rc;
    if (strcmp(o->kind, "openai") == 0)
        rc = run_openai(s, o, g, err);
    else
        rc = run_extractive(s, o, err);
    if (rc == DYNRAG_OK || st->fallback < 0 || st->fallback == gi)
        return rc;
    stage_rec *rec = &s->st[DR_STAGE_GENERATOR];
    size_t len = strlen(rec->reason);
    snprintf(rec->reason + len, sizeof(rec->reason) - len, "; fallback to '%s' after error: %s",
             st->options[st->fallback].name, dynrag_errmsg(err));
    dr_log(DYNRAG_LOG_WARN, MOD, "generator '%s' failed (%s); using fallback '%s'", o->name,
           dynrag_errmsg(err), st->options[st->fallback].name);
    rec->option = st->fallback;
    gen_out_free(g);
    const dr_option *fb = &st->options[st->fallback];
    if (strcmp(fb->kind, "openai") == 0)
        return run_openai(s, fb, g, err);
    return run_extractive(s, fb, err);
}

static int render_prompt(qstate *s, int pi, dynrag_error *err)
{
    const dr_option *o = &s->p->stages[DR_STAGE_PROMPT].options[pi];
    /* The loader always stores the template text here (read from `file`
     * when the option names one, the built-in default for an absent stage). */
    const char *tmpl = dr_param_str(o->params, "template", dr_prompt_default_template);
    dr_buf steps = {0};
    /* {steps} lists the retrieval queries of a multi-step run (empty for one step). */
    int n_steps = cJSON_GetArraySize(s->steps);
    for (int i = 0; n_steps > 1 && i < n_steps; i++) {
        cJSON *st = cJSON_GetArrayItem(s->steps, i);
        cJSON *q = cJSON_GetObjectItem(st, "query");
        if (cJSON_IsString(q))
            dr_buf_printf(&steps, "%d. %s\n", i + 1, q->valuestring);
    }
    if (steps.len > 0)
        dr_buf_putc(&steps, '\n'); /* the default template wants a blank line after */
    free(s->prompt_text);
    s->prompt_text = NULL;
    int rc = dr_prompt_render(tmpl, s->q, s->context_text ? s->context_text : "",
                              steps.data ? steps.data : "", &s->prompt_text, err);
    dr_buf_free(&steps);
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "stages.prompt option '%s'", o->name);
    return DYNRAG_OK;
}

static double judge(const dr_router_spec *spec, const qstate *s, const gen_out *g, char *why,
                    size_t why_len)
{
    dr_answer_view v;
    v.text = s->answer ? s->answer : "";
    v.unanswerable = s->unanswerable;
    v.first_token_margin = g->margin;
    v.samples = (const char *const *)g->samples;
    v.n_samples = g->n_samples;
    return dr_cascade_judge(spec, &v, why, why_len);
}

static void record_attempt(qstate *s, const char *stage, const char *option, double conf,
                           double threshold, const char *why, bool escalated)
{
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "stage", stage);
    cJSON_AddStringToObject(a, "option", option);
    cJSON_AddNumberToObject(a, "confidence", conf);
    cJSON_AddNumberToObject(a, "threshold", threshold);
    cJSON_AddStringToObject(a, "judgement", why);
    cJSON_AddBoolToObject(a, "escalated", escalated);
    cJSON_AddItemToArray(s->cascade, a);
}

static bool is_cascade(const qstate *s, dr_stage_id sid)
{
    return strcmp(s->p->stages[sid].router.type, "cascade") == 0;
}

/* The next available option after `i` in listed order that the remaining
 * budget can pay for, or -1. */
static int next_escalation(qstate *s, dr_stage_id sid, int i, double in_tok, double out_tok)
{
    const dr_stage *st = &s->p->stages[sid];
    dr_budget r = remaining_budget(s);
    for (size_t j = (size_t)i + 1; j < st->n_options; j++) {
        if (!st->options[j].available)
            continue;
        double usd, lat, wh;
        option_cost(&st->options[j], in_tok, out_tok, &usd, &lat, &wh);
        if (fits(&r, usd, lat, wh))
            return (int)j;
        size_t len = strlen(s->st[sid].reason);
        snprintf(s->st[sid].reason + len, sizeof(s->st[sid].reason) - len,
                 "; escalation to '%s' skipped: over budget", st->options[j].name);
    }
    return -1;
}

/*
 * One cascade decision for stage sid after option `cur` answered: judges the
 * answer with the stage's cascade router, records the attempt, and returns
 * the option to escalate to (reason appended), or -1 to stop (confident
 * enough, forced by the caller, nothing left, or over budget).
 */
static int cascade_step(qstate *s, dr_stage_id sid, int cur, const gen_out *g, int in_tok)
{
    const dr_stage *st = &s->p->stages[sid];
    stage_rec *rec = &s->st[sid];
    char why[256];
    double conf = judge(&st->router, s, g, why, sizeof(why));
    double thr = dr_param_num(st->router.params, "threshold", 0.5);
    int next = conf < thr && !rec->forced ? next_escalation(s, sid, cur, in_tok, 256) : -1;
    record_attempt(s, dr_stage_name(sid), st->options[cur].name, conf, thr, why, next >= 0);
    if (next >= 0) {
        size_t len = strlen(rec->reason);
        snprintf(rec->reason + len, sizeof(rec->reason) - len,
                 "; cascade: escalated '%s' -> '%s' (%s)", st->options[cur].name,
                 st->options[next].name, why);
    }
    return next;
}

/*
 * Generation with its cascades. The generator stage's router (or, for
 * Self-Route, the context stage's) may be a cascade: answer with the
 * cheaper option, judge the answer, and escalate to the next option while
 * the judgement is below the threshold and the budget allows.
 */
static int generate(qstate *s, bool retrieved, dynrag_error *err)
{
    int rc = DYNRAG_OK;
    gen_out g;
    memset(&g, 0, sizeof(g));
    g.margin = NAN;
    int ci = retrieved ? s->st[DR_STAGE_CONTEXT].option : -1;
    for (;;) {
        int64_t t0 = dr_now_us();
        if (ci >= 0) {
            rc = build_context(s, ci, err);
            s->st[DR_STAGE_CONTEXT].latency_us += dr_now_us() - t0;
            if (rc != DYNRAG_OK)
                break;
        }
        t0 = dr_now_us();
        if (!s->st[DR_STAGE_PROMPT].routed) {
            int in_tok = dr_estimate_tokens(s->q) + dr_estimate_tokens(s->context_text ? s->context_text : "");
            rc = route_stage(s, DR_STAGE_PROMPT, in_tok, 0, err);
            if (rc < 0)
                break;
        }
        rc = render_prompt(s, s->st[DR_STAGE_PROMPT].option, err);
        s->st[DR_STAGE_PROMPT].latency_us += dr_now_us() - t0;
        if (rc != DYNRAG_OK)
            break;

        int in_tok = dr_estimate_tokens(s->prompt_text);
        if (!s->st[DR_STAGE_GENERATOR].routed) {
            int gi = route_stage(s, DR_STAGE_GENERATOR, in_tok, 256, err);
            if (gi < 0) {
                rc = gi;
                break;
            }
        }
        /* The generator cascade. */
        int gi = s->st[DR_STAGE_GENERATOR].option;
        for (;;) {
            t0 = dr_now_us();
            rc = run_generator(s, gi, &g, err);
            s->st[DR_STAGE_GENERATOR].latency_us += dr_now_us() - t0;
            if (rc != DYNRAG_OK)
                break;
            gi = s->st[DR_STAGE_GENERATOR].option; /* may have become the fallback */
            if (!is_cascade(s, DR_STAGE_GENERATOR))
                break;
            int next = cascade_step(s, DR_STAGE_GENERATOR, gi, &g, in_tok);
            if (next < 0)
                break;
            gi = next;
            s->st[DR_STAGE_GENERATOR].option = gi;
        }
        if (rc != DYNRAG_OK)
            break;
        /* The context cascade (Self-Route). */
        if (ci < 0 || !is_cascade(s, DR_STAGE_CONTEXT))
            break;
        int next = cascade_step(s, DR_STAGE_CONTEXT, ci, &g, in_tok);
        if (next < 0)
            break;
        ci = next;
        s->st[DR_STAGE_CONTEXT].option = ci;
        const dr_option *co = &s->p->stages[DR_STAGE_CONTEXT].options[ci];
        charge(s, DR_STAGE_CONTEXT, 0, 0, co->cost.energy_wh);
    }
    gen_out_free(&g);
    return rc;
}

/* ---- the query ---------------------------------------------------------------- */

static int run_stages(qstate *s, dynrag_error *err)
{
    const dynrag_pipeline *p = s->p;
    bool route_only = s->opt->route_only;
    int64_t t0 = dr_now_us();
    int est_in = dr_estimate_tokens(s->q);

    /* retrieval_mode */
    int rm = route_stage(s, DR_STAGE_RETRIEVAL_MODE, est_in, 0, err);
    if (rm < 0)
        return rm;
    const dr_option *rmo = &p->stages[DR_STAGE_RETRIEVAL_MODE].options[rm];
    charge(s, DR_STAGE_RETRIEVAL_MODE, 0, 0, rmo->cost.energy_wh);
    bool retrieve = strcmp(rmo->kind, "none") != 0;
    s->st[DR_STAGE_RETRIEVAL_MODE].latency_us = dr_now_us() - t0;

    if (!retrieve) {
        skip_stage(s, DR_STAGE_EMBEDDER, "retrieval_mode is none");
        skip_stage(s, DR_STAGE_INDEX, "retrieval_mode is none");
        skip_stage(s, DR_STAGE_CONTEXT, "retrieval_mode is none");
    } else {
        t0 = dr_now_us();
        int ei = route_stage(s, DR_STAGE_EMBEDDER, est_in, 0, err);
        if (ei < 0)
            return ei;
        s->idx = s->e->index[ei];
        s->st[DR_STAGE_EMBEDDER].latency_us = dr_now_us() - t0;
        if (s->idx == NULL && !route_only)
            return dr_err_set(err, DYNRAG_ERR_STATE, "stages.embedder option '%s': %s",
                              p->stages[DR_STAGE_EMBEDDER].options[ei].name,
                              s->e->index_error[ei] ? s->e->index_error[ei] : "no index open");

        t0 = dr_now_us();
        int ii = route_stage(s, DR_STAGE_INDEX, est_in, 0, err);
        if (ii < 0)
            return ii;
        const dr_option *io = &p->stages[DR_STAGE_INDEX].options[ii];
        memset(&s->search, 0, sizeof(s->search));
        s->search.mode = (dynrag_search_mode)dynrag_search_mode_parse(io->kind);
        s->search.k1 = dr_param_num(io->params, "k1", 0.9);
        s->search.b = dr_param_num(io->params, "b", 0.4);
        s->search.rrf_k = dr_param_num(io->params, "rrf_k", 60);
        s->search.w_bm25 = dr_param_num(io->params, "w_bm25", 1);
        s->search.w_dense = dr_param_num(io->params, "w_dense", 1);
        s->search.depth = dr_param_int(io->params, "depth", 100);
        s->search.nprobe = dr_param_int(io->params, "nprobe", 0);
        if (!route_only) {
            int k = s->opt->k > 0 ? s->opt->k : dr_param_int(rmo->params, "k", 10);
            int rc;
            if (strcmp(rmo->kind, "multi") == 0)
                rc = retrieve_multi(s, k, dr_param_int(rmo->params, "max_steps", 3), err);
            else {
                size_t n_new;
                rc = retrieve_step(s, 1, s->q, k, &n_new, err);
            }
            if (rc != DYNRAG_OK)
                return rc;
        }
        charge(s, DR_STAGE_INDEX, 0, 0, io->cost.energy_wh);
        s->st[DR_STAGE_INDEX].latency_us = dr_now_us() - t0;

        t0 = dr_now_us();
        int ci = route_stage(s, DR_STAGE_CONTEXT, est_in, 0, err);
        if (ci < 0)
            return ci;
        charge(s, DR_STAGE_CONTEXT, 0, 0, p->stages[DR_STAGE_CONTEXT].options[ci].cost.energy_wh);
        s->st[DR_STAGE_CONTEXT].latency_us = dr_now_us() - t0;
    }
    if (s->opt->retrieve_only) {
        if (retrieve)
            skip_stage(s, DR_STAGE_CONTEXT, "retrieve only");
        skip_stage(s, DR_STAGE_PROMPT, "retrieve only");
        skip_stage(s, DR_STAGE_GENERATOR, "retrieve only");
        return DYNRAG_OK;
    }
    if (route_only) {
        int rc = route_stage(s, DR_STAGE_PROMPT, est_in, 0, err);
        if (rc >= 0)
            rc = route_stage(s, DR_STAGE_GENERATOR, est_in, 256, err);
        return rc < 0 ? rc : DYNRAG_OK;
    }
    return generate(s, retrieve, err);
}

/* ---- the record ---------------------------------------------------------------- */

static cJSON *features_json(const dr_query_features *f)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n_words", f->n_words);
    cJSON_AddNumberToObject(o, "n_chars", f->n_chars);
    cJSON_AddNumberToObject(o, "n_entities", f->n_entities);
    cJSON_AddNumberToObject(o, "n_question_words", f->n_question_words);
    cJSON_AddStringToObject(o, "first_qword", f->first_qword);
    cJSON_AddBoolToObject(o, "has_comparison", f->has_comparison);
    cJSON_AddBoolToObject(o, "has_conjunction", f->has_conjunction);
    cJSON_AddBoolToObject(o, "has_nested", f->has_nested);
    return o;
}

static cJSON *num_or_null(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static cJSON *build_record(const qstate *s, const char *id, const char *error)
{
    const dynrag_pipeline *p = s->p;
    cJSON *r = cJSON_CreateObject();
    char now[40];
    dr_time_rfc3339(now, sizeof(now));
    cJSON_AddStringToObject(r, "id", id);
    cJSON_AddStringToObject(r, "time", now);
    cJSON_AddStringToObject(r, "pipeline", p->name);
    cJSON_AddStringToObject(r, "query", s->q);
    cJSON_AddItemToObject(r, "features", features_json(&s->f));
    cJSON *stages = cJSON_AddArrayToObject(r, "stages");
    for (int i = 0; i < DR_STAGE_COUNT; i++) {
        const stage_rec *rec = &s->st[i];
        const dr_stage *st = &p->stages[i];
        if (!rec->routed && !rec->skipped)
            continue;
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "stage", dr_stage_name((dr_stage_id)i));
        cJSON_AddStringToObject(d, "router", st->router.type);
        cJSON_AddItemToObject(d, "features", features_json(&s->f));
        cJSON *sc = cJSON_AddObjectToObject(d, "scores");
        for (size_t o = 0; o < st->n_options; o++)
            cJSON_AddItemToObject(sc, st->options[o].name, num_or_null(rec->scores[o]));
        if (rec->skipped)
            cJSON_AddNullToObject(d, "choice");
        else
            cJSON_AddStringToObject(d, "choice", st->options[rec->option].name);
        cJSON_AddBoolToObject(d, "skipped", rec->skipped);
        cJSON_AddStringToObject(d, "reason", rec->reason);
        cJSON_AddNumberToObject(d, "latency_us", (double)rec->latency_us);
        cJSON *c = cJSON_AddObjectToObject(d, "cost");
        cJSON_AddNumberToObject(c, "usd", rec->usd);
        cJSON_AddNumberToObject(c, "latency_ms", rec->latency_ms);
        cJSON_AddNumberToObject(c, "energy_wh", rec->energy_wh);
        cJSON_AddItemToArray(stages, d);
    }
    cJSON_AddItemToObject(r, "steps", cJSON_Duplicate(s->steps, 1));
    if (cJSON_GetArraySize(s->cascade) > 0)
        cJSON_AddItemToObject(r, "cascade", cJSON_Duplicate(s->cascade, 1));
    if (error) {
        cJSON_AddStringToObject(r, "error", error);
    } else {
        cJSON_AddStringToObject(r, "answer", s->answer ? s->answer : "");
        cJSON_AddBoolToObject(r, "unanswerable", s->unanswerable);
        cJSON *cits = cJSON_AddArrayToObject(r, "citations");
        for (size_t i = 0; i < s->n_cited; i++) {
            const dr_passage *ps = &s->ctx_pass[s->cited[i]];
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "doc_id", ps->doc_id);
            cJSON_AddStringToObject(c, "title", ps->title);
            cJSON_AddNumberToObject(c, "chunk_id", (double)ps->chunk_id);
            cJSON_AddNumberToObject(c, "score", ps->score);
            cJSON_AddItemToArray(cits, c);
        }
    }
    cJSON *t = cJSON_AddObjectToObject(r, "totals");
    cJSON_AddNumberToObject(t, "input_tokens", (double)s->tot.input_tokens);
    cJSON_AddNumberToObject(t, "output_tokens", (double)s->tot.output_tokens);
    cJSON_AddNumberToObject(t, "usd", s->tot.usd);
    cJSON_AddNumberToObject(t, "latency_ms", s->tot.latency_ms);
    cJSON_AddNumberToObject(t, "energy_wh", s->tot.energy_wh);
    cJSON_AddNumberToObject(t, "generator_calls", s->tot.generator_calls);
    cJSON_AddNumberToObject(t, "retrieval_steps", s->tot.retrieval_steps);
    cJSON_AddBoolToObject(t, "over_budget", s->tot.over_budget);
    return r;
}

static int write_log_line(dynrag_engine *e, const char *line, dynrag_error *err)
{
    if (e->log_fd < 0)
        return DYNRAG_OK;
    size_t n = strlen(line);
    char *buf = malloc(n + 1);
    if (buf == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    memcpy(buf, line, n);
    buf[n] = '\n';
    int rc = DYNRAG_OK;
    pthread_mutex_lock(&e->log_mu);
    size_t off = 0;
    while (off < n + 1) {
        ssize_t w = write(e->log_fd, buf + off, n + 1 - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = dr_err_set(err, DYNRAG_ERR_IO, "route log %s: %s", e->log_path, strerror(errno));
            break;
        }
        off += (size_t)w;
    }
    pthread_mutex_unlock(&e->log_mu);
    free(buf);
    return rc;
}

static void remember(dynrag_engine *e, const char *id, const qstate *s)
{
    pthread_mutex_lock(&e->memo_mu);
    dr_memo *m = &e->memo[e->memo_next];
    e->memo_next = (e->memo_next + 1) % DR_MEMO_CAP;
    memset(m, 0, sizeof(*m));
    dr_strlcpy(m->id, id, sizeof(m->id));
    for (int i = 0; i < DR_STAGE_COUNT; i++)
        m->choice[i] = (signed char)(s->st[i].skipped || !s->st[i].routed ? -1 : s->st[i].option);
    m->features = s->f;
    m->usd = s->tot.usd;
    m->used = true;
    pthread_mutex_unlock(&e->memo_mu);
}

static int fill_result(dynrag_result *res, const qstate *s, cJSON *rec)
{
    const dynrag_pipeline *p = s->p;
    res->json = cJSON_PrintUnformatted(rec);
    res->answer = dr_strdup(s->answer ? s->answer : "");
    res->unanswerable = s->unanswerable;
    res->totals = s->tot;
    if (res->json == NULL || res->answer == NULL)
        return DYNRAG_ERR_NOMEM;
    res->context = dr_strdup(s->context_text ? s->context_text : "");
    res->ret = calloc(s->n_pass ? s->n_pass : 1, sizeof(*res->ret));
    if (res->context == NULL || res->ret == NULL)
        return DYNRAG_ERR_NOMEM;
    for (size_t i = 0; i < s->n_pass; i++) {
        res->ret[i].doc_id = dr_strdup(s->pass[i].doc_id);
        res->ret[i].title = dr_strdup(s->pass[i].title);
        res->ret[i].chunk_id = s->pass[i].chunk_id;
        res->ret[i].score = s->pass[i].score;
        res->n_ret++;
        if (!res->ret[i].doc_id || !res->ret[i].title)
            return DYNRAG_ERR_NOMEM;
    }
    res->cits = calloc(s->n_cited ? s->n_cited : 1, sizeof(*res->cits));
    if (res->cits == NULL)
        return DYNRAG_ERR_NOMEM;
    for (size_t i = 0; i < s->n_cited; i++) {
        const dr_passage *ps = &s->ctx_pass[s->cited[i]];
        res->cits[i].doc_id = dr_strdup(ps->doc_id);
        res->cits[i].title = dr_strdup(ps->title);
        res->cits[i].chunk_id = ps->chunk_id;
        res->cits[i].score = ps->score;
        res->n_cits++;
        if (!res->cits[i].doc_id || !res->cits[i].title)
            return DYNRAG_ERR_NOMEM;
    }
    for (int i = 0; i < DR_STAGE_COUNT; i++) {
        const stage_rec *rec2 = &s->st[i];
        if (!rec2->routed && !rec2->skipped)
            continue;
        dynrag_decision *d = &res->dec[res->n_dec++];
        d->stage = dr_stage_name((dr_stage_id)i);
        d->router = p->stages[i].router.type;
        d->choice = rec2->skipped ? "" : p->stages[i].options[rec2->option].name;
        d->reason = dr_strdup(rec2->reason);
        d->latency_us = (double)rec2->latency_us;
        d->skipped = rec2->skipped;
        if (d->reason == NULL)
            return DYNRAG_ERR_NOMEM;
    }
    return DYNRAG_OK;
}

static bool blank(const char *q)
{
    for (; *q; q++)
        if (!isspace((unsigned char)*q))
            return false;
    return true;
}

int dynrag_engine_query(dynrag_engine *e, const char *question, const dynrag_query_options *opt,
                        dynrag_result **out, dynrag_error *err)
{
    *out = NULL;
    if (e == NULL || question == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "no engine or question");
    size_t qlen = strlen(question);
    if (blank(question))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "the question is empty");
    if (qlen > 65536)
        return dr_err_set(err, DYNRAG_ERR_LIMIT, "the question is longer than 65536 bytes");
    size_t bad = 0;
    if (!dr_utf8_valid(question, qlen, &bad))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "the question is not valid UTF-8 (byte %zu)",
                          bad);
    dynrag_query_options defaults;
    memset(&defaults, 0, sizeof(defaults));
    if (opt == NULL)
        opt = &defaults;
    bool route_only = opt->route_only;
    bool log_it = !route_only && !opt->no_log;
    char id[80];
    if (opt->query_id && *opt->query_id)
        dr_strlcpy(id, opt->query_id, sizeof(id));
    else {
        char now[40];
        dr_time_rfc3339(now, sizeof(now));
        unsigned long long n = atomic_fetch_add(&e->counter, 1) + 1;
        snprintf(id, sizeof(id), "q-%.19s-%d-%llu", now, (int)getpid(), n);
        for (char *c = id; *c; c++)
            if (*c == ':')
                *c = '-';
    }

    qstate s;
    memset(&s, 0, sizeof(s));
    s.e = e;
    s.opt = opt;
    s.p = e->p;
    s.q = question;
    s.start_us = dr_now_us();
    s.steps = cJSON_CreateArray();
    s.cascade = cJSON_CreateArray();
    dynrag_result *res = calloc(1, sizeof(*res));
    if (s.steps == NULL || s.cascade == NULL || res == NULL) {
        qstate_free(&s);
        free(res);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < DR_STAGE_COUNT; i++) {
        s.st[i].option = -1;
        for (size_t j = 0; j < DR_MAX_OPTIONS; j++)
            s.st[i].scores[j] = NAN;
    }
    dr_query_features_compute(question, &s.f);

    dynrag_error qerr;
    dynrag_error_clear(&qerr);
    int rc = run_stages(&s, &qerr);
    s.tot.latency_ms = elapsed_ms(&s);
    cJSON *rec = build_record(&s, id, rc == DYNRAG_OK ? NULL : dynrag_errmsg(&qerr));
    res->id = dr_strdup(id);
    int frc = rec && res->id ? fill_result(res, &s, rec) : DYNRAG_ERR_NOMEM;
    if (log_it && rec) {
        /* Failed queries are logged too, with their error. */
        char *line = res->json ? NULL : cJSON_PrintUnformatted(rec);
        const char *l = res->json ? res->json : line;
        dynrag_error lerr;
        dynrag_error_clear(&lerr);
        int lrc = l ? write_log_line(e, l, &lerr) : DYNRAG_ERR_NOMEM;
        if (lrc != DYNRAG_OK && rc == DYNRAG_OK && frc == DYNRAG_OK) {
            frc = lrc;
            qerr = lerr;
        }
        free(line);
    }
    if (rc == DYNRAG_OK && !route_only)
        remember(e, id, &s);
    cJSON_Delete(rec);
    qstate_free(&s);
    if (rc != DYNRAG_OK) {
        dynrag_result_free(res);
        if (err)
            *err = qerr;
        return rc;
    }
    if (frc != DYNRAG_OK) {
        dynrag_result_free(res);
        if (err && qerr.status != DYNRAG_OK)
            *err = qerr;
        else
            dr_err_set(err, frc, "out of memory");
        return frc;
    }
    *out = res;
    return DYNRAG_OK;
}

/* ---- engine life cycle -------------------------------------------------------- */

static bool pipeline_retrieves(const dynrag_pipeline *p)
{
    const dr_stage *st = &p->stages[DR_STAGE_RETRIEVAL_MODE];
    for (size_t i = 0; i < st->n_options; i++)
        if (strcmp(st->options[i].kind, "none") != 0)
            return true;
    return false;
}

static int open_indexes(dynrag_engine *e, dynrag_error *err)
{
    const dr_stage *st = &e->p->stages[DR_STAGE_EMBEDDER];
    if (e->index_dir == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "%s: the pipeline retrieves but names no index (set `index:` or pass "
                          "--index)",
                          e->p->path);
    int opened = 0;
    for (size_t i = 0; i < st->n_options && i < DR_MAX_OPTIONS; i++) {
        const dr_option *o = &st->options[i];
        if (!o->available) {
            e->index_error[i] = dr_asprintf("endpoint '%s' is not configured",
                                            o->endpoint ? o->endpoint->name : "?");
            continue;
        }
        dynrag_embedder_config ec;
        int rc = dynrag_pipeline_embedder(e->p, o->name, &ec, err);
        if (rc != DYNRAG_OK)
            return rc;
        dynrag_error ierr;
        dynrag_error_clear(&ierr);
        rc = dynrag_index_open(e->index_dir, &ec, &e->index[i], &ierr);
        if (rc != DYNRAG_OK) {
            e->index_error[i] = dr_strdup(dynrag_errmsg(&ierr));
            if (rc != DYNRAG_ERR_MISMATCH || st->n_options == 1) {
                if (err)
                    *err = ierr;
                return dr_err_prefix(err, "stages.embedder option '%s'", o->name);
            }
            dr_log(DYNRAG_LOG_WARN, MOD, "embedder option '%s' cannot serve index %s: %s",
                   o->name, e->index_dir, dynrag_errmsg(&ierr));
            continue;
        }
        opened++;
    }
    if (opened == 0)
        return dr_err_set(err, DYNRAG_ERR_STATE, "%s: no embedder option can open index %s",
                          e->p->path, e->index_dir);
    return DYNRAG_OK;
}

int dynrag_engine_create(const dynrag_pipeline *p, const dynrag_engine_options *opt,
                         dynrag_engine **out, dynrag_error *err)
{
    *out = NULL;
    dynrag_engine *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    e->p = p;
    e->log_fd = -1;
    pthread_mutex_init(&e->log_mu, NULL);
    pthread_mutex_init(&e->memo_mu, NULL);
    atomic_init(&e->counter, 0);
    int rc = DYNRAG_OK;
    e->memo = calloc(DR_MEMO_CAP, sizeof(*e->memo));
    if (e->memo == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    e->index_dir = dr_strdup(opt && opt->index_dir ? opt->index_dir : p->index_dir);
    if (pipeline_retrieves(p) && (rc = open_indexes(e, err)) != DYNRAG_OK)
        goto fail;
    for (int i = 0; i < DR_STAGE_COUNT; i++) {
        rc = dr_router_create(p, &p->stages[i], &e->routers[i], err);
        if (rc != DYNRAG_OK) {
            dr_err_prefix(err, "%s: stages.%s.router", p->path, dr_stage_name((dr_stage_id)i));
            goto fail;
        }
    }
    const char *log_path = opt && opt->log_path ? opt->log_path : p->log_path;
    if (log_path && !(opt && opt->no_log)) {
        e->log_path = dr_strdup(log_path);
        char *dir = dr_strdup(log_path);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash && slash != dir) {
            *slash = '\0';
            rc = dr_mkdirs(dir, err);
        }
        free(dir);
        if (rc != DYNRAG_OK)
            goto fail;
        e->log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (e->log_fd < 0) {
            rc = dr_err_set(err, DYNRAG_ERR_IO, "route log %s: %s", log_path, strerror(errno));
            goto fail;
        }
    }
    *out = e;
    return DYNRAG_OK;
fail:
    dynrag_engine_free(e);
    return rc;
}

const char *dynrag_engine_log_path(const dynrag_engine *e)
{
    return e->log_fd >= 0 ? e->log_path : NULL;
}

dynrag_index *dynrag_engine_index(const dynrag_engine *e, const char *embedder_option)
{
    if (e == NULL)
        return NULL;
    if (embedder_option == NULL)
        return first_index(e);
    int i = dr_stage_find_option(&e->p->stages[DR_STAGE_EMBEDDER], embedder_option);
    return i >= 0 && i < DR_MAX_OPTIONS ? e->index[i] : NULL;
}

int dynrag_engine_save(dynrag_engine *e, dynrag_error *err)
{
    int rc = DYNRAG_OK;
    for (int i = 0; i < DR_STAGE_COUNT; i++) {
        if (e->routers[i] == NULL)
            continue;
        int r = e->routers[i]->vt->save(e->routers[i], err);
        if (r != DYNRAG_OK && rc == DYNRAG_OK)
            rc = r;
    }
    if (e->log_fd >= 0 && fsync(e->log_fd) != 0 && errno != EINVAL && rc == DYNRAG_OK)
        rc = dr_err_set(err, DYNRAG_ERR_IO, "route log %s: %s", e->log_path, strerror(errno));
    return rc;
}

void dynrag_engine_free(dynrag_engine *e)
{
    if (e == NULL)
        return;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_engine_save(e, &err) != DYNRAG_OK)
        dr_log(DYNRAG_LOG_ERROR, MOD, "saving router state: %s", dynrag_errmsg(&err));
    for (int i = 0; i < DR_STAGE_COUNT; i++)
        dr_router_free(e->routers[i]);
    for (size_t i = 0; i < DR_MAX_OPTIONS; i++) {
        dynrag_index_close(e->index[i]);
        free(e->index_error[i]);
    }
    if (e->log_fd >= 0)
        close(e->log_fd);
    pthread_mutex_destroy(&e->log_mu);
    pthread_mutex_destroy(&e->memo_mu);
    free(e->memo);
    free(e->log_path);
    free(e->index_dir);
    free(e);
}

/* ---- feedback ---------------------------------------------------------------- */

static int apply_feedback(dynrag_engine *e, const signed char *choice,
                          const dr_query_features *f, double usd, double reward,
                          dynrag_error *err)
{
    if (!isfinite(reward) || reward < -1e6 || reward > 1e6)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "reward must be a finite number in [-1e6, 1e6]");
    int applied = 0;
    for (int i = 0; i < DR_STAGE_COUNT; i++) {
        dr_router *r = e->routers[i];
        if (r == NULL || choice[i] < 0 || strcmp(e->p->stages[i].router.type, "bandit") != 0)
            continue;
        double lambda = dr_param_num(e->p->stages[i].router.params, "lambda", 0);
        int rc = r->vt->feedback(r, f, choice[i], reward - lambda * usd, err);
        if (rc != DYNRAG_OK)
            return dr_err_prefix(err, "stages.%s.router", dr_stage_name((dr_stage_id)i));
        applied++;
    }
    dr_log(DYNRAG_LOG_DEBUG, MOD, "feedback %.4g applied to %d bandit router(s)", reward, applied);
    return DYNRAG_OK;
}

int dynrag_engine_feedback(dynrag_engine *e, const char *query_id, double reward,
                           dynrag_error *err)
{
    if (query_id == NULL || *query_id == '\0')
        return dr_err_set(err, DYNRAG_ERR_INVALID, "query_id is empty");
    dr_memo m;
    bool found = false;
    pthread_mutex_lock(&e->memo_mu);
    for (size_t i = 0; i < DR_MEMO_CAP && !found; i++) {
        if (e->memo[i].used && strcmp(e->memo[i].id, query_id) == 0) {
            m = e->memo[i];
            found = true;
        }
    }
    pthread_mutex_unlock(&e->memo_mu);
    if (!found)
        return dr_err_set(err, DYNRAG_ERR_NOTFOUND, "unknown query_id '%s'", query_id);
    return apply_feedback(e, m.choice, &m.features, m.usd, reward, err);
}

int dynrag_engine_feedback_record(dynrag_engine *e, const char *record_json, double reward,
                                  dynrag_error *err)
{
    cJSON *r = cJSON_Parse(record_json);
    if (r == NULL)
        return dr_err_set(err, DYNRAG_ERR_PARSE, "route-log record is not valid JSON");
    int rc = DYNRAG_OK;
    cJSON *q = cJSON_GetObjectItem(r, "query");
    cJSON *stages = cJSON_GetObjectItem(r, "stages");
    cJSON *tot = cJSON_GetObjectItem(r, "totals");
    cJSON *usd = tot ? cJSON_GetObjectItem(tot, "usd") : NULL;
    if (!cJSON_IsString(q) || !cJSON_IsArray(stages)) {
        rc = dr_err_set(err, DYNRAG_ERR_PARSE, "route-log record lacks `query` or `stages`");
        goto cleanup;
    }
    signed char choice[DR_STAGE_COUNT];
    memset(choice, -1, sizeof(choice));
    cJSON *st;
    cJSON_ArrayForEach(st, stages)
    {
        cJSON *name = cJSON_GetObjectItem(st, "stage");
        cJSON *ch = cJSON_GetObjectItem(st, "choice");
        if (!cJSON_IsString(name) || !cJSON_IsString(ch))
            continue;
        int sid = dr_stage_from_name(name->valuestring);
        if (sid < 0)
            continue;
        int oi = dr_stage_find_option(&e->p->stages[sid], ch->valuestring);
        if (oi < 0) {
            rc = dr_err_set(err, DYNRAG_ERR_MISMATCH,
                            "route-log record: stage %s chose '%s', which this pipeline lacks",
                            name->valuestring, ch->valuestring);
            goto cleanup;
        }
        choice[sid] = (signed char)oi;
    }
    dr_query_features f;
    dr_query_features_compute(q->valuestring, &f);
    rc = apply_feedback(e, choice, &f, cJSON_IsNumber(usd) ? usd->valuedouble : 0, reward, err);
cleanup:
    cJSON_Delete(r);
    return rc;
}

/* ---- results ----------------------------------------------------------------- */

const char *dynrag_result_id(const dynrag_result *r)
{
    return r->id;
}

const char *dynrag_result_answer(const dynrag_result *r)
{
    return r->answer;
}

bool dynrag_result_unanswerable(const dynrag_result *r)
{
    return r->unanswerable;
}

size_t dynrag_result_n_citations(const dynrag_result *r)
{
    return r->n_cits;
}

const dynrag_citation *dynrag_result_citation(const dynrag_result *r, size_t i)
{
    return i < r->n_cits ? &r->cits[i] : NULL;
}

size_t dynrag_result_n_retrieved(const dynrag_result *r)
{
    return r->n_ret;
}

const dynrag_citation *dynrag_result_retrieved(const dynrag_result *r, size_t i)
{
    return i < r->n_ret ? &r->ret[i] : NULL;
}

const char *dynrag_result_context(const dynrag_result *r)
{
    return r->context ? r->context : "";
}

size_t dynrag_result_n_decisions(const dynrag_result *r)
{
    return r->n_dec;
}

const dynrag_decision *dynrag_result_decision(const dynrag_result *r, size_t i)
{
    return i < r->n_dec ? &r->dec[i] : NULL;
}

const dynrag_totals *dynrag_result_totals(const dynrag_result *r)
{
    return &r->totals;
}

const char *dynrag_result_json(const dynrag_result *r)
{
    return r->json;
}

void dynrag_result_free(dynrag_result *r)
{
    if (r == NULL)
        return;
    free(r->id);
    free(r->answer);
    for (size_t i = 0; i < r->n_cits; i++) {
        free((char *)r->cits[i].doc_id);
        free((char *)r->cits[i].title);
    }
    free(r->cits);
    for (size_t i = 0; i < r->n_ret; i++) {
        free((char *)r->ret[i].doc_id);
        free((char *)r->ret[i].title);
    }
    free(r->ret);
    free(r->context);
    for (size_t i = 0; i < r->n_dec; i++)
        free((char *)r->dec[i].reason);
    free(r->json);
    free(r);
}
