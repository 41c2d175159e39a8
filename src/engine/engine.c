/*
 * engine.c - the driver: runs a query through the routed stages of a
 * pipeline, and the engine's life cycle (create, indexes, save, free).
 *
 * Flow of one query (docs/architecture.md has the picture):
 *   features -> retrieval_mode -> embedder -> index (+ retrieval steps)
 *            -> context -> prompt -> generator (cascades escalate here)
 * Each stage: the router scores the options and picks one; the pick is kept
 * only when the remaining budget can pay for it (query.c); the option runs
 * (retrieve.c, generate.c); a decision record (scores, choice, reason,
 * latency, cost) is kept. The whole record is the query's route-log line
 * (record.c); feedback.c remembers the query for later rewards.
 *
 * Files of src/engine/, each including only those after it:
 *   engine.c, record.c, feedback.c, generate.c, retrieve.c, query.c, budget.c
 */
#include "engine/feedback.h"
#include "engine/generate.h"
#include "engine/record.h"
#include "engine/retrieve.h"

#include "core/text.h"
#include "core/util.h"
#include "generate/context.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define MOD "engine"

/* ---- the query ---------------------------------------------------------------- */

/*
 * Runs the stages of one query in order: retrieval_mode, then (when it
 * retrieves) embedder, index with its retrieval steps and context, then
 * prompt and generator; route-only and retrieve-only runs stop early.
 * Fails with the first stage error.
 */
static int run_stages(qstate *s, dynrag_error *err)
{
    const dynrag_pipeline *p = s->p;
    bool route_only = s->opt->route_only;
    int64_t t0 = dr_now_us();
    int est_in = dr_estimate_tokens(s->q);

    /* retrieval_mode */
    int rm = dr_q_route_stage(s, DR_STAGE_RETRIEVAL_MODE, est_in, 0, err);
    if (rm < 0)
        return rm;
    const dr_option *rmo = &p->stages[DR_STAGE_RETRIEVAL_MODE].options[rm];
    dr_q_charge(s, DR_STAGE_RETRIEVAL_MODE, 0, 0, rmo->cost.energy_wh);
    bool retrieve = strcmp(rmo->kind, "none") != 0;
    s->st[DR_STAGE_RETRIEVAL_MODE].latency_us = dr_now_us() - t0;

    if (!retrieve) {
        dr_q_skip_stage(s, DR_STAGE_EMBEDDER, "retrieval_mode is none");
        dr_q_skip_stage(s, DR_STAGE_INDEX, "retrieval_mode is none");
        dr_q_skip_stage(s, DR_STAGE_CONTEXT, "retrieval_mode is none");
    } else {
        t0 = dr_now_us();
        int ei = dr_q_route_stage(s, DR_STAGE_EMBEDDER, est_in, 0, err);
        if (ei < 0)
            return ei;
        s->idx = s->e->index[ei];
        if (s->idx == NULL && !route_only) {
            dynrag_error ierr;
            dr_err_set(&ierr, DYNRAG_ERR_STATE, "%s",
                       s->e->index_error[ei] ? s->e->index_error[ei] : "no index open");
            int fb = dr_q_fallback(s, DR_STAGE_EMBEDDER, ei, &ierr);
            if (fb >= 0 && s->e->index[fb] != NULL) {
                ei = fb;
                s->idx = s->e->index[ei];
            }
        }
        s->st[DR_STAGE_EMBEDDER].latency_us = dr_now_us() - t0;
        if (s->idx == NULL && !route_only)
            return dr_err_set(err, DYNRAG_ERR_STATE, "stages.embedder option '%s': %s",
                              p->stages[DR_STAGE_EMBEDDER].options[ei].name,
                              s->e->index_error[ei] ? s->e->index_error[ei] : "no index open");

        t0 = dr_now_us();
        int ii = dr_q_route_stage(s, DR_STAGE_INDEX, est_in, 0, err);
        if (ii < 0)
            return ii;
        if (dr_q_search_options(s, ii) != DYNRAG_OK)
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "stages.index option '%s': kind '%s' is "
                              "not a search mode",
                              p->stages[DR_STAGE_INDEX].options[ii].name,
                              p->stages[DR_STAGE_INDEX].options[ii].kind);
        if (!route_only) {
            int k = s->opt->k > 0 ? s->opt->k : dr_opt_int(rmo, "k");
            int rc;
            if (strcmp(rmo->kind, "multi") == 0)
                rc = dr_q_retrieve_multi(s, k, dr_opt_int(rmo, "max_steps"), err);
            else if (strcmp(rmo->kind, "adaptive") == 0)
                rc = dr_q_retrieve_adaptive(s, k, dr_opt_int(rmo, "max_steps"),
                                            dr_opt_num(rmo, "min_coverage"),
                                            dr_opt_bool(rmo, "follow_bridge"), err);
            else {
                size_t n_new;
                rc = dr_q_retrieve_step(s, 1, s->q, k, &n_new, err);
            }
            if (rc != DYNRAG_OK)
                return rc;
        }
        ii = s->st[DR_STAGE_INDEX].option; /* may have become the fallback */
        dr_q_charge(s, DR_STAGE_INDEX, 0, 0, p->stages[DR_STAGE_INDEX].options[ii].cost.energy_wh);
        s->st[DR_STAGE_INDEX].latency_us = dr_now_us() - t0;
        dr_q_check_spent(s, "retrieval");

        t0 = dr_now_us();
        int ci = dr_q_route_stage(s, DR_STAGE_CONTEXT, est_in, 0, err);
        if (ci < 0)
            return ci;
        dr_q_charge(s, DR_STAGE_CONTEXT, 0, 0,
                    p->stages[DR_STAGE_CONTEXT].options[ci].cost.energy_wh);
        s->st[DR_STAGE_CONTEXT].latency_us = dr_now_us() - t0;
    }
    if (s->opt->retrieve_only) {
        if (retrieve)
            dr_q_skip_stage(s, DR_STAGE_CONTEXT, "retrieve only");
        dr_q_skip_stage(s, DR_STAGE_PROMPT, "retrieve only");
        dr_q_skip_stage(s, DR_STAGE_GENERATOR, "retrieve only");
        return DYNRAG_OK;
    }
    if (route_only) {
        int rc = dr_q_route_stage(s, DR_STAGE_PROMPT, est_in, 0, err);
        if (rc >= 0)
            rc = dr_q_route_stage(s, DR_STAGE_GENERATOR, est_in, DR_BUDGET_ANSWER_TOKENS, err);
        return rc < 0 ? rc : DYNRAG_OK;
    }
    return dr_q_generate(s, retrieve, err);
}

static bool blank(const char *q)
{
    for (; *q; q++)
        if (!isspace((unsigned char)*q))
            return false;
    return true;
}

/* Public: see dynrag/engine.h. */
void dynrag_query_options_init(dynrag_query_options *o)
{
    memset(o, 0, sizeof(*o));
    o->query_id = NULL;
    o->force = NULL;
    o->budget = NULL;
}

/* Public: see dynrag/engine.h. */
void dynrag_engine_options_init(dynrag_engine_options *o)
{
    memset(o, 0, sizeof(*o));
    o->index_dir = NULL;
    o->log_path = NULL;
}

/* Public: see dynrag/engine.h. Validates the question, runs the stages,
 * logs the record (failed queries too) and remembers the query for feedback. */
/* A keyed hash of n (dr_hash64 seeded with a random per-process key from
 * getrandom(), or the clock and the pid where it fails; never 0, so 0
 * means "not drawn yet"). */
static uint64_t dr_id_mix(uint64_t n)
{
    static atomic_ullong key;
    unsigned long long k = atomic_load(&key);
    if (k == 0) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
            r = (uint64_t)dr_now_us() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
        unsigned long long expected = 0;
        atomic_compare_exchange_strong(&key, &expected, r | 1);
        k = atomic_load(&key);
    }
    return dr_hash64(&n, sizeof(n), (uint64_t)k);
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
    dynrag_query_options_init(&defaults);
    if (opt == NULL)
        opt = &defaults;
    if (opt->k < 0 || opt->k > 1000)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "k: %d is out of range (expected 1 to 1000, or 0 for the "
                          "retrieval_mode option's k)", opt->k);
    if (opt->n_force > 0 && opt->force == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "force: NULL with n_force %zu", opt->n_force);
    dr_budget caller = {NAN, NAN, NAN};
    if (opt->budget != NULL) {
        static const char *const names[] = {"usd", "latency_ms", "energy_wh"};
        const double v[] = {opt->budget->usd, opt->budget->latency_ms, opt->budget->energy_wh};
        for (size_t i = 0; i < 3; i++)
            if (v[i] < 0)
                return dr_err_set(err, DYNRAG_ERR_INVALID,
                                  "budget.%s: %g is negative (expected a number >= 0)", names[i],
                                  v[i]);
        caller = (dr_budget){v[0], v[1], v[2]};
    }
    bool route_only = opt->route_only;
    bool log_it = !route_only && !opt->no_log;
    char id[80];
    if (opt->query_id && *opt->query_id)
        dr_strlcpy(id, opt->query_id, sizeof(id));
    else {
        char now[40];
        dr_time_rfc3339(now, sizeof(now));
        /* process-wide, so two engines of one process never share an id
         * (a reward counts once per id) */
        static atomic_ullong seq;
        unsigned long long n = atomic_fetch_add(&seq, 1) + 1;
        /* and with 64 bits no client can predict (a secret key per process
         * mixed with the sequence number), so a client cannot take the id
         * of the next query for itself */
        snprintf(id, sizeof(id), "q-%.19s-%d-%llu-%016llx", now, (int)getpid(), n,
                 (unsigned long long)dr_id_mix(n));
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
    s.budget = dr_budget_effective(&e->p->budget, &caller);
    s.deadline_us = dr_budget_deadline(s.start_us, s.budget.latency_ms);
    s.steps = cJSON_CreateArray();
    s.cascade = cJSON_CreateArray();
    s.cuts = cJSON_CreateArray();
    s.fallbacks = cJSON_CreateArray();
    dynrag_result *res = dr_calloc(1, sizeof(*res));
    if (s.steps == NULL || s.cascade == NULL || s.cuts == NULL || s.fallbacks == NULL ||
        res == NULL) {
        dr_qstate_free(&s);
        dr_free(res);
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
    /* A step, cascade attempt, cut or fallback that could not be noted is
     * lost to the record and to the prompt's step list: the query fails. */
    if (rc == DYNRAG_OK && s.jb.nomem)
        rc = dr_err_set(&qerr, DYNRAG_ERR_NOMEM, "out of memory");
    if (rc == DYNRAG_OK)
        dr_q_check_spent(&s, "the query");
    s.tot.latency_ms = dr_q_elapsed_ms(&s);
    /* The record only when it is written or the caller wants it (building
     * it was most of the cost of a route-only query). */
    bool want_record = (log_it && e->log_on) || !opt->no_record;
    cJSON *rec =
        want_record ? dr_q_build_record(&s, id, rc == DYNRAG_OK ? NULL : dynrag_errmsg(&qerr))
                    : NULL;
    res->id = dr_strdup(id);
    int frc = (want_record && rec == NULL) || res->id == NULL
                  ? DYNRAG_ERR_NOMEM
                  : dr_q_fill_result(res, &s, opt->no_record ? NULL : rec);
    if (log_it && rec) {
        /* Failed queries are logged too, with their error. */
        char *line = res->json ? NULL : cJSON_PrintUnformatted(rec);
        const char *l = res->json ? res->json : line;
        dynrag_error lerr;
        dynrag_error_clear(&lerr);
        int lrc = l ? dr_engine_write_log(e, l, &lerr) : DYNRAG_ERR_NOMEM;
        if (lrc != DYNRAG_OK && rc == DYNRAG_OK && frc == DYNRAG_OK) {
            frc = lrc;
            qerr = lerr;
        }
        dr_free(line);
    }
    if (rc == DYNRAG_OK && !route_only)
        dr_engine_remember(e, id, &s);
    cJSON_Delete(rec);
    dr_qstate_free(&s);
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

/* Opens the index once per available embedder option. An identity mismatch
 * of one option among several is logged and that option left without an
 * index; any other failure, or no option opening it, fails. */
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
        /* Each embedder option has its own dense index (dynrag index
         * --pipeline builds them); an option whose own folder is absent
         * tries the main one, and the identity check decides. */
        char *dir = dynrag_pipeline_embedder_index_dir(e->p, e->index_dir, o->name);
        if (dir == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        struct stat sb;
        if (strcmp(dir, e->index_dir) != 0 && stat(dir, &sb) != 0) {
            dr_free(dir);
            dir = dr_strdup(e->index_dir);
            if (dir == NULL)
                return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        }
        rc = dynrag_index_open(dir, &ec, &e->index[i], &ierr);
        dr_free(dir);
        if (rc != DYNRAG_OK) {
            e->index_error[i] = dr_strdup(dynrag_errmsg(&ierr));
            if (rc != DYNRAG_ERR_MISMATCH || st->n_options == 1) {
                if (err)
                    *err = ierr;
                return dr_err_prefix(err, "stages.embedder option '%s'", o->name);
            }
            dr_log(DYNRAG_LOG_WARN, MOD, "embedder option '%s' cannot serve index %s: %s", o->name,
                   e->index_dir, dynrag_errmsg(&ierr));
            continue;
        }
        opened++;
    }
    if (opened == 0)
        return dr_err_set(err, DYNRAG_ERR_STATE, "%s: no embedder option can open index %s",
                          e->p->path, e->index_dir);
    return DYNRAG_OK;
}

/* Public: see dynrag/engine.h. The engine borrows `p`, which must outlive it. */
int dynrag_engine_open(const dynrag_pipeline *p, const dynrag_engine_options *opt,
                         dynrag_engine **out, dynrag_error *err)
{
    *out = NULL;
    dynrag_engine *e = dr_calloc(1, sizeof(*e));
    if (e == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    e->p = p;
    e->log_fd = -1;
    pthread_mutex_init(&e->log_mu, NULL);
    pthread_mutex_init(&e->memo_mu, NULL);
    atomic_init(&e->counter, 0);
    int rc = DYNRAG_OK;
    e->memo = dr_calloc(DR_MEMO_CAP, sizeof(*e->memo));
    if (e->memo == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    const char *index_dir = opt && opt->index_dir ? opt->index_dir : p->index_dir;
    e->index_dir = dr_strdup(index_dir);
    if (index_dir != NULL && e->index_dir == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto fail;
    }
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
        dr_free(dir);
        if (rc != DYNRAG_OK)
            goto fail;
        e->log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (e->log_fd < 0) {
            rc = dr_err_set(err, DYNRAG_ERR_IO, "route log %s: %s", log_path, strerror(errno));
            goto fail;
        }
        struct stat st;
        if (fstat(e->log_fd, &st) == 0) {
            e->log_dev = st.st_dev;
            e->log_ino = st.st_ino;
        }
        e->log_checked_us = dr_now_us();
        e->log_on = true;
    }
    *out = e;
    return DYNRAG_OK;
fail:
    dynrag_engine_close(e);
    return rc;
}

const char *dynrag_engine_log_path(const dynrag_engine *e)
{
    return e->log_on ? e->log_path : NULL;
}

dynrag_index *dynrag_engine_index(const dynrag_engine *e, const char *embedder_option)
{
    if (e == NULL)
        return NULL;
    if (embedder_option == NULL)
        return dr_engine_first_index(e);
    int i = dr_stage_find_option(&e->p->stages[DR_STAGE_EMBEDDER], embedder_option);
    return i >= 0 && i < DR_MAX_OPTIONS ? e->index[i] : NULL;
}

/* Public: saves every router's state and syncs the route log; returns the
 * first error but tries all. */
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
    if (e->log_on) {
        pthread_mutex_lock(&e->log_mu); /* the file may be switched (rotation) */
        if (fsync(e->log_fd) != 0 && errno != EINVAL && rc == DYNRAG_OK)
            rc = dr_err_set(err, DYNRAG_ERR_IO, "route log %s: %s", e->log_path, strerror(errno));
        pthread_mutex_unlock(&e->log_mu);
    }
    return rc;
}

/* Public: saves (logging a failure), then frees; NULL is fine. */
void dynrag_engine_close(dynrag_engine *e)
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
        dr_free(e->index_error[i]);
    }
    if (e->log_fd >= 0)
        close(e->log_fd);
    pthread_mutex_destroy(&e->log_mu);
    pthread_mutex_destroy(&e->memo_mu);
    dr_free(e->memo);
    dr_free(e->log_path);
    dr_free(e->index_dir);
    dr_free(e);
}
