/*
 * engine/retrieve.c - single and multi-step retrieval (IRCoT with an LLM,
 * offline reformulation without) and the context packed from the passages.
 */
#define _GNU_SOURCE
#include "engine/retrieve.h"

#include "core/util.h"
#include "generate/context.h"
#include "generate/reformulate.h"
#include "retrieve/titles.h"
#include "net/http.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "engine"

/* The constant of reciprocal-rank fusion across retrieval steps. */
#define DR_STEP_RRF_K 60.0

/*
 * Takes in one step's hits (ranked): a chunk's fused score is the best
 * 1 / (DR_STEP_RRF_K + rank) over the steps that returned it (CombMAX of
 * reciprocal ranks: a passage every follow-up query returns again is not
 * promoted for that, since generic reformulations return the same off-topic
 * passages step after step); the first max_new chunks not held before are
 * copied into s->pass with that step and that fused score.
 * *n_new gets how many were added. Returns DYNRAG_ERR_NOMEM on allocation
 * failure (what was added so far stays).
 */
static int add_hits(qstate *s, int step, const dynrag_hits *h, size_t max_new, size_t *n_new)
{
    *n_new = 0;
    for (size_t i = 0; i < h->n; i++) {
        double gain = 1.0 / (DR_STEP_RRF_K + (double)(i + 1));
        bool seen = false;
        for (size_t j = 0; j < s->n_pass && !seen; j++) {
            if (s->pass[j].chunk_id == h->hits[i].chunk_id) {
                seen = true;
                s->pass[j].fused = DR_MAX(s->pass[j].fused, gain);
            }
        }
        if (i == 0)
            s->top_new = !seen;
        if (seen || *n_new >= max_new)
            continue;
        if (s->n_pass == s->cap_pass) {
            size_t cap = s->cap_pass ? s->cap_pass * 2 : 16;
            own_passage *np = dr_realloc(s->pass, cap * sizeof(*np));
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
        o->step = step;
        o->rank = (int)i + 1;
        o->fused = gain;
        if (!o->doc_id || !o->title || !o->text) {
            dr_free(o->doc_id);
            dr_free(o->title);
            dr_free(o->text);
            return DYNRAG_ERR_NOMEM;
        }
        s->n_pass++;
        (*n_new)++;
    }
    return DYNRAG_OK;
}

/* True when searches of the current index option embed the query. */
static bool search_embeds(const qstate *s)
{
    return s->search.mode == DYNRAG_SEARCH_DENSE || s->search.mode == DYNRAG_SEARCH_HYBRID;
}

/* The embedder option the query routed to, or NULL. */
static const dr_option *embedder_option(const qstate *s)
{
    int ei = s->st[DR_STAGE_EMBEDDER].option;
    return ei >= 0 ? &s->p->stages[DR_STAGE_EMBEDDER].options[ei] : NULL;
}

/* See retrieve.h. */
int dr_q_search_options(qstate *s, int ii)
{
    const dr_option *io = &s->p->stages[DR_STAGE_INDEX].options[ii];
    dynrag_search_options_init(&s->search);
    int mode = dynrag_search_mode_parse(io->kind);
    if (mode < 0)
        return DYNRAG_ERR_INVALID;
    s->search.mode = (dynrag_search_mode)mode;
    dr_option_search_options(io, &s->search);
    return DYNRAG_OK;
}

/* Runs one search and takes in its hits (no budget checks, no fallback). */
static int search_once(qstate *s, int step, const char *query, int k, size_t *n_new,
                       dynrag_error *err)
{
    /* Later steps look past what earlier steps found: ask for k more than
     * already held, keep the first k new chunks. */
    dynrag_search_options so = s->search;
    so.k = (int)DR_MIN((size_t)k + s->n_pass, 10000);
    dynrag_hits h;
    memset(&h, 0, sizeof(h));
    int64_t t0 = dr_now_us();
    /* A remote embedder's calls end by the query's deadline. */
    int64_t prev = dr_http_thread_deadline(s->deadline_us);
    int rc = dynrag_index_search(s->idx, query, &so, &h, err);
    dr_http_thread_deadline(prev);
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "retrieval step %d", step);
    s->top_new = false;
    rc = add_hits(s, step, &h, (size_t)k, n_new);
    int64_t dt = dr_now_us() - t0;
    dr_jb *jb = &s->jb;
    cJSON *js = dr_jb_obj(jb, s->steps, NULL);
    dr_jb_num(jb, js, "step", step);
    dr_jb_str(jb, js, "query", query);
    dr_jb_str(jb, js, "mode", dynrag_search_mode_name(so.mode));
    dr_jb_num(jb, js, "hits", (double)h.n);
    dr_jb_num(jb, js, "new_hits", (double)*n_new);
    dr_jb_bool(jb, js, "top_new", s->top_new);
    cJSON *ids = dr_jb_arr(jb, js, "doc_ids");
    for (size_t i = 0; i < h.n && i < 10; i++)
        dr_jb_str(jb, ids, NULL, h.hits[i].doc_id ? h.hits[i].doc_id : "");
    dr_jb_num(jb, js, "latency_us", (double)dt);
    dynrag_hits_free(&h);
    s->tot.retrieval_steps++;
    if (rc != DYNRAG_OK)
        return dr_err_set(err, rc, "out of memory");
    dr_log(DYNRAG_LOG_DEBUG, MOD, "retrieval step %d: %zu new passages, %zu held", step, *n_new,
           s->n_pass);
    return DYNRAG_OK;
}

int dr_q_retrieve_step(qstate *s, int step, const char *query, int k, size_t *n_new,
                       dynrag_error *err)
{
    *n_new = 0;
    /* A search that embeds the query calls the embedder: price it first. */
    const dr_option *eo = search_embeds(s) ? embedder_option(s) : NULL;
    dr_budget price = {0, 0, 0};
    if (eo != NULL) {
        price = dr_budget_price_call(eo, dr_estimate_tokens(query), 0);
        dr_budget left = dr_q_remaining(s);
        if (step > 1 && !dr_budget_fits(&price, &left)) {
            char b[160];
            dr_budget_format(&left, b, sizeof(b));
            dr_q_cut(s, DR_STAGE_INDEX, "later retrieval steps",
                     "step %d's embedder call does not fit the remaining budget (%s left)", step,
                     b);
            return DYNRAG_ERR_LIMIT;
        }
    }
    int rc = search_once(s, step, query, k, n_new, err);
    if (eo != NULL && rc == DYNRAG_OK)
        dr_q_charge(s, DR_STAGE_EMBEDDER, price.usd, 0, price.energy_wh);
    if (rc == DYNRAG_OK || rc == DYNRAG_ERR_NOMEM)
        return rc;
    /* The index option failed: its fallback, when there is one, runs the step. */
    int cur = s->st[DR_STAGE_INDEX].option;
    int fb = cur >= 0 ? dr_q_fallback(s, DR_STAGE_INDEX, cur, err) : -1;
    if (fb < 0 || dr_q_search_options(s, fb) != DYNRAG_OK)
        return rc;
    dynrag_error_clear(err);
    rc = search_once(s, step, query, k, n_new, err);
    return rc;
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

/* Writes the evidence gathered so far as numbered lines into b. */
static int evidence_text(const qstate *s, dr_buf *b, size_t max_pass)
{
    int rc = DYNRAG_OK;
    for (size_t i = 0; i < s->n_pass && i < max_pass && rc == DYNRAG_OK; i++)
        rc = dr_buf_printf(b, "[%zu] %s: %s\n", i + 1, s->pass[i].title, s->pass[i].text);
    return rc;
}

/* The cheapest available generator's price for in_tokens of prompt: what a
 * reasoning call must leave in the budget for the answer. */
static dr_budget generator_reserve(const qstate *s, double in_tokens)
{
    const dr_stage *g = &s->p->stages[DR_STAGE_GENERATOR];
    dr_budget best = {INFINITY, INFINITY, INFINITY};
    for (size_t i = 0; i < g->n_options; i++) {
        if (!g->options[i].available)
            continue;
        dr_budget p = dr_budget_price(&g->options[i], in_tokens, DR_BUDGET_ANSWER_TOKENS);
        if (p.usd < best.usd || (p.usd == best.usd && p.energy_wh < best.energy_wh))
            best = p;
    }
    if (!isfinite(best.usd))
        best = (dr_budget){0, 0, 0};
    best.latency_ms = 0; /* the deadline guards latency */
    return best;
}

/*
 * One IRCoT reasoning call for the step after `step`: priced before it runs
 * (with what the answer will need reserved) and cut when it does not fit,
 * then asked for the next reasoning sentence. *next gets that sentence
 * (caller frees) or NULL when it gives the answer. Returns DYNRAG_OK,
 * DYNRAG_ERR_LIMIT when the budget cut the call (recorded), or the call's
 * error (its latency charged).
 */
static int reasoning_step(qstate *s, const dr_option *llm, int step, dr_buf *steps_text,
                          char **next, dynrag_error *err)
{
    *next = NULL;
    dr_buf prompt = {0};
    int rc = dr_buf_printf(&prompt,
                           "Answer the question step by step using the evidence. Write only "
                           "the NEXT reasoning sentence. If the evidence already gives the "
                           "answer, write: So the answer is: <answer>.\n\nQuestion: %s\n\n"
                           "Evidence:\n",
                           s->q);
    if (rc == DYNRAG_OK)
        rc = evidence_text(s, &prompt, 12);
    if (rc == DYNRAG_OK)
        rc = dr_buf_printf(&prompt, "\nReasoning so far:\n%s\nNext sentence:",
                           steps_text->data ? steps_text->data : "(none)");
    if (rc != DYNRAG_OK) {
        dr_buf_free(&prompt);
        return dr_err_set(err, rc, "out of memory");
    }
    int in_tok = dr_estimate_tokens(prompt.data);
    dr_budget price = dr_budget_price_call(llm, in_tok, DR_BUDGET_REASONING_TOKENS);
    dr_budget need = dr_budget_add(price, generator_reserve(s, in_tok));
    dr_budget left = dr_q_remaining(s);
    if (!dr_budget_fits(&need, &left)) {
        char b[160], c[160];
        dr_budget_format(&left, b, sizeof(b));
        dr_budget_format(&price, c, sizeof(c));
        dr_q_cut(s, DR_STAGE_INDEX, "reasoning call",
                 "step %d: the reasoning call (%s) and the answer do not fit the remaining budget "
                 "(%s left); offline reformulation instead",
                 step + 1, c, b);
        dr_buf_free(&prompt);
        return DYNRAG_ERR_LIMIT;
    }
    dr_llm_config cfg;
    dr_q_llm_config(s, llm, &cfg);
    cfg.n = 1;
    cfg.max_tokens = DR_BUDGET_REASONING_TOKENS;
    cfg.logprobs = false;
    dr_llm_message msg = {"user", prompt.data};
    dr_llm_result res;
    memset(&res, 0, sizeof(res));
    rc = dr_llm_chat(&cfg, &msg, 1, &res, err);
    dr_buf_free(&prompt);
    if (rc != DYNRAG_OK) {
        dr_q_charge(s, DR_STAGE_INDEX, 0, res.latency_ms, 0);
        dr_llm_result_free(&res);
        return dr_err_prefix(err, "multi-step reasoning (option '%s')", llm->name);
    }
    dr_q_account_llm(s, DR_STAGE_INDEX, llm, &res);
    dr_q_check_spent(s, "a multi-step reasoning call");
    const char *t = res.text ? res.text : "";
    rc = dr_buf_printf(steps_text, "%s\n", t);
    bool done = strcasestr(t, "answer is") != NULL || t[0] == '\0';
    if (rc == DYNRAG_OK && !done && (*next = dr_strdup(t)) == NULL)
        rc = DYNRAG_ERR_NOMEM;
    dr_llm_result_free(&res);
    return rc == DYNRAG_OK ? DYNRAG_OK : dr_err_set(err, rc, "out of memory");
}

/* The titles of the query's index as reformulation links entities to them
 * (generate/reformulate.h): a sorted key array and the snapshot it belongs
 * to, released by titles_done(). */
typedef struct title_set {
    const uint64_t *keys;
    size_t n;
    dynrag_index *pin;
} title_set;

static bool title_has(void *user, uint64_t key)
{
    const title_set *t = user;
    return dr_u64_sorted_has(t->keys, t->n, key);
}

/* Fills *t and *d with the titles of the query's index (none without one). */
static void titles_get(qstate *s, title_set *t, dr_titles *d)
{
    memset(t, 0, sizeof(*t));
    if (s->idx != NULL)
        t->keys = dr_index_title_keys(s->idx, dr_title_key, &t->n, &t->pin);
    d->has = t->n > 0 ? title_has : NULL;
    d->user = t;
}

static void titles_done(title_set *t)
{
    dr_index_unpin(t->pin);
    memset(t, 0, sizeof(*t));
}

/* The offline next query: reformulated from the evidence (NULL: stop). */
static int reformulate_step(qstate *s, dr_reform_state *rs, char **next, dynrag_error *err)
{
    *next = NULL;
    dr_passage *views = dr_calloc(s->n_pass ? s->n_pass : 1, sizeof(*views));
    if (views == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n_pass; i++)
        views[i] = (dr_passage){s->pass[i].doc_id, s->pass[i].title, s->pass[i].text,
                                s->pass[i].score, s->pass[i].chunk_id};
    int rc = dr_reformulate(rs, s->q, views, s->n_pass, next, err);
    dr_free(views);
    return rc;
}

/*
 * Steps 2..max_steps of multi-step retrieval, after step 1 ran. With an LLM (IRCoT-style): ask for the next
 * reasoning sentence given the evidence so far, retrieve with it, and stop
 * when the sentence gives the answer or max_steps is reached. Without an
 * LLM, or once a reasoning call failed or did not fit the budget (the
 * built-in safe path): one follow-up query per bridge entity of the
 * evidence (dr_reformulate), stopping when no bridge is left or when a
 * step's best hit is a passage not held before (the bridge is found). Every
 * path stops when a step brings nothing new. A step is not started past the
 * query's deadline (recorded as a cut).
 */
static int later_steps(qstate *s, int k, int max_steps, dynrag_error *err)
{
    size_t n_new = 0;
    int rc = DYNRAG_OK;
    const dr_option *llm = reasoning_llm(s->p);
    dr_reform_state *rs = NULL;
    dr_buf steps_text = {0};
    if ((rc = dr_reform_create(&rs)) != DYNRAG_OK)
        return dr_err_set(err, rc, "out of memory");
    title_set ts;
    dr_titles titles;
    titles_get(s, &ts, &titles);
    dr_reform_set_titles(rs, &titles);
    for (int step = 2; step <= max_steps; step++) {
        if (dr_q_past_deadline(s)) {
            dr_q_cut(s, DR_STAGE_INDEX, "later retrieval steps",
                     "the latency budget (%.6g ms) is used up before step %d", s->budget.latency_ms,
                     step);
            break;
        }
        char *next = NULL;
        if (llm) {
            dynrag_error lerr;
            dynrag_error_clear(&lerr);
            rc = reasoning_step(s, llm, step - 1, &steps_text, &next, &lerr);
            if (rc == DYNRAG_ERR_NOMEM) {
                *err = lerr;
                break;
            }
            if (rc != DYNRAG_OK) {
                if (rc != DYNRAG_ERR_LIMIT) {
                    /* The built-in safe path of multi-step reasoning. */
                    cJSON *f = dr_jb_obj(&s->jb, s->fallbacks, NULL);
                    dr_jb_str(&s->jb, f, "stage", dr_stage_name(DR_STAGE_INDEX));
                    dr_jb_str(&s->jb, f, "failed", llm->name);
                    dr_jb_str(&s->jb, f, "error", dynrag_errmsg(&lerr));
                    dr_jb_str(&s->jb, f, "took", "offline reformulation");
                    dr_log(DYNRAG_LOG_WARN, MOD, "%s; using offline reformulation",
                           dynrag_errmsg(&lerr));
                    size_t len = strlen(s->st[DR_STAGE_INDEX].reason);
                    snprintf(s->st[DR_STAGE_INDEX].reason + len,
                             sizeof(s->st[DR_STAGE_INDEX].reason) - len,
                             "; fallback to offline reformulation after error: %s",
                             dynrag_errmsg(&lerr));
                }
                llm = NULL;
                rc = reformulate_step(s, rs, &next, err);
            }
        } else {
            rc = reformulate_step(s, rs, &next, err);
        }
        if (rc != DYNRAG_OK)
            break;
        if (next == NULL)
            break; /* stop: answer found or no new evidence */
        rc = dr_q_retrieve_step(s, step, next, k, &n_new, err);
        dr_free(next);
        if (rc == DYNRAG_ERR_LIMIT) {
            rc = DYNRAG_OK; /* the budget cut the step (recorded) */
            break;
        }
        if (rc != DYNRAG_OK)
            break;
        if (n_new == 0)
            break; /* nothing new came back */
        if (llm == NULL && s->top_new)
            break; /* the bridge is found: its passage is the step's best hit */
    }
    dr_buf_free(&steps_text);
    dr_reform_free(rs);
    titles_done(&ts);
    return rc;
}

/* See retrieve.h. */
int dr_q_retrieve_multi(qstate *s, int k, int max_steps, dynrag_error *err)
{
    size_t n_new = 0;
    int rc = dr_q_retrieve_step(s, 1, s->q, k, &n_new, err);
    if (rc != DYNRAG_OK)
        return rc;
    return later_steps(s, k, max_steps, err);
}

/*
 * Decides whether step 1's passages suffice (see retrieve.h), records the
 * features and the decision as "sufficiency" in step 1's log entry and in
 * the retrieval_mode stage's reason. *sufficient gets the decision.
 */
static int judge_sufficiency(qstate *s, double min_coverage, bool follow_bridge,
                             bool *sufficient, dynrag_error *err)
{
    *sufficient = true;
    dr_passage *views = dr_calloc(s->n_pass ? s->n_pass : 1, sizeof(*views));
    if (views == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n_pass; i++)
        views[i] = (dr_passage){s->pass[i].doc_id, s->pass[i].title, s->pass[i].text,
                                s->pass[i].score, s->pass[i].chunk_id};
    dr_sufficiency f;
    title_set ts;
    dr_titles titles;
    titles_get(s, &ts, &titles);
    int rc = dr_reform_sufficiency(s->q, views, s->n_pass, &titles, &f, err);
    bool linking = titles.has != NULL;
    titles_done(&ts);
    dr_free(views);
    if (rc != DYNRAG_OK)
        return rc;
    const char *why;
    if (s->n_pass == 0) {
        why = "step 1 found nothing";
    } else if (f.coverage < min_coverage) {
        *sufficient = false;
        why = "the top passages miss question words";
    } else if (follow_bridge && f.has_bridge && !f.bridge_in_hand &&
               (f.bridge_linked || !linking)) {
        /* With the index's titles to link to, only a bridge that names an
         * indexed document not in hand calls for another step. */
        *sufficient = false;
        why = linking ? "the top passages name an indexed document not in hand"
                      : "the top passages point to a bridge not in hand";
    } else {
        why = !follow_bridge      ? "the top passages cover the question"
              : !f.has_bridge     ? "the top passages cover the question, no bridge"
              : f.bridge_in_hand  ? "the top passages cover the question, the bridge is in hand"
                                  : "the top passages cover the question, the bridge names no "
                                    "indexed document";
    }
    /* Into step 1's log entry (none when its search failed); a member
     * lost to a failed allocation marks the record incomplete (s->jb). */
    cJSON *first = cJSON_GetArrayItem(s->steps, 0);
    dr_jb *jb = &s->jb;
    cJSON *js = first != NULL ? dr_jb_obj(jb, first, "sufficiency") : NULL;
    dr_jb_num(jb, js, "coverage", f.coverage);
    dr_jb_num(jb, js, "min_coverage", min_coverage);
    dr_jb_bool(jb, js, "follow_bridge", follow_bridge);
    if (f.has_bridge)
        dr_jb_str(jb, js, "bridge", f.bridge);
    else
        dr_jb_null(jb, js, "bridge");
    dr_jb_bool(jb, js, "bridge_in_hand", f.bridge_in_hand);
    if (linking)
        dr_jb_bool(jb, js, "bridge_linked", f.bridge_linked);
    else
        dr_jb_null(jb, js, "bridge_linked");
    dr_jb_bool(jb, js, "sufficient", *sufficient);
    dr_jb_str(jb, js, "why", why);
    stage_rec *rec = &s->st[DR_STAGE_RETRIEVAL_MODE];
    size_t len = strlen(rec->reason);
    snprintf(rec->reason + len, sizeof(rec->reason) - len,
             "; adaptive: step 1 %s (%s; coverage %.2f)",
             *sufficient ? "suffices" : "does not suffice, more steps", why, f.coverage);
    return DYNRAG_OK;
}

/* See retrieve.h. */
int dr_q_retrieve_adaptive(qstate *s, int k, int max_steps, double min_coverage,
                           bool follow_bridge, dynrag_error *err)
{
    size_t n_new = 0;
    int rc = dr_q_retrieve_step(s, 1, s->q, k, &n_new, err);
    if (rc != DYNRAG_OK)
        return rc;
    bool sufficient = true;
    rc = judge_sufficiency(s, min_coverage, follow_bridge, &sufficient, err);
    if (rc != DYNRAG_OK || sufficient || max_steps < 2)
        return rc;
    return later_steps(s, k, max_steps, err);
}

/* Loads the whole document of every retrieved passage once (the first passage
 * of a document gives its score, chunk id and step; its fused score is the
 * best of its passages) into s->docs. Fails when the
 * index cannot read a document. */
static int load_documents(qstate *s, dynrag_error *err)
{
    if (s->docs)
        return DYNRAG_OK;
    s->docs = dr_calloc(s->n_pass ? s->n_pass : 1, sizeof(*s->docs));
    if (s->docs == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n_pass; i++) {
        bool seen = false;
        for (size_t j = 0; j < s->n_docs && !seen; j++) {
            if (strcmp(s->docs[j].doc_id, s->pass[i].doc_id) == 0) {
                seen = true;
                if (s->pass[i].fused > s->docs[j].fused)
                    s->docs[j].fused = s->pass[i].fused;
            }
        }
        if (seen)
            continue;
        own_passage *d = &s->docs[s->n_docs];
        int rc = dynrag_index_document(s->idx, s->pass[i].doc_id, &d->title, &d->text, err);
        if (rc == DYNRAG_ERR_NOTFOUND) {
            /* A writer re-indexed the folder between the search and now and
             * the document is gone: the passage retrieved from it stands
             * for it (the query does not fail for a live re-index). */
            dr_log(DYNRAG_LOG_INFO, MOD,
                   "context: document '%s' left the index after it was retrieved; its "
                   "retrieved passage stands for it",
                   s->pass[i].doc_id);
            dynrag_error_clear(err);
            d->title = dr_strdup(s->pass[i].title);
            d->text = dr_strdup(s->pass[i].text);
            rc = d->title && d->text ? DYNRAG_OK : dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            if (rc != DYNRAG_OK) {
                dr_free(d->title);
                dr_free(d->text);
                d->title = d->text = NULL;
                return rc;
            }
        }
        if (rc != DYNRAG_OK)
            return dr_err_prefix(err, "context: document '%s'", s->pass[i].doc_id);
        d->doc_id = dr_strdup(s->pass[i].doc_id);
        d->score = s->pass[i].score;
        d->chunk_id = s->pass[i].chunk_id;
        d->step = s->pass[i].step;
        d->rank = s->pass[i].rank;
        d->fused = s->pass[i].fused;
        s->n_docs++;
        if (d->doc_id == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    return DYNRAG_OK;
}

typedef struct fused_item {
    size_t i;
    double fused;
    bool reserved;
} fused_item;

static int fused_cmp(const void *a, const void *b)
{
    const fused_item *x = a, *y = b;
    if (x->reserved != y->reserved)
        return x->reserved ? -1 : 1;
    if (x->fused != y->fused)
        return x->fused > y->fused ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/*
 * The order in which the context stage considers src[0..n) (passages or
 * documents of every step): first the question's best passage and each
 * later step's best hit when it was new (rank 1 of that step's search: a
 * follow-up query's lower new hits are not trusted over the question's own
 * ranking), then the rest, each group by fused score (reciprocal rank
 * across steps) with discovery order breaking ties. With one step this is
 * the retrieval order. *n_reserved gets the size of the first group. Returns a malloc'd array of n indices into src
 * (caller frees), or NULL on allocation failure.
 */
static size_t *fused_order(const own_passage *src, size_t n, size_t *n_reserved)
{
    *n_reserved = 0;
    fused_item *it = dr_calloc(n ? n : 1, sizeof(*it));
    size_t *order = dr_calloc(n ? n : 1, sizeof(*order));
    if (it == NULL || order == NULL) {
        dr_free(it);
        dr_free(order);
        return NULL;
    }
    int max_step = 1;
    for (size_t i = 0; i < n; i++)
        max_step = DR_MAX(max_step, src[i].step);
    for (size_t i = 0; i < n; i++) {
        it[i].i = i;
        it[i].fused = src[i].fused;
        bool first_of_step = true;
        for (size_t j = 0; j < i && first_of_step; j++)
            first_of_step = src[j].step != src[i].step;
        it[i].reserved = max_step > 1 && first_of_step && src[i].rank == 1;
        *n_reserved += it[i].reserved;
    }
    qsort(it, n, sizeof(*it), fused_cmp);
    for (size_t i = 0; i < n; i++)
        order[i] = it[i].i;
    dr_free(it);
    return order;
}

/*
 * Packs the context of context option `ci` from the union of every step's
 * passages (or documents), taken in fused_order(), into s->ctx_pass,
 * s->ctx_step, s->ctx_fused and s->context_text.
 */
int dr_q_build_context(qstate *s, int ci, dynrag_error *err)
{
    const dr_option *o = &s->p->stages[DR_STAGE_CONTEXT].options[ci];
    dr_free(s->ctx_pass);
    dr_free(s->context_text);
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
    dr_free(s->ctx_step);
    dr_free(s->ctx_fused);
    s->ctx_step = NULL;
    s->ctx_fused = NULL;
    size_t n_reserved = 0;
    size_t *order = fused_order(src, n_src, &n_reserved);
    dr_passage *views = dr_calloc(n_src ? n_src : 1, sizeof(*views));
    size_t *cover = dr_calloc(n_src ? n_src : 1, sizeof(*cover));
    if (views == NULL || order == NULL || cover == NULL) {
        dr_free(order);
        dr_free(views);
        dr_free(cover);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n_src; i++) {
        const own_passage *sp = &src[order[i]];
        views[i] = (dr_passage){sp->doc_id, sp->title, sp->text, sp->score, sp->chunk_id};
    }
    const char *ord = dr_opt_str(o, "order");
    if (ord != NULL && strcmp(ord, "coverage") == 0 && n_src > 1) {
        /* The best passage (and each later step's reserved one) first, then
         * by what each adds of the question's words. */
        int rc = dr_context_cover_order(s->q, views, n_src, DR_MAX(n_reserved, 1), cover, err);
        if (rc != DYNRAG_OK) {
            dr_free(order);
            dr_free(views);
            dr_free(cover);
            return rc;
        }
        for (size_t i = 0; i < n_src; i++) {
            const own_passage *sp = &src[order[cover[i]]];
            views[i] = (dr_passage){sp->doc_id, sp->title, sp->text, sp->score, sp->chunk_id};
        }
        for (size_t i = 0; i < n_src; i++)
            cover[i] = order[cover[i]];
        memcpy(order, cover, n_src * sizeof(*order));
    }
    dr_free(cover);
    dr_context_config cc = {o->kind, dr_opt_int(o, "k"),
                            dr_opt_int(o, "max_tokens")};
    size_t *kept = NULL, n_kept = 0;
    int tokens = 0;
    int rc = dr_context_pack(&cc, views, n_src, &kept, &n_kept, &s->context_text, &tokens, err);
    if (rc != DYNRAG_OK) {
        rc = dr_err_prefix(err, "stages.context option '%s'", o->name);
        goto cleanup;
    }
    s->ctx_pass = dr_calloc(n_kept ? n_kept : 1, sizeof(*s->ctx_pass));
    s->ctx_step = dr_calloc(n_kept ? n_kept : 1, sizeof(*s->ctx_step));
    s->ctx_fused = dr_calloc(n_kept ? n_kept : 1, sizeof(*s->ctx_fused));
    if (s->ctx_pass == NULL || s->ctx_step == NULL || s->ctx_fused == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n_kept; i++) {
        s->ctx_pass[i] = views[kept[i]];
        s->ctx_step[i] = src[order[kept[i]]].step;
        s->ctx_fused[i] = src[order[kept[i]]].fused;
    }
    s->n_ctx = n_kept;
cleanup:
    dr_free(kept);
    dr_free(views);
    dr_free(order);
    return rc;
}
