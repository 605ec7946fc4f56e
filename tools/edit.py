"""``edit_file(path, old_text, new_text)``: replace text that occurs exactly once.

``old_text`` must occur exactly once (occurrences may overlap; each counts). When it does
not occur verbatim, three tolerant rules are tried in order, and one applies only if it
finds exactly one place:

1. line endings: CRLF and LF compare equal;
2. trailing whitespace: lines compare equal ignoring whitespace at their ends;
3. uniform indentation: every non-blank line of ``old_text`` sits in the file with the
   same extra (or missing) leading whitespace; ``new_text`` is re-indented by that shift.

Rules 2 and 3 work on whole lines (a fragment of a line matches only as a line's tail,
via rule 3). New text always takes the file's dominant line ending, and the lines around
the edit keep theirs. When nothing matches, the error shows the closest places of the
file with line numbers (``closest``), so the model can copy the real text. An empty
``old_text`` creates a file that does not exist yet; for an existing one it is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeagent.tools.base import Observation, ToolEnv, ToolError
from codeagent.tools.closest import show_closest
from codeagent.tools.diffs import (
    atomic_write,
    body,
    check_creatable,
    dominant_eol,
    read_text,
    refuse_protected,
    split_lines,
    unified_diff,
)
from codeagent.tools.spec import Specified

Shift = tuple[str, str]  # (leading whitespace the file has more, leading whitespace it has less)
LineRule = Callable[[list[str], list[str]], Shift | None]
MAX_LISTED = 20


def occurrences(content: str, needle: str) -> list[int]:
    """Start offsets of ``needle`` in ``content``, overlapping ones included."""
    found, index = [], content.find(needle)
    while index != -1:
        found.append(index)
        index = content.find(needle, index + 1)
    return found


def with_eol(text: str, eol: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", eol)


def _ambiguous(count: int, lines: list[int], how: str) -> ToolError:
    where = ", ".join(map(str, lines[:MAX_LISTED])) + (", ..." if count > MAX_LISTED else "")
    found = f"matches {count} places {how}" if how else f"occurs {count} times"
    return ToolError(
        f"old_text {found} (at lines {where}); include more surrounding lines so that it matches exactly one"
    )


def _by_line_endings(content: str, old_text: str, new_text: str) -> str | None:
    """Replace a variant of ``old_text`` with the other line ending, if exactly one occurs."""
    variants = {with_eol(old_text, "\n"), with_eol(old_text, "\r\n")} - {old_text}
    found = [(spot, old) for old in variants for spot in occurrences(content, old)]
    if len(found) > 1:
        lines = sorted(content.count("\n", 0, spot) + 1 for spot, _ in found)
        raise _ambiguous(len(found), lines, "ignoring line endings")
    if not found:
        return None
    ((spot, old),) = found
    return content[:spot] + new_text + content[spot + len(old) :]


def _same_trimmed(window: list[str], old: list[str]) -> Shift | None:
    return ("", "") if all(f.rstrip() == o.rstrip() for f, o in zip(window, old, strict=True)) else None


def _line_shift(file_line: str, old_line: str) -> Shift | None:
    if file_line.endswith(old_line) and not file_line[: len(file_line) - len(old_line)].strip():
        return (file_line[: len(file_line) - len(old_line)], "")
    if old_line.endswith(file_line) and not old_line[: len(old_line) - len(file_line)].strip():
        return ("", old_line[: len(old_line) - len(file_line)])
    return None


def _indent_shift(window: list[str], old: list[str]) -> Shift | None:
    """The one leading-whitespace shift shared by every non-blank line, or None."""
    shift: Shift | None = None
    for file_line, old_line in zip(window, old, strict=True):
        file_line, old_line = file_line.rstrip(), old_line.rstrip()
        if not file_line or not old_line:
            if file_line or old_line:
                return None
            continue
        this = _line_shift(file_line, old_line)
        if this is None or shift not in (None, this):
            return None
        shift = this
    return shift if shift not in (None, ("", "")) else None


RULES: tuple[tuple[str, LineRule], ...] = (
    ("trailing whitespace", _same_trimmed),
    ("indentation", _indent_shift),
)


def _reindent(lines: list[str], shift: Shift) -> list[str]:
    added, removed = shift
    out = []
    for line in lines:
        if line.strip():
            line = added + line.removeprefix(removed)
        out.append(line)
    return out


def _text_lines(text: str) -> list[str]:
    """Lines of model-given text without endings; a final newline adds no empty line."""
    return [body(line) for line in split_lines(text.replace("\r\n", "\n"))]


def _splice(file: list[str], start: int, count: int, new: list[str], eol: str) -> str:
    """Replace ``count`` lines at ``start`` with ``new``; the last keeps the replaced ending."""
    replacement = [line + eol for line in new]
    last = file[start + count - 1]
    if replacement and body(last) == last:
        replacement[-1] = new[-1]  # the window ended the file without a newline: so does the edit
    return "".join(file[:start] + replacement + file[start + count :])


def _by_lines(content: str, old_text: str, new_text: str, eol: str) -> tuple[str, str]:
    file = split_lines(content)
    bodies = [body(line) for line in file]
    old, new = _text_lines(old_text), _text_lines(new_text)
    for label, rule in RULES:
        found: list[tuple[int, Shift]] = []
        for start in range(len(bodies) - len(old) + 1):
            shift = rule(bodies[start : start + len(old)], old)
            if shift is not None:
                found.append((start, shift))
        if len(found) > 1:
            raise _ambiguous(len(found), [start + 1 for start, _ in found], f"ignoring {label}")
        if found:
            ((start, shift),) = found
            return _splice(file, start, len(old), _reindent(new, shift), eol), label
    raise ToolError(
        "old_text was not found, not even ignoring line endings, trailing whitespace or indentation. "
        "Closest places in the file (copy old_text from the real text):\n" + show_closest(bodies, old)
    )


def replace(content: str, old_text: str, new_text: str) -> tuple[str, str | None]:
    """(new content, tolerant rule used or None); ToolError when no single place matches."""
    eol = dominant_eol(content)
    new_text = with_eol(new_text, eol)
    spots = occurrences(content, old_text)
    if len(spots) > 1:
        raise _ambiguous(len(spots), [content.count("\n", 0, spot) + 1 for spot in spots], "")
    if spots:
        return content[: spots[0]] + new_text + content[spots[0] + len(old_text) :], None
    done = _by_line_endings(content, old_text, new_text)
    if done is not None:
        return done, "line endings"
    return _by_lines(content, old_text, new_text, eol)


class EditFile(Specified, spec="edit_file"):
    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        path = env.resolve(args["path"])
        rel = env.rel(path)
        old_text, new_text = args["old_text"], args["new_text"]
        if not isinstance(old_text, str) or not isinstance(new_text, str):
            raise ToolError("old_text and new_text must be strings")
        refuse_protected(rel)
        if not path.exists():
            if old_text:
                raise ToolError(f"{rel} does not exist; to create it pass an empty old_text")
            check_creatable(path, rel)
            return _write(env, path, None, new_text, None)
        if not old_text:
            raise ToolError(f"{rel} already exists; old_text must say what to replace (or use write_file)")
        before = read_text(path, rel)
        env.focus_files.add(rel)
        after, rule = replace(before, old_text, new_text)
        return _write(env, path, before, after, rule)


def _write(env: ToolEnv, path: Path, before: str | None, after: str, rule: str | None) -> Observation:
    rel = env.rel(path)
    env.focus_files.add(rel)
    if before == after:
        return Observation(f"{rel} unchanged: new_text equals old_text", data={"path": rel, "diff": ""})
    atomic_write(path, after)
    diff = unified_diff(rel, before, after)
    note = f" (old_text matched only when ignoring {rule})" if rule else ""
    verb = "created" if before is None else "edited"
    return Observation(f"{verb} {rel}{note}\n{diff}", data={"path": rel, "diff": diff, "tolerance": rule})
