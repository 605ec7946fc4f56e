"""``apply_patch(patch)``: apply a unified diff to several files, all or nothing.

Parsing (``parse_patch``) accepts git diffs (``diff --git``, ``a/``/``b/`` prefixes,
``new file mode``, ``deleted file mode``, ``rename from``/``rename to`` with or without
hunks) and plain ``---``/``+++`` diffs; ``/dev/null`` creates or deletes. Hunk line counts
are not trusted (models often get them wrong): a hunk is the lines that follow its header,
up to the next header; a blank line counts as blank context, and text after the last hunk
is ignored. A header of just ``@@`` (no numbers) is accepted. Not supported: binary
patches, copies, mode changes (the mode lines are read and ignored), quoted paths.

Applying (``apply_hunks``): each hunk's old lines are looked for from where the previous
hunk ended, the place closest to the stated line winning, compared exactly, else ignoring
trailing whitespace, else ignoring all leading and trailing whitespace (``locate.py``: the
file's lines indexed once, so a hunk costs about its own length, not the file's times it). Context lines keep
the file's own text and line endings; added lines take the file's dominant ending.

Writing (``ApplyPatch.run``): every file's new text is computed in memory first; only when
every hunk of every file applies are files written, and if a write fails midway the
files already written are restored (``write_all``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeagent.tools.base import Observation, ToolEnv, ToolError
from codeagent.tools.diffs import (
    atomic_write,
    body,
    check_creatable,
    dominant_eol,
    file_mode,
    read_text,
    refuse_protected,
    split_lines,
    unified_diff,
)
from codeagent.tools.locate import Locator
from codeagent.tools.patch_parse import FilePatch, Hunk, parse_patch
from codeagent.tools.spec import Specified


def _rebuild(hunk: Hunk, matched: list[str], eol: str) -> list[str]:
    """The hunk's new lines: context from the file as it is, additions from the patch."""
    out: list[str] = []
    position = 0
    previous = ""
    for line in hunk.lines:
        kind = line[:1]
        if kind == "\\":
            if previous == "+" and out:
                out[-1] = body(out[-1])  # "\ No newline at end of file" after an addition
            continue
        if kind == "+":
            out.append(line[1:] + eol)
        elif kind == " ":
            out.append(matched[position])
            position += 1
        else:
            position += 1
        previous = kind
    return out


def apply_hunks(text: str, hunks: list[Hunk], label: str) -> str:
    """``text`` with every hunk applied in order, or ToolError naming the hunk that fails."""
    lines = split_lines(text)
    locator = Locator([body(line) for line in lines])
    eol = dominant_eol(text)
    out: list[str] = []
    cursor = drift = 0  # drift: how far off the previous hunk's stated line was
    for number, hunk in enumerate(hunks, 1):
        old = hunk.old_lines()
        # "-N,0" (nothing removed, nothing kept) means after line N; otherwise at line N.
        base = None if hunk.old_start is None else hunk.old_start - (1 if old else 0)
        start = locator.find(old, cursor if base is None else base + drift, cursor)
        if start is None:
            raise ToolError(_hunk_failure(number, label, old))
        out += lines[cursor:start]
        out += _rebuild(hunk, lines[start : start + len(old)], eol)
        cursor = start + len(old)
        drift = drift if base is None else start - base
    return _join(out + lines[cursor:], eol)


def _join(lines: list[str], eol: str) -> str:
    """The lines as text; one that ended the file may now have lines after it: end it."""
    last = len(lines) - 1
    return "".join(line if line.endswith("\n") or i == last else line + eol for i, line in enumerate(lines))


def _hunk_failure(number: int, label: str, old: list[str]) -> str:
    preview = "\n".join(old[:8]) + ("\n..." if len(old) > 8 else "")
    return (
        f"hunk {number} of {label} does not apply: the file has no lines matching its context and "
        f"removed lines (after the previous hunk), not even ignoring whitespace:\n{preview}\n"
        "Re-read the file and make the ' ' and '-' lines copy it exactly."
    )


@dataclass(slots=True)
class Change:
    """One file's fate: its text before (None: absent) and after (None: deleted)."""

    rel: str
    before: str | None
    after: str | None
    mode: int | None = None  # the original mode, to restore a deleted file faithfully


class PatchPlan:
    """Every file's new text, computed before anything is written."""

    def __init__(self, env: ToolEnv) -> None:
        self.env = env
        self.changes: dict[Path, Change] = {}

    def current(self, path: Path) -> str | None:
        """The file's text as the patch has left it so far (None: it does not exist)."""
        if path in self.changes:
            return self.changes[path].after
        return read_text(path, self.env.rel(path)) if path.exists() else None

    def set(self, path: Path, after: str | None) -> None:
        if path not in self.changes:
            before = self.current(path)
            self.changes[path] = Change(self.env.rel(path), before, None, file_mode(path))
        self.changes[path].after = after

    def resolve(self, raw: str) -> Path:
        path = self.env.resolve(raw)
        rel = self.env.rel(path)
        refuse_protected(rel)
        if path.is_dir():
            raise ToolError(f"{rel} is a directory, not a file")
        return path

    def add(self, patch: FilePatch) -> None:
        source = self.resolve(patch.old) if patch.old else None
        target = self.resolve(patch.new) if patch.new else None
        label = patch.new or patch.old or "?"
        before = self.current(source) if source else None
        if source is not None and before is None:
            raise ToolError(f"{patch.old} does not exist")
        if target is not None and target != source and self.current(target) is not None:
            raise ToolError(f"{patch.new} already exists; the patch would create it")
        if target is not None and self.current(target) is None:
            check_creatable(target, self.env.rel(target))
        after = apply_hunks(before or "", patch.hunks, label)
        if target is None and patch.hunks and after:
            raise ToolError(f"the patch deletes {patch.old} but its hunks do not remove all of its lines")
        if source is not None and source != target:
            self.set(source, None)
        if target is not None:
            self.set(target, after)


def write_all(changes: dict[Path, Change]) -> None:
    """Write every change; if one fails, put back the files already changed, then fail."""
    done: list[Path] = []
    try:
        for path, change in changes.items():
            if change.after is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, change.after)
            done.append(path)
    except OSError as err:
        for path in reversed(done):
            change = changes[path]
            if change.before is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, change.before, change.mode)
        raise ToolError(f"writing the patch failed ({err}); the files already written were restored") from err


class ApplyPatch(Specified, spec="apply_patch"):
    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        if not isinstance(args["patch"], str) or not args["patch"].strip():
            raise ToolError("patch must be a non-empty unified diff")
        plan = PatchPlan(env)
        for file_patch in parse_patch(args["patch"]):
            plan.add(file_patch)
        changes = {path: c for path, c in plan.changes.items() if c.before != c.after}
        write_all(changes)
        diff = "".join(unified_diff(c.rel, c.before, c.after) for c in changes.values())
        env.focus_files.update(c.rel for c in changes.values() if c.after is not None)
        summary = ", ".join(f"{_verb(c)} {c.rel}" for c in changes.values()) or "nothing changed"
        return Observation(
            f"{summary}\n{diff}", data={"diff": diff, "paths": [c.rel for c in changes.values()]}
        )


def _verb(change: Change) -> str:
    if change.before is None:
        return "created"
    return "deleted" if change.after is None else "modified"
