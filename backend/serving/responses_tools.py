"""The tools of an OpenAI Responses request: what the chat template is shown, and how calls go back.

``template_tools`` turns a request's ``tools`` into the OpenAI-shaped functions the chat
template lists; ``call_shapes`` says, per tool name, how the model's call to it goes back
(``responses_replies.py``).

- ``function`` tools: ``name``, ``description``, ``parameters`` (``strict`` accepted, not
  enforced); a call is a ``function_call`` item.
- ``custom`` (freeform) tools, as Codex sends ``apply_patch``: shown as a function of one
  string parameter, ``input``, whose description carries the tool's grammar (lark or regex)
  when it has one. The grammar is shown, not enforced (there is no constrained decoding
  here). A call is a ``custom_tool_call`` item whose ``input`` is that string.
- ``namespace`` tools (a named group of function or custom tools, as Codex sends its
  sub-agent tools): flattened, each tool's description after the group's; a call carries the
  group's name as ``namespace``. Tool names must be unique across the request.
- Tools the provider runs itself (``HOSTED``: web search, file search, code interpreter,
  image generation, computer use, remote MCP): there is nothing here to run them, so they are
  not shown to the model and the rest of the request is served, as if the client had not
  offered them. Any other type (``local_shell``...) is a 400 naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from codeagent.backend.serving.api_checks import get_field, invalid

CUSTOM_INPUT = "input"  # the one parameter a custom tool is shown to the model with
HOSTED = (
    "web_search",
    "web_search_preview",
    "file_search",
    "code_interpreter",
    "image_generation",
    "computer_use_preview",
    "mcp",
)


@dataclass(frozen=True, slots=True)
class Shape:
    """How a call to one tool goes back: a custom tool's item, and the namespace it was in."""

    custom: bool = False
    namespace: str | None = None


def _listed(tools: list[Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """Each function or custom tool with where it is and its namespace, hosted tools left out."""
    for i, tool in enumerate(tools):
        at = f"tools[{i}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "namespace":
            if not isinstance(tool.get("name"), str) or not tool["name"]:
                raise invalid(f"{at}.name", f"{at}: a namespace needs a name")
            inner = get_field(tool, "tools", list, "a list of tools")
            for j, member in enumerate(inner):
                if not isinstance(member, dict) or member.get("type") not in ("function", "custom"):
                    raise invalid(f"{at}.tools[{j}]", f"{at}.tools[{j}]: a namespace holds function tools")
                yield f"{at}.tools[{j}]", member, tool
        elif kind in ("function", "custom"):
            yield at, tool, None
        elif kind not in HOSTED:
            raise invalid(at, f"{at}: tools of type {kind!r} are not served")


def _parameters(tool: dict[str, Any], at: str) -> dict[str, Any]:
    parameters = tool.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise invalid(f"{at}.parameters", "'parameters' must be a JSON schema object")
    return parameters


def _freeform(tool: dict[str, Any], at: str) -> dict[str, Any]:
    """A custom tool's one string parameter; its grammar, if any, in the description."""
    text_format = get_field(tool, "format", dict, "an object", {"type": "text"})
    described = "The tool's whole input, as raw text."
    if text_format.get("type") == "grammar":
        syntax, definition = text_format.get("syntax"), text_format.get("definition")
        if not isinstance(definition, str):
            raise invalid(f"{at}.format", f"{at}: a grammar format needs a string 'definition'")
        described += f" It must match this {syntax} grammar:\n{definition}"
    elif text_format.get("type") != "text":
        raise invalid(f"{at}.format", f"{at}: a custom tool's format must be text or grammar")
    schema = {"type": "string", "description": described}
    return {"type": "object", "properties": {CUSTOM_INPUT: schema}, "required": [CUSTOM_INPUT]}


def template_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    names: set[str] = set()
    for at, tool, namespace in _listed(get_field(body, "tools", list, "a list of tools", [])):
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"{at}.name", f"{at}: each tool needs a name")
        if name in names:
            raise invalid(f"{at}.name", f"{at}: two tools are named {name!r}")
        names.add(name)
        custom = tool["type"] == "custom"
        function = {"name": name, "parameters": _freeform(tool, at) if custom else _parameters(tool, at)}
        described = [d for d in ((namespace or {}).get("description"), tool.get("description")) if d]
        if all(isinstance(d, str) for d in described) and described:
            function["description"] = "\n\n".join(described)
        out.append({"type": "function", "function": function})
    return out


def call_shapes(tools: list[Any]) -> dict[str, Shape]:
    """Per tool name (of a request already checked), how a call to it goes back."""
    return {
        tool["name"]: Shape(tool["type"] == "custom", namespace["name"] if namespace else None)
        for _, tool, namespace in _listed(tools)
    }
