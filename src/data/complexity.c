/*
 * complexity.c - the labelled query-complexity data set builder
 * (include/dynrag/dataset.h): reads CLINC150, NQ-open, EfficientQA,
 * MuSiQue and HotpotQA, labels A/B/C, deduplicates, balances, splits and
 * writes JSON Lines.
 */
#include "dynrag/dataset.h"

#include "core/util.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT_FILE (256u << 20) /* bytes per input file */
#define MAX_TEXT 4096               /* bytes per question after cleaning */

enum { LABEL_A = 0, LABEL_B = 1, LABEL_C = 2 };

static const char *const source_names[DYNRAG_DATASET_N_SOURCES] = {
    "clinc150", "nq", "efficientqa", "musique", "hotpotqa", "musique-sub",
};
static const int source_label[DYNRAG_DATASET_N_SOURCES] = {
    LABEL_A, LABEL_B, LABEL_B, LABEL_C, LABEL_C, LABEL_B,
};
static const char *const label_names[DYNRAG_DATASET_N_LABELS] = {"A", "B", "C"};
static const char *const a_domains[] = {"small_talk", "meta"};
static const char *const a_utility[] = {DYNRAG_DATASET_A_UTILITY};

const char *dynrag_dataset_source_name(int source)
{
    if (source < 0 || source >= DYNRAG_DATASET_N_SOURCES)
        return NULL;
    return source_names[source];
}

const char *dynrag_dataset_label_name(int label)
{
    if (label < 0 || label >= DYNRAG_DATASET_N_LABELS)
        return NULL;
    return label_names[label];
}

void dynrag_dataset_options_init(dynrag_dataset_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->seed = 13;
    opt->valid_frac = 0.1;
    opt->balance_ratio = 2.0;
}

/* ---- records -------------------------------------------------------------- */

typedef struct rec {
    char *text;   /* cleaned text, owned */
    char *norm;   /* normalised text for deduplication, owned */
    int source;
    bool dropped; /* a duplicate */
} rec;

typedef struct builder {
    const dynrag_dataset_options *opt;
    dynrag_dataset_stats *st;
    rec *recs;
    size_t n, alloc;
} builder;

static void builder_free(builder *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->recs[i].text);
        free(b->recs[i].norm);
    }
    free(b->recs);
    b->recs = NULL;
    b->n = b->alloc = 0;
}

/* Trims s and collapses runs of white space to one space. Returns a
 * malloc'ed copy ("" for blank input) or NULL when out of memory. */
static char *clean_text(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    size_t k = 0;
    bool space = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
            space = k > 0;
            continue;
        }
        if (space)
            out[k++] = ' ';
        space = false;
        out[k++] = (char)c;
    }
    out[k] = '\0';
    return out;
}

/* Dedup key: ASCII case-folded, trailing '?', '.', '!' and spaces removed. */
static char *normalise(const char *clean)
{
    char *n = dr_strdup(clean);
    if (n == NULL)
        return NULL;
    size_t len = strlen(n);
    for (size_t i = 0; i < len; i++)
        n[i] = (char)tolower((unsigned char)n[i]);
    while (len > 0 && (n[len - 1] == '?' || n[len - 1] == '.' || n[len - 1] == '!' ||
                       n[len - 1] == ' '))
        n[--len] = '\0';
    return n;
}

/*
 * Adds one record with text from `where` (a "file:line" or "file: item N"
 * string for errors). Blank text is skipped silently; invalid UTF-8 or an
 * over-long text is an error.
 */
static int add_record(builder *b, const char *text, int source, const char *where,
                      dynrag_error *err)
{
    size_t len = strlen(text);
    if (!dr_utf8_valid(text, len, NULL))
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: text is not valid UTF-8", where);
    char *c = clean_text(text);
    if (c == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    if (c[0] == '\0') {
        free(c);
        return DYNRAG_OK;
    }
    if (strlen(c) > MAX_TEXT) {
        free(c);
        return dr_err_set(err, DYNRAG_ERR_LIMIT, "%s: text longer than %d bytes", where,
                          MAX_TEXT);
    }
    char *nm = normalise(c);
    if (nm == NULL || (b->n == b->alloc && b->alloc >= SIZE_MAX / 2)) {
        free(c);
        free(nm);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    if (b->n == b->alloc) {
        size_t na = b->alloc ? b->alloc * 2 : 4096;
        rec *r = realloc(b->recs, na * sizeof(*r));
        if (r == NULL) {
            free(c);
            free(nm);
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        }
        b->recs = r;
        b->alloc = na;
    }
    b->recs[b->n++] = (rec){.text = c, .norm = nm, .source = source, .dropped = false};
    if (b->st)
        b->st->read[source]++;
    return DYNRAG_OK;
}

/* ---- input files ------------------------------------------------------------ */

/* Joins the data folder and a relative path; caller frees. */
static char *data_path(const builder *b, const char *rel)
{
    return dr_asprintf("%s/%s", b->opt->data_dir, rel);
}

/* Parses a whole JSON file into *out (caller frees with cJSON_Delete). A
 * syntax error names the file and the line of the failure. */
static int read_json(const char *path, cJSON **out, dynrag_error *err)
{
    *out = NULL;
    char *data = NULL;
    size_t len = 0;
    int rc = dr_read_file(path, MAX_INPUT_FILE, &data, &len, err);
    if (rc != DYNRAG_OK)
        return rc;
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(data, len, &end, false);
    if (*out == NULL) {
        size_t line = 1;
        const char *stop = (end && end >= data && end <= data + len) ? end : data + len;
        for (const char *p = data; p < stop; p++)
            if (*p == '\n')
                line++;
        rc = dr_err_set(err, DYNRAG_ERR_PARSE, "%s:%zu: malformed JSON", path, line);
    }
    free(data);
    return rc;
}

/* Per-line callback of read_jsonl: obj is the parsed line. */
typedef int (*jsonl_fn)(builder *b, const cJSON *obj, const char *where, dynrag_error *err);

/* Reads a JSON Lines file, calling fn for each non-blank line; errors name
 * the file and line. */
static int read_jsonl(builder *b, const char *path, jsonl_fn fn, dynrag_error *err)
{
    char *data = NULL;
    size_t len = 0;
    cJSON *obj = NULL;
    int rc = dr_read_file(path, MAX_INPUT_FILE, &data, &len, err);
    if (rc != DYNRAG_OK)
        return rc;
    size_t line = 0;
    char where[1200];
    for (size_t pos = 0; pos < len;) {
        const char *p = data + pos;
        const char *nl = memchr(p, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - p) : len - pos;
        pos += n + (nl ? 1 : 0);
        line++;
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'))
            k++;
        if (k == n)
            continue;
        snprintf(where, sizeof(where), "%s:%zu", path, line);
        obj = cJSON_ParseWithLength(p, n);
        if (obj == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_PARSE, "%s: malformed JSON", where);
            goto cleanup;
        }
        if (!cJSON_IsObject(obj)) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: expected a JSON object", where);
            goto cleanup;
        }
        rc = fn(b, obj, where, err);
        if (rc != DYNRAG_OK)
            goto cleanup;
        cJSON_Delete(obj);
        obj = NULL;
    }
cleanup:
    cJSON_Delete(obj);
    free(data);
    return rc;
}

/* Sets *out to the string field `name` of obj; DYNRAG_ERR_FORMAT when it
 * is missing or not a string. */
static int req_string(const cJSON *obj, const char *name, const char *where, const char **out,
                      dynrag_error *err)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = NULL;
    if (!cJSON_IsString(f) || f->valuestring == NULL)
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: missing string field \"%s\"", where,
                          name);
    *out = f->valuestring;
    return DYNRAG_OK;
}

static int nq_line(builder *b, const cJSON *obj, const char *where, dynrag_error *err,
                   int source)
{
    const char *q = NULL;
    int rc = req_string(obj, "question", where, &q, err);
    return rc != DYNRAG_OK ? rc : add_record(b, q, source, where, err);
}

static int nq_dev_line(builder *b, const cJSON *obj, const char *where, dynrag_error *err)
{
    return nq_line(b, obj, where, err, DYNRAG_DATASET_SRC_NQ);
}

static int efficientqa_line(builder *b, const cJSON *obj, const char *where, dynrag_error *err)
{
    return nq_line(b, obj, where, err, DYNRAG_DATASET_SRC_EFFICIENTQA);
}

static int hotpot_line(builder *b, const cJSON *obj, const char *where, dynrag_error *err)
{
    const char *q = NULL;
    int rc = req_string(obj, "question_text", where, &q, err);
    return rc != DYNRAG_OK ? rc : add_record(b, q, DYNRAG_DATASET_SRC_HOTPOTQA, where, err);
}

/* True when intent is one of the A intents (domains small_talk or meta of
 * domains, or the utility list). */
static bool is_a_intent(const cJSON *domains, const char *intent)
{
    for (size_t d = 0; d < DR_ARRAY_LEN(a_domains); d++) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(domains, a_domains[d]);
        const cJSON *it;
        cJSON_ArrayForEach(it, arr)
        {
            if (cJSON_IsString(it) && strcmp(it->valuestring, intent) == 0)
                return true;
        }
    }
    for (size_t i = 0; i < DR_ARRAY_LEN(a_utility); i++)
        if (strcmp(a_utility[i], intent) == 0)
            return true;
    return false;
}

/* CLINC150: domains.json, then train.json and val.json. */
static int read_clinc(builder *b, dynrag_error *err)
{
    cJSON *domains = NULL, *arr = NULL;
    char *path = data_path(b, "clinc150/domains.json");
    int rc = path ? read_json(path, &domains, err) : dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    if (rc != DYNRAG_OK)
        goto cleanup;
    if (!cJSON_IsObject(domains)) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: expected an object of domain -> intents",
                        path);
        goto cleanup;
    }
    for (size_t d = 0; d < DR_ARRAY_LEN(a_domains); d++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(domains, a_domains[d]);
        if (!cJSON_IsArray(a)) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: missing intent array \"%s\"", path,
                            a_domains[d]);
            goto cleanup;
        }
    }
    static const char *const files[] = {"clinc150/train.json", "clinc150/val.json"};
    for (size_t f = 0; f < DR_ARRAY_LEN(files); f++) {
        free(path);
        path = data_path(b, files[f]);
        if (path == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        cJSON_Delete(arr);
        arr = NULL;
        rc = read_json(path, &arr, err);
        if (rc != DYNRAG_OK)
            goto cleanup;
        if (!cJSON_IsArray(arr)) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: expected an array of [text, intent]",
                            path);
            goto cleanup;
        }
        size_t item = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, arr)
        {
            const cJSON *t = cJSON_GetArrayItem(it, 0), *in = cJSON_GetArrayItem(it, 1);
            char where[1200];
            snprintf(where, sizeof(where), "%s: item %zu", path, item);
            if (!cJSON_IsArray(it) || !cJSON_IsString(t) || !cJSON_IsString(in)) {
                rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: expected [text, intent] strings",
                                where);
                goto cleanup;
            }
            if (is_a_intent(domains, in->valuestring)) {
                rc = add_record(b, t->valuestring, DYNRAG_DATASET_SRC_CLINC150, where, err);
                if (rc != DYNRAG_OK)
                    goto cleanup;
            }
            item++;
        }
    }
cleanup:
    cJSON_Delete(arr);
    cJSON_Delete(domains);
    free(path);
    return rc;
}

/* True for a decomposition step usable on its own: no "#N" reference to an
 * earlier step's answer and not a Wikidata-style "entity >> relation". */
static bool self_contained(const char *q)
{
    for (const char *p = q; *p; p++)
        if (p[0] == '#' && isdigit((unsigned char)p[1]))
            return false;
    return strstr(q, ">>") == NULL;
}

/* MuSiQue: the questions (C) and, with augment, the self-contained
 * decomposition steps (B, musique-sub). */
static int read_musique(builder *b, bool questions, bool subs, dynrag_error *err)
{
    cJSON *arr = NULL;
    char *path = data_path(b, "musique/dev_train.json");
    int rc = path ? read_json(path, &arr, err) : dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    if (rc != DYNRAG_OK)
        goto cleanup;
    if (!cJSON_IsArray(arr)) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: expected an array of questions", path);
        goto cleanup;
    }
    size_t item = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        char where[1200];
        snprintf(where, sizeof(where), "%s: item %zu", path, item++);
        if (!cJSON_IsObject(it)) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: expected an object", where);
            goto cleanup;
        }
        const char *q = NULL;
        rc = req_string(it, "question", where, &q, err);
        if (rc != DYNRAG_OK)
            goto cleanup;
        if (questions) {
            rc = add_record(b, q, DYNRAG_DATASET_SRC_MUSIQUE, where, err);
            if (rc != DYNRAG_OK)
                goto cleanup;
        }
        if (!subs)
            continue;
        const cJSON *dec = cJSON_GetObjectItemCaseSensitive(it, "question_decomposition");
        if (!cJSON_IsArray(dec)) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                            "%s: missing array \"question_decomposition\"", where);
            goto cleanup;
        }
        const cJSON *step;
        cJSON_ArrayForEach(step, dec)
        {
            const char *sq = NULL;
            rc = req_string(step, "question", where, &sq, err);
            if (rc != DYNRAG_OK)
                goto cleanup;
            if (self_contained(sq)) {
                rc = add_record(b, sq, DYNRAG_DATASET_SRC_MUSIQUE_SUB, where, err);
                if (rc != DYNRAG_OK)
                    goto cleanup;
            }
        }
    }
cleanup:
    cJSON_Delete(arr);
    free(path);
    return rc;
}

static int read_jsonl_rel(builder *b, const char *rel, jsonl_fn fn, dynrag_error *err)
{
    char *path = data_path(b, rel);
    if (path == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    int rc = read_jsonl(b, path, fn, err);
    free(path);
    return rc;
}

/* ---- deduplication, balancing, splitting ----------------------------------- */

/* Marks records whose normalised text was seen before as dropped, visiting
 * the holdout source first (holdout < 0: none) and then the read order. */
static int dedup(builder *b, int holdout, dynrag_error *err)
{
    size_t cap = 16;
    while (cap < b->n * 2 + 16)
        cap *= 2;
    size_t *table = malloc(cap * sizeof(*table)); /* record index + 1; 0 = empty */
    if (table == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    memset(table, 0, cap * sizeof(*table));
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < b->n; i++) {
            rec *r = &b->recs[i];
            if ((pass == 0) != (r->source == holdout))
                continue;
            size_t h = (size_t)dr_hash64(r->norm, strlen(r->norm), 0) & (cap - 1);
            for (;;) {
                if (table[h] == 0) {
                    table[h] = i + 1;
                    break;
                }
                if (strcmp(b->recs[table[h] - 1].norm, r->norm) == 0) {
                    r->dropped = true;
                    if (b->st)
                        b->st->duplicates[r->source]++;
                    break;
                }
                h = (h + 1) & (cap - 1);
            }
        }
    }
    free(table);
    return DYNRAG_OK;
}

static void shuffle(size_t *v, size_t n, dr_rng *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)dr_rng_below(rng, i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* Appends records idx[0..n) as JSON Lines to out. */
static int emit(const builder *b, const size_t *idx, size_t n, dr_buf *out)
{
    for (size_t i = 0; i < n; i++) {
        const rec *r = &b->recs[idx[i]];
        int rc = dr_buf_puts(out, "{\"text\":");
        if (rc == DYNRAG_OK)
            rc = dr_buf_json_str(out, r->text);
        if (rc == DYNRAG_OK)
            rc = dr_buf_printf(out, ",\"label\":\"%s\",\"source\":\"%s\"}\n",
                               label_names[source_label[r->source]], source_names[r->source]);
        if (rc != DYNRAG_OK)
            return rc;
    }
    return DYNRAG_OK;
}

static int write_jsonl(const builder *b, const char *name, const size_t *idx, size_t n,
                       dynrag_error *err)
{
    dr_buf out = {0};
    char *path = dr_asprintf("%s/%s", b->opt->out_dir, name);
    int rc = path ? emit(b, idx, n, &out) : DYNRAG_ERR_NOMEM;
    if (rc != DYNRAG_OK) {
        rc = dr_err_set(err, rc, "%s: cannot format output", name);
        goto cleanup;
    }
    rc = dr_write_file_atomic(path, out.data ? out.data : "", out.len, err);
cleanup:
    dr_buf_free(&out);
    free(path);
    return rc;
}

static int check_options(const dynrag_dataset_options *opt, int *holdout, dynrag_error *err)
{
    *holdout = -1;
    if (opt == NULL || opt->data_dir == NULL || opt->out_dir == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "data and output folders are required");
    if (!(opt->valid_frac >= 0.0 && opt->valid_frac <= 0.9))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "valid fraction %g is outside [0, 0.9]",
                          opt->valid_frac);
    if (!(opt->balance_ratio == 0.0 || (opt->balance_ratio >= 1.0 && opt->balance_ratio <= 1e6)))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "balance ratio %g must be 0 (off) or from 1 to 1e6",
                          opt->balance_ratio);
    if (!dr_is_dir(opt->data_dir))
        return dr_err_set(err, DYNRAG_ERR_NOTFOUND, "%s: data folder not found", opt->data_dir);
    if (opt->holdout != NULL) {
        for (int s = 0; s < DYNRAG_DATASET_SRC_MUSIQUE_SUB; s++)
            if (strcmp(opt->holdout, source_names[s]) == 0)
                *holdout = s;
        if (*holdout < 0)
            return dr_err_set(err, DYNRAG_ERR_INVALID,
                              "unknown holdout source '%s' (expected clinc150, nq, efficientqa, "
                              "musique or hotpotqa)",
                              opt->holdout);
    }
    return DYNRAG_OK;
}

int dynrag_dataset_complexity(const dynrag_dataset_options *opt, dynrag_dataset_stats *st,
                              dynrag_error *err)
{
    dynrag_dataset_stats local;
    if (st == NULL)
        st = &local;
    memset(st, 0, sizeof(*st));
    st->label_cap = SIZE_MAX;
    int holdout = -1;
    int rc = check_options(opt, &holdout, err);
    if (rc != DYNRAG_OK)
        return rc;

    builder b = {.opt = opt, .st = st};
    size_t *pool[DYNRAG_DATASET_N_LABELS] = {NULL};
    size_t npool[DYNRAG_DATASET_N_LABELS] = {0};
    size_t *train = NULL, *valid = NULL, *held = NULL;
    size_t ntrain = 0, nvalid = 0, nheld = 0;

    /* 1. Read every source (all files are checked before anything is written). */
    bool subs = opt->augment && holdout != DYNRAG_DATASET_SRC_MUSIQUE;
    rc = read_clinc(&b, err);
    if (rc == DYNRAG_OK)
        rc = read_jsonl_rel(&b, "nq-open/NQ-open.dev.jsonl", nq_dev_line, err);
    if (rc == DYNRAG_OK)
        rc = read_jsonl_rel(&b, "nq-open/NQ-open.efficientqa.dev.1.1.jsonl", efficientqa_line,
                            err);
    if (rc == DYNRAG_OK)
        rc = read_musique(&b, true, false, err);
    if (rc == DYNRAG_OK)
        rc = read_jsonl_rel(&b, "hotpotqa/dev300.jsonl", hotpot_line, err);
    if (rc == DYNRAG_OK && subs)
        rc = read_musique(&b, false, true, err);
    if (rc == DYNRAG_OK)
        rc = dedup(&b, holdout, err);
    if (rc != DYNRAG_OK)
        goto cleanup;

    /* 2. Per-label pools of kept, non-holdout, non-augmented records. */
    for (int l = 0; l < DYNRAG_DATASET_N_LABELS; l++) {
        pool[l] = malloc((b.n + 1) * sizeof(size_t));
        if (pool[l] == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
    }
    train = malloc((b.n + 1) * sizeof(size_t));
    valid = malloc((b.n + 1) * sizeof(size_t));
    held = malloc((b.n + 1) * sizeof(size_t));
    if (train == NULL || valid == NULL || held == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < b.n; i++) {
        const rec *r = &b.recs[i];
        if (r->dropped || r->source == DYNRAG_DATASET_SRC_MUSIQUE_SUB)
            continue;
        if (r->source == holdout)
            held[nheld++] = i;
        else
            pool[source_label[r->source]][npool[source_label[r->source]]++] = i;
    }

    /* 3. Balance: cap = min(max_per_label, ratio x smallest non-empty label). */
    size_t smallest = SIZE_MAX;
    for (int l = 0; l < DYNRAG_DATASET_N_LABELS; l++)
        if (npool[l] > 0 && npool[l] < smallest)
            smallest = npool[l];
    size_t cap = SIZE_MAX;
    if (opt->balance_ratio > 0 && smallest != SIZE_MAX)
        cap = (size_t)(opt->balance_ratio * (double)smallest);
    if (opt->max_per_label > 0 && opt->max_per_label < cap)
        cap = opt->max_per_label;
    st->label_cap = cap;
    for (int l = 0; l < DYNRAG_DATASET_N_LABELS; l++)
        if (npool[l] == 0)
            dr_log(DYNRAG_LOG_WARN, "dataset", "label %s has no examples", label_names[l]);

    /* 4. Seeded shuffle, subsample and split per label. */
    dr_rng rng;
    dr_rng_seed(&rng, opt->seed);
    for (int l = 0; l < DYNRAG_DATASET_N_LABELS; l++) {
        shuffle(pool[l], npool[l], &rng);
        size_t keep = DR_MIN(npool[l], cap);
        size_t nv = (size_t)(opt->valid_frac * (double)keep + 0.5);
        for (size_t k = 0; k < keep; k++) {
            size_t i = pool[l][k];
            if (k < nv) {
                valid[nvalid++] = i;
                st->valid[b.recs[i].source]++;
                st->valid_label[l]++;
            } else {
                train[ntrain++] = i;
                st->train[b.recs[i].source]++;
                st->train_label[l]++;
            }
        }
    }
    for (size_t i = 0; i < b.n; i++) {
        const rec *r = &b.recs[i];
        if (!r->dropped && r->source == DYNRAG_DATASET_SRC_MUSIQUE_SUB) {
            train[ntrain++] = i;
            st->train[r->source]++;
            st->train_label[source_label[r->source]]++;
        }
    }
    for (size_t k = 0; k < nheld; k++) {
        st->holdout[b.recs[held[k]].source]++;
        st->holdout_label[source_label[b.recs[held[k]].source]]++;
    }
    shuffle(train, ntrain, &rng);
    shuffle(valid, nvalid, &rng);

    /* 5. Write. */
    rc = dr_mkdirs(opt->out_dir, err);
    if (rc == DYNRAG_OK)
        rc = write_jsonl(&b, "train.jsonl", train, ntrain, err);
    if (rc == DYNRAG_OK)
        rc = write_jsonl(&b, "valid.jsonl", valid, nvalid, err);
    if (rc == DYNRAG_OK && holdout >= 0) {
        char name[64];
        snprintf(name, sizeof(name), "holdout-%s.jsonl", source_names[holdout]);
        rc = write_jsonl(&b, name, held, nheld, err);
    }
cleanup:
    for (int l = 0; l < DYNRAG_DATASET_N_LABELS; l++)
        free(pool[l]);
    free(train);
    free(valid);
    free(held);
    builder_free(&b);
    return rc;
}
