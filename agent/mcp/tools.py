"""MCP tools as codeagent tools: ``server__tool``, with the server's JSON schema.

Each tool a server lists becomes an ``McpTool`` that meets ``tools.base.Tool`` by shape. Its
name is ``SERVER__TOOL`` (characters outside ``[A-Za-z0-9_-]`` become ``_``, cut to 64: what
the model APIs accept), its description is the server's, marked with the server's name, and
its parameters are the server's input schema. Before a call, the arguments are validated
against that schema (``jsonschema``, which the SDK depends on); a mismatch is answered with
what is wrong and nothing is sent.

Approval: an MCP tool runs outside the sandbox (a stdio server is a process on the host),
so ``approval`` is ``"ask"``: the policy asks the user in every mode and refuses where
nobody can answer (headless ``fix`` and the evals) unless the user's config allows the tool
(``allowed_tools = ["server__tool", "server__*"]``, shell-style patterns), which makes it
``"allowed"``. ``mutates`` follows the server's ``readOnlyHint``: it decides only whether a
plan must exist first and a checkpoint is taken, never whether the call is approved.

Results are text only: text blocks joined, images, audio and resources one line each
(``[image image/png, 1234 bytes]``), structured content as JSON when there is no text; cut
to the tools' output cap (``settings.max_output_chars``) as command output is. A result the
server marks as an error is an error observation. The values the user's config gives the
server (``env``, ``headers``) are redacted from its results as ``[secret:SERVER.NAME]``: the
run's own known secrets do not include them.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import jsonschema
from mcp import types

from codeagent.agent.mcp.client import McpFailure
from codeagent.sandbox.process import clip_middle
from codeagent.sandbox.secrets import KnownSecrets
from codeagent.tools.base import Observation, ToolEnv, ToolError

MAX_DESCRIPTION = 2000
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class Caller(Protocol):
    def call(
        self, server: str, tool: str, arguments: dict[str, Any], timeout: float
    ) -> types.CallToolResult: ...


@dataclass(slots=True)
class McpTool:
    name: str
    description: str
    parameters: dict[str, Any]
    mutates: bool
    approval: str  # "ask" or "allowed" (by the user's config)
    server: str
    remote_name: str
    caller: Caller
    timeout: float
    secrets: KnownSecrets = field(default_factory=KnownSecrets)  # the server's configured values

    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        problem = schema_problem(args, self.parameters)
        if problem is not None:
            raise ToolError(f"arguments of {self.name} do not match its schema ({problem}); nothing was sent")
        timeout = env.time_left(self.timeout)
        try:
            result = self.caller.call(self.server, self.remote_name, args, timeout)
        except McpFailure as err:
            raise ToolError(str(err)) from err
        text = clip_middle(self.secrets.redact(result_text(result)), env.settings.max_output_chars)
        return Observation(
            text, ok=not result.is_error, data={"server": self.server, "tool": self.remote_name}
        )


def tool_name(server: str, tool: str) -> str:
    return _UNSAFE.sub("_", f"{server}__{tool}")[:64]


def adapt(
    server: str,
    listed: list[types.Tool],
    caller: Caller,
    allowed: list[str],
    timeout: float,
    secrets: KnownSecrets | None = None,
) -> tuple[list[McpTool], list[str]]:
    """``server``'s tools as codeagent tools, and one line for each tool left out."""
    tools: dict[str, McpTool] = {}
    notes = []
    for tool in listed:
        name = tool_name(server, tool.name)
        schema = {key: value for key, value in tool.input_schema.items() if key != "$schema"}
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as err:
            notes.append(f"mcp: {name} left out: its input schema is invalid ({err.message})")
            continue
        if name in tools:
            notes.append(f"mcp: {server}: tool {tool.name!r} left out: its name clashes as {name}")
            continue
        read_only = bool(tool.annotations and tool.annotations.read_only_hint)
        described = f"[MCP server {server}] {tool.description or tool.title or tool.name}"
        tools[name] = McpTool(
            name,
            described[:MAX_DESCRIPTION],
            schema,
            mutates=not read_only,
            approval="allowed" if allowed_by(name, allowed) else "ask",
            server=server,
            remote_name=tool.name,
            caller=caller,
            timeout=timeout,
            secrets=secrets or KnownSecrets(),
        )
    return list(tools.values()), notes


def allowed_by(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def schema_problem(args: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """What is wrong with ``args`` under ``schema`` (up to three errors), or None."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(args), key=lambda error: list(error.absolute_path))
    if not errors:
        return None
    shown = []
    for error in errors[:3]:
        where = "/".join(str(part) for part in error.absolute_path)
        shown.append(f"{where}: {error.message}" if where else error.message)
    return "; ".join(shown)


def result_text(result: types.CallToolResult) -> str:
    parts = [_block(block) for block in result.content]
    if (
        not any(isinstance(block, types.TextContent) for block in result.content)
        and result.structured_content
    ):
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(parts)
    return text if text else "(the tool returned nothing)"


def _block(block: Any) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        kind = "image" if isinstance(block, types.ImageContent) else "audio"
        return f"[{kind} {block.mime_type}, {_decoded_size(block.data)} bytes, not shown]"
    if isinstance(block, types.ResourceLink):
        return f"[resource link {block.uri}{f' ({block.mime_type})' if block.mime_type else ''}]"
    if isinstance(block, types.EmbeddedResource):
        resource = block.resource
        mime = f" ({resource.mime_type})" if resource.mime_type else ""
        return f"[resource {resource.uri}{mime}, not shown]"
    return f"[{getattr(block, 'type', 'unknown')} content, not shown]"


def _decoded_size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except ValueError:
        return len(data)
