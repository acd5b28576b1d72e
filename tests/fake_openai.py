"""A scriptable, OpenAI-compatible Chat Completions server for tests (stdlib only).

The engine talks to its LLM through the official ``openai`` package; this module
gives tests a real HTTP server on 127.0.0.1 (port 0) so that the *real* client
code path runs: its request building, retries, Retry-After handling, timeouts
and response parsing. Nothing leaves the machine.

Usage::

    from tests.fake_openai import FakeOpenAI, answer_json, completion, error, hang

    with FakeOpenAI() as fake:
        fake.script(error(500), answer_json({"orders": []}))
        client = openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=2, timeout=2)
        ...
        assert len(fake.requests) == 2

As a pytest fixture (the module itself does not import pytest)::

    @pytest.fixture
    def fake():
        with FakeOpenAI() as server:
            yield server

Behaviour
---------
* Every request is recorded in ``fake.requests`` (a snapshot list of
  ``RecordedRequest``: method, path, query, headers with lower-case keys, raw
  body, parsed ``json``, arrival time, peer address) *before* any reply is
  chosen, so even rejected, unscripted, hung or unknown-path requests appear,
  Authorization header included.
* ``POST /v1/chat/completions`` consumes one queued reply (``fake.script``),
  FIFO, one per request. Client retries are separate requests and therefore
  consume separate replies: ``script(error(500), completion("x"))`` is "fail
  once, then succeed".
* Empty queue: 500 with an OpenAI-style body whose message says "no scripted
  reply", plus ``x-should-retry: false`` so the openai client raises
  ``InternalServerError`` at once instead of retrying (fails loudly and fast).
  ``fake.unscripted`` counts these.
* A body that is not a JSON object: 400 (as OpenAI does), no reply consumed.
* Any other method/path: 404 with an OpenAI-style ``unknown_url`` error.
* HTTP/1.1 keep-alive with Content-Length framing (chunked request bodies are
  accepted too); bodies of any size. Nothing is logged to stderr; unexpected
  exceptions inside the server are kept in ``fake.internal_errors``.

Rejecting response formats (the design chosen)
----------------------------------------------
Whether a server supports ``response_format`` ``json_schema``/``json_object``
is a property of the *server*, not of one scripted reply, so it is a switch on
the server rather than an entry in the queue::

    fake.reject_response_formats("json_schema")            # or ("json_schema", "json_object")
    fake.script(answer_json({...}))

From then on every chat request whose ``response_format.type`` is one of those
kinds is answered 400 (type ``invalid_request_error``, param
``response_format``, message "Invalid parameter: 'response_format' of type
'json_schema' is not supported with this model.") WITHOUT consuming a
scripted reply; requests with another (or no) response format get the queue as
usual. The openai client does not retry a 400, so the code under test sees
``openai.BadRequestError`` and may fall back. A test scripts only the answers
it expects the fallback to get, and checks the fallback sequence through
``fake.requests``. Call ``fake.reject_response_formats()`` with no kinds to
accept every format again.

Replies (immutable; the same object may be queued several times)
----------------------------------------------------------------
* ``completion(content, *, refusal=None, finish_reason="stop", prompt_tokens=1200,
  completion_tokens=150, model=None)``: 200 chat.completion; ``model`` defaults
  to the request's model.
* ``answer_json(obj)``: ``completion(json.dumps(obj))``.
* ``error(status, message=..., *, headers=None, type_="server_error", code=None)``:
  ``{"error": {"message", "type", "param": null, "code"}}`` with that status and
  extra response headers (e.g. ``{"retry-after-ms": "50"}``).
* ``hang(seconds, then=None)``: answer ``then`` (default: a 500) after
  ``seconds``. The wait is on an Event: it ends at once when the fake is closed,
  and also when the client hangs up (e.g. after its own timeout), so no thread
  outlives the test. Other requests are served meanwhile (one thread per
  connection).
* ``disconnect()``: close the connection without answering (the client sees a
  connection error and may retry).
"""

from __future__ import annotations

import http.server
import itertools
import json
import select
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

__all__ = [
    "CHAT_COMPLETIONS_PATH",
    "FakeOpenAI",
    "RecordedRequest",
    "Reply",
    "answer_json",
    "completion",
    "disconnect",
    "error",
    "hang",
]

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
_POLL = 0.02  # seconds; granularity of hang()'s "has the client gone?" check


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the server received it."""

    index: int  # 0-based arrival order
    method: str
    path: str  # without the query string, e.g. "/v1/chat/completions"
    query: str
    headers: dict[str, str]  # lower-case keys
    body: bytes
    json: Any  # parsed body, or None when empty / not JSON
    received_at: float  # time.monotonic() on arrival
    peer: tuple[str, int]  # client (host, port): same port => same keep-alive connection

    @property
    def response_format_type(self) -> str | None:
        rf = self.json.get("response_format") if isinstance(self.json, dict) else None
        return rf.get("type") if isinstance(rf, dict) else None


# --------------------------------------------------------------------------- replies


class Reply:
    """Base class of everything ``FakeOpenAI.script`` accepts; build with the functions below."""

    def _serve(self, handler: _Handler, request: RecordedRequest) -> None:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class _Respond(Reply):
    status: int
    body: Callable[[RecordedRequest], Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    def _serve(self, handler: _Handler, request: RecordedRequest) -> None:
        handler.send_json(self.status, self.body(request), self.headers)


@dataclass(frozen=True)
class _Hang(Reply):
    seconds: float
    then: Reply

    def _serve(self, handler: _Handler, request: RecordedRequest) -> None:
        if handler.wait(self.seconds):
            self.then._serve(handler, request)
        else:
            handler.close_connection = True  # fake closed or client gone: answer nothing


@dataclass(frozen=True)
class _Disconnect(Reply):
    def _serve(self, handler: _Handler, request: RecordedRequest) -> None:
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def completion(
    content: str | None,
    *,
    refusal: str | None = None,
    finish_reason: str = "stop",
    prompt_tokens: int | None = None,
    completion_tokens: int = 150,
    model: str | None = None,
    reasoning_tokens: int | None = None,
) -> Reply:
    """200 with a ``chat.completion`` object that ``openai`` parses into ``ChatCompletion``.
    ``prompt_tokens`` defaults to what a tokenizer would count for the request's messages
    (:func:`count_prompt_tokens`)."""

    def body(request: RecordedRequest) -> dict:
        req_model = request.json.get("model") if isinstance(request.json, dict) else None
        n_prompt = prompt_tokens if prompt_tokens is not None else count_prompt_tokens(request)
        return {
            "id": f"chatcmpl-fake{request.index:06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model if model is not None else (req_model if isinstance(req_model, str) else "fake-model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal, "annotations": []},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": completion_tokens,
                "total_tokens": n_prompt + completion_tokens,
                **({"completion_tokens_details": {"reasoning_tokens": reasoning_tokens}}
                   if reasoning_tokens is not None else {}),
            },
            "system_fingerprint": "fp_fake",
        }

    return _Respond(200, body)


def count_prompt_tokens(request: RecordedRequest) -> int:
    """The prompt tokens a server would report: one per 2.5 characters of the messages (the
    brief is mostly numbers and separators), plus 4 per message for the chat template."""
    messages = request.json.get("messages", []) if isinstance(request.json, dict) else []
    chars = sum(len(m.get("content") or "") for m in messages if isinstance(m, dict))
    return int(chars / 2.5) + 4 * len(messages)


def answer_json(obj: Any) -> Reply:
    """A completion whose content is ``json.dumps(obj)``."""
    return completion(json.dumps(obj))


def error(
    status: int,
    message: str = "The server had an error while processing your request. Sorry about that!",
    *,
    headers: Mapping[str, str] | None = None,
    type_: str = "server_error",
    code: str | None = None,
) -> Reply:
    """An OpenAI-style error: ``{"error": {"message", "type", "param": null, "code"}}``."""
    payload = _error_body(message, type_, None, code)
    return _Respond(status, lambda _request: payload, dict(headers or {}))


def hang(seconds: float, then: Reply | None = None) -> Reply:
    """Wait ``seconds`` (interruptible), then answer ``then`` (default: a 500)."""
    return _Hang(float(seconds), then if then is not None else error(500, f"fake: answered after hanging {seconds}s"))


def disconnect() -> Reply:
    """Close the connection without sending a response."""
    return _Disconnect()


# --------------------------------------------------------------------------- strict profiles
#
# A profile makes the fake answer as one kind of real server does, with the error bodies
# those servers give (quoted from their documentation and issue trackers):
#
# * "openai-reasoning" (o-series, gpt-5 and later): 400 ``unsupported_parameter`` for
#   ``max_tokens``; 400 ``unsupported_value`` for a ``temperature`` other than 1 (unless
#   ``reasoning_effort`` is "none"); reasoning spends completion tokens by effort (low 1,500,
#   medium, the default, 6,000), and a budget it eats answers ``content: ""`` with
#   ``finish_reason: "length"``; ``completion_tokens_details.reasoning_tokens`` is reported.
# * "openai-chat-strict": strict json_schema rules (every object ``additionalProperties:
#   false`` and every property required: else 400 ``invalid_json_schema``), and the 400
#   ``context_length_exceeded`` of a prompt over ``context`` tokens.
# * "think-tags" (DeepSeek-R1 / Qwen3 on Ollama or vLLM without a reasoning parser): the
#   content starts with ``<think>`` reasoning that holds a DRAFT answer, then the answer.
# * "reasoning-fields": the draft is in ``message.reasoning_content`` (DeepSeek) and
#   ``message.reasoning`` (OpenRouter, vLLM, Groq).
# * "mistral": 422 FastAPI ``extra_forbidden`` for ``seed`` (Mistral's own is ``random_seed``).
# * "llama-cpp-python": HTTP 500 for ``response_format`` json_schema (its server validates the
#   request in a handler that answers 500), json_object accepted.
# * "small-context" (Ollama's default): the prompt beyond ``context`` tokens (4,096 unless
#   given) is silently dropped; ``usage.prompt_tokens`` reports what was kept.

REASONING_TOKENS = {"none": 0, "minimal": 200, "low": 1500, "medium": 6000, "high": 20000, "xhigh": 40000, "max": 60000}
DRAFT = {"decisions": [{"ticker": "SPY", "action": "buy", "percent": 100, "reason": "draft: all in"}],
         "summary": "a draft inside the reasoning, never to be executed"}


def _err(status: int, message: Any, type_: str, param: str | None = None, code: Any = None) -> Reply:
    payload = _error_body(message, type_, param, code)
    return _Respond(status, lambda _request: payload)


@dataclass(frozen=True)
class Profile:
    name: str
    context: int | None = None

    def reject(self, request: RecordedRequest) -> Reply | None:
        """An answer that does not consume the script (an error, an exhausted budget), or None."""
        body = request.json
        if self.name == "openai-reasoning":
            if "max_tokens" in body:
                return _err(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                            "Use 'max_completion_tokens' instead.", "invalid_request_error", "max_tokens",
                            "unsupported_parameter")
            effort = body.get("reasoning_effort", "medium")
            if "temperature" in body and body["temperature"] != 1 and effort != "none":
                return _err(400, f"Unsupported value: 'temperature' does not support {body['temperature']} with "
                            "this model. Only the default (1) value is supported.", "invalid_request_error",
                            "temperature", "unsupported_value")
            budget = body.get("max_completion_tokens") or 100_000
            spent = REASONING_TOKENS.get(effort, 6000)
            if spent + 150 > budget:
                return completion("", finish_reason="length", completion_tokens=budget, reasoning_tokens=budget)
        if self.name == "openai-chat-strict":
            rf = body.get("response_format") or {}
            if rf.get("type") == "json_schema" and (rf.get("json_schema") or {}).get("strict"):
                problem = _strict_schema_problem(rf["json_schema"].get("schema") or {})
                if problem:
                    return _err(400, f"Invalid schema for response_format '{rf['json_schema'].get('name')}': {problem}",
                                "invalid_request_error", "response_format", "invalid_json_schema")
            n = count_prompt_tokens(request)
            if self.context is not None and n > self.context:
                return _err(400, f"This model's maximum context length is {self.context} tokens. However, your "
                            f"messages resulted in {n} tokens. Please reduce the length of the messages.",
                            "invalid_request_error", "messages", "context_length_exceeded")
        if self.name == "mistral" and "seed" in body:
            return _Respond(422, lambda _r: {
                "object": "error",
                "message": {"detail": [{"type": "extra_forbidden", "loc": ["body", "seed"],
                                        "msg": "Extra inputs are not permitted", "input": body["seed"]}]},
                "type": "invalid_request_message_error", "param": None, "code": None})
        if self.name == "llama-cpp-python" and request.response_format_type == "json_schema":
            # Verbatim from llama-cpp-python 0.3.36's server (python -m llama_cpp.server), 2026-12-01.
            return _err(500, "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', "
                        "'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', 'ctx': "
                        "{'expected': \"'text' or 'json_object'\"}}\n\n  File \"/venv/lib/python3.11/site-packages/"
                        "llama_cpp/server/app.py\", line 376, in create_chat_completion\n    POST /v1/chat/completions",
                        "internal_server_error")
        return None

    def shape(self, request: RecordedRequest, payload: dict) -> dict:
        """A 200 completion as this kind of server writes it."""
        msg = payload["choices"][0]["message"]
        draft = json.dumps(DRAFT)
        if self.name == "openai-reasoning":
            spent = REASONING_TOKENS.get(request.json.get("reasoning_effort", "medium"), 6000)
            payload["usage"]["completion_tokens"] += spent
            payload["usage"]["total_tokens"] += spent
            payload["usage"]["completion_tokens_details"] = {"reasoning_tokens": spent}
        elif self.name == "think-tags" and msg.get("content"):
            msg["content"] = (f"<think>\nThe brief first. A first idea: {draft}\nNo: that breaks the CVaR budget."
                              f"\n</think>\n\n{msg['content']}")
        elif self.name == "reasoning-fields":
            msg["reasoning_content"] = f"Drafting: {draft} ... then the final answer."
            msg["reasoning"] = msg["reasoning_content"]
        elif self.name == "small-context":
            kept = min(payload["usage"]["prompt_tokens"], self.context or 4096)
            payload["usage"]["prompt_tokens"] = kept
            payload["usage"]["total_tokens"] = kept + payload["usage"]["completion_tokens"]
        return payload


def _strict_schema_problem(schema: dict, where: str = "()") -> str | None:
    if schema.get("type") == "object":
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return f"In context={where}, 'additionalProperties' is required to be supplied and to be false."
        missing = [k for k in props if k not in (schema.get("required") or [])]
        if missing:
            return (f"In context={where}, 'required' is required to be supplied and to be an array including "
                    f"every key in properties. Missing '{missing[0]}'.")
        for k, sub in props.items():
            problem = _strict_schema_problem(sub, f"('properties', '{k}')")
            if problem:
                return problem
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return _strict_schema_problem(schema["items"], f"{where}, 'items'")
    return None


@dataclass(frozen=True)
class _Shaped(Reply):
    reply: _Respond
    profile: Profile

    def _serve(self, handler: _Handler, request: RecordedRequest) -> None:
        payload = self.reply.body(request)
        if self.reply.status == 200 and isinstance(payload, dict) and payload.get("choices"):
            payload = self.profile.shape(request, json.loads(json.dumps(payload)))
        handler.send_json(self.reply.status, payload, self.reply.headers)


# --------------------------------------------------------------------------- server


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "FakeOpenAI/1.0"
    sys_version = ""
    server: _Server
    request_index = -1  # index of the request being answered (for x-request-id)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def handle(self) -> None:
        closing = self.server.fake._closing
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection and not closing.is_set():
            self.handle_one_request()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._track(self.connection, add=False)

    # every method goes through the same dispatcher
    def do_POST(self) -> None:
        self._dispatch()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_POST

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after the chunk
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
            request = self.server.fake._record(self, body)
            self.request_index = request.index
            self.server.fake._answer(self, request)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True  # the client hung up; nothing to report

    def send_json(self, status: int, payload: Any, headers: Mapping[str, str] = {}) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_fake_{self.request_index:06d}")
        for name, value in headers.items():
            self.send_header(name, str(value))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False if the fake closed or the client hung up first."""
        deadline = time.monotonic() + seconds
        stop = self.server.fake._closing
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if stop.wait(min(_POLL, remaining)):
                return False
            if self._client_gone():
                return False

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # FakeOpenAI.close() joins the threads itself, with a bound
    fake: FakeOpenAI

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"fake-openai-conn-{client_address[1]}",
            daemon=True,
        )
        with self.fake._lock:
            self.fake._threads.add(thread)
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.fake._lock:
                self.fake._threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet, but kept
        with self.fake._lock:
            self.fake._internal_errors.append(traceback.format_exc())


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 answering from a script. See the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._internal_errors: list[str] = []
        self._rejected_formats: frozenset[str] = frozenset()
        self._rejection_status = 400
        self._profile: Profile | None = None
        self.models: list[str] | None = None  # GET /v1/models lists these (None: 404, as some servers do)
        self.key: str | None = None  # when set, any other bearer key gets OpenAI's 401
        self._unscripted = 0
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._counter = itertools.count()
        self._closing = threading.Event()
        self._closed = False

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host}:{port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai-server", daemon=True
        )
        self._thread.start()

    # ---- test-facing API

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a snapshot, in arrival order)."""
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet."""
        with self._lock:
            return len(self._queue)

    @property
    def unscripted(self) -> int:
        """Chat requests that found the queue empty (answered 500 "no scripted reply")."""
        with self._lock:
            return self._unscripted

    @property
    def internal_errors(self) -> list[str]:
        """Tracebacks of unexpected exceptions inside the fake itself (should stay empty)."""
        with self._lock:
            return list(self._internal_errors)

    def script(self, *replies: Reply) -> None:
        """Queue replies; each POST /v1/chat/completions consumes the oldest one."""
        for reply in replies:
            if not isinstance(reply, Reply):
                raise TypeError(f"not a Reply: {reply!r}")
        with self._lock:
            self._queue.extend(replies)

    def reject_response_formats(self, *kinds: str, status: int = 400) -> None:
        """Answer ``status`` to chat requests whose response_format.type is in ``kinds``,
        without consuming a scripted reply. No kinds: accept every format again."""
        with self._lock:
            self._rejected_formats = frozenset(kinds)
            self._rejection_status = status

    def use_profile(self, name: str | None, *, context: int | None = None) -> None:
        """Answer as a kind of real server does (see "strict profiles"); None: the plain fake."""
        with self._lock:
            self._profile = Profile(name, context) if name else None

    def close(self) -> None:
        """Stop the server, interrupt hangs, drop open connections and join every thread."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 5.0
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FakeOpenAI {self.base_url} requests={len(self._requests)} pending={len(self._queue)}>"

    # ---- server internals

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)
        if add and self._closing.is_set():  # accepted while closing: refuse it
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _record(self, handler: _Handler, body: bytes) -> RecordedRequest:
        path, _, query = handler.path.partition("?")
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        with self._lock:
            request = RecordedRequest(
                index=next(self._counter),
                method=handler.command,
                path=path,
                query=query,
                headers={k.lower(): v for k, v in handler.headers.items()},
                body=body,
                json=parsed,
                received_at=time.monotonic(),
                peer=tuple(handler.client_address[:2]),
            )
            self._requests.append(request)
        return request

    def _answer(self, handler: _Handler, request: RecordedRequest) -> None:
        if self.key is not None and request.headers.get("authorization") != f"Bearer {self.key}":
            handler.send_json(401, _error_body(
                "Incorrect API key provided: sk-wron*****ey. You can find your API key at "
                "https://platform.openai.com/account/api-keys.", "invalid_request_error", None, "invalid_api_key"))
            return
        if request.method == "GET" and request.path.rstrip("/") == "/v1/models" and self.models is not None:
            handler.send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]})
            return
        if request.method != "POST" or request.path.rstrip("/") != CHAT_COMPLETIONS_PATH:
            handler.send_json(
                404,
                _error_body(
                    f"Unknown request URL: {request.method} {request.path}.", "invalid_request_error", None, "unknown_url"
                ),
            )
            return
        if not isinstance(request.json, dict):
            handler.send_json(
                400,
                _error_body(
                    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                    "your HTTP library correctly. The OpenAI API expects a JSON payload.)",
                    "invalid_request_error",
                ),
            )
            return
        kind = request.response_format_type
        with self._lock:
            profile = self._profile
            rejected = kind is not None and kind in self._rejected_formats
            status = self._rejection_status
            answer = profile.reject(request) if profile is not None and not rejected else None
            reply = None if rejected or answer is not None or not self._queue else self._queue.popleft()
            if not rejected and answer is None and reply is None:
                self._unscripted += 1
        if answer is not None:
            answer._serve(handler, request)
            return
        if profile is not None and isinstance(reply, _Respond):
            reply = _Shaped(reply, profile)
        if rejected:
            handler.send_json(
                status,
                _error_body(
                    f"Invalid parameter: 'response_format' of type '{kind}' is not supported with this model.",
                    "invalid_request_error",
                    "response_format",
                ),
            )
        elif reply is None:
            handler.send_json(
                500,
                _error_body(
                    f"FakeOpenAI: no scripted reply for request #{request.index} ({request.method} {request.path})",
                    "server_error",
                    None,
                    "no_scripted_reply",
                ),
                {"x-should-retry": "false"},
            )
        else:
            reply._serve(handler, request)
