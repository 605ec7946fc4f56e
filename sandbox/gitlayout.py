"""Where a repository's git files are, checked without git: ``.git`` found and pinned, links
and indirections refused, config files (and what they include) listed for vetting.

Git itself would follow a ``.git`` file's ``gitdir:``, a ``commondir`` and links inside the git
folder (writing through them); these checks run before any git command does. They raise
``UnsafeRepository`` with the reason. Limits: ``objects/info/alternates`` is allowed (objects
read from another repository change no file and run nothing).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from codeagent.sandbox.gitconfig import Entry, GitConfigError, read_config

MAX_CONFIG_FILES = 16


class GitError(RuntimeError):
    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"git {' '.join(args)} failed ({returncode}): {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


class UnsafeRepository(GitError):
    """codeagent will not run git on this repository (or it changed under us); the message says why."""

    def __init__(self, message: str) -> None:
        RuntimeError.__init__(self, message)
        self.returncode = 128
        self.stderr = message


def find_work_tree(path: Path) -> Path | None:
    """The nearest folder at or above ``path`` that has a ``.git`` entry (of any kind)."""
    current = Path(os.path.realpath(path))
    for folder in (current, *current.parents):
        if os.path.lexists(folder / ".git"):
            return folder
    return None


def ident(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def check_git_dir(git_dir: Path) -> tuple[int, int]:
    """The folder's identity, or ``UnsafeRepository`` when it is not a plain git folder."""
    try:
        st = os.lstat(git_dir)
    except FileNotFoundError as err:
        raise UnsafeRepository(f"{git_dir} does not exist") from err
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeRepository(f"{git_dir} is a symbolic link; codeagent works on a .git that is a folder")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeRepository(
            f"{git_dir} is a file pointing at another git folder (a linked worktree or a submodule "
            "checkout); codeagent works on a repository whose .git is a folder"
        )
    if os.path.lexists(git_dir / "commondir"):
        raise UnsafeRepository(f"{git_dir} takes its refs and config from another folder (commondir)")
    config = git_dir / "config"
    if os.path.lexists(config) and not stat.S_ISREG(os.lstat(config).st_mode):
        raise UnsafeRepository(f"{config} is not a regular file")
    return ident(st)


def link_inside(git_dir: Path) -> str | None:
    """The first symbolic link anywhere under the git folder, or None. Git writes through links
    (a ``logs/HEAD`` linked to a shell's rc file would get a reflog line appended there)."""
    stack = [str(git_dir)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    return entry.path
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return None


def digest_of(files: list[Path]) -> str:
    """One digest of the files' names and contents (a missing file counts as such)."""
    digest = hashlib.sha256()
    for path in files:
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            data = b"\0missing"
        digest.update(f"{path}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()


def stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def submodule_git_dir(path: Path) -> Path | None:
    """The git folder of a checked-out submodule at ``path``: ``path/.git`` itself, or where a
    ``gitdir:`` file there points; None when nothing is checked out."""
    dot_git = path / ".git"
    try:
        st = os.lstat(dot_git)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISDIR(st.st_mode):
        return dot_git
    if stat.S_ISREG(st.st_mode):
        text = dot_git.read_text(errors="replace").strip()
        if text.startswith("gitdir:"):
            target = Path(text.removeprefix("gitdir:").strip())
            return Path(os.path.realpath(target if target.is_absolute() else path / target))
    raise UnsafeRepository(f"{dot_git} is neither a git folder nor a gitdir file")


def submodule_state(path: Path) -> str:
    """What is checked out at a gitlink, cheaply: the kind of its ``.git`` and where it points."""
    dot_git = path / ".git"
    try:
        st = os.lstat(dot_git)
    except (FileNotFoundError, NotADirectoryError):
        return "absent"
    extra = dot_git.read_text(errors="replace") if stat.S_ISREG(st.st_mode) and st.st_size < 4096 else ""
    return f"{st.st_mode}:{st.st_ino}:{extra}"


def _include_target(value: str, including: Path) -> Path:
    """Where an ``include.path`` value points (``~/`` is the user's home, as when git pushes)."""
    if value.startswith("~/"):
        return Path.home() / value[2:]
    path = Path(value)
    return path if path.is_absolute() else including.parent / path


def config_files(git_dir: Path, work_tree: Path) -> tuple[list[Path], list[Entry]]:
    """The repository's config files (``config``, ``config.worktree``, every file they include,
    whatever the ``includeIf`` condition) and their entries; ``UnsafeRepository`` for an
    include of a file in the work tree or a config git cannot read."""
    pending = [git_dir / "config", git_dir / "config.worktree"]
    files: list[Path] = []
    entries: list[Entry] = []
    while pending:
        path = pending.pop(0)
        if path in files:
            continue
        if len(files) >= MAX_CONFIG_FILES:
            raise UnsafeRepository(f"its git config includes more than {MAX_CONFIG_FILES} files")
        real = Path(os.path.realpath(path))
        if real == work_tree or (work_tree in real.parents and git_dir not in real.parents):
            raise UnsafeRepository(
                f"its git config includes {path}, a file in the work tree that commands can change"
            )
        files.append(path)
        try:
            found = read_config(path) if path.is_file() else []
        except GitConfigError as err:
            raise UnsafeRepository(f"cannot read {path}: {err}") from err
        entries += found
        pending += [
            _include_target(e.value, path)
            for e in found
            if e.name == "path" and e.value and e.section in ("include", "includeif")
        ]
    return files, entries
