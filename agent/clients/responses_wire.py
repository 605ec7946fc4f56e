"""The agent's OpenAI-chat-shaped conversation as an OpenAI Responses request body.

Stateless: every request carries the whole conversation as ``input`` items with
``store: false``, and no ``previous_response_id``.

- The leading system messages (the pinned prefix) become ``instructions``; a system message
  later on becomes a ``developer`` message item.
- User messages become ``message`` items with ``input_text``; tool results become
  ``function_call_output`` items keyed by ``call_id``.
- An assistant message becomes an ``output_text`` message item and a ``function_call`` item
  per tool call. One that carries ``_replay["openai-responses"]`` (the output items as the
  API returned them, reasoning items with their ``encrypted_content``) is sent as those
  items, in their order, without their ``id``: with ``store: false`` the API keeps nothing,
  so a reasoning model's earlier reasoning reaches it only through ``encrypted_content``,
  and an item id sent back makes it look for a stored item and fail ("Item with id 'rs_...'
  not found").
- Tool schemas become function tools (``{"type": "function", name, description, parameters}``).
- For reasoning models, ``include: ["reasoning.encrypted_content"]`` asks for the encrypted
  reasoning to carry back; other models refuse that field, so it is sent only to models
  whose name says they reason (o1, o3, o4, gpt-5, codex) or when an effort is set.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from codeagent.agent.clients.wire import split_system, text_of, tool_function
from codeagent.agent.protocol import Message, ToolSchema

Item = dict[str, Any]
REASONING_MODELS = ("o1", "o3", "o4", "gpt-5", "codex")


def reasons(model: str, effort: str | None) -> bool:
    name = model.rsplit("/", 1)[-1].lower()
    if effort is not None:
        return True
    return (name.startswith(REASONING_MODELS) or "codex" in name) and "chat" not in name  # gpt-5-chat: no


def request_body(
    model: str, messages: list[Message], tools: list[ToolSchema], options: dict[str, Any]
) -> dict[str, Any]:
    texts, rest = split_system(messages)
    body: dict[str, Any] = {"model": model, "store": False, **options}
    if texts:
        body["instructions"] = "\n\n".join(texts)
    body["input"] = [item for message in rest for item in _items(message)]
    if tools:
        body["tools"] = [_tool(schema) for schema in tools]
    return body


def _items(message: Message) -> list[Item]:
    role = message.get("role")
    text = text_of(message.get("content"))
    if role == "assistant":
        return _assistant(message, text)
    if role == "tool":
        return [
            {
                "type": "function_call_output",
                "call_id": str(message.get("tool_call_id") or ""),
                "output": text,
            }
        ]
    role = "developer" if role == "system" else "user"
    return [{"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}]


def _assistant(message: Message, text: str) -> list[Item]:
    replay = message.get("_replay")
    if isinstance(replay, dict) and isinstance(replay.get("openai-responses"), list):
        return [
            {k: copy.deepcopy(v) for k, v in item.items() if k != "id"} for item in replay["openai-responses"]
        ]
    items: list[Item] = []
    if text:
        items.append(
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
        )
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        items.append(
            {
                "type": "function_call",
                "call_id": str(call.get("id") or ""),
                "name": str(function.get("name") or ""),
                "arguments": arguments if isinstance(arguments, str) else _json(arguments),
            }
        )
    return items


def _json(value: Any) -> str:
    return json.dumps(value if value is not None else {})


def _tool(schema: ToolSchema) -> dict[str, Any]:
    function = tool_function(schema)
    tool = {
        "type": "function",
        "name": function["name"],
        "parameters": function.get("parameters") or {"type": "object"},
        "strict": False,  # strict mode wants every property required; the tools' schemas have optional ones
    }
    if function.get("description"):
        tool["description"] = function["description"]
    return tool
