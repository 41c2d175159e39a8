"""Tests of the dynrag Python binding against an installed libdynrag.

Run by tests/install/python_test.sh (ctest python_binding), which installs
the build into a temporary DESTDIR, indexes tests/fixtures/corpus/tiny.jsonl
with the installed CLI and sets:
  DYNRAG_LIBRARY       the installed libdynrag.so.<major>
  PYTHONPATH           the installed share/dynrag/python
  DYNRAG_TEST_INDEX    the index folder
  DYNRAG_TEST_CORPUS   the corpus it was built from
  DYNRAG_TEST_INCLUDE  the installed include folder (struct layout check)
  DYNRAG_TEST_TMP      a scratch folder
Offline: the pipelines answer with the extractive answerer.
"""
import gc
import json
import os
import random
import subprocess
import sys
import threading
import unittest

import dynrag

INDEX = os.environ["DYNRAG_TEST_INDEX"]
CORPUS = os.environ["DYNRAG_TEST_CORPUS"]
TMP = os.environ["DYNRAG_TEST_TMP"]

PIPELINE = """version: 1
name: py-{name}
index: {index}
log: {log}
stages:
  index:
    options:
      - {{name: bm25, kind: bm25}}
      - {{name: hybrid, kind: hybrid}}
    router: {router}
  generator:
    options:
      - {{name: extractive, kind: extractive, params: {{threshold: 0.1, max_sentences: 1}}}}
"""


def write_pipeline(name, router="{type: fixed, params: {option: bm25}}"):
    path = os.path.join(TMP, name + ".yaml")
    with open(path, "w") as f:
        f.write(PIPELINE.format(name=name, index=INDEX, log=os.path.join(TMP, name + ".jsonl"),
                                router=router))
    return path


def corpus():
    with open(CORPUS) as f:
        return [json.loads(line) for line in f if line.strip()]


class Base(unittest.TestCase):
    def tearDown(self):
        gc.collect()
        self.assertEqual(dynrag.live_handles(), {"pipeline": 0, "engine": 0, "index": 0, "router": 0})


class Library(Base):
    def test_version_and_status_names(self):
        self.assertEqual(dynrag.library_path(), os.environ["DYNRAG_LIBRARY"])
        self.assertRegex(dynrag.version(), r"^\d+\.\d+\.\d+$")
        self.assertEqual(dynrag.STATUS["OK"], 0)
        self.assertEqual(dynrag.STATUS["ERR_NOMEM"], -1)
        self.assertEqual(len(set(dynrag.STATUS.values())), len(dynrag.STATUS))
        self.assertIn("ERR_INTERNAL", dynrag.STATUS)

    def test_struct_layouts_match_the_installed_headers(self):
        # Every ctypes mirror has the C struct's size and field offsets.
        lines = ["#include <dynrag/dynrag.h>", "#include <stddef.h>", "#include <stdio.h>",
                 "int main(void) {"]
        for cname, cls in dynrag.STRUCTS.items():
            lines.append(f'printf("{cname} %zu\\n", sizeof({cname}));')
            for fname, _ in cls._fields_:
                lines.append(f'printf("{cname}.{fname} %zu\\n", offsetof({cname}, {fname}));')
        lines += ["return 0;", "}"]
        src = os.path.join(TMP, "layout.c")
        exe = os.path.join(TMP, "layout")
        with open(src, "w") as f:
            f.write("\n".join(lines))
        subprocess.run(["cc", "-std=c11", "-I", os.environ["DYNRAG_TEST_INCLUDE"], src, "-o",
                        exe], check=True)
        out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
        c = dict(line.rsplit(" ", 1) for line in out.splitlines())
        for cname, cls in dynrag.STRUCTS.items():
            self.assertEqual(int(c[cname]), dynrag.ctypes.sizeof(cls), cname)
            for fname, _ in cls._fields_:
                self.assertEqual(int(c[f"{cname}.{fname}"]), getattr(cls, fname).offset,
                                 f"{cname}.{fname}")

    def test_lookup_without_env_finds_the_installed_library(self):
        env = dict(os.environ)
        del env["DYNRAG_LIBRARY"]
        out = subprocess.run([sys.executable, "-c", "import dynrag; print(dynrag.library_path())"],
                             env=env, check=True, capture_output=True, text=True).stdout.strip()
        self.assertTrue(os.path.samefile(out, os.environ["DYNRAG_LIBRARY"]), out)

    def test_bad_library_path_is_an_import_error(self):
        env = dict(os.environ, DYNRAG_LIBRARY=os.path.join(TMP, "no-such-lib.so"))
        p = subprocess.run([sys.executable, "-c", "import dynrag"], env=env, capture_output=True,
                           text=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("DYNRAG_LIBRARY", p.stderr)


class Queries(Base):
    def test_every_document_is_found_by_its_own_sentence(self):
        path = write_pipeline("each")
        docs = corpus()
        with dynrag.Pipeline(path) as p, dynrag.Engine(p, no_log=True) as e:
            self.assertEqual(p.name, "py-each")
            self.assertEqual(os.path.realpath(p.index_dir), os.path.realpath(INDEX))
            for d in docs:
                sentence = d["text"].split(". ")[0]
                r = e.query(sentence)
                self.assertIsInstance(r, dynrag.Result)
                self.assertTrue(r.citations, sentence)
                self.assertEqual(r.citations[0].doc_id, d["_id"], sentence)
                self.assertEqual(r.citations[0].title, d["title"])
                self.assertFalse(r.unanswerable)
                self.assertIn(r.answer.rstrip(".").split(" ")[0], d["text"])
                # The record is the route-log record of the same query.
                self.assertEqual(r.record["id"], r.id)
                self.assertEqual(r.record["query"], sentence)
                self.assertEqual([s["stage"] for s in r.record["stages"]],
                                 [x.stage for x in r.decisions])
                self.assertEqual(r.route()["index"], "bm25")
                self.assertEqual(r.route()["generator"], "extractive")
                self.assertEqual(r.totals.retrieval_steps, 1)
                self.assertGreaterEqual(r.totals.latency_ms, 0)
                scores = [c.score for c in r.retrieved]
                self.assertEqual(scores, sorted(scores, reverse=True))

    def test_retrieve_route_force_and_k(self):
        with dynrag.Pipeline(write_pipeline("modes")) as p, dynrag.Engine(p, no_log=True) as e:
            q = "Which volcanic material disrupts air travel?"
            r = e.retrieve(q)
            self.assertEqual(r.answer, "")
            self.assertEqual(r.retrieved[0].doc_id, "d2")
            for k in range(1, 7):
                self.assertLessEqual(len(e.retrieve(q, k=k).retrieved), k)
            rt = e.route(q)
            self.assertEqual(rt.retrieved, [])
            self.assertEqual(rt.route()["index"], "bm25")
            forced = e.query(q, force={"index": "hybrid"})
            self.assertEqual(forced.route()["index"], "hybrid")
            self.assertIn("forced", [d.reason for d in forced.decisions if d.stage == "index"][0])
            self.assertEqual(e.query(q, query_id="my-id").id, "my-id")
            with self.assertRaises(dynrag.DynragError) as cm:
                e.query(q, force={"index": "no-such-option"})
            self.assertLess(cm.exception.status, 0)

    def test_budget(self):
        with dynrag.Pipeline(write_pipeline("modes")) as p, dynrag.Engine(p, no_log=True) as e:
            q = "Which volcanic material disrupts air travel?"
            r = e.query(q, budget={"usd": 1.0, "latency_ms": 60000})
            self.assertTrue(r.answer)
            self.assertEqual(r.record["budget"]["usd"], 1.0)
            for bad in ({"usd": -1}, {"dollars": 1}, {"usd": "1"}):
                with self.assertRaises(dynrag.DynragError) as cm:
                    e.query(q, budget=bad)
                self.assertEqual(cm.exception.status, dynrag.STATUS["ERR_INVALID"])

    def test_log_and_feedback(self):
        path = write_pipeline(
            "bandit", router="{type: bandit, params: {algorithm: epsilon_greedy, epsilon: 0.5, seed: 7}}")
        with dynrag.Pipeline(path) as p, dynrag.Engine(p) as e:
            self.assertTrue(e.log_path.endswith("bandit.jsonl"))
            ids = [e.query(f"Where is honey made? ({i})").id for i in range(8)]
            for i, qid in enumerate(ids):
                e.feedback(qid, 1.0 if i % 2 else -1.0)
            with self.assertRaises(dynrag.DynragError) as cm:
                e.feedback("no-such-query", 1.0)
            self.assertEqual(cm.exception.status, dynrag.STATUS["ERR_NOTFOUND"])
            self.assertEqual(cm.exception.name, "ERR_NOTFOUND")
            self.assertIn("no-such-query", cm.exception.message)
            for bad in (float("nan"), float("inf"), 2e6, -2e6):
                with self.assertRaises(dynrag.DynragError) as cm:
                    e.feedback(ids[0], bad)
                self.assertEqual(cm.exception.status, dynrag.STATUS["ERR_INVALID"])
            e.save()
            log = e.log_path
        with open(log) as f:
            logged = [json.loads(line)["id"] for line in f]
        self.assertEqual(logged[-8:], ids)

    def test_concurrent_queries(self):
        docs = corpus()
        with dynrag.Pipeline(write_pipeline("threads")) as p, dynrag.Engine(p, no_log=True) as e:
            failures = []

            def worker(seed):
                rnd = random.Random(seed)
                for _ in range(10):
                    d = rnd.choice(docs)
                    r = e.query(d["text"].split(". ")[0])
                    if r.citations[0].doc_id != d["_id"]:
                        failures.append((d["_id"], r.citations[0].doc_id))

            threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(failures, [])


class Errors(Base):
    def test_invalid_pipelines_raise_with_diagnostics(self):
        cases = {
            "syntax": "version: 1\nstages: [\n",
            "unknown-router": "version: 1\nname: x\nstages:\n  index:\n    options:\n"
                              "      - {name: a, kind: bm25}\n    router: {type: clasifier}\n",
            "version-and-stage": "version: 7\nname: x\nstages:\n  genrator: {}\n",
        }
        for name, text in cases.items():
            path = os.path.join(TMP, f"bad-{name}.yaml")
            with open(path, "w") as f:
                f.write(text)
            with self.assertRaises(dynrag.DynragError) as cm:
                dynrag.Pipeline(path)
            e = cm.exception
            self.assertEqual(e.status, dynrag.STATUS["ERR_PARSE"], name)
            self.assertTrue(e.diagnostics, name)
            self.assertTrue(all(d.file.endswith(f"bad-{name}.yaml") for d in e.diagnostics))
            self.assertIn(f"bad-{name}.yaml", str(e))
        # Every problem is listed, in file order, with its line.
        self.assertEqual([(d.line, d.path) for d in e.diagnostics],
                         [(1, "version"), (4, "stages.genrator")])

    def test_missing_files_and_bad_arguments(self):
        with self.assertRaises(dynrag.DynragError) as cm:
            dynrag.Pipeline(os.path.join(TMP, "missing.yaml"))
        self.assertLess(cm.exception.status, 0)
        self.assertIn("missing.yaml", cm.exception.message)
        with self.assertRaises(dynrag.DynragError):
            dynrag.Index(os.path.join(TMP, "no-index"))
        with dynrag.Pipeline(write_pipeline("args")) as p, dynrag.Engine(p, no_log=True) as e:
            for bad in ("", "   ", "a\0b"):
                with self.assertRaises(dynrag.DynragError) as cm:
                    e.query(bad)
                self.assertEqual(cm.exception.status, dynrag.STATUS["ERR_INVALID"], repr(bad))
            with self.assertRaises(dynrag.DynragError):
                e.query("q", k=0)
            with self.assertRaises(TypeError):
                e.query(b"bytes")
            with self.assertRaises(TypeError):
                dynrag.Engine("not a pipeline")
        with self.assertRaises(dynrag.DynragError) as cm:
            dynrag.Engine(p)  # p is closed
        self.assertEqual(cm.exception.status, dynrag.STATUS["ERR_STATE"])


class Index(Base):
    def test_search_every_k_and_mode(self):
        docs = corpus()
        with dynrag.Index(INDEX) as idx:
            for d in docs:
                q = d["text"].split(". ")[0]
                for k in range(1, len(docs) + 1):
                    hits = idx.search(q, k=k)
                    self.assertLessEqual(len(hits), k)
                    self.assertEqual(hits[0].doc_id, d["_id"])
                    self.assertEqual([h.score for h in hits],
                                     sorted((h.score for h in hits), reverse=True))
                    self.assertEqual(len({h.chunk_id for h in hits}), len(hits))
                    for h in hits:
                        self.assertTrue(0 <= h.start <= h.end)
                for mode in ("dense", "hybrid"):
                    self.assertEqual(idx.search(q, k=3, mode=mode)[0].doc_id, d["_id"], mode)
            self.assertEqual(idx.search("", k=5), [])
            with self.assertRaises(dynrag.DynragError):
                idx.search("q", mode="fuzzy")


class Handles(Base):
    def test_close_is_idempotent_and_use_after_close_raises(self):
        p = dynrag.Pipeline(write_pipeline("close"))
        e = dynrag.Engine(p, no_log=True)
        with self.assertRaises(dynrag.DynragError) as cm:
            p.close()  # an engine is still open
        self.assertEqual(cm.exception.status, dynrag.STATUS["ERR_STATE"])
        e.close()
        e.close()
        self.assertTrue(e.closed)
        with self.assertRaises(dynrag.DynragError) as cm:
            e.query("anything")
        self.assertEqual(cm.exception.status, dynrag.STATUS["ERR_STATE"])
        p.close()
        p.close()
        with self.assertRaises(dynrag.DynragError):
            p.name
        idx = dynrag.Index(INDEX)
        idx.close()
        with self.assertRaises(dynrag.DynragError):
            idx.search("honey")

    def test_random_open_close_and_drop_sequences_leave_no_handles(self):
        # Handles are dropped in random order, closed or left to the
        # finalizers; engines keep their pipeline alive until they go.
        path = write_pipeline("churn")
        rnd = random.Random(13)
        for _ in range(30):
            objs = []
            p = dynrag.Pipeline(path)
            objs.append(p)
            for _ in range(rnd.randint(0, 3)):
                objs.append(dynrag.Engine(p, no_log=True))
            if rnd.random() < 0.5:
                objs.append(dynrag.Index(INDEX))
            self.assertEqual(dynrag.live_handles()["engine"], len(objs) - 1 -
                             sum(isinstance(o, dynrag.Index) for o in objs))
            rnd.shuffle(objs)
            for o in objs:
                if isinstance(o, dynrag.Engine) and rnd.random() < 0.5:
                    o.query("Where is honey made?")
                if rnd.random() < 0.5 and not isinstance(o, dynrag.Pipeline):
                    o.close()
            del objs, p, o
            gc.collect()
            self.assertEqual(dynrag.live_handles(), {"pipeline": 0, "engine": 0, "index": 0, "router": 0})


GEN = """version: 1
name: {name}
stages:
  generator:
    options:
      - {{name: a, kind: extractive}}
      - {{name: b, kind: extractive}}
    router: {router}
"""


def write_gen(name, router):
    path = os.path.join(TMP, name + ".yaml")
    with open(path, "w") as f:
        f.write(GEN.format(name=name, router=router))
    return path


class Routers(Base):
    def test_route_judge_cascade_and_params(self):
        rules = ("{type: rules, params: {rules: [{when: {regex: alpha}, option: b}], "
                 "default: a}}")
        with dynrag.Pipeline(write_gen("r1", rules)) as p:
            with dynrag.Router(p, "generator") as r:
                self.assertEqual(r.type, "rules")
                self.assertEqual(r.options, ["a", "b"])
                self.assertEqual(r.route("alpha beta").option, "b")
                d = r.route("gamma")
                self.assertEqual(d.option, "a")
                self.assertIn("a", d.scores)
                self.assertTrue(d.reason)
                with self.assertRaises(dynrag.DynragError) as cm:
                    r.judge("x")
                self.assertEqual(cm.exception.status, dynrag.STATUS["ERR_UNSUPPORTED"])
                # the pipeline stays open while a router made from it is
                with self.assertRaises(dynrag.DynragError):
                    p.close()
        casc = "{type: cascade, params: {judge: agreement, threshold: 0.6}}"
        with dynrag.Pipeline(write_gen("r2", casc)) as p:
            with self.assertRaises(dynrag.DynragError) as cm:
                p.set_router_param("generator", "threshold", 2.0)
            self.assertEqual(cm.exception.status, dynrag.STATUS["ERR_INVALID"])
            self.assertIn("threshold", str(cm.exception))
            p.set_router_param("generator", "threshold", 0.7)
            self.assertEqual(p.to_dict()["stages"]["generator"]["router"]["params"]["threshold"],
                             0.7)
            with dynrag.Router(p, "generator") as r:
                self.assertEqual(r.route("q").option, "a")
                self.assertEqual(r.judge("unanswerable")[0], 0.0)
                conf, why = r.judge("Paris", samples=["Paris", "paris.", "Lyon"])
                self.assertAlmostEqual(conf, 2 / 3)
                self.assertEqual(r.cascade_next("q", ["a"], "a", conf), "b")
                self.assertIsNone(r.cascade_next("q", ["a", "b"], "b", 0.0))
                with self.assertRaises(dynrag.DynragError):
                    p.set_router_param("generator", "threshold", 0.5)

    def test_bandit_feedback_in_memory(self):
        state = os.path.join(TMP, "bandit-state.json")
        bandit = ("{type: bandit, params: {algorithm: epsilon_greedy, epsilon: 0.05, seed: 3, "
                  "state: " + state + "}}")
        with dynrag.Pipeline(write_gen("r3", bandit)) as p:
            r = dynrag.Router(p, "generator", in_memory=True)
            late_b = 0
            for i in range(300):
                d = r.route("what is it")
                r.feedback(f"q{i}", "what is it", d.option, 0.9 if d.option == "b" else 0.1,
                           cost_usd=0.001)
                late_b += i >= 200 and d.option == "b"
            self.assertGreaterEqual(late_b, 90)
            with self.assertRaises(dynrag.DynragError):
                r.feedback(None, "q", "c", 1.0)
            del r  # collected: the handle is released
            gc.collect()
            self.assertFalse(os.path.exists(state))


if __name__ == "__main__":
    unittest.main()
