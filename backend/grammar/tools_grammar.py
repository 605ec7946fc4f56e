"""The grammar of a reply, built from the offered tools and the family's call syntax (llguidance Lark).

``reply_grammar`` returns Lark text for what the reply may be, or ``None`` when it is free:

- ``auto``: free text, or free text then one or more call blocks; nothing after the calls
  (the templates' rule: explanation goes before the calls);
- ``parallel`` off (OpenAI's ``parallel_tool_calls: false``, Anthropic's
  ``disable_parallel_tool_use``): at most one call;
- ``required`` / a named function: the prompt already ends with the family's forced call
  opener (``chat/prompt.py``), so the grammar starts inside that call (after the function's
  name when one is named); ``required`` may add more calls, a named function is one call;
- ``none``: no grammar (free text, call markup kept as content by the parser);
- ``response_format``: a JSON value valid against the schema (``json_object``: any object).

A prompt that ends inside reasoning (thinking mode) first gets free reasoning up to the family's
think closer, then the above.

Arguments are typed the way ``chat/call_formats.py`` reads them back, so what the parser turns
into JSON validates against the tool's schema. Qwen3-Coder's XML writes string values raw (up to
``\\n</parameter>``) and other values as JSON: a parameter whose schema allows only strings is
raw text (an ``enum``/``const`` of strings: exactly those texts); one that allows no string is
JSON through llguidance's ``%json`` (types, enums, ranges, nested objects, arrays, required
keys); one that allows both is either. DeepSeek's DSML says which with ``string="true|false"``.
Properties come in the schema's order, required ones mandatory, the others optional; no
parameter outside ``properties``.

Markers that the vocabulary holds as one added token (Qwen's ``<tool_call>``, ``<think>``) are
matched as that token (``<[id]>``): llguidance keeps added tokens apart from text. Elsewhere
(the tiny test tokenizers, DSML markup) markers are text; free text and raw values are lazy
lexemes that end at the first marker and may never contain one, so the parser can never see a
block where the grammar did not put one.

Limits: string ``pattern`` and ``format`` are not enforced on raw values (``minLength`` and
``maxLength`` are; all are on JSON values); JSON keywords llguidance does not implement are
ignored (``lenient``), and ``oneOf`` is read as ``anyOf``; JSON values are not kept from containing the format's closing tags;
a tool without ``properties`` takes no parameters; parameter order is the schema's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codeagent.backend.grammar.schemas import (
    allowed_types,
    length_bounds,
    string_choices,
    tool_schemas,
    without_strings,
)

SingleToken = Callable[[str], int | None]  # marker text -> its id when it is one added token


@dataclass(frozen=True, slots=True)
class Syntax:
    """A family's call markup, as the templates render it."""

    open: str  # opens a call block
    close: str  # closes it
    forced_required: str  # what ``chat/prompt.py`` appends for ``required`` (must match FORCED_CALL)
    reserved: tuple[str, ...]  # never inside free text or raw values
    think_close: str = "</think>"


QWEN3 = Syntax(
    "<tool_call>",
    "</tool_call>",
    "<tool_call>\n<function=",
    (
        "<tool_call>",
        "</tool_call>",
        "<function=",
        "</function>",
        "<parameter=",
        "</parameter>",
        "<think>",
        "</think>",
    ),
)
DSML = "｜DSML｜"
DEEPSEEK_V4 = Syntax(
    f"<{DSML}tool_calls>",
    f"</{DSML}tool_calls>",
    f'<{DSML}tool_calls>\n<{DSML}invoke name="',
    (
        f"<{DSML}tool_calls>",
        f"</{DSML}tool_calls>",
        f"<{DSML}function_calls>",
        f"<{DSML}invoke",
        f"</{DSML}invoke>",
        f"<{DSML}parameter",
        f"</{DSML}parameter>",
        "<think>",
        "</think>",
    ),
)
SYNTAXES = {"qwen3": QWEN3, "deepseek_v4": DEEPSEEK_V4}
QWEN_VALUE_END = "\n</parameter>\n"


# JSON as ``json.dumps`` and the templates' ``tojson`` write it: no free whitespace to wander in.
# Keywords llguidance does not implement (``propertyNames``...) are ignored rather than refused
# (clients send such schemas), and ``oneOf`` is taken as ``anyOf``.
JSON_STYLE = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
    "lenient": True,
    "coerce_one_of": True,
}


def _json(schema: dict[str, Any]) -> str:
    return "%json" + json.dumps({**schema, "x-guidance": JSON_STYLE}, ensure_ascii=False)


def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _regex_text(text: str) -> str:
    """``text`` as a literal inside a Lark ``/.../`` regex."""
    special = set("\\.^$|?*+()[]{}/")
    return "".join("\\" + c if c in special else ("\\n" if c == "\n" else c) for c in text)


class _Builder:
    def __init__(self, family: str, single_token: SingleToken, parallel: bool = True) -> None:
        self.family, self.syntax, self.single = family, SYNTAXES[family], single_token
        self.parallel = parallel  # more than one call in a reply
        self.rules: list[str] = []
        self.names: set[str] = set()
        self.calls: dict[str | None, str] = {}  # call_rest's rule, by the function named
        avoid = "|".join(_regex_text(m) for m in self.syntax.reserved)
        self.avoid = f"(?s:.*)({avoid})(?s:.*)"

    def rule(self, stem: str, body: str) -> str:
        name = f"{stem}_{len(self.names)}"
        self.names.add(name)
        self.rules.append(f"{name}: {body}")
        return name

    def marker(self, text: str) -> str:
        token = self.single(text)
        return f"<[{token}]>" if token is not None else _lit(text)

    def lazy_until(self, end: str, schema: dict[str, Any] | None = None) -> str:
        """Text free of reserved markers (``schema``'s minLength..maxLength characters), then ``end``
        (a lazy lexeme: it stops at the first ``end``)."""
        name = f"upto_{len(self.names)}"
        self.names.add(name)
        low, high = length_bounds(schema or {})
        text = f"(?s:.){{{low},{high}}}" if (low, high) != (0, "") else "(?s:.*)"
        pattern = f"/{text}{_regex_text(end)}/ & ~/{self.avoid}{_regex_text(end)}/"
        self.rules.append(f"{name}[lazy]: {pattern}")
        return name

    def free_text(self) -> str:
        if "TEXT" not in self.names:
            self.names.add("TEXT")
            self.rules.append(f"TEXT: /(?s:.+)/ & ~/{self.avoid}/")
        return "TEXT"

    def text_then(self, marker: str) -> str:
        """Free text ending with ``marker`` (its token when it is one, else its text)."""
        if self.single(marker) is not None:
            return f"{self.free_text()}? {self.marker(marker)}"
        return self.lazy_until(marker)

    # -- values ------------------------------------------------------------------------------

    def value(self, schema: dict[str, Any], end: str, string_head: str = "", json_head: str = "") -> str:
        """A parameter's value then ``end``: raw text where strings are allowed, JSON otherwise."""
        kinds = allowed_types(schema)
        arms = []
        if not kinds or "string" in kinds:
            texts = string_choices(schema)
            raw = (
                " | ".join(_lit(t + end) for t in texts)
                if texts is not None
                else self.lazy_until(end, schema)
            )
            arms.append(f"{_lit(string_head) if string_head else ''} ({raw})".strip())
        others = [kind for kind in kinds if kind != "string"]
        if others:
            sub = without_strings(schema, others)
            head = f"{_lit(json_head)} " if json_head else ""
            arms.append(f"{head}{_json(sub)} {_lit(end)}")
        return self.rule("value", " | ".join(f"({arm})" for arm in arms))

    def arguments(self, schema: dict[str, Any]) -> str:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        parts = []
        for name, sub in properties.items():
            param = self.parameter(name, sub if isinstance(sub, dict) else {})
            parts.append(param if name in required else f"{param}?")
        return self.rule("args", " ".join(parts) or '""')

    def parameter(self, name: str, schema: dict[str, Any]) -> str:
        if self.family == "qwen3":
            head = _lit(f"<parameter={name}>\n")
            return self.rule("param", f"{head} {self.value(schema, QWEN_VALUE_END)}")
        head = f'<{DSML}parameter name="{name}" string='
        end = f"</{DSML}parameter>\n"
        return self.rule("param", self.value(schema, end, head + '"true">', head + '"false">'))

    # -- calls -------------------------------------------------------------------------------

    def call_rest(self, tools: dict[str, dict[str, Any]], named: str | None = None) -> str:
        """After the forced opener: [name, then] the arguments and the end of the invocation."""
        if named in self.calls:
            return self.calls[named]
        arms = []
        for name, schema in tools.items():
            if named is not None and name != named:
                continue
            head = "" if named is not None else _lit(name + (">\n" if self.family == "qwen3" else '">\n'))
            tail = '"</function>\\n"' if self.family == "qwen3" else _lit(f"</{DSML}invoke>")
            arms.append(f"{head} {self.arguments(schema)} {tail}".strip())
        self.calls[named] = self.rule("call", " | ".join(f"({arm})" for arm in arms))
        return self.calls[named]

    def block_end(self, before: str = "") -> str:
        """``before`` then the block's closer, one literal when both are text: llguidance's lexer
        does not split a literal that is a prefix of another (``"\n"`` against ``"\n<invoke"``)."""
        if self.single(self.syntax.close) is None:
            return _lit(before + self.syntax.close)
        return f"{_lit(before) + ' ' if before else ''}{self.marker(self.syntax.close)}"

    def more_calls(self, tools: dict[str, dict[str, Any]]) -> str:
        """Further calls after the first one's invocation ended (before the block's close)."""
        if not self.parallel:
            return self.block_end("\n" if self.family == "deepseek_v4" else "")
        if self.family == "qwen3":
            again = f'"\\n" {self.marker(self.syntax.open)} "\\n<function=" {self.call_rest(tools)}'
            return f"{self.block_end()} ({again} {self.block_end()})*"
        again = _lit(f'\n<{DSML}invoke name="') + f" {self.call_rest(tools)}"
        return f"({again})* {self.block_end(chr(10))}"

    def opened_call(self, tools: dict[str, dict[str, Any]]) -> str:
        """What follows the block's opener in free generation."""
        if self.family == "qwen3":
            return f'"\\n<function=" {self.call_rest(tools)} {self.more_calls(tools)}'
        return _lit(f'\n<{DSML}invoke name="') + f" {self.call_rest(tools)} {self.more_calls(tools)}"


def reply_grammar(
    family: str,
    tools: list[dict[str, Any]] | None,
    tool_choice: str = "auto",
    function: str | None = None,
    response_format: dict[str, Any] | None = None,
    in_reasoning: bool = False,
    single_token: SingleToken = lambda _: None,
    parallel: bool = True,
) -> str | None:
    """Lark text for the reply after the prompt (see the module docstring), or None (unconstrained).
    Without ``parallel`` a reply holds at most one call."""
    if family not in SYNTAXES:
        return None
    builder = _Builder(family, single_token, parallel)
    schemas = tool_schemas(tools)
    if response_format is not None:
        body = _json(response_format)
    elif tool_choice == "none" or not schemas:
        return None
    elif tool_choice == "function" and function is not None:
        in_reasoning = False  # the forced opener closed it
        joint = "\n" if family == "deepseek_v4" else ""
        body = f"{builder.call_rest(schemas, function)} {builder.block_end(joint)}"
    elif tool_choice == "required":
        in_reasoning = False
        body = f"{builder.call_rest(schemas)} {builder.more_calls(schemas)}"
    else:
        free = builder.free_text()
        body = f"{free}? | {builder.text_then(builder.syntax.open)} {builder.opened_call(schemas)}"
    if in_reasoning:
        thought = builder.text_then(SYNTAXES[family].think_close)
        body = f"{thought} /[ \\t\\n]*/ ({body})"
    return "\n".join([f"start: {body}", *builder.rules]) + "\n"
