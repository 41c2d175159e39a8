/*
 * search_options.c - the search modes and default search options
 * (dynrag/index.h). Pure functions with no index behind them, kept apart so
 * that the pipeline module (which resolves index options into search
 * options, and is fuzzed on its own) links without the search engine.
 */
#include "dynrag/index.h"

#include "retrieve/bm25.h"

#include <string.h>

int dynrag_search_mode_parse(const char *s)
{
    if (s == NULL)
        return -1;
    if (strcmp(s, "bm25") == 0)
        return DYNRAG_SEARCH_BM25;
    if (strcmp(s, "dense") == 0)
        return DYNRAG_SEARCH_DENSE;
    if (strcmp(s, "hybrid") == 0)
        return DYNRAG_SEARCH_HYBRID;
    return -1;
}

const char *dynrag_search_mode_name(dynrag_search_mode m)
{
    switch (m) {
    case DYNRAG_SEARCH_BM25:
        return "bm25";
    case DYNRAG_SEARCH_DENSE:
        return "dense";
    case DYNRAG_SEARCH_HYBRID:
        return "hybrid";
    }
    return "unknown";
}

void dynrag_search_options_init(dynrag_search_options *o)
{
    memset(o, 0, sizeof(*o));
    o->mode = DYNRAG_SEARCH_BM25;
    o->k = 10;
    o->k1 = DR_BM25_DEFAULT_K1;
    o->b = DR_BM25_DEFAULT_B;
    o->rrf_k = 60;
    o->w_bm25 = 1;
    o->w_dense = 1;
    o->depth = 100;
    o->nprobe = 0;
}
