#!/usr/bin/env python3
"""openai_double.py - a TEST DOUBLE of an OpenAI-compatible server.

THIS IS NOT A LANGUAGE MODEL. It answers deterministically so that the C tests
of DynamicRAG (tests/test_net.c and others, through tests/test_net_util.c) can
exercise the HTTP client, the chat client and the embeddings client, including
their failure handling. Every response carries the header `X-Test-Double: 1`
and, where the format has one, a "model" field "test-double/<requested model>".

Usage: python3 openai_double.py [--idle-timeout SECONDS]
  Listens on 127.0.0.1 on a free port and prints that port on its first stdout
  line. Exits by itself after SECONDS (default 120) without any request, or when
  its parent process goes away, so it can never linger.

Endpoints
  POST /v1/chat/completions  answer "Test double answer: <last user message>",
                             cut to "max_tokens" words (finish_reason "length");
                             usage counts whitespace-separated words; "n" > 1
                             gives n choices "Sample <i>: ..."; with
                             "logprobs": true every token has logprob -0.2 and
                             the first token's top_logprobs are -0.2, -1.7,
                             -3.0, ... (top1 - top2 margin = 1.5); a
                             requested model containing "@logprob=X" (e.g.
                             "weak@logprob=-1.5") gives every token, and the
                             first token's top1, logprob X instead of -0.2
                             (top2 stays 1.5 below it).
  POST /v1/embeddings        one vector per input (dimension 64, or the
                             request's "dimensions"), hashed lower-cased words
                             with signs, NOT normalised; "data" is returned in
                             reverse order with correct "index" fields.
  POST /_control             {"script": ["429", "ok", ...], "reset": true}:
                             the modes the next requests use, in order (then
                             "ok"); "reset" also zeroes the counters.
  GET  /_stats               {"requests": {path: count}, "script_left": n}

Modes (a request's `X-Test-Script` header overrides the script queue):
  ok            normal answer
  429[:S]       429 with Retry-After S seconds (default 1) and an OpenAI error body
  500, 503      server errors with an OpenAI error body
  400, 401      client errors with an OpenAI error body (not worth retrying)
  sleep[:S]     sleep S seconds (default 5) before a normal answer (client timeout)
  malformed     200 with a body that is not valid JSON
  truncated     200 with Content-Length larger than the body, then close
  wrongdim      embeddings: the last vector is one component short
  nousage       chat: no "usage" object
  nochoices     chat: no "choices"
  nocontent     chat: choices[0].message without "content"
  wrongtype     chat: choices[0].message.content is a number
  redirect      307 to http://127.0.0.1:9/elsewhere (clients must not follow it)
  reply:TEXT    chat: the answer is exactly TEXT (everything after "reply:")
"""

import argparse
import hashlib
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE_LOCK = threading.Lock()
SCRIPT = []
COUNTS = {}
LAST_ACTIVITY = [time.monotonic()]
DEFAULT_DIM = 64


def touch():
    with STATE_LOCK:
        LAST_ACTIVITY[0] = time.monotonic()


def next_mode(header_value):
    with STATE_LOCK:
        if header_value:
            return header_value
        if SCRIPT:
            return SCRIPT.pop(0)
        return "ok"


def words(text):
    return re.findall(r"[a-z0-9]+", text.lower())


def embed(text, dim):
    vec = [0.0] * dim
    for w in words(text):
        h = hashlib.sha256(w.encode()).digest()
        idx = int.from_bytes(h[:4], "little") % dim
        sign = 1.0 if h[4] & 1 else -1.0
        vec[idx] += sign * 3.0  # deliberately not unit length
    return vec


def error_body(message, etype, code=None):
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


class Handler(BaseHTTPRequestHandler):
    server_version = "openai-test-double/1"

    def log_message(self, fmt, *args):  # keep stdout for the port line only
        pass

    def send_json(self, status, obj, extra_headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Test-Double", "1")
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_raw(self, status, data, content_length=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(content_length if content_length else len(data)))
        self.send_header("X-Test-Double", "1")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        self.close_connection = True

    def read_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def do_GET(self):
        touch()
        if self.path == "/_stats":
            with STATE_LOCK:
                obj = {"requests": dict(COUNTS), "script_left": len(SCRIPT)}
            self.send_json(200, obj)
        else:
            self.send_json(404, error_body("no such endpoint: " + self.path, "not_found"))

    def do_POST(self):
        touch()
        req = self.read_json()
        path = self.path
        if path == "/_control":
            if not isinstance(req, dict):
                self.send_json(400, error_body("control body must be a JSON object", "bad"))
                return
            with STATE_LOCK:
                if req.get("reset"):
                    COUNTS.clear()
                SCRIPT[:] = [str(m) for m in req.get("script", [])]
            self.send_json(200, {"ok": True, "test_double": True})
            return
        with STATE_LOCK:
            COUNTS[path] = COUNTS.get(path, 0) + 1
        if path not in ("/v1/chat/completions", "/v1/embeddings"):
            self.send_json(404, error_body("no such endpoint: " + path, "not_found"))
            return
        if req is None:
            self.send_json(400, error_body("request body is not valid JSON", "invalid_request_error"))
            return
        mode = next_mode(self.headers.get("X-Test-Script"))
        name, _, arg = mode.partition(":")
        if name == "429":
            self.send_json(429, error_body("Rate limit reached (test double)", "rate_limit_exceeded",
                                           "rate_limit_exceeded"),
                           {"Retry-After": arg or "1"})
            return
        if name in ("500", "503"):
            self.send_json(int(name), error_body("The server had an error (test double %s)" % name,
                                                 "server_error"))
            return
        if name == "400":
            self.send_json(400, error_body("Invalid 'messages': rejected by the test double",
                                           "invalid_request_error"))
            return
        if name == "401":
            self.send_json(401, error_body("Incorrect API key provided (test double)",
                                           "invalid_request_error", "invalid_api_key"))
            return
        if name == "redirect":
            self.send_json(307, {"moved": True}, {"Location": "http://127.0.0.1:9/elsewhere"})
            return
        if name == "sleep":
            time.sleep(float(arg or 5))
            name = "ok"
        if name == "malformed":
            self.send_raw(200, b'{"id": "x", "choices": [{"index": 0, "message": {"content": "oops"')
            return
        if name == "nulcontent":  # an escaped NUL inside the answer
            self.send_raw(200, b'{"id": "n", "choices": [{"index": 0, "message": {"role": '
                               b'"assistant", "content": "Paris\\u0000 and more"}, '
                               b'"finish_reason": "stop"}]}')
            return
        if name == "badutf8":  # raw invalid UTF-8 bytes and an escaped backslash-u0000
            self.send_raw(200, b'{"id": "b", "choices": [{"index": 0, "message": {"role": '
                               b'"assistant", "content": "Par\xffis \\\\u0000 \xc3("}, '
                               b'"finish_reason": "stop"}]}')
            return
        if name == "truncated":
            self.send_raw(200, b'{"id": "truncated", "choices": [', content_length=1000)
            return
        try:
            if path == "/v1/embeddings":
                self.embeddings(req, name)
            elif name == "reply":
                self.chat(req, name, arg)
            else:
                self.chat(req, name)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def embeddings(self, req, mode):
        inputs = req.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(s, str) and s for s in inputs):
            self.send_json(400, error_body("'input' must be a non-empty string or a list of them",
                                           "invalid_request_error"))
            return
        dim = req.get("dimensions") or DEFAULT_DIM
        data = []
        for i, text in enumerate(inputs):
            vec = embed(text, dim)
            if mode == "wrongdim" and i == len(inputs) - 1:
                vec = vec[:-1]
            data.append({"object": "embedding", "index": i, "embedding": vec})
        data.reverse()
        ntok = sum(len(words(s)) for s in inputs)
        self.send_json(200, {"object": "list", "data": data,
                             "model": "test-double/" + str(req.get("model")),
                             "usage": {"prompt_tokens": ntok, "total_tokens": ntok}})

    def chat(self, req, mode, reply=None):
        msgs = req.get("messages")
        if not isinstance(msgs, list) or not msgs:
            self.send_json(400, error_body("'messages' must be a non-empty list",
                                           "invalid_request_error"))
            return
        last_user = ""
        prompt_words = 0
        for m in msgs:
            content = m.get("content") if isinstance(m, dict) else None
            if not isinstance(content, str):
                self.send_json(400, error_body("every message needs a string 'content'",
                                               "invalid_request_error"))
                return
            prompt_words += len(content.split())
            if m.get("role") == "user":
                last_user = content
        answer = reply if reply is not None else "Test double answer: " + last_user
        n = req.get("n") or 1
        choices = []
        completion_words = 0
        for i in range(n):
            text = answer if n == 1 else "Sample %d: %s" % (i, answer)
            finish = "stop"
            cap = req.get("max_tokens")
            if isinstance(cap, int) and cap > 0 and len(text.split()) > cap:
                text = " ".join(text.split()[:cap])  # a real server stops at max_tokens
                finish = "length"
            completion_words += len(text.split())
            choice = {"index": i, "message": {"role": "assistant", "content": text},
                      "finish_reason": finish}
            if req.get("logprobs"):
                k = int(req.get("top_logprobs") or 0)
                lp = -0.2
                m = re.search(r"@logprob=(-?[0-9]+(?:\.[0-9]+)?)", str(req.get("model")))
                if m:
                    lp = float(m.group(1))
                toks = text.split()
                content = []
                for j, t in enumerate(toks):
                    top = []
                    if j == 0:
                        top = [{"token": t, "logprob": lp}] + [
                            {"token": "alt%d" % a, "logprob": lp - 1.5 - 1.3 * a}
                            for a in range(max(k - 1, 0))]
                    else:
                        top = [{"token": t, "logprob": lp}][:k]
                    content.append({"token": t, "logprob": lp, "top_logprobs": top[:k]})
                choice["logprobs"] = {"content": content}
            choices.append(choice)
        if mode == "nocontent":
            del choices[0]["message"]["content"]
        if mode == "wrongtype":
            choices[0]["message"]["content"] = 42
        choices.reverse()  # clients must order by "index"
        resp = {"id": "chatcmpl-test-double", "object": "chat.completion",
                "created": int(time.time()), "model": "test-double/" + str(req.get("model")),
                "choices": choices,
                "usage": {"prompt_tokens": prompt_words, "completion_tokens": completion_words,
                          "total_tokens": prompt_words + completion_words}}
        if mode == "nousage":
            del resp["usage"]
        if mode == "nochoices":
            del resp["choices"]
        self.send_json(200, resp)


def watchdog(server, idle_timeout, parent):
    while True:
        time.sleep(0.2)
        with STATE_LOCK:
            idle = time.monotonic() - LAST_ACTIVITY[0]
        if idle > idle_timeout or os.getppid() != parent:
            os._exit(0)


def main():
    ap = argparse.ArgumentParser(description="OpenAI-compatible TEST DOUBLE")
    ap.add_argument("--idle-timeout", type=float, default=120.0)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    t = threading.Thread(target=watchdog, args=(server, args.idle_timeout, os.getppid()),
                         daemon=True)
    t.start()
    sys.stdout.write("%d\n" % server.server_address[1])
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
