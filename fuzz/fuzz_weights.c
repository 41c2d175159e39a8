/*
 * fuzz_weights.c - libFuzzer harness for weight files: the safetensors
 * parser (nn/safetensors.c) and the classifier loader on top of it
 * (metadata, config, tokenizer JSON, tensor shapes), then one prediction
 * with whatever loads. Build with -DDYNRAG_FUZZ=ON and clang; run:
 *   build-fuzz/fuzz_weights -max_total_time=300 fuzz/corpus_weights
 * Seed corpus: fuzz/corpus/weights/ (the golden tiny model and variants).
 */
#include "nn/model.h"
#include "nn/safetensors.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dynrag_error err;
    dr_st_file *f = NULL;
    if (dr_st_parse(data, size, &f, &err) == DYNRAG_OK) {
        float v[4];
        for (size_t i = 0; i < dr_st_count(f); i++) {
            const dr_st_tensor *t = dr_st_at(f, i);
            if (t->dtype == DR_ST_F32 && t->numel <= 4 && t->ndim <= 8)
                dr_st_read_f32(f, t->name, t->ndim, t->shape, v, &err);
        }
        dr_st_close(f);
    }
    dr_classifier *c = NULL;
    if (dr_classifier_load_buffer(data, size, &c, &err) == DYNRAG_OK) {
        float probs[DR_T5_MAX_LABELS];
        dr_classifier_predict(c, 0, "Who directed the film? \xc3\x89t\xc3\xa9 \xff", probs, &err);
        dr_classifier_free(c);
    }
    return 0;
}
