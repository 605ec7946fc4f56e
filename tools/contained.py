"""Which repository files codeagent itself may read on the host: none through a link that leads out.

The host process reads repository files into the model's prompt and from there into
transcripts, results and pull requests: memory files (``AGENTS.md``,
``.codeagent/instructions.md``), the whole-codebase snapshot and the diffs that follow it,
the repo map, search. The repository is the attacker's, so any folder on the way may be a
symlink (``.codeagent -> ~/.ssh``), and checking only the last component (``is_symlink``)
lets such a folder through.

The rule (``Contained.file``): a repository-relative path is read only when it is a regular
file (not a symlink: codeagent's file listings never show links), reached through folders
each of which is a real folder or a symlink whose target resolves inside the repository.
Then the resolved path is inside the repository too. ``..``, absolute paths outside the
root and empty names are refused. Each folder is checked once per ``Contained`` (one
``lstat``, plus a ``realpath`` for a link), so vetting a listing costs about one ``lstat``
a file.

Limits: the check and the read are separate system calls; that is safe because nothing
the workspace controls runs while the host reads (every process a command starts dies
with it). Model-facing tools resolve their paths with ``ToolEnv.resolve`` (``realpath``
inside the root), which already holds to this rule for what they read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class Contained:
    """Vets repository-relative paths against one root, remembering the folders it checked."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self._folders: dict[str, bool] = {"": True}

    def file(self, rel: str) -> Path | None:
        """The absolute path of ``rel`` when it may be read under the rule above, else None."""
        parts = self._parts(rel)
        if not parts:
            return None
        for end in range(1, len(parts)):
            if not self._folder("/".join(parts[:end])):
                return None
        path = self.root.joinpath(*parts)
        try:
            return path if stat.S_ISREG(os.lstat(path).st_mode) else None
        except OSError:
            return None

    def _parts(self, rel: str) -> list[str]:
        if os.path.isabs(rel):
            rel = os.path.relpath(rel, self.root)
        parts = [part for part in rel.replace(os.sep, "/").split("/") if part not in ("", ".")]
        return [] if ".." in parts or "\0" in rel else parts

    def _folder(self, rel: str) -> bool:
        if rel not in self._folders:
            self._folders[rel] = self._check_folder(self.root / rel)
        return self._folders[rel]

    def _check_folder(self, path: Path) -> bool:
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode):
            return True
        if not stat.S_ISLNK(mode):
            return False
        target = Path(os.path.realpath(path))
        return (target == self.root or self.root in target.parents) and target.is_dir()


def contained_file(root: Path, rel: str) -> Path | None:
    """``Contained(root).file(rel)`` for a single path."""
    return Contained(root).file(rel)
