"""`openai` chat back end: any OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp, Ollama).

Standard library only (http.client, one keep-alive connection per worker thread, a thread pool for
concurrency). Retries 429 (honouring Retry-After), 5xx, timeouts, dropped connections and unparseable bodies
with capped exponential backoff; other 4xx (bad key, bad model) fail at once. The API key is read from the
environment variable named in the config and never appears in errors, logs or cache keys.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from plinth.lm.chat import ChatBackend, ChatError, Messages
from plinth.components import ComponentConfig

RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIChatConfig(ComponentConfig):
    base_url: str = Field("http://127.0.0.1:8000/v1", description="server root up to /v1; /chat/completions is appended")
    model: str = Field(..., description="model name the server expects in the request body")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="name of the environment variable holding the API key (never the key itself); "
        "unset variable = no Authorization header"
    )
    concurrency: int = Field(8, ge=1, le=256, description="requests in flight at once")
    timeout: float = Field(60.0, gt=0, description="seconds per request (connect + read)")
    max_retries: int = Field(5, ge=0, description="retries per request after the first try")
    backoff: float = Field(0.5, ge=0, description="first retry delay in seconds; doubles each retry, with jitter")
    max_backoff: float = Field(30.0, ge=0, description="cap on one retry delay (also caps Retry-After)")
    native_n: bool = Field(
        True, description="ask for n samples in one request (`n`); false sends n requests with seeds seed..seed+n-1 "
        "(for servers without `n`, e.g. Ollama)"
    )
    extra_body: dict[str, Any] = Field(default_factory=dict, description="extra JSON keys sent with every request")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL like http://127.0.0.1:8000/v1, got {v!r}")
        return v.rstrip("/")


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Fatal(Exception):
    pass


class OpenAIChat(ChatBackend):
    """Chat completions over HTTP with bounded retries; `chat()` runs conversations `concurrency` at a time."""

    Config = OpenAIChatConfig

    def __init__(self, config: OpenAIChatConfig | dict[str, Any] | None = None):
        super().__init__(config)
        parts = urlsplit(self.config.base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "") + "/chat/completions"
        self._local = threading.local()
        self._conns: list[http.client.HTTPConnection] = []
        self._conns_lock = threading.Lock()
        self.requests_sent = 0
        self._pool: ThreadPoolExecutor | None = None

    @property
    def identity(self) -> str:
        # the server's address is left out on purpose: the same model behind a restarted server (new port)
        # must hit the same cache entries. `extra_body` is in it: its keys (top_p, chat_template_kwargs, ...) change
        # what the server samples.
        if not self.config.extra_body:
            return f"openai:{self.config.model}"
        extra = json.dumps(self.config.extra_body, sort_keys=True, default=str)
        return f"openai:{self.config.model}:{hashlib.sha256(extra.encode()).hexdigest()[:16]}"

    @property
    def name(self) -> str:
        return f"openai back end ({self.config.base_url}, model {self.config.model!r})"

    # -- HTTP -------------------------------------------------------------------------------------------
    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.config.timeout)
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        env = self.config.api_key_env
        key = os.environ.get(env) if env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post_once(self, body: dict[str, Any]) -> tuple[list[str], str]:
        """One request; returns (choices' texts, raw body) or raises _Retryable / _Fatal."""
        payload = json.dumps(body).encode("utf-8")
        conn = self._conn()
        try:
            conn.request("POST", self._path, body=payload, headers=self._headers())
            resp = conn.getresponse()
            raw = resp.read().decode("utf-8", errors="replace")
        except (socket.timeout, TimeoutError) as exc:
            self._drop_conn()
            raise _Retryable(f"timed out after {self.config.timeout:g} s ({exc})") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            self._drop_conn()
            raise _Retryable(f"connection failed: {type(exc).__name__}: {exc}") from None
        self.requests_sent += 1
        status = resp.status
        if resp.getheader("Connection", "").lower() == "close":
            self._drop_conn()
        short = f"HTTP {status}: {raw[:500]}"
        if status in RETRYABLE:
            retry_after = _retry_after(resp.getheader("Retry-After"))
            raise _Retryable(short, retry_after)
        if status >= 400:
            raise _Fatal(short)
        try:
            data = json.loads(raw)
            texts = [c["message"]["content"] or "" for c in data["choices"]]
        except (ValueError, KeyError, TypeError, IndexError):
            raise _Retryable(f"malformed response (not chat-completions JSON): {short}") from None
        if not texts:
            raise _Retryable(f"response has no choices: {short}")
        return texts, raw

    def _request(self, body: dict[str, Any]) -> list[str]:
        """A request with retries; after the last one, ChatError naming the back end and the last response."""
        last = ""
        for attempt in range(self.config.max_retries + 1):
            try:
                texts, _ = self._post_once(body)
                return texts
            except _Fatal as exc:
                raise ChatError(f"{self.name}: request refused: {exc}", backend=self.name, last_response=str(exc))
            except _Retryable as exc:
                last = str(exc)
                if attempt == self.config.max_retries:
                    break
                delay = min(self.config.max_backoff, self.config.backoff * (2**attempt))
                delay *= 0.5 + random.random() / 2  # jitter: many workers do not retry in lockstep
                if exc.retry_after is not None:
                    delay = min(self.config.max_backoff, max(delay, exc.retry_after))
                time.sleep(delay)
        raise ChatError(
            f"{self.name}: gave up after {self.config.max_retries + 1} tries; last response: {last}",
            backend=self.name,
            last_response=last,
        )

    def _samples(self, messages: Messages, n: int, temperature: float, max_tokens: int, seed: int | None) -> list[str]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            **self.config.extra_body,
        }
        if seed is not None:
            body["seed"] = seed
        if self.config.native_n:
            if n > 1:
                body["n"] = n
            texts = self._request(body)
            while len(texts) < n:  # a server that ignored `n`: top up one request at a time
                extra = dict(body, n=1)
                if seed is not None:
                    extra["seed"] = seed + len(texts)
                texts += self._request(extra)
            return texts[:n]
        texts = []
        for i in range(n):
            one = dict(body)
            if seed is not None:
                one["seed"] = seed + i
            texts += self._request(one)[:1]
        return texts

    def chat(
        self,
        conversations: list[Messages],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int | None = None,
    ) -> list[list[str]]:
        results: dict[int, list[str]] = {}
        if not conversations:
            return []
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="plinth-openai")
        futures = {
            self._pool.submit(self._samples, conv, n, temperature, max_tokens, seed): i
            for i, conv in enumerate(conversations)
        }
        error: ChatError | None = None
        for fut in as_completed(futures):
            if fut.cancelled():
                continue
            try:
                results[futures[fut]] = fut.result()
            except ChatError as exc:
                if error is None:
                    error = exc
                    for f in futures:  # stop queued work; requests in flight finish and are kept
                        f.cancel()
        if error is not None:
            error.partial = dict(results)
            raise error
        return [results[i] for i in range(len(conversations))]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
