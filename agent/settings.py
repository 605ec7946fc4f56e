"""The settings in effect for one command in one repository, and where each came from.

Four sources, in rising order: codeagent's defaults, the user's config (``config.py``), the
repository's ``.codeagent/config.toml`` (``project.py``), the command line. ``resolve``
merges them once, at start (``fix`` and the terminal UI; the evals read neither the user's
memory file nor project settings, so a task's result does not depend on who runs it), into a
``Config`` the rest of the wiring uses as before, plus the mode, the setup command, the
user's ``AGENTS.md``, a row per setting for ``/help`` (``rows``) and the notices to show.

The project file may be an attacker's, so it may only narrow what the user allows:
- ``mode`` applies only when it is as strict as the user's own choice or stricter (order
  read-only < ask < auto-edit < full-auto; the user's choice is ``--mode``, else the user
  config's ``mode`` (terminal UI only), else the front end's default: ``ask`` in the terminal
  UI, ``full-auto`` in ``fix``); a looser one is set aside with a notice, and ``--mode``
  given on the command line always wins;
- ``test_command`` and ``setup_command`` are used only with the sandbox on (they would run
  as the user otherwise), set aside with a notice when it is off;
- limits and ``command_timeout`` apply only when lower than the user's;
- ``mcp.allowed_tools`` patterns are honoured only for servers of the repository's
  ``.mcp.json`` that the user's config trusts (``[[mcp.trusted_project_servers]]``); tools of
  the user's own servers and of untrusted ones are never allowed by the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from codeagent.agent.config import Config
from codeagent.agent.mcp.config import McpConfigError, project_servers
from codeagent.agent.memory import user_memory, user_memory_path
from codeagent.agent.project import PROJECT_CONFIG, ProjectConfig, load_project

Front = Literal["tui", "fix"]
MODES = ("read-only", "ask", "auto-edit", "full-auto")  # strictest first
FRONT_MODES: dict[str, str] = {"tui": "ask", "fix": "full-auto"}
DEFAULT, USER, PROJECT, COMMAND_LINE = "default", "user config", "project config", "command line"


@dataclass(slots=True)
class CommandLine:
    """What the command line said (None: not given)."""

    mode: str | None = None
    test_command: str | None = None
    sandbox: bool = True
    sandbox_given: bool = False  # --sandbox or $CODEAGENT_SANDBOX
    network: bool = False
    limits: dict[str, float | None] = field(default_factory=dict)  # max_steps, max_tokens, max_wall_s


@dataclass(slots=True)
class Settings:
    config: Config  # the user's config with the project's settings merged in
    mode: str
    setup_command: str | None
    user_memory: tuple[str, str] | None  # (where, text) of the user's own AGENTS.md
    project_file: Path | None
    sandbox: bool = True
    network: bool = False
    sources: dict[str, str] = field(default_factory=dict)  # setting -> where its value came from
    notices: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str, str]]:
        """(setting, value, source) for each setting shown in ``/help``."""
        c = self.config
        values = {
            "mode": self.mode,
            "sandbox": "on" if self.sandbox else "off (commands run as you)",
            "network": "on" if self.network else "off",
            "test command": c.tools.test_command or "(detected)",
            "setup command": self.setup_command or "(none)",
            "max steps": str(c.limits.max_steps),
            "max tokens": str(c.limits.max_tokens),
            "max time": f"{c.limits.max_wall_s:g}s",
            "command timeout": f"{c.tools.command_timeout:g}s",
            "repo map tokens": str(c.tools.repo_map_tokens),
            "codebase share": f"{c.context.codebase_share:g}",
            "MCP tools allowed": ", ".join(c.mcp.allowed_tools) or "(none)",
            "user AGENTS.md": self.user_memory[0] if self.user_memory else f"(none at {user_memory_path()})",
        }
        return [(name, value, self.sources.get(name, DEFAULT)) for name, value in values.items()]


def resolve(user: Config, root: Path, front: Front, cli: CommandLine) -> Settings:
    """The settings for ``front`` in ``root``; ``ProjectConfigError`` for a bad project file."""
    project = load_project(root)
    settings = Settings(user.model_copy(deep=True), "", None, user_memory(), None)
    settings.sandbox, settings.network = cli.sandbox, cli.network
    settings.sources = _user_sources(user)
    if cli.sandbox_given:
        settings.sources["sandbox"] = "command line or $CODEAGENT_SANDBOX"
    if cli.network:
        settings.sources["network"] = COMMAND_LINE
    if settings.user_memory is not None:
        settings.sources["user AGENTS.md"] = USER
    _mode(settings, user, project, front, cli)
    if project is not None:
        settings.project_file = root / PROJECT_CONFIG
        _commands(settings, project, cli)
        _narrowing(settings, project)
        _mcp(settings, project, root)
    if cli.test_command:
        settings.config.tools.test_command = cli.test_command
        settings.sources["test command"] = COMMAND_LINE
    for key, value in cli.limits.items():
        if value:
            setattr(settings.config.limits, key, value)
            settings.sources[_LIMIT_NAMES[key]] = COMMAND_LINE
    return settings


_LIMIT_NAMES = {"max_steps": "max steps", "max_tokens": "max tokens", "max_wall_s": "max time"}


def _user_sources(user: Config) -> dict[str, str]:
    sources = {}
    given = {
        "test command": "test_command" in user.tools.model_fields_set,
        "command timeout": "command_timeout" in user.tools.model_fields_set,
        "repo map tokens": "repo_map_tokens" in user.tools.model_fields_set,
        "codebase share": "codebase_share" in user.context.model_fields_set,
        "MCP tools allowed": bool(user.mcp.allowed_tools),
        **{name: key in user.limits.model_fields_set for key, name in _LIMIT_NAMES.items()},
    }
    for name, set_there in given.items():
        if set_there:
            sources[name] = USER
    return sources


def _mode(
    settings: Settings, user: Config, project: ProjectConfig | None, front: Front, cli: CommandLine
) -> None:
    if cli.mode:
        mine, source = cli.mode, COMMAND_LINE
    elif front == "tui" and user.mode:
        mine, source = user.mode, USER
    else:
        mine, source = FRONT_MODES[front], DEFAULT
    settings.mode, settings.sources["mode"] = mine, source
    wanted = project.mode if project is not None else None
    if wanted is None or wanted == mine:
        return
    if source == COMMAND_LINE:
        settings.notices.append(f"{PROJECT_CONFIG}: mode {wanted!r} set aside: --mode {mine} was given")
    elif MODES.index(wanted) < MODES.index(mine):
        settings.mode, settings.sources["mode"] = wanted, PROJECT
    else:
        settings.notices.append(
            f"{PROJECT_CONFIG}: mode {wanted!r} set aside: it allows more than your {mine!r} ({source}); "
            "a project may only make the mode stricter (pass --mode to choose)"
        )


def _commands(settings: Settings, project: ProjectConfig, cli: CommandLine) -> None:
    tools = project.tools
    for name, command in (("test command", tools.test_command), ("setup command", tools.setup_command)):
        if command is None:
            continue
        if not cli.sandbox:
            settings.notices.append(
                f"{PROJECT_CONFIG}: {name} {command!r} set aside: the sandbox is off, and a project's "
                "commands run only inside it"
            )
        elif name == "setup command":
            settings.setup_command, settings.sources[name] = command, PROJECT
        else:
            settings.config.tools.test_command, settings.sources[name] = command, PROJECT


def _narrowing(settings: Settings, project: ProjectConfig) -> None:
    config = settings.config
    lowered = [
        ("command timeout", config.tools, "command_timeout", project.tools.command_timeout),
        *((name, config.limits, key, getattr(project.limits, key)) for key, name in _LIMIT_NAMES.items()),
    ]
    for name, table, key, value in lowered:
        if value is None:
            continue
        if value <= getattr(table, key):
            setattr(table, key, value)
            settings.sources[name] = PROJECT
        else:
            settings.notices.append(
                f"{PROJECT_CONFIG}: {name} {value:g} set aside: higher than your {getattr(table, key):g}"
            )
    for name, table, key, value in (
        ("repo map tokens", config.tools, "repo_map_tokens", project.tools.repo_map_tokens),
        ("codebase share", config.context, "codebase_share", project.context.codebase_share),
    ):
        if value is not None:
            setattr(table, key, value)
            settings.sources[name] = PROJECT


def _mcp(settings: Settings, project: ProjectConfig, root: Path) -> None:
    if not project.mcp.allowed_tools:
        return
    mcp = settings.config.mcp
    try:
        servers = project_servers(root)
    except McpConfigError:
        servers = {}
    trusted = {name for name, server in servers.items() if name not in mcp.servers and mcp.trusts(server)}
    names = [*servers, *mcp.servers]
    for pattern in project.mcp.allowed_tools:
        server = pattern.partition("__")[0]
        # "a__*" also matches the tools of a server named "a_..." ("a___x"): none may exist
        if server in trusted and not any(n != server and n.startswith(f"{server}_") for n in names):
            mcp.allowed_tools.append(pattern)
            settings.sources["MCP tools allowed"] = PROJECT
        else:
            settings.notices.append(
                f"{PROJECT_CONFIG}: mcp.allowed_tools {pattern!r} set aside: only tools of the repository's "
                ".mcp.json servers that your config trusts can be allowed by the project"
            )
