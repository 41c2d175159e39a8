/*
 * run.c - live evaluation: runs the router and every forced option of each
 * compared stage over a data set (with an on-disk cache of run outcomes),
 * builds the outcome tables and writes the reports.
 *
 * Cache: OUT/cache.jsonl, one JSON line per run:
 *   {"key": "<32 hex>", "ok": true, "metrics": {...}, "choices": {stage: option},
 *    "first": {stage: option}, "scores": {stage: {option: score}},
 *    "unavailable": {stage: [option, ...]} (options the router could not pick),
 *    "confidence": {stage: c}, "docs": [[doc_id, score], ...] (BEIR),
 *    "record": "<route-log record>" (router runs), "error": "..." (failures)}
 * The key hashes the pipeline file's bytes, the files it names, the index
 * folder and each opened index's generation, size and embedder, the data
 * format, the stage and option forced (or "@router"), the query id, text and
 * gold. Lines that do not parse are ignored (a half-written last line).
 */
#define _DEFAULT_SOURCE /* realpath */
#include "eval/eval_internal.h"

#include "core/util.h"
#include "dynrag/engine.h"
#include "dynrag/alloc.h"
#include "dynrag/router.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTER_KEY "@router"

/* ---- the cache ------------------------------------------------------------- */

typedef struct cache_ent {
    char key[33];
    cJSON *val;
} cache_ent;

typedef struct cache {
    cache_ent *ents; /* open addressing, power-of-two size */
    size_t cap, n;
    FILE *append; /* NULL when not writing */
} cache;

static size_t slot_of(const char *key, size_t cap)
{
    return (size_t)dr_hash64(key, 32, 1) & (cap - 1);
}

static int cache_put(cache *c, const char *key, cJSON *val)
{
    if ((c->n + 1) * 2 > c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 1024;
        cache_ent *ne = dr_calloc(ncap, sizeof *ne);
        if (ne == NULL)
            return DYNRAG_ERR_NOMEM;
        for (size_t i = 0; i < c->cap; i++) {
            if (c->ents[i].val == NULL)
                continue;
            size_t s = slot_of(c->ents[i].key, ncap);
            while (ne[s].val)
                s = (s + 1) & (ncap - 1);
            ne[s] = c->ents[i];
        }
        dr_free(c->ents);
        c->ents = ne;
        c->cap = ncap;
    }
    size_t s = slot_of(key, c->cap);
    while (c->ents[s].val && strcmp(c->ents[s].key, key) != 0)
        s = (s + 1) & (c->cap - 1);
    if (c->ents[s].val) {
        cJSON_Delete(c->ents[s].val);
    } else {
        c->n++;
    }
    dr_strlcpy(c->ents[s].key, key, sizeof c->ents[s].key);
    c->ents[s].val = val;
    return DYNRAG_OK;
}

static cJSON *cache_get(const cache *c, const char *key)
{
    if (c->cap == 0)
        return NULL;
    size_t s = slot_of(key, c->cap);
    while (c->ents[s].val) {
        if (strcmp(c->ents[s].key, key) == 0)
            return c->ents[s].val;
        s = (s + 1) & (c->cap - 1);
    }
    return NULL;
}

static void cache_free(cache *c)
{
    for (size_t i = 0; i < c->cap; i++)
        cJSON_Delete(c->ents[i].val);
    dr_free(c->ents);
    if (c->append)
        fclose(c->append);
    memset(c, 0, sizeof(*c));
}

/* Reads OUT/cache.jsonl (absent is fine) and opens it for appending. */
static int cache_open(cache *c, const char *path, bool write, dynrag_error *err)
{
    memset(c, 0, sizeof(*c));
    FILE *f = fopen(path, "r");
    if (f) {
        char *line = NULL;
        size_t cap = 0;
        long long n;
        /* A cache line is a result record; a longer one (or an endless
         * one) is not ours and ends the reading. */
        while ((n = dr_getline(&line, &cap, f, (size_t)64 << 20)) > 0) {
            cJSON *o = cJSON_ParseWithLength(line, (size_t)n);
            const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "key");
            if (!cJSON_IsString(k) || strlen(k->valuestring) != 32) {
                cJSON_Delete(o);
                continue;
            }
            char key[33];
            dr_strlcpy(key, k->valuestring, sizeof key);
            if (cache_put(c, key, o) != DYNRAG_OK) {
                cJSON_Delete(o);
                dr_free(line);
                fclose(f);
                return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            }
        }
        dr_free(line);
        fclose(f);
        if (n == DR_LINE_NOMEM)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    if (write && (c->append = fopen(path, "a")) == NULL)
        return dr_err_set(err, DYNRAG_ERR_IO, "%s: cannot open for appending", path);
    return DYNRAG_OK;
}

/* ---- one run ------------------------------------------------------------------- */

typedef struct run_ctx {
    const dynrag_eval_options *opt;
    const dynrag_pipeline *p;
    dynrag_engine *e;
    dr_eval_data *data;
    uint64_t pipe_hash;
    cache cache;
    const char *beir_mode; /* BEIR: retrieval_mode option forced in every run, or NULL */
    size_t runs, hits, failed;
    cJSON *failures;
} run_ctx;

static void make_key(const run_ctx *rc, const dr_eval_item *it, const char *stage,
                     const char *option, char out[33])
{
    dr_buf b = {0};
    char *real = rc->opt->index_dir ? realpath(rc->opt->index_dir, NULL) : NULL;
    dr_buf_printf(&b, "v2\x1f%016llx\x1f%s\x1f%d\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s",
                  (unsigned long long)rc->pipe_hash,
                  real ? real : rc->opt->index_dir ? rc->opt->index_dir : "",
                  (int)rc->opt->format, stage, option, it->id, it->question, it->gold_key,
                  rc->beir_mode ? rc->beir_mode : "");
    uint64_t h1 = dr_hash64(b.data, b.len, 0x51ed), h2 = dr_hash64(b.data, b.len, 0xabcdef);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h1, (unsigned long long)h2);
    dr_buf_free(&b);
    dr_libc_free(real); /* realpath()'s */
}

static cJSON *metrics_json(const dynrag_eval_outcome *o)
{
    cJSON *m = cJSON_CreateObject();
    for (int i = 0; i < DR_EVAL_N_SLOTS; i++)
        if (!isnan(o->slots[i]))
            cJSON_AddNumberToObject(m, dr_eval_slot_key((dr_eval_slot)i), o->slots[i]);
    return m;
}

static void metrics_from_json(const cJSON *m, dynrag_eval_outcome *o)
{
    for (int i = 0; i < DR_EVAL_N_SLOTS; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, dr_eval_slot_key((dr_eval_slot)i));
        if (cJSON_IsNumber(v))
            o->slots[i] = v->valuedouble;
    }
}

/* BEIR metrics of one query's retrieved passages (document level: a
 * document scores as its best chunk). */
static int beir_metrics(run_ctx *rc, const dr_eval_item *it, const dynrag_result *r,
                        dynrag_eval_outcome *o, cJSON *docs, dynrag_error *err)
{
    dynrag_run *run = NULL;
    dynrag_metrics_result mr;
    memset(&mr, 0, sizeof(mr));
    int st = dynrag_run_new(&run, err);
    size_t n = dynrag_result_n_retrieved(r), added = 0;
    for (size_t i = 0; st == DYNRAG_OK && i < n; i++) {
        const dynrag_citation *c = dynrag_result_retrieved(r, i);
        bool seen = false;
        const cJSON *d;
        cJSON_ArrayForEach(d, docs)
        {
            cJSON *id = cJSON_GetArrayItem(d, 0), *sc = cJSON_GetArrayItem(d, 1);
            if (strcmp(id->valuestring, c->doc_id) == 0) {
                seen = true;
                if (c->score > sc->valuedouble)
                    cJSON_SetNumberValue(sc, c->score);
                break;
            }
        }
        if (!seen) {
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, cJSON_CreateString(c->doc_id));
            cJSON_AddItemToArray(pair, cJSON_CreateNumber(isfinite(c->score) ? c->score : 0));
            cJSON_AddItemToArray(docs, pair);
        }
    }
    const cJSON *d;
    cJSON_ArrayForEach(d, docs)
    {
        if (st != DYNRAG_OK)
            break;
        st = dynrag_run_add(run, it->id, cJSON_GetArrayItem(d, 0)->valuestring,
                            cJSON_GetArrayItem(d, 1)->valuedouble, err);
        added++;
    }
    static const dr_eval_slot slots[4] = {DR_SLOT_NDCG10, DR_SLOT_RECALL10, DR_SLOT_RECALL100,
                                          DR_SLOT_MRR10};
    dynrag_metric_spec specs[4];
    for (int i = 0; i < 4; i++) {
        specs[i] = dr_eval_slot_metric(slots[i]);
        o->slots[slots[i]] = 0;
    }
    if (st == DYNRAG_OK && added > 0) {
        st = dynrag_metrics_compute(rc->data->qrels, run, specs, 4, NULL, &mr, err);
        if (st == DYNRAG_OK && mr.n_queries == 1)
            for (int i = 0; i < 4; i++)
                o->slots[slots[i]] = mr.per_query[i];
        else if (st == DYNRAG_ERR_NOTFOUND)
            st = DYNRAG_OK;
    }
    dynrag_metrics_result_free(&mr);
    dynrag_run_free(run);
    return st;
}

static const cJSON *record_stage(const cJSON *rec, const char *stage)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(rec, "stages"))
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(s, "stage");
        if (cJSON_IsString(n) && strcmp(n->valuestring, stage) == 0)
            return s;
    }
    return NULL;
}

/* Runs one query (router or forced) and returns its cache entry (owned by
 * the cache), from the cache when present. */
static const cJSON *run_one(run_ctx *rc, const dr_eval_item *it, const char *stage,
                            const char *option, dynrag_error *err)
{
    char key[33];
    make_key(rc, it, stage ? stage : ROUTER_KEY, option ? option : ROUTER_KEY, key);
    rc->runs++;
    const cJSON *hit = cache_get(&rc->cache, key);
    if (hit) {
        rc->hits++;
        return hit;
    }
    dynrag_force force[2];
    size_t nf = 0;
    if (stage)
        force[nf++] = (dynrag_force){stage, option};
    if (rc->beir_mode && !(stage && strcmp(stage, "retrieval_mode") == 0))
        force[nf++] = (dynrag_force){"retrieval_mode", rc->beir_mode};
    dynrag_query_options qo;
    dynrag_query_options_init(&qo);
    char qid[512];
    snprintf(qid, sizeof qid, "%s%s%s%s%s", it->id, stage ? "#" : "", stage ? stage : "",
             stage ? "=" : "", option ? option : "");
    qo.query_id = qid;
    qo.no_log = true;
    qo.force = force;
    qo.n_force = nf;
    bool beir = rc->opt->format == DYNRAG_EVAL_FORMAT_BEIR;
    if (beir) {
        qo.retrieve_only = true;
        qo.k = 100;
    }
    dynrag_result *r = NULL;
    dynrag_error qerr;
    dynrag_error_clear(&qerr);
    dynrag_eval_outcome o;
    dynrag_eval_outcome_init(&o);
    cJSON *ent = cJSON_CreateObject();
    cJSON_AddStringToObject(ent, "key", key);
    int st = dynrag_engine_query(rc->e, it->question, &qo, &r, &qerr);
    if (st != DYNRAG_OK) {
        rc->failed++;
        cJSON_AddBoolToObject(ent, "ok", false);
        cJSON_AddStringToObject(ent, "error", dynrag_errmsg(&qerr));
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "query_id", it->id);
        cJSON_AddStringToObject(f, "run", qid);
        cJSON_AddStringToObject(f, "error", dynrag_errmsg(&qerr));
        cJSON_AddItemToArray(rc->failures, f);
    } else {
        o.ok = true;
        const dynrag_totals *t = dynrag_result_totals(r);
        o.slots[DR_SLOT_STEPS] = t->retrieval_steps;
        o.slots[DR_SLOT_CALLS] = t->generator_calls;
        o.slots[DR_SLOT_TOKENS] = (double)(t->input_tokens + t->output_tokens);
        o.slots[DR_SLOT_USD] = t->usd;
        o.slots[DR_SLOT_LATENCY] = t->latency_ms;
        o.slots[DR_SLOT_ENERGY] = t->energy_wh;
        if (beir) {
            cJSON *docs = cJSON_CreateArray();
            if (beir_metrics(rc, it, r, &o, docs, err) != DYNRAG_OK) {
                cJSON_Delete(docs);
                cJSON_Delete(ent);
                dynrag_result_free(r);
                return NULL;
            }
            cJSON_AddItemToObject(ent, "docs", docs);
        } else if (it->n_answers > 0 || it->n_support > 0) {
            const char *const *g = (const char *const *)it->answers;
            if (it->n_answers > 0) {
                const char *ans = dynrag_result_unanswerable(r) ? "" : dynrag_result_answer(r);
                o.slots[DR_SLOT_EM] = dynrag_eval_em(ans, g, it->n_answers);
                o.slots[DR_SLOT_F1] = dynrag_eval_f1(ans, g, it->n_answers);
                o.slots[DR_SLOT_CONTEXT] =
                    dynrag_eval_contains(dynrag_result_context(r), g, it->n_answers);
            }
            if (it->n_support > 0) {
                size_t found = 0;
                for (size_t s = 0; s < it->n_support; s++) {
                    const char *sup[1] = {it->support[s]};
                    /* Recall in the final context: what the generator saw. */
                    for (size_t i = 0; i < dynrag_result_n_context(r); i++) {
                        const dynrag_citation *c = dynrag_result_context_passage(r, i);
                        if (c->title && dynrag_eval_em(c->title, sup, 1) == 1) {
                            found++;
                            break;
                        }
                    }
                }
                o.slots[DR_SLOT_SUPPORT] = (double)found / (double)it->n_support;
            }
            cJSON_AddStringToObject(ent, "answer", dynrag_result_answer(r));
        }
        cJSON_AddBoolToObject(ent, "ok", true);
        cJSON_AddItemToObject(ent, "metrics", metrics_json(&o));
        /* Choices, scores, cascade confidences from the record. */
        cJSON *rec = cJSON_Parse(dynrag_result_json(r));
        cJSON *choices = cJSON_CreateObject(), *scores = cJSON_CreateObject();
        cJSON *first = cJSON_CreateObject(), *conf = cJSON_CreateObject();
        cJSON *called = cJSON_CreateObject(), *unavail = cJSON_CreateObject();
        for (size_t i = 0; i < dynrag_result_n_decisions(r); i++) {
            const dynrag_decision *d = dynrag_result_decision(r, i);
            if (!d->skipped && d->choice && *d->choice)
                cJSON_AddStringToObject(choices, d->stage, d->choice);
            const cJSON *rs = record_stage(rec, d->stage);
            const cJSON *sc = cJSON_GetObjectItemCaseSensitive(rs, "scores");
            if (cJSON_IsObject(sc))
                cJSON_AddItemToObject(scores, d->stage, cJSON_Duplicate(sc, 1));
            const cJSON *un = cJSON_GetObjectItemCaseSensitive(rs, "unavailable"), *u;
            if (cJSON_IsObject(un)) {
                cJSON *names = cJSON_AddArrayToObject(unavail, d->stage);
                cJSON_ArrayForEach(u, un)
                    cJSON_AddItemToArray(names, cJSON_CreateString(u->string));
            }
        }
        const cJSON *a;
        cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(rec, "cascade"))
        {
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(a, "stage");
            const cJSON *op = cJSON_GetObjectItemCaseSensitive(a, "option");
            const cJSON *cf = cJSON_GetObjectItemCaseSensitive(a, "confidence");
            if (!cJSON_IsString(s) || !cJSON_IsString(op))
                continue;
            if (!cJSON_HasObjectItem(first, s->valuestring))
                cJSON_AddStringToObject(first, s->valuestring, op->valuestring);
            if (cJSON_IsNumber(cf) && !cJSON_HasObjectItem(conf, s->valuestring))
                cJSON_AddNumberToObject(conf, s->valuestring, cf->valuedouble);
            cJSON *list = cJSON_GetObjectItemCaseSensitive(called, s->valuestring);
            if (list == NULL)
                list = cJSON_AddArrayToObject(called, s->valuestring);
            cJSON_AddItemToArray(list, cJSON_CreateString(op->valuestring));
        }
        cJSON_AddItemToObject(ent, "choices", choices);
        cJSON_AddItemToObject(ent, "scores", scores);
        cJSON_AddItemToObject(ent, "first", first);
        cJSON_AddItemToObject(ent, "confidence", conf);
        cJSON_AddItemToObject(ent, "called", called);
        cJSON_AddItemToObject(ent, "unavailable", unavail);
        if (stage == NULL)
            cJSON_AddStringToObject(ent, "record", dynrag_result_json(r));
        cJSON_Delete(rec);
    }
    dynrag_result_free(r);
    if (rc->cache.append) {
        char *line = cJSON_PrintUnformatted(ent);
        if (line) {
            fputs(line, rc->cache.append);
            fputc('\n', rc->cache.append);
            fflush(rc->cache.append);
        }
        dr_free(line);
    }
    if (cache_put(&rc->cache, key, ent) != DYNRAG_OK) {
        cJSON_Delete(ent);
        dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        return NULL;
    }
    return ent;
}

/* Fills an outcome from a cache entry. */
static void outcome_of(const cJSON *ent, const char *stage, dynrag_eval_outcome *o)
{
    dynrag_eval_outcome_init(o);
    o->ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ent, "ok"));
    metrics_from_json(cJSON_GetObjectItemCaseSensitive(ent, "metrics"), o);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ent, "confidence"), stage);
    if (cJSON_IsNumber(c))
        o->confidence = c->valuedouble;
}

static const char *entry_str(const cJSON *ent, const char *obj, const char *stage)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ent, obj), stage);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- stages to compare ------------------------------------------------------------ */

/* Stages are numbered in run order (dynrag_stage_name). */
static int stage_id(const char *name)
{
    for (size_t i = 0; name != NULL && i < DYNRAG_N_STAGES; i++)
        if (strcmp(dynrag_stage_name(i), name) == 0)
            return (int)i;
    return -1;
}

static bool is_stage(int sid, const char *name)
{
    return strcmp(dynrag_stage_name((size_t)sid), name) == 0;
}

/* Option i of stage sid (a valid index: a zeroed view otherwise). */
static dynrag_option_info option_of(const dynrag_pipeline *p, int sid, size_t i)
{
    dynrag_option_info oi;
    dynrag_pipeline_option(p, dynrag_stage_name((size_t)sid), i, &oi, NULL);
    return oi;
}

static dynrag_stage_info stage_info(const dynrag_pipeline *p, int sid)
{
    dynrag_stage_info si;
    dynrag_pipeline_stage(p, dynrag_stage_name((size_t)sid), &si, NULL);
    return si;
}

/* A stage whose router has more than one available option to choose from. */
static bool stage_is_routed(const dynrag_pipeline *p, int sid)
{
    dynrag_stage_info si = stage_info(p, sid);
    size_t avail = 0;
    for (size_t i = 0; i < si.n_options; i++)
        avail += option_of(p, sid, i).available;
    return avail > 1 && strcmp(si.router, "fixed") != 0;
}

static bool stage_runs_in_beir(int sid)
{
    return is_stage(sid, "retrieval_mode") || is_stage(sid, "embedder") || is_stage(sid, "index");
}

/* The stage's router params as parsed JSON (NULL when out of memory). */
static cJSON *router_params(const dynrag_pipeline *p, int sid)
{
    return dr_eval_router_params(p, dynrag_stage_name((size_t)sid), NULL);
}

static const char *param_str(const cJSON *params, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- reports ------------------------------------------------------------------------- */

static cJSON *row_json(const dynrag_eval_table *t, const dynrag_eval_row *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", r->name);
    if (!isnan(r->param))
        cJSON_AddNumberToObject(o, "threshold", r->param);
    if (!isnan(r->quality))
        cJSON_AddNumberToObject(o, "quality", r->quality);
    if (!isnan(r->cost))
        cJSON_AddNumberToObject(o, "cost", r->cost);
    cJSON_AddNumberToObject(o, "n_scored", (double)r->n_scored);
    cJSON *m = cJSON_AddObjectToObject(o, "mean");
    for (int i = 0; i < DR_EVAL_N_SLOTS; i++)
        if (!isnan(r->means[i]))
            cJSON_AddNumberToObject(m, dr_eval_slot_key((dr_eval_slot)i), r->means[i]);
    cJSON *calls = cJSON_AddObjectToObject(o, "calls");
    cJSON *share = cJSON_AddObjectToObject(o, "share");
    for (size_t k = 0; k < t->n_options; k++) {
        cJSON_AddNumberToObject(calls, t->options[k], (double)r->calls[k]);
        cJSON_AddNumberToObject(share, t->options[k], r->share[k]);
    }
    return o;
}

static void md_num(dr_buf *b, double v)
{
    if (isnan(v))
        dr_buf_puts(b, " – |");
    else if (v != 0 && fabs(v) < 0.01)
        dr_buf_printf(b, " %.2e |", v);
    else
        dr_buf_printf(b, " %.3f |", v);
}

/* The Markdown table of one stage. */
static void md_stage(dr_buf *b, const dynrag_eval_table *t, const dynrag_eval_comparison *c,
                     const dynrag_eval_options *opt, const dynrag_eval_compare_options *co)
{
    bool beir = opt->format == DYNRAG_EVAL_FORMAT_BEIR;
    static const dr_eval_slot qa_cols[] = {DR_SLOT_EM,      DR_SLOT_F1,    DR_SLOT_CONTEXT,
                                           DR_SLOT_SUPPORT, DR_SLOT_STEPS, DR_SLOT_CALLS,
                                           DR_SLOT_TOKENS,  DR_SLOT_USD,   DR_SLOT_LATENCY};
    static const dr_eval_slot ir_cols[] = {DR_SLOT_NDCG10, DR_SLOT_RECALL10, DR_SLOT_RECALL100,
                                           DR_SLOT_MRR10,  DR_SLOT_STEPS,    DR_SLOT_LATENCY};
    const dr_eval_slot *cols = beir ? ir_cols : qa_cols;
    char qname[48], cname[48];
    size_t nc = beir ? DR_ARRAY_LEN(ir_cols) : DR_ARRAY_LEN(qa_cols);
    dr_buf_printf(
        b, "\n## Stage `%s` (router `%s`, %zu queries)\n\n| policy | quality (%s) | cost (%s) |",
        t->stage, t->router_type, t->n_queries, dynrag_metric_key(co->quality, qname, sizeof qname),
        dynrag_metric_key(co->cost, cname, sizeof cname));
    for (size_t i = 0; i < nc; i++)
        dr_buf_printf(b, " %s |", dr_eval_slot_key(cols[i]));
    dr_buf_puts(b, " calls per option |\n|---|---:|---:|");
    for (size_t i = 0; i < nc; i++)
        dr_buf_puts(b, "---:|");
    dr_buf_puts(b, "---|\n");
    for (size_t r = 0; r < c->n_rows; r++) {
        const dynrag_eval_row *row = &c->rows[r];
        dr_buf_printf(b, "| %s |", row->name);
        md_num(b, row->quality);
        md_num(b, row->cost);
        for (size_t i = 0; i < nc; i++)
            md_num(b, row->means[cols[i]]);
        for (size_t k = 0; k < t->n_options; k++)
            dr_buf_printf(b, "%s%s %zu", k ? ", " : " ", t->options[k], row->calls[k]);
        dr_buf_puts(b, " |\n");
    }
    if (c->n_sweep > 0) {
        dr_buf_printf(b, "\nThreshold sweep (%s router):\n\n| threshold | quality | cost |", t->router_type);
        for (size_t k = 0; k < t->n_options; k++)
            dr_buf_printf(b, " share %s |", t->options[k]);
        dr_buf_puts(b, "\n|---:|---:|---:|");
        for (size_t k = 0; k < t->n_options; k++)
            dr_buf_puts(b, "---:|");
        dr_buf_puts(b, "\n");
        for (size_t s = 0; s < c->n_sweep; s++) {
            dr_buf_printf(b, "| %.3g |", c->sweep[s].param);
            md_num(b, c->sweep[s].quality);
            md_num(b, c->sweep[s].cost);
            for (size_t k = 0; k < t->n_options; k++)
                md_num(b, c->sweep[s].share[k]);
            dr_buf_puts(b, "\n");
        }
    }
    dr_buf_printf(b, "\nPlots: `%s-cost-quality.svg`, `%s-mix.svg`.\n", t->stage, t->stage);
}

static int write_text(const char *dir, const char *name, const char *text, dynrag_error *err)
{
    char *path = dr_asprintf("%s/%s", dir, name);
    if (path == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    int rc = dr_write_file_atomic(path, text, strlen(text), err);
    dr_free(path);
    return rc;
}

/* Appends the table's lines to the outcomes file (replay format). */
static void outcomes_lines(dr_buf *b, const dynrag_eval_table *t, const dr_eval_data *d)
{
    for (size_t q = 0; q < t->n_queries; q++)
        for (size_t o = 0; o < t->n_options; o++) {
            const dynrag_eval_outcome *x = &t->cells[q * t->n_options + o];
            cJSON *l = cJSON_CreateObject();
            cJSON_AddStringToObject(l, "stage", t->stage);
            cJSON_AddStringToObject(l, "router", t->router_type);
            cJSON_AddStringToObject(
                l, "format", t->default_quality.metric == DYNRAG_METRIC_NDCG ? "beir" : "qa");
            cJSON_AddStringToObject(l, "query_id", t->query_ids[q]);
            cJSON_AddStringToObject(l, "query", d->items[q].question);
            cJSON_AddStringToObject(l, "option", t->options[o]);
            cJSON_AddBoolToObject(l, "ok", x->ok);
            cJSON_AddItemToObject(l, "metrics", metrics_json(x));
            if (!isnan(x->confidence))
                cJSON_AddNumberToObject(l, "confidence", x->confidence);
            char *s = cJSON_PrintUnformatted(l);
            if (s) {
                dr_buf_puts(b, s);
                dr_buf_putc(b, '\n');
            }
            dr_free(s);
            cJSON_Delete(l);
        }
}

/* ---- the driver -------------------------------------------------------------------- */

/* The sweep the stage's router supports from the table alone. */
static int sweep_options(const dynrag_pipeline *p, int sid, dynrag_eval_compare_options *co,
                         dynrag_error *err)
{
    dynrag_stage_info si = stage_info(p, sid);
    const char *type = si.router;
    if (strcmp(type, "classifier") == 0) {
        co->sweep = DYNRAG_EVAL_SWEEP_CLASSIFIER;
        cJSON *params = router_params(p, sid);
        if (params == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        const char *esc = param_str(params, "escalate");
        co->escalate = esc ? dynrag_pipeline_find_option(p, si.name, esc) : (int)si.n_options - 1;
        cJSON_Delete(params);
        co->grid_lo = 0;
        co->grid_hi = 1;
    } else if (strcmp(type, "cascade") == 0) {
        /* The table's threshold sweep replays listed-order escalation from
         * the forced runs' confidences; a routed cascade (quality_model)
         * escalates by its predictions instead, so it gets no sweep here
         * (`dynrag eval --outcomes` sweeps it by replaying the router). */
        cJSON *params = router_params(p, sid);
        if (params == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        bool routed = param_str(params, "quality_model") != NULL;
        cJSON_Delete(params);
        if (!routed) {
            co->sweep = DYNRAG_EVAL_SWEEP_CASCADE;
            /* Every judge's confidence is in [0, 1], so is every threshold. */
            co->grid_lo = 0;
            co->grid_hi = 1;
        }
    }
    return DYNRAG_OK;
}

typedef struct eval_state {
    run_ctx rc;
    dynrag_pipeline *p;
    int sids[DYNRAG_N_STAGES];
    size_t n_sids;
    dynrag_eval_table *tables[DYNRAG_N_STAGES];
    dynrag_eval_comparison cmp[DYNRAG_N_STAGES];
    dynrag_eval_compare_options co[DYNRAG_N_STAGES];
    const cJSON **router_ents; /* [n queries] */
} eval_state;

static void eval_state_free(eval_state *s)
{
    for (size_t i = 0; i < DYNRAG_N_STAGES; i++) {
        dynrag_eval_table_free(s->tables[i]);
        dynrag_eval_comparison_free(&s->cmp[i]);
    }
    dr_free(s->router_ents);
    cache_free(&s->rc.cache);
    cJSON_Delete(s->rc.failures);
    dynrag_engine_close(s->rc.e);
    dr_eval_data_free(s->rc.data);
    dr_free(s->rc.data);
    dynrag_pipeline_free(s->p);
}

/* Folds the bytes of every file the pipeline's routers read (classifier
 * and quality models, knn example files) into *h. */
static int hash_referenced_files(const dynrag_pipeline *p, uint64_t *h, dynrag_error *err)
{
    static const char *const keys[] = {"model", "quality_model", "examples_file"};
    for (int st = 0; st < DYNRAG_N_STAGES; st++) {
        cJSON *params = router_params(p, st);
        if (params == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        for (size_t k = 0; k < DR_ARRAY_LEN(keys); k++) {
            const char *path = param_str(params, keys[k]);
            if (path == NULL)
                continue;
            char *data = NULL;
            size_t len = 0;
            int rc = dr_read_file(path, (size_t)1 << 30, &data, &len, err);
            if (rc != DYNRAG_OK) {
                cJSON_Delete(params);
                return rc;
            }
            *h = dr_hash64(data, len, *h);
            dr_free(data);
        }
        cJSON_Delete(params);
    }
    return DYNRAG_OK;
}

/*
 * Runs everything and fills the tables; shared by dynrag_eval_run and
 * dynrag_eval_calibrate. Leaves s ready for comparison.
 */
static int eval_prepare(const dynrag_eval_options *opt, eval_state *s, dynrag_error *err)
{
    memset(s, 0, sizeof(*s));
    int rc;
    char *ptext = NULL, *cache_path = NULL;
    size_t plen = 0;
    if (!opt->pipeline_path || !opt->data_path || !opt->out_dir)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "eval: pipeline, data and out folder are required");
    if (opt->format != DYNRAG_EVAL_FORMAT_QA && opt->format != DYNRAG_EVAL_FORMAT_BEIR)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "eval: format %d is unknown", (int)opt->format);
    dr_eval_slot slot;
    if (opt->quality.metric != DYNRAG_METRIC_DEFAULT &&
        (rc = dr_eval_slot_of(opt->quality, "eval: quality", &slot, err)) != DYNRAG_OK)
        return rc;
    if (opt->cost.metric != DYNRAG_METRIC_DEFAULT &&
        (rc = dr_eval_slot_of(opt->cost, "eval: cost", &slot, err)) != DYNRAG_OK)
        return rc;
    if (opt->n_stages > 0 && opt->stages == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "eval: stages is NULL with n_stages %zu",
                          opt->n_stages);
    if ((rc = dr_read_file(opt->pipeline_path, (size_t)1 << 20, &ptext, &plen, err)) != DYNRAG_OK)
        return rc;
    s->rc.pipe_hash = dr_hash64(ptext, plen, 3);
    dr_free(ptext);
    if ((rc = dr_eval_pipeline_load(opt->pipeline_path, &s->p, err)) != DYNRAG_OK)
        return rc;
    /* Files the pipeline names (router models, example files) change the
     * results without changing the YAML: they are part of the cache key. */
    if ((rc = hash_referenced_files(s->p, &s->rc.pipe_hash, err)) != DYNRAG_OK)
        return rc;
    s->rc.opt = opt;
    s->rc.p = s->p;
    s->rc.failures = cJSON_CreateArray();
    s->rc.data = dr_calloc(1, sizeof *s->rc.data);
    if (s->rc.data == NULL || s->rc.failures == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    if ((rc = dr_eval_data_load(opt->data_path, opt->format, opt->qrels_path, opt->limit,
                                s->rc.data, err)) != DYNRAG_OK)
        return rc;
    bool beir = opt->format == DYNRAG_EVAL_FORMAT_BEIR;
    /* Stages to compare. */
    for (size_t i = 0; i < opt->n_stages; i++) {
        int sid = stage_id(opt->stages[i]);
        if (sid < 0)
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "--stages: unknown stage '%s' (retrieval_mode, embedder, index, "
                              "context, prompt, generator)",
                              opt->stages[i]);
        if (beir && !stage_is_routed(s->p, sid) && !stage_runs_in_beir(sid))
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "--stages: stage %s does not run in a retrieval-only (BEIR) "
                              "evaluation", opt->stages[i]);
        s->sids[s->n_sids++] = sid;
    }
    if (opt->n_stages == 0)
        for (int sid = 0; sid < DYNRAG_N_STAGES; sid++)
            if (stage_is_routed(s->p, sid) && (!beir || stage_runs_in_beir(sid)) &&
                !(beir && is_stage(sid, "retrieval_mode")))
                s->sids[s->n_sids++] = sid;
    /* BEIR: retrieval must run; pin retrieval_mode to its first retrieving option. */
    int rm = stage_id("retrieval_mode");
    bool compare_rm = false;
    for (size_t i = 0; i < s->n_sids; i++)
        compare_rm = compare_rm || s->sids[i] == rm;
    if (beir && !compare_rm)
        for (size_t i = 0; i < stage_info(s->p, rm).n_options && s->rc.beir_mode == NULL; i++) {
            dynrag_option_info oi = option_of(s->p, rm, i);
            if (strcmp(oi.kind, "none") != 0 && oi.available)
                s->rc.beir_mode = oi.name;
        }
    dynrag_engine_options eo;
    dynrag_engine_options_init(&eo);
    eo.index_dir = opt->index_dir;
    eo.no_log = true;
    if ((rc = dynrag_engine_open(s->p, &eo, &s->rc.e, err)) != DYNRAG_OK)
        return rc;
    /* So do the indexes: a rebuilt or grown index (a new write generation)
     * must not reuse outcomes cached from the old one. */
    int emb = stage_id("embedder");
    size_t n_emb = stage_info(s->p, emb).n_options;
    for (size_t i = 0; i <= n_emb; i++) {
        dynrag_index *idx =
            dynrag_engine_index(s->rc.e, i < n_emb ? option_of(s->p, emb, i).name : NULL);
        dynrag_index_info info;
        if (idx == NULL || dynrag_index_get_info(idx, &info) != DYNRAG_OK)
            continue;
        uint64_t fp[4] = {(uint64_t)info.generation, info.docs, info.chunks, (uint64_t)info.dim};
        s->rc.pipe_hash = dr_hash64(fp, sizeof(fp), s->rc.pipe_hash);
        s->rc.pipe_hash = dr_hash64(info.embedder, strlen(info.embedder), s->rc.pipe_hash);
    }
    if ((rc = dr_mkdirs(opt->out_dir, err)) != DYNRAG_OK)
        return rc;
    if ((cache_path = dr_asprintf("%s/cache.jsonl", opt->out_dir)) == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    rc = opt->no_cache ? DYNRAG_OK : cache_open(&s->rc.cache, cache_path, true, err);
    dr_free(cache_path);
    if (rc != DYNRAG_OK)
        return rc;

    /* Runs. */
    size_t nq = s->rc.data->n;
    size_t per_q = 1;
    if (!opt->no_baselines)
        for (size_t i = 0; i < s->n_sids; i++)
            per_q += stage_info(s->p, s->sids[i]).n_options;
    s->router_ents = dr_calloc(nq, sizeof *s->router_ents);
    if (s->router_ents == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n_sids; i++) {
        dynrag_stage_info si = stage_info(s->p, s->sids[i]);
        if ((rc = dynrag_eval_table_new(si.name, si.router, nq, si.n_options, &s->tables[i], err)) !=
            DYNRAG_OK)
            return rc;
        dynrag_eval_table *t = s->tables[i];
        t->cascade = strcmp(si.router, "cascade") == 0;
        t->default_quality = dr_eval_slot_metric(
            s->rc.opt->format == DYNRAG_EVAL_FORMAT_BEIR ? DR_SLOT_NDCG10 : DR_SLOT_F1);
        for (size_t o = 0; o < si.n_options; o++)
            if ((t->options[o] = dr_strdup(option_of(s->p, s->sids[i], o).name)) == NULL)
                return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    int64_t last = 0;
    for (size_t q = 0; q < nq; q++) {
        const dr_eval_item *it = &s->rc.data->items[q];
        const cJSON *re = run_one(&s->rc, it, NULL, NULL, err);
        if (re == NULL)
            return DYNRAG_ERR_NOMEM;
        s->router_ents[q] = re;
        for (size_t i = 0; i < s->n_sids; i++) {
            dynrag_eval_table *t = s->tables[i];
            if ((t->query_ids[q] = dr_strdup(it->id)) == NULL)
                return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            outcome_of(re, t->stage, &t->router_outcome[q]);
            const char *ch = entry_str(re, "choices", t->stage);
            const char *fi = entry_str(re, "first", t->stage);
            t->router_choice[q] = ch ? dynrag_eval_table_option(t, ch) : -1;
            t->router_first[q] = fi ? dynrag_eval_table_option(t, fi) : t->router_choice[q];
            /* Every option a cascade called (a routed cascade's calls need
             * not be consecutive in listed order). */
            const cJSON *cl = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(re, "called"), t->stage);
            const cJSON *op;
            cJSON_ArrayForEach(op, cl)
            {
                int oi = cJSON_IsString(op) ? dynrag_eval_table_option(t, op->valuestring) : -1;
                if (oi >= 0 && oi < DYNRAG_MAX_OPTIONS)
                    t->router_called[q] |= (uint32_t)1 << oi;
            }
            cJSON_ArrayForEach(op, cJSON_GetObjectItemCaseSensitive(
                                       cJSON_GetObjectItemCaseSensitive(re, "unavailable"),
                                       t->stage))
            {
                int oi = cJSON_IsString(op) ? dynrag_eval_table_option(t, op->valuestring) : -1;
                if (oi >= 0 && oi < DYNRAG_MAX_OPTIONS)
                    t->router_unavailable[q] |= (uint32_t)1 << oi;
            }
            const cJSON *sc = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(re, "scores"), t->stage);
            for (size_t o = 0; o < t->n_options; o++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(sc, t->options[o]);
                t->router_scores[q * t->n_options + o] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
            }
            if (opt->no_baselines)
                continue;
            for (size_t o = 0; o < t->n_options; o++) {
                if (!option_of(s->p, s->sids[i], o).available)
                    continue;
                const cJSON *fe = run_one(&s->rc, it, t->stage, t->options[o], err);
                if (fe == NULL)
                    return DYNRAG_ERR_NOMEM;
                outcome_of(fe, t->stage, &t->cells[q * t->n_options + o]);
            }
        }
        int64_t now = dr_now_us();
        if (opt->progress && (now - last > 200000 || q + 1 == nq)) {
            opt->progress(opt->progress_user, (q + 1) * per_q, nq * per_q, "runs");
            last = now;
        }
    }
    /* Comparison options. */
    bool money = false;
    for (size_t q = 0; q < nq; q++) {
        dynrag_eval_outcome ro;
        outcome_of(s->router_ents[q], "", &ro);
        money = money || (ro.slots[DR_SLOT_USD] > 0);
        for (size_t i = 0; i < s->n_sids; i++)
            for (size_t o = 0; o < s->tables[i]->n_options; o++)
                money = money ||
                        s->tables[i]->cells[q * s->tables[i]->n_options + o].slots[DR_SLOT_USD] > 0;
    }
    for (size_t i = 0; i < s->n_sids; i++) {
        dynrag_eval_compare_options *co = &s->co[i];
        dynrag_eval_compare_options_init(co);
        co->quality = opt->quality.metric != DYNRAG_METRIC_DEFAULT
                          ? opt->quality
                          : dr_eval_slot_metric(beir ? DR_SLOT_NDCG10 : DR_SLOT_F1);
        co->cost = opt->cost.metric != DYNRAG_METRIC_DEFAULT
                       ? opt->cost
                       : dr_eval_slot_metric(money ? DR_SLOT_USD : DR_SLOT_LATENCY);
        co->seed = opt->seed;
        co->escalate = -1;
        if ((rc = sweep_options(s->p, s->sids[i], co, err)) != DYNRAG_OK)
            return rc;
    }
    return DYNRAG_OK;
}

int dynrag_eval_table_option(const dynrag_eval_table *t, const char *name)
{
    for (size_t i = 0; t && name && i < t->n_options; i++)
        if (t->options[i] && strcmp(t->options[i], name) == 0)
            return (int)i;
    return -1;
}

/* Public: see dynrag/eval.h. */
void dynrag_eval_options_init(dynrag_eval_options *o)
{
    memset(o, 0, sizeof(*o));
    o->pipeline_path = NULL;
    o->data_path = NULL;
    o->format = DYNRAG_EVAL_FORMAT_QA;
    o->qrels_path = NULL;
    o->out_dir = NULL;
    o->index_dir = NULL;
    o->limit = 0;
    o->seed = 0;
    o->stages = NULL;
    o->n_stages = 0;
    o->quality.metric = DYNRAG_METRIC_DEFAULT;
    o->quality.k = 0;
    o->cost.metric = DYNRAG_METRIC_DEFAULT;
    o->cost.k = 0;
    o->progress = NULL;
    o->progress_user = NULL;
}

/* Public: see dynrag/eval.h. */
void dynrag_eval_calibrate_options_init(dynrag_eval_calibrate_options *o)
{
    memset(o, 0, sizeof(*o));
    o->stage = NULL;
    o->target_option = NULL;
    o->target_share = NAN;
    o->target_quality = NAN;
    o->target_cost = NAN;
    o->out_yaml = NULL;
}

int dynrag_eval_run(const dynrag_eval_options *opt, dynrag_eval_summary *summary,
                    char **report_md, dynrag_error *err)
{
    eval_state s;
    dr_buf md = {0}, outl = {0}, routes = {0};
    cJSON *rep = NULL;
    if (report_md)
        *report_md = NULL;
    int rc = eval_prepare(opt, &s, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    size_t nq = s.rc.data->n;
    bool beir = opt->format == DYNRAG_EVAL_FORMAT_BEIR;
    /* The router over every query, whatever the stages. */
    dynrag_eval_outcome tot;
    double sum[DR_EVAL_N_SLOTS] = {0};
    size_t cnt[DR_EVAL_N_SLOTS] = {0};
    for (size_t q = 0; q < nq; q++) {
        outcome_of(s.router_ents[q], "", &tot);
        for (int m = 0; m < DR_EVAL_N_SLOTS; m++)
            if (!isnan(tot.slots[m]) || (!tot.ok && !dr_eval_slot_is_cost((dr_eval_slot)m))) {
                sum[m] += isnan(tot.slots[m]) ? 0 : tot.slots[m];
                cnt[m]++;
            }
        const cJSON *rec = cJSON_GetObjectItemCaseSensitive(s.router_ents[q], "record");
        if (cJSON_IsString(rec)) {
            dr_buf_puts(&routes, rec->valuestring);
            dr_buf_putc(&routes, '\n');
        }
    }
    rep = cJSON_CreateObject();
    cJSON_AddStringToObject(rep, "pipeline", opt->pipeline_path);
    cJSON_AddStringToObject(rep, "pipeline_name", dynrag_pipeline_name(s.p));
    cJSON_AddStringToObject(rep, "data", opt->data_path);
    cJSON_AddStringToObject(rep, "format", beir ? "beir" : "qa");
    cJSON_AddNumberToObject(rep, "queries", (double)nq);
    cJSON_AddNumberToObject(rep, "runs", (double)s.rc.runs);
    cJSON_AddNumberToObject(rep, "cache_hits", (double)s.rc.hits);
    cJSON_AddNumberToObject(rep, "seed", (double)opt->seed);
    cJSON *rm = cJSON_AddObjectToObject(rep, "router_mean");
    dr_buf_printf(&md, "# Evaluation of `%s`\n\nPipeline `%s`, data `%s` (%s), %zu queries; "
                       "%zu runs, %zu from the cache, %zu failed.\n\n"
                       "Router over all queries:",
                  dynrag_pipeline_name(s.p), opt->pipeline_path, opt->data_path,
                  beir ? "BEIR" : "QA", nq, s.rc.runs, s.rc.hits, s.rc.failed);
    for (int m = 0; m < DR_EVAL_N_SLOTS; m++)
        if (cnt[m]) {
            cJSON_AddNumberToObject(rm, dr_eval_slot_key((dr_eval_slot)m), sum[m] / (double)cnt[m]);
            dr_buf_printf(&md, " %s %.4g;", dr_eval_slot_key((dr_eval_slot)m),
                          sum[m] / (double)cnt[m]);
        }
    dr_buf_puts(&md, "\n");
    if (s.n_sids == 0)
        dr_buf_puts(&md, "\nNo routed stage (every stage has one available option or a `fixed` "
                         "router): no baselines to compare.\n");
    if (opt->no_baselines && s.n_sids > 0)
        dr_buf_puts(&md, "\n`--no-baselines`: the router only.\n");
    cJSON *stages = cJSON_AddArrayToObject(rep, "stages");
    for (size_t i = 0; i < s.n_sids && !opt->no_baselines; i++) {
        dynrag_eval_table *t = s.tables[i];
        if ((rc = dynrag_eval_compare(t, &s.co[i], &s.cmp[i], err)) != DYNRAG_OK)
            goto cleanup;
        const dynrag_eval_comparison *c = &s.cmp[i];
        cJSON *sj = cJSON_CreateObject();
        cJSON_AddItemToArray(stages, sj);
        cJSON_AddStringToObject(sj, "stage", t->stage);
        cJSON_AddStringToObject(sj, "router", t->router_type);
        char qname[48], cname[48];
        dynrag_metric_key(s.co[i].quality, qname, sizeof qname);
        dynrag_metric_key(s.co[i].cost, cname, sizeof cname);
        cJSON_AddStringToObject(sj, "quality_metric", qname);
        cJSON_AddStringToObject(sj, "cost_metric", cname);
        cJSON *ops = cJSON_AddArrayToObject(sj, "options");
        for (size_t o = 0; o < t->n_options; o++)
            cJSON_AddItemToArray(ops, cJSON_CreateString(t->options[o]));
        cJSON *rows = cJSON_AddArrayToObject(sj, "rows");
        for (size_t r = 0; r < c->n_rows; r++)
            cJSON_AddItemToArray(rows, row_json(t, &c->rows[r]));
        cJSON *sw = cJSON_AddArrayToObject(sj, "sweep");
        for (size_t r = 0; r < c->n_sweep; r++)
            cJSON_AddItemToArray(sw, row_json(t, &c->sweep[r]));
        cJSON *pq = cJSON_AddArrayToObject(sj, "per_query");
        for (size_t q = 0; q < nq; q++) {
            cJSON *qj = cJSON_CreateObject();
            cJSON_AddItemToArray(pq, qj);
            cJSON_AddStringToObject(qj, "id", t->query_ids[q]);
            cJSON_AddStringToObject(qj, "query", s.rc.data->items[q].question);
            if (t->router_choice[q] >= 0)
                cJSON_AddStringToObject(qj, "router_choice", t->options[t->router_choice[q]]);
            cJSON_AddItemToObject(qj, "router", metrics_json(&t->router_outcome[q]));
            cJSON *cj = cJSON_AddObjectToObject(qj, "options");
            for (size_t o = 0; o < t->n_options; o++)
                cJSON_AddItemToObject(cj, t->options[o], metrics_json(&t->cells[q * t->n_options + o]));
        }
        md_stage(&md, t, c, opt, &s.co[i]);
        char name[96];
        char *svg = dynrag_eval_svg_scatter(t, c, qname, cname);
        snprintf(name, sizeof name, "%s-cost-quality.svg", t->stage);
        rc = svg ? write_text(opt->out_dir, name, svg, err) : dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        dr_free(svg);
        if (rc != DYNRAG_OK)
            goto cleanup;
        svg = dynrag_eval_svg_mix(t, c);
        snprintf(name, sizeof name, "%s-mix.svg", t->stage);
        rc = svg ? write_text(opt->out_dir, name, svg, err) : dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        dr_free(svg);
        if (rc != DYNRAG_OK)
            goto cleanup;
        outcomes_lines(&outl, t, s.rc.data);
    }
    if (cJSON_GetArraySize(s.rc.failures) > 0) {
        cJSON_AddItemToObject(rep, "failures", cJSON_Duplicate(s.rc.failures, 1));
        const cJSON *f = cJSON_GetArrayItem(s.rc.failures, 0);
        dr_buf_printf(&md, "\n%zu run(s) failed; first: %s: %s\n", s.rc.failed,
                      cJSON_GetObjectItemCaseSensitive(f, "run")->valuestring,
                      cJSON_GetObjectItemCaseSensitive(f, "error")->valuestring);
    }
    dr_buf_puts(&md, "\nQuality of a failed run counts as 0. Random baselines use seed ");
    dr_buf_printf(&md, "%llu. Method: docs/evaluation.md.\n", (unsigned long long)opt->seed);
    char *json = cJSON_Print(rep);
    if (json == NULL || md.data == NULL) {
        dr_free(json);
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    rc = write_text(opt->out_dir, "report.json", json, err);
    dr_free(json);
    if (rc == DYNRAG_OK)
        rc = write_text(opt->out_dir, "report.md", md.data, err);
    if (rc == DYNRAG_OK)
        rc = write_text(opt->out_dir, "outcomes.jsonl", outl.data ? outl.data : "", err);
    if (rc == DYNRAG_OK)
        rc = write_text(opt->out_dir, "routes.jsonl", routes.data ? routes.data : "", err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    if (summary) {
        summary->n_queries = nq;
        summary->n_runs = s.rc.runs;
        summary->cache_hits = s.rc.hits;
        summary->n_failed = s.rc.failed;
        summary->n_stages = opt->no_baselines ? 0 : s.n_sids;
    }
    if (report_md)
        *report_md = dr_buf_take(&md);
cleanup:
    cJSON_Delete(rep);
    dr_buf_free(&md);
    dr_buf_free(&outl);
    dr_buf_free(&routes);
    eval_state_free(&s);
    return rc;
}

/* ---- calibration -------------------------------------------------------------------- */

#define KNN_GRID 21

/*
 * The knn router's `min_similarity` sweep. Its choice at a threshold
 * cannot be derived from the logged scores (the set of voting neighbours
 * changes), so every query is routed again (route_only) by an engine built
 * from a fresh copy of the pipeline with the parameter set to each grid value
 * in turn; the outcome of each choice comes from the table's forced runs. The
 * router embeds its examples once per value. Fills rows[KNN_GRID].
 */
static int knn_sweep(eval_state *s, const dynrag_eval_options *opt, int sid,
                     const dynrag_eval_table *t, const dynrag_eval_compare_options *co,
                     dynrag_eval_row *rows, dynrag_error *err)
{
    dynrag_pipeline *p = NULL;
    dynrag_diags *dg = NULL;
    int rc = dynrag_pipeline_load(opt->pipeline_path, &p, &dg, err);
    dynrag_diags_free(dg);
    if (rc != DYNRAG_OK)
        return rc;
    size_t nq = t->n_queries;
    int *choice = dr_calloc(nq ? nq : 1, sizeof *choice);
    if (choice == NULL) {
        dynrag_pipeline_free(p);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    const char *stage = dynrag_stage_name((size_t)sid);
    int64_t last = 0;
    for (int g = 0; g < KNN_GRID && rc == DYNRAG_OK; g++) {
        double v = (double)g / (KNN_GRID - 1);
        if ((rc = dynrag_pipeline_set_router_param(p, stage, "min_similarity", v, err)) != DYNRAG_OK)
            break;
        dynrag_engine_options eo;
        dynrag_engine_options_init(&eo);
        eo.index_dir = opt->index_dir;
        eo.no_log = true;
        dynrag_engine *e = NULL;
        if ((rc = dynrag_engine_open(p, &eo, &e, err)) != DYNRAG_OK)
            break;
        for (size_t q = 0; q < nq && rc == DYNRAG_OK; q++) {
            const dr_eval_item *it = &s->rc.data->items[q];
            dynrag_force force = {"retrieval_mode", s->rc.beir_mode};
            dynrag_query_options qo;
            dynrag_query_options_init(&qo);
            qo.query_id = it->id;
            qo.route_only = true;
            qo.no_log = true;
            if (s->rc.beir_mode && !is_stage(sid, "retrieval_mode")) {
                qo.force = &force;
                qo.n_force = 1;
            }
            dynrag_result *r = NULL;
            if ((rc = dynrag_engine_query(e, it->question, &qo, &r, err)) != DYNRAG_OK) {
                dr_err_prefix(err, "calibrate: routing '%s' at min_similarity %g", it->id, v);
                break;
            }
            choice[q] = -1;
            for (size_t i = 0; i < dynrag_result_n_decisions(r); i++) {
                const dynrag_decision *d = dynrag_result_decision(r, i);
                if (strcmp(d->stage, stage) == 0 && !d->skipped)
                    choice[q] = dynrag_eval_table_option(t, d->choice);
            }
            dynrag_result_free(r);
            int64_t now = dr_now_us();
            if (opt->progress && (now - last > 200000 || (g == KNN_GRID - 1 && q + 1 == nq))) {
                opt->progress(opt->progress_user, (size_t)g * nq + q + 1, KNN_GRID * nq,
                              "routes");
                last = now;
            }
        }
        dynrag_engine_close(e);
        if (rc == DYNRAG_OK)
            dr_eval_row_of_choices(t, co, choice, "sweep", v, &rows[g]);
    }
    dr_free(choice);
    dynrag_pipeline_free(p);
    return rc;
}

int dynrag_eval_calibrate(const dynrag_eval_options *opt, const dynrag_eval_calibrate_options *copt,
                          dynrag_eval_calibration *out, dynrag_error *err)
{
    memset(out, 0, sizeof(*out));
    out->value = NAN;
    int sid = stage_id(copt->stage);
    if (sid < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "calibrate: unknown stage '%s'",
                          copt->stage ? copt->stage : "(null)");
    bool by_share = !isnan(copt->target_share);
    if (by_share == !isnan(copt->target_quality))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "calibrate: give exactly one of a target share and a target quality");
    dynrag_eval_options o = *opt;
    const char *stage_list[1] = {copt->stage};
    o.stages = stage_list;
    o.n_stages = 1;
    o.no_baselines = false;
    eval_state s;
    int rc = eval_prepare(&o, &s, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    dynrag_eval_table *t = s.tables[0];
    dynrag_eval_compare_options co = s.co[0];
    bool knn = strcmp(t->router_type, "knn") == 0;
    if (co.sweep == DYNRAG_EVAL_SWEEP_NONE && !knn) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "calibrate: stage %s has a '%s' router; only classifier and cascade "
                        "thresholds and the knn router's min_similarity can be calibrated",
                        copt->stage, t->router_type);
        goto cleanup;
    }
    int target = -1;
    if (by_share && (target = dynrag_eval_table_option(t, copt->target_option)) < 0) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "calibrate: stage %s has no option '%s'",
                        copt->stage, copt->target_option ? copt->target_option : "(null)");
        goto cleanup;
    }
    const char *param = knn ? "min_similarity" : "threshold";
    const dynrag_eval_row *sweep;
    size_t n_sweep;
    dynrag_eval_row knn_rows[KNN_GRID];
    if (knn) {
        if ((rc = knn_sweep(&s, &o, s.sids[0], t, &co, knn_rows, err)) != DYNRAG_OK)
            goto cleanup;
        sweep = knn_rows;
        n_sweep = KNN_GRID;
    } else {
        double grid[101];
        for (int i = 0; i <= 100; i++)
            grid[i] = co.grid_lo + (co.grid_hi - co.grid_lo) * i / 100.0;
        co.grid = grid;
        co.n_grid = 101;
        if ((rc = dynrag_eval_compare(t, &co, &s.cmp[0], err)) != DYNRAG_OK)
            goto cleanup;
        sweep = s.cmp[0].sweep;
        n_sweep = s.cmp[0].n_sweep;
    }
    int best = -1;
    bool met = false;
    for (size_t g = 0; g < n_sweep; g++) {
        const dynrag_eval_row *r = &sweep[g];
        bool ok = by_share ? r->share[target] <= copt->target_share + 1e-12
                           : r->quality >= copt->target_quality - 1e-12;
        if (ok && !met) {
            best = (int)g;
            met = true;
            continue;
        }
        if (ok != met)
            continue;
        const dynrag_eval_row *b = &sweep[best < 0 ? 0 : best];
        bool better;
        if (met)
            better = by_share ? (r->quality > b->quality ||
                                 (r->quality == b->quality && r->share[target] > b->share[target]))
                              : (r->cost < b->cost || (r->cost == b->cost && r->quality > b->quality));
        else
            better = best < 0 || (by_share ? fabs(r->share[target] - copt->target_share) <
                                                 fabs(b->share[target] - copt->target_share)
                                           : r->quality > b->quality);
        if (better)
            best = (int)g;
    }
    const dynrag_eval_row *r = &sweep[best];
    dr_strlcpy(out->param, param, sizeof out->param);
    out->value = r->param;
    out->quality = r->quality;
    out->cost = r->cost;
    out->share = by_share ? r->share[target] : r->share[t->n_options - 1];
    out->met = met;
    if (copt->out_yaml)
        rc = dynrag_eval_patch_router_param(opt->pipeline_path, copt->out_yaml, copt->stage,
                                            param, out->value, err);
cleanup:
    eval_state_free(&s);
    return rc;
}
