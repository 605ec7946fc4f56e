"""The Anthropic Messages requests the server takes, checked and translated to one prompt.

``messages_request`` turns a ``POST /v1/messages`` body into an ``ApiRequest``;
``count_prompt`` renders a ``POST /v1/messages/count_tokens`` body to the very prompt a
message would be given (``input_tokens`` is its length: the model's own template and
tokenizer). The conversation is translated to the OpenAI-shaped messages the chat template
takes (``chat/prompt.py``): ``system`` (a string or text blocks) becomes a system message, and so
does a message with the role ``system`` where it stands (Claude Code sends one after its
first user turn); user ``text`` blocks become user text, ``tool_result`` blocks (content a
string or text blocks) tool messages, in order; assistant ``text``, ``thinking`` and
``tool_use`` blocks become one assistant message with content, ``reasoning_content`` and
tool calls (``input`` serialised as JSON arguments), so a reply sent back is recognised and
rendered as the model wrote it (``chat/continuity.py``). ``redacted_thinking`` blocks are
dropped and ``cache_control`` marks ignored: prefix caching is automatic.

Claude Code (2.1.197 here) sends billing metadata as its first system block,
``x-anthropic-billing-header: cc_version=2.1.197.90a; cc_entrypoint=sdk-cli;``, whose last
part of the version comes from the conversation's first message: it differs between sessions
(and, with other settings, between requests) 24 tokens into a prompt whose next 24,000
tokens, its instructions and tool schemas, are the same every time, so the prefix cache could
never reuse them. It is a header for Anthropic's billing, not text for the model: that line
is dropped from the system block it starts (``CLAUDE_CODE_ATTRIBUTION_HEADER=0`` stops
Claude Code sending it).

Served: ``max_tokens`` (required; clipped to the room left in the context window),
``stop_sequences`` (up to 16), ``stream``, ``tools`` (custom tools with ``input_schema``),
``tool_choice`` (auto, any, tool, none), ``thinking``: ``enabled``, ``adaptive`` and
``between_tools`` render with the template's ``enable_thinking=True``, ``disabled`` with
``False`` (the family's reasoning markup is parsed either way and comes back as thinking
blocks); and the sampling fields older models take, ``temperature`` (0 to 1), ``top_p`` and
``top_k``. Accepted, not acted on: ``metadata``, ``service_tier``, ``cache_control`` (prefix
caching is automatic), ``output_config.effort``, ``thinking.budget_tokens`` and
``thinking.display`` (reasoning counts against ``max_tokens`` only and is always shown),
and fields this module does not know (clients send beta fields). Enforced by constrained
decoding (``grammar/``): the tools' schemas, ``tool_choice``, ``disable_parallel_tool_use`` and
``output_config.format`` (``json_schema``: structured outputs). Refused with a 400 naming the
field: other content blocks (images, documents, server tool results), server tools (a
``type`` other than custom), ``mcp_servers``, ``container``, and a
conversation that ends with an assistant message (a prefill to continue). A
``tool_result``'s ``is_error`` is rendered as an ``Error:`` prefix on its text, since chat
templates have no field for it.

Errors are ``ApiError``s; ``anthropic_replies.py`` reshapes them and shapes the answers.
"""

from __future__ import annotations

import json
from typing import Any

from codeagent.backend.chat.model import ChatModel
from codeagent.backend.chat.prompt import Prompt, chat_prompt
from codeagent.backend.chat.template import TemplateRenderError
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.serving.api_checks import (
    ApiRequest,
    get_field,
    invalid,
    model_name,
    new_id,
    number,
    room,
    stop_strings,
)

UNSERVED = ("mcp_servers", "container")
BILLING_HEADER = "x-anthropic-billing-header:"  # Claude Code's first system block: metadata, not prompt
CHOICES = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}


def _text(block: dict[str, Any], where: str) -> str:
    if not isinstance(block.get("text"), str):
        raise invalid(where, f"{where}: a text block needs a string 'text'")
    return block["text"]


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Content as a list of blocks: a string is one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise invalid(where, f"'{where}' must be a string or a list of content blocks", "invalid_type")
    return content


def _joined_text(content: Any, where: str) -> str:
    blocks = _blocks(content if content is not None else "", where)
    for i, block in enumerate(blocks):
        if block.get("type") != "text":
            raise invalid(f"{where}[{i}]", f"{where}[{i}]: only text blocks are served here")
    return "".join(_text(block, f"{where}[{i}]") for i, block in enumerate(blocks))


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    text: list[str] = []
    for i, block in enumerate(_blocks(content, where)):
        kind, at = block.get("type"), f"{where}[{i}]"
        if kind == "text":
            text.append(_text(block, at))
        elif kind == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise invalid(at, f"{at}: a tool_result needs 'tool_use_id'")
            result = _joined_text(block.get("content"), f"{at}.content")
            if block.get("is_error"):
                result = f"Error: {result}"
            out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": result})
        else:
            raise invalid(at, f"{at}: content blocks of type {kind!r} are not served in user turns")
    return [*out, {"role": "user", "content": "".join(text)}] if text or not out else out


def _assistant(content: Any, where: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": ""}
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(_blocks(content, where)):
        kind, at = block.get("type"), f"{where}[{i}]"
        if kind == "text":
            message["content"] += _text(block, at)
        elif kind == "thinking":
            message["reasoning_content"] = message.get("reasoning_content", "") + str(
                block.get("thinking", "")
            )
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise invalid(at, f"{at}: a tool_use needs 'id' and 'name'")
            if not isinstance(block.get("input", {}), dict):
                raise invalid(at, f"{at}: a tool_use's 'input' must be an object")
            arguments = json.dumps(block.get("input", {}), ensure_ascii=False)
            function = {"name": block["name"], "arguments": arguments}
            calls.append({"id": block["id"], "type": "function", "function": function})
        elif kind != "redacted_thinking":
            raise invalid(at, f"{at}: content blocks of type {kind!r} are not served in assistant turns")
    return {**message, "tool_calls": calls} if calls else message


def _system(system: Any) -> str:
    """The system prompt without Claude Code's billing header line (see the module's docstring)."""
    blocks = []
    for block in _blocks(system, "system"):
        text = block.get("text")
        if block.get("type") == "text" and isinstance(text, str) and text.startswith(BILLING_HEADER):
            block = {**block, "text": text.partition("\n")[2]}
        blocks.append(block)
    return _joined_text(blocks, "system")


def _conversation(body: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    if body.get("system") is not None:
        out.append({"role": "system", "content": _system(body["system"])})
    messages = get_field(body, "messages", list, "a list of messages")
    if not messages:
        raise invalid("messages", "'messages' is empty")
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant", "system"):
            raise invalid(f"messages[{i}].role", f"messages[{i}]: 'role' must be user, assistant or system")
        if role == "assistant" and i == len(messages) - 1:
            raise invalid(f"messages[{i}]", "a last assistant message (a prefill to continue) is not served")
        content = get_field(message, "content", (str, list), "a string or a list of content blocks")
        where = f"messages[{i}].content"
        if role == "system":
            out.append({"role": "system", "content": _joined_text(content, where)})
        else:
            out += _user(content, where) if role == "user" else [_assistant(content, where)]
    return out


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(get_field(body, "tools", list, "a list of tools", [])):
        at = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "custom") != "custom":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise invalid(at, f"{at}: only custom tools are served, not {kind!r}")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise invalid(f"{at}.name", f"{at}: each tool needs a name")
        if not isinstance(tool.get("input_schema"), dict):
            raise invalid(f"{at}.input_schema", f"{at}: 'input_schema' must be a JSON schema object")
        function = {"name": tool["name"], "parameters": tool["input_schema"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(body: dict[str, Any], tools: list[dict[str, Any]]) -> tuple[str, str | None]:
    choice = get_field(body, "tool_choice", dict, "an object", {"type": "auto"})
    kind = CHOICES.get(choice.get("type"))
    if kind is None:
        raise invalid("tool_choice", "'tool_choice.type' must be auto, any, tool or none")
    if not tools:
        if kind in ("required", "function"):
            raise invalid("tool_choice", f"'tool_choice' is {choice['type']!r} but no tools were given")
        return "none", None
    if kind != "function":
        return kind, None
    names = {tool["function"]["name"] for tool in tools}
    if choice.get("name") not in names:
        raise invalid("tool_choice", f"'tool_choice.name' must name one of the tools: {sorted(names)}")
    return kind, choice["name"]


def _options(body: dict[str, Any]) -> dict[str, Any]:
    thinking = get_field(body, "thinking", dict, "an object", None)
    if thinking is None:
        return {}
    kind = thinking.get("type")
    if kind not in ("enabled", "adaptive", "between_tools", "disabled"):
        raise invalid("thinking", "'thinking.type' must be enabled, adaptive, between_tools or disabled")
    if kind == "enabled" and get_field(thinking, "budget_tokens", int, "an integer") < 1:
        raise invalid("thinking.budget_tokens", "'thinking.budget_tokens' must be at least 1")
    return {"enable_thinking": kind != "disabled"}


def _output_format(body: dict[str, Any]) -> dict[str, Any] | None:
    """Structured outputs: the JSON schema ``output_config.format`` asks for, decoded under it."""
    output = get_field(
        get_field(body, "output_config", dict, "an object", {}), "format", dict, "an object", None
    )
    if output is None:
        return None
    if output.get("type") != "json_schema" or not isinstance(output.get("schema"), dict):
        raise invalid(
            "output_config.format", "'output_config.format' must be {'type': 'json_schema', 'schema': {...}}"
        )
    return output["schema"]


def count_prompt(body: dict[str, Any], model: ChatModel) -> Prompt:
    """The prompt a message with this body would be given (what its input tokens count)."""
    model_name(body, model)
    for name in UNSERVED:
        if body.get(name):
            raise invalid(name, f"'{name}' is not served")
    output = _output_format(body)
    tools = _tools(body)
    choice, function = _tool_choice(body, tools)
    parallel = not get_field(body, "tool_choice", dict, "an object", {}).get("disable_parallel_tool_use")
    conversation, options = _conversation(body), _options(body)
    try:
        return chat_prompt(model, conversation, tools, choice, function, options, output, parallel)
    except TemplateRenderError as err:
        raise invalid("messages", f"the conversation cannot be rendered: {err}") from err


def _sampling(body: dict[str, Any], prompt: Prompt, model: ChatModel) -> SamplingParams:
    left = room(model, len(prompt.ids), "messages")
    max_tokens = get_field(body, "max_tokens", int, "an integer")
    if max_tokens < 1:
        raise invalid("max_tokens", "'max_tokens' must be at least 1")
    top_k = get_field(body, "top_k", int, "an integer", 0)
    if top_k < 0:
        raise invalid("top_k", "'top_k' must be 0 (off) or positive")
    top_p = number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0:
        raise invalid("top_p", "'top_p' must be above 0")
    return SamplingParams(
        temperature=number(body, "temperature", 1.0, 0.0, 1.0),
        top_k=top_k,
        top_p=top_p,
        max_tokens=min(max_tokens, left),
        stop=tuple(stop_strings(body, "stop_sequences")),
    )


def messages_request(body: dict[str, Any], model: ChatModel) -> ApiRequest:
    get_field(body, "max_tokens", int, "an integer")  # required: checked before any rendering
    prompt = count_prompt(body, model)
    stream = get_field(body, "stream", bool, "a boolean", False)
    params = _sampling(body, prompt, model)
    return ApiRequest(body["model"], prompt, params, stream, False, new_id("msg", "_"))
