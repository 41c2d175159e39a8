/* server_client.c - a small libcurl client for the server tests. */
#include "server_client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct grow {
    char *p;
    size_t n;
    int calls;
} grow;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *user)
{
    grow *g = user;
    size_t n = size * nmemb;
    char *np = realloc(g->p, g->n + n + 1);
    if (np == NULL)
        return 0;
    memcpy(np + g->n, ptr, n);
    g->n += n;
    np[g->n] = '\0';
    g->p = np;
    g->calls++;
    return n;
}

typedef struct upload {
    const char *p;
    size_t n, off;
} upload;

static size_t on_read(char *buf, size_t size, size_t nitems, void *user)
{
    upload *u = user;
    size_t want = size * nitems, left = u->n - u->off;
    size_t n = want < left ? want : left;
    if (n > 1000)
        n = 1000; /* several chunks */
    memcpy(buf, u->p + u->off, n);
    u->off += n;
    return n;
}

int http_request(int port, const char *method, const char *path, const char *const *extra_headers,
                 const char *body, size_t body_len, int chunked, http_reply *r)
{
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    if (c == NULL)
        return -1;
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    grow b = {0}, h = {0};
    upload up = {body, body_len, 0};
    struct curl_slist *hl = NULL;
    for (size_t i = 0; extra_headers && extra_headers[i]; i++)
        hl = curl_slist_append(hl, extra_headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body && chunked) {
        hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &up);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    r->body = b.p ? b.p : calloc(1, 1);
    r->body_len = b.n;
    r->headers = h.p ? h.p : calloc(1, 1);
    r->chunks = b.calls;
    if (cc != CURLE_OK) {
        r->status = 0;
        return -1;
    }
    return 0;
}

int http_post_json(int port, const char *path, const char *json, const char *api_key, http_reply *r)
{
    char auth[512];
    const char *hdrs[3] = {"Content-Type: application/json", NULL, NULL};
    if (api_key) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", api_key);
        hdrs[1] = auth;
    }
    return http_request(port, "POST", path, hdrs, json, strlen(json), 0, r);
}

int http_get(int port, const char *path, http_reply *r)
{
    return http_request(port, "GET", path, NULL, NULL, 0, 0, r);
}

void http_reply_free(http_reply *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

const char *http_header(const http_reply *r, const char *name, char *buf, size_t size)
{
    size_t nl = strlen(name);
    for (const char *p = r->headers; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(p + len - v);
            while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
                vl--;
            if (vl >= size)
                vl = size - 1;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            return buf;
        }
        p = eol ? eol + 1 : NULL;
    }
    return NULL;
}

int raw_connect_to(const char *host, int port)
{
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof(a4));
    memset(&a6, 0, sizeof(a6));
    const struct sockaddr *sa;
    socklen_t len;
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)port);
        sa = (const struct sockaddr *)&a4;
        len = sizeof(a4);
    } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)port);
        sa = (const struct sockaddr *)&a6;
        len = sizeof(a6);
    } else {
        return -1;
    }
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, sa, len) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

int raw_connect(int port)
{
    return raw_connect_to("127.0.0.1", port);
}

void raw_read_all(int fd, char *buf, size_t size)
{
    size_t n = 0;
    ssize_t r;
    while (n + 1 < size && (r = read(fd, buf + n, size - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
}
