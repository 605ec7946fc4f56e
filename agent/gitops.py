"""The git side of the headless workflow: branch, stash, commit, push.

Every call goes through ``sandbox.git.git`` so the repository's own config cannot make
these commands run programs. The user's uncommitted work is stashed (untracked files
included) before the agent starts and restored by stash commit id at the end, so it is
never lost even if the stash list is edited meanwhile.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from codeagent.sandbox.git import GitError, git

# Untracked files matching these are build and test by-products, never committed for the user.
GENERATED = (
    "__pycache__/*",
    "*/__pycache__/*",
    "*.pyc",
    ".pytest_cache/*",
    "*/.pytest_cache/*",
    ".mypy_cache/*",
    ".ruff_cache/*",
    "node_modules/*",
    "*/node_modules/*",
    "target/*",
    ".coverage",
    "*.egg-info/*",
    "*/*.egg-info/*",
)
IDENTITY = {
    "GIT_AUTHOR_NAME": "codeagent",
    "GIT_AUTHOR_EMAIL": "codeagent@localhost",
    "GIT_COMMITTER_NAME": "codeagent",
    "GIT_COMMITTER_EMAIL": "codeagent@localhost",
}


class WorkflowError(Exception):
    """A user-facing problem with the repository state (exit code 2)."""


def toplevel(path: Path) -> Path:
    try:
        return Path(git(["rev-parse", "--show-toplevel"], path).strip())
    except GitError as err:
        raise WorkflowError(f"{path} is not inside a git repository") from err
    except FileNotFoundError as err:
        raise WorkflowError(f"{path} does not exist") from err


def head(root: Path) -> str:
    try:
        return git(["rev-parse", "HEAD"], root).strip()
    except GitError as err:
        raise WorkflowError(f"{root} has no commits yet; commit something first") from err


def current_branch(root: Path) -> str | None:
    name = git(["symbolic-ref", "--quiet", "--short", "HEAD"], root, check=False).strip()
    return name or None


def status_entries(root: Path) -> list[tuple[str, str]]:
    """(XY code, path) for every change, untracked files included (``??``)."""
    fields = git(["status", "--porcelain=v1", "-z", "--untracked-files=all"], root).split("\0")
    entries, index = [], 0
    while index < len(fields):
        entry = fields[index]
        index += 1
        if len(entry) < 4:
            continue
        entries.append((entry[:2], entry[3:]))
        if entry[0] in "RC":
            index += 1  # the rename's source path follows as its own field
    return entries


def dirty_paths(root: Path) -> list[str]:
    return [path for _, path in status_entries(root)]


def stash_all(root: Path) -> str:
    """Stash tracked and untracked changes; return the stash commit id."""
    git(
        ["stash", "push", "--include-untracked", "-m", "codeagent: user changes before fix"],
        root,
        env=IDENTITY,
    )
    return git(["rev-parse", "refs/stash"], root).strip()


def restore_stash(root: Path, stash: str) -> None:
    git(["stash", "apply", "--index", stash], root)
    listed = git(["stash", "list", "--format=%H"], root).split()
    if stash in listed:
        git(["stash", "drop", f"stash@{{{listed.index(stash)}}}"], root)


def branch_name(base: str, root: Path) -> str:
    existing = set(git(["for-each-ref", "--format=%(refname:short)", "refs/heads/"], root).split())
    name, n = base, 1
    while name in existing:
        n += 1
        name = f"{base}-{n}"
    return name


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "task"


def create_branch(root: Path, name: str) -> None:
    git(["checkout", "-q", "-b", name], root)


def checkout(root: Path, ref: str) -> None:
    git(["checkout", "-q", ref], root)


def changed_paths(root: Path, ignore_untracked: set[str]) -> list[str]:
    """Files the agent changed: tracked changes plus new untracked files that are not by-products."""
    return sorted(
        path
        for code, path in status_entries(root)
        if code != "??" or (path not in ignore_untracked and not _generated(path))
    )


def _generated(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in GENERATED)


def commit(root: Path, paths: list[str], message: str) -> str:
    git(["add", "-A", "--", *paths], root)
    env = IDENTITY if not git(["config", "user.email"], root, check=False).strip() else None
    git(["commit", "-q", "--no-verify", "-m", message], root, env=env)
    return head(root)


def files_between(root: Path, base: str, tip: str) -> list[str]:
    return [line for line in git(["diff", "--name-only", base, tip], root).splitlines() if line]


def push(root: Path, branch: str, remote: str = "origin") -> None:
    git(["push", "--set-upstream", remote, branch], root, timeout=300)
