"""``list_files(path?, pattern?)``: the repository's files, gitignore-aware, capped.

The files are ``ignore.iter_files``'s: tracked plus untracked-but-not-ignored, never
``.git``, no symlinks. ``pattern`` is a glob: ``*`` and ``?`` stay within one folder, ``**``
spans folders (``**/`` also matches no folder at all), ``[abc]`` and ``[!abc]`` are classes.
It is matched against the repository-relative path and against the path relative to
``path``; a pattern without ``/`` also matches the bare file name, so ``*.py`` finds
Python files in any folder. At most ``MAX_ENTRIES`` names are shown, with a count of
what was left out. Only files are listed; folders show through their files' paths.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, ClassVar

from codeagent.tools.base import Observation, ToolEnv, ToolError, schema
from codeagent.tools.ignore import iter_files

MAX_ENTRIES = 500


def _glob_class(pattern: str, index: int) -> tuple[str, int]:
    """The regex for a ``[...]`` class starting at ``index``, and the index after it."""
    start = index + 1
    negate = pattern[start : start + 1] == "!"
    start += 1 if negate else 0
    # A "]" right after the opening bracket (or "[!") is a member, as in fnmatch.
    end = pattern.find("]", start + 1 if pattern[start : start + 1] == "]" else start)
    if end == -1:
        return re.escape("["), index + 1  # an unclosed bracket is a literal
    members = "".join("\\" + ch if ch in "\\^[]" else ch for ch in pattern[start:end])
    return ("[^/" if negate else "[") + members + "]", end + 1


@cache
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as an anchored regex over ``/``-separated paths."""
    out, index = [], 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        elif pattern[index] == "[":
            piece, index = _glob_class(pattern, index)
            out.append(piece)
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def normalise_glob(pattern: str) -> str:
    """Drop spellings that mean "from the root": a leading ``./`` or ``/``."""
    while pattern.startswith("./"):
        pattern = pattern[2:]
    return pattern.lstrip("/")


def matches(rel: str, pattern: str, base: str = ".") -> bool:
    """Whether a repository-relative path matches a glob, from the root or from ``base``."""
    regex = glob_regex(normalise_glob(pattern))
    if "/" not in pattern and regex.match(rel.rsplit("/", 1)[-1]):
        return True
    if regex.match(rel):
        return True
    prefix = base.rstrip("/") + "/"
    return base != "." and rel.startswith(prefix) and regex.match(rel[len(prefix) :]) is not None


class ListFiles:
    name: ClassVar[str] = "list_files"
    description: ClassVar[str] = (
        "List the repository's files (gitignored files left out), optionally below a folder and "
        "filtered by a glob such as '*.py' or 'src/**/test_*.ts'."
    )
    parameters: ClassVar[dict[str, Any]] = schema(
        {
            "path": {"type": "string", "description": "folder to list (default: the whole repository)"},
            "pattern": {"type": "string", "description": "glob on the relative path or the file name"},
        },
        [],
    )
    mutates: ClassVar[bool] = False

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
            names = [name for name in names if matches(name, pattern, base)]
        shown = names[:MAX_ENTRIES]
        text = "\n".join(shown) if shown else "(no files match; gitignored files are not listed)"
        if len(names) > len(shown):
            text += f"\n[{len(names) - len(shown)} more files not shown; narrow with path or pattern]"
        return Observation(text, data={"count": len(names), "shown": len(shown)})
