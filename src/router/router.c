/* router.c - router creation by type, shared decision helpers, the fixed router. */
#include "router/router_impl.h"
#include "core/alloc.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

/* ---- the table of router types ------------------------------------------ */

static const struct {
    const char *name;
    dr_router_create_fn create;
} router_types[] = {
    {"fixed", dr_router_create_fixed},   {"rules", dr_router_create_rules},
    {"knn", dr_router_create_knn},       {"cost", dr_router_create_cost},
    {"bandit", dr_router_create_bandit}, {"cascade", dr_router_create_cascade},
    {"classifier", dr_router_create_classifier},
    {"predict", dr_router_create_predict},
    {"cluster", dr_router_create_predict},
    {"distill", dr_router_create_predict},
    {"mf", dr_router_create_predict},
    {"preference", dr_router_create_predict},
    {"llm", dr_router_create_llm},
    {"contrastive", dr_router_create_predict},
};

/*
 * Creates the router of stage->router.type. The router keeps pointers into
 * the pipeline (which must outlive it). Fails with DYNRAG_ERR_UNSUPPORTED for
 * an unknown type, or with the type's own error (params naming the field).
 */
int dr_router_create(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                     dynrag_error *err)
{
    *out = NULL;
    if (stage == NULL || stage->n_options == 0 || stage->n_options > DR_MAX_OPTIONS)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s: needs 1 to %d options",
                          dr_stage_name(stage->id), DR_MAX_OPTIONS);
    const char *type = stage->router.type != NULL ? stage->router.type : "fixed";
    for (size_t i = 0; i < DR_ARRAY_LEN(router_types); i++) {
        if (strcmp(router_types[i].name, type) != 0)
            continue;
        int rc = router_types[i].create(p, stage, out, err);
        if (rc == DYNRAG_OK) {
            (*out)->type = router_types[i].name;
            (*out)->stage = stage;
        }
        return rc;
    }
    return dr_err_set(err, DYNRAG_ERR_UNSUPPORTED, "stages.%s.router.type: unknown router '%s'",
                      dr_stage_name(stage->id), type);
}

void dr_router_free(dr_router *r)
{
    if (r != NULL)
        r->vt->free(r);
}

/* ---- decisions -------------------------------------------------------------- */

void dr_route_decision_reset(dr_route_decision *d)
{
    d->option = -1;
    for (size_t i = 0; i < DR_MAX_OPTIONS; i++)
        d->scores[i] = NAN;
    d->reason[0] = '\0';
    d->spent.usd = d->spent.latency_ms = d->spent.energy_wh = 0;
}

void dr_route_reason_append(dr_route_decision *d, const char *fmt, ...)
{
    size_t len = strlen(d->reason);
    if (len + 1 >= sizeof d->reason)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason + len, sizeof d->reason - len, fmt, ap);
    va_end(ap);
}

int dr_route_ensure_available(const dr_route_ctx *ctx, const dr_stage *stage, dr_route_decision *d,
                              dynrag_error *err)
{
    int want = d->option;
    if (want >= 0 && (size_t)want < stage->n_options && dr_route_ok(ctx, stage, want))
        return DYNRAG_OK;
    int best = -1;
    for (size_t i = 0; i < stage->n_options; i++) {
        if (!dr_route_ok(ctx, stage, i))
            continue;
        if (best < 0) {
            best = (int)i;
            continue;
        }
        double s = d->scores[i], bs = d->scores[best];
        if (!isnan(s) && (isnan(bs) || s > bs))
            best = (int)i;
    }
    if (best < 0)
        return dr_err_set(err, DYNRAG_ERR_STATE, "stages.%s: no option is available",
                          dr_stage_name(stage->id));
    if (want >= 0 && (size_t)want < stage->n_options)
        dr_route_reason_append(d, "; %s unavailable, using %s", stage->options[want].name,
                               stage->options[best].name);
    else
        dr_route_reason_append(d, "; using %s", stage->options[best].name);
    d->option = best;
    return DYNRAG_OK;
}

int dr_router_feedback_none(dr_router *r, const char *query_id,
                            const dr_query_features *features, int option, double reward,
                            dynrag_error *err)
{
    return DYNRAG_OK;
}

int dr_router_save_none(dr_router *r, dynrag_error *err)
{
    return DYNRAG_OK;
}

/* ---- fixed: always the same option ------------------------------------------ */

typedef struct fixed_router {
    dr_router base;
    int option;
} fixed_router;

static int fixed_route(dr_router *r, const dr_route_ctx *ctx, dr_route_decision *out,
                       dynrag_error *err)
{
    const fixed_router *f = (const fixed_router *)r;
    dr_route_decision_reset(out);
    out->option = f->option;
    out->scores[f->option] = 1.0;
    snprintf(out->reason, sizeof out->reason, "fixed: %s", r->stage->options[f->option].name);
    return dr_route_ensure_available(ctx, r->stage, out, err);
}

static void fixed_free(dr_router *r)
{
    dr_free(r);
}

static const dr_router_vtable fixed_vt = {fixed_route, dr_router_feedback_none,
                                          dr_router_save_none, fixed_free};

/* params: {option: name} (default: the stage's first option). */
int dr_router_create_fixed(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                           dynrag_error *err)
{
    int opt = 0;
    int rc = dr_router_option_param(stage, "option", 0, &opt, err);
    if (rc != DYNRAG_OK)
        return rc;
    fixed_router *f = dr_calloc(1, sizeof *f);
    if (f == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    f->base.vt = &fixed_vt;
    f->option = opt;
    *out = &f->base;
    return DYNRAG_OK;
}
