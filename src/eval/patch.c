/*
 * patch.c - writes a copy of a pipeline YAML file with one router parameter
 * changed, keeping every other byte (comments, layout), for `dynrag
 * calibrate --out`. The copy is validated by loading it.
 */
#include "dynrag/eval.h"

#include "core/util.h"
#include "dynrag/pipeline.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* The value node of key in a mapping node, or NULL; *key_node gets the key. */
static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key,
                            yaml_node_t **key_node)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0) {
            if (key_node)
                *key_node = k;
            return yaml_document_get_node(doc, p->value);
        }
    }
    return NULL;
}

/* The first key node of a non-empty mapping. */
static yaml_node_t *first_key(yaml_document_t *doc, yaml_node_t *map)
{
    if (map->data.mapping.pairs.start == map->data.mapping.pairs.top)
        return NULL;
    return yaml_document_get_node(doc, map->data.mapping.pairs.start->key);
}

/* Text to insert `entry` ("key: value") into a mapping node, and where. */
static int insert_into(yaml_document_t *doc, yaml_node_t *map, const char *text, const char *entry,
                       size_t *at, char **ins)
{
    if (map->data.mapping.style == YAML_FLOW_MAPPING_STYLE) {
        size_t end = map->end_mark.index; /* just past '}' */
        if (end == 0 || text[end - 1] != '}')
            return DYNRAG_ERR_PARSE;
        *at = end - 1;
        *ins = dr_asprintf("%s%s", first_key(doc, map) ? ", " : "", entry);
    } else {
        yaml_node_t *k = first_key(doc, map);
        if (k == NULL)
            return DYNRAG_ERR_PARSE;
        *at = k->start_mark.index - k->start_mark.column;
        *ins = dr_asprintf("%*s%s\n", (int)k->start_mark.column, "", entry);
    }
    return *ins ? DYNRAG_OK : DYNRAG_ERR_NOMEM;
}

int dynrag_eval_patch_router_param(const char *in_path, const char *out_path, const char *stage,
                                   const char *param, double value, dynrag_error *err)
{
    char *text = NULL, *ins = NULL, *base = NULL;
    size_t len = 0, at = 0, cut_end = 0;
    yaml_parser_t parser;
    yaml_document_t doc;
    bool have_parser = false, have_doc = false;
    dr_buf outb = {0};
    dynrag_pipeline *p = NULL;
    /* Ten significant digits: readable, and what the check below reads back. */
    char num[64];
    snprintf(num, sizeof num, "%.10g", value);
    double written = strtod(num, NULL);
    int rc = dr_read_file(in_path, (size_t)1 << 20, &text, &len, err);
    if (rc != DYNRAG_OK)
        return rc;
    if (!yaml_parser_initialize(&parser)) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    have_parser = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = dr_err_set(err, DYNRAG_ERR_PARSE, "%s:%zu: %s", in_path, parser.problem_mark.line + 1,
                        parser.problem ? parser.problem : "YAML error");
        goto cleanup;
    }
    have_doc = true;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *st = map_get(&doc, map_get(&doc, map_get(&doc, root, "stages", NULL), stage, NULL),
                              "router", NULL);
    if (st == NULL || st->type != YAML_MAPPING_NODE) {
        rc = dr_err_set(err, DYNRAG_ERR_INVALID, "%s: stages.%s has no router mapping", in_path,
                        stage);
        goto cleanup;
    }
    yaml_node_t *params = map_get(&doc, st, "params", NULL);
    yaml_node_t *val = map_get(&doc, params, param, NULL);
    char entry[128];
    if (val) {
        if (val->type != YAML_SCALAR_NODE) {
            rc = dr_err_set(err, DYNRAG_ERR_INVALID, "%s:%zu: stages.%s.router.params.%s is not "
                            "a scalar", in_path, val->start_mark.line + 1, stage, param);
            goto cleanup;
        }
        at = val->start_mark.index;
        cut_end = val->end_mark.index;
        ins = dr_strdup(num);
    } else if (params && params->type == YAML_MAPPING_NODE) {
        snprintf(entry, sizeof entry, "%s: %s", param, num);
        rc = insert_into(&doc, params, text, entry, &at, &ins);
        cut_end = at;
    } else if (params == NULL) {
        snprintf(entry, sizeof entry, "params: {%s: %s}", param, num);
        rc = insert_into(&doc, st, text, entry, &at, &ins);
        cut_end = at;
    } else {
        rc = DYNRAG_ERR_PARSE;
    }
    if (rc != DYNRAG_OK || ins == NULL) {
        rc = dr_err_set(err, rc == DYNRAG_OK ? DYNRAG_ERR_NOMEM : rc,
                        "%s: cannot place stages.%s.router.params.%s", in_path, stage, param);
        goto cleanup;
    }
    if ((rc = dr_buf_append(&outb, text, at)) != DYNRAG_OK ||
        (rc = dr_buf_puts(&outb, ins)) != DYNRAG_OK ||
        (rc = dr_buf_append(&outb, text + cut_end, len - cut_end)) != DYNRAG_OK) {
        rc = dr_err_set(err, rc, "out of memory");
        goto cleanup;
    }
    /* Validate: the copy loads (relative paths resolve against the original's
     * folder, so the copy must live there or use absolute paths) and holds the value. */
    base = dr_strdup(in_path);
    char *slash = base ? strrchr(base, '/') : NULL;
    if (slash)
        *slash = '\0';
    dynrag_diags *dg = NULL;
    rc = dynrag_pipeline_load_string(outb.data, outb.len, out_path, slash ? base : ".", &p, &dg, err);
    if (rc != DYNRAG_OK) {
        char *d = dg ? dynrag_diags_format(dg) : NULL;
        dr_err_set(err, rc, "the patched pipeline does not load: %s", d ? d : dynrag_errmsg(err));
        dr_free(d);
        dynrag_diags_free(dg);
        goto cleanup;
    }
    dynrag_diags_free(dg);
    char *rparams = dynrag_pipeline_router_params(p, stage);
    cJSON *pj = rparams ? cJSON_Parse(rparams) : NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(pj, param);
    double got = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    cJSON_Delete(pj);
    dr_free(rparams);
    if (!(fabs(got - written) <= 1e-12 * fmax(1, fabs(written)))) {
        rc = dr_err_set(err, DYNRAG_ERR_INTERNAL, "the patched pipeline has %s %.10g, not %s",
                        param, got, num);
        goto cleanup;
    }
    rc = dr_write_file_atomic(out_path, outb.data, outb.len, err);
cleanup:
    if (have_doc)
        yaml_document_delete(&doc);
    if (have_parser)
        yaml_parser_delete(&parser);
    dynrag_pipeline_free(p);
    dr_buf_free(&outb);
    dr_free(text);
    dr_free(ins);
    dr_free(base);
    return rc;
}
