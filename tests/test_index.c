/* test_index.c - indexing, HTML, chunking, the builtin embedder and search. */
#include "test.h"

#include "core/util.h"
#include "dynrag/index.h"
#include "embed/builtin.h"
#include "retrieve/chunk.h"
#include "retrieve/html.h"
#include "retrieve/titles.h"
#include "generate/reformulate.h"

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

static char fixture_buf[4][4300];

/* Path of tests/fixtures/corpus/<name> (4 rotating static buffers). */
static const char *fixture(const char *name)
{
    static int next = 0;
    char *b = fixture_buf[next++ % 4];
    snprintf(b, sizeof(fixture_buf[0]), "%s/tests/fixtures/corpus/%s", test_source_dir(), name);
    return b;
}

static void index_dir(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", test_tmpdir(), name);
}

/* Builds the tiny corpus index in tmpdir/name. */
static int build_tiny(const char *dir, const dynrag_build_options *opt, dynrag_error *err)
{
    const char *in[] = {fixture("tiny.jsonl")};
    return dynrag_index_add(dir, in, 1, opt, NULL, err);
}

/* Top hit's doc id for a query (static buffer; "" for no hits). */
static const char *top_doc(dynrag_index *idx, dynrag_search_mode mode, const char *q)
{
    static char out[128];
    dynrag_search_options o;
    dynrag_search_options_init(&o);
    o.mode = mode;
    o.k = 3;
    dynrag_hits h;
    dynrag_error err;
    out[0] = '\0';
    if (dynrag_index_search(idx, q, &o, &h, &err) != DYNRAG_OK)
        snprintf(out, sizeof(out), "error: %s", dynrag_errmsg(&err));
    else if (h.n > 0)
        dr_strlcpy(out, h.hits[0].doc_id, sizeof(out));
    dynrag_hits_free(&h);
    return out;
}

/* A canonical string of a result list, for comparing states. */
static char *results_sig(dynrag_index *idx, dynrag_search_mode mode, const char *q)
{
    dynrag_search_options o;
    dynrag_search_options_init(&o);
    o.mode = mode;
    o.k = 5;
    dynrag_hits h;
    dynrag_error err;
    dr_buf b = {0};
    if (dynrag_index_search(idx, q, &o, &h, &err) != DYNRAG_OK) {
        dr_buf_printf(&b, "error %s", dynrag_errmsg(&err));
        return dr_buf_take(&b);
    }
    for (size_t i = 0; i < h.n; i++)
        dr_buf_printf(&b, "%s:%lld:%.6f ", h.hits[i].doc_id, (long long)h.hits[i].chunk_id,
                      h.hits[i].score);
    dynrag_hits_free(&h);
    return dr_buf_take(&b);
}

TEST(index_jsonl_formats)
{
    char dir[4300];
    index_dir(dir, sizeof(dir), "ix");
    const char *in[] = {fixture("tiny.jsonl"), fixture("pyserini.jsonl"), fixture("titled.jsonl")};
    dynrag_build_stats st;
    dynrag_error err;
    ASSERT_OK(dynrag_index_add(dir, in, 3, NULL, &st, &err), &err);
    ASSERT_EQ(st.docs_added, 10);
    ASSERT_EQ(st.total_docs, 10);
    ASSERT_GE(st.total_chunks, 10);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    char *title = NULL, *text = NULL;
    ASSERT_OK(dynrag_index_document(idx, "42", &title, &text, &err), &err);
    ASSERT_STR_EQ(text, "Coffee beans are roasted seeds of the Coffea plant.");
    ASSERT_STR_EQ(title, "");
    free(title);
    free(text);
    ASSERT_OK(dynrag_index_document(idx, "t1", &title, NULL, &err), &err);
    ASSERT_STR_EQ(title, "Rivers");
    free(title);
    ASSERT_EQ(dynrag_index_document(idx, "nope", NULL, NULL, &err), DYNRAG_ERR_NOTFOUND);
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "camellia leaves"), "p1");
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "glaciers"), "t2");
    dynrag_index_info info;
    ASSERT_OK(dynrag_index_get_info(idx, &info), &err);
    ASSERT_EQ(info.docs, 10);
    ASSERT_EQ(info.dim, 256);
    ASSERT_EQ(dynrag_index_dim(idx), 256);
    ASSERT_CONTAINS(info.embedder, "builtin:v1:dim=256");
    ASSERT_STR_EQ(info.faiss_factory, "Flat");
    ASSERT(info.avg_chunk_tokens > 5);
    dynrag_index_close(idx);
}

TEST(index_folder_inputs)
{
    char dir[4300];
    index_dir(dir, sizeof(dir), "ix");
    const char *in[] = {fixture("folder")};
    dynrag_build_stats st;
    dynrag_error err;
    ASSERT_OK(dynrag_index_add(dir, in, 1, NULL, &st, &err), &err);
    ASSERT_EQ(st.docs_added, 3); /* .csv ignored */
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    char *title = NULL, *text = NULL;
    ASSERT_OK(dynrag_index_document(idx, "page.html", &title, &text, &err), &err);
    ASSERT_STR_EQ(title, "Tide & Moon");
    ASSERT_CONTAINS(text, "Tides");
    ASSERT_CONTAINS(text, "The moon's gravity pulls the oceans \xe2\x80\x94 tides rise & fall.");
    ASSERT_NOT_CONTAINS(text, "should not be indexed");
    ASSERT_NOT_CONTAINS(text, "hidden comment");
    ASSERT_NOT_CONTAINS(text, "color");
    free(title);
    free(text);
    ASSERT_OK(dynrag_index_document(idx, "sub/guide.md", &title, NULL, &err), &err);
    ASSERT_STR_EQ(title, "Kayaking Guide");
    free(title);
    ASSERT_OK(dynrag_index_document(idx, "notes.txt", &title, NULL, &err), &err);
    ASSERT_STR_EQ(title, "notes.txt");
    free(title);
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "life jacket"), "sub/guide.md");
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "should not be indexed tide"), "page.html");
    dynrag_index_close(idx);
}

TEST(index_html_edge_cases)
{
    struct {
        const char *html, *text, *title;
    } cases[] = {
        {"<p>a &amp; b &lt;c&gt; &quot;d&quot; &#65;&#x42; &eacute; &bogus; &#xZZ;</p>",
         "a & b <c> \"d\" AB \xc3\xa9 &bogus; &#xZZ;", ""},
        {"<script>alert('<p>x</p>')</script>visible<style>p{}</style>", "visible", ""},
        {"<SCRIPT type=x>hidden</SCRIPT >shown", "shown", ""},
        {"a<!-- c -->b<!-- unterminated", "ab", ""},
        {"<h2>Head</h2>body <b>bold", "Head\n\nbody bold", "Head"},
        {"1 < 2 and 3<4", "1 < 2 and 3<4", ""},
        {"<div title=\"a>b\">x</div><br>y<li>z", "x\n\ny\nz", ""},
        {"<title>T1</title><h1>H</h1>", "T1\n\nH", "T1"},
        {"<p>unclosed <a href=", "unclosed", ""},
        {"", "", ""},
        {"&#0; &#xD800; &#1114112;", "\xef\xbf\xbd \xef\xbf\xbd &#1114112;", ""},
        /* navigation boilerplate */
        {"<nav><a href=x>Home</a> <a>About</a></nav><p>Body</p>", "Body", ""},
        {"<div class=\"menu mainmenu\"><ul><li>Home<li>About</ul></div>text", "text", ""},
        {"<div class=x><div class='searchmenu'><form>Go</form></div>a</div>b", "a\n\nb", ""},
        {"<DIV ID=toc_sub><div>1. Intro</div><div>2. Use</div></DIV>body", "body", ""},
        {"<div class=sidebar><div>a</div><div>b</div></div>c", "c", ""},
        {"<div role=\"navigation\">x</div>y<footer>(c) 2024</footer>", "y", ""},
        {"<header>Site</header><article><header><h1>Post</h1></header>Body</article>",
         "Post\n\nBody", "Post"},
        {"<div class=header>Logo</div><main><div class=header>Intro</div></main>", "Intro", ""},
        {"<div class=\"main-content canvas navigator\">kept</div>", "kept", ""},
        {"<p class=nav>para</p><li class=menu>item", "para\n\nitem", ""},
        {"<div class=nav>never closed<p>text", "never closed\n\ntext", ""},
        {"<div class=nav><!-- </div> --><script>'</div>'</script>in</div>out", "out", ""},
        {"<div class=nav><div>a</div>b", "a\n\nb", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *text = NULL, *title = NULL;
        dynrag_error err;
        ASSERT_OK(dr_html_to_text(cases[i].html, strlen(cases[i].html), &text, &title, &err),
                  &err);
        ASSERT_STR_EQ(text, cases[i].text);
        ASSERT_STR_EQ(title, cases[i].title);
        free(text);
        free(title);
    }
}

/* Unclosed navigation elements are kept; the scans for their end share a
 * budget, so many of them stay linear instead of rescanning the rest. */
TEST(index_html_unclosed_nav_kept)
{
    const char *unit = "<div class=nav>x";
    size_t reps = 100000, ul = strlen(unit);
    char *html = malloc(reps * ul + 1);
    ASSERT(html != NULL);
    for (size_t i = 0; i < reps; i++)
        memcpy(html + i * ul, unit, ul);
    html[reps * ul] = '\0';
    char *text = NULL;
    dynrag_error err;
    ASSERT_OK(dr_html_to_text(html, reps * ul, &text, NULL, &err), &err);
    size_t xs = 0;
    for (const char *p = text; *p; p++)
        xs += *p == 'x';
    ASSERT_EQ(xs, reps);
    free(text);
    free(html);
}

TEST(index_malformed_jsonl)
{
    char dir[4300];
    index_dir(dir, sizeof(dir), "ix");
    dynrag_error err;
    ASSERT_OK(build_tiny(dir, NULL, &err), &err);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    char *before = results_sig(idx, DYNRAG_SEARCH_HYBRID, "honey bees pollination");
    dynrag_index_close(idx);
    struct {
        const char *body, *msg;
    } bad[] = {
        {"{\"_id\":\"n1\",\"text\":\"fine\"}\n{\"_id\":\"n2\",\"text\":\"ok\"}\n{broken\n",
         "bad.jsonl:3: not valid JSON"},
        {"{\"_id\":\"n1\",\"text\":\"honey\"}\n[1,2]\n", "bad.jsonl:2: expected a JSON object"},
        {"{\"text\":\"no id\"}\n", "bad.jsonl:1: missing \"_id\" or \"id\""},
        {"{\"_id\":\"x\"}\n", "bad.jsonl:1: missing \"text\" or \"contents\""},
        {"{\"_id\":\"x\",\"text\":5}\n", "bad.jsonl:1: \"text\"/\"contents\" must be a string"},
        {"{\"_id\":\"\",\"text\":\"a\"}\n", "bad.jsonl:1: \"_id\"/\"id\" must be a non-empty"},
        {"{\"_id\":\"x\",\"text\":\"a\",\"title\":[]}\n", "bad.jsonl:1: \"title\" must be"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *path = test_write_file("bad.jsonl", bad[i].body);
        const char *in[] = {path};
        ASSERT_EQ(dynrag_index_add(dir, in, 1, NULL, NULL, &err), DYNRAG_ERR_PARSE);
        ASSERT_CONTAINS(dynrag_errmsg(&err), bad[i].msg);
    }
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    dynrag_index_info info;
    dynrag_index_get_info(idx, &info);
    ASSERT_EQ(info.docs, 6);
    char *after = results_sig(idx, DYNRAG_SEARCH_HYBRID, "honey bees pollination");
    ASSERT_STR_EQ(after, before);
    ASSERT_EQ(dynrag_index_document(idx, "n1", NULL, NULL, &err), DYNRAG_ERR_NOTFOUND);
    dynrag_index_close(idx);
    free(after);
    /* skip_bad: good lines go in, bad ones are counted */
    const char *path = test_write_file(
        "bad.jsonl", "{\"_id\":\"n1\",\"text\":\"fine words\"}\nnot json\n{\"x\":1}\n"
                     "{\"_id\":\"n2\",\"text\":\"more words\"}\n");
    const char *in[] = {path};
    dynrag_build_options opt;
    dynrag_build_options_init(&opt);
    opt.skip_bad = true;
    dynrag_build_stats st;
    ASSERT_OK(dynrag_index_add(dir, in, 1, &opt, &st, &err), &err);
    ASSERT_EQ(st.bad_inputs, 2);
    ASSERT_EQ(st.docs_added, 2);
    ASSERT_EQ(st.total_docs, 8);
    free(before);
}

TEST(index_unicode)
{
    char dir[4300];
    index_dir(dir, sizeof(dir), "ix");
    const char *path = test_write_file(
        "u.jsonl", "{\"_id\":\"u1\",\"title\":\"Caf\xc3\xa9\",\"text\":\"Cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
                   "e \xe6\x9d\xb1\xe4\xba\xac \xce\xb1\xce\xb2\xce\xb3 bad\xff\xfe byte\"}\n"
                   "{\"_id\":\"u2\",\"text\":\"\\u00dcber emoji \\ud83d\\ude00 here\"}\n");
    const char *in[] = {path};
    dynrag_error err;
    ASSERT_OK(dynrag_index_add(dir, in, 1, NULL, NULL, &err), &err);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    char *text = NULL;
    ASSERT_OK(dynrag_index_document(idx, "u1", NULL, &text, &err), &err);
    ASSERT_CONTAINS(text, "bad\xef\xbf\xbd\xef\xbf\xbd byte");
    ASSERT(dr_utf8_valid(text, strlen(text), NULL));
    free(text);
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "creme brulee cafe"), "u1");
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "UBER"), "u2");
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "\xce\x91\xce\x92\xce\x93"), "u1");
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_DENSE, "cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e"), "u1");
    dynrag_index_close(idx);
}

TEST(index_empty_inputs)
{
    char dir[4300];
    index_dir(dir, sizeof(dir), "ix");
    const char *in[] = {test_write_file("empty.jsonl", "\n  \n")};
    dynrag_build_stats st;
    dynrag_error err;
    ASSERT_OK(dynrag_index_add(dir, in, 1, NULL, &st, &err), &err);
    ASSERT_EQ(st.total_docs, 0);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "anything"), "");
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_HYBRID, "anything"), "");
    dynrag_index_close(idx);
    /* an empty document text still indexes the title */
    const char *in2[] = {test_write_file("e2.jsonl", "{\"_id\":\"a\",\"title\":\"Lonely title\",\"text\":\"\"}\n"
                                                     "{\"_id\":\"b\",\"text\":\"   \"}\n")};
    ASSERT_OK(dynrag_index_add(dir, in2, 1, NULL, &st, &err), &err);
    ASSERT_EQ(st.total_docs, 2);
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "lonely"), "a");
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, ""), "");
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "the of and"), "");
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_DENSE, ""), "");
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_HYBRID, "  ...  "), "");
    dynrag_index_close(idx);
    /* unsupported and missing inputs */
    const char *in3[] = {test_write_file("x.csv", "a,b\n")};
    ASSERT_EQ(dynrag_index_add(dir, in3, 1, NULL, NULL, &err), DYNRAG_ERR_INVALID);
    const char *in4[] = {"/nonexistent/file.jsonl"};
    ASSERT_EQ(dynrag_index_add(dir, in4, 1, NULL, NULL, &err), DYNRAG_ERR_NOTFOUND);
    ASSERT_EQ(dynrag_index_open("/nonexistent/idx", NULL, &idx, &err), DYNRAG_ERR_NOTFOUND);
}

TEST(index_known_ranking)
{
    char dir[4300];
    index_dir(dir, sizeof(dir), "ix");
    dynrag_error err;
    ASSERT_OK(build_tiny(dir, NULL, &err), &err);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    dynrag_search_mode modes[] = {DYNRAG_SEARCH_BM25, DYNRAG_SEARCH_DENSE, DYNRAG_SEARCH_HYBRID};
    for (size_t m = 0; m < 3; m++) {
        ASSERT_STR_EQ(top_doc(idx, modes[m], "how do plants make glucose from sunlight"), "d1");
        ASSERT_STR_EQ(top_doc(idx, modes[m], "lava eruption of a volcano"), "d2");
        ASSERT_STR_EQ(top_doc(idx, modes[m], "gravity so strong that light cannot escape"), "d3");
        ASSERT_STR_EQ(top_doc(idx, modes[m], "storming the Bastille in 1789"), "d5");
        ASSERT_STR_EQ(top_doc(idx, modes[m], "backpropagation gradient descent"), "d6");
    }
    /* BM25 scores: positive, descending; k1/b change scores */
    dynrag_search_options o;
    dynrag_search_options_init(&o);
    o.k = 6;
    dynrag_hits h, h2;
    ASSERT_OK(dynrag_index_search(idx, "honey bees flowers crops", &o, &h, &err), &err);
    ASSERT_GE(h.n, 1);
    ASSERT_STR_EQ(h.hits[0].doc_id, "d4");
    ASSERT_STR_EQ(h.hits[0].title, "Honey bees");
    ASSERT_CONTAINS(h.hits[0].text, "Bees collect nectar");
    ASSERT_EQ(h.hits[0].start, 0);
    for (size_t i = 1; i < h.n; i++)
        ASSERT(h.hits[i].score <= h.hits[i - 1].score);
    o.k1 = 2.0;
    o.b = 0.9;
    ASSERT_OK(dynrag_index_search(idx, "honey bees flowers crops", &o, &h2, &err), &err);
    ASSERT(fabs(h2.hits[0].score - h.hits[0].score) > 1e-6);
    dynrag_hits_free(&h);
    dynrag_hits_free(&h2);
    /* dense scores are cosines; embed matches */
    float v[256];
    ASSERT_OK(dynrag_index_embed(idx, "honey", v, &err), &err);
    double norm = 0;
    for (int i = 0; i < 256; i++)
        norm += (double)v[i] * v[i];
    ASSERT_NEAR(norm, 1.0, 1e-4);
    ASSERT_EQ(dynrag_search_mode_parse("hybrid"), DYNRAG_SEARCH_HYBRID);
    ASSERT_EQ(dynrag_search_mode_parse("x"), -1);
    ASSERT_STR_EQ(dynrag_search_mode_name(DYNRAG_SEARCH_DENSE), "dense");
    o.k = 0;
    o.k1 = -1;
    ASSERT_EQ(dynrag_index_search(idx, "x", &o, &h, &err), DYNRAG_ERR_INVALID);
    dynrag_index_close(idx);
}

TEST(index_fts_syntax_queries)
{
    char dir[4300];
    index_dir(dir, sizeof(dir), "ix");
    dynrag_error err;
    const char *in[] = {test_write_file(
        "s.jsonl", "{\"_id\":\"near\",\"text\":\"The NEAR operator and the AND gate, NOT OR.\"}\n"
                   "{\"_id\":\"col\",\"text\":\"body: column filters and carets ^ stars *\"}\n")};
    ASSERT_OK(dynrag_index_add(dir, in, 1, NULL, NULL, &err), &err);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    const char *queries[] = {"\"", "\"unbalanced", "*", "near*", "NEAR(", "NEAR(a b)", "AND",
                             "OR", "NOT", "a AND", "OR b", "-", "-gate", ":", "body:", "body:column",
                             "^", "^start", "(", ")", "((", "a)", "{body}", "\"\"\"", "+", "'",
                             "col:umn", "NEAR/2", "a NOT b", "* * *", "\\", "%", "_"};
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        for (int m = 0; m < 3; m++) {
            dynrag_search_options o;
            dynrag_search_options_init(&o);
            o.mode = (dynrag_search_mode)m;
            dynrag_hits h;
            int rc = dynrag_index_search(idx, queries[i], &o, &h, &err);
            if (rc != DYNRAG_OK)
                test_fail_(__FILE__, __LINE__, "query '%s' mode %d: %s", queries[i], m,
                           dynrag_errmsg(&err));
            ASSERT_OK(rc, &err);
            dynrag_hits_free(&h);
        }
    }
    /* operator words are searched as words */
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "NEAR("), "near");
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "gate AND"), "near");
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "body:column"), "col");
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "\"carets"), "col");
    dynrag_index_close(idx);
}

TEST(index_replace_and_delete)
{
    char dir[4300];
    index_dir(dir, sizeof(dir), "ix");
    dynrag_error err;
    ASSERT_OK(build_tiny(dir, NULL, &err), &err);
    const char *in[] = {test_write_file(
        "r.jsonl", "{\"_id\":\"d2\",\"title\":\"Submarines\",\"text\":\"A submarine dives under "
                   "the ocean using ballast tanks.\"}\n")};
    dynrag_build_stats st;
    ASSERT_OK(dynrag_index_add(dir, in, 1, NULL, &st, &err), &err);
    ASSERT_EQ(st.docs_replaced, 1);
    ASSERT_EQ(st.docs_added, 0);
    ASSERT_EQ(st.total_docs, 6);
    ASSERT_EQ(st.total_chunks, 6);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    for (int m = 0; m < 3; m++) {
        ASSERT_STR_EQ(top_doc(idx, (dynrag_search_mode)m, "submarine ballast tanks"), "d2");
        /* the old chunks and vectors are gone from every mode */
        char *sig = results_sig(idx, (dynrag_search_mode)m, "lava magma volcanic ash");
        ASSERT_NOT_CONTAINS(sig, "error");
        dynrag_search_options o;
        dynrag_search_options_init(&o);
        o.mode = (dynrag_search_mode)m;
        o.k = 20;
        dynrag_hits h;
        ASSERT_OK(dynrag_index_search(idx, "lava magma volcanic ash", &o, &h, &err), &err);
        for (size_t i = 0; i < h.n; i++)
            ASSERT_NOT_CONTAINS(h.hits[i].text, "Magma");
        dynrag_hits_free(&h);
        free(sig);
    }
    dynrag_index_close(idx);
    const char *ids[] = {"d2", "d4", "missing"};
    size_t missing = 0;
    ASSERT_OK(dynrag_index_delete(dir, ids, 3, &missing, &err), &err);
    ASSERT_EQ(missing, 1);
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    dynrag_index_info info;
    dynrag_index_get_info(idx, &info);
    ASSERT_EQ(info.docs, 4);
    ASSERT_EQ(info.chunks, 4);
    for (int m = 0; m < 3; m++) {
        const char *t = top_doc(idx, (dynrag_search_mode)m, "submarine honey bees");
        ASSERT(strcmp(t, "d2") != 0 && strcmp(t, "d4") != 0);
    }
    ASSERT_EQ(dynrag_index_document(idx, "d4", NULL, NULL, &err), DYNRAG_ERR_NOTFOUND);
    dynrag_index_close(idx);
    ASSERT_EQ(dynrag_index_delete("/nonexistent/ix", ids, 1, NULL, &err), DYNRAG_ERR_NOTFOUND);
}

/* A failure midway (bad line after good ones; FAISS write failing) keeps
 * the old index answering exactly as before. */
TEST(index_failure_keeps_old_state)
{
    char dir[4300];
    index_dir(dir, sizeof(dir), "ix");
    dynrag_error err;
    ASSERT_OK(build_tiny(dir, NULL, &err), &err);
    const char *q = "honey bees and volcanic lava";
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    char *before[3];
    for (int m = 0; m < 3; m++)
        before[m] = results_sig(idx, (dynrag_search_mode)m, q);
    dynrag_index_close(idx);
    const char *in[] = {test_write_file(
        "f.jsonl", "{\"_id\":\"d4\",\"text\":\"replaced honey\"}\n{\"_id\":\"new\",\"text\":\"lava\"}\n"
                   "{oops\n")};
    ASSERT_EQ(dynrag_index_add(dir, in, 1, NULL, NULL, &err), DYNRAG_ERR_PARSE);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "f.jsonl:3:");
    const char *in2[] = {test_write_file(
        "g.jsonl", "{\"_id\":\"d4\",\"text\":\"replaced honey\"}\n{\"_id\":\"new\",\"text\":\"lava\"}\n")};
    setenv("DYNRAG_TEST_FAIL_FAISS_WRITE", "1", 1);
    int rc = dynrag_index_add(dir, in2, 1, NULL, NULL, &err);
    const char *ids[] = {"d1"};
    int rc2 = dynrag_index_delete(dir, ids, 1, NULL, &err);
    unsetenv("DYNRAG_TEST_FAIL_FAISS_WRITE");
    ASSERT_EQ(rc, DYNRAG_ERR_IO);
    ASSERT_EQ(rc2, DYNRAG_ERR_IO);
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    for (int m = 0; m < 3; m++) {
        char *after = results_sig(idx, (dynrag_search_mode)m, q);
        ASSERT_STR_EQ(after, before[m]);
        free(after);
        free(before[m]);
    }
    ASSERT_EQ(dynrag_index_document(idx, "new", NULL, NULL, &err), DYNRAG_ERR_NOTFOUND);
    dynrag_index_close(idx);
    /* and the writer works again afterwards */
    ASSERT_OK(dynrag_index_add(dir, in2, 1, NULL, NULL, &err), &err);
}

/* Kills a writer (in a child process) at each point of the protocol; the
 * index must open and answer either the old or the new state. */
TEST(index_kill_points)
{
    const char *points[] = {"before_commit", "after_commit"};
    for (int p = 0; p < 2; p++) {
        char dir[4300];
        char name[32];
        snprintf(name, sizeof(name), "ix%d", p);
        index_dir(dir, sizeof(dir), name);
        dynrag_error err;
        ASSERT_OK(build_tiny(dir, NULL, &err), &err);
        const char *in[] = {test_write_file(
            "k.jsonl", "{\"_id\":\"k1\",\"text\":\"zeppelin airship hydrogen\"}\n")};
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) {
            setenv("DYNRAG_TEST_KILL_AT", points[p], 1);
            dynrag_index_add(dir, in, 1, NULL, NULL, NULL);
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        ASSERT(WIFSIGNALED(status));
        dynrag_index *idx = NULL;
        ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
        const char *want = p == 0 ? "" : "k1"; /* before commit: old; after: new */
        ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "zeppelin airship"), want);
        const char *dtop = top_doc(idx, DYNRAG_SEARCH_DENSE, "zeppelin airship hydrogen");
        if (p == 0)
            ASSERT(strcmp(dtop, "k1") != 0 && dtop[0] == 'd');
        else
            ASSERT_STR_EQ(dtop, "k1");
        dynrag_index_close(idx);
        /* the next writer finishes or discards the interrupted write */
        const char *in2[] = {fixture("pyserini.jsonl")};
        ASSERT_OK(dynrag_index_add(dir, in2, 1, NULL, NULL, &err), &err);
        char stray[4400];
        snprintf(stray, sizeof(stray), "%s/dense.faiss.2", dir);
        ASSERT(!dr_path_exists(stray));
        ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
        ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_DENSE, "camellia sinensis tea"), "p1");
        dynrag_index_close(idx);
    }
}

TEST(index_embedder_mismatch)
{
    char dir[4300];
    index_dir(dir, sizeof(dir), "ix");
    dynrag_error err;
    ASSERT_OK(build_tiny(dir, NULL, &err), &err);
    dynrag_embedder_config cfg = {0};
    cfg.kind = "builtin";
    cfg.dim = 128;
    dynrag_index *idx = NULL;
    ASSERT_EQ(dynrag_index_open(dir, &cfg, &idx, &err), DYNRAG_ERR_MISMATCH);
    ASSERT_CONTAINS(dynrag_errmsg(&err), "builtin:v1:dim=256");
    cfg.dim = 256;
    ASSERT_OK(dynrag_index_open(dir, &cfg, &idx, &err), &err);
    dynrag_index_close(idx);
    dynrag_build_options opt;
    dynrag_build_options_init(&opt);
    opt.embedder.dim = 64;
    const char *in[] = {fixture("pyserini.jsonl")};
    ASSERT_EQ(dynrag_index_add(dir, in, 1, &opt, NULL, &err), DYNRAG_ERR_MISMATCH);
    opt.embedder.dim = 0;
    opt.no_dense = true;
    ASSERT_EQ(dynrag_index_add(dir, in, 1, &opt, NULL, &err), DYNRAG_ERR_MISMATCH);
    opt.no_dense = false;
    opt.embedder.kind = "nonsense";
    ASSERT_EQ(dynrag_index_add(dir, in, 1, &opt, NULL, &err), DYNRAG_ERR_INVALID);
    /* a BM25-only index refuses dense search with a clear error */
    char dir2[4300];
    index_dir(dir2, sizeof(dir2), "bm25only");
    dynrag_build_options o2;
    dynrag_build_options_init(&o2);
    o2.no_dense = true;
    ASSERT_OK(build_tiny(dir2, &o2, &err), &err);
    ASSERT_OK(dynrag_index_open(dir2, NULL, &idx, &err), &err);
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, "honey"), "d4");
    ASSERT_CONTAINS(top_doc(idx, DYNRAG_SEARCH_DENSE, "honey"), "--no-dense");
    float v[8];
    ASSERT_EQ(dynrag_index_embed(idx, "x", v, &err), DYNRAG_ERR_UNSUPPORTED);
    ASSERT_EQ(dynrag_index_dim(idx), 0);
    dynrag_index_close(idx);
    /* a corrupted dense.faiss is refused, not misread */
    char faiss[4400];
    snprintf(faiss, sizeof(faiss), "%s/dense.faiss", dir);
    ASSERT_OK(dr_write_file_atomic(faiss, "garbage", 7, &err), &err);
    ASSERT_EQ(dynrag_index_open(dir, NULL, &idx, &err), DYNRAG_ERR_STATE);
}

typedef struct thread_arg {
    dynrag_index *idx;
    const char *const *queries;
    size_t n;
    char *sigs[16];
    int rounds;
} thread_arg;

static void *search_thread(void *p)
{
    thread_arg *a = p;
    for (int r = 0; r < a->rounds; r++)
        for (size_t i = 0; i < a->n; i++) {
            char *s = results_sig(a->idx, (dynrag_search_mode)(i % 3), a->queries[i]);
            if (r == 0)
                a->sigs[i] = s;
            else
                free(s);
        }
    return NULL;
}

TEST(index_concurrent_search)
{
    char dir[4300];
    index_dir(dir, sizeof(dir), "ix");
    dynrag_error err;
    const char *in[] = {fixture("tiny.jsonl"), fixture("folder"), fixture("pyserini.jsonl")};
    ASSERT_OK(dynrag_index_add(dir, in, 3, NULL, NULL, &err), &err);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    static const char *const qs[] = {"honey bees", "lava",     "tides moon gravity",
                                     "kayak",      "coffee",   "neural networks weights",
                                     "bastille",   "sourdough", "light escape"};
    size_t nq = sizeof(qs) / sizeof(qs[0]);
    thread_arg single = {idx, qs, nq, {0}, 1};
    search_thread(&single);
    thread_arg args[4];
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        args[t] = (thread_arg){idx, qs, nq, {0}, 5};
        ASSERT_EQ(pthread_create(&th[t], NULL, search_thread, &args[t]), 0);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < 4; t++)
        for (size_t i = 0; i < nq; i++) {
            ASSERT_STR_EQ(args[t].sigs[i], single.sigs[i]);
            ASSERT_NOT_CONTAINS(args[t].sigs[i], "error");
        }
    for (int t = 0; t < 4; t++)
        for (size_t i = 0; i < nq; i++)
            free(args[t].sigs[i]);
    for (size_t i = 0; i < nq; i++)
        free(single.sigs[i]);
    dynrag_index_close(idx);
}

TEST(index_chunking)
{
    dr_chunk_span *s = NULL;
    size_t n = 0;
    dynrag_error err;
    const char *t = "One two three. Four five six. Seven eight nine. Ten eleven twelve.";
    ASSERT_OK(dr_chunk_text(t, strlen(t), 6, 3, &s, &n, &err), &err);
    ASSERT_EQ(n, 3); /* [1-2] [2-3] [3-4] */
    ASSERT_EQ(s[0].start, 0);
    ASSERT_EQ(s[0].words, 6);
    ASSERT(strncmp(t + s[1].start, "Four", 4) == 0);
    ASSERT(strncmp(t + s[2].start, "Seven", 5) == 0);
    ASSERT_EQ(s[2].end, strlen(t));
    free(s);
    /* no overlap */
    ASSERT_OK(dr_chunk_text(t, strlen(t), 6, 0, &s, &n, &err), &err);
    ASSERT_EQ(n, 2);
    ASSERT(strncmp(t + s[1].start, "Seven", 5) == 0);
    free(s);
    /* one long sentence is windowed by words */
    const char *l = "a1 a2 a3 a4 a5 a6 a7 a8 a9 a10";
    ASSERT_OK(dr_chunk_text(l, strlen(l), 4, 1, &s, &n, &err), &err);
    ASSERT_EQ(n, 3); /* 1-4, 4-7, 7-10 */
    ASSERT_EQ(s[0].words, 4);
    ASSERT(strncmp(l + s[1].start, "a4 ", 3) == 0);
    ASSERT(strncmp(l + s[2].start, "a7 ", 3) == 0);
    ASSERT_EQ(s[2].end, strlen(l));
    free(s);
    ASSERT_OK(dr_chunk_text("   ", 3, 10, 2, &s, &n, &err), &err);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(dr_chunk_text(t, strlen(t), 5, 5, &s, &n, &err), DYNRAG_ERR_INVALID);
}

TEST(index_builtin_embedder)
{
    dr_embedder *e = NULL, *e2 = NULL;
    dynrag_error err;
    ASSERT_OK(dr_embedder_builtin_create(0, &e, &err), &err);
    ASSERT_EQ(e->dim, 256);
    ASSERT_STR_EQ(e->identity, "builtin:v1:dim=256:ngrams=w1,w2,c3-5");
    const char *texts[] = {"the quick brown fox jumps", "a quick brown fox leaped",
                           "stock markets fell sharply today", ""};
    ASSERT_OK(dr_builtin_observe(e, texts[2], strlen(texts[2]), &err), &err);
    ASSERT_OK(dr_builtin_observe(e, texts[0], strlen(texts[0]), &err), &err);
    ASSERT_OK(dr_builtin_finish_idf(e, &err), &err);
    ASSERT(dr_builtin_has_idf(e));
    ASSERT_EQ(dr_builtin_observe(e, "x", 1, &err), DYNRAG_ERR_STATE);
    float v[4 * 256];
    ASSERT_OK(dr_embed(e, texts, 4, v, &err), &err);
    double n0 = 0, d01 = 0, d02 = 0, n3 = 0;
    for (int i = 0; i < 256; i++) {
        n0 += (double)v[i] * v[i];
        d01 += (double)v[i] * v[256 + i];
        d02 += (double)v[i] * v[512 + i];
        n3 += fabs(v[768 + i]);
    }
    ASSERT_NEAR(n0, 1.0, 1e-5);
    ASSERT(d01 > d02 + 0.2);
    ASSERT_NEAR(n3, 0.0, 0.0);
    /* state round trip gives identical vectors */
    void *blob = NULL;
    size_t len = 0;
    ASSERT_OK(dr_builtin_state_save(e, &blob, &len, &err), &err);
    ASSERT_OK(dr_embedder_builtin_create(256, &e2, &err), &err);
    ASSERT_OK(dr_builtin_state_load(e2, blob, len, &err), &err);
    float w[256];
    ASSERT_OK(dr_embed(e2, texts, 1, w, &err), &err);
    ASSERT_EQ(memcmp(v, w, sizeof(w)), 0);
    ASSERT_EQ(dr_builtin_state_load(e2, blob, len - 1, &err), DYNRAG_ERR_FORMAT);
    ((unsigned char *)blob)[0] = 'X';
    ASSERT_EQ(dr_builtin_state_load(e2, blob, len, &err), DYNRAG_ERR_FORMAT);
    free(blob);
    dr_embedder_free(e2);
    ASSERT_OK(dr_embedder_builtin_create(64, &e2, &err), &err);
    ASSERT_OK(dr_builtin_state_save(e, &blob, &len, &err), &err);
    ASSERT_EQ(dr_builtin_state_load(e2, blob, len, &err), DYNRAG_ERR_MISMATCH);
    free(blob);
    dr_embedder_free(e2);
    dr_embedder_free(e);
    ASSERT_EQ(dr_embedder_builtin_create(3, &e, &err), DYNRAG_ERR_INVALID);
}

TEST(index_ivf_nprobe)
{
    char dir[4300];
    index_dir(dir, sizeof(dir), "ix");
    dynrag_error err;
    dynrag_build_options opt;
    dynrag_build_options_init(&opt);
    opt.faiss_factory = "IVF2,Flat";
    opt.chunk_tokens = 8;
    opt.chunk_overlap = 2;
    ASSERT_OK(build_tiny(dir, &opt, &err), &err);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    dynrag_index_info info;
    dynrag_index_get_info(idx, &info);
    ASSERT_STR_EQ(info.faiss_factory, "IVF2,Flat");
    ASSERT_GT(info.chunks, 6);
    dynrag_search_options o;
    dynrag_search_options_init(&o);
    o.mode = DYNRAG_SEARCH_DENSE;
    o.k = 50;
    o.nprobe = 2; /* every list: exhaustive */
    dynrag_hits h;
    ASSERT_OK(dynrag_index_search(idx, "volcanic lava", &o, &h, &err), &err);
    ASSERT_EQ(h.n, info.chunks);
    ASSERT_STR_EQ(h.hits[0].doc_id, "d2");
    dynrag_hits_free(&h);
    o.nprobe = 1;
    ASSERT_OK(dynrag_index_search(idx, "volcanic lava", &o, &h, &err), &err);
    ASSERT_LE(h.n, info.chunks);
    dynrag_hits_free(&h);
    dynrag_index_close(idx);
    opt.faiss_factory = "NoSuchIndex";
    ASSERT_EQ(build_tiny(dir, &opt, &err), DYNRAG_ERR_VECTOR);
    opt.faiss_factory = "IDMap,Flat";
    ASSERT_EQ(build_tiny(dir, &opt, &err), DYNRAG_ERR_INVALID);
}

TEST(index_cli)
{
    char dir[4300], cmd[13000];
    index_dir(dir, sizeof(dir), "ix");
    char *out = NULL;
    snprintf(cmd, sizeof(cmd), "%s index --index %s %s", test_cli_path(), dir,
             fixture("tiny.jsonl"));
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "indexed 6 docs (6 new, 0 replaced)");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s retrieve --index %s --mode hybrid -k 2 --json 'honey bees'",
             test_cli_path(), dir);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "\"rank\":1,\"chunk_id\":");
    ASSERT_CONTAINS(out, "\"doc_id\":\"d4\"");
    free(out);
    char qpath[4300], run[4300];
    snprintf(qpath, sizeof(qpath), "%s",
             test_write_file("q.jsonl", "{\"_id\":\"q1\",\"text\":\"lava\"}\n"
                                        "{\"_id\":\"q2\",\"text\":\"honey and bees\"}\n"));
    snprintf(run, sizeof(run), "%s/run.trec", test_tmpdir());
    snprintf(cmd, sizeof(cmd),
             "%s retrieve --index %s --mode bm25 -k 3 --queries %s --trec %s --tag t1",
             test_cli_path(), dir, qpath, run);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "2 queries (bm25, k=3)");
    free(out);
    char *trec = NULL;
    size_t len = 0;
    dynrag_error err;
    ASSERT_OK(dr_read_file(run, 1 << 20, &trec, &len, &err), &err);
    ASSERT_CONTAINS(trec, "q1 Q0 d2 1 ");
    ASSERT_CONTAINS(trec, " t1\n");
    ASSERT_CONTAINS(trec, "q2 Q0 d4 1 ");
    free(trec);
    snprintf(cmd, sizeof(cmd), "%s index --index %s %s", test_cli_path(), dir,
             test_write_file("bad.jsonl", "{\"_id\":\"z\",\"text\":\"ok\"}\nnope\n"));
    ASSERT_EQ(test_run(cmd, &out), 1);
    ASSERT_CONTAINS(out, "bad.jsonl:2: not valid JSON");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s index --index %s --delete d2", test_cli_path(), dir);
    ASSERT_EQ(test_run(cmd, &out), 0);
    ASSERT_CONTAINS(out, "deleted 1 documents (0 not found)");
    free(out);
    snprintf(cmd, sizeof(cmd), "%s retrieve --index %s --mode fuzzy x", test_cli_path(), dir);
    ASSERT_EQ(test_run(cmd, &out), 2);
    free(out);
    snprintf(cmd, sizeof(cmd), "%s index --index %s --chunk-tokens 5 --chunk-overlap 5 x.jsonl",
             test_cli_path(), dir);
    ASSERT_EQ(test_run(cmd, &out), 2);
    free(out);
}

TEST(index_scifact_smoke)
{
    char corpus[4300];
    snprintf(corpus, sizeof(corpus), "%s/scifact/corpus.jsonl", test_data_dir());
    if (!dr_path_exists(corpus))
        SKIP("SciFact not available");
    char dir[4300];
    index_dir(dir, sizeof(dir), "ix");
    const char *in[] = {corpus};
    dynrag_build_stats st;
    dynrag_error err;
    ASSERT_OK(dynrag_index_add(dir, in, 1, NULL, &st, &err), &err);
    ASSERT_EQ(st.total_docs, 5183);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    /* SciFact train query 2 and its judged document (qrels/train.tsv) */
    const char *q = "1 in 5 million in UK have abnormal PrP positivity.";
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_BM25, q), "13734012");
    ASSERT_STR_EQ(top_doc(idx, DYNRAG_SEARCH_HYBRID, q), "13734012");
    dynrag_index_close(idx);
}

/* The title keys multi-step retrieval links entities to: one per distinct
 * title with a content word, sorted; a new generation (a document added
 * while the handle is open) brings its title; pinned keys stay valid after
 * the handle moved on. */
static int add_one(const char *dir, const char *input, const dynrag_build_options *opt,
                   dynrag_error *err)
{
    const char *in[] = {input};
    return dynrag_index_add(dir, in, 1, opt, NULL, err);
}

TEST(index_title_keys_follow_generations)
{
    dynrag_error err;
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/ix", test_tmpdir());
    const char *c1 = test_write_file(
        "c1.jsonl", "{\"_id\":\"a\",\"title\":\"Kiss and Tell (1945 film)\",\"text\":\"x y\"}\n"
                    "{\"_id\":\"b\",\"title\":\"Shirley Temple\",\"text\":\"x z\"}\n"
                    "{\"_id\":\"c\",\"title\":\"Shirley Temple\",\"text\":\"dup title\"}\n"
                    "{\"_id\":\"d\",\"title\":\"the\",\"text\":\"no content word\"}\n");
    ASSERT_OK(add_one(dir, c1, NULL, &err), &err);
    dynrag_index *idx = NULL;
    ASSERT_OK(dynrag_index_open(dir, NULL, &idx, &err), &err);
    size_t n = 0;
    dynrag_index *pin = NULL;
    const uint64_t *k = dr_index_title_keys(idx, dr_title_key, &n, &pin);
    ASSERT_EQ(n, 2);
    ASSERT(k[0] < k[1]);
    uint64_t kiss = dr_title_key("Kiss and Tell", 13), temple = dr_title_key("Shirley Temple", 14);
    ASSERT((k[0] == kiss && k[1] == temple) || (k[0] == temple && k[1] == kiss));
    /* the same keys again (built once) */
    size_t n2 = 0;
    dynrag_index *pin2 = NULL;
    ASSERT(dr_index_title_keys(idx, dr_title_key, &n2, &pin2) == k && n2 == 2);
    dr_index_unpin(pin2);
    /* a new generation while the handle is open */
    const char *c2 = test_write_file("c2.jsonl",
                                     "{\"_id\":\"e\",\"title\":\"Chief of Protocol\",\"text\":\"q\"}\n");
    ASSERT_OK(add_one(dir, c2, NULL, &err), &err);
    bool seen = false;
    for (int i = 0; i < 200 && !seen; i++) { /* the handle notices within its check interval */
        dynrag_index *p3 = NULL;
        size_t n3 = 0;
        const uint64_t *k3 = dr_index_title_keys(idx, dr_title_key, &n3, &p3);
        uint64_t chief = dr_title_key("Chief of Protocol", 17);
        for (size_t j = 0; j < n3; j++)
            seen = seen || k3[j] == chief;
        if (seen)
            ASSERT_EQ(n3, 3);
        dr_index_unpin(p3);
        if (!seen)
            usleep(10000);
    }
    ASSERT(seen);
    /* the first keys are still readable: their snapshot is pinned */
    ASSERT((k[0] == kiss || k[0] == temple) && (k[1] == kiss || k[1] == temple));
    dr_index_unpin(pin);
    dr_index_unpin(NULL);
    dynrag_index_close(idx);
    ASSERT(dr_index_title_keys(NULL, dr_title_key, &n, &pin) == NULL && n == 0 && pin == NULL);
}
