"""The git side of the headless workflow: branch, stash, commit, push.

Every call goes through one ``sandbox.git.GitRepo``, opened once at the start of a run
(``open_repo``): its git folder is pinned and its config vetted, so the repository's own
config cannot make these commands run programs (see ``sandbox/git.py``). The user's
uncommitted work is stashed (untracked files included) before the agent starts and restored
by stash commit id at the end, so it is never lost even if the stash list is edited meanwhile.

What a run may commit is checked here too (``commit_refusal``): nothing under a protected
name (CI configuration, ``.envrc``, ...; ``sandbox.protect.PROTECTED``) and no nested
repository (it would be committed as a gitlink to commits that exist nowhere else). And
``moved_refs`` says which refs other than the task branch changed during the run: with the
sandbox on ``.git`` is read-only to commands, so only an unconfined run can move them.

``push`` sends the branch with the user's credentials, or with ``push_token(env)``: the
``GH_TOKEN``/``GITHUB_TOKEN`` of the environment for https pushes to github.com (or to
``GITHUB_SERVER_URL``'s host), given to git only in that push's environment
(``sandbox.gitpush``), so a workflow needs no token persisted in ``.git/config``. Under the
Landlock fallback, which cannot hide ``.git/config`` from commands as bubblewrap does, a run
on a repository whose config holds credentials is refused (``refuse_exposed_credentials``).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from codeagent.agent.github import token_from_env
from codeagent.sandbox import gitpush
from codeagent.sandbox.git import GitError, GitRepo, UnsafeRepository, user_identity
from codeagent.sandbox.gitview import credential_names
from codeagent.sandbox.protect import PROTECTED
from codeagent.sandbox.spec import LANDLOCK, LANDLOCK_SECCOMP

FALLBACKS = (LANDLOCK, LANDLOCK_SECCOMP)

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


def open_repo(path: Path) -> GitRepo:
    """The repository holding ``path``, pinned and vetted; ``WorkflowError`` with the reason if unusable."""
    if not path.exists():
        raise WorkflowError(f"{path} does not exist")
    try:
        return GitRepo.open(path)
    except UnsafeRepository as err:
        raise WorkflowError(str(err)) from err


def refuse_exposed_credentials(repo: GitRepo, confinement: str | None) -> None:
    """``WorkflowError`` when commands would run under the Landlock fallback (``confinement``;
    None when unconfined) and the repository's git config holds credentials they could read."""
    if confinement not in FALLBACKS:
        return
    try:
        names = credential_names(repo.git_dir, repo.work_tree)
    except UnsafeRepository as err:
        raise WorkflowError(str(err)) from err
    if names:
        raise WorkflowError(
            f"{repo.git_dir / 'config'} (or a file it includes) holds credentials ({', '.join(names)}), "
            f"and the {confinement} sandbox cannot hide them from the model's commands as bubblewrap "
            "does; remove them (in GitHub Actions: actions/checkout with persist-credentials: false; "
            "codeagent pushes with GH_TOKEN or GITHUB_TOKEN), or run where bubblewrap works"
        )


def head(repo: GitRepo) -> str:
    try:
        return repo.run(["rev-parse", "HEAD"]).strip()
    except GitError as err:
        raise WorkflowError(f"{repo.work_tree} has no commits yet; commit something first") from err


def current_branch(repo: GitRepo) -> str | None:
    name = repo.run(["symbolic-ref", "--quiet", "--short", "HEAD"], check=False).strip()
    return name or None


def status_entries(repo: GitRepo) -> list[tuple[str, str]]:
    """(XY code, path) for every change, untracked files included (``??``)."""
    fields = repo.run(
        ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignore-submodules=all"]
    ).split("\0")
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


def dirty_paths(repo: GitRepo) -> list[str]:
    return [path for _, path in status_entries(repo)]


def stash_all(repo: GitRepo) -> str:
    """Stash tracked and untracked changes; return the stash commit id."""
    repo.run(
        ["stash", "push", "--include-untracked", "-m", "codeagent: user changes before fix"], env=IDENTITY
    )
    return repo.run(["rev-parse", "refs/stash"]).strip()


def restore_stash(repo: GitRepo, stash: str) -> None:
    repo.run(["stash", "apply", "--index", stash])
    listed = repo.run(["stash", "list", "--format=%H"]).split()
    if stash in listed:
        repo.run(["stash", "drop", f"stash@{{{listed.index(stash)}}}"])


def branch_name(base: str, repo: GitRepo) -> str:
    existing = set(repo.run(["for-each-ref", "--format=%(refname:short)", "refs/heads/"]).split())
    name, n = base, 1
    while name in existing:
        n += 1
        name = f"{base}-{n}"
    return name


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "task"


def create_branch(repo: GitRepo, name: str) -> None:
    repo.run(["checkout", "-q", "-b", name])


def checkout(repo: GitRepo, ref: str) -> None:
    repo.run(["checkout", "-q", ref])


def changed_paths(repo: GitRepo, ignore_untracked: set[str]) -> list[str]:
    """Files the agent changed: tracked changes plus new untracked files that are not by-products
    or nested repositories (git lists one as ``dir/``, never its files)."""
    return sorted(
        path
        for code, path in status_entries(repo)
        if code != "??"
        or (path not in ignore_untracked and not _generated(path) and not _nested_repo(repo, path))
    )


def _nested_repo(repo: GitRepo, path: str) -> bool:
    return path.endswith("/") and os.path.lexists(repo.work_tree / path / ".git")


def commit_refusal(paths: list[str]) -> str | None:
    """Why these paths must not be committed by a run, or None: a protected name among them."""
    touched = sorted({p.split("/", 1)[0] for p in paths if p.split("/", 1)[0].casefold() in PROTECTED})
    if not touched:
        return None
    return f"the change touches {', '.join(touched)}, which the agent may not change; nothing was committed"


def refs(repo: GitRepo) -> dict[str, str]:
    """Every ref and what it points at (``HEAD`` included)."""
    out = repo.run(["for-each-ref", "--format=%(refname) %(objectname)"])
    found = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    found["HEAD"] = repo.run(["rev-parse", "--verify", "--quiet", "HEAD"], check=False).strip()
    return found


def moved_refs(before: dict[str, str], after: dict[str, str], allowed: set[str]) -> list[str]:
    """Refs that appeared, disappeared or moved, other than ``allowed``."""
    names = (before.keys() | after.keys()) - allowed
    return sorted(name for name in names if before.get(name) != after.get(name))


def put_back_refs(repo: GitRepo, before: dict[str, str], moved: list[str]) -> None:
    """Return moved refs to where they were (deleting ones that did not exist)."""
    for name in moved:
        if name == "HEAD":
            continue  # HEAD follows the branch it names, put back with it
        if name in before:
            repo.run(["update-ref", "--no-deref", name, before[name]])
        else:
            repo.run(["update-ref", "-d", "--no-deref", name])


def _generated(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in GENERATED)


def commit(repo: GitRepo, paths: list[str], message: str) -> str:
    """Commit ``paths`` as the repository's user, else the user's own (global config), else codeagent."""
    repo.run(["add", "-A", "--", *paths])
    env = None if repo.run(["config", "user.email"], check=False).strip() else user_identity() or IDENTITY
    repo.run(["commit", "-q", "--no-verify", "-m", message], env=env)
    return head(repo)


def files_between(repo: GitRepo, base: str, tip: str) -> list[str]:
    return [name for name in repo.run(["diff", "--name-only", "-z", base, tip]).split("\0") if name]


def push(repo: GitRepo, branch: str, remote: str = "origin", token: gitpush.HostToken | None = None) -> None:
    gitpush.push(repo, remote, branch, token=token)


def push_token(env: Mapping[str, str]) -> gitpush.HostToken | None:
    """``GH_TOKEN`` (else ``GITHUB_TOKEN``) for pushes to ``GITHUB_SERVER_URL``'s host (github.com
    by default); None without a token or with a server URL that names no host."""
    token = token_from_env(env)
    server = urlsplit(env.get("GITHUB_SERVER_URL") or "https://github.com")
    try:
        port = server.port
    except ValueError:
        return None
    if not token or server.scheme != "https" or not server.hostname:
        return None
    return gitpush.HostToken(server.hostname + (f":{port}" if port not in (None, 443) else ""), token)
