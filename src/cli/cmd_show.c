/* cmd_show.c - `dynrag show FILE`: the resolved pipeline as JSON. */
#include "cli.h"

#include "dynrag/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* `dynrag show FILE`: the resolved pipeline as JSON on stdout. */
int cmd_show(int argc, char **argv)
{
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "--") == 0)
        first = 2;
    else if (argc > 1 && argv[1][0] == '-' && argv[1][1] != '\0')
        return cli_usage_error("show", "unknown option '%s'", argv[1]);
    if (argc - first != 1)
        return cli_usage_error("show", "expected exactly one pipeline file");
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = NULL;
    dynrag_error err;
    dynrag_error_clear(&err);
    int status = CLI_OK;
    if (dynrag_pipeline_load(argv[first], &p, &d, &err) != DYNRAG_OK) {
        char *text = dynrag_diags_count(d) > 0 ? dynrag_diags_format(d) : NULL;
        if (text != NULL)
            fputs(text, stderr);
        else
            cli_error("show", "%s", dynrag_errmsg(&err));
        free(text);
        status = CLI_FAIL;
    } else {
        char *json = dynrag_pipeline_to_json(p);
        if (json == NULL) {
            cli_error("show", "out of memory");
            status = CLI_FAIL;
        } else {
            printf("%s\n", json);
            free(json);
        }
    }
    dynrag_pipeline_free(p);
    dynrag_diags_free(d);
    return status;
}
