"""``list_files(path?, pattern?)``: the repository's files, gitignore-aware, capped.

The files are ``ignore.iter_files``'s: tracked plus untracked-but-not-ignored, never
``.git``, no symlinks. ``pattern`` is a glob: ``*`` and ``?`` stay within one folder, ``**``
spans folders (``**/`` also matches no folder at all), ``[abc]`` and ``[!abc]`` are classes.
It is matched (``globs.py``: an automaton, linear in the path, no backtracking) against the
repository-relative path and against the path relative to ``path``; a pattern without ``/``
also matches the bare file name, so ``*.py`` finds Python files in any folder. At most
``MAX_ENTRIES`` names are shown, with a count of what was left out. Only files are listed;
folders show through their files' paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from codeagent.tools.base import Observation, ToolEnv, ToolError
from codeagent.tools.globs import compile_glob
from codeagent.tools.ignore import iter_files
from codeagent.tools.spec import Specified

MAX_ENTRIES = 500


def normalise_glob(pattern: str) -> str:
    """Drop spellings that mean "from the root": a leading ``./`` or ``/``."""
    while pattern.startswith("./"):
        pattern = pattern[2:]
    return pattern.lstrip("/")


def glob_filter(pattern: str, base: str = ".") -> Callable[[str], bool]:
    """Whether a repository-relative path matches a glob, from the root or from ``base``;
    ToolError for a glob that cannot be used."""
    glob = compile_glob(normalise_glob(pattern))
    prefix = base.rstrip("/") + "/"

    def matches(rel: str) -> bool:
        if "/" not in pattern and glob.match(rel.rsplit("/", 1)[-1]):
            return True
        if glob.match(rel):
            return True
        return base != "." and rel.startswith(prefix) and glob.match(rel[len(prefix) :])

    return matches


class ListFiles(Specified, spec="list_files"):
    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        folder = env.resolve(args.get("path"), must_exist=True)
        base = env.rel(folder)
        if not folder.is_dir():
            raise ToolError(f"{base} is a file; use read_file to read it")
        pattern = args.get("pattern") or ""
        if not isinstance(pattern, str):
            raise ToolError("pattern must be a string glob such as '*.py'")
        names = iter_files(env.root, folder)
        if pattern:
            names = list(filter(glob_filter(pattern, base), names))
        shown = names[:MAX_ENTRIES]
        text = "\n".join(shown) if shown else "(no files match; gitignored files are not listed)"
        if len(names) > len(shown):
            text += f"\n[{len(names) - len(shown)} more files not shown; narrow with path or pattern]"
        return Observation(text, data={"count": len(names), "shown": len(shown)})
