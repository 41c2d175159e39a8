/*
 * classifier_bench.c - latency of the T5 classifier (one thread) and the
 * single-thread cost of one training example (forward + backward).
 *
 * usage: dynrag_bench_classifier MODEL [--runs N]
 *
 * For 16, 32 and 64 tokens (length token included) it builds a text that
 * encodes to that many tokens (or the model's max_len, if smaller) and times
 * dr_classifier_predict() (tokenize + allocate + forward + softmax): p50,
 * p99 and mean over N runs after 50 warm-up runs; also for a 512-token
 * prompt (the tokenizer's ids of the whole text, of which the encoder sees
 * max_len). For a model with a wide branch each length is also timed with
 * the branch switched off in the same process (the encoder alone: the
 * baseline of the ratio column). Then it times forward + backward of one
 * example (the training inner loop) at the same lengths.
 */
#include "nn/model.h"
#include "nn/t5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Appends words from a fixed list while the text encodes to fewer than n
 * tokens, then fills up with " a" (one token) to hit n exactly when the
 * last word overshoots. */
static void text_of_len(const dr_classifier *c, int n, char *out, size_t cap)
{
    static const char *const words[] = {"who", "was", "the", "director", "of", "film", "that",
                                        "won", "best", "picture", "in", "year", "when",
                                        "president", "born", "city", "where", "river", "flows"};
    int32_t ids[4096];
    out[0] = '\0';
    for (size_t i = 0;; i++) {
        size_t len = strlen(out);
        if (strlen(out) + 32 > cap)
            return;
        snprintf(out + len, cap - len, "%s%s", len ? " " : "", words[i % 19]);
        int got = dr_classifier_encode(c, out, ids);
        if (got == n)
            return;
        if (got > n) {
            out[len] = '\0';
            break;
        }
    }
    while (dr_classifier_encode(c, out, ids) < n && strlen(out) + 3 < cap) {
        size_t len = strlen(out);
        snprintf(out + len, cap - len, " a");
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [--runs N]\n", argv[0]);
        return 2;
    }
    int runs = 2000;
    if (argc >= 4 && strcmp(argv[2], "--runs") == 0) {
        long long v = 0;
        if (dr_parse_ll(argv[3], 10, 10000000, &v) != DYNRAG_OK) {
            fprintf(stderr, "--runs: expected an integer >= 10\n");
            return 2;
        }
        runs = (int)v;
    }
    dr_classifier *c = NULL;
    dynrag_error err;
    if (dr_classifier_load(argv[1], &c, &err) != DYNRAG_OK) {
        fprintf(stderr, "%s\n", dynrag_errmsg(&err));
        return 1;
    }
    printf("model %s: d_model %d, layers %d, heads %d, d_ff %d, vocab %d, %zu parameters\n",
           argv[1], c->cfg.d_model, c->cfg.n_layers, c->cfg.n_heads, c->cfg.d_ff,
           c->cfg.vocab_size, c->n_params);
    int64_t *t = malloc((size_t)runs * sizeof(*t)), *tp = malloc((size_t)runs * sizeof(*tp));
    if (t == NULL || tp == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    bool fast = dr_t5_set_portable(false);
    printf("kernels: %s\n", fast ? "4-row AVX-512VL matmul and attention (bit-identical to the "
                                    "portable ones, the \"portable p50\" column)"
                                  : "portable only (no AVX-512VL): both columns time the same code");
    float probs[DR_T5_MAX_LABELS];
    int lens[] = {16, 32, 64};
    int wide = c->cfg.wide_bits;
    printf("\ninference, one thread (tokenize + %sforward), %d runs:\n",
           wide ? "n-gram features + " : "", runs);
    printf("%8s %10s %10s %10s %12s %8s", "tokens", "p50 ms", "p99 ms", "mean ms", "portable p50",
           "ratio");
    if (wide)
        printf(" %16s %12s", "encoder-only p50", "ratio p50");
    printf("\n");
    char text[16384];
    int32_t ids[4096];
    for (size_t li = 0; li < 4; li++) {
        int got;
        if (li < 3) {
            int want = lens[li] < c->cfg.max_len ? lens[li] : c->cfg.max_len;
            text_of_len(c, want, text, sizeof(text));
            got = dr_classifier_encode(c, text, ids);
        } else { /* a 512-token prompt: words until the tokenizer gives 512 ids */
            text[0] = '\0';
            for (int w = 0; (got = dr_tokenizer_encode(c->tok, text, ids, 4096)) < 512; w++) {
                size_t len = strlen(text);
                snprintf(text + len, sizeof(text) - len, "%sword%d", len ? " " : "", w % 97);
            }
        }
        /* pass 0: as shipped (the fastest kernels this CPU has), interleaved
         * run by run with the portable kernels (bit-identical results) so
         * that both see the same machine; pass 1: the encoder alone. */
        double p50[2] = {0, 0}, p50_portable = 0;
        for (int pass = 0; pass < (wide ? 2 : 1); pass++) {
            c->cfg.wide_bits = pass ? 0 : wide; /* pass 1: the encoder alone */
            for (int i = 0; i < 50; i++)
                dr_classifier_predict(c, 0, text, probs, &err);
            double sum = 0;
            for (int i = 0; i < runs; i++) {
                if (pass == 0) {
                    dr_t5_set_portable(true);
                    int64_t t0 = dr_now_us();
                    dr_classifier_predict(c, 0, text, probs, &err);
                    tp[i] = dr_now_us() - t0;
                    dr_t5_set_portable(false);
                }
                int64_t t0 = dr_now_us();
                dr_classifier_predict(c, 0, text, probs, &err);
                t[i] = dr_now_us() - t0;
                sum += (double)t[i];
            }
            qsort(t, (size_t)runs, sizeof(*t), cmp_i64);
            p50[pass] = (double)t[runs / 2] / 1e3;
            if (pass == 0) {
                qsort(tp, (size_t)runs, sizeof(*tp), cmp_i64);
                p50_portable = (double)tp[runs / 2] / 1e3;
                printf("%8d %10.3f %10.3f %10.3f %12.3f %8.2f", got, p50[0],
                       (double)t[(size_t)runs * 99 / 100] / 1e3, sum / runs / 1e3, p50_portable,
                       p50_portable > 0 ? p50[0] / p50_portable : 0.0);
            }
        }
        c->cfg.wide_bits = wide;
        if (wide)
            printf(" %16.3f %12.2f", p50[1], p50[1] > 0 ? p50[0] / p50[1] : 0.0);
        printf("%s\n", li == 3 ? "  (512-token prompt)" : "");
    }
    /* training inner loop: forward + backward of one example */
    dr_t5_acts a;
    float *grad = calloc(c->n_params, sizeof(float));
    dr_t5_params g;
    dr_t5_point(&c->cfg, grad, &g);
    if (!grad || dr_t5_acts_alloc(&c->cfg, 1, c->cfg.max_len, true, &a, &err) != DYNRAG_OK) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    float dlogits[DR_T5_MAX_HEADS * DR_T5_MAX_LABELS] = {0.1f, -0.05f, -0.05f};
    dr_rng rng;
    dr_rng_seed(&rng, 1);
    int train_runs = runs / 4 > 10 ? runs / 4 : 10;
    printf("\ntraining step per example, one thread (forward + backward, dropout 0.1), %d runs:\n",
           train_runs);
    printf("%8s %10s %12s\n", "tokens", "p50 ms", "examples/s");
    for (size_t li = 0; li < 3; li++) { /* the encoder's part */
        int n = lens[li] < c->cfg.max_len ? lens[li] : c->cfg.max_len;
        text_of_len(c, n, text, sizeof(text));
        n = dr_classifier_encode(c, text, ids);
        double sum = 0;
        for (int i = 0; i < train_runs; i++) {
            int64_t t0 = dr_now_us();
            dr_t5_forward(&c->cfg, &c->p, c->rel_bucket, ids, &n, 1, n, true, 0.1f, &rng, &a);
            dr_t5_backward(&c->cfg, &c->p, c->rel_bucket, ids, &n, 1, n, dlogits, &a, &g);
            t[i] = dr_now_us() - t0;
            sum += (double)t[i];
        }
        qsort(t, (size_t)train_runs, sizeof(*t), cmp_i64);
        printf("%8d %10.3f %12.0f\n", n, (double)t[train_runs / 2] / 1e3, train_runs / (sum / 1e6));
    }
    dr_t5_acts_free(&a);
    free(grad);
    free(t);
    free(tp);
    dr_classifier_free(c);
    return 0;
}
