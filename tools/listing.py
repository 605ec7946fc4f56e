"""``list_files(path?, pattern?)``: the repository's files, gitignore-aware, capped.

``pattern`` is a glob matched against the repository-relative path (``**`` spans folders)
and, when it has no ``/``, also against the bare file name, so ``*.py`` finds Python files
anywhere. At most ``MAX_ENTRIES`` names are shown, with a count of what was left out.
"""

from __future__ import annotations

import fnmatch
import re
from functools import cache
from typing import Any, ClassVar

from codeagent.tools.base import Observation, ToolEnv, ToolError, schema
from codeagent.tools.ignore import iter_files

MAX_ENTRIES = 500


@cache
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regex: ``**/`` any folders (or none), ``*`` within one folder, ``?`` one char."""
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
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(out) + r"\Z")


def matches(rel: str, pattern: str) -> bool:
    if "/" not in pattern and fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], pattern):
        return True
    return glob_regex(pattern).match(rel) is not None


class ListFiles:
    name: ClassVar[str] = "list_files"
    description: ClassVar[str] = (
        "List the repository's files (ignored files left out), optionally below a folder and "
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
        if folder.is_file():
            raise ToolError(f"{env.rel(folder)} is a file; use read_file to read it")
        pattern = args.get("pattern")
        names = iter_files(env.root, folder)
        if pattern:
            names = [name for name in names if matches(name, pattern)]
        shown = names[:MAX_ENTRIES]
        text = "\n".join(shown) if shown else "(no files match)"
        if len(names) > len(shown):
            text += f"\n[{len(names) - len(shown)} more files not shown; narrow with path or pattern]"
        return Observation(text, data={"count": len(names)})
