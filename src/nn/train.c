/* train.c - training the T5 classifier: AdamW, schedule, dropout, class
 * weights, early stopping on validation macro-F1, deterministic pthreads. */
#include "nn/model.h"
#include "core/alloc.h"
#include "nn/train.h"
#include "nn/wide.h"

#include "data/labelled.h"
#include "dynrag/train.h"

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- SHA-256 (FIPS 180-4) for provenance -------------------------------- */

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64], a[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(a, h, sizeof(a));
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = a[7] + (ROR(a[4], 6) ^ ROR(a[4], 11) ^ ROR(a[4], 25)) +
                      ((a[4] & a[5]) ^ (~a[4] & a[6])) + sha_k[i] + w[i];
        uint32_t t2 = (ROR(a[0], 2) ^ ROR(a[0], 13) ^ ROR(a[0], 22)) +
                      ((a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]));
        memmove(a + 1, a, 7 * sizeof(uint32_t));
        a[4] += t1;
        a[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++)
        h[i] += a[i];
}

void dr_sha256_hex(const void *data, size_t n, char out[65])
{
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const uint8_t *p = data;
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        sha256_block(h, p + i);
    uint8_t tail[128] = {0};
    size_t r = n - i;
    memcpy(tail, p + i, r);
    tail[r] = 0x80;
    size_t tl = r + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)n * 8;
    for (int k = 0; k < 8; k++)
        tail[tl - 1 - k] = (uint8_t)(bits >> (8 * k));
    sha256_block(h, tail);
    if (tl == 128)
        sha256_block(h, tail + 64);
    for (int k = 0; k < 8; k++)
        snprintf(out + 8 * k, 9, "%08x", h[k]);
}

/* ---- settings ------------------------------------------------------------ */

void dr_train_config_defaults(dr_train_config *t)
{
    memset(t, 0, sizeof(*t));
    t->model.vocab_size = 4096;
    t->model.d_model = 128;
    t->model.n_layers = 2;
    t->model.n_heads = 4;
    t->model.d_ff = 256;
    t->model.max_len = 64;
    t->model.num_buckets = 32;
    t->model.max_distance = 128;
    t->model.length_buckets = 16;
    t->epochs = 20;
    t->batch_size = 32;
    t->lr = 1e-3;
    t->warmup = 0.05;
    t->weight_decay = 0.01;
    t->dropout = 0.1;
    t->clip = 1.0;
    t->wide_lr = 1.0;
    t->patience = 4;
    t->cosine = true;
    t->balanced = true;
    dr_strlcpy(t->head, "complexity", sizeof(t->head));
    dr_strlcpy(t->strip, "?", sizeof(t->strip));
}

int dr_train_config_parse(dr_train_config *t, const char *spec, dynrag_error *err)
{
    char *copy = dr_strdup(spec ? spec : "");
    int rc = DYNRAG_OK;
    if (!copy)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    char *save = NULL;
    for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            rc = dr_err_set(err, DYNRAG_ERR_INVALID, "config: '%s' is not key=value", kv);
            goto cleanup;
        }
        *eq = '\0';
        const char *k = kv, *v = eq + 1;
        /* A key given twice would silently take its last value. */
        size_t klen = strlen(k);
        for (const char *prev = spec; prev != NULL && (prev = strstr(prev, k)) != NULL;
             prev += klen) {
            bool starts = prev == spec || prev[-1] == ',';
            if (starts && prev[klen] == '=' && prev < spec + (k - copy)) {
                rc = dr_err_set(err, DYNRAG_ERR_INVALID, "config: '%s' is given twice", k);
                goto cleanup;
            }
        }
        long long iv = 0;
        double dv = 0;
        static const struct {
            const char *name;
            size_t off;
            long long lo, hi;
        } ints[] = {
            {"vocab_size", offsetof(dr_train_config, model.vocab_size), 257, 1 << 20},
            {"d_model", offsetof(dr_train_config, model.d_model), 1, 4096},
            {"n_layers", offsetof(dr_train_config, model.n_layers), 0, DR_T5_MAX_LAYERS},
            {"n_heads", offsetof(dr_train_config, model.n_heads), 1, 64},
            {"d_ff", offsetof(dr_train_config, model.d_ff), 1, 16384},
            {"max_len", offsetof(dr_train_config, model.max_len), 1, 4096},
            {"num_buckets", offsetof(dr_train_config, model.num_buckets), 4, 1024},
            {"max_distance", offsetof(dr_train_config, model.max_distance), 2, 1 << 20},
            {"length_buckets", offsetof(dr_train_config, model.length_buckets), 0, 256},
            {"wide_bits", offsetof(dr_train_config, model.wide_bits), 0, DR_WIDE_MAX_BITS},
            {"epochs", offsetof(dr_train_config, epochs), 1, 10000},
            {"batch_size", offsetof(dr_train_config, batch_size), 1, 65536},
            {"patience", offsetof(dr_train_config, patience), 0, 10000},
        };
        static const struct {
            const char *name;
            size_t off;
            double lo, hi;
        } dbls[] = {
            {"lr", offsetof(dr_train_config, lr), 0, 10},
            {"warmup", offsetof(dr_train_config, warmup), 0, 1},
            {"weight_decay", offsetof(dr_train_config, weight_decay), 0, 10},
            {"dropout", offsetof(dr_train_config, dropout), 0, 0.9},
            {"clip", offsetof(dr_train_config, clip), 0, 1e6},
            {"token_dropout", offsetof(dr_train_config, token_dropout), 0, 0.9},
            {"wide_lr", offsetof(dr_train_config, wide_lr), 0, 1000},
        };
        bool done = false;
        for (size_t i = 0; i < DR_ARRAY_LEN(ints) && !done; i++)
            if (strcmp(k, ints[i].name) == 0) {
                if (dr_parse_ll(v, ints[i].lo, ints[i].hi, &iv) != DYNRAG_OK) {
                    rc = dr_err_set(err, DYNRAG_ERR_INVALID, "config: %s must be an integer in "
                                    "[%lld, %lld], got '%s'", k, ints[i].lo, ints[i].hi, v);
                    goto cleanup;
                }
                *(int *)((char *)t + ints[i].off) = (int)iv;
                done = true;
            }
        for (size_t i = 0; i < DR_ARRAY_LEN(dbls) && !done; i++)
            if (strcmp(k, dbls[i].name) == 0) {
                if (dr_parse_double(v, dbls[i].lo, dbls[i].hi, &dv) != DYNRAG_OK) {
                    rc = dr_err_set(err, DYNRAG_ERR_INVALID, "config: %s must be a number in "
                                    "[%g, %g], got '%s'", k, dbls[i].lo, dbls[i].hi, v);
                    goto cleanup;
                }
                *(double *)((char *)t + dbls[i].off) = dv;
                done = true;
            }
        if (done)
            continue;
        if (strcmp(k, "schedule") == 0 && (strcmp(v, "cosine") == 0 || strcmp(v, "linear") == 0))
            t->cosine = strcmp(v, "cosine") == 0;
        else if (strcmp(k, "class_weights") == 0 &&
                 (strcmp(v, "balanced") == 0 || strcmp(v, "none") == 0))
            t->balanced = strcmp(v, "balanced") == 0;
        else if (strcmp(k, "keep") == 0 && (strcmp(v, "best") == 0 || strcmp(v, "last") == 0))
            t->keep_last = strcmp(v, "last") == 0;
        else if (strcmp(k, "head") == 0 && v[0] && strlen(v) < sizeof(t->head))
            dr_strlcpy(t->head, v, sizeof(t->head));
        else if (strcmp(k, "strip") == 0 && strlen(v) < sizeof(t->strip))
            dr_strlcpy(t->strip, v, sizeof(t->strip)); /* checked by the tokenizer */
        else {
            rc = dr_err_set(err, DYNRAG_ERR_INVALID, "config: unknown key or bad value '%s=%s' "
                            "(see docs/classifier.md)", k, v);
            goto cleanup;
        }
    }
cleanup:
    dr_free(copy);
    return rc;
}

/* ---- initialisation --------------------------------------------------------- */

void dr_train_init_params(dr_classifier *c, uint64_t seed)
{
    const dr_t5_config *k = &c->cfg;
    dr_rng rng;
    dr_rng_seed(&rng, seed ^ 0x5EEDF00DULL);
    dr_t5_tensor t[DR_T5_MAX_TENSORS];
    size_t nt = dr_t5_tensors(k, t, NULL);
    float resid_scale = 1.0f / sqrtf(2.0f * (float)(k->n_layers > 0 ? k->n_layers : 1));
    for (size_t i = 0; i < nt; i++) {
        float *w = c->params + t[i].offset;
        const char *nm = t[i].name;
        float std;
        if (t[i].ndim == 1 || strstr(nm, ".wide.")) { /* norms ones, biases and wide zero */
            float v = strstr(nm, "layer_norm") ? 1.0f : 0.0f;
            for (size_t j = 0; j < t[i].numel; j++)
                w[j] = v;
            continue;
        }
        if (strcmp(nm, "shared.weight") == 0)
            std = 1.0f;
        else if (strstr(nm, "relative_attention_bias"))
            std = 0.1f;
        else if (strncmp(nm, "heads.", 6) == 0)
            std = 0.02f;
        else {
            std = 1.0f / sqrtf((float)t[i].shape[1]); /* fan-in */
            if (strstr(nm, ".o.weight") || strstr(nm, "DenseReluDense.wo"))
                std *= resid_scale;
        }
        for (size_t j = 0; j < t[i].numel; j++)
            w[j] = (float)dr_rng_normal(&rng) * std;
    }
}

/* ---- the training loop --------------------------------------------------------- */

typedef struct train_data {
    size_t n;
    int32_t *ids;   /* [n, max_len] */
    int *len;       /* [n] */
    int *label;     /* [n] index in the head's labels, -1 = unknown */
    float *target;  /* [n, K] probability targets (one-hot of label for hard labels) */
    size_t *foff;   /* [n + 1] wide features of example i: foff[i]..foff[i+1] */
    uint32_t *fidx;
    float *fval;
} train_data;

static void train_data_free(train_data *d)
{
    dr_free(d->ids);
    dr_free(d->len);
    dr_free(d->label);
    dr_free(d->target);
    dr_free(d->foff);
    dr_free(d->fidx);
    dr_free(d->fval);
}

/* Computes the wide features of every text of s into d (CSR). */
static int encode_wide(const dr_classifier *c, const dr_labelled_set *s, train_data *d,
                       dynrag_error *err)
{
    uint32_t *idx = dr_malloc(DR_WIDE_MAX_FEATURES * sizeof(*idx));
    float *val = dr_malloc(DR_WIDE_MAX_FEATURES * sizeof(*val));
    size_t cap = 0, used = 0;
    int rc = DYNRAG_OK;
    d->foff = dr_calloc(s->n + 1, sizeof(size_t));
    if (!idx || !val || !d->foff)
        goto nomem;
    for (size_t i = 0; i < s->n; i++) {
        int nf = dr_wide_features(c->tok, s->text[i], c->cfg.wide_bits, idx, val);
        if (nf < 0)
            goto nomem;
        if (used + (size_t)nf > cap) {
            size_t nc = cap ? cap * 2 : 65536;
            while (nc < used + (size_t)nf)
                nc *= 2;
            uint32_t *ni = dr_realloc(d->fidx, nc * sizeof(*ni));
            if (ni)
                d->fidx = ni;
            float *nv = dr_realloc(d->fval, nc * sizeof(*nv));
            if (nv)
                d->fval = nv;
            if (!ni || !nv)
                goto nomem;
            cap = nc;
        }
        memcpy(d->fidx + used, idx, (size_t)nf * sizeof(*idx));
        memcpy(d->fval + used, val, (size_t)nf * sizeof(*val));
        used += (size_t)nf;
        d->foff[i + 1] = used;
    }
    goto cleanup;
nomem:
    rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory computing n-gram features");
cleanup:
    dr_free(idx);
    dr_free(val);
    return rc;
}

static int encode_set(const dr_classifier *c, const dr_labelled_set *s, train_data *d,
                      size_t *unknown, dynrag_error *err)
{
    int T = c->cfg.max_len, K = c->cfg.n_labels[0];
    memset(d, 0, sizeof(*d));
    d->n = s->n;
    d->ids = dr_calloc(s->n ? s->n * (size_t)T : 1, sizeof(int32_t));
    d->len = dr_calloc(s->n ? s->n : 1, sizeof(int));
    d->label = dr_calloc(s->n ? s->n : 1, sizeof(int));
    d->target = dr_calloc(s->n ? s->n * (size_t)K : 1, sizeof(float));
    if (!d->ids || !d->len || !d->label || !d->target)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory encoding examples");
    *unknown = 0;
    for (size_t i = 0; i < s->n; i++) {
        d->len[i] = dr_classifier_encode(c, s->text[i], d->ids + i * (size_t)T);
        if (d->len[i] < 0)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory encoding examples");
        d->label[i] = -1;
        for (int k = 0; k < K; k++)
            if (strcmp(c->labels[0][k], s->label[i]) == 0)
                d->label[i] = k;
        if (d->label[i] < 0) {
            (*unknown)++;
            continue;
        }
        float *t = d->target + i * (size_t)K;
        if (s->targets) { /* soft labels: the set's label order is the head's (sorted) */
            for (int k = 0; k < K; k++) {
                int j = dr_labelled_find_label(s, c->labels[0][k]);
                t[k] = j >= 0 ? s->targets[i * s->n_labels + (size_t)j] : 0.0f;
            }
        } else {
            t[d->label[i]] = 1.0f;
        }
    }
    if (c->cfg.wide_bits > 0)
        return encode_wide(c, s, d, err);
    return DYNRAG_OK;
}

typedef struct worker {
    const dr_classifier *c;
    const train_data *d;
    const size_t *idx;   /* examples of this worker */
    size_t n;
    const size_t *pos;   /* global position of each example (dropout seed) */
    uint64_t seed_base;
    float dropout;
    float token_dropout; /* share of input tokens replaced by <pad> in training */
    const float *class_w;
    float inv_wsum;      /* 1 / total class weight of the whole batch */
    dr_t5_acts acts;
    float *grad;         /* [n_params] */
    dr_t5_params g;
    double loss;         /* weighted loss sum (unnormalised) */
    size_t correct;
    int *pred;           /* eval mode: predictions out */
    bool eval;
} worker;

static void *worker_run(void *arg)
{
    worker *w = arg;
    const dr_classifier *c = w->c;
    int T = c->cfg.max_len, K = c->cfg.n_labels[0], W = dr_t5_logit_width(&c->cfg);
    float dlogits[DR_T5_MAX_HEADS * DR_T5_MAX_LABELS];
    float probs[DR_T5_MAX_LABELS];
    w->loss = 0;
    w->correct = 0;
    if (!w->eval)
        memset(w->grad, 0, c->n_params * sizeof(float));
    for (size_t i = 0; i < w->n; i++) {
        size_t e = w->idx[i];
        const int32_t *ids = w->d->ids + e * (size_t)T;
        int len = w->d->len[e], y = w->d->label[e];
        const uint32_t *fidx = NULL;
        const float *fval = NULL;
        int nf = 0;
        if (c->cfg.wide_bits > 0) {
            fidx = w->d->fidx + w->d->foff[e];
            fval = w->d->fval + w->d->foff[e];
            nf = (int)(w->d->foff[e + 1] - w->d->foff[e]);
        }
        if (w->eval) {
            dr_classifier_probs_ids(c, 0, ids, len, fidx, fval, nf, &w->acts, probs);
            int best = 0;
            for (int k = 1; k < K; k++)
                if (probs[k] > probs[best])
                    best = k;
            w->pred[e] = best;
            continue;
        }
        dr_rng rng;
        dr_rng_seed(&rng, w->seed_base ^ (0x9E3779B97F4A7C15ULL * (w->pos[i] + 1)));
        int32_t masked[4096];
        if (w->token_dropout > 0 && len <= (int)DR_ARRAY_LEN(masked)) {
            for (int t = 0; t < len; t++)
                masked[t] = dr_rng_uniform(&rng) < (double)w->token_dropout ? DR_TOK_PAD : ids[t];
            ids = masked;
        }
        dr_t5_forward(&c->cfg, &c->p, c->rel_bucket, ids, &len, 1, len, true, w->dropout, &rng,
                      &w->acts);
        float *lg = w->acts.logits;
        dr_classifier_add_wide(c, 0, fidx, fval, nf, lg);
        float mx = lg[0], sum = 0;
        for (int k = 1; k < K; k++)
            mx = lg[k] > mx ? lg[k] : mx;
        for (int k = 0; k < K; k++) {
            probs[k] = expf(lg[k] - mx);
            sum += probs[k];
        }
        int best = 0;
        for (int k = 0; k < K; k++) {
            probs[k] /= sum;
            if (probs[k] > probs[best])
                best = k;
        }
        /* cross-entropy against the example's targets (one-hot for a hard label;
         * zero targets add exactly nothing, so one-hot soft labels train
         * bit-for-bit like hard ones), weighted by the targets' class weight */
        const float *tg = w->d->target + e * (size_t)K;
        float cw = 0.0f;
        double nll = 0;
        for (int k = 0; k < K; k++)
            if (tg[k] != 0.0f) {
                cw += tg[k] * w->class_w[k];
                nll += (double)tg[k] * -log((double)probs[k] + 1e-12);
            }
        w->loss += (double)cw * nll;
        w->correct += best == y;
        memset(dlogits, 0, (size_t)W * sizeof(float));
        for (int k = 0; k < K; k++)
            dlogits[k] = cw * w->inv_wsum * (probs[k] - tg[k]);
        dr_t5_backward(&c->cfg, &c->p, c->rel_bucket, ids, &len, 1, len, dlogits, &w->acts,
                       &w->g);
        dr_classifier_wide_backward(c, 0, fidx, fval, nf, dlogits, w->g.wide_w[0]);
    }
    return NULL;
}

/* Runs workers[0..nt) with worker 0 on the calling thread. */
static int run_workers(worker *ws, int nt)
{
    pthread_t th[DR_TRAIN_MAX_THREADS];
    int started = 0, rc = DYNRAG_OK;
    for (int t = 1; t < nt; t++) {
        if (pthread_create(&th[t], NULL, worker_run, &ws[t]) != 0) {
            rc = DYNRAG_ERR_INTERNAL;
            break;
        }
        started = t;
    }
    worker_run(&ws[0]);
    for (int t = 1; t <= started; t++)
        pthread_join(th[t], NULL);
    /* a worker that could not start runs here, so results stay identical */
    for (int t = started + 1; t < nt; t++)
        worker_run(&ws[t]);
    (void)rc;
    return DYNRAG_OK;
}

/* Predicts every example of d into pred (threads split the set in fixed
 * contiguous ranges). */
static void predict_all(worker *ws, int nt, const train_data *d, size_t *idx, int *pred)
{
    for (size_t i = 0; i < d->n; i++)
        idx[i] = i;
    for (int t = 0; t < nt; t++) {
        size_t lo = d->n * (size_t)t / (size_t)nt, hi = d->n * (size_t)(t + 1) / (size_t)nt;
        ws[t].eval = true;
        ws[t].d = d;
        ws[t].idx = idx + lo;
        ws[t].n = hi - lo;
        ws[t].pred = pred;
    }
    run_workers(ws, nt);
    for (int t = 0; t < nt; t++)
        ws[t].eval = false;
}

/* Macro-F1 (over labels present in the data) and accuracy. */
static void score(const train_data *d, const int *pred, int K, double *macro_f1, double *acc,
                  double *recall)
{
    uint64_t conf[DR_T5_MAX_LABELS][DR_T5_MAX_LABELS];
    memset(conf, 0, sizeof(conf));
    size_t n = 0, correct = 0;
    for (size_t i = 0; i < d->n; i++)
        if (d->label[i] >= 0) {
            conf[d->label[i]][pred[i]]++;
            n++;
            correct += d->label[i] == pred[i];
        }
    double f1sum = 0;
    int present = 0;
    for (int k = 0; k < K; k++) {
        uint64_t row = 0, col = 0;
        for (int j = 0; j < K; j++) {
            row += conf[k][j];
            col += conf[j][k];
        }
        double r = row ? (double)conf[k][k] / (double)row : 0;
        double p = col ? (double)conf[k][k] / (double)col : 0;
        if (recall)
            recall[k] = r;
        if (row) {
            f1sum += r + p > 0 ? 2 * r * p / (r + p) : 0;
            present++;
        }
    }
    *macro_f1 = present ? f1sum / present : 0;
    *acc = n ? (double)correct / (double)n : 0;
}

static int file_sha256(const char *path, char hex[65], size_t *bytes, dynrag_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = dr_read_file(path, DR_LABELLED_MAX_FILE, &buf, &len, err);
    if (rc != DYNRAG_OK)
        return rc;
    dr_sha256_hex(buf, len, hex);
    *bytes = len;
    dr_free(buf);
    return DYNRAG_OK;
}

int dr_train_run(const dr_train_config *tc, const char *train_path, const char *valid_path,
                 const char *out_path, uint64_t seed, int threads,
                 dynrag_train_progress_fn progress, void *user, dynrag_train_result *res,
                 dynrag_error *err)
{
    dr_labelled_set *tr = NULL, *va = NULL;
    dr_tokenizer *tok = NULL;
    dr_classifier *c = NULL;
    train_data dtr = {0}, dva = {0};
    worker ws[DR_TRAIN_MAX_THREADS];
    float *m = NULL, *v = NULL, *best = NULL;
    size_t *perm = NULL, *pos = NULL, *eidx = NULL;
    int *pred = NULL;
    dr_buf prov = {0};
    int nt = threads, rc;
    memset(ws, 0, sizeof(ws));
    memset(res, 0, sizeof(*res));
    int64_t t_start = dr_now_us();
    if (nt < 1 || nt > DR_TRAIN_MAX_THREADS)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "threads %d: must be 1..%d", nt,
                          DR_TRAIN_MAX_THREADS);
    if ((rc = dr_labelled_load(train_path, &tr, err)) != DYNRAG_OK ||
        (rc = dr_labelled_load(valid_path, &va, err)) != DYNRAG_OK)
        goto cleanup;
    if (tr->n_labels < 2 || tr->n_labels > DR_T5_MAX_LABELS || tr->n == 0) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "%s: need 2..%d distinct labels, found %zu",
                        train_path, DR_T5_MAX_LABELS, tr->n_labels);
        goto cleanup;
    }
    if ((rc = dr_tokenizer_train((const char *const *)tr->text, tr->n,
                                 tc->model.vocab_size - tc->model.length_buckets, tc->strip, &tok,
                                 err)) != DYNRAG_OK)
        goto cleanup;
    dr_t5_config cfg = tc->model;
    cfg.n_cls = 1;
    cfg.n_labels[0] = (int)tr->n_labels;
    const char *head = tc->head;
    const char *const *labels[1] = {(const char *const *)tr->label_names};
    rc = dr_classifier_create(&cfg, tok, &head, labels, &c, err);
    tok = NULL;
    if (rc != DYNRAG_OK)
        goto cleanup;
    dr_train_init_params(c, seed);
    size_t unk_tr = 0, unk_va = 0;
    if ((rc = encode_set(c, tr, &dtr, &unk_tr, err)) || (rc = encode_set(c, va, &dva, &unk_va, err)))
        goto cleanup;
    if (unk_va)
        dr_log(DYNRAG_LOG_WARN, "nn", "%s: %zu examples have labels absent from the training "
               "set and are ignored", valid_path, unk_va);
    if (dva.n == 0) {
        /* the best epoch would be chosen on nothing */
        rc = dr_err_set(err, DYNRAG_ERR_INVALID,
                        "%s: no validation example (with a label of the training set)",
                        valid_path);
        goto cleanup;
    }
    int K = cfg.n_labels[0];
    float class_w[DR_T5_MAX_LABELS];
    double count[DR_T5_MAX_LABELS] = {0}; /* target mass per label (the count for hard labels) */
    for (size_t i = 0; i < dtr.n; i++)
        for (int k = 0; k < K; k++)
            count[k] += dtr.target[i * (size_t)K + (size_t)k];
    for (int k = 0; k < K; k++)
        class_w[k] = tc->balanced && count[k] > 0
                         ? (float)((double)dtr.n / ((double)K * count[k]))
                         : 1.0f;

    size_t P = c->n_params;
    m = dr_calloc(P, sizeof(float));
    v = dr_calloc(P, sizeof(float));
    best = dr_malloc(P * sizeof(float));
    perm = dr_malloc(dtr.n * sizeof(size_t));
    pos = dr_malloc(dtr.n * sizeof(size_t));
    eidx = dr_malloc((dva.n ? dva.n : 1) * sizeof(size_t));
    pred = dr_malloc((dva.n ? dva.n : 1) * sizeof(int));
    if (!m || !v || !best || !perm || !pos || !eidx || !pred)
        goto nomem;
    for (int t = 0; t < nt; t++) {
        ws[t].c = c;
        ws[t].dropout = (float)tc->dropout;
        ws[t].token_dropout = (float)tc->token_dropout;
        ws[t].class_w = class_w;
        ws[t].grad = dr_calloc(P, sizeof(float));
        if (!ws[t].grad)
            goto nomem;
        dr_t5_point(&cfg, ws[t].grad, &ws[t].g);
        if ((rc = dr_t5_acts_alloc(&cfg, 1, cfg.max_len, true, &ws[t].acts, err)) != DYNRAG_OK)
            goto cleanup;
    }
    dr_t5_tensor tens[DR_T5_MAX_TENSORS];
    size_t ntens = dr_t5_tensors(&cfg, tens, NULL);

    int B = tc->batch_size;
    size_t steps_per_epoch = (dtr.n + (size_t)B - 1) / (size_t)B;
    size_t total_steps = steps_per_epoch * (size_t)tc->epochs;
    size_t warm = (size_t)(tc->warmup * (double)total_steps);
    size_t step = 0;
    double best_f1 = -1, best_acc = 0;
    int best_epoch = 0, since_best = 0, epoch;
    double recall[DR_T5_MAX_LABELS] = {0};
    dr_rng shuf;
    dr_rng_seed(&shuf, seed);
    for (size_t i = 0; i < dtr.n; i++)
        perm[i] = i;
    uint64_t examples_total = 0;
    for (epoch = 1; epoch <= tc->epochs; epoch++) {
        for (size_t i = dtr.n; i > 1; i--) { /* Fisher-Yates */
            size_t j = (size_t)dr_rng_below(&shuf, i), tmp = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = tmp;
        }
        for (size_t i = 0; i < dtr.n; i++)
            pos[i] = (size_t)epoch * dtr.n + i;
        double loss_sum = 0, wsum_all = 0;
        size_t correct = 0, done = 0;
        int64_t t_epoch = dr_now_us(), last_cb = 0;
        for (size_t s0 = 0; s0 < dtr.n; s0 += (size_t)B, step++) {
            size_t bn = DR_MIN((size_t)B, dtr.n - s0);
            float wsum = 0;
            for (size_t i = 0; i < bn; i++) {
                const float *tg = dtr.target + perm[s0 + i] * (size_t)K;
                float cw = 0.0f;
                for (int k = 0; k < K; k++)
                    if (tg[k] != 0.0f)
                        cw += tg[k] * class_w[k];
                wsum += cw;
            }
            for (int t = 0; t < nt; t++) {
                size_t lo = bn * (size_t)t / (size_t)nt, hi = bn * (size_t)(t + 1) / (size_t)nt;
                ws[t].d = &dtr;
                ws[t].idx = perm + s0 + lo;
                ws[t].pos = pos + s0 + lo;
                ws[t].n = hi - lo;
                ws[t].seed_base = seed;
                ws[t].inv_wsum = 1.0f / wsum;
            }
            run_workers(ws, nt);
            /* reduce in thread order */
            float *g = ws[0].grad;
            for (int t = 1; t < nt; t++)
                for (size_t i = 0; i < P; i++)
                    g[i] += ws[t].grad[i];
            for (int t = 0; t < nt; t++) {
                loss_sum += ws[t].loss;
                correct += ws[t].correct;
            }
            wsum_all += wsum;
            done += bn;
            /* clip by global norm */
            double norm = 0;
            for (size_t i = 0; i < P; i++)
                norm += (double)g[i] * g[i];
            norm = sqrt(norm);
            float clip = (tc->clip > 0 && norm > tc->clip) ? (float)(tc->clip / norm) : 1.0f;
            /* schedule */
            double lr;
            if (step < warm)
                lr = tc->lr * (double)(step + 1) / (double)warm;
            else {
                double prog = total_steps > warm ? (double)(step - warm) / (double)(total_steps - warm)
                                                 : 1.0;
                lr = tc->cosine ? tc->lr * 0.5 * (1.0 + cos(3.14159265358979323846 * prog)) : tc->lr * (1.0 - prog);
            }
            /* AdamW */
            const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
            float bc1 = 1.0f - powf(b1, (float)(step + 1)), bc2 = 1.0f - powf(b2, (float)(step + 1));
            for (size_t ti = 0; ti < ntens; ti++) {
                float wd = tens[ti].decay ? (float)tc->weight_decay : 0.0f;
                double tlr = strstr(tens[ti].name, ".wide.") ? lr * tc->wide_lr : lr;
                float *pw = c->params + tens[ti].offset, *pg = g + tens[ti].offset;
                float *pm = m + tens[ti].offset, *pv = v + tens[ti].offset;
                for (size_t i = 0; i < tens[ti].numel; i++) {
                    float gi = pg[i] * clip;
                    pm[i] = b1 * pm[i] + (1 - b1) * gi;
                    pv[i] = b2 * pv[i] + (1 - b2) * gi * gi;
                    float mh = pm[i] / bc1, vh = pv[i] / bc2;
                    pw[i] -= (float)tlr * (mh / (sqrtf(vh) + eps) + wd * pw[i]);
                }
            }
            int64_t now = dr_now_us();
            if (progress && (now - last_cb > 200000 || s0 + bn >= dtr.n)) {
                last_cb = now;
                dynrag_train_progress pr = {epoch, tc->epochs, done, dtr.n,
                                            loss_sum / wsum_all, (double)correct / (double)done,
                                            (double)done / ((double)(now - t_epoch) / 1e6 + 1e-9),
                                            -1, -1};
                progress(user, &pr);
            }
        }
        examples_total += dtr.n;
        double f1 = 0, acc = 0, rec[DR_T5_MAX_LABELS];
        predict_all(ws, nt, &dva, eidx, pred);
        score(&dva, pred, K, &f1, &acc, rec);
        dr_log(DYNRAG_LOG_INFO, "nn", "epoch %d: train loss %.4f acc %.4f, valid macro-F1 %.4f "
               "acc %.4f", epoch, loss_sum / wsum_all, (double)correct / (double)dtr.n, f1, acc);
        if (progress) {
            int64_t now = dr_now_us();
            dynrag_train_progress pr = {epoch, tc->epochs, dtr.n, dtr.n, loss_sum / wsum_all,
                                        (double)correct / (double)dtr.n,
                                        (double)dtr.n / ((double)(now - t_epoch) / 1e6 + 1e-9), f1,
                                        acc};
            progress(user, &pr);
        }
        if (f1 > best_f1 || tc->keep_last) { /* keep=last: the "best" epoch is the last */
            best_f1 = f1;
            best_acc = acc;
            best_epoch = epoch;
            since_best = 0;
            memcpy(best, c->params, P * sizeof(float));
            memcpy(recall, rec, sizeof(recall));
        } else if (++since_best > tc->patience && tc->patience > 0 && !tc->keep_last) {
            epoch++;
            break;
        }
    }
    res->epochs_run = epoch - 1;
    memcpy(c->params, best, P * sizeof(float));
    res->best_epoch = best_epoch;
    res->best_valid_macro_f1 = best_f1;
    res->best_valid_accuracy = best_acc;
    res->n_params = P;
    res->seconds = (double)(dr_now_us() - t_start) / 1e6;
    res->examples_per_sec = (double)examples_total / (res->seconds > 0 ? res->seconds : 1);

    /* provenance */
    char h_tr[65], h_va[65], now[40];
    size_t b_tr = 0, b_va = 0;
    if ((rc = file_sha256(train_path, h_tr, &b_tr, err)) ||
        (rc = file_sha256(valid_path, h_va, &b_va, err)))
        goto cleanup;
    dr_time_rfc3339(now, sizeof(now));
    rc = dr_buf_printf(&prov, "{\"trainer\":\"dynrag router train\",\"dynrag_version\":\"%s\","
                       "\"created\":\"%s\",\"train\":{\"path\":", dynrag_version(), now);
    rc = rc ? rc : dr_buf_json_str(&prov, train_path);
    rc = rc ? rc : dr_buf_printf(&prov, ",\"bytes\":%zu,\"sha256\":\"%s\",\"examples\":%zu},"
                                 "\"valid\":{\"path\":", b_tr, h_tr, dtr.n);
    rc = rc ? rc : dr_buf_json_str(&prov, valid_path);
    rc = rc ? rc : dr_buf_printf(&prov, ",\"bytes\":%zu,\"sha256\":\"%s\",\"examples\":%zu},"
                                 "\"seed\":%llu,\"threads\":%d,\"settings\":{\"epochs\":%d,"
                                 "\"batch_size\":%d,\"lr\":%g,\"warmup\":%g,\"weight_decay\":%g,"
                                 "\"dropout\":%g,\"token_dropout\":%g,\"wide_lr\":%g,"
                                 "\"clip\":%g,\"patience\":%d,\"schedule\":\"%s\","
                                 "\"soft_labels\":%s,\"keep\":\"%s\","
                                 "\"class_weights\":\"%s\"},\"epochs_run\":%d,\"best_epoch\":%d,"
                                 "\"metrics\":{\"valid_macro_f1\":%.4f,\"valid_accuracy\":%.4f,"
                                 "\"valid_recall\":{",
                                 b_va, h_va, dva.n, (unsigned long long)seed, nt, tc->epochs,
                                 tc->batch_size, tc->lr, tc->warmup, tc->weight_decay, tc->dropout,
                                 tc->token_dropout, tc->wide_lr, tc->clip, tc->patience,
                                 tc->cosine ? "cosine" : "linear", tr->targets ? "true" : "false",
                                 tc->keep_last ? "last" : "best",
                                 tc->balanced ? "balanced" : "none", res->epochs_run, best_epoch,
                                 best_f1, best_acc);
    for (int k = 0; k < K && rc == DYNRAG_OK; k++) {
        rc = dr_buf_puts(&prov, k ? "," : "");
        rc = rc ? rc : dr_buf_json_str(&prov, c->labels[0][k]);
        rc = rc ? rc : dr_buf_printf(&prov, ":%.4f", recall[k]);
    }
    rc = rc ? rc : dr_buf_printf(&prov, "}},\"seconds\":%.1f}", res->seconds);
    if (rc != DYNRAG_OK) {
        rc = dr_err_set(err, rc, "out of memory");
        goto cleanup;
    }
    rc = dr_classifier_save(c, out_path, prov.data, err);
    goto cleanup;
nomem:
    rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory for training state");
cleanup:
    for (int t = 0; t < DR_TRAIN_MAX_THREADS; t++) {
        dr_free(ws[t].grad);
        dr_t5_acts_free(&ws[t].acts);
    }
    dr_buf_free(&prov);
    dr_free(m);
    dr_free(v);
    dr_free(best);
    dr_free(perm);
    dr_free(pos);
    dr_free(eidx);
    dr_free(pred);
    train_data_free(&dtr);
    train_data_free(&dva);
    dr_classifier_free(c);
    dr_tokenizer_free(tok);
    dr_labelled_free(tr);
    dr_labelled_free(va);
    return rc;
}

/* Public: see dynrag/train.h. */
void dynrag_train_options_init(dynrag_train_options *o)
{
    memset(o, 0, sizeof(*o));
    o->train_path = NULL;
    o->valid_path = NULL;
    o->out_path = NULL;
    o->config = NULL;
    o->seed = 1;
    o->threads = 1;
    o->progress = NULL;
    o->progress_user = NULL;
}

int dynrag_classifier_train(const dynrag_train_options *o, dynrag_train_result *result,
                            dynrag_error *err)
{
    dr_train_config tc;
    dynrag_train_result local;
    if (!o || !o->train_path || !o->valid_path || !o->out_path)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "train, valid and out paths are required");
    dr_train_config_defaults(&tc);
    int rc = dr_train_config_parse(&tc, o->config, err);
    if (rc != DYNRAG_OK)
        return rc;
    return dr_train_run(&tc, o->train_path, o->valid_path, o->out_path, o->seed,
                        o->threads, o->progress, o->progress_user,
                        result ? result : &local, err);
}
