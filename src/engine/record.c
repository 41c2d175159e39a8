/*
 * engine/record.c - the route-log record of a query, the log line writer,
 * and the query result with its accessors.
 */
#include "engine/record.h"

#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Adds the query features as an object under key. */
static void features_json(dr_jb *jb, cJSON *parent, const char *key, const dr_query_features *f)
{
    cJSON *o = dr_jb_obj(jb, parent, key);
    dr_jb_num(jb, o, "n_words", f->n_words);
    dr_jb_num(jb, o, "n_chars", f->n_chars);
    dr_jb_num(jb, o, "n_entities", f->n_entities);
    dr_jb_num(jb, o, "n_question_words", f->n_question_words);
    dr_jb_str(jb, o, "first_qword", f->first_qword);
    dr_jb_bool(jb, o, "has_comparison", f->has_comparison);
    dr_jb_bool(jb, o, "has_conjunction", f->has_conjunction);
    dr_jb_bool(jb, o, "has_nested", f->has_nested);
}

/* Returns NULL when memory ran out, here or while the query built its
 * steps, cascade, cuts and fallbacks (s->jb): a record is whole or absent. */
cJSON *dr_q_build_record(const qstate *s, const char *id, const char *error)
{
    const dynrag_pipeline *p = s->p;
    dr_jb jbs = {s->jb.nomem}, *jb = &jbs;
    cJSON *r = cJSON_CreateObject();
    if (r == NULL)
        return NULL;
    char now[40];
    dr_time_rfc3339(now, sizeof(now));
    dr_jb_str(jb, r, "id", id);
    dr_jb_str(jb, r, "time", now);
    dr_jb_str(jb, r, "pipeline", p->name);
    dr_jb_str(jb, r, "query", s->q);
    features_json(jb, r, "features", &s->f);
    cJSON *stages = dr_jb_arr(jb, r, "stages");
    for (int i = 0; i < DR_STAGE_COUNT && !jb->nomem; i++) {
        const stage_rec *rec = &s->st[i];
        const dr_stage *st = &p->stages[i];
        if (!rec->routed && !rec->skipped)
            continue;
        cJSON *d = dr_jb_obj(jb, stages, NULL);
        dr_jb_str(jb, d, "stage", dr_stage_name((dr_stage_id)i));
        dr_jb_str(jb, d, "router", st->router.type);
        features_json(jb, d, "features", &s->f);
        cJSON *sc = dr_jb_obj(jb, d, "scores");
        for (size_t o = 0; o < st->n_options; o++)
            dr_jb_num(jb, sc, st->options[o].name, rec->scores[o]);
        if (rec->skipped)
            dr_jb_null(jb, d, "choice");
        else
            dr_jb_str(jb, d, "choice", st->options[rec->option].name);
        dr_jb_bool(jb, d, "skipped", rec->skipped);
        dr_jb_str(jb, d, "reason", rec->reason);
        if (rec->routed) {
            cJSON *un = NULL;
            for (size_t o = 0; o < st->n_options; o++) {
                if (s->avail[i][o])
                    continue;
                if (un == NULL)
                    un = dr_jb_obj(jb, d, "unavailable");
                dr_jb_str(jb, un, st->options[o].name, s->unavail_why[i][o]);
            }
        }
        dr_jb_num(jb, d, "latency_us", (double)rec->latency_us);
        cJSON *c = dr_jb_obj(jb, d, "cost");
        dr_jb_num(jb, c, "usd", rec->usd);
        dr_jb_num(jb, c, "latency_ms", rec->latency_ms);
        dr_jb_num(jb, c, "energy_wh", rec->energy_wh);
    }
    dr_jb_copy(jb, r, "steps", s->steps);
    if (cJSON_GetArraySize(s->cascade) > 0)
        dr_jb_copy(jb, r, "cascade", s->cascade);
    if (cJSON_GetArraySize(s->fallbacks) > 0)
        dr_jb_copy(jb, r, "fallbacks", s->fallbacks);
    if (cJSON_GetArraySize(s->cuts) > 0)
        dr_jb_copy(jb, r, "cuts", s->cuts);
    if (s->n_ctx > 0) {
        cJSON *ctx = dr_jb_arr(jb, r, "context");
        for (size_t i = 0; i < s->n_ctx && !jb->nomem; i++) {
            cJSON *c = dr_jb_obj(jb, ctx, NULL);
            dr_jb_str(jb, c, "doc_id", s->ctx_pass[i].doc_id);
            dr_jb_num(jb, c, "chunk_id", (double)s->ctx_pass[i].chunk_id);
            dr_jb_num(jb, c, "step", s->ctx_step[i]);
            dr_jb_num(jb, c, "fused", s->ctx_fused[i]);
        }
    }
    if (error) {
        dr_jb_str(jb, r, "error", error);
    } else {
        dr_jb_str(jb, r, "answer", s->answer ? s->answer : "");
        dr_jb_bool(jb, r, "unanswerable", s->unanswerable);
        cJSON *cits = dr_jb_arr(jb, r, "citations");
        for (size_t i = 0; i < s->n_cited && !jb->nomem; i++) {
            const dr_passage *ps = &s->ctx_pass[s->cited[i]];
            cJSON *c = dr_jb_obj(jb, cits, NULL);
            dr_jb_str(jb, c, "doc_id", ps->doc_id);
            dr_jb_str(jb, c, "title", ps->title);
            dr_jb_num(jb, c, "chunk_id", (double)ps->chunk_id);
            dr_jb_num(jb, c, "score", ps->score);
        }
    }
    cJSON *t = dr_jb_obj(jb, r, "totals");
    dr_jb_num(jb, t, "input_tokens", (double)s->tot.input_tokens);
    dr_jb_num(jb, t, "output_tokens", (double)s->tot.output_tokens);
    dr_jb_num(jb, t, "usd", s->tot.usd);
    dr_jb_num(jb, t, "latency_ms", s->tot.latency_ms);
    dr_jb_num(jb, t, "energy_wh", s->tot.energy_wh);
    dr_jb_num(jb, t, "generator_calls", s->tot.generator_calls);
    dr_jb_num(jb, t, "retrieval_steps", s->tot.retrieval_steps);
    dr_jb_bool(jb, t, "over_budget", s->tot.over_budget);
    if (s->tot.over_budget)
        dr_jb_str(jb, t, "over_budget_reason", s->over_reason);
    cJSON *b = dr_jb_obj(jb, r, "budget");
    dr_jb_num(jb, b, "usd", s->budget.usd);
    dr_jb_num(jb, b, "latency_ms", s->budget.latency_ms);
    dr_jb_num(jb, b, "energy_wh", s->budget.energy_wh);
    if (jb->nomem) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

/*
 * Under log_mu, at most once a second: when the route log's path no longer
 * names the file being written (logrotate moved it away, or it was
 * removed), opens the path again (created) and writes there from now on.
 * A record or two written in between go to the moved file. When the new
 * file cannot be opened, writing goes on to the old one (warned once).
 */
static void follow_log_path(dynrag_engine *e)
{
    int64_t now = dr_now_us();
    if (now - e->log_checked_us < 1000000)
        return;
    e->log_checked_us = now;
    struct stat st;
    if (stat(e->log_path, &st) == 0 && st.st_dev == e->log_dev && st.st_ino == e->log_ino)
        return;
    int fd = open(e->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (!e->log_reopen_warned)
            dr_log(DYNRAG_LOG_WARN, "log",
                   "route log %s was moved or removed and cannot be opened again (%s): "
                   "records still go to the moved file",
                   e->log_path, strerror(errno));
        e->log_reopen_warned = true;
        if (fd >= 0)
            close(fd);
        return;
    }
    dr_log(DYNRAG_LOG_INFO, "log", "route log %s was moved or removed: writing a new one",
           e->log_path);
    (void)fsync(e->log_fd); /* the moved file gets its last records whole */
    close(e->log_fd);
    e->log_fd = fd;
    e->log_dev = st.st_dev;
    e->log_ino = st.st_ino;
    e->log_reopen_warned = false;
}

int dr_engine_write_log(dynrag_engine *e, const char *line, dynrag_error *err)
{
    if (!e->log_on)
        return DYNRAG_OK;
    size_t n = strlen(line);
    char *buf = dr_malloc(n + 1);
    if (buf == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    memcpy(buf, line, n);
    buf[n] = '\n';
    int rc = DYNRAG_OK;
    pthread_mutex_lock(&e->log_mu);
    follow_log_path(e);
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
