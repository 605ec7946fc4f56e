"""``edit_file(path, old_text, new_text)``: replace text that occurs exactly once.

When ``old_text`` is not found verbatim, three tolerant rules are tried in order, and one
applies only if it finds exactly one place:

1. line endings: the file's CRLF and the model's LF (or the reverse) compare equal;
2. trailing whitespace: lines compare equal ignoring whitespace at their ends;
3. uniform indentation: every non-blank line of ``old_text`` sits in the file with the
   same extra (or missing) leading whitespace; ``new_text`` is re-indented to match.

Rules 2 and 3 work on whole lines. The file keeps its own line endings. When nothing
matches, the error shows the closest windows of the file, with line numbers, so the model
can copy the real text. An empty ``old_text`` creates a file that does not exist yet.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, ClassVar

from codeagent.tools.base import Observation, ToolEnv, ToolError, schema
from codeagent.tools.diffs import atomic_write, unified_diff
from codeagent.tools.files import read_source

Rule = Callable[[list[str], list[str]], "tuple[str, str] | None"]


def _eol(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _lines(text: str) -> list[str]:
    """LF-normalised lines; a final newline does not add an empty line."""
    text = text.replace("\r\n", "\n")
    return (text[:-1] if text.endswith("\n") else text).split("\n")


def _same_trimmed(window: list[str], old: list[str]) -> tuple[str, str] | None:
    return ("", "") if all(f.rstrip() == o.rstrip() for f, o in zip(window, old, strict=True)) else None


def _indent_shift(window: list[str], old: list[str]) -> tuple[str, str] | None:
    """(added, removed) leading whitespace common to every non-blank line, or None."""
    shift: tuple[str, str] | None = None
    for f, o in zip(window, old, strict=True):
        f, o = f.rstrip(), o.rstrip()
        if not f or not o:
            if f or o:
                return None
            continue
        if f.endswith(o) and not f[: len(f) - len(o)].strip():
            this = (f[: len(f) - len(o)], "")
        elif o.endswith(f) and not o[: len(o) - len(f)].strip():
            this = ("", o[: len(o) - len(f)])
        else:
            return None
        if shift not in (None, this):
            return None
        shift = this
    return shift if shift and shift != ("", "") else None


def _reindent(lines: list[str], added: str, removed: str) -> list[str]:
    out = []
    for line in lines:
        if line.strip():
            line = line[len(removed) :] if removed and line.startswith(removed) else line
            line = added + line
        out.append(line)
    return out


def _windows(file_lines: list[str], old: list[str], rule: Rule) -> list[tuple[int, tuple[str, str]]]:
    found = []
    for start in range(len(file_lines) - len(old) + 1):
        shift = rule(file_lines[start : start + len(old)], old)
        if shift is not None:
            found.append((start, shift))
    return found


def _occurrence_lines(content: str, needle: str) -> list[int]:
    lines, index = [], content.find(needle)
    while index != -1:
        lines.append(content.count("\n", 0, index) + 1)
        index = content.find(needle, index + 1)
    return lines


def _candidates(file_lines: list[str], old: list[str], limit: int = 3) -> str:
    size = max(1, len(old))
    target = "\n".join(old)
    scored = []
    for start in range(max(1, len(file_lines) - size + 1)):
        window = "\n".join(file_lines[start : start + size])
        scored.append((difflib.SequenceMatcher(None, target, window, autojunk=False).ratio(), start))
    scored.sort(key=lambda item: (-item[0], item[1]))
    blocks = []
    for ratio, start in scored[:limit]:
        rows = "\n".join(
            f"{n + 1:>5}| {file_lines[n]}" for n in range(start, min(start + size, len(file_lines)))
        )
        blocks.append(
            f"lines {start + 1}-{min(start + size, len(file_lines))} ({ratio:.0%} similar):\n{rows}"
        )
    return "\n".join(blocks)


def replace(content: str, old_text: str, new_text: str) -> tuple[str, str | None]:
    """(new content, tolerant rule used or None); ToolError when no single place matches."""
    count = content.count(old_text)
    if count == 1:
        return content.replace(old_text, new_text), None
    if count > 1:
        where = ", ".join(map(str, _occurrence_lines(content, old_text)[:20]))
        raise ToolError(f"old_text occurs {count} times (at lines {where}); include more surrounding lines")
    eol = _eol(content)
    normalised, old_n = content.replace("\r\n", "\n"), old_text.replace("\r\n", "\n")
    if (old_n != old_text or normalised != content) and normalised.count(old_n) == 1:
        done = normalised.replace(old_n, new_text.replace("\r\n", "\n"))
        return done.replace("\n", eol), "line endings"
    return _replace_lines(content, old_text, new_text, eol)


def _replace_lines(content: str, old_text: str, new_text: str, eol: str) -> tuple[str, str | None]:
    file_lines, old, new = _lines(content), _lines(old_text), _lines(new_text)
    rules: list[tuple[str, Rule]] = [("trailing whitespace", _same_trimmed), ("indentation", _indent_shift)]
    for label, rule in rules:
        found = _windows(file_lines, old, rule)
        if len(found) > 1:
            where = ", ".join(str(start + 1) for start, _ in found[:20])
            raise ToolError(
                f"old_text matches {len(found)} places ignoring {label} (lines {where}); be more specific"
            )
        if found:
            ((start, (added, removed)),) = found
            lines = file_lines[:start] + _reindent(new, added, removed) + file_lines[start + len(old) :]
            ending = eol if content.endswith(("\n", "\r\n")) else ""
            return eol.join(lines) + ending, label
    raise ToolError("old_text was not found in the file. Closest places:\n" + _candidates(file_lines, old))


class EditFile:
    name: ClassVar[str] = "edit_file"
    description: ClassVar[str] = (
        "Replace old_text with new_text in a file. old_text must occur exactly once: copy it from "
        "read_file output (without the line numbers), with enough lines to be unique. An empty "
        "old_text creates a new file. Returns the diff."
    )
    parameters: ClassVar[dict[str, Any]] = schema(
        {"path": {"type": "string"}, "old_text": {"type": "string"}, "new_text": {"type": "string"}},
        ["path", "old_text", "new_text"],
    )
    mutates: ClassVar[bool] = True

    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        path = env.resolve(args["path"])
        rel = env.rel(path)
        old_text, new_text = args["old_text"], args["new_text"]
        if not isinstance(old_text, str) or not isinstance(new_text, str):
            raise ToolError("old_text and new_text must be strings")
        if not path.exists():
            if old_text:
                raise ToolError(f"{rel} does not exist; to create it pass an empty old_text")
            return self._write(env, rel, path, None, new_text, None)
        if not old_text:
            raise ToolError(f"{rel} already exists; old_text must say what to replace")
        before = read_source(path, rel)
        after, rule = replace(before, old_text, new_text)
        return self._write(env, rel, path, before, after, rule)

    def _write(self, env: ToolEnv, rel: str, path: Any, before: str | None, after: str, rule: str | None):
        if before == after:
            return Observation(f"{rel} unchanged: new_text equals old_text", data={"path": rel, "diff": ""})
        atomic_write(path, after)
        env.focus_files.add(rel)
        diff = unified_diff(rel, before, after)
        note = f" (matched ignoring {rule})" if rule else ""
        verb = "created" if before is None else "edited"
        return Observation(f"{verb} {rel}{note}\n{diff}", data={"path": rel, "diff": diff, "tolerance": rule})
