"""Confinement with bubblewrap: what a sandboxed command can see, write and reach.

``bwrap_argv(spec, argv)`` wraps a command so that:
- the whole filesystem is read-only, the workspace is the only writable place (plus a
  private ``/tmp``);
- credentials and other tools' settings are hidden: ``~/.ssh``, cloud and container
  credentials, ``~/.config`` (browser profiles, codeagent's own settings and keys live
  there), codeagent's transcripts, ``.netrc``-like files;
- protected paths inside the workspace (``.git/hooks``, ``.git/config``, codeagent's
  ``.codeagent/``, CI workflow folders and files, ``.envrc``) are mounted read-only, also when they
  do not exist yet: a missing one gets an empty mount point (a folder, or an empty file
  under a read-only /dev/null) that ``cleanup`` removes after the command if it is still
  empty; while the command runs, ``git status`` inside shows the empty files as untracked;
- every namespace is new (no network unless allowed, not even the host's loopback; a PID
  namespace so every process dies with the command); ``--die-with-parent``,
  ``--new-session``; all capabilities dropped (as root bwrap would otherwise keep them, and a
  sandboxed ``mount -o remount,rw /`` would succeed); ``no_new_privs`` is set by bwrap;
- the environment is cleared and rebuilt from an allowlist.

``probe()`` says whether bwrap can run here at all, with the reason when it cannot.
``run_confined`` runs a command so, with process and memory bounds from ``limits.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from codeagent.sandbox.limits import Limits, jail
from codeagent.sandbox.process import CommandResult, run_command

HIDDEN_IN_HOME = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".config",
    ".docker",
    ".kube",
    ".netrc",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".mozilla",
    ".local/share/keyrings",
    ".local/state/codeagent",
    ".cache/codeagent",
)
PROTECTED_DIRS = (".git/hooks", ".codeagent", ".github/workflows", ".gitlab", ".circleci")
# Files other tools run or trust: direnv runs .envrc on cd, CI runs its config. Shell rc files
# of the user live in the home folder, which is read-only inside.
PROTECTED_FILES = (".git/config", ".envrc", ".gitlab-ci.yml")
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


class SandboxUnavailable(RuntimeError):
    pass


@dataclass(slots=True)
class SandboxSpec:
    workspace: Path
    network: bool = False
    home: Path = field(default_factory=Path.home)
    extra_env: dict[str, str] = field(default_factory=dict)  # set inside, after the allowlist


@dataclass(slots=True)
class Mounts:
    argv: list[str]
    created: list[Path]  # mount points made for missing protected paths: removed afterwards if still empty


def probe() -> str | None:
    """None when bubblewrap works here; otherwise why not."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    proc = subprocess.run(
        [bwrap, "--ro-bind", "/", "/", "--unshare-all", "--cap-drop", "ALL", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {proc.stderr.strip() or proc.returncode}"
    return None


def _hide(home: Path) -> list[str]:
    argv: list[str] = []
    for rel in HIDDEN_IN_HOME:
        path = home / rel
        if path.is_dir() and not path.is_symlink():
            argv += ["--tmpfs", str(path)]
        elif path.exists():
            argv += ["--ro-bind", "/dev/null", str(path)]
    return argv


def _protect(workspace: Path) -> Mounts:
    argv: list[str] = []
    created: list[Path] = []
    for rel in PROTECTED_DIRS:
        path = workspace / rel
        if rel.startswith(".git/") and not (workspace / ".git").is_dir():
            continue
        if not path.exists():
            created += [p for p in (path, *path.parents) if p != workspace and not p.exists()][::-1]
            path.mkdir(parents=True)
        if path.is_dir() and not path.is_symlink():
            argv += ["--ro-bind", str(path), str(path)]
    for rel in PROTECTED_FILES:
        path = workspace / rel
        if rel.startswith(".git/") and not (workspace / ".git").is_dir():
            continue
        if path.is_symlink():
            argv += ["--ro-bind", "/dev/null", str(path)]
        elif path.exists():
            argv += ["--ro-bind", str(path), str(path)]
        else:
            path.touch()
            created.append(path)
            argv += ["--ro-bind", "/dev/null", str(path)]
    return Mounts(argv, created)


def allowed_environment(spec: SandboxSpec, env: dict[str, str]) -> dict[str, str]:
    """The allowlisted environment. bwrap itself must run with it too: it is PID 1 inside the
    sandbox, and its own /proc/1/environ is readable there."""
    kept = {name: env[name] for name in ENV_ALLOW if name in env}
    kept.update(HOME=str(spec.home), TMPDIR="/tmp")
    kept.update(spec.extra_env)
    return kept


def _environment(spec: SandboxSpec, env: dict[str, str]) -> list[str]:
    argv = ["--clearenv"]
    for name, value in sorted(allowed_environment(spec, env).items()):
        argv += ["--setenv", name, value]
    return argv


PRIVATE_TMP = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))


def _toolchains_in_tmp(env: dict[str, str]) -> list[str]:
    """Read-only views of interpreters and PATH folders that live in a folder the sandbox
    replaces with a private one (a virtual environment in /tmp, say), so commands still find
    them: the top folder under /tmp (or /var/tmp) that holds each is mounted back, read-only."""
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
    return [arg for root in roots if root.is_dir() for arg in ("--ro-bind", str(root), str(root))]


def bwrap_argv(spec: SandboxSpec, argv: list[str], env: dict[str, str]) -> Mounts:
    """The full bwrap command line for ``argv``, and the mount points to clean up afterwards."""
    workspace = spec.workspace.resolve()
    protected = _protect(workspace)
    command = [
        shutil.which("bwrap") or "bwrap",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/var/tmp",
        "--tmpfs",
        "/dev/shm",
    ]
    command += _toolchains_in_tmp(env)
    command += _hide(spec.home)
    command += ["--bind", str(workspace), str(workspace)]
    command += protected.argv
    command += ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if spec.network:
        command.append("--share-net")
    command += _environment(spec, env)
    command += ["--chdir", str(workspace), "--", *argv]
    return Mounts(command, protected.created)


def cleanup(mounts: Mounts) -> None:
    """Remove the mount points made for missing paths, unless something filled them meanwhile."""
    for path in reversed(mounts.created):
        if path.is_symlink():
            continue
        if path.is_file() and path.stat().st_size == 0:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def run_confined(
    spec: SandboxSpec,
    command: str | list[str],
    *,
    timeout: float,
    max_output_chars: int,
    env: dict[str, str],
    limits: Limits | None = None,
) -> CommandResult:
    """``process.run_command`` inside the sandbox (bwrap is the supervised child), within ``limits``."""
    argv = ["/bin/bash", "-c", command] if isinstance(command, str) else list(command)
    mounts = bwrap_argv(spec, argv, env)
    cage = jail(limits or Limits())
    try:
        return run_command(
            mounts.argv,
            spec.workspace,
            timeout=timeout,
            max_output_chars=max_output_chars,
            env=allowed_environment(spec, env),
            supervisor_options=cage.options,
        )
    finally:
        cleanup(mounts)
        cage.close()
