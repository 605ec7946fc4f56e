"""The Anthropic Messages answers the server sends: whole messages, their event streams, errors.

``message`` builds a finished ``message`` from its ``Generation``: a ``thinking`` block when
the model reasoned, a ``text`` block when it wrote text, a ``tool_use`` block per call
(``input`` the parsed arguments), the ``stop_reason`` (``tool_use``, ``stop_sequence`` with
the string that matched, ``max_tokens``, else ``end_turn``) and ``usage``. ``events`` yields
the stream of one message as its pieces come, in the documented order: ``message_start``;
per block ``content_block_start``, deltas (``thinking_delta``, ``text_delta``, one
``input_json_delta`` holding a call's whole arguments, since calls come out when their block
closes) and ``content_block_stop``; then ``message_delta`` with the stop reason and the
final usage, and ``message_stop``.

Usage follows Anthropic's accounting: ``input_tokens`` are the prompt tokens that were not
read from the prefix cache, ``cache_read_input_tokens`` those that were; nothing is reported
as cache creation (blocks are cached as a side effect, at no extra cost). At
``message_start`` the cached count is not known yet: it says the whole prompt is input, and
``message_delta`` carries the final counts (clients take its totals).

Thinking blocks carry an empty ``signature``: there is nothing to verify when they come back.
Errors are ``{"type": "error", "error": {"type", "message"}}`` with the HTTP status's error
type; after a stream has begun, one ``error`` event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from codeagent.backend.generation import Generation, whole_calls
from codeagent.backend.serving.api_checks import ApiError, ApiRequest
from codeagent.backend.serving.http_handler import Dialect, Event
from codeagent.backend.serving.openai_replies import check

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error_body(err: ApiError) -> dict[str, Any]:
    default = "api_error" if err.status >= 500 else "invalid_request_error"
    return {"type": "error", "error": {"type": ERROR_TYPES.get(err.status, default), "message": err.message}}


DIALECT = Dialect(error_body, lambda err: ("error", error_body(err)), done=None)


def usage(generation: Generation) -> dict[str, Any]:
    cached = generation.cached_tokens
    return {
        "input_tokens": generation.prompt_tokens - cached,
        "output_tokens": generation.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def stop_reason(generation: Generation) -> str:
    reason = generation.finish_reason
    if reason == "tool_calls":
        return "tool_use"
    if generation.stop_string is not None:
        return "stop_sequence"
    return "max_tokens" if reason == "length" else "end_turn"


def _head(request: ApiRequest, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": request.id,
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": content,
        "stop_reason": None,
        "stop_sequence": None,
    }


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call["function"]
    return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": _input(function)}


def _input(function: dict[str, Any]) -> dict[str, Any]:
    value = json.loads(function["arguments"] or "{}")
    return value if isinstance(value, dict) else {"arguments": value}


def message(request: ApiRequest, generation: Generation) -> dict[str, Any]:
    check(generation)
    parsed = generation.message()
    content: list[dict[str, Any]] = []
    if parsed.reasoning_content:
        content.append({"type": "thinking", "thinking": parsed.reasoning_content, "signature": ""})
    if parsed.content:
        content.append({"type": "text", "text": parsed.content})
    content += [_tool_use(call) for call in parsed.tool_calls]
    return {
        **_head(request, content),
        "stop_reason": stop_reason(generation),
        "stop_sequence": generation.stop_string,
        "usage": usage(generation),
    }


class _Blocks:
    """The stream's content blocks: which one is open, and the next index."""

    def __init__(self) -> None:
        self.index = -1
        self.open: str | None = None

    def _start(self, block: dict[str, Any]) -> Iterator[Event]:
        yield from self.close()
        self.index += 1
        self.open = block["type"]
        yield (
            "content_block_start",
            {"type": "content_block_start", "index": self.index, "content_block": block},
        )

    def _delta(self, delta: dict[str, Any]) -> Event:
        return "content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}

    def close(self) -> Iterator[Event]:
        if self.open is not None:
            yield "content_block_stop", {"type": "content_block_stop", "index": self.index}
            self.open = None

    def thinking(self, text: str) -> Iterator[Event]:
        if self.open != "thinking":
            yield from self._start({"type": "thinking", "thinking": "", "signature": ""})
        yield self._delta({"type": "thinking_delta", "thinking": text})

    def text(self, text: str) -> Iterator[Event]:
        if self.open != "text":
            yield from self._start({"type": "text", "text": ""})
        yield self._delta({"type": "text_delta", "text": text})

    def tool_use(self, call: dict[str, Any]) -> Iterator[Event]:
        name = call["function"]["name"]
        yield from self._start({"type": "tool_use", "id": call["id"], "name": name, "input": {}})
        yield self._delta({"type": "input_json_delta", "partial_json": call["function"]["arguments"]})
        yield from self.close()


def events(request: ApiRequest, generation: Generation) -> Iterator[Event]:
    start_usage = {"input_tokens": len(request.prompt.ids), "output_tokens": 0}
    start = {**_head(request, []), "usage": {**start_usage, "cache_read_input_tokens": 0}}
    yield "message_start", {"type": "message_start", "message": start}
    blocks = _Blocks()
    for piece in generation:
        if piece.reasoning:
            yield from blocks.thinking(piece.reasoning)
        if piece.content:
            yield from blocks.text(piece.content)
        for call in whole_calls(piece):
            yield from blocks.tool_use(call)
    yield from blocks.close()
    check(generation)
    delta = {"stop_reason": stop_reason(generation), "stop_sequence": generation.stop_string}
    yield "message_delta", {"type": "message_delta", "delta": delta, "usage": usage(generation)}
    yield "message_stop", {"type": "message_stop"}
