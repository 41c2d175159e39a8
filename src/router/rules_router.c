/*
 * rules_router.c - the first rule whose conditions all hold picks the option.
 *
 * params: {rules: [{when: {...}, option}], default}. A `when` may hold
 * min_words, max_words, min_entities, max_entities (integers, inclusive),
 * question_words (the query's first question word is one of these),
 * has_comparison, has_conjunction (booleans that must equal the feature)
 * and regex (POSIX ERE, case-insensitive, searched anywhere in the query).
 * An empty `when` always matches.
 */
#include "router/router_impl.h"
#include "core/alloc.h"

#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>

typedef struct rule {
    int option;
    int min_words, max_words, min_entities, max_entities; /* -1: unset */
    int has_comparison, has_conjunction;                  /* -1 unset, 0/1 */
    char **qwords;
    size_t n_qwords;
    char *regex_src;
    regex_t regex;
    bool has_regex;
} rule;

typedef struct rules_router {
    dr_router base;
    rule *rules;
    size_t n_rules;
    int dflt;
} rules_router;

static void rules_free(dr_router *r)
{
    rules_router *rr = (rules_router *)r;
    if (rr == NULL)
        return;
    for (size_t i = 0; i < rr->n_rules; i++) {
        rule *ru = &rr->rules[i];
        for (size_t j = 0; j < ru->n_qwords; j++)
            dr_free(ru->qwords[j]);
        dr_free(ru->qwords);
        if (ru->has_regex)
            regfree(&ru->regex);
        dr_free(ru->regex_src);
    }
    dr_free(rr->rules);
    dr_free(rr);
}

/* Appends "name" (joined with ", ") to a condition list in buf. */
static void cond_add(char *buf, size_t size, const char *fmt, ...) DR_PRINTF(3, 4);
static void cond_add(char *buf, size_t size, const char *fmt, ...)
{
    size_t len = strlen(buf);
    if (len + 3 >= size)
        return;
    if (len > 0) {
        memcpy(buf + len, ", ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, size - len, fmt, ap);
    va_end(ap);
}

/* True when every condition of ru holds; `why` lists them. */
static bool rule_matches(const rule *ru, const dr_route_ctx *ctx, const dr_query_features *f,
                         char *why, size_t why_len)
{
    why[0] = '\0';
    if (ru->min_words >= 0) {
        if (f->n_words < ru->min_words)
            return false;
        cond_add(why, why_len, "n_words>=%d", ru->min_words);
    }
    if (ru->max_words >= 0) {
        if (f->n_words > ru->max_words)
            return false;
        cond_add(why, why_len, "n_words<=%d", ru->max_words);
    }
    if (ru->min_entities >= 0) {
        if (f->n_entities < ru->min_entities)
            return false;
        cond_add(why, why_len, "n_entities>=%d", ru->min_entities);
    }
    if (ru->max_entities >= 0) {
        if (f->n_entities > ru->max_entities)
            return false;
        cond_add(why, why_len, "n_entities<=%d", ru->max_entities);
    }
    if (ru->n_qwords > 0) {
        bool hit = false;
        for (size_t i = 0; i < ru->n_qwords && !hit; i++)
            hit = strcmp(ru->qwords[i], f->first_qword) == 0;
        if (!hit)
            return false;
        cond_add(why, why_len, "question_word=%s", f->first_qword);
    }
    if (ru->has_comparison >= 0) {
        if (f->has_comparison != (ru->has_comparison == 1))
            return false;
        cond_add(why, why_len, "has_comparison=%s", f->has_comparison ? "true" : "false");
    }
    if (ru->has_conjunction >= 0) {
        if (f->has_conjunction != (ru->has_conjunction == 1))
            return false;
        cond_add(why, why_len, "has_conjunction=%s", f->has_conjunction ? "true" : "false");
    }
    if (ru->has_regex) {
        if (regexec(&ru->regex, ctx->query != NULL ? ctx->query : "", 0, NULL, 0) != 0)
            return false;
        cond_add(why, why_len, "regex /%s/", ru->regex_src);
    }
    if (why[0] == '\0')
        dr_strlcpy(why, "always", why_len);
    return true;
}

/*
 * Evaluates every rule (for the scores: 1 for an option some matching rule
 * names, 0 for an option only non-matching rules name; the default gets 1
 * when nothing matched) and picks the first matching rule whose option is
 * available; then the default; then any available option.
 */
static int rules_route(dr_router *r, const dr_route_ctx *ctx, dr_route_decision *out,
                       dynrag_error *err)
{
    const rules_router *rr = (const rules_router *)r;
    const dr_stage *st = r->stage;
    dr_query_features local;
    const dr_query_features *f = ctx->features;
    if (f == NULL) {
        dr_query_features_compute(ctx->query, &local);
        f = &local;
    }
    dr_route_decision_reset(out);
    int first = -1, first_unavail = -1;
    char why[200];
    for (size_t i = 0; i < rr->n_rules; i++) {
        const rule *ru = &rr->rules[i];
        char w[200];
        bool m = rule_matches(ru, ctx, f, w, sizeof w);
        if (m)
            out->scores[ru->option] = 1.0;
        else if (isnan(out->scores[ru->option]))
            out->scores[ru->option] = 0.0;
        if (!m || first >= 0)
            continue;
        if (dr_route_ok(ctx, st, ru->option)) {
            first = (int)i;
            dr_strlcpy(why, w, sizeof why);
        } else if (first_unavail < 0) {
            first_unavail = (int)i;
        }
    }
    if (first_unavail >= 0 && (first < 0 || first_unavail < first))
        snprintf(out->reason, sizeof out->reason, "rule %d matched but %s unavailable; ",
                 first_unavail, st->options[rr->rules[first_unavail].option].name);
    if (first >= 0) {
        out->option = rr->rules[first].option;
        dr_route_reason_append(out, "rule %d matched: %s", first, why);
        return DYNRAG_OK;
    }
    if (first_unavail < 0)
        out->scores[rr->dflt] = 1.0;
    out->option = rr->dflt;
    dr_route_reason_append(out, "%s: default %s",
                           first_unavail < 0 ? "no rule matched" : "no available rule matched",
                           st->options[rr->dflt].name);
    return dr_route_ensure_available(ctx, st, out, err);
}

static const dr_router_vtable rules_vt = {rules_route, dr_router_feedback_none,
                                          dr_router_save_none, rules_free};

/* Reads an optional non-negative integer condition; -1 when absent. */
static int read_count(const cJSON *when, const char *key, int *out, const char *stage, size_t i,
                      dynrag_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(when, key);
    *out = -1;
    if (v == NULL)
        return DYNRAG_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > 1e9 ||
        v->valuedouble != floor(v->valuedouble))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.rules[%zu].when.%s: expected an integer >= 0", stage,
                          i, key);
    *out = (int)v->valuedouble;
    return DYNRAG_OK;
}

static int read_flag(const cJSON *when, const char *key, int *out, const char *stage, size_t i,
                     dynrag_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(when, key);
    *out = -1;
    if (v == NULL)
        return DYNRAG_OK;
    if (!cJSON_IsBool(v))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.rules[%zu].when.%s: expected true or false", stage, i,
                          key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return DYNRAG_OK;
}

static int parse_rule(const dr_stage *stage, const cJSON *item, size_t i, rule *ru,
                      dynrag_error *err)
{
    const char *sn = dr_stage_name(stage->id);
    if (!cJSON_IsObject(item))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.rules[%zu]: expected a map",
                          sn, i);
    const cJSON *opt = cJSON_GetObjectItemCaseSensitive(item, "option");
    if (!cJSON_IsString(opt))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.rules[%zu].option: expected an option name", sn, i);
    ru->option = dr_stage_find_option(stage, opt->valuestring);
    if (ru->option < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.rules[%zu].option: no option named '%s'", sn, i,
                          opt->valuestring);
    const cJSON *when = cJSON_GetObjectItemCaseSensitive(item, "when");
    if (when != NULL && !cJSON_IsObject(when))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "stages.%s.router.rules[%zu].when: expected a map", sn, i);
    int rc;
    if ((rc = read_count(when, "min_words", &ru->min_words, sn, i, err)) != DYNRAG_OK ||
        (rc = read_count(when, "max_words", &ru->max_words, sn, i, err)) != DYNRAG_OK ||
        (rc = read_count(when, "min_entities", &ru->min_entities, sn, i, err)) != DYNRAG_OK ||
        (rc = read_count(when, "max_entities", &ru->max_entities, sn, i, err)) != DYNRAG_OK ||
        (rc = read_flag(when, "has_comparison", &ru->has_comparison, sn, i, err)) !=
            DYNRAG_OK ||
        (rc = read_flag(when, "has_conjunction", &ru->has_conjunction, sn, i, err)) != DYNRAG_OK)
        return rc;
    const cJSON *qw = cJSON_GetObjectItemCaseSensitive(when, "question_words");
    if (qw != NULL) {
        if (!cJSON_IsArray(qw))
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "stages.%s.router.rules[%zu].when.question_words: expected a list",
                              sn, i);
        size_t n = (size_t)cJSON_GetArraySize(qw);
        ru->qwords = dr_calloc(n > 0 ? n : 1, sizeof *ru->qwords);
        if (ru->qwords == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        const cJSON *w;
        cJSON_ArrayForEach(w, qw)
        {
            if (!cJSON_IsString(w))
                return dr_err_set(
                    err, DYNRAG_ERR_INVALID,
                    "stages.%s.router.rules[%zu].when.question_words: expected strings", sn, i);
            char *low = dr_strdup(w->valuestring);
            if (low == NULL)
                return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            for (char *c = low; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c = (char)(*c + 32);
            ru->qwords[ru->n_qwords++] = low;
        }
    }
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(when, "regex");
    if (re != NULL) {
        if (!cJSON_IsString(re))
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "stages.%s.router.rules[%zu].when.regex: expected a string", sn, i);
        size_t at = 0;
        if (!dr_regex_is_regular(re->valuestring, &at))
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "stages.%s.router.rules[%zu].when.regex: back-reference '%.2s' at "
                              "character %zu is not supported (exponential matching time)",
                              sn, i, re->valuestring + at, at + 1);
        int rrc = regcomp(&ru->regex, re->valuestring, REG_EXTENDED | REG_ICASE | REG_NOSUB);
        if (rrc != 0) {
            char msg[128];
            regerror(rrc, &ru->regex, msg, sizeof msg);
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "stages.%s.router.rules[%zu].when.regex: bad regex '%s': %s", sn, i,
                              re->valuestring, msg);
        }
        ru->has_regex = true;
        ru->regex_src = dr_strdup(re->valuestring);
        if (ru->regex_src == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    return DYNRAG_OK;
}

int dr_router_create_rules(const dynrag_pipeline *p, const dr_stage *stage, dr_router **out,
                           dynrag_error *err)
{
    const cJSON *params = stage->router.params;
    const char *sn = dr_stage_name(stage->id);
    rules_router *rr = dr_calloc(1, sizeof *rr);
    if (rr == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    rr->base.vt = &rules_vt;
    rr->base.stage = stage;
    int rc = dr_router_option_param(stage, "default", 0, &rr->dflt, err);
    if (rc != DYNRAG_OK)
        goto cleanup;
    const cJSON *rules = cJSON_GetObjectItemCaseSensitive(params, "rules");
    if (rules != NULL && !cJSON_IsArray(rules)) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "stages.%s.router.rules: expected a list", sn);
        goto cleanup;
    }
    size_t n = rules != NULL ? (size_t)cJSON_GetArraySize(rules) : 0;
    rr->rules = dr_calloc(n > 0 ? n : 1, sizeof *rr->rules);
    if (rr->rules == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, rules)
    {
        rc = parse_rule(stage, item, rr->n_rules, &rr->rules[rr->n_rules], err);
        rr->n_rules++; /* parse_rule leaves what it allocated freeable */
        if (rc != DYNRAG_OK)
            goto cleanup;
    }
    *out = &rr->base;
    return DYNRAG_OK;
cleanup:
    rules_free(&rr->base);
    return rc;
}
