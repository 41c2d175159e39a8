/* test_nn_wide.c - the classifier's wide branch (hashed n-gram features,
 * gradient, weight-format version 2) and soft-label training (labelled
 * "targets", one-hot soft labels reproduce hard-label training). */
#include "test.h"

#include "core/util.h"
#include "data/labelled.h"
#include "dynrag/classifier.h"
#include "dynrag/train.h"
#include "nn/model.h"
#include "nn/train.h"
#include "nn/wide.h"

/* A tokenizer learned from a few texts (strip "?"), for feature tests. */
static dr_tokenizer *small_tokenizer(void)
{
    const char *texts[] = {"who wrote hamlet", "how are you today", "the director of jaws"};
    dr_tokenizer *tok = NULL;
    return dr_tokenizer_train(texts, 3, 300, "?", &tok, NULL) == DYNRAG_OK ? tok : NULL;
}

/* Random text of up to maxlen bytes: letters, digits, spaces, punctuation,
 * Latin-1 and arbitrary (possibly invalid UTF-8) bytes. */
static void random_text(dr_rng *rng, char *buf, size_t maxlen)
{
    static const char alphabet[] = "abcdefghij KLMNOP 0123 ?,.'\"-()  ";
    size_t n = (size_t)dr_rng_below(rng, maxlen + 1);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = dr_rng_below(rng, 20);
        buf[i] = r == 0 ? (char)(1 + dr_rng_below(rng, 255))
                        : alphabet[dr_rng_below(rng, sizeof(alphabet) - 1)];
    }
    buf[n] = '\0';
}

/* Invariants of dr_wide_features over many random texts: buckets in range,
 * strictly increasing, values non-zero with unit L2 norm (none for a text
 * without pieces), deterministic, at most DR_WIDE_MAX_FEATURES even for
 * texts far longer than DR_WIDE_MAX_BYTES; and normalisation: case and the
 * tokenizer's strip set ("?") do not change the features. */
TEST(nn_wide_features_invariants)
{
    dr_tokenizer *tok = small_tokenizer();
    ASSERT(tok != NULL);
    uint32_t *idx = malloc(DR_WIDE_MAX_FEATURES * sizeof(*idx)),
             *idx2 = malloc(DR_WIDE_MAX_FEATURES * sizeof(*idx2));
    float *val = malloc(DR_WIDE_MAX_FEATURES * sizeof(*val)),
          *val2 = malloc(DR_WIDE_MAX_FEATURES * sizeof(*val2));
    size_t big = 20000;
    char *text = malloc(big + 1);
    ASSERT(idx && idx2 && val && val2 && text);
    dr_rng rng;
    dr_rng_seed(&rng, 99);
    for (int it = 0; it < 400; it++) {
        int bits = DR_WIDE_MIN_BITS + (int)dr_rng_below(&rng, DR_WIDE_MAX_BITS - DR_WIDE_MIN_BITS + 1);
        random_text(&rng, text, it % 10 == 0 ? big : 200);
        int n = dr_wide_features(tok, text, bits, idx, val);
        ASSERT(n >= 0 && n <= DR_WIDE_MAX_FEATURES);
        double norm = 0;
        for (int i = 0; i < n; i++) {
            ASSERT(idx[i] < (1u << bits));
            if (i > 0)
                ASSERT(idx[i] > idx[i - 1]);
            ASSERT(val[i] != 0.0f && isfinite(val[i]));
            norm += (double)val[i] * val[i];
        }
        if (n > 0)
            ASSERT_NEAR(norm, 1.0, 1e-4);
        ASSERT_EQ(dr_wide_features(tok, text, bits, idx2, val2), n);
        ASSERT(memcmp(idx, idx2, (size_t)n * sizeof(*idx)) == 0);
        ASSERT(memcmp(val, val2, (size_t)n * sizeof(*val)) == 0);
    }
    ASSERT_EQ(dr_wide_features(tok, "", 16, idx, val), 0);
    ASSERT_EQ(dr_wide_features(tok, "  \t ??", 16, idx, val), 0);
    int n = dr_wide_features(tok, "Who wrote HAMLET?", 16, idx, val);
    ASSERT_EQ(dr_wide_features(tok, "who wrote hamlet", 16, idx2, val2), n);
    ASSERT(n > 10 && memcmp(idx, idx2, (size_t)n * sizeof(*idx)) == 0);
    ASSERT(memcmp(val, val2, (size_t)n * sizeof(*val)) == 0);
    /* a different text has different features */
    ASSERT(dr_wide_features(tok, "who wrote macbeth", 16, idx2, val2) > 0);
    ASSERT(memcmp(idx, idx2, (size_t)n * sizeof(*idx)) != 0);
    free(idx);
    free(idx2);
    free(val);
    free(val2);
    free(text);
    dr_tokenizer_free(tok);
}

/* Loss -log softmax(logits)[y] of the model (encoder + wide branch). */
static double wide_loss(const dr_classifier *c, const int32_t *ids, int len, const uint32_t *fi,
                        const float *fv, int nf, int y, dr_t5_acts *a)
{
    float p[DR_T5_MAX_LABELS];
    dr_classifier_probs_ids(c, 0, ids, len, fi, fv, nf, a, p);
    return -log((double)p[y]);
}

/* The wide tensor's analytic gradient (dr_classifier_wide_backward of
 * softmax - one-hot) equals central finite differences of the loss of the
 * whole model, for every entry of the tensor (zero where no feature falls). */
TEST(nn_wide_gradient_check)
{
    dynrag_error err;
    dr_tokenizer *tok = small_tokenizer();
    ASSERT(tok != NULL);
    dr_t5_config cfg = {.vocab_size = 310, .d_model = 8, .n_layers = 1, .n_heads = 2, .d_ff = 8,
                        .max_len = 16, .num_buckets = 8, .max_distance = 16, .wide_bits = 8,
                        .n_cls = 1, .n_labels = {3}};
    const char *heads[] = {"h"};
    const char *l0[] = {"A", "B", "C"};
    const char *const *labels[] = {l0};
    dr_classifier *c = NULL;
    ASSERT_OK(dr_classifier_create(&cfg, tok, heads, labels, &c, &err), &err);
    dr_train_init_params(c, 3);
    dr_rng rng;
    dr_rng_seed(&rng, 5);
    size_t H = (size_t)1 << cfg.wide_bits;
    for (size_t j = 0; j < 3 * H; j++) /* initialised to zero: perturb */
        c->p.wide_w[0][j] = (float)(0.5 * dr_rng_normal(&rng));
    const char *text = "who wrote the director of jaws, today?";
    int32_t ids[16];
    int len = dr_classifier_encode(c, text, ids);
    uint32_t fi[DR_WIDE_MAX_FEATURES];
    float fv[DR_WIDE_MAX_FEATURES];
    int nf = dr_wide_features(c->tok, text, cfg.wide_bits, fi, fv);
    ASSERT(nf > 20);
    dr_t5_acts a;
    ASSERT_OK(dr_t5_acts_alloc(&cfg, 1, len, false, &a, &err), &err);
    float p[3], dl[3];
    int y = 1;
    dr_classifier_probs_ids(c, 0, ids, len, fi, fv, nf, &a, p);
    for (int k = 0; k < 3; k++)
        dl[k] = p[k] - (k == y ? 1.0f : 0.0f);
    float *gw = calloc(3 * H, sizeof(float));
    ASSERT(gw != NULL);
    dr_classifier_wide_backward(c, 0, fi, fv, nf, dl, gw);
    size_t nonzero = 0;
    for (size_t j = 0; j < 3 * H; j++) {
        float orig = c->p.wide_w[0][j];
        const float h = 1e-2f;
        c->p.wide_w[0][j] = orig + h;
        double lp = wide_loss(c, ids, len, fi, fv, nf, y, &a);
        c->p.wide_w[0][j] = orig - h;
        double lm = wide_loss(c, ids, len, fi, fv, nf, y, &a);
        c->p.wide_w[0][j] = orig;
        double fd = (lp - lm) / (2.0 * h);
        if (fabs(fd - gw[j]) > 1e-3 + 1e-2 * fabs(fd)) {
            test_fail_(__FILE__, __LINE__, "wide[%zu]: analytic %g, finite difference %g", j,
                       (double)gw[j], fd);
            break;
        }
        nonzero += gw[j] != 0.0f;
    }
    ASSERT_GE(nonzero, (size_t)nf); /* every feature reaches all three labels */
    free(gw);
    dr_t5_acts_free(&a);
    dr_classifier_free(c);
}

/* ---- training with the wide branch and with soft labels -------------------- */

/* Writes a toy data set (as in test_nn.c) as hard labels to hard.jsonl and as
 * one-hot "targets" (no "label") to soft.jsonl; valid.jsonl hard. */
static void write_pair(int n, uint64_t seed)
{
    static const char *const a[] = {"hello there", "good morning", "thanks a lot", "how are you"};
    static const char *const b[] = {"who wrote hamlet", "what is the capital of peru",
                                    "when did the war end"};
    static const char *const cc[] = {"who is the father of the director of the film",
                                     "what is the birthplace of the wife of the author"};
    dr_rng rng;
    dr_rng_seed(&rng, seed);
    dr_buf hard = {0}, soft = {0}, va = {0};
    for (int i = 0; i < n; i++) {
        int k = (int)dr_rng_below(&rng, 5) % 3; /* unbalanced: class weights matter */
        const char *t = k == 0 ? a[dr_rng_below(&rng, 4)] : k == 1 ? b[dr_rng_below(&rng, 3)]
                                                                   : cc[dr_rng_below(&rng, 2)];
        int num = (int)dr_rng_below(&rng, 20);
        dr_buf_printf(&hard, "{\"text\":\"%s %d\",\"label\":\"%c\"}\n", t, num, "ABC"[k]);
        dr_buf_printf(&soft, "{\"text\":\"%s %d\",\"targets\":{\"A\":%d,\"B\":%d,\"C\":%d}}\n", t,
                      num, k == 0, k == 1, k == 2);
        if (i % 4 == 0)
            dr_buf_printf(&va, "{\"text\":\"%s %d\",\"label\":\"%c\"}\n", t, num + 1, "ABC"[k]);
    }
    test_write_file("hard.jsonl", hard.data);
    test_write_file("soft.jsonl", soft.data);
    test_write_file("valid.jsonl", va.data);
    dr_buf_free(&hard);
    dr_buf_free(&soft);
    dr_buf_free(&va);
}

static int train_file(const char *train, const char *out, const char *config, uint64_t seed,
                      int threads, dynrag_train_result *r, dynrag_error *err)
{
    char tr[512], va[512], o[512];
    snprintf(tr, sizeof(tr), "%s/%s", test_tmpdir(), train);
    snprintf(va, sizeof(va), "%s/valid.jsonl", test_tmpdir());
    snprintf(o, sizeof(o), "%s/%s", test_tmpdir(), out);
    dynrag_train_options opt;
    dynrag_train_options_init(&opt);
    opt.train_path = tr;
    opt.valid_path = va;
    opt.out_path = o;
    opt.config = config;
    opt.seed = seed;
    opt.threads = threads;
    return dynrag_classifier_train(&opt, r, err);
}

static dr_classifier *load_tmp(const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", test_tmpdir(), name);
    dr_classifier *c = NULL;
    dynrag_error err;
    if (dr_classifier_load(p, &c, &err) != DYNRAG_OK)
        test_fail_(__FILE__, __LINE__, "%s", dynrag_errmsg(&err));
    return c;
}

#define TOY_CONFIG                                                                        \
    "vocab_size=300,d_model=8,n_layers=1,n_heads=2,d_ff=8,max_len=16,epochs=3,batch_size=8," \
    "lr=5e-3,patience=0"

/* One-hot soft labels ("targets" without "label") train bit-for-bit the same
 * weights as the hard labels, over several data sets, seeds, thread counts,
 * with and without the wide branch and with balanced class weights. */
TEST(nn_soft_onehot_reproduces_hard)
{
    dynrag_error err;
    dynrag_train_result r;
    for (int it = 0; it < 4; it++) {
        write_pair(60 + 20 * it, 10 + (uint64_t)it);
        char cfg[256];
        snprintf(cfg, sizeof(cfg), "%s%s", TOY_CONFIG, it % 2 ? ",wide_bits=10" : "");
        int threads = 1 + it % 2;
        ASSERT_OK(train_file("hard.jsonl", "h.safetensors", cfg, 7 + (uint64_t)it, threads, &r,
                             &err), &err);
        ASSERT_OK(train_file("soft.jsonl", "s.safetensors", cfg, 7 + (uint64_t)it, threads, &r,
                             &err), &err);
        dr_classifier *h = load_tmp("h.safetensors"), *s = load_tmp("s.safetensors");
        ASSERT(h && s);
        bool same = h->n_params == s->n_params &&
                    memcmp(h->params, s->params, h->n_params * sizeof(float)) == 0;
        ASSERT_CONTAINS(s->provenance, "\"soft_labels\":true");
        ASSERT_CONTAINS(h->provenance, "\"soft_labels\":false");
        dr_classifier_free(h);
        dr_classifier_free(s);
        ASSERT(same);
    }
}

/* Training on genuine soft targets fits the target distribution (the
 * minimiser of the cross-entropy): two texts repeated with targets
 * (0.8, 0.2) and (0.25, 0.75) end near those probabilities. */
TEST(nn_soft_targets_are_fitted)
{
    dynrag_error err;
    dynrag_train_result r;
    dr_buf b = {0};
    for (int i = 0; i < 40; i++)
        dr_buf_puts(&b, "{\"text\":\"alpha beta\",\"targets\":{\"x\":0.8,\"y\":0.2}}\n"
                        "{\"text\":\"gamma delta epsilon\",\"targets\":{\"x\":0.25,\"y\":0.75}}\n");
    test_write_file("soft.jsonl", b.data);
    test_write_file("valid.jsonl", "{\"text\":\"alpha beta\",\"label\":\"x\"}\n"
                                   "{\"text\":\"gamma delta epsilon\",\"label\":\"y\"}\n");
    dr_buf_free(&b);
    ASSERT_OK(train_file("soft.jsonl", "m.safetensors",
                         "vocab_size=300,d_model=8,n_layers=1,n_heads=2,d_ff=8,max_len=8,"
                         "epochs=40,batch_size=8,lr=1e-2,patience=0,dropout=0,weight_decay=0,"
                         "class_weights=none,wide_bits=8,keep=last",
                         1, 1, &r, &err), &err);
    dr_classifier *c = load_tmp("m.safetensors");
    ASSERT(c != NULL);
    float p[2];
    ASSERT_OK(dr_classifier_predict(c, 0, "alpha beta", p, &err), &err);
    printf("p(x | alpha beta) = %.3f (target 0.8)\n", p[0]);
    ASSERT_NEAR(p[0], 0.8, 0.05);
    ASSERT_OK(dr_classifier_predict(c, 0, "gamma delta epsilon", p, &err), &err);
    printf("p(x | gamma delta epsilon) = %.3f (target 0.25)\n", p[0]);
    ASSERT_NEAR(p[0], 0.25, 0.05);
    dr_classifier_free(c);
}

/* A wide model saves as format version 2 with one wide tensor per head and
 * loads back to the same predictions; inconsistent files are refused. */
TEST(nn_wide_format_version)
{
    dynrag_error err;
    dynrag_train_result r;
    write_pair(60, 3);
    ASSERT_OK(train_file("hard.jsonl", "w.safetensors", TOY_CONFIG ",wide_bits=9", 1, 1, &r, &err),
              &err);
    ASSERT_OK(train_file("hard.jsonl", "d.safetensors", TOY_CONFIG, 1, 1, &r, &err), &err);
    char pw[512], pd[512], bad[512];
    snprintf(pw, sizeof(pw), "%s/w.safetensors", test_tmpdir());
    snprintf(pd, sizeof(pd), "%s/d.safetensors", test_tmpdir());
    snprintf(bad, sizeof(bad), "%s/bad.safetensors", test_tmpdir());
    char *buf = NULL, *dbuf = NULL;
    size_t len = 0, dlen = 0;
    ASSERT_OK(dr_read_file(pw, 1 << 24, &buf, &len, &err), &err);
    ASSERT_OK(dr_read_file(pd, 1 << 24, &dbuf, &dlen, &err), &err);
    ASSERT(memmem(buf, len, "\"format_version\":\"2\"", 20) != NULL);
    ASSERT(memmem(buf, len, "heads.0.wide.weight", 19) != NULL);
    ASSERT(memmem(buf, len, "wide_bits\\\":9", 13) != NULL);
    ASSERT(memmem(dbuf, dlen, "\"format_version\":\"1\"", 20) != NULL);
    ASSERT(memmem(dbuf, dlen, "wide.weight", 11) == NULL);
    ASSERT(memmem(dbuf, dlen, "wide_bits", 9) == NULL);
    dr_classifier *c = load_tmp("w.safetensors");
    ASSERT(c != NULL);
    ASSERT_EQ(c->cfg.wide_bits, 9);
    /* the wide branch learned something and matters */
    float nz = 0;
    for (size_t j = 0; j < 3u << 9; j++)
        nz += fabsf(c->p.wide_w[0][j]);
    ASSERT(nz > 0);
    float p1[3], p2[3];
    ASSERT_OK(dr_classifier_predict(c, 0, "who wrote hamlet 3", p1, &err), &err);
    memset(c->p.wide_w[0], 0, (3u << 9) * sizeof(float));
    ASSERT_OK(dr_classifier_predict(c, 0, "who wrote hamlet 3", p2, &err), &err);
    ASSERT(memcmp(p1, p2, sizeof(p1)) != 0);
    dr_classifier_free(c);
    /* version 1 with a wide_bits key: refused */
    char *v = memmem(buf, len, "\"format_version\":\"2\"", 20);
    v[18] = '1';
    ASSERT_OK(dr_write_file_atomic(bad, buf, len, &err), &err);
    ASSERT_EQ(dr_classifier_load(bad, &c, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "wide_bits");
    /* version 3: unsupported */
    v[18] = '3';
    ASSERT_OK(dr_write_file_atomic(bad, buf, len, &err), &err);
    ASSERT_EQ(dr_classifier_load(bad, &c, &err), DYNRAG_ERR_UNSUPPORTED);
    v[18] = '2';
    /* wide_bits disagreeing with the tensor's shape */
    char *wb = memmem(buf, len, "wide_bits\\\":9", 13);
    wb[12] = '8';
    ASSERT_OK(dr_write_file_atomic(bad, buf, len, &err), &err);
    ASSERT_EQ(dr_classifier_load(bad, &c, &err), DYNRAG_ERR_MISMATCH);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "wide");
    /* version 2 without wide_bits */
    memcpy(wb, "wxde", 4);
    ASSERT_OK(dr_write_file_atomic(bad, buf, len, &err), &err);
    ASSERT_EQ(dr_classifier_load(bad, &c, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "wide_bits");
    ASSERT(c == NULL);
    free(buf);
    free(dbuf);
}

/* The labelled reader's "targets": parsed, normalised, label defaults to
 * the most probable target, and every malformed form is an error naming
 * the file, the line and the field. */
TEST(dataset_labelled_soft_targets)
{
    dynrag_error err;
    dr_labelled_set *s = NULL;
    const char *p = test_write_file(
        "ok.jsonl", "{\"text\":\"a\",\"targets\":{\"B\":0.3,\"A\":0.7}}\n"
                    "{\"text\":\"b\",\"label\":\"C\"}\n"
                    "{\"text\":\"c\",\"targets\":{\"C\":0.5,\"B\":0.5}}\n"
                    "{\"text\":\"d\",\"label\":\"A\",\"targets\":{\"D\":0.9995}}\n");
    ASSERT_OK(dr_labelled_load(p, &s, &err), &err);
    ASSERT_EQ(s->n, 4);
    ASSERT_EQ(s->n_labels, 4); /* A B C D */
    ASSERT(s->targets != NULL);
    ASSERT_STR_EQ(s->label[0], "A");
    ASSERT_STR_EQ(s->label[2], "B"); /* tie: the label that sorts first */
    ASSERT_STR_EQ(s->label[3], "A"); /* an explicit label is kept */
    const float *t = s->targets;
    ASSERT_NEAR(t[0], 0.7, 1e-6);
    ASSERT_NEAR(t[1], 0.3, 1e-6);
    ASSERT(t[4 + 2] == 1.0f && t[4 + 0] == 0.0f); /* hard line: one-hot */
    ASSERT_NEAR(t[8 + 1] + t[8 + 2], 1.0, 1e-6);
    ASSERT(t[12 + 3] == 1.0f); /* renormalised */
    for (size_t i = 0; i < s->n; i++) {
        double sum = 0;
        for (size_t k = 0; k < s->n_labels; k++)
            sum += t[i * s->n_labels + k];
        ASSERT_NEAR(sum, 1.0, 1e-6);
    }
    dr_labelled_free(s);
    p = test_write_file("hard.jsonl", "{\"text\":\"a\",\"label\":\"x\"}\n");
    ASSERT_OK(dr_labelled_load(p, &s, &err), &err);
    ASSERT(s->targets == NULL);
    dr_labelled_free(s);
    struct {
        const char *line, *msg;
    } bad[] = {
        {"{\"text\":\"a\",\"targets\":[0.5,0.5]}", "\"targets\" must be an object"},
        {"{\"text\":\"a\",\"targets\":{}}", "\"targets\" must be an object"},
        {"{\"text\":\"a\",\"targets\":{\"A\":-0.1,\"B\":1.1}}", "\"A\" must be a probability"},
        {"{\"text\":\"a\",\"targets\":{\"A\":\"1\"}}", "\"A\" must be a probability"},
        {"{\"text\":\"a\",\"targets\":{\"A\":0.5,\"B\":0.3}}", "sum to 0.8"},
        {"{\"text\":\"a\",\"targets\":{\"A\":0.5,\"A\":0.5}}", "appears twice"},
        {"{\"text\":\"a\",\"targets\":{\"\":1}}", "empty"},
        {"{\"text\":\"a\",\"label\":\"\",\"targets\":{\"A\":1}}", "\"label\" is empty"},
        {"{\"targets\":{\"A\":1}}", "missing field \"text\""},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(bad); i++) {
        char text[512];
        snprintf(text, sizeof(text), "{\"text\":\"ok\",\"label\":\"A\"}\n%s\n", bad[i].line);
        p = test_write_file("bad.jsonl", text);
        ASSERT(dr_labelled_load(p, &s, &err) != DYNRAG_OK);
        ASSERT(s == NULL);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.jsonl:2:");
        ASSERT_CONTAINS(dynrag_errmsg(&err), bad[i].msg);
    }
}
