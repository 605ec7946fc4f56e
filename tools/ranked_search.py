"""``search(pattern, mode="definitions")``: definitions ranked for a description, not lines matched.

The pattern is read as text (an error message, a symptom, names) and the localiser
(``repomap/localise.py``) ranks the definitions of the files the search covers: the best
``SHOWN`` come back as ``path:first-last  header``, best first, so the model can read exactly
those lines next. Files in languages without a tree-sitter grammar have no definitions and
are not ranked; a pattern that shares no word with the code finds nothing.
"""

from __future__ import annotations

from codeagent.tools.base import Observation, ToolEnv, ToolError
from codeagent.tools.repomap.cache import default_cache_dir
from codeagent.tools.repomap.localise import corpus_of, rank, render_ranked

SHOWN = 15
MAX_QUERY_CHARS = 20_000


def search_definitions(env: ToolEnv, files: list[str], text: str) -> Observation:
    if not text.strip():
        raise ToolError("pattern is empty: give the words to look for (a symptom, an error message, names)")
    if len(text) > MAX_QUERY_CHARS:
        raise ToolError(f"pattern is {len(text)} characters long; the limit is {MAX_QUERY_CHARS}")
    corpus = corpus_of(env.root, files, env.settings.cache_dir or default_cache_dir(), env.check_time)
    ranked = rank(corpus, text, env.focus_files)
    if not ranked:
        return Observation(f"no definitions match {text[:200]!r}", data={"matches": 0, "mode": "definitions"})
    shown = ranked[:SHOWN]
    body = "definitions ranked for the pattern, best first (path:lines  definition):\n" + render_ranked(shown)
    return Observation(body, data={"matches": len(ranked), "shown": len(shown), "mode": "definitions"})
