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
- ``/run`` (and a separate ``/var/run``) is empty: daemons' unix sockets (docker's among them)
  are out of reach, since a network namespace does not cut them off;
- every namespace is new (no network unless allowed, not even the host's loopback; a PID
  namespace so every process dies with the command); ``--die-with-parent``,
  ``--new-session``; all capabilities dropped (as root bwrap would otherwise keep them, and a
  sandboxed ``mount -o remount,rw /`` would succeed); ``no_new_privs`` is set by bwrap;
- the environment is cleared and rebuilt from an allowlist.

``probe()`` says whether bwrap can run here at all, with the reason when it cannot.
``run_confined`` runs a command so, with process and memory bounds from ``limits.py``, and
afterwards checks the protected names (``ProtectedPathChanged`` when one was replaced).
Where ``spec.confinement`` names the Landlock fallback (``choose.py`` picks it where bwrap
cannot create namespaces), it runs the command under ``fallback.py``'s launcher instead,
with the same environment allowlist (``spec.py``), limits and supervisor.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from codeagent import xdg
from codeagent.sandbox import fallback
from codeagent.sandbox import home as homes
from codeagent.sandbox.gitview import view
from codeagent.sandbox.limits import ResourceLimits, jail
from codeagent.sandbox.process import CommandResult, run_command
from codeagent.sandbox.protect import Guard, Journal, guard
from codeagent.sandbox.spec import (
    BUBBLEWRAP,
    SandboxSpec,
    allowed_environment,
    own_folders,
    toolchains_in_tmp,
)

__all__ = ["SandboxSpec", "bwrap_argv", "probe", "run_confined"]


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


def _environment(spec: SandboxSpec, env: dict[str, str]) -> list[str]:
    argv = ["--clearenv"]
    for name, value in sorted(allowed_environment(spec, env).items()):
        argv += ["--setenv", name, value]
    return argv


def _toolchains_in_tmp(env: dict[str, str]) -> list[str]:
    """Read-only views of the toolchains that live in a folder the sandbox replaces with a
    private one (a virtual environment in /tmp, say), so commands still find them."""
    return [arg for root in toolchains_in_tmp(env) for arg in ("--ro-bind", str(root), str(root))]


# The variables the environment-dependent mounts are computed from.
MOUNT_INPUTS = ("PATH", "HOME", "VIRTUAL_ENV", *xdg.VARIABLES, *homes.TOOLCHAIN_VARS)


@functools.lru_cache(maxsize=8)
def _environment_mounts(home: Path, inputs: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Toolchains in /tmp, emptied homes, hidden secret folders: the same for every command of a
    run (a few milliseconds of path resolution, so computed once per environment)."""
    env = dict(inputs)
    spec = SandboxSpec(Path("/"), home=home)
    return (*_toolchains_in_tmp(env), *_hide(spec, env))


def _runtime_folders(network: bool) -> list[str]:
    """``/run`` (and ``/var/run`` where it is a folder of its own) as empty private folders: the
    host's daemons listen there on unix sockets (docker, containerd, podman, systemd, D-Bus), and
    a socket file is reachable through a read-only mount and from another network namespace, so a
    command could otherwise ask the docker daemon for a privileged container. With the network
    allowed, the resolver's folder comes back (``/etc/resolv.conf`` often links into it)."""
    folders = ["/run", "/var/run"]
    argv = [arg for f in folders if os.path.isdir(f) and not os.path.islink(f) for arg in ("--tmpfs", f)]
    if network:
        argv += ["--ro-bind-try", "/run/systemd/resolve", "/run/systemd/resolve"]
    return argv


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
        *_runtime_folders(spec.network),
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
    """``process.run_command`` inside the sandbox, within ``limits``: bwrap, or the Landlock
    launcher (``fallback.py``) as ``spec.confinement`` says, is the supervised child.

    Raises ``protect.ProtectedPathChanged`` (after putting the name back) when the command
    replaced a protected name that is a link."""
    argv = ["/bin/bash", "-c", command] if isinstance(command, str) else list(command)
    if spec.confinement == BUBBLEWRAP:
        wrapped, protected = bwrap_argv(spec, argv, env)
        command_env, release = allowed_environment(spec, env), protected.release
    else:
        launch = fallback.prepare(spec, argv, env)
        wrapped, command_env, release = launch.argv, launch.env, launch.close
    try:
        cage = jail(limits or ResourceLimits())
    except BaseException:
        release()
        raise
    try:
        return run_command(
            wrapped,
            spec.workspace,
            timeout=timeout,
            max_output_chars=max_output_chars,
            env=command_env,
            supervisor_options=cage.options,
        )
    finally:
        cage.close()
        release()
