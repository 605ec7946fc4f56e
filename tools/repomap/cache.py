"""Tags per file on disk, keyed by a hash of the file's content and of the queries.

One SQLite database, ``tags.sqlite``, under the cache folder (``$XDG_CACHE_HOME/codeagent/
repomap`` by default). SQLite's locking makes it safe for concurrent processes (WAL: readers
never wait for a writer), and its journal makes a crash mid-write leave the previous state.
Keys hold no path, so equal files share one entry, also across repositories; the path is
attached when tags are loaded. Values are JSON rows, never pickles.

Corruption is survived, not reported: an entry that does not decode counts as a miss and is
rewritten; a database file that is not one (or is malformed) is deleted and started afresh.
A folder that cannot be written falls back to an in-memory store, so the map still works,
only without reuse. A lock held past the timeout skips the read or write (it is a cache).
Not done: eviction; entries for old file versions stay until the file is deleted.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Self

from codeagent import xdg
from codeagent.tools.repomap.tags import Tag, languages, query_text

STORE_NAME = "tags.sqlite"
FORMAT = b"tags-v4"  # bump when the stored row layout changes
BATCH = 500  # keys per SELECT; SQLite caps bound parameters per statement


def default_cache_dir() -> Path:
    return xdg.folder("cache") / "repomap"


def remove_store(folder: Path) -> None:
    """Delete the store and its journal files, leaving anything else in ``folder`` alone."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        (folder / (STORE_NAME + suffix)).unlink(missing_ok=True)


def queries_version() -> str:
    """Changes whenever a query file or the row layout does, so stale tags are never read."""
    digest = hashlib.sha1(FORMAT)
    for language in languages():
        digest.update(query_text(language).encode())
    return digest.hexdigest()[:12]


class TagCache:
    """``lookup`` and ``store`` of tag lists by content key; ``hits``/``misses`` count look-ups."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.version = queries_version()
        self.hits = 0
        self.misses = 0
        self.persistent = True
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            return _connect(self.folder / STORE_NAME)
        except (sqlite3.OperationalError, OSError):
            self.persistent = False  # unwritable folder or locked past the timeout
            return _connect(":memory:")
        except sqlite3.DatabaseError:
            remove_store(self.folder)  # not a database: start afresh
            return _connect(self.folder / STORE_NAME)

    def _reset(self) -> None:
        self._db.close()
        remove_store(self.folder)
        self._db = self._open()

    def key(self, language: str, content: bytes) -> str:
        return f"{self.version}:{language}:{hashlib.sha1(content).hexdigest()}"

    def lookup(self, wanted: dict[str, str]) -> dict[str, list[Tag]]:
        """{rel_path: tags} for those of ``wanted`` ({rel_path: key}) stored and readable."""
        rows = self._fetch(sorted(set(wanted.values())))
        found: dict[str, list[Tag]] = {}
        for rel_path, key in wanted.items():
            tags = _decode(rows[key], rel_path) if key in rows else None
            if tags is not None:
                found[rel_path] = tags
        self.hits += len(found)
        self.misses += len(wanted) - len(found)
        return found

    def _fetch(self, keys: list[str]) -> dict[str, str]:
        rows: dict[str, str] = {}
        try:
            for start in range(0, len(keys), BATCH):
                chunk = keys[start : start + BATCH]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, data FROM tags WHERE key IN ({marks})"
                rows.update(self._db.execute(query, chunk).fetchall())
        except sqlite3.OperationalError:
            return rows  # locked past the timeout: what was read is still good
        except sqlite3.DatabaseError:
            self._reset()  # malformed file: every file is parsed again and stored afresh
            return {}
        return rows

    def store(self, entries: dict[str, list[Tag]]) -> None:
        """Save tag lists by key; the path in each tag is not stored."""
        rows = [(key, json.dumps([tag[1:] for tag in tags])) for key, tags in entries.items()]
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO tags (key, data) VALUES (?, ?)", rows)
        except sqlite3.OperationalError:
            return  # locked past the timeout: the next build stores them
        except sqlite3.DatabaseError:
            self._reset()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _connect(path: Path | str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS tags (key TEXT PRIMARY KEY, data TEXT NOT NULL)")
    return db


def _decode(data: str, rel_path: str) -> list[Tag] | None:
    try:
        tags = [Tag(rel_path, *row) for row in json.loads(data)]  # a row of the wrong length: TypeError
    except (ValueError, TypeError):
        return None
    return tags if all(type(tag.line) is int for tag in tags) else None
