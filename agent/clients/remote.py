"""An OpenAI-compatible chat-completions client over HTTP (``httpx``, synchronous).

Streams by default (server-sent events): visible content goes to ``on_token`` as it
arrives, tool-call argument deltas are joined by index, reasoning text (``reasoning_content``
or ``reasoning``) is kept apart. Usage comes from the final chunk (``stream_options.
include_usage``), including ``prompt_tokens_details.cached_tokens``; a server that sends
none gets an estimate. Retries with exponential backoff and jitter on 429, 5xx and
connection errors, honouring ``Retry-After``; other 4xx fail at once with the server's
message. The API key is sent as a bearer token and never appears in errors.
Token counts before a request are estimates (no tokenizer on this side).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from codeagent.agent.protocol import (
    Completion,
    Message,
    ModelError,
    TokenCallback,
    ToolSchema,
    Usage,
    estimate_tokens,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}


@dataclass(slots=True)
class RemoteSettings:
    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    max_retries: int = 5
    backoff_s: float = 1.0
    context_window: int = 128_000
    temperature: float | None = None
    max_tokens: int | None = None
    stream: bool = True
    extra_headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(cls, model: str | None = None, base_url: str | None = None, api_key: str | None = None,
                **rest: Any) -> RemoteSettings:
        """Flags and config first, then ``CODEAGENT_*`` and ``OPENAI_*`` environment variables."""
        env = os.environ
        model = model or env.get("CODEAGENT_MODEL_NAME") or env.get("OPENAI_MODEL")
        if not model:
            raise ModelError("remote model has no name: use --model remote:NAME or set OPENAI_MODEL")
        base_url = base_url or env.get("CODEAGENT_BASE_URL") or env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        api_key = api_key or env.get("CODEAGENT_API_KEY") or env.get("OPENAI_API_KEY")
        known = {k: v for k, v in rest.items() if v is not None}
        return cls(base_url=base_url.rstrip("/"), model=model, api_key=api_key, **known)


class RemoteClient:
    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        self.name = f"remote:{settings.model}"
        self.context_window = settings.context_window
        headers = {"Content-Type": "application/json", **settings.extra_headers}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
        self._http = httpx.Client(base_url=settings.base_url, headers=headers, timeout=timeout)

    def count_tokens(self, messages: list[Message], tools: list[ToolSchema]) -> tuple[int, bool]:
        return estimate_tokens(json.dumps(messages) + json.dumps(tools)), False

    def complete(
        self, messages: list[Message], tools: list[ToolSchema], on_token: TokenCallback | None = None
    ) -> Completion:
        body = self._body(messages, tools)
        for attempt in range(self.settings.max_retries + 1):
            try:
                return self._request(body, messages, tools, on_token)
            except _Retryable as err:
                if attempt == self.settings.max_retries:
                    raise ModelError(f"{self.settings.base_url}: gave up after {attempt + 1} tries: {err}") from err
                time.sleep(err.retry_after or self._backoff(attempt))
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> float:
        return self.settings.backoff_s * (2**attempt) * (0.5 + random.random() / 2)

    def _body(self, messages: list[Message], tools: list[ToolSchema]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.settings.model, "messages": messages}
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

    def _request(self, body: dict[str, Any], messages: list[Message], tools: list[ToolSchema],
                 on_token: TokenCallback | None) -> Completion:
        try:
            with self._http.stream("POST", "/chat/completions", json=body) as response:
                _raise_for_status(response)
                if body.get("stream"):
                    completion = _assemble(_events(response), on_token)
                else:
                    completion = _from_json(json.loads(response.read()))
        except httpx.TimeoutException as err:
            raise _Retryable(f"timed out ({type(err).__name__})") from err
        except httpx.TransportError as err:
            raise _Retryable(f"connection failed: {type(err).__name__}: {err}") from err
        if not completion.usage.prompt_tokens:
            completion.usage.prompt_tokens = self.count_tokens(messages, tools)[0]
        return completion


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    response.read()
    message = _error_message(response)
    if response.status_code in RETRY_STATUSES:
        raise _Retryable(f"HTTP {response.status_code}: {message}", _retry_after(response))
    raise ModelError(f"HTTP {response.status_code} from the model endpoint: {message}")


def _error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:500]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return json.dumps(data)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return min(float(value), 120.0) if value else None
    except ValueError:
        return None


def _events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            yield json.loads(data)
        except json.JSONDecodeError as err:
            raise ModelError(f"the endpoint sent a malformed stream chunk: {data[:200]}") from err


def _assemble(chunks: Iterator[dict[str, Any]], on_token: TokenCallback | None) -> Completion:
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage, finish = Usage(), "stop"
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
                if on_token:
                    on_token(delta["content"])
            text = delta.get("reasoning_content") or delta.get("reasoning")
            if text:
                reasoning.append(text)
            for call in delta.get("tool_calls") or []:
                _merge_call(calls, call)
    message: Message = {"role": "assistant", "content": "".join(content)}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    if not usage.completion_tokens:
        usage.completion_tokens = estimate_tokens("".join(content) + json.dumps(message.get("tool_calls", [])))
    return Completion(message, usage, finish)


def _merge_call(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    index = int(delta.get("index", len(calls)))
    call = calls.setdefault(index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
    if delta.get("id"):
        call["id"] = delta["id"]
    function = delta.get("function") or {}
    if function.get("name"):
        call["function"]["name"] += function["name"]
    if function.get("arguments"):
        call["function"]["arguments"] += function["arguments"]


def _from_json(data: dict[str, Any]) -> Completion:
    choices = data.get("choices") or []
    if not choices:
        raise ModelError(f"the endpoint answered without choices: {json.dumps(data)[:300]}")
    raw = choices[0].get("message") or {}
    message: Message = {"role": "assistant", "content": raw.get("content") or ""}
    reasoning = raw.get("reasoning_content") or raw.get("reasoning")
    if reasoning:
        message["reasoning_content"] = reasoning
    if raw.get("tool_calls"):
        message["tool_calls"] = raw["tool_calls"]
    usage = _usage(data.get("usage") or {})
    return Completion(message, usage, choices[0].get("finish_reason") or "stop")


def _usage(raw: dict[str, Any]) -> Usage:
    details = raw.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
    )
