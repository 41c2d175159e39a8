/* classifier.c - loading, saving and running the T5 classifier; public API. */
#include "nn/model.h"
#include "core/alloc.h"

#include "data/labelled.h"
#include "dynrag/classifier.h"
#include "nn/safetensors.h"
#include "nn/wide.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void dr_classifier_free(dr_classifier *c)
{
    if (!c)
        return;
    dr_free(c->params);
    dr_free(c->rel_bucket);
    dr_tokenizer_free(c->tok);
    for (int h = 0; h < DR_T5_MAX_HEADS; h++)
        for (int k = 0; k < DR_T5_MAX_LABELS; k++)
            dr_free(c->labels[h][k]);
    dr_free(c->provenance);
    dr_free(c);
}

int dr_classifier_create(const dr_t5_config *cfg, dr_tokenizer *tok,
                         const char *const *head_names, const char *const *const *labels,
                         dr_classifier **out, dynrag_error *err)
{
    dr_classifier *c = NULL;
    int rc = DYNRAG_OK;
    *out = NULL;
    if ((rc = dr_t5_config_check(cfg, err)) != DYNRAG_OK)
        goto cleanup;
    if (dr_tokenizer_vocab_size(tok) > cfg->vocab_size - cfg->length_buckets) {
        rc = dr_err_set(err, DYNRAG_ERR_MISMATCH, "tokenizer has %d ids but vocab_size is %d "
                        "(with %d length tokens)", dr_tokenizer_vocab_size(tok), cfg->vocab_size,
                        cfg->length_buckets);
        goto cleanup;
    }
    c = dr_calloc(1, sizeof(*c));
    if (!c)
        goto nomem;
    c->cfg = *cfg;
    c->tok = tok;
    tok = NULL;
    dr_t5_tensor t[DR_T5_MAX_TENSORS];
    dr_t5_tensors(cfg, t, &c->n_params);
    c->params = dr_calloc(c->n_params, sizeof(float));
    c->rel_bucket = dr_t5_bucket_table(cfg);
    if (!c->params || !c->rel_bucket)
        goto nomem;
    dr_t5_point(cfg, c->params, &c->p);
    for (int h = 0; h < cfg->n_cls; h++) {
        if (head_names[h] == NULL || head_names[h][0] == '\0' ||
            strlen(head_names[h]) >= DR_CLS_MAX_NAME) {
            rc = dr_err_set(err, DYNRAG_ERR_INVALID, "head %d: name must have 1..%d bytes", h,
                            DR_CLS_MAX_NAME - 1);
            goto cleanup;
        }
        for (int g = 0; g < h; g++)
            if (strcmp(c->head_name[g], head_names[h]) == 0) {
                rc = dr_err_set(err, DYNRAG_ERR_INVALID, "duplicate head name '%s'", head_names[h]);
                goto cleanup;
            }
        dr_strlcpy(c->head_name[h], head_names[h], DR_CLS_MAX_NAME);
        for (int k = 0; k < cfg->n_labels[h]; k++) {
            if (labels[h][k] == NULL || labels[h][k][0] == '\0') {
                rc = dr_err_set(err, DYNRAG_ERR_INVALID, "head '%s': empty label %d",
                                head_names[h], k);
                goto cleanup;
            }
            c->labels[h][k] = dr_strdup(labels[h][k]);
            if (!c->labels[h][k])
                goto nomem;
        }
    }
    *out = c;
    c = NULL;
    goto cleanup;
nomem:
    rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory creating the classifier");
cleanup:
    dr_tokenizer_free(tok);
    dr_classifier_free(c);
    return rc;
}

/* Reads an integer config field in [lo, hi]. */
static int cfg_int(const cJSON *o, const char *key, int lo, int hi, int *out, dynrag_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "metadata config: '%s' missing or not an "
                          "integer in [%d, %d]", key, lo, hi);
    *out = (int)v->valuedouble;
    return DYNRAG_OK;
}

/* Builds a model from a parsed weight file (validating metadata, config,
 * tensor names, dtypes and shapes). */
static int load_from_st(const dr_st_file *f, dr_classifier **out, dynrag_error *err)
{
    cJSON *cfgj = NULL, *headsj = NULL;
    dr_tokenizer *tok = NULL;
    dr_classifier *c = NULL;
    const char *names[DR_T5_MAX_HEADS] = {0};
    const char *labs[DR_T5_MAX_HEADS][DR_T5_MAX_LABELS] = {{0}};
    const char *const *labp[DR_T5_MAX_HEADS] = {0};
    int rc;
    *out = NULL;
    const char *fmt = dr_st_meta(f, "format"), *ver = dr_st_meta(f, "format_version");
    if (!fmt || strcmp(fmt, DR_CLS_FORMAT) != 0) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "metadata 'format' is %s%s%s, expected \"%s\"",
                        fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "", DR_CLS_FORMAT);
        goto cleanup;
    }
    bool v2 = ver && strcmp(ver, DR_CLS_FORMAT_VERSION_WIDE) == 0;
    if (!ver || (!v2 && strcmp(ver, DR_CLS_FORMAT_VERSION) != 0)) {
        rc = dr_err_set(err, DYNRAG_ERR_UNSUPPORTED, "metadata 'format_version' %s is not "
                        "supported (this build reads %s and %s)", ver ? ver : "(missing)",
                        DR_CLS_FORMAT_VERSION, DR_CLS_FORMAT_VERSION_WIDE);
        goto cleanup;
    }
    const char *cs = dr_st_meta(f, "config"), *hs = dr_st_meta(f, "heads");
    const char *ts = dr_st_meta(f, "tokenizer");
    if (!cs || !hs || !ts) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "metadata lacks '%s'",
                        !cs ? "config" : !hs ? "heads" : "tokenizer");
        goto cleanup;
    }
    unsigned long failed = dr_alloc_failures();
    cfgj = cJSON_Parse(cs);
    if (!cfgj && dr_alloc_failures() != failed) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (!cJSON_IsObject(cfgj)) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "metadata 'config' is not a JSON object");
        goto cleanup;
    }
    dr_t5_config cfg = {0};
    if ((rc = cfg_int(cfgj, "vocab_size", 2, 1 << 20, &cfg.vocab_size, err)) ||
        (rc = cfg_int(cfgj, "d_model", 1, 4096, &cfg.d_model, err)) ||
        (rc = cfg_int(cfgj, "n_layers", 0, DR_T5_MAX_LAYERS, &cfg.n_layers, err)) ||
        (rc = cfg_int(cfgj, "n_heads", 1, 64, &cfg.n_heads, err)) ||
        (rc = cfg_int(cfgj, "d_ff", 1, 16384, &cfg.d_ff, err)) ||
        (rc = cfg_int(cfgj, "max_len", 1, 4096, &cfg.max_len, err)) ||
        (rc = cfg_int(cfgj, "num_buckets", 4, 1024, &cfg.num_buckets, err)) ||
        (rc = cfg_int(cfgj, "max_distance", 2, 1 << 20, &cfg.max_distance, err)))
        goto cleanup;
    if (cJSON_GetObjectItemCaseSensitive(cfgj, "length_buckets") &&
        (rc = cfg_int(cfgj, "length_buckets", 0, 256, &cfg.length_buckets, err)))
        goto cleanup;
    /* version 2 <=> a wide branch */
    if (v2 && (rc = cfg_int(cfgj, "wide_bits", DR_WIDE_MIN_BITS, DR_WIDE_MAX_BITS,
                            &cfg.wide_bits, err)))
        goto cleanup;
    if (!v2 && cJSON_GetObjectItemCaseSensitive(cfgj, "wide_bits")) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "metadata config: 'wide_bits' needs "
                        "format_version %s", DR_CLS_FORMAT_VERSION_WIDE);
        goto cleanup;
    }
    failed = dr_alloc_failures();
    headsj = cJSON_Parse(hs);
    if (!headsj && dr_alloc_failures() != failed) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    int nh = cJSON_IsArray(headsj) ? cJSON_GetArraySize(headsj) : 0;
    if (nh < 1 || nh > DR_T5_MAX_HEADS) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "metadata 'heads' must be an array of 1..%d "
                        "heads", DR_T5_MAX_HEADS);
        goto cleanup;
    }
    cfg.n_cls = nh;
    int h = 0;
    for (const cJSON *e = headsj->child; e; e = e->next, h++) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
        const cJSON *lb = cJSON_GetObjectItemCaseSensitive(e, "labels");
        int nl = cJSON_IsArray(lb) ? cJSON_GetArraySize(lb) : 0;
        if (!cJSON_IsString(nm) || nl < 2 || nl > DR_T5_MAX_LABELS) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "metadata heads[%d]: needs a string 'name' "
                            "and 2..%d 'labels'", h, DR_T5_MAX_LABELS);
            goto cleanup;
        }
        names[h] = nm->valuestring;
        cfg.n_labels[h] = nl;
        int k = 0;
        for (const cJSON *l = lb->child; l; l = l->next, k++) {
            if (!cJSON_IsString(l)) {
                rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "metadata heads[%d].labels[%d] is not a "
                                "string", h, k);
                goto cleanup;
            }
            labs[h][k] = l->valuestring;
        }
        labp[h] = labs[h];
    }
    if ((rc = dr_tokenizer_from_json(ts, &tok, err)) != DYNRAG_OK)
        goto cleanup;
    rc = dr_classifier_create(&cfg, tok, names, labp, &c, err);
    tok = NULL; /* owned (or freed) by create */
    if (rc != DYNRAG_OK)
        goto cleanup;
    dr_t5_tensor t[DR_T5_MAX_TENSORS];
    size_t nt = dr_t5_tensors(&cfg, t, NULL);
    if (dr_st_count(f) != nt) {
        rc = dr_err_set(err, DYNRAG_ERR_MISMATCH, "file has %zu tensors, the config needs %zu",
                        dr_st_count(f), nt);
        goto cleanup;
    }
    for (size_t i = 0; i < nt; i++) {
        rc = dr_st_read_f32(f, t[i].name, t[i].ndim, t[i].shape, c->params + t[i].offset, err);
        if (rc != DYNRAG_OK)
            goto cleanup;
    }
    for (size_t i = 0; i < c->n_params; i++)
        if (!isfinite(c->params[i])) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "weights contain a non-finite value");
            goto cleanup;
        }
    const char *prov = dr_st_meta(f, "provenance");
    if (prov && !(c->provenance = dr_strdup(prov))) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    *out = c;
    c = NULL;
cleanup:
    dr_classifier_free(c);
    dr_tokenizer_free(tok);
    cJSON_Delete(cfgj);
    cJSON_Delete(headsj);
    return rc;
}

int dr_classifier_load(const char *path, dr_classifier **out, dynrag_error *err)
{
    dr_st_file *f = NULL;
    *out = NULL;
    int rc = dr_st_open(path, &f, err); /* prefixes its errors with path */
    if (rc != DYNRAG_OK)
        return rc;
    rc = load_from_st(f, out, err);
    if (rc != DYNRAG_OK)
        dr_err_prefix(err, "%s", path);
    dr_st_close(f);
    return rc;
}

int dr_classifier_load_buffer(const void *buf, size_t len, dr_classifier **out,
                              dynrag_error *err)
{
    dr_st_file *f = NULL;
    *out = NULL;
    int rc = dr_st_parse(buf, len, &f, err);
    if (rc == DYNRAG_OK)
        rc = load_from_st(f, out, err);
    dr_st_close(f);
    return rc;
}

int dr_classifier_save(const dr_classifier *c, const char *path, const char *provenance,
                       dynrag_error *err)
{
    dr_st_writer *w = dr_st_writer_new();
    char *tokj = dr_tokenizer_to_json(c->tok);
    dr_buf cfg = {0}, heads = {0};
    int rc = DYNRAG_OK;
    if (!w || !tokj) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    const dr_t5_config *k = &c->cfg;
    rc = dr_buf_printf(&cfg, "{\"vocab_size\":%d,\"d_model\":%d,\"n_layers\":%d,\"n_heads\":%d,"
                       "\"d_ff\":%d,\"max_len\":%d,\"num_buckets\":%d,\"max_distance\":%d,"
                       "\"length_buckets\":%d",
                       k->vocab_size, k->d_model, k->n_layers, k->n_heads, k->d_ff, k->max_len,
                       k->num_buckets, k->max_distance, k->length_buckets);
    rc = rc ? rc : k->wide_bits > 0 ? dr_buf_printf(&cfg, ",\"wide_bits\":%d}", k->wide_bits)
                                    : dr_buf_putc(&cfg, '}');
    rc = rc ? rc : dr_buf_putc(&heads, '[');
    for (int h = 0; h < k->n_cls && rc == DYNRAG_OK; h++) {
        rc = dr_buf_puts(&heads, h ? ",{\"name\":" : "{\"name\":");
        rc = rc ? rc : dr_buf_json_str(&heads, c->head_name[h]);
        rc = rc ? rc : dr_buf_puts(&heads, ",\"labels\":[");
        for (int l = 0; l < k->n_labels[h] && rc == DYNRAG_OK; l++) {
            if (l)
                rc = dr_buf_putc(&heads, ',');
            rc = rc ? rc : dr_buf_json_str(&heads, c->labels[h][l]);
        }
        rc = rc ? rc : dr_buf_puts(&heads, "]}");
    }
    rc = rc ? rc : dr_buf_putc(&heads, ']');
    if (rc != DYNRAG_OK) {
        rc = dr_err_set(err, rc, "out of memory");
        goto cleanup;
    }
    if ((rc = dr_st_writer_meta(w, "format", DR_CLS_FORMAT, err)) ||
        (rc = dr_st_writer_meta(w, "format_version", k->wide_bits > 0 ? DR_CLS_FORMAT_VERSION_WIDE
                                                                       : DR_CLS_FORMAT_VERSION,
                                err)) ||
        (rc = dr_st_writer_meta(w, "config", cfg.data, err)) ||
        (rc = dr_st_writer_meta(w, "heads", heads.data, err)) ||
        (rc = dr_st_writer_meta(w, "tokenizer", tokj, err)))
        goto cleanup;
    if (provenance && (rc = dr_st_writer_meta(w, "provenance", provenance, err)))
        goto cleanup;
    dr_t5_tensor t[DR_T5_MAX_TENSORS];
    size_t nt = dr_t5_tensors(k, t, NULL);
    for (size_t i = 0; i < nt; i++)
        if ((rc = dr_st_writer_add_f32(w, t[i].name, t[i].ndim, t[i].shape,
                                       c->params + t[i].offset, err)))
            goto cleanup;
    rc = dr_st_writer_save(w, path, err);
cleanup:
    dr_buf_free(&cfg);
    dr_buf_free(&heads);
    dr_free(tokj);
    dr_st_writer_free(w);
    return rc;
}

int dr_classifier_head(const dr_classifier *c, const char *name)
{
    if (name == NULL)
        return 0;
    for (int h = 0; h < c->cfg.n_cls; h++)
        if (strcmp(c->head_name[h], name) == 0)
            return h;
    return -1;
}

size_t dr_classifier_n_labels(const dr_classifier *c, int head)
{
    return head >= 0 && head < c->cfg.n_cls ? (size_t)c->cfg.n_labels[head] : 0;
}

const char *dr_classifier_label(const dr_classifier *c, int head, size_t i)
{
    return i < dr_classifier_n_labels(c, head) ? c->labels[head][i] : NULL;
}

int dr_classifier_encode(const dr_classifier *c, const char *text, int32_t *ids)
{
    int LB = c->cfg.length_buckets, n = 0;
    if (LB > 0) {
        int words = dr_tokenizer_count_words(c->tok, text);
        if (words < 0)
            return -1;
        int b = words / 2;
        ids[n++] = c->cfg.vocab_size - LB + (b < LB - 1 ? b : LB - 1);
    }
    int m = dr_tokenizer_encode(c->tok, text, ids + n, c->cfg.max_len - n);
    if (m < 0)
        return -1;
    n += m;
    for (int i = 0; i < n; i++)
        if (ids[i] >= c->cfg.vocab_size)
            ids[i] = DR_TOK_PAD; /* unreachable for a consistent file; keeps us in bounds */
    if (n == 0)
        ids[n++] = DR_TOK_PAD;
    return n;
}

void dr_classifier_add_wide(const dr_classifier *c, int head, const uint32_t *fidx,
                            const float *fval, int nf, float *logits)
{
    if (c->cfg.wide_bits <= 0)
        return;
    size_t H = (size_t)1 << c->cfg.wide_bits;
    const float *w = c->p.wide_w[head];
    for (int k = 0; k < c->cfg.n_labels[head]; k++) {
        const float *row = w + (size_t)k * H;
        float s = 0.0f;
        for (int i = 0; i < nf; i++)
            s += fval[i] * row[fidx[i]];
        logits[k] += s;
    }
}

void dr_classifier_wide_backward(const dr_classifier *c, int head, const uint32_t *fidx,
                                 const float *fval, int nf, const float *dlogits, float *gw)
{
    if (c->cfg.wide_bits <= 0)
        return;
    size_t H = (size_t)1 << c->cfg.wide_bits;
    for (int k = 0; k < c->cfg.n_labels[head]; k++) {
        float *gk = gw + (size_t)k * H;
        for (int i = 0; i < nf; i++)
            gk[fidx[i]] += dlogits[k] * fval[i];
    }
}

void dr_classifier_probs_ids(const dr_classifier *c, int head, const int32_t *ids, int len,
                             const uint32_t *fidx, const float *fval, int nf,
                             dr_t5_acts *acts, float *probs)
{
    dr_t5_forward(&c->cfg, &c->p, c->rel_bucket, ids, &len, 1, len, false, 0.0f, NULL, acts);
    int K = c->cfg.n_labels[head];
    float *lg = acts->logits + dr_t5_logit_offset(&c->cfg, head);
    dr_classifier_add_wide(c, head, fidx, fval, nf, lg);
    float mx = lg[0], sum = 0.0f;
    for (int k = 1; k < K; k++)
        mx = lg[k] > mx ? lg[k] : mx;
    for (int k = 0; k < K; k++) {
        probs[k] = expf(lg[k] - mx);
        sum += probs[k];
    }
    for (int k = 0; k < K; k++)
        probs[k] /= sum;
}

int dr_classifier_predict(const dr_classifier *c, int head, const char *text, float *probs,
                          dynrag_error *err)
{
    if (head < 0 || head >= c->cfg.n_cls)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "no head %d (the model has %d)", head,
                          c->cfg.n_cls);
    if (text == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "text is NULL");
    int32_t ids_small[256];
    int32_t *ids = c->cfg.max_len <= 256 ? ids_small : dr_malloc((size_t)c->cfg.max_len * 4);
    dr_t5_acts acts;
    if (!ids)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    uint32_t *fidx = NULL;
    float *fval = NULL;
    int nf = 0, rc = DYNRAG_OK;
    if (c->cfg.wide_bits > 0) {
        fidx = dr_malloc(DR_WIDE_MAX_FEATURES * sizeof(*fidx));
        fval = dr_malloc(DR_WIDE_MAX_FEATURES * sizeof(*fval));
        nf = fidx && fval ? dr_wide_features(c->tok, text, c->cfg.wide_bits, fidx, fval) : -1;
        if (nf < 0)
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    int len = rc == DYNRAG_OK ? dr_classifier_encode(c, text, ids) : 0;
    if (len < 0)
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    if (rc == DYNRAG_OK && (rc = dr_t5_acts_alloc(&c->cfg, 1, len, false, &acts, err)) == DYNRAG_OK) {
        dr_classifier_probs_ids(c, head, ids, len, fidx, fval, nf, &acts, probs);
        dr_t5_acts_free(&acts);
    }
    dr_free(fidx);
    dr_free(fval);
    if (ids != ids_small)
        dr_free(ids);
    return rc;
}

/* ---- public API ---------------------------------------------------------- */

int dynrag_classifier_open(const char *path, dynrag_classifier **out, dynrag_error *err)
{
    return dr_classifier_load(path, (dr_classifier **)out, err);
}

void dynrag_classifier_close(dynrag_classifier *c) { dr_classifier_free((dr_classifier *)c); }

int dynrag_classifier_head(const dynrag_classifier *c, const char *name)
{
    return dr_classifier_head((const dr_classifier *)c, name);
}

int dynrag_classifier_n_heads(const dynrag_classifier *c)
{
    return ((const dr_classifier *)c)->cfg.n_cls;
}

const char *dynrag_classifier_head_name(const dynrag_classifier *c, int head)
{
    const dr_classifier *m = (const dr_classifier *)c;
    return head >= 0 && head < m->cfg.n_cls ? m->head_name[head] : NULL;
}

size_t dynrag_classifier_n_labels(const dynrag_classifier *c, int head)
{
    return dr_classifier_n_labels((const dr_classifier *)c, head);
}

const char *dynrag_classifier_label(const dynrag_classifier *c, int head, size_t i)
{
    return dr_classifier_label((const dr_classifier *)c, head, i);
}

const char *dynrag_classifier_provenance(const dynrag_classifier *c)
{
    return ((const dr_classifier *)c)->provenance;
}

int dynrag_classifier_predict(const dynrag_classifier *c, int head, const char *text,
                              float *probs, dynrag_error *err)
{
    return dr_classifier_predict((const dr_classifier *)c, head, text, probs, err);
}

void dynrag_eval_report_free(dynrag_eval_report *r)
{
    if (!r)
        return;
    dr_free(r->recall);
    dr_free(r->precision);
    dr_free(r->f1);
    dr_free(r->confusion);
    dr_free(r);
}

int dynrag_classifier_eval(const dynrag_classifier *pc, int head, const char *data_path,
                           dynrag_eval_report **out, dynrag_error *err)
{
    const dr_classifier *c = (const dr_classifier *)pc;
    dr_labelled_set *set = NULL;
    dynrag_eval_report *r = NULL;
    float probs[DR_T5_MAX_LABELS];
    int rc;
    *out = NULL;
    if (head < 0 || head >= c->cfg.n_cls)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "no head %d", head);
    if ((rc = dr_labelled_load(data_path, &set, err)) != DYNRAG_OK)
        return rc;
    size_t K = (size_t)c->cfg.n_labels[head];
    r = dr_calloc(1, sizeof(*r));
    if (r) {
        r->n_labels = K;
        r->recall = dr_calloc(K, sizeof(double));
        r->precision = dr_calloc(K, sizeof(double));
        r->f1 = dr_calloc(K, sizeof(double));
        r->confusion = dr_calloc(K * K, sizeof(uint64_t));
    }
    if (!r || !r->recall || !r->precision || !r->f1 || !r->confusion) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < set->n; i++) {
        int truth = -1;
        for (size_t k = 0; k < K; k++)
            if (strcmp(c->labels[head][k], set->label[i]) == 0)
                truth = (int)k;
        if (truth < 0) {
            r->n_skipped++;
            continue;
        }
        if ((rc = dr_classifier_predict(c, head, set->text[i], probs, err)) != DYNRAG_OK)
            goto cleanup;
        size_t best = 0;
        for (size_t k = 1; k < K; k++)
            if (probs[k] > probs[best])
                best = k;
        r->confusion[(size_t)truth * K + best]++;
        r->n++;
    }
    uint64_t correct = 0;
    size_t present = 0;
    for (size_t k = 0; k < K; k++) {
        uint64_t tp = r->confusion[k * K + k], row = 0, col = 0;
        for (size_t j = 0; j < K; j++) {
            row += r->confusion[k * K + j];
            col += r->confusion[j * K + k];
        }
        correct += tp;
        r->recall[k] = row ? (double)tp / (double)row : 0.0;
        r->precision[k] = col ? (double)tp / (double)col : 0.0;
        double s = r->recall[k] + r->precision[k];
        r->f1[k] = s > 0 ? 2 * r->recall[k] * r->precision[k] / s : 0.0;
        if (row) { /* macro-F1 over the labels present in the data */
            r->macro_f1 += r->f1[k];
            present++;
        }
    }
    r->macro_f1 = present ? r->macro_f1 / (double)present : 0.0;
    r->accuracy = r->n ? (double)correct / (double)r->n : 0.0;
    *out = r;
    r = NULL;
cleanup:
    dynrag_eval_report_free(r);
    dr_labelled_free(set);
    return rc;
}
