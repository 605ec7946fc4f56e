"""Where codeagent keeps its files: the XDG base folders, written out once.

Four kinds, each a variable with a default under the home folder:
- ``state``: ``$XDG_STATE_HOME`` or ``~/.local/state`` (runs and their transcripts, the
  prompt's history, checkpoints);
- ``cache``: ``$XDG_CACHE_HOME`` or ``~/.cache`` (the disk KV tier, built native kernels,
  tuned tile configs, the repo map's tags, bench scratch);
- ``config``: ``$XDG_CONFIG_HOME`` or ``~/.config`` (the config file; git's own config for
  the sandbox's credential scan);
- ``data``: ``$XDG_DATA_HOME`` or ``~/.local/share`` (nothing of ours yet; the sandbox hides
  it all the same).

``base(kind)`` is the base folder, ``folder(kind)`` codeagent's own inside it. A variable
set to the empty string counts as unset. Both read the environment when called, never at
import, so a caller (or a test) moves them by setting the variable; either takes another
environment (the sandbox computes the folders of the one it hands a command) and ``base``
another home.

Every package of ours may import this one, so it imports nothing of ours (an import-linter
contract). Left out: the ``$XDG_*_DIRS`` search lists (only the user's own folders are read
or written) and the spec's rule to ignore relative values (a value is used as given).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

Kind = Literal["state", "cache", "config", "data"]

APP = "codeagent"  # our folder's name inside each base folder
DEFAULTS: dict[Kind, tuple[str, str]] = {
    "state": ("XDG_STATE_HOME", ".local/state"),
    "cache": ("XDG_CACHE_HOME", ".cache"),
    "config": ("XDG_CONFIG_HOME", ".config"),
    "data": ("XDG_DATA_HOME", ".local/share"),
}
VARIABLES = tuple(name for name, _ in DEFAULTS.values())


def base(kind: Kind, env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """The base folder of ``kind``: its variable when set, else its default under ``home``
    (by default ``$HOME`` of ``env``, else the user's home)."""
    env = os.environ if env is None else env
    name, default = DEFAULTS[kind]
    value = env.get(name)
    if value:
        return Path(value)
    if home is None:
        home = Path(env.get("HOME") or Path.home())
    return home / default


def folder(kind: Kind, env: Mapping[str, str] | None = None) -> Path:
    """codeagent's own folder of ``kind``: ``<base>/codeagent``."""
    return base(kind, env) / APP
