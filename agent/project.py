"""Project settings: ``.codeagent/config.toml`` in the repository, parsed and validated once.

```toml
mode = "ask"                      # read-only | ask | auto-edit | full-auto: only ever stricter
[tools]
test_command = "pytest -q"        # how run_tests runs the tests (inside the sandbox only)
setup_command = "npm ci"          # run once before the first step (inside the sandbox only)
command_timeout = 60              # seconds; at most the user's
repo_map_tokens = 4096
[limits]                          # each at most the user's
max_steps = 40
[context]
codebase_share = 0.3
[mcp]
allowed_tools = ["docs__*"]       # tools of the repository's .mcp.json servers that run unasked
```

The file is repository content, which an attacker may write, so it is read only as
``tools.contained`` allows (a regular file, no symlink leading out) and may only narrow what
the user allows; ``settings.resolve`` applies that rule (a looser mode, a higher limit, a
command with the sandbox off are set aside with a notice). What it can never set: the model
and its endpoint, keys, the sandbox or the network, MCP servers to start or trust, secrets.

Errors (unreadable file, bad TOML, an unknown key, a wrong type) are ``ProjectConfigError``:
one line naming the file and the key, exit code 2.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from codeagent.tools.contained import Contained

PROJECT_CONFIG = ".codeagent/config.toml"
MAX_BYTES = 64_000

Mode = Literal["read-only", "ask", "auto-edit", "full-auto"]


class ProjectConfigError(Exception):
    """The project's config file cannot be used (exit code 2); the message names file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ProjectTools(_Strict):
    test_command: str | None = Field(default=None, min_length=1)
    setup_command: str | None = Field(default=None, min_length=1)
    command_timeout: float | None = Field(default=None, gt=0)
    repo_map_tokens: int | None = Field(default=None, ge=0)


class ProjectLimits(_Strict):
    max_steps: int | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, gt=0)
    max_wall_s: float | None = Field(default=None, gt=0)


class ProjectContext(_Strict):
    codebase_share: float | None = Field(default=None, ge=0, lt=1)


class ProjectMcp(_Strict):
    allowed_tools: list[str] = Field(default_factory=list)  # "server__tool" or "server__*"


class ProjectConfig(_Strict):
    mode: Mode | None = None
    tools: ProjectTools = Field(default_factory=ProjectTools)
    limits: ProjectLimits = Field(default_factory=ProjectLimits)
    context: ProjectContext = Field(default_factory=ProjectContext)
    mcp: ProjectMcp = Field(default_factory=ProjectMcp)


def load_project(root: Path) -> ProjectConfig | None:
    """The repository's settings; None when it has no ``.codeagent/config.toml``."""
    where = root / PROJECT_CONFIG
    path = Contained(root).file(PROJECT_CONFIG)
    if path is None:
        if where.is_symlink() or (where.exists() and not where.is_file()):
            raise ProjectConfigError(f"{where}: not a regular file inside the repository")
        if where.parent.is_symlink():
            raise ProjectConfigError(f"{where}: .codeagent is a link; it is not read")
        return None
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise ProjectConfigError(f"{where}: larger than {MAX_BYTES} bytes")
        data = tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ProjectConfigError(f"{where}: cannot read it: {err}") from err
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ProjectConfigError(f"{where}: {key}: {_message(first)}") from err


def _message(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key (known: mode, [tools], [limits], [context], [mcp]; see the README)"
    return str(error["msg"])
