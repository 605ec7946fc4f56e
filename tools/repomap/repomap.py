"""``RepoMap``: tags for every file (from the cache or tree-sitter), ranked, fitted, rendered.

Files over ``MAX_FILE_BYTES``, files with a NUL byte in their first 8 KiB (binary) and
paths ``tools.contained`` refuses (symlinks, or behind a folder linked out of the repository)
are skipped; files in languages without a grammar are only listed by name when budget remains.
Every build reads every candidate file to hash it: the cache saves parsing, not reading.
Parsing runs in this process, one reused parser per language; ``stats`` says what was
parsed and what came from the cache. ``check``, when given, is called before each file is
parsed (the tool passes ``ToolEnv.check_time``, so the run's time budget stops a long first
build between files; what was parsed by then stays cached).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from codeagent.tools.contained import Contained
from codeagent.tools.ignore import iter_files
from codeagent.tools.repomap.cache import TagCache
from codeagent.tools.repomap.rank import rank_definitions
from codeagent.tools.repomap.render import TokenCounter, add_other_files, estimate, fit
from codeagent.tools.repomap.tags import Tag, extract, language_of

MAX_FILE_BYTES = 1_000_000
BINARY_PROBE = 8192  # bytes looked at for a NUL, as git does


@dataclass(slots=True)
class MapStats:
    """Counts from the latest build."""

    files: int = 0  # candidates listed
    source_files: int = 0  # in a supported language, not skipped
    parsed: int = 0  # went through tree-sitter (cache misses)
    cached: int = 0  # tags read from the cache
    tags: int = 0
    shown: int = 0  # definitions in the output


class RepoMap:
    def __init__(self, root: Path, cache_dir: Path) -> None:
        self.root = root
        self.cache = TagCache(cache_dir)
        self.stats = MapStats()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.cache.close()

    def file_tags(self, files: list[str], check: Callable[[], None] | None = None) -> dict[str, list[Tag]]:
        """Tags of every readable file in a supported language; cache misses are parsed and stored."""
        return self.tags_of(self.sources(files), check)

    def tags_of(
        self, sources: dict[str, tuple[str, bytes]], check: Callable[[], None] | None = None
    ) -> dict[str, list[Tag]]:
        """Tags of the given ``{rel_path: (language, content)}``, from the cache or parsed."""
        keys = {rel: self.cache.key(language, source) for rel, (language, source) in sources.items()}
        found = self.cache.lookup(keys)
        fresh: dict[str, list[Tag]] = {}
        try:
            for rel, (language, source) in sources.items():
                if rel not in found:
                    if check is not None:
                        check()
                    fresh[rel] = extract(source, language, rel)
        finally:
            self.cache.store({keys[rel]: tags for rel, tags in fresh.items()})
        self.stats.source_files, self.stats.parsed, self.stats.cached = len(sources), len(fresh), len(found)
        found.update(fresh)
        return {rel: found[rel] for rel in sources}

    def sources(self, files: list[str]) -> dict[str, tuple[str, bytes]]:
        """{rel_path: (language, content)} of the files worth parsing."""
        sources: dict[str, tuple[str, bytes]] = {}
        vet = Contained(self.root)
        for rel in files:
            language = language_of(rel)
            source = self._source(vet, rel) if language else None
            if language and source is not None:
                sources[rel] = (language, source)
        return sources

    def _source(self, vet: Contained, rel: str) -> bytes | None:
        path = vet.file(rel)  # never through a link that leads out of the repository
        if path is None:
            return None
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                return None
            source = path.read_bytes()
        except OSError:
            return None  # vanished or unreadable since listing: leave it out
        return None if b"\x00" in source[:BINARY_PROBE] else source

    def build(
        self,
        focus_files: set[str] | frozenset[str] = frozenset(),
        focus_idents: set[str] | frozenset[str] = frozenset(),
        max_tokens: int = 2048,
        count_tokens: TokenCounter | None = None,
        *,
        files: list[str] | None = None,
        check: Callable[[], None] | None = None,
    ) -> str:
        """The map of ``files`` (default: the repository's files that git does not ignore)."""
        files = iter_files(self.root) if files is None else files
        count = count_tokens or estimate
        tags = self.file_tags(files, check)
        ranked = rank_definitions(tags, set(focus_files), set(focus_idents))
        text, shown = fit(ranked, max_tokens, count)
        self.stats.files, self.stats.shown = len(files), shown
        self.stats.tags = sum(len(t) for t in tags.values())
        if shown == len(ranked):
            with_defs = {tag.rel_path for tag in ranked}
            text = add_other_files(text, [rel for rel in files if rel not in with_defs], max_tokens, count)
        return text
