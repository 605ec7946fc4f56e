"""The scripted model: replays assistant messages from a JSONL file, in order.

``--model scripted:FILE`` where each non-blank line of FILE is one assistant message in
OpenAI chat format (``content``, optional ``tool_calls`` with JSON-string ``arguments``,
optional ``reasoning_content``). It is a real ``ModelClient``: tests, demos and replays of
recorded runs use it. Running out of replies raises ``ScriptExhausted``. ``start`` skips
replies already consumed by an earlier session of a resumed run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codeagent.agent.protocol import (
    Completion,
    Message,
    ModelError,
    ScriptExhausted,
    TokenCallback,
    ToolSchema,
    Usage,
    estimate_tokens,
)


def load_script(path: Path) -> list[Message]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as err:
        raise ModelError(f"script {path} does not exist") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ModelError(f"cannot read script {path}: {err}") from err
    replies = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            replies.append(_parse_line(path, number, line))
    return replies


def _parse_line(path: Path, number: int, line: str) -> Message:
    try:
        message = json.loads(line)
    except json.JSONDecodeError as err:
        raise ModelError(f"{path}:{number}: not valid JSON ({err.msg})") from err
    if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
        raise ModelError(f"{path}:{number}: each line must be an assistant message object")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list) or not all(isinstance(c, dict) and "function" in c for c in calls):
        raise ModelError(f"{path}:{number}: tool_calls must be a list of {{id, type, function}} objects")
    return {"role": "assistant", **message}


def prompt_text(messages: list[Message], tools: list[ToolSchema]) -> str:
    parts = [json.dumps(tools)] if tools else []
    for message in messages:
        parts.append(str(message.get("content") or ""))
        parts.extend(json.dumps(call) for call in message.get("tool_calls") or [])
    return "\n".join(parts)


class ScriptedClient:
    context_window: int = 128_000

    def __init__(self, path: Path, start: int = 0) -> None:
        self.path = Path(path)
        self.name = f"scripted:{self.path.name}"
        self.replies = load_script(self.path)
        self.consumed = start

    def count_tokens(self, messages: list[Message], tools: list[ToolSchema]) -> tuple[int, bool]:
        return estimate_tokens(prompt_text(messages, tools)), False

    def complete(
        self, messages: list[Message], tools: list[ToolSchema], on_token: TokenCallback | None = None
    ) -> Completion:
        if self.consumed >= len(self.replies):
            raise ScriptExhausted(f"the script {self.path.name} has no reply left after {len(self.replies)}")
        reply: dict[str, Any] = dict(self.replies[self.consumed])
        self.consumed += 1
        content = str(reply.get("content") or "")
        if on_token:
            for start in range(0, len(content), 16):
                on_token(content[start : start + 16])
        completion_text = content + json.dumps(reply.get("tool_calls") or [])
        usage = Usage(self.count_tokens(messages, tools)[0], estimate_tokens(completion_text))
        return Completion(reply, usage, "tool_calls" if reply.get("tool_calls") else "stop")
