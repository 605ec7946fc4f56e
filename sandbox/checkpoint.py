"""Exact undo: snapshots of the workspace in a shadow git repository.

Before every tool call that can change files, ``snapshot`` records the workspace (tracked
and untracked files, ignored ones left out as in the user's own repository) as a commit in
a bare repository kept outside the workspace (under codeagent's state folder, one per
workspace path). The user's ``.git`` is never written and no hook runs: every call goes
through ``sandbox.git.git`` with an index file of our own.

``undo`` brings the workspace back to the newest snapshot that differs from it: files
created since are deleted, deleted ones come back, changed ones get their old content,
whatever made the change (an edit tool or a shell command). Ignored files (``.env``,
build output) are neither captured nor touched. Before undoing, the current state is
snapshotted too, so nothing is lost. Limits: empty folders are not tracked; file modes
other than the executable bit are not restored; nested repositories are skipped.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from codeagent.sandbox.git import git

REF = "refs/codeagent/checkpoints"
IDENTITY = {
    "GIT_AUTHOR_NAME": "codeagent",
    "GIT_AUTHOR_EMAIL": "codeagent@localhost",
    "GIT_COMMITTER_NAME": "codeagent",
    "GIT_COMMITTER_EMAIL": "codeagent@localhost",
}


def default_store(workspace: Path) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    key = hashlib.sha1(str(workspace.resolve()).encode()).hexdigest()[:16]
    return Path(base) / "codeagent" / "checkpoints" / f"{workspace.name}-{key}.git"


@dataclass(slots=True)
class Undone:
    commit: str
    label: str
    changed: list[str]


class Checkpoints:
    def __init__(self, workspace: Path, store: Path | None = None) -> None:
        self.workspace = workspace.resolve()
        self.store = store or default_store(self.workspace)
        if not (self.store / "HEAD").exists():
            self.store.mkdir(parents=True, exist_ok=True)
            git(["init", "-q", "--bare", str(self.store)], self.store)

    def _git(self, args: list[str], check: bool = True) -> str:
        env = {
            **IDENTITY,
            "GIT_DIR": str(self.store),
            "GIT_WORK_TREE": str(self.workspace),
            "GIT_INDEX_FILE": str(self.store / "codeagent-index"),
        }
        exclude = self.workspace / ".git" / "info" / "exclude"
        extra = ["-c", f"core.excludesFile={exclude}"] if exclude.is_file() else []
        return git([*extra, *args], self.workspace, env=env, check=check)

    def head(self) -> str | None:
        return self._git(["rev-parse", "--verify", "--quiet", REF], check=False).strip() or None

    def _tree(self) -> str:
        self._git(["add", "-A", "--ignore-errors", "."])
        return self._git(["write-tree"]).strip()

    def snapshot(self, label: str) -> str:
        """Record the workspace now; returns the snapshot's commit (a new one only if it changed)."""
        tree, parent = self._tree(), self.head()
        if parent and self._git(["rev-parse", f"{parent}^{{tree}}"]).strip() == tree:
            return parent
        args = ["commit-tree", tree, "-m", label] + (["-p", parent] if parent else [])
        commit = self._git(args).strip()
        self._git(["update-ref", REF, commit])
        return commit

    def diff(self, since: str) -> str:
        """What changed in the workspace since the snapshot ``since``, as a git diff (for a
        session's "everything changed" view); the shadow index is refreshed, nothing is committed."""
        return self._git(
            ["diff", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames", since, self._tree()]
        )

    def history(self) -> list[tuple[str, str]]:
        """(commit, label) newest first."""
        if not self.head():
            return []
        out = self._git(["log", "--format=%H %s", REF])
        return [tuple(line.split(" ", 1)) for line in out.splitlines()]  # type: ignore[misc]

    def undo(self) -> Undone | None:
        """Restore the newest snapshot that differs from the workspace; None if there is none."""
        current_tree = self._tree()
        for commit, label in self.history():
            if self._git(["rev-parse", f"{commit}^{{tree}}"]).strip() != current_tree:
                self.snapshot(f"before undo to {commit[:12]}")
                changed = self._restore(commit)
                self._git(["update-ref", REF, commit])
                return Undone(commit, label, changed)
        return None

    def _restore(self, commit: str) -> list[str]:
        changed = [
            line for line in self._git(["diff", "--name-only", "--no-renames", commit]).splitlines() if line
        ]
        wanted = set(self._git(["ls-tree", "-r", "--name-only", commit]).splitlines())
        for rel in changed:
            path = self.workspace / rel
            if rel not in wanted and (path.is_file() or path.is_symlink()):
                path.unlink()
                _prune_empty(path.parent, self.workspace)
        self._git(["read-tree", commit])
        self._git(["checkout-index", "-a", "-f"])
        return changed


def _prune_empty(folder: Path, root: Path) -> None:
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
