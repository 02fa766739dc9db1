"""Loopback HTTP servers speaking the OpenAI and Anthropic wire formats, for tests.

Real provider clients (langchain-openai, langchain-anthropic, llama-index-llms-openai...) talk to
these through `base_url=`: the request goes over a real socket, the client parses a real body or
SSE stream, so the usage a test asserts is what the client really extracted. Bodies follow the
providers' documented formats, usage details included (OpenAI `prompt_tokens_details.cached_tokens`,
`completion_tokens_details.reasoning_tokens`; Anthropic `cache_creation_input_tokens`,
`cache_read_input_tokens`, the `message_start` / `message_delta` stream events).

    with openai_server(prompt_tokens=1000, cached_tokens=500, completion_tokens=100) as srv:
        llm = ChatOpenAI(model="gpt-4o", base_url=srv.url + "/v1", api_key="test")
        llm.invoke("hi")
        assert srv.requests[0].json["model"] == "gpt-4o"

Every server listens on 127.0.0.1:0 (a free port), records each request, and answers from a
queue of `Reply` objects (`push`) first, then from its responder (a function of the request).
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "LoopbackServer",
    "Recorded",
    "Reply",
    "anthropic_error",
    "anthropic_message",
    "anthropic_server",
    "anthropic_stream_events",
    "openai_chat_completion",
    "openai_chat_stream_events",
    "openai_completion",
    "openai_embeddings",
    "openai_error",
    "openai_server",
]

CREATED = 1_741_569_952  # a fixed timestamp keeps bodies reproducible


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any


@dataclass
class Reply:
    """One response: a JSON body, or an SSE stream of (event name or None, data) pairs.

    A data of "[DONE]" is sent verbatim (OpenAI's end marker); anything else as JSON.
    `delay` sleeps before answering; `events_delay` between stream events.
    """

    status: int = 200
    body: Any = None
    events: Sequence[tuple[str | None, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    events_delay: float = 0.0


Responder = Callable[[Recorded], Reply]


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 with a recorded request log and scripted replies."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.responder = responder
        self.requests: list[Recorded] = []
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    parsed = json.loads(raw) if raw else None
                except ValueError:
                    parsed = None
                rec = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, raw, parsed)
                reply = server._next_reply(rec)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    if reply.events is not None:
                        self._send_stream(reply)
                    else:
                        self._send_body(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (an abandoned stream): nothing to do

            def _send_body(self, reply: Reply) -> None:
                payload = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def _send_stream(self, reply: Reply) -> None:
                self.send_response(reply.status)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.close_connection = True
                for event, data in reply.events or ():
                    text = data if isinstance(data, str) else json.dumps(data)
                    frame = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
                    self.wfile.write(frame.encode())
                    self.wfile.flush()
                    if reply.events_delay:
                        time.sleep(reply.events_delay)

            do_POST = _handle
            do_GET = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT (no trailing slash; add /v1 for OpenAI's base_url)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="mock-provider", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scripting -------------------------------------------------------------------------
    def push(self, *replies: Reply) -> LoopbackServer:
        """Queue replies served, in order, before the responder answers."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def _next_reply(self, rec: Recorded) -> Reply:
        with self._lock:
            self.requests.append(rec)
            if self._queue:
                return self._queue.pop(0)
        if self.responder is None:
            return Reply(status=404, body={"error": {"message": f"no reply scripted for {rec.path}"}})
        return self.responder(rec)


# -- OpenAI ---------------------------------------------------------------------------------


def _openai_usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int, reasoning_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_chat_completion(
    *,
    model: str = "gpt-4o-2024-08-06",
    content: str = "Hello! How can I help?",
    prompt_tokens: int = 19,
    completion_tokens: int = 10,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    n: int = 1,
    id: str = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
) -> dict[str, Any]:
    """A /v1/chat/completions body (usage covers all n choices, as OpenAI reports it)."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": content if n == 1 else f"{content} ({i})", "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
            for i in range(n)
        ],
        "usage": _openai_usage(prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens),
        "service_tier": "default",
        "system_fingerprint": "fp_f9f4fb6dbf",
    }


def openai_chat_stream_events(
    *,
    model: str = "gpt-4o-2024-08-06",
    pieces: Sequence[str] = ("Hello", "!", " How", " can", " I", " help", "?"),
    prompt_tokens: int = 19,
    completion_tokens: int = 7,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    include_usage: bool = True,
    id: str = "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
) -> list[tuple[str | None, Any]]:
    """SSE data of a streamed chat completion; with include_usage, a last chunk with
    `choices: []` carries the usage (what stream_options={"include_usage": true} asks for)."""

    def chunk(choices: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_f9f4fb6dbf",
            "choices": choices,
        }
        if include_usage:
            body["usage"] = usage
        return body

    events: list[tuple[str | None, Any]] = [
        (None, chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None}, "logprobs": None, "finish_reason": None}]))
    ]
    for p in pieces:
        events.append((None, chunk([{"index": 0, "delta": {"content": p}, "logprobs": None, "finish_reason": None}])))
    events.append((None, chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])))
    if include_usage:
        events.append((None, chunk([], _openai_usage(prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens))))
    events.append((None, "[DONE]"))
    return events


def openai_completion(
    *,
    model: str = "gpt-3.5-turbo-instruct",
    text: str = " world",
    prompt_tokens: int = 5,
    completion_tokens: int = 2,
) -> dict[str, Any]:
    """A legacy /v1/completions body."""
    return {
        "id": "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7",
        "object": "text_completion",
        "created": CREATED,
        "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }


def _vector(i: int, dims: int) -> list[float]:
    return [round(0.001 * (i + 1) * (d + 1), 6) for d in range(dims)]


def openai_embeddings(
    *,
    inputs: Sequence[Any],
    model: str = "text-embedding-3-small",
    prompt_tokens: int = 8,
    dims: int = 8,
    encoding_format: str | None = None,
) -> dict[str, Any]:
    """A /v1/embeddings body: one vector per input (base64 float32 when the client asks, as openai-python does)."""
    data = []
    for i in range(len(inputs)):
        vec = _vector(i, dims)
        emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if encoding_format == "base64" else vec
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def openai_error(status: int = 500, message: str = "The server had an error while processing your request.", type_: str = "server_error") -> Reply:
    return Reply(status=status, body={"error": {"message": message, "type": type_, "param": None, "code": None}})


@dataclass
class OpenAIResponder:
    """Answers /chat/completions (plain or SSE, following the request), /completions and /embeddings.

    The reply echoes nothing but the usage set here, so a test knows the exact figures to expect.
    """

    model: str | None = None  # response model; None = the requested one
    content: str = "Hello! How can I help?"
    pieces: Sequence[str] = ("Hello", "!", " How", " can", " I", " help", "?")
    prompt_tokens: int = 19
    completion_tokens: int = 10
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    embedding_tokens: int = 8

    def __call__(self, rec: Recorded) -> Reply:
        req = rec.json if isinstance(rec.json, dict) else {}
        model = self.model or str(req.get("model", "gpt-4o-2024-08-06"))
        if rec.path.endswith("/chat/completions"):
            if req.get("stream"):
                include = bool((req.get("stream_options") or {}).get("include_usage"))
                return Reply(
                    events=openai_chat_stream_events(
                        model=model,
                        pieces=self.pieces,
                        prompt_tokens=self.prompt_tokens,
                        completion_tokens=self.completion_tokens,
                        cached_tokens=self.cached_tokens,
                        reasoning_tokens=self.reasoning_tokens,
                        include_usage=include,
                    )
                )
            return Reply(
                body=openai_chat_completion(
                    model=model,
                    content=self.content,
                    prompt_tokens=self.prompt_tokens,
                    completion_tokens=self.completion_tokens,
                    cached_tokens=self.cached_tokens,
                    reasoning_tokens=self.reasoning_tokens,
                    n=int(req.get("n") or 1),
                )
            )
        if rec.path.endswith("/embeddings"):
            inputs = req.get("input", [])
            if isinstance(inputs, (str, int)) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
                inputs = [inputs]
            return Reply(
                body=openai_embeddings(
                    inputs=inputs, model=model, prompt_tokens=self.embedding_tokens, encoding_format=req.get("encoding_format")
                )
            )
        if rec.path.endswith("/completions"):
            return Reply(
                body=openai_completion(
                    model=model, text=self.content, prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens
                )
            )
        return Reply(status=404, body={"error": {"message": f"unknown path {rec.path}", "type": "invalid_request_error"}})


def openai_server(**usage: Any) -> LoopbackServer:
    """A server answering like OpenAI; keyword arguments are OpenAIResponder fields."""
    return LoopbackServer(OpenAIResponder(**usage))


# -- Anthropic ------------------------------------------------------------------------------


def _anthropic_usage(input_tokens: int, output_tokens: int, cache_creation: int, cache_read: int) -> dict[str, Any]:
    # Anthropic's input_tokens EXCLUDES the cache reads and writes
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": cache_creation, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def anthropic_message(
    *,
    model: str = "claude-sonnet-4-20250514",
    text: str = "Hello! How can I help?",
    input_tokens: int = 12,
    output_tokens: int = 6,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
    id: str = "msg_01XFDUDYJgAACzvnptvVoYEL",
) -> dict[str, Any]:
    """A /v1/messages body."""
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens),
    }


def anthropic_stream_events(
    *,
    model: str = "claude-sonnet-4-20250514",
    pieces: Sequence[str] = ("Hello", "! How", " can I", " help?"),
    input_tokens: int = 12,
    output_tokens: int = 6,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
    id: str = "msg_014p7gG3wDgGV9EUtLvnow3U",
) -> list[tuple[str | None, Any]]:
    """SSE events of a streamed message: usage in message_start (output_tokens 1 so far) and,
    cumulative, in message_delta (as the API sends it today)."""
    start_usage = _anthropic_usage(input_tokens, 1, cache_creation_input_tokens, cache_read_input_tokens)
    events: list[tuple[str | None, Any]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        ),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
    ]
    for p in pieces:
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}))
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {
                    "input_tokens": input_tokens,
                    "cache_creation_input_tokens": cache_creation_input_tokens,
                    "cache_read_input_tokens": cache_read_input_tokens,
                    "output_tokens": output_tokens,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


def anthropic_error(status: int = 529, message: str = "Overloaded", type_: str = "overloaded_error") -> Reply:
    return Reply(status=status, body={"type": "error", "error": {"type": type_, "message": message}})


@dataclass
class AnthropicResponder:
    """Answers /v1/messages, plain or SSE following the request's `stream`."""

    model: str | None = None
    text: str = "Hello! How can I help?"
    pieces: Sequence[str] = ("Hello", "! How", " can I", " help?")
    input_tokens: int = 12
    output_tokens: int = 6
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def __call__(self, rec: Recorded) -> Reply:
        req = rec.json if isinstance(rec.json, dict) else {}
        model = self.model or str(req.get("model", "claude-sonnet-4-20250514"))
        if not rec.path.endswith("/messages"):
            return Reply(status=404, body={"type": "error", "error": {"type": "not_found_error", "message": rec.path}})
        kw = dict(
            model=model,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens,
        )
        if req.get("stream"):
            return Reply(events=anthropic_stream_events(pieces=self.pieces, **kw))  # type: ignore[arg-type]
        return Reply(body=anthropic_message(text=self.text, **kw))  # type: ignore[arg-type]


def anthropic_server(**usage: Any) -> LoopbackServer:
    """A server answering like Anthropic; keyword arguments are AnthropicResponder fields.
    Point ChatAnthropic at it with `base_url=server.url` (the client adds /v1/messages)."""
    return LoopbackServer(AnthropicResponder(**usage))


def iter_sse(raw: bytes) -> Iterator[tuple[str | None, str]]:
    """Parse an SSE byte stream into (event, data) pairs (handy for checking a recorded stream)."""
    event: str | None = None
    for line in raw.decode().splitlines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, line[6:]
            event = None
