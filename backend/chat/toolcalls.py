"""Streaming parsers from generated text to content, reasoning and OpenAI tool calls.

``push(delta)`` returns what became certain: visible content, reasoning text, finished tool
calls. Text that might be the start of a marker (``<tool_call>``, ``<think>``, DSML tags) is
held back until decided, so call markup never leaks into visible content, whatever way
the text is split. A call is emitted whole when its block closes. ``finish()`` returns the
message; a block still open at the end (or one that does not parse) comes back as plain
content with ``malformed`` set, never an exception.

Formats: Qwen3-Coder XML (``<tool_call><function=NAME><parameter=ARG>VALUE</parameter>...``,
values typed by the tool's JSON schema), Hermes JSON inside ``<tool_call>`` (other Qwen3
models), and DeepSeek's DSML (``<｜DSML｜function_calls><｜DSML｜invoke name=..>`` with
``<｜DSML｜parameter name=.. string="true|false">``), the format of DeepSeek's V3.2 encoding,
which V4 is taken to share; reasoning inside ``<think>...</think>``.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Delta:
    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class ParsedMessage:
    content: str
    reasoning_content: str
    tool_calls: list[dict[str, Any]]
    malformed: str | None = None


@dataclass(frozen=True, slots=True)
class Markers:
    call_open: str
    call_close: str
    think_open: str = "<think>"
    think_close: str = "</think>"


QWEN3 = Markers("<tool_call>", "</tool_call>")
DSML = Markers("<｜DSML｜function_calls>", "</｜DSML｜function_calls>")


def _partial_suffix(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that could start one of ``markers``."""
    best = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), 0, -1):
            if marker.startswith(text[-size:]):
                best = max(best, size)
                break
    return best


class ToolCallParser:
    def __init__(self, markers: Markers, tools: list[dict[str, Any]] | None, parse_block: Any) -> None:
        self.markers = markers
        self.schemas = {
            t["function"]["name"]: t["function"].get("parameters") or {}
            for t in tools or []
            if isinstance(t, dict) and "function" in t
        }
        self.parse_block = parse_block
        self.state = "text"  # text | think | call
        self.buffer = ""
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.malformed: str | None = None

    def push(self, text: str) -> Delta:
        self.buffer += text
        delta = Delta()
        while self._advance(delta):
            pass
        return delta

    def _advance(self, delta: Delta) -> bool:
        """Consume what is certain in the buffer; True if the state changed and more may follow."""
        m = self.markers
        if self.state == "call":
            end = self.buffer.find(m.call_close)
            if end < 0:
                return False
            self._close_call(self.buffer[:end], delta)
            self.buffer = self.buffer[end + len(m.call_close) :]
            self.state = "text"
            return True
        opens = (m.think_close,) if self.state == "think" else (m.call_open, m.think_open)
        found = [(self.buffer.find(marker), marker) for marker in opens if marker in self.buffer]
        if found:
            index, marker = min(found)
            self._emit(self.buffer[:index], delta)
            self.buffer = self.buffer[index + len(marker) :]
            self.state = {m.call_open: "call", m.think_open: "think", m.think_close: "text"}[marker]
            return True
        keep = _partial_suffix(self.buffer, opens)
        self._emit(self.buffer[: len(self.buffer) - keep], delta)
        self.buffer = self.buffer[len(self.buffer) - keep :]
        return False

    def _emit(self, text: str, delta: Delta) -> None:
        if not text:
            return
        if self.state == "think":
            self.reasoning.append(text)
            delta.reasoning += text
        else:
            self.content.append(text)
            delta.content += text

    def _close_call(self, block: str, delta: Delta) -> None:
        calls = self.parse_block(block, self.schemas)
        if calls is None:
            raw = self.markers.call_open + block + self.markers.call_close
            self.malformed = "a tool call did not parse; it was kept as text"
            self._emit(raw, delta)
            return
        for name, arguments in calls:
            call = {
                "id": f"call_{secrets.token_hex(6)}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
            }
            self.calls.append(call)
            delta.tool_calls.append(call)

    def finish(self) -> ParsedMessage:
        if self.state == "call":
            self.malformed = "generation ended inside a tool call; it was kept as text"
            self.content.append(self.markers.call_open + self.buffer)
        elif self.state == "think":
            self.reasoning.append(self.buffer)
        else:
            self.content.append(self.buffer)
        self.buffer = ""
        return ParsedMessage(
            "".join(self.content).strip(), "".join(self.reasoning).strip(), self.calls, self.malformed
        )


def typed(value: str, schema: dict[str, Any]) -> Any:
    """A parameter's text converted by its JSON-schema type; unparseable values stay strings."""
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value) if any(c in value for c in ".eE") else int(value)
        if kind == "boolean" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if kind in ("array", "object") or (kind is None and value[:1] in "[{"):
            return json.loads(value)
    except ValueError:
        return value
    return value


XML_FUNCTION = re.compile(r"<function=([^>\s]+)>(.*?)</function>", re.DOTALL)
XML_PARAMETER = re.compile(r"<parameter=([^>\s]+)>(.*?)</parameter>", re.DOTALL)


def parse_qwen3_block(
    block: str, schemas: dict[str, dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]] | None:
    functions = XML_FUNCTION.findall(block)
    if functions:
        return [(name, _xml_arguments(body, schemas.get(name, {}))) for name, body in functions]
    try:
        data = json.loads(block)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments") or {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    return [(data["name"], arguments)] if isinstance(arguments, dict) else None


def _xml_arguments(body: str, schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    out = {}
    for name, raw in XML_PARAMETER.findall(body):
        value = raw[1:] if raw.startswith("\n") else raw
        value = value[:-1] if value.endswith("\n") else value
        out[name] = typed(value, properties.get(name, {}))
    return out


DSML_INVOKE = re.compile(r'<｜DSML｜invoke name="([^"]+)">(.*?)</｜DSML｜invoke>', re.DOTALL)
DSML_PARAMETER = re.compile(
    r'<｜DSML｜parameter name="([^"]+)"(?: string="(true|false)")?>(.*?)</｜DSML｜parameter>', re.DOTALL
)


def parse_dsml_block(
    block: str, schemas: dict[str, dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]] | None:
    invokes = DSML_INVOKE.findall(block)
    if not invokes:
        return None
    calls = []
    for name, body in invokes:
        properties = (schemas.get(name) or {}).get("properties") or {}
        arguments = {}
        for param, is_string, value in DSML_PARAMETER.findall(body):
            arguments[param] = (
                value if is_string == "true" else typed(value, properties.get(param, {"type": None}))
            )
        calls.append((name, arguments))
    return calls


def make_parser(family: str, tools: list[dict[str, Any]] | None = None) -> ToolCallParser:
    if family == "deepseek_v4":
        return ToolCallParser(DSML, tools, parse_dsml_block)
    return ToolCallParser(QWEN3, tools, parse_qwen3_block)
