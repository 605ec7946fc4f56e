"""Unified diffs of what a tool changed, and atomic writes that keep a file's mode.

Files are read and written as text with their own newlines preserved (``newline=""``),
so a CRLF file stays CRLF after an edit.
"""

from __future__ import annotations

import difflib
import os
import stat
import tempfile
from pathlib import Path


def unified_diff(rel_path: str, before: str | None, after: str | None) -> str:
    """A git-style diff; ``None`` on either side means the file does not exist there."""
    old = "/dev/null" if before is None else f"a/{rel_path}"
    new = "/dev/null" if after is None else f"b/{rel_path}"
    lines = difflib.unified_diff(
        (before or "").splitlines(keepends=True),
        (after or "").splitlines(keepends=True),
        old,
        new,
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def read_text(path: Path) -> str:
    with path.open(encoding="utf-8", newline="") as handle:
        return handle.read()


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and ``os.replace``; keep the mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
