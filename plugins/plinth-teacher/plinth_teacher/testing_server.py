"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for tests and benchmarks (stdlib only).

It speaks the protocol over real sockets and JSON (POST /v1/chat/completions, GET /v1/models) and answers with a
*policy*: `RulePolicy` (a deterministic stand-in teacher that solves arithmetic, rewrites, judges and reviews
safety) or `ModelPolicy` (any plinth chat back end, e.g. `hf` on a tiny local model). Faults are injected per
request in order (`server.faults.append("500")`): "500", "503", "429" / "429:<retry-after s>", "timeout:<s>"
(stall), "garbage" (200 with a non-JSON body), "badjson" (JSON without choices), "close" (drop the connection);
`kill_after=N` makes the server die (refuse and drop everything) after N answered requests, like a killed process.

    with ChatServer(RulePolicy(), latency=0.02) as srv:
        backend = OpenAIChat({"base_url": srv.base_url, "model": "rule"})
"""

from __future__ import annotations

import ast
import json
import operator
import random
import re
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Policy = Callable[[list[dict[str, str]], dict[str, Any], int], str]  # (messages, request body, sample index) -> text

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.USub: operator.neg, ast.UAdd: operator.pos}


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.operand))
    raise ValueError("not arithmetic")


def solve_arithmetic(text: str) -> str | None:
    """The value of the arithmetic expression in a prompt (e.g. "Calculate 5 - 3 * 2."), or None."""
    for cand in re.findall(r"[-+*/()\d.\s]{3,}", text):
        cand = cand.strip().rstrip(".").strip()
        if not re.search(r"\d", cand) or not re.search(r"\d\s*[-+*/]\s*[-+(\d]", cand):
            continue
        try:
            v = _eval(ast.parse(cand, mode="eval"))
        except (ValueError, SyntaxError, ZeroDivisionError, TypeError):
            continue
        v = round(v, 6)
        return str(int(v)) if v == int(v) else str(v)
    return None


class RulePolicy:
    """A deterministic stand-in teacher. `wrong_rate` makes sampled answers (temperature > 0) wrong with that
    probability, seeded by (request seed, prompt, sample index), to exercise self-consistency."""

    def __init__(self, wrong_rate: float = 0.0, judge_score: Callable[[str, str], float] | None = None,
                 unsafe_words: tuple[str, ...] = ("bomb", "poison")):
        self.wrong_rate = wrong_rate
        self.judge_score = judge_score
        self.unsafe_words = unsafe_words

    def __call__(self, messages: list[dict[str, str]], body: dict[str, Any], index: int) -> str:
        user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        if "#Given Prompt#" in user:
            method = re.search(r"Method: (.*)", user).group(1)
            given = user.split("#Given Prompt#:\n", 1)[1].split("\n\n#Rewritten Prompt#", 1)[0]
            extra = {
                "Add one": "Also state whether the result is even or odd.",
                "If the prompt": "Show every intermediate step and check the result twice.",
                "Replace general": "Imagine a shop keeper named Ada doing this on Monday.",
                "Write a brand": "Consider the rarest edge case, such as negative numbers.",
            }
            suffix = next((v for k, v in extra.items() if method.startswith(k)), None)
            if suffix is None:  # change_domain: the topic is the last words of the method
                topic = method.rstrip(".").split(":")[-1].strip()
                return json.dumps({"prompt": f"In a {topic} setting, answer this: {given}"})
            return json.dumps({"prompt": f"{given} {suffix}"})
        if "You are grading" in user:
            q = user.split("[Question]\n", 1)[1].split("\n\n[Answer]\n", 1)[0]
            a = user.split("[Answer]\n", 1)[1].rsplit("\n\nReply with JSON", 1)[0]
            if self.judge_score is not None:
                score = self.judge_score(q, a)
            else:
                truth = solve_arithmetic(q)
                m = re.search(r"Answer:\s*(\S+)", a)
                score = 9 if truth is not None and m and m.group(1).rstrip(".") == truth else (6 if m else 2)
            return json.dumps({"score": score, "reason": "rule policy"})
        if "safety reviewer" in user:
            text = user.split("]\n", 1)[1] if "]\n" in user else user
            text = text.rsplit("\n\nReply with JSON", 1)[0].lower()
            bad = any(w in text for w in self.unsafe_words)
            return json.dumps({"safe": not bad, "category": "violence" if bad else "none"})
        m = re.match(r"Write (\d+) diverse.*?about: (.*?)\. Vary", user, re.DOTALL)
        if m:
            n, topic = int(m.group(1)), m.group(2)
            return json.dumps([f"Question {i + 1} about {topic}: what is {i + 2} + {i * 3}?" for i in range(n)])
        truth = solve_arithmetic(user)
        answer = truth if truth is not None else "42"
        if body.get("temperature", 0) > 0 and self.wrong_rate > 0:
            rng = random.Random(f"{body.get('seed')}|{user}|{index}")
            if rng.random() < self.wrong_rate:
                answer = str(int(float(answer)) + rng.randint(1, 9)) if truth is not None else "41"
        return f"Let me work it out step by step.\nAnswer: {answer}"


class ModelPolicy:
    """Serve a plinth chat back end (e.g. `HFChat` on a tiny local model); one generation at a time."""

    def __init__(self, backend: Any):
        self.backend = backend
        self._lock = threading.Lock()

    def __call__(self, messages: list[dict[str, str]], body: dict[str, Any], index: int) -> str:
        seed = body.get("seed")
        with self._lock:
            return self.backend.chat([messages], n=1, temperature=float(body.get("temperature", 0.0)),
                                     max_tokens=int(body.get("max_tokens", 64)),
                                     seed=None if seed is None else int(seed) + index)[0][0]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes; Nagle + delayed ACK would add ~40 ms each
    server: "_Server"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout test); nothing to do
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def do_GET(self) -> None:  # noqa: N802
        if self.server.owner.dead:
            return self._drop()
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, json.dumps({"object": "list", "data": [{"id": "rule", "object": "model"}]}).encode())
        else:
            self._send(404, b'{"error": "not found"}')

    def do_POST(self) -> None:  # noqa: N802
        owner = self.server.owner
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if owner.dead:
            return self._drop()
        fault = owner.next_fault()
        owner.count("requests")
        if fault is not None:
            owner.count(f"fault:{fault}")
            kind, _, arg = fault.partition(":")
            if kind in {"500", "502", "503"}:
                return self._send(int(kind), b'{"error": {"message": "internal error (injected)"}}')
            if kind == "429":
                return self._send(429, b'{"error": {"message": "rate limited (injected)"}}',
                                  {"Retry-After": arg or "1"})
            if kind == "timeout":
                time.sleep(float(arg or 5))
            elif kind == "garbage":
                return self._send(200, b"<html>502 Bad Gateway</html> not json")
            elif kind == "badjson":
                return self._send(200, b'{"object": "chat.completion", "choices": []}')
            elif kind == "close":
                return self._drop()
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._send(404, b'{"error": "not found"}')
        if owner.api_key is not None and self.headers.get("Authorization") != f"Bearer {owner.api_key}":
            return self._send(401, b'{"error": {"message": "invalid api key"}}')
        try:
            body = json.loads(raw)
            messages = body["messages"]
        except (ValueError, KeyError):
            return self._send(400, b'{"error": {"message": "bad request"}}')
        if owner.latency:
            time.sleep(owner.latency)
        n = int(body.get("n", 1) or 1)
        texts = [owner.policy(messages, body, i) for i in range(n)]
        resp = {
            "id": f"chatcmpl-{owner.counts['requests']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                        for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
        owner.count("answered")
        self._send(200, json.dumps(resp).encode())
        if owner.kill_after is not None and owner.counts["answered"] >= owner.kill_after:
            owner.kill()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: "ChatServer"


class ChatServer:
    """Start with `start()` or `with`; `base_url` is http://127.0.0.1:<port>/v1. Only binds the loopback address."""

    def __init__(self, policy: Policy, port: int = 0, latency: float = 0.0, kill_after: int | None = None,
                 api_key: str | None = None, faults: list[str] | None = None):
        self.policy, self.latency, self.kill_after, self.api_key = policy, latency, kill_after, api_key
        self.faults: deque[str] = deque(faults or [])
        self.counts: Counter = Counter()
        self.dead = False
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def next_fault(self) -> str | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def start(self) -> "ChatServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def kill(self) -> None:
        """Die like a killed process: stop accepting, drop requests on open connections."""
        self.dead = True
        threading.Thread(target=self.stop, daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.dead = True
        if self._thread is not None:
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "ChatServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
