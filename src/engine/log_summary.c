/* log_summary.c - `dynrag log summary`: route mix, cascade escalations,
 * fallbacks and cost totals of a route log. */
#include "core/util.h"
#include "dynrag/engine.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define MAX_STAGES 16
#define MAX_CHOICES 32
#define LINE_MAX_BYTES (16u << 20)

typedef struct choice_count {
    char name[64];
    long long n;
} choice_count;

typedef struct stage_count {
    char name[32];
    choice_count c[MAX_CHOICES];
    size_t n_c;
    long long skipped;
    double latency_us;
    /* cascades: judged attempts, escalations, queries escalated at least
     * once, and escalations counted by "from -> to" */
    long long attempts, escalations, escalated_queries;
    choice_count esc[MAX_CHOICES];
    size_t n_esc;
    /* fallbacks: failed options replaced, counted by "failed -> taken" */
    long long fallbacks;
    choice_count fb[MAX_CHOICES];
    size_t n_fb;
} stage_count;

typedef struct summary {
    long long records, errors, bad_lines, over_budget, unanswerable;
    long long first_bad_line;
    double usd, latency_ms, energy_wh, in_tok, out_tok, gen_calls, steps;
    stage_count st[MAX_STAGES];
    size_t n_st;
} summary;

/* Names from the log are counted and shown as dr_display_copy() makes them
 * (printable UTF-8, cut to the slot): a log cannot drive the terminal or
 * break the JSON, and a long name matches its own shortened copy. */
static stage_count *stage_slot(summary *s, const char *name)
{
    char shown[sizeof(s->st[0].name)];
    dr_display_copy(shown, sizeof(shown), name);
    for (size_t i = 0; i < s->n_st; i++)
        if (strcmp(s->st[i].name, shown) == 0)
            return &s->st[i];
    if (s->n_st == MAX_STAGES)
        return NULL;
    stage_count *c = &s->st[s->n_st++];
    memset(c, 0, sizeof(*c));
    memcpy(c->name, shown, sizeof(shown));
    return c;
}

/* Counts one occurrence of `name` in c[0..*n) (a new slot while there is
 * room; beyond MAX_CHOICES names the rest go uncounted by name). */
static void count_name(choice_count *c, size_t *n, const char *name)
{
    char shown[sizeof(c[0].name)];
    dr_display_copy(shown, sizeof(shown), name);
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(c[i].name, shown) == 0) {
            c[i].n++;
            return;
        }
    }
    if (*n == MAX_CHOICES)
        return;
    memcpy(c[*n].name, shown, sizeof(shown));
    c[(*n)++].n = 1;
}

/* "from -> to" with each side shown by dr_display_copy() (at most 28 bytes). */
static void name_pair(char *out, size_t size, const char *from, const char *to)
{
    char a[29], b[29];
    snprintf(out, size, "%s -> %s", dr_display_copy(a, sizeof(a), from),
             dr_display_copy(b, sizeof(b), to));
}

static void count_choice(stage_count *sc, const char *choice)
{
    count_name(sc->c, &sc->n_c, choice);
}

static const char *str_or(const cJSON *o, const char *k, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

/*
 * Counts a record's cascade attempts per stage: an attempt marked
 * "escalated" escalates to the next attempt of the same stage (or, when the
 * log has none, to the stage's final choice).
 */
static void add_cascade(summary *s, const cJSON *r)
{
    const cJSON *cas = cJSON_GetObjectItemCaseSensitive(r, "cascade");
    bool escalated_here[MAX_STAGES] = {false};
    for (const cJSON *a = cJSON_IsArray(cas) ? cas->child : NULL; a != NULL; a = a->next) {
        const char *stage = str_or(a, "stage", NULL);
        stage_count *sc = stage ? stage_slot(s, stage) : NULL;
        if (sc == NULL)
            continue;
        sc->attempts++;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "escalated")))
            continue;
        const char *to = NULL;
        for (const cJSON *b = a->next; b != NULL && to == NULL; b = b->next)
            if (strcmp(str_or(b, "stage", ""), stage) == 0)
                to = str_or(b, "option", NULL);
        if (to == NULL) {
            const cJSON *d;
            cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(r, "stages"))
                if (strcmp(str_or(d, "stage", ""), stage) == 0)
                    to = str_or(d, "choice", NULL);
        }
        char pair[64];
        name_pair(pair, sizeof(pair), str_or(a, "option", "?"), to ? to : "?");
        sc->escalations++;
        count_name(sc->esc, &sc->n_esc, pair);
        size_t slot = (size_t)(sc - s->st);
        if (!escalated_here[slot]) {
            escalated_here[slot] = true;
            sc->escalated_queries++;
        }
    }
}

/*
 * Counts a record's fallbacks per stage: its "fallbacks" entries ({stage,
 * failed, took}); a record without them (older logs) by the stage reasons
 * that say "fallback to 'x'" (the failed option then unknown, "?").
 */
static void add_fallbacks(summary *s, const cJSON *r)
{
    const cJSON *fbs = cJSON_GetObjectItemCaseSensitive(r, "fallbacks");
    char pair[64];
    if (cJSON_IsArray(fbs)) {
        const cJSON *f;
        cJSON_ArrayForEach(f, fbs)
        {
            const char *stage = str_or(f, "stage", NULL);
            stage_count *sc = stage ? stage_slot(s, stage) : NULL;
            if (sc == NULL)
                continue;
            name_pair(pair, sizeof(pair), str_or(f, "failed", "?"), str_or(f, "took", "?"));
            sc->fallbacks++;
            count_name(sc->fb, &sc->n_fb, pair);
        }
        return;
    }
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(r, "stages"))
    {
        const char *stage = str_or(d, "stage", NULL);
        const char *why = str_or(d, "reason", "");
        const char *at = strstr(why, "fallback to '");
        stage_count *sc = stage && at ? stage_slot(s, stage) : NULL;
        if (sc == NULL)
            continue;
        at += strlen("fallback to '");
        const char *end = strchr(at, '\'');
        char took[64];
        size_t len = end ? (size_t)(end - at) : strlen(at);
        snprintf(took, sizeof(took), "%.*s", (int)DR_MIN(len, sizeof(took) - 1), at);
        name_pair(pair, sizeof(pair), "?", took);
        sc->fallbacks++;
        count_name(sc->fb, &sc->n_fb, pair);
    }
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void add_record(summary *s, const cJSON *r)
{
    s->records++;
    if (cJSON_GetObjectItemCaseSensitive(r, "error"))
        s->errors++;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "unanswerable")))
        s->unanswerable++;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "totals");
    if (cJSON_IsObject(t)) {
        s->usd += num(t, "usd");
        s->latency_ms += num(t, "latency_ms");
        s->energy_wh += num(t, "energy_wh");
        s->in_tok += num(t, "input_tokens");
        s->out_tok += num(t, "output_tokens");
        s->gen_calls += num(t, "generator_calls");
        s->steps += num(t, "retrieval_steps");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "over_budget")))
            s->over_budget++;
    }
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(r, "stages");
    const cJSON *d;
    cJSON_ArrayForEach(d, stages)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(d, "stage");
        if (!cJSON_IsString(name))
            continue;
        stage_count *sc = stage_slot(s, name->valuestring);
        if (sc == NULL)
            continue;
        const cJSON *choice = cJSON_GetObjectItemCaseSensitive(d, "choice");
        if (cJSON_IsString(choice))
            count_choice(sc, choice->valuestring);
        else
            sc->skipped++;
        sc->latency_us += num(d, "latency_us");
    }
    add_cascade(s, r);
    add_fallbacks(s, r);
}

/* Appends " a -> b n, c -> d m" for the counted pairs to b and each pair as
 * a key of o. */
static void render_pairs(dr_buf *b, cJSON *o, const choice_count *c, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        dr_buf_printf(b, "%s%s %lld", j ? ", " : "; ", c[j].name, c[j].n);
        cJSON_AddNumberToObject(o, c[j].name, (double)c[j].n);
    }
}

static int render(const summary *s, const char *path, char **report, char **json)
{
    dr_buf b = {0};
    double n = s->records ? (double)s->records : 1;
    char *shown = dr_malloc(strlen(path) + 1); /* a display copy is never longer */
    if (shown == NULL)
        return DYNRAG_ERR_NOMEM;
    dr_buf_printf(&b, "route log %s: %lld queries, %lld failed, %lld unanswerable, %lld over budget",
                  dr_display_copy(shown, strlen(path) + 1, path), s->records, s->errors,
                  s->unanswerable, s->over_budget);
    dr_free(shown);
    if (s->bad_lines)
        dr_buf_printf(&b, ", %lld malformed lines (first at line %lld)", s->bad_lines,
                      s->first_bad_line);
    dr_buf_puts(&b, "\n\nroute mix per stage:\n");
    cJSON *js = cJSON_CreateObject();
    cJSON *jst = cJSON_AddObjectToObject(js, "stages");
    for (size_t i = 0; i < s->n_st; i++) {
        const stage_count *sc = &s->st[i];
        long long tot = sc->skipped;
        for (size_t j = 0; j < sc->n_c; j++)
            tot += sc->c[j].n;
        if (tot == 0)
            continue; /* named only by cascade attempts or fallbacks */
        dr_buf_printf(&b, "  %-15s", sc->name);
        cJSON *o = cJSON_AddObjectToObject(jst, sc->name);
        for (size_t j = 0; j < sc->n_c; j++) {
            dr_buf_printf(&b, " %s %lld (%.1f%%)", sc->c[j].name, sc->c[j].n,
                          tot ? 100.0 * (double)sc->c[j].n / (double)tot : 0.0);
            cJSON_AddNumberToObject(o, sc->c[j].name, (double)sc->c[j].n);
        }
        if (sc->skipped) {
            dr_buf_printf(&b, " skipped %lld", sc->skipped);
            cJSON_AddNumberToObject(o, "(skipped)", (double)sc->skipped);
        }
        dr_buf_printf(&b, "   mean %.0f us\n", sc->latency_us / n);
    }
    cJSON *jcas = cJSON_AddObjectToObject(js, "cascades");
    cJSON *jfb = cJSON_AddObjectToObject(js, "fallbacks");
    bool any = false;
    for (size_t i = 0; i < s->n_st; i++) {
        const stage_count *sc = &s->st[i];
        if (sc->attempts == 0)
            continue;
        if (!any)
            dr_buf_puts(&b, "\ncascades (escalations per stage):\n");
        any = true;
        dr_buf_printf(&b, "  %-15s %lld attempts, %lld escalations (%.1f%% of attempts) in %lld "
                          "queries",
                      sc->name, sc->attempts, sc->escalations,
                      100.0 * (double)sc->escalations / (double)sc->attempts,
                      sc->escalated_queries);
        cJSON *o = cJSON_AddObjectToObject(jcas, sc->name);
        cJSON_AddNumberToObject(o, "attempts", (double)sc->attempts);
        cJSON_AddNumberToObject(o, "escalations", (double)sc->escalations);
        cJSON_AddNumberToObject(o, "queries_escalated", (double)sc->escalated_queries);
        render_pairs(&b, cJSON_AddObjectToObject(o, "escalated"), sc->esc, sc->n_esc);
        dr_buf_putc(&b, '\n');
    }
    any = false;
    for (size_t i = 0; i < s->n_st; i++) {
        const stage_count *sc = &s->st[i];
        if (sc->fallbacks == 0)
            continue;
        if (!any)
            dr_buf_puts(&b, "\nfallbacks per stage (failed -> taken):\n");
        any = true;
        dr_buf_printf(&b, "  %-15s %lld", sc->name, sc->fallbacks);
        cJSON *o = cJSON_AddObjectToObject(jfb, sc->name);
        cJSON_AddNumberToObject(o, "count", (double)sc->fallbacks);
        render_pairs(&b, cJSON_AddObjectToObject(o, "taken"), sc->fb, sc->n_fb);
        dr_buf_putc(&b, '\n');
    }
    dr_buf_printf(&b,
                  "\ntotals: $%.6f (mean $%.6f/query), latency %.1f ms (mean %.2f ms), energy %.4f "
                  "Wh, tokens in %.0f out %.0f, generator calls %.0f, retrieval steps %.0f (mean "
                  "%.2f)\n",
                  s->usd, s->usd / n, s->latency_ms, s->latency_ms / n, s->energy_wh, s->in_tok,
                  s->out_tok, s->gen_calls, s->steps, s->steps / n);
    cJSON_AddNumberToObject(js, "queries", (double)s->records);
    cJSON_AddNumberToObject(js, "failed", (double)s->errors);
    cJSON_AddNumberToObject(js, "unanswerable", (double)s->unanswerable);
    cJSON_AddNumberToObject(js, "over_budget", (double)s->over_budget);
    cJSON_AddNumberToObject(js, "malformed_lines", (double)s->bad_lines);
    cJSON_AddNumberToObject(js, "usd", s->usd);
    cJSON_AddNumberToObject(js, "latency_ms", s->latency_ms);
    cJSON_AddNumberToObject(js, "energy_wh", s->energy_wh);
    cJSON_AddNumberToObject(js, "input_tokens", s->in_tok);
    cJSON_AddNumberToObject(js, "output_tokens", s->out_tok);
    cJSON_AddNumberToObject(js, "generator_calls", s->gen_calls);
    cJSON_AddNumberToObject(js, "retrieval_steps", s->steps);
    int rc = DYNRAG_OK;
    *report = dr_buf_take(&b);
    if (*report == NULL)
        rc = DYNRAG_ERR_NOMEM;
    if (json) {
        *json = cJSON_Print(js);
        if (*json == NULL)
            rc = DYNRAG_ERR_NOMEM;
    }
    cJSON_Delete(js);
    return rc;
}

int dynrag_log_summary(const char *path, char **report, char **json, dynrag_error *err)
{
    *report = NULL;
    if (json)
        *json = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOTFOUND, "%s: cannot open", path);
    summary *s = dr_calloc(1, sizeof(*s));
    char *line = NULL;
    size_t cap = 0;
    long long lineno = 0;
    int rc = DYNRAG_OK;
    if (s == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    long long len;
    while ((len = dr_getline(&line, &cap, f, LINE_MAX_BYTES)) >= 0) {
        lineno++;
        if (len == 0 || line[0] == '\n')
            continue;
        cJSON *r = cJSON_ParseWithLength(line, (size_t)len);
        if (!cJSON_IsObject(r)) {
            if (s->bad_lines++ == 0)
                s->first_bad_line = lineno;
            dr_log(DYNRAG_LOG_WARN, "log", "%s:%lld: not a route-log record", path, lineno);
        } else {
            add_record(s, r);
        }
        cJSON_Delete(r);
    }
    if (len == DR_LINE_TOO_LONG || len == DR_LINE_NOMEM) {
        rc = len == DR_LINE_NOMEM
                 ? dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory")
                 : dr_err_set(err, DYNRAG_ERR_LIMIT,
                              "%s:%lld: a line longer than %u MiB: not a route log", path,
                              lineno + 1, LINE_MAX_BYTES >> 20);
        goto cleanup;
    }
    if (ferror(f)) {
        int e = errno;
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: read error: %s", path,
                        e == EISDIR ? "is a directory, expected a route-log file" : strerror(e));
        goto cleanup;
    }
    rc = render(s, path, report, json);
    if (rc != DYNRAG_OK)
        dr_err_set(err, rc, "out of memory");
cleanup:
    dr_free(line);
    dr_free(s);
    fclose(f);
    return rc;
}
