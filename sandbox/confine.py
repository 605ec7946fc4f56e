"""Confinement with bubblewrap: what a sandboxed command can see, write and reach.

``bwrap_argv(spec, argv)`` wraps a command so that:
- the whole filesystem is read-only, the workspace is the only writable place (plus a
  private ``/tmp``);
- home folders are empty (``home.py``): ``$HOME``, ``/root`` and ``/home`` are private tmpfs
  folders into which only the toolchains the environment points at come back, read-only;
  known secret folders elsewhere (``/run/secrets``, codeagent's own state, cache and config
  folders wherever ``XDG_*`` put them) are hidden too;
- the protected top-level names of the workspace (``protect.py``: ``.git`` as a whole,
  CI configuration, ``.envrc``, ``.codeagent``) are read-only, also when they do not exist
  yet, and cannot be renamed away; ``.git/config`` shows without credentials (``gitview.py``);
- every namespace is new (no network unless allowed, not even the host's loopback; a PID
  namespace so every process dies with the command); ``--die-with-parent``,
  ``--new-session``; all capabilities dropped (as root bwrap would otherwise keep them, and a
  sandboxed ``mount -o remount,rw /`` would succeed); ``no_new_privs`` is set by bwrap;
- the environment is cleared and rebuilt from an allowlist.

``probe()`` says whether bwrap can run here at all, with the reason when it cannot.
``run_confined`` runs a command so, with process and memory bounds from ``limits.py``, and
afterwards checks the protected names (``ProtectedPathChanged`` when one was replaced).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from codeagent import xdg
from codeagent.sandbox import home as homes
from codeagent.sandbox.gitview import view
from codeagent.sandbox.limits import ResourceLimits, jail
from codeagent.sandbox.process import CommandResult, run_command
from codeagent.sandbox.protect import Guard, Journal, guard

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


@dataclass(slots=True)
class SandboxSpec:
    workspace: Path
    network: bool = False
    home: Path = field(default_factory=Path.home)
    extra_env: dict[str, str] = field(default_factory=dict)  # set inside, after the allowlist


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


def own_folders(env: dict[str, str]) -> list[Path]:
    """codeagent's state, cache, config and data folders, wherever ``XDG_*`` put them: hidden inside."""
    return [xdg.folder(kind, env) for kind in xdg.DEFAULTS]


def _hide(spec: SandboxSpec, env: dict[str, str]) -> list[str]:
    """Empty homes with the toolchains mounted back read-only, then secret folders hidden."""
    own = [Path(os.path.realpath(p)) for p in own_folders(env)]
    argv: list[str] = []
    for root in homes.hidden_roots(spec.home):
        argv += ["--tmpfs", str(root)]
    mounts = homes.toolchain_mounts(spec.home, env, keep_out=own)
    for path in mounts:
        argv += ["--ro-bind", str(path), str(path)]
    for path in homes.masked_files(mounts, spec.home):
        argv += ["--ro-bind", "/dev/null", str(path)]
    for path in homes.secret_places(own):
        argv += ["--tmpfs", str(path)]
    return argv


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


# The variables the environment-dependent mounts are computed from.
MOUNT_INPUTS = ("PATH", "HOME", "VIRTUAL_ENV", *xdg.VARIABLES, *homes.TOOLCHAIN_VARS)


@functools.lru_cache(maxsize=8)
def _environment_mounts(home: Path, inputs: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Toolchains in /tmp, emptied homes, hidden secret folders: the same for every command of a
    run (a few milliseconds of path resolution, so computed once per environment)."""
    env = dict(inputs)
    spec = SandboxSpec(Path("/"), home=home)
    return (*_toolchains_in_tmp(env), *_hide(spec, env))


def bwrap_argv(spec: SandboxSpec, argv: list[str], env: dict[str, str]) -> tuple[list[str], Guard]:
    """The full bwrap command line for ``argv``, and the guard to release after it ran."""
    workspace = spec.workspace.resolve()
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
    command += _environment_mounts(spec.home, tuple(sorted((k, env[k]) for k in MOUNT_INPUTS if k in env)))
    command += ["--bind", str(workspace), str(workspace)]
    journal = Journal(own_folders(dict(os.environ))[0] / "placeholders")
    protected = guard(workspace, view(workspace / ".git" / "config"), journal)
    command += protected.argv
    command += ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if spec.network:
        command.append("--share-net")
    command += _environment(spec, env)
    command += ["--chdir", str(workspace), "--", *argv]
    return command, protected


def run_confined(
    spec: SandboxSpec,
    command: str | list[str],
    *,
    timeout: float,
    max_output_chars: int,
    env: dict[str, str],
    limits: ResourceLimits | None = None,
) -> CommandResult:
    """``process.run_command`` inside the sandbox (bwrap is the supervised child), within ``limits``.

    Raises ``protect.ProtectedPathChanged`` (after putting the name back) when the command
    replaced a protected name that is a link."""
    argv = ["/bin/bash", "-c", command] if isinstance(command, str) else list(command)
    wrapped, protected = bwrap_argv(spec, argv, env)
    try:
        cage = jail(limits or ResourceLimits())
    except BaseException:
        protected.release()
        raise
    try:
        return run_command(
            wrapped,
            spec.workspace,
            timeout=timeout,
            max_output_chars=max_output_chars,
            env=allowed_environment(spec, env),
            supervisor_options=cage.options,
        )
    finally:
        cage.close()
        protected.release()
