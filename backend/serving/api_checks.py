"""Request checking shared by the server's protocols: errors, typed fields, sampling pieces.

Every protocol module (``openai_api``, ``anthropic_api``, ``responses_api``) reads its JSON
body with these: ``get_field`` for a typed field (absent or null gives the default, or a 400
when required), ``number`` for a bounded number, ``stop_strings``, ``seed`` and
``model_name``. A bad field is an ``ApiError``: an HTTP status, a message naming the field,
and OpenAI's error type/param/code, which the other protocols reshape into their own error
bodies (``http_handler.Dialect``). A checked request is an ``ApiRequest``: the prompt, the
sampling parameters and what the answer echoes back.

Limits checked before anything is rendered or tokenized (``check_text``, ``output_limit``): a
body whose strings hold more characters than the context window could at
``CHARS_PER_TOKEN`` characters a token is refused (no text a tokenizer would meet averages
more: only long runs of one character come near), and so is a string with a lone surrogate
(``\\ud800``: valid JSON, not valid Unicode). An output limit over the context window is a 400
naming the window, as OpenAI and Anthropic refuse one over a model's output limit; within
it, the protocols clip it to the room the prompt leaves.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from codeagent.backend.chat.model import ChatModel
from codeagent.backend.chat.prompt import Prompt
from codeagent.backend.layers.sampler import SamplingParams

REQUIRED = object()
MAX_BODY = 32 * 2**20
JSON_BYTES_PER_CHAR = 12  # the most a character takes in JSON: a surrogate pair as two \uXXXX escapes
CHARS_PER_TOKEN = 16
_SURROGATE = re.compile("[\ud800-\udfff]")


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
    echo: dict[str, Any] = field(default_factory=dict)  # request fields an answer repeats (Responses)


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the request body is not valid JSON: {err}", code="invalid_json") from err
    except RecursionError as err:
        raise ApiError(400, "the request body is nested too deeply", code="invalid_json") from err
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def body_limit(window: int) -> int:
    """The largest body worth reading for a context window: 32 MiB, or less where no body
    that large could fit the window (8 MiB at least, for tool schemas and JSON's own marks)."""
    return min(MAX_BODY, max(8 * 2**20, window * CHARS_PER_TOKEN * JSON_BYTES_PER_CHAR))


def check_text(body: dict[str, Any], window: int) -> None:
    """A 400 for a lone surrogate in any string, or more characters than ``window`` tokens hold."""
    chars, todo = 0, [body]
    while todo:
        value = todo.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            for text in (key, item):
                if isinstance(text, str):
                    chars += len(text)
                    if not text.isascii() and _SURROGATE.search(text):
                        raise ApiError(
                            400,
                            "the request body has a lone surrogate (such as \\ud800) in a string: not valid Unicode",
                            code="invalid_json",
                        )
            if isinstance(item, (dict, list)):
                todo.append(item)
    if chars > window * CHARS_PER_TOKEN:
        raise ApiError(
            400,
            f"the request holds {chars} characters of text; the model's context window is {window} "
            f"tokens, which no text over {window * CHARS_PER_TOKEN} characters fits",
            code="context_length_exceeded",
        )


def output_limit(body: dict[str, Any], name: str, model: ChatModel) -> None:
    """A 400 naming the limit when the output limit ``name`` is over the context window."""
    value = body.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and value > model.context_window:
        raise invalid(
            name,
            f"'{name}' is too large: {value}; this model writes at most {model.context_window} tokens "
            "(its context window, the prompt included)",
        )


def get_field(body: dict[str, Any], name: str, kinds: Any, label: str, default: Any = REQUIRED) -> Any:
    """A field of one of ``kinds``; absent or null gives ``default`` (or a 400 when required)."""
    value = body.get(name)
    if value is None:
        if default is REQUIRED:
            raise invalid(name, f"'{name}' is required", "missing_required_parameter")
        return default
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise invalid(name, f"'{name}' must be {label}, not a boolean", "invalid_type")
    if not isinstance(value, kinds):
        raise invalid(name, f"'{name}' must be {label}, not {type(value).__name__}", "invalid_type")
    return value


def number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = float(get_field(body, name, (int, float), "a number", default))
    if not low <= value <= high:
        raise invalid(name, f"'{name}' must be between {low:g} and {high:g}, not {value:g}")
    return value


def stop_strings(body: dict[str, Any], name: str = "stop", most: int = 16) -> list[str]:
    stop = body.get(name)
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid(name, f"'{name}' must be a string or a list of strings", "invalid_type")
    if len(stops) > most:
        raise invalid(name, f"'{name}' takes at most {most} strings")
    return [s for s in stops if s]


def seed(body: dict[str, Any]) -> int | None:
    value = get_field(body, "seed", int, "an integer", None)
    if value is not None and not -(2**63) <= value < 2**64:  # what torch.Generator takes
        raise invalid("seed", "'seed' must fit in 64 bits")
    return value


def model_name(body: dict[str, Any], model: ChatModel) -> str:
    name = get_field(body, "model", str, "a string")
    if name != model.name:
        raise ApiError(
            404,
            f"the model {name!r} is not served here; this server has {model.name!r}",
            param="model",
            code="model_not_found",
        )
    return name


def room(model: ChatModel, prompt_tokens: int, param: str) -> int:
    """How many tokens the context window leaves after the prompt (a 400 when none)."""
    left = model.context_window - prompt_tokens
    if left <= 0:
        raise invalid(
            param,
            f"the prompt has {prompt_tokens} tokens; the model's context window is {model.context_window}",
            "context_length_exceeded",
        )
    return left


def new_id(prefix: str, sep: str = "-") -> str:
    return f"{prefix}{sep}{secrets.token_hex(12)}"
