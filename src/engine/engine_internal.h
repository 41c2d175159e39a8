/*
 * engine/engine_internal.h - state shared by the engine's files (internal).
 */
#ifndef DYNRAG_ENGINE_INTERNAL_H
#define DYNRAG_ENGINE_INTERNAL_H

#include "dynrag/engine.h"
#include "dynrag/index.h"
#include "pipeline/spec.h"
#include "router/router.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define DR_MEMO_CAP 65536

/* What the engine remembers of a query for later feedback. */
typedef struct dr_memo {
    char id[80];
    signed char choice[DR_STAGE_COUNT]; /* option index, -1 when skipped */
    dr_query_features features;
    double usd;
    double gen_latency_ms; /* the generator stage's latency (every call of a cascade) */
    bool used;
    bool rewarded; /* a reward was given (or is being applied) for this id */
} dr_memo;

struct dynrag_engine {
    const dynrag_pipeline *p;
    dr_router *routers[DR_STAGE_COUNT];
    char *index_dir;
    /* One index handle per embedder option (NULL when unavailable). */
    dynrag_index *index[DR_MAX_OPTIONS];
    char *index_error[DR_MAX_OPTIONS]; /* why an index could not be opened */
    int log_fd;                        /* -1 when not logging; changes under log_mu */
    bool log_on;                       /* logging: set at open, never changed */
    char *log_path;
    pthread_mutex_t log_mu;
    /* Under log_mu: the file log_fd writes (device, inode), and when the
     * path was last compared with it: a log moved away (rotated) or
     * removed is followed by a new file at the path (record.c). */
    dev_t log_dev;
    ino_t log_ino;
    int64_t log_checked_us;
    bool log_reopen_warned;
    pthread_mutex_t memo_mu;
    dr_memo *memo;
    size_t memo_next;
    atomic_ullong counter;
};

struct dynrag_result {
    char *id;
    char *answer;
    bool unanswerable;
    dynrag_citation *cits;
    size_t n_cits;
    dynrag_citation *ret; /* retrieved passages */
    size_t n_ret;
    char *context;
    dynrag_citation *ctx; /* the context's passages */
    size_t n_ctx;
    dynrag_decision dec[DR_STAGE_COUNT];
    size_t n_dec;
    dynrag_totals totals;
    char *json;
};

#endif
