/*
 * engine/retrieve.c - single and multi-step retrieval (IRCoT with an LLM,
 * offline reformulation without) and the context packed from the passages.
 */
#define _GNU_SOURCE
#include "engine/retrieve.h"

#include "core/util.h"
#include "generate/context.h"
#include "generate/reformulate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int dr_q_retrieve_step(qstate *s, int step, const char *query, int k, size_t *n_new,
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
int dr_q_retrieve_multi(qstate *s, int k, int max_steps, dynrag_error *err)
{
    size_t n_new = 0;
    int rc = dr_q_retrieve_step(s, 1, s->q, k, &n_new, err);
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
            dr_q_llm_config(llm, &cfg, NULL);
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
            dr_q_account_llm(s, DR_STAGE_INDEX, llm, &res);
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
        rc = dr_q_retrieve_step(s, step, next, k, &n_new, err);
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

/* Loads the whole document of every retrieved passage once (first passage
 * per document gives its score and chunk id) into s->docs. Fails when the
 * index cannot read a document. */
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
int dr_q_build_context(qstate *s, int ci, dynrag_error *err)
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
        views[i] =
            (dr_passage){src[i].doc_id, src[i].title, src[i].text, src[i].score, src[i].chunk_id};
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
