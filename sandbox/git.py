"""Git invocations that a hostile repository cannot hijack.

A repository's own ``.git/config`` can name programs that git runs on ordinary commands
(``core.fsmonitor``, ``core.hooksPath``, ``core.sshCommand``, pagers, filters). Every git
call codeagent makes itself goes through ``git()``, which overrides those settings on the
command line, disables hooks, and never reads the user's or system config for programs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# -c settings that neutralise config-driven program execution for our own git calls.
SAFE_CONFIG: tuple[str, ...] = (
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.pager=cat",
    "core.sshCommand=false",
    "core.editor=true",
    "diff.external=",
    "credential.helper=",
    "protocol.ext.allow=never",
    "uploadpack.packObjectsHook=",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "safe.directory=*",
)


class GitError(RuntimeError):
    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"git {' '.join(args)} failed ({returncode}): {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_OPTIONAL_LOCKS="0",
        LC_ALL="C",
    )
    if extra:
        env.update(extra)
    return env


def git(
    args: list[str],
    cwd: Path,
    *,
    check: bool = True,
    input_text: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> str:
    """Run ``git args`` in ``cwd`` with hijack-proof settings; return stdout."""
    command = ["git"]
    for setting in SAFE_CONFIG:
        command += ["-c", setting]
    proc = subprocess.run(
        command + args,
        cwd=cwd,
        input=input_text,
        capture_output=True,
        text=True,
        env=git_env(env),
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise GitError(args, proc.returncode, proc.stderr)
    return proc.stdout


def is_git_repo(path: Path) -> bool:
    return git(["rev-parse", "--is-inside-work-tree"], path, check=False).strip() == "true"
