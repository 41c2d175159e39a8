/* cmd_validate.c - `dynrag validate FILE...`: check pipeline files. */
#include "cli.h"

#include "dynrag/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints a failed load's diagnostics (or its error) on stderr. */
static void print_failure(const char *cmd, const dynrag_diags *d, const dynrag_error *err)
{
    char *text = dynrag_diags_count(d) > 0 ? dynrag_diags_format(d) : NULL;
    if (text != NULL)
        fputs(text, stderr);
    else
        cli_error(cmd, "%s", dynrag_errmsg(err));
    free(text);
}

int cmd_validate(int argc, char **argv)
{
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "--") == 0)
        first = 2;
    else
        for (int i = 1; i < argc; i++)
            if (argv[i][0] == '-' && argv[i][1] != '\0')
                return cli_usage_error("validate", "unknown option '%s'", argv[i]);
    if (first >= argc)
        return cli_usage_error("validate", "expected at least one pipeline file");
    int status = CLI_OK;
    for (int i = first; i < argc; i++) {
        dynrag_pipeline *p = NULL;
        dynrag_diags *d = NULL;
        dynrag_error err;
        dynrag_error_clear(&err);
        int rc = dynrag_pipeline_load(argv[i], &p, &d, &err);
        if (rc == DYNRAG_OK) {
            printf("%s: OK\n", argv[i]);
        } else {
            print_failure("validate", d, &err);
            status = CLI_FAIL;
        }
        dynrag_pipeline_free(p);
        dynrag_diags_free(d);
    }
    return status;
}
