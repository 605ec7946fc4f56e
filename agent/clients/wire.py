"""Reading the agent's OpenAI-chat-shaped messages, for the clients that translate them to
another wire format (``anthropic_wire.py``, ``responses_wire.py``)."""

from __future__ import annotations

import json
from typing import Any

from codeagent.agent.protocol import Message, ToolSchema, estimate_tokens


def split_system(messages: list[Message]) -> tuple[list[str], list[Message]]:
    """The texts of the leading system messages (the pinned prefix), and the messages after them."""
    leading = 0
    while leading < len(messages) and messages[leading].get("role") == "system":
        leading += 1
    texts = [text_of(m.get("content")) for m in messages[:leading]]
    return [text for text in texts if text], messages[leading:]


def text_of(content: Any) -> str:
    """Text of a message content: a string or a list of parts with ``text``."""
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def arguments(raw: Any) -> dict[str, Any]:
    """A tool call's arguments as an object; {} when the model wrote malformed JSON (the loop
    has told it so already, in the call's tool result)."""
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (json.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def tool_function(schema: dict[str, Any]) -> dict[str, Any]:
    """The ``function`` part of an OpenAI chat tool schema (or the schema, if already flat)."""
    return schema.get("function", schema)


def estimate_prompt(messages: list[Message], tools: list[ToolSchema]) -> int:
    """Tokens a request would take, estimated (no tokenizer on this side); replayed provider
    state counts, ``_raw`` (a copy of the reply for chat templates) does not."""
    sent = [{key: value for key, value in m.items() if key != "_raw"} for m in messages]
    return estimate_tokens(json.dumps(sent) + json.dumps(tools))
