"""The Anthropic Messages API (``--model anthropic:NAME``): ``POST {base}/v1/messages`` with
``x-api-key`` (``ANTHROPIC_API_KEY``) and ``anthropic-version: 2023-06-01``; the base URL from
``--base-url``, the config, ``ANTHROPIC_BASE_URL``, else https://api.anthropic.com.

The request is ``anthropic_wire.py``'s. The answer streams as server-sent events and is put
back together into the Messages object the API would have answered without streaming:
``message_start`` (id, usage so far), ``content_block_start``/``_delta``/``_stop`` (text,
``tool_use`` whose ``input_json_delta`` pieces are joined and parsed at the block's end,
``thinking`` with its ``signature``, ``redacted_thinking``), ``message_delta`` (stop reason,
final usage), ``message_stop``; ``ping`` is ignored. An ``error`` event ends the reply: an
overloaded or rate-limited one is retried like a 529, others become a ``ModelError``, as
does a stream that stops before ``message_stop`` (after the retries).

That object becomes an OpenAI-shaped assistant message: text joined, thinking as
``reasoning_content``, ``tool_use`` blocks as ``tool_calls``. When the reply holds thinking,
its blocks go into ``_replay["anthropic"]`` so the next request sends them back unchanged
with their signatures, as the API requires while a tool-use turn goes on.

Usage: Anthropic's ``input_tokens`` leaves out the tokens read from or written to the cache,
so ``prompt_tokens`` is the sum of the three, ``cached_tokens`` is
``cache_read_input_tokens`` and ``cache_creation_tokens`` is ``cache_creation_input_tokens``.

Extended thinking is opt-in (``thinking_budget``; ``CODEAGENT_THINKING_BUDGET``).
``max_tokens`` is required by the API: 8192 unless set, plus the thinking budget. Limits: a
conversation switched to this client mid-turn from another model carries no thinking blocks,
which the API refuses with thinking on; prompt counts are estimates (no tokenizer here).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx

from codeagent.agent.clients.anthropic_wire import request_body
from codeagent.agent.clients.settings import RemoteSettings
from codeagent.agent.clients.sse import Event, events
from codeagent.agent.clients.transport import Retryable, Transport
from codeagent.agent.clients.wire import estimate_prompt, text_of
from codeagent.agent.protocol import (
    Completion,
    Message,
    ModelError,
    TokenCallback,
    ToolSchema,
    Usage,
)

VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 8192
HINTS = {
    401: "check the API key (ANTHROPIC_API_KEY)",
    403: "the API key may lack access to this model",
    404: "check the model name, e.g. claude-sonnet-4-5, and the base URL",
    413: "the request is too large",
}
RETRIED_ERRORS = {"overloaded_error", "rate_limit_error", "api_error"}
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


class AnthropicClient:
    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        self.name = f"anthropic:{settings.model}"
        self.context_window = settings.context_window
        self.url = f"{settings.base_url}/v1/messages"
        headers = {"Content-Type": "application/json", "anthropic-version": VERSION}
        if settings.api_key:
            headers["x-api-key"] = settings.api_key
        self.transport = Transport(settings, headers, HINTS)

    def close(self) -> None:
        self.transport.close()

    def count_tokens(self, messages: list[Message], tools: list[ToolSchema]) -> tuple[int, bool]:
        return estimate_prompt(messages, tools), False

    def complete(
        self, messages: list[Message], tools: list[ToolSchema], on_token: TokenCallback | None = None
    ) -> Completion:
        body = request_body(self.settings.model, messages, tools, self._options())
        reply = self.transport.post(self.url, body, lambda response: _read(response, on_token))
        return to_completion(reply)

    def _options(self) -> dict[str, Any]:
        settings = self.settings
        budget = settings.thinking_budget
        options: dict[str, Any] = {"max_tokens": (settings.max_tokens or DEFAULT_MAX_TOKENS) + (budget or 0)}
        if budget:
            options["thinking"] = {"type": "enabled", "budget_tokens": budget}
        elif settings.temperature is not None:  # the API refuses a temperature with thinking on
            options["temperature"] = settings.temperature
        if settings.stream:
            options["stream"] = True
        return options


def _read(response: httpx.Response, on_token: TokenCallback | None) -> dict[str, Any]:
    if "text/event-stream" in response.headers.get("Content-Type", ""):
        return assemble(events(response.iter_lines()), on_token)
    try:
        reply = json.loads(response.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{response.request.url} answered with something that is not JSON") from err
    if not isinstance(reply, dict) or not isinstance(reply.get("content"), list):
        raise ModelError(f"the endpoint answered without content: {json.dumps(reply)[:300]}")
    if on_token:
        on_token(text_of([b for b in reply["content"] if b.get("type") == "text"]))
    return reply


def assemble(stream: Iterable[Event], on_token: TokenCallback | None) -> dict[str, Any]:
    """The Messages object a streamed reply amounts to."""
    reply: dict[str, Any] = {"content": [], "usage": {}}
    blocks: dict[int, dict[str, Any]] = {}
    pieces: dict[int, list[str]] = {}  # tool_use input JSON as it arrives
    for name, data in stream:
        kind = data.get("type") or name
        shown = ""
        if kind == "message_start":
            reply.update({k: v for k, v in (data.get("message") or {}).items() if k != "content"})
        elif kind == "content_block_start":
            index = int(data.get("index", len(blocks)))
            blocks[index] = dict(data.get("content_block") or {})
            pieces[index] = []
        elif kind == "content_block_delta":
            shown = _apply_delta(blocks, pieces, int(data.get("index", 0)), data.get("delta") or {})
        elif kind == "content_block_stop":
            _finish_block(blocks, pieces, int(data.get("index", 0)))
        elif kind == "message_delta":
            reply.update(data.get("delta") or {})
            counts = {k: v for k, v in (data.get("usage") or {}).items() if v is not None}
            reply["usage"] = {**(reply.get("usage") or {}), **counts}
        elif kind == "message_stop":
            reply["content"] = [blocks[index] for index in sorted(blocks)]
            return reply
        elif kind == "error":
            _raise(data.get("error") or {})
        if on_token:  # every event, "" when it shows nothing: the caller may stop the reply at any point
            on_token(shown)
    raise Retryable("the stream ended before message_stop")


def _apply_delta(
    blocks: dict[int, dict[str, Any]], pieces: dict[int, list[str]], index: int, delta: dict
) -> str:
    block = blocks.setdefault(index, {"type": "text", "text": ""})
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = block.get("text", "") + delta.get("text", "")
        return str(delta.get("text", ""))
    if kind == "input_json_delta":
        pieces.setdefault(index, []).append(delta.get("partial_json", ""))
    elif kind == "thinking_delta":
        block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
    elif kind == "signature_delta":
        block["signature"] = block.get("signature", "") + delta.get("signature", "")
    return ""


def _finish_block(blocks: dict[int, dict[str, Any]], pieces: dict[int, list[str]], index: int) -> None:
    text = "".join(pieces.get(index) or [])
    if not text or index not in blocks:
        return
    try:
        blocks[index]["input"] = json.loads(text)
    except json.JSONDecodeError as err:
        raise ModelError(f"the endpoint sent tool input that is not JSON: {text[:200]}") from err


def _raise(error: dict[str, Any]) -> None:
    kind = str(error.get("type") or "error")
    message = f"the endpoint reported an error mid-stream: {kind}: {error.get('message') or ''}".rstrip(": ")
    if kind in RETRIED_ERRORS:
        raise Retryable(message)
    raise ModelError(message)


def to_completion(reply: dict[str, Any]) -> Completion:
    blocks = [b for b in reply.get("content") or [] if isinstance(b, dict)]
    message: Message = {
        "role": "assistant",
        "content": text_of([b for b in blocks if b.get("type") == "text"]),
    }
    thinking = "\n\n".join(b.get("thinking", "") for b in blocks if b.get("type") == "thinking")
    if thinking:
        message["reasoning_content"] = thinking
    calls = [
        {
            "id": b.get("id", ""),
            "type": "function",
            "function": {"name": b.get("name", ""), "arguments": json.dumps(b.get("input") or {})},
        }
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    if calls:
        message["tool_calls"] = calls
    if any(b.get("type") in ("thinking", "redacted_thinking") for b in blocks):
        message["_replay"] = {"anthropic": blocks}
    reason = str(reply.get("stop_reason") or "end_turn")
    return Completion(message, usage(reply.get("usage") or {}), STOP_REASONS.get(reason, reason))


def usage(raw: dict[str, Any]) -> Usage:
    read = int(raw.get("cache_read_input_tokens") or 0)
    written = int(raw.get("cache_creation_input_tokens") or 0)
    prompt = int(raw.get("input_tokens") or 0) + read + written
    return Usage(prompt, int(raw.get("output_tokens") or 0), read, written)
