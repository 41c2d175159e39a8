/*
 * fuzz_index.c - libFuzzer harness for opening and searching damaged index
 * folders.
 *
 * On the first call it builds two small indexes in a private temporary
 * folder: one BM25-only, one with the builtin dense embedder (dim 16,
 * Flat). Each input then damages ONE file of one of them and opens and
 * searches the result in every mode the index has:
 *
 *   byte 0       target: 0 plain index.db, 1 plain bm25.idx, 2 dense
 *                index.db, 3 dense bm25.idx, 4 dense dense.faiss (mod 5)
 *   then records of 6 bytes, applied in order:
 *     u32 offset (little-endian, taken modulo the current file size)
 *     u8  op: 0 set the byte, 1 xor it, 2 truncate the file at offset,
 *             3 set 8 bytes from offset (SQLite varints, sizes)   (mod 4)
 *     u8  value
 *
 * Errors from open or search are fine; crashes, sanitizer reports, leaks
 * and hangs (libFuzzer's -timeout) are findings. Build and run with
 * scripts/fuzz.sh (`scripts/fuzz.sh 300 index`).
 */
#define _GNU_SOURCE
#include "dynrag/index.h"
#include "dynrag/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_FILES 3
static const char *const file_names[N_FILES] = {"index.db", "bm25.idx", "dense.faiss"};

typedef struct template_index {
    char dir[512];
    unsigned char *files[N_FILES];
    size_t lens[N_FILES];
    int n_files;
} template_index;

static template_index templates[2];
static char work[512];
static int ready;

/* Builds the two template indexes once; aborts when that fails (the
 * harness itself is broken then, not the code under test). */
static void setup(void)
{
    dynrag_log_set(NULL, NULL, DYNRAG_LOG_ERROR);
    char root[] = "/tmp/fuzz_index.XXXXXX";
    if (mkdtemp(root) == NULL)
        abort();
    static const char corpus[] =
        "{\"_id\":\"d1\",\"title\":\"Bees\",\"text\":\"Bees make honey in the hive and "
        "pollinate flowers.\"}\n"
        "{\"_id\":\"d2\",\"title\":\"Volcanoes\",\"text\":\"Magma rises and erupts as lava; "
        "ash can stop air travel.\"}\n"
        "{\"_id\":\"d3\",\"title\":\"Black holes\",\"text\":\"Gravity so strong that light "
        "cannot escape.\"}\n";
    char in[600];
    snprintf(in, sizeof(in), "%s/corpus.jsonl", root);
    if (fuzz_write_all(in, (const unsigned char *)corpus, sizeof(corpus) - 1) != 0)
        abort();
    snprintf(work, sizeof(work), "%s/work", root);
    for (int t = 0; t < 2; t++) {
        template_index *T = &templates[t];
        snprintf(T->dir, sizeof(T->dir), "%s/%s", root, t ? "dense" : "plain");
        dynrag_build_options o;
        dynrag_build_options_init(&o);
        o.no_dense = t == 0;
        o.embedder.dim = 16;
        const char *inputs[1] = {in};
        dynrag_error err;
        if (dynrag_index_add(T->dir, inputs, 1, &o, NULL, &err) != DYNRAG_OK) {
            fprintf(stderr, "fuzz_index: cannot build the template: %s\n", dynrag_errmsg(&err));
            abort();
        }
        T->n_files = t ? 3 : 2;
        for (int f = 0; f < T->n_files; f++) {
            char path[700];
            snprintf(path, sizeof(path), "%s/%s", T->dir, file_names[f]);
            T->files[f] = fuzz_read_all(path, &T->lens[f]);
            if (T->files[f] == NULL)
                abort();
        }
    }
    ready = 1;
}

static void search_all(dynrag_index *idx, int modes)
{
    static const char *const queries[] = {"bees honey", "lava ash volcano", "light gravity",
                                          "\"NEAR(x y) AND -z*"};
    for (int m = 0; m < modes; m++)
        for (size_t q = 0; q < sizeof(queries) / sizeof(queries[0]); q++) {
            dynrag_search_options o;
            dynrag_search_options_init(&o);
            o.mode = (dynrag_search_mode)m;
            o.k = 5;
            dynrag_hits h;
            dynrag_error err;
            if (dynrag_index_search(idx, queries[q], &o, &h, &err) == DYNRAG_OK) {
                if (h.n > 5)
                    abort(); /* more hits than asked for */
                for (size_t i = 0; i < h.n; i++)
                    if (h.hits[i].doc_id == NULL || h.hits[i].text == NULL)
                        abort();
                dynrag_hits_free(&h);
            }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready)
        setup();
    if (size < 1)
        return 0;
    int target = data[0] % 5;
    int t = target < 2 ? 0 : 1;
    int victim = t == 0 ? target : target - 2;
    template_index *T = &templates[t];
    unsigned char *buf = malloc(T->lens[victim] ? T->lens[victim] : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, T->files[victim], T->lens[victim]);
    size_t len = T->lens[victim];
    for (size_t i = 1; i + 6 <= size && len > 0; i += 6) {
        uint32_t off = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8 |
                       (uint32_t)data[i + 2] << 16 | (uint32_t)data[i + 3] << 24;
        size_t at = off % len;
        unsigned char v = data[i + 5];
        switch (data[i + 4] % 4) {
        case 0: buf[at] = v; break;
        case 1: buf[at] ^= v; break;
        case 2: len = at; break;
        default:
            for (size_t j = at; j < len && j < at + 8; j++)
                buf[j] = v;
            break;
        }
    }
    if (mkdir(work, 0755) != 0 && access(work, F_OK) != 0)
        abort();
    for (int f = 0; f < N_FILES; f++) {
        char path[700];
        snprintf(path, sizeof(path), "%s/%s", work, file_names[f]);
        if (f >= T->n_files) {
            unlink(path);
            continue;
        }
        if (fuzz_write_all(path, f == victim ? buf : T->files[f], f == victim ? len : T->lens[f]) != 0)
            abort();
    }
    free(buf);
    dynrag_index *idx = NULL;
    dynrag_error err;
    if (dynrag_index_open(work, NULL, &idx, &err) == DYNRAG_OK) {
        search_all(idx, t ? 3 : 1);
        dynrag_index_close(idx);
    } else if (idx != NULL) {
        abort(); /* a failed open must not return an index */
    }
    return 0;
}
