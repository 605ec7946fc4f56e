"""Which files of the repository count: tracked and untracked-but-not-ignored.

Inside a git work tree git itself answers (``ls-files --cached --others --exclude-standard``),
so every ``.gitignore``, ``.git/info/exclude`` and the global excludes file apply exactly.
Outside one, ``.gitignore`` files are read with ``pathspec`` while walking. ``.git`` is
never listed, and neither is anything ``contained.py`` refuses: symlinks, and files behind
a folder that is a symlink leading out of the repository (git's index can still name
``link/file`` after a command turned ``link`` into such a symlink).
"""

from __future__ import annotations

import os
from pathlib import Path

import pathspec

from codeagent.sandbox.git import git, is_git_repo
from codeagent.tools.contained import Contained


def iter_files(root: Path, under: Path | None = None) -> list[str]:
    """Sorted repository-relative paths (``/``-separated) of the files that count, below ``under``."""
    under = under or root
    if is_git_repo(root):
        rel_under = os.path.relpath(under, root)
        spec = [] if rel_under == "." else ["--", rel_under]
        out = git(["ls-files", "-z", "--cached", "--others", "--exclude-standard", *spec], root)
        names = {name for name in out.split("\0") if name}
        vet = Contained(root)
        return sorted(name for name in names if vet.file(name) is not None)
    return _walk(root, under)


def _walk(root: Path, under: Path) -> list[str]:
    found: list[str] = []
    specs: list[tuple[str, pathspec.PathSpec]] = []
    vet = Contained(root)
    for dirpath, dirnames, filenames in os.walk(under):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        ignore_file = vet.file(rel_dir + ".gitignore")
        if ignore_file is not None:
            lines = ignore_file.read_text(errors="replace").splitlines()
            specs.append((rel_dir, pathspec.PathSpec.from_lines("gitignore", lines)))

        def ignored(rel: str, is_dir: bool) -> bool:
            probe = rel + "/" if is_dir else rel
            return any(probe.startswith(base) and spec.match_file(probe[len(base) :]) for base, spec in specs)

        dirnames[:] = sorted(d for d in dirnames if d != ".git" and not ignored(rel_dir + d, True))
        for name in filenames:
            rel = rel_dir + name
            if not ignored(rel, False) and vet.file(rel) is not None:
                found.append(rel)
    return sorted(found)
