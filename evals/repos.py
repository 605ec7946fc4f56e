"""A fresh git repository at a task's base commit, from a local source, with no network.

Sources (``locate``): the task's ``repo_path``, else a folder under ``--repos DIR`` named
after the repository (``owner__name``, ``owner/name`` or ``name``, each also as a
``.bundle``). A source that is not there is a ``SourceMissing``: the task is skipped, with
the reason.

How each kind becomes a workspace (``materialize``):

- a git repository: a new repository fetches the base commit by id, so the copy holds the
  base and its ancestors only, never the later history that contains the fix;
- a git bundle: cloned bare into a scratch folder first, then fetched from as above
  (fetching from the bundle itself would unpack every object, the fix included);
- a plain source tree: copied (caches and ``node_modules`` left out), the gold patch
  reversed when the tree holds the fixed state, and committed as one root commit with a
  fixed author, date and message, so the same files always give the same commit id. The
  result must equal the task's ``base_commit``; a tree edited without updating it is an
  error, not a silent change of the task.

The workspace is on branch ``main`` with no remote. Files are written 0644 (the tasks need
no executables) so the commit id does not depend on the umask or how the tree was copied.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from codeagent.evals import patches
from codeagent.evals.task import Task
from codeagent.sandbox.git import GitError, git, git_outside

COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "codeagent evals",
    "GIT_AUTHOR_EMAIL": "evals@codeagent.invalid",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+00:00",
    "GIT_COMMITTER_NAME": "codeagent evals",
    "GIT_COMMITTER_EMAIL": "evals@codeagent.invalid",
    "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+00:00",
}
PLAIN = ["-c", "core.autocrlf=false", "-c", "core.safecrlf=false", "-c", "init.defaultBranch=main"]
LEFT_OUT = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".pytest_cache", "node_modules")


class SourceMissing(Exception):
    """The task's repository is not available here (the task is skipped)."""


class WorkspaceError(Exception):
    """The repository is there but no workspace at the base commit can be made from it."""


def locate(task: Task, repos: Path | None) -> Path:
    if task.repo_path:
        path = Path(task.repo_path)
        if not path.exists():
            raise SourceMissing(f"the repository source {path} does not exist")
        return path
    if repos is None:
        raise SourceMissing(
            f"no local source for {task.repo or task.instance_id}: give repo_path or --repos DIR"
        )
    owner, _, name = task.repo.rpartition("/")
    stems = [f"{owner}__{name}", f"{owner}/{name}", name] if owner else [name]
    for stem in stems:
        for candidate in (repos / stem, repos / f"{stem}.bundle"):
            if candidate.exists():
                return candidate
    raise SourceMissing(f"{task.repo} is not under {repos} (looked for {', '.join(stems)}, also as .bundle)")


def materialize(task: Task, source: Path, dest: Path) -> None:
    """A repository at ``task.base_commit`` in ``dest`` (which must not exist yet)."""
    dest.mkdir(parents=True)
    try:
        if source.is_file():
            _from_bundle(source, task.base_commit, dest)
        elif (source / ".git").exists() or (source / "objects").is_dir():
            _fetch_base(source, task.base_commit, dest)
        else:
            _from_tree(task, source, dest)
        head = git(["rev-parse", "HEAD"], dest).strip()
    except (GitError, patches.PatchError) as err:
        raise WorkspaceError(f"cannot make {task.instance_id}'s repository from {source}: {err}") from err
    if head != task.base_commit:
        raise WorkspaceError(
            f"{source} gives base commit {head}, but {task.instance_id} says {task.base_commit}"
            " (the stored tree changed: update base_commit)"
        )


def _fetch_base(source: Path, base: str, dest: Path) -> None:
    git_outside([*PLAIN, "init", "-q"], dest)
    git(["fetch", "-q", "--no-tags", str(source.resolve()), base], dest, timeout=600, protocols=("file",))
    git(["checkout", "-q", "-B", "main", base], dest)


def _from_bundle(bundle: Path, base: str, dest: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="codeagent-bundle-") as scratch:
        clone = Path(scratch) / "source.git"
        git_outside(
            ["clone", "-q", "--bare", str(bundle.resolve()), str(clone)],
            Path(scratch),
            timeout=600,
            protocols=("file",),
        )
        _fetch_base(clone, base, dest)


def _from_tree(task: Task, source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, ignore=LEFT_OUT, dirs_exist_ok=True)
    for path in dest.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o644)
    git_outside([*PLAIN, "init", "-q"], dest)
    if task.source_state == "fixed":
        patches.apply(dest, task.patch, reverse=True)
    git([*PLAIN, "add", "-A"], dest)
    git([*PLAIN, "commit", "-q", "--no-verify", "-m", "Initial commit"], dest, env=COMMIT_ENV)


def base_commit_of(task: Task, source: Path) -> str:
    """The commit a plain tree gives for ``task`` (authoring: fill in ``base_commit``)."""
    with tempfile.TemporaryDirectory(prefix="codeagent-base-") as scratch:
        dest = Path(scratch) / "repo"
        dest.mkdir()
        _from_tree(task, source, dest)
        return git(["rev-parse", "HEAD"], dest).strip()
