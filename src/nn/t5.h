/*
 * nn/t5.h - a small T5-style encoder with classification heads: forward and
 * backward passes in plain C (internal).
 *
 * Model (names follow llm.c: B batch, T time steps, C d_model, NH heads,
 * F d_ff, V vocabulary, NB relative-position buckets, K labels of a head):
 *
 *   x = wte[tokens]                                   [B,T,C]  + dropout
 *   for each of L layers:
 *     x = x + dropout(Wo · attn(rmsnorm(x) · Wqkv, rel_bias))
 *     x = x + dropout(Wff · (gelu(rmsnorm(x)·Wi0) * (rmsnorm(x)·Wi1)))
 *   h = rmsnorm(x)                                     [B,T,C]
 *   p = mean of h over the first len[b] positions      [B,C]   + dropout
 *   logits_k = W_k · p + b_k                           [B,K]   per head
 *
 * Attention is bidirectional over the first len[b] positions (keys past the
 * length are masked), scaled by 1/sqrt(C/NH) (a departure from T5, which
 * folds the scale into its initialisation), plus T5's bucketed relative
 * position bias rel_bias[bucket(j - i), h], learned once and shared by all
 * layers. RMSNorm is T5's: x / sqrt(mean(x^2) + 1e-6) * w, no bias and no
 * mean subtraction. GELU is the tanh approximation. No linear layer of the
 * encoder has a bias; classification heads do.
 *
 * All parameters live in one float allocation whose layout dr_t5_tensors()
 * describes (the weight file stores the same tensors under these names).
 */
#ifndef DYNRAG_NN_T5_H
#define DYNRAG_NN_T5_H

#include "core/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DR_T5_MAX_LAYERS 16
#define DR_T5_MAX_HEADS 8    /* classification heads */
#define DR_T5_MAX_LABELS 64  /* labels per head */
#define DR_T5_MAX_TENSORS (3 + 9 * DR_T5_MAX_LAYERS + 3 * DR_T5_MAX_HEADS)

typedef struct dr_t5_config {
    int vocab_size;   /* V */
    int d_model;      /* C */
    int n_layers;     /* L */
    int n_heads;      /* NH (attention heads); C % NH == 0 */
    int d_ff;         /* F */
    int max_len;      /* longest input in tokens (T <= max_len) */
    int num_buckets;  /* NB, even */
    int max_distance; /* relative distances >= this share the last bucket */
    int length_buckets; /* > 0: the input starts with a length token (see model.h) */
    int wide_bits;    /* > 0: each head adds a linear function of 2^wide_bits hashed
                         n-gram features (nn/wide.h); 0: none */
    int n_cls;        /* number of classification heads */
    int n_labels[DR_T5_MAX_HEADS];
} dr_t5_config;

/* Checks ranges (every dimension positive and bounded, C % NH == 0, ...). */
int dr_t5_config_check(const dr_t5_config *c, dynrag_error *err);

typedef struct dr_t5_layer {
    float *ln1_w; /* [C] */
    float *wq;    /* [C, C]; wq, wk, wv are adjacent: together Wqkv [3C, C] */
    float *wk;    /* [C, C] */
    float *wv;    /* [C, C] */
    float *wo;    /* [C, C] */
    float *ln2_w; /* [C] */
    float *wi0;   /* [F, C]; wi0, wi1 are adjacent: together Wi [2F, C] */
    float *wi1;   /* [F, C] */
    float *wff;   /* [C, F] (T5's DenseReluDense.wo) */
} dr_t5_layer;

typedef struct dr_t5_params {
    float *wte;      /* [V, C] */
    float *rel_bias; /* [NB, NH] */
    dr_t5_layer layer[DR_T5_MAX_LAYERS];
    float *lnf_w;    /* [C] */
    float *cls_w[DR_T5_MAX_HEADS]; /* [K, C] */
    float *cls_b[DR_T5_MAX_HEADS]; /* [K] */
    float *wide_w[DR_T5_MAX_HEADS]; /* [K, 2^wide_bits] when wide_bits > 0, else NULL */
} dr_t5_params;

typedef struct dr_t5_tensor {
    char name[96];
    int ndim;
    uint64_t shape[2];
    size_t offset;   /* in floats from the start of the parameter block */
    size_t numel;
    bool decay;      /* AdamW weight decay applies (matrices except rel_bias) */
} dr_t5_tensor;

/* Fills out[] (DR_T5_MAX_TENSORS entries) with every parameter tensor in
 * memory order; returns the count. *total gets the number of floats. The
 * wide tensors (wide_bits > 0) come last, one per head, so a model without
 * them has the layout of format version 1. */
size_t dr_t5_tensors(const dr_t5_config *c, dr_t5_tensor *out, size_t *total);
/* Points p's fields into base (a block of dr_t5_tensors' total floats). */
void dr_t5_point(const dr_t5_config *c, float *base, dr_t5_params *p);

/* T5's bidirectional bucket of relative position rel = key - query. */
int dr_t5_bucket(int rel, int num_buckets, int max_distance);

/* Activations of one forward pass kept for the backward pass (one
 * allocation; capacity B x T). */
typedef struct dr_t5_acts {
    int B, T;          /* capacity */
    float *resid;      /* [L+1, B, T, C] residual stream: layer inputs, then final */
    float *emb_mask;   /* [B, T, C] dropout scale (0 or 1/(1-p)) */
    float *ln1;        /* [L, B, T, C] */
    float *ln1_rstd;   /* [L, B, T] */
    float *qkv;        /* [L, B, T, 3C] */
    float *att;        /* [L, B, NH, T, T] softmax probabilities */
    float *atty;       /* [L, B, T, C] attention output before Wo */
    float *attn_mask;  /* [L, B, T, C] dropout of the attention branch */
    float *res2;       /* [L, B, T, C] residual after attention */
    float *ln2;        /* [L, B, T, C] */
    float *ln2_rstd;   /* [L, B, T] */
    float *h;          /* [L, B, T, 2F] Wi outputs: wi0 part then wi1 part */
    float *g;          /* [L, B, T, F] gelu(h0) * h1 */
    float *ff_mask;    /* [L, B, T, C] dropout of the feed-forward branch */
    float *lnf;        /* [B, T, C] */
    float *lnf_rstd;   /* [B, T] */
    float *pooled;     /* [B, C] after dropout */
    float *pool_mask;  /* [B, C] */
    float *logits;     /* [B, sum K]: head 0's labels, then head 1's, ... */
    float *scratch;    /* [B, T, C] forward temporary */
    /* backward scratch */
    float *d_res;      /* [B, T, C] */
    float *d_c;        /* [B, T, C] */
    float *d_c2;       /* [B, T, C] */
    float *d_qkv;      /* [B, T, 3C] */
    float *d_h;        /* [B, T, 2F] */
    float *d_g;        /* [B, T, F] */
    float *d_att;      /* [B, NH, T, T] */
    float *d_pooled;   /* [B, C] */
    float *block;
} dr_t5_acts;

/* Allocates activations for up to B sequences of T tokens (backward
 * scratch only when with_backward). Free with dr_t5_acts_free. */
int dr_t5_acts_alloc(const dr_t5_config *c, int B, int T, bool with_backward, dr_t5_acts *a,
                     dynrag_error *err);
void dr_t5_acts_free(dr_t5_acts *a);

/* Offset of head h's logits within a row of acts->logits; total width. */
int dr_t5_logit_offset(const dr_t5_config *c, int head);
int dr_t5_logit_width(const dr_t5_config *c);

/* Forward pass over tokens [B, T] (row b valid for its first lens[b] >= 1
 * tokens, each id < V). Fills a (logits in a->logits). dropout > 0 needs
 * rng and applies only when training; B, T within a's capacity and
 * T <= max_len. rel_bucket is the table from dr_t5_bucket_table(). */
void dr_t5_forward(const dr_t5_config *c, const dr_t5_params *p, const int *rel_bucket,
                   const int32_t *tokens, const int *lens, int B, int T, bool training,
                   float dropout, dr_rng *rng, dr_t5_acts *a);

/* Backward pass from dlogits [B, sum K] (the loss gradient with respect to
 * a->logits) after a forward pass with training = true on the same inputs
 * (dropout 0 for an exact gradient); ADDS the parameter gradients into g
 * (same layout as p). a must have been allocated with_backward. */
void dr_t5_backward(const dr_t5_config *c, const dr_t5_params *p, const int *rel_bucket,
                    const int32_t *tokens, const int *lens, int B, int T, const float *dlogits,
                    dr_t5_acts *a, dr_t5_params *g);

/* Table of buckets for relative positions -(max_len-1)..(max_len-1):
 * table[rel + max_len - 1]. Caller frees. */
int *dr_t5_bucket_table(const dr_t5_config *c);

/*
 * On: the forward pass uses only the portable kernels, never the 4-row
 * AVX-512VL ones (which give bit-identical results, faster). For the test
 * that checks that promise; not thread-safe against running passes.
 * Returns whether this CPU has the 4-row kernels at all.
 */
bool dr_t5_set_portable(bool on);

#endif
