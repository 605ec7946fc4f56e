"""The MCP servers' tools for a command's runs: started before the run, closed after it.

``headless`` (``fix``) starts the user's servers and the repository's that the user's
config trusts; ``interactive`` (the terminal UI, before its screen opens) also asks, on the
terminal, about each repository server the config does not trust, showing what it would run.
What a repository's ``.mcp.json`` says is untrusted text: every line goes through ``inert``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from codeagent.agent.config import Config
from codeagent.agent.mcp.config import PlannedServer
from codeagent.agent.mcp.hub import McpServers, open_servers
from codeagent.tui.inert import inert


def say(line: str) -> None:
    print(inert(f"codeagent: {line}"), file=sys.stderr)


def headless(config: Config, root: Path) -> McpServers:
    return open_servers(config.mcp, root, say)


def interactive(config: Config, root: Path) -> McpServers:
    return open_servers(config.mcp, root, say, approve=ask)


def ask(server: PlannedServer) -> bool:
    """The user's answer, on the terminal, to starting an untrusted repository server."""
    question = (
        f"codeagent: the repository's {server.source} asks to start MCP server {server.name!r}, which runs "
        f"on this machine, outside the sandbox:\n  {server.config.shown()}\nstart it for this session? [y/N] "
    )
    try:
        return input(inert(question)).strip().lower() in ("y", "yes")
    except EOFError:
        return False
