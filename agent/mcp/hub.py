"""Starting a session's MCP servers and collecting their tools, once, for any front end.

``open_servers`` plans the servers (``config.plan_servers``: the user's, then the
repository's ``.mcp.json``), starts each approved one, asks ``approve`` about each project
server the user's config does not trust (the terminal UI can; headless front ends pass
None, and then such a server is left out with a line saying how to trust it), and adapts
the tools (``tools.adapt``). Every server left out or failing costs one line through
``say``, and the session goes on without its tools. ``McpServers.close`` shuts them all
down; it is a context manager for that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from codeagent.agent.mcp.client import Connections, Launch, McpFailure
from codeagent.agent.mcp.config import (
    McpConfig,
    PlannedServer,
    plan_servers,
    server_args,
    server_env,
    trust_snippet,
)
from codeagent.agent.mcp.tools import McpTool, adapt
from codeagent.sandbox.secrets import KnownSecrets

Approve = Callable[[PlannedServer], bool]  # True: start this project server


@dataclass(slots=True)
class McpServers:
    """The started servers' tools and their connections."""

    connections: Connections
    tools: list[McpTool] = field(default_factory=list)
    started: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.connections.close()

    def __enter__(self) -> McpServers:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_servers(
    config: McpConfig,
    root: Path,
    say: Callable[[str], None],
    approve: Approve | None = None,
    log_dir: Path | None = None,
) -> McpServers:
    """Start the servers for a session in ``root``; never raises for a server's failure."""
    planned, notes = plan_servers(config, root)
    for note in notes:
        say(f"mcp: {note}")
    servers = McpServers(Connections(config.connect_timeout, log_dir))
    for server in planned:
        if not server.approved and not (approve is not None and approve(server)):
            say(_untrusted(server))
            continue
        _start(servers, server, config, root, say)
    return servers


def _start(
    servers: McpServers, server: PlannedServer, config: McpConfig, root: Path, say: Callable[[str], None]
) -> None:
    launch = Launch(
        server.name,
        server.config,
        server_args(server.config, root),
        server_env(server.config, server.source),
        Path(server.config.cwd).expanduser() if server.config.cwd and server.source == "config" else None,
    )
    try:
        listed = servers.connections.connect(launch)
    except McpFailure as err:
        where = f" (its stderr: {servers.connections.log_path(server.name)})" if server.config.stdio else ""
        say(f"mcp: server {server.name!r} not started: {err}{where}; going on without its tools")
        return
    given = {**launch.env, **server.config.headers}
    secrets = KnownSecrets.of((f"{server.name}.{key}", value) for key, value in given.items())
    tools, notes = adapt(
        server.name, listed, servers.connections, config.allowed_tools, config.call_timeout, secrets
    )
    for note in notes:
        say(note)
    taken = {tool.name for tool in servers.tools}
    servers.tools.extend(tool for tool in tools if tool.name not in taken)
    servers.started.append(server.name)


def _untrusted(server: PlannedServer) -> str:
    return (
        f"mcp: server {server.name!r} from the repository's {server.source} not started: it would run "
        f"{server.config.shown()!r} on this machine and you have not approved it; to trust it, add to "
        f"your config:\n{trust_snippet(server.config)}"
    )
