"""The HTTP server over one engine service (``codeagent serve``): its endpoints and life.

Endpoints, each a thin translation onto the one text path the in-process client also runs
(``generation.py``): a protocol module checks the request and renders its prompt, and its
replies module shapes the answer, whole or as server-sent events.
- ``POST /v1/chat/completions``, ``POST /v1/completions``: OpenAI's (``openai_api``,
  ``openai_replies``); streams are ``data: {chunk}`` lines ending with ``data: [DONE]``.
- ``POST /v1/messages``, ``POST /v1/messages/count_tokens``: Anthropic's Messages
  (``anthropic_api``, ``anthropic_replies``).
- ``POST /v1/responses``: OpenAI's Responses, stateless (``responses_api``, ``responses_replies``).
- ``GET /v1/models`` and ``GET /health``.
What a request asks for that is not served is a 400 naming the field, never silently
ignored; each protocol's errors come in its own shape.

Design: the standard library's ``ThreadingHTTPServer``, one thread per connection, at most
``max_connections`` of them (a 503 over that; ``connections.py``), a listen backlog of
``BACKLOG`` so a burst of clients connecting at once is queued, not reset; the HTTP plumbing
(keys, bodies, event streams, clients that leave) is ``http_handler.py``, and one thread
watches every request's client (``peer_watch.py``). Every
request submits its prompt to the one ``EngineService`` (the runtime's, ``runtime.py``),
whose thread batches all live sequences together (continuous batching), so any number of
clients of any protocol share one model and its prefix cache.

With an API key, ``/v1/*`` needs ``Authorization: Bearer KEY`` or ``x-api-key: KEY`` (401
otherwise); ``/health`` stays open, and reports what the service holds (requests in flight,
KV blocks free) where it can tell (``Reports``).

Stopping: ``serve_forever`` interrupted (Ctrl-C, or SIGTERM turned into one) drains before it
returns: the listening socket is closed, requests in flight get ``grace_s`` to finish, the
rest end with their protocol's error (``Connections.drain``).

Limits: HTTP only (put a TLS proxy in front for other machines); one model per server.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any, Protocol, runtime_checkable

from codeagent.backend.chat.model import ChatModel
from codeagent.backend.generation import Service
from codeagent.backend.serving import anthropic_api, anthropic_replies, responses_api, responses_replies
from codeagent.backend.serving import openai_api as api
from codeagent.backend.serving import openai_replies as replies
from codeagent.backend.serving.api_checks import ApiError, output_limit
from codeagent.backend.serving.connections import Connections, linger_close, refuse
from codeagent.backend.serving.http_handler import OPENAI, Handler, Route
from codeagent.backend.serving.peer_watch import PeerWatch

BACKLOG = 128


@runtime_checkable
class Reports(Protocol):
    """A service that can say what it holds (``EngineService``), for ``/health``."""

    def health(self) -> dict[str, int]: ...


class OpenAIServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        model: ChatModel,
        service: Service,
        api_key: str | None = None,
        max_output_tokens: int = 4096,
        log_requests: bool = False,
        max_connections: int = 256,
        idle_timeout_s: float = 30.0,
        grace_s: float = 20.0,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.model = model
        self.service = service
        self.api_key = api_key or None
        self.max_output_tokens = max_output_tokens
        self.log_requests = log_requests
        self.routes = ROUTES
        self.idle_timeout_s, self.grace_s = idle_timeout_s, grace_s
        self.connections = Connections(max_connections)
        self.watch = PeerWatch()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.connections.take():
            super().process_request(request, client_address)
        elif self.connections.take_refusal():
            threading.Thread(
                target=refuse, args=(request, self._refusal, self.connections.refused), daemon=True
            ).start()
        else:
            request.close()  # far over the limit: not even a refusal

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.give_back()

    def shutdown_request(self, request: Any) -> None:
        linger_close(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        err = sys.exc_info()[1]
        if not isinstance(err, (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # a bug: its traceback
        elif self.log_requests:
            print(f"codeagent serve: {client_address[0]}: connection ended: {err}", file=sys.stderr)

    def _refusal(self, head: bytes) -> bytes:
        """The 503 for a connection over the limit, in the shape of the protocol it asked for."""
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        route = self.routes.get(line[1].split("?", 1)[0].rstrip("/")) if len(line) > 1 else None
        err = ApiError(
            503,
            f"the server is at its limit of {self.connections.limit} connections; retry shortly",
            kind="server_error",
            code="overloaded",
        )
        body = json.dumps((route.dialect if route else OPENAI).error_body(err)).encode()
        head_lines = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head_lines.encode() + body

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until ``shutdown()``, or until interrupted: then drain and raise the interrupt."""
        try:
            super().serve_forever(poll_interval)
        except KeyboardInterrupt:
            self.drain()
            raise

    def drain(self) -> tuple[int, int]:
        """Stop accepting, let requests in flight finish within ``grace_s``, end the rest with
        their protocol's error. Returns (finished, aborted)."""
        self.socket.close()
        finished, aborted = self.connections.drain(self.grace_s)
        print(
            f"codeagent serve: drained: {finished} requests finished, {aborted} ended with an error",
            file=sys.stderr,
            flush=True,
        )
        return finished, aborted

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


def health(handler: Handler, body: dict[str, Any]) -> None:
    service = handler.server.service
    counts = service.health() if isinstance(service, Reports) else {}
    handler.send_json(200, {"status": "ok", "model": handler.server.model.name, **counts})


def models(handler: Handler, body: dict[str, Any]) -> None:
    model = handler.server.model
    card = {
        "id": model.name,
        "object": "model",
        "created": 0,
        "owned_by": "codeagent",
        "max_model_len": model.context_window,
    }
    handler.send_json(200, {"object": "list", "data": [card]})


def chat(handler: Handler, body: dict[str, Any]) -> None:
    output_limit(body, "max_tokens", handler.server.model)
    output_limit(body, "max_completion_tokens", handler.server.model)
    request = api.chat_request(body, handler.server.model, handler.server.max_output_tokens)
    handler.answer(
        request.prompt,
        request.params,
        request.stream,
        lambda generation: replies.chat_response(request, generation),
        lambda generation: ((None, chunk) for chunk in replies.chat_chunks(request, generation)),
    )


def completions(handler: Handler, body: dict[str, Any]) -> None:
    output_limit(body, "max_tokens", handler.server.model)
    request = api.completion_request(body, handler.server.model, handler.server.max_output_tokens)
    handler.answer(
        request.prompt,
        request.params,
        request.stream,
        lambda generation: replies.completion_response(request, generation),
        lambda generation: ((None, chunk) for chunk in replies.completion_chunks(request, generation)),
    )


def messages(handler: Handler, body: dict[str, Any]) -> None:
    output_limit(body, "max_tokens", handler.server.model)
    request = anthropic_api.messages_request(body, handler.server.model)
    handler.answer(
        request.prompt,
        request.params,
        request.stream,
        lambda generation: anthropic_replies.message(request, generation),
        lambda generation: anthropic_replies.events(request, generation),
    )


def count_tokens(handler: Handler, body: dict[str, Any]) -> None:
    prompt = anthropic_api.count_prompt(body, handler.server.model)
    handler.send_json(200, {"input_tokens": len(prompt.ids)})


def responses(handler: Handler, body: dict[str, Any]) -> None:
    output_limit(body, "max_output_tokens", handler.server.model)
    request = responses_api.responses_request(body, handler.server.model, handler.server.max_output_tokens)
    handler.answer(
        request.prompt,
        request.params,
        request.stream,
        lambda generation: responses_replies.response(request, generation),
        lambda generation: responses_replies.events(request, generation),
    )


ROUTES: dict[str, Route] = {
    "/health": Route("GET", health),
    "/v1/models": Route("GET", models),
    "/v1/chat/completions": Route("POST", chat),
    "/v1/completions": Route("POST", completions),
    "/v1/messages": Route("POST", messages, anthropic_replies.DIALECT),
    "/v1/messages/count_tokens": Route("POST", count_tokens, anthropic_replies.DIALECT),
    "/v1/responses": Route("POST", responses, responses_replies.DIALECT),
}


def serve(server: OpenAIServer) -> threading.Thread:
    """Run ``server`` on a daemon thread; ``server.shutdown()`` stops it."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return thread
