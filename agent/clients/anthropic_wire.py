"""The agent's OpenAI-shaped conversation as an Anthropic Messages request body.

- The leading system messages (the pinned prefix: system prompt, memory files, repository
  context) become ``system`` text blocks; a system message later on becomes user text.
- Tool schemas become ``{name, description, input_schema}``.
- An assistant message becomes blocks: text, then a ``tool_use`` per tool call (its arguments
  parsed: ``input`` is an object). One that carries ``_replay["anthropic"]`` (the content
  blocks exactly as the API returned them, thinking blocks and their signatures included) is
  sent as those blocks, unchanged: the API checks that thinking comes back as it was given.
- Tool results become ``tool_result`` blocks in a user message; consecutive messages of one
  role are merged into one message, so results follow their ``tool_use`` directly.
- Prompt caching: ``cache_control: {"type": "ephemeral"}`` on the last system block (the end
  of the pinned prefix; tools come before system in the cache order, so it covers them too,
  or on the last tool when there is no system), and on the last block of the latest turn, so
  the next request reads the conversation so far from the cache. Two of the four allowed.

Not covered: images and documents (the agent sends text only).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from codeagent.agent.clients.wire import arguments, split_system, text_of, tool_function
from codeagent.agent.protocol import Message, ToolSchema

Block = dict[str, Any]
CACHE = {"type": "ephemeral"}
UNCACHEABLE = {"thinking", "redacted_thinking"}  # blocks that may not carry cache_control
NOT_AN_ID = re.compile(r"[^a-zA-Z0-9_-]")  # tool_use ids must match ^[a-zA-Z0-9_-]+$


def request_body(
    model: str, messages: list[Message], tools: list[ToolSchema], options: dict[str, Any]
) -> dict[str, Any]:
    texts, rest = split_system(messages)
    body: dict[str, Any] = {"model": model, **options}
    system = [{"type": "text", "text": text} for text in texts]
    if tools:
        body["tools"] = [_tool(schema) for schema in tools]
    if system:
        body["system"] = system
        system[-1]["cache_control"] = dict(CACHE)
    elif tools:
        body["tools"][-1]["cache_control"] = dict(CACHE)
    body["messages"] = turns(rest)
    _mark_latest(body["messages"])
    return body


def turns(messages: list[Message]) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = []
    for message in messages:
        role, blocks = _blocks(message)
        if not blocks:
            continue  # an empty assistant reply: the API refuses empty text blocks
        if wire and wire[-1]["role"] == role:
            wire[-1]["content"].extend(blocks)
        else:
            wire.append({"role": role, "content": blocks})
    return wire


def call_id(value: Any) -> str:
    return NOT_AN_ID.sub("_", str(value or "")) or "call"


def _blocks(message: Message) -> tuple[str, list[Block]]:
    role = message.get("role")
    if role == "assistant":
        return "assistant", _assistant(message)
    if role == "tool":
        result: Block = {"type": "tool_result", "tool_use_id": call_id(message.get("tool_call_id"))}
        text = text_of(message.get("content"))
        if text:
            result["content"] = text
        return "user", [result]
    text = text_of(message.get("content"))
    return "user", [{"type": "text", "text": text}] if text else []


def _assistant(message: Message) -> list[Block]:
    replay = message.get("_replay")
    if isinstance(replay, dict) and isinstance(replay.get("anthropic"), list):
        return copy.deepcopy(replay["anthropic"])
    blocks: list[Block] = []
    text = text_of(message.get("content"))
    if text:
        blocks.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call_id(call.get("id")),
                "name": str(function.get("name") or ""),
                "input": arguments(function.get("arguments")),
            }
        )
    return blocks


def _tool(schema: ToolSchema) -> dict[str, Any]:
    function = tool_function(schema)
    tool = {"name": function["name"], "input_schema": function.get("parameters") or {"type": "object"}}
    if function.get("description"):
        tool["description"] = function["description"]
    return tool


def _mark_latest(messages: list[dict[str, Any]]) -> None:
    if not messages:
        return
    for block in reversed(messages[-1]["content"]):
        if block.get("type") not in UNCACHEABLE:
            block["cache_control"] = dict(CACHE)
            return
