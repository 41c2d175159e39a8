/* test_nn.c - safetensors, tokenizer, T5 forward (golden) and backward
 * (finite differences), training determinism, the router CLI. */
#include "test.h"

#include "core/util.h"
#include "dynrag/classifier.h"
#include "dynrag/train.h"
#include "nn/model.h"
#include "nn/safetensors.h"
#include "nn/train.h"

#include <cjson/cJSON.h>

/* ---- safetensors -------------------------------------------------------- */

static int st_parse_bytes(const void *buf, size_t len, dynrag_error *err)
{
    dr_st_file *f = NULL;
    int rc = dr_st_parse(buf, len, &f, err);
    dr_st_close(f);
    return rc;
}

/* Builds "u64 len | header | data" into out (static). */
static size_t st_make(uint8_t *out, size_t cap, const char *header, const void *data, size_t dlen)
{
    size_t hl = strlen(header);
    if (8 + hl + dlen > cap)
        return 0;
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(out + 8, header, hl);
    if (dlen)
        memcpy(out + 8 + hl, data, dlen);
    return 8 + hl + dlen;
}

TEST(nn_safetensors_roundtrip)
{
    dynrag_error err;
    dr_st_writer *w = dr_st_writer_new();
    float a[6] = {1, -2, 3.5f, 4, 5, 6}, b[3] = {0.25f, 1e-30f, -7};
    uint64_t sa[2] = {2, 3}, sb[1] = {3};
    ASSERT(w != NULL);
    ASSERT_OK(dr_st_writer_add_f32(w, "a", 2, sa, a, &err), &err);
    ASSERT_OK(dr_st_writer_add_f32(w, "b.weight", 1, sb, b, &err), &err);
    ASSERT_OK(dr_st_writer_meta(w, "k", "v \"quoted\"", &err), &err);
    char path[512];
    snprintf(path, sizeof(path), "%s/t.safetensors", test_tmpdir());
    ASSERT_OK(dr_st_writer_save(w, path, &err), &err);
    dr_st_writer_free(w);
    dr_st_file *f = NULL;
    ASSERT_OK(dr_st_open(path, &f, &err), &err);
    ASSERT_EQ(dr_st_count(f), 2);
    ASSERT_STR_EQ(dr_st_meta(f, "k"), "v \"quoted\"");
    ASSERT(dr_st_meta(f, "missing") == NULL);
    float ra[6], rb[3];
    ASSERT_OK(dr_st_read_f32(f, "a", 2, sa, ra, &err), &err);
    ASSERT_OK(dr_st_read_f32(f, "b.weight", 1, sb, rb, &err), &err);
    ASSERT(memcmp(a, ra, sizeof(a)) == 0 && memcmp(b, rb, sizeof(b)) == 0);
    /* data area starts 8-byte aligned */
    ASSERT_EQ(((uintptr_t)dr_st_find(f, "a")->data - (uintptr_t)dr_st_find(f, "a")->data) % 8, 0);
    uint64_t wrong[2] = {3, 2};
    ASSERT_EQ(dr_st_read_f32(f, "a", 2, wrong, ra, &err), DYNRAG_ERR_MISMATCH);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "shape [2, 3], expected [3, 2]");
    ASSERT_EQ(dr_st_read_f32(f, "nope", 2, sa, ra, &err), DYNRAG_ERR_NOTFOUND);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "missing tensor 'nope'");
    dr_st_close(f);
}

TEST(nn_safetensors_rejects_malformed)
{
    dynrag_error err;
    uint8_t buf[1024];
    float d[4] = {1, 2, 3, 4};
    size_t n;
    /* good baseline */
    n = st_make(buf, sizeof(buf), "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d, 16);
    ASSERT_OK(st_parse_bytes(buf, n, &err), &err);
    /* every truncation fails cleanly */
    for (size_t k = 0; k < n; k++)
        ASSERT_EQ(st_parse_bytes(buf, k, &err), DYNRAG_ERR_FORMAT);
    struct {
        const char *hdr;
        size_t dlen;
        const char *msg;
    } bad[] = {
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]", 16, "not a JSON object"},
        {"[1,2]", 0, "not a JSON object"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,20]}}", 16, "outside the data area"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,16]}}", 16, "needs 20"},
        {"{\"x\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "unknown dtype"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", 16, "shape[0]"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16, "overlaps"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "hole"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 16, "trailing"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "duplicate"},
        {"{\"__metadata__\":{\"a\":1},\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
         16, "not a string"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,16]}}", 16, "overflows"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}", 16, "outside"},
        {"{\"x\":7}", 0, "not an object"},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(bad); i++) {
        n = st_make(buf, sizeof(buf), bad[i].hdr, d, bad[i].dlen);
        ASSERT(n > 0);
        int rc = st_parse_bytes(buf, n, &err);
        if (rc != DYNRAG_ERR_FORMAT || strstr(dynrag_errmsg(&err), bad[i].msg) == NULL) {
            test_fail_(__FILE__, __LINE__, "case %zu: rc %d, message '%s', expected '%s'", i, rc,
                       dynrag_errmsg(&err), bad[i].msg);
            return;
        }
    }
    /* header length larger than the file, and a huge header length */
    n = st_make(buf, sizeof(buf), "{}", NULL, 0);
    buf[0] = 200;
    ASSERT_EQ(st_parse_bytes(buf, n, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "larger than the file");
    memset(buf, 0xff, 8);
    ASSERT_EQ(st_parse_bytes(buf, n, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "exceeds the limit");
    /* invalid UTF-8 in the header */
    n = st_make(buf, sizeof(buf), "{\"\xff\":1}", NULL, 0);
    ASSERT_EQ(st_parse_bytes(buf, n, &err), DYNRAG_ERR_FORMAT);
    /* files: missing, too short */
    dr_st_file *f = NULL;
    char path[512];
    snprintf(path, sizeof(path), "%s/nope.safetensors", test_tmpdir());
    ASSERT_EQ(dr_st_open(path, &f, &err), DYNRAG_ERR_IO);
    ASSERT(f == NULL);
    const char *p = test_write_file("short.safetensors", "abc");
    ASSERT_EQ(dr_st_open(p, &f, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "short.safetensors");
}

/* ---- tokenizer ---------------------------------------------------------- */

static void concat_tokens(const dr_tokenizer *t, const int32_t *ids, int n, char *out, size_t cap)
{
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        char tok[128];
        size_t l = dr_tokenizer_decode_token(t, ids[i], tok, sizeof(tok));
        if (k + l + 1 < cap) {
            memcpy(out + k, tok, l);
            k += l;
            out[k] = '\0';
        }
    }
}

TEST(nn_tokenizer_train_encode_json)
{
    const char *texts[] = {"who wrote the book", "who directed the film", "the film who",
                           "What is the capital of France?", "where is the capital"};
    dr_tokenizer *t = NULL, *t2 = NULL;
    dynrag_error err;
    ASSERT_OK(dr_tokenizer_train(texts, 5, 300, NULL, &t, &err), &err);
    ASSERT(dr_tokenizer_vocab_size(t) > 257);
    ASSERT(dr_tokenizer_vocab_size(t) <= 300);
    int32_t ids[64];
    int n = dr_tokenizer_encode(t, "Who wrote THE film?", ids, 64);
    char back[256];
    concat_tokens(t, ids, n, back, sizeof(back));
    ASSERT_STR_EQ(back, " who wrote the film?");
    ASSERT(n < (int)strlen(" who wrote the film?")); /* merges applied */
    /* accents fold, any bytes encode, truncation */
    n = dr_tokenizer_encode(t, "Élan CAFÉ", ids, 64);
    concat_tokens(t, ids, n, back, sizeof(back));
    ASSERT_STR_EQ(back, " elan cafe");
    n = dr_tokenizer_encode(t, "\xff\xfe bad \xe6\x97\xa5", ids, 64);
    concat_tokens(t, ids, n, back, sizeof(back));
    ASSERT_STR_EQ(back, " \xff\xfe bad \xe6\x97\xa5");
    ASSERT_EQ(dr_tokenizer_encode(t, "a b c d e f g h", ids, 3), 3);
    ASSERT_EQ(dr_tokenizer_encode(t, "", ids, 64), 0);
    /* JSON round trip gives the same encoding */
    char *js = dr_tokenizer_to_json(t);
    ASSERT(js != NULL);
    ASSERT_OK(dr_tokenizer_from_json(js, &t2, &err), &err);
    int32_t ids2[64];
    n = dr_tokenizer_encode(t, "who directed the capital film", ids, 64);
    ASSERT_EQ(dr_tokenizer_encode(t2, "who directed the capital film", ids2, 64), n);
    ASSERT(memcmp(ids, ids2, (size_t)n * sizeof(int32_t)) == 0);
    free(js);
    dr_tokenizer_free(t2);
    dr_tokenizer_free(t);
    /* invalid JSON forms */
    ASSERT_EQ(dr_tokenizer_from_json("{\"type\":\"bpe-bytes\",\"version\":1,\"merges\":[[300,1]]}",
                                     &t2, &err), DYNRAG_ERR_FORMAT);
    ASSERT_EQ(dr_tokenizer_from_json("{\"type\":\"wordpiece\",\"version\":1,\"merges\":[]}", &t2,
                                     &err), DYNRAG_ERR_UNSUPPORTED);
    ASSERT_EQ(dr_tokenizer_from_json("[", &t2, &err), DYNRAG_ERR_FORMAT);
    ASSERT(t2 == NULL);
    /* a strip set deletes punctuation before tokenisation, and survives JSON */
    ASSERT_EQ(dr_tokenizer_train(texts, 5, 300, "a", &t, &err), DYNRAG_ERR_INVALID);
    ASSERT_OK(dr_tokenizer_train(texts, 5, 300, "?!", &t, &err), &err);
    js = dr_tokenizer_to_json(t);
    ASSERT_OK(dr_tokenizer_from_json(js, &t2, &err), &err);
    n = dr_tokenizer_encode(t2, "Who wrote it?!", ids, 64);
    ASSERT_EQ(dr_tokenizer_encode(t2, "who wrote it", ids2, 64), n);
    ASSERT(memcmp(ids, ids2, (size_t)n * sizeof(int32_t)) == 0);
    free(js);
    dr_tokenizer_free(t2);
    dr_tokenizer_free(t);
}

/* ---- forward pass against the NumPy golden -------------------------------- */

TEST(nn_golden_forward)
{
    char path[1024], *json = NULL;
    size_t len = 0;
    dynrag_error err;
    dr_classifier *c = NULL;
    snprintf(path, sizeof(path), "%s/tests/golden/tiny.safetensors", test_source_dir());
    ASSERT_OK(dr_classifier_load(path, &c, &err), &err);
    snprintf(path, sizeof(path), "%s/tests/golden/tiny_golden.json", test_source_dir());
    ASSERT_OK(dr_read_file(path, 1 << 20, &json, &len, &err), &err);
    cJSON *root = cJSON_Parse(json);
    free(json);
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    ASSERT(cJSON_GetArraySize(cases) >= 5);
    dr_t5_acts acts;
    ASSERT_OK(dr_t5_acts_alloc(&c->cfg, 2, c->cfg.max_len, false, &acts, &err), &err);
    double max_diff = 0;
    int W = dr_t5_logit_width(&c->cfg), n_cases = 0;
    int32_t ids[64], pair[2 * 64];
    int pair_len[2] = {0, 0};
    const cJSON *cs;
    cJSON_ArrayForEach(cs, cases)
    {
        const char *text = cJSON_GetObjectItem(cs, "text")->valuestring;
        const cJSON *gids = cJSON_GetObjectItem(cs, "ids");
        int n = dr_classifier_encode(c, text, ids);
        /* the C tokenizer agrees with the Python one */
        ASSERT_EQ(n, cJSON_GetArraySize(gids));
        for (int i = 0; i < n; i++)
            ASSERT_EQ(ids[i], (int)cJSON_GetArrayItem(gids, i)->valuedouble);
        dr_t5_forward(&c->cfg, &c->p, c->rel_bucket, ids, &n, 1, n, false, 0, NULL, &acts);
        const cJSON *gl = cJSON_GetObjectItem(cs, "logits");
        for (int h = 0; h < c->cfg.n_cls; h++)
            for (int k = 0; k < c->cfg.n_labels[h]; k++) {
                double want = cJSON_GetArrayItem(cJSON_GetArrayItem(gl, h), k)->valuedouble;
                double got = acts.logits[dr_t5_logit_offset(&c->cfg, h) + k];
                max_diff = fmax(max_diff, fabs(want - got));
            }
        /* keep the first two cases for a padded batch check */
        if (n_cases < 2) {
            memset(pair + n_cases * c->cfg.max_len, 0, (size_t)c->cfg.max_len * sizeof(int32_t));
            memcpy(pair + n_cases * c->cfg.max_len, ids, (size_t)n * sizeof(int32_t));
            pair_len[n_cases] = n;
        }
        n_cases++;
    }
    printf("nn_golden_forward: %d cases, largest |C - NumPy| logit difference %.3g\n", n_cases,
           max_diff);
    ASSERT(max_diff < 1e-4);
    /* B = 2 padded to max_len: masking makes each row equal its own run */
    float single[2][DR_T5_MAX_HEADS * DR_T5_MAX_LABELS];
    for (int b = 0; b < 2; b++) {
        dr_t5_forward(&c->cfg, &c->p, c->rel_bucket, pair + b * c->cfg.max_len, &pair_len[b], 1,
                      pair_len[b], false, 0, NULL, &acts);
        memcpy(single[b], acts.logits, (size_t)W * sizeof(float));
    }
    dr_t5_forward(&c->cfg, &c->p, c->rel_bucket, pair, pair_len, 2, c->cfg.max_len, false, 0, NULL,
                  &acts);
    for (int b = 0; b < 2; b++)
        for (int k = 0; k < W; k++)
            ASSERT_NEAR(acts.logits[b * W + k], single[b][k], 1e-5);
    /* the public API agrees */
    dynrag_classifier *pc = NULL;
    snprintf(path, sizeof(path), "%s/tests/golden/tiny.safetensors", test_source_dir());
    ASSERT_OK(dynrag_classifier_open(path, &pc, &err), &err);
    ASSERT_EQ(dynrag_classifier_head(pc, "other"), 1);
    ASSERT_EQ(dynrag_classifier_head(pc, "nope"), -1);
    ASSERT_STR_EQ(dynrag_classifier_label(pc, 1, 1), "y");
    float probs[3];
    ASSERT_OK(dynrag_classifier_predict(pc, 0, "", probs, &err), &err);
    ASSERT_NEAR(probs[0] + probs[1] + probs[2], 1.0, 1e-5);
    dynrag_classifier_close(pc);
    dr_t5_acts_free(&acts);
    cJSON_Delete(root);
    dr_classifier_free(c);
}

/* ---- backward pass: finite differences ------------------------------------ */

/* loss = sum over rows and logits of r_i * logit_i (exercises every head). */
static double probe_loss(const dr_classifier *c, const int32_t *tok, const int *lens, int B, int T,
                         const float *r, dr_t5_acts *a)
{
    dr_t5_forward(&c->cfg, &c->p, c->rel_bucket, tok, lens, B, T, true, 0.0f, NULL, a);
    double s = 0;
    int W = dr_t5_logit_width(&c->cfg);
    for (int i = 0; i < B * W; i++)
        s += (double)r[i] * a->logits[i];
    return s;
}

TEST(nn_gradient_check)
{
    dynrag_error err;
    const char *texts[] = {"abc abd", "abe"};
    dr_tokenizer *tok = NULL;
    ASSERT_OK(dr_tokenizer_train(texts, 2, 260, NULL, &tok, &err), &err);
    dr_t5_config cfg = {.vocab_size = 270, .d_model = 8, .n_layers = 2, .n_heads = 2, .d_ff = 12,
                        .max_len = 6, .num_buckets = 8, .max_distance = 16, .n_cls = 2,
                        .n_labels = {3, 2}};
    const char *heads[] = {"h0", "h1"};
    const char *l0[] = {"a", "b", "c"}, *l1[] = {"x", "y"};
    const char *const *labels[] = {l0, l1};
    dr_classifier *c = NULL;
    ASSERT_OK(dr_classifier_create(&cfg, tok, heads, labels, &c, &err), &err);
    dr_train_init_params(c, 42);
    /* perturb norms and biases away from their 1/0 initialisation */
    dr_rng rng;
    dr_rng_seed(&rng, 7);
    dr_t5_tensor t[DR_T5_MAX_TENSORS];
    size_t nt = dr_t5_tensors(&cfg, t, NULL);
    for (size_t i = 0; i < nt; i++)
        if (t[i].ndim == 1)
            for (size_t j = 0; j < t[i].numel; j++)
                c->params[t[i].offset + j] += (float)(0.3 * dr_rng_normal(&rng));
    for (size_t j = 0; j < (size_t)cfg.num_buckets * cfg.n_heads; j++)
        c->p.rel_bias[j] = (float)(0.5 * dr_rng_normal(&rng));
    /* B = 2, T = 5; the second row is padded (len 3) */
    int B = 2, T = 5, lens[2] = {5, 3};
    int32_t tok_ids[10] = {3, 17, 260, 5, 9, 100, 258, 1, 0, 0};
    int W = dr_t5_logit_width(&cfg);
    float r[2 * 5];
    for (int i = 0; i < B * W; i++)
        r[i] = (float)dr_rng_normal(&rng);
    dr_t5_acts a;
    ASSERT_OK(dr_t5_acts_alloc(&cfg, B, T, true, &a, &err), &err);
    float *grad = calloc(c->n_params, sizeof(float));
    dr_t5_params g;
    dr_t5_point(&cfg, grad, &g);
    probe_loss(c, tok_ids, lens, B, T, r, &a);
    dr_t5_backward(&cfg, &c->p, c->rel_bucket, tok_ids, lens, B, T, r, &a, &g);
    double worst = 0;
    const char *worst_name = "";
    bool ok = true;
    for (size_t ti = 0; ti < nt; ti++) {
        double tensor_worst = 0, gmax = 0;
        for (size_t j = 0; j < t[ti].numel; j++) {
            size_t k = t[ti].offset + j;
            float orig = c->params[k];
            const float h = 1e-2f;
            c->params[k] = orig + h;
            double lp = probe_loss(c, tok_ids, lens, B, T, r, &a);
            c->params[k] = orig - h;
            double lm = probe_loss(c, tok_ids, lens, B, T, r, &a);
            c->params[k] = orig;
            double fd = (lp - lm) / (2.0 * h), an = grad[k];
            double diff = fabs(fd - an), scale = fmax(fabs(fd), fabs(an));
            gmax = fmax(gmax, fabs(an));
            double rel = diff / fmax(scale, 1e-2);
            if (rel > tensor_worst)
                tensor_worst = rel;
            if (diff > 2e-3 + 2e-2 * scale) {
                if (ok)
                    printf("  mismatch %s[%zu]: analytic %.6g finite-difference %.6g\n",
                           t[ti].name, j, an, fd);
                ok = false;
            }
        }
        printf("  %-68s max rel diff %.2e (max |grad| %.3g)\n", t[ti].name, tensor_worst, gmax);
        if (strstr(t[ti].name, "shared") == NULL) /* unused vocabulary rows are all zero */
            ASSERT(gmax > 0);
        if (tensor_worst > worst) {
            worst = tensor_worst;
            worst_name = t[ti].name;
        }
    }
    printf("nn_gradient_check: %zu tensors, %zu parameters, largest relative difference %.3g (%s)\n",
           nt, c->n_params, worst, worst_name);
    free(grad);
    dr_t5_acts_free(&a);
    dr_classifier_free(c);
    ASSERT(ok);
}

/* ---- training: determinism, CLI, loader errors --------------------------------- */

/* Writes a small separable data set: A = greetings, B = "who/what" single
 * questions, C = questions with "and"/"of the ... of". */
static void write_toy_data(const char *name, int n, uint64_t seed)
{
    static const char *const a[] = {"hello there", "good morning", "thanks a lot", "hi",
                                    "how are you", "bye for now"};
    static const char *const b[] = {"who wrote hamlet", "what is the capital of peru",
                                    "when did the war end", "who sang yesterday"};
    static const char *const cc[] = {"who is the father of the director of the film",
                                     "which city is older and which is larger",
                                     "what is the birthplace of the wife of the author"};
    dr_rng rng;
    dr_rng_seed(&rng, seed);
    dr_buf buf = {0};
    for (int i = 0; i < n; i++) {
        int k = i % 3;
        const char *t = k == 0 ? a[dr_rng_below(&rng, 6)] : k == 1 ? b[dr_rng_below(&rng, 4)]
                                                                   : cc[dr_rng_below(&rng, 3)];
        dr_buf_printf(&buf, "{\"text\":\"%s %d\",\"label\":\"%c\"}\n", t, (int)dr_rng_below(&rng, 9),
                      "ABC"[k]);
    }
    test_write_file(name, buf.data);
    dr_buf_free(&buf);
}

static int train_toy(const char *out, int threads, dynrag_train_result *r, dynrag_error *err)
{
    char tr[512], va[512];
    snprintf(tr, sizeof(tr), "%s/train.jsonl", test_tmpdir());
    snprintf(va, sizeof(va), "%s/valid.jsonl", test_tmpdir());
    dynrag_train_options o;
    dynrag_train_options_init(&o);
    o.train_path = tr;
    o.valid_path = va;
    o.out_path = out;
    o.config = "vocab_size=300,d_model=16,n_layers=1,n_heads=2,d_ff=16,max_len=16,"
               "epochs=8,batch_size=8,lr=5e-3,patience=0";
    o.seed = 5;
    o.threads = threads;
    return dynrag_classifier_train(&o, r, err);
}

static bool same_weights(const char *p1, const char *p2)
{
    dr_classifier *a = NULL, *b = NULL;
    bool same = dr_classifier_load(p1, &a, NULL) == 0 && dr_classifier_load(p2, &b, NULL) == 0 &&
                a->n_params == b->n_params &&
                memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0;
    dr_classifier_free(a);
    dr_classifier_free(b);
    return same;
}

TEST(nn_train_deterministic_and_learns)
{
    dynrag_error err;
    dynrag_train_result r;
    write_toy_data("train.jsonl", 240, 1);
    write_toy_data("valid.jsonl", 60, 2);
    char m1[512], m2[512], m3[512];
    snprintf(m1, sizeof(m1), "%s/m1.safetensors", test_tmpdir());
    snprintf(m2, sizeof(m2), "%s/m2.safetensors", test_tmpdir());
    snprintf(m3, sizeof(m3), "%s/m3.safetensors", test_tmpdir());
    ASSERT_OK(train_toy(m1, 2, &r, &err), &err);
    printf("toy training: valid macro-F1 %.3f after %d epochs\n", r.best_valid_macro_f1,
           r.epochs_run);
    ASSERT(r.best_valid_macro_f1 > 0.9);
    ASSERT_OK(train_toy(m2, 2, &r, &err), &err);
    ASSERT(same_weights(m1, m2));
    ASSERT_OK(train_toy(m3, 1, &r, &err), &err);
    ASSERT(r.best_valid_macro_f1 > 0.9);
    /* provenance records the data hashes and seed */
    dynrag_classifier *c = NULL;
    ASSERT_OK(dynrag_classifier_open(m1, &c, &err), &err);
    ASSERT_CONTAINS(dynrag_classifier_provenance(c), "\"sha256\":\"");
    ASSERT_CONTAINS(dynrag_classifier_provenance(c), "\"seed\":5");
    ASSERT_STR_EQ(dynrag_classifier_head_name(c, 0), "complexity");
    dynrag_classifier_close(c);
    /* bad config */
    dynrag_train_options o;
    dynrag_train_options_init(&o);
    o.train_path = "x";
    o.valid_path = "y";
    o.out_path = m3;
    o.config = "d_model=abc";
    ASSERT_EQ(dynrag_classifier_train(&o, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "d_model");
    /* a key given twice (the last would win silently) */
    o.config = "d_model=16,epochs=2,d_model=8";
    ASSERT_EQ(dynrag_classifier_train(&o, &r, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "'d_model' is given twice");
    /* an empty validation set: no epoch can be chosen on it */
    test_write_file("empty.jsonl", "");
    char empty[512];
    snprintf(empty, sizeof(empty), "%s/empty.jsonl", test_tmpdir());
    snprintf(m1, sizeof(m1), "%s/train.jsonl", test_tmpdir());
    o.train_path = m1;
    o.valid_path = empty;
    o.config = "vocab_size=300,d_model=16,n_layers=1,n_heads=2,d_ff=16,max_len=16,epochs=1";
    int rc = dynrag_classifier_train(&o, &r, &err);
    ASSERT(rc != DYNRAG_OK);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "empty.jsonl");
}

TEST(nn_router_cli)
{
    dynrag_error err;
    dynrag_train_result r;
    write_toy_data("train.jsonl", 150, 3);
    write_toy_data("valid.jsonl", 30, 4);
    char m[512], cmd[2048], *out = NULL;
    snprintf(m, sizeof(m), "%s/m.safetensors", test_tmpdir());
    ASSERT_OK(train_toy(m, 1, &r, &err), &err);
    snprintf(cmd, sizeof(cmd), "%s router predict --model %s --json 'hello there 3'",
             test_cli_path(), m);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "\"label\":\"A\"");
    ASSERT_CONTAINS(out, "\"probs\":{\"A\":");
    free(out);
    test_write_file("q.jsonl", "{\"text\":\"who wrote hamlet\"}\n\n\"good morning\"\n");
    snprintf(cmd, sizeof(cmd), "%s router predict --model %s --input %s/q.jsonl", test_cli_path(),
             m, test_tmpdir());
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "B A=");
    ASSERT_CONTAINS(out, "\nA A=");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s router eval --model %s --data %s/valid.jsonl", test_cli_path(),
             m, test_tmpdir());
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "macro-F1:");
    ASSERT_CONTAINS(out, "confusion");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s router predict --model %s --head nope x", test_cli_path(), m);
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "no head named 'nope'");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s router predict x", test_cli_path());
    ASSERT_EQ(test_run(cmd, &out), 2);
    free(out);
    snprintf(cmd, sizeof(cmd), "%s router train --train %s/train.jsonl --valid %s/none.jsonl "
             "--out %s/x.safetensors", test_cli_path(), test_tmpdir(), test_tmpdir(), test_tmpdir());
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "none.jsonl");
    free(out);
}

/* Rewrites the golden model with one change and checks the loader's error. */
TEST(nn_loader_rejects_inconsistent_models)
{
    dynrag_error err;
    dr_classifier *c = NULL;
    char src[1024], dst[1024];
    snprintf(src, sizeof(src), "%s/tests/golden/tiny.safetensors", test_source_dir());
    snprintf(dst, sizeof(dst), "%s/bad.safetensors", test_tmpdir());
    /* truncated copies of a valid model never crash and name the file */
    char *buf = NULL;
    size_t len = 0;
    ASSERT_OK(dr_read_file(src, 1 << 20, &buf, &len, &err), &err);
    size_t cuts[] = {0, 7, 8, 100, len / 2, len - 1};
    for (size_t i = 0; i < DR_ARRAY_LEN(cuts); i++) {
        ASSERT_OK(dr_write_file_atomic(dst, buf, cuts[i], &err), &err);
        ASSERT(dr_classifier_load(dst, &c, &err) != DYNRAG_OK);
        ASSERT(c == NULL);
        ASSERT_CONTAINS(dynrag_errmsg(&err), "bad.safetensors");
    }
    /* wrong format tag */
    char *p = memmem(buf, len, "dynrag-t5-classifier", strlen("dynrag-t5-classifier"));
    ASSERT(p != NULL);
    p[0] = 'X';
    ASSERT_OK(dr_write_file_atomic(dst, buf, len, &err), &err);
    ASSERT_EQ(dr_classifier_load(dst, &c, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "format");
    p[0] = 'd';
    /* a tensor renamed: missing tensor */
    p = memmem(buf, len, "encoder.final_layer_norm.weight", strlen("encoder.final_layer_norm.weight"));
    ASSERT(p != NULL);
    p[0] = 'X';
    ASSERT_OK(dr_write_file_atomic(dst, buf, len, &err), &err);
    ASSERT_EQ(dr_classifier_load(dst, &c, &err), DYNRAG_ERR_NOTFOUND);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "encoder.final_layer_norm.weight");
    p[0] = 'e';
    /* a dtype changed: F32 -> I32 */
    p = memmem(buf, len, "\"F32\"", strlen("\"F32\""));
    ASSERT(p != NULL);
    p[1] = 'I';
    ASSERT_OK(dr_write_file_atomic(dst, buf, len, &err), &err);
    ASSERT_EQ(dr_classifier_load(dst, &c, &err), DYNRAG_ERR_MISMATCH);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "dtype I32");
    p[1] = 'F';
    /* the config disagrees with the tensors: d_ff 24 -> 25 */
    p = memmem(buf, len, "d_ff\\\": 24", strlen("d_ff\\\": 24"));
    ASSERT(p != NULL);
    p[9] = '5';
    ASSERT_OK(dr_write_file_atomic(dst, buf, len, &err), &err);
    ASSERT_EQ(dr_classifier_load(dst, &c, &err), DYNRAG_ERR_MISMATCH);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "expected [25, 16]");
    free(buf);
}

TEST(nn_shipped_model)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/models/complexity.safetensors", test_source_dir());
    if (!dr_path_exists(path))
        SKIP("models/complexity.safetensors not present");
    dynrag_classifier *c = NULL;
    dynrag_error err;
    ASSERT_OK(dynrag_classifier_open(path, &c, &err), &err);
    int h = dynrag_classifier_head(c, "complexity");
    ASSERT_GE(h, 0);
    struct {
        const char *q, *want;
    } cases[] = {
        {"hello, how are you today?", "A"},
        {"set a timer for ten minutes", "A"},
        {"who wrote the novel war and peace", "B"},
        {"when did the berlin wall fall", "B"},
        {"What is the birthplace of the director of the film Jaws?", "C"},
        {"Which band formed earlier, Blur or the band whose singer wrote Wonderwall?", "C"},
    };
    float probs[8];
    for (size_t i = 0; i < DR_ARRAY_LEN(cases); i++) {
        ASSERT_OK(dynrag_classifier_predict(c, h, cases[i].q, probs, &err), &err);
        size_t best = 0;
        for (size_t k = 1; k < dynrag_classifier_n_labels(c, h); k++)
            if (probs[k] > probs[best])
                best = k;
        if (strcmp(dynrag_classifier_label(c, h, best), cases[i].want) != 0) {
            test_fail_(__FILE__, __LINE__, "'%s': got %s, expected %s", cases[i].q,
                       dynrag_classifier_label(c, h, best), cases[i].want);
            dynrag_classifier_close(c);
            return;
        }
    }
    dynrag_classifier_close(c);
}

/* ---- the fast kernels are bit-identical ------------------------------------ */

/* The forward pass of the shipped model with the 4-row AVX-512VL kernels
 * (matmul, attention) and with the portable ones gives the same logits bit
 * for bit, for random token sequences of every length up to max_len, alone
 * and in padded batches, in inference and in training mode (no dropout). */
TEST(nn_fast_kernels_bit_identical)
{
    char path[1024];
    dynrag_error err;
    dr_classifier *c = NULL;
    snprintf(path, sizeof(path), "%s/models/complexity.safetensors", test_source_dir());
    ASSERT_OK(dr_classifier_load(path, &c, &err), &err);
    int T = c->cfg.max_len, W = dr_t5_logit_width(&c->cfg);
    dr_t5_acts acts;
    ASSERT_OK(dr_t5_acts_alloc(&c->cfg, 3, T, false, &acts, &err), &err);
    int32_t *tok = calloc((size_t)3 * T, sizeof(*tok));
    float *want = calloc((size_t)3 * W, sizeof(*want));
    ASSERT(tok != NULL && want != NULL);
    dr_rng rng;
    dr_rng_seed(&rng, 5);
    bool fast = dr_t5_set_portable(false);
    int compared = 0;
    for (int round = 0; round < 120; round++) {
        int B = 1 + (int)dr_rng_below(&rng, 3);
        int lens[3];
        int TT = 0;
        for (int b = 0; b < B; b++) {
            lens[b] = round < 64 && B == 1 ? 1 + round % T : 1 + (int)dr_rng_below(&rng, (uint64_t)T);
            TT = lens[b] > TT ? lens[b] : TT;
        }
        if (B > 1 && dr_rng_below(&rng, 2))
            TT = T; /* padded to max_len, as training batches are */
        for (int b = 0; b < B; b++)
            for (int t = 0; t < TT; t++)
                tok[b * TT + t] = t < lens[b] ? (int32_t)dr_rng_below(&rng, (uint64_t)c->cfg.vocab_size) : 0;
        bool training = round % 5 == 4;
        dr_t5_set_portable(true);
        dr_t5_forward(&c->cfg, &c->p, c->rel_bucket, tok, lens, B, TT, training, 0.0f, NULL, &acts);
        memcpy(want, acts.logits, (size_t)B * W * sizeof(float));
        dr_t5_set_portable(false);
        dr_t5_forward(&c->cfg, &c->p, c->rel_bucket, tok, lens, B, TT, training, 0.0f, NULL, &acts);
        if (memcmp(want, acts.logits, (size_t)B * W * sizeof(float)) != 0) {
            test_fail_(__FILE__, __LINE__, "round %d (B %d, T %d, lens %d..): logits differ", round,
                       B, TT, lens[0]);
            break;
        }
        compared++;
    }
    printf("nn_fast_kernels_bit_identical: %d passes compared; this CPU %s the 4-row kernels\n",
           compared, fast ? "has" : "does not have (both runs took the portable path)");
    dr_t5_set_portable(false);
    free(tok);
    free(want);
    dr_t5_acts_free(&acts);
    dr_classifier_free(c);
}
