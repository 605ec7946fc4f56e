"""The fallback confinement, for where bubblewrap cannot create namespaces: Landlock plus seccomp.

Inside Docker's default seccomp profile, or under Ubuntu's AppArmor restriction on user
namespaces, bubblewrap cannot start; Landlock needs neither namespaces nor privileges.
``prepare(spec, argv, env)`` gives the command line that runs ``argv`` under ``_launch.py``,
which applies the rules to itself and then executes the command, so they hold for the
command and everything it starts. What the rules say (computed here, on the host side):

- reading: everything but what bubblewrap hides: the home folders (``/home``, ``/root``,
  ``$HOME``), codeagent's own folders, the secret folders of ``home.secret_places``, the
  temp folders (``/tmp``, ``/var/tmp``, ``/dev/shm``) and ``/dev``; then readable again: the
  toolchains the environment points at (``home.toolchain_mounts``, less the registry
  credentials ``home.masked_files``, and ``spec.toolchains_in_tmp``), the workspace, a few
  devices (``/dev/null``, ``/dev/urandom``, terminals...). Landlock only allows, by
  hierarchy, so "all but" is written as rules on every sibling along the path to a hidden
  folder; the folders on that path are then traversable but not listable (``ls /`` fails);
- writing: a private folder (``HOME`` and ``TMPDIR`` point into it: an empty home in which
  the toolchains under the real home appear as links) and the workspace, entry by entry:
  each top-level file and folder gets its own rule, except the protected names
  (``protect.PROTECTED``) and the targets of protected links that lie inside the workspace.
  A right on the workspace folder itself would hold for everything beneath it, ``.git``
  included, so there is none: **commands cannot create, delete or rename top-level entries**
  (``mkdir build`` at the top fails, ``sed -i`` on a top-level file fails; editing one in
  place works, and so does anything inside an existing top-level folder). In exchange a
  protected name can be neither written, replaced nor renamed away, with no placeholders;
- network (when not allowed): TCP bind and connect refused (Landlock ABI 4), IPv4, IPv6 and
  packet sockets refused (seccomp), abstract unix sockets and signals cut off from processes
  outside the sandbox (ABI 6);
- privileges: every capability dropped (the bounding set too, where allowed), no_new_privs,
  and the seccomp filter of ``seccomp.py`` where this architecture has one.

Limits, beside Landlock's own (``landlock.py``): ``.git/config`` is readable as it is, so
credentials kept there (``actions/checkout``'s token) are visible to commands (bubblewrap
shows a view without them; ``fix`` and the terminal UI refuse such a repository under the
fallback, ``agent.gitops.refuse_exposed_credentials``); ``/tmp`` is not private but unwritable, so a command that
writes to ``/tmp`` by name rather than ``$TMPDIR`` fails; processes outside are visible in
``/proc`` (their command lines; not their environment, memory or files, which Landlock's
ptrace rule refuses); a unix socket that exists as a file in a readable place can be
connected to; System V IPC is shared with the host.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from codeagent.sandbox import home as homes
from codeagent.sandbox import landlock
from codeagent.sandbox.protect import PROTECTED
from codeagent.sandbox.spec import (
    LANDLOCK_SECCOMP,
    PRIVATE_TMP,
    SandboxSpec,
    allowed_environment,
    own_folders,
    toolchains_in_tmp,
)

LAUNCHER = Path(__file__).with_name("_launch.py")
DEVICES = (
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
)
DEVICE_ACCESS = landlock.READ | landlock.WRITE_FILE | landlock.IOCTL_DEV


@dataclass(slots=True)
class Launch:
    """One command's launcher line, environment and private folder (removed by ``close``)."""

    argv: list[str]
    env: dict[str, str]
    private: Path

    def close(self) -> None:
        """Remove the private folder, also where a command left folders without write access."""
        for folder, subfolders, _ in os.walk(self.private):
            for name in subfolders:
                path = os.path.join(folder, name)
                if not os.path.islink(path):
                    os.chmod(path, 0o700)
        shutil.rmtree(self.private, ignore_errors=True)


def _real(path: Path | str) -> Path:
    return Path(os.path.realpath(path))


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def complement(root: Path, hidden: list[Path]) -> list[Path]:
    """Folders and files that together hold everything beneath ``root`` except ``hidden``
    (and except the folders on the way to a hidden one). Links are left out: what they point
    to is judged by its own place."""
    inner = [h for h in hidden if _within(h, root)]
    if not inner:
        return [root]
    if root in inner:
        return []
    found: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    for entry in entries:
        if not entry.is_symlink():
            found += complement(Path(entry.path), inner)
    return found


def read_rules(spec: SandboxSpec, workspace: Path, env: dict[str, str]) -> list[landlock.Rule]:
    """What commands may read: all but the hidden places, then the toolchains and devices. A
    toolchain's folder in /tmp may hold a hidden one (a ``$HOME`` there): it stays hidden."""
    own = [_real(p) for p in own_folders(env)]
    secret = [*homes.hidden_roots(spec.home), *homes.secret_places(own), *own]
    temp = [_real(tmp) for tmp in PRIVATE_TMP if tmp.exists()]
    paths = complement(Path("/"), [*secret, *temp, Path("/dev")])
    mounts = homes.toolchain_mounts(spec.home, env, keep_out=own)
    masked = [_real(p) for p in homes.masked_files(mounts, spec.home)]
    for root in toolchains_in_tmp(env):
        paths += complement(root, [*secret, *masked])
    for mount in mounts:
        paths += complement(mount, masked)
    rules = [landlock.Rule(str(p), landlock.READ) for p in paths]
    rules.append(landlock.Rule(str(workspace), landlock.READ))
    rules += [landlock.Rule(d, DEVICE_ACCESS) for d in DEVICES if os.path.exists(d)]
    return rules


def read_only_in_workspace(workspace: Path) -> list[Path]:
    """The protected names, and the targets inside the workspace of those that are links."""
    kept = [workspace / name for name in PROTECTED]
    for name in PROTECTED:
        path = workspace / name
        if path.is_symlink():
            target = _real(path)
            if _within(target, workspace) and target != workspace:
                kept.append(target)
    return kept


def write_rules(workspace: Path, private: Path) -> list[landlock.Rule]:
    """The private folder, and the workspace's top-level entries but the protected ones."""
    kept = read_only_in_workspace(workspace)
    paths: list[Path] = [private / "home", private / "tmp"]
    for entry in os.scandir(workspace):
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
            paths += complement(Path(entry.path), kept)
    return [landlock.Rule(str(p), landlock.WRITE) for p in paths]


def _private_home(private: Path, spec: SandboxSpec, env: dict[str, str]) -> Path:
    """An empty home in which each toolchain root under the real home is a link to it."""
    home = private / "home"
    home.mkdir()
    real_home = _real(spec.home)
    own = [_real(p) for p in own_folders(env)]
    for mount in homes.toolchain_mounts(spec.home, env, keep_out=own):
        if mount != real_home and real_home in mount.parents:
            link = home / mount.relative_to(real_home)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(mount)
    return home


def prepare(spec: SandboxSpec, argv: list[str], env: dict[str, str], version: int | None = None) -> Launch:
    """The launcher line for ``argv`` under ``spec``: a private folder made, the rules computed."""
    workspace = spec.workspace.resolve()
    private = Path(tempfile.mkdtemp(prefix="codeagent-sandbox-"))
    try:
        home = _private_home(private, spec, env)
        (private / "tmp").mkdir()
        rules = read_rules(spec, workspace, env) + write_rules(workspace, private)
    except BaseException:
        shutil.rmtree(private, ignore_errors=True)
        raise
    policy = {
        "rules": [[rule.path, rule.access] for rule in rules],
        "network": spec.network,
        "seccomp": spec.confinement == LANDLOCK_SECCOMP,
        "abi": landlock.abi() if version is None else version,
    }
    launcher = [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(policy), "--", *argv]
    return Launch(launcher, allowed_environment(spec, env, home=home, tmp=private / "tmp"), private)
