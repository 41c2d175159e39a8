/* safetensors.c - validated safetensors reader (mmap) and writer. */
#include "nn/safetensors.h"

#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct st_meta {
    char *key;
    char *value;
} st_meta;

struct dr_st_file {
    void *map;          /* mmap'ed file (NULL when parsing a borrowed buffer) */
    size_t map_len;
    dr_st_tensor *t;
    size_t n;
    st_meta *meta;
    size_t n_meta;
};

static const struct {
    const char *name;
    dr_st_dtype dtype;
    unsigned size;
} dtypes[] = {
    {"F64", DR_ST_F64, 8}, {"F32", DR_ST_F32, 4}, {"F16", DR_ST_F16, 2},
    {"BF16", DR_ST_BF16, 2}, {"I64", DR_ST_I64, 8}, {"I32", DR_ST_I32, 4},
    {"I16", DR_ST_I16, 2}, {"I8", DR_ST_I8, 1}, {"U8", DR_ST_U8, 1},
    {"BOOL", DR_ST_BOOL, 1},
};

static const char *dtype_name(dr_st_dtype d)
{
    for (size_t i = 0; i < DR_ARRAY_LEN(dtypes); i++)
        if (dtypes[i].dtype == d)
            return dtypes[i].name;
    return "?";
}

static uint64_t read_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int cmp_begin(const void *a, const void *b)
{
    const dr_st_tensor *x = *(const dr_st_tensor *const *)a, *y = *(const dr_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

static int cmp_name(const void *a, const void *b)
{
    const dr_st_tensor *x = *(const dr_st_tensor *const *)a, *y = *(const dr_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Reads a JSON number that must be an integer in [0, 2^53]. */
static bool json_u64(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return false;
    double v = j->valuedouble;
    if (!isfinite(v) || v < 0 || v > 9007199254740992.0 || v != floor(v))
        return false;
    *out = (uint64_t)v;
    return true;
}

static int parse_meta(dr_st_file *f, const cJSON *m, dynrag_error *err)
{
    if (!cJSON_IsObject(m))
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "__metadata__ is not an object");
    size_t n = 0;
    for (const cJSON *c = m->child; c; c = c->next)
        n++;
    f->meta = dr_calloc(n ? n : 1, sizeof(*f->meta));
    if (!f->meta)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    for (const cJSON *c = m->child; c; c = c->next) {
        if (!cJSON_IsString(c) || c->string == NULL)
            return dr_err_set(err, DYNRAG_ERR_FORMAT, "__metadata__ value of '%s' is not a string",
                              c->string ? c->string : "?");
        st_meta *e = &f->meta[f->n_meta++];
        e->key = dr_strdup(c->string);
        e->value = dr_strdup(c->valuestring);
        if (!e->key || !e->value)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    }
    return DYNRAG_OK;
}

static int parse_tensor(dr_st_tensor *t, const cJSON *j, uint64_t data_len, dynrag_error *err)
{
    const char *nm = t->name;
    if (!cJSON_IsObject(j))
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "tensor '%s': entry is not an object", nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(dt))
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "tensor '%s': missing or non-string dtype", nm);
    unsigned esize = 0;
    for (size_t i = 0; i < DR_ARRAY_LEN(dtypes); i++)
        if (strcmp(dt->valuestring, dtypes[i].name) == 0) {
            t->dtype = dtypes[i].dtype;
            esize = dtypes[i].size;
        }
    if (esize == 0)
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "tensor '%s': unknown dtype '%.32s'", nm,
                          dt->valuestring);
    if (!cJSON_IsArray(sh))
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "tensor '%s': missing or non-array shape", nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > DR_ST_MAX_DIMS)
        return dr_err_set(err, DYNRAG_ERR_FORMAT, "tensor '%s': %d dimensions (max %d)", nm, nd,
                          DR_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int k = 0;
    for (const cJSON *d = sh->child; d; d = d->next, k++) {
        if (!json_u64(d, &t->shape[k]))
            return dr_err_set(err, DYNRAG_ERR_FORMAT,
                              "tensor '%s': shape[%d] is not a non-negative integer", nm, k);
        if (t->shape[k] != 0 && numel > UINT64_MAX / 8 / t->shape[k])
            return dr_err_set(err, DYNRAG_ERR_FORMAT, "tensor '%s': shape overflows", nm);
        numel *= t->shape[k];
    }
    t->numel = numel;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_u64(off->child, &t->begin) ||
        !json_u64(off->child->next, &t->end))
        return dr_err_set(err, DYNRAG_ERR_FORMAT,
                          "tensor '%s': data_offsets must be [begin, end] integers", nm);
    if (t->begin > t->end || t->end > data_len)
        return dr_err_set(err, DYNRAG_ERR_FORMAT,
                          "tensor '%s': data_offsets [%llu, %llu] outside the data area of %llu "
                          "bytes",
                          nm, (unsigned long long)t->begin, (unsigned long long)t->end,
                          (unsigned long long)data_len);
    if (t->end - t->begin != numel * esize)
        return dr_err_set(err, DYNRAG_ERR_FORMAT,
                          "tensor '%s': %llu bytes at data_offsets but shape x %s needs %llu", nm,
                          (unsigned long long)(t->end - t->begin), dt->valuestring,
                          (unsigned long long)(numel * esize));
    return DYNRAG_OK;
}

int dr_st_parse(const void *buf, size_t len, dr_st_file **out, dynrag_error *err)
{
    const uint8_t *p = buf;
    dr_st_file *f = NULL;
    cJSON *root = NULL;
    dr_st_tensor **order = NULL;
    int rc = DYNRAG_OK;
    *out = NULL;
    if (len < 8) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "file of %zu bytes is too short for a header "
                        "length (8 bytes)", len);
        goto cleanup;
    }
    uint64_t hlen = read_le64(p);
    if (hlen > DR_ST_MAX_HEADER) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "header length %llu exceeds the limit of %llu bytes",
                        (unsigned long long)hlen, (unsigned long long)DR_ST_MAX_HEADER);
        goto cleanup;
    }
    if (hlen > len - 8) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                        "header length %llu is larger than the file (%zu bytes): truncated?",
                        (unsigned long long)hlen, len);
        goto cleanup;
    }
    if (hlen < 2) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "header of %llu bytes cannot hold a JSON object",
                        (unsigned long long)hlen);
        goto cleanup;
    }
    size_t bad = 0;
    if (!dr_utf8_valid((const char *)p + 8, (size_t)hlen, &bad)) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "header is not valid UTF-8 at byte %zu", 8 + bad);
        goto cleanup;
    }
    unsigned long failed = dr_alloc_failures();
    root = cJSON_ParseWithLength((const char *)p + 8, (size_t)hlen);
    if (!root && dr_alloc_failures() != failed) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory reading the header");
        goto cleanup;
    }
    if (!root || !cJSON_IsObject(root)) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "header is not a JSON object");
        goto cleanup;
    }
    f = dr_calloc(1, sizeof(*f));
    if (!f) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    uint64_t data_len = (uint64_t)len - 8 - hlen;
    const uint8_t *data = p + 8 + hlen;
    size_t n = 0;
    for (const cJSON *c = root->child; c; c = c->next)
        n++;
    f->t = dr_calloc(n ? n : 1, sizeof(*f->t));
    order = dr_calloc(n ? n : 1, sizeof(*order));
    if (!f->t || !order) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    bool seen_meta = false;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c->string == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "header entry without a name");
            goto cleanup;
        }
        if (strcmp(c->string, "__metadata__") == 0) {
            if (seen_meta) {
                rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "duplicate __metadata__");
                goto cleanup;
            }
            seen_meta = true;
            if ((rc = parse_meta(f, c, err)) != DYNRAG_OK)
                goto cleanup;
            continue;
        }
        dr_st_tensor *t = &f->t[f->n++];
        t->name = dr_strdup(c->string);
        if (!t->name) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        if ((rc = parse_tensor(t, c, data_len, err)) != DYNRAG_OK)
            goto cleanup;
        t->data = data + t->begin;
        order[f->n - 1] = t;
    }
    /* Names are unique. */
    qsort(order, f->n, sizeof(*order), cmp_name);
    for (size_t i = 1; i < f->n; i++)
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "duplicate tensor '%s'", order[i]->name);
            goto cleanup;
        }
    /* Tensors tile the data area: sorted by begin, each starts where the
     * previous ended (zero-sized tensors may share an offset). */
    qsort(order, f->n, sizeof(*order), cmp_begin);
    uint64_t pos = 0;
    for (size_t i = 0; i < f->n; i++) {
        if (order[i]->begin < pos) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "tensor '%s' overlaps the previous tensor "
                            "(begins at %llu, previous ends at %llu)", order[i]->name,
                            (unsigned long long)order[i]->begin, (unsigned long long)pos);
            goto cleanup;
        }
        if (order[i]->begin > pos) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "hole in the data area before tensor '%s' "
                            "(bytes %llu..%llu unused)", order[i]->name,
                            (unsigned long long)pos, (unsigned long long)order[i]->begin);
            goto cleanup;
        }
        pos = order[i]->end;
    }
    if (pos != data_len) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "data area has %llu bytes but tensors cover %llu "
                        "(trailing garbage or truncated header)",
                        (unsigned long long)data_len, (unsigned long long)pos);
        goto cleanup;
    }
    *out = f;
    f = NULL;
cleanup:
    dr_free(order);
    cJSON_Delete(root);
    dr_st_close(f);
    return rc;
}

int dr_st_open(const char *path, dr_st_file **out, dynrag_error *err)
{
    int fd = -1, rc = DYNRAG_OK;
    void *map = NULL;
    size_t len = 0;
    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto cleanup;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: not a regular file", path);
        goto cleanup;
    }
    len = (size_t)st.st_size;
    if (len < 8) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT, "%s: file of %zu bytes is too short for a "
                        "safetensors header", path, len);
        goto cleanup;
    }
    map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        map = NULL;
        rc = dr_err_set(err, DYNRAG_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        goto cleanup;
    }
    rc = dr_st_parse(map, len, out, err);
    if (rc != DYNRAG_OK) {
        dr_err_prefix(err, "%s", path);
        goto cleanup;
    }
    (*out)->map = map;
    (*out)->map_len = len;
    map = NULL;
cleanup:
    if (map)
        munmap(map, len);
    if (fd >= 0)
        close(fd);
    return rc;
}

void dr_st_close(dr_st_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        dr_free(f->t[i].name);
    dr_free(f->t);
    for (size_t i = 0; i < f->n_meta; i++) {
        dr_free(f->meta[i].key);
        dr_free(f->meta[i].value);
    }
    dr_free(f->meta);
    if (f->map)
        munmap(f->map, f->map_len);
    dr_free(f);
}

size_t dr_st_count(const dr_st_file *f) { return f->n; }
const dr_st_tensor *dr_st_at(const dr_st_file *f, size_t i) { return i < f->n ? &f->t[i] : NULL; }

const dr_st_tensor *dr_st_find(const dr_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0)
            return &f->t[i];
    return NULL;
}

const char *dr_st_meta(const dr_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0)
            return f->meta[i].value;
    return NULL;
}

static void shape_str(char *buf, size_t size, int ndim, const uint64_t *shape)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, size - k, "[");
    for (int i = 0; i < ndim && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%llu", i ? ", " : "",
                              (unsigned long long)shape[i]);
    if (k < size)
        snprintf(buf + k, size - k, "]");
}

int dr_st_check_f32(const dr_st_file *f, const char *name, int ndim, const uint64_t *shape,
                    dynrag_error *err)
{
    const dr_st_tensor *t = dr_st_find(f, name);
    if (!t)
        return dr_err_set(err, DYNRAG_ERR_NOTFOUND, "missing tensor '%s'", name);
    if (t->dtype != DR_ST_F32)
        return dr_err_set(err, DYNRAG_ERR_MISMATCH, "tensor '%s' has dtype %s, expected F32",
                          name, dtype_name(t->dtype));
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char got[128], want[128];
        shape_str(got, sizeof(got), t->ndim, t->shape);
        shape_str(want, sizeof(want), ndim, shape);
        return dr_err_set(err, DYNRAG_ERR_MISMATCH, "tensor '%s' has shape %s, expected %s", name,
                          got, want);
    }
    return DYNRAG_OK;
}

int dr_st_read_f32(const dr_st_file *f, const char *name, int ndim, const uint64_t *shape,
                   float *dst, dynrag_error *err)
{
    int rc = dr_st_check_f32(f, name, ndim, shape, err);
    if (rc != DYNRAG_OK)
        return rc;
    const dr_st_tensor *t = dr_st_find(f, name);
    /* Bytes are little-endian and possibly unaligned: assemble each float. */
    const uint8_t *p = t->data;
    for (uint64_t i = 0; i < t->numel; i++, p += 4) {
        uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24;
        memcpy(&dst[i], &u, 4);
    }
    return DYNRAG_OK;
}

/* ---- writer ----------------------------------------------------------- */

typedef struct st_wtensor {
    char *name;
    int ndim;
    uint64_t shape[DR_ST_MAX_DIMS];
    uint64_t numel;
    const float *data;
} st_wtensor;

struct dr_st_writer {
    st_wtensor *t;
    size_t n, alloc;
    cJSON *meta;
};

dr_st_writer *dr_st_writer_new(void)
{
    dr_st_writer *w = dr_calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->meta = cJSON_CreateObject();
    if (!w->meta) {
        dr_free(w);
        return NULL;
    }
    return w;
}

void dr_st_writer_free(dr_st_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        dr_free(w->t[i].name);
    dr_free(w->t);
    cJSON_Delete(w->meta);
    dr_free(w);
}

int dr_st_writer_add_f32(dr_st_writer *w, const char *name, int ndim, const uint64_t *shape,
                         const float *data, dynrag_error *err)
{
    if (ndim < 0 || ndim > DR_ST_MAX_DIMS || strcmp(name, "__metadata__") == 0)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "tensor '%s': bad name or rank", name);
    if (w->n == w->alloc) {
        size_t na = w->alloc ? w->alloc * 2 : 32;
        st_wtensor *nt = dr_realloc(w->t, na * sizeof(*nt));
        if (!nt)
            return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        w->t = nt;
        w->alloc = na;
    }
    st_wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof(*t));
    t->name = dr_strdup(name);
    if (!t->name)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= shape[i];
    }
    t->data = data;
    w->n++;
    return DYNRAG_OK;
}

int dr_st_writer_meta(dr_st_writer *w, const char *key, const char *value, dynrag_error *err)
{
    cJSON_DeleteItemFromObjectCaseSensitive(w->meta, key);
    if (!cJSON_AddStringToObject(w->meta, key, value))
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
    return DYNRAG_OK;
}

int dr_st_writer_serialize(dr_st_writer *w, uint8_t **out, size_t *out_len, dynrag_error *err)
{
    cJSON *hdr = cJSON_CreateObject();
    char *json = NULL;
    uint8_t *buf = NULL;
    int rc = DYNRAG_OK;
    if (!hdr)
        goto nomem;
    if (cJSON_GetArraySize(w->meta) > 0) {
        cJSON *m = cJSON_Duplicate(w->meta, 1);
        if (!m || !cJSON_AddItemToObject(hdr, "__metadata__", m)) {
            cJSON_Delete(m);
            goto nomem;
        }
    }
    uint64_t pos = 0;
    for (size_t i = 0; i < w->n; i++) {
        st_wtensor *t = &w->t[i];
        cJSON *e = cJSON_AddObjectToObject(hdr, t->name);
        if (!e || !cJSON_AddStringToObject(e, "dtype", "F32"))
            goto nomem;
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        if (!sh)
            goto nomem;
        for (int d = 0; d < t->ndim; d++) {
            cJSON *v = cJSON_CreateNumber((double)t->shape[d]);
            if (!v || !cJSON_AddItemToArray(sh, v)) {
                cJSON_Delete(v);
                goto nomem;
            }
        }
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON *b = cJSON_CreateNumber((double)pos);
        cJSON *en = cJSON_CreateNumber((double)(pos + t->numel * 4));
        if (!off || !b || !en) {
            cJSON_Delete(b);
            cJSON_Delete(en);
            goto nomem;
        }
        cJSON_AddItemToArray(off, b);
        cJSON_AddItemToArray(off, en);
        pos += t->numel * 4;
    }
    json = cJSON_PrintUnformatted(hdr);
    if (!json)
        goto nomem;
    size_t jl = strlen(json);
    size_t hlen = jl + ((8 - (8 + jl) % 8) % 8); /* pad with spaces: data 8-aligned */
    size_t total = 8 + hlen + (size_t)pos;
    buf = dr_malloc(total);
    if (!buf)
        goto nomem;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(((uint64_t)hlen >> (8 * i)) & 0xff);
    memcpy(buf + 8, json, jl);
    memset(buf + 8 + jl, ' ', hlen - jl);
    uint8_t *d = buf + 8 + hlen;
    for (size_t i = 0; i < w->n; i++) {
        for (uint64_t k = 0; k < w->t[i].numel; k++) {
            uint32_t u;
            memcpy(&u, &w->t[i].data[k], 4);
            d[0] = (uint8_t)u;
            d[1] = (uint8_t)(u >> 8);
            d[2] = (uint8_t)(u >> 16);
            d[3] = (uint8_t)(u >> 24);
            d += 4;
        }
    }
    *out = buf;
    *out_len = total;
    buf = NULL;
    goto cleanup;
nomem:
    rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory serialising safetensors");
cleanup:
    dr_free(buf);
    dr_free(json);
    cJSON_Delete(hdr);
    return rc;
}

int dr_st_writer_save(dr_st_writer *w, const char *path, dynrag_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = dr_st_writer_serialize(w, &buf, &len, err);
    if (rc == DYNRAG_OK)
        rc = dr_write_file_atomic(path, buf, len, err);
    dr_free(buf);
    return rc;
}
