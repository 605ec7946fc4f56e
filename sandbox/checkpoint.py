"""Exact undo: snapshots of the workspace in a shadow git repository.

Before every tool call that can change files, ``snapshot`` records the workspace (tracked
and untracked files, ignored ones left out as in the user's own repository) as a commit in
a bare repository kept outside the workspace (under codeagent's state folder, one per
workspace path). The user's ``.git`` is never written and nothing of the workspace's config
runs: every call goes through a ``sandbox.git.GitRepo`` whose git folder is the store (our
own config) and whose work tree is the workspace, with an index file of our own, and never
recurses into a nested repository.

``undo`` brings the workspace back to the newest snapshot that differs from it: files
created since are deleted, deleted ones come back, changed ones get their old content,
whatever made the change (an edit tool or a shell command). Ignored files (``.env``,
build output) are neither captured nor touched. Before undoing, the current state is
snapshotted too, so nothing is lost. Limits: empty folders are not tracked; file modes
other than the executable bit are not restored; nested repositories are skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from codeagent import xdg
from codeagent.sandbox.git import GitError, GitRepo, git_outside

REF = "refs/codeagent/checkpoints"
IDENTITY = {
    "GIT_AUTHOR_NAME": "codeagent",
    "GIT_AUTHOR_EMAIL": "codeagent@localhost",
    "GIT_COMMITTER_NAME": "codeagent",
    "GIT_COMMITTER_EMAIL": "codeagent@localhost",
}


def default_store(workspace: Path) -> Path:
    key = hashlib.sha1(str(workspace.resolve()).encode()).hexdigest()[:16]
    return xdg.folder("state") / "checkpoints" / f"{workspace.name}-{key}.git"


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
            git_outside(["init", "-q", "--bare", str(self.store)], self.store)
        self.repo = GitRepo.at(self.workspace, self.store)

    def _git(self, args: list[str], check: bool = True, input_text: str | None = None) -> str:
        env = {**IDENTITY, "GIT_INDEX_FILE": str(self.store / "codeagent-index")}
        return self.repo.run([*self._excludes(), *args], env=env, check=check, input_text=input_text)

    def _excludes(self) -> list[str]:
        exclude = self.workspace / ".git" / "info" / "exclude"
        return ["-c", f"core.excludesFile={exclude}"] if exclude.is_file() else []

    def head(self) -> str | None:
        return self._git(["rev-parse", "--verify", "--quiet", REF], check=False).strip() or None

    def _tree(self) -> str:
        env = {**IDENTITY, "GIT_INDEX_FILE": str(self.store / "codeagent-index")}
        args = ["-c", "advice.addEmbeddedRepo=true", *self._excludes(), "add", "-A", "--ignore-errors", "."]
        code, _, err = self.repo.call(args, env=env)
        problems = [line for line in err.splitlines() if line.startswith(("error:", "fatal:"))]
        # A nested repository with no commit cannot be added; everything else was.
        if code != 0 and any("does not have a commit" not in line for line in problems):
            raise GitError(args, code, err)
        if "embedded git repository" in err:  # git says so whenever it adds a nested repository
            self._drop_nested_repositories()
        return self._git(["write-tree"]).strip()

    def _drop_nested_repositories(self) -> None:
        """Take nested repositories (gitlinks) out of the shadow index right after ``add``: the
        next ``add`` would otherwise ask each one whether it is modified, running git inside it
        with its own, unvetted config (a filter there would run)."""
        records = self._git(["ls-files", "--stage", "-z"]).split("\0")
        links = [record.split("\t", 1)[1] for record in records if record.startswith("160000 ")]
        if links:
            self._git(["update-index", "--force-remove", "-z", "--stdin"], input_text="\0".join(links) + "\0")

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
            name
            for name in self._git(["diff", "--name-only", "-z", "--no-renames", commit]).split("\0")
            if name
        ]
        wanted = set(self._git(["ls-tree", "-r", "-z", "--name-only", commit]).split("\0"))
        for rel in changed:
            path = self.workspace / rel
            if (
                rel not in wanted
                and _no_link_above(self.workspace, rel)
                and (path.is_file() or path.is_symlink())
            ):
                path.unlink()
                _prune_empty(path.parent, self.workspace)
        self._git(["read-tree", commit])
        self._git(["checkout-index", "-a", "-f"])
        return changed


def _no_link_above(root: Path, rel: str) -> bool:
    """Whether no folder on ``rel``'s way down from ``root`` is a link (which could lead out)."""
    folder = root
    for part in Path(rel).parts[:-1]:
        folder = folder / part
        if folder.is_symlink() or not folder.is_dir():
            return False
    return True


def _prune_empty(folder: Path, root: Path) -> None:
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
