"""``codeagent mcp``: codeagent's own tools offered to other agents, as an MCP server over stdio.

One server works on one repository (``Workspace``: its ``ToolEnv``, opened by the command
line from the same ``RunConfig`` the agent's runs use). It offers ``EXPOSED``: the repo map,
search, the tolerant edit, the patch and ``run``, each with the name, description and JSON
schema of the tool's own definition (``tools/specs.toml``), marked read-only or not from the
tool's ``mutates``. A call goes through the agent's path for a tool call, less the model's
loop: ``tools.base.run_tool`` (arguments checked against the schema), paths confined by the
tools themselves (``ToolEnv.resolve``: nothing outside the root, through links, or inside
``.git``), a checkpoint before every call that can change files (``codeagent undo`` takes it
back, as for the agent's own changes), ``run`` confined by the session's sandbox with the
configured timeout and output cap, and the known secrets redacted from what is sent back.

Results are one text item, cut to ``settings.max_output_chars`` (head and tail kept, as
command output is). A call the tool refused (bad path, no match, bad arguments), an unknown
tool, a refused ``run`` and a protected path a command replaced come back as tool errors
(``isError``) with the tool's message, whose first line says what went wrong; a command
that ran and failed is a result like any other (its last line is its exit code). Where
the sandbox cannot run and the user did not turn it off, ``run`` is refused with the
message the agent's command line gives (``sandbox_refusal``); the other tools still work.

Limits: calls run one at a time in a worker thread (the tools share one ``ToolEnv``), so a
long command holds the others back until its timeout; no time budget bounds a call beyond
the tools' own (``command_timeout``, ``search_timeout``); the repo map ranks toward the files
edited through this server, but files the client read with its own tools are unknown to it
(``focus`` names them). Only stdio is served: the caller is the one agent that started the
process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
from mcp import types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server

from codeagent.agent.run import RunConfig
from codeagent.sandbox.git import GitError, UnsafeRepository
from codeagent.sandbox.process import clip_middle
from codeagent.sandbox.protect import ProtectedPathChanged
from codeagent.sandbox.secrets import KnownSecrets
from codeagent.tools.base import Tool, ToolEnv, run_tool
from codeagent.tools.registry import get_tool

EXPOSED = ("repo_map", "search", "edit_file", "apply_patch", "run")
INSTRUCTIONS = (
    "codeagent's tools on one git repository: repo_map outlines it, search greps it, edit_file "
    "replaces text (tolerant of line endings, trailing spaces and indentation), apply_patch applies "
    "a unified diff, run runs a bash command confined to the repository (bubblewrap: no network "
    "unless allowed, secrets hidden). Paths are relative to the repository root."
)


@dataclass(slots=True)
class Workspace:
    """The one repository a server works on, and how its tools run there."""

    env: ToolEnv
    secrets: KnownSecrets
    sandbox_refusal: str | None = None  # why `run` is refused; None: it runs
    tools: dict[str, Tool] = field(default_factory=lambda: {name: get_tool(name) for name in EXPOSED})
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, root: Path, config: RunConfig, sandbox_refusal: str | None = None) -> Workspace:
        """The tools' environment in ``root`` as ``config`` sets a run's up, with its secrets."""
        env = config.tool_env(root)
        secrets = KnownSecrets.gather(env.root, None, env.settings.secret_env_names)
        return cls(env, secrets, sandbox_refusal)

    def call(self, name: str, args: dict[str, Any]) -> types.CallToolResult:
        """One tool call, as the agent runs it; a refusal as a tool error."""
        tool = self.tools.get(name)
        if tool is None:
            return _error(f"unknown tool {name!r}; available: {', '.join(self.tools)}")
        if name == "run" and self.sandbox_refusal is not None:
            return _error(self.sandbox_refusal)
        with self.lock:
            try:
                if tool.mutates and self.env.checkpoints is not None:
                    self.env.checkpoints.snapshot(f"mcp: before {name}")
                observation = run_tool(tool, args, self.env)
            except (ProtectedPathChanged, UnsafeRepository, GitError) as err:
                return _error(str(err))
        text = clip_middle(self.secrets.redact(observation.text), self.env.settings.max_output_chars)
        failed = not observation.ok and "exit_code" not in observation.data  # a command that ran is a result
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=failed)

    def listing(self) -> list[types.Tool]:
        return [_described(tool) for tool in self.tools.values()]


def _described(tool: Tool) -> types.Tool:
    hints = types.ToolAnnotations(
        read_only_hint=not tool.mutates, destructive_hint=tool.mutates, open_world_hint=False
    )
    return types.Tool(
        name=tool.name, description=tool.description, input_schema=tool.parameters, annotations=hints
    )


def _error(message: str) -> types.CallToolResult:
    line = " ".join(message.split())
    return types.CallToolResult(content=[types.TextContent(type="text", text=line)], is_error=True)


def build_server(workspace: Workspace) -> Server[Any]:
    """The MCP server answering ``tools/list`` and ``tools/call`` for ``workspace``."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=workspace.listing())

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        return await anyio.to_thread.run_sync(workspace.call, params.name, dict(params.arguments or {}))

    return Server(
        "codeagent",
        version=version("codeagent"),
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def serve(workspace: Workspace) -> None:
    """Answer MCP requests on stdin and stdout until the client closes stdin."""
    server = build_server(workspace)

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)
