"""Tags per file on disk, keyed by a hash of the file's content and of the queries.

One SQLite database under the cache folder (``$XDG_CACHE_HOME/codeagent/repomap`` by
default): SQLite's locking makes it safe for concurrent processes, and its journal makes a
crash mid-write leave the previous state. Values are JSON, never pickles; an entry that
does not decode is ignored and rebuilt, and a database file that is not a database is
replaced. ``hits`` and ``misses`` count look-ups, for callers that report cache use.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

from codeagent.tools.repomap.tags import LANGUAGES, Tag, query_text


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "codeagent" / "repomap"


def _queries_version() -> str:
    languages = sorted({lang for lang, _, _ in LANGUAGES.values()})
    digest = hashlib.sha1(b"tags-v2")
    for language in languages:
        digest.update(query_text(language).encode())
    return digest.hexdigest()[:12]


class TagCache:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "tags.sqlite"
        self.version = _queries_version()
        self.hits = 0
        self.misses = 0
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError:
            self.path.unlink(missing_ok=True)  # not a database: start afresh
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS tags (key TEXT PRIMARY KEY, data TEXT NOT NULL)")
        return db

    def key(self, language: str, content: bytes) -> str:
        return f"{self.version}:{language}:{hashlib.sha1(content).hexdigest()}"

    def get(self, key: str) -> list[Tag] | None:
        row = self._db.execute("SELECT data FROM tags WHERE key = ?", (key,)).fetchone()
        tags = _decode(row[0]) if row else None
        if tags is None:
            self.misses += 1
        else:
            self.hits += 1
        return tags

    def put_many(self, entries: list[tuple[str, list[Tag]]]) -> None:
        rows = [
            (key, json.dumps([[t.name, t.kind, t.line, t.category, t.text] for t in tags]))
            for key, tags in entries
        ]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO tags (key, data) VALUES (?, ?)", rows)

    def close(self) -> None:
        self._db.close()


def _decode(data: str) -> list[Tag] | None:
    try:
        return [
            Tag(name, kind, int(line), category, text)
            for name, kind, line, category, text in json.loads(data)
        ]
    except (ValueError, TypeError):
        return None
