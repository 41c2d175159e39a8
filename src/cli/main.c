/* main.c - the dynrag command-line tool: one table of subcommands. */
#define _GNU_SOURCE
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

/* Every subcommand, in the order `dynrag help` lists them. */
static const cli_command commands[] = {
    {"help", "show help for dynrag or one command",
     "usage: dynrag help [COMMAND]\n"
     "\n"
     "Without COMMAND, lists every command. With it, prints that command's help\n"
     "(the same as `dynrag COMMAND --help`).\n",
     cmd_help},
    {"dataset", "build labelled data sets (query complexity A/B/C)",
     "usage: dynrag dataset complexity --data DIR --out DIR [--seed N] [--valid-frac F]\n"
     "                                 [--holdout SOURCE] [--max-per-label N]\n"
     "                                 [--balance-ratio R] [--augment]\n"
     "\n"
     "Builds the Adaptive-RAG-style query-complexity data set: A = no retrieval\n"
     "(CLINC150 small_talk, meta and clock/calculator utility intents), B = one step\n"
     "(NQ-open dev, EfficientQA dev), C = multi-step (MuSiQue dev, HotpotQA dev300).\n"
     "Writes DIR/train.jsonl and DIR/valid.jsonl as {\"text\",\"label\",\"source\"} lines.\n"
     "\n"
     "  --data DIR           the data folder (clinc150/, nq-open/, musique/, hotpotqa/)\n"
     "  --out DIR            output folder, created if missing\n"
     "  --seed N             shuffle/subsample seed (default 13)\n"
     "  --valid-frac F       share of each label in valid.jsonl, 0..0.9 (default 0.1)\n"
     "  --holdout SOURCE     leave SOURCE (musique, hotpotqa, nq, efficientqa, clinc150)\n"
     "                       out of train/valid and write it to DIR/holdout-SOURCE.jsonl\n"
     "  --max-per-label N    at most N examples per label\n"
     "  --balance-ratio R    at most R x the smallest label's count per label\n"
     "                       (default 2; 0 = off)\n"
     "  --augment            add self-contained MuSiQue sub-questions to train as B\n"
     "                       (source musique-sub; skipped when musique is held out)\n",
     cmd_dataset},
    {"router", "train, run and evaluate the query-complexity classifier",
     "usage: dynrag router train --train FILE --valid FILE --out MODEL\n"
     "                           [--config k=v,...] [--seed N] [--threads N]\n"
     "       dynrag router predict --model MODEL [--head NAME] [--json] QUERY\n"
     "       dynrag router predict --model MODEL [--head NAME] [--json] --input FILE.jsonl\n"
     "       dynrag router eval --model MODEL --data FILE.jsonl [--head NAME] [--json]\n"
     "\n"
     "A T5-style encoder classifier in a safetensors file (docs/classifier.md).\n"
     "Data files are JSON Lines {\"text\", \"label\"} (`dynrag dataset complexity`).\n"
     "\n"
     "train    learns a BPE tokenizer and the model on --train, keeps the epoch with\n"
     "         the best macro-F1 on --valid, writes --out. --config sets model and\n"
     "         training settings, e.g. d_model=128,n_layers=2,epochs=20,lr=1e-3,\n"
     "         dropout=0.1,batch_size=32,patience=4,head=complexity. Deterministic\n"
     "         for a given --seed (default 1) and --threads (default 1).\n"
     "predict  prints the label and the probability of every label (a JSON line each\n"
     "         with --json); --input reads {\"text\"} lines (\"-\" = stdin).\n"
     "eval     accuracy, macro-F1, per-label recall/precision/F1, confusion matrix.\n",
     cmd_router},
    {"version", "print the version",
     "usage: dynrag version\n\nPrints the version of the dynrag tool and library.\n",
     cmd_version},
};

const cli_command *cli_find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_overview(FILE *out)
{
    fprintf(out, "usage: dynrag COMMAND [OPTIONS] [ARGS]\n\n"
                 "DynamicRAG: a routed retrieval-augmented generation engine.\n\n"
                 "Commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun `dynrag COMMAND --help` for a command's options.\n");
}

static int cmd_help(int argc, char **argv)
{
    if (argc <= 1) {
        print_overview(stdout);
        return CLI_OK;
    }
    if (argc > 2)
        return cli_usage_error("help", "expected at most one command name");
    if (cli_find_command(argv[1]) == NULL)
        return cli_usage_error("help", "unknown command '%s'", argv[1]);
    cli_print_usage(argv[1]);
    return CLI_OK;
}

static int cmd_version(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return cli_usage_error("version", "takes no arguments");
    printf("dynrag %s\n", dynrag_version());
    return CLI_OK;
}

static void log_to_stderr(void *user, dynrag_log_level level, const char *module, const char *msg)
{
    (void)user;
    fprintf(stderr, "dynrag: %s: %s: %s\n", dynrag_log_level_name(level), module, msg);
}

int main(int argc, char **argv)
{
    const char *lvl = getenv("DYNRAG_LOG");
    dynrag_log_level min = DYNRAG_LOG_WARN;
    if (lvl && strcmp(lvl, "debug") == 0)
        min = DYNRAG_LOG_DEBUG;
    else if (lvl && strcmp(lvl, "info") == 0)
        min = DYNRAG_LOG_INFO;
    else if (lvl && strcmp(lvl, "error") == 0)
        min = DYNRAG_LOG_ERROR;
    dynrag_log_set(log_to_stderr, NULL, min);

    if (argc < 2) {
        print_overview(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        print_overview(stdout);
        return CLI_OK;
    }
    if (strcmp(name, "--version") == 0)
        return cmd_version(1, argv + 1);
    const cli_command *cmd = cli_find_command(name);
    if (cmd == NULL) {
        const char *best = NULL;
        size_t best_d = 3;
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
            size_t d = 0;
            const char *a = name, *b = commands[i].name;
            /* cheap prefix/edit heuristic: common prefix length */
            while (*a && *b && *a == *b) {
                a++;
                b++;
            }
            d = strlen(a) + strlen(b);
            if (d < best_d) {
                best_d = d;
                best = commands[i].name;
            }
        }
        if (best)
            fprintf(stderr, "dynrag: unknown command '%s' (did you mean '%s'?)\n", name, best);
        else
            fprintf(stderr, "dynrag: unknown command '%s'; run `dynrag help`\n", name);
        return CLI_USAGE;
    }
    if (cli_wants_help(argc - 1, argv + 1)) {
        cli_print_usage(cmd->name);
        return CLI_OK;
    }
    return cmd->run(argc - 1, argv + 1);
}
