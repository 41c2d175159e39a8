/*
 * replay.c - offline evaluation of logged routing decisions against a saved
 * outcome table (OUT/outcomes.jsonl of a live run, or any table in that
 * format).
 */
#include "dynrag/eval.h"

#include "core/util.h"
#include "eval/eval_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A route-log line longer than this is not one (records are kilobytes). */
#define REPLAY_MAX_LINE (64 << 20)

#define TABLE_MAX_BYTES ((size_t)1 << 30)

/* Index of s in arr[0..n), or -1. */
static int find_str(char *const *arr, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(arr[i], s) == 0)
            return (int)i;
    return -1;
}

/* Appends s to a growable string array unless present; returns its index. */
static int intern(char ***arr, size_t *n, size_t *cap, const char *s)
{
    int i = find_str(*arr, *n, s);
    if (i >= 0)
        return i;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        char **na = dr_realloc(*arr, nc * sizeof *na);
        if (na == NULL)
            return -1;
        *arr = na;
        *cap = nc;
    }
    if (((*arr)[*n] = dr_strdup(s)) == NULL)
        return -1;
    return (int)(*n)++;
}

typedef struct line_ref {
    cJSON *json;
    size_t lineno;
} line_ref;

/*
 * The quality metric the lines' format calls for: ndcg@10 when a line says
 * "format": "beir", or, with no line naming a format, when some line's
 * metrics hold ndcg@10 and none holds f1 (a BEIR retrieval table); else f1.
 */
static dr_eval_slot table_format(const line_ref *lines, size_t n)
{
    bool named = false, beir = false, has_ndcg = false, has_f1 = false;
    const char *ndcg = dr_eval_slot_key(DR_SLOT_NDCG10);
    const char *f1 = dr_eval_slot_key(DR_SLOT_F1);
    for (size_t i = 0; i < n; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(lines[i].json, "format");
        if (cJSON_IsString(f)) {
            named = true;
            beir = beir || strcmp(f->valuestring, "beir") == 0;
        }
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(lines[i].json, "metrics");
        has_ndcg = has_ndcg || cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m, ndcg));
        has_f1 = has_f1 || cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m, f1));
    }
    if (!named)
        beir = has_ndcg && !has_f1;
    return beir ? DR_SLOT_NDCG10 : DR_SLOT_F1;
}

int dynrag_eval_table_load(const char *path, const char *stage,
                           const dynrag_eval_compare_options *opt, dynrag_eval_table **out,
                           dynrag_error *err)
{
    *out = NULL;
    char *text = NULL, *want = NULL, *router = NULL;
    size_t len = 0, nl = 0, capl = 0, nq = 0, capq = 0, no = 0, capo = 0;
    char **qids = NULL, **opts = NULL;
    line_ref *lines = NULL;
    /* The slots the top-level "quality" and "cost" numbers fill; quality
     * DYNRAG_METRIC_DEFAULT waits for the table's format. */
    bool q_default = opt == NULL || opt->quality.metric == DYNRAG_METRIC_DEFAULT;
    dr_eval_slot qm = DR_SLOT_F1, cm = DR_SLOT_LATENCY;
    int rc = DYNRAG_OK;
    if (!q_default)
        rc = dr_eval_slot_of(opt->quality, "eval: quality", &qm, err);
    if (rc == DYNRAG_OK && opt != NULL)
        rc = dr_eval_slot_of(opt->cost, "eval: cost", &cm, err);
    if (rc != DYNRAG_OK)
        return rc;
    rc = dr_read_file(path, TABLE_MAX_BYTES, &text, &len, err);
    if (rc != DYNRAG_OK)
        return rc;
    want = dr_strdup(stage);
    size_t lineno = 0;
    for (char *l = text; l < text + len;) {
        char *e = memchr(l, '\n', (size_t)(text + len - l));
        char *end = e ? e : text + len;
        char *s = l;
        l = e ? e + 1 : text + len;
        lineno++;
        while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++;
        if (s == end)
            continue;
        cJSON *o = cJSON_ParseWithLength(s, (size_t)(end - s));
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "stage");
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(o, "query_id");
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "query");
        const cJSON *op = cJSON_GetObjectItemCaseSensitive(o, "option");
        if (!cJSON_IsObject(o) || !cJSON_IsString(st) || !cJSON_IsString(op) ||
            !(cJSON_IsString(qid) || cJSON_IsString(q))) {
            cJSON_Delete(o);
            rc = dr_err_set(err, DYNRAG_ERR_PARSE,
                            "%s:%zu: expected {\"stage\", \"query_id\" or \"query\", \"option\", "
                            "\"metrics\" or \"quality\"/\"cost\"}",
                            path, lineno);
            goto cleanup;
        }
        if (want == NULL && (want = dr_strdup(st->valuestring)) == NULL) {
            cJSON_Delete(o);
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        if (strcmp(st->valuestring, want) != 0) {
            cJSON_Delete(o);
            continue;
        }
        const cJSON *rt = cJSON_GetObjectItemCaseSensitive(o, "router");
        if (router == NULL && cJSON_IsString(rt))
            router = dr_strdup(rt->valuestring);
        const char *key = cJSON_IsString(qid) ? qid->valuestring : q->valuestring;
        if (intern(&qids, &nq, &capq, key) < 0 || intern(&opts, &no, &capo, op->valuestring) < 0) {
            cJSON_Delete(o);
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        if (nl == capl) {
            size_t nc = capl ? capl * 2 : 256;
            line_ref *nlr = dr_realloc(lines, nc * sizeof *nlr);
            if (nlr == NULL) {
                cJSON_Delete(o);
                rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
                goto cleanup;
            }
            lines = nlr;
            capl = nc;
        }
        lines[nl].json = o;
        lines[nl++].lineno = lineno;
    }
    if (nl == 0) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "%s: no outcomes%s%s", path,
                        stage ? " for stage " : "", stage ? stage : "");
        goto cleanup;
    }
    if (no > 16) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "%s: stage %s has %zu options (at most 16)", path,
                        want, no);
        goto cleanup;
    }
    dynrag_eval_table *t = NULL;
    if ((rc = dynrag_eval_table_new(want, router ? router : "", nq, no, &t, err)) != DYNRAG_OK)
        goto cleanup;
    for (size_t i = 0; i < nq; i++) {
        t->query_ids[i] = qids[i];
        qids[i] = NULL;
    }
    for (size_t i = 0; i < no; i++) {
        t->options[i] = opts[i];
        opts[i] = NULL;
    }
    t->cascade = router && strcmp(router, "cascade") == 0;
    dr_eval_slot format_quality = table_format(lines, nl);
    t->default_quality = dr_eval_slot_metric(format_quality);
    if (q_default)
        qm = format_quality;
    for (size_t i = 0; i < nl; i++) {
        cJSON *o = lines[i].json;
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(o, "query_id");
        if (!cJSON_IsString(qid))
            qid = cJSON_GetObjectItemCaseSensitive(o, "query");
        int qi = find_str(t->query_ids, nq, qid->valuestring);
        int oi = dynrag_eval_table_option(t, cJSON_GetObjectItemCaseSensitive(o, "option")->valuestring);
        dynrag_eval_outcome *x = &t->cells[(size_t)qi * no + (size_t)oi];
        dynrag_eval_outcome_init(x);
        const cJSON *okj = cJSON_GetObjectItemCaseSensitive(o, "ok");
        x->ok = okj == NULL || cJSON_IsTrue(okj);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "metrics");
        for (int k = 0; k < DR_EVAL_N_SLOTS; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, dr_eval_slot_key((dr_eval_slot)k));
            if (cJSON_IsNumber(v))
                x->slots[k] = v->valuedouble;
        }
        const cJSON *qv = cJSON_GetObjectItemCaseSensitive(o, "quality");
        const cJSON *cv = cJSON_GetObjectItemCaseSensitive(o, "cost");
        const cJSON *cf = cJSON_GetObjectItemCaseSensitive(o, "confidence");
        if (cJSON_IsNumber(qv))
            x->slots[qm] = qv->valuedouble;
        if (cJSON_IsNumber(cv))
            x->slots[cm] = cv->valuedouble;
        if (cJSON_IsNumber(cf))
            x->confidence = cf->valuedouble;
        if (m == NULL && !cJSON_IsNumber(qv)) {
            dynrag_eval_table_free(t);
            rc = dr_err_set(err, DYNRAG_ERR_PARSE, "%s:%zu: no \"metrics\" object or \"quality\"",
                            path, lines[i].lineno);
            goto cleanup;
        }
    }
    *out = t;
cleanup:
    for (size_t i = 0; i < nl; i++)
        cJSON_Delete(lines[i].json);
    dr_free(lines);
    for (size_t i = 0; i < nq; i++)
        dr_free(qids[i]);
    dr_free(qids);
    for (size_t i = 0; i < no; i++)
        dr_free(opts[i]);
    dr_free(opts);
    dr_free(text);
    dr_free(want);
    dr_free(router);
    return rc;
}

int dynrag_eval_replay(const char *log_path, const char *outcomes_path, const char *stage,
                       const dynrag_eval_compare_options *opt_in, dynrag_eval_table **table,
                       dynrag_eval_comparison *out, dynrag_error *err)
{
    memset(out, 0, sizeof(*out));
    if (table)
        *table = NULL;
    dynrag_eval_table *t = NULL;
    FILE *f = NULL;
    char *line = NULL;
    size_t cap = 0, matched = 0, lineno = 0;
    int rc = dynrag_eval_table_load(outcomes_path, stage, opt_in, &t, err);
    if (rc != DYNRAG_OK)
        return rc;
    if ((f = fopen(log_path, "r")) == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOTFOUND, "%s: cannot open the route log", log_path);
        goto cleanup;
    }
    long long n;
    while ((n = dr_getline(&line, &cap, f, REPLAY_MAX_LINE)) > 0) {
        lineno++;
        cJSON *rec = cJSON_ParseWithLength(line, (size_t)n);
        if (rec == NULL) {
            if (strspn(line, " \t\r\n") != (size_t)n) {
                rc = dr_err_set(err, DYNRAG_ERR_PARSE, "%s:%zu: invalid JSON", log_path, lineno);
                goto cleanup;
            }
            continue;
        }
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(rec, "id");
        const cJSON *qt = cJSON_GetObjectItemCaseSensitive(rec, "query");
        int qi = -1;
        for (size_t q = 0; q < t->n_queries && qi < 0; q++)
            if ((cJSON_IsString(id) && strcmp(t->query_ids[q], id->valuestring) == 0) ||
                (cJSON_IsString(qt) && strcmp(t->query_ids[q], qt->valuestring) == 0))
                qi = (int)q;
        const cJSON *st, *found = NULL;
        cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(rec, "stages"))
        {
            const cJSON *sn = cJSON_GetObjectItemCaseSensitive(st, "stage");
            if (cJSON_IsString(sn) && strcmp(sn->valuestring, t->stage) == 0)
                found = st;
        }
        if (qi >= 0 && found) {
            const cJSON *ch = cJSON_GetObjectItemCaseSensitive(found, "choice");
            const cJSON *rt = cJSON_GetObjectItemCaseSensitive(found, "router");
            if (t->router_type[0] == '\0' && cJSON_IsString(rt)) {
                dr_free(t->router_type);
                t->router_type = dr_strdup(rt->valuestring);
                t->cascade = strcmp(rt->valuestring, "cascade") == 0;
            }
            int c = cJSON_IsString(ch) ? dynrag_eval_table_option(t, ch->valuestring) : -1;
            t->router_choice[qi] = c;
            t->router_first[qi] = c;
            const cJSON *a;
            cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(rec, "cascade"))
            {
                const cJSON *as = cJSON_GetObjectItemCaseSensitive(a, "stage");
                const cJSON *ao = cJSON_GetObjectItemCaseSensitive(a, "option");
                if (cJSON_IsString(as) && cJSON_IsString(ao) && strcmp(as->valuestring, t->stage) == 0) {
                    t->router_first[qi] = dynrag_eval_table_option(t, ao->valuestring);
                    break;
                }
            }
            const cJSON *un;
            cJSON_ArrayForEach(un, cJSON_GetObjectItemCaseSensitive(found, "unavailable"))
            {
                int oi = un->string ? dynrag_eval_table_option(t, un->string) : -1;
                if (oi >= 0 && oi < DYNRAG_MAX_OPTIONS)
                    t->router_unavailable[qi] |= (uint32_t)1 << oi;
            }
            const cJSON *sc = cJSON_GetObjectItemCaseSensitive(found, "scores");
            for (size_t o = 0; o < t->n_options; o++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(sc, t->options[o]);
                t->router_scores[(size_t)qi * t->n_options + o] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
            }
            matched++;
        }
        cJSON_Delete(rec);
    }
    if (n == DR_LINE_TOO_LONG || n == DR_LINE_NOMEM) {
        rc = n == DR_LINE_NOMEM ? dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory")
                                : dr_err_set(err, DYNRAG_ERR_LIMIT,
                                             "%s:%zu: a line longer than %d MiB: not a route log",
                                             log_path, lineno + 1, REPLAY_MAX_LINE >> 20);
        goto cleanup;
    }
    if (matched == 0) {
        rc = dr_err_set(err, DYNRAG_ERR_NOTFOUND,
                        "%s: no record matches a query of %s (by \"id\" or \"query\") with a "
                        "decision for stage %s",
                        log_path, outcomes_path, t->stage);
        goto cleanup;
    }
    dynrag_eval_compare_options opt;
    if (opt_in != NULL) {
        opt = *opt_in;
    } else {
        dynrag_eval_compare_options_init(&opt);
        opt.quality.metric = DYNRAG_METRIC_DEFAULT;
        opt.quality.k = 0;
    }
    if (opt.quality.metric == DYNRAG_METRIC_DEFAULT)
        opt.quality = t->default_quality;
    if (opt.sweep == DYNRAG_EVAL_SWEEP_NONE) {
        if (strcmp(t->router_type, "classifier") == 0) {
            opt.sweep = DYNRAG_EVAL_SWEEP_CLASSIFIER;
            opt.escalate = (int)t->n_options - 1;
        } else if (strcmp(t->router_type, "cascade") == 0) {
            opt.sweep = DYNRAG_EVAL_SWEEP_CASCADE;
        }
    }
    rc = dynrag_eval_compare(t, &opt, out, err);
cleanup:
    if (f)
        fclose(f);
    dr_free(line);
    if (rc == DYNRAG_OK && table)
        *table = t;
    else
        dynrag_eval_table_free(t);
    return rc;
}
