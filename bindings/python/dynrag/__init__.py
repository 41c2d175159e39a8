"""DynamicRAG from Python: a ctypes binding over the installed libdynrag.so.

Standard library only. The shared library is found through, in order:
the DYNRAG_LIBRARY environment variable (a path), ctypes.util.find_library
("dynrag"), and libdynrag.so.<major> next to this package or in the lib
folders of the installation prefix it was installed under
(<prefix>/share/dynrag/python/dynrag/).

    import dynrag
    with dynrag.Pipeline("pipelines/naive-rag.yaml") as p, dynrag.Engine(p) as e:
        r = e.query("What is the maximum size of a SQLite database?")
        print(r.answer, [c.doc_id for c in r.citations], r.record["route"])

Handles (Pipeline, Engine, Index) are closed by close(), by a with block,
or by a finalizer when the object is collected. Results and hits are plain
Python objects copied out of the library; they hold no C memory. Every
failure raises DynragError with the library's status and message.
"""

import ctypes
import ctypes.util
import glob
import json
import math
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "DynragError", "Pipeline", "Engine", "Index", "Result", "Citation", "Decision",
    "Totals", "Hit", "Diagnostic", "version", "library_path", "STATUS",
]

_ABI_MAJOR = 0  # the SONAME major version this binding is written against


# ---- errors ------------------------------------------------------------------

class DynragError(Exception):
    """A failed library call: status (negative int), name ("ERR_PARSE"),
    message (the library's detail), diagnostics (pipeline loads)."""

    def __init__(self, status: int, message: str, diagnostics=None):
        self.status = status
        self.name = _status_name(status)
        self.message = message
        self.diagnostics = list(diagnostics or [])
        super().__init__(f"{self.name}: {message}")


# ---- finding and binding the library -----------------------------------------

def _candidates() -> List[str]:
    env = os.environ.get("DYNRAG_LIBRARY")
    if env:
        return [env]  # explicit: no fallback, so a wrong path is an error
    found = []
    name = ctypes.util.find_library("dynrag")
    if name:
        found.append(name)
    here = os.path.dirname(os.path.abspath(__file__))
    soname = f"libdynrag.so.{_ABI_MAJOR}"
    found.append(os.path.join(here, soname))
    # <prefix>/share/dynrag/python/dynrag -> <prefix>/lib, <prefix>/lib/<multiarch>
    prefix = os.path.normpath(os.path.join(here, "..", "..", "..", ".."))
    found += sorted(glob.glob(os.path.join(prefix, "lib*", soname)))
    found += sorted(glob.glob(os.path.join(prefix, "lib*", "*", soname)))
    return found


def _load():
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise ImportError("dynrag: cannot load libdynrag (set DYNRAG_LIBRARY to its path): "
                      + ("; ".join(errors) or "not found"))


_lib, _lib_path = _load()

c_char_p = ctypes.c_char_p
c_void_p = ctypes.c_void_p
c_int = ctypes.c_int
c_size_t = ctypes.c_size_t
c_double = ctypes.c_double
c_bool = ctypes.c_bool
c_int64 = ctypes.c_int64
c_longlong = ctypes.c_longlong

_ERRMSG_MAX = 1024


class _Error(ctypes.Structure):
    _fields_ = [("status", c_int), ("msg", ctypes.c_char * _ERRMSG_MAX)]


class _EngineOptions(ctypes.Structure):
    _fields_ = [("index_dir", c_char_p), ("log_path", c_char_p), ("no_log", c_bool)]


class _Force(ctypes.Structure):
    _fields_ = [("stage", c_char_p), ("option", c_char_p)]


class _Budget(ctypes.Structure):
    _fields_ = [("usd", c_double), ("latency_ms", c_double), ("energy_wh", c_double)]


class _QueryOptions(ctypes.Structure):
    _fields_ = [("query_id", c_char_p), ("route_only", c_bool), ("retrieve_only", c_bool),
                ("k", c_int), ("no_log", c_bool), ("force", ctypes.POINTER(_Force)),
                ("n_force", c_size_t), ("budget", ctypes.POINTER(_Budget)),
                ("no_record", c_bool)]


class _Citation(ctypes.Structure):
    _fields_ = [("doc_id", c_char_p), ("title", c_char_p), ("chunk_id", c_longlong),
                ("score", c_double)]


class _Decision(ctypes.Structure):
    _fields_ = [("stage", c_char_p), ("router", c_char_p), ("choice", c_char_p),
                ("reason", c_char_p), ("latency_us", c_double), ("skipped", c_bool)]


class _Totals(ctypes.Structure):
    _fields_ = [("input_tokens", c_longlong), ("output_tokens", c_longlong), ("usd", c_double),
                ("latency_ms", c_double), ("energy_wh", c_double), ("generator_calls", c_int),
                ("retrieval_steps", c_int), ("over_budget", c_bool)]


class _Diag(ctypes.Structure):
    _fields_ = [("file", c_char_p), ("line", c_int), ("col", c_int), ("path", c_char_p),
                ("message", c_char_p)]


class _SearchOptions(ctypes.Structure):
    _fields_ = [("mode", c_int), ("k", c_int), ("k1", c_double), ("b", c_double),
                ("rrf_k", c_double), ("w_bm25", c_double), ("w_dense", c_double),
                ("depth", c_int), ("nprobe", c_int), ("per_document", c_bool),
                ("ids_only", c_bool)]


class _Hit(ctypes.Structure):
    _fields_ = [("chunk_id", c_int64), ("doc_id", c_char_p), ("title", c_char_p),
                ("text", c_char_p), ("score", c_double), ("start", c_int64), ("end", c_int64),
                ("text_len", c_size_t)]


class _Hits(ctypes.Structure):
    _fields_ = [("hits", ctypes.POINTER(_Hit)), ("n", c_size_t), ("bm25_us", c_double),
                ("dense_us", c_double), ("total_us", c_double)]


class _RouterOptions(ctypes.Structure):
    _fields_ = [("all_available", c_bool), ("in_memory", c_bool)]


class _Route(ctypes.Structure):
    _fields_ = [("option", c_int), ("scores", c_double * 16), ("reason", ctypes.c_char * 256),
                ("spent_usd", c_double), ("spent_latency_ms", c_double)]


class _Answer(ctypes.Structure):
    _fields_ = [("text", c_char_p), ("query", c_char_p), ("option", c_char_p),
                ("unanswerable", c_bool), ("first_token_margin", c_double),
                ("mean_logprob", c_double), ("confidence", c_double),
                ("samples", ctypes.POINTER(c_char_p)), ("n_samples", c_size_t)]


#: The C structs this binding mirrors, by C name (the tests compare their
#: sizes and offsets with the installed headers').
STRUCTS = {
    "dynrag_error": _Error, "dynrag_engine_options": _EngineOptions, "dynrag_force": _Force,
    "dynrag_query_options": _QueryOptions, "dynrag_citation": _Citation,
    "dynrag_decision": _Decision, "dynrag_totals": _Totals, "dynrag_diag": _Diag,
    "dynrag_search_options": _SearchOptions, "dynrag_budget": _Budget, "dynrag_hit": _Hit, "dynrag_hits": _Hits,
    "dynrag_router_options": _RouterOptions, "dynrag_route": _Route, "dynrag_answer": _Answer,
}

_P = ctypes.POINTER
_ERR = _P(_Error)


def _fn(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_version = _fn("dynrag_version", c_char_p)
_version_number = _fn("dynrag_version_number", c_int)
_strerror = _fn("dynrag_strerror", c_char_p, c_int)
_status_name_c = _fn("dynrag_status_name", c_char_p, c_int)
_pipeline_load = _fn("dynrag_pipeline_load", c_int, c_char_p, _P(c_void_p), _P(c_void_p), _ERR)
_pipeline_free = _fn("dynrag_pipeline_free", None, c_void_p)
_pipeline_name = _fn("dynrag_pipeline_name", c_char_p, c_void_p)
_pipeline_index_dir = _fn("dynrag_pipeline_index_dir", c_char_p, c_void_p)
_pipeline_to_json = _fn("dynrag_pipeline_to_json", c_void_p, c_void_p)
_diags_count = _fn("dynrag_diags_count", c_size_t, c_void_p)
_diags_get = _fn("dynrag_diags_get", _P(_Diag), c_void_p, c_size_t)
_diags_free = _fn("dynrag_diags_free", None, c_void_p)
_engine_create = _fn("dynrag_engine_open", c_int, c_void_p, _P(_EngineOptions), _P(c_void_p),
                     _ERR)
_engine_free = _fn("dynrag_engine_close", None, c_void_p)
_engine_options_init = _fn("dynrag_engine_options_init", None, _P(_EngineOptions))
_query_options_init = _fn("dynrag_query_options_init", None, _P(_QueryOptions))
_search_options_init = _fn("dynrag_search_options_init", None, _P(_SearchOptions))
_engine_log_path = _fn("dynrag_engine_log_path", c_char_p, c_void_p)
_engine_query = _fn("dynrag_engine_query", c_int, c_void_p, c_char_p, _P(_QueryOptions),
                    _P(c_void_p), _ERR)
_engine_feedback = _fn("dynrag_engine_feedback", c_int, c_void_p, c_char_p, c_double, _ERR)
_engine_save = _fn("dynrag_engine_save", c_int, c_void_p, _ERR)
_result_id = _fn("dynrag_result_id", c_char_p, c_void_p)
_result_answer = _fn("dynrag_result_answer", c_char_p, c_void_p)
_result_unanswerable = _fn("dynrag_result_unanswerable", c_bool, c_void_p)
_result_n_citations = _fn("dynrag_result_n_citations", c_size_t, c_void_p)
_result_citation = _fn("dynrag_result_citation", _P(_Citation), c_void_p, c_size_t)
_result_n_retrieved = _fn("dynrag_result_n_retrieved", c_size_t, c_void_p)
_result_retrieved = _fn("dynrag_result_retrieved", _P(_Citation), c_void_p, c_size_t)
_result_context = _fn("dynrag_result_context", c_char_p, c_void_p)
_result_n_decisions = _fn("dynrag_result_n_decisions", c_size_t, c_void_p)
_result_decision = _fn("dynrag_result_decision", _P(_Decision), c_void_p, c_size_t)
_result_totals = _fn("dynrag_result_totals", _P(_Totals), c_void_p)
_result_json = _fn("dynrag_result_json", c_char_p, c_void_p)
_result_free = _fn("dynrag_result_free", None, c_void_p)
_index_open = _fn("dynrag_index_open", c_int, c_char_p, c_void_p, _P(c_void_p), _ERR)
_index_close = _fn("dynrag_index_close", None, c_void_p)
_index_search = _fn("dynrag_index_search", c_int, c_void_p, c_char_p, _P(_SearchOptions),
                    _P(_Hits), _ERR)
_hits_free = _fn("dynrag_hits_free", None, _P(_Hits))
_search_mode_parse = _fn("dynrag_search_mode_parse", c_int, c_char_p)
_pipeline_find_option = _fn("dynrag_pipeline_find_option", c_int, c_void_p, c_char_p, c_char_p)
_pipeline_set_router_param = _fn("dynrag_pipeline_set_router_param", c_int, c_void_p, c_char_p,
                                 c_char_p, c_double, _ERR)
_router_options_init = _fn("dynrag_router_options_init", None, _P(_RouterOptions))
_router_open = _fn("dynrag_router_open", c_int, c_void_p, c_char_p, _P(_RouterOptions),
                   _P(c_void_p), _ERR)
_router_close = _fn("dynrag_router_close", None, c_void_p)
_router_type = _fn("dynrag_router_type", c_char_p, c_void_p)
_router_route = _fn("dynrag_router_route", c_int, c_void_p, c_char_p, _P(_Route), _ERR)
_router_feedback = _fn("dynrag_router_feedback", c_int, c_void_p, c_char_p, c_char_p, c_size_t,
                       c_double, c_double, c_double, _ERR)
_answer_init = _fn("dynrag_answer_init", None, _P(_Answer))
_router_judge = _fn("dynrag_router_judge", c_int, c_void_p, _P(_Answer), _P(c_double),
                    ctypes.c_char_p, c_size_t, _ERR)
_router_cascade_next = _fn("dynrag_router_cascade_next", c_int, c_void_p, c_char_p,
                           _P(c_bool), c_int, c_double, _P(c_int), _ERR)

# The C library's free(), for strings the API returns with "caller frees".
_libc = ctypes.CDLL(None)
_c_free = _libc.free
_c_free.restype = None
_c_free.argtypes = [c_void_p]

if _version_number() // 1000000 != _ABI_MAJOR:
    raise ImportError(f"dynrag: {_lib_path} is version {_version().decode()}, "
                      f"this binding needs {_ABI_MAJOR}.x")


def _s(b: Optional[bytes]) -> str:
    return b.decode("utf-8", "replace") if b is not None else ""


def _b(s: Optional[str], what: str) -> Optional[bytes]:
    if s is None:
        return None
    if not isinstance(s, (str, os.PathLike)):
        raise TypeError(f"{what} must be a str, not {type(s).__name__}")
    s = os.fspath(s)
    if "\0" in s:
        raise DynragError(STATUS["ERR_INVALID"], f"{what} contains a NUL character")
    return s.encode("utf-8")


def _status_name(status: int) -> str:
    return _s(_status_name_c(status))


def _raise(rc: int, err: _Error, diagnostics=None):
    msg = _s(err.msg) or _s(_strerror(rc))
    raise DynragError(rc, msg, diagnostics)


#: Status names to values, from the library (e.g. STATUS["ERR_NOTFOUND"] == -5).
STATUS: Dict[str, int] = {}
for _v in range(0, -64, -1):
    _n = _status_name(_v)
    if _n == "unknown status" or _n in STATUS:
        break
    STATUS[_n] = _v


def version() -> str:
    """The loaded library's version, e.g. "0.1.0"."""
    return _s(_version())


def library_path() -> str:
    """The path the shared library was loaded from."""
    return _lib_path


# ---- handle bookkeeping ------------------------------------------------------

_live_lock = threading.Lock()
_live: Dict[str, int] = {"pipeline": 0, "engine": 0, "index": 0, "router": 0}


def _live_add(kind: str, n: int):
    with _live_lock:
        _live[kind] += n


def _release(kind: str, free_fn, ptr: int):
    free_fn(ptr)
    _live_add(kind, -1)


def live_handles() -> Dict[str, int]:
    """Open C handles by kind (pipeline, engine, index): the tests check that
    closing and collecting leaves none behind."""
    with _live_lock:
        return dict(_live)


class _Handle:
    _kind = ""
    _free = None

    def _adopt(self, ptr: int):
        self._ptr = ptr
        _live_add(self._kind, 1)
        self._finalizer = weakref.finalize(self, _release, self._kind, type(self)._free, ptr)

    def _handle(self) -> int:
        ptr = getattr(self, "_ptr", None)
        if not ptr or not self._finalizer.alive:
            raise DynragError(STATUS["ERR_STATE"], f"{self._kind} is closed")
        return ptr

    @property
    def closed(self) -> bool:
        f = getattr(self, "_finalizer", None)
        return f is None or not f.alive

    def close(self):
        """Frees the C handle now. Idempotent."""
        f = getattr(self, "_finalizer", None)
        if f is not None:
            f()

    def __enter__(self):
        self._handle()
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---- pipelines -----------------------------------------------------------------

@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a pipeline file."""
    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self):
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {self.message}"


class Pipeline(_Handle):
    """A loaded and validated pipeline YAML file. Invalid files raise
    DynragError (ERR_PARSE) whose .diagnostics list every problem."""
    _kind = "pipeline"
    _free = _pipeline_free

    def __init__(self, path):
        err = _Error()
        out = c_void_p()
        diags = c_void_p()
        rc = _pipeline_load(_b(path, "path"), ctypes.byref(out), ctypes.byref(diags),
                            ctypes.byref(err))
        found = []
        if diags.value:
            for i in range(_diags_count(diags)):
                d = _diags_get(diags, i).contents
                found.append(Diagnostic(_s(d.file), d.line, d.col, _s(d.path), _s(d.message)))
            _diags_free(diags)
        if rc != 0:
            if found and rc == STATUS["ERR_PARSE"]:
                err.msg = "\n".join(str(d) for d in found).encode()[:_ERRMSG_MAX - 1]
            _raise(rc, err, found)
        self._engines = 0
        self._adopt(out.value)

    @property
    def name(self) -> str:
        return _s(_pipeline_name(self._handle()))

    @property
    def index_dir(self) -> Optional[str]:
        d = _pipeline_index_dir(self._handle())
        return _s(d) if d is not None else None

    def to_dict(self) -> Dict[str, Any]:
        """The resolved pipeline (defaults filled in, paths resolved)."""
        ptr = _pipeline_to_json(self._handle())
        if not ptr:
            raise DynragError(STATUS["ERR_NOMEM"], "pipeline_to_json failed")
        try:
            return json.loads(ctypes.string_at(ptr).decode("utf-8"))
        finally:
            _c_free(ptr)

    def set_router_param(self, stage: str, key: str, value: float):
        """Sets the numeric router param `key` of `stage`, checked as the YAML
        would be (DynragError ERR_INVALID naming the field otherwise). For
        sweeps: engines and routers opened afterwards use it; not while one
        made from this pipeline is open (ERR_STATE)."""
        if self._engines > 0:
            raise DynragError(STATUS["ERR_STATE"],
                              f"pipeline has {self._engines} open engine(s) or router(s)")
        err = _Error()
        rc = _pipeline_set_router_param(self._handle(), _b(stage, "stage"), _b(key, "key"),
                                        float(value), ctypes.byref(err))
        if rc != 0:
            _raise(rc, err)

    def close(self):
        """Frees the pipeline. DynragError (ERR_STATE) while an engine made
        from it is open: close the engines first."""
        if self._engines > 0 and not self.closed:
            raise DynragError(STATUS["ERR_STATE"],
                              f"pipeline has {self._engines} open engine(s)")
        super().close()


# ---- results ---------------------------------------------------------------------

@dataclass(frozen=True)
class Citation:
    """A source passage: document id, title, chunk id and retrieval score."""
    doc_id: str
    title: str
    chunk_id: int
    score: float


@dataclass(frozen=True)
class Decision:
    """One stage's routing decision."""
    stage: str
    router: str
    choice: str
    reason: str
    latency_us: float
    skipped: bool


@dataclass(frozen=True)
class Totals:
    input_tokens: int
    output_tokens: int
    usd: float
    latency_ms: float
    energy_wh: float
    generator_calls: int
    retrieval_steps: int
    over_budget: bool


@dataclass(frozen=True)
class Result:
    """The outcome of one query: answer, citations, every retrieved passage,
    the route decisions and totals, and the route-log record (record: the
    parsed JSON of docs/route-log.md)."""
    id: str
    answer: str
    unanswerable: bool
    citations: List[Citation]
    retrieved: List[Citation]
    context: str
    decisions: List[Decision]
    totals: Totals
    record: Dict[str, Any] = field(repr=False)

    def route(self) -> Dict[str, str]:
        """stage -> chosen option ("" for skipped stages)."""
        return {d.stage: d.choice for d in self.decisions}


def _citation(c: _Citation) -> Citation:
    return Citation(_s(c.doc_id), _s(c.title), int(c.chunk_id), float(c.score))


def _result(r) -> Result:
    t = _result_totals(r).contents
    return Result(
        id=_s(_result_id(r)),
        answer=_s(_result_answer(r)),
        unanswerable=bool(_result_unanswerable(r)),
        citations=[_citation(_result_citation(r, i).contents)
                   for i in range(_result_n_citations(r))],
        retrieved=[_citation(_result_retrieved(r, i).contents)
                   for i in range(_result_n_retrieved(r))],
        context=_s(_result_context(r)),
        decisions=[Decision(_s(d.stage), _s(d.router), _s(d.choice), _s(d.reason),
                            float(d.latency_us), bool(d.skipped))
                   for d in (_result_decision(r, i).contents
                             for i in range(_result_n_decisions(r)))],
        totals=Totals(int(t.input_tokens), int(t.output_tokens), t.usd, t.latency_ms,
                      t.energy_wh, t.generator_calls, t.retrieval_steps, bool(t.over_budget)),
        record=json.loads(_s(_result_json(r)) or "{}"),
    )


# ---- engines ---------------------------------------------------------------------

def _release_engine(ptr: int, pipeline: "Pipeline"):
    _release("engine", _engine_free, ptr)
    pipeline._engines -= 1


class Engine(_Handle):
    """Runs queries through a pipeline's routed stages. The pipeline stays
    alive (and cannot be closed) while the engine is open. index_dir and
    log_path override the pipeline's; no_log writes no route log. Queries may
    run from several threads at once."""
    _kind = "engine"

    def __init__(self, pipeline: Pipeline, index_dir=None, log_path=None, no_log=False):
        if not isinstance(pipeline, Pipeline):
            raise TypeError("pipeline must be a dynrag.Pipeline")
        # The library's defaults first (dynrag_engine_options_init), then ours.
        opt = _EngineOptions()
        _engine_options_init(ctypes.byref(opt))
        opt.index_dir = _b(index_dir, "index_dir")
        opt.log_path = _b(log_path, "log_path")
        opt.no_log = bool(no_log)
        err = _Error()
        out = c_void_p()
        rc = _engine_create(pipeline._handle(), ctypes.byref(opt), ctypes.byref(out),
                            ctypes.byref(err))
        if rc != 0:
            _raise(rc, err)
        self._pipeline = pipeline
        self._ptr = out.value
        pipeline._engines += 1
        _live_add("engine", 1)
        self._finalizer = weakref.finalize(self, _release_engine, out.value, pipeline)

    @property
    def log_path(self) -> Optional[str]:
        p = _engine_log_path(self._handle())
        return _s(p) if p is not None else None

    def _run(self, question: str, route_only=False, retrieve_only=False, k=None,
             query_id=None, force: Optional[Dict[str, str]] = None, no_log=False,
             budget: Optional[Dict[str, float]] = None) -> Result:
        if not isinstance(question, str):
            raise TypeError("question must be a str")
        keep = []
        forces = None
        n_force = 0
        if force:
            items = list(force.items())
            forces = (_Force * len(items))()
            for i, (stage, option) in enumerate(items):
                s, o = _b(stage, "force stage"), _b(option, "force option")
                keep += [s, o]
                forces[i] = _Force(s, o)
            n_force = len(items)
        if k is not None and (not isinstance(k, int) or k <= 0):
            raise DynragError(STATUS["ERR_INVALID"], f"k must be a positive int, not {k!r}")
        bud = None
        if budget is not None:
            unknown = set(budget) - {"usd", "latency_ms", "energy_wh"}
            if unknown:
                raise DynragError(STATUS["ERR_INVALID"],
                                  f"budget: unknown field(s) {sorted(unknown)}; "
                                  "expected usd, latency_ms, energy_wh")
            vals = {}
            for f in ("usd", "latency_ms", "energy_wh"):
                v = budget.get(f)
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise DynragError(STATUS["ERR_INVALID"], f"budget.{f} must be a number")
                vals[f] = float("nan") if v is None else float(v)
            bud = _Budget(vals["usd"], vals["latency_ms"], vals["energy_wh"])
        opt = _QueryOptions()
        _query_options_init(ctypes.byref(opt))
        opt.query_id = _b(query_id, "query_id")
        opt.route_only = bool(route_only)
        opt.retrieve_only = bool(retrieve_only)
        if k:
            opt.k = k
        opt.no_log = bool(no_log)
        if forces:
            opt.force = ctypes.cast(forces, _P(_Force))
            opt.n_force = n_force
        if bud is not None:
            opt.budget = ctypes.pointer(bud)
        err = _Error()
        out = c_void_p()
        rc = _engine_query(self._handle(), _b(question, "question"), ctypes.byref(opt),
                           ctypes.byref(out), ctypes.byref(err))
        if rc != 0:
            _raise(rc, err)
        try:
            return _result(out.value)
        finally:
            _result_free(out.value)

    def query(self, question: str, k: Optional[int] = None, query_id: Optional[str] = None,
              force: Optional[Dict[str, str]] = None, no_log: bool = False,
              budget: Optional[Dict[str, float]] = None) -> Result:
        """Answers a question: every stage routed, run and logged. force pins
        stages to options ({"index": "bm25"}); k overrides the retrieval depth;
        budget ({"usd": ..., "latency_ms": ..., "energy_wh": ...}, each optional)
        tightens the pipeline's per-query budget."""
        return self._run(question, k=k, query_id=query_id, force=force, no_log=no_log,
                         budget=budget)

    def retrieve(self, question: str, k: Optional[int] = None, query_id: Optional[str] = None,
                 force: Optional[Dict[str, str]] = None, no_log: bool = False) -> Result:
        """Runs the retrieval stages only (retrieval_mode, embedder, index):
        result.retrieved holds the passages, result.answer is empty."""
        return self._run(question, retrieve_only=True, k=k, query_id=query_id, force=force,
                         no_log=no_log)

    def route(self, question: str, query_id: Optional[str] = None, no_log: bool = False) -> Result:
        """Decides every stage from the question alone and runs nothing:
        result.decisions (and result.route()) give the choices."""
        return self._run(question, route_only=True, query_id=query_id, no_log=no_log)

    def feedback(self, query_id: str, reward: float):
        """Gives a reward to a past query of this engine (bandit routers learn
        from it). DynragError ERR_NOTFOUND for an unknown id."""
        err = _Error()
        rc = _engine_feedback(self._handle(), _b(query_id, "query_id"), float(reward),
                              ctypes.byref(err))
        if rc != 0:
            _raise(rc, err)

    def save(self):
        """Persists router state (bandits) now."""
        err = _Error()
        rc = _engine_save(self._handle(), ctypes.byref(err))
        if rc != 0:
            _raise(rc, err)


# ---- indexes ---------------------------------------------------------------------

@dataclass(frozen=True)
class Hit:
    """A retrieved chunk: ids, title, text, score and byte offsets in its document."""
    chunk_id: int
    doc_id: str
    title: str
    text: str
    score: float
    start: int
    end: int


class Index(_Handle):
    """An index folder opened for reading (built with `dynrag index`). Only
    indexes with the built-in embedder (or BM25 only) open without an
    endpoint; for others, go through an Engine."""
    _kind = "index"
    _free = _index_close

    def __init__(self, path):
        err = _Error()
        out = c_void_p()
        rc = _index_open(_b(path, "path"), None, ctypes.byref(out), ctypes.byref(err))
        if rc != 0:
            _raise(rc, err)
        self._adopt(out.value)

    def search(self, query: str, k: int = 10, mode: str = "bm25") -> List[Hit]:
        """The k best chunks for query, best first; mode is "bm25", "dense" or
        "hybrid". An empty query gives no hits."""
        m = _search_mode_parse(_b(mode, "mode"))
        if m < 0:
            raise DynragError(STATUS["ERR_INVALID"], f"unknown search mode '{mode}'")
        if not isinstance(k, int) or k <= 0:
            raise DynragError(STATUS["ERR_INVALID"], f"k must be a positive int, not {k!r}")
        opt = _SearchOptions()
        _search_options_init(ctypes.byref(opt))
        opt.mode = m
        opt.k = k
        hits = _Hits()
        err = _Error()
        rc = _index_search(self._handle(), _b(query, "query"), ctypes.byref(opt),
                           ctypes.byref(hits), ctypes.byref(err))
        if rc != 0:
            _raise(rc, err)
        try:
            return [Hit(int(h.chunk_id), _s(h.doc_id), _s(h.title), _s(h.text), float(h.score),
                        int(h.start), int(h.end))
                    for h in (hits.hits[i] for i in range(hits.n))]
        finally:
            _hits_free(ctypes.byref(hits))


# ---- one stage's router on its own (dynrag/router.h) ------------------------------

@dataclass(frozen=True)
class Route:
    """A router's decision: the chosen option, each option's score (None when
    not scored) and the reason, as in the route log."""
    option: str
    scores: Dict[str, Optional[float]]
    reason: str


def _release_router(ptr: int, pipeline: "Pipeline"):
    _release("router", _router_close, ptr)
    pipeline._engines -= 1


class Router(_Handle):
    """The router of one stage of a pipeline, outside the engine: route a
    query, give it feedback, judge answers and pick a cascade's next option,
    without calling any model (docs/library.md, "Routers").

    all_available: every option counts as available (replaying recorded
    outcomes); in_memory: a bandit never writes its state file."""
    _kind = "router"

    def __init__(self, pipeline: Pipeline, stage: str, all_available=False, in_memory=False):
        if not isinstance(pipeline, Pipeline):
            raise TypeError("pipeline must be a dynrag.Pipeline")
        opts = _RouterOptions()
        _router_options_init(ctypes.byref(opts))
        opts.all_available = bool(all_available)
        opts.in_memory = bool(in_memory)
        err = _Error()
        out = c_void_p()
        rc = _router_open(pipeline._handle(), _b(stage, "stage"), ctypes.byref(opts),
                          ctypes.byref(out), ctypes.byref(err))
        if rc != 0:
            _raise(rc, err)
        self._pipeline = pipeline
        self._stage = stage
        self._options = [o["name"] for o in pipeline.to_dict()["stages"][stage]["options"]]
        self._ptr = out.value
        pipeline._engines += 1
        _live_add("router", 1)
        self._finalizer = weakref.finalize(self, _release_router, out.value, pipeline)

    @property
    def type(self) -> str:
        return _s(_router_type(self._handle()))

    @property
    def options(self) -> List[str]:
        return list(self._options)

    def _index(self, option) -> int:
        if isinstance(option, int) and not isinstance(option, bool):
            if not 0 <= option < len(self._options):
                raise DynragError(STATUS["ERR_INVALID"], f"no option {option}")
            return option
        if option not in self._options:
            raise DynragError(STATUS["ERR_INVALID"],
                              f"stages.{self._stage} has no option {option!r}")
        return self._options.index(option)

    def route(self, query: str) -> Route:
        d = _Route()
        err = _Error()
        rc = _router_route(self._handle(), _b(query, "query"), ctypes.byref(d), ctypes.byref(err))
        if rc != 0:
            _raise(rc, err)
        scores = {name: (None if math.isnan(d.scores[i]) else d.scores[i])
                  for i, name in enumerate(self._options)}
        return Route(self._options[d.option], scores, _s(d.reason))

    def feedback(self, query_id: Optional[str], query: str, option, quality: float,
                 cost_usd: float = 0.0, latency_ms: Optional[float] = None):
        """How `option` did on a query: a bandit learns the reward the engine's
        feedback would give; other routers ignore it."""
        err = _Error()
        rc = _router_feedback(self._handle(), _b(query_id, "query_id"), _b(query, "query"),
                              self._index(option), float(quality), float(cost_usd),
                              float("nan") if latency_ms is None else float(latency_ms),
                              ctypes.byref(err))
        if rc != 0:
            _raise(rc, err)

    def judge(self, text: str, query: Optional[str] = None, option: Optional[str] = None,
              samples: Optional[List[str]] = None, confidence: Optional[float] = None):
        """A cascade's judge: (confidence in [0, 1], why)."""
        a = _Answer()
        _answer_init(ctypes.byref(a))
        a.text = _b(text, "text")
        a.query = _b(query, "query")
        a.option = _b(option, "option")
        if confidence is not None:
            a.confidence = float(confidence)
        arr = None
        if samples:
            arr = (c_char_p * len(samples))(*[_b(x, "sample") for x in samples])
            a.samples = ctypes.cast(arr, ctypes.POINTER(c_char_p))
            a.n_samples = len(samples)
        conf = c_double()
        why = ctypes.create_string_buffer(256)
        err = _Error()
        rc = _router_judge(self._handle(), ctypes.byref(a), ctypes.byref(conf), why, 256,
                           ctypes.byref(err))
        if rc != 0:
            _raise(rc, err)
        return conf.value, _s(why.value)

    def cascade_next(self, query: str, called: List[str], current: str,
                     confidence: float) -> Optional[str]:
        """The option a cascade escalates to after the options in `called`
        answered, the last (`current`) judged `confidence`; None: stop."""
        flags = (c_bool * 16)()
        for c in called:
            flags[self._index(c)] = True
        nxt = c_int(-1)
        err = _Error()
        rc = _router_cascade_next(self._handle(), _b(query, "query"), flags,
                                  self._index(current), float(confidence), ctypes.byref(nxt),
                                  ctypes.byref(err))
        if rc != 0:
            _raise(rc, err)
        return self._options[nxt.value] if nxt.value >= 0 else None
