/* scorer.c - the trained answer-scorer judge (see scorer.h). */
#include "router/scorer.h"

#include "core/util.h"
#include "nn/safetensors.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_FEATS 4096   /* features kept per example (the rest are dropped) */
#define MAX_TOKEN 64     /* longer words are cut */
#define MAX_QUERY_WORDS 768
#define MAX_LINE_WORDS 64

struct dr_scorer {
    float *w; /* [DR_SCORER_BUCKETS] */
    double lambda;
    int epochs;
    char **options;
    size_t n_options;
    char *provenance;
};

void dr_scorer_free(dr_scorer *s)
{
    if (s == NULL)
        return;
    dr_free(s->w);
    for (size_t i = 0; i < s->n_options; i++)
        dr_free(s->options[i]);
    dr_free(s->options);
    dr_free(s->provenance);
    dr_free(s);
}

/* ---- features ----------------------------------------------------------------- */

/* One example's sparse features: bucket indices and values. */
typedef struct feats {
    uint32_t idx[MAX_FEATS];
    float val[MAX_FEATS];
    size_t n;
} feats;

/* Namespace seeds. */
enum { NS_A = 1, NS_A2, NS_O, NS_OA, NS_C, NS_OC, NS_S, NS_OS, NS_T, NS_OT, NS_BIAS };

#define TEMPLATE_WORDS 12

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint32_t bucket(int ns, uint64_t h)
{
    return (uint32_t)(mix64(h ^ ((uint64_t)ns * 0x9e3779b97f4a7c15ULL)) & (DR_SCORER_BUCKETS - 1));
}

/* A group of features added with one weight each, scaled afterwards. */
static void group_begin(const feats *f, size_t *start)
{
    *start = f->n;
}

static void add(feats *f, int ns, uint64_t h)
{
    if (f->n < MAX_FEATS) {
        f->idx[f->n] = bucket(ns, h);
        f->val[f->n] = 1.0f;
        f->n++;
    }
}

/* Scales the group's features by 1/sqrt(its size). */
static void group_end(feats *f, size_t start)
{
    size_t k = f->n - start;
    if (k == 0)
        return;
    float s = (float)(1.0 / sqrt((double)k));
    for (size_t i = start; i < f->n; i++)
        f->val[i] = s;
}

static bool word_byte(unsigned char c)
{
    return isalnum(c) || c >= 0x80;
}

/*
 * The words of s[0..n) as hashes into h (at most cap; returns how many),
 * lower-cased, a literal backslash followed by 'n' or 't' (the Python list
 * strings of RouterBench prompts) counting as a separator.
 */
static size_t words(const char *s, size_t n, uint64_t *h, size_t cap)
{
    size_t k = 0, i = 0;
    while (i < n && k < cap) {
        if (s[i] == '\\' && i + 1 < n && (s[i + 1] == 'n' || s[i + 1] == 't')) {
            i += 2;
            continue;
        }
        if (!word_byte((unsigned char)s[i])) {
            i++;
            continue;
        }
        char tok[MAX_TOKEN];
        size_t len = 0;
        while (i < n && word_byte((unsigned char)s[i])) {
            if (len < MAX_TOKEN)
                tok[len++] = (char)tolower((unsigned char)s[i]);
            i++;
        }
        h[k++] = dr_hash64(tok, len, 14);
    }
    return k;
}

/* True when s[i..] starts a line: at the start, after '\n' or after a
 * literal backslash-n. */
static bool line_start(const char *s, size_t i)
{
    return i == 0 || s[i - 1] == '\n' || (i >= 2 && s[i - 2] == '\\' && s[i - 1] == 'n');
}

/* The end of the line starting at s[i] (a '\n', a literal backslash-n or the end). */
static size_t line_end(const char *s, size_t n, size_t i)
{
    while (i < n && s[i] != '\n' && !(s[i] == '\\' && i + 1 < n && s[i + 1] == 'n'))
        i++;
    return i;
}

/*
 * The choice an answer names: its first word when that is one letter or
 * digit, else the word after "answer is" (case-insensitive); '\0' for none.
 */
static char answer_choice(const char *a)
{
    size_t n = strlen(a), i = 0;
    while (i < n && !word_byte((unsigned char)a[i]))
        i++;
    if (i < n && isalnum((unsigned char)a[i]) && (i + 1 >= n || !word_byte((unsigned char)a[i + 1])))
        return (char)toupper((unsigned char)a[i]);
    for (size_t j = 0; j + 10 <= n; j++)
        if (strncasecmp(a + j, "answer is ", 10) == 0) {
            size_t k = j + 10;
            while (k < n && (a[k] == ' ' || a[k] == '(' || a[k] == '"' || a[k] == '\''))
                k++;
            if (k < n && isalnum((unsigned char)a[k]) &&
                (k + 1 >= n || !word_byte((unsigned char)a[k + 1])))
                return (char)toupper((unsigned char)a[k]);
            return '\0';
        }
    return '\0';
}

/* The last line of q that starts (after spaces) with "X.", "X)", "X:" or
 * "(X)" for choice X: its text after the marker in *at and *len; false when none. */
static bool choice_line(const char *q, size_t n, char x, size_t *at, size_t *len)
{
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        if (!line_start(q, i))
            continue;
        size_t j = i;
        while (j < n && q[j] == ' ')
            j++;
        size_t m = 0;
        if (j + 2 < n && q[j] == '(' && toupper((unsigned char)q[j + 1]) == x && q[j + 2] == ')')
            m = j + 3;
        else if (j + 1 < n && toupper((unsigned char)q[j]) == x &&
                 (q[j + 1] == '.' || q[j + 1] == ')' || q[j + 1] == ':'))
            m = j + 2;
        if (m == 0)
            continue;
        *at = m;
        *len = line_end(q, n, m) - m;
        found = true;
    }
    return found;
}

/* The features of (query, option, answer); see scorer.h. */
static void features(const dr_scorer *s, const char *query, const char *option, const char *answer,
                     feats *f)
{
    static const uint64_t no_option = 0;
    query = query ? query : "";
    answer = answer ? answer : "";
    f->n = 0;
    uint64_t ho = no_option;
    bool known = false;
    if (option != NULL && s != NULL)
        for (size_t i = 0; i < s->n_options && !known; i++)
            known = strcmp(s->options[i], option) == 0;
    if (s == NULL && option != NULL) /* training: every option is known */
        known = true;
    if (known)
        ho = dr_hash64(option, strlen(option), 41) | 1;

    size_t qn = strlen(query), q0 = qn > DR_SCORER_QUERY_BYTES ? qn - DR_SCORER_QUERY_BYTES : 0;
    while (q0 > 0 && q0 < qn && word_byte((unsigned char)query[q0]))
        q0++; /* do not start inside a word */
    uint64_t qw[MAX_QUERY_WORDS], aw[DR_SCORER_ANSWER_WORDS];
    size_t nq = words(query + q0, qn - q0, qw, MAX_QUERY_WORDS);
    size_t na = words(answer, strlen(answer), aw, DR_SCORER_ANSWER_WORDS);
    size_t g;

    add(f, NS_BIAS, 0);
    /* The prompt's template: its first words as one feature. */
    uint64_t tw[TEMPLATE_WORDS], th = 0;
    size_t nt = words(query, qn, tw, TEMPLATE_WORDS);
    for (size_t i = 0; i < nt; i++)
        th = th * 1099511628211ULL + tw[i];
    add(f, NS_T, th);
    if (known)
        add(f, NS_OT, th ^ ho);
    group_begin(f, &g);
    for (size_t i = 0; i < na; i++)
        add(f, NS_A, aw[i]);
    for (size_t i = 0; i + 1 < na; i++)
        add(f, NS_A2, aw[i] * 31 + aw[i + 1]);
    group_end(f, g);
    if (known) {
        add(f, NS_O, ho);
        group_begin(f, &g);
        for (size_t i = 0; i < na; i++)
            add(f, NS_OA, aw[i] ^ ho);
        group_end(f, g);
    }
    /* The choice the answer names, read back from the query. */
    char x = answer_choice(answer);
    size_t at = 0, len = 0;
    if (x != '\0' && choice_line(query, qn, x, &at, &len)) {
        uint64_t cw[MAX_LINE_WORDS];
        size_t nc = words(query + at, len, cw, MAX_LINE_WORDS);
        group_begin(f, &g);
        for (size_t i = 0; i < nc; i++)
            add(f, NS_C, cw[i]);
        group_end(f, g);
        if (known) {
            group_begin(f, &g);
            for (size_t i = 0; i < nc; i++)
                add(f, NS_OC, cw[i] ^ ho);
            group_end(f, g);
        }
    }
    /* Shape. */
    size_t an = strlen(answer);
    int lenb = 0;
    while (lenb < 20 && ((size_t)1 << lenb) <= an)
        lenb++;
    size_t in_query = 0;
    qsort(qw, nq, sizeof qw[0], dr_u64_cmp); /* the query's words are no longer needed in order */
    for (size_t i = 0; i < na; i++)
        in_query += bsearch(&aw[i], qw, nq, sizeof qw[0], dr_u64_cmp) != NULL;
    uint64_t shape[4] = {
        100 + (uint64_t)lenb,
        na == 0 ? 200 : 201,
        strstr(answer, "```") != NULL ? 300 : 301,
        400 + (na ? (uint64_t)(4.0 * (double)in_query / (double)na + 0.5) : 9),
    };
    for (size_t i = 0; i < 4; i++) {
        add(f, NS_S, shape[i]);
        if (known)
            add(f, NS_OS, shape[i] ^ ho);
    }
}

static double sigmoid(double z)
{
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

static double dot(const float *w, const feats *f)
{
    double z = 0;
    for (size_t i = 0; i < f->n; i++)
        z += (double)w[f->idx[i]] * f->val[i];
    return z;
}

double dr_scorer_score(const dr_scorer *s, const char *query, const char *option,
                       const char *answer)
{
    feats *f = dr_malloc(sizeof *f);
    if (f == NULL)
        return 0.5; /* out of memory: no opinion */
    features(s, query, option, answer, f);
    double p = sigmoid(dot(s->w, f));
    dr_free(f);
    return p;
}

/* ---- training ------------------------------------------------------------------ */

/* One example: its features (owned), label and weight. */
typedef struct example {
    uint32_t *idx;
    float *val;
    size_t n;
    double y;
} example;

typedef struct exset {
    example *e;
    size_t n;
} exset;

static void exset_free(exset *x)
{
    for (size_t i = 0; x->e != NULL && i < x->n; i++) {
        dr_free(x->e[i].idx);
        dr_free(x->e[i].val);
    }
    dr_free(x->e);
    memset(x, 0, sizeof(*x));
}

/* The examples of rows[0..n) of t (every row when rows is NULL): one per
 * present outcome with a response. */
static int build_examples(const dr_outcome_table *t, const size_t *rows, size_t n, exset *x,
                          dynrag_error *err)
{
    memset(x, 0, sizeof(*x));
    if (rows == NULL)
        n = t->n_rows;
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        const dr_outcome_row *r = &t->rows[rows ? rows[i] : i];
        for (size_t o = 0; o < t->n_options; o++)
            cap += r->o[o].present && r->o[o].response != NULL;
    }
    x->e = dr_calloc(cap ? cap : 1, sizeof *x->e);
    feats *f = dr_malloc(sizeof *f);
    if (x->e == NULL || f == NULL) {
        dr_free(f);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const dr_outcome_row *r = &t->rows[rows ? rows[i] : i];
        for (size_t o = 0; o < t->n_options; o++) {
            const dr_outcome *oc = &r->o[o];
            if (!oc->present || oc->response == NULL)
                continue;
            features(NULL, r->query, t->options[o], oc->response, f);
            example *e = &x->e[x->n];
            e->idx = dr_malloc(f->n * sizeof *e->idx);
            e->val = dr_malloc(f->n * sizeof *e->val);
            if (e->idx == NULL || e->val == NULL) {
                dr_free(e->idx);
                dr_free(e->val);
                dr_free(f);
                return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            }
            memcpy(e->idx, f->idx, f->n * sizeof *e->idx);
            memcpy(e->val, f->val, f->n * sizeof *e->val);
            e->n = f->n;
            e->y = oc->quality;
            x->n++;
        }
    }
    dr_free(f);
    return DYNRAG_OK;
}

static double ex_dot(const float *w, const example *e)
{
    double z = 0;
    for (size_t i = 0; i < e->n; i++)
        z += (double)w[e->idx[i]] * e->val[i];
    return z;
}

/* AdaGrad on the log loss plus lambda/2 |w|^2 (applied to the features an
 * example touches), examples in a seeded order per epoch. */
static int fit(const exset *x, double lambda, int epochs, uint64_t seed, float *w,
               const dr_scorer_train_opts *opts, dynrag_error *err)
{
    const double lr = 0.5;
    double *g2 = dr_calloc(DR_SCORER_BUCKETS, sizeof *g2);
    size_t *order = dr_malloc((x->n ? x->n : 1) * sizeof *order);
    if (g2 == NULL || order == NULL) {
        dr_free(g2);
        dr_free(order);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    memset(w, 0, DR_SCORER_BUCKETS * sizeof *w);
    for (size_t i = 0; i < x->n; i++)
        order[i] = i;
    dr_rng rng;
    dr_rng_seed(&rng, seed);
    for (int ep = 0; ep < epochs; ep++) {
        for (size_t i = x->n; i > 1; i--) {
            size_t j = (size_t)dr_rng_below(&rng, i);
            size_t tmp = order[i - 1];
            order[i - 1] = order[j];
            order[j] = tmp;
        }
        for (size_t k = 0; k < x->n; k++) {
            const example *e = &x->e[order[k]];
            double gz = sigmoid(ex_dot(w, e)) - e->y;
            for (size_t i = 0; i < e->n; i++) {
                uint32_t b = e->idx[i];
                double g = gz * e->val[i] + lambda * w[b];
                g2[b] += g * g;
                w[b] -= (float)(lr * g / (sqrt(g2[b]) + 1e-8));
            }
        }
        if (opts->progress != NULL)
            opts->progress(opts->progress_user, "scorer", (size_t)ep + 1, (size_t)epochs);
    }
    dr_free(g2);
    dr_free(order);
    return DYNRAG_OK;
}

static int cmp_pair(const void *a, const void *b)
{
    const double *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0;
}

double dr_scorer_auc(const double *p, const double *y, size_t n)
{
    double *pr = dr_malloc((n ? n : 1) * 2 * sizeof *pr);
    if (pr == NULL)
        return NAN;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        pr[2 * i] = p[i];
        pr[2 * i + 1] = y[i] >= 0.5;
        pos += y[i] >= 0.5;
    }
    size_t neg = n - pos;
    if (pos == 0 || neg == 0) {
        dr_free(pr);
        return NAN;
    }
    qsort(pr, n, 2 * sizeof *pr, cmp_pair);
    /* Mann-Whitney: the rank sum of the positives, ties sharing their mean rank. */
    double rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && pr[2 * j] == pr[2 * i])
            j++;
        double mean_rank = ((double)i + (double)j + 1) / 2.0; /* ranks i+1 .. j */
        for (size_t k = i; k < j; k++)
            if (pr[2 * k + 1] > 0)
                rank_sum += mean_rank;
        i = j;
    }
    dr_free(pr);
    return (rank_sum - (double)pos * ((double)pos + 1) / 2.0) / ((double)pos * (double)neg);
}

/* The AUC and mean log loss of weights w on examples x. */
static void evaluate(const float *w, const exset *x, double *auc, double *logloss)
{
    *auc = NAN;
    *logloss = NAN;
    if (x->n == 0)
        return;
    double *p = dr_malloc(x->n * sizeof *p), *y = dr_malloc(x->n * sizeof *y);
    if (p == NULL || y == NULL) {
        dr_free(p);
        dr_free(y);
        return;
    }
    double ll = 0;
    for (size_t i = 0; i < x->n; i++) {
        p[i] = sigmoid(ex_dot(w, &x->e[i]));
        y[i] = x->e[i].y;
        double pc = DR_MIN(DR_MAX(p[i], 1e-12), 1 - 1e-12);
        ll -= y[i] * log(pc) + (1 - y[i]) * log(1 - pc);
    }
    *auc = dr_scorer_auc(p, y, x->n);
    *logloss = ll / (double)x->n;
    dr_free(p);
    dr_free(y);
}

int dr_scorer_train(const dr_outcome_table *t, const size_t *rows, size_t n,
                    const dr_outcome_table *v, const size_t *valid, size_t n_valid,
                    const dr_scorer_train_opts *opts, dr_scorer **out,
                    dr_scorer_train_report *report, dynrag_error *err)
{
    static const double lams[] = {1e-3, 1e-2, 1e-1, 1, 10};
    *out = NULL;
    exset tx = {0}, vx = {0};
    cJSON *prov = NULL;
    float *best = NULL;
    int rc;
    dr_scorer *s = dr_calloc(1, sizeof *s);
    if (s == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    s->epochs = DR_SCORER_EPOCHS;
    s->w = dr_calloc(DR_SCORER_BUCKETS, sizeof *s->w);
    best = dr_calloc(DR_SCORER_BUCKETS, sizeof *best);
    s->options = dr_calloc(t->n_options ? t->n_options : 1, sizeof *s->options);
    if (s->w == NULL || best == NULL || s->options == NULL)
        goto nomem;
    for (size_t o = 0; o < t->n_options; o++) {
        if ((s->options[o] = dr_strdup(t->options[o])) == NULL)
            goto nomem;
        s->n_options++;
    }
    if ((rc = build_examples(t, rows, n, &tx, err)) != DYNRAG_OK)
        goto cleanup;
    size_t pos = 0;
    for (size_t i = 0; i < tx.n; i++)
        pos += tx.e[i].y >= 0.5;
    if (tx.n == 0 || pos == 0 || pos == tx.n) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "scorer: the training rows hold %zu answers (\"response\") with a quality, "
                        "%zu of them correct (quality >= 0.5): a scorer needs both correct and "
                        "wrong answers",
                        tx.n, pos);
        goto cleanup;
    }
    bool has_valid = v != NULL && n_valid > 0;
    if (has_valid && (rc = build_examples(v, valid, n_valid, &vx, err)) != DYNRAG_OK)
        goto cleanup;
    has_valid = has_valid && vx.n > 0;
    double auc = NAN, ll = NAN;
    if (opts->lambda > 0 || !has_valid) {
        s->lambda = opts->lambda > 0 ? opts->lambda : 1;
        if ((rc = fit(&tx, s->lambda, s->epochs, opts->seed, s->w, opts, err)) != DYNRAG_OK)
            goto cleanup;
        if (has_valid)
            evaluate(s->w, &vx, &auc, &ll);
    } else {
        for (size_t li = 0; li < DR_ARRAY_LEN(lams); li++) {
            if ((rc = fit(&tx, lams[li], s->epochs, opts->seed, s->w, opts, err)) != DYNRAG_OK)
                goto cleanup;
            double a, l;
            evaluate(s->w, &vx, &a, &l);
            if (li == 0 || a > auc || (isnan(auc) && !isnan(a))) {
                auc = a;
                ll = l;
                s->lambda = lams[li];
                memcpy(best, s->w, DR_SCORER_BUCKETS * sizeof *best);
            }
        }
        memcpy(s->w, best, DR_SCORER_BUCKETS * sizeof *best);
    }
    double tauc, tll;
    evaluate(s->w, &tx, &tauc, &tll);
    if (report != NULL) {
        report->lambda = s->lambda;
        report->examples = tx.n;
        report->valid_examples = vx.n;
        report->train_auc = tauc;
        report->valid_auc = auc;
        report->valid_logloss = ll;
    }
    prov = cJSON_CreateObject();
    if (prov == NULL)
        goto nomem;
    cJSON *data = opts->data_desc ? cJSON_Parse(opts->data_desc) : NULL;
    if (data == NULL)
        data = cJSON_CreateArray();
    cJSON_AddItemToObject(prov, "data", data);
    cJSON_AddNumberToObject(prov, "rows", (double)(rows ? n : t->n_rows));
    cJSON_AddNumberToObject(prov, "examples", (double)tx.n);
    if (!has_valid && opts->prior_valid_rows > 0 && !isnan(opts->prior_valid_auc)) {
        /* The penalty was chosen on held-out rows before this refit. */
        n_valid = opts->prior_valid_rows;
        auc = opts->prior_valid_auc;
        has_valid = true;
    }
    cJSON_AddNumberToObject(prov, "valid_rows", (double)(has_valid ? n_valid : 0));
    cJSON_AddNumberToObject(prov, "valid_examples", (double)vx.n);
    if (!isnan(auc))
        cJSON_AddNumberToObject(prov, "valid_auc", auc);
    if (!isnan(ll))
        cJSON_AddNumberToObject(prov, "valid_logloss", ll);
    cJSON_AddNumberToObject(prov, "seed", (double)opts->seed);
    char ts[40];
    dr_time_rfc3339(ts, sizeof(ts));
    cJSON_AddStringToObject(prov, "created", ts);
    cJSON_AddStringToObject(prov, "dynrag_version", dynrag_version());
    if ((s->provenance = cJSON_PrintUnformatted(prov)) == NULL)
        goto nomem;
    rc = DYNRAG_OK;
    goto cleanup;
nomem:
    rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
cleanup:
    cJSON_Delete(prov);
    dr_free(best);
    exset_free(&tx);
    exset_free(&vx);
    if (rc != DYNRAG_OK) {
        dr_scorer_free(s);
        return rc;
    }
    *out = s;
    return DYNRAG_OK;
}

/* ---- files --------------------------------------------------------------------- */

int dr_scorer_save(const dr_scorer *s, const char *path, dynrag_error *err)
{
    int rc = DYNRAG_OK;
    char *cfg_text = NULL;
    cJSON *cfg = cJSON_CreateObject();
    dr_st_writer *w = dr_st_writer_new();
    if (cfg == NULL || w == NULL)
        goto nomem;
    cJSON_AddStringToObject(cfg, "kind", "scorer");
    cJSON_AddStringToObject(cfg, "method", "hashed_logreg");
    cJSON_AddNumberToObject(cfg, "buckets", (double)DR_SCORER_BUCKETS);
    cJSON_AddNumberToObject(cfg, "lambda", s->lambda);
    cJSON_AddNumberToObject(cfg, "epochs", s->epochs);
    cJSON *opts = cJSON_AddArrayToObject(cfg, "options");
    for (size_t o = 0; opts != NULL && o < s->n_options; o++)
        cJSON_AddItemToArray(opts, cJSON_CreateString(s->options[o]));
    if ((cfg_text = cJSON_PrintUnformatted(cfg)) == NULL)
        goto nomem;
    uint64_t shape[1] = {DR_SCORER_BUCKETS};
    if ((rc = dr_st_writer_meta(w, "format", DR_SCORER_FORMAT, err)) ||
        (rc = dr_st_writer_meta(w, "format_version", "1", err)) ||
        (rc = dr_st_writer_meta(w, "config", cfg_text, err)) ||
        (rc = dr_st_writer_meta(w, "provenance", s->provenance ? s->provenance : "{}", err)) ||
        (rc = dr_st_writer_add_f32(w, "w", 1, shape, s->w, err)))
        goto cleanup;
    rc = dr_st_writer_save(w, path, err);
    goto cleanup;
nomem:
    rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
cleanup:
    cJSON_Delete(cfg);
    dr_free(cfg_text);
    dr_st_writer_free(w);
    return rc;
}

int dr_scorer_load(const char *path, dr_scorer **out, dynrag_error *err)
{
    *out = NULL;
    dr_st_file *f = NULL;
    cJSON *cfg = NULL;
    int rc = dr_st_open(path, &f, err);
    if (rc != DYNRAG_OK)
        return rc;
    dr_scorer *s = dr_calloc(1, sizeof *s);
    if (s == NULL) {
        dr_st_close(f);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    const char *fmt = dr_st_meta(f, "format"), *ver = dr_st_meta(f, "format_version");
    if (fmt == NULL || strcmp(fmt, DR_SCORER_FORMAT) != 0) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                        "%s: metadata format: expected \"%s\" (a model of `dynrag router train "
                        "--kind scorer`)",
                        path, DR_SCORER_FORMAT);
        goto cleanup;
    }
    if (ver == NULL || strcmp(ver, "1") != 0) {
        rc =
            dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: metadata format_version: expected \"1\"", path);
        goto cleanup;
    }
    const char *cfg_text = dr_st_meta(f, "config");
    cfg = cfg_text ? cJSON_Parse(cfg_text) : NULL;
    if (!cJSON_IsObject(cfg)) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: metadata config: missing or not JSON", path);
        goto cleanup;
    }
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(cfg, "kind");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(cfg, "method");
    const cJSON *buckets = cJSON_GetObjectItemCaseSensitive(cfg, "buckets");
    const cJSON *lambda = cJSON_GetObjectItemCaseSensitive(cfg, "lambda");
    const cJSON *epochs = cJSON_GetObjectItemCaseSensitive(cfg, "epochs");
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(cfg, "options");
    if (!cJSON_IsString(kind) || strcmp(kind->valuestring, "scorer") != 0 ||
        !cJSON_IsString(method) || strcmp(method->valuestring, "hashed_logreg") != 0) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                        "%s: config.kind/method: expected scorer/hashed_logreg", path);
        goto cleanup;
    }
    if (!cJSON_IsNumber(buckets) || buckets->valuedouble != (double)DR_SCORER_BUCKETS) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: config.buckets: expected %zu", path,
                        DR_SCORER_BUCKETS);
        goto cleanup;
    }
    if (!cJSON_IsNumber(lambda) || !(lambda->valuedouble >= 0 && lambda->valuedouble <= 1e6) ||
        !cJSON_IsNumber(epochs) || !(epochs->valuedouble >= 1 && epochs->valuedouble <= 1000) ||
        epochs->valuedouble != floor(epochs->valuedouble)) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                        "%s: config.lambda/epochs: missing or out of range (epochs: an "
                        "integer)",
                        path);
        goto cleanup;
    }
    int n_opt = cJSON_GetArraySize(opts);
    if (!cJSON_IsArray(opts) || n_opt > DR_OUTCOMES_MAX_OPTIONS) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                        "%s: config.options: expected an array of at most %d names", path,
                        DR_OUTCOMES_MAX_OPTIONS);
        goto cleanup;
    }
    s->lambda = lambda->valuedouble;
    s->epochs = (int)epochs->valuedouble;
    s->w = dr_malloc(DR_SCORER_BUCKETS * sizeof *s->w);
    s->options = dr_calloc(n_opt ? (size_t)n_opt : 1, sizeof *s->options);
    const char *prov = dr_st_meta(f, "provenance");
    s->provenance = dr_strdup(prov ? prov : "{}");
    if (s->w == NULL || s->options == NULL || s->provenance == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (int o = 0; o < n_opt; o++) {
        const cJSON *name = cJSON_GetArrayItem(opts, o);
        if (!cJSON_IsString(name) || name->valuestring[0] == '\0') {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: config.options[%d]: not a name", path, o);
            goto cleanup;
        }
        if ((s->options[o] = dr_strdup(name->valuestring)) == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        s->n_options++;
    }
    uint64_t shape[1] = {DR_SCORER_BUCKETS};
    if ((rc = dr_st_read_f32(f, "w", 1, shape, s->w, err)) != DYNRAG_OK) {
        dr_err_prefix(err, "%s", path);
        goto cleanup;
    }
    for (size_t i = 0; i < DR_SCORER_BUCKETS; i++)
        if (!isfinite(s->w[i])) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: w: a value is not finite", path);
            goto cleanup;
        }
cleanup:
    cJSON_Delete(cfg);
    dr_st_close(f);
    if (rc != DYNRAG_OK) {
        dr_scorer_free(s);
        return rc;
    }
    *out = s;
    return DYNRAG_OK;
}
