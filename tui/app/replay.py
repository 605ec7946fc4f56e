"""A resumed session's conversation turned back into transcript entries.

The messages are what the model saw, so the first user message carries the task template's
wording around the user's text, which is taken off again; tool results pair with their calls
by id. Outcomes are read from the text (tools that fail answer ``error: ...`` or ``not run:
...``), and an edit's diff is the part of its result from the first ``--- `` line on. Timings
are not in the messages and are not shown.
"""

from __future__ import annotations

import json
from typing import Any

from textual.widget import Widget

from codeagent.agent.prompts import render
from codeagent.agent.protocol import Message
from codeagent.tui.app.entries import (
    AssistantEntry,
    DiffEntry,
    FinalEntry,
    ReasoningEntry,
    ToolEntry,
    UserEntry,
)

EDIT_TOOLS = frozenset({"edit_file", "write_file", "apply_patch"})
FAILED = ("error:", "not run:")


def task_text(content: str) -> str:
    """The user's words inside the rendered task template."""
    before, _, after = render("task", task="\0").partition("\0")
    if content.startswith(before) and content.endswith(after):
        return content[len(before) : len(content) - len(after)]
    return content


def entries(messages: list[Message]) -> list[Widget]:
    results = {
        m.get("tool_call_id"): str(m.get("content") or "") for m in messages if m.get("role") == "tool"
    }
    out: list[Widget] = []
    first_user = True
    for message in messages:
        role = message.get("role")
        if role == "user":
            content = str(message.get("content") or "")
            out.append(UserEntry(task_text(content) if first_user else content))
            first_user = False
        elif role == "assistant":
            out.extend(_assistant(message, results))
    return out


def _assistant(message: Message, results: dict[Any, str]) -> list[Widget]:
    out: list[Widget] = []
    if message.get("reasoning_content"):
        out.append(ReasoningEntry(str(message["reasoning_content"])))
    if str(message.get("content") or "").strip():
        out.append(AssistantEntry(str(message["content"])))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        name = str(function.get("name") or "?")
        args = _arguments(function.get("arguments"))
        text = results.get(call.get("id"), "")
        ok = not text.startswith(FAILED)
        if name == "finish" and ok:
            out.append(FinalEntry(str(args.get("summary", ""))))
            continue
        out.append(ToolEntry(name, args, (ok, text)))
        diff = _diff(text) if name in EDIT_TOOLS and ok else ""
        if diff:
            out.append(DiffEntry(diff))
    return out


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        args = json.loads(raw or "{}")
    except (TypeError, json.JSONDecodeError):
        return {}
    return args if isinstance(args, dict) else {}


def _diff(text: str) -> str:
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith("--- ")), None)
    return "".join(lines[start:]) if start is not None else ""
