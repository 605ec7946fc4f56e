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

Design: HTTP/1.1 keep-alive, event streams in chunked encoding (HTTP/1.0: until the close).
Each answer's writes hold the request's write lock, so the one peer watch (``peer_watch.py``)
can slip a probe in between; a client that leaves (a failed write, a reset) cancels its
sequence, one that only half-closed gets its answer. A connection idle for the server's
``idle_timeout_s`` is closed; a read or write stuck for ``IO_TIMEOUT_S`` ends the request; a
client's reset is one log line at most. On shutdown (``connections.py``) new requests are a
503, and so is one aborted after the grace period (in a stream, its error event).

Limits: request bodies up to ``api_checks.body_limit``, sent with Content-Length; no TLS.
"""

from __future__ import annotations

import hmac
import json
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from codeagent.backend.chat.model import ChatModel
from codeagent.backend.chat.prompt import Prompt
from codeagent.backend.generation import Generation, Service
from codeagent.backend.grammar.matcher import GrammarError
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.serving.api_checks import ApiError, body_limit, check_text, parse_body
from codeagent.backend.serving.connections import Connections
from codeagent.backend.serving.peer_watch import PeerWatch, send_probe

IO_TIMEOUT_S = 120.0
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
SHUTTING_DOWN = ApiError(503, "the server is shutting down", kind="server_error", code="shutting_down")
Event = tuple[str | None, dict[str, Any]]  # (the SSE event name, when the protocol names events; data)


class ClientGone(ConnectionError):
    """The client closed its connection mid-answer."""


class Served(Protocol):
    """What the handler needs of its server (``server.OpenAIServer``)."""

    model: ChatModel
    service: Service
    api_key: str | None
    max_output_tokens: int
    log_requests: bool
    routes: dict[str, Route]
    idle_timeout_s: float
    connections: Connections
    watch: PeerWatch


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
    timeout = IO_TIMEOUT_S

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        """A reachability check (Claude Code sends ``HEAD /`` first): 200 and no body, any path."""
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log_requests:
            super().log_message(format, *args)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError) as err:  # the client reset or stalled between requests
            self.close_connection = True
            self.log_message("connection ended: %s", err.strerror or type(err).__name__)

    def handle_one_request(self) -> None:
        self.connection.settimeout(self.server.idle_timeout_s)  # waiting for the next request line
        super().handle_one_request()

    def _dispatch(self, method: str) -> None:
        self.connection.settimeout(IO_TIMEOUT_S)
        self.phase = "waiting"  # then "events" once a stream's headers are out, "done" once answered
        self.aborted = False
        self.generation: Generation | None = None
        self.write_lock = threading.RLock()
        route = self.server.routes.get(self.path.split("?", 1)[0].rstrip("/"))
        self.dialect = route.dialect if route else OPENAI
        if not self.server.connections.begin(self):
            self._fail(SHUTTING_DOWN)
            return
        try:
            self._serve(method, route)
        finally:
            self.server.connections.end(self)

    def _serve(self, method: str, route: Route | None) -> None:
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
        window = self.server.model.context_window
        if int(length) > (most := body_limit(window)):
            raise ApiError(413, f"the request body is over {most} bytes", code="body_too_large")
        try:
            raw = self.rfile.read(int(length))
        except OSError as err:
            raise ClientGone() from err
        body = parse_body(raw)
        del raw
        check_text(body, window)  # before anything is rendered or tokenized
        return body

    def abort(self) -> None:
        """End this request now (the server is shutting down): a 503, or its stream's error event."""
        self.aborted = True
        if self.generation is not None:
            self.generation.cancel()

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
        self._check_running()
        try:
            generation = Generation.start(self.server.model, self.server.service, prompt, params)
        except GrammarError as err:  # the response format's schema does not compile
            raise ApiError(400, str(err), param="response_format") from err
        except ValueError as err:  # the engine could never hold it: its KV pool is too small
            raise ApiError(400, str(err), param="max_tokens", code="context_length_exceeded") from err
        self.generation = generation
        watched = self.server.watch.watch(self.connection, self._probe, generation.cancel)
        try:
            self._check_running()  # an abort may have come before the generation was known
            if not stream:
                for _ in generation:
                    pass
                self._check_running()
                self.send_json(200, whole(generation))
                return
            self._start_events()
            for name, payload in events(generation):
                self._check_running()
                self._event(payload, name)
            self._end_events()
        finally:
            self.server.watch.unwatch(watched)
            generation.cancel()  # a no-op once finished; frees the sequence on any early exit

    def _check_running(self) -> None:
        if self.aborted:
            raise SHUTTING_DOWN

    def _probe(self) -> bool | None:
        """Bytes the client may ignore, to learn whether it is still there (``peer_watch``)."""
        if not self.write_lock.acquire(blocking=False):
            return None  # an answer is being written: that write will tell
        try:
            if self.phase == "waiting" and self.request_version == "HTTP/1.1":
                return send_probe(self.connection, CONTINUE)
            if self.phase == "events":
                return send_probe(self.connection, self._framed(b": probe\n\n"))
            return None
        finally:
            self.write_lock.release()

    def _fail(self, err: ApiError) -> None:
        self.close_connection = True  # the request body may be unread: never reuse this connection
        try:
            if self.phase == "events":
                name, payload = self.dialect.stream_error(err)
                self._event(payload, name)
                self._end_events()
            elif self.phase == "waiting":
                self.send_json(err.status, self.dialect.error_body(err))
        except ClientGone:
            pass  # nobody left to tell

    def send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        with self.write_lock:
            self.phase = "done"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 503:
                self.send_header("Retry-After", "1")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self._write(data)

    def _start_events(self) -> None:
        with self.write_lock:
            self.chunked = self.request_version != "HTTP/1.0"  # 1.0 has no chunks: the body ends at close
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            if self.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.close_connection = True
            self.end_headers()
            self.phase = "events"

    def flush_headers(self) -> None:
        try:
            super().flush_headers()
        except OSError as err:
            raise ClientGone() from err

    def _event(self, payload: dict[str, Any] | str, name: str | None = None) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        body = (f"event: {name}\n" if name else "") + f"data: {data}\n\n"
        with self.write_lock:
            self._write(self._framed(body.encode()))

    def _framed(self, raw: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(raw), raw) if self.chunked else raw

    def _end_events(self) -> None:
        with self.write_lock:
            if self.dialect.done is not None:
                self._event(self.dialect.done)
            if self.chunked:
                self._write(b"0\r\n\r\n")
            self.phase = "done"

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as err:  # broken pipe, reset, timeout: the client is gone
            raise ClientGone() from err
