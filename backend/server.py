"""An OpenAI-compatible HTTP server over one engine service (``codeagent serve``).

Endpoints: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (JSON, or server-sent
events with ``stream: true``: ``data: {chunk}`` lines ending with ``data: [DONE]``),
``GET /v1/models`` and ``GET /health``. Requests are checked by ``openai_api``; what they ask
for that is not served is a 400 naming the field, never silently ignored. Each endpoint is a
thin translation: the request's prompt goes through the one text path the in-process client
also runs (``generation.py``), and ``openai_replies`` shapes the answer.

Design: the standard library's ``ThreadingHTTPServer``, one thread per connection, HTTP/1.1
keep-alive; event streams use chunked transfer encoding. Every request submits its prompt
to the one ``EngineService`` (the runtime's, ``runtime.py``), whose thread batches all live sequences together (continuous
batching), so any number of clients share one model. A client that goes away cancels its
sequence: a failed write does it, and so does a watcher thread per request that notices the
peer closing its socket (EOF) while nothing is being written, as with a non-streaming
request or a tool-call block still held back.

With an API key, ``/v1/*`` needs ``Authorization: Bearer KEY`` (401 otherwise); ``/health``
stays open. Errors are OpenAI-shaped JSON (``{"error": {message, type, param, code}}``); an
internal failure is a 500 with its traceback on the server's stderr, never to the client.
A failure after an event stream has begun is sent as one ``data: {"error": ...}`` event.

Limits: HTTP only (put a TLS proxy in front for other machines); one model per server;
request bodies up to 32 MiB, sent with Content-Length.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import select
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from codeagent.backend import openai_api as api
from codeagent.backend import openai_replies as replies
from codeagent.backend.chat.model import ChatModel
from codeagent.backend.generation import Generation, Service
from codeagent.backend.openai_api import ApiError

MAX_BODY = 32 * 2**20


class ClientGone(Exception):
    """The client closed its connection mid-answer."""


class OpenAIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        model: ChatModel,
        service: Service,
        api_key: str | None = None,
        max_output_tokens: int = 4096,
        log_requests: bool = False,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.model = model
        self.service = service
        self.api_key = api_key or None
        self.max_output_tokens = max_output_tokens
        self.log_requests = log_requests
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/v1"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """What to shout when the server is reachable from other machines with no key."""
    if is_loopback(host) or api_key:
        return None
    return (
        f"WARNING: serving on {host} without an API key: anyone who can reach this address can "
        "use the model. Set --api-key or CODEAGENT_API_KEY, or bind 127.0.0.1."
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: OpenAIServer
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
        try:
            route = ROUTES.get(self.path.split("?", 1)[0].rstrip("/"))
            if route is None:
                raise ApiError(404, f"no such endpoint: {method} {self.path}", code="not_found")
            if route[0] != method:
                raise ApiError(405, f"{self.path} takes {route[0]}, not {method}", code="method_not_allowed")
            if self.path.startswith("/v1/"):
                self._authorize()
            route[1](self, self._body() if method == "POST" else {})
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
        given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise ApiError(
                401, "missing or wrong API key (Authorization: Bearer KEY)", code="invalid_api_key"
            )

    def _body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ApiError(411, "the request needs a Content-Length header", code="length_required")
        if int(length) > MAX_BODY:
            raise ApiError(413, f"the request body is over {MAX_BODY} bytes", code="body_too_large")
        return api.parse_body(self.rfile.read(int(length)))

    # responses

    def _fail(self, err: ApiError) -> None:
        self.close_connection = True  # the request body may be unread: never reuse this connection
        try:
            if self.started:
                self._event({"error": err.payload()["error"]})
                self._end_events()
            else:
                self._json(err.status, err.payload())
        except ClientGone:
            pass  # nobody left to tell

    def _json(self, status: int, payload: dict[str, Any]) -> None:
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

    def _event(self, payload: dict[str, Any] | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        body = f"data: {data}\n\n".encode()
        self._write(b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body)

    def _end_events(self) -> None:
        self._event("[DONE]")
        if self.chunked:
            self._write(b"0\r\n\r\n")

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as err:  # broken pipe, reset, timeout: the client is gone
            raise ClientGone() from err

    # endpoints

    def health(self, body: dict[str, Any]) -> None:
        self._json(200, {"status": "ok", "model": self.server.model.name})

    def models(self, body: dict[str, Any]) -> None:
        model = self.server.model
        card = {
            "id": model.name,
            "object": "model",
            "created": 0,
            "owned_by": "codeagent",
            "max_model_len": model.context_window,
        }
        self._json(200, {"object": "list", "data": [card]})

    def chat(self, body: dict[str, Any]) -> None:
        request = api.chat_request(body, self.server.model, self.server.max_output_tokens)
        self._answer(request, replies.chat_response, replies.chat_chunks)

    def completions(self, body: dict[str, Any]) -> None:
        request = api.completion_request(body, self.server.model, self.server.max_output_tokens)
        self._answer(request, replies.completion_response, replies.completion_chunks)

    def _answer(self, request: api.ApiRequest, respond: Callable, chunks: Callable) -> None:
        try:
            generation = Generation.start(
                self.server.model, self.server.service, request.prompt, request.params
            )
        except ValueError as err:  # the engine could never hold it: its KV pool is too small
            raise ApiError(400, str(err), param="max_tokens", code="context_length_exceeded") from err
        try:
            with self._watch(generation):
                if not request.stream:
                    for _ in generation:
                        pass
                    self._json(200, respond(request, generation))
                    return
                self._start_events()
                for event in chunks(request, generation):
                    self._event(event)
                self._end_events()
        finally:
            generation.cancel()  # a no-op once finished; frees the sequence on any early exit

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


ROUTES: dict[str, tuple[str, Callable[[Handler, dict[str, Any]], None]]] = {
    "/health": ("GET", Handler.health),
    "/v1/models": ("GET", Handler.models),
    "/v1/chat/completions": ("POST", Handler.chat),
    "/v1/completions": ("POST", Handler.completions),
}


def serve(server: OpenAIServer) -> threading.Thread:
    """Run ``server`` on a daemon thread; ``server.shutdown()`` stops it."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return thread
