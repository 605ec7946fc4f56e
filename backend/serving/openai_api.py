"""The OpenAI requests the server takes, checked field by field.

``chat_request`` and ``completion_request`` turn a decoded JSON body into an ``ApiRequest``: the
prompt (rendered with the checkpoint's template for chat, ``chat/prompt.py``) and the
sampling parameters, stop strings among them. Any field of the wrong type, out of range,
or asking for something not served is an ``ApiError`` (HTTP 4xx, OpenAI's error shape)
naming the field. Unknown fields are ignored, as OpenAI clients send extras (``user``,
``metadata``, ``store``...).

Served: ``temperature`` (default 1), ``top_p``, ``max_tokens`` / ``max_completion_tokens``
(clipped to the room left in the context window; without one, the server's default cap),
``stop`` (up to 16 strings), ``seed``, ``n`` = 1, ``stream`` with
``stream_options.include_usage``, ``tools``, ``tool_choice``, ``parallel_tool_calls``,
``response_format`` (``json_object``, ``json_schema``: chat only) and vLLM's ``top_k`` and
``min_p``; tools, tool_choice and response_format are enforced by constrained decoding
(``grammar/``). Refused with a 400: ``n`` > 1, ``logprobs``, non-zero ``frequency_penalty`` /
``presence_penalty``, ``echo``, ``suffix``,
``best_of`` > 1, non-text content parts, batched completion prompts. A request without tools
is rendered and parsed as ``tool_choice: none``.

The field checks shared with the other protocols are in ``api_checks.py``; the answers'
shapes are in ``openai_replies.py``.
"""

from __future__ import annotations

from typing import Any

from codeagent.backend.chat.model import ChatModel
from codeagent.backend.chat.prompt import Prompt, chat_prompt, text_prompt
from codeagent.backend.chat.template import TemplateRenderError
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.serving.api_checks import (
    ApiError,
    ApiRequest,
    get_field,
    invalid,
    model_name,
    new_id,
    number,
    parse_body,
    room,
    seed,
    stop_strings,
)

__all__ = ["ApiError", "ApiRequest", "chat_request", "completion_request", "parse_body"]
ROLES = ("system", "developer", "user", "assistant", "tool")


def _refuse_unserved(body: dict[str, Any]) -> None:
    if get_field(body, "n", int, "an integer", 1) != 1:
        raise invalid("n", "only n=1 is served")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise invalid("logprobs", "logprobs are not served")
    for name in ("frequency_penalty", "presence_penalty"):
        if number(body, name, 0.0, -2.0, 2.0) != 0:
            raise invalid(name, f"'{name}' is not served; leave it out or set it to 0")
    response_format_schema(body)


def response_format_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema ``response_format`` asks the reply to satisfy: ``json_schema``'s schema,
    any object for ``json_object``, None for text. The reply is decoded under it."""
    response_format = get_field(body, "response_format", dict, "an object", {})
    kind = response_format.get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    spec = response_format.get("json_schema")
    if kind != "json_schema" or not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
        raise invalid(
            "response_format",
            "'response_format' must be text, json_object or json_schema with {'json_schema': {'schema': {...}}}",
        )
    return spec.get("schema") or {}


def sampling(
    body: dict[str, Any], prompt_tokens: int, model: ChatModel, max_output: int, param: str
) -> SamplingParams:
    left = room(model, prompt_tokens, param)
    _refuse_unserved(body)
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = get_field(body, name, int, "an integer", max_output)
    if max_tokens < 1:
        raise invalid(name, f"'{name}' must be at least 1")
    top_k = get_field(body, "top_k", int, "an integer", 0)
    if top_k < -1:
        raise invalid("top_k", "'top_k' must be -1 or 0 (off) or positive")
    top_p = number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0:
        raise invalid("top_p", "'top_p' must be above 0")
    return SamplingParams(
        temperature=number(body, "temperature", 1.0, 0.0, 2.0),
        top_k=max(top_k, 0),
        top_p=top_p,
        min_p=number(body, "min_p", 0.0, 0.0, 0.999),
        max_tokens=min(max_tokens, left),
        seed=seed(body),
        stop=tuple(stop_strings(body)),
    )


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = get_field(body, "stream", bool, "a boolean", False)
    options = get_field(body, "stream_options", dict, "an object", {})
    if options and not stream:
        raise invalid("stream_options", "'stream_options' is only allowed with 'stream': true")
    return stream, bool(get_field(options, "include_usage", bool, "a boolean", False))


# chat


def _content(value: Any, param: str) -> None:
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list):
        raise invalid(param, f"'{param}' must be a string or a list of text parts", "invalid_type")
    for part in value:
        if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
            raise invalid(param, "only text content parts are served")


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = get_field(body, "messages", list, "a list of messages")
    if not messages:
        raise invalid("messages", "'messages' is empty")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(f"messages[{i}]", "each message must be an object", "invalid_type")
        if message.get("role") not in ROLES:
            raise invalid(f"messages[{i}].role", f"'role' must be one of {', '.join(ROLES)}")
        _content(message.get("content"), f"messages[{i}].content")
        for call in get_field(message, "tool_calls", list, "a list", []):
            function = call.get("function") if isinstance(call, dict) else None
            if not (isinstance(function, dict) and isinstance(function.get("name"), str)):
                raise invalid(f"messages[{i}].tool_calls", "each tool call needs function.name")
        out.append({**message, "role": "system"} if message["role"] == "developer" else message)
    return out


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = get_field(body, "tools", list, "a list of tools", [])
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            raise invalid(f"tools[{i}]", "each tool must be {'type': 'function', 'function': {...}}")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise invalid(f"tools[{i}].function.name", "each tool needs a name")
        if not isinstance(function.get("parameters", {}), dict):
            raise invalid(f"tools[{i}].function.parameters", "'parameters' must be a JSON schema object")
    return tools


def _tool_choice(body: dict[str, Any], tools: list[dict[str, Any]]) -> tuple[str, str | None]:
    choice = body.get("tool_choice")
    if choice is None or (choice == "auto" and not tools):
        return ("auto" if tools else "none"), None
    if choice in ("auto", "none", "required"):
        if choice == "required" and not tools:
            raise invalid("tool_choice", "'tool_choice' is 'required' but no tools were given")
        return choice, None
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(name, str):
        raise invalid(
            "tool_choice",
            "'tool_choice' must be auto, none, required or {'type': 'function', 'function': {'name': ...}}",
        )
    if name not in {tool["function"]["name"] for tool in tools}:
        raise invalid("tool_choice", f"'tool_choice' names {name!r}, which is not among the tools")
    return "function", name


def chat_request(body: dict[str, Any], model: ChatModel, max_output: int) -> ApiRequest:
    name = model_name(body, model)
    messages, tools = _messages(body), _tools(body)
    choice, function = _tool_choice(body, tools)
    stream, include_usage = _stream_flags(body)
    try:
        prompt = chat_prompt(
            model,
            messages,
            tools,
            choice,
            function,
            response_format=response_format_schema(body),
            parallel_calls=body.get("parallel_tool_calls") is not False,
        )
    except TemplateRenderError as err:
        raise invalid("messages", f"the conversation cannot be rendered: {err}") from err
    params = sampling(body, len(prompt.ids), model, max_output, "messages")
    return ApiRequest(name, prompt, params, stream, include_usage, new_id("chatcmpl"))


# completions


def _completion_prompt(body: dict[str, Any], model: ChatModel) -> Prompt:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        result = text_prompt(model, prompt)
    elif isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        vocab = model.tokenizer.vocab_size
        if any(not 0 <= t < vocab for t in prompt):
            raise invalid("prompt", f"token ids must be in [0, {vocab})")
        result = text_prompt(model, prompt)
    else:
        raise invalid(
            "prompt",
            "'prompt' must be a string or a list of token ids (one prompt per request)",
            "invalid_type",
        )
    if not result.ids:
        raise invalid("prompt", "the prompt is empty")
    return result


def completion_request(body: dict[str, Any], model: ChatModel, max_output: int) -> ApiRequest:
    name = model_name(body, model)
    if body.get("echo") or body.get("suffix"):
        raise invalid("echo" if body.get("echo") else "suffix", "'echo' and 'suffix' are not served")
    if get_field(body, "best_of", int, "an integer", 1) != 1:
        raise invalid("best_of", "only best_of=1 is served")
    if response_format_schema(body) is not None:
        raise invalid("response_format", "text completions take no response_format; use chat completions")
    prompt = _completion_prompt(body, model)
    stream, include_usage = _stream_flags(body)
    params = sampling(body, len(prompt.ids), model, max_output, "prompt")
    return ApiRequest(name, prompt, params, stream, include_usage, new_id("cmpl"))
