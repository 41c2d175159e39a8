/*
 * fuzz_pipeline.c - libFuzzer harness for the pipeline loader.
 *
 * Feeds arbitrary bytes to dynrag_pipeline_load_string() and, when they
 * load, to dynrag_pipeline_to_json(); formats the diagnostics either way.
 * ASan/UBSan (and libFuzzer's leak check) turn any crash, overflow, leak or
 * undefined behaviour into a finding; -timeout catches hangs. Build and run
 * with scripts/fuzz.sh.
 */
#include "dynrag/pipeline.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dynrag_pipeline *p = NULL;
    dynrag_diags *d = NULL;
    dynrag_error err;
    int rc = dynrag_pipeline_load_string((const char *)data, size, "fuzz.yaml", FUZZ_BASE_DIR,
                                         &p, &d, &err);
    if (rc == DYNRAG_OK) {
        if (p == NULL)
            abort(); /* success must return a pipeline */
        free(dynrag_pipeline_to_json(p));
    } else if (p != NULL) {
        abort(); /* failure must not */
    }
    free(dynrag_diags_format(d));
    dynrag_pipeline_free(p);
    dynrag_diags_free(d);
    return 0;
}
