"""``repo_map(focus?)``: the repo map as a tool the model calls."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from codeagent.tools.base import Observation, ToolEnv, schema
from codeagent.tools.ignore import iter_files
from codeagent.tools.repomap.cache import default_cache_dir
from codeagent.tools.repomap.repomap import RepoMap


class RepoMapTool:
    name: ClassVar[str] = "repo_map"
    description: ClassVar[str] = (
        "Outline of the repository: the most relevant definitions (classes, functions, methods) with "
        "their line numbers, ranked toward the files you are working on. focus: file paths and/or "
        "identifiers (space or comma separated) to rank toward."
    )
    parameters: ClassVar[dict[str, Any]] = schema({"focus": {"type": "string"}}, [])
    mutates: ClassVar[bool] = False

    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        files = iter_files(env.root)
        words = [w for w in re.split(r"[\s,]+", str(args.get("focus") or "")) if w]
        known = set(files)
        focus_files = set(env.focus_files) | {w for w in words if w in known}
        focus_idents = {w for w in words if w not in known}
        repo_map = RepoMap(env.root, env.settings.cache_dir or default_cache_dir())
        try:
            text = repo_map.build(files, focus_files, focus_idents, env.settings.repo_map_tokens)
        finally:
            repo_map.cache.close()
        stats = repo_map.stats
        if not text:
            return Observation("no definitions found in supported languages", data={"files": len(files)})
        return Observation(
            text,
            data={
                "files": stats.files,
                "definitions_shown": stats.shown,
                "parsed": stats.parsed,
                "cached": stats.cached,
            },
        )
