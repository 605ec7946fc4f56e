"""Patches in a task's workspace: apply one, take one, put test files back to the base.

- ``apply``: ``git apply`` (optionally reversed); when that refuses, ``patch --fuzz`` as
  SWE-bench's harness does, so a model patch with slightly stale context still applies.
- ``diff_from``: what a workspace changed since the base commit, as one patch: tracked
  changes and new files, minus build and test by-products (``__pycache__``, caches,
  ``node_modules``...) and minus files that were already untracked before the agent started
  (what the environment setup made). Binary changes are kept (``--binary``).
- ``reset_test_files``: the files a test patch touches go back to their base version (or
  away, when the base lacks them), so the hidden tests apply over whatever the agent did.

Every git call goes through ``sandbox.git.git``, which a repository's config cannot hijack.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from codeagent.agent.gitops import changed_paths
from codeagent.sandbox.git import GitError, GitRepo, git

FUZZ_TIMEOUT_S = 60.0


class PatchError(Exception):
    """A patch that does not apply."""


def apply(root: Path, patch: str, *, reverse: bool = False) -> None:
    if not patch.strip():
        return
    with tempfile.TemporaryDirectory(prefix="codeagent-patch-") as folder:
        path = Path(folder) / "change.patch"
        path.write_text(patch if patch.endswith("\n") else patch + "\n", encoding="utf-8")
        flags = ["-R"] if reverse else []
        try:
            git(["apply", "--whitespace=nowarn", *flags, str(path)], root)
            return
        except GitError as err:
            first = err.stderr.strip()
        if reverse or not _fuzzy(root, path):
            raise PatchError(first or "git apply failed")


def _fuzzy(root: Path, path: Path) -> bool:
    tool = shutil.which("patch")
    if tool is None:
        return False
    argv = [tool, "--batch", "--forward", "--fuzz=5", "-p1", "--no-backup-if-mismatch", "-i", str(path)]
    proc = subprocess.run(argv, cwd=root, capture_output=True, timeout=FUZZ_TIMEOUT_S, check=False)
    return proc.returncode == 0


def untracked(root: Path) -> set[str]:
    return set(git(["ls-files", "--others", "--exclude-standard", "-z"], root).split("\0")) - {""}


def diff_from(root: Path, base: str, ignore_untracked: set[str]) -> str:
    paths = changed_paths(GitRepo.open(root), ignore_untracked)
    if not paths:
        return ""
    git(["add", "-A", "--", *paths], root)
    return git(
        [
            "diff",
            "--cached",
            "--no-ext-diff",
            "--no-textconv",
            "--binary",
            "--full-index",
            base,
            "--",
            *paths,
        ],
        root,
    )


def reset_test_files(root: Path, base: str, files: list[str]) -> None:
    for rel in files:
        if _exists(root, base, rel):
            git(["checkout", base, "--", rel], root)
        elif (root / rel).is_file() or (root / rel).is_symlink():
            (root / rel).unlink()


def _exists(root: Path, base: str, rel: str) -> bool:
    return bool(git(["ls-tree", "--name-only", base, "--", rel], root).strip())
