/* metrics.c - qrels and run files, nDCG/Recall/MRR/P@k matching trec_eval. */
#include "dynrag/metrics.h"

#include "core/util.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_EVAL_FILE ((size_t)1 << 31)

/* ---- qrels ------------------------------------------------------------------ */

typedef struct qrel {
    char *qid, *doc;
    int rel;
} qrel;

struct dynrag_qrels {
    qrel *e;
    size_t n, cap;
    bool sorted;
    /* Open-addressing set of entry indices + 1 (0 = empty), for duplicates. */
    size_t *slots;
    size_t n_slots;
    /* Distinct query ids (pointers into e) once sorted. */
    const char **qids;
    size_t n_qids;
};

static uint64_t pair_hash(const char *a, const char *b)
{
    return dr_hash64(b, strlen(b), dr_hash64(a, strlen(a), 17));
}

static int slots_insert(dynrag_qrels *q, size_t idx, bool *dup)
{
    *dup = false;
    if ((q->n + 1) * 2 > q->n_slots) {
        size_t ns = q->n_slots ? q->n_slots * 2 : 1024;
        size_t *s = dr_calloc(ns, sizeof(size_t));
        if (s == NULL)
            return DYNRAG_ERR_NOMEM;
        for (size_t i = 0; i < q->n_slots; i++) {
            if (q->slots[i] == 0)
                continue;
            const qrel *r = &q->e[q->slots[i] - 1];
            size_t h = (size_t)pair_hash(r->qid, r->doc) & (ns - 1);
            while (s[h])
                h = (h + 1) & (ns - 1);
            s[h] = q->slots[i];
        }
        dr_free(q->slots);
        q->slots = s;
        q->n_slots = ns;
    }
    const qrel *r = &q->e[idx];
    size_t h = (size_t)pair_hash(r->qid, r->doc) & (q->n_slots - 1);
    while (q->slots[h]) {
        const qrel *o = &q->e[q->slots[h] - 1];
        if (strcmp(o->qid, r->qid) == 0 && strcmp(o->doc, r->doc) == 0) {
            *dup = true;
            return DYNRAG_OK;
        }
        h = (h + 1) & (q->n_slots - 1);
    }
    q->slots[h] = idx + 1;
    return DYNRAG_OK;
}

int dynrag_qrels_new(dynrag_qrels **out, dynrag_error *err)
{
    *out = dr_calloc(1, sizeof(dynrag_qrels));
    if (*out == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    (*out)->sorted = true;
    return DYNRAG_OK;
}

int dynrag_qrels_add(dynrag_qrels *q, const char *query_id, const char *doc_id, int relevance,
                     dynrag_error *err)
{
    if (query_id == NULL || doc_id == NULL || !*query_id || !*doc_id)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "qrels: empty query or document id");
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 256;
        qrel *e = dr_realloc(q->e, cap * sizeof(qrel));
        if (e == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        q->e = e;
        q->cap = cap;
    }
    qrel *r = &q->e[q->n];
    r->qid = dr_strdup(query_id);
    r->doc = dr_strdup(doc_id);
    r->rel = relevance;
    bool dup = false;
    int rc = (r->qid && r->doc) ? slots_insert(q, q->n, &dup) : DYNRAG_ERR_NOMEM;
    if (rc != DYNRAG_OK || dup) {
        dr_free(r->qid);
        dr_free(r->doc);
        if (rc != DYNRAG_OK)
            return dr_err_set(err, rc, "out of memory");
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "qrels: document '%s' judged twice for query '%s'", doc_id, query_id);
    }
    q->n++;
    q->sorted = false;
    return DYNRAG_OK;
}

void dynrag_qrels_free(dynrag_qrels *q)
{
    if (q == NULL)
        return;
    for (size_t i = 0; i < q->n; i++) {
        dr_free(q->e[i].qid);
        dr_free(q->e[i].doc);
    }
    dr_free(q->e);
    dr_free(q->slots);
    dr_free(q->qids);
    dr_free(q);
}

static int cmp_qrel(const void *a, const void *b)
{
    const qrel *x = a, *y = b;
    int c = strcmp(x->qid, y->qid);
    return c ? c : strcmp(x->doc, y->doc);
}

/* Sorts the entries by (query, document) and lists the distinct queries. */
static int qrels_finish(dynrag_qrels *q)
{
    if (q->sorted && (q->qids != NULL || q->n == 0))
        return DYNRAG_OK;
    qsort(q->e, q->n, sizeof(qrel), cmp_qrel);
    /* Entry indices moved: rebuild the duplicate set lazily on the next add. */
    for (size_t i = 0; i < q->n_slots; i++)
        q->slots[i] = 0;
    for (size_t i = 0; i < q->n; i++) {
        bool dup;
        if (slots_insert(q, i, &dup) != DYNRAG_OK)
            return DYNRAG_ERR_NOMEM;
    }
    dr_free(q->qids);
    q->qids = dr_malloc((q->n ? q->n : 1) * sizeof(char *));
    if (q->qids == NULL)
        return DYNRAG_ERR_NOMEM;
    q->n_qids = 0;
    for (size_t i = 0; i < q->n; i++)
        if (i == 0 || strcmp(q->e[i].qid, q->e[i - 1].qid) != 0)
            q->qids[q->n_qids++] = q->e[i].qid;
    q->sorted = true;
    return DYNRAG_OK;
}

size_t dynrag_qrels_query_count(dynrag_qrels *q)
{
    return qrels_finish(q) == DYNRAG_OK ? q->n_qids : 0;
}

const char *dynrag_qrels_query_id(dynrag_qrels *q, size_t i)
{
    if (qrels_finish(q) != DYNRAG_OK || i >= q->n_qids)
        return NULL;
    return q->qids[i];
}

/* [*lo, *hi) = the entries of query qid (sorted qrels). */
static void qrels_range(const dynrag_qrels *q, const char *qid, size_t *lo, size_t *hi)
{
    size_t a = 0, b = q->n;
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (strcmp(q->e[m].qid, qid) < 0)
            a = m + 1;
        else
            b = m;
    }
    size_t c = a, d = q->n;
    while (c < d) {
        size_t m = c + (d - c) / 2;
        if (strcmp(q->e[m].qid, qid) <= 0)
            c = m + 1;
        else
            d = m;
    }
    *lo = a;
    *hi = c;
}

static int range_get(const dynrag_qrels *q, size_t lo, size_t hi, const char *doc)
{
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        int c = strcmp(q->e[m].doc, doc);
        if (c == 0)
            return q->e[m].rel;
        if (c < 0)
            lo = m + 1;
        else
            hi = m;
    }
    return -1;
}

int dynrag_qrels_get(dynrag_qrels *q, const char *query_id, const char *doc_id)
{
    if (qrels_finish(q) != DYNRAG_OK)
        return -1;
    size_t lo, hi;
    qrels_range(q, query_id, &lo, &hi);
    return range_get(q, lo, hi, doc_id);
}

/* ---- line splitting ----------------------------------------------------------- */

#define MAX_FIELDS 8

/* Splits a line (modified in place) at runs of spaces/tabs; returns the
 * field count (at most MAX_FIELDS are stored; more are counted). */
static int split_fields(char *line, char **f)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\v' || *p == '\f')
            p++;
        if (*p == '\0')
            break;
        char *s = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\v' && *p != '\f')
            p++;
        if (n < MAX_FIELDS)
            f[n] = s;
        n++;
        if (*p == '\0')
            break;
        *p++ = '\0';
    }
    return n;
}

typedef int (*line_fn)(void *user, char *line, long lineno, dynrag_error *err);

/* Calls fn for every line of the file (without its '\n'). */
static int for_each_line(const char *path, line_fn fn, void *user, dynrag_error *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc = dr_read_file(path, MAX_EVAL_FILE, &data, &len, err);
    if (rc != DYNRAG_OK)
        return rc;
    if (memchr(data, '\0', len) != NULL) {
        dr_free(data);
        return dr_err_set(err, DYNRAG_ERR_PARSE, "%s: contains a NUL byte", path);
    }
    char *p = data;
    long lineno = 0;
    while (rc == DYNRAG_OK && p < data + len) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        rc = fn(user, p, lineno, err);
        if (!nl)
            break;
        p = nl + 1;
    }
    dr_free(data);
    return rc;
}

static bool parse_int(const char *s, int *out)
{
    long long v;
    if (dr_parse_ll(s, -1000000, 1000000, &v) != DYNRAG_OK)
        return false;
    *out = (int)v;
    return true;
}

typedef struct qrels_ctx {
    dynrag_qrels *q;
    const char *path;
    bool seen_content;
} qrels_ctx;

static int qrels_line(void *user, char *line, long lineno, dynrag_error *err)
{
    qrels_ctx *c = user;
    char *f[MAX_FIELDS];
    int n = split_fields(line, f);
    if (n == 0)
        return DYNRAG_OK;
    bool first = !c->seen_content;
    c->seen_content = true;
    int rel;
    if ((n != 3 && n != 4) || !parse_int(f[n - 1], &rel)) {
        if (first && (n == 3 || n == 4) && !parse_int(f[n - 1], &rel))
            return DYNRAG_OK; /* header, e.g. "query-id corpus-id score" */
        if (n != 3 && n != 4)
            return dr_err_set(err, DYNRAG_ERR_PARSE,
                              "%s:%ld: expected 3 fields (query-id corpus-id score) or 4 "
                              "(qid iter docno rel), got %d",
                              c->path, lineno, n);
        return dr_err_set(err, DYNRAG_ERR_PARSE, "%s:%ld: judgement '%s' is not an integer",
                          c->path, lineno, f[n - 1]);
    }
    const char *qid = f[0], *doc = n == 4 ? f[2] : f[1];
    int rc = dynrag_qrels_add(c->q, qid, doc, rel, err);
    if (rc != DYNRAG_OK)
        return dr_err_prefix(err, "%s:%ld", c->path, lineno);
    return DYNRAG_OK;
}

int dynrag_qrels_load(const char *path, dynrag_qrels **out, dynrag_error *err)
{
    dynrag_qrels *q = NULL;
    *out = NULL;
    int rc = dynrag_qrels_new(&q, err);
    if (rc != DYNRAG_OK)
        return rc;
    qrels_ctx c = {q, path, false};
    rc = for_each_line(path, qrels_line, &c, err);
    if (rc == DYNRAG_OK && qrels_finish(q) != DYNRAG_OK)
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    if (rc != DYNRAG_OK) {
        dynrag_qrels_free(q);
        return rc;
    }
    *out = q;
    return DYNRAG_OK;
}

/* ---- runs ----------------------------------------------------------------------- */

typedef struct rentry {
    char *qid, *doc;
    double score;
} rentry;

struct dynrag_run {
    rentry *e;
    size_t n, cap;
};

int dynrag_run_new(dynrag_run **out, dynrag_error *err)
{
    *out = dr_calloc(1, sizeof(dynrag_run));
    return *out ? DYNRAG_OK : dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
}

int dynrag_run_add(dynrag_run *r, const char *query_id, const char *doc_id, double score,
                   dynrag_error *err)
{
    if (query_id == NULL || doc_id == NULL || !*query_id || !*doc_id)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "run: empty query or document id");
    if (!isfinite(score))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "run: score of '%s' for query '%s' is not finite",
                          doc_id, query_id);
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 1024;
        rentry *e = dr_realloc(r->e, cap * sizeof(rentry));
        if (e == NULL)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        r->e = e;
        r->cap = cap;
    }
    rentry *x = &r->e[r->n];
    x->qid = dr_strdup(query_id);
    x->doc = dr_strdup(doc_id);
    x->score = score;
    if (x->qid == NULL || x->doc == NULL) {
        dr_free(x->qid);
        dr_free(x->doc);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    r->n++;
    return DYNRAG_OK;
}

void dynrag_run_free(dynrag_run *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++) {
        dr_free(r->e[i].qid);
        dr_free(r->e[i].doc);
    }
    dr_free(r->e);
    dr_free(r);
}

typedef struct run_ctx {
    dynrag_run *r;
    const char *path;
} run_ctx;

static int run_line(void *user, char *line, long lineno, dynrag_error *err)
{
    run_ctx *c = user;
    char *p = line;
    while (*p == ' ' || *p == '\t' || *p == '\r')
        p++;
    if (*p == '#' || *p == '\0')
        return DYNRAG_OK;
    char *f[MAX_FIELDS];
    int n = split_fields(line, f);
    if (n == 0)
        return DYNRAG_OK;
    if (n < 6)
        return dr_err_set(err, DYNRAG_ERR_PARSE,
                          "%s:%ld: expected 6 fields (qid Q0 docno rank score tag), got %d",
                          c->path, lineno, n);
    double score;
    if (dr_parse_double(f[4], -HUGE_VAL, HUGE_VAL, &score) != DYNRAG_OK)
        return dr_err_set(err, DYNRAG_ERR_PARSE, "%s:%ld: score '%s' is not a number", c->path,
                          lineno, f[4]);
    int rc = dynrag_run_add(c->r, f[0], f[2], score, err);
    return rc == DYNRAG_OK ? rc : dr_err_prefix(err, "%s:%ld", c->path, lineno);
}

int dynrag_run_load(const char *path, dynrag_run **out, dynrag_error *err)
{
    dynrag_run *r = NULL;
    *out = NULL;
    int rc = dynrag_run_new(&r, err);
    if (rc != DYNRAG_OK)
        return rc;
    run_ctx c = {r, path};
    rc = for_each_line(path, run_line, &c, err);
    if (rc != DYNRAG_OK) {
        dynrag_run_free(r);
        return rc;
    }
    *out = r;
    return DYNRAG_OK;
}

/* trec_eval's order: query, then score descending, then docno DEcreasing. */
static int cmp_rank(const void *a, const void *b)
{
    const rentry *x = *(const rentry *const *)a, *y = *(const rentry *const *)b;
    int c = strcmp(x->qid, y->qid);
    if (c)
        return c;
    if (x->score > y->score)
        return -1;
    if (x->score < y->score)
        return 1;
    return strcmp(y->doc, x->doc);
}

/* Entry pointers in trec_eval rank order (caller frees). */
static const rentry **ranked(const dynrag_run *r)
{
    const rentry **v = dr_malloc((r->n ? r->n : 1) * sizeof(*v));
    if (v == NULL)
        return NULL;
    for (size_t i = 0; i < r->n; i++)
        v[i] = &r->e[i];
    qsort(v, r->n, sizeof(*v), cmp_rank);
    return v;
}

int dynrag_run_write(const dynrag_run *r, const char *path, const char *tag, dynrag_error *err)
{
    const rentry **v = ranked(r);
    dr_buf b = {0};
    b.cap_limit = MAX_EVAL_FILE;
    int rc = DYNRAG_OK;
    if (v == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    long rank = 0;
    for (size_t i = 0; i < r->n; i++) {
        rank = (i > 0 && strcmp(v[i]->qid, v[i - 1]->qid) == 0) ? rank + 1 : 1;
        if (dr_buf_printf(&b, "%s Q0 %s %ld %.17g %s\n", v[i]->qid, v[i]->doc, rank, v[i]->score,
                          tag ? tag : "dynrag") != DYNRAG_OK) {
            rc = dr_err_set(err, DYNRAG_ERR_LIMIT, "%s: run too large", path);
            goto cleanup;
        }
    }
    rc = dr_write_file_atomic(path, b.data ? b.data : "", b.len, err);
cleanup:
    dr_free(v);
    dr_buf_free(&b);
    return rc;
}

/* ---- metric names ------------------------------------------------------------------ */

/* Every metric of dynrag_metric, indexed by its value: the key (the
 * evaluation's files) and the display name (trec_eval-style reports). */
static const struct {
    const char *key, *display;
} metric_info[] = {
    [DYNRAG_METRIC_NDCG] = {"ndcg", "nDCG"},
    [DYNRAG_METRIC_RECALL] = {"recall", "Recall"},
    [DYNRAG_METRIC_MRR] = {"mrr", "MRR"},
    [DYNRAG_METRIC_P] = {"p", "P"},
    [DYNRAG_METRIC_EM] = {"em", "em"},
    [DYNRAG_METRIC_F1] = {"f1", "f1"},
    [DYNRAG_METRIC_CONTEXT] = {"context", "context"},
    [DYNRAG_METRIC_SUPPORT] = {"support", "support"},
    [DYNRAG_METRIC_QUALITY] = {"quality", "quality"},
    [DYNRAG_METRIC_STEPS] = {"steps", "steps"},
    [DYNRAG_METRIC_CALLS] = {"calls", "calls"},
    [DYNRAG_METRIC_TOKENS] = {"tokens", "tokens"},
    [DYNRAG_METRIC_USD] = {"usd", "usd"},
    [DYNRAG_METRIC_LATENCY] = {"latency_ms", "latency_ms"},
    [DYNRAG_METRIC_ENERGY] = {"energy_wh", "energy_wh"},
};

_Static_assert(DR_ARRAY_LEN(metric_info) == DYNRAG_METRIC_ENERGY + 1,
               "metric_info lists every dynrag_metric");

static bool is_metric(dynrag_metric m)
{
    return (unsigned)m < DR_ARRAY_LEN(metric_info);
}

static bool is_ranking(dynrag_metric m)
{
    return m == DYNRAG_METRIC_NDCG || m == DYNRAG_METRIC_RECALL || m == DYNRAG_METRIC_MRR ||
           m == DYNRAG_METRIC_P;
}

/* Public: see dynrag/metrics.h. Exact names first (none starts like a
 * ranking prefix followed by '@', '.' or '_'), then the ranking prefixes
 * with an optional cutoff. */
int dynrag_metric_parse(const char *s, dynrag_metric_spec *out, dynrag_error *err)
{
    static const struct {
        const char *name;
        dynrag_metric m;
    } exact[] = {
        {"em", DYNRAG_METRIC_EM},           {"f1", DYNRAG_METRIC_F1},
        {"context", DYNRAG_METRIC_CONTEXT}, {"support", DYNRAG_METRIC_SUPPORT},
        {"quality", DYNRAG_METRIC_QUALITY}, {"steps", DYNRAG_METRIC_STEPS},
        {"calls", DYNRAG_METRIC_CALLS},     {"tokens", DYNRAG_METRIC_TOKENS},
        {"usd", DYNRAG_METRIC_USD},         {"latency_ms", DYNRAG_METRIC_LATENCY},
        {"latency", DYNRAG_METRIC_LATENCY}, {"energy_wh", DYNRAG_METRIC_ENERGY},
        {"energy", DYNRAG_METRIC_ENERGY},
    };
    static const struct {
        const char *prefix;
        dynrag_metric m;
    } ranking[] = {
        {"ndcg_cut", DYNRAG_METRIC_NDCG}, {"ndcg", DYNRAG_METRIC_NDCG},
        {"recall", DYNRAG_METRIC_RECALL}, {"recip_rank", DYNRAG_METRIC_MRR},
        {"mrr", DYNRAG_METRIC_MRR},       {"p", DYNRAG_METRIC_P},
    };
    if (s == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "metric: missing name");
    for (size_t i = 0; i < DR_ARRAY_LEN(exact); i++)
        if (strcasecmp(s, exact[i].name) == 0) {
            out->metric = exact[i].m;
            out->k = 0;
            return DYNRAG_OK;
        }
    for (size_t i = 0; i < DR_ARRAY_LEN(ranking); i++) {
        size_t pl = strlen(ranking[i].prefix);
        if (strncasecmp(s, ranking[i].prefix, pl) != 0)
            continue;
        const char *rest = s + pl;
        long long k = 0;
        if (*rest == '\0') {
            if (ranking[i].m == DYNRAG_METRIC_P || ranking[i].m == DYNRAG_METRIC_NDCG)
                break; /* P and nDCG need a cutoff */
        } else if (*rest == '@' || *rest == '.' || *rest == '_') {
            if (dr_parse_ll(rest + 1, 1, 1000000, &k) != DYNRAG_OK)
                break;
        } else {
            continue; /* e.g. "ndcg_cut" tried as "ndcg" + "_cut" */
        }
        out->metric = ranking[i].m;
        out->k = (int)k;
        return DYNRAG_OK;
    }
    return dr_err_set(err, DYNRAG_ERR_INVALID,
                      "unknown metric '%s' (expected a ranking metric such as ndcg@10, "
                      "recall@100, mrr@10, p@5, or em, f1, context, support, quality, steps, "
                      "calls, tokens, usd, latency_ms or energy_wh)",
                      s);
}

/* The name of m in one of the two spellings. */
static const char *metric_text(dynrag_metric_spec m, bool key, char *buf, size_t size)
{
    if (!is_metric(m.metric)) {
        snprintf(buf, size, "?");
        return buf;
    }
    const char *n = key ? metric_info[m.metric].key : metric_info[m.metric].display;
    if (m.k != 0)
        snprintf(buf, size, "%s@%d", n, m.k);
    else
        snprintf(buf, size, "%s", n);
    return buf;
}

/* Public: see dynrag/metrics.h. */
const char *dynrag_metric_name(dynrag_metric_spec m, char *buf, size_t size)
{
    return metric_text(m, false, buf, size);
}

/* Public: see dynrag/metrics.h. */
const char *dynrag_metric_key(dynrag_metric_spec m, char *buf, size_t size)
{
    return metric_text(m, true, buf, size);
}

/* Public: see dynrag/metrics.h. */
bool dynrag_metric_is_cost(dynrag_metric m)
{
    return m >= DYNRAG_METRIC_STEPS && m <= DYNRAG_METRIC_ENERGY;
}

/* ---- computing ---------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_int_desc(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x > y ? -1 : x < y;
}

/* Fills row[] for one query: rels[0..n_ret) are the judgements of the
 * ranked documents (-1 = unjudged); judged[lo, hi) its qrels entries. */
static void eval_query(const dynrag_qrels *q, size_t lo, size_t hi, const int *rels, size_t n_ret,
                       const dynrag_metric_spec *ms, size_t n_ms, int level, int *ideal,
                       double *row)
{
    long num_rel = 0;
    size_t n_ideal = 0;
    for (size_t i = lo; i < hi; i++) {
        if (q->e[i].rel >= level)
            num_rel++;
        if (q->e[i].rel > 0)
            ideal[n_ideal++] = q->e[i].rel;
    }
    qsort(ideal, n_ideal, sizeof(int), cmp_int_desc);
    for (size_t m = 0; m < n_ms; m++) {
        size_t k = ms[m].k > 0 ? (size_t)ms[m].k : SIZE_MAX;
        size_t top = DR_MIN(k, n_ret);
        double v = 0;
        switch (ms[m].metric) {
        case DYNRAG_METRIC_NDCG: {
            double dcg = 0, idcg = 0;
            for (size_t i = 0; i < top; i++)
                if (rels[i] > 0)
                    dcg += rels[i] / log2((double)(i + 2));
            for (size_t i = 0; i < DR_MIN(k, n_ideal); i++)
                idcg += ideal[i] / log2((double)(i + 2));
            v = idcg > 0 ? dcg / idcg : 0;
            break;
        }
        case DYNRAG_METRIC_RECALL: {
            long hit = 0;
            for (size_t i = 0; i < top; i++)
                hit += rels[i] >= level;
            v = num_rel > 0 ? (double)hit / (double)num_rel : 0;
            break;
        }
        case DYNRAG_METRIC_MRR:
            for (size_t i = 0; i < top; i++)
                if (rels[i] >= level) {
                    v = 1.0 / (double)(i + 1);
                    break;
                }
            break;
        case DYNRAG_METRIC_P: {
            long hit = 0;
            for (size_t i = 0; i < top; i++)
                hit += rels[i] >= level;
            v = (double)hit / (double)k;
            break;
        }
        default:
            /* not a ranking metric: dynrag_metrics_compute refused it */
            v = NAN;
            break;
        }
        row[m] = v;
    }
}

void dynrag_metrics_result_free(dynrag_metrics_result *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_queries; i++)
        dr_free(r->query_ids[i]);
    dr_free(r->query_ids);
    dr_free(r->metrics);
    dr_free(r->per_query);
    dr_free(r->mean);
    memset(r, 0, sizeof(*r));
}

/* Public: see dynrag/metrics.h. */
void dynrag_metrics_options_init(dynrag_metrics_options *o)
{
    memset(o, 0, sizeof(*o));
    o->relevance_level = 1;
    o->complete = false;
}

int dynrag_metrics_compute(dynrag_qrels *qrels, const dynrag_run *run,
                           const dynrag_metric_spec *metrics, size_t n_metrics,
                           const dynrag_metrics_options *opt, dynrag_metrics_result *out,
                           dynrag_error *err)
{
    const rentry **v = NULL;
    int *rels = NULL, *ideal = NULL;
    const char **docs = NULL;
    int rc = DYNRAG_OK;
    memset(out, 0, sizeof(*out));
    dynrag_metrics_options defaults;
    dynrag_metrics_options_init(&defaults);
    if (opt == NULL)
        opt = &defaults;
    int level = opt->relevance_level;
    bool complete = opt->complete;
    if (level < 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "metrics: relevance_level %d is negative (expected >= 0)", level);
    if (n_metrics == 0 || metrics == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "metrics: none requested");
    for (size_t m = 0; m < n_metrics; m++) {
        dynrag_metric_spec ms = metrics[m];
        char name[48];
        if (!is_metric(ms.metric))
            return dr_err_set(err, DYNRAG_ERR_INVALID, "metrics: unknown metric %d",
                              (int)ms.metric);
        if (!is_ranking(ms.metric))
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "metrics: %s is not a ranking metric (expected nDCG, Recall, MRR "
                              "or P with a cutoff)",
                              dynrag_metric_key(ms, name, sizeof name));
        if (ms.k < 0 ||
            (ms.k == 0 && (ms.metric == DYNRAG_METRIC_P || ms.metric == DYNRAG_METRIC_NDCG)))
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "metrics: %s: bad cutoff %d (expected >= 1; 0, the whole ranking, "
                              "only for Recall and MRR)",
                              metric_info[ms.metric].display, ms.k);
    }
    if (qrels_finish(qrels) != DYNRAG_OK)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    v = ranked(run);
    rels = dr_malloc((run->n ? run->n : 1) * sizeof(int));
    docs = dr_malloc((run->n ? run->n : 1) * sizeof(char *));
    ideal = dr_malloc((qrels->n ? qrels->n : 1) * sizeof(int));
    out->metrics = dr_malloc(n_metrics * sizeof(dynrag_metric_spec));
    out->mean = dr_calloc(n_metrics, sizeof(double));
    out->query_ids = dr_calloc(qrels->n_qids ? qrels->n_qids : 1, sizeof(char *));
    out->per_query = dr_calloc((qrels->n_qids ? qrels->n_qids : 1) * n_metrics, sizeof(double));
    if (v == NULL || rels == NULL || docs == NULL || ideal == NULL || out->metrics == NULL || out->mean == NULL ||
        out->query_ids == NULL || out->per_query == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    memcpy(out->metrics, metrics, n_metrics * sizeof(dynrag_metric_spec));
    out->n_metrics = n_metrics;
    /* Walk the judged queries and the ranked run (both in strcmp order of qid). */
    size_t ri = 0;
    for (size_t qi = 0; qi < qrels->n_qids; qi++) {
        const char *qid = qrels->qids[qi];
        while (ri < run->n && strcmp(v[ri]->qid, qid) < 0)
            ri++;
        size_t rj = ri;
        while (rj < run->n && strcmp(v[rj]->qid, qid) == 0)
            rj++;
        if (rj == ri && !complete)
            continue;
        size_t lo, hi;
        qrels_range(qrels, qid, &lo, &hi);
        for (size_t i = ri; i < rj; i++) {
            rels[i - ri] = range_get(qrels, lo, hi, v[i]->doc);
            docs[i - ri] = v[i]->doc;
        }
        /* A document twice in one query (trec_eval refuses such runs). */
        qsort(docs, rj - ri, sizeof(char *), cmp_str);
        for (size_t i = 1; i < rj - ri; i++)
            if (strcmp(docs[i], docs[i - 1]) == 0) {
                rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                                "run: document '%s' listed twice for query '%s'", docs[i], qid);
                goto cleanup;
            }
        char *id = dr_strdup(qid);
        if (id == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        double *row = out->per_query + out->n_queries * n_metrics;
        out->query_ids[out->n_queries++] = id;
        eval_query(qrels, lo, hi, rels, rj - ri, metrics, n_metrics, level, ideal, row);
        ri = rj;
    }
    if (out->n_queries == 0) {
        rc = dr_err_set(err, DYNRAG_ERR_NOTFOUND,
                        "metrics: no query has both relevance judgements and results");
        goto cleanup;
    }
    for (size_t m = 0; m < n_metrics; m++) {
        double s = 0;
        for (size_t i = 0; i < out->n_queries; i++)
            s += out->per_query[i * n_metrics + m];
        out->mean[m] = s / (double)out->n_queries;
    }
cleanup:
    dr_free(v);
    dr_free(rels);
    dr_free(docs);
    dr_free(ideal);
    if (rc != DYNRAG_OK)
        dynrag_metrics_result_free(out);
    return rc;
}
