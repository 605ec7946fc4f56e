"""What a sandboxed command is given, whichever confinement runs it: ``SandboxSpec`` and its
environment.

``SandboxSpec`` says where a command runs (the workspace), whether it may use the network,
whose home it hides and which confinement holds it (``confinement``: ``bubblewrap``, or the
Landlock fallback ``landlock+seccomp`` / ``landlock`` where namespaces are unavailable; see
``choose.py``). ``allowed_environment`` rebuilds the command's environment from an allowlist
(``ENV_ALLOW``) with ``HOME`` and ``TMPDIR`` pointing at the confinement's private folders;
``own_folders`` are codeagent's state, cache, config and data folders, hidden from commands;
``toolchains_in_tmp`` are the folders under a replaced temp folder (a virtual environment in
``/tmp``) that must stay readable so commands still find their interpreter.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from codeagent import xdg

BUBBLEWRAP = "bubblewrap"
LANDLOCK = "landlock"
LANDLOCK_SECCOMP = "landlock+seccomp"

ENV_ALLOW = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TZ",
    "USER",
    "LOGNAME",
    "SHELL",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "PYENV_ROOT",
    "PYENV_VERSION",
    "GOPATH",
    "GOROOT",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "JAVA_HOME",
    "NODE_PATH",
    "CI",
    "NO_COLOR",
    "PAGER",
    "GIT_PAGER",
    "GIT_TERMINAL_PROMPT",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "PYTHONIOENCODING",
)


PRIVATE_TMP = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))


@dataclass(slots=True)
class SandboxSpec:
    workspace: Path
    network: bool = False
    home: Path = field(default_factory=Path.home)
    extra_env: dict[str, str] = field(default_factory=dict)  # set inside, after the allowlist
    confinement: str = BUBBLEWRAP  # or LANDLOCK_SECCOMP / LANDLOCK: the fallback (``choose.py``)


def own_folders(env: dict[str, str]) -> list[Path]:
    """codeagent's state, cache, config and data folders, wherever ``XDG_*`` put them: hidden inside."""
    return [xdg.folder(kind, env) for kind in xdg.DEFAULTS]


def allowed_environment(
    spec: SandboxSpec, env: dict[str, str], home: Path | None = None, tmp: Path = Path("/tmp")
) -> dict[str, str]:
    """The allowlisted environment, with ``HOME`` (default ``spec.home``) and ``TMPDIR`` set.
    bwrap itself must run with it too: it is PID 1 inside the sandbox, and its own
    /proc/1/environ is readable there."""
    kept = {name: env[name] for name in ENV_ALLOW if name in env}
    kept.update(HOME=str(home or spec.home), TMPDIR=str(tmp))
    kept.update(spec.extra_env)
    return kept


def toolchains_in_tmp(env: dict[str, str]) -> list[Path]:
    """The top folders under /tmp (or /var/tmp, /dev/shm) that hold an interpreter or a PATH
    folder of ``env``: the confinement replaces or hides those temp folders, and keeps these
    readable (never writable) so commands still find them."""
    candidates = [Path(p) for p in env.get("PATH", "").split(os.pathsep) if p]
    candidates += [Path(sys.prefix), Path(sys.base_prefix)]
    if env.get("VIRTUAL_ENV"):
        candidates.append(Path(env["VIRTUAL_ENV"]))
    roots: dict[Path, None] = {}
    for path in candidates:
        real = path.resolve()
        for tmp in PRIVATE_TMP:
            if tmp in real.parents:
                roots[tmp / real.relative_to(tmp).parts[0]] = None
    return [root for root in roots if root.is_dir()]
