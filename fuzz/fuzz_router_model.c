/*
 * fuzz_router_model.c - libFuzzer harness for loading damaged router model
 * files: the outcome routers of dr_omodel_load (router/omodel.h: predict
 * ridge and knn, preference, mf, cluster (k-means or task clusters),
 * distill, contrastive) and the
 * cascade's answer scorer of dr_scorer_load (router/scorer.h). Users hand
 * these files to `router: {params: {model: M.safetensors}}` and `judge:
 * scorer`, so every damage must end in a clean error.
 *
 * On the first call it writes a small synthetic outcome table (40 rows,
 * 3 options, qualities, costs and responses) to a private temporary folder
 * and trains and saves one small model of each kind (the templates below).
 * Each input then damages ONE template and loads the result:
 *
 *   byte 0       the template (mod N_TEMPLATES)
 *   then records of 6 bytes, applied in order:
 *     u32 offset (little-endian)
 *     u8  op: the region the offset falls in (the IDF table alone is
 *             1 MiB of the data area, so uniform offsets would rarely reach
 *             anything else):
 *               bit 7 set: the header region, offset modulo min(size, 8 +
 *                 header length + 64): the u64 length, the JSON metadata and
 *                 tensor table, and the first tensor (quality_w);
 *               bit 6 set (bit 7 clear): the tail, the last min(size, 16 KiB)
 *                 bytes: the tensors after the IDF (centroids, train_x,
 *                 train_q, ratings, the contrastive encoder);
 *               else: offset modulo the current size.
 *             Bits 0-5 (mod 6): 0 set the byte, 1 xor it, 2 truncate the
 *             file at offset, 3 set 8 bytes from offset (lengths, offsets),
 *             4 fill floats: from offset rounded down to a multiple of 4
 *             (tensors start 4-aligned), 2^(value >> 3) floats (to the end
 *             at most) get the value extreme[value & 7] (huge, NaN, inf...),
 *             5 replace the header: the rest of the input becomes the JSON
 *             header (the u64 length is set to match) in front of the
 *             template's data area; the records end there.
 *     u8  value
 *
 * A model that loads must predict for a few queries (empty, non-ASCII,
 * long) finite qualities and costs (costs >= 0) and a pick in
 * [0, options); knn and preference models must take or refuse a few
 * neighbour counts; a scorer's score must lie in [0, 1]. Violations abort;
 * crashes, sanitizer reports, leaks, hangs (-timeout) and huge allocations
 * (-rss_limit_mb, and -malloc_limit_mb, which defaults to it) are findings.
 * A failed load must return no model and name the file.
 *
 * Seeds (fuzz/corpus/router_model/): each template untouched, each
 * template's header through op 5 (so that mutations edit the JSON text
 * directly), and the inputs of the findings fixed so far; tokens in
 * fuzz/router_model.dict. Build and run with scripts/fuzz.sh
 * (`scripts/fuzz.sh 300 router_model`).
 */
#define _GNU_SOURCE
#include "core/util.h"
#include "dynrag/log.h"
#include "eval/outcomes.h"
#include "router/omodel.h"
#include "router/scorer.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct template_spec {
    const char *name;
    dr_omodel_train_opts opts; /* kind NULL: the scorer */
} template_spec;

/* Small models: dim 16 (the smallest allowed), few clusters and epochs. */
static const template_spec specs[] = {
    {"ridge_clusters", {.kind = "predict", .dim = 16, .clusters = 4, .lambda = 1, .seed = 1}},
    {"ridge_plain", {.kind = "predict", .dim = 16, .clusters = -1, .lambda = 1, .seed = 1}},
    {"knn", {.kind = "predict", .method = "knn", .dim = 16, .k = 5, .lambda = 1, .seed = 1}},
    {"preference",
     {.kind = "preference",
      .dim = 16,
      .k = 5,
      .local_weight = 0.5,
      .fix_local_weight = true,
      .lambda = 1,
      .seed = 1}},
    {"mf", {.kind = "mf", .dim = 16, .clusters = -1, .lambda = 1, .seed = 1}},
    {"cluster", {.kind = "cluster", .dim = 16, .clusters = 4, .lambda = 1, .seed = 1}},
    {"distill", {.kind = "distill", .dim = 16, .clusters = 2, .lambda = 1, .seed = 1}},
    {"contrastive",
     {.kind = "contrastive",
      .dim = 16,
      .clusters = 2,
      .hidden = 8,
      .embed_dim = 4,
      .epochs = 2,
      .lambda = 1,
      .prior_weight = 0.5,
      .prior_rows = 1,
      .seed = 1}},
    {"contrastive_linear",
     {.kind = "contrastive",
      .dim = 16,
      .clusters = -1,
      .hidden = -1,
      .embed_dim = 4,
      .epochs = 2,
      .lambda = 1,
      .prior_weight = -1,
      .seed = 1}},
    {"scorer", {.kind = NULL}},
    {"task_clusters",
     {.kind = "cluster", .dim = 16, .task_clusters = true, .lambda = 1, .seed = 1}},
};
#define N_TEMPLATES (sizeof(specs) / sizeof(specs[0]))

typedef struct template_file {
    unsigned char *bytes;
    size_t len;
    size_t header_end; /* 8 + the header length */
} template_file;

static template_file templates[N_TEMPLATES];
static char root_dir[] = "/tmp/fuzz_router_model.XXXXXX";
static char model_path[600];
static int ready;

/* Removes the temporary folder at exit (libFuzzer exits normally after
 * -max_total_time and -runs; a crash leaves it for inspection). */
static void remove_root(void)
{
    char path[700];
    for (size_t i = 0; i < N_TEMPLATES; i++) {
        snprintf(path, sizeof(path), "%s/%s.safetensors", root_dir, specs[i].name);
        unlink(path);
        free(templates[i].bytes);
        templates[i].bytes = NULL;
    }
    snprintf(path, sizeof(path), "%s/outcomes.jsonl", root_dir);
    unlink(path);
    unlink(model_path);
    rmdir(root_dir);
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The synthetic outcome table: three topics, option i right on topic i,
 * "general" also right on "chat"; costs differ; every cell has a response
 * (the scorer trains on them). Deterministic. */
static void write_table(const char *path)
{
    static const char *const topics[] = {"algebra", "python", "chat"};
    static const char *const words[] = {"solve", "the",     "value",    "list",    "sort",
                                        "hello", "compute", "function", "weather", "integral"};
    static const char *const opts[] = {"math", "code", "general"};
    FILE *f = fopen(path, "w");
    if (f == NULL)
        abort();
    uint64_t r = 12345;
    for (int i = 0; i < 40; i++) {
        int topic = i % 3;
        fprintf(f, "{\"id\":\"q%d\",\"query\":\"%s", i, topics[topic]);
        for (int w = 0; w < 3 + i % 4; w++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            fprintf(f, " %s", words[(r >> 33) % 10]);
        }
        fprintf(f, "? A) yes B) no\",\"task\":\"%s\",\"outcomes\":{", topics[topic]);
        for (int o = 0; o < 3; o++) {
            int right = o == topic || (topic == 2 && o == 2) || (i % 7 == 0 && o == 2);
            fprintf(f, "%s\"%s\":{\"quality\":%d,\"cost_usd\":%g,\"response\":\"%s\"}",
                    o ? "," : "", opts[o], right, 0.001 * (3 - o) + 0.0001 * (i % 5),
                    right ? "The answer is A" : (i % 2 ? "B" : "I cannot tell"));
        }
        fputs("}}\n", f);
    }
    if (fclose(f) != 0)
        abort();
}

/* Trains and saves every template once; aborts when that fails (the
 * harness itself is broken then, not the code under test). */
static void setup(void)
{
    dynrag_log_set(NULL, NULL, DYNRAG_LOG_ERROR);
    if (mkdtemp(root_dir) == NULL)
        abort();
    const char *root = root_dir;
    char table_path[600];
    snprintf(table_path, sizeof(table_path), "%s/outcomes.jsonl", root);
    snprintf(model_path, sizeof(model_path), "%s/model.safetensors", root);
    write_table(table_path);
    dr_outcome_table t;
    memset(&t, 0, sizeof(t));
    dynrag_error err;
    if (dr_outcomes_load(table_path, &t, &err) != DYNRAG_OK) {
        fprintf(stderr, "fuzz_router_model: cannot load the table: %s\n", dynrag_errmsg(&err));
        abort();
    }
    for (size_t i = 0; i < N_TEMPLATES; i++) {
        char path[700];
        snprintf(path, sizeof(path), "%s/%s.safetensors", root, specs[i].name);
        int rc;
        if (specs[i].opts.kind != NULL) {
            dr_omodel *m = NULL;
            rc = dr_omodel_train(&t, NULL, 0, NULL, NULL, 0, &specs[i].opts, &m, NULL, &err);
            if (rc == DYNRAG_OK)
                rc = dr_omodel_save(m, path, &err);
            dr_omodel_free(m);
        } else {
            dr_scorer_train_opts so = {.lambda = 0.1, .seed = 1, .prior_valid_auc = NAN};
            dr_scorer *s = NULL;
            rc = dr_scorer_train(&t, NULL, 0, NULL, NULL, 0, &so, &s, NULL, &err);
            if (rc == DYNRAG_OK)
                rc = dr_scorer_save(s, path, &err);
            dr_scorer_free(s);
        }
        if (rc != DYNRAG_OK) {
            fprintf(stderr, "fuzz_router_model: cannot build template %s: %s\n", specs[i].name,
                    dynrag_errmsg(&err));
            abort();
        }
        template_file *T = &templates[i];
        T->bytes = fuzz_read_all(path, &T->len);
        if (T->bytes == NULL || T->len < 8)
            abort();
        uint64_t hlen = le64(T->bytes);
        if (hlen > T->len - 8)
            abort();
        T->header_end = 8 + (size_t)hlen;
    }
    dr_outcomes_free(&t);
    atexit(remove_root);
    ready = 1;
}

#define TAIL_REGION ((size_t)16 << 10)

/* Float values for op 4: finite but huge (sums overflow), non-finite,
 * merely large, negative, zero. */
static const float extreme[8] = {3.0e38f, -3.0e38f, 1.0e30f, 1.0e7f, -1.0f, 0.0f, NAN, INFINITY};

/* The current header region of buf: min(len, 8 + header length + 64). */
static size_t header_region(const unsigned char *buf, size_t len)
{
    if (len < 8)
        return len;
    uint64_t hlen = le64(buf);
    uint64_t end = hlen > (uint64_t)len ? (uint64_t)len : 8 + hlen + 64;
    return end < len ? (size_t)end : len;
}

static void check_omodel(dr_omodel *m)
{
    static char long_query[20000];
    if (long_query[0] == '\0') {
        for (size_t i = 0; i + 1 < sizeof(long_query); i++)
            long_query[i] = "solve the integral of x \xc3\xa9t\xc3\xa9 42\n"[i % 32];
        long_query[sizeof(long_query) - 1] = '\0';
    }
    const char *const queries[] = {"", "algebra solve the value? A) yes B) no",
                                   "\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 caf\xc3\xa9 \xff",
                                   long_query, NULL};
    size_t n = dr_omodel_n_options(m);
    if (n == 0 || n > DR_OUTCOMES_MAX_OPTIONS)
        abort(); /* a loaded model has 1 to 256 options */
    for (size_t i = 0; i < n; i++)
        if (dr_omodel_option(m, i) == NULL)
            abort();
    if (dr_omodel_kind(m) == NULL || dr_omodel_method(m) == NULL || dr_omodel_provenance(m) == NULL)
        abort();
    double *q = malloc(n * sizeof(double)), *c = malloc(n * sizeof(double));
    bool *allowed = malloc(n * sizeof(bool));
    if (q == NULL || c == NULL || allowed == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        allowed[i] = i % 2 == 1 || n == 1;
    for (int round = 0; round < 2; round++) {
        for (size_t k = 0; k < sizeof(queries) / sizeof(queries[0]); k++) {
            dynrag_error err;
            if (dr_omodel_predict(m, queries[k], q, c, &err) != DYNRAG_OK)
                continue; /* out of memory only */
            for (size_t i = 0; i < n; i++)
                if (!isfinite(q[i]) || !isfinite(c[i]) || c[i] < 0)
                    abort(); /* a prediction that is not a finite number */
            int pick = dr_omodel_pick(m, q, c, 15.0, NULL);
            if (pick < 0 || (size_t)pick >= n)
                abort();
            pick = dr_omodel_pick(m, q, c, 0.0, allowed);
            if (pick < 0 || (size_t)pick >= n || !allowed[pick])
                abort();
            double conf = dr_omodel_task_confidence(m, queries[k]);
            if (!isnan(conf) && !(conf > 0 && conf <= 1))
                abort(); /* a task classifier's confidence is a probability */
        }
        /* Neighbour models: set a few k (valid or not), then predict again. */
        if (round == 0) {
            static const int ks[] = {0, 1, 3, 1000, 1001, -5};
            size_t rows = dr_omodel_neighbour_rows(m);
            for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
                dynrag_error err;
                int rc = dr_omodel_set_neighbours(m, ks[i], i % 2 ? 0.25 : NAN, &err);
                if (rc == DYNRAG_OK && (rows == 0 || ks[i] < 1 || (size_t)ks[i] > rows))
                    abort(); /* accepted an impossible k */
            }
            if (rows > 0) {
                dynrag_error err;
                dr_omodel_set_neighbours(m, 1, NAN, &err);
            }
        }
    }
    free(q);
    free(c);
    free(allowed);
}

static void check_scorer(dr_scorer *s)
{
    static const char *const answers[] = {"", "A", "The answer is B", "\xff\xfe", "```x```"};
    const char *const queries[] = {"", "Which one? A) hot B) cold", "\xe4\xbd\xa0\xe5\xa5\xbd"};
    const char *const options[] = {NULL, "math", "code", "unknown"};
    for (size_t a = 0; a < sizeof(answers) / sizeof(answers[0]); a++)
        for (size_t k = 0; k < sizeof(queries) / sizeof(queries[0]); k++) {
            double p = dr_scorer_score(s, queries[k], options[(a + k) % 4], answers[a]);
            if (!(p >= 0 && p <= 1))
                abort(); /* NaN or out of range */
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready)
        setup();
    if (size < 1)
        return 0;
    size_t which = data[0] % N_TEMPLATES;
    const template_file *T = &templates[which];
    unsigned char *buf = NULL;
    size_t len = T->len;
    buf = malloc(len);
    if (buf == NULL)
        return 0;
    memcpy(buf, T->bytes, len);
    for (size_t i = 1; i + 6 <= size && len > 0; i += 6) {
        uint32_t off = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8 |
                       (uint32_t)data[i + 2] << 16 | (uint32_t)data[i + 3] << 24;
        unsigned char op = data[i + 4], v = data[i + 5];
        size_t at;
        if (op & 0x80) {
            at = off % header_region(buf, len);
        } else if (op & 0x40) {
            size_t tail = len < TAIL_REGION ? len : TAIL_REGION;
            at = len - tail + off % tail;
        } else {
            at = off % len;
        }
        switch ((op & 0x3f) % 6) {
        case 0: buf[at] = v; break;
        case 1: buf[at] ^= v; break;
        case 2: len = at; break;
        case 3:
            for (size_t j = at; j < len && j < at + 8; j++)
                buf[j] = v;
            break;
        case 4: {
            uint32_t bits;
            memcpy(&bits, &extreme[v & 7], 4);
            size_t from = at & ~(size_t)3, count = (size_t)1 << (v >> 3);
            for (size_t j = from, k = 0; k < count && j + 4 <= len; j += 4, k++)
                for (int b = 0; b < 4; b++)
                    buf[j + (size_t)b] = (unsigned char)(bits >> (8 * b));
            break;
        }
        default: {
            /* The rest of the input is the new JSON header. */
            const uint8_t *hdr = data + i + 6;
            size_t hlen = size - (i + 6), tail = T->len - T->header_end;
            unsigned char *nb = malloc(8 + hlen + tail);
            if (nb == NULL) {
                free(buf);
                return 0;
            }
            for (int b = 0; b < 8; b++)
                nb[b] = (unsigned char)((uint64_t)hlen >> (8 * b));
            memcpy(nb + 8, hdr, hlen);
            memcpy(nb + 8 + hlen, T->bytes + T->header_end, tail);
            free(buf);
            buf = nb;
            len = 8 + hlen + tail;
            i = size; /* the records end here */
            break;
        }
        }
    }
    if (fuzz_write_all(model_path, buf, len) != 0)
        abort();
    free(buf);
    dynrag_error err;
    if (specs[which].opts.kind != NULL) {
        dr_omodel *m = NULL;
        if (dr_omodel_load(model_path, &m, &err) == DYNRAG_OK) {
            if (m == NULL)
                abort();
            check_omodel(m);
            dr_omodel_free(m);
        } else if (m != NULL || strstr(dynrag_errmsg(&err), "model.safetensors") == NULL) {
            abort(); /* a failed load returns no model and names the file */
        }
    } else {
        dr_scorer *s = NULL;
        if (dr_scorer_load(model_path, &s, &err) == DYNRAG_OK) {
            if (s == NULL)
                abort();
            check_scorer(s);
            dr_scorer_free(s);
        } else if (s != NULL || strstr(dynrag_errmsg(&err), "model.safetensors") == NULL) {
            abort();
        }
    }
    return 0;
}
