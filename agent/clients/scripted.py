"""The scripted model: replays assistant messages from a JSONL file, in order.

``--model scripted:FILE``, where each non-blank line of FILE is one assistant message in
OpenAI chat format: ``content``, optional ``tool_calls`` (``{"id", "type": "function",
"function": {"name", "arguments": "<JSON string>"}}``), optional ``reasoning_content`` and
``role`` (which must then be ``assistant``), and optionally ``usage`` with any of
``prompt_tokens``, ``cached_tokens`` and ``completion_tokens`` (whole numbers), which replace
the estimates for that reply (``usage`` is not part of the message). The whole file is checked when it is loaded,
so a malformed line fails before the run starts, naming its line number. A missing call
``id`` becomes ``call_<line>_<n>``, so tool results can still refer to it.

It is a real ``ModelClient``: tests, demos and replays of recorded runs use it. Content
streams to ``on_token`` in a few chunks. Usage is estimated from the text (no tokenizer)
unless the line gives it. Running out of replies raises ``ScriptExhausted``. For resume,
``start`` skips the replies an earlier session consumed, and ``consumed`` counts replies
handed out so far, ``start`` included. The script does not look at the conversation: it answers the same whatever the
tools returned.
"""

from __future__ import annotations

import copy
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

STREAM_CHUNKS = 4  # enough pieces for a UI to show streaming, few enough to stay readable


USAGE_KEYS = ("prompt_tokens", "completion_tokens", "cached_tokens")


def load_script(path: Path) -> list[Message]:
    """Every reply in ``path`` (a ``usage`` given on a line stays under that key);
    ``ModelError`` naming the line for the first bad one."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as err:
        raise ModelError(f"script {path} does not exist") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ModelError(f"cannot read script {path}: {err}") from err
    return [_parse_line(path, number, line) for number, line in enumerate(lines, 1) if line.strip()]


def _parse_line(path: Path, number: int, line: str) -> Message:
    where = f"{path}:{number}"
    try:
        message = json.loads(line)
    except json.JSONDecodeError as err:
        raise ModelError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from err
    if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
        raise ModelError(f"{where}: each line must be a JSON object for one assistant message")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise ModelError(f"{where}: 'content' must be a string or null")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise ModelError(f"{where}: 'tool_calls' must be a list")
    tool_calls = [_parse_call(where, number, n, call) for n, call in enumerate(calls)]
    reply: Message = {**message, "role": "assistant", "content": content or ""}
    reply.pop("tool_calls", None)
    if tool_calls:
        reply["tool_calls"] = tool_calls
    if "usage" in reply:
        reply["usage"] = _parse_usage(where, reply["usage"])
    return reply


def _parse_usage(where: str, usage: Any) -> dict[str, int]:
    if not isinstance(usage, dict) or not set(usage) <= set(USAGE_KEYS):
        raise ModelError(f"{where}: 'usage' must be an object with some of {', '.join(USAGE_KEYS)}")
    if not all(
        isinstance(value, int) and not isinstance(value, bool) and value >= 0 for value in usage.values()
    ):
        raise ModelError(f"{where}: the counts in 'usage' must be whole numbers >= 0")
    return dict(usage)


def _parse_call(where: str, line: int, n: int, call: Any) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ModelError(f"{where}: tool call {n} needs a 'function' object with a string 'name'")
    arguments = function.get("arguments", "{}")
    if not isinstance(arguments, str):
        raise ModelError(f"{where}: tool call {n}: 'arguments' must be a JSON-encoded string")
    return {
        "id": str(call.get("id") or f"call_{line}_{n}"),
        "type": "function",
        "function": {"name": function["name"], "arguments": arguments},
    }


def prompt_text(messages: list[Message], tools: list[ToolSchema]) -> str:
    """The text a prompt carries, for estimating its tokens."""
    parts = [json.dumps(tools)] if tools else []
    for message in messages:
        parts.append(str(message.get("content") or ""))
        parts.extend(json.dumps(call) for call in message.get("tool_calls") or [])
    return "\n".join(parts)


def _chunks(text: str) -> list[str]:
    size = max(1, -(-len(text) // STREAM_CHUNKS))
    return [text[i : i + size] for i in range(0, len(text), size)]


class ScriptedClient:
    context_window: int = 128_000

    def __init__(self, path: Path | str, start: int = 0) -> None:
        if start < 0:
            raise ModelError(f"start must be >= 0, not {start}")
        self.path = Path(path)
        self.name = f"scripted:{self.path.name}"
        self.replies = load_script(self.path)
        self.consumed = start

    @property
    def remaining(self) -> int:
        return max(0, len(self.replies) - self.consumed)

    def count_tokens(self, messages: list[Message], tools: list[ToolSchema]) -> tuple[int, bool]:
        return estimate_tokens(prompt_text(messages, tools)), False

    def complete(
        self, messages: list[Message], tools: list[ToolSchema], on_token: TokenCallback | None = None
    ) -> Completion:
        if not self.remaining:
            raise ScriptExhausted(
                f"the script {self.path} has no reply left: all {len(self.replies)} were used"
                " and the agent asked for another"
            )
        reply = copy.deepcopy(self.replies[self.consumed])  # callers may edit the message they get
        self.consumed += 1
        given = reply.pop("usage", {})
        if on_token:
            for piece in _chunks(reply["content"]):
                on_token(piece)
        spoken = reply["content"] + json.dumps(reply.get("tool_calls", []))
        estimate = {
            "prompt_tokens": self.count_tokens(messages, tools)[0],
            "completion_tokens": estimate_tokens(spoken),
        }
        usage = Usage(**(estimate | given))
        return Completion(reply, usage, "tool_calls" if reply.get("tool_calls") else "stop")
