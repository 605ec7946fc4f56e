"""Shared types for tools: the environment a tool runs in, what it returns, how it fails.

A tool never raises for a model mistake (bad path, no match, bad arguments): it returns an
``Observation`` with ``ok=False`` and a message the model can act on. ``ToolError`` is the
exception a tool's helpers raise internally to produce such an observation; ``run_tool``
turns it into one. Anything else that escapes a tool is a bug in codeagent and propagates.

Time: the run's wall-time budget reaches every tool as one value, ``ToolEnv.deadline`` (a
``time.monotonic()`` instant, set by the agent loop; None: no budget). Work a tool hands to
another process gets at most ``time_left`` as its timeout (commands, ripgrep, the Python
regex worker); Python-side loops that can run long (parsing for the repo map) call
``check_time`` as they go. A call cut short this way returns an error observation, and the
loop, seeing the budget spent, ends the run with status ``budget``. Work that is bounded by
construction (reading one capped file, a glob match, locating a patch hunk) does not check.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from codeagent.sandbox.checkpoint import Checkpoints
from codeagent.sandbox.confine import SandboxSpec

OUT_OF_TIME = "the run's time budget ran out; the call was stopped"


class ToolError(Exception):
    """A problem the model caused and can fix; the message is shown to it verbatim."""


@dataclass(slots=True)
class Observation:
    """What a tool returns: text for the model, structured data for UIs and results."""

    text: str
    ok: bool = True
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolSettings:
    """User-configurable knobs the tools read (from config files and flags)."""

    test_command: str | None = None  # overrides run_tests' detection
    command_timeout: float = 120.0  # default and upper bound for `run`
    max_output_chars: int = 30_000  # output cap for `run` / `run_tests`
    search_timeout: float = 20.0  # a `search` call's engines are killed after this long
    secret_env_names: tuple[str, ...] = ()  # extra variable names to strip, besides the patterns
    repo_map_tokens: int = 2048
    cache_dir: Path | None = None  # repo-map cache; None -> XDG cache dir


@dataclass(slots=True)
class ToolEnv:
    """Everything a tool may touch: the repository root, settings and session state."""

    root: Path
    settings: ToolSettings = field(default_factory=ToolSettings)
    plan: list[dict[str, str]] = field(default_factory=list)
    finished: str | None = None  # summary once `finish` was called
    focus_files: set[str] = field(default_factory=set)  # files read/edited: repo_map ranks toward them
    checkpoints: Checkpoints | None = None  # snapshots before every tool call that can change files
    sandbox: SandboxSpec | None = None  # where commands run; None: unconfined, only with the user's consent
    deadline: float | None = None  # time.monotonic() by which tool calls must end: the run's wall budget

    def __post_init__(self) -> None:
        self.root = Path(os.path.realpath(self.root))

    def time_left(self, wanted: float) -> float:
        """``wanted`` seconds, or the time left before ``deadline`` when that is less;
        ToolError when the deadline has passed."""
        if self.deadline is None:
            return wanted
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ToolError(OUT_OF_TIME)
        return min(wanted, left)

    def check_time(self) -> None:
        """ToolError once the deadline has passed."""
        self.time_left(0.0)

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def resolve(self, path: str | None, *, must_exist: bool = False) -> Path:
        """Map a model-given path to an absolute path inside the repository, or refuse it.

        Relative paths are taken from the root; absolute paths must already be inside it.
        Symlinks are resolved before the check, so a link that leads out is refused too.
        Nothing inside a ``.git`` folder is reachable: git's files may hold credentials
        (``actions/checkout`` keeps the job's token in ``.git/config``), and git commands
        through ``run`` see them without.
        """
        raw = (path or ".").strip() or "."
        if "\x00" in raw:
            raise ToolError("path contains a NUL byte")
        candidate = Path(raw)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        real = Path(os.path.realpath(candidate))
        if real != self.root and self.root not in real.parents:
            raise ToolError(f"path {raw!r} is outside the repository; use a path inside {self.root}")
        parts = Path(os.path.relpath(candidate, self.root)).parts + Path(self.rel(real)).parts
        if ".git" in (part.casefold() for part in parts):
            raise ToolError(f"{raw!r} is inside a .git folder; use git commands through run instead")
        if must_exist and not real.exists():
            raise ToolError(f"{self.rel(real)} does not exist")
        return real

    def rel(self, path: Path) -> str:
        """The repository-relative spelling of an absolute path (``.`` for the root)."""
        relative = os.path.relpath(path, self.root)
        return "." if relative == "." else relative.replace(os.sep, "/")


class Tool(Protocol):
    """What every tool provides; met by shape."""

    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]
    mutates: ClassVar[bool]  # may change files: the sandbox checkpoints before it runs

    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation: ...


def schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A JSON-schema object for a tool's arguments."""
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def openai_schema(tool: Tool) -> dict[str, Any]:
    """The tool as an entry of an OpenAI chat ``tools`` list."""
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def run_tool(tool: Tool, args: dict[str, Any], env: ToolEnv) -> Observation:
    """Run a tool, validating required arguments and turning ``ToolError`` into an observation."""
    missing = [name for name in tool.parameters.get("required", []) if name not in args]
    if missing:
        return Observation(f"error: {tool.name} needs argument(s): {', '.join(missing)}", ok=False)
    allowed = set(tool.parameters.get("properties", {}))
    unknown = sorted(set(args) - allowed)
    if unknown and tool.parameters.get("additionalProperties") is False:  # as every built-in tool's schema
        return Observation(
            f"error: {tool.name} does not take {', '.join(unknown)}; it takes {', '.join(sorted(allowed))}",
            ok=False,
        )
    try:
        return tool.run(args, env)
    except ToolError as err:
        return Observation(f"error: {err}", ok=False)
