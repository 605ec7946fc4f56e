"""Protected names at the top of the workspace: what a sandboxed command may never change.

Some files are run or trusted later, outside the sandbox: git's own folder (its config,
hooks, refs and objects), CI configuration that runs with the repository's secrets on the
next push, direnv's ``.envrc``, codeagent's ``.codeagent``. They are all *top-level* names,
and that is what makes protecting them sound: each is mounted read-only as a whole, at its
own name, and a mount point can be neither renamed nor removed (``EBUSY``). Protecting a
deeper path (``.git/hooks``) is not enough, because renaming its parent (``mv .git x``)
carries the mount away and frees the name; the workspace root itself is a bind mount, so
the parent of a top-level name cannot be renamed either.

``guard(workspace)`` prepares one command:

- an existing folder or file is mounted read-only onto itself;
- a missing name gets an empty placeholder folder (also for names of files: an empty folder
  is invisible to ``git status``, and nothing runs a folder named ``.envrc``), made with
  ``mkdir`` at the top of the workspace and mounted read-only, so it cannot be created either; after the command ``Guard.release`` removes the placeholder only if the
  entry at that name is still the very inode it created (``lstat``, never following a link).
  The placeholders are written to a journal (one file per command, named by its process, in codeagent's state
  folder) as soon as they are made; a process killed mid-command leaves its journal behind,
  and the next ``guard`` removes that dead process's placeholders the same careful way;
- a name that is a symbolic link (committed that way) cannot be mounted over (a mount
  follows the link): its target is mounted read-only when it lies inside the workspace,
  and after the command ``release`` checks the link is the same; a replaced link is put
  back and ``ProtectedPathChanged`` raised, so the run fails with the reason.

``.git/config`` is overlaid with a view that carries no credentials (``redacted``, from
``gitview.py``), when it is a regular file.

Limits: while a command runs, placeholders are visible in the workspace (``ls -a`` shows
empty folders); a protected name that is a link to a folder
outside the workspace protects nothing there, but the sandbox cannot write outside anyway.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

PROTECTED = frozenset(
    {".git", ".github", ".gitlab", ".circleci", ".codeagent", ".devcontainer", ".envrc", ".gitlab-ci.yml"}
)


class ProtectedPathChanged(RuntimeError):
    """A command replaced a protected name; it has been put back. The message says which."""


_RECORDS = itertools.count()


@dataclass(slots=True)
class Journal:
    """Placeholders a command has made and not yet removed, kept on disk for crash recovery: one
    record per command (``PID-N.json``), so commands running at once in one process (parallel
    eval tasks) never overwrite or erase each other's."""

    folder: Path

    def record(self) -> JournalRecord:
        return JournalRecord(self.folder / f"{os.getpid()}-{next(_RECORDS)}.json")

    def recover(self) -> None:
        """Remove the placeholders of processes that died before removing them."""
        if not self.folder.is_dir():
            return
        for record in self.folder.glob("*.json"):
            pid = record.stem.split("-")[0]
            if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
                continue
            with contextlib.suppress(OSError, ValueError):
                for path, ident in json.loads(record.read_text()):
                    _remove_if_same(Path(path), (int(ident[0]), int(ident[1])))
            with contextlib.suppress(FileNotFoundError):
                record.unlink()


@dataclass(slots=True)
class JournalRecord:
    path: Path

    def write(self, entries: list[tuple[Path, tuple[int, int]]]) -> None:
        if not entries:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps([[str(p), list(ident)] for p, ident in entries]))
        os.replace(tmp, self.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(slots=True)
class Guard:
    argv: list[str] = field(default_factory=list)  # bwrap mount options
    placeholders: list[tuple[Path, tuple[int, int]]] = field(default_factory=list)
    links: list[tuple[Path, str, tuple[int, int]]] = field(default_factory=list)
    journal: JournalRecord | None = None

    def release(self) -> None:
        """Remove this command's placeholders; put back and report a replaced protected link."""
        for path, ident in reversed(self.placeholders):
            _remove_if_same(path, ident)
        if self.journal is not None and self.placeholders:
            self.journal.write([])
        changed = [path for path, target, ident in self.links if not _same_link(path, target, ident)]
        for path, target, _ in self.links:
            if path in changed:
                _restore_link(path, target)
        if changed:
            names = ", ".join(p.name for p in changed)
            raise ProtectedPathChanged(
                f"the command replaced {names}, a protected path (a link in this repository); "
                "it has been put back and the run stops"
            )


def _ident(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _placeholder(path: Path) -> tuple[int, int]:
    os.mkdir(path, 0o755)  # fails on anything already there, a dangling link included
    return _ident(os.lstat(path))


def _remove_if_same(path: Path, ident: tuple[int, int]) -> None:
    st = _lstat(path)
    if st is None or _ident(st) != ident:
        return
    if stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(OSError):  # not empty: something was mounted or written there; keep it
            os.rmdir(path)


def _same_link(path: Path, target: str, ident: tuple[int, int]) -> bool:
    st = _lstat(path)
    return st is not None and stat.S_ISLNK(st.st_mode) and _ident(st) == ident and os.readlink(path) == target


def _restore_link(path: Path, target: str) -> None:
    st = _lstat(path)
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)  # fd-based on Linux: never follows links inside
        else:
            os.unlink(path)
    os.symlink(target, path)


def _inside(path: Path, workspace: Path) -> bool:
    return path == workspace or workspace in path.parents


def guard(workspace: Path, git_config_view: Path | None, journal: Journal) -> Guard:
    """Mount options protecting every protected name of ``workspace`` (already resolved)."""
    journal.recover()
    result = Guard(journal=journal.record())
    for name in sorted(PROTECTED):
        path = workspace / name
        st = _lstat(path)
        if st is None:
            result.placeholders.append((path, _placeholder(path)))
            source = path
        elif stat.S_ISLNK(st.st_mode):
            result.links.append((path, os.readlink(path), _ident(st)))
            real = Path(os.path.realpath(path))
            if _inside(real, workspace) and real != workspace and real.exists():
                result.argv += ["--ro-bind", str(real), str(real)]
            continue
        else:
            source = path
        result.argv += ["--ro-bind", str(source), str(path)]
    result.journal.write(result.placeholders)
    config = workspace / ".git" / "config"
    config_st = _lstat(config)
    if git_config_view is not None and config_st is not None and stat.S_ISREG(config_st.st_mode):
        result.argv += ["--ro-bind", str(git_config_view), str(config)]
    return result
