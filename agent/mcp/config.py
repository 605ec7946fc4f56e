"""Which MCP servers a session may start: the user's config and a repository's ``.mcp.json``.

Two sources, trusted differently:

- The user's config (``[mcp.servers.NAME]`` in ``config.toml``) is the user's own word: its
  servers start in every front end, headless ones included.
- A repository's ``.mcp.json`` (``{"mcpServers": {NAME: {"command", "args", "env"}}}``, or
  ``{"type": "http", "url", "headers"}``: the shape other agents read) is repository content,
  which an attacker may write. A stdio server there is a command that would run on the host,
  outside the sandbox, and an HTTP one a request from the host. So a project server starts only
  when the user approved that exact server (type, command, args, env, url, headers) in their
  config (``[[mcp.trusted_project_servers]]``) or, where a front end asks (the terminal UI),
  interactively; headless runs never ask, so a repository's file alone starts nothing there.

Servers run in a folder of codeagent's own, never the repository, so the repository's files
(``node_modules``, a module shadowing an import, an ``.npmrc``) cannot change what an
approved command runs; ``${REPO}`` in ``args`` is replaced by the repository's path for
servers that need it. Environment: the SDK's basics (HOME, PATH, USER, LOGNAME, SHELL, TERM),
the server's ``env`` and, for user servers only, the variables ``env_from`` names.

Left out: ``${VAR}`` expansion in ``.mcp.json``, OAuth for HTTP servers, SSE transport.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PROJECT_FILE = ".mcp.json"
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class McpConfigError(ValueError):
    """A server entry that cannot be used; the message names it."""


class ServerConfig(BaseModel):
    """One server: a stdio command or a streamable HTTP endpoint."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["stdio", "http", "streamable-http"] = "stdio"
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    env_from: list[str] = Field(default_factory=list)  # variables passed from codeagent's environment
    cwd: str | None = None  # None: codeagent's own folder for servers, never the repository
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _transport(self) -> ServerConfig:
        if self.type == "stdio" and not self.command:
            raise ValueError("a stdio server needs a command")
        if self.type != "stdio" and not self.url:
            raise ValueError(f"a {self.type} server needs a url")
        return self

    @property
    def stdio(self) -> bool:
        return self.type == "stdio"

    def identity(self) -> dict[str, Any]:
        """What a user approves when trusting a project server: everything that decides what runs."""
        if self.stdio:
            return {"command": self.command, "args": list(self.args), "env": dict(self.env)}
        return {"url": self.url, "headers": dict(self.headers)}

    def shown(self) -> str:
        """One line naming what would run, with its variables (``NODE_OPTIONS`` can run code
        too), or what would be contacted, with its header names."""
        if not self.stdio:
            names = f" (headers: {', '.join(self.headers)})" if self.headers else ""
            return f"{self.type} {self.url}{names}"
        env = "".join(f"{name}={shlex.quote(value)} " for name, value in self.env.items())
        return env + shlex.join([str(self.command), *self.args])


class TrustedServer(BaseModel):
    """A project server the user approved, matched exactly against ``ServerConfig.identity``."""

    model_config = ConfigDict(extra="forbid")

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    def matches(self, server: ServerConfig) -> bool:
        return self.model_dump(include=set(server.identity())) == server.identity()


class McpConfig(BaseModel):
    """The ``[mcp]`` table of the user's config."""

    model_config = ConfigDict(extra="forbid")

    servers: dict[str, ServerConfig] = Field(default_factory=dict)
    trusted_project_servers: list[TrustedServer] = Field(default_factory=list)
    allowed_tools: list[str] = Field(default_factory=list)  # "server__tool" or "server__*": run unasked
    connect_timeout: float = Field(default=30.0, gt=0)
    call_timeout: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _names(self) -> McpConfig:
        for name in self.servers:
            if not SERVER_NAME.match(name):
                raise ValueError(f"server name {name!r}: use 1-32 letters, digits, _ or -")
        return self

    def trusts(self, server: ServerConfig) -> bool:
        return any(trusted.matches(server) for trusted in self.trusted_project_servers)


@dataclass(frozen=True, slots=True)
class PlannedServer:
    """A server to start (or, for an unapproved project one, to ask about)."""

    name: str
    config: ServerConfig
    source: str  # "config" or ".mcp.json"
    approved: bool


def project_servers(root: Path) -> dict[str, ServerConfig]:
    """The servers of ``root/.mcp.json``; McpConfigError when it is unreadable or malformed."""
    path = root / PROJECT_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise McpConfigError(f"{PROJECT_FILE}: cannot read it: {err}") from err
    entries = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise McpConfigError(f'{PROJECT_FILE}: expected {{"mcpServers": {{NAME: {{...}}}}}}')
    servers = {}
    for name, entry in entries.items():
        servers[str(name)] = _project_entry(str(name), entry)
    return servers


def _project_entry(name: str, entry: Any) -> ServerConfig:
    if not SERVER_NAME.match(name):
        raise McpConfigError(f"{PROJECT_FILE}: server name {name!r}: use 1-32 letters, digits, _ or -")
    if not isinstance(entry, dict):
        raise McpConfigError(f"{PROJECT_FILE}: server {name!r} is not an object")
    # only what decides what runs is read; a project file cannot set cwd or env_from
    known = {key: entry[key] for key in ("type", "command", "args", "env", "url", "headers") if key in entry}
    try:
        return ServerConfig.model_validate(known)
    except ValidationError as err:
        raise McpConfigError(f"{PROJECT_FILE}: server {name!r}: {err.errors()[0]['msg']}") from err


def plan_servers(config: McpConfig, root: Path) -> tuple[list[PlannedServer], list[str]]:
    """The servers for a session in ``root``, and one line for each entry left out."""
    planned = [PlannedServer(name, server, "config", True) for name, server in config.servers.items()]
    notes = []
    try:
        project = project_servers(root)
    except McpConfigError as err:
        return planned, [f"{err}; its servers are left out"]
    for name, server in project.items():
        if name in config.servers:
            notes.append(f"{PROJECT_FILE}: server {name!r} left out: the user config has one of that name")
            continue
        planned.append(PlannedServer(name, server, PROJECT_FILE, config.trusts(server)))
    return planned, notes


def server_env(server: ServerConfig, source: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Variables the server gets on top of the SDK's basics: its ``env``, then (user servers
    only) those ``env_from`` names that are set."""
    environ = dict(os.environ) if environ is None else environ
    passed = (
        {name: environ[name] for name in server.env_from if name in environ} if source == "config" else {}
    )
    return {**server.env, **passed}


def server_args(server: ServerConfig, root: Path) -> list[str]:
    return [arg.replace("${REPO}", str(root)) for arg in server.args]


def trust_snippet(server: ServerConfig) -> str:
    """The TOML a user adds to their config to trust ``server`` (values as in the project file)."""
    lines = ["[[mcp.trusted_project_servers]]"]
    for key, value in server.identity().items():
        if isinstance(value, dict):
            value = "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items()) + " }"
        else:
            value = json.dumps(value)
        lines.append(f"{key} = {value}")
    return "\n".join(lines)
