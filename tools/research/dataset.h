/*
 * research/dataset.h - building the labelled query-complexity data set (the
 * research tools module, tools/research/: not part of libdynrag; the CLI,
 * the tests and the benchmarks link it as the static library dynrag_tools).
 *
 * Labels follow Adaptive-RAG: A = answer without retrieval, B = one
 * retrieval step, C = several retrieval steps. The builder reads the public
 * data sets in a data folder (layout of ../shared/data, see its README.md):
 *
 *   A  clinc150/{train,val}.json utterances whose intent is in the domains
 *      small_talk or meta of clinc150/domains.json, or is one of the
 *      self-contained utility intents listed in DYNRAG_DATASET_A_UTILITY
 *   B  nq-open/NQ-open.dev.jsonl and nq-open/NQ-open.efficientqa.dev.1.1.jsonl
 *   C  musique/dev_train.json and hotpotqa/dev300.jsonl
 *
 * and writes JSON Lines {"text","label","source"} files to an output folder:
 * train.jsonl and valid.jsonl (a seeded shuffle, split per label), and with
 * a holdout source holdout-<source>.jsonl holding every record of that
 * source, which then appears in neither train nor valid.
 */
#ifndef DYNRAG_RESEARCH_DATASET_H
#define DYNRAG_RESEARCH_DATASET_H

#include "dynrag/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The utility-domain CLINC150 intents labelled A (plus `timezone`, which
 * CLINC150 files under travel): requests a clock, a calculator or a random
 * number answers. Excluded: weather (live data), definition (a lexical
 * knowledge lookup, phrased like NQ factoids), and the device actions
 * find_phone, share_location, make_call, text (not questions). */
#define DYNRAG_DATASET_A_UTILITY                                                        \
    "alarm", "calculator", "date", "flip_coin", "measurement_conversion", "roll_dice", \
        "spelling", "time", "timer", "timezone"

/* Sources, in the order the builder reads them. */
typedef enum dynrag_dataset_source {
    DYNRAG_DATASET_SRC_CLINC150 = 0,
    DYNRAG_DATASET_SRC_NQ,
    DYNRAG_DATASET_SRC_EFFICIENTQA,
    DYNRAG_DATASET_SRC_MUSIQUE,
    DYNRAG_DATASET_SRC_HOTPOTQA,
    DYNRAG_DATASET_SRC_MUSIQUE_SUB, /* --augment: MuSiQue sub-questions, label B */
    DYNRAG_DATASET_SRC_COMPARISON,  /* --augment-comparisons: synthetic, label C */
    DYNRAG_DATASET_SRC_COMPARISON_SINGLE, /* --augment-comparisons: their one-entity
                                             counterparts, label B */
    DYNRAG_DATASET_SRC_CHAIN,        /* --augment-chains: synthetic 2-3 hop, label C */
    DYNRAG_DATASET_SRC_CHAIN_SINGLE, /* --augment-chains: one-hop counterparts, label B */
    DYNRAG_DATASET_N_SOURCES
} dynrag_dataset_source;

#define DYNRAG_DATASET_N_LABELS 3 /* A, B, C */

/* "clinc150", "nq", "efficientqa", "musique", "hotpotqa", "musique-sub", "comparison",
 * "comparison-single", "chain", "chain-single";
 * NULL when out of range. Static strings. */
const char *dynrag_dataset_source_name(int source);
/* "A", "B", "C"; NULL when out of range. */
const char *dynrag_dataset_label_name(int label);

typedef struct dynrag_dataset_options {
    const char *data_dir;   /* folder with clinc150/, nq-open/, musique/, hotpotqa/ */
    const char *out_dir;    /* created when missing */
    uint64_t seed;          /* shuffle and subsampling seed (default 13) */
    double valid_frac;      /* share of each label written to valid.jsonl, [0, 0.9] (0.1) */
    const char *holdout;    /* NULL, or a source name (not musique-sub) to hold out */
    size_t max_per_label;   /* 0 = no absolute cap (default) */
    double balance_ratio;   /* each label keeps at most ratio x the smallest
                               label's count; 0 disables (default 2) */
    bool augment;           /* add MuSiQue sub-questions as B to train.jsonl */
    size_t augment_comparisons; /* add this many synthetic comparison questions
                                   ("Who is older, X or Y?") as C and as many
                                   one-entity questions ("When was X born?") as B
                                   to train.jsonl, from NQ/MuSiQue entities;
                                   0 = off (default) */
    size_t augment_chains;  /* add this many synthetic compositional questions
                               ("When was the spouse of the director of X
                               born?", 2-3 lookups) as C and as many one-lookup
                               ones ("Who is the director of X?") as B to
                               train.jsonl, over the same entities; 0 = off */
    bool eval_split;        /* hold out evaluation sets, each in eval-<source>.jsonl and in
                               neither train nor valid: CLINC150 val.json (its small_talk
                               and meta utterances; its utility ones are dropped), all of
                               EfficientQA (no entities harvested from it) and every fifth
                               MuSiQue question (items 4, 9, 14, ... of dev_train.json,
                               with their sub-questions and entities); counted as holdout
                               in the stats. Combine with holdout "hotpotqa" for the
                               leave-one-source-out share (docs/classifier.md) */
} dynrag_dataset_options;

/* Counts of one build. Indices are dynrag_dataset_source / label values. */
typedef struct dynrag_dataset_stats {
    size_t read[DYNRAG_DATASET_N_SOURCES];       /* records read with usable text */
    size_t duplicates[DYNRAG_DATASET_N_SOURCES]; /* dropped: same normalised text seen before */
    size_t train[DYNRAG_DATASET_N_SOURCES];
    size_t valid[DYNRAG_DATASET_N_SOURCES];
    size_t holdout[DYNRAG_DATASET_N_SOURCES];
    size_t train_label[DYNRAG_DATASET_N_LABELS];
    size_t valid_label[DYNRAG_DATASET_N_LABELS];
    size_t holdout_label[DYNRAG_DATASET_N_LABELS];
    size_t label_cap; /* the per-label cap applied before the split (SIZE_MAX: none) */
} dynrag_dataset_stats;

/* Fills opt with the defaults above (data_dir and out_dir NULL). */
void dynrag_dataset_options_init(dynrag_dataset_options *opt);

/*
 * Builds the complexity data set described at the top of this header.
 * Deterministic: the same inputs, seed and options give byte-identical
 * files. Texts are trimmed with white space runs collapsed; records whose
 * normalised text (case-folded, collapsed, without a trailing '?') was
 * already seen are dropped, the holdout source's records taking precedence.
 * Balance: after the holdout is set aside, each label is subsampled (seeded)
 * to min(max_per_label, balance_ratio x smallest non-empty label count);
 * then each label is split valid_frac / rest into valid / train. Augmented
 * sub-questions (only those with no "#1"-style reference to an earlier
 * answer and not in the "entity >> relation" form) go to train only, after
 * balancing, and are left out when musique is the holdout. Synthetic
 * comparison questions (augment_comparisons) also go to train only, after
 * balancing, with as many one-entity counterparts (label B); their entities come from the MuSiQue decompositions and the
 * NQ-open/EfficientQA answers, never from HotpotQA or the holdout source,
 * and their generator is seeded by the seed alone; the same holds for the
 * compositional questions (augment_chains) (which real records go
 * to train and to valid does not change with it; their order does).
 * st (may be NULL) gets the counts. Fails with DYNRAG_ERR_INVALID for bad
 * options, DYNRAG_ERR_IO for a missing or unreadable file and
 * DYNRAG_ERR_PARSE / DYNRAG_ERR_FORMAT for malformed input, err naming the
 * file (and line); no output file is replaced on failure of the reading
 * phase. Files are written atomically.
 */
int dynrag_dataset_complexity(const dynrag_dataset_options *opt,
                                         dynrag_dataset_stats *st, dynrag_error *err);

#ifdef __cplusplus
}
#endif
#endif
