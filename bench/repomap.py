"""Repo-map build time on a repository: cold (empty cache) and cached (a new ``RepoMap``).

``python -m codeagent.bench.repomap PATH [CACHE_DIR]`` prints JSON; ``codeagent
bench repomap`` calls ``bench_repomap``. Only the store file in the cache folder is deleted
before the cold run, so pointing it at a folder with other content is harmless. Times
include listing the files, reading and hashing them, ranking and rendering a 4096-token
map; lines are newline counts of the files in supported languages.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from codeagent.tools.ignore import iter_files
from codeagent.tools.repomap.cache import remove_store
from codeagent.tools.repomap.repomap import MapStats, RepoMap
from codeagent.tools.repomap.tags import language_of

BUDGET = 4096


def _timed_build(root: Path, cache_dir: Path) -> tuple[float, MapStats]:
    started = time.perf_counter()
    with RepoMap(root, cache_dir) as repo_map:
        repo_map.build(max_tokens=BUDGET)
    return time.perf_counter() - started, repo_map.stats


def bench_repomap(root: Path, cache_dir: Path) -> dict[str, Any]:
    remove_store(cache_dir)
    files = iter_files(root)
    source = [rel for rel in files if language_of(rel)]
    lines = sum((root / rel).read_bytes().count(b"\n") for rel in source)
    cold_s, cold = _timed_build(root, cache_dir)
    cached_s, cached = _timed_build(root, cache_dir)
    return {
        "scenario": "repomap",
        "repository": str(root),
        "files": len(files),
        "source_files": len(source),
        "source_lines": lines,
        "mapped_files": cold.source_files,
        "tags": cold.tags,
        "definitions_shown": cold.shown,
        "budget_tokens": BUDGET,
        "cold_s": round(cold_s, 3),
        "cached_s": round(cached_s, 3),
        "parsed_cold": cold.parsed,
        "parsed_cached": cached.parsed,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}",
    }


def main(argv: list[str]) -> int:
    if not argv or not Path(argv[0]).is_dir():
        print("usage: python -m codeagent.bench.repomap PATH [CACHE_DIR]", file=sys.stderr)
        return 2
    default = Path(tempfile.gettempdir()) / "codeagent-bench-repomap"
    cache_dir = Path(argv[1]) if len(argv) > 1 else default
    print(json.dumps(bench_repomap(Path(argv[0]).resolve(), cache_dir), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
