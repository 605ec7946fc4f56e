"""Streaming parser from generated text to visible content, reasoning and OpenAI tool calls.

``push(text_delta)`` returns what became certain: content, reasoning, and tool calls whose
block closed. Anything that could still turn out to be markup is held back until decided:
the end of the text that could start a marker (``<tool_call>``, ``<think>``, a DSML tag), and
trailing whitespace, which belongs to the markup when a call block follows. So call markup
never reaches visible content, however the text is split, and feeding text one character at
a time gives the same message as feeding it whole. ``flush()`` releases what is held at the
end; ``finish()`` returns the message.

Whitespace rules follow the family's templates, so that a reply parsed here renders back
into the same text (prefix caching depends on it): whitespace just before a call block and
between or after blocks is the template's; reasoning is verbatim for DeepSeek and trimmed for
Qwen, whose templates put their own newlines around it.

Tool calls come whole, as OpenAI delta entries (``index``, ``id``, ``type``, ``function`` with
``name`` and complete JSON ``arguments``), when a block closes: XML parameter values are
typed by the tool's schema, which needs the whole value. A block that does not parse, or one
still open at the end, is kept as plain content and ``malformed`` says so; nothing raises.

Reasoning starts either at the family's think marker or, when the prompt itself ends with an
open think marker (thinking-mode generation prompts), at the first generated character:
pass the prompt to ``make_parser`` for that. Calls written inside reasoning are not calls.

``finish().raw`` is every piece pushed, joined verbatim: the reply exactly as generated, which
the client stores as the assistant message's ``_raw`` so the next prompt extends this one token
for token (see ``template.py``). Push the decoded text of every generated token but the stop
token, special and added tokens kept.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from codeagent.backend.chat.families import Family, get_family


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
    malformed: str | None = None  # why some generated markup was kept as text
    raw: str = ""  # the generated text, verbatim


def _partial_suffix(text: str, markers: list[str]) -> int:
    """Length of the longest end of ``text`` that is a proper beginning of one of ``markers``."""
    best = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), best, -1):
            if marker.startswith(text[-size:]):
                best = size
                break
    return best


def opens_reasoning(prompt: str, family: Family) -> bool:
    """Whether generation after ``prompt`` starts inside reasoning (its last think marker is open)."""
    tail = prompt.rstrip()
    return tail.endswith(family.think_open)


class ToolCallParser:
    def __init__(self, family: Family, tools: list[dict[str, Any]] | None, in_reasoning: bool) -> None:
        self.family = family
        self.schemas = {
            tool["function"]["name"]: tool["function"].get("parameters") or {}
            for tool in tools or []
            if isinstance(tool, dict) and isinstance(tool.get("function"), dict)
        }
        self.closers = dict(family.call_blocks)
        self.state = "think" if in_reasoning else "text"  # text | think | call
        self.opener = ""  # the marker that opened the current call block
        self.skip_space = in_reasoning and family.trim_reasoning  # drop leading whitespace
        self.buffer = ""  # received, not yet released
        self.searched = 0  # the call block's closer is not in buffer[:searched]: long blocks stay linear
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.malformed: str | None = None
        self.received: list[str] = []

    def push(self, text: str) -> Delta:
        self.received.append(text)
        self.buffer += text
        delta = Delta()
        while self._advance(delta):
            pass
        return delta

    def _markers(self) -> list[str]:
        f = self.family
        if self.state == "think":
            return [f.think_close]
        # A stray think_close in text is swallowed: it is markup, never content.
        return [opener for opener, _ in f.call_blocks] + [f.think_open, f.think_close]

    def _advance(self, delta: Delta) -> bool:
        """Release what is certain; True when a marker was consumed and more may follow."""
        if self.state == "call":
            closer = self.closers[self.opener]
            end = self.buffer.find(closer, self.searched)
            if end < 0:
                self.searched = max(0, len(self.buffer) - len(closer) + 1)
                return False
            self._close_call(self.opener + self.buffer[:end] + closer, delta)
            self.buffer = self.buffer[end + len(closer) :]
            self.state, self.skip_space = "text", True
            return True
        markers = self._markers()
        found = [(index, marker) for marker in markers if (index := self.buffer.find(marker)) >= 0]
        if found:
            index, marker = min(found)
            self._at_marker(self.buffer[:index], marker, delta)
            self.buffer = self.buffer[index + len(marker) :]
            return True
        held = len(self.buffer) - _partial_suffix(self.buffer, markers)
        certain = self.buffer[:held].rstrip()  # trailing whitespace waits: a call may follow
        self._emit(certain, delta)
        self.buffer = self.buffer[len(certain) :]
        return False

    def _at_marker(self, before: str, marker: str, delta: Delta) -> None:
        f = self.family
        if self.state == "think":  # marker is think_close
            self._emit(before.rstrip() if f.trim_reasoning else before, delta)
            self.state, self.skip_space = "text", f.trim_reasoning
        elif marker in self.closers:
            self._emit(before.rstrip(), delta)
            self.state, self.opener, self.searched = "call", marker, 0
        elif marker == f.think_open:
            self._emit(before.rstrip(), delta)
            self.state, self.skip_space = "think", f.trim_reasoning
        else:
            self._emit(before, delta)

    def _emit(self, text: str, delta: Delta) -> None:
        if self.skip_space:
            text = text.lstrip()
        if not text:
            return
        self.skip_space = False
        if self.state == "think":
            self.reasoning.append(text)
            delta.reasoning += text
        else:
            self.content.append(text)
            delta.content += text

    def _close_call(self, block: str, delta: Delta) -> None:
        calls = self.family.parse_block(block, self.schemas)
        if calls is None:
            self.malformed = "a tool call block did not parse; its text was kept as content"
            self.state = "text"
            self._emit(block, delta)
            return
        for name, arguments in calls:
            call = {
                "id": f"call_{secrets.token_hex(12)}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
            }
            delta.tool_calls.append({"index": len(self.calls), **call})
            self.calls.append(call)

    def flush(self) -> Delta:
        """Release everything held back; the generation has ended."""
        delta = Delta()
        if self.state == "call":
            self.malformed = "generation ended inside a tool call block; its text was kept as content"
            self.state, self.skip_space = "text", False
            self._emit(self.opener + self.buffer, delta)
        elif self.state == "think" and self.family.trim_reasoning:
            self._emit(self.buffer.rstrip(), delta)
        else:
            self._emit(self.buffer, delta)
        self.buffer = ""
        return delta

    def finish(self) -> ParsedMessage:
        self.flush()
        content = "".join(self.content)
        return ParsedMessage(
            content if content.strip() else "",
            "".join(self.reasoning),
            self.calls,
            self.malformed,
            "".join(self.received),
        )


def make_parser(
    family: str, tools: list[dict[str, Any]] | None = None, prompt: str = "", calls: bool = True
) -> ToolCallParser:
    """A parser for one generation; ``prompt`` decides whether it begins inside reasoning. Without
    ``calls``, call markup stays content (``tool_choice: none``); reasoning is still split off."""
    chosen = get_family(family)
    if not calls:
        chosen = dataclasses.replace(chosen, call_blocks=())
    return ToolCallParser(chosen, tools, opens_reasoning(prompt, chosen))
