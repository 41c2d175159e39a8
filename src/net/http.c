/* http.c - POST JSON with timeouts, retries, backoff and a size cap (libcurl). */
#include "net/http.h"

#include "core/util.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ---- process-wide state --------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static dr_http_sleep_fn sleep_hook;
static void *sleep_hook_user;

void dr_http_set_sleep_fn(dr_http_sleep_fn fn, void *user)
{
    pthread_mutex_lock(&sleep_lock);
    sleep_hook = fn;
    sleep_hook_user = user;
    pthread_mutex_unlock(&sleep_lock);
}

static void wait_seconds(double s)
{
    pthread_mutex_lock(&sleep_lock);
    dr_http_sleep_fn fn = sleep_hook;
    void *user = sleep_hook_user;
    pthread_mutex_unlock(&sleep_lock);
    if (fn != NULL) {
        fn(user, s);
        return;
    }
    if (!(s > 0))
        return;
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L)
        ts.tv_nsec = 999999999L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- small pure helpers --------------------------------------------------- */

double dr_http_backoff_delay(int retry, double base_s, double max_s, double u)
{
    if (retry < 1)
        retry = 1;
    double ceiling = base_s;
    for (int i = 1; i < retry && ceiling < max_s; i++)
        ceiling *= 2.0;
    if (ceiling > max_s)
        ceiling = max_s;
    if (u < 0)
        u = 0;
    return u * ceiling;
}

double dr_http_parse_retry_after(const char *value, time_t now)
{
    if (value == NULL)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strlen(value);
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t' || value[n - 1] == '\r' ||
                     value[n - 1] == '\n'))
        n--;
    if (n == 0 || n >= 128)
        return -1;
    char tmp[128];
    memcpy(tmp, value, n);
    tmp[n] = '\0';
    long long secs = 0;
    if (dr_parse_ll(tmp, 0, 365LL * 24 * 3600, &secs) == DYNRAG_OK)
        return (double)secs;
    if (tmp[0] >= '0' && tmp[0] <= '9' && strchr(tmp, ' ') == NULL)
        return -1; /* a number, but not a valid delta (negative, huge, "1.5") */
    time_t when = curl_getdate(tmp, &now);
    if (when == (time_t)-1)
        return -1;
    return when <= now ? 0.0 : difftime(when, now);
}

char *dr_http_join_url(const char *base, const char *path)
{
    if (base == NULL || path == NULL)
        return NULL;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    while (*path == '/')
        path++;
    return dr_asprintf("%.*s/%s", (int)bl, base, path);
}

/* Copies s into buf, replacing control characters with spaces. */
static void copy_printable(char *buf, size_t size, const char *s, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; i < len && j + 1 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[j++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    buf[j] = '\0';
}

const char *dr_http_error_message(const char *body, size_t len, char *buf, size_t size)
{
    if (size == 0)
        return buf;
    buf[0] = '\0';
    if (body == NULL || len == 0)
        return buf;
    cJSON *root = cJSON_ParseWithLength(body, len);
    const char *msg = NULL;
    if (cJSON_IsObject(root)) {
        cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
        if (cJSON_IsObject(e)) {
            cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
            if (cJSON_IsString(m))
                msg = m->valuestring;
        } else if (cJSON_IsString(e)) {
            msg = e->valuestring;
        }
        const char *alts[] = {"detail", "message"};
        for (size_t i = 0; msg == NULL && i < DR_ARRAY_LEN(alts); i++) {
            cJSON *m = cJSON_GetObjectItemCaseSensitive(root, alts[i]);
            if (cJSON_IsString(m))
                msg = m->valuestring;
        }
    }
    if (msg != NULL) {
        copy_printable(buf, size, msg, strlen(msg));
    } else {
        size_t n = len > 200 ? 200 : len;
        copy_printable(buf, size, body, n);
        if (len > n && size > 4) {
            size_t l = strlen(buf);
            dr_strlcpy(buf + l, "...", size - l);
        }
    }
    cJSON_Delete(root);
    return buf;
}

/* ---- one attempt ---------------------------------------------------------- */

typedef struct attempt_state {
    dr_buf body;
    bool over_cap;
    bool nomem;
    double retry_after;  /* seconds, -1 if absent */
    char location[512];  /* Location header of a 3xx, "" if none */
} attempt_state;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *user)
{
    attempt_state *st = user;
    size_t n = size * nmemb;
    int rc = dr_buf_append(&st->body, ptr, n);
    if (rc == DYNRAG_ERR_LIMIT) {
        st->over_cap = true;
        return 0;
    }
    if (rc != DYNRAG_OK) {
        st->nomem = true;
        return 0;
    }
    return n;
}

/* Case-insensitive "Name:" prefix match; returns the value or NULL. */
static const char *header_value(const char *line, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return NULL;
    const char *v = line + nl + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    *vlen = (size_t)(end - v);
    return v;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *user)
{
    attempt_state *st = user;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        /* A new response (e.g. after "100 Continue"): forget earlier headers. */
        st->retry_after = -1;
        st->location[0] = '\0';
        return n;
    }
    size_t vlen = 0;
    const char *v = header_value(ptr, n, "Retry-After", &vlen);
    if (v != NULL && vlen < 128) {
        char tmp[128];
        memcpy(tmp, v, vlen);
        tmp[vlen] = '\0';
        st->retry_after = dr_http_parse_retry_after(tmp, time(NULL));
        return n;
    }
    v = header_value(ptr, n, "Location", &vlen);
    if (v != NULL)
        copy_printable(st->location, sizeof(st->location), v, vlen);
    return n;
}

typedef enum attempt_kind {
    ATTEMPT_OK,         /* 2xx */
    ATTEMPT_RETRY,      /* transient: retry if allowed */
    ATTEMPT_FATAL       /* do not retry */
} attempt_kind;

static bool status_retryable(long status)
{
    return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

static bool curl_code_retryable(CURLcode c)
{
    switch (c) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return true;
    default:
        return false;
    }
}

/* ---- the call ------------------------------------------------------------- */

void dr_http_response_free(dr_http_response *resp)
{
    if (resp == NULL)
        return;
    dr_free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

static bool url_scheme_ok(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

static uint64_t seed_from_clock(void)
{
    static atomic_uint_fast64_t counter;
    uint64_t c = atomic_fetch_add(&counter, 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t parts[3] = {(uint64_t)ts.tv_nsec, (uint64_t)ts.tv_sec, c};
    return dr_hash64(parts, sizeof(parts), (uint64_t)getpid());
}

static _Thread_local int64_t thread_deadline_us;

int64_t dr_http_thread_deadline(int64_t deadline_us)
{
    int64_t prev = thread_deadline_us;
    thread_deadline_us = deadline_us > 0 ? deadline_us : 0;
    return prev;
}

int dr_http_post_json(const dr_http_request *req, dr_http_response *resp, dynrag_error *err)
{
    int rc = DYNRAG_OK;
    CURL *h = NULL;
    struct curl_slist *hdrs = NULL;
    char *auth = NULL;
    attempt_state st;
    memset(&st, 0, sizeof(st));

    if (resp == NULL || req == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "http: NULL request or response");
    memset(resp, 0, sizeof(*resp));
    if (req->url == NULL || req->body == NULL)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "http: request needs a url and a body");
    if (!url_scheme_ok(req->url))
        return dr_err_set(err, DYNRAG_ERR_INVALID,
                          "POST %s: only http:// and https:// URLs are supported", req->url);
    if (req->max_retries < 0 || req->max_retries > DR_HTTP_MAX_RETRIES)
        return dr_err_set(err, DYNRAG_ERR_INVALID, "POST %s: max_retries %d not in 0..%d",
                          req->url, req->max_retries, DR_HTTP_MAX_RETRIES);
    if (!(req->timeout_s >= 0) || req->timeout_s > 86400 || !(req->connect_timeout_s >= 0))
        return dr_err_set(err, DYNRAG_ERR_INVALID, "POST %s: bad timeout %g s", req->url,
                          req->timeout_s);

    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return dr_err_set(err, DYNRAG_ERR_INTERNAL, "curl_global_init failed: %s",
                          curl_easy_strerror(curl_init_rc));

    const char *module = req->log_module ? req->log_module : "http";
    double timeout_s = req->timeout_s > 0 ? req->timeout_s : DR_HTTP_DEFAULT_TIMEOUT_S;
    double connect_s = req->connect_timeout_s > 0 ? req->connect_timeout_s
                                                  : DR_HTTP_DEFAULT_CONNECT_TIMEOUT_S;
    if (connect_s > timeout_s)
        connect_s = timeout_s;
    size_t cap = req->max_response ? req->max_response : DR_HTTP_DEFAULT_MAX_RESPONSE;
    double ra_cap = req->retry_after_cap_s > 0 ? req->retry_after_cap_s
                                               : DR_HTTP_DEFAULT_RETRY_AFTER_CAP_S;
    double base = req->backoff_base_s > 0 ? req->backoff_base_s : DR_HTTP_DEFAULT_BACKOFF_BASE_S;
    double bmax = req->backoff_max_s > 0 ? req->backoff_max_s : DR_HTTP_DEFAULT_BACKOFF_MAX_S;
    size_t body_len = req->body_len ? req->body_len : strlen(req->body);
    dr_rng rng;
    dr_rng_seed(&rng, req->seed ? req->seed : seed_from_clock());
    int64_t t0 = dr_now_us();
    int64_t deadline_us = req->deadline_us > 0 ? req->deadline_us : thread_deadline_us;

    h = curl_easy_init();
    if (h == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "POST %s: curl_easy_init failed", req->url);
        goto cleanup;
    }
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = hdrs ? curl_slist_append(hdrs, "Accept: application/json") : NULL;
    hdrs = hdrs ? curl_slist_append(hdrs, "Expect:") : NULL; /* no 100-continue round trip */
    if (hdrs != NULL && req->api_key != NULL && req->api_key[0] != '\0') {
        if (strpbrk(req->api_key, "\r\n") != NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_INVALID, "POST %s: API key contains a line break",
                            req->url);
            goto cleanup;
        }
        auth = dr_asprintf("Authorization: Bearer %s", req->api_key);
        hdrs = auth ? curl_slist_append(hdrs, auth) : NULL;
    }
    for (size_t i = 0; hdrs != NULL && i < req->n_headers; i++) {
        if (req->headers[i] == NULL || strpbrk(req->headers[i], "\r\n") != NULL) {
            rc = dr_err_set(err, DYNRAG_ERR_INVALID, "POST %s: bad extra header %zu", req->url,
                            i);
            goto cleanup;
        }
        hdrs = curl_slist_append(hdrs, req->headers[i]);
    }
    if (hdrs == NULL) {
        rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "POST %s: out of memory for headers", req->url);
        goto cleanup;
    }

    char errbuf[CURL_ERROR_SIZE];
    for (int attempt = 1;; attempt++) {
        /* The caller's deadline bounds every attempt. */
        double attempt_s = timeout_s;
        if (deadline_us > 0) {
            double left_s = (double)(deadline_us - dr_now_us()) / 1e6;
            if (left_s < 0.001) {
                rc = dr_err_set(err, DYNRAG_ERR_TIMEOUT,
                                "POST %s: deadline reached before attempt %d", req->url, attempt);
                goto cleanup;
            }
            if (left_s < attempt_s)
                attempt_s = left_s;
        }
        double attempt_connect_s = connect_s < attempt_s ? connect_s : attempt_s;
        dr_buf_free(&st.body);
        st.body.cap_limit = cap;
        st.over_cap = false;
        st.nomem = false;
        st.retry_after = -1;
        st.location[0] = '\0';
        errbuf[0] = '\0';

        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, req->url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(attempt_s * 1000.0 + 0.5));
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(attempt_connect_s * 1000.0 + 0.5));
        curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cap);
        curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(h, CURLOPT_USERAGENT, "dynrag/" DYNRAG_VERSION_STRING);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &st);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &st);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);

        CURLcode cc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        resp->status = status;
        resp->attempts = attempt;

        attempt_kind kind;
        char what[768];
        int fail_status = DYNRAG_ERR_HTTP;
        if (st.nomem) {
            rc = dr_err_set(err, DYNRAG_ERR_NOMEM, "POST %s: out of memory reading the response",
                            req->url);
            goto cleanup;
        }
        if (st.over_cap || cc == CURLE_FILESIZE_EXCEEDED) {
            rc = dr_err_set(err, DYNRAG_ERR_LIMIT,
                            "POST %s: response larger than the %zu-byte cap (HTTP %ld)", req->url,
                            cap, status);
            goto cleanup;
        }
        if (cc != CURLE_OK) {
            kind = curl_code_retryable(cc) ? ATTEMPT_RETRY : ATTEMPT_FATAL;
            if (cc == CURLE_OPERATION_TIMEDOUT)
                fail_status = DYNRAG_ERR_TIMEOUT;
            else if (cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL)
                fail_status = DYNRAG_ERR_INVALID;
            if (cc == CURLE_PARTIAL_FILE)
                snprintf(what, sizeof(what), "response body truncated (HTTP %ld, %zu bytes "
                         "received): %s", status, st.body.len, errbuf[0] ? errbuf
                         : curl_easy_strerror(cc));
            else if (cc == CURLE_OPERATION_TIMEDOUT)
                snprintf(what, sizeof(what), "timed out after %.3g s: %s", attempt_s,
                         errbuf[0] ? errbuf : curl_easy_strerror(cc));
            else
                snprintf(what, sizeof(what), "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
        } else if (status >= 200 && status <= 299) {
            kind = ATTEMPT_OK;
        } else {
            char smsg[512];
            dr_http_error_message(st.body.data, st.body.len, smsg, sizeof(smsg));
            kind = status_retryable(status) ? ATTEMPT_RETRY : ATTEMPT_FATAL;
            if (status >= 300 && status <= 399)
                snprintf(what, sizeof(what), "HTTP %ld redirect to '%s' (redirects are not "
                         "followed: fix the base URL)", status, st.location);
            else
                snprintf(what, sizeof(what), "HTTP %ld%s%s", status, smsg[0] ? ": " : "",
                         smsg);
        }

        if (kind == ATTEMPT_OK)
            break;
        if (kind == ATTEMPT_FATAL || attempt > req->max_retries) {
            if (kind == ATTEMPT_RETRY && req->max_retries > 0)
                rc = dr_err_set(err, fail_status, "POST %s: %s (gave up after %d attempts: "
                                "retries exhausted)", req->url, what, attempt);
            else
                rc = dr_err_set(err, fail_status, "POST %s: %s (attempt %d, %s)", req->url,
                                what, attempt,
                                kind == ATTEMPT_RETRY ? "retries disabled" : "not retried");
            goto cleanup;
        }
        double delay;
        const char *why;
        if (st.retry_after >= 0) {
            delay = st.retry_after > ra_cap ? ra_cap : st.retry_after;
            why = "Retry-After";
        } else {
            delay = dr_http_backoff_delay(attempt, base, bmax, dr_rng_uniform(&rng));
            why = "backoff";
        }
        if (deadline_us > 0 && dr_now_us() + (int64_t)(delay * 1e6) >= deadline_us) {
            rc = dr_err_set(err, fail_status == DYNRAG_ERR_TIMEOUT ? DYNRAG_ERR_TIMEOUT
                                                                   : DYNRAG_ERR_HTTP,
                            "POST %s: %s (attempt %d; a retry in %.2f s would pass the "
                            "deadline)",
                            req->url, what, attempt, delay);
            goto cleanup;
        }
        dr_log(DYNRAG_LOG_WARN, module, "POST %s: %s; retry %d/%d in %.2f s (%s)", req->url,
               what, attempt, req->max_retries, delay, why);
        wait_seconds(delay);
    }

cleanup:
    resp->elapsed_ms = (double)(dr_now_us() - t0) / 1000.0;
    if (st.body.data != NULL) {
        resp->body_len = st.body.len;
        resp->body = dr_buf_take(&st.body);
    }
    dr_buf_free(&st.body);
    curl_slist_free_all(hdrs);
    dr_free(auth);
    if (h != NULL)
        curl_easy_cleanup(h);
    return rc;
}
