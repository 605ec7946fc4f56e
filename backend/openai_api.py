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
``stream_options.include_usage``, ``tools``, ``tool_choice``, and vLLM's ``top_k`` and
``min_p``. Refused with a 400: ``n`` > 1, ``logprobs``, non-zero ``frequency_penalty`` /
``presence_penalty``, ``response_format`` other than text, ``echo``, ``suffix``,
``best_of`` > 1, non-text content parts, batched completion prompts. A request without tools
is rendered and parsed as ``tool_choice: none``.

The answers' shapes are in ``openai_replies.py``.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from codeagent.backend.chat.model import ChatModel
from codeagent.backend.chat.prompt import Prompt, chat_prompt, text_prompt
from codeagent.backend.chat.template import TemplateRenderError
from codeagent.backend.layers.sampler import SamplingParams

ROLES = ("system", "developer", "user", "assistant", "tool")
_REQUIRED = object()


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def payload(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return {"error": error}


def invalid(param: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


@dataclass(slots=True)
class ApiRequest:
    model: str
    prompt: Prompt
    params: SamplingParams  # its ``stop`` strings are watched on the reply's text
    stream: bool
    include_usage: bool
    id: str
    created: int = field(default_factory=lambda: int(time.time()))


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the request body is not valid JSON: {err}", code="invalid_json") from err
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def _get(body: dict[str, Any], name: str, kinds: Any, label: str, default: Any = _REQUIRED) -> Any:
    """A field of one of ``kinds``; absent or null gives ``default`` (or a 400 when required)."""
    value = body.get(name)
    if value is None:
        if default is _REQUIRED:
            raise invalid(name, f"'{name}' is required", "missing_required_parameter")
        return default
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise invalid(name, f"'{name}' must be {label}, not a boolean", "invalid_type")
    if not isinstance(value, kinds):
        raise invalid(name, f"'{name}' must be {label}, not {type(value).__name__}", "invalid_type")
    return value


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = float(_get(body, name, (int, float), "a number", default))
    if not low <= value <= high:
        raise invalid(name, f"'{name}' must be between {low:g} and {high:g}, not {value:g}")
    return value


def _refuse_unserved(body: dict[str, Any]) -> None:
    if _get(body, "n", int, "an integer", 1) != 1:
        raise invalid("n", "only n=1 is served")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise invalid("logprobs", "logprobs are not served")
    for name in ("frequency_penalty", "presence_penalty"):
        if _number(body, name, 0.0, -2.0, 2.0) != 0:
            raise invalid(name, f"'{name}' is not served; leave it out or set it to 0")
    response_format = _get(body, "response_format", dict, "an object", {})
    if response_format.get("type", "text") != "text":
        raise invalid("response_format", "only the text response format is served")


def _stops(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid("stop", "'stop' must be a string or a list of strings", "invalid_type")
    if len(stops) > 16:
        raise invalid("stop", "'stop' takes at most 16 strings")
    return [s for s in stops if s]


def sampling(
    body: dict[str, Any], prompt_tokens: int, model: ChatModel, max_output: int, param: str
) -> SamplingParams:
    room = model.context_window - prompt_tokens
    if room <= 0:
        raise invalid(
            param,
            f"the prompt has {prompt_tokens} tokens; the model's context window is {model.context_window}",
            "context_length_exceeded",
        )
    _refuse_unserved(body)
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _get(body, name, int, "an integer", max_output)
    if max_tokens < 1:
        raise invalid(name, f"'{name}' must be at least 1")
    top_k = _get(body, "top_k", int, "an integer", 0)
    if top_k < -1:
        raise invalid("top_k", "'top_k' must be -1 or 0 (off) or positive")
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0:
        raise invalid("top_p", "'top_p' must be above 0")
    return SamplingParams(
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_k=max(top_k, 0),
        top_p=top_p,
        min_p=_number(body, "min_p", 0.0, 0.0, 0.999),
        max_tokens=min(max_tokens, room),
        seed=_seed(body),
        stop=tuple(_stops(body)),
    )


def _seed(body: dict[str, Any]) -> int | None:
    seed = _get(body, "seed", int, "an integer", None)
    if seed is not None and not -(2**63) <= seed < 2**64:  # what torch.Generator takes
        raise invalid("seed", "'seed' must fit in 64 bits")
    return seed


def _model_name(body: dict[str, Any], model: ChatModel) -> str:
    name = _get(body, "model", str, "a string")
    if name != model.name:
        raise ApiError(
            404,
            f"the model {name!r} is not served here; this server has {model.name!r}",
            param="model",
            code="model_not_found",
        )
    return name


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = _get(body, "stream", bool, "a boolean", False)
    options = _get(body, "stream_options", dict, "an object", {})
    if options and not stream:
        raise invalid("stream_options", "'stream_options' is only allowed with 'stream': true")
    return stream, bool(_get(options, "include_usage", bool, "a boolean", False))


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
    messages = _get(body, "messages", list, "a list of messages")
    if not messages:
        raise invalid("messages", "'messages' is empty")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(f"messages[{i}]", "each message must be an object", "invalid_type")
        if message.get("role") not in ROLES:
            raise invalid(f"messages[{i}].role", f"'role' must be one of {', '.join(ROLES)}")
        _content(message.get("content"), f"messages[{i}].content")
        for call in _get(message, "tool_calls", list, "a list", []):
            function = call.get("function") if isinstance(call, dict) else None
            if not (isinstance(function, dict) and isinstance(function.get("name"), str)):
                raise invalid(f"messages[{i}].tool_calls", "each tool call needs function.name")
        out.append({**message, "role": "system"} if message["role"] == "developer" else message)
    return out


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = _get(body, "tools", list, "a list of tools", [])
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
    name = _model_name(body, model)
    messages, tools = _messages(body), _tools(body)
    choice, function = _tool_choice(body, tools)
    stream, include_usage = _stream_flags(body)
    try:
        prompt = chat_prompt(model, messages, tools, choice, function)
    except TemplateRenderError as err:
        raise invalid("messages", f"the conversation cannot be rendered: {err}") from err
    params = sampling(body, len(prompt.ids), model, max_output, "messages")
    return ApiRequest(name, prompt, params, stream, include_usage, _new_id("chatcmpl"))


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
    name = _model_name(body, model)
    if body.get("echo") or body.get("suffix"):
        raise invalid("echo" if body.get("echo") else "suffix", "'echo' and 'suffix' are not served")
    if _get(body, "best_of", int, "an integer", 1) != 1:
        raise invalid("best_of", "only best_of=1 is served")
    prompt = _completion_prompt(body, model)
    stream, include_usage = _stream_flags(body)
    params = sampling(body, len(prompt.ids), model, max_output, "prompt")
    return ApiRequest(name, prompt, params, stream, include_usage, _new_id("cmpl"))


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"
