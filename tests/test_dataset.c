/* test_dataset.c - the complexity data set builder, the labelled JSONL
 * reader and the logistic-regression baseline. */
#include "test.h"

#include "core/util.h"
#include "data/labelled.h"
#include "research/logreg.h"
#include "research/dataset.h"

#include <strings.h>

/* Writes a small synthetic data folder under the test's tmpdir and returns
 * its path (static). Contents:
 *   clinc150: 12 A utterances (tell_joke, greeting, time, calculator, yes),
 *             4 not-A (weather, transfer, definition, book_flight), 1 duplicate A
 *   nq: 10, efficientqa: 6, musique: 8 (each with 3 steps: one natural,
 *   one "#1" reference, one "x >> y"), hotpotqa: 6. */
static const char *write_fixture(void)
{
    static char dir[1024];
    snprintf(dir, sizeof(dir), "%s/data", test_tmpdir());
    const char *subs[] = {"clinc150", "nq-open", "musique", "hotpotqa"};
    for (size_t i = 0; i < 4; i++) {
        char p[1100];
        snprintf(p, sizeof(p), "%s/%s", dir, subs[i]);
        if (dr_mkdirs(p, NULL) != DYNRAG_OK)
            return NULL;
    }
    test_write_file("data/clinc150/domains.json",
                    "{\"small_talk\": [\"tell_joke\", \"greeting\"],\n"
                    " \"meta\": [\"yes\"],\n"
                    " \"utility\": [\"time\", \"calculator\", \"weather\", \"definition\"],\n"
                    " \"banking\": [\"transfer\"], \"travel\": [\"book_flight\"]}\n");
    test_write_file("data/clinc150/train.json",
                    "[[\"tell me a joke\", \"tell_joke\"], [\"hello there\", \"greeting\"],\n"
                    " [\"what time is it\", \"time\"], [\"what is 2 plus 2\", \"calculator\"],\n"
                    " [\"yes please\", \"yes\"], [\"say something funny\", \"tell_joke\"],\n"
                    " [\"hi\", \"greeting\"], [\"current time please\", \"time\"],\n"
                    " [\"is it going to rain\", \"weather\"], [\"send 5 dollars\", \"transfer\"],\n"
                    " [\"Tell me a  joke?\", \"tell_joke\"]]\n");
    test_write_file("data/clinc150/val.json",
                    "[[\"multiply 3 by 4\", \"calculator\"], [\"yeah\", \"yes\"],\n"
                    " [\"good morning\", \"greeting\"], [\"tell the time\", \"time\"],\n"
                    " [\"what does ephemeral mean\", \"definition\"],\n"
                    " [\"book me a flight\", \"book_flight\"]]\n");
    dr_buf b = {0};
    for (int i = 0; i < 10; i++)
        dr_buf_printf(&b, "{\"question\": \"who founded nq company %d\", \"answer\": [\"x\"]}\n",
                      i);
    test_write_file("data/nq-open/NQ-open.dev.jsonl", b.data);
    dr_buf_reset(&b);
    for (int i = 0; i < 6; i++)
        dr_buf_printf(&b, "{\"question\": \"when was efficient thing %d built\", "
                          "\"answer\": [\"1900\"]}\n\n", i);
    test_write_file("data/nq-open/NQ-open.efficientqa.dev.1.1.jsonl", b.data);
    dr_buf_reset(&b);
    dr_buf_puts(&b, "[\n");
    for (int i = 0; i < 8; i++)
        dr_buf_printf(&b,
                      "%s{\"id\": \"2hop__%d\", \"question\": \"Who is the spouse of the "
                      "founder of musique firm %d?\", \"question_decomposition\": ["
                      "{\"question\": \"who founded musique firm %d\"}, "
                      "{\"question\": \"who is the spouse of #1\"}, "
                      "{\"question\": \"Firm %d >> founded by\"}]}\n",
                      i ? "," : "", i, i, i, i);
    dr_buf_puts(&b, "]\n");
    test_write_file("data/musique/dev_train.json", b.data);
    dr_buf_reset(&b);
    for (int i = 0; i < 6; i++)
        dr_buf_printf(&b, "{\"question_id\": \"h%d\", \"question_text\": \"Which hotpot band "
                          "formed first, band %d or band %d?\", \"contexts\": []}\n",
                      i, i, i + 100);
    test_write_file("data/hotpotqa/dev300.jsonl", b.data);
    dr_buf_free(&b);
    return dir;
}

/* Loads OUT/name into a set (NULL on failure, after a test failure). */
static dr_labelled_set *load_out(const char *out, const char *name)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", out, name);
    dr_labelled_set *s = NULL;
    dynrag_error err;
    if (dr_labelled_load(path, &s, &err) != DYNRAG_OK) {
        test_fail_(__FILE__, __LINE__, "load %s: %s", path, dynrag_errmsg(&err));
        return NULL;
    }
    return s;
}

static size_t count_source(const dr_labelled_set *s, const char *src)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += strcmp(s->source[i], src) == 0;
    return n;
}

static bool has_text(const dr_labelled_set *s, const char *text)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->text[i], text) == 0)
            return true;
    return false;
}

static char *read_all(const char *dir, const char *name)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    char *data = NULL;
    if (dr_read_file(path, 1 << 24, &data, NULL, NULL) != DYNRAG_OK)
        return NULL;
    return data;
}

TEST(dataset_builder_labels_and_counts)
{
    const char *data = write_fixture();
    ASSERT(data != NULL);
    char out[1100];
    snprintf(out, sizeof(out), "%s/out", test_tmpdir());
    dynrag_dataset_options opt;
    dynrag_dataset_options_init(&opt);
    opt.data_dir = data;
    opt.out_dir = out;
    opt.balance_ratio = 0;
    opt.valid_frac = 0.25;
    dynrag_dataset_stats st;
    dynrag_error err;
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_CLINC150], 13); /* 12 A + 1 duplicate */
    ASSERT_EQ(st.duplicates[DYNRAG_DATASET_SRC_CLINC150], 1);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_NQ], 10);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_EFFICIENTQA], 6);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_MUSIQUE], 8);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_HOTPOTQA], 6);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_MUSIQUE_SUB], 0);
    ASSERT_EQ(st.train_label[0] + st.valid_label[0], 12);
    ASSERT_EQ(st.valid_label[0], 3);
    ASSERT_EQ(st.train_label[1] + st.valid_label[1], 16);
    ASSERT_EQ(st.valid_label[1], 4);
    ASSERT_EQ(st.train_label[2] + st.valid_label[2], 14);

    dr_labelled_set *tr = load_out(out, "train.jsonl");
    dr_labelled_set *va = load_out(out, "valid.jsonl");
    ASSERT(tr != NULL && va != NULL);
    ASSERT_EQ(tr->n + va->n, 42);
    const dr_labelled_set *sets[2] = {tr, va};
    for (int k = 0; k < 2; k++) {
        const dr_labelled_set *s = sets[k];
        for (size_t i = 0; i < s->n; i++) {
            const char *want = strcmp(s->source[i], "clinc150") == 0   ? "A"
                               : strcmp(s->source[i], "nq") == 0          ? "B"
                               : strcmp(s->source[i], "efficientqa") == 0 ? "B"
                               : strcmp(s->source[i], "musique") == 0     ? "C"
                               : strcmp(s->source[i], "hotpotqa") == 0    ? "C"
                                                                          : "?";
            ASSERT_STR_EQ(s->label[i], want);
            ASSERT_NOT_CONTAINS(s->text[i], "rain");     /* weather: not A */
            ASSERT_NOT_CONTAINS(s->text[i], "dollars");  /* banking */
            ASSERT_NOT_CONTAINS(s->text[i], "ephemeral"); /* definition */
            ASSERT_NOT_CONTAINS(s->text[i], "flight");
            ASSERT_NOT_CONTAINS(s->text[i], "#1");
        }
    }
    ASSERT(has_text(tr, "tell me a joke") || has_text(va, "tell me a joke"));
    ASSERT(!has_text(tr, "Tell me a joke?") && !has_text(va, "Tell me a joke?"));
    ASSERT_EQ(tr->n_labels, 3);
    ASSERT_STR_EQ(tr->label_names[0], "A");
    ASSERT_STR_EQ(tr->label_names[2], "C");
    dr_labelled_free(tr);
    dr_labelled_free(va);
    char *ho = read_all(out, "holdout-musique.jsonl");
    ASSERT(ho == NULL); /* no holdout requested */
}

TEST(dataset_builder_deterministic_split)
{
    const char *data = write_fixture();
    ASSERT(data != NULL);
    char out1[1100], out2[1100], out3[1100];
    snprintf(out1, sizeof(out1), "%s/o1", test_tmpdir());
    snprintf(out2, sizeof(out2), "%s/o2", test_tmpdir());
    snprintf(out3, sizeof(out3), "%s/o3", test_tmpdir());
    dynrag_dataset_options opt;
    dynrag_dataset_options_init(&opt);
    opt.data_dir = data;
    opt.seed = 7;
    dynrag_error err;
    opt.out_dir = out1;
    ASSERT_OK(dynrag_dataset_complexity(&opt, NULL, &err), &err);
    opt.out_dir = out2;
    ASSERT_OK(dynrag_dataset_complexity(&opt, NULL, &err), &err);
    opt.seed = 8;
    opt.out_dir = out3;
    ASSERT_OK(dynrag_dataset_complexity(&opt, NULL, &err), &err);
    char *t1 = read_all(out1, "train.jsonl"), *t2 = read_all(out2, "train.jsonl");
    char *t3 = read_all(out3, "train.jsonl");
    char *v1 = read_all(out1, "valid.jsonl"), *v2 = read_all(out2, "valid.jsonl");
    bool ok = t1 && t2 && t3 && v1 && v2;
    bool same = ok && strcmp(t1, t2) == 0 && strcmp(v1, v2) == 0;
    bool differs = ok && strcmp(t1, t3) != 0;
    free(t1);
    free(t2);
    free(t3);
    free(v1);
    free(v2);
    ASSERT(ok);
    ASSERT(same);
    ASSERT(differs);
}

TEST(dataset_builder_holdout_and_balance)
{
    const char *data = write_fixture();
    ASSERT(data != NULL);
    char out[1100];
    snprintf(out, sizeof(out), "%s/out", test_tmpdir());
    dynrag_dataset_options opt;
    dynrag_dataset_options_init(&opt);
    opt.data_dir = data;
    opt.out_dir = out;
    opt.holdout = "musique";
    opt.augment = true; /* ignored for a musique holdout */
    dynrag_dataset_stats st;
    dynrag_error err;
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    /* C without musique: 6 hotpotqa, so the cap is 12 per label. */
    ASSERT_EQ(st.label_cap, 12);
    ASSERT_EQ(st.holdout[DYNRAG_DATASET_SRC_MUSIQUE], 8);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_MUSIQUE_SUB], 0);
    dr_labelled_set *tr = load_out(out, "train.jsonl");
    dr_labelled_set *va = load_out(out, "valid.jsonl");
    dr_labelled_set *ho = load_out(out, "holdout-musique.jsonl");
    ASSERT(tr && va && ho);
    ASSERT_EQ(count_source(tr, "musique") + count_source(va, "musique"), 0);
    ASSERT_EQ(count_source(tr, "musique-sub"), 0);
    ASSERT_EQ(ho->n, 8);
    ASSERT_EQ(count_source(ho, "musique"), 8);
    size_t per[3] = {0};
    for (size_t i = 0; i < tr->n; i++)
        per[tr->label_id[i]]++;
    for (size_t i = 0; i < va->n; i++)
        per[dr_labelled_find_label(tr, va->label[i])]++;
    ASSERT_EQ(per[0], 12);
    ASSERT_EQ(per[1], 12);
    ASSERT_EQ(per[2], 6);
    dr_labelled_free(tr);
    dr_labelled_free(va);
    dr_labelled_free(ho);

    /* --max-per-label below the ratio cap wins. */
    opt.holdout = "hotpotqa";
    opt.max_per_label = 5;
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    ASSERT_EQ(st.label_cap, 5);
    for (int l = 0; l < 3; l++)
        ASSERT_EQ(st.train_label[l] - (l == 1 ? st.train[DYNRAG_DATASET_SRC_MUSIQUE_SUB] : 0) +
                      st.valid_label[l],
                  5);
    ASSERT_EQ(st.holdout[DYNRAG_DATASET_SRC_HOTPOTQA], 6);
    /* Augmentation: one natural sub-question per MuSiQue item, none with
     * "#1" or ">>", all B, train only. */
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_MUSIQUE_SUB], 8);
    ASSERT_EQ(st.train[DYNRAG_DATASET_SRC_MUSIQUE_SUB], 8);
    ASSERT_EQ(st.valid[DYNRAG_DATASET_SRC_MUSIQUE_SUB], 0);
    tr = load_out(out, "train.jsonl");
    ASSERT(tr != NULL);
    ASSERT(has_text(tr, "who founded musique firm 3"));
    for (size_t i = 0; i < tr->n; i++)
        if (strcmp(tr->source[i], "musique-sub") == 0) {
            ASSERT_STR_EQ(tr->label[i], "B");
            ASSERT_NOT_CONTAINS(tr->text[i], ">>");
        }
    dr_labelled_free(tr);
}

TEST(dataset_builder_input_errors)
{
    const char *data = write_fixture();
    ASSERT(data != NULL);
    char out[1100];
    snprintf(out, sizeof(out), "%s/out", test_tmpdir());
    dynrag_dataset_options opt;
    dynrag_dataset_options_init(&opt);
    opt.data_dir = data;
    opt.out_dir = out;
    dynrag_error err;

    opt.holdout = "wikipedia";
    ASSERT_EQ(dynrag_dataset_complexity(&opt, NULL, &err), DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "wikipedia");
    opt.holdout = NULL;
    opt.valid_frac = 0.95;
    ASSERT_EQ(dynrag_dataset_complexity(&opt, NULL, &err), DYNRAG_ERR_INVALID);
    opt.valid_frac = 0.1;

    /* Malformed JSONL: line 3 of the NQ file. */
    test_write_file("data/nq-open/NQ-open.dev.jsonl",
                    "{\"question\": \"a\"}\n{\"question\": \"b\"}\n{\"question\": \"c\"\n");
    ASSERT_EQ(dynrag_dataset_complexity(&opt, NULL, &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "NQ-open.dev.jsonl:3");
    /* Missing field on line 2. */
    test_write_file("data/nq-open/NQ-open.dev.jsonl",
                    "{\"question\": \"a\"}\n{\"query\": \"b\"}\n");
    ASSERT_EQ(dynrag_dataset_complexity(&opt, NULL, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "NQ-open.dev.jsonl:2");
    ASSERT_CONTAINS(dynrag_errmsg(&err), "question");
    test_write_file("data/nq-open/NQ-open.dev.jsonl", "{\"question\": \"a\"}\n");

    /* Malformed JSON document: the error names the line. */
    test_write_file("data/clinc150/val.json", "[[\"hi\", \"greeting\"],\n [\"oops\" \"yes\"]]\n");
    ASSERT_EQ(dynrag_dataset_complexity(&opt, NULL, &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "val.json:2");
    /* Well-formed JSON of the wrong shape. */
    test_write_file("data/clinc150/val.json", "[[\"hi\", 3]]\n");
    ASSERT_EQ(dynrag_dataset_complexity(&opt, NULL, &err), DYNRAG_ERR_FORMAT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "val.json: item 0");
    test_write_file("data/clinc150/val.json", "[]");

    /* Missing file. */
    char path[1200];
    snprintf(path, sizeof(path), "%s/hotpotqa/dev300.jsonl", data);
    ASSERT_EQ(remove(path), 0);
    ASSERT_EQ(dynrag_dataset_complexity(&opt, NULL, &err), DYNRAG_ERR_NOTFOUND);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "dev300.jsonl");
    /* Nothing was written by the failed runs. */
    ASSERT(!dr_path_exists(out));
}

/* Overwrites the fixture's NQ and MuSiQue files with entity-bearing ones
 * for the comparison augmentation: MuSiQue "work >> director" steps whose
 * answers are people, and "person >> place of birth" steps; NQ "who" and
 * "where" questions with name-like answers, plus answers that must be
 * rejected (lower case, "#1"). */
static void write_entity_fixture(void)
{
    static const char *const mq_people[] = {"Ada Lovelace", "Alan Turing", "Grace Hopper",
                                            "Edsger Dijkstra"};
    dr_buf b = {0};
    dr_buf_puts(&b, "[\n");
    for (int i = 0; i < 4; i++)
        dr_buf_printf(&b,
                      "%s{\"id\": \"2hop__%d\", \"question\": \"Where was the director of "
                      "Film Zeta %c born?\", \"question_decomposition\": ["
                      "{\"question\": \"Film Zeta %c >> director\", \"answer\": \"%s\"}, "
                      "{\"question\": \"#1 >> place of birth\", \"answer\": \"Town %c\"}, "
                      "{\"question\": \"who is the spouse of #1\", \"answer\": \"#2 thing\"}]}\n",
                      i ? "," : "", i, 'A' + i, 'A' + i, mq_people[i], 'K' + i);
    dr_buf_puts(&b, "]\n");
    test_write_file("data/musique/dev_train.json", b.data);
    dr_buf_reset(&b);
    static const char *const nq_people[] = {"Barbara Liskov", "Donald Knuth", "Niklaus Wirth"};
    for (int i = 0; i < 3; i++)
        dr_buf_printf(&b, "{\"question\": \"who wrote nq book %d\", \"answer\": [\"%s\"]}\n", i,
                      nq_people[i]);
    dr_buf_puts(&b, "{\"question\": \"who founded nq company\", \"answer\": [\"x\"]}\n"
                    "{\"question\": \"where is nq lake\", \"answer\": [\"Lake Nqville\"]}\n"
                    "{\"question\": \"when was nq dam built\", \"answer\": [\"Not A Name\"]}\n");
    test_write_file("data/nq-open/NQ-open.dev.jsonl", b.data);
    dr_buf_free(&b);
}

/* True when text names at least `want` different entities of list. */
static bool names_entities(const char *text, const char *const *list, size_t n, size_t want)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += strstr(text, list[i]) != NULL;
    return k >= want;
}

TEST(dataset_builder_comparisons)
{
    const char *data = write_fixture();
    ASSERT(data != NULL);
    write_entity_fixture();
    static const char *const people[] = {"Ada Lovelace", "Alan Turing", "Grace Hopper",
                                         "Edsger Dijkstra", "Barbara Liskov", "Donald Knuth",
                                         "Niklaus Wirth"};
    static const char *const others[] = {"Film Zeta A", "Film Zeta B", "Film Zeta C",
                                         "Film Zeta D", "Town K", "Town L", "Town M", "Town N",
                                         "Lake Nqville"};
    char out0[1100], out1[1100], out2[1100], out3[1100], out4[1100];
    snprintf(out0, sizeof(out0), "%s/o0", test_tmpdir());
    snprintf(out1, sizeof(out1), "%s/o1", test_tmpdir());
    snprintf(out2, sizeof(out2), "%s/o2", test_tmpdir());
    snprintf(out3, sizeof(out3), "%s/o3", test_tmpdir());
    snprintf(out4, sizeof(out4), "%s/o4", test_tmpdir());
    dynrag_dataset_options opt;
    dynrag_dataset_options_init(&opt);
    opt.data_dir = data;
    opt.holdout = "hotpotqa";
    opt.augment = true;
    dynrag_dataset_stats st;
    dynrag_error err;
    opt.out_dir = out0; /* without: the reference split */
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_COMPARISON], 0);
    opt.augment_comparisons = 40;
    opt.out_dir = out1;
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_COMPARISON], 40);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_COMPARISON_SINGLE], 40);
    ASSERT_EQ(st.valid[DYNRAG_DATASET_SRC_COMPARISON], 0);
    ASSERT_EQ(st.valid[DYNRAG_DATASET_SRC_COMPARISON_SINGLE], 0);
    ASSERT_STR_EQ(dynrag_dataset_source_name(DYNRAG_DATASET_SRC_COMPARISON), "comparison");

    dr_labelled_set *tr = load_out(out1, "train.jsonl");
    ASSERT(tr != NULL);
    size_t ncmp = 0, nsingle = 0;
    for (size_t i = 0; i < tr->n; i++) {
        const char *s = tr->text[i];
        bool cmp = strcmp(tr->source[i], "comparison") == 0;
        bool single = strcmp(tr->source[i], "comparison-single") == 0;
        if (!cmp && !single)
            continue;
        ncmp += cmp;
        nsingle += single;
        ASSERT_STR_EQ(tr->label[i], cmp ? "C" : "B");
        ASSERT_NOT_CONTAINS(s, "{");
        ASSERT_NOT_CONTAINS(s, "#");
        ASSERT_NOT_CONTAINS(s, "Not A Name"); /* a "when" answer: untyped */
        ASSERT_NOT_CONTAINS(s, "hotpot");     /* never from HotpotQA */
        /* Comparisons name two different entities of one kind, singles one. */
        bool two = names_entities(s, people, DR_ARRAY_LEN(people), 2) ||
                   names_entities(s, others, DR_ARRAY_LEN(others), 2);
        bool one = names_entities(s, people, DR_ARRAY_LEN(people), 1) ||
                   names_entities(s, others, DR_ARRAY_LEN(others), 1);
        ASSERT(cmp ? two : (one && !two));
    }
    ASSERT_EQ(ncmp, st.train[DYNRAG_DATASET_SRC_COMPARISON]);
    ASSERT_EQ(nsingle, st.train[DYNRAG_DATASET_SRC_COMPARISON_SINGLE]);
    ASSERT_GT(nsingle, 0);
    dr_labelled_free(tr);

    /* The real records' valid split does not depend on the augmentation
     * (the same questions; the order differs: the train shuffle before it
     * is longer); the same seed gives the same files, another seed other
     * questions. */
    dr_labelled_set *va0 = load_out(out0, "valid.jsonl"), *va1 = load_out(out1, "valid.jsonl");
    ASSERT(va0 && va1);
    ASSERT_EQ(va0->n, va1->n);
    for (size_t i = 0; i < va0->n; i++)
        ASSERT(has_text(va1, va0->text[i]));
    dr_labelled_free(va0);
    dr_labelled_free(va1);
    opt.out_dir = out2;
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    opt.seed = 99;
    opt.out_dir = out3;
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    char *t1 = read_all(out1, "train.jsonl"), *t2 = read_all(out2, "train.jsonl");
    char *t3 = read_all(out3, "train.jsonl");
    bool ok = t1 && t2 && t3;
    bool same = ok && strcmp(t1, t2) == 0;
    bool differs = ok && strcmp(t1, t3) != 0;
    free(t1);
    free(t2);
    free(t3);
    ASSERT(ok);
    ASSERT(same);
    ASSERT(differs);

    /* MuSiQue held out: its entities are not used, only NQ's. */
    opt.seed = 13;
    opt.holdout = "musique";
    opt.out_dir = out4;
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    ASSERT_GT(st.train[DYNRAG_DATASET_SRC_COMPARISON], 0);
    tr = load_out(out4, "train.jsonl");
    ASSERT(tr != NULL);
    for (size_t i = 0; i < tr->n; i++) {
        if (strncmp(tr->source[i], "comparison", 10) != 0)
            continue;
        for (size_t k = 0; k < 4; k++)
            ASSERT_NOT_CONTAINS(tr->text[i], people[k]);
        ASSERT_NOT_CONTAINS(tr->text[i], "Film Zeta");
        ASSERT_NOT_CONTAINS(tr->text[i], "Town");
    }
    dr_labelled_free(tr);

    /* No usable entities (the plain fixture's NQ answers are "x"; its
     * MuSiQue is held out): nothing added, no error. */
    write_fixture();
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_COMPARISON], 0);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_COMPARISON_SINGLE], 0);
}

/* Number of whole words "the" (case-insensitive) and of possessive "'s "
 * in text: each relation noun phrase of the chain augmentation has exactly
 * one of them. */
static size_t count_the(const char *text)
{
    size_t n = 0;
    for (const char *p = text; *p; p++) {
        if (strncmp(p, "'s ", 3) == 0)
            n++;
        bool start = p == text || p[-1] == ' ';
        if (start && strncasecmp(p, "the", 3) == 0 && (p[3] == ' ' || p[3] == '\0'))
            n++;
    }
    return n;
}

TEST(dataset_builder_chains)
{
    const char *data = write_fixture();
    ASSERT(data != NULL);
    write_entity_fixture();
    static const char *const ents[] = {"Ada Lovelace", "Alan Turing", "Grace Hopper",
                                       "Edsger Dijkstra", "Barbara Liskov", "Donald Knuth",
                                       "Niklaus Wirth", "Film Zeta A", "Film Zeta B",
                                       "Film Zeta C", "Film Zeta D", "Town K", "Town L",
                                       "Town M", "Town N", "Lake Nqville",
                                       "Nq book" /* a title: "who wrote nq book 1" */};
    char out0[1100], out1[1100], out2[1100], out3[1100];
    snprintf(out0, sizeof(out0), "%s/c0", test_tmpdir());
    snprintf(out1, sizeof(out1), "%s/c1", test_tmpdir());
    snprintf(out2, sizeof(out2), "%s/c2", test_tmpdir());
    snprintf(out3, sizeof(out3), "%s/c3", test_tmpdir());
    dynrag_dataset_options opt;
    dynrag_dataset_options_init(&opt);
    opt.data_dir = data;
    opt.holdout = "hotpotqa";
    opt.augment = true;
    dynrag_dataset_stats st;
    dynrag_error err;
    opt.out_dir = out0;
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_CHAIN], 0);
    opt.augment_chains = 60;
    opt.out_dir = out1;
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_CHAIN], 60);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_CHAIN_SINGLE], 60);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_COMPARISON], 0);
    ASSERT_EQ(st.valid[DYNRAG_DATASET_SRC_CHAIN], 0);
    ASSERT_EQ(st.valid[DYNRAG_DATASET_SRC_CHAIN_SINGLE], 0);
    ASSERT_STR_EQ(dynrag_dataset_source_name(DYNRAG_DATASET_SRC_CHAIN), "chain");
    ASSERT_STR_EQ(dynrag_dataset_source_name(DYNRAG_DATASET_SRC_CHAIN_SINGLE), "chain-single");

    /* Every relation noun phrase has one "the" or "'s" (count_the), so a C
     * question (two or three lookups) has at least one and a B question (one
     * lookup) at most one; each is built over exactly one harvested entity. */
    dr_labelled_set *tr = load_out(out1, "train.jsonl");
    ASSERT(tr != NULL);
    size_t nc = 0, nb = 0, the_c = 0, the_b = 0, titles = 0;
    for (size_t i = 0; i < tr->n; i++) {
        const char *s = tr->text[i];
        bool c = strcmp(tr->source[i], "chain") == 0;
        bool b = strcmp(tr->source[i], "chain-single") == 0;
        if (!c && !b)
            continue;
        ASSERT_STR_EQ(tr->label[i], c ? "C" : "B");
        ASSERT_NOT_CONTAINS(s, "{");
        ASSERT_NOT_CONTAINS(s, "#");
        ASSERT_NOT_CONTAINS(s, "Not A Name");
        ASSERT(names_entities(s, ents, DR_ARRAY_LEN(ents), 1));
        ASSERT(!names_entities(s, ents, DR_ARRAY_LEN(ents), 2));
        titles += strstr(s, "Nq book") != NULL;
        size_t k = count_the(s);
        if (c) {
            ASSERT_GE(k, 1);
            nc++;
            the_c += k;
        } else {
            ASSERT_LE(k, 1);
            nb++;
            the_b += k;
        }
    }
    ASSERT_EQ(nc, st.train[DYNRAG_DATASET_SRC_CHAIN]);
    ASSERT_EQ(nb, st.train[DYNRAG_DATASET_SRC_CHAIN_SINGLE]);
    ASSERT_GT(nb, 0);
    ASSERT_GT(titles, 0);
    ASSERT_GT(the_c * nb, 2 * the_b * nc); /* C: more than twice the relations */
    dr_labelled_free(tr);

    /* The real records' valid split is unchanged; same seed, same files. */
    dr_labelled_set *va0 = load_out(out0, "valid.jsonl"), *va1 = load_out(out1, "valid.jsonl");
    ASSERT(va0 && va1);
    ASSERT_EQ(va0->n, va1->n);
    for (size_t i = 0; i < va0->n; i++)
        ASSERT(has_text(va1, va0->text[i]));
    dr_labelled_free(va0);
    dr_labelled_free(va1);
    opt.out_dir = out2;
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    char *t1 = read_all(out1, "train.jsonl"), *t2 = read_all(out2, "train.jsonl");
    bool same = t1 && t2 && strcmp(t1, t2) == 0;
    free(t1);
    free(t2);
    ASSERT(same);

    /* MuSiQue held out: no MuSiQue entity (the first four people, the films,
     * the towns) appears. */
    opt.holdout = "musique";
    opt.out_dir = out3;
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    ASSERT_GT(st.train[DYNRAG_DATASET_SRC_CHAIN], 0);
    tr = load_out(out3, "train.jsonl");
    ASSERT(tr != NULL);
    for (size_t i = 0; i < tr->n; i++) {
        if (strncmp(tr->source[i], "chain", 5) != 0)
            continue;
        for (size_t k = 0; k < 4; k++)
            ASSERT_NOT_CONTAINS(tr->text[i], ents[k]);
        ASSERT_NOT_CONTAINS(tr->text[i], "Film Zeta");
        ASSERT_NOT_CONTAINS(tr->text[i], "Town");
    }
    dr_labelled_free(tr);

    /* No usable entities: nothing added, no error. */
    write_fixture();
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_CHAIN], 0);
    ASSERT_EQ(st.read[DYNRAG_DATASET_SRC_CHAIN_SINGLE], 0);
}

TEST(dataset_cli_complexity)
{
    const char *data = write_fixture();
    ASSERT(data != NULL);
    char cmd[4096];
    char *out = NULL;
    snprintf(cmd, sizeof(cmd), "%s dataset complexity --data %s --out %s/cli --holdout hotpotqa "
             "--seed 3 --augment 2>&1", test_cli_path(), data, test_tmpdir());
    int rc = test_run(cmd, &out);
    ASSERT_EQ(rc, 0);
    ASSERT_CONTAINS(out, "musique-sub");
    ASSERT_CONTAINS(out, "holdout-hotpotqa.jsonl");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s dataset complexity --data %s --out %s/cli --valid-frac 2 2>&1",
             test_cli_path(), data, test_tmpdir());
    rc = test_run(cmd, &out);
    ASSERT_EQ(rc, 2);
    ASSERT_CONTAINS(out, "--valid-frac");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s dataset complexity --data %s --out %s/cli "
             "--augment-comparisons -1 2>&1", test_cli_path(), data, test_tmpdir());
    rc = test_run(cmd, &out);
    ASSERT_EQ(rc, 2);
    ASSERT_CONTAINS(out, "--augment-comparisons");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s dataset complexity --data %s --out %s/cli "
             "--augment-chains x 2>&1", test_cli_path(), data, test_tmpdir());
    rc = test_run(cmd, &out);
    ASSERT_EQ(rc, 2);
    ASSERT_CONTAINS(out, "--augment-chains");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s dataset complexity --data %s/nowhere --out %s/cli 2>&1",
             test_cli_path(), data, test_tmpdir());
    rc = test_run(cmd, &out);
    ASSERT_EQ(rc, 1);
    ASSERT_CONTAINS(out, "nowhere");
    free(out);
}

TEST(dataset_labelled_reader)
{
    const char *p = test_write_file(
        "ok.jsonl", "{\"text\": \"b one\", \"label\": \"zeta\", \"source\": \"s1\"}\n"
                    "\n"
                    "  \r\n"
                    "{\"text\": \"a two\", \"label\": \"alpha\", \"extra\": 1}\r\n"
                    "{\"text\": \"c three\", \"label\": \"zeta\", \"source\": \"s2\"}");
    dr_labelled_set *s = NULL;
    dynrag_error err;
    ASSERT_OK(dr_labelled_load(p, &s, &err), &err);
    ASSERT_EQ(s->n, 3);
    ASSERT_EQ(s->n_labels, 2);
    ASSERT_STR_EQ(s->label_names[0], "alpha");
    ASSERT_STR_EQ(s->label_names[1], "zeta");
    ASSERT_EQ(s->label_id[0], 1);
    ASSERT_EQ(s->label_id[1], 0);
    ASSERT_STR_EQ(s->text[2], "c three");
    ASSERT_STR_EQ(s->source[1], "");
    ASSERT_EQ(dr_labelled_find_label(s, "zeta"), 1);
    ASSERT_EQ(dr_labelled_find_label(s, "nope"), -1);
    dr_labelled_free(s);
    dr_labelled_free(NULL);
}

TEST(dataset_labelled_reader_errors)
{
    struct {
        const char *content;
        int status;
        const char *msg;
    } cases[] = {
        {"{\"text\": \"a\", \"label\": \"A\"}\n{\"text\": \"b\"}\n", DYNRAG_ERR_FORMAT,
         "bad.jsonl:2: missing field \"label\""},
        {"{\"text\": \"a\", \"label\": \"A\"}\n\n{\"text\": \"b\", \"label\": ", DYNRAG_ERR_PARSE,
         "bad.jsonl:3: malformed JSON"},
        {"[1, 2]\n", DYNRAG_ERR_FORMAT, "bad.jsonl:1: expected a JSON object"},
        {"{\"text\": 5, \"label\": \"A\"}\n", DYNRAG_ERR_FORMAT, "\"text\" is not a string"},
        {"{\"text\": \"\", \"label\": \"A\"}\n", DYNRAG_ERR_FORMAT, "\"text\" is empty"},
        {"{\"text\": \"ab\xff\", \"label\": \"A\"}\n", DYNRAG_ERR_FORMAT, "not valid UTF-8"},
        {"{\"text\": \"a\", \"label\": \"A\", \"source\": 3}\n", DYNRAG_ERR_FORMAT,
         "\"source\" is not a string"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *p = test_write_file("bad.jsonl", cases[i].content);
        dr_labelled_set *s = (dr_labelled_set *)1;
        dynrag_error err;
        ASSERT_EQ(dr_labelled_load(p, &s, &err), cases[i].status);
        ASSERT(s == NULL);
        ASSERT_CONTAINS(dynrag_errmsg(&err), cases[i].msg);
    }
    /* A line past the cap. */
    size_t n = DR_LABELLED_MAX_LINE + 100;
    char *big = malloc(n + 1);
    ASSERT(big != NULL);
    memset(big, 'x', n);
    memcpy(big, "{\"text\": \"", 10);
    big[n] = '\0';
    const char *p = test_write_file("big.jsonl", big);
    free(big);
    dr_labelled_set *s = NULL;
    dynrag_error err;
    ASSERT_EQ(dr_labelled_load(p, &s, &err), DYNRAG_ERR_LIMIT);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "big.jsonl:1");
    char missing[1100];
    snprintf(missing, sizeof(missing), "%s/none.jsonl", test_tmpdir());
    ASSERT_EQ(dr_labelled_load(missing, &s, &err), DYNRAG_ERR_NOTFOUND);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "none.jsonl");
}

/* Three classes with disjoint vocabularies, random word order and length:
 * separable, so held-out accuracy must be (near) perfect. */
static void toy_text(dr_rng *r, int cls, char *out, size_t size)
{
    static const char *const vocab[3][6] = {
        {"apple", "banana", "cherry", "grape", "melon", "peach"},
        {"piston", "gasket", "valve", "crank", "rotor", "sprocket"},
        {"sonnet", "stanza", "verse", "rhyme", "meter", "ballad"},
    };
    static const char *const shared[4] = {"the", "a", "with", "and"};
    size_t k = 0;
    out[0] = '\0';
    int nw = 2 + (int)dr_rng_below(r, 5);
    for (int w = 0; w < nw; w++) {
        const char *word = dr_rng_below(r, 3) == 0 ? shared[dr_rng_below(r, 4)]
                                                   : vocab[cls][dr_rng_below(r, 6)];
        k += (size_t)snprintf(out + k, size - k, "%s%s", w ? " " : "", word);
    }
    /* guarantee one class word */
    snprintf(out + k, size - k, " %s", vocab[cls][dr_rng_below(r, 6)]);
}

TEST(dataset_logreg_separable)
{
    enum { N = 300, NT = 90 };
    static char buf[N + NT][128];
    const char *text[N];
    int label[N];
    dr_rng r;
    dr_rng_seed(&r, 99);
    for (int i = 0; i < N + NT; i++) {
        toy_text(&r, i % 3, buf[i], sizeof(buf[i]));
        if (i < N) {
            text[i] = buf[i];
            label[i] = i % 3;
        }
    }
    const bool tfidf[2] = {true, false};
    for (int v = 0; v < 2; v++) {
        dr_logreg_options opt;
        dr_logreg_options_init(&opt);
        opt.bits = 14;
        opt.tfidf = tfidf[v];
        opt.balanced = v == 1;
        dr_logreg *m = NULL, *m2 = NULL;
        dynrag_error err;
        ASSERT_OK(dr_logreg_train(&opt, N, text, label, 3, &m, &err), &err);
        ASSERT_OK(dr_logreg_train(&opt, N, text, label, 3, &m2, &err), &err);
        ASSERT_EQ(dr_logreg_n_classes(m), 3);
        int correct = 0;
        for (int i = N; i < N + NT; i++) {
            float p[3], p2[3];
            ASSERT_OK(dr_logreg_predict(m, buf[i], p, &err), &err);
            ASSERT_OK(dr_logreg_predict(m2, buf[i], p2, &err), &err);
            ASSERT_NEAR(p[0] + p[1] + p[2], 1.0, 1e-5);
            for (int k = 0; k < 3; k++)
                ASSERT(p[k] == p2[k]); /* deterministic training */
            int best = p[1] > p[0] ? 1 : 0;
            best = p[2] > p[best] ? 2 : best;
            correct += best == i % 3;
        }
        ASSERT_EQ(correct, NT);
        float p[3];
        ASSERT_OK(dr_logreg_predict(m, "", p, &err), &err);
        ASSERT_NEAR(p[0] + p[1] + p[2], 1.0, 1e-5);
        dr_logreg_free(m);
        dr_logreg_free(m2);
    }
}

TEST(dataset_logreg_invalid)
{
    const char *text[2] = {"a b", "c d"};
    int label[2] = {0, 3};
    dr_logreg_options opt;
    dr_logreg_options_init(&opt);
    opt.bits = 12;
    dr_logreg *m = (dr_logreg *)1;
    dynrag_error err;
    ASSERT_EQ(dr_logreg_train(&opt, 2, text, label, 3, &m, &err), DYNRAG_ERR_INVALID);
    ASSERT(m == NULL);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "example 1");
    label[1] = 1;
    ASSERT_EQ(dr_logreg_train(&opt, 2, text, label, 1, &m, &err), DYNRAG_ERR_INVALID);
    opt.bits = 30;
    ASSERT_EQ(dr_logreg_train(&opt, 2, text, label, 2, &m, &err), DYNRAG_ERR_INVALID);
    opt.bits = 12;
    opt.words = false;
    opt.char_min = 0;
    ASSERT_EQ(dr_logreg_train(&opt, 2, text, label, 2, &m, &err), DYNRAG_ERR_INVALID);
    dr_logreg_free(NULL);
}

/* --eval-split: CLINC150 val small talk/meta, all EfficientQA and every
 * fifth MuSiQue question (with its sub-questions) go to eval-*.jsonl and
 * nowhere else; combined with a hotpotqa holdout. */
TEST(dataset_builder_eval_split)
{
    const char *data = write_fixture();
    ASSERT(data != NULL);
    char out[1100];
    snprintf(out, sizeof(out), "%s/out", test_tmpdir());
    dynrag_dataset_options opt;
    dynrag_dataset_options_init(&opt);
    opt.data_dir = data;
    opt.out_dir = out;
    opt.eval_split = true;
    opt.holdout = "hotpotqa";
    opt.augment = true;
    opt.balance_ratio = 0;
    dynrag_dataset_stats st;
    dynrag_error err;
    ASSERT_OK(dynrag_dataset_complexity(&opt, &st, &err), &err);
    dr_labelled_set *tr = load_out(out, "train.jsonl"), *va = load_out(out, "valid.jsonl");
    dr_labelled_set *ec = load_out(out, "eval-clinc150.jsonl");
    dr_labelled_set *ee = load_out(out, "eval-efficientqa.jsonl");
    dr_labelled_set *em = load_out(out, "eval-musique.jsonl");
    dr_labelled_set *ho = load_out(out, "holdout-hotpotqa.jsonl");
    ASSERT(tr && va && ec && ee && em && ho);
    /* val.json: "yeah" (meta) and "good morning" (small_talk); its utility
     * utterances are neither evaluated nor trained on */
    ASSERT_EQ(ec->n, 2);
    ASSERT(has_text(ec, "yeah") && has_text(ec, "good morning"));
    ASSERT_EQ(ee->n, 6);
    ASSERT_EQ(em->n, 1); /* item 4 of 8 */
    ASSERT_STR_EQ(em->text[0], "Who is the spouse of the founder of musique firm 4?");
    ASSERT_EQ(ho->n, 6);
    const dr_labelled_set *evals[] = {ec, ee, em, ho};
    const dr_labelled_set *fit[] = {tr, va};
    for (size_t e = 0; e < DR_ARRAY_LEN(evals); e++)
        for (size_t i = 0; i < evals[e]->n; i++)
            for (size_t f = 0; f < 2; f++)
                if (has_text(fit[f], evals[e]->text[i])) {
                    test_fail_(__FILE__, __LINE__, "'%s' is in an eval set and in %s",
                               evals[e]->text[i], f ? "valid" : "train");
                    goto cleanup;
                }
    for (size_t f = 0; f < 2; f++) {
        ASSERT(!has_text(fit[f], "multiply 3 by 4") && !has_text(fit[f], "tell the time"));
        ASSERT(!has_text(fit[f], "who founded musique firm 4")); /* its sub-question */
        ASSERT_EQ(count_source(fit[f], "efficientqa"), 0);
    }
    ASSERT(has_text(tr, "who founded musique firm 3"));
    ASSERT_EQ(st.holdout[DYNRAG_DATASET_SRC_CLINC150], 2);
    ASSERT_EQ(st.holdout[DYNRAG_DATASET_SRC_EFFICIENTQA], 6);
    ASSERT_EQ(st.holdout[DYNRAG_DATASET_SRC_MUSIQUE], 1);
    ASSERT_EQ(st.train[DYNRAG_DATASET_SRC_MUSIQUE] + st.valid[DYNRAG_DATASET_SRC_MUSIQUE], 7);
cleanup:
    dr_labelled_free(tr);
    dr_labelled_free(va);
    dr_labelled_free(ec);
    dr_labelled_free(ee);
    dr_labelled_free(em);
    dr_labelled_free(ho);
}
