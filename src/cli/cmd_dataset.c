/* cmd_dataset.c - `dynrag dataset complexity`: build the labelled
 * query-complexity data set (tools/research/dataset.h, the research tools module); `dynrag dataset
 * routerdc|routerbench`: convert routing benchmarks to outcome tables
 * (include/dynrag/outcomes.h). */
#include "cli.h"

#include "research/dataset.h"
#include "dynrag/outcomes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_stats(const dynrag_dataset_options *opt, const dynrag_dataset_stats *st)
{
    printf("%-17s %5s %6s %6s %6s %6s %8s\n", "source", "label", "read", "dups", "train",
           "valid", "holdout");
    for (int s = 0; s < DYNRAG_DATASET_N_SOURCES; s++) {
        if (st->read[s] == 0)
            continue;
        /* Label of each source: musique-sub, comparison-single and chain-single
         * are B, comparison and chain C, the rest follow the header. */
        static const char *const lab[DYNRAG_DATASET_N_SOURCES] = {"A", "B", "B", "C", "C", "B",
                                                                     "C", "B", "C", "B"};
        printf("%-17s %5s %6zu %6zu %6zu %6zu %8zu\n", dynrag_dataset_source_name(s), lab[s],
               st->read[s], st->duplicates[s], st->train[s], st->valid[s], st->holdout[s]);
    }
    for (int l = 0; l < DYNRAG_DATASET_N_LABELS; l++)
        printf("label %s: train %zu, valid %zu, holdout %zu\n", dynrag_dataset_label_name(l),
               st->train_label[l], st->valid_label[l], st->holdout_label[l]);
    if (st->label_cap == (size_t)-1)
        printf("per-label cap: none\n");
    else
        printf("per-label cap: %zu\n", st->label_cap);
    printf("wrote %s/train.jsonl, %s/valid.jsonl", opt->out_dir, opt->out_dir);
    if (opt->holdout)
        printf(", %s/holdout-%s.jsonl", opt->out_dir, opt->holdout);
    if (opt->eval_split)
        printf(", %s/eval-{clinc150,efficientqa,musique}.jsonl", opt->out_dir);
    printf("\n");
}

static int dataset_complexity(int argc, char **argv)
{
    const char *cmd = "dataset complexity";
    dynrag_dataset_options opt;
    dynrag_dataset_options_init(&opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n = 0;
        if (strcmp(a, "--augment") == 0) {
            opt.augment = true;
            continue;
        }
        if (strcmp(a, "--eval-split") == 0) {
            opt.eval_split = true;
            continue;
        }
        if (a[0] != '-' || a[1] != '-')
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        if (v == NULL)
            return cli_usage_error(cmd, "%s needs a value", a);
        i++;
        if (strcmp(a, "--data") == 0) {
            opt.data_dir = v;
        } else if (strcmp(a, "--out") == 0) {
            opt.out_dir = v;
        } else if (strcmp(a, "--seed") == 0) {
            if (!cli_parse_int(cmd, a, v, 0, INT64_MAX, &n))
                return CLI_USAGE;
            opt.seed = (uint64_t)n;
        } else if (strcmp(a, "--valid-frac") == 0) {
            if (!cli_parse_double(cmd, a, v, 0.0, 0.9, &opt.valid_frac))
                return CLI_USAGE;
        } else if (strcmp(a, "--augment-comparisons") == 0) {
            if (!cli_parse_int(cmd, a, v, 0, 1000000, &n))
                return CLI_USAGE;
            opt.augment_comparisons = (size_t)n;
        } else if (strcmp(a, "--augment-chains") == 0) {
            if (!cli_parse_int(cmd, a, v, 0, 1000000, &n))
                return CLI_USAGE;
            opt.augment_chains = (size_t)n;
        } else if (strcmp(a, "--holdout") == 0) {
            opt.holdout = v;
        } else if (strcmp(a, "--max-per-label") == 0) {
            if (!cli_parse_int(cmd, a, v, 1, 100000000, &n))
                return CLI_USAGE;
            opt.max_per_label = (size_t)n;
        } else if (strcmp(a, "--balance-ratio") == 0) {
            if (!cli_parse_double(cmd, a, v, 0.0, 1e6, &opt.balance_ratio))
                return CLI_USAGE;
            if (opt.balance_ratio != 0.0 && opt.balance_ratio < 1.0)
                return cli_usage_error(cmd, "--balance-ratio must be 0 (off) or at least 1");
        } else {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        }
    }
    if (opt.data_dir == NULL || opt.out_dir == NULL)
        return cli_usage_error(cmd, "--data and --out are required");
    dynrag_error err;
    dynrag_error_clear(&err);
    dynrag_dataset_stats st;
    int rc = dynrag_dataset_complexity(&opt, &st, &err);
    if (rc != DYNRAG_OK) {
        cli_error(cmd, "%s", dynrag_errmsg(&err));
        return rc == DYNRAG_ERR_INVALID ? CLI_USAGE : CLI_FAIL;
    }
    print_stats(&opt, &st);
    return CLI_OK;
}

/* `dataset routerdc|routerbench --in FILE --out FILE.jsonl`. */
static int dataset_convert(int argc, char **argv, bool routerdc)
{
    const char *cmd = routerdc ? "dataset routerdc" : "dataset routerbench";
    const char *in = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-' || a[1] != '-')
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        if (v == NULL)
            return cli_usage_error(cmd, "%s needs a value", a);
        i++;
        if (strcmp(a, "--in") == 0)
            in = v;
        else if (strcmp(a, "--out") == 0)
            out = v;
        else
            return cli_usage_error(cmd, "unknown option '%s'", a);
    }
    if (in == NULL || out == NULL)
        return cli_usage_error(cmd, "--in and --out are required");
    const char *ins[] = {in};
    if (!cli_check_output(cmd, "--out", out, ins, 1, true))
        return CLI_FAIL;
    dynrag_error err;
    dynrag_error_clear(&err);
    dynrag_convert_stats st;
    int rc = routerdc ? dynrag_convert_routerdc(in, out, &st, &err)
                      : dynrag_convert_routerbench(in, out, &st, &err);
    if (rc != DYNRAG_OK) {
        cli_error(cmd, "%s", dynrag_errmsg(&err));
        return rc == DYNRAG_ERR_INVALID ? CLI_USAGE : CLI_FAIL;
    }
    if (routerdc)
        printf("task %s (scores: %s): ", st.task,
               st.fractional ? "fractions of samples" : "probability-style, > 0 counts 1");
    printf("read %zu rows, wrote %zu, dropped %zu (missing scores); %zu options -> %s\n",
           st.rows_read, st.rows_written, st.rows_dropped, st.n_options, out);
    return CLI_OK;
}

int cmd_dataset(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("dataset",
                               "expected a subcommand (complexity, routerdc, routerbench)");
    if (strcmp(argv[1], "complexity") == 0)
        return dataset_complexity(argc - 1, argv + 1);
    if (strcmp(argv[1], "routerdc") == 0 || strcmp(argv[1], "routerbench") == 0)
        return dataset_convert(argc - 1, argv + 1, strcmp(argv[1], "routerdc") == 0);
    return cli_usage_error("dataset",
                           "unknown subcommand '%s' (expected complexity, routerdc or routerbench)",
                           argv[1]);
}
