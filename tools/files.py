"""``read_file(path, start_line?, end_line?)`` and ``write_file(path, content)``.

``read_file`` shows numbered lines (``  12| text``, numbers as wide as the last one), at most ``PAGE_LINES`` lines or
``PAGE_CHARS`` characters a call, and ends a partial view with a note saying which lines
were shown and how to read on. Lines longer than ``MAX_LINE_CHARS`` are cut (the note on
the line says by how much). Binary files and directories are refused with the reason (see
``diffs`` for what counts as text).

``write_file`` creates or replaces a whole file atomically, keeping the mode of a file it
replaces, and returns the diff. It may replace a binary file; the diff then says so.
"""

from __future__ import annotations

from typing import Any

from codeagent.tools.base import Observation, ToolEnv, ToolError
from codeagent.tools.diffs import (
    BinaryFile,
    atomic_write,
    body,
    check_creatable,
    printable,
    read_text,
    refuse_protected,
    split_lines,
    stray_bytes,
    unified_diff,
)
from codeagent.tools.spec import Specified

PAGE_LINES = 400
PAGE_CHARS = 40_000
MAX_LINE_CHARS = 2_000


def numbered(number: int, text: str, width: int) -> str:
    """One line as shown to the model (``width``: digits of the last number shown)."""
    if len(text) > MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS] + f" [... {len(text) - MAX_LINE_CHARS} more characters on this line]"
    return f"{number:>{width}}| {printable(text)}"


class ReadFile(Specified, spec="read_file", fill={"page_lines": PAGE_LINES}):
    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        path = env.resolve(args["path"])
        rel = env.rel(path)
        text = read_text(path, rel)
        env.focus_files.add(rel)
        lines = [body(line) for line in split_lines(text)]
        if not lines:
            return Observation(f"{rel} is empty", data={"path": rel, "lines": 0})
        first, last = _range(args, len(lines))
        shown, end = _page(lines, first, last)
        note = _note(first, end, last, len(lines))
        if stray_bytes(text):
            note += f"\n[{stray_bytes(text)} bytes that are not valid UTF-8 are shown as \ufffd]"
        return Observation(shown + note, data={"path": rel, "lines": len(lines), "shown": [first, end]})


def _line_arg(args: dict[str, Any], key: str, default: int) -> int:
    value = args.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ToolError(f"{key} must be an integer")
    try:
        return int(value)
    except ValueError as err:
        raise ToolError(f"{key} must be an integer, not {value!r}") from err


def _range(args: dict[str, Any], total: int) -> tuple[int, int]:
    first = _line_arg(args, "start_line", 1)
    last = _line_arg(args, "end_line", total)
    if first < 1 or first > total:
        raise ToolError(f"start_line {first} is outside the file (it has {total} lines)")
    if last < first:
        raise ToolError(f"end_line {last} is before start_line {first}")
    return first, min(last, total)


def _page(lines: list[str], first: int, last: int) -> tuple[str, int]:
    """Numbered lines from ``first`` on, stopping at ``last`` or at the page limits."""
    rows: list[str] = []
    size = 0
    for number in range(first, last + 1):
        row = numbered(number, lines[number - 1], len(str(last)))
        if rows and (len(rows) >= PAGE_LINES or size + len(row) > PAGE_CHARS):
            break
        rows.append(row)
        size += len(row) + 1
    return "\n".join(rows), first + len(rows) - 1


def _note(first: int, end: int, last: int, total: int) -> str:
    if end < last:
        return f"\n[showing lines {first}-{end} of {total}; read on with start_line={end + 1}]"
    if first > 1 or last < total:
        return f"\n[lines {first}-{end} of {total}]"
    return ""


class WriteFile(Specified, spec="write_file"):
    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        path = env.resolve(args["path"])
        rel = env.rel(path)
        content = args["content"]
        if not isinstance(content, str):
            raise ToolError("content must be a string")
        if path.is_dir():
            raise ToolError(f"{rel} is a directory; give the path of a file")
        refuse_protected(rel)
        existed = path.exists()
        if not existed:
            check_creatable(path, rel)
        try:
            before = read_text(path, rel) if existed else None
        except BinaryFile:
            before = None  # replacing a binary file: there is no text diff to show
        env.focus_files.add(rel)
        if existed and before == content:
            return Observation(f"{rel} unchanged", data={"path": rel, "diff": ""})
        atomic_write(path, content)
        diff = unified_diff(rel, before, content)
        if existed and before is None:
            diff = f"Binary file {rel} replaced by text\n{diff}"
        verb = "wrote" if existed else "created"
        return Observation(f"{verb} {rel}\n{diff}", data={"path": rel, "diff": diff})
