"""The OpenAI Responses API (``--model openai:NAME``): ``POST {base}/responses`` with a bearer
key (``OPENAI_API_KEY``); the base URL from ``--base-url``, the config, ``OPENAI_BASE_URL``,
else https://api.openai.com/v1. The request is ``responses_wire.py``'s (stateless,
``store: false``).

The answer streams as server-sent events and is put back together into the Response object:
``response.output_item.added`` opens an item (message, function call, reasoning),
``response.output_text.delta`` and ``response.function_call_arguments.delta`` fill it,
``response.output_item.done`` replaces it with the finished item, and ``response.completed``
(or ``response.incomplete``) brings the status and usage. ``response.failed`` and ``error``
end the reply with the API's message (retried when it says the server is overloaded or
rate-limited); a stream that stops before the response completes is retried from scratch.

The Response becomes an OpenAI-chat-shaped assistant message: output text joined,
reasoning as ``reasoning_content`` (a reasoning item's raw ``reasoning_text`` content, as
open-weight servers such as ``codeagent serve`` send it, else its summaries), function calls
as ``tool_calls`` (``call_id`` as the id). When the output holds reasoning items, all output
items go into ``_replay["openai-responses"]``, which the next request sends back
(``responses_wire.py``).

Usage: ``input_tokens`` (cached ones included), ``output_tokens``,
``input_tokens_details.cached_tokens``. Limits: prompt counts are estimates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx

from codeagent.agent.clients.responses_wire import reasons, request_body
from codeagent.agent.clients.settings import RemoteSettings
from codeagent.agent.clients.sse import Event, events
from codeagent.agent.clients.transport import Retryable, Transport
from codeagent.agent.clients.wire import estimate_prompt
from codeagent.agent.protocol import (
    Completion,
    Message,
    ModelError,
    TokenCallback,
    ToolSchema,
    Usage,
)

HINTS = {
    401: "check the API key (OPENAI_API_KEY)",
    403: "the API key may lack access to this model",
    404: "check the model name and the base URL",
}
RETRIED_CODES = {"server_error", "rate_limit_exceeded", "server_is_overloaded", "slow_down"}


class ResponsesClient:
    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        self.name = f"openai:{settings.model}"
        self.context_window = settings.context_window
        self.url = f"{settings.base_url}/responses"
        headers = {"Content-Type": "application/json"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self.transport = Transport(settings, headers, HINTS)

    def close(self) -> None:
        self.transport.close()

    def count_tokens(self, messages: list[Message], tools: list[ToolSchema]) -> tuple[int, bool]:
        return estimate_prompt(messages, tools), False

    def complete(
        self, messages: list[Message], tools: list[ToolSchema], on_token: TokenCallback | None = None
    ) -> Completion:
        body = request_body(self.settings.model, messages, tools, self._options())
        response = self.transport.post(self.url, body, lambda reply: _read(reply, on_token))
        return to_completion(response)

    def _options(self) -> dict[str, Any]:
        settings = self.settings
        options: dict[str, Any] = {}
        if reasons(settings.model, settings.reasoning_effort):
            options["include"] = ["reasoning.encrypted_content"]
            if settings.reasoning_effort:
                options["reasoning"] = {"effort": settings.reasoning_effort}
        if settings.max_tokens is not None:
            options["max_output_tokens"] = settings.max_tokens
        if settings.temperature is not None:
            options["temperature"] = settings.temperature
        if settings.stream:
            options["stream"] = True
        return options


def _read(reply: httpx.Response, on_token: TokenCallback | None) -> dict[str, Any]:
    if "text/event-stream" in reply.headers.get("Content-Type", ""):
        return assemble(events(reply.iter_lines()), on_token)
    try:
        response = json.loads(reply.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{reply.request.url} answered with something that is not JSON") from err
    if not isinstance(response, dict) or not isinstance(response.get("output"), list):
        raise ModelError(f"the endpoint answered without output: {json.dumps(response)[:300]}")
    _check_failed(response)
    if on_token:
        on_token(_output_text(response["output"]))
    return response


def assemble(stream: Iterable[Event], on_token: TokenCallback | None) -> dict[str, Any]:
    """The Response object a streamed reply amounts to."""
    items: dict[int, dict[str, Any]] = {}
    for name, data in stream:
        kind = data.get("type") or name
        shown = ""
        if kind == "response.output_item.added" or kind == "response.output_item.done":
            items[int(data.get("output_index", len(items)))] = dict(data.get("item") or {})
        elif kind == "response.output_text.delta":
            shown = str(data.get("delta") or "")
            _text_part(items, int(data.get("output_index", 0)))["text"] += shown
        elif kind == "response.function_call_arguments.delta":
            item = items.setdefault(int(data.get("output_index", 0)), {"type": "function_call"})
            item["arguments"] = item.get("arguments", "") + str(data.get("delta") or "")
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            response = dict(data.get("response") or {})
            _check_failed(response)
            response["output"] = [items[i] for i in sorted(items)] or response.get("output") or []
            return response
        elif kind == "error":
            error = data.get("error") if isinstance(data.get("error"), dict) else data
            _raise(error.get("code"), error.get("message"))
        if on_token:  # every event, "" when it shows nothing: the caller may stop the reply at any point
            on_token(shown)
    raise Retryable("the stream ended before the response completed")


def _text_part(items: dict[int, dict[str, Any]], index: int) -> dict[str, Any]:
    item = items.setdefault(index, {"type": "message", "role": "assistant", "content": []})
    content = item.setdefault("content", [])
    if not content or content[-1].get("type") != "output_text":
        content.append({"type": "output_text", "text": ""})
    content[-1].setdefault("text", "")
    return content[-1]


def _check_failed(response: dict[str, Any]) -> None:
    if response.get("status") == "failed" or response.get("error"):
        error = response.get("error") or {}
        _raise(error.get("code"), error.get("message") or "the response failed")


def _raise(code: Any, message: Any) -> None:
    text = f"the endpoint reported an error: {code or 'error'}: {message or ''}".rstrip(": ")
    if code in RETRIED_CODES:
        raise Retryable(text)
    raise ModelError(text)


def _output_text(output: list[dict[str, Any]]) -> str:
    return "".join(
        str(part.get("text") or "")
        for item in output
        if item.get("type") == "message"
        for part in item.get("content") or []
        if part.get("type") == "output_text"
    )


def _reasoning_text(item: dict[str, Any]) -> str:
    """A reasoning item's raw ``reasoning_text`` content (open-weight servers send it), else its summary."""
    raw = [part for part in item.get("content") or [] if part.get("type") == "reasoning_text"]
    parts = raw or item.get("summary") or []
    return "\n\n".join(str(part.get("text") or "") for part in parts if part.get("text"))


def to_completion(response: dict[str, Any]) -> Completion:
    output = [item for item in response.get("output") or [] if isinstance(item, dict)]
    message: Message = {"role": "assistant", "content": _output_text(output)}
    reasoning = [_reasoning_text(item) for item in output if item.get("type") == "reasoning"]
    if any(reasoning):
        message["reasoning_content"] = "\n\n".join(text for text in reasoning if text)
    calls = [
        {
            "id": str(item.get("call_id") or item.get("id") or ""),
            "type": "function",
            "function": {"name": str(item.get("name") or ""), "arguments": str(item.get("arguments") or "")},
        }
        for item in output
        if item.get("type") == "function_call"
    ]
    if calls:
        message["tool_calls"] = calls
    if any(item.get("type") == "reasoning" for item in output):
        message["_replay"] = {"openai-responses": output}
    return Completion(message, usage(response.get("usage") or {}), _finish(response, bool(calls)))


def _finish(response: dict[str, Any], called: bool) -> str:
    if response.get("status") == "incomplete":
        reason = str((response.get("incomplete_details") or {}).get("reason") or "length")
        return "length" if reason == "max_output_tokens" else reason
    return "tool_calls" if called else "stop"


def usage(raw: dict[str, Any]) -> Usage:
    cached = (raw.get("input_tokens_details") or {}).get("cached_tokens")
    return Usage(int(raw.get("input_tokens") or 0), int(raw.get("output_tokens") or 0), int(cached or 0))
