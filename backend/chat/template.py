"""Rendering OpenAI-shaped conversations with the checkpoint's own chat template.

The template comes from ``tokenizer_config.json`` (``chat_template``, a string or a list of
named templates) or ``chat_template.jinja``, and is rendered as its authors wrote it, in a
sandboxed Jinja environment with the helpers Hugging Face templates expect
(``raise_exception``, ``tojson``, ``strftime_now``, loop controls). A checkpoint without one
gets the family's built-in template (``templates/<family>.jinja``).

Messages are normalised once, the same way every turn, so the rendering of turn N+1
extends turn N's: tool-call arguments become dicts (templates iterate them), and ``content``
is never None.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from codeagent.backend.chat.tokenizer import _read_json, _token_text


class TemplateRenderError(ValueError):
    pass


def _raise(message: str) -> None:
    raise TemplateRenderError(message)


def _tojson(
    value: Any,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
    ensure_ascii: bool = False,
) -> str:
    return json.dumps(
        value, indent=indent, separators=separators, sort_keys=sort_keys, ensure_ascii=ensure_ascii
    )


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: time.strftime(fmt)
    return env


def normalise(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for message in messages:
        message = dict(message)
        message["content"] = message.get("content") or ""
        if message.get("tool_calls"):
            message["tool_calls"] = [_call_with_dict_arguments(call) for call in message["tool_calls"]]
        out.append(message)
    return out


def _call_with_dict_arguments(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            parsed = {"raw": arguments}
        function["arguments"] = parsed if isinstance(parsed, dict) else {"value": parsed}
    return {**call, "function": function}


class ChatTemplate:
    def __init__(self, source: str, variables: dict[str, Any]) -> None:
        try:
            self.template = _environment().from_string(source)
        except TemplateError as err:
            raise TemplateRenderError(f"the chat template does not compile: {err}") from err
        self.variables = variables

    @classmethod
    def from_dir(cls, folder: Path, family: str) -> ChatTemplate:
        config = _read_json(folder / "tokenizer_config.json")
        source = _template_source(folder, config) or builtin(family)
        variables = {
            "bos_token": _token_text(config.get("bos_token")) or "",
            "eos_token": _token_text(config.get("eos_token")) or "",
        }
        return cls(source, variables)

    def render(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
    ) -> str:
        try:
            return self.template.render(
                messages=normalise(messages),
                tools=tools or None,
                add_generation_prompt=add_generation_prompt,
                **self.variables,
            )
        except TemplateError as err:
            raise TemplateRenderError(f"the chat template failed: {err}") from err


def _template_source(folder: Path, config: dict[str, Any]) -> str | None:
    raw = config.get("chat_template")
    if isinstance(raw, list):
        named = {entry.get("name"): entry.get("template") for entry in raw if isinstance(entry, dict)}
        raw = named.get("default") or next(iter(named.values()), None)
    if isinstance(raw, str) and raw.strip():
        return raw
    jinja_file = folder / "chat_template.jinja"
    return jinja_file.read_text(encoding="utf-8") if jinja_file.is_file() else None


def builtin(family: str) -> str:
    return resources.files("codeagent.backend.chat").joinpath("templates", f"{family}.jinja").read_text()
