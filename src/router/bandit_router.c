/*
 * bandit_router.c - learns from rewards which option to pick.
 *
 * params: {algorithm: epsilon_greedy|ucb1|linucb (ucb1), epsilon (0.1),
 * alpha (1.0), lambda (0: read by the caller, which computes
 * reward = quality - lambda * cost), sla_ms and sla_penalty (none, 1: read
 * by the caller too, which subtracts the SLA penalty, engine/feedback.h),
 * state (path, resolved by the loader; no persistence when absent), seed
 * (42)}.
 *
 *   epsilon_greedy: arms with no feedback yet are tried first (fewest picks
 *     first); then with probability epsilon a uniformly random available
 *     arm, else the one with the highest mean reward.
 *   ucb1: arms with no feedback first; then argmax mean + sqrt(2 ln N / n),
 *     N = feedback count over the available arms.
 *   linucb (disjoint): per arm A (d x d, starts at I) and b (d); with x the
 *     query's feature vector, theta = A^-1 b and the pick maximises
 *     theta.x + alpha * sqrt(x^T A^-1 x). A is solved by Cholesky (d = 8).
 *
 * One mutex guards the statistics and the PRNG: route() and feedback() may
 * run on any number of threads. save() and feedback() serialise under a
 * second mutex (the reward store's handle and the state file's temporary
 * file are used by one thread at a time). The file format is in
 * router/bandit.h.
 *
 * Durability: with a `state` file, every reward goes to the reward store
 * (router/bandit_store.h) in its own durable transaction before feedback()
 * returns, and refreshes every arm's statistics from it (so rewards other
 * processes gave are counted too); a second reward for a query id is
 * refused. Route counts and the PRNG are kept in the JSON state file, which
 * save() writes after refreshing the statistics from the store.
 */
#include "router/bandit.h"
#include "core/alloc.h"

#include "router/bandit_store.h"

#include "router/router_impl.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define D DR_FEATURE_DIM
#define STATE_FILE_MAX (16u << 20)
#define COUNT_MAX 9007199254740992.0 /* 2^53: exact in a JSON number */

typedef enum bandit_algo { ALGO_EPSILON, ALGO_UCB1, ALGO_LINUCB } bandit_algo;

static const char *const algo_names[] = {"epsilon_greedy", "ucb1", "linucb"};

typedef struct arm {
    double pulls;      /* route() picks */
    double n;          /* feedback count */
    double sum_reward;
    double A[D * D];   /* row-major */
    double b[D];
} arm;

typedef struct bandit_router {
    dr_router base;
    bandit_algo algo;
    double epsilon, alpha;
    char *state_path; /* NULL: no persistence */
    dr_bandit_store *store;    /* the reward store; NULL until one exists */
    uint64_t anon;             /* anonymous rewards given (their ids in the store) */
    pthread_mutex_t lock;      /* arms, rng */
    pthread_mutex_t save_lock; /* save(), feedback(), store */
    dr_rng rng;
    arm arms[DR_MAX_OPTIONS];
} bandit_router;

/* ---- linear algebra (d = 8) ------------------------------------------------ */

/* Cholesky A = L L^T (L lower, row-major). False when A is not positive definite. */
static bool cholesky(const double *A, double *L)
{
    memset(L, 0, sizeof(double) * D * D);
    for (int j = 0; j < D; j++) {
        double s = A[j * D + j];
        for (int k = 0; k < j; k++)
            s -= L[j * D + k] * L[j * D + k];
        if (!(s > 1e-12) || !isfinite(s))
            return false;
        L[j * D + j] = sqrt(s);
        for (int i = j + 1; i < D; i++) {
            double t = A[i * D + j];
            for (int k = 0; k < j; k++)
                t -= L[i * D + k] * L[j * D + k];
            L[i * D + j] = t / L[j * D + j];
        }
    }
    return true;
}

/* Solves L L^T z = v. */
static void chol_solve(const double *L, const double *v, double *z)
{
    double y[D];
    for (int i = 0; i < D; i++) {
        double s = v[i];
        for (int k = 0; k < i; k++)
            s -= L[i * D + k] * y[k];
        y[i] = s / L[i * D + i];
    }
    for (int i = D - 1; i >= 0; i--) {
        double s = y[i];
        for (int k = i + 1; k < D; k++)
            s -= L[k * D + i] * z[k];
        z[i] = s / L[i * D + i];
    }
}

static void arm_reset(arm *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 0; i < D; i++)
        a->A[i * D + i] = 1.0;
}

/* ---- route and feedback ------------------------------------------------------- */

static double arm_mean(const arm *a)
{
    return a->n > 0 ? a->sum_reward / a->n : NAN;
}

static int bandit_route(dr_router *r, const dr_route_ctx *ctx, dr_route_decision *out,
                        dynrag_error *err)
{
    bandit_router *br = (bandit_router *)r;
    const dr_stage *st = r->stage;
    size_t n_opt = st->n_options;
    dr_query_features local;
    const dr_query_features *f = ctx->features;
    if (f == NULL && br->algo == ALGO_LINUCB) {
        dr_query_features_compute(ctx->query, &local);
        f = &local;
    }
    dr_route_decision_reset(out);
    int n_avail = 0;
    for (size_t i = 0; i < n_opt; i++)
        n_avail += dr_route_ok(ctx, st, i);
    if (n_avail == 0)
        return dr_err_set(err, DYNRAG_ERR_STATE, "stages.%s: no option is available",
                          dr_stage_name(st->id));

    pthread_mutex_lock(&br->lock);
    int pick = -1;
    const char *algo = algo_names[br->algo];
    if (br->algo != ALGO_LINUCB) {
        for (size_t i = 0; i < n_opt; i++)
            out->scores[i] = arm_mean(&br->arms[i]);
        /* arms without feedback first, the least picked of them */
        for (size_t i = 0; i < n_opt; i++)
            if (dr_route_ok(ctx, st, i) && br->arms[i].n == 0 &&
                (pick < 0 || br->arms[i].pulls < br->arms[pick].pulls))
                pick = (int)i;
        if (pick >= 0) {
            snprintf(out->reason, sizeof out->reason, "bandit %s: trying %s (no feedback yet)",
                     algo, st->options[pick].name);
        } else if (br->algo == ALGO_EPSILON && dr_rng_uniform(&br->rng) < br->epsilon) {
            uint64_t k = dr_rng_below(&br->rng, (uint64_t)n_avail);
            for (size_t i = 0; i < n_opt && pick < 0; i++)
                if (dr_route_ok(ctx, st, i) && k-- == 0)
                    pick = (int)i;
            snprintf(out->reason, sizeof out->reason, "bandit %s: explore (p=%.3g): %s", algo,
                     br->epsilon, st->options[pick].name);
        } else if (br->algo == ALGO_EPSILON) {
            for (size_t i = 0; i < n_opt; i++)
                if (dr_route_ok(ctx, st, i) && (pick < 0 || out->scores[i] > out->scores[pick]))
                    pick = (int)i;
            snprintf(out->reason, sizeof out->reason,
                     "bandit %s: exploit: %s (mean reward %.4f over %.0f)", algo,
                     st->options[pick].name, out->scores[pick], br->arms[pick].n);
        } else {
            double total = 0;
            for (size_t i = 0; i < n_opt; i++)
                if (dr_route_ok(ctx, st, i))
                    total += br->arms[i].n;
            for (size_t i = 0; i < n_opt; i++) {
                const arm *a = &br->arms[i];
                if (a->n > 0)
                    out->scores[i] = arm_mean(a) + sqrt(2.0 * log(total) / a->n);
                if (dr_route_ok(ctx, st, i) &&
                    (pick < 0 || out->scores[i] > out->scores[pick]))
                    pick = (int)i;
            }
            snprintf(out->reason, sizeof out->reason,
                     "bandit %s: %s (ucb %.4f, mean %.4f over %.0f)", algo,
                     st->options[pick].name, out->scores[pick], arm_mean(&br->arms[pick]),
                     br->arms[pick].n);
        }
    } else {
        double best_mean = 0, best_bonus = 0;
        for (size_t i = 0; i < n_opt; i++) {
            const arm *a = &br->arms[i];
            double L[D * D], theta[D], ax[D];
            if (!cholesky(a->A, L))
                continue; /* cannot happen: A = I + sum x x^T, validated on load */
            chol_solve(L, a->b, theta);
            chol_solve(L, f->vec, ax);
            double mean = 0, var = 0;
            for (int j = 0; j < D; j++) {
                mean += theta[j] * f->vec[j];
                var += f->vec[j] * ax[j];
            }
            double bonus = br->alpha * sqrt(DR_MAX(var, 0.0));
            out->scores[i] = mean + bonus;
            if (dr_route_ok(ctx, st, i) && (pick < 0 || out->scores[i] > out->scores[pick])) {
                pick = (int)i;
                best_mean = mean;
                best_bonus = bonus;
            }
        }
        if (pick < 0) {
            pthread_mutex_unlock(&br->lock);
            return dr_err_set(err, DYNRAG_ERR_INTERNAL, "bandit linucb: no arm could be scored");
        }
        snprintf(out->reason, sizeof out->reason,
                 "bandit linucb: %s (estimate %.4f + bonus %.4f, %.0f updates)",
                 st->options[pick].name, best_mean, best_bonus, br->arms[pick].n);
    }
    if (br->arms[pick].pulls < COUNT_MAX)
        br->arms[pick].pulls += 1;
    out->option = pick;
    pthread_mutex_unlock(&br->lock);
    return DYNRAG_OK;
}

/* Adds one reward to an arm in memory (features NULL: A and b unchanged). */
static void arm_add(arm *a, const dr_query_features *features, double reward)
{
    if (a->n >= COUNT_MAX)
        return;
    a->n += 1;
    a->sum_reward += reward;
    if (features != NULL) {
        const double *x = features->vec;
        for (int i = 0; i < D; i++) {
            for (int j = 0; j < D; j++)
                a->A[i * D + j] += x[i] * x[j];
            a->b[i] += reward * x[i];
        }
    }
}

/* dr_bandit_store_read() callback: copies a stored arm's statistics into
 * the router's arm of that name (call with br->lock held). */
static void take_stats(void *ctx, const char *option, const dr_bandit_stats *st)
{
    bandit_router *br = ctx;
    int o = dr_stage_find_option(br->base.stage, option);
    if (o < 0)
        return;
    arm *a = &br->arms[o];
    a->n = st->n;
    a->sum_reward = st->sum_reward;
    memcpy(a->A, st->A, sizeof a->A);
    memcpy(a->b, st->b, sizeof a->b);
}

/* Reads every arm's statistics from the store into memory; no store: OK.
 * Call with br->save_lock held. */
static int refresh_from_store(bandit_router *br, dynrag_error *err)
{
    if (br->store == NULL)
        return DYNRAG_OK;
    pthread_mutex_lock(&br->lock);
    int rc = dr_bandit_store_read(br->store, take_stats, br, err);
    pthread_mutex_unlock(&br->lock);
    return rc;
}

static int bandit_feedback(dr_router *r, const char *query_id, const dr_query_features *features,
                           int option, double reward, dynrag_error *err)
{
    bandit_router *br = (bandit_router *)r;
    if (option < 0 || (size_t)option >= r->stage->n_options)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "bandit feedback: option %d out of range",
                          option);
    if (!isfinite(reward))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "bandit feedback: reward is not finite");
    if (br->state_path == NULL) {
        pthread_mutex_lock(&br->lock);
        arm_add(&br->arms[option], features, reward);
        pthread_mutex_unlock(&br->lock);
        return DYNRAG_OK;
    }
    int rc = DYNRAG_OK;
    char anon_id[64];
    pthread_mutex_lock(&br->save_lock);
    if (br->store == NULL &&
        (rc = dr_bandit_store_open(br->state_path, dr_stage_name(r->stage->id), true, &br->store,
                                   err)) != DYNRAG_OK)
        goto cleanup;
    if (query_id == NULL) {
        /* unique across processes and runs: pid, wall time, count */
        snprintf(anon_id, sizeof anon_id, "~anonymous.%ld.%lld.%llu", (long)getpid(),
                 (long long)time(NULL), (unsigned long long)++br->anon);
        query_id = anon_id;
    }
    dr_bandit_stats init, got;
    pthread_mutex_lock(&br->lock);
    const arm *a = &br->arms[option];
    init.n = a->n;
    init.sum_reward = a->sum_reward;
    memcpy(init.A, a->A, sizeof init.A);
    memcpy(init.b, a->b, sizeof init.b);
    pthread_mutex_unlock(&br->lock);
    rc = dr_bandit_store_reward(br->store, query_id, r->stage->options[option].name, reward,
                                features ? features->vec : NULL, &init, &got, err);
    if (rc == DYNRAG_OK)
        rc = refresh_from_store(br, err);
cleanup:
    pthread_mutex_unlock(&br->save_lock);
    return rc;
}

static const dr_router_vtable bandit_vt;

/* ---- state file ------------------------------------------------------------------ */

static cJSON *num_array(const double *v, int n)
{
    return cJSON_CreateDoubleArray(v, n);
}

/* Builds the state JSON; call with br->lock held. */
static char *state_to_json(const bandit_router *br)
{
    const dr_stage *st = br->base.stage;
    char *text = NULL;
    cJSON *root = cJSON_CreateObject();
    if (root == NULL)
        return NULL;
    cJSON *rng = cJSON_AddArrayToObject(root, "rng");
    cJSON *arms = NULL;
    if (cJSON_AddNumberToObject(root, "version", 1) == NULL ||
        cJSON_AddStringToObject(root, "algorithm", algo_names[br->algo]) == NULL ||
        cJSON_AddNumberToObject(root, "dim", D) == NULL || rng == NULL)
        goto cleanup;
    for (int i = 0; i < 4; i++) {
        char hex[24];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)br->rng.s[i]);
        if (!cJSON_AddItemToArray(rng, cJSON_CreateString(hex)))
            goto cleanup;
    }
    arms = cJSON_AddArrayToObject(root, "arms");
    if (arms == NULL)
        goto cleanup;
    for (size_t i = 0; i < st->n_options; i++) {
        const arm *a = &br->arms[i];
        cJSON *o = cJSON_CreateObject();
        if (o == NULL || !cJSON_AddItemToArray(arms, o))
            goto cleanup;
        if (cJSON_AddStringToObject(o, "option", st->options[i].name) == NULL ||
            cJSON_AddNumberToObject(o, "pulls", a->pulls) == NULL ||
            cJSON_AddNumberToObject(o, "n", a->n) == NULL ||
            cJSON_AddNumberToObject(o, "sum_reward", a->sum_reward) == NULL ||
            !cJSON_AddItemToObject(o, "A", num_array(a->A, D * D)) ||
            !cJSON_AddItemToObject(o, "b", num_array(a->b, D)))
            goto cleanup;
    }
    text = cJSON_Print(root);
cleanup:
    cJSON_Delete(root);
    return text;
}

char *dr_bandit_state_json(dr_router *r)
{
    if (r == NULL || r->vt != &bandit_vt)
        return NULL;
    bandit_router *br = (bandit_router *)r;
    pthread_mutex_lock(&br->lock);
    char *s = state_to_json(br);
    pthread_mutex_unlock(&br->lock);
    return s;
}

void dr_bandit_detach_state(dr_router *r)
{
    if (r == NULL || r->vt != &bandit_vt)
        return;
    bandit_router *br = (bandit_router *)r;
    pthread_mutex_lock(&br->save_lock);
    dr_free(br->state_path);
    br->state_path = NULL;
    pthread_mutex_unlock(&br->save_lock);
}

static int bandit_save(dr_router *r, dynrag_error *err)
{
    bandit_router *br = (bandit_router *)r;
    if (br->state_path == NULL)
        return DYNRAG_OK;
    pthread_mutex_lock(&br->save_lock);
    char *text = NULL;
    int rc = refresh_from_store(br, err);
    if (rc != DYNRAG_OK) {
        dr_err_prefix(err, "saving bandit state");
        goto done;
    }
    pthread_mutex_lock(&br->lock);
    text = state_to_json(br);
    pthread_mutex_unlock(&br->lock);
    if (text == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "bandit state %s: out of memory",
                        br->state_path);
    } else {
        rc = dr_write_file_atomic(br->state_path, text, strlen(text), err);
        if (rc != DYNRAG_OK)
            dr_err_prefix(err, "saving bandit state");
    }
done:
    pthread_mutex_unlock(&br->save_lock);
    dr_free(text);
    return rc;
}

static bool parse_hex64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; s[i] != '\0'; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
        if (d < 0 || i >= 16)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return i > 0;
}

static bool read_numbers(const cJSON *arr, double *out, int n)
{
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n)
        return false;
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr)
    {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return false;
        out[i++] = v->valuedouble;
    }
    return true;
}

static bool read_count(const cJSON *o, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > COUNT_MAX ||
        v->valuedouble != floor(v->valuedouble))
        return false;
    *out = v->valuedouble;
    return true;
}

/*
 * Loads br->state_path into br. A missing file leaves the fresh state;
 * anything unreadable or malformed fails with DYNRAG_ERR_FORMAT (or the read
 * error) and a message naming the file and what is wrong.
 */
static int load_state(bandit_router *br, dynrag_error *err)
{
    const dr_stage *st = br->base.stage;
    const char *path = br->state_path;
    char *data = NULL;
    int rc = dr_read_file(path, STATE_FILE_MAX, &data, NULL, err);
    if (rc == DYNRAG_ERR_NOTFOUND) {
        dynrag_error_clear(err);
        return DYNRAG_OK;
    }
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "bandit state");
    cJSON *root = cJSON_Parse(data);
    const char *what = NULL;
    const cJSON *arms, *item, *rng;
    arm loaded[DR_MAX_OPTIONS];
    dr_rng r;
    if (root == NULL) {
        what = "not valid JSON";
        goto bad;
    }
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (!cJSON_IsNumber(ver) || ver->valuedouble != 1) {
        what = "missing or unsupported \"version\" (expected 1)";
        goto bad;
    }
    const cJSON *dim = cJSON_GetObjectItemCaseSensitive(root, "dim");
    if (!cJSON_IsNumber(dim) || dim->valuedouble != D) {
        what = "\"dim\" must be 8";
        goto bad;
    }
    rng = cJSON_GetObjectItemCaseSensitive(root, "rng");
    if (!cJSON_IsArray(rng) || cJSON_GetArraySize(rng) != 4) {
        what = "\"rng\" must be 4 hex strings";
        goto bad;
    }
    int k = 0;
    cJSON_ArrayForEach(item, rng)
    {
        if (!cJSON_IsString(item) || !parse_hex64(item->valuestring, &r.s[k++])) {
            what = "\"rng\" must be 4 hex strings";
            goto bad;
        }
    }
    if ((r.s[0] | r.s[1] | r.s[2] | r.s[3]) == 0) {
        what = "\"rng\" state is all zero";
        goto bad;
    }
    arms = cJSON_GetObjectItemCaseSensitive(root, "arms");
    if (!cJSON_IsArray(arms)) {
        what = "\"arms\" must be a list";
        goto bad;
    }
    for (size_t i = 0; i < st->n_options; i++)
        loaded[i] = br->arms[i];
    cJSON_ArrayForEach(item, arms)
    {
        arm a;
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "option");
        const cJSON *sum = cJSON_GetObjectItemCaseSensitive(item, "sum_reward");
        double L[D * D];
        if (!cJSON_IsObject(item) || !cJSON_IsString(name) || !read_count(item, "pulls", &a.pulls) ||
            !read_count(item, "n", &a.n) || !cJSON_IsNumber(sum) ||
            !isfinite(sum->valuedouble) ||
            !read_numbers(cJSON_GetObjectItemCaseSensitive(item, "A"), a.A, D * D) ||
            !read_numbers(cJSON_GetObjectItemCaseSensitive(item, "b"), a.b, D)) {
            what = "an arm needs option, pulls, n, sum_reward, A[64] and b[8]";
            goto bad;
        }
        a.sum_reward = sum->valuedouble;
        if (!cholesky(a.A, L)) {
            what = "an arm's A is not positive definite";
            goto bad;
        }
        int o = dr_stage_find_option(st, name->valuestring);
        if (o < 0) {
            dr_log(DYNRAG_LOG_INFO, "router", "bandit state %s: ignoring arm '%s' (no such option)",
                   path, name->valuestring);
            continue;
        }
        loaded[o] = a;
    }
    memcpy(br->arms, loaded, st->n_options * sizeof *loaded);
    br->rng = r;
    cJSON_Delete(root);
    dr_free(data);
    return DYNRAG_OK;
bad:
    rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "bandit state file %s is corrupt: %s", path, what);
    cJSON_Delete(root);
    dr_free(data);
    return rc;
}

static void bandit_free(dr_router *r)
{
    bandit_router *br = (bandit_router *)r;
    if (br == NULL)
        return;
    dr_bandit_store_close(br->store);
    pthread_mutex_destroy(&br->lock);
    pthread_mutex_destroy(&br->save_lock);
    dr_free(br->state_path);
    dr_free(br);
}

static const dr_router_vtable bandit_vt = {bandit_route, bandit_feedback, bandit_save,
                                           bandit_free};

int dr_router_create_bandit(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                            dynrag_error *err)
{
    const cJSON *params = stage->router.params;
    const char *sn = dr_stage_name(stage->id);
    const char *algo = dr_param_str(params, "algorithm", "ucb1");
    int a = -1;
    for (size_t i = 0; i < DR_ARRAY_LEN(algo_names); i++)
        if (strcmp(algo, algo_names[i]) == 0)
            a = (int)i;
    if (a < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.algorithm: unknown algorithm '%s' (epsilon_greedy, "
                          "ucb1 or linucb)",
                          sn, algo);
    double eps = dr_param_num(params, "epsilon", 0.1);
    double alpha = dr_param_num(params, "alpha", 1.0);
    double seed = dr_param_num(params, "seed", 42);
    if (!(eps >= 0 && eps <= 1))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.epsilon: expected a number in [0, 1]", sn);
    if (!(alpha >= 0 && alpha <= 1e6))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.alpha: expected a number >= 0", sn);
    if (!(seed >= 0 && seed <= COUNT_MAX))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.seed: expected an integer >= 0", sn);
    /* sla_ms / sla_penalty shape the reward the engine gives (engine/feedback.h). */
    double sla = dr_param_num(params, "sla_ms", NAN);
    double pen = dr_param_num(params, "sla_penalty", 1);
    if (cJSON_HasObjectItem(params, "sla_ms") && !(sla > 0 && sla <= 1e12))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.sla_ms: expected a number of ms > 0", sn);
    if (!(pen >= 0 && pen <= 1e6))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.sla_penalty: expected a number in [0, 1e6]", sn);
    bandit_router *br = dr_calloc(1, sizeof *br);
    if (br == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&br->lock, NULL);
    pthread_mutex_init(&br->save_lock, NULL);
    br->base.vt = &bandit_vt;
    br->base.stage = stage;
    br->algo = (bandit_algo)a;
    br->epsilon = eps;
    br->alpha = alpha;
    dr_rng_seed(&br->rng, (uint64_t)seed);
    for (size_t i = 0; i < DR_MAX_OPTIONS; i++)
        arm_reset(&br->arms[i]);
    int rc = DYNRAG_OK;
    const char *state = dr_param_str(params, "state", NULL);
    if (state != NULL) {
        br->state_path = dr_strdup(state);
        if (br->state_path == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        if ((rc = load_state(br, err)) != DYNRAG_OK ||
            (rc = dr_bandit_store_open(state, dr_stage_name(stage->id), false, &br->store,
                                       err)) != DYNRAG_OK ||
            (rc = refresh_from_store(br, err)) != DYNRAG_OK) {
            dr_err_prefix(err, "stages.%s.router.state", sn);
            goto cleanup;
        }
    }
    *out = &br->base;
    return DYNRAG_OK;
cleanup:
    bandit_free(&br->base);
    return rc;
}

/* See bandit.h. */
double dr_bandit_shaped_reward(const cJSON *params, double reward, double usd, double latency_ms)
{
    double r = reward - dr_param_num(params, "lambda", 0) * usd;
    double sla = dr_param_num(params, "sla_ms", NAN);
    if (sla > 0 && latency_ms > sla) /* the overshoot ratio is capped: finite */
        r -= dr_param_num(params, "sla_penalty", 1) *
             DR_MIN((latency_ms - sla) / sla, DR_SLA_OVERSHOOT_MAX);
    return r;
}
