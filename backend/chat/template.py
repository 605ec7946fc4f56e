"""Rendering OpenAI-shaped conversations with the checkpoint's own chat template.

The template is the checkpoint's (``chat_template.jinja``, or ``chat_template`` in
``tokenizer_config.json``: a string, or named templates of which ``tool_use`` is taken when
tools are given and ``default`` otherwise), rendered as its authors wrote it, in the same
kind of environment transformers gives it: a sandboxed, immutable Jinja environment with
``trim_blocks``/``lstrip_blocks``, loop controls, the ``{% generation %}`` tag (rendered as
its body), ``raise_exception``, ``strftime_now`` and a ``tojson`` that does not escape HTML.
Templates receive ``messages``, ``tools``, ``add_generation_prompt``, the named special tokens
(``bos_token``...) and any extra options (``enable_thinking``, ``thinking``...). A checkpoint
without a template gets its family's built-in one (``templates/<family>.jinja``).

Messages are normalised the same way every turn, so that turn N+1 renders as an extension of
turn N plus the reply (prefix caching depends on it): keys set to None are dropped, as
transformers does; ``content`` is always a string (text parts joined); tool-call
``arguments``, which the agent stores as JSON strings, become dicts, since templates iterate
them (text that is not a JSON object becomes ``{"arguments": text}``, as DeepSeek's encoder
does); keys starting with ``_`` are private to codeagent and never reach a template. Templates
that expect the string form are not served.

Re-rendering a reply is not enough for that: a tool call parsed and serialised again may differ
from what the model wrote (spacing, key order, trimmed reasoning), and some templates rewrite
earlier turns (Qwen's show reasoning only after the last user message; DeepSeek-V4's drop it in
thinking mode without tools). So an assistant message may carry ``_raw``, the exact text the
model generated for it: everything after the prompt's generation prompt, decoded with special
and added tokens kept, without the stop token that ended the turn. Such a turn renders as the
prompt the model was given for it (the conversation before it, rendered by these same rules,
with the generation prompt), then ``_raw``, then whatever the template writes after that
turn's content (its end-of-turn marker and what follows). The template's own text for the
turn between its generation prompt and its content is dropped, and so is any rewriting of
turns before it: a conversation with ``_raw`` on every reply renders append-only, so turn N+1
extends prompt N + reply N whatever the template does. The price is one template rendering per
``_raw`` turn. A template that does not write an assistant message's content verbatim, exactly
once, cannot be spliced this way; the conversation is then rendered as if no ``_raw`` were given.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import TemplateError, nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from codeagent.backend.chat.tokenizer import Tokenizer, read_chat_templates, read_json, token_text

RAW = "_raw"  # an assistant message's exact generated text (see the module docstring)


class TemplateRenderError(ValueError):
    pass


def _raise(message: str) -> None:
    raise TemplateRenderError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class _GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}`` marks assistant text for training masks; here, its body."""

    tags = {"generation"}  # noqa: RUF012 (jinja2's Extension declares it a class attribute)

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _Namespace(Namespace):
    """A template namespace that refuses private names, so ``set ns.__x`` cannot reach internals."""

    def __setitem__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            raise TemplateRenderError(f"templates may not set private names on a namespace: {name!r}")
        super().__setitem__(name, value)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["namespace"] = _Namespace
    return env


def _text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if not (isinstance(part, dict) and part.get("type") == "text"):
            raise TemplateRenderError(f"only text content parts can be rendered, got {part!r}")
        parts.append(part.get("text") or "")
    return "".join(parts)


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        return {} if raw is None else {"arguments": raw}
    try:
        parsed = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        return {"arguments": raw}
    return parsed if isinstance(parsed, dict) else {"arguments": parsed}


def _call(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    function["arguments"] = _arguments(function.get("arguments"))
    return {**call, "function": function}


def normalise(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as templates read them; the same input always gives the same output."""
    out = []
    for message in messages:
        clean = {
            key: value for key, value in message.items() if value is not None and not key.startswith("_")
        }
        clean["content"] = _text(message.get("content"))
        if clean.get("tool_calls"):
            clean["tool_calls"] = [_call(call) for call in clean["tool_calls"]]
        out.append(clean)
    return out


def builtin(family: str) -> str:
    """The family's built-in template source."""
    path = resources.files("codeagent.backend.chat").joinpath("templates", f"{family}.jinja")
    if not path.is_file():
        raise TemplateRenderError(f"no built-in chat template for family {family!r}")
    return path.read_text(encoding="utf-8")


class ChatTemplate:
    def __init__(
        self, templates: dict[str, str], variables: dict[str, str], family: str, is_builtin: bool = False
    ) -> None:
        env = _environment()
        try:
            self.compiled = {name: env.from_string(source) for name, source in templates.items()}
        except TemplateError as err:
            raise TemplateRenderError(f"the chat template does not compile: {err}") from err
        if not self.compiled:
            raise TemplateRenderError("no chat template given")
        self.sources = templates
        self.variables = variables
        self.family = family
        self.is_builtin = is_builtin

    @classmethod
    def for_checkpoint(
        cls, templates: dict[str, str], variables: dict[str, str], family: str
    ) -> ChatTemplate:
        if templates:
            return cls(templates, variables, family)
        return cls({"default": builtin(family)}, variables, family, is_builtin=True)

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer, family: str) -> ChatTemplate:
        return cls.for_checkpoint(tokenizer.chat_templates, tokenizer.special_tokens, family)

    @classmethod
    def from_dir(cls, folder: Path | str, family: str) -> ChatTemplate:
        """From a checkpoint folder's config files alone (``tokenizer.json`` is not loaded)."""
        folder = Path(folder)
        config = read_json(folder / "tokenizer_config.json")
        names = ("bos_token", "eos_token", "pad_token", "unk_token")
        variables = {name: text for name in names if (text := token_text(config.get(name))) is not None}
        return cls.for_checkpoint(read_chat_templates(folder, config), variables, family)

    def _pick(self, tools: list[dict[str, Any]] | None) -> Any:
        if tools and "tool_use" in self.compiled:
            return self.compiled["tool_use"]
        return self.compiled.get("default") or next(iter(self.compiled.values()))

    def render(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        **options: Any,
    ) -> str:
        """The prompt text; ``options`` reach the template as variables (``enable_thinking=False``).
        Assistant messages with ``_raw`` render as the model wrote them (see the module docstring)."""
        return "".join(self.spans(messages, tools, add_generation_prompt, **options))

    def spans(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        **options: Any,
    ) -> list[str]:
        """``render``'s text in pieces: the template's text, then for each spliced ``_raw`` turn its
        raw text and the template's text after it (so the raws are at the odd indices)."""
        raw_turns = [
            index
            for index, message in enumerate(messages)
            if message.get("role") == "assistant" and isinstance(message.get(RAW), str)
        ]
        if not raw_turns:
            return [self._render(messages, tools, add_generation_prompt, options)]
        return self._splice(messages, raw_turns, tools, add_generation_prompt, options)

    def _render(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        add_generation_prompt: bool,
        options: dict[str, Any],
    ) -> str:
        try:
            return self._pick(tools).render(
                messages=normalise(messages),
                tools=tools or None,
                add_generation_prompt=add_generation_prompt,
                **{**self.variables, **options},
            )
        except (TemplateError, TypeError) as err:
            raise TemplateRenderError(f"the chat template failed: {err}") from err

    def _splice(
        self,
        messages: list[dict[str, Any]],
        raw_turns: list[int],
        tools: list[dict[str, Any]] | None,
        add_generation_prompt: bool,
        options: dict[str, Any],
    ) -> list[str]:
        """prompt before the first raw turn, then per raw turn: its raw text and the template's
        text after its content, up to the next raw turn's generation prompt (or the end)."""
        nonce = secrets.token_hex(8)
        marks = {index: f"@@codeagent-raw-{nonce}-{index}@@" for index in raw_turns}
        stand_in = [
            {"role": "assistant", "content": marks[index]} if index in marks else message
            for index, message in enumerate(messages)
        ]
        pieces = [self._render(stand_in[: raw_turns[0]], tools, True, options)]
        for number, index in enumerate(raw_turns):
            later = raw_turns[number + 1] if number + 1 < len(raw_turns) else None
            upto = stand_in if later is None else stand_in[:later]
            text = self._render(upto, tools, add_generation_prompt if later is None else True, options)
            if text.count(marks[index]) != 1:
                plain = [{key: value for key, value in m.items() if key != RAW} for m in messages]
                return [self._render(plain, tools, add_generation_prompt, options)]
            pieces += [messages[index][RAW], text[text.index(marks[index]) + len(marks[index]) :]]
        return pieces
