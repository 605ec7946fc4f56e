"""User configuration: one TOML file, parsed and validated once with pydantic.

Looked up at ``--config PATH``, else ``$XDG_CONFIG_HOME/codeagent/config.toml``
(``~/.config/codeagent/config.toml``). Only the user's own file is read: a repository
cannot point the model at another endpoint or change where keys come from. (A repository's
own settings, ``.codeagent/config.toml``, are ``project.py``'s; ``settings.py`` merges them
over this file, narrowing only.) Keys are never
stored here; ``remote.api_key_env`` names the variable that holds one.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from codeagent import xdg
from codeagent.agent.mcp.config import McpConfig


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid (exit code 2)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RemoteConfig(_Strict):
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None  # name of the variable holding the key
    context_window: int = Field(default=128_000, gt=0)


class LimitsConfig(_Strict):
    max_steps: int = Field(default=60, gt=0)
    max_tokens: int = Field(default=3_000_000, gt=0)
    max_wall_s: float = Field(default=3600.0, gt=0)


class ToolsConfig(_Strict):
    test_command: str | None = None
    command_timeout: float = Field(default=120.0, gt=0)
    max_output_chars: int = Field(default=30_000, ge=1000)
    secret_env_names: list[str] = Field(default_factory=list)
    repo_map_tokens: int = Field(default=2048, ge=0)


class ContextConfig(_Strict):
    # share of the model's window the whole codebase may take in the pinned prefix; 0: repo map only
    codebase_share: float = Field(default=0.5, ge=0, lt=1)


class Config(_Strict):
    model: str | None = None  # default model spec when --model is not given
    mode: Literal["read-only", "ask", "auto-edit", "full-auto"] | None = None  # the terminal UI's; None: ask
    remote: RemoteConfig = Field(default_factory=RemoteConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    context: ContextConfig = Field(default_factory=ContextConfig)
    mcp: McpConfig = Field(default_factory=McpConfig)  # [mcp]: servers whose tools the model gets


def default_path() -> Path:
    return xdg.folder("config") / "config.toml"


def load_config(path: Path | None = None) -> Config:
    """The validated config; an absent default file means defaults, an absent named one an error."""
    explicit = path is not None
    path = path or default_path()
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path} does not exist")
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from err
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"config {path}: {where}: {first['msg']}") from err
