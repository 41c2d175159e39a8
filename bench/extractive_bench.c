/*
 * extractive_bench.c - answer quality of the embedded extractive answerer on
 * HotpotQA (distractor setting: the gold paragraphs plus the distractors, in
 * the data set's order, given as the passages).
 *
 *   dynrag_bench_extractive FILE.jsonl [--threshold T] [--skip N] [--limit N]
 *
 * --skip N drops the first N questions (--limit counts after it).
 *
 * For max_sentences 1, 2 and 3 it prints: the share of questions whose
 * answer contains the gold answer (SQuAD-normalised, whole words), the same
 * without yes/no questions, the share whose citations include a supporting
 * paragraph, the unanswerable share, and the median time per question. Then
 * the bridge rate of dr_reformulate() (see bridge() below).
 */
#include "core/util.h"
#include "generate/extractive.h"
#include "generate/reformulate.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct item {
    char *question;
    char *gold; /* normalised, padded with spaces */
    bool yesno;
    dr_passage *p;
    bool *supporting;
    size_t n;
} item;

/* SQuAD normalisation: lower case, no punctuation, no articles, single
 * spaces; the result is padded with one space on each side. */
static char *squad_norm(const char *s)
{
    size_t n = strlen(s);
    char *t = malloc(n + 3);
    char *o = malloc(n + 3);
    if (t == NULL || o == NULL) {
        free(t);
        free(o);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80 && ispunct(c))
            continue;
        t[k++] = c < 0x80 ? (char)tolower(c) : (char)c;
    }
    t[k] = '\0';
    size_t m = 0;
    o[m++] = ' ';
    char *save = NULL;
    for (char *w = strtok_r(t, " \t\n\r", &save); w; w = strtok_r(NULL, " \t\n\r", &save)) {
        if (!strcmp(w, "a") || !strcmp(w, "an") || !strcmp(w, "the"))
            continue;
        size_t wl = strlen(w);
        memcpy(o + m, w, wl);
        m += wl;
        o[m++] = ' ';
    }
    o[m] = '\0';
    free(t);
    return o;
}

static int load(const char *path, item **out, size_t *n_out, size_t skip, size_t limit)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    item *items = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    size_t seen = 0;
    while (getline(&line, &lcap, f) > 0 && n < limit) {
        if (seen++ < skip)
            continue;
        cJSON *j = cJSON_Parse(line);
        if (j == NULL)
            continue;
        cJSON *q = cJSON_GetObjectItem(j, "question_text");
        cJSON *ans = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "answers_objects"), 0);
        cJSON *span = cJSON_GetArrayItem(cJSON_GetObjectItem(ans, "spans"), 0);
        cJSON *ctx = cJSON_GetObjectItem(j, "contexts");
        if (!cJSON_IsString(q) || !cJSON_IsString(span) || !cJSON_IsArray(ctx)) {
            cJSON_Delete(j);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            items = realloc(items, cap * sizeof(*items));
        }
        item *it = &items[n++];
        it->question = dr_strdup(q->valuestring);
        it->gold = squad_norm(span->valuestring);
        it->yesno = !strcmp(span->valuestring, "yes") || !strcmp(span->valuestring, "no");
        it->n = (size_t)cJSON_GetArraySize(ctx);
        it->p = calloc(it->n ? it->n : 1, sizeof(dr_passage));
        it->supporting = calloc(it->n ? it->n : 1, sizeof(bool));
        for (size_t i = 0; i < it->n; i++) {
            cJSON *c = cJSON_GetArrayItem(ctx, (int)i);
            cJSON *t = cJSON_GetObjectItem(c, "title");
            cJSON *x = cJSON_GetObjectItem(c, "paragraph_text");
            it->p[i].title = dr_strdup(cJSON_IsString(t) ? t->valuestring : "");
            it->p[i].text = dr_strdup(cJSON_IsString(x) ? x->valuestring : "");
            it->p[i].doc_id = it->p[i].title;
            it->p[i].chunk_id = (int64_t)i;
            it->supporting[i] = cJSON_IsTrue(cJSON_GetObjectItem(c, "is_supporting"));
        }
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    *out = items;
    *n_out = n;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void run(const item *items, size_t n, int sentences, double threshold)
{
    size_t hit = 0, hit_nyn = 0, n_nyn = 0, cite = 0, unans = 0;
    int64_t *us = malloc((n ? n : 1) * sizeof(int64_t));
    for (size_t i = 0; i < n; i++) {
        const item *it = &items[i];
        dr_extractive_config cfg = {threshold, sentences};
        dr_answer a;
        dynrag_error err;
        int64_t t0 = dr_now_us();
        int rc = dr_extractive_answer(&cfg, it->question, it->p, it->n, &a, &err);
        us[i] = dr_now_us() - t0;
        if (rc != DYNRAG_OK) {
            fprintf(stderr, "question %zu: %s\n", i, dynrag_errmsg(&err));
            continue;
        }
        char *norm = squad_norm(a.text);
        bool h = norm && strstr(norm, it->gold) != NULL;
        if (!h && getenv("BENCH_SHOW_MISSES") && sentences == 1)
            printf("MISS q=%s\n  gold=%s\n  got=%s (%.3f)\n", it->question, it->gold, a.text,
                   a.support);
        hit += h;
        if (!it->yesno) {
            n_nyn++;
            hit_nyn += h;
        }
        unans += a.unanswerable;
        bool c = false;
        for (size_t k = 0; k < a.n_citations; k++)
            c = c || it->supporting[a.citations[k]];
        cite += c;
        free(norm);
        dr_answer_free(&a);
    }
    qsort(us, n, sizeof(int64_t), cmp_i64);
    printf("| %d | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %lld |\n", sentences, 100.0 * (double)hit / (double)n,
           n_nyn ? 100.0 * (double)hit_nyn / (double)n_nyn : 0.0,
           100.0 * (double)cite / (double)n, 100.0 * (double)unans / (double)n,
           n ? (long long)us[n / 2] : 0LL);
    free(us);
}

/* Content words of a title before any " (disambiguator)", normalised. */
static char *title_norm(const char *title)
{
    char *t = dr_strdup(title);
    if (t == NULL)
        return NULL;
    char *paren = strstr(t, " (");
    if (paren != NULL)
        *paren = '\0';
    char *norm = squad_norm(t);
    free(t);
    return norm;
}

/* Bridge step: given only the first supporting paragraph (in data set
 * order), does dr_reformulate() add the other supporting paragraph's title,
 * when that title is not already in the question? */
static void bridge(const item *items, size_t n)
{
    size_t eligible = 0, found = 0, stopped = 0;
    for (size_t i = 0; i < n; i++) {
        const item *it = &items[i];
        size_t sup[2], n_sup = 0;
        for (size_t k = 0; k < it->n && n_sup < 2; k++)
            if (it->supporting[k])
                sup[n_sup++] = k;
        if (n_sup < 2)
            continue;
        char *qn = squad_norm(it->question);
        char *t2 = title_norm(it->p[sup[1]].title);
        if (qn == NULL || t2 == NULL || strstr(qn, t2) != NULL) {
            free(qn);
            free(t2);
            continue;
        }
        eligible++;
        dr_reform_state *st = NULL;
        char *next = NULL;
        dynrag_error err;
        if (dr_reform_create(&st) == DYNRAG_OK &&
            dr_reformulate(st, it->question, &it->p[sup[0]], 1, &next, &err) == DYNRAG_OK) {
            char *nn = next ? squad_norm(next) : NULL;
            found += nn != NULL && strstr(nn, t2) != NULL;
            if (getenv("BENCH_SHOW_MISSES") && (nn == NULL || strstr(nn, t2) == NULL))
                printf("BRIDGE MISS want=%s next=%s\n", t2, next ? next : "(null)");
            stopped += next == NULL;
            free(nn);
        }
        free(next);
        dr_reform_free(st);
        free(qn);
        free(t2);
    }
    printf("\nbridge: %zu questions whose second supporting title is not in the question; "
           "the next query adds it for %zu (%.1f%%); no new evidence for %zu\n",
           eligible, found, eligible ? 100.0 * (double)found / (double)eligible : 0.0, stopped);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE.jsonl [--threshold T] [--skip N] [--limit N]\n",
                argv[0]);
        return 2;
    }
    double threshold = 0.0;
    long long limit = 1000000, skip = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threshold") &&
            dr_parse_double(argv[i + 1], 0, 1, &threshold) == DYNRAG_OK)
            continue;
        if (!strcmp(argv[i], "--limit") && dr_parse_ll(argv[i + 1], 1, 1000000, &limit) == 0)
            continue;
        if (!strcmp(argv[i], "--skip") && dr_parse_ll(argv[i + 1], 0, 1000000, &skip) == 0)
            continue;
        fprintf(stderr, "bad option %s %s\n", argv[i], argv[i + 1]);
        return 2;
    }
    item *items = NULL;
    size_t n = 0;
    if (load(argv[1], &items, &n, (size_t)skip, (size_t)limit) != 0 || n == 0) {
        fprintf(stderr, "cannot read questions from %s\n", argv[1]);
        return 1;
    }
    printf("%zu questions, threshold %.2f\n\n", n, threshold);
    printf("| sentences | answer contains gold | same, no yes/no | cites supporting | "
           "unanswerable | median us |\n|---|---|---|---|---|---|\n");
    for (int s = 1; s <= 3; s++)
        run(items, n, s, threshold);
    bridge(items, n);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < items[i].n; k++) {
            free((char *)items[i].p[k].title);
            free((char *)items[i].p[k].text);
        }
        free(items[i].p);
        free(items[i].supporting);
        free(items[i].question);
        free(items[i].gold);
    }
    free(items);
    return 0;
}
