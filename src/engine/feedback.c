/*
 * engine/feedback.c - rewards for earlier queries, applied to the pipeline's
 * bandit routers (by remembered query id or from a route-log record).
 */
#include "engine/feedback.h"

#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "engine"

void dr_engine_remember(dynrag_engine *e, const char *id, const qstate *s)
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
    m->gen_latency_ms = s->st[DR_STAGE_GENERATOR].latency_ms;
    m->used = true;
    pthread_mutex_unlock(&e->memo_mu);
}

/* Gives `reward`, shaped by each stage's router params (lambda x $ cost, the
 * SLA penalty on the generator latency: dr_bandit_shaped_reward), to every
 * bandit router whose stage chose an option, under query id qid. Rejects a
 * non-finite reward or one outside [-1e6, 1e6]; fails with the router's
 * error otherwise (DYNRAG_ERR_STATE: qid was already rewarded). */
static int apply_feedback(dynrag_engine *e, const char *qid, const signed char *choice,
                          const dr_query_features *f, double usd, double gen_latency_ms,
                          double reward, dynrag_error *err)
{
    if (!isfinite(reward) || reward < -1e6 || reward > 1e6)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "reward must be a finite number in [-1e6, 1e6]");
    int applied = 0;
    for (int i = 0; i < DR_STAGE_COUNT; i++) {
        dr_router *r = e->routers[i];
        if (r == NULL || choice[i] < 0 || strcmp(e->p->stages[i].router.type, "bandit") != 0)
            continue;
        double shaped =
            dr_bandit_shaped_reward(e->p->stages[i].router.params, reward, usd, gen_latency_ms);
        int rc = r->vt->feedback(r, qid, f, choice[i], shaped, err);
        if (rc != DYNRAG_OK)
            return dr_err_prefix(err, "stages.%s.router", dr_stage_name((dr_stage_id)i));
        applied++;
    }
    dr_log(DYNRAG_LOG_DEBUG, MOD, "feedback %.4g applied to %d bandit router(s)", reward, applied);
    return DYNRAG_OK;
}

/* Rewards a query this engine answered (by id, from the memo ring). Fails
 * with DYNRAG_ERR_NOTFOUND for an id it does not remember. */
int dynrag_engine_feedback(dynrag_engine *e, const char *query_id, double reward, dynrag_error *err)
{
    if (query_id == NULL || *query_id == '\0')
        return dr_err_set(err, DYNRAG_ERR_INVALID, "query_id is empty");
    if (!isfinite(reward) || reward < -1e6 || reward > 1e6)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "reward must be a finite number in [-1e6, 1e6]");
    dr_memo m;
    size_t at = 0;
    bool found = false, dup = false;
    /* Claim the id under the lock, so two concurrent rewards cannot both
     * pass; the claim is released when applying fails for another reason. */
    pthread_mutex_lock(&e->memo_mu);
    for (size_t i = 0; i < DR_MEMO_CAP && !found; i++) {
        if (e->memo[i].used && strcmp(e->memo[i].id, query_id) == 0) {
            dup = e->memo[i].rewarded;
            e->memo[i].rewarded = true;
            m = e->memo[i];
            at = i;
            found = true;
        }
    }
    pthread_mutex_unlock(&e->memo_mu);
    if (!found)
        return dr_err_set(err, DYNRAG_ERR_NOTFOUND, "unknown query_id '%s'", query_id);
    if (dup)
        return dr_err_set(err, DYNRAG_ERR_STATE, "query id '%s' was already rewarded", query_id);
    int rc =
        apply_feedback(e, query_id, m.choice, &m.features, m.usd, m.gen_latency_ms, reward, err);
    if (rc != DYNRAG_OK && rc != DYNRAG_ERR_STATE) {
        pthread_mutex_lock(&e->memo_mu);
        if (e->memo[at].used && strcmp(e->memo[at].id, query_id) == 0)
            e->memo[at].rewarded = false;
        pthread_mutex_unlock(&e->memo_mu);
    }
    return rc;
}

/* Rewards the query of a route-log record: choices by option name, features
 * recomputed from the query text, the generator latency from the generator
 * stage's cost.latency_ms (none: within any SLA). Fails on invalid JSON, a record without
 * query/stages, or a choice this pipeline lacks. */
int dynrag_engine_feedback_record(dynrag_engine *e, const char *record_json, double reward,
                                  dynrag_error *err)
{
    cJSON *r = cJSON_Parse(record_json);
    if (r == NULL)
        return dr_err_set(err, DYNRAG_ERR_PARSE, "route-log record is not valid JSON");
    int rc = DYNRAG_OK;
    cJSON *q = cJSON_GetObjectItem(r, "query");
    cJSON *id = cJSON_GetObjectItem(r, "id");
    cJSON *stages = cJSON_GetObjectItem(r, "stages");
    cJSON *tot = cJSON_GetObjectItem(r, "totals");
    cJSON *usd = tot ? cJSON_GetObjectItem(tot, "usd") : NULL;
    if (!cJSON_IsString(q) || !cJSON_IsArray(stages) || !cJSON_IsString(id) ||
        id->valuestring[0] == '\0') {
        rc = dr_err_set(err, DYNRAG_ERR_PARSE, "route-log record lacks `id`, `query` or `stages`");
        goto cleanup;
    }
    signed char choice[DR_STAGE_COUNT];
    memset(choice, -1, sizeof(choice));
    double gen_latency_ms = NAN;
    cJSON *st;
    cJSON_ArrayForEach(st, stages)
    {
        cJSON *name = cJSON_GetObjectItem(st, "stage");
        cJSON *ch = cJSON_GetObjectItem(st, "choice");
        if (!cJSON_IsString(name))
            continue;
        int sid = dr_stage_from_name(name->valuestring);
        if (sid == DR_STAGE_GENERATOR) {
            cJSON *lat = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "cost"), "latency_ms");
            if (cJSON_IsNumber(lat))
                gen_latency_ms = lat->valuedouble;
        }
        if (sid < 0 || !cJSON_IsString(ch))
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
    rc = apply_feedback(e, id->valuestring, choice, &f, cJSON_IsNumber(usd) ? usd->valuedouble : 0,
                        gen_latency_ms, reward, err);
cleanup:
    cJSON_Delete(r);
    return rc;
}
