/*
 * loader.c - YAML pipeline file to a validated dynrag_pipeline.
 *
 * The load runs in passes, each reporting every problem it finds:
 *   1. size cap, bytes and YAML syntax (yaml.c) -> a tree with positions;
 *   2. key pass: non-string keys, duplicate keys, ${VAR} expansion of every
 *      scalar value (expand.c);
 *   3. the walk below: top-level fields, endpoints, stages, options, routers,
 *      each mapping checked against the schema table (schema.c);
 *   4. per-stage cross-field checks; absent stages get their defaults.
 * Any diagnostic makes the load fail with DYNRAG_ERR_PARSE.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include "generate/prompt.h"
#include "core/alloc.h"
#include "pipeline/internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const stage_names[DR_STAGE_COUNT] = {
    "retrieval_mode", "embedder", "index", "context", "prompt", "generator",
};

/* The option used for a stage absent from the file. */
static const char *const default_kinds[DR_STAGE_COUNT] = {
    "single", "builtin", "bm25", "topk", "template", "extractive",
};

const char *dr_stage_name(dr_stage_id id)
{
    if ((int)id < 0 || id >= DR_STAGE_COUNT)
        return "unknown";
    return stage_names[id];
}

int dr_stage_from_name(const char *name)
{
    for (int i = 0; name != NULL && i < DR_STAGE_COUNT; i++)
        if (strcmp(stage_names[i], name) == 0)
            return i;
    return -1;
}

int dr_stage_find_option(const dr_stage *stage, const char *name)
{
    if (stage == NULL || name == NULL)
        return -1;
    for (size_t i = 0; i < stage->n_options; i++)
        if (stage->options[i].name && strcmp(stage->options[i].name, name) == 0)
            return (int)i;
    return -1;
}

char *dr_pipeline_resolve_path(const dynrag_pipeline *p, const char *path)
{
    if (path == NULL)
        return NULL;
    const char *base = p ? p->base_dir : NULL;
    if (path[0] == '/' || base == NULL || base[0] == '\0' || strcmp(base, ".") == 0)
        return dr_strdup(path);
    size_t bl = strlen(base);
    return dr_asprintf("%s%s%s", base, base[bl - 1] == '/' ? "" : "/", path);
}

double dr_param_num(const cJSON *params, const char *key, double dflt)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(params, key);
    return cJSON_IsNumber(j) ? j->valuedouble : dflt;
}

int dr_param_int(const cJSON *params, const char *key, int dflt)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(params, key);
    if (!cJSON_IsNumber(j) || !(j->valuedouble >= INT_MIN && j->valuedouble <= INT_MAX))
        return dflt;
    return (int)j->valuedouble;
}

bool dr_param_bool(const cJSON *params, const char *key, bool dflt)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(params, key);
    return cJSON_IsBool(j) ? cJSON_IsTrue(j) : dflt;
}

const char *dr_param_str(const cJSON *params, const char *key, const char *dflt)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(params, key);
    return cJSON_IsString(j) ? j->valuestring : dflt;
}

/* ---- freeing ------------------------------------------------------------------- */

static void stage_clear(dr_stage *s)
{
    for (size_t i = 0; i < s->n_options; i++) {
        dr_free(s->options[i].name);
        dr_free(s->options[i].kind);
        dr_free(s->options[i].description);
        cJSON_Delete(s->options[i].params);
        dr_free(s->options[i].values);
    }
    dr_free(s->options);
    dr_free(s->router.type);
    cJSON_Delete(s->router.params);
    memset(s, 0, sizeof(*s));
}

void dynrag_pipeline_free(dynrag_pipeline *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < DR_STAGE_COUNT; i++)
        stage_clear(&p->stages[i]);
    for (size_t i = 0; i < p->n_endpoints; i++) {
        dr_free(p->endpoints[i].name);
        dr_free(p->endpoints[i].base_url);
        dr_free(p->endpoints[i].model);
        dr_free(p->endpoints[i].api_key_env);
    }
    dr_free(p->endpoints);
    dr_free(p->path);
    dr_free(p->base_dir);
    dr_free(p->name);
    dr_free(p->description);
    dr_free(p->index_dir);
    dr_free(p->log_path);
    dr_free(p);
}

const char *dynrag_pipeline_name(const dynrag_pipeline *p)
{
    return p ? p->name : NULL;
}

const char *dynrag_pipeline_index_dir(const dynrag_pipeline *p)
{
    return p ? p->index_dir : NULL;
}

/* ---- pass 2: keys and ${VAR} -------------------------------------------------- */

typedef struct key_ref {
    const dr_ynode *key;
    size_t idx;
} key_ref;

static int key_ref_cmp(const void *a, const void *b)
{
    const key_ref *x = a, *y = b;
    int c = strcmp(x->key->raw, y->key->raw);
    if (c != 0)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static void path_push(char *path, size_t size, size_t *len, const char *fmt, const char *seg,
                      size_t idx)
{
    size_t l = *len;
    if (l >= size - 1)
        return;
    if (fmt == NULL) /* a key */
        snprintf(path + l, size - l, "%s%s", l ? "." : "", seg);
    else
        snprintf(path + l, size - l, "[%zu]", idx);
    *len = strlen(path);
}

/*
 * Walks the tree once: reports non-scalar and duplicate keys (every later
 * occurrence, with the line of the first), expands ${VAR} in every scalar
 * value (marking failures `bad` so later passes stay quiet). Recursion is
 * bounded by DR_YAML_MAX_DEPTH.
 */
static void key_pass(dr_ynode *n, char *path, size_t size, size_t len, dynrag_diags *d,
                     bool *nomem)
{
    if (n->type == DR_YN_SCALAR) {
        if (n->value != NULL)
            return;
        if (strchr(n->raw, '$') == NULL) {
            n->value = n->raw;
            return;
        }
        /* A value built by ${VAR} is typed by its expanded text even when
         * quoted (flow style needs quotes around ${...}): "${K:-5}" is 5. */
        if (strstr(n->raw, "${") != NULL && !n->force_str)
            n->plain = true;
        char msg[256];
        n->value = dr_env_expand(n->raw, msg, sizeof(msg));
        if (n->value == NULL) {
            dr_diags_add(d, n->line, n->col, path, "%s", msg);
            n->value = n->raw;
            n->bad = true;
        }
        return;
    }
    if (n->type == DR_YN_SEQ) {
        for (size_t i = 0; i < n->n; i++) {
            size_t l = len;
            path_push(path, size, &l, "[]", NULL, i);
            key_pass(n->kids[i], path, size, l, d, nomem);
            path[len] = '\0';
        }
        return;
    }
    size_t pairs = n->n / 2;
    key_ref *refs = pairs ? dr_malloc(pairs * sizeof(*refs)) : NULL;
    if (pairs && refs == NULL) {
        *nomem = true;
        return;
    }
    size_t nk = 0;
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        dr_ynode *k = n->kids[i];
        if (k->type != DR_YN_SCALAR) {
            dr_diags_add(d, k->line, k->col, path, "mapping keys must be plain strings");
            k->bad = true;
            continue;
        }
        k->value = k->raw;
        refs[nk].key = k;
        refs[nk].idx = i;
        nk++;
    }
    if (nk > 1)
        qsort(refs, nk, sizeof(*refs), key_ref_cmp);
    for (size_t i = 1; i < nk; i++) {
        size_t first = i - 1;
        while (i < nk && strcmp(refs[i].key->raw, refs[first].key->raw) == 0) {
            const dr_ynode *k = refs[i].key;
            size_t l = len;
            path_push(path, size, &l, NULL, k->raw, 0);
            dr_diags_add(d, k->line, k->col, path, "duplicate key '%.64s' (first at line %d)",
                         k->raw, refs[first].key->line);
            path[len] = '\0';
            i++;
        }
    }
    dr_free(refs);
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        size_t l = len;
        if (n->kids[i]->type == DR_YN_SCALAR)
            path_push(path, size, &l, NULL, n->kids[i]->raw, 0);
        key_pass(n->kids[i + 1], path, size, l, d, nomem);
        path[len] = '\0';
    }
}

/* ---- pass 3: the walk ------------------------------------------------------------ */

/* Reports every key of map `n` that is not in allowed[]. */
static void check_keys(dr_vctx *v, const dr_ynode *n, const char *path,
                       const char *const *allowed, size_t na)
{
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        const dr_ynode *k = n->kids[i];
        if (k->type != DR_YN_SCALAR)
            continue;
        bool ok = false;
        for (size_t a = 0; a < na && !ok; a++)
            ok = strcmp(allowed[a], k->raw) == 0;
        if (!ok) {
            char sub[512], dym[128];
            dr_path_join(sub, sizeof(sub), path, k->raw);
            dr_diags_add(v->diags, k->line, k->col, sub, "unknown key '%.64s'%s", k->raw,
                         dr_did_you_mean(dym, sizeof(dym), k->raw, allowed, na));
        }
    }
}

/* [A-Za-z0-9_.-]{1,128}; with slash, '/' too (option names may be model
 * ids such as "meta-llama/Meta-Llama-3-8B"). */
static bool name_ok_ex(const char *s, bool slash)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-' || (slash && c == '/')))
            return false;
    }
    return n > 0 && n <= 128;
}

static bool name_ok(const char *s)
{
    return name_ok_ex(s, false);
}

static bool env_name_ok(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_' ||
              (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

/* A string field; reports a type error and returns NULL when not a string. */
static const char *get_str(dr_vctx *v, const dr_ynode *n, const char *path)
{
    if (n == NULL || n->bad)
        return NULL;
    if (n->type != DR_YN_SCALAR || dr_ynode_is_null(n)) {
        char got[96];
        dr_diags_add(v->diags, n->line, n->col, path, "expected a string, got %s",
                     dr_ynode_describe(n, got, sizeof(got)));
        return NULL;
    }
    return n->value;
}

/* A name matching [A-Za-z0-9_.-]{1,128} ('/' too for option names); reports
 * and returns NULL otherwise. */
static const char *get_name(dr_vctx *v, const dr_ynode *n, const char *path, const char *what)
{
    const char *s = get_str(v, n, path);
    bool slash = strcmp(what, "option name") == 0;
    if (s != NULL && !name_ok_ex(s, slash)) {
        dr_diags_add(v->diags, n->line, n->col, path,
                     "invalid %s '%.64s': use 1 to 128 letters, digits, '_', '.'%s or '-'", what,
                     s, slash ? ", '/'" : "");
        return NULL;
    }
    return s;
}

static char *dup_or_nomem(dr_vctx *v, const char *s)
{
    char *c = dr_strdup(s);
    if (s != NULL && c == NULL)
        v->nomem = true;
    return c;
}

/* True when n is a mapping; otherwise reports "expected a mapping, got
 * ..." at n's position under path and returns false. */
static bool want_map(dr_vctx *v, const dr_ynode *n, const char *path)
{
    if (n->type == DR_YN_MAP)
        return true;
    char got[96];
    dr_diags_add(v->diags, n->line, n->col, path, "expected a mapping, got %s",
                 dr_ynode_describe(n, got, sizeof(got)));
    return false;
}

/* What is wrong with an endpoint's base_url, or NULL when it can work ("" is
 * allowed: the endpoint is then not configured). It must be http:// or
 * https://, name a host, and give a port, when it gives one, in 1..65535. */
static const char *base_url_problem(const char *url)
{
    if (url[0] == '\0')
        return NULL;
    const char *host;
    if (strncasecmp(url, "http://", 7) == 0)
        host = url + 7;
    else if (strncasecmp(url, "https://", 8) == 0)
        host = url + 8;
    else
        return "expected an http:// or https:// URL (e.g. http://127.0.0.1:8000/v1)";
    size_t hl = strcspn(host, "/?#");
    const char *at = memchr(host, '@', hl);
    if (at != NULL) {
        hl -= (size_t)(at + 1 - host);
        host = at + 1;
    }
    const char *colon = NULL;
    if (host[0] == '[') { /* [IPv6]:port */
        const char *rb = memchr(host, ']', hl);
        if (rb == NULL || rb == host + 1)
            return "bad IPv6 host (expected [address])";
        colon = rb + 1 < host + hl && rb[1] == ':' ? rb + 1 : NULL;
        if (rb + 1 < host + hl && rb[1] != ':')
            return "text after the IPv6 host";
    } else {
        colon = memchr(host, ':', hl);
        if ((colon ? (size_t)(colon - host) : hl) == 0)
            return "no host name";
    }
    for (size_t i = 0; i < hl; i++)
        if ((unsigned char)host[i] <= ' ')
            return "white space or a control character in the host";
    if (colon != NULL) {
        const char *p = colon + 1, *end = host + hl;
        long port = 0;
        if (p == end)
            return "':' without a port";
        for (; p < end; p++) {
            if (*p < '0' || *p > '9')
                return "the port is not a number";
            port = port * 10 + (*p - '0');
            if (port > 65535)
                return "the port is out of range (1..65535)";
        }
        if (port == 0)
            return "the port is out of range (1..65535)";
    }
    return NULL;
}

static void load_endpoints(dr_vctx *v, dynrag_pipeline *p, const dr_ynode *n)
{
    if (n->bad || dr_ynode_is_null(n))
        return;
    if (!want_map(v, n, "endpoints"))
        return;
    size_t cap = n->n / 2;
    if (cap > 64) {
        dr_diags_add(v->diags, n->line, n->col, "endpoints", "too many endpoints (limit 64)");
        return;
    }
    p->endpoints = dr_calloc(cap ? cap : 1, sizeof(*p->endpoints));
    if (p->endpoints == NULL) {
        v->nomem = true;
        return;
    }
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        const dr_ynode *k = n->kids[i], *val = n->kids[i + 1];
        if (k->type != DR_YN_SCALAR)
            continue;
        char path[512];
        dr_path_join(path, sizeof(path), "endpoints", k->raw);
        if (!name_ok(k->raw)) {
            dr_diags_add(v->diags, k->line, k->col, path,
                         "invalid endpoint name '%.64s': use letters, digits, '_', '.' or '-'",
                         k->raw);
            continue;
        }
        bool dup = false;
        for (size_t e = 0; e < p->n_endpoints; e++)
            dup = dup || strcmp(p->endpoints[e].name, k->raw) == 0;
        if (dup)
            continue; /* reported by the key pass */
        if (!val->bad && !want_map(v, val, path))
            continue;
        cJSON *j = dr_schema_validate(v, "endpoint", val, val->line, val->col, path);
        dr_endpoint *ep = &p->endpoints[p->n_endpoints++];
        ep->name = dup_or_nomem(v, k->raw);
        if (ep->name == NULL) { /* v->nomem: the load fails; an entry needs its name */
            p->n_endpoints--;
            cJSON_Delete(j);
            continue;
        }
        ep->base_url = dup_or_nomem(v, dr_param_str(j, "base_url", ""));
        ep->model = dup_or_nomem(v, dr_param_str(j, "model", ""));
        ep->api_key_env = dup_or_nomem(v, dr_param_str(j, "api_key_env", NULL));
        ep->timeout_s = dr_param_num(j, "timeout_s", 60);
        ep->max_retries = dr_param_int(j, "max_retries", 3);
        ep->configured = ep->base_url && ep->model && ep->base_url[0] && ep->model[0];
        ep->line = k->line;
        ep->col = k->col;
        cJSON_Delete(j);
        const dr_ynode *bu = dr_ymap_get(val, "base_url");
        const char *why = ep->base_url ? base_url_problem(ep->base_url) : NULL;
        if (why != NULL && bu != NULL) {
            char sub[512];
            dr_path_join(sub, sizeof(sub), path, "base_url");
            dr_diags_add(v->diags, bu->line, bu->col, sub, "'%.200s': %s", ep->base_url, why);
        }
        const dr_ynode *ak = dr_ymap_get(val, "api_key_env");
        if (ep->api_key_env != NULL && !env_name_ok(ep->api_key_env)) {
            char sub[512];
            dr_path_join(sub, sizeof(sub), path, "api_key_env");
            dr_diags_add(v->diags, ak->line, ak->col, sub,
                         "must be the name of an environment variable holding the key (e.g. "
                         "DYNRAG_LLM_API_KEY), never the key itself");
        }
    }
}

static const dr_endpoint *find_endpoint(const dynrag_pipeline *p, const char *name)
{
    for (size_t i = 0; i < p->n_endpoints; i++)
        if (strcmp(p->endpoints[i].name, name) == 0)
            return &p->endpoints[i];
    return NULL;
}

/* Reads one option's fields except params (which need every option name). */
static void load_option(dr_vctx *v, dynrag_pipeline *p, dr_stage *st, size_t idx,
                        const dr_ynode *n, const char *path)
{
    static const char *const keys[] = {"name",     "kind", "params", "endpoint",
                                       "cost",     "quality", "description"};
    dr_option *o = &st->options[idx];
    o->quality = NAN;
    o->line = n->line;
    o->col = n->col;
    if (n->bad)
        return;
    if (!want_map(v, n, path))
        return;
    check_keys(v, n, path, keys, DR_ARRAY_LEN(keys));
    char sub[512];
    const dr_ynode *f = dr_ymap_get(n, "name");
    dr_path_join(sub, sizeof(sub), path, "name");
    if (f == NULL) {
        dr_diags_add(v->diags, n->line, n->col, path, "missing required key 'name'");
    } else {
        const char *name = get_name(v, f, sub, "option name");
        if (name != NULL) {
            int prev = dr_stage_find_option(st, name);
            if (prev >= 0)
                dr_diags_add(v->diags, f->line, f->col, sub,
                             "duplicate option name '%.64s' (first at line %d)", name,
                             st->options[prev].line);
            else
                o->name = dup_or_nomem(v, name);
        }
    }
    f = dr_ymap_get(n, "kind");
    dr_path_join(sub, sizeof(sub), path, "kind");
    if (f == NULL) {
        dr_diags_add(v->diags, n->line, n->col, path, "missing required key 'kind'");
    } else {
        const char *kind = get_str(v, f, sub);
        if (kind != NULL && dr_schema_kind(st->id, kind) == NULL) {
            const char *kinds[16];
            char list[256] = "", dym[128];
            size_t nk = 0;
            for (size_t i = 0; i < dr_n_kind_rows && nk < 16; i++) {
                if (dr_kind_rows[i].stage != st->id)
                    continue;
                kinds[nk] = dr_kind_rows[i].kind;
                size_t l = strlen(list);
                snprintf(list + l, sizeof(list) - l, "%s%s", nk ? ", " : "", kinds[nk]);
                nk++;
            }
            dr_diags_add(v->diags, f->line, f->col, sub,
                         "unknown kind '%.64s' for stage '%s' (expected one of: %s)%s", kind,
                         dr_stage_name(st->id), list,
                         dr_did_you_mean(dym, sizeof(dym), kind, kinds, nk));
        } else if (kind != NULL) {
            o->kind = dup_or_nomem(v, kind);
        }
    }
    f = dr_ymap_get(n, "description");
    dr_path_join(sub, sizeof(sub), path, "description");
    const char *desc = f ? get_str(v, f, sub) : NULL;
    if (desc != NULL)
        o->description = dup_or_nomem(v, desc);
    f = dr_ymap_get(n, "endpoint");
    dr_path_join(sub, sizeof(sub), path, "endpoint");
    const char *ep = f ? get_str(v, f, sub) : NULL;
    if (ep != NULL) {
        o->endpoint = find_endpoint(p, ep);
        if (o->endpoint == NULL) {
            const char *names[64];
            char dym[128];
            for (size_t i = 0; i < p->n_endpoints; i++)
                names[i] = p->endpoints[i].name;
            if (p->n_endpoints == 0)
                dr_diags_add(v->diags, f->line, f->col, sub,
                             "undefined endpoint '%.64s' (no endpoints are declared)", ep);
            else
                dr_diags_add(v->diags, f->line, f->col, sub, "undefined endpoint '%.64s'%s", ep,
                             dr_did_you_mean(dym, sizeof(dym), ep, names, p->n_endpoints));
        }
    }
    o->available = o->endpoint == NULL || o->endpoint->configured;
    f = dr_ymap_get(n, "cost");
    dr_path_join(sub, sizeof(sub), path, "cost");
    cJSON *c = dr_schema_validate(v, "cost", f, n->line, n->col, sub);
    o->cost.usd_per_1k_input = dr_param_num(c, "usd_per_1k_input", 0);
    o->cost.usd_per_1k_output = dr_param_num(c, "usd_per_1k_output", 0);
    o->cost.latency_ms = dr_param_num(c, "latency_ms", 0);
    o->cost.energy_wh = dr_param_num(c, "energy_wh", 0);
    cJSON_Delete(c);
    f = dr_ymap_get(n, "quality");
    dr_path_join(sub, sizeof(sub), path, "quality");
    if (f != NULL && !f->bad) {
        double q;
        char got[96];
        if (!dr_ynode_num(f, &q))
            dr_diags_add(v->diags, f->line, f->col, sub, "expected a number, got %s",
                         dr_ynode_describe(f, got, sizeof(got)));
        else if (q < 0 || q > 1)
            dr_diags_add(v->diags, f->line, f->col, sub, "must be from 0 to 1, got %.40s",
                         f->value);
        else
            o->quality = q;
    }
}

static void load_router(dr_vctx *v, dr_stage *st, const dr_ynode *n, const char *path)
{
    static const char *const keys[] = {"type", "params"};
    dr_router_spec *r = &st->router;
    r->line = n->line;
    r->col = n->col;
    if (n->bad)
        return;
    if (!want_map(v, n, path))
        return;
    check_keys(v, n, path, keys, DR_ARRAY_LEN(keys));
    char sub[512];
    const dr_ynode *t = dr_ymap_get(n, "type");
    dr_path_join(sub, sizeof(sub), path, "type");
    if (t == NULL) {
        dr_diags_add(v->diags, n->line, n->col, path, "missing required key 'type'");
        return;
    }
    const char *type = get_str(v, t, sub);
    if (type == NULL)
        return;
    const dr_router_row *row = dr_schema_router(type);
    if (row == NULL) {
        const char *types[16];
        char dym[128];
        size_t nt = 0;
        for (size_t i = 0; i < dr_n_router_rows && nt < 16; i++)
            types[nt++] = dr_router_rows[i].type;
        dr_diags_add(v->diags, t->line, t->col, sub, "unknown router '%.64s'%s", type,
                     dr_did_you_mean(dym, sizeof(dym), type, types, nt));
        return;
    }
    if (!(row->stage_mask & (1u << st->id))) {
        char list[128] = "";
        for (int s = 0; s < DR_STAGE_COUNT; s++) {
            if (!(row->stage_mask & (1u << s)))
                continue;
            size_t l = strlen(list);
            snprintf(list + l, sizeof(list) - l, "%s%s", l ? ", " : "", stage_names[s]);
        }
        dr_diags_add(v->diags, t->line, t->col, sub,
                     "router '%s' is not allowed on stage '%s' (only on: %s)", type,
                     stage_names[st->id], list);
        return;
    }
    const dr_ynode *pn = dr_ymap_get(n, "params");
    char owner[64];
    dr_pathf(owner, sizeof(owner), "router.%s", type);
    dr_path_join(sub, sizeof(sub), path, "params");
    r->type = dup_or_nomem(v, type);
    r->params = dr_schema_validate(v, owner, pn, n->line, n->col, sub);
}

/* Resolves every option's params into typed values (dr_option_resolve),
 * with presence from the option's `params:` mapping in the YAML tree. */
static int resolve_params(dynrag_pipeline *p, const dr_ynode *root)
{
    const dr_ynode *stages = dr_ymap_get(root, "stages");
    for (int i = 0; i < DR_STAGE_COUNT; i++) {
        dr_stage *st = &p->stages[i];
        const dr_ynode *opts = st->declared
                                   ? dr_ymap_get(dr_ymap_get(stages, stage_names[i]), "options")
                                   : NULL;
        for (size_t j = 0; j < st->n_options; j++) {
            const dr_ynode *pn = NULL;
            if (opts != NULL && opts->type == DR_YN_SEQ && j < opts->n &&
                opts->kids[j]->type == DR_YN_MAP)
                pn = dr_ymap_get(opts->kids[j], "params");
            if (pn != NULL && pn->type != DR_YN_MAP)
                pn = NULL;
            if (st->options[j].params != NULL &&
                dr_option_resolve(&st->options[j], st->id, pn) != DYNRAG_OK)
                return DYNRAG_ERR_NOMEM;
        }
    }
    return DYNRAG_OK;
}

/* Fills an absent stage (or an unusable one) with its default option. */
static int default_stage(dr_vctx *v, dr_stage *st)
{
    st->options = dr_calloc(1, sizeof(*st->options));
    if (st->options == NULL)
        return DYNRAG_ERR_NOMEM;
    st->n_options = 1; /* only once there is an option for stage_clear to free */
    dr_option *o = &st->options[0];
    const char *kind = default_kinds[st->id];
    char owner[64];
    dr_pathf(owner, sizeof(owner), "%s.%s", stage_names[st->id], kind);
    o->name = dr_strdup(kind);
    o->kind = dr_strdup(kind);
    o->params = dr_schema_validate(v, owner, NULL, 0, 0, "");
    o->quality = NAN;
    o->available = true;
    st->fallback = -1;
    st->router.type = dr_strdup("fixed");
    st->router.params = cJSON_CreateObject();
    if (o->name == NULL || o->kind == NULL || o->params == NULL || st->router.type == NULL ||
        st->router.params == NULL || cJSON_AddStringToObject(st->router.params, "option",
                                                             kind) == NULL)
        return DYNRAG_ERR_NOMEM;
    if (st->id == DR_STAGE_PROMPT &&
        cJSON_AddStringToObject(o->params, "template", dr_prompt_default_template) == NULL)
        return DYNRAG_ERR_NOMEM;
    return DYNRAG_OK;
}

static void load_stage(dr_vctx *v, dynrag_pipeline *p, dr_stage *st, const dr_ynode *n,
                       const char *path)
{
    static const char *const keys[] = {"options", "router", "fallback"};
    st->declared = true;
    st->fallback = -1;
    st->line = n->line;
    st->col = n->col;
    if (n->bad)
        return;
    if (!want_map(v, n, path))
        return;
    check_keys(v, n, path, keys, DR_ARRAY_LEN(keys));
    char sub[512];
    const dr_ynode *opts = dr_ymap_get(n, "options");
    dr_path_join(sub, sizeof(sub), path, "options");
    if (opts == NULL) {
        dr_diags_add(v->diags, n->line, n->col, path, "missing required key 'options'");
        return;
    }
    if (opts->bad)
        return;
    if (opts->type != DR_YN_SEQ || opts->n == 0) {
        char got[96];
        dr_diags_add(v->diags, opts->line, opts->col, sub,
                     "expected a list of at least one option, got %s",
                     opts->type == DR_YN_SEQ ? "an empty list"
                                             : dr_ynode_describe(opts, got, sizeof(got)));
        return;
    }
    if (opts->n > DR_MAX_OPTIONS) {
        dr_diags_add(v->diags, opts->line, opts->col, sub,
                     "too many options: %zu (at most %d per stage)", opts->n, DR_MAX_OPTIONS);
        return;
    }
    st->options = dr_calloc(opts->n, sizeof(*st->options));
    if (st->options == NULL) {
        v->nomem = true;
        return;
    }
    /* Names first: params and routers refer to options by name. */
    for (size_t i = 0; i < opts->n; i++) {
        char opath[512];
        dr_pathf(opath, sizeof(opath), "%s[%zu]", sub, i);
        st->n_options = i; /* find_option sees only the earlier ones */
        load_option(v, p, st, i, opts->kids[i], opath);
    }
    st->n_options = opts->n;
    v->stage = st;
    for (size_t i = 0; i < opts->n; i++) {
        dr_option *o = &st->options[i];
        char ppath[512], owner[64];
        dr_pathf(ppath, sizeof(ppath), "%s[%zu].params", sub, i);
        const dr_ynode *pn = dr_ymap_get(opts->kids[i], "params");
        if (o->kind != NULL) {
            dr_pathf(owner, sizeof(owner), "%s.%s", stage_names[st->id], o->kind);
            o->params = dr_schema_validate(v, owner, pn, o->line, o->col, ppath);
        } else {
            o->params = cJSON_CreateObject();
        }
        if (o->params == NULL)
            v->nomem = true;
    }
    const dr_ynode *rn = dr_ymap_get(n, "router");
    dr_path_join(sub, sizeof(sub), path, "router");
    if (rn != NULL) {
        load_router(v, st, rn, sub);
    } else if (st->options[0].name != NULL) {
        st->router.type = dup_or_nomem(v, "fixed");
        st->router.params = cJSON_CreateObject();
        if (st->router.params == NULL ||
            cJSON_AddStringToObject(st->router.params, "option", st->options[0].name) == NULL)
            v->nomem = true;
        st->router.line = n->line;
        st->router.col = n->col;
    }
    const dr_ynode *fb = dr_ymap_get(n, "fallback");
    dr_path_join(sub, sizeof(sub), path, "fallback");
    const char *fname = fb ? get_str(v, fb, sub) : NULL;
    if (fname != NULL) {
        st->fallback = dr_stage_find_option(st, fname);
        if (st->fallback < 0) {
            const char *names[DR_MAX_OPTIONS];
            size_t k = 0;
            char dym[128];
            for (size_t i = 0; i < st->n_options; i++)
                if (st->options[i].name)
                    names[k++] = st->options[i].name;
            dr_diags_add(v->diags, fb->line, fb->col, sub, "unknown option '%.64s' in stage '%s'%s",
                         fname, stage_names[st->id],
                         dr_did_you_mean(dym, sizeof(dym), fname, names, k));
        }
    }
    dr_schema_check_stage(v, st, path, n);
    v->stage = NULL;
}

static void load_stages(dr_vctx *v, dynrag_pipeline *p, const dr_ynode *n)
{
    if (n->bad || dr_ynode_is_null(n))
        return;
    if (!want_map(v, n, "stages"))
        return;
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        const dr_ynode *k = n->kids[i];
        if (k->type != DR_YN_SCALAR)
            continue;
        char path[512], dym[128];
        dr_path_join(path, sizeof(path), "stages", k->raw);
        int id = dr_stage_from_name(k->raw);
        if (id < 0) {
            dr_did_you_mean(dym, sizeof(dym), k->raw, stage_names, DR_STAGE_COUNT);
            dr_diags_add(v->diags, k->line, k->col, path, "unknown stage '%.64s'%s", k->raw,
                         dym[0] ? dym
                                : " (stages: retrieval_mode, embedder, index, context, prompt, "
                                  "generator)");
            continue;
        }
        if (p->stages[id].declared)
            continue; /* duplicate, reported by the key pass */
        load_stage(v, p, &p->stages[id], n->kids[i + 1], path);
    }
}

static char *resolve_field(dr_vctx *v, dynrag_pipeline *p, const dr_ynode *n, const char *path)
{
    const char *s = get_str(v, n, path);
    if (s == NULL)
        return NULL;
    if (s[0] == '\0') {
        dr_diags_add(v->diags, n->line, n->col, path, "expected a path, got an empty string");
        return NULL;
    }
    char *r = dr_pipeline_resolve_path(p, s);
    if (r == NULL)
        v->nomem = true;
    return r;
}

/* Builds p from the document's root mapping, reporting into v->diags. */
static void load_root(dr_vctx *v, dynrag_pipeline *p, const dr_ynode *root)
{
    static const char *const keys[] = {"version", "name",      "description", "index",
                                       "log",     "budget",    "endpoints",   "stages"};
    check_keys(v, root, "", keys, DR_ARRAY_LEN(keys));
    const dr_ynode *n = dr_ymap_get(root, "version");
    if (n == NULL) {
        dr_diags_add(v->diags, root->line, root->col, "", "missing required key 'version'");
    } else if (!n->bad) {
        long long ver;
        char got[96];
        if (!dr_ynode_int(n, &ver))
            dr_diags_add(v->diags, n->line, n->col, "version", "expected an integer, got %s",
                         dr_ynode_describe(n, got, sizeof(got)));
        else if (ver != 1)
            dr_diags_add(v->diags, n->line, n->col, "version",
                         "unsupported version %lld (this dynrag reads version 1)", ver);
    }
    n = dr_ymap_get(root, "name");
    if (n == NULL)
        dr_diags_add(v->diags, root->line, root->col, "", "missing required key 'name'");
    else
        p->name = dup_or_nomem(v, get_name(v, n, "name", "pipeline name"));
    n = dr_ymap_get(root, "description");
    if (n != NULL)
        p->description = dup_or_nomem(v, get_str(v, n, "description"));
    n = dr_ymap_get(root, "index");
    if (n != NULL)
        p->index_dir = resolve_field(v, p, n, "index");
    n = dr_ymap_get(root, "log");
    if (n != NULL)
        p->log_path = resolve_field(v, p, n, "log");
    n = dr_ymap_get(root, "budget");
    cJSON *b = dr_schema_validate(v, "budget", n, root->line, root->col, "budget");
    p->budget.usd = dr_param_num(b, "usd", INFINITY);
    p->budget.latency_ms = dr_param_num(b, "latency_ms", INFINITY);
    p->budget.energy_wh = dr_param_num(b, "energy_wh", INFINITY);
    cJSON_Delete(b);
    n = dr_ymap_get(root, "endpoints");
    if (n != NULL)
        load_endpoints(v, p, n);
    n = dr_ymap_get(root, "stages");
    if (n != NULL)
        load_stages(v, p, n);
}

/* Splits "dir/file" into "dir" (or "." when there is no slash). */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return dr_strdup(".");
    if (slash == path)
        return dr_strdup("/");
    return dr_strndup(path, (size_t)(slash - path));
}

/*
 * The shared body of both loaders: text -> validated pipeline. Owns
 * nothing it is given; on success *out is a new pipeline, and *diags (when
 * asked for) the list of diagnostics (empty on success).
 */
static int load_text(const char *text, size_t len, const char *display, const char *base_dir,
                     dynrag_pipeline **out, dynrag_diags **diags_out, dynrag_error *err)
{
    int rc = DYNRAG_OK;
    dr_ynode *root = NULL;
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = dr_diags_new(display);
    if (d == NULL)
        return dr_err_set(err, DYNRAG_ERR_NOMEM, "%s: out of memory", display);
    if (len > DR_PIPELINE_MAX_BYTES) {
        dr_diags_add(d, 0, 0, "", "file is larger than the limit of 1 MiB (%zu bytes)", len);
        rc = dr_err_set(err, DYNRAG_ERR_LIMIT, "%s: file is larger than the limit of 1 MiB",
                        display);
        goto cleanup;
    }
    rc = dr_yaml_parse(text, len, d, &root);
    if (rc == DYNRAG_ERR_NOMEM) {
        dr_err_set(err, rc, "%s: out of memory", display);
        goto cleanup;
    }
    if (rc == DYNRAG_OK && (root == NULL || dr_ynode_is_null(root))) {
        dr_diags_add(d, root ? root->line : 1, root ? root->col : 1, "",
                     "empty document: expected a pipeline mapping with at least 'version' "
                     "and 'name'");
    } else if (rc == DYNRAG_OK && root->type != DR_YN_MAP) {
        char got[96];
        dr_diags_add(d, root->line, root->col, "", "expected a mapping at the top level, got %s",
                     dr_ynode_describe(root, got, sizeof(got)));
    } else if (rc == DYNRAG_OK) {
        char path[512] = "";
        bool nomem = false;
        key_pass(root, path, sizeof(path), 0, d, &nomem);
        p = dr_calloc(1, sizeof(*p));
        if (p == NULL || nomem) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "%s: out of memory", display);
            goto cleanup;
        }
        for (int i = 0; i < DR_STAGE_COUNT; i++) {
            p->stages[i].id = (dr_stage_id)i;
            p->stages[i].fallback = -1;
        }
        p->path = dr_strdup(display);
        p->base_dir = dr_strdup(base_dir ? base_dir : ".");
        dr_vctx v = {.diags = d, .p = p};
        if (p->path == NULL || p->base_dir == NULL)
            v.nomem = true;
        else
            load_root(&v, p, root);
        for (int i = 0; i < DR_STAGE_COUNT && !v.nomem; i++)
            if (!p->stages[i].declared && default_stage(&v, &p->stages[i]) != DYNRAG_OK)
                v.nomem = true;
        if (!v.nomem && resolve_params(p, root) != DYNRAG_OK)
            v.nomem = true;
        if (v.nomem) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "%s: out of memory", display);
            goto cleanup;
        }
    }
    if (dynrag_diags_count(d) > 0) {
        dr_diags_sort(d);
        const dynrag_diag *g = dynrag_diags_get(d, 0);
        rc = dr_err_set(err, DYNRAG_ERR_PARSE, "%s:%d:%d: %s%s%s (%zu error%s)", display,
                        g->line, g->col, g->path, g->path[0] ? ": " : "", g->message,
                        dynrag_diags_count(d), dynrag_diags_count(d) == 1 ? "" : "s");
    }
cleanup:
    dr_ynode_free(root);
    if (rc != DYNRAG_OK) {
        dynrag_pipeline_free(p);
        p = NULL;
    }
    *out = p;
    if (diags_out)
        *diags_out = d;
    else
        dynrag_diags_free(d);
    return rc;
}

int dynrag_pipeline_load_string(const char *text, size_t len, const char *display_name,
                                const char *base_dir, dynrag_pipeline **out,
                                dynrag_diags **diags, dynrag_error *err)
{
    if (out)
        *out = NULL;
    if (diags)
        *diags = NULL;
    if (out == NULL || (text == NULL && len > 0))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "dynrag_pipeline_load_string: NULL argument");
    return load_text(text ? text : "", len, display_name ? display_name : "<string>", base_dir,
                     out, diags, err);
}

int dynrag_pipeline_load(const char *path, dynrag_pipeline **out, dynrag_diags **diags,
                         dynrag_error *err)
{
    if (out)
        *out = NULL;
    if (diags)
        *diags = NULL;
    if (out == NULL || path == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "dynrag_pipeline_load: NULL argument");
    char *text = NULL, *dir = NULL;
    size_t len = 0;
    int rc = dr_read_file(path, DR_PIPELINE_MAX_BYTES, &text, &len, err);
    if (rc != DYNRAG_OK) {
        if (diags != NULL) {
            *diags = dr_diags_new(path);
            dr_diags_add(*diags, 0, 0, "", "%s",
                         rc == DYNRAG_ERR_LIMIT ? "file is larger than the limit of 1 MiB"
                                                : dynrag_errmsg(err));
        }
        goto cleanup;
    }
    dir = dir_of(path);
    if (dir == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    /* An absolute folder keeps resolved paths valid when the process
     * changes its working directory later. */
    char *abs = realpath(dir, NULL);
    if (abs != NULL) {
        char *copy = dr_strdup(abs);
        dr_libc_free(abs); /* realpath()'s */
        if (copy == NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "%s: out of memory", path);
            goto cleanup;
        }
        dr_free(dir);
        dir = copy;
    }
    rc = load_text(text, len, path, dir, out, diags, err);
cleanup:
    dr_free(text);
    dr_free(dir);
    return rc;
}
