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
    {"version", "print the version",
     "usage: dynrag version\n\nPrints the version of the dynrag tool and library.\n",
     cmd_version},
    {"validate", "check pipeline YAML files",
     "usage: dynrag validate FILE...\n"
     "\n"
     "Loads and validates each pipeline file. Prints `FILE: OK` for a valid file;\n"
     "for an invalid one prints every problem on stderr as\n"
     "`FILE:LINE:COL: key.path: message`. Exit status: 0 when every file is valid,\n"
     "1 otherwise, 2 on usage errors. See docs/pipeline-yaml.md for the format.\n",
     cmd_validate},
    {"show", "print a pipeline resolved as JSON",
     "usage: dynrag show FILE\n"
     "\n"
     "Loads a pipeline file and prints it as JSON with every default filled in,\n"
     "${VAR} references expanded and relative paths resolved against the file's\n"
     "folder. API keys are never printed, only the name of their variable.\n"
     "Exit status: 0 on success, 1 when the file is invalid, 2 on usage errors.\n",
     cmd_show},
    {"index", "build, extend or prune an index",
     "usage: dynrag index --index DIR [OPTIONS] INPUT...\n"
     "       dynrag index --pipeline FILE [OPTIONS] INPUT...\n"
     "       dynrag index --index DIR --delete ID [--delete ID ...]\n"
     "\n"
     "Adds documents to the index in DIR (created when absent). A document whose id\n"
     "is already indexed is replaced. INPUT is a JSONL file (BEIR {\"_id\",\"title\",\"text\"},\n"
     "{\"id\",\"contents\"} or {\"id\",\"title\",\"text\"}), a .txt/.md/.html file, or a\n"
     "folder walked for those. Every call is atomic: on error the index is unchanged.\n"
     "With --pipeline, the index and every embedder option's index change together:\n"
     "on error none changes. Only a crash between their final commits (the main\n"
     "index commits last) can leave option indexes ahead of it; the next --pipeline\n"
     "call reports that and brings them back to the main index's documents.\n"
     "\n"
     "Options:\n"
     "  --index DIR          the index folder (required unless --pipeline names one)\n"
     "  --pipeline FILE      take the index folder (unless --index) and the embedder\n"
     "                       (the first available embedder option) from a pipeline;\n"
     "                       every other embedder option gets its own dense index in\n"
     "                       DIR/embedders/<option> (the embedder stage routes to it)\n"
     "  --dim N              built-in embedder dimension (default 256; new index only)\n"
     "  --faiss FACTORY      FAISS index_factory string (default Flat), e.g. IVF64,Flat\n"
     "  --chunk-tokens N     target words per chunk (default 200)\n"
     "  --chunk-overlap N    words of overlap between chunks (default 40)\n"
     "  --skip-bad           skip and count malformed lines/files and unreadable\n"
     "                       files/folders instead of failing\n"
     "  --no-dense           BM25 only: no embeddings, no FAISS index\n"
     "  --delete ID          delete a document (repeatable; runs before any INPUT)\n"
     "  --lock-timeout SECS  give up (exit 1) when another writer still holds the\n"
     "                       index after SECS seconds (default: wait, saying so)\n",
     cmd_index},
    {"retrieve", "search an index (one query, or a batch to a TREC run)",
     "usage: dynrag retrieve --index DIR [--mode bm25|dense|hybrid] [-k K] [--json] QUERY\n"
     "       dynrag retrieve --index DIR --queries FILE.jsonl --trec OUT [--tag NAME]\n"
     "                       [--skip-bad] ...\n"
     "\n"
     "Searches the index with a plain-text query (never read as FTS5 syntax) and\n"
     "prints the best chunks (control characters in printed text are replaced).\n"
     "With --queries (JSONL {\"_id\",\"text\"}), writes a TREC run file\n"
     "`qid Q0 docid rank score tag` at document level (a document scores as its best\n"
     "chunk; only ids are read, no text) and prints QPS and latency on stderr. The\n"
     "run file is written to a temporary file renamed into place at the end: a\n"
     "failure leaves no partial run. A bad query line (not JSON, no id or text, a\n"
     "repeated id) or a failed search stops the batch naming the line, unless\n"
     "--skip-bad.\n"
     "\n"
     "Options:\n"
     "  --index DIR      the index folder (required)\n"
     "  --mode MODE      bm25 (default), dense or hybrid (reciprocal rank fusion)\n"
     "  -k K             hits (documents in a run file) per query, default 10\n"
     "  --k1 X, --b Y    BM25 parameters (default 0.9 and 0.4; 0 is a value)\n"
     "  --rrf-k X        hybrid fusion constant (default 60)\n"
     "  --depth N        hybrid: candidates from each side (default max(k, 100))\n"
     "  --nprobe N       IVF indexes: inverted lists probed per query\n"
     "  --json           print hits as JSON\n"
     "  --queries FILE   batch mode: one JSON query per line\n"
     "  --trec OUT       batch mode: the run file to write (- for stdout)\n"
     "  --tag NAME       run tag in the run file (default dynrag)\n"
     "  --skip-bad       batch mode: skip, report and count bad query lines and\n"
     "                   failed searches instead of failing\n",
     cmd_retrieve},
    {"query", "answer questions through a routed pipeline",
     "usage: dynrag query --pipeline FILE [--index DIR] [--log FILE | --no-log] [--json]\n"
     "                    [--route-only] [--budget-usd X] [--budget-ms N] [--budget-wh W]\n"
     "                    \"question\"\n"
     "       dynrag query --pipeline FILE --questions FILE.jsonl --out FILE.jsonl\n"
     "\n"
     "Runs the question through the pipeline's stages; each stage's router picks an\n"
     "option, within the pipeline's per-query budget. Prints the answer, its sources\n"
     "and the route decision of every stage (--json: the route-log record); control\n"
     "characters in printed text (from documents or a model) are replaced.\n"
     "\n"
     "  --pipeline FILE     pipeline YAML (required)\n"
     "  --index DIR         index folder (default: the pipeline's `index:`)\n"
     "  --log FILE          append route-log records here (default: the pipeline's `log:`)\n"
     "  --no-log            write no route log\n"
     "  --json              print the route-log record instead of the human summary\n"
     "  --route-only        decide every stage from the query alone; run nothing\n"
     "  --budget-usd X      this query's $ budget (tightens the pipeline's `budget:`)\n"
     "  --budget-ms N       this query's latency budget in ms (a deadline for every step)\n"
     "  --budget-wh W       this query's energy budget in Wh\n"
     "  --questions FILE    batch: JSONL with \"question\" (or \"query\"/\"text\") and an\n"
     "                      optional \"id\"; writes one record per line to --out\n"
     "\n"
     "Exit status: 0 answered, 1 failed (bad pipeline, index or endpoint, or router\n"
     "state that cannot be saved), 2 usage.\n",
     cmd_query},
    {"feedback", "give a reward to a past query (bandit routers learn from it)",
     "usage: dynrag feedback --pipeline FILE --query-id ID --reward R [--log FILE]\n"
     "\n"
     "Finds the query's record in the route log and updates every bandit router of\n"
     "the pipeline with reward R (minus the router's lambda times the query's $ cost,\n"
     "and with the router's sla_ms, minus sla_penalty times the share by which the\n"
     "record's generator latency exceeds sla_ms).\n"
     "With a bandit `state` file the reward is committed to its reward store\n"
     "(<state>.rewards.db) before \"recorded\" is printed; a running server sharing\n"
     "the file counts it too. A query id is rewarded once: a second reward, from\n"
     "here or the server, fails.\n"
     "\n"
     "Exit status: 0 recorded, 1 failed (unknown or already rewarded id, state that\n"
     "cannot be written), 2 usage.\n",
     cmd_feedback},
    {"log", "summarise a route log",
     "usage: dynrag log summary [--json] FILE\n"
     "\n"
     "Prints the route mix per stage and option, cascade escalations per stage\n"
     "(attempts, escalations, from -> to), fallbacks per stage (failed -> taken),\n"
     "cost, latency and energy totals, and counts failed queries and malformed lines\n"
     "(docs/route-log.md).\n",
     cmd_log},
    {"serve", "serve the pipeline over HTTP (retrieve, query, route, OpenAI chat)",
     "usage: dynrag serve --pipeline FILE [--index DIR] [--host ADDR] [--port N]\n"
     "                    [--threads N] [--api-key-env VAR] [--max-body BYTES]\n"
     "                    [--timeout-ms MS] [--max-connections N] [--log FILE | --no-log]\n"
     "                    [--drain-timeout S] [--cors-origin URL]\n"
     "\n"
     "Serves the pipeline as a JSON API (docs/http-api.md): POST /v1/retrieve,\n"
     "/v1/query, /v1/route, /v1/feedback, /v1/chat/completions (OpenAI-compatible,\n"
     "streaming included), GET /v1/models, /healthz and /metrics (Prometheus).\n"
     "POST bodies must be sent as `Content-Type: application/json` (else 415).\n"
     "Prints `listening on http://HOST:PORT` once bound. A re-index of the index\n"
     "folder is picked up by the next request (no restart). SIGTERM or SIGINT\n"
     "drain it: no new connections or requests (503), in-flight requests finish\n"
     "with `Connection: close` until the drain timeout, router state is saved and\n"
     "the route log flushed.\n"
     "\n"
     "  --pipeline FILE     pipeline YAML (required)\n"
     "  --index DIR         index folder (default: the pipeline's `index:`)\n"
     "  --host ADDR         numeric address to bind (default 127.0.0.1)\n"
     "  --port N            port, 0 = any free port (default 8080)\n"
     "  --threads N         worker threads, 1..1024 (default 4)\n"
     "  --api-key-env VAR   require `Authorization: Bearer $VAR` on /v1/ endpoints\n"
     "  --max-body BYTES    request body limit (default 1048576; larger: 413)\n"
     "  --timeout-ms MS     per-request time limit (default 30000; past it: 504)\n"
     "  --max-connections N open connections, 1..1000000 (default 1000; past it: 503)\n"
     "  --log FILE          route log (default: the pipeline's `log:`)\n"
     "  --no-log            write no route log\n"
     "  --drain-timeout S   longest wait for in-flight requests on stop, 0.001..3600\n"
     "                      seconds (default 10; then they are cut)\n"
     "  --cors-origin URL   allow cross-origin requests from this one origin, e.g.\n"
     "                      http://localhost:3000 (default: no CORS headers)\n"
     "\n"
     "Exit status: 0 stopped cleanly, 1 failed (pipeline, index, bind), 2 usage.\n",
     cmd_serve},
    {"eval", "evaluate a pipeline's routers against always-X, random and oracle baselines",
     "usage: dynrag eval --pipeline FILE --data FILE --format beir|qa [--qrels FILE]\n"
     "                   [--out DIR] [--index DIR] [--limit N] [--seed N] [--stages a,b]\n"
     "                   [--quality METRIC] [--cost METRIC] [--no-baselines] [--no-cache]\n"
     "       dynrag eval --replay LOG.jsonl --outcomes TABLE.jsonl [--stages S]\n"
     "                   [--quality METRIC] [--cost METRIC] [--seed N]\n"
     "       dynrag eval --pipeline FILE --outcomes TABLE.jsonl [--out DIR] [--seed N]\n"
     "                   [--strong OPTION] [--weak OPTION] [--sweep PARAM|none]\n"
     "                   [--grid V1,V2,...]\n"
     "\n"
     "Runs every query through the pipeline's routers and, for each routed stage (more\n"
     "than one available option and a non-fixed router, or those named by --stages),\n"
     "with each option forced, then compares the router with always-X, uniform random,\n"
     "random at the router's mix and the oracle (per query, the cheapest option with\n"
     "the best quality). Runs are cached in DIR/cache.jsonl: a second run re-executes\n"
     "nothing. Writes DIR/report.md, report.json, <stage>-cost-quality.svg,\n"
     "<stage>-mix.svg, outcomes.jsonl and routes.jsonl (default DIR: eval-out).\n"
     "\n"
     "  --format beir    queries.jsonl + --qrels TSV; retrieval only (k 100): nDCG@10,\n"
     "                   Recall@10/100, MRR@10 as trec_eval computes them\n"
     "  --format qa      HotpotQA/IRCoT JSONL, NQ-open JSONL, MuSiQue JSON or\n"
     "                   {question, answers} JSONL: EM, F1, answer-in-context,\n"
     "                   supporting-paragraph recall, steps, calls, tokens, $, latency\n"
     "  --quality M      oracle quality: em, f1, context, ndcg@10, ... (default f1 / ndcg@10)\n"
     "  --cost M         cost axis: latency_ms, usd, steps, calls, tokens, energy_wh\n"
     "                   (default usd when any run costs money, else latency_ms)\n"
     "  --replay LOG     offline: score the router decisions in a route log against an\n"
     "                   outcome table (--outcomes, e.g. DIR/outcomes.jsonl); quality\n"
     "                   defaults to the table's format: ndcg@10 for beir, f1 for qa\n"
     "\n"
     "With --pipeline and --outcomes (an outcome table of recorded LLM outcomes,\n"
     "docs/outcomes.md), replays the pipeline's generator stage over the table without\n"
     "calling any model: the router sees each query's text, the chosen option's\n"
     "recorded quality and cost_usd count (cascades pay every call; their judges read\n"
     "the recorded responses). Compares router, always-X, best-single, random,\n"
     "random-mix and oracle, overall and per task, with AIQ, APGR and CPT(50%/80%).\n"
     "Writes DIR/report.json, report.md, generator-cost-quality.svg and\n"
     "generator-calls.svg (default DIR: eval-out).\n"
     "  --strong/--weak  the APGR/CPT pair (default: best single / cheapest single)\n"
     "  --sweep PARAM    router parameter swept for AIQ, APGR and CPT (default:\n"
     "                   willingness_to_pay, wtp or threshold if the router has one)\n"
     "  --grid LIST      the sweep's values (default 21 values: [0, 1], or 0 and\n"
     "                   geometric values for a willingness to pay)\n"
     "\n"
     "Method and files: docs/evaluation.md.\n",
     cmd_eval},
    {"calibrate", "tune a router threshold for a target route share, cost or quality",
     "usage: dynrag calibrate --pipeline FILE --data FILE --format qa|beir [--qrels FILE]\n"
     "                        --stage S (--target-share OPTION=SHARE | --target-quality Q)\n"
     "                        [--out FILE.yaml] [--work DIR] [--quality M] [--cost M]\n"
     "       dynrag calibrate --pipeline FILE --outcomes TABLE.jsonl [--out FILE.yaml]\n"
     "                        (--target-cost USD | --target-share OPTION=SHARE |\n"
     "                         --target-quality Q) [--sweep PARAM] [--grid V1,V2,...]\n"
     "\n"
     "Sweeps the stage router's threshold (classifier and cascade `threshold` over\n"
     "101 values; knn `min_similarity` over 21 values in [0, 1], routing every query\n"
     "again at each) using the cached per-query outcomes of `dynrag eval` (DIR,\n"
     "default eval-out; runs what is missing) and picks the best-quality value whose\n"
     "share of OPTION is at most SHARE, or the cheapest value reaching quality Q.\n"
     "--out writes a copy of the pipeline file with only that parameter changed\n"
     "(comments kept), checked by loading it. Exit status 1 when no value meets the\n"
     "target (the closest is printed).\n"
     "\n"
     "With --outcomes, calibrates the generator router on an outcome table instead:\n"
     "sweeps its willingness_to_pay, wtp or threshold parameter (or --sweep PARAM) over\n"
     "101 values and picks the best-quality value whose mean cost_usd is at most USD,\n"
     "or whose share of queries calling OPTION is at most SHARE, or the cheapest value\n"
     "reaching quality Q.\n",
     cmd_calibrate},
    {"router", "train routers: the complexity classifier and outcome-trained routers",
     "usage: dynrag router train --train FILE --valid FILE --out MODEL\n"
     "                           [--config k=v,...] [--seed N] [--threads N]\n"
     "       dynrag router train --kind predict|cluster|distill|mf|preference|\n"
     "                                  contrastive|scorer\n"
     "                           --data FILE.jsonl [--data FILE.jsonl ...]\n"
     "                           [--valid FILE.jsonl] --out MODEL [--seed N] [--dim D]\n"
     "                           [--clusters C] [--lambda L] [--method ridge|knn] [--k K]\n"
     "                           [--hidden H]\n"
     "       dynrag router predict --model MODEL [--head NAME] [--json] QUERY\n"
     "       dynrag router predict --model MODEL [--head NAME] [--json] --input FILE.jsonl\n"
     "       dynrag router eval --model MODEL --data FILE.jsonl [--head NAME] [--json]\n"
     "\n"
     "A T5-style encoder classifier in a safetensors file (docs/classifier.md).\n"
     "Data files are JSON Lines {\"text\", \"label\"} (`dynrag dataset complexity`);\n"
     "train also takes soft labels {\"text\", \"targets\": {\"A\": 0.2, \"B\": 0.8}}\n"
     "(docs/classifier.md).\n"
     "\n"
     "train    learns a BPE tokenizer and the model on --train, keeps the epoch with\n"
     "         the best macro-F1 on --valid, writes --out. --config sets model and\n"
     "         training settings, e.g. d_model=128,n_layers=2,epochs=20,lr=1e-3,\n"
     "         dropout=0.1,batch_size=32,patience=4,head=complexity. Deterministic\n"
     "         for a given --seed (default 1) and --threads (default 1).\n"
     "predict  prints the label and the probability of every label (a JSON line each\n"
     "         with --json); --input reads {\"text\"} lines (\"-\" = stdin).\n"
     "eval     accuracy, macro-F1, per-label recall/precision/F1, confusion matrix.\n"
     "\n"
     "train --kind predict learns a router from outcome tables (docs/outcomes.md; the\n"
     "         --data files are merged): per option, ridge regression of the recorded\n"
     "         quality on hashed word/character n-grams (--dim, default 1024) plus the\n"
     "         query's k-means cluster (--clusters, default 64; 0 = none), and a cost\n"
     "         line over query length. The penalty (--lambda) is chosen on --valid, or\n"
     "         on a fixed 15% of the training rows (by id hash) before a refit on all.\n"
     "         Use in a pipeline's generator stage as router: {type: predict, params:\n"
     "         {model: MODEL, willingness_to_pay: W}} (docs/routers.md).\n"
     "train --kind cluster: each k-means cluster's mean quality per option (Expert\n"
     "         Router); router type cluster, same params.\n"
     "train --kind distill: a softmax classifier over the options on the same\n"
     "         features, trained on soft labels softmax(quality / 0.1) (Zooter);\n"
     "         router type distill, with max_entropy and fallback (MoDEM).\n"
     "train --kind mf: matrix factorisation (RouteLLM MF), quality = sigmoid(<P x, v_o>\n"
     "         + b_o) with a rank-16 projection P of the same features and an\n"
     "         embedding v_o per option, by SGD (30 epochs, seeded; --lambda is the\n"
     "         L2 penalty, default 1e-5; with --valid, the best epoch on it is kept);\n"
     "         router type mf, same params as predict.\n"
     "train --kind scorer: the cascades' answer-scorer judge (FrugalGPT): logistic\n"
     "         regression over hashed words of the query, the recorded \"response\" and\n"
     "         their interaction, predicting its quality; --lambda (L2) is chosen by\n"
     "         AUC like the ridge penalty. Use as router: {type: cascade, params:\n"
     "         {judge: scorer, model: MODEL, threshold: T}}.\n"
     "train --kind predict --method knn: RouterBench's kNN predictor, an option's\n"
     "         quality is its mean over the K training queries nearest to the query\n"
     "         (cosine of the n-gram embeddings; --k, else chosen on the validation\n"
     "         rows from 1..200); the model keeps the training queries; router type\n"
     "         predict, param k overrides K.\n"
     "train --kind preference: Bradley-Terry ratings from the pairwise outcomes\n"
     "         (RouteLLM SW ranking, Eagle): global ratings plus local ones from the\n"
     "         K nearest training queries weighted by similarity, mixed by a local\n"
     "         weight chosen on the validation rows; router type preference, params\n"
     "         model, willingness_to_pay, k, local_weight.\n"
     "train --kind contrastive: RouterDC's dual contrastive router, an MLP encoder of\n"
     "         the same features and an embedding per option trained with the\n"
     "         sample-option contrastive loss (top-3 options positive, bottom-3\n"
     "         negative) plus the sample-sample loss on the k-means clusters (Adam,\n"
     "         seeded; --lambda is the weight decay, default 1e-4; the best of 30\n"
     "         epochs on --valid, or without --lambda on the inner split, is kept).\n"
     "         --hidden H sets the encoder's hidden units (default 128; 0 = a linear\n"
     "         projection). Routes to the option whose embedding is nearest to the\n"
     "         query's (cosine); router type contrastive, same params as predict.\n",
     cmd_router},
    {"label", "silver complexity labels: the cheapest retrieval mode that answers",
     "usage: dynrag label --pipeline FILE --data FILE --out FILE.jsonl [--work DIR]\n"
     "                    [--index DIR] [--limit N] [--success context|em|f1]\n"
     "                    [--min-quality Q] [--fallback A|B|C] [--source NAME]\n"
     "\n"
     "Adaptive-RAG's silver labels. Runs every retrieval_mode option of the pipeline\n"
     "(kinds none, single and multi; forced, with the evaluation cache in --work,\n"
     "default label-work/) on each question of a QA file with gold answers, and labels\n"
     "the question with the cheapest mode that succeeds: A (none), B (single), C\n"
     "(multi). Success is --success >= --min-quality (default: the gold answer is in\n"
     "the retrieved context, `context` >= 0.5; with an LLM generator em or f1 fit).\n"
     "Questions no mode answers get --fallback, or are left out. Output lines are\n"
     "{\"text\",\"label\",\"source\",\"option\",\"quality\"}, ready for\n"
     "`dynrag router train`.\n",
     cmd_label},
    {"dataset", "build labelled data sets and outcome tables",
     "usage: dynrag dataset complexity --data DIR --out DIR [--seed N] [--valid-frac F]\n"
     "                                 [--holdout SOURCE] [--max-per-label N]\n"
     "                                 [--balance-ratio R] [--augment]\n"
     "                                 [--augment-comparisons N] [--augment-chains N]\n"
     "                                 [--eval-split]\n"
     "       dynrag dataset routerdc --in FILE.json --out FILE.jsonl\n"
     "       dynrag dataset routerbench --in FILE.csv --out FILE.jsonl\n"
     "\n"
     "routerdc and routerbench convert the routing benchmarks' files to outcome tables\n"
     "(docs/outcomes.md). routerdc: the task is the file name (without _train/_test);\n"
     "gsm8k, humaneval, mbpp and javascript scores are fractions of 10 samples, kept as\n"
     "quality; other scores count 1 when > 0. routerbench: quality 0/1 from the model\n"
     "columns, cost_usd from <model>|total_cost, response from <model>|model_response\n"
     "(its Python list literal decoded: ['C\\n'] becomes C and a line break), the whole\n"
     "prompt field as the query; rows with a missing score are dropped.\n"
     "\n"
     "complexity:\n"
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
     "                       (source musique-sub; skipped when musique is held out)\n"
     "  --augment-comparisons N  add N synthetic comparison questions to train as C\n"
     "                       (source comparison: \"Who is older, X or Y?\", \"Are X and\n"
     "                       Y both ...?\") and N one-entity ones as B (comparison-single:\n"
     "                       \"When was X born?\"); entities from MuSiQue decompositions\n"
     "                       and NQ answers, never HotpotQA or the holdout; default 0\n"
     "  --augment-chains N   add N synthetic compositional questions to train as C\n"
     "                       (source chain: \"When was the spouse of the director of X\n"
     "                       born?\", 2-3 lookups) and N one-lookup ones as B\n"
     "                       (chain-single: \"Who is the director of X?\"); same\n"
     "                       entities as --augment-comparisons; default 0\n"
     "  --eval-split         also hold out evaluation sets, in neither train nor valid:\n"
     "                       DIR/eval-clinc150.jsonl (CLINC150 val small_talk and meta),\n"
     "                       DIR/eval-efficientqa.jsonl (all of EfficientQA) and\n"
     "                       DIR/eval-musique.jsonl (every fifth MuSiQue question, with\n"
     "                       its sub-questions and entities); CLINC150 val utility\n"
     "                       intents are dropped (bench/complexity_compare.sh)\n",
     cmd_dataset},
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
