"""Repo-map build time on a repository, cold (empty cache) and cached.

``python -m codeagent.tools.repomap.bench PATH`` prints JSON; ``codeagent bench repomap``
calls ``bench_repomap``.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from codeagent.tools.ignore import iter_files
from codeagent.tools.repomap.repomap import RepoMap
from codeagent.tools.repomap.tags import language_of


def _timed_build(root: Path, cache_dir: Path, files: list[str]) -> tuple[float, RepoMap]:
    repo_map = RepoMap(root, cache_dir)
    started = time.perf_counter()
    repo_map.build(files, max_tokens=4096)
    elapsed = time.perf_counter() - started
    repo_map.cache.close()
    return elapsed, repo_map


def bench_repomap(root: Path, cache_dir: Path) -> dict[str, Any]:
    shutil.rmtree(cache_dir, ignore_errors=True)
    started = time.perf_counter()
    files = iter_files(root)
    listing_s = time.perf_counter() - started
    source = [rel for rel in files if language_of(rel)]
    lines = sum((root / rel).read_bytes().count(b"\n") for rel in source)
    cold_s, cold = _timed_build(root, cache_dir, files)
    cached_s, cached = _timed_build(root, cache_dir, files)
    return {
        "scenario": "repomap",
        "repository": str(root),
        "files": len(files),
        "source_files": len(source),
        "source_lines": lines,
        "tags": cold.stats.tags,
        "listing_s": round(listing_s, 3),
        "cold_s": round(cold_s, 3),
        "cached_s": round(cached_s, 3),
        "parsed_cold": cold.stats.parsed,
        "parsed_cached": cached.stats.parsed,
        "machine": f"{platform.machine()}, python {platform.python_version()}",
    }


if __name__ == "__main__":
    target = Path(sys.argv[1]).resolve()
    print(json.dumps(bench_repomap(target, Path("/tmp/codeagent-bench-repomap")), indent=2))
