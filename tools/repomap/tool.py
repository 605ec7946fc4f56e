"""``repo_map(focus?)``: the repo map as a tool the model calls.

``focus`` is free text split on spaces and commas. A word that names a repository file
(its path, with or without ``./``, or a unique path suffix such as ``repomap.py``) ranks
toward that file, and a word with a ``/`` that names a folder toward every file below it;
every other word is an identifier (``Class.method`` and ``mod::item``
count as their parts too). The files read or edited this session (``env.focus_files``)
are always in focus. The budget is ``settings.repo_map_tokens``, estimated as chars / 4.

With a focus, the map opens with the ``BEST_SHOWN`` definitions the localiser
(``localise.py``) ranks best for the focus read as text (an issue's words work as well as
names), each as ``path:first-last  header``, then the usual outline in what budget is left.
"""

from __future__ import annotations

import re
from typing import Any

from codeagent.tools.base import Observation, ToolEnv
from codeagent.tools.ignore import iter_files
from codeagent.tools.repomap.cache import default_cache_dir
from codeagent.tools.repomap.localise import corpus_of, rank, render_ranked
from codeagent.tools.repomap.render import estimate
from codeagent.tools.repomap.repomap import RepoMap
from codeagent.tools.spec import Specified

BEST_SHOWN = 10


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
        focus = str(args.get("focus") or "")
        named, idents = split_focus(focus, files)
        focus_files = (env.focus_files & set(files)) | named
        cache_dir = env.settings.cache_dir or default_cache_dir()
        best = best_definitions(env, files, focus) if focus.strip() else ""
        budget = env.settings.repo_map_tokens - estimate(best)
        with RepoMap(env.root, cache_dir) as repo_map:
            text = repo_map.build(focus_files, idents, max(budget, 0), files=files, check=env.check_time)
        stats = repo_map.stats
        data = {
            "files": stats.files,
            "definitions_shown": stats.shown,
            "parsed": stats.parsed,
            "cached": stats.cached,
        }
        if best:
            text = f"{best}\n\noutline:\n{text}" if text else best
        if not text:
            return Observation("no definitions found in supported languages", data=data)
        return Observation(text, data=data)


def best_definitions(env: ToolEnv, files: list[str], focus: str) -> str:
    """The localiser's best definitions for ``focus``, as a titled block ("" when none)."""
    corpus = corpus_of(env.root, files, env.settings.cache_dir or default_cache_dir(), env.check_time)
    ranked = rank(corpus, focus, env.focus_files)[:BEST_SHOWN]
    if not ranked:
        return ""
    return "best matches for the focus (path:lines  definition):\n" + render_ranked(ranked)
