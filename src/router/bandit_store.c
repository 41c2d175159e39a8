/*
 * bandit_store.c - the durable reward store of a bandit router: one SQLite
 * transaction per reward (schema and guarantees in router/bandit_store.h).
 */
#include "router/bandit_store.h"

#include "core/util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define D DR_FEATURE_DIM
#define COUNT_MAX 9007199254740992.0 /* 2^53 */

struct dr_bandit_store {
    sqlite3 *db;
    char *path;  /* <state>.rewards.db */
    char *stage; /* the router's stage: rows of other stages are not ours */
    long long retention; /* rewarded ids kept per stage */
};

static int db_fail(dr_bandit_store *s, int sqlite_rc, const char *what, dynrag_error *err)
{
    int st =
        sqlite_rc == SQLITE_BUSY || sqlite_rc == SQLITE_LOCKED ? DYNRAG_ERR_TIMEOUT : DYNRAG_ERR_DB;
    return dr_err_set(err, st, "bandit reward store %s: %s: %s", s->path, what,
                      sqlite3_errmsg(s->db));
}

static int exec(dr_bandit_store *s, const char *sql, dynrag_error *err)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? DYNRAG_OK : db_fail(s, rc, sql, err);
}

void dr_bandit_store_set_retention(dr_bandit_store *s, long long n)
{
    if (s != NULL)
        s->retention = n >= 1 ? n : 1;
}

/* Deletes the rewarded ids (of any stage) recorded before the newest
 * s->retention rewards of the store, inside the caller's transaction: a
 * rowid range delete, so each reward visits only the rows it removes. */
static int prune_rewarded(dr_bandit_store *s, dynrag_error *err)
{
    sqlite3_stmt *q = NULL;
    long long keep = s->retention > 0 ? s->retention : DR_BANDIT_REWARDED_RETENTION;
    long long last = (long long)sqlite3_last_insert_rowid(s->db);
    if (last <= keep)
        return DYNRAG_OK;
    int src = sqlite3_prepare_v2(s->db, "DELETE FROM rewarded WHERE rowid <= ?1", -1, &q, NULL);
    if (src == SQLITE_OK) {
        sqlite3_bind_int64(q, 1, last - keep);
        src = sqlite3_step(q);
    }
    sqlite3_finalize(q);
    return src == SQLITE_DONE || src == SQLITE_OK ? DYNRAG_OK
                                                  : db_fail(s, src, "pruning old query ids", err);
}

void dr_bandit_store_close(dr_bandit_store *s)
{
    if (s == NULL)
        return;
    sqlite3_close(s->db);
    dr_free(s->path);
    dr_free(s->stage);
    dr_free(s);
}

const char *dr_bandit_store_path(const dr_bandit_store *s)
{
    return s->path;
}

/* The folder part of path ("." when none), newly allocated. */
static char *parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return dr_strdup(".");
    if (slash == path)
        return dr_strdup("/");
    return dr_strndup(path, (size_t)(slash - path));
}

int dr_bandit_store_open(const char *state_path, const char *stage, bool create,
                         dr_bandit_store **out, dynrag_error *err)
{
    static const char *const schema =
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
        "CREATE TABLE IF NOT EXISTS rewarded(query_id TEXT NOT NULL, stage TEXT NOT NULL,"
        " reward REAL NOT NULL, option TEXT NOT NULL, PRIMARY KEY (query_id, stage));"
        "CREATE TABLE IF NOT EXISTS arms(stage TEXT NOT NULL, option TEXT NOT NULL,"
        " n REAL NOT NULL, sum_reward REAL NOT NULL, A TEXT NOT NULL, b TEXT NOT NULL,"
        " PRIMARY KEY (stage, option));"
        "INSERT OR IGNORE INTO meta(key, value) VALUES('format_version', '1');";
    *out = NULL;
    int rc = DYNRAG_OK;
    dr_bandit_store *s = dr_calloc(1, sizeof *s);
    if (s == NULL || (s->path = dr_asprintf("%s.rewards.db", state_path)) == NULL ||
        (s->stage = dr_strdup(stage)) == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!dr_path_exists(s->path)) {
        if (!create)
            goto fail; /* rc OK, *out NULL: no store yet */
        char *dir = parent_dir(s->path);
        rc = dir != NULL ? dr_mkdirs(dir, err) : dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        dr_free(dir);
        if (rc != DYNRAG_OK)
            goto fail;
    }
    int src = sqlite3_open_v2(
        s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        rc = dr_err_set(err, DYNRAG_ERR_DB, "bandit reward store %s: cannot open: %s", s->path,
                        s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(src));
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 10000);
    if ((rc = exec(s, "PRAGMA journal_mode=WAL", err)) != DYNRAG_OK ||
        (rc = exec(s, "PRAGMA synchronous=FULL", err)) != DYNRAG_OK ||
        (rc = exec(s, schema, err)) != DYNRAG_OK)
        goto fail;
    *out = s;
    return DYNRAG_OK;
fail:
    dr_bandit_store_close(s);
    return rc;
}

/* Parses a JSON array of exactly n finite numbers into v. */
static bool parse_numbers(const unsigned char *text, double *v, int n)
{
    cJSON *a = text ? cJSON_Parse((const char *)text) : NULL;
    bool ok = cJSON_IsArray(a) && cJSON_GetArraySize(a) == n;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        if (!ok || !cJSON_IsNumber(it) || !isfinite(it->valuedouble)) {
            ok = false;
            break;
        }
        v[i++] = it->valuedouble;
    }
    cJSON_Delete(a);
    return ok;
}

/* Reads the row of the current statement (n, sum_reward, A, b) into st. */
static bool row_stats(sqlite3_stmt *q, int col, dr_bandit_stats *st)
{
    st->n = sqlite3_column_double(q, col);
    st->sum_reward = sqlite3_column_double(q, col + 1);
    return st->n >= 0 && st->n <= COUNT_MAX && isfinite(st->sum_reward) &&
           parse_numbers(sqlite3_column_text(q, col + 2), st->A, D * D) &&
           parse_numbers(sqlite3_column_text(q, col + 3), st->b, D);
}

int dr_bandit_store_read(dr_bandit_store *s,
                         void (*cb)(void *ctx, const char *option, const dr_bandit_stats *st),
                         void *ctx, dynrag_error *err)
{
    sqlite3_stmt *q = NULL;
    int rc = DYNRAG_OK;
    int src = sqlite3_prepare_v2(
        s->db, "SELECT option, n, sum_reward, A, b FROM arms WHERE stage = ?1", -1, &q, NULL);
    if (src != SQLITE_OK)
        return db_fail(s, src, "reading arms", err);
    sqlite3_bind_text(q, 1, s->stage, -1, SQLITE_STATIC);
    while ((src = sqlite3_step(q)) == SQLITE_ROW) {
        dr_bandit_stats st;
        const char *opt = (const char *)sqlite3_column_text(q, 0);
        if (opt == NULL || !row_stats(q, 1, &st)) {
            rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                            "bandit reward store %s: arm '%s' of stage %s is corrupt", s->path,
                            opt ? opt : "?", s->stage);
            goto cleanup;
        }
        cb(ctx, opt, &st);
    }
    if (src != SQLITE_DONE)
        rc = db_fail(s, src, "reading arms", err);
cleanup:
    sqlite3_finalize(q);
    return rc;
}

/* The JSON text of v[0..n) (caller frees), or NULL when out of memory. */
static char *numbers_json(const double *v, int n)
{
    cJSON *a = cJSON_CreateDoubleArray(v, n);
    char *t = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return t;
}

int dr_bandit_store_reward(dr_bandit_store *s, const char *query_id, const char *option,
                           double reward, const double *x, const dr_bandit_stats *init,
                           dr_bandit_stats *out, dynrag_error *err)
{
    sqlite3_stmt *q = NULL;
    char *a_txt = NULL, *b_txt = NULL;
    dr_bandit_stats st = *init;
    bool in_tx = false;
    int rc = DYNRAG_OK, src;
    /* IMMEDIATE: take the write lock now, so the arm read below is the
     * latest any process committed. */
    if ((src = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK) {
        rc = db_fail(s, src, "begin", err);
        goto cleanup;
    }
    in_tx = true;
    src = sqlite3_prepare_v2(s->db,
                             "INSERT INTO rewarded(query_id, stage, reward, option) "
                             "VALUES (?1, ?2, ?3, ?4)",
                             -1, &q, NULL);
    if (src != SQLITE_OK) {
        rc = db_fail(s, src, "recording the query id", err);
        goto cleanup;
    }
    sqlite3_bind_text(q, 1, query_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, s->stage, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 3, reward);
    sqlite3_bind_text(q, 4, option, -1, SQLITE_STATIC);
    src = sqlite3_step(q);
    if (src == SQLITE_CONSTRAINT) {
        rc = dr_err_set(err, DYNRAG_ERR_STATE, "query id '%s' was already rewarded", query_id);
        goto cleanup;
    }
    if (src != SQLITE_DONE) {
        rc = db_fail(s, src, "recording the query id", err);
        goto cleanup;
    }
    sqlite3_finalize(q);
    q = NULL;
    if ((rc = prune_rewarded(s, err)) != DYNRAG_OK)
        goto cleanup;
    src = sqlite3_prepare_v2(
        s->db, "SELECT n, sum_reward, A, b FROM arms WHERE stage = ?1 AND option = ?2", -1, &q,
        NULL);
    if (src != SQLITE_OK) {
        rc = db_fail(s, src, "reading the arm", err);
        goto cleanup;
    }
    sqlite3_bind_text(q, 1, s->stage, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, option, -1, SQLITE_STATIC);
    src = sqlite3_step(q);
    if (src == SQLITE_ROW && !row_stats(q, 0, &st)) {
        rc = dr_err_set(err, DYNRAG_ERR_FORMAT,
                        "bandit reward store %s: arm '%s' of stage %s is corrupt", s->path, option,
                        s->stage);
        goto cleanup;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
        rc = db_fail(s, src, "reading the arm", err);
        goto cleanup;
    }
    sqlite3_finalize(q);
    q = NULL;
    if (st.n < COUNT_MAX) {
        st.n += 1;
        st.sum_reward += reward;
        for (int i = 0; x != NULL && i < D; i++) {
            for (int j = 0; j < D; j++)
                st.A[i * D + j] += x[i] * x[j];
            st.b[i] += reward * x[i];
        }
    }
    if ((a_txt = numbers_json(st.A, D * D)) == NULL || (b_txt = numbers_json(st.b, D)) == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    src = sqlite3_prepare_v2(s->db,
                             "INSERT OR REPLACE INTO arms(stage, option, n, sum_reward, A, b) "
                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                             -1, &q, NULL);
    if (src != SQLITE_OK) {
        rc = db_fail(s, src, "writing the arm", err);
        goto cleanup;
    }
    sqlite3_bind_text(q, 1, s->stage, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, option, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 3, st.n);
    sqlite3_bind_double(q, 4, st.sum_reward);
    sqlite3_bind_text(q, 5, a_txt, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 6, b_txt, -1, SQLITE_STATIC);
    if ((src = sqlite3_step(q)) != SQLITE_DONE) {
        rc = db_fail(s, src, "writing the arm", err);
        goto cleanup;
    }
    sqlite3_finalize(q);
    q = NULL;
    if ((src = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK) {
        rc = db_fail(s, src, "commit", err);
        goto cleanup;
    }
    in_tx = false;
    *out = st;
cleanup:
    sqlite3_finalize(q);
    if (in_tx)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    dr_free(a_txt);
    dr_free(b_txt);
    return rc;
}
