/* test_generate.c - extractive answerer, context packing, prompts, reformulation. */
#include "test.h"

#include "core/util.h"
#include <cjson/cJSON.h>
#include <string.h>
#include "generate/context.h"
#include "generate/extractive.h"
#include "generate/prompt.h"
#include "generate/reformulate.h"

static const dr_passage k_passages[] = {
    {"d1", "Eiffel Tower",
     "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the "
     "engineering company of Gustave Eiffel. The tower was completed in 1889 for the World's "
     "Fair.",
     3.0, 11},
    {"d2", "Statue of Liberty",
     "The Statue of Liberty stands on Liberty Island in New York Harbor. It was a gift from "
     "France, dedicated in 1886.",
     2.0, 12},
    {"d3", "Paris",
     "Paris is the capital of France. It has about 2.1 million inhabitants.", 1.0, 13},
};

TEST(gen_extractive_prefers_prose_to_long_lists)
{
    /* A keyword index (one 200-word "sentence" naming everything) covers
     * the question's words by sheer length; the short sentence that
     * answers must win. It is also ranked first, so only the length
     * discount can decide. */
    char index[4096];
    size_t len = (size_t)snprintf(index, sizeof(index), "WAL mode ");
    for (int i = 0; i < 40 && len < sizeof(index); i++)
        len += (size_t)snprintf(index + len, sizeof(index) - len,
                                "write-ahead log WAL file format checkpoint pragma ");
    const dr_passage ps[] = {
        {"keywords", "Keyword Index", index, 5.0, 1},
        {"wal", "Write-Ahead Logging",
         "The WAL mode is a write-ahead log: changes are appended to a separate WAL file and "
         "copied back to the database at a checkpoint.",
         4.0, 2},
    };
    dynrag_error err;
    dr_answer a;
    dr_extractive_config cfg = {0.1, 1};
    ASSERT_OK(dr_extractive_answer(&cfg, "What is the WAL mode write-ahead log?", ps, 2, &a, &err),
              &err);
    ASSERT_CONTAINS(a.text, "changes are appended");
    ASSERT_EQ(a.citations[0], 1);
    dr_answer_free(&a);
}

TEST(gen_extractive_answers_with_citation)
{
    dynrag_error err;
    dr_answer a;
    dr_extractive_config cfg = {0.2, 1};
    ASSERT_OK(dr_extractive_answer(&cfg, "When was the Eiffel Tower completed?", k_passages, 3, &a,
                                   &err),
              &err);
    ASSERT(!a.unanswerable);
    ASSERT_CONTAINS(a.text, "1889");
    ASSERT_EQ(a.n_citations, 1);
    ASSERT_EQ(a.citations[0], 0);
    ASSERT(a.support > 0.2 && a.support <= 1.0);
    dr_answer_free(&a);

    /* The answer-type cue finds the number; the citation is the third passage. */
    ASSERT_OK(dr_extractive_answer(&cfg, "How many inhabitants does Paris have?", k_passages, 3,
                                   &a, &err),
              &err);
    ASSERT_CONTAINS(a.text, "2.1 million");
    ASSERT_EQ(a.n_citations, 1);
    ASSERT_EQ(a.citations[0], 2);
    dr_answer_free(&a);

    /* Two sentences from two passages: both cited, passages in score order. */
    dr_extractive_config two = {0.1, 2};
    ASSERT_OK(dr_extractive_answer(&two, "Who designed the Eiffel Tower, a gift from France?",
                                   k_passages, 3, &a, &err),
              &err);
    ASSERT_CONTAINS(a.text, "Gustave Eiffel");
    ASSERT_GE(a.n_citations, 1);
    ASSERT_EQ(a.citations[0], 0);
    dr_answer_free(&a);
    dr_answer_free(NULL);
}

TEST(gen_extractive_unanswerable_and_empty)
{
    dynrag_error err;
    dr_answer a;
    dr_extractive_config strict = {0.9, 1};
    ASSERT_OK(dr_extractive_answer(&strict, "Who painted the Mona Lisa?", k_passages, 3, &a, &err),
              &err);
    ASSERT(a.unanswerable);
    ASSERT_STR_EQ(a.text, "unanswerable");
    ASSERT_EQ(a.n_citations, 0);
    ASSERT(a.support < 0.9);
    dr_answer_free(&a);
    /* The same question with a low threshold gives some answer. */
    dr_extractive_config lax = {0.0, 1};
    ASSERT_OK(dr_extractive_answer(&lax, "When was the tower completed?", k_passages, 3, &a, &err),
              &err);
    ASSERT(!a.unanswerable);
    dr_answer_free(&a);
    /* No passages, empty question, stopword-only question. */
    ASSERT_OK(dr_extractive_answer(&lax, "Where is it?", NULL, 0, &a, &err), &err);
    ASSERT(a.unanswerable);
    ASSERT_NEAR(a.support, 0, 0);
    dr_answer_free(&a);
    ASSERT_OK(dr_extractive_answer(&lax, "", k_passages, 3, &a, &err), &err);
    ASSERT(a.unanswerable);
    dr_answer_free(&a);
    ASSERT_OK(dr_extractive_answer(NULL, "what is it", k_passages, 3, &a, &err), &err);
    ASSERT(a.unanswerable);
    dr_answer_free(&a);
    dr_passage empty[2] = {{NULL, NULL, NULL, 0, -1}, {"x", "", "", 0, -1}};
    ASSERT_OK(dr_extractive_answer(&lax, "Eiffel tower height", empty, 2, &a, &err), &err);
    ASSERT(a.unanswerable);
    dr_answer_free(&a);
    /* Bad arguments. */
    dr_extractive_config bad = {1.5, 1};
    ASSERT_EQ(dr_extractive_answer(&bad, "q", k_passages, 3, &a, &err), DYNRAG_ERR_INVALID);
    ASSERT(a.text == NULL);
    ASSERT_EQ(dr_extractive_answer(&lax, "q", NULL, 2, &a, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dr_extractive_answer(&lax, "q", k_passages, 3, NULL, &err), DYNRAG_ERR_INVALID);
}

TEST(gen_extractive_bad_utf8_and_huge_input)
{
    dynrag_error err;
    dr_answer a;
    dr_extractive_config cfg = {0.0, 1};
    dr_passage bad[1] = {{"b", "T\xff", "The zorblax \xc0\xaf reactor\x01 was built in 1971.\xfe",
                          1, 1}};
    ASSERT_OK(dr_extractive_answer(&cfg, "When was the zorblax reactor built?", bad, 1, &a, &err),
              &err);
    ASSERT(!a.unanswerable);
    ASSERT(dr_utf8_valid(a.text, strlen(a.text), NULL));
    ASSERT_CONTAINS(a.text, "1971");
    ASSERT_NOT_CONTAINS(a.text, "\x01");
    dr_answer_free(&a);

    /* 4 MB with no sentence end: the answer is cut to about 1000 bytes. */
    size_t n = 4u << 20;
    char *big = malloc(n + 1);
    ASSERT(big != NULL);
    for (size_t i = 0; i < n; i++)
        big[i] = "zorblax reactor "[i % 16];
    big[n] = '\0';
    dr_passage huge[1] = {{"h", "Huge", big, 1, 1}};
    int rc = dr_extractive_answer(&cfg, "zorblax reactor", huge, 1, &a, &err);
    free(big);
    ASSERT_OK(rc, &err);
    ASSERT(!a.unanswerable);
    ASSERT_LE(strlen(a.text), 1100);
    ASSERT_GT(strlen(a.text), 400);
    dr_answer_free(&a);
}

TEST(gen_extractive_deterministic)
{
    dynrag_error err;
    dr_answer a, b;
    dr_extractive_config cfg = {0.0, 3};
    ASSERT_OK(dr_extractive_answer(&cfg, "France Liberty 1886 Paris", k_passages, 3, &a, &err),
              &err);
    ASSERT_OK(dr_extractive_answer(&cfg, "France Liberty 1886 Paris", k_passages, 3, &b, &err),
              &err);
    ASSERT_STR_EQ(a.text, b.text);
    ASSERT_EQ(a.n_citations, b.n_citations);
    ASSERT_NEAR(a.support, b.support, 0);
    dr_answer_free(&a);
    dr_answer_free(&b);
}

/* How-to questions: the sentence that says what to do beats the one that
 * restates the question's words; a sentence ending in ':' answers with the
 * block after it; an acronym (WAL) stands for the question's phrase. */
TEST(gen_extractive_howto_prefers_instruction)
{
    static const dr_passage p[] = {
        {"atomic", "Atomic Commit In SQLite",
         "How do I enable write-ahead logging in SQLite? SQLite still supports atomic commit "
         "when write-ahead logging is enabled in SQLite, but it accomplishes atomic commit by a "
         "different mechanism. The rollback journal is the default.",
         2.0, 1},
        {"wal", "Write-Ahead Logging",
         "WAL mode has several advantages for concurrency. The persistence of WAL mode means "
         "that applications need no change. One has merely to run \"PRAGMA journal_mode=WAL;\" "
         "on the database file, then restart the application.",
         1.0, 2},
    };
    dynrag_error err;
    dr_answer a;
    dr_extractive_config one = {0.0, 1};
    ASSERT_OK(dr_extractive_answer(&one, "How do I enable write-ahead logging in SQLite?", p, 2,
                                   &a, &err),
              &err);
    ASSERT_CONTAINS(a.text, "journal_mode=WAL");
    ASSERT_EQ(a.n_citations, 1);
    ASSERT_EQ(a.citations[0], 1);
    dr_answer_free(&a);

    /* Not a how-to question: the descriptive sentence still wins. */
    ASSERT_OK(dr_extractive_answer(&one, "Does SQLite support atomic commit with write-ahead "
                                         "logging enabled?",
                                   p, 2, &a, &err),
              &err);
    ASSERT_CONTAINS(a.text, "still supports atomic commit");
    dr_answer_free(&a);

    static const dr_passage block[] = {
        {"wal", "Write-Ahead Logging",
         "An SQLite database connection defaults to journal_mode=DELETE. To convert to WAL "
         "mode, use the following pragma:\n\nPRAGMA journal_mode=WAL;\n\nThe journal_mode "
         "pragma returns a string which is the new journal mode.",
         1.0, 3},
        {"other", "Locking",
         "Write-ahead logging is enabled per database file in SQLite and readers do not block "
         "writers.",
         0.5, 4},
    };
    ASSERT_OK(dr_extractive_answer(&one, "How can I turn on write-ahead logging mode?", block, 2,
                                   &a, &err),
              &err);
    ASSERT_CONTAINS(a.text, "use the following pragma: PRAGMA journal_mode=WAL;");
    ASSERT_NOT_CONTAINS(a.text, "returns a string");
    dr_answer_free(&a);
}

/* Bridge questions: the answer is in the passage the best sentence names. */
TEST(gen_extractive_bridge_second_passage)
{
    static const dr_passage p[] = {
        {"kiss", "Kiss and Tell (1945 film)",
         "Kiss and Tell is a 1945 American comedy film starring then 17-year-old Shirley Temple "
         "as Corliss Archer. In the film, two teenage girls cause their respective parents much "
         "concern.",
         3.0, 1},
        {"meet", "Meet Corliss Archer",
         "Meet Corliss Archer is an American radio sitcom. The program was broadcast from 1943 "
         "to 1956 and portrayed the teenage girl.",
         2.0, 2},
        {"temple", "Shirley Temple",
         "Shirley Temple Black was an American actress, singer and dancer. She became Chief of "
         "Protocol of the United States in 1976.",
         1.0, 3},
    };
    const char *q = "In what year did the woman who portrayed Corliss Archer in the film Kiss and "
                    "Tell take up a diplomatic post?";
    dynrag_error err;
    dr_answer a;
    dr_extractive_config two = {0.0, 2};
    ASSERT_OK(dr_extractive_answer(&two, q, p, 3, &a, &err), &err);
    ASSERT_CONTAINS(a.text, "starring then 17-year-old Shirley Temple");
    ASSERT_CONTAINS(a.text, "in 1976");
    ASSERT_EQ(a.n_citations, 2);
    ASSERT_EQ(a.citations[0], 0);
    ASSERT_EQ(a.citations[1], 2);
    dr_answer_free(&a);

    /* One sentence: the bridged one, as it has the answer type (a year). */
    dr_extractive_config one = {0.0, 1};
    ASSERT_OK(dr_extractive_answer(&one, q, p, 3, &a, &err), &err);
    ASSERT_CONTAINS(a.text, "in 1976");
    ASSERT_EQ(a.n_citations, 1);
    ASSERT_EQ(a.citations[0], 2);
    dr_answer_free(&a);

    /* No passage named by the best sentence: plain support order. */
    ASSERT_OK(dr_extractive_answer(&two, q, p, 2, &a, &err), &err);
    ASSERT_NOT_CONTAINS(a.text, "1976");
    dr_answer_free(&a);
}

TEST(gen_context_dedupe_k_and_numbering)
{
    dynrag_error err;
    dr_passage in[] = {
        {"a", "Alpha", "Alpha is the first letter. It opens the alphabet.", 3, 1},
        {"a", "Alpha", "a different text with the same chunk id", 2.9, 1},
        {"b", "Alpha copy", "Alpha is the first letter. It opens the alphabet!", 2.8, 2},
        {"c", "Gamma", "Gamma is the third letter.", 2, 3},
        {"d", "Delta", "Delta is the fourth letter.", 1, 4},
    };
    dr_context_config cfg = {"topk", 2, 0};
    size_t *kept = NULL, n_kept = 0;
    char *text = NULL;
    int tokens = -1;
    ASSERT_OK(dr_context_pack(&cfg, in, 5, &kept, &n_kept, &text, &tokens, &err), &err);
    ASSERT_EQ(n_kept, 2);
    ASSERT_EQ(kept[0], 0);
    ASSERT_EQ(kept[1], 3);
    ASSERT_STR_EQ(text, "[1] Alpha\nAlpha is the first letter. It opens the alphabet.\n\n"
                        "[2] Gamma\nGamma is the third letter.");
    ASSERT_EQ(tokens, dr_estimate_tokens(text));
    free(kept);
    free(text);

    /* Documents: duplicates by document id. */
    dr_context_config docs = {"documents", 0, 1000};
    ASSERT_OK(dr_context_pack(&docs, in, 5, &kept, &n_kept, &text, &tokens, &err), &err);
    ASSERT_EQ(n_kept, 3); /* a, c, d (b is near-identical text) */
    ASSERT_CONTAINS(text, "[3] Delta\n");
    free(kept);
    free(text);

    /* Empty input and bad configs. */
    ASSERT_OK(dr_context_pack(&cfg, NULL, 0, &kept, &n_kept, &text, &tokens, &err), &err);
    ASSERT_EQ(n_kept, 0);
    ASSERT(kept == NULL);
    ASSERT_STR_EQ(text, "");
    ASSERT_EQ(tokens, 0);
    free(text);
    dr_context_config bad_kind = {"sentences", 3, 0};
    ASSERT_EQ(dr_context_pack(&bad_kind, in, 5, &kept, &n_kept, &text, &tokens, &err),
              DYNRAG_ERR_INVALID);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "sentences");
    ASSERT(text == NULL);
    dr_context_config bad_k = {"topk", 0, 0};
    ASSERT_EQ(dr_context_pack(&bad_k, in, 5, &kept, &n_kept, &text, &tokens, &err),
              DYNRAG_ERR_INVALID);
    dr_context_config bad_t = {"tokens", 0, 0};
    ASSERT_EQ(dr_context_pack(&bad_t, in, 5, &kept, &n_kept, &text, &tokens, &err),
              DYNRAG_ERR_INVALID);
}

TEST(gen_context_token_budget_sentence_cut)
{
    dynrag_error err;
    dr_passage in[] = {
        {"a", "One", "Alpha beta gamma delta.", 2, 1},                          /* 2+4 words */
        {"b", "Two", "First short sentence here. Second sentence is longer than that. Third.",
         1, 2},
        {"c", "Three", "Never reached.", 0.5, 3},
    };
    /* Budget 16 tokens = 12 words: block 1 has 6 words ("[1]" "One" + 4), block 2's
     * header 2 words, leaving 4: "First short sentence here." fits, the rest does not. */
    dr_context_config cfg = {"tokens", 0, 16};
    size_t *kept = NULL, n_kept = 0;
    char *text = NULL;
    int tokens = 0;
    ASSERT_OK(dr_context_pack(&cfg, in, 3, &kept, &n_kept, &text, &tokens, &err), &err);
    ASSERT_EQ(n_kept, 2);
    ASSERT_STR_EQ(text, "[1] One\nAlpha beta gamma delta.\n\n[2] Two\nFirst short sentence here.");
    ASSERT_EQ(tokens, 16);
    ASSERT_EQ(tokens, dr_estimate_tokens(text));
    free(kept);
    free(text);
    /* Too small for the first sentence of the first passage: empty context. */
    dr_context_config tiny = {"tokens", 0, 3};
    ASSERT_OK(dr_context_pack(&tiny, in, 3, &kept, &n_kept, &text, &tokens, &err), &err);
    ASSERT_EQ(n_kept, 0);
    ASSERT_STR_EQ(text, "");
    free(text);
    /* Invalid UTF-8 and control characters come out cleaned. */
    dr_passage dirty[] = {{"x", "Bad\xff title", "Line one.\n\nLine\ttwo \xc3.", 1, 9}};
    dr_context_config topk = {"topk", 5, 0};
    ASSERT_OK(dr_context_pack(&topk, dirty, 1, &kept, &n_kept, &text, &tokens, &err), &err);
    ASSERT(dr_utf8_valid(text, strlen(text), NULL));
    ASSERT_STR_EQ(text, "[1] Bad\xef\xbf\xbd title\nLine one. Line two \xef\xbf\xbd.");
    free(kept);
    free(text);
    ASSERT_EQ(dr_estimate_tokens("one two three"), 4);
    ASSERT_EQ(dr_estimate_tokens(""), 0);
    ASSERT_EQ(dr_estimate_tokens(NULL), 0);
}

TEST(gen_prompt_render_and_errors)
{
    dynrag_error err;
    char *out = NULL;
    ASSERT_OK(dr_prompt_render("Q: {question} {{literal}} C: {context}{steps}!", "why?", "ctx",
                               NULL, &out, &err),
              &err);
    ASSERT_STR_EQ(out, "Q: why? {literal} C: ctx!");
    free(out);
    /* Values are not re-read as templates. */
    ASSERT_OK(dr_prompt_render("{question}", "{context}", "x", "", &out, &err), &err);
    ASSERT_STR_EQ(out, "{context}");
    free(out);
    ASSERT_EQ(dr_prompt_render("Hello {answer} there", "q", "c", "s", &out, &err),
              DYNRAG_ERR_PARSE);
    ASSERT(out == NULL);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "{answer}");
    ASSERT_CONTAINS(dynrag_errmsg(&err), "offset 6");
    ASSERT_EQ(dr_prompt_check("abc {question", &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "unbalanced '{' at offset 4");
    ASSERT_EQ(dr_prompt_check("a } b", &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "unbalanced '}' at offset 2");
    ASSERT_EQ(dr_prompt_check("{ {question}", &err), DYNRAG_ERR_PARSE);
    ASSERT_EQ(dr_prompt_check("{{ }}", &err), DYNRAG_OK);
    ASSERT_EQ(dr_prompt_check(NULL, &err), DYNRAG_ERR_INVALID);
    /* The default template is valid and says what it must. */
    ASSERT_OK(dr_prompt_check(dr_prompt_default_template, &err), &err);
    ASSERT_OK(dr_prompt_render(dr_prompt_default_template, "Who?", "[1] T\ntext", "", &out, &err),
              &err);
    ASSERT_CONTAINS(out, "unanswerable");
    ASSERT_CONTAINS(out, "[1] T\ntext");
    ASSERT_CONTAINS(out, "Question: Who?\nAnswer:");
    free(out);
}

/* A title set for the tests: has() of a fixed list of keys. */
typedef struct test_titles {
    uint64_t keys[8];
    size_t n;
} test_titles;

static bool test_titles_has(void *user, uint64_t key)
{
    const test_titles *t = user;
    for (size_t i = 0; i < t->n; i++)
        if (t->keys[i] == key)
            return true;
    return false;
}

/* Title keys: the content words' stems in any order, once each, without a
 * trailing parenthetical; no content word, no key. Linking: a candidate that
 * names an indexed title is the bridge before a better-scored one that does
 * not, in the next query and in the sufficiency features. */
TEST(gen_reformulate_links_titles)
{
    uint64_t k = dr_title_key("Kiss and Tell", 13);
    ASSERT(k != 0);
    ASSERT_EQ(dr_title_key("Kiss and Tell (1945 film)", 25), k);
    ASSERT_EQ(dr_title_key("tell, KISS", 10), k);
    ASSERT_EQ(dr_title_key("New York New York", 17), dr_title_key("New York", 8));
    ASSERT(dr_title_key("Kiss", 4) != k);
    ASSERT_EQ(dr_title_key("the and of", 10), 0);
    ASSERT_EQ(dr_title_key("", 0), 0);
    ASSERT_EQ(dr_title_key(NULL, 5), 0);
    ASSERT(dr_title_key("(1945 film)", 11) != 0); /* nothing before it: kept */

    const char *q = "Which post did the actress who starred in the comedy Kiss and Tell hold?";
    dr_passage p[] = {{"k", "Kiss and Tell (1945 film)",
                       "Kiss and Tell is a comedy from Paramount Pictures starring Shirley Temple.",
                       1, 1}};
    dynrag_error err;
    dr_reform_state *st = NULL;
    char *next = NULL;
    ASSERT_OK(dr_reform_create(&st), &err);
    ASSERT_OK(dr_reformulate(st, q, p, 1, &next, &err), &err);
    ASSERT(next != NULL && strncmp(next, "Paramount Pictures", 18) == 0); /* unlinked order */
    free(next);
    dr_reform_free(st);
    dr_sufficiency f;
    ASSERT_OK(dr_reform_sufficiency(q, p, 1, NULL, &f, &err), &err);
    ASSERT_STR_EQ(f.bridge, "Paramount Pictures");
    ASSERT(!f.bridge_linked);

    test_titles t = {{dr_title_key("Shirley Temple", 14), dr_title_key("Kiss and Tell", 13)}, 2};
    dr_titles titles = {test_titles_has, &t};
    ASSERT_OK(dr_reform_create(&st), &err);
    dr_reform_set_titles(st, &titles);
    ASSERT_OK(dr_reformulate(st, q, p, 1, &next, &err), &err);
    ASSERT(next != NULL && strncmp(next, "Shirley Temple ", 15) == 0);
    free(next);
    /* next: the unlinked one, then none */
    ASSERT_OK(dr_reformulate(st, q, p, 1, &next, &err), &err);
    ASSERT(next != NULL && strncmp(next, "Paramount Pictures", 18) == 0);
    free(next);
    dr_reform_set_titles(st, NULL); /* back to no linking: accepted */
    dr_reform_free(st);
    ASSERT_OK(dr_reform_sufficiency(q, p, 1, &titles, &f, &err), &err);
    ASSERT_STR_EQ(f.bridge, "Shirley Temple");
    ASSERT(f.bridge_linked && !f.bridge_in_hand);
}

TEST(gen_reformulate_bridge_and_stop)
{
    dynrag_error err;
    dr_reform_state *st = NULL;
    ASSERT_OK(dr_reform_create(&st), &err);
    const char *q = "In what year did the woman who portrayed Corliss Archer in the film Kiss and "
                    "Tell take up a diplomatic post?";
    dr_passage hop1[] = {
        {"k", "Kiss and Tell (1945 film)",
         "Kiss and Tell is a 1945 American comedy film starring then 17-year-old Shirley Temple "
         "as Corliss Archer. In the film, two teenage girls cause their respective parents much "
         "concern.",
         1, 1},
    };
    char *next = NULL;
    ASSERT_OK(dr_reformulate(st, q, hop1, 1, &next, &err), &err);
    ASSERT(next != NULL);
    /* The bridge first, then what of the question its passage does not say. */
    ASSERT(strncmp(next, "Shirley Temple ", 15) == 0);
    ASSERT_CONTAINS(next, "diplomatic post");
    ASSERT(strstr(next, "Corliss") == NULL && strstr(next, "Kiss") == NULL);
    free(next);
    /* The same evidence again: one other bridge per call, never that one
     * again, until none is left (the stop). */
    int calls = 0;
    do {
        ASSERT_OK(dr_reformulate(st, q, hop1, 1, &next, &err), &err);
        ASSERT(next == NULL || strstr(next, "Shirley") == NULL);
        free(next);
    } while (next != NULL && ++calls < 10);
    ASSERT(calls < 10);
    dr_reform_free(st);
    /* A bridge whose passage is already in hand is skipped (an alias with a
     * middle name counts); the next one is taken. */
    ASSERT_OK(dr_reform_create(&st), &err);
    dr_passage hop2[] = {
        {"k", "Kiss and Tell (1945 film)",
         "Kiss and Tell stars Shirley Jane Temple as Corliss Archer. The film was produced by "
         "Sol C. Siegel for Columbia Pictures, based on the play Kiss and Tell.",
         1, 1},
        {"s", "Shirley Temple", "Shirley Temple was an American actress.", 0.5, 2},
    };
    ASSERT_OK(dr_reformulate(st, q, hop2, 2, &next, &err), &err);
    ASSERT(next != NULL);
    ASSERT(strstr(next, "Shirley") == NULL);
    ASSERT(strstr(next, "Siegel") != NULL || strstr(next, "Columbia") != NULL);
    free(next);
    /* No passages: no evidence. Bad arguments. */
    ASSERT_OK(dr_reformulate(st, q, NULL, 0, &next, &err), &err);
    ASSERT(next == NULL);
    ASSERT_EQ(dr_reformulate(NULL, q, hop1, 1, &next, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dr_reformulate(st, q, NULL, 3, &next, &err), DYNRAG_ERR_INVALID);
    dr_reform_free(st);
    dr_reform_free(NULL);

    /* Title and passage text already covered by the question: nothing new. */
    ASSERT_OK(dr_reform_create(&st), &err);
    dr_passage same[] = {{"p", "Paris", "Paris is the capital of France.", 1, 1}};
    ASSERT_OK(dr_reformulate(st, "Is Paris the capital of France?", same, 1, &next, &err), &err);
    ASSERT(next == NULL);
    /* Invalid UTF-8 in the evidence comes out valid. */
    dr_passage bad[] = {{"b", "Zorb\xff Land", "Zorb land is where Big \xfe Zed lives.", 1, 1}};
    ASSERT_OK(dr_reformulate(st, "Where is zorb land?", bad, 1, &next, &err), &err);
    ASSERT(next != NULL);
    ASSERT(dr_utf8_valid(next, strlen(next), NULL));
    free(next);
    dr_reform_free(st);
}

TEST(gen_reform_sufficiency_features)
{
    dynrag_error err;
    dr_sufficiency f;
    const char *q = "Which position did the woman who portrayed Corliss Archer in Kiss and Tell "
                    "hold?";
    dr_passage kiss = {"k", "Kiss and Tell (1945 film)",
                       "Kiss and Tell is a 1945 film starring Shirley Temple as Corliss Archer.",
                       1, 1};
    dr_passage shirley = {"s", "Shirley Temple",
                          "Shirley Temple was a woman who held the position of ambassador.", 0.5,
                          2};
    /* The first hop alone: the bridge is named but not in hand; "position",
     * "woman", "portrayed" and "hold" are missing. */
    ASSERT_OK(dr_reform_sufficiency(q, &kiss, 1, NULL, &f, &err), &err);
    ASSERT(f.has_bridge && !f.bridge_in_hand);
    ASSERT_STR_EQ(f.bridge, "Shirley Temple");
    ASSERT(f.coverage > 0 && f.coverage < 0.7);
    /* Both hops: the bridge is in hand and the coverage grows. */
    dr_passage both[] = {kiss, shirley};
    double before = f.coverage;
    ASSERT_OK(dr_reform_sufficiency(q, both, 2, NULL, &f, &err), &err);
    ASSERT(f.has_bridge && f.bridge_in_hand);
    ASSERT(f.coverage > before && f.coverage <= 1);
    /* Nothing retrieved: no coverage, no bridge; a question of stopwords
     * only is covered. Bad arguments. */
    ASSERT_OK(dr_reform_sufficiency(q, NULL, 0, NULL, &f, &err), &err);
    ASSERT(f.coverage == 0 && !f.has_bridge && f.bridge[0] == '\0');
    ASSERT_OK(dr_reform_sufficiency("Who is it?", NULL, 0, NULL, &f, &err), &err);
    ASSERT(f.coverage == 1);
    ASSERT_EQ(dr_reform_sufficiency(NULL, &kiss, 1, NULL, &f, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dr_reform_sufficiency(q, NULL, 1, NULL, &f, &err), DYNRAG_ERR_INVALID);
    ASSERT_EQ(dr_reform_sufficiency(q, &kiss, 1, NULL, NULL, &err), DYNRAG_ERR_INVALID);
}

TEST(gen_extractive_hotpotqa_floor)
{
    /* A regression floor on real data: the first 100 HotpotQA dev questions
     * with their ten paragraphs; two-sentence answers contained the gold
     * answer for 61 of them (50% of the 300) with the bridge pass
     * (docs/generation.md). */
    char path[1024];
    snprintf(path, sizeof(path), "%s/hotpotqa/dev300.jsonl", test_data_dir());
    if (!dr_path_exists(path))
        SKIP("no HotpotQA data");
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    char *line = NULL;
    size_t cap = 0, n = 0, hits = 0, cited = 0;
    while (n < 100 && getline(&line, &cap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        ASSERT(j != NULL);
        cJSON *ctx = cJSON_GetObjectItem(j, "contexts");
        cJSON *ans = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "answers_objects"), 0);
        const char *gold = cJSON_GetArrayItem(cJSON_GetObjectItem(ans, "spans"), 0)->valuestring;
        dr_passage p[32];
        bool sup[32];
        size_t np = 0;
        cJSON *c;
        cJSON_ArrayForEach(c, ctx)
        {
            if (np == 32)
                break;
            p[np].doc_id = p[np].title = cJSON_GetObjectItem(c, "title")->valuestring;
            p[np].text = cJSON_GetObjectItem(c, "paragraph_text")->valuestring;
            p[np].score = 0;
            p[np].chunk_id = (int64_t)np;
            sup[np] = cJSON_IsTrue(cJSON_GetObjectItem(c, "is_supporting"));
            np++;
        }
        dynrag_error err;
        dr_answer a;
        dr_extractive_config cfg = {0.0, 2};
        int rc = dr_extractive_answer(&cfg, cJSON_GetObjectItem(j, "question_text")->valuestring,
                                      p, np, &a, &err);
        if (rc != DYNRAG_OK) {
            cJSON_Delete(j);
            free(line);
            fclose(f);
            ASSERT_OK(rc, &err);
        }
        hits += strcasestr(a.text, gold) != NULL;
        bool cs = false;
        for (size_t k = 0; k < a.n_citations; k++)
            cs = cs || sup[a.citations[k]];
        cited += cs;
        dr_answer_free(&a);
        cJSON_Delete(j);
        n++;
    }
    free(line);
    fclose(f);
    ASSERT_EQ(n, 100);
    ASSERT_GE(hits, 55);
    ASSERT_GE(cited, 80);
}

/* Words whose stems are themselves (no suffix dr_gen_stem strips), so the
 * test can match them as plain strings. */
static const char *const k_cover_vocab[] = {"zorb", "quix", "plon", "vark", "muno", "tepi",
                                            "glaf", "rund", "whex", "jilt", "cobo", "dram"};
#define COVER_VOCAB 12

/* Whether passage text (space-separated vocabulary words and stopwords)
 * holds word w. */
static bool cover_has(const char *text, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = strstr(text, w); p; p = strstr(p + 1, w))
        if ((p == text || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

/* The coverage order is a permutation that keeps the fixed prefix and then
 * places, at every step, a passage adding the most uncovered question words
 * (the lowest index among ties), and the rest in their order once nothing
 * is left to cover: checked against a brute-force reference over random
 * questions and passages. */
TEST(gen_context_cover_order_greedy_property)
{
    dynrag_error err;
    uint64_t seed = 0x5eed;
    for (int trial = 0; trial < 400; trial++) {
        size_t n = 1 + (size_t)(test_rand(&seed) % 12);
        char q[256] = "what the";
        bool in_q[COVER_VOCAB] = {false};
        for (int i = 0; i < COVER_VOCAB; i++) {
            if (test_rand(&seed) % 3 == 0) {
                in_q[i] = true;
                strcat(q, " ");
                strcat(q, k_cover_vocab[i]);
            }
        }
        char texts[12][256], titles[12][32];
        dr_passage in[12];
        for (size_t i = 0; i < n; i++) {
            texts[i][0] = '\0';
            for (int w = 0; w < 6; w++) {
                strcat(texts[i], w ? " " : "");
                strcat(texts[i], test_rand(&seed) % 4 == 0 ? "the"
                                 : k_cover_vocab[test_rand(&seed) % COVER_VOCAB]);
            }
            snprintf(titles[i], sizeof(titles[i]), "%s",
                     test_rand(&seed) % 5 == 0 ? k_cover_vocab[test_rand(&seed) % COVER_VOCAB]
                                               : "of");
            in[i] = (dr_passage){"d", titles[i], texts[i], 1.0, (int64_t)i};
        }
        size_t n_fixed = (size_t)(test_rand(&seed) % 3);
        size_t order[12];
        ASSERT_OK(dr_context_cover_order(q, in, n, n_fixed, order, &err), &err);
        bool placed[12] = {false}, covered[COVER_VOCAB] = {false};
        bool exhausted = false;
        size_t last_rest = 0;
        for (size_t p = 0; p < n; p++) {
            ASSERT(order[p] < n);
            ASSERT(!placed[order[p]]);
            /* The reference gain of each passage not yet placed. */
            int gain[12], best = 0;
            for (size_t i = 0; i < n; i++) {
                gain[i] = 0;
                for (int w = 0; w < COVER_VOCAB && !placed[i]; w++)
                    gain[i] += in_q[w] && !covered[w] &&
                               (cover_has(texts[i], k_cover_vocab[w]) ||
                                cover_has(titles[i], k_cover_vocab[w]));
                if (!placed[i] && gain[i] > best)
                    best = gain[i];
            }
            if (p < n_fixed) {
                ASSERT_EQ(order[p], p);
            } else if (!exhausted && best > 0) {
                ASSERT_EQ(gain[order[p]], best);
                for (size_t i = 0; i < order[p]; i++)
                    ASSERT(placed[i] || gain[i] < best);
            } else {
                /* Nothing left to cover: the rest in their order. */
                if (exhausted)
                    ASSERT_GT(order[p], last_rest);
                exhausted = true;
                for (size_t i = 0; i < order[p]; i++)
                    ASSERT(placed[i]);
                last_rest = order[p];
            }
            placed[order[p]] = true;
            for (int w = 0; w < COVER_VOCAB; w++)
                covered[w] |= in_q[w] && (cover_has(texts[order[p]], k_cover_vocab[w]) ||
                                          cover_has(titles[order[p]], k_cover_vocab[w]));
        }
    }
    size_t one;
    ASSERT_EQ(dr_context_cover_order(NULL, k_passages, 1, 0, &one, &err), DYNRAG_ERR_INVALID);
    ASSERT_OK(dr_context_cover_order("", NULL, 0, 0, &one, &err), &err);
}

/* A two-part question: ranked order packs two passages on its first part;
 * coverage order packs the passage on the second part instead. */
TEST(gen_context_cover_order_multi_part_question)
{
    dynrag_error err;
    dr_passage in[] = {
        {"a", "Kiss and Tell", "Kiss and Tell is a 1945 film starring Shirley Temple.", 3, 1},
        {"b", "A Kiss for Corliss", "A Kiss for Corliss is the sequel to Kiss and Tell.", 2, 2},
        {"c", "Shirley Temple", "Shirley Temple later served as Chief of Protocol, a government "
                                "position.", 1, 3},
    };
    size_t order[3];
    ASSERT_OK(dr_context_cover_order("What government position was held by the star of Kiss "
                                     "and Tell?", in, 3, 1, order, &err), &err);
    ASSERT_EQ(order[0], 0);
    ASSERT_EQ(order[1], 2);
    ASSERT_EQ(order[2], 1);
}
