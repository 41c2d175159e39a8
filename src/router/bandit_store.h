/*
 * router/bandit_store.h - the durable reward store of a bandit router
 * (internal).
 *
 * A bandit router with a `state` file keeps its reward statistics in an
 * SQLite database next to it, `<state>.rewards.db`, written in one
 * transaction per reward (synchronous=FULL, WAL): a reward is on disk
 * before dr_bandit_store_reward() returns, so it survives SIGKILL, and any
 * number of processes (the server and `dynrag feedback`) may write the same
 * store at once (SQLite's file locks; a writer waits up to 10 s).
 *
 * Schema (version 1):
 *   meta(key TEXT PRIMARY KEY, value TEXT)       -- "format_version" = "1"
 *   rewarded(query_id TEXT, stage TEXT, reward REAL, option TEXT,
 *            PRIMARY KEY (query_id, stage))      -- one reward per query id
 * The rewarded table is bounded: each reward deletes, in its transaction,
 * the ids recorded before the store's newest DR_BANDIT_REWARDED_RETENTION
 * rewards (any stage; insertion order, by rowid). A duplicate is refused
 * within that window; an id older than the window can be rewarded again.
 *   arms(stage TEXT, option TEXT, n REAL, sum_reward REAL,
 *        A TEXT, b TEXT, PRIMARY KEY (stage, option))
 * A and b are JSON arrays of 64 and 8 numbers (LinUCB statistics, see
 * router/bandit.h). An arm's row, when present, is authoritative over the
 * JSON state file; the JSON file keeps route counts and the PRNG.
 */
#ifndef DYNRAG_ROUTER_BANDIT_STORE_H
#define DYNRAG_ROUTER_BANDIT_STORE_H

#include "dynrag/status.h"
#include "router/router.h"

#include <stdbool.h>

typedef struct dr_bandit_store dr_bandit_store;

/* Rewarded query ids kept per store (the duplicate-refusal window). */
#define DR_BANDIT_REWARDED_RETENTION 1000000LL

/* An arm's reward statistics. */
typedef struct dr_bandit_stats {
    double n; /* rewards counted */
    double sum_reward;
    double A[DR_FEATURE_DIM * DR_FEATURE_DIM]; /* row-major, I + sum x x^T */
    double b[DR_FEATURE_DIM];                  /* sum r x */
} dr_bandit_stats;

/*
 * Opens (create true: creates, with its folder) the store of state file
 * `state_path` for stage `stage`. Without create, a missing store gives
 * DYNRAG_OK and *out NULL. Fails with DYNRAG_ERR_DB (naming the file) when
 * it cannot be opened or is not a store; *out is then NULL. Close with
 * dr_bandit_store_close(). One handle must not be used by two threads at
 * once (the router serialises).
 */
int dr_bandit_store_open(const char *state_path, const char *stage, bool create,
                         dr_bandit_store **out, dynrag_error *err);

/* Sets how many of the newest rewarded ids this handle's rewards keep (the window;
 * values < 1 mean 1); the default is DR_BANDIT_REWARDED_RETENTION. For tests
 * and tools. Accepts NULL. */
void dr_bandit_store_set_retention(dr_bandit_store *s, long long n);

/* Closes the store. Accepts NULL. */
void dr_bandit_store_close(dr_bandit_store *s);

/* The database's path (valid until close). */
const char *dr_bandit_store_path(const dr_bandit_store *s);

/*
 * Calls cb(ctx, option, stats) for every arm row of the store's stage, in
 * one read transaction. Rows whose A or b do not parse fail the call with
 * DYNRAG_ERR_FORMAT naming the file and option.
 */
int dr_bandit_store_read(dr_bandit_store *s,
                         void (*cb)(void *ctx, const char *option, const dr_bandit_stats *st),
                         void *ctx, dynrag_error *err);

/*
 * Records `reward` for `query_id` on arm `option` in one durable
 * transaction: marks the query id rewarded for this stage, then adds the
 * reward to the arm's row (n + 1, sum_reward + reward and, when x is not
 * NULL, A + x x^T and b + reward x), starting from *init when the store has
 * no row for the arm yet. *out gets the arm's statistics as committed.
 * Then deletes the rewarded ids beyond the retention window.
 * Fails with DYNRAG_ERR_STATE when the query id was already rewarded (in
 * this process or any other) within the window, DYNRAG_ERR_DB / DYNRAG_ERR_TIMEOUT (locked
 * for more than 10 s) otherwise; nothing is recorded on failure.
 */
int dr_bandit_store_reward(dr_bandit_store *s, const char *query_id, const char *option,
                           double reward, const double *x, const dr_bandit_stats *init,
                           dr_bandit_stats *out, dynrag_error *err);

#endif
