/*
 * engine/record.c - the route-log record of a query, the log line writer,
 * and the query result with its accessors.
 */
#include "engine/record.h"

#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The query features as a JSON object. */
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

cJSON *dr_q_build_record(const qstate *s, const char *id, const char *error)
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
        if (rec->routed) {
            cJSON *un = NULL;
            for (size_t o = 0; o < st->n_options; o++) {
                if (s->avail[i][o])
                    continue;
                if (un == NULL)
                    un = cJSON_AddObjectToObject(d, "unavailable");
                cJSON_AddStringToObject(un, st->options[o].name, s->unavail_why[i][o]);
            }
        }
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
    if (cJSON_GetArraySize(s->fallbacks) > 0)
        cJSON_AddItemToObject(r, "fallbacks", cJSON_Duplicate(s->fallbacks, 1));
    if (cJSON_GetArraySize(s->cuts) > 0)
        cJSON_AddItemToObject(r, "cuts", cJSON_Duplicate(s->cuts, 1));
    if (s->n_ctx > 0) {
        cJSON *ctx = cJSON_AddArrayToObject(r, "context");
        for (size_t i = 0; i < s->n_ctx; i++) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "doc_id", s->ctx_pass[i].doc_id);
            cJSON_AddNumberToObject(c, "chunk_id", (double)s->ctx_pass[i].chunk_id);
            cJSON_AddNumberToObject(c, "step", s->ctx_step[i]);
            cJSON_AddNumberToObject(c, "fused", s->ctx_fused[i]);
            cJSON_AddItemToArray(ctx, c);
        }
    }
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
    if (s->tot.over_budget)
        cJSON_AddStringToObject(t, "over_budget_reason", s->over_reason);
    cJSON *b = cJSON_AddObjectToObject(r, "budget");
    cJSON_AddItemToObject(b, "usd", num_or_null(s->budget.usd));
    cJSON_AddItemToObject(b, "latency_ms", num_or_null(s->budget.latency_ms));
    cJSON_AddItemToObject(b, "energy_wh", num_or_null(s->budget.energy_wh));
    return r;
}

int dr_engine_write_log(dynrag_engine *e, const char *line, dynrag_error *err)
{
    if (e->log_fd < 0)
        return DYNRAG_OK;
    size_t n = strlen(line);
    char *buf = dr_malloc(n + 1);
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
    dr_free(buf);
    return rc;
}

int dr_q_fill_result(dynrag_result *res, const qstate *s, cJSON *rec)
{
    const dynrag_pipeline *p = s->p;
    res->json = rec ? cJSON_PrintUnformatted(rec) : NULL;
    res->answer = dr_strdup(s->answer ? s->answer : "");
    res->unanswerable = s->unanswerable;
    res->totals = s->tot;
    if ((rec && res->json == NULL) || res->answer == NULL)
        return DYNRAG_ERR_NOMEM;
    res->context = dr_strdup(s->context_text ? s->context_text : "");
    res->ret = dr_calloc(s->n_pass ? s->n_pass : 1, sizeof(*res->ret));
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
    res->ctx = dr_calloc(s->n_ctx ? s->n_ctx : 1, sizeof(*res->ctx));
    if (res->ctx == NULL)
        return DYNRAG_ERR_NOMEM;
    for (size_t i = 0; i < s->n_ctx; i++) {
        res->ctx[i].doc_id = dr_strdup(s->ctx_pass[i].doc_id ? s->ctx_pass[i].doc_id : "");
        res->ctx[i].title = dr_strdup(s->ctx_pass[i].title ? s->ctx_pass[i].title : "");
        res->ctx[i].chunk_id = s->ctx_pass[i].chunk_id;
        res->ctx[i].score = s->ctx_pass[i].score;
        res->n_ctx++;
        if (!res->ctx[i].doc_id || !res->ctx[i].title)
            return DYNRAG_ERR_NOMEM;
    }
    res->cits = dr_calloc(s->n_cited ? s->n_cited : 1, sizeof(*res->cits));
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

size_t dynrag_result_n_context(const dynrag_result *r)
{
    return r->n_ctx;
}

const dynrag_citation *dynrag_result_context_passage(const dynrag_result *r, size_t i)
{
    return i < r->n_ctx ? &r->ctx[i] : NULL;
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

/* Public: frees a result and every string it owns; NULL is fine. */
void dynrag_result_free(dynrag_result *r)
{
    if (r == NULL)
        return;
    dr_free(r->id);
    dr_free(r->answer);
    for (size_t i = 0; i < r->n_cits; i++) {
        dr_free((char *)r->cits[i].doc_id);
        dr_free((char *)r->cits[i].title);
    }
    dr_free(r->cits);
    for (size_t i = 0; i < r->n_ret; i++) {
        dr_free((char *)r->ret[i].doc_id);
        dr_free((char *)r->ret[i].title);
    }
    dr_free(r->ret);
    dr_free(r->context);
    for (size_t i = 0; i < r->n_ctx; i++) {
        dr_free((char *)r->ctx[i].doc_id);
        dr_free((char *)r->ctx[i].title);
    }
    dr_free(r->ctx);
    for (size_t i = 0; i < r->n_dec; i++)
        dr_free((char *)r->dec[i].reason);
    dr_free(r->json);
    dr_free(r);
}
