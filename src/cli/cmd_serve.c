/* cmd_serve.c - `dynrag serve`: the pipeline as an HTTP microservice. */
#define _GNU_SOURCE
#include "cli.h"

#include "dynrag/pipeline.h"
#include "dynrag/server.h"

#include <ctype.h>
#include <getopt.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Loads a pipeline, printing every diagnostic on failure. */
static dynrag_pipeline *load_pipeline(const char *path)
{
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    if (dynrag_pipeline_load(path, &p, &d, &err) != DYNRAG_OK) {
        char *text = d ? dynrag_diags_format(d) : NULL;
        if (text && *text)
            fputs(text, stderr);
        else
            cli_error("serve", "%s", dynrag_errmsg(&err));
        free(text);
    }
    dynrag_diags_free(d);
    return p;
}

/* True for a Web origin: "http://" or "https://", a host of letters,
 * digits, '.', '-', '[', ']', ':' (IPv6 and port), nothing else. */
static bool origin_ok(const char *o)
{
    const char *host = strncmp(o, "http://", 7) == 0    ? o + 7
                       : strncmp(o, "https://", 8) == 0 ? o + 8
                                                        : NULL;
    if (host == NULL || *host == '\0')
        return false;
    for (const char *c = host; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr(".-[]:", *c))
            return false;
    return true;
}

int cmd_serve(int argc, char **argv)
{
    enum {
        O_PIPELINE = 1,
        O_INDEX,
        O_HOST,
        O_PORT,
        O_THREADS,
        O_KEYENV,
        O_MAXBODY,
        O_TIMEOUT,
        O_MAXCONN,
        O_LOG,
        O_NOLOG,
        O_DRAIN,
        O_CORS
    };
    static const struct option longopts[] = {
        {"pipeline", required_argument, NULL, O_PIPELINE},
        {"index", required_argument, NULL, O_INDEX},
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"threads", required_argument, NULL, O_THREADS},
        {"api-key-env", required_argument, NULL, O_KEYENV},
        {"max-body", required_argument, NULL, O_MAXBODY},
        {"timeout-ms", required_argument, NULL, O_TIMEOUT},
        {"max-connections", required_argument, NULL, O_MAXCONN},
        {"log", required_argument, NULL, O_LOG},
        {"no-log", no_argument, NULL, O_NOLOG},
        {"drain-timeout", required_argument, NULL, O_DRAIN},
        {"cors-origin", required_argument, NULL, O_CORS},
        {NULL, 0, NULL, 0},
    };
    const char *pipeline = NULL, *key_env = NULL;
    dynrag_server_options so;
    dynrag_server_options_init(&so);
    so.port = 8080;
    long long v;
    double dv;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_PIPELINE: pipeline = optarg; break;
        case O_INDEX: so.index_dir = optarg; break;
        case O_HOST: so.host = optarg; break;
        case O_PORT:
            if (!cli_parse_int("serve", "--port", optarg, 0, 65535, &v))
                return CLI_USAGE;
            so.port = (int)v;
            break;
        case O_THREADS:
            if (!cli_parse_int("serve", "--threads", optarg, 1, 1024, &v))
                return CLI_USAGE;
            so.threads = (int)v;
            break;
        case O_KEYENV: key_env = optarg; break;
        case O_MAXBODY:
            if (!cli_parse_int("serve", "--max-body", optarg, 1024, (long long)1 << 30, &v))
                return CLI_USAGE;
            so.max_body = (size_t)v;
            break;
        case O_TIMEOUT:
            if (!cli_parse_int("serve", "--timeout-ms", optarg, 1, 3600000, &v))
                return CLI_USAGE;
            so.timeout_ms = (int)v;
            break;
        case O_MAXCONN:
            if (!cli_parse_int("serve", "--max-connections", optarg, 1, 1000000, &v))
                return CLI_USAGE;
            so.max_connections = (int)v;
            break;
        case O_LOG: so.log_path = optarg; break;
        case O_NOLOG: so.no_log = true; break;
        case O_DRAIN:
            if (!cli_parse_double("serve", "--drain-timeout", optarg, 0.001, 3600, &dv))
                return CLI_USAGE;
            so.drain_timeout_ms = (int)(dv * 1000 + 0.5);
            break;
        case O_CORS:
            if (!origin_ok(optarg))
                return cli_usage_error("serve",
                                       "--cors-origin '%s': expected an origin such as "
                                       "http://localhost:3000 (scheme://host[:port], no path)",
                                       optarg);
            so.cors_origin = optarg;
            break;
        default:
            return cli_usage_error("serve", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    if (pipeline == NULL)
        return cli_usage_error("serve", "--pipeline FILE is required");
    if (so.log_path && so.no_log)
        return cli_usage_error("serve", "--log and --no-log exclude each other");
    if (key_env) {
        so.api_key = getenv(key_env);
        if (so.api_key == NULL || *so.api_key == '\0') {
            cli_error("serve", "--api-key-env %s: the variable is not set or empty", key_env);
            return CLI_FAIL;
        }
    }

    /* Replies of a hundred hits are 100-200 KB: above glibc's initial mmap
     * threshold, and freed in another thread (the connection's pump) than
     * the one that made them. Left to its dynamic thresholds, malloc maps
     * and unmaps (or trims and re-faults) such buffers per request; fixed
     * thresholds keep them in the heap. Idle connections still hand large
     * buffers back (malloc_trim when they close). */
    (void)mallopt(M_MMAP_THRESHOLD, 4 << 20);
    (void)mallopt(M_TRIM_THRESHOLD, 64 << 20);
    dynrag_pipeline *p = load_pipeline(pipeline);
    if (p == NULL)
        return CLI_FAIL;
    dynrag_server *s = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    int rc = CLI_OK;
    if (dynrag_server_open(p, &so, &s, &err) != DYNRAG_OK ||
        dynrag_server_stop_on_signals(s, &err) != DYNRAG_OK ||
        dynrag_server_start(s, &err) != DYNRAG_OK) {
        cli_error("serve", "%s", dynrag_errmsg(&err));
        rc = CLI_FAIL;
        goto cleanup;
    }
    if (strchr(so.host, ':'))
        printf("listening on http://[%s]:%d\n", so.host, dynrag_server_port(s));
    else
        printf("listening on http://%s:%d\n", so.host, dynrag_server_port(s));
    fflush(stdout);
    dynrag_server_wait(s);
    fprintf(stderr, "dynrag serve: stopping (draining in-flight requests)\n");
    if (dynrag_server_stop(s, &err) != DYNRAG_OK) {
        cli_error("serve", "saving state: %s", dynrag_errmsg(&err));
        rc = CLI_FAIL;
    }
cleanup:
    dynrag_server_close(s);
    dynrag_pipeline_free(p);
    return rc;
}
