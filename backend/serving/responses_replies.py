"""The OpenAI Responses answers the server sends: whole responses and their event streams.

``response`` builds a finished ``response`` object from its ``Generation``: its ``output``
holds a ``reasoning`` item when the model reasoned (its text as ``reasoning_text`` content;
no summary, no encrypted content), a ``message`` item with one ``output_text`` part when it
wrote text, and per call a ``function_call`` item, or a ``custom_tool_call`` item (its
``input`` the call's one string) for a custom tool, with the ``namespace`` of a tool that
came in one (``responses_tools.py``); ``status`` is ``completed``, or
``incomplete`` with ``incomplete_details.reason: max_output_tokens`` when the length limit
ended it. ``usage`` counts the whole prompt as ``input_tokens`` and the part read from the
prefix cache as ``input_tokens_details.cached_tokens``.

``events`` yields the stream of one response, every event with its ``sequence_number``:
``response.created`` and ``response.in_progress``; per output item
``response.output_item.added``, then for reasoning ``response.reasoning_text.delta`` /
``.done``, for a message ``response.content_part.added``, ``response.output_text.delta``s,
``response.output_text.done`` and ``response.content_part.done``, for a call one
``response.function_call_arguments.delta`` holding the whole arguments (calls come out when
their block closes) and ``response.function_call_arguments.done`` (for a custom tool,
``response.custom_tool_call_input.delta`` and ``.done``); then
``response.output_item.done``; last ``response.completed`` (or ``response.incomplete``).
An engine failure mid-stream is an ``error`` event followed by ``response.failed``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

from codeagent.backend.generation import Generation, whole_calls
from codeagent.backend.serving.api_checks import ApiError, ApiRequest
from codeagent.backend.serving.http_handler import Dialect, Event
from codeagent.backend.serving.openai_replies import check
from codeagent.backend.serving.responses_tools import CUSTOM_INPUT, Shape, call_shapes


def _stream_error(err: ApiError) -> Event:
    return "error", {"type": "error", "code": err.code, "message": err.message, "param": err.param}


DIALECT = Dialect(stream_error=_stream_error, done=None)


def _item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def usage(generation: Generation) -> dict[str, Any]:
    prompt, completion = generation.prompt_tokens, generation.completion_tokens
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": generation.cached_tokens},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _envelope(request: ApiRequest, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": request.id,
        "object": "response",
        "created_at": request.created,
        "status": status,
        "model": request.model,
        "output": output,
        "error": None,
        "incomplete_details": None,
        "previous_response_id": None,
        "store": False,
        "text": {"format": {"type": "text"}},
        "usage": None,
        **request.echo,
    }


def _finished(request: ApiRequest, generation: Generation, output: list[dict[str, Any]]) -> dict[str, Any]:
    incomplete = generation.finish_reason == "length"
    answer = _envelope(request, "incomplete" if incomplete else "completed", output)
    answer["usage"] = usage(generation)
    if incomplete:
        answer["incomplete_details"] = {"reason": "max_output_tokens"}
    return answer


def _reasoning(text: str) -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": _item_id("rs"),
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def _message(text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    content = [part] if status == "completed" else []
    return {
        "type": "message",
        "id": _item_id("msg"),
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _call(call: dict[str, Any], shape: Shape, opened: bool = False) -> dict[str, Any]:
    """A call's output item: whole, or ``opened`` (its arguments still to come) to start a stream."""
    function = call["function"]
    item = {"type": "function_call", "id": _item_id("fc"), "call_id": call["id"], "name": function["name"]}
    if shape.custom:
        item.update(type="custom_tool_call", id=_item_id("ctc"), input="" if opened else _custom_input(call))
    else:
        item["arguments"] = "" if opened else function["arguments"]
    if shape.namespace is not None:
        item["namespace"] = shape.namespace
    item["status"] = "in_progress" if opened else "completed"
    return item


def _custom_input(call: dict[str, Any]) -> str:
    """A freeform tool's text: the one ``input`` argument it was shown with, else all the arguments."""
    arguments = call["function"]["arguments"]
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return arguments
    given = value.get(CUSTOM_INPUT) if isinstance(value, dict) else None
    return given if isinstance(given, str) and len(value) == 1 else arguments


def _shapes(request: ApiRequest) -> dict[str, Shape]:
    return call_shapes(request.echo.get("tools") or [])


def response(request: ApiRequest, generation: Generation) -> dict[str, Any]:
    check(generation)
    parsed = generation.message()
    output = [_reasoning(parsed.reasoning_content)] if parsed.reasoning_content else []
    output += [_message(parsed.content)] if parsed.content else []
    shapes = _shapes(request)
    output += [_call(call, shapes.get(call["function"]["name"], Shape())) for call in parsed.tool_calls]
    return _finished(request, generation, output)


class _Stream:
    """The stream's output items: which one is open, numbered events."""

    def __init__(self, request: ApiRequest) -> None:
        self.request = request
        self.shapes = _shapes(request)
        self.number = -1
        self.output: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None
        self.text = ""

    def event(self, kind: str, **fields: Any) -> Event:
        self.number += 1
        return kind, {"type": kind, "sequence_number": self.number, **fields}

    def _at(self) -> dict[str, Any]:
        assert self.open is not None
        return {"item_id": self.open["id"], "output_index": len(self.output) - 1}

    def _add(self, item: dict[str, Any]) -> Iterator[Event]:
        yield from self.close()
        self.output.append(item)
        self.open, self.text = item, ""
        yield self.event("response.output_item.added", output_index=len(self.output) - 1, item=item)

    def close(self) -> Iterator[Event]:
        item = self.open
        if item is None:
            return
        if item["type"] == "reasoning":
            item["content"] = [{"type": "reasoning_text", "text": self.text}]
            yield self.event("response.reasoning_text.done", **self._at(), content_index=0, text=self.text)
        elif item["type"] == "message":
            part = {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}
            yield self.event(
                "response.output_text.done", **self._at(), content_index=0, text=self.text, logprobs=[]
            )
            yield self.event("response.content_part.done", **self._at(), content_index=0, part=part)
            item.update(status="completed", content=[part])
        yield self.event("response.output_item.done", output_index=len(self.output) - 1, item=item)
        self.open = None

    def reasoning(self, text: str) -> Iterator[Event]:
        if self.open is None or self.open["type"] != "reasoning":
            yield from self._add({**_reasoning(""), "content": []})
        self.text += text
        yield self.event("response.reasoning_text.delta", **self._at(), content_index=0, delta=text)

    def content(self, text: str) -> Iterator[Event]:
        if self.open is None or self.open["type"] != "message":
            yield from self._add(_message("", "in_progress"))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            yield self.event("response.content_part.added", **self._at(), content_index=0, part=part)
        self.text += text
        yield self.event("response.output_text.delta", **self._at(), content_index=0, delta=text, logprobs=[])

    def call(self, call: dict[str, Any]) -> Iterator[Event]:
        shape = self.shapes.get(call["function"]["name"], Shape())
        item = _call(call, shape)
        yield from self._add(_call(call, shape, opened=True))
        if shape.custom:
            text = item["input"]
            yield self.event("response.custom_tool_call_input.delta", **self._at(), delta=text)
            yield self.event("response.custom_tool_call_input.done", **self._at(), input=text)
        else:
            text = item["arguments"]
            yield self.event("response.function_call_arguments.delta", **self._at(), delta=text)
            name = item["name"]
            yield self.event("response.function_call_arguments.done", **self._at(), name=name, arguments=text)
        assert self.open is not None
        self.open.update({key: item[key] for key in ("input", "arguments", "status") if key in item})
        yield from self.close()


def events(request: ApiRequest, generation: Generation) -> Iterator[Event]:
    stream = _Stream(request)
    yield stream.event("response.created", response=_envelope(request, "in_progress", []))
    yield stream.event("response.in_progress", response=_envelope(request, "in_progress", []))
    for piece in generation:
        if piece.reasoning:
            yield from stream.reasoning(piece.reasoning)
        if piece.content:
            yield from stream.content(piece.content)
        for call in whole_calls(piece):
            yield from stream.call(call)
    yield from stream.close()
    try:
        check(generation)
    except ApiError as err:
        yield stream.event("error", code=err.code, message=err.message, param=err.param)
        failed = {
            **_envelope(request, "failed", stream.output),
            "error": {"code": "server_error", "message": err.message},
        }
        yield stream.event("response.failed", response=failed)
        return
    answer = _finished(request, generation, stream.output)
    kind = "response.incomplete" if answer["status"] == "incomplete" else "response.completed"
    yield stream.event(kind, response=answer)
