"""An OpenAI-compatible chat-completions client over HTTP (``httpx``, synchronous).

``POST {base_url}/chat/completions``, streamed by default over server-sent events: visible
content goes to ``on_token`` as it arrives (every chunk calls it, with "" when it carries no
content, so a caller can stop a long tool call being written), tool-call deltas are joined by ``index``, and
reasoning (``reasoning_content`` or ``reasoning``) is kept apart. Usage comes from the final
chunk (``stream_options.include_usage``), with ``prompt_tokens_details.cached_tokens`` (or
DeepSeek's ``prompt_cache_hit_tokens``). Retries, rate-limit headers and error lines are
``transport.py``'s; the API key goes as a bearer token.

Subclasses for one provider (``deepseek.py``, ``local.py``) change the name, the defaults and
``wire_messages``: which of the agent's message fields the endpoint gets back.

Limits: prompt counts, and usage from servers that send none (``last_usage_exact`` is then
False), are estimates: there is no tokenizer on this side. Message keys starting with ``_``
(``_raw``, ``_replay``) are codeagent's own and are not sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from codeagent.agent.clients.settings import RemoteSettings
from codeagent.agent.clients.sse import events
from codeagent.agent.clients.transport import Transport
from codeagent.agent.protocol import (
    Completion,
    Message,
    ModelError,
    TokenCallback,
    ToolSchema,
    Usage,
    estimate_tokens,
)

HINTS = {
    401: "check the API key (CODEAGENT_API_KEY or OPENAI_API_KEY)",
    403: "the API key may lack access to this model",
    404: "check the base URL and the model name",
}


class RemoteClient:
    kind = "remote"
    hints = HINTS

    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        self.name = f"{self.kind}:{settings.model}"
        self.context_window = settings.context_window
        self.last_usage_exact = False
        self.url = f"{settings.base_url}/chat/completions"
        headers = {"Content-Type": "application/json"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self.transport = Transport(settings, headers, self.hints)

    def close(self) -> None:
        self.transport.close()

    def count_tokens(self, messages: list[Message], tools: list[ToolSchema]) -> tuple[int, bool]:
        return estimate_tokens(json.dumps([_public(m) for m in messages]) + json.dumps(tools)), False

    def complete(
        self, messages: list[Message], tools: list[ToolSchema], on_token: TokenCallback | None = None
    ) -> Completion:
        completion, usage_sent = self.transport.post(
            self.url, self._body(messages, tools), lambda response: _read(response, on_token)
        )
        self.last_usage_exact = usage_sent
        if not usage_sent:
            completion.usage = Usage(
                self.count_tokens(messages, tools)[0], _estimate_reply(completion.message)
            )
        return completion

    def wire_messages(self, messages: list[Message]) -> list[Message]:
        """The messages as this endpoint gets them: without codeagent's private keys."""
        return [_public(m) for m in messages]

    def _body(self, messages: list[Message], tools: list[ToolSchema]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.settings.model, "messages": self.wire_messages(messages)}
        if tools:
            body["tools"] = tools
        if self.settings.temperature is not None:
            body["temperature"] = self.settings.temperature
        if self.settings.max_tokens is not None:
            body["max_tokens"] = self.settings.max_tokens
        if self.settings.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body


def _public(message: Message) -> Message:
    """The message without codeagent's private keys (``_raw``...), which no endpoint should see."""
    return {key: value for key, value in message.items() if not key.startswith("_")}


def _read(response: httpx.Response, on_token: TokenCallback | None) -> tuple[Completion, bool]:
    if "text/event-stream" in response.headers.get("Content-Type", ""):
        return _assemble((data for _, data in events(response.iter_lines())), on_token)
    # A server may ignore "stream": true and answer with one JSON object.
    return _from_json(response, on_token)


def _assemble(chunks: Iterator[dict[str, Any]], on_token: TokenCallback | None) -> tuple[Completion, bool]:
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage: Usage | None = None
    finish = "stop"
    for chunk in chunks:
        if chunk.get("error"):
            raise ModelError(f"the endpoint reported an error mid-stream: {chunk['error']}")
        if chunk.get("usage"):
            usage = _usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            finish = choice.get("finish_reason") or finish
            if delta.get("content"):
                content.append(delta["content"])
            if on_token:  # every chunk, "" when it shows nothing: the caller may stop the reply at any chunk
                on_token(delta.get("content") or "")
            reasoning.append(delta.get("reasoning_content") or delta.get("reasoning") or "")
            for call in delta.get("tool_calls") or []:
                _merge_call(calls, call)
    raw = {"content": "".join(content), "reasoning_content": "".join(reasoning)}
    message = _message(raw, [calls[index] for index in sorted(calls)])
    return Completion(message, usage or Usage(), finish), usage is not None


def _merge_call(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    index = int(delta.get("index", len(calls)))
    call = calls.setdefault(
        index, {"id": f"call_{index}", "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if delta.get("id"):
        call["id"] = delta["id"]
    function = delta.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""


def _from_json(response: httpx.Response, on_token: TokenCallback | None) -> tuple[Completion, bool]:
    try:
        data = json.loads(response.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{response.request.url} answered with something that is not JSON") from err
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices:
        raise ModelError(f"the endpoint answered without choices: {json.dumps(data)[:300]}")
    raw = choices[0].get("message") or {}
    message = _message(raw, raw.get("tool_calls") or [])
    if on_token and message["content"]:
        on_token(message["content"])
    usage = data.get("usage")
    completion = Completion(
        message, _usage(usage) if usage else Usage(), choices[0].get("finish_reason") or "stop"
    )
    return completion, bool(usage)


def _message(raw: dict[str, Any], tool_calls: list[dict[str, Any]]) -> Message:
    message: Message = {"role": "assistant", "content": raw.get("content") or ""}
    reasoning = raw.get("reasoning_content") or raw.get("reasoning")
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _usage(raw: dict[str, Any]) -> Usage:
    details = raw.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or raw.get("prompt_cache_hit_tokens")  # the latter: DeepSeek
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0), int(cached or 0))


def _estimate_reply(message: Message) -> int:
    text = message["content"] + message.get("reasoning_content", "")
    return estimate_tokens(text + json.dumps(message.get("tool_calls", [])))
