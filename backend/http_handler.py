"""The server's HTTP plumbing: one request in, one JSON answer or one event stream out.

``Handler`` reads a request, finds its ``Route`` (method, endpoint, ``Dialect``) in the
server's table, checks the API key (``Authorization: Bearer KEY`` or ``x-api-key: KEY``, as
Anthropic clients send it), reads the JSON body and calls the endpoint, which checks the
request in its protocol's terms and calls ``answer``: the one generation started, drained
into a whole answer or sent as server-sent events as its pieces come.

Each protocol speaks its own ``Dialect``: the shape of an error body, the event that reports
a failure after a stream has begun, and the line that ends a stream (OpenAI's
``data: [DONE]``; Anthropic and Responses streams simply end). A request's ``ApiError``
becomes that dialect's error body with its status; a bug of ours becomes a 500 whose
traceback goes to the server's stderr, never to the client.

Design: HTTP/1.1 keep-alive; event streams use chunked transfer encoding (HTTP/1.0 peers get
the stream until the connection closes). A client that goes away cancels its sequence: a
failed write does it, and so does a watcher thread per request that notices the peer closing
its socket (EOF) while nothing is being written (a whole answer, a tool call held back).

Limits: request bodies up to 32 MiB, sent with Content-Length; no TLS.
"""

from __future__ import annotations

import hmac
import json
import select
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from codeagent.backend.api_checks import ApiError, parse_body
from codeagent.backend.chat.model import ChatModel
from codeagent.backend.chat.prompt import Prompt
from codeagent.backend.generation import Generation, Service
from codeagent.backend.layers.sampler import SamplingParams

MAX_BODY = 32 * 2**20
Event = tuple[str | None, dict[str, Any]]  # (the SSE event name, when the protocol names events; data)


class ClientGone(Exception):
    """The client closed its connection mid-answer."""


class Served(Protocol):
    """What the handler needs of its server (``server.OpenAIServer``)."""

    model: ChatModel
    service: Service
    api_key: str | None
    max_output_tokens: int
    log_requests: bool
    routes: dict[str, Route]


def _openai_stream_error(err: ApiError) -> Event:
    return None, err.payload()


@dataclass(frozen=True, slots=True)
class Dialect:
    error_body: Callable[[ApiError], dict[str, Any]] = ApiError.payload
    stream_error: Callable[[ApiError], Event] = _openai_stream_error
    done: str | None = "[DONE]"  # the data of a stream's last event, if the protocol has one


OPENAI = Dialect()


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    endpoint: Callable[[Handler, dict[str, Any]], None]
    dialect: Dialect = OPENAI


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Served  # type: ignore[assignment]
    timeout = 600  # an idle keep-alive connection is dropped after this long

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log_requests:
            super().log_message(format, *args)

    def _dispatch(self, method: str) -> None:
        self.started = False  # whether a response's headers went out
        route = self.server.routes.get(self.path.split("?", 1)[0].rstrip("/"))
        self.dialect = route.dialect if route else OPENAI
        try:
            if route is None:
                raise ApiError(404, f"no such endpoint: {method} {self.path}", code="not_found")
            if route.method != method:
                raise ApiError(
                    405, f"{self.path} takes {route.method}, not {method}", code="method_not_allowed"
                )
            if self.path.startswith("/v1/"):
                self._authorize()
            route.endpoint(self, self._body() if method == "POST" else {})
        except ClientGone:
            self.close_connection = True
        except ApiError as err:
            self._fail(err)
        except Exception:  # a bug of ours: the client gets a 500, the traceback goes to stderr
            print(f"codeagent serve: {method} {self.path} failed:\n{traceback.format_exc()}", file=sys.stderr)
            self._fail(ApiError(500, "internal server error", kind="server_error", code="internal_error"))

    def _authorize(self) -> None:
        key = self.server.api_key
        if key is None:
            return
        bearer = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        given = bearer or self.headers.get("x-api-key", "").strip()
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise ApiError(
                401,
                "missing or wrong API key (Authorization: Bearer KEY, or x-api-key: KEY)",
                code="invalid_api_key",
            )

    def _body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ApiError(411, "the request needs a Content-Length header", code="length_required")
        if int(length) > MAX_BODY:
            raise ApiError(413, f"the request body is over {MAX_BODY} bytes", code="body_too_large")
        return parse_body(self.rfile.read(int(length)))

    # answers

    def answer(
        self,
        prompt: Prompt,
        params: SamplingParams,
        stream: bool,
        whole: Callable[[Generation], dict[str, Any]],
        events: Callable[[Generation], Iterable[Event]],
    ) -> None:
        """Generate for ``prompt``: ``whole(generation)`` once it has ended, or ``events`` as it goes."""
        try:
            generation = Generation.start(self.server.model, self.server.service, prompt, params)
        except ValueError as err:  # the engine could never hold it: its KV pool is too small
            raise ApiError(400, str(err), param="max_tokens", code="context_length_exceeded") from err
        try:
            with self._watch(generation):
                if not stream:
                    for _ in generation:
                        pass
                    self.send_json(200, whole(generation))
                    return
                self._start_events()
                for name, payload in events(generation):
                    self._event(payload, name)
                self._end_events()
        finally:
            generation.cancel()  # a no-op once finished; frees the sequence on any early exit

    def _fail(self, err: ApiError) -> None:
        self.close_connection = True  # the request body may be unread: never reuse this connection
        try:
            if self.started:
                name, payload = self.dialect.stream_error(err)
                self._event(payload, name)
                self._end_events()
            else:
                self.send_json(err.status, self.dialect.error_body(err))
        except ClientGone:
            pass  # nobody left to tell

    def send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.started = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._write(data)

    def _start_events(self) -> None:
        self.started = True
        self.chunked = self.request_version != "HTTP/1.0"  # 1.0 has no chunks: the body ends at close
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.close_connection = True
        self.end_headers()

    def _event(self, payload: dict[str, Any] | str, name: str | None = None) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        body = (f"event: {name}\n" if name else "") + f"data: {data}\n\n"
        raw = body.encode()
        self._write(b"%x\r\n%s\r\n" % (len(raw), raw) if self.chunked else raw)

    def _end_events(self) -> None:
        if self.dialect.done is not None:
            self._event(self.dialect.done)
        if self.chunked:
            self._write(b"0\r\n\r\n")

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as err:  # broken pipe, reset, timeout: the client is gone
            raise ClientGone() from err

    @contextmanager
    def _watch(self, generation: Generation) -> Iterator[None]:
        """Cancel the generation if the peer closes its socket before the answer is out."""
        done = threading.Event()
        watcher = threading.Thread(
            target=_watch_peer, args=(self.connection, done, generation.cancel), daemon=True
        )
        watcher.start()
        try:
            yield
        finally:
            done.set()


def _watch_peer(sock: socket.socket, done: threading.Event, cancel: Callable[[], None]) -> None:
    poller = select.poll()  # not select(): it fails on descriptors above 1023, which a busy server has
    try:
        poller.register(sock, select.POLLIN)
    except (OSError, ValueError):
        return  # already closed: the request is over
    while not done.is_set():
        try:
            if not poller.poll(100):
                continue
            if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                return  # the client sent more (a pipelined request), so it is still there
        except BlockingIOError:
            continue
        except (OSError, ValueError):
            pass  # reset, or the socket was closed under us: gone either way
        if not done.is_set():
            cancel()
        return
