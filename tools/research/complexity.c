/*
 * complexity.c - the labelled query-complexity data set builder
 * (research/dataset.h, the research tools module): reads CLINC150, NQ-open, EfficientQA,
 * MuSiQue and HotpotQA, labels A/B/C, deduplicates, balances, splits and
 * writes JSON Lines.
 */
#include "research/dataset.h"

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
    "clinc150", "nq", "efficientqa", "musique", "hotpotqa", "musique-sub", "comparison",
    "comparison-single", "chain", "chain-single",
};
static const int source_label[DYNRAG_DATASET_N_SOURCES] = {
    LABEL_A, LABEL_B, LABEL_B, LABEL_C, LABEL_C, LABEL_B, LABEL_C, LABEL_B, LABEL_C, LABEL_B,
};
/* Augmented sources go to train only, after balancing. */
static bool is_augmented(int source)
{
    return source == DYNRAG_DATASET_SRC_MUSIQUE_SUB || source == DYNRAG_DATASET_SRC_COMPARISON ||
           source == DYNRAG_DATASET_SRC_COMPARISON_SINGLE || source == DYNRAG_DATASET_SRC_CHAIN ||
           source == DYNRAG_DATASET_SRC_CHAIN_SINGLE;
}

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
    bool eval;    /* eval_split: set aside into eval-<source>.jsonl */
} rec;

/* ---- comparison augmentation (augment_comparisons) ------------------------- */

/*
 * HotpotQA's comparison questions ("Who is older, X or Y?", "Are X and Y
 * both ...?") need one retrieval per entity, but MuSiQue (compositional
 * only) never shows that shape. The builder synthesises such questions
 * from entities it harvests from the other sources, never from HotpotQA
 * and never from the holdout source:
 *
 *   MuSiQue decomposition steps "subject >> relation" (answer): the
 *     relation types the subject and the answer (e.g. "place of birth":
 *     subject a person, answer a place; "performer": subject a work,
 *     answer a musician); natural steps "who ..."/"where ..." type their
 *     answer as a person/place when it looks like a name.
 *   NQ-open and EfficientQA: the first answer of a "who ..." question
 *     (person) or a "where ..." question (place) that looks like a name.
 *
 * Questions are drawn from templates per entity kind (below) with a
 * separately seeded generator, so the real records' split is the same
 * with or without the augmentation.
 */
enum { ENT_PERSON, ENT_WORK, ENT_PLACE, ENT_ORG, ENT_MUSICIAN, N_ENT_KINDS };
/* Work titles from NQ question text ("who sang X"): a pool of its own, used
 * by the chain augmentation only (the comparisons use the five kinds). */
enum { ENT_TITLE = N_ENT_KINDS };

typedef struct ent_pool {
    char **v; /* owned strings */
    size_t n, alloc;
} ent_pool;

/* relation -> kind of subject / kind of answer (-1: not used). */
static const struct {
    const char *rel;
    int subject, answer;
} relation_kinds[] = {
    {"place of birth", ENT_PERSON, ENT_PLACE},
    {"place of death", ENT_PERSON, ENT_PLACE},
    {"country of citizenship", ENT_PERSON, -1},
    {"educated at", ENT_PERSON, ENT_ORG},
    {"employer", ENT_PERSON, ENT_ORG},
    {"member of sports team", ENT_PERSON, ENT_ORG},
    {"spouse", ENT_PERSON, ENT_PERSON},
    {"father", ENT_PERSON, ENT_PERSON},
    {"mother", ENT_PERSON, ENT_PERSON},
    {"child", ENT_PERSON, ENT_PERSON},
    {"sibling", ENT_PERSON, ENT_PERSON},
    {"work location", ENT_PERSON, ENT_PLACE},
    {"performer", ENT_WORK, ENT_MUSICIAN},
    {"cast member", ENT_WORK, ENT_PERSON},
    {"director", ENT_WORK, ENT_PERSON},
    {"author", ENT_WORK, ENT_PERSON},
    {"composer", ENT_WORK, ENT_PERSON},
    {"creator", ENT_WORK, ENT_PERSON},
    {"producer", ENT_WORK, ENT_PERSON},
    {"publication date", ENT_WORK, -1},
    {"record label", ENT_WORK, ENT_ORG},
    {"platform", ENT_WORK, -1},
    {"headquarters location", ENT_ORG, ENT_PLACE},
    {"owned by", ENT_ORG, ENT_ORG},
    {"manufacturer", -1, ENT_ORG},
    {"operator", -1, ENT_ORG},
    {"founded by", ENT_ORG, ENT_PERSON},
    {"location of formation", ENT_MUSICIAN, ENT_PLACE},
    {"located in the administrative territorial entity", ENT_PLACE, ENT_PLACE},
    {"country", ENT_PLACE, ENT_PLACE},
    {"capital", ENT_PLACE, ENT_PLACE},
    {"shares border with", ENT_PLACE, ENT_PLACE},
    {"contains administrative territorial entity", ENT_PLACE, ENT_PLACE},
};

/* Templates: {X} and {Y} are two entities of the kind, {A} one of the
 * kind's attributes. */
static const char *const tpl_person[] = {
    "Who is older, {X} or {Y}?",
    "Who was born first, {X} or {Y}?",
    "Who was born earlier, {X} or {Y}?",
    "Who is younger, {X} or {Y}?",
    "Who died first, {X} or {Y}?",
    "Who lived longer, {X} or {Y}?",
    "Which person was born later, {X} or {Y}?",
    "Are {X} and {Y} of the same nationality?",
    "Were {X} and {Y} born in the same country?",
    "Are {X} and {Y} both {A}?",
    "Were both {X} and {Y} {A}?",
    "{X} and {Y} are both what kind of professionals?",
    "What nationality do {X} and {Y} share?",
    "Did {X} and {Y} have the same profession?",
    "Between {X} and {Y}, who was born first?",
    "{X} or {Y}, who is older?",
    "Which of {X} and {Y} has won more awards?",
    "Did {X} and {Y} attend the same university?",
    "How many years apart were {X} and {Y} born?",
    "What profession do {X} and {Y} have in common?",
};
static const char *const attr_person[] = {
    "American", "British", "actors", "singers", "writers", "film directors", "politicians",
    "musicians", "footballers", "from the same country", "still alive", "novelists",
    "songwriters", "born in the same decade",
};
static const char *const tpl_work[] = {
    "Which came out first, {X} or {Y}?",
    "Which was released earlier, {X} or {Y}?",
    "Which was released first, {X} or {Y}?",
    "Which film came out first, {X} or {Y}?",
    "Which is older, {X} or {Y}?",
    "Were {X} and {Y} released in the same year?",
    "Are {X} and {Y} both {A}?",
    "Were {X} and {Y} directed by the same person?",
    "Were {X} and {Y} written by the same author?",
    "Which was published first, {X} or {Y}?",
    "Between {X} and {Y}, which came out later?",
    "{X} or {Y}, which was released first?",
    "Do {X} and {Y} have the same director?",
    "Which was made more recently, {X} or {Y}?",
};
static const char *const attr_work[] = {
    "films", "American films", "novels", "albums", "songs", "documentaries",
    "from the same country", "comedies", "released in the 1990s", "based on books",
};
static const char *const tpl_place[] = {
    "Which is further north, {X} or {Y}?",
    "Which has a larger population, {X} or {Y}?",
    "Are {X} and {Y} in the same country?",
    "Are {X} and {Y} both {A}?",
    "Which is bigger, {X} or {Y}?",
    "Is {X} or {Y} closer to the equator?",
    "Which city is more populous, {X} or {Y}?",
    "Are both {X} and {Y} located in the same state?",
    "Which is further south, {X} or {Y}?",
    "Between {X} and {Y}, which has more inhabitants?",
    "Which was founded first, {X} or {Y}?",
    "What country are {X} and {Y} both located in?",
};
static const char *const attr_place[] = {
    "cities", "in the same country", "in Europe", "capital cities", "on the coast",
    "in the United States", "county seats", "in the same region",
};
static const char *const tpl_org[] = {
    "Which was founded first, {X} or {Y}?",
    "Which was established earlier, {X} or {Y}?",
    "Are {X} and {Y} both {A}?",
    "Are {X} and {Y} headquartered in the same country?",
    "Which has more employees, {X} or {Y}?",
    "Which is older, {X} or {Y}?",
    "Were {X} and {Y} founded in the same city?",
    "Between {X} and {Y}, which was founded later?",
    "What type of organization are both {X} and {Y}?",
    "Which has more members, {X} or {Y}?",
};
static const char *const attr_org[] = {
    "companies", "American companies", "based in the same country", "still active",
    "universities", "publicly traded", "sports teams", "record labels",
};
static const char *const tpl_musician[] = {
    "Which band formed first, {X} or {Y}?",
    "Who released more albums, {X} or {Y}?",
    "Are {X} and {Y} both {A}?",
    "Are {X} and {Y} from the same country?",
    "Which was active first, {X} or {Y}?",
    "Did {X} and {Y} perform the same genre of music?",
    "Who has more members, {X} or {Y}?",
    "Between {X} and {Y}, who started their career first?",
    "What genre of music do {X} and {Y} both play?",
    "Were {X} and {Y} signed to the same record label?",
};
static const char *const attr_musician[] = {
    "bands", "rock bands", "American", "from the same country", "solo artists",
    "pop acts", "British", "still active",
};


/* Single-entity counterparts (label B): the same entities and vocabulary
 * ("born", "founded", "released") with one lookup, so that the model has
 * to learn the two-entity structure rather than the words. */
static const char *const one_person[] = {
    "When was {X} born?",          "Where was {X} born?",
    "What nationality is {X}?",    "What is {X}'s profession?",
    "When did {X} die?",           "Where did {X} go to university?",
    "How old is {X}?",             "What is {X} known for?",
    "Who is {X} married to?",      "What year was {X} born?",
};
static const char *const one_work[] = {
    "When did {X} come out?",      "When was {X} released?",
    "Who directed {X}?",           "Who wrote {X}?",
    "What year was {X} published?", "Who starred in {X}?",
    "Who performed {X}?",          "What genre is {X}?",
};
static const char *const one_place[] = {
    "Where is {X} located?",       "What is the population of {X}?",
    "What country is {X} in?",     "How big is {X}?",
    "When was {X} founded?",       "What state is {X} in?",
};
static const char *const one_org[] = {
    "When was {X} founded?",       "Where is {X} headquartered?",
    "Who founded {X}?",            "How many employees does {X} have?",
    "Who owns {X}?",               "What does {X} do?",
};
static const char *const one_musician[] = {
    "When did {X} form?",          "Where is {X} from?",
    "What genre does {X} play?",   "How many albums has {X} released?",
    "Who are the members of {X}?", "What record label is {X} signed to?",
};

#define KIND_TEMPLATES(tpl, attr, one) \
    {tpl, DR_ARRAY_LEN(tpl), attr, DR_ARRAY_LEN(attr), one, DR_ARRAY_LEN(one)}
static const struct {
    const char *const *tpl; /* comparisons of two entities (C) */
    size_t ntpl;
    const char *const *attr;
    size_t nattr;
    const char *const *one; /* one entity (B) */
    size_t none;
} kind_templates[N_ENT_KINDS] = {
    [ENT_PERSON] = KIND_TEMPLATES(tpl_person, attr_person, one_person),
    [ENT_WORK] = KIND_TEMPLATES(tpl_work, attr_work, one_work),
    [ENT_PLACE] = KIND_TEMPLATES(tpl_place, attr_place, one_place),
    [ENT_ORG] = KIND_TEMPLATES(tpl_org, attr_org, one_org),
    [ENT_MUSICIAN] = KIND_TEMPLATES(tpl_musician, attr_musician, one_musician),
};
#undef KIND_TEMPLATES

typedef struct builder {
    const dynrag_dataset_options *opt;
    dynrag_dataset_stats *st;
    rec *recs;
    size_t n, alloc;
    bool harvest[DYNRAG_DATASET_N_SOURCES]; /* take entities from this source */
    bool eval_mark; /* records added now are eval-split records */
    ent_pool ents[N_ENT_KINDS + 1]; /* the kinds, then ENT_TITLE */
} builder;

static void builder_free(builder *b)
{
    for (size_t i = 0; i < b->n; i++) {
        dr_free(b->recs[i].text);
        dr_free(b->recs[i].norm);
    }
    dr_free(b->recs);
    b->recs = NULL;
    b->n = b->alloc = 0;
    for (int k = 0; k <= ENT_TITLE; k++) {
        for (size_t i = 0; i < b->ents[k].n; i++)
            dr_free(b->ents[k].v[i]);
        dr_free(b->ents[k].v);
        b->ents[k] = (ent_pool){0};
    }
}

/* Trims s and collapses runs of white space to one space. Returns a
 * malloc'ed copy ("" for blank input) or NULL when out of memory. */
static char *clean_text(const char *s)
{
    size_t n = strlen(s);
    char *out = dr_malloc(n + 1);
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
        dr_free(c);
        return DYNRAG_OK;
    }
    if (strlen(c) > MAX_TEXT) {
        dr_free(c);
        return dr_err_set(err, DYNRAG_ERR_LIMIT, "%s: text longer than %d bytes", where,
                          MAX_TEXT);
    }
    char *nm = normalise(c);
    if (nm == NULL || (b->n == b->alloc && b->alloc >= SIZE_MAX / 2)) {
        dr_free(c);
        dr_free(nm);
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    if (b->n == b->alloc) {
        size_t na = b->alloc ? b->alloc * 2 : 4096;
        rec *r = dr_realloc(b->recs, na * sizeof(*r));
        if (r == NULL) {
            dr_free(c);
            dr_free(nm);
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        }
        b->recs = r;
        b->alloc = na;
    }
    b->recs[b->n++] =
        (rec){.text = c, .norm = nm, .source = source, .dropped = false, .eval = b->eval_mark};
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
    dr_free(data);
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
    dr_free(data);
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

static int harvest_nq(builder *b, const cJSON *obj, const char *q, dynrag_error *err);
static int harvest_step(builder *b, const char *q, const char *answer, dynrag_error *err);

static int nq_line(builder *b, const cJSON *obj, const char *where, dynrag_error *err,
                   int source)
{
    const char *q = NULL;
    int rc = req_string(obj, "question", where, &q, err);
    if (rc == DYNRAG_OK)
        rc = add_record(b, q, source, where, err);
    if (rc == DYNRAG_OK && b->harvest[source])
        rc = harvest_nq(b, obj, q, err);
    return rc;
}

static int nq_dev_line(builder *b, const cJSON *obj, const char *where, dynrag_error *err)
{
    return nq_line(b, obj, where, err, DYNRAG_DATASET_SRC_NQ);
}

static int efficientqa_line(builder *b, const cJSON *obj, const char *where, dynrag_error *err)
{
    b->eval_mark = b->opt->eval_split;
    int rc = nq_line(b, obj, where, err, DYNRAG_DATASET_SRC_EFFICIENTQA);
    b->eval_mark = false;
    return rc;
}

static int hotpot_line(builder *b, const cJSON *obj, const char *where, dynrag_error *err)
{
    const char *q = NULL;
    int rc = req_string(obj, "question_text", where, &q, err);
    return rc != DYNRAG_OK ? rc : add_record(b, q, DYNRAG_DATASET_SRC_HOTPOTQA, where, err);
}

/* True when intent belongs to the domains small_talk or meta of domains. */
static bool is_talk_intent(const cJSON *domains, const char *intent)
{
    for (size_t d = 0; d < DR_ARRAY_LEN(a_domains); d++) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(domains, a_domains[d]))
        {
            if (cJSON_IsString(it) && strcmp(it->valuestring, intent) == 0)
                return true;
        }
    }
    return false;
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
        dr_free(path);
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
            /* eval_split: val.json is held out, its small-talk and meta utterances
             * (not the utility intents) are the A evaluation set */
            bool eval = b->opt->eval_split && f == 1;
            if (eval ? is_talk_intent(domains, in->valuestring)
                     : is_a_intent(domains, in->valuestring)) {
                b->eval_mark = eval;
                rc = add_record(b, t->valuestring, DYNRAG_DATASET_SRC_CLINC150, where, err);
                b->eval_mark = false;
                if (rc != DYNRAG_OK)
                    goto cleanup;
            }
            item++;
        }
    }
cleanup:
    cJSON_Delete(arr);
    cJSON_Delete(domains);
    dr_free(path);
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
        /* eval_split: every fifth question (items 4, 9, ...) is held out, with its
         * sub-questions and entities */
        bool eval = b->opt->eval_split && item % 5 == 0;
        if (questions) {
            b->eval_mark = eval;
            rc = add_record(b, q, DYNRAG_DATASET_SRC_MUSIQUE, where, err);
            b->eval_mark = false;
            if (rc != DYNRAG_OK)
                goto cleanup;
        }
        if (eval)
            continue;
        bool harvest = questions && b->harvest[DYNRAG_DATASET_SRC_MUSIQUE];
        if (!subs && !harvest)
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
            if (harvest) {
                const cJSON *ans = cJSON_GetObjectItemCaseSensitive(step, "answer");
                rc = harvest_step(b, sq, cJSON_IsString(ans) ? ans->valuestring : NULL, err);
                if (rc != DYNRAG_OK)
                    goto cleanup;
            }
            if (subs && self_contained(sq)) {
                rc = add_record(b, sq, DYNRAG_DATASET_SRC_MUSIQUE_SUB, where, err);
                if (rc != DYNRAG_OK)
                    goto cleanup;
            }
        }
    }
cleanup:
    cJSON_Delete(arr);
    dr_free(path);
    return rc;
}

/* True when s can stand in a template: 2..60 bytes, 1..6 words, starting
 * with a capital, a digit or a non-ASCII letter, none of #<>?"(){}[];:|
 * (no template braces, no MuSiQue "#1" references). With name, 2..4 words,
 * each capitalised (a person's name). */
static bool entity_ok(const char *s, bool name)
{
    size_t len = strlen(s);
    if (len < 2 || len > 60)
        return false;
    unsigned char c0 = (unsigned char)s[0];
    if (!(isupper(c0) || isdigit(c0) || c0 >= 0x80))
        return false;
    int words = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (strchr("#<>?\"(){}[];:|\\", c) != NULL || c < 0x20)
            return false;
        if (c == ' ') {
            words++;
            unsigned char d = (unsigned char)s[i + 1];
            if (name && !(isupper(d) || d >= 0x80))
                return false;
        }
    }
    return name ? words >= 2 && words <= 4 : words <= 6;
}

/* Appends a cleaned copy of s to the kind's pool when it passes
 * entity_ok (silently skipped otherwise). Fails only on out of memory. */
static int add_entity(builder *b, int kind, const char *s, bool name, dynrag_error *err)
{
    if (kind < 0 || s == NULL)
        return DYNRAG_OK;
    char *c = clean_text(s);
    if (c == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    if (!entity_ok(c, name) || !dr_utf8_valid(c, strlen(c), NULL)) {
        dr_free(c);
        return DYNRAG_OK;
    }
    ent_pool *p = &b->ents[kind];
    if (p->n == p->alloc) {
        size_t na = p->alloc ? p->alloc * 2 : 256;
        char **v = dr_realloc(p->v, na * sizeof(*v));
        if (v == NULL) {
            dr_free(c);
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        }
        p->v = v;
        p->alloc = na;
    }
    p->v[p->n++] = c;
    return DYNRAG_OK;
}

/* True when q starts with word (case-insensitive) followed by a space. */
static bool starts_with_word(const char *q, const char *word)
{
    size_t n = 0;
    while (word[n] != '\0' && tolower((unsigned char)q[n]) == word[n])
        n++;
    return word[n] == '\0' && q[n] == ' ';
}

/* Harvests the entities of one MuSiQue decomposition step (see the section
 * comment): "subject >> relation" by the relation table, natural "who" /
 * "where" steps by their answer. */
static int harvest_step(builder *b, const char *q, const char *answer, dynrag_error *err)
{
    const char *sep = strstr(q, ">>");
    if (sep == NULL) {
        if (answer == NULL || !self_contained(q))
            return DYNRAG_OK;
        if (starts_with_word(q, "who"))
            return add_entity(b, ENT_PERSON, answer, true, err);
        if (starts_with_word(q, "where"))
            return add_entity(b, ENT_PLACE, answer, false, err);
        return DYNRAG_OK;
    }
    const char *rel = sep + 2;
    while (*rel == ' ')
        rel++;
    for (size_t i = 0; i < DR_ARRAY_LEN(relation_kinds); i++) {
        if (strcmp(rel, relation_kinds[i].rel) != 0)
            continue;
        char subject[256];
        size_t n = (size_t)(sep - q);
        while (n > 0 && q[n - 1] == ' ')
            n--;
        if (n >= sizeof(subject))
            return DYNRAG_OK;
        memcpy(subject, q, n);
        subject[n] = '\0';
        int k = relation_kinds[i].subject;
        int rc = add_entity(b, k, subject, k == ENT_PERSON, err);
        k = relation_kinds[i].answer;
        if (rc == DYNRAG_OK && answer != NULL)
            rc = add_entity(b, k, answer, k == ENT_PERSON, err);
        return rc;
    }
    return DYNRAG_OK;
}

/* Harvests a work title from the text of an NQ-style question: "who
 * sang/sings/wrote/starred in T", "who plays/played R in/on T", "when did T
 * come out", without a leading "the movie/song/film/tv show/..." and a
 * trailing " lyrics"; the first letter upper-cased (NQ is lower case; the
 * classifier folds case). Into the ENT_TITLE pool when it passes
 * entity_ok. */
static int harvest_title(builder *b, const char *q, dynrag_error *err)
{
    static const char *const heads[] = {"who sang ", "who sings ", "who wrote ",
                                        "who starred in ", "when did "};
    static const char *const kinds[] = {"the movie ", "the song ", "the film ", "the tv show ",
                                        "the tv series ", "the show ", "the book ", "the novel ",
                                        "the album "};
    const char *t = NULL;
    for (size_t i = 0; i < DR_ARRAY_LEN(heads) && t == NULL; i++)
        if (strncmp(q, heads[i], strlen(heads[i])) == 0)
            t = q + strlen(heads[i]);
    if (t == NULL && (strncmp(q, "who plays ", 10) == 0 || strncmp(q, "who played ", 11) == 0)) {
        const char *in = strstr(q + 10, " in "), *on = strstr(q + 10, " on ");
        const char *m = in == NULL ? on : on == NULL ? in : in < on ? in : on;
        t = m ? m + 4 : NULL;
    }
    if (t == NULL)
        return DYNRAG_OK;
    for (size_t i = 0; i < DR_ARRAY_LEN(kinds); i++)
        if (strncmp(t, kinds[i], strlen(kinds[i])) == 0)
            t += strlen(kinds[i]);
    char title[128];
    size_t n = strlen(t);
    bool come_out = strncmp(q, "when did ", 9) == 0;
    if (come_out) {
        if (n < 9 || strcmp(t + n - 9, " come out") != 0)
            return DYNRAG_OK;
        n -= 9;
    }
    if (n >= 7 && strncmp(t + n - 7, " lyrics", 7) == 0)
        n -= 7;
    if (n < 2 || n >= sizeof(title))
        return DYNRAG_OK;
    memcpy(title, t, n);
    title[n] = '\0';
    title[0] = (char)toupper((unsigned char)title[0]);
    return add_entity(b, ENT_TITLE, title, false, err);
}

/* Harvests the first answer of an NQ-style "who"/"where" question, and a
 * work title from the question (harvest_title). */
static int harvest_nq(builder *b, const cJSON *obj, const char *q, dynrag_error *err)
{
    int rc = harvest_title(b, q, err);
    if (rc != DYNRAG_OK)
        return rc;
    const cJSON *ans = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(obj, "answer"), 0);
    if (!cJSON_IsString(ans) || ans->valuestring == NULL)
        return DYNRAG_OK;
    if (starts_with_word(q, "who"))
        return add_entity(b, ENT_PERSON, ans->valuestring, true, err);
    if (starts_with_word(q, "where"))
        return add_entity(b, ENT_PLACE, ans->valuestring, false, err);
    return DYNRAG_OK;
}

/* Writes template tpl with {X}, {Y}, {A} replaced into out. */
static int fill_template(dr_buf *out, const char *tpl, const char *x, const char *y,
                         const char *a)
{
    dr_buf_reset(out);
    int rc = DYNRAG_OK;
    for (const char *p = tpl; *p && rc == DYNRAG_OK; p++) {
        if (p[0] == '{' && p[1] != '\0' && p[2] == '}') {
            const char *v = p[1] == 'X' ? x : p[1] == 'Y' ? y : a;
            rc = dr_buf_puts(out, v);
            p += 2;
        } else {
            rc = dr_buf_putc(out, *p);
        }
    }
    return rc;
}

/* Picks a template uniformly among the `single` (one-entity) or comparison
 * templates of the kinds with at least two entities; sets *kind. total is
 * their count (> 0). */
static const char *pick_template(const builder *b, dr_rng *rng, bool single, size_t total,
                                 int *kind)
{
    size_t t = (size_t)dr_rng_below(rng, total);
    for (int k = 0; k < N_ENT_KINDS; k++) {
        if (b->ents[k].n < 2)
            continue;
        size_t n = single ? kind_templates[k].none : kind_templates[k].ntpl;
        if (t < n) {
            *kind = k;
            return single ? kind_templates[k].one[t] : kind_templates[k].tpl[t];
        }
        t -= n;
    }
    return NULL; /* not reached: total counts the same templates */
}

/*
 * Adds opt->augment_comparisons synthetic comparison questions (source
 * "comparison", label C) and as many single-entity questions (source
 * "comparison-single", label B) drawn from the harvested entity pools:
 * each picks a template uniformly among the templates of kinds with at
 * least two entities, then entities of that kind (two different ones for
 * a comparison) and an attribute for {A}, all from a generator seeded by
 * opt->seed alone. Adds nothing (with a warning) when no kind has two
 * entities. Fails only on out of memory.
 */
static int generate_comparisons(builder *b, dynrag_error *err)
{
    size_t total[2] = {0, 0}; /* comparison, single */
    for (int k = 0; k < N_ENT_KINDS; k++) {
        if (b->ents[k].n >= 2) {
            total[0] += kind_templates[k].ntpl;
            total[1] += kind_templates[k].none;
        }
    }
    if (total[0] == 0) {
        dr_log(DYNRAG_LOG_WARN, "dataset", "comparison augmentation: no entities harvested");
        return DYNRAG_OK;
    }
    dr_rng rng;
    dr_rng_seed(&rng, b->opt->seed ^ UINT64_C(0x636f6d7061726973)); /* "comparis" */
    dr_buf text = {0};
    int rc = DYNRAG_OK;
    for (size_t i = 0; i < b->opt->augment_comparisons && rc == DYNRAG_OK; i++) {
        for (int single = 0; single < 2 && rc == DYNRAG_OK; single++) {
            int k = 0;
            const char *tpl = pick_template(b, &rng, single, total[single], &k);
            const ent_pool *p = &b->ents[k];
            const char *x = p->v[dr_rng_below(&rng, p->n)];
            const char *y = x;
            for (int tries = 0; !single && tries < 32 && strcmp(x, y) == 0; tries++)
                y = p->v[dr_rng_below(&rng, p->n)];
            const char *a =
                kind_templates[k].attr[dr_rng_below(&rng, kind_templates[k].nattr)];
            if (!single && strcmp(x, y) == 0)
                continue; /* a pool of one distinct name */
            char where[64];
            snprintf(where, sizeof(where), "comparison augmentation %zu", i);
            rc = fill_template(&text, tpl, x, y, a);
            if (rc != DYNRAG_OK)
                rc = dr_err_set(err, rc, "%s: cannot format", where);
            else
                rc = add_record(b, text.data, single ? DYNRAG_DATASET_SRC_COMPARISON_SINGLE
                                                     : DYNRAG_DATASET_SRC_COMPARISON,
                                where, err);
        }
    }
    dr_buf_free(&text);
    return rc;
}

/* ---- compositional augmentation (augment_chains) ---------------------------- */

/*
 * MuSiQue's questions are compositional chains ("When was the spouse of the
 * director of X born?"): each relation noun phrase is one lookup. The
 * builder composes such chains from a hand-written table of relation noun
 * phrases typed by the kind of their argument and of their result, and
 * question heads typed by the kind they ask about, over the entities
 * harvested for the comparison augmentation plus the NQ work titles
 * (harvest_title), never from HotpotQA, never from the holdout source. Depth = relations + (1 for a lookup head such as "When
 * was {X} born?", 0 for an identity head such as "Who is {X}?"); depth 2..3
 * is labelled C (source "chain"), depth 1 B (source "chain-single"), with
 * the same tables, so the model sees depth rather than vocabulary. The
 * phrases were written from the general shape of such questions, not
 * mined from the MuSiQue or HotpotQA files.
 */
static const struct {
    const char *np; /* {X}: the argument */
    int arg, res;   /* entity kinds */
} chain_rels[] = {
    {"the spouse of {X}", ENT_PERSON, ENT_PERSON},
    {"the wife of {X}", ENT_PERSON, ENT_PERSON},
    {"the husband of {X}", ENT_PERSON, ENT_PERSON},
    {"the father of {X}", ENT_PERSON, ENT_PERSON},
    {"the mother of {X}", ENT_PERSON, ENT_PERSON},
    {"the son of {X}", ENT_PERSON, ENT_PERSON},
    {"the daughter of {X}", ENT_PERSON, ENT_PERSON},
    {"the brother of {X}", ENT_PERSON, ENT_PERSON},
    {"the sister of {X}", ENT_PERSON, ENT_PERSON},
    {"the birthplace of {X}", ENT_PERSON, ENT_PLACE},
    {"the city where {X} was born", ENT_PERSON, ENT_PLACE},
    {"the place where {X} died", ENT_PERSON, ENT_PLACE},
    {"the hometown of {X}", ENT_PERSON, ENT_PLACE},
    {"the country of citizenship of {X}", ENT_PERSON, ENT_PLACE},
    {"the country {X} is from", ENT_PERSON, ENT_PLACE},
    {"the team of {X}", ENT_PERSON, ENT_ORG},
    {"the university {X} attended", ENT_PERSON, ENT_ORG},
    {"the employer of {X}", ENT_PERSON, ENT_ORG},
    {"the party of {X}", ENT_PERSON, ENT_ORG},
    {"the record label of {X}", ENT_PERSON, ENT_ORG},
    {"the band {X} belonged to", ENT_PERSON, ENT_ORG},
    {"the first album of {X}", ENT_PERSON, ENT_WORK},
    {"the debut film of {X}", ENT_PERSON, ENT_WORK},
    {"the best-known novel by {X}", ENT_PERSON, ENT_WORK},
    {"the last film directed by {X}", ENT_PERSON, ENT_WORK},
    {"the director of {X}", ENT_WORK, ENT_PERSON},
    {"the author of {X}", ENT_WORK, ENT_PERSON},
    {"the composer of {X}", ENT_WORK, ENT_PERSON},
    {"the performer of {X}", ENT_WORK, ENT_PERSON},
    {"the producer of {X}", ENT_WORK, ENT_PERSON},
    {"the creator of {X}", ENT_WORK, ENT_PERSON},
    {"the lead actor in {X}", ENT_WORK, ENT_PERSON},
    {"the singer of {X}", ENT_WORK, ENT_PERSON},
    {"the publisher of {X}", ENT_WORK, ENT_ORG},
    {"the studio that made {X}", ENT_WORK, ENT_ORG},
    {"the network that aired {X}", ENT_WORK, ENT_ORG},
    {"the country where {X} was filmed", ENT_WORK, ENT_PLACE},
    {"the capital of {X}", ENT_PLACE, ENT_PLACE},
    {"the country of {X}", ENT_PLACE, ENT_PLACE},
    {"the country where {X} is located", ENT_PLACE, ENT_PLACE},
    {"the largest city of {X}", ENT_PLACE, ENT_PLACE},
    {"the state containing {X}", ENT_PLACE, ENT_PLACE},
    {"the county of {X}", ENT_PLACE, ENT_PLACE},
    {"the mayor of {X}", ENT_PLACE, ENT_PERSON},
    {"the president of {X}", ENT_PLACE, ENT_PERSON},
    {"the governor of {X}", ENT_PLACE, ENT_PERSON},
    {"the founder of {X}", ENT_ORG, ENT_PERSON},
    {"the CEO of {X}", ENT_ORG, ENT_PERSON},
    {"the owner of {X}", ENT_ORG, ENT_PERSON},
    {"the head coach of {X}", ENT_ORG, ENT_PERSON},
    {"the city where {X} is headquartered", ENT_ORG, ENT_PLACE},
    {"the home city of {X}", ENT_ORG, ENT_PLACE},
    {"the country where {X} was founded", ENT_ORG, ENT_PLACE},
    {"the parent company of {X}", ENT_ORG, ENT_ORG},
    {"the league of {X}", ENT_ORG, ENT_ORG},
    /* possessives */
    {"{X}'s spouse", ENT_PERSON, ENT_PERSON},
    {"{X}'s father", ENT_PERSON, ENT_PERSON},
    {"{X}'s mother", ENT_PERSON, ENT_PERSON},
    {"{X}'s birthplace", ENT_PERSON, ENT_PLACE},
    {"{X}'s record label", ENT_PERSON, ENT_ORG},
    {"{X}'s director", ENT_WORK, ENT_PERSON},
    {"{X}'s producer", ENT_WORK, ENT_PERSON},
    {"{X}'s performer", ENT_WORK, ENT_PERSON},
    {"{X}'s author", ENT_WORK, ENT_PERSON},
    {"{X}'s capital", ENT_PLACE, ENT_PLACE},
    {"{X}'s founder", ENT_ORG, ENT_PERSON},
    /* relative clauses */
    {"the team {X} plays for", ENT_PERSON, ENT_ORG},
    {"the record label {X} belongs to", ENT_PERSON, ENT_ORG},
    {"the school where {X} studied", ENT_PERSON, ENT_ORG},
    {"the actor who starred in {X}", ENT_WORK, ENT_PERSON},
    {"the singer who performed {X}", ENT_WORK, ENT_PERSON},
    {"the man who directed {X}", ENT_WORK, ENT_PERSON},
    {"the person who wrote {X}", ENT_WORK, ENT_PERSON},
    {"the company that published {X}", ENT_WORK, ENT_ORG},
    {"the network that broadcast {X}", ENT_WORK, ENT_ORG},
    {"the province that contains {X}", ENT_PLACE, ENT_PLACE},
    {"the state where {X} is located", ENT_PLACE, ENT_PLACE},
    {"the river that flows through {X}", ENT_PLACE, ENT_PLACE},
    {"the person who founded {X}", ENT_ORG, ENT_PERSON},
    {"the city where {X} has its headquarters", ENT_ORG, ENT_PLACE},
    {"the league that {X} plays in", ENT_ORG, ENT_ORG},
};

/* Question heads: {X} is a noun phrase (or a name) of the kind; lookup 1
 * when the head itself asks for one more fact, 0 when it only asks what
 * the noun phrase denotes. */
static const struct {
    const char *q;
    int kind, lookup;
} chain_heads[] = {
    {"When was {X} born?", ENT_PERSON, 1},
    {"Who is {X} married to?", ENT_PERSON, 1},
    {"Where was {X} born?", ENT_PERSON, 1},
    {"When did {X} die?", ENT_PERSON, 1},
    {"What is the nationality of {X}?", ENT_PERSON, 1},
    {"Where did {X} go to college?", ENT_PERSON, 1},
    {"How old was {X} when they died?", ENT_PERSON, 1},
    {"Who is {X}?", ENT_PERSON, 0},
    {"Who was {X}?", ENT_PERSON, 0},
    {"Name {X}.", ENT_PERSON, 0},
    {"When was {X} released?", ENT_WORK, 1},
    {"Who directed {X}?", ENT_WORK, 1},
    {"Who wrote {X}?", ENT_WORK, 1},
    {"Who sang {X}?", ENT_WORK, 1},
    {"What genre is {X}?", ENT_WORK, 1},
    {"What is {X}?", ENT_WORK, 0},
    {"What is the population of {X}?", ENT_PLACE, 1},
    {"What is the capital of {X}?", ENT_PLACE, 1},
    {"What continent is {X} in?", ENT_PLACE, 1},
    {"What language is spoken in {X}?", ENT_PLACE, 1},
    {"Who is the mayor of {X}?", ENT_PLACE, 1},
    {"What is {X}?", ENT_PLACE, 0},
    {"Which city is {X}?", ENT_PLACE, 0},
    {"When was {X} founded?", ENT_ORG, 1},
    {"Who founded {X}?", ENT_ORG, 1},
    {"Where is {X} based?", ENT_ORG, 1},
    {"How many employees does {X} have?", ENT_ORG, 1},
    {"What is {X}?", ENT_ORG, 0},
    {"Which company is {X}?", ENT_ORG, 0},
    {"In which county was {X} born?", ENT_PERSON, 1},
    {"What award did {X} win?", ENT_PERSON, 1},
    {"Who did {X} play in the film?", ENT_PERSON, 1},
    {"What record label does {X} belong to?", ENT_PERSON, 1},
    {"Who plays the lead role in {X}?", ENT_WORK, 1},
    {"What year did {X} come out?", ENT_WORK, 1},
    {"Who was in charge of {X}?", ENT_PLACE, 1},
    {"When was {X} established?", ENT_PLACE, 1},
    {"Where is {X} located?", ENT_PLACE, 1},
    {"Who owns {X}?", ENT_ORG, 1},
    {"What year was {X} founded?", ENT_ORG, 1},
    {"Who is the chairman of {X}?", ENT_ORG, 1},
};

/* Writes into out a noun phrase of kind `kind` built from `rels` relations
 * over one harvested entity (rels 0: the entity itself), choosing each
 * relation uniformly among those with that result kind. Returns
 * DYNRAG_OK, DYNRAG_ERR_NOTFOUND when the chain reached a kind with no
 * entities or no relation (the caller draws again), or DYNRAG_ERR_NOMEM. */
static int chain_np(const builder *b, dr_rng *rng, int kind, int rels, dr_buf *out)
{
    if (rels == 0) {
        /* Works: the harvested works and the NQ titles together. */
        const ent_pool *p = &b->ents[kind];
        const ent_pool *q = kind == ENT_WORK ? &b->ents[ENT_TITLE] : NULL;
        size_t n = p->n + (q ? q->n : 0);
        if (n == 0)
            return DYNRAG_ERR_NOTFOUND;
        size_t i = (size_t)dr_rng_below(rng, n);
        return dr_buf_puts(out, i < p->n ? p->v[i] : q->v[i - p->n]);
    }
    size_t n = 0;
    for (size_t i = 0; i < DR_ARRAY_LEN(chain_rels); i++)
        n += chain_rels[i].res == kind;
    if (n == 0)
        return DYNRAG_ERR_NOTFOUND;
    size_t t = (size_t)dr_rng_below(rng, n);
    size_t i = 0;
    for (;; i++)
        if (chain_rels[i].res == kind && t-- == 0)
            break;
    const char *np = chain_rels[i].np;
    const char *x = strstr(np, "{X}");
    int rc = dr_buf_append(out, np, (size_t)(x - np));
    if (rc == DYNRAG_OK)
        rc = chain_np(b, rng, chain_rels[i].arg, rels - 1, out);
    if (rc == DYNRAG_OK)
        rc = dr_buf_puts(out, x + 3);
    return rc;
}

/* Writes one question of the given depth (1..3) into out: a head drawn
 * uniformly, then a noun phrase of depth - lookup relations (an identity
 * head needs at least one relation: drawn again). Up to 64 draws; returns
 * DYNRAG_ERR_NOTFOUND when none fits the harvested kinds. */
static int chain_question(const builder *b, dr_rng *rng, int depth, dr_buf *out, dr_buf *np)
{
    for (int tries = 0; tries < 64; tries++) {
        size_t h = (size_t)dr_rng_below(rng, DR_ARRAY_LEN(chain_heads));
        int rels = depth - chain_heads[h].lookup;
        if (rels < (chain_heads[h].lookup ? 0 : 1))
            continue;
        dr_buf_reset(np);
        int rc = chain_np(b, rng, chain_heads[h].kind, rels, np);
        if (rc == DYNRAG_ERR_NOTFOUND)
            continue;
        if (rc == DYNRAG_OK)
            rc = fill_template(out, chain_heads[h].q, np->data, "", "");
        return rc;
    }
    return DYNRAG_ERR_NOTFOUND;
}

/*
 * Adds opt->augment_chains compositional questions of depth 2 (two in
 * three) or 3 (source "chain", label C) and as many of depth 1 (source
 * "chain-single", label B), from a generator seeded by opt->seed alone.
 * Adds nothing (with a warning) when no person or place entity was
 * harvested. Fails only on out of memory.
 */
static int generate_chains(builder *b, dynrag_error *err)
{
    if (b->ents[ENT_PERSON].n == 0 && b->ents[ENT_PLACE].n == 0) {
        dr_log(DYNRAG_LOG_WARN, "dataset", "chain augmentation: no entities harvested");
        return DYNRAG_OK;
    }
    dr_rng rng;
    dr_rng_seed(&rng, b->opt->seed ^ UINT64_C(0x636861696e732121)); /* "chains!!" */
    dr_buf text = {0}, np = {0};
    int rc = DYNRAG_OK;
    for (size_t i = 0; i < b->opt->augment_chains && rc == DYNRAG_OK; i++) {
        for (int single = 0; single < 2 && rc == DYNRAG_OK; single++) {
            int depth = single ? 1 : dr_rng_below(&rng, 3) == 0 ? 3 : 2;
            char where[64];
            snprintf(where, sizeof(where), "chain augmentation %zu", i);
            rc = chain_question(b, &rng, depth, &text, &np);
            if (rc == DYNRAG_ERR_NOTFOUND) {
                rc = DYNRAG_OK;
                continue;
            }
            if (rc != DYNRAG_OK)
                rc = dr_err_set(err, rc, "%s: cannot format", where);
            else
                rc = add_record(b, text.data,
                                single ? DYNRAG_DATASET_SRC_CHAIN_SINGLE : DYNRAG_DATASET_SRC_CHAIN,
                                where, err);
        }
    }
    dr_buf_free(&text);
    dr_buf_free(&np);
    return rc;
}

static int read_jsonl_rel(builder *b, const char *rel, jsonl_fn fn, dynrag_error *err)
{
    char *path = data_path(b, rel);
    if (path == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    int rc = read_jsonl(b, path, fn, err);
    dr_free(path);
    return rc;
}

/* ---- deduplication, balancing, splitting ----------------------------------- */

/* Marks records whose normalised text was seen before as dropped, visiting
 * the holdout source and the eval-split records first (holdout < 0: none)
 * and then the read order. */
static int dedup(builder *b, int holdout, dynrag_error *err)
{
    size_t cap = 16;
    while (cap < b->n * 2 + 16)
        cap *= 2;
    size_t *table = dr_malloc(cap * sizeof(*table)); /* record index + 1; 0 = empty */
    if (table == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    memset(table, 0, cap * sizeof(*table));
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < b->n; i++) {
            rec *r = &b->recs[i];
            if ((pass == 0) != (r->source == holdout || r->eval))
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
    dr_free(table);
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
    dr_free(path);
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
    size_t *evals[DYNRAG_DATASET_SRC_MUSIQUE_SUB] = {NULL};
    size_t nevals[DYNRAG_DATASET_SRC_MUSIQUE_SUB] = {0};

    /* 1. Read every source (all files are checked before anything is written). */
    bool subs = opt->augment && holdout != DYNRAG_DATASET_SRC_MUSIQUE;
    if (opt->augment_comparisons > 0 || opt->augment_chains > 0) {
        /* Entities for the comparison and chain templates: never HotpotQA, never the
         * holdout. */
        b.harvest[DYNRAG_DATASET_SRC_NQ] = holdout != DYNRAG_DATASET_SRC_NQ;
        b.harvest[DYNRAG_DATASET_SRC_EFFICIENTQA] =
            holdout != DYNRAG_DATASET_SRC_EFFICIENTQA && !opt->eval_split;
        b.harvest[DYNRAG_DATASET_SRC_MUSIQUE] = holdout != DYNRAG_DATASET_SRC_MUSIQUE;
    }
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
    if (rc == DYNRAG_OK && opt->augment_comparisons > 0)
        rc = generate_comparisons(&b, err);
    if (rc == DYNRAG_OK && opt->augment_chains > 0)
        rc = generate_chains(&b, err);
    if (rc == DYNRAG_OK)
        rc = dedup(&b, holdout, err);
    if (rc != DYNRAG_OK)
        goto cleanup;

    /* 2. Per-label pools of kept, non-holdout, non-augmented records. */
    for (int l = 0; l < DYNRAG_DATASET_N_LABELS; l++) {
        pool[l] = dr_malloc((b.n + 1) * sizeof(size_t));
        if (pool[l] == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
    }
    train = malloc((b.n + 1) * sizeof(size_t));
    valid = malloc((b.n + 1) * sizeof(size_t));
    held = malloc((b.n + 1) * sizeof(size_t));
    bool eval_ok = true;
    for (int s = 0; s < DYNRAG_DATASET_SRC_MUSIQUE_SUB && opt->eval_split; s++)
        eval_ok = eval_ok && (evals[s] = malloc((b.n + 1) * sizeof(size_t))) != NULL;
    if (train == NULL || valid == NULL || held == NULL || !eval_ok) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < b.n; i++) {
        const rec *r = &b.recs[i];
        if (r->dropped || is_augmented(r->source))
            continue;
        if (r->eval && r->source != holdout) {
            evals[r->source][nevals[r->source]++] = i;
            st->holdout[r->source]++;
            st->holdout_label[source_label[r->source]]++;
        } else if (r->source == holdout)
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
        if (!r->dropped && is_augmented(r->source)) {
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
    for (int s = 0; s < DYNRAG_DATASET_SRC_MUSIQUE_SUB && rc == DYNRAG_OK; s++)
        if (opt->eval_split && (s == DYNRAG_DATASET_SRC_CLINC150 ||
                                s == DYNRAG_DATASET_SRC_EFFICIENTQA ||
                                s == DYNRAG_DATASET_SRC_MUSIQUE) && s != holdout) {
            char name[64];
            snprintf(name, sizeof(name), "eval-%s.jsonl", source_names[s]);
            rc = write_jsonl(&b, name, evals[s], nevals[s], err);
        }
cleanup:
    for (int s = 0; s < DYNRAG_DATASET_SRC_MUSIQUE_SUB; s++)
        free(evals[s]);
    for (int l = 0; l < DYNRAG_DATASET_N_LABELS; l++)
        dr_free(pool[l]);
    dr_free(train);
    dr_free(valid);
    dr_free(held);
    builder_free(&b);
    return rc;
}
