"""``RepoMap``: tags for every file (from the cache or tree-sitter), ranked, fitted, rendered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codeagent.tools.repomap.cache import TagCache
from codeagent.tools.repomap.rank import rank_definitions
from codeagent.tools.repomap.render import TokenCounter, add_other_files, estimate, fit
from codeagent.tools.repomap.tags import Tag, extract, language_of

MAX_FILE_BYTES = 1_000_000


@dataclass(slots=True)
class MapStats:
    files: int = 0
    parsed: int = 0
    cached: int = 0
    tags: int = 0
    shown: int = 0


class RepoMap:
    def __init__(self, root: Path, cache_dir: Path) -> None:
        self.root = root
        self.cache = TagCache(cache_dir)
        self.stats = MapStats()

    def file_tags(self, files: list[str]) -> dict[str, list[Tag]]:
        """Tags of every file in a supported language; cache misses are parsed and stored."""
        found: dict[str, list[Tag]] = {}
        fresh: list[tuple[str, list[Tag]]] = []
        for rel in files:
            language = language_of(rel)
            if language is None:
                continue
            source = self._source(rel)
            if source is None:
                continue
            key = self.cache.key(language, source)
            tags = self.cache.get(key)
            if tags is None:
                tags = extract(source, language)
                fresh.append((key, tags))
                self.stats.parsed += 1
            else:
                self.stats.cached += 1
            found[rel] = tags
        if fresh:
            self.cache.put_many(fresh)
        return found

    def _source(self, rel: str) -> bytes | None:
        path = self.root / rel
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                return None
            source = path.read_bytes()
        except OSError:
            return None
        return None if b"\x00" in source[:8192] else source

    def build(
        self,
        files: list[str],
        focus_files: set[str] = frozenset(),  # type: ignore[assignment]
        focus_idents: set[str] = frozenset(),  # type: ignore[assignment]
        max_tokens: int = 2048,
        count_tokens: TokenCounter = estimate,
    ) -> str:
        tags = self.file_tags(files)
        self.stats.files = len(files)
        self.stats.tags = sum(len(t) for t in tags.values())
        ranked = rank_definitions(tags, set(focus_files), set(focus_idents))
        text, shown = fit(ranked, max_tokens, count_tokens)
        self.stats.shown = shown
        if shown == len(ranked):
            others = [rel for rel in files if rel not in tags or not any(t.kind == "def" for t in tags[rel])]
            text = add_other_files(text, others, max_tokens, count_tokens)
        return text
