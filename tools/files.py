"""``read_file`` and ``write_file``.

``read_file`` returns numbered lines, at most ``PAGE_LINES`` lines or ``PAGE_CHARS``
characters a call, with a note saying what was shown and how to read on. Files with a NUL
byte in their first 8 KiB, or that are not UTF-8, are refused as binary. ``write_file``
replaces or creates a whole file atomically and returns the diff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from codeagent.tools.base import Observation, ToolEnv, ToolError, schema
from codeagent.tools.diffs import atomic_write, read_text, unified_diff

PAGE_LINES = 400
PAGE_CHARS = 40_000
MAX_LINE_CHARS = 2_000


def read_source(path: Path, rel: str) -> str:
    """The text of a file the model asked for, or a ToolError saying why not."""
    if path.is_dir():
        raise ToolError(f"{rel} is a directory; use list_files to see what is in it")
    if not path.is_file():
        raise ToolError(f"{rel} does not exist")
    with path.open("rb") as handle:
        head = handle.read(8192)
    if b"\x00" in head:
        raise ToolError(f"{rel} is a binary file (it contains NUL bytes); it cannot be shown as text")
    try:
        return read_text(path)
    except UnicodeDecodeError as err:
        raise ToolError(f"{rel} is not UTF-8 text (byte {err.start} is invalid); it cannot be shown") from err


class ReadFile:
    name: ClassVar[str] = "read_file"
    description: ClassVar[str] = (
        f"Read a text file with line numbers. Long files come in pages of up to {PAGE_LINES} lines; "
        "pass start_line and end_line (1-based, inclusive) to read a range."
    )
    parameters: ClassVar[dict[str, Any]] = schema(
        {
            "path": {"type": "string", "description": "file path relative to the repository root"},
            "start_line": {"type": "integer", "minimum": 1},
            "end_line": {"type": "integer", "minimum": 1},
        },
        ["path"],
    )
    mutates: ClassVar[bool] = False

    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        path = env.resolve(args["path"])
        rel = env.rel(path)
        lines = read_source(path, rel).splitlines()
        env.focus_files.add(rel)
        if not lines:
            return Observation(f"{rel} is empty", data={"path": rel, "lines": 0})
        first, last = _range(args, len(lines))
        shown, end = _page(lines, first, last)
        note = _note(rel, first, end, last, len(lines))
        return Observation(shown + note, data={"path": rel, "lines": len(lines), "shown": [first, end]})


def _range(args: dict[str, Any], total: int) -> tuple[int, int]:
    try:
        first = int(args.get("start_line") or 1)
        last = int(args.get("end_line") or total)
    except (TypeError, ValueError) as err:
        raise ToolError("start_line and end_line must be integers") from err
    if first < 1 or first > total:
        raise ToolError(f"start_line {first} is outside the file (it has {total} lines)")
    if last < first:
        raise ToolError(f"end_line {last} is before start_line {first}")
    return first, min(last, total)


def _page(lines: list[str], first: int, last: int) -> tuple[str, int]:
    """Numbered lines from ``first`` on, stopping at ``last`` or the page limits."""
    width = len(str(last))
    out: list[str] = []
    size, end = 0, first - 1
    for number in range(first, last + 1):
        text = lines[number - 1]
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + f" [... {len(text) - MAX_LINE_CHARS} characters cut]"
        row = f"{number:>{width}}| {text}"
        if out and (len(out) >= PAGE_LINES or size + len(row) > PAGE_CHARS):
            break
        out.append(row)
        size += len(row) + 1
        end = number
    return "\n".join(out), end


def _note(rel: str, first: int, end: int, last: int, total: int) -> str:
    if end < last:
        return f"\n[showing lines {first}-{end} of {total}; read on with start_line={end + 1}]"
    if first > 1 or last < total:
        return f"\n[lines {first}-{end} of {total}]"
    return ""


class WriteFile:
    name: ClassVar[str] = "write_file"
    description: ClassVar[str] = (
        "Create a file or replace its whole content. Prefer edit_file for changes to existing files."
    )
    parameters: ClassVar[dict[str, Any]] = schema(
        {"path": {"type": "string"}, "content": {"type": "string"}}, ["path", "content"]
    )
    mutates: ClassVar[bool] = True

    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        path = env.resolve(args["path"])
        rel = env.rel(path)
        if path.is_dir():
            raise ToolError(f"{rel} is a directory")
        content = args["content"]
        if not isinstance(content, str):
            raise ToolError("content must be a string")
        before = read_source(path, rel) if path.exists() else None
        atomic_write(path, content)
        env.focus_files.add(rel)
        diff = unified_diff(rel, before, content)
        verb = "created" if before is None else "wrote"
        return Observation(
            f"{verb} {rel}\n{diff}" if diff else f"{rel} unchanged", data={"path": rel, "diff": diff}
        )
