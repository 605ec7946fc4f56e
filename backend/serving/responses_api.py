"""The OpenAI Responses requests the server takes, checked and translated to one prompt.

``responses_request`` turns a ``POST /v1/responses`` body into an ``ApiRequest``. The
``input`` (a string, or a list of items) becomes the OpenAI-shaped conversation the chat
template takes (``chat/prompt.py``), after ``instructions`` as a system message:
``message`` items (roles user, system, developer, assistant; content a string or text
parts) become messages; an assistant turn's ``reasoning`` items (their ``reasoning_text``
content, else their summary), assistant text and ``function_call`` items join into one
assistant message with ``reasoning_content``, content and tool calls, so a reply sent back is
recognised and rendered as the model wrote it (``chat/continuity.py``); a
``custom_tool_call`` joins as a call whose one argument is its ``input``; each
``function_call_output`` and ``custom_tool_call_output`` becomes a tool message.

Stateless: nothing is stored. ``store`` is accepted (and answered as ``false``);
``previous_response_id``, ``conversation``, ``item_reference`` items and ``background`` are
a 400, since the conversation must come whole in ``input``.

Served: ``max_output_tokens`` (without it, the server's default cap; clipped to the room left
in the context window), ``temperature``, ``top_p``, ``stream``, ``tools`` (below),
``tool_choice`` (auto, none, required, or ``{"type": "function" or "custom", "name": ...}``),
``reasoning.effort`` (``none`` renders with the template's ``enable_thinking=False``; the
family's reasoning markup is parsed either way and comes back as reasoning items),
``parallel_tool_calls`` and ``text.format`` (``json_object``, ``json_schema``), the tools,
tool_choice and format enforced by constrained decoding (``grammar/``). Accepted, not acted on: ``include``,
``metadata``, ``user``, ``prompt_cache_key``, ``reasoning.summary``, ``text.verbosity``,
``truncation: disabled``, ``strict`` on tools, and fields this module does not know. Tools:
function, custom (freeform) and namespace tools are served and hosted ones (web search...)
left out, as ``responses_tools.py`` says. Refused with a 400 naming the field: other tools
(``local_shell``...), image, file and audio parts, another ``text.format``,
``truncation: auto``.

Errors are ``ApiError``s (OpenAI's shape); ``responses_replies.py`` shapes the answers.
"""

from __future__ import annotations

import json
from typing import Any

from codeagent.backend.chat.model import ChatModel
from codeagent.backend.chat.prompt import Prompt, chat_prompt
from codeagent.backend.chat.template import TemplateRenderError
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.serving.api_checks import (
    ApiRequest,
    get_field,
    invalid,
    model_name,
    new_id,
    number,
    room,
)
from codeagent.backend.serving.responses_tools import CUSTOM_INPUT, template_tools

ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
ITEMS = (
    "message",
    "reasoning",
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
)

STATEFUL = ("previous_response_id", "conversation", "background")


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(where, f"'{where}' must be a string or a list of text parts", "invalid_type")
    for i, part in enumerate(content):
        if not (
            isinstance(part, dict) and part.get("type") in TEXT_PARTS and isinstance(part.get("text"), str)
        ):
            kind = part.get("type") if isinstance(part, dict) else None
            raise invalid(f"{where}[{i}]", f"{where}[{i}]: only text parts are served, not {kind!r}")
    return "".join(part["text"] for part in content)


class _Turns:
    """Items folded into messages; an assistant turn collects until another role speaks."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the assistant message being collected

    def assistant(self, fresh: bool = False) -> dict[str, Any]:
        if self.open is None or fresh:
            self.open = {"role": "assistant", "content": ""}
            self.messages.append(self.open)
        return self.open

    def other(self, message: dict[str, Any]) -> None:
        self.open = None
        self.messages.append(message)

    def take(self, item: dict[str, Any], where: str) -> None:
        kind = item.get("type", "message")
        take = getattr(self, f"_{kind}", None) if kind in ITEMS else None
        if take is None:
            raise invalid(f"{where}.type", f"{where}: items of type {kind!r} are not served")
        take(item, where)

    def _message(self, item: dict[str, Any], where: str) -> None:
        role = ROLES.get(item.get("role"))
        if role is None:
            raise invalid(f"{where}.role", f"{where}: 'role' must be one of {', '.join(ROLES)}")
        text = _text(item.get("content", ""), f"{where}.content")
        if role == "assistant":
            self.assistant()["content"] += text
        else:
            self.other({"role": role, "content": text})

    def _reasoning(self, item: dict[str, Any], where: str) -> None:
        parts = item.get("content") or item.get("summary") or []
        fresh = self.open is not None and bool(self.open["content"] or self.open.get("tool_calls"))
        turn = self.assistant(fresh)  # reasoning after text or calls opens the next turn
        turn["reasoning_content"] = turn.get("reasoning_content", "") + _text(parts, f"{where}.content")

    def _function_call(self, item: dict[str, Any], where: str) -> None:
        for name in ("call_id", "name", "arguments"):
            if not isinstance(item.get(name), str):
                raise invalid(f"{where}.{name}", f"{where}: a function_call needs a string '{name}'")
        self._call(item["call_id"], item["name"], item["arguments"])

    def _custom_tool_call(self, item: dict[str, Any], where: str) -> None:
        for name in ("call_id", "name", "input"):
            if not isinstance(item.get(name), str):
                raise invalid(f"{where}.{name}", f"{where}: a custom_tool_call needs a string '{name}'")
        arguments = json.dumps({CUSTOM_INPUT: item["input"]}, ensure_ascii=False)
        self._call(item["call_id"], item["name"], arguments)

    def _call(self, call_id: str, name: str, arguments: str) -> None:
        function = {"name": name, "arguments": arguments}
        call = {"id": call_id, "type": "function", "function": function}
        self.assistant().setdefault("tool_calls", []).append(call)

    def _function_call_output(self, item: dict[str, Any], where: str) -> None:
        if not isinstance(item.get("call_id"), str):
            raise invalid(f"{where}.call_id", f"{where}: a {item['type']} needs 'call_id'")
        output = _text(item.get("output", ""), f"{where}.output")
        self.other({"role": "tool", "tool_call_id": item["call_id"], "content": output})

    _custom_tool_call_output = _function_call_output


def _conversation(body: dict[str, Any]) -> list[dict[str, Any]]:
    turns = _Turns()
    instructions = get_field(body, "instructions", str, "a string", None)
    if instructions:
        turns.other({"role": "system", "content": instructions})
    given = get_field(body, "input", (str, list), "a string or a list of items")
    items = [{"role": "user", "content": given}] if isinstance(given, str) else given
    if not items:
        raise invalid("input", "'input' is empty")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise invalid(f"input[{i}]", f"input[{i}] must be an object", "invalid_type")
        turns.take(item, f"input[{i}]")
    return turns.messages


def _tool_choice(body: dict[str, Any], tools: list[dict[str, Any]]) -> tuple[str, str | None]:
    choice = body.get("tool_choice", "auto")
    if choice in ("auto", "none", "required"):
        if choice == "required" and not tools:
            raise invalid("tool_choice", "'tool_choice' is 'required' but no tools were given")
        return (choice if tools else "none"), None
    named = isinstance(choice, dict) and choice.get("type") in ("function", "custom")
    name = choice.get("name") if named else None
    if not isinstance(name, str):
        raise invalid(
            "tool_choice",
            "'tool_choice' must be auto, none, required or {'type': 'function' or 'custom', 'name': ...}",
        )
    if name not in {tool["function"]["name"] for tool in tools}:
        raise invalid("tool_choice", f"'tool_choice' names {name!r}, which is not among the tools")
    return "function", name


def _refuse_unserved(body: dict[str, Any]) -> None:
    for name in STATEFUL:
        if body.get(name):
            raise invalid(
                name,
                f"'{name}' is not served: this server keeps no state; send the whole conversation in 'input'",
            )
    _text_format(body)
    if body.get("truncation", "disabled") != "disabled":
        raise invalid("truncation", "only truncation 'disabled' is served: nothing is dropped from the input")


def _options(body: dict[str, Any]) -> dict[str, Any]:
    reasoning = get_field(body, "reasoning", dict, "an object", {})
    return {"enable_thinking": False} if reasoning.get("effort") == "none" else {}


def _sampling(body: dict[str, Any], prompt: Prompt, model: ChatModel, max_output: int) -> SamplingParams:
    left = room(model, len(prompt.ids), "input")
    max_tokens = get_field(body, "max_output_tokens", int, "an integer", max_output)
    if max_tokens < 1:
        raise invalid("max_output_tokens", "'max_output_tokens' must be at least 1")
    top_p = number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0:
        raise invalid("top_p", "'top_p' must be above 0")
    temperature = number(body, "temperature", 1.0, 0.0, 2.0)
    return SamplingParams(temperature=temperature, top_p=top_p, max_tokens=min(max_tokens, left))


def _text_format(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema ``text.format`` asks the reply to satisfy (None: text); decoded under it."""
    text_format = get_field(get_field(body, "text", dict, "an object", {}), "format", dict, "an object", {})
    kind = text_format.get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema" or not isinstance(text_format.get("schema", {}), dict):
        raise invalid(
            "text.format", "'text.format' must be text, json_object or json_schema with a 'schema' object"
        )
    return text_format.get("schema") or {}


def responses_request(body: dict[str, Any], model: ChatModel, max_output: int) -> ApiRequest:
    name = model_name(body, model)
    _refuse_unserved(body)
    tools = template_tools(body)
    choice, function = _tool_choice(body, tools)
    conversation = _conversation(body)
    try:
        prompt = chat_prompt(
            model,
            conversation,
            tools,
            choice,
            function,
            _options(body),
            _text_format(body),
            body.get("parallel_tool_calls") is not False,
        )
    except TemplateRenderError as err:
        raise invalid("input", f"the conversation cannot be rendered: {err}") from err
    params = _sampling(body, prompt, model, max_output)
    stream = get_field(body, "stream", bool, "a boolean", False)
    echo = {
        "instructions": body.get("instructions"),
        "tools": body.get("tools") or [],
        "tool_choice": body.get("tool_choice", "auto"),
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "reasoning": body.get("reasoning"),
    }
    return ApiRequest(name, prompt, params, stream, False, new_id("resp", "_"), echo=echo)
