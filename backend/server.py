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

Design: the standard library's ``ThreadingHTTPServer``, one thread per connection; the HTTP
plumbing (keys, bodies, event streams, clients that leave) is ``http_handler.py``. Every
request submits its prompt to the one ``EngineService`` (the runtime's, ``runtime.py``),
whose thread batches all live sequences together (continuous batching), so any number of
clients of any protocol share one model and its prefix cache.

With an API key, ``/v1/*`` needs ``Authorization: Bearer KEY`` or ``x-api-key: KEY`` (401
otherwise); ``/health`` stays open.

Limits: HTTP only (put a TLS proxy in front for other machines); one model per server.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from codeagent.backend import anthropic_api, anthropic_replies, responses_api, responses_replies
from codeagent.backend import openai_api as api
from codeagent.backend import openai_replies as replies
from codeagent.backend.chat.model import ChatModel
from codeagent.backend.generation import Service
from codeagent.backend.http_handler import Handler, Route


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
        self.routes = ROUTES
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


def health(handler: Handler, body: dict[str, Any]) -> None:
    handler.send_json(200, {"status": "ok", "model": handler.server.model.name})


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
    request = api.chat_request(body, handler.server.model, handler.server.max_output_tokens)
    handler.answer(
        request.prompt,
        request.params,
        request.stream,
        lambda generation: replies.chat_response(request, generation),
        lambda generation: ((None, chunk) for chunk in replies.chat_chunks(request, generation)),
    )


def completions(handler: Handler, body: dict[str, Any]) -> None:
    request = api.completion_request(body, handler.server.model, handler.server.max_output_tokens)
    handler.answer(
        request.prompt,
        request.params,
        request.stream,
        lambda generation: replies.completion_response(request, generation),
        lambda generation: ((None, chunk) for chunk in replies.completion_chunks(request, generation)),
    )


def messages(handler: Handler, body: dict[str, Any]) -> None:
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
