"""Git on the host, out of the workspace's reach.

Every git command codeagent runs itself (the ``fix`` workflow's branch, stash and commit,
checkpoints, ``undo``, file listings, eval workspaces) goes through ``GitRepo.run``, and a
repository and its checkout are exactly what an attacker may have written. So:

- **The git folder is resolved once and pinned** (``gitlayout.py``): found without git, it must
  be a real folder (not a link, not a ``gitdir:`` file of a linked worktree or submodule
  checkout) with no ``commondir`` and no link anywhere inside (git writes through links). Its
  device and inode are kept and checked on every call. Git is told ``GIT_DIR``,
  ``GIT_WORK_TREE`` and ``GIT_COMMON_DIR`` explicitly: ``core.worktree``, discovery and a
  ``commondir`` play no part.
- **The only config read is the vetted one.** No system or global config, no ``HOME``; the
  repository's config files (``config``, ``config.worktree`` and every file they include,
  whatever an ``includeIf`` condition says: ``actions/checkout`` v6 keeps its token in one)
  are read as data, refused when an include points into the work tree (commands can change
  it), and every code-running entry is overridden (``gitpolicy.overrides``) on top of
  ``gitpolicy.FIXED``, all through ``GIT_CONFIG_COUNT`` (which git hands on to the git
  processes it starts). ``gitpolicy.FIXED_ENV`` switches off what an override cannot: every
  transport unless a call allows one, lazy fetches, proxy programs. The files' digest is kept;
  when it changes (codeagent's own ``push -u`` writes to the config) they are vetted again.
- **Checked-out submodules are vetted too.** Git enters them (``status``, ``stash``, ``add``
  over a gitlink) and runs git there with their own config; each one's config joins the
  overrides, recursively, kept current as the index and the submodules change.

``gitpush.push`` is the one call that needs the user's own settings (``gituser.py``:
credential helpers, ssh command): over https or ssh, or into a bare repository on this machine
outside the work tree with its hooks off; never to a remote with several URLs or through
rewritten URLs (``url.*.insteadOf``).

``git(args, cwd)`` is the one-off form (the repository at ``cwd``, opened once per process);
``git_outside`` runs commands that make repositories (``init``, ``clone``) with the same settings.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, Unpack

from codeagent.sandbox import gitpolicy
from codeagent.sandbox.gitconfig import neutral_env
from codeagent.sandbox.gitlayout import (
    GitError,
    UnsafeRepository,
    check_git_dir,
    config_files,
    digest_of,
    find_work_tree,
    link_inside,
    stat_key,
    submodule_git_dir,
    submodule_state,
)
from codeagent.sandbox.gitpolicy import Setting
from codeagent.sandbox.gituser import user_identity

__all__ = ["GitError", "GitRepo", "UnsafeRepository", "git", "git_outside", "is_git_repo", "user_identity"]

MAX_SUBMODULE_DEPTH = 3


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    return neutral_env() | gitpolicy.FIXED_ENV | (extra or {})


def _config_env(settings: list[Setting]) -> dict[str, str]:
    """``settings`` as git's command-line config in the environment (``GIT_CONFIG_COUNT``):
    unlike ``-c``, a key may hold ``=``; git hands them on to the git processes it starts."""
    env = {"GIT_CONFIG_COUNT": str(len(settings))}
    for index, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def settings_env(extra: list[Setting]) -> dict[str, str]:
    return _config_env([*gitpolicy.FIXED, *extra])


def _call(
    args: list[str], cwd: Path, env: dict[str, str], *, input_text: str | None, timeout: float
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``git --no-pager args``.

    Bytes in and out: text mode would turn a CR in a file name into a newline. Names that are
    not UTF-8 round-trip as surrogates (os.fsencode undoes them in arguments)."""
    proc = subprocess.run(
        ["git", "--no-pager", *args],
        cwd=cwd,
        input=None if input_text is None else input_text.encode("utf-8", "surrogateescape"),
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    return (
        proc.returncode,
        proc.stdout.decode("utf-8", "surrogateescape"),
        proc.stderr.decode("utf-8", "replace"),
    )


def run_git(
    args: list[str], cwd: Path, env: dict[str, str], *, check: bool, input_text: str | None, timeout: float
) -> str:
    code, out, err = _call(args, cwd, env, input_text=input_text, timeout=timeout)
    if check and code != 0:
        raise GitError(args, code, err)
    return out


class CallOptions(TypedDict, total=False):
    """What a git call may add: its stdin, variables of its own, a time limit, transports."""

    input_text: str | None
    env: dict[str, str] | None
    timeout: float
    protocols: tuple[str, ...]


@dataclass(slots=True)
class GitRepo:
    """A repository opened for codeagent's own git calls: a pinned git folder and its vetted config."""

    work_tree: Path
    git_dir: Path
    ident: tuple[int, int] = (0, 0)
    digest: str = ""
    overrides: list[Setting] = field(default_factory=list)
    rewrites_urls: bool = False
    files: list[Path] = field(default_factory=list)  # the config files vetted (the config, its includes)
    boundary: Path | None = None  # the outermost work tree (a submodule's includes may not point into it)
    depth: int = 0  # 0 for the repository itself, 1 for its submodules, ...
    index_key: tuple[int, int, int] | None = None
    gitlinks: list[str] = field(default_factory=list)
    submodules: dict[str, tuple[str, GitRepo | None]] = field(default_factory=dict)  # path -> (state, repo)

    @classmethod
    def open(cls, path: Path) -> GitRepo:
        """The repository whose work tree holds ``path``; ``UnsafeRepository`` if none is usable."""
        top = find_work_tree(path)
        if top is None:
            raise UnsafeRepository(f"{path} is not inside a git repository")
        return cls.at(top, top / ".git")

    @classmethod
    def at(cls, work_tree: Path, git_dir: Path, boundary: Path | None = None, depth: int = 0) -> GitRepo:
        """An explicitly given work tree and git folder (checkpoints keep theirs outside the tree)."""
        repo = cls(Path(os.path.realpath(work_tree)), git_dir.absolute(), depth=depth)
        repo.boundary = boundary or repo.work_tree
        repo.ident = check_git_dir(repo.git_dir)
        link = link_inside(repo.git_dir)
        if link is not None:
            raise UnsafeRepository(f"{link} is a symbolic link; git would write through it")
        repo._vet()
        return repo

    def _vet(self) -> None:
        files, entries = config_files(self.git_dir, self.boundary or self.work_tree)
        why = gitpolicy.refusal(entries)
        if why is not None:
            raise UnsafeRepository(f"codeagent will not run git on {self.work_tree}: {why}")
        self.overrides = gitpolicy.overrides(entries)
        self.rewrites_urls = any(e.section == "url" for e in entries)
        self.files = files
        self.digest = digest_of(files)

    def verify(self) -> None:
        if check_git_dir(self.git_dir) != self.ident:
            raise UnsafeRepository(f"{self.git_dir} was replaced by another folder since codeagent opened it")
        if digest_of(self.files) != self.digest:
            self._vet()
        self._verify_submodules()

    def _verify_submodules(self) -> None:
        """Keep ``submodules`` matching the index's gitlinks and what is checked out at them.

        Git enters a checked-out submodule to ask whether it is modified (``status``, ``stash``,
        ``add`` over a gitlink), and runs git there with that submodule's own config. Our ``-c``
        settings reach those processes too (``GIT_CONFIG_PARAMETERS``), so each checked-out
        submodule's config is vetted like ours and its code-running entries join the overrides."""
        key = stat_key(self.git_dir / "index")
        if key != self.index_key:
            self.index_key = key
            self.gitlinks = self._list_gitlinks() if key is not None else []
        for path in self.gitlinks:
            state = submodule_state(self.work_tree / path)
            known = self.submodules.get(path)
            if known is not None and known[0] == state and (known[1] is None or known[1]._unchanged()):
                continue
            self.submodules[path] = (state, self._open_submodule(path))
        for path in set(self.submodules) - set(self.gitlinks):
            del self.submodules[path]

    def _unchanged(self) -> bool:
        if check_git_dir(self.git_dir) != self.ident or digest_of(self.files) != self.digest:
            return False
        self._verify_submodules()
        return True

    def _list_gitlinks(self) -> list[str]:
        env = self._base_env(None) | settings_env(self.overrides)
        out = run_git(
            ["ls-files", "--stage", "-z"], self.work_tree, env, check=True, input_text=None, timeout=120.0
        )
        return [record.split("\t", 1)[1] for record in out.split("\0") if record.startswith("160000 ")]

    def _open_submodule(self, path: str) -> GitRepo | None:
        git_dir = submodule_git_dir(self.work_tree / path)
        if git_dir is None:
            return None  # not checked out: git does not enter it
        if self.depth + 1 > MAX_SUBMODULE_DEPTH:
            raise UnsafeRepository(f"{path} nests submodules more than {MAX_SUBMODULE_DEPTH} deep")
        real = Path(os.path.realpath(git_dir))
        if not any(real == place or place in real.parents for place in (self.git_dir, self.work_tree / path)):
            # Git would refresh (write) the index of whatever repository it points at.
            raise UnsafeRepository(f"the submodule {path} takes its git folder from elsewhere ({git_dir})")
        return GitRepo.at(self.work_tree / path, git_dir, self.boundary, self.depth + 1)

    def all_overrides(self) -> list[Setting]:
        """This repository's overrides and those of every checked-out submodule, recursively."""
        found = list(self.overrides)
        for _, repo in self.submodules.values():
            if repo is not None:
                found += repo.all_overrides()
        return found

    def _base_env(self, extra: dict[str, str] | None) -> dict[str, str]:
        # GIT_COMMON_DIR: refs, objects and config come from this folder whatever a commondir file says.
        place = {
            "GIT_DIR": str(self.git_dir),
            "GIT_WORK_TREE": str(self.work_tree),
            "GIT_COMMON_DIR": str(self.git_dir),
        }
        return _env(extra) | place

    def run(self, args: list[str], *, check: bool = True, **options: Unpack[CallOptions]) -> str:
        """``git args`` in the work tree; returns stdout. ``protocols`` allows transports (``file``)."""
        code, out, err = self.call(args, **options)
        if check and code != 0:
            raise GitError(args, code, err)
        return out

    def call(self, args: list[str], **options: Unpack[CallOptions]) -> tuple[int, str, str]:
        """``run`` that returns (exit status, stdout, stderr) and raises only for an unsafe repository."""
        self.verify()
        # The caller's variables (an index file, an identity) go first: ours are not theirs to change.
        full = (options.get("env") or {}) | self._base_env(None) | settings_env(self.all_overrides())
        full["GIT_ALLOW_PROTOCOL"] = ":".join(options.get("protocols", ()))
        input_text, timeout = options.get("input_text"), options.get("timeout", 120.0)
        return _call(args, self.work_tree, full, input_text=input_text, timeout=timeout)


def git(args: list[str], cwd: Path, *, check: bool = True, **options: Unpack[CallOptions]) -> str:
    """``git args`` in the repository holding ``cwd``, opened once per process and work tree (and
    opened again if its git folder was replaced: this form pins nothing across calls)."""
    return _opened(cwd).run(args, check=check, **options)


_OPENED: dict[Path, GitRepo] = {}


def _opened(cwd: Path) -> GitRepo:
    top = find_work_tree(cwd)
    known = _OPENED.get(top) if top is not None else None
    if known is not None and check_git_dir(known.git_dir) == known.ident:
        return known
    repo = GitRepo.open(cwd)
    if len(_OPENED) > 64:
        _OPENED.clear()
    _OPENED[repo.work_tree] = repo
    return repo


def git_outside(
    args: list[str],
    cwd: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    protocols: tuple[str, ...] = (),
) -> str:
    """A git command that works on no existing work tree (``init``, ``clone --bare``), run from
    ``cwd`` with the same settings and no repository discovery above it."""
    ceiling = {"GIT_CEILING_DIRECTORIES": str(Path(os.path.realpath(cwd)).parent)}
    full = (env or {}) | _env(ceiling) | settings_env([]) | {"GIT_ALLOW_PROTOCOL": ":".join(protocols)}
    return run_git(args, cwd, full, check=True, input_text=None, timeout=timeout)


def is_git_repo(path: Path) -> bool:
    top = find_work_tree(path)
    return top is not None and (top / ".git" / "HEAD").is_file() and not (top / ".git").is_symlink()
