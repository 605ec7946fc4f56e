"""``repo_map(focus?)``: the repo map as a tool the model calls.

``focus`` is free text split on spaces and commas. A word that names a repository file
(its path, with or without ``./``, or a unique path suffix such as ``repomap.py``) ranks
toward that file, and a word with a ``/`` that names a folder toward every file below it;
every other word is an identifier (``Class.method`` and ``mod::item``
count as their parts too). The files read or edited this session (``env.focus_files``)
are always in focus. The budget is ``settings.repo_map_tokens``, estimated as chars / 4.
"""

from __future__ import annotations

import re
from typing import Any

from codeagent.tools.base import Observation, ToolEnv
from codeagent.tools.ignore import iter_files
from codeagent.tools.repomap.cache import default_cache_dir
from codeagent.tools.repomap.repomap import RepoMap
from codeagent.tools.spec import Specified


def split_focus(focus: str, files: list[str]) -> tuple[set[str], set[str]]:
    """(files, identifiers) named in ``focus``."""
    known = set(files)
    by_suffix: dict[str, list[str]] = {}
    for rel in files:
        parts = rel.split("/")
        for start in range(1, len(parts)):
            by_suffix.setdefault("/".join(parts[start:]), []).append(rel)
    named, idents = set(), set()
    for word in (w.removeprefix("./") for w in re.split(r"[\s,]+", focus) if w):
        folder = word.rstrip("/") + "/"
        if word in known:
            named.add(word)
        elif len(by_suffix.get(word, [])) == 1:
            named.add(by_suffix[word][0])
        elif "/" in word:  # a folder: every file below it, or a path that does not exist
            named.update(rel for rel in files if rel.startswith(folder))
        else:
            idents.add(word)
            idents.update(part for part in re.split(r"\.|::|#", word) if part.isidentifier())
    return named, idents


class RepoMapTool(Specified, spec="repo_map"):
    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        files = iter_files(env.root)
        named, idents = split_focus(str(args.get("focus") or ""), files)
        focus_files = (env.focus_files & set(files)) | named
        with RepoMap(env.root, env.settings.cache_dir or default_cache_dir()) as repo_map:
            text = repo_map.build(
                focus_files, idents, env.settings.repo_map_tokens, files=files, check=env.check_time
            )
        stats = repo_map.stats
        data = {
            "files": stats.files,
            "definitions_shown": stats.shown,
            "parsed": stats.parsed,
            "cached": stats.cached,
        }
        if not text:
            return Observation("no definitions found in supported languages", data=data)
        return Observation(text, data=data)
