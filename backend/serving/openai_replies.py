"""The OpenAI response shapes the server sends: whole answers and their event streams.

``chat_response`` and ``completion_response`` build a finished answer from its
``Generation``; ``chat_chunks`` and ``completion_chunks`` yield the event stream of one
answer as the generation's pieces come. Chat streams open with a role delta, send text
(content and ``reasoning_content``) as it becomes certain and each tool call as two entries
(name, then the whole arguments), then a chunk with the finish reason, then usage when
``stream_options.include_usage`` asked for it. An engine failure found at the end raises
``ApiError`` there, which the server sends as an error event (whole answers: a 500).

The requests these answer are checked in ``openai_api.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from codeagent.backend.generation import Generation, Piece
from codeagent.backend.serving.api_checks import ApiError, ApiRequest


def usage(generation: Generation) -> dict[str, Any]:
    prompt, completion = generation.prompt_tokens, generation.completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": generation.cached_tokens},
    }


def check(generation: Generation) -> None:
    if generation.error:
        raise ApiError(500, f"the engine failed: {generation.error}", "server_error", code="engine_error")


def chat_response(request: ApiRequest, generation: Generation) -> dict[str, Any]:
    check(generation)
    parsed = generation.message()
    message: dict[str, Any] = {
        "role": "assistant",
        "content": parsed.content or (None if parsed.tool_calls else ""),
    }
    if parsed.reasoning_content:
        message["reasoning_content"] = parsed.reasoning_content
    if parsed.tool_calls:
        message["tool_calls"] = parsed.tool_calls
    choice = {"index": 0, "message": message, "finish_reason": generation.finish_reason, "logprobs": None}
    return {**_head(request, "chat.completion"), "choices": [choice], "usage": usage(generation)}


def _head(request: ApiRequest, kind: str) -> dict[str, Any]:
    return {"id": request.id, "object": kind, "created": request.created, "model": request.model}


def chat_chunks(request: ApiRequest, generation: Generation) -> Iterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {**_head(request, "chat.completion.chunk"), "choices": [choice]}

    yield chunk({"role": "assistant", "content": ""})
    for piece in generation:
        if piece.reasoning or piece.content:
            yield chunk(_text_delta(piece))
        for entry in piece.tool_calls:
            yield chunk({"tool_calls": [entry]})
    check(generation)
    yield chunk({}, generation.finish_reason)
    if request.include_usage:
        yield {**_head(request, "chat.completion.chunk"), "choices": [], "usage": usage(generation)}


def _text_delta(piece: Piece) -> dict[str, Any]:
    delta = {"reasoning_content": piece.reasoning} if piece.reasoning else {}
    return {**delta, "content": piece.content} if piece.content else delta


# completions


def completion_response(request: ApiRequest, generation: Generation) -> dict[str, Any]:
    check(generation)
    choice = {
        "index": 0,
        "text": generation.text,
        "finish_reason": generation.finish_reason,
        "logprobs": None,
    }
    return {**_head(request, "text_completion"), "choices": [choice], "usage": usage(generation)}


def completion_chunks(request: ApiRequest, generation: Generation) -> Iterator[dict[str, Any]]:
    def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        return {**_head(request, "text_completion"), "choices": [choice]}

    for piece in generation:
        yield chunk(piece.content)
    check(generation)
    yield chunk("", generation.finish_reason)
    if request.include_usage:
        yield {**_head(request, "text_completion"), "choices": [], "usage": usage(generation)}
