/* t5.c - forward and backward passes of the T5-style classifier encoder. */
#include "nn/t5.h"
#include "core/alloc.h"

#include "nn/wide.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RMS_EPS 1e-6f

/* ---- configuration and parameter layout ------------------------------- */

int dr_t5_config_check(const dr_t5_config *c, dynrag_error *err)
{
#define CHECK_RANGE(field, lo, hi)                                                         \
    if (c->field < (lo) || c->field > (hi))                                                \
        return dr_err_set(err, DYNRAG_ERR_INVALID, "model config: " #field " = %d outside "  \
                          "[%d, %d]", c->field, (int)(lo), (int)(hi));
    CHECK_RANGE(vocab_size, 2, 1 << 20);
    CHECK_RANGE(d_model, 1, 4096);
    CHECK_RANGE(n_layers, 0, DR_T5_MAX_LAYERS);
    CHECK_RANGE(n_heads, 1, 64);
    CHECK_RANGE(d_ff, 1, 16384);
    CHECK_RANGE(max_len, 1, 4096);
    CHECK_RANGE(num_buckets, 4, 1024); /* >= 4: at least one exact bucket per side */
    CHECK_RANGE(max_distance, 2, 1 << 20);
    CHECK_RANGE(n_cls, 1, DR_T5_MAX_HEADS);
    CHECK_RANGE(length_buckets, 0, 256);
    CHECK_RANGE(wide_bits, 0, DR_WIDE_MAX_BITS);
#undef CHECK_RANGE
    if (c->wide_bits > 0 && c->wide_bits < DR_WIDE_MIN_BITS)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "model config: wide_bits = %d must be 0 or "
                          "%d..%d", c->wide_bits, DR_WIDE_MIN_BITS, DR_WIDE_MAX_BITS);
    if (c->d_model % c->n_heads != 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "model config: d_model %d is not a multiple of "
                          "n_heads %d", c->d_model, c->n_heads);
    if (c->num_buckets % 2 != 0 || c->max_distance <= c->num_buckets / 4)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "model config: num_buckets must be even and "
                          "max_distance > num_buckets/4");
    for (int h = 0; h < c->n_cls; h++)
        if (c->n_labels[h] < 2 || c->n_labels[h] > DR_T5_MAX_LABELS)
            return dr_err_set(err, DYNRAG_ERR_INVALID, "model config: head %d has %d labels "
                              "(need 2..%d)", h, c->n_labels[h], DR_T5_MAX_LABELS);
    return DYNRAG_OK;
}

static void add_tensor(dr_t5_tensor *out, size_t *n, size_t *off, const char *name, int ndim,
                       uint64_t d0, uint64_t d1, bool decay)
{
    dr_t5_tensor *t = &out[(*n)++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim > 1 ? d1 : 0;
    t->numel = (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1);
    t->offset = *off;
    t->decay = decay;
    *off += t->numel;
}

size_t dr_t5_tensors(const dr_t5_config *c, dr_t5_tensor *out, size_t *total)
{
    size_t n = 0, off = 0;
    uint64_t V = (uint64_t)c->vocab_size, C = (uint64_t)c->d_model, F = (uint64_t)c->d_ff;
    char name[96];
    add_tensor(out, &n, &off, "shared.weight", 2, V, C, true);
    add_tensor(out, &n, &off,
               "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 2,
               (uint64_t)c->num_buckets, (uint64_t)c->n_heads, false);
    for (int l = 0; l < c->n_layers; l++) {
        static const char *const attn[] = {"q", "k", "v", "o"};
        snprintf(name, sizeof(name), "encoder.block.%d.layer.0.layer_norm.weight", l);
        add_tensor(out, &n, &off, name, 1, C, 0, false);
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof(name), "encoder.block.%d.layer.0.SelfAttention.%s.weight", l,
                     attn[i]);
            add_tensor(out, &n, &off, name, 2, C, C, true);
        }
        snprintf(name, sizeof(name), "encoder.block.%d.layer.1.layer_norm.weight", l);
        add_tensor(out, &n, &off, name, 1, C, 0, false);
        snprintf(name, sizeof(name), "encoder.block.%d.layer.1.DenseReluDense.wi_0.weight", l);
        add_tensor(out, &n, &off, name, 2, F, C, true);
        snprintf(name, sizeof(name), "encoder.block.%d.layer.1.DenseReluDense.wi_1.weight", l);
        add_tensor(out, &n, &off, name, 2, F, C, true);
        snprintf(name, sizeof(name), "encoder.block.%d.layer.1.DenseReluDense.wo.weight", l);
        add_tensor(out, &n, &off, name, 2, C, F, true);
    }
    add_tensor(out, &n, &off, "encoder.final_layer_norm.weight", 1, C, 0, false);
    for (int h = 0; h < c->n_cls; h++) {
        snprintf(name, sizeof(name), "heads.%d.weight", h);
        add_tensor(out, &n, &off, name, 2, (uint64_t)c->n_labels[h], C, true);
        snprintf(name, sizeof(name), "heads.%d.bias", h);
        add_tensor(out, &n, &off, name, 1, (uint64_t)c->n_labels[h], 0, false);
    }
    for (int h = 0; h < c->n_cls && c->wide_bits > 0; h++) {
        snprintf(name, sizeof(name), "heads.%d.wide.weight", h);
        add_tensor(out, &n, &off, name, 2, (uint64_t)c->n_labels[h],
                   (uint64_t)1 << c->wide_bits, true);
    }
    if (total)
        *total = off;
    return n;
}

void dr_t5_point(const dr_t5_config *c, float *base, dr_t5_params *p)
{
    dr_t5_tensor t[DR_T5_MAX_TENSORS];
    size_t n = dr_t5_tensors(c, t, NULL), k = 0;
    memset(p, 0, sizeof(*p));
    p->wte = base + t[k++].offset;
    p->rel_bias = base + t[k++].offset;
    for (int l = 0; l < c->n_layers; l++) {
        dr_t5_layer *L = &p->layer[l];
        L->ln1_w = base + t[k++].offset;
        L->wq = base + t[k++].offset;
        L->wk = base + t[k++].offset;
        L->wv = base + t[k++].offset;
        L->wo = base + t[k++].offset;
        L->ln2_w = base + t[k++].offset;
        L->wi0 = base + t[k++].offset;
        L->wi1 = base + t[k++].offset;
        L->wff = base + t[k++].offset;
    }
    p->lnf_w = base + t[k++].offset;
    for (int h = 0; h < c->n_cls; h++) {
        p->cls_w[h] = base + t[k++].offset;
        p->cls_b[h] = base + t[k++].offset;
    }
    for (int h = 0; h < c->n_cls && c->wide_bits > 0; h++)
        p->wide_w[h] = base + t[k++].offset;
    (void)n;
}

int dr_t5_bucket(int rel, int num_buckets, int max_distance)
{
    /* T5 (bidirectional): half the buckets for keys after the query. */
    int nb = num_buckets / 2;
    int ret = rel > 0 ? nb : 0;
    int n = rel < 0 ? -rel : rel;
    int max_exact = nb / 2;
    if (n < max_exact)
        return ret + n;
    /* in double: the same libm log as NumPy's float64 reference */
    int v = max_exact + (int)(log((double)n / (double)max_exact) /
                              log((double)max_distance / (double)max_exact) *
                              (double)(nb - max_exact));
    if (v > nb - 1)
        v = nb - 1;
    return ret + v;
}

int *dr_t5_bucket_table(const dr_t5_config *c)
{
    int n = 2 * c->max_len - 1;
    int *t = dr_malloc((size_t)n * sizeof(*t));
    if (!t)
        return NULL;
    for (int i = 0; i < n; i++)
        t[i] = dr_t5_bucket(i - (c->max_len - 1), c->num_buckets, c->max_distance);
    return t;
}

int dr_t5_logit_offset(const dr_t5_config *c, int head)
{
    int off = 0;
    for (int h = 0; h < head; h++)
        off += c->n_labels[h];
    return off;
}

int dr_t5_logit_width(const dr_t5_config *c) { return dr_t5_logit_offset(c, c->n_cls); }

/* ---- activations ------------------------------------------------------ */

int dr_t5_acts_alloc(const dr_t5_config *c, int B, int T, bool with_backward, dr_t5_acts *a,
                     dynrag_error *err)
{
    memset(a, 0, sizeof(*a));
    size_t L = (size_t)c->n_layers, C = (size_t)c->d_model, F = (size_t)c->d_ff;
    size_t NH = (size_t)c->n_heads, BT = (size_t)B * (size_t)T, W = (size_t)dr_t5_logit_width(c);
    struct {
        float **p;
        size_t n;
    } parts[] = {
        {&a->resid, (L + 1) * BT * C}, {&a->emb_mask, BT * C},      {&a->ln1, L * BT * C},
        {&a->ln1_rstd, L * BT},        {&a->qkv, L * BT * 3 * C},   {&a->att, L * (size_t)B * NH * T * T},
        {&a->atty, L * BT * C},        {&a->attn_mask, L * BT * C}, {&a->res2, L * BT * C},
        {&a->ln2, L * BT * C},         {&a->ln2_rstd, L * BT},      {&a->h, L * BT * 2 * F},
        {&a->g, L * BT * F},           {&a->ff_mask, L * BT * C},   {&a->lnf, BT * C},
        {&a->lnf_rstd, BT},            {&a->pooled, (size_t)B * C}, {&a->pool_mask, (size_t)B * C},
        {&a->logits, (size_t)B * W},   {&a->scratch, BT * C},
        /* backward scratch (n = 0 when not needed) */
        {&a->d_res, BT * C},           {&a->d_c, BT * C},           {&a->d_c2, BT * C},
        {&a->d_qkv, BT * 3 * C},       {&a->d_h, BT * 2 * F},       {&a->d_g, BT * F},
        {&a->d_att, (size_t)B * NH * T * T}, {&a->d_pooled, (size_t)B * C},
    };
    size_t first_bwd = 20, total = 0;
    for (size_t i = 0; i < DR_ARRAY_LEN(parts); i++)
        if (i < first_bwd || with_backward)
            total += parts[i].n;
    a->block = dr_malloc((total ? total : 1) * sizeof(float));
    if (!a->block)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory for activations (%zu floats)",
                          total);
    size_t off = 0;
    for (size_t i = 0; i < DR_ARRAY_LEN(parts); i++) {
        if (i >= first_bwd && !with_backward) {
            *parts[i].p = NULL;
            continue;
        }
        *parts[i].p = a->block + off;
        off += parts[i].n;
    }
    a->B = B;
    a->T = T;
    return DYNRAG_OK;
}

void dr_t5_acts_free(dr_t5_acts *a)
{
    if (!a)
        return;
    dr_free(a->block);
    memset(a, 0, sizeof(*a));
}

/* ---- kernels ------------------------------------------------------------ */

/* 8-wide vectors via GCC/Clang vector extensions: SSE/AVX on x86, NEON on
 * ARM, scalar elsewhere. Summation order is fixed, so results do not
 * depend on the instruction set (the build does not contract to FMA). */
typedef float v8f __attribute__((vector_size(32)));
#if defined(__GNUC__)
/* The helpers below are static and inlined: no ABI is crossed. */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define DR_INLINE static inline __attribute__((always_inline))

DR_INLINE v8f load8(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof(v));
    return v;
}

DR_INLINE void store8(float *p, v8f v) { memcpy(p, &v, sizeof(v)); }

DR_INLINE float dot(const float *a, const float *b, int n)
{
    v8f acc0 = {0}, acc1 = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 += load8(a + i) * load8(b + i);
        acc1 += load8(a + i + 8) * load8(b + i + 8);
    }
    for (; i + 8 <= n; i += 8)
        acc0 += load8(a + i) * load8(b + i);
    acc0 += acc1;
    float s = ((acc0[0] + acc0[1]) + (acc0[2] + acc0[3])) + ((acc0[4] + acc0[5]) + (acc0[6] + acc0[7]));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* y[0..n) += alpha * x[0..n) */
DR_INLINE void axpy(float *y, float alpha, const float *x, int n)
{
    int i = 0;
    v8f va = {alpha, alpha, alpha, alpha, alpha, alpha, alpha, alpha};
    for (; i + 8 <= n; i += 8)
        store8(y + i, load8(y + i) + va * load8(x + i));
    for (; i < n; i++)
        y[i] += alpha * x[i];
}

/* Hot kernels get an AVX2 clone on x86-64 (picked at load time through an
 * ifunc); the arithmetic and its order are the same in every clone. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DR_NO_CLONES /* clang + ASan */
#endif
#endif
#if defined(__x86_64__) && defined(__has_attribute) && !defined(DR_NO_CLONES)
#if __has_attribute(target_clones) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define DR_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#define DR_MULTIVERSION_ON 1
#endif
#endif
#ifndef DR_MULTIVERSION
#define DR_MULTIVERSION
#endif

/* (Unused in builds without the 4-row kernels, e.g. clang + ASan.) */
static inline __attribute__((always_inline, unused)) float hsum8(v8f v)
{
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

#if defined(__clang__)
#define DR_SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
typedef int v8i __attribute__((vector_size(32)));
#define DR_SHUF(a, b, ...) __builtin_shuffle(a, b, (v8i){__VA_ARGS__})
#endif

/*
 * The eight horizontal sums hsum8(a[0]) .. hsum8(a[7]) at once, each with
 * exactly hsum8's tree ((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7))
 * (additions commute exactly, so only the grouping matters): two rounds of
 * pairwise adds (what x86's hadd does) and one add across the halves, in
 * place of eight separate shuffle chains. Bit-identical to hsum8.
 */
DR_INLINE v8f hsum8x8(const v8f *a)
{
#define DR_PAIRS(x, y) (DR_SHUF(x, y, 0, 2, 8, 10, 4, 6, 12, 14) + DR_SHUF(x, y, 1, 3, 9, 11, 5, 7, 13, 15))
    v8f h0 = DR_PAIRS(a[0], a[1]), h1 = DR_PAIRS(a[2], a[3]);
    v8f h2 = DR_PAIRS(a[4], a[5]), h3 = DR_PAIRS(a[6], a[7]);
    v8f g0 = DR_PAIRS(h0, h1), g1 = DR_PAIRS(h2, h3); /* lanes 0-3: a0..a3 low half, 4-7: high */
#undef DR_PAIRS
    return DR_SHUF(g0, g1, 0, 1, 2, 3, 8, 9, 10, 11) + DR_SHUF(g0, g1, 4, 5, 6, 7, 12, 13, 14, 15);
}

#if defined(DR_MULTIVERSION_ON)
/*
 * matmul_forward's rows n0.. in blocks of 4 input rows x 4 weight rows (16
 * accumulators: AVX-512VL's 32 vector registers hold them without spills,
 * and each loaded vector feeds 4 products instead of 2 or 3). Every output
 * is accumulated exactly as in matmul_forward's 2-row block (the same
 * 8-wide partial sums in the same order, the same hsum8 and tail), so the
 * results are bit-identical whichever kernel runs. Returns the first row it
 * did not do (a multiple of 4); only when C % 8 == 0 and OC % 4 == 0.
 */
__attribute__((target("avx512f,avx512vl"))) static int
matmul_forward_4x4(float *out, const float *inp, const float *weight, int N, int C, int OC)
{
    int n = 0;
    for (; n + 4 <= N; n += 4) {
        const float *x0 = inp + (size_t)n * C, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;
        float *o0 = out + (size_t)n * OC;
        for (int k = 0; k < OC; k += 4) {
            const float *w0 = weight + (size_t)k * C, *w1 = w0 + C, *w2 = w1 + C, *w3 = w2 + C;
            v8f a00 = {0}, a01 = {0}, a02 = {0}, a03 = {0}, a10 = {0}, a11 = {0}, a12 = {0},
                a13 = {0}, a20 = {0}, a21 = {0}, a22 = {0}, a23 = {0}, a30 = {0}, a31 = {0},
                a32 = {0}, a33 = {0};
            for (int i = 0; i < C; i += 8) {
                v8f u0 = load8(x0 + i), u1 = load8(x1 + i), u2 = load8(x2 + i),
                    u3 = load8(x3 + i);
                v8f w = load8(w0 + i);
                a00 += u0 * w;
                a10 += u1 * w;
                a20 += u2 * w;
                a30 += u3 * w;
                w = load8(w1 + i);
                a01 += u0 * w;
                a11 += u1 * w;
                a21 += u2 * w;
                a31 += u3 * w;
                w = load8(w2 + i);
                a02 += u0 * w;
                a12 += u1 * w;
                a22 += u2 * w;
                a32 += u3 * w;
                w = load8(w3 + i);
                a03 += u0 * w;
                a13 += u1 * w;
                a23 += u2 * w;
                a33 += u3 * w;
            }
            const v8f top[8] = {a00, a01, a02, a03, a10, a11, a12, a13};
            const v8f bot[8] = {a20, a21, a22, a23, a30, a31, a32, a33};
            float s[16];
            store8(s, hsum8x8(top));
            store8(s + 8, hsum8x8(bot));
            float *o = o0 + k;
            for (int r = 0; r < 4; r++, o += OC)
                memcpy(o, s + 4 * r, 4 * sizeof(float));
        }
    }
    return n;
}

static int portable_only; /* dr_t5_set_portable() */

/* True when the 4-row kernels run: the CPU has AVX-512VL (checked once)
 * and dr_t5_set_portable() did not turn them off. */
static bool has_avx512vl(void)
{
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v != 0 && !__atomic_load_n(&portable_only, __ATOMIC_RELAXED);
}

bool dr_t5_set_portable(bool on)
{
    __atomic_store_n(&portable_only, 0, __ATOMIC_RELAXED);
    bool fast = has_avx512vl();
    __atomic_store_n(&portable_only, on ? 1 : 0, __ATOMIC_RELAXED);
    return fast;
}
#else
bool dr_t5_set_portable(bool on)
{
    (void)on;
    return false;
}
#endif

/* out[N, OC] = inp[N, C] · weight[OC, C]^T  (no bias)
 * Register-blocked: 2 input rows x 4 weight rows per inner loop (4 x 4 on
 * CPUs with AVX-512VL, bit-identical). */
DR_MULTIVERSION
static void matmul_forward(float *out, const float *inp, const float *weight, int N, int C, int OC)
{
    int C8 = C - C % 8, n = 0;
#if defined(DR_MULTIVERSION_ON)
    if (C % 8 == 0 && OC % 4 == 0 && N >= 4 && has_avx512vl())
        n = matmul_forward_4x4(out, inp, weight, N, C, OC);
#endif
    for (; n + 2 <= N; n += 2) {
        const float *x0 = inp + (size_t)n * C, *x1 = x0 + C;
        float *o0 = out + (size_t)n * OC, *o1 = o0 + OC;
        int k = 0;
        for (; k + 4 <= OC; k += 4) {
            const float *w0 = weight + (size_t)k * C, *w1 = w0 + C, *w2 = w1 + C, *w3 = w2 + C;
            v8f a00 = {0}, a01 = {0}, a02 = {0}, a03 = {0}, a10 = {0}, a11 = {0}, a12 = {0},
                a13 = {0};
            for (int i = 0; i < C8; i += 8) {
                v8f u = load8(x0 + i), v = load8(x1 + i), w;
                w = load8(w0 + i);
                a00 += u * w;
                a10 += v * w;
                w = load8(w1 + i);
                a01 += u * w;
                a11 += v * w;
                w = load8(w2 + i);
                a02 += u * w;
                a12 += v * w;
                w = load8(w3 + i);
                a03 += u * w;
                a13 += v * w;
            }
            const v8f acc[8] = {a00, a01, a02, a03, a10, a11, a12, a13};
            float r[8];
            store8(r, hsum8x8(acc));
            for (int i = C8; i < C; i++) {
                r[0] += x0[i] * w0[i];
                r[1] += x0[i] * w1[i];
                r[2] += x0[i] * w2[i];
                r[3] += x0[i] * w3[i];
                r[4] += x1[i] * w0[i];
                r[5] += x1[i] * w1[i];
                r[6] += x1[i] * w2[i];
                r[7] += x1[i] * w3[i];
            }
            memcpy(o0 + k, r, 4 * sizeof(float));
            memcpy(o1 + k, r + 4, 4 * sizeof(float));
        }
        for (; k < OC; k++) {
            o0[k] = dot(x0, weight + (size_t)k * C, C);
            o1[k] = dot(x1, weight + (size_t)k * C, C);
        }
    }
    for (; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * OC;
        for (int k = 0; k < OC; k++)
            o[k] = dot(x, weight + (size_t)k * C, C);
    }
}

/* dinp[N, C] += dout[N, OC] · weight[OC, C];  dweight[OC, C] += dout^T · inp
 * (dinp may be NULL when not needed) */
DR_MULTIVERSION
static void matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, int N, int C, int OC)
{
    for (int n = 0; n < N; n++) {
        const float *d = dout + (size_t)n * OC;
        const float *x = inp + (size_t)n * C;
        for (int k = 0; k < OC; k++) {
            if (d[k] == 0.0f)
                continue;
            if (dinp)
                axpy(dinp + (size_t)n * C, d[k], weight + (size_t)k * C, C);
            axpy(dweight + (size_t)k * C, d[k], x, C);
        }
    }
}

/* out[B,T,C] = wte[tokens[B,T], :] */
static void encoder_forward(float *out, const int32_t *tokens, const float *wte, int BT, int C)
{
    for (int i = 0; i < BT; i++)
        memcpy(out + (size_t)i * C, wte + (size_t)tokens[i] * C, (size_t)C * sizeof(float));
}

/* dwte[tokens[i], :] += dout[i, :] */
static void encoder_backward(float *dwte, const float *dout, const int32_t *tokens,
                             const int *lens, int B, int T, int C)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < lens[b]; t++)
            axpy(dwte + (size_t)tokens[b * T + t] * C, 1.0f, dout + ((size_t)b * T + t) * C, C);
}

/* out[N,C] = inp / rms(inp) * weight; rstd[N] = 1 / rms */
static void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N,
                            int C)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float r = 1.0f / sqrtf(dot(x, x, C) / (float)C + RMS_EPS);
        for (int i = 0; i < C; i++)
            o[i] = x[i] * r * weight[i];
        rstd[n] = r;
    }
}

/* dinp += d/dinp, dweight += d/dweight of rmsnorm, given dout */
static void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                             const float *weight, const float *rstd, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float r = rstd[n];
        float s = 0.0f; /* sum_i d_i w_i x_i */
        for (int i = 0; i < C; i++) {
            s += d[i] * weight[i] * x[i];
            dweight[i] += d[i] * x[i] * r;
        }
        float k = s * r * r * r / (float)C;
        for (int i = 0; i < C; i++)
            dx[i] += r * weight[i] * d[i] - k * x[i];
    }
}

/*
 * Self-attention with relative position bias.
 * qkv [B,T,3C] (q | k | v), out [B,T,C], att [B,NH,T,T] (softmax rows;
 * zero at masked keys j >= lens[b]); rel_bias [NB,NH];
 * rel_bucket[j - i + max_len - 1] gives the bucket.
 */
#if defined(DR_MULTIVERSION_ON)
/*
 * attention_forward for query rows i0..i0+3 of head h of example b when the
 * head size is 32: each key and value row is loaded once for the four query
 * rows, and the four output rows stay in registers (AVX-512VL's 32 vector
 * registers) across the value rows. Every score, softmax and output value
 * is computed with exactly the operations of the one-row path, in the
 * same order (dot()'s two 8-wide partial sums, axpy's y + alpha * x from a
 * zeroed row), so the results are bit-identical.
 */
__attribute__((target("avx512f,avx512vl"))) static void
attention_rows4_hs32(float *out, float *att, const float *qkv, const float *rel_bias,
                     const int *rel_bucket, int max_len, int len, int b, int h, int i0, int T,
                     int C, int NH, float scale)
{
    const int hs = 32, C3 = 3 * C;
    const float *q[4];
    float *row[4];
    float mx[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    for (int r = 0; r < 4; r++) {
        q[r] = qkv + ((size_t)b * T + i0 + r) * C3 + h * hs;
        row[r] = att + (((size_t)b * NH + h) * T + i0 + r) * T;
    }
    /* Each score's 8-wide partial sums as dot() forms them; their
     * horizontal sums are taken 8 keys at a time (hsum8x8), the rest one
     * by one (hsum8), the same sums either way. */
    v8f part[4][8];
    for (int j0 = 0; j0 < len; j0 += 8) {
        int nj = len - j0 < 8 ? len - j0 : 8;
        for (int jj = 0; jj < nj; jj++) {
            const float *k = qkv + ((size_t)b * T + j0 + jj) * C3 + C + h * hs;
            v8f k0 = load8(k), k1 = load8(k + 8), k2 = load8(k + 16), k3 = load8(k + 24);
            for (int r = 0; r < 4; r++) {
                v8f acc0 = {0}, acc1 = {0};
                acc0 += load8(q[r]) * k0;
                acc1 += load8(q[r] + 8) * k1;
                acc0 += load8(q[r] + 16) * k2;
                acc1 += load8(q[r] + 24) * k3;
                acc0 += acc1;
                part[r][jj] = acc0;
            }
        }
        for (int r = 0; r < 4; r++) {
            float d[8];
            if (nj == 8)
                store8(d, hsum8x8(part[r]));
            else
                for (int jj = 0; jj < nj; jj++)
                    d[jj] = hsum8(part[r][jj]);
            for (int jj = 0; jj < nj; jj++) {
                int j = j0 + jj;
                float v = d[jj] * scale + rel_bias[rel_bucket[j - (i0 + r) + max_len - 1] * NH + h];
                row[r][j] = v;
                if (v > mx[r])
                    mx[r] = v;
            }
        }
    }
    for (int r = 0; r < 4; r++) {
        float sum = 0.0f;
        for (int j = 0; j < len; j++) {
            row[r][j] = expf(row[r][j] - mx[r]);
            sum += row[r][j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < len; j++)
            row[r][j] *= inv;
        for (int j = len; j < T; j++)
            row[r][j] = 0.0f;
    }
    v8f o00 = {0}, o01 = {0}, o02 = {0}, o03 = {0}, o10 = {0}, o11 = {0}, o12 = {0}, o13 = {0},
        o20 = {0}, o21 = {0}, o22 = {0}, o23 = {0}, o30 = {0}, o31 = {0}, o32 = {0}, o33 = {0};
    for (int j = 0; j < len; j++) {
        const float *v = qkv + ((size_t)b * T + j) * C3 + 2 * C + h * hs;
        v8f v0 = load8(v), v1 = load8(v + 8), v2 = load8(v + 16), v3 = load8(v + 24);
        float a0 = row[0][j], a1 = row[1][j], a2 = row[2][j], a3 = row[3][j];
        v8f b0 = {a0, a0, a0, a0, a0, a0, a0, a0}, b1 = {a1, a1, a1, a1, a1, a1, a1, a1},
            b2 = {a2, a2, a2, a2, a2, a2, a2, a2}, b3 = {a3, a3, a3, a3, a3, a3, a3, a3};
        o00 = o00 + b0 * v0, o01 = o01 + b0 * v1, o02 = o02 + b0 * v2, o03 = o03 + b0 * v3;
        o10 = o10 + b1 * v0, o11 = o11 + b1 * v1, o12 = o12 + b1 * v2, o13 = o13 + b1 * v3;
        o20 = o20 + b2 * v0, o21 = o21 + b2 * v1, o22 = o22 + b2 * v2, o23 = o23 + b2 * v3;
        o30 = o30 + b3 * v0, o31 = o31 + b3 * v1, o32 = o32 + b3 * v2, o33 = o33 + b3 * v3;
    }
    float *o = out + ((size_t)b * T + i0) * C + h * hs;
    store8(o, o00), store8(o + 8, o01), store8(o + 16, o02), store8(o + 24, o03);
    o += C;
    store8(o, o10), store8(o + 8, o11), store8(o + 16, o12), store8(o + 24, o13);
    o += C;
    store8(o, o20), store8(o + 8, o21), store8(o + 16, o22), store8(o + 24, o23);
    o += C;
    store8(o, o30), store8(o + 8, o31), store8(o + 16, o32), store8(o + 24, o33);
}
#endif

DR_MULTIVERSION
static void attention_forward(float *out, float *att, const float *qkv, const float *rel_bias,
                              const int *rel_bucket, int max_len, const int *lens, int B, int T,
                              int C, int NH)
{
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++) {
        int len = lens[b];
        for (int h = 0; h < NH; h++) {
            int i = 0;
#if defined(DR_MULTIVERSION_ON)
            if (hs == 32 && has_avx512vl())
                for (; i + 4 <= T; i += 4)
                    attention_rows4_hs32(out, att, qkv, rel_bias, rel_bucket, max_len, len, b, h,
                                         i, T, C, NH, scale);
#endif
            for (; i < T; i++) {
                const float *q = qkv + ((size_t)b * T + i) * C3 + h * hs;
                float *row = att + (((size_t)b * NH + h) * T + i) * T;
                float mx = -INFINITY;
                for (int j = 0; j < len; j++) {
                    const float *k = qkv + ((size_t)b * T + j) * C3 + C + h * hs;
                    float v = dot(q, k, hs) * scale +
                              rel_bias[rel_bucket[j - i + max_len - 1] * NH + h];
                    row[j] = v;
                    if (v > mx)
                        mx = v;
                }
                float sum = 0.0f;
                for (int j = 0; j < len; j++) {
                    row[j] = expf(row[j] - mx);
                    sum += row[j];
                }
                float inv = 1.0f / sum;
                for (int j = 0; j < len; j++)
                    row[j] *= inv;
                for (int j = len; j < T; j++)
                    row[j] = 0.0f;
                float *o = out + ((size_t)b * T + i) * C + h * hs;
                memset(o, 0, (size_t)hs * sizeof(float));
                for (int j = 0; j < len; j++)
                    axpy(o, row[j], qkv + ((size_t)b * T + j) * C3 + 2 * C + h * hs, hs);
            }
        }
    }
}

/* dqkv [B,T,3C] += ..., drel_bias [NB,NH] += ...; datt is [B,NH,T,T] scratch */
DR_MULTIVERSION
static void attention_backward(float *dqkv, float *drel_bias, float *datt, const float *dout,
                               const float *qkv, const float *att, const int *rel_bucket,
                               int max_len, const int *lens, int B, int T, int C, int NH)
{
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++) {
        int len = lens[b];
        for (int h = 0; h < NH; h++) {
            for (int i = 0; i < T; i++) {
                const float *row = att + (((size_t)b * NH + h) * T + i) * T;
                float *drow = datt + (((size_t)b * NH + h) * T + i) * T;
                const float *d = dout + ((size_t)b * T + i) * C + h * hs;
                /* through out_i = sum_j att_ij v_j */
                for (int j = 0; j < len; j++) {
                    const float *v = qkv + ((size_t)b * T + j) * C3 + 2 * C + h * hs;
                    drow[j] = dot(d, v, hs);
                    axpy(dqkv + ((size_t)b * T + j) * C3 + 2 * C + h * hs, row[j], d, hs);
                }
                /* through softmax */
                float s = 0.0f;
                for (int j = 0; j < len; j++)
                    s += row[j] * drow[j];
                const float *q = qkv + ((size_t)b * T + i) * C3 + h * hs;
                float *dq = dqkv + ((size_t)b * T + i) * C3 + h * hs;
                for (int j = 0; j < len; j++) {
                    float dpre = row[j] * (drow[j] - s);
                    drel_bias[rel_bucket[j - i + max_len - 1] * NH + h] += dpre;
                    const float *k = qkv + ((size_t)b * T + j) * C3 + C + h * hs;
                    axpy(dq, dpre * scale, k, hs);
                    axpy(dqkv + ((size_t)b * T + j) * C3 + C + h * hs, dpre * scale, q, hs);
                }
            }
        }
    }
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

/* tanh(u) = 1 - 2 / (exp(2u) + 1): libm's expf is several times faster
 * than its tanhf; absolute error ~1e-7 (saturates correctly at +-inf). */
static inline float fast_tanh(float u)
{
    return 1.0f - 2.0f / (expf(2.0f * u) + 1.0f);
}

/* out[N,F] = gelu(h[N, 0:F]) * h[N, F:2F]
 * In three passes per row so that everything but expf is vectorised: the
 * argument of expf into out, expf in place, then the rest; each element
 * goes through exactly the operations of
 *   0.5f * x * (1.0f + fast_tanh(GELU_K * (x + 0.044715f * x * x * x))) * b
 * in that order, so the result is the same bit for bit. */
DR_MULTIVERSION
static void gated_gelu_forward(float *out, const float *h, int N, int F)
{
    for (int n = 0; n < N; n++) {
        const float *a = h + (size_t)n * 2 * F, *b = a + F;
        float *o = out + (size_t)n * F;
        for (int i = 0; i < F; i++) {
            float x = a[i];
            o[i] = 2.0f * (GELU_K * (x + 0.044715f * x * x * x));
        }
        for (int i = 0; i < F; i++)
            o[i] = expf(o[i]);
        for (int i = 0; i < F; i++) {
            float x = a[i];
            float th = 1.0f - 2.0f / (o[i] + 1.0f);
            o[i] = 0.5f * x * (1.0f + th) * b[i];
        }
    }
}

/* dh[N,2F] = d/dh given dout[N,F] (overwrites dh) */
static void gated_gelu_backward(float *dh, const float *dout, const float *h, int N, int F)
{
    for (int n = 0; n < N; n++) {
        const float *a = h + (size_t)n * 2 * F, *b = a + F, *d = dout + (size_t)n * F;
        float *da = dh + (size_t)n * 2 * F, *db = da + F;
        for (int i = 0; i < F; i++) {
            float x = a[i];
            float u = GELU_K * (x + 0.044715f * x * x * x);
            float th = fast_tanh(u);
            float gx = 0.5f * x * (1.0f + th);
            float sech2 = 1.0f - th * th;
            float dg = 0.5f * (1.0f + th) +
                       0.5f * x * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
            da[i] = d[i] * b[i] * dg;
            db[i] = d[i] * gx;
        }
    }
}

/* mask[n] = 0 or 1/(1-p) drawn from rng (all ones when p == 0) */
static void dropout_mask(float *mask, size_t n, float p, dr_rng *rng)
{
    if (p <= 0.0f || rng == NULL) {
        for (size_t i = 0; i < n; i++)
            mask[i] = 1.0f;
        return;
    }
    float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++)
        mask[i] = dr_rng_uniform(rng) < (double)p ? 0.0f : keep;
}

/* out[B,C] = mean of inp[b, t < lens[b], :] */
static void meanpool_forward(float *out, const float *inp, const int *lens, int B, int T, int C)
{
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * C;
        memset(o, 0, (size_t)C * sizeof(float));
        for (int t = 0; t < lens[b]; t++)
            axpy(o, 1.0f, inp + ((size_t)b * T + t) * C, C);
        float inv = 1.0f / (float)lens[b];
        for (int i = 0; i < C; i++)
            o[i] *= inv;
    }
}

/* dinp[B,T,C] = dout[b] / lens[b] at t < lens[b], 0 elsewhere (overwrites) */
static void meanpool_backward(float *dinp, const float *dout, const int *lens, int B, int T, int C)
{
    for (int b = 0; b < B; b++) {
        float inv = 1.0f / (float)lens[b];
        for (int t = 0; t < T; t++) {
            float *d = dinp + ((size_t)b * T + t) * C;
            for (int i = 0; i < C; i++)
                d[i] = t < lens[b] ? dout[(size_t)b * C + i] * inv : 0.0f;
        }
    }
}

/* ---- the whole model ----------------------------------------------------- */

void dr_t5_forward(const dr_t5_config *c, const dr_t5_params *p, const int *rel_bucket,
                   const int32_t *tokens, const int *lens, int B, int T, bool training,
                   float dropout, dr_rng *rng, dr_t5_acts *a)
{
    int C = c->d_model, F = c->d_ff, NH = c->n_heads, BT = B * T, W = dr_t5_logit_width(c);
    size_t BTC = (size_t)BT * C;
    float pd = training ? dropout : 0.0f;
    encoder_forward(a->resid, tokens, p->wte, BT, C);
    if (training) {
        dropout_mask(a->emb_mask, BTC, pd, rng);
        for (size_t i = 0; i < BTC; i++)
            a->resid[i] *= a->emb_mask[i];
    }
    for (int l = 0; l < c->n_layers; l++) {
        const dr_t5_layer *L = &p->layer[l];
        float *res = a->resid + (size_t)l * BTC;
        float *ln1 = a->ln1 + (size_t)l * BTC, *ln1_rstd = a->ln1_rstd + (size_t)l * BT;
        float *qkv = a->qkv + (size_t)l * BTC * 3;
        float *att = a->att + (size_t)l * B * NH * T * T;
        float *atty = a->atty + (size_t)l * BTC, *amask = a->attn_mask + (size_t)l * BTC;
        float *res2 = a->res2 + (size_t)l * BTC;
        float *ln2 = a->ln2 + (size_t)l * BTC, *ln2_rstd = a->ln2_rstd + (size_t)l * BT;
        float *h = a->h + (size_t)l * BT * 2 * F, *g = a->g + (size_t)l * BT * F;
        float *fmask = a->ff_mask + (size_t)l * BTC;
        float *out = a->resid + (size_t)(l + 1) * BTC;

        rmsnorm_forward(ln1, ln1_rstd, res, L->ln1_w, BT, C);
        matmul_forward(qkv, ln1, L->wq, BT, C, 3 * C); /* wq|wk|wv adjacent: [3C, C] */
        attention_forward(atty, att, qkv, p->rel_bias, rel_bucket, c->max_len, lens, B, T, C, NH);
        matmul_forward(a->scratch, atty, L->wo, BT, C, C);
        if (training)
            dropout_mask(amask, BTC, pd, rng);
        for (size_t i = 0; i < BTC; i++)
            res2[i] = res[i] + (training ? amask[i] : 1.0f) * a->scratch[i];

        rmsnorm_forward(ln2, ln2_rstd, res2, L->ln2_w, BT, C);
        matmul_forward(h, ln2, L->wi0, BT, C, 2 * F); /* wi0|wi1 adjacent: [2F, C] */
        gated_gelu_forward(g, h, BT, F);
        matmul_forward(a->scratch, g, L->wff, BT, F, C);
        if (training)
            dropout_mask(fmask, BTC, pd, rng);
        for (size_t i = 0; i < BTC; i++)
            out[i] = res2[i] + (training ? fmask[i] : 1.0f) * a->scratch[i];
    }
    rmsnorm_forward(a->lnf, a->lnf_rstd, a->resid + (size_t)c->n_layers * BTC, p->lnf_w, BT, C);
    meanpool_forward(a->pooled, a->lnf, lens, B, T, C);
    if (training) {
        dropout_mask(a->pool_mask, (size_t)B * C, pd, rng);
        for (size_t i = 0; i < (size_t)B * C; i++)
            a->pooled[i] *= a->pool_mask[i];
    }
    for (int hd = 0; hd < c->n_cls; hd++) {
        int K = c->n_labels[hd], off = dr_t5_logit_offset(c, hd);
        for (int b = 0; b < B; b++)
            for (int k = 0; k < K; k++)
                a->logits[(size_t)b * W + off + k] =
                    dot(a->pooled + (size_t)b * C, p->cls_w[hd] + (size_t)k * C, C) +
                    p->cls_b[hd][k];
    }
}

void dr_t5_backward(const dr_t5_config *c, const dr_t5_params *p, const int *rel_bucket,
                    const int32_t *tokens, const int *lens, int B, int T, const float *dlogits,
                    dr_t5_acts *a, dr_t5_params *g)
{
    int C = c->d_model, F = c->d_ff, NH = c->n_heads, BT = B * T, W = dr_t5_logit_width(c);
    size_t BTC = (size_t)BT * C;
    /* heads: logits = pooled · W^T + b */
    memset(a->d_pooled, 0, (size_t)B * C * sizeof(float));
    for (int hd = 0; hd < c->n_cls; hd++) {
        int K = c->n_labels[hd], off = dr_t5_logit_offset(c, hd);
        for (int b = 0; b < B; b++)
            for (int k = 0; k < K; k++) {
                float d = dlogits[(size_t)b * W + off + k];
                g->cls_b[hd][k] += d;
                axpy(g->cls_w[hd] + (size_t)k * C, d, a->pooled + (size_t)b * C, C);
                axpy(a->d_pooled + (size_t)b * C, d, p->cls_w[hd] + (size_t)k * C, C);
            }
    }
    /* pooled dropout: d_pooled *= mask (the mask is ones when not training) */
    for (size_t i = 0; i < (size_t)B * C; i++)
        a->d_pooled[i] *= a->pool_mask[i];
    meanpool_backward(a->d_c, a->d_pooled, lens, B, T, C);
    memset(a->d_res, 0, BTC * sizeof(float));
    rmsnorm_backward(a->d_res, g->lnf_w, a->d_c, a->resid + (size_t)c->n_layers * BTC, p->lnf_w,
                     a->lnf_rstd, BT, C);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const dr_t5_layer *L = &p->layer[l];
        dr_t5_layer *GL = &g->layer[l];
        const float *res = a->resid + (size_t)l * BTC;
        const float *ln1 = a->ln1 + (size_t)l * BTC, *ln1_rstd = a->ln1_rstd + (size_t)l * BT;
        const float *qkv = a->qkv + (size_t)l * BTC * 3;
        const float *att = a->att + (size_t)l * B * NH * T * T;
        const float *atty = a->atty + (size_t)l * BTC, *amask = a->attn_mask + (size_t)l * BTC;
        const float *res2 = a->res2 + (size_t)l * BTC;
        const float *ln2 = a->ln2 + (size_t)l * BTC, *ln2_rstd = a->ln2_rstd + (size_t)l * BT;
        const float *h = a->h + (size_t)l * BT * 2 * F, *gg = a->g + (size_t)l * BT * F;
        const float *fmask = a->ff_mask + (size_t)l * BTC;

        /* feed-forward branch: out = res2 + fmask * (g · Wff^T) */
        for (size_t i = 0; i < BTC; i++)
            a->d_c[i] = a->d_res[i] * fmask[i];
        memset(a->d_g, 0, (size_t)BT * F * sizeof(float));
        matmul_backward(a->d_g, GL->wff, a->d_c, gg, L->wff, BT, F, C);
        gated_gelu_backward(a->d_h, a->d_g, h, BT, F);
        memset(a->d_c2, 0, BTC * sizeof(float));
        matmul_backward(a->d_c2, GL->wi0, a->d_h, ln2, L->wi0, BT, C, 2 * F);
        rmsnorm_backward(a->d_res, GL->ln2_w, a->d_c2, res2, L->ln2_w, ln2_rstd, BT, C);

        /* attention branch: res2 = res + amask * (atty · Wo^T) */
        for (size_t i = 0; i < BTC; i++)
            a->d_c[i] = a->d_res[i] * amask[i];
        memset(a->d_c2, 0, BTC * sizeof(float));
        matmul_backward(a->d_c2, GL->wo, a->d_c, atty, L->wo, BT, C, C);
        memset(a->d_qkv, 0, BTC * 3 * sizeof(float));
        attention_backward(a->d_qkv, g->rel_bias, a->d_att, a->d_c2, qkv, att, rel_bucket,
                           c->max_len, lens, B, T, C, NH);
        memset(a->d_c, 0, BTC * sizeof(float));
        matmul_backward(a->d_c, GL->wq, a->d_qkv, ln1, L->wq, BT, C, 3 * C);
        rmsnorm_backward(a->d_res, GL->ln1_w, a->d_c, res, L->ln1_w, ln1_rstd, BT, C);
    }
    /* embedding dropout, then the table */
    for (size_t i = 0; i < BTC; i++)
        a->d_res[i] *= a->emb_mask[i];
    encoder_backward(g->wte, a->d_res, tokens, lens, B, T, C);
}
